//! From the located tree to a [`Config`]: environment overrides, defaults,
//! and every semantic check, all problems collected.
//!
//! Messages about secret keys never quote the value; other messages do, as
//! the value is usually what the user needs to see.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ipnet::IpNet;
use serde_json::Value;
use url::Url;

use super::duration::parse_duration;
use super::keys::{private_key_from_pem, public_key_from_pem};
use super::node::{self, At, Key, Kind, Located, Node, Origin, Problem, Sink, Val};
use super::raw::{self, List, RawConfig, RawPolicyTest, RawRoute};
use super::{
    ClaimHeader, Config, CookieConfig, DEFAULT_REFRESH_GRACE, IdpConfig, LogFormat, Secret,
    ServingConfig, SessionStoreConfig, SigningConfig, TracingConfig,
};
use crate::policy::route::{
    Route, RouteConfig, RouteField, Routes, claim_header_names, is_token_byte, looks_like_domain,
};
use crate::policy::{check, ppl};
use crate::templates::Pages;

const DEFAULT_SCOPES: &[&str] = &["openid", "email", "profile", "groups", "offline_access"];
/// What Dex accepts; anything else gets `invalid_scope` at login.
const DEX_SCOPES: &[&str] = &[
    "openid",
    "email",
    "profile",
    "groups",
    "offline_access",
    "federated:id",
];
const DEX_CROSS_CLIENT_PREFIX: &str = "audience:server:client_id:";
const DEFAULT_SESSION_STORE_PATH: &str = "/var/lib/authgate/sessions.redb";
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
const SECRET_HINT: &str = "generate one with `head -c32 /dev/urandom | base64`";

