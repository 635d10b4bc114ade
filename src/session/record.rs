//! The session record: what the store keeps for one session, sealed with the
//! session's own key (from the cookie) so the store never holds anything
//! readable.
//!
//! Stored bytes: `version (1) || nonce (24) || ciphertext || tag (16)`, with
//! `version || session id` as associated data, so a record copied under
//! another id does not open.

use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, RenderedHeaders};

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 24;
const TAG_LEN: usize = 16;

/// What names one sealed record among every other: its leading bytes, the
/// version and the random nonce every seal draws anew. Compare-and-swap
/// expects these (a prefix) instead of the whole value, so a cached
/// session need not keep its sealed bytes.
#[derive(Clone, Copy)]
pub(crate) struct Stamp([u8; HEADER_LEN]);

impl Stamp {
    /// The stamp of `sealed`. Every record that seals or opens is longer
    /// than a stamp; a shorter value would get a zero-padded stamp that it
    /// does not start with, so a swap against it fails (safe: "changed").
    pub(crate) fn of(sealed: &[u8]) -> Stamp {
        let mut stamp = [0; HEADER_LEN];
        let n = sealed.len().min(HEADER_LEN);
        stamp[..n].copy_from_slice(&sealed[..n]);
        Stamp(stamp)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One signed-in session, as the policy and the refresher need it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Who signed in (claims for policy and headers).
    pub identity: Identity,
    /// The provider's refresh token, if it issued one.
    pub refresh_token: Option<String>,
    /// Unix seconds of the login.
    pub created_at: i64,
    /// Unix seconds; always the ticket's absolute expiry.
    pub expires_at: i64,
    /// Unix seconds after which the identity is re-read with the refresh
    /// token.
    pub refresh_due_at: i64,
    /// Unix seconds of the login or of the last successful refresh: how
    /// long a provider outage has kept the identity from being re-checked.
    /// Absent in records written before it existed (then `created_at`).
    #[serde(default)]
    pub refreshed_at: i64,
    /// Unix seconds of the last use seen, for `cookie_idle_timeout`;
    /// written at most once per [`Sessions`](super::Sessions) touch
    /// interval, not per request. Absent in older records (then the login
    /// or last refresh counts).
    #[serde(default)]
    pub last_seen_at: i64,
    /// The login's ID token, for RP-initiated logout's `id_token_hint`.
    /// Absent in older records and for Bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The identity headers, rendered once per cached record; never stored.
    #[serde(skip)]
    pub headers: RenderedHeaders,
}

impl SessionRecord {
    /// When the session was last known to be in use.
    pub fn last_seen(&self) -> i64 {
        self.last_seen_at
            .max(self.refreshed_at)
            .max(self.created_at)
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("identity", &self.identity)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("refresh_due_at", &self.refresh_due_at)
            .field("refreshed_at", &self.refreshed_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a record could not be sealed (a bug of ours, never the user's).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot serialise the session record")]
    Json(#[source] serde_json::Error),
    #[error("cannot encrypt the session record")]
    Cipher,
}

fn aad(id: &[u8; 16]) -> [u8; 17] {
    let mut aad = [0u8; 17];
    aad[0] = VERSION;
    aad[1..].copy_from_slice(id);
    aad
}

impl SessionRecord {
    /// Serialises and seals the record for session `id` under `key`.
    pub(crate) fn seal(&self, id: &[u8; 16], key: &[u8; 32]) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(512);
        buf.push(VERSION);
        let mut nonce = XNonce::default();
        OsRng.fill_bytes(&mut nonce);
        buf.extend_from_slice(&nonce);
        serde_json::to_writer(&mut buf, self).map_err(EncodeError::Json)?;
        let cipher = XChaCha20Poly1305::new(key.into());
        let tag = cipher
            .encrypt_in_place_detached(&nonce, &aad(id), &mut buf[HEADER_LEN..])
            .map_err(|_| EncodeError::Cipher)?;
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    /// Opens bytes from the store. `None` if they were not sealed for this
    /// id and key, or do not decode: either way there is no usable session.
    pub(crate) fn open(sealed: &[u8], id: &[u8; 16], key: &[u8; 32]) -> Option<SessionRecord> {
        if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
            return None;
        }
        let nonce = XNonce::from_slice(&sealed[1..HEADER_LEN]);
        let tag = Tag::from_slice(&sealed[sealed.len() - TAG_LEN..]);
        let mut body = sealed[HEADER_LEN..sealed.len() - TAG_LEN].to_vec();
        let cipher = XChaCha20Poly1305::new(key.into());
        cipher
            .decrypt_in_place_detached(nonce, &aad(id), &mut body, tag)
            .ok()?;
        serde_json::from_slice(&body).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            identity: Identity {
                subject: "CiQwOGE4Njg0Yi1kYjg4".into(),
                email: Some("kilgore@example.com".into()),
                groups: vec!["admins".into(), "ops".into()],
                ..Identity::default()
            },
            refresh_token: Some("rt-super-secret-value".into()),
            created_at: 100,
            expires_at: 200,
            refresh_due_at: 150,
            refreshed_at: 100,
            last_seen_at: 120,
            id_token: Some("id-token-secret".into()),
            headers: Default::default(),
        }
    }

    /// A sealed record opens with its id and key, and with nothing else.
    #[test]
    fn seal_open_binds_id_and_key() {
        let (id, key) = ([7u8; 16], [9u8; 32]);
        let sealed = record().seal(&id, &key).unwrap();
        assert_eq!(SessionRecord::open(&sealed, &id, &key), Some(record()));
        assert_eq!(SessionRecord::open(&sealed, &[8u8; 16], &key), None);
        assert_eq!(SessionRecord::open(&sealed, &id, &[1u8; 32]), None);
        for i in [0, 5, 30, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(SessionRecord::open(&bad, &id, &key), None, "byte {i}");
        }
        assert_eq!(SessionRecord::open(&sealed[..40], &id, &key), None);
        assert_eq!(SessionRecord::open(&[], &id, &key), None);
    }

    /// The store sees neither the claims nor the refresh token.
    #[test]
    fn sealed_bytes_are_unreadable() {
        let sealed = record().seal(&[7u8; 16], &[9u8; 32]).unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("kilgore"));
        assert!(!text.contains("rt-super-secret"));
    }

    /// A record sealed before `refreshed_at` existed still opens (a
    /// restart onto the new version logs nobody out); the field reads 0.
    #[test]
    fn old_records_open() {
        let (id, key) = ([7u8; 16], [9u8; 32]);
        let mut json = serde_json::to_value(record()).unwrap();
        let fields = json.as_object_mut().unwrap();
        fields.remove("refreshed_at");
        fields.remove("last_seen_at");
        // Seal the old shape by hand, as the previous version did.
        let mut buf = vec![VERSION];
        let mut nonce = XNonce::default();
        OsRng.fill_bytes(&mut nonce);
        buf.extend_from_slice(&nonce);
        serde_json::to_writer(&mut buf, &json).unwrap();
        let tag = XChaCha20Poly1305::new((&key).into())
            .encrypt_in_place_detached(&nonce, &aad(&id), &mut buf[HEADER_LEN..])
            .unwrap();
        buf.extend_from_slice(&tag);
        let opened = SessionRecord::open(&buf, &id, &key).unwrap();
        assert_eq!(opened.refreshed_at, 0);
        assert_eq!(opened.last_seen_at, 0);
        assert_eq!(opened.last_seen(), opened.created_at);
        assert_eq!(opened.identity, record().identity);
    }

    /// Debug says whether a refresh token exists, never what it is.
    #[test]
    fn debug_redacts_refresh_token() {
        let debug = format!("{:?}", record());
        assert!(!debug.contains("rt-super-secret-value"), "{debug}");
        assert!(debug.contains("<redacted>"));
        assert!(debug.contains("kilgore@example.com"));
    }
}
