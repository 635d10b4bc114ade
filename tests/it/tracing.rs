//! Traces reach a real Jaeger: `authgate serve` with `tracing_provider:
//! otlp`, behind real nginx (the example configuration) with the
//! in-process provider; a login and a decision whose client sent a W3C
//! `traceparent`, read back through Jaeger's query API as an operator would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use authgate::clock::SystemClock;
use authgate::devidp::{DevClient, DevIdp, DevIdpConfig, DevUser};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::fixture::header;
use crate::nginx_flow::{login_from_sign_in, session_cookie_line};
use crate::support::jaeger::Jaeger;
use crate::support::nginx::{BROWSER_JSON_ACCEPT, DOMAIN, Nginx, NginxOptions};
use crate::support::process::{ChildGuard, READY_TIMEOUT, free_port};
use crate::support::temp_dir;
use crate::support::tls::TestCa;
use crate::support::upstream::{EchoUpstream, assert_alice_reached_the_app};

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
const CLIENT_SECRET: &str = "tracing-test-client-secret";
/// The client's trace: authgate's decision span must hang under this span.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";
const ALICE: &str = "alice@example.com";

/// Spans by id, and their (CHILD_OF) parent's id, of one Jaeger trace.
struct Spans(Vec<Value>);

impl Spans {
    fn of(trace: &Value) -> Spans {
        Spans(trace["spans"].as_array().expect("spans").clone())
    }

    fn named(&self, name: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|s| s["operationName"] == name)
            .collect()
    }

    fn one(&self, name: &str) -> &Value {
        let found = self.named(name);
        assert_eq!(found.len(), 1, "one {name} span in {:#?}", self.names());
        found[0]
    }

    fn names(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|s| s["operationName"].as_str())
            .collect()
    }

    /// The span id `span` names as its parent.
    fn parent(span: &Value) -> Option<&str> {
        span["references"]
            .as_array()?
            .iter()
            .find(|r| r["refType"] == "CHILD_OF")?["spanID"]
            .as_str()
    }

    fn tag<'v>(span: &'v Value, key: &str) -> Option<&'v Value> {
        span["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| &t["value"])
    }
}

