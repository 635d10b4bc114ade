//! The handoff endpoints on a protected host outside the cookie domain (see
//! [`crate::handoff`]): `GET /.authgate/start?rd=…` sets this browser's
//! nonce cookie and goes on to the login host with its binding;
//! `POST /.authgate/callback` (the token in the form body, posted by the
//! login host's page) redeems the token the login host minted, in that
//! browser only, sets a session cookie valid on this host only and goes
//! back to the original URL. Plus the two places the login host mints
//! tokens: at `/oauth2/start` when the user already has a session, and
//! after the provider's callback.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::cookies::{append_cookie, redirect_with_cookies};
use super::error::AppError;
use super::pages::{self, View};
use super::request::session_cookie_values;
use crate::app::App;
use crate::handoff::{self, Delivery, HandoffError, Handoffs};
use crate::policy::target::{self, Target};

#[derive(Deserialize)]
pub(super) struct StartQuery {
    rd: Option<String>,
}

/// `GET /.authgate/start?rd=URL`: the first stop of a sign-in for this
/// host. `rd` must pass the allow-list and be a page on this very host (no
/// open redirect); then this browser gets its nonce cookie (a present one
/// is kept, so several tabs signing in at once all succeed) and goes to
/// the login host with the nonce's binding, never the nonce itself.
pub(super) async fn handoff_start_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<StartQuery>,
) -> Result<Response, AppError> {
    let host = request_host(&headers, &uri);
    let rd = query
        .rd
        .filter(|rd| !rd.is_empty())
        .ok_or_else(|| AppError::BadRequest("The sign-in link has no return address.".into()))?;
    let return_to = app
        .redirects()
        .check(&rd, &app.policy())
        .map_err(|e| AppError::BadRequest(format!("The return address is not allowed: {e}")))?;
    let target = Target::parse(&return_to).map_err(|_| not_this_host())?;
    let on_this_host = target::normalize_authority(host, target.scheme)
        .is_ok_and(|(request_host, _)| request_host == target.host);
    if !on_this_host || target.raw_path.starts_with(handoff::PATH_PREFIX) {
        tracing::info!(%host, "handoff start refused: the return address is not on this host");
        return Err(not_this_host());
    }
    if !app.handoffs().needed_for(&return_to) {
        // Inside the cookie domain the session cookie reaches this host by
        // itself: an ordinary sign-in, no nonce.
        return Ok(redirect_with_cookies(&app.sign_in_url(&return_to), &[]));
    }
    let name = nonce_cookie_name(&app);
    let nonce = session_cookie_values(&headers, &name)
        .find(|value| Handoffs::is_well_formed(value))
        .map_or_else(Handoffs::new_nonce, str::to_owned);
    let binding = app
        .handoffs()
        .binding(&target.host, &nonce)
        .ok_or_else(|| AppError::Internal("handoff nonce has no binding".into()))?;
    let mut location = app.sign_in_url(&return_to);
    location.push_str("&handoff=");
    location.push_str(&binding);
    let cookie = nonce_cookie(&app, nonce, handoff::NONCE_TTL);
    Ok(with_no_referrer(redirect_with_cookies(
        &location,
        &[cookie],
    )))
}

fn not_this_host() -> AppError {
    AppError::BadRequest("The return address is not a page on this site.".into())
}

/// The host the browser asked for. HTTP/1.1 sends Host; HTTP/2 the
/// :authority, which hyper puts in the URI. nginx's example passes
/// `Host $http_host`.
fn request_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> &'a str {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

fn nonce_cookie_name(app: &App) -> String {
    handoff::nonce_cookie_name(&app.config().cookie.name, app.config().cookie.secure)
}

/// The nonce cookie: host-only (no `Domain`, which the `__Host-` prefix
/// also demands), `Path=/`, HttpOnly. The login host's page posts the token
/// to this host's callback, a cross-site POST, which carries the cookie
/// only with `SameSite=None` (and that needs `Secure`: without it, browsers
/// that treat a cookie without `SameSite` as `Lax` keep it back, so a
/// handoff host needs HTTPS).
fn nonce_cookie(app: &App, value: String, max_age: Duration) -> Cookie<'static> {
    let mut cookie = Cookie::build((nonce_cookie_name(app), value))
        .path("/")
        .secure(app.config().cookie.secure)
        .http_only(true)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64));
    if app.config().cookie.secure {
        cookie = cookie.same_site(SameSite::None);
    }
    cookie.build()
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    token: Option<String>,
}

