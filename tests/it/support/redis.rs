//! Redis (Debian's `redis-server`) for the shared session store: no
//! persistence, loopback only, a free port, killed on drop.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use super::process::{ChildGuard, free_port, require_program};
use super::temp_dir;

/// A running redis-server.
pub struct Redis {
    child: ChildGuard,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts redis-server on a free loopback port; returns once it accepts
    /// connections.
    pub async fn start() -> Redis {
        let bin = require_program("redis-server", None);
        let dir = temp_dir("redis");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let mut child = spawn(&bin, addr, dir.path());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if attempt < 3 && child.check_running().is_err() {
                continue;
            }
            child.wait_for_port(addr).await;
            return Redis { child, addr, dir };
        }
    }

    /// `redis://127.0.0.1:<port>` (authgate's `session_store`).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills redis-server (for "store unreachable" scenarios).
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Starts redis-server again on the same port after [`Redis::stop`]
    /// (empty: nothing is persisted); returns once it accepts connections.
    pub async fn restart(&mut self) {
        let bin = require_program("redis-server", None);
        self.child = spawn(&bin, self.addr, self.dir.path());
        self.child.wait_for_port(self.addr).await;
    }

    /// redis-server's output so far.
    pub fn log(&self) -> String {
        self.child.log()
    }
}

/// redis-server on `addr` with its files in `dir`: no persistence, loopback
/// only, its log in `dir/redis.log`.
fn spawn(bin: &Path, addr: SocketAddr, dir: &Path) -> ChildGuard {
    let mut cmd = Command::new(bin);
    cmd.args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .arg("--dir")
        .arg(dir);
    ChildGuard::spawn("redis-server", cmd, &dir.join("redis.log"))
}
