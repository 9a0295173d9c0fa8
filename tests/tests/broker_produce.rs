//! Scenario tests of the write path: Produce (acks, validation, LogAppendTime, storage
//! failures), idempotent producers (duplicates, epochs, sequences, restarts), InitProducerId
//! and DescribeProducers, with the error codes Kafka clients act on; keys on compacted topics
//! and recompression to a topic's `compression.type`.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::delete_records::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic};
use kelp_core::codec::generated::describe_producers::{DescribeProducersRequest, PartitionResponse, TopicRequest};
use kelp_core::codec::generated::incremental_alter_configs::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kelp_core::codec::generated::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use kelp_core::codec::generated::produce::{
    PartitionProduceData, PartitionProduceResponse, ProduceRequest, TopicProduceData,
};
use kelp_core::codec::{ApiKey, ErrorCode, KStr, Uuid};
use kelp_core::io::StorageError;
use kelp_core::records::{Batches, Compression, RecordBatchBuilder, TimestampType};
use kelp_core::schemas::{SchemaCatalog, SchemaCheck};
use kelp_core::typed::Typing;
use kelp_core::{Command, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, START_WALL_MS, batch, batch_from, create_topic, create_topic_with, fetch_request, idempotent_batch, ms,
    produce_request, record_values, test_config,
};

/// IncrementalAlterConfigs operations (Kafka's `AlterConfigOp.OpType`).
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Produces one batch and returns the partition's answer.
fn produce(h: &mut Harness, c: ConnId, topic: &str, partition: i32, records: Bytes) -> PartitionProduceResponse {
    let resp = expect_body!(h.call(c, produce_request(topic, partition, records, -1), 11), Produce);
    assert_eq!(resp.responses.len(), 1);
    resp.responses[0].partition_responses[0].clone()
}

fn error_of(h: &mut Harness, c: ConnId, topic: &str, partition: i32, records: Bytes) -> ErrorCode {
    ErrorCode(produce(h, c, topic, partition, records).error_code)
}

/// The high watermark and every (offset, value) of a partition.
fn log_of(h: &mut Harness, c: ConnId, topic: &str, partition: i32) -> (i64, Vec<(i64, String)>) {
    let resp = expect_body!(h.call(c, fetch_request(topic, partition, 0, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.high_watermark, p.records.as_ref().map(record_values).unwrap_or_default())
}

fn init_producer_id(h: &mut Harness, c: ConnId, transactional_id: Option<&str>) -> InitProducerIdResponse {
    let req = InitProducerIdRequest {
        transactional_id: transactional_id.map(KStr::from),
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::InitProducerId(req), 5), InitProducerId)
}

fn describe_producers(h: &mut Harness, c: ConnId, topic: &str, partitions: &[i32]) -> Vec<PartitionResponse> {
    let req = DescribeProducersRequest {
        topics: vec![TopicRequest { name: topic.into(), partition_indexes: partitions.to_vec(), ..Default::default() }],
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::DescribeProducers(req), 0), DescribeProducers).topics[0].partitions.clone()
}

fn delete_records_to_hwm(h: &mut Harness, c: ConnId, topic: &str) {
    let req = DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: topic.into(),
            partitions: vec![DeleteRecordsPartition { partition_index: 0, offset: -1, ..Default::default() }],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::DeleteRecords(req), 2), DeleteRecords);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
}

// ---- acks ----------------------------------------------------------------------------------

#[test]
fn acks_one_and_all_answer_once_the_batch_is_stored() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "acked", 1);
    h.auto_storage = false;
    for (acks, base) in [(1, 0), (-1, 2)] {
        h.send(c, &produce_request("acked", 0, batch(&["a", "b"]), acks), 11);
        assert!(h.recv(c, ApiKey::PRODUCE, 11).is_none(), "acks={acks}: not before the store has it");
        assert!(matches!(h.queued.front(), Some((_, Command::Append { base_offset, .. })) if *base_offset == base));
        assert!(h.run_one_storage());
        let resp = expect_body!(h.recv(c, ApiKey::PRODUCE, 11).expect("acknowledged").1, Produce);
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset, p.log_start_offset, p.log_append_time_ms), (0, base, 0, -1));
        assert_eq!(resp.responses[0].name.as_str(), "acked");
    }
}

#[test]
fn acks_zero_answers_nothing_and_the_next_request_is_answered_in_turn() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "quiet", 1);
    h.send(c, &produce_request("quiet", 0, batch(&["a"]), 0), 11);
    h.send(c, &produce_request("quiet", 0, batch(&["b"]), 0), 11);
    assert_eq!(h.pending_bytes(c), 0);
    let (hwm, records) = log_of(&mut h, c, "quiet", 0);
    assert_eq!((hwm, records), (2, vec![(0, "a".into()), (1, "b".into())]));
}

#[test]
fn an_acks_zero_produce_that_fails_closes_the_connection() {
    let mut h = Harness::new(test_config());
    let (c, other) = (h.connect(), h.connect());
    create_topic(&mut h, c, "t", 1);
    h.send(c, &produce_request("missing", 0, batch(&["a"]), 0), 11);
    assert!(h.close_reason(c).is_some(), "the client must notice: Kafka closes the connection");
    assert_eq!(h.pending_bytes(c), 0);
    assert_eq!(produce(&mut h, other, "t", 0, batch(&["a"])).error_code, 0, "others are unaffected");
}

