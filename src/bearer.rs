//! API clients: `Authorization: Bearer <token>` with a token from the
//! provider, in place of a session cookie.
//!
//! Dex signs ID tokens and access tokens alike as JWTs with the keys it
//! publishes, so both are accepted once verified here against the keys
//! `oidc` already holds: RS256 or ES256 only (`none` and HMAC are refused
//! before any key is looked at, so an HS256 token "signed" with the public
//! key gets nowhere); then the claim checks a login's ID token passes
//! ([`crate::claims`]): `iss` exactly the configured issuer, `aud` the
//! client id or one of `idp_allowed_audiences`, `azp` (when present) one of
//! those too, `exp`/`nbf`/`iat` within the configured clock skew, claims of
//! the wrong JSON type refused. The claims then go through the same policy
//! as a session's.
//!
//! No network I/O on this path, except fetching the provider's keys again
//! for an unknown `kid` — which `oidc` allows once per
//! [`crate::oidc::JWKS_REFETCH_INTERVAL`] in total, so random `kid`s from an
//! attacker cost the provider one request per interval at most.
//!
//! Verified tokens are cached by their SHA-256 until they expire, so an API
//! client calling in a loop costs a hash and a lookup per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::CoreJsonWebKeySet;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::claims::{self, ClaimError, Expected};
use crate::clock::SharedClock;
use crate::oidc::{Oidc, OidcError, identity_from_claims};
use crate::session::SessionRecord;

/// Most verified tokens kept.
const CACHE_CAPACITY: u64 = 50_000;

/// Upper bound on how long a verified token stays cached (its own `exp`
/// is checked on every hit).
const CACHE_TTL: Duration = Duration::from_secs(3600);

/// Why a Bearer token was refused. Only `Unavailable` is not the client's
/// fault. Messages never contain the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    #[error("cannot verify tokens now: {0}")]
    Unavailable(String),
    #[error("not a signed JWT")]
    Malformed,
    #[error("algorithm not accepted (RS256 and ES256 only)")]
    Algorithm,
    #[error("signed with a key the provider does not publish")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("no subject (sub)")]
    NoSubject,
    #[error(transparent)]
    Claims(#[from] ClaimError),
}

