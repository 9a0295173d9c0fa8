//! The ACL matrix of the data-path APIs through the broker, in virtual time: Produce, Fetch,
//! ListOffsets, OffsetForLeaderEpoch, Metadata, DescribeCluster, DescribeTopicPartitions,
//! InitProducerId and DescribeProducers check what Kafka's `KafkaApis` checks, answer with its
//! codes where it puts them, serve the authorized rest of a request, and do not tell a
//! principal without DESCRIBE whether a topic exists.
//!
//! Each API first runs the same matrix (no binding, a LITERAL, PREFIXED and `User:*` ALLOW, a
//! DENY beside the ALLOW, the super user, `allow.everyone.if.no.acl.found`), then the tests
//! after it check what its responses hold.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::add_partitions_to_txn::{AddPartitionsToTxnRequest, AddPartitionsToTxnTopic};
use kelp_core::codec::generated::describe_cluster::DescribeClusterRequest;
use kelp_core::codec::generated::describe_producers::{self, DescribeProducersRequest};
use kelp_core::codec::generated::describe_topic_partitions::{
    self, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, RequestCursor,
};
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchResponse, FetchTopic};
use kelp_core::codec::generated::init_producer_id::InitProducerIdRequest;
use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kelp_core::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic, MetadataResponse};
use kelp_core::codec::generated::offset_for_leader_epoch::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::codec::{ErrorCode, KStr, Uuid};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::security::acl::{CLUSTER_NAME, Operation, PatternType, Permission, ResourceType};
use kelp_core::{CLUSTER_OPS, Config, ConnId, OPS_NOT_REQUESTED, TOPIC_OPS};
use kelp_tests::acls::{Grant, acl_config, allow, as_user, grant};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, batch, batch_from, create_topic, fetch_request, produce_request, record_values};

const ALICE: &str = "User:alice";
const TOPIC: ResourceType = ResourceType::TOPIC;
const CLUSTER: ResourceType = ResourceType::CLUSTER;
const TXN: ResourceType = ResourceType::TRANSACTIONAL_ID;
const TOPIC_AUTH: i16 = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0;

fn admin(h: &mut Harness) -> ConnId {
    as_user(h, "admin")
}

fn deny<'a>(rt: ResourceType, name: &'a str, principal: &'a str, op: Operation) -> Grant<'a> {
    (rt, name, PatternType::LITERAL, principal, op, Permission::DENY)
}

fn bit(op: Operation) -> i32 {
    1 << op.0
}

// ---------------------------------------------------------------------------------------------
// The matrix

/// One API's ACL matrix: the binding that serves it and what a probe of it shows.
struct Matrix<S> {
    /// Builds the broker's state as the super user; what it returns goes to the probe.
    setup: fn(&mut Harness) -> S,
    /// Sends the request as `conn` and returns what it shows (an error code, or bits).
    probe: fn(&mut Harness, ConnId, &S) -> i32,
    /// The resource, and a prefix of its name (none for the cluster: its bindings are literal).
    resource: (ResourceType, &'static str, Option<&'static str>),
    op: Operation,
    /// Bindings alice holds in every case besides the one under test.
    also: Vec<Grant<'static>>,
    served: i32,
    refused: i32,
}

impl<S> Matrix<S> {
    fn run(&self, api: &str) {
        let (rt, name, prefix) = self.resource;
        let allow_alice = allow(rt, name, ALICE, self.op);
        let mut everyone = acl_config();
        everyone.allow_everyone_if_no_acl_found = true;
        let mut cases: Vec<(&str, Config, Vec<Grant<'_>>, &str, i32)> = vec![
            ("no binding", acl_config(), vec![], "alice", self.refused),
            ("a LITERAL ALLOW", acl_config(), vec![allow_alice], "alice", self.served),
            ("a User:* ALLOW", acl_config(), vec![allow(rt, name, "User:*", self.op)], "alice", self.served),
            (
                "a DENY beside the ALLOW",
                acl_config(),
                vec![allow_alice, deny(rt, name, ALICE, self.op)],
                "alice",
                self.refused,
            ),
            (
                "a DENY of ALL",
                acl_config(),
                vec![allow_alice, deny(rt, name, ALICE, Operation::ALL)],
                "alice",
                self.refused,
            ),
            ("the super user", acl_config(), vec![], "admin", self.served),
            ("allow.everyone.if.no.acl.found", everyone.clone(), vec![], "alice", self.served),
            // A binding on the resource, even another principal's, turns the fallback off.
            (
                "allow.everyone with a binding for bob",
                everyone,
                vec![allow(rt, name, "User:bob", self.op)],
                "alice",
                self.refused,
            ),
        ];
        if let Some(prefix) = prefix {
            let prefixed = (rt, prefix, PatternType::PREFIXED, ALICE, self.op, Permission::ALLOW);
            cases.push(("a PREFIXED ALLOW", acl_config(), vec![prefixed], "alice", self.served));
        }
        for (case, config, grants, user, want) in cases {
            let mut h = Harness::new(config);
            let s = (self.setup)(&mut h);
            let all: Vec<Grant<'_>> = self.also.iter().copied().chain(grants).collect();
            if !all.is_empty() {
                grant(&mut h, &all);
            }
            let c = as_user(&mut h, user);
            assert_eq!((self.probe)(&mut h, c, &s), want, "{api}: {case}");
        }
    }
}

