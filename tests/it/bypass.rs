//! The bypasses an outside test found in the shipped proxy configurations,
//! replayed: what nginx routes must be what authgate authorises.
//!
//! nginx runs `examples/nginx/nginx.conf` itself, with two protected server
//! blocks: `hello` and `app2` (one block, two names) under the cookie
//! domain, and `app.other.test` (its own block). Raw request lines go over
//! TLS byte for byte, so absolute-form requests and odd `Host` headers
//! reach nginx as an attacker would send them. Every attack must end
//! without the app being reached: a refusal by authgate (401/403), nginx's
//! 400, or the catch-all closing the connection (status 0).

use authgate::identity::Identity;

use crate::fixture::{COOKIE, Stack, header, route, session_cookie};
use crate::nginx_flow::login_through_nginx;
use crate::support::nginx::{DOMAIN, EchoUpstream, Nginx, OTHER_DOMAIN};
use crate::support::tls::TestCa;

struct Site {
    stack: Stack,
    nginx: Nginx,
    upstream: EchoUpstream,
}

/// `hello`: `/` (exactly) open to everyone, the rest for `admins`; `app2`
/// and `app.other.test`: `admins`; and a route for `app2` on port 1 that is
/// open to everyone — a port nginx does not listen on.
async fn site() -> Site {
    let ca = TestCa::new("authgate bypass test CA");
    let upstream = EchoUpstream::start().await;
    let (nginx, listener) = Nginx::start_example(&ca, &upstream).await;
    let public = |index, from: &str| {
        let mut r = route(index, from, None, &[]);
        r.allow_any_authenticated_user = false;
        r.allow_public_unauthenticated_access = true;
        r
    };
    let mut hello_root = public(0, &nginx.url("hello", ""));
    hello_root.path = Some("/".into());
    let routes = vec![
        hello_root,
        route(1, &nginx.url("hello", ""), None, &["admins"]),
        route(2, &nginx.url("app2", ""), None, &["admins"]),
        route(3, &nginx.other_url("app", ""), None, &["admins"]),
        public(4, &format!("https://app2.{DOMAIN}:1")),
    ];
    let login_base = nginx.url("auth", "");
    let stack = Stack::start_on(listener, routes, |config| {
        config.authenticate_service_url = url::Url::parse(&login_base).unwrap();
        config.cookie.domain = Some(DOMAIN.to_owned());
        config.cookie.secure = true;
    })
    .await;
    Site {
        stack,
        nginx,
        upstream,
    }
}

/// alice, signed in through nginx from `url`: her session cookie's value.
pub(crate) async fn login(
    stack: &Stack,
    nginx: &Nginx,
    client: &openidconnect::reqwest::Client,
    url: &str,
) -> String {
    let response = login_through_nginx(stack, nginx, client, url, "alice@example.com").await;
    assert_eq!(response.status(), 302);
    session_cookie(&response).expect("session cookie")
}

impl Site {
    /// `GET <target>` with `Host: <host>` over TLS to nginx (SNI
    /// `hello.<domain>`), as a program (`Accept: application/json`); the
    /// status and whether the app was reached.
    async fn attack(&self, target: &str, host: &str) -> (u16, bool) {
        let before = self.upstream.received().len();
        let (status, _) = self
            .nginx
            .raw_get(
                "hello",
                target,
                host,
                &["Accept: application/json".to_owned()],
            )
            .await;
        (status, self.upstream.received().len() > before)
    }
}

