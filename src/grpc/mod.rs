//! Envoy `ext_authz` over gRPC: `envoy.service.auth.v3.Authorization/Check`,
//! plus `grpc.health.v1.Health` and server reflection (so `grpcurl` can call
//! `Check` without Envoy's `.proto` files).
//!
//! Like the HTTP front ends this only translates: `attributes.request.http`
//! (`scheme`, `host`, `path` with its query, `method`, and the headers from
//! `headers` or — with Envoy's `encode_raw_headers` — `header_map`) →
//! [`decision::Request`] → [`Answer`] in [`Mode::Direct`] → `CheckResponse`.
//!
//! Every decision, including "the session store is down", is an `Ok`
//! `CheckResponse` with an explicit HTTP status: a gRPC error would make
//! Envoy answer its `status_on_error` instead of ours.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::{
    AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::google::rpc;
use tokio::net::TcpListener;
use tonic::codegen::{Body, BoxFuture, StdError};
use tonic::server::NamedService;

use crate::app::App;
use crate::decision::{self, Answer, Client, Mode};
use crate::listener::{self, Phase, Role, Shutdown};
use crate::metrics::FrontEnd;
use crate::policy::ProxyConditions;
use crate::policy::{Target, TargetError};
use crate::telemetry::Asker;

mod reply;
pub use reply::Reply;

/// Envoy's descriptors for `external_auth.proto` and everything it imports,
/// served by reflection. Generated from the `.proto` files the envoy-types
/// crate bundles; a test regenerates it and fails when it is stale.
pub const ENVOY_AUTHZ_DESCRIPTORS: &[u8] = include_bytes!("envoy_authz.protoset");

/// Why the gRPC listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("reflection descriptors: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Io(#[from] std::io::Error),
}

/// The `Authorization` service.
pub struct AuthzService {
    app: Arc<App>,
}

impl AuthzService {
    pub fn new(app: Arc<App>) -> AuthzService {
        AuthzService { app }
    }

    /// Decides one `CheckRequest`. Never fails: a request without the
    /// attributes needed is refused with 403.
    pub async fn answer(&self, request: &CheckRequest) -> Reply {
        let attributes = request.attributes.as_ref();
        let http = attributes
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        // The route's `check_settings.context_extensions`: Envoy's
        // configuration, never the client.
        let conditions = attributes.map_or(ProxyConditions::NONE, |a| {
            ProxyConditions::from_pairs(
                a.context_extensions
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
        });
        let empty = HashMap::new();
        let headers = match http {
            Some(http) => ClientHeaders::of(&http.headers, http.header_map.as_ref()),
            None => ClientHeaders::Map(&empty),
        };
        let target = match http {
            Some(http) if !http.host.is_empty() && !http.path.is_empty() => {
                Target::from_parts(&http.scheme, &http.host, &http.path)
            }
            _ => {
                tracing::debug!("Check without attributes.request.http host and path: refused");
                Err(TargetError::Missing)
            }
        };
        let method = http
            .map(|http| http.method.as_str())
            .filter(|m| !m.is_empty());
        let asker = Asker {
            front_end: FrontEnd::Grpc,
            request_id: crate::telemetry::request_id(
                headers.get("x-request-id").map(str::as_bytes),
            ),
            // Envoy passes the W3C trace context as request headers.
            trace: crate::traces::TraceHeaders::read(|name| headers.get(name).map(str::as_bytes)),
        };
        let decision = self
            .app
            .decide(
                asker,
                decision::Request {
                    target: &target,
                    session_cookies: headers.cookie_values(&self.app.config().cookie.name),
                    method,
                    authorization: headers.get("authorization"),
                    preflight: decision::is_preflight(method, |name| headers.get(name)),
                    source_ip: attributes.and_then(source_ip),
                    conditions: &conditions,
                },
            )
            .await;
        let mode = Mode::Direct {
            client: Client::for_decision(&decision, |name| headers.get(name)),
            safe_method: method
                .is_some_and(|m| m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("HEAD")),
        };
        check_response(Answer::new(&decision, mode))
    }
}

/// The client's address: `attributes.source`, Envoy's downstream remote
/// address (the client itself, or with `use_remote_address` and
/// `xff_num_trusted_hops` the address its trusted proxies name). Anything
/// else — a pipe, an unparsable string — is no address.
fn source_ip(attributes: &AttributeContext) -> Option<std::net::IpAddr> {
    let address = attributes
        .source
        .as_ref()?
        .address
        .as_ref()?
        .address
        .as_ref()?;
    match address {
        address::Address::SocketAddress(socket) => socket
            .address
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical()),
        _ => None,
    }
}

