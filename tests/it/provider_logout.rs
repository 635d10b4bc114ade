//! The provider's logout against a real, OpenID-certified provider:
//! `oidc-provider` (npm, pinned in `tests/oidc-provider/package.json`,
//! installed by `scripts/test.sh` with `npm ci` into the cache) started by
//! `tests/oidc-provider/provider.js` on loopback, with `authgate serve`.
//! RP-initiated logout: sign-out continues at the provider's
//! `end_session_endpoint` (with `id_token_hint`, `post_logout_redirect_uri`
//! and `state`) and comes back to the signed-out page. Back-Channel Logout:
//! the provider's logout token ends exactly the session of that provider
//! session (`sid`), with no request from the browser to authgate. (Dex
//! advertises neither; the Dex tests keep today's behaviour.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use openidconnect::reqwest;
use sha2::{Digest as _, Sha256};

use crate::fixture::{COOKIE, header, session_cookie, set_cookies};
use crate::support::process::{ChildGuard, free_port};
use crate::support::{repo_root, temp_dir};

const CLIENT_ID: &str = "authgate";
const CLIENT_SECRET: &str = "a-client-secret-for-the-logout-tests";
const APP: &str = "https://app.example.test/";

/// The `node_modules` `scripts/test.sh` installed from the lock file:
/// `$AUTHGATE_OIDC_PROVIDER_MODULES`, else the cache directory named after
/// the lock file's hash.
fn modules() -> PathBuf {
    if let Some(dir) = std::env::var_os("AUTHGATE_OIDC_PROVIDER_MODULES") {
        return PathBuf::from(dir);
    }
    let lock = std::fs::read(repo_root().join("tests/oidc-provider/package-lock.json"))
        .expect("read tests/oidc-provider/package-lock.json");
    let key: String = Sha256::digest(&lock)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cache = std::env::var_os("AUTHGATE_E2E_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/authgate-e2e")))
        .unwrap_or_default();
    let dir = cache.join(format!("oidc-provider-{key}/node_modules"));
    assert!(
        dir.join("oidc-provider/package.json").is_file(),
        "oidc-provider not installed at {} (no $AUTHGATE_OIDC_PROVIDER_MODULES): run scripts/test.sh",
        dir.display()
    );
    dir
}

/// A browser's cookies for the provider (the test's own small jar: every
/// cookie goes back on every request, which the provider does not mind).
#[derive(Default)]
struct Jar(HashMap<String, String>);

