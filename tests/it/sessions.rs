//! Sessions through the real server: refresh with the provider (groups
//! re-read, removed users, outages, single flight, token rotation),
//! survival across a restart and a cookie-secret rotation, revocation
//! across replicas sharing a real Redis, and the cookie size with 300
//! groups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::clock::{ManualClock, SharedClock};
use authgate::config::{Config, Secret, SessionStoreConfig};
use authgate::server::{self, App, ServerError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::fixture::{COOKIE, Stack, client, default_routes};
use crate::support::redis::Redis;

const ALICE: &str = "alice@example.com";
const APP: &str = "https://app.example.test/";
const ADMIN: &str = "https://app.example.test/admin";
/// The fixture's `refresh_interval`.
const INTERVAL: i64 = 300;

/// Another authgate on the same configuration (a replica, or the same
/// service after a restart), serving until dropped. It does not wait for
/// provider discovery: decisions on existing sessions do not need it.
pub(crate) struct Replica {
    pub(crate) base: String,
    _stop: oneshot::Sender<()>,
}

impl Replica {
    pub(crate) async fn start(app: Arc<App>) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server::run(app, listener, async {
            let _ = stopped.await;
        }));
        Replica { base, _stop: stop }
    }

    pub(crate) async fn auth(&self, url: &str, cookie: &str) -> u16 {
        client()
            .get(format!("{}/oauth2/auth", self.base))
            .header("X-Original-URL", url)
            .header("Cookie", format!("{COOKIE}={cookie}"))
            .send()
            .await
            .expect("auth")
            .status()
            .as_u16()
    }
}

async fn status(stack: &Stack, url: &str, cookie: &str) -> u16 {
    stack.auth(url, Some(cookie)).await.status().as_u16()
}

/// Groups changed at the provider show at the first decision after
/// `refresh_interval`, not before, and cost the provider no call before.
#[tokio::test]
async fn groups_change_at_the_next_refresh() {
    let stack = Stack::start().await;
    let cookie = stack.login(ALICE, APP).await;
    let logins = stack.idp.token_requests();
    assert_eq!(status(&stack, ADMIN, &cookie).await, 200);

    stack.idp.set_user_groups(ALICE, vec!["devops".into()]);
    stack.clock.advance(INTERVAL - 1);
    assert_eq!(status(&stack, ADMIN, &cookie).await, 200, "not due yet");
    assert_eq!(
        stack.idp.token_requests(),
        logins,
        "no provider call before"
    );

    stack.clock.advance(1);
    assert_eq!(status(&stack, ADMIN, &cookie).await, 403, "admins is gone");
    assert_eq!(status(&stack, APP, &cookie).await, 200, "devops stays");
    assert_eq!(stack.idp.token_requests(), logins + 1);
    let response = stack.auth(APP, Some(&cookie)).await;
    assert_eq!(
        response.headers()["x-auth-request-groups"]
            .to_str()
            .unwrap(),
        "devops"
    );
}

/// A user removed from the directory (Dex: 500 on refresh) is signed out
/// at the next refresh: a sign-in, and the session is gone for good.
#[tokio::test]
async fn removed_user_is_signed_out() {
    let stack = Stack::start().await;
    let cookie = stack.login(ALICE, APP).await;
    stack.idp.remove_user(ALICE);
    assert_eq!(status(&stack, APP, &cookie).await, 200, "until the refresh");
    stack.clock.advance(INTERVAL);
    assert_eq!(status(&stack, APP, &cookie).await, 401);
    let userinfo = stack
        .http
        .get(format!("{}/oauth2/userinfo", stack.base))
        .header("Cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401, "the session is gone, not hidden");
}

/// A provider outage (503) logs nobody out; the refresh is retried later,
/// not on every request, and succeeds once the provider is back.
#[tokio::test]
async fn provider_outage_keeps_access() {
    let stack = Stack::start().await;
    let cookie = stack.login(ALICE, APP).await;
    let logins = stack.idp.token_requests();
    stack.idp.fail_token_endpoint(Some(503));
    stack.clock.advance(INTERVAL);
    for _ in 0..5 {
        assert_eq!(status(&stack, ADMIN, &cookie).await, 200);
    }
    assert_eq!(
        stack.idp.token_requests(),
        logins + 1,
        "one attempt, then a pause"
    );

    stack.idp.fail_token_endpoint(None);
    stack.idp.set_user_groups(ALICE, vec!["devops".into()]);
    stack.clock.advance(30);
    assert_eq!(status(&stack, ADMIN, &cookie).await, 403, "refreshed now");
    assert_eq!(stack.idp.token_requests(), logins + 2);
}

/// Twenty concurrent decisions when the refresh falls due: one call to
/// the provider's token endpoint, and nobody is refused.
#[tokio::test]
async fn concurrent_decisions_refresh_once() {
    let stack = Stack::start().await;
    let cookie = stack.login(ALICE, APP).await;
    let logins = stack.idp.token_requests();
    stack.clock.advance(INTERVAL);
    let base = stack.base.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (base, cookie) = (base.clone(), cookie.clone());
        tasks.spawn(async move {
            client()
                .get(format!("{base}/oauth2/auth"))
                .header("X-Original-URL", APP)
                .header("Cookie", format!("{COOKIE}={cookie}"))
                .send()
                .await
                .expect("auth")
                .status()
                .as_u16()
        });
    }
    while let Some(code) = tasks.join_next().await {
        assert_eq!(code.unwrap(), 200);
    }
    assert_eq!(stack.idp.token_requests(), logins + 1);
}

