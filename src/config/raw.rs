//! The configuration file as written: Pomerium's keys plus authgate's own,
//! before defaults and validation. Every field is optional here; `validate`
//! says which are required. Durations, URLs and secrets are still strings.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::node::{Entries, Extra, Located, Val};

/// A list whose elements each keep their own location.
pub(crate) type List<T> = Val<Vec<Val<T>>>;

/// The top level of `authgate.yaml`.
#[derive(Deserialize, Default, JsonSchema)]
#[schemars(title = "authgate.yaml")]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// The login host's public base URL, e.g. `https://auth.example.com`.
    /// Required. `/oauth2/callback` under it is the redirect URI.
    pub authenticate_service_url: Option<Val<String>>,
    /// `oidc` (default) or Pomerium's `dex`; both speak plain OpenID Connect.
    pub idp_provider: Option<Val<String>>,
    /// The issuer, kept byte for byte (trailing slash included). Required.
    pub idp_provider_url: Option<Val<String>>,
    /// The OAuth2 client id registered at the provider. Required.
    pub idp_client_id: Option<Val<String>>,
    /// The client secret. Required unless `idp_client_secret_file` is set.
    pub idp_client_secret: Option<Val<String>>,
    /// A file holding the client secret (surrounding whitespace trimmed).
    pub idp_client_secret_file: Option<Val<String>>,
    /// Scopes to request: a list, or one string of them separated by spaces
    /// or commas (as OAuth and Pomerium write them). Default `openid email
    /// profile groups offline_access`.
    pub idp_scopes: Option<List<String>>,
    /// A PEM bundle trusted for the provider's TLS, besides the system roots.
    pub idp_ca_file: Option<Val<String>>,
    /// Skip TLS verification of the provider. Default false.
    pub idp_tls_insecure_skip_verify: Option<Val<bool>>,
    /// Leeway for `exp`/`iat`, a Go duration. Default `60s`, at most `5m`.
    pub idp_clock_skew: Option<Val<String>>,
    /// Audiences accepted in Bearer tokens besides `idp_client_id` (Dex
    /// cross-client tokens). Default none. Pomerium's name.
    pub idp_allowed_audiences: Option<List<String>>,
    /// The P-256 key (PEM, or base64 of the PEM as Pomerium takes it) that
    /// signs `X-Auth-Request-Jwt`. Default: generated once and kept beside
    /// the embedded session store.
    pub signing_key: Option<Val<String>>,
    /// A file holding `signing_key`.
    pub signing_key_file: Option<Val<String>>,
    /// Keys that signed assertions before, still published in the JWKS.
    /// Default none.
    pub previous_signing_keys: Option<List<String>>,
    /// A file of PEM blocks, the same as `previous_signing_keys`.
    pub previous_signing_keys_file: Option<Val<String>>,
    /// Claims passed upstream as headers: `{header: claim}`, or a list of
    /// claims sent as `X-Pomerium-Claim-<Claim>`. Default none. Pomerium's name.
    pub jwt_claims_headers: Option<Val<Value>>,
    /// Base64 of 32 random bytes that seal the session cookie. Required
    /// unless `cookie_secret_file` is set.
    pub cookie_secret: Option<Val<String>>,
    /// A file holding `cookie_secret`.
    pub cookie_secret_file: Option<Val<String>>,
    /// Older cookie secrets, still accepted to open cookies. Default none.
    pub previous_cookie_secrets: Option<List<String>>,
    /// A file of older cookie secrets, one per line.
    pub previous_cookie_secrets_file: Option<Val<String>>,
    /// The session cookie's name. Default `_authgate`.
    pub cookie_name: Option<Val<String>>,
    /// The cookie's `Domain`, e.g. `example.com`. Default: host-only.
    pub cookie_domain: Option<Val<String>>,
    /// Absolute session lifetime, a Go duration. Default `14h`.
    pub cookie_expire: Option<Val<String>>,
    /// End a session unused for this long (authgate's own key). Default:
    /// off, only `cookie_expire` ends sessions.
    pub cookie_idle_timeout: Option<Val<String>>,
    /// The cookie's `Secure` attribute. Default true.
    pub cookie_secure: Option<Val<bool>>,
    /// The cookie's `HttpOnly` attribute. Default true.
    pub cookie_http_only: Option<Val<bool>>,
    /// The HTTP listener, `IP:port` or `:port`. Default `0.0.0.0:4180`.
    pub address: Option<Val<String>>,
    /// The Envoy ext_authz listener. Default `0.0.0.0:9191`.
    pub grpc_address: Option<Val<String>>,
    /// A separate listener for `/metrics` (Pomerium's key). Default none:
    /// `/metrics` is served on `address`.
    pub metrics_address: Option<Val<String>>,
    /// HAProxy's SPOE agent listener (SPOP), `IP:port` or `:port`
    /// (authgate's own key). Default none: not served.
    pub spoe_address: Option<Val<String>>,
    /// Open client connections per listener; more wait in the kernel's
    /// backlog until one closes (authgate's own key). Default `10000`.
    pub max_connections: Option<Val<String>>,
    /// Open client connections per peer IP address and listener; more are
    /// closed at once; `trusted_proxies` peers are exempt (authgate's own
    /// key). Default `1024`.
    pub max_connections_per_peer: Option<Val<String>>,
    /// How long a client may take to send a request's head, from its first
    /// byte (authgate's own key; Go's `ReadHeaderTimeout`). Default `10s`.
    pub header_read_timeout: Option<Val<String>>,
    /// Close a client connection with no request in flight after this long
    /// (Pomerium's key, for its own listener as here). Default `5m`.
    pub timeout_idle: Option<Val<String>>,
    /// After SIGTERM, keep serving this long with `/readyz` at 503, so load
    /// balancers stop sending first (authgate's own key). Default `5s`.
    pub shutdown_delay: Option<Val<String>>,
    /// Then wait at most this long for requests in flight (authgate's own
    /// key). Default `10s`.
    pub shutdown_timeout: Option<Val<String>>,
    /// `memory`, `embedded:/path`, or a `redis://` family URL. Default
    /// `embedded:/var/lib/authgate/sessions.redb`.
    pub session_store: Option<Val<String>>,
    /// How often a session's identity is refreshed. Default `5m`.
    pub refresh_interval: Option<Val<String>>,
    /// How long a session outlives a provider that cannot be reached for
    /// its refresh, counted from when the refresh fell due (authgate's own
    /// key). Default `1h`; `0s` ends it at the first failed retry.
    pub refresh_grace: Option<Val<String>>,
    /// CIDRs or IPs whose `X-Forwarded-*` headers are believed; when set,
    /// `/oauth2/auth` answers these peers only (403 to anyone else).
    /// Default none: every peer is answered, X-Forwarded-* from nobody.
    pub trusted_proxies: Option<List<String>>,
    /// Groups whose members may use the session admin API
    /// (`/oauth2/admin/sessions`: list and revoke anyone's sessions), as a
    /// route's `allowed_groups` (authgate's own key). Default none: nobody.
    pub admin_groups: Option<List<String>>,
    /// `pretty` (default) or `json`.
    pub log_format: Option<Val<String>>,
    /// A tracing filter. Default `info`.
    pub log_level: Option<Val<String>>,
    /// `otlp` sends traces (decisions, login steps, refreshes, store
    /// operations) over OTLP/gRPC; `none` (default) sends none.
    /// Pomerium's name.
    pub tracing_provider: Option<Val<String>>,
    /// The OTLP/gRPC collector, e.g. `http://localhost:4317`. Default
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4317`.
    pub tracing_otlp_endpoint: Option<Val<String>>,
    /// `grpc`, the one protocol authgate speaks (default; also read from
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub tracing_otlp_protocol: Option<Val<String>>,
    /// The share of traces started here that are kept, 0 to 1; a request
    /// whose proxy sampled its trace is always kept (parent-based).
    /// Default `OTEL_TRACES_SAMPLER_ARG`, else 1.
    pub tracing_sample_rate: Option<Val<String>>,
    /// A directory of page templates (`forbidden.html`, …) replacing the
    /// built-in pages. Default none.
    pub templates_dir: Option<Val<String>>,
    /// The routes, first match wins. Pomerium's name.
    pub policy: Option<List<RawRoute>>,
    /// The same as `policy`, under Pomerium's newer name; not both.
    pub routes: Option<List<RawRoute>>,
    /// Requests and what the routes must answer them; `check-config`,
    /// `serve` and every reload refuse a configuration that fails one.
    pub tests: Option<List<RawPolicyTest>>,
}

/// One `tests` entry.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicyTest {
    /// The request's URL. Required.
    pub url: Option<Val<String>>,
    /// Default GET.
    pub method: Option<Val<String>>,
    /// The client's address as the proxy would report it.
    pub source_ip: Option<Val<String>>,
    /// Who is signed in; none: nobody.
    pub user: Option<Val<RawTestUser>>,
    /// `allow`, `deny` or `sign_in`. Required.
    pub expect: Option<Val<String>>,
}

/// The signed-in user of a `tests` entry.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTestUser {
    /// A verified email.
    pub email: Option<Val<String>>,
    pub groups: Option<List<String>>,
    /// Other ID-token claims.
    pub claims: Option<Val<Entries<Value>>>,
}

/// One `policy`/`routes` entry as written.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    /// A stable name for logs and metrics; unique. Default: the position.
    pub id: Option<Val<String>>,
    /// What people are told the route is (the 403 page, `explain`).
    /// Default: `id`, else `from` and the path matcher.
    pub name: Option<Val<String>>,
    /// Pomerium Policy Language rules, OR-ed with the `allowed_*` keys;
    /// `deny` rules win.
    pub policy: Option<Val<Located>>,
    /// `https://hello.example.com`, `https://*.example.com[:port]`. Required.
    pub from: Option<Val<String>>,
    /// Match paths under this prefix, whole segments only.
    pub prefix: Option<Val<String>>,
    /// Match exactly this path.
    pub path: Option<Val<String>>,
    /// Match the whole path against this regular expression.
    pub regex: Option<Val<String>>,
    /// Emails or subjects allowed.
    pub allowed_users: Option<List<String>>,
    /// Email domains allowed (exact).
    pub allowed_domains: Option<List<String>>,
    /// Groups allowed (any one).
    pub allowed_groups: Option<List<String>>,
    /// Claim → accepted values; a single value is a one-element list.
    pub allowed_idp_claims: Option<Val<Entries<List<Value>>>>,
    /// Let everyone through, logged in or not. Default false.
    pub allow_public_unauthenticated_access: Option<Val<bool>>,
    /// Let anyone who logged in through. Default false.
    pub allow_any_authenticated_user: Option<Val<bool>>,
    /// Send `X-Auth-Request-*` identity headers upstream. Default true.
    pub pass_identity_headers: Option<Val<bool>>,
    /// This route's claim headers, replacing the top-level `jwt_claims_headers`.
    pub jwt_claims_headers: Option<Val<Value>>,
    /// HTTP methods allowed on this route; others get 403. Default: any.
    pub allowed_methods: Option<List<String>>,
    /// Let CORS preflights (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) through unauthenticated. Default false.
    pub cors_allow_preflight: Option<Val<bool>>,
}

