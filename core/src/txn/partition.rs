//! What one partition knows about transactions: which producers have a transaction open in
//! it (from the first offset it wrote there), and which transactions were aborted in it.
//!
//! The last stable offset (LSO) is the first offset of the oldest open transaction, or the
//! high watermark when none is older: read_committed consumers read up to it and no further.
//! A transaction stays open in the partition until its marker is below the high watermark.
//! Aborted transactions are kept as (producer id, first offset, marker offset), ordered by
//! marker offset, for as long as their marker is in the log: a read_committed fetch lists the
//! ones that overlap what it returns (Kafka's transaction index), and the consumer drops that
//! producer's batches from the first offset up to the marker.
//!
//! After a restart the exact first offset of a transaction that is still open is not known;
//! the coordinator hands a lower bound instead (the partition's high watermark when the
//! partition joined the transaction, see [`crate::txn::TxnMeta::partitions`]), which is safe:
//! the LSO stays at or below the transaction's records, and an aborted range that starts
//! early covers only that producer's batches, of which there are none before it.

use std::collections::{BTreeMap, VecDeque};

/// A transaction aborted in a partition: a read_committed consumer drops producer
/// `producer_id`'s batches from `first_offset` up to the marker at `last_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbortedTxn {
    /// The producer id.
    pub producer_id: i64,
    /// The transaction's first offset in the partition (or a lower bound).
    pub first_offset: i64,
    /// The offset of the ABORT marker.
    pub last_offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Open {
    first_offset: i64,
    /// The marker's offset, once assigned.
    marker: Option<i64>,
}

/// A partition's open and aborted transactions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionTxns {
    open: BTreeMap<i64, Open>,
    aborted: VecDeque<AbortedTxn>,
}

impl PartitionTxns {
    /// Whether `producer_id` has a transaction open here whose marker is not yet assigned.
    #[must_use]
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.get(&producer_id).is_some_and(|o| o.marker.is_none())
    }

    /// The first offset of `producer_id`'s open transaction here (DescribeProducers'
    /// `current_txn_start_offset`).
    #[must_use]
    pub fn first_offset(&self, producer_id: i64) -> Option<i64> {
        self.open.get(&producer_id).filter(|o| o.marker.is_none()).map(|o| o.first_offset)
    }

    /// A transactional batch of `producer_id` was given offset `offset`: opens its
    /// transaction here unless it is open already.
    pub fn begin(&mut self, producer_id: i64, offset: i64) {
        match self.open.get_mut(&producer_id) {
            Some(o) if o.marker.is_none() => {}
            _ => {
                self.open.insert(producer_id, Open { first_offset: offset, marker: None });
            }
        }
    }

    /// At start: `producer_id` has a transaction open here whose records start at `bound`
    /// or later.
    pub fn recover_open(&mut self, producer_id: i64, bound: i64) {
        let o = self.open.entry(producer_id).or_insert(Open { first_offset: bound, marker: None });
        o.first_offset = o.first_offset.min(bound);
        o.marker = None;
    }

    /// The marker ending `producer_id`'s transaction was given offset `marker`. Returns the
    /// aborted transaction to remember (and store) when it aborts one that wrote here. A
    /// producer that wrote nothing here is remembered too, until the marker is visible, so
    /// that a rewind that takes the marker back opens it again (and the marker is written
    /// again).
    pub fn end(&mut self, producer_id: i64, commit: bool, marker: i64) -> Option<AbortedTxn> {
        let Some(o) = self.open.get_mut(&producer_id).filter(|o| o.marker.is_none()) else {
            self.open.insert(producer_id, Open { first_offset: marker, marker: Some(marker) });
            return None;
        };
        o.marker = Some(marker);
        if commit {
            return None;
        }
        let a = AbortedTxn { producer_id, first_offset: o.first_offset, last_offset: marker };
        self.remember_aborted(a);
        Some(a)
    }

    /// Remembers an aborted transaction (at start, from the store; or from [`Self::end`]).
    pub fn remember_aborted(&mut self, a: AbortedTxn) {
        if self.aborted.contains(&a) {
            return;
        }
        let at = self.aborted.partition_point(|x| x.last_offset <= a.last_offset);
        self.aborted.insert(at, a);
    }

    /// The last stable offset at high watermark `hwm`.
    #[must_use]
    pub fn lso(&self, hwm: i64) -> i64 {
        self.open.values().filter(|o| o.marker.is_none_or(|m| m >= hwm)).map(|o| o.first_offset).fold(hwm, i64::min)
    }

    /// Forgets the transactions whose marker is below `hwm`: they are visible whole.
    pub fn settle(&mut self, hwm: i64) {
        self.open.retain(|_, o| o.marker.is_none_or(|m| m >= hwm));
    }

    /// The aborted transactions a read_committed fetch of `[from, to)` must list: those whose
    /// marker is at or after `from` and whose first offset is below `to` (`to` is the end of
    /// the records the fetch returns, so the list is bounded by them).
    pub fn aborted_between(&self, from: i64, to: i64) -> impl Iterator<Item = AbortedTxn> + '_ {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted.range(start..).filter(move |a| a.first_offset < to).copied()
    }

    /// Every aborted transaction remembered, oldest marker first.
    pub fn aborted(&self) -> impl Iterator<Item = &AbortedTxn> {
        self.aborted.iter()
    }

    /// The partition's appends from `to` on are gone (a rewind): markers there are no longer
    /// written, transactions opened there may start at `to` when their producer writes again.
    pub fn rewound(&mut self, to: i64) {
        for o in self.open.values_mut() {
            if o.marker.is_some_and(|m| m >= to) {
                o.marker = None;
            }
            o.first_offset = o.first_offset.min(to);
        }
        self.aborted.retain(|a| a.last_offset < to);
    }

    /// The log now starts at `log_start`: aborted transactions whose marker is below it are
    /// dropped and returned (to delete from the store).
    pub fn log_start_moved(&mut self, log_start: i64) -> Vec<AbortedTxn> {
        let n = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..n).collect()
    }
}

