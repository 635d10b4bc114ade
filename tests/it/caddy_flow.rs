//! Real Caddy, started from `examples/caddy/Caddyfile`, with `forward_auth`
//! to authgate's `/forward-auth` in front of the echo upstream, authgate as
//! its login host, and the in-process provider. Unlike nginx, Caddy hands
//! authgate's non-2xx answers to the client as they are, so the browser's
//! redirect, the program's 401 and the 403 all come from authgate itself.

use authgate::config::RouteConfig;
use tokio::net::TcpListener;
use url::Url;

use crate::fixture::{COOKIE, Stack, header, route, session_cookie};
use crate::support::caddy::{Caddy, CaddyOptions};
use crate::support::nginx::{BROWSER_ACCEPT, DOMAIN};
use crate::support::tls::TestCa;
use crate::support::upstream::{EchoUpstream, assert_alice_reached_the_app};

struct Site {
    stack: Stack,
    caddy: Caddy,
    upstream: EchoUpstream,
    client: openidconnect::reqwest::Client,
}

async fn site() -> Site {
    site_with("", |app| vec![route(0, app, None, &["devops"])]).await
}

/// Caddy with `conditions` on its forward_auth `uri`, and the routes
/// `routes` makes from the app's URL.
async fn site_with(conditions: &str, routes: impl FnOnce(&str) -> Vec<RouteConfig>) -> Site {
    let ca = TestCa::new("authgate caddy test CA");
    let upstream = EchoUpstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let caddy = Caddy::start(CaddyOptions {
        authgate: listener.local_addr().expect("addr"),
        upstream: upstream.addr(),
        ca: &ca,
        domain: DOMAIN,
        conditions,
    })
    .await;
    let login_base = caddy.url("auth", "");
    let routes = routes(&caddy.url("app", ""));
    let stack = Stack::start_on(listener, routes, |config| {
        config.authenticate_service_url = Url::parse(&login_base).expect("login base");
        config.cookie.domain = Some(DOMAIN.to_owned());
        config.cookie.secure = true;
        // Caddy talks to authgate from loopback: its X-Forwarded-* count.
        config
            .trusted_proxies
            .push("127.0.0.1/32".parse().expect("cidr"));
    })
    .await;
    let client = caddy.http_client();
    Site {
        stack,
        caddy,
        upstream,
        client,
    }
}

impl Site {
    /// A GET through Caddy with `accept`, the `cookies`, and identity
    /// headers a client made up to pass itself off as someone else.
    async fn get(
        &self,
        url: &str,
        accept: &str,
        cookies: &[String],
    ) -> openidconnect::reqwest::Response {
        let mut request = self
            .client
            .get(url)
            .header("Accept", accept)
            .header("X-Auth-Request-User", "mallory")
            .header("X-Auth-Request-Email", "mallory@evil.test")
            .header("X_Auth_Request_Groups", "admins");
        if !cookies.is_empty() {
            request = request.header("Cookie", cookies.join("; "));
        }
        request.send().await.expect("request through Caddy")
    }

    /// The login through Caddy as a browser: protected URL → 302 to
    /// sign-in → provider → callback → back on the URL. Returns the session
    /// cookie (`name=value`).
    async fn login(&self, url: &str, user: &str) -> String {
        let response = self.caddy.browser_login(&self.stack, url, user).await;
        let line = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|l| l.starts_with("_authgate="))
            .expect("session cookie")
            .to_owned();
        assert!(line.contains(&format!("Domain={DOMAIN}")), "{line}");
        assert!(line.contains("Secure"), "{line}");
        format!("{COOKIE}={}", session_cookie(&response).expect("cookie"))
    }

    /// What the upstream saw for a signed-in JSON request to `url`.
    async fn echoed(&self, url: &str, cookie: &str) -> serde_json::Value {
        let response = self
            .get(url, "application/json", &[cookie.to_owned()])
            .await;
        assert_eq!(response.status(), 200, "{}", self.caddy.log());
        serde_json::from_str(&response.text().await.expect("body")).expect("echo json")
    }
}

/// A browser without a session is sent to sign in; after the login through
/// Caddy the upstream sees authgate's identity headers and none of the
/// client's forged ones (neither the exact name nor the underscore variant).
#[tokio::test]
async fn caddy_signs_in_and_upstream_sees_identity() {
    let site = site().await;
    let url = site.caddy.url("app", "/some/path?q=1");
    let cookie = site.login(&url, "alice@example.com").await;
    let seen = site.echoed(&url, &cookie).await;
    let headers = &seen["headers"];
    assert_alice_reached_the_app(headers);
    let user = &headers["x-auth-request-user"];
    assert_eq!(user.as_array().map(Vec::len), Some(1), "{headers}");
    assert_ne!(user[0], "mallory", "{headers}");
    let names: Vec<&String> = headers.as_object().expect("headers").keys().collect();
    assert!(
        names.iter().all(|n| !n.contains('_')),
        "an underscore header reached the app: {names:?}"
    );
    assert_eq!(seen["uri"], "/some/path?q=1");
}

