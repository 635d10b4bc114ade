//! The HTTP face of the provider, shaped like Dex's handlers.
//!
//! Early `/auth` errors (unknown client, unregistered redirect URI) are HTML
//! pages, later ones redirect back to the client; `/token` always answers
//! JSON OAuth2 errors. Passwords and tokens are never logged.

use crate::http::pages::escape;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::keys::{self, Signer};
use super::store::{self, AuthRequest, Grant, Login, OAuthError};
use super::{DevClient, DevIdp, read};

/// Scopes Dex v2.45 accepts (plus `audience:server:client_id:<peer>`).
const KNOWN_SCOPES: [&str; 6] = [
    "openid",
    "email",
    "profile",
    "groups",
    "offline_access",
    "federated:id",
];
const CROSS_CLIENT_PREFIX: &str = "audience:server:client_id:";

pub(crate) fn router(idp: DevIdp, path: &str) -> Router {
    let routes = Router::new()
        .route("/.well-known/openid-configuration", get(discovery_get))
        .route("/keys", get(keys_get))
        .route("/auth", get(auth_get).post(auth_post))
        .route("/token", axum::routing::post(token_post))
        .route("/userinfo", get(userinfo).post(userinfo))
        .route("/healthz", get(|| async { "Health check passed" }))
        .route(keys::ATTACKER_KEYS_PATH, get(attacker_keys_get))
        .route(keys::ATTACKER_CERT_PATH, get(attacker_keys_get))
        .with_state(idp);
    if path.is_empty() {
        routes
    } else {
        Router::new().nest(path, routes)
    }
}

async fn discovery_get(State(idp): State<DevIdp>) -> Response {
    let base = &idp.inner.base;
    let doc = json!({
        "issuer": idp.inner.issuer,
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/keys"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": ["openid", "email", "groups", "profile", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "claims_supported": [
            "iss", "sub", "aud", "iat", "exp", "email", "email_verified",
            "locale", "name", "preferred_username", "at_hash"
        ],
    });
    json_response(StatusCode::OK, &doc)
}

/// The key set a [`keys::SigningMode::AdvertisedForeignKey`] token points
/// at in `jku`/`x5u`. A relying party that fetches it has already lost;
/// tests assert nobody does.
async fn attacker_keys_get(State(idp): State<DevIdp>) -> Response {
    idp.inner
        .attacker_key_fetches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let jwks = read(&idp.inner.keys).foreign_jwks();
    json_response(StatusCode::OK, &jwks)
}

async fn keys_get(State(idp): State<DevIdp>) -> Response {
    let jwks = read(&idp.inner.keys).jwks();
    let mut response = json_response(StatusCode::OK, &jwks);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=600"),
    );
    response
}

async fn auth_get(State(idp): State<DevIdp>, RawQuery(query): RawQuery) -> Response {
    let params = form_fields(query.as_deref().unwrap_or("").as_bytes());
    let param = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let client_id = param("client_id");
    let Some(client) = idp.client(client_id) else {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!("Invalid client_id ({client_id:?})."),
        );
    };
    let redirect_uri = param("redirect_uri");
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("Unregistered redirect_uri ({redirect_uri:?})."),
        );
    }
    let state = params.get("state").filter(|s| !s.is_empty()).cloned();
    match validate_auth_request(client, &params) {
        Ok(request) => {
            let id = idp.store().begin_login(request, idp.now());
            login_page(&idp, StatusCode::OK, &id, "", None)
        }
        Err((error, description)) => {
            let mut query = vec![
                ("error", error.to_owned()),
                ("error_description", description),
            ];
            if let Some(state) = state {
                query.push(("state", state));
            }
            see_other(&store::with_query(redirect_uri, &query))
        }
    }
}

