//! The provider's memory: pending logins, authorization codes, refresh
//! tokens, users — and the claims a grant yields.
//!
//! Lifetimes and error codes follow Dex v2.45: auth requests live 24h, codes
//! 30 minutes and once, refresh tokens rotate on every use with no reuse
//! window, and one refresh token exists per user and client.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::keys::random_token;
use super::{DevUser, LOCAL_CONNECTOR_ID};

/// Dex keeps an unfinished login for 24 hours.
const AUTH_REQUEST_TTL: i64 = 24 * 3600;
/// Dex's hard-coded authorization-code lifetime.
const CODE_TTL: i64 = 30 * 60;
/// Expired codes are kept this long so their use still gets Dex's answer
/// for an expired code (500) rather than the one for an unknown code (400).
const EXPIRED_CODE_GRACE: i64 = 24 * 3600;

/// Dex's answer to a rotated (or unknown) refresh token.
pub(crate) const REFRESH_CLAIMED: &str =
    "Refresh token is invalid or has already been claimed by another client.";

/// An OAuth2 error for the token endpoint: status, `error`, description.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) status: u16,
    pub(crate) error: &'static str,
    pub(crate) description: Option<&'static str>,
}

impl OAuthError {
    pub(crate) const fn new(
        status: u16,
        error: &'static str,
        description: Option<&'static str>,
    ) -> Self {
        OAuthError {
            status,
            error,
            description,
        }
    }
}

/// A validated `/auth` request waiting for the user to log in.
#[derive(Clone, Debug)]
pub(crate) struct AuthRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    /// Empty when the client did not use PKCE.
    pub(crate) code_challenge: String,
    /// `S256` or `plain`.
    pub(crate) code_challenge_method: String,
}

struct PendingLogin {
    request: AuthRequest,
    expires_at: i64,
}

struct AuthCode {
    request: AuthRequest,
    /// The identity as of the login, like the claims Dex stores in a code.
    user: DevUser,
    expires_at: i64,
}

struct RefreshRecord {
    client_id: String,
    username: String,
    scopes: Vec<String>,
    nonce: Option<String>,
    /// The secret half of the only valid token of this record.
    secret: String,
}

/// What a successful grant hands to the token endpoint.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) user: DevUser,
    pub(crate) scopes: Vec<String>,
    pub(crate) nonce: Option<String>,
    /// The code, for `c_hash` (code exchanges only).
    pub(crate) code: Option<String>,
    pub(crate) refresh_token: Option<String>,
}

/// Outcome of a form submission.
pub(crate) enum Login {
    /// Go to this URL (the client's redirect URI with `code` and `state`).
    Redirect(String),
    BadCredentials,
    UnknownRequest,
}

pub(crate) struct Store {
    pub(crate) users: Vec<DevUser>,
    logins: HashMap<String, PendingLogin>,
    codes: HashMap<String, AuthCode>,
    refresh: HashMap<String, RefreshRecord>,
}

impl Store {
    pub(crate) fn new(users: Vec<DevUser>) -> Store {
        Store {
            users,
            logins: HashMap::new(),
            codes: HashMap::new(),
            refresh: HashMap::new(),
        }
    }

    /// Records a validated `/auth` request; returns its id for the form.
    pub(crate) fn begin_login(&mut self, request: AuthRequest, now: i64) -> String {
        self.logins.retain(|_, l| l.expires_at > now);
        self.codes
            .retain(|_, c| c.expires_at + EXPIRED_CODE_GRACE > now);
        let id = random_token(16);
        self.logins.insert(
            id.clone(),
            PendingLogin {
                request,
                expires_at: now + AUTH_REQUEST_TTL,
            },
        );
        id
    }

