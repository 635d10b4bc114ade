//! The Redis store, for several replicas: `redis://`, `rediss://` (TLS),
//! `redis+sentinel://` and `redis+cluster://`.
//!
//! - Expiry is Redis's own (`SET … PX`), to the millisecond, by the server's
//!   clock: every replica agrees on it whatever its own clock says.
//! - Compare-and-swap and delete are small Lua scripts, atomic on the
//!   server; both also `PUBLISH` the key on [`CHANGES_CHANNEL`], so every
//!   replica drops its cached copy of a session signed out or refreshed
//!   elsewhere ([`SessionStore::watch`]).
//! - The connection is made on first use (a Redis that is down at startup
//!   fails `/readyz`, not the start) and re-made after failures: the
//!   connection manager reconnects a standalone server; a Sentinel setup
//!   asks the sentinels for the current master again after an error (a
//!   failover); the cluster client follows `MOVED` itself.
//! - No acknowledged write is lost in a failover when the master has
//!   `min-replicas-to-write N` (N ≥ 1): read at connection, it makes every
//!   session write here (save, compare-and-swap, delete) wait with `WAIT N`
//!   until N replicas have it, and fail (503) if they do not within a
//!   second. Sentinel (or the cluster) promotes the most up-to-date
//!   replica, which then has it. In a cluster `WAIT` goes to every master
//!   (the client's routing) and the lowest count must meet N. See
//!   docs/sessions.md.
//! - Nothing this module logs or returns holds the URL's password.
//!
//! URL forms (user name and password percent-encoded, both optional):
//! - `redis://[user:password@]host[:6379][/db]`, `rediss://…` for TLS;
//! - `redis+sentinel://[user:password@]s1[:26379],s2…/master_name[/db]`:
//!   the credentials are the data nodes'; sentinels are asked without;
//! - `redis+cluster://[user:password@]n1[:6379],n2…`: seed nodes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt as _;
use percent_encoding::percent_decode_str;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, Script, ServerErrorKind, Value,
};
use tokio::sync::mpsc;

use super::store::{
    ChangeFeed, IndexEntry, SessionStore, StoreChange, StoreError, StoreFuture, matches_expected,
};

/// The pub/sub channel on which every deletion or replacement of a session
/// key is announced (the message is the key).
pub const CHANGES_CHANNEL: &str = "authgate:session:changed";

/// How long connecting, or one command, may take before the store counts
/// as unreachable (the request then fails closed with a 503).
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a session write waits for the replicas `min-replicas-to-write`
/// asks for (`WAIT`), within [`TIMEOUT`].
const WAIT_TIMEOUT_MS: u64 = 1000;
/// How long connecting to one cluster node may take. A node is asked
/// again on every retry while its slots move (a failover), so a dead host
/// that drops packets must not hold a request for all of [`TIMEOUT`].
const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The cluster client's waits between retries of a command whose node is
/// gone (ms: 10, 20, 40 … at most 200, jittered). The crate's default
/// waits 1.28 s before every retry, which kept decisions failing for that
/// long after the cluster had already promoted a replica; retried every
/// ≤ 200 ms, a request finds the new master within 0.2 s of its promotion.
/// [`TIMEOUT`] bounds the whole, so the count only needs to outlast it.
const CLUSTER_RETRY_MIN_MS: u64 = 10;
const CLUSTER_RETRY_MAX_MS: u64 = 200;
const CLUSTER_RETRIES: u32 = 40;
/// Pauses between tries while a Sentinel failover leaves no master (see
/// [`RedisStore::through_failover`]).
const SENTINEL_RETRY_MIN: Duration = Duration::from_millis(10);
const SENTINEL_RETRY_MAX: Duration = Duration::from_millis(200);
/// Backoff bounds of the change feed's reconnection.
const FEED_RETRY_MIN: Duration = Duration::from_millis(100);
const FEED_RETRY_MAX: Duration = Duration::from_secs(5);

/// `KEYS[1]` = key; `ARGV` = expect a value ("1"/"0"), expected prefix,
/// new value, TTL in ms, channel. An absent key reads as `false` in Lua,
/// which is no string, so "expected a value, found none" fails too.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if not current or string.sub(current, 1, #ARGV[2]) ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
redis.call('PUBLISH', ARGV[5], KEYS[1])
return 1
";

