//! The signed identity assertion: `X-Auth-Request-Jwt`, and the JWKS that
//! lets an upstream verify it.
//!
//! The identity headers are only as trustworthy as the path between the
//! proxy and the upstream. The assertion is a short-lived ES256 JWT the
//! upstream can verify itself against `/.well-known/authgate/jwks.json`:
//! `iss` is the login host URL, `aud` the host the request was for, so a
//! token seen by one app cannot be replayed against another.
//!
//! Minting is cheap on the decision path: an assertion is cached per
//! (session, refresh, route, audience) and reused until it has less than
//! [`REMINT_MARGIN`] left, so most decisions do no signing at all.
//!
//! # Keys
//! `signing_key` (PEM: SEC1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`, or
//! base64 of either, as Pomerium takes it). Without one, a key is generated
//! once and kept in [`KEY_FILE_NAME`] (mode 0600) beside the embedded session
//! store; with the memory or Redis store it lives in memory only, which
//! replicas cannot share, so that case is logged as a warning.
//! `previous_signing_keys` stay in the JWKS so assertions signed before a
//! rotation verify until they expire. `kid` is the RFC 7638 thumbprint.

use std::hash::BuildHasher as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, Header};
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::EncodePrivateKey as _;
use p256::{PublicKey, SecretKey};
use rand::RngCore as _;
use rand::rngs::OsRng;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::clock::SharedClock;
use crate::config::keys::private_key_from_pem;
use crate::config::{Config, SessionStoreConfig};
use crate::identity::Identity;

/// Where upstreams fetch the public keys.
pub const JWKS_PATH: &str = "/.well-known/authgate/jwks.json";

/// How long an assertion is valid: long enough for a slow upstream, short
/// enough that a leaked one is soon useless.
pub const ASSERTION_TTL: Duration = Duration::from_secs(300);

/// A cached assertion is minted again when less than this is left, so an
/// upstream never receives one about to expire.
pub const REMINT_MARGIN: Duration = Duration::from_secs(60);

/// The generated key's file, beside the embedded store.
pub const KEY_FILE_NAME: &str = "assertion-signing-key.pem";

/// Most cached assertions kept (one per session, route and host in use):
/// as many as the sessions cached, since an assertion is only asked for a
/// cached session. At about 1 KB each, 100,000 took 100 MB after a deploy
/// (bench/scale.sh), more than the 64 MB a replica should need.
const CACHE_CAPACITY: u64 = crate::session::DEFAULT_CACHE_ENTRIES;

/// Why a key could not be loaded or an assertion signed. Never carries key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("signing key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("cannot sign the assertion: {0}")]
    Sign(String),
}

/// The public JWK of `key` and its RFC 7638 thumbprint (the `kid`).
fn public_jwk(key: &PublicKey) -> (String, Value) {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    // Uncompressed SEC1: 0x04 || x (32) || y (32).
    let x = URL_SAFE_NO_PAD.encode(&bytes[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&bytes[33..65]);
    // RFC 7638: the required members, in lexicographic order, no spaces.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": kid, "alg": "ES256", "use": "sig"});
    (kid, jwk)
}

/// A fresh key from the operating system's generator.
fn generate_key() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        // Fails only for zero or values above the group order (~2^-32).
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// Reads the key at `path`, or creates it (0600, never overwriting a file
/// another process created meanwhile).
fn load_or_create(path: &Path) -> Result<SecretKey, AssertionError> {
    let fail = |reason: String| AssertionError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(pem) => return private_key_from_pem(&pem).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e.to_string())),
        Err(_) => {}
    }
    let key = generate_key();
    let pem = key
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| fail(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, pem.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated the assertion signing key");
            Ok(key)
        }
        // Another instance sharing the directory won the race: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            private_key_from_pem(&pem).map_err(|e| fail(e.to_string()))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// What one assertion is about.
pub struct Subject<'a> {
    /// A stable per-session value (the session id, or a Bearer token's
    /// hash); hashed before it becomes `sid`.
    pub session: [u8; 16],
    /// Changes whenever the identity may have changed (the last refresh),
    /// so a refreshed identity is never served from the cache.
    pub stamp: i64,
    /// The route, since routes differ in `jwt_claims_headers`.
    pub route: u32,
    /// `aud`: the host the request was for.
    pub audience: &'a str,
    pub identity: &'a Identity,
    /// The session's end: the assertion never outlives it.
    pub expires_at: i64,
    /// `jwt_claims_headers` (claim, header): the claims are also put in the
    /// token (as Pomerium does) when not already there.
    pub extra_claims: &'a [(String, HeaderName)],
}

