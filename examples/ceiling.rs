//! The benchmark ceiling (`bench/run.sh`): a bare hyper server answering
//! every request with 200 and the identity headers authgate sends for
//! alice, without looking at the request. Its `X-Auth-Request-Jwt` is a
//! real ES256 assertion for alice, signed once at start, so its answers
//! are as long as authgate's. It has what authgate's HTTP
//! stack has and nothing else: tokio's multi-threaded runtime, hyper-util's
//! `auto` connection (HTTP/1.1 and h2c) and `TCP_NODELAY`. No router, no
//! middleware. Nothing can answer `auth_request` faster on this stack, so
//! authgate / ceiling is the share of the hardware limit that the decision
//! and authgate's own serving (connection cap, timeouts, drain) leave.
//!
//! ```text
//! cargo run --release --example ceiling -- 127.0.0.1:4190
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use authgate::assertion::{AssertionSigner, Subject};
use authgate::clock::SystemClock;
use authgate::identity::Identity;
use authgate::identity::{
    HEADER_EMAIL, HEADER_GROUPS, HEADER_JWT, HEADER_PREFERRED_USERNAME, HEADER_USER,
};

async fn auth(
    _request: Request<Incoming>,
    assertion: HeaderValue,
) -> Result<Response<String>, Infallible> {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (HEADER_USER, HeaderValue::from_static("CgVhbGljZRIFbG9jYWw")),
        (HEADER_EMAIL, HeaderValue::from_static("alice@example.com")),
        (HEADER_PREFERRED_USERNAME, HeaderValue::from_static("alice")),
        (HEADER_GROUPS, HeaderValue::from_static("devops,admins")),
        (HEADER_JWT, assertion),
    ];
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().extend(headers);
    Ok(response)
}

/// One assertion for alice on the bench's host, as authgate signs it.
fn alice_assertion() -> Result<HeaderValue, String> {
    // A fixed key: nothing checks this token; only its length matters.
    let key = p256::SecretKey::from_slice(&[7; 32]).map_err(|e| e.to_string())?;
    let signer = AssertionSigner::new(
        "http://127.0.0.1".into(),
        &key,
        &[],
        std::sync::Arc::new(SystemClock),
    )
    .map_err(|e| e.to_string())?;
    let alice = Identity {
        subject: "CgVhbGljZRIFbG9jYWw".into(),
        email: Some("alice@example.com".into()),
        preferred_username: Some("alice".into()),
        groups: vec!["devops".into(), "admins".into()],
        ..Identity::default()
    };
    signer
        .assertion(&Subject {
            session: [7; 16],
            stamp: 0,
            route: 0,
            audience: "app.bench.test",
            identity: &alice,
            expires_at: i64::MAX / 2,
            extra_claims: &[],
        })
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let address: SocketAddr = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(address)) => address,
        _ => {
            eprintln!("usage: ceiling <ip:port>");
            return ExitCode::from(2);
        }
    };
    let assertion = match alice_assertion() {
        Ok(assertion) => assertion,
        Err(error) => {
            eprintln!("ceiling: cannot sign the assertion: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ceiling: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served: std::io::Result<()> = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let builder = builder.clone();
            let assertion = assertion.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| auth(request, assertion.clone()));
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ceiling: {error}");
            ExitCode::FAILURE
        }
    }
}
