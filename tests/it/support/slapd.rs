//! OpenLDAP `slapd` laid out like FreeIPA (`tests/e2e/ldap/`): users under
//! `cn=users,cn=accounts`, groups (`groupOfNames` + `posixGroup`, `member` =
//! user DNs) under `cn=groups,cn=accounts`, Dex's service account under
//! `cn=sysaccounts,cn=etc`. Served over LDAPS with a test CA (for Dex) and
//! plain LDAP (for the harness's own ldapmodify), both on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{ChildGuard, free_port, require_program, run_ok};
use super::tls::TestCa;
use super::{render, repo_root, temp_dir};

/// The directory's base DN.
pub const SUFFIX: &str = "dc=example,dc=test";
/// Where the users live.
pub const USERS_DN: &str = "cn=users,cn=accounts,dc=example,dc=test";
/// Where the groups live.
pub const GROUPS_DN: &str = "cn=groups,cn=accounts,dc=example,dc=test";
/// The account Dex binds with, and its password (as in `directory.ldif`).
pub const DEX_BIND_DN: &str = "uid=dex,cn=sysaccounts,cn=etc,dc=example,dc=test";
pub const DEX_BIND_PW: &str = "dex-service-secret";

/// A person in the directory, as `directory.ldif` defines them.
#[derive(Clone, Copy, Debug)]
pub struct User {
    pub uid: &'static str,
    pub password: &'static str,
    pub email: &'static str,
    pub display_name: &'static str,
    pub uid_number: u32,
    /// Groups at start (`cn`), before a test changes them.
    pub groups: &'static [&'static str],
}

impl User {
    /// The entry's DN.
    pub fn dn(&self) -> String {
        format!("uid={},{USERS_DN}", self.uid)
    }
}

/// In `devops` (and `admins`): allowed by the seed's policy.
pub const ALICE: User = User {
    uid: "alice",
    password: "alice-secret",
    email: "alice@example.test",
    display_name: "Alice Archer",
    uid_number: 1_200_001,
    groups: &["devops", "admins", "ipausers"],
};
/// Not in `devops`: denied by the seed's policy.
pub const BOB: User = User {
    uid: "bob",
    password: "bob-secret",
    email: "bob@example.test",
    display_name: "Bob Baker",
    uid_number: 1_200_002,
    groups: &["ipausers"],
};
/// In `devops`, for tests that remove her from it.
pub const CAROL: User = User {
    uid: "carol",
    password: "carol-secret",
    email: "carol@example.test",
    display_name: "Carol Carter",
    uid_number: 1_200_003,
    groups: &["devops", "ipausers"],
};

const ROOT_DN: &str = "cn=Directory Manager,dc=example,dc=test";

/// A running slapd. Dropping it kills slapd and removes its directory.
pub struct Slapd {
    child: ChildGuard,
    ldap: SocketAddr,
    ldaps: SocketAddr,
    ca_pem: PathBuf,
    root_pw: String,
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Loads `tests/e2e/ldap/directory.ldif` into a new database and starts
    /// slapd on two free loopback ports (LDAP and LDAPS).
    pub async fn start() -> Slapd {
        Self::start_with_ca(&TestCa::new("authgate e2e LDAP CA")).await
    }

