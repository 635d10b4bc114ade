//! `/oauth2/admin/sessions` on the login host: `GET` lists sessions
//! (`?user=` for one user's), `DELETE` ends them (`?user=`, `?session=` or
//! `?all=true`, exactly one). Open to members of `admin_groups` only,
//! decided by the policy's own authorization code; a `DELETE` must come
//! from this site (no cross-site request forgery: a browser sends `DELETE`
//! cross-site only after a CORS preflight this server never approves, and
//! its `Origin` or `Sec-Fetch-Site` is checked as for sign-out). Every
//! request is one audit log line, refused ones included.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::login::from_this_site;
use super::request::session_cookie_values;
use crate::app::App;
use crate::identity::Identity;
use crate::policy::AdminAccess;
use crate::session::{Request, Scope, Target, perform};

#[derive(Deserialize)]
pub(super) struct AdminQuery {
    user: Option<String>,
    session: Option<String>,
    all: Option<bool>,
}

/// A JSON answer, never cached.
fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn refused(status: StatusCode, error: &str) -> Response {
    json(status, serde_json::json!({ "error": error }))
}

/// The signed-in administrator, or the answer refusing the request.
async fn administrator(app: &App, headers: &HeaderMap, action: &str) -> Result<Identity, Response> {
    let mut identity = None;
    for value in session_cookie_values(headers, &app.config().cookie.name) {
        match app.sessions().resolve(value).await {
            Ok(Some(resolved)) => {
                identity = Some(resolved.record.identity.clone());
                break;
            }
            Ok(None) => {}
            Err(_) => {
                return Err(refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session store unavailable",
                ));
            }
        }
    }
    let Some(identity) = identity else {
        return Err(refused(StatusCode::UNAUTHORIZED, "not signed in"));
    };
    if !AdminAccess::groups(&app.config().admin_groups).allows(&identity) {
        tracing::warn!(
            target: "authgate::audit",
            actor = %format!("admin-api:{}", identity.display_name()),
            action,
            "session admin API refused: not in admin_groups"
        );
        return Err(refused(StatusCode::FORBIDDEN, "not in admin_groups"));
    }
    Ok(identity)
}

/// Runs `request` for `admin`; a store failure is a 503, never "done".
async fn run(app: &App, admin: &Identity, request: &Request) -> Response {
    let actor = format!("admin-api:{}", admin.display_name());
    match perform(&Scope::Server(app.sessions()), request, &actor).await {
        Ok(sessions) => json(StatusCode::OK, serde_json::json!({ "sessions": sessions })),
        Err(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable"),
    }
}

/// `GET /oauth2/admin/sessions[?user=EMAIL]`.
pub(super) async fn sessions_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<AdminQuery>,
) -> Response {
    let admin = match administrator(&app, &headers, "list").await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    run(&app, &admin, &Request::List { user: query.user }).await
}

/// `DELETE /oauth2/admin/sessions?user=EMAIL | ?session=ID | ?all=true`.
pub(super) async fn sessions_delete(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<AdminQuery>,
) -> Response {
    if !from_this_site(&app, &headers, true) {
        tracing::warn!(target: "authgate::audit", action = "revoke", "cross-site session revocation refused");
        return refused(StatusCode::FORBIDDEN, "cross-site request refused");
    }
    let admin = match administrator(&app, &headers, "revoke").await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let target = match (query.user, query.session, query.all) {
        (Some(user), None, None | Some(false)) if !user.trim().is_empty() => Target::User(user),
        (None, Some(id), None | Some(false)) => Target::Session(id),
        (None, None, Some(true)) => Target::All,
        _ => {
            return refused(
                StatusCode::BAD_REQUEST,
                "name exactly one of user=EMAIL, session=ID, all=true",
            );
        }
    };
    run(&app, &admin, &Request::Revoke { target }).await
}
