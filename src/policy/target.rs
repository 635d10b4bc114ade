//! The original request as the proxy described it, normalised so that what
//! the policy authorises is what nginx (or Envoy) will route.
//!
//! # Canonicalisation
//! Hosts: ASCII lower case, one trailing dot removed, the scheme's default
//! port dropped, IPv6 literals kept in brackets in their canonical text form.
//! Anything else than `[a-z0-9.-]` labels (or an IP literal), an empty label,
//! userinfo or a bad port is an error.
//!
//! Paths, the way nginx prepares `$uri` before `location` matching
//! (`ngx_http_parse_complex_uri` with `merge_slashes on`):
//! 1. the fragment (`#…`) is cut off and the query (`?…`) set aside; neither
//!    takes part in matching;
//! 2. `%XX` escapes are decoded once — `%2F` becomes a real `/` and `%2E` a
//!    real `.`, exactly as nginx does; a decoded `%`, `?` or `#` is a literal;
//! 3. runs of `/` are merged;
//! 4. `.` segments are dropped and `..` removes the previous segment; a `..`
//!    that would climb above the root is an error (nginx answers 400);
//! 5. case is kept (`/Admin` is not `/admin`).
//!
//! Path parameters (`;` in a segment, RFC 3986 §3.3): nginx and Envoy keep
//! them as part of the segment, but servlet containers (Tomcat, Jetty,
//! Spring) route `/admin;jsessionid=x` as `/admin` and `/public/..;/admin`
//! as `/admin`. So a path with a `;` is matched both ways and must be
//! allowed both ways ([`Target::path_without_params`]); a `.` or `..`
//! segment carrying parameters (`..;`) is an error, as its meaning differs
//! between the two.
//!
//! Dot segments: nginx resolves them for `location` matching, but
//! `proxy_pass` without a URI part hands the upstream the request line as
//! received, and an application that routes literally reads `/admin/..` as
//! something under `/admin`. So a path with `.` or `..` segments is also
//! matched with its dots kept ([`Target::path_with_dots`]: decoded, slashes
//! merged, nothing resolved) and must be allowed both ways. Browsers resolve
//! dot segments before sending, so only hand-made requests pay for this.
//!
//! A raw backslash in the path is an error: nginx keeps it as a character,
//! WHATWG URL parsers and IIS read it as `/`, and browsers never send one.
//! An encoded one (`%5C`) is an ordinary character, as in nginx.
//!
//! Raw spaces and control characters anywhere in the path or query, a bad
//! escape, a decoded control character (NUL included) or invalid UTF-8 are
//! errors, so a request nginx would refuse is never authorised.
//!
//! Parsing borrows from its input: nothing is allocated unless the host has
//! upper case letters or the path is not already canonical.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::Ipv6Addr;

use thiserror::Error;

/// Longest host name we look at (the DNS limit).
const MAX_HOST_LEN: usize = 253;

/// Why the described request cannot be matched. Always the client's (or the
/// proxy's) fault: the caller answers 401/403, never allow.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("the URL scheme must be http or https")]
    BadScheme,
    #[error("the URL is not absolute (scheme://host/path)")]
    NotAbsolute,
    #[error("the host is empty")]
    EmptyHost,
    #[error("userinfo is not allowed in the host")]
    Userinfo,
    /// `https://host?x` or `https://host#x`: nginx's `$http_host` can end
    /// in `?` or `#` (a client's `Host: a.example.com#`), which would cut
    /// the URL's path off and have `/` decided instead.
    #[error("the host must be followed by '/' or the end of the URL")]
    AuthorityEnd,
    #[error("the host is not a valid host name or IP literal")]
    BadHost,
    #[error("the port is not a number between 1 and 65535")]
    BadPort,
    #[error("the path does not start with '/'")]
    RelativePath,
    #[error("the path or query contains a space or a control character")]
    ControlChar,
    #[error("the path contains an invalid percent-encoding")]
    BadEncoding,
    #[error("the decoded path is not valid UTF-8")]
    InvalidUtf8,
    #[error("the path climbs above the root with '..'")]
    AboveRoot,
    #[error("a '.' or '..' path segment carries ';' parameters")]
    DotSegmentParams,
    #[error("the path contains a raw backslash")]
    Backslash,
    #[error(
        "no original URL: X-Original-URL, or X-Forwarded-Proto/-Host/-Uri from a trusted proxy"
    )]
    Missing,
    /// `trusted_proxies` is set and the asking peer is not in it: nobody
    /// else may describe a request and read identity headers back.
    #[error("the peer is not in trusted_proxies")]
    UntrustedPeer,
    /// The proxy bound the question to one host (`/oauth2/auth?host=…`, as
    /// the chart's Ingresses do) and the URL names another: ingress-nginx
    /// builds `X-Original-URL` from the client's `Host`, not from the
    /// server block that routes the request.
    #[error("the URL's host is not the host the proxy asked about")]
    HostMismatch,
}

