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
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::cookies::{append_cookie, redirect_with_cookies};
use super::error::AppError;
use super::pages::View;
use super::request::{client_ip, peer_ip, session_cookie_values};
use crate::app::App;
use crate::decision::{Decision, Refusal};
use crate::metrics::{LoginFailure, Metrics, ProviderOperation, StoreOperation};
use crate::oidc::LoginState;
use crate::policy::ProxyConditions;
use crate::session::{Origin, Purpose, SessionCookie};

/// How long a login attempt may take between start and callback.
pub const LOGIN_ATTEMPT_TTL: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
pub(super) struct ReturnTo {
    rd: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct StartQuery {
    rd: Option<String>,
    /// The binding from `/.authgate/start` on a host outside the cookie
    /// domain (see [`crate::handoff`]).
    handoff: Option<String>,
}

/// `GET /oauth2/start?rd=URL`: check `rd` against the allow-list and that the
/// provider answers, then send the browser to the provider.
pub(super) async fn login_start_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Query<StartQuery>,
) -> Result<Response, AppError> {
    let span = crate::traces::request_span(
        tracing::info_span!(target: crate::traces::TARGET, "authgate.login.start",
            otel.kind = "server", otel.status_code = Empty, authgate.failure = Empty),
        &headers,
    );
    login_step(
        &app,
        span,
        login_start(&app, &headers, query),
        Metrics::login_started,
    )
    .await
}

/// Runs a login step in its trace `span` and counts how it ended: `done`
/// on success, else as a failure.
async fn login_step(
    app: &App,
    span: tracing::Span,
    step: impl Future<Output = Result<Response, AppError>>,
    done: fn(&Metrics),
) -> Result<Response, AppError> {
    async {
        let result = step.await;
        match &result {
            Ok(_) => done(app.metrics()),
            Err(error) => login_failed(app, error),
        }
        result
    }
    .instrument(span)
    .await
}

/// Counts and logs a login that ended in `error`: one line per failure.
fn login_failed(app: &App, error: &AppError) {
    let reason = error.login_failure();
    app.metrics().login_failed(reason);
    crate::traces::failed(reason.as_str());
    match error {
        AppError::ProviderUnavailable(_) => app.metrics().provider_error(ProviderOperation::Login),
        AppError::StoreUnavailable(_) => app.metrics().store_error(StoreOperation::Login),
        _ => {}
    }
    tracing::info!(reason = reason.as_str(), detail = %error, "login failed");
}

