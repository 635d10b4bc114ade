//! The decision core: request facts in, verdict out.
//!
//! Every front end (nginx `auth_request`, forward-auth, Envoy `Check`)
//! translates its protocol into a [`Request`], calls [`Decider::decide`] and
//! translates the [`Decision`] back. No front end looks at policy or
//! sessions itself, so they cannot drift apart.
//!
//! The common case does no network I/O: the cookie is opened locally, the
//! session comes from the local cache, the policy is compiled.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::assertion::{AssertionSigner, Subject};
use crate::bearer::{BearerError, BearerVerifier};
use crate::metrics::{DecisionMetrics, FrontEnd, Metrics};
use crate::policy::{ClaimHeaders, DenyReason, Policy, RouteId, Target, TargetError, Verdict};
use crate::refresh::Refresher;
use crate::session::{Resolved, SessionCookie, SessionRecord, Sessions};

pub use crate::identity::{
    HEADER_EMAIL, HEADER_GROUPS, HEADER_JWT, HEADER_PREFERRED_USERNAME, HEADER_USER,
};

/// Every identity header this service sets; front ends strip client-sent
/// copies of these (and their `_`/case variants). Routes'
/// `jwt_claims_headers` add their own names (see
/// [`Decision::headers_to_remove`]).
pub const IDENTITY_HEADERS: [HeaderName; 5] = [
    HEADER_USER,
    HEADER_EMAIL,
    HEADER_PREFERRED_USERNAME,
    HEADER_GROUPS,
    HEADER_JWT,
];

/// What a front end knows about the request it is asked about.
pub struct Request<'a, C> {
    /// The original request's URL, or why it could not be understood.
    pub target: Result<Target<'a>, TargetError>,
    /// Values of every cookie carrying the session cookie's name (a browser
    /// may hold a host-only and a domain cookie of the same name).
    pub session_cookies: C,
    /// The original request's method, if the front end knows it (a route
    /// with `allowed_methods` refuses a request whose method is unknown).
    pub method: Option<&'a str>,
    /// The original request's `Authorization` header, for API clients
    /// with a Bearer token from the provider.
    pub authorization: Option<&'a str>,
    /// A CORS preflight (see [`is_preflight`]).
    pub preflight: bool,
}

