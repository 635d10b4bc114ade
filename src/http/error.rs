//! Every error a login-host handler can end in, mapped to HTTP in this one
//! place, classified by whose fault it is: the user's request (4xx, logged
//! at debug), the provider or the store (503, logged at error), ours (500,
//! generic page).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::pages::View;
use crate::metrics::LoginFailure;
use crate::oidc::OidcError;
use crate::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request itself is wrong (bad `rd`, missing parameters).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The login did not complete: wrong or replayed state, refused code,
    /// invalid token. Shown to the user with a way to try again.
    #[error("login failed ({reason}): {detail}", reason = .0.as_str(), detail = .1)]
    LoginFailed(LoginFailure, String),
    /// The identity provider is down or not yet discovered.
    #[error("identity provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// The session store is down.
    #[error(transparent)]
    StoreUnavailable(#[from] SessionError),
    /// A bug or misconfiguration of ours.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<OidcError> for AppError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Unavailable(m) => AppError::ProviderUnavailable(m),
            OidcError::Rejected(m) => AppError::LoginFailed(LoginFailure::ProviderRejected, m),
            OidcError::InvalidToken(m) => AppError::LoginFailed(LoginFailure::InvalidToken, m),
            OidcError::Config(m) => AppError::Internal(m),
        }
    }
}

impl AppError {
    /// Why a login ended in this error, for `authgate_logins_total`.
    pub fn login_failure(&self) -> LoginFailure {
        match self {
            AppError::BadRequest(_) => LoginFailure::BadRequest,
            AppError::LoginFailed(reason, _) => *reason,
            AppError::ProviderUnavailable(_) => LoginFailure::ProviderUnavailable,
            AppError::StoreUnavailable(_) => LoginFailure::StoreUnavailable,
            AppError::Internal(_) => LoginFailure::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::LoginFailed(..) => StatusCode::FORBIDDEN,
            AppError::ProviderUnavailable(_) | AppError::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    /// Logs the fault (a failed login is logged by the login handler, with
    /// its reason) and answers with the page for it, which never shows the
    /// internal detail.
    fn into_response(self) -> Response {
        let status = self.status();
        let view = match &self {
            AppError::BadRequest(m) => {
                tracing::debug!(reason = %m, "bad request");
                View::error(status, "Bad request", m.as_str())
            }
            AppError::LoginFailed(..) => View::sign_in_error(
                status,
                "The sign-in could not be completed. It may have expired or been started in another window. Please try again.",
            )
            // The callback is on the login host, so this path is there too.
            .with_link("/oauth2/start", "Sign in again"),
            AppError::ProviderUnavailable(m) => {
                tracing::error!(reason = %m, "identity provider unavailable");
                View::unavailable(
                    "Identity provider unavailable",
                    "The identity provider cannot be reached right now. If you are already signed in, your session still works; please try signing in again in a few minutes.",
                )
            }
            AppError::StoreUnavailable(e) => {
                tracing::error!(reason = %crate::fault::error_chain(e), "session store unavailable");
                View::unavailable(
                    "Service unavailable",
                    "Sessions cannot be read right now. Please try again in a few minutes.",
                )
            }
            AppError::Internal(m) => {
                tracing::error!(reason = %m, "internal error");
                View::error(status, "Internal error", "Something went wrong on our side.")
            }
        };
        view.into_response()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Faults are classified by whose fault they are: the provider being
    /// down is a 503 (never a 500 or a 2xx); a forged login is a 403.
    #[test]
    fn error_statuses() {
        assert_eq!(
            AppError::from(OidcError::Unavailable("x".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            AppError::from(OidcError::InvalidToken("x".into())).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            AppError::from(OidcError::Rejected("x".into())).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            AppError::BadRequest("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            AppError::Internal("x".into()).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    /// The page shown for a failed login never echoes the internal reason
    /// (it may contain provider details), but says what happened.
    #[tokio::test]
    async fn login_failure_page_hides_details() {
        let mut response =
            AppError::LoginFailed(LoginFailure::BadState, "token secret-ish detail".into())
                .into_response();
        let view = response
            .extensions_mut()
            .remove::<View>()
            .expect("a page to render");
        let rendered = super::super::pages::Pages::builtin().render(&view);
        assert_eq!(rendered.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(rendered.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("Sign-in failed"), "{body}");
        assert!(!body.contains("secret-ish"));
    }
}
