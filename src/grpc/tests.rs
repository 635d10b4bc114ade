#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use http::header;
use prost::Message;

/// The answer as Envoy reads it: [`super::check_response`]'s bytes decoded
/// as a `CheckResponse`, whose length the reply announced.
fn check_response(answer: Answer) -> CheckResponse {
    let reply = super::check_response(answer);
    let bytes = reply.encode_to_vec();
    assert_eq!(bytes.len(), reply.encoded_len());
    CheckResponse::decode(bytes.as_slice()).unwrap()
}

fn raw(pairs: &[(&str, &[u8])]) -> Vec<HeaderValue> {
    pairs
        .iter()
        .map(|(k, v)| HeaderValue {
            key: (*k).to_owned(),
            value: String::new(),
            raw_value: v.to_vec(),
        })
        .collect()
}

/// `headers` and `header_map` (raw bytes, repeated entries) yield the same
/// values; the session cookie is found among others whichever way Envoy
/// joined the cookie headers.
#[test]
fn both_header_encodings_read_alike() {
    let map: HashMap<String, String> = [
        ("accept".to_owned(), "text/html".to_owned()),
        (
            "cookie".to_owned(),
            "a=1; _authgate=one, _authgate=two".to_owned(),
        ),
    ]
    .into();
    let list = raw(&[
        ("accept", b"text/html"),
        ("cookie", b"a=1; _authgate=one"),
        ("cookie", b"_authgate=two"),
    ]);
    let raw_map = envoy_types::pb::envoy::config::core::v3::HeaderMap { headers: list };
    let from_map = ClientHeaders::of(&map, None);
    let from_raw = ClientHeaders::of(&map, Some(&raw_map));
    assert!(matches!(from_raw, ClientHeaders::Raw(_)));
    for h in [&from_map, &from_raw] {
        assert_eq!(h.get("accept"), Some("text/html"));
        assert_eq!(
            h.cookie_values("_authgate").collect::<Vec<_>>(),
            vec!["one", "two"]
        );
        assert_eq!(h.get("x-missing"), None);
    }
    // An empty header_map falls back to the map.
    let empty = envoy_types::pb::envoy::config::core::v3::HeaderMap::default();
    assert!(matches!(
        ClientHeaders::of(&map, Some(&empty)),
        ClientHeaders::Map(_)
    ));
}

/// A raw value that is not UTF-8 is skipped, not mangled into a match.
#[test]
fn non_utf8_raw_values_are_skipped() {
    let raw_map = envoy_types::pb::envoy::config::core::v3::HeaderMap {
        headers: raw(&[
            ("cookie", b"_authgate=\xff\xfe"),
            ("cookie", b"_authgate=ok"),
        ]),
    };
    let empty = HashMap::new();
    let h = ClientHeaders::of(&empty, Some(&raw_map));
    assert_eq!(h.cookie_values("_authgate").collect::<Vec<_>>(), vec!["ok"]);
}

/// Allow: code 0, identity headers with OVERWRITE_IF_EXISTS_OR_ADD, the
/// `_` spellings in headers_to_remove; the deprecated `append` is unset.
#[test]
#[allow(deprecated)]
fn allow_overwrites_and_removes() {
    let mut upstream = http::HeaderMap::new();
    upstream.insert(
        crate::identity::HEADER_USER,
        http::HeaderValue::from_static("alice-sub"),
    );
    let mut client = http::HeaderMap::new();
    client.insert(
        header::SET_COOKIE,
        http::HeaderValue::from_static("_authgate=new; Path=/"),
    );
    let response = check_response(Answer::allow(
        upstream,
        decision::Removals {
            identity: &["x_auth_request_user"],
            claims: vec!["x-auth-request-email".into()],
        },
        client,
    ));
    assert_eq!(response.status.unwrap().code, 0);
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("ok_response expected")
    };
    let set = &ok.headers[0];
    assert_eq!(
        set.append_action,
        HeaderAppendAction::OverwriteIfExistsOrAdd as i32
    );
    assert_eq!(set.append, None);
    let header = set.header.as_ref().unwrap();
    assert_eq!(
        (header.key.as_str(), header.value.as_str()),
        ("x-auth-request-user", "alice-sub")
    );
    assert_eq!(
        ok.headers_to_remove,
        vec!["x_auth_request_user", "x-auth-request-email"]
    );
    // The re-issued cookie goes to the client, appended to the app's own.
    let cookie = &ok.response_headers_to_add[0];
    assert_eq!(
        cookie.append_action,
        HeaderAppendAction::AppendIfExistsOrAdd as i32
    );
    let header = cookie.header.as_ref().unwrap();
    assert_eq!(
        (header.key.as_str(), header.value.as_str()),
        ("set-cookie", "_authgate=new; Path=/")
    );
}

