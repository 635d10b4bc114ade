//! Real nginx, started from `examples/nginx/nginx.conf`, in front of an echo
//! upstream, with authgate as its `auth_request` target and login host, and
//! the in-process provider. (The same flow against real Dex, LDAP and a
//! browser is in `dex_browser`.)

use std::net::SocketAddr;

use authgate::config::{Config, RouteConfig};
use tokio::net::TcpListener;
use url::Url;

use crate::fixture::{
    COOKIE, Stack, header, provider_login, route, session_cookie, set_cookies, sign_out,
};
use crate::support::nginx::{BROWSER_JSON_ACCEPT, DOMAIN, EchoUpstream, Nginx, NginxOptions};
use crate::support::tls::TestCa;
use crate::support::upstream::assert_alice_reached_the_app;

/// nginx from the example in front of the echo upstream, authgate as its
/// login host with `cookie_domain` = [`DOMAIN`], and a client resolving the
/// test names to nginx; `hello` is the route `route-0`, for group `devops`.
pub(crate) struct Site {
    pub stack: Stack,
    pub nginx: Nginx,
    /// The app behind nginx.
    pub upstream: EchoUpstream,
    pub client: openidconnect::reqwest::Client,
    /// The CA of nginx's certificate, for a browser to trust.
    pub ca: TestCa,
}

/// The site with one route: `hello` for `devops`.
pub(crate) async fn site() -> Site {
    site_with(|nginx| vec![hello_route(nginx)]).await
}

/// The `hello` route for `devops`.
fn hello_route(nginx: &Nginx) -> RouteConfig {
    route(0, &nginx.url("hello", ""), None, &["devops"])
}

/// The site with the routes `routes` makes from nginx's URLs.
pub(crate) async fn site_with(routes: impl FnOnce(&Nginx) -> Vec<RouteConfig>) -> Site {
    site_full(routes, &[], |_| {}).await
}

/// The `hello` site with more authgate servers in nginx's upstream besides
/// the stack's (`replicas`: addresses the caller serves), and `tweak`
/// applied to the stack's configuration.
pub(crate) async fn site_with_replicas(
    replicas: &[SocketAddr],
    tweak: impl FnOnce(&mut Config),
) -> Site {
    site_full(|nginx| vec![hello_route(nginx)], replicas, tweak).await
}

async fn site_full(
    routes: impl FnOnce(&Nginx) -> Vec<RouteConfig>,
    replicas: &[SocketAddr],
    tweak: impl FnOnce(&mut Config),
) -> Site {
    let ca = TestCa::new("authgate nginx test CA");
    let upstream = EchoUpstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nginx = Nginx::start_with_replicas(
        NginxOptions {
            authgate: listener.local_addr().expect("addr"),
            upstream: upstream.addr(),
            ca: &ca,
            domain: DOMAIN,
        },
        replicas,
    )
    .await;
    let login_base = nginx.url("auth", "");
    let routes = routes(&nginx);
    let stack = Stack::start_on(listener, routes, |config| {
        config.authenticate_service_url = Url::parse(&login_base).expect("login base");
        config.cookie.domain = Some(DOMAIN.to_owned());
        config.cookie.secure = true;
        tweak(config);
    })
    .await;
    let client = nginx.http_client(&[]);
    Site {
        stack,
        nginx,
        upstream,
        client,
        ca,
    }
}

impl Site {
    pub async fn get(&self, url: &str, cookies: &[String]) -> openidconnect::reqwest::Response {
        let mut request = self
            .client
            .get(url)
            .header("Accept", BROWSER_JSON_ACCEPT)
            // A client trying to pass itself off as someone else.
            .header("X-Auth-Request-Email", "mallory@evil.test")
            .header("X-Auth-Request-Groups", "admins");
        if !cookies.is_empty() {
            request = request.header("Cookie", cookies.join("; "));
        }
        request.send().await.expect("request through nginx")
    }

    /// The login through nginx: protected URL → sign-in → provider → callback.
    /// Returns the session cookie (`name=value`).
    pub async fn login(&self, url: &str, user: &str) -> String {
        let response = login_through_nginx(&self.stack, &self.nginx, &self.client, url, user).await;
        assert_eq!(
            header(&response, "location"),
            url,
            "back on exactly that URL"
        );
        let line = session_cookie_line(&response).expect("session cookie");
        assert!(line.contains(&format!("Domain={DOMAIN}")), "{line}");
        assert!(line.contains("Secure"), "{line}");
        format!("{COOKIE}={}", session_cookie(&response).expect("cookie"))
    }
}

/// The login through nginx up to authgate's answer to the provider's
/// redirect: protected `url` without a cookie → 302 to sign-in on the login
/// host → [`login_from_sign_in`], whose answer is returned.
pub(crate) async fn login_through_nginx(
    stack: &Stack,
    nginx: &Nginx,
    client: &openidconnect::reqwest::Client,
    url: &str,
    user: &str,
) -> openidconnect::reqwest::Response {
    let response = client.get(url).send().await.expect("request through nginx");
    assert_eq!(response.status(), 302, "{}", nginx.error_log());
    let sign_in = header(&response, "location");
    assert!(
        sign_in.starts_with(&nginx.url("auth", "/oauth2/start?rd=")),
        "{sign_in}"
    );
    login_from_sign_in(
        client,
        &stack.http,
        &sign_in,
        user,
        &nginx.url("auth", "/oauth2/callback?"),
    )
    .await
}

