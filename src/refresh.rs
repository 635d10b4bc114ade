//! Re-validating sessions with the provider's refresh grant, off the common
//! path.
//!
//! A session is *due* once its `refresh_due_at` has passed and it holds a
//! refresh token; until then [`Refresher::check`] is one comparison, with
//! no I/O. When one is due:
//!
//! 1. **One refresher per session, on every replica.** Within this process
//!    the first request for the session takes it on; concurrent requests
//!    for that session keep using the current record meanwhile (it was
//!    valid a moment ago), so nobody queues behind the provider. Across
//!    replicas, the refresher first writes a *lease* into the store with a
//!    compare-and-swap — the same record with `refresh_due_at` pushed by
//!    [`RefreshPolicy::retry_after`]. Only the replica whose write lands
//!    calls the provider; the others see a record that is not due. Dex
//!    rotates the refresh token on every use and refuses the old one
//!    ("already claimed"), so two refreshes of one session must never
//!    race.
//! 2. **Provider accepts:** the new identity (Dex re-reads groups and email
//!    from LDAP) and the rotated token replace the lease, again by
//!    compare-and-swap, so the rotation is saved atomically. The next
//!    refresh is due after `refresh_interval` or when the new ID token
//!    expires, whichever is first.
//! 3. **Provider refuses** (4xx, Dex's 500 for a user gone from LDAP, a
//!    token that does not verify, another subject): the session ends here
//!    and in the store (and, with Redis, on every replica); the request
//!    that triggered the refresh gets a sign-in.
//! 4. **Provider unreachable** (connection refused, timeout, a 5xx other
//!    than Dex's 500 with an OAuth error body — `oidc` tells them apart):
//!    the session stays as it is and the lease doubles as the retry delay,
//!    so an outage logs nobody out; once [`RefreshPolicy::grace`]
//!    (`refresh_grace`, default 1h) has passed since the refresh fell due
//!    without one succeeding, the session ends (fail closed: a user removed
//!    from the directory during a long outage does not keep access).
//!
//! The refresh runs in its own task: a request cancelled mid-refresh (the
//! client went away) cannot lose a rotated token between the provider's
//! answer and the store write.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tracing::Instrument as _;

use crate::clock::SharedClock;
use crate::metrics::{Metrics, ProviderOperation, RefreshOutcome, StoreOperation};
use crate::oidc::{LoginOutcome, Oidc, OidcError};
use crate::session::{Resolved, SessionError, SessionRecord, Sessions};

/// Default of [`RefreshPolicy::retry_after`]: longer than one provider
/// request may take (10 s), so a lease never expires under a refresh in
/// progress.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The future a [`RefreshProvider`] returns.
pub type RefreshFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LoginOutcome, OidcError>> + Send + 'a>>;

/// The provider side of a refresh, behind a trait so the logic here is
/// tested without HTTP.
pub trait RefreshProvider: Send + Sync + 'static {
    /// Uses `refresh_token`: the new identity and the rotated token, or
    /// `OidcError::Unavailable` if the provider could not be asked, or any
    /// other error if it refused.
    fn refresh<'a>(&'a self, refresh_token: &'a str) -> RefreshFuture<'a>;
}

impl RefreshProvider for Oidc {
    fn refresh<'a>(&'a self, refresh_token: &'a str) -> RefreshFuture<'a> {
        Box::pin(Oidc::refresh(self, refresh_token))
    }
}

/// When sessions are re-validated.
#[derive(Clone, Copy, Debug)]
pub struct RefreshPolicy {
    /// `refresh_interval`: time between two refreshes of a session.
    pub interval: Duration,
    /// The lease, and the delay before trying again after the provider
    /// could not be reached.
    pub retry_after: Duration,
    /// How long past its due time a session may go unrefreshed because the
    /// provider is unreachable before it ends. `None`: until its absolute
    /// lifetime (`cookie_expire`) ends it.
    pub grace: Option<Duration>,
}

impl RefreshPolicy {
    /// `interval` with the default lease and no grace limit.
    pub fn new(interval: Duration) -> RefreshPolicy {
        RefreshPolicy {
            interval,
            retry_after: DEFAULT_RETRY_AFTER,
            grace: None,
        }
    }

