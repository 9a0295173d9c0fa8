//! Scenario tests of the read path: Fetch (long polls, byte budgets, offsets out of range,
//! topic ids, KIP-227 fetch sessions, read_committed) and ListOffsets, as Kafka consumers
//! rely on them.

use bytes::Bytes;
use kelp_core::ConnId;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::delete_records::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic};
use kelp_core::codec::generated::fetch::{
    FetchPartition, FetchRequest, FetchResponse, FetchTopic, ForgottenTopic, PartitionData,
};
use kelp_core::codec::generated::list_offsets::{
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsTopic,
};
use kelp_core::codec::{ApiKey, ErrorCode, RecordSet, Uuid};
use kelp_core::records::{Batches, Compression, RecordBatchBuilder};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, START_WALL_MS, batch, create_topic, fetch_request, ms, produce_request, record_values, test_config,
};

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;

fn produce(h: &mut Harness, c: ConnId, topic: &str, partition: i32, records: Bytes) -> i64 {
    let resp = expect_body!(h.call(c, produce_request(topic, partition, records, -1), 11), Produce);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

/// A fetch of `parts` (partition, offset, partition_max_bytes) of one topic.
fn fetch_parts(topic: &str, parts: &[(i32, i64, i32)], max_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: parts
                .iter()
                .map(|(partition, fetch_offset, partition_max_bytes)| FetchPartition {
                    partition: *partition,
                    fetch_offset: *fetch_offset,
                    partition_max_bytes: *partition_max_bytes,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn call_fetch(h: &mut Harness, c: ConnId, req: FetchRequest) -> FetchResponse {
    expect_body!(h.call(c, RequestBody::Fetch(req), 12), Fetch)
}

/// The partitions of a response, by (partition index -> data), in order.
fn parts(resp: &FetchResponse) -> Vec<&PartitionData> {
    resp.responses.iter().flat_map(|t| t.partitions.iter()).collect()
}

/// No records in a partition's answer (Kafka sends an empty record set).
fn no_records(p: &PartitionData) -> bool {
    p.records.as_ref().is_none_or(RecordSet::is_empty)
}

fn batch_count(p: &PartitionData) -> usize {
    p.records.as_ref().map_or(0, |r| Batches::new(r.to_bytes()).count())
}

fn list_offsets(h: &mut Harness, c: ConnId, topic: &str, timestamp: i64, epoch: i32) -> ListOffsetsPartitionResponse {
    let req = ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                timestamp,
                current_leader_epoch: epoch,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::ListOffsets(req), 8), ListOffsets).topics[0].partitions[0].clone()
}

fn delete_records(h: &mut Harness, c: ConnId, topic: &str, offset: i64) {
    let req = DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: topic.into(),
            partitions: vec![DeleteRecordsPartition { partition_index: 0, offset, ..Default::default() }],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = expect_body!(h.call(c, RequestBody::DeleteRecords(req), 2), DeleteRecords);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
}

// ---- long polls ----------------------------------------------------------------------------

#[test]
fn a_long_poll_on_several_partitions_is_woken_by_any_of_them() {
    let mut h = Harness::new(test_config());
    let (c, p) = (h.connect(), h.connect());
    create_topic(&mut h, c, "wait", 2);
    let corr =
        h.send(c, &RequestBody::Fetch(fetch_parts("wait", &[(0, 0, 1 << 20), (1, 0, 1 << 20)], 1 << 20, 5000)), 12);
    h.advance(ms(4000));
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none(), "no data: the fetch waits its max_wait_ms");
    produce(&mut h, p, "wait", 1, batch(&["late"]));
    let (got, resp) = h.recv(c, ApiKey::FETCH, 12).expect("woken by the append");
    assert_eq!(got, corr);
    let resp = expect_body!(resp, Fetch);
    let ps = parts(&resp);
    assert_eq!((ps[0].partition_index, ps[0].high_watermark, no_records(ps[0])), (0, 0, true));
    assert_eq!(ps[1].high_watermark, 1);
    assert_eq!(record_values(ps[1].records.as_ref().expect("data")), vec![(0, "late".into())]);
    // Nothing fires later for the answered fetch.
    h.advance(ms(5000));
    assert_eq!(h.pending_bytes(c), 0);
}

#[test]
fn a_fetch_that_waits_zero_or_wants_no_bytes_answers_at_once() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "now", 1);
    let resp = call_fetch(&mut h, c, fetch_parts("now", &[(0, 0, 1 << 20)], 1 << 20, 0));
    assert!(no_records(parts(&resp)[0]));
    let resp =
        call_fetch(&mut h, c, FetchRequest { min_bytes: 0, ..fetch_parts("now", &[(0, 0, 1 << 20)], 1 << 20, 5000) });
    assert_eq!((parts(&resp)[0].error_code, parts(&resp)[0].high_watermark), (0, 0));
}

