//! The in-memory store: for `authgate demo` and tests. Lost on restart and
//! not shared between replicas.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::SharedClock;

use super::store::{IndexEntry, SessionStore, StoreError, StoreFuture, expiry, matches_expected};

/// How often (clock seconds) a write also sweeps out every expired entry.
/// Reads drop the expired entry they meet; the sweep bounds the memory held
/// by sessions nobody comes back for.
const SWEEP_INTERVAL: i64 = 60;

/// A `HashMap` behind a mutex; expiry judged by the injected clock.
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    /// The per-user session index: user → session id → metadata.
    index: Mutex<HashMap<String, HashMap<String, Entry>>>,
    clock: SharedClock,
    last_sweep: AtomicI64,
}

struct Entry {
    value: Vec<u8>,
    expires_at: i64,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new(clock: SharedClock) -> MemoryStore {
        let now = clock.now();
        MemoryStore {
            entries: Mutex::new(HashMap::new()),
            index: Mutex::new(HashMap::new()),
            clock,
            last_sweep: AtomicI64::new(now),
        }
    }

    /// Entries currently held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A poisoned lock only means another thread panicked mid-operation;
    /// each operation leaves the map consistent, so keep serving.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_index(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, Entry>>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live value under `key`, dropping it if expired.
    fn live<'m>(map: &'m mut HashMap<String, Entry>, key: &str, now: i64) -> Option<&'m Entry> {
        if map.get(key).is_some_and(|e| now >= e.expires_at) {
            map.remove(key);
        }
        map.get(key)
    }

    fn write(&self, map: &mut HashMap<String, Entry>, key: &str, value: &[u8], ttl: Duration) {
        let now = self.clock.now();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_INTERVAL {
            self.last_sweep.store(now, Ordering::Relaxed);
            map.retain(|_, e| now < e.expires_at);
        }
        map.insert(
            key.to_owned(),
            Entry {
                value: value.to_vec(),
                expires_at: expiry(now, ttl),
            },
        );
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let now = self.clock.now();
        let value = Self::live(&mut self.lock(), key, now).map(|e| e.value.clone());
        Box::pin(async move { Ok(value) })
    }

    fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        self.write(&mut self.lock(), key, value, ttl);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.lock().remove(key);
        Box::pin(async { Ok(()) })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let now = self.clock.now();
        let mut map = self.lock();
        let current = Self::live(&mut map, key, now).map(|e| e.value.as_slice());
        let swapped = matches_expected(current, expected);
        if swapped {
            self.write(&mut map, key, new, ttl);
        }
        drop(map);
        Box::pin(async move { Ok::<bool, StoreError>(swapped) })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn index_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        meta: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let now = self.clock.now();
        let mut index = self.lock_index();
        let entries = index.entry(user.to_owned()).or_default();
        entries.retain(|_, e| now < e.expires_at);
        entries.insert(
            id.to_owned(),
            Entry {
                value: meta.to_vec(),
                expires_at: expiry(now, ttl),
            },
        );
        drop(index);
        Box::pin(async { Ok(()) })
    }

    fn index_list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<IndexEntry>> {
        let now = self.clock.now();
        let mut index = self.lock_index();
        let mut live = Vec::new();
        if let Some(entries) = index.get_mut(user) {
            entries.retain(|_, e| now < e.expires_at);
            live.extend(entries.iter().map(|(id, e)| (id.clone(), e.value.clone())));
            if entries.is_empty() {
                index.remove(user);
            }
        }
        drop(index);
        Box::pin(async { Ok(live) })
    }

    fn index_remove<'a>(&'a self, user: &'a str, ids: &'a [String]) -> StoreFuture<'a, ()> {
        let mut index = self.lock_index();
        if let Some(entries) = index.get_mut(user) {
            for id in ids {
                entries.remove(id);
            }
            if entries.is_empty() {
                index.remove(user);
            }
        }
        drop(index);
        Box::pin(async { Ok(()) })
    }

    fn index_users(&self) -> StoreFuture<'_, Vec<String>> {
        let now = self.clock.now();
        let mut index = self.lock_index();
        index.retain(|_, entries| {
            entries.retain(|_, e| now < e.expires_at);
            !entries.is_empty()
        });
        let users = index.keys().cloned().collect();
        drop(index);
        Box::pin(async { Ok(users) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::session::conformance;

    /// The memory store passes the shared store conformance suite.
    #[tokio::test]
    async fn conformance() {
        let clock = ManualClock::new(1_000_000);
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        conformance::run_all(store, &clock).await;
    }

    /// Entries nobody reads again are swept out by a later write, so
    /// abandoned sessions do not pile up.
    #[tokio::test]
    async fn expired_entries_are_swept_on_write() {
        let clock = ManualClock::new(1_000);
        let store = MemoryStore::new(Arc::new(clock.clone()));
        for i in 0..10 {
            store
                .save(&format!("k{i}"), b"v", Duration::from_secs(30))
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 10);
        clock.advance(SWEEP_INTERVAL);
        store
            .save("fresh", b"v", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(store.len(), 1);
    }
}
