//! The accept loop of every listener (`address`, `metrics_address`,
//! `grpc_address`, `spoe_address`): a connection cap, a cap per peer address, `TCP_NODELAY`,
//! a header-read and an idle timeout, HTTP/2 keep-alive pings, and the
//! shutdown schedule load balancers expect.
//!
//! Neither axum's `serve` nor tonic's `Server` has a header or idle timeout
//! (a client sending one header byte a second, or nothing at all, holds a
//! connection and a task forever), so connections are driven here with
//! hyper-util's `auto` builder: HTTP/1.1 and HTTP/2 cleartext by prior
//! knowledge on the HTTP listeners, HTTP/2 only on the gRPC one.
//!
//! # Caps
//! At `max_connections` open connections a listener stops accepting (the
//! kernel queues the next ones). A connection from a peer address that
//! already holds `max_connections_per_peer` is closed at once, so one
//! client cannot take every place; peers in `trusted_proxies` are exempt.
//!
//! # Timeouts
//! Go's semantics, which operators know from `ReadHeaderTimeout` and
//! `IdleTimeout`: a request's head must arrive within `header_read_timeout`
//! counted from its first byte (from the accept for a new connection); a
//! connection with no request in flight and no bytes of a new one is closed
//! after `timeout_idle`. hyper's own header timer starts when it begins to
//! wait for a request, which would make the two one value, so a small
//! per-connection watchdog keeps them instead, checking a quarter of the
//! shorter timeout apart (so a late connection is cut within 1.25× its
//! timeout, and a busy one costs nothing per request).
//!
//! On the gRPC listener the "head" a new connection owes is the HTTP/2
//! client preface; after it, and between calls, only `timeout_idle`
//! applies. A call is in flight until its response body (a stream, for
//! health `Watch`) ends. HTTP/2 peers that stop answering PINGs are cut
//! (see [`H2_KEEPALIVE_INTERVAL`]).
//!
//! # Shutdown
//! [`Shutdown`] is one schedule for every listener of the process: the
//! signal → [`Phase::Draining`] (still accepting and answering; `/readyz`
//! and gRPC health report not ready; HTTP/1 answers carry `Connection:
//! close`, so keep-alive clients reconnect — elsewhere, once the load
//! balancer has noticed) → after `shutdown_delay`, [`Phase::Stopping`]: the
//! listener closes, in-flight requests finish (at most `shutdown_timeout`),
//! idle connections close, and [`serve`] returns.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::{HeaderValue, Request, StatusCode, Version, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::config::{ServingConfig, is_trusted_proxy};

/// The largest request head accepted, HTTP/1 (request line and headers) and
/// HTTP/2 (header list): Envoy's default is 60 KiB. A larger one gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// At most one "connection cap reached" line (of each cap) per this
/// interval.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// HTTP/2 connections, idle or not, are PINGed this often and closed when
/// the PING is not acknowledged within [`H2_KEEPALIVE_TIMEOUT`]: a peer
/// that vanished (power loss, a NAT mapping dropped) is cut instead of
/// holding its place until `timeout_idle`, or for ever with a call in
/// flight. Envoy and every gRPC client acknowledge PINGs.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// See [`H2_KEEPALIVE_INTERVAL`].
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP/2 client connection preface (`PRI * HTTP/2.0…`), RFC 9113 §3.4.
const H2_PREFACE_LEN: u64 = 24;

/// Where the process is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Accepting and answering; ready.
    Serving,
    /// The signal came: still accepting and answering, not ready.
    Draining,
    /// No longer accepting; requests in flight finish.
    Stopping,
}

/// The shutdown schedule every listener of a process follows. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    phase: watch::Receiver<Phase>,
}

