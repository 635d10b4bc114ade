//! The embedded store (`embedded:/path`, the default): one redb file on
//! local disk. Survives restarts — a redeploy logs nobody out — and needs no
//! server, but is not shared between replicas (use Redis for that).
//!
//! redb is synchronous; every call runs on the store's own two threads
//! ([`FilePool`]) so a slow disk never stalls the request workers. Each
//! value is stored as `expires_at (i64, big-endian) || sealed bytes`;
//! expired entries read as absent, and a write sweeps them out at most once
//! a minute. Each table has an expiry index beside it ([`expiring`]), so a
//! sweep reads only the expired entries, not the whole table, and removes
//! at most [`SWEEP_LIMIT`] per table; a sweep that leaves some goes on with
//! the next write.
//!
//! A failed write (disk full, I/O error) makes redb refuse every later
//! operation on that handle (`PreviousIo`) until the file is reopened, so
//! the store drops the handle and reopens the file on the next operation:
//! meanwhile operations fail (503, fail closed), and once space is back the
//! store works again without a restart.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase as _, TableHandle as _};

use crate::clock::SharedClock;

use super::file_pool::{FILE_THREADS, FilePool};
use super::store::{IndexEntry, SessionStore, StoreError, StoreFuture, expiry, matches_expected};
use expiring::{Expiring, INDEX, SESSIONS, Tables, live};

mod expiring;

/// Clock seconds between two sweeps of expired entries.
const SWEEP_INTERVAL: i64 = 60;
/// The most entries of one table a sweep removes, so the write that
/// carries it does bounded work however many expired at once (a restart
/// after a long stop); the rest go with the next writes.
const SWEEP_LIMIT: usize = 1000;
/// redb's own page cache. The hot sessions are in the in-process session
/// cache, so the store is read on a cache miss, for a random session: at
/// a million sessions the leaves and the B-tree level above them (1.3 GB
/// and ~24 MiB) are far past any cache worth the memory, and the OS page
/// cache holds the file anyway. What earns its place is the levels above
/// (under 1 MiB at a million sessions), read by every lookup. 8 MiB was
/// 8.4 MiB of a 51 MiB heap peak under a cold load (heaptrack), for about
/// one read in three of the lowest branch level; redb's 1 GiB default
/// would dominate the process.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// A redb-backed [`SessionStore`].
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    pool: Arc<FilePool>,
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
    /// Blocking: call at startup. Reads only what opening takes, not every
    /// entry (see [`open_database`]), so start-up does not grow with the
    /// file. A file damaged outside redb is an error here or on the
    /// operation that meets the damage, never a panic out of the store.
    pub fn open(path: &Path, clock: SharedClock) -> Result<EmbeddedStore, StoreError> {
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.into()))?;
        }
        let inner = catch_unwind(AssertUnwindSafe(|| Inner::open(path, clock)))
            .map_err(|_| open_err(DAMAGED.into()))?
            .map_err(|e| open_err(e.into()))?;
        let pool =
            FilePool::start("authgate-store", FILE_THREADS).map_err(|e| open_err(e.into()))?;
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
            pool: Arc::new(pool),
        })
    }

    /// Runs `op` on the store's threads.
    fn blocking<T, F>(&self, op: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, redb::Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let pool = Arc::clone(&self.pool);
        Box::pin(async move {
            pool.run(move || op(&inner))
                .await
                .map_err(StoreError::backend)?
                .map_err(StoreError::backend)
        })
    }
}

/// What a panic of redb's at open means: it trusts a file it closed
/// cleanly, and reads of one damaged since (a disk fault, another writer)
/// may panic.
const DAMAGED: &str = "the file is damaged (redb panicked reading it)";

/// Opens (or creates) the redb file, without redb's full integrity check:
/// that reads every page (13 s with a million sessions and a cold page
/// cache) to turn the panics a file damaged outside redb may cause into
/// errors, which the store does by catching them instead. redb itself
/// verifies and repairs a file that was not closed cleanly (a crash, a
/// kill -9, a power cut), which reads the whole file; a clean file opens
/// at once.
fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path)
}

