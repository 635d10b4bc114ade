//! An independent client: `grpcurl` (Go, from the module proxy; built by
//! `scripts/test.sh`) calls `Check` through server reflection with JSON
//! CheckRequests, as someone debugging their Envoy would. No `.proto` files
//! are given to it: everything comes from our reflection service.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};

use crate::fixture::COOKIE;
use crate::grpc_authz::{CHROME_ACCEPT, GrpcStack};
use crate::support::cached_go_tool;

/// `$AUTHGATE_GRPCURL_BIN`, else the binary `scripts/test.sh` cached for
/// the version it pins, else a panic saying to run it (never a skip).
fn grpcurl() -> PathBuf {
    cached_go_tool("grpcurl", "GRPCURL_VERSION", "AUTHGATE_GRPCURL_BIN")
}

/// Runs grpcurl with `args`, `stdin` as the request; returns stdout.
fn run(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(grpcurl())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start grpcurl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `Check` with a JSON request; the JSON answer (defaults emitted, so an OK
/// status shows `"code": 0`).
async fn check(s: &GrpcStack, request: Value) -> Value {
    let addr = s.addr.to_string();
    let body = request.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &[
                "-plaintext",
                "-emit-defaults",
                "-d",
                "@",
                &addr,
                "envoy.service.auth.v3.Authorization/Check",
            ],
            &body,
        )
    })
    .await
    .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("grpcurl output {out}: {e}"))
}

fn http_request(headers: Value) -> Value {
    json!({"attributes": {"request": {"http": {
        "method": "GET",
        "scheme": "https",
        "host": "app.example.test",
        "path": "/some/path?q=1",
        "headers": headers,
    }}}})
}

const APP: &str = "https://app.example.test/some/path?q=1";

/// Reflection lists the services; Check answers allow (headers,
/// OVERWRITE_IF_EXISTS_OR_ADD, `_` spellings removed), browser redirect,
/// API 401, 403, and reads `headerMap` raw values alike.
#[tokio::test]
async fn grpcurl_calls_check_through_reflection() {
    let s = GrpcStack::start().await;
    let addr = s.addr.to_string();
    let services = tokio::task::spawn_blocking(move || run(&["-plaintext", &addr, "list"], ""))
        .await
        .unwrap();
    assert!(
        services.contains("envoy.service.auth.v3.Authorization"),
        "{services}"
    );
    assert!(services.contains("grpc.health.v1.Health"), "{services}");

    let alice = s.stack.login("alice@example.com", APP).await;
    let bob = s.stack.login("bob@example.com", APP).await;
    let alice_cookie = format!("{COOKIE}={alice}");

    let allow = check(
        &s,
        http_request(json!({
            "accept": CHROME_ACCEPT,
            "cookie": &alice_cookie,
            "x_auth_request_email": "mallory@example.com",
        })),
    )
    .await;
    assert_eq!(allow["status"]["code"], 0, "{allow}");
    let ok = &allow["okResponse"];
    let headers = ok["headers"].as_array().unwrap();
    let email = headers
        .iter()
        .find(|h| h["header"]["key"] == "x-auth-request-email")
        .expect("email header");
    assert_eq!(email["header"]["value"], "alice@example.com");
    assert_eq!(email["appendAction"], "OVERWRITE_IF_EXISTS_OR_ADD");
    let remove: Vec<&str> = ok["headersToRemove"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(remove.contains(&"x_auth_request_email"), "{remove:?}");
    assert!(!remove.contains(&"x-auth-request-email"), "{remove:?}");

    let browser = check(&s, http_request(json!({"accept": CHROME_ACCEPT}))).await;
    assert_eq!(browser["status"]["code"], 16, "{browser}");
    let denied = &browser["deniedResponse"];
    assert_eq!(denied["status"]["code"], "Found");
    let location = denied["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["header"]["key"] == "location")
        .expect("location");
    assert_eq!(location["header"]["value"], s.stack.app.sign_in_url(APP));

    let api = check(&s, http_request(json!({"accept": "application/json"}))).await;
    assert_eq!(
        api["deniedResponse"]["status"]["code"], "Unauthorized",
        "{api}"
    );

    let bob_cookie = format!("{COOKIE}={bob}");
    let forbidden = check(&s, http_request(json!({"cookie": bob_cookie}))).await;
    assert_eq!(forbidden["status"]["code"], 7, "{forbidden}");
    assert_eq!(forbidden["deniedResponse"]["status"]["code"], "Forbidden");

    // encode_raw_headers: headerMap with base64 rawValue bytes.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut raw = http_request(json!({}));
    raw["attributes"]["request"]["http"]["headerMap"] = json!({"headers": [
        {"key": "accept", "rawValue": b64(CHROME_ACCEPT)},
        {"key": "cookie", "rawValue": b64(&alice_cookie)},
    ]});
    let raw_allow = check(&s, raw).await;
    assert_eq!(raw_allow["status"]["code"], 0, "{raw_allow}");
    assert_eq!(
        raw_allow["okResponse"]["headers"],
        allow["okResponse"]["headers"]
    );
}
