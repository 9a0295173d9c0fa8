//! Transactions through the broker and the memory store, in virtual time: the coordinator's
//! answers, markers, the last stable offset, read_committed fetches with their aborted
//! transactions, transactional offsets, fencing, timeouts, and all of it across a restart.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::add_offsets_to_txn::AddOffsetsToTxnRequest;
use kelp_core::codec::generated::add_partitions_to_txn::{AddPartitionsToTxnRequest, AddPartitionsToTxnTopic};
use kelp_core::codec::generated::describe_transactions::DescribeTransactionsRequest;
use kelp_core::codec::generated::end_txn::EndTxnRequest;
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic, PartitionData};
use kelp_core::codec::generated::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kelp_core::codec::generated::list_transactions::ListTransactionsRequest;
use kelp_core::codec::generated::offset_fetch::OffsetFetchResponse;
use kelp_core::codec::generated::produce::ProduceRequest;
use kelp_core::codec::generated::txn_offset_commit::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kelp_core::codec::{ErrorCode, KStr};
use kelp_core::records::{Batches, Compression, RecordBatchBuilder};
use kelp_core::{ConnId, txn};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, batch_from, create_topic, ms, offset_fetch_request, produce_request, record_values, test_config,
};

fn init(h: &mut Harness, c: ConnId, id: &str, timeout_ms: i32, expected: (i64, i16)) -> InitProducerIdResponse {
    let req = InitProducerIdRequest {
        transactional_id: Some(KStr::from(id)),
        transaction_timeout_ms: timeout_ms,
        producer_id: expected.0,
        producer_epoch: expected.1,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::InitProducerId(req), 5), InitProducerId)
}

/// AddPartitionsToTxn v3 for `partitions` of `topic`: the error codes, partition by partition.
fn add_partitions(h: &mut Harness, c: ConnId, id: &str, p: (i64, i16), topic: &str, partitions: &[i32]) -> Vec<i16> {
    let req = AddPartitionsToTxnRequest {
        v3_and_below_transactional_id: KStr::from(id),
        v3_and_below_producer_id: p.0,
        v3_and_below_producer_epoch: p.1,
        v3_and_below_topics: vec![AddPartitionsToTxnTopic {
            name: KStr::from(topic),
            partitions: partitions.to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::AddPartitionsToTxn(req), 3), AddPartitionsToTxn);
    resp.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| t.results_by_partition.iter().map(|r| r.partition_error_code))
        .collect()
}

fn end(h: &mut Harness, c: ConnId, id: &str, p: (i64, i16), commit: bool) -> i16 {
    let req = EndTxnRequest {
        transactional_id: KStr::from(id),
        producer_id: p.0,
        producer_epoch: p.1,
        committed: commit,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::EndTxn(req), 4), EndTxn).error_code
}

/// A transactional batch of `values` from producer `p` starting at sequence `seq`.
fn txn_batch(p: (i64, i16), seq: i32, values: &[&str]) -> Bytes {
    batch_from(RecordBatchBuilder::new(Compression::None).producer(p.0, p.1, seq).transactional(true), values)
}

/// Produces a transactional batch; returns the partition's error code.
fn produce_txn(h: &mut Harness, c: ConnId, id: &str, topic: &str, partition: i32, records: Bytes) -> i16 {
    let RequestBody::Produce(p) = produce_request(topic, partition, records, -1) else { unreachable!() };
    let req = RequestBody::Produce(ProduceRequest { transactional_id: Some(KStr::from(id)), ..p });
    expect_body!(h.call(c, req, 11), Produce).responses[0].partition_responses[0].error_code
}

fn fetch(h: &mut Harness, c: ConnId, topic: &str, partition: i32, read_committed: bool) -> PartitionData {
    let req = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        isolation_level: i8::from(read_committed),
        topics: vec![FetchTopic {
            topic: KStr::from(topic),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                current_leader_epoch: -1,
                log_start_offset: -1,
                last_fetched_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::Fetch(req), 12), Fetch);
    resp.responses[0].partitions[0].clone()
}

