//! The embedded store (redb) on a real disk that is read-only or full: a
//! size-limited tmpfs mounted for the test (the tests run as root).

use std::process::Command;
use std::time::Duration;

use authgate::config::SessionStoreConfig;

use crate::fixture::{Stack, default_routes, header, session_cookie};
use crate::logs::Captured;
use crate::support::process::{ChildGuard, free_port};
use crate::support::tmpfs::Tmpfs;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const APP: &str = "https://app.example.test/";
/// Far above any bound the server is configured with here.
const GENEROUS: Duration = Duration::from_secs(30);

/// `authgate serve` with its store on a read-only disk refuses to start:
/// a non-zero exit and an error naming the file and the cause.
#[tokio::test]
async fn read_only_store_refuses_to_start() {
    let disk = Tmpfs::mount("4m");
    disk.remount("ro");
    let store = disk.path().join("sessions.redb");
    let dir = crate::support::temp_dir("store-ro");
    let config = dir.path().join("authgate.yaml");
    std::fs::write(
        &config,
        format!(
            "authenticate_service_url: https://auth.example.com\n\
             idp_provider_url: http://127.0.0.1:{}/dex\n\
             idp_client_id: authgate\n\
             idp_client_secret: client-secret\n\
             cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
             address: 127.0.0.1:{}\n\
             grpc_address: 127.0.0.1:{}\n\
             session_store: embedded:{}\n\
             policy:\n  - from: https://app.example.com\n    allow_any_authenticated_user: true\n",
            free_port(),
            free_port(),
            free_port(),
            store.display()
        ),
    )
    .expect("write config");
    let mut command = Command::new(BIN);
    command.args(["serve", "--config"]).arg(&config);
    let mut child = ChildGuard::spawn("authgate serve", command, &dir.path().join("serve.log"));
    let status = child.wait_exit(GENEROUS).await;
    let log = child.log();
    assert!(!status.success(), "started on a read-only disk\n{log}");
    assert!(log.contains(&store.display().to_string()), "{log}");
    assert!(log.contains("Read-only file system"), "{log}");
}

/// The disk under the embedded store fills up mid-run: logins fail closed
/// with the 503 "Service unavailable" page and an error log line, never a
/// 500 and never a session cookie; a signed-in user keeps being decided,
/// from the cache and from the file (reads need no space); an unknown
/// cookie is still refused. Once space is back, logins work again without
/// a restart.
#[tokio::test]
async fn full_disk_fails_logins_closed_and_recovers() {
    let logs = Captured::this_thread();
    let disk = Tmpfs::mount("16m");
    let store = SessionStoreConfig::Embedded(disk.path().join("sessions.redb"));
    let stack = Stack::start_with(default_routes(), |c| c.session_store = store).await;
    let alice = stack.login("alice@example.com", APP).await;
    assert_eq!(stack.auth(APP, Some(&alice)).await.status(), 200);

    let filler = disk.fill();
    // redb reuses pages its file already holds, so the first logins may
    // still fit; one of the next few needs a new page and fails.
    let mut refused = None;
    for _ in 0..50 {
        let (provider_url, login_cookie) = stack.start_login(APP).await;
        let callback = stack
            .provider_login(&provider_url, "alice@example.com", "alice")
            .await;
        let response = stack.callback(&callback, &login_cookie).await;
        let status = response.status().as_u16();
        assert!(
            status == 302 || status == 503,
            "a login on a full disk answered {status}"
        );
        if status == 503 {
            assert_eq!(session_cookie(&response), None, "no session on a failure");
            refused = Some(response.text().await.expect("page"));
            break;
        }
    }
    let page = refused.expect("a login failed once the disk was full");
    assert!(page.contains("Service unavailable"), "{page}");
    let lines = logs.lines();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "session store unavailable" && l["level"] == "ERROR"),
        "{lines:?}"
    );

    // Decisions: alice from the cache; a cookie nobody issued is refused.
    assert_eq!(stack.auth(APP, Some(&alice)).await.status(), 200);
    // Reads need no space: out of the cache, she is read from the file
    // (reopened after the failed write).
    stack.app.sessions().forget_all();
    assert_eq!(stack.auth(APP, Some(&alice)).await.status(), 200);
    let unknown = stack
        .auth(APP, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .await;
    assert_eq!(unknown.status(), 401);

    std::fs::remove_file(filler).expect("free the space");
    let again = stack.login("alice@example.com", APP).await;
    assert_ne!(again, alice, "a new session");
    let response = stack.auth(APP, Some(&again)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-email"),
        "alice@example.com"
    );
}
