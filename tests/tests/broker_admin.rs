//! Scenario tests of topic administration: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs and DeleteRecords, and what of it
//! survives a restart, with the error codes Kafka's admin clients act on.

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::alter_configs::{AlterConfigsRequest, AlterConfigsResource, AlterableConfig};
use kelp_core::codec::generated::create_partitions::{CreatePartitionsRequest, CreatePartitionsTopic};
use kelp_core::codec::generated::create_topics::{
    CreatableTopic, CreatableTopicConfig, CreatableTopicResult, CreateTopicsRequest,
};
use kelp_core::codec::generated::delete_records::{
    DeleteRecordsPartition, DeleteRecordsPartitionResult, DeleteRecordsRequest, DeleteRecordsTopic,
};
use kelp_core::codec::generated::delete_topics::{DeleteTopicState, DeleteTopicsRequest};
use kelp_core::codec::generated::describe_configs::{
    DescribeConfigsRequest, DescribeConfigsResource, DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kelp_core::codec::generated::incremental_alter_configs::{
    AlterConfigsResource as IncrementalResource, AlterableConfig as IncrementalConfig, IncrementalAlterConfigsRequest,
};
use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kelp_core::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic, MetadataResponseTopic};
use kelp_core::codec::{ApiKey, ErrorCode, KStr, Uuid};
use kelp_core::io::StorageError;
use kelp_core::{Command, Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, batch, create_topic, create_topic_with, fetch_request, produce_request, record_values, test_config,
};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// DescribeConfigs sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
/// DescribeConfigs v3+ config types.
const LONG: i8 = 5;
const LIST: i8 = 7;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn creatable(name: &str, partitions: i32, rf: i16, configs: &[(&str, Option<&str>)]) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        configs: configs
            .iter()
            .map(|(k, v)| CreatableTopicConfig { name: (*k).into(), value: v.map(KStr::from), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

fn create_topics(
    h: &mut Harness,
    c: ConnId,
    topics: Vec<CreatableTopic>,
    validate_only: bool,
) -> Vec<CreatableTopicResult> {
    let req = CreateTopicsRequest { topics, timeout_ms: 1000, validate_only, ..Default::default() };
    expect_body!(h.call(c, RequestBody::CreateTopics(req), 7), CreateTopics).topics
}

fn topic_metadata(h: &mut Harness, c: ConnId, name: &str) -> MetadataResponseTopic {
    let req = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { name: Some(name.into()), ..Default::default() }]),
        allow_auto_topic_creation: false,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::Metadata(req), 12), Metadata).topics.remove(0)
}

fn exists(h: &mut Harness, c: ConnId, name: &str) -> bool {
    topic_metadata(h, c, name).error_code == 0
}

fn describe(
    h: &mut Harness,
    c: ConnId,
    rtype: i8,
    name: &str,
    keys: Option<&[&str]>,
    synonyms: bool,
    docs: bool,
) -> DescribeConfigsResult {
    let req = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: rtype,
            resource_name: name.into(),
            configuration_keys: keys.map(|k| k.iter().map(|x| KStr::from(*x)).collect()),
            ..Default::default()
        }],
        include_synonyms: synonyms,
        include_documentation: docs,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::DescribeConfigs(req), 4), DescribeConfigs).results.remove(0)
}

fn config<'a>(r: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
    r.configs.iter().find(|e| e.name.as_str() == name).unwrap_or_else(|| panic!("{name} is described"))
}

/// A topic config's (value, source).
fn value_of(h: &mut Harness, c: ConnId, topic: &str, name: &str) -> (String, i8) {
    let r = describe(h, c, TOPIC, topic, Some(&[name]), false, false);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let e = config(&r, name);
    (e.value.as_deref().unwrap_or_default().to_string(), e.config_source)
}

fn alter(
    h: &mut Harness,
    c: ConnId,
    topic: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<KStr>) {
    let req = AlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: TOPIC,
            resource_name: topic.into(),
            configs: configs
                .iter()
                .map(|(k, v)| AlterableConfig { name: (*k).into(), value: v.map(KStr::from), ..Default::default() })
                .collect(),
            ..Default::default()
        }],
        validate_only,
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::AlterConfigs(req), 2), AlterConfigs).responses.remove(0);
    assert_eq!((r.resource_type, r.resource_name.as_str()), (TOPIC, topic));
    (r.error_code, r.error_message)
}

