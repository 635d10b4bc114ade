//! A route's authorization rules, compiled for cheap checks (Pomerium
//! semantics: the rules are OR-ed).
//!
//! Sets are pre-lower-cased at compile time (hashed when large), and
//! lower-casing an email or domain at check time happens in a stack buffer,
//! so a check does not allocate. A user with 300 groups against a rule of two
//! groups costs 600 length-first string comparisons, not 300 hashes.

use std::collections::HashSet;

use serde_json::{Number, Value};

use crate::identity::Identity;

/// Longest email (RFC 5321 path limit) or domain we compare; longer ones
/// match nothing.
const MAX_EMAIL_LEN: usize = 254;

/// What a signed-in identity must satisfy on one route.
#[derive(Clone, Debug, Default)]
pub(crate) struct Authz {
    any_authenticated: bool,
    /// `allowed_users`, ASCII-lower-cased, compared with the email.
    user_emails: StrSet,
    /// `allowed_users` as written, compared with the subject.
    user_subjects: StrSet,
    /// `allowed_domains`, ASCII-lower-cased.
    domains: StrSet,
    /// `allowed_groups`, exact.
    groups: StrSet,
    claims: Vec<ClaimRule>,
}

/// Sets up to this size are searched linearly: a few comparisons beat
/// hashing every one of a user's groups.
const LINEAR_MAX: usize = 8;

/// A set of strings with a length filter in front: a bit per length present
/// (lengths of 63 and more share the last bit), so most non-members are
/// turned away by one AND, without reading their bytes. Behind it, a linear
/// search when small, a hash set when large.
#[derive(Clone, Debug, Default)]
pub(crate) struct StrSet {
    lengths: u64,
    items: Items,
}

#[derive(Clone, Debug)]
enum Items {
    Small(Vec<Box<str>>),
    Large(HashSet<Box<str>>),
}

impl Default for Items {
    fn default() -> Self {
        Items::Small(Vec::new())
    }
}

fn length_bit(s: &str) -> u64 {
    1 << s.len().min(63)
}

impl FromIterator<Box<str>> for StrSet {
    fn from_iter<I: IntoIterator<Item = Box<str>>>(iter: I) -> Self {
        let set: HashSet<Box<str>> = iter.into_iter().collect();
        let lengths = set.iter().fold(0, |mask, s| mask | length_bit(s));
        let items = if set.len() <= LINEAR_MAX {
            Items::Small(set.into_iter().collect())
        } else {
            Items::Large(set)
        };
        StrSet { lengths, items }
    }
}

impl StrSet {
    fn is_empty(&self) -> bool {
        self.lengths == 0
    }

    pub(crate) fn contains(&self, item: &str) -> bool {
        if self.lengths & length_bit(item) == 0 {
            return false;
        }
        match &self.items {
            // Length and last byte first: inline, and they settle most
            // near-misses (`team-1`, `team-2`, …) without a `memcmp` call.
            Items::Small(v) => v.iter().any(|s| {
                s.len() == item.len()
                    && s.as_bytes().last() == item.as_bytes().last()
                    && **s == *item
            }),
            Items::Large(s) => s.contains(item),
        }
    }
}

impl std::fmt::Display for StrSet {
    /// `a, b, c`, sorted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<&str> = match &self.items {
            Items::Small(v) => v.iter().map(|s| &**s).collect(),
            Items::Large(s) => s.iter().map(|s| &**s).collect(),
        };
        items.sort_unstable();
        f.write_str(&items.join(", "))
    }
}

/// One `allowed_idp_claims` entry: the accepted values, split by type.
#[derive(Clone, Debug)]
struct ClaimRule {
    name: Box<str>,
    strings: StrSet,
    numbers: Vec<Number>,
    /// `[accepts false, accepts true]`.
    bools: [bool; 2],
}

