//! Configuration: YAML (Pomerium's keys plus authgate's own) and environment
//! overrides, parsed into raw serde structs, then validated into [`Config`].
//!
//! Validation collects every problem, each with its key path and the line and
//! column in the file, so `authgate check-config` can list them all at once.
//! Secrets are held in [`Secret`], whose `Debug` never shows the value.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;
use url::Url;

/// A validated configuration: everything `serve` needs, with defaults applied.
#[derive(Clone, Debug)]
pub struct Config {
    /// `address`: the HTTP listener. Default `0.0.0.0:4180`.
    pub address: SocketAddr,
    /// `grpc_address`: the Envoy ext_authz listener. Default `0.0.0.0:9191`.
    pub grpc_address: SocketAddr,
    /// `authenticate_service_url`: the login host's public base URL, e.g.
    /// `https://auth.example.com`. `/oauth2/callback` under it is the
    /// redirect URI registered at the provider.
    pub authenticate_service_url: Url,
    pub idp: IdpConfig,
    pub cookie: CookieConfig,
    /// `session_store`. Default `embedded:<state dir>/sessions.redb`.
    pub session_store: SessionStoreConfig,
    /// `refresh_interval`: how often a session's identity is re-read from the
    /// provider with the refresh token. Default 5 minutes.
    pub refresh_interval: Duration,
    /// `trusted_proxies`: peers whose `X-Forwarded-*` headers are believed.
    /// Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// `policy` / `routes`, in file order: the first match wins.
    pub routes: Vec<RouteConfig>,
    /// `log_format`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// `log_level`: a tracing filter, default `info`.
    pub log_level: String,
}

/// The OpenID provider (Dex) this service logs users in with.
#[derive(Clone, Debug)]
pub struct IdpConfig {
    /// `idp_provider`: only `oidc` (and Pomerium's `dex`, an alias).
    pub provider: String,
    /// `idp_provider_url`: the issuer, compared byte for byte with the `iss`
    /// of discovery and of every token (trailing slash included).
    pub issuer_url: String,
    /// `idp_client_id`.
    pub client_id: String,
    /// `idp_client_secret` / `idp_client_secret_file`.
    pub client_secret: Secret,
    /// `idp_scopes`. Default `openid email profile groups offline_access`.
    pub scopes: Vec<String>,
    /// `idp_ca_file`: a PEM bundle trusted for the provider's TLS, in
    /// addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// `idp_tls_insecure_skip_verify`: skip TLS verification (loud warning).
    pub insecure_skip_verify: bool,
    /// `idp_clock_skew`: leeway for `exp`/`iat` checks. Default 60s.
    pub clock_skew: Duration,
}

/// The session cookie.
#[derive(Clone, Debug)]
pub struct CookieConfig {
    /// `cookie_name`. Default `_authgate`.
    pub name: String,
    /// `cookie_domain`: e.g. `example.com` (lower case, no leading dot).
    /// `None`: host-only cookie on the login host.
    pub domain: Option<String>,
    /// `cookie_secure`. Default true.
    pub secure: bool,
    /// `cookie_http_only`. Default true.
    pub http_only: bool,
    /// `cookie_expire`: absolute session lifetime. Default 14h.
    pub expire: Duration,
    /// `cookie_secret` / `cookie_secret_file`: 32 bytes (base64 in the file).
    pub secret: Secret,
    /// `previous_cookie_secrets` / `previous_cookie_secrets_file`: still
    /// accepted to open cookies, never used to seal them.
    pub previous_secrets: Vec<Secret>,
}

/// `session_store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStoreConfig {
    /// `memory`: lost on restart; for `demo` and tests.
    Memory,
    /// `embedded:/path`: a local file, survives restarts.
    Embedded(PathBuf),
    /// `redis://…`, `rediss://…`, `redis+sentinel://…`, `redis+cluster://…`.
    Redis(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// One `policy`/`routes` entry, validated but not yet compiled (see
/// `policy::Policy::compile`).
#[derive(Clone, Debug, Default)]
pub struct RouteConfig {
    /// Position in the file (0-based), used as the route id in logs/metrics
    /// unless `id` is set.
    pub index: usize,
    /// `id` (optional, authgate's): a stable name for logs and metrics.
    pub id: Option<String>,
    /// `from`: `https://hello.example.com`, `https://*.example.com`, with an
    /// optional port. Scheme and host as written (lower-cased).
    pub from: Url,
    /// `prefix`: matches whole path segments (`/api` matches `/api` and
    /// `/api/x`, never `/apix`).
    pub prefix: Option<String>,
    /// `path`: exact path.
    pub path: Option<String>,
    /// `regex`: matched against the whole path (anchored).
    pub regex: Option<String>,
    /// `allowed_users`: emails or subjects.
    pub allowed_users: Vec<String>,
    /// `allowed_domains`: email domains, exact (no subdomains).
    pub allowed_domains: Vec<String>,
    /// `allowed_groups`: any one of these groups.
    pub allowed_groups: Vec<String>,
    /// `allowed_idp_claims`: claim name → accepted values (strings, numbers
    /// or booleans); a list claim matches if any element is accepted.
    pub allowed_idp_claims: Vec<(String, Vec<Value>)>,
    /// `allow_public_unauthenticated_access`.
    pub allow_public_unauthenticated_access: bool,
    /// `allow_any_authenticated_user`.
    pub allow_any_authenticated_user: bool,
    /// `pass_identity_headers` (Pomerium's key). Default true.
    pub pass_identity_headers: bool,
}

/// A secret value: its `Debug` and `Display` never show the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }
    /// The raw bytes; call only where the secret is used.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
