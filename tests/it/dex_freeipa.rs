//! What FreeIPA's directory does differently from a plain LDAP layout, on
//! the real stack of `dex_browser` (389 Directory Server, Dex's LDAP
//! connector as the seed configures it, authgate, nginx, Chromium) — issue
//! 23: disabled accounts (`nsAccountLock: TRUE`), non-POSIX user groups,
//! deleted users. Each case runs with the seed's connector filters (what
//! Dex does today) and, where the seed's filters fall short, with
//! [`LdapFilters::RECOMMENDED`] (what the README and the chart's Dex example
//! say to write).

use std::time::{Duration, Instant};

use crate::dex_browser::{E2e, Options};
use crate::support::dex::LdapFilters;
use crate::support::dirsrv::{ALICE, CAROL, User};

/// How often these tests' sessions are refreshed (`refresh_interval`).
/// Longer than Dex's `reuseInterval` (3 s in the test config): Dex v2.41
/// answers a refresh inside that interval without its connector and saves
/// empty connector data, after which the next refresh fails ("failed to
/// unmarshal internal data") whatever the directory says.
const REFRESH: Duration = Duration::from_secs(4);

fn options(ldap_filters: LdapFilters) -> Options {
    Options {
        refresh_interval: REFRESH,
        id_token_ttl: Duration::from_secs(5),
        ldap_filters,
        ..Options::default()
    }
}

