//! Hostile and careless peers, through raw bytes: garbage, truncated frames, bad size
//! prefixes, unknown APIs, undecodable bodies, and clients that pipeline without limit.
//! A bad connection is closed; the broker and every other connection carry on.

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kelp_core::codec::generated::metadata::MetadataRequest;
use kelp_core::codec::{ApiKey, Message};
use kelp_core::io::CloseReason;
use kelp_core::{Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, batch, create_topic, fetch_request, ms, produce_request, test_config};

fn api_versions() -> RequestBody {
    RequestBody::ApiVersions(ApiVersionsRequest {
        client_software_name: "kelp-test".into(),
        client_software_version: "1.0".into(),
        ..Default::default()
    })
}

/// The connection still works: an ApiVersions round trip succeeds.
fn still_serves(h: &mut Harness, conn: ConnId) {
    let resp = expect_body!(h.call(conn, api_versions(), 3), ApiVersions);
    assert_eq!(resp.error_code, 0);
}

/// A request frame: size prefix, then a v1 header (key, version, correlation id, null
/// client id), then `body`.
fn hand_frame(key: i16, version: i16, corr: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&i32::try_from(10 + body.len()).expect("small").to_be_bytes());
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&corr.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[test]
fn garbage_closes_only_the_connection_that_sent_it() {
    let mut h = Harness::new(test_config());
    let (bad, http, good) = (h.connect(), h.connect(), h.connect());
    // A frame whose header cannot be read.
    h.send_raw(bad, &[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(h.close_reason(bad), Some(CloseReason::Undecodable(_))), "{:?}", h.close_reason(bad));
    // An HTTP request on the Kafka port: "GET " read as a size is far beyond the limit.
    h.send_raw(http, b"GET / HTTP/1.1\r\nHost: kelp\r\n\r\n");
    let size = i64::from(i32::from_be_bytes(*b"GET "));
    assert_eq!(h.close_reason(http), Some(CloseReason::FrameTooLarge { size, max: test_config().max_request_size }));
    assert_eq!(h.pending_bytes(bad) + h.pending_bytes(http), 0, "nothing is answered to garbage");
    still_serves(&mut h, good);
}

#[test]
fn a_frame_is_read_only_once_it_is_complete() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let first = Harness::frame(&api_versions(), 3, 501);
    let second = Harness::frame(&api_versions(), 3, 502);
    // Byte by byte, up to one short of the end: nothing happens, nothing closes.
    for b in &first[..first.len() - 1] {
        h.send_raw(c, std::slice::from_ref(b));
        assert_eq!(h.pending_bytes(c), 0);
        assert!(h.close_reason(c).is_none());
    }
    // The last byte of the first frame arrives with half of the second.
    let mut rest = vec![first[first.len() - 1]];
    rest.extend_from_slice(&second[..second.len() / 2]);
    h.send_frame(c, &rest, 501);
    let frame = h.recv_frame(c).expect("the first request is answered");
    assert_eq!(frame[..4], 501i32.to_be_bytes());
    assert!(h.recv_frame(c).is_none(), "the second is not complete yet");
    h.send_frame(c, &second[second.len() / 2..], 502);
    let frame = h.recv_frame(c).expect("the second request is answered");
    assert_eq!(frame[..4], 502i32.to_be_bytes());
}

#[test]
fn a_negative_size_prefix_closes_the_connection() {
    let mut h = Harness::new(test_config());
    let (bad, good) = (h.connect(), h.connect());
    h.send_raw(bad, &(-2i32).to_be_bytes());
    assert_eq!(h.close_reason(bad), Some(CloseReason::FrameTooLarge { size: -2, max: test_config().max_request_size }));
    still_serves(&mut h, good);
}

