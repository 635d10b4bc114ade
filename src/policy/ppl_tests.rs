//! PPL as Pomerium documents it: each example of its policy-language page
//! with users it must and must not admit, plus the operators' truth tables
//! and the "needs sign-in" marks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use serde_json::{Value, json};

use super::*;
use crate::identity::Identity;

fn policy(yaml: &str) -> Ppl {
    let value: Value = serde_saphyr::from_str(yaml).expect("test YAML parses");
    parse(&Tree::from_json(&value)).expect("policy parses")
}

fn person(email: &str, groups: &[&str], claims: Value) -> Identity {
    Identity {
        subject: format!("sub-{email}"),
        email: Some(email.into()),
        email_verified: Some(true),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        claims: claims.as_object().cloned().unwrap_or_default().into(),
        ..Identity::default()
    }
}

/// A request by `who` (GET /, from 10.1.2.3, at 2026-12-07 10:00 UTC, a
/// Monday).
fn input(who: Option<&Identity>) -> Input<'_> {
    Input {
        identity: who,
        method: Some("GET"),
        path: "/",
        source_ip: Some("10.1.2.3".parse().unwrap()),
        preflight: false,
        now: 1_796_637_600,
    }
}

/// allow / deny / sign_in, as Pomerium's authorize service decides.
fn decide(p: &Ppl, input: &Input<'_>) -> &'static str {
    let (allow, deny) = p.evaluate(input, &mut NoTrace);
    if allow.needs_login || deny.needs_login {
        "sign_in"
    } else if deny.value || !allow.value {
        "deny"
    } else {
        "allow"
    }
}

fn who(p: &Ppl, identity: &Identity) -> &'static str {
    decide(p, &input(Some(identity)))
}

/// "At a Glance": allow the domain, deny two addresses.
#[test]
fn at_a_glance() {
    let p = policy(
        "allow:\n  and:\n    - domain:\n        is: example.com\ndeny:\n  or:\n    - email:\n        is: user2@example.com\n    - email:\n        is: user3@example.com\n",
    );
    assert_eq!(
        who(&p, &person("user1@example.com", &[], json!({}))),
        "allow"
    );
    assert_eq!(
        who(&p, &person("user2@example.com", &[], json!({}))),
        "deny"
    );
    assert_eq!(
        who(&p, &person("USER3@example.com", &[], json!({}))),
        "deny"
    );
    assert_eq!(who(&p, &person("user1@other.com", &[], json!({}))), "deny");
    assert_eq!(decide(&p, &input(None)), "sign_in");
}

/// "More on Logical Operators": the four operators over
/// `domain is example.com` (A) and `claim/groups: admin` (B).
#[test]
fn logical_operators() {
    let cases = [
        // (operator, A∧B, A only, B only, neither)
        ("and", "allow", "deny", "deny", "deny"),
        ("or", "allow", "allow", "allow", "deny"),
        ("not", "deny", "deny", "deny", "allow"),
        ("nor", "deny", "allow", "allow", "allow"),
    ];
    let both = person("a@example.com", &[], json!({"groups": ["admin"]}));
    let a_only = person("a@example.com", &[], json!({"groups": ["staff"]}));
    let b_only = person("a@other.com", &[], json!({"groups": ["admin"]}));
    let neither = person("a@other.com", &[], json!({}));
    for (op, ab, a, b, none) in cases {
        let p = policy(&format!(
            "allow:\n  {op}:\n    - domain:\n        is: example.com\n    - claim/groups: admin\n"
        ));
        assert_eq!(who(&p, &both), ab, "{op}: A and B");
        assert_eq!(who(&p, &a_only), a, "{op}: A only");
        assert_eq!(who(&p, &b_only), b, "{op}: B only");
        assert_eq!(who(&p, &neither), none, "{op}: neither");
        // Nobody signed in: every one of them asks for a sign-in.
        assert_eq!(decide(&p, &input(None)), "sign_in", "{op}: anonymous");
    }
}

