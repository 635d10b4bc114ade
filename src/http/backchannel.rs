//! `POST /oauth2/backchannel_logout`: the provider's back-channel logout
//! (register `<login host>/oauth2/backchannel_logout` as the client's
//! `backchannel_logout_uri`). A valid logout token ends the sessions it
//! names on every replica; the answer is 200, or 400 with an OAuth error
//! for a token refused, or 503 when the provider's keys or the store
//! cannot be reached (the provider may retry). Never cached.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::App;
use crate::backchannel;
use crate::bearer::BearerVerifier;
use crate::claims::Expected;
use crate::session::{Request, Scope, Target, perform};

#[derive(Deserialize)]
pub(super) struct LogoutForm {
    logout_token: Option<String>,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn invalid(description: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        serde_json::json!({"error": "invalid_request", "error_description": description}),
    )
}

fn unavailable() -> Response {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"error": "temporarily_unavailable"}),
    )
}

pub(super) async fn backchannel_logout_post(
    State(app): State<Arc<App>>,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(token) = form.logout_token.filter(|t| !t.is_empty()) else {
        return invalid("no logout_token");
    };
    let oidc = app.oidc().clone();
    let audiences = [oidc.client_id().to_owned()];
    let expected = Expected {
        issuer: oidc.issuer(),
        audiences: &audiences,
        parties: &audiences,
        now: app.clock().now(),
        skew: oidc.clock_skew(),
    };
    let verifier = BearerVerifier::new(oidc.clone(), &[], app.clock().clone());
    let logout = match backchannel::verify(&verifier, &token, &expected).await {
        Ok(logout) => logout,
        Err(error) if error.is_unavailable() => {
            tracing::warn!(%error, "back-channel logout: provider keys unavailable");
            return unavailable();
        }
        Err(error) => {
            tracing::info!(%error, "back-channel logout refused");
            return invalid(&error.to_string());
        }
    };
    // A replayed token is refused; the mark lives until the token expires.
    let ttl = Duration::from_secs(
        u64::try_from(logout.expires_at - expected.now + expected.skew).unwrap_or(0) + 1,
    );
    match app
        .sessions()
        .consume_logout_token(oidc.issuer(), &logout.jti, ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!("back-channel logout refused: token replayed (jti)");
            return invalid("logout token replayed");
        }
        Err(_) => return unavailable(),
    }
    let target = Target::Provider {
        sub: logout.sub,
        sid: logout.sid,
    };
    let actor = format!("provider:{}", oidc.issuer());
    match perform(
        &Scope::Server(app.sessions()),
        &Request::Revoke { target },
        &actor,
    )
    .await
    {
        Ok(_) => answer(StatusCode::OK, serde_json::json!({})),
        Err(_) => unavailable(),
    }
}
