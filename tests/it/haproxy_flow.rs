//! Real HAProxy (Debian's 2.6), started from `examples/haproxy/`, asking
//! authgate's SPOE agent (SPOP on `spoe_address`) about every request in
//! front of the echo upstream, with authgate as its login host and the
//! in-process provider. HAProxy turns authgate's variables into the answer:
//! the redirect to sign in, the 401, the 403, the identity headers — and
//! a 503 when authgate does not answer.

use authgate::config::RouteConfig;
use tokio::net::TcpListener;
use url::Url;

use crate::fixture::{COOKIE, Stack, header, route, session_cookie};
use crate::support::haproxy::{Haproxy, HaproxyOptions};
use crate::support::nginx::{BROWSER_ACCEPT, DOMAIN};
use crate::support::tls::TestCa;
use crate::support::upstream::{EchoUpstream, assert_alice_reached_the_app};

struct Site {
    stack: Stack,
    haproxy: Haproxy,
    upstream: EchoUpstream,
    client: openidconnect::reqwest::Client,
    /// authgate's SPOE agent; aborting it stops the agent.
    agent: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn site() -> Site {
    site_with(None, |app| vec![route(0, app, None, &["devops"])]).await
}

/// HAProxy with `allowed_groups` set for `app` in its configuration, and
/// the routes `routes` makes from the app's URL.
async fn site_with(
    allowed_groups: Option<&str>,
    routes: impl FnOnce(&str) -> Vec<RouteConfig>,
) -> Site {
    let ca = TestCa::new("authgate haproxy test CA");
    let upstream = EchoUpstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let spoe = TcpListener::bind("127.0.0.1:0").await.expect("bind SPOP");
    let haproxy = Haproxy::start(HaproxyOptions {
        authgate: listener.local_addr().expect("addr"),
        spoe: spoe.local_addr().expect("addr"),
        upstream: upstream.addr(),
        ca: &ca,
        domain: DOMAIN,
        allowed_groups,
    })
    .await;
    let login_base = haproxy.url("auth", "");
    let routes = routes(&haproxy.url("app", ""));
    let spoe_address = spoe.local_addr().expect("addr");
    let stack = Stack::start_on(listener, routes, |config| {
        config.authenticate_service_url = Url::parse(&login_base).expect("login base");
        config.cookie.domain = Some(DOMAIN.to_owned());
        config.cookie.secure = true;
        config.spoe_address = Some(spoe_address);
        // HAProxy reaches authgate from loopback: its X-Forwarded-* count.
        config
            .trusted_proxies
            .push("127.0.0.1/32".parse().expect("cidr"));
    })
    .await;
    let agent = tokio::spawn(authgate::spoe::serve(
        stack.app.clone(),
        spoe,
        std::future::pending(),
    ));
    let client = haproxy.http_client();
    Site {
        stack,
        haproxy,
        upstream,
        client,
        agent,
    }
}

impl Site {
    /// A request through HAProxy with `accept`, the `cookies`, and identity
    /// headers a client made up, in several spellings.
    async fn send(
        &self,
        method: openidconnect::reqwest::Method,
        url: &str,
        accept: &str,
        cookies: &[String],
    ) -> openidconnect::reqwest::Response {
        let mut request = self
            .client
            .request(method, url)
            .header("Accept", accept)
            .header("X-Auth-Request-User", "mallory")
            .header("X-Auth-Request-Email", "mallory@evil.test")
            .header("X_Auth_Request_Groups", "admins")
            .header("x-auth_request-preferred_username", "mallory")
            .header("X-Auth-Request-Jwt", "forged");
        if !cookies.is_empty() {
            request = request.header("Cookie", cookies.join("; "));
        }
        request.send().await.expect("request through HAProxy")
    }

    async fn get(
        &self,
        url: &str,
        accept: &str,
        cookies: &[String],
    ) -> openidconnect::reqwest::Response {
        self.send(openidconnect::reqwest::Method::GET, url, accept, cookies)
            .await
    }

