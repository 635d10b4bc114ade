//! The pages' templates: loading `templates_dir` (every page compiled and
//! rendered once with sample values, so a broken one is a configuration
//! error naming its file) and rendering a [`View`] to HTML. Configuration
//! validation loads them; the HTTP side ([`crate::http::pages`]) turns the
//! HTML into a response. This file imports nothing else of authgate.
//!
//! # Templates
//! MiniJinja, HTML-autoescaped. A `templates_dir` may hold any of
//! `layout.html`, the page files in [`Page::ALL`] (`forbidden.html`, …) and
//! partials whose names start with `_`; each replaces or joins the built-in
//! set.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use http::StatusCode;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};

/// The built-in stylesheet, inlined in every page (`{{ style }}` for
/// custom templates that want it).
pub const STYLE: &str = include_str!("http/templates/style.css");

const LAYOUT: (&str, &str) = ("layout.html", include_str!("http/templates/layout.html"));

/// Why the templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("templates_dir `{dir}`: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not a page template (expected one of layout.html, {known}, or a partial named `_*.html`)", known = Page::file_names())]
    Unknown { file: PathBuf },
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

/// A page people see; its template is `<name>.html`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// The login did not complete (bad or expired state, refused code).
    SignInError,
    /// Signed in (or not) and not allowed: who, which route, sign out.
    Forbidden,
    /// The identity provider or the session store is down (503).
    Unavailable,
    /// After `/oauth2/sign_out`.
    SignedOut,
    /// No such page (404).
    NotFound,
    /// `/` on the login host: who is signed in.
    Status,
    /// Anything else (bad request, internal error).
    Error,
    /// A step that needs a POST from the browser: the handoff of a session
    /// to another host (sent at once), or a sign-out to confirm.
    Continue,
    /// `/oauth2/sessions`: the user's own sessions, each with a sign-out
    /// button.
    Sessions,
}

impl Page {
    pub const ALL: [Page; 9] = [
        Page::SignInError,
        Page::Forbidden,
        Page::Unavailable,
        Page::SignedOut,
        Page::NotFound,
        Page::Status,
        Page::Error,
        Page::Continue,
        Page::Sessions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Page::SignInError => "sign_in_error",
            Page::Forbidden => "forbidden",
            Page::Unavailable => "unavailable",
            Page::SignedOut => "signed_out",
            Page::NotFound => "not_found",
            Page::Status => "status",
            Page::Error => "error",
            Page::Continue => "continue",
            Page::Sessions => "sessions",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Page::SignInError => "sign_in_error.html",
            Page::Forbidden => "forbidden.html",
            Page::Unavailable => "unavailable.html",
            Page::SignedOut => "signed_out.html",
            Page::NotFound => "not_found.html",
            Page::Status => "status.html",
            Page::Error => "error.html",
            Page::Continue => "continue.html",
            Page::Sessions => "sessions.html",
        }
    }

    fn builtin(self) -> &'static str {
        match self {
            Page::SignInError => include_str!("http/templates/sign_in_error.html"),
            Page::Forbidden => include_str!("http/templates/forbidden.html"),
            Page::Unavailable => include_str!("http/templates/unavailable.html"),
            Page::SignedOut => include_str!("http/templates/signed_out.html"),
            Page::NotFound => include_str!("http/templates/not_found.html"),
            Page::Status => include_str!("http/templates/status.html"),
            Page::Error => include_str!("http/templates/error.html"),
            Page::Continue => include_str!("http/templates/continue.html"),
            Page::Sessions => include_str!("http/templates/sessions.html"),
        }
    }

    fn file_names() -> String {
        Page::ALL.map(Page::file).join(", ")
    }
}

/// One of the user's sessions on the sessions page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// Posted back to end it.
    pub id: String,
    /// When it started, UTC.
    pub started: String,
    pub client: Option<String>,
    pub device: Option<String>,
    /// The session of this browser.
    pub current: bool,
}

/// A link shown as the page's button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub href: String,
    pub label: String,
}