/// `KEYS[1]` = key; `ARGV[1]` = channel. Publishes even if the key was
/// already gone: a replica may still hold a cached copy.
const DELETE_SCRIPT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1])
return 1
";

/// The server's clock in milliseconds, as Lua sees it (`TIME`).
const NOW_MS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// `KEYS[1]` = a user's index (a hash: session id → `expiry_ms|meta`);
/// `ARGV` = session id, meta, TTL in ms. The hash itself lives as long as
/// its longest entry.
const INDEX_ADD_SCRIPT: &str = r"
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + ttl) .. '|' .. ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
";

/// `KEYS[1]` = a user's index: its live entries as `[id, meta, …]`; the
/// expired ones are deleted on the way.
const INDEX_LIST_SCRIPT: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local bar = string.find(v, '|', 1, true)
  local exp = bar and tonumber(string.sub(v, 1, bar - 1))
  if exp and exp > now then
    out[#out + 1] = all[i]
    out[#out + 1] = string.sub(v, bar + 1)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
";

/// `KEYS[1]` = [`USERS_KEY`]; `ARGV` = user, TTL in ms: registers the
/// user until at least then, dropping users whose entries all ran out.
const USER_ADD_SCRIPT: &str = r"
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'GT', string.format('%.0f', now + ttl), ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
";

/// `KEYS[1]` = [`USERS_KEY`]: the users with entries not yet run out.
const USERS_SCRIPT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// Every user with an index, scored by when their last entry runs out (a
/// sorted set: one key, so listing users needs no scan of every node).
const USERS_KEY: &str = "authgate:users";

/// A user's index key; the braces keep it in one Cluster slot.
fn index_key(user: &str) -> String {
    format!("authgate:user:{{{user}}}:sessions")
}

/// Where the Redis of a `session_store` URL is.
#[derive(Clone)]
pub enum RedisTarget {
    /// `redis://` or `rediss://`: one server.
    Standalone(ConnectionInfo),
    /// `redis+sentinel://`: ask the sentinels which server is the master.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        credentials: Credentials,
        db: i64,
    },
    /// `redis+cluster://`: seed nodes of a Redis Cluster.
    Cluster {
        nodes: Vec<(String, u16)>,
        credentials: Credentials,
    },
}

/// User name and password from a URL.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Standalone(info) => f
                .debug_struct("Standalone")
                .field("addr", &info.addr().to_string())
                .field("db", &info.redis_settings().db())
                .finish_non_exhaustive(),
            RedisTarget::Sentinel {
                sentinels,
                master,
                db,
                ..
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master", master)
                .field("db", db)
                .finish_non_exhaustive(),
            RedisTarget::Cluster { nodes, .. } => f
                .debug_struct("Cluster")
                .field("nodes", nodes)
                .finish_non_exhaustive(),
        }
    }
}

impl RedisTarget {
    /// Parses a `session_store` URL. Errors say what is wrong, never what
    /// the URL was (it may carry a password).
    pub fn parse(url: &str) -> Result<RedisTarget, StoreError> {
        let url = url.trim();
        let invalid = |why: &str| StoreError::InvalidUrl(why.to_owned());
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let multi = MultiHost::parse(rest, 26379)?;
            let mut path = multi.path.split('/').filter(|s| !s.is_empty());
            let master = path
                .next()
                .ok_or_else(|| invalid("a sentinel URL ends with the master's name: …/mymaster"))?
                .to_owned();
            let db = parse_db(path.next())?;
            if path.next().is_some() {
                return Err(invalid("a sentinel URL path is /master_name[/db]"));
            }
            return Ok(RedisTarget::Sentinel {
                sentinels: multi.hosts,
                master,
                credentials: multi.credentials,
                db,
            });
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let multi = MultiHost::parse(rest, 6379)?;
            if !multi.path.trim_matches('/').is_empty() {
                return Err(invalid(
                    "a cluster URL has no path (Redis Cluster has only database 0)",
                ));
            }
            return Ok(RedisTarget::Cluster {
                nodes: multi.hosts,
                credentials: multi.credentials,
            });
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            // The crate's parser; its errors may quote the URL, so they are
            // replaced, not wrapped.
            let info = url.into_connection_info().map_err(|_| {
                invalid("expected redis://[user:password@]host[:port][/db] (or rediss://)")
            })?;
            return Ok(RedisTarget::Standalone(info));
        }
        Err(invalid(
            "expected a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
        ))
    }
}

