//! `/forward-auth/*` against the in-process stack, in the shapes Envoy's
//! HTTP mode (Host + path after the prefix) and Traefik/Caddy
//! (`X-Forwarded-*` from a trusted proxy) send.

use openidconnect::reqwest;

use crate::fixture::{COOKIE, Stack, default_routes, header};
use crate::grpc_authz::{CHROME_ACCEPT, GrpcStack, envoy_request, seen};

const APP: &str = "https://app.example.test/some/path?q=1";

/// Envoy's HTTP-mode request for `path` on `host`.
fn envoy(
    stack: &Stack,
    method: reqwest::Method,
    host: &str,
    path: &str,
) -> reqwest::RequestBuilder {
    stack
        .http
        .request(method, format!("{}/forward-auth{path}", stack.base))
        .header("host", host)
}

fn with_cookie(request: reqwest::RequestBuilder, value: &str) -> reqwest::RequestBuilder {
    request.header("cookie", format!("a=b; {COOKIE}={value}"))
}

/// alice: 200 with her identity, the `_` spellings in
/// x-envoy-auth-headers-to-remove, and the headers that are set not in it.
#[tokio::test]
async fn forward_auth_allows_with_identity_headers() {
    let stack = Stack::start().await;
    let alice = stack.login("alice@example.com", APP).await;
    let response = with_cookie(
        envoy(
            &stack,
            reqwest::Method::GET,
            "app.example.test",
            "/some/path?q=1",
        ),
        &alice,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-email"),
        "alice@example.com"
    );
    assert_eq!(header(&response, "x-auth-request-groups"), "devops,admins");
    let remove = header(&response, "x-envoy-auth-headers-to-remove");
    let remove: Vec<&str> = remove.split(", ").collect();
    assert!(remove.contains(&"x_auth_request_email"), "{remove:?}");
    assert!(!remove.contains(&"x-auth-request-email"), "{remove:?}");
}

/// Without a session: 302 for a browser GET, 303 for a browser POST, both
/// to the sign-in URL for the original URL; 401 for JSON, XHR, gRPC-Web.
#[tokio::test]
async fn forward_auth_redirects_browsers_and_401s_programs() {
    let stack = Stack::start().await;
    let expected = stack.app.sign_in_url(APP);
    let get = envoy(
        &stack,
        reqwest::Method::GET,
        "app.example.test",
        "/some/path?q=1",
    )
    .header("accept", CHROME_ACCEPT)
    .send()
    .await
    .unwrap();
    assert_eq!(get.status(), 302);
    assert_eq!(header(&get, "location"), expected);
    let post = envoy(
        &stack,
        reqwest::Method::POST,
        "app.example.test",
        "/some/path?q=1",
    )
    .header("accept", CHROME_ACCEPT)
    .header("content-type", "application/x-www-form-urlencoded")
    .send()
    .await
    .unwrap();
    assert_eq!(post.status(), 303);
    assert_eq!(header(&post, "location"), expected);
    for (name, value) in [
        ("accept", "application/json"),
        ("x-requested-with", "XMLHttpRequest"),
        ("content-type", "application/grpc-web-text"),
    ] {
        let response = envoy(
            &stack,
            reqwest::Method::GET,
            "app.example.test",
            "/some/path",
        )
        .header(
            "accept",
            if name == "accept" {
                value
            } else {
                CHROME_ACCEPT
            },
        )
        .header(name, value)
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 401, "{name}: {value}");
        assert!(header(&response, "www-authenticate").starts_with("Bearer"));
        assert_eq!(header(&response, "location"), "");
    }
}

