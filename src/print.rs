//! `authgate print nginx|envoy|haproxy`: the proxy configuration for the routes in
//! `authgate.yaml`, so nobody hand-copies the `auth_request` wiring.
//!
//! Both outputs protect every host that has a route, leave the login host
//! (`authenticate_service_url`) unguarded, and point the auth checks at
//! authgate's listeners. What authgate cannot know — the app behind each
//! host and the TLS certificates — is given on the command line
//! (`--upstream`) or left to the surrounding configuration, and said so in
//! the output's header comment.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use url::Url;

use crate::config::Config;
use crate::identity::IDENTITY_HEADERS;

/// Which proxy to print for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proxy {
    /// An nginx `http {}` include: one server block per route host.
    Nginx,
    /// An Envoy bootstrap: ext_authz over gRPC, a virtual host per route host.
    Envoy,
    /// A haproxy.cfg: SPOE to `spoe_address`, one frontend per port.
    Haproxy,
    /// The SPOE configuration the haproxy.cfg's `filter spoe` reads.
    HaproxySpoe,
}

/// `authgate print`'s arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct PrintArgs {
    /// The proxy to generate configuration for.
    #[arg(value_enum)]
    pub proxy: Proxy,
    /// Where the protected apps listen (one upstream for every route host;
    /// edit the output for more).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub upstream: String,
    /// The host (name or IP) the proxy reaches authgate at. Default: the
    /// host of `address`, or 127.0.0.1 when that is a wildcard address.
    #[arg(long)]
    pub authgate_host: Option<String>,
}

/// One server block / virtual host: the routes' scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Site {
    https: bool,
    /// `hello.example.com`, `*.example.com` or `*`.
    host: String,
    port: u16,
}

impl Site {
    fn of(url: &Url) -> Option<Site> {
        Some(Site {
            https: url.scheme() == "https",
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }

    fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }
}

/// The distinct route hosts in file order of first appearance, each with
/// the route names that use it (for comments), and the login host.
fn sites(config: &Config) -> (Vec<(Site, Vec<String>)>, Option<Site>) {
    let mut order: Vec<Site> = Vec::new();
    let mut names: BTreeMap<Site, Vec<String>> = BTreeMap::new();
    for route in config.routes.iter().map(|r| r.spec()) {
        let Some(site) = Site::of(&route.from) else {
            continue;
        };
        let name = route
            .id
            .clone()
            .unwrap_or_else(|| format!("policy[{}]", route.index));
        if !names.contains_key(&site) {
            order.push(site.clone());
        }
        names.entry(site).or_default().push(name);
    }
    let routes = order
        .into_iter()
        .map(|site| {
            let names = names.remove(&site).unwrap_or_default();
            (site, names)
        })
        .collect();
    (routes, Site::of(&config.authenticate_service_url))
}

/// `host:port` the proxy dials for `listener`.
fn dial(listener: SocketAddr, host: Option<&str>) -> String {
    match host {
        Some(host) => format!("{host}:{}", listener.port()),
        None if listener.ip().is_unspecified() => {
            let loopback: IpAddr = if listener.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(loopback, listener.port()).to_string()
        }
        None => listener.to_string(),
    }
}

/// Prints the configuration for `args.proxy`.
pub fn render(config: &Config, args: &PrintArgs) -> String {
    match args.proxy {
        Proxy::Nginx => nginx(config, args),
        Proxy::Envoy => envoy(config, args),
        Proxy::Haproxy => haproxy(config, args),
        Proxy::HaproxySpoe => HAPROXY_SPOE.to_owned(),
    }
}

/// Who gets the sign-in redirect and who the 401 (the example's `map`s,
/// http context): programs — no `text/html` in `Accept`, XHR, gRPC, a
/// refused Bearer token — get authgate's 401, browsers the login.
const NGINX_CLIENT_MAPS: &str = r#"map $http_accept $authgate_wants_html {
    default                 0;
    "~*text/html"           1;
}
map $http_x_requested_with $authgate_xhr {
    default                 0;
    "~*^xmlhttprequest$"    1;
}
map $content_type $authgate_grpc {
    default                 0;
    "~*^application/grpc"   1;
}
map "$authgate_wants_html$authgate_xhr$authgate_grpc:$http_authorization" $authgate_401_to {
    default                 @signin;    # a browser: go and sign in
    "~^0"                   @api401;    # no HTML wanted
    "~^.1"                  @api401;    # XHR
    "~^..1"                 @api401;    # gRPC, gRPC-Web
    "~*^...:bearer "        @api401;    # its Bearer token was refused
}
"#;

