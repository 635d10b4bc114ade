//! One login for two domains, through real nginx (`examples/nginx/nginx.conf`):
//! `hello.example.test` is under the cookie domain, `app.other.test` is not
//! and gets its session by handoff (`/.authgate/callback`). The in-process
//! provider and a manual clock stand in for Dex.

use crate::fixture::{COOKIE, header, route, session_cookie, set_cookies};
use crate::nginx_flow::{Site, login_through_nginx, session_cookie_line, site_with};
use crate::support::nginx::DOMAIN;

/// The nginx site with routes on both domains.
struct TwoDomains(Site);

/// What one login that ends on the other domain leaves behind.
struct Login {
    /// `_authgate=…` on the cookie domain (the login host and `hello`).
    domain_cookie: String,
    /// `_authgate=…` host-only on `app.other.test`.
    other_cookie: String,
    /// The handoff URL that was redeemed (for replay).
    handoff_url: String,
}

async fn two_domains() -> TwoDomains {
    TwoDomains(
        site_with(|nginx| {
            vec![
                route(0, &nginx.url("hello", ""), None, &["devops"]),
                route(1, &nginx.other_url("app", ""), None, &["devops"]),
            ]
        })
        .await,
    )
}

impl TwoDomains {
    async fn get(&self, url: &str, cookies: &[&str]) -> openidconnect::reqwest::Response {
        let mut request = self.0.client.get(url).header("Accept", "application/json");
        if !cookies.is_empty() {
            request = request.header("Cookie", cookies.join("; "));
        }
        request.send().await.expect("request through nginx")
    }

    /// The upstream's view of a request: `x-auth-request-email`, or the
    /// status when it was not reached.
    async fn upstream_email(&self, url: &str, cookie: &str) -> Result<String, u16> {
        let response = self.get(url, &[cookie]).await;
        if response.status() != 200 {
            return Err(response.status().as_u16());
        }
        let seen: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("echo json");
        Ok(seen["headers"]["x-auth-request-email"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// A login that starts at `url` on the other domain: nginx → sign-in on
    /// the login host → provider → callback → handoff on the other host →
    /// back at `url`.
    async fn login_at_other(&self, url: &str) -> Login {
        let response = login_through_nginx(
            &self.0.stack,
            &self.0.nginx,
            &self.0.client,
            url,
            "alice@example.com",
        )
        .await;
        let handoff_url = header(&response, "location");
        assert!(
            handoff_url.starts_with(&self.0.nginx.other_url("app", "/.authgate/callback?token=")),
            "{handoff_url}"
        );
        let line = session_cookie_line(&response).expect("session cookie on the login host");
        assert!(line.contains(&format!("Domain={DOMAIN}")), "{line}");
        let domain_cookie = format!("{COOKIE}={}", session_cookie(&response).expect("cookie"));

        let other_cookie = self.redeem(&handoff_url, url).await;
        Login {
            domain_cookie,
            other_cookie,
            handoff_url,
        }
    }

    /// Follows a handoff URL; asserts it lands on `url` with a host-only
    /// session cookie and returns that cookie.
    async fn redeem(&self, handoff_url: &str, url: &str) -> String {
        let response = self.get(handoff_url, &[]).await;
        assert_eq!(response.status(), 302, "{}", self.0.nginx.error_log());
        assert_eq!(
            header(&response, "location"),
            url,
            "back on exactly that URL"
        );
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        let line = session_cookie_line(&response).expect("session cookie on the other host");
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(line.contains(attribute), "{attribute} missing: {line}");
        }
        assert!(!line.contains("Domain="), "host-only: {line}");
        format!("{COOKIE}={}", session_cookie(&response).expect("cookie"))
    }

    /// Presents `token` at `host_url`'s callback; asserts a refusal page
    /// with `status` and no cookie.
    async fn refused(&self, host_url: &str, token: &str, status: u16) {
        let response = self.get(&format!("{host_url}?token={token}"), &[]).await;
        assert_eq!(response.status(), status, "{token}");
        assert!(set_cookies(&response).is_empty(), "no cookie on refusal");
        let body = response.text().await.expect("body");
        assert!(body.contains("Sign-in link not valid"), "{body}");
    }
}

fn token(handoff_url: &str) -> &str {
    handoff_url.split_once("?token=").expect("token").1
}

/// One login reaches both domains: the upstream sees alice on
/// `app.other.test` (host-only cookie from the handoff) and on
/// `hello.example.test` (the cookie-domain cookie). A second host outside
/// the cookie domain, visited while signed in, is handed the session at
/// once without the provider.
#[tokio::test]
async fn one_login_covers_both_domains() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/x?q=1");
    let login = site.login_at_other(&other).await;
    assert_eq!(
        site.upstream_email(&other, &login.other_cookie).await,
        Ok("alice@example.com".to_owned())
    );
    let hello = site.0.nginx.url("hello", "/y");
    assert_eq!(
        site.upstream_email(&hello, &login.domain_cookie).await,
        Ok("alice@example.com".to_owned())
    );

    // A fresh browser profile on the other host (cookie lost), still signed
    // in on the login host: sign-in hands off straight away.
    let page = site.0.nginx.other_url("app", "/again");
    let response = site.get(&page, &[]).await;
    let sign_in = header(&response, "location");
    let response = site.get(&sign_in, &[&login.domain_cookie]).await;
    assert_eq!(response.status(), 302);
    let handoff_url = header(&response, "location");
    assert!(
        handoff_url.starts_with(&site.0.nginx.other_url("app", "/.authgate/callback?token=")),
        "no provider round trip: {handoff_url}"
    );
    assert!(set_cookies(&response).is_empty(), "{handoff_url}");
    let cookie = site.redeem(&handoff_url, &page).await;
    assert_eq!(
        site.upstream_email(&page, &cookie).await,
        Ok("alice@example.com".to_owned())
    );
}

/// Forged, tampered, replayed, expired and cross-host tokens are refused
/// with a page (400 or 403) and never a cookie.
#[tokio::test]
async fn bad_handoff_tokens_are_refused() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/");
    let login = site.login_at_other(&other).await;
    let callback = site.0.nginx.other_url("app", "/.authgate/callback");

