//! Sign-out at scale (`bench/signout.sh`): how long a revoked session stays
//! usable on each of several `authgate serve` replicas sharing one Redis,
//! while they answer a steady background load.
//!
//! ```text
//! signout_measure CONFIG SESSIONS REVOCATIONS BY_ID RATE ADDR...
//! ```
//!
//! CONFIG is the replicas' configuration (same secret and store); ADDR each
//! replica's HTTP address. It signs in SESSIONS users plus REVOCATIONS +
//! BY_ID victims through the library (as a login does), then, while
//! background tasks ask the replicas about the SESSIONS users at RATE
//! requests per second (every answer must be 200), revokes the victims one
//! at a time: REVOCATIONS by their cookie, as sign-out does
//! (`Sessions::revoke`: one delete, published), then BY_ID by their listed
//! id, as `authgate sessions revoke --session ID` does
//! (`Sessions::revoke_where`: the record is deleted first, then the index
//! is searched for the id).
//! Before each revocation every replica has answered 200 for the victim (so
//! it holds the session in its cache); from the moment the revocation
//! starts, one poller per replica asks about the victim every millisecond,
//! on its own keep-alive connection, until the answer is 401. The delay per
//! (replica, revocation) is the time from the start of the revocation to
//! that 401. Finally every user must still be signed in and every victim
//! refused on every replica. Prints `signout report:` lines.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use authgate::clock::SystemClock;
use authgate::config;
use authgate::identity::Identity;
use authgate::session::{Sealer, Sessions, Target, open_store, public_id};

/// What the background load and the pollers ask about.
const ORIGINAL_URL: &str = "https://app.example.test/";
/// How often a poller asks a replica about a revoked session.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// A replica still accepting a revoked session after this is a failure.
const GIVE_UP: Duration = Duration::from_secs(5);
/// Connections the background load keeps open (spread over the replicas).
const LOAD_CONNECTIONS: usize = 24;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, users, victims, by_id, rate, addrs @ ..] = &args[..] else {
        return Err("usage: signout_measure CONFIG SESSIONS REVOCATIONS BY_ID RATE ADDR...".into());
    };
    let (users, victims, by_id, rate): (usize, usize, usize, u32) = (
        users.parse()?,
        victims.parse()?,
        by_id.parse()?,
        rate.parse()?,
    );
    let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    if addrs.is_empty() || users == 0 {
        return Err("at least one replica and one session".into());
    }
    let sessions = Arc::new(sessions_of(Path::new(config))?);

    let started = Instant::now();
    let signed_in = sign_in(&sessions, "user", users).await?;
    let doomed = sign_in(&sessions, "victim", victims + by_id).await?;
    println!(
        "signout report: setup: {} replicas, {users} signed-in sessions and {} to revoke, made in {:.1} s",
        addrs.len(),
        victims + by_id,
        started.elapsed().as_secs_f64()
    );

    let load = Load::start(&addrs, Arc::new(signed_in.clone()), rate).await?;
    // Every replica reads every session before the measurement (each
    // replica's tasks together walk all users at a third of the rate).
    let warm = users as f64 * addrs.len() as f64 / f64::from(rate.max(1));
    tokio::time::sleep(Duration::from_secs_f64(warm.min(60.0) + 1.0)).await;

    let mut unrefused = 0;
    let mut pollers = Vec::new();
    for addr in &addrs {
        pollers.push(connect(*addr).await?);
    }
    let (by_cookie, by_listed_id) = doomed.split_at(victims);
    let signed_out = measure(&sessions, &mut pollers, by_cookie, Method::Cookie).await?;
    let listed = measure(&sessions, &mut pollers, by_listed_id, Method::ListedId).await?;
    let load = load.stop().await;

    for (what, mut m) in [
        (
            "signed out (Sessions::revoke, as /oauth2/sign_out)",
            signed_out,
        ),
        (
            "revoked by id (Sessions::revoke_where, as `authgate sessions revoke --session`)",
            listed,
        ),
    ] {
        let pairs = m.revocations * addrs.len();
        if pairs == 0 {
            continue;
        }
        let within = m
            .delays
            .iter()
            .filter(|d| **d <= Duration::from_secs(1))
            .count();
        println!(
            "signout report: {what}: refused after, over {pairs} (replica, revocation) pairs: {}; \
             within 1 s: {within} of {pairs}; not within {} s: {}",
            percentiles(&mut m.delays),
            GIVE_UP.as_secs(),
            m.unrefused
        );
        println!(
            "signout report: {what}: the call itself: {}",
            percentiles(&mut m.calls)
        );
        unrefused += m.unrefused;
    }
    println!(
        "signout report: background load: {} req/s asked, {:.0} answered, {} requests, {} not 200 (wrong or 5xx)",
        rate,
        load.requests as f64 / load.length.as_secs_f64(),
        load.requests,
        load.failed
    );
    let (others_out, victims_in) = sweep(&addrs, &signed_in, &doomed).await?;
    println!(
        "signout report: afterwards: {others_out} of {} other sessions refused on some replica, \
         {victims_in} of {} revoked sessions accepted on some replica",
        signed_in.len(),
        doomed.len()
    );
    if unrefused > 0 || load.failed > 0 || others_out > 0 || victims_in > 0 {
        return Err("sign-out at scale: checks failed (see the report lines)".into());
    }
    Ok(())
}

