//! Managing sessions from outside the request path: `authgate sessions list
//! | revoke` and the embedded store's admin socket.
//!
//! The command works on the configured store. Redis it uses directly, so
//! it works with every replica down, and each deletion reaches the running
//! replicas through the change channel. An embedded (redb) file is locked
//! by the server that holds it: then the command asks that server over a
//! unix socket beside the file ([`socket_path`]), whose file permissions
//! (owner only) are the access control; with no server running, it opens
//! the file itself. Every action is one audit log line: who, what, whose.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::app::App;
use crate::clock::SystemClock;
use crate::config::{Config, SessionStoreConfig};
use crate::session::{
    EmbeddedStore, RedisStore, Reply, Request, Scope, SessionIndex, SessionInfo, Target, perform,
};

/// Longest request line the socket reads.
const MAX_REQUEST: u64 = 64 * 1024;

/// `authgate sessions …`.
#[derive(clap::Args, Debug)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub command: SessionsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum SessionsCommand {
    /// List live sessions: whose, since when, from which address and device.
    List {
        /// Only this user's (email, or subject for users without one).
        #[arg(long)]
        user: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End sessions now, on every replica.
    Revoke(RevokeArgs),
}

/// Exactly one of `--user`, `--session`, `--all`.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// Every session of this user (email, or subject).
    #[arg(long)]
    user: Option<String>,
    /// One session, by the id `sessions list` shows.
    #[arg(long)]
    session: Option<String>,
    /// Every session of every user.
    #[arg(long)]
    all: bool,
}

impl RevokeArgs {
    fn target(&self) -> Target {
        match (&self.user, &self.session) {
            (Some(user), _) => Target::User(user.clone()),
            (_, Some(id)) => Target::Session(id.clone()),
            _ => Target::All,
        }
    }
}

/// The admin socket of an embedded store file: beside it.
pub fn socket_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".admin.sock");
    PathBuf::from(name)
}

/// `authgate sessions …`: prints the sessions listed or ended.
pub async fn run(config: Config, args: SessionsArgs) -> Result<(), String> {
    crate::telemetry::init(config.log_format, "warn,authgate::audit=info", None)?;
    let (request, json) = match &args.command {
        SessionsCommand::List { user, json } => (Request::List { user: user.clone() }, *json),
        SessionsCommand::Revoke(revoke) => (
            Request::Revoke {
                target: revoke.target(),
            },
            false,
        ),
    };
    let sessions = match &config.session_store {
        SessionStoreConfig::Memory => {
            return Err(
                "the memory session store lives inside the server; use its admin API \
                 (/oauth2/admin/sessions)"
                    .into(),
            );
        }
        SessionStoreConfig::Redis(url) => {
            let store = RedisStore::open(url).map_err(|e| e.to_string())?;
            let scope = Scope::Offline(SessionIndex::new(Arc::new(store)));
            perform(&scope, &request, &os_user())
                .await
                .map_err(|e| crate::fault::error_chain(&e))?
        }
        SessionStoreConfig::Embedded(path) => embedded(path, &request).await?,
    };
    print!("{}", render(&request, &sessions, json));
    Ok(())
}

/// Through the server's socket when one answers, else on the file.
async fn embedded(path: &Path, request: &Request) -> Result<Vec<SessionInfo>, String> {
    let socket = socket_path(path);
    match UnixStream::connect(&socket).await {
        Ok(stream) => return ask(stream, request).await,
        // No server, or one that died and left its socket behind.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) => {}
        Err(e) => return Err(format!("cannot reach {}: {e}", socket.display())),
    }
    let path = path.to_owned();
    let store =
        tokio::task::spawn_blocking(move || EmbeddedStore::open(&path, Arc::new(SystemClock)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                format!(
                    "{e} (a running authgate holds the file, but its admin socket does not answer)"
                )
            })?;
    let scope = Scope::Offline(SessionIndex::new(Arc::new(store)));
    perform(&scope, request, &os_user())
        .await
        .map_err(|e| crate::fault::error_chain(&e))
}

/// One request over the admin socket.
async fn ask(stream: UnixStream, request: &Request) -> Result<Vec<SessionInfo>, String> {
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(read.take(16 * 1024 * 1024))
        .read_line(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    match serde_json::from_str::<Reply>(&answer) {
        Ok(Reply::Sessions(sessions)) => Ok(sessions),
        Ok(Reply::Error(error)) => Err(format!("the server refused: {error}")),
        Err(_) => Err("the server's admin socket gave no answer".into()),
    }
}

/// Who runs the command, for the audit line.
fn os_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    match (name, uid) {
        (Some(name), Some(uid)) => format!("unix:{name}(uid {uid})"),
        (None, Some(uid)) => format!("unix:uid {uid}"),
        (Some(name), None) => format!("unix:{name}"),
        (None, None) => "unix:unknown".into(),
    }
}

/// The command's output: a table (or JSON) of the sessions.
fn render(request: &Request, sessions: &[SessionInfo], json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(sessions).unwrap_or_default() + "\n";
    }
    let mut out = String::new();
    if let Request::Revoke { target } = request {
        let _ = writeln!(out, "revoked {} session(s) ({target})", sessions.len());
        if sessions.is_empty() {
            return out;
        }
    } else if sessions.is_empty() {
        return "no live sessions\n".into();
    }
    let rows: Vec<[String; 6]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.user.clone(),
                utc(s.started_at),
                utc(s.expires_at),
                s.client_addr.clone().unwrap_or_else(|| "-".into()),
                s.user_agent.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = ["SESSION", "USER", "STARTED", "EXPIRES", "CLIENT", "DEVICE"].map(String::from);
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .chain([&head])
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// Unix seconds as `2026-12-06T03:30:01Z`.
fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// The server's end of the admin socket; the socket file goes with it.
pub struct AdminSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// With an embedded store, listens on its admin socket (owner-only
/// permissions: the access control). `None` for other stores.
pub fn listen(app: &Arc<App>) -> std::io::Result<Option<AdminSocket>> {
    let SessionStoreConfig::Embedded(store) = &app.config().session_store else {
        return Ok(None);
    };
    let path = socket_path(store);
    // A socket left by a server that died; the store file's lock (held by
    // now) means no other server uses it.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Bound under a temporary name, made owner-only, then renamed: others
    // never see it with wider permissions.
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&temporary, &path)?;
    let app = Arc::clone(app);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_one(Arc::clone(&app), stream));
        }
    });
    Ok(Some(AdminSocket { path, task }))
}

async fn serve_one(app: Arc<App>, stream: UnixStream) {
    let actor = match stream.peer_cred() {
        Ok(cred) => format!("unix-socket:uid {}", cred.uid()),
        Err(_) => "unix-socket:unknown".into(),
    };
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let reply = match BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await
    {
        Err(e) => Reply::Error(e.to_string()),
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(_) => Reply::Error("not a request".into()),
            Ok(request) => match perform(&Scope::Server(app.sessions()), &request, &actor).await {
                Ok(sessions) => Reply::Sessions(sessions),
                Err(error) => Reply::Error(error.to_string()),
            },
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = write.write_all(&out).await;
}
