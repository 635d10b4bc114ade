//! Signing keys, the JWKS, and compact JWS encoding.
//!
//! Dex signs with RSA-2048 `RS256` under a random `kid` and keeps retired
//! public keys in `/keys` for a while, so relying parties can still verify
//! tokens issued before a rotation. The [`KeyRing`] mirrors that; the
//! [`SigningMode`]s deliberately break the rules so tests can prove the
//! relying party refuses each kind of forged token.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::PrivateSigningKey as _;
use openidconnect::core::{CoreHmacKey, CoreJwsSigningAlgorithm};
use rand::RngCore as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::DevIdpError;

/// RSA modulus size, as Dex's local signer uses.
const RSA_BITS: usize = 2048;

/// How the provider signs ID tokens. Everything but [`SigningMode::Normal`]
/// produces a token a correct relying party must reject; for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SigningMode {
    /// RS256 with the current key, as Dex does.
    #[default]
    Normal,
    /// Header `alg: none` and an empty signature (the classic `none` attack).
    AlgNone,
    /// HS256 keyed with the current public key's PEM: the RS/HS confusion
    /// attack against verifiers that let the token pick the algorithm.
    Hs256WithPublicKey,
    /// RS256 with the current key, but a `kid` that is not in the JWKS.
    UnknownKid,
    /// A valid RS256 signature by a key that is not in the JWKS, under the
    /// current key's `kid`.
    ForeignKey,
    /// RS256 by a key that is not in the JWKS, under its own `kid`, with
    /// the attacker's key advertised in the header: `jwk` embeds it, `jku`
    /// and `x5u` point at the provider's `/attacker/…` URLs (which count
    /// fetches). A verifier must take keys only from the discovered JWKS.
    AdvertisedForeignKey,
    /// HS256 keyed with nothing (what reading `/dev/null` yields) under the
    /// `kid` [`KID_PATH_TRAVERSAL`]: against verifiers that load key files
    /// named by the token.
    KidPathTraversal,
    /// HS256 keyed with [`SQL_INJECTED_KEY`] under the `kid`
    /// [`KID_SQL_INJECTION`]: against verifiers that look keys up in SQL.
    KidSqlInjection,
}

/// The `kid` of [`SigningMode::KidPathTraversal`].
pub const KID_PATH_TRAVERSAL: &str = "../../../../../../../../dev/null";
/// The `kid` of [`SigningMode::KidSqlInjection`].
pub const KID_SQL_INJECTION: &str = "x' UNION SELECT 'attacker' -- ";
/// The HMAC key [`KID_SQL_INJECTION`] would select.
pub const SQL_INJECTED_KEY: &[u8] = b"attacker";

/// One RSA key pair and its public JWK.
pub(crate) struct KeyPair {
    pub(crate) kid: String,
    private: RsaPrivateKey,
    public: RsaPublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of Debug output.
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a fresh RSA-2048 key with a random `kid`.
    pub(crate) fn generate() -> Result<KeyPair, DevIdpError> {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), RSA_BITS)
            .map_err(|e| DevIdpError::KeyGeneration(e.to_string()))?;
        Ok(KeyPair::from_private(private))
    }

    /// Wraps an existing key (tests share one to skip slow key generation).
    pub(crate) fn from_private(private: RsaPrivateKey) -> KeyPair {
        let public = private.to_public_key();
        KeyPair {
            kid: random_token(20),
            private,
            public,
        }
    }

    /// The same key under another `kid`.
    fn with_kid(&self, kid: String) -> KeyPair {
        KeyPair {
            kid,
            private: self.private.clone(),
            public: self.public.clone(),
        }
    }

    /// The public key as a JWK, in the shape Dex publishes.
    pub(crate) fn jwk(&self) -> Value {
        json!({
            "use": "sig",
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(self.public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(self.public.e().to_bytes_be()),
        })
    }

    /// PKCS#1 v1.5 SHA-256 signature, blinded against timing attacks.
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, DevIdpError> {
        let digest = Sha256::digest(message);
        self.private
            .sign_with_rng(
                &mut rand::thread_rng(),
                Pkcs1v15Sign::new::<Sha256>(),
                &digest,
            )
            .map_err(|e| DevIdpError::Signing(e.to_string()))
    }

    fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        let digest = Sha256::digest(message);
        self.public
            .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, signature)
            .is_ok()
    }
}

/// The current signing key, the retired keys still published, and the
/// stranger key used by [`SigningMode::ForeignKey`].
#[derive(Debug)]
pub(crate) struct KeyRing {
    pub(crate) current: Arc<KeyPair>,
    /// Newest first; published in `/keys` and accepted by `/userinfo`.
    pub(crate) retired: Vec<Arc<KeyPair>>,
    /// Created on first use: RSA key generation is slow.
    foreign: Option<Arc<KeyPair>>,
}

impl KeyRing {
    pub(crate) fn new(current: KeyPair) -> KeyRing {
        KeyRing {
            current: Arc::new(current),
            retired: Vec::new(),
            foreign: None,
        }
    }

    /// Makes `next` current; the old key stays published if `keep_old`.
    pub(crate) fn rotate(&mut self, next: KeyPair, keep_old: bool) {
        let old = std::mem::replace(&mut self.current, Arc::new(next));
        if keep_old {
            self.retired.insert(0, old);
        } else {
            self.retired.clear();
        }
    }

    pub(crate) fn has_foreign(&self) -> bool {
        self.foreign.is_some()
    }

    pub(crate) fn set_foreign(&mut self, key: KeyPair) {
        self.foreign = Some(Arc::new(key));
    }