/// A form the page posts: hidden fields and one button.
#[derive(Clone, PartialEq, Eq)]
pub struct Form {
    /// Where it posts: a path on this host, or an absolute URL (the
    /// page's CSP then allows that origin as a form target).
    pub action: String,
    pub fields: Vec<(String, String)>,
    pub label: String,
    /// Submitted by a script as soon as the page loads (the button is there
    /// for browsers without scripts).
    pub auto_submit: bool,
}

/// The values can be credentials (a handoff token): never shown.
impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Form")
            .field("action", &self.action)
            .field(
                "fields",
                &self.fields.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("auto_submit", &self.auto_submit)
            .finish_non_exhaustive()
    }
}

/// What a page shows. Templates see these fields by name (`user`,
/// `route`, …; `link_href`/`link_label` for the button; `form_action`,
/// `form_fields` (name, value pairs), `form_label` and `form_auto_submit`
/// for a form) plus `page`, `status`, `nonce` and `style`.
#[derive(Clone, Debug)]
pub struct View {
    pub page: Page,
    pub status: StatusCode,
    pub title: Cow<'static, str>,
    pub message: String,
    /// Who is signed in (email, else subject).
    pub user: Option<String>,
    pub groups: Vec<String>,
    /// The route id that refused.
    pub route: Option<String>,
    /// The address that was refused (no query).
    pub url: Option<String>,
    pub link: Option<Link>,
    pub form: Option<Form>,
    /// The sessions page's rows (`sessions`).
    pub sessions: Vec<SessionRow>,
}

impl View {
    fn new(
        page: Page,
        status: StatusCode,
        title: &'static str,
        message: impl Into<String>,
    ) -> View {
        View {
            page,
            status,
            title: Cow::Borrowed(title),
            message: message.into(),
            user: None,
            groups: Vec::new(),
            route: None,
            url: None,
            link: None,
            form: None,
            sessions: Vec::new(),
        }
    }

    /// Adds the page's button.
    pub fn with_link(mut self, href: impl Into<String>, label: impl Into<String>) -> View {
        self.link = Some(Link {
            href: href.into(),
            label: label.into(),
        });
        self
    }

    /// A page whose button posts `form` (200).
    pub fn continue_with(title: &'static str, message: impl Into<String>, form: Form) -> View {
        View {
            form: Some(form),
            ..View::new(Page::Continue, StatusCode::OK, title, message)
        }
    }

    /// A login that did not complete; `status` 403 (refused) or 400.
    pub fn sign_in_error(status: StatusCode, message: impl Into<String>) -> View {
        View::new(Page::SignInError, status, "Sign-in failed", message)
    }

    /// Access denied (403).
    pub fn forbidden(
        message: impl Into<String>,
        user: Option<String>,
        route: Option<String>,
        url: Option<String>,
    ) -> View {
        View {
            user,
            route,
            url,
            ..View::new(
                Page::Forbidden,
                StatusCode::FORBIDDEN,
                "Access denied",
                message,
            )
        }
    }

    /// A dependency is down (503).
    pub fn unavailable(title: &'static str, message: impl Into<String>) -> View {
        View::new(
            Page::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            title,
            message,
        )
    }

    /// After sign-out.
    pub fn signed_out() -> View {
        View::new(
            Page::SignedOut,
            StatusCode::OK,
            "Signed out",
            "You are signed out of authgate.",
        )
    }

    /// After sign-out, offering to end the user's other sessions too:
    /// `token` names them (see `Purpose::SignOutAll`).
    pub fn signed_out_offering_all(token: String) -> View {
        View {
            form: Some(Form {
                action: "/oauth2/sign_out_all".into(),
                fields: vec![("token".into(), token)],
                label: "Sign out of all my sessions".into(),
                auto_submit: false,
            }),
            ..View::signed_out()
        }
    }

    /// The user's own sessions, each with a sign-out button.
    pub fn sessions(user: String, sessions: Vec<SessionRow>) -> View {
        View {
            user: Some(user),
            sessions,
            ..View::new(
                Page::Sessions,
                StatusCode::OK,
                "Your sessions",
                "Where you are signed in. Signing out a session ends it on that device at once.",
            )
        }
    }

    /// 404.
    pub fn not_found() -> View {
        View::new(
            Page::NotFound,
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address.",
        )
    }

