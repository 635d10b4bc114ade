//! Live reload with the real binary: `authgate serve` from a file, then the
//! file changed under it — with SIGHUP, without a signal (the watcher), with
//! a broken file, and 20 times while clients keep asking.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use authgate::clock::SystemClock;
use authgate::config;
use authgate::identity::Identity;
use authgate::session::{Sealer, Sessions, open_store};

use openidconnect::reqwest;

use crate::fixture::client;
use crate::support::process::{ChildGuard, READY_TIMEOUT, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const APP: &str = "https://app.example.com/dashboard";

/// `authgate serve` on loopback ports, its file, and a session cookie of a
/// user in group `ops` (made in its embedded store before it started).
pub(crate) struct Served {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) child: ChildGuard,
    pub(crate) base: String,
    pub(crate) cookie: String,
    port: u16,
    pub(crate) grpc_port: u16,
    idp_port: u16,
}

impl Served {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("authgate.yaml")
    }

    /// The configuration with `extra` at the top level and one route that
    /// admits `group` to the app.
    fn yaml(&self, group: &str, extra: &str) -> String {
        config_text(
            self.dir.path(),
            [self.port, self.grpc_port, self.idp_port],
            group,
            extra,
        )
    }

    fn write(&self, text: &str) {
        // Write beside and rename, as editors and ConfigMaps do: the file is
        // never seen half-written.
        let tmp = self.dir.path().join(".authgate.yaml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    fn hangup(&self) {
        self.child.signal("HUP");
    }

    /// The status `/oauth2/auth` answers for the app with the cookie.
    pub(crate) async fn decide(&self, http: &reqwest::Client) -> u16 {
        http.get(format!("{}/oauth2/auth", self.base))
            .header("X-Original-URL", APP)
            .header("Cookie", format!("_authgate={}", self.cookie))
            .send()
            .await
            .expect("auth request")
            .status()
            .as_u16()
    }

    /// Waits until the decision is `status`; panics with the log if not.
    async fn wait_for_decision(&mut self, status: u16, what: &str) {
        let http = client();
        let (base, cookie) = (self.base.clone(), self.cookie.clone());
        self.child
            .wait_until(what, READY_TIMEOUT, || {
                let request = http
                    .get(format!("{base}/oauth2/auth"))
                    .header("X-Original-URL", APP)
                    .header("Cookie", format!("_authgate={cookie}"))
                    .send();
                async move { request.await.is_ok_and(|r| r.status().as_u16() == status) }
            })
            .await;
    }

    /// Waits until the log has `count` lines containing `needle`.
    pub(crate) async fn wait_for_log(&mut self, needle: &str, count: usize) {
        let path = self.child.log_path().to_owned();
        self.child
            .wait_until(
                &format!("{count} log lines with {needle:?}"),
                READY_TIMEOUT,
                || {
                    let found = log_count(&path, needle);
                    async move { found >= count }
                },
            )
            .await;
    }
}

fn log_count(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// The configuration on ports `[address, grpc_address, provider]`.
fn config_text(dir: &Path, ports: [u16; 3], group: &str, extra: &str) -> String {
    let [port, grpc_port, idp_port] = ports;
    format!(
        "authenticate_service_url: https://auth.example.com\n\
         idp_provider_url: http://127.0.0.1:{idp_port}/dex\n\
         idp_client_id: authgate\n\
         idp_client_secret: client-secret\n\
         cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
         address: 127.0.0.1:{port}\n\
         grpc_address: 127.0.0.1:{grpc_port}\n\
         session_store: embedded:{store}\n\
         refresh_interval: 24h\n\
         {extra}\
         policy:\n  - id: app\n    from: https://app.example.com\n    allowed_groups: [{group}]\n",
        store = dir.join("sessions.redb").display(),
    )
}

/// Starts `authgate serve` admitting `ops`, with a session for an `ops`
/// member already in its store. The provider is never reached: discovery
/// fails in the background; decisions for existing sessions do not need it.
async fn serve() -> Served {
    serve_with("", free_port()).await
}

/// [`serve`] with `extra` top-level keys and the provider expected at
/// `http://127.0.0.1:<idp_port>/dex`. Ports are picked free and may be
/// taken before authgate binds them: then it starts again on others.
pub(crate) async fn serve_with(extra: &str, idp_port: u16) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("authgate.yaml");
    let mut cookie = None;
    for attempt in 1.. {
        let (port, grpc_port) = (free_port(), free_port());
        let text = config_text(dir.path(), [port, grpc_port, idp_port], "ops", extra);
        std::fs::write(&path, text).expect("write");
        if cookie.is_none() {
            cookie = Some(make_session(&path).await);
        }
        let mut command = Command::new(BIN);
        command.args(["serve", "--config"]).arg(&path);
        let log = dir.path().join(format!("serve-{attempt}.log"));
        let mut child = ChildGuard::spawn("authgate serve", command, &log);
        let addr = format!("127.0.0.1:{port}").parse().expect("addr");
        if attempt < 3 {
            // Up or exited, whichever comes first (bounded by READY_TIMEOUT).
            let started = std::time::Instant::now();
            while child.check_running().is_ok()
                && tokio::net::TcpStream::connect(addr).await.is_err()
                && started.elapsed() < READY_TIMEOUT
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if child.check_running().is_err() && child.log().contains("Address already in use") {
                continue;
            }
        }
        child.wait_for_port(addr).await;
        return Served {
            dir,
            child,
            base: format!("http://127.0.0.1:{port}"),
            cookie: cookie.expect("made above"),
            port,
            grpc_port,
            idp_port,
        };
    }
    unreachable!("the loop returns")
}

