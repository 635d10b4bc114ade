//! What authgate logs over a whole login and a few decisions, captured from
//! the real subscriber (JSON lines, authgate at trace): the lines operators
//! rely on are there with their fields, and no secret ever is.
//!
//! The subscriber is installed globally, once for the test binary, and
//! writes only what is logged on a thread that asked for a capture: a
//! scoped (`set_default`) subscriber would miss events whose callsite
//! another test's thread registered first (tracing caches callsite interest
//! process-wide).

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use authgate::config::LogFormat;
use tracing_subscriber::EnvFilter;

use crate::fixture::{CLIENT_SECRET, COOKIE, Stack, header, set_cookies};

/// A writer into a shared buffer.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Writes to this thread's capture, if any; drops everything else.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| match capture.borrow_mut().as_mut() {
            Some(captured) => captured.write(bytes),
            None => Ok(bytes.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures what this thread logs from now on, authgate at trace,
    /// with the formatter `log_format: json` uses.
    pub(crate) fn this_thread() -> Captured {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = authgate::telemetry::subscriber(
                LogFormat::Json,
                EnvFilter::new("authgate=trace,info"),
                || ThreadWriter,
                false,
            );
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the test binary");
        });
        let captured = Captured::default();
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(captured.clone()));
        captured
    }

    pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes)
            .expect("utf-8 logs")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }
}

fn find<'l>(lines: &'l [serde_json::Value], message: &str) -> Vec<&'l serde_json::Value> {
    lines.iter().filter(|l| l["message"] == message).collect()
}

