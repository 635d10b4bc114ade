//! The `rd` allow-list: where `/oauth2/start` and `/oauth2/sign_out` may
//! send the browser afterwards (open-redirect defence).
//!
//! Only two shapes pass, and only in their plain form:
//! - a path on the login host, `/` then anything but a second `/` or `\`;
//! - an absolute `https` URL (`http` only in a plain-http development setup)
//!   whose host is the login host, the cookie domain or a dot-anchored
//!   subdomain of it, or a host some route serves.
//!
//! Everything browsers or servers might read another way is refused rather
//! than repaired: backslashes, whitespace and control characters raw, control
//! characters percent-encoded anywhere, encoded whitespace or backslashes in
//! the path, a `%` in the host, userinfo, encoded slashes in the first path
//! segment, empty, `.` and `..` path segments (also when encoded), a query
//! or fragment carrying another URL, non-http schemes, and targets that
//! would start a new login (a redirect loop). The checks are tested against
//! oauth2-proxy's public corpus of 559 payloads.
//!
//! One deliberate allowance: an encoded space in the query (`?q=a%20b`) is
//! ordinary in deep links and cannot change where a browser goes, so it
//! passes; in the path it is refused like its raw form (CVE-2020-4037).

use std::borrow::Cow;

use percent_encoding::{CONTROLS, utf8_percent_encode};
use thiserror::Error;
use url::Url;

use crate::policy::Policy;
use crate::policy::target::{self, Scheme, TargetError};

/// Longest return URL accepted, in bytes.
pub const MAX_RD_LEN: usize = 2048;

/// Why a return URL was refused. The messages never repeat the URL, so they
/// are safe to show on an error page.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum RedirectError {
    #[error("the return URL is empty")]
    Empty,
    #[error("the return URL is longer than 2048 bytes")]
    TooLong,
    #[error(
        "the return URL contains a forbidden character (whitespace, control, backslash or quote)"
    )]
    ForbiddenCharacter,
    #[error("the return URL must be a path starting with a single '/' or an absolute https URL")]
    Malformed,
    #[error("the return URL's scheme is not allowed")]
    SchemeNotAllowed,
    #[error("the return URL must not contain a user name or password")]
    Userinfo,
    #[error("the return URL's host is not valid")]
    InvalidHost,
    #[error("the return URL's host is not an allowed destination")]
    HostNotAllowed,
    #[error("the return URL's path contains an invalid percent-encoding")]
    BadEncoding,
    #[error("the return URL's path is ambiguous (empty, '.' or '..' segments, or encoded slashes)")]
    AmbiguousPath,
    #[error("the return URL carries another URL in its query or fragment")]
    NestedUrl,
    #[error("the return URL points back at the sign-in endpoints")]
    Loop,
}

/// The allow-list, built once from the configuration.
#[derive(Clone, Debug)]
pub struct RedirectRules {
    /// `scheme://host[:port]` of the login host: relative targets go there.
    login_origin: String,
    /// Normalised login host.
    login_host: String,
    /// `/oauth2/start` and `/oauth2/callback` under the login base path.
    loop_paths: [String; 2],
    /// Normalised cookie domain (no leading dot).
    cookie_domain: Option<String>,
    allow_http: bool,
}

impl RedirectRules {
    /// `login_base` = `authenticate_service_url`; `cookie_domain` normalised
    /// (a leading dot is ignored); `allow_http` = whether `http://` targets
    /// are acceptable (only when cookies are not `Secure`: plain-http dev).
    pub fn new(login_base: &Url, cookie_domain: Option<&str>, allow_http: bool) -> Self {
        let scheme = Scheme::parse(login_base.scheme()).unwrap_or(Scheme::Https);
        let raw_host = login_base.host_str().unwrap_or_default();
        // The config is validated; an odd host just matches nothing.
        let login_host = target::normalize_host(raw_host)
            .map_or_else(|_| raw_host.to_ascii_lowercase(), Cow::into_owned);
        let port = login_base
            .port()
            .filter(|&p| p != scheme.default_port())
            .map_or_else(String::new, |p| format!(":{p}"));
        let base_path = login_base.path().trim_end_matches('/');
        RedirectRules {
            login_origin: format!("{scheme}://{login_host}{port}"),
            login_host,
            loop_paths: [
                format!("{base_path}/oauth2/start"),
                format!("{base_path}/oauth2/callback"),
            ],
            cookie_domain: cookie_domain.and_then(normalize_domain),
            allow_http,
        }
    }

