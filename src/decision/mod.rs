//! The decision core: request facts in, verdict out.
//!
//! Every front end (nginx `auth_request`, forward-auth, Envoy `Check`,
//! HAProxy SPOE) translates its protocol into a [`Request`], asks the
//! [`Decider`] and translates the [`Answer`] built from the [`Decision`]
//! back. No front end looks at policy or sessions itself, so they cannot
//! drift apart; and this module knows no protocol, metric or log line.
//!
//! One decide path: [`Decider::try_now`] decides without I/O when it can
//! (no session cookie, or a cached session with nothing due, and no Bearer
//! token) — most decisions — and otherwise returns where it stopped;
//! [`Decider::finish`] goes on from there with the store and the provider.

mod answer;
mod client;
mod verdict;

use std::sync::Arc;

use http::HeaderValue;

use crate::assertion::{AssertionSigner, Subject};
use crate::bearer::{BearerError, BearerVerifier};
use crate::policy::{DenyReason, Facts, Policy, ProxyConditions, Target, TargetError, Verdict};
use crate::refresh::Refresher;
use crate::session::{
    CachedLookup, Resolved, SessionCookie, SessionError, SessionRecord, Sessions,
};

pub use answer::{Answer, Mode, Removals, RpcCode, www_authenticate};
pub use client::{Client, is_preflight};
pub use verdict::{Decision, Refusal, Request};

/// [`Decider::try_now`]'s result: the decision, or where it stopped for I/O.
pub enum Step<'a, C> {
    Done(Decision),
    NeedsIo(Pending<'a, C>),
}

/// A decision waiting for the store or the provider; [`Decider::finish`]
/// goes on from here, so nothing decided so far is decided again.
pub struct Pending<'a, C> {
    target: &'a Target<'a>,
    how: How<'a>,
    wait: Wait<'a>,
    /// The session cookies not looked at yet.
    rest: C,
}

/// How the request was made: what the policy may look at besides the URL
/// and the user.
#[derive(Clone, Copy)]
struct How<'a> {
    method: Option<&'a str>,
    source_ip: Option<std::net::IpAddr>,
    preflight: bool,
    conditions: &'a ProxyConditions<'a>,
}

