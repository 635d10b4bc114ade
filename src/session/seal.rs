//! The sealer: authenticated encryption for everything authgate hands to a
//! browser (the session cookie, the login-state cookie, the handoff token).
//!
//! XChaCha20-Poly1305 with keys derived by HKDF-SHA256 from each configured
//! secret, one key per [`Purpose`]: a value sealed for one purpose never opens
//! as another, so a login-state cookie cannot be replayed as a session.
//! The 24-byte nonce is random, which XChaCha makes safe for any number of
//! messages under one key.
//!
//! Wire format: base64url without padding of
//! `version (1) || nonce (24) || ciphertext || tag (16)`, the version byte
//! being authenticated as associated data.

use std::fmt;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::Secret;

/// Format version, the first byte of every sealed value.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Smallest possible sealed value: header and tag around an empty message.
const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;
/// Longest encoded value accepted by [`Sealer::open`]. Browsers cap a cookie
/// at 4096 bytes, so anything longer was not made by us; refusing it before
/// decoding bounds the work an attacker can cause.
pub const MAX_SEALED_LEN: usize = 4096;
/// Length the configured secrets must have.
pub const SECRET_LEN: usize = 32;

/// What a sealed value is for. Each purpose has its own derived key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The session cookie (the session ticket).
    SessionCookie,
    /// The short-lived cookie that carries state, nonce and PKCE verifier
    /// from `/oauth2/start` to `/oauth2/callback`.
    LoginState,
    /// The one-time token that carries a session from the login host to a
    /// host outside the cookie domain (`/.authgate/callback`).
    Handoff,
    /// The session cookie of one host outside the cookie domain: the
    /// session's ticket and that host's name, valid there only.
    HostSessionCookie,
    /// The signed-out page's "sign out of all my sessions" form: whose
    /// sessions, until when (the session cookie is already gone).
    SignOutAll,
    /// The `state` of RP-initiated logout: where to go once the provider
    /// sends the browser back.
    LogoutState,
}

impl Purpose {
    const ALL: [Purpose; 6] = [
        Purpose::SessionCookie,
        Purpose::LoginState,
        Purpose::Handoff,
        Purpose::HostSessionCookie,
        Purpose::SignOutAll,
        Purpose::LogoutState,
    ];

    /// The HKDF `info` string. Changing one invalidates every value sealed
    /// for that purpose.
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::SessionCookie => b"authgate v1 session cookie",
            Purpose::LoginState => b"authgate v1 login state",
            Purpose::Handoff => b"authgate v1 handoff token",
            Purpose::HostSessionCookie => b"authgate v1 host session cookie",
            Purpose::SignOutAll => b"authgate v1 sign out of all sessions",
            Purpose::LogoutState => b"authgate v1 logout state",
        }
    }

    fn index(self) -> usize {
        match self {
            Purpose::SessionCookie => 0,
            Purpose::LoginState => 1,
            Purpose::Handoff => 2,
            Purpose::HostSessionCookie => 3,
            Purpose::SignOutAll => 4,
            Purpose::LogoutState => 5,
        }
    }
}

/// Why a value could not be sealed or opened. For `open`, every variant
/// means the same to the caller — the value is not ours — and the variants
/// exist only for debug logs and tests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// A configured secret has the wrong length (the value is never shown).
    #[error("{which} must be {SECRET_LEN} bytes, got {len}")]
    SecretLength { which: String, len: usize },
    /// Longer than any value we produce.
    #[error("sealed value is longer than {MAX_SEALED_LEN} bytes")]
    TooLarge,
    /// Not unpadded base64url.
    #[error("sealed value is not base64url")]
    Encoding,
    /// Too short to hold a header and a tag.
    #[error("sealed value is truncated")]
    Truncated,
    /// A format version this build does not know.
    #[error("sealed value has unknown version {0}")]
    Version(u8),
    /// The tag did not verify under any known key: tampered, sealed with an
    /// unknown secret, or sealed for another purpose.
    #[error("sealed value failed authentication")]
    Forged,
}

/// One secret's derived keys, indexed by [`Purpose::index`].
struct KeySet([XChaCha20Poly1305; Purpose::ALL.len()]);

impl KeySet {
    fn derive(secret: &[u8]) -> KeySet {
        let hkdf = Hkdf::<Sha256>::new(None, secret);
        KeySet(Purpose::ALL.map(|purpose| {
            // Wiped on drop (a plain `fill(0)` may be optimised away); the
            // cipher wipes its own copy of the key when it is dropped.
            let mut okm = Zeroizing::new([0u8; 32]);
            // Expand fails only past 255 * 32 bytes of output; 32 is fine.
            let _ = hkdf.expand(purpose.info(), okm.as_mut_slice());
            XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*okm))
        }))
    }

    fn cipher(&self, purpose: Purpose) -> &XChaCha20Poly1305 {
        &self.0[purpose.index()]
    }
}

