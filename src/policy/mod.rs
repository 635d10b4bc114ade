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
pub mod check;
pub mod conditions;
pub mod ppl;
pub mod route;
pub mod target;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;

use crate::identity::Identity;

pub use admin::AdminAccess;
use authz::Authz;
pub use conditions::ProxyConditions;
use ppl::{Explain, Input, NoTrace, Outcome, Ppl, Trace};
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

/// A compiled route's position in the configuration (0-based); one past the
/// last configured route is [`PROXY_ROUTE_NAME`], the route of a request on
/// a host no route serves that the proxy's own conditions decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteId(pub u32);

/// The name (logs, metrics) of the route a proxy's conditions stand for.
pub const PROXY_ROUTE_NAME: &str = "proxy-conditions";

/// What a policy may look at besides the URL: who asks, and how.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The signed-in user; `None`: nobody is.
    pub identity: Option<&'a Identity>,
    /// The original request's method, if the front end knows it.
    pub method: Option<&'a str>,
    /// The client's address as the proxy reports it.
    pub source_ip: Option<IpAddr>,
    /// A CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`).
    pub preflight: bool,
    /// Seconds since the Unix epoch, for the time criteria.
    pub now: i64,
    /// The proxy's own conditions (see [`conditions`]).
    pub conditions: &'a ProxyConditions<'a>,
}

impl<'a> Facts<'a> {
    /// Only `identity` known: a GET from nowhere in particular, at the
    /// Unix epoch (tests, `explain` without flags).
    pub fn who(identity: Option<&'a Identity>) -> Facts<'a> {
        Facts {
            identity,
            method: Some("GET"),
            source_ip: None,
            preflight: false,
            now: 0,
            conditions: &ProxyConditions::NONE,
        }
    }
}

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed in and allowed by the route's rules.
    Allow { route: RouteId },
    /// The route allows unauthenticated access; identity is irrelevant.
    Public { route: RouteId },
    /// The route needs a signed-in user and there is none.
    NeedsLogin { route: RouteId },
    /// Refused: no route serves the request, the user is not allowed, or
    /// the route does not take the method.
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
    /// The route exists but its rules do not admit this request.
    NotAllowed,
    /// The route's `allowed_methods` do not include the request's method
    /// (refused whoever asks: a 403, not a sign-in).
    MethodNotAllowed,
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
    label: Box<str>,
    scheme: Scheme,
    /// Explicit or default port.
    port: u16,
    path: PathMatch,
    public: bool,
    authz: Authz,
    ppl: Option<Box<Ppl>>,
    pass_identity_headers: bool,
    claim_headers: Arc<ClaimHeaders>,
    /// Upper case; empty: any method.
    methods: Box<[Box<str>]>,
    cors_allow_preflight: bool,
}

impl Route {
    /// The route a proxy's conditions stand for: in no host index, any
    /// method, identity headers passed.
    fn proxy() -> Route {
        Route {
            name: PROXY_ROUTE_NAME.into(),
            label: "the proxy's conditions".into(),
            scheme: Scheme::Https,
            port: 0,
            path: PathMatch::Any,
            public: false,
            authz: Authz::default(),
            ppl: None,
            pass_identity_headers: true,
            claim_headers: Arc::default(),
            methods: Box::default(),
            cors_allow_preflight: false,
        }
    }
}

/// Host → route indices. foldhash rather than SipHash: the keys are the
/// configured hosts, fixed at compile time, so a client choosing the
/// looked-up host cannot degrade the table; every decision hashes its host.
type HostIndex = HashMap<Box<str>, Vec<u32>, foldhash::fast::RandomState>;

/// The compiled routes and their host index. Immutable; swap the whole
/// policy on reload.
#[derive(Debug)]
pub struct Policy {
    routes: Vec<Route>,
    /// Normalised host → route indices, ascending.
    exact: HostIndex,
    /// Wildcard suffix (`example.com` for `*.example.com`) → route indices.
    wildcard: HostIndex,
    /// `from: https://*` routes.
    any_host: Vec<u32>,
}

impl Default for Policy {
    /// No routes: every request is refused.
    fn default() -> Policy {
        Policy::compile(Routes::default())
    }
}