/// A URL for the log: without its query and fragment, which may carry
/// anything the application put there.
fn loggable(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

async fn login_start(
    app: &App,
    headers: &HeaderMap,
    Query(query): Query<StartQuery>,
) -> Result<Response, AppError> {
    let return_to = match query.rd.as_deref().filter(|rd| !rd.is_empty()) {
        Some(rd) => app
            .redirects()
            .check(rd, &app.policy())
            .map_err(|e| AppError::BadRequest(format!("The return address is not allowed: {e}")))?,
        None => app.login_base().to_owned(),
    };
    // A host outside the cookie domain: the token will be bound to the
    // browser that began at that host's /.authgate/start.
    let binding = if app.handoffs().needed_for(&return_to) {
        let Some(binding) = query
            .handoff
            .filter(|binding| crate::handoff::Handoffs::is_well_formed(binding))
        else {
            return super::handoff::start_at_host(&return_to);
        };
        // Already signed in here: hand off at once.
        if let Some(handoff) =
            super::handoff::start_with_existing_session(app, headers, &return_to, &binding).await?
        {
            return Ok(handoff);
        }
        Some(binding)
    } else {
        None
    };
    // Sending the browser to a provider that is down would end in the
    // browser's own connection error; say it clearly instead (503).
    let redirect =
        tracing::info_span!(target: crate::traces::TARGET, "authgate.login.provider_redirect");
    app.oidc()
        .check_reachable()
        .instrument(redirect.clone())
        .await?;
    let (provider_url, mut login) = redirect.in_scope(|| app.oidc().begin_login(return_to))?;
    login.handoff_binding = binding;
    let sealed = app.sessions().sealer().seal(
        Purpose::LoginState,
        &serde_json::to_vec(&login).map_err(|e| AppError::Internal(e.to_string()))?,
    );
    let cookie = app.login_cookie(&login.state, sealed, LOGIN_ATTEMPT_TTL);
    tracing::info!(return_to = loggable(&login.return_to), "login started");
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
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    query: Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let origin = Origin {
        client_addr: client_ip(&headers, peer, &app.config().trusted_proxies)
            .map(|ip| ip.to_string()),
        user_agent: super::request::header_text(&headers, "user-agent").map(str::to_owned),
    };
    let span = crate::traces::request_span(
        tracing::info_span!(target: crate::traces::TARGET, "authgate.login.callback",
            otel.kind = "server", otel.status_code = Empty, authgate.failure = Empty,
            enduser.id = Empty),
        &headers,
    );
    login_step(
        &app,
        span,
        login_callback(&app, &headers, query, origin),
        Metrics::login_completed,
    )
    .await
}

async fn login_callback(
    app: &App,
    headers: &HeaderMap,
    Query(query): Query<CallbackQuery>,
    origin: Origin,
) -> Result<Response, AppError> {
    let state = query
        .state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::BadRequest("The sign-in response has no state.".into()))?;
    let cookie_name = app.login_cookie_name(&state);
    let sealed = session_cookie_values(headers, &cookie_name)
        .next()
        .ok_or_else(|| {
            AppError::LoginFailed(
                LoginFailure::MissingState,
                "no login-state cookie for this state (expired, or login CSRF)".into(),
            )
        })?;
    let login: LoginState = app
        .sessions()
        .sealer()
        .open(Purpose::LoginState, sealed)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            AppError::LoginFailed(
                LoginFailure::BadState,
                "login-state cookie does not open".into(),
            )
        })?;
    if !bool::from(login.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err(AppError::LoginFailed(
            LoginFailure::BadState,
            "state does not match".into(),
        ));
    }
    if app.clock().now() - login.started_at > LOGIN_ATTEMPT_TTL.as_secs() as i64 {
        return Err(AppError::LoginFailed(
            LoginFailure::Expired,
            "login attempt expired".into(),
        ));
    }
    if let Some(error) = query.error {
        return Err(AppError::LoginFailed(
            LoginFailure::ProviderDenied,
            format!(
                "provider answered {error}: {}",
                query.error_description.unwrap_or_default()
            ),
        ));
    }
    let code = query
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| AppError::BadRequest("The sign-in response has no code.".into()))?;
    // The state is single-use: a second callback with it (a replayed URL,
    // or a fresh code for the same authorization request) is refused before
    // the code is redeemed. Marked before the exchange, so a failed exchange
    // also burns it: the user starts again, as after any failed login. The
    // mark outlives the cookie's own expiry check (one second of margin for
    // its `>`).
    if !app
        .sessions()
        .consume_login_state(&login.state, LOGIN_ATTEMPT_TTL + Duration::from_secs(1))
        .await?
    {
        return Err(AppError::LoginFailed(
            LoginFailure::BadState,
            "the login state was used already".into(),
        ));
    }
    let outcome = app.oidc().complete_login(&code, &login).await?;
    // Like every refresh after it: after `refresh_interval` or when the ID
    // token expires, whichever is first (with the same floor).
    let refresh_due_at = crate::app::refresh_policy(app.config())
        .next_due(app.clock().now(), outcome.id_token_expires_at);
    let user = outcome.identity.display_name().to_owned();
    tracing::Span::current().record("enduser.id", outcome.identity.subject.as_str());
    if outcome.identity.groups.is_empty() && app.policy().asks_for_groups() {
        // Routes that admit by group will refuse this user; the usual cause
        // is the scope or the provider's group search, not the policy.
        app.metrics().login_without_groups();
        if app.config().idp.scopes.iter().any(|s| s == "groups") {
            tracing::warn!(
                %user,
                "the ID token has no `groups` claim although routes ask for groups and the \
                 `groups` scope was asked for: with Dex's LDAP connector, the user is in no group \
                 its groupSearch finds (check groupSearch.filter; FreeIPA's non-POSIX groups need \
                 (objectClass=ipaUserGroup))"
            );
        } else {
            tracing::warn!(
                %user,
                "the ID token has no `groups` claim although routes ask for groups: add `groups` \
                 to idp_scopes (Dex sends groups only for that scope)"
            );
        }
    }
    let groups = outcome.identity.groups.clone();
    let (value, _record) = app
        .sessions()
        .create_from(
            outcome.identity,
            outcome.refresh_token,
            refresh_due_at,
            Some(outcome.id_token),
            origin,
        )
        .await?;
    tracing::info!(%user, groups = ?groups, return_to = loggable(&login.return_to), "login completed");
    let session_cookie = app.session_cookie(value.clone(), app.config().cookie.expire);
    let clear_login = app.login_cookie(&state, String::new(), Duration::ZERO);
    super::handoff::after_login(
        app,
        &value,
        &login.return_to,
        login.handoff_binding.as_deref(),
        &[session_cookie, clear_login],
    )
}

