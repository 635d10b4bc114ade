//! Bad input never yields an allow, and never a 500, on `/oauth2/auth`; and
//! no open-redirect payload gets through `/oauth2/start`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use authgate::app::App;
use authgate::clock::SystemClock;

use crate::fixture::{COOKIE, default_routes, route, test_config};

/// Header name/value pairs of one case.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// An app whose provider is unreachable: decisions need no provider.
fn app() -> Arc<App> {
    let config = test_config(
        "http://auth.example.test",
        "http://127.0.0.1:9/dex",
        default_routes(),
    );
    App::new(config, Arc::new(SystemClock)).expect("app")
}

async fn status_of(app: &Arc<App>, request: Request<Body>) -> StatusCode {
    authgate::http::router(app.clone())
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

/// Garbage cookies, missing and malformed original URLs, invalid UTF-8,
/// oversized values: each gets 401 or 403 — never 200, never 5xx.
#[tokio::test]
async fn garbage_never_allows() {
    let app = app();
    let huge = "A".repeat(64 * 1024);
    let mut cases: Vec<(&str, Headers)> = vec![
        ("no headers at all", vec![]),
        (
            "garbage cookie",
            vec![
                ("x-original-url", b"https://app.example.test/".to_vec()),
                ("cookie", format!("{COOKIE}=!!!notbase64!!!").into_bytes()),
            ],
        ),
        (
            "huge cookie",
            vec![
                ("x-original-url", b"https://app.example.test/".to_vec()),
                ("cookie", format!("{COOKIE}={huge}").into_bytes()),
            ],
        ),
        (
            "invalid utf-8 cookie",
            vec![
                ("x-original-url", b"https://app.example.test/".to_vec()),
                ("cookie", b"_authgate=\xff\xfe\xfd".to_vec()),
            ],
        ),
        (
            "invalid utf-8 url",
            vec![("x-original-url", b"https://app.example.test/\xff".to_vec())],
        ),
        ("relative url", vec![("x-original-url", b"/admin".to_vec())]),
        ("empty url", vec![("x-original-url", b"".to_vec())]),
        (
            "javascript url",
            vec![("x-original-url", b"javascript:alert(1)".to_vec())],
        ),
        (
            "userinfo url",
            vec![(
                "x-original-url",
                b"https://public.example.test@evil.test/".to_vec(),
            )],
        ),
        (
            "bad percent-encoding",
            vec![("x-original-url", b"https://app.example.test/%zz".to_vec())],
        ),
        (
            "huge url",
            vec![(
                "x-original-url",
                format!("https://app.example.test/{huge}").into_bytes(),
            )],
        ),
        (
            "forwarded headers from an untrusted peer",
            vec![
                ("x-forwarded-proto", b"https".to_vec()),
                ("x-forwarded-host", b"public.example.test".to_vec()),
                ("x-forwarded-uri", b"/".to_vec()),
            ],
        ),
    ];
    // A client-sent identity header is not an identity.
    cases.push((
        "spoofed identity header",
        vec![
            ("x-original-url", b"https://app.example.test/".to_vec()),
            ("x-auth-request-email", b"alice@example.com".to_vec()),
            ("x-auth-request-groups", b"devops".to_vec()),
        ],
    ));
    for (what, headers) in cases {
        let mut request = Request::get("/oauth2/auth");
        for (name, value) in headers {
            request = request.header(
                name,
                axum::http::HeaderValue::from_bytes(&value).expect("header bytes"),
            );
        }
        let status = status_of(&app, request.body(Body::empty()).expect("request")).await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "{what}: got {status}"
        );
    }
}

/// Over a real socket, an oversized header block is refused by the server
/// (431 or 400), not answered with 200 or 500.
#[tokio::test]
async fn oversized_headers_over_the_wire() {
    let stack = crate::fixture::Stack::start().await;
    let response = stack
        .http
        .get(format!("{}/oauth2/auth", stack.base))
        .header("X-Original-URL", "https://app.example.test/")
        .header("Cookie", format!("{COOKIE}={}", "A".repeat(200 * 1024)))
        .send()
        .await;
    match response {
        Ok(response) => {
            let s = response.status().as_u16();
            assert!(matches!(s, 400 | 401 | 403 | 431), "got {s}");
        }
        // The server may also close the connection on an oversized head.
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
}

/// The 559 payloads of oauth2-proxy's open-redirect corpus, URL-decoded.
pub(crate) fn corpus() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/openredirects.txt");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("the open-redirect corpus {path} is required: {e}");
    });
    text.lines()
        .map(|l| {
            url::form_urlencoded::parse(format!("x={}", l.replace('&', "%26")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// The app every corpus test uses: `www.whitelisteddomain.tld` is login
/// host, cookie domain and the one protected host; the provider is down.
pub(crate) fn corpus_app() -> Arc<App> {
    let mut config = test_config(
        "https://www.whitelisteddomain.tld",
        "http://127.0.0.1:9/dex",
        vec![route(0, "https://www.whitelisteddomain.tld", None, &[])],
    );
    config.cookie.domain = Some("www.whitelisteddomain.tld".into());
    config.cookie.secure = true;
    App::new(config, Arc::new(SystemClock)).expect("app")
}

/// Every one of the 559 published open-redirect payloads is refused by
/// `/oauth2/start` (400) — the empty one is replaced by the safe default —
/// with `www.whitelisteddomain.tld` as cookie
/// domain, login host and policy host.
#[tokio::test]
async fn open_redirect_corpus_through_start() {
    let app = corpus_app();
    let payloads = corpus();
    assert_eq!(payloads.len(), 559, "the corpus has 559 payloads");
    for payload in payloads {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", &payload)
            .finish();
        let request = Request::get(format!("/oauth2/start?{query}"))
            .body(Body::empty())
            .expect("request");
        let status = status_of(&app, request).await;
        if payload.is_empty() {
            // No return URL at all: the safe default (the login host) is
            // used, so the login proceeds — here to the unreachable
            // provider, hence 503.
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "payload {payload:?}");
        }
    }
    // A legitimate target is not refused by the rd check (the provider is
    // down here, hence 503 rather than 302).
    let request = Request::get("/oauth2/start?rd=https%3A%2F%2Fwww.whitelisteddomain.tld%2Fok")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        status_of(&app, request).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
