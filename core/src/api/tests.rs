//! Handler unit tests: each builds a [`State`] and an [`Effects`] sink, calls a handler, and
//! reads the replies and storage commands it asked for. No broker, no harness, no sockets:
//! storage completions are fed back by hand, as the broker would.

use bytes::Bytes;

use super::{CmdOwner, Effects, dispatch};
use crate::codec::generated::RequestBody;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::api_versions::ApiVersionsRequest;
use crate::codec::generated::consumer_group_describe::ConsumerGroupDescribeRequest;
use crate::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use crate::codec::generated::delete_topics::DeleteTopicsRequest;
use crate::codec::generated::describe_configs::{DescribeConfigsRequest, DescribeConfigsResource};
use crate::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use crate::codec::generated::find_coordinator::FindCoordinatorRequest;
use crate::codec::generated::heartbeat::HeartbeatRequest;
use crate::codec::generated::init_producer_id::InitProducerIdRequest;
use crate::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use crate::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic};
use crate::codec::generated::offset_commit::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use crate::codec::generated::offset_fetch::{OffsetFetchRequest, OffsetFetchRequestTopic};
use crate::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use crate::codec::{ApiKey, ConfigResourceType, ConfigSource, ErrorCode, KStr};
use crate::config::Config;
use crate::io::{Command, Completion, ConnId};
use crate::records::{Compression, RecordBatchBuilder};
use crate::request::Req;
use crate::state::State;
use crate::time::{Instant, Now};

fn state() -> State {
    State::new(Config::default(), 7, Now { mono: Instant(0), wall_ms: 1_700_000_000_000 })
}

fn req(api: ApiKey, version: i16) -> Req {
    Req { conn: ConnId(1), slot: 0, api, version, correlation_id: 9, at: Instant(0), listener: 0 }
}

fn call(st: &mut State, fx: &mut Effects, api: ApiKey, version: i16, body: RequestBody) {
    dispatch(st, fx, req(api, version), (Some(KStr::from_static("test")), ([127, 0, 0, 1], 5000).into()), body);
}

/// Completes every storage command asked for so far as the store would when it succeeds,
/// reading nothing; returns the commands.
fn store_all(st: &mut State, fx: &mut Effects) -> Vec<Command> {
    let cmds = fx.take_commands();
    for (cmd, owner, command) in &cmds {
        let result = match command {
            Command::Read { .. } => Completion::Read { batches: Default::default() },
            _ => Completion::Done,
        };
        match *owner {
            CmdOwner::Job { job, part } => super::job_completed(st, fx, job, part, result),
            CmdOwner::Append(key) => super::waiters::append_completed(st, fx, key, *cmd, &result),
            other => panic!("unexpected owner {other:?}"),
        }
    }
    cmds.into_iter().map(|(_, _, c)| c).collect()
}

fn one_reply(fx: &mut Effects) -> ResponseBody {
    let mut replies = fx.take_replies();
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.remove(0).1
}

fn create_request(name: &'static str, partitions: i32) -> RequestBody {
    let topic = CreatableTopic {
        name: KStr::from_static(name),
        num_partitions: partitions,
        replication_factor: -1,
        ..Default::default()
    };
    RequestBody::CreateTopics(CreateTopicsRequest { topics: vec![topic], ..Default::default() })
}

fn create_topic(st: &mut State, fx: &mut Effects, name: &'static str, partitions: i32) {
    call(st, fx, ApiKey::CREATE_TOPICS, 7, create_request(name, partitions));
    store_all(st, fx);
    let ResponseBody::CreateTopics(r) = one_reply(fx) else { panic!("not a CreateTopics response") };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
}

/// One batch of `values`, each keyed by itself (compacted topics refuse records without a key).
fn batch(values: &[&[u8]]) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None);
    for v in values {
        b.append(1_700_000_000_000, Some(v), Some(v), &[]).unwrap();
    }
    b.build().unwrap()
}

