//! HAProxy as a front end: authgate is the agent (SPOA) of HAProxy's Stream
//! Processing Offload Engine, speaking SPOP on `spoe_address`.
//!
//! HAProxy sends one NOTIFY per request with the message [`MESSAGE`]; its
//! arguments are the request facts ([`arg`]), taken from what HAProxy
//! routes on (`examples/haproxy/`). The ACK sets `txn.authgate.*`
//! variables ([`actions`]) which the HAProxy configuration turns into the
//! allow (identity headers upstream), the redirect to sign in, the 401 or
//! the 403. A request whose variables never arrive (agent down, timeout,
//! bad frame) has no `status` and is refused by that configuration: this
//! module never needs to answer to deny.
//!
//! The frame codec is the `spop` crate's; this file does the handshake
//! (version, `max-frame-size`, `pipelining`), the connection's timeouts and
//! the translation.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http::header;
use spop::frame::{FramePayload, FrameType, Message};
use spop::frames::{Ack, AgentDisconnect, AgentHello, FrameCapabilities, HaproxyHello};
use spop::{Action, SpopFrame, StatusCode, TypedData, VarScope};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::app::App;
use crate::config::{ServingConfig, is_trusted_proxy};
use crate::decision::{self, Answer, Client, Mode};
use crate::listener::{self, Phase, Role, Shutdown};
use crate::metrics::FrontEnd;
use crate::policy::ProxyConditions;
use crate::policy::{Target, TargetError};
use crate::telemetry::Asker;

/// The `spoe-message` authgate answers; others in a NOTIFY are ignored.
pub const MESSAGE: &str = "authgate-check";

/// `option var-prefix` of the SPOE agent: the variables are
/// `txn.authgate.<name>`.
pub const VAR_PREFIX: &str = "authgate";

/// The message's arguments (`args name=<sample>`). Besides these, the
/// proxy's own conditions under oauth2-proxy's names
/// ([`crate::policy::conditions`]: `allowed_groups=var(txn.allowed_groups)`,
/// set per host by HAProxy's configuration); a missing sample is none.
pub mod arg {
    /// `method`: the request's method.
    pub const METHOD: &str = "method";
    /// `req.fhdr(host)`: the `Host` HAProxy routes on (whole, with its port).
    pub const HOST: &str = "host";
    /// `pathq`: path and query, also of an absolute-form request line.
    pub const PATH: &str = "path";
    /// `ssl_fc`: true for https.
    pub const TLS: &str = "tls";
    /// `unique-id`: the request's id, for the decision's log line.
    pub const REQUEST_ID: &str = "request_id";
    /// `src`: the client's address as HAProxy sees it (behind a load
    /// balancer, `accept-proxy` makes it the client the PROXY protocol names).
    pub const SOURCE_IP: &str = "source_ip";
    /// Request headers are passed under their names with `-` as `_`
    /// (`x_requested_with=req.fhdr(x-requested-with)`): `cookie`,
    /// `authorization`, `accept`, `x_requested_with`, `content_type`,
    /// `origin`, `access_control_request_method`, and for traces
    /// `traceparent` and `tracestate`.
    pub const HEADERS: [&str; 9] = [
        "cookie",
        "authorization",
        "accept",
        "x_requested_with",
        "content_type",
        "origin",
        "access_control_request_method",
        "traceparent",
        "tracestate",
    ];
}

/// The answer's variables (`txn.authgate.<name>`).
pub mod var {
    /// 200 (allow), 302/303 (to sign in), 401, 403 or 503; always set.
    pub const STATUS: &str = "status";
    /// The sign-in URL of a 302/303.
    pub const LOCATION: &str = "location";
    /// A 401's `WWW-Authenticate`.
    pub const WWW_AUTHENTICATE: &str = "www_authenticate";
    /// A refusal's short body, without its final newline.
    pub const BODY: &str = "body";
    /// The re-issued session cookie, for the client's response (allow).
    pub const SET_COOKIE: &str = "set_cookie";
}

/// The largest frame accepted before and after the handshake (HAProxy
/// offers `tune.bufsize - 4`, 16380 by default; the smaller wins): a
/// NOTIFY carries a subset of one request head, which authgate's HTTP
/// listeners cap at this.
pub const MAX_FRAME_SIZE: u32 = listener::MAX_HEAD_BYTES as u32;

