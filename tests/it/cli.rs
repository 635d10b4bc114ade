//! The binary as a user runs it: `check-config` on good and bad files, and
//! `authgate demo` walked through 401 → login → 200 as its banner says.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fixture::{client, header, session_cookie};
use crate::support::process::{ChildGuard, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

/// A file with three independent mistakes: each is reported with its line
/// and column, the secret's value never appears, and the exit status is
/// non-zero.
#[test]
fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("authgate.yaml");
    std::fs::write(
        &path,
        "authenticate_service_url: https://auth.example.com\n\
         idp_provider_url: https://dex.example.com/dex\n\
         idp_client_id: pom\n\
         idp_client_secret: s3cret-value\n\
         cookie_secret: not-32-bytes-SECRETVALUE\n\
         cookie_expire: forever\n\
         cookie_secrte: x\n\
         policy:\n  - from: https://hello.example.com\n    allowed_groups: [devops]\n",
    )
    .expect("write");
    let output = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run authgate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("authgate.yaml:5:"), "{stderr}");
    assert!(stderr.contains("cookie_secret"), "{stderr}");
    assert!(stderr.contains("authgate.yaml:6:"), "{stderr}");
    assert!(stderr.contains("authgate.yaml:7:"), "{stderr}");
    assert!(stderr.contains("did you mean"), "{stderr}");
    assert!(!stderr.contains("SECRETVALUE"), "{stderr}");
    assert!(!stderr.contains("s3cret-value"), "{stderr}");
}

/// `serve` refuses to start (and bind) with an invalid configuration.
#[test]
fn serve_refuses_invalid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "address: 127.0.0.1:0\nunknown_key: 1\n").expect("write");
    let output = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run authgate");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown_key"));
}