/// The topic the matrices use: `orders`, two partitions, two records in partition 0.
fn orders(h: &mut Harness) -> Uuid {
    let a = admin(h);
    let id = create_topic(h, a, "orders", 2);
    let r = expect_body!(h.call(a, produce_request("orders", 0, batch(&["a", "b"]), -1), 9), Produce);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    id
}

fn produce_code(h: &mut Harness, c: ConnId, body: RequestBody, version: i16) -> Vec<i16> {
    let r = expect_body!(h.call(c, body, version), Produce);
    r.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect()
}

fn first(codes: &[i16]) -> i32 {
    i32::from(codes[0])
}

// ---------------------------------------------------------------------------------------------
// Produce

#[test]
fn produce_takes_write_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, _| first(&produce_code(h, c, produce_request("orders", 0, batch(&["x"]), -1), 9)),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::WRITE,
        also: vec![],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("Produce");
}

/// Produce v13 names topics by id (KIP-516).
fn produce_by_id(id: Uuid, records: Bytes) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            topic_id: id,
            partition_data: vec![PartitionProduceData { index: 0, records: Some(records), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[test]
fn produce_by_topic_id_takes_write_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, id| first(&produce_code(h, c, produce_by_id(*id, batch(&["x"])), 13)),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::WRITE,
        also: vec![],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("Produce v13");
}

#[test]
fn an_unknown_topic_id_is_unknown_to_everyone() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let alice = as_user(&mut h, "alice");
    let codes = produce_code(&mut h, alice, produce_by_id(Uuid::from_u64_pair(0, 7), batch(&["x"])), 13);
    assert_eq!(codes, [ErrorCode::UNKNOWN_TOPIC_ID.0], "Kafka answers an unknown id before authorizing");
}

/// A produce of one batch to partition 0 of each topic.
fn produce_to(topics: &[&str], acks: i16, records: &Bytes, transactional_id: Option<&str>) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        acks,
        timeout_ms: 1000,
        transactional_id: transactional_id.map(KStr::from),
        topic_data: topics
            .iter()
            .map(|t| TopicProduceData {
                name: KStr::from(*t),
                partition_data: vec![PartitionProduceData {
                    index: 0,
                    records: Some(records.clone()),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// The values partition 0 of `topic` holds, read by the super user.
fn values(h: &mut Harness, topic: &str) -> Vec<String> {
    let a = admin(h);
    let r = expect_body!(h.call(a, fetch_request(topic, 0, 0, 0), 12), Fetch);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.records.as_ref().map(record_values).unwrap_or_default().into_iter().map(|(_, v)| v).collect()
}

#[test]
fn produce_writes_the_authorized_topics_and_refuses_the_rest_without_telling_which_exist() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let a = admin(&mut h);
    create_topic(&mut h, a, "secret", 1);
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::WRITE)]);
    let alice = as_user(&mut h, "alice");
    let codes = produce_code(&mut h, alice, produce_to(&["orders", "secret", "ghost"], -1, &batch(&["c"]), None), 9);
    // `ghost` does not exist: alice cannot tell it from `secret`, and it is not created.
    assert_eq!(codes, [0, TOPIC_AUTH, TOPIC_AUTH]);
    assert_eq!(values(&mut h, "orders"), ["a", "b", "c"]);
    assert!(values(&mut h, "secret").is_empty());
    let m = metadata(&mut h, a, None, false);
    assert!(!m.topics.iter().any(|t| t.name.as_deref() == Some("ghost")), "ghost was created");
}