/// The Bearer token's value, if `authorization` is `Bearer <token>` (the
/// scheme is case-insensitive, RFC 9110 §11.1).
pub fn token_of(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A verified token: who it names, as a session record the policy and
/// the identity headers understand.
#[derive(Debug)]
pub struct Verified {
    /// Stands in for a session id (`sid`, the assertion cache).
    pub key: [u8; 16],
    pub record: Arc<SessionRecord>,
}

/// The provider's keys, made usable by `jsonwebtoken`; rebuilt when `oidc`
/// fetched a new key set.
struct Keys {
    source: Arc<CoreJsonWebKeySet>,
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
    /// Keys without `kid` (usable only when the token has none either).
    anonymous: Vec<(Algorithm, DecodingKey)>,
}

impl Keys {
    fn build(source: Arc<CoreJsonWebKeySet>) -> Keys {
        let mut by_kid = HashMap::new();
        let mut anonymous = Vec::new();
        let listed = serde_json::to_value(source.as_ref())
            .ok()
            .and_then(|v| v.get("keys").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        for value in listed {
            // A key type we do not use (say, an encryption key) is skipped.
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            match jwk.common.key_id {
                Some(kid) => {
                    by_kid.insert(kid, (alg, key));
                }
                None => anonymous.push((alg, key)),
            }
        }
        Keys {
            source,
            by_kid,
            anonymous,
        }
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        let found = match kid {
            Some(kid) => self.by_kid.get(kid),
            None => match self.anonymous.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        };
        found.filter(|(key_alg, _)| *key_alg == alg).map(|(_, k)| k)
    }
}

/// Verifies Bearer tokens against the provider's published keys.
pub struct BearerVerifier {
    oidc: Arc<Oidc>,
    /// The client id, then `idp_allowed_audiences`.
    audiences: Vec<String>,
    clock: SharedClock,
    keys: ArcSwapOption<Keys>,
    cache: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

impl std::fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerVerifier")
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl BearerVerifier {
    pub fn new(oidc: Arc<Oidc>, allowed_audiences: &[String], clock: SharedClock) -> Self {
        let mut audiences = vec![oidc.client_id().to_owned()];
        audiences.extend(allowed_audiences.iter().cloned());
        BearerVerifier {
            oidc,
            audiences,
            clock,
            keys: ArcSwapOption::empty(),
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// Verifies `token`; a cached verification is reused while the token
    /// has not expired.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, BearerError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = self.clock.now();
        let skew = self.oidc.clock_skew();
        if let Some(hit) = self.cache.get(&digest) {
            if hit.record.expires_at + skew > now {
                return Ok(hit);
            }
            self.cache.invalidate(&digest);
            return Err(ClaimError::Expired.into());
        }
        let claims = self.signed_claims(token).await?;
        let verified = Arc::new(self.check_claims(claims, digest, now, skew)?);
        self.cache.insert(digest, verified.clone());
        Ok(verified)
    }

    /// The claims of a JWT the provider signed (RS256 or ES256, with one of
    /// its keys, fetched again once for an unknown `kid`); nothing else is
    /// checked. Also for the back-channel logout token.
    pub async fn signed_claims(&self, token: &str) -> Result<Map<String, Value>, BearerError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| BearerError::Malformed)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(BearerError::Algorithm);
        }
        match self.check_signature(token, header.kid.as_deref(), header.alg) {
            Err(BearerError::UnknownKey) => {
                match self.oidc.refresh_provider_keys().await {
                    Ok(()) => {}
                    // Refused by the rate limit: the key stays unknown.
                    Err(OidcError::InvalidToken(_)) => return Err(BearerError::UnknownKey),
                    Err(e) => return Err(BearerError::Unavailable(e.to_string())),
                }
                self.check_signature(token, header.kid.as_deref(), header.alg)
            }
            other => other,
        }
    }

    /// The signature, with the key named by `kid`; the claims if it holds.
    fn check_signature(
        &self,
        token: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Map<String, Value>, BearerError> {
        let source = self
            .oidc
            .provider_keys()
            .map_err(|e| BearerError::Unavailable(e.to_string()))?;
        let keys = match self.keys.load_full() {
            Some(keys) if Arc::ptr_eq(&keys.source, &source) => keys,
            _ => {
                let keys = Arc::new(Keys::build(source));
                self.keys.store(Some(keys.clone()));
                keys
            }
        };
        let key = keys.find(kid, alg).ok_or(BearerError::UnknownKey)?;
        // Time, issuer and audience are checked below against our clock and
        // rules; here only the signature.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|_| BearerError::Signature)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        digest: [u8; 32],
        now: i64,
        skew: i64,
    ) -> Result<Verified, BearerError> {
        let times = claims::check(
            &claims,
            &Expected {
                issuer: self.oidc.issuer(),
                audiences: &self.audiences,
                // `idp_allowed_audiences` names the other clients whose
                // tokens are accepted; Dex's cross-client tokens have the
                // requesting client as `azp`.
                parties: &self.audiences,
                now,
                skew,
            },
        )?;
        let exp = times.expires_at;
        let issued_at = times.issued_at.unwrap_or(now);
        let identity = identity_from_claims(claims);
        if identity.subject.is_empty() {
            return Err(BearerError::NoSubject);
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Ok(Verified {
            key,
            record: Arc::new(SessionRecord {
                identity,
                refresh_token: None,
                created_at: issued_at,
                expires_at: exp,
                refresh_due_at: exp,
                refreshed_at: issued_at,
                last_seen_at: issued_at,
                id_token: None,
                headers: Default::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Only the Bearer scheme, any case, with a non-empty token.
    #[test]
    fn token_of_reads_only_bearer() {
        assert_eq!(token_of("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(token_of("bearer  abc "), Some("abc"));
        assert_eq!(token_of("BEARER x"), Some("x"));
        assert_eq!(token_of("Basic dXNlcjpwYXNz"), None);
        assert_eq!(token_of("Bearer"), None);
        assert_eq!(token_of("Bearer   "), None);
        assert_eq!(token_of("Bearerabc"), None);
    }
}
