//! An expiring table of the embedded store and its expiry index, written
//! together, so a sweep reads only what has expired instead of every entry.
//!
//! An entry's value is `expires_at (i64, big-endian) || payload`; its row
//! in the index is `(expires_at, key)`. Every insert and remove goes
//! through [`Expiring`], which moves or removes the entry's row in the same
//! write transaction, so the index holds one row per entry, at its current
//! expiry. A sweep takes the rows up to now in expiry order and removes an
//! entry only if the entry itself has expired: a row that does not match
//! its entry (none should exist) can never delete a renewed session.

use redb::{AccessGuard, ReadableTable as _, Table, TableDefinition, WriteTransaction};

type Entries<'txn> = Table<'txn, &'static str, &'static [u8]>;
type Expiries<'txn> = Table<'txn, (i64, &'static str), ()>;

/// An expiring table and its expiry index, by name.
#[derive(Clone, Copy)]
pub(super) struct Tables {
    entries: &'static str,
    expiry: &'static str,
}

/// The sessions: store key → sealed record.
pub(super) const SESSIONS: Tables = Tables {
    entries: "sessions_v1",
    expiry: "sessions_expiry_v1",
};

/// The per-user session index: `user/id` → metadata.
pub(super) const INDEX: Tables = Tables {
    entries: "user_sessions_v1",
    expiry: "user_sessions_expiry_v1",
};

impl Tables {
    /// The entries table, for reads.
    pub(super) const fn entries(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.entries)
    }

    pub(super) const fn expiry(self) -> TableDefinition<'static, (i64, &'static str), ()> {
        TableDefinition::new(self.expiry)
    }

    /// The entries table's name.
    pub(super) const fn name(self) -> &'static str {
        self.entries
    }

    /// Whether both tables are among `existing`.
    pub(super) fn exist(self, existing: &[String]) -> bool {
        [self.entries, self.expiry]
            .iter()
            .all(|name| existing.iter().any(|table| table == name))
    }

    /// Opens both tables for writing.
    pub(super) fn open(self, txn: &WriteTransaction) -> Result<Expiring<'_>, redb::Error> {
        Ok(Expiring {
            entries: txn.open_table(self.entries())?,
            expiry: txn.open_table(self.expiry())?,
        })
    }

    /// Creates both tables if not among `existing`. A file from before the
    /// expiry index has the entries without their index: this builds it,
    /// reading every entry once, and returns how many it indexed (expired
    /// ones too, so the sweep removes them).
    pub(super) fn create(
        self,
        txn: &WriteTransaction,
        existing: &[String],
    ) -> Result<Option<u64>, redb::Error> {
        let has = |name: &str| existing.iter().any(|table| table == name);
        let unindexed = has(self.entries) && !has(self.expiry);
        let mut tables = self.open(txn)?;
        if !unindexed {
            return Ok(None);
        }
        let mut indexed = 0;
        for entry in tables.entries.iter()? {
            let (key, stored) = entry?;
            tables
                .expiry
                .insert((expiry_of(stored.value()), key.value()), ())?;
            indexed += 1;
        }
        Ok(Some(indexed))
    }
}

/// Both tables of one [`Tables`], open in a write transaction.
pub(super) struct Expiring<'txn> {
    entries: Entries<'txn>,
    expiry: Expiries<'txn>,
}

