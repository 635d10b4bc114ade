//! [`Sessions`]: the one type the rest of authgate uses for sessions. It
//! owns the cookie ticket, the record encryption, the store and the local
//! cache.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The span of one store operation, for traces. Only the trace exporter
/// takes its target (`traces::TARGET`; this module sits below it), so
/// with traces off the call site is disabled: no span is made.
macro_rules! store_span {
    ($operation:literal) => {
        tracing::info_span!(
            target: "authgate::otel",
            concat!("authgate.store.", $operation),
            authgate.store.operation = $operation,
        )
    };
}
use tracing::Instrument as _;

use moka::sync::Cache;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::clock::SharedClock;
use crate::identity::Identity;

use super::index::{Origin, SessionIndex, SessionInfo, Target};
use super::record::{EncodeError, SessionRecord, Stamp};
use super::seal::{Purpose, Sealer, sealed_len};
use super::store::{SessionStore, StoreChange, StoreError, expiry, parse_store_key, store_key};
use super::ticket::{TICKET_LEN, Ticket};
use super::value_cache::ValueCache;

/// Length of every session cookie value on the cookie domain.
pub const COOKIE_VALUE_LEN: usize = sealed_len(TICKET_LEN);
/// Longest host name a host session cookie names (the DNS limit).
const MAX_HOST_LEN: usize = 253;
/// Default bound of the local cache, in sessions (and of the cookie memo
/// and the assertion cache beside it). Measured by `bench/scale.sh` with
/// Dex-like sessions: about 5 KB of a replica's memory per cached session,
/// all three caches together, so 8,000 keep a replica under 64 MB; a
/// Zipf-distributed load over a million sessions hits it about as often as
/// it hits 10,000 (0.81 against 0.82).
pub const DEFAULT_CACHE_ENTRIES: u64 = 8_000;
/// Bound of the cache of cookie values that did not open, in values.
const REFUSED_ENTRIES: u64 = 4096;
/// Default freshness of a cached record. It bounds how long this replica
/// keeps serving a record after another replica changed or revoked it,
/// until revocations are published between replicas.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// Store key prefix of the used-login-state marks
/// ([`Sessions::consume_login_state`]); never a session key.
pub const USED_LOGIN_STATE_PREFIX: &str = "authgate:login-state-used:";
/// Store key prefix of the used back-channel logout tokens; never a session
/// key.
pub const USED_LOGOUT_TOKEN_PREFIX: &str = "authgate:logout-token-used:";

/// Why a session operation failed. "No valid session" is never an error
/// (it is `Ok(None)`); these mean the caller must fail closed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store is unreachable or broken: 503, logged at error.
    #[error("session store unavailable")]
    Store(#[from] StoreError),
    /// A record could not be encoded: a bug of ours, 500.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A cookie value that opened, memoised: its ticket and, when a previous
/// `cookie_secret` sealed it, the same ticket sealed with the current one
/// (made once, so every request presenting the old value is answered with
/// the same new one).
#[derive(Clone)]
struct Opened {
    ticket: Ticket,
    reissued: Option<Arc<str>>,
    /// A host session cookie's host (see [`Sessions::host_cookie`]).
    host: Option<Arc<str>>,
}

/// A record as loaded, with the stamp of the sealed bytes it came from:
/// `update` expects it.
struct Entry {
    /// The record without its ID token: about a kilobyte per cached
    /// session that only sign-out reads ([`Sessions::id_token`]), so it
    /// stays in the store.
    record: Arc<SessionRecord>,
    stamp: Stamp,
    /// The stored record has an ID token that `record` leaves out.
    id_token_in_store: bool,
}

impl Entry {
    /// `record`, sealed as `sealed`, as the cache keeps it.
    fn new(mut record: SessionRecord, sealed: &[u8]) -> Entry {
        let id_token_in_store = record.id_token.take().is_some();
        Entry {
            record: Arc::new(record),
            stamp: Stamp::of(sealed),
            id_token_in_store,
        }
    }
}

/// One store load that concurrent misses for the same id wait on.
type SharedLoad = OnceCell<Option<Arc<Entry>>>;

/// A cookie value, as far as it can be known without I/O.
enum Lookup {
    /// Garbage, tampered or expired: no session.
    Invalid,
    /// Valid, and its session is in the cache.
    Cached(Resolved),
    /// Valid, but its session must be loaded from the store.
    Uncached(Opened),
}

/// What the idle timeout asks of a session on this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdleWork {
    None,
    /// Record this use (one request per touch interval writes).
    Touch,
    /// Idle past `cookie_idle_timeout`: the session ends.
    Expired,
}

/// What the cache alone says about a session cookie.
pub enum CachedLookup {
    /// A valid, cached session.
    Found(Resolved),
    /// The cookie names no valid session (tampered, expired, garbage).
    NoSession,
    /// Only the store can tell: not cached, or its idle clock needs a write.
    NeedsStore,
}

/// A valid session, as [`Sessions::resolve`] found it.
#[derive(Clone)]
pub struct Resolved {
    /// The session id (names it in the store and the cache).
    pub id: [u8; 16],
    /// The record: identity, refresh token, refresh schedule.
    pub record: Arc<SessionRecord>,
    ticket: Ticket,
    entry: Arc<Entry>,
    reissued: Option<Arc<str>>,
    host: Option<Arc<str>>,
}

impl Resolved {
    fn new(opened: Opened, entry: Arc<Entry>) -> Resolved {
        Resolved {
            id: opened.ticket.id,
            record: Arc::clone(&entry.record),
            ticket: opened.ticket,
            entry,
            reissued: opened.reissued,
            host: opened.host,
        }
    }

    /// Whether the cookie that named this session may be used for a request
    /// to `host` (normalised): a cookie-domain cookie anywhere, a host
    /// session cookie on its own host only.
    pub fn valid_on(&self, host: &str) -> bool {
        self.host.as_deref().is_none_or(|own| own == host)
    }

    /// Unix seconds at which the session ends (for the cookie's Max-Age).
    pub fn expires_at(&self) -> i64 {
        self.ticket.expires_at
    }

    /// The cookie value to send back when the one presented was sealed with
    /// a previous `cookie_secret`: the same session, sealed with the current
    /// secret. `None` when the cookie is already current.
    pub fn reissued_cookie(&self) -> Option<&str> {
        self.reissued.as_deref()
    }