    /// When a session refreshed (or logged in) at `now` is next due: after
    /// `refresh_interval`, or when the ID token expires if sooner; never
    /// sooner than the retry delay or the interval, whichever is shorter (a
    /// provider issuing very short tokens must not cause a refresh per
    /// request, but an operator's short interval is honoured).
    pub fn next_due(&self, now: i64, id_token_expires_at: i64) -> i64 {
        let by_interval = now.saturating_add(secs(self.interval));
        let floor = now.saturating_add(secs(self.retry_after.min(self.interval)));
        by_interval.min(id_token_expires_at).max(floor)
    }
}

/// Refreshes due sessions; one per service, shared by every front end.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Arc<Sessions>,
    provider: Arc<dyn RefreshProvider>,
    clock: SharedClock,
    policy: RefreshPolicy,
    /// Sessions this process is refreshing now.
    inflight: Mutex<HashSet<[u8; 16]>>,
    /// Where outcomes are counted, once set.
    metrics: OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Removes its id from the in-flight set when the refresh ends, however.
struct Flight {
    inner: Arc<Inner>,
    id: [u8; 16],
}

impl Drop for Flight {
    fn drop(&mut self) {
        lock(&self.inner.inflight).remove(&self.id);
    }
}

impl Refresher {
    pub fn new(
        sessions: Arc<Sessions>,
        provider: Arc<dyn RefreshProvider>,
        clock: SharedClock,
        policy: RefreshPolicy,
    ) -> Refresher {
        Refresher {
            inner: Arc::new(Inner {
                sessions,
                provider,
                clock,
                policy,
                inflight: Mutex::new(HashSet::new()),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Counts refresh outcomes (and store errors) in `metrics`.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Refresher {
        let _ = self.inner.metrics.set(metrics);
        self
    }

    /// Whether `record` needs its refresh now. Pure: the common path.
    pub fn is_due(record: &SessionRecord, now: i64) -> bool {
        record.refresh_token.is_some() && now >= record.refresh_due_at
    }

    /// Is `record`'s refresh due now? (Then [`Refresher::check`] has work.)
    pub fn is_due_now(&self, record: &SessionRecord) -> bool {
        Refresher::is_due(record, self.inner.clock.now())
    }

    /// The session to decide with: `resolved` itself unless it is due;
    /// otherwise refreshed (or the current record while another request or
    /// replica refreshes it). `Ok(None)`: the provider refused, the session
    /// has ended. `Err`: the store failed (fail closed).
    pub async fn check(&self, resolved: Resolved) -> Result<Option<Resolved>, SessionError> {
        let now = self.inner.clock.now();
        if !Refresher::is_due(&resolved.record, now) {
            return Ok(Some(resolved));
        }
        if !lock(&self.inner.inflight).insert(resolved.id) {
            return Ok(Some(resolved));
        }
        let flight = Flight {
            inner: Arc::clone(&self.inner),
            id: resolved.id,
        };
        let fallback = resolved.clone();
        // A child of the decision that found the session due (made here,
        // where its trace is current; the task runs elsewhere). Only the
        // trace exporter takes this target (`traces::TARGET`).
        let span = tracing::info_span!(target: "authgate::otel", "authgate.session.refresh");
        let task = tokio::spawn(
            async move {
                let result = flight.inner.refresh(resolved, now).await;
                drop(flight);
                result
            }
            .instrument(span),
        );
        match task.await {
            Ok(result) => result,
            Err(error) => {
                // A panic in the refresh: keep the session as it was.
                tracing::error!(%error, "session refresh task failed");
                Ok(Some(fallback))
            }
        }
    }
}

impl Inner {
    fn count(&self, outcome: RefreshOutcome) {
        if let Some(metrics) = self.metrics.get() {
            metrics.refreshed(outcome);
            match outcome {
                RefreshOutcome::StoreError => metrics.store_error(StoreOperation::Refresh),
                RefreshOutcome::Deferred | RefreshOutcome::Expired => {
                    metrics.provider_error(ProviderOperation::Refresh);
                }
                _ => {}
            }
        }
    }

    async fn refresh(
        &self,
        resolved: Resolved,
        now: i64,
    ) -> Result<Option<Resolved>, SessionError> {
        let result = self.refresh_once(resolved, now).await;
        if result.is_err() {
            self.count(RefreshOutcome::StoreError);
        }
        result
    }

    async fn refresh_once(
        &self,
        resolved: Resolved,
        now: i64,
    ) -> Result<Option<Resolved>, SessionError> {
        let sessions = &self.sessions;
        let retry_at = now.saturating_add(secs(self.policy.retry_after));
        let mut lease = (*resolved.record).clone();
        lease.refresh_due_at = retry_at;
        let Some(leased) = sessions.update(&resolved, lease).await? else {
            // Another replica leased or refreshed it first, or it ended.
            tracing::debug!("session refresh taken by another request");
            return sessions.reload(&resolved).await;
        };
        let current = Arc::clone(&leased.record);
        let Some(token) = current.refresh_token.as_deref() else {
            return Ok(Some(leased));
        };
        let user = current
            .identity
            .email
            .as_deref()
            .unwrap_or(&current.identity.subject);
        match self.provider.refresh(token).await {
            Ok(outcome) if outcome.identity.subject != current.identity.subject => {
                tracing::warn!(%user, "refresh returned another subject; ending the session");
                self.count(RefreshOutcome::SubjectChanged);
                sessions.end(&leased).await?;
                Ok(None)
            }
            Ok(outcome) => {
                let now = self.clock.now();
                let next = SessionRecord {
                    identity: outcome.identity,
                    refresh_token: outcome
                        .refresh_token
                        .or_else(|| current.refresh_token.clone()),
                    created_at: current.created_at,
                    expires_at: current.expires_at,
                    refresh_due_at: self.policy.next_due(now, outcome.id_token_expires_at),
                    refreshed_at: now,
                    last_seen_at: current.last_seen_at,
                    id_token: Some(outcome.id_token),
                    headers: Default::default(),
                };
                tracing::debug!(%user, groups = next.identity.groups.len(), "session refreshed");
                self.count(RefreshOutcome::Refreshed);
                match sessions.update(&leased, next).await? {
                    Some(refreshed) => Ok(Some(refreshed)),
                    // Our lease was overtaken (only if the refresh outlived
                    // it) or the user signed out meanwhile.
                    None => sessions.reload(&leased).await,
                }
            }
            Err(OidcError::Unavailable(error) | OidcError::Config(error)) => {
                let last = current.refreshed_at.max(current.created_at);
                let overdue = now.saturating_sub(last.saturating_add(secs(self.policy.interval)));
                match self.policy.grace {
                    Some(grace) if overdue > secs(grace) => {
                        tracing::warn!(%user, %error, "provider unreachable past the grace period; ending the session");
                        self.count(RefreshOutcome::Expired);
                        sessions.end(&leased).await?;
                        Ok(None)
                    }
                    _ => {
                        tracing::warn!(%user, %error, retry_in = ?self.policy.retry_after, "cannot refresh the session; keeping it and retrying later");
                        self.count(RefreshOutcome::Deferred);
                        Ok(Some(leased))
                    }
                }
            }
            Err(error) => {
                tracing::info!(%user, %error, "the provider refused the refresh; session ended");
                self.count(RefreshOutcome::Refused);
                sessions.end(&leased).await?;
                Ok(None)
            }
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The set is consistent after every operation: a poisoned lock is safe.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Secret;
    use crate::identity::Identity;
    use crate::session::{MemoryStore, Sealer};

    const T0: i64 = 1_700_000_000;
    const INTERVAL: Duration = Duration::from_secs(300);
    const LIFETIME: Duration = Duration::from_secs(14 * 3600);

    /// What the fake provider answers next.
    #[derive(Clone)]
    enum Answer {
        Groups(Vec<&'static str>),
        Rejected,
        Unavailable,
        OtherSubject,
    }

    /// A provider that rotates tokens like Dex: each token works once.
    struct FakeProvider {
        answer: Mutex<Answer>,
        calls: AtomicUsize,
        /// The token it will accept next.
        current: Mutex<String>,
        /// Holds each call until a permit is added (when set).
        gate: Option<Semaphore>,
    }

    impl FakeProvider {
        fn new(gated: bool) -> Arc<FakeProvider> {
            Arc::new(FakeProvider {
                answer: Mutex::new(Answer::Groups(vec!["devops"])),
                calls: AtomicUsize::new(0),
                current: Mutex::new("rt-0".into()),
                gate: gated.then(|| Semaphore::new(0)),
            })
        }
        fn set(&self, answer: Answer) {
            *self.answer.lock().unwrap() = answer;
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl RefreshProvider for FakeProvider {
        fn refresh<'a>(&'a self, token: &'a str) -> RefreshFuture<'a> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(gate) = &self.gate {
                    drop(gate.acquire().await.unwrap());
                }
                let answer = self.answer.lock().unwrap().clone();
                let groups = match answer {
                    Answer::Rejected => return Err(OidcError::Rejected("invalid_request".into())),
                    Answer::Unavailable => {
                        return Err(OidcError::Unavailable("connection refused".into()));
                    }
                    Answer::OtherSubject => vec![],
                    Answer::Groups(ref groups) => groups.clone(),
                };
                let mut current = self.current.lock().unwrap();
                if *current != token {
                    return Err(OidcError::Rejected("already claimed".into()));
                }
                *current = format!("rt-{n}");
                let mut identity = identity();
                identity.groups = groups.iter().map(|g| (*g).to_owned()).collect();
                if matches!(answer, Answer::OtherSubject) {
                    identity.subject = "someone-else".into();
                }
                Ok(LoginOutcome {
                    identity,
                    refresh_token: Some(current.clone()),
                    id_token_expires_at: T0 + 86_400,
                    id_token: format!("id-token-{n}"),
                })
            })
        }
    }

    fn identity() -> Identity {
        Identity {
            subject: "CgVhbGljZRIEbGRhcA".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["devops".into(), "admins".into()],
            ..Identity::default()
        }
    }

    struct Replica {
        sessions: Arc<Sessions>,
        refresher: Refresher,
    }

    struct World {
        clock: ManualClock,
        store: Arc<MemoryStore>,
        provider: Arc<FakeProvider>,
    }

    impl World {
        fn new(gated: bool) -> World {
            let clock = ManualClock::new(T0);
            World {
                store: Arc::new(MemoryStore::new(Arc::new(clock.clone()))),
                clock,
                provider: FakeProvider::new(gated),
            }
        }

        fn replica(&self, policy: RefreshPolicy) -> Replica {
            let sealer = Sealer::new(&Secret::new(vec![7u8; 32]), &[]).unwrap();
            let sessions = Arc::new(Sessions::new(
                sealer,
                self.store.clone(),
                Arc::new(self.clock.clone()),
                LIFETIME,
            ));
            let refresher = Refresher::new(
                sessions.clone(),
                self.provider.clone(),
                Arc::new(self.clock.clone()),
                policy,
            );
            Replica {
                sessions,
                refresher,
            }
        }
    }

    impl Replica {
        async fn login(&self, token: Option<&str>) -> String {
            let due = T0 + INTERVAL.as_secs() as i64;
            let (cookie, _) = self
                .sessions
                .create(identity(), token.map(str::to_owned), due)
                .await
                .unwrap();
            cookie
        }

        /// What a decision sees for `cookie`: `None` = must sign in.
        async fn check(&self, cookie: &str) -> Option<Arc<SessionRecord>> {
            let resolved = self.sessions.resolve(cookie).await.unwrap()?;
            self.refresher
                .check(resolved)
                .await
                .unwrap()
                .map(|r| r.record)
        }
    }

    /// Before the interval nothing is asked; after it, one refresh brings
    /// the provider's groups and the rotated token, and the next one is due
    /// a full interval later.
    #[tokio::test]
    async fn refreshes_only_when_due() {
        let w = World::new(false);
        let r = w.replica(RefreshPolicy::new(INTERVAL));
        let cookie = r.login(Some("rt-0")).await;
        w.provider.set(Answer::Groups(vec!["users"]));
        w.clock.advance(299);
        let before = r.check(&cookie).await.unwrap();
        assert_eq!(before.identity.groups, ["devops", "admins"]);
        assert_eq!(w.provider.calls(), 0);

        w.clock.advance(1);
        let after = r.check(&cookie).await.unwrap();
        assert_eq!(w.provider.calls(), 1);
        assert_eq!(after.identity.groups, ["users"]);
        assert_eq!(after.refresh_token.as_deref(), Some("rt-1"));
        assert_eq!(after.refresh_due_at, T0 + 600);
        assert_eq!(after.refreshed_at, T0 + 300);
        assert_eq!(after.created_at, T0, "a refresh is not a new login");

        // Stored, not only cached: a cold replica sees it, and the rotated
        // token is what the next refresh uses (the old one would be refused).
        let cold = w.replica(RefreshPolicy::new(INTERVAL));
        assert_eq!(
            cold.check(&cookie).await.unwrap().identity.groups,
            ["users"]
        );
        w.clock.advance(300);
        assert!(r.check(&cookie).await.is_some());
        assert_eq!(w.provider.calls(), 2);
        assert_eq!(
            r.check(&cookie).await.unwrap().refresh_token.as_deref(),
            Some("rt-2")
        );
    }

    /// A session without a refresh token is never refreshed.
    #[tokio::test]
    async fn no_refresh_token_no_refresh() {
        let w = World::new(false);
        let r = w.replica(RefreshPolicy::new(INTERVAL));
        let cookie = r.login(None).await;
        w.clock.advance(3600);
        assert!(r.check(&cookie).await.is_some());
        assert_eq!(w.provider.calls(), 0);
    }

    /// A refusal (user gone, token claimed) ends the session everywhere.
    #[tokio::test]
    async fn refusal_ends_the_session() {
        let w = World::new(false);
        let r = w.replica(RefreshPolicy::new(INTERVAL));
        let cookie = r.login(Some("rt-0")).await;
        w.provider.set(Answer::Rejected);
        w.clock.advance(300);
        assert!(r.check(&cookie).await.is_none());
        assert!(w.store.is_empty(), "deleted from the store");
        assert!(r.sessions.resolve(&cookie).await.unwrap().is_none());
    }

    /// A refresh that names another subject is a refusal.
    #[tokio::test]
    async fn another_subject_ends_the_session() {
        let w = World::new(false);
        let r = w.replica(RefreshPolicy::new(INTERVAL));
        let cookie = r.login(Some("rt-0")).await;
        w.provider.set(Answer::OtherSubject);
        w.clock.advance(300);
        assert!(r.check(&cookie).await.is_none());
        assert!(w.store.is_empty());
    }

    /// Provider unreachable: the session stays, the provider is asked again
    /// only after the retry delay, and a later success refreshes it.
    #[tokio::test]
    async fn outage_keeps_the_session() {
        let w = World::new(false);
        let r = w.replica(RefreshPolicy::new(INTERVAL));
        let cookie = r.login(Some("rt-0")).await;
        w.provider.set(Answer::Unavailable);
        w.clock.advance(300);
        let kept = r.check(&cookie).await.unwrap();
        assert_eq!(kept.identity.groups, ["devops", "admins"]);
        assert_eq!(kept.refresh_due_at, T0 + 300 + 30);
        w.clock.advance(29);
        assert!(r.check(&cookie).await.is_some());
        assert_eq!(w.provider.calls(), 1, "no retry before the delay");
        w.clock.advance(1);
        assert!(r.check(&cookie).await.is_some());
        assert_eq!(w.provider.calls(), 2);

        w.provider.set(Answer::Groups(vec!["ops"]));
        w.clock.advance(30);
        assert_eq!(r.check(&cookie).await.unwrap().identity.groups, ["ops"]);
    }

    /// With a grace period, an outage longer than it ends the session.
    #[tokio::test]
    async fn outage_past_grace_ends_the_session() {
        let w = World::new(false);
        let policy = RefreshPolicy {
            grace: Some(Duration::from_secs(60)),
            ..RefreshPolicy::new(INTERVAL)
        };
        let r = w.replica(policy);
        let cookie = r.login(Some("rt-0")).await;
        w.provider.set(Answer::Unavailable);
        w.clock.advance(330);
        assert!(
            r.check(&cookie).await.is_some(),
            "30s overdue: within grace"
        );
        w.clock.advance(31);
        assert!(r.check(&cookie).await.is_none(), "61s overdue: ended");
    }

    /// Twenty concurrent checks of a due session on one replica cause one
    /// provider call; those that did not refresh keep the current record.
    #[tokio::test]
    async fn concurrent_checks_refresh_once() {
        let w = World::new(true);
        let r = Arc::new(w.replica(RefreshPolicy::new(INTERVAL)));
        let cookie = r.login(Some("rt-0")).await;
        w.provider.set(Answer::Groups(vec!["users"]));
        w.clock.advance(300);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (r, cookie) = (r.clone(), cookie.clone());
            tasks.spawn(async move { r.check(&cookie).await.map(|s| s.identity.groups.clone()) });
        }
        while w.provider.calls() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        w.provider.gate.as_ref().unwrap().add_permits(100);
        let mut refreshed = 0;
        while let Some(groups) = tasks.join_next().await {
            let groups = groups.unwrap().expect("nobody is logged out");
            refreshed += usize::from(groups == ["users"]);
        }
        assert_eq!(w.provider.calls(), 1);
        assert!(refreshed >= 1);
        assert_eq!(r.check(&cookie).await.unwrap().identity.groups, ["users"]);
    }

    /// Two replicas with the session cached, both seeing it due: the store
    /// lease lets only one ask the provider (a second use of the token
    /// would be "already claimed" and end the session).
    #[tokio::test]
    async fn replicas_refresh_once() {
        let w = World::new(true);
        let a = Arc::new(w.replica(RefreshPolicy::new(INTERVAL)));
        let b = Arc::new(w.replica(RefreshPolicy::new(INTERVAL)));
        let cookie = a.login(Some("rt-0")).await;
        assert!(b.check(&cookie).await.is_some(), "cached on b too");
        w.clock.advance(300);
        let first = {
            let (a, cookie) = (a.clone(), cookie.clone());
            tokio::spawn(async move { a.check(&cookie).await })
        };
        while w.provider.calls() == 0 {
            tokio::task::yield_now().await;
        }
        // a holds the lease while the provider answers: b must not call.
        let on_b = b.check(&cookie).await.expect("b keeps the session");
        assert_eq!(on_b.refresh_due_at, T0 + 330, "b sees a's lease");
        w.provider.gate.as_ref().unwrap().add_permits(10);
        assert!(first.await.unwrap().is_some());
        assert_eq!(w.provider.calls(), 1);
        b.sessions.forget_all();
        assert_eq!(
            b.check(&cookie).await.unwrap().refresh_token.as_deref(),
            Some("rt-1")
        );
    }

    /// A session signed out while its refresh is in flight stays signed
    /// out: the refresh cannot write it back.
    #[tokio::test]
    async fn sign_out_during_refresh_wins() {
        let w = World::new(true);
        let r = Arc::new(w.replica(RefreshPolicy::new(INTERVAL)));
        let cookie = r.login(Some("rt-0")).await;
        w.clock.advance(300);
        let refreshing = {
            let (r, cookie) = (r.clone(), cookie.clone());
            tokio::spawn(async move { r.check(&cookie).await })
        };
        while w.provider.calls() == 0 {
            tokio::task::yield_now().await;
        }
        r.sessions.revoke(&cookie).await.unwrap();
        w.provider.gate.as_ref().unwrap().add_permits(10);
        assert!(refreshing.await.unwrap().is_none());
        assert!(w.store.is_empty());
        assert!(r.check(&cookie).await.is_none());
    }

    /// The next refresh comes at the interval or the ID token's expiry,
    /// whichever is first, but never sooner than the retry delay.
    #[test]
    fn next_due_takes_the_earlier() {
        let policy = RefreshPolicy::new(INTERVAL);
        assert_eq!(policy.next_due(T0, T0 + 86_400), T0 + 300);
        assert_eq!(policy.next_due(T0, T0 + 100), T0 + 100);
        assert_eq!(policy.next_due(T0, T0 + 5), T0 + 30);
    }
}
