//! Round-trip properties of the generated codec: every message of every supported API, at every
//! version, including unknown tagged fields, encodes to exactly `encoded_len` bytes and decodes
//! back to an equal value; zero-copy chunked output equals the contiguous encoding.

use bytes::Bytes;
use kelp_core::codec::arbitrary::Gen;
use kelp_core::codec::generated::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kelp_core::codec::generated::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kelp_core::codec::generated::header::{RequestHeader, ResponseHeader};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{Message, Reader, Writer};
use kelp_tests::{all_api_versions, random_request, random_response};
use proptest::prelude::*;

fn check_request(seed: u64) {
    for (api, v) in all_api_versions() {
        let msg = random_request(api.key, v, seed);
        let bytes = msg.to_bytes(v);
        assert_eq!(bytes.len(), msg.encoded_len(v), "{:?} v{v}: encoded_len", api.key);
        let mut r = Reader::new(&bytes);
        let back = RequestBody::decode(api.key, &mut r, v)
            .unwrap_or_else(|e| panic!("{:?} v{v} seed {seed}: {e}\n{msg:?}", api.key));
        assert_eq!(r.remaining(), 0, "{:?} v{v}: bytes left over", api.key);
        assert_eq!(back, msg, "{:?} v{v} seed {seed}", api.key);
    }
}

fn check_response(seed: u64) {
    for (api, v) in all_api_versions() {
        let msg = random_response(api.key, v, seed);
        let mut w = Writer::default();
        msg.encode(&mut w, v);
        let chunks = w.into_chunks();
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let bytes = msg.to_bytes(v);
        assert_eq!(joined, bytes.as_ref(), "{:?} v{v}: chunked and contiguous differ", api.key);
        assert_eq!(bytes.len(), msg.encoded_len(v), "{:?} v{v}: encoded_len", api.key);
        let mut r = Reader::new(&bytes);
        let back = ResponseBody::decode(api.key, &mut r, v)
            .unwrap_or_else(|e| panic!("{:?} v{v} seed {seed}: {e}\n{msg:?}", api.key));
        assert_eq!(r.remaining(), 0, "{:?} v{v}: bytes left over", api.key);
        assert_eq!(back, msg, "{:?} v{v} seed {seed}", api.key);
    }
}

fn check_message<M: Message>(seed: u64) {
    let (lo, hi) = M::VERSIONS;
    for v in lo..=hi {
        let msg = M::random(&mut Gen::new(seed), v);
        let bytes = msg.to_bytes(v);
        assert_eq!(bytes.len(), msg.encoded_len(v));
        assert_eq!(M::from_bytes(&bytes, v), Ok(msg), "v{v} seed {seed}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_request_round_trips_at_every_version(seed in any::<u64>()) {
        check_request(seed);
    }

    #[test]
    fn every_response_round_trips_at_every_version(seed in any::<u64>()) {
        check_response(seed);
    }

    #[test]
    fn headers_and_consumer_protocol_data_round_trip(seed in any::<u64>()) {
        check_message::<RequestHeader>(seed);
        check_message::<ResponseHeader>(seed);
        check_message::<ConsumerProtocolAssignment>(seed);
        check_message::<ConsumerProtocolSubscription>(seed);
    }
}

#[test]
fn unknown_tagged_fields_survive_a_round_trip() {
    use kelp_core::codec::RawTaggedField;
    use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
    let req = ApiVersionsRequest {
        client_software_name: "kelp-test".into(),
        unknown_tagged_fields: vec![
            RawTaggedField { tag: 7, data: Bytes::from_static(b"x") },
            RawTaggedField { tag: 300, data: Bytes::from_static(b"") },
        ]
        .into(),
        ..Default::default()
    };
    let bytes = req.to_bytes(3);
    assert_eq!(ApiVersionsRequest::from_bytes(&bytes, 3), Ok(req.clone()));
    // Below the first flexible version there are no tagged fields to carry.
    let v2 = ApiVersionsRequest::from_bytes(&req.to_bytes(2), 2).unwrap();
    assert!(v2.unknown_tagged_fields.is_empty());
}

#[test]
fn known_tagged_fields_are_written_only_when_not_default() {
    use kelp_core::codec::generated::fetch::{FetchResponse, LeaderIdAndEpoch, PartitionData};
    // FetchResponse v12+: PartitionData.CurrentLeader is tagged (tag 1), default leader -1 epoch -1.
    let mut p = PartitionData::default();
    let plain = p.encoded_len(12);
    p.current_leader = LeaderIdAndEpoch { leader_id: 3, leader_epoch: 9, ..Default::default() };
    assert!(p.encoded_len(12) > plain, "a non-default tagged struct is written");
    let mut resp = FetchResponse::default();
    resp.responses.push(Default::default());
    resp.responses[0].partitions.push(p);
    let bytes = resp.to_bytes(12);
    assert_eq!(FetchResponse::from_bytes(&bytes, 12), Ok(resp));
}
