//! One partition's state as the core owns it: log start, high watermark, the next offset to
//! assign, appends in flight, and idempotent producers' recent batches.
//!
//! Offsets are assigned when a produce is accepted, so appends to one partition pipeline: many
//! can be in the store at once. The high watermark (what fetchers see and what acks wait for)
//! only moves over a prefix of appends that have all completed. If an append fails, the ones
//! after it cannot stand (their offsets would leave a gap): the partition rewinds, failing
//! everything in flight, and once the store has answered them all, assignment restarts at the
//! high watermark. A store refuses an append whose base offset is not its own next offset, so
//! nothing after a failure is stored.
//!
//! Re-synchronisation: an append that failed with an unknown outcome
//! ([`crate::io::StorageError::outcome_unknown`]) may be stored after all, and so may the
//! appends behind it. Then rewinding to the high watermark would reuse offsets the store holds
//! and the store would refuse every later append. Instead, once nothing is in flight, the
//! partition asks the store for its real end ([`crate::io::Command::RecoverPartition`]) and
//! adopts it ([`PartitionLog::adopt`]): records that were stored become visible, and their
//! producers' batches are remembered, so an idempotent retry of one is a duplicate with its
//! original offsets. Appends stay refused until then.
//!
//! Durability: a store may hold an append before it is durable (a SeaweedMQ broker
//! acknowledges records it has only in memory and writes them out about once a second). Such
//! an append completes as [`crate::io::Completion::Stored`]: it moves the *stored* end (what
//! acks=1 answers on, Kafka's log end as the leader has written it) but not the high
//! watermark, which counts only durable records: fetchers never see, and acks=-1 never
//! confirms, what a crash of the store could still take back (Kafka's high watermark, with the
//! store's durability in the place of the followers). The partition asks the store when the
//! stored records become durable ([`crate::io::Command::AwaitDurable`], one at a time). If the
//! store cannot tell (its broker restarted), every record past the high watermark is of unknown
//! outcome and the partition re-synchronises from there, as after a failed append. Appends a
//! store completes as [`crate::io::Completion::Done`] are durable at once.
//!
//! Invariants (asserted): `log_start <= hwm <= stored <= next_offset`; the high watermark never
//! goes back.

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::codec::ErrorCode;
use crate::io::{BatchSummary, CmdId, PartitionExtent, PartitionKey, TimestampOffset};

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5,
/// matching `max.in.flight.requests.per.connection` for idempotent producers).
pub const PRODUCER_BATCHES: usize = 5;

#[derive(Debug)]
struct InFlight {
    cmd: CmdId,
    last_offset: i64,
    /// `Some(durable)` once the store has answered.
    done: Option<bool>,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSummary>,
}

/// What to do with an idempotent producer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in sequence: append it.
    Append,
    /// A retry of a batch already accepted: answer with the original's offsets.
    Duplicate(BatchSummary),
    /// Refuse it with this error.
    Reject(ErrorCode),
}

/// The state of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    /// Storage identity.
    pub key: PartitionKey,
    log_start: i64,
    hwm: i64,
    /// End of the completed prefix of appends: everything below it is in the store.
    stored: i64,
    /// Exclusive end of what the store has reported durable.
    durable: i64,
    /// The [`crate::io::Command::AwaitDurable`] outstanding, if any: only its answer counts.
    awaiting: Option<CmdId>,
    next_offset: i64,
    max_timestamp: TimestampOffset,
    in_flight: VecDeque<InFlight>,
    /// Set while rewinding: the base offset of the first failed append. Appends before it
    /// still count when they complete; none at or after it can.
    rewind_from: Option<i64>,
    /// Re-synchronisation with the store after an append whose outcome is unknown.
    resync: Resync,
    /// Answers to the current re-synchronisation that failed or were not adopted.
    resync_failures: u32,
    /// Why the last answer to the current re-synchronisation could not be used, when the
    /// store refused to let the partition go on (not merely could not answer).
    fenced: Option<&'static str>,
    /// Leader epochs and the offset each started at, oldest first (Kafka's leader epoch
    /// cache); the last is the current epoch. kelp starts every partition at epoch 0 and moves
    /// to a new epoch only when it accepts that the store lost records it had made durable
    /// (`unclean.leader.election.enable`), so that consumers detect the truncation (KIP-320).
    epochs: Vec<(i32, i64)>,
    /// A truncated end being accepted, with its new epoch history, while the history is
    /// being stored.
    truncating: Option<Box<Truncation>>,
    producers: HashMap<i64, ProducerEntry>,
    /// Transactions open and aborted here (see [`crate::txn::partition`]).
    pub txns: crate::txn::PartitionTxns,
}

/// An end below the high watermark being accepted, and the epoch history that goes with it.
#[derive(Debug)]
struct Truncation {
    extent: PartitionExtent,
    epochs: Vec<(i32, i64)>,
}

/// The store reported an end below the high watermark (or a log start beyond its end): it
/// would lose acknowledged records, so the partition does not adopt it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndBelowHighWatermark;