impl Expiring<'_> {
    /// The stored value of `key`, expired or not (see [`live`]).
    pub(super) fn get(
        &self,
        key: &str,
    ) -> Result<Option<AccessGuard<'_, &'static [u8]>>, redb::Error> {
        Ok(self.entries.get(key)?)
    }

    /// Stores `payload` under `key` until `expires_at`, moving the key's
    /// row in the index if it had another expiry.
    pub(super) fn insert(
        &mut self,
        key: &str,
        payload: &[u8],
        expires_at: i64,
    ) -> Result<(), redb::Error> {
        let old = self
            .entries
            .insert(key, encode(payload, expires_at).as_slice())?
            .map(|old| expiry_of(old.value()));
        if old != Some(expires_at) {
            if let Some(old) = old {
                self.expiry.remove((old, key))?;
            }
            self.expiry.insert((expires_at, key), ())?;
        }
        Ok(())
    }

    /// Removes `key` and its row in the index.
    pub(super) fn remove(&mut self, key: &str) -> Result<(), redb::Error> {
        let old = self.entries.remove(key)?.map(|old| expiry_of(old.value()));
        if let Some(old) = old {
            self.expiry.remove((old, key))?;
        }
        Ok(())
    }

    /// Removes the entries expired at `now`, at most `limit` of them, in
    /// expiry order; reads nothing else. `true` if none is left to remove.
    pub(super) fn sweep(&mut self, now: i64, limit: usize) -> Result<bool, redb::Error> {
        // The first row not expired at `now` is `(now + 1, "")` or later.
        let due: Vec<(i64, String)> = self
            .expiry
            .range(..(now.saturating_add(1), ""))?
            .take(limit.saturating_add(1))
            .map(|row| {
                let (key, _) = row?;
                let (at, key) = key.value();
                Ok::<_, redb::StorageError>((at, key.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        for (at, key) in due.iter().take(limit) {
            self.expiry.remove((*at, key.as_str()))?;
            let expired = self
                .entries
                .get(key.as_str())?
                .is_some_and(|stored| live(stored.value(), now).is_none());
            if expired {
                self.remove(key)?;
            }
        }
        Ok(due.len() <= limit)
    }
}

/// `Some(payload)` if `stored` is live at `now`.
pub(super) fn live(stored: &[u8], now: i64) -> Option<&[u8]> {
    let (expires_at, payload) = stored.split_first_chunk::<8>()?;
    (now < i64::from_be_bytes(*expires_at)).then_some(payload)
}

/// When `stored` expires; a value too short to hold its expiry (never
/// written by the store) reads as absent, and is swept first.
fn expiry_of(stored: &[u8]) -> i64 {
    stored
        .first_chunk::<8>()
        .map_or(i64::MIN, |at| i64::from_be_bytes(*at))
}

fn encode(payload: &[u8], expires_at: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The rows of an expiry index, in order (for tests).
#[cfg(test)]
pub(super) fn rows_of(
    expiry: &impl redb::ReadableTable<(i64, &'static str), ()>,
) -> Vec<(i64, String)> {
    #[allow(clippy::unwrap_used)]
    expiry
        .iter()
        .unwrap()
        .map(|row| {
            let (row, _) = row.unwrap();
            let (at, key) = row.value();
            (at, key.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use redb::Database;

    fn rows(tables: &Expiring<'_>) -> Vec<(i64, String)> {
        rows_of(&tables.expiry)
    }

    /// A row that does not match its entry's expiry (none is written, but
    /// a file is only as good as every program that wrote it) is dropped
    /// without removing the live entry; the entry goes at its own expiry.
    #[test]
    fn a_stray_row_never_removes_a_live_entry() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut tables = SESSIONS.open(&txn).unwrap();
        tables.insert("k", b"v", 2_000).unwrap();
        tables.expiry.insert((1_000, "k"), ()).unwrap();
        assert!(tables.sweep(1_500, 10).unwrap());
        assert!(tables.get("k").unwrap().is_some());
        assert_eq!(rows(&tables), [(2_000, "k".to_owned())]);
        assert!(tables.sweep(2_000, 10).unwrap());
        assert!(tables.get("k").unwrap().is_none());
        assert_eq!(rows(&tables), []);
    }

    /// A sweep removes the earliest expired entries first, up to its limit,
    /// and says whether it left any; entries not yet expired are not read.
    #[test]
    fn sweep_takes_the_earliest_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut tables = SESSIONS.open(&txn).unwrap();
        for (key, at) in [("a", 1_003), ("b", 1_001), ("c", 1_002), ("d", 1_006)] {
            tables.insert(key, b"v", at).unwrap();
        }
        assert!(!tables.sweep(1_005, 2).unwrap());
        assert_eq!(
            rows(&tables),
            [(1_003, "a".to_owned()), (1_006, "d".to_owned())]
        );
        assert!(tables.sweep(1_005, 2).unwrap());
        assert_eq!(rows(&tables), [(1_006, "d".to_owned())]);
        assert!(tables.get("d").unwrap().is_some());
    }
}
