//! The HTTP listener: nginx `auth_request` ([`nginx`]), forward-auth
//! ([`forward_auth`]), the login host (sign-in, callback, sign-out, pages)
//! and the operational endpoints. The front ends only translate; the login
//! host's handlers live in `login` and `handoff`.

mod admin;
mod backchannel;
mod cookies;
mod error;
pub mod forward_auth;
mod handoff;
mod login;
pub mod nginx;
mod own_sessions;
pub mod pages;
mod request;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Router, middleware};

use crate::app::App;
use crate::metrics::Metrics;

pub use error::AppError;
pub use nginx::{AuthLane, original_target};
use pages::View;

/// Builds the router. Tests call `router(app).oneshot(request)`; the server
/// serves it with the peer address attached.
pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new()
        .route("/forward-auth", any(forward_auth::forward_auth_any))
        .route("/forward-auth/", any(forward_auth::forward_auth_any))
        .route("/forward-auth/{*rest}", any(forward_auth::forward_auth_any))
        .route("/oauth2/start", get(login::login_start_get))
        .route("/oauth2/callback", get(login::login_callback_get))
        .route(
            "/oauth2/sign_out",
            get(login::sign_out_get).post(login::sign_out_post),
        )
        .route("/oauth2/userinfo", get(login::userinfo_get))
        .route(login::SIGNED_OUT_PATH, get(login::signed_out_get))
        .route(
            "/oauth2/backchannel_logout",
            axum::routing::post(backchannel::backchannel_logout_post),
        )
        .route(
            "/oauth2/sessions",
            get(own_sessions::sessions_get).post(own_sessions::sessions_post),
        )
        .route(
            "/oauth2/sign_out_all",
            axum::routing::post(own_sessions::sign_out_all_post),
        )
        .route(
            "/oauth2/admin/sessions",
            get(admin::sessions_get).delete(admin::sessions_delete),
        )
        .route("/oauth2/forbidden", get(login::forbidden_get))
        .route(
            crate::handoff::CALLBACK_PATH,
            get(handoff::handoff_callback_get).post(handoff::handoff_callback_post),
        )
        .route(crate::handoff::START_PATH, get(handoff::handoff_start_get))
        .route("/", get(login::status_get))
        .route(crate::assertion::JWKS_PATH, get(jwks_get))
        .route("/healthz", get(health_get))
        .route("/readyz", get(ready_get))
        .fallback(not_found);
    // With `metrics_address` set, /metrics is served there only.
    if app.config().metrics_address.is_none() {
        router = router.route(
            "/metrics",
            get(metrics_get).with_state(app.metrics().clone()),
        );
    }
    // `/oauth2/auth` answers nginx with a status and headers, never a
    // page, so it stays out of the page layer: that is every request a
    // protected site serves.
    Router::new()
        .route("/oauth2/auth", get(nginx::auth_nginx_get))
        .merge(router.layer(middleware::map_response_with_state(
            app.clone(),
            render_pages,
        )))
        .with_state(app)
}

/// The router of `metrics_address`: `/metrics` and nothing else.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_get))
        .with_state(metrics)
}

/// `GET /metrics`: Prometheus text.
async fn metrics_get(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        metrics.render(),
    )
        .into_response()
}

async fn not_found() -> View {
    View::not_found().with_link("/", "Go to the start page")
}

/// The one place pages are rendered: a response carrying a [`View`] gets
/// its HTML from the configured templates; headers the handler set (a
/// cookie being cleared) are kept.
async fn render_pages(State(app): State<Arc<App>>, mut response: Response) -> Response {
    let Some(view) = response.extensions_mut().remove::<View>() else {
        return response;
    };
    let mut page = app.pages().render(&view);
    let own: Vec<_> = page.headers().keys().cloned().collect();
    for (name, value) in response.headers() {
        if !own.contains(name) && name != header::CONTENT_LENGTH {
            page.headers_mut().append(name.clone(), value.clone());
        }
    }
    page
}

/// The public keys of `X-Auth-Request-Jwt`. Cacheable for a few minutes:
/// a rotated key is published (as previous) long before tokens it signed
/// expire.
async fn jwks_get(State(app): State<Arc<App>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        app.signer().jwks_json().to_owned(),
    )
        .into_response()
}

async fn health_get() -> &'static str {
    "ok\n"
}

/// Ready once the provider is discovered and the store answers.
async fn ready_get(State(app): State<Arc<App>>) -> Response {
    match app.readiness().await {
        Ok(()) => "ready\n".into_response(),
        Err(missing) => (StatusCode::SERVICE_UNAVAILABLE, format!("{missing}\n")).into_response(),
    }
}
