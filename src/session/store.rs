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
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::SessionStoreConfig;

use super::embedded::EmbeddedStore;
use super::memory::MemoryStore;

/// Prefix of every session key, so a shared Redis can hold other data.
pub const KEY_PREFIX: &str = "authgate:session:";

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
    #[error("cannot open the session store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A read or write failed.
    #[error("session store operation failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub(crate) fn backend(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Box::new(err))
    }
}

/// A key-value store with expiry, shared by every request.
///
/// Keys are [`store_key`]s; values are opaque sealed bytes. A TTL is a
/// duration from now by the store's clock, rounded up to whole seconds; an
/// entry whose TTL has run out is absent for every method, whether or not
/// the backend has purged it yet. A zero TTL writes an entry that is already
/// gone.
pub trait SessionStore: Send + Sync + 'static {
    /// The value under `key`, or `None` if absent or expired.
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Writes `value` under `key`, replacing any previous value and TTL.
    fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()>;

    /// Removes `key`; removing an absent key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Writes `new` (with `ttl`) only if the current value equals
    /// `expected`, `None` meaning absent or expired. `Ok(true)` if it wrote,
    /// `Ok(false)` if the value had changed. Atomic with respect to every
    /// other method, so concurrent refreshes of one session cannot both win.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Whether the store answers (for `/readyz`).
    fn ping(&self) -> StoreFuture<'_, ()>;
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

/// The absolute expiry of an entry written at `now` with `ttl`: whole
/// seconds, rounded up so an entry never outlives less than asked.
pub(crate) fn expiry(now: i64, ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Opens the configured store. Blocking (the embedded store opens its file):
/// call it at startup, before serving.
pub fn open_store(
    cfg: &SessionStoreConfig,
    clock: SharedClock,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    match cfg {
        SessionStoreConfig::Memory => Ok(Arc::new(MemoryStore::new(clock))),
        SessionStoreConfig::Embedded(path) => Ok(Arc::new(EmbeddedStore::open(path, clock)?)),
        // The URL may carry a password: it is deliberately not in the error.
        SessionStoreConfig::Redis(_) => Err(StoreError::Unsupported("redis")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::ManualClock;

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

    /// Redis is refused with a clear message that never echoes the URL
    /// (which may contain a password).
    #[test]
    fn redis_is_unsupported_without_leaking_the_url() {
        let cfg = SessionStoreConfig::Redis("redis://:hunter2@cache:6379".into());
        let err = open_store(&cfg, Arc::new(ManualClock::new(0)))
            .err()
            .expect("redis must be refused");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Unsupported(_)));
        assert!(msg.contains("redis"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    /// `open_store` builds each supported backend, and they answer a ping.
    #[tokio::test]
    async fn open_store_builds_backends() {
        let clock: SharedClock = Arc::new(ManualClock::new(0));
        let mem = open_store(&SessionStoreConfig::Memory, clock.clone()).unwrap();
        mem.ping().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("sessions.redb");
        let emb = open_store(&SessionStoreConfig::Embedded(path.clone()), clock).unwrap();
        emb.ping().await.unwrap();
        assert!(path.exists());
    }
}