/// The values of the data records a fetch returned (control records left out) and the
/// markers, in offset order.
fn contents(p: &PartitionData) -> (Vec<String>, Vec<txn::MarkerKind>) {
    let Some(records) = &p.records else { return (Vec::new(), Vec::new()) };
    let mut markers = Vec::new();
    let mut data_offsets = Vec::new();
    for b in Batches::new(records.to_bytes()) {
        let b = b.expect("whole batches");
        if b.is_control() {
            markers.push(txn::parse_marker(&b).expect("a marker"));
        } else {
            data_offsets.extend(b.base_offset()..=b.last_offset());
        }
    }
    let values = record_values(records).into_iter().filter(|(o, _)| data_offsets.contains(o)).map(|(_, v)| v).collect();
    (values, markers)
}

/// What a read_committed consumer keeps of a fetch, as Kafka's consumer filters it: the
/// values of data records, leaving out control records and the batches of aborted
/// transactions the response lists.
fn visible(p: &PartitionData) -> Vec<String> {
    let Some(records) = &p.records else { return Vec::new() };
    let mut aborted: Vec<(i64, i64)> =
        p.aborted_transactions.iter().flatten().map(|a| (a.first_offset, a.producer_id)).collect();
    aborted.sort_unstable();
    let mut aborted = aborted.into_iter().peekable();
    let mut skipping = std::collections::HashSet::new();
    let mut keep = Vec::new();
    for b in Batches::new(records.to_bytes()) {
        let b = b.expect("whole batches");
        while let Some(&(first, pid)) = aborted.peek().filter(|(first, _)| *first <= b.last_offset()) {
            let _ = first;
            skipping.insert(pid);
            aborted.next();
        }
        if b.is_control() {
            if txn::parse_marker(&b) == Some(txn::MarkerKind::Abort) {
                skipping.remove(&b.producer_id());
            }
        } else if !(b.is_transactional() && skipping.contains(&b.producer_id())) {
            keep.extend(b.base_offset()..=b.last_offset());
        }
    }
    record_values(records).into_iter().filter(|(o, _)| keep.contains(o)).map(|(_, v)| v).collect()
}

