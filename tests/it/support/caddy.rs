//! Caddy started from `examples/caddy/Caddyfile` (the file users copy),
//! with its placeholders filled for the test: `forward_auth` to authgate in
//! front of the echo upstream on `app.<domain>`, authgate itself on
//! `auth.<domain>`, both over TLS from the test CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cached_go_tool;
use super::edge::EdgeProxy;
use super::process::{ChildGuard, free_port};
use super::tls::TestCa;
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
    /// The query on forward_auth's `uri /forward-auth` (the proxy's own
    /// conditions, `allowed_groups=…`); empty for the example as it is.
    pub conditions: &'a str,
}

/// A running Caddy (see [`EdgeProxy`]).
pub struct Caddy(EdgeProxy);

impl std::ops::Deref for Caddy {
    type Target = EdgeProxy;
    fn deref(&self) -> &EdgeProxy {
        &self.0
    }
}

impl Caddy {
    /// Renders `examples/caddy/Caddyfile` (admin API off, ephemeral HTTP and
    /// HTTPS ports) and runs `caddy run` with its state in a temporary
    /// directory; returns once it accepts TLS connections.
    pub async fn start(options: CaddyOptions<'_>) -> Caddy {
        let caddy = caddy_bin();
        let dir = temp_dir("caddy");
        let d = dir.path().to_owned();
        let wildcard = format!("*.{}", options.domain);
        let (cert, key) = options
            .ca
            .issue(&[&wildcard, options.domain], &[])
            .write(&d, "caddy");
        let mut template =
            std::fs::read_to_string(example_caddyfile()).expect("read examples/caddy/Caddyfile");
        if !options.conditions.is_empty() {
            let uri = "uri /forward-auth\n";
            assert!(
                template.contains(uri),
                "the example's forward_auth uri changed"
            );
            template =
                template.replace(uri, &format!("uri /forward-auth?{}\n", options.conditions));
        }
        let caddyfile = d.join("Caddyfile");
        let spawn = |https: SocketAddr, attempt: u32| {
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
                .env("HOME", &d)
                .env("XDG_DATA_HOME", d.join("data"))
                .env("XDG_CONFIG_HOME", d.join("config"));
            ChildGuard::spawn("caddy", cmd, &d.join(format!("caddy-{attempt}.log")))
        };
        Caddy(EdgeProxy::start(dir, options.domain, options.ca, spawn).await)
    }
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