fn incremental(h: &mut Harness, c: ConnId, topic: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let req = IncrementalAlterConfigsRequest {
        resources: vec![IncrementalResource {
            resource_type: TOPIC,
            resource_name: topic.into(),
            configs: ops
                .iter()
                .map(|(k, op, v)| IncrementalConfig {
                    name: (*k).into(),
                    config_operation: *op,
                    value: v.map(KStr::from),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::IncrementalAlterConfigs(req), 1), IncrementalAlterConfigs).responses[0]
        .error_code
}

fn delete_records(
    h: &mut Harness,
    c: ConnId,
    topic: &str,
    partition: i32,
    offset: i64,
) -> DeleteRecordsPartitionResult {
    let req = DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: topic.into(),
            partitions: vec![DeleteRecordsPartition { partition_index: partition, offset, ..Default::default() }],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::DeleteRecords(req), 2), DeleteRecords).topics[0].partitions[0].clone()
}

/// Earliest and latest offsets of a partition.
fn offsets(h: &mut Harness, c: ConnId, topic: &str, partition: i32) -> (i64, i64) {
    let ask = |ts| {
        RequestBody::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: partition,
                    timestamp: ts,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let earliest = expect_body!(h.call(c, ask(-2), 8), ListOffsets).topics[0].partitions[0].offset;
    let latest = expect_body!(h.call(c, ask(-1), 8), ListOffsets).topics[0].partitions[0].offset;
    (earliest, latest)
}

fn produce(h: &mut Harness, c: ConnId, topic: &str, partition: i32, values: &[&str]) -> (i16, i64) {
    let resp = expect_body!(h.call(c, produce_request(topic, partition, batch(values), -1), 11), Produce);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn values(h: &mut Harness, c: ConnId, topic: &str, partition: i32) -> Vec<(i64, String)> {
    let resp = expect_body!(h.call(c, fetch_request(topic, partition, 0, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.records.as_ref().map(record_values).unwrap_or_default()
}

// ---- CreateTopics --------------------------------------------------------------------------

#[test]
fn create_topics_creates_partitions_and_reports_the_topic() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let results = create_topics(
        &mut h,
        c,
        vec![
            creatable("three", 3, -1, &[]),
            creatable("defaulted", -1, 1, &[]),
            creatable("tuned", 1, -1, &[("retention.ms", Some("1000")), ("cleanup.policy", Some("compact"))]),
        ],
        false,
    );
    let got: Vec<(&str, i16, i32, i16)> =
        results.iter().map(|r| (r.name.as_str(), r.error_code, r.num_partitions, r.replication_factor)).collect();
    assert_eq!(got, vec![("three", 0, 3, 1), ("defaulted", 0, 3, 1), ("tuned", 0, 1, 1)]);
    for r in &results {
        assert_ne!(r.topic_id, Uuid::ZERO);
        let t = topic_metadata(&mut h, c, r.name.as_str());
        assert_eq!(
            (t.error_code, t.topic_id, t.partitions.len()),
            (0, r.topic_id, usize::try_from(r.num_partitions).expect("positive"))
        );
    }
    // v5+: the topic's configs come back, overrides and defaults told apart.
    let configs = results[2].configs.as_ref().expect("v5+ returns configs");
    let find = |name: &str| configs.iter().find(|x| x.name.as_str() == name).expect("listed");
    assert_eq!(
        (find("retention.ms").value.as_deref(), find("retention.ms").config_source),
        (Some("1000"), DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        (find("cleanup.policy").value.as_deref(), find("cleanup.policy").config_source),
        (Some("compact"), DYNAMIC_TOPIC_CONFIG)
    );
    assert_eq!(
        (find("max.message.bytes").value.as_deref(), find("max.message.bytes").config_source),
        (Some("1048588"), DEFAULT_CONFIG)
    );
}

#[test]
fn create_topics_refuses_what_one_node_cannot_do_and_bad_configs() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let results = create_topics(
        &mut h,
        c,
        vec![
            creatable("rf3", 1, 3, &[]),
            creatable("rf0", 1, 0, &[]),
            creatable("none", 0, -1, &[]),
            creatable("negative", -5, -1, &[]),
            creatable("unknown-config", 1, -1, &[("no.such.config", Some("1"))]),
            creatable("bad-value", 1, -1, &[("retention.ms", Some("soon"))]),
            creatable("bad-choice", 1, -1, &[("cleanup.policy", Some("shred"))]),
            creatable("null-config", 1, -1, &[("retention.ms", None)]),
            creatable("bad name", 1, -1, &[]),
        ],
        false,
    );
    let codes: Vec<(&str, i16)> = results.iter().map(|r| (r.name.as_str(), r.error_code)).collect();
    assert_eq!(
        codes,
        vec![
            ("rf3", ErrorCode::INVALID_REPLICATION_FACTOR.0),
            ("rf0", ErrorCode::INVALID_REPLICATION_FACTOR.0),
            ("none", ErrorCode::INVALID_PARTITIONS.0),
            ("negative", ErrorCode::INVALID_PARTITIONS.0),
            ("unknown-config", ErrorCode::INVALID_CONFIG.0),
            ("bad-value", ErrorCode::INVALID_CONFIG.0),
            ("bad-choice", ErrorCode::INVALID_CONFIG.0),
            ("null-config", ErrorCode::INVALID_CONFIG.0),
            ("bad name", ErrorCode::INVALID_TOPIC_EXCEPTION.0),
        ]
    );
    for r in &results {
        assert!(r.error_message.is_some(), "{} explains itself", r.name);
        assert_eq!((r.num_partitions, r.replication_factor, r.topic_id), (-1, -1, Uuid::ZERO));
        assert!(!exists(&mut h, c, r.name.as_str()));
    }
    assert!(h.queued.is_empty());
}

#[test]
fn validate_only_checks_everything_and_creates_nothing() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "taken", 1);
    h.auto_storage = false;
    let results = create_topics(
        &mut h,
        c,
        vec![creatable("would-be", 4, -1, &[("retention.ms", Some("1000"))]), creatable("taken", 1, -1, &[])],
        true,
    );
    assert_eq!((results[0].error_code, results[0].num_partitions, results[0].replication_factor), (0, 4, 1));
    assert_eq!(results[1].error_code, ErrorCode::TOPIC_ALREADY_EXISTS.0);
    assert!(h.queued.is_empty(), "nothing is stored");
    assert!(!exists(&mut h, c, "would-be"));
    let again = create_topics(&mut h, c, vec![creatable("would-be", 4, -1, &[])], true);
    assert_eq!(again[0].error_code, 0, "nothing was reserved either");
}

#[test]
fn a_name_twice_in_one_request_is_refused_once_and_not_created() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let results = create_topics(
        &mut h,
        c,
        vec![creatable("dup", 1, -1, &[]), creatable("fine", 1, -1, &[]), creatable("dup", 2, -1, &[])],
        false,
    );
    let got: Vec<(&str, i16)> = results.iter().map(|r| (r.name.as_str(), r.error_code)).collect();
    assert_eq!(got, vec![("dup", ErrorCode::INVALID_REQUEST.0), ("fine", 0)], "one result per name, as Kafka answers");
    assert!(!exists(&mut h, c, "dup"));
    assert!(exists(&mut h, c, "fine"));
}

#[test]
fn existing_and_colliding_names_are_refused() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "metrics.raw", 1);
    let results = create_topics(
        &mut h,
        c,
        vec![
            creatable("metrics.raw", 1, -1, &[]),
            creatable("metrics_raw", 1, -1, &[]),
            creatable("metrics-raw", 1, -1, &[]),
        ],
        false,
    );
    let got: Vec<(&str, i16)> = results.iter().map(|r| (r.name.as_str(), r.error_code)).collect();
    assert_eq!(
        got,
        vec![
            ("metrics.raw", ErrorCode::TOPIC_ALREADY_EXISTS.0),
            ("metrics_raw", ErrorCode::INVALID_TOPIC_EXCEPTION.0),
            ("metrics-raw", 0),
        ],
        "'.' and '_' collide in metric names; '-' does not"
    );
}

