//! Failover and kill under load (issue #21), shortened for CI: real
//! redis-servers and sentinels, `authgate serve` replicas as processes,
//! real nginx for the replica kill. Every answer is checked against the
//! decision its session must get; 5xx are allowed only in a bounded window
//! after the kill (a session must not be invented while the store is
//! unknown); every session acknowledged before the kill still opens after.
//!
//! `bench/failover.sh` runs the same checks at full length (60 s, the kill
//! at 20 s, at 80% of the maximum rate the same setup answers, measured
//! first in a closed loop) through the variables of [`Load::from_env`], and
//! writes the figures printed here (`failover report:` lines) into
//! BENCHMARKS.md.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authgate::clock::SystemClock;
use authgate::config;
use authgate::identity::Identity;
use authgate::session::{Sealer, Sessions, open_store};
use openidconnect::reqwest;

use crate::fixture::client;
use crate::support::nginx::{DOMAIN, EchoUpstream, Nginx, NginxOptions};
use crate::support::process::{ChildGuard, READY_TIMEOUT, free_port, require_program};
use crate::support::redis::Redis;
use crate::support::temp_dir;
use crate::support::tls::TestCa;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const MASTER: &str = "authgate";
/// The protected site when authgate is asked directly.
const APP: &str = "https://app.example.test";

/// Length, kill time and rate of a run; CI's defaults, or the
/// `AUTHGATE_FAILOVER_*` variables (bench/failover.sh).
#[derive(Clone, Copy, Debug)]
struct Load {
    length: Duration,
    kill_at: Duration,
    /// Requests per second, over all workers.
    rate: u32,
    /// When not zero, the rate is first measured: the workers ask as fast
    /// as answers come for this long, and the run goes at `percent` of it.
    probe: Duration,
    percent: u32,
    /// The maximum rate the probe measured.
    measured: Option<f64>,
    /// The test cluster's `cluster-node-timeout`, ms: 500 by default, the
    /// setting docs/sessions.md gives for a 5xx window within 2 s.
    node_timeout_ms: u64,
    /// Concurrent requests at most.
    workers: u32,
    /// The longest 5xx window accepted (the goal is ≤ 2 s; CI's machine is
    /// shared, so the bound asserted is looser and the figure printed).
    window_limit: Duration,
}

impl Load {
    fn from_env() -> Load {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Load {
            length: Duration::from_secs(var("AUTHGATE_FAILOVER_SECS", 9)),
            kill_at: Duration::from_secs(var("AUTHGATE_FAILOVER_KILL_AT", 3)),
            rate: u32::try_from(var("AUTHGATE_FAILOVER_RATE", 150)).unwrap_or(150),
            probe: Duration::from_secs(var("AUTHGATE_FAILOVER_PROBE_SECS", 0)),
            percent: u32::try_from(var("AUTHGATE_FAILOVER_PERCENT", 80)).unwrap_or(80),
            measured: None,
            node_timeout_ms: var("AUTHGATE_FAILOVER_NODE_TIMEOUT_MS", 500),
            workers: u32::try_from(var("AUTHGATE_FAILOVER_WORKERS", 8)).unwrap_or(8),
            window_limit: Duration::from_secs(var("AUTHGATE_FAILOVER_WINDOW_LIMIT", 8)),
        }
    }

    /// With a probe asked for: this load at `percent` of the maximum rate
    /// `target` answers with `cases` (nothing killed; every answer must
    /// already be right).
    async fn calibrated(mut self, target: &Target, cases: &[Case]) -> Load {
        if self.probe.is_zero() {
            return self;
        }
        let cases = Arc::new(Mutex::new(cases.to_vec()));
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let start = Instant::now();
        let workers = spawn_workers(&self, start, self.probe, None, target, &cases, &outcome);
        for worker in workers {
            worker.await.expect("probe worker");
        }
        let outcome = outcome.lock().unwrap();
        assert!(
            outcome.wrong.is_empty() && outcome.errors.is_empty(),
            "the probe saw wrong answers {:?} or {} 5xx",
            &outcome.wrong[..outcome.wrong.len().min(20)],
            outcome.errors.len()
        );
        let max = outcome.requests as f64 / self.probe.as_secs_f64();
        self.measured = Some(max);
        self.rate = ((max * f64::from(self.percent) / 100.0) as u32).max(1);
        self
    }
}

