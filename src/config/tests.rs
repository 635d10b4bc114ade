#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use serde_json::json;

use super::*;

/// Base64 of 32 bytes `0x01`.
const SECRET_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
/// Base64 of 32 bytes `0x02`, url-safe alphabet, unpadded.
const SECRET_B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI";

fn minimal() -> String {
    format!(
        "authenticate_service_url: https://auth.example.com\n\
         idp_provider_url: https://dex.example.com/dex\n\
         idp_client_id: hello\n\
         idp_client_secret: s3cret-value\n\
         cookie_secret: {SECRET_A}\n"
    )
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Loaded, ConfigErrors> {
    parse_str("authgate.yaml", text, &no_env)
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    parse_str("authgate.yaml", text, &move |k| map.get(k).cloned())
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// A minimal file gets every documented default.
#[test]
fn minimal_config_gets_defaults() {
    let loaded = parse(&minimal()).unwrap();
    let c = &loaded.config;
    assert_eq!(c.address.to_string(), "0.0.0.0:4180");
    assert_eq!(c.grpc_address.to_string(), "0.0.0.0:9191");
    assert_eq!(
        c.authenticate_service_url.as_str(),
        "https://auth.example.com/"
    );
    assert_eq!(c.idp.provider, "oidc");
    assert_eq!(c.idp.issuer_url, "https://dex.example.com/dex");
    assert_eq!(c.idp.client_id, "hello");
    assert_eq!(c.idp.client_secret.expose(), b"s3cret-value");
    assert_eq!(
        c.idp.scopes,
        ["openid", "email", "profile", "groups", "offline_access"]
    );
    assert_eq!(c.idp.ca_file, None);
    assert!(!c.idp.insecure_skip_verify);
    assert_eq!(c.idp.clock_skew, Duration::from_secs(60));
    assert_eq!(c.cookie.name, "_authgate");
    assert_eq!(c.cookie.domain, None);
    assert!(c.cookie.secure && c.cookie.http_only);
    assert_eq!(c.cookie.expire, Duration::from_secs(14 * 3600));
    assert_eq!(c.cookie.secret.expose(), &[1u8; 32]);
    assert!(c.cookie.previous_secrets.is_empty());
    assert_eq!(
        c.session_store,
        SessionStoreConfig::Embedded("/var/lib/authgate/sessions.redb".into())
    );
    assert_eq!(c.refresh_interval, Duration::from_secs(300));
    assert_eq!(c.refresh_grace, Duration::from_secs(3600));
    assert_eq!(c.cookie.idle_timeout, None, "no idle timeout unless asked");
    assert!(c.trusted_proxies.is_empty());
    assert!(c.routes.is_empty());
    assert_eq!(c.log_format, LogFormat::Pretty);
    assert_eq!(c.log_level, "info");
    assert_eq!(
        loaded.warnings,
        ["authgate.yaml: policy: no routes: every request will be denied"]
    );
}

/// Settings as a Pomerium user has them (Helm values style) carry over.
#[test]
fn pomerium_seed_config_carries_over() {
    let text = format!(
        "{}idp_provider: dex\n\
         idp_scopes:\n  - openid\n  - email\n  - groups\n\
         cookie_domain: .Example.COM\n\
         address: :8443\n\
         policy:\n\
         \x20 - from: https://Hello.Example.com.\n\
         \x20   to: http://hello.default.svc.cluster.local:8080\n\
         \x20   allowed_groups: [devops, sre]\n\
         \x20   allowed_idp_claims:\n\
         \x20     email_verified: true\n\
         \x20     department: [eng, 42]\n\
         \x20 - from: https://*.example.com:8443\n\
         \x20   prefix: /api\n\
         \x20   allowed_users: alice@example.com\n\
         \x20   allowed_domains: [Example.ORG]\n\
         \x20   pass_identity_headers: false\n",
        minimal()
    );
    let loaded = parse(&text).unwrap();
    let c = &loaded.config;
    assert_eq!(c.idp.provider, "dex");
    assert_eq!(c.idp.scopes, ["openid", "email", "groups"]);
    assert_eq!(c.cookie.domain.as_deref(), Some("example.com"));
    assert_eq!(c.address.to_string(), "0.0.0.0:8443");
    let [r0, r1] = &c.routes[..] else {
        panic!("two routes")
    };
    let (r0, r1) = (r0.spec(), r1.spec());
    assert_eq!(r0.index, 0);
    assert_eq!(r0.from.as_str(), "https://hello.example.com/");
    assert_eq!(r0.allowed_groups, ["devops", "sre"]);
    assert_eq!(
        r0.allowed_idp_claims,
        [
            ("email_verified".to_owned(), vec![json!(true)]),
            ("department".to_owned(), vec![json!("eng"), json!(42)]),
        ]
    );
    assert!(r0.pass_identity_headers);
    assert_eq!(r1.index, 1);
    assert_eq!(r1.from.host_str(), Some("*.example.com"));
    assert_eq!(r1.from.port(), Some(8443));
    assert_eq!(r1.prefix.as_deref(), Some("/api"));
    assert_eq!(r1.allowed_users, ["alice@example.com"]);
    assert_eq!(r1.allowed_domains, ["example.org"]);
    assert!(!r1.pass_identity_headers);
    assert_eq!(
        loaded.warnings,
        [
            "authgate.yaml: ignoring keys that only concern proxying (nginx or Envoy proxies, authgate only decides): policy[].to"
        ]
    );
}

/// An unknown key is an error at its line and column, with a suggestion
/// when it looks like a typo.
#[test]
fn unknown_key_has_line_column_and_suggestion() {
    let text = format!(
        "{}cookie_secrte: x\npolicy:\n  - from: https://a.example.com\n    alowed_groups: [x]\n    frobnicate: 1\n",
        minimal()
    );
    assert_eq!(
        errors(&text),
        [
            "authgate.yaml:6:1: cookie_secrte: unknown key `cookie_secrte`; did you mean `cookie_secret`?",
            "authgate.yaml:9:5: policy[0].alowed_groups: unknown key `alowed_groups`; did you mean `allowed_groups`?",
            "authgate.yaml:10:5: policy[0].frobnicate: unknown key `frobnicate`",
        ]
    );
}

/// Three independent mistakes make three errors, each located.
#[test]
fn independent_errors_are_all_reported() {
    let text = "authenticate_service_url: https://auth.example.com/login\n\
                idp_provider_url: https://dex.example.com/dex\n\
                idp_client_id: hello\n\
                idp_client_secret: x\n\
                cookie_secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\
                cookie_expire: forever\n\
                policy:\n  - from: https://a.example.com\n    allowed_groups: {devops: true}\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("authgate.yaml:1:27: authenticate_service_url: "),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("authgate.yaml:6:16: cookie_expire: "),
        "{}",
        errs[1]
    );
    assert_eq!(
        errs[2],
        "authgate.yaml:9:21: policy[0].allowed_groups: expected a list, found a mapping"
    );
}

/// Environment variables override the file, scalars and comma lists alike,
/// and an env mistake is reported against the variable.
#[test]
fn env_overrides_file() {
    let loaded = parse_env(
        &minimal(),
        &[
            ("COOKIE_EXPIRE", "1h30m"),
            ("IDP_SCOPES", "openid, email"),
            ("TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7"),
            ("PREVIOUS_COOKIE_SECRETS", SECRET_B),
            ("COOKIE_SECURE", "false"),
            ("ADDRESS", ""),
        ],
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.cookie.expire, Duration::from_secs(5400));
    assert_eq!(c.idp.scopes, ["openid", "email"]);
    assert_eq!(
        c.trusted_proxies,
        [
            "10.0.0.0/8".parse().unwrap(),
            "192.168.1.7/32".parse().unwrap()
        ]
    );
    assert_eq!(c.cookie.previous_secrets[0].expose(), &[2u8; 32]);
    assert!(!c.cookie.secure);
    assert_eq!(c.address.to_string(), "0.0.0.0:4180", "empty env is unset");

    let err = parse_env(
        &minimal(),
        &[("REFRESH_INTERVAL", "5"), ("IDP_SCOPES", "email")],
    )
    .unwrap_err();
    let errs: Vec<_> = err.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        errs,
        [
            "env IDP_SCOPES: idp_scopes: must contain `openid`",
            "env REFRESH_INTERVAL: refresh_interval: `5` has a number without a unit; write e.g. `5s`",
        ]
    );
    assert_eq!(err.0[0].line, None);
}