fn produce(st: &mut State, fx: &mut Effects, topic: &'static str, records: Bytes) -> i64 {
    let part = PartitionProduceData { index: 0, records: Some(records), ..Default::default() };
    let data = TopicProduceData { name: KStr::from_static(topic), partition_data: vec![part], ..Default::default() };
    let m = ProduceRequest { acks: -1, timeout_ms: 1000, topic_data: vec![data], ..Default::default() };
    call(st, fx, ApiKey::PRODUCE, 9, RequestBody::Produce(m));
    assert!(fx.take_replies().is_empty(), "answered before the append was stored");
    let cmds = store_all(st, fx);
    assert!(matches!(cmds.as_slice(), [Command::Append { .. }]), "{cmds:?}");
    let ResponseBody::Produce(r) = one_reply(fx) else { panic!("not a Produce response") };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

// ---- admin -------------------------------------------------------------------------------

#[test]
fn admin_a_created_topic_is_stored_before_it_is_answered_and_described() {
    let (mut st, mut fx) = (state(), Effects::default());
    call(&mut st, &mut fx, ApiKey::CREATE_TOPICS, 7, create_request("orders", 3));
    assert!(fx.take_replies().is_empty());
    assert!(st.topics.by_name("orders").is_none(), "visible before it was stored");
    let cmds = store_all(&mut st, &mut fx);
    assert!(matches!(&cmds[..], [Command::PutTopic(r)] if r.partitions == 3));
    let ResponseBody::CreateTopics(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.topics[0].num_partitions, 3);
    assert_eq!(st.topics.by_name("orders").map(|t| t.partitions.len()), Some(3));

    let res = DescribeConfigsResource {
        resource_type: ConfigResourceType::TOPIC.0,
        resource_name: KStr::from_static("orders"),
        configuration_keys: Some(vec![KStr::from_static("cleanup.policy")]),
        ..Default::default()
    };
    let m = DescribeConfigsRequest { resources: vec![res], ..Default::default() };
    call(&mut st, &mut fx, ApiKey::DESCRIBE_CONFIGS, 4, RequestBody::DescribeConfigs(m));
    let ResponseBody::DescribeConfigs(r) = one_reply(&mut fx) else { panic!() };
    let entry = &r.results[0].configs[0];
    assert_eq!((entry.value.as_deref(), ConfigSource(entry.config_source)), (Some("delete"), ConfigSource::DEFAULT));

    let m = DeleteTopicsRequest { topic_names: vec![KStr::from_static("orders")], ..Default::default() };
    call(&mut st, &mut fx, ApiKey::DELETE_TOPICS, 5, RequestBody::DeleteTopics(m));
    assert!(st.topics.by_name("orders").is_none());
    assert!(matches!(&store_all(&mut st, &mut fx)[..], [Command::DeleteTopic { .. }]));
    let ResponseBody::DeleteTopics(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.responses[0].error_code, 0);
}

#[test]
fn admin_a_topic_the_store_refused_is_gone_and_answered_with_the_error() {
    let (mut st, mut fx) = (state(), Effects::default());
    call(&mut st, &mut fx, ApiKey::CREATE_TOPICS, 7, create_request("t", 1));
    for (_, owner, _) in fx.take_commands() {
        let CmdOwner::Job { job, part } = owner else { panic!() };
        super::job_completed(&mut st, &mut fx, job, part, Completion::Failed(crate::io::StorageError::Unavailable));
    }
    let ResponseBody::CreateTopics(r) = one_reply(&mut fx) else { panic!() };
    assert_ne!(r.topics[0].error_code, 0);
    assert!(!st.topics.name_taken("t"));
}

// ---- api_versions ------------------------------------------------------------------------

#[test]
fn api_versions_lists_produce_and_records_the_client_software() {
    let mut fx = Effects::default();
    let m = ApiVersionsRequest {
        client_software_name: KStr::from_static("kelp-test"),
        client_software_version: KStr::from_static("1.0"),
        ..Default::default()
    };
    super::api_versions::handle(&mut fx, req(ApiKey::API_VERSIONS, 3), &m);
    let software = std::iter::from_fn(|| fx.pop())
        .find_map(|e| match e {
            super::effects::Effect::ClientSoftware(_, n, v) => Some((n, v)),
            super::effects::Effect::Reply(_, super::effects::Reply::Body(ResponseBody::ApiVersions(r))) => {
                assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::PRODUCE.0));
                None
            }
            _ => None,
        })
        .expect("the client software is recorded");
    assert_eq!((software.0.as_str(), software.1.as_str()), ("kelp-test", "1.0"));
}