impl Jar {
    fn keep(&mut self, response: &reqwest::Response) {
        for (name, value) in set_cookies(response) {
            self.0.insert(name, value);
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// authgate and the provider, running.
struct Setup {
    base: String,
    addr: SocketAddr,
    issuer: String,
    http: reqwest::Client,
    authgate: ChildGuard,
    provider: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let dir = temp_dir("provider-logout");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let op_port = free_port();
        let base = format!("http://{addr}");
        let issuer = format!("http://127.0.0.1:{op_port}");
        let mut node = Command::new("node");
        node.arg(repo_root().join("tests/oidc-provider/provider.js"))
            .env("OIDC_PROVIDER_MODULES", modules())
            .env("PORT", op_port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", format!("{base}/oauth2/callback"))
            .env(
                "POST_LOGOUT_REDIRECT_URI",
                format!("{base}/oauth2/signed_out"),
            )
            .env(
                "BACKCHANNEL_LOGOUT_URI",
                format!("{base}/oauth2/backchannel_logout"),
            );
        let mut provider = ChildGuard::spawn("oidc-provider", node, &dir.path().join("op.log"));
        provider
            .wait_for_port(SocketAddr::from(([127, 0, 0, 1], op_port)))
            .await;
        let config = dir.path().join("authgate.yaml");
        std::fs::write(
            &config,
            format!(
                "authenticate_service_url: {base}\n\
                 idp_provider_url: {issuer}\n\
                 idp_client_id: {CLIENT_ID}\n\
                 idp_client_secret: {CLIENT_SECRET}\n\
                 idp_scopes: openid email profile groups\n\
                 cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
                 cookie_secure: false\n\
                 session_store: memory\n\
                 log_format: json\n\
                 policy:\n  - from: https://app.example.test\n    allowed_groups: [devops]\n"
            ),
        )
        .expect("write config");
        let authgate = crate::session_admin::serve(&config, addr, "authgate").await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Setup {
            base,
            addr,
            issuer,
            http,
            authgate,
            provider,
            _dir: dir,
        }
    }

    /// An absolute URL at the provider for a `Location` or form action.
    fn at_provider(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_owned()
        } else {
            format!("{}{location}", self.issuer)
        }
    }

    async fn get(&self, url: &str, jar: &mut Jar) -> reqwest::Response {
        let response = self
            .http
            .get(url)
            .header("Cookie", jar.header())
            .send()
            .await
            .expect("GET");
        jar.keep(&response);
        response
    }

    async fn post(&self, url: &str, jar: &mut Jar, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(url)
            .header("Cookie", jar.header())
            .form(form)
            .send()
            .await
            .expect("POST");
        jar.keep(&response);
        response
    }

    /// A whole login as `user` in a browser of its own (`jar` holds its
    /// provider cookies): authgate's sign-in, the provider's login form,
    /// authgate's callback. The session cookie's value.
    async fn login(&self, user: &str, jar: &mut Jar) -> String {
        let start = self
            .http
            .get(format!("{}/oauth2/start", self.base))
            .send()
            .await
            .expect("start");
        assert_eq!(start.status(), 302, "{}", self.logs());
        let login_cookie = set_cookies(&start)
            .into_iter()
            .find(|(n, _)| n.starts_with(&format!("{COOKIE}_login_")))
            .map(|(n, v)| format!("{n}={v}"))
            .expect("login cookie");
        let mut location = header(&start, "location");
        // The provider's redirects, its login form once, until it sends the
        // browser back to authgate's callback.
        for _ in 0..10 {
            if location.starts_with(&format!("{}/oauth2/callback", self.base)) {
                let done = self
                    .http
                    .get(&location)
                    .header("Cookie", &login_cookie)
                    .send()
                    .await
                    .expect("callback");
                assert_eq!(done.status(), 302, "{}", self.logs());
                return session_cookie(&done).expect("session cookie");
            }
            let response = self.get(&self.at_provider(&location), jar).await;
            if response.status().is_redirection() {
                location = header(&response, "location");
                continue;
            }
            let html = response.text().await.expect("login page");
            let action = form_action(&html).unwrap_or_else(|| panic!("no form: {html}"));
            let sent = self
                .post(
                    &self.at_provider(&action),
                    jar,
                    &[("prompt", "login"), ("login", user), ("password", "any")],
                )
                .await;
            assert!(sent.status().is_redirection(), "{}", sent.status());
            location = header(&sent, "location");
        }
        panic!("the login did not come back to authgate: {}", self.logs());
    }

    /// `/oauth2/auth` for the app with `cookie`.
    async fn decide(&self, cookie: &str) -> u16 {
        crate::session_admin::decide(self.addr, APP, cookie).await
    }

    /// Confirms the provider's logout page at `url` ("Yes, sign me out").
    async fn confirm_logout(&self, url: &str, jar: &mut Jar) -> reqwest::Response {
        let page = self.get(url, jar).await;
        assert_eq!(page.status(), 200, "{}", self.logs());
        let html = page.text().await.expect("logout page");
        let action = form_action(&html).unwrap_or_else(|| panic!("no form: {html}"));
        let xsrf = hidden(&html, "xsrf").expect("xsrf field");
        self.post(
            &self.at_provider(&action),
            jar,
            &[("xsrf", &xsrf), ("logout", "yes")],
        )
        .await
    }

    fn logs(&self) -> String {
        format!(
            "--- authgate ---\n{}\n--- oidc-provider ---\n{}",
            self.authgate.log(),
            self.provider.log()
        )
    }
}

fn form_action(html: &str) -> Option<String> {
    let start = html.find("action=\"")? + 8;
    Some(html[start..].split('"').next()?.replace("&amp;", "&"))
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[start..].split('"').next()?.to_owned())
}

/// RP-initiated logout: authgate's sign-out continues at the provider's
/// `end_session_endpoint` with the login's ID token as `id_token_hint`, the
/// registered `post_logout_redirect_uri` and a `state`; the provider
/// (oidc-provider, which checks all three) signs the user out and sends the
/// browser back to authgate's signed-out page. Back-channel logout: a user
/// signing out at the provider in another browser ends that browser's
/// authgate session on its own, through the provider's logout token, while
/// a third browser's session (another provider session) stays.
#[tokio::test]
async fn rp_initiated_and_back_channel_logout_with_oidc_provider() {
    let setup = Setup::start().await;
    let (mut jar_a, mut jar_b, mut jar_c) = (Jar::default(), Jar::default(), Jar::default());
    let a = setup.login("alice@example.com", &mut jar_a).await;
    let b = setup.login("alice@example.com", &mut jar_b).await;
    let c = setup.login("alice@example.com", &mut jar_c).await;
    for cookie in [&a, &b, &c] {
        assert_eq!(setup.decide(cookie).await, 200, "{}", setup.logs());
    }

    // RP-initiated: sign out of authgate in browser A.
    let signed_out = setup
        .http
        .post(format!("{}/oauth2/sign_out", setup.base))
        .header("Cookie", format!("{COOKIE}={a}"))
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .expect("sign out");
    assert_eq!(signed_out.status(), 302, "{}", setup.logs());
    let to_provider = header(&signed_out, "location");
    let end_session = url::Url::parse(&to_provider).expect("end_session URL");
    assert!(
        to_provider.starts_with(&format!("{}/session/end", setup.issuer)),
        "{to_provider}"
    );
    let params: HashMap<_, _> = end_session.query_pairs().into_owned().collect();
    assert!(
        params
            .get("id_token_hint")
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert_eq!(
        params.get("post_logout_redirect_uri").map(String::as_str),
        Some(format!("{}/oauth2/signed_out", setup.base).as_str())
    );
    assert!(params.get("state").is_some_and(|s| !s.is_empty()));
    assert_eq!(setup.decide(&a).await, 401, "ended at once");
    let back = setup.confirm_logout(&to_provider, &mut jar_a).await;
    assert!(back.status().is_redirection(), "{}", setup.logs());
    let back = header(&back, "location");
    assert!(
        back.starts_with(&format!("{}/oauth2/signed_out?", setup.base)),
        "{back}"
    );
    assert!(
        back.contains(&format!("state={}", params["state"])),
        "{back}"
    );
    let page = setup.http.get(&back).send().await.expect("signed-out page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("You are signed out"), "{html}");
    assert!(html.contains("Sign out of all my sessions"), "{html}");
    assert_eq!(
        setup.decide(&b).await,
        200,
        "another provider session: kept"
    );

    // Back-channel: alice signs out at the provider in browser B; authgate
    // hears it from the provider alone.
    let started = Instant::now();
    let ended = setup
        .confirm_logout(&format!("{}/session/end", setup.issuer), &mut jar_b)
        .await;
    assert!(ended.status().is_success() || ended.status().is_redirection());
    while setup.decide(&b).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "back-channel logout did not end B: {}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        setup.decide(&c).await,
        200,
        "C's provider session was not logged out"
    );
    let log = setup.authgate.log();
    let audit = log
        .lines()
        .find(|l| {
            l.contains("authgate::audit")
                && l.contains(&format!("provider:{}", setup.issuer))
                && l.contains("\"sessions\":1")
        })
        .unwrap_or_else(|| panic!("no audit line of the back-channel logout: {log}"));
    println!("back-channel logout, authgate's audit line:\n{audit}");
    assert!(
        setup
            .provider
            .log()
            .contains("backchannel logout to authgate delivered")
    );
}

/// A change to a token's claims.
type Edit = Box<dyn Fn(&mut serde_json::Map<String, serde_json::Value>) + Send>;

/// The back-channel endpoint's own checks, with logout tokens the test
/// provider signs with its real key: a valid token ends the user's
/// sessions once; the same token again (its `jti`) is refused, as are a
/// token without the logout event, one carrying a `nonce` (an ID token),
/// one for another client, a tampered one and none at all (each 400,
/// nothing ended).
#[tokio::test]
async fn back_channel_logout_tokens_are_checked() {
    use std::sync::{Arc, Mutex};
    let stack = crate::fixture::Stack::start().await;
    let alice = stack.login("alice@example.com", APP).await;
    let bob = stack.login("bob@example.com", APP).await;
    let endpoint = format!("{}/oauth2/backchannel_logout", stack.base);
    let edit: Arc<Mutex<Edit>> = Arc::new(Mutex::new(Box::new(|_| {})));
    let hook = edit.clone();
    stack.idp.set_claims_hook(Some(Arc::new(move |claims| {
        claims.remove("nonce");
        claims.insert(
            "events".into(),
            serde_json::json!({ authgate::backchannel::LOGOUT_EVENT: {} }),
        );
        claims.insert("jti".into(), serde_json::json!("jti-1"));
        (hook.lock().unwrap())(claims);
    })));
    let token = |change: Edit| {
        *edit.lock().unwrap() = change;
        stack
            .idp
            .tokens_for("alice@example.com", crate::fixture::CLIENT_ID)
            .expect("tokens")
            .expect("alice")
            .1
    };
    let post = |token: Option<String>| {
        let request = stack.http.post(&endpoint);
        let request = match token {
            Some(token) => request.form(&[("logout_token", token)]),
            None => request.form(&[("other", "x")]),
        };
        async move {
            request
                .send()
                .await
                .expect("back-channel POST")
                .status()
                .as_u16()
        }
    };

    let no_event = token(Box::new(|c| drop(c.remove("events"))));
    let nonce = token(Box::new(|c| drop(c.insert("nonce".into(), "n".into()))));
    let other_client = token(Box::new(|c| {
        drop(c.insert("aud".into(), "someone-else".into()))
    }));
    let mut tampered = token(Box::new(|_| {}));
    tampered.push('x');
    for (what, bad) in [
        ("no event", Some(no_event)),
        ("nonce", Some(nonce)),
        ("aud", Some(other_client)),
        ("signature", Some(tampered)),
        ("missing", None),
    ] {
        assert_eq!(post(bad).await, 400, "{what}");
    }
    assert_eq!(
        stack.auth(APP, Some(&alice)).await.status(),
        200,
        "nothing ended yet"
    );

    let valid = token(Box::new(|_| {}));
    assert_eq!(post(Some(valid.clone())).await, 200);
    assert_eq!(
        stack.auth(APP, Some(&alice)).await.status(),
        401,
        "alice's session ended"
    );
    assert_eq!(
        stack.auth(APP, Some(&bob)).await.status(),
        403,
        "bob's kept"
    );
    assert_eq!(post(Some(valid)).await, 400, "a replayed jti is refused");
}
