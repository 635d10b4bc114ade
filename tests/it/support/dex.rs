//! Real Dex (built from the Go module proxy by `scripts/test.sh`, path in
//! `AUTHGATE_DEX_BIN`) with the LDAP connector configured as the seed
//! deployment does, from `tests/e2e/dex/config.yaml.tmpl`, or with the
//! filters the README recommends for FreeIPA ([`LdapFilters`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::dirsrv::{DEX_BIND_PW, Dirsrv, rand_hex};
use super::process::{ChildGuard, READY_TIMEOUT, free_port, require_program};
use super::{render, repo_root, temp_dir};

/// The static client's id, as in the seed.
pub const CLIENT_ID: &str = "pom";
/// The connector's id (`connector_id=ldap` skips Dex's chooser; with one
/// connector Dex goes straight to its form anyway).
pub const CONNECTOR_ID: &str = "ldap";
/// A second static client, which authgate is not configured to accept
/// tokens for.
pub const OTHER_CLIENT_ID: &str = "other-app";

/// The LDAP connector's `userSearch.filter` and `groupSearch.filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LdapFilters {
    pub user: &'static str,
    pub group: &'static str,
}

impl LdapFilters {
    /// As the seed writes them: no user filter, POSIX (or AD) groups only.
    pub const SEED: LdapFilters = LdapFilters {
        user: "",
        group: "(|(objectClass=posixGroup)(objectClass=group))",
    };
    /// What the README's migration section and the chart's Dex example
    /// recommend for FreeIPA: disabled accounts (`nsAccountLock: TRUE`) are
    /// not found, so their refresh fails; non-POSIX user groups
    /// (`ipaUserGroup` without `posixGroup`) reach the token too.
    pub const RECOMMENDED: LdapFilters = LdapFilters {
        user: "(&(objectClass=person)(!(nsAccountLock=TRUE)))",
        group: "(|(objectClass=posixGroup)(objectClass=ipaUserGroup))",
    };
}

/// What a test may vary.
#[derive(Clone, Debug)]
pub struct DexOptions {
    /// Registered for client `pom`; Dex requires an exact match.
    pub redirect_uris: Vec<String>,
    /// `expiry.idTokens` (also the access token's `expires_in`). Short for
    /// refresh tests.
    pub id_token_ttl: Duration,
    /// Keep Dex's state (signing keys, refresh tokens) in SQLite under the
    /// temp dir, so [`Dex::restart`] comes back with it; otherwise memory
    /// storage, which a restart empties.
    pub persistent_storage: bool,
    /// The LDAP connector's filters (the seed's by default).
    pub ldap_filters: LdapFilters,
}

impl Default for DexOptions {
    fn default() -> Self {
        DexOptions {
            redirect_uris: Vec::new(),
            id_token_ttl: Duration::from_secs(600),
            persistent_storage: false,
            ldap_filters: LdapFilters::SEED,
        }
    }
}

/// A running (or stopped, see [`Dex::stop`]) Dex. Dropping it kills Dex.
pub struct Dex {
    child: Option<ChildGuard>,
    bin: PathBuf,
    config: PathBuf,
    addr: SocketAddr,
    client_secret: String,
    other_client_secret: String,
    dir: tempfile::TempDir,
}

/// The tokens of one password grant.
pub struct DexTokens {
    pub id_token: String,
    pub access_token: String,
}