fn list_latest(h: &mut Harness, c: ConnId, topic: &str, read_committed: bool) -> i64 {
    let req = ListOffsetsRequest {
        replica_id: -1,
        isolation_level: i8::from(read_committed),
        topics: vec![ListOffsetsTopic {
            name: KStr::from(topic),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                timestamp: -1,
                current_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::ListOffsets(req), 5), ListOffsets).topics[0].partitions[0].offset
}

/// Lets the markers of ended transactions be written (the store answers every command).
fn settle(h: &mut Harness) {
    for _ in 0..5 {
        h.advance(ms(1));
    }
}

#[test]
fn committed_and_aborted_transactions_read_as_kafka_serves_them() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let r = init(&mut h, c, "tx", 60_000, (-1, -1));
    assert_eq!((r.error_code, r.producer_epoch), (0, 0));
    let p = (r.producer_id, r.producer_epoch);
    assert_eq!(
        produce_txn(&mut h, c, "tx", "t", 0, txn_batch(p, 0, &["early"])),
        ErrorCode::INVALID_TXN_STATE.0,
        "a partition not added to the transaction is refused"
    );
    assert_eq!(add_partitions(&mut h, c, "tx", p, "t", &[0]), vec![0]);
    assert_eq!(produce_txn(&mut h, c, "tx", "t", 0, txn_batch(p, 0, &["a1", "a2"])), 0);
    // Another producer writes after the transaction's first record.
    let plain = batch_from(RecordBatchBuilder::new(Compression::None), &["plain"]);
    assert_eq!(
        expect_body!(h.call(c, produce_request("t", 0, plain, -1), 11), Produce).responses[0].partition_responses[0]
            .error_code,
        0
    );
    let open = fetch(&mut h, c, "t", 0, true);
    assert_eq!((open.high_watermark, open.last_stable_offset), (3, 0), "the open transaction holds the LSO");
    assert!(contents(&open).0.is_empty(), "read_committed sees nothing past the LSO");
    assert_eq!(contents(&fetch(&mut h, c, "t", 0, false)).0, ["a1", "a2", "plain"]);
    assert_eq!((list_latest(&mut h, c, "t", true), list_latest(&mut h, c, "t", false)), (0, 3));
    assert_eq!(end(&mut h, c, "tx", p, false), 0, "abort");
    settle(&mut h);
    let aborted = fetch(&mut h, c, "t", 0, true);
    assert_eq!((aborted.high_watermark, aborted.last_stable_offset), (4, 4));
    let listed: Vec<(i64, i64)> =
        aborted.aborted_transactions.iter().flatten().map(|a| (a.producer_id, a.first_offset)).collect();
    assert_eq!(listed, vec![(p.0, 0)], "the aborted range starts at the transaction's first offset");
    assert_eq!(contents(&aborted).1, vec![txn::MarkerKind::Abort]);
    assert_eq!(visible(&aborted), ["plain"], "the other producer's record stays");
    // The next transaction commits.
    assert_eq!(add_partitions(&mut h, c, "tx", p, "t", &[0]), vec![0]);
    assert_eq!(produce_txn(&mut h, c, "tx", "t", 0, txn_batch(p, 2, &["b1"])), 0);
    assert_eq!(end(&mut h, c, "tx", p, true), 0, "commit");
    settle(&mut h);
    assert_eq!(end(&mut h, c, "tx", p, true), 0, "a retried commit once complete");
    assert_eq!(end(&mut h, c, "tx", p, false), ErrorCode::INVALID_TXN_STATE.0);
    let done = fetch(&mut h, c, "t", 0, true);
    assert_eq!((done.high_watermark, done.last_stable_offset), (6, 6));
    assert_eq!(contents(&done).1, vec![txn::MarkerKind::Abort, txn::MarkerKind::Commit]);
    assert_eq!(visible(&done), ["plain", "b1"]);
    assert_eq!(list_latest(&mut h, c, "t", true), 6);

    // After a restart the aborted range is still listed.
    let mut after = h.restart(test_config());
    let c = after.connect();
    let again = fetch(&mut after, c, "t", 0, true);
    let listed: Vec<(i64, i64)> =
        again.aborted_transactions.iter().flatten().map(|a| (a.producer_id, a.first_offset)).collect();
    assert_eq!(listed, vec![(p.0, 0)]);
    assert_eq!(again.last_stable_offset, 6);
    // The producer's sequence continues in the same epoch: the markers the store reports
    // among its batches carry no sequence.
    assert_eq!(add_partitions(&mut after, c, "tx", p, "t", &[0]), vec![0]);
    assert_eq!(produce_txn(&mut after, c, "tx", "t", 0, txn_batch(p, 3, &["c1"])), 0);
    assert_eq!(end(&mut after, c, "tx", p, true), 0);
    settle(&mut after);
    assert_eq!(visible(&fetch(&mut after, c, "t", 0, true)), ["plain", "b1", "c1"]);
}

