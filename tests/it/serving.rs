//! The listener of the real binary: slowloris clients cut off after
//! `header_read_timeout`, idle keep-alive connections after `timeout_idle`,
//! the `max_connections` cap and the cap per peer (HTTP and gRPC), the
//! same timeouts on gRPC, and SIGTERM under load with nothing dropped.
//!
//! Two peers on loopback: connections from 127.0.0.2 and 127.0.0.1.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use authgate::clock::SystemClock;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hyper_util::rt::TokioIo;
use openidconnect::reqwest;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::fixture::client;
use crate::grpc_authz::{envoy_request, seen};
use crate::reload::{Served, serve_with};
use crate::support::process::free_port;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: authgate\r\n\r\n";
/// Far above any bound the server is configured with here.
const GENEROUS: Duration = Duration::from_secs(30);
/// The peer that holds sockets, and the one that must still be served.
/// The hog is not 127.0.0.1: the start-up probes' connections come from
/// there and may still count when a test begins.
const HOG: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// The HTTP/2 client preface and an empty SETTINGS frame (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

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

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    socket.connect(to).await.expect("connect")
}

/// Reads (and drops what the server sends, e.g. its HTTP/2 SETTINGS)
/// until the server closes `stream`.
async fn until_closed(stream: &mut TcpStream) {
    let mut chunk = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut chunk).await {}
}

/// True if the server has not closed `stream` (yet): reading what has
/// arrived ends neither at end of file nor with an error.
fn still_open(stream: &TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(error) => return error.kind() == io::ErrorKind::WouldBlock,
        }
    }
}

/// A socket's read half that tells `closed` when the server closes it.
struct ReportsClose {
    stream: OwnedReadHalf,
    closed: Option<oneshot::Sender<()>>,
}

impl AsyncRead for ReportsClose {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let ended = match &polled {
            Poll::Ready(Ok(())) => buf.filled().len() == before,
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        };
        if ended && let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
        polled
    }
}

