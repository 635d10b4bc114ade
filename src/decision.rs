//! The decision core: request facts in, verdict out.
//!
//! Every front end (nginx `auth_request`, forward-auth, Envoy `Check`)
//! translates its protocol into a [`Request`], calls [`Decider::decide`] and
//! translates the [`Decision`] back. No front end looks at policy or
//! sessions itself, so they cannot drift apart.
//!
//! The common case does no network I/O: the cookie is opened locally, the
//! session comes from the local cache, the policy is compiled.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::policy::{DenyReason, Policy, RouteId, Target, TargetError, Verdict};
use crate::refresh::Refresher;
use crate::session::{SessionRecord, Sessions};

/// Identity headers set on allow (the names oauth2-proxy uses, so existing
/// nginx configs work). The same names arriving from a client are never
/// trusted: the proxy must overwrite or strip them.
pub const HEADER_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
pub const HEADER_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
pub const HEADER_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");
pub const HEADER_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");

/// Every identity header this service sets; front ends strip client-sent
/// copies of these (and their `_`/case variants).
pub const IDENTITY_HEADERS: [HeaderName; 4] = [
    HEADER_USER,
    HEADER_EMAIL,
    HEADER_PREFERRED_USERNAME,
    HEADER_GROUPS,
];

/// What a front end knows about the request it is asked about.
pub struct Request<'a, C> {
    /// The original request's URL, or why it could not be understood.
    pub target: Result<Target<'a>, TargetError>,
    /// Values of every cookie carrying the session cookie's name (a browser
    /// may hold a host-only and a domain cookie of the same name).
    pub session_cookies: C,
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
}

/// The verdict, carrying everything any front end needs to answer.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Let the request through; `session` is `None` on a public route
    /// visited without a session.
    Allow {
        route: RouteId,
        session: Option<Arc<SessionRecord>>,
        pass_identity_headers: bool,
    },
    /// No valid session: the user must sign in at `sign_in_url`.
    SignIn { route: RouteId, sign_in_url: String },
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
    /// The identity headers to pass upstream, rendered in one place for every
    /// front end. Empty unless the decision is an allow with a session on a
    /// route that passes identity headers. A value that cannot be a header
    /// (control characters) is left out rather than passed mangled.
    pub fn identity_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let Decision::Allow {
            session: Some(session),
            pass_identity_headers: true,
            ..
        } = self
        else {
            return Vec::new();
        };
        let identity = &session.identity;
        let mut headers = Vec::with_capacity(4);
        let mut push = |name: HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.push((name, value));
            }
        };
        push(HEADER_USER, &identity.subject);
        if let Some(email) = &identity.email {
            push(HEADER_EMAIL, email);
        }
        if let Some(name) = &identity.preferred_username {
            push(HEADER_PREFERRED_USERNAME, name);
        }
        if !identity.groups.is_empty() {
            push(HEADER_GROUPS, &identity.groups.join(","));
        }
        headers
    }
}

/// Makes decisions from the compiled policy and the sessions.
pub struct Decider {
    policy: Arc<Policy>,
    sessions: Arc<Sessions>,
    /// Re-validates due sessions with the provider (none: never).
    refresher: Option<Refresher>,
    /// `<login host>/oauth2/start?rd=`, to which the return URL is appended.
    sign_in_prefix: String,
}

impl Decider {
    /// `login_base` is `authenticate_service_url`.
    pub fn new(policy: Arc<Policy>, sessions: Arc<Sessions>, login_base: &url::Url) -> Decider {
        let mut sign_in_prefix = login_base.as_str().trim_end_matches('/').to_owned();
        sign_in_prefix.push_str("/oauth2/start?rd=");
        Decider {
            policy,
            sessions,
            refresher: None,
            sign_in_prefix,
        }
    }

    /// Refreshes sessions whose refresh is due before deciding with them.
    pub fn with_refresher(mut self, refresher: Refresher) -> Decider {
        self.refresher = Some(refresher);
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides one request.
    pub async fn decide<'a, C>(&self, request: Request<'a, C>) -> Decision
    where
        C: IntoIterator<Item = &'a str>,
    {
        let target = match request.target {
            Ok(target) => target,
            Err(error) => {
                tracing::debug!(%error, "refused: unusable original URL");
                return Decision::Deny {
                    route: None,
                    session: None,
                    reason: Refusal::BadTarget,
                };
            }
        };
        let mut session = None;
        for value in request.session_cookies {
            let resolved = match (self.sessions.resolve(value).await, &self.refresher) {
                // Not due: a comparison, no I/O.
                (Ok(Some(resolved)), Some(refresher)) => refresher.check(resolved).await,
                (other, _) => other,
            };
            match resolved {
                Ok(Some(resolved)) => {
                    session = Some(resolved.record);
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "session store unavailable");
                    return Decision::Unavailable;
                }
            }
        }
        let identity = session.as_deref().map(|s| &s.identity);
        match self.policy.evaluate(&target, identity) {
            Verdict::Allow { route } | Verdict::Public { route } => Decision::Allow {
                route,
                pass_identity_headers: self.policy.pass_identity_headers(route),
                session,
            },
            Verdict::NeedsLogin { route } => Decision::SignIn {
                route,
                sign_in_url: self.sign_in_url(&target.return_url()),
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

    /// The login URL that returns to `return_url` afterwards.
    pub fn sign_in_url(&self, return_url: &str) -> String {
        let mut url = self.sign_in_prefix.clone();
        url.extend(url::form_urlencoded::byte_serialize(return_url.as_bytes()));
        url
    }
}
