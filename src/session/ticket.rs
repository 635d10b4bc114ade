//! The session ticket: what the session cookie holds, sealed with
//! [`Purpose::SessionCookie`](super::Purpose::SessionCookie).
//!
//! Fixed size whatever the identity: the claims live in the store, so a user
//! in 300 groups gets the same ~140-character cookie as one in none.

use std::fmt;

use rand::RngCore as _;
use rand::rngs::OsRng;
use zeroize::Zeroize as _;

/// Encoded length: id (16) + key (32) + issued_at (8) + expires_at (8).
pub(crate) const TICKET_LEN: usize = 16 + 32 + 8 + 8;

/// `{session id, per-session key, issued-at, absolute expiry}`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// Random; names the record in the store.
    pub id: [u8; 16],
    /// Random; seals the record, so the store alone reveals nothing.
    pub key: [u8; 32],
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; the session's absolute end.
    pub expires_at: i64,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Drop for Ticket {
    /// The per-session key opens the session's record: wipe every copy
    /// (the ticket memo's included) when it goes.
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl Ticket {
    /// A fresh ticket with random id and key.
    pub fn generate(issued_at: i64, expires_at: i64) -> Ticket {
        let mut id = [0u8; 16];
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        OsRng.fill_bytes(&mut key);
        Ticket {
            id,
            key,
            issued_at,
            expires_at,
        }
    }

    /// Big-endian, fields in declaration order.
    pub fn encode(&self) -> [u8; TICKET_LEN] {
        let mut out = [0u8; TICKET_LEN];
        out[..16].copy_from_slice(&self.id);
        out[16..48].copy_from_slice(&self.key);
        out[48..56].copy_from_slice(&self.issued_at.to_be_bytes());
        out[56..64].copy_from_slice(&self.expires_at.to_be_bytes());
        out
    }

    /// `None` unless `bytes` is exactly one encoded ticket.
    pub fn decode(bytes: &[u8]) -> Option<Ticket> {
        let bytes: &[u8; TICKET_LEN] = bytes.try_into().ok()?;
        let (id, rest) = bytes.split_first_chunk::<16>()?;
        let (key, rest) = rest.split_first_chunk::<32>()?;
        let (issued_at, rest) = rest.split_first_chunk::<8>()?;
        let (expires_at, _) = rest.split_first_chunk::<8>()?;
        Some(Ticket {
            id: *id,
            key: *key,
            issued_at: i64::from_be_bytes(*issued_at),
            expires_at: i64::from_be_bytes(*expires_at),
        })
    }

    /// Whether the session is over at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout roundtrips and any other length is refused.
    #[test]
    fn encode_decode_roundtrip() {
        let ticket = Ticket::generate(1_000, 2_000);
        let bytes = ticket.encode();
        assert_eq!(Ticket::decode(&bytes), Some(ticket));
        assert_eq!(Ticket::decode(&bytes[..TICKET_LEN - 1]), None);
        assert_eq!(Ticket::decode(&[bytes.as_slice(), &[0]].concat()), None);
    }

    /// Expiry is inclusive of the last second: at `expires_at` it is over.
    #[test]
    fn expiry_boundary() {
        let ticket = Ticket::generate(1_000, 2_000);
        assert!(!ticket.is_expired(1_999));
        assert!(ticket.is_expired(2_000));
    }

    /// Two tickets never share an id or key, and Debug shows neither.
    #[test]
    fn random_and_redacted() {
        let a = Ticket::generate(0, 1);
        let b = Ticket::generate(0, 1);
        assert_ne!(a.id, b.id);
        assert_ne!(a.key, b.key);
        let debug = format!("{a:?}");
        assert!(!debug.contains("key"), "{debug}");
        assert!(!debug.contains("id:"), "{debug}");
    }
}
