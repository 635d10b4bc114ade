//! Verifies an `X-Auth-Request-Jwt` the way an upstream should: fetch the
//! JWKS from the login host, pick the key by `kid`, check the ES256
//! signature, `iss`, `aud` and `exp`.
//!
//! ```sh
//! cargo run --example verify_assertion -- https://auth.example.com app.example.com "$TOKEN"
//! ```
//!
//! Prints the claims as JSON and exits 0 when the token is valid; exits 1
//! with the reason otherwise.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [login_url, audience, token] = args.as_slice() else {
        eprintln!("usage: verify_assertion <login URL> <your host> <token>");
        std::process::exit(2);
    };
    match verify(login_url.trim_end_matches('/'), audience, token).await {
        Ok(claims) => println!("{}", Value::Object(claims)),
        Err(reason) => {
            eprintln!("invalid assertion: {reason}");
            std::process::exit(1);
        }
    }
}

async fn verify(
    login_url: &str,
    audience: &str,
    token: &str,
) -> Result<Map<String, Value>, String> {
    let url = format!("{login_url}/.well-known/authgate/jwks.json");
    let body = openidconnect::reqwest::get(&url)
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("fetching {url}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    let jwks: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("JWKS: {e}"))?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("the token names no key (kid)")?;
    let jwk = jwks
        .find(&kid)
        .ok_or("signed with a key the JWKS does not list")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    // Only ES256: never let the token choose its algorithm.
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[login_url]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}