/// Where a partition stands in re-learning its end from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resync {
    /// In step with the store.
    No,
    /// An append's outcome is unknown; ask the store once nothing is in flight.
    Needed,
    /// Nothing is in flight: the store should be asked now.
    Wanted,
    /// Asked; waiting for [`PartitionLog::adopt`] or [`PartitionLog::resync_failed`].
    Asked,
}

impl PartitionLog {
    /// An empty partition.
    #[must_use]
    pub fn new(key: PartitionKey) -> Self {
        Self::recovered(key, &PartitionExtent { max_timestamp: TimestampOffset::NONE, ..Default::default() })
    }

    /// A partition as the store reported it at start.
    #[must_use]
    pub fn recovered(key: PartitionKey, e: &PartitionExtent) -> Self {
        assert!(e.log_start <= e.next_offset, "recovered log start {} beyond end {}", e.log_start, e.next_offset);
        let mut log = Self {
            key,
            log_start: e.log_start,
            hwm: e.next_offset,
            stored: e.next_offset,
            durable: e.next_offset,
            awaiting: None,
            next_offset: e.next_offset,
            max_timestamp: e.max_timestamp,
            in_flight: VecDeque::new(),
            rewind_from: None,
            resync: Resync::No,
            resync_failures: 0,
            fenced: None,
            epochs: vec![(0, 0)],
            truncating: None,
            producers: HashMap::new(),
            txns: crate::txn::PartitionTxns::default(),
        };
        for b in &e.producer_batches {
            log.remember(*b);
        }
        log
    }

    /// First offset still stored.
    #[must_use]
    pub fn log_start(&self) -> i64 {
        self.log_start
    }

    /// The high watermark: every offset below it is stored durably and visible.
    #[must_use]
    pub fn hwm(&self) -> i64 {
        self.hwm
    }

    /// The last stable offset: the high watermark, or the first offset of the oldest
    /// transaction still open here if that is lower (what read_committed consumers read up to).
    #[must_use]
    pub fn lso(&self) -> i64 {
        self.txns.lso(self.hwm).max(self.log_start)
    }

    /// A transaction marker of `(producer_id, epoch)` was assigned: a producer epoch the
    /// coordinator bumped (fencing the producer) is the partition's from now on, so the old
    /// epoch's batches are refused.
    pub fn fence_producer(&mut self, producer_id: i64, epoch: i16) {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
    }

    /// The end of what the store holds (acks=1 answers once an append is below it); at or
    /// above the high watermark, which it passes while the store has not made records durable.
    #[must_use]
    pub fn stored(&self) -> i64 {
        self.stored
    }

    /// True once when the partition should ask the store when its stored records become
    /// durable: the caller sends [`crate::io::Command::AwaitDurable`] with offset
    /// [`PartitionLog::stored`] as `cmd`, and reports the answer to
    /// [`PartitionLog::durable_until`] or [`PartitionLog::durability_unknown`].
    pub fn wants_durability(&self) -> bool {
        self.awaiting.is_none() && self.stored > self.hwm && self.resync == Resync::No
    }

    /// Records that `cmd` (an [`crate::io::Command::AwaitDurable`]) is outstanding.
    pub fn awaiting_durability(&mut self, cmd: CmdId) {
        assert!(self.awaiting.is_none(), "two AwaitDurable at once");
        self.awaiting = Some(cmd);
    }

    /// The store answered `cmd`: everything below `end` is durable. Returns the new high
    /// watermark if it moved. An answer to a question the partition no longer asks (it
    /// re-synchronised meanwhile) is ignored.
    pub fn durable_until(&mut self, cmd: CmdId, end: i64) -> Option<i64> {
        if self.awaiting != Some(cmd) {
            return None;
        }
        self.awaiting = None;
        self.durable = self.durable.max(end);
        let before = self.hwm;
        self.hwm = self.hwm.max(self.stored.min(self.durable));
        self.txns.settle(self.hwm);
        self.check();
        (self.hwm != before).then_some(self.hwm)
    }

    /// The store could not say whether the stored records will be durable (answer to `cmd`):
    /// they may be lost. Appends stop until the partition has re-learnt its end from the store,
    /// as after an append whose outcome is unknown; returns true if that starts now.
    pub fn durability_unknown(&mut self, cmd: CmdId) -> bool {
        if self.awaiting != Some(cmd) {
            return false;
        }
        self.awaiting = None;
        if self.stored == self.hwm || self.resync != Resync::No {
            return false;
        }
        // Nothing from the high watermark on counts any more: stored records may be gone, and
        // the appends in flight behind them cannot stand on their own.
        self.rewind_from = Some(self.rewind_from.map_or(self.hwm, |r| r.min(self.hwm)));
        self.stored = self.hwm;
        self.resync = Resync::Needed;
        self.finish_rewind();
        true
    }

    /// The offset the next accepted record gets (Kafka's log end offset).
    #[must_use]
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The largest timestamp and its offset, or (-1, -1).
    #[must_use]
    pub fn max_timestamp(&self) -> TimestampOffset {
        self.max_timestamp
    }

