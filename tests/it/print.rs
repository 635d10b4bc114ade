//! `authgate print nginx|envoy` run as a user runs it: the nginx output is
//! accepted by the real nginx (`nginx -t`), the Envoy output parses into
//! Envoy's `Bootstrap` with the checks the shipped examples pass.

use std::path::Path;
use std::process::Command;

use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ext_authz::Services;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;

use crate::envoy_examples::{check_common, hcm_and_ext_authz, parse_bootstrap};
use crate::support::process::{require_program, run_ok};
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
