//! Measures the session layer as deployed: decision throughput per store
//! backend, and memory at many live sessions. Figures go to BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example sessions_measure -- throughput memory
//! cargo run --release --example sessions_measure -- throughput embedded
//! cargo run --release --example sessions_measure -- throughput redis://127.0.0.1:6379
//! cargo run --release --example sessions_measure -- rss 100000
//! ```
//!
//! `throughput <store>`: 1,000 signed-in users (five groups, a Dex-sized
//! refresh token) asking about one of 1,000 routes, round-robin, for 5 s on
//! a two-thread runtime with 64 concurrent callers, through the real
//! `Decider` and `Sessions` with the default cache. Prints decisions/s.
//!
//! `rss <n>`: creates `n` sessions through `Sessions` on the embedded store
//! (the default backend) in a temporary directory, then resolves every one
//! of them again (so the cache and the cookie memo are at their bound), and
//! prints `VmHWM` and `VmRSS` from `/proc/self/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authgate::clock::{SharedClock, SystemClock};
use authgate::config::{RouteConfig, Routes, Secret, SessionStoreConfig};
use authgate::decision::{Decider, Decision, Request};
use authgate::identity::Identity;
use authgate::policy::{Policy, ProxyConditions, Target};
use authgate::session::{Sealer, Sessions, open_store};
use url::Url;

const USERS: usize = 1_000;
const CALLERS: usize = 64;
const RUN: Duration = Duration::from_secs(5);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["throughput", store] => throughput(store),
        ["rss", n] => rss(n.parse()?),
        _ => Err("usage: sessions_measure throughput <memory|embedded|redis://…> | rss <n>".into()),
    }
}

fn identity(i: usize) -> Identity {
    Identity {
        subject: format!("CgQ{i:06}EgRsZGFw"),
        email: Some(format!("user{i}@example.com")),
        email_verified: Some(true),
        preferred_username: Some(format!("user{i}")),
        name: Some(format!("User {i}")),
        groups: ["devops", "admins", "users", "staff", "vpn"]
            .map(String::from)
            .to_vec(),
        claims: serde_json::Map::new(),
    }
}

/// A refresh token the size of Dex's (base64 of a protobuf with two ids).
fn refresh_token(i: usize) -> String {
    format!("Chl{i:0>60}EhlnZ2J3ZHh6b2VxY3NsbGdiYXV0ZW50aWNh")
}

fn sessions(
    store: &str,
    dir: &std::path::Path,
) -> Result<Arc<Sessions>, Box<dyn std::error::Error>> {
    let clock: SharedClock = Arc::new(SystemClock);
    let config = match store {
        "memory" => SessionStoreConfig::Memory,
        "embedded" => SessionStoreConfig::Embedded(dir.join("sessions.redb")),
        url => SessionStoreConfig::Redis(url.to_owned()),
    };
    let store = open_store(&config, clock.clone())?;
    let sealer = Sealer::new(&Secret::new([9u8; 32].to_vec()), &[])?;
    Ok(Arc::new(Sessions::new(
        sealer,
        store,
        clock,
        Duration::from_secs(14 * 3600),
    )))
}

fn throughput(store: &str) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let sessions = sessions(store, dir.path())?;
    runtime.block_on(async {
        let changes = sessions.follow_changes();
        let mut cookies = Vec::with_capacity(USERS);
        for i in 0..USERS {
            let (cookie, _) = sessions
                .create(identity(i), Some(refresh_token(i)), i64::MAX)
                .await?;
            cookies.push(cookie);
        }
        let routes: Vec<RouteConfig> = (0..1000)
            .map(|i| {
                Ok(RouteConfig {
                    index: i,
                    from: Url::parse(&format!("https://app{i}.example.com"))?,
                    allowed_groups: vec!["devops".into()],
                    ..RouteConfig::default()
                })
            })
            .collect::<Result<_, url::ParseError>>()?;
        let policy = Arc::new(Policy::compile(
            Routes::parse(routes).map_err(|e| format!("{e:?}"))?,
        ));
        let decider = Arc::new(Decider::new(
            sessions.clone(),
            &Url::parse("https://auth.example.com")?,
        ));
        let cookies = Arc::new(cookies);
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..CALLERS {
            let (decider, cookies, done) = (decider.clone(), cookies.clone(), done.clone());
            let policy = policy.clone();
            tasks.spawn(async move {
                let mut n = caller;
                while start.elapsed() < RUN {
                    let url = format!("https://app{}.example.com/items", n % 1000);
                    let target = Target::parse(&url);
                    let decision = decider
                        .decide(
                            &policy,
                            Request {
                                target: &target,
                                session_cookies: std::iter::once(cookies[n % USERS].as_str()),
                                method: Some("GET"),
                                authorization: None,
                                preflight: false,
                                source_ip: None,
                                conditions: &ProxyConditions::NONE,
                            },
                        )
                        .await;
                    if !matches!(decision, Decision::Allow { .. }) {
                        return Err(format!("unexpected decision {decision:?}"));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    n += CALLERS;
                }
                Ok(())
            });
        }
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        let secs = start.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!(
            "store={store} users={USERS} decisions={n} seconds={secs:.2} decisions_per_sec={:.0}",
            n as f64 / secs
        );
        if let Some(changes) = changes {
            changes.abort();
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

fn rss(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir_in(
        std::env::var_os("RSS_DIR").map_or_else(std::env::temp_dir, Into::into),
    )?;
    let sessions = sessions("embedded", dir.path())?;
    runtime.block_on(async {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let workers = 32;
        for w in 0..workers {
            let sessions = sessions.clone();
            tasks.spawn(async move {
                let mut count = 0usize;
                for i in (w..n).step_by(workers) {
                    let (cookie, _) = sessions
                        .create(identity(i), Some(refresh_token(i)), i64::MAX)
                        .await?;
                    // Use it again, as a browser would: a cache hit, or a
                    // store read once the cache is full.
                    if sessions.resolve(&cookie).await?.is_some() {
                        count += 1;
                    }
                }
                Ok::<_, authgate::session::SessionError>(count)
            });
        }
        let mut live = 0;
        while let Some(count) = tasks.join_next().await {
            live += count??;
        }
        println!(
            "sessions={live} created_in={:.1}s store_file_bytes={}",
            start.elapsed().as_secs_f64(),
            std::fs::metadata(dir.path().join("sessions.redb"))?.len()
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    for line in status.lines() {
        if line.starts_with("VmHWM") || line.starts_with("VmRSS") {
            println!("{}", line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    Ok(())
}
