//! The `Decider` on its own, against the memory store: every front end asks
//! `decide_now_for` first (no I/O) and `decide_for` when that answers
//! `None`. Table tests of both paths: each case's verdict, and that the
//! synchronous path, whenever it answers, answers what the other does.

use std::sync::Arc;
use std::time::Duration;

use authgate::clock::{SharedClock, SystemClock};
use authgate::config::{RouteConfig, Routes, Secret};
use authgate::decision::{Asker, Decider, Decision, Request};
use authgate::identity::Identity;
use authgate::metrics::FrontEnd;
use authgate::policy::{Policy, RouteId, Target};
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
    Decider::new(
        Arc::new(Policy::compile(Routes::parse(routes()).unwrap())),
        sessions,
        &Url::parse("https://auth.example.com").unwrap(),
    )
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

const ASKER: Asker<'static> = Asker {
    front_end: FrontEnd::Nginx,
    request_id: None,
};

fn request<'a>(
    url: &'a str,
    cookie: Option<&'a str>,
    method: &'a str,
    preflight: bool,
) -> Request<'a, std::option::IntoIter<&'a str>> {
    Request {
        target: Target::parse(url),
        session_cookies: cookie.into_iter(),
        method: Some(method),
        authorization: None,
        preflight,
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
    for (name, url, cookie, method, preflight, expected, sync) in cases {
        let later = decider
            .decide_for(ASKER, request(url, cookie, method, preflight))
            .await;
        assert_eq!(outcome(&later), expected, "{name}: decide_for");
        match decider.decide_now_for(ASKER, request(url, cookie, method, preflight)) {
            Some(now) => assert_eq!(outcome(&now), expected, "{name}: decide_now_for"),
            None => assert!(!sync, "{name}: decide_now_for needed I/O"),
        }
    }

    // A replica whose cache has never seen the session: the synchronous
    // path defers to the store, and the other path finds it there.
    // Another replica: its own `Sessions` on the same store and secret.
    let replica = new_decider(new_sessions(store));
    assert!(
        replica
            .decide_now_for(ASKER, request(app, Some(&devops), "GET", false))
            .is_none()
    );
    let found = replica
        .decide_for(ASKER, request(app, Some(&devops), "GET", false))
        .await;
    assert_eq!(outcome(&found), Outcome::Allow(RouteId(1), true));
    // Now it is cached there too.
    let now = replica
        .decide_now_for(ASKER, request(app, Some(&devops), "GET", false))
        .expect("cached now");
    assert_eq!(outcome(&now), Outcome::Allow(RouteId(1), true));
}
