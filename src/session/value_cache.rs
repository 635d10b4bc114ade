//! A bounded cache keyed by whole cookie values, each hashed once.
//!
//! A cookie value is a few hundred bytes, and moka's table rehashes every
//! key it holds whenever it grows or the tombstones evictions leave fill
//! it. Under a cold load (every request a session not seen before, so an
//! insert and an eviction each) that rehashing was about a tenth of the
//! CPU: the same long values hashed again and again. Here a value is
//! hashed once, with the cache's keyed hasher, and the table rehashes the
//! 64 bits kept beside it. Equality still compares the whole value, so a
//! hit needs byte-equality with the value that was inserted.

use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Duration;

use moka::Equivalent;
use moka::sync::Cache;

/// A stored key: the value, and its hash under the cache's hasher.
struct Key {
    hash: u64,
    value: Box<str>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hashes first: the table compares the key it looks for with every
/// key it probes on the way, and an integer comparison turns nearly all of
/// those away without a call to `memcmp`.
impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.value == other.value
    }
}

impl Eq for Key {}

/// A borrowed value to look up (no allocation), hashed like [`Key`].
struct Lookup<'a> {
    hash: u64,
    value: &'a str,
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.hash == key.hash && *self.value == *key.value
    }
}

/// Values to `V`, at most `max_entries`, each for at most `ttl`. `S`
/// hashes the values: keyed per process, so nobody can choose values that
/// collide (SipHash where the values are an attacker's choice).
pub(super) struct ValueCache<V, S> {
    hasher: S,
    cache: Cache<Key, V, foldhash::fast::RandomState>,
}

impl<V, S> ValueCache<V, S>
where
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Default,
{
    pub(super) fn new(max_entries: u64, ttl: Duration) -> ValueCache<V, S> {
        ValueCache {
            hasher: S::default(),
            cache: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    fn lookup<'a>(&self, value: &'a str) -> Lookup<'a> {
        Lookup {
            hash: self.hasher.hash_one(value),
            value,
        }
    }

    pub(super) fn get(&self, value: &str) -> Option<V> {
        self.cache.get(&self.lookup(value))
    }

    pub(super) fn insert(&self, value: &str, to: V) {
        let key = Key {
            hash: self.hasher.hash_one(value),
            value: value.into(),
        };
        self.cache.insert(key, to);
    }

    pub(super) fn invalidate(&self, value: &str) {
        self.cache.invalidate(&self.lookup(value));
    }

    #[cfg(test)]
    pub(super) fn contains_key(&self, value: &str) -> bool {
        self.cache.contains_key(&self.lookup(value))
    }

    #[cfg(test)]
    pub(super) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    #[cfg(test)]
    pub(super) fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    type Values = ValueCache<u32, std::hash::RandomState>;

    /// A hit needs the whole value: values that share a long prefix, or
    /// differ only in their last byte, are different keys.
    #[test]
    fn a_hit_needs_the_whole_value() {
        let cache = Values::new(100, Duration::from_secs(60));
        let long = "A".repeat(300);
        let other = format!("{}B", &long[..299]);
        cache.insert(&long, 1);
        assert_eq!(cache.get(&long), Some(1));
        assert_eq!(cache.get(&other), None);
        assert_eq!(cache.get(&long[..299]), None);
        cache.insert(&other, 2);
        assert_eq!((cache.get(&long), cache.get(&other)), (Some(1), Some(2)));
        cache.invalidate(&long);
        assert_eq!((cache.get(&long), cache.get(&other)), (None, Some(2)));
        assert!(cache.contains_key(&other));
    }

    /// Past its bound the cache evicts, and what it keeps still answers
    /// (the table grew and rehashed its stored hashes on the way).
    #[test]
    fn bounded_and_still_exact_after_growing() {
        let cache = Values::new(1_000, Duration::from_secs(60));
        let values: Vec<String> = (0..5_000).map(|i| format!("{i:0>300}")).collect();
        for (i, value) in values.iter().enumerate() {
            cache.insert(value, u32::try_from(i).unwrap());
        }
        cache.run_pending_tasks();
        assert!(cache.entry_count() <= 1_000);
        let mut kept = 0;
        for (i, value) in values.iter().enumerate() {
            if let Some(got) = cache.get(value) {
                assert_eq!(got, u32::try_from(i).unwrap());
                kept += 1;
            }
        }
        assert!(kept > 0);
    }
}