/// A gRPC channel to `to` over one connection, and word of when the
/// server closes that connection.
async fn channel_reporting_close(to: SocketAddr) -> (Channel, oneshot::Receiver<()>) {
    let (closed, report) = oneshot::channel();
    let closed = Arc::new(Mutex::new(Some(closed)));
    let connector = tower::service_fn(move |_| {
        let closed = closed.lock().expect("lock").take();
        async move {
            let (read, write) = TcpStream::connect(to).await?.into_split();
            let read = ReportsClose {
                stream: read,
                closed,
            };
            Ok::<_, io::Error>(TokioIo::new(tokio::io::join(read, write)))
        }
    });
    let channel = Endpoint::from_shared(format!("http://{to}"))
        .expect("uri")
        .connect_with_connector(connector)
        .await
        .expect("gRPC connects");
    (channel, report)
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

/// Two places per peer, three in all; silent sockets are cut after 4s.
const PEER_CAP: &str =
    "max_connections: 3\nmax_connections_per_peer: 2\nheader_read_timeout: 4s\ntimeout_idle: 60s\n";

/// 127.0.0.2 takes its two places on `to` with sockets that send nothing;
/// its third connection is closed at once (the two are still open). The
/// two, held.
async fn hold_the_peer_cap(to: SocketAddr) -> Vec<TcpStream> {
    let held = vec![connect_from(HOG, to).await, connect_from(HOG, to).await];
    let mut beyond = connect_from(HOG, to).await;
    timeout(GENEROUS, until_closed(&mut beyond))
        .await
        .expect("the connection over the peer's cap is closed");
    assert!(
        held.iter().all(still_open),
        "closed at once, not at a timeout"
    );
    held
}

/// After another peer was served: the held sockets are still open (it was
/// not served because a timeout freed their places), then
/// `header_read_timeout` closes each.
async fn assert_held_then_closed(mut held: Vec<TcpStream>) {
    assert!(
        held.iter().all(still_open),
        "the other peer was served while the sockets were held"
    );
    for socket in &mut held {
        timeout(GENEROUS, until_closed(socket))
            .await
            .expect("nothing sent within header_read_timeout: closed");
    }
}

/// One peer's idle sockets cannot starve Envoy on the gRPC listener: with
/// `max_connections: 3` and `max_connections_per_peer: 2`, 127.0.0.2
/// holds two sockets that never send the HTTP/2 preface; its third is
/// closed at once; a `Check` from 127.0.0.1 is answered while the two are
/// still open; then `header_read_timeout` closes them.
#[tokio::test]
async fn idle_grpc_sockets_of_one_peer_do_not_starve_another() {
    let served = serve_with(PEER_CAP, free_port()).await;
    let grpc = SocketAddr::from(([127, 0, 0, 1], served.grpc_port));
    let held = hold_the_peer_cap(grpc).await;

    let channel = Endpoint::from_shared(format!("http://{grpc}"))
        .expect("uri")
        .local_address(Some(OTHER))
        .connect()
        .await
        .expect("the other peer connects");
    let answer = timeout(
        GENEROUS,
        AuthorizationClient::new(channel).check(envoy_request(
            "GET",
            "https://app.example.com/dashboard",
            &[("accept", "application/json")],
        )),
    )
    .await
    .expect("answered in time")
    .expect("a CheckResponse")
    .into_inner();
    assert_eq!(seen(&answer).http_status, 401, "no session: 401");
    assert_held_then_closed(held).await;
    let log = served.child.log();
    assert!(log.contains("per-peer connection cap reached"), "{log}");
}

/// On the gRPC listener, a connection with no call in flight is closed
/// after `timeout_idle`: one that sent the HTTP/2 preface and nothing
/// else (its header-read deadline, 60s, is far off: the preface is its
/// head), and one that made a `Check` and idles. One with a call in flight
/// (a health `Watch` stream, open all along) stays.
#[tokio::test]
async fn idle_grpc_connections_are_closed_busy_ones_stay() {
    let served = serve_with("header_read_timeout: 60s\ntimeout_idle: 2s\n", free_port()).await;
    let grpc = SocketAddr::from(([127, 0, 0, 1], served.grpc_port));
    let (watching, mut watch_closed) = channel_reporting_close(grpc).await;
    let mut watch = HealthClient::new(watching)
        .watch(HealthCheckRequest::default())
        .await
        .expect("Watch")
        .into_inner();
    let status = watch.message().await.expect("a status").expect("one");
    assert_eq!(status.status, ServingStatus::Serving as i32);

    let mut preface_only = TcpStream::connect(grpc).await.expect("connect");
    preface_only.write_all(H2_PREFACE).await.expect("preface");
    timeout(GENEROUS, until_closed(&mut preface_only))
        .await
        .expect("idle after its preface: closed after timeout_idle");

    let (checking, check_closed) = channel_reporting_close(grpc).await;
    AuthorizationClient::new(checking.clone())
        .check(CheckRequest::default())
        .await
        .expect("Check answered");
    timeout(GENEROUS, check_closed)
        .await
        .expect("idle after its Check: closed after timeout_idle")
        .expect("reported");

    assert_eq!(
        watch_closed.try_recv(),
        Err(oneshot::error::TryRecvError::Empty),
        "the connection with a Watch in flight was closed"
    );
}

/// The HTTP listener has the same cap per peer: 127.0.0.2 holds two
/// silent sockets (its cap), its third is closed at once, 127.0.0.1 is
/// answered while they are held; `header_read_timeout` then closes them.
#[tokio::test]
async fn idle_http_sockets_of_one_peer_do_not_starve_another() {
    let served = serve_with(PEER_CAP, free_port()).await;
    let http: SocketAddr = addr(&served).parse().expect("address");
    let held = hold_the_peer_cap(http).await;
    let mut other = connect_from(OTHER, http).await;
    healthz_on(&mut other).await;
    assert_held_then_closed(held).await;
}

/// Peers in `trusted_proxies` (nginx, Envoy) are exempt from the cap per
/// peer: with `max_connections_per_peer: 1`, 127.0.0.1 (trusted) keeps two
/// connections served; 127.0.0.2 gets its second closed (by the cap: the
/// timeouts are far off).
#[tokio::test]
async fn trusted_proxies_are_exempt_from_the_peer_cap() {
    let served = serve_with(
        "max_connections_per_peer: 1\ntrusted_proxies: [127.0.0.1]\nheader_read_timeout: 60s\ntimeout_idle: 60s\n",
        free_port(),
    )
    .await;
    let http: SocketAddr = addr(&served).parse().expect("address");
    let (proxy, client) = (OTHER, HOG);
    let mut proxied = vec![
        connect_from(proxy, http).await,
        connect_from(proxy, http).await,
    ];
    for stream in &mut proxied {
        healthz_on(stream).await;
    }
    let mut first = connect_from(client, http).await;
    healthz_on(&mut first).await;
    let mut second = connect_from(client, http).await;
    timeout(GENEROUS, until_closed(&mut second))
        .await
        .expect("the untrusted peer's second connection is closed");
    healthz_on(&mut first).await;
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