/// The nginx include (http context). `write!` into a `String` cannot fail.
pub fn nginx(config: &Config, args: &PrintArgs) -> String {
    let authgate = dial(config.address, args.authgate_host.as_deref());
    let (routes, login) = sites(config);
    let mut out = String::new();
    let _ = write!(
        out,
        "# Generated by `authgate print nginx` from the routes in authgate.yaml.\n\
         # Include it inside nginx's `http {{}}` block. Set ssl_certificate and\n\
         # ssl_certificate_key there (or in each server) for the https hosts,\n\
         # and check the upstream below: authgate does not know your apps.\n\
         # authgate decides by host and path, so each host needs one `location /`.\n\
         \n\
         # Room for authgate's response headers (many groups make a long\n\
         # X-Auth-Request-Groups); too small a buffer turns the auth\n\
         # subrequest into a 502, which nginx answers with 500.\n\
         proxy_buffer_size 16k;\n\
         proxy_buffers 8 16k;\n\
         # Room for the identity headers set below (nginx -t warns otherwise).\n\
         proxy_headers_hash_max_size 1024;\n\
         proxy_headers_hash_bucket_size 128;\n\
         \n\
         # The port in the URL authgate decides about: the one nginx received\n\
         # the request on, unless it is the scheme's default.\n\
         map \"$scheme:$server_port\" $authgate_port {{\n    default     \":$server_port\";\n    \"http:80\"   \"\";\n    \"https:443\" \"\";\n}}\n\
         \n\
         # No session: browsers are sent to sign in, programs get the 401.\n\
         {NGINX_CLIENT_MAPS}\
         \n\
         upstream authgate {{\n    server {authgate};\n    keepalive 16;\n}}\n\
         \n\
         upstream authgate_app {{\n    server {upstream};\n    keepalive 16;\n}}\n",
        upstream = args.upstream,
    );
    for (site, names) in &routes {
        if login.as_ref() == Some(site) {
            // The login host must stay reachable without a session.
            let _ = write!(
                out,
                "\n# {}: also the login host (authenticate_service_url); served below.\n",
                site.host
            );
            continue;
        }
        nginx_protected(&mut out, site, names);
    }
    if let Some(login) = &login {
        nginx_login(&mut out, login);
    }
    let served: Vec<&Site> = routes.iter().map(|(site, _)| site).chain(&login).collect();
    nginx_catch_all(&mut out, &served);
    out
}

fn nginx_listen(site: &Site) -> String {
    let ssl = if site.https { " ssl" } else { "" };
    // A `*` route serves every name: its server block is the catch-all.
    let default = if site.host == "*" {
        " default_server"
    } else {
        ""
    };
    format!(
        "    listen {}{ssl}{default};\n    listen [::]:{}{ssl}{default};\n",
        site.port, site.port
    )
}

fn nginx_server_name(site: &Site) -> &str {
    if site.host == "*" { "_" } else { &site.host }
}

/// The headers that describe the original request to authgate, from what
/// nginx routes on (`$host`: the absolute request line's host before the
/// `Host` header, lower case); the `X-Forwarded-*` ones are cleared so a
/// client cannot choose them.
const NGINX_ORIGINAL: &str = "\
        proxy_set_header X-Original-URL $scheme://$host$authgate_port$request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Forwarded-Proto \"\";
        proxy_set_header X-Forwarded-Host \"\";
        proxy_set_header X-Forwarded-Uri \"\";
        proxy_set_header X-Forwarded-Method \"\";
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
";