#[test]
fn an_unauthorized_acks_0_produce_closes_the_connection_as_kafka_does() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let alice = as_user(&mut h, "alice");
    h.send(alice, &produce_request("orders", 0, batch(&["x"]), 0), 9);
    assert!(h.close_reason(alice).is_some(), "the client must notice the refusal");
    assert_eq!(values(&mut h, "orders"), ["a", "b"]);

    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::WRITE)]);
    let alice = as_user(&mut h, "alice");
    h.send(alice, &produce_request("orders", 0, batch(&["y"]), 0), 9);
    assert!(h.close_reason(alice).is_none());
    assert_eq!(values(&mut h, "orders"), ["a", "b", "y"]);
}

/// `orders` and a transaction `tx-orders` of the super user's that holds partition 0 of it:
/// the producer id and epoch.
fn orders_in_a_transaction(h: &mut Harness) -> (i64, i16) {
    orders(h);
    let a = admin(h);
    let init = InitProducerIdRequest {
        transactional_id: Some(KStr::from("tx-orders")),
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let r = expect_body!(h.call(a, RequestBody::InitProducerId(init), 5), InitProducerId);
    assert_eq!(r.error_code, 0);
    let p = (r.producer_id, r.producer_epoch);
    let add = AddPartitionsToTxnRequest {
        v3_and_below_transactional_id: KStr::from("tx-orders"),
        v3_and_below_producer_id: p.0,
        v3_and_below_producer_epoch: p.1,
        v3_and_below_topics: vec![AddPartitionsToTxnTopic {
            name: KStr::from("orders"),
            partitions: vec![0],
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(a, RequestBody::AddPartitionsToTxn(add), 3), AddPartitionsToTxn);
    assert_eq!(r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code, 0);
    p
}

fn txn_batch(p: (i64, i16), values: &[&str]) -> Bytes {
    batch_from(RecordBatchBuilder::new(Compression::None).producer(p.0, p.1, 0).transactional(true), values)
}

#[test]
fn a_transactional_produce_takes_write_on_the_transactional_id() {
    Matrix {
        setup: orders_in_a_transaction,
        probe: |h, c, p| {
            first(&produce_code(h, c, produce_to(&["orders"], -1, &txn_batch(*p, &["t"]), Some("tx-orders")), 11))
        },
        resource: (TXN, "tx-orders", Some("tx-")),
        op: Operation::WRITE,
        also: vec![allow(TOPIC, "orders", ALICE, Operation::WRITE)],
        served: 0,
        refused: i32::from(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0),
    }
    .run("transactional Produce");
}

#[test]
fn a_transactional_produce_without_the_id_is_refused_whole() {
    let mut h = Harness::new(acl_config());
    let p = orders_in_a_transaction(&mut h);
    let a = admin(&mut h);
    create_topic(&mut h, a, "secret", 1);
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::WRITE)]);
    let alice = as_user(&mut h, "alice");
    let codes = produce_code(
        &mut h,
        alice,
        produce_to(&["orders", "secret"], -1, &txn_batch(p, &["t"]), Some("tx-orders")),
        11,
    );
    let refused = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0;
    assert_eq!(codes, [refused, refused], "every partition, the authorized topic too");
    // Transactional batches without a transactional id are refused alike.
    let codes = produce_code(&mut h, alice, produce_to(&["orders"], -1, &txn_batch(p, &["t"]), None), 11);
    assert_eq!(codes, [refused]);
    assert_eq!(values(&mut h, "orders"), ["a", "b"]);
    // acks=0: the connection closes.
    h.send(alice, &produce_to(&["orders"], 0, &txn_batch(p, &["t"]), Some("tx-orders")), 11);
    assert!(h.close_reason(alice).is_some());
}

// ---------------------------------------------------------------------------------------------
// Fetch

fn fetch_code(h: &mut Harness, c: ConnId, body: RequestBody, version: i16) -> Vec<(String, i16)> {
    let r = expect_body!(h.call(c, body, version), Fetch);
    assert_eq!(r.error_code, 0);
    r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), p.error_code))).collect()
}

#[test]
fn fetch_takes_read_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, _| i32::from(fetch_code(h, c, fetch_request("orders", 0, 0, 0), 12)[0].1),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::READ,
        also: vec![],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("Fetch");
}

