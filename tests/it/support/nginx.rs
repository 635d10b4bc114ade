//! nginx started from `examples/nginx/nginx.conf` (the file users copy),
//! with its placeholders filled for the test, and the echo upstream that
//! shows which identity headers reached the app.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};

use super::process::{ChildGuard, free_port, require_program};
use super::tls::TestCa;
use super::{render, repo_root, temp_dir};

/// The test domain; `*.example.test` is mapped to loopback in the browser
/// and in [`Nginx::http_client`].
pub const DOMAIN: &str = "example.test";

/// What the example's placeholders become in a test.
pub struct NginxOptions<'a> {
    /// authgate's (or a stub's) listener: `{{AUTHGATE}}`.
    pub authgate: SocketAddr,
    /// The protected app: `{{UPSTREAM}}`.
    pub upstream: SocketAddr,
    /// Issues the certificate for `*.{domain}`; the browser trusts it.
    pub ca: &'a TestCa,
    /// `{{DOMAIN}}`: nginx serves `hello.<domain>` and `auth.<domain>`.
    pub domain: &'a str,
}

/// A running nginx. Dropping it kills nginx and removes its prefix.
pub struct Nginx {
    child: ChildGuard,
    https: SocketAddr,
    domain: String,
    ca_pem: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Renders `examples/nginx/nginx.conf` and starts `nginx -p <temp> -c
    /// <conf> -g 'daemon off; master_process off;'` (one process, so killing
    /// it leaves no workers behind); returns once it accepts TLS connections.
    pub async fn start(options: NginxOptions<'_>) -> Nginx {
        Nginx::start_with_replicas(options, &[]).await
    }

    /// As [`Nginx::start`], with `replicas` as further servers of the
    /// `authgate` upstream besides `options.authgate` (several authgate
    /// replicas sharing Redis; nginx balances and fails over between them).
    pub async fn start_with_replicas(options: NginxOptions<'_>, replicas: &[SocketAddr]) -> Nginx {
        let nginx = require_program("nginx", None);
        let dir = temp_dir("nginx");
        let d = dir.path();
        for sub in ["logs", "state"] {
            std::fs::create_dir(d.join(sub)).expect("create nginx dirs");
        }
        let wildcard = format!("*.{}", options.domain);
        let (cert, key) = options
            .ca
            .issue(&[&wildcard, options.domain], &[])
            .write(d, "nginx");
        let mut template =
            std::fs::read_to_string(example_conf()).expect("read examples/nginx/nginx.conf");
        // One `server` line per further replica in the authgate upstream.
        let extra: String = replicas
            .iter()
            .map(|addr| format!("\n        server {addr};"))
            .collect();
        template = template.replacen(
            "server {{AUTHGATE}};",
            &format!("server {{{{AUTHGATE}}}};{extra}"),
            1,
        );
        let conf = d.join("nginx.conf");

        let mut attempt = 0;
        loop {
            attempt += 1;
            let https = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let rendered = render(
                &template,
                &[
                    ("AUTHGATE", &options.authgate.to_string()),
                    ("UPSTREAM", &options.upstream.to_string()),
                    ("HTTPS_LISTEN", &https.to_string()),
                    ("DOMAIN", options.domain),
                    ("CERT", &s(&cert)),
                    ("KEY", &s(&key)),
                    ("PID_FILE", &s(&d.join("nginx.pid"))),
                    ("LOG_DIR", &s(&d.join("logs"))),
                    ("STATE_DIR", &s(&d.join("state"))),
                ],
            );
            std::fs::write(&conf, rendered).expect("write nginx.conf");
            let mut cmd = Command::new(&nginx);
            cmd.arg("-p")
                .arg(d)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(d.join("logs/startup.log"))
                .args(["-g", "daemon off; master_process off;"]);
            let mut child = ChildGuard::spawn("nginx", cmd, &d.join("logs/stderr.log"));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if attempt < 3 && child.check_running().is_err() {
                continue;
            }
            child.wait_for_port(https).await;
            return Nginx {
                child,
                https,
                domain: options.domain.to_owned(),
                ca_pem: options.ca.cert_pem(),
                dir,
            };
        }
    }

    /// The TLS port every virtual host listens on.
    pub fn https_port(&self) -> u16 {
        self.https.port()
    }

    /// `https://<sub>.<domain>:<port><path>`, e.g. `url("hello", "/x?q=1")`.
    pub fn url(&self, sub: &str, path: &str) -> String {
        format!("https://{sub}.{}:{}{path}", self.domain, self.https.port())
    }

    /// The `--host-resolver-rules` value that sends the test domain to nginx.
    pub fn host_resolver_rules(&self) -> String {
        format!("MAP *.{} 127.0.0.1", self.domain)
    }

    /// A client that resolves `hello.`/`auth.`/`<sub>.` names of the test
    /// domain to nginx, trusts the test CA, and does not follow redirects.
    pub fn http_client(&self, subdomains: &[&str]) -> openidconnect::reqwest::Client {
        use openidconnect::reqwest;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA PEM"),
            );
        for sub in ["hello", "auth"].iter().chain(subdomains) {
            builder = builder.resolve(&format!("{sub}.{}", self.domain), self.https);
        }
        builder.build().expect("build HTTP client")
    }

    /// nginx's error log (startup problems, upstream errors).
    pub fn error_log(&self) -> String {
        let d = self.dir.path().join("logs");
        ["startup.log", "error.log", "stderr.log"]
            .iter()
            .map(|f| std::fs::read_to_string(d.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// nginx's access log.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }

    /// Whether nginx is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.check_running().is_ok()
    }
}

/// The checked-in example the tests render.
pub fn example_conf() -> PathBuf {
    repo_root().join("examples/nginx/nginx.conf")
}

fn s(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// The identity header names authgate sets and nginx passes upstream.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
];

/// A tiny app behind nginx that shows what it received: an HTML page
/// ("Hello, <email>" and a table of the identity headers) or, for
/// `Accept: application/json`, `{"method","uri","host","headers":{…}}`.
pub struct EchoUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    /// Serves on a free loopback port until dropped.
    pub async fn start() -> EchoUpstream {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind echo upstream");
        let addr = listener.local_addr().expect("echo upstream address");
        let app = Router::new().fallback(echo);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EchoUpstream { addr, task }
    }

    /// Where nginx should proxy to (`{{UPSTREAM}}`).
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