/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`: what a
/// browser sends, without credentials, before a cross-origin call.
/// `header` looks up a lower-case header name.
pub fn is_preflight<'h>(method: Option<&str>, header: impl Fn(&str) -> Option<&'h str>) -> bool {
    method == Some("OPTIONS")
        && header("origin").is_some()
        && header("access-control-request-method").is_some()
}

/// Who asked, for the metrics and the log line of a decision.
#[derive(Clone, Copy, Debug)]
pub struct Asker<'a> {
    pub front_end: FrontEnd,
    /// The proxy's request id (`X-Request-Id`: nginx `$request_id`, Envoy's
    /// `x-request-id`), see [`crate::telemetry::request_id`].
    pub request_id: Option<&'a str>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No route serves this host and path (deny by default).
    NoRoute,
    /// The route's rules do not admit this user.
    NotAllowed,
    /// The original URL was missing or malformed.
    BadTarget,
    /// The route's `allowed_methods` do not include the request's method.
    MethodNotAllowed,
}

/// The verdict, carrying everything any front end needs to answer.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Let the request through; `session` is `None` on a public route
    /// visited without a session. `set_cookie`: the session cookie
    /// re-issued under the current `cookie_secret` (the client presented
    /// one sealed with a previous secret); front ends send it to the client.
    Allow {
        route: RouteId,
        session: Option<Arc<SessionRecord>>,
        pass_identity_headers: bool,
        /// The route's `jwt_claims_headers`.
        claim_headers: Arc<ClaimHeaders>,
        /// `X-Auth-Request-Jwt`, when there is a session, the route passes
        /// identity headers and a signer is configured.
        assertion: Option<HeaderValue>,
        /// The session cookie re-issued under the current `cookie_secret`
        /// (the client presented one sealed with a previous secret); front
        /// ends send it to the client.
        set_cookie: Option<HeaderValue>,
    },
    /// No valid session: the user must sign in at `sign_in_url`.
    /// `invalid_token`: the request carried a Bearer token that was refused
    /// (API clients are told so in `WWW-Authenticate`).
    SignIn {
        route: RouteId,
        sign_in_url: String,
        invalid_token: bool,
    },
    /// Refused; `session` says who was refused, if anyone was signed in.
    Deny {
        route: Option<RouteId>,
        session: Option<Arc<SessionRecord>>,
        reason: Refusal,
    },
    /// The session store could not be read: fail closed.
    Unavailable,
}

impl Decision {
    /// The `Set-Cookie` value the client must receive with this answer:
    /// the re-issued session cookie after a secret rotation, else none.
    pub fn set_cookie(&self) -> Option<&HeaderValue> {
        match self {
            Decision::Allow { set_cookie, .. } => set_cookie.as_ref(),
            _ => None,
        }
    }

    /// The identity headers to pass upstream, rendered in one place for every
    /// front end. Empty unless the decision is an allow with a session on a
    /// route that passes identity headers. A value that cannot be a header
    /// (control characters) is left out rather than passed mangled.
    pub fn identity_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let Some((rendered, more)) = self.identity_parts() else {
            return Vec::new();
        };
        let mut headers = Vec::with_capacity(rendered.len() + more.size_hint().1.unwrap_or(0));
        headers.extend(rendered.iter().map(|(n, v)| (n.clone(), v.clone())));
        headers.extend(more);
        headers
    }

    /// [`Decision::identity_headers`] as a `HeaderMap` (for HTTP answers):
    /// a clone of the session's rendered map, so the names common to every
    /// answer are not hashed in again; room for `extra` more.
    pub fn identity_header_map(&self, extra: usize) -> HeaderMap {
        let Some((rendered, more)) = self.identity_parts() else {
            return HeaderMap::with_capacity(extra);
        };
        let mut headers = rendered.clone();
        headers.reserve(extra + more.size_hint().1.unwrap_or(0));
        for (name, value) in more {
            headers.insert(name, value);
        }
        headers
    }

    /// The session's rendered identity headers and the ones of this
    /// answer (the assertion, the route's claim headers), when it passes
    /// any.
    fn identity_parts(
        &self,
    ) -> Option<(
        &HeaderMap,
        impl Iterator<Item = (HeaderName, HeaderValue)> + '_,
    )> {
        let Decision::Allow {
            session: Some(session),
            pass_identity_headers: true,
            claim_headers,
            assertion,
            ..
        } = self
        else {
            return None;
        };
        let identity = &session.identity;
        let assertion = assertion
            .iter()
            .map(|assertion| (HEADER_JWT, assertion.clone()));
        let claims = claim_headers
            .claims
            .iter()
            .filter_map(move |(claim, name)| {
                let text = match identity.claims.get(claim)? {
                    Value::String(s) => Cow::Borrowed(s.as_str()),
                    Value::Array(items) => Cow::Owned(crate::identity::header_list(
                        items.iter().filter_map(scalar_text),
                    )),
                    other => Cow::Owned(scalar_text(other)?),
                };
                Some((name.clone(), HeaderValue::from_str(&text).ok()?))
            });
        Some((
            session.headers.get_or_render(identity),
            assertion.chain(claims),
        ))
    }

    /// The request headers a proxy must strip on allow, given the headers
    /// `set` by this answer: [`identity_headers_to_remove`] plus the route's
    /// `jwt_claims_headers` names (every spelling) that are not set.
    pub fn headers_to_remove(&self, set: &[(HeaderName, HeaderValue)]) -> Vec<Cow<'static, str>> {
        let mut remove: Vec<Cow<'static, str>> = identity_headers_to_remove(set)
            .into_iter()
            .map(Cow::Borrowed)
            .collect();
        if let Decision::Allow { claim_headers, .. } = self {
            remove.extend(
                claim_headers
                    .spellings
                    .iter()
                    .filter(|name| !set.iter().any(|(n, _)| n.as_str() == name.as_str()))
                    .map(|name| Cow::Owned(name.clone())),
            );
        }
        remove
    }
}

/// A claim's scalar value as header text (strings as they are).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The policy in force and its decision counters, swapped together on a
/// reload (the counters are resolved per route of that policy).
struct InForce {
    policy: Arc<Policy>,
    metrics: Option<DecisionMetrics>,
}

/// Makes decisions from the compiled policy and the sessions.
pub struct Decider {
    in_force: ArcSwap<InForce>,
    sessions: Arc<Sessions>,
    /// Re-validates due sessions with the provider (none: never).
    refresher: Option<Refresher>,
    /// Renders the re-issued session cookie (none: never re-issued).
    session_cookie: Option<SessionCookie>,
    /// `<login host>/oauth2/start?rd=`, to which the return URL is appended.
    sign_in_prefix: String,
    /// Normalised `cookie_domain`: hosts outside it sign in through
    /// [`crate::handoff::START_PATH`] on themselves (none: never).
    handoff_domain: Option<String>,
    /// Signs `X-Auth-Request-Jwt` (none: not sent).
    signer: Option<Arc<AssertionSigner>>,
    /// Verifies Bearer tokens (none: `Authorization` is ignored).
    bearer: Option<Arc<BearerVerifier>>,
    /// Where decisions are counted (none: not recorded).
    metrics: Option<Arc<Metrics>>,
}

impl Decider {
    /// `login_base` is `authenticate_service_url`.
    pub fn new(policy: Arc<Policy>, sessions: Arc<Sessions>, login_base: &url::Url) -> Decider {
        let mut sign_in_prefix = login_base.as_str().trim_end_matches('/').to_owned();
        sign_in_prefix.push_str("/oauth2/start?rd=");
        Decider {
            in_force: ArcSwap::from_pointee(InForce {
                policy,
                metrics: None,
            }),
            sessions,
            refresher: None,
            session_cookie: None,
            sign_in_prefix,
            handoff_domain: None,
            signer: None,
            bearer: None,
            metrics: None,
        }
    }

    /// Adds the signed assertion to the identity headers.
    pub fn with_signer(mut self, signer: Arc<AssertionSigner>) -> Decider {
        self.signer = Some(signer);
        self
    }

    /// Sends sign-ins for hosts outside `cookie_domain` to their own
    /// [`crate::handoff::START_PATH`] first, which binds the handoff token
    /// to the browser.
    pub fn with_handoff_domain(mut self, cookie_domain: Option<&str>) -> Decider {
        self.handoff_domain = cookie_domain.and_then(crate::redirect::normalize_domain);
        self
    }

    /// Accepts provider-issued Bearer tokens in place of a session.
    pub fn with_bearer(mut self, bearer: Arc<BearerVerifier>) -> Decider {
        self.bearer = Some(bearer);
        self
    }

    /// Counts the decisions of [`Decider::decide_for`] in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Decider {
        let policy = self.policy();
        self.in_force.store(Arc::new(InForce {
            metrics: Some(DecisionMetrics::new(&metrics, &policy)),
            policy,
        }));
        self.metrics = Some(metrics);
        self
    }

    /// Refreshes sessions whose refresh is due before deciding with them.
    pub fn with_refresher(mut self, refresher: Refresher) -> Decider {
        self.refresher = Some(refresher);
        self
    }

    /// Re-issues a session cookie sealed with a previous `cookie_secret`
    /// (`Decision::Allow::set_cookie`), so rotated secrets can be dropped
    /// once every active user has been seen.
    pub fn with_session_cookie(mut self, cookie: SessionCookie) -> Decider {
        self.session_cookie = Some(cookie);
        self
    }

    /// The policy in force now (a reload may replace it for later calls).
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.in_force.load().policy)
    }

    /// Puts `policy` in force for every decision that starts from now on;
    /// returns the one it replaces.
    pub fn replace_policy(&self, policy: Arc<Policy>) -> Arc<Policy> {
        let metrics = self
            .metrics
            .as_ref()
            .map(|metrics| DecisionMetrics::new(metrics, &policy));
        let previous = self.in_force.swap(Arc::new(InForce { policy, metrics }));
        Arc::clone(&previous.policy)
    }

    /// Decides a proxy's question and records it: counted in the metrics
    /// with its latency, and logged (a refusal at info, the rest at debug).
    /// Every front end calls this (or [`Decider::decide_now_for`] first);
    /// [`Decider::decide`] alone is for pages that explain a decision
    /// already counted.
    pub async fn decide_for<'a, C>(&self, asker: Asker<'_>, request: Request<'a, C>) -> Decision
    where
        C: IntoIterator<Item = &'a str>,
    {
        let started = Instant::now();
        // One policy for the whole decision, even if a reload swaps it
        // meanwhile (an `Arc`, not a guard: the decision awaits the store).
        let in_force = self.in_force.load_full();
        self.decide_target(&in_force, request, Some((asker, started)))
            .await
    }

    /// [`Decider::decide_for`] when the decision needs no I/O: no session
    /// cookie or a cached session with nothing due, and no Bearer token to
    /// verify. That is most decisions, and they need no future at all.
    /// `None`: ask `decide_for`.
    pub fn decide_now_for<'a, C>(
        &self,
        asker: Asker<'_>,
        request: Request<'a, C>,
    ) -> Option<Decision>
    where
        C: IntoIterator<Item = &'a str>,
    {
        let started = Instant::now();
        let in_force = self.in_force.load();
        let decision = match self.check_target(&in_force.policy, &request.target, request.preflight)
        {
            Err(decision) => decision,
            Ok(target) => {
                let identified = self.identify_now(
                    &target.host,
                    request.session_cookies,
                    request.authorization,
                )?;
                self.conclude(&in_force.policy, target, identified, request.method)
            }
        };
        record(&in_force, asker, &request.target, &decision, started);
        Some(decision)
    }

    /// Decides one request, without recording it.
    pub async fn decide<'a, C>(&self, request: Request<'a, C>) -> Decision
    where
        C: IntoIterator<Item = &'a str>,
    {
        let in_force = self.in_force.load_full();
        self.decide_target(&in_force, request, None).await
    }

    /// The decision about `target`. The one `async` step of a decision: its
    /// callers call it directly, as every level of `async fn` would hold
    /// its arguments again beside the future it awaits (kilobytes, copied
    /// on every move).
    /// With `recorded`, the decision is counted and logged as `asker`'s.
    async fn decide_target<'a, C>(
        &self,
        in_force: &InForce,
        request: Request<'_, C>,
        recorded: Option<(Asker<'_>, Instant)>,
    ) -> Decision
    where
        C: IntoIterator<Item = &'a str>,
    {
        let policy = &in_force.policy;
        let decision = match self.check_target(policy, &request.target, request.preflight) {
            Err(decision) => decision,
            Ok(target) => match self
                .identify(&target.host, request.session_cookies, request.authorization)
                .await
            {
                Some(identified) => self.conclude(policy, target, identified, request.method),
                None => Decision::Unavailable,
            },
        };
        if let Some((asker, started)) = recorded {
            record(in_force, asker, &request.target, &decision, started);
        }
        decision
    }

    /// The target, or the decision that needs nobody's identity: an
    /// unusable URL, or a preflight on a route that allows them.
    fn check_target<'t, 'u>(
        &self,
        policy: &Policy,
        target: &'t Result<Target<'u>, TargetError>,
        preflight: bool,
    ) -> Result<&'t Target<'u>, Decision> {
        let target = match target {
            Ok(target) => target,
            Err(error) => {
                tracing::debug!(%error, "refused: unusable original URL");
                return Err(Decision::Deny {
                    route: None,
                    session: None,
                    reason: Refusal::BadTarget,
                });
            }
        };
        // A preflight carries no credentials: allowed on routes that say so,
        // before any identity is looked at. Only preflights pay for this
        // lookup; every other request finds its route once, in `conclude`.
        if preflight && let Some(route) = policy.preflight_route(target) {
            return Err(Decision::Allow {
                route,
                session: None,
                pass_identity_headers: false,
                claim_headers: Arc::default(),
                assertion: None,
                set_cookie: None,
            });
        }
        Ok(target)
    }

    /// Who asks: a verified Bearer token, else the first session cookie
    /// that names a valid session on `host` (refreshed if due). `None`: the
    /// store or the provider cannot answer, so nobody can be allowed (fail
    /// closed).
    async fn identify<'a, C>(
        &self,
        host: &str,
        session_cookies: C,
        authorization: Option<&str>,
    ) -> Option<Identified>
    where
        C: IntoIterator<Item = &'a str>,
    {
        let mut identified = Identified::default();
        if let (Some(bearer), Some(token)) = (
            &self.bearer,
            authorization.and_then(crate::bearer::token_of),
        ) {
            // Boxed: only requests with a token pay for its future.
            match Box::pin(bearer.verify(token)).await {
                Ok(verified) => {
                    identified.session_key = verified.key;
                    identified.session = Some(verified.record.clone());
                    return Some(identified);
                }
                Err(BearerError::Unavailable(reason)) => {
                    tracing::error!(%reason, "cannot verify a Bearer token");
                    return None;
                }
                // Not ours (an app may use its own Bearer scheme): the
                // cookie may still sign the request in.
                Err(error) => {
                    tracing::debug!(%error, "Bearer token refused");
                    identified.invalid_token = true;
                }
            }
        }
        for value in session_cookies {
            let resolved = match (self.sessions.resolve(value).await, &self.refresher) {
                // Another host's cookie names no session here: never
                // refreshed on its behalf.
                (Ok(Some(resolved)), _) if !resolved.valid_on(host) => Ok(None),
                // Not due: a comparison, no I/O.
                (Ok(Some(resolved)), Some(refresher)) => refresher.check(resolved).await,
                (other, _) => other,
            };
            match resolved {
                Ok(Some(resolved)) => return Some(self.signed_in(resolved, identified)),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "session store unavailable");
                    return None;
                }
            }
        }
        Some(identified)
    }

    /// [`Decider::identify`] without I/O; `None` when that needs some (a
    /// Bearer token, a session not in the cache, a refresh or an idle-clock
    /// write due).
    fn identify_now<'a, C>(
        &self,
        host: &str,
        session_cookies: C,
        authorization: Option<&str>,
    ) -> Option<Identified>
    where
        C: IntoIterator<Item = &'a str>,
    {
        if self.bearer.is_some() && authorization.and_then(crate::bearer::token_of).is_some() {
            return None;
        }
        for value in session_cookies {
            if let Some(resolved) = self.sessions.resolve_cached(value)?
                && resolved.valid_on(host)
            {
                if self
                    .refresher
                    .as_ref()
                    .is_some_and(|refresher| refresher.is_due_now(&resolved.record))
                {
                    return None;
                }
                return Some(self.signed_in(resolved, Identified::default()));
            }
        }
        Some(Identified::default())
    }

    /// `identified` signed in as `resolved`'s session.
    fn signed_in(&self, resolved: Resolved, identified: Identified) -> Identified {
        Identified {
            session_key: resolved.id,
            set_cookie: self.reissue(&resolved),
            session: Some(resolved.record),
            ..identified
        }
    }

    /// The decision about `target` for whoever `identified` found.
    fn conclude(
        &self,
        policy: &Policy,
        target: &Target<'_>,
        identified: Identified,
        method: Option<&str>,
    ) -> Decision {
        let Identified {
            session,
            session_key,
            set_cookie,
            invalid_token,
        } = identified;
        let identity = session.as_deref().map(|s| &s.identity);
        let verdict = policy.evaluate(target, identity);
        // A method the route never serves is refused whoever asks: a 403,
        // not a sign-in.
        if let Some(route) = verdict.route()
            && let Some(route) = policy.refuses_method(target, route, method)
        {
            return Decision::Deny {
                route: Some(route),
                session,
                reason: Refusal::MethodNotAllowed,
            };
        }
        match verdict {
            Verdict::Allow { route } | Verdict::Public { route } => {
                let pass_identity_headers = policy.pass_identity_headers(route);
                let claim_headers = policy.claim_headers(route);
                let assertion = match (&self.signer, &session) {
                    (Some(signer), Some(record)) if pass_identity_headers => signer
                        .assertion(&Subject {
                            session: session_key,
                            stamp: record.refreshed_at.max(record.created_at),
                            route: route.0,
                            audience: &target.host,
                            identity: &record.identity,
                            expires_at: record.expires_at,
                            extra_claims: &claim_headers.claims,
                        })
                        .map_err(|error| tracing::error!(%error, "assertion not signed"))
                        .ok(),
                    _ => None,
                };
                Decision::Allow {
                    route,
                    pass_identity_headers,
                    session,
                    claim_headers,
                    assertion,
                    set_cookie,
                }
            }
            Verdict::NeedsLogin { route } => Decision::SignIn {
                route,
                sign_in_url: self.sign_in_location(target),
                invalid_token,
            },
            Verdict::Deny { route, reason } => Decision::Deny {
                route,
                session,
                reason: match reason {
                    DenyReason::NoRoute => Refusal::NoRoute,
                    DenyReason::NotAllowed => Refusal::NotAllowed,
                },
            },
        }
    }

    /// The `Set-Cookie` value re-issuing `resolved`'s cookie, if it was
    /// sealed with a previous secret; it expires with the session.
    fn reissue(&self, resolved: &Resolved) -> Option<HeaderValue> {
        let value = resolved.reissued_cookie()?;
        let remaining = resolved.expires_at().saturating_sub(self.sessions.now());
        let max_age = std::time::Duration::from_secs(u64::try_from(remaining).ok()?);
        self.session_cookie.as_ref()?.header(value, max_age)
    }

    /// Where a request for `target` without a session goes to sign in: the
    /// login host, or for a host outside the cookie domain that host's own
    /// handoff start (no I/O either way).
    fn sign_in_location(&self, target: &Target<'_>) -> String {
        let return_url = target.return_url();
        match &self.handoff_domain {
            Some(domain) if !crate::redirect::in_domain(&target.host, domain) => {
                crate::handoff::start_url(target, &return_url)
            }
            _ => self.sign_in_url(&return_url),
        }
    }

    /// The login URL that returns to `return_url` afterwards.
    pub fn sign_in_url(&self, return_url: &str) -> String {
        let mut url = self.sign_in_prefix.clone();
        url.extend(url::form_urlencoded::byte_serialize(return_url.as_bytes()));
        url
    }
}

/// Counts `decision` in the metrics with its latency, and logs it.
fn record(
    in_force: &InForce,
    asker: Asker<'_>,
    target: &Result<Target<'_>, TargetError>,
    decision: &Decision,
    started: Instant,
) {
    if let Some(metrics) = &in_force.metrics {
        metrics.record(asker.front_end, decision, started.elapsed());
    }
    crate::telemetry::log_decision(&in_force.policy, asker, target.as_ref().ok(), decision);
}

/// Who asks, as far as the policy and the answer need.
#[derive(Default)]
struct Identified {
    session: Option<Arc<SessionRecord>>,
    /// Who the session is, for the assertion's cache and `sid`.
    session_key: [u8; 16],
    /// A re-issued session cookie (it was sealed with a previous secret).
    set_cookie: Option<HeaderValue>,
    /// The request's Bearer token was refused (`error="invalid_token"`).
    invalid_token: bool,
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3): with
/// `error="invalid_token"` when the request's Bearer token was refused.
pub fn www_authenticate(invalid_token: bool) -> HeaderValue {
    if invalid_token {
        HeaderValue::from_static("Bearer realm=\"authgate\", error=\"invalid_token\"")
    } else {
        HeaderValue::from_static("Bearer realm=\"authgate\"")
    }
}

/// Who is asking, for front ends whose answer reaches the client itself
/// (Envoy, forward-auth): a browser navigating is sent to the sign-in page,
/// a program is told 401 (a redirect to an HTML login would only confuse
/// it). Decided here once so Envoy gRPC, Envoy HTTP, Traefik and Caddy
/// cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Browser,
    Program,
}

impl Client {
    /// A program when the request is gRPC or gRPC-Web (`Content-Type:
    /// application/grpc…`), an XHR (`X-Requested-With: XMLHttpRequest`), or
    /// its `Accept` does not prefer HTML: `*/*` alone (curl, `fetch`), no
    /// `Accept`, or `application/json` ranked above `text/html`. `header`
    /// looks up a lower-case header name.
    pub fn classify<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Client {
        let grpc = header("content-type").is_some_and(|v| {
            v.trim_start()
                .get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        });
        let xhr = header("x-requested-with")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("xmlhttprequest"));
        if grpc || xhr {
            return Client::Program;
        }
        match header("accept") {
            Some(accept) if prefers_html(accept) => Client::Browser,
            _ => Client::Program,
        }
    }
}

