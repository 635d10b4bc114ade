//! The signed assertion end to end: minted on allow, verified by an
//! upstream with an independent JWT library and the JWKS fetched over HTTP;
//! key rotation; claim headers; per-route methods and CORS preflights.

use authgate::assertion::JWKS_PATH;
use authgate::config::ClaimHeader;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::fixture::{COOKIE, Stack, default_routes, header};

const APP: &str = "https://app.example.test/dashboard";

/// The JWKS as an upstream fetches it, over HTTP.
async fn fetch_jwks(stack: &Stack) -> JwkSet {
    let body = stack
        .http
        .get(format!("{}{JWKS_PATH}", stack.base))
        .send()
        .await
        .expect("JWKS request")
        .bytes()
        .await
        .expect("JWKS body");
    serde_json::from_slice(&body).expect("JWKS JSON")
}

/// What an upstream does: fetch the JWKS, pick the key by `kid`, check the
/// ES256 signature, `iss`, `aud` and `exp`.
async fn verify(
    stack: &Stack,
    token: &str,
    audience: &str,
) -> Result<Map<String, Value>, jsonwebtoken::errors::Error> {
    let jwks = fetch_jwks(stack).await;
    let kid = jsonwebtoken::decode_header(token)?.kid.expect("kid");
    let key = DecodingKey::from_jwk(jwks.find(&kid).expect("kid in the JWKS"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[stack.base.as_str()]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map(|t| t.claims)
}

fn random_key() -> p256::SecretKey {
    loop {
        let bytes: [u8; 32] = rand::random();
        if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// alice's allow carries an assertion that verifies with the served JWKS
/// for the app's host, names her and her groups, and is refused for any
/// other audience.
#[tokio::test]
async fn assertion_verifies_with_the_served_jwks() {
    let stack = Stack::start().await;
    let cookie = stack.login("alice@example.com", APP).await;
    let response = stack.auth(APP, Some(&cookie)).await;
    assert_eq!(response.status(), 200);
    let token = header(&response, "x-auth-request-jwt");
    let claims = verify(&stack, &token, "app.example.test").await.unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["preferred_username"], "alice");
    assert!(
        claims["groups"]
            .as_array()
            .unwrap()
            .contains(&"devops".into())
    );
    assert_eq!(claims["aud"], "app.example.test");
    let wrong = verify(&stack, &token, "public.example.test")
        .await
        .unwrap_err();
    assert_eq!(
        wrong.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );

    let jwks = stack
        .http
        .get(format!("{}{JWKS_PATH}", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&jwks, "content-type"), "application/json");
}

/// After a rotation (new `signing_key`, the old one in
/// `previous_signing_keys`), an assertion signed with the old key still
/// verifies against the new instance's JWKS, and new ones use the new key.
#[tokio::test]
async fn rotation_keeps_old_assertions_verifiable() {
    let (old, new) = (random_key(), random_key());
    let before = Stack::start_with(default_routes(), |c| {
        c.signing.key = Some(old.clone().into())
    })
    .await;
    let cookie = before.login("alice@example.com", APP).await;
    let old_token = header(&before.auth(APP, Some(&cookie)).await, "x-auth-request-jwt");
    drop(before);

    let after = Stack::start_with(default_routes(), |c| {
        c.signing.key = Some(new.into());
        c.signing.previous = vec![old.public_key()];
    })
    .await;
    // The issuer is this instance's URL, so check the old token's
    // signature and audience with the new JWKS, not its issuer.
    let jwks = fetch_jwks(&after).await;
    assert_eq!(jwks.keys.len(), 2);
    let kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();
    let key = DecodingKey::from_jwk(jwks.find(&kid).expect("old key still published")).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["app.example.test"]);
    jsonwebtoken::decode::<Map<String, Value>>(&old_token, &key, &validation).unwrap();

    let cookie = after.login("alice@example.com", APP).await;
    let new_token = header(&after.auth(APP, Some(&cookie)).await, "x-auth-request-jwt");
    let new_kid = jsonwebtoken::decode_header(&new_token)
        .unwrap()
        .kid
        .unwrap();
    assert_ne!(new_kid, kid);
    verify(&after, &new_token, "app.example.test")
        .await
        .unwrap();
}

/// `jwt_claims_headers` puts claims in plain headers; forward-auth tells
/// the proxy to strip client copies of them; `pass_identity_headers: false`
/// sends neither them nor the assertion.
#[tokio::test]
async fn claim_headers_follow_the_route() {
    let mut routes = default_routes();
    routes[1].jwt_claims_headers = Some(vec![ClaimHeader {
        header: "x-pomerium-claim-email".into(),
        claim: "email".into(),
    }]);
    routes[0].pass_identity_headers = false;
    let stack = Stack::start_with(routes, |_| {}).await;
    let cookie = stack.login("alice@example.com", APP).await;
    let response = stack.auth(APP, Some(&cookie)).await;
    assert_eq!(
        header(&response, "x-pomerium-claim-email"),
        "alice@example.com"
    );

    let admin = stack
        .auth("https://app.example.test/admin", Some(&cookie))
        .await;
    assert_eq!(admin.status(), 200);
    assert!(admin.headers().get("x-auth-request-jwt").is_none());
    assert!(admin.headers().get("x-auth-request-email").is_none());

    let forward = stack
        .http
        .get(format!("{}/forward-auth/dashboard", stack.base))
        .header("host", "app.example.test")
        .header("cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forward.status(), 200);
    let remove = header(&forward, "x-envoy-auth-headers-to-remove");
    assert!(remove.contains("x_pomerium_claim_email"), "{remove}");
    assert!(remove.contains("x_auth_request_jwt"), "{remove}");
    assert!(
        !forward
            .headers()
            .get("x-auth-request-jwt")
            .unwrap()
            .is_empty()
    );
}

/// `allowed_methods`: other methods get 403 even signed in, and an unknown
/// method is refused; `cors_allow_preflight`: an OPTIONS preflight passes
/// without a session, a bare OPTIONS does not.
#[tokio::test]
async fn methods_and_preflights_per_route() {
    let mut routes = default_routes();
    routes[1].allowed_methods = vec!["GET".into(), "OPTIONS".into()];
    routes[1].cors_allow_preflight = true;
    let stack = Stack::start_with(routes, |_| {}).await;
    let cookie = stack.login("alice@example.com", APP).await;
    let ask = |method: Option<&'static str>, cookie: Option<String>, cors: bool| {
        let mut request = stack
            .http
            .get(format!("{}/oauth2/auth", stack.base))
            .header("x-original-url", APP);
        if let Some(method) = method {
            request = request.header("x-original-method", method);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("{COOKIE}={cookie}"));
        }
        if cors {
            request = request
                .header("origin", "https://spa.example.test")
                .header("access-control-request-method", "PUT");
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ask(Some("GET"), Some(cookie.clone()), false).await, 200);
    assert_eq!(ask(Some("POST"), Some(cookie.clone()), false).await, 403);
    assert_eq!(ask(None, Some(cookie.clone()), false).await, 403);
    assert_eq!(ask(Some("OPTIONS"), None, true).await, 200);
    assert_eq!(ask(Some("OPTIONS"), None, false).await, 401);
    // Another route keeps its default: no preflight exemption.
    let admin = stack
        .http
        .get(format!("{}/oauth2/auth", stack.base))
        .header("x-original-url", "https://app.example.test/admin")
        .header("x-original-method", "OPTIONS")
        .header("origin", "https://spa.example.test")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401);
}
