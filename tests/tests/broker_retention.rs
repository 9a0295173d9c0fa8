//! Retention in virtual time: the broker's periodic check asks the store to delete whole
//! segments older than `retention.ms` or beyond `retention.bytes`, and the log start follows,
//! so ListOffsets (earliest), Fetch (OFFSET_OUT_OF_RANGE below the log start), DeleteRecords
//! and a restart all agree.

use bytes::Bytes;
use kelp_core::codec::ErrorCode;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::delete_records::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::{Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, START_WALL_MS, create_topic_with, fetch_request, list_offset, ms, produce_request, record_values,
    test_config,
};

/// ListOffsets: the record with the largest timestamp (KIP-734).
const MAX_TIMESTAMP: i64 = -3;

/// Checks every 10 s of virtual time.
fn config() -> Config {
    Config { retention_check_interval: ms(10_000), ..test_config() }
}

/// A one-record batch stamped `ts`.
fn stamped(value: &str, ts: i64) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None);
    b.append(ts, Some(b"k"), Some(value.as_bytes()), &[]).expect("builds");
    b.build().expect("builds")
}

fn produce(h: &mut Harness, c: ConnId, topic: &str, records: Bytes) -> i64 {
    let resp = expect_body!(h.call(c, produce_request(topic, 0, records, -1), 11), Produce);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

/// (error code, values) of a fetch from `offset`.
fn fetch(h: &mut Harness, c: ConnId, topic: &str, offset: i64) -> (i16, Vec<String>) {
    let resp = expect_body!(h.call(c, fetch_request(topic, 0, offset, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    let values = p.records.as_ref().map(record_values).unwrap_or_default();
    (p.error_code, values.into_iter().map(|(_, v)| v).collect())
}

#[test]
fn segments_older_than_retention_ms_go_and_the_log_start_follows() {
    let mut h = Harness::new(config());
    let c = h.connect();
    // Each batch is its own segment.
    create_topic_with(&mut h, c, "old", 1, &[("retention.ms", "60000"), ("segment.bytes", "100")]);
    for v in ["a", "b", "c"] {
        produce(&mut h, c, "old", stamped(v, START_WALL_MS));
    }
    h.advance(ms(30_000));
    assert_eq!(list_offset(&mut h, c, "old", -2), 0, "nothing is a minute old yet");
    let fresh = START_WALL_MS + 90_000;
    assert_eq!(produce(&mut h, c, "old", stamped("d", fresh)), 3);
    h.advance(ms(45_000));
    // 75 s: the first three segments' records are 75 s old, older than retention.ms.
    assert_eq!(list_offset(&mut h, c, "old", -2), 3, "the log starts after the deleted segments");
    assert_eq!(list_offset(&mut h, c, "old", -1), 4);
    let (code, _) = fetch(&mut h, c, "old", 1);
    assert_eq!(code, ErrorCode::OFFSET_OUT_OF_RANGE.0, "below the log start");
    assert_eq!(fetch(&mut h, c, "old", 3), (0, vec!["d".to_string()]));
    assert_eq!(list_offset(&mut h, c, "old", START_WALL_MS), 3, "a timestamp lookup skips what is gone");
    // Much later the last segment is old too, but it is the active one: it stays.
    h.advance(ms(600_000));
    assert_eq!(list_offset(&mut h, c, "old", -2), 3);
    assert_eq!(fetch(&mut h, c, "old", 3), (0, vec!["d".to_string()]));
    // DeleteRecords below the log start leaves it where it is.
    let req = RequestBody::DeleteRecords(DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: "old".into(),
            partitions: vec![DeleteRecordsPartition { partition_index: 0, offset: 1, ..Default::default() }],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    });
    let p = expect_body!(h.call(c, req, 2), DeleteRecords).topics[0].partitions[0].clone();
    assert_eq!((p.error_code, p.low_watermark), (0, 3));
    // A restart recovers the same log start.
    let mut h = h.restart(config());
    let c = h.connect();
    assert_eq!(list_offset(&mut h, c, "old", -2), 3);
    assert_eq!(fetch(&mut h, c, "old", 0).0, ErrorCode::OFFSET_OUT_OF_RANGE.0);
}

#[test]
fn retention_bytes_keeps_the_newest_segments_that_fit() {
    let mut h = Harness::new(config());
    let c = h.connect();
    let one = stamped("x", START_WALL_MS).len();
    // Room for three batches: the oldest go while the rest still hold at least that much.
    let limit = 3 * one;
    create_topic_with(&mut h, c, "big", 1, &[("retention.bytes", &limit.to_string()), ("segment.bytes", "100")]);
    // Timestamps fall, so the record with the largest one is the first to go.
    for i in 0..8 {
        produce(&mut h, c, "big", stamped("x", START_WALL_MS + 8 - i));
    }
    assert_eq!(list_offset(&mut h, c, "big", -2), 0, "nothing goes before the check runs");
    assert_eq!(list_offset(&mut h, c, "big", MAX_TIMESTAMP), 0);
    h.advance(ms(10_000));
    // Kafka deletes a segment while the log without it is still at least retention.bytes.
    assert_eq!(list_offset(&mut h, c, "big", -2), 5);
    assert_eq!(list_offset(&mut h, c, "big", MAX_TIMESTAMP), 5, "the largest timestamp still stored");
    assert_eq!(fetch(&mut h, c, "big", 5).1.len(), 3);
    assert_eq!(fetch(&mut h, c, "big", 4).0, ErrorCode::OFFSET_OUT_OF_RANGE.0);
}

#[test]
fn without_limits_nothing_is_deleted() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "keep", 1, &[("retention.ms", "-1"), ("segment.bytes", "100")]);
    for _ in 0..4 {
        produce(&mut h, c, "keep", stamped("x", START_WALL_MS));
    }
    h.advance(ms(3_600_000));
    assert_eq!(list_offset(&mut h, c, "keep", -2), 0);
    assert_eq!(fetch(&mut h, c, "keep", 0).1.len(), 4);
}

/// Kafka's rule: retention by time and size applies only when `cleanup.policy` includes
/// `delete`. A compact-only topic (a Connect config topic, a changelog, `_schemas`) keeps its
/// records however old, while `compact,delete` applies both.
#[test]
fn a_compact_only_topic_keeps_every_record_past_retention_ms() {
    // Retention alone: the log cleaner (which would keep only the latest record of key `k`)
    // does not look within the test's hours (broker_compaction tests it).
    let mut h = Harness::new(Config { cleaner_backoff: ms(86_400_000), ..config() });
    let c = h.connect();
    let small = [("retention.ms", "60000"), ("retention.bytes", "1"), ("segment.bytes", "100")];
    create_topic_with(&mut h, c, "kept", 1, &[small[0], small[1], small[2], ("cleanup.policy", "compact")]);
    create_topic_with(&mut h, c, "both", 1, &[small[0], small[1], small[2], ("cleanup.policy", "compact,delete")]);
    for topic in ["kept", "both"] {
        for v in ["a", "b", "c"] {
            produce(&mut h, c, topic, stamped(v, START_WALL_MS));
        }
    }
    // Far past retention.ms (and past retention.bytes all along).
    h.advance(ms(3_600_000));
    assert_eq!(list_offset(&mut h, c, "kept", -2), 0, "a compact-only topic deletes nothing by age or size");
    assert_eq!(fetch(&mut h, c, "kept", 0), (0, vec!["a".to_string(), "b".to_string(), "c".to_string()]));
    assert_eq!(list_offset(&mut h, c, "both", -2), 2, "compact,delete still applies retention");
}
