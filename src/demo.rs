//! `authgate demo`: the whole flow on one machine with nothing installed.
//!
//! Starts the development identity provider ([`crate::devidp`]) and authgate
//! with in-memory sessions, both on loopback only, and prints what to try.
//! The configuration is built here in code: no `serve` configuration can
//! ever reach the development provider.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use url::Url;

use crate::app::App;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{
    Config, CookieConfig, IdpConfig, LogFormat, RouteConfig, Routes, Secret, SessionStoreConfig,
};
use crate::devidp::{DevClient, DevIdp, DevIdpConfig, DevUser};
use crate::server::{self, Listeners};

/// Ports of the demo (loopback only).
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Port of authgate (auth endpoint and login host).
    #[arg(long, default_value_t = 4180)]
    pub port: u16,
    /// Port of the development identity provider.
    #[arg(long, default_value_t = 5556)]
    pub idp_port: u16,
    /// Port of the protected site in the printed nginx example.
    #[arg(long, default_value_t = 8080)]
    pub app_port: u16,
    /// Port of the stand-in app behind it in the printed nginx example
    /// (point `proxy_pass` at your own app instead).
    #[arg(long, default_value_t = 3000)]
    pub upstream_port: u16,
}

const CLIENT_ID: &str = "authgate-demo";

/// The demo's configuration: what a user would write in `authgate.yaml`.
pub fn demo_config(args: &DemoArgs) -> Result<Config, String> {
    let login = format!("http://127.0.0.1:{}", args.port);
    let app = format!("http://127.0.0.1:{}", args.app_port);
    let parse = |u: &str| Url::parse(u).map_err(|e| e.to_string());
    let mut cookie_secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut cookie_secret);
    let route =
        |index: usize, prefix: Option<&str>, groups: &[&str]| -> Result<RouteConfig, String> {
            Ok(RouteConfig {
                index,
                from: parse(&app)?,
                prefix: prefix.map(str::to_owned),
                allowed_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                ..RouteConfig::default()
            })
        };
    Ok(Config {
        address: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        grpc_address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        metrics_address: None,
        spoe_address: None,
        authenticate_service_url: parse(&login)?,
        idp: IdpConfig {
            provider: "oidc".into(),
            issuer_url: format!("http://127.0.0.1:{}/dex", args.idp_port),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(random_token()),
            scopes: ["openid", "email", "profile", "groups", "offline_access"]
                .map(String::from)
                .to_vec(),
            ca_file: None,
            ca_certs: Vec::new(),
            insecure_skip_verify: false,
            clock_skew: Duration::from_secs(60),
            allowed_audiences: Vec::new(),
        },
        cookie: CookieConfig {
            name: "_authgate".into(),
            domain: None,
            // Plain http on loopback: a Secure cookie would never come back.
            secure: false,
            http_only: true,
            expire: Duration::from_secs(14 * 3600),
            secret: Secret::new(cookie_secret.to_vec()),
            previous_secrets: Vec::new(),
            idle_timeout: None,
        },
        session_store: SessionStoreConfig::Memory,
        refresh_interval: Duration::from_secs(300),
        refresh_grace: crate::config::DEFAULT_REFRESH_GRACE,
        trusted_proxies: Vec::new(),
        admin_groups: Vec::new(),
        routes: Routes::parse(vec![
            route(0, Some("/admin"), &["admins"])?,
            route(1, None, &["devops"])?,
        ])
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?,
        signing: Default::default(),
        jwt_claims_headers: Vec::new(),
        log_format: LogFormat::Pretty,
        log_level: "info".into(),
        templates_dir: None,
        pages: crate::templates::Pages::builtin(),
        // Ctrl-C on a laptop: no load balancer to wait for.
        serving: crate::config::ServingConfig {
            shutdown_delay: Duration::ZERO,
            ..Default::default()
        },
        tracing: None,
    })
}

fn random_token() -> Vec<u8> {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into_bytes()
}

/// The development provider matching [`demo_config`].
pub fn demo_idp(config: &Config, clock: SharedClock) -> Result<DevIdp, String> {
    let callback = format!(
        "{}/oauth2/callback",
        config
            .authenticate_service_url
            .as_str()
            .trim_end_matches('/')
    );
    DevIdp::new(
        DevIdpConfig {
            issuer: config.idp.issuer_url.clone(),
            clients: vec![DevClient {
                id: config.idp.client_id.clone(),
                secret: String::from_utf8_lossy(config.idp.client_secret.expose()).into_owned(),
                redirect_uris: vec![callback],
            }],
            users: DevUser::demo_users("example.com"),
            id_token_ttl: Duration::from_secs(3600),
            banner: Some(
                "authgate demo: development identity provider. NOT FOR PRODUCTION.".into(),
            ),
        },
        clock,
    )
    .map_err(|e| e.to_string())
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    run_until(args, server::shutdown_signal()).await
}

