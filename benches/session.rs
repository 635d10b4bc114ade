//! Session hot path: `Sessions::resolve` on a cache hit (memoised cookie
//! open + cache lookup), plus for comparison the AEAD open alone (what the
//! first request with a cookie pays), a record-cache miss against the memory
//! store, and a garbage cookie.
//!
//! Run: `cargo bench --bench session` (add `-- resolve/cache_hit` to run one).
//! Target: a cache hit well under 1 µs.
// A benchmark: a broken setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use authgate::clock::{Clock, SystemClock};
use authgate::config::Secret;
use authgate::identity::Identity;
use authgate::session::{MemoryStore, Purpose, Sealer, Sessions};
use criterion::{Criterion, criterion_group, criterion_main};

/// Runs a future that never waits (cache hits and the memory store are
/// ready at once) without a runtime, so the figure is the work itself.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked future was not ready"),
    }
}

fn sealer() -> Sealer {
    // A previous secret too, as after a rotation (opening tries the
    // current one first, so a fresh cookie pays for one key only).
    Sealer::new(&Secret::new(vec![1u8; 32]), &[Secret::new(vec![2u8; 32])])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn identity() -> Identity {
    Identity {
        subject: "CgVhbGljZRIEbGRhcA".into(),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        preferred_username: Some("alice".into()),
        name: Some("Alice Liddell".into()),
        groups: (0..50).map(|i| format!("group-{i}")).collect(),
        claims: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let clock = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let sessions = Sessions::new(sealer(), store, clock.clone(), Duration::from_secs(3600));
    let (cookie, _) = ready(sessions.create(identity(), Some("rt".into()), clock.now() + 300))
        .unwrap_or_else(|e| panic!("{e}"));
    let id = ready(sessions.resolve(&cookie))
        .ok()
        .flatten()
        .map(|r| r.id)
        .unwrap_or_else(|| panic!("session did not resolve"));

    c.bench_function("resolve/cache_hit", |b| {
        b.iter(|| ready(sessions.resolve(black_box(&cookie))))
    });
    c.bench_function("sealer/open_session_cookie", |b| {
        b.iter(|| {
            sessions
                .sealer()
                .open(Purpose::SessionCookie, black_box(&cookie))
        })
    });
    c.bench_function("resolve/cache_miss_memory_store", |b| {
        b.iter(|| {
            sessions.forget(&id);
            ready(sessions.resolve(black_box(&cookie)))
        })
    });
    c.bench_function("resolve/garbage", |b| {
        let garbage = "A".repeat(cookie.len());
        b.iter(|| ready(sessions.resolve(black_box(&garbage))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