    // Replayed: the token the login used.
    site.refused(&callback, token(&login.handoff_url), 403)
        .await;

    // Forged: not ours at all, or one character changed.
    site.refused(&callback, "forged-token", 400).await;
    let session = login
        .domain_cookie
        .split_once('=')
        .expect("cookie pair")
        .1
        .to_owned();
    let app = &site.0.stack.app;
    let fresh = app
        .handoffs
        .mint(app.sessions.sealer(), &session, &other)
        .expect("mint");
    let good = token(&fresh);
    let mid = good.len() / 2;
    let flipped = if &good[mid..=mid] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &good[..mid], &good[mid + 1..]);
    site.refused(&callback, &tampered, 400).await;

    // Cross-host: minted for app.other.test, shown at hello.example.test
    // (which routes /.authgate/ too), and the other way round.
    let hello_callback = site.0.nginx.url("hello", "/.authgate/callback");
    site.refused(&hello_callback, good, 403).await;
    let for_hello = app
        .handoffs
        .mint(
            app.sessions.sealer(),
            &session,
            &site.0.nginx.url("hello", "/"),
        )
        .expect("mint");
    site.refused(&callback, token(&for_hello), 403).await;

    // Expired: a minute later the unused token is refused.
    site.0
        .stack
        .clock
        .advance(authgate::handoff::TOKEN_TTL.as_secs() as i64);
    site.refused(&callback, good, 403).await;
}

/// `rd` to a host outside the cookie domain that no route serves is
/// refused at `/oauth2/start` (no open redirect), signed in or not.
#[tokio::test]
async fn start_refuses_hosts_outside_the_policy() {
    let site = two_domains().await;
    let login = site
        .login_at_other(&site.0.nginx.other_url("app", "/"))
        .await;
    let port = site.0.nginx.https_port();
    for rd in [
        format!("https://evil.other.test:{port}/"),
        format!("https://app.other.test.evil.test:{port}/"),
        "https://evil.test/".to_owned(),
    ] {
        for cookies in [vec![], vec![login.domain_cookie.as_str()]] {
            let url = format!(
                "{}?rd={}",
                site.0.nginx.url("auth", "/oauth2/start"),
                url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
            );
            let response = site.get(&url, &cookies).await;
            assert_eq!(response.status(), 400, "{rd}");
            assert_eq!(header(&response, "location"), "", "{rd}");
        }
    }
}

/// Signing out on the login host ends the session on both domains: the
/// shared record is gone, so the host-only cookie on the other domain is
/// refused too, and a handoff token minted before the sign-out no longer
/// signs anyone in.
#[tokio::test]
async fn sign_out_ends_access_on_both_domains() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/");
    let hello = site.0.nginx.url("hello", "/");
    let login = site.login_at_other(&other).await;
    assert!(
        site.upstream_email(&other, &login.other_cookie)
            .await
            .is_ok()
    );
    assert!(
        site.upstream_email(&hello, &login.domain_cookie)
            .await
            .is_ok()
    );
    let session = login.domain_cookie.split_once('=').expect("pair").1;
    let app = &site.0.stack.app;
    let pending = app
        .handoffs
        .mint(app.sessions.sealer(), session, &other)
        .expect("mint");

    let response = site
        .get(
            &site.0.nginx.url("auth", "/oauth2/sign_out"),
            &[&login.domain_cookie],
        )
        .await;
    assert_eq!(response.status(), 200);

    assert_eq!(
        site.upstream_email(&other, &login.other_cookie).await,
        Err(302)
    );
    assert_eq!(
        site.upstream_email(&hello, &login.domain_cookie).await,
        Err(302)
    );
    let response = site.get(&pending, &[]).await;
    assert_eq!(response.status(), 403);
    assert!(set_cookies(&response).is_empty());
}