#[test]
fn an_oversized_size_prefix_closes_before_the_body_arrives() {
    let cfg = Config { max_request_size: 1024, ..test_config() };
    let mut h = Harness::new(cfg.clone());
    let (bad, good) = (h.connect(), h.connect());
    // A request of exactly the limit is read and answered (the padding after the body is
    // ignored, as Kafka ignores it) ...
    let mut at_limit = Harness::frame(&api_versions(), 3, 7).to_vec();
    at_limit.resize(4 + 1024, 0);
    at_limit[..4].copy_from_slice(&1024i32.to_be_bytes());
    let probe = h.connect();
    h.send_frame(probe, &at_limit, 7);
    assert_eq!(h.close_reason(probe), None);
    assert!(h.recv_frame(probe).is_some(), "a request of exactly the limit is served");
    // ... one byte more is refused from the prefix alone, with no body sent.
    h.send_raw(bad, &1025i32.to_be_bytes());
    assert_eq!(h.close_reason(bad), Some(CloseReason::FrameTooLarge { size: 1025, max: 1024 }));
    still_serves(&mut h, good);
}

#[test]
fn unknown_apis_and_unserved_versions_close_the_connection() {
    let mut h = Harness::new(test_config());
    let (a, b, c, good) = (h.connect(), h.connect(), h.connect(), h.connect());
    h.send_raw(a, &hand_frame(999, 0, 1, &[]));
    assert_eq!(h.close_reason(a), Some(CloseReason::UnknownApi { key: 999, version: 0 }));
    // A known API the broker does not serve (DescribeLogDirs).
    h.send_raw(b, &hand_frame(ApiKey::DESCRIBE_LOG_DIRS.0, 1, 2, &[0; 40]));
    assert_eq!(h.close_reason(b), Some(CloseReason::UnknownApi { key: ApiKey::DESCRIBE_LOG_DIRS.0, version: 1 }));
    // A served API at a version beyond the table (a flexible header: no tagged fields).
    h.send_raw(c, &hand_frame(ApiKey::METADATA.0, 99, 3, &[0]));
    assert_eq!(h.close_reason(c), Some(CloseReason::UnknownApi { key: ApiKey::METADATA.0, version: 99 }));
    for conn in [a, b, c] {
        assert_eq!(h.pending_bytes(conn), 0);
    }
    still_serves(&mut h, good);
}

#[test]
fn an_undecodable_body_closes_the_connection_but_trailing_bytes_are_ignored() {
    let mut h = Harness::new(test_config());
    let (short, long, good) = (h.connect(), h.connect(), h.connect());
    // Metadata v4 whose topic array claims a million entries in four bytes.
    h.send_raw(short, &hand_frame(ApiKey::METADATA.0, 4, 1, &[0, 0x0f, 0x42, 0x40]));
    assert!(matches!(h.close_reason(short), Some(CloseReason::Undecodable(_))), "{:?}", h.close_reason(short));
    // A valid Metadata v4 body (null topics, allow auto-create) with bytes past the schema is
    // answered, as Kafka answers it: librdkafka 2.16 sends Metadata v13 that way.
    let mut body = MetadataRequest { topics: None, ..Default::default() }.to_bytes(4).to_vec();
    body.extend_from_slice(&[1, 0, 0]);
    h.send_frame(long, &hand_frame(ApiKey::METADATA.0, 4, 2, &body), 2);
    assert_eq!(h.close_reason(long), None, "trailing bytes do not close the connection");
    assert!(h.recv_frame(long).is_some(), "the request is answered");
    still_serves(&mut h, good);
}

#[test]
fn many_pipelined_requests_in_one_read_are_all_answered_in_order() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let mut stream = Vec::new();
    let n = 5_000;
    for corr in 0..n {
        stream.extend_from_slice(&Harness::frame(&api_versions(), 3, corr));
        h.send_frame(c, &[], corr);
    }
    h.send_raw(c, &stream);
    assert!(h.close_reason(c).is_none());
    for corr in 0..n {
        let frame = h.recv_frame(c).unwrap_or_else(|| panic!("response {corr} missing"));
        assert_eq!(frame[..4], corr.to_be_bytes(), "responses in request order");
    }
}

