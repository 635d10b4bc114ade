//! One `policy`/`routes` entry, as written ([`RouteConfig`]) and parsed
//! ([`Route`]): host, port, path matcher and authorization rules.
//!
//! [`Route::parse`] is the only place a route's values are checked.
//! Configuration validation calls it (and places each problem at its line
//! and column), so do the demo and tests that build routes in code; what it
//! accepts, [`super::Policy::compile`] indexes without a failure case. This
//! file imports no configuration code: `config` depends on it, not the
//! reverse.

use std::collections::HashMap;
use std::fmt;

use http::HeaderName;
use regex::Regex;
use serde_json::Value;
use url::Url;

use super::authz::Authz;
use super::ppl::{self, Ppl, Tree};
use super::target::{self, Scheme};

/// One `policy`/`routes` entry as written (after type checks), before
/// [`Route::parse`].
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Position in the file (0-based), used as the route id in logs/metrics
    /// unless `id` is set.
    pub index: usize,
    /// `id` (optional, authgate's): a stable name for logs and metrics.
    pub id: Option<String>,
    /// `name` (optional, Pomerium's): what people are told the route is.
    pub name: Option<String>,
    /// `policy` (Pomerium Policy Language), OR-ed with the `allowed_*`
    /// keys; its `deny` rules win over both.
    pub policy: Option<Tree>,
    /// `from`: `https://hello.example.com`, `https://*.example.com`, with an
    /// optional port. Scheme and host as written (lower-cased).
    pub from: Url,
    /// `prefix`: matches whole path segments (`/api` matches `/api` and
    /// `/api/x`, never `/apix`).
    pub prefix: Option<String>,
    /// `path`: exact path.
    pub path: Option<String>,
    /// `regex`: matched against the whole path (anchored).
    pub regex: Option<String>,
    /// `allowed_users`: emails or subjects.
    pub allowed_users: Vec<String>,
    /// `allowed_domains`: email domains, exact (no subdomains).
    pub allowed_domains: Vec<String>,
    /// `allowed_groups`: any one of these groups.
    pub allowed_groups: Vec<String>,
    /// `allowed_idp_claims`: claim name → accepted values (strings, numbers
    /// or booleans); a list claim matches if any element is accepted.
    pub allowed_idp_claims: Vec<(String, Vec<Value>)>,
    /// `allow_public_unauthenticated_access`.
    pub allow_public_unauthenticated_access: bool,
    /// `allow_any_authenticated_user`.
    pub allow_any_authenticated_user: bool,
    /// `pass_identity_headers` (Pomerium's key). Default true.
    pub pass_identity_headers: bool,
    /// `jwt_claims_headers` for this route; `None`: the top-level list.
    pub jwt_claims_headers: Option<Vec<ClaimHeader>>,
    /// `allowed_methods` (upper-cased by parsing); empty: any method.
    pub allowed_methods: Vec<String>,
    /// `cors_allow_preflight`. Default false.
    pub cors_allow_preflight: bool,
}

impl Default for RouteConfig {
    /// A route for `http://localhost` that allows nobody: a base for
    /// struct-update syntax (`Url` has no `Default` of its own).
    fn default() -> Self {
        #[allow(clippy::expect_used)] // a constant that always parses
        let from = Url::parse("http://localhost/").expect("constant URL parses");
        RouteConfig {
            index: 0,
            id: None,
            name: None,
            policy: None,
            from,
            prefix: None,
            path: None,
            regex: None,
            allowed_users: Vec::new(),
            allowed_domains: Vec::new(),
            allowed_groups: Vec::new(),
            allowed_idp_claims: Vec::new(),
            allow_public_unauthenticated_access: false,
            allow_any_authenticated_user: false,
            pass_identity_headers: true,
            jwt_claims_headers: None,
            allowed_methods: Vec::new(),
            cors_allow_preflight: false,
        }
    }
}

/// One claim passed upstream as a header (`jwt_claims_headers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeader {
    /// The header name, lower case.
    pub header: String,
    /// The claim it carries (`email`, `groups`, any ID-token claim).
    pub claim: String,
}

