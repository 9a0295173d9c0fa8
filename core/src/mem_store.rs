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
    BatchSummary, Command, Completion, DEFAULT_SEGMENT_BYTES, PartitionExtent, PartitionKey, Recovered, StorageError,
    TimestampOffset, TopicRecord, should_roll,
};
use crate::log::PRODUCER_BATCHES;
use crate::records::RecordBatch;

/// Largest decompressed batch the store will look inside (timestamp lookups).
const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Stored {
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    data: Bytes,
}

/// A segment as the disk store would cut it: rolled by `segment.bytes`, so that retention
/// (which deletes whole segments) gives the same answers here as on disk.
#[derive(Debug, Clone, Copy)]
struct MemSegment {
    base_offset: i64,
    size: u64,
    max_timestamp: i64,
    /// The largest timestamp of the segment's first batch (`segment.ms` counts from it).
    first_timestamp: i64,
}

#[derive(Debug, Clone, Default)]
struct MemLog {
    log_start: i64,
    next_offset: i64,
    batches: Vec<Stored>,
    segments: Vec<MemSegment>,
}

impl MemLog {
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
        Self { topics: BTreeMap::new(), logs: HashMap::new(), values: BTreeMap::new(), segment_bytes }
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
            Command::Append { partition, base_offset, last_offset, max_timestamp, batches } => {
                self.append(partition, base_offset, last_offset, max_timestamp, batches)
            }
            Command::Read { partition, offset, end, max_bytes } => self.read(partition, offset, end, max_bytes),
            Command::FindOffset { partition, timestamp } => self.find_offset(partition, timestamp),
            Command::SetLogStart { partition, offset } => {
                let log = self.logs.entry(partition).or_default();
                if offset > log.next_offset {
                    return Completion::Failed(StorageError::Corrupt("log start beyond the log end"));
                }
                log.log_start = log.log_start.max(offset);
                log.drop_below_start();
                Completion::Done
            }
            Command::Retain { partition, older_than, max_bytes, limit } => {
                let Some(log) = self.logs.get_mut(&partition) else {
                    return Completion::LogStart { offset: 0, max_timestamp: TimestampOffset::NONE };
                };
                let offset = log.retain(older_than, max_bytes, limit);
                Completion::LogStart { offset, max_timestamp: extent(log).max_timestamp }
            }
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
            Command::Put { key, value } => {
                match value {
                    Some(v) => self.values.insert(key, v),
                    None => self.values.remove(&key),
                };
                Completion::Done
            }
        }
    }

    fn append(&mut self, key: PartitionKey, base: i64, last: i64, max_ts: i64, data: Bytes) -> Completion {
        let Some(topic) = self.topics.get(&key.topic_id) else {
            return Completion::Failed(StorageError::NotFound);
        };
        let default_bytes = self.segment_bytes;
        let log = self.logs.entry(key).or_default();
        if base != log.next_offset || last < base {
            return Completion::Failed(StorageError::Corrupt("append does not continue the log"));
        }
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
                let mut first = data.clone();
                let first_timestamp = RecordBatch::split_first(&mut first).map_or(-1, |b| b.max_timestamp());
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
            batches.push(b.data.clone());
        }
        Completion::Read { batches }
    }

    fn find_offset(&self, key: PartitionKey, timestamp: i64) -> Completion {
        let Some(log) = self.logs.get(&key) else { return Completion::Offset { found: None } };
        for b in log.batches.iter().filter(|b| b.max_timestamp >= timestamp) {
            let Ok(batch) = RecordBatch::new(b.data.clone()) else { continue };
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
        let Ok(batch) = RecordBatch::new(b.data.clone()) else { continue };
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
