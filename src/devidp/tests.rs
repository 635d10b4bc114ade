//! The provider over real loopback sockets, driven by hand and by the
//! `openidconnect` crate's client, the way the relying party will use it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::reqwest;
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, RedirectUrl, RefreshToken, Scope,
    TokenResponse as _,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

use super::*;
use crate::clock::{Clock as _, ManualClock, SystemClock};

const CLIENT_ID: &str = "authgate";
const CLIENT_SECRET: &str = "s3cr3t+/:";
const CALLBACK: &str = "http://127.0.0.1:4180/oauth2/callback";
const VERIFIER: &str = "a-pkce-verifier-of-at-least-forty-three-characters-long";

/// One RSA key for every test provider: generation is slow.
fn shared_key() -> rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap())
        .clone()
}

/// A provider on an ephemeral loopback port, stopped on drop.
struct Harness {
    idp: DevIdp,
    issuer: String,
    http: reqwest::Client,
    clock: ManualClock,
    _stop: oneshot::Sender<()>,
}

impl Harness {
    async fn start() -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/dex", listener.local_addr().unwrap());
        // Real time: the openidconnect verifier checks `exp` against it.
        let clock = ManualClock::new(SystemClock.now());
        let config = DevIdpConfig {
            issuer: issuer.clone(),
            clients: vec![DevClient {
                id: CLIENT_ID.into(),
                secret: CLIENT_SECRET.into(),
                redirect_uris: vec![CALLBACK.into()],
            }],
            users: DevUser::demo_users("example.com"),
            id_token_ttl: DEFAULT_ID_TOKEN_TTL,
            banner: Some("Try alice@example.com / alice".into()),
        };
        let idp = DevIdp::with_signing_key(config, Arc::new(clock.clone()), shared_key()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(idp.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Harness {
            idp,
            issuer,
            http,
            clock,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// GET /auth with these extra parameters (client and callback preset).
    async fn authorize(&self, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut query = vec![
            ("client_id", CLIENT_ID),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
        ];
        query.extend_from_slice(extra);
        self.http
            .get(self.url("/auth"))
            .query(&query)
            .send()
            .await
            .unwrap()
    }

    /// Submits the login form of an `/auth` page.
    async fn submit(&self, page: &str, login: &str, password: &str) -> reqwest::Response {
        let req = hidden_req(page);
        self.http
            .post(self.url("/auth"))
            .form(&[
                ("req", req.as_str()),
                ("login", login),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }

    /// The whole browser part: /auth, the form, the 303 to the callback.
    /// Returns the code. PKCE S256 with [`VERIFIER`], state `st4te`.
    async fn code_for(&self, login: &str, scope: &str) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
        let page = self
            .authorize(&[
                ("scope", scope),
                ("state", "st4te"),
                ("nonce", "n0nce"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .await;
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        let password = login.split('@').next().unwrap();
        let redirect = self.submit(&page, login, password).await;
        assert_eq!(redirect.status(), 303);
        let location = url::Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(CALLBACK), "{location}");
        assert_eq!(query_param(&location, "state").as_deref(), Some("st4te"));
        query_param(&location, "code").unwrap()
    }

    /// POST /token with HTTP Basic client auth; returns status and JSON.
    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let escape =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .http
            .post(self.url("/token"))
            .basic_auth(escape(CLIENT_ID), Some(escape(CLIENT_SECRET)))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().await.unwrap()).unwrap(),
        )
    }

    async fn exchange(&self, code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Logs `login` in with `scope` and returns the token response.
    async fn tokens_for(&self, login: &str, scope: &str) -> Value {
        let code = self.code_for(login, scope).await;
        let (status, body) = self.exchange(&code).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn jwks(&self) -> Value {
        self.http
            .get(self.url("/keys"))
            .send()
            .await
            .unwrap()
            .json_value()
            .await
    }

    /// A relying party built the way `oidc` builds it: from discovery.
    async fn relying_party(
        &self,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        let meta = CoreProviderMetadata::discover_async(
            IssuerUrl::new(self.issuer.clone()).unwrap(),
            &self.http,
        )
        .await
        .unwrap();
        CoreClient::from_provider_metadata(
            meta,
            ClientId::new(CLIENT_ID.into()),
            Some(ClientSecret::new(CLIENT_SECRET.into())),
        )
        .set_redirect_uri(RedirectUrl::new(CALLBACK.into()).unwrap())
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}

fn hidden_req(page: &str) -> String {
    let re = regex::Regex::new(r#"name="req" value="([^"]+)""#).unwrap();
    re.captures(page).expect("login form with a req field")[1].to_owned()
}

fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Header and payload of a compact JWS, unverified.
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (part(), part())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The discovery document carries Dex's fields, with the issuer verbatim.
#[tokio::test]
async fn discovery_document_looks_like_dex() {
    let h = Harness::start().await;
    let doc = h
        .http
        .get(h.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(doc["issuer"], json!(h.issuer));
    assert_eq!(doc["authorization_endpoint"], json!(h.url("/auth")));
    assert_eq!(doc["token_endpoint"], json!(h.url("/token")));
    assert_eq!(doc["jwks_uri"], json!(h.url("/keys")));
    assert_eq!(doc["userinfo_endpoint"], json!(h.url("/userinfo")));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        json!(["S256", "plain"])
    );
    assert_eq!(
        doc["scopes_supported"],
        json!(["openid", "email", "groups", "profile", "offline_access"])
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert!(
        doc["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("email_verified"))
    );
    // Nothing is served outside the issuer's path.
    let root = h.issuer.trim_end_matches("/dex");
    let outside = h
        .http
        .get(format!("{root}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 404);
}

/// The JWKS publishes the signing key as Dex does, cacheable for 10 minutes.
#[tokio::test]
async fn jwks_publishes_rs256_key() {
    let h = Harness::start().await;
    let response = h.http.get(h.url("/keys")).send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "max-age=600");
    let jwks = response.json_value().await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (str_of(key, "kty"), str_of(key, "use"), str_of(key, "alg")),
        ("RSA", "sig", "RS256")
    );
    assert_eq!(str_of(key, "e"), "AQAB");
    assert_eq!(URL_SAFE_NO_PAD.decode(str_of(key, "n")).unwrap().len(), 256);
    assert!(!str_of(key, "kid").is_empty());
}

/// A real relying party (the openidconnect crate, configured from
/// discovery) accepts our tokens: signature, iss, aud, nonce, exp, at_hash.
#[tokio::test]
async fn openidconnect_client_accepts_the_code_flow() {
    let h = Harness::start().await;
    let rp = h.relying_party().await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("groups".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let page = h.http.get(auth_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Try alice@example.com / alice"),
        "banner shown"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
    let redirect = h.submit(&page, "alice@example.com", "alice").await;
    assert_eq!(redirect.status(), 303);
    let location = url::Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        query_param(&location, "state").as_deref(),
        Some(state.secret().as_str())
    );
    let code = query_param(&location, "code").unwrap();

    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&h.http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    let id_verifier = rp.id_token_verifier();
    let claims = id_token.claims(&id_verifier, &nonce).unwrap();
    assert_eq!(claims.issuer().as_str(), h.issuer);
    assert_eq!(
        claims.audiences(),
        &[openidconnect::Audience::new(CLIENT_ID.into())]
    );
    assert_eq!(claims.subject().as_str(), dex_subject("alice", "local"));
    assert_eq!(claims.email().unwrap().as_str(), "alice@example.com");
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(claims.preferred_username().unwrap().as_str(), "alice");
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    assert!(
        tokens.refresh_token().is_some(),
        "offline_access was requested"
    );
    assert_eq!(
        tokens.expires_in(),
        Some(DEFAULT_ID_TOKEN_TTL),
        "expires_in is the ID-token lifetime"
    );

    // Dex-specific shape the crate does not check.
    let (header, payload) = decode(&id_token.to_string());
    assert_eq!(header["typ"], "JWT");
    assert_eq!(payload["aud"], json!(CLIENT_ID), "aud is a plain string");
    assert_eq!(payload["groups"], json!(["devops", "admins"]));
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        24 * 3600
    );
    let c_hash = URL_SAFE_NO_PAD.encode(&Sha256::digest(code.as_bytes())[..16]);
    assert_eq!(payload["c_hash"], json!(c_hash));
    // The access token is a JWT with the same identity claims.
    let (_, access) = decode(tokens.access_token().secret());
    assert_eq!(
        (&access["sub"], &access["groups"]),
        (&payload["sub"], &payload["groups"])
    );

    // /userinfo answers the access token's claims.
    let info = h
        .http
        .get(h.url("/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(info["email"], "alice@example.com");

    // Refresh through the crate, verified as the relying party will (the
    // original nonce comes back, so the nonce check is a no-op closure).
    let refresh = RefreshToken::new(tokens.refresh_token().unwrap().secret().clone());
    let refreshed = rp
        .exchange_refresh_token(&refresh)
        .unwrap()
        .request_async(&h.http)
        .await
        .unwrap();
    let claims = refreshed
        .id_token()
        .unwrap()
        .claims(&rp.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert_eq!(claims.nonce().map(Nonce::secret), Some(nonce.secret()));
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        refresh.secret()
    );
}

/// A code works once; the second exchange is `invalid_grant`.
#[tokio::test]
async fn code_is_single_use() {
    let h = Harness::start().await;
    let code = h.code_for("bob@example.com", "openid").await;
    assert_eq!(h.exchange(&code).await.0, 200);
    let (status, body) = h.exchange(&code).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
}

/// A wrong or missing PKCE verifier is `invalid_grant`, and the code
/// survives the failed attempt (Dex deletes it only on success).
#[tokio::test]
async fn pkce_verifier_is_checked() {
    let h = Harness::start().await;
    let code = h.code_for("bob@example.com", "openid").await;
    let base = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
    ];
    let mut wrong = base.to_vec();
    wrong.push((
        "code_verifier",
        "another-verifier-of-at-least-forty-three-characters",
    ));
    let (status, body) = h.token(&wrong).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    let (status, body) = h.token(&base).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    assert_eq!(h.exchange(&code).await.0, 200);
}

/// The redirect URI at /token must equal the one given to /auth.
#[tokio::test]
async fn token_redirect_uri_must_match() {
    let h = Harness::start().await;
    let code = h.code_for("bob@example.com", "openid").await;
    let (status, body) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:4180/other"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_request"));
}

/// Codes expire after 30 minutes on the injected clock; Dex then answers 500.
#[tokio::test]
async fn code_expires_after_thirty_minutes() {
    let h = Harness::start().await;
    let code = h.code_for("bob@example.com", "openid").await;
    h.clock.advance(30 * 60 + 1);
    let (status, body) = h.exchange(&code).await;
    assert_eq!((status, str_of(&body, "error")), (500, "server_error"));
}

/// Client authentication: wrong secret is 401 `invalid_client`;
/// `client_secret_post` works as well as Basic.
#[tokio::test]
async fn client_must_authenticate() {
    let h = Harness::start().await;
    let code = h.code_for("bob@example.com", "openid").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let response = h
        .http
        .post(h.url("/token"))
        .basic_auth(CLIENT_ID, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json_value().await["error"], "invalid_client");
    let mut post = form.to_vec();
    post.extend([("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
    let response = h
        .http
        .post(h.url("/token"))
        .form(&post)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A wrong password shows the form again with an error, not a redirect;
/// the same login request then still succeeds.
#[tokio::test]
async fn wrong_password_stays_on_the_form() {
    let h = Harness::start().await;
    let page = h
        .authorize(&[("scope", "openid"), ("state", "s")])
        .await
        .text()
        .await
        .unwrap();
    let again = h.submit(&page, "alice@example.com", "wrong").await;
    assert_eq!(again.status(), 200);
    assert!(again.headers().get("location").is_none());
    let again = again.text().await.unwrap();
    assert!(again.contains("Invalid username or password"));
    assert!(again.contains(r#"value="alice@example.com""#), "login kept");
    let ok = h.submit(&again, "alice@example.com", "alice").await;
    assert_eq!(ok.status(), 303);
}

/// A scope Dex does not know redirects back with `invalid_scope` and state;
/// a missing `openid` too.
#[tokio::test]
async fn unknown_scope_redirects_with_invalid_scope() {
    let h = Harness::start().await;
    for scope in ["openid email nonsense", "email"] {
        let response = h.authorize(&[("scope", scope), ("state", "xyz")]).await;
        assert_eq!(response.status(), 303);
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(CALLBACK));
        assert_eq!(
            query_param(&location, "error").as_deref(),
            Some("invalid_scope")
        );
        assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
    }
}

/// Unknown client: HTML 404; unregistered redirect URI: HTML 400; neither
/// redirects anywhere.
#[tokio::test]
async fn bad_client_or_redirect_uri_is_an_html_error() {
    let h = Harness::start().await;
    let unknown = h
        .http
        .get(h.url("/auth"))
        .query(&[
            ("client_id", "nobody"),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let evil = h
        .http
        .get(h.url("/auth"))
        .query(&[
            ("client_id", CLIENT_ID),
            ("redirect_uri", "http://127.0.0.1:4180/oauth2/callback/evil"),
            ("response_type", "code"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 400);
    assert!(evil.headers().get("location").is_none());
}

/// `groups` is omitted, not empty, for a user in no group; present with
/// the scope for a user in groups, absent without the scope.
#[tokio::test]
async fn groups_claim_omitted_when_empty() {
    let h = Harness::start().await;
    let carol = h.tokens_for("carol@example.com", "openid groups").await;
    let (_, claims) = decode(str_of(&carol, "id_token"));
    assert!(claims.get("groups").is_none(), "{claims}");
    let alice = h.tokens_for("alice@example.com", "openid groups").await;
    assert_eq!(
        decode(str_of(&alice, "id_token")).1["groups"],
        json!(["devops", "admins"])
    );
    let no_scope = h.tokens_for("alice@example.com", "openid").await;
    let (_, claims) = decode(str_of(&no_scope, "id_token"));
    assert!(claims.get("groups").is_none() && claims.get("email").is_none());
    assert!(
        no_scope.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
}

/// Refresh rotates: the old token is refused with Dex's message, the new
/// one works, and the refreshed ID token carries the original nonce.
#[tokio::test]
async fn refresh_rotates_and_old_token_is_refused() {
    let h = Harness::start().await;
    let first = h
        .tokens_for("alice@example.com", "openid offline_access")
        .await;
    let old = str_of(&first, "refresh_token");
    let (status, second) = h.refresh(old).await;
    assert_eq!(status, 200, "{second}");
    let new = str_of(&second, "refresh_token");
    assert_ne!(old, new);
    let (_, claims) = decode(str_of(&second, "id_token"));
    assert_eq!(claims["nonce"], "n0nce");
    assert!(claims.get("c_hash").is_none() && claims.get("at_hash").is_some());

    let (status, body) = h.refresh(old).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_request"));
    assert_eq!(str_of(&body, "error_description"), store::REFRESH_CLAIMED);
    assert_eq!(h.refresh(new).await.0, 200, "no family revocation");
}

/// A new login of the same user to the same client kills the previous
/// refresh token (Dex keeps one per user and client).
#[tokio::test]
async fn new_login_revokes_previous_refresh_token() {
    let h = Harness::start().await;
    let first = h
        .tokens_for("bob@example.com", "openid offline_access")
        .await;
    let second = h
        .tokens_for("bob@example.com", "openid offline_access")
        .await;
    assert_eq!(h.refresh(str_of(&first, "refresh_token")).await.0, 400);
    assert_eq!(h.refresh(str_of(&second, "refresh_token")).await.0, 200);
}

/// Group changes show at the next refresh; a removed user's refresh fails
/// with Dex's 500 `invalid_request`.
#[tokio::test]
async fn refresh_rereads_the_user() {
    let h = Harness::start().await;
    let tokens = h
        .tokens_for("bob@example.com", "openid groups offline_access")
        .await;
    h.idp
        .set_user_groups("bob@example.com", vec!["admins".into()]);
    let (status, refreshed) = h.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, 200);
    assert_eq!(
        decode(str_of(&refreshed, "id_token")).1["groups"],
        json!(["admins"])
    );

    h.idp.set_user_groups("bob@example.com", vec![]);
    let (_, emptied) = h.refresh(str_of(&refreshed, "refresh_token")).await;
    assert!(
        decode(str_of(&emptied, "id_token"))
            .1
            .get("groups")
            .is_none()
    );

    h.idp.remove_user("bob@example.com");
    let (status, body) = h.refresh(str_of(&emptied, "refresh_token")).await;
    assert_eq!((status, body), (500, json!({"error": "invalid_request"})));
}

/// `rotate_keys` signs with a new kid and keeps the old key published;
/// `rotate_keys_dropping_old` leaves only the newest.
#[tokio::test]
async fn key_rotation() {
    let h = Harness::start().await;
    let kid = |t: &Value| str_of(&decode(str_of(t, "id_token")).0, "kid").to_owned();
    let kids = |jwks: Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| str_of(k, "kid").to_owned())
            .collect()
    };
    let before = kid(&h.tokens_for("bob@example.com", "openid").await);
    h.idp.rotate_keys();
    let after = kid(&h.tokens_for("bob@example.com", "openid").await);
    assert_ne!(before, after);
    assert_eq!(kids(h.jwks().await), vec![after.clone(), before.clone()]);

    h.idp.rotate_keys_dropping_old();
    let newest = kid(&h.tokens_for("bob@example.com", "openid").await);
    assert_eq!(kids(h.jwks().await), vec![newest]);
}

/// Each signing mode produces the forgery it names, and the openidconnect
/// verifier rejects every one of them.
#[tokio::test]
async fn signing_modes_forge_what_they_say() {
    let h = Harness::start().await;
    let jwks = h.jwks().await;
    let published_kid = str_of(&jwks["keys"][0], "kid").to_owned();
    let rp = h.relying_party().await;
    for mode in [
        SigningMode::AlgNone,
        SigningMode::Hs256WithPublicKey,
        SigningMode::UnknownKid,
        SigningMode::ForeignKey,
        SigningMode::AdvertisedForeignKey,
        SigningMode::KidPathTraversal,
        SigningMode::KidSqlInjection,
    ] {
        h.idp.set_signing_mode(mode);
        let tokens = h.tokens_for("alice@example.com", "openid").await;
        let id_token = str_of(&tokens, "id_token");
        let (header, _) = decode(id_token);
        let signature = id_token.rsplit('.').next().unwrap();
        match mode {
            SigningMode::AlgNone => {
                assert_eq!(header["alg"], "none");
                assert!(signature.is_empty());
            }
            SigningMode::Hs256WithPublicKey => {
                use openidconnect::PrivateSigningKey as _;
                use rsa::pkcs8::EncodePublicKey as _;
                assert_eq!(header["alg"], "HS256");
                let pem = shared_key()
                    .to_public_key()
                    .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                    .unwrap();
                let input = &id_token[..id_token.rfind('.').unwrap()];
                let mac = openidconnect::core::CoreHmacKey::new(pem.into_bytes())
                    .sign(
                        &openidconnect::core::CoreJwsSigningAlgorithm::HmacSha256,
                        input.as_bytes(),
                    )
                    .unwrap();
                assert_eq!(signature, URL_SAFE_NO_PAD.encode(mac));
            }
            SigningMode::UnknownKid => {
                assert_eq!(header["alg"], "RS256");
                assert_ne!(str_of(&header, "kid"), published_kid);
            }
            SigningMode::ForeignKey | SigningMode::Normal => {
                assert_eq!(header["alg"], "RS256");
                assert_eq!(str_of(&header, "kid"), published_kid);
            }
            SigningMode::AdvertisedForeignKey => {
                assert_eq!(header["alg"], "RS256");
                let kid = str_of(&header, "kid");
                assert_ne!(kid, published_kid);
                assert_eq!(header["jwk"]["kid"], kid);
                // The advertised key set holds the signing key.
                let advertised = h
                    .http
                    .get(str_of(&header, "jku"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let advertised: Value = serde_json::from_str(&advertised).unwrap();
                assert_eq!(advertised["keys"][0]["kid"], kid);
                assert!(str_of(&header, "x5u").ends_with("/attacker/cert.pem"));
                assert_eq!(h.idp.attacker_key_fetches(), 1);
            }
            SigningMode::KidPathTraversal | SigningMode::KidSqlInjection => {
                assert_eq!(header["alg"], "HS256");
                let (kid, key) = if mode == SigningMode::KidPathTraversal {
                    (crate::devidp::KID_PATH_TRAVERSAL, &b""[..])
                } else {
                    (
                        crate::devidp::KID_SQL_INJECTION,
                        crate::devidp::SQL_INJECTED_KEY,
                    )
                };
                assert_eq!(str_of(&header, "kid"), kid);
                use openidconnect::PrivateSigningKey as _;
                let input = &id_token[..id_token.rfind('.').unwrap()];
                let mac = openidconnect::core::CoreHmacKey::new(key.to_vec())
                    .sign(
                        &openidconnect::core::CoreJwsSigningAlgorithm::HmacSha256,
                        input.as_bytes(),
                    )
                    .unwrap();
                assert_eq!(signature, URL_SAFE_NO_PAD.encode(mac));
            }
        }
        let parsed: openidconnect::core::CoreIdToken =
            serde_json::from_value(json!(id_token)).unwrap();
        let verdict = parsed.claims(&rp.id_token_verifier(), &Nonce::new("n0nce".into()));
        assert!(verdict.is_err(), "{mode:?} must not verify");
        // Access tokens stay genuine so /userinfo keeps working.
        let info = h
            .http
            .get(h.url("/userinfo"))
            .bearer_auth(str_of(&tokens, "access_token"))
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), 200);
    }
    h.idp.set_signing_mode(SigningMode::Normal);
    let tokens = h.tokens_for("alice@example.com", "openid").await;
    let parsed: openidconnect::core::CoreIdToken =
        serde_json::from_value(tokens["id_token"].clone()).unwrap();
    assert!(
        parsed
            .claims(&rp.id_token_verifier(), &Nonce::new("n0nce".into()))
            .is_ok()
    );
}

/// The claims hook edits ID-token claims before signing: a wrong issuer
/// is signed correctly and still refused by the relying party.
#[tokio::test]
async fn claims_hook_alters_the_id_token() {
    let h = Harness::start().await;
    let rp = h.relying_party().await;
    h.idp.set_claims_hook(Some(Arc::new(
        |claims: &mut serde_json::Map<String, Value>| {
            claims.insert("iss".into(), json!("https://evil.example.com/dex"));
        },
    )));
    let tokens = h.tokens_for("alice@example.com", "openid").await;
    assert_eq!(
        decode(str_of(&tokens, "id_token")).1["iss"],
        "https://evil.example.com/dex"
    );
    let parsed: openidconnect::core::CoreIdToken =
        serde_json::from_value(tokens["id_token"].clone()).unwrap();
    assert!(
        parsed
            .claims(&rp.id_token_verifier(), &Nonce::new("n0nce".into()))
            .is_err()
    );
    h.idp.set_claims_hook(None);
    let tokens = h.tokens_for("alice@example.com", "openid").await;
    assert_eq!(
        decode(str_of(&tokens, "id_token")).1["iss"],
        json!(h.issuer)
    );
}

/// `fail_token_endpoint` answers every /token call with that status and a
/// JSON error; `token_requests` counts every call.
#[tokio::test]
async fn token_endpoint_failure_and_counter() {
    let h = Harness::start().await;
    let tokens = h
        .tokens_for("alice@example.com", "openid offline_access")
        .await;
    assert_eq!(h.idp.token_requests(), 1);
    h.idp.fail_token_endpoint(Some(503));
    let (status, body) = h.refresh(str_of(&tokens, "refresh_token")).await;
    assert_eq!((status, str_of(&body, "error")), (503, "server_error"));
    h.idp.fail_token_endpoint(None);
    assert_eq!(
        h.refresh(str_of(&tokens, "refresh_token")).await.0,
        200,
        "a failed call rotates nothing"
    );
    assert_eq!(h.idp.token_requests(), 3);
}

/// /userinfo: 401 with `WWW-Authenticate: Bearer` without a token, 403
/// with a token we did not sign, 403 once the token has expired.
#[tokio::test]
async fn userinfo_requires_a_valid_bearer_token() {
    let h = Harness::start().await;
    let missing = h.http.get(h.url("/userinfo")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let forged = h
        .http
        .get(h.url("/userinfo"))
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let tokens = h.tokens_for("alice@example.com", "openid").await;
    h.clock.advance(24 * 3600);
    let expired = h
        .http
        .get(h.url("/userinfo"))
        .bearer_auth(str_of(&tokens, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 403);
}

/// The issuer path is served verbatim, also at the root and with a
/// trailing slash; passwords stay out of Debug output.
#[test]
fn issuer_paths_and_redaction() {
    assert_eq!(
        split_issuer("http://127.0.0.1:5556/dex").unwrap(),
        ("http://127.0.0.1:5556/dex".into(), "/dex".into())
    );
    assert_eq!(
        split_issuer("https://id.example.com/").unwrap(),
        ("https://id.example.com".into(), String::new())
    );
    assert_eq!(
        split_issuer("https://id.example.com/dex/").unwrap().1,
        "/dex"
    );
    assert!(split_issuer("ftp://id.example.com").is_err());
    assert!(split_issuer("not a url").is_err());
    let users = DevUser::demo_users("example.com");
    assert!(!format!("{users:?}").contains("password: \"alice\""));
    assert!(format!("{users:?}").contains("<redacted>"));
    assert_eq!(
        users.iter().map(|u| u.groups.len()).collect::<Vec<_>>(),
        vec![2, 1, 0]
    );
    assert!(DevUser::demo_hint(&users).contains("alice@example.com / alice"));
}

/// Duplicate clients or users are configuration errors.
#[test]
fn duplicates_are_rejected() {
    let client = DevClient {
        id: "c".into(),
        secret: String::new(),
        redirect_uris: vec![],
    };
    let config = DevIdpConfig {
        issuer: "http://127.0.0.1:1/dex".into(),
        clients: vec![client.clone(), client],
        users: vec![],
        id_token_ttl: Duration::from_secs(60),
        banner: None,
    };
    let clock: crate::clock::SharedClock = Arc::new(SystemClock);
    let err = DevIdp::with_signing_key(config, clock, shared_key()).unwrap_err();
    assert!(matches!(err, DevIdpError::DuplicateClient(id) if id == "c"));
}