/// The outcome: a config only when `errors` is empty.
pub(crate) struct Outcome {
    pub config: Option<Config>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

pub(crate) fn validate(mut root: Node, env: &dyn Fn(&str) -> Option<String>) -> Outcome {
    let mut v = Validator::default();
    let sink = Sink::default();
    if matches!(root.kind, Kind::Null) {
        root.kind = Kind::Map(Vec::new());
    }
    if !matches!(root.kind, Kind::Map(_)) {
        v.error(
            &root.at,
            "expected a mapping of settings at the top level".to_owned(),
        );
        return v.finish(None);
    }
    let env_ignored = apply_env(&mut root, env);
    apply_otel_env(&mut root, env);
    v.pomerium_env(env);
    let raw: RawConfig = node::deserialize(&root, &sink, raw::extra_key).unwrap_or_default();
    // The raw structs own copies of what they need: free the tree (the
    // larger half of a big policy) before the validated config is built,
    // so the two never share the process's peak memory.
    drop(root);
    v.errors.append(&mut sink.problems.borrow_mut());
    v.warnings.append(&mut sink.warnings.borrow_mut());
    let mut config = v.config(&raw);
    if let Some(tracing) = config.as_mut().and_then(|c| c.tracing.as_mut())
        && let Some(name) = env("OTEL_SERVICE_NAME").filter(|n| !n.trim().is_empty())
    {
        tracing.service_name = name.trim().to_owned();
    }
    let mut ignored = sink.ignored.take();
    ignored.extend(env_ignored);
    if !ignored.is_empty() {
        v.warn(
            &At::key(""),
            format!(
                "ignoring keys that only concern proxying (nginx or Envoy proxies, authgate only decides): {}",
                ignored.join(", ")
            ),
        );
    }
    v.finish(config)
}

/// Graft environment overrides onto the tree: `COOKIE_SECRET` replaces
/// `cookie_secret`, list keys split on commas. Empty variables are unset, as
/// Pomerium (viper) treats them. Returns proxy-only variables that are set.
fn apply_env(root: &mut Node, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let Kind::Map(entries) = &mut root.kind else {
        return Vec::new();
    };
    for key in node::struct_fields::<RawConfig>() {
        if raw::NOT_FROM_ENV.contains(key) {
            continue;
        }
        let var = key.to_ascii_uppercase();
        let Some(value) = env(&var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = if raw::LIST_KEYS.contains(key) {
            Node::env_list(key, &var, &value)
        } else {
            Node::env_str(key, &var, value.trim().to_owned())
        };
        match entries.iter_mut().find(|(k, _)| k.name == *key) {
            Some((_, existing)) => *existing = value,
            None => entries.push((
                Key {
                    name: (*key).to_owned(),
                    at: value.at.clone(),
                },
                value,
            )),
        }
    }
    raw::PROXY_ONLY_KEYS
        .iter()
        .map(|key| key.to_ascii_uppercase())
        .filter(|var| env(var).is_some_and(|v| !v.trim().is_empty()))
        .map(|var| format!("env {var}"))
        .collect()
}

/// The standard OpenTelemetry variables, for the `tracing_*` keys the
/// file (or a `TRACING_*` variable) leaves out: the file wins, as the more
/// specific setting; the signal-specific variable wins over the general.
const OTEL_ENV: [(&str, &[&str]); 3] = [
    (
        "tracing_otlp_endpoint",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ],
    ),
    (
        "tracing_otlp_protocol",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
    ),
    ("tracing_sample_rate", &["OTEL_TRACES_SAMPLER_ARG"]),
];

fn apply_otel_env(root: &mut Node, env: &dyn Fn(&str) -> Option<String>) {
    let Kind::Map(entries) = &mut root.kind else {
        return;
    };
    for (key, vars) in OTEL_ENV {
        if entries.iter().any(|(k, _)| k.name == key) {
            continue;
        }
        let found = vars
            .iter()
            .find_map(|var| Some((var, env(var).filter(|v| !v.trim().is_empty())?)));
        if let Some((var, value)) = found {
            let value = Node::env_str(key, var, value.trim().to_owned());
            entries.push((
                Key {
                    name: key.to_owned(),
                    at: value.at.clone(),
                },
                value,
            ));
        }
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

/// A field's value and location, or `None` when absent or already reported.
fn get<T>(field: &Option<Val<T>>) -> Option<(&T, &At)> {
    field
        .as_ref()
        .and_then(|v| v.value.as_ref().map(|x| (x, &v.at)))
}

/// The elements of a list field that had the right type.
fn items(field: &Option<List<String>>) -> Vec<(&str, &At)> {
    get(field)
        .map(|(list, _)| {
            list.iter()
                .filter_map(|v| v.value.as_deref().map(|s| (s, &v.at)))
                .collect()
        })
        .unwrap_or_default()
}

impl Validator {
    fn error(&mut self, at: &At, message: String) {
        self.errors.push(Problem {
            at: at.clone(),
            message,
        });
    }

    fn warn(&mut self, at: &At, message: String) {
        self.warnings.push(Problem {
            at: at.clone(),
            message,
        });
    }

    /// Pomerium's environment variables for names that are not keys here
    /// (`INSECURE_SERVER`): the same hint as in the file.
    fn pomerium_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        for p in raw::POMERIUM_KEYS.iter().filter(|p| p.from_env) {
            let var = p.key.to_ascii_uppercase();
            if env(&var).is_some_and(|v| !v.trim().is_empty()) {
                let at = At {
                    path: p.key.to_owned(),
                    origin: Origin::Env(var),
                };
                if p.error {
                    self.error(&at, p.message.to_owned());
                } else {
                    self.warn(&at, p.message.to_owned());
                }
            }
        }
    }

    fn finish(self, config: Option<Config>) -> Outcome {
        Outcome {
            config: if self.errors.is_empty() { config } else { None },
            errors: self.errors,
            warnings: self.warnings,
        }
    }

    /// A required string: reports a missing key; `None` also when the value
    /// had the wrong type (already reported).
    fn required<'r>(
        &mut self,
        field: &'r Option<Val<String>>,
        key: &str,
    ) -> Option<(&'r str, &'r At)> {
        match field {
            None => {
                self.error(&At::key(key), "required".to_owned());
                None
            }
            Some(v) => {
                let (s, at) = (v.value.as_deref()?, &v.at);
                if s.trim().is_empty() {
                    self.error(at, "must not be empty".to_owned());
                    return None;
                }
                Some((s, at))
            }
        }
    }

    fn parsed<T>(
        &mut self,
        field: &Option<Val<String>>,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match get(field) {
            None if field.as_ref().is_some_and(|v| v.value.is_none()) => None,
            None => Some(default),
            Some((s, at)) => parse(s).map_err(|e| self.error(at, e)).ok(),
        }
    }

    fn duration(
        &mut self,
        field: &Option<Val<String>>,
        default: Duration,
        check: impl FnOnce(Duration) -> Result<(), String>,
    ) -> Option<Duration> {
        self.parsed(field, default, |s| {
            let d = parse_duration(s)?;
            check(d).map(|()| d)
        })
    }

    fn flag(field: &Option<Val<bool>>, default: bool) -> bool {
        get(field).map_or(default, |(b, _)| *b)
    }

    fn config(&mut self, raw: &RawConfig) -> Option<Config> {
        let auth_url = self
            .required(&raw.authenticate_service_url, "authenticate_service_url")
            .and_then(|(s, at)| {
                parse_authenticate_url(s)
                    .map_err(|e| self.error(at, e))
                    .ok()
            });
        let idp = self.idp(raw);
        let cookie = self.cookie(raw, auth_url.as_ref());
        let address = self.parsed(&raw.address, default_addr(4180), parse_listen);
        let grpc_address = self.parsed(&raw.grpc_address, default_addr(9191), parse_listen);
        let metrics_address =
            self.parsed(&raw.metrics_address, None, |s| parse_listen(s).map(Some));
        let spoe_address = self.parsed(&raw.spoe_address, None, |s| parse_listen(s).map(Some));
        let templates = match get(&raw.templates_dir) {
            None if raw.templates_dir.is_some() => None,
            None => Some((None, Pages::builtin())),
            Some((dir, at)) => match Pages::load(Some(Path::new(dir))) {
                Ok(pages) => Some((Some(PathBuf::from(dir)), pages)),
                Err(e) => {
                    self.error(at, e.to_string());
                    None
                }
            },
        };
        let session_store = self.parsed(
            &raw.session_store,
            SessionStoreConfig::Embedded(PathBuf::from(DEFAULT_SESSION_STORE_PATH)),
            parse_session_store,
        );
        let refresh_interval =
            self.duration(&raw.refresh_interval, Duration::from_secs(300), positive);
        let refresh_grace = self.duration(&raw.refresh_grace, DEFAULT_REFRESH_GRACE, |_| Ok(()));
        let trusted_proxies = self.trusted_proxies(raw);
        let admin_groups = self.admin_groups(raw);
        let serving = self.serving(raw);
        let jwt_claims_headers = self.top_claim_headers(raw);
        let routes = self.routes(raw, jwt_claims_headers.as_deref().unwrap_or_default());
        if let Some(routes) = &routes {
            self.policy_tests(raw, routes);
        }
        let signing = self.signing(raw);
        let log_format = self.parsed(&raw.log_format, LogFormat::Pretty, |s| match s {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected `pretty` or `json`, found `{other}`")),
        });
        let log_level = self.parsed(&raw.log_level, "info".to_owned(), log_filter);
        let tracing = self.tracing(raw);

        if let Some(url) = &auth_url
            && cookie.as_ref().is_some_and(|c| c.secure)
            && url.scheme() == "http"
            && !is_loopback_host(url)
        {
            let at = raw
                .authenticate_service_url
                .as_ref()
                .map_or_else(|| At::key(""), |v| v.at.clone());
            self.warn(
                &at,
                "plain-http login host with cookie_secure: true: browsers drop Secure cookies on http, so logins will loop"
                    .to_owned(),
            );
        }

        if let (Some(idp), Some(routes)) = (&idp, &routes) {
            self.groups_scope(raw, &idp.scopes, routes);
        }

        let (templates_dir, pages) = templates?;
        Some(Config {
            address: address?,
            grpc_address: grpc_address?,
            metrics_address: metrics_address?,
            spoe_address: spoe_address?,
            authenticate_service_url: auth_url?,
            idp: idp?,
            cookie: cookie?,
            session_store: session_store?,
            refresh_interval: refresh_interval?,
            refresh_grace: refresh_grace?,
            trusted_proxies: trusted_proxies?,
            admin_groups: admin_groups?,
            routes: routes?,
            signing: signing?,
            jwt_claims_headers: jwt_claims_headers?,
            log_format: log_format?,
            log_level: log_level?,
            templates_dir,
            pages,
            serving: serving?,
            tracing: tracing?,
        })
    }

    /// `tracing_*`: on only with `tracing_provider: otlp`; the other keys
    /// are checked either way, so a typo shows before tracing is turned on.
    fn tracing(&mut self, raw: &RawConfig) -> Option<Option<TracingConfig>> {
        let on = self.parsed(&raw.tracing_provider, false, |s| match s {
            "otlp" => Ok(true),
            "none" | "" => Ok(false),
            "jaeger" | "zipkin" | "datadog" => Err(format!(
                "`{s}` is not supported: authgate sends OTLP, which Jaeger, Zipkin's and Datadog's collectors and the OpenTelemetry Collector take: write `otlp`"
            )),
            other => Err(format!("expected `otlp` or `none`, found `{other}`")),
        });
        let endpoint = self.parsed(
            &raw.tracing_otlp_endpoint,
            "http://localhost:4317".to_owned(),
            |s| match Url::parse(s) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Ok(s.to_owned())
                }
                _ => Err(format!(
                    "`{s}` is not an http(s) URL of an OTLP/gRPC collector (e.g. http://localhost:4317)"
                )),
            },
        );
        let protocol = self.parsed(&raw.tracing_otlp_protocol, (), |s| match s {
            "grpc" => Ok(()),
            "http/protobuf" | "http/json" | "http" => Err(format!(
                "`{s}` is not supported: authgate sends OTLP over gRPC (a collector's port 4317): write `grpc`"
            )),
            other => Err(format!("expected `grpc`, found `{other}`")),
        });
        let sample_ratio = self.parsed(&raw.tracing_sample_rate, 1.0, |s| match s.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(format!(
                "`{s}` is not a ratio between 0 and 1 (0.01 keeps 1 trace in 100)"
            )),
        });
        let (on, endpoint, (), sample_ratio) = (on?, endpoint?, protocol?, sample_ratio?);
        Some(on.then(|| TracingConfig {
            endpoint,
            sample_ratio,
            service_name: "authgate".to_owned(),
        }))
    }

    /// Routes that admit by group read the `groups` claim, which Dex sends
    /// only for the `groups` scope: without it they admit nobody that way.
    fn groups_scope(&mut self, raw: &RawConfig, scopes: &[String], routes: &Routes) {
        if scopes.iter().any(|s| s == "groups") {
            return;
        }
        let key = if raw.routes.is_some() {
            "routes"
        } else {
            "policy"
        };
        let by_group: Vec<String> = routes
            .iter()
            .map(Route::spec)
            .filter(|r| {
                !r.allowed_groups.is_empty()
                    || r.allowed_idp_claims.iter().any(|(c, _)| c == "groups")
            })
            .map(|r| format!("{key}[{}]", r.index))
            .collect();
        if by_group.is_empty() {
            return;
        }
        let at = raw
            .idp_scopes
            .as_ref()
            .map_or_else(|| At::key("idp_scopes"), |f| f.at.clone());
        self.warn(
            &at,
            format!(
                "`groups` is not among the scopes, so Dex sends no `groups` claim, yet {} admit by group \
                 (`allowed_groups`, `allowed_idp_claims: {{groups: …}}`): nobody gets in that way; add `groups`",
                by_group.join(", ")
            ),
        );
    }

    fn serving(&mut self, raw: &RawConfig) -> Option<ServingConfig> {
        let default = ServingConfig::default();
        let connections = |s: &str| match s.trim().parse::<usize>() {
            Ok(0) => Err("must be at least 1".to_owned()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("expected a number of connections, found `{s}`")),
        };
        let max_connections =
            self.parsed(&raw.max_connections, default.max_connections, connections);
        let max_connections_per_peer = self.parsed(
            &raw.max_connections_per_peer,
            default.max_connections_per_peer,
            connections,
        );
        let header_read_timeout = self.duration(
            &raw.header_read_timeout,
            default.header_read_timeout,
            positive,
        );
        let idle_timeout = self.duration(&raw.timeout_idle, default.idle_timeout, positive);
        let shutdown_delay = self.duration(&raw.shutdown_delay, default.shutdown_delay, |_| Ok(()));
        let shutdown_timeout =
            self.duration(&raw.shutdown_timeout, default.shutdown_timeout, positive);
        Some(ServingConfig {
            max_connections: max_connections?,
            max_connections_per_peer: max_connections_per_peer?,
            header_read_timeout: header_read_timeout?,
            idle_timeout: idle_timeout?,
            shutdown_delay: shutdown_delay?,
            shutdown_timeout: shutdown_timeout?,
        })
    }

    fn idp(&mut self, raw: &RawConfig) -> Option<IdpConfig> {
        let provider = self.parsed(&raw.idp_provider, "oidc".to_owned(), |s| {
            let s = s.trim().to_ascii_lowercase();
            match s.as_str() {
                "oidc" | "dex" => Ok(s),
                _ => Err(format!(
                    "`{s}` is not supported: authgate speaks OpenID Connect (`oidc`, or Pomerium's `dex`)"
                )),
            }
        });
        let issuer = self.required(&raw.idp_provider_url, "idp_provider_url").and_then(|(s, at)| {
            match check_issuer(s) {
                Ok(plain_http) => {
                    if plain_http {
                        self.warn(
                            at,
                            format!("plain-http issuer `{s}`: tokens and the client secret cross the network unencrypted"),
                        );
                    }
                    Some(s.to_owned())
                }
                Err(e) => {
                    self.error(at, e);
                    None
                }
            }
        });
        let client_id = self
            .required(&raw.idp_client_id, "idp_client_id")
            .map(|(s, _)| s.to_owned());
        let client_secret = self
            .secret_text(
                &raw.idp_client_secret,
                &raw.idp_client_secret_file,
                "idp_client_secret",
            )
            .map(|(s, _)| Secret::new(s.into_bytes()));
        let scopes = self.scopes(raw);
        let ca_file = match get(&raw.idp_ca_file) {
            None if raw.idp_ca_file.is_some() => None,
            None => Some((None, Vec::new())),
            Some((path, at)) => match std::fs::read(path) {
                Err(e) => {
                    self.error(at, format!("cannot read `{path}`: {e}"));
                    None
                }
                Ok(pem) if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                    self.error(at, format!("`{path}` holds no PEM certificate"));
                    None
                }
                Ok(pem) => match openidconnect::reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) => Some((Some(PathBuf::from(path)), certs)),
                    Err(e) => {
                        self.error(at, format!("`{path}`: not a PEM certificate bundle: {e}"));
                        None
                    }
                },
            },
        };
        let insecure = Self::flag(&raw.idp_tls_insecure_skip_verify, false);
        if let Some((true, at)) = get(&raw.idp_tls_insecure_skip_verify) {
            self.warn(
                at,
                "TLS verification of the provider is off: anyone on the path can impersonate it"
                    .to_owned(),
            );
        }
        let clock_skew = self.duration(&raw.idp_clock_skew, Duration::from_secs(60), |d| {
            if d > MAX_CLOCK_SKEW {
                Err("must be at most 5m: a larger leeway keeps expired tokens alive".to_owned())
            } else {
                Ok(())
            }
        });
        let allowed_audiences = self.non_empty_strings(&raw.idp_allowed_audiences);
        let (ca_file, ca_certs) = ca_file?;
        Some(IdpConfig {
            allowed_audiences,
            provider: provider?,
            issuer_url: issuer?,
            client_id: client_id?,
            client_secret: client_secret?,
            scopes: scopes?,
            ca_file,
            ca_certs,
            insecure_skip_verify: insecure,
            clock_skew: clock_skew?,
        })
    }

    /// `idp_scopes`: a list, or text holding several separated by spaces or
    /// commas, as OAuth writes them (`"openid profile email"`) and Pomerium
    /// takes them (`IDP_SCOPES=openid,email`).
    fn scopes(&mut self, raw: &RawConfig) -> Option<Vec<String>> {
        let Some(field) = &raw.idp_scopes else {
            return Some(DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect());
        };
        field.value.as_ref()?;
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for (text, at) in items(&raw.idp_scopes) {
            let mut words = text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .peekable();
            if words.peek().is_none() {
                self.error(at, "an empty scope".to_owned());
                ok = false;
            }
            for scope in words {
                if !DEX_SCOPES.contains(&scope) && !scope.starts_with(DEX_CROSS_CLIENT_PREFIX) {
                    self.warn(
                        at,
                        format!("scope `{scope}` is not one Dex knows; Dex answers `invalid_scope` to the whole login"),
                    );
                }
                if !out.iter().any(|s| s == scope) {
                    out.push(scope.to_owned());
                }
            }
        }
        if !ok {
            return None;
        }
        if !out.iter().any(|s| s == "openid") {
            self.error(&field.at, "must contain `openid`".to_owned());
            return None;
        }
        Some(out)
    }

    /// A secret from its key or its `_file` (trimmed), never both. Returns
    /// the text and where it came from.
    fn secret_text(
        &mut self,
        inline: &Option<Val<String>>,
        file: &Option<Val<String>>,
        key: &str,
    ) -> Option<(String, At)> {
        match (inline, file) {
            (Some(_), Some(f)) => {
                self.error(
                    &f.at,
                    format!("`{key}` and `{key}_file` are both set; keep one"),
                );
                None
            }
            (Some(v), None) => {
                let s = v.value.as_deref()?.trim();
                if s.is_empty() {
                    self.error(&v.at, "must not be empty".to_owned());
                    return None;
                }
                Some((s.to_owned(), v.at.clone()))
            }
            (None, Some(f)) => {
                let path = f.value.as_deref()?;
                let text = self.read_secret_file(path, &f.at)?;
                let text = text.trim();
                if text.is_empty() {
                    self.error(&f.at, format!("`{path}` is empty"));
                    return None;
                }
                Some((text.to_owned(), f.at.clone()))
            }
            (None, None) => {
                self.error(&At::key(key), format!("required (or `{key}_file`)"));
                None
            }
        }
    }

    /// Read a secret file; the error names the path, never the content.
    fn read_secret_file(&mut self, path: &str, at: &At) -> Option<String> {
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text),
                Err(_) => {
                    self.error(at, format!("`{path}` is not UTF-8 text"));
                    None
                }
            },
            Err(e) => {
                self.error(at, format!("cannot read `{path}`: {e}"));
                None
            }
        }
    }

    fn cookie(&mut self, raw: &RawConfig, auth_url: Option<&Url>) -> Option<CookieConfig> {
        let secret = self
            .secret_text(&raw.cookie_secret, &raw.cookie_secret_file, "cookie_secret")
            .and_then(|(text, at)| {
                decode_cookie_secret(&text)
                    .map_err(|e| self.error(&at, e))
                    .ok()
            });
        let previous = self.previous_secrets(raw);
        let name = self.parsed(&raw.cookie_name, "_authgate".to_owned(), |s| {
            if !s.is_empty() && s.bytes().all(is_token_byte) {
                Ok(s.to_owned())
            } else {
                Err(format!(
                    "`{s}` is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
                ))
            }
        });
        let domain = match get(&raw.cookie_domain) {
            None if raw.cookie_domain.is_some() => None,
            None => Some(None),
            Some((s, at)) => self.cookie_domain(s, at, auth_url).map(Some),
        };
        let expire = self.duration(&raw.cookie_expire, Duration::from_secs(14 * 3600), positive);
        let idle_timeout = self.parsed(&raw.cookie_idle_timeout, None, |s| {
            let d = parse_duration(s)?;
            positive(d).map(|()| Some(d))
        });
        Some(CookieConfig {
            name: name?,
            domain: domain?,
            secure: Self::flag(&raw.cookie_secure, true),
            http_only: Self::flag(&raw.cookie_http_only, true),
            expire: expire?,
            idle_timeout: idle_timeout?,
            secret: secret?,
            previous_secrets: previous?,
        })
    }

    fn cookie_domain(&mut self, s: &str, at: &At, auth_url: Option<&Url>) -> Option<String> {
        let domain = s.trim().trim_start_matches('.').to_ascii_lowercase();
        if !looks_like_domain(&domain) {
            self.error(at, format!("`{s}` is not a domain name"));
            return None;
        }
        // Without a valid login URL there is nothing to compare against; that
        // problem is reported on its own key.
        let host = auth_url?.host_str()?.trim_end_matches('.').to_owned();
        if host != domain && !host.ends_with(&format!(".{domain}")) {
            self.error(
                at,
                format!(
                    "the login host `{host}` (authenticate_service_url) is not `{domain}` or under it: \
                     browsers would refuse the session cookie"
                ),
            );
            return None;
        }
        Some(domain)
    }

    fn previous_secrets(&mut self, raw: &RawConfig) -> Option<Vec<Secret>> {
        match (
            &raw.previous_cookie_secrets,
            &raw.previous_cookie_secrets_file,
        ) {
            (Some(_), Some(f)) => {
                self.error(
                    &f.at,
                    "`previous_cookie_secrets` and `previous_cookie_secrets_file` are both set; keep one".to_owned(),
                );
                None
            }
            (Some(list), None) => {
                list.value.as_ref()?;
                let mut ok = true;
                let mut out = Vec::new();
                for (text, at) in items(&raw.previous_cookie_secrets) {
                    match decode_cookie_secret(text) {
                        Ok(secret) => out.push(secret),
                        Err(e) => {
                            self.error(at, e);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
            (None, Some(f)) => {
                let path = f.value.as_deref()?;
                let text = self.read_secret_file(path, &f.at)?;
                let mut ok = true;
                let mut out = Vec::new();
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    match decode_cookie_secret(line) {
                        Ok(secret) => out.push(secret),
                        Err(e) => {
                            self.error(&f.at, format!("`{path}` line {}: {e}", n + 1));
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
            (None, None) => Some(Vec::new()),
        }
    }

    /// `admin_groups`: group names, none empty (an empty one would look
    /// like "everybody" and match nobody).
    fn admin_groups(&mut self, raw: &RawConfig) -> Option<Vec<String>> {
        if raw.admin_groups.as_ref().is_some_and(|v| v.value.is_none()) {
            return None;
        }
        let mut ok = true;
        let mut out = Vec::new();
        for (text, at) in items(&raw.admin_groups) {
            if text.trim().is_empty() {
                self.error(at, "a group name must not be empty".to_owned());
                ok = false;
            } else {
                out.push(text.to_owned());
            }
        }
        ok.then_some(out)
    }

    fn trusted_proxies(&mut self, raw: &RawConfig) -> Option<Vec<IpNet>> {
        if raw
            .trusted_proxies
            .as_ref()
            .is_some_and(|v| v.value.is_none())
        {
            return None;
        }
        let mut ok = true;
        let mut out = Vec::new();
        for (text, at) in items(&raw.trusted_proxies) {
            let text = text.trim();
            let net = text
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
            match net {
                Ok(net) => out.push(net),
                Err(_) => {
                    self.error(
                        at,
                        format!("`{text}` is not an IP address or CIDR (e.g. `10.0.0.0/8`)"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// `policy`/`routes`: each entry's types checked here, its values by
    /// [`Route::parse`] (each problem placed at its key), then the names
    /// by [`Routes::new`]. Routes without their own `jwt_claims_headers`
    /// take `top_headers`.
    fn routes(&mut self, raw: &RawConfig, top_headers: &[ClaimHeader]) -> Option<Routes> {
        let (field, key) = match (&raw.policy, &raw.routes) {
            (Some(_), Some(r)) => {
                self.error(
                    &r.at,
                    "`policy` and `routes` are the same list; use only one".to_owned(),
                );
                return None;
            }
            (Some(p), None) => (p, "policy"),
            (None, Some(r)) => (r, "routes"),
            (None, None) => {
                self.warn(
                    &At::key("policy"),
                    "no routes: every request will be denied".to_owned(),
                );
                return Some(Routes::default());
            }
        };
        let list = field.value.as_ref()?;
        if list.is_empty() {
            self.warn(
                &field.at,
                "no routes: every request will be denied".to_owned(),
            );
        }
        let mut ok = true;
        let mut out = Vec::with_capacity(list.len());
        for (index, entry) in list.iter().enumerate() {
            let Some(route) = &entry.value else {
                ok = false;
                continue;
            };
            match self.route(index, route, &entry.at, key, top_headers) {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        match Routes::new(out) {
            Ok(routes) => Some(routes),
            Err(errors) => {
                for e in errors {
                    // A clash is placed on the `id` that makes it.
                    let at = list
                        .get(e.route)
                        .and_then(|entry| entry.value.as_ref())
                        .and_then(|r| at_of(&r.id))
                        .unwrap_or_else(|| field.at.clone());
                    self.error(&at, e.message);
                }
                None
            }
        }
    }

    /// Runs every `tests` entry against the routes; each failure is an
    /// error at its entry.
    fn policy_tests(&mut self, raw: &RawConfig, routes: &Routes) {
        let Some(list) = raw.tests.as_ref().and_then(|l| l.value.as_ref()) else {
            return;
        };
        let policy = crate::policy::Policy::compile(routes.clone());
        let now = chrono::Utc::now().timestamp();
        for entry in list {
            let Some(test) = &entry.value else { continue };
            let Some(case) = self.policy_case(test, &entry.at) else {
                continue;
            };
            let Some((expect, expect_at)) = test
                .expect
                .as_ref()
                .and_then(|v| Some((v.value.as_deref()?, &v.at)))
            else {
                self.error(
                    &At {
                        path: format!("{}.expect", entry.at.path),
                        origin: entry.at.origin.clone(),
                    },
                    "required: allow, deny or sign_in".to_owned(),
                );
                continue;
            };
            let Some(expect) = check::Expect::parse(expect) else {
                self.error(
                    expect_at,
                    format!("expected allow, deny or sign_in, found `{expect}`"),
                );
                continue;
            };
            match case.ask(&policy, now) {
                Ok(report) if report.outcome == expect => {}
                Ok(report) => self.error(
                    &entry.at,
                    format!(
                        "policy test failed: {} {} expected {}, got {}{} (`authgate explain` shows each rule)",
                        case.method,
                        case.url,
                        expect.name(),
                        report.outcome.name(),
                        report.reason.map(|r| format!(": {r}")).unwrap_or_default(),
                    ),
                ),
                Err(message) => self.error(&entry.at, message),
            }
        }
    }

    /// The request of a `tests` entry.
    fn policy_case(&mut self, test: &RawPolicyTest, at: &At) -> Option<check::Case> {
        let Some((url, _)) = get(&test.url) else {
            self.error(
                &At {
                    path: format!("{}.url", at.path),
                    origin: at.origin.clone(),
                },
                "required".to_owned(),
            );
            return None;
        };
        let source_ip = match &test.source_ip {
            Some(v) => match v.value.as_deref().map(|s| s.trim().parse::<IpAddr>()) {
                Some(Ok(ip)) => Some(ip),
                Some(Err(_)) => {
                    self.error(&v.at, "not an IP address".to_owned());
                    return None;
                }
                None => return None,
            },
            None => None,
        };
        let user = match &test.user {
            Some(v) => {
                let u = v.value.as_ref()?;
                let (groups, _) = strings(&u.groups);
                let claims = u
                    .claims
                    .as_ref()
                    .and_then(|c| c.value.as_ref())
                    .map(|entries| entries.0.iter().cloned().collect())
                    .unwrap_or_default();
                Some(check::test_user(
                    get(&u.email).map(|(e, _)| e.as_str()),
                    groups,
                    claims,
                ))
            }
            None => None,
        };
        Some(check::Case {
            url: url.clone(),
            method: get(&test.method).map_or_else(|| "GET".to_owned(), |(m, _)| m.clone()),
            source_ip,
            user,
        })
    }

    fn route(
        &mut self,
        index: usize,
        raw: &RawRoute,
        at: &At,
        key: &str,
        top_headers: &[ClaimHeader],
    ) -> Option<Route> {
        let errors_before = self.errors.len();
        let from = match &raw.from {
            None => {
                // Point at the route's mapping: the key has no node of its own.
                let missing = At {
                    path: format!("{key}[{index}].from"),
                    origin: at.origin.clone(),
                };
                self.error(&missing, "required".to_owned());
                None
            }
            Some(v) => v.value.as_deref().and_then(|s| {
                Url::parse(s.trim())
                    .map_err(|e| self.error(&v.at, format!("`{s}` is not a URL: {e}")))
                    .ok()
            }),
        };
        let (allowed_users, users_at) = strings(&raw.allowed_users);
        let (allowed_groups, groups_at) = strings(&raw.allowed_groups);
        let (allowed_domains, domains_at) = strings(&raw.allowed_domains);
        let (allowed_methods, methods_at) = strings(&raw.allowed_methods);
        let (allowed_idp_claims, claims_at) = claims(raw);
        if raw
            .allowed_methods
            .as_ref()
            .is_some_and(|f| f.value.as_ref().is_some_and(Vec::is_empty))
        {
            self.warn(
                &at_of(&raw.allowed_methods).unwrap_or_else(|| at.clone()),
                "an empty `allowed_methods` allows every method".to_owned(),
            );
        }
        let jwt_claims_headers = self
            .claim_headers(&raw.jwt_claims_headers)
            .flatten()
            .or_else(|| (!top_headers.is_empty()).then(|| top_headers.to_vec()));
        let has_from = from.is_some();
        let mut policy_places = Vec::new();
        let policy = raw
            .policy
            .as_ref()
            .and_then(|v| policy_tree(v, &mut policy_places));
        let spec = RouteConfig {
            index,
            id: get(&raw.id).map(|(s, _)| s.clone()),
            name: get(&raw.name).map(|(s, _)| s.clone()),
            policy,
            // Without a usable `from` the other values are still checked.
            from: from.unwrap_or_else(|| RouteConfig::default().from),
            prefix: get(&raw.prefix).map(|(s, _)| s.clone()),
            path: get(&raw.path).map(|(s, _)| s.clone()),
            regex: get(&raw.regex).map(|(s, _)| s.clone()),
            allowed_users,
            allowed_domains,
            allowed_groups,
            allowed_idp_claims,
            allow_public_unauthenticated_access: Self::flag(
                &raw.allow_public_unauthenticated_access,
                false,
            ),
            allow_any_authenticated_user: Self::flag(&raw.allow_any_authenticated_user, false),
            pass_identity_headers: Self::flag(&raw.pass_identity_headers, true),
            jwt_claims_headers,
            allowed_methods,
            cors_allow_preflight: Self::flag(&raw.cors_allow_preflight, false),
        };
        let route = match Route::parse(spec) {
            Ok(route) => Some(route),
            Err(problems) => {
                for problem in problems {
                    if problem.field == RouteField::From && !has_from {
                        continue;
                    }
                    let place = match problem.field {
                        RouteField::Entry => None,
                        RouteField::Id => at_of(&raw.id),
                        RouteField::From => at_of(&raw.from),
                        RouteField::Prefix => at_of(&raw.prefix),
                        RouteField::Path => at_of(&raw.path),
                        RouteField::Regex => at_of(&raw.regex),
                        RouteField::AllowedUsers(i) => users_at.get(i).cloned(),
                        RouteField::AllowedDomains(i) => domains_at.get(i).cloned(),
                        RouteField::AllowedGroups(i) => groups_at.get(i).cloned(),
                        RouteField::AllowedIdpClaims { claim, value } => claims_at
                            .get(claim)
                            .and_then(|values| values.get(value))
                            .cloned(),
                        RouteField::AllowPublicUnauthenticatedAccess => {
                            at_of(&raw.allow_public_unauthenticated_access)
                        }
                        RouteField::JwtClaimsHeaders => at_of(&raw.jwt_claims_headers),
                        RouteField::AllowedMethods(i) => methods_at.get(i).cloned(),
                        RouteField::Policy(place) => policy_places.get(place as usize).cloned(),
                    };
                    self.error(&place.unwrap_or_else(|| at.clone()), problem.message);
                }
                None
            }
        };
        if self.errors.len() != errors_before {
            return None;
        }
        let route = route?;
        let spec = route.spec();
        if spec.policy.is_none()
            && !spec.allow_public_unauthenticated_access
            && !spec.allow_any_authenticated_user
            && spec.allowed_users.is_empty()
            && spec.allowed_groups.is_empty()
            && spec.allowed_domains.is_empty()
            && spec.allowed_idp_claims.is_empty()
        {
            self.warn(
                at,
                "no allow rule (allowed_users, allowed_domains, allowed_groups, allowed_idp_claims, \
                 allow_any_authenticated_user or allow_public_unauthenticated_access): it denies everyone"
                    .to_owned(),
            );
        }
        Some(route)
    }

    /// The top-level `jwt_claims_headers`, each header checked as a route's
    /// are (see [`claim_header_names`]).
    fn top_claim_headers(&mut self, raw: &RawConfig) -> Option<Vec<ClaimHeader>> {
        let list = self.claim_headers(&raw.jwt_claims_headers)?;
        if let (Some(field), Err(problems)) =
            (&raw.jwt_claims_headers, claim_header_names(list.as_deref()))
        {
            for message in problems {
                self.error(&field.at, message);
            }
            return None;
        }
        Some(list.unwrap_or_default())
    }

    /// `jwt_claims_headers`, Pomerium's two forms: a mapping `header: claim`,
    /// or claim names (a list, or comma-separated text from the environment)
    /// sent as `X-Pomerium-Claim-<Claim>` with `_` turned into `-`.
    /// `Some(None)` when absent; `None` after an error.
    fn claim_headers(&mut self, field: &Option<Val<Value>>) -> Option<Option<Vec<ClaimHeader>>> {
        let Some(field) = field else {
            return Some(None);
        };
        let value = field.value.as_ref()?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut ok = true;
        let claim_header = |claim: &str| format!("x-pomerium-claim-{}", claim.replace('_', "-"));
        match value {
            Value::Object(map) => {
                for (header, claim) in map {
                    match claim.as_str().map(str::trim) {
                        Some(claim) if !claim.is_empty() => {
                            pairs.push((header.trim().to_ascii_lowercase(), claim.to_owned()));
                        }
                        _ => {
                            self.error(&field.at, format!("`{header}`: expected a claim name"));
                            ok = false;
                        }
                    }
                }
            }
            Value::Array(list) => {
                for claim in list {
                    match claim.as_str().map(str::trim) {
                        Some(claim) if !claim.is_empty() => {
                            pairs.push((claim_header(claim), claim.to_owned()));
                        }
                        _ => {
                            self.error(&field.at, "expected a list of claim names".to_owned());
                            ok = false;
                        }
                    }
                }
            }
            Value::String(text) => {
                for claim in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    pairs.push((claim_header(claim), claim.to_owned()));
                }
            }
            _ => {
                self.error(
                    &field.at,
                    "expected a mapping `header: claim` or a list of claim names".to_owned(),
                );
                return None;
            }
        }
        let out = pairs
            .into_iter()
            .map(|(header, claim)| ClaimHeader { header, claim })
            .collect();
        ok.then_some(Some(out))
    }

    /// `signing_key`(`_file`) and `previous_signing_keys`(`_file`), parsed
    /// as P-256 keys; messages never quote the key.
    fn signing(&mut self, raw: &RawConfig) -> Option<SigningConfig> {
        let key = match (&raw.signing_key, &raw.signing_key_file) {
            (None, None) => Some(None),
            _ => self
                .secret_text(&raw.signing_key, &raw.signing_key_file, "signing_key")
                .and_then(|(text, at)| {
                    // The PEM text is wiped once parsed, as a `Secret` is.
                    let text = zeroize::Zeroizing::new(text);
                    match private_key_from_pem(text.as_bytes()) {
                        Ok(key) => Some(Some(key.into())),
                        Err(e) => {
                            self.error(&at, e.to_string());
                            None
                        }
                    }
                }),
        };
        let mut blocks: Vec<(String, At)> = Vec::new();
        match (&raw.previous_signing_keys, &raw.previous_signing_keys_file) {
            (Some(_), Some(f)) => {
                self.error(
                    &f.at,
                    "`previous_signing_keys` and `previous_signing_keys_file` are both set; keep one"
                        .to_owned(),
                );
                return None;
            }
            (Some(_), None) => {
                for (text, at) in items(&raw.previous_signing_keys) {
                    blocks.push((text.to_owned(), at.clone()));
                }
            }
            (None, Some(f)) => {
                let path = f.value.as_deref()?;
                let text = self.read_secret_file(path, &f.at)?;
                for block in text.split("-----BEGIN").skip(1) {
                    blocks.push((format!("-----BEGIN{block}"), f.at.clone()));
                }
            }
            (None, None) => {}
        }
        let mut previous = Vec::with_capacity(blocks.len());
        let mut ok = true;
        for (text, at) in blocks {
            let text = zeroize::Zeroizing::new(text);
            match public_key_from_pem(text.as_bytes()) {
                Ok(key) => previous.push(key),
                Err(e) => {
                    self.error(&at, e.to_string());
                    ok = false;
                }
            }
        }
        Some(SigningConfig {
            key: key?,
            previous: ok.then_some(previous)?,
        })
    }

    fn non_empty_strings(&mut self, field: &Option<List<String>>) -> Vec<String> {
        let mut out = Vec::new();
        for (s, at) in items(field) {
            let s = s.trim();
            if s.is_empty() {
                self.error(at, "must not be empty".to_owned());
            } else {
                out.push(s.to_owned());
            }
        }
        out
    }
}

/// A field's position, when it is in the file.
fn at_of<T>(field: &Option<Val<T>>) -> Option<At> {
    field.as_ref().map(|v| v.at.clone())
}

/// A list of strings (the elements of the right type) and where each is.
fn strings(field: &Option<List<String>>) -> (Vec<String>, Vec<At>) {
    items(field)
        .into_iter()
        .map(|(s, at)| (s.to_owned(), at.clone()))
        .unzip()
}

/// `allowed_idp_claims`: claim → values as written (their types are
/// checked by [`Route::parse`]), and where each value is.
/// A located `policy` value as the policy module's tree; each node's place
/// is its index in `places`. `None` when a node had no usable value (its
/// problem is already recorded).
fn policy_tree(value: &Val<Located>, places: &mut Vec<At>) -> Option<ppl::Tree> {
    let place = u32::try_from(places.len()).ok()?;
    places.push(value.at.clone());
    let kind = match value.value.as_ref()? {
        Located::Null => ppl::TreeKind::Null,
        Located::Bool(b) => ppl::TreeKind::Bool(*b),
        Located::Number(n) => ppl::TreeKind::Number(n.clone()),
        Located::Str(s) => ppl::TreeKind::Str(s.clone()),
        Located::Seq(items) => ppl::TreeKind::Seq(
            items
                .iter()
                .map(|item| policy_tree(item, places))
                .collect::<Option<_>>()?,
        ),
        Located::Map(entries) => ppl::TreeKind::Map(
            entries
                .iter()
                .map(|(k, v)| Some((k.clone(), policy_tree(v, places)?)))
                .collect::<Option<_>>()?,
        ),
    };
    Some(ppl::Tree { place, kind })
}

/// Claim → accepted values, as `RouteConfig::allowed_idp_claims` holds them.
type Claims = Vec<(String, Vec<Value>)>;

fn claims(raw: &RawRoute) -> (Claims, Vec<Vec<At>>) {
    let Some((entries, _)) = get(&raw.allowed_idp_claims) else {
        return (Vec::new(), Vec::new());
    };
    let mut out = Vec::with_capacity(entries.0.len());
    let mut places = Vec::with_capacity(entries.0.len());
    for (claim, values) in &entries.0 {
        let Some(values) = &values.value else {
            continue;
        };
        let (accepted, at): (Vec<Value>, Vec<At>) = values
            .iter()
            .filter_map(|v| v.value.clone().map(|value| (value, v.at.clone())))
            .unzip();
        out.push((claim.clone(), accepted));
        places.push(at);
    }
    (out, places)
}

/// `log_level`: a level, or tracing directives (`authgate=debug,warn`)
/// whose levels are levels. Pomerium's names that differ are mapped
/// (`warning` → `warn`, `fatal` and `panic` → `error`, `disabled` → `off`).
/// Any other word is refused: tracing would take it for a target name and
/// silence every log.
fn log_filter(s: &str) -> Result<String, String> {
    let mut directives = Vec::new();
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        let level = match level.to_ascii_lowercase().as_str() {
            l @ ("off" | "error" | "warn" | "info" | "debug" | "trace") => l.to_owned(),
            "warning" => "warn".to_owned(),
            "fatal" | "panic" => "error".to_owned(),
            "disabled" => "off".to_owned(),
            _ => {
                return Err(format!(
                    "`{level}` is not a log level: write error, warn, info, debug or trace \
                     (or off), or directives such as `authgate=debug,warn`"
                ));
            }
        };
        match target {
            None => directives.push(level),
            Some(t)
                if !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') =>
            {
                directives.push(format!("{t}={level}"));
            }
            Some(t) => {
                return Err(format!(
                    "`{t}` is not a module path (as in `authgate::http=debug`)"
                ));
            }
        }
    }
    if directives.is_empty() {
        return Err("must not be empty: write error, warn, info, debug or trace".to_owned());
    }
    let filter = directives.join(",");
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("not a log filter (`info`, `authgate=debug,warn`…): {e}"))?;
    Ok(filter)
}

fn positive(d: Duration) -> Result<(), String> {
    if d.is_zero() {
        Err("must be greater than zero".to_owned())
    } else {
        Ok(())
    }
}

fn default_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// `IP:port`, `[v6]:port`, or Pomerium's `:port` for all interfaces.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_owned(),
    };
    full.parse().map_err(|_| {
        format!("`{s}` is not a listen address; write `IP:port` such as `0.0.0.0:4180`, or `:4180`")
    })
}

fn parse_authenticate_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{s}` must be an absolute http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(format!(
            "`{s}` must be a bare origin such as `https://auth.example.com` (no path, query or fragment)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user or password".to_owned());
    }
    Ok(url)
}

/// Check the issuer; `Ok(true)` when it is plain http (allowed, but warned).
fn check_issuer(s: &str) -> Result<bool, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{s}` must be an absolute http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{s}`: an issuer has no query or fragment"));
    }
    if s != s.trim() {
        return Err("has surrounding spaces; the issuer is compared byte for byte".to_owned());
    }
    Ok(url.scheme() == "http")
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `session_store` values. The error never repeats the value: a Redis URL
/// can carry a password.
fn parse_session_store(s: &str) -> Result<SessionStoreConfig, String> {
    let s = s.trim();
    if s == "memory" {
        return Ok(SessionStoreConfig::Memory);
    }
    if let Some(path) = s.strip_prefix("embedded:") {
        if path.is_empty() {
            return Err(
                "`embedded:` needs a file path, e.g. `embedded:/var/lib/authgate/sessions.redb`"
                    .to_owned(),
            );
        }
        return Ok(SessionStoreConfig::Embedded(PathBuf::from(path)));
    }
    const REDIS: &[&str] = &[
        "redis://",
        "rediss://",
        "redis+sentinel://",
        "redis+cluster://",
    ];
    if let Some(prefix) = REDIS.iter().find(|p| s.starts_with(**p)) {
        if s.len() == prefix.len() {
            return Err(format!("`{prefix}` needs a host"));
        }
        // As the store will read it (its errors never repeat the URL).
        crate::session::redis::RedisTarget::parse(s).map_err(|e| e.to_string())?;
        return Ok(SessionStoreConfig::Redis(s.to_owned()));
    }
    Err(
        "expected `memory`, `embedded:/path/sessions.redb`, or a `redis://`, `rediss://`, \
         `redis+sentinel://` or `redis+cluster://` URL"
            .to_owned(),
    )
}

fn decode_cookie_secret(text: &str) -> Result<Secret, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| format!("is not base64; {SECRET_HINT}"))?;
    if bytes.len() != 32 {
        return Err(format!(
            "decodes to {} bytes, not 32; {SECRET_HINT}",
            bytes.len()
        ));
    }
    Ok(Secret::new(bytes))
}
