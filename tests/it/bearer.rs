//! API clients with `Authorization: Bearer`: tokens from the provider are
//! accepted and go through the policy; forged, expired or foreign ones get
//! 401 with `error="invalid_token"`; programs without credentials get 401
//! (never a login redirect) on every front end.

use std::sync::Arc;

use authgate::devidp::SigningMode;
use openidconnect::reqwest;
use serde_json::{Map, Value, json};

use crate::fixture::{CLIENT_ID, Stack, header};
use crate::grpc_authz::{GrpcStack, envoy_request, seen};

const APP: &str = "https://app.example.test/api/items";

async fn with_bearer(stack: &Stack, url: &str, token: &str) -> reqwest::Response {
    stack
        .http
        .get(format!("{}/oauth2/auth", stack.base))
        .header("x-original-url", url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

fn tokens(stack: &Stack, user: &str, client: &str) -> (String, String) {
    stack
        .idp
        .tokens_for(user, client)
        .unwrap()
        .expect("known user")
}

/// alice's ID token and access token both sign her in (policy applies:
/// bob's is refused with 403), and her identity reaches the upstream.
#[tokio::test]
async fn provider_tokens_are_accepted() {
    let stack = Stack::start().await;
    let (access, id) = tokens(&stack, "alice@example.com", CLIENT_ID);
    for token in [&id, &access] {
        let response = with_bearer(&stack, APP, token).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-auth-request-email"),
            "alice@example.com"
        );
        assert!(!header(&response, "x-auth-request-jwt").is_empty());
    }
    let (_, bob) = tokens(&stack, "bob@example.com", CLIENT_ID);
    assert_eq!(with_bearer(&stack, APP, &bob).await.status(), 403);
}

/// Each forgery or misuse is refused with 401 and `invalid_token`.
#[tokio::test]
async fn bad_tokens_are_refused() {
    let stack = Stack::start().await;
    let refused = |response: reqwest::Response| {
        assert_eq!(response.status(), 401);
        assert_eq!(
            header(&response, "www-authenticate"),
            "Bearer realm=\"authgate\", error=\"invalid_token\""
        );
    };
    // Issued for another client.
    let (_, other) = tokens(&stack, "alice@example.com", "another-client");
    refused(with_bearer(&stack, APP, &other).await);
    // Another issuer.
    stack.idp.set_claims_hook(Some(Arc::new(|claims| {
        claims.insert("iss".into(), json!("https://evil.example.test/dex"));
    })));
    let (_, wrong_iss) = tokens(&stack, "alice@example.com", CLIENT_ID);
    refused(with_bearer(&stack, APP, &wrong_iss).await);
    stack.idp.set_claims_hook(None);
    for mode in [
        SigningMode::AlgNone,
        SigningMode::Hs256WithPublicKey,
        SigningMode::UnknownKid,
        SigningMode::ForeignKey,
    ] {
        stack.idp.set_signing_mode(mode);
        let (_, forged) = tokens(&stack, "alice@example.com", CLIENT_ID);
        let response = with_bearer(&stack, APP, &forged).await;
        assert_eq!(response.status(), 401, "{mode:?}");
    }
    stack.idp.set_signing_mode(SigningMode::Normal);
    // Expired (10 min lifetime, 30 s skew), even after a first success
    // cached it.
    let (_, id) = tokens(&stack, "alice@example.com", CLIENT_ID);
    assert_eq!(with_bearer(&stack, APP, &id).await.status(), 200);
    stack.clock.advance(600 + 31);
    refused(with_bearer(&stack, APP, &id).await);
}

/// Asserts the 401 with `error="invalid_token"` of a refused token.
fn assert_invalid_token(response: &reqwest::Response, what: &str) {
    assert_eq!(response.status(), 401, "{what}");
    assert_eq!(
        header(response, "www-authenticate"),
        "Bearer realm=\"authgate\", error=\"invalid_token\"",
        "{what}"
    );
}

/// alice's ID token, with `change` applied to its claims before signing.
fn id_token_with(
    stack: &Stack,
    change: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static,
) -> String {
    stack.idp.set_claims_hook(Some(Arc::new(change)));
    let (_, id) = tokens(stack, "alice@example.com", CLIENT_ID);
    stack.idp.set_claims_hook(None);
    id
}

/// Bearer tokens get the claim checks of a login's ID token: `azp` naming
/// a client that is not accepted, `iat` or a fractional `nbf` further in
/// the future than the skew (30 s), `nbf` as a string, and
/// `email_verified` as the string `"false"` (or `"true"`) are each refused
/// with 401 `invalid_token`; the same token with the claim well-formed and
/// current is accepted, so each refusal is that claim's.
#[tokio::test]
async fn bearer_claims_are_checked_like_a_logins() {
    let stack = Stack::start().await;
    let now = authgate::clock::Clock::now(&stack.clock);
    type Change = Box<dyn Fn(&mut Map<String, Value>) + Send + Sync>;
    let set = |claim: &'static str, value: Value| -> Change {
        Box::new(move |claims| {
            claims.insert(claim.into(), value.clone());
        })
    };
    let refused: Vec<(&str, Change)> = vec![
        ("azp of another client", set("azp", json!("another-client"))),
        (
            "azp of another client, several audiences",
            Box::new(|claims| {
                claims.insert("aud".into(), json!([CLIENT_ID, "another-client"]));
                claims.insert("azp".into(), json!("another-client"));
            }),
        ),
        ("iat in an hour", set("iat", json!(now + 3600))),
        ("nbf as a string", set("nbf", json!((now - 60).to_string()))),
        (
            "nbf fractional, in an hour",
            set("nbf", json!(now as f64 + 3600.5)),
        ),
        (
            "email_verified \"false\"",
            set("email_verified", json!("false")),
        ),
        (
            "email_verified \"true\"",
            set("email_verified", json!("true")),
        ),
    ];
    for (what, change) in refused {
        let token = id_token_with(&stack, change);
        assert_invalid_token(&with_bearer(&stack, APP, &token).await, what);
    }
    let accepted: Vec<(&str, Change)> = vec![
        ("azp us", set("azp", json!(CLIENT_ID))),
        ("iat within the skew", set("iat", json!(now + 10))),
        ("nbf fractional, past", set("nbf", json!(now as f64 - 60.5))),
        ("email_verified false", set("email_verified", json!(false))),
    ];
    for (what, change) in accepted {
        let token = id_token_with(&stack, change);
        assert_eq!(
            with_bearer(&stack, APP, &token).await.status(),
            200,
            "{what}"
        );
    }
}

