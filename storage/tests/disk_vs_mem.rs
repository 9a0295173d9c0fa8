//! The disk store against the reference `MemStore`: random sequences of storage commands give
//! the same answers from both (compaction included: the same passes leave the same records in
//! the same segments), and after the disk store is closed and reopened it recovers the same
//! state the memory store holds. Plus a torn tail written by the test itself.

use std::sync::{Arc, mpsc};

use bytes::Bytes;
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{
    CleanSpec, PartitionExtent, PartitionKey, Recompress, Recovered, StorageError, TimestampOffset, TopicRecord,
};
use kelp_core::mem_store::MemStore;
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::{CmdId, Command, Completion};
use kelp_storage::{CompletionSink, DiskOptions, DiskStore, Fsync, Sink, Store};
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
        // Small index intervals so that even small logs have several entries per segment.
        Self::open_with(dir, DiskOptions { index_interval: 200, ..DiskOptions::new(Fsync::Always) })
    }

    fn open_with(dir: &std::path::Path, options: DiskOptions) -> Self {
        let (tx, rx) = mpsc::channel();
        let store = DiskStore::open_with(dir, options).expect("open disk store");
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
        Completion::Partition(mut e) => {
            e.producer_batches.sort_by_key(|b| b.base_offset);
            Completion::Partition(e)
        }
        // Only the disk store has a clock.
        Completion::Cleaned(r) => Completion::Cleaned(kelp_core::io::CleanReport { micros: 0, ..r }),
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
    Append {
        topic: u8,
        partition: i32,
        records: u8,
        producer: bool,
        skew: bool,
        old: bool,
        /// Null values (tombstones) instead.
        tombstones: bool,
        /// The batch's codec (an index into `Compression::ALL`) and, if the topic asks for
        /// another, the codec the store recompresses it in and whether the topic's batch
        /// limit is tight (so that some recompressed batches are refused as too large).
        codecs: (u8, Option<(u8, bool)>),
    },
    /// A compaction pass.
    Clean {
        topic: u8,
        partition: i32,
        now: i64,
        ratio: bool,
        lags: bool,
        delete_retention: bool,
    },
    Retain {
        topic: u8,
        partition: i32,
        older_than: Option<i64>,
        max_bytes: Option<u64>,
    },
    Reopen,
    Read {
        topic: u8,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    },
    Find {
        topic: u8,
        partition: i32,
        ts: i64,
    },
    LogStart {
        topic: u8,
        partition: i32,
        offset: i64,
    },
    Put(u8, Option<u8>),
    /// What the partition's end is (after appends with an unknown outcome).
    Resync {
        topic: u8,
        partition: i32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..3, 1i32..3).prop_map(|(t, p)| Op::Topic(t, p)),
        1 => (0u8..3).prop_map(Op::DeleteTopic),
        4 => (
            (0u8..3, 0i32..2, 1u8..5),
            (any::<bool>(), prop::bool::weighted(0.05), prop::bool::weighted(0.2), prop::bool::weighted(0.1)),
            codecs(),
        )
            .prop_map(|((topic, partition, records), (producer, skew, old, tombstones), codecs)| Op::Append {
                topic,
                partition,
                records,
                producer,
                skew,
                old,
                tombstones,
                codecs
            }),
        2 => ((0u8..3, 0i32..2, 0i64..200), (any::<bool>(), any::<bool>(), any::<bool>())).prop_map(
            |((topic, partition, now), (ratio, lags, delete_retention))| Op::Clean {
                topic,
                partition,
                now,
                ratio,
                lags,
                delete_retention
            }
        ),
        1 => (0u8..3, 0i32..2, prop::option::of(0i64..60), prop::option::of(0u64..1500)).prop_map(
            |(topic, partition, older_than, max_bytes)| Op::Retain { topic, partition, older_than, max_bytes }
        ),
        1 => Just(Op::Reopen),
        2 => (0u8..3, 0i32..2, -1i64..60, 1usize..2000).prop_map(|(topic, partition, offset, max_bytes)| Op::Read {
            topic,
            partition,
            offset,
            max_bytes
        }),
        2 => (0u8..3, 0i32..2, 0i64..70).prop_map(|(topic, partition, ts)| Op::Find { topic, partition, ts }),
        1 => (0u8..3, 0i32..2, 0i64..12).prop_map(|(topic, partition, offset)| Op::LogStart { topic, partition, offset }),
        1 => (0u8..4, prop::option::of(any::<u8>())).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..3, 0i32..2).prop_map(|(topic, partition)| Op::Resync { topic, partition }),
    ]
}