    /// Whether the partition is recovering from a failed append and refuses new ones.
    #[must_use]
    pub fn is_rewinding(&self) -> bool {
        self.rewind_from.is_some() || self.resync != Resync::No
    }

    /// Whether the partition waits for the store to tell it its end
    /// ([`crate::io::Command::RecoverPartition`]).
    #[must_use]
    pub fn is_resyncing(&self) -> bool {
        self.resync != Resync::No
    }

    /// True once when the store should be asked for the partition's end now; the caller then
    /// sends [`crate::io::Command::RecoverPartition`] and reports its answer to
    /// [`PartitionLog::adopt`] or [`PartitionLog::resync_failed`].
    pub fn take_resync_request(&mut self) -> bool {
        if self.resync == Resync::Wanted {
            self.resync = Resync::Asked;
            return true;
        }
        false
    }

    /// The store could not say where the partition ends, or (`fenced`) refused to let it go
    /// on, for the reason given; ask again later (the caller arms a timer and then calls
    /// [`PartitionLog::take_resync_request`]).
    pub fn resync_failed(&mut self, fenced: Option<&'static str>) {
        debug_assert_eq!(self.resync, Resync::Asked, "resync answer not asked for");
        if self.resync == Resync::Asked {
            self.resync = Resync::Wanted;
            self.resync_failures = self.resync_failures.saturating_add(1);
            self.fenced = fenced;
        }
    }

