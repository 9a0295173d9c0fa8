//! Reading the request header at the start of a frame.
//!
//! A request header's own version depends on the API and version it announces, which are its
//! first two fields; so the header is read in two steps. Versions beyond what the codec supports
//! still get their header read (by the API's first flexible version), as KIP-511 needs for
//! ApiVersions; unknown API keys are read with header v1 so the correlation id can be logged.

use bytes::Bytes;

use super::generated::RequestBody;
use super::generated::header::RequestHeader;
use super::{ApiKey, DecodeError, KStr, Message, Reader, Writer};

/// Reads a request header from `r` (a frame without its size prefix), leaving `r` at the body.
/// Returns the header and the header version used.
pub fn decode_request_header(r: &mut Reader<'_>) -> Result<(RequestHeader, i16), DecodeError> {
    let mut peek = r.clone();
    let key = ApiKey(peek.i16("RequestHeader.request_api_key")?);
    let version = peek.i16("RequestHeader.request_api_version")?;
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(r, header_version)?;
    Ok((header, header_version))
}

/// Encodes a whole request frame as a client sends it: size prefix, header (at the version the
/// API and version call for) and body. For tests, benches and tools that play the client.
#[must_use]
pub fn encode_request_frame(body: &RequestBody, version: i16, correlation_id: i32, client_id: Option<&str>) -> Bytes {
    let key = body.api_key();
    let hv = key.request_header_version(version);
    let header = RequestHeader {
        request_api_key: key.0,
        request_api_version: version,
        correlation_id,
        client_id: client_id.map(KStr::from),
        ..Default::default()
    };
    let len = header.encoded_len(hv) + body.encoded_len(version);
    let mut w = Writer::contiguous(4 + len);
    w.i32(i32::try_from(len).unwrap_or(i32::MAX));
    header.encode(&mut w, hv);
    body.encode(&mut w, version);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::KStr;
    use bytes::Bytes;

    #[test]
    fn an_encoded_frame_decodes_back() {
        use crate::codec::generated::api_versions::ApiVersionsRequest;
        let body = RequestBody::ApiVersions(ApiVersionsRequest::default());
        let frame = encode_request_frame(&body, 3, 9, Some("me"));
        let mut r = Reader::new(&frame);
        assert_eq!(usize::try_from(r.i32("size").unwrap()).unwrap(), frame.len() - 4);
        let (h, _) = decode_request_header(&mut r).unwrap();
        assert_eq!((h.correlation_id, h.client_id.as_deref()), (9, Some("me")));
        assert_eq!(RequestBody::decode(ApiKey::API_VERSIONS, &mut r, 3), Ok(body));
    }

    #[test]
    fn flexible_request_header_keeps_client_id_classic() {
        // ApiVersions v3: header v2 with a classic (int16) client id, then tagged fields.
        let frame = Bytes::from_static(&[0, 18, 0, 3, 0, 0, 0, 7, 0, 2, b'k', b'c', 0, 0xaa]);
        let mut r = Reader::new(&frame);
        let (h, hv) = decode_request_header(&mut r).unwrap();
        assert_eq!((hv, h.request_api_key, h.request_api_version, h.correlation_id), (2, 18, 3, 7));
        assert_eq!(h.client_id, Some(KStr::from("kc")));
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn newer_api_versions_request_header_is_still_read() {
        // ApiVersions v99: the broker must read the header to answer with a v0 error.
        let frame = Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 1, 0xff, 0xff, 0]);
        let (h, hv) = decode_request_header(&mut Reader::new(&frame)).unwrap();
        assert_eq!((hv, h.request_api_version, h.client_id), (2, 99, None));
    }
}
