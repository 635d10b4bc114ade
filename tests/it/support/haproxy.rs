//! HAProxy (Debian's package) started from `examples/haproxy/haproxy.cfg`
//! and `authgate-spoe.conf` (the files users copy), with their
//! placeholders filled for the test: the SPOE filter asks authgate's SPOP
//! listener about every request to `app.<domain>`, in front of the echo
//! upstream; `auth.<domain>` is authgate's login; both over TLS from the
//! test CA.

use std::net::SocketAddr;
use std::process::Command;

use super::edge::EdgeProxy;
use super::process::{ChildGuard, require_program};
use super::tls::TestCa;
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
    /// `allowed_groups` for `app.<domain>`: the example's commented
    /// `tcp-request content set-var(txn.allowed_groups)` line, enabled.
    pub allowed_groups: Option<&'a str>,
}

/// A running HAProxy (see [`EdgeProxy`]).
pub struct Haproxy(EdgeProxy);

impl std::ops::Deref for Haproxy {
    type Target = EdgeProxy;
    fn deref(&self) -> &EdgeProxy {
        &self.0
    }
}

impl Haproxy {
    /// Renders the two example files and runs `haproxy -db`; returns once
    /// it accepts connections.
    pub async fn start(options: HaproxyOptions<'_>) -> Haproxy {
        let haproxy = require_program("haproxy", None);
        let dir = temp_dir("haproxy");
        let d = dir.path().to_owned();
        let issued = options
            .ca
            .issue(&[&format!("*.{}", options.domain), options.domain], &[]);
        // HAProxy takes the certificate and its key in one PEM.
        let pem = d.join("site.pem");
        std::fs::write(&pem, format!("{}{}", issued.cert_pem, issued.key_pem)).expect("write PEM");
        let spoe_conf = d.join("authgate-spoe.conf");
        std::fs::copy(example("authgate-spoe.conf"), &spoe_conf).expect("copy SPOE config");
        let mut template =
            std::fs::read_to_string(example("haproxy.cfg")).expect("read haproxy.cfg");
        if let Some(groups) = options.allowed_groups {
            let line = "#tcp-request content set-var(txn.allowed_groups) str(devops) if app_host";
            assert!(
                template.contains(line),
                "the example's conditions line changed"
            );
            template = template.replace(
                line,
                &format!(
                    "tcp-request content set-var(txn.allowed_groups) str({groups}) if app_host"
                ),
            );
        }
        let config = d.join("haproxy.cfg");
        let spawn = |https: SocketAddr, attempt: u32| {
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
            ChildGuard::spawn("haproxy", cmd, &d.join(format!("haproxy-{attempt}.log")))
        };
        Haproxy(EdgeProxy::start(dir, options.domain, options.ca, spawn).await)
    }
}

/// A file of `examples/haproxy/`.
pub fn example(name: &str) -> std::path::PathBuf {
    repo_root().join("examples/haproxy").join(name)
}
