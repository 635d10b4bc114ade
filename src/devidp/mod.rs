//! The development OpenID Connect provider behind `authgate demo`, and the
//! provider fixture of the integration tests.
//!
//! It behaves like Dex v2.45 with static passwords, as far as a relying party
//! can tell: the same endpoints under the issuer's path, the same discovery
//! document, scope rules, error codes, ID-token claims (`groups` omitted when
//! empty, the nonce copied into refreshed tokens), single-use codes, PKCE,
//! rotating refresh tokens and RS256 keys that stay published after a
//! rotation. The login is a plain HTML form with no external assets.
//!
//! Tests can make it misbehave (forged signatures, altered claims, a failing
//! token endpoint, group changes, removed users) through the methods marked
//! "for tests"; they are harmless in the demo, which never calls them.
//!
//! # Layout
//! - `keys`: RSA keys, the JWKS and JWS signing (including the forgeries).
//! - `store`: auth requests, codes, refresh tokens and the claims they yield.
//! - `handlers`: the axum routes.

mod handlers;
mod keys;
mod store;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::clock::SharedClock;
pub use keys::{KID_PATH_TRAVERSAL, KID_SQL_INJECTION, SQL_INJECTED_KEY, SigningMode};
use keys::{KeyPair, KeyRing};
use store::Store;

/// Dex's default `expiry.idTokens`.
pub const DEFAULT_ID_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The connector id Dex gives its static-password users.
pub const LOCAL_CONNECTOR_ID: &str = "local";

/// Applied to ID-token claims just before signing, so tests can produce
/// tokens with a wrong `iss`, `aud`, `nonce`, `exp`…
pub type ClaimsHook = Arc<dyn Fn(&mut Map<String, Value>) + Send + Sync>;

/// A user of the static password "connector".
#[derive(Clone, PartialEq, Eq)]
pub struct DevUser {
    /// The login name typed into the form, e.g. `alice@example.com`.
    pub username: String,
    pub password: String,
    /// The `sub` claim; Dex derives it with [`dex_subject`].
    pub subject: String,
    pub email: String,
    /// The `name` claim (scope `profile`).
    pub name: String,
    /// The `preferred_username` claim (scope `profile`).
    pub preferred_username: String,
    /// The `groups` claim (scope `groups`); omitted from tokens when empty.
    pub groups: Vec<String>,
}

impl std::fmt::Debug for DevUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("subject", &self.subject)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("preferred_username", &self.preferred_username)
            .field("groups", &self.groups)
            .finish()
    }
}

impl DevUser {
    /// The demo's static users, with their user name as password (see
    /// [`DevUser::demo_hint`]): alice (groups `devops`, `admins`), bob
    /// (group `users`) and carol (no group, so no `groups` claim at all).
    pub fn demo_users(email_domain: &str) -> Vec<DevUser> {
        let user = |id: &str, name: &str, groups: &[&str]| {
            let email = format!("{id}@{email_domain}");
            DevUser {
                username: email.clone(),
                password: id.to_owned(),
                subject: dex_subject(id, LOCAL_CONNECTOR_ID),
                email,
                name: name.to_owned(),
                preferred_username: id.to_owned(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            }
        };
        vec![
            user("alice", "Alice Liddell", &["devops", "admins"]),
            user("bob", "Bob Builder", &["users"]),
            user("carol", "Carol Danvers", &[]),
        ]
    }

    /// A banner line telling demo visitors how to sign in. It shows the
    /// passwords: only for the demo's throw-away users.
    pub fn demo_hint(users: &[DevUser]) -> String {
        let entries: Vec<String> = users
            .iter()
            .map(|u| {
                let groups = if u.groups.is_empty() {
                    "no groups".to_owned()
                } else {
                    format!("groups: {}", u.groups.join(", "))
                };
                format!("{} / {} ({groups})", u.username, u.password)
            })
            .collect();
        format!("Demo users (login / password): {}", entries.join("; "))
    }
}

/// A registered OAuth2 client. An empty secret makes it a public client.
#[derive(Clone, PartialEq, Eq)]
pub struct DevClient {
    pub id: String,
    pub secret: String,
    /// Compared exactly with the `redirect_uri` of `/auth`, as Dex does.
    pub redirect_uris: Vec<String>,
}

impl std::fmt::Debug for DevClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevClient")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// What the provider serves and to whom.
#[derive(Clone, Debug)]
pub struct DevIdpConfig {
    /// Exact issuer, e.g. `http://127.0.0.1:5556/dex`; the router serves
    /// every endpoint under its path, and the `iss` claim is this string.
    pub issuer: String,
    pub clients: Vec<DevClient>,
    pub users: Vec<DevUser>,
    /// ID- and access-token lifetime; Dex's default is 24h.
    pub id_token_ttl: Duration,
    /// Shown above the login form (the demo's hint).
    pub banner: Option<String>,
}

/// Why the provider could not be built or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error("invalid issuer {issuer:?}: {reason}")]
    InvalidIssuer { issuer: String, reason: String },
    #[error("client {0:?} is registered twice")]
    DuplicateClient(String),
    #[error("user {0:?} is registered twice")]
    DuplicateUser(String),
    #[error("RSA key generation failed: {0}")]
    KeyGeneration(String),
    #[error("token signing failed: {0}")]
    Signing(String),
}