    /// The same session as another record (after an update or a reload).
    fn with_entry(&self, entry: Arc<Entry>) -> Resolved {
        Resolved {
            id: self.id,
            record: Arc::clone(&entry.record),
            ticket: self.ticket.clone(),
            entry,
            reissued: self.reissued.clone(),
            host: self.host.clone(),
        }
    }
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("record", &self.record)
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// Sessions: create, resolve (the hot path), update, revoke.
pub struct Sessions {
    sealer: Sealer,
    store: Arc<dyn SessionStore>,
    clock: SharedClock,
    lifetime: Duration,
    /// `cookie_idle_timeout`: a session unused this long ends.
    idle_timeout: Option<Duration>,
    cache: Cache<[u8; 16], Arc<Entry>, FastHash>,
    /// Cookie values already opened, and their tickets. Opening is pure (the
    /// sealer never changes under a `Sessions`), so this memo is exact; it
    /// matters because the AEAD open costs microseconds where a lookup costs
    /// a fraction of one (Poly1305's AVX2 backend is slow on short inputs).
    /// Only authentic cookies get in, so garbage cannot flood it, and a hit
    /// requires byte-equality with a value that authenticated.
    tickets: ValueCache<Opened, FastHash>,
    /// Cookie values that did not open, so one presented again (a stale
    /// cookie a browser keeps sending) is refused by a lookup instead of
    /// the AEAD. A cache of its own, so a flood of garbage competes only
    /// with garbage, never with `cache` or `tickets`; keyed by the whole
    /// value, so a hit needs byte-equality with a value that failed, and
    /// since opening is pure a genuine cookie never hits. SipHash: these
    /// keys are the attacker's choice.
    refused: ValueCache<(), std::hash::RandomState>,
    /// Store loads in progress, so concurrent misses for one id share one.
    inflight: Mutex<HashMap<[u8; 16], Arc<SharedLoad>>>,
    /// Sessions whose last-seen time this process is writing now, so
    /// concurrent requests do not all write it.
    touching: Mutex<HashSet<[u8; 16]>>,
    /// Bumped by every `forget`; a load that raced with one does not cache
    /// what it read (it may be the record just revoked).
    epoch: AtomicU64,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("sealer", &self.sealer)
            .field("lifetime", &self.lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// `lifetime` is the absolute session length (`cookie_expire`).
    pub fn new(
        sealer: Sealer,
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        lifetime: Duration,
    ) -> Sessions {
        Sessions {
            sealer,
            store,
            clock,
            lifetime,
            idle_timeout: None,
            cache: build_cache(DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_TTL),
            tickets: ValueCache::new(DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_TTL),
            refused: ValueCache::new(REFUSED_ENTRIES, DEFAULT_CACHE_TTL),
            inflight: Mutex::new(HashMap::new()),
            touching: Mutex::new(HashSet::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Replaces the cache bounds (defaults: [`DEFAULT_CACHE_ENTRIES`],
    /// [`DEFAULT_CACHE_TTL`]).
    pub fn with_cache(mut self, max_entries: u64, ttl: Duration) -> Sessions {
        self.cache = build_cache(max_entries, ttl);
        self.tickets = ValueCache::new(max_entries, ttl);
        self
    }

    /// Ends sessions unused for `idle` (`cookie_idle_timeout`; default
    /// none). Enforced here, on the record's last-seen time, whatever the
    /// cookie says. The last-seen time is written at most once per
    /// [`touch_interval`] per session (through the cache, so the store is
    /// not written on every request); a session therefore ends after
    /// between `idle` and `idle` + that interval without use.
    pub fn with_idle_timeout(mut self, idle: Option<Duration>) -> Sessions {
        self.idle_timeout = idle;
        self
    }

    /// The current time on the sessions' clock (Unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A new session after a login: stores the sealed record and returns the
    /// cookie value and the record.
    pub async fn create(
        &self,
        identity: Identity,
        refresh_token: Option<String>,
        refresh_due_at: i64,
    ) -> Result<(String, Arc<SessionRecord>), SessionError> {
        self.create_from(
            identity,
            refresh_token,
            refresh_due_at,
            None,
            Origin::default(),
        )
        .await
    }

    /// [`Sessions::create`] keeping the login's ID token (for RP-initiated
    /// logout), recording where the login came from in the user's session
    /// index (written first: no session goes unlisted).
    pub async fn create_from(
        &self,
        identity: Identity,
        refresh_token: Option<String>,
        refresh_due_at: i64,
        id_token: Option<String>,
        origin: Origin,
    ) -> Result<(String, Arc<SessionRecord>), SessionError> {
        let now = self.clock.now();
        let ticket = Ticket::generate(now, expiry(now, self.lifetime));
        let info = SessionInfo::new(&ticket.id, &identity, origin, now, ticket.expires_at);
        self.index().add(&info, self.lifetime).await?;
        let record = SessionRecord {
            identity,
            refresh_token,
            created_at: now,
            expires_at: ticket.expires_at,
            refresh_due_at,
            refreshed_at: now,
            last_seen_at: now,
            id_token,
            headers: Default::default(),
        };
        let sealed = record.seal(&ticket.id, &ticket.key)?;
        self.store
            .save(&store_key(&ticket.id), &sealed, self.lifetime)
            .instrument(store_span!("save"))
            .await?;
        let epoch = self.epoch.load(Ordering::SeqCst);
        let entry = Arc::new(Entry::new(record, &sealed));
        let record = Arc::clone(&entry.record);
        self.cache_if_current(ticket.id, entry, epoch);
        let cookie = self.sealer.seal(Purpose::SessionCookie, &ticket.encode());
        self.tickets.insert(
            &cookie,
            Opened {
                ticket,
                reissued: None,
                host: None,
            },
        );
        Ok((cookie, record))
    }

    /// A cookie value for `resolved`'s session that is valid on `host`
    /// (normalised) only: what a host outside the cookie domain gets from a
    /// handoff. That host's upstream sees its cookies; with this one it
    /// holds no credential for any other host. It names the same record,
    /// so it ends with the session.
    pub fn host_cookie(&self, resolved: &Resolved, host: &str) -> String {
        self.seal_for_host(&resolved.ticket, host)
    }

    fn seal_for_host(&self, ticket: &Ticket, host: &str) -> String {
        let mut plain = Zeroizing::new(Vec::with_capacity(TICKET_LEN + host.len()));
        plain.extend_from_slice(&ticket.encode());
        plain.extend_from_slice(host.as_bytes());
        self.sealer.seal(Purpose::HostSessionCookie, &plain)
    }

    /// The hot path: the session a cookie value names, if valid.
    ///
    /// Opens the cookie (no I/O), checks its expiry, then the cache (a hit
    /// costs no I/O); a miss loads the store once, shared by concurrent
    /// misses for the same session. `Ok(None)`: no valid session (garbage,
    /// tampered, expired, revoked or unknown) — send the user to log in.
    /// `Err`: the store is unreachable — fail closed.
    ///
    /// The absolute lifetime (`cookie_expire`) is the ticket's expiry,
    /// sealed by us: a client keeping the cookie past its Max-Age gains
    /// nothing. With an idle timeout, an idle session ends here too.
    pub async fn resolve(&self, cookie_value: &str) -> Result<Option<Resolved>, SessionError> {
        let (resolved, cached) = match self.look_up(cookie_value, self.clock.now()) {
            Lookup::Invalid => return Ok(None),
            Lookup::Cached(resolved) => (resolved, true),
            // Boxed, like every store call on this path: the decision's
            // future stays small when the cache answers.
            Lookup::Uncached(opened) => match Box::pin(self.load_shared(&opened.ticket)).await? {
                Some(entry) => (Resolved::new(opened, entry), false),
                None => return Ok(None),
            },
        };
        match self.idle_timeout {
            None => Ok(Some(resolved)),
            Some(idle) => self.keep_alive(resolved, idle, cached).await,
        }
    }

    /// [`Sessions::resolve`] when its answer needs no I/O (the session is
    /// cached and its idle clock needs no write), else
    /// [`CachedLookup::NeedsStore`]: the caller awaits `resolve`. Most decisions end here, with no future at all.
    pub fn resolve_cached(&self, cookie_value: &str) -> CachedLookup {
        // One clock read for the expiry and the idle clock.
        let now = self.clock.now();
        match self.look_up(cookie_value, now) {
            Lookup::Invalid => CachedLookup::NoSession,
            Lookup::Uncached(_) => CachedLookup::NeedsStore,
            Lookup::Cached(resolved) => match self.idle_timeout {
                Some(idle) if self.idle_work(&resolved, idle, now) != IdleWork::None => {
                    CachedLookup::NeedsStore
                }
                _ => CachedLookup::Found(resolved),
            },
        }
    }

    /// The cookie opened, checked for expiry at `now` and looked up in the
    /// cache.
    fn look_up(&self, cookie_value: &str, now: i64) -> Lookup {
        let Some(opened) = self.open_ticket(cookie_value) else {
            return Lookup::Invalid;
        };
        if opened.ticket.is_expired(now) {
            tracing::debug!("session cookie expired");
            return Lookup::Invalid;
        }
        match self.cache.get(&opened.ticket.id) {
            Some(entry) => Lookup::Cached(Resolved::new(opened, entry)),
            None => Lookup::Uncached(opened),
        }
    }

    /// What the idle timeout asks of `resolved` at `now`.
    fn idle_work(&self, resolved: &Resolved, idle: Duration, now: i64) -> IdleWork {
        let step = touch_interval(idle);
        let last_seen = resolved.record.last_seen();
        if now >= last_seen.saturating_add(secs(idle)).saturating_add(step) {
            IdleWork::Expired
        } else if now.saturating_sub(last_seen) >= step {
            IdleWork::Touch
        } else {
            IdleWork::None
        }
    }

    /// The idle timeout: ends a session unused for too long, else records
    /// this use if the stored last-seen time is older than the touch
    /// interval (one request per interval writes; the others read).
    async fn keep_alive(
        &self,
        mut resolved: Resolved,
        idle: Duration,
        cached: bool,
    ) -> Result<Option<Resolved>, SessionError> {
        let now = self.clock.now();
        if self.idle_work(&resolved, idle, now) == IdleWork::Expired {
            // Our copy may be old: the session may have been used through
            // another replica since it was cached.
            if cached {
                match Box::pin(self.reload(&resolved)).await? {
                    Some(fresh) => resolved = fresh,
                    None => return Ok(None),
                }
            }
            if self.idle_work(&resolved, idle, now) == IdleWork::Expired {
                tracing::debug!("session idle past cookie_idle_timeout; ending it");
                Box::pin(self.end(&resolved)).await?;
                return Ok(None);
            }
        }
        if self.idle_work(&resolved, idle, now) == IdleWork::None {
            return Ok(Some(resolved));
        }
        let Some(_touch) = Touch::start(&self.touching, resolved.id) else {
            // Another request is writing it now.
            return Ok(Some(resolved));
        };
        let mut record = (*resolved.record).clone();
        record.last_seen_at = now;
        match Box::pin(self.update(&resolved, record)).await {
            Ok(Some(touched)) => Ok(Some(touched)),
            // A refresh or another replica's touch changed it first.
            Ok(None) => Box::pin(self.reload(&resolved)).await,
            Err(error) => {
                // Bookkeeping only: the session is valid; try again on the
                // next request.
                tracing::warn!(%error, "cannot record the session's last use");
                Ok(Some(resolved))
            }
        }
    }

    /// Replaces the record after a refresh, if nobody changed it since it
    /// was resolved (compare-and-swap on the sealed bytes' stamp). `Some`: the
    /// session as it now is. `None`: another request or replica changed or
    /// ended the session first — [`Sessions::reload`] it. The record's
    /// `expires_at` is always the ticket's: a refresh never extends a
    /// session. A record without an ID token (one made from
    /// `resolved.record`, which leaves it out) keeps the stored one.
    pub async fn update(
        &self,
        resolved: &Resolved,
        mut record: SessionRecord,
    ) -> Result<Option<Resolved>, SessionError> {
        let ticket = &resolved.ticket;
        record.expires_at = ticket.expires_at;
        let remaining = ticket.expires_at.saturating_sub(self.clock.now());
        let Ok(remaining) = u64::try_from(remaining) else {
            return Ok(None);
        };
        if remaining == 0 {
            return Ok(None);
        }
        if record.id_token.is_none() && resolved.entry.id_token_in_store {
            match self.stored_record(resolved).await? {
                Some((stored, true)) => record.id_token = stored.id_token,
                _ => {
                    self.cache.invalidate(&ticket.id);
                    return Ok(None);
                }
            }
        }
        let sealed = record.seal(&ticket.id, &ticket.key)?;
        let epoch = self.epoch.load(Ordering::SeqCst);
        let swapped = self
            .store
            .compare_and_swap(
                &store_key(&ticket.id),
                Some(resolved.entry.stamp.as_bytes()),
                &sealed,
                Duration::from_secs(remaining),
            )
            .instrument(store_span!("compare_and_swap"))
            .await?;
        if !swapped {
            // Our copy is stale: let the next resolve read the winner's.
            self.cache.invalidate(&ticket.id);
            return Ok(None);
        }
        let entry = Arc::new(Entry::new(record, &sealed));
        self.cache_if_current(ticket.id, Arc::clone(&entry), epoch);
        Ok(Some(resolved.with_entry(entry)))
    }

    /// The login's ID token of `resolved`'s session, for sign-out's
    /// `id_token_hint`: read from the store, since the cached record leaves
    /// it out.
    pub async fn id_token(&self, resolved: &Resolved) -> Result<Option<String>, SessionError> {
        if !resolved.entry.id_token_in_store {
            return Ok(resolved.record.id_token.clone());
        }
        Ok(self
            .stored_record(resolved)
            .await?
            .and_then(|(record, _)| record.id_token))
    }

    /// `resolved`'s record as stored now, whole, and whether it is still
    /// the one `resolved` was read from. `None` if the session has ended.
    async fn stored_record(
        &self,
        resolved: &Resolved,
    ) -> Result<Option<(SessionRecord, bool)>, SessionError> {
        let stamp = resolved.entry.stamp.as_bytes();
        Ok(self
            .read(&resolved.ticket)
            .await?
            .map(|(record, sealed)| (record, sealed.starts_with(stamp))))
    }

    /// The session as the store has it now (after a lost [`update`]), or
    /// `None` if it has ended.
    ///
    /// [`update`]: Sessions::update
    pub async fn reload(&self, resolved: &Resolved) -> Result<Option<Resolved>, SessionError> {
        let ticket = &resolved.ticket;
        self.cache.invalidate(&ticket.id);
        if ticket.is_expired(self.clock.now()) {
            return Ok(None);
        }
        Ok(self
            .load_shared(ticket)
            .await?
            .map(|entry| resolved.with_entry(entry)))
    }

    /// Ends a resolved session (the provider refused its refresh): as
    /// sign-out, without the cookie value.
    pub async fn end(&self, resolved: &Resolved) -> Result<(), SessionError> {
        let deleted = self
            .store
            .delete(&store_key(&resolved.id))
            .instrument(store_span!("delete"))
            .await;
        self.forget(&resolved.id);
        deleted?;
        Ok(())
    }

    /// Sign-out: deletes the record and drops it from the cache, so a
    /// replayed copy of the cookie is refused. A cookie that does not open
    /// names no session: nothing to do.
    pub async fn revoke(&self, cookie_value: &str) -> Result<(), SessionError> {
        let Some(Opened { ticket, .. }) = self.open_ticket(cookie_value) else {
            return Ok(());
        };
        let deleted = self
            .store
            .delete(&store_key(&ticket.id))
            .instrument(store_span!("delete"))
            .await;
        self.tickets.invalidate(cookie_value);
        self.forget(&ticket.id);
        deleted?;
        Ok(())
    }

    /// Drops a session from this replica's cache (and any load in flight),
    /// so its next use reads the store.
    pub fn forget(&self, id: &[u8; 16]) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        lock(&self.inflight).remove(id);
        self.cache.invalidate(id);
    }

    /// Drops every cached session (the change feed reconnected and may
    /// have missed revocations).
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        lock(&self.inflight).clear();
        self.cache.invalidate_all();
    }

    /// With a shared store (Redis), follows the changes every replica makes
    /// (sign-out, refresh) and drops the cached copies here, so a signed-out
    /// cookie is refused on every replica within moments, not after the
    /// cache TTL. `None` for a store only this process uses. The task holds
    /// the manager weakly and ends with it (or when aborted).
    pub fn follow_changes(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let mut feed = self.store.watch()?;
        let sessions = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            while let Some(change) = feed.recv().await {
                let Some(sessions) = sessions.upgrade() else {
                    return;
                };
                match change {
                    StoreChange::Changed(key) => {
                        if let Some(id) = parse_store_key(&key) {
                            sessions.forget(&id);
                        }
                    }
                    StoreChange::Resync => sessions.forget_all(),
                }
            }
        }))
    }

