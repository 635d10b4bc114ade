//! The session store: bytes in, bytes out, with a time to live.
//!
//! Stores know nothing of cookies or encryption — the [`Sessions`]
//! manager seals records before they get here (oauth2-proxy's two layers) —
//! so a backend is a small key-value adapter, checked by one conformance
//! suite.
//!
//! [`Sessions`]: super::Sessions

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

/// Prefix of every session key, so a shared Redis can hold other data.
pub const KEY_PREFIX: &str = "authgate:session:";

/// One entry of a user's session index, as a store returns it: the session
/// id (lowercase hex, as in its [`store_key`]) and the metadata saved with
/// it.
pub type IndexEntry = (String, Vec<u8>);

/// The future a [`SessionStore`] method returns: boxed, so the trait stays
/// object-safe (`Arc<dyn SessionStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why the store could not answer. Every variant means "unreachable or
/// broken": the caller fails closed (503), it never treats it as "no
/// session".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A backend this build cannot use yet.
    #[error("session store {0} is not supported yet; use `memory` or `embedded:/path`")]
    Unsupported(&'static str),
    /// The backing file or server could not be opened at startup.
    #[error("cannot open the session store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store URL does not say how to reach a server. The message never
    /// repeats the URL (it may carry a password).
    #[error("invalid session store URL: {0}")]
    InvalidUrl(String),
    /// A read or write failed.
    #[error("session store operation failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a shared store reports about sessions changed by any replica, so
/// each replica drops its cached copy (see [`SessionStore::watch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChange {
    /// The entry under this key was deleted or replaced.
    Changed(String),
    /// The feed was (re)connected and changes may have been missed:
    /// forget everything cached.
    Resync,
}

/// Receives [`StoreChange`]s; the feed stops when this is dropped.
pub type ChangeFeed = tokio::sync::mpsc::Receiver<StoreChange>;

impl StoreError {
    pub(crate) fn backend(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Box::new(err))
    }
}

/// [`SessionStore::compare_and_swap`]'s test: absent where absence is
/// expected, or a value that starts with the expected prefix.
pub(crate) fn matches_expected(current: Option<&[u8]>, expected: Option<&[u8]>) -> bool {
    match (current, expected) {
        (None, None) => true,
        (Some(current), Some(prefix)) => current.starts_with(prefix),
        _ => false,
    }
}

/// A key-value store with expiry, shared by every request.
///
/// Keys are [`store_key`]s; values are opaque sealed bytes. A TTL is a
/// duration from now by the store's clock (the injected clock for the local
/// stores, rounded up to whole seconds; the server's for Redis, to the
/// millisecond): an entry never expires before its TTL, and one whose TTL
/// has run out is absent for every method, whether or not the backend has
/// purged it yet. A zero TTL writes an entry that is already gone.
pub trait SessionStore: Send + Sync + 'static {
    /// The value under `key`, or `None` if absent or expired.
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Writes `value` under `key`, replacing any previous value and TTL.
    fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()>;

    /// Removes `key`; removing an absent key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Writes `new` (with `ttl`) only if the current value starts with
    /// `expected` ([`matches_expected`]), `None` meaning absent or expired.
    /// `Ok(true)` if it wrote, `Ok(false)` if the value had changed. Atomic
    /// with respect to every other method, so concurrent refreshes of one
    /// session cannot both win. A prefix, so a caller whose values begin
    /// with a random nonce (sealed records) need keep only that, not the
    /// whole value.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Whether the store answers (for `/readyz`).
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Adds session `id` to `user`'s index with `meta` (never a secret),
    /// replacing an entry of the same id; the entry lives at least `ttl`,
    /// as a [`save`](SessionStore::save)d value does. `user` is an opaque
    /// token (see `session::user_key`): for Redis Cluster, one user's
    /// entries share one slot.
    fn index_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        meta: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()>;

    /// `user`'s index entries whose TTL has not run out, in no order. The
    /// sessions they name may have ended since: the caller checks.
    fn index_list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<IndexEntry>>;

    /// Removes the entries of `ids` from `user`'s index; absent ones are
    /// not an error.
    fn index_remove<'a>(&'a self, user: &'a str, ids: &'a [String]) -> StoreFuture<'a, ()>;

    /// Every user with an index entry whose TTL has not run out (perhaps
    /// also some whose entries just ran out), in no order.
    fn index_users(&self) -> StoreFuture<'_, Vec<String>>;

    /// For a store shared by several replicas: a feed of the keys that any
    /// replica deleted or replaced (sign-out, refresh), so every replica
    /// drops its cached copy at once instead of after the cache TTL. `None`
    /// (the default) for a store only this process uses. Spawns a task:
    /// call inside the runtime.
    fn watch(&self) -> Option<ChangeFeed> {
        None
    }
}

/// The store key of a session id: the prefix and the id in lowercase hex.
pub fn store_key(id: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(KEY_PREFIX.len() + 32);
    key.push_str(KEY_PREFIX);
    for byte in id {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    key
}

/// The session id named by a [`store_key`], if `key` is one.
pub fn parse_store_key(key: &str) -> Option<[u8; 16]> {
    let hex = key.strip_prefix(KEY_PREFIX)?.as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut id = [0u8; 16];
    for (byte, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(id)
}

/// The absolute expiry of an entry written at `now` with `ttl`: whole
/// seconds, rounded up so an entry never outlives less than asked.
pub(crate) fn expiry(now: i64, ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Keys are the documented prefix plus 32 lowercase hex digits.
    #[test]
    fn store_key_format() {
        let mut id = [0u8; 16];
        id[0] = 0xAB;
        id[15] = 0x01;
        assert_eq!(
            store_key(&id),
            "authgate:session:ab000000000000000000000000000001"
        );
    }

    /// A TTL with a fraction of a second is rounded up, never down.
    #[test]
    fn expiry_rounds_up() {
        assert_eq!(expiry(100, Duration::from_secs(10)), 110);
        assert_eq!(expiry(100, Duration::from_millis(10_001)), 111);
        assert_eq!(expiry(100, Duration::ZERO), 100);
        assert_eq!(expiry(100, Duration::MAX), i64::MAX);
    }

    /// Ids round-trip through their key; anything else is not a key.
    #[test]
    fn parse_store_key_round_trips() {
        let id: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        assert_eq!(parse_store_key(&store_key(&id)), Some(id));
        let key = store_key(&id);
        for bad in [
            "",
            KEY_PREFIX,
            &key[..key.len() - 1],
            &key.to_uppercase(),
            &format!("{key}0"),
            &key.replace(KEY_PREFIX, "other:"),
        ] {
            assert_eq!(parse_store_key(bad), None, "{bad}");
        }
    }
}