// ---- metadata ----------------------------------------------------------------------------

#[test]
fn metadata_auto_creates_a_topic_and_answers_once_it_is_stored() {
    let (mut st, mut fx) = (state(), Effects::default());
    let t = MetadataRequestTopic { name: Some(KStr::from_static("auto")), ..Default::default() };
    let m = MetadataRequest { topics: Some(vec![t]), allow_auto_topic_creation: true, ..Default::default() };
    call(&mut st, &mut fx, ApiKey::METADATA, 12, RequestBody::Metadata(m));
    assert!(fx.take_replies().is_empty());
    store_all(&mut st, &mut fx);
    let ResponseBody::Metadata(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].partitions.len(), usize::try_from(st.cfg.default_partitions).unwrap());
}

// ---- produce, fetch, list_offsets --------------------------------------------------------

#[test]
fn produce_assigns_offsets_and_answers_after_the_append_is_stored() {
    let (mut st, mut fx) = (state(), Effects::default());
    create_topic(&mut st, &mut fx, "p", 1);
    assert_eq!(produce(&mut st, &mut fx, "p", batch(&[b"a", b"b"])), 0);
    assert_eq!(produce(&mut st, &mut fx, "p", batch(&[b"c"])), 2);
}

#[test]
fn produce_to_an_unknown_topic_is_refused_without_storage() {
    let (mut st, mut fx) = (state(), Effects::default());
    let part = PartitionProduceData { index: 0, records: Some(batch(&[b"x"])), ..Default::default() };
    let data = TopicProduceData { name: KStr::from_static("nope"), partition_data: vec![part], ..Default::default() };
    let m = ProduceRequest { acks: 1, timeout_ms: 1000, topic_data: vec![data], ..Default::default() };
    call(&mut st, &mut fx, ApiKey::PRODUCE, 9, RequestBody::Produce(m));
    assert!(fx.take_commands().is_empty());
    let ResponseBody::Produce(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.responses[0].partition_responses[0].error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
}

#[test]
fn fetch_reads_below_the_high_watermark_and_waits_at_the_end() {
    let (mut st, mut fx) = (state(), Effects::default());
    create_topic(&mut st, &mut fx, "f", 1);
    produce(&mut st, &mut fx, "f", batch(&[b"a", b"b", b"c"]));
    let fetch = |offset: i64, max_wait_ms: i32| {
        let p =
            FetchPartition { partition: 0, fetch_offset: offset, partition_max_bytes: 1 << 20, ..Default::default() };
        let t = FetchTopic { topic: KStr::from_static("f"), partitions: vec![p], ..Default::default() };
        RequestBody::Fetch(FetchRequest {
            max_wait_ms,
            min_bytes: 1,
            max_bytes: 1 << 20,
            session_epoch: -1,
            topics: vec![t],
            ..Default::default()
        })
    };
    call(&mut st, &mut fx, ApiKey::FETCH, 12, fetch(1, 500));
    let cmds = store_all(&mut st, &mut fx);
    assert!(matches!(&cmds[..], [Command::Read { offset: 1, end: 3, .. }]), "{cmds:?}");
    let ResponseBody::Fetch(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.responses[0].partitions[0].high_watermark, 3);

    // At the end of the log the fetch parks until its wait runs out.
    call(&mut st, &mut fx, ApiKey::FETCH, 12, fetch(3, 500));
    assert!(fx.take_commands().is_empty() && fx.take_replies().is_empty());
    let timer = fx.timers.pop_due(Instant(u64::MAX)).expect("a wait timer");
    let super::Timer::FetchWait(job) = timer else { panic!("{timer:?}") };
    super::fetch::expire(&mut st, &mut fx, job);
    let ResponseBody::Fetch(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.responses[0].partitions[0].records.as_ref().map(|r| r.len()), Some(0));
}

#[test]
fn list_offsets_reports_the_earliest_and_latest_offsets() {
    let (mut st, mut fx) = (state(), Effects::default());
    create_topic(&mut st, &mut fx, "l", 1);
    produce(&mut st, &mut fx, "l", batch(&[b"a", b"b"]));
    let parts = [-2, -1].map(|ts| ListOffsetsPartition { partition_index: 0, timestamp: ts, ..Default::default() });
    let t = ListOffsetsTopic { name: KStr::from_static("l"), partitions: parts.to_vec(), ..Default::default() };
    let m = ListOffsetsRequest { replica_id: -1, topics: vec![t], ..Default::default() };
    call(&mut st, &mut fx, ApiKey::LIST_OFFSETS, 7, RequestBody::ListOffsets(m));
    let ResponseBody::ListOffsets(r) = one_reply(&mut fx) else { panic!() };
    let offsets: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [0, 2]);
}

