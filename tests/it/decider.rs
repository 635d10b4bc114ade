//! The `Decider` on its own. Every decision starts with `try_now` (no
//! I/O); when that stops for the store or the provider, `finish` goes on
//! from there. Table tests: each case's verdict, whether `try_now` can make
//! it alone, and that `try_now` + `finish` answer what `decide` does —
//! against the memory store, and against the fully wired decider of a
//! running stack (refresh, Bearer tokens, the handoff host).

use std::sync::Arc;
use std::time::Duration;

use authgate::clock::{SharedClock, SystemClock};
use authgate::config::{RouteConfig, Routes, Secret};
use authgate::decision::{Decider, Decision, Request, Step};
use authgate::identity::Identity;
use authgate::policy::{Policy, ProxyConditions, RouteId, Target};
use authgate::session::{MemoryStore, Sealer, Sessions};
use url::Url;

/// `app.example.com`: `/api` lets CORS preflights through, the rest needs
/// group `devops`; `other.example.com`: any signed-in user.
fn routes() -> Vec<RouteConfig> {
    let route = |index, from: &str, set: &dyn Fn(&mut RouteConfig)| {
        let mut r = RouteConfig {
            index,
            from: Url::parse(from).unwrap(),
            ..RouteConfig::default()
        };
        set(&mut r);
        r
    };
    vec![
        route(0, "https://app.example.com", &|r| {
            r.prefix = Some("/api".into());
            r.cors_allow_preflight = true;
            r.allowed_groups = vec!["devops".into()];
        }),
        route(1, "https://app.example.com", &|r| {
            r.allowed_groups = vec!["devops".into()];
        }),
        route(2, "https://other.example.com", &|r| {
            r.allow_any_authenticated_user = true;
        }),
    ]
}

fn new_sessions(store: Arc<MemoryStore>) -> Arc<Sessions> {
    let clock: SharedClock = Arc::new(SystemClock);
    let sealer = Sealer::new(&Secret::new([7u8; 32].to_vec()), &[]).unwrap();
    Arc::new(Sessions::new(
        sealer,
        store,
        clock,
        Duration::from_secs(3600),
    ))
}

fn new_decider(sessions: Arc<Sessions>) -> Decider {
    Decider::new(sessions, &Url::parse("https://auth.example.com").unwrap())
}

fn person(groups: &[&str]) -> Identity {
    Identity {
        subject: "CgVhbGljZQ".into(),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Identity::default()
    }
}

/// A decision reduced to what a front end answers with.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Allow(RouteId, bool),
    SignIn(RouteId),
    Deny(Option<RouteId>),
    Unavailable,
}

fn outcome(decision: &Decision) -> Outcome {
    match decision {
        Decision::Allow { route, session, .. } => Outcome::Allow(*route, session.is_some()),
        Decision::SignIn { route, .. } => Outcome::SignIn(*route),
        Decision::Deny { route, .. } => Outcome::Deny(*route),
        Decision::Unavailable => Outcome::Unavailable,
    }
}

/// One row: name, URL, cookie, method, preflight, the outcome both paths
/// must answer, and whether the synchronous path can answer it at all.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    bool,
    Outcome,
    bool,
);

fn request<'a>(
    target: &'a Result<Target<'a>, authgate::policy::TargetError>,
    cookie: Option<&'a str>,
    method: &'a str,
    preflight: bool,
) -> Request<'a, std::option::IntoIter<&'a str>> {
    Request {
        target,
        session_cookies: cookie.into_iter(),
        method: Some(method),
        authorization: None,
        preflight,
        source_ip: None,
        conditions: &ProxyConditions::NONE,
    }
}

