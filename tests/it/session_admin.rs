//! Operators managing sessions with `authgate sessions`: three `authgate
//! serve` processes on one real Redis behind real nginx
//! (`examples/nginx/nginx.conf`, one upstream with three servers), a user
//! signed in through nginx, listed with where the login came from, revoked
//! with `authgate sessions revoke --user`, and refused by every replica
//! within a second; the command's audit line; a Redis that is down refuses
//! the revocation. With the embedded store, the same command goes through
//! the running server's admin socket, or the file when no server runs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::clock::SystemClock;
use openidconnect::reqwest;
use tokio::net::TcpListener;

use crate::fixture::{CLIENT_ID, CLIENT_SECRET, COOKIE, client, header, session_cookie};
use crate::nginx_flow::login_from_sign_in;
use crate::support::nginx::{BROWSER_ACCEPT, DOMAIN, Nginx, NginxOptions};
use crate::support::process::{ChildGuard, READY_TIMEOUT, free_port};
use crate::support::redis::Redis;
use crate::support::temp_dir;
use crate::support::tls::{TestCa, https_client_builder};
use crate::support::upstream::EchoUpstream;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";
const SECRET: &str = "lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=";

/// The provider, serving until dropped.
struct Provider {
    issuer: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Provider {
    /// The development provider with the demo users, our client calling
    /// back to `login_base`.
    async fn start(login_base: &str) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}/dex", listener.local_addr().expect("addr"));
        let config = crate::fixture::test_config(login_base, &issuer, Vec::new());
        let idp = crate::fixture::provider(&issuer, &config, Arc::new(SystemClock));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(idp.serve(listener, async {
            let _ = stopped.await;
        }));
        Provider {
            issuer,
            _stop: stop,
        }
    }
}

/// The configuration every process shares.
fn config_text(login_base: &str, issuer: &str, store: &str, app: &str) -> String {
    format!(
        "authenticate_service_url: {login_base}\n\
         idp_provider_url: {issuer}\n\
         idp_client_id: {CLIENT_ID}\n\
         idp_client_secret: {CLIENT_SECRET}\n\
         cookie_secret: {SECRET}\n\
         cookie_domain: {DOMAIN}\n\
         session_store: {store}\n\
         trusted_proxies: [127.0.0.1/32]\n\
         log_format: json\n\
         policy:\n  - from: {app}\n    allowed_groups: [devops]\n"
    )
}

