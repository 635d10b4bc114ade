//! Route matching and authorization: the `policy`/`routes` entries compiled
//! once, then evaluated per request without I/O and without allocating.
//!
//! A request is described by a [`Target`] (see [`target`] for how hosts and
//! paths are canonicalised, nginx's way). [`Policy::evaluate`] finds the
//! first route, in file order, whose scheme, host, port and path match, then
//! applies its rules (Pomerium semantics, OR-ed). No matching route means
//! deny, signed in or not.
//!
//! Matching does not scan the routes: they are indexed by exact host, by
//! wildcard suffix (`*.example.com` is looked up once per label of the
//! request host) and a short catch-all list (`from: https://*`); the lowest
//! route index among the candidates whose path matcher matches wins.
//!
//! Path matchers (linkerd's `MatchPath`): `prefix` matches whole segments
//! (`/api` matches `/api`, `/api/`, `/api/x`, never `/apix`; a prefix ending
//! in `/` matches what starts with it), `path` is exact, `regex` is anchored
//! `^(?:…)$`; all compare the canonical path, never the query.

mod admin;
mod authz;
pub mod route;
pub mod target;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;

use crate::identity::Identity;

pub use admin::AdminAccess;
use authz::Authz;
use route::Routes;
use route::{HostMatch, PathMatch};
pub use target::{Scheme, Target, TargetError};

/// How much a verdict refuses, to pick the stricter of two.
fn strictness(verdict: &Verdict) -> u8 {
    match verdict {
        Verdict::Public { .. } => 0,
        Verdict::Allow { .. } => 1,
        Verdict::NeedsLogin { .. } => 2,
        Verdict::Deny { .. } => 3,
    }
}

/// A compiled route's position in the configuration (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteId(pub u32);

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed in and allowed by the route's rules.
    Allow { route: RouteId },
    /// The route allows unauthenticated access; identity is irrelevant.
    Public { route: RouteId },
    /// The route needs a signed-in user and there is none.
    NeedsLogin { route: RouteId },
    /// Refused: no route serves the request, or the user is not allowed.
    Deny {
        route: Option<RouteId>,
        reason: DenyReason,
    },
}