/// One redis-server (or sentinel) process on a free loopback port.
struct Node {
    child: ChildGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Node {
    /// redis-server with `args`, no snapshots; returns once it listens.
    async fn start(args: &[String]) -> Node {
        let dir = temp_dir("redis-ha");
        let port = free_port();
        let mut cmd = Command::new(require_program("redis-server", None));
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir.path())
        .args(args);
        Node::spawn(cmd, dir, port).await
    }

    /// A sentinel watching the master at `master` (quorum 2; down after
    /// half a second without an answer: the setting docs/sessions.md gives
    /// for a 5xx window within 2 s).
    async fn sentinel(master: u16) -> Node {
        let dir = temp_dir("sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {MASTER} 500\n\
                 sentinel failover-timeout {MASTER} 10000\n",
                dir = dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let mut cmd = Command::new(require_program("redis-server", None));
        cmd.arg(&conf).arg("--sentinel");
        Node::spawn(cmd, dir, port).await
    }

    async fn spawn(cmd: Command, dir: tempfile::TempDir, port: u16) -> Node {
        let mut child = ChildGuard::spawn("redis-server", cmd, &dir.path().join("redis.log"));
        child
            .wait_for_port(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await;
        Node {
            child,
            port,
            _dir: dir,
        }
    }

    /// `cmd`'s answer; `None` if the node does not answer (killed).
    fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        query_at(self.port, cmd)
    }
}

/// `cmd`'s answer from the node on `port`; `None` if it does not answer.
fn query_at<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    cmd.query(&mut conn).ok()
}

/// Whether the node on `port` is a master now.
fn is_master(port: u16) -> bool {
    let role: Vec<redis::Value> = query_at(port, &redis::cmd("ROLE")).unwrap_or_default();
    matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master")
}

/// The persistence settings docs/sessions.md asks for: a write is refused
/// unless a replica is connected, and authgate waits (`WAIT`) until one
/// has it. On every node, since any may become the master.
fn durable_args() -> Vec<String> {
    [
        "--min-replicas-to-write",
        "1",
        "--min-replicas-max-lag",
        "10",
    ]
    .map(String::from)
    .to_vec()
}

/// A master, two replicas and three sentinels that all see them.
struct SentinelSet {
    master: Node,
    _replicas: Vec<Node>,
    sentinels: Vec<Node>,
}

impl SentinelSet {
    async fn start() -> SentinelSet {
        let master = Node::start(&durable_args()).await;
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let mut args = durable_args();
            args.extend([
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ]);
            replicas.push(Node::start(&args).await);
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(Node::sentinel(master.port).await);
        }
        let set = SentinelSet {
            master,
            _replicas: replicas,
            sentinels,
        };
        // Replicas in sync and every sentinel aware of the others: before
        // that, writes are refused and a failover cannot happen.
        wait_for("the sentinels to see 2 replicas and each other", || {
            good_replicas(&set.master) == 2
                && set.sentinels.iter().all(|s| {
                    let info: Vec<String> = s
                        .query(redis::cmd("SENTINEL").arg("MASTER").arg(MASTER))
                        .unwrap_or_default();
                    let field = |name: &str| {
                        info.iter()
                            .position(|k| k == name)
                            .and_then(|i| info.get(i + 1))
                            .cloned()
                            .unwrap_or_default()
                    };
                    field("num-slaves") == "2" && field("num-other-sentinels") == "2"
                })
        })
        .await;
        set
    }

    fn url(&self) -> String {
        format!("redis+sentinel://{}/{MASTER}", hosts(&self.sentinels))
    }

    /// The master's port, as the sentinels name it now.
    fn master_port(&self) -> Option<u16> {
        master_named_by(self.sentinels[0].port)
    }
}

/// The master's port, as the sentinel on `port` names it now.
fn master_named_by(sentinel: u16) -> Option<u16> {
    let addr: Vec<String> = query_at(
        sentinel,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER),
    )?;
    addr.get(1)?.parse().ok()
}

