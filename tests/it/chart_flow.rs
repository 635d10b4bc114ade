//! The seed's Pomerium Helm values, through authgate's chart, give the
//! seed's access rules: the chart rendered with
//! `ci/pomerium-seed-values.yaml` unchanged, authgate started from the
//! rendered authgate.yaml with the Deployment's environment, and real nginx
//! configured from the rendered Ingresses as ingress-nginx configures itself
//! ([`crate::support::ingress_nginx`]), in front of an echo app standing in
//! for nextcloud. A `devops` member reaches the app with identity headers,
//! anyone else gets 403, an anonymous browser is sent to sign in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authgate::clock::SystemClock;
use authgate::devidp::{DevClient, DevIdp, DevIdpConfig, DevUser};
use openidconnect::reqwest;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::fixture::header;
use crate::nginx_flow::{login_from_sign_in, session_cookie_line};
use crate::packaging::{NAMESPACE, authgate_yaml, documents, find, pod_environment, template};
use crate::support::ingress_nginx::{self, ClusterDns, Layout};
use crate::support::nginx::{BROWSER_JSON_ACCEPT, Nginx};
use crate::support::process::{ChildGuard, READY_TIMEOUT, free_port};
use crate::support::temp_dir;
use crate::support::tls::{TestCa, https_client_builder};
use crate::support::upstream::{EchoUpstream, assert_alice_reached_the_app};

const BIN: &str = env!("CARGO_BIN_EXE_authgate");
/// The seed's protected host and login host, as the chart renders them.
const APP: &str = "https://hello.yourdomain.dev";
const LOGIN: &str = "https://authenticate.yourdomain.dev";

/// One RSA key for the provider of every test here.
fn signing_key() -> rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key generation")
    })
    .clone()
}