#[test]
fn invalid_acks_are_refused_in_every_partition() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 2);
    for acks in [2, -2, 5] {
        let req = RequestBody::Produce(ProduceRequest {
            acks,
            timeout_ms: 1000,
            topic_data: vec![TopicProduceData {
                name: "t".into(),
                partition_data: (0..2)
                    .map(|p| PartitionProduceData { index: p, records: Some(batch(&["x"])), ..Default::default() })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let resp = expect_body!(h.call(c, req, 11), Produce);
        for p in &resp.responses[0].partition_responses {
            assert_eq!((p.error_code, p.base_offset), (ErrorCode::INVALID_REQUIRED_ACKS.0, -1), "acks={acks}");
        }
    }
    assert_eq!(log_of(&mut h, c, "t", 0).0, 0, "nothing appended");
}

// ---- validation ----------------------------------------------------------------------------

#[test]
fn unknown_topics_partitions_and_topic_ids_are_refused() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = create_topic(&mut h, c, "known", 2);
    assert_eq!(error_of(&mut h, c, "unknown", 0, batch(&["a"])), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(error_of(&mut h, c, "known", 2, batch(&["a"])), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(error_of(&mut h, c, "known", -1, batch(&["a"])), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    // v13 names topics by id.
    let by_id = |topic_id: Uuid| {
        RequestBody::Produce(ProduceRequest {
            acks: -1,
            timeout_ms: 1000,
            topic_data: vec![TopicProduceData {
                topic_id,
                partition_data: vec![PartitionProduceData {
                    index: 1,
                    records: Some(batch(&["v13"])),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let resp = expect_body!(h.call(c, by_id(id), 13), Produce);
    assert_eq!(resp.responses[0].topic_id, id);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(log_of(&mut h, c, "known", 1).1, vec![(0, "v13".to_string())]);
    let resp = expect_body!(h.call(c, by_id(Uuid::from_u64_pair(9, 9)), 13), Produce);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, ErrorCode::UNKNOWN_TOPIC_ID.0);
}

#[test]
fn a_batch_with_a_bad_crc_is_a_corrupt_message() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let mut damaged = batch(&["payload"]).to_vec();
    let last = damaged.len() - 2;
    damaged[last] ^= 0xff;
    let p = produce(&mut h, c, "t", 0, Bytes::from(damaged));
    assert_eq!((p.error_code, p.base_offset), (ErrorCode::CORRUPT_MESSAGE.0, -1));
    let truncated = batch(&["payload"]).slice(..40);
    assert_eq!(error_of(&mut h, c, "t", 0, truncated), ErrorCode::CORRUPT_MESSAGE);
    assert_eq!(log_of(&mut h, c, "t", 0).0, 0);
}

#[test]
fn two_batches_in_one_partition_are_an_invalid_record() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let mut two = batch(&["a"]).to_vec();
    two.extend_from_slice(&batch(&["b"]));
    assert_eq!(error_of(&mut h, c, "t", 0, Bytes::from(two)), ErrorCode::INVALID_RECORD);
    assert_eq!(log_of(&mut h, c, "t", 0).0, 0);
}

#[test]
fn a_batch_over_max_message_bytes_is_too_large() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "small", 1, &[("max.message.bytes", "200")]);
    let big = "x".repeat(300);
    assert_eq!(error_of(&mut h, c, "small", 0, batch(&[&big])), ErrorCode::MESSAGE_TOO_LARGE);
    let fits = batch(&["y"]);
    assert!(fits.len() <= 200);
    assert_eq!(error_of(&mut h, c, "small", 0, fits), ErrorCode::NONE);
}

#[test]
fn clients_may_not_produce_control_batches_nor_transactional_ones_outside_a_transaction() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let control = batch_from(RecordBatchBuilder::new(Compression::None).producer(1, 0, 0).control(true), &["marker"]);
    assert_eq!(error_of(&mut h, c, "t", 0, control), ErrorCode::INVALID_RECORD);
    let txn = batch_from(RecordBatchBuilder::new(Compression::None).producer(1, 0, 0).transactional(true), &["t"]);
    assert_eq!(error_of(&mut h, c, "t", 0, txn.clone()), ErrorCode::INVALID_TXN_STATE);
    // A transactional batch for a transactional id the coordinator does not know.
    let req = RequestBody::Produce(ProduceRequest {
        transactional_id: Some("tx-1".into()),
        ..match produce_request("t", 0, txn, -1) {
            RequestBody::Produce(p) => p,
            _ => unreachable!(),
        }
    });
    let resp = expect_body!(h.call(c, req, 11), Produce);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, ErrorCode::INVALID_PRODUCER_ID_MAPPING.0);
    assert_eq!(log_of(&mut h, c, "t", 0).0, 0);
}

#[test]
fn create_time_outside_the_allowed_range_is_an_invalid_timestamp() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "recent", 1, &[("message.timestamp.before.max.ms", "60000")]);
    h.advance(ms(120_000));
    assert_eq!(error_of(&mut h, c, "recent", 0, batch(&["old"])), ErrorCode::INVALID_TIMESTAMP);
    let mut fresh = RecordBatchBuilder::new(Compression::None);
    fresh.append(START_WALL_MS + 100_000, None, Some(b"new"), &[]).expect("builds");
    assert_eq!(error_of(&mut h, c, "recent", 0, fresh.build().expect("builds")), ErrorCode::NONE);
}

// ---- LogAppendTime -------------------------------------------------------------------------

#[test]
fn a_log_append_time_topic_stamps_batches_with_the_broker_time() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "stamped", 1, &[("message.timestamp.type", "LogAppendTime")]);
    h.advance(ms(5_000));
    let now = START_WALL_MS + 5_000;
    let p = produce(&mut h, c, "stamped", 0, batch(&["a", "b"]));
    assert_eq!((p.error_code, p.base_offset, p.log_append_time_ms), (0, 0, now));

    let resp = expect_body!(h.call(c, fetch_request("stamped", 0, 0, 0), 12), Fetch);
    let records = resp.responses[0].partitions[0].records.clone().expect("records");
    let batches: Vec<_> = Batches::new(records.to_bytes()).map(|b| b.expect("whole batch")).collect();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    b.validate().expect("the rewritten batch has a valid CRC");
    assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!((b.max_timestamp(), b.base_offset(), b.partition_leader_epoch()), (now, 0, 0));
    for r in &b.records(1 << 20).expect("records") {
        assert_eq!(r.expect("record").timestamp(), now, "every record reads the append time");
    }
    // A CreateTime topic leaves it alone.
    create_topic(&mut h, c, "plain", 1);
    assert_eq!(produce(&mut h, c, "plain", 0, batch(&["a"])).log_append_time_ms, -1);
}

#[test]
fn a_retried_batch_on_a_log_append_time_topic_gets_the_original_append_time() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "stamped", 1, &[("message.timestamp.type", "LogAppendTime")]);
    let first = produce(&mut h, c, "stamped", 0, idempotent_batch(&["a"], 3, 0, 0));
    assert_eq!(first.log_append_time_ms, START_WALL_MS);
    h.advance(ms(1_000));
    let retry = produce(&mut h, c, "stamped", 0, idempotent_batch(&["a"], 3, 0, 0));
    assert_eq!((retry.error_code, retry.base_offset, retry.log_append_time_ms), (0, 0, START_WALL_MS));
}

