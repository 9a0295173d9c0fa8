//! The simulator's world: its random generator, its virtual clock and its event heap.
//!
//! Every choice the simulator makes comes from one [`SimRng`] seeded by the run's seed, and
//! every event sits in a heap ordered by (time, sequence number), so a seed always replays the
//! same run, event for event. Nothing here reads a real clock or the OS's entropy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use kelp_core::CmdId;
use kelp_core::ConnId;
use kelp_core::rng::Rng;
use kelp_core::time::{Duration, Instant};

/// The simulator's random choices: the core's seeded generator ([`kelp_core::rng::Rng`],
/// xoshiro256** over SplitMix64, the same on every platform) with the helpers scenarios use.
/// Not for secrets.
#[derive(Clone, Debug)]
pub struct SimRng(Rng);

impl SimRng {
    /// A generator whose whole state derives from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(Rng::new(seed))
    }

    /// The next 64 random bits.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.u64() % n }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `p` (0.0 never, 1.0 always).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration between `lo` and `hi` milliseconds, at microsecond granularity.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration(self.range(lo * 1000, hi * 1000) * 1000)
    }

    /// A generator for a sub-part of the world, so that adding draws in one part does not
    /// shift every other part's choices.
    pub fn fork(&mut self) -> Self {
        Self::new(self.u64())
    }
}

/// Something that happens at a point in virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// Client `0` acts (its own timers); `1` is the wake's token, stale tokens are ignored.
    ClientWake(usize, u64),
    /// Deliver some of the bytes in flight from a client to the broker.
    NetToBroker(ConnId),
    /// Deliver some of the bytes in flight from the broker to a client.
    NetToClient(ConnId),
    /// The network drops a connection.
    NetDrop(ConnId),
    /// The store runs the next queued command.
    StoreRun,
    /// The store reports a finished command.
    StoreDone(CmdId, u32),
    /// The broker's timer (token as for wakes).
    BrokerTimer(u64),
    /// The broker process crashes and restarts over what its store made durable.
    BrokerCrash,
    /// The store becomes unavailable for a while.
    StoreOutage,
    /// The wall clock jumps (the monotonic clock never does).
    ClockJump,
    /// The fault phase ends; the liveness phase begins.
    FaultsOff,
    /// Check whether the liveness phase has converged.
    LivenessCheck,
}

/// The event heap: earliest first, ties broken by insertion order.
#[derive(Debug, Default)]
pub struct Queue {
    heap: BinaryHeap<Reverse<(Instant, u64, Event)>>,
    seq: u64,
}

impl Queue {
    /// Schedules `ev` at `at`.
    pub fn push(&mut self, at: Instant, ev: Event) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<(Instant, Event)> {
        self.heap.pop().map(|Reverse((at, _, ev))| (at, ev))
    }

    /// How many events are scheduled.
    #[must_use]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is scheduled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// A running FNV-1a hash of everything the run did, so that two runs of one seed can be
/// compared byte for byte without keeping their traces.
#[derive(Clone, Copy, Debug)]
pub struct TraceHash(pub u64);

impl Default for TraceHash {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    /// Mixes `bytes` in.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Mixes a number in.
    pub fn num(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }
}
