//! Child processes for the harness: spawned in their own process group with
//! output in a log file, killed (the whole group) in `Drop`, and waited for
//! with bounded polls that put the child's log into the panic message.

use std::fs::File;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// How long any piece may take to become ready before the test fails.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds `name` (a program on `PATH`, or the path in environment variable
/// `env`) or panics telling the reader how to install it.
pub fn require_program(name: &str, env: Option<&str>) -> PathBuf {
    if let Some(var) = env
        && let Some(path) = std::env::var_os(var)
    {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{name} not found at {} (from ${var}): run scripts/test.sh",
            path.display()
        );
        return path;
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| match env {
            Some(var) => {
                panic!("{name} not found (set ${var} or put it on PATH): run scripts/test.sh")
            }
            None => panic!("{name} not found: run scripts/test.sh"),
        })
}

/// A loopback port that was free a moment ago. Programs that take their port
/// from a config file (nginx, 389-ds, Dex, chromedriver) cannot be handed an
/// open socket, so callers retry their start when the port was taken since.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A running child process, killed with its whole process group on drop.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group, stdout and stderr appended to
    /// `log`, stdin closed.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> ChildGuard {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the process writes its output.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Err(description)` if the process has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} was stopped", self.name));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited with {status}", self.name)),
            Err(e) => Err(format!("{}: wait failed: {e}", self.name)),
        }
    }

    /// Sends signal `name` (`TERM`, `HUP`, …) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("the process is running");
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits at most `timeout` for the process to exit by itself; panics
    /// with its log if it does not.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("the process was not killed");
            if let Some(status) = child.try_wait().expect("wait for the process") {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "{} still running after {timeout:?}\n--- log ---\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process group and reaps the child. Idempotent.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The group id is the child's pid (process_group(0)); `kill -- -pgid`
        // also ends what it spawned (Chromium under chromedriver).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Polls `probe` until it returns `true`, at most `timeout`; panics with
    /// the process's log if the process exits or time runs out first.
    pub async fn wait_until<F, Fut>(&mut self, what: &str, timeout: Duration, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if let Err(e) = self.check_running() {
                panic!(
                    "{e} before {what}\n--- {} log ---\n{}",
                    self.name,
                    self.log()
                );
            }
            if probe().await {
                return;
            }
            if started.elapsed() > timeout {
                panic!(
                    "{} not ready after {timeout:?}: {what}\n--- {} log ---\n{}",
                    self.name,
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `addr` accepts TCP connections.
    pub async fn wait_for_port(&mut self, addr: SocketAddr) {
        self.wait_until(
            &format!("listening on {addr}"),
            READY_TIMEOUT,
            || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
        )
        .await;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a short command to completion; panics with its output on failure.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