// ---- storage failures ----------------------------------------------------------------------

#[test]
fn a_failed_append_is_retriable_and_the_partition_resumes_at_the_right_offset() {
    let mut h = Harness::new(test_config());
    let (a, b, c, d) = (h.connect(), h.connect(), h.connect(), h.connect());
    create_topic(&mut h, a, "flaky", 1);
    assert_eq!(produce(&mut h, a, "flaky", 0, batch(&["kept"])).base_offset, 0);

    h.auto_storage = false;
    h.send(a, &produce_request("flaky", 0, idempotent_batch(&["x", "y"], 11, 0, 0), -1), 11);
    h.send(b, &produce_request("flaky", 0, batch(&["z"]), -1), 11);
    assert_eq!(h.queued.len(), 2, "both appends are in the store at once");
    assert!(h.fail_one_storage(StorageError::Unavailable));
    // The failed append and the one behind it (whose offsets would leave a gap) both fail
    // with a retriable error.
    for conn in [a, b] {
        let resp = expect_body!(h.recv(conn, ApiKey::PRODUCE, 11).expect("answered").1, Produce);
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (ErrorCode::NOT_LEADER_OR_FOLLOWER.0, -1));
    }
    // While the later append is still in the store, the partition refuses new ones.
    h.send(c, &produce_request("flaky", 0, batch(&["w"]), -1), 11);
    let resp = expect_body!(h.recv(c, ApiKey::PRODUCE, 11).expect("refused at once").1, Produce);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0);
    // The store refuses the stranded append (it does not continue the log).
    assert!(h.run_one_storage());
    // Unavailable leaves the failed append's outcome unknown: the partition asks the store
    // where it ends before it takes appends again.
    assert!(matches!(h.queued.front(), Some((_, Command::RecoverPartition { .. }))));
    h.auto_storage = true;
    h.drive();
    // The idempotent producer retries its batch: appended afresh, right after what was kept.
    h.send(d, &produce_request("flaky", 0, idempotent_batch(&["x", "y"], 11, 0, 0), -1), 11);
    let resp = expect_body!(h.recv(d, ApiKey::PRODUCE, 11).expect("answered").1, Produce);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 1));
    assert_eq!(produce(&mut h, b, "flaky", 0, batch(&["z"])).base_offset, 3);
    let (hwm, records) = log_of(&mut h, a, "flaky", 0);
    assert_eq!(hwm, 4);
    assert_eq!(records, vec![(0, "kept".into()), (1, "x".into()), (2, "y".into()), (3, "z".into())]);
}

// ---- idempotence ---------------------------------------------------------------------------

#[test]
fn duplicates_of_the_last_five_batches_get_their_original_offsets() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "idem", 1);
    for seq in 0..6 {
        let p = produce(&mut h, c, "idem", 0, idempotent_batch(&[&format!("v{seq}")], 5, 0, seq));
        assert_eq!((p.error_code, p.base_offset), (0, i64::from(seq)));
    }
    for seq in 1..6 {
        let p = produce(&mut h, c, "idem", 0, idempotent_batch(&[&format!("v{seq}")], 5, 0, seq));
        assert_eq!((p.error_code, p.base_offset), (0, i64::from(seq)), "seq {seq} is a duplicate");
    }
    // Older than the five remembered batches: Kafka cannot tell, and refuses it.
    assert_eq!(
        error_of(&mut h, c, "idem", 0, idempotent_batch(&["v0"], 5, 0, 0)),
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(log_of(&mut h, c, "idem", 0).0, 6, "no duplicate was stored");
}

#[test]
fn a_retry_while_the_original_is_in_the_store_is_answered_with_it() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "idem", 1);
    h.auto_storage = false;
    h.send(c, &produce_request("idem", 0, idempotent_batch(&["a", "b"], 5, 0, 0), -1), 11);
    h.send(c, &produce_request("idem", 0, idempotent_batch(&["a", "b"], 5, 0, 0), -1), 11);
    assert_eq!(h.queued.len(), 1, "the retry is not appended again");
    assert!(h.recv(c, ApiKey::PRODUCE, 11).is_none(), "the retry waits for the original");
    assert!(h.run_one_storage());
    for _ in 0..2 {
        let resp = expect_body!(h.recv(c, ApiKey::PRODUCE, 11).expect("answered").1, Produce);
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 0));
    }
}

