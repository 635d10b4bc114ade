//! The end-to-end stack on its own, without authgate: real 389 Directory Server, Dex,
//! nginx (from `examples/nginx/nginx.conf`) and Chromium behave as the
//! scenario tests will rely on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;

use crate::support::browser::{Browser, BrowserOptions};
use crate::support::dex::{CLIENT_ID, Dex, DexOptions, LdapFilters};
use crate::support::dirsrv::{ALICE, BOB, CAROL, DEX_BIND_DN, Dirsrv, GROUPS_DN, USERS_DN, User};
use crate::support::nginx::{DOMAIN, EchoUpstream, Nginx, NginxOptions};
use crate::support::redis::Redis;
use crate::support::tls::TestCa;

/// 389-ds serves the FreeIPA-shaped tree over LDAPS, verified with the test
/// CA (and refused with another CA); group membership changes made through
/// the harness show up in the next search, on both sides (`member`,
/// `memberOf`); a disabled account cannot bind but is still found.
#[tokio::test(flavor = "multi_thread")]
async fn dirsrv_serves_freeipa_tree_over_ldaps() {
    let started = Instant::now();
    let dirsrv = Dirsrv::start().await;
    eprintln!("dirsrv ready in {:?}", started.elapsed());

    let alice = dirsrv.search_as_dex(
        USERS_DN,
        "(uid=alice)",
        &["mail", "uidNumber", "displayName"],
    );
    assert!(alice.contains(&format!("dn: {}", ALICE.dn())), "{alice}");
    assert!(alice.contains("mail: alice@example.test"), "{alice}");
    assert!(alice.contains("uidNumber: 1200001"), "{alice}");
    assert!(alice.contains("displayName: Alice Archer"), "{alice}");
    assert!(
        !alice.contains("userPassword"),
        "service account must not read hashes: {alice}"
    );

    let devops = dirsrv.search_as_dex(GROUPS_DN, "(cn=devops)", &["member", "objectClass"]);
    assert!(
        devops.contains(&format!("member: {}", ALICE.dn())),
        "{devops}"
    );
    assert!(
        devops.contains(&format!("member: {}", CAROL.dn())),
        "{devops}"
    );
    assert!(!devops.contains(&BOB.dn()), "{devops}");
    assert!(devops.contains("objectClass: posixGroup"), "{devops}");
    // Dex's group filter as the seed writes it finds the groups.
    let seed_filter = dirsrv.search_as_dex(
        GROUPS_DN,
        &format!(
            "(&(|(objectClass=posixGroup)(objectClass=group))(member={}))",
            ALICE.dn()
        ),
        &["cn"],
    );
    for group in ALICE.groups {
        assert!(
            seed_filter.contains(&format!("cn: {group}")),
            "{seed_filter}"
        );
    }

    // FreeIPA's default group is not POSIX: the seed's filter misses it.
    assert!(!seed_filter.contains("cn: ipausers"), "{seed_filter}");
    // The memberOf plugin keeps the users' side, as in FreeIPA.
    let member_of =
        |user: &User| dirsrv.search_as_dex(&user.dn(), "(objectClass=*)", &["memberOf"]);
    let carol = member_of(&CAROL);
    assert!(
        carol.contains(&format!("memberOf: cn=devops,{GROUPS_DN}")),
        "{carol}"
    );
    assert!(
        carol.contains(&format!("memberOf: cn=ipausers,{GROUPS_DN}")),
        "{carol}"
    );

    dirsrv.remove_from_group(&CAROL, "devops");
    let devops = dirsrv.search_as_dex(GROUPS_DN, "(cn=devops)", &["member"]);
    assert!(
        !devops.contains(&CAROL.dn()),
        "carol still in devops: {devops}"
    );
    let carol = member_of(&CAROL);
    assert!(
        !carol.contains("cn=devops"),
        "memberOf not updated: {carol}"
    );
    dirsrv.add_to_group(&CAROL, "devops");
    let devops = dirsrv.search_as_dex(GROUPS_DN, "(cn=devops)", &["member"]);
    assert!(
        devops.contains(&CAROL.dn()),
        "carol not back in devops: {devops}"
    );

    // Disabled (nsAccountLock): 389-ds refuses the password, while the
    // service account still finds the entry unless the filter excludes it.
    let bind_as = |user: &User| {
        std::process::Command::new("ldapsearch")
            .env("LDAPTLS_CACERT", dirsrv.ca_pem_path())
            .args(["-x", "-H", &dirsrv.ldaps_url(), "-D", &user.dn()])
            .args(["-w", user.password, "-b", "", "-s", "base", "1.1"])
            .output()
            .expect("run ldapsearch")
    };
    assert!(bind_as(&BOB).status.success(), "bob cannot bind");
    dirsrv.disable(&BOB);
    let refused = bind_as(&BOB);
    assert!(!refused.status.success(), "a disabled account could bind");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Account inactivated"),
        "{refused:?}"
    );
    let found = dirsrv.search_as_dex(USERS_DN, "(uid=bob)", &["nsAccountLock"]);
    assert!(found.contains("nsAccountLock: TRUE"), "{found}");
    let filtered = dirsrv.search_as_dex(
        USERS_DN,
        &format!("(&{}(uid=bob))", LdapFilters::RECOMMENDED.user),
        &["uid"],
    );
    assert!(filtered.trim().is_empty(), "{filtered}");

    // The certificate is really checked: another CA is refused.
    let other = crate::support::temp_dir("other-ca");
    let other_ca = TestCa::new("not the LDAP CA").write_cert(other.path());
    let refused = std::process::Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", &other_ca)
        .env("LDAPTLS_REQCERT", "demand")
        .args([
            "-x",
            "-H",
            &dirsrv.ldaps_url(),
            "-D",
            DEX_BIND_DN,
            "-w",
            "x",
            "-b",
            USERS_DN,
        ])
        .output()
        .expect("run ldapsearch");
    assert!(
        !refused.status.success(),
        "LDAPS accepted a certificate from an unknown CA"
    );
}