/// A bad secret is reported without its value, from the file and from the
/// environment alike.
#[test]
fn bad_secret_value_is_never_printed() {
    let bad = "hunter2-not-base64!!";
    let text = minimal().replace(SECRET_A, bad);
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("authgate.yaml:5:16: cookie_secret: is not base64"),
        "{err}"
    );
    assert!(!err.contains(bad), "{err}");

    let short = "c2hvcnQ="; // "short"
    let err = parse_env(&minimal(), &[("COOKIE_SECRET", short)])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("env COOKIE_SECRET: cookie_secret: decodes to 5 bytes"),
        "{err}"
    );
    assert!(!err.contains(short), "{err}");

    let prev = format!(
        "{}previous_cookie_secrets: [{SECRET_B}, {bad}]\n",
        minimal()
    );
    let err = parse(&prev).unwrap_err().to_string();
    assert!(
        err.contains("previous_cookie_secrets[1]: is not base64"),
        "{err}"
    );
    assert!(!err.contains(bad), "{err}");
}

/// The secret-holding types print no secret in `Debug`.
#[test]
fn debug_output_has_no_secrets() {
    let loaded = parse(&minimal()).unwrap();
    let debug = format!("{loaded:?}");
    assert!(!debug.contains("s3cret-value"), "{debug}");
    assert!(!debug.contains(SECRET_A), "{debug}");
    assert!(debug.contains("Secret(<redacted>)"));
}

