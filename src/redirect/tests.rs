#![allow(clippy::unwrap_used, clippy::expect_used)]

use url::Url;

use super::*;
use crate::config::{RouteConfig, Routes};

fn route(index: usize, from: &str) -> RouteConfig {
    RouteConfig {
        index,
        from: Url::parse(from).unwrap(),
        allow_any_authenticated_user: true,
        ..RouteConfig::default()
    }
}

fn policy(froms: &[&str]) -> Policy {
    let routes: Vec<_> = froms.iter().enumerate().map(|(i, f)| route(i, f)).collect();
    Policy::compile(Routes::parse(routes).unwrap())
}

/// Login on auth.example.com, cookies on example.com, routes elsewhere.
fn setup() -> (RedirectRules, Policy) {
    let rules = RedirectRules::new(
        &Url::parse("https://auth.example.com").unwrap(),
        Some(".Example.com"),
        false,
    );
    let policy = policy(&[
        "https://app.example.org",
        "https://*.corp.example.net",
        "https://*",
    ]);
    (rules, policy)
}

/// Safe targets pass, normalised to an absolute URL.
#[test]
fn accepted_table() {
    let (rules, policy) = setup();
    let cases: &[(&str, &str)] = &[
        ("/", "https://auth.example.com/"),
        ("/dashboard", "https://auth.example.com/dashboard"),
        (
            "/a/b/?q=1&r=%2Fx#frag",
            "https://auth.example.com/a/b/?q=1&r=%2Fx#frag",
        ),
        (
            "/login?next=/dashboard",
            "https://auth.example.com/login?next=/dashboard",
        ),
        ("/search?q=a%20b", "https://auth.example.com/search?q=a%20b"),
        ("/x/a%2fb", "https://auth.example.com/x/a%2fb"),
        ("/caf\u{e9}", "https://auth.example.com/caf%C3%A9"),
        (
            "/oauth2/userinfo",
            "https://auth.example.com/oauth2/userinfo",
        ),
        ("https://auth.example.com/x", "https://auth.example.com/x"),
        ("https://example.com", "https://example.com"),
        ("https://x.example.com/p?q", "https://x.example.com/p?q"),
        ("https://a.b.example.com/", "https://a.b.example.com/"),
        ("HTTPS://X.Example.COM./p", "https://x.example.com/p"),
        ("https://x.example.com:443/", "https://x.example.com/"),
        ("https://x.example.com:8443/", "https://x.example.com:8443/"),
        (
            "https://app.example.org/deep/link?x=1",
            "https://app.example.org/deep/link?x=1",
        ),
        (
            "https://team.corp.example.net/",
            "https://team.corp.example.net/",
        ),
        (
            "https://x.example.com#@evil.com",
            "https://x.example.com#@evil.com",
        ),
    ];
    for (rd, want) in cases {
        assert_eq!(rules.check(rd, &policy).as_deref(), Ok(*want), "{rd:?}");
    }
}