#[test]
fn a_topic_whose_creation_failed_to_store_does_not_exist() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    h.auto_storage = false;
    h.send(
        c,
        &RequestBody::CreateTopics(CreateTopicsRequest {
            topics: vec![creatable("lost", 1, -1, &[])],
            ..Default::default()
        }),
        7,
    );
    assert!(matches!(h.queued.front(), Some((_, Command::PutTopic(_)))));
    assert!(h.recv(c, ApiKey::CREATE_TOPICS, 7).is_none(), "answered once stored");
    assert!(h.fail_one_storage(StorageError::Unavailable));
    let resp = expect_body!(h.recv(c, ApiKey::CREATE_TOPICS, 7).expect("answered").1, CreateTopics);
    assert_ne!(resp.topics[0].error_code, 0);
    h.auto_storage = true;
    assert!(!exists(&mut h, c, "lost"));
    assert_eq!(
        create_topics(&mut h, c, vec![creatable("lost", 1, -1, &[])], false)[0].error_code,
        0,
        "the name is free"
    );
}

// ---- DeleteTopics --------------------------------------------------------------------------

#[test]
fn delete_topics_by_name_and_by_id() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let by_name = create_topic(&mut h, c, "by-name", 1);
    let by_id = create_topic(&mut h, c, "by-id", 1);
    produce(&mut h, c, "by-name", 0, &["old"]);
    let req = DeleteTopicsRequest {
        topic_names: vec!["by-name".into(), "missing".into()],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::DeleteTopics(req), 5), DeleteTopics);
    let got: Vec<(Option<&str>, i16)> = resp.responses.iter().map(|r| (r.name.as_deref(), r.error_code)).collect();
    assert_eq!(got, vec![(Some("by-name"), 0), (Some("missing"), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0)]);

    let unknown = Uuid::from_u64_pair(3, 3);
    let req = DeleteTopicsRequest {
        topics: vec![
            DeleteTopicState { name: None, topic_id: by_id, ..Default::default() },
            DeleteTopicState { name: None, topic_id: unknown, ..Default::default() },
        ],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::DeleteTopics(req), 6), DeleteTopics);
    let got: Vec<(Option<&str>, Uuid, i16)> =
        resp.responses.iter().map(|r| (r.name.as_deref(), r.topic_id, r.error_code)).collect();
    assert_eq!(got, vec![(Some("by-id"), by_id, 0), (None, unknown, ErrorCode::UNKNOWN_TOPIC_ID.0)]);

    for name in ["by-name", "by-id"] {
        assert_eq!(topic_metadata(&mut h, c, name).error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    }
    assert_eq!(produce(&mut h, c, "by-name", 0, &["x"]).0, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    // The name can be used again: a new topic, with a new id and an empty log.
    let again = create_topic(&mut h, c, "by-name", 1);
    assert_ne!(again, by_name);
    assert!(values(&mut h, c, "by-name", 0).is_empty());
    // And a restart does not bring the old ones back.
    let mut after = h.restart(test_config());
    let c = after.connect();
    assert!(!exists(&mut after, c, "by-id"));
    assert_eq!(topic_metadata(&mut after, c, "by-name").topic_id, again);
}

#[test]
fn deleting_a_topic_answers_requests_waiting_on_it() {
    let mut h = Harness::new(test_config());
    let (a, b, c) = (h.connect(), h.connect(), h.connect());
    create_topic(&mut h, a, "doomed", 1);
    h.send(a, &fetch_request("doomed", 0, 0, 10_000), 12);
    h.auto_storage = false;
    h.send(b, &produce_request("doomed", 0, batch(&["late"]), -1), 11);
    let req = DeleteTopicsRequest { topic_names: vec!["doomed".into()], timeout_ms: 1000, ..Default::default() };
    h.send(c, &RequestBody::DeleteTopics(req), 5);
    let fetch = expect_body!(h.recv(a, ApiKey::FETCH, 12).expect("the long poll ends").1, Fetch);
    assert_eq!(fetch.responses[0].partitions[0].error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    let produce = expect_body!(h.recv(b, ApiKey::PRODUCE, 11).expect("the produce ends").1, Produce);
    assert_eq!(produce.responses[0].partition_responses[0].error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    h.auto_storage = true;
    h.drive();
    let resp = expect_body!(h.recv(c, ApiKey::DELETE_TOPICS, 5).expect("deleted").1, DeleteTopics);
    assert_eq!(resp.responses[0].error_code, 0);
}

// ---- CreatePartitions ----------------------------------------------------------------------

fn create_partitions(h: &mut Harness, c: ConnId, topic: &str, count: i32, validate_only: bool) -> i16 {
    let req = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic { name: topic.into(), count, assignments: None, ..Default::default() }],
        timeout_ms: 1000,
        validate_only,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::CreatePartitions(req), 3), CreatePartitions).results[0].error_code
}