/// "Multiple Operators in a Rule" and its equivalent list of rules: OR-ed.
#[test]
fn several_operators_and_several_rules() {
    let one = policy(
        "allow:\n  and:\n    - claim/family_name: Smith\n  or:\n    - domain:\n        is: domain1.com\n    - domain:\n        is: domain2.com\n",
    );
    let list = policy(
        "- allow:\n    and:\n      - claim/family_name: Smith\n- allow:\n    or:\n      - domain:\n          is: domain1.com\n      - domain:\n          is: domain2.com\n",
    );
    let smith = person("s@elsewhere.org", &[], json!({"family_name": "Smith"}));
    let d2 = person("x@domain2.com", &[], json!({"family_name": "Jones"}));
    let nobody = person("x@domain3.com", &[], json!({"family_name": "Jones"}));
    for p in [&one, &list] {
        assert_eq!(who(p, &smith), "allow");
        assert_eq!(who(p, &d2), "allow");
        assert_eq!(who(p, &nobody), "deny");
    }
}

/// The criteria example: a claim, and `deny: not: http_method is GET`
/// (only GET allowed).
#[test]
fn deny_with_not() {
    let p = policy(
        "allow:\n  and:\n    - claim/family_name: Smith\ndeny:\n  not:\n    - http_method:\n        is: GET\n",
    );
    let smith = person("s@x.org", &[], json!({"family_name": "Smith"}));
    assert_eq!(who(&p, &smith), "allow");
    let mut post = input(Some(&smith));
    post.method = Some("POST");
    assert_eq!(decide(&p, &post), "deny");
    // A deny about the request refuses before any sign-in.
    let mut anonymous_post = input(None);
    anonymous_post.method = Some("POST");
    assert_eq!(decide(&p, &anonymous_post), "sign_in");
    let only_method =
        policy("allow:\n  and:\n    - accept: true\ndeny:\n  not:\n    - http_method: GET\n");
    assert_eq!(decide(&only_method, &anonymous_post), "deny");
    assert_eq!(decide(&only_method, &input(None)), "allow");
}

/// String matchers: each operator, a bare value as `is`, several ANDed.
#[test]
fn string_matchers() {
    let alice = person("admin@corp.example", &[], json!({}));
    let bob = person("bob@corp.example", &[], json!({}));
    let cases = [
        ("email:\n        starts_with: 'admin@'", true, false),
        ("email:\n        ends_with: '@corp.example'", true, true),
        ("email:\n        contains: min", true, false),
        (
            "email:\n        in: ['admin@corp.example', 'x@y.z']",
            true,
            false,
        ),
        (
            "email:\n        not_in: ['admin@corp.example']",
            false,
            true,
        ),
        ("email:\n        not: admin@corp.example", false, true),
        ("email: bob@corp.example", false, true),
        (
            "email:\n        ends_with: '@corp.example'\n        starts_with: bob",
            false,
            true,
        ),
        ("user: sub-bob@corp.example", false, true),
    ];
    for (criterion, admits_alice, admits_bob) in cases {
        let p = policy(&format!("allow:\n  and:\n    - {criterion}\n"));
        let want = |b| if b { "allow" } else { "deny" };
        assert_eq!(who(&p, &alice), want(admits_alice), "{criterion}: alice");
        assert_eq!(who(&p, &bob), want(admits_bob), "{criterion}: bob");
    }
}

