//! The nginx flow end to end against the in-process provider: 401 with the
//! sign-in URL, the login, the session, policy, sign-out — and every way a
//! login can be forged or replayed.

use std::sync::Arc;

use authgate::devidp::{ClaimsHook, SigningMode};
use serde_json::{Value, json};

use crate::fixture::{COOKIE, Stack, header, session_cookie, set_cookies};

pub(crate) const APP: &str = "https://app.example.test/some/path?q=1";

/// Without a session: 401 with a Location that signs in and comes back to
/// exactly the original URL. With alice's session: 200 and her identity.
#[tokio::test]
async fn nginx_flow_signs_in_and_passes_identity() {
    let stack = Stack::start().await;
    let response = stack.auth(APP, None).await;
    assert_eq!(response.status(), 401);
    let location = header(&response, "location");
    let expected = format!(
        "{}/oauth2/start?rd={}",
        stack.base,
        url::form_urlencoded::byte_serialize(APP.as_bytes()).collect::<String>()
    );
    assert_eq!(location, expected);
    assert!(response.bytes().await.expect("body").is_empty());

    let cookie = stack.login("alice@example.com", APP).await;
    let response = stack.auth(APP, Some(&cookie)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-email"),
        "alice@example.com"
    );
    assert_eq!(
        header(&response, "x-auth-request-preferred-username"),
        "alice"
    );
    assert_eq!(header(&response, "x-auth-request-groups"), "devops,admins");
    assert!(!header(&response, "x-auth-request-user").is_empty());
    // admins may open /admin too.
    let response = stack
        .auth("https://app.example.test/admin/x", Some(&cookie))
        .await;
    assert_eq!(response.status(), 200);
}

/// The session cookie stays small and fixed-size: no claims in it.
#[tokio::test]
async fn session_cookie_is_small_and_flagged() {
    let stack = Stack::start().await;
    let (provider_url, login_cookie) = stack.start_login(APP).await;
    let callback = stack
        .provider_login(&provider_url, "alice@example.com", "alice")
        .await;
    let response = stack.callback(&callback, &login_cookie).await;
    let line = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|l| l.starts_with(&format!("{COOKIE}=")))
        .expect("session Set-Cookie")
        .to_owned();
    assert!(line.contains("HttpOnly"), "{line}");
    assert!(line.contains("SameSite=Lax"), "{line}");
    assert!(line.contains("Path=/"), "{line}");
    assert!(line.contains("Max-Age=3600"), "{line}");
    let value = session_cookie(&response).expect("cookie");
    assert!(value.len() < 200, "cookie is {} bytes", value.len());
    assert!(!value.contains("alice"));
}

/// Signed in but not in the route's group: 403, no identity headers.
/// No route for the host: 403 even with a session (deny by default).
#[tokio::test]
async fn policy_denies_with_403() {
    let stack = Stack::start().await;
    let bob = stack.login("bob@example.com", APP).await;
    let response = stack.auth(APP, Some(&bob)).await;
    assert_eq!(response.status(), 403);
    assert!(header(&response, "x-auth-request-email").is_empty());
    let carol = stack.login("carol@example.com", APP).await;
    assert_eq!(stack.auth(APP, Some(&carol)).await.status(), 403);

    let alice = stack.login("alice@example.com", APP).await;
    let response = stack
        .auth("https://unknown.example.test/", Some(&alice))
        .await;
    assert_eq!(response.status(), 403);
    let response = stack.auth("https://unknown.example.test/", None).await;
    assert_eq!(response.status(), 403);
}

/// A public route answers 200 without a session.
#[tokio::test]
async fn public_route_needs_no_session() {
    let stack = Stack::start().await;
    let response = stack.auth("https://public.example.test/x", None).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "x-auth-request-user").is_empty());
}

/// Sign-out revokes the session: the old cookie, replayed, gets 401.
#[tokio::test]
async fn sign_out_revokes_the_session() {
    let stack = Stack::start().await;
    let cookie = stack.login("alice@example.com", APP).await;
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 200);
    let response = stack
        .http
        .get(format!("{}/oauth2/sign_out", stack.base))
        // From this site: a sign-out link on one of its pages.
        .header("Sec-Fetch-Site", "same-origin")
        .header("Cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("sign out");
    assert_eq!(response.status(), 200);
    let cleared = set_cookies(&response)
        .into_iter()
        .find(|(name, _)| name == COOKIE)
        .expect("clearing cookie");
    assert_eq!(cleared.1, "");
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 401);
}