/// The headers a reply writes itself decode as the options prost would
/// have encoded: several, a repeated name, an empty value, a value whose
/// length takes two bytes, next to removals and the client's headers.
#[test]
fn set_headers_decode_as_prost_options() {
    let mut upstream = http::HeaderMap::new();
    upstream.insert(
        crate::identity::HEADER_USER,
        http::HeaderValue::from_static("alice-sub"),
    );
    upstream.insert("x-empty", http::HeaderValue::from_static(""));
    let long = http::HeaderValue::from_str(&"j".repeat(600)).unwrap();
    upstream.insert("x-authgate-assertion", long);
    upstream.append("x-twice", http::HeaderValue::from_static("1"));
    upstream.append("x-twice", http::HeaderValue::from_static("2"));
    let mut client = http::HeaderMap::new();
    client.insert(
        header::SET_COOKIE,
        http::HeaderValue::from_static("_authgate=new"),
    );
    let expected: Vec<HeaderValueOption> = upstream
        .iter()
        .map(|header| header_option(header, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    let response = check_response(Answer::allow(
        upstream,
        decision::Removals {
            identity: &["x_auth_request_user"],
            claims: Vec::new(),
        },
        client,
    ));
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("ok_response expected")
    };
    assert_eq!(ok.headers.len(), 5);
    assert_eq!(ok.headers, expected);
    assert_eq!(ok.headers_to_remove, vec!["x_auth_request_user"]);
    assert_eq!(ok.response_headers_to_add.len(), 1);
}

/// A value that is not UTF-8 (never one authgate sets) still makes a
/// decodable message: U+FFFD for the bad byte.
#[test]
fn non_utf8_set_value_is_mended() {
    let mut upstream = http::HeaderMap::new();
    upstream.insert("x-odd", http::HeaderValue::from_bytes(b"a\xffb").unwrap());
    upstream.insert("x-fine", http::HeaderValue::from_static("ok"));
    let response = check_response(Answer::allow(
        upstream,
        decision::Removals::default(),
        http::HeaderMap::new(),
    ));
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("ok_response expected")
    };
    let values: Vec<(&str, &str)> = ok
        .headers
        .iter()
        .map(|o| o.header.as_ref().unwrap())
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(values, [("x-odd", "a\u{FFFD}b"), ("x-fine", "ok")]);
}

/// An allow with nothing to set or remove is still an `ok_response` (an
/// empty message on the wire), never a missing `http_response`.
#[test]
fn bare_allow_is_an_ok_response() {
    let response = check_response(Answer::allow(
        http::HeaderMap::new(),
        decision::Removals::default(),
        http::HeaderMap::new(),
    ));
    assert_eq!(
        response.http_response,
        Some(HttpResponse::OkResponse(OkHttpResponse::default()))
    );
}

