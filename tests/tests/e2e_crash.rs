//! Crash tests on the disk store: kelp is killed with SIGKILL while a client produces with
//! acks=-1 under `--fsync always`, at 20 different points. After each restart every
//! acknowledged record is there at its acknowledged offset, no record appears twice or out of
//! order, new appends continue after the last stored record, and an idempotent producer's
//! retry of its last acknowledged batch gets the original offset back (its state survived), a
//! sequence gap is refused with OUT_OF_ORDER_SEQUENCE_NUMBER and the next sequence is accepted.
//! The producer also commits consumer-group offsets as it goes: after each restart the group's
//! committed offset is the last acknowledged commit (or a later one that was in flight).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use kelp_core::codec::generated::init_producer_id::InitProducerIdRequest;
use kelp_core::codec::generated::offset_commit::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kelp_core::codec::generated::offset_fetch::{OffsetFetchRequest, OffsetFetchRequestTopic};
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::records::{Batches, Compression, RecordBatchBuilder};
use kelp_tests::expect_body;
use kelp_tests::raw::RawClient;
use kelp_tests::server::KelpServer;

const TOPIC: &str = "crash";
const GROUP: &str = "crash-group";
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// The group's commits: (largest offset ever sent, last offset acknowledged).
type Commits = Arc<Mutex<(i64, i64)>>;

