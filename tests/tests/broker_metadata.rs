//! Scenario tests of discovery: ApiVersions (with KIP-511's unknown-version answer and
//! produce v0-v2), Metadata, DescribeCluster, DescribeTopicPartitions and
//! OffsetForLeaderEpoch, as Kafka clients read them.

use kelp_core::SERVED;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::codec::generated::describe_cluster::DescribeClusterRequest;
use kelp_core::codec::generated::describe_topic_partitions::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, RequestCursor, TopicRequest,
};
use kelp_core::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic, MetadataResponse};
use kelp_core::codec::{ApiKey, ErrorCode, KStr, Uuid};
use kelp_core::{Command, Config, ConnId};
use kelp_core::{OPS_NOT_REQUESTED, TOPIC_OPS};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, batch, create_topic, epoch_end, fetch_request, produce_request, test_config};

/// AclOperation codes clients test for in authorized-operations bit sets.
const READ: i32 = 3;
const WRITE: i32 = 4;
const DESCRIBE: i32 = 8;

fn api_versions(name: &str, version: &str) -> RequestBody {
    RequestBody::ApiVersions(ApiVersionsRequest {
        client_software_name: name.into(),
        client_software_version: version.into(),
        ..Default::default()
    })
}

fn metadata(topics: Option<&[&str]>) -> MetadataRequest {
    MetadataRequest {
        topics: topics.map(|t| {
            t.iter().map(|n| MetadataRequestTopic { name: Some((*n).into()), ..Default::default() }).collect()
        }),
        ..Default::default()
    }
}

fn call_metadata(h: &mut Harness, c: ConnId, req: MetadataRequest, version: i16) -> MetadataResponse {
    expect_body!(h.call(c, RequestBody::Metadata(req), version), Metadata)
}

fn names(resp: &MetadataResponse) -> Vec<String> {
    resp.topics.iter().map(|t| t.name.as_deref().unwrap_or("<null>").to_string()).collect()
}

/// A big-endian cursor over a hand-read response.
struct Cur<'a>(&'a [u8]);

impl Cur<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_first_chunk::<N>().expect("response long enough");
        self.0 = rest;
        *head
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
    fn string(&mut self) -> String {
        let len = usize::try_from(self.i16()).expect("non-null string");
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(s.to_vec()).expect("utf8")
    }
}

// ---- ApiVersions ---------------------------------------------------------------------------

#[test]
fn api_versions_lists_every_served_api_with_its_range_at_every_version() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let want: Vec<(i16, i16, i16)> = SERVED.iter().map(|(k, lo, hi)| (k.0, *lo, *hi)).collect();
    for version in 0..=4 {
        let resp = expect_body!(h.call(c, api_versions("kelp-test", "1.0"), version), ApiVersions);
        assert_eq!(resp.error_code, 0, "v{version}");
        let got: Vec<(i16, i16, i16)> =
            resp.api_keys.iter().map(|a| (a.api_key, a.min_version, a.max_version)).collect();
        assert_eq!(got, want, "v{version}");
    }
    let got: Vec<(i16, i16, i16)> = want.iter().filter(|(k, _, _)| *k == ApiKey::PRODUCE.0).copied().collect();
    assert_eq!(got, vec![(0, 0, 13)], "produce is listed from v0 for old librdkafka");
}

#[test]
fn api_versions_v3_keeps_the_client_software_and_refuses_invalid_names() {
    let mut h = Harness::new(test_config());
    let (good, bad) = (h.connect(), h.connect());
    let resp = expect_body!(h.call(good, api_versions("apache-kafka-java", "4.1.0"), 3), ApiVersions);
    assert_eq!(resp.error_code, 0);
    assert_eq!(h.broker.client_software(good), Some(("apache-kafka-java", "4.1.0")));
    for (name, version) in [("", "1.0"), ("-leading", "1.0"), ("has space", "1.0"), ("ok", "1.0-"), ("ok", "")] {
        let resp = expect_body!(h.call(bad, api_versions(name, version), 3), ApiVersions);
        assert_eq!(resp.error_code, ErrorCode::INVALID_REQUEST.0, "{name:?} {version:?}");
    }
    assert_eq!(h.broker.client_software(bad), None, "invalid names are not kept");
    assert!(h.close_reason(bad).is_none(), "the client may retry with valid names");
    assert_eq!(expect_body!(h.call(bad, api_versions("librdkafka", "2.6.1"), 4), ApiVersions).error_code, 0);
}