    /// The login through HAProxy as a browser: protected URL → 302 to
    /// sign-in → provider → callback → back on the URL. Returns the session
    /// cookie (`name=value`).
    async fn login(&self, url: &str, user: &str) -> String {
        let response = self.haproxy.browser_login(&self.stack, url, user).await;
        format!("{COOKIE}={}", session_cookie(&response).expect("cookie"))
    }
}

/// A browser without a session is sent to sign in (302 for a GET, 303 for
/// a POST); after the login through HAProxy the upstream sees authgate's
/// identity headers, once each, and none of the client's forged ones in
/// any spelling.
#[tokio::test]
async fn haproxy_signs_in_and_upstream_sees_identity() {
    let site = site().await;
    let url = site.haproxy.url("app", "/some/path?q=1");
    let response = site
        .send(
            openidconnect::reqwest::Method::POST,
            &url,
            BROWSER_ACCEPT,
            &[],
        )
        .await;
    assert_eq!(response.status(), 303, "{}", site.haproxy.log());
    assert!(header(&response, "location").contains("/oauth2/start?rd="));

    let cookie = site.login(&url, "alice@example.com").await;
    let response = site.get(&url, "application/json", &[cookie]).await;
    assert_eq!(response.status(), 200, "{}", site.haproxy.log());
    let seen: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("echo json");
    let headers = &seen["headers"];
    assert_alice_reached_the_app(headers);
    assert_eq!(
        headers["x-auth-request-user"].as_array().map(Vec::len),
        Some(1)
    );
    assert_ne!(headers["x-auth-request-user"][0], "mallory", "{headers}");
    let jwt = headers["x-auth-request-jwt"][0]
        .as_str()
        .expect("assertion");
    assert_eq!(
        jwt.split('.').count(),
        3,
        "authgate's signed assertion: {jwt}"
    );
    let names: Vec<&String> = headers.as_object().expect("headers").keys().collect();
    assert!(
        names.iter().all(|n| !n.contains('_')),
        "an underscore spelling reached the app: {names:?}"
    );
    assert_eq!(seen["uri"], "/some/path?q=1");
    assert_eq!(site.upstream.received().len(), 1, "only the signed-in GET");
}

/// A signed-in user outside the route's group gets 403; a program without
/// a session gets 401 with `WWW-Authenticate`, not a redirect. Neither
/// reaches the app.
#[tokio::test]
async fn haproxy_refuses_bob_and_programs() {
    let site = site().await;
    let url = site.haproxy.url("app", "/");
    let cookie = site.login(&url, "bob@example.com").await;
    let response = site.get(&url, "application/json", &[cookie]).await;
    assert_eq!(response.status(), 403, "{}", site.haproxy.log());
    assert_eq!(response.text().await.expect("body"), "forbidden\n");

    let response = site
        .get(&site.haproxy.url("app", "/api/items"), "*/*", &[])
        .await;
    assert_eq!(response.status(), 401, "{}", site.haproxy.log());
    assert_eq!(
        header(&response, "www-authenticate"),
        "Bearer realm=\"authgate\""
    );
    assert_eq!(response.text().await.expect("body"), "sign-in required\n");
    assert!(site.upstream.received().is_empty(), "the app saw a request");

    // Counted as HAProxy's: bob's 403, the program's sign-in.
    let text = crate::metrics::scrape(&site.stack, &site.stack.base).await;
    let count = |outcome: &str| {
        crate::metrics::series(
            &text,
            &format!(
                "authgate_decisions_total{{route=\"route-0\",outcome=\"{outcome}\",front_end=\"haproxy\"}}"
            ),
        )
    };
    assert_eq!(count("deny"), Some(1.0), "{text}");
    assert!(count("sign_in").is_some_and(|n| n >= 2.0), "{text}");
}

/// authgate's agent stopped: HAProxy gets no answer and refuses with 503,
/// for a signed-in user too; the app is never reached.
#[tokio::test]
async fn haproxy_fails_closed_without_the_agent() {
    let site = site().await;
    let url = site.haproxy.url("app", "/");
    let cookie = site.login(&url, "alice@example.com").await;
    site.agent.abort();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for accept in [BROWSER_ACCEPT, "application/json"] {
        let response = site.get(&url, accept, std::slice::from_ref(&cookie)).await;
        assert_eq!(response.status(), 503, "{}", site.haproxy.log());
    }
    let response = site.get(&url, "*/*", &[]).await;
    assert_eq!(response.status(), 503);
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert_eq!(
        response.text().await.expect("body"),
        "authorization temporarily unavailable\n"
    );
    assert!(site.upstream.received().is_empty(), "the app saw a request");
}

/// What HAProxy routes is what authgate decides: an absolute-form request
/// line naming another host than `Host`, a `Host` with another port, `#`,
/// `?`, userinfo, a trailing dot, a list, or an unknown name never reaches
/// the app anonymously: HAProxy's 400, authgate's 401/403, or the
/// catch-all's 404.
#[tokio::test]
async fn haproxy_decides_on_the_host_it_routes() {
    let site = site().await;
    let port = site.haproxy.https_port();
    let app = format!("app.{DOMAIN}:{port}");
    let auth = format!("auth.{DOMAIN}:{port}");
    let json = ["Accept: application/json".to_owned()];
    for (target, host) in [
        (format!("https://{app}/"), auth.clone()),
        (format!("https://{auth}/"), app.clone()),
        (format!("https://APP.{DOMAIN}.:{port}/"), auth.clone()),
        ("/".to_owned(), format!("app.{DOMAIN}:1")),
        ("/".to_owned(), format!("app.{DOMAIN}")),
        ("/".to_owned(), format!("app.{DOMAIN}.:{port}")),
        ("/".to_owned(), format!("app.{DOMAIN}#")),
        ("/".to_owned(), format!("{app}#")),
        ("/".to_owned(), format!("{app}?")),
        ("/".to_owned(), format!("x@{app}")),
        (format!("https://x@{app}/"), auth.clone()),
        ("/".to_owned(), format!("{auth}, {app}")),
        ("/".to_owned(), format!("nowhere.{DOMAIN}:{port}")),
        ("/oauth2/auth".to_owned(), auth.clone()),
        ("/forward-auth".to_owned(), auth.clone()),
    ] {
        let (status, _) = site.haproxy.raw_get("app", &target, &host, &json).await;
        assert!(
            site.upstream.received().is_empty() && matches!(status, 0 | 400 | 401 | 403 | 404),
            "GET {target} with Host {host}: {status}\n{}",
            site.haproxy.log()
        );
    }
    // The app's own name, in the request line and Host, case folded: the
    // program's 401, from authgate about app.
    let (status, _) = site
        .haproxy
        .raw_get("app", &format!("https://APP.{DOMAIN}:{port}/"), &app, &json)
        .await;
    assert_eq!(status, 401, "{}", site.haproxy.log());
}

/// `allowed_groups` set in haproxy.cfg for a host authgate has no route
/// for: not signed in, the browser is sent to sign in; alice (devops)
/// reaches the app; bob gets 403. With a route, both must allow.
#[tokio::test]
async fn haproxy_conditions_protect_a_host_without_a_route() {
    let site = site_with(Some("devops"), |_| Vec::new()).await;
    let url = site.haproxy.url("app", "/dashboards");
    let alice = site.login(&url, "alice@example.com").await;
    let response = site.get(&url, "application/json", &[alice]).await;
    assert_eq!(response.status(), 200, "{}", site.haproxy.log());
    let seen: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("echo json");
    assert_alice_reached_the_app(&seen["headers"]);
    let bob = site.login(&url, "bob@example.com").await;
    let response = site.get(&url, "application/json", &[bob]).await;
    assert_eq!(response.status(), 403, "{}", site.haproxy.log());

    // A route for devops, and HAProxy's own `auditors`: alice passes the
    // route, not the conditions.
    let site = site_with(Some("auditors"), |app| {
        vec![route(0, app, None, &["devops"])]
    })
    .await;
    let url = site.haproxy.url("app", "/");
    let alice = site.login(&url, "alice@example.com").await;
    let response = site.get(&url, "application/json", &[alice]).await;
    assert_eq!(response.status(), 403, "{}", site.haproxy.log());
    assert!(site.upstream.received().is_empty());
}

/// HAProxy's `src` reaches a `source_ip` policy: a client connecting from
/// 127.0.0.5 gets in, one from 127.0.0.6 gets 403 whatever
/// X-Forwarded-For it sends.
#[tokio::test]
async fn haproxy_passes_the_client_address_to_source_ip() {
    let site = site_with(None, |app| {
        vec![crate::fixture::source_ip_route(0, app, "127.0.0.5/32")]
    })
    .await;
    site.haproxy.assert_source_ip_decides(&site.upstream).await;
}
