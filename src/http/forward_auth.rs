//! `/forward-auth/*`: for proxies that hand our answer to the client —
//! Envoy's HTTP ext_authz (`path_prefix: /forward-auth`), Traefik
//! `ForwardAuth`, Caddy `forward_auth`.
//!
//! Unlike nginx, these proxies show a non-200 answer to the client as it is,
//! so a browser without a session gets the redirect to sign in from us, a
//! program gets 401 and a refused user 403. [`DirectAnswer`] is that shape,
//! shared with the Envoy gRPC front end so the two cannot drift.
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

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{peer_ip, session_cookie_values};
use crate::decision::{self, Client, Decision};
use crate::metrics::FrontEnd;
use crate::policy::{Target, TargetError};
use crate::server::App;

/// The route prefix (Envoy's `path_prefix`).
pub const PREFIX: &str = "/forward-auth";

/// Envoy's HTTP mode reads this response header as the list of request
/// headers to remove on allow.
pub const HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// Scheme assumed when the proxy does not say (Envoy HTTP mode without a
/// trusted `X-Forwarded-Proto`).
const DEFAULT_SCHEME: &str = "https";

/// A decision as answered to a proxy that passes it on to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum DirectAnswer {
    /// Let the request through: set `upstream` on it (overwriting), and
    /// remove the headers named in `remove` (client-sent identity copies).
    /// `client`: headers for the client's response (the re-issued session
    /// cookie after a secret rotation).
    Allow {
        upstream: Vec<(HeaderName, HeaderValue)>,
        remove: Vec<Cow<'static, str>>,
        client: Vec<(HeaderName, HeaderValue)>,
    },
    /// Answer the client with `status`, these headers and this short body.
    Deny {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: &'static str,
    },
}

impl DirectAnswer {
    /// Renders `decision` for `client`; `safe_method` (GET/HEAD) chooses
    /// 302 over 303 for the sign-in redirect, so a browser that POSTed is
    /// sent on with a GET.
    pub fn new(decision: &Decision, client: Client, safe_method: bool) -> DirectAnswer {
        let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match decision {
            Decision::Allow { .. } => {
                let upstream = decision.identity_headers();
                let remove = decision.headers_to_remove(&upstream);
                let client = decision
                    .set_cookie()
                    .map(|cookie| (header::SET_COOKIE, cookie.clone()))
                    .into_iter()
                    .collect();
                DirectAnswer::Allow {
                    upstream,
                    remove,
                    client,
                }
            }
            Decision::SignIn {
                sign_in_url,
                invalid_token,
                ..
            } => {
                match (client, HeaderValue::from_str(sign_in_url)) {
                    // A refused token is a program's: never a login page.
                    (Client::Browser, Ok(location)) if !invalid_token => DirectAnswer::Deny {
                        status: if safe_method {
                            StatusCode::FOUND
                        } else {
                            StatusCode::SEE_OTHER
                        },
                        headers: vec![(header::LOCATION, location), no_store],
                        body: "",
                    },
                    _ => DirectAnswer::Deny {
                        status: StatusCode::UNAUTHORIZED,
                        headers: vec![
                            (
                                header::WWW_AUTHENTICATE,
                                decision::www_authenticate(*invalid_token),
                            ),
                            no_store,
                        ],
                        body: "sign-in required\n",
                    },
                }
            }
            Decision::Deny { .. } => DirectAnswer::Deny {
                status: StatusCode::FORBIDDEN,
                headers: vec![no_store],
                body: "forbidden\n",
            },
            // A fault, not a decision: fail closed, and say so.
            Decision::Unavailable => DirectAnswer::Deny {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers: vec![no_store],
                body: "authorization temporarily unavailable\n",
            },
        }
    }
}

/// `ANY /forward-auth` and `/forward-auth/*`.
pub(super) async fn forward_auth_any(State(app): State<Arc<App>>, request: Request) -> Response {
    let trusted = app.is_trusted(peer_ip(&request));
    let headers = request.headers();
    let asked = asked_request(request.uri(), request.method(), headers, trusted);
    let client = Client::classify(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let asker = decision::Asker {
        front_end: FrontEnd::ForwardAuth,
        request_id: super::request_id(headers),
    };
    let decision = app
        .decider
        .decide_for(
            asker,
            decision::Request {
                target: asked.target,
                session_cookies: session_cookie_values(headers, &app.config.cookie.name),
                method: asked.method,
                authorization: header("authorization"),
                preflight: decision::is_preflight(asked.method, header),
            },
        )
        .await;
    render(DirectAnswer::new(&decision, client, asked.safe_method))
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

fn render(answer: DirectAnswer) -> Response {
    match answer {
        DirectAnswer::Allow {
            upstream,
            remove,
            client,
        } => {
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            headers.extend(upstream);
            // Traefik (`addAuthCookiesToResponse`) and Envoy
            // (`allowed_client_headers_on_success`) pass these on.
            headers.extend(client);
            if let Ok(list) = HeaderValue::from_str(&remove.join(", ")) {
                headers.insert(HEADERS_TO_REMOVE, list);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        DirectAnswer::Deny {
            status,
            headers,
            body,
        } => {
            let mut response = (status, body).into_response();
            response.headers_mut().extend(headers);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::Uri;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

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

    /// Browser: 302 for GET, 303 otherwise; program: 401 with
    /// WWW-Authenticate; denied: 403; store down: 503.
    #[test]
    fn answers_by_decision_and_client() {
        let sign_in = Decision::SignIn {
            route: crate::policy::RouteId(0),
            sign_in_url: "https://auth.example.test/oauth2/start?rd=x".into(),
            invalid_token: false,
        };
        let status = |d: &Decision, c, safe| match DirectAnswer::new(d, c, safe) {
            DirectAnswer::Deny { status, .. } => status.as_u16(),
            DirectAnswer::Allow { .. } => 200,
        };
        assert_eq!(status(&sign_in, Client::Browser, true), 302);
        assert_eq!(status(&sign_in, Client::Browser, false), 303);
        assert_eq!(status(&sign_in, Client::Program, true), 401);
        let DirectAnswer::Deny { headers, .. } = DirectAnswer::new(&sign_in, Client::Program, true)
        else {
            panic!("deny")
        };
        assert!(headers.iter().any(|(n, _)| n == header::WWW_AUTHENTICATE));
        // A refused Bearer token: 401 with the reason, even for a browser.
        let refused = Decision::SignIn {
            route: crate::policy::RouteId(0),
            sign_in_url: "https://auth.example.test/oauth2/start?rd=x".into(),
            invalid_token: true,
        };
        let DirectAnswer::Deny {
            status: refused_status,
            headers,
            ..
        } = DirectAnswer::new(&refused, Client::Browser, true)
        else {
            panic!("deny")
        };
        assert_eq!(refused_status, StatusCode::UNAUTHORIZED);
        let challenge = &headers
            .iter()
            .find(|(n, _)| n == header::WWW_AUTHENTICATE)
            .unwrap()
            .1;
        assert_eq!(
            challenge,
            "Bearer realm=\"authgate\", error=\"invalid_token\""
        );
        let deny = Decision::Deny {
            route: None,
            session: None,
            reason: decision::Refusal::NoRoute,
        };
        assert_eq!(status(&deny, Client::Browser, true), 403);
        assert_eq!(status(&Decision::Unavailable, Client::Browser, true), 503);
    }
}