/// `http` or `https`: the only schemes a route can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// Case-insensitive, as URL schemes are.
    pub fn parse(s: &str) -> Result<Scheme, TargetError> {
        if s.eq_ignore_ascii_case("https") {
            Ok(Scheme::Https)
        } else if s.eq_ignore_ascii_case("http") {
            Ok(Scheme::Http)
        } else {
            Err(TargetError::BadScheme)
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The original request as the proxy described it, normalised for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub scheme: Scheme,
    /// Normalised host (see the module doc).
    pub host: Cow<'a, str>,
    /// Only when it is not the scheme's default port.
    pub port: Option<u16>,
    /// Canonical path, used for matching.
    pub path: Cow<'a, str>,
    /// When [`Target::path`] has `;` parameters: the same path with every
    /// segment's parameters removed, as servlet containers route it. The
    /// policy must allow both.
    pub path_without_params: Option<Cow<'a, str>>,
    /// When the path has `.` or `..` segments: the path decoded and with
    /// slashes merged but the dots kept, as a literal router reads it. The
    /// policy must allow this too.
    pub path_with_dots: Option<String>,
    /// The path exactly as received (for the return URL), `/` when empty.
    pub raw_path: &'a str,
    /// The raw query, without the `?`; never used for matching.
    pub query: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// Absolute URL as nginx sends it in `X-Original-URL`
    /// (`$scheme://$http_host$request_uri`).
    pub fn parse(url: &'a str) -> Result<Target<'a>, TargetError> {
        // Byte scans rather than `str` patterns: this runs on every decision.
        let colon = url
            .bytes()
            .position(|b| b == b':')
            .ok_or(TargetError::NotAbsolute)?;
        let (scheme, rest) = url.split_at(colon);
        let rest = rest.strip_prefix("://").ok_or(TargetError::NotAbsolute)?;
        let scheme = Scheme::parse(scheme)?;
        let end = rest
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if !(path_and_query.is_empty() || path_and_query.starts_with('/')) {
            return Err(TargetError::AuthorityEnd);
        }
        Self::build(scheme, authority, path_and_query, true)
    }

    /// From parts: `X-Forwarded-Proto`/`-Host`/`-Uri`, or Envoy's
    /// scheme/host/path attributes.
    pub fn from_parts(
        scheme: &'a str,
        authority: &'a str,
        path_and_query: &'a str,
    ) -> Result<Target<'a>, TargetError> {
        Self::build(Scheme::parse(scheme)?, authority, path_and_query, false)
    }

    fn build(
        scheme: Scheme,
        authority: &'a str,
        path_and_query: &'a str,
        empty_path_ok: bool,
    ) -> Result<Target<'a>, TargetError> {
        let (host, port) = normalize_authority(authority, scheme)?;
        if path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(TargetError::ControlChar);
        }
        // The fragment ends the URL wherever it is; a proxy should never send
        // one, and it must never widen a match (GHSA-pxq7).
        let without_fragment = match path_and_query.find('#') {
            Some(i) => &path_and_query[..i],
            None => path_and_query,
        };
        let (raw_path, query) = match without_fragment.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (without_fragment, None),
        };
        let raw_path = match raw_path {
            "" if empty_path_ok => "/",
            p if p.starts_with('/') => p,
            _ => return Err(TargetError::RelativePath),
        };
        // The common case, one pass: nothing to decode, resolve or strip.
        if is_plain(raw_path) {
            return Ok(Target {
                scheme,
                host,
                port,
                path: Cow::Borrowed(raw_path),
                path_without_params: None,
                path_with_dots: None,
                raw_path,
                query,
            });
        }
        // nginx keeps `\` as a character, but WHATWG URL parsers (Node,
        // browsers) and IIS read it as `/`, so `/public\..\admin` is
        // `/admin` to them. Browsers never send a raw one: refuse it.
        if raw_path.contains('\\') {
            return Err(TargetError::Backslash);
        }
        let path = canonical_path(raw_path)?;
        let path_without_params = strip_params(raw_path)?.map(Cow::Owned);
        let path_with_dots = keep_dots(raw_path)?;
        Ok(Target {
            scheme,
            host,
            port,
            path,
            path_without_params,
            path_with_dots,
            raw_path,
            query,
        })
    }

    /// The port requests to this target reach, default included.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }

    /// The URL to send the user back to after login: scheme, normalised host
    /// and port, and the path and query exactly as received (so the
    /// application sees the same request again). The fragment is gone: the
    /// browser never sent it and keeps it across the redirects by itself.
    pub fn return_url(&self) -> String {
        let query_len = self.query.map_or(0, |q| q.len() + 1);
        let mut url = String::with_capacity(
            self.scheme.as_str().len() + 3 + self.host.len() + 6 + self.raw_path.len() + query_len,
        );
        url.push_str(self.scheme.as_str());
        url.push_str("://");
        url.push_str(&self.host);
        if let Some(port) = self.port {
            let _ = write!(url, ":{port}");
        }
        url.push_str(self.raw_path);
        if let Some(query) = self.query {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}

/// Split `host[:port]` and normalise both (see the module doc). The port is
/// `None` when absent or equal to the scheme's default.
pub(crate) fn normalize_authority(
    authority: &str,
    scheme: Scheme,
) -> Result<(Cow<'_, str>, Option<u16>), TargetError> {
    if authority.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    if authority.contains('@') {
        return Err(TargetError::Userinfo);
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(TargetError::BadHost)?;
        let (host, rest) = authority.split_at(close + 1);
        match rest {
            "" => (host, None),
            _ => (
                host,
                Some(rest.strip_prefix(':').ok_or(TargetError::BadPort)?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?).filter(|&p| p != scheme.default_port()),
    };
    Ok((normalize_host(host)?, port))
}

fn parse_port(p: &str) -> Result<u16, TargetError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::BadPort);
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(TargetError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// Normalise a host without its port: lower case, no trailing dot, strict
/// characters; IPv6 literals in canonical bracketed form.
pub(crate) fn normalize_host(host: &str) -> Result<Cow<'_, str>, TargetError> {
    if host.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(TargetError::BadHost)?;
        let addr: Ipv6Addr = inner.parse().map_err(|_| TargetError::BadHost)?;
        // Compare with the canonical text on the stack, to borrow when equal.
        let mut buf = StackStr::<48>::new();
        write!(buf, "[{addr}]").map_err(|_| TargetError::BadHost)?;
        return Ok(if buf.as_str() == host {
            Cow::Borrowed(host)
        } else {
            Cow::Owned(buf.as_str().to_owned())
        });
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return Err(if host.is_empty() {
            TargetError::EmptyHost
        } else {
            TargetError::BadHost
        });
    }
    let mut upper = false;
    let mut prev_dot = true; // a leading dot is an empty label
    for b in host.bytes() {
        match b {
            b'.' if prev_dot => return Err(TargetError::BadHost),
            b'.' => prev_dot = true,
            b'a'..=b'z' | b'0'..=b'9' | b'-' => prev_dot = false,
            b'A'..=b'Z' => {
                upper = true;
                prev_dot = false;
            }
            _ => return Err(TargetError::BadHost),
        }
    }
    if prev_dot {
        return Err(TargetError::BadHost);
    }
    Ok(if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// Canonicalise a raw path (query and fragment already removed) as nginx
/// does; see the module doc. Borrows when nothing changes.
pub(crate) fn canonical_path(raw: &str) -> Result<Cow<'_, str>, TargetError> {
    if !raw.starts_with('/') {
        return Err(TargetError::RelativePath);
    }
    if is_canonical(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode_strict(raw.as_bytes())?;
    if decoded.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err(TargetError::ControlChar);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| TargetError::InvalidUtf8)?;
    let mut out = String::with_capacity(decoded.len());
    // `decoded` starts with '/': the first split item is the empty root.
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                // Drop the last segment, keeping its leading '/' out too.
                let cut = out.rfind('/').ok_or(TargetError::AboveRoot)?;
                out.truncate(cut);
                trailing_slash = true;
            }
            _ => {
                out.push('/');
                out.push_str(segment);
                trailing_slash = false;
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// `raw` decoded with runs of `/` merged and its `.` and `..` segments
/// kept; `None` when it has none (the common case, no allocation).
fn keep_dots(raw: &str) -> Result<Option<String>, TargetError> {
    let has_dots = |path: &str| path.split('/').any(|s| s == "." || s == "..");
    if !raw.contains('%') && !has_dots(raw) {
        return Ok(None);
    }
    let decoded = String::from_utf8(percent_decode_strict(raw.as_bytes())?)
        .map_err(|_| TargetError::InvalidUtf8)?;
    if !has_dots(&decoded) {
        return Ok(None);
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in decoded.split('/').skip(1) {
        if !segment.is_empty() {
            out.push('/');
            out.push_str(segment);
        }
    }
    if decoded.ends_with('/') || out.is_empty() {
        out.push('/');
    }
    Ok(Some(out))
}

/// The servlet reading of `raw`: decoded, each segment's `;…` parameters
/// removed *before* dot segments are resolved (as Tomcat does, so
/// `/public/.;/../admin` is `/admin` there while nginx reads
/// `/public/admin`), slashes merged; `None` when there is no `;`. A `.` or
/// `..` segment with parameters is [`TargetError::DotSegmentParams`].
fn strip_params(raw: &str) -> Result<Option<String>, TargetError> {
    if !raw.contains(';') && !raw.contains('%') {
        return Ok(None);
    }
    let decoded = String::from_utf8(percent_decode_strict(raw.as_bytes())?)
        .map_err(|_| TargetError::InvalidUtf8)?;
    if !decoded.contains(';') {
        return Ok(None);
    }
    let mut names: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        let (name, params) = match segment.split_once(';') {
            Some((name, _)) => (name, true),
            None => (segment, false),
        };
        if params && (name == "." || name == "..") {
            return Err(TargetError::DotSegmentParams);
        }
        match name {
            "" | "." => trailing_slash = true,
            ".." => {
                names.pop().ok_or(TargetError::AboveRoot)?;
                trailing_slash = true;
            }
            _ => {
                names.push(name);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for name in names {
        out.push('/');
        out.push_str(name);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(Some(out))
}

/// True when `raw` (starting with `/`) needs none of the work of
/// [`Target::build`]: no `%`, `;` or `\\`, and no empty (`//`), `.` or `..`
/// segment; so it is its own canonical path, has no parameters and no dot
/// segments. One pass over the bytes.
fn is_plain(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    // Where the current segment started (just after its `/`).
    let mut start = 1;
    for i in 1..=bytes.len() {
        let end = i == bytes.len();
        if !end && !matches!(bytes[i], b'/') {
            if matches!(bytes[i], b'%' | b';' | b'\\') {
                return false;
            }
            continue;
        }
        match &bytes[start..i] {
            b"" if !end => return false,
            b"." | b".." => return false,
            _ => {}
        }
        start = i + 1;
    }
    true
}

/// True when canonicalisation would not change `raw`: no escapes, no empty
/// (`//`), `.` or `..` segments.
fn is_canonical(raw: &str) -> bool {
    if raw.contains('%') {
        return false;
    }
    let mut segments = raw.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" if !last => return false,
            "." | ".." => return false,
            _ => {}
        }
    }
    true
}

/// Decode every `%XX`; a `%` not followed by two hex digits is an error
/// (nginx answers 400).
pub(crate) fn percent_decode_strict(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).and_then(|&c| hex_value(c));
            let lo = raw.get(i + 2).and_then(|&c| hex_value(c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                _ => return Err(TargetError::BadEncoding),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A fixed-size `fmt::Write` buffer, to format small values without
/// allocating.
struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this cannot fail.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn path_of(url: &str) -> Result<String, TargetError> {
        Target::parse(url).map(|t| t.path.into_owned())
    }

    /// The one-pass shortcut for plain paths gives exactly what the full
    /// canonicalisation gives, and turns down every path that needs it.
    #[test]
    fn plain_paths_take_the_shortcut_only_when_nothing_changes() {
        let paths = [
            "/",
            "/admin",
            "/api/",
            "/a/b/c",
            "/...",
            "/a.b/..c/.d",
            "/Admin",
            "//admin",
            "/a//b",
            "/api//",
            "/./a",
            "/a/.",
            "/a/..",
            "/x/../admin",
            "/%61",
            "/a;b",
            "/a\\b",
            "/.;/a",
            "/a/b;c/..",
            "/.",
            "/..",
            "/a/./",
        ];
        for raw in paths {
            let full_is_identity = !raw.contains('\\')
                && canonical_path(raw) == Ok(Cow::Borrowed(raw))
                && strip_params(raw) == Ok(None)
                && keep_dots(raw) == Ok(None);
            assert_eq!(is_plain(raw), full_is_identity, "{raw}");
        }
    }

    /// Paths are canonicalised the way nginx does before `location` matching.
    #[test]
    fn path_canonicalisation_table() {
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%2Fadmin", "/admin"),
            ("/a%2fb", "/a/b"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/x/../admin", "/admin"),
            ("/x/%2e%2e/admin", "/admin"),
            ("/x/.%2E/admin", "/admin"),
            ("/x%2F..%2Fadmin", "/admin"),
            ("/./admin/.", "/admin/"),
            ("/a/b/..", "/a/"),
            ("/a/..", "/"),
            ("/api/", "/api/"),
            ("/api//", "/api/"),
            ("/Admin", "/Admin"),
            ("/...", "/..."),
            ("/a%25b", "/a%b"),
            ("/a%2525", "/a%25"),
            ("/%23x", "/#x"),
            ("/%3Fx", "/?x"),
            ("/my%20file", "/my file"),
            ("/caf%C3%A9", "/café"),
            ("/café", "/café"),
            ("/a+b", "/a+b"),
            ("/a%5Cb", "/a\\b"),
        ];
        for (raw, want) in cases {
            let url = format!("https://h.example.com{raw}");
            assert_eq!(path_of(&url).as_deref(), Ok(*want), "{raw}");
        }
    }

    /// Inputs nginx would refuse, or that we must not guess about, are errors.
    #[test]
    fn path_errors_table() {
        let cases: &[(&str, TargetError)] = &[
            ("/..", TargetError::AboveRoot),
            ("/a/../..", TargetError::AboveRoot),
            ("/a\\b", TargetError::Backslash),
            ("/public\\..\\admin", TargetError::Backslash),
            ("/%2e%2e/etc", TargetError::AboveRoot),
            ("/%", TargetError::BadEncoding),
            ("/%4", TargetError::BadEncoding),
            ("/%zz", TargetError::BadEncoding),
            ("/%00", TargetError::ControlChar),
            ("/a%0ab", TargetError::ControlChar),
            ("/a%7f", TargetError::ControlChar),
            ("/%ff", TargetError::InvalidUtf8),
            ("/%c3", TargetError::InvalidUtf8),
            ("/a b", TargetError::ControlChar),
            ("/a\tb", TargetError::ControlChar),
            ("/a?x=1 2", TargetError::ControlChar),
        ];
        for (raw, want) in cases {
            let url = format!("https://h.example.com{raw}");
            assert_eq!(path_of(&url), Err(*want), "{raw:?}");
        }
        assert_eq!(
            Target::from_parts("https", "h.example.com", "admin"),
            Err(TargetError::RelativePath)
        );
        assert_eq!(
            Target::from_parts("https", "h.example.com", ""),
            Err(TargetError::RelativePath)
        );
    }

    /// Dot segments: the path is resolved as nginx does, and the reading with
    /// the dots kept (decoded, slashes merged) is offered beside it, so that
    /// `/admin/..` is also matched as something under `/admin`.
    #[test]
    fn dot_segments_are_also_read_as_written() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/admin", "/admin", None),
            ("/admin/x.y/..z", "/admin/x.y/..z", None),
            ("/admin/..", "/", Some("/admin/..")),
            ("/admin%2f..", "/", Some("/admin/..")),
            ("/public/%2e%2e//admin", "/admin", Some("/public/../admin")),
            ("/./admin/", "/admin/", Some("/./admin/")),
            ("/%61dmin", "/admin", None),
        ];
        for (raw, path, dots) in cases {
            let url = format!("https://h.example.com{raw}");
            let t = Target::parse(&url).unwrap();
            assert_eq!(t.path, *path, "{raw}");
            assert_eq!(t.path_with_dots.as_deref(), *dots, "{raw}");
        }
    }

    /// `;` parameters: the path is kept as nginx sees it, and the servlet
    /// reading (parameters removed) is offered beside it; `..;` and `.;`
    /// are errors.
    #[test]
    fn path_parameters_table() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/admin", "/admin", None),
            ("/admin;x=1", "/admin;x=1", Some("/admin")),
            ("/admin;", "/admin;", Some("/admin")),
            (
                "/admin;jsessionid=1/y",
                "/admin;jsessionid=1/y",
                Some("/admin/y"),
            ),
            ("/admin%3bx", "/admin;x", Some("/admin")),
            ("/public;x=1/", "/public;x=1/", Some("/public/")),
            ("/;x/admin", "/;x/admin", Some("/admin")),
            ("/a/b;c=d;e", "/a/b;c=d;e", Some("/a/b")),
            ("/x/..;a/b", "/x/..;a/b", None),
        ];
        for (raw, path, stripped) in cases {
            let url = format!("https://h.example.com{raw}");
            match Target::parse(&url) {
                Ok(t) => {
                    assert_eq!(t.path, *path, "{raw}");
                    assert_eq!(t.path_without_params.as_deref(), *stripped, "{raw}");
                }
                Err(e) => {
                    assert_eq!(e, TargetError::DotSegmentParams, "{raw}");
                    assert!(raw.contains("..;"));
                }
            }
        }
        for raw in [
            "/public/..;/admin",
            "/.;/admin",
            "/a/..;x=1/b",
            "/a/.%3b/b",
            // nginx's `..` removes the `.;` before any `;` is seen.
            "/public/.;/../admin",
        ] {
            let url = format!("https://h.example.com{raw}");
            assert_eq!(
                Target::parse(&url),
                Err(TargetError::DotSegmentParams),
                "{raw}"
            );
        }
    }

    /// Query and fragment are split off the raw input and never matched.
    #[test]
    fn query_and_fragment_are_excluded() {
        let t = Target::parse("https://h.example.com/private?x=/public#/public").unwrap();
        assert_eq!(t.path, "/private");
        assert_eq!(t.query, Some("x=/public"));
        let t = Target::parse("https://h.example.com/private#/x?y=/public").unwrap();
        assert_eq!(t.path, "/private");
        assert_eq!(t.query, None);
        let t = Target::parse("https://h.example.com/p%23/../public").unwrap();
        assert_eq!(
            t.path, "/public",
            "a decoded # is a literal, not a fragment"
        );
    }

    /// Hosts are lower-cased, lose a trailing dot and the default port.
    #[test]
    fn host_normalisation_table() {
        let cases: &[(&str, &str, Option<u16>)] = &[
            ("https://a.B.example.com/", "a.b.example.com", None),
            ("https://EXAMPLE.com./", "example.com", None),
            ("https://example.com:443/", "example.com", None),
            ("http://example.com:80/", "example.com", None),
            ("http://example.com:443/", "example.com", Some(443)),
            ("https://example.com:8443/", "example.com", Some(8443)),
            ("https://example.com:08443/", "example.com", Some(8443)),
            ("HTTPS://example.com/", "example.com", None),
            ("https://127.0.0.1/", "127.0.0.1", None),
            ("https://[::1]/", "[::1]", None),
            ("https://[::1]:8443/", "[::1]", Some(8443)),
            ("https://[0:0:0:0:0:0:0:1]/", "[::1]", None),
            ("https://[2001:DB8::1]/", "[2001:db8::1]", None),
        ];
        for (url, host, port) in cases {
            let t = Target::parse(url).unwrap();
            assert_eq!((t.host.as_ref(), t.port), (*host, *port), "{url}");
        }
    }

    #[test]
    fn host_errors_table() {
        let cases: &[(&str, TargetError)] = &[
            ("https:///x", TargetError::EmptyHost),
            ("https://:443/x", TargetError::EmptyHost),
            ("https://./x", TargetError::EmptyHost),
            ("https://user@example.com/", TargetError::Userinfo),
            ("https://user:pw@example.com/", TargetError::Userinfo),
            ("https://example.com:0/", TargetError::BadPort),
            ("https://example.com:65536/", TargetError::BadPort),
            ("https://example.com:/", TargetError::BadPort),
            ("https://example.com:1:2/", TargetError::BadPort),
            ("https://example.com:+80/", TargetError::BadPort),
            ("https://exa_mple.com/", TargetError::BadHost),
            ("https://exa%6dple.com/", TargetError::BadHost),
            ("https://a..example.com/", TargetError::BadHost),
            ("https://.example.com/", TargetError::BadHost),
            ("https://example.com../", TargetError::BadHost),
            ("https://exämple.com/", TargetError::BadHost),
            ("https://[::1/", TargetError::BadHost),
            ("https://[::1]x/", TargetError::BadPort),
            ("https://[fe80::1%25eth0]/", TargetError::BadHost),
            ("https://[example.com]/", TargetError::BadHost),
            ("ftp://example.com/", TargetError::BadScheme),
            ("example.com/x", TargetError::NotAbsolute),
            // `Host: public.example.com#` or `…?` in nginx's `$http_host`:
            // what follows the host must not be dropped as a fragment or
            // read as a query, or `/` would be decided instead of the path.
            ("https://h.example.com#/admin", TargetError::AuthorityEnd),
            ("https://h.example.com#", TargetError::AuthorityEnd),
            ("https://h.example.com?/admin", TargetError::AuthorityEnd),
            ("https://h.example.com?a=1", TargetError::AuthorityEnd),
            ("/x", TargetError::NotAbsolute),
        ];
        for (url, want) in cases {
            assert_eq!(Target::parse(url), Err(*want), "{url}");
        }
        let long = format!("https://{}.com/", "a".repeat(260));
        assert_eq!(Target::parse(&long), Err(TargetError::BadHost));
    }

    /// Already-canonical input is borrowed, not copied.
    #[test]
    fn canonical_input_is_borrowed() {
        let t = Target::parse("https://app.example.com/api/v1/items?x=1").unwrap();
        assert!(matches!(t.host, Cow::Borrowed(_)));
        assert!(matches!(t.path, Cow::Borrowed(_)));
        let t = Target::from_parts("https", "app.example.com:443", "/api/").unwrap();
        assert!(matches!(t.host, Cow::Borrowed(_)));
        assert!(matches!(t.path, Cow::Borrowed(_)));
        let t = Target::parse("https://[::1]/").unwrap();
        assert!(matches!(t.host, Cow::Borrowed(_)));
        let t = Target::parse("https://App.example.com//api").unwrap();
        assert!(matches!(t.host, Cow::Owned(_)));
        assert!(matches!(t.path, Cow::Owned(_)));
    }

    /// The return URL keeps the raw path and query but normalises the origin.
    #[test]
    fn return_url_keeps_raw_path_and_query() {
        let cases: &[(&str, &str)] = &[
            (
                "https://App.Example.com:443/%61dmin//x?q=a%20b#frag",
                "https://app.example.com/%61dmin//x?q=a%20b",
            ),
            ("http://example.com:8080/", "http://example.com:8080/"),
            ("https://example.com", "https://example.com/"),
            ("https://example.com/x?", "https://example.com/x?"),
            ("https://[::1]:8443/a", "https://[::1]:8443/a"),
        ];
        for (url, want) in cases {
            assert_eq!(Target::parse(url).unwrap().return_url(), *want, "{url}");
        }
        let t = Target::from_parts("HTTPS", "Example.com", "/p?x=1").unwrap();
        assert_eq!(t.return_url(), "https://example.com/p?x=1");
    }
}
