//! The store conformance suite: what every [`SessionStore`] must do, run
//! against each backend (memory, embedded, and Redis standalone, Sentinel
//! and Cluster against real servers).
//!
//! Each check takes the store as `Arc<dyn SessionStore>`, exactly as the
//! manager holds it. Time-based checks take the [`ManualClock`] the store was
//! built with: no test sleeps. A backend whose expiry is not driven by our
//! clock (Redis) runs [`run_common`] and the same expiry checks in
//! [`real_time`], with sub-second TTLs and bounded waits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::clock::ManualClock;

use super::store::SessionStore;

const TTL: Duration = Duration::from_secs(60);

/// Every check, each on its own keys so one store serves them all.
pub(crate) async fn run_all(store: Arc<dyn SessionStore>, clock: &ManualClock) {
    run_common(&store).await;
    ttl_expiry(&store, clock).await;
    cas_on_expired(&store, clock).await;
    index_expiry(&store, clock).await;
}

/// Every check that does not depend on how time passes.
pub(crate) async fn run_common(store: &Arc<dyn SessionStore>) {
    load_missing(store).await;
    save_then_load(store).await;
    overwrite(store).await;
    delete(store).await;
    cas_on_absent(store).await;
    cas_success_and_failure(store).await;
    cas_by_prefix(store).await;
    ping(store).await;
    index_entries(store).await;
}

/// `user`'s index, sorted, as `(id, meta)` text pairs.
async fn listed(store: &Arc<dyn SessionStore>, user: &str) -> Vec<(String, String)> {
    let mut entries: Vec<_> = store
        .index_list(user)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, meta)| (id, String::from_utf8(meta).unwrap()))
        .collect();
    entries.sort();
    entries
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The per-user index: entries are kept per user, a second add of an id
/// replaces its metadata, removal takes only the ids named, and the users
/// list names every user with entries.
pub(crate) async fn index_entries(store: &Arc<dyn SessionStore>) {
    assert!(listed(store, "conf-nobody").await.is_empty());
    store.index_add("conf-u1", "s1", b"m1", TTL).await.unwrap();
    store.index_add("conf-u1", "s2", b"m2", TTL).await.unwrap();
    store
        .index_add("conf-u2", "s3", b"m3|bar", TTL)
        .await
        .unwrap();
    store.index_add("conf-u1", "s1", b"m1b", TTL).await.unwrap();
    assert_eq!(
        listed(store, "conf-u1").await,
        pairs(&[("s1", "m1b"), ("s2", "m2")])
    );
    assert_eq!(listed(store, "conf-u2").await, pairs(&[("s3", "m3|bar")]));
    let users = store.index_users().await.unwrap();
    assert!(users.iter().any(|u| u == "conf-u1"), "{users:?}");
    assert!(users.iter().any(|u| u == "conf-u2"), "{users:?}");

    store
        .index_remove("conf-u1", &["s1".into(), "absent".into()])
        .await
        .unwrap();
    store.index_remove("conf-u1", &[]).await.unwrap();
    assert_eq!(listed(store, "conf-u1").await, pairs(&[("s2", "m2")]));
    store.index_remove("conf-u2", &["s3".into()]).await.unwrap();
    assert!(listed(store, "conf-u2").await.is_empty());
    store
        .index_add("conf-u2", "s4", b"gone", Duration::ZERO)
        .await
        .unwrap();
    assert!(
        listed(store, "conf-u2").await.is_empty(),
        "a zero TTL is gone"
    );
}

/// Index entries live their own TTL by the store's clock; a user whose
/// entries all ran out is no longer listed.
pub(crate) async fn index_expiry(store: &Arc<dyn SessionStore>, clock: &ManualClock) {
    let short = Duration::from_secs(10);
    store.index_add("conf-ux", "a", b"1", short).await.unwrap();
    store
        .index_add("conf-ux", "b", b"2", Duration::from_secs(30))
        .await
        .unwrap();
    clock.advance(9);
    assert_eq!(listed(store, "conf-ux").await.len(), 2, "both alive at 9s");
    clock.advance(1);
    assert_eq!(listed(store, "conf-ux").await, pairs(&[("b", "2")]));
    assert!(
        store
            .index_users()
            .await
            .unwrap()
            .iter()
            .any(|u| u == "conf-ux")
    );
    clock.advance(20);
    assert!(listed(store, "conf-ux").await.is_empty());
    assert!(
        !store
            .index_users()
            .await
            .unwrap()
            .iter()
            .any(|u| u == "conf-ux")
    );
}