    /// Validate a return URL (`rd` of `/oauth2/start` and `/oauth2/sign_out`,
    /// as received after the one query-decoding the HTTP framework does).
    /// `Ok` is the absolute URL to redirect to.
    pub fn check(&self, rd: &str, policy: &Policy) -> Result<String, RedirectError> {
        if rd.is_empty() {
            return Err(RedirectError::Empty);
        }
        if rd.len() > MAX_RD_LEN {
            return Err(RedirectError::TooLong);
        }
        if rd.chars().any(forbidden_char) || has_encoded_control(rd) {
            return Err(RedirectError::ForbiddenCharacter);
        }
        if rd.starts_with('/') {
            return self.check_relative(rd);
        }
        self.check_absolute(rd, policy)
    }

    fn check_relative(&self, rd: &str) -> Result<String, RedirectError> {
        // `//host` and `/\host` are protocol-relative to browsers
        // (bitly#478, CVE-2020-5233).
        if matches!(rd.as_bytes().get(1), Some(b'/' | b'\\')) {
            return Err(RedirectError::Malformed);
        }
        let (path, query) = split_path(rd);
        let decoded = check_path(path)?;
        check_query(query)?;
        if self.is_loop(&decoded) {
            return Err(RedirectError::Loop);
        }
        Ok(format!(
            "{}{}",
            self.login_origin,
            utf8_percent_encode(rd, CONTROLS)
        ))
    }

    fn check_absolute(&self, rd: &str, policy: &Policy) -> Result<String, RedirectError> {
        let (scheme, rest) = rd.split_once(':').ok_or(RedirectError::Malformed)?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(RedirectError::Malformed);
        }
        let scheme = match Scheme::parse(scheme) {
            Ok(Scheme::Https) => Scheme::Https,
            Ok(Scheme::Http) if self.allow_http => Scheme::Http,
            _ => return Err(RedirectError::SchemeNotAllowed),
        };
        // `https:host` and `https:/host` are read differently by browsers and
        // URL libraries: only `scheme://` is accepted.
        let rest = rest.strip_prefix("//").ok_or(RedirectError::Malformed)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path_and_more) = rest.split_at(end);
        if authority.contains('%') {
            return Err(RedirectError::InvalidHost);
        }
        let (host, port) = target::normalize_authority(authority, scheme).map_err(|e| match e {
            TargetError::Userinfo => RedirectError::Userinfo,
            _ => RedirectError::InvalidHost,
        })?;
        if !self.host_allowed(&host, policy) {
            return Err(RedirectError::HostNotAllowed);
        }
        let (path, query) = split_path(path_and_more);
        check_query(query)?;
        if !path.is_empty() {
            let decoded = check_path(path)?;
            if *host == *self.login_host && self.is_loop(&decoded) {
                return Err(RedirectError::Loop);
            }
        }
        let port = port.map_or_else(String::new, |p| format!(":{p}"));
        Ok(format!(
            "{scheme}://{host}{port}{}",
            utf8_percent_encode(path_and_more, CONTROLS)
        ))
    }

    /// The login host, the cookie domain and its subdomains (dot-anchored:
    /// never `evilexample.com` or `example.com.evil.com`, CVE-2021-21291), or
    /// a host a route serves.
    fn host_allowed(&self, host: &str, policy: &Policy) -> bool {
        if host == self.login_host {
            return true;
        }
        if let Some(domain) = &self.cookie_domain
            && in_domain(host, domain)
        {
            return true;
        }
        policy.serves_host(host)
    }

    /// Would redirecting to `path` on the login host start another login
    /// (oauth2-proxy#3201)?
    fn is_loop(&self, path: &str) -> bool {
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        self.loop_paths.iter().any(|p| p == path)
    }
}