/// How a session is revoked.
#[derive(Clone, Copy)]
enum Method {
    /// By its cookie, as sign-out does.
    Cookie,
    /// By its listed id, as the sessions CLI does.
    ListedId,
}

/// What the revocations of one [`Method`] showed.
struct Measured {
    revocations: usize,
    /// Per (replica, revocation): from the start of the call to the 401.
    delays: Vec<Duration>,
    /// The revocation calls' durations.
    calls: Vec<Duration>,
    /// Pairs still answering 200 after [`GIVE_UP`].
    unrefused: usize,
}

/// Revokes each of `doomed` in turn by `method`, polling every replica
/// (one connection each in `pollers`) until it refuses the cookie.
async fn measure(
    sessions: &Sessions,
    pollers: &mut Vec<SendRequest<String>>,
    doomed: &[String],
    method: Method,
) -> Result<Measured, Error> {
    let mut m = Measured {
        revocations: doomed.len(),
        delays: Vec::new(),
        calls: Vec::new(),
        unrefused: 0,
    };
    for cookie in doomed {
        for poller in pollers.iter_mut() {
            let status = ask(poller, cookie).await?;
            if status != 200 {
                return Err(format!("a victim before its revocation: {status}").into());
            }
        }
        let id = match sessions.resolve(cookie).await? {
            Some(resolved) => public_id(&resolved.id),
            None => return Err("a victim's session is gone before its revocation".into()),
        };
        let t0 = Instant::now();
        let polls: Vec<_> = pollers
            .drain(..)
            .map(|poller| tokio::spawn(poll_until_refused(poller, cookie.clone(), t0)))
            .collect();
        match method {
            Method::Cookie => sessions.revoke(cookie).await?,
            Method::ListedId => {
                let ended = sessions.revoke_where(&Target::Session(id)).await?;
                if ended.len() != 1 {
                    return Err(format!("the revocation ended {} sessions", ended.len()).into());
                }
            }
        }
        m.calls.push(t0.elapsed());
        for poll in polls {
            let (poller, delay) = poll.await??;
            pollers.push(poller);
            match delay {
                Some(d) => m.delays.push(d),
                None => m.unrefused += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(m)
}

/// The replicas' sessions: same secret, same store, a cache of its own.
fn sessions_of(path: &Path) -> Result<Sessions, Error> {
    let loaded = config::load_file(path, &|_| None).map_err(|e| format!("{e:?}"))?;
    let clock = Arc::new(SystemClock);
    let store = open_store(&loaded.config.session_store, clock.clone())?;
    let sealer = Sealer::new(&loaded.config.cookie.secret, &[])?;
    Ok(Sessions::new(
        sealer,
        store,
        clock,
        loaded.config.cookie.expire,
    ))
}

/// `count` sessions of users `<prefix><n>` in group devops; their cookies.
async fn sign_in(
    sessions: &Arc<Sessions>,
    prefix: &str,
    count: usize,
) -> Result<Vec<String>, Error> {
    futures_util::stream::iter(0..count)
        .map(|n| {
            let sessions = Arc::clone(sessions);
            let who = Identity {
                subject: format!("{prefix}{n}"),
                email: Some(format!("{prefix}{n}@example.com")),
                groups: vec!["devops".into()],
                ..Identity::default()
            };
            async move {
                let (cookie, _) = sessions.create(who, None, i64::MAX / 2).await?;
                Ok::<_, Error>(cookie)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// An HTTP/1.1 keep-alive connection to a replica.
async fn connect(addr: SocketAddr) -> Result<SendRequest<String>, Error> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// `/oauth2/auth` as nginx asks it, with `cookie`: the status.
async fn ask(sender: &mut SendRequest<String>, cookie: &str) -> Result<u16, Error> {
    sender.ready().await?;
    let request = http::Request::get("/oauth2/auth")
        .header(http::header::HOST, "auth.example.test")
        .header("X-Original-URL", ORIGINAL_URL)
        .header(http::header::COOKIE, format!("_authgate={cookie}"))
        .body(String::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    drain(response.into_body()).await?;
    Ok(status)
}

/// Reads a body to its end, so the connection can carry the next request.
async fn drain(mut body: Incoming) -> Result<(), Error> {
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        frame?;
    }
    Ok(())
}

/// Asks about `cookie` every [`POLL_EVERY`] until the answer is 401; the
/// time from `t0` to that answer (`None` if it did not come within
/// [`GIVE_UP`]). Any answer but 200 or 401 is an error.
async fn poll_until_refused(
    mut sender: SendRequest<String>,
    cookie: String,
    t0: Instant,
) -> Result<(SendRequest<String>, Option<Duration>), Error> {
    loop {
        match ask(&mut sender, &cookie).await? {
            401 => {
                let delay = t0.elapsed();
                return Ok((sender, Some(delay)));
            }
            200 => {}
            other => return Err(format!("a revoked session answered {other}").into()),
        }
        if t0.elapsed() > GIVE_UP {
            return Ok((sender, None));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The background load: [`LOAD_CONNECTIONS`] tasks, each on its own
/// connection to one replica (in turn), asking about the signed-in users
/// at an equal share of the rate.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    requests: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
}

/// What the background load did.
struct Done {
    requests: u64,
    failed: u64,
    length: Duration,
}

impl Load {
    async fn start(
        addrs: &[SocketAddr],
        cookies: Arc<Vec<String>>,
        rate: u32,
    ) -> Result<Load, Error> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (requests, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let period = Duration::from_secs(1) * LOAD_CONNECTIONS as u32 / rate.max(1);
        let mut tasks = Vec::new();
        for task in 0..LOAD_CONNECTIONS {
            let mut sender = connect(addrs[task % addrs.len()]).await?;
            let (stop, requests, failed, cookies) = (
                stop.clone(),
                requests.clone(),
                failed.clone(),
                cookies.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Each task walks all users from its own starting point, so
                // every replica sees every user.
                let mut n = task * cookies.len() / LOAD_CONNECTIONS;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let ok = matches!(ask(&mut sender, &cookies[n % cookies.len()]).await, Ok(200));
                    requests.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            }));
        }
        Ok(Load {
            stop,
            tasks,
            requests,
            failed,
            started: Instant::now(),
        })
    }

    async fn stop(self) -> Done {
        self.stop.store(true, Ordering::Relaxed);
        let length = self.started.elapsed();
        for task in self.tasks {
            let _ = task.await;
        }
        Done {
            requests: self.requests.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            length,
        }
    }
}

/// Asks every replica about every session: how many of `signed_in` some
/// replica refused, and how many of `revoked` some replica accepted.
async fn sweep(
    addrs: &[SocketAddr],
    signed_in: &[String],
    revoked: &[String],
) -> Result<(usize, usize), Error> {
    let mut others_out = vec![false; signed_in.len()];
    let mut victims_in = vec![false; revoked.len()];
    for addr in addrs {
        let mut sender = connect(*addr).await?;
        for (i, cookie) in signed_in.iter().enumerate() {
            others_out[i] |= ask(&mut sender, cookie).await? != 200;
        }
        for (i, cookie) in revoked.iter().enumerate() {
            victims_in[i] |= ask(&mut sender, cookie).await? != 401;
        }
    }
    let count = |v: &[bool]| v.iter().filter(|b| **b).count();
    Ok((count(&others_out), count(&victims_in)))
}

/// "p50 … p90 … p99 … max …" of `values` (nearest rank), in ms.
fn percentiles(values: &mut [Duration]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    values.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1].as_secs_f64() * 1e3
    };
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(50.0),
        at(90.0),
        at(99.0),
        at(100.0)
    )
}