/// A fetch of partition 0 of each topic from offset 0, in fetch session `session` at `epoch`
/// (0 and 0: a new session; 0 and -1: none).
fn fetch_of(topics: &[&str], session: i32, epoch: i32, max_wait_ms: i32) -> RequestBody {
    RequestBody::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        session_id: session,
        session_epoch: epoch,
        topics: topics
            .iter()
            .map(|t| FetchTopic {
                topic: KStr::from(*t),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

fn fetch(h: &mut Harness, c: ConnId, body: RequestBody) -> FetchResponse {
    let r = expect_body!(h.call(c, body, 12), Fetch);
    assert_eq!(r.error_code, 0);
    r
}

/// (topic, error code, values) per partition of a fetch response.
fn fetched(r: &FetchResponse) -> Vec<(String, i16, Vec<String>)> {
    r.responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let values = p.records.as_ref().map(record_values).unwrap_or_default();
                (t.topic.to_string(), p.error_code, values.into_iter().map(|(_, v)| v).collect())
            })
        })
        .collect()
}

#[test]
fn fetch_sessions_keep_unauthorized_partitions_and_refuse_them_on_every_fetch() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let a = admin(&mut h);
    create_topic(&mut h, a, "secret", 1);
    let r = expect_body!(h.call(a, produce_request("secret", 0, batch(&["s"]), -1), 9), Produce);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::READ)]);
    let alice = as_user(&mut h, "alice");

    // A new session (KIP-227) with both partitions: the authorized one is served.
    let r = fetch(&mut h, alice, fetch_of(&["orders", "secret", "ghost"], 0, 0, 0));
    let session = r.session_id;
    assert_ne!(session, 0);
    let want = |s: &[&str]| s.iter().map(|v| (*v).to_string()).collect::<Vec<_>>();
    assert_eq!(
        fetched(&r),
        [
            ("orders".into(), 0, want(&["a", "b"])),
            ("secret".into(), TOPIC_AUTH, vec![]),
            ("ghost".into(), TOPIC_AUTH, vec![]),
        ]
    );
    // An incremental fetch answers the refused partitions again: an error is news, and they
    // stay in the session (as in Kafka) rather than vanish without a word.
    let r = fetch(&mut h, alice, fetch_of(&[], session, 1, 0));
    let refused: Vec<_> = fetched(&r).into_iter().filter(|(_, code, _)| *code != 0).collect();
    assert_eq!(refused, [("secret".into(), TOPIC_AUTH, vec![]), ("ghost".into(), TOPIC_AUTH, vec![])]);
    // Every fetch is authorized anew: a grant takes effect within the session.
    grant(&mut h, &[allow(TOPIC, "secret", ALICE, Operation::READ)]);
    let r = fetch(&mut h, alice, fetch_of(&[], session, 2, 0));
    assert!(fetched(&r).contains(&("secret".into(), 0, want(&["s"]))), "{:?}", fetched(&r));
}

#[test]
fn a_long_poll_of_only_unauthorized_partitions_answers_at_once() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let alice = as_user(&mut h, "alice");
    // `call` demands the answer without time passing.
    let r = fetch(&mut h, alice, fetch_of(&["orders"], 0, -1, 10_000));
    assert_eq!(fetched(&r), [("orders".into(), TOPIC_AUTH, vec![])]);
}

#[test]
fn fetch_by_topic_id_refuses_known_ids_and_reports_unknown_ones() {
    let mut h = Harness::new(acl_config());
    let id = orders(&mut h);
    let alice = as_user(&mut h, "alice");
    let by_id = |id: Uuid| {
        RequestBody::Fetch(FetchRequest {
            min_bytes: 1,
            topics: vec![FetchTopic {
                topic_id: id,
                partitions: vec![FetchPartition { partition: 0, partition_max_bytes: 1 << 20, ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let r = expect_body!(h.call(alice, by_id(id), 13), Fetch);
    assert_eq!(r.responses[0].partitions[0].error_code, TOPIC_AUTH);
    let r = expect_body!(h.call(alice, by_id(Uuid::from_u64_pair(0, 9)), 13), Fetch);
    assert_eq!(r.responses[0].partitions[0].error_code, ErrorCode::UNKNOWN_TOPIC_ID.0);
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::READ)]);
    let r = expect_body!(h.call(alice, by_id(id), 13), Fetch);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
}

#[test]
fn a_follower_fetch_takes_cluster_action_not_read() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::READ)]);
    let alice = as_user(&mut h, "alice");
    let follower = || {
        let RequestBody::Fetch(f) = fetch_request("orders", 0, 0, 0) else { unreachable!() };
        RequestBody::Fetch(FetchRequest { replica_id: 1, ..f })
    };
    assert_eq!(fetch_code(&mut h, alice, follower(), 12), [("orders".into(), TOPIC_AUTH)]);
    grant(&mut h, &[allow(CLUSTER, CLUSTER_NAME, ALICE, Operation::CLUSTER_ACTION)]);
    assert_eq!(fetch_code(&mut h, alice, follower(), 12), [("orders".into(), 0)]);
}