/// A protected server block; `{HEAD}`, `{IDENTITY}` and `{ORIGINAL}` are
/// filled in by [`nginx_protected`].
const NGINX_PROTECTED: &str = r#"
{HEAD}
    location / {
        auth_request /oauth2/auth;
        # No session: 401 with `Location: <sign-in URL>` (browsers go
        # there, programs get the 401 with authgate's WWW-Authenticate,
        # which auth_request copies); signed in but refused: 403, shown by
        # authgate's page.
        auth_request_set $signin $upstream_http_location;
        error_page 401 = $authgate_401_to;
        error_page 403 = @forbidden;

        # The identity authgate vouches for; replaces what the client sent
        # (an empty value drops the header).
{IDENTITY}        proxy_set_header X-Forwarded-User "";
        proxy_set_header X-Forwarded-Email "";
        proxy_set_header X-Forwarded-Preferred-Username "";
        proxy_set_header X-Forwarded-Groups "";

        # authgate may renew the session cookie while answering.
        auth_request_set $auth_cookie $upstream_http_set_cookie;
        add_header Set-Cookie $auth_cookie;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_pass http://authgate_app;
    }

    # Conditions of nginx's own for this host (oauth2-proxy's
    # allowed_groups, allowed_emails, allowed_email_domains), required
    # besides its routes: `proxy_pass http://authgate/oauth2/auth?allowed_groups=devops;`.
    location = /oauth2/auth {
        internal;
        proxy_pass http://authgate;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
{ORIGINAL}        proxy_connect_timeout 2s;
        proxy_read_timeout 5s;
    }

    # Sign-in start and session handoff of hosts outside cookie_domain
    # (harmless inside it): to authgate, unguarded, with this host.
    location /.authgate/ {
        proxy_pass http://authgate;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host "";
        proxy_set_header X-Forwarded-For $remote_addr;
    }

    location @signin {
        return 302 $signin;
    }

    location @api401 {
        add_header Cache-Control no-store always;
        default_type application/json;
        return 401 '{"error":"unauthorized"}';
    }

    location @forbidden {
        rewrite ^ /oauth2/forbidden break;
        proxy_pass http://authgate;
        proxy_method GET;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
{ORIGINAL}    }
}
"#;

fn nginx_protected(out: &mut String, site: &Site, names: &[String]) {
    let head = format!(
        "# {scheme}://{host}:{port} — routes: {routes}\nserver {{\n{listen}    server_name {name};",
        scheme = if site.https { "https" } else { "http" },
        host = site.host,
        port = site.port,
        routes = names.join(", "),
        listen = nginx_listen(site),
        name = nginx_server_name(site),
    );
    let mut identity = String::new();
    for header in IDENTITY_HEADERS.iter().map(http::HeaderName::as_str) {
        let under = header.replace('-', "_");
        let var = under.trim_start_matches("x_auth_request_");
        let _ = writeln!(
            identity,
            "        auth_request_set $auth_{var} $upstream_http_{under};\n        proxy_set_header {name} $auth_{var};",
            name = canonical_case(header),
        );
    }
    out.push_str(
        &NGINX_PROTECTED
            .replace("{HEAD}", &head)
            .replace("{IDENTITY}", &identity)
            .replace("{ORIGINAL}", NGINX_ORIGINAL),
    );
}

/// The login host: only what a browser signing in needs. Never
/// `/oauth2/auth` (anyone could ask about any URL and read identity
/// headers back) nor `/metrics`.
const NGINX_LOGIN: &str = r#"
# The login host (authenticate_service_url): sign-in, the provider's
# callback, sign-out, userinfo, the status page and the assertion's keys.
# Never behind auth_request, and nothing else of authgate's is exposed here.
# authgate believes X-Forwarded-* only from `trusted_proxies`: list nginx there.
server {
{LISTEN}    server_name {NAME};

    location ~ ^/oauth2/(start|callback|sign_out|userinfo)$ {
{TO_AUTHGATE}    }

    location ~ ^/(|\.well-known/authgate/jwks\.json)$ {
{TO_AUTHGATE}    }

    location / {
        return 404;
    }
}
"#;

fn nginx_login(out: &mut String, site: &Site) {
    let to_authgate = "        proxy_pass http://authgate;\n        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        proxy_set_header Host $host;\n        proxy_set_header X-Forwarded-Proto $scheme;\n        proxy_set_header X-Forwarded-Host $host;\n        proxy_set_header X-Forwarded-For $remote_addr;\n";
    out.push_str(
        &NGINX_LOGIN
            .replace("{LISTEN}", &nginx_listen(site))
            .replace("{NAME}", nginx_server_name(site))
            .replace("{TO_AUTHGATE}", to_authgate),
    );
}

