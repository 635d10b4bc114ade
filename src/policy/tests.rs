#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use url::Url;

use super::route::{RouteConfig, RouteField};
use super::*;

/// A route from `from` plus a setter for the rest.
fn route(index: usize, from: &str, set: impl FnOnce(&mut RouteConfig)) -> RouteConfig {
    let mut r = RouteConfig {
        index,
        from: Url::parse(from).unwrap(),
        allow_any_authenticated_user: true,
        ..RouteConfig::default()
    };
    set(&mut r);
    r
}

fn compile(routes: Vec<RouteConfig>) -> Policy {
    Policy::compile(Routes::parse(routes).unwrap())
}

fn user() -> Identity {
    Identity {
        subject: "CiQxMjM0".into(),
        email: Some("alice@company.com".into()),
        email_verified: Some(true),
        groups: vec!["staff".into()],
        ..Identity::default()
    }
}

/// The verdict for a URL, signed in as `user()`; `None` when the URL does
/// not parse.
fn verdict(policy: &Policy, url: &str) -> Option<Verdict> {
    let target = Target::parse(url).ok()?;
    Some(policy.evaluate(&target, &Facts::who(Some(&user()))))
}

fn allowed(route: u32) -> Option<Verdict> {
    Some(Verdict::Allow {
        route: RouteId(route),
    })
}

const NO_ROUTE: Option<Verdict> = Some(Verdict::Deny {
    route: None,
    reason: DenyReason::NoRoute,
});

/// `prefix` matches whole segments; `path` is exact; `regex` is anchored.
#[test]
fn path_matchers_table() {
    let policy = compile(vec![
        route(0, "https://app.example.com", |r| {
            r.prefix = Some("/api".into())
        }),
        route(1, "https://app.example.com", |r| {
            r.prefix = Some("/static/".into())
        }),
        route(2, "https://app.example.com", |r| {
            r.path = Some("/exact".into())
        }),
        route(3, "https://app.example.com", |r| {
            r.regex = Some("/v[0-9]+/items".into())
        }),
        route(4, "https://app.example.com", |r| {
            r.prefix = Some("/my%20dir".into())
        }),
    ]);
    let cases: &[(&str, Option<Verdict>)] = &[
        ("/api", allowed(0)),
        ("/api/", allowed(0)),
        ("/api/x/y", allowed(0)),
        ("/apix", NO_ROUTE),
        ("/ap", NO_ROUTE),
        ("/static/", allowed(1)),
        ("/static/a.css", allowed(1)),
        ("/static", NO_ROUTE),
        ("/staticx/a", NO_ROUTE),
        ("/exact", allowed(2)),
        ("/exact/", NO_ROUTE),
        ("/exact/x", NO_ROUTE),
        ("/v1/items", allowed(3)),
        ("/v12/items", allowed(3)),
        ("/x/v1/items", NO_ROUTE),
        ("/v1/items/x", NO_ROUTE),
        ("/my%20dir/f", allowed(4)),
        ("/my dir", None),
        // Canonicalisation happens before matching.
        ("/%61pi/x", allowed(0)),
        ("//api", allowed(0)),
        // Dot segments: read as nginx resolves them and as written; both
        // must be allowed, and `/x/../api` as written is under no route.
        ("/x/../api", NO_ROUTE),
        ("/api/x/..", allowed(0)),
        ("/API", NO_ROUTE),
        ("/static/../exact", allowed(2)),
        ("/..", None),
        ("/%zz", None),
    ];
    for (path, want) in cases {
        let url = format!("https://app.example.com{path}");
        assert_eq!(verdict(&policy, &url), *want, "{path}");
    }
}

/// The query and fragment never take part in matching (GHSA-7rh7, GHSA-pxq7).
#[test]
fn query_and_fragment_never_match() {
    let policy = compile(vec![
        route(0, "https://app.example.com", |r| {
            r.prefix = Some("/public".into());
            r.allow_any_authenticated_user = false;
            r.allow_public_unauthenticated_access = true;
        }),
        route(1, "https://app.example.com", |r| {
            r.allow_any_authenticated_user = false;
            r.allowed_groups = vec!["admins".into()];
        }),
    ]);
    let anon = |url: &str| policy.evaluate(&Target::parse(url).unwrap(), &Facts::who(None));
    assert_eq!(
        anon("https://app.example.com/public/x"),
        Verdict::Public { route: RouteId(0) }
    );
    for url in [
        "https://app.example.com/private?x=/public",
        "https://app.example.com/private#/public",
        "https://app.example.com/private%3F/public",
        // A decoded `#` is a literal, as in nginx: this is `/private`.
        "https://app.example.com/public%23/../private",
    ] {
        assert_ne!(anon(url), Verdict::Public { route: RouteId(0) }, "{url}");
    }
    assert_eq!(
        anon("https://app.example.com/private?x=/public"),
        Verdict::NeedsLogin { route: RouteId(1) }
    );
}

