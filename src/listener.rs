//! The HTTP accept loop of the main listener and `metrics_address`: a
//! connection cap, `TCP_NODELAY`, a header-read and an idle timeout, and
//! the shutdown schedule load balancers expect.
//!
//! axum's own `serve` has no connection cap and no header timeout (a client
//! sending one header byte a second holds a connection and a task forever),
//! so connections are driven here with hyper-util's `auto` builder
//! (HTTP/1.1, and HTTP/2 cleartext by prior knowledge, as before).
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
//! # Shutdown
//! [`Shutdown`] is one schedule for every listener of the process: the
//! signal → [`Phase::Draining`] (still accepting and answering; `/readyz`
//! and gRPC health report not ready; HTTP/1 answers carry `Connection:
//! close`, so keep-alive clients reconnect — elsewhere, once the load
//! balancer has noticed) → after `shutdown_delay`, [`Phase::Stopping`]: the
//! listener closes, in-flight requests finish (at most `shutdown_timeout`),
//! idle connections close, and [`serve`] returns.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::{HeaderValue, Request, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::config::ServingConfig;

/// The largest request head accepted, HTTP/1 (request line and headers) and
/// HTTP/2 (header list): Envoy's default is 60 KiB. A larger one gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// At most one "connection cap reached" line per this interval.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

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
    /// `grpc_address` (tonic serves it; see [`capped_incoming`]).
    Grpc,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Main => "http",
            Role::Metrics => "metrics",
            Role::Grpc => "grpc",
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
/// busy then are cut.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    lane: impl Lane,
    config: ServingConfig,
    shutdown: Shutdown,
    role: Role,
) -> io::Result<()> {
    let builder = builder();
    let services = Arc::new(Services { router, lane });
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let stopping = shutdown.reached(Phase::Stopping);
    tokio::pin!(stopping);
    let mut cap = Cap::new(config.max_connections, role);
    loop {
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = &mut stopping => break,
            permit = cap.permit() => permit,
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(role, &error).await;
                    continue;
                }
            },
        };
        no_delay(&stream);
        let activity = Arc::new(Activity::new());
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
            drop(permit);
        });
    }
    drop(listener);
    let open = cap.open();
    tracing::info!(
        listener = role.name(),
        connections = open,
        "stopped accepting; finishing requests in flight"
    );
    if tokio::time::timeout(config.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        let open = cap.open();
        tracing::warn!(
            listener = role.name(),
            connections = open,
            timeout = ?config.shutdown_timeout,
            "shutdown_timeout elapsed: cutting the connections still busy"
        );
    } else {
        tracing::info!(listener = role.name(), "all connections closed");
    }
    connections.shutdown().await;
    Ok(())
}

/// The connection cap of one listener.
struct Cap {
    permits: Arc<Semaphore>,
    max: usize,
    role: Role,
    warned: Option<Instant>,
}

impl Cap {
    fn new(max: usize, role: Role) -> Cap {
        Cap {
            permits: Arc::new(Semaphore::new(max)),
            max,
            role,
            warned: None,
        }
    }

    /// A free place for the next connection; waits (not accepting, so the
    /// kernel queues new connections) while all are taken.
    async fn permit(&mut self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return permit;
        }
        // Once per episode, not per connection of a flood.
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= CAP_WARNING_INTERVAL)
        {
            tracing::warn!(
                listener = self.role.name(),
                max_connections = self.max,
                "connection cap reached: new connections wait until one closes"
            );
            self.warned = Some(Instant::now());
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

/// Small answers must not wait for the peer's delayed ACK (Nagle): ~40 ms
/// per request otherwise.
fn no_delay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY");
    }
}

/// The gRPC listener's connections for tonic: at most `max_connections`
/// open at once, each with `TCP_NODELAY`. Accept errors are handled here
/// (tonic would end the server on one).
pub fn capped_incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl futures_util::Stream<Item = Result<CappedStream, Infallible>> {
    let cap = Cap::new(max_connections, Role::Grpc);
    futures_util::stream::unfold((listener, cap), |(listener, mut cap)| async move {
        loop {
            let permit = cap.permit().await;
            match listener.accept().await {
                Ok((stream, _)) => {
                    no_delay(&stream);
                    let stream = CappedStream {
                        stream,
                        _permit: permit,
                    };
                    return Some((Ok(stream), (listener, cap)));
                }
                Err(error) => accept_failed(Role::Grpc, &error).await,
            }
        }
    })
}

/// An accepted socket holding its place under the cap until dropped.
pub struct CappedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for CappedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

/// `AsyncWrite` by the inner `stream` field.
macro_rules! delegate_write {
    ($type:ty) => {
        impl AsyncWrite for $type {
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

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_shutdown(cx)
            }
        }
    };
}

delegate_write!(CappedStream);
delegate_write!(Watched);

/// One builder for every connection: HTTP/1.1 and h2c, bounded heads.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog times heads from their first byte instead.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
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
}

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection owes its first head from the accept.
            head_since: AtomicU64::new(1),
            http2: AtomicBool::new(false),
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

    /// Bytes arrived: with no request in flight they begin a head.
    fn read(&self) {
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
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
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
        let finish = move |mut response: Response| {
            drop(in_flight);
            if draining {
                close_after(&mut response, version);
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
