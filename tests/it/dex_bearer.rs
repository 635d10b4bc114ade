//! `Authorization: Bearer` with tokens from real Dex (v2.41.1, its password
//! grant checking the password against OpenLDAP), through real nginx
//! (`examples/nginx/nginx.conf`) to the echo upstream: the stack of
//! `dex_browser` without the browser. The in-process provider's tests
//! (`bearer`) cover the same rules with forged keys and a manual clock;
//! these show that what Dex really issues is read the same way.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::dex_browser::{DexSite, Options};
use crate::fixture::header;
use crate::support::dex::{CLIENT_ID, OTHER_CLIENT_ID};
use crate::support::dirsrv::{ALICE, BOB};
use crate::support::tls::TestCa;

const INVALID_TOKEN: &str = "Bearer realm=\"authgate\", error=\"invalid_token\"";

async fn dex_site(options: Options) -> DexSite {
    DexSite::start(&TestCa::new("authgate Dex bearer CA"), options).await
}

/// An API call through nginx: JSON wanted, `token` as the Bearer.
async fn call(site: &DexSite, url: &str, token: &str) -> openidconnect::reqwest::Response {
    site.nginx
        .http_client(&["app2"])
        .get(url)
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The claims of a JWT, unverified (to read what Dex put in it).
fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// Asserts authgate's 401 for a refused token reached the client.
fn assert_refused(response: &openidconnect::reqwest::Response, why: &str) {
    assert_eq!(response.status(), 401, "{why}");
    assert_eq!(header(response, "www-authenticate"), INVALID_TOKEN, "{why}");
}

/// alice's ID token and access token from Dex's password grant (both JWTs
/// with `aud` = authgate's client id; the access token carries the same
/// claims) each reach the app with her identity from LDAP, on `hello`
/// (`allowed_groups`) and `app2` (`allowed_idp_claims`); bob's valid token
/// is refused by the policy with 403.
#[tokio::test(flavor = "multi_thread")]
async fn dex_id_and_access_tokens_reach_the_app() {
    let site = dex_site(Options::default()).await;
    let tokens = site.dex.password_grant(CLIENT_ID, &ALICE).await;
    for (kind, token) in [("ID", &tokens.id_token), ("access", &tokens.access_token)] {
        assert_eq!(claims(token)["aud"], CLIENT_ID, "{kind} token");
        for url in [site.url("hello", "/api/x"), site.url("app2", "/api/y")] {
            let response = call(&site, &url, token).await;
            assert_eq!(
                response.status(),
                200,
                "{kind} token on {url}\n{}",
                site.dex.log()
            );
            let seen: serde_json::Value =
                serde_json::from_str(&response.text().await.expect("body")).expect("echo JSON");
            let headers = &seen["headers"];
            assert_eq!(headers["x-auth-request-email"][0], ALICE.email, "{kind}");
            assert_eq!(
                headers["x-auth-request-preferred-username"][0], ALICE.uid,
                "{kind}"
            );
            let groups = headers["x-auth-request-groups"][0]
                .as_str()
                .unwrap_or_default();
            assert!(groups.split(',').any(|g| g == "devops"), "{kind}: {groups}");
        }
    }
    let bob = site.dex.password_grant(CLIENT_ID, &BOB).await;
    let response = call(&site, &site.url("hello", "/api/x"), &bob.id_token).await;
    assert_eq!(response.status(), 403);
}

/// Real Dex tokens, misused: one issued to another client of the same Dex
/// (`aud` not authgate's), alice's token with one signature byte changed,
/// and her token's claims re-encoded with `alg: none` and no signature —
/// each gets 401 with `error="invalid_token"` at the client.
#[tokio::test(flavor = "multi_thread")]
async fn misused_dex_tokens_are_refused() {
    let site = dex_site(Options::default()).await;
    let url = site.url("hello", "/api/x");
    let good = site.dex.password_grant(CLIENT_ID, &ALICE).await.id_token;
    assert_eq!(call(&site, &url, &good).await.status(), 200);

    let other = site.dex.password_grant(OTHER_CLIENT_ID, &ALICE).await;
    assert_eq!(claims(&other.id_token)["aud"], OTHER_CLIENT_ID);
    assert_refused(&call(&site, &url, &other.id_token).await, "other aud (ID)");
    assert_refused(
        &call(&site, &url, &other.access_token).await,
        "other aud (access)",
    );

    let (signed, signature) = good.rsplit_once('.').expect("JWT");
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("signature");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let flipped = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&bytes));
    assert_refused(&call(&site, &url, &flipped).await, "flipped signature");

    let payload = good.split('.').nth(1).expect("payload");
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    for unsigned in [
        format!("{none_header}.{payload}."),
        format!("{none_header}.{payload}.{signature}"),
    ] {
        assert_refused(&call(&site, &url, &unsigned).await, "alg none");
    }
}

/// A real Dex ID token is accepted before its `exp` and refused after it
/// (Dex's `expiry.idTokens` 5 s, authgate's `idp_clock_skew` 0), even
/// though the first use cached its verification.
#[tokio::test(flavor = "multi_thread")]
async fn expired_dex_token_is_refused() {
    let site = dex_site(Options {
        id_token_ttl: Duration::from_secs(5),
        clock_skew: Some(Duration::ZERO),
        ..Options::default()
    })
    .await;
    let url = site.url("hello", "/api/x");
    let token = site.dex.password_grant(CLIENT_ID, &ALICE).await.id_token;
    assert_eq!(call(&site, &url, &token).await.status(), 200);
    let exp = claims(&token)["exp"].as_i64().expect("exp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let wait = u64::try_from(exp - now + 1).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_refused(&call(&site, &url, &token).await, "expired");
}