impl Inner {
    /// Opens the file and creates the tables, so reads never meet a
    /// missing one. A file from before the expiry indexes gets them here,
    /// built once from every entry; a file that has them opens without
    /// reading any entry. The first sweep comes with a write a sweep
    /// interval on (expired entries read as absent meanwhile).
    fn open(path: &Path, clock: SharedClock) -> Result<Inner, redb::Error> {
        let db = open_database(path)?;
        let existing: Vec<String> = db
            .begin_read()?
            .list_tables()?
            .map(|table| table.name().to_owned())
            .collect();
        if ![SESSIONS, INDEX]
            .iter()
            .all(|tables| tables.exist(&existing))
        {
            let txn = db.begin_write()?;
            let mut built = Vec::new();
            for tables in [SESSIONS, INDEX] {
                if let Some(entries) = tables.create(&txn, &existing)? {
                    built.push((tables.name(), entries));
                }
            }
            txn.commit()?;
            for (table, entries) in built {
                tracing::info!(
                    path = %path.display(),
                    table,
                    entries,
                    "session store file predates the expiry index: built it from every entry (once)"
                );
            }
        }
        Ok(Inner {
            db: RwLock::new(Some(Arc::new(db))),
            last_sweep: AtomicI64::new(clock.now()),
            clock,
            path: path.to_owned(),
        })
    }

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
        op: impl FnOnce(&mut Expiring<'_>, i64) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        self.with_db(|db| self.write_on(db, SESSIONS, op))
    }

