//! Scenario tests of partition re-synchronisation: an append whose outcome is unknown
//! (the store reports a timeout or an outage, but may have stored it) makes the partition
//! refuse appends, ask the store where it ends (`Command::RecoverPartition`), adopt that, and
//! resume. What Kafka users rely on: no acknowledged record is lost, an idempotent producer's
//! retry is never written twice, offsets are never reused.

use bytes::Bytes;
use kelp_core::codec::generated::produce::PartitionProduceResponse;
use kelp_core::codec::{ApiKey, ErrorCode};
use kelp_core::io::StorageError;
use kelp_core::{Command, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, batch, create_topic, fetch_request, idempotent_batch, ms, produce_request, record_values, test_config,
};

fn produce(h: &mut Harness, c: ConnId, records: Bytes) -> PartitionProduceResponse {
    let resp = expect_body!(h.call(c, produce_request("t", 0, records, -1), 11), Produce);
    resp.responses[0].partition_responses[0].clone()
}

fn answer(h: &mut Harness, c: ConnId) -> PartitionProduceResponse {
    let resp = expect_body!(h.recv(c, ApiKey::PRODUCE, 11).expect("answered").1, Produce);
    resp.responses[0].partition_responses[0].clone()
}

fn log_of(h: &mut Harness, c: ConnId) -> (i64, Vec<(i64, String)>) {
    let resp = expect_body!(h.call(c, fetch_request("t", 0, 0, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.high_watermark, p.records.as_ref().map(record_values).unwrap_or_default())
}

fn resync_queued(h: &Harness) -> bool {
    matches!(h.queued.front(), Some((_, Command::RecoverPartition { .. })))
}

fn setup() -> (Harness, ConnId) {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    assert_eq!(produce(&mut h, c, batch(&["kept"])).base_offset, 0);
    (h, c)
}

#[test]
fn an_append_stored_despite_a_timeout_is_adopted_and_its_idempotent_retry_is_a_duplicate() {
    let (mut h, a) = setup();
    let (b, c) = (h.connect(), h.connect());
    h.auto_storage = false;
    h.send(a, &produce_request("t", 0, idempotent_batch(&["x", "y"], 11, 0, 0), -1), 11);
    h.send(b, &produce_request("t", 0, batch(&["z"]), -1), 11);
    assert_eq!(h.queued.len(), 2);
    // The store writes x, y but reports a timeout: the broker cannot know they are there.
    assert!(h.run_one_storage_reporting(StorageError::Timeout));
    for conn in [a, b] {
        let p = answer(&mut h, conn);
        assert_eq!((p.error_code, p.base_offset), (ErrorCode::REQUEST_TIMED_OUT.0, -1), "retriable");
    }
    // Until the partition knows its end again it refuses appends with a retriable error.
    h.send(c, &produce_request("t", 0, batch(&["early"]), -1), 11);
    assert_eq!(answer(&mut h, c).error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0);
    // The append behind the lost one continues the store's log, so it is stored too.
    assert!(h.run_one_storage());
    assert!(resync_queued(&h), "once nothing is in flight the broker asks the store where the log ends");
    assert!(h.run_one_storage());
    assert!(h.queued.is_empty());
    h.auto_storage = true;
    // Both became visible; the idempotent retry is answered with the original offset and is
    // not written again.
    let retry = produce(&mut h, a, idempotent_batch(&["x", "y"], 11, 0, 0));
    assert_eq!((retry.error_code, retry.base_offset), (0, 1));
    let next = produce(&mut h, a, idempotent_batch(&["n"], 11, 0, 2));
    assert_eq!((next.error_code, next.base_offset), (0, 4), "the producer's sequence continues after the batch");
    assert_eq!(produce(&mut h, c, batch(&["w"])).base_offset, 5, "no offset is reused");
    let (hwm, records) = log_of(&mut h, a);
    assert_eq!(hwm, 6);
    let expected: Vec<(i64, String)> =
        ["kept", "x", "y", "z", "n", "w"].iter().enumerate().map(|(i, v)| (i as i64, (*v).to_string())).collect();
    assert_eq!(records, expected);
}

#[test]
fn an_append_lost_with_an_unknown_outcome_is_written_once_when_retried() {
    let (mut h, a) = setup();
    h.auto_storage = false;
    h.send(a, &produce_request("t", 0, idempotent_batch(&["x", "y"], 11, 0, 0), -1), 11);
    assert!(h.fail_one_storage(StorageError::Unavailable));
    assert_eq!(answer(&mut h, a).error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0);
    assert!(resync_queued(&h));
    assert!(h.run_one_storage());
    h.auto_storage = true;
    let retry = produce(&mut h, a, idempotent_batch(&["x", "y"], 11, 0, 0));
    assert_eq!((retry.error_code, retry.base_offset), (0, 1), "appended afresh after what the store holds");
    let again = produce(&mut h, a, idempotent_batch(&["x", "y"], 11, 0, 0));
    assert_eq!((again.error_code, again.base_offset), (0, 1), "a second retry is a duplicate");
    assert_eq!(log_of(&mut h, a), (3, vec![(0, "kept".into()), (1, "x".into()), (2, "y".into())]));
}

#[test]
fn a_refusal_before_anything_was_written_needs_no_resync() {
    let (mut h, a) = setup();
    h.auto_storage = false;
    h.send(a, &produce_request("t", 0, batch(&["x"]), -1), 11);
    assert!(h.fail_one_storage(StorageError::Corrupt("append does not continue the log")));
    assert_eq!(answer(&mut h, a).error_code, ErrorCode::KAFKA_STORAGE_ERROR.0);
    assert!(h.queued.is_empty(), "a definite refusal rewinds without asking the store");
    h.auto_storage = true;
    assert_eq!(produce(&mut h, a, batch(&["x"])).base_offset, 1);
}

#[test]
fn a_failed_resync_is_asked_again_and_the_partition_waits_for_it() {
    let (mut h, a) = setup();
    h.auto_storage = false;
    h.send(a, &produce_request("t", 0, batch(&["x"]), -1), 11);
    assert!(h.run_one_storage_reporting(StorageError::Timeout));
    assert_eq!(answer(&mut h, a).error_code, ErrorCode::REQUEST_TIMED_OUT.0);
    assert!(resync_queued(&h));
    assert!(h.fail_one_storage(StorageError::Unavailable));
    assert!(h.queued.is_empty(), "not asked again in a tight loop");
    h.send(a, &produce_request("t", 0, batch(&["y"]), -1), 11);
    assert_eq!(answer(&mut h, a).error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0, "still refusing");
    h.advance(ms(100));
    assert!(resync_queued(&h), "asked again after a pause");
    h.auto_storage = true;
    h.drive();
    assert_eq!(produce(&mut h, a, batch(&["y"])).base_offset, 2);
    assert_eq!(log_of(&mut h, a), (3, vec![(0, "kept".into()), (1, "x".into()), (2, "y".into())]));
}

#[test]
fn a_store_that_keeps_failing_is_asked_less_and_less_often() {
    let (mut h, a) = setup();
    h.auto_storage = false;
    h.send(a, &produce_request("t", 0, batch(&["x"]), -1), 11);
    assert!(h.fail_one_storage(StorageError::Unavailable));
    assert_eq!(answer(&mut h, a).error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0);
    assert!(resync_queued(&h));
    // Pauses of 100, 200, 400, 800, 1600 ms, then 2 s each.
    for pause in [100, 200, 400, 800, 1600, 2000, 2000] {
        assert!(h.fail_one_storage(StorageError::Timeout));
        h.advance(ms(pause - 1));
        assert!(h.queued.is_empty(), "not asked again before {pause} ms");
        h.advance(ms(1));
        assert!(resync_queued(&h), "asked again after {pause} ms");
    }
    // Once the store answers, the partition takes appends again and the pause starts over.
    h.auto_storage = true;
    h.drive();
    assert_eq!(produce(&mut h, a, batch(&["y"])).base_offset, 1);
    h.auto_storage = false;
    h.send(a, &produce_request("t", 0, batch(&["z"]), -1), 11);
    assert!(h.fail_one_storage(StorageError::Unavailable));
    assert_eq!(answer(&mut h, a).error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0);
    assert!(h.fail_one_storage(StorageError::Timeout));
    h.advance(ms(100));
    assert!(resync_queued(&h), "the first pause is short again");
}
