//! `/metrics` scraped over HTTP from a running server after real decisions
//! and logins, on the main listener or on `metrics_address`.

use std::net::SocketAddr;

use authgate::server;
use tokio::net::TcpListener;

use crate::fixture::{Stack, header};

/// The value of the series `name{labels}` in a scrape, if exported.
pub(crate) fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

pub(crate) async fn scrape(stack: &Stack, base: &str) -> String {
    let response = stack
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(
        header(&response, "content-type").starts_with("application/openmetrics-text"),
        "{}",
        header(&response, "content-type")
    );
    response.text().await.expect("metrics body")
}

/// Decisions land on their route id, outcome and front end; logins are
/// counted by step and failure reason; the latency histogram counts every
/// decision; build info carries the version.
#[tokio::test]
async fn decisions_and_logins_are_counted_by_route() {
    let stack = Stack::start().await;
    decide_and_log_in(&stack).await;

    let text = scrape(&stack, &stack.base).await;
    let decisions = |labels: &str| series(&text, &format!("authgate_decisions_total{{{labels}}}"));
    for (labels, expected) in [
        (
            r#"route="route-1",outcome="sign_in",front_end="nginx""#,
            1.0,
        ),
        (r#"route="route-0",outcome="allow",front_end="nginx""#, 1.0),
        (r#"route="route-0",outcome="deny",front_end="nginx""#, 2.0),
        (r#"route="",outcome="deny",front_end="nginx""#, 1.0),
        (
            r#"route="route-2",outcome="allow",front_end="forward_auth""#,
            1.0,
        ),
        (r#"route="route-2",outcome="allow",front_end="nginx""#, 0.0),
        (r#"route="route-1",outcome="allow",front_end="grpc""#, 0.0),
    ] {
        assert_eq!(decisions(labels), Some(expected), "{labels}\n{text}");
    }
    assert_eq!(
        series(
            &text,
            r#"authgate_decision_duration_seconds_count{front_end="nginx"}"#
        ),
        Some(5.0),
        "{text}"
    );
    for (labels, expected) in [
        (r#"event="started",reason="""#, 2.0),
        (r#"event="completed",reason="""#, 2.0),
        (r#"event="failed",reason="missing_state""#, 1.0),
        (r#"event="failed",reason="bad_state""#, 0.0),
    ] {
        assert_eq!(
            series(&text, &format!("authgate_logins_total{{{labels}}}")),
            Some(expected),
            "{labels}\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "authgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(
        !text.contains("example.com"),
        "no user in any label: {text}"
    );
}

/// With `metrics_address`, `/metrics` is served there and not on the main
/// listener (which the login host's proxy exposes).
#[tokio::test]
async fn metrics_address_takes_metrics_off_the_main_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics_addr: SocketAddr = listener.local_addr().expect("addr");
    let stack = Stack::start_with(crate::fixture::default_routes(), |config| {
        config.metrics_address = Some(metrics_addr);
    })
    .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::run_metrics(
        stack.app.metrics().clone(),
        stack.app.config().serving,
        stack.app.config().trusted_proxies.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    assert_eq!(
        stack.auth("https://app.example.test/", None).await.status(),
        401
    );

    let main = stack
        .http
        .get(format!("{}/metrics", stack.base))
        .send()
        .await
        .expect("main listener");
    assert_eq!(main.status(), 404, "/metrics stays off the main listener");

    let text = scrape(&stack, &format!("http://{metrics_addr}")).await;
    assert_eq!(
        series(
            &text,
            r#"authgate_decisions_total{route="route-1",outcome="sign_in",front_end="nginx"}"#
        ),
        Some(1.0),
        "{text}"
    );
    let other = stack
        .http
        .get(format!("http://{metrics_addr}/oauth2/auth"))
        .send()
        .await
        .expect("metrics listener");
    assert_eq!(
        other.status(),
        404,
        "the metrics listener serves only /metrics"
    );
    let _ = stop.send(());
    let _ = served.await;
}

/// Two logins (alice, bob), decisions of every outcome but `unavailable`
/// on routes 0-2 and on no route, over the nginx and forward-auth front
/// ends, and a callback without its login-state cookie (a failed login).
pub(crate) async fn decide_and_log_in(stack: &Stack) {
    // route-1 (app, group devops): no session → sign in.
    assert_eq!(
        stack.auth("https://app.example.test/", None).await.status(),
        401
    );
    let alice = stack
        .login("alice@example.com", "https://app.example.test/")
        .await;
    let bob = stack
        .login("bob@example.com", "https://app.example.test/")
        .await;
    // route-0 (/admin, group admins): alice in, bob out.
    assert_eq!(
        stack
            .auth("https://app.example.test/admin", Some(&alice))
            .await
            .status(),
        200
    );
    assert_eq!(
        stack
            .auth("https://app.example.test/admin", Some(&bob))
            .await
            .status(),
        403
    );
    assert_eq!(
        stack
            .auth("https://app.example.test/admin", Some(&bob))
            .await
            .status(),
        403
    );
    // No route serves this host.
    assert_eq!(
        stack
            .auth("https://nobody.example.test/", Some(&alice))
            .await
            .status(),
        403
    );
    // forward-auth, Envoy's shape, public route-2.
    let response = stack
        .http
        .get(format!("{}/forward-auth/x", stack.base))
        .header("Host", "public.example.test")
        .send()
        .await
        .expect("forward-auth");
    assert_eq!(response.status(), 200);
    // A callback without the login-state cookie.
    let response = stack
        .http
        .get(format!("{}/oauth2/callback?state=abc&code=def", stack.base))
        .send()
        .await
        .expect("callback");
    assert_eq!(response.status(), 403);
}