/// `cookie_expire` reached: the session ends and the user signs in again.
#[tokio::test]
async fn expired_session_needs_login() {
    let stack = Stack::start().await;
    let cookie = stack.login("alice@example.com", APP).await;
    stack.clock.advance(3599);
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 200);
    stack.clock.advance(2);
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 401);
}

/// A tampered, truncated or foreign cookie is no session: 401.
#[tokio::test]
async fn tampered_cookie_needs_login() {
    let stack = Stack::start().await;
    let cookie = stack.login("alice@example.com", APP).await;
    let mut bytes = cookie.clone().into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("ascii");
    for bad in [
        tampered.as_str(),
        &cookie[..cookie.len() - 4],
        "",
        "garbage",
        "%00%ff",
    ] {
        assert_eq!(stack.auth(APP, Some(bad)).await.status(), 401, "{bad}");
    }
}

/// `/oauth2/userinfo` shows the identity, never tokens; 401 without.
#[tokio::test]
async fn userinfo_shows_identity_only() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .get(format!("{}/oauth2/userinfo", stack.base))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(response.status(), 401);
    let cookie = stack.login("alice@example.com", APP).await;
    let response = stack
        .http
        .get(format!("{}/oauth2/userinfo", stack.base))
        .header("Cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["groups"], json!(["devops", "admins"]));
    let text = body.to_string();
    assert!(!text.contains("token"), "{text}");
}

/// The callback is refused when the state does not match the login-state
/// cookie, when that cookie is missing (login CSRF), and when the code is
/// replayed. No session cookie is set in any of these.
#[tokio::test]
async fn callback_refuses_forged_or_replayed_logins() {
    let stack = Stack::start().await;
    let (provider_url, login_cookie) = stack.start_login(APP).await;
    let callback = stack
        .provider_login(&provider_url, "alice@example.com", "alice")
        .await;

    // No login-state cookie at all.
    let response = stack.http.get(&callback).send().await.expect("callback");
    assert_eq!(response.status(), 403);
    assert!(session_cookie(&response).is_none());

    // Another state in the URL than in the cookie.
    let mut url = url::Url::parse(&callback).expect("url");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "x".repeat(22)
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let response = stack.callback(url.as_str(), &login_cookie).await;
    assert!(response.status() == 403 || response.status() == 400);
    assert!(session_cookie(&response).is_none());

    // The real one works once...
    let response = stack.callback(&callback, &login_cookie).await;
    assert_eq!(response.status(), 302);
    assert!(session_cookie(&response).is_some());
    // ...and the replayed code is refused by the provider.
    let response = stack.callback(&callback, &login_cookie).await;
    assert_eq!(response.status(), 403);
    assert!(session_cookie(&response).is_none());
}