/// Ops on one partition of one topic, mostly appends and compaction passes, so that logs
/// grow many segments and passes find work.
fn compaction_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u8..5, any::<bool>(), prop::bool::weighted(0.1), prop::bool::weighted(0.15), codecs()).prop_map(
            |(records, producer, old, tombstones, codecs)| Op::Append {
                topic: 0,
                partition: 0,
                records,
                producer,
                skew: false,
                old,
                tombstones,
                codecs
            }
        ),
        3 => (0i64..400, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(now, ratio, lags, delete_retention)| {
            Op::Clean { topic: 0, partition: 0, now, ratio, lags, delete_retention }
        }),
        1 => Just(Op::Reopen),
        2 => (-1i64..150, 1usize..2000).prop_map(|(offset, max_bytes)| Op::Read { topic: 0, partition: 0, offset, max_bytes }),
        1 => (-1i64..150).prop_map(|ts| Op::Find { topic: 0, partition: 0, ts }),
        1 => (prop::option::of(0i64..100), prop::option::of(0u64..3000)).prop_map(|(older_than, max_bytes)| Op::Retain {
            topic: 0,
            partition: 0,
            older_than,
            max_bytes
        }),
        1 => (0i64..100).prop_map(|offset| Op::LogStart { topic: 0, partition: 0, offset }),
        1 => Just(Op::Resync { topic: 0, partition: 0 }),
    ]
}

