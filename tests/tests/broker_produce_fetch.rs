//! Scenario tests of the broker's data path in virtual time: topics, produce (acks 0/1/-1,
//! idempotence), fetch (long poll, sessions, budgets), list offsets.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::codec::{ApiKey, ErrorCode, KStr, RecordSet};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, ms, record_values, test_config};

fn batch(values: &[&str], producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None);
    if let Some((id, epoch, seq)) = producer {
        b = b.producer(id, epoch, seq);
    }
    for v in values {
        b.append(1_700_000_000_000, Some(b"k"), Some(v.as_bytes()), &[]).expect("builds");
    }
    b.build().expect("builds")
}

fn create(h: &mut Harness, conn: kelp_core::ConnId, name: &str, partitions: i32) {
    let req = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = expect_body!(h.call(conn, RequestBody::CreateTopics(req), 7), CreateTopics);
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
}

fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        acks,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn fetch_req(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> RequestBody {
    RequestBody::Fetch(FetchRequest {
        replica_id: -1,
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                current_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[test]
fn produced_records_are_fetched_back_with_their_offsets() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create(&mut h, c, "orders", 2);
    let resp = expect_body!(h.call(c, produce_req("orders", 1, batch(&["a", "b", "c"], None), -1), 11), Produce);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset, p.log_start_offset), (0, 0, 0));
    let resp = expect_body!(h.call(c, produce_req("orders", 1, batch(&["d"], None), 1), 11), Produce);
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 3);

    let resp = expect_body!(h.call(c, fetch_req("orders", 1, 0, 0), 12), Fetch);
    let pd = &resp.responses[0].partitions[0];
    assert_eq!((pd.error_code, pd.high_watermark, pd.log_start_offset), (0, 4, 0));
    let got = record_values(pd.records.as_ref().expect("records"));
    assert_eq!(got, vec![(0, "a".into()), (1, "b".into()), (2, "c".into()), (3, "d".into())]);

    let resp = expect_body!(h.call(c, fetch_req("orders", 1, 4, 0), 12), Fetch);
    assert_eq!(
        resp.responses[0].partitions[0].records,
        Some(RecordSet::new()),
        "no data: an empty record set, never null"
    );
    let resp = expect_body!(h.call(c, fetch_req("orders", 1, 5, 0), 12), Fetch);
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::OFFSET_OUT_OF_RANGE.0);
}

#[test]
fn a_long_poll_is_woken_by_an_append_and_expires_otherwise() {
    let mut h = Harness::new(test_config());
    let (c, p) = (h.connect(), h.connect());
    create(&mut h, c, "t", 1);
    let corr = h.send(c, &fetch_req("t", 0, 0, 500), 12);
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none(), "nothing to return yet: the fetch waits");
    h.advance(ms(100));
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none());
    expect_body!(h.call(p, produce_req("t", 0, batch(&["x"], None), -1), 11), Produce);
    let (got, resp) = h.recv(c, ApiKey::FETCH, 12).expect("woken by the append");
    assert_eq!(got, corr);
    let resp = expect_body!(resp, Fetch);
    assert_eq!(
        record_values(resp.responses[0].partitions[0].records.as_ref().expect("records")),
        vec![(0, "x".into())]
    );

    h.send(c, &fetch_req("t", 0, 1, 500), 12);
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
    create(&mut h, c, "idem", 1);
    let first = batch(&["a", "b"], Some((7, 0, 0)));
    let r1 = expect_body!(h.call(c, produce_req("idem", 0, first.clone(), -1), 11), Produce);
    assert_eq!(r1.responses[0].partition_responses[0].base_offset, 0);
    let r2 = expect_body!(h.call(c, produce_req("idem", 0, batch(&["c"], Some((7, 0, 2))), -1), 11), Produce);
    assert_eq!(r2.responses[0].partition_responses[0].base_offset, 2);
    let retry = expect_body!(h.call(c, produce_req("idem", 0, first, -1), 11), Produce);
    assert_eq!(retry.responses[0].partition_responses[0].base_offset, 0, "a retry gets its original offset");
    let gap = expect_body!(h.call(c, produce_req("idem", 0, batch(&["e"], Some((7, 0, 5))), -1), 11), Produce);
    assert_eq!(gap.responses[0].partition_responses[0].error_code, ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.0);
    let resp = expect_body!(h.call(c, fetch_req("idem", 0, 0, 0), 12), Fetch);
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
    create(&mut h, c, "lo", 1);
    for v in ["a", "b", "c"] {
        expect_body!(h.call(c, produce_req("lo", 0, batch(&[v], None), -1), 11), Produce);
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
    create(&mut h, c, "fire", 1);
    h.send(c, &produce_req("fire", 0, batch(&["a"], None), 0), 11);
    assert_eq!(h.pending_bytes(c), 0, "acks=0 gets no response");
    let resp = expect_body!(h.call(c, fetch_req("fire", 0, 0, 0), 12), Fetch);
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
}

#[test]
fn fetched_records_are_sent_from_the_stores_memory_without_a_copy() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create(&mut h, c, "zc", 1);
    let big = "x".repeat(2000);
    for _ in 0..3 {
        expect_body!(h.call(c, produce_req("zc", 0, batch(&[big.as_str()], None), -1), 11), Produce);
    }
    // What the store holds for the partition: three batches, each its own buffer.
    let topic_id = expect_body!(
        h.call(
            c,
            RequestBody::Metadata(kelp_core::codec::generated::metadata::MetadataRequest {
                topics: None,
                ..Default::default()
            }),
            12
        ),
        Metadata
    )
    .topics[0]
        .topic_id;
    let key = kelp_core::io::PartitionKey { topic_id, partition: 0 };
    let stored =
        match h.store.execute(kelp_core::Command::Read { partition: key, offset: 0, end: 3, max_bytes: 1 << 20 }) {
            kelp_core::Completion::Read { batches } => batches,
            other => panic!("read failed: {other:?}"),
        };
    assert_eq!(stored.len(), 3);
    h.sent_chunks.clear();
    let resp = expect_body!(h.call(c, fetch_req("zc", 0, 0, 0), 12), Fetch);
    assert_eq!(record_values(resp.responses[0].partitions[0].records.as_ref().expect("records")).len(), 3);
    for batch in &stored {
        assert!(
            h.sent_chunks.iter().any(|chunk| chunk.as_ptr() == batch.as_ptr() && chunk.len() == batch.len()),
            "a stored batch was copied instead of sent as it is"
        );
    }
}