/// From a sign-in URL on the login host (`client`: the browser, through
/// nginx): → provider (with `provider`, as `user`, password = name before
/// the @) → callback (checked to start with `callback`), whose
/// answer is returned. Shared with the handoff tests, whose sign-in begins
/// on another host, and the chart's, whose login host is the values'.
pub(crate) async fn login_from_sign_in(
    client: &openidconnect::reqwest::Client,
    provider: &openidconnect::reqwest::Client,
    sign_in: &str,
    user: &str,
    callback: &str,
) -> openidconnect::reqwest::Response {
    let get = |url: String, cookie: Option<String>| {
        let mut request = client.get(url);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        async move { request.send().await.expect("request through nginx") }
    };
    let response = get(sign_in.to_owned(), None).await;
    assert_eq!(response.status(), 302);
    let provider_url = header(&response, "location");
    let login_cookie = set_cookies(&response)
        .into_iter()
        .find(|(name, _)| name.starts_with("_authgate_login_"))
        .map(|(n, v)| format!("{n}={v}"))
        .expect("login cookie");
    let password = user.split('@').next().unwrap_or(user);
    let to_callback = provider_login(provider, &provider_url, user, password).await;
    assert!(to_callback.starts_with(callback), "{to_callback}");
    let response = get(to_callback, Some(login_cookie)).await;
    // 302 back to the page; 200 with the page that posts a handoff token
    // for a host outside the cookie domain.
    assert!(
        matches!(response.status().as_u16(), 200 | 302),
        "{}",
        response.status()
    );
    response
}

/// The whole `Set-Cookie` line of the session cookie, attributes included.
pub(crate) fn session_cookie_line(response: &openidconnect::reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|l| l.starts_with(&format!("{COOKIE}=")))
        .map(str::to_owned)
}

/// Unauthenticated → 302 to sign-in → provider → callback → cookie →
/// upstream reached with the identity headers (and not the client's).
#[tokio::test]
async fn nginx_signs_in_and_upstream_sees_identity() {
    let site = site().await;
    let url = site.nginx.url("hello", "/some/path?q=1");
    let cookie = site.login(&url, "alice@example.com").await;
    let response = site.get(&url, std::slice::from_ref(&cookie)).await;
    assert_eq!(response.status(), 200, "{}", site.nginx.error_log());
    let seen: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("echo json");
    let headers = &seen["headers"];
    assert_alice_reached_the_app(headers);
    assert_eq!(seen["uri"], "/some/path?q=1");
    // The session cookie is the proxy's business, but never a claim carrier.
    assert!(cookie.len() < 220);
}

/// A user outside the group gets 403 from nginx.
#[tokio::test]
async fn nginx_denies_user_outside_group() {
    let site = site().await;
    let url = site.nginx.url("hello", "/");
    let cookie = site.login(&url, "bob@example.com").await;
    let response = site.get(&url, &[cookie]).await;
    assert_eq!(response.status(), 403);
}