/// Seals with the current secret, opens with the current or any previous
/// one (secret rotation without logging everybody out).
pub struct Sealer {
    /// `keys[0]` is derived from the current secret.
    keys: Vec<KeySet>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("previous_secrets", &(self.keys.len() - 1))
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Derives the keys. Every secret must be exactly 32 bytes.
    pub fn new(current: &Secret, previous: &[Secret]) -> Result<Sealer, SealError> {
        let check = |secret: &Secret, which: &dyn Fn() -> String| {
            let len = secret.expose().len();
            if len == SECRET_LEN {
                Ok(KeySet::derive(secret.expose()))
            } else {
                Err(SealError::SecretLength {
                    which: which(),
                    len,
                })
            }
        };
        let mut keys = Vec::with_capacity(1 + previous.len());
        keys.push(check(current, &|| "cookie_secret".to_owned())?);
        for (i, secret) in previous.iter().enumerate() {
            keys.push(check(secret, &|| format!("previous_cookie_secrets[{i}]"))?);
        }
        Ok(Sealer { keys })
    }

    /// Seals `plaintext` for `purpose` with the current secret.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        let mut buf = Vec::with_capacity(MIN_SEALED_LEN + plaintext.len());
        buf.push(VERSION);
        let mut nonce = XNonce::default();
        OsRng.fill_bytes(&mut nonce);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = self.keys[0].cipher(purpose).encrypt_in_place_detached(
            &nonce,
            &[VERSION],
            &mut buf[HEADER_LEN..],
        );
        match tag {
            Ok(tag) => buf.extend_from_slice(&tag),
            // Only messages over 256 GiB are refused by the cipher.
            Err(_) => unreachable_tag(),
        }
        URL_SAFE_NO_PAD.encode(&buf)
    }

    /// Opens a value sealed for `purpose` by this or a previous secret.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<Vec<u8>, SealError> {
        check_len(sealed)?;
        let mut buf = vec![0u8; sealed.len() * 3 / 4 + 3];
        let (plain, _) = self.open_buf(purpose, sealed, &mut buf)?;
        buf.copy_within(plain.clone(), 0);
        buf.truncate(plain.len());
        Ok(buf)
    }

    /// Opens into a caller-provided buffer, without allocating: the hot
    /// path uses a stack buffer sized for the session ticket. A value that
    /// does not fit in `buf` is [`SealError::TooLarge`]. The flag is true
    /// when a previous secret opened it: the value should be re-issued
    /// under the current one.
    pub(crate) fn open_in_place<'b>(
        &self,
        purpose: Purpose,
        sealed: &str,
        buf: &'b mut [u8],
    ) -> Result<(&'b [u8], bool), SealError> {
        check_len(sealed)?;
        let (plain, key) = self.open_buf(purpose, sealed, buf)?;
        Ok((&buf[plain], key > 0))
    }

    /// Decodes into `buf` and decrypts in place; returns where the
    /// plaintext lies in `buf` and which key opened it (0: the current).
    fn open_buf(
        &self,
        purpose: Purpose,
        sealed: &str,
        buf: &mut [u8],
    ) -> Result<(Range<usize>, usize), SealError> {
        let len = URL_SAFE_NO_PAD
            .decode_slice(sealed, buf)
            .map_err(|e| match e {
                base64::DecodeSliceError::OutputSliceTooSmall => SealError::TooLarge,
                base64::DecodeSliceError::DecodeError(_) => SealError::Encoding,
            })?;
        if len < MIN_SEALED_LEN {
            return Err(SealError::Truncated);
        }
        if buf[0] != VERSION {
            return Err(SealError::Version(buf[0]));
        }
        let nonce = *XNonce::from_slice(&buf[1..HEADER_LEN]);
        let tag = *Tag::from_slice(&buf[len - TAG_LEN..len]);
        let body = HEADER_LEN..len - TAG_LEN;
        // A failed attempt leaves the buffer untouched (the tag is checked
        // before decrypting), so the next key sees the original ciphertext.
        for (index, keys) in self.keys.iter().enumerate() {
            if keys
                .cipher(purpose)
                .decrypt_in_place_detached(&nonce, &[VERSION], &mut buf[body.clone()], &tag)
                .is_ok()
            {
                return Ok((body, index));
            }
        }
        Err(SealError::Forged)
    }
}

