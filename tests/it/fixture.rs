//! An in-process stack for integration tests: the development provider
//! (real RS256 tokens, Dex-like) and the real authgate server, each on an
//! ephemeral loopback port, sharing one manual clock.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authgate::app::App;
use authgate::clock::{ManualClock, SharedClock};
use authgate::config::{
    Config, CookieConfig, IdpConfig, LogFormat, RouteConfig, Routes, Secret, SessionStoreConfig,
};
use authgate::devidp::{DevClient, DevIdp, DevIdpConfig, DevUser};
use authgate::server;
use openidconnect::reqwest;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

pub const COOKIE: &str = "_authgate";
pub const CLIENT_ID: &str = "authgate-test";
pub const CLIENT_SECRET: &str = "client-secret-for-tests";

/// One RSA key for the whole test binary: generating one per test is slow.
fn shared_key() -> rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key generation")
    })
    .clone()
}

/// A route for `from` admitting `groups` (none = any signed-in user).
pub fn route(index: usize, from: &str, prefix: Option<&str>, groups: &[&str]) -> RouteConfig {
    RouteConfig {
        index,
        from: Url::parse(from).expect("route from"),
        prefix: prefix.map(str::to_owned),
        allowed_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        allow_any_authenticated_user: groups.is_empty(),
        ..RouteConfig::default()
    }
}

/// A route for `from` whose only rule is a PPL `source_ip: <cidr>`: the
/// client's address alone decides, signed in or not.
pub fn source_ip_route(index: usize, from: &str, cidr: &str) -> RouteConfig {
    let mut route = route(index, from, None, &[]);
    route.allow_any_authenticated_user = false;
    route.policy = Some(authgate::policy::ppl::Tree::from_json(
        &serde_json::json!({ "allow": { "and": [{ "source_ip": cidr }] } }),
    ));
    route
}

/// The default policy: `app.example.test` needs `devops`, `/admin` needs
/// `admins`, `public.example.test` is open to everyone.
pub fn default_routes() -> Vec<RouteConfig> {
    let mut public = route(2, "https://public.example.test", None, &[]);
    public.allow_any_authenticated_user = false;
    public.allow_public_unauthenticated_access = true;
    vec![
        route(0, "https://app.example.test", Some("/admin"), &["admins"]),
        route(1, "https://app.example.test", None, &["devops"]),
        public,
    ]
}

/// A configuration pointing at `idp_issuer`, served at `login_base`.
pub fn test_config(login_base: &str, idp_issuer: &str, routes: Vec<RouteConfig>) -> Config {
    Config {
        address: "127.0.0.1:0".parse().expect("addr"),
        grpc_address: "127.0.0.1:0".parse().expect("addr"),
        metrics_address: None,
        spoe_address: None,
        authenticate_service_url: Url::parse(login_base).expect("login base"),
        idp: IdpConfig {
            provider: "oidc".into(),
            issuer_url: idp_issuer.to_owned(),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
            scopes: ["openid", "email", "profile", "groups", "offline_access"]
                .map(String::from)
                .to_vec(),
            ca_file: None,
            ca_certs: Vec::new(),
            insecure_skip_verify: false,
            clock_skew: Duration::from_secs(30),
            allowed_audiences: Vec::new(),
        },
        cookie: CookieConfig {
            name: COOKIE.into(),
            domain: None,
            secure: false,
            http_only: true,
            expire: Duration::from_secs(3600),
            secret: Secret::new([7u8; 32].to_vec()),
            previous_secrets: Vec::new(),
            idle_timeout: None,
        },
        session_store: SessionStoreConfig::Memory,
        refresh_interval: Duration::from_secs(300),
        refresh_grace: authgate::config::DEFAULT_REFRESH_GRACE,
        // None: X-Forwarded-* believed from nobody (so not from the tests'
        // loopback client), and /oauth2/auth answers every peer.
        trusted_proxies: Vec::new(),
        admin_groups: Vec::new(),
        routes: Routes::parse(routes).expect("routes"),
        signing: Default::default(),
        jwt_claims_headers: Vec::new(),
        log_format: LogFormat::Pretty,
        log_level: "warn".into(),
        templates_dir: None,
        pages: authgate::templates::Pages::builtin(),
        // In-process servers stop at once when a test ends.
        serving: authgate::config::ServingConfig {
            shutdown_delay: Duration::ZERO,
            ..Default::default()
        },
        tracing: None,
    }
}