    /// The status page: `user` and `groups` when signed in.
    pub fn status(user: Option<String>, groups: Vec<String>) -> View {
        let (title, message) = match &user {
            Some(_) => ("Signed in", "You are signed in."),
            None => ("Not signed in", "You are not signed in."),
        };
        View {
            user,
            groups,
            ..View::new(Page::Status, StatusCode::OK, title, message)
        }
    }

    /// Any other error page.
    pub fn error(status: StatusCode, title: &'static str, message: impl Into<String>) -> View {
        View::new(Page::Error, status, title, message)
    }

    /// Sample values for the startup check of a template.
    pub(crate) fn sample(page: Page) -> View {
        View {
            user: Some("user@example.com".into()),
            groups: vec!["group".into()],
            route: Some("route-0".into()),
            url: Some("https://app.example.com/".into()),
            form: Some(Form {
                action: "https://app.example.com/.authgate/callback".into(),
                fields: vec![("token".into(), "value".into())],
                label: "Continue".into(),
                auto_submit: true,
            }),
            sessions: vec![SessionRow {
                id: "0123456789abcdef0123456789abcdef".into(),
                started: "2026-01-01 00:00 UTC".into(),
                client: Some("203.0.113.7".into()),
                device: Some("Mozilla/5.0".into()),
                current: true,
            }],
            ..View::new(page, StatusCode::OK, "Title", "Message.")
        }
        .with_link("/", "Link")
    }
}

/// The compiled templates: the built-in set, and the operator's when
/// `templates_dir` is set (a page it lacks comes from the built-in set).
#[derive(Clone)]
pub struct Pages {
    /// Compiled on the first page shown: the built-in set is checked by the
    /// unit tests, and a service that only answers auth checks never needs
    /// the template compiler in memory.
    builtin: OnceLock<Environment<'static>>,
    custom: Option<Environment<'static>>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl Default for Pages {
    fn default() -> Pages {
        Pages::builtin()
    }
}

impl Pages {
    /// The built-in pages only.
    pub fn builtin() -> Pages {
        Pages {
            builtin: OnceLock::new(),
            custom: None,
        }
    }

    /// The built-in pages, overridden by the `.html` files of `dir`.
    /// Every page is rendered once with sample values, so a template that
    /// fails is found now, with its file name, rather than on a user.
    pub fn load(dir: Option<&Path>) -> Result<Pages, PagesError> {
        let Some(dir) = dir else {
            return Ok(Pages::builtin());
        };
        let entries = std::fs::read_dir(dir).map_err(|source| PagesError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let mut env = builtin_environment();
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "html"))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let known = name == LAYOUT.0
                || name.starts_with('_')
                || Page::ALL.iter().any(|p| p.file() == name);
            if !known {
                return Err(PagesError::Unknown { file });
            }
            let source = std::fs::read_to_string(&file).map_err(|source| PagesError::Read {
                file: file.clone(),
                source,
            })?;
            env.add_template_owned(name, source)
                .map_err(|e| template_error(dir, &file, &e))?;
        }
        for page in Page::ALL {
            let file = dir.join(page.file());
            render_with(&env, &View::sample(page), "sample-nonce")
                .map_err(|e| template_error(dir, &file, &e))?;
        }
        Ok(Pages {
            builtin: OnceLock::new(),
            custom: Some(env),
        })
    }

    fn builtin_env(&self) -> &Environment<'static> {
        self.builtin.get_or_init(builtin_environment)
    }

    /// The page's HTML, `nonce` on its stylesheet (and form script). A
    /// custom template that fails now (it rendered when loaded) falls back
    /// to the built-in page, and that to a bare page.
    pub fn html(&self, view: &View, nonce: &str) -> String {
        self.custom
            .as_ref()
            .and_then(|env| match render_with(env, view, nonce) {
                Ok(html) => Some(html),
                Err(error) => {
                    tracing::error!(page = view.page.name(), %error, "page template failed; showing the built-in page");
                    None
                }
            })
            .or_else(|| render_with(self.builtin_env(), view, nonce).ok())
            .unwrap_or_else(|| {
                format!(
                    "<!doctype html><title>{0}</title><h1>{0}</h1><p>{1}</p>",
                    escape(&view.title),
                    escape(&view.message)
                )
            })
    }
}

