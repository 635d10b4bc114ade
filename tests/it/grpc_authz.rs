//! Envoy's gRPC `Check` against the in-process stack, with envoy-types'
//! tonic client sending the `CheckRequest`s Envoy would send.

use std::collections::HashMap;
use std::net::SocketAddr;

use authgate::policy::Target;
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, HeaderAppendAction, HttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::fixture::{COOKIE, Stack, default_routes, route};

pub const CHROME_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The stack plus authgate's gRPC listener on an ephemeral port.
pub struct GrpcStack {
    pub stack: Stack,
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl GrpcStack {
    pub async fn start() -> GrpcStack {
        GrpcStack::on(Stack::start().await).await
    }

    pub async fn on(stack: Stack) -> GrpcStack {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(authgate::grpc::serve(stack.app.clone(), listener, async {
            let _ = stopped.await;
        }));
        GrpcStack {
            stack,
            addr,
            _stop: stop,
        }
    }

    pub async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.client()
            .await
            .check(request)
            .await
            .expect("every decision is a CheckResponse, never a gRPC error")
            .into_inner()
    }
}

/// A CheckRequest as Envoy builds it (headers in the `headers` map).
pub fn envoy_request(method: &str, url: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let parsed = url::Url::parse(url).unwrap();
    let host = match parsed.port() {
        Some(port) => format!("{}:{port}", parsed.host_str().unwrap()),
        None => parsed.host_str().unwrap().to_owned(),
    };
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    raw_request(parsed.scheme(), &host, &path, method, headers)
}