impl Dex {
    /// Renders the config against `dirsrv` and starts Dex on a free loopback
    /// port; returns once discovery answers.
    pub async fn start(dirsrv: &Dirsrv, options: DexOptions) -> Dex {
        let bin = dex_binary();
        let mut dir = temp_dir("dex");
        let client_secret = format!("pom-secret-{}", rand_hex());
        let other_client_secret = format!("other-secret-{}", rand_hex());
        let storage = if options.persistent_storage {
            format!(
                "  type: sqlite3\n  config:\n    file: {}",
                dir.path().join("dex.db").display()
            )
        } else {
            "  type: memory".to_owned()
        };
        let redirect_uris: String = options
            .redirect_uris
            .iter()
            .map(|u| format!("      - {}\n", yaml_string(u)))
            .collect();
        assert!(
            !redirect_uris.is_empty(),
            "DexOptions.redirect_uris is empty"
        );
        let template = std::fs::read_to_string(repo_root().join("tests/e2e/dex/config.yaml.tmpl"))
            .expect("read tests/e2e/dex/config.yaml.tmpl");
        let config = dir.path().join("config.yaml");

        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let rendered = render(
                &template,
                &[
                    ("ISSUER", &issuer_for(addr)),
                    ("STORAGE", &storage),
                    ("HTTP_ADDR", &addr.to_string()),
                    (
                        "ID_TOKEN_TTL",
                        &format!("{}s", options.id_token_ttl.as_secs().max(1)),
                    ),
                    ("CLIENT_SECRET", &yaml_string(&client_secret)),
                    ("OTHER_CLIENT_SECRET", &yaml_string(&other_client_secret)),
                    ("REDIRECT_URIS", redirect_uris.trim_end()),
                    ("LDAP_HOST", &dirsrv.ldaps_addr().to_string()),
                    ("LDAP_CA", &dirsrv.ca_pem_path().display().to_string()),
                    ("LDAP_BIND_PW", &yaml_string(DEX_BIND_PW)),
                    ("LDAP_USER_FILTER", &yaml_string(options.ldap_filters.user)),
                    (
                        "LDAP_GROUP_FILTER",
                        &yaml_string(options.ldap_filters.group),
                    ),
                ],
            );
            std::fs::write(&config, rendered).expect("write Dex config");
            let mut dex = Dex {
                child: None,
                bin: bin.clone(),
                config: config.clone(),
                addr,
                client_secret: client_secret.clone(),
                other_client_secret: other_client_secret.clone(),
                dir,
            };
            match dex.launch().await {
                Ok(()) => return dex,
                Err(log) if attempt < 3 && log.contains("address already in use") => {
                    dir = dex.into_dir();
                }
                Err(log) => panic!("Dex did not start\n--- dex log ---\n{log}"),
            }
        }
    }

    /// `http://127.0.0.1:<port>/dex`, exactly as configured (no trailing
    /// slash): the string an RP must use.
    pub fn issuer(&self) -> String {
        issuer_for(self.addr)
    }

    /// The issuer's `/auth` endpoint.
    pub fn auth_endpoint(&self) -> String {
        format!("{}/auth", self.issuer())
    }

    /// The issuer's `/token` endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer())
    }

    /// Client `pom`'s secret (random per start).
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// Tokens for `user` from Dex's password grant (the LDAP connector
    /// checks the password), issued to `client_id` (`pom` or
    /// [`OTHER_CLIENT_ID`]) with the scopes authgate asks for.
    pub async fn password_grant(&self, client_id: &str, user: &super::dirsrv::User) -> DexTokens {
        let secret = if client_id == OTHER_CLIENT_ID {
            &self.other_client_secret
        } else {
            &self.client_secret
        };
        let response = openidconnect::reqwest::Client::new()
            .post(self.token_endpoint())
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "password"),
                ("scope", "openid email profile groups"),
                ("username", user.email),
                ("password", user.password),
            ])
            .send()
            .await
            .expect("Dex token endpoint");
        let status = response.status();
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("Dex token response"))
                .expect("Dex token JSON");
        assert!(status.is_success(), "password grant: {status} {body}");
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {body}"))
                .to_owned()
        };
        DexTokens {
            id_token: field("id_token"),
            access_token: field("access_token"),
        }
    }

    /// Dex's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dex.log")).unwrap_or_default()
    }

    /// Kills Dex (for "the provider is down" scenarios). The port stays
    /// reserved for [`Dex::restart`] only by convention: nothing else in the
    /// harness picks it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts Dex again with the same config, port and issuer. With memory
    /// storage it comes back with new signing keys and no refresh tokens.
    pub async fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.launch().await {
            panic!("Dex did not restart\n--- dex log ---\n{log}");
        }
    }

    /// Whether the Dex process is up.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.check_running().is_ok())
    }

    async fn launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve").arg(&self.config);
        let mut child = ChildGuard::spawn("dex", cmd, &self.dir.path().join("dex.log"));
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer());
        let http = openidconnect::reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if child.check_running().is_err() {
                return Err(child.log());
            }
            let ok = http
                .get(&discovery)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                self.child = Some(child);
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "no discovery at {discovery} after {READY_TIMEOUT:?}\n{}",
                    child.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        self.stop();
        let placeholder = temp_dir("dex-swap");
        std::mem::replace(&mut self.dir, placeholder)
    }
}

/// `$AUTHGATE_DEX_BIN`, else the binary `scripts/test.sh` cached for the
/// Dex version `tests/e2e/dex/go.mod` pins (so a plain `cargo test` works
/// after one run of the script), else a panic saying to run it.
pub fn dex_binary() -> PathBuf {
    if std::env::var_os("AUTHGATE_DEX_BIN").is_some() {
        return require_program("dex", Some("AUTHGATE_DEX_BIN"));
    }
    let go_mod = std::fs::read_to_string(repo_root().join("tests/e2e/dex/go.mod"))
        .expect("read tests/e2e/dex/go.mod");
    let version = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("github.com/dexidp/dex "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("tests/e2e/dex/go.mod pins github.com/dexidp/dex");
    let cache = std::env::var_os("AUTHGATE_E2E_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/authgate-e2e")))
        .unwrap_or_default();
    let prefix = format!("dex-{version}-");
    std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().join("dex"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Dex {version} not found (no $AUTHGATE_DEX_BIN, nothing in {}): run scripts/test.sh",
                cache.display()
            )
        })
}

fn issuer_for(addr: SocketAddr) -> String {
    format!("http://{addr}/dex")
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON")
}
