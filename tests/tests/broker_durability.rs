//! Scenario tests of a store that acknowledges appends before they are durable (SeaweedMQ's
//! broker holds records in memory for up to a second): acks=1 is answered once the store holds
//! a batch, acks=-1 and fetchers wait until it is durable (Kafka's high watermark), a produce
//! whose records do not become durable within its `timeout_ms` gets REQUEST_TIMED_OUT, and a
//! store that loses what was not durable yet costs no acks=-1 record and no record a consumer
//! has seen.

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic};
use kelp_core::codec::generated::produce::PartitionProduceResponse;
use kelp_core::codec::{ApiKey, ErrorCode, Uuid};
use kelp_core::io::{PartitionKey, StorageError};
use kelp_core::{Command, Completion, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, batch, create_topic, create_topic_with, fetch_request, idempotent_batch, list_offset, ms, produce_request,
    record_values, test_config,
};

/// Answers an append as a store that holds it only in memory for now.
fn stored(c: Completion) -> Completion {
    match c {
        Completion::Done => Completion::Stored,
        other => other,
    }
}

fn answer(h: &mut Harness, c: ConnId) -> Option<PartitionProduceResponse> {
    let (_, body) = h.recv(c, ApiKey::PRODUCE, 11)?;
    Some(expect_body!(body, Produce).responses[0].partition_responses[0].clone())
}