/// A Redis Cluster of three masters with two replicas each: the replica
/// promoted after a master dies still has one (see docs/sessions.md).
struct ClusterSet {
    nodes: Vec<Node>,
}

impl ClusterSet {
    async fn start(node_timeout_ms: u64) -> ClusterSet {
        let mut nodes = Vec::new();
        for _ in 0..9 {
            let mut args = durable_args();
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                ]
                .map(String::from),
            );
            args.push(node_timeout_ms.to_string());
            nodes.push(Node::start(&args).await);
        }
        let mut create = Command::new(require_program("redis-cli", None));
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "2", "--cluster-yes"]);
        let out = create.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let set = ClusterSet { nodes };
        wait_for("the cluster to be ok with two replicas per master", || {
            set.nodes.iter().all(|n| {
                let info: String = n
                    .query(redis::cmd("CLUSTER").arg("INFO"))
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            }) && set
                .masters()
                .iter()
                .all(|m| good_replicas(&set.nodes[*m]) == 2)
        })
        .await;
        set
    }

    /// Indexes of the nodes that are masters now.
    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| is_master(self.nodes[i].port))
            .collect()
    }

    /// Ports of the replicas of the master at index `master`.
    fn replicas_of(&self, master: usize) -> Vec<u16> {
        let port = self.nodes[master].port;
        self.nodes
            .iter()
            .filter(|n| {
                let info: String = n
                    .query(redis::cmd("INFO").arg("replication"))
                    .unwrap_or_default();
                info.contains(&format!("master_port:{port}\r"))
            })
            .map(|n| n.port)
            .collect()
    }

    fn url(&self) -> String {
        format!("redis+cluster://{}", hosts(&self.nodes))
    }
}

/// `127.0.0.1:<port>,…` of `nodes`, for a store URL.
fn hosts(nodes: &[Node]) -> String {
    let hosts: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    hosts.join(",")
}

/// The replicas in sync enough for `min-replicas-to-write` to count them.
fn good_replicas(master: &Node) -> usize {
    let info: String = master
        .query(redis::cmd("INFO").arg("replication"))
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("min_slaves_good_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while !probe() {
        assert!(
            start.elapsed() < READY_TIMEOUT,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `authgate serve` processes on one configuration (`store`, one route
/// `from` admitting group `devops`), and sessions made in that store.
struct Replicas {
    dir: tempfile::TempDir,
    procs: Vec<(ChildGuard, SocketAddr)>,
    sessions: Sessions,
}

impl Replicas {
    async fn start(count: usize, store: &str, from: &str) -> Replicas {
        let addrs: Vec<SocketAddr> = (0..count)
            .map(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())))
            .collect();
        Replicas::start_on(&addrs, store, from).await
    }

    /// One replica on each of `addrs`.
    async fn start_on(addrs: &[SocketAddr], store: &str, from: &str) -> Replicas {
        let dir = temp_dir("authgate-failover");
        let mut procs = Vec::new();
        let mut sessions = None;
        for (i, &addr) in addrs.iter().enumerate() {
            let path = dir.path().join(format!("authgate-{i}.yaml"));
            std::fs::write(&path, config_text(addr, store, from)).expect("write config");
            if sessions.is_none() {
                sessions = Some(sessions_of(&path));
            }
            let mut command = Command::new(BIN);
            command.args(["serve", "--config"]).arg(&path);
            let log = dir.path().join(format!("authgate-{i}.log"));
            let mut child = ChildGuard::spawn("authgate serve", command, &log);
            child.wait_for_port(addr).await;
            procs.push((child, addr));
        }
        Replicas {
            dir,
            procs,
            sessions: sessions.expect("at least one replica"),
        }
    }

    fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|(child, addr)| format!("--- authgate {addr} ---\n{}", child.log()))
            .collect()
    }
}