/// Dex's checks after the client and redirect URI are known good; errors
/// are `(error, error_description)` for the redirect back to the client.
fn validate_auth_request(
    client: &DevClient,
    params: &HashMap<String, String>,
) -> Result<AuthRequest, (&'static str, String)> {
    let param = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let code_challenge = param("code_challenge").to_owned();
    let code_challenge_method = match param("code_challenge_method") {
        "" => "plain",
        m @ ("S256" | "plain") => m,
        other => {
            return Err((
                "invalid_request",
                format!("Unsupported PKCE challenge method ({other:?})."),
            ));
        }
    };
    let scopes: Vec<String> = param("scope")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err((
            "invalid_scope",
            r#"Missing required scope(s) ["openid"]."#.to_owned(),
        ));
    }
    let unrecognized: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !KNOWN_SCOPES.contains(s) && !s.starts_with(CROSS_CLIENT_PREFIX))
        .collect();
    if !unrecognized.is_empty() {
        return Err((
            "invalid_scope",
            format!("Unrecognized scope(s) {unrecognized:?}"),
        ));
    }
    // No trusted peers are configured: only a client's own audience is fine.
    let untrusted: Vec<&str> = scopes
        .iter()
        .filter_map(|s| s.strip_prefix(CROSS_CLIENT_PREFIX).map(|peer| (s, peer)))
        .filter(|(_, peer)| *peer != client.id)
        .map(|(s, _)| s.as_str())
        .collect();
    if !untrusted.is_empty() {
        return Err((
            "invalid_scope",
            format!("Client can't request scope(s) {untrusted:?}"),
        ));
    }
    match param("response_type") {
        "" => return Err(("invalid_request", "No response_type provided".to_owned())),
        "code" => {}
        other => {
            return Err((
                "unsupported_response_type",
                format!("Unsupported response type {other:?}"),
            ));
        }
    }
    Ok(AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: param("redirect_uri").to_owned(),
        scopes,
        state: params.get("state").filter(|s| !s.is_empty()).cloned(),
        nonce: params.get("nonce").filter(|s| !s.is_empty()).cloned(),
        code_challenge,
        code_challenge_method: code_challenge_method.to_owned(),
    })
}

async fn auth_post(State(idp): State<DevIdp>, body: Bytes) -> Response {
    let form = form_fields(&body);
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (id, login) = (field("req"), field("login"));
    let outcome = idp
        .store()
        .finish_login(id, login, field("password"), idp.now());
    match outcome {
        Login::Redirect(target) => {
            tracing::debug!(login, "devidp: login succeeded");
            see_other(&target)
        }
        Login::BadCredentials => {
            tracing::debug!(login, "devidp: invalid username or password");
            login_page(
                &idp,
                StatusCode::OK,
                id,
                login,
                Some("Invalid username or password"),
            )
        }
        Login::UnknownRequest => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid or expired login request; start again.",
        ),
    }
}

async fn token_post(State(idp): State<DevIdp>, headers: HeaderMap, body: Bytes) -> Response {
    idp.inner.token_requests.fetch_add(1, Ordering::SeqCst);
    let forced = idp.inner.token_failure.load(Ordering::SeqCst);
    if forced != 0 {
        let error = match forced {
            401 => "invalid_client",
            400..=499 => "invalid_request",
            _ => "server_error",
        };
        return oauth_error(&OAuthError::new(forced, error, None));
    }
    match token_grant(&idp, &headers, &body) {
        Ok(body) => {
            let mut response = json_response(StatusCode::OK, &body);
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(e) => {
            tracing::debug!(
                status = e.status,
                error = e.error,
                "devidp: token request refused"
            );
            oauth_error(&e)
        }
    }
}

fn token_grant(idp: &DevIdp, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let form = form_fields(body);
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let grant_type = field("grant_type");
    if !matches!(grant_type, "authorization_code" | "refresh_token") {
        return Err(OAuthError::new(400, "unsupported_grant_type", None));
    }
    let client = authenticate_client(idp, headers, &form)?;
    let now = idp.now();
    let grant = if grant_type == "authorization_code" {
        idp.store().exchange_code(
            &client.id,
            field("code"),
            field("redirect_uri"),
            field("code_verifier"),
            now,
        )?
    } else {
        idp.store().refresh(
            &client.id,
            field("refresh_token"),
            form.get("scope").map(String::as_str),
        )?
    };
    issue_tokens(idp, &client.id, &grant, now).map_err(|e| {
        tracing::error!(error = %e, "devidp: could not sign tokens");
        OAuthError::new(500, "server_error", None)
    })
}

/// HTTP Basic (URL-escaped id and secret, as Dex unescapes them) or the
/// `client_id`/`client_secret` form fields.
fn authenticate_client<'a>(
    idp: &'a DevIdp,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<&'a DevClient, OAuthError> {
    let invalid = OAuthError::new(401, "invalid_client", Some("Invalid client credentials."));
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let (id, secret) = match basic {
        Some(encoded) => {
            let decoded = STANDARD
                .decode(encoded.trim())
                .map_err(|_| invalid_client())?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid_client())?;
            let (id, secret) = decoded.split_once(':').ok_or_else(invalid_client)?;
            (
                query_unescape(id).ok_or_else(invalid_client)?,
                query_unescape(secret).ok_or_else(invalid_client)?,
            )
        }
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let client = idp.client(&id).ok_or(invalid)?;
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        client.secret.as_bytes(),
        secret.as_bytes(),
    )) {
        Ok(client)
    } else {
        Err(invalid_client())
    }
}

