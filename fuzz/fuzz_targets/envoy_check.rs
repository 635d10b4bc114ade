//! Envoy `ext_authz` over gRPC: arbitrary bytes decoded as a `CheckRequest`
//! (what tonic does with a request body) and answered by
//! `AuthzService::answer`, the function behind `Check`. `@SESSION@` in a
//! header value stands for the live session cookie.
//!
//! Invariants: every answer has a status and an HTTP response; a denial
//! is never a 5xx (the in-memory store cannot fail); an allow is only
//! given where the policy lets the user through (nobody, or alice when her
//! cookie is in the request) for the scheme, host and path Envoy named.
#![no_main]

use authgate::grpc::AuthzService;
use authgate::policy::Target;
use authgate_fuzz::{FIXTURE, SESSION_PLACEHOLDER, alice, policy_allows};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(mut request) = CheckRequest::decode(data) else {
        return;
    };
    let fixture = &*FIXTURE;
    let live = fixture.session_cookie.as_str();
    let mut signed_in = false;
    if let Some(http) = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        for value in http.headers.values_mut() {
            *value = fixture.with_session(value);
            signed_in |= value.contains(live);
        }
        for header in http
            .header_map
            .iter_mut()
            .flat_map(|m| m.headers.iter_mut())
        {
            header.value = fixture.with_session(&header.value);
            signed_in |= header.value.contains(live);
            let raw = String::from_utf8_lossy(&header.raw_value);
            if raw.contains(SESSION_PLACEHOLDER) {
                header.raw_value = fixture.with_session(&raw).into_bytes();
            }
            signed_in |= String::from_utf8_lossy(&header.raw_value).contains(live);
        }
    }

    let service = AuthzService::new(fixture.app.clone());
    let reply = fixture.runtime.block_on(service.answer(&request));
    // What Envoy receives: the reply's bytes read as a `CheckResponse`.
    let response = CheckResponse::decode(reply.encode_to_vec().as_slice())
        .expect("the reply decodes as a CheckResponse");
    assert!(response.status.is_some(), "{request:?}: no status");
    match response.http_response {
        Some(HttpResponse::OkResponse(_)) => {
            let http = request
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref());
            let Some(http) = http else {
                panic!("{request:?}: allowed without attributes");
            };
            match Target::from_parts(&http.scheme, &http.host, &http.path) {
                Ok(target) => {
                    let identity = signed_in.then(alice);
                    assert!(
                        policy_allows(&target, identity.as_ref()),
                        "{request:?}: allowed {target:?}"
                    );
                }
                Err(e) => panic!("{request:?}: allowed an unusable target ({e})"),
            }
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            let code = denied.status.map_or(0, |s| s.code);
            assert!(
                (300..500).contains(&code),
                "{request:?}: denied with {code}"
            );
        }
        // authgate answers every decision as an ok or denied response: an
        // error response would make Envoy apply its own failure mode.
        Some(HttpResponse::ErrorResponse(_)) => panic!("{request:?}: error response"),
        None => panic!("{request:?}: no HTTP response"),
    }
});