/// The client's request headers as Envoy sent them: the `headers` map
/// (lower-case names, repeated headers joined), or `header_map` when Envoy
/// runs with `encode_raw_headers` (values in `raw_value` bytes).
enum ClientHeaders<'a> {
    Map(&'a HashMap<String, String>),
    Raw(&'a [HeaderValue]),
}

impl<'a> ClientHeaders<'a> {
    fn of(
        map: &'a HashMap<String, String>,
        raw: Option<&'a envoy_types::pb::envoy::config::core::v3::HeaderMap>,
    ) -> ClientHeaders<'a> {
        match raw {
            Some(raw) if !raw.headers.is_empty() => ClientHeaders::Raw(&raw.headers),
            _ => ClientHeaders::Map(map),
        }
    }

    /// The first value of header `name` (lower case), as text.
    fn get(&self, name: &str) -> Option<&'a str> {
        match *self {
            ClientHeaders::Map(map) => map.get(name).map(String::as_str),
            ClientHeaders::Raw(list) => list
                .iter()
                .filter(|h| h.key.eq_ignore_ascii_case(name))
                .find_map(raw_text),
        }
    }

    /// Every `cookie` header value, as text.
    fn cookies(&self) -> Box<dyn Iterator<Item = &'a str> + Send + 'a> {
        match *self {
            ClientHeaders::Map(map) => Box::new(map.get("cookie").map(String::as_str).into_iter()),
            ClientHeaders::Raw(list) => Box::new(
                list.iter()
                    .filter(|h| h.key.eq_ignore_ascii_case("cookie"))
                    .filter_map(raw_text),
            ),
        }
    }

    /// Values of every cookie named `name`
    /// ([`crate::session::cookie_values`], as every front end).
    fn cookie_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + use<'a> {
        crate::session::cookie_values(self.cookies(), name)
    }
}

/// A `header_map` entry's value: `raw_value` bytes when set (Envoy's
/// `encode_raw_headers`), else `value`. Non-UTF-8 bytes are skipped.
fn raw_text(header: &HeaderValue) -> Option<&str> {
    if header.raw_value.is_empty() {
        Some(header.value.as_str())
    } else {
        std::str::from_utf8(&header.raw_value).ok()
    }
}

/// Renders an answer as Envoy's `CheckResponse` (a [`Reply`] on the wire).
fn check_response(answer: Answer) -> Reply {
    // Without OVERWRITE, recent Envoy *adds* our value next to a client's.
    let overwrite = |header| header_option(header, HeaderAppendAction::OverwriteIfExistsOrAdd);
    let append = |header| header_option(header, HeaderAppendAction::AppendIfExistsOrAdd);
    let status = Some(rpc::Status {
        code: answer.rpc_code as i32,
        message: if answer.allows() {
            String::new()
        } else {
            answer
                .status
                .canonical_reason()
                .unwrap_or_default()
                .to_owned()
        },
        ..rpc::Status::default()
    });
    if answer.allows() {
        // Written by the reply from the answer's own map, without a
        // `String` per name and value, unless a value is not UTF-8, which a
        // protobuf string cannot carry: then as `header_text` mends it.
        let (headers, set) = if answer
            .upstream
            .values()
            .all(|value| std::str::from_utf8(value.as_bytes()).is_ok())
        {
            (Vec::new(), answer.upstream)
        } else {
            let headers = answer.upstream.iter().map(overwrite).collect();
            (headers, http::HeaderMap::new())
        };
        return Reply::allow(
            CheckResponse {
                status,
                ..CheckResponse::default()
            },
            OkHttpResponse {
                headers,
                // Added to the response Envoy sends the client; appended,
                // so the app's own cookies stay.
                response_headers_to_add: answer.client.iter().map(append).collect(),
                ..OkHttpResponse::default()
            },
            set,
            answer.remove,
        );
    }
    let denied = HttpResponse::DeniedResponse(DeniedHttpResponse {
        status: Some(HttpStatus {
            code: HttpStatusCode::try_from(i32::from(answer.status.as_u16()))
                .unwrap_or(HttpStatusCode::Forbidden) as i32,
        }),
        headers: answer.client.iter().map(overwrite).collect(),
        body: answer.body.to_owned(),
    });
    Reply::other(CheckResponse {
        status,
        http_response: Some(denied),
        ..CheckResponse::default()
    })
}