impl Shutdown {
    /// Starts the schedule: when `signal` resolves, [`Phase::Draining`];
    /// `delay` later, [`Phase::Stopping`].
    pub fn schedule(
        signal: impl Future<Output = ()> + Send + 'static,
        delay: Duration,
    ) -> Shutdown {
        let (phase, receiver) = watch::channel(Phase::Serving);
        tokio::spawn(async move {
            tokio::select! {
                () = signal => {}
                // Every listener is gone: nothing left to schedule.
                () = phase.closed() => return,
            }
            phase.send_replace(Phase::Draining);
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "draining: /readyz answers 503, still serving until shutdown_delay ends"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = phase.closed() => return,
                }
            }
            phase.send_replace(Phase::Stopping);
        });
        Shutdown { phase: receiver }
    }

    /// Where the schedule is now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves once the schedule has reached `phase` (at once if the
    /// schedule is gone, which only happens when the runtime stops).
    pub async fn reached(&self, phase: Phase) {
        let mut receiver = self.phase.clone();
        let _ = receiver.wait_for(|now| *now >= phase).await;
    }
}

/// Which listener [`serve`] runs: for logs, and whether it answers
/// `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `address`: `/readyz` answers 503 from the moment the drain starts.
    Main,
    /// `metrics_address`.
    Metrics,
    /// `grpc_address`: HTTP/2 only (tonic's routes as the router).
    Grpc,
    /// `spoe_address`: HAProxy's SPOP, not HTTP ([`serve_tcp`]).
    Spoe,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Main => "http",
            Role::Metrics => "metrics",
            Role::Grpc => "grpc",
            Role::Spoe => "spoe",
        }
    }
}

/// Requests a listener answers without its router. The main listener's
/// lane is `GET /oauth2/auth` ([`crate::http::AuthLane`]): every request a
/// protected site serves costs one, and the router's matching, its boxed
/// route service and the `ConnectInfo` extension were a fifth of it.
pub trait Lane: Send + Sync + 'static {
    /// What the lane does with `request`.
    fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Answer<impl Future<Output = Response> + Send + 'static>;
}

/// A [`Lane`]'s answer.
pub enum Answer<F> {
    /// Answered at once: no future, no allocation.
    Now(Response),
    /// Answered once `F` is done (the decision needs I/O).
    Later(F),
    /// Not the lane's: the request, back for the router.
    Pass(Request<Incoming>),
}

/// No lane: the router answers everything (the metrics listener).
#[derive(Clone, Copy, Debug)]
pub struct NoLane;

impl Lane for NoLane {
    fn answer(
        &self,
        request: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Answer<impl Future<Output = Response> + Send + 'static> {
        Answer::<std::future::Pending<Response>>::Pass(request)
    }
}

/// Serves `lane`, and `router` for the rest, on `listener` until
/// `shutdown` reaches [`Phase::Stopping`], then waits at most
/// `config.shutdown_timeout` for the requests in flight; connections still
/// busy then are cut. Peers in `trusted_proxies` are exempt from
/// `max_connections_per_peer`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    lane: impl Lane,
    config: ServingConfig,
    trusted_proxies: &[IpNet],
    shutdown: Shutdown,
    role: Role,
) -> io::Result<()> {
    let builder = builder(role);
    let services = Arc::new(Services { router, lane });
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let stopping = shutdown.reached(Phase::Stopping);
    tokio::pin!(stopping);
    let mut gate = Gate::new(&config, trusted_proxies, role);
    loop {
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
        let Some((stream, peer, places)) = gate.next(&listener, &mut stopping).await else {
            break;
        };
        let activity = Arc::new(Activity::new(role));
        let service = ConnService {
            services: services.clone(),
            peer,
            activity: activity.clone(),
            shutdown: shutdown.clone(),
            role,
        };
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
        connections.spawn(async move {
            watchdog(connection, &activity, &config, peer).await;
            drop(places);
        });
    }
    drop(listener);
    finish_in_flight(role, config.shutdown_timeout, &gate, graceful.shutdown()).await;
    connections.shutdown().await;
    Ok(())
}

/// After a listener stops accepting: waits up to `timeout` for `drained`
/// (its connections finishing what is in flight), saying so in the log;
/// the caller then cuts whatever is still open.
async fn finish_in_flight(
    role: Role,
    timeout: Duration,
    gate: &Gate,
    drained: impl Future<Output = ()>,
) {
    tracing::info!(
        listener = role.name(),
        connections = gate.cap.open(),
        "stopped accepting; finishing requests in flight"
    );
    if tokio::time::timeout(timeout, drained).await.is_err() {
        tracing::warn!(
            listener = role.name(),
            connections = gate.cap.open(),
            ?timeout,
            "shutdown_timeout elapsed: cutting the connections still busy"
        );
    } else {
        tracing::info!(listener = role.name(), "all connections closed");
    }
}

