//! One regression test per advisory the peers had (oauth2-proxy, Pomerium,
//! Vouch, Authelia, traefik-forward-auth): each names the advisory, says
//! what the bug was and what authgate must do instead. They run against the
//! real server on a socket with the in-process provider, except the corpus
//! tests, which use the router directly (559 payloads × 4 front ends).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use openidconnect::reqwest;
use serde_json::json;
use tower::ServiceExt;

use authgate::config::RouteConfig;

use crate::bad_input::{corpus, corpus_app};
use crate::fixture::{CLIENT_SECRET, COOKIE, Stack, header, route, set_cookies};
use crate::grpc_authz::CHROME_ACCEPT;

/// `app.example.test`: `/public` open to everyone, `/admin` for `admins`,
/// the rest for `devops`; `public.example.test` open.
fn routes() -> Vec<RouteConfig> {
    let mut public_path = route(0, "https://app.example.test", Some("/public"), &[]);
    public_path.allow_any_authenticated_user = false;
    public_path.allow_public_unauthenticated_access = true;
    let mut public_host = route(3, "https://public.example.test", None, &[]);
    public_host.allow_any_authenticated_user = false;
    public_host.allow_public_unauthenticated_access = true;
    vec![
        public_path,
        route(1, "https://app.example.test", Some("/admin"), &["admins"]),
        route(2, "https://app.example.test", None, &["devops"]),
        public_host,
    ]
}

async fn stack() -> Stack {
    Stack::start_with(routes(), |_| {}).await
}

