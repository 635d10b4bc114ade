//! Conditions the proxy's own configuration adds to a request: oauth2-proxy's
//! `allowed_groups`, `allowed_emails` and `allowed_email_domains`, from the
//! auth subrequest's query (`auth-url: …/oauth2/auth?allowed_groups=a,b`) or
//! from Envoy's per-route `context_extensions`.
//!
//! They come from the proxy's configuration, never from the client: a client
//! cannot change nginx's `auth_request` URI or Envoy's route settings.
//! oauth2-proxy's semantics: each key is a comma-separated list (repeated
//! keys add to it, empty items are skipped), one match within a key is
//! enough, and every key given must match. Values are borrowed from the
//! request; parsing allocates only for a percent-escape or a repeated key.

use std::borrow::Cow;

use crate::identity::Identity;

use super::authz::{verified_email, verified_email_domain};
use url::form_urlencoded;

/// The three keys, oauth2-proxy's names.
pub const GROUPS: &str = "allowed_groups";
pub const EMAILS: &str = "allowed_emails";
pub const EMAIL_DOMAINS: &str = "allowed_email_domains";

/// The proxy's conditions for one request; empty when it set none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConditions<'a> {
    groups: Option<Cow<'a, str>>,
    emails: Option<Cow<'a, str>>,
    email_domains: Option<Cow<'a, str>>,
    /// An `allowed_…` key authgate does not know (a typo would otherwise
    /// silently drop a restriction): nobody is admitted.
    unknown: Option<Cow<'a, str>>,
}

impl<'a> ProxyConditions<'a> {
    /// No conditions (a front end whose proxy cannot set any).
    pub const NONE: ProxyConditions<'static> = ProxyConditions {
        groups: None,
        emails: None,
        email_domains: None,
        unknown: None,
    };

    /// From an auth subrequest's query string (`None`: no query). Keys
    /// other than `allowed_…` are not conditions and are ignored.
    pub fn from_query(query: Option<&'a str>) -> ProxyConditions<'a> {
        let mut conditions = ProxyConditions::default();
        let Some(query) = query.filter(|q| q.contains("allowed_")) else {
            return conditions;
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            conditions.add(key, value);
        }
        conditions
    }

    /// From key/value pairs (Envoy's `context_extensions`).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ProxyConditions<'a> {
        let mut conditions = ProxyConditions::default();
        for (key, value) in pairs {
            conditions.add(Cow::Borrowed(key), Cow::Borrowed(value));
        }
        conditions
    }

    fn add(&mut self, key: Cow<'a, str>, value: Cow<'a, str>) {
        let slot = match &*key {
            GROUPS => &mut self.groups,
            EMAILS => &mut self.emails,
            EMAIL_DOMAINS => &mut self.email_domains,
            other if other.starts_with("allowed_") => {
                self.unknown.get_or_insert(key);
                return;
            }
            _ => return,
        };
        if items(&value).next().is_none() {
            return;
        }
        match slot {
            None => *slot = Some(value),
            Some(existing) => {
                let joined = existing.to_mut();
                joined.push(',');
                joined.push_str(&value);
            }
        }
    }

    /// No condition set: the route's own policy alone decides.
    pub fn is_empty(&self) -> bool {
        self.groups.is_none()
            && self.emails.is_none()
            && self.email_domains.is_none()
            && self.unknown.is_none()
    }

    /// Does `identity` meet every condition?
    pub fn admits(&self, identity: &Identity) -> bool {
        self.unmet(identity).is_none()
    }

    /// The first condition `identity` does not meet, as a sentence for the
    /// 403 page and the log; `None` when all are met. Allocates only when
    /// one is unmet.
    pub fn unmet(&self, identity: &Identity) -> Option<String> {
        if let Some(key) = &self.unknown {
            return Some(format!(
                "the proxy's auth URL sets `{key}`, which authgate does not know (it knows {GROUPS}, {EMAILS} and {EMAIL_DOMAINS})"
            ));
        }
        if let Some(groups) = &self.groups
            && !items(groups).any(|g| identity.groups.iter().any(|have| have == g))
        {
            return Some(format!(
                "needs one of the groups {}; {}",
                list(groups),
                crate::identity::groups_sentence(&identity.groups)
            ));
        }
        let email = verified_email(identity);
        if let Some(emails) = &self.emails
            && !email.is_some_and(|e| items(emails).any(|allowed| allowed.eq_ignore_ascii_case(e)))
        {
            return Some(format!(
                "needs one of the emails {}; you are {}",
                list(emails),
                email.unwrap_or("without a verified email")
            ));
        }
        if let Some(domains) = &self.email_domains {
            let domain = verified_email_domain(identity).map(|(_, d)| d);
            if !domain.is_some_and(|d| items(domains).any(|allowed| domain_allows(allowed, d))) {
                return Some(format!(
                    "needs an email at {}; you are {}",
                    list(domains),
                    email.unwrap_or("without a verified email")
                ));
            }
        }
        None
    }
}

