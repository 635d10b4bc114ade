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
mod login;
pub mod pages;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::decision::{self, Decision};
use crate::policy::{Target, TargetError};
use crate::server::App;

pub use error::AppError;

/// Builds the router. Tests call `router(app).oneshot(request)`; the server
/// serves it with the peer address attached.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/oauth2/auth", get(auth_nginx_get))
        .route("/forward-auth", any(forward_auth::forward_auth_any))
        .route("/forward-auth/", any(forward_auth::forward_auth_any))
        .route("/forward-auth/{*rest}", any(forward_auth::forward_auth_any))
        .route("/oauth2/start", get(login::login_start_get))
        .route("/oauth2/callback", get(login::login_callback_get))
        .route(
            "/oauth2/sign_out",
            get(login::sign_out_get).post(login::sign_out_get),
        )
        .route("/oauth2/userinfo", get(login::userinfo_get))
        .route("/oauth2/forbidden", get(login::forbidden_get))
        .route("/", get(login::status_get))
        .route("/healthz", get(health_get))
        .route("/readyz", get(ready_get))
        .with_state(app)
}

/// `GET /oauth2/auth`: 200 + identity headers, 401 + `Location` (nginx's
/// `error_page 401` sends the browser there), 403. Never a 3xx (nginx would
/// answer 500), never a body.
async fn auth_nginx_get(State(app): State<Arc<App>>, request: Request) -> Response {
    let headers = request.headers();
    let request = decision::Request {
        target: original_target(headers, app.is_trusted(peer_ip(&request))),
        session_cookies: session_cookie_values(headers, &app.config.cookie.name),
    };
    let decision = app.decider.decide(request).await;
    nginx_response(&decision)
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
    let mut response = match decision {
        Decision::Allow { .. } => {
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().extend(decision.identity_headers());
            // A re-issued session cookie: nginx passes it on with
            // `auth_request_set $auth_cookie $upstream_http_set_cookie;`
            // and `add_header Set-Cookie $auth_cookie;`.
            if let Some(cookie) = decision.set_cookie() {
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, cookie.clone());
            }
            response
        }
        Decision::SignIn { sign_in_url, .. } => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            if let Ok(location) = HeaderValue::from_str(sign_in_url) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Decision::Deny { .. } => StatusCode::FORBIDDEN.into_response(),
        // Not a decision but a fault: fail closed. nginx shows a 500.
        Decision::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The original request, from `X-Original-URL` or (trusted peers only) the
/// `X-Forwarded-*` triple. Header values must be UTF-8.
pub(crate) fn original_target(
    headers: &HeaderMap,
    trusted_peer: bool,
) -> Result<Target<'_>, TargetError> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| std::str::from_utf8(v.as_bytes()).map_err(|_| TargetError::InvalidUtf8))
            .transpose()
    };
    if let Some(url) = text("x-original-url")? {
        return Target::parse(url);
    }
    if !trusted_peer {
        return Err(TargetError::Missing);
    }
    match (
        text("x-forwarded-proto")?,
        text("x-forwarded-host")?,
        text("x-forwarded-uri")?,
    ) {
        (Some(proto), Some(host), Some(uri)) => Target::from_parts(proto, host, uri),
        _ => Err(TargetError::Missing),
    }
}

/// Every value of a cookie named `name` across all `Cookie` headers, without
/// allocating.
pub(crate) fn session_cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &'h str,
) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| std::str::from_utf8(value.as_bytes()).ok())
        .flat_map(|line| line.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
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
        let Some(peer) = peer else { return false };
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        self.config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
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
