//! Crash safety of the cleaner's swap: the swap is stopped after each of its file operations
//! in turn, as if the process died there, and the store reopened from what is on disk must
//! read back every record it held before the pass or the pass's result, nothing else, with
//! nothing acknowledged lost; then a pass completes the cleaning.

use std::sync::{Arc, Mutex};

use kelp_core::codec::KStr;
use kelp_core::io::CleanSpec;
use kelp_core::records::{Compression, RecordBatchBuilder};

use super::*;

const PART: PartitionKey = PartitionKey { topic_id: Uuid([9; 16]), partition: 0 };

struct Harness {
    store: DiskStore,
    sink: Sink,
    rx: mpsc::Receiver<(CmdId, Completion)>,
    next: u64,
}

impl Harness {
    fn new(store: DiskStore) -> Self {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sink: Sink = Arc::new(move |cmd, result| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send((cmd, result));
            }
        });
        Self { store, sink, rx, next: 0 }
    }

    fn run(&mut self, command: Command) -> Completion {
        let cmd = CmdId(self.next);
        self.next += 1;
        self.store.submit(cmd, command, &self.sink);
        let (got, result) = self.rx.recv_timeout(Duration::from_secs(60)).expect("an answer");
        assert_eq!(got, cmd);
        result
    }

    /// (offset, key, value) of every record, read batch by batch from the start.
    fn read_all(&mut self, end: i64) -> Vec<(i64, Bytes, Bytes)> {
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < end {
            let Completion::Read { batches } = self.run(Command::Read { partition: PART, offset, end, max_bytes: 500 })
            else {
                panic!("read failed")
            };
            assert!(!batches.is_empty(), "a read at {offset} returns a batch");
            for chunk in batches {
                let mut rest = chunk;
                while !rest.is_empty() {
                    let b = RecordBatch::split_first(&mut rest).expect("whole batches");
                    b.validate().expect("intact");
                    for r in &b.records(1 << 20).expect("records") {
                        let r = r.expect("record");
                        out.push((r.offset(), r.key().unwrap_or_default(), r.value().unwrap_or_default()));
                    }
                    offset = b.last_offset() + 1;
                }
            }
        }
        out
    }
}

fn options() -> DiskOptions {
    DiskOptions { index_interval: 200, ..DiskOptions::new(Fsync::Never) }
}

const RECORDS: i64 = 200;

/// A fresh store in `dir` holding `RECORDS` single-record batches over 7 keys, in segments
/// of about 1 KiB.
fn fill(dir: &Path, steps: u32) -> Harness {
    let _ = fs::remove_dir_all(dir);
    let mut h = Harness::new(DiskStore::open_crashing(dir, options(), steps).expect("open"));
    let topic = TopicRecord {
        name: KStr::from("t"),
        id: PART.topic_id,
        partitions: 1,
        configs: vec![
            (KStr::from("cleanup.policy"), KStr::from("compact")),
            (KStr::from("segment.bytes"), KStr::from("1024")),
        ],
    };
    assert_eq!(h.run(Command::PutTopic(topic)), Completion::Done);
    for i in 0..RECORDS {
        let mut b = RecordBatchBuilder::new(Compression::None).base_offset(i);
        b.append(1000 + i, Some(format!("k{}", i % 7).as_bytes()), Some(format!("v{i}").as_bytes()), &[])
            .expect("builds");
        let batches = b.build().expect("builds");
        let append = Command::Append {
            partition: PART,
            base_offset: i,
            last_offset: i,
            max_timestamp: 1000 + i,
            batches: batches.into(),
            recompress: None,
        };
        assert_eq!(h.run(append), Completion::Done);
    }
    h
}

fn clean(h: &mut Harness) -> Completion {
    let spec = CleanSpec {
        now_ms: 10_000,
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        delete_retention_ms: 1000,
        limit: RECORDS,
    };
    h.run(Command::Clean { partition: PART, spec })
}

