//! The listener of the real binary: slowloris clients cut off after
//! `header_read_timeout`, idle keep-alive connections after `timeout_idle`,
//! the `max_connections` cap (HTTP and gRPC), and SIGTERM under load with
//! nothing dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authgate::clock::SystemClock;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use openidconnect::reqwest;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::fixture::client;
use crate::reload::{Served, serve_with};
use crate::support::process::free_port;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: authgate\r\n\r\n";
/// Far above any bound the server is configured with here.
const GENEROUS: Duration = Duration::from_secs(30);

fn addr(served: &Served) -> String {
    served.base.trim_start_matches("http://").to_owned()
}

/// Reads one HTTP/1.1 answer (head and `Content-Length` body); its head.
/// `None` if the connection closed first.
async fn read_answer(stream: &mut TcpStream) -> Option<String> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return Some(head);
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `GET /healthz` on `stream` and expects a 200.
async fn healthz_on(stream: &mut TcpStream) {
    stream.write_all(HEALTHZ).await.expect("send request");
    let head = timeout(GENEROUS, read_answer(stream))
        .await
        .expect("an answer in time")
        .expect("an answer before the connection closed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// True once the server closed `stream` (end of file or reset).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte).await, Ok(0) | Err(_))
}

/// A client sending its request head one byte a second is disconnected
/// after `header_read_timeout` without an answer, while other clients are
/// served meanwhile. A keep-alive connection idle for longer than that
/// timeout (but less than `timeout_idle`) still carries its next request:
/// the two timeouts are distinct.
#[tokio::test]
async fn slowloris_is_cut_off_keep_alive_stays() {
    let served = serve_with("header_read_timeout: 2s\ntimeout_idle: 60s\n", free_port()).await;
    let addr = addr(&served);
    let mut kept = TcpStream::connect(&addr).await.expect("connect");
    healthz_on(&mut kept).await;
    let idle_since = Instant::now();

    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: authgate\r\nX-Slow: ")
        .await
        .expect("send");
    let http = client();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < GENEROUS,
            "the slow client is still connected after {GENEROUS:?}"
        );
        if slow.write_all(b"a").await.is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => panic!(
                "an incomplete head was answered: {}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => {}
        }
        // Meanwhile others are served.
        let response = http
            .get(format!("{}/healthz", served.base))
            .send()
            .await
            .expect("a normal client is served");
        assert_eq!(response.status(), 200);
    }
    assert!(
        idle_since.elapsed() > Duration::from_secs(2),
        "the kept connection idled past header_read_timeout"
    );
    healthz_on(&mut kept).await;
}

/// A keep-alive connection with nothing in flight is closed after
/// `timeout_idle`.
#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let served = serve_with("header_read_timeout: 60s\ntimeout_idle: 1s\n", free_port()).await;
    let mut stream = TcpStream::connect(addr(&served)).await.expect("connect");
    healthz_on(&mut stream).await;
    assert!(
        timeout(GENEROUS, closed(&mut stream))
            .await
            .expect("closed in time"),
        "the idle connection was closed by the server"
    );
}

/// With `max_connections: 2` and two keep-alive connections open, a third
/// is queued by the kernel but not served; once one of the two closes, it
/// is.
#[tokio::test]
async fn connection_cap_queues_the_next_connection() {
    let served = serve_with("max_connections: 2\ntimeout_idle: 60s\n", free_port()).await;
    let addr = addr(&served);
    let mut first = TcpStream::connect(&addr).await.expect("connect");
    let mut second = TcpStream::connect(&addr).await.expect("connect");
    healthz_on(&mut first).await;
    healthz_on(&mut second).await;

    let mut third = TcpStream::connect(&addr)
        .await
        .expect("queued by the kernel");
    third.write_all(HEALTHZ).await.expect("send");
    assert!(
        timeout(Duration::from_secs(1), read_answer(&mut third))
            .await
            .is_err(),
        "a connection beyond the cap was served"
    );
    drop(first);
    let head = timeout(GENEROUS, read_answer(&mut third))
        .await
        .expect("served once a connection closed")
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The cap holds again: the second and third are open.
    healthz_on(&mut second).await;
    let log = served.child.log();
    assert!(log.contains("connection cap reached"), "{log}");
}

/// The gRPC listener has the same cap: with two connections open, a third
/// client's health check is not answered until one of them closes.
#[tokio::test]
async fn connection_cap_holds_for_grpc() {
    let served = serve_with(
        "max_connections: 2
",
        free_port(),
    )
    .await;
    let uri = format!("http://127.0.0.1:{}", served.grpc_port);
    let connect = || async {
        Channel::from_shared(uri.clone())
            .expect("uri")
            .connect()
            .await
            .expect("gRPC connects")
    };
    let check = |channel: &Channel| {
        let mut health = HealthClient::new(channel.clone());
        async move { health.check(HealthCheckRequest::default()).await }
    };
    let first = connect().await;
    let second = connect().await;
    check(&first).await.expect("first answered");
    check(&second).await.expect("second answered");

    let third = Channel::from_shared(uri.clone())
        .expect("uri")
        .connect_lazy();
    let waiting = tokio::spawn(check(&third));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a connection beyond the cap was served"
    );
    drop(first);
    timeout(GENEROUS, waiting)
        .await
        .expect("served once a connection closed")
        .expect("task")
        .expect("third answered");
}