/// Serves a protocol that is not HTTP (HAProxy's SPOP) on `listener`
/// with the caps of [`serve`]: `handle` drives one connection, including its
/// own timeouts and its goodbye when `shutdown` reaches
/// [`Phase::Stopping`]. Then no more connections are accepted, and those
/// still open after `config.shutdown_timeout` are cut.
pub async fn serve_tcp<F, C>(
    listener: TcpListener,
    config: ServingConfig,
    trusted_proxies: &[IpNet],
    shutdown: Shutdown,
    role: Role,
    handle: F,
) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> C,
    C: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let stopping = shutdown.reached(Phase::Stopping);
    tokio::pin!(stopping);
    let mut gate = Gate::new(&config, trusted_proxies, role);
    loop {
        while connections.try_join_next().is_some() {}
        let Some((stream, peer, places)) = gate.next(&listener, &mut stopping).await else {
            break;
        };
        let connection = handle(stream, peer);
        connections.spawn(async move {
            connection.await;
            drop(places);
        });
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    finish_in_flight(role, config.shutdown_timeout, &gate, drained).await;
    connections.shutdown().await;
    Ok(())
}

/// The accept step every listener shares: a place under the connection
/// cap, then a connection whose peer is under its own cap, with
/// `TCP_NODELAY`.
struct Gate {
    cap: Cap,
    peers: PeerCap,
    role: Role,
}

impl Gate {
    fn new(config: &ServingConfig, trusted_proxies: &[IpNet], role: Role) -> Gate {
        Gate {
            cap: Cap::new(config.max_connections, role),
            peers: PeerCap::new(config.max_connections_per_peer, trusted_proxies, role),
            role,
        }
    }

    /// The next admitted connection and its places (held until dropped);
    /// `None` once `stopping` resolves.
    async fn next(
        &mut self,
        listener: &TcpListener,
        stopping: &mut Pin<&mut impl Future<Output = ()>>,
    ) -> Option<(TcpStream, SocketAddr, (OwnedSemaphorePermit, PeerPlace))> {
        loop {
            let permit = tokio::select! {
                biased;
                () = stopping.as_mut() => return None,
                permit = self.cap.permit() => permit,
            };
            let (stream, peer) = tokio::select! {
                biased;
                () = stopping.as_mut() => return None,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        accept_failed(self.role, &error).await;
                        continue;
                    }
                },
            };
            // Over its peer's cap: closed at once, its place freed for others.
            let Some(peer_place) = self.peers.admit(peer.ip()) else {
                continue;
            };
            no_delay(&stream);
            return Some((stream, peer, (permit, peer_place)));
        }
    }
}

/// A warning logged at most once per [`CAP_WARNING_INTERVAL`]: once per
/// episode, not per connection of a flood.
#[derive(Default)]
struct Warning {
    last: Option<Instant>,
}

impl Warning {
    /// Whether to log now.
    fn due(&mut self) -> bool {
        let due = self
            .last
            .is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL);
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

/// The connection cap of one listener.
struct Cap {
    permits: Arc<Semaphore>,
    max: usize,
    role: Role,
    warning: Warning,
}

impl Cap {
    fn new(max: usize, role: Role) -> Cap {
        Cap {
            permits: Arc::new(Semaphore::new(max)),
            max,
            role,
            warning: Warning::default(),
        }
    }