/// `GET /oauth2/sign_out?rd=URL`: signs out (see [`sign_out_post`]) when
/// the request comes from this site; from another site (a link or an image
/// on a page anyone can write) it only asks, with a button that posts.
pub(super) async fn sign_out_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    query: Query<ReturnTo>,
) -> Result<Response, AppError> {
    if !from_this_site(&app, &headers, false) {
        tracing::debug!("sign-out from another site: asking first");
        let action = match uri.query() {
            Some(q) => format!("/oauth2/sign_out?{q}"),
            None => "/oauth2/sign_out".to_owned(),
        };
        let form = super::pages::Form {
            action,
            fields: Vec::new(),
            label: "Sign out".to_owned(),
            auto_submit: false,
        };
        return Ok(
            View::continue_with("Sign out?", "Do you want to sign out?", form).into_response(),
        );
    }
    sign_out(&app, &headers, query).await
}

/// `POST /oauth2/sign_out?rd=URL`: from this site only (a cross-site form
/// is refused with 403), revoke the session in the store (so a replayed
/// copy of the cookie is refused), clear the cookie, then go to `rd` if it
/// is allowed or show the signed-out page.
pub(super) async fn sign_out_post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Query<ReturnTo>,
) -> Result<Response, AppError> {
    if !from_this_site(&app, &headers, true) {
        tracing::info!("cross-site sign-out refused");
        return Ok(View::error(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "Another site asked to sign you out. Use the sign-out button of a site you use.",
        )
        .into_response());
    }
    sign_out(&app, &headers, query).await
}

/// Whether a browser sent this request from a page of this site (the login
/// host, or a host of the cookie domain): its `Sec-Fetch-Site`, else its
/// `Origin`. A request with neither comes from a program, or from an old
/// browser's link: believed for a POST (browsers send `Origin` with a
/// cross-site form) and not for a GET.
pub(super) fn from_this_site(app: &App, headers: &HeaderMap, post: bool) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return matches!(site, "same-origin" | "same-site" | "none");
    }
    match header("origin") {
        Some(origin) => url::Url::parse(origin)
            .ok()
            .and_then(|origin| origin.host_str().map(str::to_ascii_lowercase))
            .is_some_and(|host| {
                app.config().authenticate_service_url.host_str() == Some(host.as_str())
                    || app
                        .config()
                        .cookie
                        .domain
                        .as_deref()
                        .and_then(crate::redirect::normalize_domain)
                        .is_some_and(|domain| crate::redirect::in_domain(&host, &domain))
            }),
        None => post,
    }
}

async fn sign_out(
    app: &App,
    headers: &HeaderMap,
    Query(query): Query<ReturnTo>,
) -> Result<Response, AppError> {
    // Whose session this was, for the signed-out page's "sign out of all
    // my sessions", and its ID token for the provider's logout; a store
    // that cannot answer only loses those.
    let mut offer = None;
    let mut id_token = None;
    for value in session_cookie_values(headers, &app.config().cookie.name) {
        if offer.is_none()
            && let Ok(Some(resolved)) = app.sessions().resolve(value).await
        {
            offer = super::own_sessions::sign_out_all_token(app, &resolved);
            id_token = app.sessions().id_token(&resolved).await.unwrap_or_default();
        }
        if let Err(error) = app.sessions().revoke(value).await {
            app.metrics().store_error(StoreOperation::SignOut);
            return Err(error.into());
        }
    }
    tracing::info!("signed out");
    let clear = app.session_cookie(String::new(), Duration::ZERO);
    let target = query
        .rd
        .as_deref()
        .filter(|rd| !rd.is_empty())
        .and_then(|rd| app.redirects().check(rd, &app.policy()).ok());
    // The provider's own logout (RP-initiated), when it offers one: it
    // sends the browser back to /oauth2/signed_out, and `state` says where
    // to go from there.
    if let Some(mut endpoint) = app.oidc().end_session_endpoint() {
        let state = LogoutState { rd: target, offer };
        let state = app.sessions().sealer().seal(
            Purpose::LogoutState,
            &serde_json::to_vec(&state).map_err(|e| AppError::Internal(e.to_string()))?,
        );
        {
            let mut query = endpoint.query_pairs_mut();
            if let Some(hint) = &id_token {
                query.append_pair("id_token_hint", hint);
            }
            query
                .append_pair("client_id", app.oidc().client_id())
                .append_pair(
                    "post_logout_redirect_uri",
                    &format!("{}{SIGNED_OUT_PATH}", app.login_base()),
                )
                .append_pair("state", &state);
        }
        tracing::info!("continuing sign-out at the provider");
        return Ok(redirect_with_cookies(endpoint.as_str(), &[clear]));
    }
    Ok(signed_out_here(app, target, offer, clear))
}

