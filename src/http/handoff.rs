//! `GET /.authgate/callback?token=…` on a protected host outside the cookie
//! domain: redeem the handoff token the login host minted (see
//! [`crate::handoff`]), set a host-only session cookie and go back to the
//! original URL. Plus the two places the login host mints tokens: at
//! `/oauth2/start` when the user already has a session, and after the
//! provider's callback.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::AppError;
use super::login::redirect_with_cookies;
use super::pages::View;
use super::session_cookie_values;
use crate::handoff::HandoffError;
use crate::server::App;

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// `GET /.authgate/callback`: every refusal is a page with a 400 or 403 and
/// never sets a cookie.
pub(super) async fn handoff_callback_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<TokenQuery>,
) -> Result<Response, AppError> {
    let Some(token) = query.token.filter(|t| !t.is_empty()) else {
        return Err(AppError::BadRequest(
            "The sign-in link has no token.".into(),
        ));
    };
    // HTTP/1.1 sends Host; HTTP/2 the :authority, which hyper puts in the
    // URI. nginx's example passes `Host $http_host`.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let redeemed = match app
        .handoffs
        .redeem(app.sessions.sealer(), &token, host)
        .await
    {
        Ok(redeemed) => redeemed,
        Err(HandoffError::Store(e)) => return Err(AppError::StoreUnavailable(e.to_string())),
        Err(error) => {
            tracing::info!(%error, %host, "handoff refused");
            return Ok(refusal(&error));
        }
    };
    let Some(session) = app.sessions.resolve(&redeemed.session_cookie).await? else {
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
    let remaining = session.expires_at().saturating_sub(app.clock.now()).max(0);
    let mut cookie = app.session_cookie(
        redeemed.session_cookie,
        std::time::Duration::from_secs(remaining as u64),
    );
    // Host-only: this host is outside the cookie domain, and the cookie
    // must not be offered to its sibling hosts either.
    cookie.unset_domain();
    tracing::debug!(%host, return_to = %redeemed.return_to, "handoff completed");
    Ok(with_no_referrer(redirect_with_cookies(
        &redeemed.return_to,
        &[cookie],
    )))
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

/// The token is in this page's URL: never let it leak to the next site in a
/// `Referer`.
fn with_no_referrer(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// At `/oauth2/start`: when `return_to` is outside the cookie domain and
/// the browser already has a session on the login host, hand it off at
/// once without asking the provider. `None`: log in as usual.
pub(super) async fn start_with_existing_session(
    app: &App,
    headers: &HeaderMap,
    return_to: &str,
) -> Result<Option<Response>, AppError> {
    if !app.handoffs.needed_for(return_to) {
        return Ok(None);
    }
    for value in session_cookie_values(headers, &app.config.cookie.name) {
        if app.sessions.resolve(value).await?.is_some() {
            let url = mint(app, value, return_to)?;
            tracing::debug!(%return_to, "handing off an existing session");
            return Ok(Some(with_no_referrer(redirect_with_cookies(&url, &[]))));
        }
    }
    Ok(None)
}

/// After a login: where the callback sends the browser — `return_to`
/// itself, or the handoff callback on its host when the session cookie
/// would not reach it.
pub(super) fn after_login_location(
    app: &App,
    session_cookie: &str,
    return_to: &str,
) -> Result<String, AppError> {
    if app.handoffs.needed_for(return_to) {
        mint(app, session_cookie, return_to)
    } else {
        Ok(return_to.to_owned())
    }
}

fn mint(app: &App, session_cookie: &str, return_to: &str) -> Result<String, AppError> {
    app.handoffs
        .mint(app.sessions.sealer(), session_cookie, return_to)
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
        ] {
            let response = refusal(&error);
            assert_eq!(response.status(), status, "{error:?}");
            assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
            assert!(response.headers().get(header::SET_COOKIE).is_none());
        }
    }
}
