//! Who is asking: facts about the original request that choose the shape
//! of the answer, decided here once so every front end agrees.

use super::verdict::Decision;

/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`: what a
/// browser sends, without credentials, before a cross-origin call.
/// `header` looks up a lower-case header name.
pub fn is_preflight<'h>(method: Option<&str>, header: impl Fn(&str) -> Option<&'h str>) -> bool {
    method == Some("OPTIONS")
        && header("origin").is_some()
        && header("access-control-request-method").is_some()
}

/// Who is asking, for front ends whose answer reaches the client itself
/// (Envoy, forward-auth, HAProxy): a browser navigating is sent to the
/// sign-in page, a program is told 401 (a redirect to an HTML login would
/// only confuse it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Browser,
    Program,
}

impl Client {
    /// A program when the request is gRPC or gRPC-Web (`Content-Type:
    /// application/grpc…`), an XHR (`X-Requested-With: XMLHttpRequest`), or
    /// its `Accept` does not prefer HTML: `*/*` alone (curl, `fetch`), no
    /// `Accept`, or `application/json` ranked above `text/html`. `header`
    /// looks up a lower-case header name.
    pub fn classify<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Client {
        let grpc = header("content-type").is_some_and(|v| {
            v.trim_start()
                .get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        });
        let xhr = header("x-requested-with")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("xmlhttprequest"));
        if grpc || xhr {
            return Client::Program;
        }
        match header("accept") {
            Some(accept) if prefers_html(accept) => Client::Browser,
            _ => Client::Program,
        }
    }

    /// Who is asking, as far as `decision`'s answer depends on it: only a
    /// sign-in is told apart (redirect or 401), so the headers are read
    /// for nothing else; any other answer is the same for both.
    pub fn for_decision<'h>(
        decision: &Decision,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Client {
        match decision {
            Decision::SignIn { .. } => Client::classify(header),
            _ => Client::Program,
        }
    }
}

/// Does this `Accept` rank HTML at least as high as every other explicitly
/// named type? Wildcards count for neither side: browsers name `text/html`.
fn prefers_html(accept: &str) -> bool {
    let mut html = 0.0f32;
    let mut other = 0.0f32;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media.eq_ignore_ascii_case("text/html")
            || media.eq_ignore_ascii_case("application/xhtml+xml")
        {
            html = html.max(q);
        } else if !media.ends_with("/*") && !media.is_empty() {
            other = other.max(q);
        }
    }
    html > 0.0 && html >= other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(pairs: &[(&'static str, &'static str)]) -> Client {
        Client::classify(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }
    /// What Chrome and Firefox send for a navigation is a browser; curl,
    /// fetch's default, JSON clients, XHR and gRPC(-Web) are programs.
    #[test]
    fn browsers_and_programs_are_told_apart() {
        let chrome =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert_eq!(classify(&[("accept", chrome)]), Client::Browser);
        assert_eq!(
            classify(&[(
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
            )]),
            Client::Browser
        );
        assert_eq!(classify(&[("accept", "*/*")]), Client::Program);
        assert_eq!(classify(&[]), Client::Program);
        assert_eq!(classify(&[("accept", "application/json")]), Client::Program);
        assert_eq!(
            classify(&[("accept", "application/json, text/html;q=0.5")]),
            Client::Program
        );
        assert_eq!(classify(&[("accept", "text/html;q=0")]), Client::Program);
        assert_eq!(
            classify(&[("accept", chrome), ("x-requested-with", "XMLHttpRequest")]),
            Client::Program
        );
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc-web+proto",
            "application/grpc-web-text",
        ] {
            assert_eq!(
                classify(&[("accept", chrome), ("content-type", grpc)]),
                Client::Program,
                "{grpc}"
            );
        }
        // A form post from a browser is still a browser.
        assert_eq!(
            classify(&[
                ("accept", chrome),
                ("content-type", "application/x-www-form-urlencoded")
            ]),
            Client::Browser
        );
    }

    /// A browser is told apart for a sign-in, the one answer that differs
    /// (redirect or 401); for the others its headers are not read.
    #[test]
    fn only_a_sign_in_reads_who_asks() {
        let browser = |name: &str| (name == "accept").then_some("text/html");
        let sign_in = Decision::SignIn {
            route: crate::policy::RouteId(0),
            sign_in_url: "https://auth.example.test/oauth2/start".into(),
            invalid_token: false,
        };
        assert_eq!(Client::for_decision(&sign_in, browser), Client::Browser);
        let unavailable = Decision::Unavailable;
        let read = std::cell::Cell::new(false);
        let client = Client::for_decision(&unavailable, |name| {
            read.set(true);
            browser(name)
        });
        assert_eq!(client, Client::Program);
        assert!(!read.get());
    }
}