    /// Marks a login `state` as used: `Ok(true)` the first time, `Ok(false)`
    /// when a callback with it already got this far (a replay, even with a
    /// fresh code for the same authorization request). The login-state
    /// cookie has no server-side record, so this mark is what makes a state
    /// single-use; it lives `ttl` (the login attempt's lifetime), after which
    /// the cookie is refused anyway. Only the state's SHA-256 is stored.
    /// Login only: decisions never come here.
    pub async fn consume_login_state(
        &self,
        state: &str,
        ttl: Duration,
    ) -> Result<bool, SessionError> {
        self.mark_used(USED_LOGIN_STATE_PREFIX, state, ttl).await
    }

    /// Marks a back-channel logout token (`iss` and `jti`) as used, as
    /// [`Sessions::consume_login_state`] does a login state: `Ok(false)` for
    /// a replay, on any replica.
    pub async fn consume_logout_token(
        &self,
        issuer: &str,
        jti: &str,
        ttl: Duration,
    ) -> Result<bool, SessionError> {
        self.mark_used(USED_LOGOUT_TOKEN_PREFIX, &format!("{issuer}\0{jti}"), ttl)
            .await
    }

    /// Writes `prefix` + SHA-256 of `value` if absent: whether it was.
    async fn mark_used(
        &self,
        prefix: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, SessionError> {
        use base64::Engine as _;
        use sha2::{Digest as _, Sha256};
        let digest = Sha256::digest(value.as_bytes());
        let key = format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        );
        Ok(self
            .store
            .compare_and_swap(&key, None, b"1", ttl)
            .instrument(store_span!("consume_login_state"))
            .await?)
    }