#[test]
fn api_versions_at_an_unknown_version_gets_a_v0_unsupported_version_answer() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    // ApiVersions v99: a flexible header (null client id, no tagged fields) and a body the
    // broker cannot know the layout of.
    let mut frame = Vec::new();
    let body = [0u8, 18, 0, 99, 0, 0, 0, 77, 0xff, 0xff, 0, 2, b'x', 2, b'1', 0, 0xab];
    frame.extend_from_slice(&i32::try_from(body.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&body);
    h.send_frame(c, &frame, 77);
    // Read as v0: response header v0 (no tagged fields), v0 body.
    let (corr, resp) = h.recv(c, ApiKey::API_VERSIONS, 0).expect("answered");
    let resp = expect_body!(resp, ApiVersions);
    assert_eq!(corr, 77);
    assert_eq!(resp.error_code, ErrorCode::UNSUPPORTED_VERSION.0);
    let listed: Vec<(i16, i16, i16)> =
        resp.api_keys.iter().map(|a| (a.api_key, a.min_version, a.max_version)).collect();
    assert!(listed.contains(&(18, 0, 4)), "the client learns which ApiVersions versions to retry with");
    let served: Vec<(i16, i16, i16)> = SERVED.iter().map(|(k, lo, hi)| (k.0, *lo, *hi)).collect();
    assert_eq!(listed, served, "and still sees every API");
    assert!(h.close_reason(c).is_none());
    let resp = expect_body!(h.call(c, api_versions("kelp-test", "1.0"), 4), ApiVersions);
    assert_eq!(resp.error_code, 0, "the retry at a served version works");
}

/// Produce v0-v2 (magic 0/1 message sets) are listed but answered with UNSUPPORTED_VERSION
/// in every partition, in the old response layout, and nothing is appended.
#[test]
fn produce_v0_to_v2_get_unsupported_version_in_every_partition() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "legacy", 2);
    for version in 0..=2i16 {
        let corr = 900 + i32::from(version);
        let mut body = Vec::new();
        body.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&corr.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        body.extend_from_slice(&(-1i16).to_be_bytes()); // acks
        body.extend_from_slice(&1000i32.to_be_bytes()); // timeout
        body.extend_from_slice(&1i32.to_be_bytes()); // one topic
        body.extend_from_slice(&6i16.to_be_bytes());
        body.extend_from_slice(b"legacy");
        body.extend_from_slice(&2i32.to_be_bytes()); // two partitions
        for p in [1i32, 0] {
            body.extend_from_slice(&p.to_be_bytes());
            body.extend_from_slice(&4i32.to_be_bytes());
            body.extend_from_slice(&[0, 0, 0, 0]); // a message set the broker never reads
        }
        let mut frame = i32::try_from(body.len()).expect("small").to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        h.send_frame(c, &frame, corr);
        let resp = h.recv_frame(c).expect("answered");
        let mut r = Cur(&resp);
        assert_eq!(r.i32(), corr);
        assert_eq!(r.i32(), 1, "v{version}: one topic");
        assert_eq!(r.string(), "legacy");
        assert_eq!(r.i32(), 2);
        for p in [1, 0] {
            assert_eq!(r.i32(), p, "v{version}: partitions in request order");
            assert_eq!(r.i16(), ErrorCode::UNSUPPORTED_VERSION.0, "v{version}");
            assert_eq!(r.i64(), -1, "v{version}: base offset");
            if version >= 2 {
                assert_eq!(r.i64(), -1, "v2: log append time");
            }
        }
        if version >= 1 {
            assert_eq!(r.i32(), 0, "v{version}: throttle time");
        }
        assert!(r.0.is_empty(), "v{version}: nothing after the body");
    }
    assert!(h.close_reason(c).is_none());
    let hwm = |h: &mut Harness, p| {
        let resp = expect_body!(h.call(c, fetch_request("legacy", p, 0, 0), 12), Fetch);
        resp.responses[0].partitions[0].high_watermark
    };
    assert_eq!((hwm(&mut h, 0), hwm(&mut h, 1)), (0, 0), "nothing was appended");
}

