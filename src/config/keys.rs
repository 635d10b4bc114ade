//! The assertion's P-256 keys, parsed from their PEM text when the
//! configuration is validated (the signer is built from the result, so a
//! key `check-config` accepts is the key `serve` signs with). Messages never
//! quote key material.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use p256::{PublicKey, SecretKey};

/// Text that is not a P-256 key in a form authgate reads.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not a P-256 key in PEM (`EC PRIVATE KEY`, `PRIVATE KEY` or `PUBLIC KEY`, or base64 of one)"
)]
pub struct NotAKey;

/// `signing_key`: the private key assertions are signed with. Its `Debug`
/// never shows the key; comparing two takes the same time wherever they
/// differ.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(SecretKey);

impl SigningKey {
    pub fn secret(&self) -> &SecretKey {
        &self.0
    }
}

impl From<SecretKey> for SigningKey {
    fn from(key: SecretKey) -> SigningKey {
        SigningKey(key)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// PEM text from a config value: as is, or base64-decoded (Pomerium's form).
fn pem_text(input: &[u8]) -> Result<String, NotAKey> {
    let text = std::str::from_utf8(input).map_err(|_| NotAKey)?;
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return Ok(text.to_owned());
    }
    let compact: String = text.split_whitespace().collect();
    let decoded = STANDARD.decode(compact).map_err(|_| NotAKey)?;
    String::from_utf8(decoded).map_err(|_| NotAKey)
}

/// Parses a P-256 private key (SEC1 or PKCS#8 PEM, or base64 of it).
pub fn private_key_from_pem(input: &[u8]) -> Result<SecretKey, NotAKey> {
    let pem = pem_text(input)?;
    SecretKey::from_sec1_pem(&pem)
        .or_else(|_| SecretKey::from_pkcs8_pem(&pem))
        .map_err(|_| NotAKey)
}

/// Parses the public half of a private key, or a `PUBLIC KEY` PEM.
pub fn public_key_from_pem(input: &[u8]) -> Result<PublicKey, NotAKey> {
    if let Ok(secret) = private_key_from_pem(input) {
        return Ok(secret.public_key());
    }
    let pem = pem_text(input)?;
    PublicKey::from_public_key_pem(&pem).map_err(|_| NotAKey)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use p256::pkcs8::EncodePrivateKey as _;

    /// SEC1 and PKCS#8 PEM, and base64 of the PEM (Pomerium's form), load;
    /// an RSA key or garbage is refused without echoing it.
    #[test]
    fn keys_load_from_every_pem_form() {
        let key = SecretKey::from_slice(&[7u8; 32]).unwrap();
        let sec1 = key.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let pkcs8 = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
        for pem in [sec1.as_bytes(), pkcs8.as_bytes()] {
            assert_eq!(private_key_from_pem(pem).unwrap(), key);
        }
        let wrapped = STANDARD.encode(sec1.as_bytes());
        assert_eq!(private_key_from_pem(wrapped.as_bytes()).unwrap(), key);
        assert_eq!(
            public_key_from_pem(pkcs8.as_bytes()).unwrap(),
            key.public_key()
        );
        let err =
            private_key_from_pem(b"-----BEGIN NOPE-----\nxx\n-----END NOPE-----").unwrap_err();
        assert!(!err.to_string().contains("xx"));
        assert_eq!(
            format!("{:?}", SigningKey::from(key)),
            "SigningKey(<redacted>)"
        );
    }
}