/// `GET /.authgate/callback`: tokens are posted, never put in a URL (access
/// logs and browser history keep URLs); a link here is not ours.
pub(super) async fn handoff_callback_get() -> Response {
    refusal(&HandoffError::Forged)
}

/// `POST /.authgate/callback`: every refusal is a page with a 400 or 403 and
/// never sets a cookie.
pub(super) async fn handoff_callback_post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<TokenForm>,
) -> Result<Response, AppError> {
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return Err(AppError::BadRequest(
            "The sign-in link has no token.".into(),
        ));
    };
    let host = request_host(&headers, &uri);
    let name = nonce_cookie_name(&app);
    let nonce = session_cookie_values(&headers, &name).next();
    let redeemed = match app
        .handoffs()
        .redeem(app.sessions().sealer(), &token, host, nonce)
        .await
    {
        Ok(redeemed) => redeemed,
        Err(HandoffError::Store(e)) => return Err(AppError::StoreUnavailable(e.into())),
        Err(error @ HandoffError::OtherBrowser) => {
            // Someone else's sign-in link: a mistake, or an attempt to sign
            // this browser in as another user.
            tracing::warn!(%error, %host, nonce_cookie = nonce.is_some(), "handoff refused");
            return Ok(refusal(&error));
        }
        Err(error) => {
            tracing::info!(%error, %host, "handoff refused");
            return Ok(refusal(&error));
        }
    };
    let Some(session) = app.sessions().resolve(&redeemed.session_cookie).await? else {
        // Signed out (or expired) between the login and this redirect.
        tracing::info!(%host, "handoff refused: the session has ended");
        return Ok(with_no_referrer(
            View::error(
                StatusCode::FORBIDDEN,
                "Session ended",
                "Your session ended before this site could use it. Open the page again to sign in.",
            )
            .with_link(redeemed.return_to.as_str(), "Sign in again")
            .into_response(),
        ));
    };
    let remaining = session
        .expires_at()
        .saturating_sub(app.clock().now())
        .max(0);
    // The token's return URL is on the host it was redeemed at (checked).
    let own_host = Target::parse(&redeemed.return_to)
        .map_err(|_| not_this_host())?
        .host
        .into_owned();
    let mut cookie = app.session_cookie(
        app.sessions().host_cookie(&session, &own_host),
        std::time::Duration::from_secs(remaining as u64),
    );
    // Host-only: this host is outside the cookie domain, and the cookie
    // must not be offered to its sibling hosts either.
    cookie.unset_domain();
    tracing::debug!(%host, return_to = %redeemed.return_to, "handoff completed");
    let clear_nonce = nonce_cookie(&app, String::new(), Duration::ZERO);
    let mut response = redirect_with_cookies(&redeemed.return_to, &[cookie, clear_nonce]);
    // After a POST: the browser follows with a GET.
    *response.status_mut() = StatusCode::SEE_OTHER;
    Ok(with_no_referrer(response))
}

/// The page for a refused token: 400 if it is not ours, 403 if it is ours
/// but not for now, here or again.
fn refusal(error: &HandoffError) -> Response {
    let (status, detail) = match error {
        HandoffError::Forged | HandoffError::BadTarget => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid. Open the page again to sign in.",
        ),
        HandoffError::Expired => (
            StatusCode::FORBIDDEN,
            "This sign-in link has expired. Open the page again to sign in.",
        ),
        HandoffError::WrongHost => (
            StatusCode::FORBIDDEN,
            "This sign-in link was made for another site.",
        ),
        HandoffError::Replayed => (
            StatusCode::FORBIDDEN,
            "This sign-in link was already used. Open the page again to sign in.",
        ),
        HandoffError::OtherBrowser => (
            StatusCode::FORBIDDEN,
            "This sign-in link was made for another browser. Never open sign-in links \
             someone sent you; open the page itself to sign in.",
        ),
        HandoffError::Store(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Sessions cannot be read right now. Please try again in a few minutes.",
        ),
    };
    with_no_referrer(
        View::error(status, "Sign-in link not valid", detail)
            .with_link("/", "Go to the site")
            .into_response(),
    )
}