    /// Ends the sessions of `target` (an operator's or the user's own
    /// request) and drops every cached session here, so none of them is
    /// served from this replica's cache; other replicas sharing the store
    /// hear of each deletion. Fails if the store does (fail closed).
    pub async fn revoke_where(&self, target: &Target) -> Result<Vec<SessionInfo>, SessionError> {
        let ended = self.index().revoke(target, self.clock.now()).await;
        self.forget_all();
        Ok(ended?)
    }

    /// The per-user session index over this store.
    pub fn index(&self) -> SessionIndex {
        SessionIndex::new(Arc::clone(&self.store))
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), SessionError> {
        Ok(self.store.ping().await?)
    }

    /// The sealer, shared with the login flow (login-state cookie).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The ticket in a cookie value, if it is one of ours: from the memo,
    /// else opened without allocating (decoded into a stack buffer). A
    /// value sealed with a previous secret is re-sealed with the current
    /// one, once, and both values are memoised. The length tells a
    /// cookie-domain cookie from a host session cookie, so each value is
    /// opened under one key only.
    fn open_ticket(&self, cookie_value: &str) -> Option<Opened> {
        let purpose = match cookie_value.len() {
            COOKIE_VALUE_LEN => Purpose::SessionCookie,
            len if len > COOKIE_VALUE_LEN && len <= sealed_len(TICKET_LEN + MAX_HOST_LEN) => {
                Purpose::HostSessionCookie
            }
            len => {
                tracing::debug!(len, "session cookie has the wrong length");
                return None;
            }
        };
        if let Some(ticket) = self.tickets.get(cookie_value) {
            return Some(ticket);
        }
        if self.refused.get(cookie_value).is_some() {
            return None;
        }
        let opened = self.open_uncached(purpose, cookie_value);
        if opened.is_none() {
            self.refused.insert(cookie_value, ());
        }
        opened
    }

    /// [`Sessions::open_ticket`] past its caches: the AEAD open, the
    /// ticket decoded, both values memoised.
    fn open_uncached(&self, purpose: Purpose, cookie_value: &str) -> Option<Opened> {
        // Holds the opened ticket, per-session key included: wiped on return.
        let mut buf = Zeroizing::new([0u8; 512]);
        let (plain, stale) =
            match self
                .sealer
                .open_in_place(purpose, cookie_value, buf.as_mut_slice())
            {
                Ok(opened) => opened,
                Err(err) => {
                    tracing::debug!(error = %err, "session cookie refused");
                    return None;
                }
            };
        let (ticket, host) = match purpose {
            Purpose::HostSessionCookie => {
                let (ticket, host) = plain.split_first_chunk::<TICKET_LEN>()?;
                let host = std::str::from_utf8(host).ok()?;
                (Ticket::decode(ticket)?, Some(Arc::<str>::from(host)))
            }
            _ => (Ticket::decode(plain)?, None),
        };
        let reissued = stale.then(|| {
            tracing::debug!("session cookie sealed with a previous secret; re-issuing it");
            let value: Arc<str> = match &host {
                Some(host) => self.seal_for_host(&ticket, host),
                None => self.sealer.seal(Purpose::SessionCookie, &ticket.encode()),
            }
            .into();
            self.tickets.insert(
                &value,
                Opened {
                    ticket: ticket.clone(),
                    reissued: None,
                    host: host.clone(),
                },
            );
            value
        });
        let opened = Opened {
            ticket,
            reissued,
            host,
        };
        self.tickets.insert(cookie_value, opened.clone());
        Some(opened)
    }

    /// Loads a session from the store, one load per id at a time.
    async fn load_shared(&self, ticket: &Ticket) -> Result<Option<Arc<Entry>>, SessionError> {
        let cell = Arc::clone(lock(&self.inflight).entry(ticket.id).or_default());
        // If the loading request is cancelled or fails, a waiter takes over.
        let result = cell.get_or_try_init(|| self.load(ticket)).await.cloned();
        let mut inflight = lock(&self.inflight);
        if inflight
            .get(&ticket.id)
            .is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            inflight.remove(&ticket.id);
        }
        result
    }

    async fn load(&self, ticket: &Ticket) -> Result<Option<Arc<Entry>>, SessionError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let Some((record, sealed)) = self.read(ticket).await? else {
            return Ok(None);
        };
        let entry = Arc::new(Entry::new(record, &sealed));
        self.cache_if_current(ticket.id, Arc::clone(&entry), epoch);
        Ok(Some(entry))
    }

    /// `ticket`'s record as stored, and its sealed bytes; `None` if the
    /// session is not in the store or its entry does not open.
    async fn read(
        &self,
        ticket: &Ticket,
    ) -> Result<Option<(SessionRecord, Vec<u8>)>, SessionError> {
        let Some(sealed) = self
            .store
            .load(&store_key(&ticket.id))
            .instrument(store_span!("load"))
            .await?
        else {
            tracing::debug!("session not in the store (signed out or expired)");
            return Ok(None);
        };
        let Some(record) = SessionRecord::open(&sealed, &ticket.id, &ticket.key) else {
            // Only a damaged or foreign store entry gets here.
            tracing::warn!("session record does not open with its cookie's key; ignoring it");
            return Ok(None);
        };
        Ok(Some((record, sealed)))
    }

    /// Caches `entry` unless a `forget` ran since `epoch` was read. Insert
    /// first, check after: a `forget` either bumped the epoch before the
    /// check (we undo the insert) or invalidates after it.
    fn cache_if_current(&self, id: [u8; 16], entry: Arc<Entry>, epoch: u64) {
        self.cache.insert(id, entry);
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.cache.invalidate(&id);
        }
    }
}