// ---- byte budgets --------------------------------------------------------------------------

/// Partition 0: three small batches; partition 1: one big batch; partition 2: one small.
fn budget_topic(h: &mut Harness, c: ConnId) -> (usize, usize) {
    create_topic(h, c, "budget", 3);
    let small = "s".repeat(40);
    let big = "B".repeat(400);
    let s0 = batch(&[&small]).len();
    let s1 = batch(&[&big]).len();
    for _ in 0..3 {
        produce(h, c, "budget", 0, batch(&[&small]));
    }
    produce(h, c, "budget", 1, batch(&[&big]));
    produce(h, c, "budget", 2, batch(&["tiny"]));
    assert!(3 * s0 < s1, "the big batch outweighs the small ones: {s0} {s1}");
    (s0, s1)
}

#[test]
fn the_first_batch_with_data_is_returned_even_beyond_both_limits() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let (_, s1) = budget_topic(&mut h, c);
    let resp = call_fetch(&mut h, c, fetch_parts("budget", &[(1, 0, 100)], 100, 0));
    let p = parts(&resp)[0];
    assert_eq!(p.records.as_ref().map(RecordSet::len), Some(s1), "a consumer can always make progress");
}

#[test]
fn each_partition_returns_whole_batches_up_to_its_limit() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let (s0, _) = budget_topic(&mut h, c);
    let limit = i32::try_from(2 * s0 + 10).expect("small");
    let resp = call_fetch(&mut h, c, fetch_parts("budget", &[(0, 0, limit)], 1 << 20, 0));
    assert_eq!(batch_count(parts(&resp)[0]), 2);
    // Once a partition has returned data, no later one goes beyond its own limit: partition
    // 1's only batch is larger, so it returns nothing this time; partition 2's fits.
    let resp = call_fetch(&mut h, c, fetch_parts("budget", &[(0, 0, limit), (1, 0, limit), (2, 0, limit)], 1 << 20, 0));
    let ps = parts(&resp);
    assert_eq!((batch_count(ps[0]), batch_count(ps[1]), batch_count(ps[2])), (2, 0, 1));
    assert_eq!(ps[1].high_watermark, 1, "the partition is still reported");
}

#[test]
fn the_response_returns_whole_batches_up_to_max_bytes() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let (s0, s1) = budget_topic(&mut h, c);
    let max = i32::try_from(s1 + s0 + 10).expect("small");
    let resp =
        call_fetch(&mut h, c, fetch_parts("budget", &[(1, 0, 1 << 20), (0, 0, 1 << 20), (2, 0, 1 << 20)], max, 0));
    let ps = parts(&resp);
    assert_eq!(batch_count(ps[0]), 1);
    assert_eq!(batch_count(ps[1]), 1, "partition 0 returns the one batch that still fits");
    assert_eq!(batch_count(ps[2]), 0, "nothing is left for partition 2");
    let total: usize = ps.iter().filter_map(|p| p.records.as_ref()).map(RecordSet::len).sum();
    assert!(total <= usize::try_from(max).expect("positive"));
}

// ---- offsets and ids -----------------------------------------------------------------------

