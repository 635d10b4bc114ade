//! 389 Directory Server, FreeIPA's own directory server, laid out like
//! FreeIPA (`tests/e2e/dirsrv/`): users under `cn=users,cn=accounts`, user
//! groups (`groupOfNames` + `ipaUserGroup`, `posixGroup` when POSIX,
//! `member` = user DNs) under `cn=groups,cn=accounts`, Dex's service account
//! under `cn=sysaccounts,cn=etc`, the memberOf plugin on. Served over LDAPS
//! with a test CA (for Dex) and plain LDAP (for the harness's own
//! ldapmodify), both on loopback.
//!
//! The instance is written by hand, as `dscreate` would but without its
//! `systemctl` calls: `dse.ldif` from the package's own template, an NSS
//! database with the test certificate, then `ns-slapd -D <dir>` in the
//! foreground and the directory loaded over LDAP. It is up in about a
//! second.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{ChildGuard, free_port, require_program, run_ok};
use super::tls::TestCa;
use super::{repo_root, temp_dir};

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
    /// POSIX groups at start (`cn`), before a test changes them: the
    /// groups the seed's `groupSearch.filter` finds. Everyone is also in
    /// the non-POSIX `ipausers`, which that filter misses.
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
    groups: &["devops", "admins"],
};
/// Not in `devops`: denied by the seed's policy.
pub const BOB: User = User {
    uid: "bob",
    password: "bob-secret",
    email: "bob@example.test",
    display_name: "Bob Baker",
    uid_number: 1_200_002,
    groups: &[],
};
/// In `devops`, for tests that remove her from it.
pub const CAROL: User = User {
    uid: "carol",
    password: "carol-secret",
    email: "carol@example.test",
    display_name: "Carol Carter",
    uid_number: 1_200_003,
    groups: &["devops"],
};

const ROOT_DN: &str = "cn=Directory Manager";

/// Where Debian's `389-ds-base` keeps what `dscreate` builds an instance from.
const DATA_DIR: &str = "/usr/share/dirsrv/data";
/// The NSS nickname 389-ds serves LDAPS with (`cn=RSA,cn=encryption`).
const CERT_NICKNAME: &str = "Server-Cert";

/// A running 389-ds instance. Dropping it kills `ns-slapd` (with its process
/// group) and removes its directory.
pub struct Dirsrv {
    child: ChildGuard,
    ldap: SocketAddr,
    ldaps: SocketAddr,
    ca_pem: PathBuf,
    root_pw: String,
    dir: tempfile::TempDir,
}

impl Dirsrv {
    /// Creates an instance, starts it on two free loopback ports (LDAP and
    /// LDAPS) and loads `tests/e2e/dirsrv/directory.ldif`.
    pub async fn start() -> Dirsrv {
        Self::start_with_ca(&TestCa::new("authgate e2e LDAP CA")).await
    }

