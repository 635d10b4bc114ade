//! API clients through real nginx (`examples/nginx/nginx.conf`, whose `map`
//! picks between the sign-in redirect and the 401): programs without a
//! session get authgate's 401 and `WWW-Authenticate`, browsers the sign-in
//! redirect, and a valid Bearer token from the provider reaches the app.
//! Plus: the documentation shows the very `map` the example runs.

use crate::fixture::{CLIENT_ID, header};
use crate::nginx_flow::{Site, site};
use crate::support::nginx::{BROWSER_ACCEPT, example_conf};
use crate::support::repo_root;
use crate::support::upstream::assert_alice_reached_the_app;

/// GET `url` through nginx with `headers` (an `Accept` among them replaces
/// the client's browser default).
async fn get(site: &Site, url: &str, headers: &[(&str, &str)]) -> openidconnect::reqwest::Response {
    let mut request = site.client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request through nginx")
}

/// Asserts the program's 401: authgate's challenge (`error="invalid_token"`
/// when `invalid_token`), no redirect, nothing cached.
fn assert_api_401(response: &openidconnect::reqwest::Response, invalid_token: bool, why: &str) {
    assert_eq!(response.status(), 401, "{why}");
    let challenge = if invalid_token {
        "Bearer realm=\"authgate\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"authgate\""
    };
    assert_eq!(header(response, "www-authenticate"), challenge, "{why}");
    assert_eq!(header(response, "location"), "", "{why}");
    assert_eq!(header(response, "cache-control"), "no-store", "{why}");
}

/// Without a session: JSON clients, XHRs (even ones naming `text/html`),
/// gRPC and clients with no `Accept` at all get the 401 with authgate's
/// challenge and never reach the app; a browser gets the 302 to sign in.
#[tokio::test]
async fn programs_get_401_and_browsers_the_sign_in() {
    let site = site().await;
    let url = site.nginx.url("hello", "/api/items");
    for (why, headers) in [
        ("JSON", vec![("accept", "application/json")]),
        ("curl", vec![("accept", "*/*")]),
        (
            "XHR",
            vec![
                ("accept", BROWSER_ACCEPT),
                ("x-requested-with", "XMLHttpRequest"),
            ],
        ),
        (
            "gRPC-Web",
            vec![
                ("accept", "application/grpc-web-text"),
                ("content-type", "application/grpc-web+proto"),
            ],
        ),
    ] {
        let response = get(&site, &url, &headers).await;
        assert_api_401(&response, false, why);
        let body = response.text().await.expect("body");
        assert_eq!(body, r#"{"error":"unauthorized"}"#, "{why}");
    }
    assert!(site.upstream.received().is_empty(), "the app saw a request");

    let response = get(&site, &url, &[("accept", BROWSER_ACCEPT)]).await;
    assert_eq!(response.status(), 302, "{}", site.nginx.error_log());
    let mut sign_in = url::Url::parse(&site.nginx.url("auth", "/oauth2/start")).expect("URL");
    sign_in.query_pairs_mut().append_pair("rd", &url);
    assert_eq!(header(&response, "location"), sign_in.as_str());
}

/// alice's ID token from the provider as `Authorization: Bearer` reaches
/// the app with her identity; a token authgate refuses gets the 401 with
/// `error="invalid_token"`, from a browser-like client too (it sent a
/// token, so it is a program), and bob's valid token is refused by the
/// policy with 403.
#[tokio::test]
async fn bearer_tokens_through_nginx() {
    let site = site().await;
    let url = site.nginx.url("hello", "/api/items");
    let (_, id) = site
        .stack
        .idp
        .tokens_for("alice@example.com", CLIENT_ID)
        .expect("tokens")
        .expect("alice");
    let bearer = format!("Bearer {id}");
    let response = get(
        &site,
        &url,
        &[("accept", "application/json"), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(response.status(), 200, "{}", site.nginx.error_log());
    let seen: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("echo JSON");
    assert_alice_reached_the_app(&seen["headers"]);
    assert_eq!(seen["uri"], "/api/items");

    let other = if bearer.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("{}{other}", &bearer[..bearer.len() - 1]);
    for accept in ["application/json", BROWSER_ACCEPT] {
        let response = get(
            &site,
            &url,
            &[("accept", accept), ("authorization", &forged)],
        )
        .await;
        assert_api_401(&response, true, accept);
    }

    let (_, bob) = site
        .stack
        .idp
        .tokens_for("bob@example.com", CLIENT_ID)
        .expect("tokens")
        .expect("bob");
    let response = get(
        &site,
        &url,
        &[
            ("accept", "application/json"),
            ("authorization", &format!("Bearer {bob}")),
        ],
    )
    .await;
    assert_eq!(response.status(), 403);
}

/// The front ends page's API-client section (docs/frontends.md) shows the
/// example's `map`s and its `@api401` location line for line (indentation
/// aside), so the documented config is the one these tests run.
#[test]
fn docs_show_the_example_map() {
    let example = std::fs::read_to_string(example_conf()).expect("read the example");
    let page = std::fs::read_to_string(repo_root().join("docs/frontends.md"))
        .expect("read docs/frontends.md");
    let page_lines: Vec<&str> = page.lines().map(str::trim).collect();
    for (first, last) in [
        (
            "map $http_accept $authgate_wants_html {",
            "map \"$scheme:$server_port\" $authgate_port {",
        ),
        ("location @api401 {", "}"),
    ] {
        let block = block(&example, first, last);
        assert!(block.len() > 3, "{first}: {block:?}");
        let found = page_lines
            .windows(block.len())
            .any(|window| window == block.as_slice());
        assert!(
            found,
            "docs/frontends.md lacks the example's block:\n{}",
            block.join("\n")
        );
    }
}

/// The trimmed lines of `text` from the first line `first` up to the next
/// line `last` (exclusive when it is another block's start, inclusive for
/// a closing brace), without comment-only and blank lines.
fn block<'t>(text: &'t str, first: &str, last: &str) -> Vec<&'t str> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let start = lines
        .iter()
        .position(|l| *l == first)
        .unwrap_or_else(|| panic!("no {first:?} in the example"));
    let mut block = Vec::new();
    for line in &lines[start..] {
        if !block.is_empty() && *line == last {
            if last == "}" {
                block.push(*line);
            }
            break;
        }
        if !line.is_empty() && !line.starts_with('#') {
            block.push(*line);
        }
    }
    block
}