/// A batch codec, and in a third of the appends a topic codec to recompress it in.
fn codecs() -> impl Strategy<Value = (u8, Option<(u8, bool)>)> {
    let n = u8::try_from(Compression::ALL.len()).expect("few codecs");
    (0..n, prop::option::weighted(0.3, (0..n, prop::bool::weighted(0.3))))
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
                // Small segments, so that rolling and whole-segment deletion happen.
                configs: vec![
                    (KStr::from("retention.ms"), KStr::from("1000")),
                    (KStr::from("segment.bytes"), KStr::from("400")),
                    (KStr::from("segment.ms"), KStr::from("25")),
                ],
            }),
            Op::DeleteTopic(t) => {
                self.next.retain(|k, _| k.topic_id != topic_id(t));
                Command::DeleteTopic { topic_id: topic_id(t) }
            }
            Op::Reopen => Command::Recover,
            Op::Retain { topic, partition, older_than, max_bytes } => {
                let key = PartitionKey { topic_id: topic_id(topic), partition };
                let limit = *self.next.get(&key).unwrap_or(&0);
                Command::Retain { partition: key, older_than, max_bytes, limit }
            }
            Op::Clean { topic, partition, now, ratio, lags, delete_retention } => {
                let key = PartitionKey { topic_id: topic_id(topic), partition };
                let spec = CleanSpec {
                    now_ms: now,
                    min_cleanable_dirty_ratio: if ratio { 0.5 } else { 0.0 },
                    min_compaction_lag_ms: if lags { 20 } else { 0 },
                    max_compaction_lag_ms: if lags { 60 } else { i64::MAX },
                    delete_retention_ms: if delete_retention { 30 } else { 0 },
                    limit: *self.next.get(&key).unwrap_or(&0),
                };
                Command::Clean { partition: key, spec }
            }
            Op::Append { topic, partition, records, producer, skew, old, tombstones, codecs: (codec, recompress) } => {
                let key = PartitionKey { topic_id: topic_id(topic), partition };
                let base = *self.next.get(&key).unwrap_or(&0) + i64::from(skew);
                let seq = self.seq.entry(key).or_insert(0);
                let mut b = RecordBatchBuilder::new(Compression::ALL[usize::from(codec)]).base_offset(base);
                if producer {
                    b = b.producer(5, 0, *seq);
                }
                for i in 0..records {
                    // Some batches carry older timestamps: the time index must not assume order.
                    let ts = if old { base / 2 + i64::from(i) } else { base + i64::from(i) };
                    // A few keys, so that compaction has records to supersede.
                    let key = format!("k{}", (base + i64::from(i)) % 3);
                    let value = format!("v{ts}");
                    let value = (!tombstones).then_some(value.as_bytes());
                    b.append(ts, Some(key.as_bytes()), value, &[]).expect("builds");
                }
                let batches = b.build().expect("builds");
                let last = base + i64::from(records) - 1;
                let max_timestamp = if old { base / 2 + i64::from(records) - 1 } else { last };
                // A tight limit refuses most recompressed batches of a few records, not all.
                let recompress = recompress.map(|(to, tight)| Recompress {
                    codec: Compression::ALL[usize::from(to)],
                    level: None,
                    max_batch_bytes: if tight { 110 } else { 1 << 20 },
                    max_decompressed: 1 << 20,
                });
                Command::Append {
                    partition: key,
                    base_offset: base,
                    last_offset: last,
                    max_timestamp,
                    batches: batches.into(),
                    recompress,
                }
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
            Op::Resync { topic, partition } => {
                Command::RecoverPartition { partition: PartitionKey { topic_id: topic_id(topic), partition }, from: 0 }
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
            let records = kelp_core::records::RecordBatch::new(batches.to_bytes()).map_or(0, |b| b.records_count());
            *self.seq.entry(*partition).or_insert(0) += records;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_disk_store_answers_and_recovers_like_the_memory_store(ops in prop::collection::vec(op(), 1..80)) {
        same_answers(&ops, None)?;
    }

    #[test]
    fn the_disk_store_compacts_like_the_memory_store(
        ops in prop::collection::vec(compaction_op(), 1..150),
        small_map in any::<bool>(),
    ) {
        let mut all = vec![Op::Topic(0, 1)];
        all.extend(ops);
        // A key map with room for two keys' entries makes passes stop part way.
        same_answers(&all, small_map.then_some(2 * (2 + kelp_core::cleaner::ENTRY_OVERHEAD)))?;
    }
}

/// Runs `ops` on both stores: every answer must match, and so must what the disk store
/// recovers after each reopen and at the end.
/// `budget`: the key map budget of both stores' cleaners, if not the default.
fn same_answers(ops: &[Op], budget: Option<usize>) -> Result<(), TestCaseError> {
    let mut options = DiskOptions { index_interval: 200, ..DiskOptions::new(Fsync::Always) };
    let mut mem = MemStore::new();
    if let Some(bytes) = budget {
        options.cleaner_dedupe_buffer_bytes = bytes;
        mem = mem.with_cleaner_budget(bytes);
    }
    {
        let dir = tempdir();
        let mut model = Model { next: Default::default(), seq: Default::default() };
        {
            let mut disk = Sync::open_with(&dir, options);
            for op in ops {
                let command = model.command(op);
                if let Op::Reopen = op {
                    // Close and reopen mid-run: the recovered state and every later answer
                    // must not change.
                    drop(disk);
                    disk = Sync::open_with(&dir, options);
                    let Completion::Recovered(got) = disk.run(Command::Recover) else { panic!("recover failed") };
                    let Completion::Recovered(want) = mem.execute(Command::Recover) else { panic!("recover failed") };
                    prop_assert_eq!(normal_recovered(*got), normal_recovered(*want));
                    let check = disk.store.index_check();
                    prop_assert_eq!(check.rebuilt, 0, "intact indexes are used, not rebuilt: {:?}", check);
                    continue;
                }
                let want = normal(mem.execute(command.clone()));
                let got = normal(disk.run(command.clone()));
                prop_assert_eq!(&got, &want, "{:?}", op);
                model.observe(&command, &want);
            }
        }
        // Reopen: everything the memory store holds is recovered from disk.
        let mut disk = Sync::open_with(&dir, options);
        let Completion::Recovered(got) = disk.run(Command::Recover) else { panic!("recover failed") };
        let Completion::Recovered(want) = mem.execute(Command::Recover) else { panic!("recover failed") };
        prop_assert_eq!(normal_recovered(*got), normal_recovered(*want));
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
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
            let c = model.command(&Op::Append {
                topic: 1,
                partition: 0,
                records: 3,
                producer: false,
                skew: false,
                old: false,
                tombstones: false,
                codecs: (0, None),
            });
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
    let seg = std::fs::read_dir(&part_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 10).unwrap();
    let mut disk = Sync::open(&dir);
    let Completion::Recovered(rec) = disk.run(Command::Recover) else { panic!("recover failed") };
    let extent: &PartitionExtent = &rec.partitions.iter().find(|(k, _)| *k == key).unwrap().1;
    assert_eq!(extent.next_offset, 6, "the torn third batch is gone, the first two stay");
    // Appending continues at the cut.
    let mut model = Model { next: [(key, 6)].into_iter().collect(), seq: Default::default() };
    let c = model.command(&Op::Append {
        topic: 1,
        partition: 0,
        records: 1,
        producer: false,
        skew: false,
        old: false,
        tombstones: false,
        codecs: (0, None),
    });
    assert_eq!(disk.run(c), Completion::Done);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A partition with many small segments and many index entries, its answers checked against
/// the memory store offset by offset and timestamp by timestamp.
struct Big {
    dir: std::path::PathBuf,
    mem: MemStore,
    key: PartitionKey,
    end: i64,
}

const BIG_OPTIONS: fn() -> DiskOptions = || DiskOptions { index_interval: 256, ..DiskOptions::new(Fsync::Never) };

impl Big {
    fn write(batches: usize) -> Self {
        let dir = tempdir();
        let mut mem = MemStore::new();
        let key = PartitionKey { topic_id: topic_id(1), partition: 0 };
        let topic = Command::PutTopic(TopicRecord {
            name: KStr::from("big"),
            id: topic_id(1),
            partitions: 1,
            configs: vec![(KStr::from("segment.bytes"), KStr::from("16384"))],
        });
        let mut disk = Sync::open_with(&dir, BIG_OPTIONS());
        assert_eq!(disk.run(topic.clone()), Completion::Done);
        mem.execute(topic);
        let mut base = 0i64;
        for i in 0..batches {
            let records = 1 + (i % 3) as i64;
            // Timestamps mostly rise, every seventh batch is older.
            let ts0 = if i % 7 == 0 { base / 3 } else { base * 2 };
            let mut b = RecordBatchBuilder::new(Compression::None).base_offset(base);
            for r in 0..records {
                b.append(ts0 + r, Some(b"k"), Some(b"some value bytes"), &[]).expect("builds");
            }
            let last = base + records - 1;
            let c = Command::Append {
                partition: key,
                base_offset: base,
                last_offset: last,
                max_timestamp: ts0 + records - 1,
                batches: b.build().expect("builds").into(),
                recompress: None,
            };
            assert_eq!(disk.run(c.clone()), Completion::Done);
            mem.execute(c);
            base = last + 1;
        }
        Self { dir, mem, key, end: base }
    }

    fn part_dir(&self) -> std::path::PathBuf {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("p-"))
            .unwrap()
            .path()
    }

    fn files(&self, ext: &str) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.part_dir())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        v.sort();
        v
    }

    /// Every read and timestamp lookup answers as the memory store does.
    fn check(&mut self, disk: &mut Sync) {
        for offset in (0..self.end + 2).step_by(3) {
            for max_bytes in [1, 700] {
                let c = Command::Read { partition: self.key, offset, end: self.end, max_bytes };
                assert_eq!(normal(disk.run(c.clone())), normal(self.mem.execute(c)), "read at {offset}");
            }
        }
        for timestamp in (-1..self.end * 2 + 4).step_by(5) {
            let c = Command::FindOffset { partition: self.key, timestamp };
            assert_eq!(disk.run(c.clone()), self.mem.execute(c), "timestamp {timestamp}");
        }
        let Completion::Recovered(got) = disk.run(Command::Recover) else { panic!("recover failed") };
        let Completion::Recovered(want) = self.mem.execute(Command::Recover) else { panic!("recover failed") };
        assert_eq!(normal_recovered(*got), normal_recovered(*want));
    }
}