impl Policy {
    /// Index the parsed routes (file order is their order). Cannot fail:
    /// [`route::Route::parse`] checked every value and
    /// [`Routes`] the names and the count.
    pub fn compile(routes: Routes) -> Policy {
        let mut policy = Policy {
            routes: Vec::new(),
            exact: HostIndex::default(),
            wildcard: HostIndex::default(),
            any_host: Vec::new(),
        };
        for (position, parsed) in routes.into_iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)] // `Routes` holds at most u32::MAX
            let index = position as u32;
            let route::Route {
                spec,
                name,
                label,
                scheme,
                host,
                port,
                path,
                authz,
                ppl,
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
                label,
                scheme,
                port,
                path,
                public: spec.allow_public_unauthenticated_access,
                authz,
                ppl: ppl.map(Box::new),
                pass_identity_headers: spec.pass_identity_headers,
                claim_headers: Arc::new(ClaimHeaders::compile(claim_headers)),
                methods,
                cors_allow_preflight: spec.cors_allow_preflight,
            });
        }
        policy.routes.push(Route::proxy());
        policy
    }

    /// First matching route wins; no matching route → `Deny { NoRoute }`
    /// (deny by default), whether signed in or not. A path with `;`
    /// parameters is evaluated as written and without them, one with dot
    /// segments also with its dots kept (see [`target`]); the strictest
    /// verdict stands.
    pub fn evaluate(&self, target: &Target<'_>, facts: &Facts<'_>) -> Verdict {
        let mut verdict = self.evaluate_path(target, &target.path, facts);
        for path in readings(target).skip(1) {
            let other = self.evaluate_path(target, path, facts);
            if strictness(&other) > strictness(&verdict) {
                verdict = other;
            }
        }
        verdict
    }

    fn evaluate_path(&self, target: &Target<'_>, path: &str, facts: &Facts<'_>) -> Verdict {
        let Some(index) = self.find(target, path) else {
            // A host no route serves: the proxy's conditions, when it set
            // some, are the whole policy.
            if facts.conditions.is_empty() {
                return Verdict::Deny {
                    route: None,
                    reason: DenyReason::NoRoute,
                };
            }
            return conditions_verdict(self.proxy_route(), facts);
        };
        let id = RouteId(index);
        let route = &self.routes[index as usize];
        if !route.admits_method(facts.method) {
            return Verdict::Deny {
                route: Some(id),
                reason: DenyReason::MethodNotAllowed,
            };
        }
        let (allow, deny) = route.outcomes(&facts.input(path), &mut NoTrace);
        let verdict = if allow.needs_login || deny.needs_login {
            Verdict::NeedsLogin { route: id }
        } else if allow.value && !deny.value {
            match facts.identity {
                Some(_) if !route.public => Verdict::Allow { route: id },
                _ => Verdict::Public { route: id },
            }
        } else {
            Verdict::Deny {
                route: Some(id),
                reason: DenyReason::NotAllowed,
            }
        };
        // The route and the proxy's conditions must both allow.
        match verdict {
            Verdict::Allow { .. } | Verdict::Public { .. } if !facts.conditions.is_empty() => {
                conditions_verdict(id, facts)
            }
            verdict => verdict,
        }
    }

    /// The id of the route standing for the proxy's conditions.
    fn proxy_route(&self) -> RouteId {
        #[allow(clippy::cast_possible_truncation)] // `Routes` holds fewer than u32::MAX
        RouteId(self.routes.len() as u32 - 1)
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

    /// What people are told the route is: its `name`, else its `id`, else
    /// its `from` and path matcher.
    pub fn route_label(&self, id: RouteId) -> &str {
        self.routes
            .get(id.0 as usize)
            .map_or("unknown", |r| &r.label)
    }

    /// Whether some route asks for a group: then a sign-in without a
    /// `groups` claim is worth a warning.
    pub fn asks_for_groups(&self) -> bool {
        self.routes.iter().any(|r| {
            r.authz.asks_for_groups() || r.ppl.as_ref().is_some_and(|p| p.asks_for_groups())
        })
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

    /// The route that serves `target` and what its rules make of `facts`,
    /// criterion by criterion (`authgate explain`, `tests:`). Allocates:
    /// never on the decision path.
    pub fn explain(&self, target: &Target<'_>, facts: &Facts<'_>) -> Explanation {
        let verdict = self.evaluate(target, facts);
        let mut explain = Explain::with_lines();
        let unmet = self.trace(target, facts, verdict, &mut explain);
        Explanation {
            route: verdict.route().map(|id| self.route_label(id).to_owned()),
            verdict,
            unmet,
            lines: explain.lines.unwrap_or_default(),
        }
    }

    /// Why `verdict` (what [`Policy::evaluate`] said of `target` and
    /// `facts`) refuses, in words, for the 403 page and the `denied` log
    /// line; `None` when it does not refuse. Only refusals pay for it.
    pub fn refusal(
        &self,
        target: &Target<'_>,
        facts: &Facts<'_>,
        verdict: Verdict,
    ) -> Option<String> {
        let unmet = self.trace(target, facts, verdict, &mut Explain::default());
        (!unmet.is_empty()).then(|| unmet.join("; or "))
    }

    /// Runs `verdict`'s route again under `explain`; the refusal's reasons.
    fn trace(
        &self,
        target: &Target<'_>,
        facts: &Facts<'_>,
        verdict: Verdict,
        explain: &mut Explain,
    ) -> Vec<String> {
        let Some(r) = verdict
            .route()
            .and_then(|id| self.routes.get(id.0 as usize))
        else {
            return Vec::new();
        };
        if let Verdict::Deny {
            reason: DenyReason::MethodNotAllowed,
            ..
        } = verdict
        {
            return vec![format!(
                "does not take {} requests (allowed_methods: {})",
                facts.method.unwrap_or("these"),
                r.methods.join(", ")
            )];
        }
        if r.public {
            explain.line(|| "  allow_public_unauthenticated_access: yes".to_owned());
        }
        if r.authz.has_rules() {
            let admitted = facts.identity.map(|i| r.authz.allows(i));
            explain.line(|| {
                format!(
                    "  allowed_* keys: {}",
                    match admitted {
                        None => "needs sign-in",
                        Some(true) => "yes",
                        Some(false) => "no",
                    }
                )
            });
        }
        let (allow, deny) = r.outcomes(&facts.input(&target.path), explain);
        if allow.value || deny.value {
            // Some allow matched, or a deny refuses anyway: the allows that
            // did not match are not why.
            explain.unmet_allow.clear();
        }
        if let Some(identity) = facts.identity {
            if !allow.value && r.authz.has_rules() && !r.authz.allows(identity) {
                explain.unmet_allow.insert(0, r.authz.unmet(identity));
            }
            if let Some(unmet) = facts.conditions.unmet(identity) {
                explain.line(|| format!("  the proxy's conditions: {unmet}"));
                explain.unmet_deny.push(unmet);
            }
        }
        if !matches!(verdict, Verdict::Deny { .. }) {
            return Vec::new();
        }
        let mut unmet = std::mem::take(&mut explain.unmet_deny);
        unmet.append(&mut explain.unmet_allow);
        unmet
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

    /// The configured routes (not counting the proxy's).
    pub fn len(&self) -> usize {
        self.routes.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route's name, by id, the proxy's last.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| &*r.name)
    }
}

/// What [`Policy::explain`] found.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The label of the route that decided (see [`Policy::route_label`]).
    pub route: Option<String>,
    pub verdict: Verdict,
    /// Each rule's criteria and their results, one per line.
    pub lines: Vec<String>,
    /// Why the request was refused, in words ("needs group devops; you
    /// are in: developers"); empty when it was not.
    pub unmet: Vec<String>,
}