// ---- Metadata ------------------------------------------------------------------------------

#[test]
fn metadata_lists_every_topic_for_a_null_list_and_for_an_empty_v0_list() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "beta", 2);
    create_topic(&mut h, c, "alpha", 1);
    let all = call_metadata(&mut h, c, metadata(None), 12);
    assert_eq!(names(&all), ["alpha", "beta"]);
    let none = call_metadata(&mut h, c, metadata(Some(&[])), 12);
    assert!(none.topics.is_empty(), "v1+: an empty list asks for no topics");
    let v0 = call_metadata(&mut h, c, metadata(Some(&[])), 0);
    assert_eq!(names(&v0), ["alpha", "beta"], "v0: an empty list means every topic");
    let v1 = call_metadata(&mut h, c, metadata(None), 1);
    assert_eq!(names(&v1), ["alpha", "beta"]);
}

#[test]
fn metadata_shows_this_node_as_broker_controller_and_leader_of_every_partition() {
    let cfg = Config {
        node_id: 7,
        listeners: vec![kelp_core::config::Listener::plaintext("kelp.example", 19092)],
        rack: Some(KStr::from("rack-a")),
        cluster_id: KStr::from("kelp-cluster-id-000001"),
        ..test_config()
    };
    let mut h = Harness::new(cfg);
    let c = h.connect();
    let id = create_topic(&mut h, c, "orders", 3);
    let resp = call_metadata(&mut h, c, metadata(Some(&["orders"])), 12);
    assert_eq!(resp.brokers.len(), 1);
    let b = &resp.brokers[0];
    assert_eq!((b.node_id, b.host.as_str(), b.port, b.rack.as_deref()), (7, "kelp.example", 19092, Some("rack-a")));
    assert_eq!(resp.cluster_id.as_deref(), Some("kelp-cluster-id-000001"));
    assert_eq!(resp.controller_id, 7);
    let t = &resp.topics[0];
    assert_eq!((t.error_code, t.name.as_deref(), t.topic_id, t.is_internal), (0, Some("orders"), id, false));
    assert_eq!(t.partitions.len(), 3);
    for (i, p) in t.partitions.iter().enumerate() {
        assert_eq!(p.partition_index, i32::try_from(i).expect("small"));
        assert_eq!((p.error_code, p.leader_id, p.leader_epoch), (0, 7, 0));
        assert_eq!((p.replica_nodes.as_slice(), p.isr_nodes.as_slice()), (&[7][..], &[7][..]));
        assert!(p.offline_replicas.is_empty());
    }
}

#[test]
fn an_unknown_topic_is_auto_created_and_stored_before_the_answer() {
    let mut h = Harness::new(test_config());
    let (c, other) = (h.connect(), h.connect());
    h.auto_storage = false;
    h.send(c, &RequestBody::Metadata(metadata(Some(&["fresh"]))), 12);
    assert!(h.recv(c, ApiKey::METADATA, 12).is_none(), "the answer waits for the store");
    assert!(
        h.queued
            .iter()
            .any(|(_, cmd)| matches!(cmd, Command::PutTopic(t) if t.name.as_str() == "fresh" && t.partitions == 3)),
        "{:?}",
        h.queued
    );
    let all = call_metadata(&mut h, other, metadata(None), 12);
    assert!(all.topics.is_empty(), "a topic being created is invisible");
    assert!(h.run_one_storage());
    let resp = expect_body!(h.recv(c, ApiKey::METADATA, 12).expect("answered once stored").1, Metadata);
    let t = &resp.topics[0];
    assert_eq!((t.error_code, t.name.as_deref(), t.partitions.len()), (0, Some("fresh"), 3));
    assert_ne!(t.topic_id, Uuid::ZERO);
    // It is really stored: a restarted broker knows it.
    h.auto_storage = true;
    let mut after = h.restart(test_config());
    let c2 = after.connect();
    let resp = call_metadata(&mut after, c2, metadata(Some(&["fresh"])), 12);
    assert_eq!((resp.topics[0].error_code, resp.topics[0].topic_id), (0, t.topic_id));
}