#[test]
fn sparse_indexes_answer_like_a_scan_and_are_used_after_reopen() {
    let mut big = Big::write(1500);
    let segments = big.files("log").len();
    assert!(segments > 5, "the log rolled into several segments ({segments})");
    let index_bytes: u64 = big.files("index").iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(index_bytes > 16 * 100, "the offset indexes hold entries ({index_bytes} bytes)");
    let mut disk = Sync::open_with(&big.dir, BIG_OPTIONS());
    let check = disk.store.index_check();
    assert_eq!((check.used, check.rebuilt), (segments, 0), "{check:?}");
    let total: u64 = big.files("log").iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(check.bytes_scanned < total / 4, "only segment tails are scanned: {check:?} of {total}");
    big.check(&mut disk);
    let _ = std::fs::remove_dir_all(&big.dir);
}

#[test]
fn torn_stale_or_missing_indexes_are_rebuilt() {
    let mut big = Big::write(1200);
    let indexes = big.files("index");
    let times = big.files("timeindex");
    let original: Vec<Vec<u8>> = indexes.iter().chain(&times).map(|p| std::fs::read(p).unwrap()).collect();
    assert!(indexes.len() >= 4);
    // Torn: the last segment's index loses half an entry.
    let last = indexes.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len - 5).unwrap();
    // Damaged: a flipped byte in the first segment's index.
    let mut bytes = std::fs::read(&indexes[0]).unwrap();
    bytes[5] ^= 0x40;
    std::fs::write(&indexes[0], bytes).unwrap();
    // Stale but intact: an entry whose CRC is right but whose position is not its batch's.
    let mut bytes = std::fs::read(&indexes[1]).unwrap();
    let base: i64 = indexes[1].file_stem().unwrap().to_string_lossy().parse().unwrap();
    let pos = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) + 1;
    bytes[4..8].copy_from_slice(&pos.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&base.to_be_bytes()), &bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&indexes[1], bytes).unwrap();
    // Missing: a time index removed.
    std::fs::remove_file(&times[2]).unwrap();

    let mut disk = Sync::open_with(&big.dir, BIG_OPTIONS());
    let check = disk.store.index_check();
    assert_eq!(check.rebuilt, 3, "the damaged, the stale and the one missing its time index: {check:?}");
    let now: Vec<Vec<u8>> = indexes.iter().chain(&times).map(|p| std::fs::read(p).unwrap()).collect();
    assert!(now == original, "every index file is back as it was written");
    big.check(&mut disk);
    let _ = std::fs::remove_dir_all(&big.dir);
}

