//! The OpenID Connect relying party: discovery, the authorization-code login
//! with PKCE, the code exchange, ID-token verification and refresh.
//!
//! Discovery runs at start (with retry) and readiness stays false until it
//! succeeds. The provider's keys are cached and fetched again when a token
//! names a `kid` we do not know (Dex rotates every 6h), at most once per
//! [`JWKS_REFETCH_INTERVAL`], so a flood of forged `kid`s cannot turn into a
//! flood of requests to the provider.
//!
//! The `openidconnect` crate checks the signature, `iss` (exact string),
//! `aud`, `exp` and `nonce`; `at_hash` is checked here by hand because the
//! crate does not, and the claims then pass the checks Bearer tokens pass
//! too ([`crate::claims`]: `azp`, `nbf`, `iat`, claim types). An ID token
//! with a claim of a type the crate refuses to parse ends the login as an
//! invalid token (403), not as an unavailable provider.
//!
//! Before a login sends the browser to the provider, [`Oidc::check_reachable`]
//! asks the provider whether it is up (one bounded request, shared by
//! concurrent logins and reused for [`PROVIDER_CHECK_TTL`]): a user whose
//! provider is down sees our "identity provider unavailable" page instead of
//! the browser's connection error. Decisions never call it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGrantType, CoreIdToken, CoreIdTokenVerifier,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, TokenResponse, reqwest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{Instrument as _, info_span};
use url::Url;

use crate::clock::SharedClock;

/// The target of spans only the trace exporter takes (`traces::TARGET`;
/// this module sits below it).
const TRACE: &str = "authgate::otel";
use crate::config::IdpConfig;
use crate::identity::{Claims, Identity};

/// The shortest time between two JWKS fetches caused by unknown `kid`s.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// How long one request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the answer of a reachability check is reused. Short, so a
/// provider that went down (or came back) is noticed within seconds, yet a
/// flood of `/oauth2/start` requests costs the provider at most one request
/// per period.
pub const PROVIDER_CHECK_TTL: Duration = Duration::from_secs(2);

/// How long a reachability check may take before the provider counts as
/// down: a user waits this long at most before seeing the 503 page.
const PROVIDER_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What went wrong while talking to the provider or checking its answer.
///
/// `Unavailable` is the provider's fault (network, 5xx, not yet discovered)
/// and makes the login page say so with a 503; the others are a failed or
/// forged login and end it with a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider is not reachable: {0}")]
    Unavailable(String),
    #[error("the identity provider refused the request: {0}")]
    Rejected(String),
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// The secrets of one login attempt, kept in a sealed short-lived cookie on
/// the login host between `/oauth2/start` and `/oauth2/callback`.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginState {
    /// The `state` parameter (CSRF token).
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// Where to send the user afterwards (already validated).
    pub return_to: String,
    /// When the attempt began (seconds since the epoch).
    pub started_at: i64,
    /// For a `return_to` outside the cookie domain: the binding of the
    /// browser that began the sign-in there, sealed into the handoff token
    /// after the login (see [`crate::handoff`]). Absent in states sealed
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_binding: Option<String>,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("return_to", &self.return_to)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

/// What discovery says besides OpenID Connect Core: where RP-initiated
/// logout continues (Dex advertises none).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct LogoutMetadata {
    end_session_endpoint: Option<Url>,
}

impl openidconnect::AdditionalProviderMetadata for LogoutMetadata {}

type ProviderMetadata = openidconnect::ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A completed login or refresh: who the user is, and what to keep.
pub struct LoginOutcome {
    pub identity: Identity,
    /// The provider's refresh token (Dex: only with `offline_access`).
    pub refresh_token: Option<String>,
    /// The ID token's `exp`.
    pub id_token_expires_at: i64,
    /// The ID token itself, for RP-initiated logout's `id_token_hint`.
    pub id_token: String,
}

impl std::fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOutcome")
            .field("identity", &self.identity)
            .field("id_token_expires_at", &self.id_token_expires_at)
            .finish_non_exhaustive()
    }
}