/// The audience is in the key as a hash, so a lookup allocates nothing;
/// the cached token keeps its audience, compared on every hit, so two
/// hosts whose hashes meet cost a new signature, never a wrong `aud`.
#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    session: [u8; 16],
    stamp: i64,
    route: u32,
    audience_hash: u64,
}

/// A signed assertion in the cache.
#[derive(Clone)]
struct Cached {
    token: HeaderValue,
    expires_at: i64,
    /// An `Arc`: the cache hands out clones, and a hit must not allocate.
    audience: Arc<str>,
}

/// Signs assertions and serves the JWKS. Shared by `Arc`.
pub struct AssertionSigner {
    issuer: String,
    kid: String,
    /// ring's P-256 (assembly): signing is most of the CPU of a decision
    /// this replica has no assertion cached for (a session it has not
    /// seen, after a deploy), and ring signs about 2.5× faster than the
    /// RustCrypto code `jsonwebtoken` uses, which also re-parsed the key
    /// and derived its public key on every call.
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The JWS header (`alg` ES256, `typ`, `kid`), base64url-encoded once.
    header: String,
    /// `{"keys": [current, previous…]}`, rendered once.
    jwks: String,
    clock: SharedClock,
    /// Keyed by random session ids: foldhash, not SipHash (nobody can
    /// choose colliding keys, and every allowed request looks one up).
    cache: moka::sync::Cache<CacheKey, Cached, foldhash::fast::RandomState>,
    /// Hashes audiences for [`CacheKey`] (seeded at random per process).
    audience_hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// Signs with the configured key (parsed by validation), or one
    /// generated (and kept beside an embedded store).
    pub fn from_config(config: &Config, clock: SharedClock) -> Result<Self, AssertionError> {
        let current = match (&config.signing.key, &config.session_store) {
            (Some(key), _) => key.secret().clone(),
            (None, SessionStoreConfig::Embedded(store)) => {
                let dir = store.parent().unwrap_or_else(|| Path::new("."));
                load_or_create(&dir.join(KEY_FILE_NAME))?
            }
            (None, _) => {
                tracing::warn!(
                    "no signing_key configured: X-Auth-Request-Jwt is signed with a key generated \
                     in memory, which changes on restart and differs between replicas; set \
                     signing_key (the same on every replica)"
                );
                generate_key()
            }
        };
        let issuer = config
            .authenticate_service_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        Self::new(issuer, &current, &config.signing.previous, clock)
    }

    /// A signer for `issuer` with `current`, publishing `previous` too.
    pub fn new(
        issuer: String,
        current: &SecretKey,
        previous: &[PublicKey],
        clock: SharedClock,
    ) -> Result<Self, AssertionError> {
        let rng = SystemRandom::new();
        let der = current
            .to_pkcs8_der()
            .map_err(|e| AssertionError::Sign(e.to_string()))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_bytes(), &rng)
            .map_err(|e| AssertionError::Sign(e.to_string()))?;
        let (kid, current_jwk) = public_jwk(&current.public_key());
        let mut keys = vec![current_jwk];
        for public in previous {
            let (old_kid, jwk) = public_jwk(public);
            if old_kid != kid && !keys.iter().any(|k| k["kid"] == old_kid.as_str()) {
                keys.push(jwk);
            }
        }
        let jwks = json!({ "keys": keys }).to_string();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        let header = serde_json::to_vec(&header)
            .map(|json| URL_SAFE_NO_PAD.encode(json))
            .map_err(|e| AssertionError::Sign(e.to_string()))?;
        Ok(AssertionSigner {
            issuer,
            kid,
            key,
            rng,
            header,
            jwks,
            clock,
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(ASSERTION_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            audience_hasher: foldhash::fast::RandomState::default(),
        })
    }

    /// The JWKS document served at [`JWKS_PATH`].
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// The current key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `iss` of every assertion.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The assertion for `subject`: from the cache while it has more than
    /// [`REMINT_MARGIN`] left, else freshly signed.
    pub fn assertion(&self, subject: &Subject<'_>) -> Result<HeaderValue, AssertionError> {
        let now = self.clock.now();
        let key = CacheKey {
            session: subject.session,
            stamp: subject.stamp,
            route: subject.route,
            audience_hash: self.audience_hasher.hash_one(subject.audience),
        };
        let margin = REMINT_MARGIN.as_secs() as i64;
        if let Some(cached) = self.cache.get(&key)
            && cached.expires_at - now > margin
            && *cached.audience == *subject.audience
        {
            return Ok(cached.token);
        }
        let (token, expires_at) = self.mint(subject, now)?;
        let cached = Cached {
            token: token.clone(),
            expires_at,
            audience: subject.audience.into(),
        };
        self.cache.insert(key, cached);
        Ok(token)
    }

