//! Token and session attacks not covered by `login_flow` (which has alg
//! `none`, HS/RS confusion, unknown `kid`, foreign key, wrong
//! `iss`/`aud`/`nonce`, expiry, replayed code, a callback without the
//! login-state cookie): `kid` injection, keys advertised in the token
//! header, not-yet-valid tokens, `azp`, replayed state, login CSRF with the
//! attacker's own callback, cookies under other names or from another
//! deployment, session fixation and oversized cookie headers.

use std::sync::Arc;

use authgate::devidp::{ClaimsHook, SigningMode};
use serde_json::json;

use crate::fixture::{COOKIE, Stack, default_routes, header, session_cookie};
use crate::login_flow::{APP, assert_login_refused};

/// A `kid` naming a file (`../../dev/null`, whose content would be an empty
/// HMAC key) or an SQL fragment selecting a key of the attacker's choosing
/// is refused: keys come only from the provider's JWKS, never from what
/// the `kid` could name, and HMAC is never accepted.
#[tokio::test]
async fn kid_injection_is_refused() {
    let stack = Stack::start().await;
    for mode in [SigningMode::KidPathTraversal, SigningMode::KidSqlInjection] {
        stack.idp.set_signing_mode(mode);
        assert_login_refused(&stack, &format!("{mode:?}")).await;
    }
    stack.idp.set_signing_mode(SigningMode::Normal);
    stack.login("alice@example.com", APP).await;
}

/// A token signed by the attacker's key, which the header advertises in
/// `jwk` (embedded), `jku` and `x5u` (URLs serving it), is refused, and
/// the advertised URLs are never fetched.
#[tokio::test]
async fn keys_advertised_in_the_token_header_are_ignored() {
    let stack = Stack::start().await;
    stack
        .idp
        .set_signing_mode(SigningMode::AdvertisedForeignKey);
    assert_login_refused(&stack, "jwk/jku/x5u").await;
    assert_eq!(stack.idp.attacker_key_fetches(), 0, "jku/x5u fetched");
}

/// A token issued (`iat`) or valid from (`nbf`) further in the future than
/// the allowed clock skew (30 s in the fixture) is refused; within the skew
/// it is accepted, as clocks drift.
#[tokio::test]
async fn not_yet_valid_tokens_are_refused() {
    let stack = Stack::start().await;
    let now = authgate::clock::Clock::now(&stack.clock);
    let hook = |claim: &'static str, at: i64| -> ClaimsHook {
        Arc::new(move |c| {
            c.insert(claim.into(), json!(at));
        })
    };
    for claim in ["iat", "nbf"] {
        stack.idp.set_claims_hook(Some(hook(claim, now + 3600)));
        assert_login_refused(&stack, &format!("{claim} in an hour")).await;
        stack.idp.set_claims_hook(Some(hook(claim, now + 10)));
        stack.login("alice@example.com", APP).await;
    }
}

/// An ID token with a claim of the wrong JSON type ends the login as a
/// refused sign-in (403 and its page, no session), never as "identity
/// provider unavailable" (503): `email_verified` as the string `"false"`
/// or `"true"` and `iat` as a string (which the OIDC crate cannot parse),
/// `nbf` as a string (which it does not look at). The same claims
/// well-formed sign in.
#[tokio::test]
async fn malformed_claims_end_the_login_as_refused() {
    let stack = Stack::start().await;
    let now = authgate::clock::Clock::now(&stack.clock);
    let set = |claim: &'static str, value: serde_json::Value| -> ClaimsHook {
        Arc::new(move |c| {
            c.insert(claim.into(), value.clone());
        })
    };
    for (what, hook) in [
        (
            "email_verified \"false\"",
            set("email_verified", json!("false")),
        ),
        (
            "email_verified \"true\"",
            set("email_verified", json!("true")),
        ),
        ("iat as a string", set("iat", json!(now.to_string()))),
        ("nbf as a string", set("nbf", json!((now - 60).to_string()))),
    ] {
        stack.idp.set_claims_hook(Some(hook));
        assert_login_refused(&stack, what).await;
    }
    for hook in [
        set("email_verified", json!(false)),
        set("nbf", json!(now - 60)),
    ] {
        stack.idp.set_claims_hook(Some(hook));
        stack.login("alice@example.com", APP).await;
    }
}

