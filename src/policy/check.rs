//! Asking a policy about one request without serving it: the config's
//! `tests:` list (run by `check-config`, at start and on reload) and
//! `authgate explain`.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{Facts, Policy, Target, Verdict};
use crate::identity::Identity;

/// What a request should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Allow,
    Deny,
    SignIn,
}

impl Expect {
    /// `allow`, `deny` or `sign_in`.
    pub fn parse(text: &str) -> Option<Expect> {
        match text.trim() {
            "allow" => Some(Expect::Allow),
            "deny" => Some(Expect::Deny),
            "sign_in" => Some(Expect::SignIn),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::SignIn => "sign_in",
        }
    }

    fn of(verdict: Verdict) -> Expect {
        match verdict {
            Verdict::Allow { .. } | Verdict::Public { .. } => Expect::Allow,
            Verdict::NeedsLogin { .. } => Expect::SignIn,
            Verdict::Deny { .. } => Expect::Deny,
        }
    }
}

/// A request to ask about.
#[derive(Clone, Debug)]
pub struct Case {
    pub url: String,
    pub method: String,
    pub source_ip: Option<IpAddr>,
    /// `None`: nobody signed in.
    pub user: Option<Identity>,
}

/// A user for a case: email (verified), groups and extra claims; the
/// subject is the email.
pub fn test_user(email: Option<&str>, groups: Vec<String>, claims: Map<String, Value>) -> Identity {
    Identity {
        subject: email.unwrap_or("test-user").to_owned(),
        email: email.map(str::to_owned),
        email_verified: email.map(|_| true),
        groups,
        claims: claims.into(),
        ..Identity::default()
    }
}

/// What the policy makes of a case, and why.
pub struct Report {
    pub outcome: Expect,
    /// Why it was refused, if it was.
    pub reason: Option<String>,
    /// The route, each rule's result and the outcome, for people.
    pub text: String,
}

impl Case {
    /// Ask `policy` at `now` (Unix seconds); `Err` when the URL is unusable.
    pub fn ask(&self, policy: &Policy, now: i64) -> Result<Report, String> {
        let target =
            Target::parse(&self.url).map_err(|e| format!("`{}` is not usable: {e}", self.url))?;
        let method = self.method.to_ascii_uppercase();
        let facts = Facts {
            method: Some(&method),
            source_ip: self.source_ip,
            now,
            ..Facts::who(self.user.as_ref())
        };
        let explanation = policy.explain(&target, &facts);
        let outcome = Expect::of(explanation.verdict);
        let mut text = String::new();
        let _ = writeln!(
            text,
            "route: {}",
            explanation
                .route
                .as_deref()
                .unwrap_or("none serves this URL")
        );
        for line in &explanation.lines {
            let _ = writeln!(text, "{line}");
        }
        let _ = write!(text, "result: {}", outcome.name());
        let reason = explanation.reason();
        if let Some(reason) = &reason {
            let _ = write!(text, " ({reason})");
        }
        Ok(Report {
            outcome,
            reason,
            text,
        })
    }
}
