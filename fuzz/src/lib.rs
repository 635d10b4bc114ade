//! The fixture every fuzz target shares: one authgate [`App`] built from a
//! fixed configuration (in-memory sessions, no provider traffic), one signed-in
//! session, and a single-threaded tokio runtime to drive the async paths.
//!
//! The targets call the same functions the front ends call, so a crash or a
//! broken invariant here is one a hostile client could reach.

use std::sync::{Arc, LazyLock};

use authgate::app::App;
use authgate::clock::{SharedClock, SystemClock};
use authgate::config;
use authgate::identity::Identity;
use authgate::session::MemoryStore;

/// Stands for the live session cookie in seeds (a real cookie depends on
/// the process: the store is in memory and the nonce is random).
pub const SESSION_PLACEHOLDER: &str = "@SESSION@";

/// Base64 of 32 bytes `0x01`: the cookie secret of the fixture.
const COOKIE_SECRET: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// The fixture's configuration. Routes: one public exact path, a group
/// route alice is in, one nobody is in, and a wildcard prefix route.
pub fn config_yaml() -> String {
    format!(
        "authenticate_service_url: https://auth.example.com\n\
         idp_provider_url: https://dex.example.com/dex\n\
         idp_client_id: fuzz\n\
         idp_client_secret: fuzz-client-secret\n\
         cookie_secret: {COOKIE_SECRET}\n\
         cookie_name: _authgate\n\
         cookie_domain: example.com\n\
         session_store: memory\n\
         trusted_proxies: [127.0.0.1, \"::1\"]\n\
         policy:\n\
         \x20 - from: https://hello.example.com\n\
         \x20   path: /healthz\n\
         \x20   allow_public_unauthenticated_access: true\n\
         \x20 - from: https://hello.example.com\n\
         \x20   allowed_groups: [devops]\n\
         \x20 - from: https://admin.example.com\n\
         \x20   allowed_groups: [nobody]\n\
         \x20 - from: https://*.apps.example.com\n\
         \x20   prefix: /api\n\
         \x20   allow_any_authenticated_user: true\n\
         \x20 - from: https://other.test:8443\n\
         \x20   allowed_users: [alice@example.com]\n"
    )
}

/// The shared state of a fuzz process.
pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub app: Arc<App>,
    /// A valid session cookie value for alice (group `devops`).
    pub session_cookie: String,
}

/// Built on first use, once per process.
pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(build);

#[allow(clippy::expect_used)] // a fixture that cannot be built is a harness bug
fn build() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let loaded = config::parse_str("fuzz.yaml", &config_yaml(), &|_| None)
        .expect("the fixture configuration is valid");
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let app = runtime.block_on(async {
        App::with_store(loaded.config, store, clock).expect("the fixture app builds")
    });
    let (session_cookie, _) = runtime
        .block_on(app.sessions().create(alice(), None, i64::MAX))
        .expect("the fixture session is created");
    Fixture {
        runtime,
        app,
        session_cookie,
    }
}

impl Fixture {
    /// `text` with every [`SESSION_PLACEHOLDER`] replaced by the live cookie.
    pub fn with_session(&self, text: &str) -> String {
        text.replace(SESSION_PLACEHOLDER, &self.session_cookie)
    }
}

/// The identity of the fixture's session, for invariants that ask "could
/// the signed-in user be allowed here?".
pub fn alice() -> Identity {
    Identity {
        subject: "alice-subject".to_owned(),
        email: Some("alice@example.com".to_owned()),
        email_verified: Some(true),
        preferred_username: Some("alice".to_owned()),
        groups: vec!["devops".to_owned()],
        ..Identity::default()
    }
}

/// Whether the policy lets `identity` (or nobody, if `None`) through to
/// `target`: what any 200 answer must agree with.
pub fn policy_allows(target: &authgate::policy::Target<'_>, identity: Option<&Identity>) -> bool {
    matches!(
        FIXTURE
            .app
            .policy()
            .evaluate(target, &authgate::policy::Facts::who(identity)),
        authgate::policy::Verdict::Allow { .. } | authgate::policy::Verdict::Public { .. }
    )
}