#[test]
fn epochs_fence_old_producers_and_restart_sequences() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "fenced", 1);
    assert_eq!(error_of(&mut h, c, "fenced", 0, idempotent_batch(&["a", "b"], 8, 0, 0)), ErrorCode::NONE);
    // A gap in the sequence.
    assert_eq!(
        error_of(&mut h, c, "fenced", 0, idempotent_batch(&["c"], 8, 0, 3)),
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // A bumped epoch must start at sequence 0.
    assert_eq!(
        error_of(&mut h, c, "fenced", 0, idempotent_batch(&["c"], 8, 1, 2)),
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let p = produce(&mut h, c, "fenced", 0, idempotent_batch(&["c"], 8, 1, 0));
    assert_eq!((p.error_code, p.base_offset), (0, 2));
    // The old epoch is fenced, even for a batch it had sent before.
    assert_eq!(error_of(&mut h, c, "fenced", 0, idempotent_batch(&["d"], 8, 0, 2)), ErrorCode::INVALID_PRODUCER_EPOCH);
    assert_eq!(
        error_of(&mut h, c, "fenced", 0, idempotent_batch(&["a", "b"], 8, 0, 0)),
        ErrorCode::INVALID_PRODUCER_EPOCH
    );
    assert_eq!(error_of(&mut h, c, "fenced", 0, idempotent_batch(&["d"], 8, 1, 1)), ErrorCode::NONE);
    assert_eq!(log_of(&mut h, c, "fenced", 0).0, 4);
}

#[test]
fn describe_producers_shows_idempotent_producers_per_partition() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "described", 2);
    produce(&mut h, c, "described", 0, idempotent_batch(&["a", "b"], 21, 0, 0));
    produce(&mut h, c, "described", 0, idempotent_batch(&["c"], 21, 0, 2));
    produce(&mut h, c, "described", 0, idempotent_batch(&["z"], 20, 3, 0));
    produce(&mut h, c, "described", 0, batch(&["plain"]));
    let parts = describe_producers(&mut h, c, "described", &[0, 1, 7]);
    assert_eq!(parts.len(), 3);
    assert_eq!((parts[0].partition_index, parts[0].error_code), (0, 0));
    let states: Vec<(i64, i32, i32, i64, i32, i64)> = parts[0]
        .active_producers
        .iter()
        .map(|s| {
            (
                s.producer_id,
                s.producer_epoch,
                s.last_sequence,
                s.last_timestamp,
                s.coordinator_epoch,
                s.current_txn_start_offset,
            )
        })
        .collect();
    assert_eq!(states, vec![(20, 3, 0, START_WALL_MS, -1, -1), (21, 0, 2, START_WALL_MS, -1, -1)]);
    assert_eq!((parts[1].error_code, parts[1].active_producers.len()), (0, 0));
    assert_eq!(parts[2].error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    let unknown = describe_producers(&mut h, c, "nowhere", &[0]);
    assert_eq!(unknown[0].error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
}

// ---- InitProducerId and restarts -----------------------------------------------------------

#[test]
fn init_producer_id_hands_out_distinct_ids_that_keep_increasing_after_a_restart() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let ids: Vec<i64> = (0..3)
        .map(|_| {
            let r = init_producer_id(&mut h, c, None);
            assert_eq!((r.error_code, r.producer_epoch), (0, 0));
            r.producer_id
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let txn = init_producer_id(&mut h, c, Some("tx"));
    assert_eq!((txn.error_code, txn.producer_epoch), (0, 0), "a transactional id starts at epoch 0");
    assert!(txn.producer_id > ids[2], "{} after {ids:?}", txn.producer_id);

    let mut after = h.restart(test_config());
    let c = after.connect();
    let next = init_producer_id(&mut after, c, None);
    assert_eq!(next.error_code, 0);
    assert!(next.producer_id > txn.producer_id, "{} after {ids:?} and {}", next.producer_id, txn.producer_id);
}

#[test]
fn a_failed_id_reservation_is_made_again_before_more_ids_are_handed_out() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    h.auto_storage = false;
    let req = InitProducerIdRequest { transactional_id: None, ..Default::default() };
    h.send(c, &RequestBody::InitProducerId(req), 5);
    assert!(matches!(h.queued.front(), Some((_, Command::Put { .. }))), "ids are reserved in the store first");
    assert!(h.fail_one_storage(StorageError::Unavailable));
    let failed = expect_body!(h.recv(c, ApiKey::INIT_PRODUCER_ID, 5).expect("answered").1, InitProducerId);
    assert_eq!((failed.error_code, failed.producer_id), (ErrorCode::NOT_LEADER_OR_FOLLOWER.0, -1), "retriable");
    h.auto_storage = true;
    h.drive();
    let granted = init_producer_id(&mut h, c, None);
    assert_eq!(granted.error_code, 0);
    // Whatever was handed out is covered by what the store holds.
    let mut after = h.restart(test_config());
    let c = after.connect();
    let next = init_producer_id(&mut after, c, None);
    assert!(next.producer_id > granted.producer_id, "{} after {}", next.producer_id, granted.producer_id);
}

#[test]
fn idempotent_producer_state_survives_a_restart() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "durable", 1);
    let pid = init_producer_id(&mut h, c, None).producer_id;
    produce(&mut h, c, "durable", 0, idempotent_batch(&["a", "b"], pid, 0, 0));
    let last = produce(&mut h, c, "durable", 0, idempotent_batch(&["c"], pid, 0, 2));
    assert_eq!(last.base_offset, 2);

    let mut after = h.restart(test_config());
    let c = after.connect();
    // The producer did not hear back before the restart and retries: still a duplicate.
    let retry = produce(&mut after, c, "durable", 0, idempotent_batch(&["c"], pid, 0, 2));
    assert_eq!((retry.error_code, retry.base_offset), (0, 2));
    assert_eq!(
        error_of(&mut after, c, "durable", 0, idempotent_batch(&["e"], pid, 0, 5)),
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
        "the sequence is still known"
    );
    assert_eq!(produce(&mut after, c, "durable", 0, idempotent_batch(&["d"], pid, 0, 3)).base_offset, 3);
    let parts = describe_producers(&mut after, c, "durable", &[0]);
    let s = &parts[0].active_producers[0];
    assert_eq!((s.producer_id, s.producer_epoch, s.last_sequence), (pid, 0, 3));
    assert_eq!(log_of(&mut after, c, "durable", 0).0, 4);
}