// ---- producer ----------------------------------------------------------------------------

#[test]
fn init_producer_id_answers_once_its_block_is_stored() {
    let (mut st, mut fx) = (state(), Effects::default());
    let m = InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    call(&mut st, &mut fx, ApiKey::INIT_PRODUCER_ID, 4, RequestBody::InitProducerId(m.clone()));
    let early = fx.take_replies();
    assert!(early.is_empty(), "{early:?}");
    assert!(matches!(&store_all(&mut st, &mut fx)[..], [Command::Put { .. }]));
    let ResponseBody::InitProducerId(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!((r.error_code, r.producer_id, r.producer_epoch), (0, 0, 0));
    // The next id is covered by the stored block: no storage, answered at once.
    call(&mut st, &mut fx, ApiKey::INIT_PRODUCER_ID, 4, RequestBody::InitProducerId(m));
    assert!(fx.take_commands().is_empty());
    let ResponseBody::InitProducerId(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.producer_id, 1);
}

// ---- group, consumer, offsets ------------------------------------------------------------

#[test]
fn group_find_coordinator_names_this_node_and_an_unknown_member_is_refused() {
    let (mut st, mut fx) = (state(), Effects::default());
    let m = FindCoordinatorRequest { key: KStr::from_static("g"), key_type: 0, ..Default::default() };
    call(&mut st, &mut fx, ApiKey::FIND_COORDINATOR, 3, RequestBody::FindCoordinator(m));
    let ResponseBody::FindCoordinator(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!((r.error_code, r.node_id), (0, st.cfg.node_id));
    let m =
        HeartbeatRequest { group_id: KStr::from_static("g"), member_id: KStr::from_static("m"), ..Default::default() };
    call(&mut st, &mut fx, ApiKey::HEARTBEAT, 4, RequestBody::Heartbeat(m));
    let ResponseBody::Heartbeat(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::UNKNOWN_MEMBER_ID.0);
}

#[test]
fn consumer_group_describe_of_an_unknown_group_says_so() {
    let (mut st, mut fx) = (state(), Effects::default());
    let m = ConsumerGroupDescribeRequest { group_ids: vec![KStr::from_static("none")], ..Default::default() };
    call(&mut st, &mut fx, ApiKey::CONSUMER_GROUP_DESCRIBE, 0, RequestBody::ConsumerGroupDescribe(m));
    let ResponseBody::ConsumerGroupDescribe(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.groups[0].error_code, ErrorCode::GROUP_ID_NOT_FOUND.0);
}

#[test]
fn offsets_committed_are_stored_then_fetched() {
    let (mut st, mut fx) = (state(), Effects::default());
    create_topic(&mut st, &mut fx, "o", 1);
    let p = OffsetCommitRequestPartition {
        partition_index: 0,
        committed_offset: 42,
        committed_leader_epoch: -1,
        ..Default::default()
    };
    let t = OffsetCommitRequestTopic { name: KStr::from_static("o"), partitions: vec![p], ..Default::default() };
    let m = OffsetCommitRequest {
        group_id: KStr::from_static("g"),
        generation_id_or_member_epoch: -1,
        topics: vec![t],
        ..Default::default()
    };
    call(&mut st, &mut fx, ApiKey::OFFSET_COMMIT, 8, RequestBody::OffsetCommit(m));
    assert!(fx.take_replies().is_empty());
    assert!(matches!(&store_all(&mut st, &mut fx)[..], [Command::Put { .. }]));
    let ResponseBody::OffsetCommit(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let t = OffsetFetchRequestTopic { name: KStr::from_static("o"), partition_indexes: vec![0], ..Default::default() };
    let m = OffsetFetchRequest { group_id: KStr::from_static("g"), topics: Some(vec![t]), ..Default::default() };
    call(&mut st, &mut fx, ApiKey::OFFSET_FETCH, 7, RequestBody::OffsetFetch(m));
    let ResponseBody::OffsetFetch(r) = one_reply(&mut fx) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].committed_offset, 42);
}

// ---- cleaning ----------------------------------------------------------------------------

/// Sets topic configs with IncrementalAlterConfigs (SET) and stores the change.
fn set_configs(st: &mut State, fx: &mut Effects, topic: &'static str, configs: &[(&'static str, &'static str)]) {
    use crate::codec::generated::incremental_alter_configs::{
        AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
    };
    let configs = configs
        .iter()
        .map(|(k, v)| AlterableConfig {
            name: KStr::from_static(k),
            config_operation: 0,
            value: Some(KStr::from_static(v)),
            ..Default::default()
        })
        .collect();
    let res = AlterConfigsResource {
        resource_type: ConfigResourceType::TOPIC.0,
        resource_name: KStr::from_static(topic),
        configs,
        ..Default::default()
    };
    let m = IncrementalAlterConfigsRequest { resources: vec![res], ..Default::default() };
    call(st, fx, ApiKey::INCREMENTAL_ALTER_CONFIGS, 1, RequestBody::IncrementalAlterConfigs(m));
    store_all(st, fx);
    let ResponseBody::IncrementalAlterConfigs(r) = one_reply(fx) else { panic!() };
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
}

/// The clean commands asked for so far: (owner, partition, spec).
fn cleans(fx: &mut Effects) -> Vec<(crate::io::CmdId, crate::io::PartitionKey, crate::io::CleanSpec)> {
    fx.take_commands()
        .into_iter()
        .map(|(cmd, owner, command)| {
            let Command::Clean { partition, spec } = command else { panic!("not a clean: {command:?}") };
            assert_eq!(owner, CmdOwner::Clean(partition));
            (cmd, partition, spec)
        })
        .collect()
}

#[test]
fn cleaning_looks_at_compacted_partitions_in_name_order_with_their_settings() {
    let (mut st, mut fx) = (state(), Effects::default());
    for (name, parts) in [("zeta", 1), ("alpha", 2), ("plain", 1)] {
        create_topic(&mut st, &mut fx, name, parts);
    }
    set_configs(&mut st, &mut fx, "zeta", &[("cleanup.policy", "compact,delete")]);
    set_configs(
        &mut st,
        &mut fx,
        "alpha",
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("min.compaction.lag.ms", "1000"),
            ("max.compaction.lag.ms", "60000"),
            ("delete.retention.ms", "5000"),
        ],
    );
    produce(&mut st, &mut fx, "alpha", batch(&[b"a", b"b"]));
    super::cleaning::check(&mut st, &mut fx);
    let sent = cleans(&mut fx);
    let names: Vec<_> = sent
        .iter()
        .map(|(_, key, _)| (st.topics.by_id(key.topic_id).unwrap().name.to_string(), key.partition))
        .collect();
    assert_eq!(names, [("alpha".to_string(), 0), ("alpha".to_string(), 1), ("zeta".to_string(), 0)]);
    let spec = sent[0].2;
    assert_eq!(spec.now_ms, st.now.wall_ms);
    assert_eq!(spec.limit, 2, "the high watermark bounds the pass");
    assert!((spec.min_cleanable_dirty_ratio - 0.25).abs() < f64::EPSILON);
    assert_eq!(
        (spec.min_compaction_lag_ms, spec.max_compaction_lag_ms, spec.delete_retention_ms),
        (1000, 60_000, 5000)
    );
    let zeta = sent[2].2;
    assert!((zeta.min_cleanable_dirty_ratio - 0.5).abs() < f64::EPSILON, "Kafka's defaults");
    assert_eq!((zeta.min_compaction_lag_ms, zeta.max_compaction_lag_ms), (0, i64::MAX));
    assert_eq!(zeta.delete_retention_ms, 86_400_000);
    assert!(fx.timers.next_deadline().is_some_and(|at| at == st.now.mono + st.cfg.cleaner_backoff));
}