// ---------------------------------------------------------------------------------------------
// ListOffsets and OffsetForLeaderEpoch

fn list_offsets(h: &mut Harness, c: ConnId, topics: &[&str]) -> Vec<(i16, i64)> {
    let req = ListOffsetsRequest {
        replica_id: -1,
        topics: topics
            .iter()
            .map(|t| ListOffsetsTopic {
                name: KStr::from(*t),
                partitions: vec![ListOffsetsPartition { partition_index: 0, timestamp: -1, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::ListOffsets(req), 8), ListOffsets);
    r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.error_code, p.offset))).collect()
}

#[test]
fn list_offsets_takes_describe_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, _| i32::from(list_offsets(h, c, &["orders"])[0].0),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::DESCRIBE,
        also: vec![],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("ListOffsets");
}

#[test]
fn list_offsets_serves_authorized_topics_and_hides_whether_the_rest_exist() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    // READ implies DESCRIBE.
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::READ)]);
    let alice = as_user(&mut h, "alice");
    let a = admin(&mut h);
    create_topic(&mut h, a, "secret", 1);
    assert_eq!(
        list_offsets(&mut h, alice, &["orders", "secret", "ghost"]),
        [(0, 2), (TOPIC_AUTH, -1), (TOPIC_AUTH, -1)]
    );
    assert_eq!(list_offsets(&mut h, a, &["ghost"]), [(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0, -1)]);
}

fn epoch_end(h: &mut Harness, c: ConnId, topic: &str) -> (i16, i64) {
    let req = OffsetForLeaderEpochRequest {
        replica_id: -1,
        topics: vec![OffsetForLeaderTopic {
            topic: KStr::from(topic),
            partitions: vec![OffsetForLeaderPartition { partition: 0, leader_epoch: 0, ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::OffsetForLeaderEpoch(req), 4), OffsetForLeaderEpoch);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.end_offset)
}

#[test]
fn offset_for_leader_epoch_takes_describe_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, _| i32::from(epoch_end(h, c, "orders").0),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::DESCRIBE,
        // CLUSTER_ACTION would serve it too: a DENY on the cluster closes that way.
        also: vec![deny(CLUSTER, CLUSTER_NAME, ALICE, Operation::CLUSTER_ACTION)],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("OffsetForLeaderEpoch");
}

#[test]
fn offset_for_leader_epoch_is_served_to_cluster_action_as_to_brokers() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let alice = as_user(&mut h, "alice");
    assert_eq!(epoch_end(&mut h, alice, "orders"), (TOPIC_AUTH, -1));
    assert_eq!(epoch_end(&mut h, alice, "ghost"), (TOPIC_AUTH, -1));
    grant(&mut h, &[allow(CLUSTER, CLUSTER_NAME, ALICE, Operation::CLUSTER_ACTION)]);
    assert_eq!(epoch_end(&mut h, alice, "orders"), (0, 2));
    assert_eq!(epoch_end(&mut h, alice, "ghost").0, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
}

// ---------------------------------------------------------------------------------------------
// Metadata, DescribeCluster, DescribeTopicPartitions

/// Metadata v12 for `topics` by name (None: every topic), without auto-creation unless `create`,
/// with the authorized operations.
fn metadata(h: &mut Harness, c: ConnId, topics: Option<&[&str]>, create: bool) -> MetadataResponse {
    let req = MetadataRequest {
        topics: topics.map(|ts| {
            ts.iter().map(|t| MetadataRequestTopic { name: Some(KStr::from(*t)), ..Default::default() }).collect()
        }),
        allow_auto_topic_creation: create,
        include_topic_authorized_operations: true,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::Metadata(req), 12), Metadata)
}

/// (name, error code, topic id is zero, authorized operations) per topic.
fn topics_of(m: &MetadataResponse) -> Vec<(String, i16, bool, i32)> {
    let mut v: Vec<_> = m
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_deref().unwrap_or("").to_string();
            (name, t.error_code, t.topic_id == Uuid::ZERO, t.topic_authorized_operations)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn metadata_takes_describe_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, _| i32::from(metadata(h, c, Some(&["orders"]), false).topics[0].error_code),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::DESCRIBE,
        also: vec![],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("Metadata");
}

