//! nginx configured the way ingress-nginx configures itself from Ingress
//! objects: each host a `server`, each rule path a `location`, and the
//! external-auth annotations as the controller renders them (its
//! `rootfs/etc/nginx/template/nginx.tmpl` and
//! `internal/ingress/controller/template/template.go`, controller-v1.15):
//! - `auth-url`: an internal location `auth_request` calls, sending no body,
//!   `X-Original-URL: $scheme://$http_host$request_uri`, `X-Original-Method`,
//!   `X-Auth-Request-Redirect`, `X-Sent-From`, `X-Real-IP`,
//!   `X-Forwarded-For`, `X-Forwarded-Proto` cleared, `Host` = the auth-url's
//!   host, every client header passed on; `proxy_pass` to the auth-url as
//!   written (path and query);
//! - `auth-signin`: `error_page 401` to a named location that answers 302
//!   to it (`rd=` added only when the URL has none);
//! - `auth-response-headers`: `auth_request_set` + `proxy_set_header` per
//!   name (replacing what the client sent); the auth answer's `Set-Cookie`
//!   always passed on.
//!
//! Not modelled: the Lua balancer and its DNS (names are looked up in the
//! test's [`ClusterDns`] instead), and `set_escape_uri` (the set-misc module,
//! absent from Debian's nginx): `$escaped_request_uri` is `$request_uri`
//! here, the same for the request URIs the tests send (no `&`, `#`, `%`
//! or `+`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;
use url::Url;

const ANNOTATION: &str = "nginx.ingress.kubernetes.io/";

/// The cluster's DNS as the test stands it in: `host:port` (a Service's
/// `<name>.<namespace>.svc.cluster.local:<port>`, or an ExternalName's
/// target and port) → the loopback address of what answers there.
pub struct ClusterDns {
    pub namespace: String,
    pub names: HashMap<String, SocketAddr>,
}

impl ClusterDns {
    fn resolve(&self, host: &str, port: u64) -> SocketAddr {
        let key = format!("{host}:{port}");
        *self.names.get(&key).unwrap_or_else(|| {
            panic!(
                "{key} is not in the test's cluster DNS ({:?})",
                self.names.keys()
            )
        })
    }

    /// Where an Ingress backend (`service.name`, `service.port.number` or
    /// `.name`) answers, through the Service among `docs`.
    fn backend(&self, docs: &[Value], backend: &Value) -> SocketAddr {
        let name = backend["service"]["name"].as_str().expect("backend name");
        let service = docs
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the Ingress names Service {name}, which is not rendered"));
        let wanted = &backend["service"]["port"];
        let port = service["spec"]["ports"]
            .as_array()
            .expect("Service ports")
            .iter()
            .find(|p| p["port"] == wanted["number"] || p["name"] == wanted["name"])
            .unwrap_or_else(|| panic!("Service {name} has no port {wanted}"));
        if service["spec"]["type"] == "ExternalName" {
            // ingress-nginx connects to the ExternalName at targetPort.
            let target = service["spec"]["externalName"].as_str().expect("name");
            self.resolve(target, port["targetPort"].as_u64().expect("targetPort"))
        } else {
            let host = format!("{name}.{}.svc.cluster.local", self.namespace);
            self.resolve(&host, port["port"].as_u64().expect("port"))
        }
    }
}

/// Where nginx listens and keeps its files.
pub struct Layout {
    /// The TLS listen address of every virtual host.
    pub https: SocketAddr,
    /// Certificate and key for every host of the Ingresses.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// nginx's prefix, with `logs/` and `state/`; the pid file goes here.
    pub dir: PathBuf,
}

/// One rule path of one Ingress.
struct Path<'a> {
    path: &'a str,
    exact: bool,
    backend: SocketAddr,
    annotations: &'a Value,
}

