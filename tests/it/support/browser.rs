//! Headless Chromium (Debian's `chromium` + `chromium-driver`) driven over
//! WebDriver with fantoccini. The test CA is trusted through an NSS database
//! in the browser's own `$HOME`, so TLS is verified for real (no
//! `--ignore-certificate-errors`), and the test domain is mapped to loopback
//! with `--host-resolver-rules`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::process::{ChildGuard, READY_TIMEOUT, free_port, require_program, run_ok};
use super::{repo_root, temp_dir};

/// How the browser is set up.
#[derive(Clone, Debug, Default)]
pub struct BrowserOptions {
    /// A CA certificate (PEM file) to trust, e.g. the one nginx's cert is from.
    pub trust_ca: Option<PathBuf>,
    /// `--host-resolver-rules`, e.g. `MAP *.example.test 127.0.0.1`.
    pub host_resolver_rules: Option<String>,
}

/// A running chromedriver with one Chromium session. Dropping it kills
/// chromedriver and the browser (one process group).
pub struct Browser {
    client: Client,
    driver: ChildGuard,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    pub async fn start(options: BrowserOptions) -> Browser {
        let chromedriver = require_program("chromedriver", None);
        let chromium = require_program("chromium", None);
        let dir = temp_dir("browser");
        let home = dir.path().join("home");
        let profile = dir.path().join("profile");
        std::fs::create_dir_all(&profile).expect("create browser profile dir");
        if let Some(ca) = &options.trust_ca {
            trust_ca(&home, ca);
        } else {
            std::fs::create_dir_all(&home).expect("create browser home");
        }

        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if let Some(rules) = &options.host_resolver_rules {
            args.push(format!("--host-resolver-rules={rules}"));
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert("acceptInsecureCerts".into(), false.into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );

        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let mut cmd = Command::new(&chromedriver);
            cmd.arg(format!("--port={}", addr.port()))
                .env("HOME", &home)
                .env_remove("DISPLAY");
            let mut driver =
                ChildGuard::spawn("chromedriver", cmd, &dir.path().join("chromedriver.log"));
            tokio::time::sleep(Duration::from_millis(100)).await;
            if attempt < 3 && driver.check_running().is_err() {
                continue;
            }
            driver.wait_for_port(addr).await;
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities.clone());
            let webdriver = format!("http://{addr}");
            let client =
                match tokio::time::timeout(READY_TIMEOUT, builder.connect(&webdriver)).await {
                    Ok(Ok(client)) => client,
                    Ok(Err(e)) => panic!(
                        "no Chromium session: {e}\n--- chromedriver log ---\n{}",
                        driver.log()
                    ),
                    Err(_) => panic!(
                        "no Chromium session after {READY_TIMEOUT:?}\n--- chromedriver log ---\n{}",
                        driver.log()
                    ),
                };
            return Browser {
                client,
                driver,
                dir,
            };
        }
    }

    /// The fantoccini client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for the page (and its redirects) to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// The URL the browser shows now.
    pub async fn current_url(&self) -> url::Url {
        self.client.current_url().await.expect("current URL")
    }

    /// The visible text of the page (`body.innerText`).
    pub async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The page's HTML source.
    pub async fn page_source(&self) -> String {
        self.client.source().await.unwrap_or_default()
    }

    /// Whether Dex's password form (fields `login`, `password`) is shown.
    pub async fn on_dex_login_form(&self) -> bool {
        self.client.find(Locator::Id("login")).await.is_ok()
            && self.client.find(Locator::Id("password")).await.is_ok()
    }

    /// Fills Dex's own login form (`templates/password.html`: inputs
    /// `login` and `password`, button `submit-login`) and submits it. Waits
    /// for the form, not for where Dex sends the browser next.
    pub async fn dex_login(&self, login: &str, password: &str) {
        let wait = self.client.wait().at_most(READY_TIMEOUT);
        let field = match wait.for_element(Locator::Id("login")).await {
            Ok(field) => field,
            Err(e) => panic!(
                "no Dex login form at {}: {e}",
                self.current_url_or_blank().await
            ),
        };
        field.clear().await.expect("clear login");
        field.send_keys(login).await.expect("type login");
        let pw = self
            .client
            .find(Locator::Id("password"))
            .await
            .expect("password field");
        pw.send_keys(password).await.expect("type password");
        let button = self
            .client
            .find(Locator::Id("submit-login"))
            .await
            .expect("login button");
        button.click().await.expect("submit Dex login form");
    }

    /// Waits (bounded) until the current URL satisfies `pred`; panics with
    /// the URL and page text otherwise.
    pub async fn wait_for_url(&self, what: &str, pred: impl Fn(&url::Url) -> bool) -> url::Url {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(url) = self.client.current_url().await
                && pred(&url)
            {
                return url;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "browser never reached {what}; at {} showing:\n{}",
                    self.current_url_or_blank().await,
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// All cookies visible to the current page.
    pub async fn cookies(&self) -> Vec<Cookie<'static>> {
        self.client.get_all_cookies().await.expect("read cookies")
    }

    /// The cookie `name` of the current page, if set.
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.client.get_named_cookie(name).await.ok()
    }

    /// Saves a PNG of the page as `tests/screenshots/<name>.png` (gitignored)
    /// and returns the path. For failure evidence; never fails the test.
    pub async fn screenshot(&self, name: &str) -> Option<PathBuf> {
        let dir = repo_root().join("tests/screenshots");
        let png = self.client.screenshot().await.ok()?;
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).ok()?;
        Some(path)
    }

    /// Waits (bounded) until the page text contains `needle`. On failure
    /// saves `tests/screenshots/<name>.png` and panics with the URL, the
    /// page text and the screenshot's path: the evidence a failed browser
    /// scenario should leave.
    pub async fn expect_text(&self, name: &str, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let text = self.page_text().await;
            if text.contains(needle) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                let shot = self.screenshot(name).await;
                panic!(
                    "page never showed {needle:?}; at {} (screenshot {shot:?}) showing:\n{text}",
                    self.current_url_or_blank().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// chromedriver's log (Chromium's own output goes there too).
    pub fn driver_log(&self) -> String {
        self.driver.log()
    }

    /// Ends the WebDriver session politely, then kills what is left.
    pub async fn close(self) {
        let Browser {
            client,
            driver,
            dir,
        } = self;
        let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        drop(driver);
        drop(dir);
    }

    async fn current_url_or_blank(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }
}

/// Creates `$HOME/.pki/nssdb` (where Chromium on Linux reads user trust
/// anchors) and adds `ca` as trusted for TLS servers.
fn trust_ca(home: &Path, ca: &Path) {
    let certutil = require_program("certutil", None);
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("create NSS db dir");
    let db_arg = format!("sql:{}", db.display());
    run_ok(
        "certutil -N",
        Command::new(&certutil).args(["-N", "-d", &db_arg, "--empty-password"]),
    );
    run_ok(
        "certutil -A",
        Command::new(&certutil)
            .args([
                "-A",
                "-d",
                &db_arg,
                "-t",
                "C,,",
                "-n",
                "authgate-e2e-ca",
                "-i",
            ])
            .arg(ca),
    );
}