#[test]
fn cleaning_sends_no_second_pass_while_one_is_outstanding() {
    let (mut st, mut fx) = (state(), Effects::default());
    create_topic(&mut st, &mut fx, "c", 2);
    set_configs(&mut st, &mut fx, "c", &[("cleanup.policy", "compact")]);
    super::cleaning::check(&mut st, &mut fx);
    let first = cleans(&mut fx);
    assert_eq!(first.len(), 2);
    // Partition 0 answers; partition 1 is still being cleaned at the next look.
    let report = crate::io::CleanReport { dirty_ratio: 0.75, cleaned: true, ..Default::default() };
    let (_, key0, _) = first[0];
    assert_eq!(super::cleaning::done(&mut st, key0, &Completion::Cleaned(report)), Some(report));
    assert_eq!(st.cleaning.dirty_ratio(key0), Some(0.75));
    super::cleaning::check(&mut st, &mut fx);
    let second = cleans(&mut fx);
    assert_eq!(second.iter().map(|(_, k, _)| k.partition).collect::<Vec<_>>(), [0]);
    // A failed pass frees the partition for the next look and reports nothing.
    let (_, key1, _) = first[1];
    let failed = Completion::Failed(crate::io::StorageError::Unavailable);
    assert_eq!(super::cleaning::done(&mut st, key1, &failed), None);
    super::cleaning::check(&mut st, &mut fx);
    assert_eq!(cleans(&mut fx).iter().map(|(_, k, _)| k.partition).collect::<Vec<_>>(), [1]);
}

