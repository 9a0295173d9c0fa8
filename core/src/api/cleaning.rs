//! The log cleaner's clock: the core decides when to look and with which settings, the store
//! decides whether a partition is dirty enough and does the cleaning.
//!
//! Every `cleaner_backoff` (Kafka: `log.cleaner.backoff.ms`, 15 s) the broker sends one
//! [`Command::Clean`] per partition whose topic's `cleanup.policy` includes `compact`, carrying
//! the topic's compaction settings as they are now (an AlterConfigs that turns `compact` on or
//! off counts from the next look) and the high watermark as the upper bound of what may be
//! cleaned. The store plans the pass with [`crate::cleaner`] and may run it off the request
//! path, so a partition has at most one `Clean` outstanding: a look that finds one still
//! running skips the partition. Cleaning never moves the log start or the high watermark, so
//! the answer changes no partition state; it feeds the cleaner metrics.

use hashbrown::{HashMap, HashSet};

use super::{CmdOwner, Effects, Timer};
use crate::io::{CleanReport, CleanSpec, Command, Completion, PartitionKey};
use crate::state::State;
use crate::time::Duration;
use crate::topics::TopicSettings;

/// What the core remembers about cleaning.
#[derive(Debug, Default)]
pub(crate) struct Cleaning {
    /// Partitions with a [`Command::Clean`] sent and not yet answered.
    outstanding: HashSet<PartitionKey>,
    /// The dirty ratio each compacted partition last reported (the metrics gauge).
    dirty_ratio: HashMap<PartitionKey, f64>,
}

impl Cleaning {
    /// Whether `key` has a clean outstanding.
    pub(crate) fn is_outstanding(&self, key: PartitionKey) -> bool {
        self.outstanding.contains(&key)
    }

    /// The dirty ratio `key` last reported, if it has reported one.
    pub(crate) fn dirty_ratio(&self, key: PartitionKey) -> Option<f64> {
        self.dirty_ratio.get(&key).copied()
    }
}

/// The spec of a pass over a partition of a topic with settings `s`, now.
fn spec(s: &TopicSettings, now_ms: i64, limit: i64) -> CleanSpec {
    CleanSpec {
        now_ms,
        min_cleanable_dirty_ratio: s.min_cleanable_dirty_ratio,
        min_compaction_lag_ms: s.min_compaction_lag_ms,
        max_compaction_lag_ms: s.max_compaction_lag_ms,
        delete_retention_ms: s.delete_retention_ms,
        limit,
    }
}

/// Sends a clean command for every compacted partition without one outstanding, and arms the
/// next look.
pub(crate) fn check(st: &mut State, fx: &mut Effects) {
    let now_ms = st.now.wall_ms;
    let mut cmds = Vec::new();
    // By topic name, then partition index: the same inputs must give the same commands in the
    // same order (the topic map iterates in hash order).
    for t in st.topics.visible_by_name() {
        if !t.settings.cleanup_compact {
            continue;
        }
        for p in &t.partitions {
            if !st.cleaning.is_outstanding(p.key) {
                cmds.push((p.key, spec(&t.settings, now_ms, p.hwm())));
            }
        }
    }
    for (partition, spec) in cmds {
        st.cleaning.outstanding.insert(partition);
        fx.storage(CmdOwner::Clean(partition), Command::Clean { partition, spec });
    }
    forget_uncompacted(st);
    arm(st, fx);
}

/// Drops the gauges of partitions that are gone or no longer compacted, so the metrics list
/// only partitions the cleaner looks at.
fn forget_uncompacted(st: &mut State) {
    let topics = &st.topics;
    st.cleaning.dirty_ratio.retain(|key, _| {
        topics.by_id(key.topic_id).is_some_and(|t| t.settings.cleanup_compact) && topics.partition(*key).is_some()
    });
}

/// Arms the next look.
pub(crate) fn arm(st: &mut State, fx: &mut Effects) {
    // At least a millisecond apart: a zero backoff must not fire again within one tick.
    let at = st.now.mono + st.cfg.cleaner_backoff.max(Duration::from_millis(1));
    fx.arm(Timer::Cleaner, at);
}

/// The store answered a [`Command::Clean`] for `key`: returns its report for the broker's
/// counters, or `None` when the pass failed (nothing changed; the next look tries again).
pub(crate) fn done(st: &mut State, key: PartitionKey, result: &Completion) -> Option<CleanReport> {
    let removed = st.cleaning.outstanding.remove(&key);
    debug_assert!(removed, "{key:?}: a clean answered that was not outstanding");
    let Completion::Cleaned(report) = result else { return None };
    // A partition deleted (or shrunk away) while it was being cleaned keeps no gauge.
    if st.topics.partition(key).is_some() {
        st.cleaning.dirty_ratio.insert(key, report.dirty_ratio);
    }
    Some(*report)
}