fn builtin_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    // Printing a misspelt variable is an error (found at startup), while
    // `{% if user %}` on an absent value still works.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    let builtin = std::iter::once(LAYOUT).chain(Page::ALL.map(|p| (p.file(), p.builtin())));
    for (name, source) in builtin {
        if let Err(error) = env.add_template(name, source) {
            // Covered by a unit test; never reached in a release.
            tracing::error!(template = name, %error, "built-in template does not compile");
        }
    }
    env
}

fn render_with(
    env: &Environment<'_>,
    view: &View,
    nonce: &str,
) -> Result<String, minijinja::Error> {
    let (link_href, link_label) = match &view.link {
        Some(link) => (Some(link.href.as_str()), Some(link.label.as_str())),
        None => (None, None),
    };
    let form = view.form.as_ref();
    env.get_template(view.page.file())?.render(context! {
        page => view.page.name(),
        status => view.status.as_u16(),
        title => view.title.as_ref(),
        message => view.message.as_str(),
        user => view.user.as_deref(),
        groups => view.groups.clone(),
        route => view.route.as_deref(),
        url => view.url.as_deref(),
        link_href => link_href,
        link_label => link_label,
        form_action => form.map(|f| f.action.as_str()),
        form_fields => form.map(|f| f.fields.clone()),
        form_label => form.map(|f| f.label.as_str()),
        form_auto_submit => form.is_some_and(|f| f.auto_submit),
        sessions => view.sessions.iter().map(|s| context! {
            id => s.id.as_str(),
            started => s.started.as_str(),
            client => s.client.as_deref(),
            device => s.device.as_deref(),
            current => s.current,
        }).collect::<Vec<_>>(),
        nonce => nonce,
        style => STYLE,
    })
}

fn template_error(dir: &Path, file: &Path, error: &minijinja::Error) -> PagesError {
    // An error inside an extended or included template names that one.
    let file = error
        .name()
        .map_or_else(|| file.to_owned(), |n| dir.join(n));
    let mut message = format!("{}", error.kind());
    if let Some(detail) = error.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    PagesError::Template {
        file,
        line: error.line(),
        message,
    }
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Anything user-controlled shown on a page cannot inject markup.
    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }

    /// Without `templates_dir` nothing is compiled at startup: the built-in
    /// set is compiled by the first page shown, then reused.
    #[test]
    fn builtin_templates_compile_on_first_render() {
        let pages = Pages::load(None).unwrap();
        assert!(pages.builtin.get().is_none());
        let first = pages.html(&View::not_found(), "n");
        assert!(first.contains("<main"), "{first}");
        let compiled: *const Environment<'static> = pages.builtin.get().unwrap();
        pages.html(&View::signed_out(), "n");
        assert!(std::ptr::eq(compiled, pages.builtin.get().unwrap()));
    }

    /// A broken template, an unknown file name, a misspelt variable and a
    /// missing directory are errors naming the file (and line).
    #[test]
    fn broken_templates_are_reported_with_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signed_out.html");
        std::fs::write(&file, "<p>\n{% if %}</p>").unwrap();
        let error = Pages::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:2: syntax error", file.display())),
            "{error}"
        );

        std::fs::write(&file, "<p>{{ usr.name }}</p>").unwrap();
        let error = Pages::load(Some(dir.path())).unwrap_err().to_string();
        assert!(error.starts_with(&file.display().to_string()), "{error}");
        assert!(error.contains("undefined"), "{error}");

        std::fs::remove_file(&file).unwrap();
        std::fs::write(dir.path().join("forbiden.html"), "x").unwrap();
        let error = Pages::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            error.contains("forbiden.html: not a page template"),
            "{error}"
        );

        let error = Pages::load(Some(&dir.path().join("missing")))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("templates_dir"), "{error}");
    }

    /// Every built-in template compiles (the environment logs rather than
    /// fails on a broken built-in).
    #[test]
    fn builtin_templates_compile() {
        let env = builtin_environment();
        for page in Page::ALL {
            render_with(&env, &View::sample(page), "n").unwrap();
        }
    }
}
