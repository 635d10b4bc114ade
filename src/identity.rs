//! Who a signed-in user is: the claims the provider vouched for at login.
//!
//! Built by `oidc` from a verified ID token, kept (sealed) in the session
//! store, read by `policy` and rendered into headers by `decision`.

use std::fmt;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

mod claims;
pub use claims::Claims;

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

/// How many [`IDENTITY_HEADERS`] there are.
pub const IDENTITY_HEADER_COUNT: usize = 5;

/// Every identity header this service sets; front ends strip client-sent
/// copies of these (and their `_`/case variants). Routes'
/// `jwt_claims_headers` add their own names.
pub const IDENTITY_HEADERS: [HeaderName; IDENTITY_HEADER_COUNT] = [
    HEADER_USER,
    HEADER_EMAIL,
    HEADER_PREFERRED_USERNAME,
    HEADER_GROUPS,
    HEADER_JWT,
];

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
    /// The ID token's claims, for `allowed_idp_claims`, `claim/…` and
    /// `jwt_claims_headers`.
    pub claims: Claims,
}

impl Identity {
    /// Who this is, for logs and pages: the email, else the subject.
    pub fn display_name(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.subject)
    }
}

/// "you are in: a, b", or that the sign-in carried no group: the second
/// half of every "needs group …" explanation.
pub fn groups_sentence(groups: &[String]) -> String {
    if groups.is_empty() {
        "your sign-in carried no groups".to_owned()
    } else {
        format!("you are in: {}", groups.join(", "))
    }
}

/// A session's identity headers (user, email, preferred username, groups),
/// rendered on first use and kept beside the cached record. Every later
/// decision for the session clones reference-counted values instead of
/// joining groups and validating header text again. Values only, in a
/// fixed array: a `HeaderMap` of them took about 650 bytes per cached
/// session, this 160.
///
/// It is a cache, not part of the value: a clone starts empty (the copy may
/// be changed before use) and every two compare equal.
#[derive(Default)]
pub struct RenderedHeaders(OnceLock<[Option<HeaderValue>; RENDERED]>);

/// How many identity headers a session renders (all but the assertion).
const RENDERED: usize = 4;

impl RenderedHeaders {
    /// Inserts the headers for `identity` into `headers`, rendered now if
    /// this is the first use. A value that cannot be a header (control
    /// characters) is left out rather than passed mangled.
    pub fn insert_into(&self, identity: &Identity, headers: &mut HeaderMap) {
        let values = self.0.get_or_init(|| render(identity));
        for (name, value) in IDENTITY_HEADERS.into_iter().zip(values) {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
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

/// The values of the first [`RENDERED`] of [`IDENTITY_HEADERS`].
fn render(identity: &Identity) -> [Option<HeaderValue>; RENDERED] {
    let groups = (!identity.groups.is_empty()).then(|| header_list(&identity.groups));
    [
        Some(identity.subject.as_str()),
        identity.email.as_deref(),
        identity.preferred_username.as_deref(),
        groups.as_deref(),
    ]
    .map(|text| HeaderValue::from_str(text?).ok())
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

/// Every spelling of the identity header names with `-` and `_` mixed
/// (`x_auth_request_email`, `x-auth_request-email`, …), canonical first.
/// Some upstreams (CGI, WSGI, PHP, nginx with `underscores_in_headers`)
/// treat `_` and `-` alike, so a client-sent variant would pass as the real
/// header (CVE-2025-64484). Letter case needs no variants: header names are
/// case-insensitive and the proxies compare them lower-cased.
pub fn identity_header_spellings() -> &'static [Vec<String>] {
    static SPELLINGS: std::sync::LazyLock<Vec<Vec<String>>> = std::sync::LazyLock::new(|| {
        IDENTITY_HEADERS
            .iter()
            .map(|name| separator_spellings(name.as_str()))
            .collect()
    });
    &SPELLINGS
}

/// `name` with every mix of `-` and `_` at its separators, `name` first.
/// Names with more than 8 separators get only the two uniform spellings
/// besides `name` (2^n would explode; no real header has that many).
pub fn separator_spellings(name: &str) -> Vec<String> {
    let seps: Vec<usize> = name.match_indices(['-', '_']).map(|(i, _)| i).collect();
    if seps.len() > 8 {
        let mut out = vec![
            name.to_owned(),
            name.replace('_', "-"),
            name.replace('-', "_"),
        ];
        out.dedup();
        return out;
    }
    let canonical = name.replace('_', "-");
    let mut out = vec![name.to_owned()];
    for mask in 0u32..1 << seps.len() {
        let mut bytes = canonical.as_bytes().to_vec();
        for (bit, &at) in seps.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                bytes[at] = b'_';
            }
        }
        let spelling = String::from_utf8_lossy(&bytes).into_owned();
        if !out.contains(&spelling) {
            out.push(spelling);
        }
    }
    out
}

/// The request headers a proxy must strip on allow, given the identity
/// headers `set` by this answer: every `_` spelling, and the canonical names
/// this answer does not set (no email, a public route without a session), so
/// a client-sent copy never reaches the upstream. The names that are set are
/// left out on purpose: Envoy applies removals *after* setting headers, so
/// listing them would strip our own values; overwriting already replaces
/// the client's.
pub fn identity_headers_to_remove(set: &HeaderMap) -> &'static [&'static str] {
    // The few names set, compared with the five identity names: cheaper
    // than five lookups, each of which hashes its name.
    let mut set_mask = 0;
    for name in set.keys() {
        if let Some(i) = IDENTITY_HEADERS.iter().position(|known| known == name) {
            set_mask |= 1 << i;
        }
    }
    &removal_lists()[set_mask]
}