/// Secrets compare by content (in constant time, `subtle`): equal bytes are
/// equal, a different byte or length is not.
#[test]
fn secrets_compare_by_content() {
    let a = Secret::new(vec![1u8; 32]);
    assert_eq!(a, Secret::new(vec![1u8; 32]));
    assert_eq!(a.clone(), a);
    let mut other = vec![1u8; 32];
    other[31] = 2;
    assert_ne!(a, Secret::new(other));
    assert_ne!(a, Secret::new(vec![1u8; 31]));
    assert_ne!(Secret::new(Vec::new()), a);
}

fn temp_file(content: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content.as_bytes()).unwrap();
    f
}

/// `*_file` variants are read and trimmed; unreadable files are named.
#[test]
fn secret_files_are_read_and_trimmed() {
    let cookie = temp_file(&format!("\n  {SECRET_A}\n"));
    let client = temp_file("client-secret\n");
    let previous = temp_file(&format!("# rotated 2024-05\n{SECRET_B}\n\n"));
    let text = format!(
        "authenticate_service_url: https://auth.example.com\n\
         idp_provider_url: https://dex.example.com/dex\n\
         idp_client_id: hello\n\
         idp_client_secret_file: {}\n\
         cookie_secret_file: {}\n\
         previous_cookie_secrets_file: {}\n",
        client.path().display(),
        cookie.path().display(),
        previous.path().display()
    );
    let c = parse(&text).unwrap().config;
    assert_eq!(c.idp.client_secret.expose(), b"client-secret");
    assert_eq!(c.cookie.secret.expose(), &[1u8; 32]);
    assert_eq!(c.cookie.previous_secrets.len(), 1);
    assert_eq!(c.cookie.previous_secrets[0].expose(), &[2u8; 32]);

    let missing = text.replace(&cookie.path().display().to_string(), "/nonexistent/cookie");
    let errs = errors(&missing);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "authgate.yaml:5:21: cookie_secret_file: cannot read `/nonexistent/cookie`"
        ),
        "{}",
        errs[0]
    );

    // Set through the environment, the file is named with the variable.
    let bad = temp_file("not-a-secret-at-all");
    let err = parse_env(
        &text.replace(
            &format!("cookie_secret_file: {}\n", cookie.path().display()),
            "",
        ),
        &[("COOKIE_SECRET_FILE", &bad.path().display().to_string())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("env COOKIE_SECRET_FILE: cookie_secret_file: is not base64"),
        "{err}"
    );
    assert!(!err.contains("not-a-secret-at-all"), "{err}");
}

/// A secret set both inline and as a file is ambiguous: an error.
#[test]
fn key_and_file_both_set_is_an_error() {
    let f = temp_file(SECRET_A);
    let text = format!("{}cookie_secret_file: {}\n", minimal(), f.path().display());
    assert_eq!(
        errors(&text),
        [
            "authgate.yaml:6:21: cookie_secret_file: `cookie_secret` and `cookie_secret_file` are both set; keep one"
        ]
    );
    let err = parse_env(&minimal(), &[("IDP_CLIENT_SECRET_FILE", "/x")]).unwrap_err();
    assert_eq!(err.0[0].source, "env IDP_CLIENT_SECRET_FILE");
}

#[test]
fn bad_durations_are_located() {
    let cases: &[(&str, &str)] = &[
        (
            "cookie_expire: 0s",
            "cookie_expire: must be greater than zero",
        ),
        (
            "cookie_expire: 14",
            "cookie_expire: `14` has a number without a unit",
        ),
        (
            "refresh_interval: 1d",
            "refresh_interval: `1d`: unknown unit `d`",
        ),
        ("idp_clock_skew: 10m", "idp_clock_skew: must be at most 5m"),
        (
            "cookie_idle_timeout: 0s",
            "cookie_idle_timeout: must be greater than zero",
        ),
        ("refresh_grace: soon", "refresh_grace: `soon`"),
        ("idp_clock_skew: -1s", "idp_clock_skew: `-1s` is negative"),
    ];
    for (line, want) in cases {
        let errs = errors(&format!("{}{line}\n", minimal()));
        assert_eq!(errs.len(), 1, "{line}: {errs:?}");
        assert!(errs[0].starts_with("authgate.yaml:6:"), "{}", errs[0]);
        assert!(errs[0].contains(want), "{line}: {}", errs[0]);
    }
}

