//! The load generator of the gRPC benchmark (`bench/grpc.sh`): Envoy's
//! `Authorization/Check` over N HTTP/2 connections with M calls in flight on
//! each, for a warm-up and then a measured duration, on one thread (so it
//! can be pinned to one core).
//!
//! It has to cost the client less per call than the server spends, or the
//! client sets the pace (ghz saturated its own core at a seventh of a
//! server's). So it speaks HTTP/2 through `h2` directly and sends the same
//! encoded request frame on every call; what it does not skip is the check:
//! every answer is decoded and must be an OK allow, anything else is counted
//! by kind and makes the exit status 1.
//!
//! ```text
//! cargo run --release --example grpc_load -- 127.0.0.1:9192 \
//!     --host app.example --cookie '_authgate=…' --server-pid 1234
//! ```
//!
//! Prints one JSON object: the measured calls and seconds, calls/s, latency
//! percentiles (µs), the answers by kind, its own CPU seconds over the
//! measured window and, with `--server-pid`, the server's.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use prost::Message;

const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

#[derive(Parser)]
struct Args {
    /// The gRPC listener (plaintext HTTP/2).
    address: SocketAddr,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight on each connection.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Seconds of warm-up (answers checked, not counted in the figures).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 6.0)]
    duration: f64,
    /// `attributes.request.http.host` of the checked request.
    #[arg(long)]
    host: String,
    /// Its path.
    #[arg(long, default_value = "/hello.txt")]
    path: String,
    /// Its `cookie` header (the session), if any.
    #[arg(long)]
    cookie: Option<String>,
    /// The server's pid: its CPU time (utime + stime, all threads) is read
    /// from /proc at both ends of the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u32,
}

/// What one call came back with.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Outcome {
    /// gRPC OK, `CheckResponse.status` OK, an `ok_response`.
    Allowed,
    /// gRPC OK, `CheckResponse.status` with this code (a decision against).
    Denied(i32),
    /// gRPC OK and status OK, but no `ok_response`, or an undecodable body.
    Malformed,
    /// A gRPC status other than OK.
    GrpcError(i32),
    /// HTTP/2 failed (the connection or stream); ends that caller.
    Transport,
}

/// One caller's tally over the measured window.
#[derive(Default)]
struct Tally {
    /// Latencies in ns of the calls that completed inside the window.
    latencies: Vec<u32>,
    /// Every answer, warm-up included, by outcome.
    outcomes: BTreeMap<Outcome, u64>,
}

/// The request frame every call sends: what Envoy sends for a browser's GET
/// of `host` + `path`, gRPC-framed (uncompressed, length-prefixed).
fn request_frame(args: &Args) -> Bytes {
    let mut headers = HashMap::from([
        ("accept".to_owned(), "text/html".to_owned()),
        ("user-agent".to_owned(), "bench".to_owned()),
    ]);
    if let Some(cookie) = &args.cookie {
        headers.insert("cookie".to_owned(), cookie.clone());
    }
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".to_owned(),
                    scheme: "http".to_owned(),
                    host: args.host.clone(),
                    path: args.path.clone(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    };
    let message = request.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(&message);
    frame.freeze()
}

/// The gRPC status in `headers` (trailers, or the headers of a
/// trailers-only answer), if there is one.
fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    let value = headers.get("grpc-status")?;
    value.to_str().ok()?.parse().ok()
}

/// One `Check`: sends `frame`, reads the answer to its trailers.
async fn call(
    sender: &mut h2::client::SendRequest<Bytes>,
    uri: &http::Uri,
    frame: &Bytes,
) -> Result<Outcome, h2::Error> {
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert("te", http::HeaderValue::from_static("trailers"));
    std::future::poll_fn(|cx| sender.poll_ready(cx)).await?;
    let (response, mut stream) = sender.send_request(request, false)?;
    stream.send_data(frame.clone(), true)?;
    let response = response.await?;
    if response.status() != http::StatusCode::OK {
        return Ok(Outcome::GrpcError(-i32::from(response.status().as_u16())));
    }
    if let Some(code) = grpc_status(response.headers()) {
        return Ok(Outcome::GrpcError(code));
    }
    let mut body = response.into_body();
    let mut message = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
        message.extend_from_slice(&chunk);
    }
    let code = body.trailers().await?.as_ref().and_then(grpc_status);
    if code != Some(0) {
        return Ok(Outcome::GrpcError(code.unwrap_or(-1)));
    }
    Ok(check_answer(&message))
}

/// Decodes the one gRPC message in `frame` as a `CheckResponse`.
fn check_answer(frame: &[u8]) -> Outcome {
    let Some((&[0, a, b, c, d], message)) = frame.split_first_chunk::<5>() else {
        return Outcome::Malformed;
    };
    if u32::from_be_bytes([a, b, c, d]) as usize != message.len() {
        return Outcome::Malformed;
    }
    let Ok(answer) = CheckResponse::decode(message) else {
        return Outcome::Malformed;
    };
    match (answer.status.map_or(0, |s| s.code), answer.http_response) {
        (0, Some(HttpResponse::OkResponse(_))) => Outcome::Allowed,
        (0, _) => Outcome::Malformed,
        (code, _) => Outcome::Denied(code),
    }
}