#[test]
fn a_restart_keeps_an_open_transaction_holding_the_lso_until_it_ends() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let plain = batch_from(RecordBatchBuilder::new(Compression::None), &["before"]);
    expect_body!(h.call(c, produce_request("t", 0, plain, -1), 11), Produce);
    let r = init(&mut h, c, "tx", 60_000, (-1, -1));
    let p = (r.producer_id, r.producer_epoch);
    assert_eq!(add_partitions(&mut h, c, "tx", p, "t", &[0]), vec![0]);
    assert_eq!(produce_txn(&mut h, c, "tx", "t", 0, txn_batch(p, 0, &["x"])), 0);
    let mut after = h.restart(test_config());
    let c = after.connect();
    assert_eq!(
        fetch(&mut after, c, "t", 0, true).last_stable_offset,
        1,
        "held at the bound stored when the partition joined"
    );
    // The producer comes back: its open transaction is aborted first (CONCURRENT_TRANSACTIONS
    // while that happens), then it gets a bumped epoch.
    let fenced = init(&mut after, c, "tx", 60_000, (-1, -1));
    assert_eq!(fenced.error_code, ErrorCode::CONCURRENT_TRANSACTIONS.0);
    settle(&mut after);
    let r2 = init(&mut after, c, "tx", 60_000, (-1, -1));
    assert_eq!((r2.error_code, r2.producer_id, r2.producer_epoch), (0, p.0, 2), "bumped once to fence, once to start");
    let f = fetch(&mut after, c, "t", 0, true);
    assert_eq!((f.high_watermark, f.last_stable_offset), (3, 3));
    assert_eq!(visible(&f), ["before"], "the transaction's record is aborted");
    assert_eq!(contents(&f).0, ["before", "x"], "and still in the log");
    assert_eq!(
        produce_txn(&mut after, c, "tx", "t", 0, txn_batch(p, 1, &["zombie"])),
        ErrorCode::INVALID_PRODUCER_EPOCH.0,
        "the old epoch is fenced"
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let r = init(&mut h, c, "slow", 2_000, (-1, -1));
    let p = (r.producer_id, r.producer_epoch);
    assert_eq!(
        init(&mut h, c, "bad", 900_001, (-1, -1)).error_code,
        ErrorCode::INVALID_TRANSACTION_TIMEOUT.0,
        "past transaction.max.timeout.ms"
    );
    assert_eq!(add_partitions(&mut h, c, "slow", p, "t", &[0]), vec![0]);
    assert_eq!(produce_txn(&mut h, c, "slow", "t", 0, txn_batch(p, 0, &["hung"])), 0);
    for _ in 0..40 {
        h.advance(ms(100));
    }
    let f = fetch(&mut h, c, "t", 0, true);
    assert_eq!((f.high_watermark, f.last_stable_offset), (2, 2), "aborted: the LSO moved past it");
    assert!(visible(&f).is_empty());
    assert_eq!(end(&mut h, c, "slow", p, true), ErrorCode::PRODUCER_FENCED.0, "the silent producer is fenced");
    assert_eq!(
        add_partitions(&mut h, c, "slow", p, "t", &[0]),
        vec![ErrorCode::PRODUCER_FENCED.0],
        "AddPartitionsToTxn v3 says PRODUCER_FENCED"
    );
    let listed = expect_body!(
        h.call(
            c,
            RequestBody::ListTransactions(ListTransactionsRequest { duration_filter: -1, ..Default::default() }),
            1
        ),
        ListTransactions
    );
    let states: Vec<(String, String)> = listed
        .transaction_states
        .iter()
        .map(|s| (s.transactional_id.to_string(), s.transaction_state.to_string()))
        .collect();
    assert_eq!(states, vec![("slow".to_string(), "CompleteAbort".to_string())]);
    let described = expect_body!(
        h.call(
            c,
            RequestBody::DescribeTransactions(DescribeTransactionsRequest {
                transactional_ids: vec!["slow".into(), "nope".into()],
                ..Default::default()
            }),
            0
        ),
        DescribeTransactions
    );
    let s = &described.transaction_states[0];
    assert_eq!((s.error_code, s.producer_id, s.producer_epoch, s.transaction_timeout_ms), (0, p.0, 1, 2_000));
    assert_eq!(described.transaction_states[1].error_code, ErrorCode::TRANSACTIONAL_ID_NOT_FOUND.0);
}

#[test]
fn a_second_producer_with_the_same_id_fences_the_first() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let first = init(&mut h, c, "tx", 60_000, (-1, -1));
    let p1 = (first.producer_id, first.producer_epoch);
    let second = init(&mut h, c, "tx", 60_000, (-1, -1));
    assert_eq!((second.producer_id, second.producer_epoch), (p1.0, 1));
    assert_eq!(add_partitions(&mut h, c, "tx", p1, "t", &[0]), vec![ErrorCode::PRODUCER_FENCED.0]);
    let stale = init(&mut h, c, "tx", 60_000, p1);
    assert_eq!(stale.error_code, ErrorCode::PRODUCER_FENCED.0, "KIP-360: a fenced epoch cannot recover");
}

