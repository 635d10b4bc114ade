//! A user's own sessions on the login host: `/oauth2/sessions` lists them
//! (start, device, address), each with a sign-out button, and "sign out of
//! all my sessions"; the signed-out page offers the same through
//! `/oauth2/sign_out_all` (the cookie is gone by then, so its form carries
//! a sealed, short-lived token naming the user). Every form posts, and a
//! post from another site is refused (as sign-out). Each revocation is an
//! audit line, the user as actor.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::cookies::{append_cookie, redirect_with_cookies};
use super::error::AppError;
use super::login::from_this_site;
use super::pages::View;
use super::request::session_cookie_values;
use crate::app::App;
use crate::session::{
    Purpose, Request, Resolved, Scope, SessionInfo, Target, perform, public_id, user_of,
};
use crate::templates::SessionRow;

/// How long the signed-out page's "sign out of all my sessions" works.
const SIGN_OUT_ALL_TTL: Duration = Duration::from_secs(600);

/// The first session cookie that names a live session.
async fn current(app: &App, headers: &HeaderMap) -> Result<Option<Resolved>, AppError> {
    for value in session_cookie_values(headers, &app.config().cookie.name) {
        if let Some(resolved) = app.sessions().resolve(value).await? {
            return Ok(Some(resolved));
        }
    }
    Ok(None)
}

/// The sessions of the user signed in with `resolved`.
pub(super) async fn own_sessions(
    app: &App,
    resolved: &Resolved,
) -> Result<Vec<SessionInfo>, AppError> {
    let user = user_of(&resolved.record.identity);
    Ok(app
        .sessions()
        .index()
        .list(Some(user), app.clock().now())
        .await
        .map_err(crate::session::SessionError::from)?)
}

fn not_signed_in() -> Response {
    View::status(None, Vec::new())
        .with_link("/oauth2/start?rd=/oauth2/sessions", "Sign in")
        .into_response()
}

fn cross_site() -> Response {
    tracing::info!("cross-site session sign-out refused");
    View::error(
        StatusCode::FORBIDDEN,
        "Sign-out refused",
        "Another site asked to sign you out. Use the buttons of your sessions page.",
    )
    .into_response()
}

/// Ends `target`, the user as actor; store failures fail closed.
async fn revoke(app: &App, user: &str, target: Target) -> Result<Vec<SessionInfo>, AppError> {
    let actor = format!("user:{user}");
    Ok(perform(
        &Scope::Server(app.sessions()),
        &Request::Revoke { target },
        &actor,
    )
    .await?)
}

/// `GET /oauth2/sessions`.
pub(super) async fn sessions_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(resolved) = current(&app, &headers).await? else {
        return Ok(not_signed_in());
    };
    let this = public_id(&resolved.id);
    let rows = own_sessions(&app, &resolved)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            current: s.id == this,
            started: chrono::DateTime::from_timestamp(s.started_at, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            client: s.client_addr,
            device: s.user_agent,
            id: s.id,
        })
        .collect();
    let user = user_of(&resolved.record.identity).to_owned();
    Ok(View::sessions(user, rows).into_response())
}

#[derive(Deserialize)]
pub(super) struct SessionsForm {
    session: Option<String>,
    all: Option<bool>,
}

/// `POST /oauth2/sessions` (`session=ID` or `all=true`): ends one of the
/// user's own sessions, or all of them.
pub(super) async fn sessions_post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<SessionsForm>,
) -> Result<Response, AppError> {
    if !from_this_site(&app, &headers, true) {
        return Ok(cross_site());
    }
    let Some(resolved) = current(&app, &headers).await? else {
        return Ok(not_signed_in());
    };
    let user = user_of(&resolved.record.identity).to_owned();
    let target = match (form.session, form.all) {
        (None, Some(true)) => Target::User(user.clone()),
        (Some(id), None | Some(false)) => {
            // Only one of the user's own.
            if !own_sessions(&app, &resolved)
                .await?
                .iter()
                .any(|s| s.id == id)
            {
                return Err(AppError::BadRequest(
                    "That is not one of your sessions.".into(),
                ));
            }
            Target::Session(id)
        }
        _ => return Err(AppError::BadRequest("Name one session, or all.".into())),
    };
    let ended = revoke(&app, &user, target).await?;
    if ended.iter().any(|s| s.id == public_id(&resolved.id)) {
        let clear = app.session_cookie(String::new(), Duration::ZERO);
        let mut response = View::signed_out()
            .with_link(app.login_base(), "Sign in again")
            .into_response();
        append_cookie(&mut response, &clear);
        return Ok(response);
    }
    Ok(redirect_with_cookies("/oauth2/sessions", &[]))
}

/// Whose sessions the signed-out page may end, until when.
#[derive(Serialize, Deserialize)]
struct SignOutAll {
    user: String,
    until: i64,
}

/// The signed-out page's token for `resolved`'s user.
pub(super) fn sign_out_all_token(app: &App, resolved: &Resolved) -> Option<String> {
    let token = SignOutAll {
        user: user_of(&resolved.record.identity).to_owned(),
        until: app.clock().now() + SIGN_OUT_ALL_TTL.as_secs() as i64,
    };
    let plain = serde_json::to_vec(&token).ok()?;
    Some(app.sessions().sealer().seal(Purpose::SignOutAll, &plain))
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    token: String,
}

/// `POST /oauth2/sign_out_all` (`token` from the signed-out page).
pub(super) async fn sign_out_all_post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    if !from_this_site(&app, &headers, true) {
        return Ok(cross_site());
    }
    let token: SignOutAll = app
        .sessions()
        .sealer()
        .open(Purpose::SignOutAll, &form.token)
        .ok()
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .filter(|token: &SignOutAll| app.clock().now() < token.until)
        .ok_or_else(|| {
            AppError::BadRequest("This page is too old: sign in and use your sessions page.".into())
        })?;
    let ended = revoke(&app, &token.user, Target::User(token.user.clone())).await?;
    let clear = app.session_cookie(String::new(), Duration::ZERO);
    let mut view = View::signed_out().with_link(app.login_base(), "Sign in again");
    view.message = format!(
        "You are signed out of all your sessions ({} more ended).",
        ended.len()
    );
    let mut response = view.into_response();
    append_cookie(&mut response, &clear);
    Ok(response)
}