    /// The stranger key's JWKS (served at [`ATTACKER_KEYS_PATH`]), empty
    /// before it exists.
    pub(crate) fn foreign_jwks(&self) -> Value {
        let keys: Vec<Value> = self.foreign.iter().map(|k| k.jwk()).collect();
        json!({ "keys": keys })
    }

    /// The JWKS document served at `/keys`.
    pub(crate) fn jwks(&self) -> Value {
        let keys: Vec<Value> = std::iter::once(&self.current)
            .chain(self.retired.iter())
            .map(|k| k.jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// Every published key, for verifying our own access tokens.
    pub(crate) fn published(&self) -> Vec<Arc<KeyPair>> {
        std::iter::once(self.current.clone())
            .chain(self.retired.iter().cloned())
            .collect()
    }
}

/// What a token is signed with, captured under the key-ring lock so the
/// (slow) signing itself happens outside it.
pub(crate) struct Signer {
    mode: SigningMode,
    /// The provider's base URL, for the `jku`/`x5u` of
    /// [`SigningMode::AdvertisedForeignKey`].
    base: String,
    key: Arc<KeyPair>,
    foreign: Option<Arc<KeyPair>>,
}

impl Signer {
    pub(crate) fn new(ring: &KeyRing, mode: SigningMode, base: &str) -> Signer {
        Signer {
            mode,
            base: base.to_owned(),
            key: ring.current.clone(),
            foreign: ring.foreign.clone(),
        }
    }

    /// Encodes and signs `claims` as a compact JWS.
    pub(crate) fn sign(&self, claims: &Map<String, Value>) -> Result<String, DevIdpError> {
        let payload =
            serde_json::to_vec(claims).map_err(|e| DevIdpError::Signing(e.to_string()))?;
        match self.mode {
            SigningMode::Normal => rs256(&self.key, &payload),
            SigningMode::UnknownKid => {
                let stranger = self.key.with_kid(format!("unknown-{}", random_token(8)));
                rs256(&stranger, &payload)
            }
            SigningMode::ForeignKey => match &self.foreign {
                Some(foreign) => rs256(&foreign.with_kid(self.key.kid.clone()), &payload),
                None => Err(DevIdpError::Signing("foreign key not generated".into())),
            },
            SigningMode::AlgNone => {
                let header = json!({"alg": "none", "kid": self.key.kid, "typ": "JWT"});
                let input = signing_input(&header, &payload)?;
                Ok(format!("{input}."))
            }
            SigningMode::Hs256WithPublicKey => {
                let pem = self
                    .key
                    .public
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| DevIdpError::Signing(e.to_string()))?;
                hs256(&self.key.kid, &pem.into_bytes(), &payload)
            }
            SigningMode::AdvertisedForeignKey => {
                let foreign = self
                    .foreign
                    .as_ref()
                    .ok_or_else(|| DevIdpError::Signing("foreign key not generated".into()))?;
                let header = json!({
                    "alg": "RS256",
                    "kid": foreign.kid,
                    "typ": "JWT",
                    "jku": format!("{}{ATTACKER_KEYS_PATH}", self.base),
                    "x5u": format!("{}{ATTACKER_CERT_PATH}", self.base),
                    "jwk": foreign.jwk(),
                });
                let input = signing_input(&header, &payload)?;
                let signature = foreign.sign_rs256(input.as_bytes())?;
                Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
            }
            SigningMode::KidPathTraversal => hs256(KID_PATH_TRAVERSAL, b"", &payload),
            SigningMode::KidSqlInjection => hs256(KID_SQL_INJECTION, SQL_INJECTED_KEY, &payload),
        }
    }
}

/// Where [`SigningMode::AdvertisedForeignKey`] says its key set is.
pub(crate) const ATTACKER_KEYS_PATH: &str = "/attacker/keys";
/// Where [`SigningMode::AdvertisedForeignKey`] says its certificate is.
pub(crate) const ATTACKER_CERT_PATH: &str = "/attacker/cert.pem";

/// An HS256 JWS under `kid`, keyed with `key`.
fn hs256(kid: &str, key: &[u8], payload: &[u8]) -> Result<String, DevIdpError> {
    let header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
    let input = signing_input(&header, payload)?;
    let mac = CoreHmacKey::new(key.to_vec())
        .sign(&CoreJwsSigningAlgorithm::HmacSha256, input.as_bytes())
        .map_err(|e| DevIdpError::Signing(e.to_string()))?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac)))
}

fn rs256(key: &KeyPair, payload: &[u8]) -> Result<String, DevIdpError> {
    let header = json!({"alg": "RS256", "kid": key.kid, "typ": "JWT"});
    let input = signing_input(&header, payload)?;
    let signature = key.sign_rs256(input.as_bytes())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

fn signing_input(header: &Value, payload: &[u8]) -> Result<String, DevIdpError> {
    let header = serde_json::to_vec(header).map_err(|e| DevIdpError::Signing(e.to_string()))?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    ))
}

/// Verifies one of our own RS256 tokens against the published keys and
/// returns its claims; `None` for anything else (used by `/userinfo`).
pub(crate) fn verify(token: &str, keys: &[Arc<KeyPair>], now: i64) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (header_b64, payload_b64, sig_b64) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "RS256" {
        return None;
    }
    let kid = header.get("kid")?.as_str()?;
    let key = keys.iter().find(|k| k.kid == kid)?;
    let signature = URL_SAFE_NO_PAD.decode(sig_b64).ok()?;
    let input_len = header_b64.len() + 1 + payload_b64.len();
    if !key.verify_rs256(&token.as_bytes()[..input_len], &signature) {
        return None;
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    (now < exp).then_some(claims)
}

/// `at_hash`/`c_hash` for RS256: the left half of SHA-256, base64url.
pub(crate) fn half_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// A random URL-safe string carrying `bytes` bytes of entropy.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}