#[test]
fn offsets_below_the_log_start_or_beyond_the_log_end_are_out_of_range() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "range", 1);
    for v in ["a", "b", "c", "d", "e"] {
        produce(&mut h, c, "range", 0, batch(&[v]));
    }
    delete_records(&mut h, c, "range", 3);
    let fetch = |h: &mut Harness, offset| {
        let resp = expect_body!(h.call(c, fetch_request("range", 0, offset, 0), 12), Fetch);
        resp.responses[0].partitions[0].clone()
    };
    for offset in [0, 2, 6] {
        let p = fetch(&mut h, offset);
        assert_eq!(p.error_code, ErrorCode::OFFSET_OUT_OF_RANGE.0, "offset {offset}");
        assert!(no_records(&p));
    }
    let p = fetch(&mut h, 3);
    assert_eq!((p.error_code, p.log_start_offset, p.high_watermark), (0, 3, 5));
    assert_eq!(record_values(p.records.as_ref().expect("data")), vec![(3, "d".into()), (4, "e".into())]);
    let p = fetch(&mut h, 5);
    assert_eq!((p.error_code, no_records(&p)), (0, true), "the log end is a valid position");
}

#[test]
fn fetch_checks_topics_partitions_ids_and_leader_epochs() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = create_topic(&mut h, c, "known", 1);
    produce(&mut h, c, "known", 0, batch(&["a"]));
    let code = |resp: &FetchResponse| parts(resp)[0].error_code;
    let resp = call_fetch(&mut h, c, fetch_parts("unknown", &[(0, 0, 1000)], 1000, 0));
    assert_eq!(code(&resp), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    let resp = call_fetch(&mut h, c, fetch_parts("known", &[(3, 0, 1000)], 1000, 0));
    assert_eq!(code(&resp), ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    let mut newer = fetch_parts("known", &[(0, 0, 1000)], 1000, 0);
    newer.topics[0].partitions[0].current_leader_epoch = 1;
    assert_eq!(code(&call_fetch(&mut h, c, newer)), ErrorCode::UNKNOWN_LEADER_EPOCH.0);
    let mut current = fetch_parts("known", &[(0, 0, 1000)], 1000, 0);
    current.topics[0].partitions[0].current_leader_epoch = 0;
    assert_eq!(code(&call_fetch(&mut h, c, current)), 0);
    // v13+ name topics by id.
    let by_id = |topic_id: Uuid| {
        let mut req = fetch_parts("", &[(0, 0, 1000)], 1000, 0);
        req.topics[0].topic_id = topic_id;
        RequestBody::Fetch(req)
    };
    let resp = expect_body!(h.call(c, by_id(id), 13), Fetch);
    assert_eq!(resp.responses[0].topic_id, id);
    assert_eq!(record_values(parts(&resp)[0].records.as_ref().expect("data")), vec![(0, "a".into())]);
    let unknown = Uuid::from_u64_pair(7, 7);
    let resp = expect_body!(h.call(c, by_id(unknown), 13), Fetch);
    assert_eq!(resp.responses[0].topic_id, unknown);
    assert_eq!(code(&resp), ErrorCode::UNKNOWN_TOPIC_ID.0);
}

#[test]
fn read_committed_sees_no_aborted_transactions_and_lso_at_the_high_watermark() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "committed", 1);
    produce(&mut h, c, "committed", 0, batch(&["a", "b"]));
    let req = FetchRequest { isolation_level: 1, ..fetch_parts("committed", &[(0, 0, 1 << 20)], 1 << 20, 0) };
    let resp = call_fetch(&mut h, c, req);
    let p = parts(&resp)[0];
    assert_eq!(p.aborted_transactions, Some(Vec::new()));
    assert_eq!((p.high_watermark, p.last_stable_offset), (2, 2));
    assert_eq!(record_values(p.records.as_ref().expect("data")).len(), 2);
    let resp = call_fetch(&mut h, c, fetch_parts("committed", &[(0, 0, 1 << 20)], 1 << 20, 0));
    assert_eq!(parts(&resp)[0].aborted_transactions, None, "read_uncommitted: null");
}

// ---- fetch sessions (KIP-227) --------------------------------------------------------------