/// Where aborted transactions are stored: this prefix, the topic id, the partition and the
/// marker offset (so a partition's entries sort by marker).
pub const ABORTED_PREFIX: &[u8] = b"kelp/txn-aborted/";

/// The storage key of aborted transaction `a` in partition `key`.
#[must_use]
pub fn aborted_key(key: crate::io::PartitionKey, a: &AbortedTxn) -> bytes::Bytes {
    let mut k = Vec::with_capacity(ABORTED_PREFIX.len() + 28);
    k.extend_from_slice(ABORTED_PREFIX);
    k.extend_from_slice(&key.topic_id.0);
    k.extend_from_slice(&key.partition.to_be_bytes());
    k.extend_from_slice(&a.last_offset.to_be_bytes());
    bytes::Bytes::from(k)
}

/// The stored value of aborted transaction `a`: version 1, producer id, first offset.
#[must_use]
pub fn encode_aborted(a: &AbortedTxn) -> bytes::Bytes {
    let mut v = Vec::with_capacity(17);
    v.push(1);
    v.extend_from_slice(&a.producer_id.to_be_bytes());
    v.extend_from_slice(&a.first_offset.to_be_bytes());
    bytes::Bytes::from(v)
}

/// The partition and aborted transaction a stored key/value holds, if it is one.
#[must_use]
pub fn decode_aborted(k: &[u8], v: &[u8]) -> Option<(crate::io::PartitionKey, AbortedTxn)> {
    let rest = k.strip_prefix(ABORTED_PREFIX)?;
    if rest.len() != 28 || v.len() != 17 || v[0] != 1 {
        return None;
    }
    let key = crate::io::PartitionKey {
        topic_id: crate::codec::Uuid(rest[..16].try_into().ok()?),
        partition: i32::from_be_bytes(rest[16..20].try_into().ok()?),
    };
    let a = AbortedTxn {
        last_offset: i64::from_be_bytes(rest[20..28].try_into().ok()?),
        producer_id: i64::from_be_bytes(v[1..9].try_into().ok()?),
        first_offset: i64::from_be_bytes(v[9..17].try_into().ok()?),
    };
    (a.first_offset <= a.last_offset).then_some((key, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lso_stops_at_the_oldest_open_transaction_until_its_marker_is_visible() {
        let mut t = PartitionTxns::default();
        assert_eq!(t.lso(10), 10);
        t.begin(7, 12);
        t.begin(8, 14);
        t.begin(7, 15);
        assert_eq!((t.lso(20), t.first_offset(7)), (12, Some(12)), "a later batch does not move the start");
        assert_eq!(t.end(7, true, 20), None, "a commit leaves nothing to remember");
        assert!(!t.is_open(7));
        assert_eq!(t.lso(20), 12, "the marker is not yet below the high watermark");
        assert_eq!(t.lso(21), 14, "then the next open transaction holds it");
        t.settle(21);
        let a = t.end(8, false, 21).unwrap();
        assert_eq!(a, AbortedTxn { producer_id: 8, first_offset: 14, last_offset: 21 });
        assert_eq!(t.lso(22), 22);
        t.begin(7, 23);
        assert_eq!(t.lso(30), 23, "the producer's next transaction opens afresh");
    }

    #[test]
    fn a_fetch_lists_the_aborted_transactions_that_overlap_it() {
        let mut t = PartitionTxns::default();
        for (pid, first, last) in [(1, 0, 5), (2, 3, 9), (1, 10, 12)] {
            t.begin(pid, first);
            t.end(pid, false, last);
            t.settle(last + 1);
        }
        let pids = |t: &PartitionTxns, from, to| t.aborted_between(from, to).map(|a| a.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(&t, 0, 3), vec![1]);
        assert_eq!(pids(&t, 0, 4), vec![1, 2]);
        assert_eq!(pids(&t, 6, 11), vec![2, 1]);
        assert_eq!(pids(&t, 13, 20), Vec::<i64>::new());
        assert_eq!(t.log_start_moved(6).len(), 1, "the first marker is gone with its segment");
        assert_eq!(pids(&t, 0, 20), vec![2, 1]);
    }

    #[test]
    fn a_rewind_reopens_what_it_took_back() {
        let mut t = PartitionTxns::default();
        t.begin(1, 4);
        t.end(1, false, 8);
        t.begin(2, 9);
        t.rewound(6);
        assert_eq!(t.aborted().count(), 0, "the marker was lost");
        assert!(t.is_open(1), "the marker will be written again");
        assert_eq!((t.first_offset(1), t.first_offset(2)), (Some(4), Some(6)));
        assert_eq!(t.end(1, false, 6).map(|a| (a.first_offset, a.last_offset)), Some((4, 6)));
    }

    #[test]
    fn recovery_uses_the_bound_and_the_stored_aborts() {
        let mut t = PartitionTxns::default();
        t.recover_open(5, 30);
        assert_eq!(t.lso(40), 30);
        let a = AbortedTxn { producer_id: 5, first_offset: 1, last_offset: 3 };
        t.remember_aborted(a);
        t.remember_aborted(a);
        assert_eq!(t.aborted().count(), 1, "the same abort stored twice is one");
        let key = crate::io::PartitionKey { topic_id: crate::codec::Uuid::from_u64_pair(1, 1), partition: 2 };
        let (k, v) = (aborted_key(key, &a), encode_aborted(&a));
        assert_eq!(decode_aborted(&k, &v), Some((key, a)));
        assert_eq!(decode_aborted(&k, &v[..16]), None);
        assert_eq!(decode_aborted(b"kelp/txn/x", &v), None);
    }
}