impl Authz {
    /// Compiles rules that [`super::route::Route::parse`] accepted:
    /// domains are DNS names, claim values scalars (anything else would
    /// match nothing and is left out).
    pub(crate) fn compile(
        any_authenticated: bool,
        users: &[String],
        domains: &[String],
        groups: &[String],
        claims: &[(String, Vec<Value>)],
    ) -> Authz {
        let mut authz = Authz {
            any_authenticated,
            user_emails: users
                .iter()
                .map(|u| u.to_ascii_lowercase().into())
                .collect(),
            user_subjects: users.iter().map(|u| u.as_str().into()).collect(),
            groups: groups.iter().map(|g| g.as_str().into()).collect(),
            domains: domains
                .iter()
                .map(|d| d.to_ascii_lowercase().into_boxed_str())
                .collect(),
            ..Authz::default()
        };
        for (name, values) in claims {
            let mut strings = Vec::new();
            let mut numbers = Vec::new();
            let mut bools = [false; 2];
            for value in values {
                match value {
                    Value::String(s) => strings.push(s.as_str().into()),
                    Value::Number(n) => numbers.push(n.clone()),
                    Value::Bool(b) => bools[usize::from(*b)] = true,
                    _ => {}
                }
            }
            authz.claims.push(ClaimRule {
                name: name.as_str().into(),
                strings: strings.into_iter().collect(),
                numbers,
                bools,
            });
        }
        authz
    }

    /// Whether `allowed_groups` names a group.
    pub(crate) fn asks_for_groups(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Whether any key was given (a route with none admits nobody).
    pub(crate) fn has_rules(&self) -> bool {
        self.any_authenticated
            || !self.user_subjects.is_empty()
            || !self.domains.is_empty()
            || !self.groups.is_empty()
            || !self.claims.is_empty()
    }

    /// What the `allowed_*` keys ask for, in words, and who `identity` is
    /// in those terms: "needs group devops; you are in: developers".
    pub(crate) fn unmet(&self, identity: &Identity) -> String {
        let mut needs = Vec::new();
        if !self.groups.is_empty() {
            needs.push(format!("group {}", self.groups));
        }
        if !self.domains.is_empty() {
            needs.push(format!("an email at {}", self.domains));
        }
        if !self.user_emails.is_empty() {
            needs.push("to be one of the route's allowed_users".to_owned());
        }
        for rule in &self.claims {
            needs.push(format!("claim `{}` {}", rule.name, rule.describe()));
        }
        if needs.is_empty() {
            return "this route allows nobody (it has no allowed_* keys)".to_owned();
        }
        let mut sentence = format!("needs {}", needs.join(" or "));
        if !self.groups.is_empty() {
            sentence.push_str("; ");
            sentence.push_str(&crate::identity::groups_sentence(&identity.groups));
        }
        if !self.domains.is_empty() || !self.user_emails.is_empty() {
            sentence.push_str("; you are ");
            sentence.push_str(verified_email(identity).unwrap_or("without a verified email"));
        }
        sentence
    }

    /// Does any rule admit this identity?
    pub(crate) fn allows(&self, identity: &Identity) -> bool {
        if self.any_authenticated {
            return true;
        }
        if !identity.subject.is_empty() && self.user_subjects.contains(identity.subject.as_str()) {
            return true;
        }
        if !self.groups.is_empty()
            && identity
                .groups
                .iter()
                .any(|g| self.groups.contains(g.as_str()))
        {
            return true;
        }
        if (!self.user_emails.is_empty() || !self.domains.is_empty())
            && let Some((email, domain)) = verified_email_domain(identity)
        {
            if !self.user_emails.is_empty()
                && with_ascii_lowercase(email, |e| self.user_emails.contains(e))
            {
                return true;
            }
            if !self.domains.is_empty()
                && with_ascii_lowercase(domain, |d| self.domains.contains(d))
            {
                return true;
            }
        }
        self.claims.iter().any(|rule| rule.matches(identity))
    }
}

impl ClaimRule {
    /// `in: a, 1, true`.
    fn describe(&self) -> String {
        let mut values: Vec<String> = vec![self.strings.to_string()];
        values.retain(|v| !v.is_empty());
        values.extend(self.numbers.iter().map(Number::to_string));
        for (b, on) in [false, true].iter().zip(self.bools) {
            if on {
                values.push(b.to_string());
            }
        }
        format!("one of {}", values.join(", "))
    }