/// The development provider for `config` at `issuer`: the demo users, our
/// client with `config`'s callback URL, the shared key.
pub fn provider(issuer: &str, config: &Config, clock: SharedClock) -> DevIdp {
    provider_with_ttl(issuer, config, clock, Duration::from_secs(600))
}

/// [`provider`], issuing ID tokens valid for `id_token_ttl`.
pub fn provider_with_ttl(
    issuer: &str,
    config: &Config,
    clock: SharedClock,
    id_token_ttl: Duration,
) -> DevIdp {
    DevIdp::with_signing_key(
        DevIdpConfig {
            issuer: issuer.to_owned(),
            clients: vec![DevClient {
                id: CLIENT_ID.into(),
                secret: CLIENT_SECRET.into(),
                redirect_uris: vec![format!(
                    "{}/oauth2/callback",
                    config
                        .authenticate_service_url
                        .as_str()
                        .trim_end_matches('/')
                )],
            }],
            users: DevUser::demo_users("example.com"),
            id_token_ttl,
            banner: None,
        },
        clock,
        shared_key(),
    )
    .expect("dev idp")
}

/// The running stack; both servers stop when it is dropped.
pub struct Stack {
    pub idp: DevIdp,
    #[allow(dead_code)] // for tests that reach into the service
    pub app: Arc<App>,
    /// The configuration authgate started with; a replica or a restart is
    /// built from it (the running `App` keeps no route list).
    #[allow(dead_code)] // for tests that start replicas
    pub config: Config,
    /// `http://127.0.0.1:<port>` of authgate.
    pub base: String,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(default_routes(), |_| {}).await
    }

    /// Starts the stack with `routes`; `tweak` may change the config.
    pub async fn start_with(routes: Vec<RouteConfig>, tweak: impl FnOnce(&mut Config)) -> Stack {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind authgate");
        Stack::start_on(listener, routes, tweak).await
    }

    /// Starts authgate on `listener` (bound earlier, e.g. so nginx can be
    /// pointed at it before authgate's config is known).
    pub async fn start_on(
        listener: TcpListener,
        routes: Vec<RouteConfig>,
        tweak: impl FnOnce(&mut Config),
    ) -> Stack {
        Stack::start_full(listener, routes, tweak, Duration::from_secs(600)).await
    }

    /// The default routes, with a provider whose ID tokens last
    /// `id_token_ttl`.
    pub async fn start_with_id_token_ttl(id_token_ttl: Duration) -> Stack {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind authgate");
        Stack::start_full(listener, default_routes(), |_| {}, id_token_ttl).await
    }

    async fn start_full(
        listener: TcpListener,
        routes: Vec<RouteConfig>,
        tweak: impl FnOnce(&mut Config),
        id_token_ttl: Duration,
    ) -> Stack {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs() as i64;
        let clock = ManualClock::new(now);
        let shared: SharedClock = Arc::new(clock.clone());

        let idp_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind idp");
        let idp_addr = idp_listener.local_addr().expect("addr");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let issuer = format!("http://{idp_addr}/dex");

        let mut config = test_config(&base, &issuer, routes);
        tweak(&mut config);
        let idp = provider_with_ttl(&issuer, &config, shared.clone(), id_token_ttl);
        let mut stops = Vec::new();
        let (stop_idp, idp_stopped) = oneshot::channel();
        tokio::spawn(idp.clone().serve(idp_listener, async {
            let _ = idp_stopped.await;
        }));
        stops.push(stop_idp);

        let app = App::new(config.clone(), shared).expect("app");
        app.oidc().discover().await.expect("discovery");
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server::run(
            app.clone(),
            server::Listeners::http(listener),
            async {
                let _ = stopped.await;
            },
        ));
        stops.push(stop);

        Stack {
            idp,
            app,
            config,
            base,
            clock,
            http: client(),
            stops,
        }
    }

    /// Stops the provider (a provider outage); authgate keeps running.
    pub fn stop_provider(&mut self) {
        // The provider's stop is the first one pushed.
        if !self.stops.is_empty() {
            let _ = self.stops.remove(0).send(());
        }
    }

    /// Asks `/oauth2/auth` as nginx would.
    pub async fn auth(&self, original_url: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}/oauth2/auth", self.base))
            .header("X-Original-URL", original_url);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", format!("{COOKIE}={cookie}"));
        }
        request.send().await.expect("auth request")
    }

    /// Begins a login: the provider URL and the login-state cookie.
    /// `GET <target>` to authgate exactly as given (see
    /// [`crate::support::raw_get`]).
    pub async fn raw_get(&self, target: &str, host: &str, headers: &[String]) -> (u16, String) {
        let addr = self.base.trim_start_matches("http://");
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        crate::support::raw_get(tcp, target, host, headers).await
    }

    pub async fn start_login(&self, rd: &str) -> (String, String) {
        let response = self
            .http
            .get(format!("{}/oauth2/start", self.base))
            .query(&[("rd", rd)])
            .send()
            .await
            .expect("start");
        assert_eq!(
            response.status(),
            302,
            "start should redirect to the provider"
        );
        let location = header(&response, "location");
        let cookie = set_cookies(&response)
            .into_iter()
            .find(|(name, _)| name.starts_with(&format!("{COOKIE}_login_")))
            .map(|(name, value)| format!("{name}={value}"))
            .expect("login-state cookie");
        (location, cookie)
    }

    /// Fills the provider's form; returns the callback URL it redirects to.
    pub async fn provider_login(&self, provider_url: &str, user: &str, password: &str) -> String {
        provider_login(&self.http, provider_url, user, password).await
    }

    /// Calls our callback with the login-state cookie.
    pub async fn callback(&self, callback_url: &str, login_cookie: &str) -> reqwest::Response {
        self.http
            .get(callback_url)
            .header("Cookie", login_cookie)
            .send()
            .await
            .expect("callback")
    }

    /// The whole login as `user` (password = name before the @); returns the
    /// session cookie value.
    pub async fn login(&self, user: &str, rd: &str) -> String {
        let password = user.split('@').next().unwrap_or(user);
        let (provider_url, login_cookie) = self.start_login(rd).await;
        let callback = self.provider_login(&provider_url, user, password).await;
        let response = self.callback(&callback, &login_cookie).await;
        assert_eq!(response.status(), 302, "callback should redirect back");
        assert_eq!(header(&response, "location"), rd);
        session_cookie(&response).expect("session cookie")
    }
}

