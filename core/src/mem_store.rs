//! `MemStore`: the reference executor of storage [`Command`]s, in memory and deterministic.
//!
//! It defines what every store must do (the disk and SeaweedMQ backends are tested against
//! it), backs `kelp serve --storage memory`, and runs under the simulator. Nothing survives the
//! process.
//!
//! It enforces the append rule stores share: an append's base offset must be the partition's
//! next offset, so after a failed append nothing later is stored out of place.

use std::collections::BTreeMap;

use bytes::Bytes;
use hashbrown::HashMap;
use smallvec::SmallVec;

use crate::codec::Uuid;
use crate::io::{
    AppendBatches, BatchSummary, Command, Completion, DEFAULT_SEGMENT_BYTES, PartitionExtent, PartitionKey, Recompress,
    Recovered, StorageError, TimestampOffset, TopicRecord, should_roll,
};
use crate::log::PRODUCER_BATCHES;

mod cleaning;
use crate::records::{RecordBatch, header_max_timestamp};
pub use cleaning::{CleanOutcome, CleanPass, PreparedClean};

/// The key map budget of a cleaning pass unless set (Kafka's default dedupe buffer, 128 MiB).
pub const DEFAULT_CLEANER_BUDGET: usize = 128 * 1024 * 1024;

/// Largest decompressed batch the store will look inside (timestamp lookups).
const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

/// One appended batch. A produced batch is kept as the append carried it, its rewritten
/// header beside the request's bytes (no copy on append); reads hand out both chunks, and the
/// rarer paths that look inside a batch join them.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    data: AppendBatches,
}

impl Stored {
    /// The batch as one buffer (a copy when it is kept in two parts).
    fn batch(&self) -> Result<RecordBatch, crate::records::RecordsError> {
        RecordBatch::new(self.data.to_bytes())
    }
}

/// A segment as the disk store would cut it: rolled by `segment.bytes`, so that retention
/// (which deletes whole segments) gives the same answers here as on disk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemSegment {
    base_offset: i64,
    size: u64,
    max_timestamp: i64,
    /// The largest timestamp of the segment's first batch (`segment.ms` counts from it).
    first_timestamp: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MemLog {
    log_start: i64,
    next_offset: i64,
    batches: Vec<Stored>,
    segments: Vec<MemSegment>,
    /// The cleaner's checkpoint: offsets below it were deduplicated by an earlier pass.
    first_dirty: i64,
    /// The earliest delete horizon of the tombstones an earlier pass kept.
    earliest_horizon: Option<i64>,
    /// Bumped whenever batches leave the front of the log (retention, DeleteRecords, a
    /// cleaning pass), so that a pass prepared before cannot be installed over them.
    epoch: u64,
}

impl MemLog {
    /// Runs `f`, bumping the epoch if it removed anything from the front of the log.
    fn trimming<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let before = (self.segments.len(), self.batches.len());
        let out = f(self);
        if (self.segments.len(), self.batches.len()) != before {
            self.epoch += 1;
        }
        out
    }

    /// Drops whole segments below the log start (never the last one), then the batches
    /// before the log start.
    fn drop_below_start(&mut self) {
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start {
            self.segments.remove(0);
        }
        let start = self.log_start;
        self.batches.retain(|b| b.last_offset >= start);
    }

    /// See [`Command::Retain`].
    fn retain(&mut self, older_than: Option<i64>, max_bytes: Option<u64>, limit: i64) -> i64 {
        let mut total: u64 = self.segments.iter().map(|s| s.size).sum();
        while self.segments.len() > 1 {
            let (first, next_base) = (self.segments[0], self.segments[1].base_offset);
            if next_base > limit {
                break;
            }
            let by_time = older_than.is_some_and(|t| first.max_timestamp < t);
            let by_size = max_bytes.is_some_and(|m| total - first.size >= m);
            if !(by_time || by_size || next_base <= self.log_start) {
                break;
            }
            total -= first.size;
            self.segments.remove(0);
            self.log_start = self.log_start.max(next_base);
        }
        self.drop_below_start();
        self.log_start
    }
}

