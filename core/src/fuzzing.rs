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

/// A SASL exchange on a SASL listener, fed tokens cut from the input at NUL-NUL separators;
/// the first byte picks the mechanism and the handshake version. No input may panic it, and
/// none may authenticate: the only user's password is long and random, and a SCRAM proof
/// cannot be guessed.
pub fn sasl_exchange(data: &[u8]) {
    use crate::security::scram::{Credentials, ScramCredential, ScramHash};
    use crate::security::{Mechanism, sasl};
    static CREDS: std::sync::OnceLock<Credentials> = std::sync::OnceLock::new();
    let creds = CREDS.get_or_init(|| {
        let mut c = Credentials::default();
        let password = "4f1c9a0e-2b7d-4e8a-9c33-71d0b5e2a6f8";
        for hash in ScramHash::ALL {
            let user = crate::codec::KStr::from_static("alice");
            c.set(&user, hash, Some(ScramCredential::from_password(hash, password, b"fuzz-salt", 4096)));
        }
        c
    });
    let Some((&pick, rest)) = data.split_first() else { return };
    let mechanism = Mechanism::ALL[usize::from(pick) % Mechanism::ALL.len()];
    let mut auth = sasl::Auth::start(true, crate::codec::KStr::from_static(crate::security::ANONYMOUS));
    if auth.handshake(mechanism.name(), i16::from(pick >> 7), &Mechanism::ALL).is_err() {
        return;
    }
    let mut tokens = rest.split(|b| *b == 0).peekable();
    while let Some(t) = tokens.next() {
        // Re-join single NULs (PLAIN's separators): only a NUL-NUL ends a token.
        let mut token = t.to_vec();
        while tokens.peek().is_some_and(|n| !n.is_empty()) && token.len() < 4096 {
            token.push(0);
            token.extend_from_slice(tokens.next().unwrap_or_default());
        }
        match auth.token(&token, creds, b"fuzz-nonce") {
            sasl::Step::Continue(_) => {}
            sasl::Step::Done { .. } => panic!("authenticated from fuzz input"),
            sasl::Step::Failed { .. } => return,
        }
    }
}
