//! The decision path as `/oauth2/auth` and `Check` run it: open the session
//! cookie, find the session in the local cache, evaluate a policy of 1,000
//! routes (the request hits the last one), render the identity headers.
//!
//! Also the refusals nginx sees under load: a valid session on a route that
//! does not admit it (403), and a tampered cookie (401 + sign-in URL).
//!
//! Run: `cargo bench --bench decision` (target: median ≤ 2 µs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use url::Url;

use authgate::clock::{SharedClock, SystemClock};
use authgate::config::{RouteConfig, Secret};
use authgate::decision::{Decider, Request};
use authgate::identity::Identity;
use authgate::policy::{Policy, Target};
use authgate::session::{MemoryStore, Sealer, Sessions};

/// Every route admits group `devops` (the benchmarked user's) but the one
/// before last, which only admits its own team: the 403 case.
fn routes(count: usize) -> Vec<RouteConfig> {
    (0..count)
        .map(|i| RouteConfig {
            index: i,
            from: Url::parse(&format!("https://app{i}.example.com")).expect("url"),
            prefix: (i % 3 == 0).then(|| "/api".to_owned()),
            allowed_groups: if i + 2 == count {
                vec![format!("team{i}")]
            } else {
                vec![format!("team{i}"), "devops".to_owned()]
            },
            ..RouteConfig::default()
        })
        .collect()
}

fn decision_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clock: SharedClock = Arc::new(SystemClock);
    let sealer = Sealer::new(&Secret::new([9u8; 32].to_vec()), &[]).expect("sealer");
    let sessions = Arc::new(Sessions::new(
        sealer,
        Arc::new(MemoryStore::new(clock.clone())),
        clock,
        Duration::from_secs(3600),
    ));
    let identity = Identity {
        subject: "CgQxMDAxEgRsZGFw".into(),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        preferred_username: Some("alice".into()),
        name: Some("Alice".into()),
        groups: vec!["devops".into(), "admins".into(), "users".into()],
        claims: serde_json::Map::new(),
    };
    let (cookie, _) = runtime
        .block_on(sessions.create(identity, None, i64::MAX))
        .expect("session");
    let policy = Arc::new(Policy::compile(&routes(1000)).expect("policy"));
    let decider = Decider::new(
        policy,
        sessions,
        &Url::parse("https://auth.example.com").expect("url"),
    );
    let url = "https://app999.example.com/api/items?q=1";
    // Warm the cache, as every request after the first finds it warm.
    runtime.block_on(async {
        let decision = decider
            .decide(Request {
                target: Target::parse(url),
                session_cookies: std::iter::once(cookie.as_str()),
                method: Some("GET"),
                authorization: None,
                preflight: false,
            })
            .await;
        assert!(matches!(
            decision,
            authgate::decision::Decision::Allow { .. }
        ));
    });
    c.bench_function("decide_allow_1000_routes", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let decision = decider
                    .decide(Request {
                        target: Target::parse(black_box(url)),
                        session_cookies: std::iter::once(black_box(cookie.as_str())),
                        method: Some("GET"),
                        authorization: None,
                        preflight: false,
                    })
                    .await;
                black_box(decision.identity_headers())
            })
        })
    });
    // The 403 path: a valid session on a route whose groups it lacks.
    let denied = "https://app998.example.com/other";
    c.bench_function("decide_deny_1000_routes", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let decision = decider
                    .decide(Request {
                        target: Target::parse(black_box(denied)),
                        session_cookies: std::iter::once(black_box(cookie.as_str())),
                        method: Some("GET"),
                        authorization: None,
                        preflight: false,
                    })
                    .await;
                assert!(matches!(
                    decision,
                    authgate::decision::Decision::Deny { .. }
                ));
                black_box(decision)
            })
        })
    });
    // The 401 path: a cookie of the right length that does not open (one
    // character changed), so the sign-in URL is built.
    let mut tampered = cookie.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    c.bench_function("decide_sign_in_tampered_cookie", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let decision = decider
                    .decide(Request {
                        target: Target::parse(black_box(url)),
                        session_cookies: std::iter::once(black_box(tampered.as_str())),
                        method: Some("GET"),
                        authorization: None,
                        preflight: false,
                    })
                    .await;
                assert!(matches!(
                    decision,
                    authgate::decision::Decision::SignIn { .. }
                ));
                black_box(decision)
            })
        })
    });
}

criterion_group!(benches, decision_path);
criterion_main!(benches);
