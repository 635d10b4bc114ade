//! nginx started from `examples/nginx/nginx.conf` (the file users copy),
//! with its placeholders filled for the test. The echo upstream that shows
//! which identity headers reached the app is in [`super::upstream`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{ChildGuard, free_port, require_program};
use super::tls::{TestCa, https_client_builder};
pub use super::upstream::EchoUpstream;
use super::{render, repo_root, temp_dir};

/// The test domain; `*.example.test` is mapped to loopback in the browser
/// and in [`Nginx::http_client`].
pub const DOMAIN: &str = "example.test";

/// The `Accept` of a browser navigating to a page. The example's `map`
/// sends requests without `text/html` in `Accept` (programs) a 401 instead
/// of the sign-in redirect, so clients that play the browser send this.
pub const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// A browser's `Accept` that also names JSON, for tests that read the echo
/// upstream's JSON view of a request ([`super::upstream::EchoUpstream`])
/// and still want the browser's sign-in redirect from nginx.
pub const BROWSER_JSON_ACCEPT: &str = "application/json, text/html;q=0.9";

/// `{{OTHER_DOMAIN}}`: the example serves `app.<it>`, a protected host
/// outside the cookie domain (handoff); mapped to loopback like [`DOMAIN`].
pub const OTHER_DOMAIN: &str = "other.test";

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
        let other_wildcard = format!("*.{OTHER_DOMAIN}");
        let (cert, key) = options
            .ca
            .issue(
                &[&wildcard, options.domain, &other_wildcard, OTHER_DOMAIN],
                &[],
            )
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
                    ("OTHER_DOMAIN", OTHER_DOMAIN),
                    ("CERT", &s(&cert)),
                    ("KEY", &s(&key)),
                    ("PID_FILE", &s(&d.join("nginx.pid"))),
                    ("LOG_DIR", &s(&d.join("logs"))),
                    ("STATE_DIR", &s(&d.join("state"))),
                ],
            );
            std::fs::write(&conf, rendered).expect("write nginx.conf");
            let mut child = spawn(&nginx, d, &conf);
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

    /// nginx from the example in front of `upstream`, for the test domain,
    /// with authgate to be started on the listener returned (bound now, so
    /// nginx can point at it before authgate's routes are known).
    pub async fn start_example(
        ca: &TestCa,
        upstream: &EchoUpstream,
    ) -> (Nginx, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind authgate");
        let nginx = Nginx::start(NginxOptions {
            authgate: listener.local_addr().expect("addr"),
            upstream: upstream.addr(),
            ca,
            domain: DOMAIN,
        })
        .await;
        (nginx, listener)
    }

    /// nginx from a configuration written elsewhere (`authgate print
    /// nginx` inside a wrapper): `conf(dir)` renders the whole file for the
    /// prefix `dir` (which has `logs/` and `state/`), whose servers listen
    /// on `https` with certificates from `ca` for `*.<domain>`.
    pub async fn start_conf(
        ca: &TestCa,
        domain: &str,
        https: SocketAddr,
        conf: impl FnOnce(&Path) -> String,
    ) -> Nginx {
        let nginx = require_program("nginx", None);
        let dir = temp_dir("nginx");
        let d = dir.path();
        for sub in ["logs", "state"] {
            std::fs::create_dir(d.join(sub)).expect("create nginx dirs");
        }
        let path = d.join("nginx.conf");
        std::fs::write(&path, conf(d)).expect("write nginx.conf");
        let mut child = spawn(&nginx, d, &path);
        child.wait_for_port(https).await;
        Nginx {
            child,
            https,
            domain: domain.to_owned(),
            ca_pem: ca.cert_pem(),
            dir,
        }
    }

    /// The TLS port every virtual host listens on.
    pub fn https_port(&self) -> u16 {
        self.https.port()
    }

    /// The TLS listener every virtual host is on.
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// The CA of nginx's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `https://<sub>.<domain>:<port><path>`, e.g. `url("hello", "/x?q=1")`.
    pub fn url(&self, sub: &str, path: &str) -> String {
        format!("https://{sub}.{}:{}{path}", self.domain, self.https.port())
    }

    /// `https://<sub>.<OTHER_DOMAIN>:<port><path>`: a host outside the
    /// cookie domain.
    pub fn other_url(&self, sub: &str, path: &str) -> String {
        format!("https://{sub}.{OTHER_DOMAIN}:{}{path}", self.https.port())
    }

    /// The `--host-resolver-rules` value that sends both test domains to
    /// nginx.
    pub fn host_resolver_rules(&self) -> String {
        format!(
            "MAP *.{} 127.0.0.1, MAP *.{OTHER_DOMAIN} 127.0.0.1",
            self.domain
        )
    }

    /// A client that resolves `hello.`/`auth.`/`<sub>.` names of the test
    /// domain and `app.` of [`OTHER_DOMAIN`] to nginx, trusts the test CA,
    /// and does not follow redirects. It sends [`BROWSER_ACCEPT`] unless a
    /// request sets its own `Accept` (API clients).
    pub fn http_client(&self, subdomains: &[&str]) -> openidconnect::reqwest::Client {
        let hosts = ["hello", "auth"]
            .iter()
            .chain(subdomains)
            .map(|sub| format!("{sub}.{}", self.domain))
            .chain(std::iter::once(format!("app.{OTHER_DOMAIN}")));
        let mut headers = openidconnect::reqwest::header::HeaderMap::new();
        headers.insert(
            "accept",
            openidconnect::reqwest::header::HeaderValue::from_static(BROWSER_ACCEPT),
        );
        https_client_builder(&self.ca_pem, hosts, self.https)
            .default_headers(headers)
            .build()
            .expect("build HTTP client")
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

    /// Sends `GET <target> HTTP/1.0` exactly as given (no normalisation,
    /// unlike reqwest) over TLS to `<sub>.<domain>`, with `host` as the Host
    /// header and `headers` (`"Name: value"` lines); returns the status and
    /// the body.
    pub async fn raw_get(
        &self,
        sub: &str,
        target: &str,
        host: &str,
        headers: &[String],
    ) -> (u16, String) {
        let sni = format!("{sub}.{}", self.domain);
        super::tls::raw_get_tls(&self.ca_pem, self.https, &sni, target, host, headers).await
    }
}

/// `nginx -p <dir> -c <conf>` in the foreground, one process (so killing it
/// leaves no workers behind).
fn spawn(nginx: &Path, dir: &Path, conf: &Path) -> ChildGuard {
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("logs/startup.log"))
        .args(["-g", "daemon off; master_process off;"]);
    ChildGuard::spawn("nginx", cmd, &dir.join("logs/stderr.log"))
}

/// The checked-in example the tests render.
pub fn example_conf() -> PathBuf {
    repo_root().join("examples/nginx/nginx.conf")
}

fn s(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}
