//! A real Jaeger (v2: the OpenTelemetry Collector with Jaeger's memory
//! storage and query service), built by `scripts/test.sh` from
//! `tests/e2e/jaeger/go.mod` and cached. Each instance takes OTLP/gRPC and
//! serves its query API on loopback ports of its own, so tests run side by
//! side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::process::{ChildGuard, READY_TIMEOUT, free_port};
use super::{cached_go_tool, repo_root, temp_dir};

/// `$AUTHGATE_JAEGER_BIN`, else the binary `scripts/test.sh` cached for
/// `JAEGER_VERSION`.
pub fn jaeger_binary() -> PathBuf {
    cached_go_tool("jaeger", "JAEGER_VERSION", "AUTHGATE_JAEGER_BIN")
}

/// A running Jaeger; killed on drop.
pub struct Jaeger {
    child: ChildGuard,
    otlp: SocketAddr,
    query: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Jaeger {
    /// Starts Jaeger with only what the tests use: the OTLP/gRPC receiver,
    /// memory storage, the query API; its own telemetry off (no fixed
    /// ports). Returns once the query API answers.
    pub async fn start() -> Jaeger {
        let bin = jaeger_binary();
        for attempt in 1.. {
            let dir = temp_dir("jaeger");
            let otlp = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let query = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let query_grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config = dir.path().join("jaeger.yaml");
            std::fs::write(&config, config_yaml(otlp, query, query_grpc))
                .expect("write jaeger.yaml");
            let mut command = Command::new(&bin);
            command.arg("--config").arg(&config);
            let log = dir.path().join("jaeger.log");
            let mut child = ChildGuard::spawn("jaeger", command, &log);
            let http = crate::fixture::client();
            let services = format!("http://{query}/api/services");
            let started = std::time::Instant::now();
            loop {
                if child.check_running().is_err() || started.elapsed() > READY_TIMEOUT {
                    break;
                }
                let up = http
                    .get(&services)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if up && tokio::net::TcpStream::connect(otlp).await.is_ok() {
                    return Jaeger {
                        child,
                        otlp,
                        query,
                        _dir: dir,
                    };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let log = child.log();
            assert!(
                attempt < 3 && log.contains("address already in use"),
                "jaeger did not start:\n{log}"
            );
        }
        unreachable!("the loop returns or panics")
    }

    /// The OTLP/gRPC endpoint, as `tracing_otlp_endpoint` takes it.
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.otlp)
    }

    /// Jaeger's log, for failure messages.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// The trace `trace_id` (32 hex digits) as `/api/traces/{id}` returns
    /// it (`data[0]`: `spans`, `processes`), once it has at least
    /// `min_spans` spans; panics with Jaeger's log after `timeout`.
    pub async fn trace(&self, trace_id: &str, min_spans: usize, timeout: Duration) -> Value {
        let url = format!("http://{}/api/traces/{trace_id}", self.query);
        self.poll(&url, timeout, |body| {
            let trace = body["data"].get(0)?;
            (trace["spans"].as_array()?.len() >= min_spans).then(|| trace.clone())
        })
        .await
    }

    /// The traces of `service` (`/api/traces?service=…`), once one of them
    /// has a span named `span`.
    pub async fn traces_with(&self, service: &str, span: &str, timeout: Duration) -> Vec<Value> {
        let url = format!(
            "http://{}/api/traces?service={service}&limit=100&lookback=1h",
            self.query
        );
        self.poll(&url, timeout, |body| {
            let traces = body["data"].as_array()?;
            traces
                .iter()
                .any(|t| {
                    t["spans"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["operationName"] == span))
                })
                .then(|| traces.clone())
        })
        .await
    }

    async fn poll<T>(&self, url: &str, timeout: Duration, done: impl Fn(&Value) -> Option<T>) -> T {
        let http = crate::fixture::client();
        let started = std::time::Instant::now();
        let mut last = String::new();
        while started.elapsed() < timeout {
            if let Ok(response) = http.get(url).send().await {
                last = response.text().await.unwrap_or_default();
                if let Some(found) = serde_json::from_str(&last).ok().as_ref().and_then(&done) {
                    return found;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "jaeger: {url} not as expected after {timeout:?}; last answer:\n{last}\n--- jaeger log ---\n{}",
            self.log()
        );
    }
}

/// `tests/e2e/jaeger/config.yaml.tmpl` (shared with bench/tracing.sh)
/// with the given loopback addresses.
fn config_yaml(otlp: SocketAddr, query: SocketAddr, query_grpc: SocketAddr) -> String {
    std::fs::read_to_string(repo_root().join("tests/e2e/jaeger/config.yaml.tmpl"))
        .expect("read tests/e2e/jaeger/config.yaml.tmpl")
        .replace("{{OTLP}}", &otlp.to_string())
        .replace("{{QUERY_GRPC}}", &query_grpc.to_string())
        .replace("{{QUERY}}", &query.to_string())
}