/// Absolute-form request lines, `Host` with ports, `#`, `?`, userinfo,
/// case and trailing dots: each is decided about the host nginx routes to,
/// or refused; none reaches a protected app anonymously. The same request
/// for the public page does reach it, with `Host` set to the routed host.
#[tokio::test]
async fn what_nginx_routes_is_what_authgate_decides() {
    let site = site().await;
    let port = site.nginx.https_port();
    let hello = format!("hello.{DOMAIN}:{port}");
    let app2 = format!("app2.{DOMAIN}:{port}");
    let other = format!("app.{OTHER_DOMAIN}:{port}");
    let attacks = [
        // nginx routes by the request line's host: app2's block, decided
        // about app2 (admins), never hello's public `/`.
        (format!("https://{app2}/"), hello.clone()),
        (format!("https://{other}/"), hello.clone()),
        (format!("https://APP2.Example.Test.:{port}/"), hello.clone()),
        // A route for app2:1 is public; nginx listens on another port.
        ("/".to_owned(), format!("app2.{DOMAIN}:1")),
        (format!("https://app2.{DOMAIN}:1/"), hello.clone()),
        // `#` or `?` after the host would cut `/admin` off the URL.
        ("/admin".to_owned(), format!("hello.{DOMAIN}#")),
        ("/admin".to_owned(), format!("hello.{DOMAIN}?")),
        ("/admin".to_owned(), format!("hello.{DOMAIN}:{port}#")),
        // Userinfo in the Host or the request line.
        ("/admin".to_owned(), format!("x@hello.{DOMAIN}")),
        (format!("https://x@{hello}/admin"), hello.clone()),
        // An unknown name, and the login host's name for the app's path.
        ("/admin".to_owned(), format!("nowhere.{DOMAIN}")),
    ];
    for (target, host) in &attacks {
        let (status, reached) = site.attack(target, host).await;
        assert!(
            !reached && matches!(status, 0 | 400 | 401 | 403 | 404),
            "GET {target} with Host {host}: {status}, app reached: {reached}\n{}",
            site.nginx.error_log()
        );
    }
    // Anonymous requests for a protected page get the 401, from authgate.
    assert_eq!(
        site.attack(&format!("https://{app2}/"), &hello).await,
        (401, false)
    );

    for (target, host) in [
        (format!("https://{hello}/"), app2.clone()),
        ("/".to_owned(), format!("HELLO.{DOMAIN}.")),
        ("/".to_owned(), format!("hello.{DOMAIN}:443")),
    ] {
        assert_eq!(
            site.attack(&target, &host).await,
            (200, true),
            "GET {target} with Host {host}"
        );
        let (_, body) = site
            .nginx
            .raw_get(
                "hello",
                &target,
                &host,
                &["Accept: application/json".to_owned()],
            )
            .await;
        let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["host"], format!("hello.{DOMAIN}"), "{target} {host}");
    }
}