/// Every shape from the advisories is refused, with the reason a user sees.
#[test]
fn refused_table() {
    use RedirectError::*;
    let (rules, policy) = setup();
    let long = format!("/{}", "a".repeat(MAX_RD_LEN));
    let cases: &[(&str, RedirectError)] = &[
        ("", Empty),
        (&long, TooLong),
        // Protocol-relative and backslash tricks (bitly#478, CVE-2020-5233).
        ("//evil.com", Malformed),
        ("///evil.com", Malformed),
        ("/\\evil.com", ForbiddenCharacter),
        ("\\\\evil.com", ForbiddenCharacter),
        ("https://x.example.com\\@evil.com", ForbiddenCharacter),
        // Whitespace and controls, raw or encoded (CVE-2020-11053, -4037).
        ("/%09/evil.com", ForbiddenCharacter),
        ("/%0a/evil.com", ForbiddenCharacter),
        ("/%0B/evil.com", ForbiddenCharacter),
        ("/%0d/evil.com", ForbiddenCharacter),
        ("/%20/evil.com", ForbiddenCharacter),
        ("/\t/evil.com", ForbiddenCharacter),
        ("/ /evil.com", ForbiddenCharacter),
        ("/x?a=%00", ForbiddenCharacter),
        ("/x?a=%7f", ForbiddenCharacter),
        ("/x\u{3000}", ForbiddenCharacter),
        ("/x\"onload=", ForbiddenCharacter),
        ("/<script>", ForbiddenCharacter),
        ("/x/%5c", ForbiddenCharacter),
        // Encoded slashes and dot segments.
        ("/%2f%2fevil.com", AmbiguousPath),
        ("/%2F/evil.com", AmbiguousPath),
        ("/%5cevil.com", AmbiguousPath),
        ("/a%2fb/c", AmbiguousPath),
        ("/x/../evil", AmbiguousPath),
        ("/x/%2e%2e/y", AmbiguousPath),
        ("/./x", AmbiguousPath),
        ("/x/.", AmbiguousPath),
        ("/a//b", AmbiguousPath),
        ("/https://evil.com", AmbiguousPath),
        ("/x/%2f%2e%2e", AmbiguousPath),
        ("https://x.example.com/%2e%2e/", AmbiguousPath),
        ("https://x.example.com//evil.com", AmbiguousPath),
        ("/%zz", BadEncoding),
        ("/%ff", BadEncoding),
        // Schemes.
        ("javascript:alert(1)", SchemeNotAllowed),
        ("JaVaScRiPt:alert(1)", SchemeNotAllowed),
        ("java\tscript:alert(1)", ForbiddenCharacter),
        ("data:text/html,<x>", ForbiddenCharacter),
        ("data:text/html;base64,PHg+", SchemeNotAllowed),
        ("ftp://x.example.com/", SchemeNotAllowed),
        ("http://x.example.com/", SchemeNotAllowed),
        ("https:x.example.com", Malformed),
        ("https:/x.example.com", Malformed),
        ("x.example.com", Malformed),
        ("?x=1", Malformed),
        ("#x", Malformed),
        (":x", Malformed),
        // Hosts: userinfo, loose suffixes (CVE-2021-21291), emptiness.
        ("https://x.example.com@evil.com", Userinfo),
        ("https://evil.com@x.example.com", Userinfo),
        ("https://:@x.example.com", Userinfo),
        ("https://evilexample.com/", HostNotAllowed),
        ("https://example.com.evil.com/", HostNotAllowed),
        ("https://auth.example.com.evil.com/", HostNotAllowed),
        ("https://corp.example.net/", HostNotAllowed),
        ("https://anything.example.biz/", HostNotAllowed),
        ("https://0xd8.3856078/", HostNotAllowed),
        ("https://[::1]/", HostNotAllowed),
        ("https:///evil.com", InvalidHost),
        ("https://", InvalidHost),
        ("https://x.example.com%2f%2f.evil.com/", InvalidHost),
        ("https://ex\u{e4}mple.com/", InvalidHost),
        ("https://x_y.example.com/", InvalidHost),
        ("https://x.example.com:0/", InvalidHost),
        // A URL in the query: a chained open redirect on an allowed host.
        ("/redirect?url=//evil.com", NestedUrl),
        ("/r?to=https://evil.com", NestedUrl),
        ("/r?to=https:%2F%2Fevil.com", NestedUrl),
        ("/r?to=%5C%5Cevil.com", NestedUrl),
        ("/r#//evil.com", NestedUrl),
        ("https://x.example.com?next=https://evil.com", NestedUrl),
        // Loops (oauth2-proxy#3201).
        ("/oauth2/start", Loop),
        ("/oauth2/start?rd=/x", Loop),
        ("/oauth2/callback/", Loop),
        ("/oauth2/%73tart", Loop),
        ("https://auth.example.com/oauth2/start?rd=%2F", Loop),
        ("https://AUTH.example.com:443/oauth2/callback", Loop),
    ];
    for (rd, want) in cases {
        assert_eq!(rules.check(rd, &policy), Err(*want), "{rd:?}");
    }
}

