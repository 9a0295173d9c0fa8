//! Hostile input against the codec: truncated frames, negative and huge lengths, overlong
//! varints, garbage for every decoder. Each must give an error, never a panic, and decoding
//! must never allocate more than the input can back. A counting allocator measures the
//! largest single allocation and the bytes live at the peak while each decode runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use kelp_core::codec::generated::metadata::MetadataRequest;
use kelp_core::codec::generated::produce::ProduceRequest;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, DecodeError, Message, Reader, decode_request_header};
use kelp_tests::{all_api_versions, random_request, random_response};
use proptest::prelude::*;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only thread-local counters
// are touched on the side, and those never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| {
            l.set(l.get() + layout.size());
            let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
        });
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated at the peak while `f` runs, above what was live before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

#[test]
fn an_eight_byte_request_claiming_a_2_gib_array_is_refused_without_allocating() {
    // MetadataRequest v1: topics is an int32-counted array; claim i32::MAX topics.
    let body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    let (res, peak) = peak_during(|| MetadataRequest::decode(&mut Reader::new(&body), 1));
    assert_eq!(res, Err(DecodeError::LengthOutOfRange("MetadataRequest.topics")));
    assert!(peak < 1024, "allocated {peak} bytes for an 8-byte frame");
    // The same claim in the compact encoding (v9+): uvarint 0xffffffff.
    let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
    let (res, peak) = peak_during(|| MetadataRequest::decode(&mut Reader::new(&body), 12));
    assert!(matches!(res, Err(DecodeError::LengthOutOfRange(_))), "{res:?}");
    assert!(peak < 1024, "allocated {peak} bytes for an 8-byte frame");
}

#[test]
fn negative_lengths_are_errors() {
    // ProduceRequest v3: transactional_id = null, acks, timeout, then topics = -2.
    let body = Bytes::from_static(&[0xff, 0xff, 0, 1, 0, 0, 0, 10, 0xff, 0xff, 0xff, 0xfe]);
    let res = ProduceRequest::decode(&mut Reader::new(&body), 3);
    assert_eq!(res, Err(DecodeError::LengthOutOfRange("ProduceRequest.topic_data")));
    // A string length of -5.
    let body = Bytes::from_static(&[0xff, 0xfb, 0, 0]);
    let res = Reader::new(&body).string(false, "s");
    assert_eq!(res, Err(DecodeError::LengthOutOfRange("s")));
    // A non-nullable array sent as null.
    let body = Bytes::from_static(&[0xff, 0xff, 0, 1, 0, 0, 0, 10, 0xff, 0xff, 0xff, 0xff]);
    let res = ProduceRequest::decode(&mut Reader::new(&body), 3);
    assert_eq!(res, Err(DecodeError::UnexpectedNull("ProduceRequest.topic_data")));
}

#[test]
fn versions_outside_the_supported_range_are_refused() {
    let body = Bytes::new();
    let res = ProduceRequest::decode(&mut Reader::new(&body), 2);
    assert_eq!(res, Err(DecodeError::UnsupportedVersion { what: "ProduceRequest", version: 2 }));
    let res = RequestBody::decode(ApiKey(999), &mut Reader::new(&body), 0);
    assert_eq!(res, Err(DecodeError::UnknownApiKey(999)));
}

#[test]
fn every_strict_prefix_of_every_message_is_an_error() {
    for seed in 0..4 {
        for (api, v) in all_api_versions() {
            let full = random_request(api.key, v, seed).to_bytes(v);
            for cut in 0..full.len() {
                let prefix = full.slice(..cut);
                let mut r = Reader::new(&prefix);
                assert!(
                    RequestBody::decode(api.key, &mut r, v).is_err(),
                    "{:?} v{v}: a {cut}-byte prefix of {} decoded",
                    api.key,
                    full.len()
                );
            }
            let full = random_response(api.key, v, seed).to_bytes(v);
            for cut in 0..full.len() {
                let prefix = full.slice(..cut);
                assert!(ResponseBody::decode(api.key, &mut Reader::new(&prefix), v).is_err());
            }
        }
    }
}

#[test]
fn truncated_and_garbage_frames_do_not_panic_the_header_reader() {
    for len in 0..12 {
        let frame = Bytes::from(vec![0xffu8; len]);
        let _ = decode_request_header(&mut Reader::new(&frame));
    }
    // Header claims a 32 KiB client id with 3 bytes left.
    let frame = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, b'a']);
    assert!(matches!(decode_request_header(&mut Reader::new(&frame)), Err(DecodeError::LengthOutOfRange(_))));
}

#[test]
fn overlong_varints_in_tagged_fields_are_errors() {
    // ApiVersionsRequest v3: two compact strings (empty), then a tagged field count that never ends.
    let body = Bytes::from_static(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let res = RequestBody::decode(ApiKey::API_VERSIONS, &mut Reader::new(&body), 3);
    assert!(matches!(res, Err(DecodeError::VarintTooLong(_))), "{res:?}");
    // A tagged field whose size runs past the end of the frame.
    let body = Bytes::from_static(&[1, 1, 1, 5, 0x7f, 0]);
    let res = RequestBody::decode(ApiKey::API_VERSIONS, &mut Reader::new(&body), 3);
    assert!(matches!(res, Err(DecodeError::Truncated(_))), "{res:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Garbage for every decoder at every version: an error or a value, never a panic, and
    /// never more live memory than a fixed multiple of the input. (Decoded structs are larger
    /// than their wire form, by a bounded factor per byte; nothing is sized by a claimed
    /// length that the input cannot back.)
    #[test]
    fn garbage_never_panics_and_memory_stays_bounded(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let body = Bytes::from(data);
        for (api, v) in all_api_versions() {
            let (_, peak) = peak_during(|| {
                let a = RequestBody::decode(api.key, &mut Reader::new(&body), v);
                let b = ResponseBody::decode(api.key, &mut Reader::new(&body), v);
                (a.is_ok(), b.is_ok())
            });
            prop_assert!(peak <= 4096 + body.len() * 512, "{:?} v{v}: {peak} bytes for {} input bytes", api.key, body.len());
        }
    }

    /// Random mutations of valid messages: whatever still decodes must re-encode and decode
    /// to the same value (the fuzz target's property, run here on every build).
    #[test]
    fn mutated_messages_round_trip_when_they_decode(seed in any::<u64>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        for (api, v) in all_api_versions() {
            let mut bytes = random_request(api.key, v, seed).to_bytes(v).to_vec();
            if bytes.is_empty() { continue; }
            for (i, b) in &flips {
                let i = i.index(bytes.len());
                bytes[i] ^= b;
            }
            let bytes = Bytes::from(bytes);
            if let Ok(msg) = RequestBody::decode(api.key, &mut Reader::new(&bytes), v) {
                let again = msg.to_bytes(v);
                prop_assert_eq!(again.len(), msg.encoded_len(v));
                let back = RequestBody::decode(api.key, &mut Reader::new(&again), v);
                // Bit for bit (a NaN float is not equal to itself as a value).
                prop_assert_eq!(back.map(|b| b.to_bytes(v)), Ok(again.clone()), "{:?} v{}", api.key, v);
            }
        }
    }
}
