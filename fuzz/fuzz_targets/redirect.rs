//! `rd` validation (`/oauth2/start?rd=`, `/oauth2/sign_out?rd=`): arbitrary
//! text through `RedirectRules::check` against the fixture's policy.
//!
//! Invariant: an accepted `rd` is an absolute `https` URL that a browser
//! (the WHATWG parser of the `url` crate) reads with no userinfo and a host
//! on the allow-list: the login host, the cookie domain `example.com` or a
//! dot-anchored subdomain of it, or a host a route serves (`other.test`).
#![no_main]

use authgate_fuzz::FIXTURE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else {
        return;
    };
    let app = &FIXTURE.app;
    let Ok(location) = app.redirects().check(rd, &app.policy()) else {
        return;
    };
    let url = match url::Url::parse(&location) {
        Ok(url) => url,
        Err(e) => panic!("accepted {rd:?} as {location:?}, which a browser cannot parse: {e}"),
    };
    assert_eq!(url.scheme(), "https", "{rd:?} -> {location:?}");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{rd:?} -> {location:?} carries userinfo"
    );
    let host = url.host_str().unwrap_or_default();
    let allowed = host == "example.com" || host.ends_with(".example.com") || host == "other.test";
    assert!(allowed, "{rd:?} -> {location:?} leaves for {host:?}");
});