fn visible(h: &mut Harness, c: ConnId) -> (i64, Vec<(i64, String)>) {
    let resp = expect_body!(h.call(c, fetch_request("t", 0, 0, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.high_watermark, p.records.as_ref().map(record_values).unwrap_or_default())
}

/// The partition and offset of the queued `AwaitDurable`, if one is queued.
fn await_durable(h: &Harness) -> Option<(PartitionKey, i64)> {
    h.queued.iter().find_map(|(_, c)| match c {
        Command::AwaitDurable { partition, offset } => Some((*partition, *offset)),
        _ => None,
    })
}

/// Moves the queued `AwaitDurable` to the front of the store's queue (it does not wait behind
/// the partition's appends).
fn durability_first(h: &mut Harness) {
    let i = h.queued.iter().position(|(_, c)| matches!(c, Command::AwaitDurable { .. })).expect("AwaitDurable queued");
    let q = h.queued.remove(i).expect("present");
    h.queued.push_front(q);
}

fn setup() -> (Harness, ConnId) {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    h.auto_storage = false;
    (h, c)
}

#[test]
fn acks_1_answers_when_stored_and_acks_all_and_fetchers_wait_until_durable() {
    let (mut h, c) = setup();
    let d = h.connect();
    h.send(c, &produce_request("t", 0, batch(&["a", "b"]), 1), 11);
    h.send(d, &produce_request("t", 0, batch(&["c"]), -1), 11);
    assert!(h.run_one_storage_with(stored));
    let one = answer(&mut h, c).expect("acks=1 is answered once the store holds the batch");
    assert_eq!((one.error_code, one.base_offset), (0, 0));
    assert_eq!(await_durable(&h).map(|(_, o)| o), Some(2), "the broker asks when the stored records are durable");
    // The durability question does not hold up the next append.
    assert!(matches!(h.queued.front(), Some((_, Command::Append { .. }))));
    assert!(h.run_one_storage_with(stored));
    assert!(answer(&mut h, d).is_none(), "acks=-1 waits for durability");
    h.auto_storage = true;
    h.drive();
    let all = answer(&mut h, d).expect("answered once durable");
    assert_eq!((all.error_code, all.base_offset), (0, 2));
    assert_eq!(visible(&mut h, c), (3, vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]));
}

#[test]
fn records_not_yet_durable_are_invisible_to_fetchers_and_list_offsets() {
    let (mut h, c) = setup();
    h.send(c, &produce_request("t", 0, batch(&["a"]), 1), 11);
    assert!(h.run_one_storage_with(stored));
    assert_eq!(answer(&mut h, c).map(|p| p.error_code), Some(0));
    assert!(await_durable(&h).is_some());
    h.auto_storage = true;
    // The fetch's own read runs the durability question too; take it out first.
    durability_first(&mut h);
    let question = h.queued.pop_front().expect("AwaitDurable queued");
    assert_eq!(visible(&mut h, c), (0, vec![]), "nothing is visible before it is durable");
    assert_eq!(list_offset(&mut h, c, "t", -1), 0, "LATEST is the high watermark");
    h.queued.push_back(question);
    h.drive();
    assert_eq!(visible(&mut h, c), (1, vec![(0, "a".into())]));
    assert_eq!(list_offset(&mut h, c, "t", -1), 1);
}

#[test]
fn an_acks_all_produce_whose_records_are_not_durable_in_time_gets_request_timed_out() {
    let (mut h, c) = setup();
    h.send(c, &produce_request("t", 0, idempotent_batch(&["x"], 7, 0, 0), -1), 11);
    assert!(h.run_one_storage_with(stored));
    assert!(await_durable(&h).is_some());
    h.advance(ms(999));
    assert!(answer(&mut h, c).is_none());
    h.advance(ms(1));
    let late = answer(&mut h, c).expect("answered at the request's timeout_ms");
    assert_eq!((late.error_code, late.base_offset), (ErrorCode::REQUEST_TIMED_OUT.0, -1));
    // The client retries: the batch is a duplicate, answered with its offset once durable.
    h.send(c, &produce_request("t", 0, idempotent_batch(&["x"], 7, 0, 0), -1), 11);
    assert!(answer(&mut h, c).is_none(), "a duplicate waits for durability too");
    assert!(h.run_one_storage());
    let dup = answer(&mut h, c).expect("answered");
    assert_eq!((dup.error_code, dup.base_offset), (0, 0));
    h.auto_storage = true;
    assert_eq!(visible(&mut h, c).1, vec![(0, "x".into())], "written once");
}

#[test]
fn a_store_that_loses_what_was_not_durable_costs_no_acks_all_record() {
    let (mut h, c) = setup();
    let key = {
        h.send(c, &produce_request("t", 0, idempotent_batch(&["a"], 7, 0, 0), -1), 11);
        assert!(h.run_one_storage_with(stored));
        let (key, _) = await_durable(&h).expect("asked");
        durability_first(&mut h);
        assert!(h.run_one_storage());
        key
    };
    assert_eq!(answer(&mut h, c).map(|p| (p.error_code, p.base_offset)), Some((0, 0)));
    // Two more batches are stored but not durable when the store restarts and loses them.
    h.send(c, &produce_request("t", 0, idempotent_batch(&["b"], 7, 0, 1), -1), 11);
    h.send(c, &produce_request("t", 0, idempotent_batch(&["c"], 7, 0, 2), -1), 11);
    assert!(h.run_one_storage_with(stored));
    assert!(h.run_one_storage_with(stored));
    assert_eq!(await_durable(&h).map(|(_, o)| o), Some(2));
    assert!(h.store.truncate(key, 1), "the store keeps only the durable record");
    durability_first(&mut h);
    assert!(h.fail_one_storage(StorageError::Unavailable), "it cannot say when the rest is durable");
    for _ in 0..2 {
        let p = answer(&mut h, c).expect("answered");
        assert_eq!(p.error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0, "retriable");
    }
    assert!(matches!(h.queued.front(), Some((_, Command::RecoverPartition { .. }))));
    assert!(h.run_one_storage());
    // The producer retries both batches: they are written again, at the same offsets.
    h.auto_storage = true;
    for (seq, v) in [(1, "b"), (2, "c")] {
        h.send(c, &produce_request("t", 0, idempotent_batch(&[v], 7, 0, seq), -1), 11);
        let p = answer(&mut h, c).expect("answered");
        assert_eq!((p.error_code, p.base_offset), (0, i64::from(seq)));
    }
    assert_eq!(visible(&mut h, c), (3, vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]));
}

#[test]
fn a_store_that_answers_done_needs_no_durability_question() {
    let (mut h, c) = setup();
    h.send(c, &produce_request("t", 0, batch(&["a"]), -1), 11);
    assert!(h.run_one_storage());
    assert_eq!(answer(&mut h, c).map(|p| p.error_code), Some(0));
    assert!(h.queued.is_empty(), "no AwaitDurable: {:?}", h.queued);
}

// ---- a store that lost durable records -----------------------------------------------------

fn metadata_epoch(h: &mut Harness, c: ConnId, topic: &str) -> i32 {
    let req = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { name: Some(topic.into()), ..Default::default() }]),
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::Metadata(req), 12), Metadata);
    resp.topics[0].partitions[0].leader_epoch
}