/// NOTIFY frames decided at once on one connection (pipelining); past it,
/// the connection is not read until one is answered.
const MAX_IN_FLIGHT: usize = 64;

/// The variable carrying the upstream header `name`: `hdr_` and the name
/// in lower case, every character HAProxy does not allow in a variable name
/// as `_` (`X-Auth-Request-User` → `hdr_x_auth_request_user`).
pub fn header_var(name: &str) -> String {
    let mut var = String::with_capacity(4 + name.len());
    var.push_str("hdr_");
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    var
}

/// Serves SPOP on `listener` until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let schedule = Shutdown::schedule(shutdown, app.config().serving.shutdown_delay);
    serve_scheduled(app, listener, schedule).await
}

/// [`serve`] on a schedule shared with the other listeners: connections
/// are answered while draining; when stopping, each finishes its NOTIFYs in
/// flight and says goodbye (AGENT-DISCONNECT), and HAProxy moves to another
/// agent. With `trusted_proxies` set, only those peers are served (as for
/// `/oauth2/auth`): whoever speaks SPOP chooses the request decided about.
pub async fn serve_scheduled(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let serving = app.config().serving;
    let trusted = app.config().trusted_proxies.clone();
    let handle = |stream: tokio::net::TcpStream, peer: SocketAddr| {
        let app = app.clone();
        let shutdown = shutdown.clone();
        let admitted = trusted.is_empty() || is_trusted_proxy(&trusted, peer.ip());
        async move {
            if !admitted {
                tracing::debug!(%peer, "SPOP from a peer not in trusted_proxies: closed");
                return;
            }
            let check = move |message: Message| {
                let app = app.clone();
                async move { check(&app, &message).await }
            };
            if let Err(status) = converse(stream, serving, shutdown, check).await {
                tracing::debug!(%peer, status = status.to_u32(), "SPOP connection closed: {status}");
            }
        }
    };
    listener::serve_tcp(
        listener,
        serving,
        &app.config().trusted_proxies,
        shutdown.clone(),
        Role::Spoe,
        handle,
    )
    .await
}

/// Decides the request [`MESSAGE`] describes; its variables.
async fn check(app: &App, message: &Message) -> Vec<Action> {
    // Every `allowed_…` argument: an unknown one refuses everyone, as in a
    // query string.
    let conditions = ProxyConditions::from_pairs(
        message
            .args
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), text(value)?))),
    );
    let text = |name: &str| message.get(name).and_then(text);
    let header = |name: &str| header_arg(message, name);
    let method = text(arg::METHOD);
    let scheme = match message.get(arg::TLS) {
        Some(TypedData::Bool(true)) => Some("https"),
        Some(TypedData::Bool(false)) => Some("http"),
        _ => None,
    };
    let target = match (scheme, text(arg::HOST), text(arg::PATH)) {
        (Some(scheme), Some(host), Some(path)) => Target::from_parts(scheme, host, path),
        _ => Err(TargetError::Missing),
    };
    let asker = Asker {
        front_end: FrontEnd::Haproxy,
        request_id: crate::telemetry::request_id(text(arg::REQUEST_ID).map(str::as_bytes)),
        trace: crate::traces::TraceHeaders::read(|name| header(name).map(str::as_bytes)),
    };
    let decision = app
        .decide(
            asker,
            decision::Request {
                target: &target,
                session_cookies: crate::session::cookie_values(
                    header("cookie"),
                    &app.config().cookie.name,
                ),
                method,
                authorization: header("authorization"),
                preflight: decision::is_preflight(method, header),
                source_ip: message.get(arg::SOURCE_IP).and_then(ip),
                conditions: &conditions,
            },
        )
        .await;
    let mode = Mode::Direct {
        client: Client::for_decision(&decision, header),
        safe_method: method
            .is_some_and(|m| m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("HEAD")),
    };
    actions(&Answer::new(&decision, mode))
}

