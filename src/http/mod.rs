//! The HTTP front end: nginx `auth_request` and the login host.
//!
//! Handlers only translate: HTTP request → [`decision::Request`] →
//! [`Decision`] → HTTP response. How the original URL is found:
//! `X-Original-URL` (nginx, ingress-nginx) first; otherwise
//! `X-Forwarded-Proto` + `X-Forwarded-Host` + `X-Forwarded-Uri`, believed only
//! from a peer in `trusted_proxies` (CVE-2026-40575: a spoofed
//! `X-Forwarded-Uri` from anyone else must not choose the route).

mod error;
pub mod forward_auth;
mod handoff;
mod login;
pub mod pages;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{self, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Router, middleware};

use futures_util::FutureExt as _;
use hyper::body::Incoming;

use crate::decision::{self, Decision};
use crate::listener::{Answer, Lane};
use crate::metrics::{FrontEnd, Metrics, StoreOperation};
use crate::policy::{Target, TargetError};
use crate::server::App;

pub use error::AppError;
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
    if app.config.metrics_address.is_none() {
        router = router.route("/metrics", get(metrics_get).with_state(app.metrics.clone()));
    }
    // `/oauth2/auth` answers nginx with a status and headers, never a
    // page, so it stays out of the page layer: that is every request a
    // protected site serves.
    Router::new()
        .route("/oauth2/auth", get(auth_nginx_get))
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
    let mut page = app.pages.render(&view);
    let own: Vec<_> = page.headers().keys().cloned().collect();
    for (name, value) in response.headers() {
        if !own.contains(name) && name != header::CONTENT_LENGTH {
            page.headers_mut().append(name.clone(), value.clone());
        }
    }
    page
}

/// `GET /oauth2/auth` as the main listener's [`Lane`]: answered without
/// the router (which still serves it for `HEAD` and in `oneshot` tests).
pub struct AuthLane {
    app: Arc<App>,
}

impl AuthLane {
    pub fn new(app: Arc<App>) -> AuthLane {
        AuthLane { app }
    }
}

impl Lane for AuthLane {
    fn answer(
        &self,
        request: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> Answer<impl Future<Output = Response> + Send + 'static> {
        if request.method() != Method::GET || request.uri().path() != "/oauth2/auth" {
            return Answer::Pass(request);
        }
        let peer = Some(peer.ip());
        if let Some(decision) = self.app.decider.decide_now_for(
            nginx_asker(request.headers()),
            nginx_request(&self.app, request.uri().query(), request.headers(), peer),
        ) {
            return Answer::Now(nginx_response(&decision));
        }
        let app = self.app.clone();
        Answer::Later(async move {
            auth_nginx(&app, request.uri().query(), request.headers(), peer).await
        })
    }
}

/// `GET /oauth2/auth` through the router.
async fn auth_nginx_get(State(app): State<Arc<App>>, request: Request) -> Response {
    auth_nginx(
        &app,
        request.uri().query(),
        request.headers(),
        peer_ip(&request),
    )
    .await
}

/// `/oauth2/auth`: 200 + identity headers, 401 + `Location` (nginx's
/// `error_page 401` sends the browser there), 403. Never a 3xx (nginx would
/// answer 500), never a body.
///
/// The decision's future mapped, not awaited in an `async fn`: another
/// level would hold its arguments again beside it.
fn auth_nginx<'r>(
    app: &'r App,
    query: Option<&'r str>,
    headers: &'r HeaderMap,
    peer: Option<IpAddr>,
) -> impl Future<Output = Response> + Send + 'r {
    app.decider
        .decide_for(
            nginx_asker(headers),
            nginx_request(app, query, headers, peer),
        )
        .map(|decision| nginx_response(&decision))
}

/// nginx, and its `X-Request-Id`, as the decision's metrics and log name it.
fn nginx_asker(headers: &HeaderMap) -> decision::Asker<'_> {
    decision::Asker {
        front_end: FrontEnd::Nginx,
        request_id: request_id(headers),
    }
}

/// The proxy's `X-Request-Id`, when it is fit to log.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&str> {
    crate::telemetry::request_id(headers.get(X_REQUEST_ID).map(HeaderValue::as_bytes))
}

/// What nginx's subrequest says about the original request: the URL (see
/// [`original_target`]), the session cookies, `X-Original-Method` (nginx:
/// `proxy_set_header X-Original-Method $request_method;`) and the client's
/// `Authorization`, which the subrequest carries like every client header.
///
/// `query` is the subrequest's own (`/oauth2/auth?host=…`): written in the
/// proxy's configuration, so a client cannot choose it. With
/// `trusted_proxies` set, only those peers are answered at all.
pub(crate) fn nginx_request<'r>(
    app: &'r App,
    query: Option<&'r str>,
    headers: &'r HeaderMap,
    peer: Option<IpAddr>,
) -> decision::Request<'r, impl Iterator<Item = &'r str> + 'r> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let method = headers.get(X_ORIGINAL_METHOD).and_then(|v| v.to_str().ok());
    let trusted = app.is_trusted(peer);
    let target = if !trusted && !app.config.trusted_proxies.is_empty() {
        Err(TargetError::UntrustedPeer)
    } else {
        original_target(headers, trusted).and_then(|target| bound_to_host(target, query))
    };
    decision::Request {
        target,
        session_cookies: session_cookie_values(headers, &app.config.cookie.name),
        method,
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        preflight: decision::is_preflight(method, header),
    }
}