/// What discovery found, plus the provider's current keys.
struct Discovered {
    metadata: ProviderMetadata,
    jwks: ArcSwapOption<CoreJsonWebKeySet>,
    auth_type: AuthType,
    algs: Vec<CoreJwsSigningAlgorithm>,
}

/// The last reachability check: when, and the failure if there was one.
struct ProviderCheck {
    at: Instant,
    outcome: Result<(), String>,
}

/// The relying party for one provider.
pub struct Oidc {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect_url: RedirectUrl,
    scopes: Vec<String>,
    clock_skew: i64,
    http: reqwest::Client,
    clock: SharedClock,
    discovered: ArcSwapOption<Discovered>,
    last_jwks_fetch: Mutex<Option<Instant>>,
    /// Held across the check's request, so concurrent logins wait for one
    /// request instead of each sending their own.
    last_check: tokio::sync::Mutex<Option<ProviderCheck>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// Prepares the relying party; does no I/O. `callback_url` is the
    /// redirect URI registered at the provider.
    pub fn new(idp: &IdpConfig, callback_url: &Url, clock: SharedClock) -> Result<Oidc, OidcError> {
        let issuer = IssuerUrl::new(idp.issuer_url.clone())
            .map_err(|e| OidcError::Config(format!("idp_provider_url: {e}")))?;
        let redirect_url = RedirectUrl::new(callback_url.to_string())
            .map_err(|e| OidcError::Config(format!("callback URL: {e}")))?;
        let mut http = reqwest::Client::builder()
            // Following redirects from the provider would be an SSRF vector.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .connect_timeout(PROVIDER_TIMEOUT);
        // `idp_ca_file`, parsed by validation.
        for cert in &idp.ca_certs {
            http = http.add_root_certificate(cert.clone());
        }
        if idp.insecure_skip_verify {
            http = http.danger_accept_invalid_certs(true);
        }
        let http = http
            .build()
            .map_err(|e| OidcError::Config(format!("HTTP client: {e}")))?;
        Ok(Oidc {
            issuer,
            client_id: ClientId::new(idp.client_id.clone()),
            client_secret: ClientSecret::new(
                String::from_utf8_lossy(idp.client_secret.expose()).into_owned(),
            ),
            redirect_url,
            scopes: idp.scopes.clone(),
            clock_skew: idp.clock_skew.as_secs() as i64,
            http,
            clock,
            discovered: ArcSwapOption::empty(),
            last_jwks_fetch: Mutex::new(None),
            last_check: tokio::sync::Mutex::new(None),
        })
    }

    /// True once discovery has succeeded.
    pub fn is_ready(&self) -> bool {
        self.discovered.load().is_some()
    }

