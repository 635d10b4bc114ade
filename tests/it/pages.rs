//! The pages people see, opened in Chromium from running servers: real
//! nginx (from `examples/nginx/nginx.conf`) in front of authgate and the
//! in-process provider. Each page is saved as `tests/screenshots/<page>.png`
//! for people to look at, and its visible text is checked: who is signed
//! in, which route refused, that the sign-out link signs out.

use std::sync::Arc;

use authgate::app::App;
use authgate::clock::SystemClock;
use authgate::server;
use fantoccini::Locator;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::fixture::{COOKIE, default_routes, test_config};
use crate::nginx_flow::site;
use crate::support::browser::{Browser, BrowserOptions};
use crate::support::nginx::DOMAIN;

/// Saves the page as `tests/screenshots/<page>.png` and checks it was, and
/// that the stylesheet applied: the CSP admitted it by its nonce (a
/// refused one leaves `main` transparent).
async fn shoot(browser: &Browser, page: &str) {
    let background = browser
        .client()
        .execute(
            "return getComputedStyle(document.querySelector('main')).backgroundColor",
            Vec::new(),
        )
        .await
        .expect("computed style");
    assert_eq!(
        background, "rgb(255, 255, 255)",
        "{page}: stylesheet refused?"
    );
    let path = browser.screenshot(page).await;
    assert!(
        path.as_ref().is_some_and(|p| p.is_file()),
        "no screenshot of {page}"
    );
}

/// Forbidden (who, route, address, sign-out that works), signed out,
/// status, sign-in error and not found, through nginx in Chromium.
#[tokio::test(flavor = "multi_thread")]
async fn pages_in_a_browser() {
    let site = site().await;
    let dir = crate::support::temp_dir("pages");
    let browser = Browser::start(BrowserOptions {
        trust_ca: Some(site.ca.write_cert(dir.path())),
        host_resolver_rules: Some(format!("MAP *.{DOMAIN} 127.0.0.1")),
    })
    .await;
    let login_base = site.nginx.url("auth", "");

    // Bob (group `users`) signs in on the provider's form and is refused by
    // route-0 (group `devops`): nginx shows authgate's forbidden page.
    let url = site.nginx.url("hello", "/reports?id=7");
    browser.goto(&url).await;
    browser.dex_login("bob@example.com", "bob").await;
    let text = browser.expect_text("forbidden", "Access denied").await;
    shoot(&browser, "forbidden").await;
    assert!(
        text.contains("You are signed in as bob@example.com"),
        "{text}"
    );
    // The route by its address, and what it asks for that Bob lacks.
    assert!(
        text.contains("This address needs group devops; you are in: users."),
        "{text}"
    );
    assert!(
        text.contains("Route\nhttps://hello.") || text.contains("Route https://hello."),
        "{text}"
    );
    assert!(
        text.contains(&site.nginx.url("hello", "/reports")),
        "the refused address: {text}"
    );
    assert!(!text.contains("id=7"), "the query is not shown: {text}");
    assert!(browser.cookie(COOKIE).await.is_some(), "bob is signed in");

    // The status page on the login host knows him too.
    browser.goto(&format!("{login_base}/")).await;
    let text = browser.expect_text("status", "Signed in").await;
    shoot(&browser, "status").await;
    assert!(text.contains("bob@example.com"), "{text}");

    // Sign out from the forbidden page: the signed-out page, which says the
    // provider may still remember the login, and the cookie is gone.
    browser.goto(&url).await;
    browser.expect_text("forbidden", "Access denied").await;
    let sign_out = browser
        .client()
        .find(Locator::LinkText("Sign out"))
        .await
        .expect("a sign-out link");
    sign_out.click().await.expect("click sign out");
    let text = browser
        .expect_text("signed_out", "You are signed out")
        .await;
    shoot(&browser, "signed_out").await;
    assert!(text.contains("may still remember your login"), "{text}");
    assert!(text.contains("Sign in again"), "{text}");
    assert!(
        browser.cookie(COOKIE).await.is_none(),
        "the session cookie is cleared"
    );

    // A callback without our login-state cookie (expired, or forged).
    browser
        .goto(&format!("{login_base}/oauth2/callback?state=forged&code=x"))
        .await;
    let text = browser.expect_text("sign_in_error", "Sign-in failed").await;
    shoot(&browser, "sign_in_error").await;
    assert!(text.contains("Please try again"), "{text}");
    assert!(text.contains("Sign in again"), "{text}");

    // A page of authgate's that does not exist (nginx routes /.authgate/
    // on the protected host to it; the login host exposes only the login).
    browser
        .goto(&site.nginx.url("hello", "/.authgate/nope"))
        .await;
    let text = browser.expect_text("not_found", "Page not found").await;
    shoot(&browser, "not_found").await;
    assert!(text.contains("There is nothing at this address"), "{text}");

    browser.close().await;
}

/// The provider cannot be reached: signing in shows the 503 page, in a
/// browser, and says existing sessions still work.
#[tokio::test(flavor = "multi_thread")]
async fn provider_unavailable_page_in_a_browser() {
    // A provider port with nothing listening.
    let gone = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}/dex", gone.local_addr().expect("addr"));
    drop(gone);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = App::new(
        test_config(&base, &issuer, default_routes()),
        Arc::new(SystemClock),
    )
    .expect("app");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server::run(app, server::Listeners::http(listener), async {
        let _ = stopped.await;
    }));

    let browser = Browser::start(BrowserOptions::default()).await;
    browser.goto(&format!("{base}/oauth2/start")).await;
    let text = browser
        .expect_text("unavailable", "Identity provider unavailable")
        .await;
    shoot(&browser, "unavailable").await;
    assert!(
        text.contains("If you are already signed in, your session still works"),
        "{text}"
    );
    browser.close().await;
    let _ = stop.send(());
    let _ = served.await;
}
