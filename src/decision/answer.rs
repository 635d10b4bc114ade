//! One answer for every front end: built once from a [`Decision`] and how
//! the proxy asked ([`Mode`]), then only serialised by the front ends
//! (HTTP status and headers, Envoy's `CheckResponse`, HAProxy variables).
//!
//! The status table — who gets 200, 302, 303, 401, 403 or 503 — is
//! [`Answer::new`]'s one `match`, unit-tested below.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

use super::client::Client;
use super::verdict::Decision;
use crate::identity::{HEADER_JWT, IDENTITY_HEADER_COUNT, identity_headers_to_remove};

/// How the proxy asked, which decides how a refusal is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// nginx `auth_request`: the proxy turns our status into its own answer
    /// (`error_page 401` redirects to `Location`); never a 3xx (nginx
    /// would answer 500), never a body.
    Subrequest,
    /// Envoy, forward-auth, HAProxy: our answer reaches the client as it is.
    /// `safe_method` (GET/HEAD) chooses 302 over 303 for the sign-in
    /// redirect, so a browser that POSTed is sent on with a GET.
    Direct { client: Client, safe_method: bool },
}

/// The gRPC status of an answer (`google.rpc.Code`): Envoy only checks
/// that a denial is not `Ok`; the code helps whoever reads its logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum RpcCode {
    Ok = 0,
    PermissionDenied = 7,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// What every front end answers.
#[derive(Debug)]
pub struct Answer {
    /// 200 lets the request through; anything else is the client's answer
    /// (or, for nginx, what its `error_page` turns into one).
    pub status: StatusCode,
    pub rpc_code: RpcCode,
    /// On allow: the identity headers to set on the upstream request,
    /// overwriting any the client sent.
    pub upstream: HeaderMap,
    /// On allow, for [`Mode::Direct`]: request headers the proxy must strip
    /// (client-sent identity headers in every spelling) — see
    /// [`identity_headers_to_remove`]. nginx's configuration strips them
    /// itself.
    pub remove: Removals,
    /// Headers for the client's response: the re-issued session cookie on
    /// allow; `Location`, `WWW-Authenticate`, `Cache-Control` on a refusal.
    pub client: HeaderMap,
    /// The body of a refusal the client sees ([`Mode::Direct`] only).
    pub body: &'static str,
}

impl Answer {
    /// The answer to `decision` for a proxy asking in `mode`.
    pub fn new(decision: &Decision, mode: Mode) -> Answer {
        let direct = matches!(mode, Mode::Direct { .. });
        let refusal = |status, rpc_code, body| Answer {
            status,
            rpc_code,
            upstream: HeaderMap::new(),
            remove: Removals::default(),
            client: no_store(1),
            body: if direct { body } else { "" },
        };
        match decision {
            Decision::Allow { set_cookie, .. } => {
                let upstream = identity_headers(decision);
                let remove = if direct {
                    headers_to_remove(decision, &upstream)
                } else {
                    Removals::default()
                };
                let mut client = HeaderMap::new();
                if let Some(cookie) = set_cookie {
                    client.insert(header::SET_COOKIE, cookie.clone());
                }
                Answer::allow(upstream, remove, client)
            }
            Decision::SignIn {
                sign_in_url,
                invalid_token,
                ..
            } => {
                let location = HeaderValue::from_str(sign_in_url).ok();
                let redirect = match mode {
                    // A refused token is a program's: never a login page.
                    Mode::Direct {
                        client: Client::Browser,
                        safe_method,
                    } if !invalid_token && location.is_some() => Some(if safe_method {
                        StatusCode::FOUND
                    } else {
                        StatusCode::SEE_OTHER
                    }),
                    _ => None,
                };
                let status = redirect.unwrap_or(StatusCode::UNAUTHORIZED);
                let mut answer = refusal(status, RpcCode::Unauthenticated, "sign-in required\n");
                if redirect.is_some() {
                    answer.body = "";
                } else {
                    answer
                        .client
                        .insert(header::WWW_AUTHENTICATE, www_authenticate(*invalid_token));
                }
                // nginx's `error_page 401` sends the browser to `Location`.
                if let Some(location) = location
                    && (redirect.is_some() || !direct)
                {
                    answer.client.insert(header::LOCATION, location);
                }
                answer
            }
            Decision::Deny { .. } => refusal(
                StatusCode::FORBIDDEN,
                RpcCode::PermissionDenied,
                "forbidden\n",
            ),
            // A fault, not a decision: fail closed, and say so.
            Decision::Unavailable => refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                RpcCode::Unavailable,
                "authorization temporarily unavailable\n",
            ),
        }
    }

    /// An allow with these headers (the front ends' tests build one to
    /// check how each translates it).
    pub(crate) fn allow(upstream: HeaderMap, remove: Removals, client: HeaderMap) -> Answer {
        Answer {
            status: StatusCode::OK,
            rpc_code: RpcCode::Ok,
            upstream,
            remove,
            client,
            body: "",
        }
    }

    /// Does this answer let the request through?
    pub fn allows(&self) -> bool {
        self.status == StatusCode::OK
    }
}