    /// Signs a new assertion.
    fn mint(&self, subject: &Subject<'_>, now: i64) -> Result<(HeaderValue, i64), AssertionError> {
        let identity = subject.identity;
        let exp = (now + ASSERTION_TTL.as_secs() as i64).min(subject.expires_at.max(now));
        let mut jti = [0u8; 16];
        OsRng.fill_bytes(&mut jti);
        let sid = {
            let mut hash = Sha256::new();
            hash.update(b"authgate sid\0");
            hash.update(subject.session);
            URL_SAFE_NO_PAD.encode(&hash.finalize()[..16])
        };
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("aud".into(), json!(subject.audience));
        claims.insert("sub".into(), json!(identity.subject));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(URL_SAFE_NO_PAD.encode(jti)));
        claims.insert("sid".into(), json!(sid));
        if let Some(email) = &identity.email {
            claims.insert("email".into(), json!(email));
        }
        claims.insert("groups".into(), json!(identity.groups));
        if let Some(name) = &identity.name {
            claims.insert("name".into(), json!(name));
        }
        if let Some(username) = &identity.preferred_username {
            claims.insert("preferred_username".into(), json!(username));
        }
        for (claim, _) in subject.extra_claims {
            if !claims.contains_key(claim)
                && let Some(value) = identity.claims.get(claim)
            {
                claims.insert(claim.clone(), value.clone());
            }
        }
        // JWS compact serialization (RFC 7515 §7.1); an ES256 signature is
        // r ‖ s, 64 bytes (RFC 7518 §3.4).
        let payload =
            serde_json::to_vec(&claims).map_err(|e| AssertionError::Sign(e.to_string()))?;
        let mut token = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|e| AssertionError::Sign(e.to_string()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        let value =
            HeaderValue::from_str(&token).map_err(|e| AssertionError::Sign(e.to_string()))?;
        Ok((value, exp))
    }
}

