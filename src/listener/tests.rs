#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn config() -> ServingConfig {
    ServingConfig {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(300),
        ..ServingConfig::default()
    }
}

/// A new connection owes its first head `header_read_timeout` after the
/// accept; a request in flight has no deadline; after it, the connection
/// may idle `timeout_idle`; the first byte of the next head starts the
/// header clock again.
#[tokio::test(start_paused = true)]
async fn deadlines_follow_the_connection() {
    let config = config();
    let activity = Arc::new(Activity::new(Role::Main));
    let accepted = activity.accepted;
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(10))
    );

    let in_flight = activity.begin(Version::HTTP_11);
    assert_eq!(activity.deadline(&config), None);
    // Bytes during a request (a body, a pipelined head) change nothing.
    activity.read(1);
    assert_eq!(activity.deadline(&config), None);
    tokio::time::advance(Duration::from_secs(3)).await;
    drop(in_flight);
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(3 + 300))
    );

    tokio::time::advance(Duration::from_secs(60)).await;
    activity.read(1);
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(63 + 10))
    );
    // Later bytes of the same head do not extend it (slowloris).
    tokio::time::advance(Duration::from_secs(5)).await;
    activity.read(1);
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(63 + 10))
    );
}

/// The schedule stays at `Serving` until the signal, is `Draining` for the
/// delay, then `Stopping`.
#[tokio::test(start_paused = true)]
async fn schedule_drains_for_the_delay() {
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let shutdown = Shutdown::schedule(
        async {
            let _ = signalled.await;
        },
        Duration::from_secs(5),
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(shutdown.phase(), Phase::Serving);

    signal.send(()).unwrap();
    shutdown.reached(Phase::Draining).await;
    let drained = Instant::now();
    assert_eq!(shutdown.phase(), Phase::Draining);
    shutdown.reached(Phase::Stopping).await;
    assert_eq!(drained.elapsed(), Duration::from_secs(5));
}

/// With no delay the schedule goes straight to `Stopping`.
#[tokio::test(start_paused = true)]
async fn zero_delay_stops_at_once() {
    let shutdown = Shutdown::schedule(async {}, Duration::ZERO);
    let start = Instant::now();
    shutdown.reached(Phase::Stopping).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// While draining, HTTP/1 answers close their connection; HTTP/2 answers
/// carry no `Connection` header (illegal there).
#[test]
fn close_after_only_on_http1() {
    for (version, expected) in [
        (Version::HTTP_10, Some("close")),
        (Version::HTTP_11, Some("close")),
        (Version::HTTP_2, None),
    ] {
        let mut response = StatusCode::OK.into_response();
        close_after(&mut response, version);
        assert_eq!(
            response
                .headers()
                .get(header::CONNECTION)
                .map(|v| v.to_str().unwrap()),
            expected,
            "{version:?}"
        );
    }
}

/// On an HTTP/2 connection, frames between requests (PING, SETTINGS) do
/// not start the header clock: only `timeout_idle` applies.
#[tokio::test(start_paused = true)]
async fn http2_frames_between_requests_are_idle_time() {
    let config = config();
    let activity = Arc::new(Activity::new(Role::Main));
    let accepted = activity.accepted;
    drop(activity.begin(Version::HTTP_2));
    tokio::time::advance(Duration::from_secs(20)).await;
    activity.read(1);
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(300))
    );
}

/// On the gRPC listener (HTTP/2 only) the head a new connection owes is
/// the client preface: bytes short of it do not end the first deadline;
/// the whole preface, in pieces, does, and from then on only
/// `timeout_idle` applies, also between calls.
#[tokio::test(start_paused = true)]
async fn grpc_connection_owes_the_preface_then_idles() {
    let config = config();
    let activity = Arc::new(Activity::new(Role::Grpc));
    let accepted = activity.accepted;
    let preface_due = Some(accepted + Duration::from_secs(10));
    assert_eq!(activity.deadline(&config), preface_due);
    tokio::time::advance(Duration::from_secs(2)).await;
    activity.read(20);
    assert_eq!(activity.deadline(&config), preface_due, "4 bytes short");
    tokio::time::advance(Duration::from_secs(1)).await;
    // The rest of the preface and the client's SETTINGS in one read.
    activity.read(4 + 9);
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(3 + 300))
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    activity.read(17);
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(3 + 300)),
        "frames before the first call are idle time"
    );
    let call = activity.begin(Version::HTTP_2);
    assert_eq!(activity.deadline(&config), None);
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(call);
    assert_eq!(
        activity.deadline(&config),
        Some(accepted + Duration::from_secs(64 + 300))
    );
}

