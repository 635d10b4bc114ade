//! `Check`'s answer on the wire.
//!
//! An allow lists some forty request headers for Envoy to strip (every
//! `_` spelling of the identity headers, see
//! [`crate::identity::identity_headers_to_remove`]), and the identity
//! headers to set, the assertion JWT among them. As a prost
//! `CheckResponse` each name and value would be a `String` allocated,
//! copied and freed on every call, most of the allocations of a `Check`. A
//! [`Reply`] writes the same `CheckResponse` bytes straight from the
//! `'static` names and the answer's own header map; the
//! envoy-types server can only send its own message, so
//! [`super::CheckServer`] serves `Authorization/Check` as that generated
//! server does.

use envoy_types::ext_authz::v3::pb::{CheckResponse, HeaderAppendAction, OkHttpResponse};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint};

use crate::decision::Removals;

/// `CheckResponse.ok_response`.
const OK_RESPONSE: u32 = 3;
/// `OkHttpResponse.headers`.
const HEADERS: u32 = 2;
/// `OkHttpResponse.headers_to_remove`.
const HEADERS_TO_REMOVE: u32 = 5;
/// `HeaderValueOption.header`, `.append_action`.
const OPTION_HEADER: u32 = 1;
const OPTION_APPEND_ACTION: u32 = 3;
/// `HeaderValue.key`, `.value`.
const KEY: u32 = 1;
const VALUE: u32 = 2;

/// A `CheckResponse` whose allow (`ok_response`) is kept apart, with its
/// `headers_to_remove` as borrowed names; encodes to the bytes of the
/// `CheckResponse` it stands for.
#[derive(Debug, Default)]
pub struct Reply {
    /// Everything but the `ok_response`.
    response: CheckResponse,
    /// The `ok_response` of an allow, less its `headers_to_remove` and
    /// the headers of `set`.
    ok: Option<OkHttpResponse>,
    /// More of the `ok_response`'s `headers`, each set with
    /// `OVERWRITE_IF_EXISTS_OR_ADD`; every value UTF-8 (protobuf text).
    set: http::HeaderMap,
    /// The `ok_response`'s `headers_to_remove`.
    remove: Removals,
    /// The encoded length of the `ok_response`, counted once: prost asks
    /// for it before encoding, and the encoding writes it.
    ok_len: usize,
}

/// The length of a string (or message) field of `len` bytes, key included
/// (every tag here is below 16: a one-byte key).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The length of a `HeaderValue` { key: `name`, value: `value` } message.
fn header_len(name: &http::HeaderName, value: &http::HeaderValue) -> usize {
    let value = value.len();
    field_len(name.as_str().len()) + if value == 0 { 0 } else { field_len(value) }
}

/// The length of a `HeaderValueOption` { header, `OVERWRITE_IF_EXISTS_OR_ADD` }.
fn option_len(name: &http::HeaderName, value: &http::HeaderValue) -> usize {
    field_len(header_len(name, value)) + 2
}

/// Writes a string (or message bytes) field.
fn put_bytes(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

impl Reply {
    /// An allow: `response` (its status) with this `ok_response`, `set`
    /// and `remove` added to it.
    pub(super) fn allow(
        response: CheckResponse,
        ok: OkHttpResponse,
        set: http::HeaderMap,
        remove: Removals,
    ) -> Reply {
        let ok_len = ok.encoded_len()
            + set
                .iter()
                .map(|(name, value)| field_len(option_len(name, value)))
                .sum::<usize>()
            + remove
                .iter()
                .map(|name| field_len(name.len()))
                .sum::<usize>();
        Reply {
            response,
            ok: Some(ok),
            set,
            remove,
            ok_len,
        }
    }

    /// Any other answer: `response` as it is.
    pub(super) fn other(response: CheckResponse) -> Reply {
        Reply {
            response,
            ..Reply::default()
        }
    }
}

impl Message for Reply {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // A parser takes fields in any order (the protobuf encoding rules)
        // and appends a repeated field's elements as they come:
        // `ok_response` (3) comes after the rest, the `headers` (2) of
        // `set` and its `headers_to_remove` (5) after its other fields.
        self.response.encode_raw(buf);
        if let Some(ok) = &self.ok {
            encode_key(OK_RESPONSE, WireType::LengthDelimited, buf);
            encode_varint(self.ok_len as u64, buf);
            ok.encode_raw(buf);
            for (name, value) in &self.set {
                encode_key(HEADERS, WireType::LengthDelimited, buf);
                encode_varint(option_len(name, value) as u64, buf);
                encode_key(OPTION_HEADER, WireType::LengthDelimited, buf);
                encode_varint(header_len(name, value) as u64, buf);
                put_bytes(KEY, name.as_str().as_bytes(), buf);
                if !value.is_empty() {
                    put_bytes(VALUE, value.as_bytes(), buf);
                }
                encode_key(OPTION_APPEND_ACTION, WireType::Varint, buf);
                encode_varint(HeaderAppendAction::OverwriteIfExistsOrAdd as u64, buf);
            }
            for name in self.remove.iter() {
                put_bytes(HEADERS_TO_REMOVE, name.as_bytes(), buf);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        self.response.encoded_len() + self.ok.as_ref().map_or(0, |_| field_len(self.ok_len))
    }

    /// Read as the `CheckResponse` it stands for (authgate only sends it).
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.response.merge_field(tag, wire_type, buf, ctx)
    }

    fn clear(&mut self) {
        self.response.clear();
        self.ok = None;
        self.set.clear();
        self.remove = Removals::default();
        self.ok_len = 0;
    }
}