/// Fills the development provider's login form at `provider_url` with
/// `http` (which must not follow redirects); returns the callback URL the
/// provider redirects to.
pub async fn provider_login(
    http: &reqwest::Client,
    provider_url: &str,
    user: &str,
    password: &str,
) -> String {
    let form = http
        .get(provider_url)
        .send()
        .await
        .expect("form")
        .text()
        .await
        .expect("form body");
    let action = attribute(&form, "action=\"").expect("form action");
    let req = attribute(&form, "name=\"req\" value=\"").expect("req field");
    let action = if action.starts_with("http") {
        action
    } else {
        let u = Url::parse(provider_url).expect("provider url");
        u.join(&action).expect("join").to_string()
    };
    let response = http
        .post(action)
        .form(&[
            ("req", req.as_str()),
            ("login", user),
            ("password", password),
        ])
        .send()
        .await
        .expect("post form");
    assert_eq!(response.status(), 303, "the provider should accept {user}");
    header(&response, "location")
}

/// A client that never follows redirects (we assert them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `(name, value)` of every Set-Cookie.
pub fn set_cookies(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|line| {
            let pair = line.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The non-empty session cookie a response sets, if any.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|(name, value)| name == COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

fn attribute(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}

/// Signs out at `sign_out_url` (a login host's `/oauth2/sign_out`) with
/// `cookie` (`name=value`), as the sign-out button of one of its own pages
/// does: a POST from this site.
pub async fn sign_out(
    client: &reqwest::Client,
    sign_out_url: &str,
    cookie: &str,
) -> reqwest::Response {
    client
        .post(sign_out_url)
        .header("Cookie", cookie)
        .header("Sec-Fetch-Site", "same-origin")
        .send()
        .await
        .expect("sign out")
}