/// `Cache-Control: no-store`, with room for `more` headers.
fn no_store(more: usize) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(1 + more);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
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

/// The identity headers to pass upstream: empty unless the decision is an
/// allow with a session on a route that passes identity headers: the
/// session's rendered values, the assertion and the route's claim headers,
/// in a map sized for all of them. A value that cannot be a header
/// (control characters) is left out rather than passed mangled.
fn identity_headers(decision: &Decision) -> HeaderMap {
    let Decision::Allow {
        session: Some(session),
        pass_identity_headers: true,
        claim_headers,
        assertion,
        ..
    } = decision
    else {
        return HeaderMap::new();
    };
    let identity = &session.identity;
    let mut headers = HeaderMap::with_capacity(IDENTITY_HEADER_COUNT + claim_headers.claims.len());
    session.headers.insert_into(identity, &mut headers);
    if let Some(assertion) = assertion {
        headers.insert(HEADER_JWT, assertion.clone());
    }
    for (claim, name) in &claim_headers.claims {
        let text = match identity.claims.get(claim) {
            Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(Value::Array(items)) => Cow::Owned(crate::identity::header_list(
                items.iter().filter_map(scalar_text),
            )),
            Some(other) => match scalar_text(other) {
                Some(text) => Cow::Owned(text),
                None => continue,
            },
            None => continue,
        };
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(name.clone(), value);
        }
    }
    headers
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

