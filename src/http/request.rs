//! What every HTTP handler reads off a request the same way: the peer, the
//! proxy's request id, the session cookies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// The proxy's request id header (nginx `$request_id`, Envoy's own).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The proxy's `X-Request-Id`, when it is fit to log.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&str> {
    crate::telemetry::request_id(headers.get(X_REQUEST_ID).map(HeaderValue::as_bytes))
}

/// The TCP peer, when the server attached it (not in `oneshot` tests).
pub(crate) fn peer_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The client's address as the proxy reported it — `X-Real-IP`, else the
/// last `X-Forwarded-For` hop (the one that proxy added) — when `trusted`
/// (the peer is in `trusted_proxies`), else the peer itself. Shown with a
/// session, never used to decide.
pub(crate) fn reported_client(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: bool,
) -> Option<IpAddr> {
    if !trusted {
        return peer;
    }
    let real_ip = header_text(headers, "x-real-ip").map(str::trim);
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .map(str::trim);
    real_ip
        .or(forwarded)
        .and_then(|text| text.parse().ok())
        .or(peer)
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

/// A request header as text, if it is there and UTF-8.
pub(crate) fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header map from `(name, value)` pairs, for the front ends' tests.
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Behind a trusted proxy the address it reports is taken (X-Real-IP
    /// first, else its X-Forwarded-For hop); from anyone else, or when the
    /// header is garbage, the peer.
    #[test]
    fn reported_client_believes_trusted_proxies_only() {
        let peer = Some(IpAddr::from([10, 0, 0, 1]));
        let h = header_map(&[
            ("x-forwarded-for", "198.51.100.9, 203.0.113.5"),
            ("x-real-ip", "203.0.113.7"),
        ]);
        let ip =
            |h: &HeaderMap, trusted| reported_client(h, peer, trusted).map(|ip| ip.to_string());
        assert_eq!(ip(&h, true).as_deref(), Some("203.0.113.7"));
        assert_eq!(ip(&h, false).as_deref(), Some("10.0.0.1"));
        let h = header_map(&[("x-forwarded-for", "198.51.100.9, 203.0.113.5")]);
        assert_eq!(ip(&h, true).as_deref(), Some("203.0.113.5"));
        let h = header_map(&[("x-real-ip", "not an address")]);
        assert_eq!(ip(&h, true).as_deref(), Some("10.0.0.1"));
    }

    /// The session cookie is found among others, in every Cookie header, and
    /// a cookie whose name merely starts with ours is not taken.
    #[test]
    fn finds_every_session_cookie_value() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; _authgate=first; _authgate_login_x=no"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("_authgate=\"second\""),
        );
        let values: Vec<_> = session_cookie_values(&h, "_authgate").collect();
        assert_eq!(values, vec!["first", "second"]);
    }
}