fn commit(offset: i64) -> RequestBody {
    RequestBody::OffsetCommit(OffsetCommitRequest {
        group_id: GROUP.into(),
        generation_id_or_member_epoch: -1,
        member_id: "".into(),
        topics: vec![OffsetCommitRequestTopic {
            name: TOPIC.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                committed_leader_epoch: -1,
                committed_metadata: Some("crash".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn committed(c: &mut RawClient) -> i64 {
    let req = RequestBody::OffsetFetch(OffsetFetchRequest {
        group_id: GROUP.into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: TOPIC.into(),
            partition_indexes: vec![0],
            ..Default::default()
        }]),
        ..Default::default()
    });
    let resp = expect_body!(c.call(req, 7).expect("offset fetch"), OffsetFetch);
    assert_eq!(resp.error_code, 0);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.committed_offset
}

/// An acknowledged batch: (value of its first record, record count, base offset, sequence).
type Acked = (u64, u64, i64, i32);

fn batch(producer_id: i64, seq: i32, first_value: u64, n: u64) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None).producer(producer_id, 0, seq);
    for v in first_value..first_value + n {
        b.append(1_700_000_000_000, Some(b"k"), Some(v.to_string().as_bytes()), &[]).expect("builds");
    }
    b.build().expect("builds")
}

fn produce(topic: &str, records: Bytes) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData { index: 0, records: Some(records), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Every (offset, value) stored in partition 0, read from the start.
fn read_all(c: &mut RawClient) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    loop {
        let next = out.last().map_or(0, |(o, _)| o + 1);
        let req = RequestBody::Fetch(FetchRequest {
            replica_id: -1,
            max_bytes: 1 << 20,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: TOPIC.into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: next,
                    partition_max_bytes: 1 << 20,
                    current_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let resp = expect_body!(c.call(req, 12).expect("fetch"), Fetch);
        let records = resp.responses[0].partitions[0].records.clone().unwrap_or_default().to_bytes();
        let before = out.len();
        for b in Batches::new(records) {
            let b = b.expect("whole, valid batches");
            b.validate().expect("CRC holds after recovery");
            for r in &b.records(1 << 20).expect("records") {
                let r = r.expect("record");
                if r.offset() >= next {
                    let v = std::str::from_utf8(r.value_slice().unwrap_or_default())
                        .expect("utf8")
                        .parse()
                        .expect("a number");
                    out.push((r.offset(), v));
                }
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

#[test]
fn acknowledged_records_survive_kill_9_at_twenty_points() {
    let dir = std::env::temp_dir().join(format!("kelp-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = KelpServer::start_on_disk(&dir, &["--fsync", "always", "--log-segment-bytes", "16384"]);
    let mut admin = RawClient::connect(server.addr).expect("connect");
    let create = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: TOPIC.into(),
            num_partitions: 1,
            replication_factor: 1,
            ..Default::default()
        }],
        ..Default::default()
    });
    expect_body!(admin.call(create, 7).expect("create"), CreateTopics);
    let init = RequestBody::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    });
    let producer_id = expect_body!(admin.call(init, 4).expect("init"), InitProducerId).producer_id;
    drop(admin);

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let commits: Commits = Arc::new(Mutex::new((-1, -1)));
    let mut next_value = 0u64;
    let mut next_seq = 0i32;
    for round in 0..20u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let (acked2, stop2, addr, commits2) = (acked.clone(), stop.clone(), server.addr, commits.clone());
        let (start_value, start_seq) = (next_value, next_seq);
        let writer = std::thread::spawn(move || {
            let Ok(mut c) = RawClient::connect(addr) else { return };
            let (mut v, mut seq) = (start_value, start_seq);
            while !stop2.load(Ordering::Acquire) {
                let n = 1 + (v % 7);
                let Ok(resp) = c.call(produce(TOPIC, batch(producer_id, seq, v, n)), 11) else { break };
                let p = &expect_body!(resp, Produce).responses[0].partition_responses[0];
                assert_eq!(p.error_code, 0, "produce failed before the crash");
                acked2.lock().expect("lock").push((v, n, p.base_offset, seq));
                v += n;
                seq += i32::try_from(n).expect("small");
                // Every few batches the group commits how far it got.
                if v % 3 == 0 {
                    let offset = p.base_offset + i64::try_from(n).expect("small");
                    commits2.lock().expect("lock").0 = offset;
                    let Ok(resp) = c.call(commit(offset), 7) else { break };
                    let r = expect_body!(resp, OffsetCommit);
                    assert_eq!(r.topics[0].partitions[0].error_code, 0, "commit failed before the crash");
                    commits2.lock().expect("lock").1 = offset;
                }
            }
        });
        // Kill at a different point each round.
        std::thread::sleep(Duration::from_millis(20 + round * 23 % 200));
        server.kill();
        stop.store(true, Ordering::Release);
        writer.join().expect("writer");
        server = KelpServer::start_on_disk(&dir, &["--fsync", "always", "--log-segment-bytes", "16384"]);
        let mut c = RawClient::connect(server.addr).expect("connect after restart");
        let stored = read_all(&mut c);
        // Offsets are 0..n with no gap or duplicate, values in the order they were produced.
        for (i, (off, _)) in stored.iter().enumerate() {
            assert_eq!(*off, i64::try_from(i).expect("small"), "round {round}: offsets must be contiguous");
        }
        let values: Vec<u64> = stored.iter().map(|(_, v)| *v).collect();
        let mut sorted = values.clone();
        sorted.dedup();
        assert_eq!(values, sorted, "round {round}: a record appears twice");
        assert!(values.windows(2).all(|w| w[0] < w[1]), "round {round}: records out of order");
        // Every acknowledged record is there, at its acknowledged offset.
        for &(first, n, base, _) in acked.lock().expect("lock").iter() {
            for k in 0..n {
                let off = usize::try_from(base).expect("offset") + usize::try_from(k).expect("small");
                assert_eq!(
                    stored.get(off).map(|s| s.1),
                    Some(first + k),
                    "round {round}: acked record {} lost",
                    first + k
                );
            }
        }
        // The idempotent producer's state survived: its last acked batch, sent again, is a
        // duplicate and gets its original offset.
        if let Some(&(first, n, base, seq)) = acked.lock().expect("lock").last() {
            let resp =
                expect_body!(c.call(produce(TOPIC, batch(producer_id, seq, first, n)), 11).expect("retry"), Produce);
            let p = &resp.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, base), "round {round}: retry after restart");
        }
        // A batch stored but not acknowledged before the kill still counts: the next round
        // continues after what is stored. Values equal sequence numbers by construction.
        next_value = stored.last().map_or(0, |(_, v)| v + 1);
        next_seq = i32::try_from(next_value).expect("small");
        if !stored.is_empty() {
            // A gap in the sequence is refused; the next sequence in order is taken.
            let gap = produce(TOPIC, batch(producer_id, next_seq + 3, next_value + 3, 1));
            let p = &expect_body!(c.call(gap, 11).expect("gap"), Produce).responses[0].partition_responses[0];
            assert_eq!(p.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER, "round {round}: a gap after restart");
            let next = produce(TOPIC, batch(producer_id, next_seq, next_value, 1));
            let p = &expect_body!(c.call(next, 11).expect("next"), Produce).responses[0].partition_responses[0];
            let end = i64::try_from(stored.len()).expect("small");
            assert_eq!((p.error_code, p.base_offset), (0, end), "round {round}: the next sequence after restart");
            acked.lock().expect("lock").push((next_value, 1, end, next_seq));
            next_value += 1;
            next_seq += 1;
        }
        // The group's committed offset is the last acknowledged commit, or a later one that was
        // sent before the kill.
        let (sent, acked_commit) = *commits.lock().expect("lock");
        let got = committed(&mut c);
        assert!(
            got >= acked_commit && got <= sent.max(acked_commit),
            "round {round}: committed offset {got}, last acknowledged {acked_commit}, last sent {sent}"
        );
        commits.lock().expect("lock").1 = got;
    }
    assert!(commits.lock().expect("lock").1 > 0, "some commits were made");
    // The log rolled across segments (16 KiB each) and every segment has its indexes.
    let part = std::fs::read_dir(&dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("p-"))
        .expect("a partition directory")
        .path();
    let names: Vec<String> = std::fs::read_dir(part)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let count = |ext: &str| names.iter().filter(|n| n.ends_with(ext)).count();
    assert!(count(".log") > 1, "several segments: {names:?}");
    assert_eq!((count(".index"), count(".timeindex")), (count(".log"), count(".log")), "{names:?}");
    println!(
        "20 kill points: {} batches acknowledged in {} segments, all recovered",
        acked.lock().expect("lock").len(),
        count(".log")
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
