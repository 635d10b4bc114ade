//! The HTTP front ends' request translation: arbitrary header values
//! (`X-Original-URL`, `X-Forwarded-Proto`/`-Host`/`-Uri`/`-Method`,
//! `Host`, `Cookie`, `Accept`, …) through `http::original_target` (what
//! `/oauth2/auth` calls) and through the router itself, for `/oauth2/auth`
//! and `/forward-auth[/…]`, from a trusted or an untrusted peer.
//!
//! Input is text: a first line `METHOD PATH PEER`, then `name: value`
//! lines; `@SESSION@` stands for the live session cookie.
//!
//! Invariants: never a 5xx; `/oauth2/auth` answers only 200, 401 or 403
//! (405 to a method other than GET/HEAD);
//! a 200 is only given where the policy lets the user through (nobody, or
//! alice when her cookie is in the request); a parsed target's return URL
//! parses back to the same host, port and canonical path (the URL the user
//! is sent back to is the one that was decided).
#![no_main]

use std::net::{IpAddr, SocketAddr};

use authgate::http::original_target;
use authgate::policy::Target;
use authgate_fuzz::{FIXTURE, alice, policy_allows};
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = &*FIXTURE;
    let text = fixture.with_session(text);
    let signed_in = text.contains(&fixture.session_cookie);
    let mut lines = text.split('\n');
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method =
        Method::from_bytes(first.next().unwrap_or_default().as_bytes()).unwrap_or(Method::GET);
    // Only the decision endpoints: the login endpoints would call the
    // provider.
    let path = first
        .next()
        .filter(|p| p.starts_with("/forward-auth"))
        .unwrap_or("/oauth2/auth");
    let peer: Option<IpAddr> = first.next().and_then(|p| p.parse().ok());
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim_start().as_bytes()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }

    let app = &fixture.app;
    let trusted = app.is_trusted(peer);
    let target = original_target(&headers, trusted);
    if let Ok(target) = &target {
        check_return_url(target);
    }

    let Ok(mut request) = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .body(Body::empty())
    else {
        return;
    };
    *request.headers_mut() = headers.clone();
    if let Some(ip) = peer {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    }
    let router = authgate::http::router(app.clone());
    let response = fixture
        .runtime
        .block_on(router.oneshot(request))
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    assert!(!status.is_server_error(), "{text:?} -> {status}");
    if path == "/oauth2/auth" {
        // nginx's auth_request always sends GET; other methods are 405.
        let read = method == Method::GET || method == Method::HEAD;
        assert!(
            matches!(
                status,
                StatusCode::OK | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) || (!read && status == StatusCode::METHOD_NOT_ALLOWED),
            "{text:?} -> {status}"
        );
        if status == StatusCode::OK {
            let identity = signed_in.then(alice);
            match &target {
                Ok(target) => assert!(
                    policy_allows(target, identity.as_ref()),
                    "{text:?}: 200 for {target:?}"
                ),
                Err(e) => panic!("{text:?}: 200 without a target ({e})"),
            }
        }
    } else if status == StatusCode::OK && !signed_in {
        // The only public route is exactly hello.example.com/healthz.
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("healthz") || lower.contains('%'),
            "{text:?}: 200"
        );
    }
});

/// The return URL names what was decided: parsed again, the same scheme,
/// host, port and canonical path.
fn check_return_url(target: &Target<'_>) {
    assert!(target.path.starts_with('/'), "{target:?}");
    let url = target.return_url();
    match Target::parse(&url) {
        Ok(again) => {
            assert_eq!(
                (again.scheme, &again.host, again.port, &again.path),
                (target.scheme, &target.host, target.port, &target.path),
                "{url:?}"
            );
        }
        Err(e) => panic!("return URL {url:?} of {target:?} does not parse: {e}"),
    }
}
