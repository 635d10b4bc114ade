//! What an operator (or a user, for their own sessions) asks of the
//! sessions, wherever the request comes from — the `authgate sessions`
//! command, the embedded store's admin socket, the admin API — run by one
//! function that writes the audit line.

use serde::{Deserialize, Serialize};

use crate::clock::{Clock as _, SystemClock};

use super::index::{SessionIndex, SessionInfo, Target};
use super::manager::{SessionError, Sessions};

/// An operator's request, as the admin socket and API carry it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Request {
    List { user: Option<String> },
    Revoke { target: Target },
}

/// The admin socket's answer: the sessions listed or ended, or why not.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Sessions(Vec<SessionInfo>),
    Error(String),
}

/// Where the sessions are: the running server's, or a store opened here.
pub enum Scope<'a> {
    /// In the server: revocation also empties its cache.
    Server(&'a Sessions),
    /// Opened by the command itself.
    Offline(SessionIndex),
}

impl Scope<'_> {
    fn index(&self) -> SessionIndex {
        match self {
            Scope::Server(sessions) => sessions.index(),
            Scope::Offline(index) => index.clone(),
        }
    }
}

/// Runs `request` for `actor` and writes its audit line. Fails closed: a
/// store that cannot be read or written is an error, never "done".
pub async fn perform(
    scope: &Scope<'_>,
    request: &Request,
    actor: &str,
) -> Result<Vec<SessionInfo>, SessionError> {
    let now = match scope {
        Scope::Server(sessions) => sessions.now(),
        Scope::Offline(_) => SystemClock.now(),
    };
    let (action, what, result) = match request {
        Request::List { user } => {
            let what = user
                .as_ref()
                .map_or(Target::All, |u| Target::User(u.clone()));
            let result = scope
                .index()
                .list(user.as_deref(), now)
                .await
                .map_err(Into::into);
            ("list", what, result)
        }
        Request::Revoke { target } => {
            let result = match scope {
                Scope::Server(sessions) => sessions.revoke_where(target).await,
                Scope::Offline(index) => index.revoke(target, now).await.map_err(Into::into),
            };
            ("revoke", target.clone(), result)
        }
    };
    match &result {
        Ok(sessions) => tracing::info!(
            target: "authgate::audit",
            actor,
            action,
            scope = %what,
            sessions = sessions.len(),
            users = %users(sessions),
            "sessions {action}"
        ),
        Err(error) => tracing::warn!(
            target: "authgate::audit",
            actor,
            action,
            scope = %what,
            error = %crate::fault::error_chain(error),
            "sessions {action} failed"
        ),
    }
    result
}

/// The distinct users of `sessions`, comma-separated.
fn users(sessions: &[SessionInfo]) -> String {
    let mut users: Vec<&str> = sessions.iter().map(|s| s.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    users.join(",")
}