/// One caller: calls back to back until `end`, timing those that complete
/// between `start` and `end`.
async fn caller(
    mut sender: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    frame: Bytes,
    start: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let sent = Instant::now();
        if sent >= end {
            return tally;
        }
        let outcome = call(&mut sender, &uri, &frame)
            .await
            .unwrap_or_else(|error| {
                eprintln!("grpc_load: {error}");
                Outcome::Transport
            });
        *tally.outcomes.entry(outcome).or_default() += 1;
        if outcome == Outcome::Transport {
            return tally;
        }
        let done = Instant::now();
        if done >= start && done <= end {
            let ns = done.duration_since(sent).as_nanos();
            tally.latencies.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
    }
}

/// utime + stime of process `pid` ("self" for this one) in seconds, all
/// its threads.
fn cpu_seconds(pid: &str, clk_tck: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name, which ends at the last ')': state is
    // field 3, utime 14 and stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(utime), Some(stime)) => Ok((utime + stime) as f64 / f64::from(clk_tck)),
        _ => Err(format!("/proc/{pid}/stat: unexpected format")),
    }
}

/// The `q` quantile of sorted `values`, in µs.
fn quantile_us(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn run(args: Args) -> Result<bool, String> {
    let frame = request_frame(&args);
    let uri: http::Uri = format!("http://{}{CHECK_PATH}", args.address)
        .parse()
        .map_err(|e| format!("uri: {e}"))?;
    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let tcp = tokio::net::TcpStream::connect(args.address)
            .await
            .map_err(|e| format!("connect {}: {e}", args.address))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = h2::client::handshake(tcp)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("grpc_load: connection: {error}");
            }
        });
        senders.push(sender);
    }
    let start = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = start + Duration::from_secs_f64(args.duration);
    let callers: Vec<_> = senders
        .iter()
        .flat_map(|sender| std::iter::repeat_n(sender, args.in_flight))
        .map(|sender| {
            tokio::spawn(caller(
                sender.clone(),
                uri.clone(),
                frame.clone(),
                start,
                end,
            ))
        })
        .collect();
    tokio::time::sleep_until(start.into()).await;
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let server_cpu = || {
        server_pid
            .as_deref()
            .map(|pid| cpu_seconds(pid, args.clk_tck))
            .transpose()
    };
    let (server_before, own_before) = (server_cpu()?, cpu_seconds("self", args.clk_tck)?);
    tokio::time::sleep_until(end.into()).await;
    let (server_after, own_after) = (server_cpu()?, cpu_seconds("self", args.clk_tck)?);
    let mut latencies = Vec::new();
    let mut outcomes = BTreeMap::<Outcome, u64>::new();
    for handle in callers {
        let tally = handle.await.map_err(|e| format!("caller: {e}"))?;
        latencies.extend(tally.latencies);
        for (outcome, n) in tally.outcomes {
            *outcomes.entry(outcome).or_default() += n;
        }
    }
    latencies.sort_unstable();
    let calls = latencies.len();
    let unexpected: u64 = outcomes
        .iter()
        .filter(|(o, _)| **o != Outcome::Allowed)
        .map(|(_, n)| n)
        .sum();
    // CPU seconds as `"NAME_cpu_s": …, "NAME_cpu_share_percent": …,
    // "NAME_cpu_us_per_call": …`.
    let cpu_fields = |name: &str, cpu: f64| {
        let per_call = if calls > 0 {
            cpu * 1e6 / calls as f64
        } else {
            0.0
        };
        format!(
            r#", "{name}_cpu_s": {cpu:.2}, "{name}_cpu_share_percent": {:.1}, "{name}_cpu_us_per_call": {per_call:.2}"#,
            cpu * 100.0 / args.duration,
        )
    };
    // The client's own share says whether it, not the server, was the limit.
    let mut cpu = cpu_fields("client", own_after - own_before);
    if let (Some(before), Some(after)) = (server_before, server_after) {
        cpu.push_str(&cpu_fields("server", after - before));
    }
    let by_kind: Vec<String> = outcomes
        .iter()
        .map(|(o, n)| format!(r#""{o:?}": {n}"#))
        .collect();
    println!(
        r#"{{"calls": {calls}, "seconds": {:.3}, "rps": {:.1}, "p50_us": {:.1}, "p90_us": {:.1}, "p99_us": {:.1}, "max_us": {:.1}, "unexpected": {unexpected}, "outcomes": {{{}}}{cpu}}}"#,
        args.duration,
        calls as f64 / args.duration,
        quantile_us(&latencies, 0.50),
        quantile_us(&latencies, 0.90),
        quantile_us(&latencies, 0.99),
        quantile_us(&latencies, 1.0),
        by_kind.join(", "),
    );
    if unexpected > 0 {
        eprintln!(
            "grpc_load: {unexpected} answers were not an OK allow: {}",
            by_kind.join(", ")
        );
    }
    Ok(unexpected == 0 && calls > 0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("grpc_load: runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("grpc_load: {error}");
            ExitCode::from(2)
        }
    }
}