fn invalid_client() -> OAuthError {
    OAuthError::new(401, "invalid_client", Some("Invalid client credentials."))
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte.
fn query_unescape(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Signs the access token, then the ID token with `at_hash` (and `c_hash`
/// for a code), and builds Dex's token response.
pub(crate) fn issue_tokens(
    idp: &DevIdp,
    client_id: &str,
    grant: &Grant,
    now: i64,
) -> Result<Value, super::DevIdpError> {
    let ttl = i64::try_from(idp.inner.id_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let claims = store::token_claims(
        &idp.inner.issuer,
        client_id,
        grant,
        now,
        now.saturating_add(ttl),
    );
    let (access_signer, id_signer) = {
        let ring = read(&idp.inner.keys);
        let mode = *read(&idp.inner.signing_mode);
        (
            Signer::new(&ring, keys::SigningMode::Normal, &idp.inner.base),
            Signer::new(&ring, mode, &idp.inner.base),
        )
    };
    let access_token = access_signer.sign(&claims)?;
    let mut id_claims = claims;
    id_claims.insert("at_hash".into(), json!(keys::half_hash(&access_token)));
    if let Some(code) = &grant.code {
        id_claims.insert("c_hash".into(), json!(keys::half_hash(code)));
    }
    if let Some(hook) = read(&idp.inner.claims_hook).clone() {
        hook(&mut id_claims);
    }
    let id_token = id_signer.sign(&id_claims)?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl,
        "id_token": id_token,
    });
    if let (Some(refresh), Some(map)) = (&grant.refresh_token, body.as_object_mut()) {
        map.insert("refresh_token".into(), json!(refresh));
    }
    Ok(body)
}

/// The bearer access token's claims; 401 without a token, 403 if invalid.
async fn userinfo(State(idp): State<DevIdp>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        let mut response = oauth_error(&OAuthError::new(
            401,
            "invalid_request",
            Some("Bearer token required."),
        ));
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    let published = read(&idp.inner.keys).published();
    match keys::verify(token, &published, idp.now()) {
        Some(claims) => json_response(StatusCode::OK, &Value::Object(claims)),
        None => oauth_error(&OAuthError::new(
            403,
            "access_denied",
            Some("Invalid bearer token."),
        )),
    }
}

fn login_page(
    idp: &DevIdp,
    status: StatusCode,
    req: &str,
    login: &str,
    error: Option<&str>,
) -> Response {
    let banner = idp
        .inner
        .banner
        .as_deref()
        .map(|b| format!("<p class=\"banner\">{}</p>\n", escape(b)))
        .unwrap_or_default();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    let page = include_str!("login.html")
        .replace("{{BANNER}}", &banner)
        .replace("{{ERROR}}", &error)
        .replace("{{ACTION}}", &escape(&format!("{}/auth", idp.inner.path)))
        .replace("{{REQ}}", &escape(req))
        .replace("{{LOGIN}}", &escape(login));
    html_response(status, page)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Bad request</title></head>\
         <body><h1>Bad request</h1><p>{}</p></body></html>\n",
        escape(message)
    );
    html_response(status, page)
}

fn html_response(status: StatusCode, page: String) -> Response {
    let mut response = (status, page).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => error_page(StatusCode::BAD_REQUEST, "Invalid redirect_uri."),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Dex's `tokenErr`: `{"error", "error_description"?}`.
fn oauth_error(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({ "error": e.error });
    if let (Some(description), Some(map)) = (e.description, body.as_object_mut()) {
        map.insert("error_description".into(), json!(description));
    }
    json_response(status, &body)
}

/// `application/x-www-form-urlencoded` fields; the first value of a
/// repeated key wins, like Go's `FormValue`.
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        fields
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    fields
}

impl DevIdp {
    fn client(&self, id: &str) -> Option<&DevClient> {
        self.inner.clients.iter().find(|c| c.id == id)
    }
}