/// When retention or DeleteRecords removed all of a producer's batches and a restart forgot
/// it, Kafka accepts its next batch at whatever sequence it has reached.
#[test]
fn a_producer_whose_batches_were_all_deleted_keeps_its_sequence() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "trimmed", 1);
    produce(&mut h, c, "trimmed", 0, idempotent_batch(&["a", "b"], 42, 0, 0));
    delete_records_to_hwm(&mut h, c, "trimmed");
    let mut after = h.restart(test_config());
    let c = after.connect();
    let p = produce(&mut after, c, "trimmed", 0, idempotent_batch(&["c"], 42, 0, 2));
    assert_eq!((p.error_code, p.base_offset, p.log_start_offset), (0, 2, 2));
}

#[test]
fn producer_ids_are_answered_only_once_their_reservation_is_stored() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    h.auto_storage = false;
    let req = || {
        RequestBody::InitProducerId(InitProducerIdRequest {
            transactional_id: None,
            transaction_timeout_ms: 60_000,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        })
    };
    h.send(c, &req(), 5);
    h.send(c, &req(), 5);
    assert!(h.recv(c, ApiKey::INIT_PRODUCER_ID, 5).is_none(), "no id before its block is stored");
    assert!(matches!(h.queued.front(), Some((_, Command::Put { .. }))), "the block reservation is stored first");
    while h.run_one_storage() {}
    let ids: Vec<i64> = (0..2)
        .map(|_| expect_body!(h.recv(c, ApiKey::INIT_PRODUCER_ID, 5).expect("answered").1, InitProducerId).producer_id)
        .collect();
    assert_eq!(ids, vec![0, 1]);
    // Ids from the stored block are now answered at once.
    h.auto_storage = true;
    assert_eq!(init_producer_id(&mut h, c, None).producer_id, 2);
}

// ---- compacted topics: records need keys ---------------------------------------------------

/// One uncompressed batch with these keys (`None`: no key), values `v0`, `v1`, ...
fn keyed(keys: &[Option<&str>]) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None);
    for (i, k) in keys.iter().enumerate() {
        b.append(START_WALL_MS, k.map(str::as_bytes), Some(format!("v{i}").as_bytes()), &[]).expect("builds");
    }
    b.build().expect("builds")
}

fn set_cleanup_policy(h: &mut Harness, c: ConnId, topic: &str, op: i8, value: &str) {
    alter_config(h, c, topic, op, "cleanup.policy", value);
}

fn set_config(h: &mut Harness, c: ConnId, topic: &str, name: &str, value: &str) {
    alter_config(h, c, topic, 0, name, value);
}

fn alter_config(h: &mut Harness, c: ConnId, topic: &str, op: i8, name: &str, value: &str) {
    let req = IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: 2,
            resource_name: topic.into(),
            configs: vec![AlterableConfig {
                name: name.into(),
                config_operation: op,
                value: Some(value.into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::IncrementalAlterConfigs(req), 1), IncrementalAlterConfigs);
    assert_eq!(resp.responses[0].error_code, 0, "{:?}", resp.responses[0].error_message);
}

/// The record errors of a refused batch as (batch index, message).
fn record_errors(p: &PartitionProduceResponse) -> Vec<(i32, String)> {
    p.record_errors
        .iter()
        .map(|e| (e.batch_index, e.batch_index_error_message.as_deref().unwrap_or_default().to_string()))
        .collect()
}

#[test]
fn a_compacted_topic_refuses_a_batch_with_keyless_records_naming_each_one() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "table", 1, &[("cleanup.policy", "compact")]);
    let p = produce(&mut h, c, "table", 0, keyed(&[Some("a"), None, Some("b"), None]));
    assert_eq!(ErrorCode(p.error_code), ErrorCode::INVALID_RECORD);
    assert_eq!(p.base_offset, -1);
    let each = "Compacted topic cannot accept message without key in topic partition table-0";
    assert_eq!(record_errors(&p), vec![(1, each.to_string()), (3, each.to_string())]);
    assert_eq!(
        p.error_message.as_deref(),
        Some(
            format!(
                "One or more records have been rejected due to 2 record errors in total, and only showing the first \
                 three errors at most: [RecordError(batchIndex=1, message='{each}'), RecordError(batchIndex=3, \
                 message='{each}')]"
            )
            .as_str()
        )
    );
    assert_eq!(log_of(&mut h, c, "table", 0), (0, vec![]), "nothing of the batch is stored");
    // Keyed records are stored, and an empty key is a key.
    assert_eq!(error_of(&mut h, c, "table", 0, keyed(&[Some("a"), Some("")])), ErrorCode::NONE);
    assert_eq!(log_of(&mut h, c, "table", 0), (2, vec![(0, "v0".into()), (1, "v1".into())]));
    // compact,delete needs keys too; a compressed batch is looked into.
    create_topic_with(&mut h, c, "both", 1, &[("cleanup.policy", "delete,compact")]);
    let mut zstd = RecordBatchBuilder::new(Compression::Zstd);
    zstd.append(START_WALL_MS, None, Some(b"x"), &[]).expect("builds");
    let p = produce(&mut h, c, "both", 0, zstd.build().expect("builds"));
    assert_eq!((ErrorCode(p.error_code), p.record_errors.len()), (ErrorCode::INVALID_RECORD, 1));
}