#[test]
fn create_partitions_grows_a_topic_and_never_shrinks_it() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "grow", 2);
    produce(&mut h, c, "grow", 0, &["p0"]);
    produce(&mut h, c, "grow", 1, &["p1"]);
    assert_eq!(create_partitions(&mut h, c, "grow", 5, true), 0);
    assert_eq!(topic_metadata(&mut h, c, "grow").partitions.len(), 2, "validate_only changes nothing");
    assert_eq!(create_partitions(&mut h, c, "grow", 4, false), 0);
    assert_eq!(topic_metadata(&mut h, c, "grow").partitions.len(), 4);
    assert_eq!(values(&mut h, c, "grow", 0), vec![(0, "p0".into())], "existing data is untouched");
    assert_eq!(values(&mut h, c, "grow", 1), vec![(0, "p1".into())]);
    assert_eq!(produce(&mut h, c, "grow", 3, &["p3"]), (0, 0), "a new partition takes writes");
    for count in [4, 2] {
        assert_eq!(create_partitions(&mut h, c, "grow", count, false), ErrorCode::INVALID_PARTITIONS.0, "to {count}");
    }
    assert_eq!(create_partitions(&mut h, c, "missing", 3, false), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    let mut after = h.restart(test_config());
    let c = after.connect();
    assert_eq!(topic_metadata(&mut after, c, "grow").partitions.len(), 4, "stored");
    assert_eq!(values(&mut after, c, "grow", 3), vec![(0, "p3".into())]);
}

