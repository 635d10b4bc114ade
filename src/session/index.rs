//! The per-user session index: which sessions a user has, since when and
//! from where, so an operator (`authgate sessions`, the admin API) or the
//! user can list and end them.
//!
//! A record is sealed with a key only its cookie carries, so the store
//! cannot tell whose it is: each login also writes an index entry under
//! its user ([`user_key`]) holding only what is shown (never a key or a
//! token), written before the record so no session goes unlisted. Entries
//! live as long as their session's `cookie_expire`; one whose record is
//! gone (sign-out, idle timeout, a refused refresh) is never listed and is
//! dropped when met. The client address and user agent are shown, never
//! used for a decision.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::identity::Identity;

use super::store::{KEY_PREFIX, SessionStore, StoreError, parse_store_key};

/// Longest user agent kept: enough to tell devices apart.
const MAX_USER_AGENT: usize = 200;
/// An entry younger than this whose record is missing may be a login still
/// writing its record: it is hidden but not dropped (and revocation ends it).
const WRITE_GRACE: i64 = 60;

/// Where a login came from, as the proxy reported it.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// One session as operators and users see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id in hex: names it for revocation, opens nothing (the
    /// cookie also holds the per-session key and is sealed).
    pub id: String,
    /// The email, else the subject: what `--user` takes.
    pub user: String,
    /// The provider's `sub`.
    pub subject: String,
    /// Unix seconds of the login.
    pub started_at: i64,
    /// Unix seconds at which the session ends at the latest.
    pub expires_at: i64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// The provider's session id (`sid` of the ID token), which a
    /// back-channel logout may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Whose sessions to end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every session of a user (email or subject, as listed).
    User(String),
    /// One session, by its listed id.
    Session(String),
    /// Every session.
    All,
    /// The sessions a provider's back-channel logout names: its session id
    /// (`sid`) and/or user (`sub`), both matching when both are given.
    Provider {
        sub: Option<String>,
        sid: Option<String>,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::User(user) => write!(f, "user {user}"),
            Target::Session(id) => write!(f, "session {id}"),
            Target::All => f.write_str("all sessions"),
            Target::Provider { sub, sid } => write!(
                f,
                "provider logout (sub {}, sid {})",
                sub.as_deref().unwrap_or("-"),
                sid.as_deref().unwrap_or("-")
            ),
        }
    }
}

/// The index key of a user (email or subject): a digest, so any text fits
/// in a key; case-insensitive, as emails are in practice.
pub fn user_key(user: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"authgate user\0")
        .chain_update(user.trim().to_lowercase().as_bytes())
        .finalize();
    hex(&digest[..16])
}