/// A login, an allowed, a refused and a sign-in decision, a failed login
/// and a sign-out, all logged at trace for authgate: one `login started`
/// and one `login completed` per login, a `denied` line with route, user,
/// reason and the proxy's request id, a `login failed` with its reason; no
/// session cookie, login-state cookie, authorization code, client secret,
/// cookie secret or token anywhere.
// The server's tasks run on this one thread, where the capture is installed.
#[tokio::test(flavor = "current_thread")]
async fn logs_say_what_happened_and_no_secret() {
    let captured = Captured::this_thread();

    let stack = Stack::start().await;
    let rd = "https://app.example.test/admin?token=app-query-secret";
    let (provider_url, login_cookie) = stack.start_login(rd).await;
    let callback = stack
        .provider_login(&provider_url, "bob@example.com", "bob")
        .await;
    let code = url::Url::parse(&callback)
        .expect("callback URL")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let response = stack.callback(&callback, &login_cookie).await;
    assert_eq!(response.status(), 302);
    let session = set_cookies(&response)
        .into_iter()
        .find(|(name, value)| name == COOKIE && !value.is_empty())
        .map(|(_, value)| value)
        .expect("session cookie");

    let refused = stack
        .http
        .get(format!("{}/oauth2/auth", stack.base))
        .header("X-Original-URL", rd)
        .header("X-Request-Id", "f3a0c1b2d4e5f60718293a4b5c6d7e8f")
        .header("Cookie", format!("{COOKIE}={session}"))
        .send()
        .await
        .expect("auth");
    assert_eq!(refused.status(), 403);
    assert_eq!(
        stack
            .auth("https://app.example.test/", Some(&session))
            .await
            .status(),
        403,
        "bob is not in devops either"
    );
    assert_eq!(
        stack
            .auth("https://public.example.test/", Some(&session))
            .await
            .status(),
        200
    );
    assert_eq!(
        stack.auth("https://app.example.test/", None).await.status(),
        401
    );
    // A replayed callback: its login-state cookie was cleared.
    let replay = stack.callback(&callback, "").await;
    assert_eq!(replay.status(), 403);
    let signed_out = stack
        .http
        .get(format!("{}/oauth2/sign_out", stack.base))
        // From this site: a sign-out link on one of its pages.
        .header("Sec-Fetch-Site", "same-origin")
        .header("Cookie", format!("{COOKIE}={session}"))
        .send()
        .await
        .expect("sign out");
    assert_eq!(
        signed_out.status(),
        200,
        "{}",
        header(&signed_out, "location")
    );
    drop(stack);

    let lines = captured.lines();
    let text = serde_json::to_string(&lines).expect("json");

    let started = find(&lines, "login started");
    assert_eq!(started.len(), 1, "{text}");
    assert_eq!(started[0]["return_to"], "https://app.example.test/admin");
    let completed = find(&lines, "login completed");
    assert_eq!(completed.len(), 1, "{text}");
    assert_eq!(completed[0]["user"], "bob@example.com");
    let failed = find(&lines, "login failed");
    assert_eq!(failed.len(), 1, "{text}");
    assert_eq!(failed[0]["reason"], "missing_state");

    let denied = find(&lines, "denied");
    assert_eq!(denied.len(), 2, "{text}");
    let first = denied[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["route"], "route-0");
    assert_eq!(
        first["route_label"],
        "https://app.example.test (prefix /admin)"
    );
    assert_eq!(
        first["unmet"]
            .as_str()
            .map(|u| u.starts_with("needs group admins; you are in:")),
        Some(true),
        "{first}"
    );
    assert_eq!(first["user"], "bob@example.com");
    assert_eq!(first["reason"], "not_allowed");
    assert_eq!(first["front_end"], "nginx");
    assert_eq!(first["host"], "app.example.test");
    assert_eq!(first["path"], "/admin");
    assert_eq!(first["request_id"], "f3a0c1b2d4e5f60718293a4b5c6d7e8f");
    assert_eq!(denied[1]["route"], "route-1");
    assert!(denied[1].get("request_id").is_none(), "{text}");
    let allowed = find(&lines, "allowed");
    assert_eq!(allowed.len(), 1, "{text}");
    assert_eq!(allowed[0]["level"], "DEBUG");
    assert_eq!(allowed[0]["route"], "route-2");
    assert_eq!(find(&lines, "sign-in required").len(), 1, "{text}");

    let login_cookie_value = login_cookie.split_once('=').expect("name=value").1;
    for (what, secret) in [
        ("session cookie", session.as_str()),
        ("login-state cookie", login_cookie_value),
        ("authorization code", code.as_str()),
        ("client secret", CLIENT_SECRET),
        ("the return URL's query", "app-query-secret"),
        // The fixture's cookie secret, 32 bytes of 7, in base64.
        (
            "cookie secret",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
        ),
        // Every JWT (ID token) starts with the base64 of `{"`.
        ("a JWT", "eyJ"),
    ] {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret), "the {what} is in the logs:\n{text}");
    }
}

/// A sign-in without groups although the `groups` scope was asked for and
/// routes ask for groups is counted and logged as a warning naming the
/// likely cause (Dex's `groupSearch.filter`,
/// which misses FreeIPA's non-POSIX groups); a sign-in with groups is not,
/// and `login completed` lists the groups the sign-in carried.
#[tokio::test(flavor = "current_thread")]
async fn a_sign_in_without_groups_is_warned_about() {
    let captured = Captured::this_thread();
    let stack = Stack::start().await;
    stack
        .login("carol@example.com", "https://public.example.test/")
        .await;
    let lines = captured.lines();
    let warnings: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("groupSearch.filter"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert_eq!(warnings[0]["user"], "carol@example.com");
    let counted = |metrics: &str| metrics.contains("authgate_logins_without_groups_total 1\n");
    assert!(counted(&stack.app.metrics().render()), "counted once");

    let captured = Captured::this_thread();
    stack
        .login("bob@example.com", "https://public.example.test/")
        .await;
    let lines = captured.lines();
    assert!(
        !lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("groupSearch.filter"))),
        "{lines:#?}"
    );
    assert!(counted(&stack.app.metrics().render()), "still once");
    let completed: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "login completed")
        .collect();
    assert_eq!(completed.len(), 1, "{lines:#?}");
    assert!(
        completed[0]["groups"]
            .as_str()
            .is_some_and(|g| g.contains("users")),
        "{:?}",
        completed[0]
    );
}