#[test]
fn create_partitions_the_store_refuses_answers_invalid_partitions_and_keeps_the_count() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "fixed", 2);
    produce(&mut h, c, "fixed", 0, &["p0"]);
    h.auto_storage = false;
    let req = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic { name: "fixed".into(), count: 4, assignments: None, ..Default::default() }],
        timeout_ms: 1000,
        ..Default::default()
    };
    h.send(c, &RequestBody::CreatePartitions(req), 3);
    assert!(matches!(h.queued.front(), Some((_, Command::PutTopic(t))) if t.partitions == 4));
    // A SeaweedMQ store cannot re-split a topic that holds data.
    assert!(h.fail_one_storage(StorageError::Refused("the backend cannot add partitions to this topic")));
    let resp = expect_body!(h.recv(c, ApiKey::CREATE_PARTITIONS, 3).expect("answered").1, CreatePartitions);
    let r = &resp.results[0];
    assert_eq!(r.error_code, ErrorCode::INVALID_PARTITIONS.0);
    assert_eq!(r.error_message.as_deref(), Some("the backend cannot add partitions to this topic"));
    h.auto_storage = true;
    assert_eq!(topic_metadata(&mut h, c, "fixed").partitions.len(), 2, "the count is unchanged");
    assert_eq!(produce(&mut h, c, "fixed", 3, &["x"]).0, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    assert_eq!(produce(&mut h, c, "fixed", 1, &["p1"]), (0, 0));
    // Any other storage failure keeps the count too, with the storage error's code.
    h.auto_storage = false;
    let req = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic { name: "fixed".into(), count: 3, assignments: None, ..Default::default() }],
        timeout_ms: 1000,
        ..Default::default()
    };
    h.send(c, &RequestBody::CreatePartitions(req), 3);
    assert!(h.fail_one_storage(StorageError::Full));
    let resp = expect_body!(h.recv(c, ApiKey::CREATE_PARTITIONS, 3).expect("answered").1, CreatePartitions);
    assert_eq!(resp.results[0].error_code, ErrorCode::KAFKA_STORAGE_ERROR.0);
    h.auto_storage = true;
    assert_eq!(topic_metadata(&mut h, c, "fixed").partitions.len(), 2);
    let mut after = h.restart(test_config());
    let c = after.connect();
    assert_eq!(topic_metadata(&mut after, c, "fixed").partitions.len(), 2, "nothing was stored");
}

// ---- DescribeConfigs -----------------------------------------------------------------------

