//! One transactional id's state, and the transaction coordinator's decisions on it.
//!
//! A [`TxnMeta`] is what Kafka keeps in `__transaction_state` for a transactional id: its
//! producer id and epoch, the epoch before the last bump (so that a retried InitProducerId is
//! recognised, KIP-360), the transaction timeout, the state, and the partitions and groups the
//! ongoing transaction has touched. Every decision is a function from the current metadata and
//! a request to either an error code or the next metadata, which the caller stores before it
//! answers (and while it is being stored, the id is busy: requests get
//! CONCURRENT_TRANSACTIONS).
//!
//! The states and what moves them on:
//! - `Empty`: a producer id and epoch, no transaction. AddPartitionsToTxn or AddOffsetsToTxn
//!   starts one (`Ongoing`).
//! - `Ongoing`: partitions or groups were added. EndTxn moves it to `PrepareCommit` or
//!   `PrepareAbort`; so do a transaction timeout and an InitProducerId that fences the
//!   producer (both abort, with a bumped epoch).
//! - `PrepareCommit` / `PrepareAbort`: the decision is stored; the markers are being written to
//!   every partition (and the groups' offsets applied or dropped). Once they all are:
//!   `CompleteCommit` / `CompleteAbort`.
//! - `CompleteCommit` / `CompleteAbort`: done; the next AddPartitionsToTxn starts a new
//!   transaction, an InitProducerId bumps the epoch (`Empty`).
//! - `Dead`: the id expired (`transactional.id.expiration.ms` without a transaction) and is
//!   forgotten.
//!
//! Transaction version 2 (KIP-890 part 2), which a client chooses by ending its transactions
//! with EndTxn v5: every EndTxn bumps the epoch, and the markers carry the bumped epoch, so a
//! late write of the old epoch is refused; partitions and groups join the transaction
//! implicitly (Produce v12+, TxnOffsetCommit v5+); an abort with no transaction open is an
//! empty abort that bumps the epoch too; and a transaction aborted for its timeout remembers
//! the epoch it had, so that its producer can abort in turn and carry on. When the bump would
//! exhaust the epoch, the markers carry `i16::MAX` and the completion moves the id to a new
//! producer id at epoch 0.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::codec::{ErrorCode, KStr, Uuid};
use crate::io::PartitionKey;

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`: the epoch of a producer id never handed out.
pub const NO_EPOCH: i16 = -1;

/// A transaction's state (Kafka's `TransactionState`; Kafka's transient `PrepareEpochFence`
/// is folded into the abort it leads to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction.
    Empty,
    /// A transaction is open.
    Ongoing,
    /// Committing: markers are being written.
    PrepareCommit,
    /// Aborting: markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
    /// The id expired.
    Dead,
}

impl TxnState {
    /// Every state, in the order of their stored numbers.
    pub const ALL: [Self; 7] = [
        Self::Empty,
        Self::Ongoing,
        Self::PrepareCommit,
        Self::PrepareAbort,
        Self::CompleteCommit,
        Self::CompleteAbort,
        Self::Dead,
    ];

    /// May `self` become `next`? (Kafka's valid-previous-states table, read forwards.)
    #[must_use]
    pub const fn can_become(self, next: Self) -> bool {
        use TxnState::{CompleteAbort, CompleteCommit, Dead, Empty, Ongoing, PrepareAbort, PrepareCommit};
        matches!(
            (self, next),
            (Empty | CompleteCommit | CompleteAbort, Empty)
                | (Empty | Ongoing | CompleteCommit | CompleteAbort, Ongoing)
                | (Ongoing, PrepareCommit | PrepareAbort)
                // Transaction version 2's empty abort.
                | (Empty | CompleteCommit | CompleteAbort, PrepareAbort)
                | (PrepareCommit, CompleteCommit)
                | (PrepareAbort, CompleteAbort)
                | (Empty | CompleteCommit | CompleteAbort, Dead)
        )
    }

    /// The name Kafka's DescribeTransactions and ListTransactions use.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
            Self::Dead => "Dead",
        }
    }

    /// The state named `name` (as [`TxnState::name`] spells it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether markers are being written.
    #[must_use]
    pub const fn is_preparing(self) -> bool {
        matches!(self, Self::PrepareCommit | Self::PrepareAbort)
    }

    const fn number(self) -> u8 {
        match self {
            Self::Empty => 0,
            Self::Ongoing => 1,
            Self::PrepareCommit => 2,
            Self::PrepareAbort => 3,
            Self::CompleteCommit => 4,
            Self::CompleteAbort => 5,
            Self::Dead => 6,
        }
    }
}

/// What a transaction writes to: a partition, or a group's committed offsets
/// (AddOffsetsToTxn; Kafka adds the group's `__consumer_offsets` partition).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnTarget {
    /// A data partition.
    Partition(PartitionKey),
    /// A consumer group's offsets.
    Group(KStr),
}

/// One transactional id, as the coordinator keeps and stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMeta {
    /// The transactional id.
    pub id: KStr,
    /// The producer id.
    pub producer_id: i64,
    /// The producer id before the last rotation (epoch exhaustion), or -1.
    pub prev_producer_id: i64,
    /// The current epoch ([`NO_EPOCH`] before the first InitProducerId completes).
    pub epoch: i16,
    /// The epoch before the last bump, or [`NO_EPOCH`]: a producer that retries an
    /// InitProducerId whose answer it lost names it (KIP-360).
    pub last_epoch: i16,
    /// `transaction.timeout.ms` as the producer asked.
    pub timeout_ms: i32,
    /// The state.
    pub state: TxnState,
    /// The partitions in the transaction, each with the partition's log end when it was
    /// added: no record of this transaction lies below it (a bound for the transaction's first
    /// offset there when a restart has forgotten the exact one).
    pub partitions: BTreeMap<PartitionKey, i64>,
    /// The groups whose offsets the transaction commits.
    pub groups: BTreeSet<KStr>,
    /// When the transaction started (wall ms), or -1 with none.
    pub start_ms: i64,
    /// When the metadata last changed (wall ms).
    pub update_ms: i64,
    /// Whether the producer uses transaction version 2 (KIP-890 part 2): it ended its last
    /// transaction with EndTxn v5, or its partitions and groups joined implicitly.
    pub tv2: bool,
}

/// What InitProducerId does (see [`TxnMeta::init_producer_id`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitPlan {
    /// Store this metadata, then answer with its producer id and epoch.
    Store(TxnMeta),
    /// The epoch is exhausted: hand out a new producer id, then store
    /// [`TxnMeta::rotated`] with it.
    NewProducerId,
    /// A transaction is open: fence it (store this metadata, with the epoch bumped and the
    /// state `PrepareAbort`, then write the abort markers) and answer
    /// CONCURRENT_TRANSACTIONS; the producer retries once the abort is complete.
    FenceAndAbort(TxnMeta),
}

/// What EndTxn does (see [`TxnMeta::end_txn`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndPlan {
    /// Store this metadata (`PrepareCommit` or `PrepareAbort`), answer, then write markers.
    Store(TxnMeta),
    /// Nothing to do: the same decision was already taken (a retry); answer at once.
    AlreadyDone,
}

/// Whether `epoch` is one a producer can no longer bump (Kafka moves to a new producer id).
#[must_use]
pub const fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

impl TxnMeta {
    /// A transactional id seen for the first time, with a fresh producer id and no epoch yet.
    #[must_use]
    pub fn new(id: KStr, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        Self {
            id,
            producer_id,
            prev_producer_id: -1,
            epoch: NO_EPOCH,
            last_epoch: NO_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeMap::new(),
            groups: BTreeSet::new(),
            start_ms: -1,
            update_ms: now_ms,
            tv2: false,
        }
    }

    /// The metadata in state `next` (asserting the transition is legal), stamped `now_ms`.
    #[must_use]
    pub fn to_state(&self, next: TxnState, now_ms: i64) -> Self {
        assert!(self.state.can_become(next), "illegal transaction transition {:?} -> {next:?}", self.state);
        Self { state: next, update_ms: now_ms, ..self.clone() }
    }

    /// Whether the open transaction has run past its timeout at `now_ms`.
    #[must_use]
    pub fn expired(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && self.start_ms >= 0 && now_ms > self.start_ms + i64::from(self.timeout_ms)
    }

    /// When the open transaction times out (wall ms), if one is open.
    #[must_use]
    pub fn deadline_ms(&self) -> Option<i64> {
        (self.state == TxnState::Ongoing && self.start_ms >= 0).then(|| self.start_ms + i64::from(self.timeout_ms))
    }

    /// Does `(producer_id, epoch)` from an InitProducerId (v3+) allow handing out an epoch?
    /// (Kafka's `isValidProducerId`.)
    fn accepts_expected(&self, producer_id: i64, epoch: i16) -> bool {
        self.epoch == NO_EPOCH
            || producer_id == self.producer_id
            || (producer_id == self.prev_producer_id && epoch_exhausted(epoch))
    }

    /// InitProducerId for this id with `timeout_ms` (already checked against the maximum),
    /// and the producer's current id and epoch when it names them (KIP-360; `None` for a
    /// producer starting afresh).
    ///
    /// # Errors
    /// PRODUCER_FENCED when the named producer is not this id's, or its epoch is neither the
    /// current nor the last one; CONCURRENT_TRANSACTIONS while markers are being written.
    pub fn init_producer_id(
        &self,
        expected: Option<(i64, i16)>,
        timeout_ms: i32,
        now_ms: i64,
    ) -> Result<InitPlan, ErrorCode> {
        if let Some((pid, epoch)) = expected
            && !self.accepts_expected(pid, epoch)
        {
            return Err(ErrorCode::PRODUCER_FENCED);
        }
        match self.state {
            // A dead id is on its way out (Kafka refuses it as an illegal state): retriable.
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::Dead => {
                Err(ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            TxnState::Ongoing => Ok(InitPlan::FenceAndAbort(self.fenced(now_ms))),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if epoch_exhausted(self.epoch) && expected.is_none_or(|(_, e)| e == self.epoch) {
                    return Ok(InitPlan::NewProducerId);
                }
                let (epoch, last_epoch) = match expected {
                    None => (self.epoch + 1, NO_EPOCH),
                    Some((_, e)) if self.epoch == NO_EPOCH || e == self.epoch => (self.epoch + 1, self.epoch),
                    // A retry of a bump whose answer was lost: the same epoch again.
                    Some((_, e)) if e == self.last_epoch => (self.epoch, self.last_epoch),
                    Some(_) => return Err(ErrorCode::PRODUCER_FENCED),
                };
                let mut next = self.empty_at(now_ms);
                (next.epoch, next.last_epoch, next.timeout_ms) = (epoch, last_epoch, timeout_ms);
                Ok(InitPlan::Store(next))
            }
        }
    }

    /// The metadata moved to a new producer id at epoch 0 (after [`InitPlan::NewProducerId`]);
    /// `keep_last` records the old epoch as the last one (the producer named it).
    #[must_use]
    pub fn rotated(&self, new_producer_id: i64, timeout_ms: i32, keep_last: bool, now_ms: i64) -> Self {
        let mut next = self.empty_at(now_ms);
        next.prev_producer_id = self.producer_id;
        next.producer_id = new_producer_id;
        next.epoch = 0;
        next.last_epoch = if keep_last { self.epoch } else { NO_EPOCH };
        next.timeout_ms = timeout_ms;
        next
    }

    fn empty_at(&self, now_ms: i64) -> Self {
        let mut next = self.to_state(TxnState::Empty, now_ms);
        next.partitions.clear();
        next.groups.clear();
        next.start_ms = -1;
        next
    }

    /// Checks that a request from `(producer_id, epoch)` may act on the transaction
    /// (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn).
    ///
    /// # Errors
    /// INVALID_PRODUCER_ID_MAPPING for another producer id, PRODUCER_FENCED for another
    /// epoch.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
        if producer_id != self.producer_id {
            Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING)
        } else if epoch != self.epoch {
            Err(ErrorCode::PRODUCER_FENCED)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the metadata with `partitions` (each with its
    /// partition's log end now) and `groups` in the transaction, or `None` when they all are
    /// already (nothing to store).
    ///
    /// # Errors
    /// As [`TxnMeta::check_producer`]; CONCURRENT_TRANSACTIONS while markers are being
    /// written; INVALID_TXN_STATE for a dead id.
    pub fn add(
        &self,
        (producer_id, epoch): (i64, i16),
        partitions: &[(PartitionKey, i64)],
        groups: &[KStr],
        now_ms: i64,
    ) -> Result<Option<Self>, ErrorCode> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(ErrorCode::CONCURRENT_TRANSACTIONS),
            TxnState::Dead => return Err(ErrorCode::INVALID_TXN_STATE),
            TxnState::Ongoing
                if partitions.iter().all(|(p, _)| self.partitions.contains_key(p))
                    && groups.iter().all(|g| self.groups.contains(g)) =>
            {
                return Ok(None);
            }
            _ => {}
        }
        let starting = self.state != TxnState::Ongoing;
        let mut next = self.to_state(TxnState::Ongoing, now_ms);
        if starting {
            next.partitions.clear();
            next.groups.clear();
            next.start_ms = now_ms;
        }
        for (p, end) in partitions {
            next.partitions.entry(*p).or_insert(*end);
        }
        next.groups.extend(groups.iter().cloned());
        Ok(Some(next))
    }

    /// EndTxn v5 (transaction version 2) from `(producer_id, epoch)`: commit or abort, the
    /// epoch bumped (Kafka's `TransactionCoordinator.endTransaction` with TV2). A retry names
    /// the epoch before the bump (or, after the bump moved the id to a new producer id, the
    /// old id and its last epoch) and is answered as the first was; an abort with no
    /// transaction open bumps the epoch (an empty abort).
    ///
    /// # Errors
    /// INVALID_PRODUCER_ID_MAPPING for another producer id; PRODUCER_FENCED for an epoch that
    /// is neither the current one nor a retry's; CONCURRENT_TRANSACTIONS while a retried
    /// decision's markers are being written; INVALID_TXN_STATE for a commit with nothing open,
    /// or a retry of the other decision.
    pub fn end_txn_v2(
        &self,
        (producer_id, epoch): (i64, i16),
        commit: bool,
        now_ms: i64,
    ) -> Result<EndPlan, ErrorCode> {
        use TxnState::{CompleteAbort, CompleteCommit, Dead, Empty, Ongoing, PrepareAbort, PrepareCommit};
        let done = if commit { CompleteCommit } else { CompleteAbort };
        if producer_id != self.producer_id {
            // The bump that exhausted the epoch moved the id to a new producer id; a retry
            // names the old one and the epoch it had.
            let overflow_retry = self.prev_producer_id >= 0
                && producer_id == self.prev_producer_id
                && epoch == self.last_epoch
                && epoch_exhausted(epoch);
            return match self.state {
                s if overflow_retry && s == done => Ok(EndPlan::AlreadyDone),
                CompleteCommit | CompleteAbort if overflow_retry => Err(ErrorCode::INVALID_TXN_STATE),
                _ => Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING),
            };
        }
        let retry = epoch != NO_EPOCH && i32::from(epoch) + 1 == i32::from(self.epoch);
        let current = epoch == self.epoch;
        match self.state {
            Ongoing if current => Ok(EndPlan::Store(self.prepared_v2(commit, now_ms))),
            PrepareCommit | PrepareAbort if retry => {
                let same = (self.state == PrepareCommit) == commit;
                Err(if same { ErrorCode::CONCURRENT_TRANSACTIONS } else { ErrorCode::INVALID_TXN_STATE })
            }
            CompleteCommit | CompleteAbort if retry => {
                if self.state == done {
                    Ok(EndPlan::AlreadyDone)
                } else {
                    Err(ErrorCode::INVALID_TXN_STATE)
                }
            }
            Empty | CompleteCommit | CompleteAbort if current => {
                if commit {
                    Err(ErrorCode::INVALID_TXN_STATE)
                } else {
                    Ok(EndPlan::Store(self.prepared_v2(false, now_ms)))
                }
            }
            Dead => Err(ErrorCode::INVALID_TXN_STATE),
            _ => Err(ErrorCode::PRODUCER_FENCED),
        }
    }

    /// The decision of a transaction version 2 EndTxn: `PrepareCommit` or `PrepareAbort`,
    /// the epoch bumped (to `i16::MAX` when that exhausts it: the completion then moves to a
    /// new producer id), the old epoch remembered for retries.
    fn prepared_v2(&self, commit: bool, now_ms: i64) -> Self {
        let mut next = self.to_state(if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort }, now_ms);
        if self.state != TxnState::Ongoing {
            next.partitions.clear();
            next.groups.clear();
            next.start_ms = -1;
        }
        next.epoch = self.epoch.saturating_add(1);
        next.last_epoch = self.epoch;
        next.tv2 = true;
        next
    }

    /// Whether completing this transaction moves the id to a new producer id: a transaction
    /// version 2 bump took the epoch to `i16::MAX`.
    #[must_use]
    pub fn completes_on_new_producer_id(&self) -> bool {
        self.tv2 && self.state.is_preparing() && self.epoch == i16::MAX
    }

    /// EndTxn from `(producer_id, epoch)`: commit or abort.
    ///
    /// # Errors
    /// As [`TxnMeta::check_producer`]; CONCURRENT_TRANSACTIONS while the same decision's
    /// markers are being written; INVALID_TXN_STATE when the other decision was taken or no
    /// transaction is open.
    pub fn end_txn(&self, (producer_id, epoch): (i64, i16), commit: bool, now_ms: i64) -> Result<EndPlan, ErrorCode> {
        self.check_producer(producer_id, epoch)?;
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let next = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                Ok(EndPlan::Store(self.to_state(next, now_ms)))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(EndPlan::AlreadyDone),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ErrorCode::CONCURRENT_TRANSACTIONS)
            }
            _ => Err(ErrorCode::INVALID_TXN_STATE),
        }
    }

    /// The abort of an open transaction that ran past its timeout: the epoch bumped (fencing
    /// the producer, which learns it on its next request) and the state `PrepareAbort`. Under
    /// transaction version 2 the old epoch is remembered, so that the producer's own abort
    /// (EndTxn v5 with that epoch) is answered as a retry and it carries on.
    #[must_use]
    pub fn timed_out(&self, now_ms: i64) -> Self {
        let mut next = self.fenced(now_ms);
        if self.tv2 && next.epoch != self.epoch {
            next.last_epoch = self.epoch;
        }
        next
    }

    /// The open transaction aborted with the epoch bumped (Kafka's `prepareFenceProducerEpoch`
    /// then the abort): the fenced epoch is not remembered as the last one, so its producer
    /// cannot recover it with InitProducerId (KIP-360) and gets PRODUCER_FENCED.
    fn fenced(&self, now_ms: i64) -> Self {
        let mut next = self.to_state(TxnState::PrepareAbort, now_ms);
        if !epoch_exhausted(self.epoch) {
            next.epoch = self.epoch + 1;
        }
        next.last_epoch = NO_EPOCH;
        next
    }

    /// [`TxnMeta::completed`] on `new_producer_id` at epoch 0 (see
    /// [`TxnMeta::completes_on_new_producer_id`]): the old id and its last epoch stay, for a
    /// retry of the EndTxn that exhausted it.
    #[must_use]
    pub fn completed_on(&self, new_producer_id: i64, now_ms: i64) -> Self {
        let mut done = self.completed(now_ms);
        done.prev_producer_id = self.producer_id;
        done.producer_id = new_producer_id;
        done.epoch = 0;
        done
    }

    /// The metadata once every marker is written: `CompleteCommit` or `CompleteAbort`, with
    /// the transaction's partitions and groups cleared.
    #[must_use]
    pub fn completed(&self, now_ms: i64) -> Self {
        let next = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => panic!("completing a transaction in state {other:?}"),
        };
        let mut done = self.to_state(next, now_ms);
        done.partitions.clear();
        done.groups.clear();
        done.start_ms = -1;
        done
    }
}

/// Where transaction metadata is stored: this prefix, then the transactional id.
pub const TXN_PREFIX: &[u8] = b"kelp/txn/";

/// The storage key of transactional id `id`.
#[must_use]
pub fn txn_key(id: &str) -> Bytes {
    let mut k = Vec::with_capacity(TXN_PREFIX.len() + id.len());
    k.extend_from_slice(TXN_PREFIX);
    k.extend_from_slice(id.as_bytes());
    Bytes::from(k)
}

/// The stored value of `m`: the version (1, or 2 for a producer on transaction version 2),
/// then the fields big-endian, strings and lists with u32 lengths, and in version 2 a last
/// byte 1.
#[must_use]
pub fn encode(m: &TxnMeta) -> Bytes {
    let mut v = Vec::with_capacity(64 + m.partitions.len() * 28 + m.groups.iter().map(|g| g.len() + 4).sum::<usize>());
    // Version 1 while it is enough, so that a kelp from before transaction version 2 still
    // reads what this one stored.
    v.push(if m.tv2 { 2 } else { 1 });
    v.extend_from_slice(&m.producer_id.to_be_bytes());
    v.extend_from_slice(&m.prev_producer_id.to_be_bytes());
    v.extend_from_slice(&m.epoch.to_be_bytes());
    v.extend_from_slice(&m.last_epoch.to_be_bytes());
    v.extend_from_slice(&m.timeout_ms.to_be_bytes());
    v.push(m.state.number());
    v.extend_from_slice(&m.start_ms.to_be_bytes());
    v.extend_from_slice(&m.update_ms.to_be_bytes());
    v.extend_from_slice(&len32(m.partitions.len()));
    for (p, end) in &m.partitions {
        v.extend_from_slice(&p.topic_id.0);
        v.extend_from_slice(&p.partition.to_be_bytes());
        v.extend_from_slice(&end.to_be_bytes());
    }
    v.extend_from_slice(&len32(m.groups.len()));
    for g in &m.groups {
        v.extend_from_slice(&len32(g.len()));
        v.extend_from_slice(g.as_str().as_bytes());
    }
    if m.tv2 {
        v.push(1);
    }
    Bytes::from(v)
}

fn len32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes()
}

/// A bounds-checked reader over a stored value.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.array()?))
    }
    /// A count of items at least `min_item` bytes each, checked against what is left.
    fn count(&mut self, min_item: usize) -> Option<usize> {
        let n = usize::try_from(u32::from_be_bytes(self.array()?)).ok()?;
        (n.checked_mul(min_item)? <= self.0.len()).then_some(n)
    }
}

/// The transactional id and metadata a stored key/value holds, if it is one (a damaged
/// value gives `None`).
#[must_use]
pub fn decode(k: &[u8], v: &[u8]) -> Option<TxnMeta> {
    let id = std::str::from_utf8(k.strip_prefix(TXN_PREFIX)?).ok()?;
    let mut c = Cursor(v);
    let version = c.u8()?;
    if !matches!(version, 1 | 2) {
        return None;
    }
    let mut m = TxnMeta::new(KStr::from(id), c.i64()?, 0, 0);
    m.prev_producer_id = c.i64()?;
    m.epoch = c.i16()?;
    m.last_epoch = c.i16()?;
    m.timeout_ms = c.i32()?;
    m.state = *TxnState::ALL.get(usize::from(c.u8()?))?;
    m.start_ms = c.i64()?;
    m.update_ms = c.i64()?;
    for _ in 0..c.count(28)? {
        let topic_id = Uuid(c.array()?);
        let partition = c.i32()?;
        m.partitions.insert(PartitionKey { topic_id, partition }, c.i64()?);
    }
    for _ in 0..c.count(4)? {
        let n = usize::try_from(u32::from_be_bytes(c.array()?)).ok()?;
        let name = std::str::from_utf8(c.take(n)?).ok()?;
        m.groups.insert(KStr::from(name));
    }
    if version >= 2 {
        m.tv2 = match c.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
    }
    c.0.is_empty().then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        PartitionKey { topic_id: Uuid::from_u64_pair(3, 4), partition: p }
    }

    fn fresh() -> TxnMeta {
        TxnMeta::new(KStr::from("t1"), 100, 60_000, 0)
    }

    fn stored(plan: Result<InitPlan, ErrorCode>) -> TxnMeta {
        match plan {
            Ok(InitPlan::Store(m)) => m,
            other => panic!("expected a store, got {other:?}"),
        }
    }

    #[test]
    fn transitions_follow_kafkas_table() {
        use TxnState::*;
        for (from, to) in [
            (Empty, Ongoing),
            (Ongoing, Ongoing),
            (Ongoing, PrepareCommit),
            (Ongoing, PrepareAbort),
            (PrepareCommit, CompleteCommit),
            (PrepareAbort, CompleteAbort),
            (CompleteCommit, Empty),
            (CompleteAbort, Ongoing),
            (CompleteCommit, Dead),
            (CompleteCommit, PrepareAbort),
            (Empty, PrepareAbort),
        ] {
            assert!(from.can_become(to), "{from:?} -> {to:?}");
        }
        for (from, to) in [
            (Empty, PrepareCommit),
            (CompleteAbort, PrepareCommit),
            (Ongoing, Empty),
            (Ongoing, CompleteCommit),
            (PrepareCommit, PrepareAbort),
            (PrepareAbort, Ongoing),
            (PrepareCommit, Empty),
            (Dead, Empty),
            (Ongoing, Dead),
        ] {
            assert!(!from.can_become(to), "{from:?} -> {to:?}");
        }
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
    }

    #[test]
    fn init_bumps_the_epoch_and_recognises_a_retry() {
        let m = stored(fresh().init_producer_id(None, 60_000, 1));
        assert_eq!((m.producer_id, m.epoch, m.last_epoch, m.state), (100, 0, NO_EPOCH, TxnState::Empty));
        let again = stored(m.init_producer_id(None, 30_000, 2));
        assert_eq!((again.epoch, again.timeout_ms), (1, 30_000), "a restarted producer bumps the epoch");
        let recovering = stored(again.init_producer_id(Some((100, 1)), 30_000, 3));
        assert_eq!((recovering.epoch, recovering.last_epoch), (2, 1), "KIP-360: the named epoch is the current one");
        let retry = stored(recovering.init_producer_id(Some((100, 1)), 30_000, 4));
        assert_eq!((retry.epoch, retry.last_epoch), (2, 1), "a retry of that bump gets the same epoch");
        assert_eq!(recovering.init_producer_id(Some((100, 0)), 30_000, 5), Err(ErrorCode::PRODUCER_FENCED));
        assert_eq!(recovering.init_producer_id(Some((7, 2)), 30_000, 5), Err(ErrorCode::PRODUCER_FENCED));
    }

    #[test]
    fn init_during_a_transaction_fences_and_aborts_it() {
        let m = stored(fresh().init_producer_id(None, 60_000, 1));
        let open = m.add((100, 0), &[(key(0), 5)], &[], 2).unwrap().unwrap();
        let Ok(InitPlan::FenceAndAbort(fenced)) = open.init_producer_id(None, 60_000, 3) else { panic!() };
        assert_eq!((fenced.state, fenced.epoch, fenced.last_epoch), (TxnState::PrepareAbort, 1, NO_EPOCH));
        assert_eq!(fenced.partitions.get(&key(0)), Some(&5), "the markers go where the transaction wrote");
        assert_eq!(fenced.init_producer_id(None, 60_000, 4), Err(ErrorCode::CONCURRENT_TRANSACTIONS));
        assert_eq!(open.check_producer(100, 0), Ok(()));
        assert_eq!(fenced.check_producer(100, 0), Err(ErrorCode::PRODUCER_FENCED), "the old producer is fenced");
        let done = fenced.completed(5);
        assert_eq!((done.state, done.partitions.len(), done.start_ms), (TxnState::CompleteAbort, 0, -1));
        let next = stored(done.init_producer_id(None, 60_000, 6));
        assert_eq!(next.epoch, 2);
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        let mut m = fresh();
        m.epoch = i16::MAX - 1;
        assert_eq!(m.init_producer_id(None, 60_000, 1), Ok(InitPlan::NewProducerId));
        let r = m.rotated(200, 60_000, true, 1);
        assert_eq!((r.producer_id, r.prev_producer_id, r.epoch, r.last_epoch), (200, 100, 0, i16::MAX - 1));
        assert!(
            r.init_producer_id(Some((100, i16::MAX - 1)), 60_000, 2).is_ok(),
            "a retry naming the old id and its exhausted epoch is not fenced"
        );
    }

    #[test]
    fn add_and_end_follow_the_coordinators_rules() {
        let m = stored(fresh().init_producer_id(None, 60_000, 1));
        assert_eq!(m.add((101, 0), &[(key(0), 0)], &[], 2), Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING));
        assert_eq!(m.add((100, 1), &[(key(0), 0)], &[], 2), Err(ErrorCode::PRODUCER_FENCED));
        assert_eq!(m.end_txn((100, 0), true, 2), Err(ErrorCode::INVALID_TXN_STATE), "nothing to commit");
        let open = m.add((100, 0), &[(key(0), 7)], &[], 10).unwrap().unwrap();
        assert_eq!((open.state, open.start_ms), (TxnState::Ongoing, 10));
        assert_eq!(open.add((100, 0), &[(key(0), 9)], &[], 11), Ok(None), "already in: nothing to store");
        let more = open.add((100, 0), &[(key(0), 9), (key(1), 3)], &[KStr::from("g")], 12).unwrap().unwrap();
        assert_eq!(more.partitions.get(&key(0)), Some(&7), "the first bound stays");
        assert_eq!((more.start_ms, more.groups.len()), (10, 1));
        let EndPlan::Store(prep) = more.end_txn((100, 0), true, 13).unwrap() else { panic!() };
        assert_eq!(prep.state, TxnState::PrepareCommit);
        assert_eq!(prep.end_txn((100, 0), true, 14), Err(ErrorCode::CONCURRENT_TRANSACTIONS));
        assert_eq!(prep.end_txn((100, 0), false, 14), Err(ErrorCode::INVALID_TXN_STATE));
        assert_eq!(prep.add((100, 0), &[(key(2), 0)], &[], 14), Err(ErrorCode::CONCURRENT_TRANSACTIONS));
        let done = prep.completed(15);
        assert_eq!(done.end_txn((100, 0), true, 16), Ok(EndPlan::AlreadyDone), "a retried commit");
        assert_eq!(done.end_txn((100, 0), false, 16), Err(ErrorCode::INVALID_TXN_STATE));
        let next = done.add((100, 0), &[(key(2), 40)], &[], 17).unwrap().unwrap();
        assert_eq!((next.partitions.len(), next.start_ms), (1, 17), "a new transaction starts clean");
    }

    #[test]
    fn a_transaction_times_out_after_its_timeout() {
        let m = stored(fresh().init_producer_id(None, 1_000, 0));
        let open = m.add((100, 0), &[(key(0), 0)], &[], 5_000).unwrap().unwrap();
        assert_eq!(open.deadline_ms(), Some(6_000));
        assert!(!open.expired(6_000) && open.expired(6_001));
        let aborting = open.timed_out(6_001);
        assert_eq!((aborting.state, aborting.epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(aborting.deadline_ms(), None);
    }

    #[test]
    fn metadata_round_trips_through_its_stored_form() {
        let m = stored(fresh().init_producer_id(None, 60_000, 1));
        let open = m.add((100, 0), &[(key(0), 7), (key(3), 1 << 40)], &[KStr::from("g"), KStr::from("h")], 9).unwrap();
        let open = open.unwrap();
        let k = txn_key("t1");
        let v = encode(&open);
        assert_eq!(decode(&k, &v), Some(open.clone()));
        assert_eq!(decode(&k, &v[..v.len() - 1]), None, "a short value is refused");
        let mut long = v.to_vec();
        long.push(0);
        assert_eq!(decode(&k, &long), None, "trailing bytes are refused");
        assert_eq!(decode(b"group/t1", &v), None);
        let mut huge = v.to_vec();
        huge[42..46].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&k, &huge), None, "a count beyond the value is refused before anything is allocated");
        // Version 1 (what a kelp before transaction version 2 reads) unless the producer uses
        // version 2, whose flag takes a last byte.
        assert_eq!(v[0], 1);
        let mut tv2 = open;
        tv2.tv2 = true;
        let v2 = encode(&tv2);
        assert_eq!((v2[0], v2.len()), (2, v.len() + 1));
        assert_eq!(decode(&k, &v2), Some(tv2));
        let mut bad = v2.to_vec();
        *bad.last_mut().unwrap() = 7;
        assert_eq!(decode(&k, &bad), None, "a flag byte other than 0 or 1 is refused");
    }

    /// An open transaction at epoch 0 under transaction version 2.
    fn open_v2() -> TxnMeta {
        let m = stored(fresh().init_producer_id(None, 60_000, 1));
        let mut open = m.add((100, 0), &[(key(0), 7)], &[], 10).unwrap().unwrap();
        open.tv2 = true;
        open
    }

    #[test]
    fn end_txn_v2_bumps_the_epoch_and_answers_retries_as_the_first() {
        let open = open_v2();
        assert_eq!(open.end_txn_v2((100, 1), true, 11), Err(ErrorCode::PRODUCER_FENCED));
        assert_eq!(open.end_txn_v2((101, 0), true, 11), Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING));
        let Ok(EndPlan::Store(prep)) = open.end_txn_v2((100, 0), true, 11) else { panic!() };
        assert_eq!((prep.state, prep.epoch, prep.last_epoch, prep.tv2), (TxnState::PrepareCommit, 1, 0, true));
        assert_eq!(prep.partitions.len(), 1, "the markers go to the transaction's partitions");
        assert_eq!(
            prep.end_txn_v2((100, 0), true, 12),
            Err(ErrorCode::CONCURRENT_TRANSACTIONS),
            "a retry, markers pending"
        );
        assert_eq!(prep.end_txn_v2((100, 0), false, 12), Err(ErrorCode::INVALID_TXN_STATE));
        assert_eq!(prep.end_txn_v2((100, 1), true, 12), Err(ErrorCode::PRODUCER_FENCED));
        assert!(!prep.completes_on_new_producer_id());
        let done = prep.completed(13);
        assert_eq!((done.state, done.epoch), (TxnState::CompleteCommit, 1));
        assert_eq!(done.end_txn_v2((100, 0), true, 14), Ok(EndPlan::AlreadyDone), "a retried commit");
        assert_eq!(done.end_txn_v2((100, 0), false, 14), Err(ErrorCode::INVALID_TXN_STATE));
        assert_eq!(done.end_txn_v2((100, 1), true, 14), Err(ErrorCode::INVALID_TXN_STATE), "nothing open to commit");
        // An abort with nothing open bumps the epoch all the same (no markers to write).
        let Ok(EndPlan::Store(empty)) = done.end_txn_v2((100, 1), false, 14) else { panic!() };
        assert_eq!((empty.state, empty.epoch, empty.last_epoch), (TxnState::PrepareAbort, 2, 1));
        assert!(empty.partitions.is_empty() && empty.groups.is_empty());
        assert_eq!(done.end_txn_v2((100, -1), false, 14), Err(ErrorCode::PRODUCER_FENCED));
    }

    #[test]
    fn end_txn_v2_that_exhausts_the_epoch_moves_to_a_new_producer_id() {
        let mut open = open_v2();
        open.epoch = i16::MAX - 1;
        let Ok(EndPlan::Store(prep)) = open.end_txn_v2((100, i16::MAX - 1), false, 11) else { panic!() };
        assert_eq!(prep.epoch, i16::MAX, "the markers carry the last epoch there is");
        assert!(prep.completes_on_new_producer_id());
        let done = prep.completed_on(200, 12);
        assert_eq!(
            (done.state, done.producer_id, done.epoch, done.prev_producer_id, done.last_epoch),
            (TxnState::CompleteAbort, 200, 0, 100, i16::MAX - 1)
        );
        assert_eq!(done.end_txn_v2((100, i16::MAX - 1), false, 13), Ok(EndPlan::AlreadyDone), "a retry of the old id");
        assert_eq!(done.end_txn_v2((100, i16::MAX - 1), true, 13), Err(ErrorCode::INVALID_TXN_STATE));
        assert_eq!(done.end_txn_v2((100, 3), false, 13), Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING));
        assert!(done.add((200, 0), &[(key(1), 0)], &[], 14).unwrap().is_some(), "the new id starts a transaction");
    }

    #[test]
    fn a_timed_out_transaction_v2_lets_its_producer_abort_and_carry_on() {
        let open = open_v2();
        let aborting = open.timed_out(70_000);
        assert_eq!((aborting.epoch, aborting.last_epoch), (1, 0));
        let done = aborting.completed(70_001);
        assert_eq!(done.end_txn_v2((100, 0), false, 70_002), Ok(EndPlan::AlreadyDone));
        assert_eq!(done.end_txn_v2((100, 0), true, 70_002), Err(ErrorCode::INVALID_TXN_STATE));
        // Under version 1 the producer stays fenced.
        let v1 = TxnMeta { tv2: false, ..open };
        assert_eq!(v1.timed_out(70_000).last_epoch, NO_EPOCH);
    }
}