impl Explanation {
    /// The refusal in one sentence, if there was one (as
    /// [`Policy::refusal`] gives it).
    pub fn reason(&self) -> Option<String> {
        (!self.unmet.is_empty()).then(|| self.unmet.join("; or "))
    }
}

impl Facts<'_> {
    fn input<'p>(&'p self, path: &'p str) -> Input<'p> {
        Input {
            identity: self.identity,
            method: self.method,
            path,
            source_ip: self.source_ip,
            preflight: self.preflight,
            now: self.now,
        }
    }
}

impl Route {
    /// `allowed_methods` admits `method` (any when empty; none when the
    /// method is unknown).
    fn admits_method(&self, method: Option<&str>) -> bool {
        self.methods.is_empty()
            || method.is_some_and(|m| self.methods.iter().any(|allowed| **allowed == *m))
    }

    /// The route's `allow` and `deny` results: public access and the
    /// `allowed_*` keys are `allow` rules beside the policy's, as in
    /// Pomerium. A route with neither keys nor policy asks for a sign-in,
    /// then admits nobody.
    fn outcomes(&self, input: &Input<'_>, trace: &mut impl Trace) -> (Outcome, Outcome) {
        let public = self.public.then_some(Outcome {
            value: true,
            needs_login: false,
        });
        let keys = (self.authz.has_rules() || (self.ppl.is_none() && !self.public)).then(|| {
            match input.identity {
                None => Outcome {
                    value: false,
                    needs_login: true,
                },
                Some(identity) => Outcome {
                    value: self.authz.allows(identity),
                    needs_login: false,
                },
            }
        });
        let (allow, deny) = match &self.ppl {
            Some(ppl) => ppl.evaluate(input, trace),
            None => (Outcome::default(), Outcome::default()),
        };
        let allow = ppl::merge_or(
            [public, keys, self.ppl.as_ref().map(|_| allow)]
                .into_iter()
                .flatten(),
        );
        (allow, deny)
    }
}

/// The proxy's conditions alone, on `route`: they need a signed-in user.
fn conditions_verdict(route: RouteId, facts: &Facts<'_>) -> Verdict {
    match facts.identity {
        None => Verdict::NeedsLogin { route },
        Some(identity) if facts.conditions.admits(identity) => Verdict::Allow { route },
        Some(_) => Verdict::Deny {
            route: Some(route),
            reason: DenyReason::NotAllowed,
        },
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
