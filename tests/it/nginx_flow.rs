//! Real nginx, started from `examples/nginx/nginx.conf`, in front of an echo
//! upstream, with authgate as its `auth_request` target and login host, and
//! the in-process provider. (The same flow against real Dex, LDAP and a
//! browser is in `dex_browser`.)

use std::net::SocketAddr;

use authgate::config::Config;
use tokio::net::TcpListener;
use url::Url;

use crate::fixture::{COOKIE, Stack, header, route, session_cookie, set_cookies};
use crate::support::nginx::{DOMAIN, EchoUpstream, Nginx, NginxOptions};
use crate::support::tls::TestCa;

pub(crate) struct Site {
    pub stack: Stack,
    pub nginx: Nginx,
    _upstream: EchoUpstream,
    client: openidconnect::reqwest::Client,
}

async fn site() -> Site {
    site_with(&[], |_| {}).await
}

/// The site with more authgate servers in nginx's upstream besides the
/// stack's (`replicas`: addresses the caller serves), and `tweak` applied
/// to the stack's configuration.
pub(crate) async fn site_with(replicas: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> Site {
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
    let routes = vec![route(0, &nginx.url("hello", ""), None, &["devops"])];
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
        _upstream: upstream,
        client,
    }
}

impl Site {
    pub async fn get(&self, url: &str, cookies: &[String]) -> openidconnect::reqwest::Response {
        let mut request = self
            .client
            .get(url)
            .header("Accept", "application/json")
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
        let response = self.get(url, &[]).await;
        assert_eq!(response.status(), 302, "{}", self.nginx.error_log());
        let sign_in = header(&response, "location");
        assert!(
            sign_in.starts_with(&self.nginx.url("auth", "/oauth2/start?rd=")),
            "{sign_in}"
        );
        let response = self.get(&sign_in, &[]).await;
        assert_eq!(response.status(), 302);
        let provider = header(&response, "location");
        let login_cookie = set_cookies(&response)
            .into_iter()
            .find(|(name, _)| name.starts_with("_authgate_login_"))
            .map(|(n, v)| format!("{n}={v}"))
            .expect("login cookie");
        let password = user.split('@').next().unwrap_or(user);
        let callback = self.stack.provider_login(&provider, user, password).await;
        assert!(callback.starts_with(&self.nginx.url("auth", "/oauth2/callback?")));
        let response = self.get(&callback, &[login_cookie]).await;
        assert_eq!(response.status(), 302);
        assert_eq!(
            header(&response, "location"),
            url,
            "back on exactly that URL"
        );
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
    assert_eq!(
        headers["x-auth-request-email"],
        serde_json::json!(["alice@example.com"])
    );
    assert_eq!(
        headers["x-auth-request-groups"],
        serde_json::json!(["devops,admins"])
    );
    assert_eq!(
        headers["x-auth-request-preferred-username"],
        serde_json::json!(["alice"])
    );
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
    let response = site
        .get(
            &site.nginx.url("auth", "/oauth2/sign_out"),
            std::slice::from_ref(&cookie),
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
    let tampered = format!("{}x", &cookie[..cookie.len() - 1]);
    let response = site.get(&url, &[tampered]).await;
    assert_eq!(response.status(), 302);
    assert!(header(&response, "location").contains("/oauth2/start?rd="));
}
