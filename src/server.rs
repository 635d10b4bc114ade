//! Wires the parts together and runs the listeners.
//!
//! [`run`] takes its listener and shutdown future as parameters, so tests
//! start the real server on `127.0.0.1:0` and stop it when they like.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use url::Url;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::decision::Decider;
use crate::oidc::{Oidc, OidcError};
use crate::policy::Policy;
use crate::redirect::RedirectRules;
use crate::refresh::{RefreshPolicy, Refresher};
use crate::session::{Sealer, SessionCookie, SessionStore, Sessions, open_store};

/// Why the service could not be assembled from a (valid) configuration.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("policy: {0}")]
    Policy(String),
    #[error("cookie secrets: {0}")]
    Secrets(String),
    #[error("session store: {0}")]
    Store(String),
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

/// Everything a request handler needs; immutable, shared by `Arc`.
pub struct App {
    pub config: Config,
    pub decider: Decider,
    pub sessions: Arc<Sessions>,
    pub oidc: Arc<Oidc>,
    pub redirects: RedirectRules,
    pub clock: SharedClock,
    login_base: String,
}

impl App {
    /// Assembles the service, opening the configured session store.
    pub fn new(config: Config, clock: SharedClock) -> Result<Arc<App>, ServerError> {
        let store = open_store(&config.session_store, clock.clone())
            .map_err(|e| ServerError::Store(e.to_string()))?;
        App::with_store(config, store, clock)
    }

    /// Assembles the service around a given store (tests share one store
    /// between two instances to play replicas or restarts).
    pub fn with_store(
        config: Config,
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
    ) -> Result<Arc<App>, ServerError> {
        let policy = Policy::compile(&config.routes).map_err(|errors| {
            ServerError::Policy(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let policy = Arc::new(policy);
        let sealer = Sealer::new(&config.cookie.secret, &config.cookie.previous_secrets)
            .map_err(|e| ServerError::Secrets(e.to_string()))?;
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
            RefreshPolicy {
                grace: Some(config.refresh_grace),
                ..RefreshPolicy::new(config.refresh_interval)
            },
        );
        let decider = Decider::new(policy, sessions.clone(), &config.authenticate_service_url)
            .with_refresher(refresher)
            .with_session_cookie(SessionCookie::new(&config.cookie));
        Ok(Arc::new(App {
            config,
            decider,
            sessions,
            oidc,
            redirects,
            clock,
            login_base,
        }))
    }

    /// `authenticate_service_url` without a trailing slash.
    pub fn login_base(&self) -> &str {
        &self.login_base
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves, then drains
/// in-flight requests. Provider discovery runs in the background; until it
/// succeeds `/readyz` says so and logins answer 503, while decisions for
/// existing sessions already work.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let oidc = app.oidc.clone();
    let discovery = tokio::spawn(async move { oidc.discover_until_ready().await });
    // With Redis: drop cached sessions that another replica signed out or
    // refreshed.
    let changes = app.sessions.follow_changes();
    let router = crate::http::router(app);
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    discovery.abort();
    if let Some(changes) = changes {
        changes.abort();
    }
    served
}

/// Serves HTTP on `http` and Envoy's gRPC `Check` on `grpc` until
/// `shutdown` resolves (or either server fails), then drains both.
pub async fn run_with_grpc(
    app: Arc<App>,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let http = async {
        let result = run(app.clone(), http, wait(stopped.clone())).await;
        stop.send_replace(true);
        result
    };
    let grpc = async {
        let result = crate::grpc::serve(app.clone(), grpc, wait(stopped.clone())).await;
        stop.send_replace(true);
        result.map_err(std::io::Error::other)
    };
    let both = async { tokio::join!(http, grpc) };
    tokio::pin!(both);
    let (http, grpc) = tokio::select! {
        results = &mut both => results,
        () = shutdown => {
            stop.send_replace(true);
            both.await
        }
    };
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