/// The non-empty, trimmed items of a comma-separated list.
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `a, b` for a message.
fn list(value: &str) -> String {
    items(value).collect::<Vec<_>>().join(", ")
}

/// oauth2-proxy's domain rule: `example.com` is that domain exactly,
/// `.example.com` and `*.example.com` any subdomain of it; case-insensitive.
fn domain_allows(allowed: &str, domain: &str) -> bool {
    match allowed
        .strip_prefix('*')
        .unwrap_or(allowed)
        .strip_prefix('.')
    {
        Some(suffix) => {
            domain.len() > suffix.len() + 1
                && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.'
                && domain[domain.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => domain.eq_ignore_ascii_case(allowed),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn person(email: &str, groups: &[&str]) -> Identity {
        Identity {
            subject: "sub".into(),
            email: Some(email.into()),
            email_verified: Some(true),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn query_parsing() {
        assert!(ProxyConditions::from_query(None).is_empty());
        assert!(ProxyConditions::from_query(Some("rd=https://x")).is_empty());
        assert!(ProxyConditions::from_query(Some("allowed_groups=")).is_empty());
        assert!(ProxyConditions::from_query(Some("allowed_groups=,,")).is_empty());
        let c = ProxyConditions::from_query(Some("allowed_groups=a,b&allowed_groups=c%2Cd"));
        assert_eq!(c.groups.as_deref(), Some("a,b,c,d"));
        let typo = ProxyConditions::from_query(Some("allowed_group=admins"));
        assert!(!typo.is_empty());
        assert!(!typo.admits(&person("a@b.c", &["admins"])));
        assert!(
            typo.unmet(&person("a@b.c", &[]))
                .unwrap()
                .contains("allowed_group")
        );
    }

    /// One match within a key; every key must match (oauth2-proxy).
    #[test]
    fn keys_are_anded_items_ored() {
        let c = ProxyConditions::from_query(Some(
            "allowed_groups=devops,admins&allowed_email_domains=example.com",
        ));
        assert!(c.admits(&person("a@example.com", &["admins"])));
        assert!(!c.admits(&person("a@example.com", &["developers"])));
        assert!(!c.admits(&person("a@other.com", &["admins"])));
        assert_eq!(
            c.unmet(&person("a@example.com", &["developers"])).unwrap(),
            "needs one of the groups devops, admins; you are in: developers"
        );
    }

    #[test]
    fn emails_and_domains() {
        let c = ProxyConditions::from_pairs([(EMAILS, "Alice@Example.com, bob@example.com")]);
        assert!(c.admits(&person("alice@example.com", &[])));
        assert!(!c.admits(&person("carol@example.com", &[])));
        let mut unverified = person("alice@example.com", &[]);
        unverified.email_verified = Some(false);
        assert!(!c.admits(&unverified));

        let c = ProxyConditions::from_pairs([(EMAIL_DOMAINS, "example.com,*.corp.example")]);
        assert!(c.admits(&person("a@EXAMPLE.com", &[])));
        assert!(!c.admits(&person("a@sub.example.com", &[])));
        assert!(c.admits(&person("a@eu.corp.example", &[])));
        assert!(!c.admits(&person("a@corp.example", &[])));
        assert!(!c.admits(&person("a@evilcorp.example", &[])));
        assert!(!c.admits(&person("a@evil.com@example.com", &[])));
    }
}