/// What a pending decision waits for.
enum Wait<'a> {
    /// A Bearer token to verify (then every session cookie, if refused).
    Bearer(&'a str),
    /// A session cookie this replica's cache cannot answer for (not
    /// cached, or its idle clock needs a write).
    Cookie(&'a str),
    /// A cached session, on the target's host, whose refresh is due.
    Refresh(Resolved),
}

/// Makes decisions from a compiled policy and the sessions. Which policy
/// is in force is the caller's: a reload swaps it between decisions.
pub struct Decider {
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
}

impl Decider {
    /// `login_base` is `authenticate_service_url`.
    pub fn new(sessions: Arc<Sessions>, login_base: &url::Url) -> Decider {
        let mut sign_in_prefix = login_base.as_str().trim_end_matches('/').to_owned();
        sign_in_prefix.push_str("/oauth2/start?rd=");
        Decider {
            sessions,
            refresher: None,
            session_cookie: None,
            sign_in_prefix,
            handoff_domain: None,
            signer: None,
            bearer: None,
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

    /// Decides `request` under `policy`, with I/O if it needs some.
    pub async fn decide<'a, C>(&self, policy: &Policy, request: Request<'a, C>) -> Decision
    where
        C: IntoIterator<Item = &'a str>,
    {
        match self.try_now(policy, request) {
            Step::Done(decision) => decision,
            Step::NeedsIo(pending) => self.finish(policy, pending).await,
        }
    }

    /// Decides `request` under `policy` if that needs no I/O; otherwise
    /// returns where it stopped, for [`Decider::finish`].
    pub fn try_now<'a, C>(&self, policy: &Policy, request: Request<'a, C>) -> Step<'a, C::IntoIter>
    where
        C: IntoIterator<Item = &'a str>,
    {
        let target = match self.check_target(policy, request.target, request.preflight) {
            Ok(target) => target,
            Err(decision) => return Step::Done(decision),
        };
        let how = How {
            method: request.method,
            source_ip: request.source_ip,
            preflight: request.preflight,
            conditions: request.conditions,
        };
        let mut cookies = request.session_cookies.into_iter();
        let pending = |wait, rest| {
            Step::NeedsIo(Pending {
                target,
                how,
                wait,
                rest,
            })
        };
        if self.bearer.is_some()
            && let Some(token) = request.authorization.and_then(crate::bearer::token_of)
        {
            return pending(Wait::Bearer(token), cookies);
        }
        while let Some(value) = cookies.next() {
            match self.sessions.resolve_cached(value) {
                CachedLookup::NeedsStore => return pending(Wait::Cookie(value), cookies),
                CachedLookup::NoSession => {}
                // Another host's cookie names no session here: never
                // refreshed on its behalf.
                CachedLookup::Found(resolved) if !resolved.valid_on(&target.host) => {}
                CachedLookup::Found(resolved) if self.refresh_due(&resolved) => {
                    return pending(Wait::Refresh(resolved), cookies);
                }
                CachedLookup::Found(resolved) => {
                    let identified = self.signed_in(resolved, false);
                    return Step::Done(self.conclude(policy, target, identified, how));
                }
            }
        }
        Step::Done(self.conclude(policy, target, Identified::default(), how))
    }

    /// Finishes a decision [`Decider::try_now`] could not make without
    /// I/O, from where it stopped.
    pub async fn finish<'a, C>(&self, policy: &Policy, pending: Pending<'a, C>) -> Decision
    where
        C: Iterator<Item = &'a str>,
    {
        let Pending {
            target,
            how,
            wait,
            rest,
        } = pending;
        match self.identify(&target.host, wait, rest).await {
            Some(identified) => self.conclude(policy, target, identified, how),
            None => Decision::Unavailable,
        }
    }

    /// The target, or the decision that needs nobody's identity: an
    /// unusable URL, or a preflight on a route that allows them.
    fn check_target<'t>(
        &self,
        policy: &Policy,
        target: &'t Result<Target<'t>, TargetError>,
        preflight: bool,
    ) -> Result<&'t Target<'t>, Decision> {
        let target = match target {
            Ok(target) => target,
            Err(error) => {
                tracing::debug!(%error, "refused: unusable original URL");
                return Err(Decision::Deny {
                    route: None,
                    session: None,
                    unmet: None,
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

    /// Is `resolved`'s refresh with the provider due (a comparison)?
    fn refresh_due(&self, resolved: &Resolved) -> bool {
        self.refresher
            .as_ref()
            .is_some_and(|refresher| refresher.is_due_now(&resolved.record))
    }

    /// Who asks, from where [`Decider::try_now`] stopped: a verified Bearer
    /// token, else the first session cookie that names a valid session on
    /// `host` (refreshed if due). `None`: the store or the provider cannot
    /// answer, so nobody can be allowed (fail closed).
    async fn identify<'a>(
        &self,
        host: &str,
        wait: Wait<'a>,
        rest: impl Iterator<Item = &'a str>,
    ) -> Option<Identified> {
        let mut invalid_token = false;
        let mut first = None;
        match wait {
            Wait::Bearer(token) => {
                let bearer = self.bearer.as_ref()?;
                // Boxed: only requests with a token pay for its future.
                match Box::pin(bearer.verify(token)).await {
                    Ok(verified) => {
                        return Some(Identified {
                            session: Some(verified.record.clone()),
                            session_key: verified.key,
                            ..Identified::default()
                        });
                    }
                    Err(BearerError::Unavailable(reason)) => {
                        tracing::error!(%reason, "cannot verify a Bearer token");
                        return None;
                    }
                    // Not ours (an app may use its own Bearer scheme): a
                    // cookie may still sign the request in.
                    Err(error) => {
                        tracing::debug!(%error, "Bearer token refused");
                        invalid_token = true;
                    }
                }
            }
            Wait::Cookie(value) => first = Some(value),
            Wait::Refresh(resolved) => match self.refreshed(resolved).await {
                Ok(Some(resolved)) => return Some(self.signed_in(resolved, false)),
                Ok(None) => {}
                Err(error) => return store_down(&error),
            },
        }
        for value in first.into_iter().chain(rest) {
            let resolved = match self.sessions.resolve(value).await {
                Ok(Some(resolved)) if !resolved.valid_on(host) => Ok(None),
                Ok(Some(resolved)) => self.refreshed(resolved).await,
                other => other,
            };
            match resolved {
                Ok(Some(resolved)) => return Some(self.signed_in(resolved, invalid_token)),
                Ok(None) => {}
                Err(error) => return store_down(&error),
            }
        }
        Some(Identified {
            invalid_token,
            ..Identified::default()
        })
    }

    /// `resolved`, refreshed with the provider if due (see
    /// [`Refresher::check`]).
    async fn refreshed(&self, resolved: Resolved) -> Result<Option<Resolved>, SessionError> {
        match &self.refresher {
            Some(refresher) => refresher.check(resolved).await,
            None => Ok(Some(resolved)),
        }
    }

    /// Signed in as `resolved`'s session.
    fn signed_in(&self, resolved: Resolved, invalid_token: bool) -> Identified {
        Identified {
            session_key: resolved.id,
            set_cookie: self.reissue(&resolved),
            session: Some(resolved.record),
            invalid_token,
        }
    }

    /// The decision about `target` for whoever `identified` found.
    fn conclude(
        &self,
        policy: &Policy,
        target: &Target<'_>,
        identified: Identified,
        how: How<'_>,
    ) -> Decision {
        let Identified {
            session,
            session_key,
            set_cookie,
            invalid_token,
        } = identified;
        let facts = Facts {
            identity: session.as_deref().map(|s| &s.identity),
            method: how.method,
            source_ip: how.source_ip,
            preflight: how.preflight,
            now: self.sessions.now(),
            conditions: how.conditions,
        };
        let verdict = policy.evaluate(target, &facts);
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
                // Only refusals pay for the words.
                unmet: policy
                    .refusal(target, &facts, verdict)
                    .map(String::into_boxed_str),
                session,
                reason: match reason {
                    DenyReason::NoRoute => Refusal::NoRoute,
                    DenyReason::NotAllowed => Refusal::NotAllowed,
                    DenyReason::MethodNotAllowed => Refusal::MethodNotAllowed,
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

/// The store failed: logged, and nobody is identified (fail closed).
fn store_down(error: &SessionError) -> Option<Identified> {
    tracing::error!(%error, "session store unavailable");
    None
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
