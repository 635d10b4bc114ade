//! The request facts a front end hands the core, and the verdict it gets.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;

use crate::policy::{ClaimHeaders, ProxyConditions, RouteId, Target, TargetError};
use crate::session::SessionRecord;

/// What a front end knows about the request it is asked about.
pub struct Request<'a, C> {
    /// The original request's URL, or why it could not be understood.
    /// Borrowed, so the front end can still name it in its log line.
    pub target: &'a Result<Target<'a>, TargetError>,
    /// Values of every cookie carrying the session cookie's name (a browser
    /// may hold a host-only and a domain cookie of the same name).
    pub session_cookies: C,
    /// The original request's method, if the front end knows it (a route
    /// with `allowed_methods` refuses a request whose method is unknown).
    pub method: Option<&'a str>,
    /// The original request's `Authorization` header, for API clients
    /// with a Bearer token from the provider.
    pub authorization: Option<&'a str>,
    /// A CORS preflight (see [`super::is_preflight`]).
    pub preflight: bool,
    /// The client's address as the proxy reports it, for `source_ip`
    /// policies; `None` when the front end cannot tell (such a policy then
    /// does not match).
    pub source_ip: Option<IpAddr>,
    /// Conditions from the proxy's own configuration (the auth URL's
    /// `allowed_groups=…`, Envoy's `context_extensions`).
    pub conditions: &'a ProxyConditions<'a>,
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
    /// visited without a session.
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
        /// What the route asked for that the request lacks, in words
        /// ("needs group devops; you are in: developers"), for the log and
        /// the 403 page.
        unmet: Option<Box<str>>,
    },
    /// The session store or the provider could not answer: fail closed.
    Unavailable,
}

impl Decision {
    /// The route the decision was made on, if any.
    pub fn route(&self) -> Option<RouteId> {
        match self {
            Decision::Allow { route, .. } | Decision::SignIn { route, .. } => Some(*route),
            Decision::Deny { route, .. } => *route,
            Decision::Unavailable => None,
        }
    }
}
