//! The seed's stack for real (issue 3): headless Chromium clicks through
//! nginx (`examples/nginx/nginx.conf`) → authgate → Dex v2.41.1 with its
//! LDAP connector → 389 Directory Server laid out like FreeIPA, and back to an echo
//! upstream that shows who arrived.
//!
//! Each test builds its own stack on ephemeral loopback ports (they run in
//! parallel) and tears it down when it ends. authgate is configured from
//! YAML with the seed's Pomerium-style settings: `allowed_groups: [devops]`
//! on `hello`, `allowed_idp_claims: {groups: [devops]}` on `app2`, scopes
//! `openid profile email groups offline_access`, the cookie on the root
//! domain and the login on `auth.`. A failing test leaves a screenshot in
//! `tests/screenshots/` and the tail of every component's log on stderr.
//!
//! The scenario "removed from `devops` in LDAP loses access at the next
//! session refresh" is in `dex_refresh`, which reuses [`E2e`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::app::App;
use authgate::clock::SystemClock;
use authgate::server;
use base64::Engine as _;
use fantoccini::Locator;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::browser::{Browser, BrowserOptions};
use crate::support::dex::{CLIENT_ID, Dex, DexOptions, LdapFilters};
use crate::support::dirsrv::{ALICE, BOB, Dirsrv, User};
use crate::support::nginx::{DOMAIN, EchoUpstream, Nginx, NginxOptions, OTHER_DOMAIN};
use crate::support::temp_dir;
use crate::support::tls::TestCa;

/// authgate's session cookie name (the default).
pub(crate) const COOKIE: &str = "_authgate";

/// What a scenario varies in the stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// authgate's `cookie_expire`.
    pub cookie_expire: Duration,
    /// authgate's `refresh_interval`.
    pub refresh_interval: Duration,
    /// Dex's `expiry.idTokens`.
    pub id_token_ttl: Duration,
    /// authgate's `idp_clock_skew` (none: the default).
    pub clock_skew: Option<Duration>,
    /// Dex's LDAP filters (the seed's by default).
    pub ldap_filters: LdapFilters,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cookie_expire: Duration::from_secs(3600),
            refresh_interval: Duration::from_secs(300),
            id_token_ttl: Duration::from_secs(600),
            clock_skew: None,
            ldap_filters: LdapFilters::SEED,
        }
    }
}

/// The seed's stack without a browser: 389-ds, Dex, authgate and nginx in
/// front of an echo upstream. Dropping it stops authgate and kills the rest.
pub(crate) struct DexSite {
    pub nginx: Nginx,
    pub dex: Dex,
    pub dirsrv: Dirsrv,
    /// authgate's `authenticate_service_url`.
    pub login_base: String,
    stop: Option<oneshot::Sender<()>>,
    _upstream: EchoUpstream,
}