/// The example configuration shipped with the repo passes `check-config`.
#[test]
fn example_config_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("cookie_secret");
    let client_secret = dir.path().join("client_secret");
    std::fs::write(&secret, "lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n").expect("write");
    std::fs::write(&client_secret, "client-secret\n").expect("write");
    let output = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/authgate.yaml"
        ))
        .env("COOKIE_SECRET_FILE", &secret)
        .env("IDP_CLIENT_SECRET_FILE", &client_secret)
        .output()
        .expect("run authgate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running `authgate demo` on free ports, ready (discovery done).
struct Demo {
    process: ChildGuard,
    /// authgate: `http://127.0.0.1:<port>`.
    base: String,
    app_port: u16,
    upstream_port: u16,
    /// What it printed.
    banner: String,
    _dir: tempfile::TempDir,
}

impl Demo {
    async fn start() -> Demo {
        let (port, idp_port, app_port, upstream_port) =
            (free_port(), free_port(), free_port(), free_port());
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("demo.log");
        let mut command = Command::new(BIN);
        command.args([
            "demo",
            "--port",
            &port.to_string(),
            "--idp-port",
            &idp_port.to_string(),
            "--app-port",
            &app_port.to_string(),
            "--upstream-port",
            &upstream_port.to_string(),
        ]);
        let mut process = ChildGuard::spawn("authgate demo", command, &log);
        process
            .wait_for_port(format!("127.0.0.1:{port}").parse().expect("addr"))
            .await;
        let base = format!("http://127.0.0.1:{port}");
        let http = client();
        // Discovery runs in the background: wait until ready.
        for _ in 0..100 {
            let ready = http.get(format!("{base}/readyz")).send().await;
            if ready.map(|r| r.status() == 200).unwrap_or(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let banner = std::fs::read_to_string(&log).unwrap_or_default();
        Demo {
            process,
            base,
            app_port,
            upstream_port,
            banner,
            _dir: dir,
        }
    }
}

/// `authgate demo` works as its banner says: 401 with a sign-in URL, a
/// login through the development provider as alice, then 200 with her
/// identity headers; bob is refused with 403.
#[tokio::test]
async fn demo_walkthrough() {
    let Demo {
        process: mut demo,
        base,
        app_port,
        banner,
        ..
    } = Demo::start().await;
    let app = format!("http://127.0.0.1:{app_port}/");
    let http = client();
    assert!(banner.contains("NOT FOR PRODUCTION"), "{banner}");

    let auth = |cookie: Option<String>| {
        let mut request = http
            .get(format!("{base}/oauth2/auth"))
            .header("X-Original-URL", &app);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", format!("_authgate={cookie}"));
        }
        request.send()
    };
    let response = auth(None).await.expect("auth");
    assert_eq!(response.status(), 401);
    assert!(header(&response, "location").starts_with(&format!("{base}/oauth2/start?rd=")));

    for (user, expected) in [("alice", 200), ("bob", 403)] {
        let cookie = demo_login(&http, &base, user).await;
        let response = auth(Some(cookie)).await.expect("auth");
        assert_eq!(response.status(), expected, "{user}");
        if expected == 200 {
            assert_eq!(
                header(&response, "x-auth-request-email"),
                "alice@example.com"
            );
        }
    }

    // The no-browser path, run as printed: curl signs alice in through the
    // provider's form with a cookie jar, then asks as nginx would.
    let lines = banner
        .split("# --- sign in with curl ---")
        .nth(1)
        .and_then(|rest| rest.split("# --- end ---").next())
        .unwrap_or_else(|| panic!("no curl lines in the banner:\n{banner}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new("sh")
        .arg("-c")
        .arg(lines)
        .current_dir(dir.path())
        .output()
        .expect("run sh");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        out.contains("\"email\":\"alice@example.com\""),
        "userinfo: {out}"
    );
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-auth-request-email: alice@example.com"),
        "{out}"
    );
    demo.kill();
}

/// The nginx configuration the demo prints, run by real nginx exactly as
/// printed (inside an `http {}` block, as `conf.d/` files are): an
/// anonymous browser is sent to sign in, a program gets 401, alice reaches
/// the stand-in app with her identity, bob gets authgate's 403 page, and a
/// `Host` naming another site is refused.
#[tokio::test]
async fn demo_nginx_snippet_protects() {
    let demo = Demo::start().await;
    let snippet = demo
        .banner
        .split("# --- authgate-demo.conf ---")
        .nth(1)
        .and_then(|rest| rest.split("# --- end ---").next())
        .unwrap_or_else(|| panic!("no nginx snippet in the banner:\n{}", demo.banner))
        .to_owned();
    let nginx = crate::support::process::require_program("nginx", None);
    let dir = crate::support::temp_dir("demo-nginx");
    let d = dir.path().display();
    std::fs::write(dir.path().join("authgate-demo.conf"), &snippet).unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
             \x20   include {d}/authgate-demo.conf;\n}}\n"
        ),
    )
    .unwrap();
    let output = Command::new(&nginx)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-t")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}\n{snippet}");
    assert!(!log.contains("[warn]"), "{log}");
    let mut command = Command::new(&nginx);
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off; master_process off;"]);
    let mut server = ChildGuard::spawn("nginx", command, &dir.path().join("stderr.log"));
    let site: std::net::SocketAddr = ([127, 0, 0, 1], demo.app_port).into();
    server.wait_for_port(site).await;
    server
        .wait_for_port(([127, 0, 0, 1], demo.upstream_port).into())
        .await;
    let app = format!("http://127.0.0.1:{}/", demo.app_port);
    let http = client();
    let get = |accept: &'static str, cookie: Option<String>| {
        let mut request = http.get(&app).header("Accept", accept);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", format!("_authgate={cookie}"));
        }
        async move { request.send().await.expect("through nginx") }
    };

    let browser = "text/html,application/xhtml+xml,*/*;q=0.8";
    let response = get(browser, None).await;
    assert_eq!(response.status(), 302);
    let mut sign_in = url::Url::parse(&format!("{}/oauth2/start", demo.base)).unwrap();
    sign_in.query_pairs_mut().append_pair("rd", &app);
    assert_eq!(header(&response, "location"), sign_in.as_str());

    let response = get("application/json", None).await;
    assert_eq!(response.status(), 401);

    let alice = demo_login(&http, &demo.base, "alice").await;
    let response = get(browser, Some(alice)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "hello alice@example.com (groups: devops,admins)\n"
    );

    let bob = demo_login(&http, &demo.base, "bob").await;
    let response = get(browser, Some(bob)).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("Access denied"));

    let (status, _) = crate::support::raw_get(
        tokio::net::TcpStream::connect(site).await.unwrap(),
        "/",
        "evil.example",
        &[],
    )
    .await;
    assert_eq!(status, 0, "the catch-all closes the connection");
}