    /// Fetches the discovery document and the keys once.
    pub async fn discover(&self) -> Result<(), OidcError> {
        let metadata = ProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("discovery: {}", crate::fault::error_chain(&e)))
            })?;
        let auth_type = match metadata.token_endpoint_auth_methods_supported() {
            Some(methods)
                if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
            {
                AuthType::RequestBody
            }
            _ => AuthType::BasicAuth,
        };
        // Accept what the provider says it signs with, never `none` or HMAC
        // (an HMAC "signature" keyed with public material is forgeable).
        let algs: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| {
                !matches!(
                    alg,
                    CoreJwsSigningAlgorithm::None
                        | CoreJwsSigningAlgorithm::HmacSha256
                        | CoreJwsSigningAlgorithm::HmacSha384
                        | CoreJwsSigningAlgorithm::HmacSha512
                )
            })
            .cloned()
            .collect();
        let algs = if algs.is_empty() {
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        } else {
            algs
        };
        let jwks = metadata.jwks().clone();
        self.discovered.store(Some(Arc::new(Discovered {
            metadata,
            jwks: ArcSwapOption::from_pointee(jwks),
            auth_type,
            algs,
        })));
        Ok(())
    }

    /// Runs discovery until it succeeds, backing off from 1s to 30s, or
    /// until `shutdown` resolves. Each failure counts as a provider error.
    pub async fn discover_until_ready(&self, metrics: &crate::metrics::Metrics) {
        let mut delay = Duration::from_secs(1);
        loop {
            match self.discover().await {
                Ok(()) => {
                    tracing::info!(issuer = self.issuer.as_str(), "provider discovery done");
                    return;
                }
                Err(e) => {
                    metrics.provider_error(crate::metrics::ProviderOperation::Discovery);
                    tracing::warn!(issuer = self.issuer.as_str(), error = %e, retry_in = ?delay, "provider discovery failed");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Whether the provider answers now: `Unavailable` if discovery has not
    /// completed, or if its discovery document does not come back with a
    /// 2xx within [`PROVIDER_CHECK_TIMEOUT`]. The answer is shared by
    /// concurrent callers and reused for [`PROVIDER_CHECK_TTL`].
    ///
    /// For the login start only: it says the provider is up as seen from
    /// here, which is the best available hint that the browser will reach
    /// it too. Decisions must not call it (they do no network I/O).
    pub async fn check_reachable(&self) -> Result<(), OidcError> {
        self.discovered()?;
        let mut last = self.last_check.lock().await;
        if let Some(check) = last.as_ref()
            && check.at.elapsed() < PROVIDER_CHECK_TTL
        {
            return check.outcome.clone().map_err(OidcError::Unavailable);
        }
        let outcome = self.probe().await;
        if let Err(reason) = &outcome {
            tracing::warn!(issuer = self.issuer.as_str(), %reason, "identity provider unreachable");
        }
        *last = Some(ProviderCheck {
            at: Instant::now(),
            outcome: outcome.clone(),
        });
        outcome.map_err(OidcError::Unavailable)
    }

    /// One GET of the discovery document: cheap for the provider, served by
    /// the same process as the login pages.
    async fn probe(&self) -> Result<(), String> {
        let url = self
            .issuer
            .join(".well-known/openid-configuration")
            .map_err(|e| format!("discovery URL: {e}"))?;
        let response = self
            .http
            .get(url)
            .timeout(PROVIDER_CHECK_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("reachability check: {}", crate::fault::error_chain(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "reachability check: discovery answered {}",
                response.status()
            ))
        }
    }

    /// The provider's keys as last fetched (no I/O), for verifying Bearer
    /// tokens; `Unavailable` before discovery.
    pub fn provider_keys(&self) -> Result<Arc<CoreJsonWebKeySet>, OidcError> {
        self.discovered()?
            .jwks
            .load_full()
            .ok_or_else(|| OidcError::Unavailable("the provider's keys are not loaded".into()))
    }

    /// Fetches the provider's keys again for a token with an unknown `kid`,
    /// at most once per [`JWKS_REFETCH_INTERVAL`] whatever the callers
    /// (else `InvalidToken`), so random `kid`s cannot make us hammer it.
    pub async fn refresh_provider_keys(&self) -> Result<(), OidcError> {
        let d = self.discovered()?;
        self.refetch_jwks(&d).await
    }

    /// `idp_provider_url`, exactly as configured.
    /// The provider's `end_session_endpoint` (RP-initiated logout), if
    /// discovery advertised one.
    pub fn end_session_endpoint(&self) -> Option<Url> {
        self.discovered.load().as_ref().and_then(|d| {
            d.metadata
                .additional_metadata()
                .end_session_endpoint
                .clone()
        })
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// `idp_client_id`.
    pub fn client_id(&self) -> &str {
        self.client_id.as_str()
    }

    /// `idp_clock_skew` in seconds.
    pub fn clock_skew(&self) -> i64 {
        self.clock_skew
    }

    fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        self.discovered
            .load_full()
            .ok_or_else(|| OidcError::Unavailable("provider discovery has not completed".into()))
    }

    fn client(
        &self,
        d: &Discovered,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            d.metadata.clone(),
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        )
        .set_redirect_uri(self.redirect_url.clone())
        .set_auth_type(d.auth_type.clone())
    }

    /// Starts a login: the provider URL to send the browser to, and the
    /// secrets to keep until the callback.
    pub fn begin_login(&self, return_to: String) -> Result<(Url, LoginState), OidcError> {
        let d = self.discovered()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(&d);
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url,
            LoginState {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                return_to,
                started_at: self.clock.now(),
                handoff_binding: None,
            },
        ))
    }

    /// Finishes a login: exchanges the code and verifies the ID token
    /// against this attempt's nonce. The caller has already compared the
    /// `state` parameter with `login.state`.
    pub async fn complete_login(
        &self,
        code: &str,
        login: &LoginState,
    ) -> Result<LoginOutcome, OidcError> {
        let d = self.discovered()?;
        let client = self.client(&d);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
            .request_async(&self.http)
            .instrument(info_span!(target: TRACE, "authgate.login.token_exchange"))
            .await
            .map_err(token_error)?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::InvalidToken("the token response has no id_token".into()))?;
        let nonce = Nonce::new(login.nonce.clone());
        self.verify(
            &d,
            id_token,
            Some(&nonce),
            Some(response.access_token().secret()),
        )
        .instrument(info_span!(target: TRACE, "authgate.login.id_token_check"))
        .await
        .map(|(identity, exp)| LoginOutcome {
            identity,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            id_token_expires_at: exp,
            id_token: id_token.to_string(),
        })
    }

    /// Uses a refresh token: a new identity (groups re-read by Dex) and the
    /// rotated refresh token. Any failure means the session must end.
    pub async fn refresh(&self, refresh_token: &str) -> Result<LoginOutcome, OidcError> {
        let d = self.discovered()?;
        let client = self.client(&d);
        let token = RefreshToken::new(refresh_token.to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|e| OidcError::Config(e.to_string()))?
            .request_async(&self.http)
            .instrument(info_span!(target: TRACE, "authgate.refresh.token_exchange"))
            .await
            .map_err(refresh_error)?;
        let id_token = response.id_token().ok_or_else(|| {
            OidcError::InvalidToken("the refresh response has no id_token".into())
        })?;
        // Dex copies the original nonce into refreshed tokens; nothing to compare.
        let (identity, exp) = self
            .verify(&d, id_token, None, Some(response.access_token().secret()))
            .instrument(info_span!(target: TRACE, "authgate.refresh.id_token_check"))
            .await?;
        Ok(LoginOutcome {
            identity,
            refresh_token: Some(
                response
                    .refresh_token()
                    .map(|t| t.secret().clone())
                    .unwrap_or_else(|| refresh_token.to_owned()),
            ),
            id_token_expires_at: exp,
            id_token: id_token.to_string(),
        })
    }

    /// Verifies an ID token, fetching the keys again once if its `kid` is
    /// unknown.
    async fn verify(
        &self,
        d: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        access_token: Option<&str>,
    ) -> Result<(Identity, i64), OidcError> {
        match self.verify_with_current_keys(d, id_token, nonce, access_token) {
            Err(VerifyFailure::UnknownKey) => {
                self.refetch_jwks(d).await?;
                self.verify_with_current_keys(d, id_token, nonce, access_token)
                    .map_err(VerifyFailure::into_error)
            }
            other => other.map_err(VerifyFailure::into_error),
        }
    }

    fn verify_with_current_keys(
        &self,
        d: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        access_token: Option<&str>,
    ) -> Result<(Identity, i64), VerifyFailure> {
        let jwks = d
            .jwks
            .load_full()
            .ok_or(VerifyFailure::UnknownKey)?
            .as_ref()
            .clone();
        let now = self.clock.now() - self.clock_skew;
        let verifier = CoreIdTokenVerifier::new_confidential_client(
            self.client_id.clone(),
            self.client_secret.clone(),
            self.issuer.clone(),
            jwks,
        )
        .set_allowed_algs(d.algs.clone())
        .set_time_fn(move || DateTime::<Utc>::from_timestamp(now, 0).unwrap_or_default());
        let claims = match nonce {
            Some(nonce) => id_token.claims(&verifier, nonce),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| match e {
            openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            ) => VerifyFailure::UnknownKey,
            other => VerifyFailure::Invalid(other.to_string()),
        })?;
        if let (Some(expected), Some(access_token)) = (claims.access_token_hash(), access_token) {
            let alg = id_token
                .signing_alg()
                .map_err(|e| VerifyFailure::Invalid(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| VerifyFailure::Invalid(e.to_string()))?;
            let actual = AccessTokenHash::from_token(
                &openidconnect::AccessToken::new(access_token.to_owned()),
                alg,
                key,
            )
            .map_err(|e| VerifyFailure::Invalid(e.to_string()))?;
            if &actual != expected {
                return Err(VerifyFailure::Invalid(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        let exp = claims.expiration().timestamp();
        // The signature is verified: the raw payload can be trusted for the
        // claims the typed view does not keep (groups, anything for
        // `allowed_idp_claims`).
        let raw = raw_claims(&id_token.to_string()).map_err(VerifyFailure::Invalid)?;
        // The checks a Bearer token passes too. The crate has checked
        // `iss`, `aud` and `exp` already, but neither `iat`, `nbf` nor `azp`,
        // nor the types of claims it does not model.
        let ours = [self.client_id.as_str().to_owned()];
        crate::claims::check(
            &raw,
            &crate::claims::Expected {
                issuer: self.issuer.as_str(),
                audiences: &ours,
                parties: &ours,
                now: self.clock.now(),
                skew: self.clock_skew,
            },
        )
        .map_err(|e| VerifyFailure::Invalid(format!("the token's claims: {e}")))?;
        Ok((identity_from_claims(raw), exp))
    }

    async fn refetch_jwks(&self, d: &Discovered) -> Result<(), OidcError> {
        {
            let mut last = self
                .last_jwks_fetch
                .lock()
                .map_err(|_| OidcError::Unavailable("key cache lock poisoned".into()))?;
            if let Some(at) = *last
                && at.elapsed() < JWKS_REFETCH_INTERVAL
            {
                return Err(OidcError::InvalidToken(
                    "the token is signed with an unknown key".into(),
                ));
            }
            *last = Some(Instant::now());
        }
        let jwks = CoreJsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("keys: {}", crate::fault::error_chain(&e)))
            })?;
        tracing::info!(
            keys = jwks.keys().len(),
            "fetched the provider's keys again"
        );
        d.jwks.store(Some(Arc::new(jwks)));
        Ok(())
    }
}