/// The rotated refresh token is saved and used next time: the provider
/// (like Dex) refuses a used one, which would end the session.
#[tokio::test]
async fn rotated_token_is_used_next_time() {
    let stack = Stack::start().await;
    let cookie = stack.login(ALICE, APP).await;
    let logins = stack.idp.token_requests();
    for round in 1..=3 {
        stack.clock.advance(INTERVAL);
        assert_eq!(status(&stack, APP, &cookie).await, 200, "round {round}");
        assert_eq!(stack.idp.token_requests(), logins + round);
    }
}

/// Opens the embedded store of `config` once the previous instance has
/// let go of the file (its server task drains after the stop signal).
pub(crate) async fn reopen(config: Config, clock: &ManualClock) -> Arc<App> {
    let shared: SharedClock = Arc::new(clock.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match App::new(config.clone(), shared.clone()) {
            Ok(app) => return app,
            Err(ServerError::Store(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot start again: {e}"),
        }
    }
}

/// A restart logs nobody out with the embedded store, and neither does a
/// cookie-secret rotation (the old secret in `previous_cookie_secrets`).
#[tokio::test]
async fn restart_and_secret_rotation_keep_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    let store = SessionStoreConfig::Embedded(path.clone());
    let stack = Stack::start_with(default_routes(), |c| c.session_store = store).await;
    let cookie = stack.login(ALICE, APP).await;
    assert_eq!(status(&stack, APP, &cookie).await, 200);
    let mut config = stack.app.config.clone();
    let clock = stack.clock.clone();
    // Stops authgate (and the provider, not needed: no refresh is due).
    drop(stack);

    let restarted = Replica::start(reopen(config.clone(), &clock).await).await;
    assert_eq!(restarted.auth(APP, &cookie).await, 200, "after a restart");
    drop(restarted);

    let old = config.cookie.secret.clone();
    config.cookie.secret = Secret::new([42u8; 32].to_vec());
    config.cookie.previous_secrets = vec![old];
    let rotated = Replica::start(reopen(config.clone(), &clock).await).await;
    assert_eq!(rotated.auth(APP, &cookie).await, 200, "after a rotation");
    drop(rotated);

    // Without the old secret the cookie is nobody's.
    config.cookie.previous_secrets.clear();
    let forgotten = Replica::start(reopen(config, &clock).await).await;
    assert_eq!(forgotten.auth(APP, &cookie).await, 401);
}

/// Two replicas share a real Redis: a login on A works on B; a sign-out
/// on A is refused on B within a second although B had it cached.
#[tokio::test]
async fn sign_out_reaches_every_replica() {
    let redis = Redis::start().await;
    let url = redis.url();
    let stack = Stack::start_with(default_routes(), |c| {
        c.session_store = SessionStoreConfig::Redis(url);
    })
    .await;
    let shared: SharedClock = Arc::new(stack.clock.clone());
    let b = Replica::start(App::new(stack.app.config.clone(), shared).expect("replica")).await;

    let cookie = stack.login(ALICE, APP).await;
    assert_eq!(b.auth(APP, &cookie).await, 200, "B reads A's session");
    assert_eq!(b.auth(APP, &cookie).await, 200, "now from B's cache");

    let signed_out = stack
        .http
        .get(format!("{}/oauth2/sign_out", stack.base))
        .header("Cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 200);
    let start = Instant::now();
    loop {
        if b.auth(APP, &cookie).await == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "B still accepts the signed-out cookie after 1s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&stack, APP, &cookie).await, 401, "and A");
}

/// 300 groups do not grow the cookie: it stays the same short length as
/// for anyone (the claims live in the store), and the decision still
/// carries all 300 groups.
#[tokio::test]
async fn cookie_is_small_with_300_groups() {
    let stack = Stack::start().await;
    let groups: Vec<String> = std::iter::once("devops".to_owned())
        .chain((1..300).map(|i| format!("group-number-{i:03}")))
        .collect();
    stack.idp.set_user_groups(ALICE, groups.clone());
    let big = stack.login(ALICE, APP).await;
    let small = stack
        .login("carol@example.com", "https://public.example.test/")
        .await;
    assert_eq!(big.len(), small.len());
    assert!(big.len() < 300, "cookie is {} bytes", big.len());
    let response = stack.auth(APP, Some(&big)).await;
    assert_eq!(response.status(), 200);
    let header = response.headers()["x-auth-request-groups"]
        .to_str()
        .unwrap();
    assert_eq!(header.split(',').count(), 300);
}