#[test]
fn cleaning_follows_cleanup_policy_changes_at_the_next_look() {
    let (mut st, mut fx) = (state(), Effects::default());
    create_topic(&mut st, &mut fx, "t", 1);
    super::cleaning::check(&mut st, &mut fx);
    assert!(cleans(&mut fx).is_empty(), "a delete topic is not cleaned");
    set_configs(&mut st, &mut fx, "t", &[("cleanup.policy", "compact")]);
    super::cleaning::check(&mut st, &mut fx);
    let sent = cleans(&mut fx);
    assert_eq!(sent.len(), 1);
    let report = crate::io::CleanReport { dirty_ratio: 0.5, ..Default::default() };
    super::cleaning::done(&mut st, sent[0].1, &Completion::Cleaned(report));
    set_configs(&mut st, &mut fx, "t", &[("cleanup.policy", "delete")]);
    super::cleaning::check(&mut st, &mut fx);
    assert!(cleans(&mut fx).is_empty(), "back to delete: no more cleaning");
    assert_eq!(st.cleaning.dirty_ratio(sent[0].1), None, "and no gauge for it");
}

#[test]
fn cleaning_skips_a_deleted_topic_and_forgets_its_pass() {
    let (mut st, mut fx) = (state(), Effects::default());
    create_topic(&mut st, &mut fx, "gone", 1);
    set_configs(&mut st, &mut fx, "gone", &[("cleanup.policy", "compact")]);
    super::cleaning::check(&mut st, &mut fx);
    let sent = cleans(&mut fx);
    let m = DeleteTopicsRequest { topic_names: vec![KStr::from_static("gone")], ..Default::default() };
    call(&mut st, &mut fx, ApiKey::DELETE_TOPICS, 5, RequestBody::DeleteTopics(m));
    store_all(&mut st, &mut fx);
    fx.take_replies();
    super::cleaning::check(&mut st, &mut fx);
    assert!(cleans(&mut fx).is_empty());
    let report = crate::io::CleanReport { dirty_ratio: 0.9, cleaned: true, ..Default::default() };
    assert!(super::cleaning::done(&mut st, sent[0].1, &Completion::Cleaned(report)).is_some());
    assert_eq!(st.cleaning.dirty_ratio(sent[0].1), None);
    assert!(!st.cleaning.is_outstanding(sent[0].1));
}