/// An unknown key loads as `None`; deleting it is not an error.
pub(crate) async fn load_missing(store: &Arc<dyn SessionStore>) {
    assert_eq!(store.load("conf:missing").await.unwrap(), None);
    store.delete("conf:missing").await.unwrap();
}

/// What is saved loads back byte for byte, including empty and binary
/// values.
pub(crate) async fn save_then_load(store: &Arc<dyn SessionStore>) {
    let binary: Vec<u8> = (0..=255).collect();
    store.save("conf:bin", &binary, TTL).await.unwrap();
    store.save("conf:empty", b"", TTL).await.unwrap();
    assert_eq!(store.load("conf:bin").await.unwrap(), Some(binary));
    assert_eq!(store.load("conf:empty").await.unwrap(), Some(Vec::new()));
}

/// A second save replaces the value.
pub(crate) async fn overwrite(store: &Arc<dyn SessionStore>) {
    store.save("conf:over", b"one", TTL).await.unwrap();
    store.save("conf:over", b"two", TTL).await.unwrap();
    assert_eq!(
        store.load("conf:over").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
}

/// A deleted key is gone; other keys are untouched.
pub(crate) async fn delete(store: &Arc<dyn SessionStore>) {
    store.save("conf:del", b"x", TTL).await.unwrap();
    store.save("conf:keep", b"y", TTL).await.unwrap();
    store.delete("conf:del").await.unwrap();
    assert_eq!(store.load("conf:del").await.unwrap(), None);
    assert_eq!(
        store.load("conf:keep").await.unwrap().as_deref(),
        Some(&b"y"[..])
    );
}

/// An entry lives exactly its TTL by the store's clock; a later save
/// resets the TTL; a zero TTL is gone at once.
pub(crate) async fn ttl_expiry(store: &Arc<dyn SessionStore>, clock: &ManualClock) {
    store
        .save("conf:ttl", b"x", Duration::from_secs(10))
        .await
        .unwrap();
    store
        .save("conf:ttl-long", b"y", Duration::from_secs(30))
        .await
        .unwrap();
    store
        .save("conf:ttl-zero", b"z", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(store.load("conf:ttl-zero").await.unwrap(), None);
    clock.advance(9);
    assert!(
        store.load("conf:ttl").await.unwrap().is_some(),
        "alive at 9s"
    );
    clock.advance(1);
    assert_eq!(store.load("conf:ttl").await.unwrap(), None, "gone at 10s");
    assert!(store.load("conf:ttl-long").await.unwrap().is_some());
    store
        .save("conf:ttl-long", b"y2", Duration::from_secs(30))
        .await
        .unwrap();
    clock.advance(25);
    assert_eq!(
        store.load("conf:ttl-long").await.unwrap().as_deref(),
        Some(&b"y2"[..]),
        "the second save restarted the TTL"
    );
}

/// CAS with `expected = None` creates an absent key once; a second
/// attempt loses.
pub(crate) async fn cas_on_absent(store: &Arc<dyn SessionStore>) {
    assert!(
        store
            .compare_and_swap("conf:cas-new", None, b"first", TTL)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("conf:cas-new", None, b"second", TTL)
            .await
            .unwrap()
    );
    assert_eq!(
        store.load("conf:cas-new").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
}

/// CAS writes only over the expected value; a stale expectation leaves the
/// value alone; expecting a value on an absent key fails.
pub(crate) async fn cas_success_and_failure(store: &Arc<dyn SessionStore>) {
    store.save("conf:cas", b"v1", TTL).await.unwrap();
    assert!(
        store
            .compare_and_swap("conf:cas", Some(b"v1"), b"v2", TTL)
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("conf:cas", Some(b"v1"), b"v3", TTL)
            .await
            .unwrap()
    );
    assert_eq!(
        store.load("conf:cas").await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    assert!(
        !store
            .compare_and_swap("conf:cas-none", Some(b"v1"), b"v2", TTL)
            .await
            .unwrap()
    );
    assert_eq!(store.load("conf:cas-none").await.unwrap(), None);
}

/// The expectation is a prefix: a value's leading bytes (a sealed record's
/// nonce) name it; other leading bytes, or an expectation longer than the
/// value, do not.
pub(crate) async fn cas_by_prefix(store: &Arc<dyn SessionStore>) {
    store
        .save("conf:cas-prefix", b"nonce-1|body", TTL)
        .await
        .unwrap();
    for wrong in [&b"nonce-2"[..], b"nonce-1|body|more", b"once-1"] {
        assert!(
            !store
                .compare_and_swap("conf:cas-prefix", Some(wrong), b"x", TTL)
                .await
                .unwrap(),
            "{wrong:?}"
        );
    }
    assert!(
        store
            .compare_and_swap("conf:cas-prefix", Some(b"nonce-1"), b"nonce-3|new", TTL)
            .await
            .unwrap()
    );
    assert_eq!(
        store.load("conf:cas-prefix").await.unwrap().as_deref(),
        Some(&b"nonce-3|new"[..])
    );
}

/// An expired value counts as absent for CAS too: a refresh cannot revive
/// a session that ran out.
pub(crate) async fn cas_on_expired(store: &Arc<dyn SessionStore>, clock: &ManualClock) {
    store
        .save("conf:cas-exp", b"old", Duration::from_secs(5))
        .await
        .unwrap();
    clock.advance(5);
    assert!(
        !store
            .compare_and_swap("conf:cas-exp", Some(b"old"), b"new", TTL)
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap("conf:cas-exp", None, b"new", TTL)
            .await
            .unwrap()
    );
}

/// A healthy store answers a ping.
pub(crate) async fn ping(store: &Arc<dyn SessionStore>) {
    store.ping().await.unwrap();
}

/// The expiry checks for a store that expires entries by its server's
/// clock: the same promises, in real time. Each wait is bounded and the
/// margins are wide enough for a loaded machine: an entry must be present
/// well before its TTL and gone shortly after it.
pub(crate) mod real_time {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::SessionStore;

    const SHORT: Duration = Duration::from_millis(600);

    /// Polls until `key` is absent; fails after `limit`.
    async fn gone_within(store: &Arc<dyn SessionStore>, key: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if store.load(key).await.unwrap().is_none() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{key} still present after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An entry lives its TTL, not less; it is gone soon after; a zero TTL
    /// is gone at once; a second save restarts the TTL.
    pub(crate) async fn ttl_expiry(store: &Arc<dyn SessionStore>) {
        let start = Instant::now();
        store.save("conf:rt-ttl", b"x", SHORT).await.unwrap();
        store
            .save("conf:rt-long", b"y", Duration::from_secs(60))
            .await
            .unwrap();
        store
            .save("conf:rt-zero", b"z", Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(store.load("conf:rt-zero").await.unwrap(), None);
        let present = store.load("conf:rt-ttl").await.unwrap().is_some();
        // Only meaningful if the load ran well inside the TTL.
        if start.elapsed() < SHORT / 2 {
            assert!(present, "alive before its TTL");
        }
        gone_within(store, "conf:rt-ttl", SHORT + Duration::from_secs(2)).await;
        assert!(
            start.elapsed() >= SHORT,
            "expired after {:?}, before its TTL",
            start.elapsed()
        );
        assert!(store.load("conf:rt-long").await.unwrap().is_some());

        // A save resets the TTL: a short entry made long survives.
        store.save("conf:rt-reset", b"1", SHORT).await.unwrap();
        store
            .save("conf:rt-reset", b"2", Duration::from_secs(60))
            .await
            .unwrap();
        tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
        assert_eq!(
            store.load("conf:rt-reset").await.unwrap().as_deref(),
            Some(&b"2"[..]),
            "the second save restarted the TTL"
        );
    }

    /// Index entries run out after their TTL, and so does their user.
    pub(crate) async fn index_expiry(store: &Arc<dyn SessionStore>) {
        let start = Instant::now();
        store
            .index_add("conf-rt-u", "a", b"1", SHORT)
            .await
            .unwrap();
        // The store started the TTL between `start` and `added` (a first
        // command may wait for a cluster's connections).
        let added = Instant::now();
        loop {
            let live = store.index_list("conf-rt-u").await.unwrap();
            if live.is_empty() {
                break;
            }
            assert!(
                added.elapsed() < SHORT + Duration::from_secs(2),
                "index entry still present after its TTL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(start.elapsed() >= SHORT, "expired before its TTL");
        let users = store.index_users().await.unwrap();
        assert!(!users.iter().any(|u| u == "conf-rt-u"), "{users:?}");
    }

    /// An expired value counts as absent for CAS.
    pub(crate) async fn cas_on_expired(store: &Arc<dyn SessionStore>) {
        store.save("conf:rt-cas", b"old", SHORT).await.unwrap();
        gone_within(store, "conf:rt-cas", SHORT + Duration::from_secs(2)).await;
        assert!(
            !store
                .compare_and_swap("conf:rt-cas", Some(b"old"), b"new", super::TTL)
                .await
                .unwrap()
        );
        assert!(
            store
                .compare_and_swap("conf:rt-cas", None, b"new", super::TTL)
                .await
                .unwrap()
        );
    }
}