/// `groups` (from the ID token) and `claim/…` list matchers.
#[test]
fn list_matchers() {
    let p = policy("allow:\n  or:\n    - groups:\n        has: devops\n");
    assert_eq!(
        who(&p, &person("a@b.c", &["dev", "devops"], json!({}))),
        "allow"
    );
    assert_eq!(
        who(&p, &person("a@b.c", &["developers"], json!({}))),
        "deny"
    );
    let bare = policy("allow:\n  or:\n    - groups: devops\n");
    assert_eq!(
        who(&bare, &person("a@b.c", &["devops"], json!({}))),
        "allow"
    );
    let only = policy("allow:\n  and:\n    - groups:\n        is: devops\n");
    assert_eq!(
        who(&only, &person("a@b.c", &["devops"], json!({}))),
        "allow"
    );
    assert_eq!(
        who(&only, &person("a@b.c", &["devops", "x"], json!({}))),
        "deny"
    );
    let exclude = policy(
        "allow:\n  and:\n    - authenticated_user: true\n    - groups:\n        exclude: contractors\n",
    );
    assert_eq!(
        who(&exclude, &person("a@b.c", &["staff"], json!({}))),
        "allow"
    );
    assert_eq!(
        who(&exclude, &person("a@b.c", &["contractors"], json!({}))),
        "deny"
    );
    // Claims: scalar or list, typed, nested by path.
    let claims = policy(
        "allow:\n  or:\n    - claim/department: eng\n    - claim/level: 3\n    - claim/org/unit: platform\n",
    );
    assert_eq!(
        who(&claims, &person("a@b.c", &[], json!({"department": "eng"}))),
        "allow"
    );
    assert_eq!(
        who(
            &claims,
            &person("a@b.c", &[], json!({"department": ["ops", "eng"]}))
        ),
        "allow"
    );
    assert_eq!(
        who(&claims, &person("a@b.c", &[], json!({"level": 3}))),
        "allow"
    );
    assert_eq!(
        who(&claims, &person("a@b.c", &[], json!({"level": "3"}))),
        "deny"
    );
    assert_eq!(
        who(
            &claims,
            &person("a@b.c", &[], json!({"org": {"unit": "platform"}}))
        ),
        "allow"
    );
    assert_eq!(who(&claims, &person("a@b.c", &[], json!({}))), "deny");
}

/// Request criteria: method, path, source address, preflight.
#[test]
fn request_criteria() {
    let p = policy(
        "allow:\n  and:\n    - source_ip: [10.0.0.0/8, '2001:db8::/32']\n    - http_path:\n        starts_with: /api/\n",
    );
    let alice = person("a@b.c", &[], json!({}));
    let mut i = input(Some(&alice));
    assert_eq!(decide(&p, &i), "deny", "path /");
    i.path = "/api/x";
    assert_eq!(decide(&p, &i), "allow");
    // Not about the user: allowed without a sign-in.
    let mut anonymous = input(None);
    anonymous.path = "/api/x";
    assert_eq!(decide(&p, &anonymous), "allow");
    i.source_ip = Some("192.168.1.1".parse().unwrap());
    assert_eq!(decide(&p, &i), "deny");
    i.source_ip = Some("::ffff:10.9.9.9".parse::<IpAddr>().unwrap());
    assert_eq!(decide(&p, &i), "allow", "IPv4-mapped");
    i.source_ip = Some("2001:db8::1".parse().unwrap());
    assert_eq!(decide(&p, &i), "allow");
    i.source_ip = None;
    assert_eq!(decide(&p, &i), "deny", "unknown address");

    let cors =
        policy("allow:\n  or:\n    - cors_preflight: true\n    - authenticated_user: true\n");
    let mut preflight = input(None);
    preflight.preflight = true;
    assert_eq!(decide(&cors, &preflight), "allow");
    assert_eq!(decide(&cors, &input(None)), "sign_in");
}

/// `date`, `day_of_week` and `time_of_day` against the clock (the input
/// is Monday 2026-12-07 10:00 UTC = 11:00 in Berlin).
#[test]
fn time_criteria() {
    let alice = person("a@b.c", &[], json!({}));
    let cases = [
        (
            "date:\n        after: 2020-01-02T16:20:00\n        before: 2150-01-02T16:20:00",
            true,
        ),
        ("date:\n        before: 2026-12-07", false),
        ("date:\n        after: 2026-12-07T10:30:00+00:00", false),
        ("day_of_week: mon-fri", true),
        ("day_of_week: tue-fri", false),
        ("day_of_week: sat,sun,monday", true),
        ("day_of_week: fri-mon", true),
        ("day_of_week: '*'", true),
        (
            "time_of_day:\n        timezone: Europe/Berlin\n        after: '10:59'\n        before: 4:30PM",
            true,
        ),
        (
            "time_of_day:\n        timezone: UTC\n        after: 2:20:00\n        before: 9 AM",
            false,
        ),
        (
            "time_of_day:\n        timezone: America/Phoenix\n        after: 2:59 AM\n        before: 3:04 AM",
            true,
        ),
    ];
    for (criterion, admits) in cases {
        let p = policy(&format!("allow:\n  and:\n    - {criterion}\n"));
        assert_eq!(
            who(&p, &alice),
            if admits { "allow" } else { "deny" },
            "{criterion}"
        );
    }
}

