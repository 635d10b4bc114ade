//! One login for two domains, through real nginx (`examples/nginx/nginx.conf`):
//! `hello.example.test` is under the cookie domain, `app.other.test` is not
//! and gets its session by handoff: its sign-in begins at its own
//! `/.authgate/start` (nonce cookie), the login host answers with a page
//! that posts a one-time token to `/.authgate/callback`, which redeems it
//! only in that browser and uses it up at its first presentation. The
//! in-process provider and a manual clock stand in for Dex.

use authgate::handoff::nonce_cookie_name;

use crate::fixture::{COOKIE, header, route, session_cookie, set_cookies};
use crate::nginx_flow::{Site, login_from_sign_in, session_cookie_line, site_with};
use crate::support::nginx::{BROWSER_JSON_ACCEPT, DOMAIN};

/// The nginx site with routes on both domains.
struct TwoDomains(Site);

/// What one login that ends on the other domain leaves behind.
struct Login {
    /// `_authgate=…` on the cookie domain (the login host and `hello`).
    domain_cookie: String,
    /// `_authgate=…` host-only on `app.other.test`.
    other_cookie: String,
    /// `__Host-_authgate_handoff=…`: the nonce cookie of the browser that
    /// signed in (cleared by the callback, kept here to present again).
    nonce_cookie: String,
    /// The handoff that was redeemed (for replay).
    handoff: Delivery,
}

/// A token the login host delivers, and the callback it posts it to.
#[derive(Clone, Debug)]
struct Delivery {
    action: String,
    token: String,
}

/// What `/.authgate/start` answered: where it sends the browser and the
/// nonce cookie it set.
struct Started {
    sign_in: String,
    nonce_cookie: String,
}