/// Where the provider's logout sends the browser back.
pub(super) const SIGNED_OUT_PATH: &str = "/oauth2/signed_out";

/// What RP-initiated logout's `state` carries through the provider.
#[derive(Serialize, Deserialize)]
struct LogoutState {
    /// The checked `rd` of the sign-out.
    rd: Option<String>,
    /// The signed-out page's "sign out of all my sessions" token.
    offer: Option<String>,
}

/// The end of a sign-out: `rd`, or the signed-out page (with the offer to
/// sign out of every session), clearing `clear`.
fn signed_out_here(
    app: &App,
    target: Option<String>,
    offer: Option<String>,
    clear: Cookie<'static>,
) -> Response {
    match target {
        Some(target) => redirect_with_cookies(&target, &[clear]),
        None => {
            // Released Dex has no logout endpoint: its own login session
            // (if any) outlives ours, and the page says so.
            let view = match offer {
                Some(token) => View::signed_out_offering_all(token),
                None => View::signed_out(),
            };
            let mut response = view
                .with_link(app.login_base(), "Sign in again")
                .into_response();
            append_cookie(&mut response, &clear);
            response
        }
    }
}

#[derive(Deserialize)]
pub(super) struct SignedOutQuery {
    state: Option<String>,
}

/// `GET /oauth2/signed_out`: back from the provider's logout. A `state`
/// that does not open (forged, or from an older secret) only loses the
/// return address; `rd` is checked again.
pub(super) async fn signed_out_get(
    State(app): State<Arc<App>>,
    Query(query): Query<SignedOutQuery>,
) -> Response {
    let state: Option<LogoutState> = query
        .state
        .and_then(|state| {
            app.sessions()
                .sealer()
                .open(Purpose::LogoutState, &state)
                .ok()
        })
        .and_then(|plain| serde_json::from_slice(&plain).ok());
    let (rd, offer) = state.map_or((None, None), |s| (s.rd, s.offer));
    let target = rd.and_then(|rd| app.redirects().check(&rd, &app.policy()).ok());
    let clear = app.session_cookie(String::new(), Duration::ZERO);
    signed_out_here(&app, target, offer, clear)
}