/// A CheckRequest from the parts as given (no URL normalisation).
pub fn raw_request(
    scheme: &str,
    host: &str,
    path: &str,
    method: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    let mut map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
        .collect();
    map.insert(":authority".into(), host.into());
    map.insert(":path".into(), path.into());
    map.insert(":method".into(), method.into());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "1".into(),
                    method: method.into(),
                    headers: map,
                    path: path.into(),
                    host: host.into(),
                    scheme: scheme.into(),
                    protocol: "HTTP/1.1".into(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

/// The same request, headers moved to `header_map` with raw byte values (Envoy's
/// `encode_raw_headers: true`).
pub fn as_header_map(mut request: CheckRequest) -> CheckRequest {
    let http = request
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    let mut headers: Vec<HeaderValue> = std::mem::take(&mut http.headers)
        .into_iter()
        .map(|(key, value)| HeaderValue {
            key,
            value: String::new(),
            raw_value: value.into_bytes(),
        })
        .collect();
    headers.sort_by(|a, b| a.key.cmp(&b.key));
    http.header_map = Some(HeaderMap { headers });
    request
}

pub fn cookie(value: &str) -> String {
    format!("other=1; {COOKIE}={value}")
}

/// What a test looks at in a CheckResponse.
#[derive(Debug, PartialEq)]
pub struct Seen {
    pub grpc_code: i32,
    pub http_status: u16,
    pub headers: HashMap<String, String>,
    pub remove: Vec<String>,
    pub body: String,
}

pub fn seen(response: &CheckResponse) -> Seen {
    let grpc_code = response.status.as_ref().map_or(-1, |s| s.code);
    match response.http_response.as_ref().expect("http_response") {
        HttpResponse::OkResponse(ok) => {
            for h in &ok.headers {
                assert_eq!(
                    h.append_action,
                    HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                    "identity headers must overwrite"
                );
            }
            Seen {
                grpc_code,
                http_status: 200,
                headers: ok
                    .headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect(),
                remove: ok.headers_to_remove.clone(),
                body: String::new(),
            }
        }
        HttpResponse::DeniedResponse(denied) => Seen {
            grpc_code,
            http_status: denied.status.as_ref().map_or(0, |s| s.code as u16),
            headers: denied
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            remove: Vec::new(),
            body: denied.body.clone(),
        },
        HttpResponse::ErrorResponse(_) => panic!("never an error_response"),
    }
}

const APP: &str = "https://app.example.test/some/path?q=1";

/// alice: OK (code 0), her identity overwriting, every `_` spelling
/// removed, the headers that are set not removed (Envoy removes after
/// setting).
#[tokio::test]
async fn grpc_allows_with_identity_headers() {
    let s = GrpcStack::start().await;
    let alice = s.stack.login("alice@example.com", APP).await;
    let response = s
        .check(envoy_request(
            "GET",
            APP,
            &[
                ("accept", CHROME_ACCEPT),
                ("cookie", &cookie(&alice)),
                ("x-auth-request-email", "mallory@example.com"),
                ("x_auth_request_email", "mallory@example.com"),
            ],
        ))
        .await;
    let seen = seen(&response);
    assert_eq!(seen.grpc_code, 0);
    assert_eq!(seen.headers["x-auth-request-email"], "alice@example.com");
    assert_eq!(seen.headers["x-auth-request-preferred-username"], "alice");
    assert_eq!(seen.headers["x-auth-request-groups"], "devops,admins");
    assert!(!seen.headers["x-auth-request-user"].is_empty());
    for spoofed in [
        "x_auth_request_email",
        "x-auth_request-email",
        "x_auth_request_user",
    ] {
        assert!(seen.remove.iter().any(|r| r == spoofed), "{spoofed}");
    }
    for set in seen.headers.keys() {
        assert!(
            !seen.remove.contains(set),
            "{set} would be removed after being set"
        );
    }
}

/// Without a session: a browser gets 302 to the sign-in URL that returns
/// to the original URL; a POSTing browser 303; programs (JSON, XHR,
/// gRPC-Web, curl's */*) 401 with WWW-Authenticate. None is a gRPC error.
#[tokio::test]
async fn grpc_sends_browsers_to_sign_in_and_programs_401() {
    let s = GrpcStack::start().await;
    let expected = s
        .stack
        .app
        .decider()
        .sign_in_url(&Target::parse(APP).unwrap().return_url());
    let seen_for = |method: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let request = envoy_request(method, APP, &headers);
        let s = &s;
        async move { seen(&s.check(request).await) }
    };
    let browser = seen_for("GET", vec![("accept", CHROME_ACCEPT)]).await;
    assert_eq!(browser.http_status, 302);
    assert_eq!(browser.grpc_code, tonic::Code::Unauthenticated as i32);
    assert_eq!(browser.headers["location"], expected);
    let post = seen_for("POST", vec![("accept", CHROME_ACCEPT)]).await;
    assert_eq!(post.http_status, 303);
    for headers in [
        vec![("accept", "application/json")],
        vec![("accept", "*/*")],
        vec![
            ("accept", CHROME_ACCEPT),
            ("x-requested-with", "XMLHttpRequest"),
        ],
        vec![
            ("accept", CHROME_ACCEPT),
            ("content-type", "application/grpc-web+proto"),
        ],
    ] {
        let program = seen_for("GET", headers.clone()).await;
        assert_eq!(program.http_status, 401, "{headers:?}");
        assert!(program.headers["www-authenticate"].starts_with("Bearer"));
        assert!(!program.headers.contains_key("location"));
    }
}

/// bob is not in the route's group, carol's host has no route, a garbage
/// cookie is no session: 403, 403, and never an allow.
#[tokio::test]
async fn grpc_denies_by_policy_and_never_allows_garbage() {
    let s = GrpcStack::start().await;
    let bob = s.stack.login("bob@example.com", APP).await;
    let denied = seen(
        &s.check(envoy_request(
            "GET",
            APP,
            &[("accept", CHROME_ACCEPT), ("cookie", &cookie(&bob))],
        ))
        .await,
    );
    assert_eq!(denied.http_status, 403);
    assert_eq!(denied.grpc_code, tonic::Code::PermissionDenied as i32);
    assert!(!denied.body.is_empty());
    assert!(
        !denied
            .headers
            .keys()
            .any(|k| k.starts_with("x-auth-request"))
    );

    let no_route = seen(
        &s.check(envoy_request(
            "GET",
            "https://elsewhere.example.test/",
            &[("cookie", &cookie(&bob))],
        ))
        .await,
    );
    assert_eq!(no_route.http_status, 403);

    for garbage in ["x", "AAAA", &"A".repeat(4000), "%00", &bob[..bob.len() / 2]] {
        let seen = seen(
            &s.check(envoy_request(
                "GET",
                APP,
                &[("accept", CHROME_ACCEPT), ("cookie", &cookie(garbage))],
            ))
            .await,
        );
        assert_eq!(seen.http_status, 302, "garbage cookie {garbage:.20}");
    }
}

/// `header_map` with raw byte values (encode_raw_headers) gives the same
/// answers as the `headers` map, for allow, redirect, 401 and 403.
#[tokio::test]
async fn grpc_header_map_and_headers_decide_alike() {
    let s = GrpcStack::start().await;
    let alice = s.stack.login("alice@example.com", APP).await;
    let bob = s.stack.login("bob@example.com", APP).await;
    let alice_cookie = cookie(&alice);
    let bob_cookie = cookie(&bob);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("accept", CHROME_ACCEPT), ("cookie", &alice_cookie)],
        vec![("accept", CHROME_ACCEPT)],
        vec![("accept", "application/json")],
        vec![("cookie", &bob_cookie)],
    ];
    let mut statuses = Vec::new();
    for headers in cases {
        let request = envoy_request("GET", APP, &headers);
        let by_map = seen(&s.check(request.clone()).await);
        let by_raw = seen(&s.check(as_header_map(request)).await);
        assert_eq!(by_map, by_raw, "{headers:?}");
        statuses.push(by_map.http_status);
    }
    assert_eq!(statuses, vec![200, 302, 401, 403]);
}

