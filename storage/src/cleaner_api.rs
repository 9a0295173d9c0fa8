//! TEMPORARY stand-in for `kelp_core::cleaner` (the lead's planner, key map and filter), with
//! the same signatures, so that the disk store's cleaner builds and runs before that module
//! lands on main. Removed at the merge that brings the real one.
#![allow(dead_code, missing_docs, clippy::all)]

use core::ops::Range;

use bytes::Bytes;
use hashbrown::HashMap;
use kelp_core::io::CleanSpec;
use kelp_core::records::{RecordBatch, RecordBatchBuilder, RecordsError, TimestampType};

const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

pub struct SegmentInfo {
    pub base_offset: i64,
    pub end_offset: i64,
    pub size: u64,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
}

pub struct Plan {
    pub dirty_ratio: f64,
    pub first_dirty: i64,
    pub dirty: Range<usize>,
}

pub fn plan(segments: &[SegmentInfo], first_dirty: i64, spec: &CleanSpec) -> (f64, Option<Plan>) {
    let closed = segments.len().saturating_sub(1);
    let lag_cut = spec.now_ms.saturating_sub(spec.min_compaction_lag_ms);
    let uncleanable = segments[..closed]
        .iter()
        .position(|s| s.end_offset > spec.limit || s.max_timestamp > lag_cut)
        .unwrap_or(closed);
    let first = segments[..uncleanable].iter().position(|s| s.end_offset > first_dirty).unwrap_or(uncleanable);
    let clean: u64 = segments[..first].iter().map(|s| s.size).sum();
    let dirty: u64 = segments[first..uncleanable].iter().map(|s| s.size).sum();
    if dirty == 0 {
        return (0.0, None);
    }
    let ratio = dirty as f64 / (clean + dirty) as f64;
    let overdue = segments[first].first_timestamp >= 0
        && spec.now_ms.saturating_sub(segments[first].first_timestamp) > spec.max_compaction_lag_ms;
    if ratio < spec.min_cleanable_dirty_ratio && !overdue {
        return (ratio, None);
    }
    (ratio, Some(Plan { dirty_ratio: ratio, first_dirty, dirty: first..uncleanable }))
}

pub struct KeyMap {
    map: HashMap<Bytes, i64>,
    used: usize,
    budget: usize,
    end: i64,
}

impl KeyMap {
    pub fn new(budget_bytes: usize) -> Self {
        Self { map: HashMap::new(), used: 0, budget: budget_bytes, end: 0 }
    }

    pub fn add(&mut self, batch: &RecordBatch) -> Result<bool, RecordsError> {
        let records = batch.records(MAX_DECOMPRESSED)?;
        let mut keys = Vec::new();
        let mut need = 0;
        for r in &records {
            let r = r?;
            if let Some(k) = r.key() {
                need += k.len() + 32;
                keys.push((k, r.offset()));
            }
        }
        if self.used + need > self.budget {
            return Ok(false);
        }
        self.used += need;
        for (k, o) in keys {
            self.map.insert(k, o);
        }
        self.end = batch.next_offset();
        Ok(true)
    }

    pub fn end(&self) -> i64 {
        self.end
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

pub struct Rules {
    pub now_ms: i64,
    pub delete_retention_ms: i64,
}

pub enum Filtered {
    Keep,
    Drop,
    Rewrite(Bytes),
}

pub fn filter(
    batch: &RecordBatch,
    map: &KeyMap,
    rules: &Rules,
    keep_empty: bool,
) -> Result<(Filtered, u32), RecordsError> {
    if batch.is_control() {
        return Ok((Filtered::Keep, 0));
    }
    let records = batch.records(MAX_DECOMPRESSED)?;
    let mut kept = Vec::new();
    let mut removed = 0u32;
    for r in &records {
        let r = r?;
        let superseded = r.key().and_then(|k| map.map.get(&k)).is_some_and(|o| *o > r.offset());
        let dead_tombstone = r.value().is_none()
            && r.key().is_some()
            && r.timestamp() < rules.now_ms.saturating_sub(rules.delete_retention_ms);
        if superseded || dead_tombstone {
            removed += 1;
        } else {
            kept.push(r.to_owned_record()?);
        }
    }
    if removed == 0 {
        return Ok((Filtered::Keep, 0));
    }
    if kept.is_empty() && !keep_empty {
        return Ok((Filtered::Drop, removed));
    }
    let mut b = RecordBatchBuilder::new(batch.compression()?)
        .base_offset(batch.base_offset())
        .partition_leader_epoch(batch.partition_leader_epoch())
        .producer(batch.producer_id(), batch.producer_epoch(), batch.base_sequence())
        .transactional(batch.is_transactional());
    if batch.timestamp_type() == TimestampType::LogAppendTime {
        b = b.log_append_time(batch.max_timestamp());
    }
    for r in &kept {
        b.push(r)?;
    }
    let mut out = b.build()?.to_vec();
    out[23..27].copy_from_slice(&batch.last_offset_delta().to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok((Filtered::Rewrite(Bytes::from(out)), removed))
}

pub fn group_by_size(sizes: &[u64], max: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut end = start + 1;
        let mut total = sizes[start];
        while end < sizes.len() && total + sizes[end] <= max {
            total += sizes[end];
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}
