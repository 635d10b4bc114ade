//! Caddy started from `examples/caddy/Caddyfile` (the file users copy),
//! with its placeholders filled for the test: `forward_auth` to authgate in
//! front of the echo upstream on `app.<domain>`, authgate itself on
//! `auth.<domain>`, both over TLS from the test CA.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cached_go_tool;
use super::process::{ChildGuard, free_port};
use super::tls::{TestCa, https_client};
use super::{render, repo_root, temp_dir};

/// What the example's placeholders become in a test.
pub struct CaddyOptions<'a> {
    /// authgate's listener: `{{AUTHGATE}}`.
    pub authgate: SocketAddr,
    /// The protected app: `{{UPSTREAM}}`.
    pub upstream: SocketAddr,
    /// Issues the certificate for `*.{domain}`.
    pub ca: &'a TestCa,
    /// `{{DOMAIN}}`: Caddy serves `app.<domain>` and `auth.<domain>`.
    pub domain: &'a str,
}

/// A running Caddy. Dropping it kills Caddy and removes its directory.
pub struct Caddy {
    child: ChildGuard,
    https: SocketAddr,
    domain: String,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Caddy {
    /// Renders `examples/caddy/Caddyfile` (admin API off, ephemeral HTTP and
    /// HTTPS ports) and runs `caddy run` with its state in a temporary
    /// directory; returns once it accepts TLS connections. A port taken
    /// between choosing it and Caddy binding it means another try.
    pub async fn start(options: CaddyOptions<'_>) -> Caddy {
        let caddy = caddy_bin();
        let dir = temp_dir("caddy");
        let d = dir.path();
        let wildcard = format!("*.{}", options.domain);
        let (cert, key) = options
            .ca
            .issue(&[&wildcard, options.domain], &[])
            .write(d, "caddy");
        let template =
            std::fs::read_to_string(example_caddyfile()).expect("read examples/caddy/Caddyfile");
        let caddyfile = d.join("Caddyfile");

        let mut attempt = 0;
        loop {
            attempt += 1;
            let https = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let rendered = render(
                &template,
                &[
                    ("AUTHGATE", &options.authgate.to_string()),
                    ("UPSTREAM", &options.upstream.to_string()),
                    ("DOMAIN", options.domain),
                    ("HTTPS_PORT", &https.port().to_string()),
                    ("HTTP_PORT", &free_port().to_string()),
                    ("ADMIN", "off"),
                    ("CERT", &s(&cert)),
                    ("KEY", &s(&key)),
                ],
            );
            std::fs::write(&caddyfile, rendered).expect("write Caddyfile");
            let mut cmd = Command::new(&caddy);
            cmd.arg("run")
                .arg("--config")
                .arg(&caddyfile)
                .args(["--adapter", "caddyfile"])
                // Caddy keeps its data (certificates, autosave) under these.
                .env("HOME", d)
                .env("XDG_DATA_HOME", d.join("data"))
                .env("XDG_CONFIG_HOME", d.join("config"));
            let log = d.join(format!("caddy-{attempt}.log"));
            let mut child = ChildGuard::spawn("caddy", cmd, &log);
            if attempt < 3 {
                let ready = wait_listening(&mut child, https).await;
                if !ready {
                    continue;
                }
            }
            child.wait_for_port(https).await;
            return Caddy {
                child,
                https,
                domain: options.domain.to_owned(),
                ca_pem: options.ca.cert_pem(),
                _dir: dir,
            };
        }
    }

    /// `https://<sub>.<domain>:<port><path>`, e.g. `url("app", "/x?q=1")`.
    pub fn url(&self, sub: &str, path: &str) -> String {
        format!("https://{sub}.{}:{}{path}", self.domain, self.https.port())
    }

    /// A client that resolves `app.` and `auth.` of the test domain to
    /// Caddy, trusts the test CA, and does not follow redirects.
    pub fn http_client(&self) -> openidconnect::reqwest::Client {
        let hosts = ["app", "auth"].map(|sub| format!("{sub}.{}", self.domain));
        https_client(&self.ca_pem, hosts, self.https)
    }

    /// `GET <target>` exactly as given, with `Host: <host>`, over TLS to
    /// `<sub>.<domain>` (see [`super::tls::raw_get_tls`]).
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

    /// Caddy's log (JSON lines: startup, errors, the auth subrequests).
    pub fn log(&self) -> String {
        self.child.log()
    }
}

/// Waits until Caddy listens on `https` (true) or exits (false: most likely
/// one of its ports was taken meanwhile; the log says).
async fn wait_listening(child: &mut ChildGuard, https: SocketAddr) -> bool {
    let deadline = std::time::Instant::now() + super::process::READY_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if child.check_running().is_err() {
            return false;
        }
        if tokio::net::TcpStream::connect(https).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Still running but silent: let wait_for_port report it with the log.
    true
}

/// `$AUTHGATE_CADDY_BIN`, else the Caddy `scripts/test.sh` built for the
/// version it pins, else `caddy` on `PATH`; a panic otherwise.
pub fn caddy_bin() -> PathBuf {
    cached_go_tool("caddy", "CADDY_VERSION", "AUTHGATE_CADDY_BIN")
}

/// The checked-in example the tests render.
pub fn example_caddyfile() -> PathBuf {
    repo_root().join("examples/caddy/Caddyfile")
}

fn s(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}