/// Hosts: exact, wildcard at any depth (not the apex, not a loose suffix),
/// mixed case, trailing dot, default port, scheme and port must match.
#[test]
fn host_matching_table() {
    let policy = compile(vec![
        route(0, "https://a.b.example.com", |_| {}),
        route(1, "https://*.example.com", |_| {}),
        route(2, "https://app.example.org:8443", |_| {}),
        route(3, "http://plain.example.org", |_| {}),
        route(4, "https://[::1]", |_| {}),
    ]);
    let cases: &[(&str, Option<Verdict>)] = &[
        ("https://a.b.example.com/", allowed(0)),
        // Authelia CVE-2026-48794: mixed case must hit the same rule.
        ("https://a.B.example.com/", allowed(0)),
        ("https://A.B.EXAMPLE.COM/", allowed(0)),
        ("https://a.b.example.com./", allowed(0)),
        ("https://a.b.example.com:443/", allowed(0)),
        ("https://x.example.com/", allowed(1)),
        ("https://x.y.z.example.com/", allowed(1)),
        ("https://example.com/", NO_ROUTE),
        ("https://evilexample.com/", NO_ROUTE),
        ("https://x.example.com.evil.com/", NO_ROUTE),
        ("http://x.example.com/", NO_ROUTE),
        ("https://x.example.com:8443/", NO_ROUTE),
        ("https://app.example.org:8443/", allowed(2)),
        ("https://app.example.org/", NO_ROUTE),
        ("http://app.example.org:8443/", NO_ROUTE),
        ("http://plain.example.org/", allowed(3)),
        ("http://plain.example.org:80/", allowed(3)),
        ("https://plain.example.org/", NO_ROUTE),
        ("http://plain.example.org:443/", NO_ROUTE),
        ("https://[::1]/", allowed(4)),
        ("https://[0::1]:443/", allowed(4)),
        ("https://user@a.b.example.com/", None),
        ("https://a.b.example.com:99999/", None),
    ];
    for (url, want) in cases {
        assert_eq!(verdict(&policy, url), *want, "{url}");
    }
}

/// The first matching route in file order wins, across the exact, wildcard
/// and catch-all indexes.
#[test]
fn first_match_wins() {
    let deny_all = |r: &mut RouteConfig| r.allow_any_authenticated_user = false;
    let policy = compile(vec![
        route(0, "https://*.example.com", |r| {
            r.prefix = Some("/wild".into())
        }),
        route(1, "https://app.example.com", |r| {
            r.prefix = Some("/wild".into())
        }),
        route(2, "https://app.example.com", |r| {
            r.prefix = Some("/admin".into())
        }),
        route(3, "https://app.example.com", deny_all),
        route(4, "https://*.example.com", |_| {}),
        route(5, "https://*", |r| r.prefix = Some("/health".into())),
        route(6, "https://*", deny_all),
    ]);
    let denied = |i| {
        Some(Verdict::Deny {
            route: Some(RouteId(i)),
            reason: DenyReason::NotAllowed,
        })
    };
    let cases: &[(&str, Option<Verdict>)] = &[
        ("https://app.example.com/wild/x", allowed(0)),
        ("https://app.example.com/admin", allowed(2)),
        ("https://app.example.com/other", denied(3)),
        ("https://other.example.com/other", allowed(4)),
        ("https://other.example.com/health", allowed(4)),
        ("https://else.example.net/health", allowed(5)),
        ("https://else.example.net/x", denied(6)),
        ("http://else.example.net/x", NO_ROUTE),
    ];
    for (url, want) in cases {
        assert_eq!(verdict(&policy, url), *want, "{url}");
    }
}

