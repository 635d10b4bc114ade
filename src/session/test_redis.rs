//! Real redis-server processes for the lib tests of the Redis store:
//! standalone, a sentinel watching it, and a one-node Redis Cluster. Each
//! runs on a free loopback port in its own temporary directory and is
//! killed on drop. A missing `redis-server` fails the test (never a skip):
//! `scripts/test.sh` installs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One running redis-server (or sentinel).
pub(crate) struct TestRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(args: &[&str], dir: &tempfile::TempDir, port: u16) -> Child {
    let log = std::fs::File::create(dir.path().join("redis.log")).expect("log file");
    let child = Command::new("redis-server")
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}); install it (scripts/test.sh does)")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}: {}",
            std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl TestRedis {
    fn start_with(extra: &[&str]) -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("authgate-redis-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let port_text = port.to_string();
        let mut args = vec![
            "--bind",
            "127.0.0.1",
            "--port",
            &port_text,
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        args.extend_from_slice(extra);
        let child = spawn(&args, &dir, port);
        TestRedis {
            child: Some(child),
            port,
            dir,
        }
    }

    /// A standalone server.
    pub(crate) fn start() -> TestRedis {
        TestRedis::start_with(&[])
    }

    /// A cluster-mode server owning every slot: a real one-node cluster.
    pub(crate) fn start_cluster_node() -> TestRedis {
        let node = TestRedis::start_with(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]);
        let client = redis::Client::open(node.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .exec(&mut con)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).unwrap();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster not ok: {info}");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    /// A sentinel monitoring this server as master `name`.
    pub(crate) fn start_sentinel(&self, name: &str) -> TestRedis {
        let dir = tempfile::Builder::new()
            .prefix("authgate-sentinel-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\ndir {}\nsentinel monitor {name} 127.0.0.1 {} 1\n",
                dir.path().display(),
                self.port
            ),
        )
        .unwrap();
        let child = spawn(&[conf.to_str().unwrap(), "--sentinel"], &dir, port);
        let sentinel = TestRedis {
            child: Some(child),
            port,
            dir,
        };
        sentinel.wait_for_master(name);
        sentinel
    }

    /// Waits until this sentinel has reached the master it monitors: a
    /// sentinel that listens but is still connecting to its master makes
    /// the store's first command wait out its timeout on a loaded machine.
    fn wait_for_master(&self, name: &str) {
        let client = redis::Client::open(self.url()).expect("sentinel url");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let flags = client
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut conn| {
                    redis::cmd("SENTINEL")
                        .arg("MASTER")
                        .arg(name)
                        .query::<std::collections::HashMap<String, String>>(&mut conn)
                })
                .ok()
                .and_then(|master| master.get("flags").cloned())
                .unwrap_or_default();
            if flags == "master" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel did not reach its master (flags {flags:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (for "unreachable" checks).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = &self.dir;
    }
}