impl DexSite {
    /// Starts everything; nginx's certificate is issued by `ca`.
    pub async fn start(ca: &TestCa, options: Options) -> DexSite {
        let upstream = EchoUpstream::start().await;
        // authgate's port first: nginx's config names it, and authgate's
        // config names nginx's port.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind authgate");
        let authgate_addr = listener.local_addr().expect("authgate address");
        let (dirsrv, nginx) = tokio::join!(
            Dirsrv::start(),
            Nginx::start(NginxOptions {
                authgate: authgate_addr,
                upstream: upstream.addr(),
                ca,
                domain: DOMAIN,
            }),
        );
        let login_base = nginx.url("auth", "");
        let dex = Dex::start(
            &dirsrv,
            DexOptions {
                redirect_uris: vec![format!("{login_base}/oauth2/callback")],
                id_token_ttl: options.id_token_ttl,
                persistent_storage: false,
                ldap_filters: options.ldap_filters,
            },
        )
        .await;

        let yaml = authgate_yaml(&nginx, &dex, &login_base, &options);
        let config = authgate::config::parse_str("authgate.yaml", &yaml, &|_| None)
            .unwrap_or_else(|e| panic!("authgate config:\n{e}\n---\n{yaml}"))
            .config;
        let app = App::new(config, Arc::new(SystemClock)).expect("assemble authgate");
        app.oidc().discover().await.expect("discover Dex");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server::run(app, server::Listeners::http(listener), async {
            let _ = stopped.await;
        }));
        DexSite {
            nginx,
            dex,
            dirsrv,
            login_base,
            stop: Some(stop),
            _upstream: upstream,
        }
    }

    /// `https://<sub>.example.test:<nginx port><path>`.
    pub fn url(&self, sub: &str, path: &str) -> String {
        self.nginx.url(sub, path)
    }

    /// A plain GET through nginx (no redirects followed) as a browser
    /// navigating, with the session cookie `value` if given.
    pub async fn get(&self, url: &str, cookie: Option<&str>) -> openidconnect::reqwest::Response {
        let mut request = self.nginx.http_client(&["app2"]).get(url);
        if let Some(value) = cookie {
            request = request.header("cookie", format!("{COOKIE}={value}"));
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// How many requests for `path` (a prefix) reached nginx so far.
    pub fn requests_for(&self, path: &str) -> usize {
        self.requests("GET", path)
    }

    /// How many `method` requests for `path` nginx logged.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        let needle = format!("\"{method} {path}");
        self.nginx
            .access_log()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

impl Drop for DexSite {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One scenario's whole stack: [`DexSite`] (its fields and methods through
/// `Deref`) and a browser. Dropping it stops everything; if the test is
/// failing, it first saves a screenshot and prints the logs.
pub(crate) struct E2e {
    name: &'static str,
    pub browser: Browser,
    site: DexSite,
    _ca_dir: tempfile::TempDir,
}

impl std::ops::Deref for E2e {
    type Target = DexSite;

    fn deref(&self) -> &DexSite {
        &self.site
    }
}

impl std::ops::DerefMut for E2e {
    fn deref_mut(&mut self) -> &mut DexSite {
        &mut self.site
    }
}

impl E2e {
    /// Starts everything; `name` names the failure screenshot.
    pub async fn start(name: &'static str, options: Options) -> E2e {
        let started = Instant::now();
        let ca = TestCa::new("authgate e2e web CA");
        let ca_dir = temp_dir("web-ca");
        let ca_pem = ca.write_cert(ca_dir.path());
        let (site, browser) = tokio::join!(
            DexSite::start(&ca, options),
            Browser::start(BrowserOptions {
                trust_ca: Some(ca_pem),
                host_resolver_rules: Some(format!(
                    "MAP *.{DOMAIN} 127.0.0.1, MAP *.{OTHER_DOMAIN} 127.0.0.1"
                )),
            }),
        );
        eprintln!("[{name}] stack ready in {:?}", started.elapsed());
        E2e {
            name,
            browser,
            site,
            _ca_dir: ca_dir,
        }
    }

    /// Waits until the browser shows Dex's password form.
    pub async fn expect_dex_form(&self, why: &str) {
        let issuer = self.dex.issuer();
        self.browser
            .wait_for_url(&format!("Dex ({why})"), |u| u.as_str().starts_with(&issuer))
            .await;
        self.browser
            .client()
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Id("password"))
            .await
            .unwrap_or_else(|e| panic!("no Dex password form ({why}): {e}"));
    }

    /// Opens `url`, signs in on Dex's form as `user`, and waits until the
    /// browser is back on exactly `url`.
    pub async fn login_at(&self, url: &str, user: &User) {
        self.browser.goto(url).await;
        self.expect_dex_form("login").await;
        self.browser.dex_login(user.email, user.password).await;
        self.browser
            .wait_for_url(&format!("{url} after the login"), |u| u.as_str() == url)
            .await;
    }

    /// The session cookie's value as the browser holds it for the current
    /// page, if any.
    pub async fn session_cookie(&self) -> Option<String> {
        self.browser
            .cookies()
            .await
            .into_iter()
            .find(|c| c.name() == COOKIE && !c.value().is_empty())
            .map(|c| c.value().to_owned())
    }

    /// The text of the echo page's cell for identity header `name`.
    pub async fn echoed(&self, name: &str) -> String {
        let cell = self
            .browser
            .client()
            .find(Locator::Id(name))
            .await
            .unwrap_or_else(|e| panic!("no {name} on the echo page: {e}"));
        cell.text().await.unwrap_or_default()
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let shot = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                let name = format!("dex_browser_{}_failure", self.name);
                tokio::task::block_in_place(|| {
                    handle.block_on(async {
                        tokio::time::timeout(
                            Duration::from_secs(10),
                            self.browser.screenshot(&name),
                        )
                        .await
                        .ok()
                        .flatten()
                    })
                })
            }
            _ => None,
        };
        eprintln!(
            "[{}] failed; screenshot: {shot:?}\n--- dex (tail) ---\n{}\n--- nginx ---\n{}\n--- 389-ds ---\n{}\n--- chromedriver (tail) ---\n{}",
            self.name,
            tail(&self.dex.log(), 40),
            tail(&self.nginx.error_log(), 20),
            tail(&self.dirsrv.log(), 10),
            tail(&self.browser.driver_log(), 20),
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// authgate's configuration, as an operator of the seed deployment writes it.
fn authgate_yaml(nginx: &Nginx, dex: &Dex, login_base: &str, o: &Options) -> String {
    let skew = o.clock_skew.map_or_else(String::new, |d| {
        format!("idp_clock_skew: {}s\n", d.as_secs())
    });
    let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let json = |s: &str| serde_json::to_string(s).expect("JSON string");
    format!(
        "authenticate_service_url: {login_base}\n\
         idp_provider: oidc\n\
         idp_provider_url: {issuer}\n\
         idp_client_id: {CLIENT_ID}\n\
         idp_client_secret: {client_secret}\n\
         idp_scopes: [openid, profile, email, groups, offline_access]\n\
         cookie_secret: {secret}\n\
         cookie_domain: {DOMAIN}\n\
         cookie_expire: {expire}s\n\
         refresh_interval: {refresh}s\n\
         session_store: memory\n\
         log_level: warn\n\
         {skew}\
         policy:\n\
         \x20 - from: {hello}\n\
         \x20   allowed_groups: [devops]\n\
         \x20 - from: {app2}\n\
         \x20   allowed_idp_claims:\n\
         \x20     groups: [devops]\n\
         \x20 - from: {other}\n\
         \x20   allowed_groups: [devops]\n",
        issuer = dex.issuer(),
        client_secret = json(dex.client_secret()),
        expire = o.cookie_expire.as_secs(),
        refresh = o.refresh_interval.as_secs(),
        hello = nginx.url("hello", ""),
        app2 = nginx.url("app2", ""),
        other = nginx.other_url("app", ""),
    )
}

/// Dex's `sub` for an LDAP user: base64url(protobuf{1: idAttr (uidNumber),
/// 2: connector id}).
fn dex_subject(user: &User) -> String {
    let id = user.uid_number.to_string();
    let connector = crate::support::dex::CONNECTOR_ID;
    let mut bytes = vec![0x0a, id.len() as u8];
    bytes.extend_from_slice(id.as_bytes());
    bytes.extend_from_slice(&[0x12, connector.len() as u8]);
    bytes.extend_from_slice(connector.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// alice (in `devops`) opens a deep link, signs in on Dex's own form, and
/// lands back on exactly that URL; the upstream sees her email, uid
/// (`preferred_username`), groups and Dex's subject, and the session cookie
/// is on the root domain, Secure and HttpOnly.
#[tokio::test(flavor = "multi_thread")]
async fn member_of_devops_lands_on_the_deep_link_with_identity() {
    let e2e = E2e::start("deep_link", Options::default()).await;
    let url = e2e.url("hello", "/some/path?q=1");
    e2e.login_at(&url, &ALICE).await;

    e2e.browser
        .expect_text("dex_browser_deep_link", "Hello, alice@example.test")
        .await;
    e2e.browser.screenshot("dex_browser_upstream").await;
    assert_eq!(e2e.echoed("uri").await, "/some/path?q=1");
    assert_eq!(e2e.echoed("x-auth-request-email").await, ALICE.email);
    assert_eq!(
        e2e.echoed("x-auth-request-preferred-username").await,
        ALICE.uid
    );
    assert_eq!(e2e.echoed("x-auth-request-user").await, dex_subject(&ALICE));
    let mut groups: Vec<String> = e2e
        .echoed("x-auth-request-groups")
        .await
        .split(',')
        .map(str::to_owned)
        .collect();
    groups.sort_unstable();
    let mut expected: Vec<&str> = ALICE.groups.to_vec();
    expected.sort_unstable();
    assert_eq!(groups, expected, "her LDAP groups, each once");

    let cookie = e2e
        .browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c.name() == COOKIE)
        .expect("session cookie");
    assert_eq!(
        cookie.domain().map(|d| d.trim_start_matches('.')),
        Some(DOMAIN)
    );
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    // The login-attempt cookie is gone once the login completed.
    assert!(
        !e2e.browser
            .cookies()
            .await
            .iter()
            .any(|c| c.name().starts_with("_authgate_login_")),
        "login-attempt cookie left behind"
    );
}

/// bob (not in `devops`) signs in and gets authgate's 403 page through
/// nginx's `error_page 403`: it says who he is and offers sign-out, which
/// works.
#[tokio::test(flavor = "multi_thread")]
async fn non_member_sees_who_he_is_and_can_sign_out() {
    let e2e = E2e::start("forbidden", Options::default()).await;
    let url = e2e.url("hello", "/reports");
    e2e.login_at(&url, &BOB).await;

    let text = e2e
        .browser
        .expect_text("dex_browser_forbidden", "Access denied")
        .await;
    e2e.browser.screenshot("dex_browser_forbidden").await;
    assert!(
        text.contains("You are signed in as bob@example.test"),
        "{text}"
    );
    // What the route asks for, what Bob's sign-in carried, the likely cause.
    assert!(text.contains("This address needs group devops"), "{text}");
    assert!(text.contains("groupSearch.filter"), "{text}");
    assert!(!text.contains("Hello,"), "the upstream answered: {text}");

    // The same page with its status, as a plain client sees it.
    let cookie = e2e.session_cookie().await.expect("bob's session cookie");
    let response = e2e.get(&url, Some(&cookie)).await;
    assert_eq!(response.status(), 403, "{}", e2e.nginx.error_log());
    let body = response.text().await.expect("forbidden page");
    assert!(body.contains("signed in as bob@example.test"), "{body}");

    let sign_out = e2e
        .browser
        .client()
        .find(Locator::LinkText("Sign out"))
        .await
        .expect("a sign-out link");
    assert_eq!(
        sign_out.attr("href").await.expect("href").as_deref(),
        Some(format!("{}/oauth2/sign_out", e2e.login_base).as_str())
    );
    sign_out.click().await.expect("click sign out");
    e2e.browser
        .expect_text("dex_browser_forbidden_sign_out", "You are signed out")
        .await;
    let response = e2e.get(&url, Some(&cookie)).await;
    assert_eq!(
        response.status(),
        302,
        "signed out, yet not sent to sign in"
    );
}

/// A wrong password keeps the user on Dex's form with Dex's error, and
/// authgate sets no session cookie; the right password then gets through.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_stays_on_dex_without_a_cookie() {
    let e2e = E2e::start("wrong_password", Options::default()).await;
    let url = e2e.url("hello", "/");
    e2e.browser.goto(&url).await;
    e2e.expect_dex_form("first visit").await;
    e2e.browser.dex_login(ALICE.email, "not-alice-secret").await;
    e2e.browser
        .expect_text("dex_browser_wrong_password", "Invalid")
        .await;
    let at = e2e.browser.current_url().await;
    assert!(
        at.as_str().starts_with(&e2e.dex.issuer()),
        "left Dex after a wrong password: {at}"
    );
    assert!(
        e2e.browser.on_dex_login_form().await,
        "no form to try again"
    );
    assert_eq!(e2e.requests_for("/oauth2/callback"), 0);

    // Nothing on the cookie domain: the login host's status page says so.
    e2e.browser.goto(&format!("{}/", e2e.login_base)).await;
    e2e.browser
        .expect_text("dex_browser_wrong_password_status", "You are not signed in")
        .await;
    let cookies = e2e.browser.cookies().await;
    assert!(
        !cookies.iter().any(|c| c.name() == COOKIE),
        "a session cookie after a failed login: {cookies:?}"
    );

    e2e.login_at(&url, &ALICE).await;
    e2e.browser
        .expect_text(
            "dex_browser_wrong_password_retry",
            "Hello, alice@example.test",
        )
        .await;
}

/// One login on `hello` covers `app2` (its own policy route, with
/// `allowed_idp_claims`): the cookie on the root domain is sent there and
/// no second login happens.
#[tokio::test(flavor = "multi_thread")]
async fn one_login_covers_a_second_subdomain() {
    let e2e = E2e::start("sso", Options::default()).await;
    let app2 = e2e.url("app2", "/dashboard?tab=2");
    // app2 is protected on its own: without a cookie, sign in first.
    let response = e2e.get(&app2, None).await;
    assert_eq!(response.status(), 302);

    e2e.login_at(&e2e.url("hello", "/"), &ALICE).await;
    assert_eq!(e2e.requests_for("/oauth2/start"), 1);

    e2e.browser.goto(&app2).await;
    e2e.browser
        .expect_text("dex_browser_sso", "Hello, alice@example.test")
        .await;
    assert_eq!(e2e.browser.current_url().await.as_str(), app2);
    assert_eq!(e2e.echoed("uri").await, "/dashboard?tab=2");
    assert_eq!(
        e2e.requests_for("/oauth2/start"),
        1,
        "a second login was started"
    );
    assert_eq!(e2e.requests_for("/oauth2/callback"), 1);
}

/// A host outside the cookie domain in a real browser: alice opens a deep
/// link on `app.other.test`, the sign-in begins there (`/.authgate/start`
/// sets the `__Host-` nonce cookie, which Chromium accepts), she signs in on
/// Dex's form, the login host's page posts the handoff token (Chromium runs
/// its script under the page's CSP and sends the `SameSite=None` nonce
/// cookie with the cross-site POST), and the handoff lands her on exactly
/// that URL with a
/// host-only session cookie and the nonce cookie gone; `hello` on the
/// cookie domain then needs no second login.
#[tokio::test(flavor = "multi_thread")]
async fn one_login_covers_a_host_outside_the_cookie_domain() {
    let e2e = E2e::start("other_domain", Options::default()).await;
    let url = e2e.nginx.other_url("app", "/deep?x=1");
    e2e.login_at(&url, &ALICE).await;
    e2e.browser
        .expect_text("dex_browser_other_domain", "Hello, alice@example.test")
        .await;
    let cookies = e2e.browser.cookies().await;
    let names: Vec<&str> = cookies.iter().map(|c| c.name()).collect();
    assert!(names.contains(&COOKIE), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with("_handoff")),
        "nonce cookie left behind: {names:?}"
    );
    assert_eq!(e2e.requests_for("/.authgate/start"), 1);
    // The token is posted by the login host's page, never in a URL.
    assert_eq!(e2e.requests("POST", "/.authgate/callback"), 1);
    assert_eq!(e2e.requests_for("/.authgate/callback"), 0);

    let hello = e2e.url("hello", "/");
    e2e.browser.goto(&hello).await;
    e2e.browser
        .expect_text("dex_browser_other_then_hello", "Hello, alice@example.test")
        .await;
    assert_eq!(e2e.requests_for("/oauth2/callback"), 1, "one login");
}

/// Sign-out ends the session: the next visit goes to Dex's form again, and
/// the old cookie value replayed by hand is sent to sign in (revoked in the
/// store, not merely deleted from the browser).
#[tokio::test(flavor = "multi_thread")]
async fn sign_out_ends_the_session_for_replays_too() {
    let e2e = E2e::start("sign_out", Options::default()).await;
    let url = e2e.url("hello", "/");
    e2e.login_at(&url, &ALICE).await;
    let cookie = e2e.session_cookie().await.expect("session cookie");
    assert_eq!(e2e.get(&url, Some(&cookie)).await.status(), 200);

    e2e.browser
        .goto(&format!("{}/oauth2/sign_out", e2e.login_base))
        .await;
    e2e.browser
        .expect_text("dex_browser_sign_out", "You are signed out")
        .await;
    e2e.browser.goto(&url).await;
    e2e.expect_dex_form("after sign-out").await;

    let response = e2e.get(&url, Some(&cookie)).await;
    assert_eq!(response.status(), 302, "the old cookie still works");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        location.starts_with(&format!("{}/oauth2/start?rd=", e2e.login_base)),
        "{location}"
    );
}

/// When `cookie_expire` has passed, the session is over: authgate refuses
/// the cookie even when replayed by hand, and the browser is sent to Dex.
#[tokio::test(flavor = "multi_thread")]
async fn expired_session_means_login_again() {
    let expire = Duration::from_secs(4);
    let e2e = E2e::start(
        "cookie_expire",
        Options {
            cookie_expire: expire,
            ..Options::default()
        },
    )
    .await;
    let url = e2e.url("hello", "/");
    e2e.login_at(&url, &ALICE).await;
    let logged_in = Instant::now();
    let cookie = e2e.session_cookie().await.expect("session cookie");
    assert_eq!(e2e.get(&url, Some(&cookie)).await.status(), 200);

    // The one real wait: for a real expiry. The session was created just
    // before `logged_in`; expiry is judged in whole seconds.
    tokio::time::sleep(
        (logged_in + expire + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    )
    .await;
    let response = e2e.get(&url, Some(&cookie)).await;
    assert_eq!(response.status(), 302, "an expired cookie was accepted");
    e2e.browser.goto(&url).await;
    e2e.expect_dex_form("after cookie_expire").await;
}

/// Dex stopped: a signed-in user keeps working (decisions need no
/// provider); a new login gets authgate's "Identity provider unavailable"
/// page with a 503, not the browser's connection error and not a 500. When
/// Dex is back (new signing keys: memory storage), logins work again.
#[tokio::test(flavor = "multi_thread")]
async fn provider_down_keeps_sessions_and_explains_new_logins() {
    let mut e2e = E2e::start("provider_down", Options::default()).await;
    let url = e2e.url("hello", "/");
    e2e.login_at(&url, &ALICE).await;
    let cookie = e2e.session_cookie().await.expect("session cookie");

    e2e.dex.stop();
    let stopped = Instant::now();
    e2e.browser.goto(&url).await;
    e2e.browser
        .expect_text(
            "dex_browser_provider_down_session",
            "Hello, alice@example.test",
        )
        .await;
    assert_eq!(e2e.get(&url, Some(&cookie)).await.status(), 200);

    e2e.browser
        .goto(&format!("{}/oauth2/sign_out", e2e.login_base))
        .await;
    e2e.browser
        .expect_text("dex_browser_provider_down_sign_out", "You are signed out")
        .await;
    // authgate reuses a reachability answer for PROVIDER_CHECK_TTL; the last
    // one (alice's login) said "up".
    tokio::time::sleep(
        (stopped + authgate::oidc::PROVIDER_CHECK_TTL).saturating_duration_since(Instant::now()),
    )
    .await;
    e2e.browser.goto(&url).await;
    let start = format!("{}/oauth2/start?rd=", e2e.login_base);
    e2e.browser
        .wait_for_url("authgate's sign-in", |u| u.as_str().starts_with(&start))
        .await;
    e2e.browser
        .expect_text(
            "dex_browser_provider_down_login",
            "Identity provider unavailable",
        )
        .await;
    e2e.browser
        .screenshot("dex_browser_provider_unavailable")
        .await;
    let at = e2e.browser.current_url().await;
    let response = e2e.get(at.as_str(), None).await;
    assert_eq!(response.status(), 503);
    let checked = Instant::now();
    assert!(
        response
            .text()
            .await
            .expect("page")
            .contains("Identity provider unavailable")
    );

    e2e.dex.restart().await;
    tokio::time::sleep(
        (checked + authgate::oidc::PROVIDER_CHECK_TTL).saturating_duration_since(Instant::now()),
    )
    .await;
    e2e.login_at(&url, &ALICE).await;
    e2e.browser
        .expect_text("dex_browser_provider_back", "Hello, alice@example.test")
        .await;
}