/// Logs in through the demo's provider form; returns the session cookie.
async fn demo_login(http: &openidconnect::reqwest::Client, base: &str, user: &str) -> String {
    let response = http
        .get(format!("{base}/oauth2/start?rd=/oauth2/userinfo"))
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), 302);
    let provider = header(&response, "location");
    let login_cookie = crate::fixture::set_cookies(&response)
        .into_iter()
        .next()
        .map(|(n, v)| format!("{n}={v}"))
        .expect("login cookie");
    let form = http
        .get(&provider)
        .send()
        .await
        .expect("form")
        .text()
        .await
        .expect("form");
    let req = form
        .split("name=\"req\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("req field")
        .to_owned();
    let action = form
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("action")
        .replace("&amp;", "&");
    let action = url::Url::parse(&provider)
        .expect("provider url")
        .join(&action)
        .expect("join");
    let response = http
        .post(action)
        .form(&[
            ("req", req.as_str()),
            ("login", &format!("{user}@example.com")),
            ("password", user),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 303);
    let callback = header(&response, "location");
    let response = http
        .get(callback)
        .header("Cookie", login_cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(response.status(), 302);
    session_cookie(&response).expect("session cookie")
}

/// The configuration files of `tests/data/<dir>`, sorted, with the text of
/// each (a first comment line says what is wrong or what it shows).
fn corpus(dir: &str) -> Vec<(std::path::PathBuf, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(text.starts_with("# "), "{}: no comment", path.display());
            (path, text)
        })
        .collect()
}

