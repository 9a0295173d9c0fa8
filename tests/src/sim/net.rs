//! The simulated network: one link per connection, a byte pipe each way.
//!
//! TCP keeps order but not boundaries, so a delivery hands over a random prefix of what is in
//! flight: frames get split at any byte and several frames (or parts of them) arrive together.
//! Each delivery comes after a random delay. A link can be dropped by either side or by the
//! network; bytes in flight are then lost.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kelp_core::ConnId;
use kelp_core::time::Duration;

use super::world::SimRng;

/// How the network misbehaves (chosen per seed).
#[derive(Clone, Copy, Debug)]
pub struct NetFaults {
    /// Longest delay before a delivery (ms).
    pub max_delay_ms: u64,
    /// Chance that a delivery hands over only part of what is in flight.
    pub split_rate: f64,
}

/// One connection's pipes.
#[derive(Debug, Default)]
pub struct Link {
    /// The client that owns the connection.
    pub client: usize,
    /// Bytes from the client, not yet delivered to the broker.
    pub to_broker: BytesMut,
    /// Bytes from the broker, not yet delivered to the client.
    pub to_client: BytesMut,
    /// Whether a delivery to the broker is scheduled.
    pub broker_scheduled: bool,
    /// Whether a delivery to the client is scheduled.
    pub client_scheduled: bool,
    /// The broker asked not to be read (`Output::PauseRead`): nothing reaches it until it
    /// resumes.
    pub paused: bool,
    /// The broker closed it: deliver what it sent, then tell the client.
    pub closing: bool,
}

/// Every open link.
#[derive(Debug)]
pub struct Net {
    /// Links by connection (ordered, so iteration is deterministic).
    pub links: BTreeMap<ConnId, Link>,
    /// Faults.
    pub faults: NetFaults,
    /// Whether faults are active.
    pub faults_on: bool,
    next_conn: u64,
}

impl Net {
    /// No links.
    #[must_use]
    pub fn new(faults: NetFaults) -> Self {
        Self { links: BTreeMap::new(), faults, faults_on: true, next_conn: 0 }
    }

    /// Opens a link for `client`; connection ids are never reused.
    pub fn open(&mut self, client: usize) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.links.insert(conn, Link { client, ..Link::default() });
        conn
    }

    /// How long until the next delivery.
    pub fn delay(&self, rng: &mut SimRng) -> Duration {
        let max = if self.faults_on { self.faults.max_delay_ms } else { 1 };
        rng.millis(0, max)
    }

    /// Takes the next delivery out of `buf`: everything, or a random prefix.
    pub fn take(split_rate: f64, buf: &mut BytesMut, rng: &mut SimRng) -> Bytes {
        let n = if buf.len() > 1 && rng.chance(split_rate) {
            // Small pieces are the interesting ones (a size prefix cut in half).
            if rng.chance(0.5) { rng.range(1, 7.min(buf.len() as u64)) } else { rng.range(1, buf.len() as u64) }
        } else {
            buf.len() as u64
        };
        buf.split_to(usize::try_from(n).unwrap_or(buf.len())).freeze()
    }
}
