//! Group changes in LDAP (389 Directory Server) reach authgate through the session refresh (issue
//! 3): a user removed from `devops` loses access no later than the next
//! refresh, on the real stack of `dex_browser`.
//!
//! When that is: a session is due for a refresh `refresh_interval` after the
//! login (or the previous refresh). The first decision after that moment
//! refreshes it with Dex's refresh token; Dex's LDAP connector re-reads the
//! user's groups on every refresh, so the decision (or, if authgate answers
//! from the old identity while the refresh runs, the one right after it) is
//! made with the groups LDAP has now. Dex's `expiry.idTokens` is short here
//! too, so the refreshed ID token is a fresh one either way.

use std::time::{Duration, Instant};

use crate::dex_browser::{E2e, Options};
use crate::support::dirsrv::CAROL;

/// How often this test's sessions are refreshed (`refresh_interval`).
/// Longer than Dex's `reuseInterval` (3 s): a refresh inside it makes Dex
/// v2.41 save empty connector data, and the next refresh then fails
/// whatever LDAP says (seen on 389-ds; see `dex_freeipa`).
const REFRESH: Duration = Duration::from_secs(4);

/// carol signs in while in `devops`; a refresh with her groups unchanged
/// keeps her in; once an admin removes her from `devops` in LDAP, the next
/// refresh turns `hello` (`allowed_groups`) and `app2`
/// (`allowed_idp_claims`) into authgate's 403 page, still naming her: the
/// session lives on, with her new groups.
#[tokio::test(flavor = "multi_thread")]
async fn removed_from_devops_loses_access_at_next_refresh() {
    let e2e = E2e::start(
        "refresh",
        Options {
            refresh_interval: REFRESH,
            id_token_ttl: Duration::from_secs(5),
            ..Options::default()
        },
    )
    .await;
    let url = e2e.url("hello", "/");
    e2e.login_at(&url, &CAROL).await;
    e2e.browser
        .expect_text("dex_refresh_login", "Hello, carol@example.test")
        .await;

    // Past one refresh, groups unchanged: still in.
    tokio::time::sleep(REFRESH + Duration::from_secs(1)).await;
    for _ in 0..2 {
        e2e.browser.goto(&url).await;
        e2e.browser
            .expect_text("dex_refresh_unchanged", "Hello, carol@example.test")
            .await;
    }
    assert!(
        e2e.echoed("x-auth-request-groups")
            .await
            .split(',')
            .any(|g| g == "devops"),
        "devops missing after a refresh with unchanged groups"
    );

    e2e.dirsrv.remove_from_group(&CAROL, "devops");
    let removed = Instant::now();
    // Bounded: one refresh period, plus the refresh itself on a busy machine.
    let deadline = removed + REFRESH + Duration::from_secs(10);
    loop {
        e2e.browser.goto(&url).await;
        let text = e2e.browser.page_text().await;
        if text.contains("Access denied") {
            assert!(
                text.contains("You are signed in as carol@example.test"),
                "{text}"
            );
            break;
        }
        assert!(
            text.contains("Hello, carol@example.test"),
            "neither the app nor the 403 page (the session should survive a \
             refresh that only changes groups): {text}"
        );
        assert!(
            Instant::now() < deadline,
            "carol still allowed {:?} after leaving devops (refresh_interval {REFRESH:?})",
            removed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("access lost {:?} after the LDAP change", removed.elapsed());

    let app2 = e2e.url("app2", "/");
    e2e.browser.goto(&app2).await;
    e2e.browser
        .expect_text("dex_refresh_app2", "Access denied")
        .await;
}