/// Top-level keys that Pomerium needs for proxying and authgate does not
/// (nginx or Envoy proxies): accepted, ignored, named in one warning.
pub(crate) const PROXY_ONLY_KEYS: &[&str] = &[
    "authorize_service_url",
    "autocert",
    "autocert_dir",
    "autocert_must_staple",
    "autocert_use_staging",
    "certificate",
    "certificate_authority",
    "certificate_authority_file",
    "certificate_file",
    "certificate_key",
    "certificate_key_file",
    "certificates",
    "databroker_service_url",
    "databroker_storage_connection_string",
    "databroker_storage_type",
    "default_upstream_timeout",
    "grpc_insecure",
    "http_redirect_addr",
    "services",
    "shared_secret",
    "shared_secret_file",
    "timeout_read",
    "timeout_write",
];

/// Route keys that only concern proxying to the upstream.
pub(crate) const PROXY_ONLY_ROUTE_KEYS: &[&str] = &[
    "allow_spdy",
    "allow_websockets",
    "host_path_regex_rewrite_pattern",
    "host_path_regex_rewrite_substitution",
    "host_rewrite",
    "host_rewrite_header",
    "idle_timeout",
    "prefix_rewrite",
    "preserve_host_header",
    "regex_rewrite_pattern",
    "regex_rewrite_substitution",
    "remove_request_headers",
    "set_request_headers",
    "set_response_headers",
    "timeout",
    "tls_client_cert",
    "tls_client_cert_file",
    "tls_client_key",
    "tls_client_key_file",
    "tls_custom_ca",
    "tls_custom_ca_file",
    "tls_downstream_server_name",
    "tls_server_name",
    "tls_skip_verify",
    "tls_upstream_server_name",
    "to",
];

