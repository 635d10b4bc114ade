//! Live reload of `authgate.yaml`, on SIGHUP and when the file changes.
//!
//! A reload reads and validates the whole file and compiles its routes on a
//! blocking thread, away from the request path; only a file that passes
//! every check is used, and then the compiled policy is swapped in with one
//! atomic pointer store ([`PolicyInForce::replace`]). A decision loads the
//! policy once, so a request in flight finishes under the policy it started
//! with, and the next one sees the new policy; nothing waits on a lock.
//!
//! What a reload changes: **`policy`/`routes`** — who may reach which host
//! and path, `pass_identity_headers`, and the `rd` allow-list, which is
//! derived from the route hosts. Every other key (listeners, the session
//! store, the provider, cookie settings and secrets, `trusted_proxies`,
//! `refresh_interval`, logging) is fixed at start: when a reloaded file
//! changes one of them, the routes are still applied and each such key is
//! logged as "needs restart". Refusing the whole reload instead would block
//! a routine access change behind an unrelated edit (a Kubernetes ConfigMap
//! carries the whole file); applying the routes alone never mixes settings
//! that depend on each other, as routes depend on no other key.
//!
//! An invalid file changes nothing: the running configuration stays and the
//! problems are logged with file, line and column.
//!
//! [`PolicyInForce::replace`]: crate::in_force::PolicyInForce::replace

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::app::App;
use crate::config::{self, Config, ConfigErrors};
use crate::policy::Policy;

/// How long the file must be quiet before a change is read: editors and
/// `kubectl` write in several steps, and one reload should see the last.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Every problem, one per line, each with file, line and column.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The blocking task panicked or was cancelled (a bug of ours).
    #[error("reload task failed: {0}")]
    Task(String),
}

/// A reload that was applied.
#[derive(Debug)]
pub struct Reloaded {
    /// Routes now in force.
    pub routes: usize,
    /// Keys whose new value differs from the running one and waits for a
    /// restart (names only: never a value, some are secrets).
    pub needs_restart: Vec<&'static str>,
    /// The file's warnings (ignored proxy-only keys…), as at start.
    pub warnings: Vec<String>,
}

/// What a reload attempt found.
#[derive(Debug)]
pub enum Outcome {
    Applied(Reloaded),
    /// The file watcher fired but the bytes are those already read.
    Unchanged,
}

/// Looks up an environment variable (overrides, as at start).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Reloads one configuration file into one running [`App`].
pub struct Reloader {
    app: Arc<App>,
    path: PathBuf,
    env: EnvLookup,
    /// The SHA-256 of the bytes last read, so a watcher event that changed
    /// nothing (a ConfigMap sibling, an editor's swap file) costs no reload.
    /// A digest, not the bytes: a 1,000-route file is 100 KB kept forever.
    last: std::sync::Mutex<Option<[u8; 32]>>,
}

impl Reloader {
    /// Reloads `path` (the file `app` was started from), reading the
    /// environment as `serve` does.
    pub fn new(app: Arc<App>, path: PathBuf) -> Reloader {
        Reloader::with_env(app, path, Arc::new(|name| std::env::var(name).ok()))
    }

    /// Same with a given environment lookup (tests).
    pub fn with_env(app: Arc<App>, path: PathBuf, env: EnvLookup) -> Reloader {
        let last = std::fs::read(&path)
            .ok()
            .map(|bytes| Sha256::digest(bytes).into());
        Reloader {
            app,
            path,
            env,
            last: std::sync::Mutex::new(last),
        }
    }