/// Public routes need no identity; others ask for a login, then check rules.
#[test]
fn public_login_and_deny() {
    let policy = compile(vec![
        route(0, "https://app.example.com", |r| {
            r.path = Some("/status".into());
            r.allow_any_authenticated_user = false;
            r.allow_public_unauthenticated_access = true;
        }),
        route(1, "https://app.example.com", |r| {
            r.allow_any_authenticated_user = false;
            r.allowed_domains = vec!["company.com".into()];
        }),
    ]);
    let status = Target::parse("https://app.example.com/status").unwrap();
    let home = Target::parse("https://app.example.com/").unwrap();
    let elsewhere = Target::parse("https://other.example.com/").unwrap();
    assert_eq!(
        policy.evaluate(&status, &Facts::who(None)),
        Verdict::Public { route: RouteId(0) }
    );
    assert_eq!(
        policy.evaluate(&status, &Facts::who(Some(&user()))),
        Verdict::Public { route: RouteId(0) }
    );
    assert_eq!(
        policy.evaluate(&home, &Facts::who(None)),
        Verdict::NeedsLogin { route: RouteId(1) }
    );
    assert_eq!(
        policy.evaluate(&home, &Facts::who(Some(&user()))),
        Verdict::Allow { route: RouteId(1) }
    );
    let mut attacker = user();
    attacker.email = Some("attacker@evil.com@company.com".into());
    assert_eq!(
        policy.evaluate(&home, &Facts::who(Some(&attacker))),
        Verdict::Deny {
            route: Some(RouteId(1)),
            reason: DenyReason::NotAllowed
        }
    );
    // Deny by default, signed in or not.
    let no_route = Verdict::Deny {
        route: None,
        reason: DenyReason::NoRoute,
    };
    assert_eq!(policy.evaluate(&elsewhere, &Facts::who(None)), no_route);
    assert_eq!(
        policy.evaluate(&elsewhere, &Facts::who(Some(&user()))),
        no_route
    );
    assert_eq!(
        Policy::compile(Routes::default()).evaluate(&home, &Facts::who(Some(&user()))),
        no_route
    );
}

/// Each rule kind admits the right identity and only it.
#[test]
fn authorization_rules_table() {
    let rule = |set: fn(&mut RouteConfig)| {
        compile(vec![route(0, "https://app.example.com", |r| {
            r.allow_any_authenticated_user = false;
            set(r);
        })])
    };
    let groups = rule(|r| r.allowed_groups = vec!["admins".into()]);
    let users = rule(|r| r.allowed_users = vec!["Alice@Company.com".into()]);
    let domains = rule(|r| r.allowed_domains = vec!["company.com".into()]);
    let claims = rule(|r| r.allowed_idp_claims = vec![("groups".into(), vec![json!("admins")])]);
    let nothing = rule(|_| {});

    let mut admin = user();
    admin.groups = vec!["admins".into()];
    admin.claims.insert("groups".into(), json!(["admins"]));
    let mut bob = user();
    bob.email = Some("bob@elsewhere.com".into());
    let mut unverified = user();
    unverified.email_verified = Some(false);

    let target = Target::parse("https://app.example.com/").unwrap();
    let allows = |p: &Policy, id: &Identity| {
        matches!(
            p.evaluate(&target, &Facts::who(Some(id))),
            Verdict::Allow { .. }
        )
    };
    assert!(allows(&groups, &admin) && !allows(&groups, &user()));
    assert!(allows(&users, &user()) && !allows(&users, &bob) && !allows(&users, &unverified));
    assert!(allows(&domains, &user()) && !allows(&domains, &bob) && !allows(&domains, &unverified));
    assert!(allows(&claims, &admin) && !allows(&claims, &user()));
    assert!(!allows(&nothing, &admin));
}

#[test]
fn names_and_headers_flag() {
    let policy = compile(vec![
        route(0, "https://a.example.com", |r| r.id = Some("app".into())),
        route(1, "https://b.example.com", |r| {
            r.pass_identity_headers = false
        }),
    ]);
    assert_eq!(policy.len(), 2);
    assert_eq!(policy.route_name(RouteId(0)), "app");
    assert_eq!(policy.route_name(RouteId(1)), "route-1");
    assert!(policy.pass_identity_headers(RouteId(0)));
    assert!(!policy.pass_identity_headers(RouteId(1)));
    assert!(!policy.pass_identity_headers(RouteId(7)));
}

