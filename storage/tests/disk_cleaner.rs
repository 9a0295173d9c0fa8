//! The disk store's log cleaner: what a pass keeps (the latest record of every key, with its
//! offset, timestamp and headers; tombstones until their horizon; each idempotent producer's
//! last batch), reads and timestamp lookups across the gaps it leaves, reopening, passes
//! discarded because retention got there first, damaged segments, and the options.
//! Crashes at each step of the swap are simulated in the store's unit tests (`disk/tests.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{CleanReport, CleanSpec, PartitionKey, TimestampOffset, TopicRecord};
use kelp_core::records::{Compression, Header, RecordBatch, RecordBatchBuilder};
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

/// One record as written and as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(Bytes, Option<Bytes>)>,
}

const PART: PartitionKey = PartitionKey { topic_id: Uuid([7; 16]), partition: 0 };

/// A disk store with one compacted topic whose segments roll every `segment.bytes`.
struct Log {
    dir: PathBuf,
    options: DiskOptions,
    store: Option<DiskStore>,
    sink: Sink,
    rx: mpsc::Receiver<(CmdId, Completion)>,
    next_cmd: u64,
    next_offset: i64,
    written: Vec<Rec>,
}

impl Log {
    fn new(name: &str, segment_bytes: u32, options: DiskOptions) -> Self {
        let dir = std::env::temp_dir().join(format!("kelp-cleaner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tx, rx) = mpsc::channel();
        let store = DiskStore::open_with(&dir, options).expect("open");
        let mut log = Self {
            dir,
            options,
            store: Some(store),
            sink: Arc::new(ChannelSink(Mutex::new(tx))),
            rx,
            next_cmd: 0,
            next_offset: 0,
            written: Vec::new(),
        };
        let topic = TopicRecord {
            name: KStr::from("compacted"),
            id: PART.topic_id,
            partitions: 1,
            configs: vec![
                (KStr::from("cleanup.policy"), KStr::from("compact")),
                (KStr::from("segment.bytes"), KStr::from(segment_bytes.to_string())),
            ],
        };
        assert_eq!(log.run(Command::PutTopic(topic)), Completion::Done);
        log
    }

    fn options() -> DiskOptions {
        DiskOptions { index_interval: 256, ..DiskOptions::new(Fsync::Always) }
    }

    fn submit(&mut self, command: Command) -> CmdId {
        let cmd = CmdId(self.next_cmd);
        self.next_cmd += 1;
        self.store.as_mut().expect("open").submit(cmd, command, &self.sink);
        cmd
    }

    fn wait(&self) -> (CmdId, Completion) {
        self.rx.recv_timeout(Duration::from_secs(60)).expect("an answer")
    }

    fn run(&mut self, command: Command) -> Completion {
        let cmd = self.submit(command);
        let (got, result) = self.wait();
        assert_eq!(got, cmd);
        result
    }

    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(DiskStore::open_with(&self.dir, self.options).expect("reopen"));
    }

    /// Appends one batch of `(key, value)` records at `timestamp`, with a header naming the
    /// offset; `producer` is (id, base sequence).
    fn append(&mut self, records: &[(&str, Option<&str>)], timestamp: i64, producer: Option<(i64, i32)>) {
        let base = self.next_offset;
        let mut b = RecordBatchBuilder::new(Compression::None).base_offset(base);
        if let Some((id, seq)) = producer {
            b = b.producer(id, 0, seq);
        }
        for (i, (k, v)) in records.iter().enumerate() {
            let offset = base + i as i64;
            let headers = vec![Header { key: Bytes::from_static(b"at"), value: Some(Bytes::from(offset.to_string())) }];
            b.append(timestamp, Some(k.as_bytes()), v.map(str::as_bytes), &headers).expect("builds");
            self.written.push(Rec {
                offset,
                timestamp,
                key: Some(Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: headers.into_iter().map(|h| (h.key, h.value)).collect(),
            });
        }
        let batches = b.build().expect("builds");
        let last = base + records.len() as i64 - 1;
        let command = Command::Append {
            partition: PART,
            base_offset: base,
            last_offset: last,
            max_timestamp: timestamp,
            batches: batches.into(),
            recompress: None,
        };
        assert_eq!(self.run(command), Completion::Done);
        self.next_offset = last + 1;
    }

    fn spec(&self, now_ms: i64) -> CleanSpec {
        CleanSpec {
            now_ms,
            min_cleanable_dirty_ratio: 0.0,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 1000,
            limit: self.next_offset,
        }
    }

    fn clean(&mut self, now_ms: i64) -> CleanReport {
        let spec = self.spec(now_ms);
        match self.run(Command::Clean { partition: PART, spec }) {
            Completion::Cleaned(r) => r,
            other => panic!("clean answered {other:?}"),
        }
    }

    fn batches(&mut self, offset: i64, max_bytes: usize) -> Vec<RecordBatch> {
        let read = Command::Read { partition: PART, offset, end: self.next_offset, max_bytes };
        let Completion::Read { batches } = self.run(read) else { panic!("read failed") };
        let mut out = Vec::new();
        for chunk in batches {
            let mut rest = chunk;
            while !rest.is_empty() {
                out.push(RecordBatch::split_first(&mut rest).expect("whole batches"));
            }
        }
        out
    }

    /// Every record from the start, read in small steps.
    fn read_all(&mut self) -> Vec<Rec> {
        let mut out: Vec<Rec> = Vec::new();
        let mut offset = 0;
        while offset < self.next_offset {
            let batches = self.batches(offset, 700);
            assert!(!batches.is_empty(), "a read at {offset} below the end returns a batch");
            for b in &batches {
                assert!(b.last_offset() >= offset, "the batch holding {offset} or a later one");
                b.validate().expect("intact");
                for r in &b.records(1 << 20).expect("records") {
                    let r = r.expect("record");
                    let headers =
                        r.headers().map(|h| h.map(|h| (h.key, h.value))).collect::<Result<_, _>>().expect("headers");
                    let rec =
                        Rec { offset: r.offset(), timestamp: r.timestamp(), key: r.key(), value: r.value(), headers };
                    assert!(out.last().is_none_or(|l| l.offset < rec.offset), "offsets rise");
                    out.push(rec);
                }
                offset = b.last_offset() + 1;
            }
        }
        out
    }

    /// The base offset of the active segment.
    fn active_base(&self) -> i64 {
        segment_bases(&self.part_dir()).last().copied().unwrap_or(0)
    }

    fn part_dir(&self) -> PathBuf {
        let hex: String = PART.topic_id.0.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("p-{hex}-{}", PART.partition))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.store = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".log")?.parse().ok())
        .collect();
    bases.sort_unstable();
    bases
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

/// What a pass that read every closed segment (below `end`) into its key map keeps: the
/// latest record of each key below `end`, and everything from `end` on.
fn compacted(written: &[Rec], end: i64) -> Vec<Rec> {
    let mut latest: BTreeMap<&Option<Bytes>, i64> = BTreeMap::new();
    for r in written.iter().filter(|r| r.offset < end) {
        latest.insert(&r.key, r.offset);
    }
    written.iter().filter(|r| r.offset >= end || latest.get(&r.key) == Some(&r.offset)).cloned().collect()
}

/// 300 single-record batches over 10 keys, timestamps 1000 + i.
fn fill(log: &mut Log) {
    for i in 0..300 {
        let key = format!("key-{}", i % 10);
        let value = format!("value-{i}");
        log.append(&[(key.as_str(), Some(value.as_str()))], 1000 + i, None);
    }
}

#[test]
fn a_pass_keeps_the_latest_record_of_every_key_with_its_offset_timestamp_and_headers() {
    let mut log = Log::new("latest", 2048, Log::options());
    fill(&mut log);
    let before = log.read_all();
    assert_eq!(before, log.written);
    let report = log.clean(10_000);
    let end = log.active_base();
    assert!(end > 0 && report.cleaned, "{report:?}");
    let want = compacted(&log.written, end);
    let got = log.read_all();
    assert_eq!(got, want);
    assert_eq!(report.records_removed, (log.written.len() - want.len()) as u64);
    assert!(report.bytes_written < report.bytes_read / 4, "{report:?}");
    assert!(report.dirty_ratio > 0.99, "nothing was clean before: {report:?}");
    assert!(leftovers(&log.part_dir()).is_empty());
    // Nothing changed below the log end: appends continue where they were.
    log.append(&[("key-0", Some("after"))], 5000, None);
    assert_eq!(log.read_all().last().map(|r| r.offset), Some(300));
}

#[test]
fn a_cleaned_log_reads_the_same_after_reopening_and_cleans_again() {
    let mut log = Log::new("reopen", 2048, Log::options());
    fill(&mut log);
    log.clean(10_000);
    let cleaned = log.read_all();
    log.reopen();
    assert_eq!(log.read_all(), cleaned);
    let Completion::Partition(extent) = log.run(Command::RecoverPartition { partition: PART, from: 0 }) else {
        panic!("extent")
    };
    assert_eq!((extent.log_start, extent.next_offset), (0, 300));
    assert_eq!(extent.max_timestamp, TimestampOffset { timestamp: 1299, offset: 299 });
    // More of the same keys: the second pass drops what they supersede.
    for i in 300..400 {
        let (key, value) = (format!("key-{}", i % 10), format!("value-{i}"));
        log.append(&[(key.as_str(), Some(value.as_str()))], 1000 + i, None);
    }
    let report = log.clean(10_000);
    assert!(report.cleaned && report.records_removed > 0, "{report:?}");
    let want = compacted(&log.written, log.active_base());
    assert_eq!(log.read_all(), want);
    log.reopen();
    assert_eq!(log.read_all(), want);
}

#[test]
fn reads_and_timestamp_lookups_cross_the_gaps() {
    let mut log = Log::new("gaps", 2048, Log::options());
    fill(&mut log);
    log.clean(10_000);
    let kept = log.read_all();
    for offset in 0..log.next_offset {
        let first = kept.iter().find(|r| r.offset >= offset).map(|r| r.offset);
        let batches = log.batches(offset, 1);
        let got = batches.first().map(|b| b.last_offset());
        assert_eq!(got, first, "a read at {offset} starts at the next record kept");
    }
    for ts in [0, 1000, 1001, 1150, 1290, 1299, 1300] {
        let want = kept
            .iter()
            .find(|r| r.timestamp >= ts)
            .map(|r| TimestampOffset { timestamp: r.timestamp, offset: r.offset });
        assert_eq!(
            log.run(Command::FindOffset { partition: PART, timestamp: ts }),
            Completion::Offset { found: want },
            "{ts}"
        );
    }
}

#[test]
fn tombstones_stay_until_their_delete_horizon() {
    let mut log = Log::new("tombstones", 1024, Log::options());
    for i in 0..100 {
        let key = format!("key-{}", i % 5);
        log.append(&[(key.as_str(), Some("v"))], 1000 + i, None);
    }
    log.append(&[("key-0", None), ("key-1", None)], 1100, None);
    for i in 0..30 {
        log.append(&[("other", Some("x"))], 1101 + i, None);
    }
    // Within delete.retention.ms (1000) of the tombstones: they stay, as the latest of
    // their keys.
    log.clean(1200);
    let tombstones = |recs: &[Rec]| recs.iter().filter(|r| r.value.is_none()).count();
    assert_eq!(tombstones(&log.read_all()), 2);
    // Once past the horizon, a later pass removes them.
    for i in 0..30 {
        log.append(&[("other", Some("y"))], 1200 + i, None);
    }
    log.clean(5000);
    log.clean(5000);
    let after = log.read_all();
    assert_eq!(tombstones(&after), 0, "{after:?}");
    assert!(after.iter().all(|r| r.key.as_deref() != Some(b"key-0")), "key-0 is gone");
    assert!(after.iter().any(|r| r.key.as_deref() == Some(b"key-2")), "key-2 lives");
}

#[test]
fn each_idempotent_producers_last_batch_survives() {
    let mut log = Log::new("producer", 1024, Log::options());
    for seq in 0..20 {
        log.append(&[("k", Some("from the producer"))], 1000 + i64::from(seq), Some((42, seq)));
    }
    for i in 0..40 {
        log.append(&[("k", Some("later"))], 2000 + i, None);
    }
    let last = log.written[19].offset;
    log.clean(10_000);
    let kept: Vec<RecordBatch> = log.batches(0, 1 << 20);
    let producer: Vec<&RecordBatch> = kept.iter().filter(|b| b.producer_id() == 42).collect();
    assert_eq!(producer.len(), 1, "only the producer's last batch stays");
    assert_eq!((producer[0].base_offset(), producer[0].base_sequence()), (last, 19));
    log.reopen();
    let Completion::Partition(extent) = log.run(Command::RecoverPartition { partition: PART, from: 0 }) else {
        panic!("extent")
    };
    let summary = extent.producer_batches.iter().find(|b| b.producer_id == 42).expect("the producer is known");
    assert_eq!((summary.base_offset, summary.last_sequence), (last, 19));
}

#[test]
fn a_pass_whose_segments_retention_removed_is_discarded() {
    // A slow cleaner (its IO rate limit) lets DeleteRecords remove segments mid-pass.
    let options = DiskOptions { cleaner_io_max_bytes_per_second: Some(20_000), ..Log::options() };
    let mut log = Log::new("discarded", 2048, options);
    fill(&mut log);
    let bases = segment_bases(&log.part_dir());
    let start = bases[2];
    let spec = log.spec(10_000);
    let clean = log.submit(Command::Clean { partition: PART, spec });
    let trim = log.submit(Command::SetLogStart { partition: PART, offset: start });
    let mut answers = BTreeMap::new();
    for _ in 0..2 {
        let (cmd, result) = log.wait();
        answers.insert(cmd, result);
    }
    assert_eq!(answers[&trim], Completion::Done);
    let Completion::Cleaned(report) = answers[&clean] else { panic!("{:?}", answers[&clean]) };
    assert!(!report.cleaned, "{report:?}");
    assert!(leftovers(&log.part_dir()).is_empty());
    let want: Vec<Rec> = log.written.iter().filter(|r| r.offset >= start).cloned().collect();
    let got: Vec<Rec> = log.read_all().into_iter().filter(|r| r.offset >= start).collect();
    assert_eq!(got, want);
    // The next pass works on what is left.
    assert!(log.clean(10_000).cleaned);
    let got: Vec<Rec> = log.read_all();
    assert_eq!(got, compacted(&want, log.active_base()));
}

#[test]
fn a_damaged_batch_fails_the_pass_and_changes_nothing() {
    let mut log = Log::new("damaged", 2048, Log::options());
    fill(&mut log);
    log.store = None;
    let first = log.part_dir().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&first).expect("segment");
    // The last byte of the batch in the middle of the segment: inside a record, where
    // opening the segment does not look.
    let mut at = 0;
    while at < bytes.len() / 2 {
        at += kelp_core::records::frame(&bytes[at..]).expect("whole batches");
    }
    bytes[at - 1] ^= 0xff;
    std::fs::write(&first, &bytes).expect("damage");
    log.reopen();
    let spec = log.spec(10_000);
    let result = log.run(Command::Clean { partition: PART, spec });
    assert!(matches!(result, Completion::Failed(kelp_core::io::StorageError::Corrupt(_))), "{result:?}");
    assert!(leftovers(&log.part_dir()).is_empty());
    assert_eq!(std::fs::read(&first).expect("segment"), bytes, "the damaged segment is left as it was");
}

#[test]
fn without_cleaner_threads_clean_reports_the_dirty_ratio_and_cleans_nothing() {
    let mut log = Log::new("off", 2048, DiskOptions { cleaner_threads: 0, ..Log::options() });
    fill(&mut log);
    let report = log.clean(10_000);
    assert!(!report.cleaned && report.dirty_ratio > 0.99, "{report:?}");
    assert_eq!(log.read_all(), log.written);
}

#[test]
fn a_small_key_map_cleans_in_several_passes() {
    // Room for about 20 keys' entries per pass.
    let options = DiskOptions { cleaner_dedupe_buffer_bytes: 20 * 48, ..Log::options() };
    let mut log = Log::new("small-map", 2048, options);
    for i in 0..300 {
        let (key, value) = (format!("key-{}", i % 50), format!("value-{i}"));
        log.append(&[(key.as_str(), Some(value.as_str()))], 1000 + i, None);
    }
    let end = log.active_base();
    let mut passes = 0;
    while log.clean(10_000).cleaned {
        passes += 1;
        assert!(passes < 100, "passes make progress");
    }
    assert!(passes > 1, "{passes} passes");
    assert_eq!(log.read_all(), compacted(&log.written, end));
}