/// Sign-out ends the session: the next request goes to sign-in, and the old
/// cookie replayed by hand is refused the same way.
#[tokio::test]
async fn nginx_sign_out_and_replay() {
    let site = site().await;
    let url = site.nginx.url("hello", "/");
    let cookie = site.login(&url, "alice@example.com").await;
    assert_eq!(
        site.get(&url, std::slice::from_ref(&cookie)).await.status(),
        200
    );
    let response = sign_out(
        &site.client,
        &site.nginx.url("auth", "/oauth2/sign_out"),
        &cookie,
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = site.get(&url, &[cookie]).await;
    assert_eq!(response.status(), 302);
    assert!(header(&response, "location").contains("/oauth2/start?rd="));
}

/// A tampered cookie sends the browser to sign in again, never through.
#[tokio::test]
async fn nginx_tampered_cookie_signs_in_again() {
    let site = site().await;
    let url = site.nginx.url("hello", "/");
    let cookie = site.login(&url, "alice@example.com").await;
    // Another last character (a cookie ending in `x` once made this test
    // send the genuine cookie).
    let other = if cookie.ends_with('x') { 'y' } else { 'x' };
    let tampered = format!("{}{other}", &cookie[..cookie.len() - 1]);
    let response = site.get(&url, &[tampered]).await;
    assert_eq!(response.status(), 302);
    assert!(header(&response, "location").contains("/oauth2/start?rd="));
}

/// `examples/nginx/ingress-nginx.yaml`, run as ingress-nginx renders it:
/// the `ops` Ingress is protected by its `auth-url …&allowed_groups=devops`
/// alone (authgate has no route for ops.example.com): not signed in, the
/// browser is sent to sign in; alice (devops) reaches the app with her
/// identity; bob and carol get 403. And on a host with a route, the
/// auth-url's conditions and the route must both allow: hello's route
/// admits admins and users, `allowed_groups=users` on its auth-url keeps
/// alice (admins) out and lets bob (users) in.
#[tokio::test]
async fn ingress_auth_url_conditions_protect_a_host_without_a_route() {
    use crate::support::ingress_nginx;

    let stack = Stack::start_with(
        vec![route(
            0,
            "https://hello.example.com",
            None,
            &["admins", "users"],
        )],
        |config| {
            config.authenticate_service_url =
                Url::parse("https://auth.example.com").expect("login URL");
            config.cookie.domain = Some("example.com".to_owned());
        },
    )
    .await;
    let authgate: SocketAddr = stack
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("authgate address");
    let upstream = EchoUpstream::start().await;
    let example = std::fs::read_to_string(
        crate::support::repo_root().join("examples/nginx/ingress-nginx.yaml"),
    )
    .expect("read the example");
    let hello_auth = "/oauth2/auth?host=hello.example.com\"";
    assert!(example.contains(hello_auth), "the example changed");
    let example = example.replace(
        hello_auth,
        "/oauth2/auth?host=hello.example.com&allowed_groups=users\"",
    );
    let ca = TestCa::new("ingress-nginx conditions CA");
    let nginx = ingress_nginx::start_example(&example, authgate, upstream.addr(), &ca).await;

    // Logins straight at authgate (its login host is not served here).
    let mut cookies = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let (provider_url, login_cookie) = stack.start_login("https://ops.example.com/").await;
        let callback = stack
            .provider_login(&provider_url, &format!("{user}@example.com"), user)
            .await
            .replace("https://auth.example.com", &stack.base);
        let response = stack.callback(&callback, &login_cookie).await;
        let value = session_cookie(&response).expect("session cookie");
        cookies.push(format!("Cookie: {COOKIE}={value}"));
    }
    let [alice, bob, carol] = [&cookies[0], &cookies[1], &cookies[2]];
    let accept = format!("Accept: {BROWSER_JSON_ACCEPT}");
    let get = |sub: &'static str, cookie: Option<&String>| {
        let mut headers = vec![accept.clone()];
        headers.extend(cookie.cloned());
        let nginx = &nginx;
        async move {
            let host = format!("{sub}.example.com");
            nginx.raw_get(sub, "/page", &host, &headers).await
        }
    };

    let (status, _) = get("ops", None).await;
    assert_eq!(status, 302, "{}", nginx.error_log());
    let (status, body) = get("ops", Some(alice)).await;
    assert_eq!(status, 200, "{}", nginx.error_log());
    let seen: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    assert_alice_reached_the_app(&seen["headers"]);
    assert_eq!(get("ops", Some(bob)).await.0, 403);
    assert_eq!(get("ops", Some(carol)).await.0, 403);
    assert_eq!(upstream.received().len(), 1, "only alice reached ops");

    assert_eq!(get("hello", Some(alice)).await.0, 403, "the query refuses");
    let (status, body) = get("hello", Some(bob)).await;
    assert_eq!(status, 200, "both allow bob: {body}");
    assert!(body.contains("bob@example.com"), "{body}");
    assert_eq!(get("hello", Some(carol)).await.0, 403, "the route refuses");
}

/// The client's address reaches the policy through real nginx: nginx (in
/// `trusted_proxies`) sends `X-Forwarded-For: $remote_addr`, and a route
/// whose policy is `source_ip: 127.0.0.5/32` lets a client connecting
/// from 127.0.0.5 in and keeps one from 127.0.0.6 out, also when that one
/// writes 127.0.0.5 into its own `X-Forwarded-For` (nginx replaces it).
#[tokio::test]
async fn nginx_passes_the_client_address_to_source_ip() {
    let site = site_full(
        |nginx| {
            vec![crate::fixture::source_ip_route(
                0,
                &nginx.url("hello", ""),
                "127.0.0.5/32",
            )]
        },
        &[],
        |config| {
            config
                .trusted_proxies
                .push("127.0.0.1/32".parse().expect("cidr"));
        },
    )
    .await;
    let url = site.nginx.url("hello", "/page");
    let from = |last: u8, spoofed: Option<&str>| {
        let client = crate::support::tls::https_client_builder(
            site.nginx.ca_pem(),
            [format!("hello.{DOMAIN}")],
            site.nginx.https_addr(),
        )
        .local_address(std::net::IpAddr::from([127, 0, 0, last]))
        .build()
        .expect("client");
        let mut request = client.get(&url).header("Accept", "application/json");
        if let Some(spoofed) = spoofed {
            request = request.header("X-Forwarded-For", spoofed);
        }
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(from(5, None).await, 200, "{}", site.nginx.error_log());
    // Refused whoever signs in: 403, not a sign-in.
    assert_eq!(from(6, None).await, 403);
    assert_eq!(from(6, Some("127.0.0.5")).await, 403);
    assert_eq!(site.upstream.received().len(), 1, "only 127.0.0.5");
}