/// Each case through both paths: the verdict expected, and whether the
/// synchronous path can answer it (a session not in this replica's cache
/// needs the store).
#[tokio::test]
async fn both_decide_paths_agree() {
    let store = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let sessions = new_sessions(store.clone());
    let decider = new_decider(sessions.clone());
    let (devops, _) = sessions
        .create(person(&["devops"]), None, i64::MAX)
        .await
        .unwrap();
    let (users, _) = sessions
        .create(person(&["users"]), None, i64::MAX)
        .await
        .unwrap();
    let (revoked, _) = sessions
        .create(person(&["devops"]), None, i64::MAX)
        .await
        .unwrap();
    sessions.revoke(&revoked).await.unwrap();
    let resolved = sessions.resolve(&devops).await.unwrap().unwrap();
    let other_host_only = sessions.host_cookie(&resolved, "other.example.com");
    let mut tampered = devops.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let app = "https://app.example.com/x";
    let api = "https://app.example.com/api/items";
    let other = "https://other.example.com/";
    let cases: [Case; 11] = [
        (
            "no session",
            app,
            None,
            "GET",
            false,
            Outcome::SignIn(RouteId(1)),
            true,
        ),
        (
            "cached, allowed",
            app,
            Some(&devops),
            "GET",
            false,
            Outcome::Allow(RouteId(1), true),
            true,
        ),
        (
            "cached, not in the group",
            app,
            Some(&users),
            "GET",
            false,
            Outcome::Deny(Some(RouteId(1))),
            true,
        ),
        (
            "revoked",
            app,
            Some(&revoked),
            "GET",
            false,
            Outcome::SignIn(RouteId(1)),
            false,
        ),
        (
            "tampered",
            app,
            Some(&tampered),
            "GET",
            false,
            Outcome::SignIn(RouteId(1)),
            true,
        ),
        (
            "preflight",
            api,
            None,
            "OPTIONS",
            true,
            Outcome::Allow(RouteId(0), false),
            true,
        ),
        (
            "preflight up and out of the route",
            "https://app.example.com/x/../api/y",
            None,
            "OPTIONS",
            true,
            Outcome::SignIn(RouteId(0)),
            true,
        ),
        (
            "host cookie on its host",
            other,
            Some(&other_host_only),
            "GET",
            false,
            Outcome::Allow(RouteId(2), true),
            true,
        ),
        (
            "host cookie elsewhere",
            app,
            Some(&other_host_only),
            "GET",
            false,
            Outcome::SignIn(RouteId(1)),
            true,
        ),
        (
            "no route",
            "https://nowhere.example.com/",
            Some(&devops),
            "GET",
            false,
            Outcome::Deny(None),
            true,
        ),
        (
            "unusable URL",
            "https://app.example.com#/x",
            Some(&devops),
            "GET",
            false,
            Outcome::Deny(None),
            true,
        ),
    ];
    let policy = Policy::compile(Routes::parse(routes()).unwrap());
    for (name, url, cookie, method, preflight, expected, sync) in cases {
        let target = Target::parse(url);
        let ask = || request(&target, cookie, method, preflight);
        let whole = decider.decide(&policy, ask()).await;
        assert_eq!(outcome(&whole), expected, "{name}: decide");
        match decider.try_now(&policy, ask()) {
            Step::Done(now) => {
                assert!(sync, "{name}: try_now decided without the store");
                assert_eq!(outcome(&now), expected, "{name}: try_now");
            }
            Step::NeedsIo(pending) => {
                assert!(!sync, "{name}: try_now needed I/O");
                let later = decider.finish(&policy, pending).await;
                assert_eq!(outcome(&later), expected, "{name}: finish");
            }
        }
    }

    // A replica whose cache has never seen the session: `try_now` defers
    // to the store, and `finish` finds it there.
    // Another replica: its own `Sessions` on the same store and secret.
    let replica = new_decider(new_sessions(store));
    let target = Target::parse(app);
    let ask = || request(&target, Some(&devops), "GET", false);
    let Step::NeedsIo(pending) = replica.try_now(&policy, ask()) else {
        panic!("an uncached session needs the store");
    };
    let found = replica.finish(&policy, pending).await;
    assert_eq!(outcome(&found), Outcome::Allow(RouteId(1), true));
    // Now it is cached there too.
    let Step::Done(now) = replica.try_now(&policy, ask()) else {
        panic!("cached now");
    };
    assert_eq!(outcome(&now), Outcome::Allow(RouteId(1), true));
}

