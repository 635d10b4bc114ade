//! The service's state: everything a request handler needs, assembled once
//! from a validated configuration, immutable and shared by `Arc`.
//!
//! Front ends ask it for decisions ([`App::decide_now`], [`App::decide`]):
//! the decision core decides under the policy in force, and the answer's
//! count and log line are recorded here, on the way out.

use std::net::IpAddr;
use std::sync::Arc;

use url::Url;

use crate::assertion::{AssertionError, AssertionSigner};
use crate::bearer::BearerVerifier;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::decision::{Decider, Decision, Request};
use crate::handoff::Handoffs;
use crate::in_force::PolicyInForce;
use crate::metrics::Metrics;
use crate::oidc::{Oidc, OidcError};
use crate::policy::Policy;
use crate::redirect::RedirectRules;
use crate::refresh::{RefreshPolicy, Refresher};
use crate::session::{Sealer, SessionCookie, SessionStore, Sessions, open_store};
use crate::telemetry::Asker;
use crate::templates::Pages;

/// Why the service could not be assembled from a (valid) configuration.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cookie secrets: {0}")]
    Secrets(#[from] crate::session::SealError),
    #[error("session store: {0}")]
    Store(#[from] crate::session::StoreError),
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error("assertion signing key: {0}")]
    Signing(#[from] AssertionError),
}

/// Everything a request handler needs; immutable, shared by `Arc`.
pub struct App {
    /// The configuration it was built from, less `routes`: those are
    /// compiled into the policy in force.
    config: Config,
    in_force: PolicyInForce,
    decider: Decider,
    sessions: Arc<Sessions>,
    oidc: Arc<Oidc>,
    redirects: RedirectRules,
    handoffs: Handoffs,
    clock: SharedClock,
    /// Signs `X-Auth-Request-Jwt`; its public keys are the JWKS.
    signer: Arc<AssertionSigner>,
    /// Outlives a configuration reload: passed to the next [`App`].
    metrics: Arc<Metrics>,
    /// The pages people see, from `templates_dir` or built in.
    pages: Pages,
    login_base: String,
}

/// The refresh schedule `config` asks for: the refresher's, and the first
/// due time a login sets.
pub fn refresh_policy(config: &Config) -> RefreshPolicy {
    RefreshPolicy {
        grace: Some(config.refresh_grace),
        ..RefreshPolicy::new(config.refresh_interval)
    }
}

impl App {
    /// Assembles the service, opening the configured session store.
    pub fn new(config: Config, clock: SharedClock) -> Result<Arc<App>, ServerError> {
        let store = open_store(&config.session_store, clock.clone())?;
        App::with_store(config, store, clock)
    }

    /// Assembles the service around a given store (tests share one store
    /// between two instances to play replicas or restarts).
    pub fn with_store(
        config: Config,
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
    ) -> Result<Arc<App>, ServerError> {
        App::with_parts(config, store, clock, Arc::new(Metrics::new()))
    }

    /// Assembles the service around a given store, counting into
    /// `metrics` (a reload passes the running instance's, so the series
    /// continue).
    pub fn with_parts(
        mut config: Config,
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<App>, ServerError> {
        let pages = std::mem::take(&mut config.pages);
        // The routes live on compiled in the policy; the list is dropped
        // (for 1,000 routes, some 350 KB nobody reads again).
        let policy = Arc::new(Policy::compile(std::mem::take(&mut config.routes)));
        let sealer = Sealer::new(&config.cookie.secret, &config.cookie.previous_secrets)?;
        let handoffs = Handoffs::new(
            store.clone(),
            clock.clone(),
            config.cookie.domain.as_deref(),
            &config.cookie.secret,
        );
        let sessions = Arc::new(
            Sessions::new(sealer, store, clock.clone(), config.cookie.expire)
                .with_idle_timeout(config.cookie.idle_timeout),
        );
        let login_base = config
            .authenticate_service_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let callback = Url::parse(&format!("{login_base}/oauth2/callback"))
            .map_err(|e| OidcError::Config(e.to_string()))?;
        let oidc = Arc::new(Oidc::new(&config.idp, &callback, clock.clone())?);
        let redirects = RedirectRules::new(
            &config.authenticate_service_url,
            config.cookie.domain.as_deref(),
            !config.cookie.secure,
        );
        let refresher = Refresher::new(
            sessions.clone(),
            oidc.clone(),
            clock.clone(),
            refresh_policy(&config),
        )
        .with_metrics(metrics.clone());
        let signer = Arc::new(AssertionSigner::from_config(&config, clock.clone())?);
        let bearer = Arc::new(BearerVerifier::new(
            oidc.clone(),
            &config.idp.allowed_audiences,
            clock.clone(),
        ));
        let decider = Decider::new(sessions.clone(), &config.authenticate_service_url)
            .with_refresher(refresher)
            .with_session_cookie(SessionCookie::new(&config.cookie))
            .with_signer(signer.clone())
            .with_bearer(bearer)
            .with_handoff_domain(config.cookie.domain.as_deref());
        Ok(Arc::new(App {
            in_force: PolicyInForce::new(policy, Some(metrics.clone())),
            config,
            decider,
            sessions,
            oidc,
            redirects,
            handoffs,
            clock,
            signer,
            metrics,
            pages,
            login_base,
        }))
    }

    /// Decides `request` for `asker` and records it, if that needs no I/O
    /// (see [`PolicyInForce::decide_now`]). `None`: ask [`App::decide`].
    pub fn decide_now<'a, C>(&self, asker: Asker<'_>, request: Request<'a, C>) -> Option<Decision>
    where
        C: IntoIterator<Item = &'a str>,
    {
        self.in_force.decide_now(&self.decider, asker, request)
    }

    /// Decides `request` for `asker` and records it: counted in the metrics
    /// with its latency, and logged.
    pub async fn decide<'a, C>(&self, asker: Asker<'_>, request: Request<'a, C>) -> Decision
    where
        C: IntoIterator<Item = &'a str>,
    {
        self.in_force.decide(&self.decider, asker, request).await
    }

    /// The configuration the service was built from (less its routes).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The policy in force now (a reload may replace it for later calls).
    pub fn policy(&self) -> Arc<Policy> {
        self.in_force.policy()
    }

    /// Puts `policy` in force for every decision that starts from now on
    /// (a reload); returns the one it replaces.
    pub fn replace_policy(&self, policy: Arc<Policy>) -> Arc<Policy> {
        self.in_force.replace(policy)
    }

    /// The decision core, for pages that explain a decision without
    /// counting it again.
    pub fn decider(&self) -> &Decider {
        &self.decider
    }

    /// The login URL that returns to `return_url` afterwards.
    pub fn sign_in_url(&self, return_url: &str) -> String {
        self.decider.sign_in_url(return_url)
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    pub fn oidc(&self) -> &Arc<Oidc> {
        &self.oidc
    }

    /// The `rd` allow-list.
    pub fn redirects(&self) -> &RedirectRules {
        &self.redirects
    }

    pub fn handoffs(&self) -> &Handoffs {
        &self.handoffs
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Signs `X-Auth-Request-Jwt`; its public keys are the JWKS.
    pub fn signer(&self) -> &Arc<AssertionSigner> {
        &self.signer
    }

    /// Outlives a configuration reload: pass it to the next [`App`].
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The pages people see, from `templates_dir` or built in.
    pub fn pages(&self) -> &Pages {
        &self.pages
    }

    /// `authenticate_service_url` without a trailing slash.
    pub fn login_base(&self) -> &str {
        &self.login_base
    }

    /// Whether this replica is ready (provider discovered, store answering),
    /// recorded in `authgate_ready`; `Err` says what is missing.
    pub async fn readiness(&self) -> Result<(), &'static str> {
        let verdict = if !self.oidc.is_ready() {
            Err("provider discovery pending")
        } else if let Err(error) = self.sessions.ping().await {
            self.metrics
                .store_error(crate::metrics::StoreOperation::Readiness);
            tracing::error!(%error, "readiness: session store unreachable");
            Err("session store unreachable")
        } else {
            Ok(())
        };
        self.metrics.set_ready(verdict.is_ok());
        verdict
    }

    /// Is this peer allowed to describe the original request with
    /// `X-Forwarded-*`?
    pub fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|peer| crate::config::is_trusted_proxy(&self.config.trusted_proxies, peer))
    }
}
