//! HAProxy (Debian's package) started from `examples/haproxy/haproxy.cfg`
//! and `authgate-spoe.conf` (the files users copy), with their
//! placeholders filled for the test: the SPOE filter asks authgate's SPOP
//! listener about every request to `app.<domain>`, in front of the echo
//! upstream; `auth.<domain>` is authgate's login; both over TLS from the
//! test CA.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use super::process::{ChildGuard, free_port, require_program};
use super::tls::{TestCa, https_client};
use super::{render, repo_root, temp_dir};

/// What the example's placeholders become in a test.
pub struct HaproxyOptions<'a> {
    /// authgate's HTTP listener: `{{AUTHGATE}}`.
    pub authgate: SocketAddr,
    /// authgate's `spoe_address`: `{{AUTHGATE_SPOE}}`.
    pub spoe: SocketAddr,
    /// The protected app: `{{UPSTREAM}}`.
    pub upstream: SocketAddr,
    /// Issues the certificate for `*.{domain}`.
    pub ca: &'a TestCa,
    /// `{{DOMAIN}}`: HAProxy serves `app.<domain>` and `auth.<domain>`.
    pub domain: &'a str,
}

/// A running HAProxy. Dropping it kills HAProxy and removes its directory.
pub struct Haproxy {
    child: ChildGuard,
    https: SocketAddr,
    domain: String,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Renders the two example files and runs `haproxy -db`; returns once
    /// it accepts connections. A port taken between choosing it and
    /// HAProxy binding it means another try.
    pub async fn start(options: HaproxyOptions<'_>) -> Haproxy {
        let haproxy = require_program("haproxy", None);
        let dir = temp_dir("haproxy");
        let d = dir.path();
        let issued = options
            .ca
            .issue(&[&format!("*.{}", options.domain), options.domain], &[]);
        // HAProxy takes the certificate and its key in one PEM.
        let pem = d.join("site.pem");
        std::fs::write(&pem, format!("{}{}", issued.cert_pem, issued.key_pem)).expect("write PEM");
        let spoe_conf = d.join("authgate-spoe.conf");
        std::fs::copy(example("authgate-spoe.conf"), &spoe_conf).expect("copy SPOE config");
        let template = std::fs::read_to_string(example("haproxy.cfg")).expect("read haproxy.cfg");
        let config = d.join("haproxy.cfg");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let https = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let rendered = render(
                &template,
                &[
                    ("AUTHGATE", &options.authgate.to_string()),
                    ("AUTHGATE_SPOE", &options.spoe.to_string()),
                    ("UPSTREAM", &options.upstream.to_string()),
                    ("DOMAIN", options.domain),
                    ("HTTPS_PORT", &https.port().to_string()),
                    ("CERT", pem.to_str().expect("UTF-8 path")),
                    ("SPOE_CONF", spoe_conf.to_str().expect("UTF-8 path")),
                ],
            )
            // Bound to loopback only, on the port chosen.
            .replace(
                &format!("bind :{} ", https.port()),
                &format!("bind {https} "),
            );
            std::fs::write(&config, rendered).expect("write haproxy.cfg");
            let mut cmd = Command::new(&haproxy);
            cmd.arg("-db").arg("-f").arg(&config);
            let log = d.join(format!("haproxy-{attempt}.log"));
            let mut child = ChildGuard::spawn("haproxy", cmd, &log);
            if attempt < 3 && !listening(&mut child, https).await {
                continue;
            }
            child.wait_for_port(https).await;
            return Haproxy {
                child,
                https,
                domain: options.domain.to_owned(),
                ca_pem: options.ca.cert_pem(),
                _dir: dir,
            };
        }
    }

    /// `https://<sub>.<domain>:<port><path>`.
    pub fn url(&self, sub: &str, path: &str) -> String {
        format!("https://{sub}.{}:{}{path}", self.domain, self.https.port())
    }

    pub fn https_port(&self) -> u16 {
        self.https.port()
    }

    /// A client that resolves `app.` and `auth.` of the test domain to
    /// HAProxy, trusts the test CA, and does not follow redirects.
    pub fn http_client(&self) -> openidconnect::reqwest::Client {
        let hosts = ["app", "auth"].map(|sub| format!("{sub}.{}", self.domain));
        https_client(&self.ca_pem, hosts, self.https)
    }

    /// `GET <target>` exactly as given, with `Host: <host>`, over TLS.
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

    /// HAProxy's log (startup, the requests).
    pub fn log(&self) -> String {
        self.child.log()
    }
}

/// Whether HAProxy listens on `https` (false: it exited, most likely
/// because the port was taken meanwhile).
async fn listening(child: &mut ChildGuard, https: SocketAddr) -> bool {
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
    true
}

/// A file of `examples/haproxy/`.
pub fn example(name: &str) -> std::path::PathBuf {
    repo_root().join("examples/haproxy").join(name)
}