#[test]
fn retention_deletes_whole_old_segments_and_moves_the_log_start() {
    let mut big = Big::write(1500);
    let mut disk = Sync::open_with(&big.dir, BIG_OPTIONS());
    let before = big.files("log");
    let bases: Vec<i64> = before.iter().map(|p| p.file_stem().unwrap().to_string_lossy().parse().unwrap()).collect();
    // Nothing is older than -1: no deletion by time.
    let keep_all = Command::Retain { partition: big.key, older_than: Some(-1), max_bytes: None, limit: big.end };
    let want = big.mem.execute(keep_all.clone());
    assert_eq!(disk.run(keep_all), want);
    assert!(matches!(want, Completion::LogStart { offset: 0, .. }), "{want:?}");
    // By time: everything older than the third segment's start (timestamps rise, except every
    // seventh batch, which is older still and does not keep its segment).
    let cutoff = bases[3] * 2;
    let by_time = Command::Retain { partition: big.key, older_than: Some(cutoff), max_bytes: None, limit: big.end };
    let want = big.mem.execute(by_time.clone());
    assert_eq!(disk.run(by_time), want);
    let Completion::LogStart { offset, .. } = want else { panic!("{want:?}") };
    assert!(bases.contains(&offset) && offset > 0, "the log starts at a kept segment: {offset}");
    assert_eq!(big.files("log").len(), before.len() - bases.iter().position(|b| *b == offset).unwrap());
    // The limit (high watermark) protects segments holding offsets at or above it.
    let limited = Command::Retain { partition: big.key, older_than: Some(i64::MAX), max_bytes: None, limit: bases[5] };
    assert_eq!(disk.run(limited.clone()), big.mem.execute(limited));
    let first: i64 = big.files("log")[0].file_stem().unwrap().to_string_lossy().parse().unwrap();
    assert_eq!(first, bases[5], "segments wholly below the limit went, the one reaching it stayed");
    // By size: keep at most 40 KiB; the active segment always stays.
    let by_size = Command::Retain { partition: big.key, older_than: None, max_bytes: Some(40_000), limit: big.end };
    assert_eq!(disk.run(by_size.clone()), big.mem.execute(by_size));
    let total: u64 = big.files("log").iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!((40_000..40_000 + 16_384).contains(&total), "{total}");
    let all = Command::Retain { partition: big.key, older_than: None, max_bytes: Some(0), limit: big.end };
    assert_eq!(disk.run(all.clone()), big.mem.execute(all));
    assert_eq!(big.files("log").len(), 1, "the active segment is never deleted");
    assert_eq!((big.files("index").len(), big.files("timeindex").len()), (1, 1), "indexes go with their segment");
    big.check(&mut disk);
    // The log start survives a restart.
    drop(disk);
    let mut disk = Sync::open_with(&big.dir, BIG_OPTIONS());
    big.check(&mut disk);
    let _ = std::fs::remove_dir_all(&big.dir);
}