/// Headers a claim must not be mapped to: the proxy sets them, or they
/// carry the client's credentials.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "host",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The key of a route a problem is about, to place it in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteField {
    /// The entry as a whole.
    Entry,
    Id,
    From,
    Prefix,
    Path,
    Regex,
    /// `allowed_users[i]`.
    AllowedUsers(usize),
    /// `allowed_domains[i]`.
    AllowedDomains(usize),
    /// `allowed_groups[i]`.
    AllowedGroups(usize),
    /// Value `value` of claim `claim` (both positions in their lists).
    AllowedIdpClaims {
        claim: usize,
        value: usize,
    },
    AllowPublicUnauthenticatedAccess,
    JwtClaimsHeaders,
    /// `allowed_methods[i]`.
    AllowedMethods(usize),
    /// A node of `policy`, by its [`Tree::place`].
    Policy(u32),
}

/// A value [`Route::parse`] or [`Routes::new`] refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError {
    /// The route's `index`.
    pub route: usize,
    pub field: RouteField,
    pub message: String,
}

impl fmt::Display for RouteField {
    /// The key path under the route: `from`, `allowed_domains[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteField::Entry => Ok(()),
            RouteField::Id => f.write_str("id"),
            RouteField::From => f.write_str("from"),
            RouteField::Prefix => f.write_str("prefix"),
            RouteField::Path => f.write_str("path"),
            RouteField::Regex => f.write_str("regex"),
            RouteField::AllowedUsers(i) => write!(f, "allowed_users[{i}]"),
            RouteField::AllowedDomains(i) => write!(f, "allowed_domains[{i}]"),
            RouteField::AllowedGroups(i) => write!(f, "allowed_groups[{i}]"),
            RouteField::AllowedIdpClaims { claim, value } => {
                write!(f, "allowed_idp_claims[{claim}][{value}]")
            }
            RouteField::AllowPublicUnauthenticatedAccess => {
                f.write_str("allow_public_unauthenticated_access")
            }
            RouteField::JwtClaimsHeaders => f.write_str("jwt_claims_headers"),
            RouteField::AllowedMethods(i) => write!(f, "allowed_methods[{i}]"),
            RouteField::Policy(_) => f.write_str("policy"),
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            RouteField::Entry => write!(f, "routes[{}]: {}", self.route, self.message),
            field => write!(f, "routes[{}].{field}: {}", self.route, self.message),
        }
    }
}

impl std::error::Error for RouteError {}

/// Which requests a route serves, by host.
#[derive(Clone, Debug)]
pub(crate) enum HostMatch {
    /// One host, normalised.
    Exact(Box<str>),
    /// `*.suffix`: any subdomain of `suffix`, at any depth, not `suffix`.
    Wildcard(Box<str>),
    /// `*`: any host.
    Any,
}

#[derive(Clone, Debug)]
pub(crate) enum PathMatch {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex),
}