/// One request's query parameters, in order.
type QueryPairs = Vec<(String, String)>;

/// What the redirect-URI listener received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<QueryPairs>>>);

async fn record_callback(
    State(received): State<Received>,
    Query(query): Query<QueryPairs>,
) -> &'static str {
    received.0.lock().unwrap().push(query);
    "callback received"
}

/// Dex with the LDAP connector, driven through its own form in Chromium: a
/// wrong password stays on the form; alice's password lands on the redirect
/// URI with `code` and `state`, and the code buys an ID token carrying her
/// email, uid and groups from LDAP (plus a refresh token for
/// `offline_access`).
#[tokio::test(flavor = "multi_thread")]
async fn dex_ldap_login_in_chromium_issues_id_token_with_groups() {
    let started = Instant::now();
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let callback = format!("http://{}/callback", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/callback", get(record_callback))
        .with_state(received.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dirsrv = Dirsrv::start().await;
    let dex = Dex::start(
        &dirsrv,
        DexOptions {
            redirect_uris: vec![callback.clone()],
            ..DexOptions::default()
        },
    )
    .await;
    let browser = Browser::start(BrowserOptions::default()).await;
    eprintln!("dirsrv + Dex + Chromium ready in {:?}", started.elapsed());

    let mut auth = url::Url::parse(&dex.auth_endpoint()).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &callback)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile groups offline_access")
        .append_pair("state", "state-1234");
    browser.goto(auth.as_str()).await;

    browser.dex_login(ALICE.email, "not-her-password").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let at = browser.current_url().await;
    assert!(
        at.as_str().starts_with(&dex.issuer()),
        "left Dex after a wrong password: {at}"
    );
    assert!(
        browser.on_dex_login_form().await,
        "no login form after a wrong password"
    );
    assert!(
        browser.page_text().await.contains("Invalid"),
        "{}",
        browser.page_text().await
    );
    assert!(received.0.lock().unwrap().is_empty());

    browser.dex_login(ALICE.email, ALICE.password).await;
    let landed = browser
        .wait_for_url("the redirect URI", |u| u.as_str().starts_with(&callback))
        .await;
    let query: Vec<(String, String)> = landed.query_pairs().into_owned().collect();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("state").as_deref(), Some("state-1234"));
    let code = get("code").expect("code on the redirect URI");
    assert_eq!(received.0.lock().unwrap().len(), 1);

    let http = openidconnect::reqwest::Client::new();
    let response = http
        .post(dex.token_endpoint())
        .basic_auth(CLIENT_ID, Some(dex.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        tokens["refresh_token"].is_string(),
        "no refresh token: {tokens}"
    );
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let payload = id_token.split('.').nth(1).expect("JWT payload");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], dex.issuer());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["email"], ALICE.email);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["preferred_username"], ALICE.uid);
    assert_eq!(claims["name"], ALICE.display_name);
    let groups: Vec<&str> = claims["groups"]
        .as_array()
        .expect("groups claim")
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert!(groups.contains(&"devops"), "{claims}");
    let mut expected = ALICE.groups.to_vec();
    let mut got = groups.clone();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected, "direct groups only, each once");

    browser.close().await;
    server.abort();
    eprintln!("Dex login self-test done in {:?}", started.elapsed());
}