/// One answer of the load, as a client saw it.
struct Seen {
    started: Instant,
    outcome: Result<u16, String>,
}

/// What `/oauth2/auth` should answer: 200 with the cookie, 401 without.
async fn ask(
    http: &reqwest::Client,
    served_base: &str,
    cookie: Option<&str>,
) -> Result<u16, String> {
    let mut request = http
        .get(format!("{served_base}/oauth2/auth"))
        .header("X-Original-URL", "https://app.example.com/dashboard");
    if let Some(cookie) = cookie {
        request = request.header("Cookie", format!("_authgate={cookie}"));
    }
    let response = request.send().await.map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    // The whole body, so a cut answer shows as an error.
    response.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    Ok(status)
}

/// SIGTERM under load: 16 clients (keep-alive and a new connection per
/// request, with and without a session) keep asking. From the signal on
/// `/readyz` answers 503 and gRPC health says NOT_SERVING while every
/// request is still answered for `shutdown_delay`; every request started
/// before the delay ends gets its complete, correct answer (no reset, no
/// 5xx); then the process exits 0 and says so in its log.
#[tokio::test]
async fn sigterm_under_load_drops_nothing() {
    // A provider, so authgate is ready before the signal.
    let idp_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let idp_port = idp_listener.local_addr().expect("addr").port();
    let issuer = format!("http://127.0.0.1:{idp_port}/dex");
    let config = crate::fixture::test_config("https://auth.example.com", &issuer, Vec::new());
    let idp = crate::fixture::provider(&issuer, &config, Arc::new(SystemClock));
    let (_stop_idp, idp_stopped) = oneshot::channel::<()>();
    tokio::spawn(idp.serve(idp_listener, async {
        let _ = idp_stopped.await;
    }));
    let delay = Duration::from_secs(3);
    let mut served = serve_with("shutdown_delay: 3s\nshutdown_timeout: 10s\n", idp_port).await;
    let base = served.base.clone();
    let http = client();
    served
        .child
        .wait_until("ready", GENEROUS, || {
            let ready = http.get(format!("{base}/readyz")).send();
            async move { ready.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
    let grpc = Channel::from_shared(format!("http://127.0.0.1:{}", served.grpc_port))
        .expect("uri")
        .connect()
        .await
        .expect("gRPC connects");
    let mut health = HealthClient::new(grpc.clone());
    let serving = |health: &mut HealthClient<Channel>| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest::default())
                .await
                .expect("health answers")
                .into_inner()
                .status
        }
    };
    assert_eq!(serving(&mut health).await, ServingStatus::Serving as i32);

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for task in 0..16 {
        let (base, cookie, stop) = (base.clone(), served.cookie.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let fresh_connections = task % 2 == 1;
            let http = if fresh_connections {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .expect("client")
            } else {
                client()
            };
            let mut seen = Vec::new();
            for round in 0..1_000_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let cookie = (round % 2 == 0).then_some(cookie.as_str());
                let started = Instant::now();
                let outcome = ask(&http, &base, cookie).await.and_then(|status| {
                    let expected = if cookie.is_some() { 200 } else { 401 };
                    if status == expected {
                        Ok(status)
                    } else {
                        Err(format!("status {status}, expected {expected}"))
                    }
                });
                let failed = outcome.is_err();
                seen.push(Seen { started, outcome });
                if failed {
                    // The listener is closed: this client is done.
                    break;
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    served.child.signal("TERM");
    let signalled = Instant::now();
    // `/readyz` turns 503 while requests are still answered, and gRPC
    // health turns NOT_SERVING while `Check` is still answered.
    let mut readiness = Vec::new();
    loop {
        let status = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("answered during the drain")
            .status()
            .as_u16();
        readiness.push(status);
        if status == 503 {
            break;
        }
        assert!(signalled.elapsed() < delay, "/readyz still {status}");
    }
    assert_eq!(
        serving(&mut health).await,
        ServingStatus::NotServing as i32,
        "gRPC health during the drain"
    );
    AuthorizationClient::new(grpc)
        .check(CheckRequest::default())
        .await
        .expect("Check is answered during the drain");

    let status = served.child.wait_exit(GENEROUS).await;
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status}");

    // The signal reached the process after `signalled`, so its delay ends
    // after `signalled + delay`; allow for the clients' clocks.
    let cutoff = signalled + delay - Duration::from_millis(250);
    let (mut answered, mut after_cutoff) = (0, 0);
    for client in clients {
        for seen in client.await.expect("client task") {
            if seen.started < cutoff {
                assert!(
                    seen.outcome.is_ok(),
                    "a request started {:?} after the signal failed: {:?}\n{}",
                    seen.started.saturating_duration_since(signalled),
                    seen.outcome,
                    served.child.log()
                );
                answered += 1;
            } else if let Ok(status) = seen.outcome {
                assert!(status < 500);
                after_cutoff += 1;
            }
        }
    }
    assert!(answered > 100, "only {answered} requests ran");
    let log = served.child.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("stopped accepting"), "{log}");
    assert!(log.contains("shut down cleanly"), "{log}");
    eprintln!(
        "{answered} answers before the drain ended, {after_cutoff} after; /readyz {readiness:?}"
    );
}
