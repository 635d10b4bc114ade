//! The policy hot path: parse the `X-Original-URL`, find the route, check
//! the rules.
//!
//! Run: `cargo bench --bench policy` (add `-- parse_evaluate` to filter).
//! Reports land in `target/criterion/`.
//!
//! Setup: N routes on N distinct hosts (`h<i>.example.com`), path matchers
//! rotating regex / prefix / exact, each allowing two groups, plus a few
//! wildcard routes so the suffix index is exercised. The request hits the
//! *last* route (a regex one), as a user with 300 groups whose matching
//! group is the last. 1,000 and 10,000 routes: a linear scan would be ten
//! times slower on the second; the host index keeps it flat.
// A benchmark: a broken setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use authgate::config::{RouteConfig, Routes};
use authgate::identity::Identity;
use authgate::policy::{Facts, Policy, Target, Verdict};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use url::Url;

const WILDCARDS: usize = 16;

fn route(index: usize, from: &str) -> RouteConfig {
    RouteConfig {
        index,
        from: Url::parse(from).unwrap_or_else(|e| panic!("{from}: {e}")),
        ..RouteConfig::default()
    }
}

fn routes(n: usize) -> Vec<RouteConfig> {
    let mut routes: Vec<RouteConfig> = (0..WILDCARDS)
        .map(|k| {
            let mut r = route(k, &format!("https://*.tenant-{k}.example.net"));
            r.allow_any_authenticated_user = true;
            r
        })
        .collect();
    for i in 0..n {
        let mut r = route(WILDCARDS + i, &format!("https://h{i}.example.com"));
        match (n - 1 - i) % 3 {
            0 => r.regex = Some("/v[0-9]+/items/[a-z0-9-]+".into()),
            1 => r.prefix = Some("/api".into()),
            _ => r.path = Some("/exact".into()),
        }
        r.allowed_groups = vec![format!("team-{i}"), "admins".into()];
        routes.push(r);
    }
    routes
}

fn identity(n: usize) -> Identity {
    let mut groups: Vec<String> = (0..299).map(|g| format!("other-{g}")).collect();
    groups.push(format!("team-{}", n - 1));
    Identity {
        subject: "CiQxMjM0".into(),
        email: Some("alice@company.com".into()),
        email_verified: Some(true),
        groups,
        ..Identity::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut parse_only = c.benchmark_group("parse");
    let url = "https://h999.example.com/v2/items/abc-123?x=1";
    parse_only.bench_function("canonical", |b| b.iter(|| Target::parse(black_box(url))));
    let messy = "https://H999.Example.com:443//v2/./items/%61bc-123?x=1";
    parse_only.bench_function("needs_normalising", |b| {
        b.iter(|| Target::parse(black_box(messy)))
    });
    parse_only.finish();

    let mut group = c.benchmark_group("parse_evaluate");
    for n in [1_000usize, 10_000] {
        let policy = Policy::compile(Routes::parse(routes(n)).unwrap_or_else(|e| panic!("{e:?}")));
        let identity = identity(n);
        let url = format!("https://h{}.example.com/v2/items/abc-123?x=1", n - 1);
        // Make sure the benchmark measures what it claims.
        let target = Target::parse(&url).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(policy.evaluate(&target, &Facts::who(Some(&identity))), Verdict::Allow { route } if route.0 as usize == WILDCARDS + n - 1)
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let target = Target::parse(black_box(&url)).ok()?;
                Some(policy.evaluate(&target, &Facts::who(Some(black_box(&identity)))))
            })
        });
    }
    group.finish();

    // Where the time goes: route lookup with a user in one group, then in 300.
    let mut group = c.benchmark_group("evaluate");
    let n = 10_000;
    let policy = Policy::compile(Routes::parse(routes(n)).unwrap_or_else(|e| panic!("{e:?}")));
    let url = format!("https://h{}.example.com/v2/items/abc-123?x=1", n - 1);
    let target = Target::parse(&url).unwrap_or_else(|e| panic!("{e}"));
    let many = identity(n);
    let mut one = many.clone();
    one.groups.drain(..299);
    for (name, identity) in [("1_group", &one), ("300_groups", &many)] {
        group.bench_function(name, |b| {
            b.iter(|| policy.evaluate(black_box(&target), &Facts::who(Some(black_box(identity)))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