#[test]
fn an_unknown_topic_is_not_created_when_auto_create_is_off_or_not_allowed() {
    let mut off = Harness::new(Config { auto_create_topics: false, ..test_config() });
    let c = off.connect();
    let resp = call_metadata(&mut off, c, metadata(Some(&["nope"])), 12);
    assert_eq!(resp.topics[0].error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    assert_eq!(resp.topics[0].name.as_deref(), Some("nope"));
    assert!(call_metadata(&mut off, c, metadata(None), 12).topics.is_empty());

    let mut on = Harness::new(test_config());
    let c = on.connect();
    let req = MetadataRequest { allow_auto_topic_creation: false, ..metadata(Some(&["nope"])) };
    let resp = call_metadata(&mut on, c, req, 12);
    assert_eq!(resp.topics[0].error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    assert!(call_metadata(&mut on, c, metadata(None), 12).topics.is_empty(), "the client did not allow it");
}

#[test]
fn invalid_topic_names_get_invalid_topic_exception() {
    let long = "x".repeat(250);
    for auto_create in [true, false] {
        let mut h = Harness::new(Config { auto_create_topics: auto_create, ..test_config() });
        let c = h.connect();
        let bad = ["has space", "..", "é", long.as_str()];
        let resp = call_metadata(&mut h, c, metadata(Some(&bad)), 12);
        assert_eq!(resp.topics.len(), bad.len());
        for t in &resp.topics {
            assert_eq!(t.error_code, ErrorCode::INVALID_TOPIC_EXCEPTION.0, "{:?}", t.name);
        }
        assert!(call_metadata(&mut h, c, metadata(None), 12).topics.is_empty());
    }
}

#[test]
fn metadata_v10_plus_finds_topics_by_id() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = create_topic(&mut h, c, "by-id", 2);
    let unknown = Uuid::from_u64_pair(0x1234, 0x5678);
    let req = MetadataRequest {
        topics: Some(vec![
            MetadataRequestTopic { topic_id: id, name: None, ..Default::default() },
            MetadataRequestTopic { topic_id: unknown, name: None, ..Default::default() },
        ]),
        ..Default::default()
    };
    let resp = call_metadata(&mut h, c, req, 12);
    let found = &resp.topics[0];
    assert_eq!((found.error_code, found.name.as_deref(), found.topic_id), (0, Some("by-id"), id));
    assert_eq!(found.partitions.len(), 2);
    let missing = &resp.topics[1];
    assert_eq!(
        (missing.error_code, missing.name.as_deref(), missing.topic_id),
        (ErrorCode::UNKNOWN_TOPIC_ID.0, None, unknown)
    );
}

#[test]
fn authorized_operations_are_reported_only_when_asked() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "ops", 1);
    let plain = call_metadata(&mut h, c, metadata(Some(&["ops"])), 10);
    assert_eq!(plain.topics[0].topic_authorized_operations, OPS_NOT_REQUESTED);
    assert_eq!(plain.cluster_authorized_operations, OPS_NOT_REQUESTED);
    let req = MetadataRequest {
        include_topic_authorized_operations: true,
        include_cluster_authorized_operations: true,
        ..metadata(Some(&["ops"]))
    };
    let asked = call_metadata(&mut h, c, req, 10);
    let ops = asked.topics[0].topic_authorized_operations;
    assert_eq!(ops, TOPIC_OPS);
    for bit in [READ, WRITE, DESCRIBE] {
        assert_ne!(ops & (1 << bit), 0, "operation {bit} is allowed");
    }
    assert_ne!(asked.cluster_authorized_operations, OPS_NOT_REQUESTED);
    assert_ne!(asked.cluster_authorized_operations & (1 << DESCRIBE), 0);
}