/// Anything that could silently never (or always) match is refused.
#[test]
fn refused_policies() {
    let refused = [
        (
            "allow:\n  and:\n    - device:\n        type: any\n",
            "cannot evaluate `device`",
        ),
        (
            "allow:\n  and:\n    - client_certificate:\n        fingerprint: ab\n",
            "TLS certificate",
        ),
        (
            "allow:\n  and:\n    - record:\n        type: x\n",
            "cannot evaluate `record`",
        ),
        (
            "allow:\n  and:\n    - mcp_tool: query\n",
            "cannot evaluate `mcp_tool`",
        ),
        (
            "allow:\n  and:\n    - emial: a@b.c\n",
            "unknown criterion `emial`",
        ),
        (
            "allow:\n  xor:\n    - accept: true\n",
            "`xor` is not an operator",
        ),
        (
            "permit:\n  and:\n    - accept: true\n",
            "`permit` is not an action",
        ),
        (
            "allow:\n  and:\n    - email: [a@b.c, d@e.f]\n",
            "write `in: [...]`",
        ),
        (
            "allow:\n  and:\n    - email:\n        matches: x\n",
            "`matches` is not a string matcher",
        ),
        (
            "allow:\n  and:\n    - groups:\n        contains: x\n",
            "not a list matcher",
        ),
        (
            "allow:\n  and:\n    - source_ip: 10.0.0.0/33\n",
            "not an IP address",
        ),
        (
            "allow:\n  and:\n    - time_of_day:\n        after: 9AM\n",
            "needs a `timezone`",
        ),
        (
            "allow:\n  and:\n    - time_of_day:\n        timezone: Mars/Olympus\n        after: 9AM\n",
            "not a time zone",
        ),
        (
            "allow:\n  and:\n    - time_of_day:\n        timezone: UTC\n        after: 22:00\n        before: 6:00\n",
            "across midnight",
        ),
        ("allow:\n  and:\n    - day_of_week: funday\n", "not a day"),
        (
            "allow:\n  and:\n    - date:\n        after: yesterday\n",
            "ISO-8601",
        ),
        ("allow:\n  and:\n    - claim: x\n", "claim's name"),
        ("allow:\n  and:\n    - email/x: a\n", "takes no sub-path"),
        ("allow: yes\n", "expected operators"),
        ("allow:\n  and: x\n", "takes a list of criteria"),
        ("42\n", "expected a rule"),
    ];
    for (yaml, message) in refused {
        let value: Value = serde_saphyr::from_str(yaml).unwrap();
        let errors = parse(&Tree::from_json(&value)).expect_err(yaml);
        assert!(
            errors.iter().any(|e| e.message.contains(message)),
            "{yaml}: {errors:?}"
        );
    }
}

/// `explain` names every criterion and the one that refused.
#[test]
fn explanation_names_the_unmet_criterion() {
    let p = policy("allow:\n  and:\n    - groups:\n        has: devops\n");
    let dev = person("d@corp.example", &["developers"], json!({}));
    let mut explain = Explain::with_lines();
    p.evaluate(&input(Some(&dev)), &mut explain);
    let lines = explain.lines.unwrap();
    assert_eq!(
        explain.unmet_allow,
        ["needs group devops; you are in: developers"]
    );
    assert!(lines[0].contains("group devops"), "{lines:?}");
    assert!(lines[0].ends_with("no"), "{lines:?}");
}