/// A provider error on the callback (e.g. access_denied) ends in a page, not
/// a session.
#[tokio::test]
async fn callback_with_provider_error_is_refused() {
    let stack = Stack::start().await;
    let (provider_url, login_cookie) = stack.start_login(APP).await;
    let state = url::Url::parse(&provider_url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let response = stack
        .callback(
            &format!(
                "{}/oauth2/callback?error=access_denied&state={state}",
                stack.base
            ),
            &login_cookie,
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(session_cookie(&response).is_none());
}

/// Runs a login whose ID token was altered by `hook` or signed in `mode`, and
/// asserts it is refused without a session.
pub(crate) async fn assert_login_refused(stack: &Stack, what: &str) {
    let (provider_url, login_cookie) = stack.start_login(APP).await;
    let callback = stack
        .provider_login(&provider_url, "alice@example.com", "alice")
        .await;
    let response = stack.callback(&callback, &login_cookie).await;
    assert_eq!(response.status(), 403, "{what} must be refused");
    assert!(session_cookie(&response).is_none(), "{what}: no session");
}

/// Wrong nonce, issuer, audience; expired token: each is refused.
#[tokio::test]
async fn id_token_claims_are_verified() {
    let stack = Stack::start().await;
    let now = authgate::clock::Clock::now(&stack.clock);
    let cases: Vec<(&str, ClaimsHook)> = vec![
        (
            "wrong nonce",
            Arc::new(|c| {
                c.insert("nonce".into(), json!("not-the-nonce"));
            }),
        ),
        (
            "wrong iss",
            Arc::new(|c| {
                c.insert("iss".into(), json!("http://evil.example.test/dex"));
            }),
        ),
        (
            "wrong aud",
            Arc::new(|c| {
                c.insert("aud".into(), json!("another-client"));
            }),
        ),
        (
            "extra aud",
            Arc::new(|c| {
                c.insert("aud".into(), json!(["authgate-test", "another-client"]));
            }),
        ),
        (
            "expired",
            Arc::new(move |c| {
                c.insert("exp".into(), json!(now - 3600));
            }),
        ),
        (
            "no nonce",
            Arc::new(|c| {
                c.remove("nonce");
            }),
        ),
    ];
    for (what, hook) in cases {
        stack.idp.set_claims_hook(Some(hook));
        assert_login_refused(&stack, what).await;
    }
    stack.idp.set_claims_hook(None);
    stack.login("alice@example.com", APP).await;
}

/// alg `none`, HS256 keyed with the RSA public key, an unknown `kid`, and a
/// key not in the provider's JWKS: each is refused.
#[tokio::test]
async fn id_token_signatures_are_verified() {
    let stack = Stack::start().await;
    for mode in [
        SigningMode::AlgNone,
        SigningMode::Hs256WithPublicKey,
        SigningMode::UnknownKid,
        SigningMode::ForeignKey,
    ] {
        stack.idp.set_signing_mode(mode);
        assert_login_refused(&stack, &format!("{mode:?}")).await;
    }
    stack.idp.set_signing_mode(SigningMode::Normal);
    stack.login("alice@example.com", APP).await;
}

/// After the provider rotates its key (and even drops the old one), a token
/// signed with the new key is accepted: the keys are fetched again.
#[tokio::test]
async fn key_rotation_fetches_new_keys() {
    let stack = Stack::start().await;
    stack.idp.rotate_keys_dropping_old();
    let cookie = stack.login("alice@example.com", APP).await;
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 200);
}

/// The provider's token endpoint failing is "provider unavailable" (503) or
/// a refused login (403) — never a 500 and never a session.
#[tokio::test]
async fn token_endpoint_failure_is_not_a_500() {
    let stack = Stack::start().await;
    stack.idp.fail_token_endpoint(Some(500));
    let (provider_url, login_cookie) = stack.start_login(APP).await;
    let callback = stack
        .provider_login(&provider_url, "alice@example.com", "alice")
        .await;
    let response = stack.callback(&callback, &login_cookie).await;
    assert!(
        response.status() == 503 || response.status() == 403,
        "got {}",
        response.status()
    );
    assert!(session_cookie(&response).is_none());
}

/// Before discovery succeeded, `/oauth2/start` says the provider is
/// unavailable (503), and `/readyz` is not ready.
#[tokio::test]
async fn provider_down_gives_503_page() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    // Nothing listens on port 9 of loopback.
    let config = crate::fixture::test_config(
        &base,
        "http://127.0.0.1:9/dex",
        crate::fixture::default_routes(),
    );
    let app = authgate::app::App::new(config, Arc::new(authgate::clock::SystemClock)).expect("app");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(authgate::server::run(
        app,
        authgate::server::Listeners::http(listener),
        async {
            let _ = stopped.await;
        },
    ));
    let http = crate::fixture::client();
    let response = http
        .get(format!("{base}/oauth2/start?rd=/"))
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), 503);
    let text = response.text().await.expect("body");
    assert!(text.contains("Identity provider unavailable"), "{text}");
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let _ = stop.send(());
}

/// `/readyz` is ready once discovery is done.
#[tokio::test]
async fn ready_after_discovery() {
    let stack = Stack::start().await;
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
}