// ---- DescribeCluster -----------------------------------------------------------------------

#[test]
fn describe_cluster_shows_this_node_at_every_version() {
    let cfg = Config { node_id: 3, cluster_id: KStr::from("kelp-cluster-id-000002"), ..test_config() };
    let mut h = Harness::new(cfg);
    let c = h.connect();
    for version in 0..=2 {
        let req = DescribeClusterRequest { include_cluster_authorized_operations: version == 1, ..Default::default() };
        let resp = expect_body!(h.call(c, RequestBody::DescribeCluster(req), version), DescribeCluster);
        assert_eq!(resp.error_code, 0, "v{version}");
        assert_eq!((resp.cluster_id.as_str(), resp.controller_id), ("kelp-cluster-id-000002", 3));
        let brokers: Vec<(i32, &str, i32, bool)> =
            resp.brokers.iter().map(|b| (b.broker_id, b.host.as_str(), b.port, b.is_fenced)).collect();
        assert_eq!(brokers, vec![(3, "127.0.0.1", 9092, false)], "v{version}");
        if version == 1 {
            assert_ne!(resp.cluster_authorized_operations & (1 << DESCRIBE), 0);
        } else {
            assert_eq!(resp.cluster_authorized_operations, OPS_NOT_REQUESTED);
        }
    }
    // Asking for controller endpoints (type 2) from a broker is refused, as Kafka does.
    let req = DescribeClusterRequest { endpoint_type: 2, ..Default::default() };
    let resp = expect_body!(h.call(c, RequestBody::DescribeCluster(req), 1), DescribeCluster);
    assert_eq!(resp.error_code, ErrorCode::UNSUPPORTED_ENDPOINT_TYPE.0);
}

// ---- DescribeTopicPartitions ---------------------------------------------------------------

fn describe_partitions(
    h: &mut Harness,
    c: ConnId,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let req = DescribeTopicPartitionsRequest {
        topics: topics.iter().map(|n| TopicRequest { name: (*n).into(), ..Default::default() }).collect(),
        response_partition_limit: limit,
        cursor: cursor.map(|(t, p)| RequestCursor { topic_name: t.into(), partition_index: p, ..Default::default() }),
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::DescribeTopicPartitions(req), 0), DescribeTopicPartitions)
}

/// Every (topic, partition) in a page, in order.
fn page(resp: &DescribeTopicPartitionsResponse) -> Vec<(String, i32)> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| (t.name.as_deref().unwrap_or_default().to_string(), p.partition_index))
        })
        .collect()
}

fn cursor(resp: &DescribeTopicPartitionsResponse) -> Option<(String, i32)> {
    resp.next_cursor.as_ref().map(|c| (c.topic_name.to_string(), c.partition_index))
}

fn three_topics(h: &mut Harness, c: ConnId) {
    create_topic(h, c, "c", 1);
    create_topic(h, c, "a", 3);
    create_topic(h, c, "b", 2);
}

#[test]
fn describe_topic_partitions_describes_every_topic_sorted_by_name() {
    let cfg = Config { node_id: 5, ..test_config() };
    let mut h = Harness::new(cfg);
    let c = h.connect();
    three_topics(&mut h, c);
    let resp = describe_partitions(&mut h, c, &[], 100, None);
    let want: Vec<(String, i32)> = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("c", 0)]
        .iter()
        .map(|(t, p)| ((*t).to_string(), *p))
        .collect();
    assert_eq!(page(&resp), want);
    assert_eq!(cursor(&resp), None);
    for t in &resp.topics {
        assert_eq!(t.error_code, 0);
        assert_ne!(t.topic_id, Uuid::ZERO);
        for p in &t.partitions {
            assert_eq!((p.error_code, p.leader_id, p.leader_epoch), (0, 5, 0));
            assert_eq!((p.replica_nodes.as_slice(), p.isr_nodes.as_slice()), (&[5][..], &[5][..]));
        }
    }
    // Named topics: unknown and invalid names get their errors, known ones their partitions.
    let resp = describe_partitions(&mut h, c, &["b", "missing", "bad name"], 100, None);
    let errors: Vec<(String, i16)> =
        resp.topics.iter().map(|t| (t.name.as_deref().unwrap_or_default().to_string(), t.error_code)).collect();
    assert_eq!(
        errors,
        vec![
            ("b".to_string(), 0),
            ("bad name".to_string(), ErrorCode::INVALID_TOPIC_EXCEPTION.0),
            ("missing".to_string(), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0),
        ]
    );
}