fn session_fetch(
    session_id: i32,
    epoch: i32,
    parts: &[(i32, i64)],
    forgotten: &[i32],
    max_wait_ms: i32,
) -> FetchRequest {
    let mut req =
        fetch_parts("sess", &parts.iter().map(|(p, o)| (*p, *o, 1 << 20)).collect::<Vec<_>>(), 1 << 20, max_wait_ms);
    if parts.is_empty() {
        req.topics.clear();
    }
    req.session_id = session_id;
    req.session_epoch = epoch;
    if !forgotten.is_empty() {
        req.forgotten_topics_data =
            vec![ForgottenTopic { topic: "sess".into(), partitions: forgotten.to_vec(), ..Default::default() }];
    }
    req
}

/// (partition, high watermark, record count) of every partition in a response.
fn summary(resp: &FetchResponse) -> Vec<(i32, i64, usize)> {
    parts(resp)
        .iter()
        .map(|p| (p.partition_index, p.high_watermark, p.records.as_ref().map_or(0, |r| record_values(r).len())))
        .collect()
}

/// A session over partitions 0 and 1 of "sess"; partition 0 holds one record.
fn open_session(h: &mut Harness, c: ConnId) -> i32 {
    create_topic(h, c, "sess", 2);
    produce(h, c, "sess", 0, batch(&["a"]));
    let resp = call_fetch(h, c, session_fetch(0, 0, &[(0, 0), (1, 0)], &[], 0));
    assert_eq!(resp.error_code, 0);
    assert_ne!(resp.session_id, 0, "epoch 0 creates a session");
    assert_eq!(summary(&resp), vec![(0, 1, 1), (1, 0, 0)], "the first response is full");
    resp.session_id
}

#[test]
fn an_incremental_fetch_returns_only_partitions_that_changed() {
    let mut h = Harness::new(test_config());
    let (c, p) = (h.connect(), h.connect());
    let id = open_session(&mut h, c);
    // The consumer moved on in partition 0; nothing changed anywhere.
    let resp = call_fetch(&mut h, c, session_fetch(id, 1, &[(0, 1)], &[], 0));
    assert_eq!((resp.error_code, resp.session_id), (0, id));
    assert!(summary(&resp).is_empty(), "{:?}", summary(&resp));
    // New data in partition 1 only: a long poll on the session wakes for it.
    let corr = h.send(c, &RequestBody::Fetch(session_fetch(id, 2, &[], &[], 5000)), 12);
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none());
    produce(&mut h, p, "sess", 1, batch(&["b"]));
    let (got, resp) = h.recv(c, ApiKey::FETCH, 12).expect("woken");
    assert_eq!(got, corr);
    assert_eq!(summary(&expect_body!(resp, Fetch)), vec![(1, 1, 1)]);
    // A partition whose log start moved is reported even without records.
    delete_records(&mut h, p, "sess", 1);
    let resp = call_fetch(&mut h, c, session_fetch(id, 3, &[(1, 1)], &[], 0));
    let ps = parts(&resp);
    assert_eq!(ps.len(), 1);
    assert_eq!((ps[0].partition_index, ps[0].log_start_offset, no_records(ps[0])), (0, 1, true));
}

#[test]
fn session_errors_wrong_epoch_and_unknown_id() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = open_session(&mut h, c);
    for epoch in [2, 5, -7] {
        let resp = call_fetch(&mut h, c, session_fetch(id, epoch, &[], &[], 0));
        assert_eq!(resp.error_code, ErrorCode::INVALID_FETCH_SESSION_EPOCH.0, "epoch {epoch}");
        assert_eq!(resp.session_id, 0);
        assert!(resp.responses.is_empty());
    }
    let resp = call_fetch(&mut h, c, session_fetch(id, 1, &[], &[], 0));
    assert_eq!((resp.error_code, resp.session_id), (0, id), "errors do not use up the epoch");
    let resp = call_fetch(&mut h, c, session_fetch(id.wrapping_add(1), 1, &[], &[], 0));
    assert_eq!(resp.error_code, ErrorCode::FETCH_SESSION_ID_NOT_FOUND.0);
    assert!(resp.responses.is_empty());
}