#[test]
fn metadata_lists_only_describable_topics_and_refuses_named_ones_existing_or_not() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let a = admin(&mut h);
    create_topic(&mut h, a, "secret", 1);
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::READ)]);
    let alice = as_user(&mut h, "alice");
    let read_describe = bit(Operation::READ) | bit(Operation::DESCRIBE);
    let all = metadata(&mut h, alice, None, false);
    assert_eq!(topics_of(&all), [("orders".into(), 0, false, read_describe)]);
    let named = metadata(&mut h, alice, Some(&["orders", "secret", "ghost"]), false);
    assert_eq!(
        topics_of(&named),
        [
            ("ghost".into(), TOPIC_AUTH, true, OPS_NOT_REQUESTED),
            ("orders".into(), 0, false, read_describe),
            ("secret".into(), TOPIC_AUTH, true, OPS_NOT_REQUESTED),
        ]
    );
    // The super user sees everything, with every operation.
    let all = metadata(&mut h, a, None, false);
    assert_eq!(topics_of(&all), [("orders".into(), 0, false, TOPIC_OPS), ("secret".into(), 0, false, TOPIC_OPS)]);
}

#[test]
fn metadata_by_topic_id_refuses_an_undescribable_known_id() {
    let mut h = Harness::new(acl_config());
    let id = orders(&mut h);
    let alice = as_user(&mut h, "alice");
    let req = MetadataRequest {
        topics: Some(vec![
            MetadataRequestTopic { topic_id: id, name: None, ..Default::default() },
            MetadataRequestTopic { topic_id: Uuid::from_u64_pair(0, 5), name: None, ..Default::default() },
        ]),
        ..Default::default()
    };
    let r = expect_body!(h.call(alice, RequestBody::Metadata(req), 12), Metadata);
    let got: Vec<_> = r.topics.iter().map(|t| (t.topic_id, t.name.clone(), t.error_code)).collect();
    // Kafka does not hold topic ids secret: the known one is refused under its id, no name.
    assert_eq!(got, [(id, None, TOPIC_AUTH), (Uuid::from_u64_pair(0, 5), None, ErrorCode::UNKNOWN_TOPIC_ID.0)]);
}

#[test]
fn metadata_auto_creates_only_with_create_on_the_cluster_or_the_topic() {
    let mut h = Harness::new(acl_config());
    let a = admin(&mut h);
    let describe_new = (TOPIC, "new-", PatternType::PREFIXED, ALICE, Operation::DESCRIBE, Permission::ALLOW);
    grant(&mut h, &[describe_new]);
    let alice = as_user(&mut h, "alice");
    let r = metadata(&mut h, alice, Some(&["new-a", "other"]), true);
    assert_eq!(
        topics_of(&r),
        [("new-a".into(), TOPIC_AUTH, true, OPS_NOT_REQUESTED), ("other".into(), TOPIC_AUTH, true, OPS_NOT_REQUESTED)]
    );
    assert!(topics_of(&metadata(&mut h, a, None, false)).is_empty(), "nothing was created");

    grant(&mut h, &[allow(TOPIC, "new-b", ALICE, Operation::CREATE)]);
    let r = metadata(&mut h, alice, Some(&["new-a", "new-b"]), true);
    let got: Vec<_> = topics_of(&r).into_iter().map(|(n, code, ..)| (n, code)).collect();
    assert_eq!(got, [("new-a".into(), TOPIC_AUTH), ("new-b".into(), 0)]);

    grant(&mut h, &[allow(CLUSTER, CLUSTER_NAME, ALICE, Operation::CREATE)]);
    let r = metadata(&mut h, alice, Some(&["new-a"]), true);
    assert_eq!(r.topics[0].error_code, 0);
    let all: Vec<_> = topics_of(&metadata(&mut h, a, None, false)).into_iter().map(|t| t.0).collect();
    assert_eq!(all, ["new-a", "new-b"]);
}