    /// Like [`Slapd::start`], with the LDAPS certificate issued by `ca`.
    pub async fn start_with_ca(ca: &TestCa) -> Slapd {
        let slapd = require_program("slapd", None);
        let slapadd = require_program("slapadd", None);
        require_program("ldapmodify", None);
        let dir = temp_dir("slapd");
        let d = dir.path();
        std::fs::create_dir(d.join("db")).expect("create db dir");
        let ca_pem = ca.write_cert(d);
        let (cert, key) = ca
            .issue(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .write(d, "slapd");
        let root_pw = format!("root-{}", rand_hex());
        let fixtures = repo_root().join("tests/e2e/ldap");
        let conf = render(
            &read(&fixtures.join("slapd.conf.tmpl")),
            &[
                ("FIXTURES", &path_str(&fixtures)),
                ("DIR", &path_str(d)),
                ("CA", &path_str(&ca_pem)),
                ("CERT", &path_str(&cert)),
                ("KEY", &path_str(&key)),
                ("ROOT_PW", &root_pw),
            ],
        );
        let conf_path = d.join("slapd.conf");
        std::fs::write(&conf_path, conf).expect("write slapd.conf");
        run_ok(
            "slapadd directory.ldif",
            Command::new(slapadd)
                .arg("-f")
                .arg(&conf_path)
                .arg("-l")
                .arg(fixtures.join("directory.ldif")),
        );

        let mut attempt = 0;
        loop {
            attempt += 1;
            let ldap = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let ldaps = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let mut cmd = Command::new(&slapd);
            // `-d 0`: stay in the foreground, log errors to stderr only.
            cmd.arg("-d")
                .arg("0")
                .arg("-f")
                .arg(&conf_path)
                .arg("-h")
                .arg(format!("ldap://{ldap}/ ldaps://{ldaps}/"));
            let mut child = ChildGuard::spawn("slapd", cmd, &d.join("slapd.log"));
            // A port taken between free_port() and bind makes slapd exit at
            // once; try again with new ports.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if attempt < 3 && child.check_running().is_err() {
                continue;
            }
            child.wait_for_port(ldap).await;
            child.wait_for_port(ldaps).await;
            return Slapd {
                child,
                ldap,
                ldaps,
                ca_pem,
                root_pw,
                dir,
            };
        }
    }

    /// `ldaps://127.0.0.1:<port>`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}", self.ldaps)
    }

    /// `127.0.0.1:<port>` of the LDAPS listener (Dex's `host`).
    pub fn ldaps_addr(&self) -> SocketAddr {
        self.ldaps
    }

    /// `ldap://127.0.0.1:<port>` (plain, for administration).
    pub fn ldap_url(&self) -> String {
        format!("ldap://{}", self.ldap)
    }

    /// The CA that issued the LDAPS certificate (Dex's `rootCA`).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// slapd's output so far (for failure messages).
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Removes `user` from group `group` (`cn`), as an admin would in FreeIPA.
    pub fn remove_from_group(&self, user: &User, group: &str) {
        self.modify(&format!(
            "dn: cn={group},{GROUPS_DN}\nchangetype: modify\ndelete: member\nmember: {}\n",
            user.dn()
        ));
    }

    /// Adds `user` to group `group` (`cn`).
    pub fn add_to_group(&self, user: &User, group: &str) {
        self.modify(&format!(
            "dn: cn={group},{GROUPS_DN}\nchangetype: modify\nadd: member\nmember: {}\n",
            user.dn()
        ));
    }

    /// Changes `user`'s password (e.g. to make a login fail from now on).
    pub fn set_password(&self, user: &User, password: &str) {
        self.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: userPassword\nuserPassword: {password}\n",
            user.dn()
        ));
    }

    /// Applies an LDIF change as the directory manager over plain LDAP.
    pub fn modify(&self, ldif: &str) {
        let path = self.dir.path().join(format!("change-{}.ldif", rand_hex()));
        std::fs::write(&path, ldif).expect("write change LDIF");
        run_ok(
            "ldapmodify",
            Command::new("ldapmodify")
                .args([
                    "-x",
                    "-H",
                    &self.ldap_url(),
                    "-D",
                    ROOT_DN,
                    "-w",
                    &self.root_pw,
                ])
                .arg("-f")
                .arg(&path),
        );
    }

    /// Runs `ldapsearch` over LDAPS (verifying the certificate with the test
    /// CA), bound as Dex's service account; returns the LDIF it prints.
    pub fn search_as_dex(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        run_ok(
            "ldapsearch",
            Command::new("ldapsearch")
                .env("LDAPTLS_CACERT", &self.ca_pem)
                .env("LDAPTLS_REQCERT", "demand")
                .args(["-LLL", "-x", "-H", &self.ldaps_url(), "-D", DEX_BIND_DN])
                .args(["-w", DEX_BIND_PW, "-b", base, filter])
                .args(attrs),
        )
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// 8 random hex digits, for throw-away names and passwords.
pub fn rand_hex() -> String {
    format!("{:08x}", rand::random::<u32>())
}
