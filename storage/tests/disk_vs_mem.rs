//! The disk store against the reference `MemStore`: random sequences of storage commands give
//! the same answers from both, and after the disk store is closed and reopened it recovers the
//! same state the memory store holds. Plus a torn tail written by the test itself.

use std::sync::{Arc, mpsc};

use bytes::Bytes;
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{PartitionExtent, PartitionKey, Recovered, TopicRecord};
use kelp_core::mem_store::MemStore;
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::{CmdId, Command, Completion};
use kelp_storage::{CompletionSink, DiskStore, Fsync, Sink, Store};
use proptest::prelude::*;

struct ChannelSink(std::sync::Mutex<mpsc::Sender<(CmdId, Completion)>>);

impl CompletionSink for ChannelSink {
    fn complete(&self, cmd: CmdId, result: Completion) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send((cmd, result));
        }
    }
}

/// Runs commands on a disk store and waits for each answer.
struct Sync {
    store: DiskStore,
    sink: Sink,
    rx: mpsc::Receiver<(CmdId, Completion)>,
    next: u64,
}

impl Sync {
    fn open(dir: &std::path::Path) -> Self {
        let (tx, rx) = mpsc::channel();
        let store = DiskStore::open(dir, Fsync::Always).expect("open disk store");
        Self { store, sink: Arc::new(ChannelSink(std::sync::Mutex::new(tx))), rx, next: 0 }
    }

    fn run(&mut self, command: Command) -> Completion {
        let cmd = CmdId(self.next);
        self.next += 1;
        self.store.submit(cmd, command, &self.sink);
        let (got, result) = self.rx.recv().expect("an answer");
        assert_eq!(got, cmd);
        result
    }
}

/// Read answers compared by their bytes, not by how they are chunked.
fn normal(c: Completion) -> Completion {
    match c {
        Completion::Read { batches } => {
            let joined: Vec<u8> = batches.iter().flat_map(|b| b.iter().copied()).collect();
            let mut one = smallvec::SmallVec::new();
            if !joined.is_empty() {
                one.push(Bytes::from(joined));
            }
            Completion::Read { batches: one }
        }
        other => other,
    }
}

fn normal_recovered(mut r: Recovered) -> Recovered {
    r.topics.sort_by_key(|t| t.id);
    r.partitions.retain(|(_, e)| e.next_offset > 0 || e.log_start > 0);
    r.partitions.sort_by_key(|(k, _)| *k);
    for (_, e) in &mut r.partitions {
        e.producer_batches.sort_by_key(|b| b.base_offset);
    }
    r
}

#[derive(Clone, Debug)]
enum Op {
    Topic(u8, i32),
    DeleteTopic(u8),
    Append { topic: u8, partition: i32, records: u8, producer: bool, skew: bool },
    Read { topic: u8, partition: i32, offset: i64, max_bytes: usize },
    Find { topic: u8, partition: i32, ts: i64 },
    LogStart { topic: u8, partition: i32, offset: i64 },
    Put(u8, Option<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 1i32..3).prop_map(|(t, p)| Op::Topic(t, p)),
        (0u8..3).prop_map(Op::DeleteTopic),
        (0u8..3, 0i32..2, 1u8..5, any::<bool>(), prop::bool::weighted(0.05)).prop_map(
            |(topic, partition, records, producer, skew)| Op::Append { topic, partition, records, producer, skew }
        ),
        (0u8..3, 0i32..2, -1i64..30, 1usize..2000).prop_map(|(topic, partition, offset, max_bytes)| Op::Read {
            topic,
            partition,
            offset,
            max_bytes
        }),
        (0u8..3, 0i32..2, 0i64..40).prop_map(|(topic, partition, ts)| Op::Find { topic, partition, ts }),
        (0u8..3, 0i32..2, 0i64..12).prop_map(|(topic, partition, offset)| Op::LogStart { topic, partition, offset }),
        (0u8..4, prop::option::of(any::<u8>())).prop_map(|(k, v)| Op::Put(k, v)),
    ]
}

fn topic_id(t: u8) -> Uuid {
    Uuid::from_u64_pair(0xabc, u64::from(t) + 7)
}

/// Translates ops into commands, keeping the append offsets a broker would assign.
struct Model {
    next: std::collections::HashMap<PartitionKey, i64>,
    seq: std::collections::HashMap<PartitionKey, i32>,
}