/// A program without a session gets authgate's 401 (with
/// `WWW-Authenticate`), not a redirect it cannot follow, and the upstream
/// is never reached.
#[tokio::test]
async fn caddy_answers_401_to_programs() {
    let site = site().await;
    let response = site
        .get(
            &site.caddy.url("app", "/api/items"),
            "application/json",
            &[],
        )
        .await;
    assert_eq!(response.status(), 401, "{}", site.caddy.log());
    assert!(header(&response, "www-authenticate").starts_with("Bearer"));
    assert_eq!(response.text().await.expect("body"), "sign-in required\n");
}

/// A browser that POSTs without a session is sent on with 303 (so it
/// follows with a GET), though Caddy asks authgate with a GET: the method
/// comes from `X-Forwarded-Method`.
#[tokio::test]
async fn caddy_post_without_session_gets_303() {
    let site = site().await;
    let response = site
        .client
        .post(site.caddy.url("app", "/form"))
        .header("Accept", BROWSER_ACCEPT)
        .body("a=1")
        .send()
        .await
        .expect("POST through Caddy");
    assert_eq!(response.status(), 303, "{}", site.caddy.log());
    assert!(header(&response, "location").contains("/oauth2/start?rd="));
}

/// A signed-in user outside the route's group gets 403 from Caddy.
#[tokio::test]
async fn caddy_denies_user_outside_group() {
    let site = site().await;
    let url = site.caddy.url("app", "/");
    let cookie = site.login(&url, "bob@example.com").await;
    let response = site.get(&url, "application/json", &[cookie]).await;
    assert_eq!(response.status(), 403, "{}", site.caddy.log());
    assert_eq!(response.text().await.expect("body"), "forbidden\n");
}

/// Sign-out through Caddy ends the session: the old cookie replayed by hand
/// sends the browser to sign in again and gets a program 401.
#[tokio::test]
async fn caddy_sign_out_and_replay() {
    let site = site().await;
    let url = site.caddy.url("app", "/");
    let cookie = site.login(&url, "alice@example.com").await;
    site.echoed(&url, &cookie).await;
    let response = crate::fixture::sign_out(
        &site.client,
        &site.caddy.url("auth", "/oauth2/sign_out"),
        &cookie,
    )
    .await;
    assert_eq!(response.status(), 200, "{}", site.caddy.log());
    let response = site
        .get(&url, BROWSER_ACCEPT, std::slice::from_ref(&cookie))
        .await;
    assert_eq!(response.status(), 302);
    assert!(header(&response, "location").contains("/oauth2/start?rd="));
    let response = site.get(&url, "application/json", &[cookie]).await;
    assert_eq!(response.status(), 401);
}

/// `/.authgate/` on the protected host reaches authgate without
/// `forward_auth` (the Caddyfile's `handle /.authgate/*`): the start answers
/// with its redirect to sign in (an ordinary one: this host is inside the
/// cookie domain) and the callback with authgate's refusal page, and the
/// app sees neither.
#[tokio::test]
async fn caddy_routes_authgate_paths_unguarded() {
    let site = site().await;
    let page = site.caddy.url("app", "/x");
    let mut start = Url::parse(&site.caddy.url("app", "/.authgate/start")).expect("URL");
    start.query_pairs_mut().append_pair("rd", &page);
    let response = site.get(start.as_str(), BROWSER_ACCEPT, &[]).await;
    assert_eq!(response.status(), 302);
    let mut sign_in = Url::parse(&site.caddy.url("auth", "/oauth2/start")).expect("URL");
    sign_in.query_pairs_mut().append_pair("rd", &page);
    assert_eq!(header(&response, "location"), sign_in.as_str());
    let callback = site.caddy.url("app", "/.authgate/callback?token=forged");
    let response = site.get(&callback, BROWSER_ACCEPT, &[]).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("Sign-in link not valid"),
        "authgate's page"
    );
    assert!(site.upstream.received().is_empty(), "the app saw a request");
}

