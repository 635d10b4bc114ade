//! The few HTML pages people see: sign-in errors, signed out, status.
//! Self-contained (no external assets), never cached, with a strict CSP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}\
main{max-width:34rem;margin:12vh auto;background:#fff;padding:2rem 2.5rem;border-radius:10px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}a.button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;background:#2457c5;color:#fff;border-radius:6px;text-decoration:none}\
code{background:#eef;padding:0 .2rem;border-radius:3px}";

/// A page with a title, a paragraph and an optional link button.
pub fn message(
    status: StatusCode,
    title: &str,
    detail: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let mut body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title>\
<style>{STYLE}</style></head><body><main><h1>{title}</h1><p>{detail}</p>",
        title = escape(title),
        detail = escape(detail),
    );
    if let Some((href, label)) = link {
        body.push_str(&format!(
            "<a class=\"button\" href=\"{}\">{}</a>",
            escape(href),
            escape(label)
        ));
    }
    body.push_str("</main></body></html>");
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anything user-controlled shown on a page cannot inject markup.
    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }

    /// Pages are never cached and carry a CSP that forbids scripts.
    #[test]
    fn pages_are_not_cached() {
        let r = message(StatusCode::FORBIDDEN, "t", "d", None);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap_or_default()
                .contains("default-src 'none'")
        );
    }
}