/// The TCP peer, when the server attached it (not in `oneshot` tests).
pub(crate) fn peer_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Renders a decision the way nginx's `auth_request` understands it.
fn nginx_response(decision: &Decision) -> Response {
    // The identity headers (if any) with room for `Cache-Control` and a
    // cookie: no regrowth on the hot path.
    let mut headers = decision.identity_header_map(2);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let status = match decision {
        Decision::Allow { .. } => {
            // A re-issued session cookie: nginx passes it on with
            // `auth_request_set $auth_cookie $upstream_http_set_cookie;`
            // and `add_header Set-Cookie $auth_cookie;`.
            if let Some(cookie) = decision.set_cookie() {
                headers.insert(header::SET_COOKIE, cookie.clone());
            }
            StatusCode::OK
        }
        Decision::SignIn {
            sign_in_url,
            invalid_token,
            ..
        } => {
            if let Ok(location) = HeaderValue::from_str(sign_in_url) {
                headers.insert(header::LOCATION, location);
            }
            // For the nginx `map` that answers API clients with the 401
            // itself (README): `$upstream_http_www_authenticate`.
            headers.insert(
                header::WWW_AUTHENTICATE,
                decision::www_authenticate(*invalid_token),
            );
            StatusCode::UNAUTHORIZED
        }
        Decision::Deny { .. } => StatusCode::FORBIDDEN,
        // Not a decision but a fault: fail closed. nginx shows a 500.
        Decision::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

// Request headers looked up by name on every decision: constants, so the
// name is not parsed again each time.
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The original request, from `X-Original-URL` or (trusted peers only) the
/// `X-Forwarded-*` triple. Header values must be UTF-8.
///
/// Public (not just crate-visible) for the `nginx_request` fuzz target,
/// which must exercise the very function `/oauth2/auth` uses.
pub fn original_target(headers: &HeaderMap, trusted_peer: bool) -> Result<Target<'_>, TargetError> {
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .map(|v| std::str::from_utf8(v.as_bytes()).map_err(|_| TargetError::InvalidUtf8))
            .transpose()
    };
    if let Some(url) = text(&X_ORIGINAL_URL)? {
        return Target::parse(url);
    }
    if !trusted_peer {
        return Err(TargetError::Missing);
    }
    match (
        text(&X_FORWARDED_PROTO)?,
        text(&X_FORWARDED_HOST)?,
        text(&X_FORWARDED_URI)?,
    ) {
        (Some(proto), Some(host), Some(uri)) => Target::from_parts(proto, host, uri),
        _ => Err(TargetError::Missing),
    }
}

/// `target`, when it is on the host `?host=` names (if the proxy named
/// one). ingress-nginx builds `X-Original-URL` from the client's `Host`
/// while it routes by the Ingress's host, so the chart writes that host
/// into each Ingress's `auth-url`. The port counts too: `host=a.example.com`
/// is port 443 (or 80) of the URL's scheme.
fn bound_to_host<'t>(target: Target<'t>, query: Option<&str>) -> Result<Target<'t>, TargetError> {
    let Some(query) = query else {
        return Ok(target);
    };
    let mut bound = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == "host" {
            if bound.is_some() {
                // Two answers to "which host?": neither is believed.
                return Err(TargetError::HostMismatch);
            }
            bound = Some(value);
        }
    }
    let Some(bound) = bound else {
        return Ok(target);
    };
    let (host, port) = crate::policy::target::normalize_authority(&bound, target.scheme)
        .map_err(|_| TargetError::HostMismatch)?;
    if host != target.host || port != target.port {
        return Err(TargetError::HostMismatch);
    }
    Ok(target)
}

/// Every value of a cookie named `name` across all `Cookie` headers, without
/// allocating ([`crate::session::cookie_values`], as every front end).
pub(crate) fn session_cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &'h str,
) -> impl Iterator<Item = &'h str> + 'h {
    crate::session::cookie_values(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| std::str::from_utf8(value.as_bytes()).ok()),
        name,
    )
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
        app.signer.jwks_json().to_owned(),
    )
        .into_response()
}

async fn health_get() -> &'static str {
    "ok\n"
}

/// Ready once the provider is discovered and the store answers.
async fn ready_get(State(app): State<Arc<App>>) -> Response {
    if !app.oidc.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "provider discovery pending\n",
        )
            .into_response();
    }
    if let Err(error) = app.sessions.ping().await {
        app.metrics.store_error(StoreOperation::Readiness);
        tracing::error!(%error, "readiness: session store unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "session store unreachable\n",
        )
            .into_response();
    }
    "ready\n".into_response()
}

impl App {
    /// Is this peer allowed to describe the original request with
    /// `X-Forwarded-*`?
    pub fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|peer| crate::config::is_trusted_proxy(&self.config.trusted_proxies, peer))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    /// The session cookie is found among others, in every Cookie header, and
    /// a cookie whose name merely starts with ours is not taken.
    #[test]
    fn finds_every_session_cookie_value() {
        let h = headers(&[
            ("cookie", "a=1; _authgate=first; _authgate_login_x=no"),
            ("cookie", "_authgate=\"second\""),
        ]);
        let values: Vec<_> = session_cookie_values(&h, "_authgate").collect();
        assert_eq!(values, vec!["first", "second"]);
    }

    /// X-Forwarded-* from an untrusted peer is ignored (CVE-2026-40575);
    /// X-Original-URL wins when present.
    #[test]
    fn forwarded_headers_need_a_trusted_peer() {
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert!(matches!(
            original_target(&h, false),
            Err(TargetError::Missing)
        ));
        let t = original_target(&h, true).unwrap();
        assert_eq!(t.host, "app.example.com");
        assert_eq!(t.path, "/public");

        let h = headers(&[
            ("x-original-url", "https://a.example.com/admin"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert_eq!(original_target(&h, true).unwrap().path, "/admin");
    }
}