/// `authgate <command>` on `file`, run in the file's directory (the
/// corpus names its helper files relatively). Unless the file sets its own
/// listeners, they go to free ports (`ADDRESS`/`GRPC_ADDRESS` override the
/// file), so a `serve` that wrongly starts does not take a well-known port.
/// Exits within 10 s or is killed: (status code, stderr).
fn run_on(command: &str, file: &std::path::Path, text: &str) -> (Option<i32>, String) {
    let mut command_line = Command::new(BIN);
    command_line
        .args([command, "--config"])
        .arg(file)
        .current_dir(file.parent().expect("dir"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !text.contains("address:") {
        command_line
            .env("ADDRESS", format!("127.0.0.1:{}", free_port()))
            .env("GRPC_ADDRESS", format!("127.0.0.1:{}", free_port()));
    }
    let mut child = command_line.spawn().expect("run authgate");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every invalid configuration file of the suite (`tests/data/
/// invalid-configs`: each says in its first line what is wrong) is refused
/// by `check-config` and by `serve` alike: status 64, each problem named
/// with the file, line and column (a missing key has no position), and
/// `serve` prints the same problems and exits with that status, which it
/// returns only before it builds anything or binds a port (a failure to
/// start or to listen is status 1). What `serve` would refuse,
/// `check-config` reports.
#[test]
fn check_config_and_serve_agree_on_every_invalid_config() {
    let files = corpus("invalid-configs");
    assert!(files.len() > 50, "{} files", files.len());
    for (path, text) in files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (check, check_err) = run_on("check-config", &path, &text);
        assert_eq!(
            check,
            Some(64),
            "check-config on {name}:\n{text}\n{check_err}"
        );
        let file = path.display().to_string();
        for line in check_err.lines() {
            let rest = line
                .strip_prefix(&file)
                .unwrap_or_else(|| panic!("{name}: not located: {line}"));
            let positioned = rest
                .split(':')
                .skip(1)
                .take(2)
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            assert!(
                positioned || rest.ends_with(": required") || rest.contains(": required (or `"),
                "{name}: no line and column: {line}"
            );
        }
        let (serve, serve_err) = run_on("serve", &path, &text);
        assert_eq!(serve, Some(64), "serve on {name}:\n{text}\n{serve_err}");
        assert!(
            serve_err.contains(check_err.trim_end()),
            "{name}:\n{check_err}\n---\n{serve_err}"
        );
    }
}

/// Valid files (`tests/data/valid-configs`, and the shipped example):
/// `check-config` says ok, and `serve` starts listening on them.
#[tokio::test]
async fn check_config_and_serve_accept_valid_configs() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let cookie_secret = secrets.path().join("cookie_secret");
    let client_secret = secrets.path().join("client_secret");
    std::fs::write(
        &cookie_secret,
        "lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n",
    )
    .expect("write");
    std::fs::write(&client_secret, "client-secret\n").expect("write");
    let mut files: Vec<_> = corpus("valid-configs")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    files.push(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/authgate.yaml").into());
    for path in files {
        let name = path.display().to_string();
        let (port, grpc) = (free_port(), free_port());
        let example = path.ends_with("examples/authgate.yaml");
        let with_env = |command: &mut Command| {
            command
                .current_dir(path.parent().expect("dir"))
                .env("SESSION_STORE", "memory")
                .env("ADDRESS", format!("127.0.0.1:{port}"))
                .env("GRPC_ADDRESS", format!("127.0.0.1:{grpc}"));
            if example {
                // Its secrets are files under /etc/authgate.
                command
                    .env("COOKIE_SECRET_FILE", &cookie_secret)
                    .env("IDP_CLIENT_SECRET_FILE", &client_secret);
            }
        };
        let mut check = Command::new(BIN);
        check.args(["check-config", "--config"]).arg(&path);
        with_env(&mut check);
        let output = check.output().expect("run authgate");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.starts_with(&format!("{name}: ok (")),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut serve = Command::new(BIN);
        serve.args(["serve", "--config"]).arg(&path);
        with_env(&mut serve);
        let log = secrets.path().join("serve.log");
        let mut serve = ChildGuard::spawn("authgate serve", serve, &log);
        serve
            .wait_for_port(format!("127.0.0.1:{port}").parse().expect("addr"))
            .await;
        serve
            .check_running()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        serve.kill();
    }
}

/// At start `serve` says where users sign in and which redirect URI to
/// register at the provider, in plain text when its output is not a
/// terminal (no ANSI colour codes in a file or a journal).
#[tokio::test]
async fn serve_logs_the_login_urls_without_colours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, grpc) = (free_port(), free_port());
    let path = dir.path().join("authgate.yaml");
    std::fs::write(
        &path,
        format!(
            "authenticate_service_url: https://auth.example.com\n\
             idp_provider_url: https://dex.example.com/dex\n\
             idp_client_id: authgate\n\
             idp_client_secret: client-secret\n\
             cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
             session_store: memory\n\
             address: 127.0.0.1:{port}\n\
             grpc_address: 127.0.0.1:{grpc}\n\
             policy:\n  - from: https://hello.example.com\n    allowed_groups: [devops]\n"
        ),
    )
    .expect("write");
    let log = dir.path().join("serve.log");
    let mut command = Command::new(BIN);
    command.args(["serve", "--config"]).arg(&path);
    let mut serve = ChildGuard::spawn("authgate serve", command, &log);
    serve
        .wait_for_port(format!("127.0.0.1:{port}").parse().expect("addr"))
        .await;
    // The line follows the bind by microseconds: wait for it, boundedly.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("redirect_uri=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve.kill();
    assert!(
        text.contains("redirect_uri=https://auth.example.com/oauth2/callback"),
        "{text}"
    );
    assert!(
        text.contains("sign_in=https://auth.example.com/oauth2/start"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a file: {text}"
    );
}

/// `explain` on a Pomerium-style config: the route by its name, each
/// criterion's result, the refusal in words; exit 0 allowed, 1 refused
/// (denied or sent to sign in), 2 for a bad invocation. The same file's
/// `tests:` pass `check-config`.
#[test]
fn explain_and_policy_tests_through_the_binary() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/valid-configs/pomerium-ppl.yaml"
    );
    let explain = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(["explain", "--config", config])
            .args(args)
            .output()
            .expect("run authgate explain");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let grafana = "https://grafana.example.com/d/home";
    let (code, out) = explain(&[
        "--url",
        grafana,
        "--email",
        "bob@example.com",
        "--groups",
        "developers,qa",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("route: Grafana\n"), "{out}");
    assert!(out.contains("group devops"), "{out}");
    assert!(
        out.ends_with("result: deny (needs group devops; you are in: developers, qa)\n"),
        "{out}"
    );
    let (code, out) = explain(&[
        "--url",
        grafana,
        "--email",
        "alice@example.com",
        "--groups",
        "devops",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("result: allow\n"), "{out}");
    let (code, out) = explain(&["--url", grafana]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.ends_with("result: sign_in\n"), "{out}");
    let office = "https://office.example.com/";
    let (code, _) = explain(&[
        "--url",
        office,
        "--email",
        "d@example.com",
        "--source-ip",
        "10.9.8.7",
    ]);
    assert_eq!(code, Some(0));
    let (code, out) = explain(&[
        "--url",
        office,
        "--email",
        "d@example.com",
        "--source-ip",
        "203.0.113.1",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("you come from 203.0.113.1"), "{out}");
    let (code, out) = explain(&[
        "--url",
        "https://wiki.example.com/page",
        "--claim",
        "department=\"engineering\"",
        "--email",
        "c@example.com",
    ]);
    assert_eq!(code, Some(0), "{out}");
    // Bad invocations.
    assert_eq!(explain(&["--url", "not a url"]).0, Some(2));
    assert_eq!(
        explain(&["--url", office, "--source-ip", "nowhere"]).0,
        Some(2)
    );
    assert_eq!(explain(&[]).0, Some(2));

    let output = Command::new(BIN)
        .args(["check-config", "--config", config])
        .output()
        .expect("run check-config");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