/// The provider. Cheap to clone: every clone shares one state.
#[derive(Clone)]
pub struct DevIdp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIdp")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// The configured issuer, verbatim.
    issuer: String,
    /// The issuer without a trailing `/`: endpoint URLs are built from it.
    base: String,
    /// The issuer's path without a trailing `/`; empty at the root.
    path: String,
    clients: Vec<DevClient>,
    id_token_ttl: Duration,
    banner: Option<String>,
    clock: SharedClock,
    store: Mutex<Store>,
    keys: RwLock<KeyRing>,
    claims_hook: RwLock<Option<ClaimsHook>>,
    signing_mode: RwLock<SigningMode>,
    /// 0 = answer normally.
    token_failure: AtomicU16,
    token_requests: AtomicUsize,
    /// Fetches of the `/attacker/…` key URLs (for tests).
    attacker_key_fetches: AtomicUsize,
}

impl DevIdp {
    /// Builds the provider with a freshly generated RSA-2048 signing key.
    pub fn new(config: DevIdpConfig, clock: SharedClock) -> Result<DevIdp, DevIdpError> {
        let key = KeyPair::generate()?;
        DevIdp::build(config, clock, key)
    }

    /// Like [`DevIdp::new`] but signs with `key`, so test suites can generate
    /// one key and share it (key generation is slow in debug builds).
    pub fn with_signing_key(
        config: DevIdpConfig,
        clock: SharedClock,
        key: rsa::RsaPrivateKey,
    ) -> Result<DevIdp, DevIdpError> {
        DevIdp::build(config, clock, KeyPair::from_private(key))
    }

    fn build(
        config: DevIdpConfig,
        clock: SharedClock,
        key: KeyPair,
    ) -> Result<DevIdp, DevIdpError> {
        let (base, path) = split_issuer(&config.issuer)?;
        for (i, client) in config.clients.iter().enumerate() {
            if config.clients[..i].iter().any(|c| c.id == client.id) {
                return Err(DevIdpError::DuplicateClient(client.id.clone()));
            }
        }
        for (i, user) in config.users.iter().enumerate() {
            if config.users[..i]
                .iter()
                .any(|u| u.username == user.username)
            {
                return Err(DevIdpError::DuplicateUser(user.username.clone()));
            }
        }
        let inner = Inner {
            issuer: config.issuer,
            base,
            path,
            clients: config.clients,
            id_token_ttl: config.id_token_ttl,
            banner: config.banner,
            clock,
            store: Mutex::new(Store::new(config.users)),
            keys: RwLock::new(KeyRing::new(key)),
            claims_hook: RwLock::new(None),
            signing_mode: RwLock::new(SigningMode::Normal),
            token_failure: AtomicU16::new(0),
            token_requests: AtomicUsize::new(0),
            attacker_key_fetches: AtomicUsize::new(0),
        };
        Ok(DevIdp {
            inner: Arc::new(inner),
        })
    }

    /// Every endpoint, under the issuer's path.
    pub fn router(&self) -> axum::Router {
        handlers::router(self.clone(), &self.inner.path)
    }

    /// Serves [`DevIdp::router`] on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// The issuer, exactly as configured.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// For tests: a new signing key; the old one stays in the JWKS, as Dex
    /// keeps retired keys published until the tokens they signed expire.
    pub fn rotate_keys(&self) {
        self.rotate(true);
    }

    /// For tests: a new signing key, and the old one leaves the JWKS.
    pub fn rotate_keys_dropping_old(&self) {
        self.rotate(false);
    }

    fn rotate(&self, keep_old: bool) {
        // Generate outside the lock: it takes a while.
        match KeyPair::generate() {
            Ok(next) => write(&self.inner.keys).rotate(next, keep_old),
            Err(e) => tracing::error!(error = %e, "devidp: key rotation failed"),
        }
    }