/// The parts of `[user:password@]h1[:p1],h2[:p2]/path`.
struct MultiHost {
    credentials: Credentials,
    hosts: Vec<(String, u16)>,
    path: String,
}

impl MultiHost {
    fn parse(rest: &str, default_port: u16) -> Result<MultiHost, StoreError> {
        let invalid = |why: &str| StoreError::InvalidUrl(why.to_owned());
        if rest.contains(['?', '#']) {
            return Err(invalid("query parameters are not supported in the URL"));
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let decode = |s: &str| -> Result<Option<String>, StoreError> {
            if s.is_empty() {
                return Ok(None);
            }
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| Some(s.into_owned()))
                .map_err(|_| invalid("the URL's user name or password is not UTF-8"))
        };
        let credentials = match userinfo {
            None => Credentials::default(),
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                Credentials {
                    username: decode(user)?,
                    password: decode(password)?,
                }
            }
        };
        let hosts = hosts
            .split(',')
            .map(|h| parse_host(h, default_port))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MultiHost {
            credentials,
            hosts,
            path: path.to_owned(),
        })
    }
}

fn parse_host(text: &str, default_port: u16) -> Result<(String, u16), StoreError> {
    let invalid = || StoreError::InvalidUrl("each host is host[:port] or [ipv6][:port]".into());
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(invalid)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(invalid)?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['@', '/', ' ']) {
        return Err(invalid());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().map_err(|_| invalid())?,
    };
    Ok((host.to_owned(), port))
}

fn parse_db(text: Option<&str>) -> Result<i64, StoreError> {
    match text {
        None => Ok(0),
        Some(t) => t
            .parse()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| StoreError::InvalidUrl("the database is a number".into())),
    }
}

fn node_info(
    host: &str,
    port: u16,
    credentials: &Credentials,
    db: i64,
) -> Result<ConnectionInfo, RedisError> {
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(user) = &credentials.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &credentials.password {
        redis = redis.set_password(password);
    }
    Ok(ConnectionAddr::Tcp(host.to_owned(), port)
        .into_connection_info()?
        .set_redis_settings(redis))
}

