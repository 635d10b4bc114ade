//! Measures the session layer as deployed: decision throughput per store
//! backend, and memory at many live sessions. Figures go to BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example sessions_measure -- throughput memory
//! cargo run --release --example sessions_measure -- throughput embedded
//! cargo run --release --example sessions_measure -- throughput redis://127.0.0.1:6379
//! cargo run --release --example sessions_measure -- rss 100000
//! cargo run --release --example sessions_measure -- seed redis://127.0.0.1:6379 SECRET_FILE 1000000 cookies.txt
//! cargo run --release --example sessions_measure -- cache-rss redis://127.0.0.1:6379 SECRET_FILE cookies.txt 10000
//! ```
//!
//! `throughput <store>`: 1,000 signed-in users (a Dex login's identity,
//! claims, refresh token and ID token: see `login`) asking about one of 1,000 routes, round-robin, for 5 s on
//! a two-thread runtime with 64 concurrent callers, through the real
//! `Decider` and `Sessions` with the default cache. Prints decisions/s.
//!
//! `rss <n>`: creates `n` sessions through `Sessions` on the embedded store
//! (the default backend) in a temporary directory, then resolves every one
//! of them again (so the cache and the cookie memo are at their bound), and
//! prints `VmHWM` and `VmRSS` from `/proc/self/status`.
//!
//! `seed <store> <secret_file> <n> <out>`: creates `n` sessions (distinct
//! users, signed in as `login` does) through `Sessions::create_from`
//! in `<store>` (`redis://…` or `embedded:/path`), sealing the cookies with
//! the `cookie_secret_file` an `authgate serve` will read, 256 at a time;
//! writes the cookie values to `<out>`, one per line, in creation order.
//! For bench/scale.sh: a million sessions in minutes, through the real API.
//!
//! `cache-rss <store> <secret_file> <cookies> <entries>`: resolves the first
//! `entries` cookies of the file (each a miss, loaded from the store) with
//! the caches bounded to `entries`, and prints the anonymous resident
//! memory before and after, and the difference per cached session.

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
        ["seed", store, secret, n, out] => seed(store, secret, n.parse()?, out),
        ["cache-rss", store, secret, cookies, entries] => {
            cache_rss(store, secret, cookies, entries.parse()?)
        }
        _ => Err(
            "usage: sessions_measure throughput <memory|embedded|redis://…> | rss <n> \
                  | seed <store> <secret_file> <n> <out> \
                  | cache-rss <store> <secret_file> <cookies> <entries>"
                .into(),
        ),
    }
}

/// User `i`'s identity as a Dex login with the LDAP connector leaves it:
/// five groups, and every claim of the ID token kept for
/// `allowed_idp_claims` (Dex's `sub`, the nonce and the two hashes
/// included), as `authgate::oidc::identity_from_claims` builds it.
fn identity(i: usize) -> Identity {
    let claims = serde_json::json!({
        "iss": "https://dex.example.com/dex",
        "sub": format!("CgQ{i:06}EgRsZGFw"),
        "aud": "authgate",
        "exp": 1_800_000_000,
        "iat": 1_799_913_600,
        "nonce": format!("{i:0>43}"),
        "at_hash": format!("{i:0>22}"),
        "c_hash": format!("{:0>22}", i + 1),
        "email": format!("user{i}@example.com"),
        "email_verified": true,
        "groups": ["devops", "admins", "users", "staff", "vpn"],
        "name": format!("User {i}"),
        "preferred_username": format!("user{i}"),
    });
    let serde_json::Value::Object(claims) = claims else {
        unreachable!("a JSON object literal")
    };
    authgate::oidc::identity_from_claims(claims)
}

/// An ID token the size of Dex's for [`identity`]: an RS256 JWT (a header
/// with a key id, those claims, a 2048-bit signature), about 950 bytes.
/// Kept for RP-initiated logout's `id_token_hint`.
fn id_token(i: usize) -> String {
    format!("eyJhbGciOiJSUzI1NiIsImtpZCI6IjQ{i:0>70}.{i:0>507}.{i:0>342}")
}

/// Signs user `i` in as a login does: the identity, the refresh token and
/// the ID token.
async fn login(
    sessions: &Sessions,
    i: usize,
) -> Result<(String, Arc<authgate::session::SessionRecord>), authgate::session::SessionError> {
    sessions
        .create_from(
            identity(i),
            Some(refresh_token(i)),
            i64::MAX,
            Some(id_token(i)),
            authgate::session::Origin::default(),
        )
        .await
}

/// A refresh token the size of Dex's (base64 of a protobuf with two ids).
fn refresh_token(i: usize) -> String {
    format!("Chl{i:0>60}EhlnZ2J3ZHh6b2VxY3NsbGdiYXV0ZW50aWNh")
}

fn sessions(
    store: &str,
    dir: &std::path::Path,
) -> Result<Arc<Sessions>, Box<dyn std::error::Error>> {
    Ok(Arc::new(sessions_with(
        store,
        dir,
        Secret::new([9u8; 32].to_vec()),
    )?))
}

