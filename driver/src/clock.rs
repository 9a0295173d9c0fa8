//! The driver's clock: the core's [`Now`] from the process's monotonic and wall clocks.

use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use kelp_core::{Instant, Now};

/// Monotonic time counts from the clock's start (the core's `Instant(0)`).
#[derive(Clone, Copy, Debug)]
pub struct Clock(StdInstant);

impl Clock {
    /// A clock whose epoch is now.
    #[must_use]
    pub fn start() -> Self {
        Self(StdInstant::now())
    }

    /// The time to hand to the broker with an input.
    #[must_use]
    pub fn now(&self) -> Now {
        let mono = Instant(u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Now { mono, wall_ms }
    }

    /// When the core's `at` falls, on the process's monotonic clock.
    #[must_use]
    pub fn at(&self, at: Instant) -> StdInstant {
        self.0 + Duration::from_nanos(at.0)
    }

    /// How long from now until `at` (zero once it has passed).
    #[must_use]
    pub fn until(&self, at: Instant) -> Duration {
        Duration::from_nanos(at.0).saturating_sub(self.0.elapsed())
    }
}
