//! What authgate authorises is what the app behind nginx gets: raw request
//! lines (sent over TLS byte for byte, as reqwest would normalise them)
//! through real nginx, started from `examples/nginx/nginx.conf`, to an echo
//! upstream that records the URI it receives.
//!
//! The policy on `hello`: `/public` open to everyone, `/admin` for group
//! `admins`, everything else for any signed-in user. For each raw path,
//! anonymous and as bob (signed in, not an admin):
//! - when nginx lets the request through, authgate's own reading of the
//!   path allowed it, and every way an app may read the URI it received
//!   (nginx's decoding, RFC 3986 dot removal without decoding, a servlet
//!   container's `;` parameters, a router taking the path literally) is a
//!   path the policy allows too — never `/admin` for bob, only `/public`
//!   for nobody;
//! - when it does not, the upstream received nothing, and authgate refused
//!   (or nginx itself answered 400 first).

use authgate::policy::Target;

use crate::fixture::{COOKIE, Stack, route};
use crate::support::nginx::{DOMAIN, EchoUpstream, Nginx};
use crate::support::tls::TestCa;

struct Site {
    stack: Stack,
    nginx: Nginx,
    upstream: EchoUpstream,
    /// `hello.<domain>:<port>`, the Host nginx serves.
    host: String,
}

