//! The few HTML pages people see: sign-in errors, access denied, provider
//! unavailable, signed out, not found, and the status page.
//!
//! Handlers (and [`super::AppError`]) answer with a [`View`]: what to show,
//! not how. The router's one rendering layer turns it into a response with
//! [`Pages::render`], from the templates loaded with the configuration (see
//! [`crate::templates`]). Every page is self-contained (inline CSS, no
//! external asset), never cached, and sent with a CSP that allows nothing
//! but its own stylesheet (a fresh nonce per response).

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;

pub use crate::templates::{Form, Link, Page, Pages, PagesError, STYLE, View, escape};

/// Handlers answer with a view; the router's page layer renders it (see
/// [`super::render_pages`]). Without that layer the response has no body.
impl IntoResponse for View {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl Pages {
    /// The page as a response: HTML, `no-store`, and a CSP allowing only
    /// this response's stylesheet. A custom template that fails now (it
    /// rendered at startup) falls back to the built-in page.
    pub fn render(&self, view: &View) -> Response {
        // URL-safe base64: nothing for the HTML escaper to touch.
        let nonce =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
        let html = self.html(view, &nonce);
        let mut response = (view.status, Html(html)).into_response();
        let csp = content_security_policy(view.form.as_ref(), &nonce);
        let headers = response.headers_mut();
        if let Ok(csp) = HeaderValue::from_str(&csp) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// The page's CSP: only this response's stylesheet; forms post to this
/// host, or to the origin of the page's own form; a script only when the
/// form submits itself, and only this response's.
fn content_security_policy(form: Option<&Form>, nonce: &str) -> String {
    let form_origin = form
        .and_then(|form| url::Url::parse(&form.action).ok())
        .map(|url| url.origin().ascii_serialization())
        .filter(|origin| origin != "null");
    let script = match form {
        Some(form) if form.auto_submit => format!(" script-src 'nonce-{nonce}';"),
        _ => String::new(),
    };
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}';{script} base-uri 'none'; form-action 'self'{}; frame-ancestors 'none'",
        form_origin.map(|o| format!(" {o}")).unwrap_or_default()
    )
}

/// Sent with every page besides the CSP.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header(response: &Response, name: HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    /// Every built-in page renders: `lang`, a title, a `main` landmark, the
    /// inline stylesheet carrying the nonce the CSP names; never cached.
    #[tokio::test]
    async fn builtin_pages_are_self_contained_and_locked_down() {
        let pages = Pages::builtin();
        for page in Page::ALL {
            let response = pages.render(&View::sample(page));
            assert_eq!(header(&response, header::CACHE_CONTROL), "no-store");
            assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let csp = header(&response, header::CONTENT_SECURITY_POLICY).to_owned();
            assert!(
                csp.starts_with("default-src 'none'; style-src 'nonce-"),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"));
            let nonce = csp
                .split("'nonce-")
                .nth(1)
                .and_then(|s| s.split('\'').next())
                .unwrap()
                .to_owned();
            let html = body(response).await;
            assert!(
                html.starts_with("<!doctype html>\n<html lang=\"en\">"),
                "{html}"
            );
            assert!(html.contains("<title>Title</title>"));
            assert!(html.contains("<main"));
            assert!(html.contains(&format!("<style nonce=\"{nonce}\">")));
            assert!(!html.contains("src="), "no external asset: {html}");
            assert!(!html.contains("<link"), "no external asset: {html}");
        }
    }

    /// Values are escaped by the template engine, not trusted.
    #[tokio::test]
    async fn values_are_autoescaped() {
        let view = View::forbidden(
            "Refused.",
            Some("<b>x</b>@example.com".into()),
            Some("r\"1".into()),
            Some("https://a.example.com/<script>".into()),
        );
        let html = body(Pages::builtin().render(&view)).await;
        assert!(
            html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;@example.com")
                || html.contains("&lt;b&gt;x&lt;/b&gt;@example.com"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>x"));
    }

    /// Two responses never share a nonce.
    #[test]
    fn nonces_are_fresh() {
        let pages = Pages::builtin();
        let a = pages.render(&View::not_found());
        let b = pages.render(&View::not_found());
        assert_ne!(
            header(&a, header::CONTENT_SECURITY_POLICY),
            header(&b, header::CONTENT_SECURITY_POLICY)
        );
    }

    /// A templates_dir page replaces the built-in one and may extend the
    /// built-in layout; pages it lacks stay built-in.
    #[tokio::test]
    async fn custom_templates_replace_builtin_pages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("forbidden.html"),
            "{% extends \"layout.html\" %}{% block content %}<p>Custom: {{ user }} on {{ route }}</p>{% endblock %}",
        )
        .unwrap();
        std::fs::write(dir.path().join("_partial.html"), "partial").unwrap();
        std::fs::write(dir.path().join("README.txt"), "ignored").unwrap();
        let pages = Pages::load(Some(dir.path())).unwrap();
        let view = View::forbidden(
            "m",
            Some("ann@example.com".into()),
            Some("admin".into()),
            None,
        );
        let html = body(pages.render(&view)).await;
        assert!(
            html.contains("<p>Custom: ann@example.com on admin</p>"),
            "{html}"
        );
        assert!(html.contains("<style nonce="));
        let html = body(pages.render(&View::signed_out())).await;
        assert!(html.contains("You are signed out"));
    }
}