enum VerifyFailure {
    UnknownKey,
    Invalid(String),
}

impl VerifyFailure {
    fn into_error(self) -> OidcError {
        match self {
            VerifyFailure::UnknownKey => {
                OidcError::InvalidToken("the token is signed with an unknown key".into())
            }
            VerifyFailure::Invalid(m) => OidcError::InvalidToken(m),
        }
    }
}

/// Sorts a token-endpoint failure into whose fault it is.
fn token_error<RE, T>(e: RequestTokenError<RE, T>) -> OidcError
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => OidcError::Rejected(r.to_string()),
        RequestTokenError::Request(inner) => {
            OidcError::Unavailable(crate::fault::error_chain(&inner))
        }
        RequestTokenError::Parse(err, body) => {
            let body = serde_json::from_slice::<Value>(&body).ok();
            let field = |name| body.as_ref()?.get(name)?.as_str();
            // Dex answers some failures (expired code, removed LDAP user) with
            // a 500 and a JSON error that does not parse as a token.
            if let Some(code) = field("error") {
                return OidcError::Rejected(code.to_owned());
            }
            // A token response whose ID token the crate cannot read (a claim
            // of the wrong type, `email_verified: "false"`): the provider
            // issued a token we refuse, not an outage. Refused like any
            // invalid token; never a retry-later 503.
            if let Some(id_token) = field("id_token") {
                let why = raw_claims(id_token)
                    .ok()
                    .and_then(|claims| crate::claims::malformed(&claims))
                    .map_or_else(
                        || "the ID token cannot be read".to_owned(),
                        |e| format!("the token's claims: {e}"),
                    );
                return OidcError::InvalidToken(why);
            }
            OidcError::Unavailable(format!("unreadable token response: {err}"))
        }
        RequestTokenError::Other(m) => OidcError::Unavailable(m),
    }
}

