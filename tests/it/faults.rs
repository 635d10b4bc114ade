//! Faults of the real components around authgate: the provider down at
//! start, down mid-run, or accepting connections and never answering; a
//! real redis-server killed and started again. Decisions never wait on the
//! provider, a store fault is a 503 (fail closed), never a 500 and never an
//! allow, and everything recovers without a restart.
//! (A configuration reload with a broken file is tested with the live
//! reload.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::app::App;
use authgate::clock::{ManualClock, SharedClock};
use authgate::config::{Config, SessionStoreConfig};
use tokio::net::TcpListener;

use crate::fixture::{Stack, client, default_routes, provider};
use crate::sessions::{Replica, reopen};
use crate::support::redis::Redis;

const APP: &str = "https://app.example.test/";
const ALICE: &str = "alice@example.com";

/// Logs alice in on a stack with an embedded store in `dir`, stops the
/// stack (and its provider); returns her cookie, the config and the clock.
async fn session_in_embedded_store(dir: &std::path::Path) -> (String, Config, ManualClock) {
    let store = SessionStoreConfig::Embedded(dir.join("sessions.redb"));
    let stack = Stack::start_with(default_routes(), |c| c.session_store = store).await;
    let cookie = stack.login(ALICE, APP).await;
    let config = stack.config.clone();
    let clock = stack.clock.clone();
    drop(stack);
    (cookie, config, clock)
}

async fn get(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Polls `probe` every 100 ms until it is true; fails after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !probe().await {
        assert!(start.elapsed() < limit, "not {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `/metrics` exports `authgate_ready` with `value`.
async fn ready_gauge(base: &str, value: &str) -> bool {
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    metrics
        .lines()
        .any(|line| line == format!("authgate_ready {value}"))
}

/// The provider is down when authgate starts: not ready, the sign-in page
/// says the provider is unavailable (503), yet an existing session (in the
/// embedded store) is decided as before. Discovery is retried with backoff:
/// once the provider is up on its address, authgate becomes ready and the
/// login works, without a restart.
#[tokio::test]
async fn provider_down_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, config, clock) = session_in_embedded_store(dir.path()).await;
    let issuer = config.idp.issuer_url.clone();
    let replica = Replica::start(reopen(config.clone(), &clock).await).await;
    let base = replica.base.clone();

    assert_eq!(get(&format!("{base}/readyz")).await.0, 503);
    assert!(
        ready_gauge(&base, "0").await,
        "authgate_ready 0 while not ready"
    );
    assert_eq!(replica.auth(APP, &cookie).await, 200, "existing session");
    assert_eq!(
        replica
            .auth("https://app.example.test/admin", &cookie)
            .await,
        200
    );
    let (status, page) = get(&format!("{base}/oauth2/start?rd=%2F")).await;
    assert_eq!(status, 503);
    assert!(page.contains("Identity provider unavailable"), "{page}");

    // The provider comes up on its configured address.
    let addr = url::Url::parse(&issuer).unwrap();
    let listener = TcpListener::bind(format!(
        "{}:{}",
        addr.host_str().unwrap(),
        addr.port().unwrap()
    ))
    .await
    .expect("the provider's port is free again");
    let shared: SharedClock = Arc::new(clock.clone());
    let idp = provider(&issuer, &config, shared);
    tokio::spawn(idp.serve(listener, std::future::pending()));
    // The gauge follows discovery without anyone probing /readyz.
    eventually("authgate_ready 1", Duration::from_secs(40), || async {
        ready_gauge(&base, "1").await
    })
    .await;
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
    let response = client()
        .get(format!("{base}/oauth2/start?rd=%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "login proceeds to the provider");
}

/// The provider goes down mid-run: decisions continue for signed-in users
/// (also when their refresh falls due: an outage logs nobody out), and
/// `/oauth2/start` answers 503 with the provider-unavailable page once its
/// reachability check notices — never a 500 on the way.
#[tokio::test]
async fn provider_down_mid_run() {
    let mut stack = Stack::start().await;
    let cookie = stack.login(ALICE, APP).await;
    stack.stop_provider();
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 200);
    stack.clock.advance(301);
    assert_eq!(
        stack.auth(APP, Some(&cookie)).await.status(),
        200,
        "refresh due"
    );
    let start = format!("{}/oauth2/start?rd=%2F", stack.base);
    eventually("503 on /oauth2/start", Duration::from_secs(15), || async {
        let (status, page) = get(&start).await;
        assert!(matches!(status, 302 | 503), "got {status}");
        status == 503 && page.contains("Identity provider unavailable")
    })
    .await;
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 200);
}

/// A provider that accepts connections and never answers: discovery fails
/// with a clear timeout error (it does not hang forever), the sign-in
/// answers 503 at once, and decisions answer while discovery is still
/// waiting on the silent provider.
#[tokio::test]
async fn provider_slow_never_blocks_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (cookie, mut config, clock) = session_in_embedded_store(dir.path()).await;
    // Accepts and holds every connection, says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.idp.issuer_url = format!("http://{}/dex", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let app = reopen(config, &clock).await;
    let discovery = {
        let app = app.clone();
        tokio::spawn(async move { app.oidc().discover().await })
    };
    let replica = Replica::start(app.clone()).await;
    for _ in 0..20 {
        assert_eq!(replica.auth(APP, &cookie).await, 200);
    }
    let (status, _) = get(&format!("{}/oauth2/start?rd=%2F", replica.base)).await;
    assert_eq!(status, 503);
    assert!(
        !discovery.is_finished(),
        "the decisions above ran while discovery waited on the provider"
    );
    let error = discovery
        .await
        .unwrap()
        .expect_err("discovery must time out");
    let message = error.to_string();
    assert!(message.contains("discovery"), "{message}");
    held.abort();
}

