//! The benchmark ceiling (`bench/run.sh`): the same HTTP stack as authgate
//! (axum on hyper, tokio's multi-threaded runtime) answering every
//! `GET /oauth2/auth` with 200 and the identity headers authgate sends for
//! alice, without looking at the request. Nothing can answer
//! `auth_request` faster on this stack, so authgate / ceiling is the
//! share of the hardware limit that the decision leaves.
//!
//! ```text
//! cargo run --release --example ceiling -- 127.0.0.1:4190
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use authgate::decision::{HEADER_EMAIL, HEADER_GROUPS, HEADER_PREFERRED_USERNAME, HEADER_USER};

async fn auth() -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (HEADER_USER, HeaderValue::from_static("CgVhbGljZRIFbG9jYWw")),
        (HEADER_EMAIL, HeaderValue::from_static("alice@example.com")),
        (HEADER_PREFERRED_USERNAME, HeaderValue::from_static("alice")),
        (HEADER_GROUPS, HeaderValue::from_static("devops,admins")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (StatusCode::OK, headers)
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
        let router = Router::new().route("/oauth2/auth", get(auth));
        axum::serve(listener, router)
            .with_graceful_shutdown(authgate::server::shutdown_signal())
            .await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ceiling: {error}");
            ExitCode::FAILURE
        }
    }
}