/// `GET /oauth2/userinfo`: the current session's identity as JSON; 401
/// without one. Never tokens.
pub(super) async fn userinfo_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    for value in session_cookie_values(&headers, &app.config().cookie.name) {
        if let Some(resolved) = app.sessions().resolve(value).await? {
            let id = &resolved.record.identity;
            let this = crate::session::public_id(&resolved.id);
            let sessions: Vec<_> = super::own_sessions::own_sessions(&app, &resolved)
                .await?
                .into_iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id,
                        "started_at": s.started_at,
                        "expires_at": s.expires_at,
                        "client_addr": s.client_addr,
                        "user_agent": s.user_agent,
                        "current": s.id == this,
                    })
                })
                .collect();
            let mut response = Json(serde_json::json!({
                "user": id.subject,
                "email": id.email,
                "preferred_username": id.preferred_username,
                "name": id.name,
                "groups": id.groups,
                "expires_at": resolved.record.expires_at,
                "sessions": sessions,
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
    for value in session_cookie_values(&headers, &app.config().cookie.name) {
        if let Some(resolved) = app.sessions().resolve(value).await? {
            let id = &resolved.record.identity;
            return Ok(
                View::status(Some(id.display_name().to_owned()), id.groups.clone())
                    .with_link("/oauth2/sign_out", "Sign out")
                    .into_response(),
            );
        }
    }
    Ok(View::status(None, Vec::new())
        .with_link("/oauth2/start", "Sign in")
        .into_response())
}

/// `GET /oauth2/forbidden`: the page nginx's `error_page 403` shows — who is
/// signed in, which route refused which address, and a way to sign out. It
/// decides again rather than trusting any header, so it can never allow
/// anything (and it is not counted again: the auth request was).
pub(super) async fn forbidden_get(State(app): State<Arc<App>>, request: Request) -> View {
    let headers = request.headers();
    let (query, peer) = (request.uri().query(), peer_ip(&request));
    let target = super::nginx::nginx_target(&app, query, headers, peer);
    let shown_url = target
        .as_ref()
        .ok()
        .map(|t| loggable(&t.return_url()).to_owned());
    let policy = app.policy();
    // No conditions from this query: nginx's `rewrite` to this page passes
    // the client's query on, and the page must not explain a policy the
    // client wrote.
    let asked = super::nginx::nginx_request(&app, headers, &target, peer, &ProxyConditions::NONE);
    let decision = app.decider().decide(&policy, asked).await;
    let sign_out = format!("{}/oauth2/sign_out", app.login_base().trim_end_matches('/'));
    let (who, route, why) = match &decision {
        Decision::Deny {
            session,
            reason,
            route,
            unmet,
        } => (
            session
                .as_ref()
                .map(|s| s.identity.display_name().to_owned()),
            route.map(|r| policy.route_label(r).to_owned()),
            match (reason, unmet) {
                (Refusal::NotAllowed | Refusal::MethodNotAllowed, Some(unmet)) => {
                    format!("This address {unmet}.")
                }
                // The page cannot see conditions the proxy set on its auth
                // request (its own query is the client's), so it names both.
                (Refusal::NoRoute, _) => "No route serves this address, or the proxy's own \
                     conditions for it (allowed_groups, allowed_emails, allowed_email_domains) \
                     did not admit you."
                    .to_owned(),
                (Refusal::NotAllowed, None) => {
                    "Your account is not allowed to open this address.".to_owned()
                }
                (Refusal::BadTarget, _) => "The address could not be understood.".to_owned(),
                (Refusal::MethodNotAllowed, None) => {
                    "This address does not accept this kind of request.".to_owned()
                }
            },
        ),
        _ => (None, None, "Access was refused.".to_owned()),
    };
    let message = match (&who, &decision) {
        (
            Some(who),
            Decision::Deny {
                session: Some(session),
                reason: Refusal::NotAllowed,
                unmet,
                ..
            },
        ) if unmet.as_deref().is_none_or(|u| u.contains("group")) => format!(
            "You are signed in as {who}. {why} {}",
            // The words already list the groups when they name one.
            groups_hint(unmet.is_none().then_some(&session.identity.groups[..]))
        ),
        (Some(who), _) => format!("You are signed in as {who}. {why}"),
        (None, _) => why,
    };
    View::forbidden(message, who, route, shown_url).with_link(sign_out, "Sign out")
}

/// The likely cause when a group should have let the user in: the provider
/// did not send it. Dex's LDAP connector sends only the groups its
/// `groupSearch.filter` matches, and the seed's POSIX-only filter misses
/// FreeIPA's non-POSIX groups (issue 23).
fn groups_hint(groups: Option<&[String]>) -> String {
    let carried = match groups {
        None => String::new(),
        Some([]) => "Your sign-in carried no groups. ".to_owned(),
        Some(groups) => format!("Your sign-in carried these groups: {}. ", groups.join(", ")),
    };
    format!(
        "{carried}If you are in the required group but it is not listed, the identity \
         provider did not send it: with Dex's LDAP connector, check its groupSearch.filter \
         (FreeIPA's non-POSIX groups need (objectClass=ipaUserGroup))."
    )
}

impl App {
    /// The session cookie: on `cookie_domain` (every subdomain), path `/`.
    pub(crate) fn session_cookie(&self, value: String, max_age: Duration) -> Cookie<'static> {
        SessionCookie::new(&self.config().cookie).build(value, max_age)
    }

    fn login_cookie_name(&self, state: &str) -> String {
        let tag: String = state
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("{}_login_{tag}", self.config().cookie.name)
    }

    /// The login-attempt cookie: host-only on the login host, sent only to
    /// the callback. SameSite=Lax still sends it on the provider's top-level
    /// redirect back to us.
    fn login_cookie(&self, state: &str, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build((self.login_cookie_name(state), value))
            .path("/oauth2/callback")
            .secure(self.config().cookie.secure)
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
            .build()
    }
}