/// `idp_allowed_audiences` admits tokens issued to another client, also
/// as their authorized party (`azp`, as in Dex's cross-client tokens); a
/// client in neither is refused as `azp`.
#[tokio::test]
async fn allowed_audiences_extend_the_client_id() {
    let stack = Stack::start_with(crate::fixture::default_routes(), |c| {
        c.idp.allowed_audiences = vec!["another-client".into()];
    })
    .await;
    let (_, other) = tokens(&stack, "alice@example.com", "another-client");
    assert_eq!(with_bearer(&stack, APP, &other).await.status(), 200);
    let cross_client = |azp: &'static str| {
        id_token_with(&stack, move |claims| {
            claims.insert("aud".into(), json!([CLIENT_ID, "another-client"]));
            claims.insert("azp".into(), json!(azp));
        })
    };
    let token = cross_client("another-client");
    assert_eq!(with_bearer(&stack, APP, &token).await.status(), 200);
    let token = cross_client("third-client");
    assert_invalid_token(&with_bearer(&stack, APP, &token).await, "azp third");
}

/// A program without session or token: 401 from the nginx endpoint,
/// forward-auth (no redirect for `Accept: application/json` or XHR) and
/// Envoy's gRPC Check.
#[tokio::test]
async fn programs_get_401_on_every_front_end() {
    let grpc = GrpcStack::start().await;
    let stack = &grpc.stack;
    let nginx = stack.auth(APP, None).await;
    assert_eq!(nginx.status(), 401);
    assert_eq!(
        header(&nginx, "www-authenticate"),
        "Bearer realm=\"authgate\""
    );
    for (name, value) in [
        ("accept", "application/json"),
        ("x-requested-with", "XMLHttpRequest"),
    ] {
        let forward = stack
            .http
            .get(format!("{}/forward-auth/api/items", stack.base))
            .header("host", "app.example.test")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(forward.status(), 401, "{name}");
        assert!(forward.headers().get("location").is_none());
    }
    let check = seen(
        &grpc
            .check(envoy_request("GET", APP, &[("accept", "application/json")]))
            .await,
    );
    assert_eq!(check.http_status, 401);
    let (_, id) = tokens(stack, "alice@example.com", CLIENT_ID);
    let bearer = format!("Bearer {id}");
    let check = seen(
        &grpc
            .check(envoy_request("GET", APP, &[("authorization", &bearer)]))
            .await,
    );
    assert_eq!(check.http_status, 200);
    assert_eq!(check.headers["x-auth-request-email"], "alice@example.com");
}