/// How the stub auth service answers `/oauth2/auth`.
#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Allow,
    SignIn,
    Deny,
}

/// A stand-in for authgate: answers nginx's subrequests with a chosen
/// verdict and records what nginx sent.
#[derive(Clone)]
struct StubAuth {
    verdict: Arc<Mutex<Verdict>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    signin_base: Arc<Mutex<String>>,
}

async fn stub_auth(State(stub): State<StubAuth>, headers: HeaderMap) -> Response {
    stub.seen.lock().unwrap().push(headers.clone());
    let verdict = *stub.verdict.lock().unwrap();
    match verdict {
        Verdict::Allow => (
            StatusCode::OK,
            [
                ("x-auth-request-user", "CgcxMjAwMDAxEgRsZGFw"),
                ("x-auth-request-email", "alice@example.test"),
                ("x-auth-request-preferred-username", "alice"),
                ("x-auth-request-groups", "devops,admins"),
            ],
        )
            .into_response(),
        Verdict::SignIn => {
            let original = headers
                .get("x-original-url")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let mut location = url::Url::parse(&stub.signin_base.lock().unwrap()).unwrap();
            location.query_pairs_mut().append_pair("rd", original);
            (
                StatusCode::UNAUTHORIZED,
                [(header::LOCATION, location.to_string())],
            )
                .into_response()
        }
        Verdict::Deny => StatusCode::FORBIDDEN.into_response(),
    }
}

async fn stub_start(State(stub): State<StubAuth>, headers: HeaderMap) -> &'static str {
    stub.seen.lock().unwrap().push(headers);
    "stub sign-in page"
}