impl Verdict {
    /// The route that decided, if any route serves the request.
    pub fn route(&self) -> Option<RouteId> {
        match *self {
            Verdict::Allow { route }
            | Verdict::Public { route }
            | Verdict::NeedsLogin { route } => Some(route),
            Verdict::Deny { route, .. } => route,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No route serves this scheme, host, port and path (deny by default).
    NoRoute,
    /// The route exists but none of its rules admits this identity.
    NotAllowed,
}

/// A route's `jwt_claims_headers`, ready to render: claim → header, and
/// every `-`/`_` spelling of those header names (for stripping client
/// copies, as for the built-in identity headers).
#[derive(Debug, Default)]
pub struct ClaimHeaders {
    pub claims: Vec<(String, HeaderName)>,
    pub spellings: Vec<String>,
}

impl ClaimHeaders {
    fn compile(claims: Vec<(String, HeaderName)>) -> ClaimHeaders {
        let spellings = claims
            .iter()
            .flat_map(|(_, name)| crate::identity::separator_spellings(name.as_str()))
            .collect();
        ClaimHeaders { claims, spellings }
    }
}

#[derive(Debug)]
struct Route {
    name: Box<str>,
    scheme: Scheme,
    /// Explicit or default port.
    port: u16,
    path: PathMatch,
    public: bool,
    authz: Authz,
    pass_identity_headers: bool,
    claim_headers: Arc<ClaimHeaders>,
    /// Upper case; empty: any method.
    methods: Box<[Box<str>]>,
    cors_allow_preflight: bool,
}

/// Host → route indices. foldhash rather than SipHash: the keys are the
/// configured hosts, fixed at compile time, so a client choosing the
/// looked-up host cannot degrade the table; every decision hashes its host.
type HostIndex = HashMap<Box<str>, Vec<u32>, foldhash::fast::RandomState>;

/// The compiled routes and their host index. Immutable; swap the whole
/// policy on reload.
#[derive(Debug, Default)]
pub struct Policy {
    routes: Vec<Route>,
    /// Normalised host → route indices, ascending.
    exact: HostIndex,
    /// Wildcard suffix (`example.com` for `*.example.com`) → route indices.
    wildcard: HostIndex,
    /// `from: https://*` routes.
    any_host: Vec<u32>,
}

impl Policy {
    /// Index the parsed routes (file order is their order). Cannot fail:
    /// [`route::Route::parse`] checked every value and
    /// [`Routes`] the names and the count.
    pub fn compile(routes: Routes) -> Policy {
        let mut policy = Policy::default();
        for (position, parsed) in routes.into_iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)] // `Routes` holds at most u32::MAX
            let index = position as u32;
            let route::Route {
                spec,
                name,
                scheme,
                host,
                port,
                path,
                authz,
                claim_headers,
                methods,
            } = parsed;
            match host {
                HostMatch::Exact(h) => policy.exact.entry(h).or_default().push(index),
                HostMatch::Wildcard(s) => policy.wildcard.entry(s).or_default().push(index),
                HostMatch::Any => policy.any_host.push(index),
            }
            policy.routes.push(Route {
                name,
                scheme,
                port,
                path,
                public: spec.allow_public_unauthenticated_access,
                authz,
                pass_identity_headers: spec.pass_identity_headers,
                claim_headers: Arc::new(ClaimHeaders::compile(claim_headers)),
                methods,
                cors_allow_preflight: spec.cors_allow_preflight,
            });
        }
        policy
    }

    /// First matching route wins; no matching route → `Deny { NoRoute }`
    /// (deny by default), whether signed in or not. A path with `;`
    /// parameters is evaluated as written and without them, one with dot
    /// segments also with its dots kept (see [`target`]); the strictest
    /// verdict stands.
    pub fn evaluate(&self, target: &Target<'_>, identity: Option<&Identity>) -> Verdict {
        let mut verdict = self.evaluate_path(target, &target.path, identity);
        for path in readings(target).skip(1) {
            let other = self.evaluate_path(target, path, identity);
            if strictness(&other) > strictness(&verdict) {
                verdict = other;
            }
        }
        verdict
    }

    fn evaluate_path(
        &self,
        target: &Target<'_>,
        path: &str,
        identity: Option<&Identity>,
    ) -> Verdict {
        let Some(index) = self.find(target, path) else {
            return Verdict::Deny {
                route: None,
                reason: DenyReason::NoRoute,
            };
        };
        let id = RouteId(index);
        let route = &self.routes[index as usize];
        if route.public {
            return Verdict::Public { route: id };
        }
        match identity {
            None => Verdict::NeedsLogin { route: id },
            Some(identity) if route.authz.allows(identity) => Verdict::Allow { route: id },
            Some(_) => Verdict::Deny {
                route: Some(id),
                reason: DenyReason::NotAllowed,
            },
        }
    }

    /// The lowest-indexed route matching `target`, from the host index.
    fn find(&self, target: &Target<'_>, path: &str) -> Option<u32> {
        let host: &str = &target.host;
        let mut best = None;
        if let Some(list) = self.exact.get(host) {
            best = self.first_match(list, target, path, best);
        }
        if !self.wildcard.is_empty() && !host.starts_with('[') {
            // Every proper suffix after a dot: `a.b.example.com` looks up
            // `b.example.com`, `example.com`, `com`.
            for (i, b) in host.bytes().enumerate() {
                if b == b'.'
                    && let Some(list) = self.wildcard.get(&host[i + 1..])
                {
                    best = self.first_match(list, target, path, best);
                }
            }
        }
        self.first_match(&self.any_host, target, path, best)
    }

    /// The first route of `candidates` (ascending) that matches and beats
    /// `best`.
    fn first_match(
        &self,
        candidates: &[u32],
        target: &Target<'_>,
        path: &str,
        best: Option<u32>,
    ) -> Option<u32> {
        let port = target.effective_port();
        for &index in candidates {
            if best.is_some_and(|b| index >= b) {
                break;
            }
            let route = &self.routes[index as usize];
            if route.scheme == target.scheme && route.port == port && route.path.matches(path) {
                return Some(index);
            }
        }
        best
    }

    /// `id` from config, or `route-<index>`.
    pub fn route_name(&self, id: RouteId) -> &str {
        self.routes
            .get(id.0 as usize)
            .map_or("unknown", |r| &r.name)
    }

    /// Whether identity headers go upstream for this route (default true).
    pub fn pass_identity_headers(&self, id: RouteId) -> bool {
        self.routes
            .get(id.0 as usize)
            .is_some_and(|r| r.pass_identity_headers)
    }

    /// The route that lets a CORS preflight for `target` through
    /// unauthenticated (answered before any session is looked at): only
    /// when every reading of the path (see [`Policy::evaluate`]) is served
    /// by a route that allows preflights, so `OPTIONS /admin/../api/x`
    /// does not pass on the strength of `/api` alone.
    pub fn preflight_route(&self, target: &Target<'_>) -> Option<RouteId> {
        let mut first = None;
        for path in readings(target) {
            let index = self.find(target, path)?;
            if !self.routes[index as usize].cors_allow_preflight {
                return None;
            }
            first.get_or_insert(RouteId(index));
        }
        first
    }

    /// A route serving some reading of `target`'s path that does not admit
    /// `method` (`allowed_methods`; any method when it has none, none when
    /// the method is unknown); `None` when every reading's route admits it.
    /// `POST /ro/../rw/x` is refused by a GET-only `/ro`. `route` is the
    /// one [`Policy::evaluate`] found: with a single reading (the common
    /// case) it is that reading's, and nothing is looked up again.
    pub fn refuses_method(
        &self,
        target: &Target<'_>,
        route: RouteId,
        method: Option<&str>,
    ) -> Option<RouteId> {
        let admits = |index: u32| {
            let route = &self.routes[index as usize];
            route.methods.is_empty()
                || method.is_some_and(|m| route.methods.iter().any(|allowed| **allowed == *m))
        };
        if target.path_without_params.is_none() && target.path_with_dots.is_none() {
            return (!admits(route.0)).then_some(route);
        }
        readings(target).find_map(|path| {
            let index = self.find(target, path)?;
            (!admits(index)).then_some(RouteId(index))
        })
    }

    /// The route's `jwt_claims_headers`.
    pub fn claim_headers(&self, id: RouteId) -> Arc<ClaimHeaders> {
        self.routes
            .get(id.0 as usize)
            .map(|r| r.claim_headers.clone())
            .unwrap_or_default()
    }

    /// Is `host` (already normalised) a host some route serves, exactly or
    /// under a `*.` wildcard? Catch-all `*` routes do not count: they would
    /// turn the redirect allow-list into an open redirect.
    pub fn serves_host(&self, host: &str) -> bool {
        if self.exact.contains_key(host) {
            return true;
        }
        !host.starts_with('[')
            && host
                .bytes()
                .enumerate()
                .any(|(i, b)| b == b'.' && i > 0 && self.wildcard.contains_key(&host[i + 1..]))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Every reading of `target`'s path the policy must allow, the canonical
/// one first: with `;` parameters removed, and with dot segments kept (see
/// [`target`]).
fn readings<'t>(target: &'t Target<'_>) -> impl Iterator<Item = &'t str> {
    [
        Some(target.path.as_ref()),
        target.path_without_params.as_deref(),
        target.path_with_dots.as_deref(),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests;