#[test]
fn transactional_offsets_become_visible_at_commit_and_vanish_at_abort() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "in", 1);
    let r = init(&mut h, c, "tx", 60_000, (-1, -1));
    let p = (r.producer_id, r.producer_epoch);
    let commit_offsets = |h: &mut Harness, offset: i64| -> i16 {
        let add = AddOffsetsToTxnRequest {
            transactional_id: "tx".into(),
            producer_id: p.0,
            producer_epoch: p.1,
            group_id: "g".into(),
            ..Default::default()
        };
        assert_eq!(expect_body!(h.call(c, RequestBody::AddOffsetsToTxn(add), 3), AddOffsetsToTxn).error_code, 0);
        let req = TxnOffsetCommitRequest {
            transactional_id: "tx".into(),
            group_id: "g".into(),
            producer_id: p.0,
            producer_epoch: p.1,
            generation_id: -1,
            member_id: KStr::default(),
            topics: vec![TxnOffsetCommitRequestTopic {
                name: "in".into(),
                partitions: vec![TxnOffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: offset,
                    committed_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        expect_body!(h.call(c, RequestBody::TxnOffsetCommit(req), 3), TxnOffsetCommit).topics[0].partitions[0]
            .error_code
    };
    let committed = |h: &mut Harness, stable: bool| -> (i64, i16) {
        let resp: OffsetFetchResponse =
            expect_body!(h.call(c, offset_fetch_request("g", Some(&[("in", &[0])]), stable), 7), OffsetFetch);
        let p = &resp.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    };
    assert_eq!(commit_offsets(&mut h, 10), 0);
    assert_eq!(committed(&mut h, false), (-1, 0), "not visible before the commit");
    assert_eq!(committed(&mut h, true), (-1, ErrorCode::UNSTABLE_OFFSET_COMMIT.0));
    assert_eq!(end(&mut h, c, "tx", p, true), 0);
    settle(&mut h);
    assert_eq!(committed(&mut h, true), (10, 0));
    assert_eq!(commit_offsets(&mut h, 20), 0);
    assert_eq!(end(&mut h, c, "tx", p, false), 0);
    settle(&mut h);
    assert_eq!(committed(&mut h, true), (10, 0), "an aborted commit leaves the last one");
    // Lag is measured to the last stable offset: 12 records, an open transaction from 10.
    let plain = batch_from(RecordBatchBuilder::new(Compression::None), &["x"; 12]);
    expect_body!(h.call(c, produce_request("in", 0, plain, -1), 11), Produce);
    assert_eq!(add_partitions(&mut h, c, "tx", p, "in", &[0]), vec![0]);
    assert_eq!(produce_txn(&mut h, c, "tx", "in", 0, txn_batch(p, 0, &["open"])), 0);
    let lag = |h: &Harness| {
        let mut text = String::new();
        h.broker.write_metrics(&mut text);
        let line = text.lines().find(|l| l.starts_with("kelp_consumer_group_lag{group=\"g\"")).map(str::to_owned);
        line.unwrap_or_default()
    };
    assert!(lag(&h).ends_with(" 2"), "lag to the LSO (12), not the high watermark (13): {}", lag(&h));
    assert_eq!(end(&mut h, c, "tx", p, false), 0);
    settle(&mut h);
    // Pending offsets survive a restart and apply at the commit that follows it.
    assert_eq!(commit_offsets(&mut h, 30), 0);
    let mut after = h.restart(test_config());
    let c2 = after.connect();
    let resp: OffsetFetchResponse =
        expect_body!(after.call(c2, offset_fetch_request("g", Some(&[("in", &[0])]), true), 7), OffsetFetch);
    assert_eq!(resp.topics[0].partitions[0].error_code, ErrorCode::UNSTABLE_OFFSET_COMMIT.0);
    assert_eq!(end(&mut after, c2, "tx", p, true), 0);
    settle(&mut after);
    let resp: OffsetFetchResponse =
        expect_body!(after.call(c2, offset_fetch_request("g", Some(&[("in", &[0])]), true), 7), OffsetFetch);
    assert_eq!(resp.topics[0].partitions[0].committed_offset, 30);
}

#[test]
fn batched_add_partitions_adds_for_several_transactions_and_verifies_without_adding() {
    use kelp_core::codec::generated::add_partitions_to_txn::AddPartitionsToTxnTransaction;
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 2);
    let a = init(&mut h, c, "a", 60_000, (-1, -1));
    let b = init(&mut h, c, "b", 60_000, (-1, -1));
    let txn = |id: &str, r: &InitProducerIdResponse, verify: bool, partitions: &[i32]| AddPartitionsToTxnTransaction {
        transactional_id: KStr::from(id),
        producer_id: r.producer_id,
        producer_epoch: r.producer_epoch,
        verify_only: verify,
        topics: vec![AddPartitionsToTxnTopic {
            name: "t".into(),
            partitions: partitions.to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let call = |h: &mut Harness, txns: Vec<AddPartitionsToTxnTransaction>, version: i16| -> Vec<(String, Vec<i16>)> {
        let req = AddPartitionsToTxnRequest { transactions: txns, ..Default::default() };
        let resp = expect_body!(h.call(c, RequestBody::AddPartitionsToTxn(req), version), AddPartitionsToTxn);
        assert_eq!(resp.error_code, 0);
        resp.results_by_transaction
            .iter()
            .map(|r| {
                let codes =
                    r.topic_results.iter().flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code));
                (r.transactional_id.to_string(), codes.collect())
            })
            .collect()
    };
    let added = call(&mut h, vec![txn("a", &a, false, &[0]), txn("b", &b, false, &[0, 1])], 4);
    assert_eq!(added, vec![("a".to_string(), vec![0]), ("b".to_string(), vec![0, 0])]);
    let verified = call(&mut h, vec![txn("a", &a, true, &[0, 1]), txn("b", &b, true, &[1])], 5);
    assert_eq!(
        verified,
        vec![("a".to_string(), vec![0, ErrorCode::TRANSACTION_ABORTABLE.0]), ("b".to_string(), vec![0])],
        "verify-only adds nothing; a partition outside the transaction is abortable"
    );
    let v4 = call(&mut h, vec![txn("a", &a, true, &[1])], 4);
    assert_eq!(v4, vec![("a".to_string(), vec![ErrorCode::INVALID_TXN_STATE.0])], "v4 knows no TRANSACTION_ABORTABLE");
    let stale = InitProducerIdResponse { producer_epoch: a.producer_epoch + 1, ..a.clone() };
    let fenced = call(&mut h, vec![txn("a", &stale, true, &[0]), txn("nobody", &a, false, &[0])], 5);
    assert_eq!(
        fenced,
        vec![
            ("a".to_string(), vec![ErrorCode::PRODUCER_FENCED.0]),
            ("nobody".to_string(), vec![ErrorCode::INVALID_PRODUCER_ID_MAPPING.0])
        ]
    );
    assert_eq!(end(&mut h, c, "b", (b.producer_id, b.producer_epoch), true), 0, "b's partitions were added");
}

/// EndTxn v5, transaction version 2 (KIP-890 part 2).
fn end_v2(h: &mut Harness, c: ConnId, id: &str, p: (i64, i16), commit: bool) -> (i16, i64, i16) {
    let req = EndTxnRequest {
        transactional_id: KStr::from(id),
        producer_id: p.0,
        producer_epoch: p.1,
        committed: commit,
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::EndTxn(req), 5), EndTxn);
    (r.error_code, r.producer_id, r.producer_epoch)
}

/// A Produce v12 request with a transactional batch, as a transaction version 2 producer
/// sends it (no AddPartitionsToTxn first).
fn produce_v12(id: &str, topic: &str, partition: i32, records: Bytes) -> RequestBody {
    let RequestBody::Produce(p) = produce_request(topic, partition, records, -1) else { unreachable!() };
    RequestBody::Produce(ProduceRequest { transactional_id: Some(KStr::from(id)), ..p })
}

fn produce_code(body: kelp_core::codec::generated::ResponseBody) -> i16 {
    let kelp_core::codec::generated::ResponseBody::Produce(r) = body else { panic!("not a produce response") };
    r.responses[0].partition_responses[0].error_code
}

#[test]
fn transaction_version_2_joins_partitions_and_groups_implicitly_and_bumps_the_epoch_per_transaction() {
    use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let versions = expect_body!(h.call(c, RequestBody::ApiVersions(ApiVersionsRequest::default()), 4), ApiVersions);
    let tv = versions.finalized_features.iter().find(|f| f.name.as_str() == "transaction.version").expect("finalized");
    assert_eq!((tv.min_version_level, tv.max_version_level), (2, 2));
    assert!(versions.finalized_features_epoch >= 0, "the Java client ignores features with a negative epoch");
    let v3 = expect_body!(h.call(c, RequestBody::ApiVersions(ApiVersionsRequest::default()), 3), ApiVersions);
    assert!(v3.supported_features.iter().all(|f| f.min_version > 0), "no range from 0 below v4 (KIP-1022)");
    create_topic(&mut h, c, "t", 2);
    create_topic(&mut h, c, "in", 1);
    let r = init(&mut h, c, "tx", 60_000, (-1, -1));
    let p = (r.producer_id, r.producer_epoch);
    // Two produce requests in flight at once, each to a partition not yet in the transaction:
    // the second waits for the first's join, then joins its own partition.
    let first = h.send(c, &produce_v12("tx", "t", 0, txn_batch(p, 0, &["a1"])), 12);
    let second = h.send(c, &produce_v12("tx", "t", 1, txn_batch(p, 0, &["b1"])), 12);
    h.drive();
    for corr in [first, second] {
        let (got, body) = h.recv(c, kelp_core::codec::ApiKey::PRODUCE, 12).expect("a produce answer");
        assert_eq!((got, produce_code(body)), (corr, 0), "answered in order, both accepted");
    }
    // v11 from the same producer still needs the partition added: it is, now.
    assert_eq!(produce_txn(&mut h, c, "tx", "t", 0, txn_batch(p, 1, &["a2"])), 0);
    // The group joins with TxnOffsetCommit v5 (no AddOffsetsToTxn).
    let offsets = TxnOffsetCommitRequest {
        transactional_id: "tx".into(),
        group_id: "g".into(),
        producer_id: p.0,
        producer_epoch: p.1,
        generation_id: -1,
        topics: vec![TxnOffsetCommitRequestTopic {
            name: "in".into(),
            partitions: vec![TxnOffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 7,
                committed_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::TxnOffsetCommit(offsets), 5), TxnOffsetCommit);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    // EndTxn v5 bumps the epoch; the markers carry the new one.
    let (code, pid, epoch) = end_v2(&mut h, c, "tx", p, true);
    assert_eq!((code, pid, epoch), (0, p.0, 1));
    settle(&mut h);
    let part0 = fetch(&mut h, c, "t", 0, true);
    assert_eq!(visible(&part0), ["a1", "a2"]);
    let records = part0.records.as_ref().expect("records");
    let marker = Batches::new(records.to_bytes()).map(|b| b.expect("batch")).find(|b| b.is_control()).expect("marker");
    assert_eq!((marker.producer_id(), marker.producer_epoch()), (p.0, 1));
    assert_eq!(visible(&fetch(&mut h, c, "t", 1, true)), ["b1"]);
    let committed: OffsetFetchResponse =
        expect_body!(h.call(c, offset_fetch_request("g", Some(&[("in", &[0])]), true), 7), OffsetFetch);
    assert_eq!(committed.topics[0].partitions[0].committed_offset, 7, "the group's offset committed");
    // A retry with the old epoch is answered as the first was; the old epoch is fenced.
    assert_eq!(end_v2(&mut h, c, "tx", p, true), (0, p.0, 1));
    assert_eq!(end_v2(&mut h, c, "tx", p, false), (ErrorCode::INVALID_TXN_STATE.0, -1, -1));
    let late = produce_code(h.call(c, produce_v12("tx", "t", 0, txn_batch(p, 2, &["zombie"])), 12));
    assert_eq!(late, ErrorCode::INVALID_PRODUCER_EPOCH.0, "a write of the old epoch is refused");
    // The next transaction, in epoch 1 from sequence 0, aborts: epoch 2.
    let p1 = (p.0, 1);
    assert_eq!(produce_code(h.call(c, produce_v12("tx", "t", 0, txn_batch(p1, 0, &["gone"])), 12)), 0);
    assert_eq!(end_v2(&mut h, c, "tx", p1, false), (0, p.0, 2));
    settle(&mut h);
    assert_eq!(visible(&fetch(&mut h, c, "t", 0, true)), ["a1", "a2"]);
    // An abort with nothing open bumps the epoch too; a commit with nothing open is refused.
    let p2 = (p.0, 2);
    assert_eq!(end_v2(&mut h, c, "tx", p2, true), (ErrorCode::INVALID_TXN_STATE.0, -1, -1));
    assert_eq!(end_v2(&mut h, c, "tx", p2, false), (0, p.0, 3));
    // After a restart the id goes on from its stored epoch.
    let mut after = h.restart(test_config());
    let c = after.connect();
    let p3 = (p.0, 3);
    assert_eq!(produce_code(after.call(c, produce_v12("tx", "t", 1, txn_batch(p3, 0, &["b2"])), 12)), 0);
    assert_eq!(end_v2(&mut after, c, "tx", p3, true), (0, p.0, 4));
    settle(&mut after);
    assert_eq!(visible(&fetch(&mut after, c, "t", 1, true)), ["b1", "b2"]);
}

#[test]
fn pipelined_produce_v12_to_one_partition_joins_once_and_keeps_its_sequence_order() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 2);
    let r = init(&mut h, c, "tx", 60_000, (-1, -1));
    let p = (r.producer_id, r.producer_epoch);
    // The Java client keeps up to five produce requests in flight: the first starts the
    // transaction by joining its partitions; the next ones, to the same partitions, wait for
    // that and must then follow it, not overtake it (their sequences continue its).
    let batch = |seq: i32, v: &str| txn_batch(p, seq, &[v]);
    // The store answers only once all three are in (a slow store, as SeaweedMQ's filer is).
    h.auto_storage = false;
    let mut sent = Vec::new();
    for (seq, v) in ["a", "b", "c"].into_iter().enumerate() {
        let RequestBody::Produce(mut req) = produce_v12("tx", "t", 0, batch(i32::try_from(seq).unwrap(), v)) else {
            unreachable!()
        };
        let RequestBody::Produce(other) = produce_v12("tx", "t", 1, batch(i32::try_from(seq).unwrap(), v)) else {
            unreachable!()
        };
        req.topic_data[0].partition_data.extend(other.topic_data[0].partition_data.clone());
        sent.push(h.send(c, &RequestBody::Produce(req), 12));
    }
    h.auto_storage = true;
    h.drive();
    for corr in sent {
        let (got, body) = h.recv(c, kelp_core::codec::ApiKey::PRODUCE, 12).expect("a produce answer");
        let kelp_core::codec::generated::ResponseBody::Produce(r) = body else { panic!() };
        let codes: Vec<i16> = r.responses[0].partition_responses.iter().map(|x| x.error_code).collect();
        assert_eq!((got, codes), (corr, vec![0, 0]), "each request accepted, in order");
    }
    assert_eq!(end_v2(&mut h, c, "tx", p, true), (0, p.0, 1));
    settle(&mut h);
    assert_eq!(visible(&fetch(&mut h, c, "t", 0, true)), ["a", "b", "c"]);
    assert_eq!(visible(&fetch(&mut h, c, "t", 1, true)), ["a", "b", "c"]);
}
