//! Who a signed-in user is: the claims the provider vouched for at login.
//!
//! Built by `oidc` from a verified ID token, kept (sealed) in the session
//! store, read by `policy` and rendered into headers by `decision`.

use std::fmt;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Identity headers set on allow (the names oauth2-proxy uses, so existing
/// nginx configs work). The same names arriving from a client are never
/// trusted: the proxy must overwrite or strip them.
pub const HEADER_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
pub const HEADER_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
pub const HEADER_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");
pub const HEADER_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
/// The signed assertion (see [`crate::assertion`]).
pub const HEADER_JWT: HeaderName = HeaderName::from_static("x-auth-request-jwt");

/// The identity of one session, as the provider stated it at the last login
/// or refresh.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The ID token's `sub`: opaque, stable per user and connector.
    pub subject: String,
    /// `email`, if the provider sent one.
    pub email: Option<String>,
    /// `email_verified`; `None` when the claim was absent.
    pub email_verified: Option<bool>,
    /// `preferred_username` (Dex: the LDAP `preferredUsernameAttr`).
    pub preferred_username: Option<String>,
    /// `name` (Dex: the LDAP `nameAttr`).
    pub name: Option<String>,
    /// `groups`; empty when the provider omitted the claim (Dex does so for
    /// users in no group).
    pub groups: Vec<String>,
    /// Every claim of the ID token, for `allowed_idp_claims`.
    pub claims: Map<String, Value>,
}

impl Identity {
    /// Who this is, for logs and pages: the email, else the subject.
    pub fn display_name(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.subject)
    }
}

/// A session's identity headers (user, email, preferred username, groups),
/// rendered on first use and kept beside the cached record. Every later
/// decision for the session clones reference-counted values instead of
/// joining groups and validating header text again.
///
/// It is a cache, not part of the value: a clone starts empty (the copy may
/// be changed before use) and every two compare equal.
#[derive(Default)]
pub struct RenderedHeaders(OnceLock<HeaderMap>);

impl RenderedHeaders {
    /// The headers for `identity`, rendered now if this is the first use.
    /// A value that cannot be a header (control characters) is left out
    /// rather than passed mangled.
    ///
    /// A `HeaderMap`, so an answer can start from a clone of it instead of
    /// hashing each name in again.
    pub fn get_or_render(&self, identity: &Identity) -> &HeaderMap {
        self.0.get_or_init(|| render(identity))
    }
}

/// `items` as one comma-separated header value (`X-Auth-Request-Groups`,
/// a list claim's header). A comma inside an item would make the upstream
/// read two (`developers,admins` → `admins`), so each item's `%` and `,`
/// are percent-encoded (`%25`, `%2C`); nothing else changes, and an
/// upstream that splits on `,` and percent-decodes gets the names back.
pub fn header_list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in item.as_ref().chars() {
            match c {
                '%' => out.push_str("%25"),
                ',' => out.push_str("%2C"),
                c => out.push(c),
            }
        }
    }
    out
}

fn render(identity: &Identity) -> HeaderMap {
    let groups = (!identity.groups.is_empty()).then(|| header_list(&identity.groups));
    [
        (HEADER_USER, Some(identity.subject.as_str())),
        (HEADER_EMAIL, identity.email.as_deref()),
        (
            HEADER_PREFERRED_USERNAME,
            identity.preferred_username.as_deref(),
        ),
        (HEADER_GROUPS, groups.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, text)| Some((name, HeaderValue::from_str(text?).ok()?)))
    .collect()
}

impl Clone for RenderedHeaders {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for RenderedHeaders {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for RenderedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RenderedHeaders")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A group named with a comma stays one group for the upstream; plain
    /// names are untouched.
    #[test]
    fn header_lists_encode_commas_in_items() {
        assert_eq!(header_list(["devops", "admins"]), "devops,admins");
        assert_eq!(
            header_list(["developers,admins", "100%"]),
            "developers%2Cadmins,100%25"
        );
        assert_eq!(header_list([""; 0]), "");
    }

    fn alice() -> Identity {
        Identity {
            subject: "CgVhbGljZQ".into(),
            email: Some("alice@example.com".into()),
            preferred_username: Some("alice".into()),
            groups: vec!["devops".into(), "admins".into()],
            ..Identity::default()
        }
    }

    fn text(headers: &HeaderMap) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    /// The four identity headers, with the groups comma-joined.
    #[test]
    fn renders_the_identity_headers() {
        let cache = RenderedHeaders::default();
        assert_eq!(
            text(cache.get_or_render(&alice())),
            [
                ("x-auth-request-user", "CgVhbGljZQ"),
                ("x-auth-request-email", "alice@example.com"),
                ("x-auth-request-preferred-username", "alice"),
                ("x-auth-request-groups", "devops,admins"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }

    /// Absent claims and values that cannot be header text (a newline
    /// would split the header) are left out, never passed mangled.
    #[test]
    fn leaves_out_what_is_absent_or_unsafe() {
        let identity = Identity {
            subject: "s".into(),
            email: Some("a@example.com\r\nX-Injected: 1".into()),
            ..Identity::default()
        };
        let cache = RenderedHeaders::default();
        assert_eq!(
            text(cache.get_or_render(&identity)),
            [("x-auth-request-user".to_owned(), "s".to_owned())]
        );
    }

    /// A copy renders its own identity: a record cloned and then changed
    /// (a refresh with new groups) never carries the old headers.
    #[test]
    fn a_clone_renders_afresh() {
        let cache = RenderedHeaders::default();
        cache.get_or_render(&alice());
        let mut changed = alice();
        changed.groups = vec!["staff".into()];
        let copy = cache.clone();
        assert_eq!(
            text(copy.get_or_render(&changed))[3],
            ("x-auth-request-groups".to_owned(), "staff".to_owned())
        );
    }
}