#[test]
fn describe_configs_shows_values_sources_and_defaults() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "described", 1, &[("retention.ms", "1000")]);
    let r = describe(&mut h, c, TOPIC, "described", None, false, false);
    assert_eq!((r.error_code, r.resource_type, r.resource_name.as_str()), (0, TOPIC, "described"));
    let retention = config(&r, "retention.ms");
    assert_eq!(
        (retention.value.as_deref(), retention.config_source, retention.config_type),
        (Some("1000"), DYNAMIC_TOPIC_CONFIG, LONG)
    );
    assert!(!retention.read_only && !retention.is_sensitive);
    let size = config(&r, "max.message.bytes");
    assert_eq!((size.value.as_deref(), size.config_source), (Some("1048588"), DEFAULT_CONFIG));
    assert_eq!(config(&r, "cleanup.policy").config_type, LIST);
    assert_eq!(config(&r, "message.timestamp.type").value.as_deref(), Some("CreateTime"));
    for e in &r.configs {
        assert!(e.synonyms.is_empty(), "synonyms only when asked");
        assert!(e.documentation.is_none(), "documentation only when asked");
    }
    // Only the keys asked for.
    let r = describe(&mut h, c, TOPIC, "described", Some(&["retention.ms"]), true, true);
    assert_eq!(r.configs.len(), 1);
    let e = &r.configs[0];
    let synonyms: Vec<(&str, Option<&str>, i8)> =
        e.synonyms.iter().map(|s| (s.name.as_str(), s.value.as_deref(), s.source)).collect();
    assert_eq!(
        synonyms,
        vec![
            ("retention.ms", Some("1000"), DYNAMIC_TOPIC_CONFIG),
            ("log.retention.ms", Some("604800000"), DEFAULT_CONFIG)
        ],
        "the override first, then where the default comes from"
    );
    assert!(e.documentation.as_deref().is_some_and(|d| !d.is_empty()));
    let r = describe(&mut h, c, TOPIC, "missing", None, false, false);
    assert_eq!(r.error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
}

#[test]
fn describe_configs_shows_the_broker_read_only() {
    let cfg = Config { node_id: 2, default_partitions: 6, ..test_config() };
    let mut h = Harness::new(cfg);
    let c = h.connect();
    let r = describe(&mut h, c, BROKER, "2", None, false, false);
    assert_eq!(r.error_code, 0);
    assert_eq!(config(&r, "num.partitions").value.as_deref(), Some("6"));
    assert_eq!(config(&r, "log.retention.ms").value.as_deref(), Some("604800000"));
    assert_eq!(config(&r, "node.id").value.as_deref(), Some("2"));
    for e in &r.configs {
        assert!(e.read_only, "{}", e.name);
        assert_eq!(e.config_source, STATIC_BROKER_CONFIG);
    }
    assert_eq!(describe(&mut h, c, BROKER, "9", None, false, false).error_code, ErrorCode::INVALID_REQUEST.0);
}

// ---- AlterConfigs and IncrementalAlterConfigs ----------------------------------------------

#[test]
fn alter_configs_replaces_the_whole_override_set() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "altered", 1, &[("retention.ms", "1000"), ("cleanup.policy", "compact")]);
    assert_eq!(alter(&mut h, c, "altered", &[("max.message.bytes", Some("200"))], false).0, 0);
    assert_eq!(value_of(&mut h, c, "altered", "max.message.bytes"), ("200".into(), DYNAMIC_TOPIC_CONFIG));
    assert_eq!(value_of(&mut h, c, "altered", "retention.ms"), ("604800000".into(), DEFAULT_CONFIG), "dropped");
    assert_eq!(value_of(&mut h, c, "altered", "cleanup.policy"), ("delete".into(), DEFAULT_CONFIG));
    // The new settings take effect.
    let big = "x".repeat(300);
    assert_eq!(produce(&mut h, c, "altered", 0, &[&big]).0, ErrorCode::MESSAGE_TOO_LARGE.0);

    let (code, message) = alter(&mut h, c, "altered", &[("retention.ms", Some("soon"))], false);
    assert_eq!(code, ErrorCode::INVALID_CONFIG.0);
    assert!(message.is_some());
    assert_eq!(
        alter(&mut h, c, "altered", &[("retention.ms", None)], false).0,
        ErrorCode::INVALID_REQUEST.0,
        "null values are refused"
    );
    assert_eq!(
        alter(&mut h, c, "missing", &[("retention.ms", Some("1"))], false).0,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0
    );
    assert_eq!(alter(&mut h, c, "altered", &[("retention.ms", Some("5"))], true).0, 0);
    assert_eq!(
        value_of(&mut h, c, "altered", "max.message.bytes"),
        ("200".into(), DYNAMIC_TOPIC_CONFIG),
        "unchanged by failures and validate_only"
    );
    assert_eq!(value_of(&mut h, c, "altered", "retention.ms").1, DEFAULT_CONFIG);
}