fn check_len(sealed: &str) -> Result<(), SealError> {
    if sealed.len() > MAX_SEALED_LEN {
        Err(SealError::TooLarge)
    } else {
        Ok(())
    }
}

/// Length of the encoded form of a `plaintext_len`-byte message.
pub(crate) const fn sealed_len(plaintext_len: usize) -> usize {
    let raw = MIN_SEALED_LEN + plaintext_len;
    (raw * 4).div_ceil(3)
}

#[cold]
#[allow(clippy::panic)] // a bound no caller can reach; see the comment
fn unreachable_tag() -> ! {
    // Reached only for a message longer than the cipher's 256 GiB limit,
    // which no caller can build.
    panic!("XChaCha20-Poly1305 refused to seal a message")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn secret(byte: u8) -> Secret {
        Secret::new(vec![byte; SECRET_LEN])
    }

    fn sealer() -> Sealer {
        Sealer::new(&secret(1), &[]).unwrap()
    }

    fn raw(sealed: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(sealed).unwrap()
    }

    /// What is sealed opens to the same bytes, empty messages included, and
    /// two seals of one message differ (random nonce).
    #[test]
    fn roundtrip() {
        let s = sealer();
        for msg in [&b""[..], b"x", &[0xff; 1000]] {
            let sealed = s.seal(Purpose::SessionCookie, msg);
            assert_eq!(sealed.len(), sealed_len(msg.len()));
            assert_eq!(s.open(Purpose::SessionCookie, &sealed).unwrap(), msg);
        }
        assert_ne!(
            s.seal(Purpose::LoginState, b"same"),
            s.seal(Purpose::LoginState, b"same")
        );
    }

    /// The output is unpadded base64url: safe in a cookie without quoting.
    #[test]
    fn output_is_cookie_safe() {
        let sealed = sealer().seal(Purpose::SessionCookie, &[0xfb; 100]);
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{sealed}"
        );
    }

    /// Flipping a bit anywhere — version, nonce, ciphertext, tag — is caught.
    #[test]
    fn tamper_anywhere_is_refused() {
        let s = sealer();
        let sealed = raw(&s.seal(Purpose::SessionCookie, b"0123456789abcdef"));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = s
                .open(Purpose::SessionCookie, &URL_SAFE_NO_PAD.encode(&bad))
                .unwrap_err();
            let expected = if i == 0 {
                SealError::Version(VERSION ^ 1)
            } else {
                SealError::Forged
            };
            assert_eq!(err, expected, "byte {i}");
        }
    }

    /// Every truncation is refused: short ones as truncated, the rest as
    /// forged; none panics.
    #[test]
    fn truncation_is_refused() {
        let s = sealer();
        let sealed = raw(&s.seal(Purpose::SessionCookie, b"0123456789abcdef"));
        for len in 0..sealed.len() {
            let cut = URL_SAFE_NO_PAD.encode(&sealed[..len]);
            let err = s.open(Purpose::SessionCookie, &cut).unwrap_err();
            if len < MIN_SEALED_LEN {
                assert_eq!(err, SealError::Truncated, "len {len}");
            } else {
                assert_eq!(err, SealError::Forged, "len {len}");
            }
        }
    }

    /// A value sealed for one purpose never opens as another.
    #[test]
    fn purposes_are_separate() {
        let s = sealer();
        for sealed_for in Purpose::ALL {
            let sealed = s.seal(sealed_for, b"state");
            for opened_as in Purpose::ALL {
                let opened = s.open(opened_as, &sealed);
                if opened_as == sealed_for {
                    assert_eq!(opened.unwrap(), b"state");
                } else {
                    assert_eq!(
                        opened,
                        Err(SealError::Forged),
                        "{sealed_for:?} as {opened_as:?}"
                    );
                }
            }
        }
    }

    /// A value sealed under another secret is refused.
    #[test]
    fn wrong_secret_is_refused() {
        let sealed = Sealer::new(&secret(2), &[])
            .unwrap()
            .seal(Purpose::SessionCookie, b"m");
        assert_eq!(
            sealer().open(Purpose::SessionCookie, &sealed),
            Err(SealError::Forged)
        );
    }

    /// Rotation: after `cookie_secret` moves to `previous_cookie_secrets`,
    /// old values still open and new ones are sealed with the new secret
    /// (the old sealer cannot open them).
    #[test]
    fn rotation() {
        let old = sealer();
        let rotated = Sealer::new(&secret(2), &[secret(3), secret(1)]).unwrap();
        let before = old.seal(Purpose::SessionCookie, b"before");
        assert_eq!(
            rotated.open(Purpose::SessionCookie, &before).unwrap(),
            b"before"
        );
        let after = rotated.seal(Purpose::SessionCookie, b"after");
        assert_eq!(
            old.open(Purpose::SessionCookie, &after),
            Err(SealError::Forged)
        );
        let unrelated = Sealer::new(&secret(9), &[]).unwrap();
        let foreign = unrelated.seal(Purpose::SessionCookie, b"x");
        assert_eq!(
            rotated.open(Purpose::SessionCookie, &foreign),
            Err(SealError::Forged)
        );
    }

    /// `open_in_place` says which values a previous secret opened (to be
    /// re-issued) and which the current one did.
    #[test]
    fn open_in_place_flags_previous_secrets() {
        let rotated = Sealer::new(&secret(2), &[secret(3), secret(1)]).unwrap();
        let mut buf = [0u8; 64];
        for (sealer, stale) in [
            (sealer(), true),
            (Sealer::new(&secret(3), &[]).unwrap(), true),
        ] {
            let value = sealer.seal(Purpose::SessionCookie, b"m");
            let (plain, flag) = rotated
                .open_in_place(Purpose::SessionCookie, &value, &mut buf)
                .unwrap();
            assert_eq!((plain, flag), (&b"m"[..], stale));
        }
        let fresh = rotated.seal(Purpose::SessionCookie, b"m");
        let (_, flag) = rotated
            .open_in_place(Purpose::SessionCookie, &fresh, &mut buf)
            .unwrap();
        assert!(!flag, "the current secret opened it");
    }

    /// An unknown version byte is reported as such, even with a valid tag
    /// for the rest.
    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = raw(&sealer().seal(Purpose::SessionCookie, b"m"));
        bytes[0] = 2;
        assert_eq!(
            sealer().open(Purpose::SessionCookie, &URL_SAFE_NO_PAD.encode(&bytes)),
            Err(SealError::Version(2))
        );
    }

    /// Padding, the standard alphabet, whitespace, non-ASCII and
    /// non-canonical trailing bits are not our encoding.
    #[test]
    fn bad_base64_is_refused() {
        let s = sealer();
        let good = s.seal(Purpose::SessionCookie, b"0123456789abcdef");
        let cases = [
            format!("{good}="),
            good.replace('-', "+").replace('_', "/") + "+",
            format!(" {good}"),
            format!("{good}é"),
            "a".to_owned(),
            "%%%%".to_owned(),
        ];
        for case in cases {
            assert!(
                matches!(
                    s.open(Purpose::SessionCookie, &case),
                    Err(SealError::Encoding | SealError::Truncated)
                ),
                "{case:?}"
            );
        }
        assert_eq!(
            s.open(Purpose::SessionCookie, ""),
            Err(SealError::Truncated)
        );
    }

    /// Anything longer than a cookie can be is refused before decoding.
    #[test]
    fn oversized_is_refused() {
        let s = sealer();
        let big = "A".repeat(MAX_SEALED_LEN + 1);
        assert_eq!(
            s.open(Purpose::SessionCookie, &big),
            Err(SealError::TooLarge)
        );
        let mut small = [0u8; 16];
        let sealed = s.seal(Purpose::SessionCookie, &[0u8; 64]);
        assert_eq!(
            s.open_in_place(Purpose::SessionCookie, &sealed, &mut small),
            Err(SealError::TooLarge)
        );
        let mut buf = [0u8; 128];
        assert_eq!(
            s.open_in_place(Purpose::SessionCookie, &sealed, &mut buf)
                .unwrap(),
            (&[0u8; 64][..], false)
        );
    }

    /// Secrets must be 32 bytes; the error names which one and its length,
    /// never its value.
    #[test]
    fn secret_length_is_checked() {
        let short = Secret::new(b"hunter2-hunter2".to_vec());
        let err = Sealer::new(&short, &[]).unwrap_err();
        assert_eq!(err.to_string(), "cookie_secret must be 32 bytes, got 15");
        let err = Sealer::new(&secret(1), &[secret(2), short]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "previous_cookie_secrets[1] must be 32 bytes, got 15"
        );
        assert!(!err.to_string().contains("hunter2"));
    }

    /// Debug shows no key material.
    #[test]
    fn debug_has_no_secrets() {
        let s = Sealer::new(&Secret::new(*b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), &[]).unwrap();
        let debug = format!("{s:?}");
        assert_eq!(debug, "Sealer { previous_secrets: 0, .. }");
    }
}