/// One live connection handle (cheap to clone; each multiplexes).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A Redis-backed [`SessionStore`]. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    target: RedisTarget,
    conn: ArcSwapOption<Conn>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    cas: Script,
    delete: Script,
    index_add: Script,
    index_list: Script,
    user_add: Script,
    users: Script,
    /// The master's `min-replicas-to-write`, read at connection: how many
    /// replicas must acknowledge each write (`WAIT`); 0, none.
    replicas: AtomicI64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Parses the URL; connects on first use. No I/O here.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        Ok(RedisStore::new(RedisTarget::parse(url)?))
    }

    pub fn new(target: RedisTarget) -> RedisStore {
        RedisStore {
            inner: Arc::new(Inner {
                target,
                conn: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(()),
                cas: Script::new(CAS_SCRIPT),
                delete: Script::new(DELETE_SCRIPT),
                index_add: Script::new(&format!("{NOW_MS}{INDEX_ADD_SCRIPT}")),
                index_list: Script::new(&format!("{NOW_MS}{INDEX_LIST_SCRIPT}")),
                user_add: Script::new(&format!("{NOW_MS}{USER_ADD_SCRIPT}")),
                users: Script::new(&format!("{NOW_MS}{USERS_SCRIPT}")),
                replicas: AtomicI64::new(0),
            }),
        }
    }

    /// Runs `op` on the connection, connecting first if needed. A command
    /// that finds the connection dropped (Redis restarted while this
    /// replica had nothing to ask it) is sent once more on the new
    /// connection, so the first request after a recovery does not fail;
    /// a repeated compare-and-swap can only report "changed", never write
    /// twice. Through Sentinel, an operation that cannot reach the master
    /// is tried again, with the sentinels asked anew, until [`TIMEOUT`]
    /// (see [`RedisStore::through_failover`]).
    async fn with_conn<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        if matches!(self.inner.target, RedisTarget::Sentinel { .. }) {
            return self.through_failover(&op).await;
        }
        self.attempt(&op).await.map_err(Failure::into_store)
    }

    /// One try of `op`, with the resend after a dropped connection.
    async fn attempt<T, F, Fut>(&self, op: &F) -> Result<T, Failure>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let conn = self.inner.connection().await.map_err(Failure::Connect)?;
        match self.run(op, conn).await {
            Err(e) if e.is_connection_dropped() => {
                let conn = self.inner.connection().await.map_err(Failure::Connect)?;
                self.run(op, conn).await
            }
            other => other,
        }
        .map_err(Failure::Command)
    }

    /// Sentinel: between a master's death and the sentinels naming its
    /// successor there is no master. Failing at once turned every decision
    /// that needed the store then into a 503, for as long as Sentinel took
    /// to promote (`down-after-milliseconds` plus up to about two seconds);
    /// trying again every 10–200 ms (jittered, so the replicas do not ask
    /// in step) until [`TIMEOUT`] turns most of them into a short wait, as
    /// the cluster client does. Only "no master here" is tried again: a
    /// refused or dropped connection, `READONLY`, `MASTERDOWN`, or no
    /// master named yet; a timeout or a write the replicas did not
    /// acknowledge is an answer.
    async fn through_failover<T, F, Fut>(&self, op: &F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut pause = SENTINEL_RETRY_MIN;
        let retried = async {
            loop {
                match self.attempt(op).await {
                    Err(failure)
                        if failure.master_unreachable()
                            && tokio::time::Instant::now() + pause < deadline =>
                    {
                        let jittered =
                            rand::Rng::gen_range(&mut rand::thread_rng(), pause / 2..=pause);
                        tokio::time::sleep(jittered).await;
                        pause = (pause * 2).min(SENTINEL_RETRY_MAX);
                    }
                    other => return other.map_err(Failure::into_store),
                }
            }
        };
        tokio::time::timeout_at(deadline, retried)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::backend(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            })
    }

    /// After a write on `conn`: waits until the replicas the master's
    /// `min-replicas-to-write` asks for have it; an error if they do not.
    async fn replicated(&self, conn: &mut Conn) -> Result<(), RedisError> {
        let wanted = self.inner.replicas.load(Ordering::Relaxed);
        if wanted == 0 {
            return Ok(());
        }
        let acked: i64 = redis::cmd("WAIT")
            .arg(wanted)
            .arg(WAIT_TIMEOUT_MS)
            .query_async(conn)
            .await?;
        if acked >= wanted {
            Ok(())
        } else {
            Err(unacknowledged(acked, wanted))
        }
    }

    async fn run<T, F, Fut>(&self, op: &F, conn: Conn) -> Result<T, RedisError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let result = tokio::time::timeout(TIMEOUT, op(conn))
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            });
        if result.is_err() && matches!(self.inner.target, RedisTarget::Sentinel { .. }) {
            self.inner.conn.store(None);
        }
        result
    }
}

/// A session write fewer replicas took than `min-replicas-to-write` asks.
fn unacknowledged(acked: i64, wanted: i64) -> RedisError {
    RedisError::from(std::io::Error::other(format!(
        "session write acknowledged by {acked} of the {wanted} replicas min-replicas-to-write asks for"
    )))
}

/// Why one try of a store operation failed.
enum Failure {
    /// No connection: the server (or, through Sentinel, the master they
    /// name) did not answer, or refused us.
    Connect(RedisError),
    /// The command failed on the connection.
    Command(RedisError),
}

impl Failure {
    /// Whether the failure means "no master here" (see
    /// [`RedisStore::through_failover`]). Wrong credentials or settings
    /// are not: no new master will accept them, so the error is the answer.
    fn master_unreachable(&self) -> bool {
        match self {
            Failure::Connect(e) => !matches!(
                e.kind(),
                ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
            ),
            Failure::Command(e) => {
                e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || matches!(
                        e.kind(),
                        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                    )
            }
        }
    }

    fn into_store(self) -> StoreError {
        match self {
            Failure::Connect(e) | Failure::Command(e) => StoreError::backend(e),
        }
    }
}