fn epoch_end(h: &mut Harness, c: ConnId, topic: &str, current: i32, epoch: i32) -> (i16, i32, i64) {
    let e = kelp_tests::harness::epoch_end(h, c, topic, 0, current, epoch);
    (e.error_code, e.leader_epoch, e.end_offset)
}

fn fenced_metric(h: &Harness) -> String {
    let mut text = String::new();
    h.broker.write_metrics(&mut text);
    text.lines().find(|l| l.starts_with("kelp_partitions_fenced ")).unwrap_or_default().to_owned()
}

/// Three records durable, then the store comes back holding only the first (SeaweedFS lost
/// files): the partition re-synchronises after the next append fails.
fn lose_durable_records(h: &mut Harness, c: ConnId, topic: &str, id: Uuid) {
    for v in ["a", "b", "c"] {
        let p = expect_body!(h.call(c, produce_request(topic, 0, batch(&[v]), -1), 11), Produce);
        assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    }
    assert!(h.store.truncate(PartitionKey { topic_id: id, partition: 0 }, 1));
    h.auto_storage = false;
    h.send(c, &produce_request(topic, 0, batch(&["d"]), -1), 11);
    assert!(h.fail_one_storage(StorageError::Unavailable));
    assert_eq!(answer(h, c).map(|p| p.error_code), Some(ErrorCode::NOT_LEADER_OR_FOLLOWER.0));
    assert!(matches!(h.queued.front(), Some((_, Command::RecoverPartition { .. }))));
    assert!(h.run_one_storage());
    h.auto_storage = true;
    h.drive();
}

#[test]
fn a_partition_whose_store_lost_durable_records_stays_fenced_and_says_so() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = create_topic(&mut h, c, "t", 1);
    lose_durable_records(&mut h, c, "t", id);
    assert_eq!(fenced_metric(&h), "kelp_partitions_fenced 1");
    let p = expect_body!(h.call(c, produce_request("t", 0, batch(&["e"]), -1), 11), Produce);
    assert_eq!(p.responses[0].partition_responses[0].error_code, ErrorCode::NOT_LEADER_OR_FOLLOWER.0);
    h.advance(ms(5_000));
    assert_eq!(fenced_metric(&h), "kelp_partitions_fenced 1", "asked again, still below the high watermark");
    assert_eq!(visible(&mut h, c).0, 3, "what consumers saw is not taken back");
    assert_eq!(metadata_epoch(&mut h, c, "t"), 0);
}

#[test]
fn unclean_leader_election_accepts_the_loss_in_a_new_leader_epoch() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = create_topic_with(&mut h, c, "t", 1, &[("unclean.leader.election.enable", "true")]);
    lose_durable_records(&mut h, c, "t", id);
    assert_eq!(fenced_metric(&h), "kelp_partitions_fenced 0");
    assert_eq!(metadata_epoch(&mut h, c, "t"), 1, "clients see a new leader epoch");
    assert_eq!(visible(&mut h, c), (1, vec![(0, "a".into())]));
    assert_eq!(epoch_end(&mut h, c, "t", 1, 0), (0, 0, 1), "epoch 0 ended where the store's log ends");
    assert_eq!(epoch_end(&mut h, c, "t", 0, 0).0, ErrorCode::FENCED_LEADER_EPOCH.0, "a client on epoch 0 is fenced");
    let p = expect_body!(h.call(c, produce_request("t", 0, batch(&["e"]), -1), 11), Produce);
    assert_eq!(p.responses[0].partition_responses[0].base_offset, 1, "appends continue at the store's end");
    let resp = expect_body!(h.call(c, fetch_request("t", 0, 1, 0), 12), Fetch);
    let records = resp.responses[0].partitions[0].records.clone().expect("records");
    let batch = kelp_core::records::RecordBatch::split_first(&mut records.to_bytes()).expect("a batch");
    assert_eq!(batch.partition_leader_epoch(), 1, "new batches carry the new epoch");
    // The history is stored: a restarted broker keeps the epoch.
    let mut h = h.restart(test_config());
    let c = h.connect();
    assert_eq!(metadata_epoch(&mut h, c, "t"), 1);
    assert_eq!(epoch_end(&mut h, c, "t", -1, 0), (0, 0, 1));
}
