//! `authgate print nginx|envoy|haproxy` run as a user runs it: the nginx
//! output is accepted by the real nginx (`nginx -t`), the Envoy output
//! parses into Envoy's `Bootstrap` with the checks the shipped examples
//! pass, the HAProxy output is accepted (`haproxy -c`) and run by the real
//! HAProxy.

use std::path::Path;
use std::process::Command;

use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ext_authz::Services;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;

use crate::envoy_examples::{check_common, hcm_and_ext_authz, parse_bootstrap};
use crate::fixture::{COOKIE, Stack, route};
use crate::support::nginx::{DOMAIN, EchoUpstream, Nginx};
use crate::support::process::{free_port, require_program, run_ok};
use crate::support::temp_dir;
use crate::support::tls::TestCa;

const BIN: &str = env!("CARGO_BIN_EXE_authgate");

/// A configuration with two routes on app.example.com (one public path),
/// a wildcard host on a non-default port, and the login host.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("authgate.yaml");
    std::fs::write(
        &path,
        "authenticate_service_url: https://auth.example.com\n\
         idp_provider_url: https://dex.example.com/dex\n\
         idp_client_id: authgate\n\
         idp_client_secret: client-secret\n\
         cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
         cookie_domain: example.com\n\
         session_store: memory\n\
         policy:\n\
         \x20 - from: https://app.example.com\n    path: /healthz\n    allow_public_unauthenticated_access: true\n\
         \x20 - id: app\n    from: https://app.example.com\n    allowed_groups: [ops]\n\
         \x20 - id: tools\n    from: https://*.tools.example.com:8443\n    allow_any_authenticated_user: true\n",
    )
    .expect("write config");
    path
}

fn print(proxy: &str, config: &Path) -> String {
    run_ok(
        &format!("authgate print {proxy}"),
        Command::new(BIN)
            .args(["print", proxy, "--config"])
            .arg(config),
    )
}

/// Runs `nginx -t` on the printed include inside a minimal `http {}` that
/// holds the certificate; returns whether nginx accepted it and its output.
fn nginx_test(dir: &Path, include: &str) -> (bool, String) {
    let nginx = require_program("nginx", None);
    let ca = TestCa::new("print test CA");
    let (cert, key) = ca
        .issue(&["*.example.com", "*.tools.example.com"], &[])
        .write(dir, "server");
    std::fs::write(dir.join("authgate.conf"), include).expect("write include");
    let d = dir.display();
    let wrapper = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
         \x20   client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
         \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
         \x20   include {d}/authgate.conf;\n}}\n",
        cert = cert.display(),
        key = key.display(),
    );
    std::fs::write(dir.join("nginx.conf"), wrapper).expect("write wrapper");
    let output = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-t")
        .output()
        .expect("run nginx -t");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), text)
}

/// The printed nginx include passes `nginx -t`, with one server block per
/// route host and the login host's `/oauth2/` location; the same include
/// with one directive misspelt does not (so the check can fail).
#[test]
fn printed_nginx_config_passes_nginx_t() {
    let dir = temp_dir("print-nginx");
    let out = print("nginx", &write_config(dir.path()));
    assert_eq!(out.matches("server_name app.example.com;").count(), 1);
    assert_eq!(out.matches("server_name *.tools.example.com;").count(), 1);
    assert_eq!(out.matches("server_name auth.example.com;").count(), 1);
    assert!(out.contains("error_page 401 = $authgate_401_to;"));
    assert!(out.contains("location @api401 {"));
    assert!(out.contains("location /.authgate/ {"));
    let (ok, log) = nginx_test(dir.path(), &out);
    assert!(
        ok,
        "nginx -t refused the printed config:\n{log}\n---\n{out}"
    );
    assert!(log.contains("test is successful"), "{log}");
    assert!(!log.contains("[warn]"), "nginx -t warns:\n{log}");
    // What nginx routes is what authgate decides; the login host never
    // exposes /oauth2/auth; a catch-all refuses other names.
    assert!(!out.contains("$http_host"), "{out}");
    assert_eq!(
        out.matches("X-Original-URL $scheme://$host$authgate_port$request_uri;")
            .count(),
        4,
        "{out}"
    );
    assert!(!out.contains("location /oauth2/ {"), "{out}");
    assert!(out.contains("listen 443 ssl default_server;"), "{out}");
    assert!(out.contains("listen 8443 ssl default_server;"), "{out}");

    let broken = out.replacen("auth_request_set", "auth_request_sett", 1);
    let (ok, log) = nginx_test(dir.path(), &broken);
    assert!(!ok, "nginx -t accepted a misspelt directive");
    assert!(log.contains("auth_request_sett"), "{log}");
}