    /// A free place for the next connection; waits (not accepting, so the
    /// kernel queues new connections) while all are taken.
    async fn permit(&mut self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return permit;
        }
        if self.warning.due() {
            tracing::warn!(
                listener = self.role.name(),
                max_connections = self.max,
                "connection cap reached: new connections wait until one closes"
            );
        }
        match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Connections open now.
    fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// Open connections per peer address, for `max_connections_per_peer`.
/// Entries exist only while their peer has a connection open, so the map
/// holds at most `max_connections` of them.
type PeerCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The cap per peer address of one listener.
struct PeerCap {
    open: PeerCounts,
    max: usize,
    exempt: Vec<IpNet>,
    role: Role,
    warning: Warning,
}

impl PeerCap {
    fn new(max: usize, exempt: &[IpNet], role: Role) -> PeerCap {
        PeerCap {
            open: PeerCounts::default(),
            max,
            exempt: exempt.to_vec(),
            role,
            warning: Warning::default(),
        }
    }

    /// A place for one more connection from `peer`, held until dropped;
    /// `None` when `peer` already holds its `max`.
    fn admit(&mut self, peer: IpAddr) -> Option<PeerPlace> {
        if is_trusted_proxy(&self.exempt, peer) {
            return Some(PeerPlace(None));
        }
        // A dual-stack socket's IPv4-mapped address is the same peer.
        let peer = peer.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer).or_insert(0);
        if *count >= self.max {
            drop(open);
            if self.warning.due() {
                tracing::warn!(
                    listener = self.role.name(),
                    %peer,
                    max_connections_per_peer = self.max,
                    "per-peer connection cap reached: closing this peer's new connections"
                );
            }
            return None;
        }
        *count += 1;
        Some(PeerPlace(Some((self.open.clone(), peer))))
    }
}

/// A connection's place under its peer's cap (`None`: exempt).
struct PeerPlace(Option<(PeerCounts, IpAddr)>);

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let Some((open, peer)) = self.0.take() else {
            return;
        };
        let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&peer);
            }
        }
    }
}

/// Small answers must not wait for the peer's delayed ACK (Nagle): ~40 ms
/// per request otherwise.
fn no_delay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY");
    }
}

/// One builder for every connection of a listener: HTTP/1.1 and h2c
/// (gRPC: HTTP/2 only), bounded heads, keep-alive PINGs on HTTP/2.
fn builder(role: Role) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if role == Role::Grpc {
        builder = builder.http2_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog times heads from their first byte instead.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    builder
}

/// A failed `accept`: a peer that gave up is nothing; anything else (out
/// of file descriptors) is logged and retried after a pause, as the
/// descriptors free up when connections close.
async fn accept_failed(role: Role, error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(listener = role.name(), %error, "accept failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Drives `connection` until it ends, or closes it when a head takes
/// longer than `header_read_timeout` or it idles past `timeout_idle`.
///
/// The deadline is looked at every [`check_interval`], not on every
/// request: waking this task per request (a task switch and a timer reset)
/// would cost a busy connection more than the rest of its decision. A late
/// connection is cut at most one interval after its deadline.
async fn watchdog<C>(connection: C, activity: &Activity, config: &ServingConfig, peer: SocketAddr)
where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    tokio::pin!(connection);
    let every = check_interval(config);
    let mut checks = tokio::time::interval_at(Instant::now() + every, every);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = checks.tick() => {
                if activity.deadline(config).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%peer, "closing the connection: header_read_timeout or timeout_idle");
                    return;
                }
            }
        }
    }
}

/// A quarter of the shorter timeout, at least 50 ms.
fn check_interval(config: &ServingConfig) -> Duration {
    (config.header_read_timeout.min(config.idle_timeout) / 4).max(Duration::from_millis(50))
}

/// What one connection is doing, for its timeouts. Times are milliseconds
/// since the accept.
struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// When the last request ended.
    idle_since: AtomicU64,
    /// When the first byte of the next head came, plus one; 0: none yet.
    head_since: AtomicU64,
    /// HTTP/2: bytes between requests are frames (PING, SETTINGS), not a
    /// head, so only `timeout_idle` applies once the first request came.
    http2: AtomicBool,
    /// HTTP/2 only (gRPC): bytes of the client preface not read yet. The
    /// preface is the head a new connection owes; after it, the connection
    /// idles until its first call.
    preface_owed: AtomicU64,
}