/// The answer as HAProxy variables: the one mapping, kept small for the
/// port to `decision::Answer`. The headers to remove on allow are not
/// passed: HAProxy cannot delete header names chosen at run time, so its
/// configuration deletes every spelling of every name authgate may set
/// (`authgate print haproxy` lists the routes' `jwt_claims_headers`).
fn actions(answer: &Answer) -> Vec<Action> {
    let set = |name: &str, value: TypedData| Action::SetVar {
        scope: VarScope::Transaction,
        name: name.to_owned(),
        value,
    };
    let text = |value: &http::HeaderValue| {
        TypedData::String(String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let mut actions = vec![set(
        var::STATUS,
        TypedData::UInt32(answer.status.as_u16().into()),
    )];
    if answer.allows() {
        for (name, value) in &answer.upstream {
            actions.push(set(&header_var(name.as_str()), text(value)));
        }
        if let Some(cookie) = answer.client.get(header::SET_COOKIE) {
            actions.push(set(var::SET_COOKIE, text(cookie)));
        }
        return actions;
    }
    // HAProxy's log-format escapes control characters: the final newline
    // is written in the configuration, as is `Cache-Control: no-store`.
    actions.push(set(
        var::BODY,
        TypedData::String(answer.body.trim_end_matches('\n').to_owned()),
    ));
    for (name, var) in [
        (header::LOCATION, var::LOCATION),
        (header::WWW_AUTHENTICATE, var::WWW_AUTHENTICATE),
    ] {
        if let Some(value) = answer.client.get(name) {
            actions.push(set(var, text(value)));
        }
    }
    actions
}

/// An address argument (`src` is IPv4 or IPv6; a string is parsed).
fn ip(value: &TypedData) -> Option<std::net::IpAddr> {
    let ip = match value {
        TypedData::IPv4(ip) => (*ip).into(),
        TypedData::IPv6(ip) => (*ip).into(),
        other => text(other)?.trim().parse().ok()?,
    };
    Some(std::net::IpAddr::to_canonical(&ip))
}

/// A string argument's text (HAProxy sends a missing sample as NULL).
fn text(value: &TypedData) -> Option<&str> {
    match value {
        TypedData::String(text) => Some(text),
        TypedData::Binary(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// The request header `name` (lower case) from its argument, whose name
/// has `_` for `-` (see [`arg::HEADERS`]).
fn header_arg<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    let same = |arg: &str| {
        arg.len() == name.len()
            && arg
                .bytes()
                .zip(name.bytes())
                .all(|(a, h)| a == h || (a == b'_' && h == b'-'))
    };
    message
        .args
        .iter()
        .find(|(arg, _)| same(arg))
        .and_then(|(_, value)| text(value))
}

/// Why a connection ended: the status of the AGENT-DISCONNECT sent
/// (`StatusCode::None`: a normal end).
type Ended = Result<(), StatusCode>;

/// One SPOP connection: the HELLO handshake, then NOTIFY → ACK (several in
/// flight: `pipelining`) until HAProxy disconnects, the connection times
/// out (`header_read_timeout` for the HELLO and for the rest of a started
/// frame, `timeout_idle` between frames), a frame is bad, or `shutdown`
/// stops. Every end but HAProxy closing the socket sends an
/// AGENT-DISCONNECT with its status.
async fn converse<S, C, F>(stream: S, serving: ServingConfig, shutdown: Shutdown, check: C) -> Ended
where
    S: AsyncRead + AsyncWrite + Send,
    C: Fn(Message) -> F,
    F: Future<Output = Vec<Action>> + Send,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buffer = bytes::BytesMut::with_capacity(4096);
    let mut max_frame = MAX_FRAME_SIZE;
    let mut hello = false;
    let mut pending = FuturesUnordered::new();
    let stopping = shutdown.reached(Phase::Stopping);
    tokio::pin!(stopping);
    let mut stopped = false;
    // The HELLO is owed from the accept; later, a frame from its first byte.
    let mut head_since = Some(Instant::now());
    let mut idle_since = Instant::now();
    let ended: Ended = 'connection: loop {
        // The complete frames in the buffer, up to MAX_IN_FLIGHT (none
        // once stopping).
        while !stopped && !buffer.is_empty() && pending.len() < MAX_IN_FLIGHT {
            let (used, frame) = match spop::parser::parse_frame_with_limit(&buffer, max_frame) {
                Ok((rest, frame)) => (buffer.len() - rest.len(), frame),
                Err(nom::Err::Incomplete(_)) => break,
                Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                    break 'connection Err(if e.code == nom::error::ErrorKind::TooLarge {
                        StatusCode::TooBig
                    } else {
                        StatusCode::Invalid
                    });
                }
            };
            let _ = buffer.split_to(used);
            head_since = (!buffer.is_empty()).then(Instant::now);
            idle_since = Instant::now();
            match (hello, frame.frame_type()) {
                (false, FrameType::HaproxyHello) => {
                    let Ok(offer) = HaproxyHello::try_from(frame.payload()) else {
                        break 'connection Err(StatusCode::Invalid);
                    };
                    let Some(version) = offer.negotiate_version() else {
                        break 'connection Err(StatusCode::BadVersion);
                    };
                    max_frame = match offer.negotiate_max_frame_size(MAX_FRAME_SIZE) {
                        Ok(size) => size,
                        Err(status) => break 'connection Err(status),
                    };
                    let capabilities = offer
                        .capabilities
                        .iter()
                        .copied()
                        .filter(|c| *c == FrameCapabilities::Pipelining)
                        .collect();
                    let reply = AgentHello {
                        version,
                        max_frame_size: max_frame,
                        capabilities,
                    };
                    if send(&mut writer, reply.serialize()).await.is_err() {
                        return Err(StatusCode::Io);
                    }
                    // A health check ends with the HELLO: no DISCONNECT.
                    if offer.healthcheck == Some(true) {
                        return Ok(());
                    }
                    hello = true;
                }
                (true, FrameType::Notify) => {
                    let metadata = frame.metadata();
                    let (stream_id, frame_id) = (metadata.stream_id, metadata.frame_id);
                    let message = match frame.payload() {
                        FramePayload::ListOfMessages(messages) => {
                            messages.iter().find(|m| m.name == MESSAGE).cloned()
                        }
                        _ => None,
                    };
                    // Not ours: an empty ACK, so HAProxy sets no status.
                    let answer = message.map(&check);
                    pending.push(async move {
                        let actions = match answer {
                            Some(answer) => answer.await,
                            None => Vec::new(),
                        };
                        Ack {
                            stream_id,
                            frame_id,
                            actions,
                        }
                    });
                }
                (_, FrameType::HaproxyDisconnect) => break 'connection Ok(()),
                _ => break 'connection Err(StatusCode::Invalid),
            }
        }
        if stopped && pending.is_empty() {
            break Ok(());
        }
        let deadline = match head_since {
            Some(since) => since + serving.header_read_timeout,
            None => idle_since + serving.idle_timeout,
        };
        tokio::select! {
            biased;
            Some(ack) = pending.next() => {
                if send_ack(&mut writer, ack, max_frame).await.is_err() {
                    return Err(StatusCode::Io);
                }
                idle_since = Instant::now();
            }
            () = &mut stopping, if !stopped => stopped = true,
            read = reader.read_buf(&mut buffer), if !stopped && pending.len() < MAX_IN_FLIGHT => {
                match read {
                    // HAProxy closed the socket: nobody to say goodbye to.
                    Ok(0) => return Ok(()),
                    Ok(_) => {
                        head_since.get_or_insert_with(Instant::now);
                    }
                    Err(_) => return Err(StatusCode::Io),
                }
            }
            () = tokio::time::sleep_until(deadline), if pending.is_empty() => {
                break Err(StatusCode::Timeout);
            }
        }
    };
    let status = ended.err().unwrap_or(StatusCode::None);
    let goodbye = AgentDisconnect {
        status_code: status.to_u32(),
        message: status.message().to_owned(),
    };
    let _ = send(&mut writer, goodbye.serialize()).await;
    let _ = writer.shutdown().await;
    ended
}