/// How stale a session's last-seen time may get before a use writes it
/// again: a tenth of the idle timeout, between 1 s and a minute. Coarse on
/// purpose: one store write per session per interval, whatever the traffic.
pub fn touch_interval(idle: Duration) -> i64 {
    secs(idle / 10).clamp(1, 60)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Marks a session as being touched; unmarks it when dropped, however the
/// touch ends (a cancelled request must not leave it marked for good).
struct Touch<'a> {
    set: &'a Mutex<HashSet<[u8; 16]>>,
    id: [u8; 16],
}

impl<'a> Touch<'a> {
    fn start(set: &'a Mutex<HashSet<[u8; 16]>>, id: [u8; 16]) -> Option<Touch<'a>> {
        lock(set).insert(id).then_some(Touch { set, id })
    }
}

impl Drop for Touch<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.id);
    }
}

/// The hasher of the caches whose keys are random session ids and cookie
/// values that already authenticated, so nobody can choose colliding keys;
/// std's SipHash would cost more per request than the cache lookup itself
/// (a 140-byte cookie value is hashed on every decision).
type FastHash = foldhash::fast::RandomState;

fn build_cache<K, V, S>(max_entries: u64, ttl: Duration) -> Cache<K, V, S>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: std::hash::BuildHasher + Clone + Default + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(max_entries)
        .time_to_live(ttl)
        .build_with_hasher(S::default())
}