impl Model {
    fn command(&mut self, op: &Op) -> Command {
        match *op {
            Op::Topic(t, partitions) => Command::PutTopic(TopicRecord {
                name: KStr::from(format!("t{t}")),
                id: topic_id(t),
                partitions,
                configs: vec![(KStr::from("retention.ms"), KStr::from("1000"))],
            }),
            Op::DeleteTopic(t) => {
                self.next.retain(|k, _| k.topic_id != topic_id(t));
                Command::DeleteTopic { topic_id: topic_id(t) }
            }
            Op::Append { topic, partition, records, producer, skew } => {
                let key = PartitionKey { topic_id: topic_id(topic), partition };
                let base = *self.next.get(&key).unwrap_or(&0) + i64::from(skew);
                let seq = self.seq.entry(key).or_insert(0);
                let mut b = RecordBatchBuilder::new(Compression::None).base_offset(base);
                if producer {
                    b = b.producer(5, 0, *seq);
                }
                for i in 0..records {
                    let ts = base + i64::from(i);
                    b.append(ts, Some(b"k"), Some(format!("v{ts}").as_bytes()), &[]).expect("builds");
                }
                let batches = b.build().expect("builds");
                let last = base + i64::from(records) - 1;
                Command::Append { partition: key, base_offset: base, last_offset: last, max_timestamp: last, batches }
            }
            Op::Read { topic, partition, offset, max_bytes } => {
                let key = PartitionKey { topic_id: topic_id(topic), partition };
                let end = *self.next.get(&key).unwrap_or(&0);
                Command::Read { partition: key, offset, end, max_bytes }
            }
            Op::Find { topic, partition, ts } => {
                Command::FindOffset { partition: PartitionKey { topic_id: topic_id(topic), partition }, timestamp: ts }
            }
            Op::LogStart { topic, partition, offset } => {
                Command::SetLogStart { partition: PartitionKey { topic_id: topic_id(topic), partition }, offset }
            }
            Op::Put(k, v) => Command::Put {
                key: Bytes::from(vec![b'k', k]),
                value: v.map(|x| Bytes::from(vec![x; usize::from(x % 5)])),
            },
        }
    }

    fn observe(&mut self, command: &Command, result: &Completion) {
        if let (Command::Append { partition, last_offset, batches, .. }, Completion::Done) = (command, result) {
            self.next.insert(*partition, last_offset + 1);
            let records = kelp_core::records::RecordBatch::new(batches.clone()).map_or(0, |b| b.records_count());
            *self.seq.entry(*partition).or_insert(0) += records;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_disk_store_answers_and_recovers_like_the_memory_store(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempdir();
        let mut mem = MemStore::new();
        let mut model = Model { next: Default::default(), seq: Default::default() };
        {
            let mut disk = Sync::open(&dir);
            for op in &ops {
                let command = model.command(op);
                let want = normal(mem.execute(command.clone()));
                let got = normal(disk.run(command.clone()));
                prop_assert_eq!(&got, &want, "{:?}", op);
                model.observe(&command, &want);
            }
        }
        // Reopen: everything the memory store holds is recovered from disk.
        let mut disk = Sync::open(&dir);
        let Completion::Recovered(got) = disk.run(Command::Recover) else { panic!("recover failed") };
        let Completion::Recovered(want) = mem.execute(Command::Recover) else { panic!("recover failed") };
        prop_assert_eq!(normal_recovered(*got), normal_recovered(*want));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kelp-disk-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_batch() {
    let dir = tempdir();
    let key = PartitionKey { topic_id: topic_id(1), partition: 0 };
    let mut model = Model { next: Default::default(), seq: Default::default() };
    {
        let mut disk = Sync::open(&dir);
        assert_eq!(disk.run(model.command(&Op::Topic(1, 1))), Completion::Done);
        for _ in 0..3 {
            let c = model.command(&Op::Append { topic: 1, partition: 0, records: 3, producer: false, skew: false });
            let r = disk.run(c.clone());
            assert_eq!(r, Completion::Done);
            model.observe(&c, &r);
        }
    }
    // Tear the segment: drop the last 10 bytes, as a crash mid-write would.
    let part_dir = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("p-"))
        .unwrap()
        .path();
    let seg = std::fs::read_dir(&part_dir).unwrap().filter_map(Result::ok).next().unwrap().path();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 10).unwrap();
    let mut disk = Sync::open(&dir);
    let Completion::Recovered(rec) = disk.run(Command::Recover) else { panic!("recover failed") };
    let extent: &PartitionExtent = &rec.partitions.iter().find(|(k, _)| *k == key).unwrap().1;
    assert_eq!(extent.next_offset, 6, "the torn third batch is gone, the first two stay");
    // Appending continues at the cut.
    let mut model = Model { next: [(key, 6)].into_iter().collect(), seq: Default::default() };
    let c = model.command(&Op::Append { topic: 1, partition: 0, records: 1, producer: false, skew: false });
    assert_eq!(disk.run(c), Completion::Done);
    let _ = std::fs::remove_dir_all(&dir);
}