fn part_dir(dir: &Path) -> PathBuf {
    dir.join(format!("p-{}-0", hex(&PART.topic_id.0)))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(part_dir(dir))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_crash_at_any_step_of_the_swap_leaves_a_log_that_reads_back() {
    let dir = std::env::temp_dir().join(format!("kelp-swap-crash-{}", std::process::id()));
    // The uncleaned log, and the log a whole pass leaves.
    let mut h = fill(&dir, u32::MAX);
    let original = h.read_all(RECORDS);
    let Completion::Cleaned(report) = clean(&mut h) else { panic!("clean") };
    assert!(report.cleaned);
    let cleaned = h.read_all(RECORDS);
    assert!(cleaned.len() < original.len() / 2);
    drop(h);
    let mut states = Vec::new();
    for steps in 0.. {
        let mut h = fill(&dir, steps);
        match clean(&mut h) {
            Completion::Failed(StorageError::Unavailable) => {}
            Completion::Cleaned(r) if r.cleaned => break,
            other => panic!("step {steps}: {other:?}"),
        }
        drop(h);
        let left: Vec<String> =
            names(&dir).into_iter().filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap")).collect();
        states.push(left.clone());
        let mut h = Harness::new(DiskStore::open_with(&dir, options()).expect("reopen"));
        assert!(names(&dir).iter().all(|n| !n.ends_with(".cleaned") && !n.ends_with(".swap")), "step {steps}");
        let got = h.read_all(RECORDS);
        // Every record read is the one written at its offset, and every record the pass
        // keeps is there.
        for r in &got {
            assert_eq!(Some(r), original.iter().find(|o| o.0 == r.0), "step {steps}, left {left:?}");
        }
        for r in &cleaned {
            assert!(got.contains(r), "step {steps}: {r:?} lost, left {left:?}");
        }
        let Completion::Partition(e) = h.run(Command::RecoverPartition { partition: PART, from: 0 }) else {
            panic!("extent")
        };
        assert_eq!((e.log_start, e.next_offset), (0, RECORDS), "step {steps}");
        // A pass after the crash finishes the job.
        let Completion::Cleaned(_) = clean(&mut h) else { panic!("clean after the crash") };
        assert_eq!(h.read_all(RECORDS), cleaned, "step {steps}");
        drop(h);
        let mut h = Harness::new(DiskStore::open_with(&dir, options()).expect("reopen"));
        assert_eq!(h.read_all(RECORDS), cleaned, "step {steps}, reopened");
    }
    // The crash points covered uncommitted output, a partial commit, committed swaps and a
    // partial install.
    assert!(states.iter().any(|s| !s.is_empty() && s.iter().all(|n| n.ends_with(".cleaned"))), "{states:?}");
    assert!(states.iter().any(|s| s.iter().any(|n| n.ends_with(".cleaned")) && s.iter().any(|n| n.ends_with(".swap"))));
    assert!(states.iter().any(|s| !s.is_empty() && s.iter().all(|n| n.ends_with(".swap"))), "{states:?}");
    assert!(states.len() > 10, "{} crash points", states.len());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_gap_above_the_gap_mark_still_ends_the_log() {
    let dir = std::env::temp_dir().join(format!("kelp-gap-mark-{}", std::process::id()));
    let mut h = fill(&dir, u32::MAX);
    drop(h);
    // Remove a middle segment, as a machine crash without fsync could lose one: the log
    // ends before it.
    let bases: Vec<i64> = names(&dir).iter().filter_map(|n| n.strip_suffix(".log")?.parse().ok()).collect();
    let gone = bases[bases.len() / 2];
    fs::remove_file(part_dir(&dir).join(format!("{gone:020}.log"))).expect("remove");
    h = Harness::new(DiskStore::open_with(&dir, options()).expect("reopen"));
    let Completion::Partition(e) = h.run(Command::RecoverPartition { partition: PART, from: 0 }) else {
        panic!("extent")
    };
    assert_eq!(e.next_offset, gone);
    drop(h);
    let _ = fs::remove_dir_all(&dir);
}