#[test]
fn keyless_records_are_refused_in_their_partition_only() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "table", 2, &[("cleanup.policy", "compact")]);
    let RequestBody::Produce(mut req) = produce_request("table", 0, keyed(&[None]), -1) else { unreachable!() };
    req.topic_data[0].partition_data.push(PartitionProduceData {
        index: 1,
        records: Some(keyed(&[Some("k")])),
        ..Default::default()
    });
    let resp = expect_body!(h.call(c, RequestBody::Produce(req), 11), Produce);
    let parts = &resp.responses[0].partition_responses;
    assert_eq!((parts[0].index, ErrorCode(parts[0].error_code)), (0, ErrorCode::INVALID_RECORD));
    assert_eq!((parts[1].index, ErrorCode(parts[1].error_code), parts[1].base_offset), (1, ErrorCode::NONE, 0));
    assert_eq!(log_of(&mut h, c, "table", 0).0, 0);
    assert_eq!(log_of(&mut h, c, "table", 1), (1, vec![(0, "v0".into())]));
    // Produce v7 has no record_errors: the error code says it all.
    let resp = expect_body!(h.call(c, produce_request("table", 0, keyed(&[None]), -1), 7), Produce);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, ErrorCode::INVALID_RECORD.0);
}

#[test]
fn a_delete_topic_accepts_keyless_records_and_compaction_set_later_applies_at_once() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    assert_eq!(error_of(&mut h, c, "t", 0, keyed(&[None, None])), ErrorCode::NONE);
    set_cleanup_policy(&mut h, c, "t", APPEND, "compact");
    let p = produce(&mut h, c, "t", 0, keyed(&[None, Some("k")]));
    assert_eq!((ErrorCode(p.error_code), record_errors(&p).len()), (ErrorCode::INVALID_RECORD, 1));
    assert_eq!(error_of(&mut h, c, "t", 0, keyed(&[Some("k")])), ErrorCode::NONE);
    set_cleanup_policy(&mut h, c, "t", SUBTRACT, "compact");
    assert_eq!(error_of(&mut h, c, "t", 0, keyed(&[None])), ErrorCode::NONE);
    assert_eq!(log_of(&mut h, c, "t", 0).0, 4);
}

// ---- schema validation ---------------------------------------------------------------------

/// A registry view: schema 1 under `orders-value`, schema 2 under `orders-key`, schema 3 (record
/// `shop.Order`) under `shop.Order`; in payload mode, a payload of `bad` does not decode.
#[derive(Debug)]
struct Catalog;

impl SchemaCatalog for Catalog {
    fn check(&self, c: &SchemaCheck<'_>) -> Result<(), String> {
        let (subjects, record) = match c.id {
            1 => ("orders-value", "shop.Order"),
            2 => ("orders-key", "shop.Key"),
            3 => ("shop.Order", "shop.Order"),
            id => return Err(format!("schema id {id} is not in the registry")),
        };
        let subject = c.validation.strategy.subject(c.topic, c.field, record);
        if subject != subjects {
            return Err(format!("schema id {} is not registered under subject {subject}", c.id));
        }
        if c.validation.payload && c.payload == b"bad" {
            return Err(format!("the payload does not decode with schema id {}", c.id));
        }
        Ok(())
    }

    fn typed(&self, _: i32, _: &[u8]) -> Typing {
        Typing::Untyped
    }
}

fn framed(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A record's key and value (`None`: null).
type Pair = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One batch of (key, value) records.
fn pairs(records: &[Pair]) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None);
    for (k, v) in records {
        b.append(START_WALL_MS, k.as_deref(), v.as_deref(), &[]).expect("builds");
    }
    b.build().expect("builds")
}

#[test]
fn a_topic_with_value_validation_refuses_a_batch_with_any_bad_value_and_stores_nothing_of_it() {
    let mut h = Harness::new(test_config());
    h.broker.set_schema_catalog(std::sync::Arc::new(Catalog));
    let c = h.connect();
    create_topic_with(&mut h, c, "orders", 1, &[("confluent.value.schema.validation", "true")]);
    let good = framed(1, b"ok");
    let p = produce(
        &mut h,
        c,
        "orders",
        0,
        pairs(&[
            (None, Some(good.clone())),
            (None, Some(b"plain text".to_vec())),
            (None, Some(framed(9, b"x"))),
            (None, Some(framed(2, b"x"))),
            (None, None),
            (None, Some(vec![0, 0])),
        ]),
    );
    assert_eq!(ErrorCode(p.error_code), ErrorCode::INVALID_RECORD);
    let errors = record_errors(&p);
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2, 3, 5], "{errors:?}");
    assert!(errors[0].1.contains("magic byte 112"), "{}", errors[0].1);
    assert!(errors[1].1.contains("schema id 9 is not in the registry"), "{}", errors[1].1);
    assert!(errors[2].1.contains("not registered under subject orders-value"), "{}", errors[2].1);
    assert!(errors[3].1.contains("2 bytes"), "{}", errors[3].1);
    let message = p.error_message.as_deref().unwrap_or_default();
    assert!(message.starts_with("One or more records have been rejected due to 4 record errors"), "{message}");
    assert_eq!(log_of(&mut h, c, "orders", 0), (0, vec![]), "nothing of the batch is stored");
    // Good values and tombstones go in; keys are not checked on this topic.
    let p = produce(&mut h, c, "orders", 0, pairs(&[(Some(b"any key".to_vec()), Some(good)), (None, None)]));
    assert_eq!((ErrorCode(p.error_code), p.base_offset), (ErrorCode::NONE, 0));
    // id mode does not look into the payload; payload mode does.
    assert_eq!(error_of(&mut h, c, "orders", 0, pairs(&[(None, Some(framed(1, b"bad")))])), ErrorCode::NONE);
    set_config(&mut h, c, "orders", "kelp.value.schema.validation.mode", "payload");
    let p = produce(&mut h, c, "orders", 0, pairs(&[(None, Some(framed(1, b"bad")))]));
    assert_eq!(record_errors(&p), vec![(0, "the payload does not decode with schema id 1".to_string())]);
    assert_eq!(log_of(&mut h, c, "orders", 0).0, 3);
    // Turned off, anything goes in again.
    set_config(&mut h, c, "orders", "confluent.value.schema.validation", "false");
    assert_eq!(error_of(&mut h, c, "orders", 0, pairs(&[(None, Some(b"plain".to_vec()))])), ErrorCode::NONE);
}