    /// Like [`Dirsrv::start`], with the LDAPS certificate issued by `ca`.
    pub async fn start_with_ca(ca: &TestCa) -> Dirsrv {
        let started = std::time::Instant::now();
        let ns_slapd = require_program("ns-slapd", None);
        let pwdhash = require_program("pwdhash", None);
        require_program("ldapmodify", None);
        let dir = temp_dir("dirsrv");
        let d = dir.path();
        for sub in [
            "schema", "db", "dbhome", "log", "run", "lock", "tmp", "ldif", "bak",
        ] {
            std::fs::create_dir(d.join(sub)).expect("create instance dir");
        }
        let fixtures = repo_root().join("tests/e2e/dirsrv");
        // The instance's own schema: 389-ds reads the system schema from
        // its data dir, then these (`99user.ldif` must exist).
        std::fs::write(d.join("schema/99user.ldif"), "dn: cn=schema\n").expect("write 99user");
        std::fs::copy(
            fixtures.join("60freeipa-subset.ldif"),
            d.join("schema/60freeipa-subset.ldif"),
        )
        .expect("copy the FreeIPA schema subset");
        let ca_pem = ca.write_cert(d);
        nss_db(d, ca, &ca_pem);
        let root_pw = format!("root-{}", rand_hex());
        // 389-ds refuses a clear-text root password in dse.ldif.
        let root_hash = run_ok(
            "pwdhash",
            Command::new(pwdhash).args(["-s", "SSHA512", &root_pw]),
        );

        let mut attempt = 0;
        loop {
            attempt += 1;
            let ldap = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let ldaps = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            std::fs::write(
                d.join("dse.ldif"),
                dse_ldif(d, ldap, ldaps, root_hash.trim()),
            )
            .expect("write dse.ldif");
            let mut cmd = Command::new(&ns_slapd);
            // `-d 0`: stay in the foreground; the log is `log/errors`.
            cmd.arg("-D")
                .arg(d)
                .arg("-i")
                .arg(d.join("run/ns-slapd.pid"))
                .args(["-d", "0"]);
            let mut child = ChildGuard::spawn("ns-slapd", cmd, &d.join("ns-slapd.out"));
            // A port taken between free_port() and bind makes ns-slapd exit
            // at once; try again with new ports.
            let deadline = tokio::time::Instant::now() + super::process::READY_TIMEOUT;
            let exited = loop {
                if child.check_running().is_err() {
                    break true;
                }
                if tokio::net::TcpStream::connect(ldaps).await.is_ok()
                    && tokio::net::TcpStream::connect(ldap).await.is_ok()
                {
                    break false;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "ns-slapd not listening on {ldap} and {ldaps}\n{}",
                    errors_log(d)
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            };
            if exited {
                assert!(
                    attempt < 3,
                    "ns-slapd exited\n--- errors ---\n{}\n--- output ---\n{}",
                    errors_log(d),
                    child.log()
                );
                for stale in ["run/ns-slapd.pid", "lock/server"] {
                    let _ = std::fs::remove_dir_all(d.join(stale));
                    let _ = std::fs::remove_file(d.join(stale));
                }
                std::fs::create_dir_all(d.join("lock/server")).expect("lock dir");
                continue;
            }
            let dirsrv = Dirsrv {
                child,
                ldap,
                ldaps,
                ca_pem,
                root_pw,
                dir,
            };
            dirsrv.ldapmodify(&["-a"], &fixtures.join("directory.ldif"));
            eprintln!(
                "389-ds instance created, started and loaded in {:?}",
                started.elapsed()
            );
            return dirsrv;
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

    /// The instance's error log and output so far (for failure messages).
    pub fn log(&self) -> String {
        format!("{}{}", errors_log(self.dir.path()), self.child.log())
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

    /// Disables `user` as FreeIPA's `ipa user-disable` does
    /// (`nsAccountLock: TRUE`): 389-ds refuses the user's password from now
    /// on; whether a search still finds the entry is up to the filter.
    pub fn disable(&self, user: &User) {
        self.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: nsAccountLock\nnsAccountLock: TRUE\n",
            user.dn()
        ));
    }

    /// Deletes `user`'s entry (`ipa user-del`); the memberOf plugin's
    /// counterpart, referential integrity, is off as in the template, so
    /// the groups still name the deleted DN.
    pub fn delete(&self, user: &User) {
        self.modify(&format!("dn: {}\nchangetype: delete\n", user.dn()));
    }

    /// Makes group `group` (`cn`) non-POSIX, as FreeIPA creates it with
    /// `ipa group-add --nonposix`: no `posixGroup`, no `gidNumber`.
    pub fn make_non_posix(&self, group: &str) {
        self.modify(&format!(
            "dn: cn={group},{GROUPS_DN}\nchangetype: modify\ndelete: objectClass\n\
             objectClass: posixGroup\n-\ndelete: gidNumber\n"
        ));
    }

    /// Applies an LDIF change as the directory manager over plain LDAP.
    pub fn modify(&self, ldif: &str) {
        let path = self.dir.path().join(format!("change-{}.ldif", rand_hex()));
        std::fs::write(&path, ldif).expect("write change LDIF");
        self.ldapmodify(&[], &path);
    }

    /// `ldapmodify <args> -f <ldif>` as the directory manager.
    fn ldapmodify(&self, args: &[&str], ldif: &Path) {
        run_ok(
            "ldapmodify",
            Command::new("ldapmodify")
                .args(args)
                .args(["-x", "-H", &self.ldap_url(), "-D", ROOT_DN])
                .args(["-w", &self.root_pw, "-f"])
                .arg(ldif),
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

/// `dse.ldif` as `dscreate` writes it: the package's template with the
/// instance's paths, one backend for [`SUFFIX`], LDAPS on, both listeners
/// on loopback only, and the memberOf plugin on (FreeIPA has it on).
fn dse_ldif(d: &Path, ldap: SocketAddr, ldaps: SocketAddr, root_hash: &str) -> String {
    let dir = path_str(d);
    let user = run_ok("id -un", Command::new("id").arg("-un"));
    let vars: Vec<(&str, String)> = vec![
        ("schema_dir", format!("{dir}/schema")),
        ("lock_dir", format!("{dir}/lock")),
        ("tmp_dir", format!("{dir}/tmp")),
        ("cert_dir", dir.clone()),
        ("ldif_dir", format!("{dir}/ldif")),
        ("bak_dir", format!("{dir}/bak")),
        ("run_dir", format!("{dir}/run")),
        ("inst_dir", dir.clone()),
        ("log_dir", format!("{dir}/log")),
        ("fqdn", "localhost".to_owned()),
        ("ds_port", ldap.port().to_string()),
        ("ds_user", user.trim().to_owned()),
        ("rootdn", ROOT_DN.to_owned()),
        ("ds_passwd", root_hash.to_owned()),
        ("ldapi_enabled", "off".to_owned()),
        ("ldapi", format!("{dir}/run/ldapi")),
        ("ldapi_autobind", "off".to_owned()),
        ("ds_suffix", SUFFIX.to_owned()),
        ("config_dir", "/etc/dirsrv/config".to_owned()),
        ("db_dir", format!("{dir}/db")),
        ("db_home_dir", format!("{dir}/dbhome")),
        ("db_lib", "bdb".to_owned()),
        ("ds_bename", "userRoot".to_owned()),
    ];
    let template = read(&Path::new(DATA_DIR).join("template-dse.ldif"));
    let suffix = read(&Path::new(DATA_DIR).join("template-suffix-db.ldif"));
    // One blank line between entries: 389-ds stops reading dse.ldif at two.
    let suffix: String = suffix
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut dse = format!("{}\n\n{}", template.trim_end(), suffix.trim_start());
    for (key, value) in &vars {
        dse = dse.replace(&format!("%{key}%"), value);
    }
    assert!(
        !dse.lines()
            .any(|l| !l.starts_with('#') && l.matches('%').count() >= 2),
        "a placeholder of the 389-ds template is not filled in: {}",
        dse.lines()
            .find(|l| l.matches('%').count() >= 2)
            .unwrap_or("")
    );
    let edits = [
        (
            format!("nsslapd-port: {}\n", ldap.port()),
            format!(
                "nsslapd-port: {}\nnsslapd-listenhost: {}\nnsslapd-security: on\n\
                 nsslapd-secureport: {}\nnsslapd-securelistenhost: {}\n",
                ldap.port(),
                ldap.ip(),
                ldaps.port(),
                ldaps.ip()
            ),
        ),
        (
            "nsslapd-plugininitfunc: memberof_postop_init\n\
             nsslapd-plugintype: betxnpostoperation\n\
             nsslapd-pluginenabled: off\n"
                .to_owned(),
            "nsslapd-plugininitfunc: memberof_postop_init\n\
             nsslapd-plugintype: betxnpostoperation\n\
             nsslapd-pluginenabled: on\n"
                .to_owned(),
        ),
    ];
    for (from, to) in edits {
        assert!(
            dse.contains(&from),
            "the 389-ds template changed; not found:\n{from}"
        );
        dse = dse.replacen(&from, &to, 1);
    }
    dse
}

/// The instance's NSS database (389-ds reads certificates from nothing
/// else): the test CA trusted, the server certificate and key under
/// [`CERT_NICKNAME`], no database password.
fn nss_db(d: &Path, ca: &TestCa, ca_pem: &Path) {
    let certutil = require_program("certutil", None);
    let pk12util = require_program("pk12util", None);
    let openssl = require_program("openssl", None);
    let db = format!("sql:{}", path_str(d));
    let (cert, key) = ca
        .issue(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .write(d, "server");
    let p12 = d.join("server.p12");
    run_ok(
        "certutil -N",
        Command::new(&certutil).args(["-N", "-d", &db, "--empty-password"]),
    );
    run_ok(
        "openssl pkcs12",
        Command::new(openssl)
            .args([
                "pkcs12",
                "-export",
                "-name",
                CERT_NICKNAME,
                "-passout",
                "pass:p12",
            ])
            .arg("-in")
            .arg(&cert)
            .arg("-inkey")
            .arg(&key)
            .arg("-out")
            .arg(&p12),
    );
    run_ok(
        "pk12util",
        Command::new(pk12util)
            .args(["-d", &db, "-W", "p12", "-i"])
            .arg(&p12),
    );
    run_ok(
        "certutil -A",
        Command::new(certutil)
            .args([
                "-A",
                "-d",
                &db,
                "-n",
                "authgate e2e CA",
                "-t",
                "CT,,",
                "-a",
                "-i",
            ])
            .arg(ca_pem),
    );
}

/// 389-ds's error log (it writes little to stdout).
fn errors_log(d: &Path) -> String {
    std::fs::read_to_string(d.join("log/errors")).unwrap_or_default()
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
