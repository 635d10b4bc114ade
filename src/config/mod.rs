//! Configuration: YAML (Pomerium's keys plus authgate's own) and environment
//! overrides, parsed into raw serde structs, then validated into [`Config`].
//!
//! Validation collects every problem, each with its key path and the line and
//! column in the file, so `authgate check-config` can list them all at once.
//! Secrets are held in [`Secret`], whose `Debug` never shows the value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use subtle::ConstantTimeEq as _;
use url::Url;
use zeroize::Zeroizing;

mod duration;
pub mod keys;
mod node;
mod raw;
pub mod schema;
#[cfg(test)]
mod tests;
mod validate;

use node::{Origin, Problem};

pub use crate::policy::route::{ClaimHeader, RouteConfig, Routes};
use crate::templates::Pages;
use keys::SigningKey;

/// Result of loading: the config plus warnings to log once at start.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Each rendered like a [`ConfigError`] (`file:line:col: key: message`).
    pub warnings: Vec<String>,
}

/// One problem, with where it is. Renders as
/// `authgate.yaml:12:5: policy[0].allowed_groups: expected a list`, or
/// `env COOKIE_SECRET: cookie_secret: is not base64` for an environment
/// variable, or `authgate.yaml: idp_client_id: required` without a position.
/// The message never contains a secret's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name, or `env NAME` for an environment variable.
    pub source: String,
    /// 1-based; `None` for environment variables and missing keys.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// `cookie_secret`, `policy[0].from`; empty for the document as a whole.
    pub key_path: String,
    pub message: String,
}

impl ConfigError {
    fn from_problem(source_name: &str, problem: Problem) -> Self {
        let (source, line, column) = match problem.at.origin {
            Origin::File { line, column } => (source_name.to_owned(), Some(line), Some(column)),
            Origin::Env(var) => (format!("env {var}"), None, None),
            Origin::Document => (source_name.to_owned(), None, None),
        };
        ConfigError {
            source,
            line,
            column,
            key_path: problem.at.path,
            message: problem.message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found (never just the first), in file order. Renders one
/// per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn from_problems(source_name: &str, mut problems: Vec<Problem>) -> Self {
        // File positions in order, then environment variables, then
        // whole-file problems; the sort is stable within each group.
        problems.sort_by_key(|p| match &p.at.origin {
            Origin::File { line, column } => (0, *line, *column),
            Origin::Env(_) => (1, 0, 0),
            Origin::Document => (2, 0, 0),
        });
        ConfigErrors(
            problems
                .into_iter()
                .map(|p| ConfigError::from_problem(source_name, p))
                .collect(),
        )
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and validate a file; `env` looks up environment variables (tests
/// pass a closure over a map; `main` passes `std::env::var`). Secret
/// `*_file` paths are taken as written (relative to the working directory).
pub fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let source_name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&source_name, &text, env),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            source: source_name,
            line: None,
            column: None,
            key_path: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }])),
    }
}

/// Same from text; `source_name` names the file in messages.
pub fn parse_str(
    source_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let root = node::parse(text).map_err(|p| ConfigErrors::from_problems(source_name, vec![p]))?;
    let outcome = validate::validate(root, env);
    match outcome.config {
        Some(config) if outcome.errors.is_empty() => Ok(Loaded {
            config,
            warnings: ConfigErrors::from_problems(source_name, outcome.warnings)
                .0
                .iter()
                .map(ToString::to_string)
                .collect(),
        }),
        _ if outcome.errors.is_empty() => Err(ConfigErrors(vec![ConfigError {
            source: source_name.to_owned(),
            line: None,
            column: None,
            key_path: String::new(),
            message: "invalid configuration".to_owned(),
        }])),
        _ => Err(ConfigErrors::from_problems(source_name, outcome.errors)),
    }
}

/// Default `refresh_grace` (see [`Config::refresh_grace`]).
pub const DEFAULT_REFRESH_GRACE: Duration = Duration::from_secs(3600);

/// A validated configuration: everything `serve` needs, with defaults applied.
#[derive(Clone, Debug)]
pub struct Config {
    /// `address`: the HTTP listener. Default `0.0.0.0:4180`.
    pub address: SocketAddr,
    /// `grpc_address`: the Envoy ext_authz listener. Default `0.0.0.0:9191`.
    pub grpc_address: SocketAddr,
    /// `metrics_address`: a listener serving only `/metrics`; when set,
    /// `/metrics` is not served on `address`. Default none.
    pub metrics_address: Option<SocketAddr>,
    /// `spoe_address`: HAProxy's SPOE agent listener (SPOP). Default none.
    pub spoe_address: Option<SocketAddr>,
    /// `authenticate_service_url`: the login host's public base URL, e.g.
    /// `https://auth.example.com`. `/oauth2/callback` under it is the
    /// redirect URI registered at the provider.
    pub authenticate_service_url: Url,
    pub idp: IdpConfig,
    pub cookie: CookieConfig,
    /// `session_store`. Default `embedded:/var/lib/authgate/sessions.redb`.
    pub session_store: SessionStoreConfig,
    /// `refresh_interval`: how often a session's identity is re-read from the
    /// provider with the refresh token. Default 5 minutes.
    pub refresh_interval: Duration,
    /// `refresh_grace`: how long past its due refresh a session is kept
    /// while the provider cannot be reached (connection error, timeout, a
    /// 5xx that is not Dex's answer for a user gone from the directory).
    /// Default 1h: long enough to ride out a Dex restart or upgrade without
    /// logging everybody out, short enough that a user removed from the
    /// directory during an outage keeps access for at most
    /// `refresh_interval` + 1h.
    pub refresh_grace: Duration,
    /// `trusted_proxies`: peers whose `X-Forwarded-*` headers are believed
    /// and, when not empty, the only peers `/oauth2/auth` answers.
    /// Default: none.
    pub trusted_proxies: Vec<IpNet>,
    /// `admin_groups`: who may use the session admin API. Default none.
    pub admin_groups: Vec<String>,
    /// `policy` / `routes`, parsed, in file order: the first match wins.
    pub routes: Routes,
    /// The key signing `X-Auth-Request-Jwt` and the keys it replaced.
    pub signing: SigningConfig,
    /// `jwt_claims_headers`: claims passed upstream as plain headers on
    /// every route that does not set its own. Default none.
    pub jwt_claims_headers: Vec<ClaimHeader>,
    /// `log_format`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// `log_level`: a tracing filter, default `info`.
    pub log_level: String,
    /// `templates_dir`: page templates replacing the built-in ones. Default
    /// none.
    pub templates_dir: Option<PathBuf>,
    /// The pages, loaded from `templates_dir` (every one compiled and
    /// rendered once) or built in.
    pub pages: Pages,
    /// How the listeners take connections and shut down.
    pub serving: ServingConfig,
    /// `tracing_provider: otlp`: where and how much to trace. Default none.
    pub tracing: Option<TracingConfig>,
}