    /// For tests: edits the ID-token claims before signing (`None` = off).
    pub fn set_claims_hook(&self, hook: Option<ClaimsHook>) {
        *write(&self.inner.claims_hook) = hook;
    }

    /// For tests: how ID tokens are signed from now on. Access tokens stay
    /// normally signed so `/userinfo` keeps working.
    pub fn set_signing_mode(&self, mode: SigningMode) {
        // Generated once, outside the lock: it takes a while.
        let needs_foreign = matches!(
            mode,
            SigningMode::ForeignKey | SigningMode::AdvertisedForeignKey
        );
        if needs_foreign && !read(&self.inner.keys).has_foreign() {
            match KeyPair::generate() {
                Ok(key) => write(&self.inner.keys).set_foreign(key),
                Err(e) => tracing::error!(error = %e, "devidp: foreign key generation failed"),
            }
        }
        *write(&self.inner.signing_mode) = mode;
    }

    /// For tests of API clients: the `(access_token, id_token)` pair Dex's
    /// token endpoint would give `client_id` for `username` with every
    /// scope, the ID token signed per [`DevIdp::set_signing_mode`] and the
    /// claims hook. `None` for an unknown user.
    pub fn tokens_for(
        &self,
        username: &str,
        client_id: &str,
    ) -> Result<Option<(String, String)>, DevIdpError> {
        let Some(user) = self
            .store()
            .users
            .iter()
            .find(|u| u.username == username)
            .cloned()
        else {
            return Ok(None);
        };
        let grant = store::Grant {
            user,
            scopes: ["openid", "email", "profile", "groups"]
                .map(String::from)
                .to_vec(),
            nonce: None,
            code: None,
            refresh_token: None,
        };
        let body = handlers::issue_tokens(self, client_id, &grant, self.now())?;
        let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
        Ok(Some((text("access_token"), text("id_token"))))
    }

    /// For tests: how often the key URLs advertised by
    /// [`SigningMode::AdvertisedForeignKey`] tokens were fetched.
    pub fn attacker_key_fetches(&self) -> usize {
        self.inner.attacker_key_fetches.load(Ordering::SeqCst)
    }

    /// For tests: answer every `/token` call with `status` and a JSON OAuth2
    /// error (`None` = behave). Statuses outside 400..=599 are ignored.
    pub fn fail_token_endpoint(&self, status: Option<u16>) {
        let status = status.filter(|s| (400..=599).contains(s)).unwrap_or(0);
        self.inner.token_failure.store(status, Ordering::SeqCst);
    }

    /// For tests: replaces a user's groups. Like Dex's LDAP connector, the
    /// change shows in tokens from the next login or refresh.
    pub fn set_user_groups(&self, username: &str, groups: Vec<String>) {
        if let Some(user) = self
            .store()
            .users
            .iter_mut()
            .find(|u| u.username == username)
        {
            user.groups = groups;
        }
    }

    /// For tests: deletes a user. Their refresh then fails with HTTP 500
    /// `{"error":"invalid_request"}`, as Dex answers a connector failure.
    pub fn remove_user(&self, username: &str) {
        self.store().users.retain(|u| u.username != username);
    }

    /// For tests: how many requests reached `/token`.
    pub fn token_requests(&self) -> usize {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Splits the issuer into the base for endpoint URLs and the route prefix.
fn split_issuer(issuer: &str) -> Result<(String, String), DevIdpError> {
    let invalid = |reason: &str| DevIdpError::InvalidIssuer {
        issuer: issuer.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(issuer).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    let path = url.path().trim_end_matches('/');
    if path.contains(['{', '}', '*']) {
        return Err(invalid("path must not contain route syntax"));
    }
    Ok((issuer.trim_end_matches('/').to_owned(), path.to_owned()))
}

/// Dex's `sub`: base64url (no padding) of the protobuf message
/// `IDTokenSubject { user_id = 1; conn_id = 2; }`.
pub fn dex_subject(user_id: &str, connector_id: &str) -> String {
    let mut buf = Vec::with_capacity(user_id.len() + connector_id.len() + 8);
    for (tag, field) in [(0x0a_u8, user_id), (0x12, connector_id)] {
        buf.push(tag);
        let mut len = field.len();
        // Protobuf varint length prefix.
        while len >= 0x80 {
            buf.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        buf.push(len as u8);
        buf.extend_from_slice(field.as_bytes());
    }
    URL_SAFE_NO_PAD.encode(buf)
}