impl Activity {
    fn new(role: Role) -> Activity {
        let http2_only = role == Role::Grpc;
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection owes its first head (or preface) from the
            // accept.
            head_since: AtomicU64::new(1),
            http2: AtomicBool::new(http2_only),
            preface_owed: AtomicU64::new(if http2_only { H2_PREFACE_LEN } else { 0 }),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When the connection is to be closed, if nothing happens before;
    /// `None` while a request is in flight.
    fn deadline(&self, config: &ServingConfig) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let at = |ms: u64, timeout: Duration| {
            self.accepted
                .checked_add(Duration::from_millis(ms).saturating_add(timeout))
        };
        match self.head_since.load(Ordering::Acquire) {
            0 => at(self.idle_since.load(Ordering::Acquire), config.idle_timeout),
            started => at(started - 1, config.header_read_timeout),
        }
    }

    /// `bytes` arrived: with no request in flight they begin a head; on
    /// an HTTP/2-only connection, the whole preface ends the first head.
    fn read(&self, bytes: usize) {
        let owed = self.preface_owed.load(Ordering::Acquire);
        if owed > 0 {
            let left = owed.saturating_sub(u64::try_from(bytes).unwrap_or(u64::MAX));
            self.preface_owed.store(left, Ordering::Release);
            if left == 0 {
                self.idle_since.store(self.now(), Ordering::Release);
                self.head_since.store(0, Ordering::Release);
            }
            return;
        }
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
        {
            self.head_since.store(self.now() + 1, Ordering::Release);
        }
    }

    /// A head was read: the request is in flight until the guard drops.
    fn begin(self: &Arc<Activity>, version: Version) -> InFlight {
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        InFlight(self.clone())
    }
}

/// A request in flight on its connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The accepted socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if matches!(polled, Poll::Ready(Ok(()))) && read > 0 {
            self.activity.read(read);
        }
        polled
    }
}

/// `AsyncWrite` by the inner `stream`.
impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What a listener answers with, shared by its connections (one `Arc`).
struct Services<L> {
    router: Router,
    lane: L,
}

/// The lane and the router as one connection's hyper service: the peer
/// address as `ConnectInfo` for the router, the request counted in flight,
/// and the drain's answers.
#[derive(Clone)]
struct ConnService<L> {
    services: Arc<Services<L>>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shutdown: Shutdown,
    role: Role,
}

type ResponseFuture = Either<
    std::future::Ready<Result<Response, Infallible>>,
    Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
>;

impl<L: Lane> hyper::service::Service<Request<Incoming>> for ConnService<L> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> ResponseFuture {
        let in_flight = self.activity.begin(request.version());
        let draining = self.shutdown.phase() != Phase::Serving;
        if draining && self.role == Role::Main && request.uri().path() == "/readyz" {
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
            close_after(&mut response, request.version());
            return Either::Left(std::future::ready(Ok(response)));
        }
        let version = request.version();
        let streams = self.role == Role::Grpc;
        let finish = move |mut response: Response| {
            if draining {
                close_after(&mut response, version);
            }
            if streams {
                // A gRPC response may stream (health `Watch`): in flight
                // until its body ends.
                response = response.map(|body| {
                    Body::new(Holding {
                        body,
                        _in_flight: in_flight,
                    })
                });
            } else {
                drop(in_flight);
            }
            Ok(response)
        };
        match self.services.lane.answer(request, self.peer) {
            Answer::Now(response) => Either::Left(std::future::ready(finish(response))),
            Answer::Later(answer) => Either::Right(Box::pin(answer.map(finish))),
            Answer::Pass(mut request) => {
                request.extensions_mut().insert(ConnectInfo(self.peer));
                let router = self.services.router.clone();
                Either::Right(Box::pin(async move {
                    let Ok(response) = router.oneshot(request).await;
                    finish(response)
                }))
            }
        }
    }
}

/// A response body keeping its request [`InFlight`] until it is done.
struct Holding {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Holding {
    type Data = <Body as hyper::body::Body>::Data;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// While draining, an HTTP/1 connection closes after this answer, so the
/// client's next request opens a connection the load balancer sends
/// elsewhere. (HTTP/2 gets GOAWAY when the listener stops.)
fn close_after(response: &mut Response, version: Version) {
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests;