/// `azp` (authorized party) naming another client is refused, with one
/// audience or several: the token was issued to someone else.
#[tokio::test]
async fn azp_of_another_client_is_refused() {
    let stack = Stack::start().await;
    let cases: Vec<(&str, ClaimsHook)> = vec![
        (
            "azp another client, several audiences",
            Arc::new(|c| {
                c.insert("aud".into(), json!(["authgate-test", "another-client"]));
                c.insert("azp".into(), json!("another-client"));
            }),
        ),
        (
            "azp another client, our audience only",
            Arc::new(|c| {
                c.insert("azp".into(), json!("another-client"));
            }),
        ),
    ];
    for (what, hook) in cases {
        stack.idp.set_claims_hook(Some(hook));
        assert_login_refused(&stack, what).await;
    }
    // `azp` naming us is what Dex sends with cross-client audiences.
    stack.idp.set_claims_hook(Some(Arc::new(|c| {
        c.insert("azp".into(), json!("authgate-test"));
    })));
    stack.login("alice@example.com", APP).await;
}

/// A state is good for one login: once a callback with it has succeeded,
/// a second callback with the same state and login-state cookie — and a
/// fresh code the provider issued for the same authorization request — is
/// refused.
#[tokio::test]
async fn replayed_state_is_refused() {
    let stack = Stack::start().await;
    let (provider_url, login_cookie) = stack.start_login(APP).await;
    let first = stack
        .provider_login(&provider_url, "alice@example.com", "alice")
        .await;
    let response = stack.callback(&first, &login_cookie).await;
    assert_eq!(response.status(), 302);
    assert!(session_cookie(&response).is_some());

    // The same authorization request again: same state, a new code.
    let second = stack
        .provider_login(&provider_url, "bob@example.com", "bob")
        .await;
    assert_ne!(first, second, "a new code");
    let response = stack.callback(&second, &login_cookie).await;
    assert_eq!(response.status(), 403, "the state was used already");
    assert!(session_cookie(&response).is_none());
}

/// Login CSRF: the attacker completes a login at the provider as himself
/// and plants the callback URL in the victim's browser, which holds its own
/// login-state cookie for another attempt. Refused, no session: the state
/// in the URL is not the one the victim's browser started.
#[tokio::test]
async fn login_csrf_with_the_attackers_callback_is_refused() {
    let stack = Stack::start().await;
    let (attacker_url, _attacker_cookie) = stack.start_login(APP).await;
    let planted = stack
        .provider_login(&attacker_url, "bob@example.com", "bob")
        .await;
    let (_victim_url, victim_cookie) = stack.start_login(APP).await;
    let response = stack.callback(&planted, &victim_cookie).await;
    assert_eq!(response.status(), 403);
    assert!(session_cookie(&response).is_none());
}