/// Never let the handoff's pages name where the browser came from in a
/// `Referer`.
fn with_no_referrer(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// At `/oauth2/start` for a `return_to` outside the cookie domain, with
/// the `binding` its host's start gave: when the browser already has a
/// session on the login host, hand it off at once without asking the
/// provider. `None`: log in as usual.
pub(super) async fn start_with_existing_session(
    app: &App,
    headers: &HeaderMap,
    return_to: &str,
    binding: &str,
) -> Result<Option<Response>, AppError> {
    for value in session_cookie_values(headers, &app.config().cookie.name) {
        if app.sessions().resolve(value).await?.is_some() {
            let delivery = mint(app, value, return_to, binding)?;
            tracing::debug!(%return_to, "handing off an existing session");
            return Ok(Some(deliver(&delivery, &[])));
        }
    }
    Ok(None)
}

/// The page that posts `delivery`'s token to its host's callback as soon
/// as it loads, setting `cookies` on the login host on the way.
fn deliver(delivery: &Delivery, cookies: &[Cookie<'static>]) -> Response {
    let form = pages::Form {
        action: delivery.action.clone(),
        fields: vec![("token".to_owned(), delivery.token.clone())],
        label: "Continue".to_owned(),
        auto_submit: true,
    };
    let mut response = with_no_referrer(
        View::continue_with(
            "Signing you in",
            "Taking you back to the site you opened.",
            form,
        )
        .into_response(),
    );
    for cookie in cookies {
        append_cookie(&mut response, cookie);
    }
    response
}

/// At `/oauth2/start` for a `return_to` outside the cookie domain that came
/// without a binding (a bookmarked or hand-made sign-in link, or one from
/// before bindings): begin again at that host's start, which sets the nonce
/// and comes back with the binding.
pub(super) fn start_at_host(return_to: &str) -> Result<Response, AppError> {
    let target = Target::parse(return_to).map_err(|_| not_this_host())?;
    Ok(redirect_with_cookies(
        &handoff::start_url(&target, return_to),
        &[],
    ))
}

/// After a login: the callback's answer, setting `cookies` — a redirect to
/// `return_to` itself, or the page posting a handoff token to its host
/// when the session cookie would not reach it. Without a `binding` (a login
/// state sealed before bindings existed) the browser goes through the
/// host's start, which finds the new session and hands it off.
pub(super) fn after_login(
    app: &App,
    session_cookie: &str,
    return_to: &str,
    binding: Option<&str>,
    cookies: &[Cookie<'static>],
) -> Result<Response, AppError> {
    if !app.handoffs().needed_for(return_to) {
        return Ok(redirect_with_cookies(return_to, cookies));
    }
    match binding {
        Some(binding) => Ok(deliver(
            &mint(app, session_cookie, return_to, binding)?,
            cookies,
        )),
        None => {
            let target = Target::parse(return_to).map_err(|_| not_this_host())?;
            Ok(redirect_with_cookies(
                &handoff::start_url(&target, return_to),
                cookies,
            ))
        }
    }
}

fn mint(
    app: &App,
    session_cookie: &str,
    return_to: &str,
    binding: &str,
) -> Result<Delivery, AppError> {
    app.handoffs()
        .mint(app.sessions().sealer(), session_cookie, return_to, binding)
        .map_err(|e| AppError::BadRequest(format!("The return address is not allowed: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Tokens that are not ours are 400, ours-but-unusable are 403; every
    /// refusal page forbids the Referer and sets no cookie.
    #[test]
    fn refusal_statuses() {
        for (error, status) in [
            (HandoffError::Forged, StatusCode::BAD_REQUEST),
            (HandoffError::BadTarget, StatusCode::BAD_REQUEST),
            (HandoffError::Expired, StatusCode::FORBIDDEN),
            (HandoffError::WrongHost, StatusCode::FORBIDDEN),
            (HandoffError::Replayed, StatusCode::FORBIDDEN),
            (HandoffError::OtherBrowser, StatusCode::FORBIDDEN),
        ] {
            let response = refusal(&error);
            assert_eq!(response.status(), status, "{error:?}");
            assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
            assert!(response.headers().get(header::SET_COOKIE).is_none());
        }
    }

    /// The nonce cookie outlives the slowest login that can still complete
    /// and the token minted at its end, so a slow typist is not refused as
    /// "another browser".
    #[test]
    fn nonce_outlives_a_login_attempt_and_its_token() {
        assert!(
            handoff::NONCE_TTL >= super::super::login::LOGIN_ATTEMPT_TTL + handoff::TOKEN_TTL,
            "{:?}",
            handoff::NONCE_TTL
        );
    }
}