/// A Pomerium name with no key of its own here, and what to do instead.
pub(crate) struct PomeriumKey {
    pub key: &'static str,
    pub message: &'static str,
    /// Refused (it has another name here, so ignoring it would change what
    /// the file does); otherwise accepted, ignored and warned about.
    pub error: bool,
    /// Pomerium also reads it from the environment (`INSECURE_SERVER`).
    pub from_env: bool,
}

const TLS_AT_PROXY: &str = "authgate never terminates TLS: it serves plain HTTP and the proxy in front (nginx, ingress-nginx, Envoy) terminates TLS for browsers; ignored, remove it";

/// Top-level names a Pomerium user brings along (from its config file, or
/// its Helm chart's `config:` block) that are not keys of authgate.yaml.
pub(crate) const POMERIUM_KEYS: &[PomeriumKey] = &[
    PomeriumKey {
        key: "rootDomain",
        message: "Pomerium's Helm value; in authgate.yaml the domain is two keys: `cookie_domain: <domain>` (one login for every host under it) and `authenticate_service_url: https://authenticate.<domain>` (the login host)",
        error: true,
        from_env: false,
    },
    PomeriumKey {
        key: "root_domain",
        message: "no such key; write `cookie_domain: <domain>` (one login for every host under it) and `authenticate_service_url: https://authenticate.<domain>` (the login host)",
        error: true,
        from_env: false,
    },
    PomeriumKey {
        key: "insecure",
        message: TLS_AT_PROXY,
        error: false,
        from_env: false,
    },
    PomeriumKey {
        key: "insecure_server",
        message: TLS_AT_PROXY,
        error: false,
        from_env: true,
    },
    PomeriumKey {
        key: "idp_service_account",
        message: "not needed: authgate reads groups from the ID token's `groups` claim (scope `groups`), not from a directory API; ignored, remove it (it may hold a credential)",
        error: false,
        from_env: true,
    },
    PomeriumKey {
        key: "authenticate_callback_path",
        message: "the callback is always `/oauth2/callback` under `authenticate_service_url`: register that URL at the provider and remove this key",
        error: true,
        from_env: true,
    },
    PomeriumKey {
        key: "debug",
        message: "Pomerium's human-readable logs: write `log_format: pretty`, and `log_level: debug` for details",
        error: true,
        from_env: false,
    },
];

/// What a raw struct (by serde's name for it) does with a key it has no
/// field for.
pub(crate) fn extra_key(struct_name: &str, key: &str) -> Extra {
    let (ignored, pomerium): (&[&str], &[PomeriumKey]) = match struct_name {
        "RawConfig" => (PROXY_ONLY_KEYS, POMERIUM_KEYS),
        "RawRoute" => (PROXY_ONLY_ROUTE_KEYS, &[]),
        _ => (&[], &[]),
    };
    if ignored.contains(&key) {
        return Extra::Ignored;
    }
    match pomerium.iter().find(|p| p.key == key) {
        Some(p) => Extra::Hint {
            message: p.message,
            error: p.error,
        },
        None => Extra::Unknown,
    }
}

/// Top-level keys whose environment variable is a comma-separated list.
pub(crate) const LIST_KEYS: &[&str] = &[
    "admin_groups",
    "idp_allowed_audiences",
    "idp_scopes",
    "previous_cookie_secrets",
    "previous_signing_keys",
    "trusted_proxies",
];

/// Top-level keys that cannot come from the environment (Pomerium reads
/// `POLICY` as base64 YAML; authgate does not).
pub(crate) const NOT_FROM_ENV: &[&str] = &["policy", "routes", "tests"];