/// The login host serves sign-in, callback, sign-out, userinfo, the status
/// page and the keys, and nothing else: `/oauth2/auth` there would answer
/// anyone's question about any URL with identity headers.
#[tokio::test]
async fn the_login_host_exposes_only_the_login() {
    let site = site().await;
    let client = site.nginx.http_client(&[]);
    let alice = login(
        &site.stack,
        &site.nginx,
        &client,
        &site.nginx.url("hello", "/x"),
    )
    .await;
    for path in crate::support::HIDDEN_ON_THE_LOGIN_HOST {
        let response = client
            .get(site.nginx.url("auth", path))
            .header("X-Original-URL", site.nginx.url("app2", "/"))
            .header("Cookie", format!("{COOKIE}={alice}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(header(&response, "x-auth-request-email"), "", "{path}");
    }
    for (path, status) in [
        ("/", 200),
        ("/.well-known/authgate/jwks.json", 200),
        ("/oauth2/userinfo", 200),
        ("/oauth2/start", 302),
    ] {
        let response = client
            .get(site.nginx.url("auth", path))
            .header("Cookie", format!("{COOKIE}={alice}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
}

/// Asked directly: a URL whose host is followed by `#` or `?` is refused
/// (403), and so is one with userinfo; with `?host=` the URL must be on that
/// host and port; with `trusted_proxies` set, nobody else is answered.
#[tokio::test]
async fn authgate_refuses_what_it_cannot_bind_to_the_routed_host() {
    let stack = Stack::start_with(
        vec![route(0, "https://hello.example.com", None, &[])],
        |_| {},
    )
    .await;
    let alice = stack
        .login("alice@example.com", "https://hello.example.com/")
        .await;
    let ask = |query: &'static str, url: &'static str| {
        let request = stack
            .http
            .get(format!("{}/oauth2/auth{query}", stack.base))
            .header("X-Original-URL", url)
            .header("Cookie", format!("{COOKIE}={alice}"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ask("", "https://hello.example.com/admin").await, 200);
    for url in [
        "https://hello.example.com#/admin",
        "https://hello.example.com?/admin",
        "https://hello.example.com:443#/admin",
        "https://x@hello.example.com/admin",
    ] {
        assert_eq!(ask("", url).await, 403, "{url}");
    }
    assert_eq!(
        ask("?host=hello.example.com", "https://hello.example.com/x").await,
        200
    );
    assert_eq!(
        ask("?host=HELLO.example.com.", "https://hello.example.com/x").await,
        200
    );
    for query in [
        "?host=other.example.com",
        "?host=hello.example.com:8443",
        "?host=hello.example.com&host=hello.example.com",
        "?host=",
        "?host=x@hello.example.com",
    ] {
        assert_eq!(
            ask(query, "https://hello.example.com/x").await,
            403,
            "{query}"
        );
    }
    assert_eq!(
        ask(
            "?host=hello.example.com",
            "https://hello.example.com:8443/x"
        )
        .await,
        403
    );

    // trusted_proxies set, and this client (127.0.0.1) not in it.
    let guarded = Stack::start_with(
        vec![route(0, "https://hello.example.com", None, &[])],
        |config| config.trusted_proxies = vec!["10.9.8.7/32".parse().unwrap()],
    )
    .await;
    let alice = guarded
        .login("alice@example.com", "https://hello.example.com/")
        .await;
    let response = guarded
        .auth("https://hello.example.com/", Some(&alice))
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(header(&response, "x-auth-request-email"), "");
    let trusting = Stack::start_with(
        vec![route(0, "https://hello.example.com", None, &[])],
        |config| config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()],
    )
    .await;
    let alice = trusting
        .login("alice@example.com", "https://hello.example.com/")
        .await;
    let response = trusting
        .auth("https://hello.example.com/", Some(&alice))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-email"),
        "alice@example.com"
    );
}

/// A CORS preflight passes unauthenticated, and a method passes a route's
/// `allowed_methods`, only when every reading of the path allows it.
#[tokio::test]
async fn preflight_and_methods_hold_for_every_reading_of_the_path() {
    let mut api = route(0, "https://app.example.com", Some("/api"), &[]);
    api.cors_allow_preflight = true;
    let admin = route(1, "https://app.example.com", Some("/admin"), &[]);
    let mut ro = route(2, "https://app.example.com", Some("/ro"), &[]);
    ro.allowed_methods = vec!["GET".into()];
    let rw = route(3, "https://app.example.com", Some("/rw"), &[]);
    let stack = Stack::start_with(vec![api, admin, ro, rw], |_| {}).await;
    let bob = stack
        .login("bob@example.com", "https://app.example.com/")
        .await;
    let preflight = |path: &'static str| {
        let request = stack
            .http
            .get(format!("{}/oauth2/auth", stack.base))
            .header("X-Original-URL", format!("https://app.example.com{path}"))
            .header("X-Original-Method", "OPTIONS")
            .header("Origin", "https://web.example.com")
            .header("Access-Control-Request-Method", "POST");
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(preflight("/api/x").await, 200);
    for path in ["/admin/../api/x", "/admin/%2e%2e/api/x", "/admin/x"] {
        assert_eq!(preflight(path).await, 401, "{path}");
    }
    let post = |path: &'static str| {
        let request = stack
            .http
            .get(format!("{}/oauth2/auth", stack.base))
            .header("X-Original-URL", format!("https://app.example.com{path}"))
            .header("X-Original-Method", "POST")
            .header("Cookie", format!("{COOKIE}={bob}"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post("/rw/x").await, 200);
    for path in ["/ro/../rw/x", "/ro/%2e%2e/rw/x", "/ro/x"] {
        assert_eq!(post(path).await, 403, "{path}");
    }
}

/// A group whose name has a comma reaches the upstream as one group
/// (`%2C`-encoded), never as two; and the policy matches the name as the
/// provider gave it, so `developers,admins` is not `admins`.
#[tokio::test]
async fn a_comma_in_a_group_name_cannot_make_two_groups() {
    let stack = Stack::start_with(
        vec![
            route(0, "https://admin.example.com", None, &["admins"]),
            route(1, "https://any.example.com", None, &[]),
        ],
        |_| {},
    )
    .await;
    let identity = Identity {
        subject: "CgRkYXZl".into(),
        email: Some("dave@example.com".into()),
        email_verified: Some(true),
        groups: vec!["developers,admins".into(), "ops".into()],
        ..Identity::default()
    };
    let due = stack.app.clock().now() + 3600;
    let (cookie, _) = stack
        .app
        .sessions()
        .create(identity, None, due)
        .await
        .unwrap();
    let response = stack.auth("https://any.example.com/", Some(&cookie)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "x-auth-request-groups"),
        "developers%2Cadmins,ops"
    );
    let response = stack
        .auth("https://admin.example.com/", Some(&cookie))
        .await;
    assert_eq!(response.status(), 403);
}

/// Signing out: a GET from another site (or one that says nothing of where
/// it comes from) only asks, with a button that posts; a cross-site POST is
/// refused; neither ends the session. A POST from the login host does.
#[tokio::test]
async fn cross_site_requests_cannot_sign_anyone_out() {
    let stack = Stack::start().await;
    let url = "https://app.example.test/";
    let alice = stack.login("alice@example.com", url).await;
    let signed_in = || async { stack.auth(url, Some(&alice)).await.status().as_u16() };
    let sign_out = format!(
        "{}/oauth2/sign_out?rd=https%3A%2F%2Fapp.example.test%2F",
        stack.base
    );
    let cookie = format!("{COOKIE}={alice}");

    for site in [Some("cross-site"), None] {
        let mut request = stack.http.get(&sign_out).header("Cookie", &cookie);
        if let Some(site) = site {
            request = request.header("Sec-Fetch-Site", site);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{site:?}");
        assert!(response.headers().get("set-cookie").is_none(), "{site:?}");
        let page = response.text().await.unwrap().replace("&#x2f;", "/");
        assert!(
            page.contains(
                "method=\"post\" action=\"/oauth2/sign_out?rd=https%3A%2F%2Fapp.example.test%2F\""
            ),
            "{page}"
        );
        assert_eq!(signed_in().await, 200, "{site:?}");
    }
    for (name, value) in [
        ("Sec-Fetch-Site", "cross-site"),
        ("Origin", "https://evil.example.org"),
    ] {
        let response = stack
            .http
            .post(&sign_out)
            .header("Cookie", &cookie)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}: {value}");
        assert_eq!(signed_in().await, 200, "{name}: {value}");
    }
    let response = stack
        .http
        .post(&sign_out)
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(header(&response, "location"), url);
    assert_eq!(signed_in().await, 401);
}

/// `examples/nginx/ingress-nginx.yaml`, run: its Ingresses rendered into
/// nginx as ingress-nginx renders them (which builds `X-Original-URL` from
/// the client's `Host`), in front of authgate with `hello.example.com` for
/// admins and `app.example.org` public. An absolute-form request for hello
/// with `Host: app.example.org` reaches hello's server block; with the
/// example's `auth-url …?host=hello.example.com` authgate refuses it, and
/// with the `?host=` taken out the same request reaches hello's app
/// anonymously (the bypass the binding closes).
#[tokio::test]
async fn ingress_nginx_example_binds_the_decision_to_its_host() {
    use crate::support::ingress_nginx;

    let mut public = route(1, "https://app.example.org", None, &[]);
    public.allow_any_authenticated_user = false;
    public.allow_public_unauthenticated_access = true;
    let stack = Stack::start_with(
        vec![
            route(0, "https://hello.example.com", None, &["admins"]),
            public,
        ],
        |config| {
            config.authenticate_service_url = url::Url::parse("https://auth.example.com").unwrap();
            config.cookie.domain = Some("example.com".to_owned());
        },
    )
    .await;
    let authgate: std::net::SocketAddr = stack.base.trim_start_matches("http://").parse().unwrap();
    let upstream = EchoUpstream::start().await;
    let example = std::fs::read_to_string(
        crate::support::repo_root().join("examples/nginx/ingress-nginx.yaml"),
    )
    .unwrap();
    let ca = TestCa::new("ingress-nginx example CA");
    let start = |text: String| {
        let (ca, upstream) = (&ca, upstream.addr());
        async move { ingress_nginx::start_example(&text, authgate, upstream, ca).await }
    };
    let json = ["Accept: application/json".to_owned()];
    // hello's page, asked with app.example.org's name: status, app reached.
    let attack = async |nginx: &Nginx| {
        let before = upstream.received().len();
        let (status, _) = nginx
            .raw_get(
                "hello",
                "https://hello.example.com/",
                "app.example.org",
                &json,
            )
            .await;
        (status, upstream.received().len() > before)
    };

    let nginx = start(example.clone()).await;
    assert_eq!(attack(&nginx).await, (403, false), "{}", nginx.error_log());
    // What the app's own host is asked is answered as usual.
    let (status, _) = nginx.raw_get("app", "/", "app.example.org", &json).await;
    assert_eq!(status, 200);
    drop(nginx);

    let unbound = example
        .replace("/oauth2/auth?host=hello.example.com", "/oauth2/auth")
        .replace("/oauth2/auth?host=app.example.org", "/oauth2/auth");
    assert_ne!(unbound, example);
    let nginx = start(unbound).await;
    assert_eq!(
        attack(&nginx).await,
        (200, true),
        "without the binding the request should get through (else this test proves nothing)"
    );
}