fn config_text(addr: SocketAddr, store: &str, from: &str) -> String {
    format!(
        "authenticate_service_url: https://auth.{DOMAIN}\n\
         idp_provider_url: http://127.0.0.1:{idp}/dex\n\
         idp_client_id: authgate\n\
         idp_client_secret: client-secret\n\
         cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
         address: {addr}\n\
         grpc_address: 127.0.0.1:{grpc}\n\
         session_store: {store}\n\
         refresh_interval: 24h\n\
         policy:\n  - id: app\n    from: {from}\n    allowed_groups: [devops]\n",
        idp = free_port(),
        grpc = free_port(),
    )
}

/// The replicas' sessions, as the test makes and checks them: same
/// secret, same store, a cache of its own.
fn sessions_of(path: &Path) -> Sessions {
    let loaded = config::load_file(path, &|_| None).expect("valid config");
    let clock = Arc::new(SystemClock);
    let store = open_store(&loaded.config.session_store, clock.clone()).expect("store");
    let sealer = Sealer::new(&loaded.config.cookie.secret, &[]).expect("sealer");
    Sessions::new(sealer, store, clock, loaded.config.cookie.expire)
}

fn identity(name: &str, group: &str) -> Identity {
    Identity {
        subject: name.into(),
        email: Some(format!("{name}@example.com")),
        groups: vec![group.into()],
        ..Identity::default()
    }
}

/// A session and the status every answer for it must have.
#[derive(Clone)]
struct Case {
    cookie: String,
    want: u16,
}

/// Sessions made before the load: allowed (200), denied (403) and signed
/// out (401; the deletion must survive the failover too).
async fn cases(sessions: &Sessions) -> Vec<Case> {
    let mut cases = Vec::new();
    for i in 0..4 {
        let far = i64::MAX / 2;
        let (allowed, _) = sessions
            .create(identity(&format!("ok{i}"), "devops"), None, far)
            .await
            .expect("session");
        let (denied, _) = sessions
            .create(identity(&format!("no{i}"), "users"), None, far)
            .await
            .expect("session");
        let (gone, _) = sessions
            .create(identity(&format!("out{i}"), "devops"), None, far)
            .await
            .expect("session");
        sessions.revoke(&gone).await.expect("sign-out");
        cases.push(Case {
            cookie: allowed,
            want: 200,
        });
        cases.push(Case {
            cookie: denied,
            want: 403,
        });
        cases.push(Case {
            cookie: gone,
            want: 401,
        });
    }
    cases
}

/// Where the load sends its requests.
#[derive(Clone)]
enum Target {
    /// `/oauth2/auth` of each replica in turn, as nginx asks it (on
    /// keep-alive connections, as nginx does).
    Direct {
        http: reqwest::Client,
        addrs: Vec<SocketAddr>,
    },
    /// A protected URL through nginx (200 from the app, 401, 403).
    Nginx { http: reqwest::Client, url: String },
}