    fn matches(&self, identity: &Identity) -> bool {
        match identity.claims.get(&self.name) {
            Some(Value::Array(items)) => items.iter().any(|v| self.accepts(v)),
            Some(value) => self.accepts(value),
            None => false,
        }
    }

    /// Same type and value; no coercion between strings, numbers and bools.
    fn accepts(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.strings.contains(s.as_str()),
            Value::Number(n) => self.numbers.iter().any(|m| number_eq(n, m)),
            Value::Bool(b) => self.bools[usize::from(*b)],
            _ => false,
        }
    }
}

/// `1`, `1.0` and `1e0` are the same number.
pub(crate) fn number_eq(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// Split an email strictly: exactly one `@`, a non-empty local part and
/// domain, no whitespace or control characters anywhere. Anything else is
/// not an email and matches no user or domain rule —
/// `attacker@evil.com@company.com` is not at company.com (CVE-2026-40574).
pub(crate) fn split_email(email: &str) -> Option<(&str, &str)> {
    if email.len() > MAX_EMAIL_LEN || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    Some((local, domain))
}

/// The identity's email, when it is one and not marked unverified: the only
/// email any rule compares.
pub(crate) fn verified_email(identity: &Identity) -> Option<&str> {
    verified_email_domain(identity).map(|(email, _)| email)
}

/// [`verified_email`] and its domain.
pub(crate) fn verified_email_domain(identity: &Identity) -> Option<(&str, &str)> {
    let email = identity.email.as_deref()?;
    if identity.email_verified == Some(false) {
        return None;
    }
    let (_, domain) = split_email(email)?;
    Some((email, domain))
}

/// Run `f` on the ASCII-lower-cased `s`, without allocating (`s` is at most
/// [`MAX_EMAIL_LEN`] bytes, checked by [`split_email`]).
pub(crate) fn with_ascii_lowercase(s: &str, f: impl FnOnce(&str) -> bool) -> bool {
    if !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return f(s);
    }
    let mut buf = [0u8; MAX_EMAIL_LEN];
    let Some(dst) = buf.get_mut(..s.len()) else {
        return false;
    };
    dst.copy_from_slice(s.as_bytes());
    dst.make_ascii_lowercase();
    // Lower-casing ASCII bytes keeps UTF-8 valid.
    std::str::from_utf8(dst).is_ok_and(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn person(email: &str) -> Identity {
        Identity {
            subject: "CiQxMjM0".into(),
            email: Some(email.into()),
            email_verified: Some(true),
            ..Identity::default()
        }
    }

    /// Strict email parsing: exactly one `@`, nothing hidden.
    #[test]
    fn split_email_table() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("alice@company.com", Some(("alice", "company.com"))),
            ("attacker@evil.com@company.com", None),
            ("@company.com", None),
            ("alice@", None),
            ("alice", None),
            ("alice @company.com", None),
            ("alice@company.com\n", None),
            ("alice@company.com\u{0}", None),
            ("alice\u{a0}@company.com", None),
        ];
        for (email, want) in cases {
            assert_eq!(split_email(email), *want, "{email:?}");
        }
    }

    /// `allowed_domains` compares the strictly parsed domain, case-insensitively,
    /// and only for verified (or unstated) emails.
    #[test]
    fn domain_rule() {
        let authz = Authz::compile(false, &[], &strings(&["Company.com"]), &[], &[]);
        assert!(authz.allows(&person("alice@company.com")));
        assert!(authz.allows(&person("alice@COMPANY.com")));
        assert!(!authz.allows(&person("attacker@evil.com@company.com")));
        assert!(!authz.allows(&person("alice@sub.company.com")));
        assert!(!authz.allows(&person("alice@company.com.evil.com")));
        assert!(!authz.allows(&person("alice@evilcompany.com")));
        let mut unverified = person("alice@company.com");
        unverified.email_verified = Some(false);
        assert!(!authz.allows(&unverified));
        unverified.email_verified = None;
        assert!(authz.allows(&unverified));
        let mut no_email = person("x");
        no_email.email = None;
        assert!(!authz.allows(&no_email));
    }

    /// `allowed_users` matches the email (case-insensitive, verified) or the
    /// subject (exact).
    #[test]
    fn user_rule() {
        let users = strings(&["Alice@Company.com", "CiQ5OTk5"]);
        let authz = Authz::compile(false, &users, &[], &[], &[]);
        assert!(authz.allows(&person("alice@company.com")));
        assert!(authz.allows(&person("ALICE@company.COM")));
        assert!(!authz.allows(&person("bob@company.com")));
        let mut unverified = person("alice@company.com");
        unverified.email_verified = Some(false);
        assert!(!authz.allows(&unverified));
        let mut by_subject = person("bob@company.com");
        by_subject.subject = "CiQ5OTk5".into();
        assert!(authz.allows(&by_subject));
        by_subject.subject = "ciq5otk5".into();
        assert!(!authz.allows(&by_subject), "subjects are exact");
    }

    /// `allowed_groups`: any group in common, exact.
    #[test]
    fn group_rule() {
        let authz = Authz::compile(false, &[], &[], &strings(&["admins", "ops"]), &[]);
        let mut id = person("a@b.c");
        id.groups = (0..300).map(|i| format!("team-{i}")).collect();
        assert!(!authz.allows(&id));
        id.groups.push("ops".into());
        assert!(authz.allows(&id));
        id.groups = vec!["Admins".into()];
        assert!(!authz.allows(&id), "groups are case-sensitive");

        // Past LINEAR_MAX the set is hashed; same answers.
        let many: Vec<String> = (0..50).map(|i| format!("allowed-{i}")).collect();
        let authz = Authz::compile(false, &[], &[], &many, &[]);
        assert!(matches!(authz.groups.items, Items::Large(_)));
        id.groups = (0..300).map(|i| format!("team-{i}")).collect();
        assert!(!authz.allows(&id));
        id.groups.push("allowed-49".into());
        assert!(authz.allows(&id));
    }

    /// `allowed_idp_claims`: scalar equal to a value, or a list holding one.
    #[test]
    fn claim_rule() {
        let claims = vec![
            ("groups".to_string(), vec![json!("admins")]),
            (
                "department".to_string(),
                vec![json!("eng"), json!(42), json!(true)],
            ),
        ];
        let authz = Authz::compile(false, &[], &[], &[], &claims);
        let with = |name: &str, value: Value| {
            let mut id = person("a@b.c");
            id.claims.insert(name.into(), value);
            authz.allows(&id)
        };
        assert!(with("groups", json!(["users", "admins"])));
        assert!(!with("groups", json!(["users"])));
        assert!(with("groups", json!("admins")));
        assert!(with("department", json!("eng")));
        assert!(with("department", json!(42)));
        assert!(with("department", json!(42.0)));
        assert!(with("department", json!(true)));
        assert!(!with("department", json!(false)));
        assert!(!with("department", json!("42")), "no type coercion");
        assert!(!with("department", json!({"eng": true})));
        assert!(
            !with("department", json!([["eng"]])),
            "nested lists are not flattened"
        );
        assert!(!with("other", json!("eng")));
        // identity.groups is not the claim: the claim must be present.
        let mut id = person("a@b.c");
        id.groups = vec!["admins".into()];
        assert!(!authz.allows(&id));
    }

    #[test]
    fn any_authenticated_and_empty_rules() {
        let any = Authz::compile(true, &[], &[], &[], &[]);
        assert!(any.allows(&Identity::default()));
        let none = Authz::compile(false, &[], &[], &[], &[]);
        assert!(!none.allows(&person("a@b.c")));
    }
}