/// A configured cookie domain as compared with hosts: lower case, without
/// the leading or trailing dot; `None` if nothing is left.
pub(crate) fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// Whether a normalised `host` is `domain` or a subdomain of it,
/// dot-anchored: never `evilexample.com` or `example.com.evil.com` for
/// `example.com` (CVE-2021-21291).
pub(crate) fn in_domain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
}

/// Raw characters never allowed anywhere: whitespace and controls (ASCII or
/// not), backslashes (browsers read `\` as `/`), and the quotes and angle
/// brackets a valid URL always percent-encodes.
fn forbidden_char(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '\\' | '"' | '<' | '>' | '`')
}

/// `%00`–`%1F` and `%7F` anywhere (CVE-2020-11053 used `%09`, `%0a`, `%0b`,
/// `%0d` between slashes).
fn has_encoded_control(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (target::hex_value(w[1]), target::hex_value(w[2])),
                (Some(hi), Some(lo)) if hi < 2 || (hi == 7 && lo == 0xf)
            )
    })
}

/// Split `path?query#fragment` into the path and the rest.
fn split_path(s: &str) -> (&str, &str) {
    s.split_at(s.find(['?', '#']).unwrap_or(s.len()))
}

/// Refuse paths that a browser, nginx or the application could resolve to
/// something else than they look like; returns the decoded path.
///
/// Empty segments are refused everywhere, not only at the start:
/// `/https://evil.com` is a harmless path to a browser, but applications
/// that strip the leading `/` or collapse slashes turn it into an absolute
/// URL, and oauth2-proxy's corpus lists it as a payload. nginx merges
/// slashes anyway, so no legitimate target needs them.
fn check_path(path: &str) -> Result<String, RedirectError> {
    let first_segment = path[1..].split('/').next().unwrap_or_default();
    let lower = first_segment.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(RedirectError::AmbiguousPath);
    }
    let decoded =
        target::percent_decode_strict(path.as_bytes()).map_err(|_| RedirectError::BadEncoding)?;
    let decoded = String::from_utf8(decoded).map_err(|_| RedirectError::BadEncoding)?;
    // Encoded whitespace (`%20`), backslashes or quotes in the path are
    // refused like their raw forms.
    if decoded.chars().any(forbidden_char) {
        return Err(RedirectError::ForbiddenCharacter);
    }
    let mut segments = decoded.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(segment, "." | "..") || (segment.is_empty() && !last) {
            return Err(RedirectError::AmbiguousPath);
        }
    }
    Ok(decoded)
}

/// Refuse a query or fragment that carries another URL (`//host` or
/// `scheme://host`), raw or percent-encoded once.
///
/// Such a target is on an allowed host, so it is not an open redirect by
/// itself; but the application there may redirect to that parameter (the
/// corpus has `/redirect?url=//example.com` and
/// `/ReceiveAutoRedirect/false?desiredLocationUrl=http://xssposed.org`),
/// chaining our allow-list into its open redirect. Losing a deep link whose
/// query holds a URL costs the user one click; the caller falls back to its
/// default target.
fn check_query(query_and_fragment: &str) -> Result<(), RedirectError> {
    if query_and_fragment.is_empty() {
        return Ok(());
    }
    let decoded = percent_encoding::percent_decode_str(query_and_fragment).decode_utf8_lossy();
    if query_and_fragment.contains("//") || decoded.contains("//") || decoded.contains('\\') {
        return Err(RedirectError::NestedUrl);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