#[test]
fn incremental_alter_configs_sets_deletes_appends_and_subtracts() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "inc", 1, &[("retention.ms", "1000")]);
    assert_eq!(incremental(&mut h, c, "inc", &[("max.message.bytes", SET, Some("5000"))]), 0);
    assert_eq!(
        value_of(&mut h, c, "inc", "retention.ms"),
        ("1000".into(), DYNAMIC_TOPIC_CONFIG),
        "other overrides stay"
    );
    assert_eq!(value_of(&mut h, c, "inc", "max.message.bytes"), ("5000".into(), DYNAMIC_TOPIC_CONFIG));
    assert_eq!(incremental(&mut h, c, "inc", &[("retention.ms", DELETE, None)]), 0);
    assert_eq!(value_of(&mut h, c, "inc", "retention.ms"), ("604800000".into(), DEFAULT_CONFIG));
    // List configs: APPEND starts from the current value, the default when not overridden.
    assert_eq!(incremental(&mut h, c, "inc", &[("cleanup.policy", APPEND, Some("compact"))]), 0);
    assert_eq!(value_of(&mut h, c, "inc", "cleanup.policy").0, "delete,compact");
    assert_eq!(incremental(&mut h, c, "inc", &[("cleanup.policy", APPEND, Some("compact"))]), 0);
    assert_eq!(value_of(&mut h, c, "inc", "cleanup.policy").0, "delete,compact", "no duplicates");
    assert_eq!(incremental(&mut h, c, "inc", &[("cleanup.policy", SUBTRACT, Some("delete"))]), 0);
    assert_eq!(value_of(&mut h, c, "inc", "cleanup.policy"), ("compact".into(), DYNAMIC_TOPIC_CONFIG));
    // Refusals change nothing.
    assert_eq!(
        incremental(&mut h, c, "inc", &[("retention.ms", APPEND, Some("1"))]),
        ErrorCode::INVALID_CONFIG.0,
        "not a list"
    );
    assert_eq!(incremental(&mut h, c, "inc", &[("no.such", SET, Some("1"))]), ErrorCode::INVALID_CONFIG.0);
    assert_eq!(incremental(&mut h, c, "inc", &[("retention.ms", SET, Some("-5"))]), ErrorCode::INVALID_CONFIG.0);
    assert_eq!(incremental(&mut h, c, "inc", &[("retention.ms", SET, None)]), ErrorCode::INVALID_REQUEST.0);
    assert_eq!(
        incremental(&mut h, c, "inc", &[("max.message.bytes", SET, Some("7")), ("retention.ms", SET, Some("x"))]),
        ErrorCode::INVALID_CONFIG.0
    );
    assert_eq!(value_of(&mut h, c, "inc", "max.message.bytes").0, "5000", "all or nothing per resource");
    assert_eq!(
        incremental(&mut h, c, "missing", &[("retention.ms", SET, Some("1"))]),
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0
    );
}

// ---- DeleteRecords -------------------------------------------------------------------------

