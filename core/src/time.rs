//! Time as the core sees it: a monotonic [`Instant`] and a wall clock in milliseconds, both
//! handed in by the driver with every input ([`Now`]), and a [`TimerTable`] of deadlines.
//!
//! The core never reads a clock. Monotonic time drives timeouts (long polls, sessions); wall
//! time only stamps records (LogAppendTime) and answers timestamp queries.

use core::cmp::Reverse;
use core::fmt;
use std::collections::BinaryHeap;

/// Nanoseconds since the driver's epoch (its start). Never goes back.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

/// A span of monotonic time, in nanoseconds.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// From milliseconds; negative values (Kafka uses -1 for "none") become zero.
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        if ms <= 0 { Self(0) } else { Self((ms as u64).saturating_mul(1_000_000)) }
    }

    /// From seconds.
    #[must_use]
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000_000))
    }

    /// Whole milliseconds.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
}

impl Instant {
    /// Time from `earlier` to `self` (zero if `earlier` is later).
    #[must_use]
    pub const fn since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}s", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0 as f64 / 1e6)
    }
}

/// The time an input happens at, as the driver saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub wall_ms: i64,
}

/// Deadlines keyed by `K`, earliest first. Cancelling is lazy: a key can be re-armed, and only
/// its latest deadline fires (each entry remembers the arm it belongs to). Stale entries are
/// dropped from the top after every change, so the earliest live deadline is always the top.
#[derive(Debug)]
pub struct TimerTable<K: Ord + Clone> {
    heap: BinaryHeap<Reverse<(Instant, u64, K)>>,
    armed: hashbrown::HashMap<K, u64>,
    seq: u64,
}

impl<K: Ord + Clone + core::hash::Hash> Default for TimerTable<K> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), armed: hashbrown::HashMap::new(), seq: 0 }
    }
}

impl<K: Ord + Clone + core::hash::Hash> TimerTable<K> {
    /// Arms (or re-arms) `key` to fire at `at`.
    pub fn arm(&mut self, key: K, at: Instant) {
        self.seq += 1;
        self.armed.insert(key.clone(), self.seq);
        self.heap.push(Reverse((at, self.seq, key)));
        self.drop_stale();
    }

    /// Disarms `key`; a pending deadline for it will not fire.
    pub fn cancel(&mut self, key: &K) {
        self.armed.remove(key);
        self.drop_stale();
    }

    /// The earliest live deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes and returns one key whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let Reverse((at, _, _)) = self.heap.peek()?;
        if *at > now {
            return None;
        }
        let Reverse((_, _, key)) = self.heap.pop()?;
        self.armed.remove(&key);
        self.drop_stale();
        Some(key)
    }

    /// How many keys are armed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether nothing is armed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((_, seq, key))) = self.heap.peek() {
            if self.armed.get(key) == Some(seq) {
                return;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rearmed_timers_fire_once_at_their_latest_deadline() {
        let mut t = TimerTable::default();
        t.arm("a", Instant(10));
        t.arm("b", Instant(5));
        t.arm("a", Instant(20));
        t.cancel(&"b");
        assert_eq!(t.next_deadline(), Some(Instant(20)));
        assert_eq!(t.pop_due(Instant(15)), None);
        assert_eq!(t.pop_due(Instant(20)), Some("a"));
        assert_eq!(t.pop_due(Instant(100)), None);
        assert!(t.is_empty());
    }
}