/// `http://` targets only in a plain-http setup; a login base with a path
/// prefix moves the loop endpoints with it.
#[test]
fn http_and_base_path() {
    let rules = RedirectRules::new(
        &Url::parse("http://localhost:4180/auth/").unwrap(),
        None,
        true,
    );
    let policy = policy(&["http://app.localhost"]);
    assert_eq!(
        rules.check("/x", &policy).as_deref(),
        Ok("http://localhost:4180/x")
    );
    assert_eq!(
        rules.check("http://app.localhost/", &policy).as_deref(),
        Ok("http://app.localhost/")
    );
    assert_eq!(
        rules.check("https://app.localhost/", &policy).as_deref(),
        Ok("https://app.localhost/")
    );
    assert_eq!(
        rules.check("/auth/oauth2/start", &policy),
        Err(RedirectError::Loop)
    );
    assert_eq!(
        rules.check("/oauth2/start", &policy).as_deref(),
        Ok("http://localhost:4180/oauth2/start")
    );
    assert_eq!(
        rules.check("http://evil.localhost/", &policy),
        Err(RedirectError::HostNotAllowed)
    );
}

/// Without a cookie domain only the login host and route hosts are allowed.
#[test]
fn no_cookie_domain() {
    let rules = RedirectRules::new(
        &Url::parse("https://auth.example.com").unwrap(),
        None,
        false,
    );
    let policy = policy(&["https://app.example.com"]);
    assert!(rules.check("https://auth.example.com/", &policy).is_ok());
    assert!(rules.check("https://app.example.com/", &policy).is_ok());
    assert_eq!(
        rules.check("https://example.com/", &policy),
        Err(RedirectError::HostNotAllowed)
    );
    assert_eq!(
        rules.check("https://x.example.com/", &policy),
        Err(RedirectError::HostNotAllowed)
    );
}

/// URL-query-unescape once, as Go's `url.QueryUnescape` does: `+` is a
/// space, `%XX` a byte. An invalid escape is an error (no corpus line has
/// one); bytes that are not UTF-8 are replaced, as a `&str` framework would
/// have to.
fn query_unescape(line: &str) -> Result<String, String> {
    let spaced = line.replace('+', " ");
    let bytes = crate::policy::target::percent_decode_strict(spaced.as_bytes())
        .map_err(|_| format!("invalid escape in corpus line {line:?}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// oauth2-proxy's public corpus of 559 open-redirect payloads: with
/// `www.whitelisteddomain.tld` allowed as cookie domain, policy host and
/// login host, every line is refused — with `http` allowed or not.
#[test]
fn openredirects_corpus_is_refused() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/openredirects.txt");
    let corpus = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("the open-redirect corpus is required at {path} (see tests/data/README.md): {e}")
    });
    let lines: Vec<&str> = corpus.lines().collect();
    assert_eq!(lines.len(), 559, "the corpus should have 559 lines");
    let policy = policy(&[
        "https://www.whitelisteddomain.tld",
        "http://www.whitelisteddomain.tld",
    ]);
    let base = Url::parse("https://www.whitelisteddomain.tld").unwrap();
    for allow_http in [false, true] {
        let rules = RedirectRules::new(&base, Some("www.whitelisteddomain.tld"), allow_http);
        // Control: the allowed host itself does pass, so refusals are earned.
        assert!(
            rules
                .check("https://www.whitelisteddomain.tld/ok?x=1", &policy)
                .is_ok()
        );
        assert!(rules.check("/ok", &policy).is_ok());
        let accepted: Vec<String> = lines
            .iter()
            .map(|line| query_unescape(line).unwrap())
            .filter_map(|rd| {
                rules
                    .check(&rd, &policy)
                    .ok()
                    .map(|to| format!("{rd:?} -> {to}"))
            })
            .collect();
        assert!(
            accepted.is_empty(),
            "allow_http={allow_http}: accepted {accepted:#?}"
        );
    }
}