/// Writes one frame, serialized first (frames are not `Sync`).
async fn send(
    writer: &mut (impl AsyncWrite + Unpin),
    frame: std::io::Result<Vec<u8>>,
) -> std::io::Result<()> {
    writer.write_all(&frame?).await
}

/// Writes an ACK; one larger than the agreed frame size (a huge JWT or
/// group list) is replaced by a 503 rather than cut by HAProxy.
async fn send_ack(
    writer: &mut (impl AsyncWrite + Unpin),
    mut ack: Ack,
    max_frame: u32,
) -> std::io::Result<()> {
    let mut bytes = ack.serialize()?;
    if bytes.len().saturating_sub(4) > max_frame as usize {
        tracing::warn!(
            size = bytes.len(),
            max_frame,
            "the answer's variables exceed the SPOE max-frame-size: answering 503"
        );
        ack.actions = actions(&Answer::new(
            &decision::Decision::Unavailable,
            Mode::Direct {
                client: Client::Program,
                safe_method: true,
            },
        ));
        bytes = ack.serialize()?;
    }
    writer.write_all(&bytes).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    use http::HeaderName;
    use spop::frame::{FrameFlags, Metadata};
    use spop::frames::haproxy_hello::HaproxyHelloFrame;
    use tokio::io::DuplexStream;

    fn serving() -> ServingConfig {
        ServingConfig {
            max_connections: 10,
            max_connections_per_peer: 10,
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    /// An agent on one end of a pipe whose checks answer `status` 200 with
    /// the message's `host` echoed; the other end, and its end state.
    fn agent() -> (
        DuplexStream,
        tokio::task::JoinHandle<Ended>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (haproxy, agent) = tokio::io::duplex(1 << 16);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::schedule(
            async {
                let _ = stopped.await;
            },
            Duration::ZERO,
        );
        let check = |message: Message| async move {
            let host = message
                .get(arg::HOST)
                .and_then(text)
                .unwrap_or("")
                .to_owned();
            vec![
                Action::SetVar {
                    scope: VarScope::Transaction,
                    name: var::STATUS.into(),
                    value: TypedData::UInt32(200),
                },
                Action::SetVar {
                    scope: VarScope::Transaction,
                    name: "host".into(),
                    value: TypedData::String(host),
                },
            ]
        };
        let task = tokio::spawn(converse(agent, serving(), shutdown, check));
        (haproxy, task, stop)
    }

    /// A frame as HAProxy writes it: length, type, FIN, stream and frame
    /// id (one byte each here), payload.
    fn frame(kind: u8, stream_id: u8, frame_id: u8, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![kind, 0, 0, 0, 1, stream_id, frame_id];
        body.extend_from_slice(payload);
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    fn string(out: &mut Vec<u8>, text: &str) {
        spop::encode_varint_into(text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }

    fn hello(max_frame: u32, healthcheck: bool) -> Vec<u8> {
        let hello = HaproxyHelloFrame {
            metadata: Metadata {
                flags: FrameFlags::new(true, false),
                stream_id: 0,
                frame_id: 0,
            },
            payload: HaproxyHello {
                supported_versions: vec![spop::Version::new(2, 0, 0)],
                max_frame_size: max_frame,
                capabilities: vec![FrameCapabilities::Pipelining],
                healthcheck: healthcheck.then_some(true),
                engine_id: Some("test".into()),
            },
        };
        hello.serialize().unwrap()
    }

    fn notify(stream_id: u8, frame_id: u8, message: &str, host: &str) -> Vec<u8> {
        let mut payload = Vec::new();
        string(&mut payload, message);
        payload.push(1);
        string(&mut payload, arg::HOST);
        TypedData::String(host.into()).to_bytes(&mut payload);
        frame(3, stream_id, frame_id, &payload)
    }

    /// Reads one frame: (type, stream id, frame id, its parsed form).
    async fn read_frame(haproxy: &mut DuplexStream) -> Option<(u8, Vec<u8>)> {
        let mut length = [0u8; 4];
        haproxy.read_exact(&mut length).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
        haproxy.read_exact(&mut body).await.ok()?;
        Some((body[0], body))
    }

    /// The KV-LIST or action bytes contain `needle`.
    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// HELLO → AGENT-HELLO (version 2.0, the smaller frame size,
    /// pipelining); two pipelined NOTIFYs → their ACKs with the variables;
    /// a NOTIFY without our message → an empty ACK; DISCONNECT → DISCONNECT
    /// and close.
    #[tokio::test]
    async fn hello_notify_ack_disconnect_round_trip() {
        let (mut haproxy, task, _stop) = agent();
        haproxy.write_all(&hello(16380, false)).await.unwrap();
        let (kind, body) = read_frame(&mut haproxy).await.unwrap();
        assert_eq!(kind, 101, "AGENT-HELLO");
        let mut version = Vec::new();
        TypedData::String("2.0".into()).to_bytes(&mut version);
        assert!(contains(&body, &version), "version 2.0");
        assert!(contains(&body, b"pipelining"));
        let mut size = Vec::new();
        TypedData::UInt32(16380).to_bytes(&mut size);
        assert!(contains(&body, &size), "HAProxy's smaller max-frame-size");

        let mut two = notify(7, 1, MESSAGE, "a.example.test");
        two.extend(notify(8, 1, MESSAGE, "b.example.test"));
        haproxy.write_all(&two).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (kind, body) = read_frame(&mut haproxy).await.unwrap();
            assert_eq!(kind, 103, "ACK");
            // SET-VAR, 3 args, scope txn, "status", UINT32 200.
            let mut status = vec![1, 3, 2];
            string(&mut status, var::STATUS);
            TypedData::UInt32(200).to_bytes(&mut status);
            assert!(contains(&body, &status), "{body:?}");
            seen.push((body[5], contains(&body, b"a.example.test")));
        }
        seen.sort();
        assert_eq!(seen, [(7, true), (8, false)], "each ACK names its stream");

        haproxy
            .write_all(&notify(9, 2, "someone-else", "a.example.test"))
            .await
            .unwrap();
        let (kind, body) = read_frame(&mut haproxy).await.unwrap();
        assert_eq!(kind, 103);
        assert_eq!(&body[5..], [9, 2], "no actions at all");

        let mut bye = Vec::new();
        string(&mut bye, "status-code");
        TypedData::UInt32(0).to_bytes(&mut bye);
        string(&mut bye, "message");
        TypedData::String(String::new()).to_bytes(&mut bye);
        haproxy.write_all(&frame(2, 0, 0, &bye)).await.unwrap();
        let (kind, _) = read_frame(&mut haproxy).await.unwrap();
        assert_eq!(kind, 102, "AGENT-DISCONNECT");
        assert!(read_frame(&mut haproxy).await.is_none(), "closed");
        assert_eq!(task.await.unwrap(), Ok(()));
    }

    /// A health check's HELLO is answered and the connection closed.
    #[tokio::test]
    async fn healthcheck_hello_is_answered_then_closed() {
        let (mut haproxy, task, _stop) = agent();
        haproxy.write_all(&hello(16380, true)).await.unwrap();
        assert_eq!(read_frame(&mut haproxy).await.unwrap().0, 101);
        assert!(read_frame(&mut haproxy).await.is_none());
        assert_eq!(task.await.unwrap(), Ok(()));
    }

    /// Bad frames end the connection with a DISCONNECT carrying the
    /// reason, and never an ACK: a NOTIFY before the HELLO (invalid), a
    /// frame over the agreed size (too big), a HELLO offering a frame size
    /// under 256 (bad frame size), garbage (invalid).
    #[tokio::test]
    async fn bad_frames_are_refused_with_their_status() {
        let big = {
            let mut f = notify(1, 1, MESSAGE, &"x".repeat(2000));
            f.splice(0..0, hello(1024, false));
            f
        };
        for (bytes, status, hello_first) in [
            (notify(1, 1, MESSAGE, "a"), StatusCode::Invalid, false),
            (big, StatusCode::TooBig, true),
            (hello(100, false), StatusCode::BadFrameSize, false),
            (
                b"\x00\x00\x00\x05\xff\x00\x00\x00\x01".to_vec(),
                StatusCode::Invalid,
                false,
            ),
        ] {
            let (mut haproxy, task, _stop) = agent();
            haproxy.write_all(&bytes).await.unwrap();
            if hello_first {
                assert_eq!(read_frame(&mut haproxy).await.unwrap().0, 101);
            }
            let (kind, body) = read_frame(&mut haproxy).await.unwrap();
            assert_eq!(kind, 102, "AGENT-DISCONNECT for {status:?}");
            let mut code = Vec::new();
            TypedData::UInt32(status.to_u32()).to_bytes(&mut code);
            assert!(contains(&body, &code), "{status:?}: {body:?}");
            assert!(read_frame(&mut haproxy).await.is_none());
            assert_eq!(task.await.unwrap(), Err(status));
        }
    }

    /// A peer that sends nothing is cut after `header_read_timeout`; one
    /// that stops after the handshake after `timeout_idle`, each with a
    /// timeout DISCONNECT.
    #[tokio::test]
    async fn silent_peers_time_out() {
        let (mut haproxy, task, _stop) = agent();
        let started = std::time::Instant::now();
        assert_eq!(read_frame(&mut haproxy).await.unwrap().0, 102);
        assert_eq!(task.await.unwrap(), Err(StatusCode::Timeout));
        assert!(started.elapsed() < Duration::from_millis(550));

        let (mut haproxy, task, _stop) = agent();
        haproxy.write_all(&hello(16380, false)).await.unwrap();
        assert_eq!(read_frame(&mut haproxy).await.unwrap().0, 101);
        let idle = std::time::Instant::now();
        assert_eq!(read_frame(&mut haproxy).await.unwrap().0, 102);
        assert!(idle.elapsed() >= Duration::from_millis(550));
        assert_eq!(task.await.unwrap(), Err(StatusCode::Timeout));
    }

    /// Stopping: the agent says goodbye with a normal DISCONNECT.
    #[tokio::test]
    async fn stopping_says_goodbye() {
        let (mut haproxy, task, stop) = agent();
        haproxy.write_all(&hello(16380, false)).await.unwrap();
        assert_eq!(read_frame(&mut haproxy).await.unwrap().0, 101);
        stop.send(()).unwrap();
        assert_eq!(read_frame(&mut haproxy).await.unwrap().0, 102);
        assert_eq!(task.await.unwrap(), Ok(()));
    }

    fn vars(actions: &[Action]) -> Vec<(String, TypedData)> {
        actions
            .iter()
            .map(|a| match a {
                Action::SetVar { scope, name, value } => {
                    assert!(matches!(scope, VarScope::Transaction));
                    (name.clone(), value.clone())
                }
                Action::UnSetVar { .. } => panic!("unset"),
            })
            .collect()
    }

    /// Allow: status 200, each upstream header as `hdr_<name>`, the
    /// re-issued cookie; deny: status, body, Location or WWW-Authenticate.
    #[test]
    fn answers_become_variables() {
        let mut upstream = http::HeaderMap::new();
        upstream.insert(
            HeaderName::from_static("x-auth-request-user"),
            http::HeaderValue::from_static("alice"),
        );
        let mut client = http::HeaderMap::new();
        client.insert(header::SET_COOKIE, http::HeaderValue::from_static("c=1"));
        let allow = Answer::allow(
            upstream,
            crate::decision::Removals {
                identity: &["x_auth_request_user"],
                claims: Vec::new(),
            },
            client,
        );
        assert_eq!(
            vars(&actions(&allow)),
            [
                ("status".to_owned(), TypedData::UInt32(200)),
                (
                    "hdr_x_auth_request_user".to_owned(),
                    TypedData::String("alice".into())
                ),
                ("set_cookie".to_owned(), TypedData::String("c=1".into())),
            ]
        );
        let sign_in = decision::Decision::SignIn {
            route: crate::policy::RouteId(0),
            sign_in_url: "https://auth.example.test/oauth2/start?rd=x".into(),
            invalid_token: false,
        };
        let direct = |client, safe_method| Mode::Direct {
            client,
            safe_method,
        };
        let redirect = vars(&actions(&Answer::new(
            &sign_in,
            direct(Client::Browser, false),
        )));
        assert!(redirect.contains(&("status".into(), TypedData::UInt32(303))));
        assert!(redirect.contains(&(
            "location".into(),
            TypedData::String("https://auth.example.test/oauth2/start?rd=x".into())
        )));
        let api = vars(&actions(&Answer::new(
            &sign_in,
            direct(Client::Program, true),
        )));
        assert!(api.contains(&("status".into(), TypedData::UInt32(401))));
        assert!(api.iter().any(|(n, _)| n == "www_authenticate"));
        assert!(!api.iter().any(|(n, _)| n == "location"));
        let unavailable = vars(&actions(&Answer::new(
            &decision::Decision::Unavailable,
            direct(Client::Browser, true),
        )));
        assert_eq!(unavailable[0], ("status".into(), TypedData::UInt32(503)));
    }

    /// `src` arrives typed (IPv4, IPv6); a string is parsed; anything else
    /// is no address.
    #[test]
    fn source_ip_argument() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(ip(&TypedData::IPv4(v4)), Some(IpAddr::V4(v4)));
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip(&TypedData::IPv6(v6)), Some(IpAddr::V6(v6)));
        let mapped = v4.to_ipv6_mapped();
        assert_eq!(ip(&TypedData::IPv6(mapped)), Some(IpAddr::V4(v4)));
        assert_eq!(
            ip(&TypedData::String("192.0.2.1".into())),
            Some(IpAddr::V4(v4))
        );
        for other in [
            TypedData::Null,
            TypedData::String("unknown".into()),
            TypedData::UInt32(1),
        ] {
            assert_eq!(ip(&other), None, "{other:?}");
        }
    }

    #[test]
    fn header_variables_are_haproxy_names() {
        assert_eq!(header_var("X-Auth-Request-User"), "hdr_x_auth_request_user");
        assert_eq!(header_var("x-email.verified+1"), "hdr_x_email_verified_1");
    }
}