#[test]
fn metadata_cluster_operations_take_describe_on_the_cluster() {
    let mut h = Harness::new(acl_config());
    let alice = as_user(&mut h, "alice");
    let ask = |h: &mut Harness, c| {
        let req = MetadataRequest { topics: None, include_cluster_authorized_operations: true, ..Default::default() };
        expect_body!(h.call(c, RequestBody::Metadata(req), 10), Metadata).cluster_authorized_operations
    };
    assert_eq!(ask(&mut h, alice), 0);
    grant(&mut h, &[allow(CLUSTER, CLUSTER_NAME, ALICE, Operation::ALTER)]);
    // ALTER implies DESCRIBE.
    assert_eq!(ask(&mut h, alice), bit(Operation::ALTER) | bit(Operation::DESCRIBE));
    let a = admin(&mut h);
    assert_eq!(ask(&mut h, a), CLUSTER_OPS);
}

fn describe_cluster_ops(h: &mut Harness, c: ConnId, asked: bool) -> (i16, i32) {
    let req = DescribeClusterRequest { include_cluster_authorized_operations: asked, ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::DescribeCluster(req), 1), DescribeCluster);
    (r.error_code, r.cluster_authorized_operations)
}

/// Kafka refuses DescribeCluster to no one (`AuthHelper.computeDescribeClusterResponse`):
/// DESCRIBE on the cluster decides only whether the authorized operations come back.
#[test]
fn describe_cluster_shows_the_cluster_operations_to_describe_on_the_cluster() {
    Matrix {
        setup: |_| (),
        probe: |h, c, ()| {
            let (code, ops) = describe_cluster_ops(h, c, true);
            assert_eq!(code, 0);
            ops & bit(Operation::DESCRIBE)
        },
        resource: (CLUSTER, CLUSTER_NAME, None),
        op: Operation::DESCRIBE,
        also: vec![],
        served: bit(Operation::DESCRIBE),
        refused: 0,
    }
    .run("DescribeCluster");
    let mut h = Harness::new(acl_config());
    let alice = as_user(&mut h, "alice");
    assert_eq!(describe_cluster_ops(&mut h, alice, true), (0, 0));
    assert_eq!(describe_cluster_ops(&mut h, alice, false), (0, OPS_NOT_REQUESTED));
    let a = admin(&mut h);
    assert_eq!(describe_cluster_ops(&mut h, a, true), (0, CLUSTER_OPS));
}

fn describe_partitions(
    h: &mut Harness,
    c: ConnId,
    topics: &[&str],
    limit: i32,
    cursor: Option<&str>,
) -> DescribeTopicPartitionsResponse {
    let req = DescribeTopicPartitionsRequest {
        topics: topics
            .iter()
            .map(|t| describe_topic_partitions::TopicRequest { name: KStr::from(*t), ..Default::default() })
            .collect(),
        response_partition_limit: limit,
        cursor: cursor.map(|t| RequestCursor { topic_name: KStr::from(t), partition_index: 0, ..Default::default() }),
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::DescribeTopicPartitions(req), 0), DescribeTopicPartitions)
}

/// (name, error code, topic id is zero, authorized operations, partitions) per topic.
fn described(r: &DescribeTopicPartitionsResponse) -> Vec<(String, i16, bool, i32, usize)> {
    let mut v: Vec<_> = r
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_deref().unwrap_or("").to_string();
            (name, t.error_code, t.topic_id == Uuid::ZERO, t.topic_authorized_operations, t.partitions.len())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn describe_topic_partitions_takes_describe_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, _| i32::from(describe_partitions(h, c, &["orders"], 100, None).topics[0].error_code),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::DESCRIBE,
        also: vec![],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("DescribeTopicPartitions");
}

#[test]
fn describe_topic_partitions_skips_undescribable_topics_in_listings_and_pages() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    let a = admin(&mut h);
    for t in ["alpha", "beta", "gamma"] {
        create_topic(&mut h, a, t, 1);
    }
    grant(
        &mut h,
        &[
            allow(TOPIC, "orders", ALICE, Operation::DESCRIBE),
            allow(TOPIC, "alpha", ALICE, Operation::WRITE),
            allow(TOPIC, "gamma", ALICE, Operation::DESCRIBE),
        ],
    );
    let alice = as_user(&mut h, "alice");
    let describe = bit(Operation::DESCRIBE);
    let r = describe_partitions(&mut h, alice, &[], 100, None);
    assert_eq!(
        described(&r),
        [
            ("alpha".into(), 0, false, bit(Operation::WRITE) | describe, 1),
            ("gamma".into(), 0, false, describe, 1),
            ("orders".into(), 0, false, describe, 2),
        ]
    );
    // Pages of one partition: the cursor never names `beta`, which alice may not see.
    let r = describe_partitions(&mut h, alice, &[], 1, None);
    assert_eq!(described(&r).len(), 1);
    let next = r.next_cursor.expect("a next page");
    assert_eq!(next.topic_name.as_str(), "gamma");
    // Named: refused, with no id, existing or not.
    let r = describe_partitions(&mut h, alice, &["beta", "ghost", "gamma"], 100, None);
    assert_eq!(
        described(&r),
        [
            ("beta".into(), TOPIC_AUTH, true, OPS_NOT_REQUESTED, 0),
            ("gamma".into(), 0, false, describe, 1),
            ("ghost".into(), TOPIC_AUTH, true, OPS_NOT_REQUESTED, 0),
        ]
    );
    let r = describe_partitions(&mut h, a, &["beta"], 100, None);
    assert_eq!(described(&r), [("beta".into(), 0, false, TOPIC_OPS, 1)]);
}