/// The removal list for each combination of identity headers set (bit `i`:
/// `IDENTITY_HEADERS[i]` is set), built once rather than on every allow.
fn removal_lists() -> &'static [Vec<&'static str>] {
    static LISTS: std::sync::LazyLock<Vec<Vec<&'static str>>> = std::sync::LazyLock::new(|| {
        (0..1usize << IDENTITY_HEADER_COUNT)
            .map(|set_mask| {
                let mut remove = Vec::new();
                for (i, spellings) in identity_header_spellings().iter().enumerate() {
                    // The canonical spelling comes first: skipped when set.
                    let skip = usize::from(set_mask & (1 << i) != 0);
                    remove.extend(spellings.iter().skip(skip).map(String::as_str));
                }
                remove
            })
            .collect()
    });
    &LISTS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Every `-`/`_` mix is listed: 2^3 spellings for three separators, 2^4
    /// for `preferred-username`.
    #[test]
    fn spellings_cover_every_separator_mix() {
        let all = identity_header_spellings();
        assert_eq!(all.len(), IDENTITY_HEADERS.len());
        let email = &all[1];
        assert_eq!(email[0], "x-auth-request-email");
        assert_eq!(email.len(), 8);
        assert!(email.iter().any(|s| s == "x_auth_request_email"));
        assert!(email.iter().any(|s| s == "x-auth_request-email"));
        assert_eq!(all[2].len(), 16);
        let total: usize = all.iter().map(Vec::len).sum();
        let mut unique: Vec<_> = all.iter().flatten().collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), total);
    }

    /// Headers we set are not removed (Envoy removes after setting); the
    /// canonical names we do not set, and every `_` spelling, are.
    #[test]
    fn removal_list_spares_what_is_set() {
        let mut set = HeaderMap::new();
        set.insert(HEADER_USER, HeaderValue::from_static("sub"));
        set.insert(HEADER_EMAIL, HeaderValue::from_static("a@example.com"));
        let remove = identity_headers_to_remove(&set);
        assert!(!remove.contains(&"x-auth-request-user"));
        assert!(!remove.contains(&"x-auth-request-email"));
        assert!(remove.contains(&"x-auth-request-groups"));
        assert!(remove.contains(&"x-auth-request-preferred-username"));
        assert!(remove.contains(&"x_auth_request_email"));
        assert!(remove.contains(&"x_auth_request_user"));
        assert!(remove.contains(&"x-auth-request-jwt"));
        assert!(remove.contains(&"x_auth_request_jwt"));
        assert_eq!(remove.len(), 8 + 8 + 16 + 8 + 8 - 2);
        let nothing_set = identity_headers_to_remove(&HeaderMap::new());
        assert_eq!(nothing_set.len(), 48);
    }

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

    fn rendered(cache: &RenderedHeaders, identity: &Identity) -> HeaderMap {
        let mut headers = HeaderMap::new();
        cache.insert_into(identity, &mut headers);
        headers
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
            text(&rendered(&cache, &alice())),
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
            text(&rendered(&cache, &identity)),
            [("x-auth-request-user".to_owned(), "s".to_owned())]
        );
    }

    /// A copy renders its own identity: a record cloned and then changed
    /// (a refresh with new groups) never carries the old headers.
    #[test]
    fn a_clone_renders_afresh() {
        let cache = RenderedHeaders::default();
        rendered(&cache, &alice());
        let mut changed = alice();
        changed.groups = vec!["staff".into()];
        let copy = cache.clone();
        assert_eq!(
            text(&rendered(&copy, &changed))[3],
            ("x-auth-request-groups".to_owned(), "staff".to_owned())
        );
    }
}
