//! Sessions through the real server: refresh with the provider (groups
//! re-read, removed users, outages and `refresh_grace`, single flight,
//! token rotation), survival across a restart and a cookie-secret rotation
//! (with the cookie re-issued, also through real nginx), idle and absolute
//! lifetimes, revocation across replicas sharing a real Redis (also three
//! replicas behind real nginx), and the cookie size with 300 groups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::app::{App, ServerError};
use authgate::clock::{ManualClock, SharedClock};
use authgate::config::{Config, Secret, SessionStoreConfig};
use authgate::server;
use authgate::session::{Purpose, Sealer};
use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::fixture::{COOKIE, Stack, client, default_routes, session_cookie};
use crate::grpc_authz::envoy_request;
use crate::nginx_flow::site_with_replicas;
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
        Replica::start_on(app, listener)
    }

    /// Serves on `listener` (bound earlier, so nginx could be told about
    /// it). Dropping the replica stops it: its listener closes at once.
    fn start_on(app: Arc<App>, listener: TcpListener) -> Replica {
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server::run(app, server::Listeners::http(listener), async {
            let _ = stopped.await;
        }));
        Replica { base, _stop: stop }
    }

    pub(crate) async fn auth(&self, url: &str, cookie: &str) -> u16 {
        self.auth_response(url, cookie).await.status().as_u16()
    }

    /// `/oauth2/auth` as nginx asks it.
    async fn auth_response(&self, url: &str, cookie: &str) -> openidconnect::reqwest::Response {
        client()
            .get(format!("{}/oauth2/auth", self.base))
            .header("X-Original-URL", url)
            .header("Cookie", format!("{COOKIE}={cookie}"))
            .send()
            .await
            .expect("auth")
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

/// The first refresh after a login comes when the ID token expires if that
/// is before `refresh_interval` (here 60 s tokens, a 300 s interval), as
/// every later one does: groups changed at the provider show after 60 s.
#[tokio::test]
async fn first_refresh_honours_a_short_id_token() {
    let stack = Stack::start_with_id_token_ttl(Duration::from_secs(60)).await;
    let cookie = stack.login(ALICE, APP).await;
    let logins = stack.idp.token_requests();
    stack.idp.set_user_groups(ALICE, vec!["devops".into()]);
    stack.clock.advance(59);
    assert_eq!(status(&stack, ADMIN, &cookie).await, 200, "not due yet");
    assert_eq!(stack.idp.token_requests(), logins);
    stack.clock.advance(1);
    assert_eq!(
        status(&stack, ADMIN, &cookie).await,
        403,
        "refreshed at 60 s"
    );
    assert_eq!(stack.idp.token_requests(), logins + 1);
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

/// `refresh_grace`: while the provider cannot be reached (a 502 from a
/// proxy in front of it), access continues until the grace period after
/// the refresh fell due has passed; then the session ends, and stays ended
/// when the provider is back.
#[tokio::test]
async fn outage_past_refresh_grace_ends_the_session() {
    let stack = Stack::start_with(default_routes(), |c| {
        c.refresh_grace = Duration::from_secs(600);
    })
    .await;
    let cookie = stack.login(ALICE, APP).await;
    stack.idp.fail_token_endpoint(Some(502));
    stack.clock.advance(INTERVAL);
    assert_eq!(status(&stack, APP, &cookie).await, 200, "refresh fell due");
    stack.clock.advance(600);
    assert_eq!(status(&stack, APP, &cookie).await, 200, "grace not over");
    stack.clock.advance(30);
    assert_eq!(status(&stack, APP, &cookie).await, 401, "grace over");
    stack.idp.fail_token_endpoint(None);
    assert_eq!(status(&stack, APP, &cookie).await, 401, "ended for good");
}

/// `cookie_idle_timeout`: a session used now and then lives on; left
/// unused for the timeout (plus the one-minute touch granularity) it is
/// refused, although its cookie and `cookie_expire` are still good.
#[tokio::test]
async fn idle_session_is_refused() {
    let stack = Stack::start_with(default_routes(), |c| {
        c.cookie.idle_timeout = Some(Duration::from_secs(600));
    })
    .await;
    let cookie = stack.login(ALICE, APP).await;
    for _ in 0..3 {
        stack.clock.advance(599);
        assert_eq!(status(&stack, APP, &cookie).await, 200, "in use");
    }
    stack.clock.advance(660);
    assert_eq!(status(&stack, APP, &cookie).await, 401, "idle");
}

/// `cookie_expire` is enforced by authgate, not only by the cookie's
/// Max-Age: a client that keeps the cookie is refused at the session's
/// end, although the session was in use and refreshed all along.
#[tokio::test]
async fn absolute_lifetime_is_enforced() {
    let stack = Stack::start().await;
    let lifetime = stack.app.config().cookie.expire.as_secs() as i64;
    let cookie = stack.login(ALICE, APP).await;
    let logins = stack.idp.token_requests();
    let mut elapsed = 0;
    while elapsed + INTERVAL < lifetime {
        stack.clock.advance(INTERVAL);
        elapsed += INTERVAL;
        assert_eq!(status(&stack, APP, &cookie).await, 200);
    }
    assert!(stack.idp.token_requests() > logins, "refreshed meanwhile");
    stack.clock.advance(lifetime - elapsed - 1);
    assert_eq!(status(&stack, APP, &cookie).await, 200, "last second");
    stack.clock.advance(1);
    assert_eq!(status(&stack, APP, &cookie).await, 401, "over");
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
/// cookie-secret rotation (the old secret in `previous_cookie_secrets`):
/// the old cookie passes and comes back re-issued under the new secret,
/// from every front end, and the re-issued one needs the new secret only.
#[tokio::test]
async fn restart_and_secret_rotation_keep_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.redb");
    let store = SessionStoreConfig::Embedded(path.clone());
    let stack = Stack::start_with(default_routes(), |c| c.session_store = store).await;
    let cookie = stack.login(ALICE, APP).await;
    assert_eq!(status(&stack, APP, &cookie).await, 200);
    let mut config = stack.config.clone();
    let clock = stack.clock.clone();
    // Stops authgate (and the provider, not needed: no refresh is due).
    drop(stack);

    let restarted = Replica::start(reopen(config.clone(), &clock).await).await;
    assert_eq!(restarted.auth(APP, &cookie).await, 200, "after a restart");
    drop(restarted);

    let old = config.cookie.secret.clone();
    config.cookie.secret = Secret::new([42u8; 32].to_vec());
    config.cookie.previous_secrets = vec![old];
    let app = reopen(config.clone(), &clock).await;
    let rotated = Replica::start(app.clone()).await;
    let response = rotated.auth_response(APP, &cookie).await;
    assert_eq!(response.status(), 200, "after a rotation");
    let reissued = session_cookie(&response).expect("re-issued on the 200");
    assert_ne!(reissued, cookie);
    assert_eq!(reissued.len(), cookie.len());
    let line = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age="] {
        assert!(line.contains(attribute), "{attribute} in {line}");
    }
    let current = rotated.auth_response(APP, &reissued).await;
    assert_eq!(current.status(), 200, "the new cookie works");
    assert_eq!(session_cookie(&current), None, "and is not re-issued again");

    // The other front ends re-issue it too: forward-auth (Envoy HTTP,
    // Traefik, Caddy) and Envoy's gRPC Check.
    let forward = client()
        .get(format!("{}/forward-auth/", rotated.base))
        .header("Host", "app.example.test")
        .header("Cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forward.status(), 200);
    assert_eq!(session_cookie(&forward).as_deref(), Some(reissued.as_str()));
    let reply = authgate::grpc::AuthzService::new(app)
        .answer(&envoy_request(
            "GET",
            APP,
            &[("cookie", &format!("{COOKIE}={cookie}"))],
        ))
        .await;
    let check = CheckResponse::decode(reply.encode_to_vec().as_slice()).unwrap();
    let Some(HttpResponse::OkResponse(ok)) = check.http_response else {
        panic!("allowed: {check:?}")
    };
    let added = ok.response_headers_to_add[0].header.as_ref().unwrap();
    assert_eq!(added.key, "set-cookie");
    assert!(added.value.starts_with(&format!("{COOKIE}={reissued};")));
    drop(rotated);

    // Once the old secret is dropped the old cookie is nobody's, and the
    // re-issued one, sealed with the new secret alone, still works.
    config.cookie.previous_secrets.clear();
    let forgotten = Replica::start(reopen(config, &clock).await).await;
    assert_eq!(forgotten.auth(APP, &cookie).await, 401);
    assert_eq!(forgotten.auth(APP, &reissued).await, 200);
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
    let b = Replica::start(App::new(stack.config.clone(), shared).expect("replica")).await;

    let cookie = stack.login(ALICE, APP).await;
    assert_eq!(b.auth(APP, &cookie).await, 200, "B reads A's session");
    assert_eq!(b.auth(APP, &cookie).await, 200, "now from B's cache");

    let signed_out = stack
        .http
        .get(format!("{}/oauth2/sign_out", stack.base))
        // From this site: a sign-out link on one of its pages.
        .header("Sec-Fetch-Site", "same-origin")
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

/// Three replicas sharing a real Redis behind real nginx (one `upstream`
/// with three servers, from `examples/nginx/nginx.conf`): a login through
/// nginx works on every replica; stopping one mid-run logs nobody out
/// (nginx fails over); fifty concurrent requests right after the refresh
/// falls due cause exactly one refresh at the provider; a sign-out through
/// nginx is refused by every replica within a second.
#[tokio::test]
async fn replicas_behind_nginx() {
    let redis = Redis::start().await;
    let store = SessionStoreConfig::Redis(redis.url());
    let (lb, lc) = (bind().await, bind().await);
    let addrs = [lb.local_addr().unwrap(), lc.local_addr().unwrap()];
    let site = site_with_replicas(&addrs, |c| c.session_store = store).await;
    let stack = &site.stack;
    let shared: SharedClock = Arc::new(stack.clock.clone());
    let replica = |listener| {
        let app = App::new(stack.config.clone(), shared.clone()).expect("replica");
        Replica::start_on(app, listener)
    };
    let (b, mut c) = (replica(lb), Some(replica(lc)));

    let url = site.nginx.url("hello", "/");
    let cookie = site.login(&url, ALICE).await;
    let value = cookie
        .strip_prefix(&format!("{COOKIE}="))
        .unwrap()
        .to_owned();
    let through_nginx = || async { site.get(&url, std::slice::from_ref(&cookie)).await.status() };
    assert_eq!(status(stack, &url, &value).await, 200, "replica A");
    assert_eq!(b.auth(&url, &value).await, 200, "replica B");
    let on_c = c.as_ref().unwrap().auth(&url, &value).await;
    assert_eq!(on_c, 200, "replica C");

    // One replica goes away mid-run: nginx fails over, nobody is logged out.
    for round in 0..12 {
        if round == 4 {
            drop(c.take());
            wait_until_refused(addrs[1]).await;
        }
        assert_eq!(
            through_nginx().await,
            200,
            "round {round}: {}",
            site.nginx.error_log()
        );
    }

    // The refresh falls due: fifty concurrent requests, one refresh.
    let before = stack.idp.token_requests();
    stack.clock.advance(INTERVAL);
    let mut tasks = tokio::task::JoinSet::new();
    let site = Arc::new(site);
    for _ in 0..50 {
        let (site, url, cookie) = (site.clone(), url.clone(), cookie.clone());
        tasks.spawn(async move { site.get(&url, &[cookie]).await.status() });
    }
    while let Some(code) = tasks.join_next().await {
        assert_eq!(code.unwrap(), 200);
    }
    assert_eq!(site.stack.idp.token_requests(), before + 1, "one refresh");

    // Sign-out through nginx (whichever replica answers it): the old
    // cookie is refused by every replica within a second.
    let signed_out = crate::fixture::sign_out(
        &site.client,
        &site.nginx.url("auth", "/oauth2/sign_out"),
        &cookie,
    )
    .await;
    assert!(signed_out.status().is_success(), "{}", signed_out.status());
    let start = Instant::now();
    loop {
        let a = status(&site.stack, &url, &value).await;
        let on_b = b.auth(&url, &value).await;
        if a == 401 && on_b == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still accepted after 1s: A {a}, B {on_b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        site.get(&url, &[cookie]).await.status(),
        302,
        "sign-in again"
    );
}

/// Waits until nothing listens at `addr` any more (a stopped replica).
async fn wait_until_refused(addr: std::net::SocketAddr) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{addr} still listens"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// Through real nginx (`examples/nginx/nginx.conf`): a cookie sealed with
/// the previous secret reaches the app, and the browser gets it back
/// re-issued under the current secret (`auth_request_set $auth_cookie
/// $upstream_http_set_cookie; add_header Set-Cookie $auth_cookie;`); the
/// re-issued cookie opens with the current secret alone.
#[tokio::test]
async fn nginx_passes_the_reissued_cookie() {
    let old = Secret::new([1u8; 32].to_vec());
    let new = Secret::new([2u8; 32].to_vec());
    let (old_secret, new_secret) = (old.clone(), new.clone());
    let site = site_with_replicas(&[], move |c| {
        c.cookie.secret = new_secret;
        c.cookie.previous_secrets = vec![old_secret];
    })
    .await;
    let url = site.nginx.url("hello", "/");
    let current = site.login(&url, ALICE).await;
    let current = current.strip_prefix(&format!("{COOKIE}=")).unwrap();
    // The same session as a browser still holding a cookie from before the
    // rotation has it: the ticket sealed with the old secret.
    let ticket = Sealer::new(&new, &[])
        .unwrap()
        .open(Purpose::SessionCookie, current)
        .unwrap();
    let before = Sealer::new(&old, &[])
        .unwrap()
        .seal(Purpose::SessionCookie, &ticket);

    let response = site.get(&url, &[format!("{COOKIE}={before}")]).await;
    assert_eq!(response.status(), 200, "{}", site.nginx.error_log());
    let reissued = session_cookie(&response).expect("Set-Cookie passed on by nginx");
    assert_ne!(reissued, before);
    let line = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        line.contains(&format!("Domain={}", crate::support::nginx::DOMAIN)),
        "{line}"
    );
    assert_eq!(
        Sealer::new(&new, &[])
            .unwrap()
            .open(Purpose::SessionCookie, &reissued)
            .unwrap(),
        ticket,
        "same session, current secret"
    );
    assert!(
        Sealer::new(&old, &[])
            .unwrap()
            .open(Purpose::SessionCookie, &reissued)
            .is_err()
    );
    let again = site.get(&url, &[format!("{COOKIE}={reissued}")]).await;
    assert_eq!(again.status(), 200);
    assert_eq!(session_cookie(&again), None, "nothing to re-issue");
}
