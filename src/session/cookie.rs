//! The session cookie's attributes, in one place: the login sets the
//! cookie, a decision re-issues it after a secret rotation, sign-out clears
//! it, and all three must agree on name, domain and flags or the browser
//! would keep two cookies. And the one parser of `Cookie` headers every
//! front end reads it with.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::HeaderValue;

use crate::config::CookieConfig;

/// Builds `Set-Cookie` values for the session cookie.
#[derive(Clone, Debug)]
pub struct SessionCookie {
    name: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
}

impl SessionCookie {
    /// From `cookie_name`, `cookie_domain`, `cookie_secure` and
    /// `cookie_http_only`.
    pub fn new(config: &CookieConfig) -> SessionCookie {
        SessionCookie {
            name: config.name.clone(),
            domain: config.domain.clone(),
            secure: config.secure,
            http_only: config.http_only,
        }
    }

    /// The cookie: on `cookie_domain` (every subdomain) or host-only, path
    /// `/`, `SameSite=Lax` (it must come along on the provider's redirect
    /// back), expiring after `max_age`.
    pub fn build(&self, value: String, max_age: Duration) -> Cookie<'static> {
        let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let mut builder = Cookie::build((self.name.clone(), value))
            .path("/")
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(max_age));
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.clone());
        }
        builder.build()
    }

    /// The `Set-Cookie` header value; `None` only if `value` holds
    /// characters a header cannot (never for a sealed value).
    pub fn header(&self, value: &str, max_age: Duration) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.build(value.to_owned(), max_age).to_string()).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::Secret;

    fn config(domain: Option<&str>) -> CookieConfig {
        CookieConfig {
            name: "_authgate".into(),
            domain: domain.map(str::to_owned),
            secure: true,
            http_only: true,
            expire: Duration::from_secs(3600),
            idle_timeout: None,
            secret: Secret::new(vec![1u8; 32]),
            previous_secrets: Vec::new(),
        }
    }

    /// The header carries every attribute the login's cookie has, so a
    /// re-issued cookie replaces the old one instead of sitting beside it.
    #[test]
    fn header_has_every_attribute() {
        let header = SessionCookie::new(&config(Some("example.com")))
            .header("abc", Duration::from_secs(120))
            .unwrap();
        let text = header.to_str().unwrap();
        for part in [
            "_authgate=abc",
            "Path=/",
            "Domain=example.com",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=120",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        let host_only = SessionCookie::new(&config(None))
            .header("abc", Duration::ZERO)
            .unwrap();
        assert!(!host_only.to_str().unwrap().contains("Domain"));
        assert!(host_only.to_str().unwrap().contains("Max-Age=0"));
    }
}

/// Every value of the cookie `name` in `lines` (the text of each `Cookie`
/// header), in order, without allocating. Pairs are split on `;` and on
/// `,` too: Envoy joins repeated `cookie` headers (and HTTP/2 cookie
/// crumbs) with `,`, and a cookie value cannot contain one (RFC 6265). A
/// quoted value is unquoted.
pub fn cookie_values<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    lines.into_iter().flat_map(pairs).filter_map(move |pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then(|| value.trim_matches('"'))
    })
}

/// `line` split on `;` and `,`, as `str::split` would. The separators are
/// found with `memchr2`, many bytes at a time: a session cookie is hundreds
/// of bytes, which a split on a set of chars decodes one char at a time,
/// on every decision.
fn pairs(line: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    memchr::memchr2_iter(b';', b',', line.as_bytes())
        .chain(std::iter::once(line.len()))
        .map(move |end| {
            // Both separators are ASCII, so every bound is a char boundary.
            let pair = line.get(start..end).unwrap_or_default();
            start = end + 1;
            pair
        })
}

#[cfg(test)]
mod parser_tests {
    use super::cookie_values;

    /// Every value of the name, across lines and both separators; a name
    /// that only starts with it is not taken.
    #[test]
    fn finds_every_value_of_a_name() {
        let lines = [
            "a=1; _authgate=first; _authgate_login_x=no",
            "_authgate=\"second\", b=2,_authgate=third",
        ];
        let values: Vec<_> = cookie_values(lines, "_authgate").collect();
        assert_eq!(values, ["first", "second", "third"]);
        assert_eq!(cookie_values(["x"], "_authgate").count(), 0);
    }

    /// The pairs are `str::split`'s on `;` and `,`: empty ones at either
    /// end and between two separators included, multi-byte text kept whole.
    #[test]
    fn pairs_split_like_str_split() {
        for line in [
            "",
            ";",
            "a",
            "a=1; b=2",
            ";a=1;;b=2,",
            ",,",
            "é=ü; _authgate=x,ÿ",
            "_authgate=\"v\"",
        ] {
            let ours: Vec<_> = super::pairs(line).collect();
            let std: Vec<_> = line.split([';', ',']).collect();
            assert_eq!(ours, std, "{line:?}");
        }
    }
}
