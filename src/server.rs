//! Wires the parts together and runs the listeners.
//!
//! [`run`] takes its listener and shutdown future as parameters, so tests
//! start the real server on `127.0.0.1:0` and stop it when they like.

use std::future::Future;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::net::TcpListener;
use url::Url;

use crate::assertion::{AssertionError, AssertionSigner};
use crate::bearer::BearerVerifier;
use crate::clock::SharedClock;
use crate::config::{Config, ServingConfig};
use crate::decision::Decider;
use crate::handoff::Handoffs;
use crate::http::pages::Pages;
use crate::listener::{self, Role, Shutdown};
use crate::metrics::Metrics;
use crate::oidc::{Oidc, OidcError};
use crate::policy::Policy;
use crate::redirect::RedirectRules;
use crate::refresh::{RefreshPolicy, Refresher};
use crate::session::{Sealer, SessionCookie, SessionStore, Sessions, open_store};

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
    /// compiled into `decider`'s policy.
    pub config: Config,
    pub decider: Decider,
    pub sessions: Arc<Sessions>,
    pub oidc: Arc<Oidc>,
    pub redirects: RedirectRules,
    pub handoffs: Handoffs,
    pub clock: SharedClock,
    /// Signs `X-Auth-Request-Jwt`; its public keys are the JWKS.
    pub signer: Arc<AssertionSigner>,
    /// Outlives a configuration reload: pass it to the next [`App`].
    pub metrics: Arc<Metrics>,
    /// The pages people see, from `templates_dir` or built in.
    pub pages: Pages,
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
        // Loaded and parsed by validation: moved out, not built again.
        let pages = std::mem::take(&mut config.pages);
        // The routes live on compiled in the decider's policy; the list is
        // dropped (for 1,000 routes, some 350 KB nobody reads again).
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
        let decider = Decider::new(policy, sessions.clone(), &config.authenticate_service_url)
            .with_refresher(refresher)
            .with_session_cookie(SessionCookie::new(&config.cookie))
            .with_signer(signer.clone())
            .with_bearer(bearer)
            .with_handoff_domain(config.cookie.domain.as_deref())
            .with_metrics(metrics.clone());
        Ok(Arc::new(App {
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

    /// `authenticate_service_url` without a trailing slash.
    pub fn login_base(&self) -> &str {
        &self.login_base
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves, then drains on the
/// schedule of `serving` (see [`crate::listener`]). Provider discovery runs
/// in the background; until it succeeds `/readyz` says so and logins answer
/// 503, while decisions for existing sessions already work.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let schedule = Shutdown::schedule(shutdown, app.config.serving.shutdown_delay);
    run_scheduled(app, listener, schedule).await
}

/// [`run`] on a schedule shared with other listeners.
async fn run_scheduled(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let oidc = app.oidc.clone();
    let metrics = app.metrics.clone();
    let discovery = tokio::spawn(async move { oidc.discover_until_ready(&metrics).await });
    // With Redis: drop cached sessions that another replica signed out or
    // refreshed.
    let changes = app.sessions.follow_changes();
    let serving = app.config.serving;
    let trusted_proxies = app.config.trusted_proxies.clone();
    let lane = crate::http::AuthLane::new(app.clone());
    let router = crate::http::router(app);
    let served = listener::serve(
        listener,
        router,
        lane,
        serving,
        &trusted_proxies,
        shutdown,
        Role::Main,
    )
    .await;
    discovery.abort();
    if let Some(changes) = changes {
        changes.abort();
    }
    served
}

/// Serves only `/metrics` on `listener` (`metrics_address`) until
/// `shutdown` resolves, with the main listener's connection limits
/// (`trusted_proxies` exempt from the cap per peer).
pub async fn run_metrics(
    metrics: Arc<Metrics>,
    serving: ServingConfig,
    trusted_proxies: Vec<IpNet>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let schedule = Shutdown::schedule(shutdown, serving.shutdown_delay);
    let router = crate::http::metrics_router(metrics);
    listener::serve(
        listener,
        router,
        listener::NoLane,
        serving,
        &trusted_proxies,
        schedule,
        Role::Metrics,
    )
    .await
}

/// Serves HTTP on `http` and Envoy's gRPC `Check` on `grpc` until
/// `shutdown` resolves (or either server fails), then drains both on one
/// schedule: both keep answering for `shutdown_delay` while `/readyz` and
/// gRPC health report not serving, then stop accepting and finish what is
/// in flight.
pub async fn run_with_grpc(
    app: Arc<App>,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (failed, mut failure) = tokio::sync::watch::channel(false);
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            _ = failure.wait_for(|failed| *failed) => {}
        }
    };
    let schedule = Shutdown::schedule(signal, app.config.serving.shutdown_delay);
    let http = async {
        let result = run_scheduled(app.clone(), http, schedule.clone()).await;
        failed.send_replace(true);
        result
    };
    let grpc = async {
        let result = crate::grpc::serve_scheduled(app.clone(), grpc, schedule.clone()).await;
        failed.send_replace(true);
        result.map_err(std::io::Error::other)
    };
    let (http, grpc) = tokio::join!(http, grpc);
    http.and(grpc)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