/// authgate's own session keys: an idle timeout turns on when set; the
/// refresh grace takes any duration, zero included (end the session as
/// soon as a due refresh cannot reach the provider); both from the file or
/// the environment.
#[test]
fn idle_timeout_and_refresh_grace() {
    let text = format!("{}cookie_idle_timeout: 30m\nrefresh_grace: 0s\n", minimal());
    let c = parse(&text).unwrap().config;
    assert_eq!(c.cookie.idle_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(c.refresh_grace, Duration::ZERO);
    let c = parse_env(
        &minimal(),
        &[("COOKIE_IDLE_TIMEOUT", "1h"), ("REFRESH_GRACE", "15m")],
    )
    .unwrap()
    .config;
    assert_eq!(c.cookie.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(c.refresh_grace, Duration::from_secs(900));
}

/// The browser drops a cookie whose Domain does not cover the login host.
#[test]
fn cookie_domain_must_cover_login_host() {
    let table: &[(&str, Option<&str>)] = &[
        ("example.com", Some("example.com")),
        (".example.com", Some("example.com")),
        ("auth.example.com", Some("auth.example.com")),
        ("ample.com", None),
        ("other.org", None),
        ("sub.auth.example.com", None),
    ];
    for (domain, want) in table {
        let text = format!("{}cookie_domain: {domain}\n", minimal());
        match (parse(&text), want) {
            (Ok(l), Some(want)) => assert_eq!(l.config.cookie.domain.as_deref(), Some(*want)),
            (Err(e), None) => {
                let e = e.to_string();
                assert!(
                    e.starts_with(
                        "authgate.yaml:6:16: cookie_domain: the login host `auth.example.com`"
                    ),
                    "{e}"
                );
            }
            (other, _) => panic!("{domain}: {:?}", other.map(|l| l.config.cookie.domain)),
        }
    }
}

#[test]
fn route_from_rules() {
    let table: &[(&str, Result<&str, &str>)] = &[
        ("https://*.Example.com", Ok("https://*.example.com/")),
        (
            "http://hello.example.com:8080",
            Ok("http://hello.example.com:8080/"),
        ),
        (
            "https://hello.example.com./",
            Ok("https://hello.example.com/"),
        ),
        (
            "https://a.*.example.com",
            Err("wildcard may only be the whole first label"),
        ),
        (
            "https://a*.example.com",
            Err("wildcard may only be the whole first label"),
        ),
        (
            "https://hello.example.com/app",
            Err("must be only scheme, host and port"),
        ),
        (
            "https://hello.example.com?x=1",
            Err("must be only scheme, host and port"),
        ),
        (
            "ftp://hello.example.com",
            Err("must start with http:// or https://"),
        ),
        ("hello.example.com", Err("is not a URL")),
    ];
    for (from, want) in table {
        let text = format!(
            "{}policy:\n  - from: \"{from}\"\n    allow_any_authenticated_user: true\n",
            minimal()
        );
        match (parse(&text), want) {
            (Ok(l), Ok(url)) => assert_eq!(l.config.routes[0].spec().from.as_str(), *url, "{from}"),
            (Err(e), Err(msg)) => {
                let e = e.to_string();
                assert!(e.starts_with("authgate.yaml:7:11: policy[0].from: "), "{e}");
                assert!(e.contains(msg), "{from}: {e}");
            }
            (got, _) => panic!(
                "{from}: {:?}",
                got.map(|l| l.config.routes[0].spec().from.to_string())
            ),
        }
    }
}

/// A regex that does not compile is reported at its line with the reason,
/// in one line.
#[test]
fn regex_compile_error_is_located() {
    let text = format!(
        "{}policy:\n  - from: https://a.example.com\n    regex: \"/api/[a-\"\n    allow_any_authenticated_user: true\n",
        minimal()
    );
    assert_eq!(
        errors(&text),
        [
            "authgate.yaml:8:12: policy[0].regex: regex `/api/[a-` does not compile: unclosed character class"
        ]
    );
}

#[test]
fn route_rule_conflicts() {
    let cases: &[(&str, &str)] = &[
        (
            "    prefix: /a\n    path: /a/b\n    allow_any_authenticated_user: true\n",
            "authgate.yaml:9:11: policy[0].path: `prefix`, `path` and `regex` exclude each other",
        ),
        (
            "    prefix: api\n    allow_any_authenticated_user: true\n",
            "authgate.yaml:8:13: policy[0].prefix: `prefix` must start with `/`",
        ),
        (
            "    allow_public_unauthenticated_access: true\n    allowed_groups: [devops]\n",
            "authgate.yaml:8:42: policy[0].allow_public_unauthenticated_access: a public route cannot also have",
        ),
        (
            "    allowed_domains: [alice@example.com]\n",
            "authgate.yaml:8:23: policy[0].allowed_domains[0]: `alice@example.com` is an address",
        ),
        (
            "    allowed_idp_claims:\n      groups: [[a]]\n",
            "authgate.yaml:9:16: policy[0].allowed_idp_claims.groups[0]: expected a string, number or boolean",
        ),
    ];
    for (body, want) in cases {
        let text = format!(
            "{}policy:\n  - from: https://a.example.com\n{body}",
            minimal()
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{body}: {errs:?}");
        assert!(errs[0].starts_with(want), "{body}: {}", errs[0]);
    }
}

#[test]
fn duplicate_route_ids_are_refused() {
    let text = format!(
        "{}policy:\n  - id: app\n    from: https://a.example.com\n    allow_any_authenticated_user: true\n  \
         - id: app\n    from: https://b.example.com\n    allow_any_authenticated_user: true\n",
        minimal()
    );
    assert_eq!(
        errors(&text),
        ["authgate.yaml:10:9: policy[1].id: route id `app` is already used by route 0"]
    );
}

/// A route with no allow rule denies everyone: legal, but worth a warning.
#[test]
fn route_without_allow_rule_warns() {
    let text = format!("{}policy:\n  - from: https://a.example.com\n", minimal());
    let loaded = parse(&text).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].starts_with("authgate.yaml:7:5: policy[0]: no allow rule"),
        "{}",
        loaded.warnings[0]
    );
}

/// `routes` is an alias of `policy`; having both is refused.
#[test]
fn routes_alias() {
    let route = "  - from: https://a.example.com\n    allow_any_authenticated_user: true\n";
    let loaded = parse(&format!("{}routes:\n{route}", minimal())).unwrap();
    assert_eq!(loaded.config.routes.len(), 1);
    assert!(loaded.config.routes[0].spec().allow_any_authenticated_user);

    let errs = errors(&format!("{}policy:\n{route}routes:\n{route}", minimal()));
    assert_eq!(
        errs,
        ["authgate.yaml:10:3: routes: `policy` and `routes` are the same list; use only one"]
    );
}

/// Proxy-only keys, at the top, in routes and in the environment, make a
/// single warning that names each kind once.
#[test]
fn proxy_only_keys_make_one_warning() {
    let text = format!(
        "{}certificate_file: /tls/cert.pem\nautocert: false\n\
         policy:\n  - from: https://a.example.com\n    to: http://a:80\n    preserve_host_header: true\n    allow_any_authenticated_user: true\n\
         \x20 - from: https://b.example.com\n    to: [http://b:80]\n    tls_skip_verify: true\n    allow_any_authenticated_user: true\n",
        minimal()
    );
    let loaded = parse_env(&text, &[("SHARED_SECRET", "xyz")]).unwrap();
    assert_eq!(
        loaded.warnings,
        [
            "authgate.yaml: ignoring keys that only concern proxying (nginx or Envoy proxies, authgate only decides): \
          certificate_file, autocert, policy[].to, policy[].preserve_host_header, \
          policy[].tls_skip_verify, env SHARED_SECRET"
        ]
    );
}

#[test]
fn other_keys_are_validated() {
    let cases: &[(&str, &str)] = &[
        (
            "idp_provider: github",
            "idp_provider: `github` is not supported",
        ),
        ("idp_scopes: [email]", "idp_scopes: must contain `openid`"),
        (
            "cookie_name: \"bad name\"",
            "cookie_name: `bad name` is not a valid cookie name",
        ),
        (
            "address: localhost:4180",
            "address: `localhost:4180` is not a listen address",
        ),
        (
            "session_store: postgres://x",
            "session_store: expected `memory`",
        ),
        (
            "trusted_proxies: [10.0.0.0/33]",
            "trusted_proxies[0]: `10.0.0.0/33` is not an IP address or CIDR",
        ),
        (
            "log_format: text",
            "log_format: expected `pretty` or `json`, found `text`",
        ),
        (
            "cookie_secure: maybe",
            "cookie_secure: expected true or false, found a string",
        ),
        (
            "idp_ca_file: /nonexistent/ca.pem",
            "idp_ca_file: cannot read `/nonexistent/ca.pem`",
        ),
    ];
    for (line, want) in cases {
        let errs = errors(&format!("{}{line}\n", minimal()));
        assert_eq!(errs.len(), 1, "{line}: {errs:?}");
        assert!(errs[0].starts_with("authgate.yaml:6:"), "{}", errs[0]);
        assert!(errs[0].contains(want), "{line}: {}", errs[0]);
    }
}

#[test]
fn session_store_forms() {
    let table: &[(&str, SessionStoreConfig)] = &[
        ("memory", SessionStoreConfig::Memory),
        (
            "embedded:/data/s.redb",
            SessionStoreConfig::Embedded("/data/s.redb".into()),
        ),
        (
            "rediss://:pw@redis:6380/0",
            SessionStoreConfig::Redis("rediss://:pw@redis:6380/0".into()),
        ),
        (
            "redis+sentinel://s1:26379,s2:26379/mymaster",
            SessionStoreConfig::Redis("redis+sentinel://s1:26379,s2:26379/mymaster".into()),
        ),
    ];
    for (value, want) in table {
        let c = parse(&format!("{}session_store: \"{value}\"\n", minimal()))
            .unwrap()
            .config;
        assert_eq!(&c.session_store, want);
    }
    // A Redis URL may carry a password: its error does not repeat it.
    let err = parse(&format!(
        "{}session_store: \"redi://:pw123@x\"\n",
        minimal()
    ))
    .unwrap_err()
    .to_string();
    assert!(!err.contains("pw123"), "{err}");
}

/// Warnings for settings that work but will likely hurt.
#[test]
fn risky_settings_warn() {
    let text = minimal()
        .replace("https://dex.example.com/dex", "http://dex.example.com/dex")
        .replace("https://auth.example.com", "http://auth.example.com")
        + "idp_scopes: [openid, email, roles]\nidp_tls_insecure_skip_verify: true\nrouters: []\n";
    // `routers` is a typo, so this fails; drop it to see the warnings.
    assert!(parse(&text).is_err());
    let loaded = parse(&text.replace("routers: []\n", "policy: []\n")).unwrap();
    let all = loaded.warnings.join("\n");
    assert!(all.contains("idp_provider_url: plain-http issuer"), "{all}");
    assert!(
        all.contains("idp_scopes[2]: scope `roles` is not one Dex knows"),
        "{all}"
    );
    assert!(
        all.contains("idp_tls_insecure_skip_verify: TLS verification"),
        "{all}"
    );
    assert!(
        all.contains("authenticate_service_url: plain-http login host"),
        "{all}"
    );
}

#[test]
fn yaml_syntax_and_shape_errors() {
    let errs = errors("authenticate_service_url: [oops\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs,
        ["authgate.yaml:1:27: invalid YAML: unclosed bracket '['"]
    );

    assert_eq!(
        errors("- a\n- b\n"),
        ["authgate.yaml:1:1: expected a mapping of settings at the top level"]
    );
    // An empty file is a file with every required key missing.
    let errs = errors("");
    assert_eq!(
        errs,
        [
            "authgate.yaml: authenticate_service_url: required",
            "authgate.yaml: idp_provider_url: required",
            "authgate.yaml: idp_client_id: required",
            "authgate.yaml: idp_client_secret: required (or `idp_client_secret_file`)",
            "authgate.yaml: cookie_secret: required (or `cookie_secret_file`)",
        ]
    );
}

/// A key that YAML types as a number keeps its written form as a string.
#[test]
fn numeric_looking_strings_keep_their_text() {
    let text = minimal().replace("idp_client_id: hello", "idp_client_id: 0123");
    assert_eq!(parse(&text).unwrap().config.idp.client_id, "0123");
}

#[test]
fn load_file_reads_and_names_the_file() {
    let f = temp_file(&minimal());
    assert!(load_file(f.path(), &no_env).is_ok());
    let err = load_file(std::path::Path::new("/nonexistent/authgate.yaml"), &no_env).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/authgate.yaml: cannot read the configuration file"),
        "{err}"
    );
}