fn nonce_name() -> String {
    nonce_cookie_name(COOKIE, true)
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
    /// A browser's GET that asks the echo upstream for JSON.
    async fn get(&self, url: &str, cookies: &[&str]) -> openidconnect::reqwest::Response {
        let mut request = self.0.client.get(url).header("Accept", BROWSER_JSON_ACCEPT);
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

    /// `url` on the other host without a session: nginx sends the browser
    /// to that host's `/.authgate/start`, which sets the nonce cookie
    /// (`cookies`: what the browser already holds there) and goes on to the
    /// login host with the binding.
    async fn start_at_other(&self, url: &str, cookies: &[&str]) -> Started {
        let response = self.get(url, &[]).await;
        assert_eq!(response.status(), 302, "{}", self.0.nginx.error_log());
        let start = header(&response, "location");
        let mut expected =
            url::Url::parse(&self.0.nginx.other_url("app", "/.authgate/start")).expect("start URL");
        expected.query_pairs_mut().append_pair("rd", url);
        assert_eq!(start, expected.as_str(), "sign-in begins on this host");
        self.start(&start, cookies).await
    }

    /// Follows a `/.authgate/start` URL; asserts the nonce cookie's
    /// attributes and that only its binding, never the nonce, travels on.
    async fn start(&self, start: &str, cookies: &[&str]) -> Started {
        let response = self.get(start, cookies).await;
        assert_eq!(response.status(), 302, "{}", self.0.nginx.error_log());
        let sign_in = header(&response, "location");
        assert!(
            sign_in.starts_with(&self.0.nginx.url("auth", "/oauth2/start?rd=")),
            "{sign_in}"
        );
        assert!(sign_in.contains("&handoff="), "{sign_in}");
        let line = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|l| l.starts_with(&format!("{}=", nonce_name())))
            .expect("nonce cookie")
            .to_owned();
        // SameSite=None: it must ride on the login host's cross-site POST.
        for attribute in ["Secure", "HttpOnly", "SameSite=None", "Path=/", "Max-Age="] {
            assert!(line.contains(attribute), "{attribute} missing: {line}");
        }
        assert!(!line.contains("Domain="), "host-only: {line}");
        let nonce = line
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .expect("cookie pair")
            .1;
        assert!(nonce.len() >= 22, "128 bits or more: {nonce}");
        assert!(!sign_in.contains(nonce), "the nonce stays in the cookie");
        Started {
            sign_in,
            nonce_cookie: format!("{}={nonce}", nonce_name()),
        }
    }

    /// A login that starts at `url` on the other domain: nginx → the other
    /// host's start → sign-in on the login host → provider → callback →
    /// handoff on the other host → back at `url`.
    async fn login_at_other(&self, url: &str) -> Login {
        let started = self.start_at_other(url, &[]).await;
        let response = login_from_sign_in(
            &self.0.client,
            &self.0.stack.http,
            &started.sign_in,
            "alice@example.com",
            &self.0.nginx.url("auth", "/oauth2/callback?"),
        )
        .await;
        let line = session_cookie_line(&response).expect("session cookie on the login host");
        assert!(line.contains(&format!("Domain={DOMAIN}")), "{line}");
        let domain_cookie = format!("{COOKIE}={}", session_cookie(&response).expect("cookie"));
        let handoff = self.delivery(response).await;

        let other_cookie = self.redeem(&handoff, url, &started.nonce_cookie).await;
        Login {
            domain_cookie,
            other_cookie,
            nonce_cookie: started.nonce_cookie,
            handoff,
        }
    }

    /// The login host's page that hands a session to the other host: a
    /// 200 (no redirect: the token is in no URL) whose form posts the token
    /// to that host's callback and submits itself, with a CSP that lets
    /// exactly that origin be posted to and this page's script run.
    async fn delivery(&self, response: openidconnect::reqwest::Response) -> Delivery {
        assert_eq!(response.status(), 200, "{}", self.0.nginx.error_log());
        assert_eq!(header(&response, "location"), "");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        let origin = self.0.nginx.other_url("app", "");
        let csp = header(&response, "content-security-policy");
        assert!(
            csp.contains(&format!("form-action 'self' {origin}")),
            "{csp}"
        );
        assert!(csp.contains("script-src 'nonce-"), "{csp}");
        let page = response.text().await.expect("page");
        let action = between(&page, "action=\"", "\"").expect("form action");
        let token = between(&page, "name=\"token\" value=\"", "\"").expect("token field");
        assert_eq!(action, self.0.nginx.other_url("app", "/.authgate/callback"));
        assert!(page.contains("document.forms[0].submit()"), "{page}");
        Delivery { action, token }
    }

    /// Posts `token` to `action` with `cookies`, as the login host's page
    /// makes the browser do.
    async fn post(
        &self,
        action: &str,
        token: &str,
        cookies: &[&str],
    ) -> openidconnect::reqwest::Response {
        let mut request = self
            .0
            .client
            .post(action)
            .form(&[("token", token)])
            .header("Accept", BROWSER_JSON_ACCEPT);
        if !cookies.is_empty() {
            request = request.header("Cookie", cookies.join("; "));
        }
        request.send().await.expect("post through nginx")
    }

    /// Posts a handoff in the browser holding `nonce_cookie`; asserts it
    /// lands on `url` (303) with a host-only session cookie and the nonce
    /// cookie cleared, and returns the session cookie.
    async fn redeem(&self, handoff: &Delivery, url: &str, nonce_cookie: &str) -> String {
        let response = self
            .post(&handoff.action, &handoff.token, &[nonce_cookie])
            .await;
        assert_eq!(response.status(), 303, "{}", self.0.nginx.error_log());
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
        assert!(
            set_cookies(&response)
                .iter()
                .any(|(name, value)| *name == nonce_name() && value.is_empty()),
            "nonce cookie cleared"
        );
        format!("{COOKIE}={}", session_cookie(&response).expect("cookie"))
    }

    /// Presents `token` at `host_url`'s callback with `cookies`; asserts a
    /// refusal page with `status` and no cookie; returns the page.
    async fn refused(&self, host_url: &str, token: &str, cookies: &[&str], status: u16) -> String {
        let response = self.post(host_url, token, cookies).await;
        assert_eq!(response.status(), status, "{token}");
        assert!(set_cookies(&response).is_empty(), "no cookie on refusal");
        let body = response.text().await.expect("body");
        assert!(body.contains("Sign-in link not valid"), "{body}");
        body
    }

    /// A token handing `login`'s session to `return_to`, minted directly
    /// (as the login host would), bound to `login`'s browser.
    fn mint(&self, login: &Login, return_to: &str) -> String {
        self.mint_for(login, return_to).token
    }

    /// [`TwoDomains::mint`], with the callback it is for.
    fn mint_for(&self, login: &Login, return_to: &str) -> Delivery {
        let app = &self.0.stack.app;
        let session = login.domain_cookie.split_once('=').expect("pair").1;
        let nonce = login.nonce_cookie.split_once('=').expect("pair").1;
        let host = url::Url::parse(return_to).expect("URL");
        let binding = app
            .handoffs()
            .binding(host.host_str().expect("host"), nonce)
            .expect("binding");
        let minted = app
            .handoffs()
            .mint(app.sessions().sealer(), session, return_to, &binding)
            .expect("mint");
        Delivery {
            action: minted.action,
            token: minted.token,
        }
    }
}