/// The host is compared canonically (upper case, default port), and the
/// path the way the upstream will route it: `//` merged, `%2e%2e` resolved.
/// A public prefix cannot be used to reach a guarded path.
#[tokio::test]
async fn grpc_canonicalises_host_and_path() {
    let mut open = route(0, "https://app.example.test", Some("/open"), &[]);
    open.allow_any_authenticated_user = false;
    open.allow_public_unauthenticated_access = true;
    let mut routes = vec![open];
    routes.extend(default_routes().into_iter().map(|mut r| {
        r.index += 1;
        r
    }));
    let s = GrpcStack::on(Stack::start_with(routes, |_| {}).await).await;
    let alice = s.stack.login("alice@example.com", APP).await;
    let status = |host: &'static str, path: &'static str, cookie: Option<String>| {
        let mut headers = vec![("accept", CHROME_ACCEPT.to_owned())];
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = raw_request("https", host, path, "GET", &headers);
        let s = &s;
        async move { seen(&s.check(request).await).http_status }
    };
    assert_eq!(
        status("APP.Example.TEST:443", "/some/path", Some(cookie(&alice))).await,
        200
    );
    assert_eq!(
        status("app.example.test:8443", "/some/path", Some(cookie(&alice))).await,
        403
    );
    assert_eq!(status("app.example.test", "/open//x", None).await, 200);
    assert_eq!(
        status("app.example.test", "/open/%2e%2e/secret", None).await,
        302
    );
    assert_eq!(
        status("app.example.test", "/open/%2E%2E/secret", None).await,
        302
    );
    assert_eq!(status("app.example.test", "//open/x", None).await, 200);
    // Climbing above the root is refused outright.
    assert_eq!(status("app.example.test", "/open/../../x", None).await, 403);
}

/// A CheckRequest without `attributes.request.http` (or without host or
/// path) is denied with 403, not answered with a gRPC error.
#[tokio::test]
async fn grpc_missing_attributes_deny_not_error() {
    let s = GrpcStack::start().await;
    let empty = seen(&s.check(CheckRequest::default()).await);
    assert_eq!(empty.http_status, 403);
    let no_host = seen(&s.check(raw_request("https", "", "/x", "GET", &[])).await);
    assert_eq!(no_host.http_status, 403);
    let bad_scheme = seen(
        &s.check(raw_request("gopher", "app.example.test", "/x", "GET", &[]))
            .await,
    );
    assert_eq!(bad_scheme.http_status, 403);
}

/// grpc.health.v1: the Authorization service and the server report SERVING.
#[tokio::test]
async fn grpc_health_reports_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let s = GrpcStack::start().await;
    let channel = Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let status = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

/// `server::run` with both listeners (what `authgate serve` runs) serves
/// HTTP and gRPC side by side and stops both, cleanly, on shutdown.
#[tokio::test]
async fn run_serves_http_and_grpc_and_stops_both() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let stack = Stack::start().await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = authgate::server::Listeners {
        grpc: Some(grpc),
        ..authgate::server::Listeners::http(http)
    };
    let server = tokio::spawn(authgate::server::run(stack.app.clone(), listeners, async {
        let _ = stopped.await;
    }));
    let health = stack
        .http
        .get(format!("http://{http_addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    stop.send(()).unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("both servers stop")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        TcpListener::bind(grpc_addr).await.is_ok(),
        "the gRPC port is released"
    );
}

