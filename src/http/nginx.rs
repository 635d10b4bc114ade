//! nginx `auth_request` (and ingress-nginx): `GET /oauth2/auth`.
//!
//! A translator: the subrequest's headers → [`decision::Request`] →
//! [`Answer`] in [`Mode::Subrequest`] → status and headers. How the
//! original URL is found: `X-Original-URL` first; otherwise
//! `X-Forwarded-Proto` + `X-Forwarded-Host` + `X-Forwarded-Uri`, believed
//! only from a peer in `trusted_proxies` (CVE-2026-40575: a spoofed
//! `X-Forwarded-Uri` from anyone else must not choose the route).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{self, HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use hyper::body::Incoming;

use super::request::{client_ip, header_text, peer_ip, request_id, session_cookie_values};
use crate::app::App;
use crate::decision::{self, Answer, Decision, Mode};
use crate::listener::{self, Lane};
use crate::metrics::FrontEnd;
use crate::policy::ProxyConditions;
use crate::policy::{Target, TargetError};
use crate::telemetry::Asker;

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
    ) -> listener::Answer<impl Future<Output = Response> + Send + 'static> {
        if request.method() != Method::GET || request.uri().path() != "/oauth2/auth" {
            return listener::Answer::Pass(request);
        }
        let peer = Some(peer.ip());
        let headers = request.headers();
        let query = request.uri().query();
        let target = nginx_target(&self.app, query, headers, peer);
        let conditions = ProxyConditions::from_query(query);
        let asked = nginx_request(&self.app, headers, &target, peer, &conditions);
        if let Some(decision) = self.app.decide_now(asker(headers), asked) {
            return listener::Answer::Now(nginx_response(&decision));
        }
        let app = self.app.clone();
        listener::Answer::Later(async move {
            auth_nginx(&app, request.uri().query(), request.headers(), peer).await
        })
    }
}

/// `GET /oauth2/auth` through the router.
pub(super) async fn auth_nginx_get(State(app): State<Arc<App>>, request: Request) -> Response {
    auth_nginx(
        &app,
        request.uri().query(),
        request.headers(),
        peer_ip(&request),
    )
    .await
}

/// `/oauth2/auth`: 200 + identity headers, 401 + `Location` (nginx's
/// `error_page 401` sends the browser there), 403, 503.
async fn auth_nginx(
    app: &App,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Response {
    let target = nginx_target(app, query, headers, peer);
    let conditions = ProxyConditions::from_query(query);
    let decision = app
        .decide(
            asker(headers),
            nginx_request(app, headers, &target, peer, &conditions),
        )
        .await;
    nginx_response(&decision)
}

/// nginx, and its `X-Request-Id`, as the decision's metrics and log name it.
fn asker(headers: &HeaderMap) -> Asker<'_> {
    Asker {
        front_end: FrontEnd::Nginx,
        request_id: request_id(headers),
        trace: crate::traces::TraceHeaders::read(|name| headers.get(name).map(|v| v.as_bytes())),
    }
}

/// The original request's URL (see [`original_target`]), on the host
/// `query`'s `host=` names if it names one.
///
/// `query` is the subrequest's own (`/oauth2/auth?host=…`): written in the
/// proxy's configuration, so a client cannot choose it. With
/// `trusted_proxies` set, only those peers are answered at all.
pub(crate) fn nginx_target<'r>(
    app: &App,
    query: Option<&str>,
    headers: &'r HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Target<'r>, TargetError> {
    let trusted = app.is_trusted(peer);
    if !trusted && !app.config().trusted_proxies.is_empty() {
        return Err(TargetError::UntrustedPeer);
    }
    original_target(headers, trusted).and_then(|target| bound_to_host(target, query))
}

/// What nginx's subrequest says about the original request besides its
/// URL: the session cookies, `X-Original-Method` (nginx:
/// `proxy_set_header X-Original-Method $request_method;`), the client's
/// `Authorization`, which the subrequest carries like every client header,
/// and the client's address ([`client_ip`]). `conditions` are the ones in
/// the subrequest's own query ([`ProxyConditions::from_query`]): nginx's
/// configuration writes that URI, never the client.
pub(crate) fn nginx_request<'r>(
    app: &'r App,
    headers: &'r HeaderMap,
    target: &'r Result<Target<'r>, TargetError>,
    peer: Option<IpAddr>,
    conditions: &'r ProxyConditions<'r>,
) -> decision::Request<'r, impl Iterator<Item = &'r str> + 'r> {
    let method = headers.get(X_ORIGINAL_METHOD).and_then(|v| v.to_str().ok());
    decision::Request {
        target,
        session_cookies: session_cookie_values(headers, &app.config().cookie.name),
        method,
        // By the constant name: a `&str` name is parsed again on each call.
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        preflight: decision::is_preflight(method, |name| header_text(headers, name)),
        source_ip: client_ip(headers, peer, &app.config().trusted_proxies),
        conditions,
    }
}

/// The answer as nginx's `auth_request` reads it: one response carrying the
/// identity headers (`auth_request_set … $upstream_http_x_auth_request_user`)
/// and the client's (`Location` for `error_page 401`, a re-issued
/// `Set-Cookie`), never cached, never a body.
fn nginx_response(decision: &Decision) -> Response {
    let Answer {
        status,
        upstream: mut headers,
        client,
        ..
    } = Answer::new(decision, Mode::Subrequest);
    headers.reserve(client.len() + 1);
    headers.extend(client);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    use super::super::request::header_map as headers;

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