/// nginx.conf for the Ingresses among `docs`, listening as `layout` says.
pub fn conf(docs: &[Value], dns: &ClusterDns, layout: &Layout) -> String {
    let mut hosts: Vec<(&str, Vec<Path>)> = Vec::new();
    for ingress in docs.iter().filter(|d| d["kind"] == "Ingress") {
        let annotations = &ingress["metadata"]["annotations"];
        for rule in ingress["spec"]["rules"].as_array().expect("rules") {
            let host = rule["host"].as_str().expect("rule host");
            let at = match hosts.iter().position(|(h, _)| *h == host) {
                Some(at) => at,
                None => {
                    hosts.push((host, Vec::new()));
                    hosts.len() - 1
                }
            };
            for p in rule["http"]["paths"].as_array().expect("paths") {
                hosts[at].1.push(Path {
                    path: p["path"].as_str().expect("path"),
                    exact: p["pathType"] == "Exact",
                    backend: dns.backend(docs, &p["backend"]),
                    annotations,
                });
            }
        }
    }
    let d = layout.dir.display();
    let mut out = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log notice;\n\
         events {{ worker_connections 256; }}\nhttp {{\n\
         \x20   access_log {d}/logs/access.log;\n\
         \x20   client_body_temp_path {d}/state/body;\n    proxy_temp_path {d}/state/proxy;\n\
         \x20   fastcgi_temp_path {d}/state/fastcgi;\n    uwsgi_temp_path {d}/state/uwsgi;\n\
         \x20   scgi_temp_path {d}/state/scgi;\n\
         \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
         \x20   # The controller's default server: 404 for hosts no Ingress has.\n\
         \x20   server {{ listen {https} ssl default_server; return 404; }}\n",
        cert = layout.cert.display(),
        key = layout.key.display(),
        https = layout.https,
    );
    let mut n = 0;
    for (host, paths) in &hosts {
        writeln!(
            out,
            "    server {{\n        listen {} ssl;\n        server_name {host};",
            layout.https
        )
        .unwrap();
        for p in paths {
            n += 1;
            out.push_str(&location(p, n, dns));
        }
        if !paths.iter().any(|p| p.path == "/" && !p.exact) {
            // Paths no rule has go to the controller's default backend.
            out.push_str("        location / { return 404; }\n");
        }
        out.push_str("    }\n");
    }
    out.push_str("}\n");
    out
}

fn annotation<'a>(annotations: &'a Value, name: &str) -> Option<&'a str> {
    annotations[format!("{ANNOTATION}{name}")].as_str()
}

/// The `location`(s) of one path, with its auth location and sign-in
/// redirect when the Ingress has `auth-url`. A Prefix path `/x` is
/// `location /x/` and `location = /x`, as the controller writes it.
fn location(p: &Path, n: usize, dns: &ClusterDns) -> String {
    let buffer = annotation(p.annotations, "proxy-buffer-size").unwrap_or("4k");
    let scheme = match annotation(p.annotations, "backend-protocol") {
        Some("HTTPS") => "https",
        _ => "http",
    };
    let mut out = String::new();
    let mut body = String::new();
    if let Some(auth_url) = annotation(p.annotations, "auth-url") {
        let url = Url::parse(auth_url).expect("auth-url is a URL");
        let host = url.host_str().expect("auth-url host");
        let addr = dns.resolve(host, u64::from(url.port_or_known_default().expect("port")));
        let mut target = format!("http://{addr}{}", url.path());
        if let Some(query) = url.query() {
            write!(target, "?{query}").unwrap();
        }
        write!(
            out,
            "        location = /_external-auth-{n} {{\n            internal;\n\
             \x20           proxy_pass_request_body off;\n            proxy_set_header Content-Length \"\";\n\
             \x20           proxy_set_header X-Forwarded-Proto \"\";\n            proxy_set_header X-Request-ID $request_id;\n\
             \x20           proxy_set_header Host {host};\n\
             \x20           proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n\
             \x20           proxy_set_header X-Original-Method $request_method;\n\
             \x20           proxy_set_header X-Sent-From \"nginx-ingress-controller\";\n\
             \x20           proxy_set_header X-Real-IP $remote_addr;\n            proxy_set_header X-Forwarded-For $remote_addr;\n\
             \x20           proxy_set_header X-Auth-Request-Redirect $request_uri;\n\
             \x20           proxy_buffer_size {buffer};\n            proxy_buffers 4 {buffer};\n\
             \x20           proxy_http_version 1.1;\n            proxy_pass_request_headers on;\n\
             \x20           set $target {target};\n            proxy_pass $target;\n        }}\n"
        )
        .unwrap();
        write!(
            body,
            "            set $escaped_request_uri $request_uri;\n\
             \x20           auth_request /_external-auth-{n};\n\
             \x20           auth_request_set $auth_cookie $upstream_http_set_cookie;\n\
             \x20           add_header Set-Cookie $auth_cookie;\n"
        )
        .unwrap();
        let headers = annotation(p.annotations, "auth-response-headers").unwrap_or_default();
        for (i, name) in headers
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .enumerate()
        {
            let var = name.to_ascii_lowercase().replace('-', "_");
            write!(
                body,
                "            auth_request_set $authHeader{i} $upstream_http_{var};\n\
                 \x20           proxy_set_header '{name}' $authHeader{i};\n"
            )
            .unwrap();
        }
        if let Some(signin) = annotation(p.annotations, "auth-signin") {
            write!(
                out,
                "        location @signin_{n} {{\n            internal;\n\
                 \x20           add_header Set-Cookie $auth_cookie;\n            return 302 {};\n        }}\n",
                sign_in_url(signin)
            )
            .unwrap();
            writeln!(body, "            error_page 401 = @signin_{n};").unwrap();
        }
    }
    write!(
        body,
        "            proxy_set_header Host $http_host;\n            proxy_set_header X-Request-ID $request_id;\n\
         \x20           proxy_set_header X-Real-IP $remote_addr;\n            proxy_set_header X-Forwarded-For $remote_addr;\n\
         \x20           proxy_set_header X-Forwarded-Host $http_host;\n            proxy_set_header X-Forwarded-Proto $scheme;\n\
         \x20           proxy_set_header X-Scheme $scheme;\n            proxy_http_version 1.1;\n\
         \x20           proxy_buffer_size {buffer};\n            proxy_buffers 4 {buffer};\n\
         \x20           proxy_pass {scheme}://{};\n",
        p.backend
    )
    .unwrap();
    let matches: Vec<String> = if p.exact {
        vec![format!("= {}", p.path)]
    } else if p.path.ends_with('/') {
        vec![p.path.to_owned()]
    } else {
        vec![format!("{}/", p.path), format!("= {}", p.path)]
    };
    for m in matches {
        write!(out, "        location {m} {{\n{body}        }}\n").unwrap();
    }
    out
}

