//! The log cleaner's decisions, as Kafka's `LogCleaner` makes them, in plain functions the
//! stores call (so the memory and disk stores clean alike) and tests drive without files:
//!
//! - [`plan`]: is a compacted log due for cleaning, and which segments does the pass read;
//! - [`KeyMap`]: the latest offset of every key in the dirty part, within a memory budget;
//! - [`filter`]: what becomes of one batch of the segments the pass rewrites;
//! - [`group_by_size`]: which rewritten segments share a new segment file.
//!
//! Terms (Kafka's): the log from its start up to the first dirty offset is *clean* (a pass
//! already deduplicated it); from there up to the first *uncleanable* offset it is *dirty*;
//! the rest (the active segment, anything at or above the high watermark, and segments with
//! records younger than `min.compaction.lag.ms`) is left alone. The dirty ratio is the dirty
//! bytes over the clean and dirty bytes.
//!
//! A pass keeps the latest record of each key with its original offset, timestamp, headers
//! and producer fields: a rewritten batch keeps its base offset and lastOffsetDelta, so no
//! offset is renumbered and an idempotent producer's sequence numbers still line up. Whole
//! batches may vanish, leaving gaps in the offsets. Tombstones (null values) get a delete
//! horizon (KIP-534: the batch's baseTimestamp holds it and attribute bit 6 says so) the first
//! time a pass keeps them, `now + delete.retention.ms`; a later pass after the horizon drops
//! them. Records without a key cannot be compacted and are dropped, as Kafka's cleaner does
//! (kelp refuses them at produce time on compacted topics; they exist only in a log written
//! before its topic became compacted). Control batches are kept as they are.

use core::ops::Range;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::io::CleanSpec;
use crate::records::{Compression, RecordBatch, RecordBatchBuilder, RecordsError, TimestampType};

/// Largest decompressed batch the cleaner looks inside.
pub const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

/// What the key map charges per entry beyond the key's bytes (the hash table's slot, the
/// offset and the key's handle), so that its budget bounds real memory.
pub const ENTRY_OVERHEAD: usize = 48;

/// One segment of a log as the planner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset the segment starts at (its file name on disk).
    pub base_offset: i64,
    /// Exclusive end: the next segment's base offset, or the log end for the last segment.
    pub end_offset: i64,
    /// Bytes of batches.
    pub size: u64,
    /// Largest timestamp of its first batch (-1 if unknown): `max.compaction.lag.ms` counts
    /// from it.
    pub first_timestamp: i64,
    /// Largest timestamp in the segment (-1 if none).
    pub max_timestamp: i64,
}

/// The planner's view of a log: its segments as (base offset, size, largest timestamp of the
/// first batch, largest timestamp), oldest first, and `log_end`, the offset the next record
/// gets. Each segment ends where the next begins, the last one at the log end.
pub fn segment_infos(segments: impl IntoIterator<Item = (i64, u64, i64, i64)>, log_end: i64) -> Vec<SegmentInfo> {
    let mut infos: Vec<SegmentInfo> = Vec::new();
    for (base_offset, size, first_timestamp, max_timestamp) in segments {
        if let Some(prev) = infos.last_mut() {
            prev.end_offset = base_offset;
        }
        infos.push(SegmentInfo { base_offset, end_offset: log_end, size, first_timestamp, max_timestamp });
    }
    infos
}

/// A pass over a log that is due for cleaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The dirty ratio that made the log due.
    pub dirty_ratio: f64,
    /// The first offset not yet deduplicated (where the key map starts).
    pub first_dirty: i64,
    /// Indices of the segments to read into the key map, in order. The pass rewrites
    /// segments `0..dirty.end`: the clean ones too, whose older records the new keys supersede.
    /// Empty for a pass that only removes tombstones past their horizon (it rewrites every
    /// cleanable segment).
    pub dirty: Range<usize>,
}