async fn site() -> Site {
    let ca = TestCa::new("authgate canonicalisation test CA");
    let upstream = EchoUpstream::start().await;
    let (nginx, listener) = Nginx::start_example(&ca, &upstream).await;
    let hello = nginx.url("hello", "");
    let mut public = route(0, &hello, Some("/public"), &[]);
    public.allow_any_authenticated_user = false;
    public.allow_public_unauthenticated_access = true;
    let routes = vec![
        public,
        route(1, &hello, Some("/admin"), &["admins"]),
        route(2, &hello, None, &[]),
    ];
    let stack = Stack::start_on(listener, routes, |_| {}).await;
    let host = format!("hello.{DOMAIN}:{}", nginx.https_port());
    Site {
        stack,
        nginx,
        upstream,
        host,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// Signed in, not in `admins`.
    Bob,
}

/// Does the test policy let `who` open `path` (one reading of it)?
fn allowed(who: Who, path: &str) -> bool {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    match who {
        Who::Anonymous => under("/public"),
        Who::Bob => !under("/admin"),
    }
}

/// authgate's decision for `raw`, from its own canonical form(s): the path
/// as nginx reads it and, with `;` parameters, without them, with dot
/// segments, with the dots kept.
fn authgate_allows(who: Who, host: &str, raw: &str) -> bool {
    match Target::parse(&format!("https://{host}{raw}")) {
        Ok(target) => {
            allowed(who, &target.path)
                && [
                    target.path_without_params.as_deref(),
                    target.path_with_dots.as_deref(),
                ]
                .into_iter()
                .flatten()
                .all(|p| allowed(who, p))
        }
        Err(_) => false,
    }
}

/// The ways an application may read the URI it received: nginx's (decode
/// once, merge slashes, resolve dots), RFC 3986's (resolve dots, `%2e`
/// included, decode nothing), a servlet container's (drop `;` parameters
/// per segment, then as nginx) and a literal router's (as is).
fn readings(uri: &str) -> Vec<(&'static str, String)> {
    let path = uri.split('?').next().unwrap_or(uri);
    let mut out = vec![("literal", path.to_owned())];
    if let Ok(t) = Target::parse(&format!("https://h{path}")) {
        out.push(("nginx", t.path.into_owned()));
    }
    if let Ok(u) = url::Url::parse(&format!("https://h{path}")) {
        out.push(("rfc3986", u.path().to_owned()));
    }
    let stripped: Vec<&str> = path
        .split('/')
        .map(|s| s.split(';').next().unwrap_or(s))
        .collect();
    if let Ok(t) = Target::parse(&format!("https://h{}", stripped.join("/"))) {
        out.push(("servlet", t.path.into_owned()));
    }
    out
}

/// The raw paths of the issue and their usual companions.
const PATHS: &[&str] = &[
    "/admin",
    "/admin/",
    "/Admin",
    "/ADMIN/x",
    "/%61dmin",
    "/%41dmin",
    "/./admin",
    "//admin",
    "///admin//x",
    "/x/../admin",
    "/x/./../admin",
    "/admin%2f..",
    "/admin%2F..%2F",
    "/admin/..",
    "/admin/../public",
    "/admin;x=1",
    "/admin;/x",
    "/;x/admin",
    "/admin%3bx",
    "/public",
    "/public/",
    "/public/x",
    "/publicx",
    "/public;x=1",
    "/public;jsessionid=abc/x",
    "/public/../admin",
    "/public/..%2fadmin",
    "/public%2f..%2fadmin",
    "/public/%2e%2e/admin",
    "/public/.%2e/admin",
    "/public/%2e%2e%2fadmin",
    "/public/..;/admin",
    "/public/.;/../admin",
    "/public//../admin",
    "/public/x/../../admin",
    "/public/%2e%2e%5cadmin",
    "/public\\..\\admin",
    "/public?x=/admin",
    "/admin?/public",
    "/public/%23/../../admin",
    "/public/x%00",
    "/public/%zz",
    "/public/%",
    "/%2e%2e/admin",
    "/..",
    "/public/caf%C3%A9",
];

/// Every path of [`PATHS`], anonymous and as bob, through nginx: the
/// decision and what reached the app agree (see the module doc).
#[tokio::test]
async fn decisions_match_what_the_upstream_receives() {
    let site = site().await;
    let bob = site
        .stack
        .login("bob@example.com", &site.nginx.url("hello", "/"))
        .await;
    let mut passed = 0;
    for raw in PATHS {
        for who in [Who::Anonymous, Who::Bob] {
            let headers = match who {
                Who::Anonymous => vec!["Accept: application/json".to_owned()],
                Who::Bob => vec![
                    "Accept: application/json".to_owned(),
                    format!("Cookie: {COOKIE}={bob}"),
                ],
            };
            let before = site.upstream.received().len();
            let (status, body) = site.nginx.raw_get("hello", raw, &site.host, &headers).await;
            let received = site.upstream.received();
            let expected = authgate_allows(who, &site.host, raw);
            let case = format!("{who:?} {raw:?}: nginx answered {status}");
            assert!(
                matches!(status, 200 | 302 | 400 | 401 | 403),
                "{case}\n{}",
                site.nginx.error_log()
            );
            if status == 200 {
                passed += 1;
                assert!(expected, "{case}, but authgate's reading refuses it");
                assert_eq!(received.len(), before + 1, "{case}");
                let uri = received.last().unwrap();
                let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(echoed["uri"], uri.as_str(), "{case}");
                for (how, path) in readings(uri) {
                    assert!(
                        allowed(who, &path),
                        "{case}: the app got {uri:?}, which reads as {path:?} ({how})"
                    );
                }
            } else {
                assert_eq!(received.len(), before, "{case}: reached the app");
                assert!(!expected || status == 400, "{case}, authgate allows it");
            }
        }
    }
    // The table is not all refusals: the allowed paths did go through.
    assert!(passed >= 10, "only {passed} requests reached the app");
}

/// Hosts as nginx matches `server_name` (case-insensitively, one trailing
/// dot ignored) are the hosts authgate matches routes with: mixed case and
/// a trailing dot reach the same rule. The port is the one nginx received
/// the request on, whatever the Host says: without a port or with another
/// one, the request is decided as what nginx routes (see `bypass`).
#[tokio::test]
async fn hosts_match_like_nginx() {
    let site = site().await;
    let bob = site
        .stack
        .login("bob@example.com", &site.nginx.url("hello", "/"))
        .await;
    let port = site.nginx.https_port();
    let cookie = vec![
        "Accept: application/json".to_owned(),
        format!("Cookie: {COOKIE}={bob}"),
    ];
    for host in [
        format!("Hello.Example.Test:{port}"),
        format!("HELLO.{DOMAIN}:{port}"),
        format!("hello.{DOMAIN}.:{port}"),
    ] {
        let (status, _) = site.nginx.raw_get("hello", "/admin", &host, &cookie).await;
        assert_eq!(status, 403, "bob on /admin via {host}");
        let (status, _) = site.nginx.raw_get("hello", "/x", &host, &cookie).await;
        assert_eq!(status, 200, "bob on /x via {host}");
        let (status, _) = site.nginx.raw_get("hello", "/public", &host, &[]).await;
        assert_eq!(status, 200, "anonymous on /public via {host}");
    }
    for host in [format!("hello.{DOMAIN}"), format!("hello.{DOMAIN}:443")] {
        let (status, _) = site.nginx.raw_get("hello", "/admin", &host, &cookie).await;
        assert_eq!(status, 403, "bob on /admin via {host}");
        let (status, _) = site.nginx.raw_get("hello", "/public", &host, &[]).await;
        assert_eq!(status, 200, "anonymous on /public via {host}");
    }
}