/// The text between `start` and the next `end` in `text`, its HTML
/// entities decoded (the page escapes `/` and `&` in attributes).
fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(
        rest[..rest.find(end)?]
            .replace("&#x2f;", "/")
            .replace("&amp;", "&"),
    )
}

/// One login reaches both domains: the upstream sees alice on
/// `app.other.test` (host-only cookie from the handoff) and on
/// `hello.example.test` (the cookie-domain cookie). A second visit to the
/// other host from a fresh browser profile there, still signed in on the
/// login host, goes through that host's start and is handed the session at
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

    let page = site.0.nginx.other_url("app", "/again");
    let started = site.start_at_other(&page, &[]).await;
    let response = site.get(&started.sign_in, &[&login.domain_cookie]).await;
    assert!(set_cookies(&response).is_empty());
    // No provider round trip: the page that posts the token, at once.
    let handoff = site.delivery(response).await;
    let cookie = site.redeem(&handoff, &page, &started.nonce_cookie).await;
    assert_eq!(
        site.upstream_email(&page, &cookie).await,
        Ok("alice@example.com".to_owned())
    );
}

/// Login CSRF: alice, signed in, takes a fresh handoff token for her own
/// browser and gets it to a victim. In the victim's browser — with no
/// nonce cookie, or with the victim's own from an earlier start — it is
/// refused with a 403 page and no cookie, so the victim is never signed in
/// as alice; and that refusal uses it up.
#[tokio::test]
async fn a_handoff_token_works_only_in_the_browser_that_started_it() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/");
    let alice = site.login_at_other(&other).await;

    let page = site.0.nginx.other_url("app", "/inbox");
    let victim = site.start_at_other(&page, &[]).await;
    let callback = site.0.nginx.other_url("app", "/.authgate/callback");
    for cookies in [
        vec![],
        vec![victim.nonce_cookie.as_str()],
        // The victim's own nonce cookie with alice's session cookie for
        // the other host does not help either: it is the token that is
        // bound.
        vec![victim.nonce_cookie.as_str(), alice.other_cookie.as_str()],
    ] {
        let attacker = site.start_at_other(&page, &[]).await;
        assert_ne!(victim.nonce_cookie, attacker.nonce_cookie);
        let response = site.get(&attacker.sign_in, &[&alice.domain_cookie]).await;
        let token = site.delivery(response).await.token;
        let body = site.refused(&callback, &token, &cookies, 403).await;
        assert!(body.contains("another browser"), "{body}");
        let body = site
            .refused(&callback, &token, &[&attacker.nonce_cookie], 403)
            .await;
        assert!(body.contains("already used"), "{body}");
    }
}

/// The attack of the outside test: the attacker begins a sign-in for the
/// other host (their own nonce, binding B) and sends a signed-in victim the
/// link `/oauth2/start?rd=…&handoff=B`. The login host mints a token with
/// the victim's session bound to B, but delivers it only inside a page in
/// the victim's browser, which posts it: the token is in no URL, so not in
/// nginx's access log, and that post — refused, another browser — uses it
/// up. The attacker, holding the nonce for B, never gets a session.
#[tokio::test]
async fn an_attackers_binding_never_yields_the_victims_session() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/");
    let victim = site.login_at_other(&other).await;

    let page = site.0.nginx.other_url("app", "/mail");
    let attacker = site.start_at_other(&page, &[]).await;
    // The victim opens the attacker's link, signed in on the login host.
    let response = site.get(&attacker.sign_in, &[&victim.domain_cookie]).await;
    let handoff = site.delivery(response).await;
    // The victim's browser posts it (with the victim's cookies there).
    let body = site
        .refused(
            &handoff.action,
            &handoff.token,
            &[&victim.other_cookie],
            403,
        )
        .await;
    assert!(body.contains("another browser"), "{body}");
    assert!(
        !site.0.nginx.access_log().contains(&handoff.token),
        "the token is in no logged URL"
    );
    // The attacker redeems it with the nonce of binding B: used up.
    let body = site
        .refused(
            &handoff.action,
            &handoff.token,
            &[&attacker.nonce_cookie],
            403,
        )
        .await;
    assert!(body.contains("already used"), "{body}");
    // A token in a URL is not accepted at all.
    let response = site
        .get(
            &format!("{}?token={}", handoff.action, handoff.token),
            &[&attacker.nonce_cookie],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(set_cookies(&response).is_empty());
}

