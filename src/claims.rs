//! The claim checks every token from the provider passes, whichever way it
//! came in: the ID token of a login or a refresh ([`crate::oidc`]) and a
//! Bearer token ([`crate::bearer`]), so an API client is held to the same
//! rules as a browser. The signature (and, for a login, `nonce` and
//! `at_hash`) is the caller's; the claims are looked at here only once the
//! signature holds.
//!
//! A claim of the wrong JSON type is malformed, never read leniently:
//! `exp`/`nbf`/`iat` are RFC 7519 NumericDates (a JSON number, fractions
//! allowed; a string is refused), `email_verified` a JSON boolean (the
//! string `"false"` is neither true nor false), `azp` a string. `null`
//! counts as absent, as in the `openidconnect` crate.

use serde_json::{Map, Value};

/// What a token must say to be ours.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// `iss`, byte for byte.
    pub issuer: &'a str,
    /// `aud` (a string or a list) must name one of these.
    pub audiences: &'a [String],
    /// `azp`, when present, must be one of these: the clients whose tokens
    /// are accepted (a login: our client id; a Bearer token: the accepted
    /// audiences, since `idp_allowed_audiences` names the other clients
    /// whose tokens are accepted).
    pub parties: &'a [String],
    /// Now, seconds since the epoch.
    pub now: i64,
    /// `idp_clock_skew`, seconds: leeway for `exp`, `nbf` and `iat`.
    pub skew: i64,
}

/// Why a token's claims are refused. The token's fault, never the
/// provider being unavailable; the messages name claims, never values.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimError {
    #[error("`{claim}` is malformed: not a JSON {expected}")]
    Malformed {
        claim: &'static str,
        expected: &'static str,
    },
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("issued by another issuer (iss)")]
    Issuer,
    #[error("not issued for this service (aud)")]
    Audience,
    #[error("`azp` names another client")]
    AuthorizedParty,
    #[error("expired (exp)")]
    Expired,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("issued in the future (iat)")]
    IssuedInFuture,
}

/// The times of a token whose claims passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Times {
    /// `exp`, whole seconds (rounded down).
    pub expires_at: i64,
    /// `iat`, whole seconds (rounded down), if present.
    pub issued_at: Option<i64>,
}

/// Checks the types first (see [`malformed`]), then `iss`, `aud`, `azp`,
/// and `exp`/`nbf`/`iat` against `expected.now` with `expected.skew`.
pub fn check(claims: &Map<String, Value>, expected: &Expected<'_>) -> Result<Times, ClaimError> {
    if let Some(error) = malformed(claims) {
        return Err(error);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(ClaimError::Issuer);
    }
    let ours = |value: &Value| {
        value
            .as_str()
            .is_some_and(|aud| expected.audiences.iter().any(|ok| ok == aud))
    };
    let audience = match claims.get("aud") {
        Some(Value::Array(list)) => list.iter().any(ours),
        Some(one) => ours(one),
        None => false,
    };
    if !audience {
        return Err(ClaimError::Audience);
    }
    // OIDC Core 3.1.3.7: a token whose authorized party is a client we do
    // not accept was issued to that client, even when we are its audience.
    if let Some(azp) = present(claims, "azp").and_then(Value::as_str)
        && !expected.parties.iter().any(|ok| ok == azp)
    {
        return Err(ClaimError::AuthorizedParty);
    }
    let (now, skew) = (expected.now as f64, expected.skew as f64);
    let exp = date(claims, "exp")?.ok_or(ClaimError::Missing("exp"))?;
    if exp + skew <= now {
        return Err(ClaimError::Expired);
    }
    if date(claims, "nbf")?.is_some_and(|nbf| nbf > now + skew) {
        return Err(ClaimError::NotYetValid);
    }
    let iat = date(claims, "iat")?;
    if iat.is_some_and(|iat| iat > now + skew) {
        return Err(ClaimError::IssuedInFuture);
    }
    // Saturating float → integer conversions: a date beyond i64 stays far
    // in the future (or past), never wraps.
    Ok(Times {
        expires_at: exp.floor() as i64,
        issued_at: iat.map(|iat| iat.floor() as i64),
    })
}

/// The first claim of a type we refuse to read, if any: `exp`, `nbf` or
/// `iat` not a JSON number, `email_verified` not a JSON boolean, `azp` not a
/// string. Also used on an ID token the `openidconnect` crate could not
/// parse, to say why the login failed.
pub fn malformed(claims: &Map<String, Value>) -> Option<ClaimError> {
    let wrong = |claim: &'static str, expected: &'static str, ok: fn(&Value) -> bool| {
        present(claims, claim)
            .is_some_and(|value| !ok(value))
            .then_some(ClaimError::Malformed { claim, expected })
    };
    wrong("exp", "number", Value::is_number)
        .or_else(|| wrong("nbf", "number", Value::is_number))
        .or_else(|| wrong("iat", "number", Value::is_number))
        .or_else(|| wrong("email_verified", "boolean", Value::is_boolean))
        .or_else(|| wrong("azp", "string", Value::is_string))
}

/// A claim's value; `null` is absent.
fn present<'a>(claims: &'a Map<String, Value>, claim: &str) -> Option<&'a Value> {
    claims.get(claim).filter(|value| !value.is_null())
}