/// Traces over OTLP/gRPC (`tracing_*` keys, else the `OTEL_*` variables).
#[derive(Clone, Debug, PartialEq)]
pub struct TracingConfig {
    /// `tracing_otlp_endpoint`: the collector's OTLP/gRPC URL.
    pub endpoint: String,
    /// `tracing_sample_rate`: the share of root traces kept, 0 to 1.
    pub sample_ratio: f64,
    /// `OTEL_SERVICE_NAME`, default `authgate`.
    pub service_name: String,
}

/// Whether `peer` is in `trusted_proxies` (`nets`). An IPv4-mapped IPv6
/// address (a dual-stack socket's view of an IPv4 peer) is its IPv4 address.
pub fn is_trusted_proxy(nets: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    nets.iter().any(|net| net.contains(&peer))
}

/// How the listeners (HTTP and gRPC) accept, time out and drain
/// connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServingConfig {
    /// `max_connections`: open client connections per listener. At the cap
    /// authgate stops accepting; further connections wait in the kernel's
    /// backlog until one closes, so a flood cannot exhaust file descriptors.
    pub max_connections: usize,
    /// `max_connections_per_peer`: open connections one peer IP address may
    /// hold on a listener; a connection over it is closed at once, so one
    /// client cannot take the whole `max_connections`. Peers in
    /// `trusted_proxies` are exempt: a proxy funnels many users and holds
    /// many keep-alive connections. Default 1024: far above what an nginx
    /// (one connection per auth subrequest in flight, plus its `keepalive`
    /// pool per worker) or an Envoy (a few multiplexed HTTP/2 connections)
    /// holds, yet a tenth of the default `max_connections`. A value at or
    /// above `max_connections` turns it off.
    pub max_connections_per_peer: usize,
    /// `header_read_timeout`: a request's head must arrive within this,
    /// counted from its first byte (slowloris clients are cut off).
    pub header_read_timeout: Duration,
    /// `timeout_idle`: a connection with no request in flight and no bytes
    /// of a new one is closed after this. Keep it above the proxy's upstream
    /// keep-alive timeout (nginx `keepalive_timeout`, 60s by default) so the
    /// proxy, not authgate, closes idle connections.
    pub idle_timeout: Duration,
    /// `shutdown_delay`: after SIGTERM, how long authgate keeps accepting and
    /// answering while `/readyz` (and gRPC health) report not ready, so load
    /// balancers and Kubernetes endpoints stop routing to it first.
    pub shutdown_delay: Duration,
    /// `shutdown_timeout`: then, after it stops accepting, how long requests
    /// in flight may take before their connections are cut.
    pub shutdown_timeout: Duration,
}

impl Default for ServingConfig {
    fn default() -> ServingConfig {
        ServingConfig {
            max_connections: 10_000,
            max_connections_per_peer: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            shutdown_delay: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
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
    /// The certificates of `ca_file`, parsed.
    pub ca_certs: Vec<openidconnect::reqwest::Certificate>,
    /// `idp_tls_insecure_skip_verify`: skip TLS verification (loud warning).
    pub insecure_skip_verify: bool,
    /// `idp_clock_skew`: leeway for `exp`/`iat` checks. Default 60s.
    pub clock_skew: Duration,
    /// `idp_allowed_audiences`: audiences accepted in Bearer tokens besides
    /// `client_id`. Default none.
    pub allowed_audiences: Vec<String>,
}

/// The assertion's signing keys, parsed.
#[derive(Clone, Debug, Default)]
pub struct SigningConfig {
    /// `signing_key` / `signing_key_file`. `None`: generated (and kept
    /// beside an embedded store).
    pub key: Option<SigningKey>,
    /// `previous_signing_keys` / `previous_signing_keys_file`: the public
    /// halves of the keys it replaced, kept in the JWKS.
    pub previous: Vec<p256::PublicKey>,
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
    /// `cookie_idle_timeout`: a session unused this long ends (checked on
    /// the server, not by the cookie). Default: none.
    pub idle_timeout: Option<Duration>,
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

/// A secret value: its `Debug` never shows the bytes, comparing two takes
/// the same time wherever they differ, and each copy's bytes are wiped when
/// it is dropped (a reload leaves no old key behind in freed memory).
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(Zeroizing::new(bytes.into()))
    }
    /// The raw bytes; call only where the secret is used.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Secret {
    /// Constant time in the contents (the length is not secret).
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