/// The cookie a handoff sets on the other host is that host's own
/// credential: presented on a host of the cookie domain (as that host's
/// upstream, which sees it, could), it signs nobody in; on its own host it
/// does.
#[tokio::test]
async fn the_handed_off_cookie_is_valid_on_its_host_only() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/");
    let login = site.login_at_other(&other).await;
    assert_ne!(login.other_cookie, login.domain_cookie);
    assert_eq!(
        site.upstream_email(&other, &login.other_cookie).await,
        Ok("alice@example.com".to_owned())
    );
    let hello = site.0.nginx.url("hello", "/");
    assert_eq!(
        site.upstream_email(&hello, &login.other_cookie).await,
        Err(302)
    );
    let value = login.other_cookie.split_once('=').expect("pair").1;
    let direct = site.0.stack.auth(&hello, Some(value)).await;
    assert_eq!(direct.status(), 401);
}

/// Forged, tampered, replayed, expired and cross-host tokens are refused
/// with a page (400 or 403) and never a cookie, even in the browser they
/// were minted for.
#[tokio::test]
async fn bad_handoff_tokens_are_refused() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/");
    let login = site.login_at_other(&other).await;
    let callback = site.0.nginx.other_url("app", "/.authgate/callback");
    let nonce = [login.nonce_cookie.as_str()];

    // Replayed: the token the login used.
    site.refused(&callback, &login.handoff.token, &nonce, 403)
        .await;

    // Forged: not ours at all, or one character changed.
    site.refused(&callback, "forged-token", &nonce, 400).await;
    let good = &site.mint(&login, &other);
    let mid = good.len() / 2;
    let flipped = if &good[mid..=mid] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &good[..mid], &good[mid + 1..]);
    site.refused(&callback, &tampered, &nonce, 400).await;

    // Cross-host: minted for app.other.test, shown at hello.example.test
    // (which routes /.authgate/ too), and the other way round.
    let hello_callback = site.0.nginx.url("hello", "/.authgate/callback");
    site.refused(&hello_callback, good, &nonce, 403).await;
    let for_hello = site.mint(&login, &site.0.nginx.url("hello", "/"));
    site.refused(&callback, &for_hello, &nonce, 403).await;

    // Expired: a minute later an unused token is refused.
    let good = &site.mint(&login, &other);
    site.0
        .stack
        .clock
        .advance(authgate::handoff::TOKEN_TTL.as_secs() as i64);
    site.refused(&callback, good, &nonce, 403).await;
}

/// `/.authgate/start` sends the browser only to a page on its own host that
/// the allow-list accepts: a foreign host, a policy host other than this
/// one, a look-alike, a loop into `/.authgate/` and no `rd` at all are
/// refused with a 400 and neither a redirect nor a cookie. On a host inside
/// the cookie domain it is an ordinary sign-in, without a nonce.
#[tokio::test]
async fn start_only_returns_to_its_own_host() {
    let site = two_domains().await;
    let start = site.0.nginx.other_url("app", "/.authgate/start");
    let port = site.0.nginx.https_port();
    for rd in [
        "https://evil.test/".to_owned(),
        site.0.nginx.url("hello", "/"),
        format!("https://app.other.test.evil.test:{port}/"),
        site.0.nginx.other_url("app", "/.authgate/callback?token=x"),
        "//evil.test/".to_owned(),
        String::new(),
    ] {
        let url = format!(
            "{start}?rd={}",
            url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        );
        let response = site.get(&url, &[]).await;
        assert_eq!(response.status(), 400, "{rd}");
        assert_eq!(header(&response, "location"), "", "{rd}");
        assert!(set_cookies(&response).is_empty(), "{rd}");
    }

    let hello = site.0.nginx.url("hello", "/z");
    let mut url = url::Url::parse(&site.0.nginx.url("hello", "/.authgate/start")).expect("URL");
    url.query_pairs_mut().append_pair("rd", &hello);
    let response = site.get(url.as_str(), &[]).await;
    assert_eq!(response.status(), 302);
    let mut sign_in = url::Url::parse(&site.0.nginx.url("auth", "/oauth2/start")).expect("URL");
    sign_in.query_pairs_mut().append_pair("rd", &hello);
    assert_eq!(header(&response, "location"), sign_in.as_str());
    assert!(set_cookies(&response).is_empty());
}