/// One catch-all per port the sites listen on: a request for a name no
/// server block serves (an unknown `Host`, or one carrying a port, `#`,
/// `?` or userinfo) is closed without an answer, never routed to the first
/// server block and decided about as another host.
fn nginx_catch_all(out: &mut String, sites: &[&Site]) {
    let mut ports: Vec<(u16, bool)> = sites
        .iter()
        .filter(|site| !sites.iter().any(|s| s.host == "*" && s.port == site.port))
        .map(|s| (s.port, s.https))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    for (port, https) in ports {
        let (ssl, reject) = if https {
            (" ssl", "    ssl_reject_handshake on;\n")
        } else {
            ("", "")
        };
        let _ = write!(
            out,
            "\n# Any other name on port {port}: refused.\nserver {{\n    listen {port}{ssl} default_server;\n    listen [::]:{port}{ssl} default_server;\n{reject}    return 444;\n}}\n"
        );
    }
}

/// `x-auth-request-user` → `X-Auth-Request-User`.
fn canonical_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Envoy's `domains` for a site: the host, and `host:port` when the port
/// is not the scheme's default (browsers send it in `Host` then).
fn envoy_domains(site: &Site) -> String {
    let mut domains = vec![format!("\"{}\"", site.host)];
    if !site.default_port() && site.host != "*" {
        domains.push(format!("\"{}:{}\"", site.host, site.port));
    }
    domains.join(", ")
}

/// `host` and `port` of a `host:port` string (an IPv6 literal in brackets).
fn split_host_port(address: &str) -> (String, String) {
    match address.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port.to_owned(),
        ),
        None => (address.to_owned(), "80".to_owned()),
    }
}

/// The login host's routes in Envoy: only what a browser signing in
/// needs; never `/oauth2/auth` nor `/metrics`.
const ENVOY_LOGIN_ROUTES: &str = r#"              routes:
              # Only what a browser signing in needs (sign-in, callback,
              # sign-out, userinfo, the status page, the assertion's keys):
              # never /oauth2/auth, which would answer anyone's question
              # about any URL with identity headers, nor /metrics.
              - match: { safe_regex: { regex: "/oauth2/(start|callback|sign_out|userinfo)|/|/\\.well-known/authgate/jwks\\.json" } }
                route: { cluster: authgate_http }
              - match: { prefix: "/" }
                direct_response: { status: 404 }
"#;

/// The Envoy bootstrap (YAML), shaped like `examples/envoy/envoy.yaml`.
pub fn envoy(config: &Config, args: &PrintArgs) -> String {
    let (routes, login) = sites(config);
    let (grpc_host, grpc_port) =
        split_host_port(&dial(config.grpc_address, args.authgate_host.as_deref()));
    let (http_host, http_port) =
        split_host_port(&dial(config.address, args.authgate_host.as_deref()));
    let (app_host, app_port) = split_host_port(&args.upstream);
    let mut hosts = String::new();
    if let Some(login) = &login {
        let _ = write!(
            hosts,
            "            # The login host (authenticate_service_url): never behind ext_authz.\n            - name: login\n              domains: [{domains}]\n{ENVOY_LOGIN_ROUTES}              typed_per_filter_config:\n                envoy.filters.http.ext_authz:\n                  \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                  disabled: true\n",
            domains = envoy_domains(login),
        );
    }
    for (i, (site, names)) in routes.iter().enumerate() {
        if login.as_ref() == Some(site) {
            continue;
        }
        let _ = write!(
            hosts,
            "            # routes: {names}\n            - name: app{i}\n              domains: [{domains}]\n              routes:\n              # Sign-in start and session handoff of hosts outside\n              # cookie_domain (harmless inside it): unguarded.\n              - match: {{ prefix: \"/.authgate/\" }}\n                route: {{ cluster: authgate_http }}\n                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    disabled: true\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: app }}\n",
            names = names.join(", "),
            domains = envoy_domains(site),
        );
    }
    format!(
        "# Generated by `authgate print envoy` from the routes in authgate.yaml.\n\
# Envoy asks authgate over gRPC (ext_authz v3) before every request to a\n\
# route host; the login host is proxied to authgate unguarded. TLS is left\n\
# out: add a transport_socket to the listener, or terminate TLS in front.\n\
# Check the `app` cluster: authgate does not know your apps.\n\
static_resources:\n\
\x20 listeners:\n\
\x20 - name: ingress\n\
\x20   address:\n\
\x20     socket_address: {{ address: 0.0.0.0, port_value: 8443 }}\n\
\x20   filter_chains:\n\
\x20   - filters:\n\
\x20     - name: envoy.filters.network.http_connection_manager\n\
\x20       typed_config:\n\
\x20         \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n\
\x20         stat_prefix: ingress\n\
\x20         use_remote_address: true\n\
\x20         route_config:\n\
\x20           name: ingress\n\
\x20           virtual_hosts:\n\
{hosts}\
\x20         http_filters:\n\
\x20         - name: envoy.filters.http.ext_authz\n\
\x20           typed_config:\n\
\x20             \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz\n\
\x20             transport_api_version: V3\n\
\x20             # Fail closed: an unreachable authgate means 403, never open.\n\
\x20             failure_mode_allow: false\n\
\x20             grpc_service:\n\
\x20               envoy_grpc: {{ cluster_name: authgate_grpc }}\n\
\x20               timeout: 0.5s\n\
\x20         - name: envoy.filters.http.router\n\
\x20           typed_config:\n\
\x20             \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n\
\x20 clusters:\n\
{grpc_cluster}\
{http_cluster}\
{app_cluster}",
        grpc_cluster = envoy_cluster("authgate_grpc", &grpc_host, &grpc_port, true),
        http_cluster = envoy_cluster("authgate_http", &http_host, &http_port, false),
        app_cluster = envoy_cluster("app", &app_host, &app_port, false),
    )
}