/// What the fully wired decider of a running stack (refresher, Bearer
/// verifier, handoff domain) does with the requests that need I/O: each
/// case stops in `try_now` and is finished by `finish`, with the verdict
/// `decide` gives.
#[tokio::test]
async fn io_cases_stop_in_try_now_and_finish() {
    use crate::fixture::{Stack, default_routes, route};
    let mut routes = default_routes();
    routes.push(route(3, "https://elsewhere.example.org", None, &[]));
    let stack = Stack::start_with(routes, |config| {
        config.cookie.domain = Some("example.test".into());
    })
    .await;
    let app_url = "https://app.example.test/x";
    let cookie = stack.login("alice@example.com", app_url).await;
    let (access, _) = stack
        .idp
        .tokens_for("alice@example.com", crate::fixture::CLIENT_ID)
        .unwrap()
        .expect("alice");
    let decider = stack.app.decider();
    let policy = stack.app.policy();
    let bearer = format!("Bearer {access}");
    let forged = format!("Bearer {}x", access);

    let decide = |url: &'static str, cookie: Option<String>, authorization: Option<String>| {
        let policy = policy.clone();
        async move {
            let target = Target::parse(url);
            let ask = || Request {
                target: &target,
                session_cookies: cookie.as_deref().into_iter(),
                method: Some("GET"),
                authorization: authorization.as_deref(),
                preflight: false,
                source_ip: None,
                conditions: &ProxyConditions::NONE,
            };
            // Stepped first: a refresh it does is not due for `decide`.
            let stepped = match decider.try_now(&policy, ask()) {
                Step::Done(decision) => (false, decision),
                Step::NeedsIo(pending) => (true, decider.finish(&policy, pending).await),
            };
            let whole = decider.decide(&policy, ask()).await;
            (whole, stepped)
        }
    };
    // (name, URL, cookie, Authorization, must stop for I/O, verdict)
    type Row = (
        &'static str,
        &'static str,
        Option<String>,
        Option<String>,
        bool,
        Outcome,
    );
    let cases: Vec<Row> = vec![
        (
            "cached session",
            app_url,
            Some(cookie.clone()),
            None,
            false,
            Outcome::Allow(RouteId(1), true),
        ),
        (
            "bearer token",
            app_url,
            None,
            Some(bearer.clone()),
            true,
            Outcome::Allow(RouteId(1), true),
        ),
        (
            "forged bearer token, no cookie",
            app_url,
            None,
            Some(forged.clone()),
            true,
            Outcome::SignIn(RouteId(1)),
        ),
        (
            "forged bearer token beside a session cookie",
            app_url,
            Some(cookie.clone()),
            Some(forged),
            true,
            Outcome::Allow(RouteId(1), true),
        ),
        (
            "host outside the cookie domain",
            "https://elsewhere.example.org/page",
            None,
            None,
            false,
            Outcome::SignIn(RouteId(3)),
        ),
    ];
    for (name, url, cookie, authorization, io, expected) in cases {
        let (whole, (stopped, stepped)) = decide(url, cookie, authorization).await;
        assert_eq!(outcome(&whole), expected, "{name}: decide");
        assert_eq!(outcome(&stepped), expected, "{name}: try_now + finish");
        assert_eq!(stopped, io, "{name}: stopped for I/O");
        if let Decision::SignIn {
            sign_in_url,
            invalid_token,
            ..
        } = &stepped
        {
            assert_eq!(*invalid_token, name.starts_with("forged"), "{name}");
            if url.contains("example.org") {
                // Its own handoff start, not the login host.
                assert!(
                    sign_in_url.starts_with("https://elsewhere.example.org/.authgate/start?rd="),
                    "{name}: {sign_in_url}"
                );
            } else {
                assert!(
                    sign_in_url.starts_with(&stack.base),
                    "{name}: {sign_in_url}"
                );
            }
        }
    }

    // Refresh due: the cached session stops in `try_now` and `finish`
    // refreshes it with the provider, which vouches for alice again.
    let before = stack
        .app
        .sessions()
        .resolve(&cookie)
        .await
        .unwrap()
        .unwrap()
        .record
        .refreshed_at;
    stack
        .clock
        .advance(stack.config.refresh_interval.as_secs() as i64 + 1);
    let (whole, (stopped, stepped)) = decide(app_url, Some(cookie.clone()), None).await;
    assert!(stopped, "a due refresh needs the provider");
    assert_eq!(outcome(&whole), Outcome::Allow(RouteId(1), true));
    assert_eq!(outcome(&stepped), Outcome::Allow(RouteId(1), true));
    let Decision::Allow {
        session: Some(record),
        ..
    } = &stepped
    else {
        panic!("allowed with a session");
    };
    assert!(record.refreshed_at > before, "refreshed");
    // Refreshed: the next decision needs no I/O again.
    let (_, (stopped, _)) = decide(app_url, Some(cookie.clone()), None).await;
    assert!(!stopped, "refreshed sessions are decided from the cache");

    // Revoked everywhere: the cached copy is dropped with it.
    stack.app.sessions().revoke(&cookie).await.unwrap();
    let (whole, (_, stepped)) = decide(app_url, Some(cookie), None).await;
    assert_eq!(outcome(&whole), Outcome::SignIn(RouteId(1)));
    assert_eq!(outcome(&stepped), Outcome::SignIn(RouteId(1)));
}