impl Inner {
    async fn connection(&self) -> Result<Conn, RedisError> {
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = self.conn.load_full() {
            return Ok((*conn).clone());
        }
        let conn = tokio::time::timeout(TIMEOUT * 2, self.connect())
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            })?;
        self.conn.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        match &self.target {
            RedisTarget::Cluster { nodes, credentials } => {
                let seeds = nodes
                    .iter()
                    .map(|(host, port)| node_info(host, *port, credentials, 0))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClient::builder(seeds)
                    .connection_timeout(CLUSTER_CONNECT_TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(CLUSTER_RETRY_MIN_MS)
                    .max_retry_wait(CLUSTER_RETRY_MAX_MS)
                    .retry_wait_formula(CLUSTER_RETRY_MIN_MS, 2);
                if let Some(user) = &credentials.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &credentials.password {
                    builder = builder.password(password);
                }
                let mut conn = builder.build()?.get_async_connection().await?;
                self.replicas
                    .store(min_replicas_to_write(&mut conn).await, Ordering::Relaxed);
                Ok(Conn::Cluster(conn))
            }
            _ => {
                let client = self.single_client().await?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let mut conn = ConnectionManager::new_with_config(client, config).await?;
                self.replicas
                    .store(min_replicas_to_write(&mut conn).await, Ordering::Relaxed);
                Ok(Conn::Single(conn))
            }
        }
    }

    /// The client of the one server to talk to: the configured one, or the
    /// master the sentinels name now; for a cluster, the first seed node
    /// that answers (used for the change feed: a `PUBLISH` reaches every
    /// node's subscribers).
    async fn single_client(&self) -> Result<Client, RedisError> {
        match &self.target {
            RedisTarget::Standalone(info) => Client::open(info.clone()),
            RedisTarget::Sentinel {
                sentinels,
                master,
                credentials,
                db,
            } => {
                let addrs = sentinels
                    .iter()
                    .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
                let mut builder =
                    SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
                        .set_client_to_redis_db(*db);
                if let Some(user) = &credentials.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &credentials.password {
                    builder = builder.set_client_to_redis_password(password);
                }
                let mut sentinel = builder.build()?;
                sentinel.async_get_client().await
            }
            RedisTarget::Cluster { nodes, credentials } => {
                let mut last = None;
                for (host, port) in nodes {
                    let client = Client::open(node_info(host, *port, credentials, 0)?)?;
                    match client.get_multiplexed_async_connection().await {
                        Ok(_) => return Ok(client),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    RedisError::from(std::io::Error::other("no cluster node given"))
                }))
            }
        }
    }

    /// Keeps a subscription to [`CHANGES_CHANNEL`] open, forwarding each
    /// key, and [`StoreChange::Resync`] after every (re)subscription since
    /// messages sent while disconnected are lost. Ends when `tx` closes.
    async fn follow(self: Arc<Self>, tx: mpsc::Sender<StoreChange>) {
        let mut delay = FEED_RETRY_MIN;
        loop {
            let subscribed = async {
                let client = self.single_client().await?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(CHANGES_CHANNEL).await?;
                Ok::<_, RedisError>(pubsub)
            };
            let subscribed = tokio::select! {
                s = tokio::time::timeout(TIMEOUT * 2, subscribed) => s,
                () = tx.closed() => return,
            };
            match subscribed {
                Ok(Ok(pubsub)) => {
                    delay = FEED_RETRY_MIN;
                    if tx.send(StoreChange::Resync).await.is_err() {
                        return;
                    }
                    let mut messages = std::pin::pin!(pubsub.into_on_message());
                    loop {
                        let message = tokio::select! {
                            m = messages.next() => m,
                            () = tx.closed() => return,
                        };
                        let Some(message) = message else { break };
                        let Ok(key) = std::str::from_utf8(message.get_payload_bytes()) else {
                            continue;
                        };
                        if tx.send(StoreChange::Changed(key.to_owned())).await.is_err() {
                            return;
                        }
                    }
                    tracing::warn!("session change feed from Redis lost; reconnecting");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, retry_in = ?delay, "cannot subscribe to session changes on Redis");
                }
                Err(_) => {
                    tracing::warn!(retry_in = ?delay, "subscribing to session changes on Redis timed out");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {},
                () = tx.closed() => return,
            }
            delay = (delay * 2).min(FEED_RETRY_MAX);
        }
    }
}

/// The server's `min-replicas-to-write` (0 if unset or unreadable: a
/// managed Redis may refuse `CONFIG`, which is logged).
async fn min_replicas_to_write(conn: &mut (impl ConnectionLike + Send)) -> i64 {
    let reply: Result<Vec<String>, RedisError> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("min-replicas-to-write")
        .query_async(conn)
        .await;
    match reply {
        Ok(pair) => pair.get(1).and_then(|v| v.parse().ok()).unwrap_or(0),
        Err(error) => {
            tracing::warn!(%error, "cannot read min-replicas-to-write from Redis; session writes will not wait for replicas");
            0
        }
    }
}