fn envoy_cluster(name: &str, host: &str, port: &str, http2: bool) -> String {
    let options = if http2 {
        "    # gRPC needs HTTP/2.\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config:\n          http2_protocol_options: {}\n"
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    type: STRICT_DNS\n    connect_timeout: 1s\n{options}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: \"{host}\", port_value: {port} }}\n"
    )
}

/// The SPOE configuration: the same for every deployment.
pub const HAPROXY_SPOE: &str = include_str!("../examples/haproxy/authgate-spoe.conf");

/// Where `print haproxy` expects the SPOE configuration and the
/// certificates (a directory of PEMs, certificate and key in each).
const HAPROXY_SPOE_PATH: &str = "/etc/haproxy/authgate-spoe.conf";
const HAPROXY_CERTS: &str = "/etc/haproxy/certs/";

/// The rules that enforce authgate's answer, from `-- authgate: begin` to
/// `-- authgate: end` of `examples/haproxy/haproxy.cfg`; `claims` are the
/// routes' `jwt_claims_headers` names (lower case) besides the identity
/// headers. Needs the ACLs `login_host`, `login_path` and `authgate_path`.
pub fn haproxy_rules(claims: &[&str]) -> String {
    let identity = IDENTITY_HEADERS;
    let names: Vec<&str> = identity
        .iter()
        .map(http::HeaderName::as_str)
        .chain(claims.iter().copied())
        .collect();
    let mut out = String::from(
        "    # --- authgate: begin (the same in `authgate print haproxy`) ---\n\
         \x20   # A client's copies of the identity headers, in every spelling (`_` for\n\
         \x20   # `-`, which PHP, CGI and WSGI apps read as the same name), are removed.\n",
    );
    for name in &names {
        let mut pattern = String::new();
        for c in name.chars() {
            match c {
                '-' | '_' => pattern.push_str("[-_]"),
                c if c.is_ascii_alphanumeric() => pattern.push(c),
                c => {
                    pattern.push('\\');
                    pattern.push(c);
                }
            }
        }
        let _ = writeln!(out, "    http-request del-header ^{pattern}$ -m reg");
    }
    out.push_str(HAPROXY_ENFORCE);
    for name in &names {
        let var = format!(
            "txn.{}.{}",
            crate::spoe::VAR_PREFIX,
            crate::spoe::header_var(name)
        );
        let _ = writeln!(
            out,
            "    http-request set-header {} %[var({var})] if !{{ var(txn.open) -m found }} {{ var({var}) -m found }}",
            canonical_case(name),
        );
    }
    out.push_str(
        "    # A session cookie authgate re-issued under a new cookie_secret.\n\
         \x20   http-response add-header Set-Cookie %[var(txn.authgate.set_cookie)] if { var(txn.authgate.set_cookie) -m found }\n\
         \x20   # --- authgate: end ---\n",
    );
    out
}