/// Does this `Accept` rank HTML at least as high as every other explicitly
/// named type? Wildcards count for neither side: browsers name `text/html`.
fn prefers_html(accept: &str) -> bool {
    let mut html = 0.0f32;
    let mut other = 0.0f32;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media.eq_ignore_ascii_case("text/html")
            || media.eq_ignore_ascii_case("application/xhtml+xml")
        {
            html = html.max(q);
        } else if !media.ends_with("/*") && !media.is_empty() {
            other = other.max(q);
        }
    }
    html > 0.0 && html >= other
}

/// Every spelling of the identity header names with `-` and `_` mixed
/// (`x_auth_request_email`, `x-auth_request-email`, …), canonical first.
/// Some upstreams (CGI, WSGI, PHP, nginx with `underscores_in_headers`)
/// treat `_` and `-` alike, so a client-sent variant would pass as the real
/// header (CVE-2025-64484). Letter case needs no variants: header names are
/// case-insensitive and the proxies compare them lower-cased.
pub fn identity_header_spellings() -> &'static [Vec<String>] {
    static SPELLINGS: std::sync::LazyLock<Vec<Vec<String>>> = std::sync::LazyLock::new(|| {
        IDENTITY_HEADERS
            .iter()
            .map(|name| separator_spellings(name.as_str()))
            .collect()
    });
    &SPELLINGS
}

