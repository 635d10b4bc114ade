//! What every HTTP handler reads off a request the same way: the peer, the
//! client's address, the proxy's request id, the session cookies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use ipnet::IpNet;

use crate::config::is_trusted_proxy;

/// The proxy's request id header (nginx `$request_id`, Envoy's own).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

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

/// The client's address, for the policy's `source_ip`: from a peer in
/// `trusted_proxies` (`trusted`), the right-most `X-Forwarded-For` address
/// that is not itself a trusted proxy, else `X-Real-IP`; from any other peer,
/// the peer itself, since its headers are the client's to forge.
///
/// `None` (a `source_ip` rule then admits nobody) when the peer is unknown,
/// when a trusted peer names no client, or when the address that counts is
/// not one (`unknown`, garbage): a proxy is never mistaken for its client.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !is_trusted_proxy(trusted, peer) {
        return Some(peer);
    }
    let mut forwarded = headers.get_all(X_FORWARDED_FOR).iter().rev().peekable();
    if forwarded.peek().is_none() {
        return headers
            .get(X_REAL_IP)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_ip);
    }
    // The right-most hop was added by the proxy nearest us: walk left past
    // the trusted ones. A chain of trusted proxies only: its left-most.
    let mut last = None;
    for value in forwarded {
        for item in value.to_str().ok()?.rsplit(',') {
            let ip = parse_ip(item)?;
            if !is_trusted_proxy(trusted, ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
    }
    last
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:5000`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:5000`, with blanks around.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match text.parse::<SocketAddr>() {
            Ok(addr) => addr.ip(),
            Err(_) => text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))?
                .parse::<std::net::Ipv6Addr>()
                .ok()?
                .into(),
        },
    };
    Some(ip.to_canonical())
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

    /// Who the client is, for each peer and header combination.
    #[test]
    fn client_ip_table() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // (peer, request headers, the client's address authgate takes)
        type Case<'a> = (Option<IpAddr>, &'a [(&'a str, &'a str)], Option<IpAddr>);
        let cases: &[Case] = &[
            // An untrusted peer's headers are not believed: the peer is the client.
            (
                Some(stranger),
                &[("x-forwarded-for", "10.1.1.1")],
                Some(stranger),
            ),
            (Some(stranger), &[("x-real-ip", "10.1.1.1")], Some(stranger)),
            (Some(stranger), &[], Some(stranger)),
            (None, &[("x-forwarded-for", "192.0.2.1")], None),
            // A trusted peer: the right-most untrusted hop.
            (
                Some(proxy),
                &[("x-forwarded-for", "192.0.2.1")],
                ip("192.0.2.1"),
            ),
            (
                Some(proxy),
                &[("x-forwarded-for", "6.6.6.6, 192.0.2.1, 10.0.0.9")],
                ip("192.0.2.1"),
            ),
            (
                Some(proxy),
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "192.0.2.1,10.2.2.2"),
                ],
                ip("192.0.2.1"),
            ),
            (
                Some(proxy),
                &[("x-forwarded-for", "10.3.3.3, 10.0.0.9")],
                ip("10.3.3.3"),
            ),
            // Ports, IPv6, IPv4-mapped IPv6.
            (
                Some(proxy),
                &[("x-forwarded-for", "192.0.2.1:4711")],
                ip("192.0.2.1"),
            ),
            (
                Some(proxy),
                &[("x-forwarded-for", "2001:db8::1, fd00::2")],
                ip("2001:db8::1"),
            ),
            (
                Some(proxy),
                &[("x-forwarded-for", "[2001:db8::1]:443")],
                ip("2001:db8::1"),
            ),
            (
                Some(proxy),
                &[("x-forwarded-for", "[2001:db8::1]")],
                ip("2001:db8::1"),
            ),
            (
                Some(proxy),
                &[("x-forwarded-for", "::ffff:192.0.2.1")],
                ip("192.0.2.1"),
            ),
            (
                Some("::ffff:10.0.0.5".parse().unwrap()),
                &[("x-real-ip", "192.0.2.1")],
                ip("192.0.2.1"),
            ),
            // X-Real-IP only without X-Forwarded-For.
            (Some(proxy), &[("x-real-ip", "192.0.2.9")], ip("192.0.2.9")),
            (
                Some(proxy),
                &[("x-real-ip", "192.0.2.9"), ("x-forwarded-for", "192.0.2.1")],
                ip("192.0.2.1"),
            ),
            // A trusted peer naming no client, or garbage where the client
            // should be: nobody.
            (Some(proxy), &[], None),
            (Some(proxy), &[("x-forwarded-for", "unknown")], None),
            (Some(proxy), &[("x-forwarded-for", "192.0.2.1, ")], None),
            (
                Some(proxy),
                &[("x-forwarded-for", "192.0.2.1, 10.0.0.1 x")],
                None,
            ),
            (Some(proxy), &[("x-forwarded-for", "")], None),
            (Some(proxy), &[("x-real-ip", "192.0.2.1/24")], None),
            (Some(proxy), &[("x-forwarded-for", "[192.0.2.1]")], None),
            // Garbage left of the client is never read.
            (
                Some(proxy),
                &[("x-forwarded-for", "garbage, 192.0.2.1")],
                ip("192.0.2.1"),
            ),
        ];
        for (peer, pairs, want) in cases {
            let h = header_map(pairs);
            assert_eq!(client_ip(&h, *peer, &trusted), *want, "{peer:?} {pairs:?}");
        }
        // No trusted_proxies: every peer is untrusted.
        let h = header_map(&[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(client_ip(&h, Some(proxy), &[]), Some(proxy));
        // A header value that is not text.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"192.0.2.\xff").unwrap(),
        );
        assert_eq!(client_ip(&h, Some(proxy), &trusted), None);
    }
}