impl PathMatch {
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == &**p,
            PathMatch::Prefix(prefix) => {
                path.starts_with(&**prefix)
                    && (prefix.ends_with('/')
                        || path.len() == prefix.len()
                        || path.as_bytes()[prefix.len()] == b'/')
            }
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

/// A parsed route: what [`super::Policy::compile`] indexes. Made only by
/// [`Route::parse`].
#[derive(Clone, Debug)]
pub struct Route {
    /// As written, normalised (trimmed lists, upper-case methods, `from`
    /// without a trailing dot).
    pub(super) spec: RouteConfig,
    pub(crate) name: Box<str>,
    pub(crate) scheme: Scheme,
    pub(crate) host: HostMatch,
    /// Explicit or default port.
    pub(crate) port: u16,
    pub(crate) path: PathMatch,
    pub(crate) authz: Authz,
    pub(crate) ppl: Option<Ppl>,
    /// What people are told the route is: `name`, else `id`, else `from`
    /// and its path matcher.
    pub(crate) label: Box<str>,
    pub(crate) claim_headers: Vec<(String, HeaderName)>,
    pub(crate) methods: Box<[Box<str>]>,
}

impl Route {
    /// Checks every value of `spec`, collecting all problems.
    pub fn parse(mut spec: RouteConfig) -> Result<Route, Vec<RouteError>> {
        let mut errors = Vec::new();
        let mut error = |field: RouteField, message: String| {
            errors.push(RouteError {
                route: spec.index,
                field,
                message,
            });
        };
        let from = parse_from(&mut spec.from).map_err(|e| error(RouteField::From, e));
        if spec.id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            error(RouteField::Id, "must not be empty".to_owned());
        }
        let ppl = spec.policy.as_ref().and_then(|tree| {
            ppl::parse(tree)
                .map_err(|problems| {
                    for p in problems {
                        error(RouteField::Policy(p.place), p.message);
                    }
                })
                .ok()
        });
        let path = parse_path(&spec, &mut error);
        trim_all(
            &mut spec.allowed_users,
            RouteField::AllowedUsers,
            &mut error,
        );
        trim_all(
            &mut spec.allowed_groups,
            RouteField::AllowedGroups,
            &mut error,
        );
        for (i, domain) in spec.allowed_domains.iter_mut().enumerate() {
            let lower = domain.trim().to_ascii_lowercase();
            if lower.contains('@') {
                error(
                    RouteField::AllowedDomains(i),
                    format!(
                        "`{domain}` is an address; `allowed_domains` takes domains like `example.com`"
                    ),
                );
            } else if !looks_like_domain(&lower) {
                error(
                    RouteField::AllowedDomains(i),
                    format!("`{domain}` is not a domain name"),
                );
            }
            *domain = lower;
        }
        for (c, (_, values)) in spec.allowed_idp_claims.iter().enumerate() {
            for (v, value) in values.iter().enumerate() {
                if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    error(
                        RouteField::AllowedIdpClaims { claim: c, value: v },
                        "expected a string, number or boolean".to_owned(),
                    );
                }
            }
        }
        let has_allowed = !spec.allowed_users.is_empty()
            || !spec.allowed_groups.is_empty()
            || !spec.allowed_domains.is_empty()
            || !spec.allowed_idp_claims.is_empty();
        if spec.allow_public_unauthenticated_access
            && (has_allowed || spec.allow_any_authenticated_user)
        {
            error(
                RouteField::AllowPublicUnauthenticatedAccess,
                "a public route cannot also have `allowed_*` or `allow_any_authenticated_user` rules \
                 (Pomerium refuses this too): drop one"
                    .to_owned(),
            );
        }
        let claim_headers = match claim_header_names(spec.jwt_claims_headers.as_deref()) {
            Ok(names) => names,
            Err(problems) => {
                for message in problems {
                    error(RouteField::JwtClaimsHeaders, message);
                }
                Vec::new()
            }
        };
        let mut methods: Vec<String> = Vec::with_capacity(spec.allowed_methods.len());
        for (i, method) in spec.allowed_methods.iter().enumerate() {
            let upper = method.trim().to_ascii_uppercase();
            if upper.is_empty() || !upper.bytes().all(is_token_byte) {
                error(
                    RouteField::AllowedMethods(i),
                    format!("`{method}` is not an HTTP method"),
                );
            } else if !methods.contains(&upper) {
                methods.push(upper);
            }
        }
        spec.allowed_methods = methods;
        match (from, path) {
            (Ok((scheme, host, port)), Some(path)) if errors.is_empty() => Ok(Route {
                label: label(&spec).into(),
                ppl,
                name: match &spec.id {
                    Some(id) => id.as_str().into(),
                    None => format!("route-{}", spec.index).into(),
                },
                scheme,
                host,
                port,
                path,
                authz: Authz::compile(
                    spec.allow_any_authenticated_user,
                    &spec.allowed_users,
                    &spec.allowed_domains,
                    &spec.allowed_groups,
                    &spec.allowed_idp_claims,
                ),
                claim_headers,
                methods: spec
                    .allowed_methods
                    .iter()
                    .map(|m| m.as_str().into())
                    .collect(),
                spec,
            }),
            _ => Err(errors),
        }
    }

    /// The route as written (normalised).
    pub fn spec(&self) -> &RouteConfig {
        &self.spec
    }

    /// `id`, or `route-<index>`: its name in logs and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `name`, else `id`, else `from` with its path matcher.
fn label(spec: &RouteConfig) -> String {
    if let Some(name) = spec.name.as_deref().or(spec.id.as_deref()) {
        return name.to_owned();
    }
    let from = spec.from.as_str().trim_end_matches('/');
    match (&spec.prefix, &spec.path, &spec.regex) {
        (Some(p), _, _) => format!("{from} (prefix {p})"),
        (_, Some(p), _) => format!("{from} (path {p})"),
        (_, _, Some(r)) => format!("{from} (regex {r})"),
        _ => from.to_owned(),
    }
}

