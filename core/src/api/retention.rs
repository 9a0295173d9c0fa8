//! Log retention: the core decides when, the store decides which segments.
//!
//! Every `retention_check_interval` (Kafka: `log.retention.check.interval.ms`, 5 minutes) the
//! broker sends one [`Command::Retain`] per partition whose topic's `cleanup.policy` includes
//! `delete` and that limits retention by time (`retention.ms` >= 0) or size
//! (`retention.bytes` >= 0). The store deletes whole segments,
//! never the active one nor any holding offsets at or above the high watermark, and answers with
//! the log start that results; the core then moves its own log start there, so ListOffsets
//! (earliest), Fetch (OFFSET_OUT_OF_RANGE below it) and DeleteRecords agree with the data.
//! The log start is the core's: the store only proposes, and a proposal never moves it back.

use super::{CmdOwner, Effects, Timer};
use crate::io::{Command, Completion, PartitionKey};
use crate::state::State;

/// Sends the retention commands due now and arms the next check.
pub(crate) fn check(st: &mut State, fx: &mut Effects) {
    let wall = st.now.wall_ms;
    let mut cmds = Vec::new();
    // By topic name, not in the topic map's (hash) order: the same inputs must give the same
    // commands in the same order.
    for t in st.topics.visible_by_name() {
        let s = &t.settings;
        // Kafka's rule: time and size retention apply only under `cleanup.policy=delete`
        // (alone or with `compact`); a compact-only topic keeps every key's latest record
        // however old it is.
        if !s.cleanup_delete {
            continue;
        }
        let older_than = (s.retention_ms >= 0).then(|| wall.saturating_sub(s.retention_ms));
        let max_bytes = u64::try_from(s.retention_bytes).ok();
        if older_than.is_none() && max_bytes.is_none() {
            continue;
        }
        for p in &t.partitions {
            cmds.push(Command::Retain { partition: p.key, older_than, max_bytes, limit: p.hwm() });
        }
    }
    for c in cmds {
        let Command::Retain { partition, .. } = &c else { continue };
        let owner = CmdOwner::Retain(*partition);
        fx.storage(owner, c);
    }
    arm(st, fx);
}

/// Arms the next retention check.
pub(crate) fn arm(st: &mut State, fx: &mut Effects) {
    // At least a millisecond apart: a zero interval must not fire again within one tick.
    let interval = st.cfg.retention_check_interval.max(crate::time::Duration::from_millis(1));
    let at = st.now.mono + interval;
    fx.arm(Timer::Retention, at);
}

/// The store answered a [`Command::Retain`] for `key`.
pub(crate) fn done(st: &mut State, key: PartitionKey, result: &Completion) {
    let Completion::LogStart { offset, max_timestamp } = result else {
        // A failed check changes nothing; the next one tries again.
        return;
    };
    if let Some(p) = st.topics.partition_mut(key) {
        // The store never deletes at or beyond the high watermark it was given, and the high
        // watermark only grows, so this cannot fail; if a store misbehaves, keep the old start.
        let ok = p.retained(*offset, *max_timestamp);
        debug_assert!(ok, "{key:?}: retention proposed log start {offset} beyond the high watermark");
    }
}