/// `serves_host` knows exact and wildcard hosts, never via the catch-all.
#[test]
fn serves_host_table() {
    let policy = compile(vec![
        route(0, "https://app.example.com", |_| {}),
        route(1, "https://*.corp.example.net", |_| {}),
        route(2, "https://*", |_| {}),
    ]);
    for (host, want) in [
        ("app.example.com", true),
        ("x.corp.example.net", true),
        ("x.y.corp.example.net", true),
        ("corp.example.net", false),
        ("evilcorp.example.net", false),
        ("example.com", false),
        ("evil.com", false),
        (".corp.example.net", false),
    ] {
        assert_eq!(policy.serves_host(host), want, "{host}");
    }
}

/// Every bad value is refused when the route is parsed, each error naming
/// its route and key, all at once.
#[test]
fn parse_errors_are_collected() {
    let routes = vec![
        route(0, "ftp://a.example.com", |_| {}),
        route(1, "https://a.example.com/path", |_| {}),
        route(2, "https://a_b.example.com", |_| {}),
        route(3, "https://a.*.example.com", |_| {}),
        route(4, "https://a.example.com", |r| {
            r.prefix = Some("/a".into());
            r.path = Some("/a".into());
        }),
        route(5, "https://a.example.com", |r| {
            r.prefix = Some("api".into())
        }),
        route(6, "https://a.example.com", |r| r.regex = Some("(".into())),
        route(7, "https://a.example.com", |r| {
            r.allowed_domains = vec!["a@b.com".into()]
        }),
        route(8, "https://a.example.com", |r| {
            r.allowed_idp_claims = vec![("x".into(), vec![json!(null)])]
        }),
        route(9, "https://u:p@a.example.com", |_| {}),
        route(10, "https://a.example.com", |r| {
            r.prefix = Some("/a%zz".into())
        }),
    ];
    let errors = Routes::parse(routes).unwrap_err();
    let text = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(errors.len(), 11, "{text}");
    for i in 0..11 {
        assert!(
            text.contains(&format!("routes[{i}].")),
            "routes[{i}] missing in:\n{text}"
        );
    }
    assert!(text.contains("routes[4].path: `prefix`, `path` and `regex` exclude each other"));
    assert!(text.contains("routes[8].allowed_idp_claims[0][0]: expected a string"));
}

/// Names are unique, `route-<index>` of a route without `id` included:
/// the clash is placed on the `id` that makes it.
#[test]
fn route_names_are_unique() {
    let clash = vec![
        route(0, "https://a.example.com", |_| {}),
        route(1, "https://b.example.com", |r| {
            r.id = Some("route-0".into())
        }),
    ];
    let errors = Routes::parse(clash).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].route, errors[0].field), (1, RouteField::Id));
    let twice = vec![
        route(0, "https://a.example.com", |r| r.id = Some("app".into())),
        route(1, "https://b.example.com", |r| r.id = Some("app".into())),
        route(2, "https://c.example.com", |r| r.id = Some("app".into())),
    ];
    let errors = Routes::parse(twice).unwrap_err();
    assert_eq!(
        errors.iter().map(|e| e.route).collect::<Vec<_>>(),
        [1, 2],
        "{errors:?}"
    );
}

/// Among thousands of hosts the index finds the right route, and still
/// applies its path matcher (speed is measured in `benches/policy.rs`).
#[test]
fn thousands_of_hosts() {
    let routes: Vec<_> = (0..5000)
        .map(|i| {
            route(i, &format!("https://h{i}.example.com"), |r| {
                r.prefix = Some("/api".into())
            })
        })
        .collect();
    let policy = compile(routes);
    assert_eq!(
        verdict(&policy, "https://h4999.example.com/api/x"),
        allowed(4999)
    );
    assert_eq!(verdict(&policy, "https://h4999.example.com/apix"), NO_ROUTE);
}

