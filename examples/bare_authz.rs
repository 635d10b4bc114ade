//! The gRPC benchmark ceiling (`bench/grpc.sh`): a bare Envoy
//! `Authorization/Check` on the same stack as authgate's (tonic on hyper,
//! envoy-types, tokio's multi-threaded runtime) answering every
//! `CheckRequest` with OK and the identity headers authgate sends for alice,
//! without looking at the request. Nothing can answer `ext_authz` faster on
//! this stack, so authgate / bare is the share of the hardware limit that
//! the decision leaves.
//!
//! ```text
//! cargo run --release --example bare_authz -- 127.0.0.1:9192
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use authgate::identity::{HEADER_EMAIL, HEADER_GROUPS, HEADER_PREFERRED_USERNAME, HEADER_USER};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;

/// Answers every `Check` with the same allow.
struct Bare {
    allow: CheckResponse,
}

impl Bare {
    /// The allow authgate sends for alice: OK, four identity headers set
    /// (overwriting) and the client's copies removed.
    fn new() -> Bare {
        let identity = [
            (HEADER_USER, "CgVhbGljZRIFbG9jYWw"),
            (HEADER_EMAIL, "alice@example.com"),
            (HEADER_PREFERRED_USERNAME, "alice"),
            (HEADER_GROUPS, "devops,admins"),
        ];
        let headers = identity
            .iter()
            .map(|(name, value)| HeaderValueOption {
                header: Some(HeaderValue {
                    key: name.as_str().to_owned(),
                    value: (*value).to_owned(),
                    raw_value: Vec::new(),
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..HeaderValueOption::default()
            })
            .collect();
        let allow = CheckResponse {
            status: Some(rpc::Status {
                code: tonic::Code::Ok as i32,
                ..rpc::Status::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove: identity
                    .iter()
                    .map(|(name, _)| name.as_str().to_owned())
                    .collect(),
                ..OkHttpResponse::default()
            })),
            ..CheckResponse::default()
        };
        Bare { allow }
    }
}

#[tonic::async_trait]
impl Authorization for Bare {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.allow.clone()))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(Ok(address)) = std::env::args().nth(1).map(|a| a.parse::<SocketAddr>()) else {
        eprintln!("usage: bare_authz <ip:port>");
        return ExitCode::from(2);
    };
    let served = tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Bare::new()))
        .serve_with_shutdown(address, authgate::server::shutdown_signal())
        .await;
    if let Err(error) = served {
        eprintln!("bare_authz: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
