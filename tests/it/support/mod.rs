//! Harness for the end-to-end tests: each piece starts a real program
//! (389 Directory Server, Dex, nginx, Caddy, chromedriver + Chromium) on ephemeral loopback ports
//! in its own temporary directory, waits until it answers, and kills it when
//! dropped.
//!
//! # Layout
//! - [`process`]: child processes killed in `Drop`, ports, bounded waits.
//! - [`tls`]: a throw-away CA and the certificates it issues.
//! - [`dirsrv`]: 389 Directory Server laid out like FreeIPA, with LDAPS.
//! - [`dex`]: Dex (built by `scripts/test.sh`) with its LDAP connector.
//! - [`nginx`]: nginx from `examples/nginx/nginx.conf` (or a whole conf).
//! - [`ingress_nginx`]: an nginx.conf from Ingress objects, as ingress-nginx
//!   renders their auth annotations.
//! - [`caddy`]: Caddy (built by `scripts/test.sh`) from `examples/caddy/Caddyfile`.
//! - [`upstream`]: the echo app behind nginx or Caddy.
//! - [`browser`]: headless Chromium through chromedriver (WebDriver).
//! - [`redis`]: redis-server for the shared session store.
//! - [`tmpfs`]: a size-limited tmpfs, for a full or read-only disk.
//!
//! A missing program is a failure, never a skip: the message says to run
//! `scripts/test.sh`, which installs everything.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod caddy;
pub mod dex;
pub mod dirsrv;
pub mod edge;
pub mod haproxy;
pub mod ingress_nginx;
pub mod jaeger;
pub mod nginx;
pub mod process;
pub mod redis;
pub mod tls;
pub mod tmpfs;
pub mod upstream;

use std::path::PathBuf;

/// The repository root, where `examples/` and `tests/e2e/` live.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces every `{{KEY}}` in `template` by its value and panics if a
/// placeholder is left, so a renamed placeholder fails loudly instead of
/// reaching nginx, 389-ds or Dex as literal text.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    let leftovers: Vec<&str> = out
        .match_indices("{{")
        .filter_map(|(at, _)| out[at..].find("}}").map(|end| &out[at..at + end + 2]))
        .filter(|p| !is_comment_line(&out, p))
        .collect();
    assert!(
        leftovers.is_empty(),
        "unrendered placeholders: {leftovers:?}"
    );
    out
}

/// Placeholders may stay in comments (the example documents them there).
fn is_comment_line(text: &str, placeholder: &str) -> bool {
    text.lines()
        .filter(|l| l.contains(placeholder))
        .all(|l| l.trim_start().starts_with('#'))
}

/// A tool `scripts/test.sh` installs into its cache: the path in `env_var`
/// if set, else `<cache>/<rel(version)>`, where the version is the value of
/// the script's `version_key=` line. Panics saying how to get it.
pub fn cached_tool(
    name: &str,
    env_var: &str,
    version_key: &str,
    rel: impl Fn(&str) -> String,
) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env_var}={} is not a file", path.display());
        return path;
    }
    let script =
        std::fs::read_to_string(repo_root().join("scripts/test.sh")).expect("read scripts/test.sh");
    let prefix = format!("{version_key}=");
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("scripts/test.sh pins {version_key}"))
        .trim_matches('"');
    let cache = std::env::var_os("AUTHGATE_E2E_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/authgate-e2e")))
        .unwrap_or_default();
    let path = cache.join(rel(version));
    assert!(
        path.is_file(),
        "{name} {version} not found (no ${env_var}, not at {}): run scripts/test.sh",
        path.display()
    );
    path
}

/// A Go tool `scripts/test.sh` builds with `go install` into
/// `<cache>/<name>-<version>/<name>` (grpcurl, Caddy, helm).
pub fn cached_go_tool(name: &str, version_key: &str, env_var: &str) -> PathBuf {
    cached_tool(name, env_var, version_key, |v| format!("{name}-{v}/{name}"))
}

/// What a login host must never expose: the decision endpoints (anyone
/// could ask about any URL and read identity headers back), metrics and
/// health. Every example's login host answers these with 404.
pub const HIDDEN_ON_THE_LOGIN_HOST: [&str; 5] = [
    "/oauth2/auth",
    "/metrics",
    "/forward-auth",
    "/forward-auth/x",
    "/healthz",
];

/// A fresh temporary directory whose name says which test piece owns it.
pub fn temp_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("authgate-e2e-{what}-"))
        .tempdir()
        .expect("create a temporary directory")
}

/// Sends `GET <target> HTTP/1.0` over `stream` exactly as given (no
/// normalisation, unlike reqwest, which resolves `%2e%2e`), with `host` as
/// the Host header and `headers` (`"Name: value"` lines); returns the status
/// and the body, or status 0 when the server closed without answering.
pub async fn raw_get<S>(
    mut stream: S,
    target: &str,
    host: &str,
    headers: &[String],
) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = format!("GET {target} HTTP/1.0\r\nHost: {host}\r\n");
    for line in headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    // The server closes after an HTTP/1.0 response; a TLS close without
    // close_notify is fine here.
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    // Closed without an answer (nginx's `return 444`): status 0.
    if text.is_empty() {
        return (0, String::new());
    }
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every placeholder is replaced; placeholders in comments may stay.
    #[test]
    fn render_replaces_placeholders() {
        let out = render("# {{A}} doc\nx {{A}} {{B}}\n", &[("A", "1"), ("B", "2")]);
        assert_eq!(out, "# 1 doc\nx 1 2\n");
        let doc_only = render("# {{C}} is documented\nx\n", &[]);
        assert!(doc_only.contains("{{C}}"));
    }

    /// A placeholder left outside a comment fails loudly.
    #[test]
    #[should_panic(expected = "unrendered placeholders: [\"{{C}}\"]")]
    fn render_rejects_leftovers() {
        render("x {{C}}\n", &[]);
    }
}