#[test]
fn describe_topic_partitions_pages_with_a_cursor() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    three_topics(&mut h, c);
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut at: Option<(String, i32)> = None;
    loop {
        let resp = describe_partitions(&mut h, c, &[], 2, at.as_ref().map(|(t, p)| (t.as_str(), *p)));
        let got = page(&resp);
        assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
        seen.extend(got.clone());
        pages.push(got);
        at = cursor(&resp);
        if at.is_none() {
            break;
        }
        assert!(pages.len() < 10, "pagination must end");
    }
    assert_eq!(seen.len(), 6, "every partition exactly once: {pages:?}");
    assert_eq!(pages[0], vec![("a".to_string(), 0), ("a".to_string(), 1)]);
    assert_eq!(pages[1], vec![("a".to_string(), 2), ("b".to_string(), 0)]);
}

/// A page that ends exactly at the end of a topic points the cursor at the next topic and
/// does not list that topic (as Kafka's broker does).
#[test]
fn a_page_filled_at_a_topic_boundary_points_at_the_next_topic() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    three_topics(&mut h, c);
    let first = describe_partitions(&mut h, c, &["a", "b", "c"], 3, None);
    assert_eq!(first.topics.len(), 1, "only a: {:?}", first.topics);
    assert_eq!(page(&first).len(), 3);
    assert_eq!(cursor(&first), Some(("b".to_string(), 0)));
    let second = describe_partitions(&mut h, c, &["a", "b", "c"], 3, Some(("b", 0)));
    assert_eq!(
        page(&second),
        vec![("b".to_string(), 0), ("b".to_string(), 1), ("c".to_string(), 0)],
        "the cursor skips topics before it"
    );
    assert_eq!(cursor(&second), None);
}

// ---- OffsetForLeaderEpoch ------------------------------------------------------------------

#[test]
fn offset_for_leader_epoch_ends_epoch_zero_at_the_log_end() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "epochs", 2);
    for v in ["a", "b", "c"] {
        expect_body!(h.call(c, produce_request("epochs", 1, batch(&[v]), -1), 11), Produce);
    }
    let e = epoch_end(&mut h, c, "epochs", 1, -1, 0);
    assert_eq!((e.error_code, e.partition, e.leader_epoch, e.end_offset), (0, 1, 0, 3));
    let e = epoch_end(&mut h, c, "epochs", 0, 0, 0);
    assert_eq!((e.error_code, e.leader_epoch, e.end_offset), (0, 0, 0), "an empty partition ends at 0");
    // Epochs there never were: undefined, without an error.
    for epoch in [1, 5, -1] {
        let e = epoch_end(&mut h, c, "epochs", 1, -1, epoch);
        assert_eq!((e.error_code, e.leader_epoch, e.end_offset), (0, -1, -1), "epoch {epoch}");
    }
}

#[test]
fn offset_for_leader_epoch_checks_the_current_leader_epoch_and_the_partition() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "epochs", 1);
    let e = epoch_end(&mut h, c, "epochs", 0, 1, 0);
    assert_eq!(e.error_code, ErrorCode::UNKNOWN_LEADER_EPOCH.0, "the client knows a newer leader than this one");
    assert_eq!((e.leader_epoch, e.end_offset), (-1, -1));
    let e = epoch_end(&mut h, c, "epochs", 0, -2, 0);
    assert_eq!(e.error_code, ErrorCode::FENCED_LEADER_EPOCH.0);
    let e = epoch_end(&mut h, c, "epochs", 9, -1, 0);
    assert_eq!(e.error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    let e = epoch_end(&mut h, c, "nowhere", 0, -1, 0);
    assert_eq!(e.error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
}