/// The login host through the Caddyfile serves only the login: authgate's
/// decision endpoints and metrics are not reachable there, so nobody can
/// ask about a URL of their choice and read identity headers back.
#[tokio::test]
async fn caddy_login_host_exposes_only_the_login() {
    let site = site().await;
    let app = site.caddy.url("app", "/");
    let cookie = site.login(&app, "alice@example.com").await;
    for path in crate::support::HIDDEN_ON_THE_LOGIN_HOST {
        let response = site
            .client
            .get(site.caddy.url("auth", path))
            .header("X-Original-URL", &app)
            .header("X-Forwarded-Host", app.trim_start_matches("https://"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(header(&response, "x-auth-request-email"), "", "{path}");
    }
    let response = site
        .client
        .get(site.caddy.url("auth", "/oauth2/userinfo"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// What Caddy routes is what authgate decides: an absolute-form request
/// line for the protected app with the login host's name in `Host`, or the
/// other way round, is decided about (and served as) the host in the
/// request line; a name Caddy does not serve is not routed anywhere. None
/// reaches the app anonymously.
#[tokio::test]
async fn caddy_decides_on_the_host_it_routes() {
    let site = site().await;
    let app = site.caddy.url("app", "/");
    let port = app.rsplit(':').next().unwrap().trim_end_matches('/');
    let json = ["Accept: application/json".to_owned()];
    for (target, host) in [
        (app.clone(), format!("auth.{DOMAIN}:{port}")),
        (app.clone(), format!("app.{DOMAIN}:1")),
        ("/".to_owned(), format!("app.{DOMAIN}#")),
        ("/".to_owned(), format!("nowhere.{DOMAIN}:{port}")),
    ] {
        let before = site.upstream.received().len();
        let (status, _) = site.caddy.raw_get("app", &target, &host, &json).await;
        assert!(
            site.upstream.received().len() == before && matches!(status, 0 | 400 | 401 | 403),
            "GET {target} with Host {host}: {status}\n{}",
            site.caddy.log()
        );
    }
    let (status, _) = site
        .caddy
        .raw_get("app", &app, &format!("auth.{DOMAIN}:{port}"), &json)
        .await;
    assert_eq!(
        status, 401,
        "decided about app, as a program without a session"
    );
}

/// `uri /forward-auth?allowed_groups=devops` protects a host authgate has
/// no route for: not signed in, the browser is sent to sign in; alice
/// (devops) reaches the app; bob gets 403.
#[tokio::test]
async fn caddy_query_conditions_protect_a_host_without_a_route() {
    let site = site_with("allowed_groups=devops", |_| Vec::new()).await;
    let url = site.caddy.url("app", "/dashboards");
    let cookie = site.login(&url, "alice@example.com").await;
    let seen = site.echoed(&url, &cookie).await;
    assert_alice_reached_the_app(&seen["headers"]);
    let bob = site.login(&url, "bob@example.com").await;
    let response = site.get(&url, "application/json", &[bob]).await;
    assert_eq!(response.status(), 403, "{}", site.caddy.log());
    assert_eq!(site.upstream.received().len(), 1, "only alice");
}

/// With a route, the route and the query must both allow: alice (devops,
/// admins) passes the route for devops but not `allowed_groups=auditors`.
#[tokio::test]
async fn caddy_query_conditions_and_the_route_both_decide() {
    let devops = |app: &str| vec![route(0, app, None, &["devops"])];
    let site = site_with("allowed_groups=auditors,admins", devops).await;
    let url = site.caddy.url("app", "/");
    let alice = site.login(&url, "alice@example.com").await;
    site.echoed(&url, &alice).await;
    let site = site_with("allowed_groups=auditors", devops).await;
    let url = site.caddy.url("app", "/");
    let alice = site.login(&url, "alice@example.com").await;
    let response = site.get(&url, "application/json", &[alice]).await;
    assert_eq!(response.status(), 403, "{}", site.caddy.log());
}

/// Caddy's example `uri /forward-auth` passes the client's own query on to
/// authgate: a client writing conditions into its URL gets 403, never the
/// policy it wrote (here on a path without a route, which it would open;
/// `/in` is any signed-in user's).
#[tokio::test]
async fn caddy_client_query_is_never_the_conditions() {
    let site = site_with("", |app| vec![route(0, app, Some("/in"), &[])]).await;
    let url = site.caddy.url("app", "/?allowed_email_domains=example.com");
    let alice = site
        .login(&site.caddy.url("app", "/in"), "alice@example.com")
        .await;
    let response = site.get(&url, "application/json", &[alice]).await;
    assert_eq!(response.status(), 403, "{}", site.caddy.log());
    assert!(site.upstream.received().is_empty());
}

/// The client's address reaches a `source_ip` policy through Caddy (its
/// X-Forwarded-For, believed from a trusted Caddy): a client connecting
/// from 127.0.0.5 gets in, one from 127.0.0.6 gets 403, also when it writes
/// 127.0.0.5 into its own X-Forwarded-For.
#[tokio::test]
async fn caddy_passes_the_client_address_to_source_ip() {
    let site = site_with("", |app| {
        vec![crate::fixture::source_ip_route(0, app, "127.0.0.5/32")]
    })
    .await;
    site.caddy.assert_source_ip_decides(&site.upstream).await;
}