/// A NumericDate claim, in seconds (fractions kept), if present.
fn date(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<f64>, ClaimError> {
    match present(claims, claim) {
        None => Ok(None),
        // `as_f64` is finite or `None` (only with serde_json's
        // `arbitrary_precision`, for a number out of range): refused.
        Some(value) => value
            .as_f64()
            .filter(|seconds| seconds.is_finite())
            .map(Some)
            .ok_or(ClaimError::Malformed {
                claim,
                expected: "number",
            }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const ISSUER: &str = "https://dex.example.test/dex";

    fn expected<'a>(audiences: &'a [String], parties: &'a [String]) -> Expected<'a> {
        Expected {
            issuer: ISSUER,
            audiences,
            parties,
            now: NOW,
            skew: 30,
        }
    }

    /// A valid token's claims with `changes` applied (`null` removes).
    fn claims(changes: Value) -> Map<String, Value> {
        let mut claims = json!({
            "iss": ISSUER, "aud": "authgate", "sub": "alice",
            "exp": NOW + 600, "iat": NOW - 5, "email_verified": true,
        })
        .as_object()
        .unwrap()
        .clone();
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.remove(key);
            } else {
                claims.insert(key.clone(), value.clone());
            }
        }
        claims
    }

    /// Each rule, as a table: the change to a valid token, and the verdict.
    #[test]
    fn claim_rules() {
        use ClaimError::*;
        let malformed = |claim, expected| Err(Malformed { claim, expected });
        let ok = Ok(());
        let cases: Vec<(&str, Value, Result<(), ClaimError>)> = vec![
            ("valid", json!({}), ok),
            ("without iat", json!({"iat": null}), ok),
            ("iss", json!({"iss": "https://evil.test/dex"}), Err(Issuer)),
            ("no iss", json!({"iss": null}), Err(Issuer)),
            ("aud other", json!({"aud": "another-client"}), Err(Audience)),
            ("aud list", json!({"aud": ["x", "authgate"]}), ok),
            (
                "aud list without us",
                json!({"aud": ["x", "y"]}),
                Err(Audience),
            ),
            ("no aud", json!({"aud": null}), Err(Audience)),
            ("azp us", json!({"azp": "authgate"}), ok),
            (
                "azp other",
                json!({"azp": "another-client"}),
                Err(AuthorizedParty),
            ),
            ("azp number", json!({"azp": 7}), malformed("azp", "string")),
            ("exp past", json!({"exp": NOW - 31}), Err(Expired)),
            ("exp within skew", json!({"exp": NOW - 29}), ok),
            ("exp float", json!({"exp": NOW as f64 + 600.5}), ok),
            (
                "exp float past",
                json!({"exp": NOW as f64 - 30.5}),
                Err(Expired),
            ),
            (
                "exp string",
                json!({"exp": (NOW + 600).to_string()}),
                malformed("exp", "number"),
            ),
            ("no exp", json!({"exp": null}), Err(Missing("exp"))),
            ("nbf future", json!({"nbf": NOW + 31}), Err(NotYetValid)),
            ("nbf within skew", json!({"nbf": NOW + 29}), ok),
            (
                "nbf float future",
                json!({"nbf": NOW as f64 + 30.5}),
                Err(NotYetValid),
            ),
            ("nbf float past", json!({"nbf": NOW as f64 - 0.5}), ok),
            (
                "nbf string",
                json!({"nbf": NOW.to_string()}),
                malformed("nbf", "number"),
            ),
            ("nbf bool", json!({"nbf": true}), malformed("nbf", "number")),
            ("iat future", json!({"iat": NOW + 31}), Err(IssuedInFuture)),
            ("iat within skew", json!({"iat": NOW + 29}), ok),
            (
                "iat float future",
                json!({"iat": NOW as f64 + 30.5}),
                Err(IssuedInFuture),
            ),
            (
                "iat string",
                json!({"iat": NOW.to_string()}),
                malformed("iat", "number"),
            ),
            ("email_verified false", json!({"email_verified": false}), ok),
            ("email_verified absent", json!({"email_verified": null}), ok),
            (
                "email_verified \"false\"",
                json!({"email_verified": "false"}),
                malformed("email_verified", "boolean"),
            ),
            (
                "email_verified \"true\"",
                json!({"email_verified": "true"}),
                malformed("email_verified", "boolean"),
            ),
            (
                "email_verified 1",
                json!({"email_verified": 1}),
                malformed("email_verified", "boolean"),
            ),
        ];
        let audiences = ["authgate".to_owned()];
        for (what, changes, want) in cases {
            let got = check(&claims(changes), &expected(&audiences, &audiences)).map(|_| ());
            assert_eq!(got, want, "{what}");
        }
    }

    /// A Bearer token may name another accepted client as `azp` (Dex's
    /// cross-client tokens); a login accepts only its own client id.
    #[test]
    fn parties_are_the_callers() {
        let token = claims(json!({"aud": ["authgate", "cli"], "azp": "cli"}));
        let ours = ["authgate".to_owned()];
        let accepted = ["authgate".to_owned(), "cli".to_owned()];
        assert_eq!(
            check(&token, &expected(&ours, &ours)),
            Err(ClaimError::AuthorizedParty)
        );
        assert!(check(&token, &expected(&ours, &accepted)).is_ok());
    }

    /// The times come back in whole seconds, rounded down.
    #[test]
    fn times_are_whole_seconds() {
        let token = claims(json!({"exp": NOW as f64 + 600.9, "iat": NOW as f64 - 4.5}));
        let audiences = ["authgate".to_owned()];
        assert_eq!(
            check(&token, &expected(&audiences, &audiences)),
            Ok(Times {
                expires_at: NOW + 600,
                issued_at: Some(NOW - 5),
            })
        );
    }
}
