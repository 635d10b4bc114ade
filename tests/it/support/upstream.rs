//! The protected app of the end-to-end tests: a tiny HTTP server behind the
//! proxy under test (nginx, Caddy) that shows which headers reached it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};

/// The identity header names authgate sets and the proxy passes upstream.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
];

/// A tiny app behind the proxy that shows what it received: an HTML page
/// ("Hello, <email>" and a table of the identity headers) or, for
/// `Accept: application/json`, `{"method","uri","host","headers":{…}}`.
pub struct EchoUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    received: Arc<Mutex<Vec<String>>>,
}

impl EchoUpstream {
    /// Serves on a free loopback port until dropped.
    pub async fn start() -> EchoUpstream {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind echo upstream");
        let addr = listener.local_addr().expect("echo upstream address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let app = Router::new().fallback(move |request: Request| {
            log.lock()
                .expect("echo log")
                .push(request.uri().to_string());
            echo(request)
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EchoUpstream {
            addr,
            task,
            received,
        }
    }

    /// Every request URI (path and query, as received) so far, in order.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().expect("echo log").clone()
    }

    /// Where the proxy should send requests (`{{UPSTREAM}}`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(request: Request) -> Response {
    let headers = request.headers();
    let mut all = BTreeMap::new();
    for (name, value) in headers {
        all.entry(name.as_str().to_owned())
            .or_insert_with(Vec::new)
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let wants_json = header_str(headers, header::ACCEPT.as_str()).contains("application/json");
    if wants_json {
        let body = serde_json::json!({
            "method": request.method().as_str(),
            "uri": request.uri().to_string(),
            "host": header_str(headers, "host"),
            "headers": all,
        });
        return axum::Json(body).into_response();
    }
    let rows: String = IDENTITY_HEADERS
        .iter()
        .map(|h| {
            format!(
                "<tr><th>{h}</th><td id=\"{h}\">{}</td></tr>",
                escape(&header_str(headers, h))
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><title>echo upstream</title>\
         <h1>Hello, {who}</h1><p id=\"uri\">{uri}</p><table>{rows}</table>",
        who = escape(&header_str(headers, "x-auth-request-email")),
        uri = escape(&request.uri().to_string()),
    ))
    .into_response()
}

fn header_str(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The identity headers the echo upstream reported (`seen["headers"]`) are
/// alice's, as the dev provider knows her: one value each, set by authgate.
pub fn assert_alice_reached_the_app(headers: &serde_json::Value) {
    for (name, value) in [
        ("x-auth-request-email", "alice@example.com"),
        ("x-auth-request-preferred-username", "alice"),
        ("x-auth-request-groups", "devops,admins"),
    ] {
        assert_eq!(
            headers[name],
            serde_json::json!([value]),
            "{name}: {headers}"
        );
    }
}