/// `name` with every mix of `-` and `_` at its separators, `name` first.
/// Names with more than 8 separators get only the two uniform spellings
/// besides `name` (2^n would explode; no real header has that many).
pub fn separator_spellings(name: &str) -> Vec<String> {
    let seps: Vec<usize> = name.match_indices(['-', '_']).map(|(i, _)| i).collect();
    if seps.len() > 8 {
        let mut out = vec![
            name.to_owned(),
            name.replace('_', "-"),
            name.replace('-', "_"),
        ];
        out.dedup();
        return out;
    }
    let canonical = name.replace('_', "-");
    let mut out = vec![name.to_owned()];
    for mask in 0u32..1 << seps.len() {
        let mut bytes = canonical.as_bytes().to_vec();
        for (bit, &at) in seps.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                bytes[at] = b'_';
            }
        }
        let spelling = String::from_utf8_lossy(&bytes).into_owned();
        if !out.contains(&spelling) {
            out.push(spelling);
        }
    }
    out
}

/// The request headers a proxy must strip on allow, given the identity
/// headers `set` by this answer: every `_` spelling, and the canonical names
/// this answer does not set (no email, a public route without a session), so
/// a client-sent copy never reaches the upstream. The names that are set are
/// left out on purpose: Envoy applies removals *after* setting headers, so
/// listing them would strip our own values; overwriting already replaces
/// the client's.
pub fn identity_headers_to_remove(set: &[(HeaderName, HeaderValue)]) -> Vec<&'static str> {
    let mut remove = Vec::with_capacity(48);
    for spellings in identity_header_spellings() {
        let mut spellings = spellings.iter().map(String::as_str);
        if let Some(canonical) = spellings.next()
            && !set.iter().any(|(name, _)| name.as_str() == canonical)
        {
            remove.push(canonical);
        }
        remove.extend(spellings);
    }
    remove
}

