//! `/forward-auth/*`: for proxies that hand our answer to the client —
//! Envoy's HTTP ext_authz (`path_prefix: /forward-auth`), Traefik
//! `ForwardAuth`, Caddy `forward_auth`.
//!
//! Unlike nginx, these proxies show a non-200 answer to the client as it is,
//! so a browser without a session gets the redirect to sign in from us, a
//! program gets 401 and a refused user 403: the core's [`Answer`] in
//! [`Mode::Direct`], serialised here as an HTTP response.
//!
//! # Which request is being asked about
//! - **Envoy** (`/forward-auth/<original path>`): the original path and query
//!   follow the prefix; the host is `Host`/`:authority` (Envoy passes the
//!   client's); the method is this request's. Envoy's HTTP mode sends no
//!   scheme: it is `X-Forwarded-Proto` from a peer in `trusted_proxies`
//!   (Envoy sets that header itself), otherwise `https`, since a login
//!   cookie only works over https anyway.
//! - **Traefik, Caddy** (`/forward-auth` exactly): `X-Forwarded-Proto`,
//!   `-Host`, `-Uri`, `-Method`, believed only from a trusted peer.
//!
//! A trusted peer sending `X-Forwarded-Uri` to a `/forward-auth/<path>` URL
//! is refused: one of the two is a misconfiguration (say, Caddy with
//! `uri /forward-auth/`), and guessing could authorise the wrong path.
//!
//! # The proxy's conditions
//! `/forward-auth?allowed_groups=…` (Traefik's `address`, Caddy's `uri`):
//! the proxy's own conditions ([`ProxyConditions::from_query`]). Envoy's
//! `/forward-auth/<path>?<query>` carries the client's query: none there.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use super::request::{client_ip, header_text, peer_ip, request_id, session_cookie_values};
use crate::app::App;
use crate::decision::{self, Answer, Client, Mode};
use crate::metrics::FrontEnd;
use crate::policy::ProxyConditions;
use crate::policy::{Target, TargetError};
use crate::telemetry::Asker;

/// The route prefix (Envoy's `path_prefix`).
pub const PREFIX: &str = "/forward-auth";

/// Envoy's HTTP mode reads this response header as the list of request
/// headers to remove on allow.
pub const HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// Scheme assumed when the proxy does not say (Envoy HTTP mode without a
/// trusted `X-Forwarded-Proto`).
const DEFAULT_SCHEME: &str = "https";

/// `ANY /forward-auth` and `/forward-auth/*`.
pub(super) async fn forward_auth_any(State(app): State<Arc<App>>, request: Request) -> Response {
    let peer = peer_ip(&request);
    let trusted = app.is_trusted(peer);
    let headers = request.headers();
    // The query of authgate's own URL (Caddy's `uri /forward-auth?…`,
    // Traefik's `address`), which the proxy's configuration writes. Envoy's
    // `/forward-auth/<path>` carries the client's query: no conditions.
    let conditions = match request.uri().path() {
        PREFIX => ProxyConditions::from_query(request.uri().query()),
        _ => ProxyConditions::NONE,
    };
    let asked = asked_request(request.uri(), request.method(), headers, trusted);
    let header = |name: &str| header_text(headers, name);
    let asker = Asker {
        front_end: FrontEnd::ForwardAuth,
        request_id: request_id(headers),
        trace: crate::traces::TraceHeaders::read(|name| headers.get(name).map(|v| v.as_bytes())),
    };
    let decision = app
        .decide(
            asker,
            decision::Request {
                target: &asked.target,
                session_cookies: session_cookie_values(headers, &app.config().cookie.name),
                method: asked.method,
                authorization: header("authorization"),
                preflight: decision::is_preflight(asked.method, header),
                source_ip: client_ip(headers, peer, &app.config().trusted_proxies),
                conditions: &conditions,
            },
        )
        .await;
    let mode = Mode::Direct {
        client: Client::for_decision(&decision, header),
        safe_method: asked.safe_method,
    };
    render(Answer::new(&decision, mode))
}