#[test]
fn key_validation_subject_strategies_and_redpanda_names() {
    let mut h = Harness::new(test_config());
    h.broker.set_schema_catalog(std::sync::Arc::new(Catalog));
    let c = h.connect();
    create_topic_with(&mut h, c, "orders", 1, &[("redpanda.key.schema.id.validation", "true")]);
    assert_eq!(
        error_of(&mut h, c, "orders", 0, pairs(&[(Some(framed(2, b"k")), Some(b"v".to_vec()))])),
        ErrorCode::NONE
    );
    let p = produce(&mut h, c, "orders", 0, pairs(&[(Some(framed(1, b"k")), None)]));
    assert_eq!(record_errors(&p), vec![(0, "schema id 1 is not registered under subject orders-key".to_string())]);
    // A null key is not checked.
    assert_eq!(error_of(&mut h, c, "orders", 0, pairs(&[(None, Some(b"v".to_vec()))])), ErrorCode::NONE);

    // RecordNameStrategy by its Java class name: schema 3 is registered under its record's name.
    create_topic_with(
        &mut h,
        c,
        "any",
        1,
        &[
            ("confluent.value.schema.validation", "true"),
            ("confluent.value.subject.name.strategy", "io.confluent.kafka.serializers.subject.RecordNameStrategy"),
        ],
    );
    assert_eq!(error_of(&mut h, c, "any", 0, pairs(&[(None, Some(framed(3, b"v")))])), ErrorCode::NONE);
    assert_eq!(error_of(&mut h, c, "any", 0, pairs(&[(None, Some(framed(1, b"v")))])), ErrorCode::INVALID_RECORD);
    // An unknown strategy is refused when the topic is configured.
    let req = IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: 2,
            resource_name: "any".into(),
            configs: vec![AlterableConfig {
                name: "confluent.value.subject.name.strategy".into(),
                config_operation: 0,
                value: Some("io.example.MyStrategy".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::IncrementalAlterConfigs(req), 1), IncrementalAlterConfigs);
    assert_eq!(ErrorCode(resp.responses[0].error_code), ErrorCode::INVALID_CONFIG);
}

/// A registry view still loading its state.
#[derive(Debug)]
struct Loading;

impl SchemaCatalog for Loading {
    fn check(&self, c: &SchemaCheck<'_>) -> Result<(), String> {
        Err(format!("schema id {} is not in the registry", c.id))
    }

    fn ready(&self) -> bool {
        false
    }

    fn typed(&self, _: i32, _: &[u8]) -> Typing {
        Typing::Untyped
    }
}

#[test]
fn while_the_registry_loads_a_validating_topic_answers_a_retriable_error() {
    let mut h = Harness::new(test_config());
    h.broker.set_schema_catalog(std::sync::Arc::new(Loading));
    let c = h.connect();
    create_topic_with(&mut h, c, "orders", 1, &[("confluent.value.schema.validation", "true")]);
    create_topic(&mut h, c, "plain", 1);
    let p = produce(&mut h, c, "orders", 0, pairs(&[(None, Some(framed(1, b"x")))]));
    assert_eq!(ErrorCode(p.error_code), ErrorCode::REQUEST_TIMED_OUT, "clients retry it");
    assert!(p.record_errors.is_empty());
    assert_eq!(log_of(&mut h, c, "orders", 0).0, 0);
    // Topics that do not validate are not held up.
    assert_eq!(error_of(&mut h, c, "plain", 0, pairs(&[(None, Some(b"x".to_vec()))])), ErrorCode::NONE);
}

#[test]
fn without_a_registry_a_validating_topic_refuses_what_it_cannot_check() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "orders", 1, &[("confluent.value.schema.validation", "true")]);
    let p = produce(&mut h, c, "orders", 0, pairs(&[(None, Some(framed(1, b"x")))]));
    assert!(record_errors(&p)[0].1.contains("no schema registry"), "{:?}", record_errors(&p));
    assert_eq!(error_of(&mut h, c, "orders", 0, pairs(&[(None, None)])), ErrorCode::NONE, "a tombstone passes");
}

// ---- compression.type ----------------------------------------------------------------------