#[test]
fn forgotten_partitions_leave_the_session() {
    let mut h = Harness::new(test_config());
    let (c, p) = (h.connect(), h.connect());
    let id = open_session(&mut h, c);
    let resp = call_fetch(&mut h, c, session_fetch(id, 1, &[(0, 1)], &[1], 0));
    assert_eq!(resp.error_code, 0);
    // Data in the forgotten partition neither wakes nor shows up.
    let corr = h.send(c, &RequestBody::Fetch(session_fetch(id, 2, &[], &[], 1000)), 12);
    produce(&mut h, p, "sess", 1, batch(&["ignored"]));
    assert!(h.recv(c, ApiKey::FETCH, 12).is_none(), "not woken by a partition it forgot");
    produce(&mut h, p, "sess", 0, batch(&["seen"]));
    let (got, resp) = h.recv(c, ApiKey::FETCH, 12).expect("woken by partition 0");
    assert_eq!(got, corr);
    assert_eq!(summary(&expect_body!(resp, Fetch)), vec![(0, 2, 1)]);
}

#[test]
fn a_final_epoch_closes_the_session() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = open_session(&mut h, c);
    let resp = call_fetch(&mut h, c, session_fetch(id, -1, &[(0, 0)], &[], 0));
    assert_eq!((resp.error_code, resp.session_id), (0, 0), "answered sessionless");
    assert_eq!(summary(&resp), vec![(0, 1, 1)]);
    let resp = call_fetch(&mut h, c, session_fetch(id, 1, &[], &[], 0));
    assert_eq!(resp.error_code, ErrorCode::FETCH_SESSION_ID_NOT_FOUND.0);
}

/// The Java consumer's answer to a session error is a full fetch that names its old session
/// with epoch 0 (`FetchMetadata.nextCloseExisting`): Kafka closes that session and opens a
/// new one.
#[test]
fn a_full_fetch_naming_an_existing_session_replaces_it() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let id = open_session(&mut h, c);
    let resp = call_fetch(&mut h, c, session_fetch(id, 7, &[], &[], 0));
    assert_eq!(resp.error_code, ErrorCode::INVALID_FETCH_SESSION_EPOCH.0);
    let resp = call_fetch(&mut h, c, session_fetch(id, 0, &[(0, 0), (1, 0)], &[], 0));
    assert_eq!(resp.error_code, 0, "the consumer recovers");
    assert_ne!(resp.session_id, 0);
    assert_ne!(resp.session_id, id);
    assert_eq!(summary(&resp), vec![(0, 1, 1), (1, 0, 0)], "a full response");
    let fresh = resp.session_id;
    assert_eq!(call_fetch(&mut h, c, session_fetch(fresh, 1, &[], &[], 0)).error_code, 0);
    assert_eq!(
        call_fetch(&mut h, c, session_fetch(id, 1, &[], &[], 0)).error_code,
        ErrorCode::FETCH_SESSION_ID_NOT_FOUND.0
    );
}

// ---- ListOffsets ---------------------------------------------------------------------------