    /// Why the partition is fenced: the store refused to let it go on, or reported an end
    /// below the high watermark (records it had reported durable are gone). It refuses
    /// appends and keeps asking until that changes.
    #[must_use]
    pub fn fenced(&self) -> Option<&'static str> {
        self.fenced
    }

    /// How many answers in a row this re-synchronisation could not use (failures and ends
    /// below the high watermark); 0 once one is adopted. The caller backs off by it.
    #[must_use]
    pub fn resync_failures(&self) -> u32 {
        self.resync_failures
    }

    /// Adopts the store's view of the partition after appends with an unknown outcome.
    /// Everything the store holds becomes visible (the high watermark moves to its end) and
    /// the new batches' producers are remembered. Returns the new high watermark if it moved,
    /// or `Err` (and stays refusing appends; ask again) if the store's end is below the high
    /// watermark: that would lose acknowledged records, so it is never adopted.
    pub fn adopt(&mut self, e: &PartitionExtent) -> Result<Option<i64>, EndBelowHighWatermark> {
        assert_eq!(self.resync, Resync::Asked, "adopting an extent not asked for");
        assert!(self.in_flight.is_empty(), "adopting an extent with appends in flight");
        if e.next_offset < self.hwm || e.log_start > e.next_offset {
            self.resync = Resync::Wanted;
            self.resync_failures = self.resync_failures.saturating_add(1);
            self.fenced =
                Some("the store reports an end below the high watermark: records it had made durable are gone");
            return Err(EndBelowHighWatermark);
        }
        let old = self.hwm;
        self.resync = Resync::No;
        self.resync_failures = 0;
        self.fenced = None;
        self.hwm = e.next_offset;
        self.stored = e.next_offset;
        self.durable = e.next_offset;
        self.awaiting = None;
        self.next_offset = e.next_offset;
        self.log_start = self.log_start.max(e.log_start);
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < old);
        }
        self.txns.rewound(e.next_offset);
        self.txns.settle(self.hwm);
        let mut adopted: Vec<BatchSummary> =
            e.producer_batches.iter().filter(|b| b.base_offset >= old && b.last_offset < self.hwm).copied().collect();
        adopted.sort_by_key(|b| b.base_offset);
        for b in adopted {
            self.remember(b);
        }
        let kept = if self.max_timestamp.offset < old { self.max_timestamp } else { TimestampOffset::NONE };
        self.max_timestamp = if e.max_timestamp.timestamp > kept.timestamp { e.max_timestamp } else { kept };
        self.check();
        Ok((self.hwm != old).then_some(self.hwm))
    }

    /// The current leader epoch.
    #[must_use]
    pub fn leader_epoch(&self) -> i32 {
        self.epochs.last().map_or(0, |e| e.0)
    }

    /// The leader epoch history, oldest first: (epoch, first offset).
    #[must_use]
    pub fn epochs(&self) -> &[(i32, i64)] {
        &self.epochs
    }

    /// Takes the stored leader epoch history (at start). An empty or disordered one is
    /// ignored.
    pub fn set_epochs(&mut self, epochs: Vec<(i32, i64)>) {
        if !epochs.is_empty() && epochs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
            self.epochs = epochs;
        }
    }

    /// The epoch of the record at `offset`: the last epoch that started at or before it.
    #[must_use]
    pub fn epoch_at(&self, offset: i64) -> i32 {
        self.epochs.iter().rev().find(|e| e.1 <= offset).map_or(self.epochs.first().map_or(0, |e| e.0), |e| e.0)
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch at or below `requested`
    /// and the offset it ended at (the next epoch's start, or the log end for the current
    /// one); (-1, -1) for an undefined or future epoch.
    #[must_use]
    pub fn epoch_end(&self, requested: i32) -> (i32, i64) {
        if requested < 0 {
            return (-1, -1);
        }
        if requested == self.leader_epoch() {
            return (requested, self.next_offset);
        }
        let Some(higher) = self.epochs.iter().find(|e| e.0 > requested) else { return (-1, -1) };
        match self.epochs.iter().rev().find(|e| e.0 <= requested) {
            None => (requested, higher.1),
            Some(floor) => (floor.0, higher.1),
        }
    }

    /// The epoch history after accepting that the partition ends at `end`, below its high
    /// watermark: epochs that started after `end` are dropped and a new one starts there.
    #[must_use]
    pub fn epochs_truncated_to(&self, end: i64) -> Vec<(i32, i64)> {
        let next = self.leader_epoch() + 1;
        let mut epochs: Vec<(i32, i64)> = self.epochs.iter().copied().filter(|e| e.1 <= end).collect();
        epochs.push((next, end));
        epochs
    }

    /// Starts accepting the store's end `e`, below the high watermark: returns the epoch
    /// history to store first; once it is, [`PartitionLog::truncation_stored`] adopts it.
    pub fn begin_truncation(&mut self, e: &PartitionExtent) -> Vec<(i32, i64)> {
        assert_eq!(self.resync, Resync::Asked, "truncating to an extent not asked for");
        let epochs = self.epochs_truncated_to(e.next_offset);
        self.truncating = Some(Box::new(Truncation { extent: e.clone(), epochs: epochs.clone() }));
        epochs
    }

    /// The epoch history of the truncation begun with [`PartitionLog::begin_truncation`] is
    /// stored (`ok`) or could not be: adopts it, or asks the store again later. Returns whether
    /// it was adopted.
    pub fn truncation_stored(&mut self, ok: bool) -> bool {
        let Some(t) = self.truncating.take() else { return false };
        if !ok {
            self.resync_failed(None);
            return false;
        }
        let Truncation { extent, epochs } = *t;
        self.adopt_truncated(&extent, epochs);
        true
    }

    /// Accepts the store's end below the high watermark (an operator allowed it with
    /// `unclean.leader.election.enable`): records it had made durable are gone. The partition
    /// continues at the store's end in a new leader epoch (`epochs`, from
    /// [`PartitionLog::epochs_truncated_to`], already stored), forgetting producer batches
    /// beyond it.
    fn adopt_truncated(&mut self, e: &PartitionExtent, epochs: Vec<(i32, i64)>) {
        assert_eq!(self.resync, Resync::Asked, "adopting an extent not asked for");
        assert!(self.in_flight.is_empty(), "adopting an extent with appends in flight");
        let end = e.next_offset;
        self.resync = Resync::No;
        self.resync_failures = 0;
        self.fenced = None;
        self.awaiting = None;
        (self.hwm, self.stored, self.durable, self.next_offset) = (end, end, end, end);
        self.log_start = self.log_start.max(e.log_start).min(end);
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < end);
        }
        self.txns.rewound(end);
        self.max_timestamp = e.max_timestamp;
        self.epochs = epochs;
        self.check();
    }

    /// Appends in the store right now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Checks an idempotent producer's batch against what this partition has seen.
    #[must_use]
    pub fn check_sequence(&self, producer_id: i64, epoch: i16, base_seq: i32, last_seq: i32) -> SequenceCheck {
        let Some(entry) = self.producers.get(&producer_id) else {
            // No state for this producer: it is new, or retention or DeleteRecords removed all
            // its batches (and a restart forgot it). Kafka's ProducerAppendInfo accepts any
            // sequence then, so that such a producer keeps counting where it stood.
            return SequenceCheck::Append;
        };
        if epoch < entry.epoch {
            return SequenceCheck::Reject(ErrorCode::INVALID_PRODUCER_EPOCH);
        }
        if epoch > entry.epoch {
            // A bumped epoch restarts the sequence (KIP-360).
            return if base_seq == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        if entry.batches.is_empty() {
            // Only the epoch is known (a transaction marker set it): any sequence continues,
            // as for a producer whose batches are gone.
            return SequenceCheck::Append;
        }
        if let Some(dup) = entry.batches.iter().find(|b| b.base_sequence == base_seq && b.last_sequence == last_seq) {
            return SequenceCheck::Duplicate(*dup);
        }
        let last = entry.batches.back().map_or(-1, |b| b.last_sequence);
        let expected = if last == i32::MAX { 0 } else { last + 1 };
        if base_seq == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::Reject(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        }
    }

    /// Reserves offsets for `records` records and records the append `cmd` as in flight.
    /// Returns the base offset.
    pub fn assign(&mut self, cmd: CmdId, records: i64, max_timestamp: i64) -> i64 {
        assert!(self.rewind_from.is_none() && self.resync == Resync::No, "assign while rewinding");
        assert!(records > 0, "an append holds at least one record");
        let base = self.next_offset;
        self.next_offset += records;
        self.in_flight.push_back(InFlight { cmd, last_offset: self.next_offset - 1, done: None });
        if max_timestamp > self.max_timestamp.timestamp {
            self.max_timestamp = TimestampOffset { timestamp: max_timestamp, offset: self.next_offset - 1 };
        }
        base
    }

    /// Remembers an accepted idempotent batch (at assignment, so a retry that arrives while the
    /// original is still in flight is recognised).
    pub fn remember(&mut self, b: BatchSummary) {
        if b.base_sequence < 0 {
            // A transaction marker (stores report them with the producer's batches): it carries
            // the producer's epoch but no sequence, and leaves the producer's sequence where
            // it was, as in Kafka.
            return self.fence_producer(b.producer_id, b.producer_epoch);
        }
        let entry = self.producers.entry(b.producer_id).or_default();
        if b.producer_epoch != entry.epoch {
            entry.epoch = b.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(b);
        while entry.batches.len() > PRODUCER_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// The producers this partition knows, with their epoch and latest batch.
    pub fn producers(&self) -> impl Iterator<Item = (i64, i16, Option<&BatchSummary>)> {
        self.producers.iter().map(|(pid, e)| (*pid, e.epoch, e.batches.back()))
    }

    /// Marks append `cmd` stored, and durable too if `durable` (else the store will say when,
    /// see [`PartitionLog::wants_durability`]). Returns the new high watermark if it moved.
    pub fn append_done(&mut self, cmd: CmdId, durable: bool) -> Option<i64> {
        let entry = self.in_flight.iter_mut().find(|f| f.cmd == cmd);
        debug_assert!(entry.is_some(), "completion for an append not in flight");
        entry?.done = Some(durable);
        let before = self.hwm;
        self.pop_done();
        self.finish_rewind();
        self.check();
        (self.hwm != before).then_some(self.hwm)
    }

    /// Drops the completed appends at the front of `in_flight`; those before a rewind point
    /// move the stored end, and the high watermark as far as they are durable.
    fn pop_done(&mut self) {
        while let Some(durable) = self.in_flight.front().and_then(|f| f.done) {
            if let Some(f) = self.in_flight.pop_front()
                && self.rewind_from.is_none_or(|r| f.last_offset < r)
            {
                self.stored = f.last_offset + 1;
                if durable {
                    // A store that answers `Done` has made everything before it durable too.
                    self.durable = self.durable.max(self.stored);
                }
                self.hwm = self.hwm.max(self.stored.min(self.durable));
            }
        }
        self.txns.settle(self.hwm);
    }

    /// Marks append `cmd` failed: the partition rewinds (see the module docs). If
    /// `outcome_unknown`, the append may have been stored, and the partition re-learns its end
    /// from the store instead of rewinding to the high watermark. Returns the failed append's
    /// last offset (`None` for an append not in flight).
    pub fn append_failed(&mut self, cmd: CmdId, outcome_unknown: bool) -> Option<i64> {
        let Some(pos) = self.in_flight.iter().position(|f| f.cmd == cmd) else {
            debug_assert!(false, "failure for an append not in flight");
            return None;
        };
        let last_offset = self.in_flight[pos].last_offset;
        // Appends before the failed one may still complete and count; it and everything after
        // it cannot. The front of `in_flight` always starts at the stored end.
        let base = if pos == 0 { self.stored } else { self.in_flight[pos - 1].last_offset + 1 };
        self.rewind_from = Some(self.rewind_from.map_or(base, |r| r.min(base)));
        self.in_flight.remove(pos);
        if outcome_unknown && self.resync == Resync::No {
            self.resync = Resync::Needed;
        }
        // Appends behind the failed one that were already stored (possible only when the
        // failed one's outcome is unknown: it was stored too) no longer wait for it.
        self.pop_done();
        self.finish_rewind();
        Some(last_offset)
    }

    fn finish_rewind(&mut self) {
        if self.rewind_from.is_none() || !self.in_flight.is_empty() {
            return;
        }
        self.rewind_from = None;
        if self.resync == Resync::Needed {
            // Appends at or after the high watermark may be stored: keep `next_offset` and
            // the producers' batches until the store says which.
            self.resync = Resync::Wanted;
            return;
        }
        // Stored records stay (they become durable in their time); the rest is gone.
        self.next_offset = self.stored;
        self.txns.rewound(self.stored);
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.last_offset < self.stored);
        }
        if self.max_timestamp.offset >= self.stored {
            // The record with the largest timestamp is gone; the true maximum among what is left
            // is not known here, so report none until the next append (as an empty log would).
            self.max_timestamp = TimestampOffset::NONE;
        }
        self.check();
    }

    /// Moves the log start forward (DeleteRecords, retention). Returns false if `offset` is
    /// beyond the high watermark.
    pub fn set_log_start(&mut self, offset: i64) -> bool {
        if offset > self.hwm {
            return false;
        }
        self.log_start = self.log_start.max(offset);
        // Aborted ranges whose marker is gone are not listed any more (their stored copies
        // are skipped at start).
        self.txns.log_start_moved(self.log_start);
        true
    }

    /// Retention moved the log start to `offset` (see [`PartitionLog::set_log_start`]);
    /// `max_timestamp` is the largest timestamp the store still holds. If the record with the
    /// largest timestamp was deleted, the maximum falls back to what is left, as Kafka's
    /// MAX_TIMESTAMP looks only at the segments it still has. (An append assigned after the
    /// store answered and carrying a larger timestamp than what is left is not counted until
    /// the next larger one: the store could not have seen it.)
    pub fn retained(&mut self, offset: i64, max_timestamp: TimestampOffset) -> bool {
        if !self.set_log_start(offset) {
            return false;
        }
        if self.max_timestamp.offset >= 0 && self.max_timestamp.offset < self.log_start {
            self.max_timestamp = max_timestamp;
        }
        true
    }

    fn check(&self) {
        assert!(
            self.log_start <= self.hwm && self.hwm <= self.stored && self.stored <= self.next_offset,
            "partition {:?}: log_start {} hwm {} stored {} next {}",
            self.key,
            self.log_start,
            self.hwm,
            self.stored,
            self.next_offset
        );
    }
}