// ---------------------------------------------------------------------------------------------
// InitProducerId and DescribeProducers

fn init_producer_id(h: &mut Harness, c: ConnId, transactional_id: Option<&str>) -> (i16, i64) {
    let req = InitProducerIdRequest {
        transactional_id: transactional_id.map(KStr::from),
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::InitProducerId(req), 5), InitProducerId);
    (r.error_code, r.producer_id)
}

#[test]
fn init_producer_id_with_a_transactional_id_takes_write_on_it() {
    Matrix {
        setup: |_| (),
        probe: |h, c, ()| i32::from(init_producer_id(h, c, Some("tx-orders")).0),
        resource: (TXN, "tx-orders", Some("tx-")),
        op: Operation::WRITE,
        also: vec![],
        served: 0,
        refused: i32::from(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0),
    }
    .run("transactional InitProducerId");
}

#[test]
fn idempotent_init_producer_id_takes_idempotent_write_on_the_cluster() {
    Matrix {
        setup: |_| (),
        probe: |h, c, ()| i32::from(init_producer_id(h, c, None).0),
        resource: (CLUSTER, CLUSTER_NAME, None),
        op: Operation::IDEMPOTENT_WRITE,
        // WRITE on some topic would serve it too: a DENY on every topic closes that way.
        also: vec![deny(TOPIC, "*", ALICE, Operation::WRITE)],
        served: 0,
        refused: i32::from(ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0),
    }
    .run("idempotent InitProducerId");
}

#[test]
fn idempotent_init_producer_id_is_served_to_a_writer_of_some_topic() {
    let mut h = Harness::new(acl_config());
    let alice = as_user(&mut h, "alice");
    assert_eq!(init_producer_id(&mut h, alice, None), (ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0, -1));
    // READ on a topic is not enough (KIP-679: WRITE on some topic is).
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::READ)]);
    assert_eq!(init_producer_id(&mut h, alice, None).0, ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0);
    grant(&mut h, &[(TOPIC, "logs-", PatternType::PREFIXED, ALICE, Operation::WRITE, Permission::ALLOW)]);
    let (code, id) = init_producer_id(&mut h, alice, None);
    assert_eq!(code, 0);
    assert!(id >= 0);
}

fn describe_producers(h: &mut Harness, c: ConnId, topics: &[&str]) -> Vec<(i16, Option<String>)> {
    let req = DescribeProducersRequest {
        topics: topics
            .iter()
            .map(|t| describe_producers::TopicRequest {
                name: KStr::from(*t),
                partition_indexes: vec![0],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::DescribeProducers(req), 0), DescribeProducers);
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.error_code, p.error_message.as_deref().map(str::to_string))))
        .collect()
}

#[test]
fn describe_producers_takes_read_on_the_topic() {
    Matrix {
        setup: orders,
        probe: |h, c, _| i32::from(describe_producers(h, c, &["orders"])[0].0),
        resource: (TOPIC, "orders", Some("ord")),
        op: Operation::READ,
        also: vec![],
        served: 0,
        refused: i32::from(TOPIC_AUTH),
    }
    .run("DescribeProducers");
}

#[test]
fn describe_producers_refuses_unreadable_topics_existing_or_not() {
    let mut h = Harness::new(acl_config());
    orders(&mut h);
    // DESCRIBE is not READ.
    grant(&mut h, &[allow(TOPIC, "orders", ALICE, Operation::DESCRIBE)]);
    let alice = as_user(&mut h, "alice");
    let refused = (TOPIC_AUTH, Some("Topic authorization failed.".to_string()));
    assert_eq!(describe_producers(&mut h, alice, &["orders", "ghost"]), [refused.clone(), refused]);
}