/// The controller's `buildAuthSignURL`: `rd=<this URL>` appended unless the
/// sign-in URL already has an `rd`.
fn sign_in_url(signin: &str) -> String {
    let rd = "rd=$scheme://$http_host$escaped_request_uri";
    match signin.split_once('?') {
        None => format!("{signin}?{rd}"),
        Some((_, query)) if query.split('&').any(|kv| kv.starts_with("rd=")) => signin.to_owned(),
        Some(_) => format!("{signin}&{rd}"),
    }
}

/// nginx rendered from `example` (`examples/nginx/ingress-nginx.yaml`'s
/// text, maybe edited) on a free port, with the cluster stood in: the
/// `hello` Service is `upstream`, the `authgate` Service is `authgate`;
/// certificates from `ca` for `*.example.com` and `*.example.org`.
pub async fn start_example(
    example: &str,
    authgate: SocketAddr,
    upstream: SocketAddr,
    ca: &super::tls::TestCa,
) -> super::nginx::Nginx {
    // The Services the example's Ingresses name, standing in for the
    // cluster's: the app and authgate.
    let service = |name: &str, target: &str, port: u16| {
        serde_json::json!({
            "kind": "Service",
            "metadata": { "name": name },
            "spec": {
                "type": "ExternalName",
                "externalName": target,
                "ports": [{ "port": port, "targetPort": port }],
            },
        })
    };
    let dns = ClusterDns {
        namespace: "authgate".to_owned(),
        names: HashMap::from([
            ("app.test:80".to_owned(), upstream),
            ("authgate.test:4180".to_owned(), authgate),
            (
                "authgate.authgate.svc.cluster.local:4180".to_owned(),
                authgate,
            ),
        ]),
    };
    let mut docs = crate::packaging::documents(example);
    docs.push(service("hello", "app.test", 80));
    docs.push(service("authgate", "authgate.test", 4180));
    let https: SocketAddr = ([127, 0, 0, 1], super::process::free_port()).into();
    super::nginx::Nginx::start_conf(ca, "example.com", https, |dir| {
        let (cert, key) = ca
            .issue(&["*.example.com", "*.example.org"], &[])
            .write(dir, "nginx");
        conf(
            &docs,
            &dns,
            &Layout {
                https,
                cert,
                key,
                dir: dir.to_owned(),
            },
        )
    })
    .await
}