/// The shipped example is valid once its secret files exist.
#[test]
fn example_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("idp_client_secret"),
        "from-dex-static-clients\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("cookie_secret"), format!("{SECRET_A}\n")).unwrap();
    let text = include_str!("../../examples/authgate.yaml")
        .replace("/etc/authgate/", &format!("{}/", dir.path().display()));
    let loaded = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.idp.issuer_url, "https://dex.example.com/dex");
    assert_eq!(c.cookie.domain.as_deref(), Some("example.com"));
    assert_eq!(c.routes.len(), 2);
    assert!(c.routes[0].spec().allow_public_unauthenticated_access);
    assert_eq!(c.routes[0].spec().path.as_deref(), Some("/healthz"));
    assert_eq!(c.routes[1].spec().allowed_groups, ["devops"]);
    assert_eq!(c.routes[1].name(), "hello");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].ends_with("policy[].to"),
        "{:?}",
        loaded.warnings
    );
}

/// The listener keys: defaults when absent; values from the file or the
/// environment (`timeout_idle` is Pomerium's name and no longer ignored);
/// `shutdown_delay: 0s` is allowed (no drain), the others must be positive.
#[test]
fn serving_keys() {
    let c = parse(&minimal()).unwrap().config;
    assert_eq!(c.serving, ServingConfig::default());
    assert_eq!(c.serving.max_connections, 10_000);
    assert_eq!(c.serving.max_connections_per_peer, 1024);
    assert_eq!(c.serving.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.serving.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.serving.shutdown_delay, Duration::from_secs(5));
    assert_eq!(c.serving.shutdown_timeout, Duration::from_secs(10));

    let text = format!(
        "{}max_connections: 64\nmax_connections_per_peer: 8\nheader_read_timeout: 3s\ntimeout_idle: 90s\nshutdown_delay: 0s\nshutdown_timeout: 1m\n",
        minimal()
    );
    let loaded = parse(&text).unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("timeout_idle")),
        "{:?}",
        loaded.warnings
    );
    assert_eq!(
        loaded.config.serving,
        ServingConfig {
            max_connections: 64,
            max_connections_per_peer: 8,
            header_read_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(90),
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(60),
        }
    );
    let c = parse_env(
        &minimal(),
        &[
            ("MAX_CONNECTIONS", "5"),
            ("MAX_CONNECTIONS_PER_PEER", "3"),
            ("SHUTDOWN_DELAY", "2s"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.serving.max_connections, 5);
    assert_eq!(c.serving.max_connections_per_peer, 3);
    assert_eq!(c.serving.shutdown_delay, Duration::from_secs(2));
}

/// Bad listener values are each reported with their line and column.
#[test]
fn serving_key_errors() {
    let cases = [
        ("max_connections: 0", "max_connections: must be at least 1"),
        ("max_connections: many", "expected a number of connections"),
        ("max_connections: -3", "expected a number of connections"),
        (
            "max_connections_per_peer: 0",
            "max_connections_per_peer: must be at least 1",
        ),
        (
            "header_read_timeout: 0s",
            "header_read_timeout: must be greater than zero",
        ),
        (
            "timeout_idle: 0s",
            "timeout_idle: must be greater than zero",
        ),
        (
            "shutdown_timeout: 0s",
            "shutdown_timeout: must be greater than zero",
        ),
        ("shutdown_delay: later", "shutdown_delay: `later`"),
    ];
    for (line, want) in cases {
        let errs = errors(&format!("{}{line}\n", minimal()));
        assert_eq!(errs.len(), 1, "{line}: {errs:?}");
        assert!(errs[0].starts_with("authgate.yaml:6:"), "{}", errs[0]);
        assert!(errs[0].contains(want), "{line}: {}", errs[0]);
    }
}

/// Scopes as OAuth and Pomerium write them: one string separated by spaces
/// or commas, in the file or the environment, as well as a list.
#[test]
fn idp_scopes_as_text() {
    let all = ["openid", "profile", "email", "groups", "offline_access"];
    for value in [
        "\"openid profile email groups offline_access\"",
        "\"openid,profile,email,groups,offline_access\"",
        "[openid, \"profile email\", groups, offline_access]",
    ] {
        let loaded = parse(&format!("{}idp_scopes: {value}\n", minimal())).unwrap();
        assert_eq!(loaded.config.idp.scopes, all, "{value}");
        assert!(
            loaded.warnings.iter().all(|w| !w.contains("idp_scopes")),
            "{value}: {:?}",
            loaded.warnings
        );
    }
    let c = parse_env(
        &minimal(),
        &[("IDP_SCOPES", "openid profile email, groups")],
    )
    .unwrap()
    .config;
    assert_eq!(c.idp.scopes, ["openid", "profile", "email", "groups"]);
    // One error, where it is, and no second one about `openid`.
    assert_eq!(
        errors(&format!("{}idp_scopes: [openid, \" \"]\n", minimal())),
        ["authgate.yaml:6:22: idp_scopes[1]: an empty scope"]
    );
    assert_eq!(
        errors(&format!("{}idp_scopes: \"email profile\"\n", minimal())),
        ["authgate.yaml:6:13: idp_scopes: must contain `openid`"]
    );
}

/// Pomerium's names that are not keys here say what to do, at their line
/// and column: refused when they have another name here, accepted with a
/// warning when they mean nothing here. Values are never quoted.
#[test]
fn pomerium_names_get_hints() {
    let text = format!(
        "{}rootDomain: example.com\ninsecure: true\ninsecure_server: true\nidp_service_account: c2VjcmV0LWpzb24=\n",
        minimal()
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("authgate.yaml:6:1: rootDomain: Pomerium's Helm value; in authgate.yaml the domain is two keys: `cookie_domain: <domain>`"),
        "{}",
        errs[0]
    );
    let loaded = parse(&text.replace("rootDomain: example.com\n", "")).unwrap();
    let w = &loaded.warnings;
    assert!(
        w[0].starts_with("authgate.yaml:6:1: insecure: authgate never terminates TLS"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("authgate.yaml:7:1: insecure_server: authgate never terminates TLS"),
        "{w:?}"
    );
    assert!(w[2].starts_with("authgate.yaml:8:1: idp_service_account: not needed: authgate reads groups from the ID token"), "{w:?}");
    assert!(!w.join("\n").contains("c2VjcmV0"), "{w:?}");
    let errs = errors(&format!(
        "{}root_domain: example.com\ndebug: true\n",
        minimal()
    ));
    assert!(
        errs[0].starts_with(
            "authgate.yaml:6:1: root_domain: no such key; write `cookie_domain: <domain>`"
        ),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(
            "authgate.yaml:7:1: debug: Pomerium's human-readable logs: write `log_format: pretty`"
        ),
        "{errs:?}"
    );
    // From the environment, as Pomerium reads them.
    let loaded = parse_env(&minimal(), &[("INSECURE_SERVER", "true")]).unwrap();
    assert!(
        loaded.warnings[0]
            .starts_with("env INSECURE_SERVER: insecure_server: authgate never terminates TLS"),
        "{:?}",
        loaded.warnings
    );
}

/// `log_level` takes levels (and directives of levels); Pomerium's names
/// that differ are mapped; any other word is refused where it is written,
/// since tracing would read it as a target and log nothing.
#[test]
fn log_level_values() {
    for (value, want) in [
        ("error", "error"),
        ("WARN", "warn"),
        ("warning", "warn"),
        ("info", "info"),
        ("debug", "debug"),
        ("trace", "trace"),
        ("fatal", "error"),
        ("panic", "error"),
        ("disabled", "off"),
        ("authgate::http=debug, warn", "authgate::http=debug,warn"),
    ] {
        let c = parse(&format!("{}log_level: \"{value}\"\n", minimal()))
            .unwrap_or_else(|e| panic!("{value}: {e}"))
            .config;
        assert_eq!(c.log_level, want, "{value}");
    }
    let c = parse_env(&minimal(), &[("LOG_LEVEL", "Error")])
        .unwrap()
        .config;
    assert_eq!(c.log_level, "error");
    for (value, want) in [
        (
            "verbose",
            "authgate.yaml:6:12: log_level: `verbose` is not a log level: write error, warn, info, debug or trace",
        ),
        (
            "authgate=loud",
            "authgate.yaml:6:12: log_level: `loud` is not a log level",
        ),
        (
            "a b=info",
            "authgate.yaml:6:12: log_level: `a b` is not a module path",
        ),
    ] {
        let errs = errors(&format!("{}log_level: {value}\n", minimal()));
        assert_eq!(errs.len(), 1, "{value}: {errs:?}");
        assert!(errs[0].starts_with(want), "{value}: {}", errs[0]);
    }
}

/// A route admitting by group while `groups` is not requested: a warning at
/// `idp_scopes` naming the routes; none when the scope is there or no route
/// needs it.
#[test]
fn routes_needing_groups_warn_without_the_scope() {
    let routes = "policy:\n  - from: https://a.example.com\n    allowed_groups: [devops]\n\
                  \x20 - from: https://b.example.com\n    allowed_users: [alice@example.com]\n\
                  \x20 - from: https://c.example.com\n    allowed_idp_claims:\n      groups: [devops]\n";
    let text = format!("{}idp_scopes: openid email\n{routes}", minimal());
    let loaded = parse(&text).unwrap();
    assert_eq!(
        loaded.warnings,
        [
            "authgate.yaml:6:13: idp_scopes: `groups` is not among the scopes, so Dex sends no `groups` claim, \
          yet policy[0], policy[2] admit by group (`allowed_groups`, `allowed_idp_claims: {groups: …}`): \
          nobody gets in that way; add `groups`"
        ]
    );
    let loaded = parse_env(
        &format!("{}{routes}", minimal()),
        &[("IDP_SCOPES", "openid,email")],
    )
    .unwrap();
    assert!(
        loaded.warnings[0].starts_with("env IDP_SCOPES: idp_scopes: `groups` is not among"),
        "{:?}",
        loaded.warnings
    );
    for ok in [
        format!("{}idp_scopes: openid email groups\n{routes}", minimal()),
        format!("{}{routes}", minimal()),
        format!(
            "{}idp_scopes: openid\npolicy:\n  - from: https://b.example.com\n    allow_any_authenticated_user: true\n",
            minimal()
        ),
    ] {
        assert!(parse(&ok).unwrap().warnings.is_empty(), "{ok}");
    }
}

/// Traces are off unless `tracing_provider: otlp`; the `tracing_*` keys
/// win over the standard `OTEL_*` variables, which fill in what the file
/// leaves out (the traces-specific endpoint before the general one).
#[test]
fn tracing_keys_and_otel_variables() {
    let off = parse(&minimal()).unwrap().config;
    assert_eq!(off.tracing, None);
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ("OTEL_SERVICE_NAME", "gate-eu"),
    ];
    let on = format!("{}tracing_provider: otlp\n", minimal());
    let from_env = parse_env(&on, &otel).unwrap().config.tracing.unwrap();
    assert_eq!(
        from_env,
        TracingConfig {
            endpoint: "http://traces:4317".into(),
            sample_ratio: 0.25,
            service_name: "gate-eu".into(),
        }
    );
    let file = format!(
        "{on}tracing_otlp_endpoint: http://jaeger:4317\ntracing_sample_rate: 0.01\ntracing_otlp_protocol: grpc\n"
    );
    let from_file = parse_env(&file, &otel).unwrap().config.tracing.unwrap();
    assert_eq!(from_file.endpoint, "http://jaeger:4317");
    assert_eq!(from_file.sample_ratio, 0.01);
    let defaults = parse(&on).unwrap().config.tracing.unwrap();
    assert_eq!(defaults.endpoint, "http://localhost:4317");
    assert_eq!(defaults.sample_ratio, 1.0);
    assert_eq!(defaults.service_name, "authgate");
    // Pomerium's environment variable for the key works too.
    let env_on = parse_env(&minimal(), &[("TRACING_PROVIDER", "otlp")]).unwrap();
    assert!(env_on.config.tracing.is_some());

    for (text, want) in [
        (
            "tracing_provider: jaeger\n",
            "authgate.yaml:6:19: tracing_provider: `jaeger` is not supported",
        ),
        (
            "tracing_sample_rate: 10\n",
            "authgate.yaml:6:22: tracing_sample_rate: `10` is not a ratio between 0 and 1",
        ),
        (
            "tracing_otlp_protocol: http/protobuf\n",
            "authgate.yaml:6:24: tracing_otlp_protocol: `http/protobuf` is not supported",
        ),
        (
            "tracing_otlp_endpoint: collector:4317\n",
            "authgate.yaml:6:24: tracing_otlp_endpoint: `collector:4317` is not an http(s) URL",
        ),
    ] {
        let errs = errors(&format!("{}{text}", minimal()));
        assert!(errs.iter().any(|e| e.starts_with(want)), "{text}: {errs:?}");
    }
    let errs = parse_env(&on, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
        .unwrap_err()
        .to_string();
    assert!(
        errs.contains("env OTEL_EXPORTER_OTLP_PROTOCOL: tracing_otlp_protocol: `http/protobuf`"),
        "{errs}"
    );
}
