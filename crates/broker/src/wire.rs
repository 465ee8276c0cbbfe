//! Kafka framing: the request header's fixed prefix, decoding a request body with the
//! `kafka-protocol` crate, and encoding a response (size prefix, header of the version the
//! request's API and version call for, body).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
    api_versions_response::ApiVersion,
};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Bytes of the request header's fixed prefix: api key, api version, correlation id.
pub(crate) const HEADER_PREFIX_BYTES: usize = 8;

/// Kafka's UNSUPPORTED_VERSION error code.
pub(crate) const UNSUPPORTED_VERSION: i16 = 35;

/// The part of a request header every version shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Why a frame could not be understood; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("frame of {0} bytes is shorter than a request header")]
    Short(usize),
    #[error("cannot decode {what}: {detail}")]
    Decode { what: &'static str, detail: String },
    #[error("cannot encode the response to API {api_key} v{api_version}: {detail}")]
    Encode { api_key: i16, api_version: i16, detail: String },
}

pub(crate) fn header_prefix(frame: &[u8]) -> Result<HeaderPrefix, WireError> {
    if frame.len() < HEADER_PREFIX_BYTES {
        return Err(WireError::Short(frame.len()));
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Runs a decoder, turning a panic inside the protocol crate into an error: a malformed
/// frame must close its connection, never take the broker down.
fn guarded<T>(what: &'static str, f: impl FnOnce() -> Result<T, String>) -> Result<T, WireError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(detail)) => Err(WireError::Decode { what, detail }),
        Err(_) => Err(WireError::Decode { what, detail: "decoder panicked".to_string() }),
    }
}

/// Decodes the full request header and body of a frame whose API key and version are known
/// to the protocol crate and supported by this broker.
pub(crate) fn decode_request(
    api_key: ApiKey,
    api_version: i16,
    frame: Bytes,
) -> Result<(RequestHeader, RequestKind), WireError> {
    let mut buf = frame;
    let header_version = api_key.request_header_version(api_version);
    let header =
        guarded("request header", || RequestHeader::decode(&mut buf, header_version).map_err(|e| e.to_string()))?;
    let body =
        guarded("request body", || RequestKind::decode(api_key, &mut buf, api_version).map_err(|e| e.to_string()))?;
    Ok((header, body))
}

fn begin_frame(correlation_id: i32, header_version: i16) -> Result<BytesMut, String> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0); // size, filled in by finish_frame
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, header_version)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn finish_frame(mut out: BytesMut) -> Result<Bytes, String> {
    let size = i32::try_from(out.len() - 4).map_err(|_| "response larger than 2 GiB".to_string())?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Encodes a whole response frame, size prefix included.
pub(crate) fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, WireError> {
    let err = |detail: String| WireError::Encode { api_key: api_key as i16, api_version, detail };
    let mut out = begin_frame(correlation_id, api_key.response_header_version(api_version)).map_err(err)?;
    body.encode(&mut out, api_version).map_err(|e| err(e.to_string()))?;
    finish_frame(out).map_err(err)
}

/// The answer to an ApiVersions request of a version this broker does not know: error
/// UNSUPPORTED_VERSION with a v0 body listing the supported ranges, so the client retries
/// with a version both sides know (KIP-511). The response header is always v0.
pub(crate) fn api_versions_fallback(correlation_id: i32, supported: &[(i16, i16, i16)]) -> Result<Bytes, WireError> {
    let body =
        ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION).with_api_keys(api_version_list(supported));
    let err = |detail: String| WireError::Encode { api_key: ApiKey::ApiVersions as i16, api_version: 0, detail };
    let mut out = begin_frame(correlation_id, 0).map_err(err)?;
    body.encode(&mut out, 0).map_err(|e| err(e.to_string()))?;
    finish_frame(out).map_err(err)
}

/// The answer to an API this broker does not serve (or a version it does not support): the
/// response header and error code UNSUPPORTED_VERSION. There is no body schema to follow for
/// an unknown API, so this is the most a client can be told without closing the connection.
pub(crate) fn unsupported_response(prefix: HeaderPrefix) -> Bytes {
    let header_version =
        ApiKey::try_from(prefix.api_key).map(|k| k.response_header_version(prefix.api_version)).unwrap_or(0);
    let mut out = BytesMut::with_capacity(16);
    out.put_i32(0);
    out.put_i32(prefix.correlation_id);
    if header_version >= 1 {
        out.put_u8(0); // no tagged fields
    }
    out.put_i16(UNSUPPORTED_VERSION);
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

pub(crate) fn api_version_list(supported: &[(i16, i16, i16)]) -> Vec<ApiVersion> {
    supported
        .iter()
        .map(|&(key, min, max)| ApiVersion::default().with_api_key(key).with_min_version(min).with_max_version(max))
        .collect()
}