/// The request the proxy asks about.
struct Asked<'r> {
    target: Result<Target<'r>, TargetError>,
    /// GET or HEAD.
    safe_method: bool,
    /// The original method: `X-Forwarded-Method` (Traefik, Caddy) or this
    /// request's (Envoy).
    method: Option<&'r str>,
}

/// Finds the original request (see the module docs for the two shapes).
fn asked_request<'r>(
    uri: &'r axum::http::Uri,
    method: &'r Method,
    headers: &'r HeaderMap,
    trusted: bool,
) -> Asked<'r> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| std::str::from_utf8(v.as_bytes()).map_err(|_| TargetError::InvalidUtf8))
            .transpose()
    };
    let is_safe = |m: &str| m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("HEAD");
    let forwarded = |name: &str| if trusted { text(name) } else { Ok(None) };
    let path_and_query = uri.path_and_query().map_or("", |pq| pq.as_str());
    let rest = path_and_query.strip_prefix(PREFIX).unwrap_or_default();

    let target = (|| {
        let proto = forwarded("x-forwarded-proto")?;
        let uri_header = forwarded("x-forwarded-uri")?;
        if rest.is_empty() || rest.starts_with('?') {
            // Traefik / Caddy.
            match (forwarded("x-forwarded-host")?, uri_header) {
                (Some(_), Some(original)) if conditions_are_the_clients(uri, original) => {
                    Err(TargetError::Missing)
                }
                (Some(host), Some(uri)) => {
                    Target::from_parts(proto.unwrap_or(DEFAULT_SCHEME), host, uri)
                }
                _ => Err(TargetError::Missing),
            }
        } else if uri_header.is_some() {
            Err(TargetError::Missing)
        } else {
            // Envoy: Host (HTTP/1.1) or :authority (HTTP/2) + the rest.
            let host = match text(header::HOST.as_str())? {
                Some(host) => host,
                None => uri
                    .authority()
                    .map(|a| a.as_str())
                    .ok_or(TargetError::Missing)?,
            };
            Target::from_parts(proto.unwrap_or(DEFAULT_SCHEME), host, rest)
        }
    })();

    let forwarded_method = if rest.is_empty() || rest.starts_with('?') {
        forwarded("x-forwarded-method").ok().flatten()
    } else {
        None
    };
    let safe_method =
        forwarded_method.map_or(*method == Method::GET || *method == Method::HEAD, is_safe);
    Asked {
        target,
        safe_method,
        method: Some(forwarded_method.unwrap_or(method.as_str())),
    }
}

/// Caddy's `forward_auth` keeps the client's query when its `uri` sets
/// none: `allowed_…` conditions in a query equal to the original URL's
/// are the client's, not the proxy's, and the request is refused rather
/// than decided with them (a client could otherwise write the policy of a
/// host without a route). A `uri /forward-auth?allowed_groups=…` replaces
/// the client's query, so the two differ.
fn conditions_are_the_clients(uri: &axum::http::Uri, original: &str) -> bool {
    uri.query().is_some_and(|query| {
        query.contains("allowed_") && original.split_once('?').map(|(_, q)| q) == Some(query)
    })
}