/// Where a partition's leader epoch history is stored (only once it has moved past epoch 0).
const EPOCHS_PREFIX: &[u8] = b"kelp/leader-epochs/";

/// The storage key of `key`'s leader epoch history.
#[must_use]
pub fn epochs_key(key: PartitionKey) -> bytes::Bytes {
    let mut k = Vec::with_capacity(EPOCHS_PREFIX.len() + 20);
    k.extend_from_slice(EPOCHS_PREFIX);
    k.extend_from_slice(&key.topic_id.0);
    k.extend_from_slice(&key.partition.to_be_bytes());
    bytes::Bytes::from(k)
}

/// The stored value of a leader epoch history: version 1, a count, then (epoch i32, start
/// offset i64) pairs, big-endian.
#[must_use]
pub fn encode_epochs(epochs: &[(i32, i64)]) -> bytes::Bytes {
    let mut v = Vec::with_capacity(5 + epochs.len() * 12);
    v.push(1);
    v.extend_from_slice(&u32::try_from(epochs.len()).unwrap_or(u32::MAX).to_be_bytes());
    for (epoch, start) in epochs {
        v.extend_from_slice(&epoch.to_be_bytes());
        v.extend_from_slice(&start.to_be_bytes());
    }
    bytes::Bytes::from(v)
}