/// Shared handle used by the decision core.
pub type SharedSigner = Arc<AssertionSigner>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::ManualClock;
    use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};

    const T0: i64 = 1_800_000_000;

    fn identity() -> Identity {
        let mut claims = Map::new();
        claims.insert("department".into(), json!("ops"));
        Identity {
            subject: "CgVhbGljZRIFbG9jYWw".into(),
            email: Some("alice@example.com".into()),
            preferred_username: Some("alice".into()),
            name: Some("Alice".into()),
            groups: vec!["devops".into(), "admins".into()],
            claims: claims.into(),
            ..Identity::default()
        }
    }

    fn signer(clock: &ManualClock, key: &SecretKey, previous: &[PublicKey]) -> AssertionSigner {
        AssertionSigner::new(
            "https://auth.example.test".into(),
            key,
            previous,
            Arc::new(clock.clone()),
        )
        .unwrap()
    }

    fn subject<'a>(identity: &'a Identity, extra: &'a [(String, HeaderName)]) -> Subject<'a> {
        Subject {
            session: [1; 16],
            stamp: T0,
            route: 0,
            audience: "app.example.test",
            identity,
            expires_at: T0 + 3600,
            extra_claims: extra,
        }
    }

    /// Verifies `token` with the JWKS as an upstream would (jsonwebtoken,
    /// key chosen by `kid`), for `audience`.
    fn verify(jwks: &str, token: &str, audience: &str, now: i64) -> Option<Map<String, Value>> {
        let set: JwkSet = serde_json::from_str(jwks).unwrap();
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let key = DecodingKey::from_jwk(set.find(&kid)?).ok()?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["https://auth.example.test"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .ok()?
            .claims;
        (claims["exp"].as_i64()? > now).then_some(claims)
    }

    /// The token carries every promised claim, verifies with the published
    /// JWKS for its audience and no other, and `kid` is the RFC 7638
    /// thumbprint.
    #[test]
    fn assertion_verifies_with_the_jwks_for_its_audience_only() {
        let clock = ManualClock::new(T0);
        let key = generate_key();
        let signer = signer(&clock, &key, &[]);
        let id = identity();
        let token = signer.assertion(&subject(&id, &[])).unwrap();
        let token = token.to_str().unwrap();
        let claims = verify(signer.jwks_json(), token, "app.example.test", T0).unwrap();
        assert_eq!(claims["sub"], "CgVhbGljZRIFbG9jYWw");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["groups"], json!(["devops", "admins"]));
        assert_eq!(claims["name"], "Alice");
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(claims["iat"], T0);
        assert_eq!(claims["exp"], T0 + 300);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 20));
        let sid = claims["sid"].as_str().unwrap();
        assert!(
            !sid.contains(&URL_SAFE_NO_PAD.encode([1u8; 16])),
            "raw id leaked"
        );
        assert!(verify(signer.jwks_json(), token, "other.example.test", T0).is_none());

        let (kid, _) = public_jwk(&key.public_key());
        assert_eq!(signer.kid(), kid);
        assert_eq!(kid.len(), 43, "base64url of a SHA-256");
    }

    /// RFC 7638 §3.1's example is RSA; for EC the canonical JSON has the
    /// members crv, kty, x, y in that order: recomputing it by hand from the
    /// published JWK gives the same `kid`.
    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        let clock = ManualClock::new(T0);
        let signer = signer(&clock, &generate_key(), &[]);
        let jwks: Value = serde_json::from_str(signer.jwks_json()).unwrap();
        let jwk = &jwks["keys"][0];
        let canonical = serde_json::to_string(&json!({
            "crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]
        }))
        .unwrap();
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(jwk["kid"], expected);
        assert_eq!(jwk["alg"], "ES256");
        assert!(jwk.get("d").is_none(), "private part published");
    }

    /// The same session, route and host reuse one token until it nears
    /// expiry; a new refresh stamp or another host gets a new one.
    #[test]
    fn assertions_are_cached_until_near_expiry() {
        let clock = ManualClock::new(T0);
        let signer = signer(&clock, &generate_key(), &[]);
        let id = identity();
        let first = signer.assertion(&subject(&id, &[])).unwrap();
        clock.advance(200);
        assert_eq!(signer.assertion(&subject(&id, &[])).unwrap(), first);
        let mut other_host = subject(&id, &[]);
        other_host.audience = "b.example.test";
        assert_ne!(signer.assertion(&other_host).unwrap(), first);
        let mut refreshed = subject(&id, &[]);
        refreshed.stamp += 1;
        assert_ne!(signer.assertion(&refreshed).unwrap(), first);
        clock.advance(41);
        let renewed = signer.assertion(&subject(&id, &[])).unwrap();
        assert_ne!(renewed, first, "served with less than a minute left");
    }

    /// A token never outlives its session.
    #[test]
    fn assertion_ends_with_the_session() {
        let clock = ManualClock::new(T0);
        let signer = signer(&clock, &generate_key(), &[]);
        let id = identity();
        let mut short = subject(&id, &[]);
        short.expires_at = T0 + 90;
        let token = signer.assertion(&short).unwrap();
        let claims = verify(
            signer.jwks_json(),
            token.to_str().unwrap(),
            short.audience,
            T0,
        );
        assert_eq!(claims.unwrap()["exp"], T0 + 90);
    }

    /// After a rotation the old key stays published, so a token it signed
    /// still verifies; a key nobody published does not.
    #[test]
    fn rotation_keeps_old_tokens_verifiable() {
        let clock = ManualClock::new(T0);
        let (old_key, new_key) = (generate_key(), generate_key());
        let old = signer(&clock, &old_key, &[]);
        let id = identity();
        let old_token = old.assertion(&subject(&id, &[])).unwrap();
        let rotated = signer(&clock, &new_key, &[old_key.public_key()]);
        let jwks: Value = serde_json::from_str(rotated.jwks_json()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert!(
            verify(
                rotated.jwks_json(),
                old_token.to_str().unwrap(),
                "app.example.test",
                T0
            )
            .is_some()
        );
        let fresh = signer(&clock, &generate_key(), &[]);
        assert!(
            verify(
                fresh.jwks_json(),
                old_token.to_str().unwrap(),
                "app.example.test",
                T0
            )
            .is_none()
        );
    }

    /// `jwt_claims_headers` claims are added to the token unless present.
    #[test]
    fn extra_claims_join_the_token() {
        let clock = ManualClock::new(T0);
        let signer = signer(&clock, &generate_key(), &[]);
        let id = identity();
        let extra = [("department".to_owned(), HeaderName::from_static("x-dept"))];
        let token = signer.assertion(&subject(&id, &extra)).unwrap();
        let claims = verify(
            signer.jwks_json(),
            token.to_str().unwrap(),
            "app.example.test",
            T0,
        );
        assert_eq!(claims.unwrap()["department"], "ops");
    }

    /// The generated key is written once with mode 0600 and read back on
    /// the next start: the same `kid` across restarts.
    #[test]
    fn generated_key_persists_beside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let first = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