#[test]
fn segment_ms_rolls_by_record_timestamps() {
    let dir = tempdir();
    let mut disk = Sync::open(&dir);
    let mut mem = MemStore::new();
    let key = PartitionKey { topic_id: topic_id(1), partition: 0 };
    let topic = Command::PutTopic(TopicRecord {
        name: KStr::from("roll"),
        id: topic_id(1),
        partitions: 1,
        configs: vec![(KStr::from("segment.ms"), KStr::from("1000"))],
    });
    assert_eq!(disk.run(topic.clone()), Completion::Done);
    mem.execute(topic);
    // The third batch is more than segment.ms newer than the first: it starts a segment. The
    // fifth is more than segment.ms newer than the third.
    for (offset, ts) in [(0i64, 0i64), (1, 500), (2, 1001), (3, 1900), (4, 2002)] {
        let mut b = RecordBatchBuilder::new(Compression::None).base_offset(offset);
        b.append(ts, Some(b"k"), Some(b"v"), &[]).expect("builds");
        let c = Command::Append {
            partition: key,
            base_offset: offset,
            last_offset: offset,
            max_timestamp: ts,
            batches: b.build().expect("builds").into(),
            recompress: None,
        };
        assert_eq!(disk.run(c.clone()), Completion::Done);
        mem.execute(c);
    }
    let part = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("p-"))
        .unwrap()
        .path();
    let mut logs: Vec<String> = std::fs::read_dir(part)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    assert_eq!(logs, ["00000000000000000000.log", "00000000000000000002.log", "00000000000000000004.log"]);
    // Retention by size sees the same segments in both stores.
    let c = Command::Retain { partition: key, older_than: None, max_bytes: Some(1), limit: 5 };
    let want = Completion::LogStart { offset: 4, max_timestamp: TimestampOffset { timestamp: 2002, offset: 4 } };
    assert_eq!(disk.run(c.clone()), want, "the largest timestamp is what is left");
    assert_eq!(mem.execute(c), want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The batches a read of the whole partition returns, each checked in full.
fn stored(answer: Completion) -> Vec<kelp_core::records::RecordBatch> {
    let Completion::Read { batches } = answer else { panic!("read failed: {answer:?}") };
    let bytes: Vec<u8> = batches.iter().flat_map(|b| b.iter().copied()).collect();
    kelp_core::records::Batches::new(Bytes::from(bytes))
        .map(|b| {
            let b = b.expect("whole batches");
            b.validate_full(1 << 20).expect("a valid batch");
            b
        })
        .collect()
}

#[test]
fn an_append_to_recompress_is_stored_in_the_topics_codec_or_not_at_all() {
    let dir = tempdir();
    let key = PartitionKey { topic_id: topic_id(2), partition: 0 };
    let topic = TopicRecord { name: KStr::from("zstd"), id: key.topic_id, partitions: 1, configs: Vec::new() };
    let (mut disk, mut mem) = (Sync::open(&dir), MemStore::new());
    let mut both = |c: Command| {
        let (got, want) = (normal(disk.run(c.clone())), normal(mem.execute(c)));
        assert_eq!(got, want);
        got
    };
    assert_eq!(both(Command::PutTopic(topic)), Completion::Done);
    let value = "a compressible value ".repeat(20);
    let append = |base: i64, codec: Compression, max_batch_bytes: usize| {
        let mut b = RecordBatchBuilder::new(codec).base_offset(base).producer(9, 1, i32::try_from(base).unwrap());
        for i in 0..3 {
            b.append(100 + i, Some(b"k"), Some(value.as_bytes()), &[]).expect("builds");
        }
        let recompress =
            Some(Recompress { codec: Compression::Zstd, level: Some(5), max_batch_bytes, max_decompressed: 1 << 20 });
        let batches = b.build().expect("builds");
        Command::Append {
            partition: key,
            base_offset: base,
            last_offset: base + 2,
            max_timestamp: 102,
            batches: batches.into(),
            recompress,
        }
    };
    // Stored in zstd, from lz4 and from uncompressed; a batch already in zstd as it came.
    assert_eq!(both(append(0, Compression::Lz4, 1 << 20)), Completion::Done);
    assert_eq!(both(append(3, Compression::None, 1 << 20)), Completion::Done);
    let as_produced = append(6, Compression::Zstd, 1);
    let Command::Append { batches: zstd_batch, .. } = &as_produced else { unreachable!() };
    let zstd_batch = zstd_batch.to_bytes();
    assert_eq!(both(as_produced), Completion::Done, "a batch in the topic's codec is not re-encoded");
    // Too large once recompressed: refused, nothing stored, the log still ends at 9.
    let refused = both(append(9, Compression::Lz4, 100));
    assert_eq!(refused, Completion::Failed(StorageError::MessageTooLarge));
    assert!(!StorageError::MessageTooLarge.outcome_unknown());
    assert_eq!(both(append(9, Compression::Gzip, 1 << 20)), Completion::Done, "the log continues at 9");
    let check = |batches: Vec<kelp_core::records::RecordBatch>| {
        assert_eq!(batches.len(), 4);
        for (b, base) in batches.iter().zip([0, 3, 6, 9]) {
            assert_eq!(b.compression(), Ok(Compression::Zstd));
            assert_eq!(
                (b.base_offset(), b.records_count(), b.producer_id(), b.base_sequence()),
                (base, 3, 9, base as i32)
            );
            let values: Vec<Vec<u8>> = b
                .records(1 << 20)
                .expect("decompresses")
                .iter()
                .map(|r| r.expect("a record").value_slice().expect("a value").to_vec())
                .collect();
            assert_eq!(values, vec![value.as_bytes().to_vec(); 3]);
        }
        assert_eq!(batches[2].as_bytes(), &zstd_batch);
    };
    let read = Command::Read { partition: key, offset: 0, end: 12, max_bytes: 1 << 20 };
    check(stored(both(read.clone())));
    drop(disk);
    // What the disk store wrote is what it reads back after a restart.
    let mut disk = Sync::open(&dir);
    assert!(matches!(disk.run(Command::Recover), Completion::Recovered(_)));
    check(stored(disk.run(read)));
    let _ = std::fs::remove_dir_all(&dir);
}