/// Deny: the answer's gRPC code (the same numbers as tonic's), its HTTP
/// status, the client's headers and the body.
#[test]
fn deny_carries_status_headers_and_body() {
    use http::StatusCode;
    let cases = [
        (
            StatusCode::FOUND,
            decision::RpcCode::Unauthenticated,
            tonic::Code::Unauthenticated,
        ),
        (
            StatusCode::UNAUTHORIZED,
            decision::RpcCode::Unauthenticated,
            tonic::Code::Unauthenticated,
        ),
        (
            StatusCode::FORBIDDEN,
            decision::RpcCode::PermissionDenied,
            tonic::Code::PermissionDenied,
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            decision::RpcCode::Unavailable,
            tonic::Code::Unavailable,
        ),
    ];
    for (status, rpc_code, code) in cases {
        let mut client = http::HeaderMap::new();
        client.insert(
            header::LOCATION,
            http::HeaderValue::from_static("https://auth.example.test/oauth2/start?rd=x"),
        );
        let response = check_response(Answer {
            status,
            rpc_code,
            upstream: http::HeaderMap::new(),
            remove: decision::Removals::default(),
            client,
            body: "body\n",
        });
        assert_eq!(response.status.as_ref().unwrap().code, code as i32);
        let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
            panic!("denied_response expected")
        };
        assert_eq!(denied.status.unwrap().code, i32::from(status.as_u16()));
        assert_eq!(denied.body, "body\n");
        assert_eq!(denied.headers[0].header.as_ref().unwrap().key, "location");
    }
}

/// The checked-in descriptor set holds the Authorization service.
#[test]
fn descriptors_describe_the_authorization_service() {
    let set = envoy_types::pb::google::protobuf::FileDescriptorSet::decode(ENVOY_AUTHZ_DESCRIPTORS)
        .unwrap();
    assert!(set.file.iter().any(|f| {
        f.package.as_deref() == Some("envoy.service.auth.v3")
            && f.service
                .iter()
                .any(|s| s.name.as_deref() == Some("Authorization"))
    }));
}

/// `attributes.source`: a socket address's IP; a pipe, a missing source
/// or an address that is not an IP is none.
#[test]
fn source_ip_is_the_socket_address() {
    use envoy_types::pb::envoy::config::core::v3::{Address, Pipe, SocketAddress};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
    let with = |address: Option<address::Address>| AttributeContext {
        source: Some(Peer {
            address: Some(Address { address }),
            ..Peer::default()
        }),
        ..AttributeContext::default()
    };
    let socket = |ip: &str| {
        Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            ..SocketAddress::default()
        }))
    };
    assert_eq!(
        source_ip(&with(socket("192.0.2.7"))),
        Some("192.0.2.7".parse().unwrap())
    );
    assert_eq!(
        source_ip(&with(socket("::ffff:192.0.2.7"))),
        Some("192.0.2.7".parse().unwrap())
    );
    assert_eq!(
        source_ip(&with(socket("2001:db8::7"))),
        Some("2001:db8::7".parse().unwrap())
    );
    assert_eq!(source_ip(&with(socket("not-an-ip"))), None);
    let pipe = Some(address::Address::Pipe(Pipe {
        path: "/run/envoy.sock".into(),
        ..Pipe::default()
    }));
    assert_eq!(source_ip(&with(pipe)), None);
    assert_eq!(source_ip(&AttributeContext::default()), None);
}

/// Header values reach Envoy as they are when UTF-8 (the identity headers
/// may carry any Unicode name); other bytes become U+FFFD, never an error.
#[test]
fn header_text_keeps_utf8_and_replaces_the_rest() {
    let utf8 = http::HeaderValue::from_bytes("Zoë Ångström".as_bytes()).unwrap();
    assert_eq!(header_text(&utf8), "Zoë Ångström");
    let ascii = http::HeaderValue::from_static("alice@example.com");
    assert_eq!(header_text(&ascii), "alice@example.com");
    let broken = http::HeaderValue::from_bytes(b"a\xffb").unwrap();
    assert_eq!(header_text(&broken), "a\u{fffd}b");
}