/// The answers: redirect, 401, 403, and 503 for anything but 200.
const HAPROXY_ENFORCE: &str = r#"    # Everything but the login host's pages and /.authgate/ is guarded.
    http-request set-var(txn.open) bool(1) if login_host login_path || authgate_path
    http-request return status 302 hdr Location %[var(txn.authgate.location)] hdr Cache-Control no-store if !{ var(txn.open) -m found } { var(txn.authgate.status) -m int 302 }
    http-request return status 303 hdr Location %[var(txn.authgate.location)] hdr Cache-Control no-store if !{ var(txn.open) -m found } { var(txn.authgate.status) -m int 303 }
    http-request return status 401 content-type text/plain lf-string "%[var(txn.authgate.body)]\n" hdr WWW-Authenticate %[var(txn.authgate.www_authenticate)] hdr Cache-Control no-store if !{ var(txn.open) -m found } { var(txn.authgate.status) -m int 401 }
    http-request return status 403 content-type text/plain lf-string "%[var(txn.authgate.body)]\n" hdr Cache-Control no-store if !{ var(txn.open) -m found } { var(txn.authgate.status) -m int 403 }
    # 503, no answer at all, or anything else: refused.
    http-request return status 503 content-type text/plain string "authorization temporarily unavailable\n" hdr Cache-Control no-store if !{ var(txn.open) -m found } !{ var(txn.authgate.status) -m int 200 }
    # Allowed: the identity authgate vouches for, only the headers it set.
"#;

/// The HAProxy ACL matching `site`'s `Host` (lower case, whole): the name,
/// and `name:port` (the name alone too on the scheme's default port).
fn haproxy_host_acl(acl: &str, site: &Site) -> String {
    if site.host == "*" {
        return format!("    acl {acl} always_true\n");
    }
    if let Some(suffix) = site.host.strip_prefix("*.") {
        let optional = if site.default_port() { "?" } else { "" };
        return format!(
            "    acl {acl} req.fhdr(host),lower -m reg ^[a-z0-9-]+\\.{}(:{}){optional}$\n",
            suffix.replace('.', "\\."),
            site.port
        );
    }
    let bare = if site.default_port() {
        format!(" {}", site.host)
    } else {
        String::new()
    };
    format!(
        "    acl {acl} req.fhdr(host),lower -m str{bare} {}:{}\n",
        site.host, site.port
    )
}