/// The stub's `/oauth2/forbidden` page, which nginx's `error_page 403` shows.
async fn stub_forbidden(State(stub): State<StubAuth>, headers: HeaderMap) -> Response {
    stub.seen.lock().unwrap().push(headers);
    (StatusCode::FORBIDDEN, "stub forbidden page").into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// nginx from `examples/nginx/nginx.conf`: with the auth service allowing,
/// the upstream gets exactly the identity the auth service sent (client-sent
/// copies and look-alikes are dropped) and the auth service gets the
/// original URL and method from nginx, not from the client; a 401 + Location
/// becomes a 302 to that Location; a 403 shows the auth service's forbidden
/// page (still 403); the login host proxies
/// `/oauth2/` with X-Forwarded-*; unknown names are refused at the TLS
/// handshake; and Chromium trusts the test CA through the mapped names.
#[tokio::test(flavor = "multi_thread")]
async fn nginx_example_config_gates_upstream_on_auth_verdict() {
    let started = Instant::now();
    let stub = StubAuth {
        verdict: Arc::new(Mutex::new(Verdict::Allow)),
        seen: Arc::default(),
        signin_base: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let stub_addr: SocketAddr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/oauth2/auth", get(stub_auth))
        .route("/oauth2/start", get(stub_start))
        .route("/oauth2/forbidden", get(stub_forbidden))
        .with_state(stub.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let upstream = EchoUpstream::start().await;
    let ca = TestCa::new("authgate e2e web CA");
    let nginx = Nginx::start(NginxOptions {
        authgate: stub_addr,
        upstream: upstream.addr(),
        ca: &ca,
        domain: DOMAIN,
    })
    .await;
    eprintln!("nginx ready in {:?}", started.elapsed());
    *stub.signin_base.lock().unwrap() = nginx.url("auth", "/oauth2/start");
    let client = nginx.http_client(&["other"]);
    let page = nginx.url("hello", "/some/path?q=1");

    // Allowed: identity from the auth service only.
    let response = client
        .get(&page)
        .header("accept", "application/json")
        .header("x-auth-request-email", "mallory@evil.test")
        .header("x-auth-request-groups", "devops")
        .header("x-forwarded-user", "mallory")
        .header("x-original-url", "https://evil.test/")
        .header("x-original-method", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", nginx.error_log());
    let echo: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let h = &echo["headers"];
    assert_eq!(
        h["x-auth-request-email"],
        serde_json::json!(["alice@example.test"]),
        "{echo}"
    );
    assert_eq!(
        h["x-auth-request-groups"],
        serde_json::json!(["devops,admins"]),
        "{echo}"
    );
    assert_eq!(
        h["x-auth-request-preferred-username"],
        serde_json::json!(["alice"])
    );
    assert_eq!(
        h["x-auth-request-user"],
        serde_json::json!(["CgcxMjAwMDAxEgRsZGFw"])
    );
    assert!(h.get("x-forwarded-user").is_none(), "{echo}");
    assert_eq!(echo["uri"], "/some/path?q=1");
    {
        let seen = stub.seen.lock().unwrap();
        let auth = seen.last().expect("auth subrequest");
        assert_eq!(header(auth, "x-original-url"), Some(page.as_str()));
        assert_eq!(header(auth, "x-original-method"), Some("GET"));
        assert_eq!(auth.get_all("x-original-url").iter().count(), 1);
    }

    // No session: 401 + Location from the auth service becomes a 302 there.
    *stub.verdict.lock().unwrap() = Verdict::SignIn;
    let response = client.get(&page).send().await.unwrap();
    assert_eq!(response.status(), 302, "{}", nginx.error_log());
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let mut expected = url::Url::parse(&nginx.url("auth", "/oauth2/start")).unwrap();
    expected.query_pairs_mut().append_pair("rd", &page);
    assert_eq!(location, expected.as_str());

    // Denied: the auth service's forbidden page (asked with a GET, the
    // original URL from nginx, the client's cookie) reaches the client with
    // its 403, whatever the method; the upstream is not asked.
    *stub.verdict.lock().unwrap() = Verdict::Deny;
    let response = client
        .post(&page)
        .header("accept", "application/json")
        .header("cookie", "_authgate=who-am-i")
        .header("x-original-url", "https://evil.test/")
        .body("form=data")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "{}", nginx.error_log());
    assert_eq!(response.text().await.unwrap(), "stub forbidden page");
    {
        let seen = stub.seen.lock().unwrap();
        let forbidden = seen.last().expect("forbidden page request");
        assert_eq!(header(forbidden, "x-original-url"), Some(page.as_str()));
        assert_eq!(forbidden.get_all("x-original-url").iter().count(), 1);
        assert_eq!(header(forbidden, "cookie"), Some("_authgate=who-am-i"));
        assert_eq!(header(forbidden, "content-length"), None);
    }

    // The login host proxies /oauth2/ to the auth service.
    let response = client.get(&location).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "stub sign-in page");
    {
        let seen = stub.seen.lock().unwrap();
        let start = seen.last().unwrap();
        assert_eq!(header(start, "x-forwarded-proto"), Some("https"));
        // The host nginx routed on, not the client's Host.
        let auth_host = format!("auth.{DOMAIN}");
        assert_eq!(header(start, "x-forwarded-host"), Some(auth_host.as_str()));
    }

    // A name nginx does not serve is refused at the handshake.
    let other = client.get(nginx.url("other", "/")).send().await;
    assert!(other.is_err(), "unknown server name was served: {other:?}");

    // Chromium: the test CA is trusted and the names reach nginx.
    *stub.verdict.lock().unwrap() = Verdict::Allow;
    let dir = crate::support::temp_dir("web-ca");
    let browser = Browser::start(BrowserOptions {
        trust_ca: Some(ca.write_cert(dir.path())),
        host_resolver_rules: Some(nginx.host_resolver_rules()),
    })
    .await;
    browser.goto(&page).await;
    browser
        .expect_text("stack_selftest_nginx_browser", "Hello, alice@example.test")
        .await;
    assert_eq!(browser.current_url().await.as_str(), page);
    browser.close().await;
    server.abort();
    eprintln!("nginx self-test done in {:?}", started.elapsed());
}

/// redis-server answers PING on its loopback port.
#[tokio::test(flavor = "multi_thread")]
async fn redis_answers_ping() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start().await;
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    let mut conn = tokio::net::TcpStream::connect(redis.addr()).await.unwrap();
    conn.write_all(b"PING\r\n").await.unwrap();
    let mut reply = [0u8; 7];
    conn.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+PONG\r\n", "{}", redis.log());
}
