//! The decision path as `/oauth2/auth` and `Check` run it: open the session
//! cookie, find the session in the local cache, evaluate a policy of 1,000
//! routes (the request hits the last one), record the metrics and the log
//! line, build the answer nginx gets (identity headers included).
//!
//! Also the refusals nginx sees under load: a valid session on a route that
//! does not admit it (403), and a tampered cookie (401 + sign-in URL).
//!
//! Run: `cargo bench --bench decision` (target: median ≤ 2 µs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use url::Url;

use authgate::clock::{SharedClock, SystemClock};
use authgate::config::{RouteConfig, Routes, Secret};
use authgate::decision::{Answer, Decider, Decision, Mode, Request};
use authgate::identity::Identity;
use authgate::in_force::PolicyInForce;
use authgate::metrics::{FrontEnd, Metrics};
use authgate::policy::ppl::Tree;
use authgate::policy::{Policy, ProxyConditions, Target};
use authgate::session::{DEFAULT_CACHE_ENTRIES, MemoryStore, Sealer, Sessions};
use authgate::telemetry::Asker;

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

/// The same routes written in Pomerium's policy language, as a Pomerium
/// user would: domain and group, a department claim as an alternative, a
/// deny for one address range and for writes by anyone outside `admins`.
fn ppl_routes(count: usize) -> Vec<RouteConfig> {
    routes(count)
        .into_iter()
        .map(|mut route| {
            let groups = std::mem::take(&mut route.allowed_groups);
            let policy = serde_json::json!([
                {"allow": {
                    "and": [{"domain": {"is": "example.com"}}, {"groups": {"has": groups.last()}}],
                    "or": [{"claim/department": "platform"}],
                }},
                {"deny": {
                    "or": [{"source_ip": ["203.0.113.0/24", "198.51.100.0/24"]}],
                    "and": [
                        {"http_method": {"not_in": ["GET", "HEAD", "OPTIONS"]}},
                        {"groups": {"exclude": "admins"}},
                    ],
                }},
            ]);
            route.policy = Some(Tree::from_json(&policy));
            route
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
    let sessions = Arc::new(
        Sessions::new(
            sealer,
            Arc::new(MemoryStore::new(clock.clone())),
            clock,
            Duration::from_secs(3600),
        )
        // A run outlives the default time to live of the cache; production
        // requests find it warm, so the benchmark keeps it warm too.
        .with_cache(DEFAULT_CACHE_ENTRIES, Duration::from_secs(24 * 3600)),
    );
    let identity = Identity {
        subject: "CgQxMDAxEgRsZGFw".into(),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        preferred_username: Some("alice".into()),
        name: Some("Alice".into()),
        groups: vec!["devops".into(), "admins".into(), "users".into()],
        claims: Default::default(),
    };
    let (cookie, _) = runtime
        .block_on(sessions.create(identity, None, i64::MAX))
        .expect("session");
    // Warm the cache, as every request after the first finds it warm.
    let warm = || {
        runtime
            .block_on(sessions.resolve(&cookie))
            .expect("resolved")
            .expect("a session");
    };
    let decider = Decider::new(
        sessions.clone(),
        &Url::parse("https://auth.example.com").expect("url"),
    );
    let metrics = Arc::new(Metrics::new());
    for (kind, routes) in [("", routes(1000)), ("_ppl", ppl_routes(1000))] {
        let policy = Arc::new(Policy::compile(Routes::parse(routes).expect("routes")));
        let in_force = PolicyInForce::new(policy, Some(metrics.clone()));
        bench_policy(c, kind, &in_force, &decider, &cookie, &warm);
    }
}

/// Allow, deny and sign-in under one policy (`kind` names it).
fn bench_policy(
    c: &mut Criterion,
    kind: &str,
    in_force: &PolicyInForce,
    decider: &Decider,
    cookie: &str,
    warm: &dyn Fn(),
) {
    // What `/oauth2/auth` does per request on its no-I/O lane: translate,
    // decide, record the metrics and the log line, build the answer.
    let ask = |url: &str, cookie: &str| {
        let target = Target::parse(black_box(url));
        let decision = in_force
            .decide_now(
                decider,
                Asker {
                    front_end: FrontEnd::Nginx,
                    request_id: None,
                    trace: Default::default(),
                },
                Request {
                    target: &target,
                    session_cookies: std::iter::once(black_box(cookie)),
                    method: Some("GET"),
                    authorization: None,
                    preflight: false,
                    source_ip: None,
                    conditions: &ProxyConditions::NONE,
                },
            )
            .expect("decided without I/O");
        let answer = Answer::new(&decision, Mode::Subrequest);
        (decision, answer.upstream)
    };
    let url = "https://app999.example.com/api/items?q=1";
    warm();
    let (decision, headers) = ask(url, cookie);
    assert!(matches!(decision, Decision::Allow { .. }), "{decision:?}");
    assert_eq!(headers.len(), 4, "user, email, username, groups");
    c.bench_function(&format!("decide_allow_1000{kind}_routes"), |b| {
        b.iter(|| black_box(ask(url, cookie)))
    });
    // The 403 path: a valid session on a route whose groups it lacks.
    let denied = "https://app998.example.com/other";
    warm();
    assert!(matches!(ask(denied, cookie).0, Decision::Deny { .. }));
    c.bench_function(&format!("decide_deny_1000{kind}_routes"), |b| {
        b.iter(|| black_box(ask(denied, cookie)))
    });
    if !kind.is_empty() {
        return;
    }
    // The 401 path: a cookie of the right length that does not open (one
    // character changed), so the sign-in URL is built.
    let mut tampered = cookie.to_owned().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(matches!(ask(url, &tampered).0, Decision::SignIn { .. }));
    c.bench_function("decide_sign_in_tampered_cookie", |b| {
        b.iter(|| black_box(ask(url, &tampered)))
    });
}

criterion_group!(benches, decision_path);
criterion_main!(benches);