#[test]
fn list_offsets_answers_earliest_latest_max_timestamp_and_by_timestamp() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "times", 1);
    let empty = list_offsets(&mut h, c, "times", MAX_TIMESTAMP, -1);
    assert_eq!((empty.error_code, empty.offset, empty.timestamp), (0, -1, -1), "an empty log has no max");
    // Offsets 0..=2 with timestamps +10, +30, +20 in one batch; offset 3 at +15.
    let mut b = RecordBatchBuilder::new(Compression::None);
    for dt in [10, 30, 20] {
        b.append(START_WALL_MS + dt, None, Some(b"v"), &[]).expect("builds");
    }
    produce(&mut h, c, "times", 0, b.build().expect("builds"));
    let mut b = RecordBatchBuilder::new(Compression::None);
    b.append(START_WALL_MS + 15, None, Some(b"w"), &[]).expect("builds");
    produce(&mut h, c, "times", 0, b.build().expect("builds"));

    let at = |h: &mut Harness, ts| {
        let r = list_offsets(h, c, "times", ts, -1);
        assert_eq!(r.error_code, 0);
        (r.offset, r.timestamp)
    };
    assert_eq!(at(&mut h, EARLIEST), (0, -1));
    assert_eq!(at(&mut h, LATEST), (4, -1));
    assert_eq!(at(&mut h, MAX_TIMESTAMP), (1, START_WALL_MS + 30), "the record that has the largest timestamp");
    assert_eq!(at(&mut h, START_WALL_MS), (0, START_WALL_MS + 10));
    assert_eq!(at(&mut h, START_WALL_MS + 12), (1, START_WALL_MS + 30), "the first offset at or after it");
    assert_eq!(at(&mut h, START_WALL_MS + 31), (-1, -1));

    delete_records(&mut h, c, "times", 2);
    assert_eq!(at(&mut h, EARLIEST), (2, -1), "earliest follows the log start");
    assert_eq!(at(&mut h, START_WALL_MS + 12), (2, START_WALL_MS + 20), "deleted records are not found");
    assert_eq!(at(&mut h, LATEST), (4, -1));
}

#[test]
fn list_offsets_checks_the_partition_and_the_leader_epoch() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "checked", 1);
    assert_eq!(list_offsets(&mut h, c, "nowhere", LATEST, -1).error_code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    assert_eq!(list_offsets(&mut h, c, "checked", LATEST, 1).error_code, ErrorCode::UNKNOWN_LEADER_EPOCH.0);
    let ok = list_offsets(&mut h, c, "checked", LATEST, 0);
    assert_eq!((ok.error_code, ok.offset, ok.leader_epoch), (0, 0, 0));
}

// ---- how many fetches a backlog takes --------------------------------------------------------

/// A consumer reading a backlog gets as much per Fetch as its partition budget allows, so the
/// number of round trips it needs for N records is the fewest whole batches allow. This is the
/// property behind the group-consume comparison in docs/BENCHMARKS.md: kelp answers a 1 MiB
/// budget with close to 1 MiB every time, and a change that answered with less (one batch per
/// Fetch, or a fixed small chunk) would multiply the fetches a client makes for the same records.
#[test]
fn a_backlog_is_read_in_as_few_fetches_as_the_partition_budget_allows() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "backlog", 1);
    let value = "v".repeat(100);
    let values: Vec<&str> = vec![value.as_str(); 100];
    let mut sizes = Vec::new();
    for _ in 0..200 {
        let b = batch(&values);
        sizes.push(b.len());
        produce(&mut h, c, "backlog", 0, b);
    }
    let end = 200 * 100;
    let limit: usize = 256 * 1024;
    // The fewest fetches whole batches allow: each takes batches while they fit the budget.
    let mut fewest = 0;
    let mut i = 0;
    while i < sizes.len() {
        let mut used = sizes[i];
        i += 1;
        while i < sizes.len() && used + sizes[i] <= limit {
            used += sizes[i];
            i += 1;
        }
        fewest += 1;
    }
    let (mut offset, mut fetches) = (0_i64, 0);
    let largest = sizes.iter().copied().max().unwrap_or(0);
    while offset < end {
        let budget = i32::try_from(limit).expect("small");
        let resp = call_fetch(&mut h, c, fetch_parts("backlog", &[(0, offset, budget)], 50 << 20, 0));
        let p = parts(&resp)[0];
        let got = p.records.as_ref().map_or(0, RecordSet::len);
        let values = record_values(p.records.as_ref().expect("records"));
        let last = values.last().expect("at least one record").0;
        assert_eq!(values[0].0, offset);
        offset = last + 1;
        fetches += 1;
        assert!(got <= limit, "a response stays within its budget: {got}");
        if offset < end {
            assert!(got + largest > limit, "a response short of its budget with more to read: {got} of {limit}");
        }
    }
    assert_eq!(fetches, fewest, "fetches for {end} records of 100 B at a {limit} B budget");
}