    /// Reads, validates and compiles the file and swaps the policy in.
    /// Blocking (file I/O, regex compilation): [`Reloader::reload`] runs it
    /// off the runtime's worker threads. `force`: reload even if the bytes
    /// are unchanged (SIGHUP asks for it explicitly).
    pub fn reload_blocking(&self, force: bool) -> Result<Outcome, ReloadError> {
        let path = self.path.display().to_string();
        let bytes = std::fs::read(&self.path).map_err(|source| ReloadError::Read {
            path: path.clone(),
            source,
        })?;
        {
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *last == Some(digest) {
                return Ok(Outcome::Unchanged);
            }
            *last = Some(digest);
        }
        let text = String::from_utf8(bytes).map_err(|e| ReloadError::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let mut loaded =
            config::parse_str(&path, &text, &*self.env).map_err(ReloadError::Invalid)?;
        let policy = Policy::compile(std::mem::take(&mut loaded.config.routes));
        let routes = policy.len();
        self.app.replace_policy(Arc::new(policy));
        Ok(Outcome::Applied(Reloaded {
            routes,
            needs_restart: needs_restart(self.app.config(), &loaded.config),
            warnings: loaded.warnings,
        }))
    }

    /// [`Reloader::reload_blocking`] on a blocking thread.
    pub async fn reload(self: &Arc<Self>, force: bool) -> Result<Outcome, ReloadError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.reload_blocking(force))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))?
    }

    /// Starts reloading on SIGHUP and on changes to the file, until
    /// `shutdown` resolves. The signal handler and the watch are installed
    /// before this returns, so a SIGHUP sent after it never kills the
    /// process. A watch that cannot be set up (inotify limits) is logged;
    /// SIGHUP still works.
    pub fn spawn(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let changed = Arc::new(Notify::new());
        let watcher = match watch_file(&self.path, changed.clone()) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(
                    path = %self.path.display(),
                    %error,
                    "cannot watch the configuration file; reload with SIGHUP"
                );
                None
            }
        };
        Ok(tokio::spawn(async move {
            // Dropping the watcher stops it: keep it for the loop's life.
            let _watcher = watcher;
            tokio::pin!(shutdown);
            loop {
                let force = tokio::select! {
                    () = &mut shutdown => return,
                    _ = hangup.recv() => true,
                    () = changed.notified() => {
                        debounce(&changed).await;
                        false
                    }
                };
                let outcome = self.reload(force).await;
                let trigger = if force { "SIGHUP" } else { "file change" };
                if let Some(ok) = report(&outcome, trigger) {
                    self.app.metrics().config_reloaded(ok);
                }
            }
        }))
    }
}

/// Waits until no change was signalled for [`DEBOUNCE`].
async fn debounce(changed: &Notify) {
    loop {
        tokio::select! {
            () = changed.notified() => {},
            () = tokio::time::sleep(DEBOUNCE) => return,
        }
    }
}