/// `/oauth2/auth` as nginx asks, with extra headers.
async fn auth_with(
    stack: &Stack,
    url: &str,
    cookie: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = stack
        .http
        .get(format!("{}/oauth2/auth", stack.base))
        .header("X-Original-URL", url);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", format!("{COOKIE}={cookie}"));
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

/// `rd` is refused by both endpoints that take one: `/oauth2/start` answers
/// 400, `/oauth2/sign_out` signs out and shows its page without a redirect.
async fn assert_rd_refused(stack: &Stack, rd: &str) {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    let start = stack
        .http
        .get(format!("{}/oauth2/start?{query}", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 400, "start rd={rd:?}");
    assert_eq!(header(&start, "location"), "", "start rd={rd:?}");
    let sign_out = stack
        .http
        .post(format!("{}/oauth2/sign_out?{query}", stack.base))
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.status(), 200, "sign_out rd={rd:?}");
    assert_eq!(header(&sign_out, "location"), "", "sign_out rd={rd:?}");
}

/// bitly/oauth2_proxy#478: `rd=//evil.com` (protocol-relative) was taken
/// for a local path and sent the browser to evil.com. authgate refuses any
/// return path starting with two slashes (or a slash and a backslash).
#[tokio::test]
async fn bitly_478_protocol_relative_rd() {
    let stack = stack().await;
    for rd in [
        "//evil.com",
        "//evil.com/",
        "///evil.com",
        "//evil.com@app.example.test",
    ] {
        assert_rd_refused(&stack, rd).await;
    }
}

/// CVE-2020-5233 (oauth2-proxy): `rd=/\evil.com` passed the "starts with
/// one slash" check; browsers read `\` as `/`. authgate refuses backslashes
/// raw or encoded.
#[tokio::test]
async fn cve_2020_5233_backslash_rd() {
    let stack = stack().await;
    for rd in [
        "/\\evil.com",
        "/\\/evil.com",
        "/%5cevil.com",
        "\\\\evil.com",
    ] {
        assert_rd_refused(&stack, rd).await;
    }
}

/// CVE-2020-11053 (oauth2-proxy): encoded tab, LF, VT or CR between the
/// slashes (`/%09/evil.com`) survived the check and browsers dropped them.
/// authgate refuses encoded control characters anywhere.
#[tokio::test]
async fn cve_2020_11053_encoded_whitespace_rd() {
    let stack = stack().await;
    for c in ["%09", "%0a", "%0b", "%0d", "%0A", "%0D"] {
        assert_rd_refused(&stack, &format!("/{c}/evil.com")).await;
        assert_rd_refused(&stack, &format!("https://app.example.test/{c}/x")).await;
    }
}

/// CVE-2020-4037 (oauth2-proxy): runs of whitespace, `.` or `..` between
/// slashes (`/ /evil.com`, `/./evil.com`, `/../evil.com`). authgate refuses
/// whitespace and dot segments in the return path.
#[tokio::test]
async fn cve_2020_4037_whitespace_and_dots_between_slashes() {
    let stack = stack().await;
    for rd in [
        "/ /evil.com",
        "/\t/evil.com",
        "/  /evil.com",
        "/./evil.com",
        "/../evil.com",
        "/.//evil.com",
        "/%2e/evil.com",
        "/%20/evil.com",
        "https://app.example.test/../x",
    ] {
        assert_rd_refused(&stack, rd).await;
    }
}

/// CVE-2021-21291 (oauth2-proxy) and Vouch 910943a: an allowed domain
/// matched by loose suffix, so `app.example.test.evil.com` and
/// `evilapp.example.test` passed. authgate matches hosts exactly, or as
/// dot-anchored subdomains of the cookie domain only.
#[tokio::test]
async fn cve_2021_21291_loose_domain_suffix() {
    let stack = stack().await;
    for rd in [
        "https://app.example.test.evil.com/",
        "https://evilapp.example.test/",
        "https://app.example.testevil.com/",
        "https://example.test/",
        "https://xapp.example.test/",
    ] {
        assert_rd_refused(&stack, rd).await;
    }
    // The exact host is fine: the login proceeds to the provider.
    let ok = stack
        .http
        .get(format!("{}/oauth2/start", stack.base))
        .query(&[("rd", "https://app.example.test/ok")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 302);
}

/// Open redirects by other means the peers' advisories list: userinfo
/// (`https://app.example.test@evil.com`), encoded slashes, `javascript:`,
/// `data:`, a schemeless host. All refused.
#[tokio::test]
async fn open_redirect_userinfo_schemes_and_encoded_slashes() {
    let stack = stack().await;
    for rd in [
        "https://app.example.test@evil.com/",
        "https://x:y@app.example.test/",
        "https:%2F%2Fevil.com",
        "/%2F%2Fevil.com",
        "/%2fevil.com",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "evil.com",
        "https:/evil.com",
        "ftp://app.example.test/",
    ] {
        assert_rd_refused(&stack, rd).await;
    }
}

/// The 559 payloads through `/oauth2/sign_out?rd=`: none is followed — the
/// user is signed out and sees the signed-out page (no `Location`). (The
/// same corpus through `/oauth2/start` is `bad_input`.)
#[tokio::test]
async fn open_redirect_corpus_through_sign_out() {
    let app = corpus_app();
    for payload in corpus() {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", &payload)
            .finish();
        let response = authgate::http::router(app.clone())
            .oneshot(
                Request::post(format!("/oauth2/sign_out?{query}"))
                    .header("sec-fetch-site", "same-origin")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "payload {payload:?}");
        assert!(
            response.headers().get("location").is_none(),
            "payload {payload:?} redirected"
        );
    }
}

/// The 559 payloads as the *original request* of `/oauth2/auth` (nginx) and
/// `/forward-auth` (Envoy's HTTP shape), which build a sign-in redirect from
/// it: whatever the payload, the `Location` (if any) is the sign-in URL on
/// the login host, and its `rd` names the protected host itself — the
/// payload can never choose where the browser goes.
#[tokio::test]
async fn open_redirect_corpus_as_the_original_request() {
    let app = corpus_app();
    let sign_in = "https://www.whitelisteddomain.tld/oauth2/start?rd=";
    for payload in corpus() {
        let path = if payload.starts_with('/') {
            payload.clone()
        } else {
            format!("/{payload}")
        };
        let Ok(original) =
            axum::http::HeaderValue::from_str(&format!("https://www.whitelisteddomain.tld{path}"))
        else {
            continue; // not even a header value: nginx could not send it
        };
        let nginx = Request::get("/oauth2/auth")
            .header("x-original-url", original)
            .body(Body::empty())
            .unwrap();
        let envoy_uri = format!("/forward-auth{path}");
        let envoy = axum::http::Uri::try_from(envoy_uri.as_str())
            .ok()
            .map(|uri| {
                Request::get(uri)
                    .header("host", "www.whitelisteddomain.tld")
                    .header("accept", CHROME_ACCEPT)
                    .body(Body::empty())
                    .unwrap()
            });
        for request in std::iter::once(nginx).chain(envoy) {
            let response = authgate::http::router(app.clone())
                .oneshot(request)
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                matches!(status, 302 | 303 | 401 | 403),
                "payload {payload:?}: {status}"
            );
            if let Some(location) = response.headers().get("location") {
                let location = location.to_str().unwrap();
                let rd = location
                    .strip_prefix(sign_in)
                    .unwrap_or_else(|| panic!("payload {payload:?}: Location {location}"));
                let rd: String = url::form_urlencoded::parse(format!("rd={rd}").as_bytes())
                    .next()
                    .unwrap()
                    .1
                    .into_owned();
                assert!(
                    rd.starts_with("https://www.whitelisteddomain.tld/"),
                    "payload {payload:?}: rd {rd}"
                );
            }
        }
    }
}

/// GHSA-7rh7-c77v-6434 (oauth2-proxy): skip-auth rules were matched against
/// path *and query*, so `/private?x=/public` was public. authgate matches
/// the path only.
#[tokio::test]
async fn ghsa_7rh7_skip_rule_matched_against_the_query() {
    let stack = stack().await;
    for url in [
        "https://app.example.test/private?x=/public",
        "https://app.example.test/private?/public",
        "https://app.example.test/admin?public",
        "https://app.example.test/?/public/",
    ] {
        assert_eq!(
            auth_with(&stack, url, None, &[]).await.status(),
            401,
            "{url}"
        );
    }
    let public = auth_with(&stack, "https://app.example.test/public?x=1", None, &[]).await;
    assert_eq!(public.status(), 200);
}

/// GHSA-pxq7-h93f-9jrg (oauth2-proxy): a `#` (raw, or `%23`) widened a
/// skip rule: `/private#/public`. authgate cuts a raw fragment off before
/// matching and treats a decoded `%23` as a literal character of the path.
#[tokio::test]
async fn ghsa_pxq7_fragment_widening() {
    let stack = stack().await;
    for url in [
        "https://app.example.test/private#/public",
        "https://app.example.test/private%23/public",
        "https://app.example.test/admin#/public",
        "https://app.example.test/private%23public",
    ] {
        assert_eq!(
            auth_with(&stack, url, None, &[]).await.status(),
            401,
            "{url}"
        );
    }
}

/// CVE-2025-64484 (oauth2-proxy): identity headers were stripped by exact
/// name, so `X_Forwarded_Email` (underscore) or other case variants from
/// the client reached the app. authgate never reads identity from request
/// headers, and tells Envoy to remove the `_` spellings too.
#[tokio::test]
async fn cve_2025_64484_underscore_and_case_header_variants() {
    let stack = stack().await;
    let spoof = [
        ("X_Auth_Request_Email", "alice@example.com"),
        ("x_auth_request_groups", "devops,admins"),
        ("X-AUTH-REQUEST-USER", "alice"),
        ("X_Forwarded_Email", "alice@example.com"),
        ("X-Forwarded-User", "alice"),
    ];
    let response = auth_with(&stack, "https://app.example.test/x", None, &spoof).await;
    assert_eq!(response.status(), 401, "identity from client headers");
    assert_eq!(header(&response, "x-auth-request-email"), "");

    let alice = stack
        .login("alice@example.com", "https://app.example.test/")
        .await;
    let response = stack
        .http
        .get(format!("{}/forward-auth/x", stack.base))
        .header("host", "app.example.test")
        .header("cookie", format!("{COOKIE}={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let remove = header(&response, "x-envoy-auth-headers-to-remove");
    for name in authgate::identity::IDENTITY_HEADERS {
        let underscored = name.as_str().replace('-', "_");
        assert!(remove.contains(&underscored), "{underscored} in {remove}");
    }
}

/// CVE-2026-34457 (a peer allowed any path for a health-check
/// `User-Agent`): no request property other than the session and the
/// policy opens a route — probe user agents get 401 like anyone.
#[tokio::test]
async fn cve_2026_34457_health_check_user_agent_is_not_a_pass() {
    let stack = stack().await;
    for agent in [
        "kube-probe/1.31",
        "GoogleHC/1.0",
        "ELB-HealthChecker/2.0",
        "Envoy/HC",
    ] {
        let response = auth_with(
            &stack,
            "https://app.example.test/admin",
            None,
            &[("user-agent", agent)],
        )
        .await;
        assert_eq!(response.status(), 401, "{agent}");
    }
}

/// CVE-2026-40575: a spoofed `X-Forwarded-Uri: /public` chose the route
/// while the real path was `/admin`, from any caller. authgate believes
/// `X-Forwarded-*` only from `trusted_proxies` (loopback is not, here), and
/// `X-Original-URL` wins over them anyway.
#[tokio::test]
async fn cve_2026_40575_spoofed_forwarded_uri_from_untrusted_peer() {
    let stack = stack().await;
    let forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.test"),
        ("x-forwarded-uri", "/public"),
    ];
    let response = auth_with(&stack, "https://app.example.test/admin", None, &forwarded).await;
    assert_eq!(response.status(), 401);
    // Envoy's shape: the path is in the request line, not in the header.
    let response = stack
        .http
        .get(format!("{}/forward-auth/admin", stack.base))
        .header("host", "app.example.test")
        .header("x-forwarded-uri", "/public")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Traefik's shape from an untrusted peer: nothing to decide about.
    let mut request = stack.http.get(format!("{}/forward-auth", stack.base));
    for (k, v) in forwarded {
        request = request.header(k, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 403);
}

/// CVE-2026-40574: the email `attacker@evil.com@example.com` passed an
/// `allowed_domains: [example.com]` check (split at the last `@`). authgate
/// takes an email with more than one `@` (or any other malformed one) as
/// matching no user and no domain.
#[tokio::test]
async fn cve_2026_40574_double_at_email_domain_check() {
    let mut by_domain = route(0, "https://app.example.test", None, &[]);
    by_domain.allow_any_authenticated_user = false;
    by_domain.allowed_domains = vec!["example.com".into()];
    let mut by_user = route(1, "https://users.example.test", None, &[]);
    by_user.allow_any_authenticated_user = false;
    by_user.allowed_users = vec!["alice@example.com".into()];
    let stack = Stack::start_with(vec![by_domain, by_user], |_| {}).await;
    for email in [
        "attacker@evil.com@example.com",
        "alice@example.com@evil.com",
        "\"attacker@evil.com\"@example.com",
        "attacker@example.com.evil.com",
        "attacker@evil.com\n@example.com",
        "alice@example.com ",
    ] {
        let forged = email.to_owned();
        stack.idp.set_claims_hook(Some(Arc::new(move |c| {
            c.insert("email".into(), json!(forged));
        })));
        let cookie = stack
            .login("alice@example.com", "https://app.example.test/")
            .await;
        for url in ["https://app.example.test/", "https://users.example.test/"] {
            let status = stack.auth(url, Some(&cookie)).await.status();
            assert_eq!(status, 403, "{email:?} on {url}");
        }
    }
    stack.idp.set_claims_hook(None);
    let cookie = stack
        .login("alice@example.com", "https://app.example.test/")
        .await;
    assert_eq!(
        stack
            .auth("https://app.example.test/", Some(&cookie))
            .await
            .status(),
        200
    );
    assert_eq!(
        stack
            .auth("https://users.example.test/", Some(&cookie))
            .await
            .status(),
        200
    );
}

/// CVE-2026-34454: sign-out cleared the cookie but left the session valid,
/// so a copy of it still worked. authgate deletes the record; beyond the
/// GET case in `login_flow`: POST sign-out, a session cookie among several
/// same-named ones, and a later refresh that does not bring it back.
#[tokio::test]
async fn cve_2026_34454_sign_out_ends_the_session() {
    let stack = stack().await;
    let app = "https://app.example.test/";
    let alice = stack.login("alice@example.com", app).await;
    let bob = stack.login("bob@example.com", app).await;
    let response = stack
        .http
        .post(format!("{}/oauth2/sign_out", stack.base))
        .header(
            "cookie",
            format!("{COOKIE}=junk; {COOKIE}={alice}; {COOKIE}={bob}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cleared = set_cookies(&response);
    assert!(cleared.iter().any(|(n, v)| n == COOKIE && v.is_empty()));
    for cookie in [&alice, &bob] {
        assert_eq!(stack.auth(app, Some(cookie)).await.status(), 401);
    }
    stack.clock.advance(301);
    assert_eq!(
        stack.auth(app, Some(&alice)).await.status(),
        401,
        "after refresh"
    );
    let userinfo = stack
        .http
        .get(format!("{}/oauth2/userinfo", stack.base))
        .header("cookie", format!("{COOKIE}={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);
}

/// Authelia CVE-2021-32637: a malformed URL made the auth endpoint answer
/// 2xx, which nginx treats as allow. authgate answers 401/403 — here even
/// for malformed variants of a *public* URL, on both HTTP front ends.
#[tokio::test]
async fn authelia_cve_2021_32637_malformed_url_never_2xx() {
    let stack = stack().await;
    for url in [
        "https://public.example.test/%zz",
        "https://public.example.test/%",
        "https://public.example.test/..",
        "https://public.example.test/a%00",
        "https://public.example.test/a b",
        "https://public.example.test:99999/",
        "https://user@public.example.test/",
        "https://public.example.test\\@app.example.test/",
        "https://public..example.test/",
        "https://[public.example.test]/",
        "public.example.test/",
        "//public.example.test/",
        "https://",
        "",
    ] {
        let status = auth_with(&stack, url, None, &[]).await.status().as_u16();
        assert!(matches!(status, 401 | 403), "{url:?}: {status}");
    }
    for (host, path) in [
        ("public.example.test", "/%zz"),
        ("public.example.test", "/%2e%2e/x"),
        ("public.example.test:0", "/"),
        ("public.example.test@evil", "/"),
        ("", "/"),
    ] {
        // Raw, as reqwest would resolve `%2e%2e` and never reach
        // /forward-auth.
        let (status, _) = stack
            .raw_get(&format!("/forward-auth{path}"), host, &[])
            .await;
        assert!(matches!(status, 400 | 401 | 403), "{host} {path}: {status}");
    }
}

/// Authelia CVE-2026-48794: a mixed-case host (`a.B.example.com`) matched
/// another rule than its lower-case form. authgate lower-cases hosts (and
/// drops one trailing dot and the default port) before matching, and
/// compiles route hosts the same way.
#[tokio::test]
async fn authelia_cve_2026_48794_mixed_case_host() {
    let mut admin = route(0, "https://ADMIN.Example.Test", None, &["admins"]);
    admin.allow_any_authenticated_user = false;
    let mut routes = routes();
    routes.insert(0, admin);
    for (i, r) in routes.iter_mut().enumerate() {
        r.index = i;
    }
    let stack = Stack::start_with(routes, |_| {}).await;
    let bob = stack
        .login("bob@example.com", "https://app.example.test/")
        .await;
    let alice = stack
        .login("alice@example.com", "https://app.example.test/")
        .await;
    for host in [
        "admin.example.test",
        "Admin.Example.Test",
        "ADMIN.EXAMPLE.TEST",
        "admin.example.test.",
        "admin.example.test:443",
    ] {
        let url = format!("https://{host}/");
        assert_eq!(stack.auth(&url, Some(&bob)).await.status(), 403, "{url}");
        assert_eq!(stack.auth(&url, Some(&alice)).await.status(), 200, "{url}");
    }
    for host in ["App.Example.Test", "APP.example.test."] {
        let url = format!("https://{host}/admin/x");
        assert_eq!(stack.auth(&url, Some(&bob)).await.status(), 403, "{url}");
    }
}

/// Pomerium CVE-2024-39315: an informational endpoint exposed the user's
/// OAuth tokens. authgate's informational answers — userinfo, the status,
/// forbidden and signed-out pages, the identity headers of an allow — carry
/// none of the provider's tokens (no ID or refresh token), no session
/// cookie value and no secret. The one JWT an allow carries is authgate's
/// own assertion (`X-Auth-Request-Jwt`, ES256), never the provider's token.
#[tokio::test]
async fn pomerium_cve_2024_39315_no_tokens_on_informational_endpoints() {
    let stack = stack().await;
    let alice = stack
        .login("alice@example.com", "https://app.example.test/")
        .await;
    let cookie = format!("{COOKIE}={alice}");
    let get = |path: &str| {
        stack
            .http
            .get(format!("{}{path}", stack.base))
            .header("cookie", &cookie)
            .header("x-original-url", "https://app.example.test/admin")
    };
    // The headers of an answer, with authgate's own assertion checked and
    // set aside: it is a JWT by design, but ours (ES256), never Dex's.
    let headers_without_assertion = |headers: &reqwest::header::HeaderMap| {
        let mut headers = headers.clone();
        if let Some(jwt) = headers.remove("x-auth-request-jwt") {
            let header = jsonwebtoken::decode_header(jwt.to_str().unwrap()).unwrap();
            assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256, "our assertion");
        }
        format!("{headers:?}")
    };
    let mut seen = Vec::new();
    for path in ["/oauth2/userinfo", "/", "/oauth2/forbidden", "/oauth2/auth"] {
        let response = get(path).send().await.unwrap();
        let headers = headers_without_assertion(response.headers());
        seen.push((path, headers, response.text().await.unwrap()));
    }
    let response = stack
        .http
        .get(format!("{}/forward-auth/x", stack.base))
        .header("host", "app.example.test")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    seen.push((
        "/forward-auth",
        headers_without_assertion(response.headers()),
        String::new(),
    ));
    let response = get("/oauth2/sign_out").send().await.unwrap();
    let headers = format!("{:?}", response.headers());
    seen.push(("/oauth2/sign_out", headers, response.text().await.unwrap()));
    for (path, headers, body) in &seen {
        for (what, text) in [("headers", headers), ("body", body)] {
            assert!(!text.contains("eyJ"), "{path} {what}: a JWT");
            assert!(!text.contains(&alice), "{path} {what}: the session cookie");
            assert!(
                !text.contains(CLIENT_SECRET),
                "{path} {what}: the client secret"
            );
            assert!(
                !text.to_lowercase().contains("refresh_token"),
                "{path} {what}"
            );
            assert!(
                !text.to_lowercase().contains("access_token"),
                "{path} {what}"
            );
        }
    }
    assert!(
        seen[0].2.contains("alice@example.com"),
        "userinfo shows who"
    );
}

/// CVE-2022-24797 (Pomerium): pprof and debug endpoints were served on the
/// public listener. authgate has none: every debug-style path is a 404 on
/// the listener that serves `/oauth2/*`, and none of them returns tokens.
#[tokio::test]
async fn cve_2022_24797_no_debug_endpoints_on_the_public_listener() {
    let stack = stack().await;
    let alice = stack
        .login("alice@example.com", "https://app.example.test/")
        .await;
    for path in [
        "/debug/pprof/",
        "/debug/pprof/heap",
        "/debug/pprof/goroutine?debug=2",
        "/debug/vars",
        "/debug",
        "/debug/",
        "/debug/requests",
        "/pprof",
        "/actuator/env",
        "/env",
        "/config",
        "/.env",
        "/server-status",
        "/oauth2/debug",
        "/oauth2/session",
        "/oauth2/token",
    ] {
        let response = stack
            .http
            .get(format!("{}{path}", stack.base))
            .header("cookie", format!("{COOKIE}={alice}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("eyJ") && !body.contains(&alice), "{path}");
    }
}
