//! Measures the disk store's sparse indexes on a large log: Read and FindOffset lookup cost with
//! the index and without one (every entry dropped, so a lookup walks batch headers from the
//! segment start), and recovery time with valid indexes and with indexes to rebuild.
//!
//! `cargo run --release -p kelp-storage --example disk_index_measure -- [DIR] [MiB]`
//! (defaults: a directory under the system temp dir, 1024 MiB). The page cache is warm: these are
//! CPU and syscall costs, not cold-disk costs.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use bytes::Bytes;
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{PartitionKey, TopicRecord};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::{CmdId, Command, Completion};
use kelp_storage::{CompletionSink, DiskOptions, DiskStore, Fsync, Sink, Store};

struct ChannelSink(Mutex<mpsc::Sender<(CmdId, Completion)>>);

impl CompletionSink for ChannelSink {
    fn complete(&self, cmd: CmdId, result: Completion) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send((cmd, result));
        }
    }
}

struct Client {
    store: DiskStore,
    sink: Sink,
    rx: mpsc::Receiver<(CmdId, Completion)>,
    next: u64,
}

impl Client {
    fn open(dir: &std::path::Path, options: DiskOptions) -> Self {
        let (tx, rx) = mpsc::channel();
        let store = DiskStore::open_with(dir, options).expect("open");
        Self { store, sink: Arc::new(ChannelSink(Mutex::new(tx))), rx, next: 0 }
    }

    fn submit(&mut self, c: Command) {
        self.store.submit(CmdId(self.next), c, &self.sink);
        self.next += 1;
    }

    fn run(&mut self, c: Command) -> Completion {
        self.submit(c);
        self.rx.recv().expect("answer").1
    }
}

/// A tiny deterministic generator (xorshift).
struct Rand(u64);

impl Rand {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

const RECORDS: i64 = 10;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(|| std::env::temp_dir().join("kelp-index-measure"), std::path::PathBuf::from);
    let mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let _ = std::fs::remove_dir_all(&dir);
    let key = PartitionKey { topic_id: Uuid::from_u64_pair(1, 1), partition: 0 };
    let options = DiskOptions::new(Fsync::Never);

    // Write: batches of 10 records of 100 bytes, timestamps rising 1 ms per record.
    let mut c = Client::open(&dir, options);
    let topic = TopicRecord { name: KStr::from("m"), id: key.topic_id, partitions: 1, configs: Vec::new() };
    assert_eq!(c.run(Command::PutTopic(topic)), Completion::Done);
    let value = [b'v'; 100];
    let (mut base, mut bytes) = (0i64, 0u64);
    let t = Instant::now();
    while bytes < mib << 20 {
        for _ in 0..256 {
            let mut b = RecordBatchBuilder::new(Compression::None).base_offset(base);
            for r in 0..RECORDS {
                b.append(base + r, Some(b"key"), Some(&value), &[]).expect("builds");
            }
            let batches: Bytes = b.build().expect("builds");
            bytes += batches.len() as u64;
            let last = base + RECORDS - 1;
            c.submit(Command::Append {
                partition: key,
                base_offset: base,
                last_offset: last,
                max_timestamp: last,
                batches: batches.into(),
                recompress: None,
            });
            base = last + 1;
        }
        for _ in 0..256 {
            assert_eq!(c.rx.recv().expect("answer").1, Completion::Done);
        }
    }
    let end = base;
    println!("wrote {} MiB, {} batches, {} records in {:.1?}", bytes >> 20, end / RECORDS, end, t.elapsed());
    let mut rng = Rand(0x9e37_79b9_7f4a_7c15);
    let measure_reads = |c: &mut Client, rng: &mut Rand, n: u32| {
        let t = Instant::now();
        for _ in 0..n {
            let offset = i64::try_from(rng.below(u64::try_from(end).unwrap_or(1))).unwrap_or(0);
            let Completion::Read { batches } = c.run(Command::Read { partition: key, offset, end, max_bytes: 1 })
            else {
                panic!("read failed")
            };
            assert!(!batches.is_empty());
        }
        t.elapsed() / n
    };
    let measure_finds = |c: &mut Client, rng: &mut Rand, n: u32| {
        let t = Instant::now();
        for _ in 0..n {
            let ts = i64::try_from(rng.below(u64::try_from(end).unwrap_or(1))).unwrap_or(0);
            let Completion::Offset { found: Some(kelp_core::io::TimestampOffset { offset: o, .. }) } =
                c.run(Command::FindOffset { partition: key, timestamp: ts })
            else {
                panic!("find failed")
            };
            assert_eq!(o, ts, "timestamps equal offsets here");
        }
        t.elapsed() / n
    };
    // The round trip to the IO thread and back, with no file work (a partition not stored).
    let missing = PartitionKey { topic_id: Uuid::from_u64_pair(9, 9), partition: 0 };
    let t = Instant::now();
    for _ in 0..5000 {
        c.run(Command::Read { partition: missing, offset: 0, end: 1, max_bytes: 1 });
    }
    println!("round trip to the IO thread, no file work: {:?}", t.elapsed() / 5000);
    for _ in 0..3 {
        println!(
            "with index:    Read {:?} per lookup, FindOffset {:?}",
            measure_reads(&mut c, &mut rng, 5000),
            measure_finds(&mut c, &mut rng, 2000)
        );
    }
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(500));

    for _ in 0..3 {
        // Recovery with valid indexes.
        let t = Instant::now();
        let c = Client::open(&dir, options);
        println!("open with valid indexes: {:.1?} ({:?})", t.elapsed(), c.store.index_check());
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    for _ in 0..3 {
        // Recovery with every index gone: a full scan rebuilds them.
        remove_indexes(&dir);
        let t = Instant::now();
        let c = Client::open(&dir, options);
        println!("open rebuilding indexes: {:.1?} ({:?})", t.elapsed(), c.store.index_check());
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // Without an index: rebuilt with no entries, every lookup walks from the segment start.
    remove_indexes(&dir);
    let mut c = Client::open(&dir, DiskOptions { index_interval: u64::MAX, ..options });
    println!(
        "without index: Read {:?} per lookup, FindOffset {:?}",
        measure_reads(&mut c, &mut rng, 50),
        measure_finds(&mut c, &mut rng, 50)
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

fn remove_indexes(dir: &std::path::Path) {
    for part in std::fs::read_dir(dir).expect("dir").filter_map(Result::ok) {
        if !part.file_name().to_string_lossy().starts_with("p-") {
            continue;
        }
        for f in std::fs::read_dir(part.path()).expect("dir").filter_map(Result::ok) {
            let p = f.path();
            if p.extension().is_some_and(|x| x == "index" || x == "timeindex") {
                std::fs::remove_file(p).expect("remove");
            }
        }
    }
}