/// The dirty ratio of a log whose segments are `segments` (oldest first, from the one holding
/// the log start; the last is the active one) and whose cleaner checkpoint is `first_dirty`,
/// and a plan if it is due for cleaning: its dirty ratio reaches `min.cleanable.dirty.ratio`,
/// or its oldest dirty record is older than `max.compaction.lag.ms`, or the earliest delete
/// horizon of the tombstones in its clean part (`earliest_horizon`, as far as the store knows)
/// has passed, so that tombstones go once due even when no new records arrive. Only closed
/// segments wholly below `spec.limit` with no record younger than `min.compaction.lag.ms` are
/// cleanable.
#[must_use]
pub fn plan(
    segments: &[SegmentInfo],
    first_dirty: i64,
    earliest_horizon: Option<i64>,
    spec: &CleanSpec,
) -> (f64, Option<Plan>) {
    let Some((_, closed)) = segments.split_last() else { return (0.0, None) };
    let young_from = spec.now_ms.saturating_sub(spec.min_compaction_lag_ms);
    let cleanable = closed.iter().take_while(|s| s.end_offset <= spec.limit && s.max_timestamp <= young_from).count();
    // A checkpoint outside the log (retention moved the start past it, or the log was
    // recreated) restarts from the log start.
    let start = segments[0].base_offset;
    let first_dirty =
        if first_dirty < start || first_dirty > segments[segments.len() - 1].end_offset { start } else { first_dirty };
    // A segment holding the checkpoint counts as dirty: the map starts there.
    let first_dirty_index = closed[..cleanable].partition_point(|s| s.end_offset <= first_dirty);
    let clean: u64 = closed[..first_dirty_index].iter().map(|s| s.size).sum();
    let dirty: u64 = closed[first_dirty_index..cleanable].iter().map(|s| s.size).sum();
    if dirty == 0 {
        // Nothing new to deduplicate; a pass over the clean part still removes tombstones
        // whose horizon has passed.
        let due = cleanable > 0 && earliest_horizon.is_some_and(|h| spec.now_ms >= h);
        let plan = due.then_some(Plan { dirty_ratio: 0.0, first_dirty, dirty: cleanable..cleanable });
        return (0.0, plan);
    }
    #[allow(clippy::cast_precision_loss)]
    let ratio = dirty as f64 / (clean + dirty) as f64;
    let overdue = spec.max_compaction_lag_ms < i64::MAX && {
        let oldest = closed[first_dirty_index].first_timestamp;
        oldest >= 0 && oldest < spec.now_ms.saturating_sub(spec.max_compaction_lag_ms)
    };
    if ratio < spec.min_cleanable_dirty_ratio && !overdue {
        return (ratio, None);
    }
    let plan = Plan { dirty_ratio: ratio, first_dirty, dirty: first_dirty_index..cleanable };
    (ratio, Some(plan))
}

/// The latest offset of every key seen in the dirty part of a log, within a memory budget.
/// Keys are copied out of their batches, so the map holds no decompressed buffers.
#[derive(Debug, Default)]
pub struct KeyMap {
    latest: HashMap<Bytes, i64>,
    used: usize,
    budget: usize,
    end: Option<i64>,
}

impl KeyMap {
    /// An empty map that holds at most about `budget_bytes` (keys plus [`ENTRY_OVERHEAD`]
    /// each). A map takes the first batch it is given whatever its size, so a pass always
    /// makes progress.
    #[must_use]
    pub fn new(budget_bytes: usize) -> Self {
        Self { latest: HashMap::new(), used: 0, budget: budget_bytes, end: None }
    }

    /// Adds every keyed record of `batch` (batches must come in offset order). Returns
    /// `Ok(false)`, adding nothing, when the batch might not fit the budget: the pass then
    /// ends before this batch. Control batches hold no keys but still advance [`Self::end`].
    pub fn add(&mut self, batch: &RecordBatch) -> Result<bool, RecordsError> {
        if batch.is_control() || batch.records_count() == 0 {
            self.end = Some(batch.next_offset());
            return Ok(true);
        }
        let records = batch.records(MAX_DECOMPRESSED)?;
        // What the batch could cost at most: every key new. Checked before anything is added
        // so that the map covers whole batches.
        let mut cost = 0usize;
        for r in records.iter() {
            let r = r?;
            cost = cost.saturating_add(r.key_slice().map_or(0, |k| k.len() + ENTRY_OVERHEAD));
        }
        if self.end.is_some() && self.used.saturating_add(cost) > self.budget {
            return Ok(false);
        }
        for r in records.iter() {
            let r = r?;
            let Some(key) = r.key_slice() else { continue };
            match self.latest.get_mut(key) {
                Some(offset) => *offset = r.offset(),
                None => {
                    self.used += key.len() + ENTRY_OVERHEAD;
                    self.latest.insert(Bytes::copy_from_slice(key), r.offset());
                }
            }
        }
        self.end = Some(batch.next_offset());
        Ok(true)
    }

    /// The exclusive end of what the map covers: the next batch's offset after the last one
    /// added (the log's new first dirty offset once the pass is done), or `None` if nothing
    /// was added.
    #[must_use]
    pub fn end(&self) -> Option<i64> {
        self.end
    }

    /// The latest offset of `key` in the map.
    #[must_use]
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    /// Keys in the map.
    #[must_use]
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether the map holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Bytes of the budget used.
    #[must_use]
    pub fn used(&self) -> usize {
        self.used
    }
}