/// A peer holds at most `max` places; a place is given back when its
/// connection drops; other peers, and peers in `trusted_proxies`, are
/// not limited by it; an IPv4-mapped IPv6 address is its IPv4 peer.
#[test]
fn peer_cap_limits_each_address() {
    let one: IpAddr = "192.0.2.1".parse().unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    let other: IpAddr = "192.0.2.2".parse().unwrap();
    let proxy: IpAddr = "10.1.2.3".parse().unwrap();
    let mut cap = PeerCap::new(2, &["10.0.0.0/8".parse().unwrap()], Role::Grpc);

    let first = cap.admit(one).expect("first");
    let second = cap.admit(mapped).expect("second, same peer");
    assert!(cap.admit(one).is_none(), "third of one peer");
    assert!(cap.admit(mapped).is_none(), "third, mapped");
    let others: Vec<_> = (0..2).map(|_| cap.admit(other).expect("other")).collect();
    assert!(cap.admit(other).is_none());
    let proxied: Vec<_> = (0..10).map(|_| cap.admit(proxy).expect("exempt")).collect();

    drop(first);
    let third = cap.admit(one).expect("a place was given back");
    assert!(cap.admit(one).is_none());
    drop((second, third, others, proxied));
    assert!(
        cap.open.lock().unwrap().is_empty(),
        "no entry outlives its peer's connections"
    );
}

/// The watchdog looks a quarter of the shorter timeout apart, never more
/// often than every 50 ms: a slow head is cut within 1.25× its timeout.
#[test]
fn checks_a_quarter_of_the_shorter_timeout_apart() {
    assert_eq!(check_interval(&config()), Duration::from_millis(2500));
    let tiny = ServingConfig {
        header_read_timeout: Duration::from_millis(10),
        ..config()
    };
    assert_eq!(check_interval(&tiny), Duration::from_millis(50));
}

/// Answers `GET /lane` itself, with the peer it was given.
#[derive(Clone)]
struct TestLane;

impl Lane for TestLane {
    fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Answer<impl Future<Output = Response> + Send + 'static> {
        match (request.method(), request.uri().path()) {
            (&http::Method::GET, "/lane") => {
                Answer::Later(async move { format!("lane {}", peer.ip()).into_response() })
            }
            (&http::Method::GET, "/now") => {
                Answer::Now(format!("now {}", peer.ip()).into_response())
            }
            _ => Answer::Pass(request),
        }
    }
}

/// One HTTP/1.1 request on a fresh keep-alive connection (so that a
/// `Connection: close` in the answer is the server's own); the answer as
/// text, read up to the end of its body.
async fn ask(address: SocketAddr, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer ended: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .to_ascii_lowercase()
                .lines()
                .find_map(|line| line.strip_prefix("content-length: ")?.parse().ok())
                .unwrap_or(0);
            let body = if method == "HEAD" { 0 } else { length };
            if answer.len() >= end + 4 + body {
                return text;
            }
        }
    }
}

/// Does this answer tell the client to close the connection?
fn closes(answer: &str) -> bool {
    answer
        .to_ascii_lowercase()
        .contains("\r\nconnection: close\r\n")
}

/// The lane answers what it takes (with the TCP peer), the router all the
/// rest (`HEAD` of the lane's path included); while draining, the lane's
/// answers close the connection like the router's.
#[tokio::test]
async fn the_lane_answers_its_requests_and_the_router_the_rest() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = Router::new().route(
        "/lane",
        axum::routing::get(|| async { "router" }).head(|| async { "router" }),
    );
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let shutdown = Shutdown::schedule(
        async {
            let _ = signalled.await;
        },
        Duration::from_secs(60),
    );
    let served = tokio::spawn(serve(
        listener,
        router.fallback(|| async { (StatusCode::NOT_FOUND, "router 404") }),
        TestLane,
        config(),
        &[],
        shutdown.clone(),
        Role::Main,
    ));

    let lane = ask(address, "GET", "/lane").await;
    assert!(lane.starts_with("HTTP/1.1 200"), "{lane}");
    assert!(lane.ends_with("lane 127.0.0.1"), "{lane}");
    assert!(!closes(&lane), "{lane}");
    let now = ask(address, "GET", "/now").await;
    assert!(now.ends_with("now 127.0.0.1"), "{now}");
    assert!(!closes(&now), "{now}");
    let head = ask(address, "HEAD", "/lane").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The router's "router", not the lane's longer answer.
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-length: 6\r\n"),
        "{head}"
    );
    let other = ask(address, "GET", "/other").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    assert!(other.ends_with("router 404"), "{other}");

    signal.send(()).unwrap();
    shutdown.reached(Phase::Draining).await;
    for (path, body) in [("/lane", "lane 127.0.0.1"), ("/now", "now 127.0.0.1")] {
        let draining = ask(address, "GET", path).await;
        assert!(draining.ends_with(body), "{draining}");
        assert!(closes(&draining), "{draining}");
    }
    served.abort();
}