/// The printed Envoy bootstrap parses into Envoy's `Bootstrap` with unknown
/// fields refused, passes the shipped examples' checks (fail closed, login
/// host unguarded, app guarded), and has a virtual host per route host.
#[test]
fn printed_envoy_config_is_a_valid_bootstrap() {
    let dir = temp_dir("print-envoy");
    let out = print("envoy", &write_config(dir.path()));
    let bootstrap = parse_bootstrap("authgate print envoy", &out);
    let (hcm, ext_authz) = hcm_and_ext_authz(&bootstrap);
    check_common(&bootstrap, &hcm, &ext_authz);
    assert!(matches!(ext_authz.services, Some(Services::GrpcService(_))));
    let Some(RouteSpecifier::RouteConfig(routes)) = &hcm.route_specifier else {
        panic!("inline route_config expected")
    };
    let domains: Vec<Vec<String>> = routes
        .virtual_hosts
        .iter()
        .map(|v| v.domains.clone())
        .collect();
    assert_eq!(
        domains,
        [
            vec!["auth.example.com".to_owned()],
            vec!["app.example.com".to_owned()],
            vec![
                "*.tools.example.com".to_owned(),
                "*.tools.example.com:8443".to_owned()
            ],
        ]
    );
}

/// The printed nginx include, run: real nginx in front of an echo upstream
/// and a running authgate, attacked like the shipped example (`bypass`).
/// Absolute-form request lines and odd `Host` headers are decided about the
/// host nginx routes to, or refused; `/oauth2/auth` is not reachable on the
/// login host; alice reaches the app with each identity header once
/// (`X-Auth-Request-Jwt` included), and an anonymous program gets one
/// `WWW-Authenticate`.
#[tokio::test]
async fn printed_nginx_config_routes_what_authgate_decides() {
    let dir = temp_dir("print-nginx-run");
    let port = free_port();
    let https: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let upstream = EchoUpstream::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authgate = listener.local_addr().unwrap();
    let hello = format!("https://hello.{DOMAIN}:{port}");
    let app2 = format!("https://app2.{DOMAIN}:{port}");
    let login = format!("https://auth.{DOMAIN}:{port}");
    let mut root = route(0, &hello, None, &[]);
    root.path = Some("/".into());
    root.allow_any_authenticated_user = false;
    root.allow_public_unauthenticated_access = true;
    let routes = vec![
        root,
        route(1, &hello, None, &["admins"]),
        route(2, &app2, None, &["admins"]),
    ];
    let stack = Stack::start_on(listener, routes, |config| {
        config.authenticate_service_url = url::Url::parse(&login).unwrap();
        config.cookie.domain = Some(DOMAIN.to_owned());
        config.cookie.secure = true;
    })
    .await;
    let yaml = dir.path().join("authgate.yaml");
    std::fs::write(
        &yaml,
        format!(
            "authenticate_service_url: {login}\n\
             idp_provider_url: https://dex.example.com/dex\n\
             idp_client_id: authgate\n\
             idp_client_secret: client-secret\n\
             cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
             cookie_domain: {DOMAIN}\n\
             session_store: memory\n\
             address: {authgate}\n\
             policy:\n\
             \x20 - from: {hello}\n    path: /\n    allow_public_unauthenticated_access: true\n\
             \x20 - from: {hello}\n    allowed_groups: [admins]\n\
             \x20 - from: {app2}\n    allowed_groups: [admins]\n"
        ),
    )
    .unwrap();
    let include = run_ok(
        "authgate print nginx",
        Command::new(BIN)
            .args(["print", "nginx", "--upstream"])
            .arg(upstream.addr().to_string())
            .arg("--config")
            .arg(&yaml),
    );
    let ca = TestCa::new("printed nginx CA");
    let nginx = Nginx::start_conf(&ca, DOMAIN, https, |d| {
        let (cert, key) = ca.issue(&[&format!("*.{DOMAIN}")], &[]).write(d, "server");
        std::fs::write(d.join("authgate.conf"), &include).unwrap();
        let d = d.display();
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{}}\nhttp {{\n\
             \x20   access_log {d}/logs/access.log;\n\
             \x20   client_body_temp_path {d}/state/body;\n    proxy_temp_path {d}/state/proxy;\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   include {d}/authgate.conf;\n}}\n",
            cert = cert.display(),
            key = key.display(),
        )
    })
    .await;

    let json = ["Accept: application/json".to_owned()];
    let host = |h: &str| format!("{h}.{DOMAIN}:{port}");
    for (target, host) in [
        (format!("{app2}/"), host("hello")),
        (format!("https://APP2.Example.Test.:{port}/"), host("hello")),
        ("/admin".to_owned(), format!("hello.{DOMAIN}#")),
        ("/admin".to_owned(), format!("hello.{DOMAIN}?")),
        ("/admin".to_owned(), format!("x@hello.{DOMAIN}")),
        ("/admin".to_owned(), format!("nowhere.{DOMAIN}")),
    ] {
        let before = upstream.received().len();
        let (status, _) = nginx.raw_get("hello", &target, &host, &json).await;
        assert!(
            upstream.received().len() == before && matches!(status, 0 | 400 | 401 | 403),
            "GET {target} with Host {host}: {status}\n{}",
            nginx.error_log()
        );
    }
    let (status, body) = nginx
        .raw_get("hello", &format!("{hello}/"), &host("app2"), &json)
        .await;
    assert_eq!(status, 200, "{}", nginx.error_log());
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["host"], format!("hello.{DOMAIN}"));

    let client = nginx.http_client(&["app2"]);
    let alice = crate::bypass::login(&stack, &nginx, &client, &format!("{app2}/")).await;
    let response = client
        .get(format!("{login}/oauth2/auth"))
        .header("X-Original-URL", format!("{app2}/"))
        .header("Cookie", format!("{COOKIE}={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let response = client
        .get(format!("{app2}/x"))
        .header("Accept", "application/json")
        .header("Cookie", format!("{COOKIE}={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", nginx.error_log());
    let seen: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    for name in [
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-jwt",
    ] {
        assert_eq!(
            seen["headers"][name].as_array().map(Vec::len),
            Some(1),
            "{name}: {seen}"
        );
    }

    let response = client
        .get(format!("{app2}/x"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .count(),
        1
    );
}

/// The printed haproxy.cfg and SPOE configuration pass `haproxy -c` (and a
/// misspelt one does not); run by HAProxy with nothing at `spoe_address`,
/// a protected host and an unknown name answer 503: no answer, no entry.
#[tokio::test]
async fn printed_haproxy_config_passes_haproxy_c_and_fails_closed() {
    let dir = temp_dir("print-haproxy");
    let d = dir.path();
    let config = write_config(d);
    let out = print("haproxy", &config);
    let spoe = print("haproxy-spoe", &config);
    assert_eq!(
        spoe,
        std::fs::read_to_string(crate::support::haproxy::example("authgate-spoe.conf")).unwrap()
    );
    assert_eq!(out.matches("\nfrontend ").count(), 2, "443 and 8443: {out}");
    assert!(
        out.contains("-m str app.example.com app.example.com:443\n"),
        "{out}"
    );
    let ca = TestCa::new("authgate print haproxy CA");
    let issued = ca.issue(&["*.example.com", "*.tools.example.com"], &[]);
    std::fs::create_dir(d.join("certs")).unwrap();
    std::fs::write(
        d.join("certs/site.pem"),
        format!("{}{}", issued.cert_pem, issued.key_pem),
    )
    .unwrap();
    std::fs::write(d.join("authgate-spoe.conf"), &spoe).unwrap();
    let port = free_port();
    let local = out
        .replace("/etc/haproxy/certs/", &format!("{}/certs/", d.display()))
        .replace(
            "/etc/haproxy/authgate-spoe.conf",
            &format!("{}/authgate-spoe.conf", d.display()),
        )
        .replace("bind :443 ", &format!("bind 127.0.0.1:{port} "))
        .replace("bind :8443 ", &format!("bind 127.0.0.1:{} ", free_port()));
    let cfg = d.join("haproxy.cfg");
    let haproxy = require_program("haproxy", None);
    let check = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let output = Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), log)
    };
    let (ok, log) = check(&local.replacen("del-header", "del-headerr", 1));
    assert!(!ok, "haproxy -c accepted a misspelt keyword:\n{log}");
    let (ok, log) = check(&local);
    assert!(
        ok,
        "haproxy -c refused the printed config:\n{log}\n---\n{local}"
    );
    assert!(!log.contains("[WARNING]"), "haproxy -c warns:\n{log}");

    let mut cmd = Command::new(&haproxy);
    cmd.arg("-db").arg("-f").arg(&cfg);
    let mut child =
        crate::support::process::ChildGuard::spawn("haproxy", cmd, &d.join("haproxy.log"));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    child.wait_for_port(addr).await;
    let pem = ca.cert_pem();
    let json = ["Accept: application/json".to_owned()];
    let get = |sni: &'static str, host: &'static str| {
        let pem = pem.clone();
        let json = json.clone();
        async move {
            crate::support::tls::raw_get_tls(&pem, addr, sni, "/", host, &json)
                .await
                .0
        }
    };
    assert_eq!(
        get("app.example.com", "app.example.com").await,
        503,
        "{}",
        child.log()
    );
    assert_eq!(
        get("app.example.com", "nowhere.example.com").await,
        503,
        "{}",
        child.log()
    );
}