/// Parsed routes in file order, their names unique. Made by
/// [`Routes::new`] (or [`Routes::parse`]).
#[derive(Clone, Debug, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// Refuses a name used twice (an `id`, or the `route-<index>` of a route
    /// without one): logs and metrics name routes by it. Each clash is
    /// placed on the route whose `id` makes it.
    pub fn new(routes: Vec<Route>) -> Result<Routes, Vec<RouteError>> {
        if u32::try_from(routes.len()).is_err() {
            return Err(vec![RouteError {
                route: routes.len(),
                field: RouteField::Entry,
                message: format!("too many routes (at most {})", u32::MAX),
            }]);
        }
        let mut errors = Vec::new();
        let mut seen: HashMap<&str, &Route> = HashMap::with_capacity(routes.len());
        for route in &routes {
            let Some(&earlier) = seen.get(route.name()) else {
                seen.insert(route.name(), route);
                continue;
            };
            let (at, other) = if route.spec.id.is_some() {
                (route, earlier)
            } else {
                (earlier, route)
            };
            let message = if other.spec.id.is_some() {
                format!(
                    "route id `{}` is already used by route {}",
                    route.name(),
                    other.spec.index
                )
            } else {
                format!(
                    "route id `{}` is the name of route {}, which has no `id`",
                    route.name(),
                    other.spec.index
                )
            };
            errors.push(RouteError {
                route: at.spec.index,
                field: RouteField::Id,
                message,
            });
        }
        drop(seen);
        if errors.is_empty() {
            Ok(Routes(routes))
        } else {
            Err(errors)
        }
    }

    /// Parses every route (programmatic configurations: demo, tests).
    pub fn parse(specs: Vec<RouteConfig>) -> Result<Routes, Vec<RouteError>> {
        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(specs.len());
        for spec in specs {
            match Route::parse(spec) {
                Ok(route) => routes.push(route),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Routes::new(routes)
    }
}

impl std::ops::Deref for Routes {
    type Target = [Route];
    fn deref(&self) -> &[Route] {
        &self.0
    }
}

impl IntoIterator for Routes {
    type Item = Route;
    type IntoIter = std::vec::IntoIter<Route>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// `from`: scheme, host (possibly `*.` wildcard) and port only. Drops a
/// trailing dot from the host.
fn parse_from(from: &mut Url) -> Result<(Scheme, HostMatch, u16), String> {
    let scheme = match from.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(format!("`{from}` must start with http:// or https://")),
    };
    let Some(host) = from.host_str().map(str::to_owned) else {
        return Err(format!("`{from}` has no host"));
    };
    if !matches!(from.path(), "" | "/") || from.query().is_some() || from.fragment().is_some() {
        return Err(format!(
            "`{from}` must be only scheme, host and port; match paths with `prefix`, `path` or `regex`"
        ));
    }
    if !from.username().is_empty() || from.password().is_some() {
        return Err(format!("`{from}` must not contain user or password"));
    }
    let bare = host.trim_end_matches('.');
    let name = bare.strip_prefix("*.").unwrap_or(bare);
    // `*` alone is the catch-all host.
    if bare != "*" && name.contains('*') {
        return Err(format!(
            "`{from}`: a wildcard may only be the whole first label, as in `*.example.com`"
        ));
    }
    if name.is_empty() {
        return Err(format!("`{from}` has no host"));
    }
    // The host normalised as requests' hosts are, so the two compare byte
    // for byte.
    let matcher = if bare == "*" {
        Some(HostMatch::Any)
    } else if let Some(suffix) = bare.strip_prefix("*.") {
        // An IPv6 literal has no subdomains.
        target::normalize_host(suffix)
            .ok()
            .filter(|s| !s.starts_with('['))
            .map(|s| HostMatch::Wildcard(s.into()))
    } else {
        target::normalize_host(bare)
            .ok()
            .map(|h| HostMatch::Exact(h.into()))
    };
    let Some(matcher) = matcher else {
        return Err(format!(
            "`{from}`: the host must be a DNS name (letters, digits, `-`), an IP literal or a `*.` wildcard"
        ));
    };
    if bare != host {
        let display = from.to_string();
        from.set_host(Some(bare))
            .map_err(|e| format!("`{display}`: {e}"))?;
    }
    let port = from
        .port_or_known_default()
        .unwrap_or(scheme.default_port());
    Ok((scheme, matcher, port))
}

/// The route's path matcher: at most one of `prefix`, `path` and `regex`;
/// prefixes and paths canonicalised as request paths are (`/my%20dir` is
/// `/my dir`), regexes anchored.
fn parse_path(spec: &RouteConfig, error: &mut impl FnMut(RouteField, String)) -> Option<PathMatch> {
    let given: Vec<RouteField> = [
        (spec.prefix.is_some(), RouteField::Prefix),
        (spec.path.is_some(), RouteField::Path),
        (spec.regex.is_some(), RouteField::Regex),
    ]
    .into_iter()
    .filter_map(|(set, field)| set.then_some(field))
    .collect();
    if let Some(&second) = given.get(1) {
        error(
            second,
            "`prefix`, `path` and `regex` exclude each other; use one (or split the route)"
                .to_owned(),
        );
        return None;
    }
    let mut canonical = |raw: &str, key: &str, field: RouteField| {
        if !raw.starts_with('/') {
            error(field, format!("`{key}` must start with `/`, found `{raw}`"));
            return None;
        }
        match target::canonical_path(raw) {
            Ok(p) => Some(Box::<str>::from(p)),
            Err(reason) => {
                error(field, format!("`{key}` `{raw}`: {reason}"));
                None
            }
        }
    };
    match (&spec.prefix, &spec.path, &spec.regex) {
        (Some(p), _, _) => canonical(p, "prefix", RouteField::Prefix).map(PathMatch::Prefix),
        (_, Some(p), _) => canonical(p, "path", RouteField::Path).map(PathMatch::Exact),
        (_, _, Some(re)) => match Regex::new(&format!("^(?:{re})$")) {
            Ok(re) => Some(PathMatch::Regex(re)),
            Err(e) => {
                // The pattern's own error reads better than the anchored one's.
                let reason = Regex::new(re).err().unwrap_or(e);
                error(
                    RouteField::Regex,
                    format!("regex `{re}` does not compile: {}", regex_reason(&reason)),
                );
                None
            }
        },
        (None, None, None) => Some(PathMatch::Any),
    }
}

/// Trims each entry, refusing empty ones.
fn trim_all(
    list: &mut [String],
    field: fn(usize) -> RouteField,
    error: &mut impl FnMut(RouteField, String),
) {
    for (i, item) in list.iter_mut().enumerate() {
        let trimmed = item.trim();
        if trimmed.is_empty() {
            error(field(i), "must not be empty".to_owned());
        } else if trimmed.len() != item.len() {
            *item = trimmed.to_owned();
        }
    }
}

/// `jwt_claims_headers` (a route's, or the top-level list): each header a
/// valid name that neither the proxy nor authgate sets, none twice.
/// Returns (claim, header) pairs, or a message per problem.
pub(crate) fn claim_header_names(
    list: Option<&[ClaimHeader]>,
) -> Result<Vec<(String, HeaderName)>, Vec<String>> {
    let mut out: Vec<(String, HeaderName)> = Vec::new();
    let mut problems = Vec::new();
    for ClaimHeader { header, claim } in list.unwrap_or_default() {
        match HeaderName::from_bytes(header.as_bytes()) {
            Err(_) => problems.push(format!("`{header}` is not a header name")),
            Ok(_)
                if RESERVED_HEADERS.contains(&header.as_str())
                    || header.replace('_', "-").starts_with("x-auth-request-") =>
            {
                problems.push(format!(
                    "`{header}` is reserved: the proxy or authgate sets it itself"
                ));
            }
            Ok(name) if out.iter().any(|(_, n)| *n == name) => {
                problems.push(format!("header `{header}` is named twice"));
            }
            Ok(name) => out.push((claim.clone(), name)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// RFC 9110 `tchar`: what a method or a cookie name may be made of.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A DNS name: dot-separated labels of letters, digits and inner `-`.
pub(crate) fn looks_like_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The one-line reason of a regex error (its `Display` draws the pattern).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        )
}
