//! The embedded store (`embedded:/path`, the default): one redb file on
//! local disk. Survives restarts — a redeploy logs nobody out — and needs no
//! server, but is not shared between replicas (use Redis for that).
//!
//! redb is synchronous; every call runs on tokio's blocking pool so a slow
//! disk never stalls the request workers. Each value is stored as
//! `expires_at (i64, big-endian) || sealed bytes`; expired entries read as
//! absent and a write sweeps them out at most once a minute.
//!
//! A failed write (disk full, I/O error) makes redb refuse every later
//! operation on that handle (`PreviousIo`) until the file is reopened, so
//! the store drops the handle and reopens the file on the next operation:
//! meanwhile operations fail (503, fail closed), and once space is back the
//! store works again without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, Table, TableDefinition};

use crate::clock::SharedClock;

use super::store::{IndexEntry, SessionStore, StoreError, StoreFuture, expiry};

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions_v1");
/// The per-user session index: `user/id` → expiry and metadata, stored as
/// the sessions are.
const INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("user_sessions_v1");
/// Clock seconds between two sweeps of expired entries.
const SWEEP_INTERVAL: i64 = 60;
/// Page cache. Records are about 1 KiB and read through the in-process
/// session cache, so the store is read only on a cache miss; redb's 1 GiB
/// default (and even 64 MiB) would dominate the process's memory at 100k
/// sessions (see BENCHMARKS.md, "Sessions").
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// A redb-backed [`SessionStore`].
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` once an I/O error poisoned the handle: the next operation
    /// reopens the file.
    db: RwLock<Option<Arc<Database>>>,
    clock: SharedClock,
    last_sweep: AtomicI64,
    path: PathBuf,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the file, creating missing parent directories.
    /// Blocking: call at startup. The file's integrity is checked on open,
    /// so a damaged file is an error here rather than a panic later.
    pub fn open(path: &Path, clock: SharedClock) -> Result<EmbeddedStore, StoreError> {
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.into()))?;
        }
        let db = open_database(path).map_err(|e| open_err(e.into()))?;
        let inner = Inner {
            db: RwLock::new(Some(Arc::new(db))),
            last_sweep: AtomicI64::new(i64::MIN),
            clock,
            path: path.to_owned(),
        };
        // Creates the tables (the first write sweeps, which opens both, so
        // reads never meet a missing one) and sweeps what expired while we
        // were down.
        inner.write(|_, _| Ok(())).map_err(|e| open_err(e.into()))?;
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
        })
    }

    /// Runs `op` on the blocking pool.
    fn blocking<T, F>(&self, op: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, redb::Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || op(&inner))
                .await
                .map_err(StoreError::backend)?
                .map_err(StoreError::backend)
        })
    }
}

/// Opens (or creates) the redb file, checking its integrity.
fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .create(path)
}

/// `Some(payload)` if `stored` is live at `now`.
fn live(stored: &[u8], now: i64) -> Option<&[u8]> {
    let (expires_at, payload) = stored.split_first_chunk::<8>()?;
    (now < i64::from_be_bytes(*expires_at)).then_some(payload)
}

fn encode(value: &[u8], expires_at: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(value);
    out
}

impl Inner {
    /// The open handle, reopening the file if an I/O error dropped it. The
    /// reopen fails while an operation still holds the old handle (redb
    /// locks the file); the next operation tries again.
    fn database(&self) -> Result<Arc<Database>, redb::Error> {
        if let Some(db) = self
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Ok(db.clone());
        }
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = Arc::new(open_database(&self.path)?);
        tracing::warn!(path = %self.path.display(), "session store reopened after an I/O error");
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Runs `op` on the open handle; an I/O error drops the handle, as
    /// redb fails every later operation on it.
    fn with_db<T>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let db = self.database()?;
        let result = op(&db);
        if let Err(error @ (redb::Error::Io(_) | redb::Error::PreviousIo)) = &result {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if slot
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &db))
            {
                tracing::error!(
                    path = %self.path.display(),
                    %error,
                    "session store write failed (disk full or read-only?); reopening the file on next use"
                );
                *slot = None;
            }
        }
        result
    }

    /// One write transaction on the sessions table, preceded by a sweep if
    /// one is due.
    fn write<T>(
        &self,
        op: impl FnOnce(&mut Table<'_, &'static str, &'static [u8]>, i64) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        self.with_db(|db| self.write_on(db, SESSIONS, op))
    }

    /// The same on the index table.
    fn write_index<T>(
        &self,
        op: impl FnOnce(&mut Table<'_, &'static str, &'static [u8]>, i64) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        self.with_db(|db| self.write_on(db, INDEX, op))
    }

    fn write_on<T>(
        &self,
        db: &Database,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        op: impl FnOnce(&mut Table<'_, &'static str, &'static [u8]>, i64) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let now = self.clock.now();
        let txn = db.begin_write()?;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_INTERVAL {
            for swept in [SESSIONS, INDEX] {
                txn.open_table(swept)?
                    .retain(|_, stored| live(stored, now).is_some())?;
            }
            self.last_sweep.store(now, Ordering::Relaxed);
        }
        let result = op(&mut txn.open_table(table)?, now)?;
        txn.commit()?;
        Ok(result)
    }

    /// The live entries of the index table whose keys start with `prefix`.
    fn index_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
        self.with_db(|db| {
            let now = self.clock.now();
            let txn = db.begin_read()?;
            let table = txn.open_table(INDEX)?;
            let mut found = Vec::new();
            for item in table.range(prefix..)? {
                let (key, value) = item?;
                let Some(rest) = key.value().strip_prefix(prefix) else {
                    break;
                };
                if let Some(meta) = live(value.value(), now) {
                    found.push((rest.to_owned(), meta.to_vec()));
                }
            }
            Ok(found)
        })
    }
}

/// The index table's key of session `id` in `user`'s index.
fn index_key(user: &str, id: &str) -> String {
    format!("{user}/{id}")
}

impl SessionStore for EmbeddedStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.with_db(|db| {
                let now = inner.clock.now();
                let txn = db.begin_read()?;
                let table = txn.open_table(SESSIONS)?;
                let value = table.get(key.as_str())?;
                Ok(value.and_then(|v| live(v.value(), now).map(<[u8]>::to_vec)))
            })
        })
    }

    fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        let key = key.to_owned();
        let value = value.to_vec();
        self.blocking(move |inner| {
            inner.write(|table, now| {
                table.insert(key.as_str(), encode(&value, expiry(now, ttl)).as_slice())?;
                Ok(())
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.write(|table, _| {
                table.remove(key.as_str())?;
                Ok(())
            })
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let key = key.to_owned();
        let expected = expected.map(<[u8]>::to_vec);
        let new = new.to_vec();
        // redb serialises write transactions, so the read and the insert
        // below are atomic with respect to every other writer.
        self.blocking(move |inner| {
            inner.write(|table, now| {
                let matches = {
                    let current = table.get(key.as_str())?;
                    current.as_ref().and_then(|v| live(v.value(), now)) == expected.as_deref()
                };
                if matches {
                    table.insert(key.as_str(), encode(&new, expiry(now, ttl)).as_slice())?;
                }
                Ok(matches)
            })
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.blocking(|inner| {
            inner.with_db(|db| {
                let txn = db.begin_read()?;
                txn.open_table(SESSIONS)?;
                Ok(())
            })
        })
    }

    fn index_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        meta: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let key = index_key(user, id);
        let meta = meta.to_vec();
        self.blocking(move |inner| {
            inner.write_index(|table, now| {
                table.insert(key.as_str(), encode(&meta, expiry(now, ttl)).as_slice())?;
                Ok(())
            })
        })
    }

    fn index_list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<IndexEntry>> {
        let prefix = index_key(user, "");
        self.blocking(move |inner| inner.index_scan(&prefix))
    }

    fn index_remove<'a>(&'a self, user: &'a str, ids: &'a [String]) -> StoreFuture<'a, ()> {
        let keys: Vec<String> = ids.iter().map(|id| index_key(user, id)).collect();
        self.blocking(move |inner| {
            inner.write_index(|table, _| {
                for key in &keys {
                    table.remove(key.as_str())?;
                }
                Ok(())
            })
        })
    }

    fn index_users(&self) -> StoreFuture<'_, Vec<String>> {
        self.blocking(|inner| {
            let mut users: Vec<String> = inner
                .index_scan("")?
                .into_iter()
                .filter_map(|(key, _)| key.split_once('/').map(|(user, _)| user.to_owned()))
                .collect();
            users.dedup();
            Ok(users)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use redb::ReadableTableMetadata as _;

    use crate::clock::ManualClock;
    use crate::session::conformance;

    /// The embedded store passes the shared store conformance suite.
    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), Arc::new(clock.clone())).unwrap();
        conformance::run_all(Arc::new(store), &clock).await;
    }

    /// A restart logs nobody out: what was saved is there after reopening
    /// the same file, and its TTL still holds.
    #[tokio::test]
    async fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        let clock = ManualClock::new(1_000);
        {
            let store = EmbeddedStore::open(&path, Arc::new(clock.clone())).unwrap();
            store
                .save("a", b"alpha", Duration::from_secs(100))
                .await
                .unwrap();
            store
                .save("b", b"beta", Duration::from_secs(10))
                .await
                .unwrap();
        }
        clock.advance(50);
        let store = EmbeddedStore::open(&path, Arc::new(clock.clone())).unwrap();
        assert_eq!(
            store.load("a").await.unwrap().as_deref(),
            Some(&b"alpha"[..])
        );
        assert_eq!(store.load("b").await.unwrap(), None);
        clock.advance(50);
        assert_eq!(store.load("a").await.unwrap(), None);
    }

    /// Expired entries are removed from the file by a later write, not only
    /// hidden, so the file does not grow with abandoned sessions.
    #[tokio::test]
    async fn sweep_removes_expired_entries() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), Arc::new(clock.clone())).unwrap();
        for i in 0..5 {
            let key = format!("k{i}");
            store
                .save(&key, b"v", Duration::from_secs(10))
                .await
                .unwrap();
        }
        clock.advance(SWEEP_INTERVAL);
        store
            .save("fresh", b"v", Duration::from_secs(10))
            .await
            .unwrap();
        let txn = store.inner.database().unwrap().begin_read().unwrap();
        let table = txn.open_table(SESSIONS).unwrap();
        assert_eq!(table.len().unwrap(), 1);
    }

    /// A file that is not a redb database is an error at startup, with the
    /// path in the message, not a panic.
    #[test]
    fn garbage_file_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = EmbeddedStore::open(&path, Arc::new(ManualClock::new(0))).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }));
        assert!(err.to_string().contains("s.redb"), "{err}");
    }
}