/// The haproxy.cfg, shaped like `examples/haproxy/haproxy.cfg`: one
/// frontend per port the sites listen on.
pub fn haproxy(config: &Config, args: &PrintArgs) -> String {
    let (routes, login) = sites(config);
    let authgate = dial(config.address, args.authgate_host.as_deref());
    let spoe = match config.spoe_address {
        Some(spoe) => dial(spoe, args.authgate_host.as_deref()),
        None => "127.0.0.1:9192  # spoe_address is not set in authgate.yaml: set it".into(),
    };
    let mut claims: Vec<&str> = config
        .routes
        .iter()
        .flat_map(|route| route.claim_headers.iter())
        .map(|(_, header)| header.as_str())
        .filter(|name| !IDENTITY_HEADERS.iter().any(|h| h.as_str() == *name))
        .collect();
    claims.sort_unstable();
    claims.dedup();
    let rules = haproxy_rules(&claims);
    let mut ports: Vec<(u16, bool)> = routes
        .iter()
        .map(|(site, _)| site)
        .chain(&login)
        .map(|site| (site.port, site.https))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let mut out = format!(
        "# Generated by `authgate print haproxy` from the routes in authgate.yaml.\n\
         # Beside it: `authgate print haproxy-spoe > {HAPROXY_SPOE_PATH}`. TLS\n\
         # certificates (certificate and key in one PEM each) go in {HAPROXY_CERTS}.\n\
         # Check the `app` backend: authgate does not know your apps. See\n\
         # examples/haproxy/haproxy.cfg for what each part does.\n\
         \n\
         global\n    log stderr format raw local0 info\n\
         \n\
         defaults\n    mode http\n    log global\n    option httplog\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n    timeout http-request 10s\n"
    );
    for (port, https) in ports {
        let ssl = if https {
            format!(" ssl crt {HAPROXY_CERTS}")
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "\nfrontend authgate_{port}\n    bind :{port}{ssl}\n    unique-id-format %{{+X}}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid\n    unique-id-header X-Request-Id\n\n"
        );
        let here: Vec<(usize, &Site, &[String])> = routes
            .iter()
            .enumerate()
            .filter(|(_, (site, _))| site.port == port && site.https == https)
            .map(|(i, (site, names))| (i, site, names.as_slice()))
            .collect();
        for (i, site, names) in &here {
            let _ = writeln!(out, "    # {} — routes: {}", site.host, names.join(", "));
            out.push_str(&haproxy_host_acl(&format!("site{i}"), site));
        }
        match &login {
            Some(site) if site.port == port && site.https == https => {
                out.push_str("    # The login host (authenticate_service_url).\n");
                out.push_str(&haproxy_host_acl("login_host", site));
            }
            _ => out.push_str("    acl login_host always_false\n"),
        }
        let _ = write!(
            out,
            "    acl login_path path / /oauth2/start /oauth2/callback /oauth2/sign_out /oauth2/userinfo /.well-known/authgate/jwks.json\n    acl authgate_path path_beg /.authgate/\n\n    # HAProxy's own conditions for a host, besides its routes (docs/frontends.md):\n    #tcp-request content set-var(txn.allowed_groups) str(<groups>) if <the host's acl>\n\n    filter spoe engine authgate config {HAPROXY_SPOE_PATH}\n\n{rules}\n    use_backend authgate if login_host login_path\n"
        );
        for (i, _, _) in &here {
            let _ = writeln!(out, "    use_backend authgate if site{i} authgate_path");
        }
        for (i, _, _) in &here {
            let _ = writeln!(out, "    use_backend app if site{i}");
        }
        out.push_str("    default_backend refuse\n");
    }
    let _ = write!(
        out,
        "\nbackend app\n    option forwardfor\n    server app {upstream}\n\
         \n# The login host's pages. authgate believes X-Forwarded-* only from\n# trusted_proxies: list HAProxy there.\n\
         backend authgate\n    option forwardfor\n    http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]\n    http-request set-header X-Forwarded-Host %[req.fhdr(host)]\n    server authgate {authgate}\n\
         \nbackend authgate-spoe\n    mode tcp\n    option spop-check\n    timeout connect 2s\n    timeout server 3m\n    server authgate {spoe} check inter 5s\n\
         \nbackend refuse\n    http-request return status 404 content-type text/plain string \"not found\"\n",
        upstream = args.upstream,
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn config(routes: &str) -> Config {
        let text = format!(
            "authenticate_service_url: https://auth.example.com\n\
             idp_provider_url: https://dex.example.com/dex\n\
             idp_client_id: authgate\n\
             idp_client_secret: x\n\
             cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
             session_store: memory\n\
             grpc_address: 10.0.0.5:9191\n\
             policy:\n{routes}"
        );
        crate::config::parse_str("authgate.yaml", &text, &|_| None)
            .unwrap()
            .config
    }

    fn args(proxy: Proxy) -> PrintArgs {
        PrintArgs {
            proxy,
            upstream: "127.0.0.1:8080".into(),
            authgate_host: None,
        }
    }

    /// Two routes on one host make one server block; every host gets its
    /// own; the login host gets its login locations only and no
    /// auth_request; each port gets a catch-all.
    #[test]
    fn nginx_has_one_server_per_route_host() {
        let config = config(
            "  - from: https://hello.example.com\n    path: /healthz\n    allow_public_unauthenticated_access: true\n\
             \x20 - from: https://hello.example.com\n    allowed_groups: [ops]\n\
             \x20 - from: https://*.apps.example.com:8443\n    allow_any_authenticated_user: true\n",
        );
        let out = nginx(&config, &args(Proxy::Nginx));
        assert_eq!(out.matches("server_name hello.example.com;").count(), 1);
        assert_eq!(out.matches("server_name *.apps.example.com;").count(), 1);
        assert!(out.contains("listen 8443 ssl;"));
        assert_eq!(out.matches("auth_request /oauth2/auth;").count(), 2);
        assert!(out.contains("server 127.0.0.1:4180;"), "{out}");
        assert!(
            out.contains("auth_request_set $auth_groups $upstream_http_x_auth_request_groups;")
        );
        assert!(out.contains("proxy_set_header X-Auth-Request-Groups $auth_groups;"));
        assert_eq!(out.matches("location /.authgate/ {").count(), 2);
        assert_eq!(out.matches("error_page 401 = $authgate_401_to;").count(), 2);
        assert_eq!(out.matches("location @api401 {").count(), 2);
        let login = out.split("server_name auth.example.com;").nth(1).unwrap();
        assert!(login.contains("location ~ ^/oauth2/(start|callback|sign_out|userinfo)$ {"));
        assert!(!login.contains("location /oauth2/ {"));
        assert!(!login.contains("auth_request "));
        // One catch-all per port the sites listen on.
        assert!(out.contains("listen 443 ssl default_server;"), "{out}");
        assert!(out.contains("listen 8443 ssl default_server;"), "{out}");
        assert_eq!(out.matches("return 444;").count(), 2);
    }

    /// Envoy: a virtual host per route host with `host:port` for a
    /// non-default port, the login host's ext_authz disabled, gRPC to
    /// `grpc_address`.
    #[test]
    fn envoy_has_a_virtual_host_per_route_host() {
        let config = config(
            "  - from: https://hello.example.com\n    allowed_groups: [ops]\n\
             \x20 - from: https://app.example.com:8443\n    allowed_groups: [ops]\n",
        );
        let out = envoy(&config, &args(Proxy::Envoy));
        assert!(out.contains("domains: [\"hello.example.com\"]"), "{out}");
        assert!(out.contains("domains: [\"app.example.com\", \"app.example.com:8443\"]"));
        assert!(out.contains("domains: [\"auth.example.com\"]"));
        assert!(out.contains("address: \"10.0.0.5\", port_value: 9191"));
        // The login host, and /.authgate/ on each of the two route hosts.
        assert_eq!(out.matches("disabled: true").count(), 3);
        assert_eq!(out.matches("prefix: \"/.authgate/\"").count(), 2);
    }

    /// HAProxy: a frontend per port, an ACL per host with `host:port` (and
    /// the name alone on the default port), the routes' claim headers
    /// removed in every spelling and set from their variables.
    #[test]
    fn haproxy_has_a_frontend_per_port() {
        let config = config(
            "  - from: https://hello.example.com\n    allowed_groups: [ops]\n    jwt_claims_headers: {X-Email-Verified: email_verified}\n\
             \x20 - from: https://app.example.com:8443\n    allowed_groups: [ops]\n",
        );
        let out = haproxy(&config, &args(Proxy::Haproxy));
        assert!(out.contains("frontend authgate_443\n    bind :443 ssl crt /etc/haproxy/certs/\n"));
        assert!(out.contains("frontend authgate_8443\n"));
        assert!(
            out.contains("-m str hello.example.com hello.example.com:443\n"),
            "{out}"
        );
        assert!(out.contains("-m str app.example.com:8443\n"), "{out}");
        assert!(out.contains("-m str auth.example.com auth.example.com:443\n"));
        assert!(out.contains("acl login_host always_false\n"));
        assert!(out.contains("http-request del-header ^x[-_]email[-_]verified$ -m reg\n"));
        assert!(out.contains(
            "http-request set-header X-Email-Verified %[var(txn.authgate.hdr_x_email_verified)]"
        ));
        assert_eq!(out.matches("default_backend refuse").count(), 2);
        assert!(out.contains("server authgate 127.0.0.1:4180\n"));
    }

    /// The printed rules are the example's, line for line.
    #[test]
    fn haproxy_rules_are_the_examples() {
        let example = include_str!("../examples/haproxy/haproxy.cfg");
        assert!(
            example.contains(&haproxy_rules(&[])),
            "the example's rules differ from print's"
        );
    }

    /// The printed `map`s are the example's, line for line: one text for
    /// the file users copy and the config authgate prints.
    #[test]
    fn client_maps_are_the_examples() {
        let example = include_str!("../examples/nginx/nginx.conf");
        let example: Vec<&str> = example.lines().map(str::trim).collect();
        let maps: Vec<&str> = NGINX_CLIENT_MAPS.lines().map(str::trim).collect();
        assert!(maps.len() > 10);
        assert!(
            example.windows(maps.len()).any(|w| w == maps.as_slice()),
            "the example's maps differ from print's"
        );
    }
}
