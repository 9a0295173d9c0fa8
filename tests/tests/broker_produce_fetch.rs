//! Scenario tests of the broker's data path in virtual time: topics, produce (acks 0/1/-1,
//! idempotence), fetch (long poll, sessions, budgets), list offsets.

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kelp_core::codec::{ApiKey, ErrorCode, KStr, RecordSet};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, batch, create_topic, fetch_request, idempotent_batch, ms, produce_request, record_values, test_config,
};

#[test]
fn produced_records_are_fetched_back_with_their_offsets() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "orders", 2);
    let resp = expect_body!(h.call(c, produce_request("orders", 1, batch(&["a", "b", "c"]), -1), 11), Produce);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset, p.log_start_offset), (0, 0, 0));
    let resp = expect_body!(h.call(c, produce_request("orders", 1, batch(&["d"]), 1), 11), Produce);
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 3);

    let resp = expect_body!(h.call(c, fetch_request("orders", 1, 0, 0), 12), Fetch);
    let pd = &resp.responses[0].partitions[0];
    assert_eq!((pd.error_code, pd.high_watermark, pd.log_start_offset), (0, 4, 0));
    let got = record_values(pd.records.as_ref().expect("records"));
    assert_eq!(got, vec![(0, "a".into()), (1, "b".into()), (2, "c".into()), (3, "d".into())]);

    let resp = expect_body!(h.call(c, fetch_request("orders", 1, 4, 0), 12), Fetch);
    assert_eq!(
        resp.responses[0].partitions[0].records,
        Some(RecordSet::new()),
        "no data: an empty record set, never null"
    );
    let resp = expect_body!(h.call(c, fetch_request("orders", 1, 5, 0), 12), Fetch);
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::OFFSET_OUT_OF_RANGE.0);
}

#[test]
fn a_long_poll_is_woken_by_an_append_and_expires_otherwise() {
    let mut h = Harness::new(test_config());
    let (c, p) = (h.connect(), h.connect());
    create_topic(&mut h, c, "t", 1);
    let corr = h.send(c, &fetch_request("t", 0, 0, 500), 12);
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none(), "nothing to return yet: the fetch waits");
    h.advance(ms(100));
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none());
    expect_body!(h.call(p, produce_request("t", 0, batch(&["x"]), -1), 11), Produce);
    let (got, resp) = h.recv(c, ApiKey::FETCH, 12).expect("woken by the append");
    assert_eq!(got, corr);
    let resp = expect_body!(resp, Fetch);
    assert_eq!(
        record_values(resp.responses[0].partitions[0].records.as_ref().expect("records")),
        vec![(0, "x".into())]
    );

    h.send(c, &fetch_request("t", 0, 1, 500), 12);
    h.advance(ms(499));
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none());
    h.advance(ms(1));
    let resp = expect_body!(h.recv(c, ApiKey::FETCH, 12).expect("expired").1, Fetch);
    assert_eq!(resp.responses[0].partitions[0].records, Some(RecordSet::new()));
}

#[test]
fn idempotent_retries_get_their_original_offsets_and_gaps_are_refused() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "idem", 1);
    let first = idempotent_batch(&["a", "b"], 7, 0, 0);
    let r1 = expect_body!(h.call(c, produce_request("idem", 0, first.clone(), -1), 11), Produce);
    assert_eq!(r1.responses[0].partition_responses[0].base_offset, 0);
    let r2 = expect_body!(h.call(c, produce_request("idem", 0, idempotent_batch(&["c"], 7, 0, 2), -1), 11), Produce);
    assert_eq!(r2.responses[0].partition_responses[0].base_offset, 2);
    let retry = expect_body!(h.call(c, produce_request("idem", 0, first, -1), 11), Produce);
    assert_eq!(retry.responses[0].partition_responses[0].base_offset, 0, "a retry gets its original offset");
    let gap = expect_body!(h.call(c, produce_request("idem", 0, idempotent_batch(&["e"], 7, 0, 5), -1), 11), Produce);
    assert_eq!(gap.responses[0].partition_responses[0].error_code, ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.0);
    let resp = expect_body!(h.call(c, fetch_request("idem", 0, 0, 0), 12), Fetch);
    assert_eq!(
        record_values(resp.responses[0].partitions[0].records.as_ref().expect("records")).len(),
        3,
        "no duplicate stored"
    );
}

#[test]
fn list_offsets_answers_earliest_latest_and_by_timestamp() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "lo", 1);
    for v in ["a", "b", "c"] {
        expect_body!(h.call(c, produce_request("lo", 0, batch(&[v]), -1), 11), Produce);
    }
    let ask = |ts: i64| {
        RequestBody::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: KStr::from("lo"),
                partitions: vec![ListOffsetsPartition {
                    partition_index: 0,
                    timestamp: ts,
                    current_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let off = |h: &mut Harness, ts| expect_body!(h.call(c, ask(ts), 8), ListOffsets).topics[0].partitions[0].offset;
    assert_eq!(off(&mut h, -2), 0);
    assert_eq!(off(&mut h, -1), 3);
    assert_eq!(off(&mut h, 1_700_000_000_000), 0);
    assert_eq!(off(&mut h, 1_800_000_000_000), -1);
}

#[test]
fn acks_zero_answers_nothing_but_keeps_the_data() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "fire", 1);
    h.send(c, &produce_request("fire", 0, batch(&["a"]), 0), 11);
    assert_eq!(h.pending_bytes(c), 0, "acks=0 gets no response");
    let resp = expect_body!(h.call(c, fetch_request("fire", 0, 0, 0), 12), Fetch);
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
}

#[test]
fn fetched_records_are_sent_from_the_stores_memory_without_a_copy() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let topic_id = create_topic(&mut h, c, "zc", 1);
    let big = "x".repeat(2000);
    for _ in 0..3 {
        expect_body!(h.call(c, produce_request("zc", 0, batch(&[big.as_str()]), -1), 11), Produce);
    }
    // What the store holds for the partition: three batches, each as its rewritten header
    // beside the records as they arrived in the request (neither copied again on the way out).
    let key = kelp_core::io::PartitionKey { topic_id, partition: 0 };
    let stored =
        match h.store.execute(kelp_core::Command::Read { partition: key, offset: 0, end: 3, max_bytes: 1 << 20 }) {
            kelp_core::Completion::Read { batches } => batches,
            other => panic!("read failed: {other:?}"),
        };
    assert_eq!(stored.len(), 6);
    h.sent_chunks.clear();
    let resp = expect_body!(h.call(c, fetch_request("zc", 0, 0, 0), 12), Fetch);
    assert_eq!(record_values(resp.responses[0].partitions[0].records.as_ref().expect("records")).len(), 3);
    // The 61-byte headers are copied into the response (below `ZERO_COPY_MIN`, a chunk of
    // its own costs more than the copy); the records go out as they are stored.
    for batch in stored.iter().filter(|b| b.len() >= kelp_core::codec::ZERO_COPY_MIN) {
        assert!(
            h.sent_chunks.iter().any(|chunk| chunk.as_ptr() == batch.as_ptr() && chunk.len() == batch.len()),
            "a stored batch was copied instead of sent as it is"
        );
    }
    assert_eq!(stored.iter().filter(|b| b.len() >= kelp_core::codec::ZERO_COPY_MIN).count(), 3);
}