/// Watches the file's directory, not the file: editors replace the file by
/// renaming, and a Kubernetes ConfigMap volume swaps a `..data` symlink
/// beside it, neither of which an inode watch on the file itself sees.
/// Whether the file really changed is decided by comparing its bytes.
fn watch_file(path: &Path, changed: Arc<Notify>) -> notify::Result<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    // Only events on the file itself, or on Kubernetes' `..data` link that
    // a ConfigMap update swaps: a busy directory (a log file, the embedded
    // store beside the config) must not keep the debounce from settling.
    let name = path.file_name().map(ToOwned::to_owned);
    let concerns_config = move |p: &PathBuf| {
        let file = p.file_name();
        file.is_some() && (file == name.as_deref() || file == Some(OsStr::new("..data")))
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(&concerns_config)) {
            changed.notify_one();
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Logs a reload's outcome; the one place that sees every reload.
/// Logs a reload's outcome; `Some(applied)` unless nothing changed.
fn report(outcome: &Result<Outcome, ReloadError>, trigger: &str) -> Option<bool> {
    let ok = match outcome {
        Ok(Outcome::Unchanged) => return None,
        Ok(Outcome::Applied(reloaded)) => {
            for warning in &reloaded.warnings {
                tracing::warn!("{warning}");
            }
            for key in &reloaded.needs_restart {
                tracing::warn!(
                    key,
                    "configuration reload: `{key}` changed and needs restart; the running value stays"
                );
            }
            tracing::info!(trigger, routes = reloaded.routes, "configuration reloaded");
            true
        }
        Err(error) => {
            tracing::error!(
                trigger,
                "configuration reload refused, the running configuration stays:\n{error}"
            );
            false
        }
    };
    Some(ok)
}

/// The keys outside `policy`/`routes` whose value differs, by their
/// configuration names. The exhaustive destructuring makes a new `Config`
/// field a compile error here until someone decides whether it reloads.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        address,
        grpc_address,
        authenticate_service_url,
        idp,
        cookie,
        session_store,
        refresh_interval,
        refresh_grace,
        trusted_proxies,
        admin_groups,
        // The top-level list is copied into the routes at validation, so it
        // reloads with them.
        routes: _,
        jwt_claims_headers: _,
        // Loaded from `templates_dir`, compared below.
        pages: _,
        signing,
        metrics_address,
        spoe_address,
        templates_dir,
        log_format,
        log_level,
        serving,
        tracing,
    } = new;
    let mut changed = Vec::new();
    let mut check = |key: &'static str, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("address", *address == running.address);
    check("grpc_address", *grpc_address == running.grpc_address);
    check(
        "authenticate_service_url",
        *authenticate_service_url == running.authenticate_service_url,
    );
    check("admin_groups", *admin_groups == running.admin_groups);
    check("idp_provider", idp.provider == running.idp.provider);
    check("idp_provider_url", idp.issuer_url == running.idp.issuer_url);
    check("idp_client_id", idp.client_id == running.idp.client_id);
    check(
        "idp_client_secret",
        idp.client_secret == running.idp.client_secret,
    );
    check("idp_scopes", idp.scopes == running.idp.scopes);
    check("idp_ca_file", idp.ca_file == running.idp.ca_file);
    check(
        "idp_tls_insecure_skip_verify",
        idp.insecure_skip_verify == running.idp.insecure_skip_verify,
    );
    check("idp_clock_skew", idp.clock_skew == running.idp.clock_skew);
    check(
        "idp_allowed_audiences",
        idp.allowed_audiences == running.idp.allowed_audiences,
    );
    check("signing_key", signing.key == running.signing.key);
    check(
        "previous_signing_keys",
        signing.previous == running.signing.previous,
    );
    check("cookie_name", cookie.name == running.cookie.name);
    check("cookie_domain", cookie.domain == running.cookie.domain);
    check("cookie_secure", cookie.secure == running.cookie.secure);
    check(
        "cookie_http_only",
        cookie.http_only == running.cookie.http_only,
    );
    check("cookie_expire", cookie.expire == running.cookie.expire);
    check(
        "cookie_idle_timeout",
        cookie.idle_timeout == running.cookie.idle_timeout,
    );
    check("cookie_secret", cookie.secret == running.cookie.secret);
    check(
        "previous_cookie_secrets",
        cookie.previous_secrets == running.cookie.previous_secrets,
    );
    check("session_store", *session_store == running.session_store);
    check(
        "refresh_interval",
        *refresh_interval == running.refresh_interval,
    );
    check("refresh_grace", *refresh_grace == running.refresh_grace);
    check(
        "trusted_proxies",
        *trusted_proxies == running.trusted_proxies,
    );
    check(
        "metrics_address",
        *metrics_address == running.metrics_address,
    );
    check("spoe_address", *spoe_address == running.spoe_address);
    check("templates_dir", *templates_dir == running.templates_dir);
    check("log_format", *log_format == running.log_format);
    check("log_level", *log_level == running.log_level);
    // The exporter is installed with the log subscriber, once.
    check("tracing_*", *tracing == running.tracing);
    // The listeners read these once, when they start.
    let was = &running.serving;
    check(
        "max_connections",
        serving.max_connections == was.max_connections,
    );
    check(
        "max_connections_per_peer",
        serving.max_connections_per_peer == was.max_connections_per_peer,
    );
    check(
        "header_read_timeout",
        serving.header_read_timeout == was.header_read_timeout,
    );
    check("timeout_idle", serving.idle_timeout == was.idle_timeout);
    check(
        "shutdown_delay",
        serving.shutdown_delay == was.shutdown_delay,
    );
    check(
        "shutdown_timeout",
        serving.shutdown_timeout == was.shutdown_timeout,
    );
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::clock::SystemClock;
    use crate::identity::Identity;
    use crate::policy::{Facts, Policy, Target, Verdict};

    /// A complete configuration whose one route lets `group` into
    /// `https://app.example.com`; `extra` is appended at the top level.
    fn yaml(group: &str, extra: &str) -> String {
        format!(
            "authenticate_service_url: https://auth.example.com\n\
             idp_provider_url: https://dex.example.com/dex\n\
             idp_client_id: authgate\n\
             idp_client_secret: client-secret-value\n\
             cookie_secret: lOPkHX6t3yWTBJXzh8uuLw4Lx0zmrmgGWDn3wSIW5Mw=\n\
             session_store: memory\n\
             {extra}\
             policy:\n  - from: https://app.example.com\n    allowed_groups: [{group}]\n"
        )
    }

    fn env(_: &str) -> Option<String> {
        None
    }

    /// An app started from `text`, and a reloader over the file it came from.
    fn start(text: &str) -> (tempfile::TempDir, Arc<App>, Arc<Reloader>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, text).unwrap();
        let loaded = config::load_file(&path, &env).unwrap();
        let app = App::new(loaded.config, Arc::new(SystemClock)).unwrap();
        let reloader = Arc::new(Reloader::with_env(app.clone(), path, Arc::new(env)));
        (dir, app, reloader)
    }

    fn rewrite(dir: &tempfile::TempDir, text: &str) {
        std::fs::write(dir.path().join("authgate.yaml"), text).unwrap();
    }

    /// Is a member of `group` allowed into the app under `policy`?
    fn admits(policy: &Policy, group: &str) -> bool {
        let identity = Identity {
            subject: "u1".into(),
            groups: vec![group.into()],
            ..Identity::default()
        };
        let target = Target::parse("https://app.example.com/x").unwrap();
        matches!(
            policy.evaluate(&target, &Facts::who(Some(&identity))),
            Verdict::Allow { .. }
        )
    }

    /// A valid file swaps the policy: the new group is let in, the old one
    /// no longer; a policy loaded before the swap (a request in flight)
    /// still answers as it did.
    #[test]
    fn reload_swaps_the_policy() {
        let (dir, app, reloader) = start(&yaml("ops", ""));
        let in_flight = app.policy();
        rewrite(&dir, &yaml("dev", ""));
        let outcome = reloader.reload_blocking(false).unwrap();
        let Outcome::Applied(reloaded) = outcome else {
            panic!("not applied: {outcome:?}")
        };
        assert_eq!(reloaded.routes, 1);
        assert!(reloaded.needs_restart.is_empty());
        let now = app.policy();
        assert!(admits(&now, "dev") && !admits(&now, "ops"));
        assert!(admits(&in_flight, "ops") && !admits(&in_flight, "dev"));
    }

    /// A file with a mistake is refused with its line and column, and the
    /// running policy stays.
    #[test]
    fn invalid_file_keeps_the_running_policy() {
        let (dir, app, reloader) = start(&yaml("ops", ""));
        rewrite(&dir, &yaml("dev", "cookie_expire: forever\n"));
        let error = reloader.reload_blocking(false).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ReloadError::Invalid(_)), "{message}");
        assert!(message.contains("authgate.yaml:7:"), "{message}");
        assert!(message.contains("cookie_expire"), "{message}");
        assert!(admits(&app.policy(), "ops"));
        assert!(!admits(&app.policy(), "dev"));
    }

    /// A route regex that does not compile is refused with its position,
    /// and the running policy stays.
    #[test]
    fn bad_regex_keeps_the_running_policy() {
        let (dir, app, reloader) = start(&yaml("ops", ""));
        rewrite(
            &dir,
            &format!("{}    regex: \"/(unclosed\"\n", yaml("dev", "")),
        );
        let error = reloader.reload_blocking(false).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("authgate.yaml:10:12: policy[0].regex"),
            "{error}"
        );
        assert!(admits(&app.policy(), "ops"));
    }

    /// The watcher's reload skips a file whose bytes did not change; SIGHUP's
    /// forced reload does not.
    #[test]
    fn unchanged_file_is_skipped_unless_forced() {
        let (_dir, _app, reloader) = start(&yaml("ops", ""));
        assert!(matches!(
            reloader.reload_blocking(false).unwrap(),
            Outcome::Unchanged
        ));
        assert!(matches!(
            reloader.reload_blocking(true).unwrap(),
            Outcome::Applied(_)
        ));
    }

    /// Keys fixed at start are named (never their values) when the file
    /// changes them, and the routes are applied all the same.
    #[test]
    fn restart_keys_are_named_and_routes_still_apply() {
        let (dir, app, reloader) = start(&yaml("ops", ""));
        let changed = yaml("dev", "cookie_name: _other\naddress: 127.0.0.1:9999\n")
            .replace("client-secret-value", "rotated-secret-value");
        rewrite(&dir, &changed);
        let Outcome::Applied(reloaded) = reloader.reload_blocking(false).unwrap() else {
            panic!("not applied")
        };
        assert_eq!(
            reloaded.needs_restart,
            ["address", "idp_client_secret", "cookie_name"]
        );
        assert!(!format!("{reloaded:?}").contains("rotated-secret-value"));
        assert!(admits(&app.policy(), "dev"));
        assert_eq!(app.config().cookie.name, "_authgate");
    }
}
