//! A TLS proxy at the edge (Caddy, HAProxy) started for a test from the
//! example users copy: the process, the port it serves `app.` and `auth.`
//! of the test domain on, and clients for it.

use std::net::{Ipv4Addr, SocketAddr};

use super::nginx::BROWSER_ACCEPT;
use super::process::{ChildGuard, READY_TIMEOUT, free_port};
use super::tls::{TestCa, https_client};
use crate::fixture::{Stack, header, set_cookies};

/// A running proxy. Dropping it kills the process and removes its directory.
pub struct EdgeProxy {
    child: ChildGuard,
    https: SocketAddr,
    domain: String,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl EdgeProxy {
    /// Runs `spawn(https, attempt)` (which writes the proxy's configuration
    /// for that port and starts it) until the proxy listens on `https`: a
    /// port taken between choosing it and the proxy binding it means
    /// another try, with another port.
    pub async fn start(
        dir: tempfile::TempDir,
        domain: &str,
        ca: &TestCa,
        mut spawn: impl FnMut(SocketAddr, u32) -> ChildGuard,
    ) -> EdgeProxy {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let https = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let mut child = spawn(https, attempt);
            if attempt < 3 && !listening(&mut child, https).await {
                continue;
            }
            child.wait_for_port(https).await;
            return EdgeProxy {
                child,
                https,
                domain: domain.to_owned(),
                ca_pem: ca.cert_pem(),
                _dir: dir,
            };
        }
    }

    /// `https://<sub>.<domain>:<port><path>`, e.g. `url("app", "/x?q=1")`.
    pub fn url(&self, sub: &str, path: &str) -> String {
        format!("https://{sub}.{}:{}{path}", self.domain, self.https.port())
    }

    pub fn https_port(&self) -> u16 {
        self.https.port()
    }

    /// A client that resolves `app.` and `auth.` of the test domain to the
    /// proxy, trusts the test CA, and does not follow redirects.
    pub fn http_client(&self) -> openidconnect::reqwest::Client {
        let hosts = ["app", "auth"].map(|sub| format!("{sub}.{}", self.domain));
        https_client(&self.ca_pem, hosts, self.https)
    }

    /// [`EdgeProxy::http_client`], connecting from the loopback address
    /// `local` (127.0.0.0/8 is all loopback): a client at another address.
    pub fn http_client_from(&self, local: std::net::IpAddr) -> openidconnect::reqwest::Client {
        let hosts = ["app", "auth"].map(|sub| format!("{sub}.{}", self.domain));
        super::tls::https_client_builder(&self.ca_pem, hosts, self.https)
            .local_address(local)
            .build()
            .expect("build HTTP client")
    }

    /// With a route for `app` admitting only `source_ip: 127.0.0.5/32`
    /// ([`crate::fixture::source_ip_route`]): a client connecting from
    /// 127.0.0.5 reaches `upstream`; one from 127.0.0.6 gets 403, also when
    /// it writes 127.0.0.5 into its own `X-Forwarded-For`.
    pub async fn assert_source_ip_decides(&self, upstream: &super::upstream::EchoUpstream) {
        let url = self.url("app", "/page");
        let status = async |last: u8, spoofed: Option<&str>| {
            let mut request = self
                .http_client_from([127, 0, 0, last].into())
                .get(&url)
                .header("Accept", "application/json");
            if let Some(spoofed) = spoofed {
                request = request.header("X-Forwarded-For", spoofed);
            }
            request.send().await.expect("request").status().as_u16()
        };
        assert_eq!(status(5, None).await, 200, "{}", self.log());
        assert_eq!(status(6, None).await, 403);
        assert_eq!(status(6, Some("127.0.0.5")).await, 403);
        assert_eq!(upstream.received().len(), 1, "only 127.0.0.5");
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

    /// The login through the proxy as a browser: the protected `url` → a
    /// 302 (never cached) to the login host's sign-in → the provider's form
    /// → the callback → a 302 back on exactly `url`. Returns the callback's
    /// response, which sets the session cookie.
    pub async fn browser_login(
        &self,
        stack: &Stack,
        url: &str,
        user: &str,
    ) -> openidconnect::reqwest::Response {
        let client = self.http_client();
        let get = |url: &str, cookie: Option<&str>| {
            let mut request = client.get(url).header("Accept", BROWSER_ACCEPT);
            if let Some(cookie) = cookie {
                request = request.header("Cookie", cookie);
            }
            request.send()
        };
        let response = get(url, None).await.expect("protected URL");
        assert_eq!(response.status(), 302, "{}", self.log());
        assert_eq!(header(&response, "cache-control"), "no-store");
        let sign_in = header(&response, "location");
        assert!(
            sign_in.starts_with(&self.url("auth", "/oauth2/start?rd=")),
            "{sign_in}"
        );
        let response = get(&sign_in, None).await.expect("sign-in");
        assert_eq!(response.status(), 302, "{}", self.log());
        let provider = header(&response, "location");
        let login_cookie = set_cookies(&response)
            .into_iter()
            .find(|(name, _)| name.starts_with("_authgate_login_"))
            .map(|(n, v)| format!("{n}={v}"))
            .expect("login cookie");
        let password = user.split('@').next().unwrap_or(user);
        let callback = stack.provider_login(&provider, user, password).await;
        assert!(callback.starts_with(&self.url("auth", "/oauth2/callback?")));
        let response = get(&callback, Some(&login_cookie)).await.expect("callback");
        assert_eq!(response.status(), 302, "{}", self.log());
        assert_eq!(
            header(&response, "location"),
            url,
            "back on exactly that URL"
        );
        response
    }

    /// The proxy's log (startup, errors, requests).
    pub fn log(&self) -> String {
        self.child.log()
    }
}

/// Waits until the proxy listens on `https` (true) or exits (false: most
/// likely its port was taken meanwhile; the log says).
async fn listening(child: &mut ChildGuard, https: SocketAddr) -> bool {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
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
