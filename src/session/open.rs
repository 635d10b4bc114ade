//! Opening the configured session store: the one place that knows every
//! backend, so the store trait's file knows none of them.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::SessionStoreConfig;

use super::embedded::EmbeddedStore;
use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::store::{SessionStore, StoreError};

/// Opens the configured store. Blocking (the embedded store opens its file):
/// call it at startup, before serving. Redis is connected lazily, on first
/// use, so a Redis that is down at startup only makes `/readyz` say so.
pub fn open_store(
    cfg: &SessionStoreConfig,
    clock: SharedClock,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    match cfg {
        SessionStoreConfig::Memory => Ok(Arc::new(MemoryStore::new(clock))),
        SessionStoreConfig::Embedded(path) => Ok(Arc::new(EmbeddedStore::open(path, clock)?)),
        SessionStoreConfig::Redis(url) => Ok(Arc::new(RedisStore::open(url)?)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::ManualClock;

    /// A bad Redis URL is refused at startup with a message that never
    /// echoes the URL (which may contain a password).
    #[tokio::test]
    async fn bad_redis_url_does_not_leak_the_password() {
        let cfg = SessionStoreConfig::Redis("redis+sentinel://:hunter2@s1:26379".into());
        let err = open_store(&cfg, Arc::new(ManualClock::new(0)))
            .err()
            .expect("a sentinel URL without a master name must be refused");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{msg}");
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
