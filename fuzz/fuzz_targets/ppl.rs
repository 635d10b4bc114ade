//! A route's `policy:` (Pomerium Policy Language): arbitrary YAML parsed,
//! compiled into a route, then evaluated and explained for a signed-in
//! user, nobody, and a request with every fact set.
//!
//! Invariants: no panic, no hang; nobody signed in is never `Allow`ed (at
//! most let through as public).
#![no_main]

use authgate::config::{RouteConfig, Routes};
use authgate::identity::Identity;
use authgate::policy::ppl::Tree;
use authgate::policy::{Facts, Policy, Target, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return;
    };
    let route = RouteConfig {
        from: url::Url::parse("https://app.example.com").expect("constant URL"),
        policy: Some(Tree::from_json(&value)),
        ..RouteConfig::default()
    };
    let Ok(routes) = Routes::parse(vec![route]) else {
        return;
    };
    let policy = Policy::compile(routes);
    let target = Target::parse("https://app.example.com/api/x").expect("constant URL");
    let user = Identity {
        subject: "sub".into(),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        groups: vec!["devops".into()],
        claims: serde_json::json!({"department": "eng", "level": 3, "org": {"unit": "x"}})
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into(),
        ..Identity::default()
    };
    for who in [Some(&user), None] {
        let facts = Facts {
            method: Some("POST"),
            source_ip: Some("10.1.2.3".parse().expect("constant IP")),
            preflight: true,
            now: 1_796_637_600,
            ..Facts::who(who)
        };
        let verdict = policy.evaluate(&target, &facts);
        // Allow means someone was admitted; nobody is admitted as Public.
        assert!(who.is_some() || !matches!(verdict, Verdict::Allow { .. }));
        let explanation = policy.explain(&target, &facts);
        let _ = explanation.reason();
    }
});