    /// Checks the credentials for login `id`; on success issues a code.
    pub(crate) fn finish_login(
        &mut self,
        id: &str,
        login: &str,
        password: &str,
        now: i64,
    ) -> Login {
        if self.logins.get(id).is_none_or(|l| l.expires_at <= now) {
            return Login::UnknownRequest;
        }
        let user = self.users.iter().find(|u| u.username == login);
        let password_ok =
            user.is_some_and(|u| bool::from(u.password.as_bytes().ct_eq(password.as_bytes())));
        let (Some(user), true) = (user, password_ok) else {
            return Login::BadCredentials;
        };
        let user = user.clone();
        let Some(PendingLogin { request, .. }) = self.logins.remove(id) else {
            return Login::UnknownRequest;
        };
        let code = random_token(24);
        let mut params = vec![("code", code.clone())];
        if let Some(state) = &request.state {
            params.push(("state", state.clone()));
        }
        let target = with_query(&request.redirect_uri, &params);
        self.codes.insert(
            code,
            AuthCode {
                request,
                user,
                expires_at: now + CODE_TTL,
            },
        );
        Login::Redirect(target)
    }

    /// The `authorization_code` grant, with Dex's checks in Dex's order.
    pub(crate) fn exchange_code(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        now: i64,
    ) -> Result<Grant, OAuthError> {
        if code.is_empty() {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                Some("Required param: code."),
            ));
        }
        let Some(stored) = self.codes.get(code) else {
            return Err(OAuthError::new(
                400,
                "invalid_grant",
                Some("Invalid or expired code parameter."),
            ));
        };
        if stored.expires_at <= now || stored.request.client_id != client_id {
            // Dex's quirk: a code that exists but is expired or another
            // client's falls through to a storage error.
            return Err(OAuthError::new(500, "server_error", None));
        }
        let request = &stored.request;
        match (verifier.is_empty(), request.code_challenge.is_empty()) {
            (false, false) => {
                let computed = if request.code_challenge_method == "S256" {
                    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
                } else {
                    verifier.to_owned()
                };
                if !bool::from(computed.as_bytes().ct_eq(request.code_challenge.as_bytes())) {
                    return Err(OAuthError::new(
                        400,
                        "invalid_grant",
                        Some("Invalid code_verifier."),
                    ));
                }
            }
            (false, true) => {
                return Err(OAuthError::new(
                    400,
                    "invalid_request",
                    Some("No PKCE flow started. Cannot check code_verifier."),
                ));
            }
            (true, false) => {
                return Err(OAuthError::new(
                    400,
                    "invalid_grant",
                    Some("Expecting parameter code_verifier in PKCE flow."),
                ));
            }
            (true, true) => {}
        }
        if request.redirect_uri != redirect_uri {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                Some("redirect_uri did not match URI from initial request."),
            ));
        }
        let Some(AuthCode { request, user, .. }) = self.codes.remove(code) else {
            return Err(OAuthError::new(
                400,
                "invalid_grant",
                Some("Invalid or expired code parameter."),
            ));
        };
        let refresh_token = request
            .scopes
            .iter()
            .any(|s| s == "offline_access")
            .then(|| {
                // One refresh token per user and client: a new login revokes
                // the previous one (dexidp/dex#973).
                self.refresh
                    .retain(|_, r| !(r.username == user.username && r.client_id == client_id));
                let id = random_token(16);
                let secret = random_token(24);
                self.refresh.insert(
                    id.clone(),
                    RefreshRecord {
                        client_id: client_id.to_owned(),
                        username: user.username.clone(),
                        scopes: request.scopes.clone(),
                        nonce: request.nonce.clone(),
                        secret: secret.clone(),
                    },
                );
                format!("{id}.{secret}")
            });
        Ok(Grant {
            user,
            scopes: request.scopes,
            nonce: request.nonce,
            code: Some(code.to_owned()),
            refresh_token,
        })
    }

    /// The `refresh_token` grant: rotates the token and re-reads the user.
    pub(crate) fn refresh(
        &mut self,
        client_id: &str,
        token: &str,
        scope: Option<&str>,
    ) -> Result<Grant, OAuthError> {
        let claimed = || OAuthError::new(400, "invalid_request", Some(REFRESH_CLAIMED));
        if token.is_empty() {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                Some("Required param: refresh_token."),
            ));
        }
        let (id, secret) = token.split_once('.').ok_or_else(claimed)?;
        let record = self.refresh.get_mut(id).ok_or_else(claimed)?;
        if record.client_id != client_id {
            return Err(OAuthError::new(
                400,
                "invalid_grant",
                Some("Refresh token is invalid."),
            ));
        }
        if !bool::from(record.secret.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(claimed());
        }
        let scopes = match scope.map(str::split_whitespace) {
            Some(requested) => {
                let requested: Vec<String> = requested.map(str::to_owned).collect();
                if requested.iter().any(|s| !record.scopes.contains(s)) {
                    return Err(OAuthError::new(
                        400,
                        "invalid_request",
                        Some("Requested scopes contain unauthorized scope(s)."),
                    ));
                }
                requested
            }
            None => record.scopes.clone(),
        };
        // The "connector refresh": a user who is gone fails the refresh.
        let user = self
            .users
            .iter()
            .find(|u| u.username == record.username)
            .cloned()
            .ok_or(OAuthError::new(500, "invalid_request", None))?;
        record.secret = random_token(24);
        Ok(Grant {
            user,
            scopes,
            nonce: record.nonce.clone(),
            code: None,
            refresh_token: Some(format!("{id}.{}", record.secret)),
        })
    }
}

