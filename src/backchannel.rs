//! OpenID Connect Back-Channel Logout 1.0: the provider posts a logout
//! token when a user signs out there (or is logged out by an
//! administrator), and the sessions it names end on every replica.
//!
//! The token is checked as the specification's section 2.6 asks: the
//! provider's signature (never `none` or HMAC), `iss`, `aud`, `exp` and
//! `iat` (the same claim checks as every token from the provider), the
//! `events` claim naming the back-channel logout event, a `sid` and/or a
//! `sub`, no `nonce` (so an ID token cannot pass as a logout token), and a
//! `jti` not seen before (replays are refused).

use serde_json::{Map, Value};

use crate::bearer::{BearerError, BearerVerifier};
use crate::claims::{self, ClaimError, Expected};

/// The `events` member that makes a JWT a logout token.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old (by `iat`) a logout token may be: the provider sends it at once.
pub const MAX_AGE: i64 = 300;

/// Whose sessions a valid logout token ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutToken {
    pub sub: Option<String>,
    pub sid: Option<String>,
    /// `jti`, for the replay check.
    pub jti: String,
    /// `exp`: the replay mark need not outlive it.
    pub expires_at: i64,
}

/// Why a logout token is refused (400, `invalid_request`). The messages
/// name claims, never values.
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("logout token: {0}")]
    Token(#[from] BearerError),
    #[error("logout token: {0}")]
    Claims(#[from] ClaimError),
    #[error("logout token: `iat` is missing or too old")]
    Stale,
    #[error("logout token: `events` does not name the back-channel logout event")]
    Event,
    #[error("logout token: neither `sub` nor `sid`")]
    NoSubject,
    #[error("logout token: carries a `nonce` (an ID token?)")]
    Nonce,
    #[error("logout token: `jti` is missing")]
    NoId,
}

impl LogoutError {
    /// The provider could not be asked for its keys: a 503, so it retries.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LogoutError::Token(BearerError::Unavailable(_)))
    }
}

/// Verifies `token` (signature and claims); the replay check on `jti` is
/// the caller's, against the shared store.
pub async fn verify(
    verifier: &BearerVerifier,
    token: &str,
    expected: &Expected<'_>,
) -> Result<LogoutToken, LogoutError> {
    let claims = verifier.signed_claims(token).await?;
    check(&claims, expected)
}

/// The claim checks of section 2.6, after the signature.
pub fn check(
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
) -> Result<LogoutToken, LogoutError> {
    let times = claims::check(claims, expected)?;
    match times.issued_at {
        Some(iat) if iat >= expected.now - MAX_AGE - expected.skew => {}
        _ => return Err(LogoutError::Stale),
    }
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(LogoutError::Event);
    }
    if claims.contains_key("nonce") {
        return Err(LogoutError::Nonce);
    }
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (sub, sid) = (text("sub"), text("sid"));
    if sub.is_none() && sid.is_none() {
        return Err(LogoutError::NoSubject);
    }
    let jti = text("jti").ok_or(LogoutError::NoId)?;
    Ok(LogoutToken {
        sub,
        sid,
        jti,
        expires_at: times.expires_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    /// A change that breaks one rule.
    type Breaks = Box<dyn Fn(&mut Map<String, Value>)>;

    fn expected(audiences: &[String]) -> Expected<'_> {
        Expected {
            issuer: "https://op.example",
            audiences,
            parties: audiences,
            now: NOW,
            skew: 60,
        }
    }

    fn token() -> Map<String, Value> {
        json!({
            "iss": "https://op.example",
            "aud": "authgate",
            "iat": NOW - 5,
            "exp": NOW + 115,
            "jti": "j-1",
            "sub": "user-1",
            "sid": "s-1",
            "events": { LOGOUT_EVENT: {} },
        })
        .as_object()
        .unwrap()
        .clone()
    }

    /// A well-formed token passes; each rule of section 2.6 broken alone
    /// is refused.
    #[test]
    fn section_2_6() {
        let audiences = ["authgate".to_owned()];
        let expected = expected(&audiences);
        let ok = check(&token(), &expected).unwrap();
        assert_eq!(ok.sub.as_deref(), Some("user-1"));
        assert_eq!(ok.sid.as_deref(), Some("s-1"));
        assert_eq!(ok.jti, "j-1");

        let broken: Vec<(&str, Breaks)> = vec![
            (
                "iss",
                Box::new(|t| drop(t.insert("iss".into(), json!("https://evil")))),
            ),
            (
                "aud",
                Box::new(|t| drop(t.insert("aud".into(), json!("other")))),
            ),
            (
                "exp",
                Box::new(|t| drop(t.insert("exp".into(), json!(NOW - 120)))),
            ),
            ("iat missing", Box::new(|t| drop(t.remove("iat")))),
            (
                "iat old",
                Box::new(|t| drop(t.insert("iat".into(), json!(NOW - 3600)))),
            ),
            (
                "iat future",
                Box::new(|t| drop(t.insert("iat".into(), json!(NOW + 3600)))),
            ),
            ("events", Box::new(|t| drop(t.remove("events")))),
            (
                "events other",
                Box::new(|t| drop(t.insert("events".into(), json!({"urn:other": {}})))),
            ),
            (
                "event not object",
                Box::new(|t| drop(t.insert("events".into(), json!({ LOGOUT_EVENT: "x" })))),
            ),
            (
                "no sub or sid",
                Box::new(|t| {
                    t.remove("sub");
                    t.remove("sid");
                }),
            ),
            (
                "nonce",
                Box::new(|t| drop(t.insert("nonce".into(), json!("n")))),
            ),
            ("jti", Box::new(|t| drop(t.remove("jti")))),
        ];
        for (what, breaks) in broken {
            let mut claims = token();
            breaks(&mut claims);
            assert!(check(&claims, &expected).is_err(), "{what} accepted");
        }
        let mut only_sid = token();
        only_sid.remove("sub");
        assert!(check(&only_sid, &expected).is_ok());
    }
}
