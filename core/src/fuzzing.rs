//! Bodies of the cargo-fuzz targets in `fuzz/`. They live here so that every ordinary build
//! compiles them, and each target is a one-line call. None of them may panic on any input
//! except where a property they check is broken (that is the bug the fuzzer reports).

use bytes::Bytes;

use crate::codec::generated::{RequestBody, ResponseBody};
use crate::codec::{ApiKey, Reader, decode_request_header};

/// Splits fuzz input into (api key, version, body). The first two bytes choose the API and
/// version so the fuzzer can reach every decoder from a flat byte string.
fn pick(data: &[u8]) -> Option<(ApiKey, i16, Bytes)> {
    let (&[k, v], rest) = data.split_first_chunk::<2>()?;
    let apis = crate::codec::SUPPORTED_APIS;
    let info = &apis[usize::from(k) % apis.len()];
    let span = u16::try_from(info.max_version - info.min_version + 1).ok()?;
    let version = info.min_version + (u16::from(v) % span) as i16;
    Some((info.key, version, Bytes::copy_from_slice(rest)))
}

/// Request bodies: whatever decodes must re-encode to bytes that decode to the same value (bit
/// for bit: its encoding again gives the same bytes), and the encoder's size prediction must be
/// exact.
pub fn request_decode(data: &[u8]) {
    let Some((key, version, body)) = pick(data) else { return };
    let mut r = Reader::new(&body);
    let Ok(msg) = RequestBody::decode(key, &mut r, version) else { return };
    let bytes = msg.to_bytes(version);
    assert_eq!(bytes.len(), msg.encoded_len(version), "encoded_len disagrees with encode");
    let again = RequestBody::decode(key, &mut Reader::new(&bytes), version).expect("re-encoded request must decode");
    // Compared as bytes, so bit for bit: a float64 NaN is not equal to itself as a value.
    assert_eq!(again.to_bytes(version), bytes, "request changed across a round trip");
}

/// Response bodies, with the same round-trip property as requests.
pub fn response_decode(data: &[u8]) {
    let Some((key, version, body)) = pick(data) else { return };
    let mut r = Reader::new(&body);
    let Ok(msg) = ResponseBody::decode(key, &mut r, version) else { return };
    let bytes = msg.to_bytes(version);
    assert_eq!(bytes.len(), msg.encoded_len(version), "encoded_len disagrees with encode");
    let again = ResponseBody::decode(key, &mut Reader::new(&bytes), version).expect("re-encoded response must decode");
    // Compared as bytes, so bit for bit: a float64 NaN is not equal to itself as a value.
    assert_eq!(again.to_bytes(version), bytes, "response changed across a round trip");
}

/// A whole request frame without its size prefix: header, then body, as a broker sees it.
pub fn request_frame(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let mut r = Reader::new(&frame);
    let Ok((header, _)) = decode_request_header(&mut r) else { return };
    let _ = RequestBody::decode(ApiKey(header.request_api_key), &mut r, header.request_api_version);
}

/// Record sets: parse, validate, decompress (bounded), iterate, rebuild.
pub use crate::records::fuzz::record_batch;

/// Record sets through the log cleaner's key map and batch filter.
pub use crate::cleaner::fuzz::log_cleaner;