impl Target {
    async fn ask(&self, n: usize, cookie: &str) -> u16 {
        let request = match self {
            Target::Direct { http, addrs } => http
                .get(format!("http://{}/oauth2/auth", addrs[n % addrs.len()]))
                .header("X-Original-URL", format!("{APP}/")),
            Target::Nginx { http, url } => http.get(url).header("Accept", "application/json"),
        };
        match request
            .header("Cookie", format!("_authgate={cookie}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            // A transport error counts as a 5xx.
            Err(_) => 599,
        }
    }
}

/// What a run saw.
#[derive(Debug, Default)]
struct Outcome {
    requests: usize,
    /// Answers neither the expected one nor a 5xx.
    wrong: Vec<(Duration, u16, u16)>,
    /// Times of the 5xx answers, from the start.
    errors: Vec<Duration>,
    /// Sessions made during the run, with when their creation returned.
    created: Vec<(Duration, String)>,
    /// When Redis named the new master, from the kill.
    promoted: Option<Duration>,
}

impl Outcome {
    /// First and last 5xx relative to the kill (None without any).
    fn window(&self, kill_at: Duration) -> Option<(f64, f64)> {
        let first = self.errors.iter().min()?.as_secs_f64() - kill_at.as_secs_f64();
        let last = self.errors.iter().max()?.as_secs_f64() - kill_at.as_secs_f64();
        Some((first, last))
    }
}

/// Tells whether Redis has promoted a new master (polled after the kill).
type Promoted = Box<dyn Fn() -> bool + Send>;

/// `load.workers` tasks asking `target` about `cases` in turn until
/// `length` after `start`, each once per `period` (`None`: as soon as its
/// last answer came); every answer is tallied in `outcome` (times from
/// `start`).
fn spawn_workers(
    load: &Load,
    start: Instant,
    length: Duration,
    period: Option<Duration>,
    target: &Target,
    cases: &Arc<Mutex<Vec<Case>>>,
    outcome: &Arc<Mutex<Outcome>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let stride = load.workers as usize;
    (0..stride)
        .map(|w| {
            let (cases, outcome, target) = (cases.clone(), outcome.clone(), target.clone());
            tokio::spawn(async move {
                let mut tick = period.map(|p| {
                    let mut tick = tokio::time::interval(p);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    tick
                });
                let mut n = w;
                while start.elapsed() < length {
                    if let Some(tick) = &mut tick {
                        tick.tick().await;
                    }
                    let case = {
                        let cases = cases.lock().unwrap();
                        cases[n % cases.len()].clone()
                    };
                    let status = target.ask(n, &case.cookie).await;
                    let at = start.elapsed();
                    let mut outcome = outcome.lock().unwrap();
                    outcome.requests += 1;
                    if status >= 500 {
                        outcome.errors.push(at);
                    } else if status != case.want {
                        outcome.wrong.push((at, case.want, status));
                    }
                    n += stride;
                }
            })
        })
        .collect()
}

/// Runs `load` against `target` with the prepared `cases`, making a new
/// allowed session every 100 ms (each joins the load once made), and calls
/// `kill` at `load.kill_at`; then polls `promoted` until it holds.
async fn run(
    load: Load,
    target: Target,
    sessions: &Sessions,
    cases: Vec<Case>,
    kill: impl FnOnce(),
    promoted: Option<Promoted>,
) -> Outcome {
    let cases = Arc::new(Mutex::new(cases));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let start = Instant::now();
    let period = Duration::from_secs(1) * load.workers / load.rate.max(1);
    let workers = spawn_workers(
        &load,
        start,
        load.length,
        Some(period),
        &target,
        &cases,
        &outcome,
    );
    let mut kill = Some(kill);
    let mut promoted = promoted;
    let mut watcher = None;
    let mut made = 0;
    while start.elapsed() < load.length {
        if kill.is_some() && start.elapsed() >= load.kill_at {
            (kill.take().expect("once"))();
            if let Some(promoted) = promoted.take() {
                watcher = Some(watch_promotion(promoted, start.elapsed(), load.length));
            }
        }
        made += 1;
        let who = identity(&format!("new{made}"), "devops");
        // A failed creation was not acknowledged: nothing to keep.
        if let Ok((cookie, _)) = sessions.create(who, None, i64::MAX / 2).await {
            let at = start.elapsed();
            outcome.lock().unwrap().created.push((at, cookie.clone()));
            cases.lock().unwrap().push(Case { cookie, want: 200 });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for worker in workers {
        worker.await.expect("load worker");
    }
    let promoted = match watcher {
        Some(w) => w.await.expect("promotion watcher"),
        None => None,
    };
    let mut outcome = Arc::try_unwrap(outcome)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default();
    outcome.promoted = promoted;
    outcome
}

/// Polls `promoted` every 20 ms from the kill (at `killed`) until it
/// holds or the run (`length`) is over; its time from the kill.
fn watch_promotion(
    promoted: Promoted,
    killed: Duration,
    length: Duration,
) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::task::spawn_blocking(move || {
        let since = Instant::now();
        while killed + since.elapsed() < length {
            if promoted() {
                return Some(since.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    })
}

/// The checks every run must pass; prints the report line.
async fn check(name: &str, load: Load, outcome: &Outcome, fresh: &Sessions, logs: &str) {
    let window = outcome.window(load.kill_at);
    // Sessions lost: acknowledged, yet a cold reader (nothing cached) no
    // longer finds them in the store.
    let mut lost = 0;
    for (_, cookie) in &outcome.created {
        if !matches!(fresh.resolve(cookie).await, Ok(Some(_))) {
            lost += 1;
        }
    }
    let asked = match load.measured {
        Some(max) => format!(
            "{} req/s asked ({}% of the {max:.0} req/s this setup answered in a {} s closed loop)",
            load.rate,
            load.percent,
            load.probe.as_secs()
        ),
        None => format!("{} req/s asked", load.rate),
    };
    let promoted = outcome.promoted.map_or(String::new(), |p| {
        format!(", new master named {:+.2} s", p.as_secs_f64())
    });
    println!(
        "failover report: {name}: {} s, kill at {} s, {asked}, {:.0} achieved: {} requests, \
         {} wrong, {} 5xx, 5xx window {}{promoted}, {} sessions made during the run, {lost} lost",
        load.length.as_secs(),
        load.kill_at.as_secs(),
        outcome.requests as f64 / load.length.as_secs_f64(),
        outcome.requests,
        outcome.wrong.len(),
        outcome.errors.len(),
        window.map_or("none".to_owned(), |(a, b)| format!("{a:+.2} s … {b:+.2} s")),
        outcome.created.len(),
    );
    assert!(
        outcome.wrong.is_empty(),
        "wrong decisions (at, wanted, got): {:?}\n{logs}",
        &outcome.wrong[..outcome.wrong.len().min(20)]
    );
    assert_eq!(lost, 0, "acknowledged sessions lost");
    assert!(
        outcome.created.iter().any(|(at, _)| *at > load.kill_at),
        "no session could be made after the kill\n{logs}"
    );
    if let Some((first, last)) = window {
        assert!(first >= 0.0, "5xx before the kill ({first:.2} s)\n{logs}");
        assert!(
            last <= load.window_limit.as_secs_f64(),
            "5xx for {last:.2} s after the kill\n{logs}"
        );
    }
    assert!(outcome.requests > 0);
}

/// The guarantee's mechanism, alone: with `min-replicas-to-write 1`, a
/// session write that no replica acknowledges within a second fails (the
/// login fails closed) although the master took it — the replica is frozen
/// (SIGSTOP), so the master still counts it as connected. Thawed, writes
/// succeed again.
#[tokio::test]
async fn unacknowledged_write_fails_closed() {
    let master = Node::start(&durable_args()).await;
    let mut args = durable_args();
    args.extend([
        "--replicaof".into(),
        "127.0.0.1".into(),
        master.port.to_string(),
    ]);
    let replica = Node::start(&args).await;
    wait_for("the replica in sync", || good_replicas(&master) == 1).await;
    let dir = temp_dir("authgate-wait");
    let path = dir.path().join("authgate.yaml");
    let store = format!("redis://127.0.0.1:{}", master.port);
    std::fs::write(
        &path,
        config_text(
            SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            &store,
            APP,
        ),
    )
    .expect("write config");
    let sessions = sessions_of(&path);
    let who = || identity("alice", "devops");
    sessions
        .create(who(), None, 0)
        .await
        .expect("acknowledged write");

    replica.child.signal("STOP");
    let started = Instant::now();
    let refused = sessions.create(who(), None, 0).await;
    replica.child.signal("CONT");
    let error = refused
        .expect_err("a write no replica has must fail")
        .to_string();
    assert!(error.contains("unavailable"), "{error}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited for the replica"
    );
    sessions
        .create(who(), None, 0)
        .await
        .expect("acknowledged again");
}

/// Two replicas asked directly, sharing `store`: the load (calibrated
/// first, if asked), `kill` at its time, then the checks.
async fn master_killed(
    name: &str,
    load: Load,
    store: &str,
    kill: impl FnOnce(),
    promoted: Promoted,
) {
    let replicas = Replicas::start(2, store, APP).await;
    let cases = cases(&replicas.sessions).await;
    let target = Target::Direct {
        http: client(),
        addrs: replicas.procs.iter().map(|(_, a)| *a).collect(),
    };
    let load = load.calibrated(&target, &cases).await;
    let outcome = run(
        load,
        target,
        &replicas.sessions,
        cases,
        kill,
        Some(promoted),
    )
    .await;
    let fresh = sessions_of(&replicas.dir.path().join("authgate-0.yaml"));
    check(name, load, &outcome, &fresh, &replicas.logs()).await;
}

/// Redis Sentinel, a master and two replicas: the master is killed
/// (SIGKILL) mid-load. No wrong decision, no acknowledged session lost
/// (the master's `min-replicas-to-write 1` makes authgate `WAIT` for a
/// replica), 5xx only in a bounded window after the kill.
#[tokio::test]
async fn sentinel_master_killed_under_load() {
    let mut set = SentinelSet::start().await;
    let (url, old) = (set.url(), set.master.port);
    let sentinel = set.sentinels[0].port;
    let promoted = Box::new(move || master_named_by(sentinel).is_some_and(|p| p != old));
    master_killed(
        "sentinel, master killed",
        Load::from_env(),
        &url,
        || set.master.child.kill(),
        promoted,
    )
    .await;
    assert_ne!(
        set.master_port(),
        Some(old),
        "the sentinels promoted a replica"
    );
}

/// Redis Cluster, three masters with two replicas each: one master is
/// killed (SIGKILL) mid-load. The same checks as with Sentinel; afterwards
/// the cluster is whole again (three masters, state ok).
#[tokio::test]
async fn cluster_master_killed_under_load() {
    let load = Load::from_env();
    let mut set = ClusterSet::start(load.node_timeout_ms).await;
    let (url, victim) = (set.url(), set.masters()[0]);
    let heirs = set.replicas_of(victim);
    assert_eq!(heirs.len(), 2, "the victim's replicas");
    let promoted = Box::new(move || heirs.iter().any(|&p| is_master(p)));
    let name = format!(
        "cluster (cluster-node-timeout {} ms), master killed",
        load.node_timeout_ms
    );
    master_killed(
        &name,
        load,
        &url,
        || set.nodes[victim].child.kill(),
        promoted,
    )
    .await;
    let survivor = (victim + 1) % set.nodes.len();
    let info: String = set.nodes[survivor]
        .query(redis::cmd("CLUSTER").arg("INFO"))
        .expect("cluster info");
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert_eq!(
        set.masters().len(),
        3,
        "a replica took the dead master's slots"
    );
}

/// Two `authgate serve` replicas behind the example nginx, sharing Redis:
/// one is killed with SIGKILL mid-load. nginx retries on the other: no
/// wrong decision and no 5xx at all.
#[tokio::test]
async fn replica_killed_behind_nginx() {
    let load = Load::from_env();
    let redis = Redis::start().await;
    let ca = TestCa::new("authgate failover CA");
    let upstream = EchoUpstream::start().await;
    // nginx's upstream names both replicas; they start once the route
    // (nginx's URL) is known.
    let addrs = [
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
        SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
    ];
    let nginx = Nginx::start_with_replicas(
        NginxOptions {
            authgate: addrs[0],
            upstream: upstream.addr(),
            ca: &ca,
            domain: DOMAIN,
        },
        &addrs[1..],
    )
    .await;
    let mut replicas = Replicas::start_on(&addrs, &redis.url(), &nginx.url("hello", "")).await;
    let cases = cases(&replicas.sessions).await;
    let target = Target::Nginx {
        http: nginx.http_client(&[]),
        url: nginx.url("hello", "/"),
    };
    let load = load.calibrated(&target, &cases).await;
    let (victim, _) = &mut replicas.procs[0];
    let outcome = run(
        load,
        target,
        &replicas.sessions,
        cases,
        || victim.kill(),
        None,
    )
    .await;
    let logs = replicas.logs();
    let fresh = sessions_of(&replicas.dir.path().join("authgate-0.yaml"));
    let mut strict = load;
    strict.window_limit = Duration::ZERO;
    check("nginx, replica killed", strict, &outcome, &fresh, &logs).await;
    let error_log = nginx.error_log();
    assert!(
        outcome.errors.is_empty(),
        "5xx after a replica was killed: {:?}\n{error_log}",
        outcome.window(load.kill_at),
    );
    assert!(
        error_log.contains(&addrs[0].to_string()),
        "nginx never found the killed replica gone: {error_log}"
    );
}