#[test]
fn a_client_pipelining_behind_a_parked_fetch_is_back_pressured() {
    let cfg = Config { max_in_flight_per_conn: 4, max_request_size: 4096, ..test_config() };
    let mut h = Harness::new(cfg);
    let c = h.connect();
    create_topic(&mut h, c, "quiet", 1);
    // A long poll at the head: what follows stays buffered until it is answered.
    let fetch = h.send(c, &fetch_request("quiet", 0, 0, 1000), 12);
    assert!(h.paused.contains(&c), "a fetch in flight stops reading");
    let quick: Vec<i32> = (0..5).map(|_| h.send(c, &api_versions(), 3)).collect();
    assert_eq!(h.pending_bytes(c), 0, "the parked fetch holds every answer behind it");
    assert!(h.close_reason(c).is_none(), "a little buffering is allowed");

    h.advance(ms(1000));
    let (got, _) = h.recv(c, ApiKey::FETCH, 12).expect("the fetch expires");
    assert_eq!(got, fetch);
    for want in quick {
        let (got, _) = h.recv(c, ApiKey::API_VERSIONS, 3).expect("buffered requests are read and answered");
        assert_eq!(got, want);
    }
    assert!(!h.paused.contains(&c), "reading resumes once all is answered");

    // Requests parked on storage up to the in-flight limit: reading stops there too, and a
    // client that keeps writing regardless is cut off once its buffer passes twice the
    // largest request. The buffer stays bounded.
    h.auto_storage = false;
    for _ in 0..4 {
        h.send(c, &produce_request("quiet", 0, batch(&["p"]), -1), 11);
    }
    assert_eq!(h.queued.len(), 4);
    assert!(h.paused.contains(&c), "in flight is at its limit: stop reading");
    h.send(c, &api_versions(), 3);
    assert!(h.close_reason(c).is_none());
    let frame = Harness::frame(&api_versions(), 3, 9999);
    let mut flood = Vec::new();
    while flood.len() <= 2 * 4096 {
        flood.extend_from_slice(&frame);
    }
    h.send_raw(c, &flood);
    assert_eq!(h.close_reason(c), Some(CloseReason::TooManyInFlight));
}

#[test]
fn responses_follow_request_order_across_fast_and_parked_requests() {
    let mut h = Harness::new(test_config());
    let (c, other) = (h.connect(), h.connect());
    create_topic(&mut h, c, "a", 1);
    create_topic(&mut h, c, "b", 1);
    expect_body!(h.call(c, produce_request("a", 0, batch(&["x"]), -1), 11), Produce);
    expect_body!(h.call(c, produce_request("b", 0, batch(&["x"]), -1), 11), Produce);
    h.auto_storage = false;
    let list = RequestBody::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: "b".into(),
            partitions: vec![ListOffsetsPartition { partition_index: 0, timestamp: 0, ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let metadata = RequestBody::Metadata(MetadataRequest { topics: None, ..Default::default() });
    // Requests that park on storage interleaved with ones answered at once; the fetch (which
    // parks on its read) holds back reading the last one until it is answered.
    let order = vec![
        (h.send(c, &produce_request("a", 0, batch(&["y"]), -1), 11), ApiKey::PRODUCE, 11),
        (h.send(c, &api_versions(), 3), ApiKey::API_VERSIONS, 3),
        (h.send(c, &list, 8), ApiKey::LIST_OFFSETS, 8),
        (h.send(c, &metadata, 12), ApiKey::METADATA, 12),
        (h.send(c, &produce_request("b", 0, batch(&["y"]), -1), 11), ApiKey::PRODUCE, 11),
        (h.send(c, &fetch_request("a", 0, 0, 500), 12), ApiKey::FETCH, 12),
        (h.send(c, &api_versions(), 3), ApiKey::API_VERSIONS, 3),
    ];
    assert_eq!(h.queued.len(), 4, "two appends, a timestamp lookup and a read: {:?}", h.queued);
    // The store finishes them last first: every answer waits for the produce at the head.
    h.queued.make_contiguous().reverse();
    for _ in 0..3 {
        assert!(h.run_one_storage());
        assert_eq!(h.pending_bytes(c), 0, "the unanswered head holds everything behind it");
    }
    still_serves(&mut h, other);
    assert!(h.run_one_storage());
    for (want, api, version) in order {
        let (got, _) = h.recv(c, api, version).unwrap_or_else(|| panic!("no answer to {api:?}"));
        assert_eq!(got, want, "answers leave in request order");
    }
}