/// A sign-in link for the other host that did not come through its start
/// (bookmarked, hand-made, or carrying a malformed binding) sends the
/// browser to that start first, signed in or not, rather than minting an
/// unbound token.
#[tokio::test]
async fn sign_in_without_binding_begins_at_the_host() {
    let site = two_domains().await;
    let other = site.0.nginx.other_url("app", "/deep?x=1");
    let login = site.login_at_other(&other).await;
    let mut expected =
        url::Url::parse(&site.0.nginx.other_url("app", "/.authgate/start")).expect("URL");
    expected.query_pairs_mut().append_pair("rd", &other);
    for handoff in [
        "",
        "&handoff=short",
        "&handoff=not+base64+at+all+but+forty-three+c",
    ] {
        for cookies in [vec![], vec![login.domain_cookie.as_str()]] {
            let url = format!(
                "{}?rd={}{handoff}",
                site.0.nginx.url("auth", "/oauth2/start"),
                url::form_urlencoded::byte_serialize(other.as_bytes()).collect::<String>()
            );
            let response = site.get(&url, &cookies).await;
            assert_eq!(response.status(), 302, "{handoff}");
            assert_eq!(
                header(&response, "location"),
                expected.as_str(),
                "{handoff}"
            );
            assert!(set_cookies(&response).is_empty());
        }
    }
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
    let pending = site.mint_for(&login, &other);

    let response = site
        .0
        .client
        .post(site.0.nginx.url("auth", "/oauth2/sign_out"))
        .header("Cookie", &login.domain_cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .expect("sign out");
    assert_eq!(response.status(), 200);

    assert_eq!(
        site.upstream_email(&other, &login.other_cookie).await,
        Err(302)
    );
    assert_eq!(
        site.upstream_email(&hello, &login.domain_cookie).await,
        Err(302)
    );
    let response = site
        .post(&pending.action, &pending.token, &[&login.nonce_cookie])
        .await;
    assert_eq!(response.status(), 403);
    assert!(set_cookies(&response).is_empty());
}

/// Every front end sends a browser without a session on a host outside the
/// cookie domain to that host's own `/.authgate/start` (which sets the
/// nonce), and one inside it straight to the login host: the nginx
/// endpoint's 401 `Location`, forward-auth's 302 and Envoy's gRPC 302 agree.
#[tokio::test]
async fn every_front_end_begins_the_sign_in_on_the_handoff_host() {
    use crate::grpc_authz::{GrpcStack, envoy_request, seen};

    let other = "https://app.other.test/x?q=a%2Fb";
    let inside = "https://app.example.test/y";
    let stack = crate::fixture::Stack::start_with(
        vec![
            route(0, "https://app.other.test", None, &["devops"]),
            route(1, "https://app.example.test", None, &["devops"]),
        ],
        |config| config.cookie.domain = Some("example.test".to_owned()),
    )
    .await;
    let grpc = GrpcStack::on(stack).await;
    let stack = &grpc.stack;
    let mut start = url::Url::parse("https://app.other.test/.authgate/start").expect("URL");
    start.query_pairs_mut().append_pair("rd", other);
    for (url, expected) in [
        (other, start.to_string()),
        (inside, stack.app.sign_in_url(inside)),
    ] {
        let nginx = stack.auth(url, None).await;
        assert_eq!(nginx.status(), 401);
        assert_eq!(header(&nginx, "location"), expected, "nginx {url}");

        let parsed = url::Url::parse(url).expect("URL");
        let forward = stack
            .http
            .get(format!(
                "{}/forward-auth{}",
                stack.base,
                &url[parsed.origin().ascii_serialization().len()..]
            ))
            .header("host", parsed.host_str().expect("host"))
            .header("accept", crate::support::nginx::BROWSER_ACCEPT)
            .send()
            .await
            .expect("forward-auth");
        assert_eq!(forward.status(), 302, "forward-auth {url}");
        assert_eq!(header(&forward, "location"), expected, "forward-auth {url}");

        let check = seen(
            &grpc
                .check(envoy_request(
                    "GET",
                    url,
                    &[("accept", crate::support::nginx::BROWSER_ACCEPT)],
                ))
                .await,
        );
        assert_eq!(check.http_status, 302, "envoy {url}");
        assert_eq!(check.headers["location"], expected, "envoy {url}");
    }
}