/// The seed, running: the provider, authgate, nginx as ingress-nginx, the
/// app, and a browser-like client for which the seed's host names lead to
/// nginx.
struct Seed {
    _provider: tokio::sync::oneshot::Sender<()>,
    authgate: ChildGuard,
    nginx: Nginx,
    app: EchoUpstream,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Seed {
    async fn start() -> Seed {
        let dir = temp_dir("chart-flow");
        let docs = documents(&template("pomerium-seed-values.yaml"));
        let config_path = dir.path().join("authgate.yaml");
        std::fs::write(&config_path, authgate_yaml(&docs)).expect("write authgate.yaml");
        let mut env: HashMap<String, String> =
            pod_environment(&docs, dir.path()).into_iter().collect();

        // The provider the values name (client `pom`, secret `pomerium`,
        // the redirect URI authgate derives from authenticate.redirectUrl),
        // with the demo users: alice in `devops`, bob not.
        let config: Value = serde_saphyr::from_str(authgate_yaml(&docs)).expect("authgate.yaml");
        let login = config["authenticate_service_url"]
            .as_str()
            .expect("login URL");
        assert_eq!(login, LOGIN);
        let idp_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        let issuer = format!("http://{}/dex", idp_listener.local_addr().expect("addr"));
        let idp = DevIdp::with_signing_key(
            DevIdpConfig {
                issuer: issuer.clone(),
                clients: vec![DevClient {
                    id: config["idp_client_id"]
                        .as_str()
                        .expect("client id")
                        .to_owned(),
                    secret: crate::packaging::secret_value(
                        find(&docs, "Secret"),
                        "idp_client_secret",
                    ),
                    redirect_uris: vec![format!("{login}/oauth2/callback")],
                }],
                users: DevUser::demo_users("example.com"),
                id_token_ttl: Duration::from_secs(600),
                banner: None,
            },
            Arc::new(SystemClock),
            signing_key(),
        )
        .expect("provider");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(idp.serve(idp_listener, async {
            let _ = stopped.await;
        }));

        // What differs from the pod, and nothing else:
        // - IDP_PROVIDER_URL: the test's provider instead of the seed's
        //   http://dex.YOURDOMAIN.dev (the one override of the values);
        // - ADDRESS, GRPC_ADDRESS, METRICS_ADDRESS: loopback ports, as a pod
        //   has its own network namespace and the test machine does not;
        // - SESSION_STORE: the embedded store in the test's directory
        //   instead of the pod's /var/lib/authgate volume;
        // - COOKIE_SECRET_FILE, IDP_CLIENT_SECRET_FILE (set by
        //   pod_environment): the Secret's files, which the pod mounts at
        //   /etc/authgate/secrets.
        // The login host's address mapping is the client's: it resolves
        // hello. and authenticate.yourdomain.dev to nginx, where DNS would
        // lead to the ingress controller.
        env.insert("IDP_PROVIDER_URL".into(), issuer);
        let (authgate, addr) = start_authgate(&config_path, &env, dir.path()).await;

        let app = EchoUpstream::start().await;
        // The cluster's DNS as nginx would resolve it: authgate's Service
        // (the auth-url's host, and the login Ingress's backend) and the
        // ExternalName's target, nextcloud in its own namespace.
        let dns = ClusterDns {
            namespace: NAMESPACE.to_owned(),
            names: HashMap::from([
                (format!("authgate.{NAMESPACE}.svc.cluster.local:4180"), addr),
                (
                    "nextcloud.nextcloud.svc.cluster.local:8080".to_owned(),
                    app.addr(),
                ),
            ]),
        };
        let ca = TestCa::new("authgate chart-flow CA");
        let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let nginx = Nginx::start_conf(&ca, "yourdomain.dev", https, |dir| {
            let (cert, key) = ca.issue(&["*.yourdomain.dev"], &[]).write(dir, "nginx");
            let layout = Layout {
                https,
                cert,
                key,
                dir: dir.to_owned(),
            };
            ingress_nginx::conf(&docs, &dns, &layout)
        })
        .await;
        let client = https_client_builder(
            nginx.ca_pem(),
            ["hello.yourdomain.dev", "authenticate.yourdomain.dev"].map(String::from),
            nginx.https_addr(),
        )
        .build()
        .expect("client");
        Seed {
            _provider: stop,
            authgate,
            nginx,
            app,
            client,
            _dir: dir,
        }
    }

    /// `GET url` as a browser, with `cookie` if any, claiming to be someone
    /// else in the identity headers (which must never reach the app).
    async fn get(&self, url: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .get(url)
            .header("Accept", BROWSER_JSON_ACCEPT)
            .header("X-Auth-Request-Email", "mallory@evil.test")
            .header("X-Auth-Request-Groups", "devops");
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        request.send().await.expect("request through nginx")
    }

    /// The whole login from the app's URL as `user`; the session cookie
    /// (`name=value`), checked to be set for the seed's root domain.
    async fn login(&self, url: &str, user: &str) -> String {
        let response = self.get(url, None).await;
        assert_eq!(response.status(), 302, "{}", self.logs());
        let sign_in = header(&response, "location");
        assert_eq!(sign_in, format!("{LOGIN}/oauth2/start?rd={url}"));
        let response = login_from_sign_in(
            &self.client,
            &crate::fixture::client(),
            &sign_in,
            user,
            &format!("{LOGIN}/oauth2/callback?"),
        )
        .await;
        assert_eq!(
            header(&response, "location"),
            url,
            "back where the user was going"
        );
        let line = session_cookie_line(&response).expect("session cookie");
        assert!(line.contains("Domain=yourdomain.dev"), "{line}");
        line.split(';').next().expect("name=value").to_owned()
    }

    fn logs(&self) -> String {
        format!(
            "--- nginx ---\n{}\n--- authgate ---\n{}",
            self.nginx.error_log(),
            self.authgate.log()
        )
    }
}

/// `authgate serve` from `config` with `env` (plus its listeners and store,
/// see [`Seed::start`]); its HTTP address once it is ready (provider
/// discovery done). A port taken in between starts it again on others.
async fn start_authgate(
    config: &std::path::Path,
    env: &HashMap<String, String>,
    dir: &std::path::Path,
) -> (ChildGuard, SocketAddr) {
    for attempt in 1.. {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--config"])
            .arg(config)
            .env_clear()
            .envs(env)
            .env("ADDRESS", addr.to_string())
            .env("GRPC_ADDRESS", format!("127.0.0.1:{}", free_port()))
            .env("METRICS_ADDRESS", format!("127.0.0.1:{}", free_port()))
            .env(
                "SESSION_STORE",
                format!("embedded:{}", dir.join("sessions.redb").display()),
            );
        let log = dir.join(format!("authgate-{attempt}.log"));
        let mut child = ChildGuard::spawn("authgate serve", command, &log);
        let http = crate::fixture::client();
        let ready = format!("http://{addr}/readyz");
        if attempt < 3 {
            let started = std::time::Instant::now();
            while child.check_running().is_ok()
                && !http
                    .get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                && started.elapsed() < READY_TIMEOUT
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if child.check_running().is_err() && child.log().contains("Address already in use") {
                continue;
            }
        }
        child
            .wait_until("ready (/readyz 200)", READY_TIMEOUT, || {
                let request = http.get(&ready).send();
                async move { request.await.is_ok_and(|r| r.status() == 200) }
            })
            .await;
        return (child, addr);
    }
    unreachable!("the loop returns")
}

/// The seed's rule, `allowed_groups`/`allowed_idp_claims` `devops`: an
/// anonymous browser is sent to sign in on the login host of
/// authenticate.redirectUrl; alice (in `devops`) reaches nextcloud's
/// stand-in with her identity headers, never the ones the client sent;
/// bob (not in `devops`) gets 403. authgate runs with the seed's
/// POMERIUM_DEBUG (debug logs, readable) and says it terminates no TLS.
#[tokio::test]
async fn seed_values_give_the_seeds_access_rules() {
    let seed = Seed::start().await;
    let url = format!("{APP}/index.php/apps/files/?dir=/");

    let alice = seed.login(&url, "alice@example.com").await;
    let response = seed.get(&url, Some(&alice)).await;
    assert_eq!(response.status(), 200, "{}", seed.logs());
    let seen: Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("echo JSON");
    assert_alice_reached_the_app(&seen["headers"]);
    assert_eq!(seen["uri"], "/index.php/apps/files/?dir=/");
    assert_eq!(seen["host"], "hello.yourdomain.dev");
    assert!(
        seen["headers"]["x-auth-request-jwt"][0]
            .as_str()
            .is_some_and(|j| j.split('.').count() == 3),
        "the signed assertion reaches the app: {seen}"
    );

    let bob = seed.login(&url, "bob@example.com").await;
    let response = seed.get(&url, Some(&bob)).await;
    assert_eq!(response.status(), 403, "{}", seed.logs());
    assert_eq!(
        seed.app.received(),
        ["/index.php/apps/files/?dir=/"],
        "only alice got through"
    );

    let log = seed.authgate.log();
    assert!(
        log.contains("DEBUG"),
        "POMERIUM_DEBUG: debug logs, human-readable:\n{log}"
    );
    assert!(log.contains("authgate never terminates TLS"), "{log}");
    assert!(
        !log.contains("pomerium\n") && !log.contains("\"pomerium\""),
        "no client secret in the log"
    );
}

/// The login host answers only the login endpoints: the decision endpoint
/// and the metrics are not reachable from outside.
#[tokio::test]
async fn login_host_exposes_only_the_login() {
    let seed = Seed::start().await;
    let status = async |path: &str| {
        seed.get(&format!("{LOGIN}{path}"), None)
            .await
            .status()
            .as_u16()
    };
    assert_eq!(status("/").await, 200);
    assert_eq!(status("/.well-known/authgate/jwks.json").await, 200);
    assert_eq!(status("/oauth2/userinfo").await, 401);
    for hidden in ["/oauth2/auth", "/metrics", "/healthz", "/oauth2/forbidden"] {
        assert_eq!(status(hidden).await, 404, "{hidden} on the login host");
    }
}