/// The request headers a proxy must strip on allow, given the headers `set`
/// by this answer: [`identity_headers_to_remove`] plus the route's
/// `jwt_claims_headers` names (every spelling) that are not set.
fn headers_to_remove(decision: &Decision, set: &HeaderMap) -> Removals {
    let claims = match decision {
        Decision::Allow { claim_headers, .. } => claim_headers
            .spellings
            .iter()
            .filter(|name| !set.contains_key(name.as_str()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    Removals {
        identity: identity_headers_to_remove(set),
        claims,
    }
}

/// Request headers a proxy must strip on allow. The identity spellings are
/// one of a few lists built once ([`identity_headers_to_remove`]), so an
/// allow copies no names.
#[derive(Debug, Default)]
pub struct Removals {
    /// Identity header spellings (not those this answer sets).
    pub identity: &'static [&'static str],
    /// The route's claim header spellings this answer does not set.
    pub claims: Vec<String>,
}

impl Removals {
    /// Every name, the identity spellings first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.identity
            .iter()
            .copied()
            .chain(self.claims.iter().map(String::as_str))
    }

    pub fn is_empty(&self) -> bool {
        self.identity.is_empty() && self.claims.is_empty()
    }

    /// Every name in one string, `separator` between them (a header's
    /// list), built without an intermediate list.
    pub fn join(&self, separator: &str) -> String {
        let mut out = String::new();
        for (i, name) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(separator);
            }
            out.push_str(name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::decision::verdict::Refusal;
    use crate::policy::RouteId;

    fn sign_in(invalid_token: bool) -> Decision {
        Decision::SignIn {
            route: RouteId(0),
            sign_in_url: "https://auth.example.test/oauth2/start?rd=x".into(),
            invalid_token,
        }
    }

    fn allow() -> Decision {
        Decision::Allow {
            route: RouteId(0),
            session: None,
            pass_identity_headers: true,
            claim_headers: Default::default(),
            assertion: None,
            set_cookie: Some(HeaderValue::from_static("_authgate=new")),
        }
    }

    /// The status table: every decision in every mode, with the headers
    /// that go with it. This is the one place the mapping lives.
    #[test]
    fn status_table() {
        let deny = Decision::Deny {
            route: None,
            session: None,
            reason: Refusal::NoRoute,
            unmet: None,
        };
        let browser = |safe_method| Mode::Direct {
            client: Client::Browser,
            safe_method,
        };
        let program = Mode::Direct {
            client: Client::Program,
            safe_method: true,
        };
        // (decision, mode, status, gRPC code, Location, WWW-Authenticate, body)
        type Row = (
            &'static str,
            Decision,
            Mode,
            u16,
            RpcCode,
            bool,
            bool,
            &'static str,
        );
        let table: [Row; 14] = [
            (
                "allow, nginx",
                allow(),
                Mode::Subrequest,
                200,
                RpcCode::Ok,
                false,
                false,
                "",
            ),
            (
                "allow, browser",
                allow(),
                browser(true),
                200,
                RpcCode::Ok,
                false,
                false,
                "",
            ),
            (
                "allow, program",
                allow(),
                program,
                200,
                RpcCode::Ok,
                false,
                false,
                "",
            ),
            (
                "sign in, nginx",
                sign_in(false),
                Mode::Subrequest,
                401,
                RpcCode::Unauthenticated,
                true,
                true,
                "",
            ),
            (
                "sign in, browser GET",
                sign_in(false),
                browser(true),
                302,
                RpcCode::Unauthenticated,
                true,
                false,
                "",
            ),
            (
                "sign in, browser POST",
                sign_in(false),
                browser(false),
                303,
                RpcCode::Unauthenticated,
                true,
                false,
                "",
            ),
            (
                "sign in, program",
                sign_in(false),
                program,
                401,
                RpcCode::Unauthenticated,
                false,
                true,
                "sign-in required\n",
            ),
            (
                "bad token, nginx",
                sign_in(true),
                Mode::Subrequest,
                401,
                RpcCode::Unauthenticated,
                true,
                true,
                "",
            ),
            (
                "bad token, browser",
                sign_in(true),
                browser(true),
                401,
                RpcCode::Unauthenticated,
                false,
                true,
                "sign-in required\n",
            ),
            (
                "deny, nginx",
                deny.clone(),
                Mode::Subrequest,
                403,
                RpcCode::PermissionDenied,
                false,
                false,
                "",
            ),
            (
                "deny, browser",
                deny.clone(),
                browser(true),
                403,
                RpcCode::PermissionDenied,
                false,
                false,
                "forbidden\n",
            ),
            (
                "deny, program",
                deny,
                program,
                403,
                RpcCode::PermissionDenied,
                false,
                false,
                "forbidden\n",
            ),
            (
                "store down, nginx",
                Decision::Unavailable,
                Mode::Subrequest,
                503,
                RpcCode::Unavailable,
                false,
                false,
                "",
            ),
            (
                "store down, program",
                Decision::Unavailable,
                program,
                503,
                RpcCode::Unavailable,
                false,
                false,
                "authorization temporarily unavailable\n",
            ),
        ];
        for (name, decision, mode, status, rpc, location, challenge, body) in table {
            let answer = Answer::new(&decision, mode);
            assert_eq!(answer.status.as_u16(), status, "{name}");
            assert_eq!(answer.allows(), status == 200, "{name}");
            assert_eq!(answer.rpc_code, rpc, "{name}");
            assert_eq!(
                answer.client.contains_key(header::LOCATION),
                location,
                "{name}"
            );
            assert_eq!(
                answer.client.contains_key(header::WWW_AUTHENTICATE),
                challenge,
                "{name}"
            );
            assert_eq!(answer.body, body, "{name}");
            // Refusals are never cached; allows carry the re-issued cookie.
            if status == 200 {
                assert_eq!(answer.client[header::SET_COOKIE], "_authgate=new", "{name}");
            } else {
                assert_eq!(answer.client[header::CACHE_CONTROL], "no-store", "{name}");
                assert!(
                    answer.upstream.is_empty() && answer.remove.is_empty(),
                    "{name}"
                );
            }
        }
        let refused = Answer::new(&sign_in(true), program);
        assert_eq!(
            refused.client[header::WWW_AUTHENTICATE],
            "Bearer realm=\"authgate\", error=\"invalid_token\""
        );
    }

    /// A direct allow lists every client-sent identity header spelling to
    /// strip (none is set here: a public route without a session); nginx
    /// strips them in its own configuration.
    #[test]
    fn direct_allows_strip_identity_headers() {
        let direct = Answer::new(
            &allow(),
            Mode::Direct {
                client: Client::Browser,
                safe_method: true,
            },
        );
        assert!(direct.upstream.is_empty());
        assert!(direct.remove.iter().any(|h| h == "x-auth-request-email"));
        assert!(direct.remove.iter().any(|h| h == "x_auth_request_user"));
        assert!(Answer::new(&allow(), Mode::Subrequest).remove.is_empty());
    }
}