/// An in-memory store.
#[derive(Debug, Clone)]
pub struct MemStore {
    topics: BTreeMap<Uuid, TopicRecord>,
    logs: HashMap<PartitionKey, MemLog>,
    values: BTreeMap<Bytes, Bytes>,
    segment_bytes: u64,
    cleaner_budget: usize,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::with_segment_bytes(DEFAULT_SEGMENT_BYTES)
    }

    /// An empty store whose segments roll at `segment_bytes` unless a topic's
    /// `segment.bytes` says otherwise.
    #[must_use]
    pub fn with_segment_bytes(segment_bytes: u64) -> Self {
        Self {
            topics: BTreeMap::new(),
            logs: HashMap::new(),
            values: BTreeMap::new(),
            segment_bytes,
            cleaner_budget: DEFAULT_CLEANER_BUDGET,
        }
    }

    /// The same store with a key map budget of `bytes` for each cleaning pass (Kafka's
    /// `log.cleaner.dedupe.buffer.size`); a small one makes passes stop part way, as a large
    /// log does on a real budget.
    #[must_use]
    pub fn with_cleaner_budget(mut self, bytes: usize) -> Self {
        self.cleaner_budget = bytes;
        self
    }

    /// The offset the partition's next record gets (0 for a partition that has none).
    #[must_use]
    pub fn end(&self, partition: PartitionKey) -> i64 {
        self.logs.get(&partition).map_or(0, |l| l.next_offset)
    }

    /// Drops the partition's records from `end` on: what a store that acknowledged them
    /// before making them durable loses in a crash (for the simulator). `end` must be the
    /// partition's end or a batch boundary at or after its log start; returns false and
    /// changes nothing otherwise.
    pub fn truncate(&mut self, partition: PartitionKey, end: i64) -> bool {
        let Some(log) = self.logs.get_mut(&partition) else { return end == 0 };
        if end >= log.next_offset {
            return end == log.next_offset;
        }
        if end < log.log_start || !log.batches.iter().any(|b| b.base_offset == end) {
            return false;
        }
        log.batches.retain(|b| b.base_offset < end);
        log.segments.retain(|s| s.base_offset < end);
        if let Some(seg) = log.segments.last_mut() {
            let kept = log.batches.iter().filter(|b| b.base_offset >= seg.base_offset);
            seg.size = kept.clone().map(|b| b.data.len() as u64).sum();
            seg.max_timestamp = kept.map(|b| b.max_timestamp).max().unwrap_or(-1);
        }
        log.next_offset = end;
        log.first_dirty = log.first_dirty.min(end);
        log.epoch += 1;
        true
    }

    /// Runs one command to completion.
    pub fn execute(&mut self, command: Command) -> Completion {
        match command {
            Command::Recover => Completion::Recovered(Box::new(self.recover())),
            Command::PutTopic(t) => {
                self.topics.insert(t.id, t);
                Completion::Done
            }
            Command::DeleteTopic { topic_id } => {
                self.topics.remove(&topic_id);
                self.logs.retain(|k, _| k.topic_id != topic_id);
                Completion::Done
            }
            Command::Append { partition, base_offset, last_offset, max_timestamp, batches, recompress } => {
                self.append(partition, (base_offset, last_offset, max_timestamp), batches, recompress)
            }
            Command::Read { partition, offset, end, max_bytes } => self.read(partition, offset, end, max_bytes),
            Command::FindOffset { partition, timestamp } => self.find_offset(partition, timestamp),
            Command::SetLogStart { partition, offset } => {
                let log = self.logs.entry(partition).or_default();
                if offset > log.next_offset {
                    return Completion::Failed(StorageError::Corrupt("log start beyond the log end"));
                }
                log.log_start = log.log_start.max(offset);
                log.trimming(MemLog::drop_below_start);
                Completion::Done
            }
            Command::Retain { partition, older_than, max_bytes, limit } => {
                let Some(log) = self.logs.get_mut(&partition) else {
                    return Completion::LogStart { offset: 0, max_timestamp: TimestampOffset::NONE };
                };
                let offset = log.trimming(|log| log.retain(older_than, max_bytes, limit));
                Completion::LogStart { offset, max_timestamp: extent(log).max_timestamp }
            }
            Command::Clean { partition, spec } => match self.prepare_clean(partition, &spec) {
                PreparedClean::Done(result) => result,
                PreparedClean::Pass(pass) => self.finish_clean(pass.run()),
            },
            Command::RecoverPartition { partition, .. } => {
                if !self.topics.contains_key(&partition.topic_id) {
                    return Completion::Failed(StorageError::NotFound);
                }
                let extent = self.logs.get(&partition).map_or(
                    PartitionExtent { max_timestamp: TimestampOffset::NONE, ..PartitionExtent::default() },
                    extent,
                );
                Completion::Partition(extent)
            }
            // Everything this store holds is as durable as it gets: appends answer `Done`.
            Command::AwaitDurable { partition, .. } => match self.logs.get(&partition) {
                Some(log) => Completion::Durable { end: log.next_offset },
                None if self.topics.contains_key(&partition.topic_id) => Completion::Durable { end: 0 },
                None => Completion::Failed(StorageError::NotFound),
            },
            Command::Put { key, value } => {
                match value {
                    Some(v) => self.values.insert(key, v),
                    None => self.values.remove(&key),
                };
                Completion::Done
            }
        }
    }

    fn append(
        &mut self,
        key: PartitionKey,
        (base, last, max_ts): (i64, i64, i64),
        data: AppendBatches,
        recompress: Option<Recompress>,
    ) -> Completion {
        let Some(topic) = self.topics.get(&key.topic_id) else {
            return Completion::Failed(StorageError::NotFound);
        };
        let default_bytes = self.segment_bytes;
        let log = self.logs.entry(key).or_default();
        if base != log.next_offset || last < base {
            return Completion::Failed(StorageError::Corrupt("append does not continue the log"));
        }
        // Inline here, as every store does it: before anything is written.
        let data = match recompress.map(|r| r.apply(data.to_bytes())) {
            None => data,
            Some(Ok(re)) => re.into(),
            Some(Err(e)) => return Completion::Failed(e),
        };
        let len = data.len() as u64;
        match log.segments.last_mut() {
            Some(s)
                if !should_roll(
                    topic,
                    default_bytes,
                    (s.size, s.base_offset, s.first_timestamp),
                    (len, last, max_ts),
                ) =>
            {
                s.size += len;
                s.max_timestamp = s.max_timestamp.max(max_ts);
            }
            _ => {
                // From the first batch's header: the records are not joined for it.
                let first_timestamp = data.chunks().next().and_then(|c| header_max_timestamp(c)).unwrap_or(-1);
                let seg = MemSegment { base_offset: base, size: len, max_timestamp: max_ts, first_timestamp };
                log.segments.push(seg);
            }
        }
        log.next_offset = last + 1;
        log.batches.push(Stored { base_offset: base, last_offset: last, max_timestamp: max_ts, data });
        Completion::Done
    }

    fn read(&self, key: PartitionKey, offset: i64, end: i64, max_bytes: usize) -> Completion {
        let mut batches: SmallVec<[Bytes; 2]> = SmallVec::new();
        let Some(log) = self.logs.get(&key) else { return Completion::Read { batches } };
        let first = log.batches.partition_point(|b| b.last_offset < offset);
        let mut used = 0usize;
        for b in log.batches[first..].iter().take_while(|b| b.base_offset < end) {
            if !batches.is_empty() && used + b.data.len() > max_bytes {
                break;
            }
            used += b.data.len();
            batches.extend(b.data.chunks().cloned());
        }
        Completion::Read { batches }
    }

    fn find_offset(&self, key: PartitionKey, timestamp: i64) -> Completion {
        let Some(log) = self.logs.get(&key) else { return Completion::Offset { found: None } };
        for b in log.batches.iter().filter(|b| b.max_timestamp >= timestamp) {
            let Ok(batch) = b.batch() else { continue };
            let Ok(records) = batch.records(MAX_DECOMPRESSED) else { continue };
            for r in &records {
                let Ok(r) = r else { break };
                if r.timestamp() >= timestamp && r.offset() >= log.log_start {
                    return Completion::Offset {
                        found: Some(TimestampOffset { timestamp: r.timestamp(), offset: r.offset() }),
                    };
                }
            }
        }
        Completion::Offset { found: None }
    }

    fn recover(&self) -> Recovered {
        let partitions = self
            .logs
            .iter()
            .filter(|(k, _)| self.topics.contains_key(&k.topic_id))
            .map(|(k, log)| (*k, extent(log)))
            .collect();
        Recovered {
            topics: self.topics.values().cloned().collect(),
            partitions,
            values: self.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// A log's extent, with the last few batches of each idempotent producer.
fn extent(log: &MemLog) -> PartitionExtent {
    let mut max_timestamp = TimestampOffset::NONE;
    let mut per_producer: HashMap<i64, Vec<BatchSummary>> = HashMap::new();
    for b in &log.batches {
        if b.max_timestamp > max_timestamp.timestamp {
            max_timestamp = TimestampOffset { timestamp: b.max_timestamp, offset: b.last_offset };
        }
        let Ok(batch) = b.batch() else { continue };
        if batch.producer_id() < 0 {
            continue;
        }
        let delta = batch.last_offset_delta();
        let entry = per_producer.entry(batch.producer_id()).or_default();
        entry.push(BatchSummary {
            producer_id: batch.producer_id(),
            producer_epoch: batch.producer_epoch(),
            base_sequence: batch.base_sequence(),
            last_sequence: batch.base_sequence().wrapping_add(delta) & i32::MAX,
            base_offset: b.base_offset,
            last_offset: b.last_offset,
            timestamp: b.max_timestamp,
        });
        if entry.len() > PRODUCER_BATCHES {
            entry.remove(0);
        }
    }
    let mut producer_batches: Vec<BatchSummary> = per_producer.into_values().flatten().collect();
    producer_batches.sort_by_key(|b| b.base_offset);
    PartitionExtent { log_start: log.log_start, next_offset: log.next_offset, max_timestamp, producer_batches }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::KStr;
    use crate::io::{CleanReport, CleanSpec};
    use crate::records::{Compression, RecordBatchBuilder};

    const KEY: PartitionKey = PartitionKey { topic_id: Uuid([7; 16]), partition: 0 };

    fn store() -> MemStore {
        let mut s = MemStore::new();
        let configs = vec![(KStr::from_static("segment.bytes"), KStr::from_static("1"))];
        s.execute(Command::PutTopic(TopicRecord { name: "t".into(), id: KEY.topic_id, partitions: 1, configs }));
        s
    }

    fn append(s: &mut MemStore, offset: i64, key: &str, value: Option<&str>) {
        let mut b = RecordBatchBuilder::new(Compression::None).base_offset(offset);
        b.append(offset, Some(key.as_bytes()), value.map(str::as_bytes), &[]).unwrap();
        let batches = b.build().unwrap();
        let cmd = Command::Append {
            partition: KEY,
            base_offset: offset,
            last_offset: offset,
            max_timestamp: offset,
            batches: batches.into(),
            recompress: None,
        };
        assert_eq!(s.execute(cmd), Completion::Done);
    }

    fn read_all(s: &mut MemStore) -> Vec<(i64, String)> {
        let Completion::Read { batches } =
            s.execute(Command::Read { partition: KEY, offset: 0, end: i64::MAX, max_bytes: usize::MAX })
        else {
            panic!("read")
        };
        let mut out = Vec::new();
        for b in batches {
            for r in &RecordBatch::new(b).unwrap().records(1 << 20).unwrap() {
                let r = r.unwrap();
                out.push((r.offset(), String::from_utf8(r.key_slice().unwrap().to_vec()).unwrap()));
            }
        }
        out
    }

    fn clean(s: &mut MemStore, limit: i64) -> CleanReport {
        let spec = CleanSpec {
            now_ms: 100,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 0,
            limit,
        };
        let Completion::Cleaned(r) = s.execute(Command::Clean { partition: KEY, spec }) else { panic!("cleaned") };
        r
    }

    #[test]
    fn a_pass_keeps_the_latest_of_each_key_at_its_offset_and_checkpoints() {
        let mut s = store();
        for (i, k) in ["a", "b", "a", "c", "b", "a"].into_iter().enumerate() {
            append(&mut s, i as i64, k, Some("v"));
        }
        let r = clean(&mut s, 6);
        assert!(r.cleaned && r.dirty_ratio == 1.0, "{r:?}");
        assert_eq!(r.records_removed, 2, "the active segment (offset 5) is not cleaned");
        assert_eq!(read_all(&mut s), [(2, "a".into()), (3, "c".into()), (4, "b".into()), (5, "a".into())]);
        // Clean up to the checkpoint: nothing dirty until more segments close.
        assert!(!clean(&mut s, 6).cleaned);
        append(&mut s, 6, "c", Some("v"));
        append(&mut s, 7, "x", Some("v"));
        let r = clean(&mut s, 8);
        assert!(!r.cleaned && (r.dirty_ratio - 0.4).abs() < 1e-9, "two dirty of five closed segments: {r:?}");
        append(&mut s, 8, "a", Some("v"));
        append(&mut s, 9, "z", Some("v"));
        assert!(clean(&mut s, 10).cleaned);
        let want = [(4, "b".into()), (6, "c".into()), (7, "x".into()), (8, "a".into()), (9, "z".into())];
        assert_eq!(read_all(&mut s), want);
        append(&mut s, 10, "y", None);
        // Offsets go on where they were.
        let Completion::Partition(e) = s.execute(Command::RecoverPartition { partition: KEY, from: 0 }) else {
            panic!("extent")
        };
        assert_eq!(e.next_offset, 11);
    }

    fn spec(limit: i64) -> CleanSpec {
        CleanSpec {
            now_ms: 100,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 0,
            limit,
        }
    }

    #[test]
    fn a_pass_run_apart_installs_over_appends_but_not_over_a_trimmed_log() {
        let mut s = store();
        for (i, k) in ["a", "a", "b", "b"].into_iter().enumerate() {
            append(&mut s, i as i64, k, Some("v"));
        }
        let PreparedClean::Pass(pass) = s.prepare_clean(KEY, &spec(4)) else { panic!("due") };
        // Appends while the pass runs elsewhere do not conflict.
        append(&mut s, 4, "a", Some("v"));
        let Completion::Cleaned(r) = s.finish_clean(pass.run()) else { panic!("cleaned") };
        assert!(r.cleaned && r.records_removed == 1, "b at 3 was active when planned: {r:?}");
        assert_eq!(read_all(&mut s), [(1, "a".into()), (2, "b".into()), (3, "b".into()), (4, "a".into())]);
        // DeleteRecords moving the log start while a pass runs: the pass is dropped.
        append(&mut s, 5, "c", Some("v"));
        append(&mut s, 6, "c", Some("v"));
        let PreparedClean::Pass(pass) = s.prepare_clean(KEY, &spec(7)) else { panic!("due") };
        assert_eq!(s.execute(Command::SetLogStart { partition: KEY, offset: 2 }), Completion::Done);
        let Completion::Cleaned(r) = s.finish_clean(pass.run()) else { panic!("answered") };
        assert!(!r.cleaned, "{r:?}");
        let want = [(2, "b".into()), (3, "b".into()), (4, "a".into()), (5, "c".into()), (6, "c".into())];
        assert_eq!(read_all(&mut s), want);
    }
}