/// `Sessions` on `store`: `memory`, `embedded` (a file in `dir`),
/// `embedded:/path` or a Redis URL, sealing cookies with `secret`.
fn sessions_with(
    store: &str,
    dir: &std::path::Path,
    secret: Secret,
) -> Result<Sessions, Box<dyn std::error::Error>> {
    let clock: SharedClock = Arc::new(SystemClock);
    let config = match store {
        "memory" => SessionStoreConfig::Memory,
        "embedded" => SessionStoreConfig::Embedded(dir.join("sessions.redb")),
        _ => match store.strip_prefix("embedded:") {
            Some(path) => SessionStoreConfig::Embedded(path.into()),
            None => SessionStoreConfig::Redis(store.to_owned()),
        },
    };
    let store = open_store(&config, clock.clone())?;
    let sealer = Sealer::new(&secret, &[])?;
    Ok(Sessions::new(
        sealer,
        store,
        clock,
        Duration::from_secs(14 * 3600),
    ))
}

/// The secret of a `cookie_secret_file` (base64 of 32 bytes).
fn read_secret(path: &str) -> Result<Secret, Box<dyn std::error::Error>> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path)?;
    Ok(Secret::new(
        base64::engine::general_purpose::STANDARD.decode(text.trim())?,
    ))
}

/// The anonymous resident memory of this process, in KiB.
fn rss_anon_kib() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "no RssAnon in /proc/self/status".into())
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
            let (cookie, _) = login(&sessions, i).await?;
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
                    let (cookie, _) = login(&sessions, i).await?;
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

/// Concurrent creations while seeding: enough to keep a Redis round trip
/// per session busy on both cores.
const SEED_CALLERS: usize = 256;

fn seed(store: &str, secret: &str, n: usize, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write as _;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sessions = Arc::new(sessions_with(
        store,
        &std::env::temp_dir(),
        read_secret(secret)?,
    )?);
    let cookies = runtime.block_on(async {
        let start = Instant::now();
        let done = Arc::new(AtomicU64::new(0));
        let progress = {
            let done = done.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    eprintln!(
                        "seed: {} of {n} sessions after {:.0} s",
                        done.load(Ordering::Relaxed),
                        start.elapsed().as_secs_f64()
                    );
                }
            })
        };
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..SEED_CALLERS {
            let (sessions, done) = (sessions.clone(), done.clone());
            tasks.spawn(async move {
                let mut made = Vec::with_capacity(n / SEED_CALLERS + 1);
                for i in (w..n).step_by(SEED_CALLERS) {
                    let (cookie, _) = login(&sessions, i).await?;
                    made.push((i, cookie));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, authgate::session::SessionError>(made)
            });
        }
        let mut cookies = vec![String::new(); n];
        while let Some(made) = tasks.join_next().await {
            for (i, cookie) in made?? {
                cookies[i] = cookie;
            }
        }
        progress.abort();
        println!(
            "sessions={n} seconds={:.1} per_second={:.0}",
            start.elapsed().as_secs_f64(),
            n as f64 / start.elapsed().as_secs_f64()
        );
        Ok::<_, Box<dyn std::error::Error>>(cookies)
    })?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for cookie in &cookies {
        writeln!(file, "{cookie}")?;
    }
    file.flush()?;
    Ok(())
}

fn cache_rss(
    store: &str,
    secret: &str,
    cookies: &str,
    entries: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cookies: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(cookies)?
            .lines()
            .take(entries + 1)
            .map(str::to_owned)
            .collect(),
    );
    if cookies.len() <= entries {
        return Err(format!("the cookie file has fewer than {} lines", entries + 1).into());
    }
    // An hour's time to live: nothing expires while the cache fills.
    let sessions = Arc::new(
        sessions_with(store, &std::env::temp_dir(), read_secret(secret)?)?
            .with_cache(entries as u64, Duration::from_secs(3600)),
    );
    runtime.block_on(async {
        // The store's connection and the runtime are up before the baseline:
        // one session (the extra line) resolved, then forgotten.
        let first = sessions.resolve(&cookies[entries]).await?;
        sessions.forget_all();
        let before = rss_anon_kib()?;
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..CALLERS {
            let (sessions, cookies) = (sessions.clone(), cookies.clone());
            tasks.spawn(async move {
                let mut found = 0usize;
                for i in (caller..entries).step_by(CALLERS) {
                    found += usize::from(sessions.resolve(&cookies[i]).await?.is_some());
                }
                Ok::<_, authgate::session::SessionError>(found)
            });
        }
        let mut found = usize::from(first.is_some());
        while let Some(n) = tasks.join_next().await {
            found += n??;
        }
        if found != entries + 1 {
            return Err(format!("{found} of {} sessions resolved", entries + 1).into());
        }
        let after = rss_anon_kib()?;
        println!(
            "entries={entries} rss_anon_before_kib={before} rss_anon_after_kib={after} bytes_per_session={:.0}",
            (after.saturating_sub(before) * 1024) as f64 / entries as f64
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
