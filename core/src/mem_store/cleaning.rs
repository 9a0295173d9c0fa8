//! Cleaning a [`MemStore`] partition in three steps, so that the memory backend can run the
//! costly middle one off the broker's thread while the simulator runs all three at once:
//!
//! 1. [`MemStore::prepare_clean`] plans the pass ([`crate::cleaner::plan`]) and takes a
//!    snapshot of the batches it rewrites (shared handles, no copies);
//! 2. [`CleanPass::run`] builds the key map and filters the batches, touching no store;
//! 3. [`MemStore::finish_clean`] installs the result, unless the front of the log changed
//!    meanwhile (retention, DeleteRecords, another pass: the log's epoch moved), in which case
//!    the pass is dropped and reported as not cleaned. Appends never conflict: they only add
//!    to the active segment, which a pass never touches.

use bytes::Bytes;
use hashbrown::HashMap;

use super::{MemLog, MemSegment, MemStore, Stored};
use crate::cleaner::{self, Filtered, KeyMap, Plan, Rules, SegmentInfo};
use crate::io::{CleanReport, CleanSpec, Completion, PartitionKey, StorageError};
use crate::records::RecordBatch;

/// What [`MemStore::prepare_clean`] found.
#[derive(Debug)]
pub enum PreparedClean {
    /// Nothing to run: the answer to the command (not due, or no such partition).
    Done(Completion),
    /// A pass to run with [`CleanPass::run`], then hand to [`MemStore::finish_clean`].
    Pass(CleanPass),
}

/// A planned pass over a snapshot of one partition.
#[derive(Debug)]
pub struct CleanPass {
    partition: PartitionKey,
    epoch: u64,
    spec: CleanSpec,
    plan: Plan,
    /// Segments `0..plan.dirty.end`, the ones the pass replaces.
    infos: Vec<SegmentInfo>,
    /// Their batches.
    batches: Vec<Stored>,
    /// Each idempotent producer's last batch (base offset), in the whole log.
    last_of_producer: HashMap<i64, i64>,
    budget: usize,
    segment_bytes: u64,
}

/// What a pass made, for [`MemStore::finish_clean`].
#[derive(Debug)]
pub struct CleanOutcome {
    partition: PartitionKey,
    epoch: u64,
    dirty_ratio: f64,
    result: Result<Cleaned, StorageError>,
}

#[derive(Debug)]
struct Cleaned {
    /// Batches replacing the first `replaces.0` batches of the log.
    batches: Vec<Stored>,
    /// Segments replacing the first `replaces.1` segments.
    segments: Vec<MemSegment>,
    replaces: (usize, usize),
    first_dirty: i64,
    earliest_horizon: Option<i64>,
    report: CleanReport,
}

impl MemLog {
    /// The segments as the cleaner's planner sees them.
    fn segment_infos(&self) -> Vec<SegmentInfo> {
        let segments = self.segments.iter().map(|s| (s.base_offset, s.size, s.first_timestamp, s.max_timestamp));
        cleaner::segment_infos(segments, self.next_offset)
    }
}

impl MemStore {
    /// Step 1: plans a pass over `partition` under `spec` (see [`crate::io::Command::Clean`]).
    #[must_use]
    pub fn prepare_clean(&self, partition: PartitionKey, spec: &CleanSpec) -> PreparedClean {
        let (Some(topic), Some(log)) = (self.topics.get(&partition.topic_id), self.logs.get(&partition)) else {
            return PreparedClean::Done(Completion::Cleaned(CleanReport::default()));
        };
        let mut infos = log.segment_infos();
        let (dirty_ratio, plan) = cleaner::plan(&infos, log.first_dirty, log.earliest_horizon, spec);
        let Some(plan) = plan else {
            return PreparedClean::Done(Completion::Cleaned(CleanReport { dirty_ratio, ..CleanReport::default() }));
        };
        infos.truncate(plan.dirty.end);
        let end = infos.last().map_or(i64::MIN, |s| s.end_offset);
        let split = log.batches.partition_point(|b| b.base_offset < end);
        let mut last_of_producer = HashMap::new();
        for b in &log.batches {
            let pid = b.batch().map_or(-1, |b| b.producer_id());
            if pid >= 0 {
                last_of_producer.insert(pid, b.base_offset);
            }
        }
        PreparedClean::Pass(CleanPass {
            partition,
            epoch: log.epoch,
            spec: *spec,
            plan,
            infos,
            batches: log.batches[..split].to_vec(),
            last_of_producer,
            budget: self.cleaner_budget,
            segment_bytes: topic.segment_bytes(self.segment_bytes),
        })
    }