/// Milliseconds for `PX`: rounded up, so an entry never lives less than
/// asked.
fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_millis();
    let ms = ms + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl SessionStore for RedisStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.with_conn(move |mut c| async move {
            redis::cmd("GET").arg(key).query_async(&mut c).await
        }))
    }

    fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(self.with_conn(move |mut c| async move {
            if ttl.is_zero() {
                // `PX 0` is an error: a zero TTL is an entry already gone.
                redis::cmd("DEL").arg(key).exec_async(&mut c).await?;
                return self.replicated(&mut c).await;
            }
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_millis(ttl))
                .exec_async(&mut c)
                .await?;
            self.replicated(&mut c).await
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.with_conn(move |mut c| {
            let script = self.inner.delete.clone();
            async move {
                script
                    .key(key)
                    .arg(CHANGES_CHANNEL)
                    .invoke_async::<i64>(&mut c)
                    .await?;
                self.replicated(&mut c).await
            }
        }))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.with_conn(move |mut c| {
            let script = self.inner.cas.clone();
            async move {
                if ttl.is_zero() {
                    // Nothing would be written: report whether it matched.
                    let current: Option<Vec<u8>> =
                        redis::cmd("GET").arg(key).query_async(&mut c).await?;
                    return Ok(matches_expected(current.as_deref(), expected));
                }
                let swapped: i64 = script
                    .key(key)
                    .arg(if expected.is_some() { "1" } else { "0" })
                    .arg(expected.unwrap_or_default())
                    .arg(new)
                    .arg(ttl_millis(ttl))
                    .arg(CHANGES_CHANNEL)
                    .invoke_async(&mut c)
                    .await?;
                if swapped == 1 {
                    self.replicated(&mut c).await?;
                }
                Ok(swapped == 1)
            }
        }))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.with_conn(|mut c| async move { redis::cmd("PING").exec_async(&mut c).await }))
    }

    fn index_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        meta: &'a [u8],
        ttl: Duration,
    ) -> StoreFuture<'a, ()> {
        let key = index_key(user);
        Box::pin(self.with_conn(move |mut c| {
            let (user_add, index_add) = (self.inner.user_add.clone(), self.inner.index_add.clone());
            let key = key.clone();
            async move {
                if ttl.is_zero() {
                    redis::cmd("HDEL")
                        .arg(&key)
                        .arg(id)
                        .exec_async(&mut c)
                        .await?;
                    return self.replicated(&mut c).await;
                }
                // The user first: every entry's user is listed.
                user_add
                    .key(USERS_KEY)
                    .arg(user)
                    .arg(ttl_millis(ttl))
                    .invoke_async::<i64>(&mut c)
                    .await?;
                index_add
                    .key(&key)
                    .arg(id)
                    .arg(meta)
                    .arg(ttl_millis(ttl))
                    .invoke_async::<i64>(&mut c)
                    .await?;
                // Lost in a failover, the entry would hide the session
                // from "sign out everywhere".
                self.replicated(&mut c).await
            }
        }))
    }

    fn index_list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<IndexEntry>> {
        let key = index_key(user);
        Box::pin(self.with_conn(move |mut c| {
            let script = self.inner.index_list.clone();
            let key = key.clone();
            async move {
                let flat: Vec<Vec<u8>> = script.key(&key).invoke_async(&mut c).await?;
                Ok(flat
                    .chunks_exact(2)
                    .filter_map(|pair| {
                        let id = String::from_utf8(pair[0].clone()).ok()?;
                        Some((id, pair[1].clone()))
                    })
                    .collect())
            }
        }))
    }

    fn index_remove<'a>(&'a self, user: &'a str, ids: &'a [String]) -> StoreFuture<'a, ()> {
        let key = index_key(user);
        Box::pin(self.with_conn(move |mut c| {
            let key = key.clone();
            async move {
                if ids.is_empty() {
                    return Ok(());
                }
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(ids)
                    .exec_async(&mut c)
                    .await?;
                self.replicated(&mut c).await
            }
        }))
    }

    fn index_users(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.with_conn(move |mut c| {
            let script = self.inner.users.clone();
            async move { script.key(USERS_KEY).invoke_async(&mut c).await }
        }))
    }

    fn watch(&self) -> Option<ChangeFeed> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(Arc::clone(&self.inner).follow(tx));
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::session::conformance;
    use crate::session::test_redis::TestRedis;

    fn hosts(target: &RedisTarget) -> Vec<(String, u16)> {
        match target {
            RedisTarget::Sentinel { sentinels, .. } => sentinels.clone(),
            RedisTarget::Cluster { nodes, .. } => nodes.clone(),
            RedisTarget::Standalone(info) => match info.addr() {
                ConnectionAddr::Tcp(h, p) => vec![(h.clone(), *p)],
                ConnectionAddr::TcpTls { host, port, .. } => vec![(host.clone(), *port)],
                _ => vec![],
            },
        }
    }

    /// Through Sentinel, only "no master here" is tried again; a write
    /// the replicas did not acknowledge, a timeout, a script error or a
    /// refused password is the answer (trying it again would only hold the
    /// request longer).
    #[test]
    fn a_failover_retries_only_a_missing_master() {
        use std::io::{Error, ErrorKind as Io};
        let retried = |e: RedisError| Failure::Command(e).master_unreachable();
        assert!(retried(Error::from(Io::ConnectionRefused).into()));
        assert!(retried(Error::from(Io::ConnectionReset).into()));
        assert!(retried(Error::from(Io::BrokenPipe).into()));
        let read_only = ErrorKind::Server(ServerErrorKind::ReadOnly);
        assert!(retried((read_only, "READONLY").into()));
        let master_down = ErrorKind::Server(ServerErrorKind::MasterDown);
        assert!(retried((master_down, "MASTERDOWN").into()));
        let no_master = Error::from(Io::ConnectionRefused).into();
        assert!(Failure::Connect(no_master).master_unreachable());
        let wrong_password = (ErrorKind::AuthenticationFailed, "WRONGPASS").into();
        assert!(!Failure::Connect(wrong_password).master_unreachable());

        assert!(!retried(unacknowledged(0, 1)));
        assert!(!retried(Error::from(Io::TimedOut).into()));
        let script = ErrorKind::Server(ServerErrorKind::ResponseError);
        assert!(!retried((script, "ERR in script").into()));
    }

    /// Every documented URL form parses into the right topology, with
    /// default ports, credentials decoded and the database kept.
    #[test]
    fn url_forms() {
        let t = RedisTarget::parse("redis://:p%40ss@cache:6380/2").unwrap();
        let RedisTarget::Standalone(info) = &t else {
            panic!("{t:?}")
        };
        assert_eq!(info.redis_settings().password(), Some("p@ss"));
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(hosts(&t), [("cache".to_owned(), 6380)]);

        let t = RedisTarget::parse("rediss://cache").unwrap();
        let RedisTarget::Standalone(info) = &t else {
            panic!("{t:?}")
        };
        assert!(matches!(
            info.addr(),
            ConnectionAddr::TcpTls { port: 6379, .. }
        ));

        let t = RedisTarget::parse("redis+sentinel://u:pw@s1:26380,s2,[::1]:5/mymaster/3").unwrap();
        let RedisTarget::Sentinel {
            master,
            credentials,
            db,
            ..
        } = &t
        else {
            panic!("{t:?}")
        };
        assert_eq!(master, "mymaster");
        assert_eq!(*db, 3);
        assert_eq!(credentials.username.as_deref(), Some("u"));
        assert_eq!(credentials.password.as_deref(), Some("pw"));
        assert_eq!(
            hosts(&t),
            [
                ("s1".to_owned(), 26380),
                ("s2".to_owned(), 26379),
                ("::1".to_owned(), 5)
            ]
        );

        let t = RedisTarget::parse("redis+cluster://:secret@n1:7000,n2").unwrap();
        let RedisTarget::Cluster { credentials, .. } = &t else {
            panic!("{t:?}")
        };
        assert_eq!(credentials.username, None);
        assert_eq!(credentials.password.as_deref(), Some("secret"));
        assert_eq!(
            hosts(&t),
            [("n1".to_owned(), 7000), ("n2".to_owned(), 6379)]
        );
    }

    /// Malformed URLs are refused, and neither the error nor the Debug
    /// output of a parsed URL repeats the password.
    #[test]
    fn bad_urls_and_no_password_anywhere() {
        for bad in [
            "redis+sentinel://:hunter2@s1",
            "redis+sentinel://:hunter2@s1/m/x",
            "redis+sentinel://:hunter2@s1/m/0/extra",
            "redis+sentinel://:hunter2@s1:port/m",
            "redis+sentinel://:hunter2@,s2/m",
            "redis+cluster://:hunter2@n1/3",
            "redis+cluster://:hunter2@n1?tls=1",
            "redis+cluster://:hunter2@[::1/",
            "redis://:hunter2@host:notaport",
            "memcached://:hunter2@x",
        ] {
            let err = RedisTarget::parse(bad).expect_err(bad);
            assert!(matches!(err, StoreError::InvalidUrl(_)), "{bad}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{bad}: {err}");
        }
        for good in [
            "redis://:hunter2@h:1/0",
            "redis+sentinel://:hunter2@s/m",
            "redis+cluster://u:hunter2@n",
        ] {
            let store = RedisStore::open(good).unwrap();
            let debug = format!("{store:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
        }
    }

    #[test]
    fn ttl_millis_rounds_up() {
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
    }

    /// The standalone store passes the shared conformance suite against a
    /// real redis-server, expiry checks included (in real time).
    #[tokio::test]
    async fn conformance_standalone() {
        let redis = TestRedis::start();
        let store: Arc<dyn SessionStore> = Arc::new(RedisStore::open(&redis.url()).unwrap());
        conformance::run_common(&store).await;
        conformance::real_time::ttl_expiry(&store).await;
        conformance::real_time::cas_on_expired(&store).await;
        conformance::real_time::index_expiry(&store).await;
    }

    /// Behind Sentinel: the store finds the master through a real
    /// redis-sentinel and passes the suite.
    #[tokio::test]
    async fn conformance_sentinel() {
        let redis = TestRedis::start();
        let sentinel = redis.start_sentinel("authgate-master");
        let url = format!(
            "redis+sentinel://127.0.0.1:{}/authgate-master",
            sentinel.port()
        );
        let store: Arc<dyn SessionStore> = Arc::new(RedisStore::open(&url).unwrap());
        conformance::run_common(&store).await;
        conformance::real_time::ttl_expiry(&store).await;
        conformance::real_time::index_expiry(&store).await;
    }

    /// On a real (single-node) Redis Cluster: the scripts run on the key's
    /// node and the suite passes.
    #[tokio::test]
    async fn conformance_cluster() {
        let node = TestRedis::start_cluster_node();
        let url = format!("redis+cluster://127.0.0.1:{}", node.port());
        let store: Arc<dyn SessionStore> = Arc::new(RedisStore::open(&url).unwrap());
        conformance::run_common(&store).await;
        conformance::real_time::ttl_expiry(&store).await;
        conformance::real_time::index_expiry(&store).await;
    }

    /// Deletions and replacements reach a watcher; a save of a new key
    /// (a login) does not need to. The feed starts with a resync.
    #[tokio::test]
    async fn changes_are_published() {
        let redis = TestRedis::start();
        let store = RedisStore::open(&redis.url()).unwrap();
        let mut feed = store.watch().unwrap();
        let next = async |feed: &mut ChangeFeed| {
            tokio::time::timeout(Duration::from_secs(5), feed.recv())
                .await
                .expect("a change within 5s")
                .expect("feed open")
        };
        assert_eq!(next(&mut feed).await, StoreChange::Resync);
        let ttl = Duration::from_secs(60);
        store.save("authgate:session:a", b"1", ttl).await.unwrap();
        store
            .compare_and_swap("authgate:session:a", Some(b"1"), b"2", ttl)
            .await
            .unwrap();
        assert_eq!(
            next(&mut feed).await,
            StoreChange::Changed("authgate:session:a".into())
        );
        store.delete("authgate:session:b").await.unwrap();
        assert_eq!(
            next(&mut feed).await,
            StoreChange::Changed("authgate:session:b".into())
        );
    }

    /// A server that is gone is an error (fail closed), not "no session";
    /// and no error text carries the password.
    #[tokio::test]
    async fn unreachable_is_an_error() {
        let mut redis = TestRedis::start();
        let url = redis.url().replace("redis://", "redis://:hunter2@");
        redis.stop();
        let store = RedisStore::open(&url).unwrap();
        let err = store.load("authgate:session:x").await.unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)));
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&s.to_string());
            source = s.source();
        }
        assert!(!text.contains("hunter2"), "{text}");
        assert!(store.ping().await.is_err());
    }
}
