//! Runs the listeners of an assembled [`App`]: binds them, serves every
//! front end on one shutdown schedule and drains them together.
//!
//! [`run`] takes its listeners and shutdown future as parameters, so tests
//! start the real server on `127.0.0.1:0` and stop it when they like.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::{Config, ServingConfig};
use crate::listener::{self, Role, Shutdown};
use crate::metrics::Metrics;

/// The sockets the service listens on, bound before it serves (a port in
/// use is an error at start-up, and tests bind `127.0.0.1:0`).
pub struct Listeners {
    /// `address`: nginx, forward-auth and the login host.
    pub http: TcpListener,
    /// `grpc_address`: Envoy's `ext_authz` `Check`.
    pub grpc: Option<TcpListener>,
    /// `spoe_address`: HAProxy's SPOE agent (SPOP).
    pub spoe: Option<TcpListener>,
    /// `metrics_address`: `/metrics` alone.
    pub metrics: Option<TcpListener>,
}

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({key}): {source}")]
pub struct BindError {
    key: &'static str,
    address: SocketAddr,
    source: std::io::Error,
}

impl Listeners {
    /// Only the HTTP listener.
    pub fn http(http: TcpListener) -> Listeners {
        Listeners {
            http,
            grpc: None,
            spoe: None,
            metrics: None,
        }
    }

    /// Binds every address `config` names.
    pub async fn bind(config: &Config) -> Result<Listeners, BindError> {
        Ok(Listeners {
            http: bind("address", config.address).await?,
            grpc: Some(bind("grpc_address", config.grpc_address).await?),
            spoe: match config.spoe_address {
                Some(address) => Some(bind("spoe_address", address).await?),
                None => None,
            },
            metrics: match config.metrics_address {
                Some(address) => Some(bind("metrics_address", address).await?),
                None => None,
            },
        })
    }
}

async fn bind(key: &'static str, address: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| BindError {
            key,
            address,
            source,
        })
}

/// Serves every listener until `shutdown` resolves (or one of them fails),
/// then drains them on one schedule: they keep answering for
/// `shutdown_delay` while `/readyz` and gRPC health report not serving,
/// then stop accepting and finish what is in flight. Provider discovery
/// runs in the background; until it succeeds `/readyz` says so and logins
/// answer 503, while decisions for existing sessions already work.
pub async fn run(
    app: Arc<App>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (failed, mut failure) = tokio::sync::watch::channel(false);
    let signal = async move {
        tokio::select! {
            () = shutdown => {}
            _ = failure.wait_for(|failed| *failed) => {}
        }
    };
    let schedule = Shutdown::schedule(signal, app.config().serving.shutdown_delay);
    let failing = |result: std::io::Result<()>| {
        failed.send_replace(true);
        result
    };
    let Listeners {
        http,
        grpc,
        spoe,
        metrics,
    } = listeners;
    let http = async { failing(serve_http(app.clone(), http, schedule.clone()).await) };
    let grpc = async {
        match grpc {
            Some(grpc) => failing(
                crate::grpc::serve_scheduled(app.clone(), grpc, schedule.clone())
                    .await
                    .map_err(std::io::Error::other),
            ),
            None => Ok(()),
        }
    };
    let spoe = async {
        match spoe {
            Some(spoe) => {
                failing(crate::spoe::serve_scheduled(app.clone(), spoe, schedule.clone()).await)
            }
            None => Ok(()),
        }
    };
    let metrics = async {
        match metrics {
            Some(metrics) => failing(serve_metrics(&app, metrics, schedule.clone()).await),
            None => Ok(()),
        }
    };
    let (http, grpc, spoe, metrics) = tokio::join!(http, grpc, spoe, metrics);
    http.and(grpc).and(spoe).and(metrics)
}

/// Serves HTTP (nginx, forward-auth, the login host) on `listener`.
async fn serve_http(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let discovery = tokio::spawn(track_readiness(app.clone(), shutdown.clone()));
    // With Redis: drop cached sessions that another replica signed out or
    // refreshed.
    let changes = app.sessions().follow_changes();
    let serving = app.config().serving;
    let trusted_proxies = app.config().trusted_proxies.clone();
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

/// Discovers the provider, then keeps `authgate_ready` right without a
/// probe: set once discovery is done, cleared when the drain starts.
async fn track_readiness(app: Arc<App>, shutdown: Shutdown) {
    app.oidc().discover_until_ready(app.metrics()).await;
    let _ = app.readiness().await;
    shutdown.reached(listener::Phase::Draining).await;
    app.metrics().set_ready(false);
}

async fn serve_metrics(
    app: &App,
    listener: TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_metrics_scheduled(
        app.metrics().clone(),
        app.config().serving,
        app.config().trusted_proxies.clone(),
        listener,
        shutdown,
    )
    .await
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
    serve_metrics_scheduled(metrics, serving, trusted_proxies, listener, schedule).await
}

async fn serve_metrics_scheduled(
    metrics: Arc<Metrics>,
    serving: ServingConfig,
    trusted_proxies: Vec<IpNet>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let router = crate::http::metrics_router(metrics);
    listener::serve(
        listener,
        router,
        listener::NoLane,
        serving,
        &trusted_proxies,
        shutdown,
        Role::Metrics,
    )
    .await
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