/// Redis killed and started again (a real redis-server): sessions this
/// replica has cached keep deciding (up to the cache's 30 s); a replica
/// without a cached copy answers 503 — fail closed, never 500, never an
/// allow — and `/readyz` is 503. Once Redis is back (empty: it persists
/// nothing here) both recover without a restart: the lost session signs in
/// again (401), a new login works on both.
#[tokio::test]
async fn redis_down_and_back() {
    let mut redis = Redis::start().await;
    let url = redis.url();
    let stack = Stack::start_with(default_routes(), |c| {
        c.session_store = SessionStoreConfig::Redis(url);
    })
    .await;
    let shared: SharedClock = Arc::new(stack.clock.clone());
    let cold = Replica::start(App::new(stack.config.clone(), shared).unwrap()).await;
    let cookie = stack.login(ALICE, APP).await;
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 200);

    redis.stop();
    assert_eq!(stack.auth(APP, Some(&cookie)).await.status(), 200, "cached");
    for _ in 0..3 {
        assert_eq!(cold.auth(APP, &cookie).await, 503, "no cached copy");
    }
    assert_eq!(get(&format!("{}/readyz", cold.base)).await.0, 503);
    assert!(ready_gauge(&cold.base, "0").await, "not ready: gauge 0");
    let login = client()
        .get(format!("{}/oauth2/userinfo", cold.base))
        .header("cookie", format!("{}={cookie}", crate::fixture::COOKIE))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 503);

    redis.restart().await;
    eventually("ready again", Duration::from_secs(15), || async {
        get(&format!("{}/readyz", cold.base)).await.0 == 200
    })
    .await;
    eventually(
        "the lost session refused",
        Duration::from_secs(35),
        || async {
            let status = cold.auth(APP, &cookie).await;
            assert!(matches!(status, 401 | 503), "got {status}");
            status == 401
        },
    )
    .await;
    let fresh = stack.login(ALICE, APP).await;
    assert_eq!(stack.auth(APP, Some(&fresh)).await.status(), 200);
    assert_eq!(cold.auth(APP, &fresh).await, 200);
}