/// A session for `alice` in group `ops`, made in the configured embedded
/// store before authgate opens it; its cookie value.
async fn make_session(path: &Path) -> String {
    let loaded = config::load_file(path, &|_| None).expect("valid config");
    let clock = Arc::new(SystemClock);
    let store = open_store(&loaded.config.session_store, clock.clone()).expect("store");
    let sealer = Sealer::new(&loaded.config.cookie.secret, &[]).expect("sealer");
    let sessions = Sessions::new(sealer, store, clock, loaded.config.cookie.expire);
    let identity = Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["ops".into()],
        ..Identity::default()
    };
    // Never due for a refresh: the provider is not running.
    let far = i64::MAX / 2;
    let (cookie, _) = sessions.create(identity, None, far).await.expect("session");
    cookie
    // The store closes here, before the binary opens it.
}

/// SIGHUP applies a changed `allowed_groups`; a broken file is refused with
/// its line and column and the running routes stay; a change written
/// without a signal is picked up by the file watcher.
#[tokio::test]
async fn reload_on_sighup_and_on_file_change() {
    let mut served = serve().await;
    let http = client();
    assert_eq!(served.decide(&http).await, 200, "ops is admitted at start");

    served.write(&served.yaml("dev", ""));
    served.hangup();
    served
        .wait_for_decision(403, "the route now admits dev only")
        .await;
    served.wait_for_log("configuration reloaded", 1).await;

    served.write(&served.yaml("ops", "cookie_expire: forever\n"));
    served.hangup();
    served.wait_for_log("configuration reload refused", 1).await;
    let log = served.child.log();
    assert!(log.contains("authgate.yaml:10:"), "{log}");
    assert!(log.contains("cookie_expire"), "{log}");
    assert_eq!(served.decide(&http).await, 403, "the running routes stay");

    // No signal: the watcher sees the file change.
    served.write(&served.yaml("ops", ""));
    served
        .wait_for_decision(200, "the watcher applied the file")
        .await;
}

/// A changed key that needs a restart is named in the log; the routes in
/// the same file still apply.
#[tokio::test]
async fn restart_only_keys_are_logged_and_routes_apply() {
    let mut served = serve().await;
    served.write(&served.yaml("dev", "cookie_name: _renamed\n"));
    served.hangup();
    served.wait_for_decision(403, "the routes applied").await;
    served.wait_for_log("needs restart", 1).await;
    assert!(served.child.log().contains("cookie_name"));
}

/// 20 reloads while four clients keep asking with one cookie: every answer
/// is the 200 or the 403 of one of the two policies — no 5xx, no error, no
/// dropped connection.
#[tokio::test]
async fn reload_under_load_drops_nothing() {
    let mut served = serve().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (base, cookie, stop) = (served.base.clone(), served.cookie.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut seen = [0usize; 2];
            // Bounded: stops when told, or after 100 000 requests.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = http
                    .get(format!("{base}/oauth2/auth"))
                    .header("X-Original-URL", APP)
                    .header("Cookie", format!("_authgate={cookie}"))
                    .send()
                    .await;
                match response.map(|r| r.status().as_u16()) {
                    Ok(200) => seen[0] += 1,
                    Ok(403) => seen[1] += 1,
                    Ok(other) => return Err(format!("unexpected status {other}")),
                    Err(e) => return Err(format!("request failed: {e}")),
                }
            }
            Ok(seen)
        }));
    }
    for i in 0..20 {
        let group = if i % 2 == 0 { "dev" } else { "ops" };
        let before = log_count(served.child.log_path(), "configuration reloaded");
        served.write(&served.yaml(group, ""));
        served.hangup();
        served
            .wait_for_log("configuration reloaded", before + 1)
            .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = [0usize; 2];
    for client in clients {
        let seen = client
            .await
            .expect("client task")
            .unwrap_or_else(|e| panic!("{e}\n--- authgate log ---\n{}", served.child.log()));
        total[0] += seen[0];
        total[1] += seen[1];
    }
    assert!(total[0] + total[1] > 0, "the clients sent requests");
    eprintln!(
        "under 20 reloads: {} answered 200, {} answered 403, none failed",
        total[0], total[1]
    );
    // The last file admits ops again.
    served
        .wait_for_decision(200, "the last reload applied")
        .await;
}
