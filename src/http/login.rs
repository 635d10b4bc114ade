//! The login host: `/oauth2/start`, `/oauth2/callback`, `/oauth2/sign_out`,
//! `/oauth2/userinfo`, and a small status page at `/`.
//!
//! Each login attempt's secrets (state, nonce, PKCE verifier, return URL)
//! travel in a sealed, host-only cookie scoped to `/oauth2/callback` and
//! named after the attempt's state, so several tabs can log in at once and a
//! callback without our cookie (login CSRF) is refused.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::AppError;
use super::pages;
use super::session_cookie_values;
use crate::decision::{self, Decision, Refusal};
use crate::oidc::LoginState;
use crate::server::App;
use crate::session::{Purpose, SessionCookie};

/// How long a login attempt may take between start and callback.
pub const LOGIN_ATTEMPT_TTL: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
pub(super) struct ReturnTo {
    rd: Option<String>,
}

/// `GET /oauth2/start?rd=URL`: check `rd` against the allow-list and that the
/// provider answers, then send the browser to the provider.
pub(super) async fn login_start_get(
    State(app): State<Arc<App>>,
    Query(query): Query<ReturnTo>,
) -> Result<Response, AppError> {
    let return_to = match query.rd.as_deref().filter(|rd| !rd.is_empty()) {
        Some(rd) => app
            .redirects
            .check(rd, app.decider.policy())
            .map_err(|e| AppError::BadRequest(format!("The return address is not allowed: {e}")))?,
        None => app.login_base().to_owned(),
    };
    // Sending the browser to a provider that is down would end in the
    // browser's own connection error; say it clearly instead (503).
    app.oidc.check_reachable().await?;
    let (provider_url, login) = app.oidc.begin_login(return_to)?;
    let sealed = app.sessions.sealer().seal(
        Purpose::LoginState,
        &serde_json::to_vec(&login).map_err(|e| AppError::Internal(e.to_string()))?,
    );
    let cookie = app.login_cookie(&login.state, sealed, LOGIN_ATTEMPT_TTL);
    tracing::debug!(return_to = %login.return_to, "login started");
    Ok(redirect_with_cookies(provider_url.as_str(), &[cookie]))
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /oauth2/callback`: the redirect URI registered at the provider.
pub(super) async fn login_callback_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let state = query
        .state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::BadRequest("The sign-in response has no state.".into()))?;
    let cookie_name = app.login_cookie_name(&state);
    let sealed = session_cookie_values(&headers, &cookie_name)
        .next()
        .ok_or_else(|| {
            AppError::LoginFailed(
                "no login-state cookie for this state (expired, or login CSRF)".into(),
            )
        })?;
    let login: LoginState = app
        .sessions
        .sealer()
        .open(Purpose::LoginState, sealed)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| AppError::LoginFailed("login-state cookie does not open".into()))?;
    if !bool::from(login.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err(AppError::LoginFailed("state does not match".into()));
    }
    if app.clock.now() - login.started_at > LOGIN_ATTEMPT_TTL.as_secs() as i64 {
        return Err(AppError::LoginFailed("login attempt expired".into()));
    }
    if let Some(error) = query.error {
        return Err(AppError::LoginFailed(format!(
            "provider answered {error}: {}",
            query.error_description.unwrap_or_default()
        )));
    }
    let code = query
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| AppError::BadRequest("The sign-in response has no code.".into()))?;
    let outcome = app.oidc.complete_login(&code, &login).await?;
    let refresh_due_at = app.clock.now() + app.config.refresh_interval.as_secs() as i64;
    let user = outcome
        .identity
        .email
        .clone()
        .unwrap_or_else(|| outcome.identity.subject.clone());
    let (value, _record) = app
        .sessions
        .create(outcome.identity, outcome.refresh_token, refresh_due_at)
        .await?;
    tracing::info!(%user, return_to = %login.return_to, "login completed");
    let session_cookie = app.session_cookie(value, app.config.cookie.expire);
    let clear_login = app.login_cookie(&state, String::new(), Duration::ZERO);
    Ok(redirect_with_cookies(
        &login.return_to,
        &[session_cookie, clear_login],
    ))
}

/// `GET|POST /oauth2/sign_out?rd=URL`: revoke the session in the store (so a
/// replayed copy of the cookie is refused), clear the cookie, then go to
/// `rd` if it is allowed or show the signed-out page.
pub(super) async fn sign_out_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<ReturnTo>,
) -> Result<Response, AppError> {
    for value in session_cookie_values(&headers, &app.config.cookie.name) {
        app.sessions.revoke(value).await?;
    }
    let clear = app.session_cookie(String::new(), Duration::ZERO);
    let target = query
        .rd
        .as_deref()
        .filter(|rd| !rd.is_empty())
        .and_then(|rd| app.redirects.check(rd, app.decider.policy()).ok());
    Ok(match target {
        Some(target) => redirect_with_cookies(&target, &[clear]),
        None => {
            // Released Dex has no logout endpoint: its own login session
            // (if any) outlives ours, and saying so is honest.
            let mut response = pages::message(
                StatusCode::OK,
                "Signed out",
                "You are signed out. Your identity provider may still remember your login; close the browser to end that too.",
                Some((app.login_base(), "Sign in again")),
            );
            append_cookie(&mut response, &clear);
            response
        }
    })
}

/// `GET /oauth2/userinfo`: the current session's identity as JSON; 401
/// without one. Never tokens.
pub(super) async fn userinfo_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    for value in session_cookie_values(&headers, &app.config.cookie.name) {
        if let Some(resolved) = app.sessions.resolve(value).await? {
            let id = &resolved.record.identity;
            let mut response = Json(serde_json::json!({
                "user": id.subject,
                "email": id.email,
                "preferred_username": id.preferred_username,
                "name": id.name,
                "groups": id.groups,
                "expires_at": resolved.record.expires_at,
            }))
            .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(response);
        }
    }
    Ok((
        StatusCode::UNAUTHORIZED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({"error": "not signed in"})),
    )
        .into_response())
}

/// `GET /` on the login host: who you are, with sign-in or sign-out.
pub(super) async fn status_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    for value in session_cookie_values(&headers, &app.config.cookie.name) {
        if let Some(resolved) = app.sessions.resolve(value).await? {
            let id = &resolved.record.identity;
            let who = id.email.as_deref().unwrap_or(&id.subject);
            let groups = if id.groups.is_empty() {
                "no groups".to_owned()
            } else {
                id.groups.join(", ")
            };
            return Ok(pages::message(
                StatusCode::OK,
                "Signed in",
                &format!("You are signed in as {who} ({groups})."),
                Some(("/oauth2/sign_out", "Sign out")),
            ));
        }
    }
    Ok(pages::message(
        StatusCode::OK,
        "Not signed in",
        "You are not signed in.",
        Some(("/oauth2/start", "Sign in")),
    ))
}

/// `GET /oauth2/forbidden`: the page nginx's `error_page 403` shows — who is
/// signed in, which address was refused, and a way to sign out. It decides
/// again rather than trusting any header, so it can never allow anything.
pub(super) async fn forbidden_get(State(app): State<Arc<App>>, request: Request) -> Response {
    let headers = request.headers();
    let target = super::original_target(headers, app.is_trusted(super::peer_ip(&request)));
    let shown_url = target.as_ref().map(|t| t.return_url()).unwrap_or_default();
    let request = decision::Request {
        target,
        session_cookies: session_cookie_values(headers, &app.config.cookie.name),
    };
    let decision = app.decider.decide(request).await;
    let sign_out = format!("{}/oauth2/sign_out", app.login_base().trim_end_matches('/'));
    let (who, why) = match &decision {
        Decision::Deny {
            session, reason, ..
        } => (
            session.as_ref().map(|s| {
                s.identity
                    .email
                    .clone()
                    .unwrap_or_else(|| s.identity.subject.clone())
            }),
            match reason {
                Refusal::NoRoute => "No route serves this address.",
                Refusal::NotAllowed => "Your account is not allowed to open this address.",
                Refusal::BadTarget => "The address could not be understood.",
            },
        ),
        _ => (None, "Access was refused."),
    };
    let detail = match who {
        Some(who) => format!("You are signed in as {who}. {why} ({shown_url})"),
        None => format!("{why} ({shown_url})"),
    };
    pages::message(
        StatusCode::FORBIDDEN,
        "Access denied",
        &detail,
        Some((&sign_out, "Sign out")),
    )
}

/// A 302 that sets cookies, never cached.
fn redirect_with_cookies(location: &str, cookies: &[Cookie<'static>]) -> Response {
    let mut response = Redirect::to(location).into_response();
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        append_cookie(&mut response, cookie);
    }
    response
}

fn append_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

impl App {
    /// The session cookie: on `cookie_domain` (every subdomain), path `/`.
    pub(crate) fn session_cookie(&self, value: String, max_age: Duration) -> Cookie<'static> {
        SessionCookie::new(&self.config.cookie).build(value, max_age)
    }

    fn login_cookie_name(&self, state: &str) -> String {
        let tag: String = state
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("{}_login_{tag}", self.config.cookie.name)
    }

    /// The login-attempt cookie: host-only on the login host, sent only to
    /// the callback. SameSite=Lax still sends it on the provider's top-level
    /// redirect back to us.
    fn login_cookie(&self, state: &str, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build((self.login_cookie_name(state), value))
            .path("/oauth2/callback")
            .secure(self.config.cookie.secure)
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
            .build()
    }
}