/// One header for a `CheckResponse`, with how Envoy merges it.
fn header_option(
    (name, value): (&http::HeaderName, &http::HeaderValue),
    action: HeaderAppendAction,
) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.as_str().to_owned(),
            value: header_text(value),
            raw_value: Vec::new(),
        }),
        append_action: action as i32,
        ..HeaderValueOption::default()
    }
}

/// A header value as protobuf `string` text: the value itself when it is
/// UTF-8 (always, for what authgate sets), else with U+FFFD for the bad
/// bytes. Validated first because the lossy scan goes byte by byte, and
/// the assertion JWT is long.
fn header_text(value: &http::HeaderValue) -> String {
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

/// Serves `Check`, health and reflection on `listener` until `shutdown`
/// resolves, on the schedule of the `serving` configuration.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let schedule = Shutdown::schedule(shutdown, app.config().serving.shutdown_delay);
    serve_scheduled(app, listener, schedule).await
}

/// Serves `Check`, health and reflection on `listener` on a shutdown
/// schedule shared with the HTTP listener: while draining, health reports
/// `NOT_SERVING` (Envoy's active health check takes the endpoint out) and
/// calls are still answered; when stopping, no new connections, GOAWAY on
/// open ones, and calls in flight get `shutdown_timeout` to finish.
///
/// The connections are driven by [`listener::serve`], as the HTTP
/// listener's: tonic's `Server` has no preface (header) or idle timeout
/// and no cap per peer, so idle sockets could hold every place and starve
/// Envoy's `Check`s.
pub async fn serve_scheduled(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), GrpcError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CheckServer>().await;
    let draining = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.reached(Phase::Draining).await;
            health.set_not_serving::<CheckServer>().await;
            // The server as a whole (`service: ""`), which grpc-health-probe asks.
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        })
    };
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ENVOY_AUTHZ_DESCRIPTORS)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ENVOY_AUTHZ_DESCRIPTORS)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let serving = app.config().serving;
    let trusted_proxies = app.config().trusted_proxies.clone();
    let router = tonic::service::Routes::new(CheckServer::new(AuthzService::new(app)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .prepare()
        .into_axum_router();
    let result = listener::serve(
        listener,
        router,
        listener::NoLane,
        serving,
        &trusted_proxies,
        shutdown,
        Role::Grpc,
    )
    .await
    .map_err(GrpcError::from);
    draining.abort();
    result
}

/// `envoy.service.auth.v3.Authorization`, answering `Check` with a
/// [`Reply`]: envoy-types' `AuthorizationServer`, with default limits and
/// no compression as authgate configured it, for that codec.
#[derive(Clone)]
pub struct CheckServer(Arc<AuthzService>);

impl CheckServer {
    pub fn new(service: AuthzService) -> CheckServer {
        CheckServer(Arc::new(service))
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = <AuthorizationServer<AuthzService> as NamedService>::NAME;
}

/// The one method's path.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

impl<B> tower::Service<http::Request<B>> for CheckServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) });
        }
        let check = Check(self.0.clone());
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<Reply, CheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(check, request).await)
        })
    }
}

/// `Check` itself, as tonic's unary calls want it.
struct Check(Arc<AuthzService>);

impl tonic::server::UnaryService<CheckRequest> for Check {
    type Response = Reply;
    type Future = BoxFuture<tonic::Response<Reply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            Ok(tonic::Response::new(
                service.answer(request.get_ref()).await,
            ))
        })
    }
}

#[cfg(test)]
mod tests;
