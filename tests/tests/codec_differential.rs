//! Differential tests of kelp's generated codec against the `kafka-protocol` crate, for every
//! API and every version both implement.
//!
//! For random messages of ours: ours encodes -> theirs decodes (consuming every byte) -> theirs
//! encodes the very same bytes -> ours decodes an equal message. Byte equality of the two
//! encodings is what shows that both sides read every field the same way.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey as TheirKey, RequestKind, ResponseKind};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiInfo, Reader};
use kelp_tests::{all_api_versions, random_request, random_response};
use proptest::prelude::*;

/// The versions of `api` that kafka-protocol also implements.
fn shared(api: &ApiInfo, v: i16) -> Option<TheirKey> {
    let theirs = TheirKey::try_from(api.key.0).ok()?;
    let range = theirs.valid_versions();
    (range.min..=range.max).contains(&v).then_some(theirs)
}

/// kafka-protocol's API key table lists some versions its message types do not implement
/// (e.g. OffsetCommit v10); those are outside the shared set.
fn unsupported(e: &impl std::fmt::Display) -> bool {
    format!("{e:#}").contains("version not supported by this message type")
}

/// Decodes `bytes` with kafka-protocol (which must consume them all) and encodes the result
/// again. `None`: kafka-protocol does not implement this version.
fn theirs_round_trip<T, E: std::fmt::Display>(
    bytes: &Bytes,
    decode: impl FnOnce(&mut Bytes) -> Result<T, E>,
    encode: impl FnOnce(&T, &mut BytesMut) -> Result<(), E>,
) -> Result<Option<Bytes>, String> {
    let mut b = bytes.clone();
    let msg = match decode(&mut b) {
        Ok(m) => m,
        Err(e) if unsupported(&e) => return Ok(None),
        Err(e) => return Err(format!("theirs failed to decode: {e:#}")),
    };
    if b.has_remaining() {
        return Err(format!("theirs left {} bytes undecoded", b.remaining()));
    }
    let mut out = BytesMut::new();
    encode(&msg, &mut out).map_err(|e| format!("theirs failed to encode: {e:#}"))?;
    Ok(Some(out.freeze()))
}

/// Ours encodes a random message, theirs decodes and re-encodes it to the same bytes, ours
/// decodes those back to an equal message; for every shared (API, version). Returns how many
/// pairs were compared.
fn check_all<M: PartialEq + std::fmt::Debug>(
    seed: u64,
    random: impl Fn(&ApiInfo, i16) -> M,
    encode: impl Fn(&M, i16) -> Bytes,
    decode: impl Fn(&ApiInfo, &Bytes, i16) -> M,
    theirs: impl Fn(TheirKey, i16, &Bytes) -> Result<Option<Bytes>, String>,
) -> usize {
    let mut pairs = 0;
    for (api, v) in all_api_versions() {
        let Some(their_key) = shared(api, v) else { continue };
        let ours = random(api, v);
        let bytes = encode(&ours, v);
        let back =
            theirs(their_key, v, &bytes).unwrap_or_else(|e| panic!("{:?} v{v} seed {seed}: {e}\n{ours:?}", api.key));
        let Some(back) = back else { continue };
        assert_eq!(back, bytes, "{:?} v{v} seed {seed}: encodings differ\n{ours:?}", api.key);
        assert_eq!(decode(api, &back, v), ours, "{:?} v{v} seed {seed}", api.key);
        pairs += 1;
    }
    pairs
}

fn check_requests(seed: u64) -> usize {
    check_all(
        seed,
        |api, v| random_request(api.key, v, seed),
        RequestBody::to_bytes,
        |api, b, v| RequestBody::decode(api.key, &mut Reader::new(b), v).expect("ours decodes theirs"),
        |key, v, b| theirs_round_trip(b, |buf| RequestKind::decode(key, buf, v), |m, out| m.encode(out, v)),
    )
}

fn check_responses(seed: u64) -> usize {
    check_all(
        seed,
        |api, v| random_response(api.key, v, seed),
        ResponseBody::to_bytes,
        |api, b, v| ResponseBody::decode(api.key, &mut Reader::new(b), v).expect("ours decodes theirs"),
        |key, v, b| theirs_round_trip(b, |buf| ResponseKind::decode(key, buf, v), |m, out| m.encode(out, v)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn requests_agree_with_kafka_protocol(seed in any::<u64>()) {
        check_requests(seed);
    }

    #[test]
    fn responses_agree_with_kafka_protocol(seed in any::<u64>()) {
        check_responses(seed);
    }
}

/// The comparison must cover nearly everything: if an upgrade of either side silently shrank
/// the shared set, the property tests above would pass while comparing little.
#[test]
fn the_shared_version_set_is_large() {
    let shared_pairs = check_requests(1);
    let ours: usize = all_api_versions().count();
    println!("compared {shared_pairs} of {ours} (api, version) pairs");
    assert!(shared_pairs * 10 >= ours * 9, "only {shared_pairs} of {ours} (api, version) pairs are compared");
}