/// The claims Dex puts in ID and access tokens for this user and scopes.
pub(crate) fn token_claims(
    issuer: &str,
    client_id: &str,
    grant: &Grant,
    issued_at: i64,
    expires_at: i64,
) -> Map<String, Value> {
    let has = |scope: &str| grant.scopes.iter().any(|s| s == scope);
    let user = &grant.user;
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("sub".into(), json!(user.subject));
    claims.insert("aud".into(), json!(client_id));
    claims.insert("exp".into(), json!(expires_at));
    claims.insert("iat".into(), json!(issued_at));
    if let Some(nonce) = &grant.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    if has("email") {
        claims.insert("email".into(), json!(user.email));
        claims.insert("email_verified".into(), json!(true));
    }
    if has("groups") && !user.groups.is_empty() {
        claims.insert("groups".into(), json!(user.groups));
    }
    if has("profile") {
        claims.insert("name".into(), json!(user.name));
        claims.insert("preferred_username".into(), json!(user.preferred_username));
    }
    if has("federated:id") {
        let (connector_id, user_id) = split_dex_subject(&user.subject)
            .unwrap_or_else(|| (LOCAL_CONNECTOR_ID.to_owned(), user.subject.clone()));
        claims.insert(
            "federated_claims".into(),
            json!({"connector_id": connector_id, "user_id": user_id}),
        );
    }
    claims
}

/// Reverses [`super::dex_subject`]: `(connector_id, user_id)`.
fn split_dex_subject(subject: &str) -> Option<(String, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(subject).ok()?;
    let mut fields = Vec::with_capacity(2);
    let mut rest = bytes.as_slice();
    for tag in [0x0a_u8, 0x12] {
        let (&first, tail) = rest.split_first()?;
        if first != tag {
            return None;
        }
        let (mut len, mut shift, mut tail) = (0usize, 0u32, tail);
        loop {
            let (&b, t) = tail.split_first()?;
            tail = t;
            len |= usize::from(b & 0x7f).checked_shl(shift)?;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        if tail.len() < len {
            return None;
        }
        fields.push(String::from_utf8(tail[..len].to_vec()).ok()?);
        rest = &tail[len..];
    }
    let connector = fields.pop()?;
    let user = fields.pop()?;
    rest.is_empty().then_some((connector, user))
}

/// Appends query parameters to a URL that may already have a query.
pub(crate) fn with_query(base: &str, params: &[(&str, String)]) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
            url.into()
        }
        // Registered redirect URIs are exact strings; keep odd ones working.
        Err(_) => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}{query}")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// `federated_claims` recovers what `dex_subject` encoded, including the
    /// Dex documentation's example subject.
    #[test]
    fn dex_subject_round_trips() {
        assert_eq!(
            super::super::dex_subject("2342749", "github"),
            "CgcyMzQyNzQ5EgZnaXRodWI"
        );
        let subject = super::super::dex_subject("alice", "local");
        assert_eq!(
            split_dex_subject(&subject),
            Some(("local".into(), "alice".into()))
        );
        assert_eq!(split_dex_subject("not-a-subject"), None);
    }

    /// Existing query parameters of a registered redirect URI survive.
    #[test]
    fn with_query_keeps_existing_parameters() {
        let got = with_query("https://app.example.com/cb?x=1", &[("code", "a b".into())]);
        assert_eq!(got, "https://app.example.com/cb?x=1&code=a+b");
    }
}