/// The map is consistent after every operation, so a poisoned lock (a
/// panic elsewhere) is safe to keep using.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::AtomicUsize;

    use base64::Engine as _;
    use rand::RngCore as _;
    use rand::rngs::OsRng;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Secret;
    use crate::session::embedded::EmbeddedStore;
    use crate::session::memory::MemoryStore;
    use crate::session::store::{IndexEntry, StoreFuture};

    const LIFETIME: Duration = Duration::from_secs(14 * 3600);
    const T0: i64 = 1_700_000_000;

    fn sealer() -> Sealer {
        Sealer::new(&Secret::new(vec![7u8; 32]), &[]).unwrap()
    }

    fn identity(groups: usize) -> Identity {
        Identity {
            subject: "CgVhbGljZRIEbGRhcA".into(),
            email: Some("alice@example.com".into()),
            groups: (0..groups)
                .map(|i| format!("group-number-{i:04}"))
                .collect(),
            ..Identity::default()
        }
    }

    struct Fixture {
        clock: ManualClock,
        store: Arc<MemoryStore>,
        sessions: Sessions,
    }

    fn fixture() -> Fixture {
        let clock = ManualClock::new(T0);
        let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let sessions = Sessions::new(sealer(), store.clone(), Arc::new(clock.clone()), LIFETIME);
        Fixture {
            clock,
            store,
            sessions,
        }
    }

    /// A second manager on the same store: same secrets, empty cache (as
    /// another replica, or this one after its cache expired).
    fn cold_peer(f: &Fixture) -> Sessions {
        Sessions::new(
            sealer(),
            f.store.clone(),
            Arc::new(f.clock.clone()),
            LIFETIME,
        )
    }

    /// A login creates a session that resolves to the same record, from the
    /// cache and from the store, with the expiry of the configured lifetime.
    #[tokio::test]
    async fn create_then_resolve() {
        let f = fixture();
        let (cookie, record) = f
            .sessions
            .create(identity(2), Some("rt-1".into()), T0 + 300)
            .await
            .unwrap();
        assert_eq!(record.created_at, T0);
        assert_eq!(record.expires_at, T0 + LIFETIME.as_secs() as i64);
        let hot = f.sessions.resolve(&cookie).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&hot.record, &record), "served from the cache");
        assert_eq!(hot.expires_at(), record.expires_at);
        let cold = cold_peer(&f).resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(*cold.record, *record);
        assert_eq!(cold.id, hot.id);
    }

    /// Secret rotation: a session created before `cookie_secret` moved to
    /// `previous_cookie_secrets` still resolves after the restart.
    #[tokio::test]
    async fn rotation_keeps_sessions() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let rotated =
            Sealer::new(&Secret::new(vec![9u8; 32]), &[Secret::new(vec![7u8; 32])]).unwrap();
        let after = Sessions::new(
            rotated,
            f.store.clone(),
            Arc::new(f.clock.clone()),
            LIFETIME,
        );
        assert!(after.resolve(&cookie).await.unwrap().is_some());
        let unrelated = Sealer::new(&Secret::new(vec![9u8; 32]), &[]).unwrap();
        let dropped = Sessions::new(
            unrelated,
            f.store.clone(),
            Arc::new(f.clock.clone()),
            LIFETIME,
        );
        assert!(dropped.resolve(&cookie).await.unwrap().is_none());

        // The old cookie comes back re-issued under the new secret: the
        // same session, a value that only the new secret opens, the same
        // value for every request presenting the old one.
        let resolved = after.resolve(&cookie).await.unwrap().unwrap();
        let reissued = resolved.reissued_cookie().unwrap().to_owned();
        assert_ne!(reissued, cookie);
        assert_eq!(reissued.len(), COOKIE_VALUE_LEN);
        let again = after.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(again.reissued_cookie(), Some(reissued.as_str()));
        let current = after.resolve(&reissued).await.unwrap().unwrap();
        assert_eq!(current.id, resolved.id);
        assert_eq!(current.expires_at(), resolved.expires_at());
        assert_eq!(current.reissued_cookie(), None, "already current");
        let only_new = dropped.resolve(&reissued).await.unwrap().unwrap();
        assert_eq!(only_new.id, resolved.id);
        assert!(
            f.sessions.resolve(&reissued).await.unwrap().is_none(),
            "the old secret does not open it"
        );
        let (fresh, _) = after.create(identity(1), None, 0).await.unwrap();
        let fresh = after.resolve(&fresh).await.unwrap().unwrap();
        assert_eq!(fresh.reissued_cookie(), None);
    }

    /// Without I/O, `resolve_cached` answers what `resolve` would for a
    /// cached session and for garbage, and defers (`None`) to `resolve`
    /// for a session only the store has; once that loaded it, the cache
    /// answers.
    #[tokio::test]
    async fn resolve_cached_answers_only_what_needs_no_io() {
        fn found(lookup: CachedLookup) -> Resolved {
            match lookup {
                CachedLookup::Found(resolved) => resolved,
                _ => panic!("not found in the cache"),
            }
        }
        let f = fixture();
        let (cookie, record) = f.sessions.create(identity(2), None, 0).await.unwrap();
        let hot = found(f.sessions.resolve_cached(&cookie));
        assert_eq!(hot.record, record);
        assert!(matches!(
            f.sessions.resolve_cached("garbage"),
            CachedLookup::NoSession
        ));
        let mut tampered = cookie.clone().into_bytes();
        tampered[10] ^= 1;
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(matches!(
            f.sessions.resolve_cached(&tampered),
            CachedLookup::NoSession
        ));

        let cold = cold_peer(&f);
        assert!(
            matches!(cold.resolve_cached(&cookie), CachedLookup::NeedsStore),
            "only the store has it"
        );
        let loaded = cold.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(loaded.id, hot.id);
        assert_eq!(found(cold.resolve_cached(&cookie)).id, hot.id);

        f.clock.advance(LIFETIME.as_secs() as i64);
        assert!(
            matches!(f.sessions.resolve_cached(&cookie), CachedLookup::NoSession),
            "expired"
        );
    }

    const IDLE: Duration = Duration::from_secs(600);

    fn idle_fixture() -> (Fixture, Sessions) {
        let f = fixture();
        let idle = cold_peer(&f).with_idle_timeout(Some(IDLE));
        (f, idle)
    }

    /// A tenth of the timeout, within 1 s and a minute.
    #[test]
    fn touch_interval_is_a_bounded_fraction() {
        assert_eq!(touch_interval(IDLE), 60);
        assert_eq!(touch_interval(Duration::from_secs(300)), 30);
        assert_eq!(touch_interval(Duration::from_secs(5)), 1);
        assert_eq!(touch_interval(Duration::from_secs(86_400)), 60);
    }

    /// Idle timeout: a session used now and then lives on; one left unused
    /// for the timeout (plus at most one touch interval) ends, here and in
    /// the store, although its cookie and absolute lifetime are still good.
    #[tokio::test]
    async fn idle_sessions_end() {
        let (f, sessions) = idle_fixture();
        let (kept, _) = sessions.create(identity(1), None, 0).await.unwrap();
        let (left, _) = sessions.create(identity(1), None, 0).await.unwrap();
        f.clock.advance(IDLE.as_secs() as i64 + 59);
        assert!(
            sessions.resolve(&kept).await.unwrap().is_some(),
            "within the slack"
        );
        f.clock.advance(1);
        assert!(sessions.resolve(&left).await.unwrap().is_none(), "idle");
        assert_eq!(f.store.len(), 1, "ended in the store too");
        for _ in 0..5 {
            f.clock.advance(IDLE.as_secs() as i64);
            assert!(sessions.resolve(&kept).await.unwrap().is_some(), "in use");
        }
        assert!(cold_peer(&f).resolve(&left).await.unwrap().is_none());
    }

    /// With an idle timeout, `resolve_cached` answers only while the idle
    /// clock needs no write: the request that is due to record the use, or
    /// to end the session, goes to `resolve`.
    #[tokio::test]
    async fn resolve_cached_defers_idle_clock_writes() {
        let (f, sessions) = idle_fixture();
        let (cookie, _) = sessions.create(identity(1), None, 0).await.unwrap();
        f.clock.advance(59);
        assert!(matches!(
            sessions.resolve_cached(&cookie),
            CachedLookup::Found(_)
        ));
        f.clock.advance(1);
        assert!(
            matches!(sessions.resolve_cached(&cookie), CachedLookup::NeedsStore),
            "a touch is due"
        );
        assert!(sessions.resolve(&cookie).await.unwrap().is_some());
        assert!(
            matches!(sessions.resolve_cached(&cookie), CachedLookup::Found(_)),
            "touched"
        );
        f.clock.advance(IDLE.as_secs() as i64 + 60);
        assert!(
            matches!(sessions.resolve_cached(&cookie), CachedLookup::NeedsStore),
            "idle: to be ended"
        );
        assert!(sessions.resolve(&cookie).await.unwrap().is_none());
    }

    /// The last-seen time reaches the store at most once per touch
    /// interval, whatever the traffic: the store is not written per request.
    #[tokio::test]
    async fn last_use_is_written_once_per_interval() {
        let (f, sessions) = idle_fixture();
        let (cookie, _) = sessions.create(identity(1), None, 0).await.unwrap();
        let stored = || async { cold_peer(&f).resolve(&cookie).await.unwrap().unwrap() };
        for _ in 0..59 {
            f.clock.advance(1);
            sessions.resolve(&cookie).await.unwrap().unwrap();
        }
        assert_eq!(stored().await.record.last_seen_at, T0, "not written yet");
        f.clock.advance(1);
        let seen = sessions.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(seen.record.last_seen_at, T0 + 60);
        assert_eq!(stored().await.record.last_seen_at, T0 + 60);
        f.clock.advance(30);
        sessions.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(stored().await.record.last_seen_at, T0 + 60);
    }

    /// A replica whose cached copy looks idle reads the store before ending
    /// the session: the user may have been active through another replica.
    #[tokio::test]
    async fn use_through_another_replica_counts() {
        let (f, a) = idle_fixture();
        let b = cold_peer(&f).with_idle_timeout(Some(IDLE));
        let (cookie, _) = a.create(identity(1), None, 0).await.unwrap();
        assert!(a.resolve(&cookie).await.unwrap().is_some(), "cached on a");
        f.clock.advance(500);
        assert!(b.resolve(&cookie).await.unwrap().is_some(), "used on b");
        f.clock.advance(500);
        let on_a = a.resolve(&cookie).await.unwrap().expect("not idle");
        assert_eq!(on_a.record.last_seen_at, T0 + 1000, "and touched again");
    }

    /// Without an idle timeout, use writes nothing: a session unused for
    /// days lives until its absolute lifetime.
    #[tokio::test]
    async fn no_idle_timeout_no_writes() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        f.clock.advance(LIFETIME.as_secs() as i64 - 1);
        let resolved = f.sessions.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(resolved.record.last_seen_at, T0);
        assert_eq!(
            cold_peer(&f)
                .resolve(&cookie)
                .await
                .unwrap()
                .unwrap()
                .record
                .last_seen_at,
            T0
        );
    }

    /// With the embedded store, a restart logs nobody out.
    #[tokio::test]
    async fn embedded_sessions_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        let clock = ManualClock::new(T0);
        let open = || {
            let store = EmbeddedStore::open(&path, Arc::new(clock.clone())).unwrap();
            Sessions::new(sealer(), Arc::new(store), Arc::new(clock.clone()), LIFETIME)
        };
        let (cookie, record) = open()
            .create(identity(3), Some("rt".into()), T0)
            .await
            .unwrap();
        let restarted = open();
        let resolved = restarted.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(*resolved.record, *record);
    }

    /// The cookie is the same length for 0 and 300 groups, and short.
    #[tokio::test]
    async fn cookie_size_is_independent_of_claims() {
        let f = fixture();
        let (small, _) = f.sessions.create(identity(0), None, 0).await.unwrap();
        let (large, rec) = f.sessions.create(identity(300), None, 0).await.unwrap();
        assert_eq!(rec.identity.groups.len(), 300);
        assert_eq!(small.len(), large.len());
        assert_eq!(small.len(), COOKIE_VALUE_LEN);
        assert!(small.len() < 200, "{}", small.len());
    }

    /// Garbage, foreign and tampered cookies are "no session", never an
    /// error, and cost no store access (even with the store down).
    #[tokio::test]
    async fn garbage_is_no_session() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        // The genuine cookie is memoised: near-misses must still fail.
        assert!(f.sessions.resolve(&cookie).await.unwrap().is_some());
        let down = Sessions::new(
            sealer(),
            Arc::new(DownStore),
            Arc::new(f.clock.clone()),
            LIFETIME,
        );
        let other = Sealer::new(&Secret::new(vec![8u8; 32]), &[]).unwrap();
        let mut tampered = cookie.clone().into_bytes();
        tampered[70] = if tampered[70] == b'A' { b'B' } else { b'A' };
        let cases = [
            String::new(),
            "x".into(),
            "a".repeat(COOKIE_VALUE_LEN),
            "!".repeat(COOKIE_VALUE_LEN),
            "a".repeat(5000),
            format!("{cookie}x"),
            cookie[1..].to_owned(),
            String::from_utf8(tampered).unwrap(),
            other.seal(
                Purpose::SessionCookie,
                &Ticket::generate(T0, T0 + 10).encode(),
            ),
            sealer().seal(Purpose::LoginState, &Ticket::generate(T0, T0 + 10).encode()),
            sealer().seal(Purpose::SessionCookie, &[0u8; TICKET_LEN - 1]),
        ];
        for case in &cases {
            assert!(
                f.sessions.resolve(case).await.unwrap().is_none(),
                "{case:?}"
            );
            assert!(down.resolve(case).await.unwrap().is_none(), "{case:?}");
            down.revoke(case).await.unwrap();
        }
    }

    /// Every one-character variant of `cookie` in the base64url alphabet.
    fn near_misses(cookie: &str) -> Vec<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..cookie.len())
            .flat_map(|i| {
                ALPHABET
                    .iter()
                    .filter(move |&&c| c != cookie.as_bytes()[i])
                    .map(move |&c| {
                        let mut bytes = cookie.as_bytes().to_vec();
                        bytes[i] = c;
                        String::from_utf8(bytes).unwrap()
                    })
            })
            .collect()
    }

    /// A flood of cookies that do not open (random ones and near-misses of
    /// the genuine ones, many times the caches' size) leaves every
    /// session in the cache: they are still answered without I/O. The
    /// refused values' cache stays within its bound.
    #[tokio::test]
    async fn refused_cookie_flood_never_evicts_sessions() {
        let clock = ManualClock::new(T0);
        let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let sessions = Sessions::new(sealer(), store, Arc::new(clock), LIFETIME)
            .with_cache(64, DEFAULT_CACHE_TTL);
        let mut cookies = Vec::new();
        for _ in 0..32 {
            cookies.push(sessions.create(identity(1), None, 0).await.unwrap().0);
        }
        let mut flood: Vec<String> = (0..20_000)
            .map(|_| {
                let mut raw = [0u8; COOKIE_VALUE_LEN * 3 / 4];
                OsRng.fill_bytes(&mut raw);
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)[..COOKIE_VALUE_LEN]
                    .to_owned()
            })
            .collect();
        flood.extend(
            cookies
                .iter()
                .flat_map(|c| near_misses(c).into_iter().step_by(7)),
        );
        for (i, bad) in flood.iter().enumerate() {
            assert_eq!(bad.len(), COOKIE_VALUE_LEN);
            // Each refused twice: the second time from the cache.
            for _ in 0..2 {
                assert!(matches!(
                    sessions.resolve_cached(bad),
                    CachedLookup::NoSession
                ));
            }
            if i % 1000 == 0 {
                sessions.refused.run_pending_tasks();
            }
        }
        sessions.cache.run_pending_tasks();
        sessions.tickets.run_pending_tasks();
        sessions.refused.run_pending_tasks();
        for cookie in &cookies {
            assert!(
                matches!(sessions.resolve_cached(cookie), CachedLookup::Found(_)),
                "a session left the cache"
            );
        }
        assert!(sessions.refused.entry_count() <= REFUSED_ENTRIES);
    }

    /// A refused value never refuses a genuine cookie: after every
    /// one-character variant of it was refused (and cached as refused), the
    /// cookie itself still opens, on a replica that never saw it too (its
    /// memo of opened cookies empty, so the refused cache is consulted).
    #[tokio::test]
    async fn refused_values_never_refuse_a_genuine_cookie() {
        let f = fixture();
        let (cookie, record) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let cold = cold_peer(&f);
        for bad in near_misses(&cookie) {
            assert!(f.sessions.resolve(&bad).await.unwrap().is_none());
            assert!(cold.resolve(&bad).await.unwrap().is_none());
        }
        cold.refused.run_pending_tasks();
        assert!(cold.refused.entry_count() > 0);
        assert!(!cold.refused.contains_key(&cookie));
        assert_eq!(
            f.sessions.resolve(&cookie).await.unwrap().unwrap().record,
            record
        );
        assert_eq!(cold.resolve(&cookie).await.unwrap().unwrap().record, record);
    }

    /// At the ticket's expiry the session is over, even while cached.
    #[tokio::test]
    async fn expired_ticket_is_no_session() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        f.clock.advance(LIFETIME.as_secs() as i64 - 1);
        assert!(f.sessions.resolve(&cookie).await.unwrap().is_some());
        f.clock.advance(1);
        assert!(f.sessions.resolve(&cookie).await.unwrap().is_none());
    }

    /// Sign-out: the cookie, replayed afterwards, is refused here and by a
    /// replica that never cached it; revoking twice is fine.
    #[tokio::test]
    async fn revoke_then_resolve_is_none() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let peer = cold_peer(&f);
        f.sessions.revoke(&cookie).await.unwrap();
        assert!(f.sessions.resolve(&cookie).await.unwrap().is_none());
        assert!(peer.resolve(&cookie).await.unwrap().is_none());
        assert!(f.store.is_empty());
        f.sessions.revoke(&cookie).await.unwrap();
    }

    /// `forget` drops the cached copy: the next resolve reads the store,
    /// so a deletion made elsewhere takes effect here.
    #[tokio::test]
    async fn forget_makes_store_changes_visible() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let id = f.sessions.resolve(&cookie).await.unwrap().unwrap().id;
        cold_peer(&f).revoke(&cookie).await.unwrap();
        assert!(
            f.sessions.resolve(&cookie).await.unwrap().is_some(),
            "still cached"
        );
        f.sessions.forget(&id);
        assert!(f.sessions.resolve(&cookie).await.unwrap().is_none());
    }

    /// Refresh: the first update wins, a second one from the same stale
    /// resolve loses, and everyone then sees the winner's record. The
    /// session's expiry cannot be moved by an update.
    #[tokio::test]
    async fn update_is_compare_and_swap() {
        let f = fixture();
        let (cookie, _) = f
            .sessions
            .create(identity(1), Some("rt-1".into()), T0)
            .await
            .unwrap();
        let first = f.sessions.resolve(&cookie).await.unwrap().unwrap();
        let peer = cold_peer(&f);
        let second = peer.resolve(&cookie).await.unwrap().unwrap();

        let mut next = (*first.record).clone();
        next.refresh_token = Some("rt-2".into());
        next.refresh_due_at = T0 + 300;
        next.expires_at = i64::MAX;
        let updated = f.sessions.update(&first, next).await.unwrap().unwrap();
        assert_eq!(updated.record.refresh_token.as_deref(), Some("rt-2"));

        let mut losing = (*second.record).clone();
        losing.refresh_token = Some("rt-3".into());
        assert!(peer.update(&second, losing).await.unwrap().is_none());
        let reloaded = peer.reload(&second).await.unwrap().unwrap();
        assert_eq!(reloaded.record.refresh_token.as_deref(), Some("rt-2"));

        for sessions in [&f.sessions, &peer, &cold_peer(&f)] {
            let now = sessions.resolve(&cookie).await.unwrap().unwrap();
            assert_eq!(now.record.refresh_token.as_deref(), Some("rt-2"));
            assert_eq!(now.record.refresh_due_at, T0 + 300);
            assert_eq!(now.record.expires_at, first.expires_at());
        }
        f.sessions.revoke(&cookie).await.unwrap();
        let mut late = (*first.record).clone();
        late.refresh_token = Some("rt-4".into());
        assert!(
            f.sessions.update(&first, late).await.unwrap().is_none(),
            "no revival"
        );
        assert!(f.sessions.reload(&first).await.unwrap().is_none());
    }

    /// The cache leaves the login's ID token in the store: sign-out still
    /// gets it, an update made from the cached record (a touch, a refresh
    /// lease) keeps it, a refresh's new one replaces it, and an update
    /// racing another replica's still loses.
    #[tokio::test]
    async fn the_id_token_stays_in_the_store() {
        let f = fixture();
        let origin = Origin::default();
        let (cookie, created) = f
            .sessions
            .create_from(identity(1), None, T0, Some("id-1".into()), origin)
            .await
            .unwrap();
        assert_eq!(created.id_token, None, "the cached copy leaves it out");
        let first = f.sessions.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(first.record.id_token, None);
        assert_eq!(
            f.sessions.id_token(&first).await.unwrap().as_deref(),
            Some("id-1")
        );

        let mut touched = (*first.record).clone();
        touched.last_seen_at = T0 + 1;
        let touched = f.sessions.update(&first, touched).await.unwrap().unwrap();
        let peer = cold_peer(&f);
        let cold = peer.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(cold.record.last_seen_at, T0 + 1);
        assert_eq!(peer.id_token(&cold).await.unwrap().as_deref(), Some("id-1"));

        let mut refreshed = (*touched.record).clone();
        refreshed.id_token = Some("id-2".into());
        let refreshed = f
            .sessions
            .update(&touched, refreshed)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            f.sessions.id_token(&refreshed).await.unwrap().as_deref(),
            Some("id-2")
        );

        // `cold` was read before the refresh: its touch must lose, not write
        // the old record back.
        let mut stale = (*cold.record).clone();
        stale.last_seen_at = T0 + 2;
        assert!(peer.update(&cold, stale).await.unwrap().is_none());
        let now = cold_peer(&f).resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(now.record.last_seen_at, T0 + 1);
        assert_eq!(
            f.sessions.id_token(&now).await.unwrap().as_deref(),
            Some("id-2")
        );

        f.sessions.revoke(&cookie).await.unwrap();
        assert_eq!(f.sessions.id_token(&now).await.unwrap(), None);
    }

    /// `end` revokes a resolved session here and in the store;
    /// `forget_all` makes every cached session read the store again.
    #[tokio::test]
    async fn end_and_forget_all() {
        let f = fixture();
        let (a, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let (b, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let resolved = f.sessions.resolve(&a).await.unwrap().unwrap();
        f.sessions.end(&resolved).await.unwrap();
        assert!(f.sessions.resolve(&a).await.unwrap().is_none());
        assert!(cold_peer(&f).resolve(&a).await.unwrap().is_none());

        let b_resolved = f.sessions.resolve(&b).await.unwrap().unwrap();
        cold_peer(&f).end(&b_resolved).await.unwrap();
        assert!(f.sessions.resolve(&b).await.unwrap().is_some(), "cached");
        f.sessions.forget_all();
        assert!(f.sessions.resolve(&b).await.unwrap().is_none());
    }

    /// A store that is down is an error for a valid cookie (fail closed),
    /// not "no session".
    #[tokio::test]
    async fn store_down_is_an_error() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let down = Sessions::new(
            sealer(),
            Arc::new(DownStore),
            Arc::new(f.clock.clone()),
            LIFETIME,
        );
        assert!(matches!(
            down.resolve(&cookie).await,
            Err(SessionError::Store(_))
        ));
        assert!(down.revoke(&cookie).await.is_err());
        assert!(down.ping().await.is_err());
        assert!(down.create(identity(0), None, 0).await.is_err());
        f.sessions.ping().await.unwrap();
    }

    /// Concurrent misses for one session share a single store load.
    #[tokio::test]
    async fn concurrent_misses_load_once() {
        let f = fixture();
        let (cookie, _) = f.sessions.create(identity(1), None, 0).await.unwrap();
        let gated = Arc::new(GatedStore {
            inner: f.store.clone(),
            loads: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        });
        let sessions = Arc::new(Sessions::new(
            sealer(),
            gated.clone(),
            Arc::new(f.clock.clone()),
            LIFETIME,
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (sessions, cookie) = (sessions.clone(), cookie.clone());
            tasks.spawn(async move { sessions.resolve(&cookie).await.unwrap().is_some() });
        }
        // Let every task reach the store or the shared load.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        gated.gate.add_permits(1);
        while let Some(found) = tasks.join_next().await {
            assert!(found.unwrap());
        }
        assert_eq!(gated.loads.load(Ordering::SeqCst), 1);
        assert!(sessions.resolve(&cookie).await.unwrap().is_some());
        assert_eq!(gated.loads.load(Ordering::SeqCst), 1, "then cached");
    }

    /// Debug output of the manager and of a resolved session holds no
    /// cookie, key or refresh token.
    #[tokio::test]
    async fn debug_has_no_secrets() {
        let f = fixture();
        let (cookie, _) = f
            .sessions
            .create(identity(1), Some("rt-very-secret".into()), 0)
            .await
            .unwrap();
        let resolved = f.sessions.resolve(&cookie).await.unwrap().unwrap();
        let debug = format!("{:?} {resolved:?} {:?}", f.sessions, resolved.record);
        assert!(!debug.contains("rt-very-secret"), "{debug}");
        assert!(!debug.contains(&cookie[..20]), "{debug}");
        assert!(!debug.contains("key"), "{debug}");
        assert!(debug.contains("alice@example.com"));
    }

    /// A store that is always down.
    struct DownStore;

    fn down<T>() -> StoreFuture<'static, T> {
        Box::pin(async {
            Err(StoreError::backend(std::io::Error::other(
                "connection refused",
            )))
        })
    }

    impl SessionStore for DownStore {
        fn load<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
            down()
        }
        fn save<'a>(&'a self, _: &'a str, _: &'a [u8], _: Duration) -> StoreFuture<'a, ()> {
            down()
        }
        fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, ()> {
            down()
        }
        fn compare_and_swap<'a>(
            &'a self,
            _: &'a str,
            _: Option<&'a [u8]>,
            _: &'a [u8],
            _: Duration,
        ) -> StoreFuture<'a, bool> {
            down()
        }
        fn ping(&self) -> StoreFuture<'_, ()> {
            down()
        }
        fn index_add<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a [u8],
            _: Duration,
        ) -> StoreFuture<'a, ()> {
            down()
        }
        fn index_list<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Vec<IndexEntry>> {
            down()
        }
        fn index_remove<'a>(&'a self, _: &'a str, _: &'a [String]) -> StoreFuture<'a, ()> {
            down()
        }
        fn index_users(&self) -> StoreFuture<'_, Vec<String>> {
            down()
        }
    }

    /// Counts loads and holds each until the test opens the gate.
    struct GatedStore {
        inner: Arc<MemoryStore>,
        loads: AtomicUsize,
        gate: Semaphore,
    }

    impl SessionStore for GatedStore {
        fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
            Box::pin(async move {
                self.loads.fetch_add(1, Ordering::SeqCst);
                drop(self.gate.acquire().await.unwrap());
                self.inner.load(key).await
            })
        }
        fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
            self.inner.save(key, value, ttl)
        }
        fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
            self.inner.delete(key)
        }
        fn compare_and_swap<'a>(
            &'a self,
            key: &'a str,
            expected: Option<&'a [u8]>,
            new: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, bool> {
            self.inner.compare_and_swap(key, expected, new, ttl)
        }
        fn ping(&self) -> StoreFuture<'_, ()> {
            self.inner.ping()
        }
        fn index_add<'a>(
            &'a self,
            user: &'a str,
            id: &'a str,
            meta: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, ()> {
            self.inner.index_add(user, id, meta, ttl)
        }
        fn index_list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<IndexEntry>> {
            self.inner.index_list(user)
        }
        fn index_remove<'a>(&'a self, user: &'a str, ids: &'a [String]) -> StoreFuture<'a, ()> {
            self.inner.index_remove(user, ids)
        }
        fn index_users(&self) -> StoreFuture<'_, Vec<String>> {
            self.inner.index_users()
        }
    }
}