/// The partition and leader epoch history a stored key/value holds, if it is one.
#[must_use]
pub fn decode_epochs(k: &[u8], v: &[u8]) -> Option<(PartitionKey, Vec<(i32, i64)>)> {
    let rest = k.strip_prefix(EPOCHS_PREFIX)?;
    let (id, part) = (rest.get(..16)?, rest.get(16..20)?);
    if rest.len() != 20 {
        return None;
    }
    let key = PartitionKey {
        topic_id: crate::codec::Uuid(id.try_into().ok()?),
        partition: i32::from_be_bytes(part.try_into().ok()?),
    };
    let (&version, body) = v.split_first()?;
    let n = usize::try_from(u32::from_be_bytes(body.get(..4)?.try_into().ok()?)).ok()?;
    let pairs = body.get(4..)?;
    if version != 1 || pairs.len() != n.checked_mul(12)? {
        return None;
    }
    let epochs = pairs
        .chunks_exact(12)
        .map(|c| {
            let (e, o) = c.split_at(4);
            Some((i32::from_be_bytes(e.try_into().ok()?), i64::from_be_bytes(o.try_into().ok()?)))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((key, epochs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Uuid;

    fn log() -> PartitionLog {
        PartitionLog::new(PartitionKey { topic_id: Uuid::from_u64_pair(1, 2), partition: 0 })
    }

    #[test]
    fn hwm_moves_over_the_completed_prefix_only() {
        let mut l = log();
        assert_eq!(l.assign(CmdId(1), 3, 10), 0);
        assert_eq!(l.assign(CmdId(2), 2, 5), 3);
        assert_eq!(l.next_offset(), 5);
        assert_eq!(l.append_done(CmdId(2), true), None, "a later append alone moves nothing");
        assert_eq!(l.hwm(), 0);
        assert_eq!(l.append_done(CmdId(1), true), Some(5));
        assert_eq!(l.max_timestamp(), TimestampOffset { timestamp: 10, offset: 2 });
    }

    #[test]
    fn a_failed_append_rewinds_after_the_rest_drain() {
        let mut l = log();
        l.assign(CmdId(1), 2, 0);
        l.assign(CmdId(2), 2, 0);
        l.assign(CmdId(3), 2, 0);
        l.append_failed(CmdId(2), false);
        assert!(l.is_rewinding());
        assert_eq!(l.append_done(CmdId(1), true), Some(2), "the append before the failure still counts");
        l.append_failed(CmdId(3), false);
        assert!(!l.is_rewinding());
        assert_eq!((l.hwm(), l.next_offset()), (2, 2));
        assert_eq!(l.assign(CmdId(4), 1, 0), 2, "assignment restarts at the high watermark");
    }

    #[test]
    fn idempotent_sequences_are_checked_like_kafka() {
        let mut l = log();
        let b = |seq: i32, n: i32, off: i64| BatchSummary {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: seq,
            last_sequence: seq + n - 1,
            base_offset: off,
            last_offset: off + i64::from(n) - 1,
            timestamp: 0,
        };
        assert_eq!(l.check_sequence(7, 0, 3, 4), SequenceCheck::Append, "an unknown producer starts anywhere");
        assert_eq!(l.check_sequence(7, 0, 0, 4), SequenceCheck::Append);
        l.remember(b(0, 5, 0));
        assert_eq!(l.check_sequence(7, 0, 0, 4), SequenceCheck::Duplicate(b(0, 5, 0)));
        assert_eq!(l.check_sequence(7, 0, 6, 7), SequenceCheck::Reject(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(l.check_sequence(7, 0, 5, 7), SequenceCheck::Append);
        for i in 1..=6 {
            l.remember(b(i * 5, 5, i64::from(i) * 5));
        }
        assert_eq!(
            l.check_sequence(7, 0, 0, 4),
            SequenceCheck::Reject(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER),
            "only 5 batches are remembered"
        );
        assert_eq!(l.check_sequence(7, 1, 0, 0), SequenceCheck::Append, "a new epoch restarts at 0");
        l.remember(BatchSummary { producer_epoch: 1, ..b(0, 1, 40) });
        assert_eq!(l.check_sequence(7, 0, 35, 35), SequenceCheck::Reject(ErrorCode::INVALID_PRODUCER_EPOCH));
    }

    #[test]
    fn a_later_append_stored_before_an_unknown_failure_does_not_hold_up_the_resync() {
        let mut l = log();
        l.assign(CmdId(1), 2, 0);
        l.assign(CmdId(2), 2, 0);
        assert_eq!(l.append_done(CmdId(2), true), None);
        l.append_failed(CmdId(1), true);
        assert_eq!(l.in_flight(), 0);
        assert!(l.take_resync_request(), "nothing is in flight: the store is asked");
        let extent = PartitionExtent { next_offset: 4, max_timestamp: TimestampOffset::NONE, ..Default::default() };
        assert_eq!(l.adopt(&extent), Ok(Some(4)));
        assert!(!l.is_rewinding());
        assert_eq!(l.assign(CmdId(3), 1, 0), 4);
    }

    #[test]
    fn an_end_below_the_high_watermark_is_not_adopted() {
        let mut l = log();
        l.assign(CmdId(1), 2, 0);
        assert_eq!(l.append_done(CmdId(1), true), Some(2));
        l.assign(CmdId(2), 2, 0);
        l.append_failed(CmdId(2), true);
        assert!(l.take_resync_request());
        let short = PartitionExtent { next_offset: 1, max_timestamp: TimestampOffset::NONE, ..Default::default() };
        assert_eq!(l.adopt(&short), Err(EndBelowHighWatermark));
        assert!(l.is_rewinding(), "still refusing appends");
        assert!(l.take_resync_request(), "asked again");
        let right = PartitionExtent { next_offset: 2, max_timestamp: TimestampOffset::NONE, ..Default::default() };
        assert_eq!(l.adopt(&right), Ok(None));
        assert_eq!((l.hwm(), l.next_offset()), (2, 2));
    }

    #[test]
    fn stored_records_wait_for_durability_before_the_high_watermark_moves() {
        let mut l = log();
        l.assign(CmdId(1), 3, 0);
        l.assign(CmdId(2), 2, 0);
        assert_eq!(l.append_done(CmdId(1), false), None, "stored, not durable: invisible");
        assert_eq!((l.hwm(), l.stored()), (0, 3));
        assert!(l.wants_durability());
        l.awaiting_durability(CmdId(10));
        assert!(!l.wants_durability(), "one question at a time");
        assert_eq!(l.append_done(CmdId(2), false), None);
        assert_eq!(l.stored(), 5);
        assert_eq!(l.durable_until(CmdId(10), 3), Some(3), "durable up to where the store says");
        assert!(l.wants_durability(), "the rest is still to come");
        l.awaiting_durability(CmdId(11));
        assert_eq!(l.durable_until(CmdId(99), 5), None, "an answer to another question is ignored");
        assert_eq!(l.durable_until(CmdId(11), 9), Some(5), "never beyond what is stored");
        assert!(!l.wants_durability());
        l.assign(CmdId(3), 1, 0);
        assert_eq!(l.append_done(CmdId(3), false), Some(6), "the store said everything below 9 is durable");
        l.assign(CmdId(4), 4, 0);
        assert_eq!(l.append_done(CmdId(4), false), Some(9));
        assert_eq!(l.stored(), 10);
        assert!(l.wants_durability(), "offset 9 was not covered");
    }

    #[test]
    fn a_store_that_cannot_tell_durability_makes_the_partition_resync_from_the_high_watermark() {
        let mut l = log();
        l.assign(CmdId(1), 2, 0);
        l.append_done(CmdId(1), false);
        l.assign(CmdId(2), 2, 0);
        l.awaiting_durability(CmdId(10));
        assert!(l.durability_unknown(CmdId(10)));
        assert!(l.is_rewinding(), "appends are refused");
        assert_eq!(l.stored(), 0, "stored records count no more");
        assert!(!l.take_resync_request(), "not while an append is in flight");
        assert_eq!(l.append_done(CmdId(2), false), None, "an append behind the doubt does not count");
        assert!(l.take_resync_request());
        // The store kept the first append only.
        let e = PartitionExtent { next_offset: 2, max_timestamp: TimestampOffset::NONE, ..Default::default() };
        assert_eq!(l.adopt(&e), Ok(Some(2)));
        assert_eq!((l.hwm(), l.stored(), l.next_offset()), (2, 2, 2));
        assert!(!l.wants_durability());
    }

    #[test]
    fn a_definite_failure_keeps_stored_records_waiting_for_durability() {
        let mut l = log();
        l.assign(CmdId(1), 2, 0);
        l.assign(CmdId(2), 2, 0);
        l.append_done(CmdId(1), false);
        l.append_failed(CmdId(2), false);
        assert!(!l.is_rewinding());
        assert_eq!((l.hwm(), l.stored(), l.next_offset()), (0, 2, 2), "assignment restarts at the stored end");
        assert!(l.wants_durability());
        l.awaiting_durability(CmdId(10));
        assert_eq!(l.durable_until(CmdId(10), 2), Some(2));
    }

    #[test]
    fn a_fenced_answer_is_remembered_until_an_end_is_adopted() {
        let mut l = log();
        l.assign(CmdId(1), 2, 0);
        l.append_done(CmdId(1), true);
        l.assign(CmdId(2), 1, 0);
        l.append_failed(CmdId(2), true);
        assert!(l.take_resync_request());
        l.resync_failed(Some("offsets would be re-used"));
        assert_eq!(l.fenced(), Some("offsets would be re-used"));
        assert!(l.take_resync_request());
        let short = PartitionExtent { next_offset: 1, max_timestamp: TimestampOffset::NONE, ..Default::default() };
        assert!(l.adopt(&short).is_err());
        assert!(l.fenced().is_some(), "an end below the high watermark fences too");
        assert!(l.take_resync_request());
        let e = PartitionExtent { next_offset: 2, max_timestamp: TimestampOffset::NONE, ..Default::default() };
        assert_eq!(l.adopt(&e), Ok(None));
        assert_eq!(l.fenced(), None);
    }

    #[test]
    fn epoch_ends_answer_like_kafkas_leader_epoch_cache() {
        let mut l = log();
        l.assign(CmdId(1), 10, 0);
        l.append_done(CmdId(1), true);
        assert_eq!((l.leader_epoch(), l.epoch_end(0)), (0, (0, 10)));
        l.set_epochs(vec![(0, 0), (2, 4), (5, 7)]);
        assert_eq!(l.epoch_end(5), (5, 10), "the current epoch ends at the log end");
        assert_eq!(l.epoch_end(3), (2, 7), "an epoch between: the floor epoch, ended by the next");
        assert_eq!(l.epoch_end(0), (0, 4));
        assert_eq!(l.epoch_end(6), (-1, -1), "a future epoch is unknown");
        assert_eq!(l.epoch_end(-1), (-1, -1));
        assert_eq!((l.epoch_at(3), l.epoch_at(4), l.epoch_at(9)), (0, 2, 5));
        assert_eq!(l.epochs_truncated_to(5), vec![(0, 0), (2, 4), (6, 5)]);
        l.set_epochs(vec![(3, 0), (1, 5)]);
        assert_eq!(l.leader_epoch(), 5, "a disordered history is not taken");
        let k = PartitionKey { topic_id: Uuid::from_u64_pair(9, 9), partition: 3 };
        let v = encode_epochs(&[(0, 0), (1, 42)]);
        assert_eq!(decode_epochs(&epochs_key(k), &v), Some((k, vec![(0, 0), (1, 42)])));
        assert_eq!(decode_epochs(&epochs_key(k), &v[..v.len() - 1]), None, "a short value is refused");
        assert_eq!(decode_epochs(b"kelp/group/x", &v), None);
    }

    #[test]
    fn batches_beyond_a_rewind_are_forgotten() {
        let mut l = log();
        l.assign(CmdId(1), 1, 0);
        l.remember(BatchSummary {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: 0,
            last_sequence: 0,
            base_offset: 0,
            last_offset: 0,
            timestamp: 0,
        });
        l.append_failed(CmdId(1), false);
        assert_eq!(l.check_sequence(1, 0, 0, 0), SequenceCheck::Append, "the lost batch can be sent again");
    }
}