/// Runs the demo until `shutdown` resolves (tests use this).
pub async fn run_until(
    args: DemoArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let _ = crate::telemetry::init(LogFormat::Pretty, "info", None);
    let config = demo_config(&args)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let idp = demo_idp(&config, clock.clone())?;
    let idp_listener = bind(args.idp_port).await?;
    let listener = bind(args.port).await?;
    print_banner(&args, &config);
    let app = App::new(config, clock).map_err(|e| e.to_string())?;
    let (stop_idp, idp_stopped) = tokio::sync::oneshot::channel::<()>();
    let idp_task = tokio::spawn(idp.serve(idp_listener, async {
        let _ = idp_stopped.await;
    }));
    let served = server::run(app, Listeners::http(listener), shutdown).await;
    let _ = stop_idp.send(());
    let _ = idp_task.await;
    served.map_err(|e| e.to_string())
}

async fn bind(port: u16) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{port}: {e} (choose another with --port/--idp-port)"
            )
        })
}

fn print_banner(args: &DemoArgs, config: &Config) {
    let login = config
        .authenticate_service_url
        .as_str()
        .trim_end_matches('/');
    let app = format!("http://127.0.0.1:{}", args.app_port);
    println!(
        r#"
================================================================================
  authgate demo — NOT FOR PRODUCTION
  A development identity provider with static users, in-memory sessions,
  loopback only. Nothing here is kept when you stop it (Ctrl-C).
================================================================================

  identity provider : {issuer}
  authgate          : {login}   (auth endpoint + login host)
  protected site    : {app}     (policy: /admin needs group "admins",
                                  everything else group "devops")

  Users (the password is the name before the @, e.g. alice):
    alice@example.com   groups devops, admins   -> allowed everywhere
    bob@example.com     group users             -> 403
    carol@example.com   no groups               -> 403

1. Ask as nginx would, without a session — 401 and the sign-in URL:
   curl -i -H 'X-Original-URL: {app}/' {login}/oauth2/auth

2. Sign in with a browser (returns to your identity as JSON):
   {login}/oauth2/start?rd={login}/oauth2/userinfo

   No browser? The same as alice with curl and a cookie jar, then ask again
   — 200 and her identity headers:
# --- sign in with curl ---
req=$(curl -s -c jar -L '{login}/oauth2/start?rd={login}/oauth2/userinfo' | sed -n 's/.*name="req" value="\([^"]*\)".*/\1/p')
curl -s -b jar -c jar -L -d "req=$req" -d login=alice@example.com -d password=alice {issuer}/auth; echo
curl -i -b jar -H 'X-Original-URL: {app}/' {login}/oauth2/auth
# --- end ---

3. Put nginx in front of a site on port {app_port}: save the lines between the
   markers as /etc/nginx/conf.d/authgate-demo.conf (they go inside nginx's
   http {{}} block), run `nginx -s reload` (or start nginx), then open
   {app}/ — alice sees the stand-in app greet her, bob gets
   authgate's 403 page, and `curl -i {app}/` gets a 401.

# --- authgate-demo.conf ---
# No session: browsers go to sign in, programs get the 401.
map $http_accept $authgate_demo_401 {{
    default        @api401;
    "~*text/html"  @signin;
}}
server {{
    listen 127.0.0.1:{app_port};
    server_name 127.0.0.1;
    location / {{
        auth_request /oauth2/auth;
        auth_request_set $signin $upstream_http_location;
        auth_request_set $email  $upstream_http_x_auth_request_email;
        auth_request_set $groups $upstream_http_x_auth_request_groups;
        error_page 401 = $authgate_demo_401;
        error_page 403 = @forbidden;
        proxy_set_header X-Auth-Request-Email  $email;
        proxy_set_header X-Auth-Request-Groups $groups;
        proxy_set_header Host $host;
        proxy_pass http://127.0.0.1:{upstream_port};
    }}
    location = /oauth2/auth {{
        internal;
        proxy_pass {login};
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        # What nginx routes on ($host, its own port), never the client's Host.
        proxy_set_header X-Original-URL $scheme://$host:$server_port$request_uri;
        proxy_set_header X-Original-Method $request_method;
        # Keep authgate's sign-in URL as it is (nginx would rewrite it).
        proxy_redirect off;
    }}
    location @signin {{ return 302 $signin; }}
    location @api401 {{
        default_type application/json;
        return 401 '{{"error":"unauthorized"}}';
    }}
    location @forbidden {{
        rewrite ^ /oauth2/forbidden break;
        proxy_pass {login};
        proxy_method GET;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-URL $scheme://$host:$server_port$request_uri;
    }}
}}
# Any other name on that port: refused.
server {{
    listen 127.0.0.1:{app_port} default_server;
    return 444;
}}
# A stand-in for your app (loopback only): point proxy_pass above at yours.
server {{
    listen 127.0.0.1:{upstream_port};
    default_type text/plain;
    return 200 "hello $http_x_auth_request_email (groups: $http_x_auth_request_groups)\n";
}}
# --- end ---
"#,
        issuer = config.idp.issuer_url,
        app_port = args.app_port,
        upstream_port = args.upstream_port,
    );
}