/// Like [`token_error`], for the refresh grant, where the difference
/// matters most (a refusal ends the session, an outage must not): an OAuth2
/// `server_error` or `temporarily_unavailable` (a proxy or load balancer in
/// front of the provider, or the provider overloaded) is an outage. Dex's
/// refusals on refresh are `invalid_request`/`invalid_grant`, including
/// its 500 for a user gone from LDAP.
fn refresh_error<RE>(
    e: RequestTokenError<RE, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError
where
    RE: std::error::Error + 'static,
{
    match &e {
        RequestTokenError::ServerResponse(r)
            if matches!(r.error(), CoreErrorResponseType::Extension(code)
                if code == "server_error" || code == "temporarily_unavailable") =>
        {
            OidcError::Unavailable(r.to_string())
        }
        _ => token_error(e),
    }
}

/// Decodes the payload of a compact JWS whose signature was verified.
fn raw_claims(jwt: &str) -> Result<Map<String, Value>, String> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| "malformed token".to_owned())?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("payload: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("payload: {e}"))
}

/// Builds the identity from verified claims. Dex omits `groups` when empty.
pub fn identity_from_claims(claims: Map<String, Value>) -> Identity {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let groups = match claims.get("groups") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Identity {
        subject: text("sub").unwrap_or_default(),
        email: text("email"),
        email_verified: claims.get("email_verified").and_then(Value::as_bool),
        preferred_username: text("preferred_username"),
        name: text("name"),
        groups,
        claims: Claims::from_token(claims),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    /// Dex leaves `groups` out for a user in no group: that is an empty list,
    /// not an error; and every claim stays available for `allowed_idp_claims`.
    #[test]
    fn identity_from_dex_claims() {
        let claims = json!({"sub": "CgQxMDAxEgRsZGFw", "email": "alice@example.com",
            "email_verified": true, "preferred_username": "alice", "name": "Alice",
            "federated_claims": {"connector_id": "ldap"}});
        let id = identity_from_claims(claims.as_object().unwrap().clone());
        assert_eq!(id.subject, "CgQxMDAxEgRsZGFw");
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
        assert_eq!(id.email_verified, Some(true));
        assert!(id.groups.is_empty());
        assert!(id.claims.contains_key("federated_claims"));

        let with_groups = json!({"sub": "x", "groups": ["devops", "admins"]});
        let id = identity_from_claims(with_groups.as_object().unwrap().clone());
        assert_eq!(id.groups, vec!["devops", "admins"]);
    }

    /// The login-state cookie's secrets (state, nonce, PKCE verifier) never
    /// show in `Debug`, so no log line can carry them; the return URL does.
    #[test]
    fn login_state_debug_has_no_secrets() {
        let login = LoginState {
            state: "state-7f3a".into(),
            nonce: "nonce-91bc".into(),
            pkce_verifier: "verifier-c0de".into(),
            return_to: "https://app.example.com/x".into(),
            started_at: 1,
            handoff_binding: None,
        };
        let debug = format!("{login:?}");
        for secret in ["state-7f3a", "nonce-91bc", "verifier-c0de"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("https://app.example.com/x"), "{debug}");
    }

    /// A payload that is not base64 JSON is an error, never an empty identity.
    #[test]
    fn raw_claims_rejects_garbage() {
        assert!(raw_claims("a.b!.c").is_err());
        assert!(raw_claims("nodots").is_err());
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"s"}"#);
        assert_eq!(raw_claims(&format!("h.{payload}.s")).unwrap()["sub"], "s");
    }

    /// A stand-in provider: a discovery document and an empty key set; it
    /// counts discovery requests and answers them with `status` (0: never).
    struct FakeProvider {
        issuer: String,
        hits: Arc<std::sync::atomic::AtomicUsize>,
        status: Arc<std::sync::atomic::AtomicU16>,
        task: tokio::task::JoinHandle<()>,
    }

    impl FakeProvider {
        async fn start() -> FakeProvider {
            use axum::http::StatusCode;
            use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let issuer = format!("http://{}/dex", listener.local_addr().unwrap());
            let hits = Arc::new(AtomicUsize::new(0));
            let status = Arc::new(AtomicU16::new(200));
            let document = json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/keys"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            });
            let (h, st) = (hits.clone(), status.clone());
            let app = axum::Router::new()
                .route(
                    "/dex/.well-known/openid-configuration",
                    axum::routing::get(move || {
                        let (h, st, document) = (h.clone(), st.clone(), document.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let code = st.load(Ordering::SeqCst);
                            if code == 0 {
                                std::future::pending::<()>().await;
                            }
                            let code = StatusCode::from_u16(code).unwrap();
                            (code, axum::Json(document))
                        }
                    }),
                )
                .route(
                    "/dex/keys",
                    axum::routing::get(|| async { axum::Json(json!({"keys": []})) }),
                );
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            FakeProvider {
                issuer,
                hits,
                status,
                task,
            }
        }

        fn hits(&self) -> usize {
            self.hits.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn answer(&self, status: u16) {
            self.status
                .store(status, std::sync::atomic::Ordering::SeqCst);
        }

        fn oidc(&self) -> Oidc {
            let idp = IdpConfig {
                provider: "oidc".into(),
                issuer_url: self.issuer.clone(),
                client_id: "c".into(),
                client_secret: crate::config::Secret::new("s"),
                scopes: vec!["openid".into()],
                ca_file: None,
                ca_certs: Vec::new(),
                insecure_skip_verify: false,
                clock_skew: Duration::from_secs(30),
                allowed_audiences: Vec::new(),
            };
            let callback = Url::parse("https://auth.example.test/oauth2/callback").unwrap();
            Oidc::new(&idp, &callback, Arc::new(crate::clock::SystemClock)).unwrap()
        }
    }

    impl Drop for FakeProvider {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Before discovery the check fails without asking the provider; after
    /// it, concurrent logins share one request and the next ones within the
    /// TTL reuse its answer.
    #[tokio::test]
    async fn reachability_check_is_shared_and_reused() {
        let provider = FakeProvider::start().await;
        let oidc = provider.oidc();
        assert!(matches!(
            oidc.check_reachable().await,
            Err(OidcError::Unavailable(_))
        ));
        assert_eq!(provider.hits(), 0, "checked before discovery");

        oidc.discover().await.unwrap();
        assert_eq!(provider.hits(), 1);
        let (a, b, c) = tokio::join!(
            oidc.check_reachable(),
            oidc.check_reachable(),
            oidc.check_reachable()
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        oidc.check_reachable().await.unwrap();
        assert_eq!(provider.hits(), 2, "one check for four logins");
    }

    /// A provider answering 5xx is unavailable (the login page's 503), and
    /// the failure is reused too, so a dead provider is not hammered.
    #[tokio::test]
    async fn reachability_check_fails_on_server_error() {
        let provider = FakeProvider::start().await;
        let oidc = provider.oidc();
        oidc.discover().await.unwrap();
        provider.answer(500);
        let err = oidc.check_reachable().await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Unavailable(m) if m.contains("500")),
            "{err}"
        );
        provider.answer(200);
        assert!(oidc.check_reachable().await.is_err(), "failure not reused");
        assert_eq!(provider.hits(), 2);
    }

    /// A provider that accepts the connection but never answers counts as
    /// down once the check's timeout passes: the user waits seconds, not
    /// forever.
    #[tokio::test]
    async fn reachability_check_is_bounded() {
        let provider = FakeProvider::start().await;
        let oidc = provider.oidc();
        oidc.discover().await.unwrap();
        provider.answer(0);
        let started = Instant::now();
        let err = oidc.check_reachable().await.unwrap_err();
        assert!(matches!(err, OidcError::Unavailable(_)), "{err}");
        assert!(started.elapsed() >= PROVIDER_CHECK_TIMEOUT);
        assert!(started.elapsed() < PROVIDER_CHECK_TIMEOUT + Duration::from_secs(3));
    }
}