    /// Step 3: installs what `outcome`'s pass made, if its partition's log is as the pass
    /// found it; answers the [`crate::io::Command::Clean`].
    pub fn finish_clean(&mut self, outcome: CleanOutcome) -> Completion {
        let skipped = CleanReport { dirty_ratio: outcome.dirty_ratio, ..CleanReport::default() };
        let cleaned = match outcome.result {
            Ok(c) => c,
            Err(e) => return Completion::Failed(e),
        };
        let Some(log) = self.logs.get_mut(&outcome.partition).filter(|l| l.epoch == outcome.epoch) else {
            return Completion::Cleaned(skipped);
        };
        log.batches.splice(..cleaned.replaces.0, cleaned.batches);
        log.segments.splice(..cleaned.replaces.1, cleaned.segments);
        log.first_dirty = cleaned.first_dirty;
        log.earliest_horizon = cleaned.earliest_horizon;
        log.epoch += 1;
        Completion::Cleaned(cleaned.report)
    }
}

impl CleanPass {
    /// Step 2: the pass itself, the same plan, key map and batch filter as the disk store's,
    /// over the virtual segments. Pure: it can run on any thread.
    #[must_use]
    pub fn run(self) -> CleanOutcome {
        let (partition, epoch, dirty_ratio) = (self.partition, self.epoch, self.plan.dirty_ratio);
        CleanOutcome { partition, epoch, dirty_ratio, result: self.clean() }
    }

    fn clean(self) -> Result<Cleaned, StorageError> {
        let corrupt = |_| StorageError::Corrupt("a stored batch does not decode");
        let plan = &self.plan;
        let mut map = KeyMap::new(self.budget);
        for b in self.batches.iter().filter(|b| b.last_offset >= plan.first_dirty) {
            if !map.add(&b.batch().map_err(corrupt)?).map_err(corrupt)? {
                break;
            }
        }
        let rules = Rules::of(&self.spec);
        let mut report = CleanReport { dirty_ratio: plan.dirty_ratio, cleaned: true, ..CleanReport::default() };
        let mut kept = Vec::with_capacity(self.batches.len());
        for b in &self.batches {
            let batch = b.batch().map_err(corrupt)?;
            let keep_empty = self.last_of_producer.get(&batch.producer_id()) == Some(&b.base_offset);
            let (what, removed) = cleaner::filter(&batch, &map, &rules, keep_empty).map_err(corrupt)?;
            report.bytes_read += b.data.len() as u64;
            report.records_removed += u64::from(removed);
            match what {
                Filtered::Keep => kept.push(b.clone()),
                Filtered::Drop => {}
                Filtered::Rewrite(data) => kept.push(rewritten(b, data)),
            }
        }
        report.bytes_written = kept.iter().map(|b| b.data.len() as u64).sum();
        let earliest_horizon =
            kept.iter().filter_map(|b| b.batch().ok().as_ref().and_then(cleaner::delete_horizon)).min();
        let segments = self.regroup(&kept);
        Ok(Cleaned {
            replaces: (self.batches.len(), self.infos.len()),
            batches: kept,
            segments,
            first_dirty: map.end().unwrap_or(plan.first_dirty),
            earliest_horizon,
            report,
        })
    }

    /// New segments as the disk store writes them: runs of the old segments up to
    /// `segment.bytes`, each holding what is left of its batches. A run left with nothing is
    /// not kept: the next segment starts later instead.
    fn regroup(&self, kept: &[Stored]) -> Vec<MemSegment> {
        let sizes: Vec<u64> = self.infos.iter().map(|s| s.size).collect();
        let mut segments = Vec::new();
        let mut kept = kept.iter().peekable();
        for run in cleaner::group_by_size(&sizes, self.segment_bytes) {
            let run_end = self.infos[run.end - 1].end_offset;
            let base_offset = self.infos[run.start].base_offset;
            let mut seg = MemSegment { base_offset, size: 0, max_timestamp: -1, first_timestamp: -1 };
            while let Some(b) = kept.next_if(|b| b.base_offset < run_end) {
                if seg.size == 0 {
                    seg.first_timestamp = b.max_timestamp;
                }
                seg.size += b.data.len() as u64;
                seg.max_timestamp = seg.max_timestamp.max(b.max_timestamp);
            }
            if seg.size > 0 {
                segments.push(seg);
            }
        }
        segments
    }
}

/// `b` with its bytes replaced by the pass's rewrite (same offsets; the largest timestamp
/// may have gone with the records removed).
fn rewritten(b: &Stored, data: Bytes) -> Stored {
    let max_timestamp = RecordBatch::new(data.clone()).map_or(-1, |n| n.max_timestamp());
    Stored { max_timestamp, data: data.into(), ..b.clone() }
}