/// `request` with Envoy's per-route `check_settings.context_extensions`.
fn with_extensions(mut request: CheckRequest, pairs: &[(&str, &str)]) -> CheckRequest {
    let attributes = request.attributes.as_mut().expect("attributes");
    for (key, value) in pairs {
        attributes
            .context_extensions
            .insert((*key).to_owned(), (*value).to_owned());
    }
    request
}

/// The route's `context_extensions` are conditions of their own: on a host
/// with a route both must allow; on a host without one they are the whole
/// policy (anonymous: sign in; a member: allowed; anyone else: 403); an
/// unknown `allowed_…` key refuses everyone; no route and no condition is
/// 403 as before.
#[tokio::test]
async fn grpc_context_extensions_are_the_proxys_conditions() {
    let s = GrpcStack::start().await;
    let alice = cookie(&s.stack.login("alice@example.com", APP).await);
    let bob = cookie(&s.stack.login("bob@example.com", APP).await);
    let status = |url: &'static str, who: &str, pairs: &'static [(&str, &str)]| {
        let mut headers = vec![("accept", CHROME_ACCEPT)];
        if !who.is_empty() {
            headers.push(("cookie", who));
        }
        let request = with_extensions(envoy_request("GET", url, &headers), pairs);
        let s = &s;
        async move { seen(&s.check(request).await) }
    };
    // app.example.test's route needs devops; alice has devops and admins.
    let admins = &[("allowed_groups", "admins")];
    let seen_alice = status(APP, &alice, admins).await;
    assert_eq!(seen_alice.http_status, 200);
    assert_eq!(
        seen_alice.headers["x-auth-request-email"],
        "alice@example.com"
    );
    let nobody = &[("allowed_groups", "nobody,auditors")];
    assert_eq!(status(APP, &alice, nobody).await.http_status, 403);
    let domain = &[("allowed_email_domains", "other.test")];
    assert_eq!(status(APP, &alice, domain).await.http_status, 403);
    let typo = &[("allowed_group", "devops")];
    assert_eq!(status(APP, &alice, typo).await.http_status, 403);

    // ops.example.test has no route: the conditions decide.
    const OPS: &str = "https://ops.example.test/dashboards";
    let devops = &[("allowed_groups", "devops"), ("unrelated", "x")];
    let member = status(OPS, &alice, devops).await;
    assert_eq!(member.http_status, 200);
    assert_eq!(member.headers["x-auth-request-groups"], "devops,admins");
    assert_eq!(status(OPS, &bob, devops).await.http_status, 403);
    let anonymous = status(OPS, "", devops).await;
    assert_eq!(anonymous.http_status, 302);
    assert!(
        anonymous.headers["location"].contains("/oauth2/start?rd="),
        "{anonymous:?}"
    );
    let email = &[("allowed_emails", "bob@example.com")];
    assert_eq!(status(OPS, &bob, email).await.http_status, 200);
    assert_eq!(status(OPS, &alice, email).await.http_status, 403);
    assert_eq!(status(OPS, &alice, &[]).await.http_status, 403);
}

/// `attributes.source.address` is the client's address for a `source_ip`
/// policy (`10.0.0.0/8` here): inside it the Check is allowed, outside it
/// or without a source it is refused (403, signing in would not help).
#[tokio::test]
async fn grpc_source_address_decides_source_ip() {
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;

    let stack = Stack::start_with(
        vec![crate::fixture::source_ip_route(
            0,
            "https://app.example.test",
            "10.0.0.0/8",
        )],
        |_| {},
    )
    .await;
    let s = GrpcStack::on(stack).await;
    let from = |ip: Option<&str>| {
        let mut request = envoy_request("GET", APP, &[("accept", "application/json")]);
        if let Some(ip) = ip {
            request.attributes.as_mut().expect("attributes").source = Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: ip.to_owned(),
                        ..SocketAddress::default()
                    })),
                }),
                ..Peer::default()
            });
        }
        let s = &s;
        async move { seen(&s.check(request).await).http_status }
    };
    assert_eq!(from(Some("10.1.2.3")).await, 200);
    assert_eq!(from(Some("192.0.2.1")).await, 403);
    assert_eq!(from(None).await, 403);
}