/// `authgate serve` on `addr`, ready (provider discovered, store answering).
pub(crate) async fn serve(config: &Path, addr: SocketAddr, name: &str) -> ChildGuard {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("ADDRESS", addr.to_string())
        .env("GRPC_ADDRESS", format!("127.0.0.1:{}", free_port()));
    let log = config.with_file_name(format!("{name}.log"));
    let mut child = ChildGuard::spawn(name, command, &log);
    let http = client();
    let ready = format!("http://{addr}/readyz");
    child
        .wait_until("ready (/readyz 200)", READY_TIMEOUT, || {
            let request = http.get(&ready).send();
            async move { request.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
    child
}

/// `authgate sessions <args>` on `config`.
fn sessions(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("sessions")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "ops-oncall")
        .output()
        .expect("run authgate sessions")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `/oauth2/auth` as nginx asks it, straight to one replica.
pub(crate) async fn decide(replica: SocketAddr, url: &str, cookie: &str) -> u16 {
    client()
        .get(format!("http://{replica}/oauth2/auth"))
        .header("X-Original-URL", url)
        .header("Cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("auth request")
        .status()
        .as_u16()
}

/// The login through nginx as a browser; the session cookie's value.
async fn login(browser: &reqwest::Client, nginx: &Nginx, url: &str, user: &str) -> String {
    let response = browser.get(url).send().await.expect("through nginx");
    assert_eq!(response.status(), 302, "{}", nginx.error_log());
    let sign_in = header(&response, "location");
    let callback = nginx.url("auth", "/oauth2/callback?");
    let response = login_from_sign_in(browser, &client(), &sign_in, user, &callback).await;
    session_cookie(&response).expect("session cookie")
}

/// The done-when of issue 20: an operator revokes a user while three
/// replicas (separate processes) run behind nginx on one Redis, and the
/// user's next request on any replica is sent to sign in within a second;
/// another user is untouched. The listing shows where the login came from
/// (the browser's address as nginx reported it, its user agent); the
/// command logs who revoked whose sessions; with Redis down it refuses.
#[tokio::test]
async fn operator_revokes_a_user_on_three_replicas() {
    let mut redis = Redis::start().await;
    let dir = temp_dir("session-admin");
    let replicas: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let ca = TestCa::new("authgate session-admin CA");
    let upstream = EchoUpstream::start().await;
    let nginx = Nginx::start_with_replicas(
        NginxOptions {
            authgate: replicas[0],
            upstream: upstream.addr(),
            ca: &ca,
            domain: DOMAIN,
        },
        &replicas[1..],
    )
    .await;
    let login_base = nginx.url("auth", "");
    let provider = Provider::start(&login_base).await;
    let app = nginx.url("hello", "");
    let config = dir.path().join("authgate.yaml");
    std::fs::write(
        &config,
        config_text(&login_base, &provider.issuer, &redis.url(), &app),
    )
    .expect("write config");
    let mut servers = Vec::new();
    for (i, addr) in replicas.iter().enumerate() {
        servers.push(serve(&config, *addr, &format!("replica-{i}")).await);
    }

    let browser = https_client_builder(
        nginx.ca_pem(),
        [format!("hello.{DOMAIN}"), format!("auth.{DOMAIN}")],
        nginx.https_addr(),
    )
    .user_agent(BROWSER)
    .default_headers(reqwest::header::HeaderMap::from_iter([(
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static(BROWSER_ACCEPT),
    )]))
    .build()
    .expect("browser");
    let url = nginx.url("hello", "/");
    let alice = login(&browser, &nginx, &url, ALICE).await;
    let bob = login(&browser, &nginx, &url, BOB).await;
    for replica in &replicas {
        assert_eq!(
            decide(*replica, &url, &alice).await,
            200,
            "alice on {replica}"
        );
        assert_eq!(decide(*replica, &url, &bob).await, 403, "bob on {replica}");
    }

    let listed = sessions(&config, &["list", "--user", ALICE]);
    let table = text(&listed.stdout);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    println!("$ authgate sessions list --user {ALICE}\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "a header and alice's one session: {table}");
    assert!(lines[0].starts_with("SESSION"), "{table}");
    for shown in [ALICE, "127.0.0.1", BROWSER] {
        assert!(lines[1].contains(shown), "{shown} missing: {table}");
    }
    let everyone = text(&sessions(&config, &["list", "--json"]).stdout);
    let everyone: serde_json::Value = serde_json::from_str(&everyone).expect("JSON list");
    assert_eq!(everyone.as_array().map(Vec::len), Some(2), "{everyone}");

    let revoked = sessions(&config, &["revoke", "--user", ALICE]);
    let start = Instant::now();
    let (out, audit) = (text(&revoked.stdout), text(&revoked.stderr));
    assert!(revoked.status.success(), "{audit}");
    println!("$ authgate sessions revoke --user {ALICE}\n{out}{audit}");
    assert!(
        out.starts_with("revoked 1 session(s) (user alice@example.com)"),
        "{out}"
    );
    let audit_line: serde_json::Value = audit
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON audit line");
    assert_eq!(audit_line["target"], "authgate::audit", "{audit}");
    assert_eq!(audit_line["action"], "revoke", "{audit}");
    assert_eq!(audit_line["users"], ALICE, "{audit}");
    assert_eq!(audit_line["sessions"], 1, "{audit}");
    assert!(
        audit_line["actor"]
            .as_str()
            .is_some_and(|a| a.contains("ops-oncall")),
        "{audit}"
    );

    // Every replica refuses the cookie (401: sign in) within a second.
    let mut pending: Vec<SocketAddr> = replicas.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for replica in pending {
            if decide(replica, &url, &alice).await != 401 {
                still.push(replica);
            }
        }
        pending = still;
        assert!(
            start.elapsed() < Duration::from_secs(1) || pending.is_empty(),
            "still accepted after {:?} by {pending:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "every replica refused the revoked cookie after {:?}",
        start.elapsed()
    );
    let again = browser
        .get(&url)
        .header("Cookie", format!("{COOKIE}={alice}"))
        .send()
        .await
        .expect("through nginx");
    assert_eq!(again.status(), 302, "sent to sign in");
    assert!(header(&again, "location").contains("/oauth2/start"));
    for replica in &replicas {
        assert_eq!(
            decide(*replica, &url, &bob).await,
            403,
            "bob still signed in"
        );
    }
    let left = text(&sessions(&config, &["list"]).stdout);
    assert!(left.contains(BOB) && !left.contains(ALICE), "{left}");

    // Fail closed: with Redis down the revocation is an error, never "done".
    redis.stop();
    let refused = sessions(&config, &["revoke", "--all"]);
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
    let error = text(&refused.stderr);
    println!("$ authgate sessions revoke --all   # Redis down\n{error}");
    assert!(error.contains("session store"), "{error}");
    assert!(!text(&refused.stdout).contains("revoked"));
    for server in &mut servers {
        server.check_running().expect("replica still running");
    }
}

/// The login straight at one `authgate serve` (its own login host); the
/// session cookie's value.
async fn login_direct(base: &str, user: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(BROWSER)
        .build()
        .expect("client");
    let response = login_from_sign_in(
        &http,
        &client(),
        &format!("{base}/oauth2/start"),
        user,
        &format!("{base}/oauth2/callback?"),
    )
    .await;
    session_cookie(&response).expect("session cookie")
}

/// The embedded store: while a server holds the file, the command asks it
/// over the admin socket beside the file (owner-only), the revocation
/// takes effect on that server at once and the server writes the audit
/// line; with no server running, the command works on the file, and the
/// next server refuses what it revoked.
#[tokio::test]
async fn embedded_store_through_the_admin_socket_or_the_file() {
    let dir = temp_dir("session-admin-embedded");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let base = format!("http://{addr}");
    let provider = Provider::start(&base).await;
    let store = dir.path().join("sessions.redb");
    let config = dir.path().join("authgate.yaml");
    let app = "https://app.example.test";
    // No cookie_domain: the login host is an address, the cookie its own.
    let text_of = |store: &str| {
        config_text(&base, &provider.issuer, store, app).replace(
            &format!("cookie_domain: {DOMAIN}\n"),
            "cookie_secure: false\n",
        )
    };
    std::fs::write(&config, text_of(&format!("embedded:{}", store.display()))).expect("config");
    let mut server = serve(&config, addr, "embedded").await;
    let socket = dir.path().join("sessions.redb.admin.sock");
    {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        let meta = std::fs::metadata(&socket).expect("the admin socket beside the store");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner only");
    }

    let first = login_direct(&base, ALICE).await;
    let second = login_direct(&base, ALICE).await;
    let url = format!("{app}/");
    assert_eq!(decide(addr, &url, &first).await, 200, "signed in");
    let listed = sessions(&config, &["list", "--user", ALICE]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(
        text(&listed.stdout).lines().count(),
        3,
        "{}",
        text(&listed.stdout)
    );
    let id = text(&listed.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    // One session, through the server: refused at once, the other kept.
    let revoked = sessions(&config, &["revoke", "--session", &id]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    assert!(
        text(&revoked.stdout).starts_with("revoked 1 session(s)"),
        "{}",
        text(&revoked.stdout)
    );
    let statuses = [
        decide(addr, &url, &first).await,
        decide(addr, &url, &second).await,
    ];
    assert!(
        statuses.contains(&401) && statuses.contains(&200),
        "{statuses:?}"
    );
    let log = server.log();
    let audit = log
        .lines()
        .find(|l| l.contains("authgate::audit") && l.contains("\"revoke\""))
        .unwrap_or_else(|| panic!("no audit line in the server's log:\n{log}"));
    assert!(audit.contains("unix-socket:uid"), "{audit}");
    println!("the server's audit line:\n{audit}");
    assert!(audit.contains(&id), "{audit}");

    // No server: the command opens the file itself.
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(20)).await;
    assert!(!socket.exists(), "the socket goes with the server");
    let offline = sessions(&config, &["revoke", "--user", ALICE]);
    assert!(offline.status.success(), "{}", text(&offline.stderr));
    assert!(
        text(&offline.stdout).starts_with("revoked 1 session(s)"),
        "{}",
        text(&offline.stdout)
    );
    let _server = serve(&config, addr, "embedded-again").await;
    assert_eq!(decide(addr, &url, &first).await, 401);
    assert_eq!(decide(addr, &url, &second).await, 401);

    // The memory store lives inside one server: nothing to reach.
    let memory = dir.path().join("memory.yaml");
    std::fs::write(&memory, text_of("memory")).expect("config");
    let refused = sessions(&memory, &["list"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("admin API"),
        "{}",
        text(&refused.stderr)
    );
}

/// The admin API on the login host: members of `admin_groups` list and
/// revoke anyone's sessions; others get 403, anonymous callers 401; a
/// cross-site DELETE is refused before anything happens; the revoked
/// cookie is refused at once.
#[tokio::test]
async fn admin_api_is_for_admin_groups_only() {
    let stack = crate::fixture::Stack::start_with(crate::fixture::default_routes(), |c| {
        c.admin_groups = vec!["admins".into()];
    })
    .await;
    let app = "https://app.example.test/";
    let alice = stack.login(ALICE, app).await;
    let bob = stack.login(BOB, app).await;
    let api = format!("{}/oauth2/admin/sessions", stack.base);
    let http = client();
    let call = |method: reqwest::Method, query: &str, cookie: Option<&str>, site: &str| {
        let mut request = http
            .request(method, format!("{api}{query}"))
            .header("Sec-Fetch-Site", site);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", format!("{COOKIE}={cookie}"));
        }
        async move {
            let response = request.send().await.expect("admin API");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            (status, body)
        }
    };
    let (get, delete) = (reqwest::Method::GET, reqwest::Method::DELETE);
    let same = "same-origin";

    assert_eq!(call(get.clone(), "", None, same).await.0, 401);
    assert_eq!(call(get.clone(), "", Some(&bob), same).await.0, 403);
    assert_eq!(
        call(delete.clone(), "?all=true", Some(&bob), same).await.0,
        403
    );
    let (status, all) = call(get.clone(), "", Some(&alice), same).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["sessions"].as_array().map(Vec::len), Some(2), "{all}");
    let (_, only_bob) = call(get.clone(), &format!("?user={BOB}"), Some(&alice), same).await;
    assert_eq!(only_bob["sessions"][0]["user"], BOB, "{only_bob}");

    // Cross-site, or ambiguous: nothing happens.
    let bob_query = format!("?user={BOB}");
    assert_eq!(
        call(delete.clone(), &bob_query, Some(&alice), "cross-site")
            .await
            .0,
        403
    );
    let (status, body) = call(
        delete.clone(),
        &format!("{bob_query}&all=true"),
        Some(&alice),
        same,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        stack.auth(app, Some(&bob)).await.status(),
        403,
        "bob still signed in"
    );

    let (status, revoked) = call(delete.clone(), &bob_query, Some(&alice), same).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(
        revoked["sessions"].as_array().map(Vec::len),
        Some(1),
        "{revoked}"
    );
    assert_eq!(revoked["sessions"][0]["user"], BOB);
    assert_eq!(
        stack.auth(app, Some(&bob)).await.status(),
        401,
        "bob must sign in again"
    );
    assert_eq!(
        stack.auth(app, Some(&alice)).await.status(),
        200,
        "alice untouched"
    );
}

/// The value of the hidden field `name` in `html`.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[start..].split('"').next()?.to_owned())
}

/// A user's own sessions: `/oauth2/userinfo` and `/oauth2/sessions` list
/// them (this browser marked); each can be ended from this site only, and
/// only the user's own; after sign-out, the signed-out page's button ends
/// all the user's other sessions, and nobody else's.
#[tokio::test]
async fn users_list_and_end_their_own_sessions() {
    let stack = crate::fixture::Stack::start().await;
    let app = "https://app.example.test/";
    let laptop = stack.login(ALICE, app).await;
    let phone = stack.login(ALICE, app).await;
    let bob = stack.login(BOB, app).await;
    let http = client();
    let base = stack.base.clone();
    let userinfo = |cookie: String| {
        let request = http
            .get(format!("{base}/oauth2/userinfo"))
            .header("Cookie", format!("{COOKIE}={cookie}"));
        async move {
            let text = request
                .send()
                .await
                .expect("userinfo")
                .text()
                .await
                .expect("body");
            serde_json::from_str::<serde_json::Value>(&text).expect("JSON")
        }
    };
    let mine = userinfo(laptop.clone()).await;
    let sessions = mine["sessions"].as_array().expect("sessions").clone();
    assert_eq!(sessions.len(), 2, "{mine}");
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{mine}");
    let phone_id = sessions
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .unwrap()
        .to_owned();
    let bob_id = userinfo(bob.clone()).await["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let page = http
        .get(format!("{base}/oauth2/sessions"))
        .header("Cookie", format!("{COOKIE}={laptop}"))
        .send()
        .await
        .expect("sessions page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&phone_id) && html.contains("this browser"),
        "{html}"
    );
    assert!(!html.contains(&bob_id), "{html}");

    let post = |path: &str, cookie: Option<&str>, form: Vec<(&str, String)>, site: &str| {
        let mut request = http
            .post(format!("{base}{path}"))
            .header("Sec-Fetch-Site", site)
            .form(&form);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", format!("{COOKIE}={cookie}"));
        }
        async move {
            let response = request.send().await.expect("post");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }
    };
    let same = "same-origin";
    let end_phone = vec![("session", phone_id.clone())];
    assert_eq!(
        post(
            "/oauth2/sessions",
            Some(&laptop),
            end_phone.clone(),
            "cross-site"
        )
        .await
        .0,
        403
    );
    let not_mine = vec![("session", bob_id.clone())];
    assert_eq!(
        post("/oauth2/sessions", Some(&laptop), not_mine, same)
            .await
            .0,
        400
    );
    assert_eq!(
        stack.auth(app, Some(&bob)).await.status(),
        403,
        "bob still signed in"
    );
    assert_eq!(stack.auth(app, Some(&phone)).await.status(), 200);
    assert_eq!(
        post("/oauth2/sessions", Some(&laptop), end_phone, same)
            .await
            .0,
        302
    );
    assert_eq!(
        stack.auth(app, Some(&phone)).await.status(),
        401,
        "phone ended"
    );
    assert_eq!(
        stack.auth(app, Some(&laptop)).await.status(),
        200,
        "laptop kept"
    );

    // Sign out here, then "sign out of all my sessions" from that page.
    let tablet = stack.login(ALICE, app).await;
    let signed_out = crate::fixture::sign_out(
        &http,
        &format!("{base}/oauth2/sign_out"),
        &format!("{COOKIE}={laptop}"),
    )
    .await;
    let html = signed_out.text().await.unwrap();
    assert!(html.contains("Sign out of all my sessions"), "{html}");
    let token = hidden_field(&html, "token").expect("token field");
    let all = vec![("token", token)];
    assert_eq!(
        post("/oauth2/sign_out_all", None, all.clone(), "cross-site")
            .await
            .0,
        403
    );
    let garbage = vec![("token", "x".repeat(40))];
    assert_eq!(
        post("/oauth2/sign_out_all", None, garbage, same).await.0,
        400
    );
    assert_eq!(stack.auth(app, Some(&tablet)).await.status(), 200);
    let (status, html) = post("/oauth2/sign_out_all", None, all, same).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("signed out of all your sessions (1 more ended)"),
        "{html}"
    );
    assert_eq!(
        stack.auth(app, Some(&tablet)).await.status(),
        401,
        "tablet ended"
    );
    assert_eq!(
        stack.auth(app, Some(&bob)).await.status(),
        403,
        "bob untouched"
    );
}