/// What the browser shows for `url` once the session was due for a
/// refresh after `changed`: polls until `done` accepts the page text or
/// the URL, bounded by one refresh period plus slack for a busy machine.
async fn after_refresh(
    e2e: &E2e,
    url: &str,
    changed: Instant,
    what: &str,
    done: impl Fn(&str, &str) -> bool,
) -> String {
    let deadline = changed + REFRESH + Duration::from_secs(10);
    loop {
        e2e.browser.goto(url).await;
        let at = e2e.browser.current_url().await.to_string();
        let text = e2e.browser.page_text().await;
        if done(&at, &text) {
            eprintln!("{what}: after {:?}", changed.elapsed());
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen {:?} after the change; at {at}: {text}",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether the browser is on Dex (the session ended: sent to sign in).
fn on_dex(e2e: &E2e, at: &str) -> bool {
    at.starts_with(&e2e.dex.issuer())
}

async fn hello(e2e: &E2e, url: &str, user: &User) {
    e2e.login_at(url, user).await;
    e2e.browser
        .expect_text("freeipa_login", &format!("Hello, {}", user.email))
        .await;
}

/// The seed's connector: `userSearch.filter` is empty, so Dex's refresh
/// (a search for the user, no bind) still finds a disabled user. Observed:
/// carol, disabled after signing in, keeps access through refreshes, and
/// the refresh even brings her new group (`admins`, added after the
/// disable) — only a new login is refused: 389-ds refuses her bind
/// ("Account inactivated"), which Dex shows as a 500 "Login error" page.
#[tokio::test(flavor = "multi_thread")]
async fn disabled_user_keeps_access_through_refresh_with_the_seed_filter() {
    let e2e = E2e::start("disabled_seed", options(LdapFilters::SEED)).await;
    let url = e2e.url("hello", "/");
    hello(&e2e, &url, &CAROL).await;

    e2e.dirsrv.disable(&CAROL);
    e2e.dirsrv.add_to_group(&CAROL, "admins");
    let changed = Instant::now();
    loop {
        e2e.browser.goto(&url).await;
        e2e.browser
            .expect_text("freeipa_disabled_seed", "Hello, carol@example.test")
            .await;
        let groups = e2e.echoed("x-auth-request-groups").await;
        if groups.split(',').any(|g| g == "admins") {
            eprintln!(
                "disabled user refreshed, with her new group, {:?} after the change",
                changed.elapsed()
            );
            break;
        }
        assert!(
            changed.elapsed() < REFRESH + Duration::from_secs(10),
            "no refresh seen (admins never arrived): {groups}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(refresh_failures(&e2e), Vec::<String>::new());

    // A new login is refused: 389-ds will not bind a locked account.
    e2e.browser
        .goto(&format!("{}/oauth2/sign_out", e2e.login_base))
        .await;
    e2e.browser.goto(&url).await;
    e2e.expect_dex_form("after sign-out").await;
    e2e.browser.dex_login(CAROL.email, CAROL.password).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at = e2e.browser.current_url().await.to_string();
    let text = e2e.browser.page_text().await;
    eprintln!("disabled user's new login: at {at}: {text}");
    assert!(
        on_dex(&e2e, &at) && !text.contains("Hello,"),
        "a disabled user signed in anew: at {at}: {text}"
    );
    // Dex shows 389-ds's refusal as its own login error page.
    assert!(text.contains("Account inactivated"), "{text}");
}

/// With [`LdapFilters::RECOMMENDED`] (`(!(nsAccountLock=TRUE))` in
/// `userSearch.filter`), Dex's refresh no longer finds a disabled user and
/// fails; authgate ends the session at that refresh and sends carol to
/// sign in, where she cannot.
#[tokio::test(flavor = "multi_thread")]
async fn disabled_user_loses_access_at_next_refresh_with_the_recommended_filter() {
    let e2e = E2e::start("disabled_recommended", options(LdapFilters::RECOMMENDED)).await;
    let url = e2e.url("hello", "/");
    hello(&e2e, &url, &CAROL).await;
    // A refresh while enabled keeps her in (the filter matches her).
    tokio::time::sleep(REFRESH + Duration::from_secs(1)).await;
    for _ in 0..2 {
        e2e.browser.goto(&url).await;
        e2e.browser
            .expect_text("freeipa_enabled_refresh", "Hello, carol@example.test")
            .await;
    }

    e2e.dirsrv.disable(&CAROL);
    carol_sent_to_sign_in(&e2e, &url, "disabled user sent to sign in").await;
}

/// The seed's `groupSearch.filter` only finds POSIX (or AD) groups: when
/// `devops` is a FreeIPA non-POSIX group, alice's token has no `devops` and
/// she gets the 403 page, which names the likely cause. With
/// [`LdapFilters::RECOMMENDED`] the same group reaches the token.
#[tokio::test(flavor = "multi_thread")]
async fn non_posix_devops_is_missed_by_the_seed_filter_and_found_by_the_recommended() {
    let e2e = E2e::start("nonposix_seed", Options::default()).await;
    e2e.dirsrv.make_non_posix("devops");
    let url = e2e.url("hello", "/");
    e2e.login_at(&url, &ALICE).await;
    let text = e2e
        .browser
        .expect_text("freeipa_nonposix_seed", "Access denied")
        .await;
    e2e.browser
        .screenshot("dex_freeipa_nonposix_forbidden")
        .await;
    assert!(
        text.contains("You are signed in as alice@example.test"),
        "{text}"
    );
    assert!(text.contains("groupSearch.filter"), "no hint: {text}");
    drop(e2e);

    let e2e = E2e::start(
        "nonposix_recommended",
        Options {
            ldap_filters: LdapFilters::RECOMMENDED,
            ..Options::default()
        },
    )
    .await;
    e2e.dirsrv.make_non_posix("devops");
    e2e.login_at(&url_of(&e2e), &ALICE).await;
    e2e.browser
        .expect_text("freeipa_nonposix_recommended", "Hello, alice@example.test")
        .await;
    let mut groups: Vec<String> = e2e
        .echoed("x-auth-request-groups")
        .await
        .split(',')
        .map(str::to_owned)
        .collect();
    groups.sort_unstable();
    assert_eq!(
        groups,
        ["admins", "devops", "ipausers"],
        "POSIX and non-POSIX groups, each once"
    );
}

fn url_of(e2e: &E2e) -> String {
    e2e.url("hello", "/")
}

/// A user deleted in FreeIPA: Dex's refresh finds no entry and fails (with
/// either filter), and authgate ends the session at that refresh.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_user_session_ends_at_next_refresh() {
    let e2e = E2e::start("deleted", options(LdapFilters::SEED)).await;
    let url = e2e.url("hello", "/");
    hello(&e2e, &url, &CAROL).await;
    e2e.dirsrv.delete(&CAROL);
    carol_sent_to_sign_in(&e2e, &url, "deleted user sent to sign in").await;
}

/// After carol's account changed now: at the next refresh she is sent to
/// sign in (Dex's login page), having seen the app until then; and Dex's
/// refresh failed because of the directory.
async fn carol_sent_to_sign_in(e2e: &E2e, url: &str, label: &str) {
    let changed = Instant::now();
    after_refresh(e2e, url, changed, label, |at, text| {
        if on_dex(e2e, at) {
            return true;
        }
        assert!(text.contains("Hello, carol@example.test"), "{text}");
        false
    })
    .await;
    assert_refresh_failed_for_the_directory(e2e);
}

/// Dex's "failed to refresh identity" log lines so far.
fn refresh_failures(e2e: &E2e) -> Vec<String> {
    e2e.dex
        .log()
        .lines()
        .filter(|l| l.contains("failed to refresh identity"))
        .map(str::to_owned)
        .collect()
}

/// The session ended because Dex's connector no longer found the user, not
/// for another reason (such as the lost connector data above).
fn assert_refresh_failed_for_the_directory(e2e: &E2e) {
    let failures = refresh_failures(e2e);
    eprintln!("Dex: {failures:?}");
    assert!(
        failures.iter().any(|l| l.contains("ldap: user not found")),
        "Dex's refresh failed for another reason: {failures:?}"
    );
}

/// The filters these tests prove are the ones the README's migration
/// section, the chart's README and its Dex example tell operators to write.
#[test]
fn documented_filters_are_the_tested_ones() {
    let root = crate::support::repo_root();
    for doc in [
        "README.md",
        "deploy/helm/authgate/README.md",
        "deploy/helm/authgate/examples/dex-freeipa-values.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(doc)).expect("read doc");
        for filter in [
            LdapFilters::RECOMMENDED.user,
            LdapFilters::RECOMMENDED.group,
        ] {
            assert!(
                text.contains(&format!("filter: \"{filter}\"")),
                "{doc} does not show {filter}"
            );
        }
    }
}