/// The moment and the tombstone rule of a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Wall-clock time of the pass (ms since the epoch).
    pub now_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

impl Rules {
    /// The rules of a pass under `spec`.
    #[must_use]
    pub fn of(spec: &CleanSpec) -> Self {
        Self { now_ms: spec.now_ms, delete_retention_ms: spec.delete_retention_ms }
    }
}

/// What becomes of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Kept byte for byte.
    Keep,
    /// Removed whole.
    Drop,
    /// Replaced by this batch (same base offset and lastOffsetDelta, fewer records or a new
    /// delete horizon).
    Rewrite(Bytes),
}

/// What the pass does with `batch`, given the keys' latest offsets in `map`, and how many
/// records it removes. A record stays if its key's latest offset in the map is not above its
/// own (keys the map does not hold were not seen later), unless it is a tombstone past its
/// batch's delete horizon; a record without a key goes. `keep_empty` keeps the batch even
/// with no records left (the last batch of an idempotent producer: duplicate detection reads
/// its sequence numbers).
pub fn filter(
    batch: &RecordBatch,
    map: &KeyMap,
    rules: &Rules,
    keep_empty: bool,
) -> Result<(Filtered, u32), RecordsError> {
    if batch.is_control() {
        return Ok((Filtered::Keep, 0));
    }
    let horizon = delete_horizon(batch);
    let horizon_passed = horizon.is_some_and(|h| rules.now_ms >= h);
    let records = batch.records(MAX_DECOMPRESSED)?;
    let mut keep = Vec::new();
    let (mut total, mut tombstones) = (0u32, false);
    for r in records.iter() {
        let r = r?;
        total += 1;
        let Some(key) = r.key_slice() else { continue };
        let superseded = map.latest(key).is_some_and(|latest| latest > r.offset());
        let tombstone = r.value_slice().is_none();
        if superseded || (tombstone && horizon_passed) {
            continue;
        }
        tombstones |= tombstone;
        keep.push(r);
    }
    let removed = total - u32::try_from(keep.len()).unwrap_or(total);
    let needs_horizon = tombstones && horizon.is_none();
    if removed == 0 && !needs_horizon {
        return Ok((Filtered::Keep, 0));
    }
    if keep.is_empty() && !keep_empty {
        return Ok((Filtered::Drop, removed));
    }
    let horizon = tombstones.then(|| horizon.unwrap_or_else(|| rules.now_ms.saturating_add(rules.delete_retention_ms)));
    let mut b = rebuild_header(batch, horizon)?;
    for r in &keep {
        let headers = r.headers().collect::<Result<Vec<_>, _>>()?;
        b.push_parts(r.offset_delta(), r.create_timestamp(), r.key_slice(), r.value_slice(), &headers)?;
    }
    let b = b.last_offset_delta(batch.last_offset_delta())?;
    Ok((Filtered::Rewrite(b.build()?), removed))
}

/// The delete horizon of `batch`, if a pass kept tombstones in it (KIP-534). A store keeps the
/// earliest one of its clean part to hand to [`plan`].
#[must_use]
pub fn delete_horizon(batch: &RecordBatch) -> Option<i64> {
    batch.attributes().has_delete_horizon().then(|| batch.base_timestamp())
}

/// A builder for `batch`'s replacement: same codec, base offset, leader epoch, producer
/// fields, flags and timestamp type, and the delete horizon if it holds tombstones.
fn rebuild_header(batch: &RecordBatch, horizon: Option<i64>) -> Result<RecordBatchBuilder, RecordsError> {
    let compression: Compression = batch.compression()?;
    let mut b = RecordBatchBuilder::new(compression)
        .base_offset(batch.base_offset())
        .partition_leader_epoch(batch.partition_leader_epoch())
        .producer(batch.producer_id(), batch.producer_epoch(), batch.base_sequence())
        .transactional(batch.is_transactional());
    if batch.timestamp_type() == TimestampType::LogAppendTime {
        b = b.log_append_time(batch.max_timestamp());
    }
    if let Some(h) = horizon {
        b = b.delete_horizon(h);
    }
    Ok(b)
}

/// Groups consecutive segments (their sizes, oldest first) into runs whose total stays within
/// `max`; a segment larger than `max` is a run of its own. The pass writes one new segment per
/// run, so cleaning also merges segments that shrank.
#[must_use]
pub fn group_by_size(sizes: &[u64], max: u64) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut total) = (0usize, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && total.saturating_add(size) > max {
            runs.push(start..i);
            (start, total) = (i, 0);
        }
        total = total.saturating_add(size);
    }
    if start < sizes.len() {
        runs.push(start..sizes.len());
    }
    runs
}

pub mod fuzz;
#[cfg(test)]
mod tests;
