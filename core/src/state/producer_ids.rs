//! Producer id allocation for idempotent producers.
//!
//! Ids are handed out from blocks reserved in storage (Kafka does the same through its
//! controller), so an id is never given twice, also across restarts: an id is handed out
//! without waiting only when a stored reservation covers it.

use bytes::Bytes;

use super::Topic;

/// Producer ids reserved per storage write.
pub(crate) const BLOCK: i64 = 1000;
/// The storage key of the end of the last reserved block.
pub(crate) const BLOCK_KEY: &[u8] = b"kelp/producer-id-block";

/// A producer id just handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextId {
    /// Covered by a stored reservation: answer at once.
    Ready(i64),
    /// Answer once a reservation ending (exclusive) at `block_end` is stored.
    AfterStoring {
        /// The id.
        id: i64,
        /// The end of the reservation to store.
        block_end: i64,
    },
}

/// Producer id allocation.
#[derive(Debug, Default)]
pub(crate) struct ProducerIds {
    next: i64,
    /// End (exclusive) of the ids reserved, stored or being stored.
    reserved_end: i64,
    /// End (exclusive) of the ids whose reservation is stored.
    durable_end: i64,
}

impl ProducerIds {
    /// Continues after everything handed out before a restart: past the last reserved
    /// block and past every producer id found in the logs.
    pub(crate) fn recover<'a>(&mut self, values: &[(Bytes, Bytes)], topics: impl Iterator<Item = &'a Topic>) {
        let stored = values
            .iter()
            .find(|(k, _)| k.as_ref() == BLOCK_KEY)
            .and_then(|(_, v)| v.first_chunk::<8>().map(|b| i64::from_be_bytes(*b)))
            .unwrap_or(0);
        let seen = topics
            .flat_map(|t| t.partitions.iter())
            .flat_map(|p| p.producers().map(|(pid, _, _)| pid + 1))
            .max()
            .unwrap_or(0);
        self.next = stored.max(seen);
        self.reserved_end = self.next;
        self.durable_end = self.next;
    }

    /// Hands out the next id. One not covered by a stored reservation reserves the next
    /// block (or re-stores the reservation in flight, which is idempotent).
    pub(crate) fn next(&mut self) -> NextId {
        let id = self.next;
        self.next += 1;
        if id < self.durable_end {
            return NextId::Ready(id);
        }
        if id >= self.reserved_end {
            self.reserved_end = id + BLOCK;
        }
        NextId::AfterStoring { id, block_end: self.reserved_end }
    }

    /// A reservation ending at `block_end` was stored.
    pub(crate) fn stored(&mut self, block_end: i64) {
        self.durable_end = self.durable_end.max(block_end);
    }

    /// A reservation could not be stored: the next id reserves afresh.
    pub(crate) fn not_stored(&mut self) {
        self.reserved_end = self.durable_end;
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, NextId, ProducerIds};

    #[test]
    fn ids_wait_for_a_stored_block_and_a_failed_store_reserves_again() {
        let mut ids = ProducerIds::default();
        assert_eq!(ids.next(), NextId::AfterStoring { id: 0, block_end: BLOCK });
        assert_eq!(ids.next(), NextId::AfterStoring { id: 1, block_end: BLOCK });
        ids.stored(BLOCK);
        assert_eq!(ids.next(), NextId::Ready(2));
        let mut lost = ProducerIds::default();
        let _ = lost.next();
        lost.not_stored();
        assert_eq!(lost.next(), NextId::AfterStoring { id: 1, block_end: 1 + BLOCK });
    }
}
