//! `Check`'s answer on the wire.
//!
//! An allow lists some forty request headers for Envoy to strip (every
//! `_` spelling of the identity headers, see
//! [`crate::identity::identity_headers_to_remove`]). As a prost
//! `CheckResponse` each would be a `String` allocated, copied and freed on
//! every call, most of the allocations of a `Check`. A [`Reply`] writes the
//! same `CheckResponse` bytes straight from the `'static` names; the
//! envoy-types server can only send its own message, so
//! [`super::CheckServer`] serves `Authorization/Check` as that generated
//! server does.

use std::borrow::Cow;

use envoy_types::ext_authz::v3::pb::{CheckResponse, OkHttpResponse};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint};

/// `CheckResponse.ok_response`.
const OK_RESPONSE: u32 = 3;
/// `OkHttpResponse.headers_to_remove`.
const HEADERS_TO_REMOVE: u32 = 5;

/// A `CheckResponse` whose allow (`ok_response`) is kept apart, with its
/// `headers_to_remove` as borrowed names; encodes to the bytes of the
/// `CheckResponse` it stands for.
#[derive(Debug, Default)]
pub struct Reply {
    /// Everything but the `ok_response`.
    pub(super) response: CheckResponse,
    /// The `ok_response` of an allow, less its `headers_to_remove`.
    pub(super) ok: Option<OkHttpResponse>,
    /// The `ok_response`'s `headers_to_remove`.
    pub(super) remove: Vec<Cow<'static, str>>,
}

impl Reply {
    /// The length of the `ok_response` message, removals included.
    fn ok_len(&self, ok: &OkHttpResponse) -> usize {
        ok.encoded_len()
            + self
                .remove
                .iter()
                .map(|name| 1 + encoded_len_varint(name.len() as u64) + name.len())
                .sum::<usize>()
    }
}

impl Message for Reply {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // A parser takes fields in any order (the protobuf encoding rules):
        // `ok_response` (3) comes after the rest, its `headers_to_remove`
        // (5) after its other fields.
        self.response.encode_raw(buf);
        if let Some(ok) = &self.ok {
            encode_key(OK_RESPONSE, WireType::LengthDelimited, buf);
            encode_varint(self.ok_len(ok) as u64, buf);
            ok.encode_raw(buf);
            for name in &self.remove {
                encode_key(HEADERS_TO_REMOVE, WireType::LengthDelimited, buf);
                encode_varint(name.len() as u64, buf);
                buf.put_slice(name.as_bytes());
            }
        }
    }

    fn encoded_len(&self) -> usize {
        self.response.encoded_len()
            + self.ok.as_ref().map_or(0, |ok| {
                let len = self.ok_len(ok);
                1 + encoded_len_varint(len as u64) + len
            })
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
        self.remove.clear();
    }
}