/// The answer as an HTTP response: on allow, 200 with the identity headers
/// (Traefik's `authResponseHeaders`, Envoy's `allowed_upstream_headers`),
/// the client's headers (Traefik's `addAuthCookiesToResponse`, Envoy's
/// `allowed_client_headers_on_success`) and the headers to remove; on a
/// refusal, the client's answer itself.
fn render(answer: Answer) -> Response {
    let allows = answer.allows();
    let mut response = (answer.status, answer.body).into_response();
    let headers = response.headers_mut();
    headers.extend(answer.upstream);
    headers.extend(answer.client);
    if allows {
        if let Ok(list) = HeaderValue::from_str(&answer.remove.join(", ")) {
            headers.insert(HEADERS_TO_REMOVE, list);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::Uri;

    use super::super::request::header_map as headers;

    fn asked(uri: &str, method: Method, pairs: &[(&str, &str)], trusted: bool) -> (String, bool) {
        let uri: Uri = uri.parse().unwrap();
        let h = headers(pairs);
        let a = asked_request(&uri, &method, &h, trusted);
        let url = match a.target {
            Ok(t) => t.return_url(),
            Err(e) => format!("error: {e:?}"),
        };
        (url, a.safe_method)
    }

    /// Envoy: Host + the path after the prefix, https unless a trusted
    /// proxy says otherwise; X-Forwarded-Proto from anyone else is ignored.
    #[test]
    fn envoy_shape_uses_host_and_the_rest_of_the_path() {
        let (url, safe) = asked(
            "/forward-auth/some/path?q=1",
            Method::GET,
            &[("host", "App.Example.test"), ("x-forwarded-proto", "http")],
            false,
        );
        assert_eq!(url, "https://app.example.test/some/path?q=1");
        assert!(safe);
        let (url, safe) = asked(
            "/forward-auth/x",
            Method::POST,
            &[
                ("host", "app.example.test:8080"),
                ("x-forwarded-proto", "http"),
            ],
            true,
        );
        assert_eq!(url, "http://app.example.test:8080/x");
        assert!(!safe);
    }

    /// Traefik/Caddy: the X-Forwarded-* quadruple, from trusted peers only.
    #[test]
    fn proxy_shape_needs_a_trusted_peer() {
        let fwd = [
            ("host", "authgate.internal"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.test"),
            ("x-forwarded-uri", "/admin?x=1"),
            ("x-forwarded-method", "POST"),
        ];
        let (url, safe) = asked("/forward-auth", Method::GET, &fwd, true);
        assert_eq!(url, "https://app.example.test/admin?x=1");
        assert!(!safe, "X-Forwarded-Method decides 302 vs 303");
        let (url, _) = asked("/forward-auth", Method::GET, &fwd, false);
        assert_eq!(url, "error: Missing");
    }

    /// Conditions in a query that is the original URL's own (Caddy passing
    /// the client's query on) are refused; the proxy's own, or a client
    /// query without conditions, are not.
    #[test]
    fn the_clients_query_is_not_the_proxys_conditions() {
        let fwd = |uri: &'static str| {
            [
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "app.example.test"),
                ("x-forwarded-uri", uri),
            ]
        };
        let url =
            |auth: &str, original: &'static str| asked(auth, Method::GET, &fwd(original), true).0;
        assert_eq!(
            url("/forward-auth?allowed_groups=x", "/p?allowed_groups=x"),
            "error: Missing"
        );
        assert_eq!(
            url("/forward-auth?allowed_groups=devops", "/p?allowed_groups=x"),
            "https://app.example.test/p?allowed_groups=x"
        );
        assert_eq!(
            url("/forward-auth?q=1", "/p?q=1"),
            "https://app.example.test/p?q=1"
        );
        assert_eq!(
            url("/forward-auth?allowed_groups=devops", "/p"),
            "https://app.example.test/p"
        );
    }

    /// A trusted peer that sends X-Forwarded-Uri to a /forward-auth/<path>
    /// URL is refused rather than guessed at; an untrusted one's header is
    /// simply ignored.
    #[test]
    fn conflicting_shapes_are_refused() {
        let h = [
            ("host", "app.example.test"),
            ("x-forwarded-host", "app.example.test"),
            ("x-forwarded-uri", "/admin"),
        ];
        let (url, _) = asked("/forward-auth/", Method::GET, &h, true);
        assert_eq!(url, "error: Missing");
        let (url, _) = asked("/forward-auth/public", Method::GET, &h, false);
        assert_eq!(url, "https://app.example.test/public");
    }
}