/// The stored batches of a partition from offset 0, raw.
fn stored_batches(h: &mut Harness, c: ConnId, topic: &str) -> Vec<kelp_core::records::RecordBatch> {
    let resp = expect_body!(h.call(c, fetch_request(topic, 0, 0, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let bytes = p.records.as_ref().map(|r| r.to_bytes()).unwrap_or_default();
    Batches::new(bytes).map(|b| b.expect("whole batches")).collect()
}

#[test]
fn a_topic_codec_recompresses_batches_on_append_keeping_records_and_producer_fields() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let topics = [
        ("producer", None),
        ("uncompressed", Some(Compression::None)),
        ("gzip", Some(Compression::Gzip)),
        ("snappy", Some(Compression::Snappy)),
        ("lz4", Some(Compression::Lz4)),
        ("zstd", Some(Compression::Zstd)),
    ];
    let id = init_producer_id(&mut h, c, None).producer_id;
    for (codec, want) in topics {
        let topic = format!("c-{codec}");
        create_topic_with(&mut h, c, &topic, 1, &[("compression.type", codec)]);
        for (seq, sent) in [(0, Compression::Lz4), (3, Compression::None)] {
            let b = batch_from(RecordBatchBuilder::new(sent).producer(id, 0, seq), &["a", "b", "c"]);
            assert_eq!(error_of(&mut h, c, &topic, 0, b.clone()), ErrorCode::NONE, "{codec}");
            // A retry of the same batch is still known as a duplicate after recompression.
            let p = produce(&mut h, c, &topic, 0, b);
            assert_eq!((p.error_code, p.base_offset), (0, i64::from(seq)), "{codec}: duplicate");
        }
        let batches = stored_batches(&mut h, c, &topic);
        assert_eq!(batches.len(), 2, "{codec}");
        for (b, sent) in batches.iter().zip([Compression::Lz4, Compression::None]) {
            b.validate_full(1 << 20).expect("valid");
            assert_eq!(b.compression(), Ok(want.unwrap_or(sent)), "{codec}");
            assert_eq!((b.producer_id(), b.producer_epoch()), (id, 0), "{codec}");
            assert_eq!((b.records_count(), b.max_timestamp()), (3, START_WALL_MS), "{codec}");
        }
        let (hwm, values) = log_of(&mut h, c, &topic, 0);
        assert_eq!(hwm, 6);
        let values: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["a", "b", "c", "a", "b", "c"], "{codec}");
    }
}

#[test]
fn recompression_honours_log_append_time_and_levels() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let configs =
        [("compression.type", "gzip"), ("compression.gzip.level", "9"), ("message.timestamp.type", "LogAppendTime")];
    create_topic_with(&mut h, c, "stamped", 1, &configs);
    h.advance(ms(7_000));
    let p = produce(&mut h, c, "stamped", 0, batch_from(RecordBatchBuilder::new(Compression::Snappy), &["x", "y"]));
    assert_eq!((p.error_code, p.log_append_time_ms), (0, START_WALL_MS + 7_000));
    let b = stored_batches(&mut h, c, "stamped").remove(0);
    b.validate_full(1 << 20).expect("valid");
    assert_eq!(b.compression(), Ok(Compression::Gzip));
    assert_eq!((b.timestamp_type(), b.max_timestamp()), (TimestampType::LogAppendTime, START_WALL_MS + 7_000));
}

/// The store recompresses (off the broker's loop), so the size check after recompression
/// comes when appends behind the batch may already be in flight: the batch alone gets
/// MESSAGE_TOO_LARGE, the ones before it stand, the ones behind it (rewound) get a retriable
/// error and their retries are stored in its place.
#[test]
fn a_batch_too_large_once_recompressed_fails_alone_and_the_appends_behind_it_retry() {
    let mut h = Harness::new(test_config());
    let (before, big, behind) = (h.connect(), h.connect(), h.connect());
    create_topic_with(
        &mut h,
        before,
        "flat",
        1,
        &[("compression.type", "uncompressed"), ("max.message.bytes", "1000")],
    );
    let id = init_producer_id(&mut h, behind, None).producer_id;
    h.auto_storage = false;
    let large = "z".repeat(5_000);
    h.send(before, &produce_request("flat", 0, batch(&["a"]), -1), 11);
    h.send(big, &produce_request("flat", 0, batch_from(RecordBatchBuilder::new(Compression::Zstd), &[&large]), -1), 11);
    let retried = idempotent_batch(&["c"], id, 0, 0);
    h.send(behind, &produce_request("flat", 0, retried.clone(), -1), 11);
    let bases: Vec<i64> = h
        .queued
        .iter()
        .filter_map(|(_, c)| match c {
            Command::Append { base_offset, recompress, .. } => Some((*base_offset, recompress.is_some())),
            _ => None,
        })
        .map(|(base, recompress)| {
            assert_eq!(recompress, base == 1, "only the zstd batch is recompressed, by the store");
            base
        })
        .collect();
    assert_eq!(bases, [0, 1, 2]);
    while h.run_one_storage() {}
    let answer = |h: &mut Harness, c| {
        let resp = expect_body!(h.recv(c, ApiKey::PRODUCE, 11).expect("answered").1, Produce);
        let p = &resp.responses[0].partition_responses[0];
        (ErrorCode(p.error_code), p.base_offset)
    };
    assert_eq!(answer(&mut h, before), (ErrorCode::NONE, 0));
    assert_eq!(answer(&mut h, big), (ErrorCode::MESSAGE_TOO_LARGE, -1));
    assert_eq!(answer(&mut h, behind), (ErrorCode::NOT_LEADER_OR_FOLLOWER, -1), "retriable: it was not at fault");
    h.auto_storage = true;
    let p = produce(&mut h, behind, "flat", 0, retried);
    assert_eq!((p.error_code, p.base_offset), (0, 1), "the retry, same sequence, takes the freed offset");
    assert_eq!(log_of(&mut h, before, "flat", 0), (2, vec![(0, "a".into()), (1, "c".into())]));
}

#[test]
fn a_batch_too_large_once_recompressed_is_refused() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic_with(&mut h, c, "flat", 1, &[("compression.type", "uncompressed"), ("max.message.bytes", "1000")]);
    let big = "z".repeat(5_000);
    let packed = batch_from(RecordBatchBuilder::new(Compression::Zstd), &[&big]);
    assert!(packed.len() < 1000);
    assert_eq!(error_of(&mut h, c, "flat", 0, packed), ErrorCode::MESSAGE_TOO_LARGE);
    assert_eq!(log_of(&mut h, c, "flat", 0).0, 0);
    assert_eq!(
        error_of(&mut h, c, "flat", 0, batch_from(RecordBatchBuilder::new(Compression::Zstd), &["s"])),
        ErrorCode::NONE
    );
}