/// A CORS preflight passes unauthenticated, and a method passes a route's
/// `allowed_methods`, only when every reading of the path allows it: the
/// dots-kept reading of `/admin/../api/x` is under `/admin`, which takes no
/// preflights; that of `/ro/../rw/x` is under the GET-only `/ro`.
#[test]
fn preflight_and_methods_hold_for_every_reading() {
    let policy = compile(vec![
        route(0, "https://app.example.com", |r| {
            r.prefix = Some("/api".into());
            r.cors_allow_preflight = true;
        }),
        route(1, "https://app.example.com", |r| {
            r.prefix = Some("/admin".into());
        }),
        route(2, "https://app.example.com", |r| {
            r.prefix = Some("/ro".into());
            r.allowed_methods = vec!["GET".into()];
        }),
        route(3, "https://app.example.com", |r| {
            r.prefix = Some("/rw".into());
        }),
    ]);
    let target = |url| Target::parse(url).unwrap();
    assert_eq!(
        policy.preflight_route(&target("https://app.example.com/api/x")),
        Some(RouteId(0))
    );
    for url in [
        "https://app.example.com/admin/../api/x",
        "https://app.example.com/admin/%2e%2e/api/x",
        "https://app.example.com/admin/x",
    ] {
        assert_eq!(policy.preflight_route(&target(url)), None, "{url}");
    }
    let user = user();
    let refuses = |url, method| match policy.evaluate(
        &target(url),
        &Facts {
            method,
            ..Facts::who(Some(&user))
        },
    ) {
        Verdict::Deny {
            route,
            reason: DenyReason::MethodNotAllowed,
        } => route,
        _ => None,
    };
    assert_eq!(refuses("https://app.example.com/rw/x", Some("POST")), None);
    for url in [
        "https://app.example.com/ro/../rw/x",
        "https://app.example.com/ro/%2e%2e/rw/x",
        "https://app.example.com/ro/x",
    ] {
        assert_eq!(refuses(url, Some("POST")), Some(RouteId(2)), "{url}");
    }
    assert_eq!(refuses("https://app.example.com/ro/x", Some("GET")), None);
}

/// The proxy's conditions: with a route both must allow; on a host no
/// route serves they are the whole policy (named `proxy-conditions`); with
/// neither, no route.
#[test]
fn proxy_conditions_with_and_without_a_route() {
    let policy = compile(vec![
        route(0, "https://app.example.com", |_| {}),
        route(1, "https://open.example.com", |r| {
            r.allow_any_authenticated_user = false;
            r.allow_public_unauthenticated_access = true;
        }),
    ]);
    let staff = ProxyConditions::from_query(Some("allowed_groups=staff"));
    let ops = ProxyConditions::from_query(Some("allowed_groups=ops"));
    let ask = |url: &str, who: Option<&Identity>, conditions: &ProxyConditions<'_>| {
        let target = Target::parse(url).unwrap();
        policy.evaluate(
            &target,
            &Facts {
                conditions,
                ..Facts::who(who)
            },
        )
    };
    let alice = user();
    let proxy = RouteId(2);
    assert_eq!(policy.route_name(proxy), PROXY_ROUTE_NAME);

    // A route and conditions: both.
    let app = "https://app.example.com/x";
    assert_eq!(
        ask(app, Some(&alice), &staff),
        Verdict::Allow { route: RouteId(0) }
    );
    assert_eq!(
        ask(app, Some(&alice), &ops),
        Verdict::Deny {
            route: Some(RouteId(0)),
            reason: DenyReason::NotAllowed
        }
    );
    assert_eq!(
        ask(app, None, &ops),
        Verdict::NeedsLogin { route: RouteId(0) }
    );
    // A public route with conditions needs someone to check them on.
    let open = "https://open.example.com/";
    assert_eq!(
        ask(open, None, &ProxyConditions::NONE),
        Verdict::Public { route: RouteId(1) }
    );
    assert_eq!(
        ask(open, None, &staff),
        Verdict::NeedsLogin { route: RouteId(1) }
    );
    assert_eq!(
        ask(open, Some(&alice), &staff),
        Verdict::Allow { route: RouteId(1) }
    );

    // No route: the conditions alone.
    let other = "https://wiki.example.com/";
    assert_eq!(
        ask(other, Some(&alice), &staff),
        Verdict::Allow { route: proxy }
    );
    assert_eq!(
        ask(other, None, &staff),
        Verdict::NeedsLogin { route: proxy }
    );
    assert_eq!(
        ask(other, Some(&alice), &ops),
        Verdict::Deny {
            route: Some(proxy),
            reason: DenyReason::NotAllowed
        }
    );
    assert_eq!(
        Some(ask(other, Some(&alice), &ProxyConditions::NONE)),
        NO_ROUTE
    );
    // Every method on the proxy's route.
    let target = Target::parse(other).unwrap();
    let delete = Facts {
        method: Some("DELETE"),
        conditions: &staff,
        ..Facts::who(Some(&alice))
    };
    assert_eq!(
        policy.evaluate(&target, &delete),
        Verdict::Allow { route: proxy }
    );
}