#[cfg(test)]
mod client_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn classify(pairs: &[(&'static str, &'static str)]) -> Client {
        Client::classify(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }

    /// What Chrome and Firefox send for a navigation is a browser; curl,
    /// fetch's default, JSON clients, XHR and gRPC(-Web) are programs.
    #[test]
    fn browsers_and_programs_are_told_apart() {
        let chrome =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert_eq!(classify(&[("accept", chrome)]), Client::Browser);
        assert_eq!(
            classify(&[(
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            )]),
            Client::Browser
        );
        assert_eq!(classify(&[("accept", "*/*")]), Client::Program);
        assert_eq!(classify(&[]), Client::Program);
        assert_eq!(classify(&[("accept", "application/json")]), Client::Program);
        assert_eq!(
            classify(&[("accept", "application/json, text/html;q=0.5")]),
            Client::Program
        );
        assert_eq!(classify(&[("accept", "text/html;q=0")]), Client::Program);
        assert_eq!(
            classify(&[("accept", chrome), ("x-requested-with", "XMLHttpRequest")]),
            Client::Program
        );
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc-web+proto",
            "application/grpc-web-text",
        ] {
            assert_eq!(
                classify(&[("accept", chrome), ("content-type", grpc)]),
                Client::Program,
                "{grpc}"
            );
        }
        // A form post from a browser is still a browser.
        assert_eq!(
            classify(&[
                ("accept", chrome),
                ("content-type", "application/x-www-form-urlencoded")
            ]),
            Client::Browser
        );
    }

    /// Every `-`/`_` mix is listed: 2^3 spellings for three separators, 2^4
    /// for `preferred-username`.
    #[test]
    fn spellings_cover_every_separator_mix() {
        let all = identity_header_spellings();
        assert_eq!(all.len(), IDENTITY_HEADERS.len());
        let email = &all[1];
        assert_eq!(email[0], "x-auth-request-email");
        assert_eq!(email.len(), 8);
        assert!(email.iter().any(|s| s == "x_auth_request_email"));
        assert!(email.iter().any(|s| s == "x-auth_request-email"));
        assert_eq!(all[2].len(), 16);
        let total: usize = all.iter().map(Vec::len).sum();
        let mut unique: Vec<_> = all.iter().flatten().collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), total);
    }

    /// Headers we set are not removed (Envoy removes after setting); the
    /// canonical names we do not set, and every `_` spelling, are.
    #[test]
    fn removal_list_spares_what_is_set() {
        let set = vec![
            (HEADER_USER, HeaderValue::from_static("sub")),
            (HEADER_EMAIL, HeaderValue::from_static("a@example.com")),
        ];
        let remove = identity_headers_to_remove(&set);
        assert!(!remove.contains(&"x-auth-request-user"));
        assert!(!remove.contains(&"x-auth-request-email"));
        assert!(remove.contains(&"x-auth-request-groups"));
        assert!(remove.contains(&"x-auth-request-preferred-username"));
        assert!(remove.contains(&"x_auth_request_email"));
        assert!(remove.contains(&"x_auth_request_user"));
        assert!(remove.contains(&"x-auth-request-jwt"));
        assert!(remove.contains(&"x_auth_request_jwt"));
        assert_eq!(remove.len(), 8 + 8 + 16 + 8 + 8 - 2);
        let nothing_set = identity_headers_to_remove(&[]);
        assert_eq!(nothing_set.len(), 48);
    }
}