/// A valid session value under another cookie name (a similar name, the
/// login-state cookie's, oauth2-proxy's) is no session, and neither is a
/// login-state value under the session name. A session of another
/// deployment (another cookie secret, e.g. a sibling domain's authgate) is
/// no session here either.
#[tokio::test]
async fn cookies_under_other_names_or_from_elsewhere_are_refused() {
    let stack = Stack::start().await;
    let alice = stack.login("alice@example.com", APP).await;
    for name in [
        "_authgate2",
        "_Authgate",
        "_authgate_login_x",
        "_oauth2_proxy",
        " _authgate_",
    ] {
        let response = stack
            .http
            .get(format!("{}/oauth2/auth", stack.base))
            .header("X-Original-URL", APP)
            .header("Cookie", format!("{name}={alice}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "cookie named {name:?}");
    }
    let (_, login_cookie) = stack.start_login(APP).await;
    let login_value = login_cookie.split_once('=').unwrap().1;
    assert_eq!(stack.auth(APP, Some(login_value)).await.status(), 401);

    let other = Stack::start_with(default_routes(), |c| {
        c.cookie.secret = authgate::config::Secret::new([9u8; 32].to_vec());
    })
    .await;
    let foreign = other.login("alice@example.com", APP).await;
    assert_eq!(other.auth(APP, Some(&foreign)).await.status(), 200);
    assert_eq!(stack.auth(APP, Some(&foreign)).await.status(), 401);
}

/// Session fixation: a cookie value chosen by an attacker (well-formed or
/// the attacker's own valid session) and present in the victim's browser
/// during the login never becomes the victim's session: the callback
/// issues a fresh value, and the planted one stays what it was.
#[tokio::test]
async fn session_fixation_is_impossible() {
    let stack = Stack::start().await;
    let attacker = stack.login("bob@example.com", APP).await;
    let forged = "A".repeat(attacker.len());
    for planted in [forged.as_str(), attacker.as_str()] {
        let (provider_url, login_cookie) = stack.start_login(APP).await;
        let callback = stack
            .provider_login(&provider_url, "alice@example.com", "alice")
            .await;
        let response = stack
            .callback(&callback, &format!("{COOKIE}={planted}; {login_cookie}"))
            .await;
        assert_eq!(response.status(), 302);
        let issued = session_cookie(&response).expect("a fresh session");
        assert_ne!(issued, planted);
        assert_eq!(stack.auth(APP, Some(&issued)).await.status(), 200);
    }
    assert_eq!(stack.auth(APP, Some(&forged)).await.status(), 401);
    // The attacker's own session is still only bob's (403 on alice's app).
    assert_eq!(stack.auth(APP, Some(&attacker)).await.status(), 403);
}

/// Oversized cookie headers over a real socket — one 64 KiB cookie, 10,000
/// small cookies, 10,000 session-named cookies, 200 Cookie header lines —
/// on every endpoint that reads cookies: refused (400/401/403/431) or the
/// connection closed, never allowed and never a 5xx; the server answers
/// normally afterwards.
#[tokio::test]
async fn oversized_cookie_headers_are_refused_not_500() {
    let stack = Stack::start().await;
    let alice = stack.login("alice@example.com", APP).await;
    let big = format!("{COOKIE}={}", "A".repeat(64 * 1024));
    let many: String = (0..10_000)
        .map(|i| format!("c{i}=1"))
        .collect::<Vec<_>>()
        .join("; ");
    let many_sessions: String = (0..10_000)
        .map(|_| format!("{COOKIE}={}", &alice[..alice.len() - 1]))
        .collect::<Vec<_>>()
        .join("; ");
    let paths = [
        "/oauth2/auth",
        "/forward-auth/some/path",
        "/oauth2/userinfo",
        "/oauth2/sign_out",
        "/oauth2/callback?state=x&code=y",
        "/",
    ];
    for path in paths {
        for (what, lines) in [
            ("64 KiB cookie", vec![big.clone()]),
            ("10k cookies", vec![many.clone()]),
            ("10k session cookies", vec![many_sessions.clone()]),
            ("200 Cookie lines", vec!["a=b".to_owned(); 200]),
        ] {
            let mut request = stack
                .http
                .get(format!("{}{path}", stack.base))
                .header("X-Original-URL", APP)
                .header("Host", "app.example.test");
            for line in &lines {
                request = request.header("Cookie", line);
            }
            match request.send().await {
                Ok(response) => {
                    let s = response.status().as_u16();
                    let ok = matches!(s, 400 | 401 | 403 | 431)
                        || (path == "/" && s == 200)
                        || (path == "/oauth2/sign_out" && s == 200);
                    assert!(ok, "{path} with {what}: got {s}");
                    if path == "/" || path == "/oauth2/sign_out" {
                        let body = response.text().await.unwrap_or_default();
                        assert!(!body.contains("alice"), "{path} with {what}");
                    }
                }
                // hyper may close the connection on a head over its limit.
                Err(e) => assert!(!e.is_timeout(), "{path} with {what}: {e}"),
            }
        }
    }
    let response = stack.auth(APP, Some(&alice)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-email"),
        "alice@example.com"
    );
}