/// A login through nginx, then a request carrying the client's
/// `traceparent`: Jaeger has the decision span as a child of the client's
/// span in its trace (front end, route, outcome, user id as attributes),
/// the login steps (start, provider redirect, callback, token exchange,
/// ID-token check) with their store operations as children, the JSON log
/// lines carry the trace ids, and nothing Jaeger holds contains the session
/// cookie, the code, the client secret or any token. The exporter's batch
/// interval is longer than the test: the spans reach Jaeger because a
/// graceful shutdown (SIGTERM) sends what is buffered.
#[tokio::test]
async fn login_and_decision_spans_reach_jaeger() {
    let jaeger = Jaeger::start().await;
    let dir = temp_dir("tracing");

    let ca = TestCa::new("authgate tracing CA");
    let upstream = EchoUpstream::start().await;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nginx = Nginx::start(NginxOptions {
        authgate: addr,
        upstream: upstream.addr(),
        ca: &ca,
        domain: DOMAIN,
    })
    .await;
    let login = nginx.url("auth", "");
    let app = nginx.url("hello", "/");

    let idp_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}/dex", idp_listener.local_addr().expect("addr"));
    let idp = DevIdp::new(
        DevIdpConfig {
            issuer: issuer.clone(),
            clients: vec![DevClient {
                id: "authgate".into(),
                secret: CLIENT_SECRET.into(),
                redirect_uris: vec![format!("{login}/oauth2/callback")],
            }],
            users: DevUser::demo_users("example.com"),
            id_token_ttl: Duration::from_secs(600),
            banner: None,
        },
        Arc::new(SystemClock),
    )
    .expect("provider");
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(idp.serve(idp_listener, async {
        let _ = stopped.await;
    }));

    let config = dir.path().join("authgate.yaml");
    std::fs::write(
        &config,
        format!(
            "authenticate_service_url: {login}\n\
             idp_provider_url: {issuer}\n\
             idp_client_id: authgate\n\
             idp_client_secret: {CLIENT_SECRET}\n\
             cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
             cookie_domain: {DOMAIN}\n\
             session_store: memory\n\
             log_format: json\n\
             log_level: debug\n\
             shutdown_delay: 0s\n\
             tracing_provider: otlp\n\
             tracing_otlp_endpoint: {}\n\
             tracing_sample_rate: 1\n\
             policy:\n  - from: {}\n    allowed_groups: [devops]\n",
            jaeger.otlp_endpoint(),
            nginx.url("hello", ""),
        ),
    )
    .expect("write authgate.yaml");
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .env("ADDRESS", addr.to_string())
        .env("GRPC_ADDRESS", format!("127.0.0.1:{}", free_port()))
        // No export before the shutdown (10 minutes).
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let mut authgate =
        ChildGuard::spawn("authgate serve", command, &dir.path().join("authgate.log"));
    let http = crate::fixture::client();
    let ready = format!("http://{addr}/readyz");
    authgate
        .wait_until("ready (/readyz 200)", READY_TIMEOUT, || {
            let request = http.get(&ready).send();
            async move { request.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;

    // (a) The login, through nginx.
    let client = nginx.http_client(&[]);
    let response = client
        .get(&app)
        .send()
        .await
        .expect("request through nginx");
    assert_eq!(response.status(), 302, "{}", nginx.error_log());
    let sign_in = header(&response, "location");
    let response = login_from_sign_in(
        &client,
        &crate::fixture::client(),
        &sign_in,
        ALICE,
        &nginx.url("auth", "/oauth2/callback?"),
    )
    .await;
    let cookie = session_cookie_line(&response).expect("session cookie");
    let cookie = cookie.split(';').next().expect("name=value").to_owned();
    let cookie_value = cookie.split_once('=').expect("name=value").1.to_owned();

    // (b) A decision for a client that sent its trace context.
    let response = client
        .get(&app)
        .header("Accept", BROWSER_JSON_ACCEPT)
        .header("Cookie", &cookie)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .send()
        .await
        .expect("request through nginx");
    assert_eq!(response.status(), 200, "{}", authgate.log());
    let seen: Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("echo JSON");
    assert_alice_reached_the_app(&seen["headers"]);

    // SIGTERM: authgate drains, sends the buffered spans and exits.
    authgate.signal("TERM");
    let status = authgate.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", authgate.log());

    // The decision: in the client's trace, under the client's span.
    let trace = jaeger.trace(TRACE_ID, 1, Duration::from_secs(10)).await;
    let spans = Spans::of(&trace);
    let decision = spans.one("authgate.decision");
    assert_eq!(decision["traceID"], TRACE_ID);
    assert_eq!(Spans::parent(decision), Some(PARENT_SPAN), "{decision:#}");
    assert_eq!(Spans::tag(decision, "authgate.front_end").unwrap(), "nginx");
    assert_eq!(Spans::tag(decision, "authgate.outcome").unwrap(), "allow");
    assert_eq!(Spans::tag(decision, "authgate.route").unwrap(), "route-0");
    let subject = Spans::tag(decision, "enduser.id")
        .and_then(Value::as_str)
        .expect("enduser.id");
    let alice = DevUser::demo_users("example.com")
        .into_iter()
        .find(|u| u.email == ALICE)
        .expect("alice");
    assert_eq!(subject, alice.subject);
    let process = &trace["processes"][decision["processID"].as_str().expect("processID")];
    assert_eq!(process["serviceName"], "authgate");

    // The login: one trace per request (no traceparent from the browser).
    let traces = jaeger
        .traces_with(
            "authgate",
            "authgate.login.callback",
            Duration::from_secs(30),
        )
        .await;
    let find = |name: &str| {
        traces
            .iter()
            .map(Spans::of)
            .find(|spans| !spans.named(name).is_empty())
            .unwrap_or_else(|| panic!("a trace with {name}"))
    };
    let start = find("authgate.login.start");
    let root = start.one("authgate.login.start");
    let redirect = start.one("authgate.login.provider_redirect");
    assert_eq!(Spans::parent(redirect), root["spanID"].as_str());
    let callback_trace = find("authgate.login.callback");
    let callback = callback_trace.one("authgate.login.callback");
    assert_eq!(
        Spans::tag(callback, "enduser.id").and_then(Value::as_str),
        Some(subject)
    );
    for step in [
        "authgate.login.token_exchange",
        "authgate.login.id_token_check",
        "authgate.store.consume_login_state",
        "authgate.store.save",
    ] {
        let span = callback_trace.one(step);
        assert_eq!(Spans::parent(span), callback["spanID"].as_str(), "{step}");
    }
    // The anonymous first request's decision: sent to sign in.
    let sign_in_decision = traces.iter().flat_map(|t| Spans::of(t).0).find(|s| {
        s["operationName"] == "authgate.decision"
            && Spans::tag(s, "authgate.outcome").is_some_and(|o| o == "sign_in")
    });
    assert!(sign_in_decision.is_some(), "the sign-in decision's span");

    // Nothing secret in what Jaeger holds: not the session cookie, the code,
    // the state, the client secret, nor any JWT (the ID token).
    let everything = serde_json::to_string(&traces).expect("JSON")
        + &serde_json::to_string(&trace).expect("JSON");
    let access = nginx.access_log();
    let query_value = |name: &str| {
        access
            .split(&format!("{name}="))
            .nth(1)
            .and_then(|rest| rest.split(['&', ' ']).next())
            .unwrap_or_else(|| panic!("{name}= in nginx's access log:\n{access}"))
            .to_owned()
    };
    let secrets = HashMap::from([
        ("session cookie", cookie_value.clone()),
        ("code", query_value("code")),
        ("state", query_value("state")),
        ("client secret", CLIENT_SECRET.to_owned()),
        ("a JWT", "eyJ".to_owned()),
    ]);
    for (what, secret) in &secrets {
        assert!(secret.len() >= 3, "{what}: {secret}");
        assert!(
            !everything.contains(secret.as_str()),
            "{what} in Jaeger: {everything}"
        );
    }

    // The JSON log lines name the traces: the decision's, and the callback's.
    let log = authgate.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "allowed" && l["trace_id"] == TRACE_ID),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "login completed" && l["trace_id"] == callback["traceID"]),
        "{log}"
    );
    for (what, secret) in &secrets {
        if *what != "a JWT" {
            assert!(!log.contains(secret.as_str()), "{what} in the log");
        }
    }
}