/// bob → 403; a host without a route → 403; a garbage cookie is no
/// session (302, never 200).
#[tokio::test]
async fn forward_auth_denies_and_never_allows_garbage() {
    let stack = Stack::start().await;
    let bob = stack.login("bob@example.com", APP).await;
    let response = with_cookie(
        envoy(
            &stack,
            reqwest::Method::GET,
            "app.example.test",
            "/some/path",
        ),
        &bob,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(header(&response, "x-auth-request-email"), "");
    let response = with_cookie(
        envoy(&stack, reqwest::Method::GET, "nowhere.example.test", "/"),
        &bob,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    for garbage in ["x", "AAAA", &bob[..bob.len() / 2], &format!("{bob}x")] {
        let response = with_cookie(
            envoy(
                &stack,
                reqwest::Method::GET,
                "app.example.test",
                "/some/path",
            ),
            garbage,
        )
        .header("accept", CHROME_ACCEPT)
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 302, "garbage cookie {garbage:.20}");
    }
}

/// From an untrusted peer (loopback is not in the fixture's
/// trusted_proxies) X-Forwarded-* are ignored: the Traefik shape has no
/// request to decide about (403), and X-Forwarded-Proto does not change the
/// scheme of the Envoy shape.
#[tokio::test]
async fn forward_auth_ignores_forwarded_headers_from_untrusted_peers() {
    let stack = Stack::start().await;
    let alice = stack.login("alice@example.com", APP).await;
    let response = with_cookie(
        stack
            .http
            .get(format!("{}/forward-auth", stack.base))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.test")
            .header("x-forwarded-uri", "/some/path")
            .header("x-forwarded-method", "GET"),
        &alice,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    let response = envoy(&stack, reqwest::Method::GET, "app.example.test", "/x")
        .header("x-forwarded-proto", "http")
        .header("accept", CHROME_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "location"),
        stack.app.sign_in_url("https://app.example.test/x")
    );
}

/// From a trusted proxy (Traefik, Caddy) the X-Forwarded-* quadruple is
/// the request: alice allowed, X-Forwarded-Method POST → 303 for a browser.
#[tokio::test]
async fn forward_auth_traefik_shape_from_a_trusted_proxy() {
    let stack = Stack::start_with(default_routes(), |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let alice = stack.login("alice@example.com", APP).await;
    let traefik = |method: &'static str| {
        stack
            .http
            .get(format!("{}/forward-auth", stack.base))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.test")
            .header("x-forwarded-uri", "/some/path?q=1")
            .header("x-forwarded-method", method)
            .header("accept", CHROME_ACCEPT)
    };
    let response = with_cookie(traefik("GET"), &alice).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-preferred-username"),
        "alice"
    );
    let response = traefik("POST").send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, "location"), stack.app.sign_in_url(APP));
    // Envoy's shape from a trusted peer: X-Forwarded-Proto is believed.
    let response = envoy(&stack, reqwest::Method::GET, "app.example.test", "/x")
        .header("x-forwarded-proto", "http")
        .header("accept", CHROME_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        403,
        "no route serves http://app.example.test"
    );
}

/// The two front ends agree: the same requests give the same statuses
/// through gRPC `Check` and `/forward-auth`.
#[tokio::test]
async fn forward_auth_and_grpc_agree() {
    let s = GrpcStack::start().await;
    let alice = s.stack.login("alice@example.com", APP).await;
    let bob = s.stack.login("bob@example.com", APP).await;
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("GET", Some(alice.as_str()), CHROME_ACCEPT),
        ("GET", None, CHROME_ACCEPT),
        ("POST", None, CHROME_ACCEPT),
        ("GET", None, "application/json"),
        ("GET", Some(bob.as_str()), CHROME_ACCEPT),
    ];
    for (method, session, accept) in cases {
        let mut headers = vec![("accept", accept.to_owned())];
        if let Some(session) = session {
            headers.push(("cookie", format!("{COOKIE}={session}")));
        }
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let grpc = seen(&s.check(envoy_request(method, APP, &pairs)).await);
        let mut request = envoy(
            &s.stack,
            method.parse().unwrap(),
            "app.example.test",
            "/some/path?q=1",
        );
        for (k, v) in &pairs {
            request = request.header(*k, *v);
        }
        let http = request.send().await.unwrap();
        assert_eq!(
            grpc.http_status,
            http.status().as_u16(),
            "{method} {accept} {session:?}"
        );
        assert_eq!(
            grpc.headers.get("location").cloned().unwrap_or_default(),
            header(&http, "location")
        );
    }
}
