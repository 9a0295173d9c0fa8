//! Committed offsets: what each group committed for each partition, and which commits are
//! still being stored (OffsetFetch with `require_stable` reports those as unstable).
//!
//! Offsets are kept by topic name, as Kafka keeps them. This module only holds the table;
//! the OffsetCommit/OffsetFetch/OffsetDelete rules live in [`crate::api::offsets`].

use std::collections::BTreeMap;

use hashbrown::HashMap;

use crate::codec::KStr;

/// One committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the record before it, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: Option<KStr>,
    /// When it was committed (wall ms).
    pub commit_timestamp: i64,
}

/// Every group's committed offsets.
#[derive(Debug, Default)]
pub struct Offsets {
    /// group -> (topic, partition) -> offset; ordered so that "all partitions" is stable.
    by_group: HashMap<KStr, BTreeMap<(KStr, i32), CommittedOffset>>,
    /// Commits being stored: (group, topic, partition) -> how many.
    in_flight: HashMap<(KStr, KStr, i32), u32>,
}

impl Offsets {
    /// The committed offset of one partition.
    #[must_use]
    pub fn get(&self, group: &str, topic: &KStr, partition: i32) -> Option<&CommittedOffset> {
        self.by_group.get(group)?.get(&(topic.clone(), partition))
    }

    /// Every committed offset of `group`, by topic then partition.
    pub fn of_group(&self, group: &str) -> impl Iterator<Item = (&(KStr, i32), &CommittedOffset)> {
        self.by_group.get(group).into_iter().flat_map(|m| m.iter())
    }

    /// Every committed offset: (group, (topic, partition), offset), groups in no particular
    /// order.
    pub fn iter(&self) -> impl Iterator<Item = (&KStr, &(KStr, i32), &CommittedOffset)> {
        self.by_group.iter().flat_map(|(g, m)| m.iter().map(move |(k, v)| (g, k, v)))
    }

    /// Whether `group` has any committed offset.
    #[must_use]
    pub fn has_any(&self, group: &str) -> bool {
        self.by_group.get(group).is_some_and(|m| !m.is_empty())
    }

    /// The groups that have offsets.
    #[must_use]
    pub fn groups(&self) -> Vec<KStr> {
        self.by_group.keys().cloned().collect()
    }

    /// Records a stored commit.
    pub fn set(&mut self, group: &KStr, topic: &KStr, partition: i32, value: CommittedOffset) {
        self.by_group.entry(group.clone()).or_default().insert((topic.clone(), partition), value);
    }

    /// Forgets one partition's offset; returns whether there was one.
    pub fn remove(&mut self, group: &str, topic: &KStr, partition: i32) -> bool {
        let Some(m) = self.by_group.get_mut(group) else { return false };
        let had = m.remove(&(topic.clone(), partition)).is_some();
        if m.is_empty() {
            self.by_group.remove(group);
        }
        had
    }

    /// Forgets every offset of `group`; returns the partitions it had.
    pub fn remove_group(&mut self, group: &str) -> Vec<(KStr, i32)> {
        self.by_group.remove(group).map(|m| m.into_keys().collect()).unwrap_or_default()
    }

    /// A commit of this partition started being stored.
    pub fn begin(&mut self, group: &KStr, topic: &KStr, partition: i32) {
        *self.in_flight.entry((group.clone(), topic.clone(), partition)).or_default() += 1;
    }

    /// A commit of this partition finished (stored or not).
    pub fn end(&mut self, group: &KStr, topic: &KStr, partition: i32) {
        let key = (group.clone(), topic.clone(), partition);
        if let Some(n) = self.in_flight.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&key);
            }
        }
    }

    /// Whether a commit of this partition is being stored.
    #[must_use]
    pub fn unstable(&self, group: &KStr, topic: &KStr, partition: i32) -> bool {
        !self.in_flight.is_empty() && self.in_flight.contains_key(&(group.clone(), topic.clone(), partition))
    }
}