/// The name a session is listed under: the email, else the subject.
pub fn user_of(identity: &Identity) -> &str {
    identity
        .email
        .as_deref()
        .filter(|email| !email.is_empty())
        .unwrap_or(&identity.subject)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The listed id of session `id`.
pub fn public_id(id: &[u8; 16]) -> String {
    hex(id)
}

impl SessionInfo {
    pub(crate) fn new(
        id: &[u8; 16],
        identity: &Identity,
        origin: Origin,
        now: i64,
        expires_at: i64,
    ) -> SessionInfo {
        SessionInfo {
            id: public_id(id),
            user: user_of(identity).to_owned(),
            subject: identity.subject.clone(),
            started_at: now,
            expires_at,
            client_addr: origin.client_addr,
            user_agent: origin
                .user_agent
                .map(|ua| ua.chars().take(MAX_USER_AGENT).collect()),
            sid: identity
                .claims
                .get("sid")
                .and_then(|sid| sid.as_str())
                .map(str::to_owned),
        }
    }

    fn store_key(&self) -> String {
        format!("{KEY_PREFIX}{}", self.id)
    }
}

/// The index over a store: add (at login), list, revoke.
#[derive(Clone)]
pub struct SessionIndex {
    store: Arc<dyn SessionStore>,
}

impl SessionIndex {
    pub fn new(store: Arc<dyn SessionStore>) -> SessionIndex {
        SessionIndex { store }
    }

    /// Records a new session, for `ttl` (its lifetime).
    pub(crate) async fn add(&self, info: &SessionInfo, ttl: Duration) -> Result<(), StoreError> {
        let meta = serde_json::to_vec(info).map_err(StoreError::backend)?;
        self.store
            .index_add(&user_key(&info.user), &info.id, &meta, ttl)
            .await
    }

    /// The live sessions of `user`, or of everybody, oldest first.
    pub async fn list(&self, user: Option<&str>, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        let mut live = Vec::new();
        for (user, entries) in self.entries(user).await? {
            let mut dead = Vec::new();
            for (id, info) in entries {
                let Some(info) = info else {
                    dead.push(id);
                    continue;
                };
                if self.store.load(&info.store_key()).await?.is_some() {
                    live.push(info);
                } else if now.saturating_sub(info.started_at) >= WRITE_GRACE {
                    dead.push(id);
                }
            }
            // Only housekeeping: a failure here hides nothing.
            if let Err(error) = self.store.index_remove(&user, &dead).await {
                tracing::debug!(%error, "cannot drop ended sessions from the index");
            }
        }
        live.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(live)
    }

    /// Ends the sessions of `target`: deletes each record (which, with a
    /// shared store, tells every replica to drop its cached copy) and its
    /// index entry. Returns the sessions that were live; every failure is
    /// an error, so a revocation never half-succeeds silently.
    pub async fn revoke(&self, target: &Target, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        let live = match target {
            Target::User(user) => self.list(Some(user), now).await?,
            Target::All => self.list(None, now).await?,
            Target::Provider { sub, sid } => {
                if sub.is_none() && sid.is_none() {
                    return Ok(Vec::new());
                }
                let matches = |info: &SessionInfo| {
                    sub.as_ref().is_none_or(|sub| *sub == info.subject)
                        && sid
                            .as_ref()
                            .is_none_or(|sid| Some(sid) == info.sid.as_ref())
                };
                self.list(None, now)
                    .await?
                    .into_iter()
                    .filter(matches)
                    .collect()
            }
            Target::Session(id) => {
                let Some(key) = session_key(id) else {
                    return Ok(Vec::new());
                };
                // Ended first, by its key: finding its index entry reads
                // every user's index, which under load took seconds.
                // Even an unlisted session (one started before the index
                // existed) ends.
                let was_live = self.store.load(&key).await?.is_some();
                self.store.delete(&key).await?;
                let mut listed = Vec::new();
                for (user, entries) in self.entries(None).await? {
                    for info in entries.into_iter().filter_map(|(_, info)| info) {
                        if info.id == *id {
                            self.store
                                .index_remove(&user, std::slice::from_ref(&info.id))
                                .await?;
                            listed.push(info);
                        }
                    }
                }
                return Ok(if was_live { listed } else { Vec::new() });
            }
        };
        // Entries whose record is missing may be logins writing theirs now:
        // their keys are deleted too.
        let mut targets = live.clone();
        if let Target::User(_) | Target::All = target {
            for (_, entries) in self.entries(target_user(target)).await? {
                for info in entries.into_iter().filter_map(|(_, info)| info) {
                    if !targets.iter().any(|t| t.id == info.id) {
                        targets.push(info);
                    }
                }
            }
        }
        for info in &targets {
            self.store.delete(&info.store_key()).await?;
            self.store
                .index_remove(&user_key(&info.user), std::slice::from_ref(&info.id))
                .await?;
        }
        Ok(live)
    }

    /// The index entries of `user` (or of every user), per user key, each
    /// with its metadata (`None` if it does not decode).
    async fn entries(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(String, Vec<(String, Option<SessionInfo>)>)>, StoreError> {
        let users = match user {
            Some(user) => vec![user_key(user)],
            None => self.store.index_users().await?,
        };
        let mut all = Vec::with_capacity(users.len());
        for user in users {
            let entries = self
                .store
                .index_list(&user)
                .await?
                .into_iter()
                .map(|(id, meta)| {
                    let info = serde_json::from_slice::<SessionInfo>(&meta)
                        .ok()
                        .filter(|info| info.id == id);
                    (id, info)
                })
                .collect();
            all.push((user, entries));
        }
        Ok(all)
    }
}

/// The store key of a listed session id, if `id` is one (32 lowercase hex
/// digits, as listed).
pub fn session_key(id: &str) -> Option<String> {
    let key = format!("{KEY_PREFIX}{id}");
    parse_store_key(&key).map(|_| key)
}

fn target_user(target: &Target) -> Option<&str> {
    match target {
        Target::User(user) => Some(user),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::{Clock as _, ManualClock};
    use crate::config::Secret;
    use crate::session::memory::MemoryStore;
    use crate::session::store::{IndexEntry, StoreFuture};
    use crate::session::{Sealer, Sessions};

    const LIFETIME: Duration = Duration::from_secs(3600);
    const T0: i64 = 1_700_000_000;

    fn person(email: &str) -> Identity {
        Identity {
            subject: format!("sub-{email}"),
            email: Some(email.into()),
            ..Identity::default()
        }
    }

    fn origin(addr: &str, ua: &str) -> Origin {
        Origin {
            client_addr: Some(addr.into()),
            user_agent: Some(ua.into()),
        }
    }

    fn sessions(store: Arc<dyn SessionStore>, clock: &ManualClock) -> Sessions {
        let sealer = Sealer::new(&Secret::new(vec![9u8; 32]), &[]).unwrap();
        Sessions::new(sealer, store, Arc::new(clock.clone()), LIFETIME)
    }

    async fn login(s: &Sessions, email: &str, o: Origin) -> String {
        s.create_from(person(email), None, i64::MAX, None, o)
            .await
            .unwrap()
            .0
    }

    /// A user's sessions are listed with when and where they started, under
    /// the email in any case; revoking the user ends exactly those, cached
    /// or not.
    #[tokio::test]
    async fn list_and_revoke_a_user() {
        let clock = ManualClock::new(T0);
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let a = sessions(store.clone(), &clock);
        let laptop = login(&a, "alice@example.com", origin("203.0.113.7", "Firefox")).await;
        clock.advance(5);
        let phone = login(&a, "alice@example.com", origin("198.51.100.2", "Safari")).await;
        let bob = login(&a, "bob@example.com", Origin::default()).await;
        assert!(a.resolve(&laptop).await.unwrap().is_some(), "cached");

        let listed = a
            .index()
            .list(Some("Alice@Example.COM"), clock.now())
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].started_at, T0);
        assert_eq!(listed[0].client_addr.as_deref(), Some("203.0.113.7"));
        assert_eq!(listed[0].user_agent.as_deref(), Some("Firefox"));
        assert_eq!(listed[1].user_agent.as_deref(), Some("Safari"));
        assert_eq!(listed[0].expires_at, T0 + 3600);
        assert_eq!(a.index().list(None, clock.now()).await.unwrap().len(), 3);
        // The listed id is not a cookie.
        assert!(a.resolve(&listed[0].id).await.unwrap().is_none());

        let ended = a
            .revoke_where(&Target::User("alice@example.com".into()))
            .await
            .unwrap();
        assert_eq!(ended, listed);
        assert!(a.resolve(&laptop).await.unwrap().is_none());
        assert!(a.resolve(&phone).await.unwrap().is_none());
        assert!(a.resolve(&bob).await.unwrap().is_some());
        let left = a.index().list(None, clock.now()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].user, "bob@example.com");
    }

    /// One session by its listed id; an id that is no session ends nothing.
    #[tokio::test]
    async fn revoke_one_session() {
        let clock = ManualClock::new(T0);
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let s = sessions(store, &clock);
        let one = login(&s, "alice@example.com", Origin::default()).await;
        let two = login(&s, "alice@example.com", Origin::default()).await;
        let listed = s.index().list(None, clock.now()).await.unwrap();
        let id = listed
            .iter()
            .find(|i| i.started_at == T0)
            .unwrap()
            .id
            .clone();
        let first = s.resolve(&one).await.unwrap().unwrap();
        let target = if public_id(&first.id) == id {
            &one
        } else {
            &two
        };
        let other = if target == &one { &two } else { &one };
        let ended = s.revoke_where(&Target::Session(id.clone())).await.unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].id, id);
        assert!(s.resolve(target).await.unwrap().is_none());
        assert!(s.resolve(other).await.unwrap().is_some());
        let left = s.index().list(None, clock.now()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_ne!(left[0].id, id);
        for bad in ["", "zz", &"0".repeat(32)] {
            assert!(
                s.revoke_where(&Target::Session(bad.into()))
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert!(s.resolve(other).await.unwrap().is_some());
    }

    /// Sign-out, the idle timeout and expiry end sessions: none of them is
    /// listed afterwards, and the index forgets them.
    #[tokio::test]
    async fn ended_sessions_are_not_listed() {
        let clock = ManualClock::new(T0);
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let s = sessions(store.clone(), &clock).with_idle_timeout(Some(Duration::from_secs(600)));
        let signed_out = login(&s, "a@example.com", Origin::default()).await;
        let idle = login(&s, "b@example.com", Origin::default()).await;
        let _expiring = login(&s, "c@example.com", Origin::default()).await;
        s.revoke(&signed_out).await.unwrap();
        let listed = s.index().list(None, clock.now()).await.unwrap();
        assert_eq!(listed.len(), 2, "a login just made is kept in the index");
        clock.advance(1200);
        assert!(s.resolve(&idle).await.unwrap().is_none());
        let users: Vec<_> = s
            .index()
            .list(None, clock.now())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.user)
            .collect();
        assert_eq!(users, ["c@example.com"]);
        assert_eq!(
            store.index_list(&user_key("a@example.com")).await.unwrap(),
            []
        );
        clock.advance(3600);
        assert!(s.index().list(None, clock.now()).await.unwrap().is_empty());
        assert!(store.index_users().await.unwrap().is_empty());
    }

    /// A store that reads but cannot delete: revocation reports the
    /// failure instead of claiming success.
    struct NoDelete(MemoryStore);

    impl SessionStore for NoDelete {
        fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
            self.0.load(key)
        }
        fn save<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
            self.0.save(key, value, ttl)
        }
        fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, ()> {
            Box::pin(async { Err(StoreError::backend(std::io::Error::other("read-only"))) })
        }
        fn compare_and_swap<'a>(
            &'a self,
            key: &'a str,
            expected: Option<&'a [u8]>,
            new: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, bool> {
            self.0.compare_and_swap(key, expected, new, ttl)
        }
        fn ping(&self) -> StoreFuture<'_, ()> {
            self.0.ping()
        }
        fn index_add<'a>(
            &'a self,
            user: &'a str,
            id: &'a str,
            meta: &'a [u8],
            ttl: Duration,
        ) -> StoreFuture<'a, ()> {
            self.0.index_add(user, id, meta, ttl)
        }
        fn index_list<'a>(&'a self, user: &'a str) -> StoreFuture<'a, Vec<IndexEntry>> {
            self.0.index_list(user)
        }
        fn index_remove<'a>(&'a self, user: &'a str, ids: &'a [String]) -> StoreFuture<'a, ()> {
            self.0.index_remove(user, ids)
        }
        fn index_users(&self) -> StoreFuture<'_, Vec<String>> {
            self.0.index_users()
        }
    }

    #[tokio::test]
    async fn a_store_that_cannot_delete_refuses_the_revocation() {
        let clock = ManualClock::new(T0);
        let store: Arc<dyn SessionStore> =
            Arc::new(NoDelete(MemoryStore::new(Arc::new(clock.clone()))));
        let s = sessions(store, &clock);
        let cookie = login(&s, "a@example.com", Origin::default()).await;
        for target in [Target::User("a@example.com".into()), Target::All] {
            assert!(s.revoke_where(&target).await.is_err(), "{target}");
        }
        assert!(s.resolve(&cookie).await.unwrap().is_some());
    }
}