#[test]
fn delete_records_moves_the_low_watermark() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "trim", 1);
    for v in ["a", "b", "c", "d", "e"] {
        produce(&mut h, c, "trim", 0, &[v]);
    }
    let r = delete_records(&mut h, c, "trim", 0, 2);
    assert_eq!((r.error_code, r.low_watermark), (0, 2));
    assert_eq!(offsets(&mut h, c, "trim", 0), (2, 5));
    let r = delete_records(&mut h, c, "trim", 0, 1);
    assert_eq!((r.error_code, r.low_watermark), (0, 2), "the log start never moves back");
    let r = delete_records(&mut h, c, "trim", 0, 6);
    assert_eq!((r.error_code, r.low_watermark), (ErrorCode::OFFSET_OUT_OF_RANGE.0, -1), "beyond the high watermark");
    let r = delete_records(&mut h, c, "trim", 0, -1);
    assert_eq!((r.error_code, r.low_watermark), (0, 5), "-1 means up to the high watermark");
    assert_eq!(offsets(&mut h, c, "trim", 0), (5, 5));
    assert_eq!(delete_records(&mut h, c, "trim", 3, 0).error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    assert_eq!(delete_records(&mut h, c, "missing", 0, 0).error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    assert_eq!(produce(&mut h, c, "trim", 0, &["f"]), (0, 5), "appends go on after the trimmed log");
}

// ---- restart -------------------------------------------------------------------------------

#[test]
fn topics_configs_data_log_start_and_high_watermark_survive_a_restart() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = create_topic_with(&mut h, c, "kept", 2, &[("retention.ms", "1234")]);
    for v in ["a", "b", "c"] {
        produce(&mut h, c, "kept", 0, &[v]);
    }
    produce(&mut h, c, "kept", 1, &["z"]);
    delete_records(&mut h, c, "kept", 0, 1);
    assert_eq!(incremental(&mut h, c, "kept", &[("cleanup.policy", SET, Some("compact"))]), 0);

    let mut after = h.restart(test_config());
    let c = after.connect();
    let t = topic_metadata(&mut after, c, "kept");
    assert_eq!((t.error_code, t.topic_id, t.partitions.len()), (0, id, 2));
    assert_eq!(value_of(&mut after, c, "kept", "retention.ms"), ("1234".into(), DYNAMIC_TOPIC_CONFIG));
    assert_eq!(value_of(&mut after, c, "kept", "cleanup.policy"), ("compact".into(), DYNAMIC_TOPIC_CONFIG));
    assert_eq!(offsets(&mut after, c, "kept", 0), (1, 3));
    assert_eq!(offsets(&mut after, c, "kept", 1), (0, 1));
    let resp = expect_body!(after.call(c, fetch_request("kept", 0, 1, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.log_start_offset, p.high_watermark), (1, 3));
    assert_eq!(record_values(p.records.as_ref().expect("data")), vec![(1, "b".into()), (2, "c".into())]);
    assert_eq!(produce(&mut after, c, "kept", 0, &["d"]), (0, 3), "appends continue at the old end");
    assert_eq!(values(&mut after, c, "kept", 1), vec![(0, "z".into())]);
}

// ---- compression configs -------------------------------------------------------------------

#[test]
fn compression_configs_take_kafka_values_and_describe_their_defaults() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "plain", 1, &[]);
    for (name, default) in [
        ("compression.type", "producer"),
        ("compression.gzip.level", "-1"),
        ("compression.lz4.level", "9"),
        ("compression.zstd.level", "3"),
    ] {
        assert_eq!(value_of(&mut h, c, "plain", name), (default.into(), DEFAULT_CONFIG), "{name}");
        // The broker config of the same name supplies the default.
        let r = describe(&mut h, c, TOPIC, "plain", Some(&[name]), true, false);
        let synonyms: Vec<(&str, Option<&str>)> =
            config(&r, name).synonyms.iter().map(|s| (s.name.as_str(), s.value.as_deref())).collect();
        assert_eq!(synonyms, vec![(name, Some(default))]);
    }
    let r = describe(&mut h, c, BROKER, "1", Some(&["compression.type", "compression.zstd.level"]), false, false);
    assert_eq!(config(&r, "compression.type").value.as_deref(), Some("producer"));
    assert_eq!(config(&r, "compression.zstd.level").value.as_deref(), Some("3"));

    let results = create_topics(
        &mut h,
        c,
        vec![
            creatable("zstd", 1, -1, &[("compression.type", Some("zstd")), ("compression.zstd.level", Some("-7"))]),
            creatable("flat", 1, -1, &[("compression.type", Some("uncompressed"))]),
            creatable("brotli", 1, -1, &[("compression.type", Some("brotli"))]),
            creatable("gzip0", 1, -1, &[("compression.gzip.level", Some("0"))]),
            creatable("lz4-18", 1, -1, &[("compression.lz4.level", Some("18"))]),
        ],
        false,
    );
    let codes: Vec<(&str, i16)> = results.iter().map(|r| (r.name.as_str(), r.error_code)).collect();
    let invalid = ErrorCode::INVALID_CONFIG.0;
    assert_eq!(codes, vec![("zstd", 0), ("flat", 0), ("brotli", invalid), ("gzip0", invalid), ("lz4-18", invalid)]);
    assert_eq!(value_of(&mut h, c, "zstd", "compression.zstd.level"), ("-7".into(), DYNAMIC_TOPIC_CONFIG));
    assert_eq!(incremental(&mut h, c, "plain", &[("compression.type", SET, Some("lz4"))]), 0);
    assert_eq!(value_of(&mut h, c, "plain", "compression.type"), ("lz4".into(), DYNAMIC_TOPIC_CONFIG));
}
