//! The benchmark ceiling (`bench/run.sh`): a bare hyper server answering
//! every request with 200 and the identity headers authgate sends for
//! alice, without looking at the request. It has what authgate's HTTP
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

use authgate::decision::{HEADER_EMAIL, HEADER_GROUPS, HEADER_PREFERRED_USERNAME, HEADER_USER};

async fn auth(_request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (HEADER_USER, HeaderValue::from_static("CgVhbGljZRIFbG9jYWw")),
        (HEADER_EMAIL, HeaderValue::from_static("alice@example.com")),
        (HEADER_PREFERRED_USERNAME, HeaderValue::from_static("alice")),
        (HEADER_GROUPS, HeaderValue::from_static("devops,admins")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().extend(headers);
    Ok(response)
}

fn main() -> ExitCode {
    let address: SocketAddr = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(address)) => address,
        _ => {
            eprintln!("usage: ceiling <ip:port>");
            return ExitCode::from(2);
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
            tokio::spawn(async move {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service_fn(auth))
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