    /// The same on the index table.
    fn write_index<T>(
        &self,
        op: impl FnOnce(&mut Expiring<'_>, i64) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        self.with_db(|db| self.write_on(db, INDEX, op))
    }

    fn write_on<T>(
        &self,
        db: &Database,
        tables: Tables,
        op: impl FnOnce(&mut Expiring<'_>, i64) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let now = self.clock.now();
        let txn = db.begin_write()?;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_INTERVAL {
            let mut done = true;
            for swept in [SESSIONS, INDEX] {
                done &= swept.open(&txn)?.sweep(now, SWEEP_LIMIT)?;
            }
            // Left some: the next write sweeps on.
            if done {
                self.last_sweep.store(now, Ordering::Relaxed);
            }
        }
        let result = op(&mut tables.open(&txn)?, now)?;
        txn.commit()?;
        Ok(result)
    }

    /// The live entries of the index table whose keys start with `prefix`.
    fn index_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
        self.with_db(|db| {
            let now = self.clock.now();
            let txn = db.begin_read()?;
            let table = txn.open_table(INDEX.entries())?;
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
                let table = txn.open_table(SESSIONS.entries())?;
                let value = table.get(key.as_str())?;
                Ok(value.and_then(|v| live(v.value(), now).map(<[u8]>::to_vec)))
            })
        })
    }

    fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        let key = key.to_owned();
        let value = value.to_vec();
        self.blocking(move |inner| {
            inner.write(|sessions, now| sessions.insert(&key, &value, expiry(now, ttl)))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        let key = key.to_owned();
        self.blocking(move |inner| inner.write(|sessions, _| sessions.remove(&key)))
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
            inner.write(|sessions, now| {
                let matches = {
                    let current = sessions.get(&key)?;
                    let current = current.as_ref().and_then(|v| live(v.value(), now));
                    matches_expected(current, expected.as_deref())
                };
                if matches {
                    sessions.insert(&key, &new, expiry(now, ttl))?;
                }
                Ok(matches)
            })
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.blocking(|inner| {
            inner.with_db(|db| {
                let txn = db.begin_read()?;
                txn.open_table(SESSIONS.entries())?;
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
            inner.write_index(|index, now| index.insert(&key, &meta, expiry(now, ttl)))
        })
    }

    fn index_list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<IndexEntry>> {
        let prefix = index_key(user, "");
        self.blocking(move |inner| inner.index_scan(&prefix))
    }

    fn index_remove<'a>(&'a self, user: &'a str, ids: &'a [String]) -> StoreFuture<'a, ()> {
        let keys: Vec<String> = ids.iter().map(|id| index_key(user, id)).collect();
        self.blocking(move |inner| {
            inner.write_index(|index, _| {
                for key in &keys {
                    index.remove(key)?;
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
    use redb::{ReadableTable as _, ReadableTableMetadata as _};

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
        let table = txn.open_table(SESSIONS.entries()).unwrap();
        assert_eq!(table.len().unwrap(), 1);
    }

    /// The entries of `tables` as (expiry, key), and the rows of its expiry
    /// index, both in order.
    type Contents = (Vec<(i64, String)>, Vec<(i64, String)>);

    fn contents(store: &EmbeddedStore, tables: Tables) -> Contents {
        let txn = store.inner.database().unwrap().begin_read().unwrap();
        let entries = txn.open_table(tables.entries()).unwrap();
        let mut entries: Vec<(i64, String)> = entries
            .iter()
            .unwrap()
            .map(|entry| {
                let (key, stored) = entry.unwrap();
                let at = stored.value().first_chunk::<8>().unwrap();
                (i64::from_be_bytes(*at), key.value().to_owned())
            })
            .collect();
        entries.sort();
        let rows = expiring::rows_of(&txn.open_table(tables.expiry()).unwrap());
        (entries, rows)
    }

    /// The keys of `tables`' entries, after checking that its expiry index
    /// has one row per entry, at the entry's expiry.
    fn keys(store: &EmbeddedStore, tables: Tables) -> Vec<String> {
        let (entries, rows) = contents(store, tables);
        assert_eq!(entries, rows, "the expiry index of {}", tables.name());
        let mut keys: Vec<String> = entries.into_iter().map(|(_, key)| key).collect();
        keys.sort();
        keys
    }

    /// A session renewed before it expired (saved again, or swapped, with
    /// a later expiry) is not swept at its first expiry; the expired ones
    /// are, from both tables, and each index follows its table.
    #[tokio::test]
    async fn sweep_keeps_renewed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), Arc::new(clock.clone())).unwrap();
        let short = Duration::from_secs(10);
        let long = Duration::from_secs(1000);
        for key in ["a", "b", "c", "d"] {
            store.save(key, b"v1", short).await.unwrap();
        }
        store.save("b", b"v2", long).await.unwrap();
        assert!(
            store
                .compare_and_swap("c", Some(b"v1"), b"v2", long)
                .await
                .unwrap()
        );
        store.delete("d").await.unwrap();
        store.index_add("alice", "s1", b"m", short).await.unwrap();
        store.index_add("alice", "s2", b"m", short).await.unwrap();
        store.index_add("alice", "s2", b"m", long).await.unwrap();
        assert_eq!(keys(&store, SESSIONS), ["a", "b", "c"]);

        clock.advance(SWEEP_INTERVAL);
        store.save("fresh", b"v", short).await.unwrap();
        assert_eq!(keys(&store, SESSIONS), ["b", "c", "fresh"]);
        assert_eq!(keys(&store, INDEX), ["alice/s2"]);
        for key in ["b", "c"] {
            assert_eq!(store.load(key).await.unwrap().as_deref(), Some(&b"v2"[..]));
        }
        let listed = store.index_list("alice").await.unwrap();
        assert_eq!(listed, [("s2".to_owned(), b"m".to_vec())]);
    }

    /// One write removes at most [`SWEEP_LIMIT`] expired entries of a
    /// table; the next write goes on with the rest, without waiting for
    /// another sweep interval.
    #[tokio::test]
    async fn sweep_is_capped_and_goes_on_with_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000);
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), Arc::new(clock.clone())).unwrap();
        {
            let db = store.inner.database().unwrap();
            let txn = db.begin_write().unwrap();
            let mut sessions = SESSIONS.open(&txn).unwrap();
            for i in 0..SWEEP_LIMIT + 5 {
                sessions.insert(&format!("old{i:05}"), b"v", 1_010).unwrap();
            }
            sessions.insert("live", b"v", 5_000).unwrap();
            drop(sessions);
            txn.commit().unwrap();
        }
        clock.advance(SWEEP_INTERVAL);
        store
            .save("fresh", b"v", Duration::from_secs(10))
            .await
            .unwrap();
        let left = keys(&store, SESSIONS);
        assert_eq!(left.len(), 5 + 2, "{left:?}");
        store
            .save("fresh", b"v", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(keys(&store, SESSIONS), ["fresh", "live"]);
    }

    /// A file written before the expiry indexes existed (only the two
    /// entry tables) opens: its live entries load, its expired ones read
    /// as absent, and a later sweep removes them, from both tables.
    #[tokio::test]
    async fn file_from_before_the_expiry_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let stored =
            |expires_at: i64, payload: &[u8]| [&expires_at.to_be_bytes(), payload].concat();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let old = redb::TableDefinition::<&str, &[u8]>::new;
            let mut sessions = txn.open_table(old("sessions_v1")).unwrap();
            sessions
                .insert("live", &stored(5_000, b"alive")[..])
                .unwrap();
            sessions
                .insert("later", &stored(1_030, b"soon")[..])
                .unwrap();
            sessions
                .insert("dead", &stored(1_000, b"gone")[..])
                .unwrap();
            let mut index = txn.open_table(old("user_sessions_v1")).unwrap();
            index.insert("alice/s1", &stored(5_000, b"m1")[..]).unwrap();
            index.insert("bob/s2", &stored(900, b"m2")[..]).unwrap();
            drop((sessions, index));
            txn.commit().unwrap();
        }
        let clock = ManualClock::new(1_000);
        let store = EmbeddedStore::open(&path, Arc::new(clock.clone())).unwrap();
        assert_eq!(
            store.load("live").await.unwrap().as_deref(),
            Some(&b"alive"[..])
        );
        assert_eq!(
            store.load("later").await.unwrap().as_deref(),
            Some(&b"soon"[..])
        );
        assert_eq!(store.load("dead").await.unwrap(), None);
        assert_eq!(store.index_users().await.unwrap(), ["alice"]);
        assert_eq!(keys(&store, SESSIONS), ["dead", "later", "live"]);
        assert_eq!(keys(&store, INDEX), ["alice/s1", "bob/s2"]);

        clock.advance(SWEEP_INTERVAL);
        store
            .save("fresh", b"v", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(keys(&store, SESSIONS), ["fresh", "live"]);
        assert_eq!(keys(&store, INDEX), ["alice/s1"]);
        drop(store);
        let store = EmbeddedStore::open(&path, Arc::new(clock.clone())).unwrap();
        assert_eq!(keys(&store, SESSIONS), ["fresh", "live"]);
        assert_eq!(
            store.load("live").await.unwrap().as_deref(),
            Some(&b"alive"[..])
        );
    }

    /// A file of `n` entries, `key{i}` → [`value`]`(i)`, closed cleanly.
    async fn file_of(path: &Path, n: usize, clock: &ManualClock) {
        let store = EmbeddedStore::open(path, Arc::new(clock.clone())).unwrap();
        for i in 0..n {
            let key = format!("key{i}");
            store
                .save(&key, &value(i), Duration::from_secs(1000))
                .await
                .unwrap();
        }
    }

    /// About a KiB, like a sealed session record, and unique to `i`.
    fn value(i: usize) -> Vec<u8> {
        format!("{i:06}").repeat(170).into_bytes()
    }

    /// Flips every byte of each 4 KiB page of `path` that `damaged` picks.
    fn damage(path: &Path, damaged: impl Fn(usize, &[u8]) -> bool) {
        let mut bytes = std::fs::read(path).unwrap();
        for (n, page) in bytes.chunks_mut(4096).enumerate() {
            if damaged(n, page) {
                page.iter_mut().for_each(|b| *b ^= 0x5a);
            }
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// A file damaged outside redb (a disk fault, another writer) past its
    /// header opens without reading every page, and an operation that
    /// meets the damage fails (503 upstream) instead of panicking out of
    /// the store; the store keeps serving: entries elsewhere load, and a
    /// damaged entry never loads as what was saved. (redb may panic on
    /// such a file; it promises errors only after its full integrity
    /// check, which reads the whole file at every start.)
    #[tokio::test]
    async fn damaged_entry_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = ManualClock::new(1_000);
        file_of(&path, 2000, &clock).await;
        let target = value(1234);
        // Every B-tree leaf (type byte 1) holding part of entry 1234: its
        // live copy and any stale ones (redb copies on write and reuses
        // pages without clearing them).
        damage(&path, |_, page| {
            page[0] == 1 && page.windows(12).any(|w| target.starts_with(w))
        });
        // Opening reads the header and the table roots, not this leaf
        // (redb runs without its debug assertions here too: Cargo.toml).
        let store = EmbeddedStore::open(&path, Arc::new(clock.clone())).unwrap();
        let loaded = store.load("key1234").await;
        assert!(
            loaded
                .as_ref()
                .map_or(true, |v| v.as_deref() != Some(&target[..])),
            "{loaded:?}"
        );
        let mut intact = 0;
        for i in (0..2000).step_by(10) {
            if store.load(&format!("key{i}")).await.ok().flatten() == Some(value(i)) {
                intact += 1;
            }
        }
        assert!(intact >= 150, "only {intact} of 200 entries load");
        // The store still answers after a failed operation.
        store.ping().await.unwrap();
    }

    /// Damage where opening reads (every page past the first, so the
    /// table roots and redb's allocator state) is an error at startup
    /// naming the file, not a panic.
    #[test]
    fn damaged_file_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let clock = ManualClock::new(1_000);
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(file_of(&path, 200, &clock));
        damage(&path, |n, _| n > 0);
        let err = EmbeddedStore::open(&path, Arc::new(clock)).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.to_string().contains("s.redb"), "{err}");
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
