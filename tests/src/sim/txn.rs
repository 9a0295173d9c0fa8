//! Transactions in the simulator: transactional producers ([`TxnProducer`]), a read_committed
//! reader ([`TxnReader`]) and what they must observe ([`TxnChecker`]).
//!
//! Producers write to their own topic, `x0` (kept forever, never trimmed, never compacted),
//! in transactions of one or more partitions that they commit or abort. They retry as the
//! Java client does (the same batch, with the same sequence, after a lost answer), crash and
//! come back as a new process that knows only its `transactional.id` (its InitProducerId then
//! fences and aborts what the old one left open), and go silent past their transaction
//! timeout (the broker aborts the transaction; the producer is fenced when it comes back).
//! Every record is named after its transaction: `x<producer>.<transaction>.<n>`. Half of the
//! producers use transaction version 2 (KIP-890 part 2), as the Java client 4.x does:
//! partitions join with Produce v12, and EndTxn v5 bumps the epoch for the next transaction.
//!
//! The reader fetches every partition of `x0` with `isolation_level` read_committed and keeps
//! what Kafka's consumer keeps: it leaves out control batches and the batches of the aborted
//! transactions the response lists. The invariants:
//! - nothing of an aborted transaction is ever delivered: a record the reader delivers belongs
//!   to a transaction whose producer had sent EndTxn(commit) before the fetch was answered,
//!   and no transaction both has a record delivered and an acknowledged abort;
//! - a committed transaction is delivered whole: once everything settles, every transaction
//!   with a record delivered, or an acknowledged commit, has all its acknowledged records
//!   delivered, once each, in offset order;
//! - the last stable offset never passes an open transaction (a record acknowledged below it
//!   belongs to a transaction that was ended, abandoned or fenced), stays at or below the high
//!   watermark, no record at or past it is returned, and it never moves back while the broker
//!   runs (after a crash it restarts from a stored bound at or below the first record of each
//!   transaction open across it: see [`TxnChecker::broker_restarted`]);
//! - markers are written once per partition per transaction: a producer's markers on a
//!   partition number at least the transactions that surely added the partition, and unless
//!   the broker crashed (its recovery writes the markers of a transaction being ended again,
//!   as Kafka's coordinator does), at most those that may have.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kelp_core::codec::generated::add_partitions_to_txn::{AddPartitionsToTxnRequest, AddPartitionsToTxnTopic};
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreatableTopicConfig, CreateTopicsRequest};
use kelp_core::codec::generated::end_txn::EndTxnRequest;
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic, PartitionData};
use kelp_core::codec::generated::init_producer_id::InitProducerIdRequest;
use kelp_core::codec::generated::produce::ProduceRequest;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ErrorCode, KStr};
use kelp_core::records::{Batches, Compression, RecordBatchBuilder};
use kelp_core::time::{Duration, Instant};
use kelp_core::txn::{MarkerKind, parse_marker};

use super::clients::{Io, Model, Pending, View, err};
use super::invariants::Tp;
use super::world::SimRng;
use crate::harness::produce_request;

/// The transactional topic.
pub const TOPIC: &str = "x0";

/// What a seed's transactions look like.
#[derive(Clone, Debug)]
pub struct TxnKnobs {
    /// Partitions of [`TOPIC`].
    pub partitions: i32,
    /// Transactional producers: how many transactions each runs, and whether it uses
    /// transaction version 2 (KIP-890 part 2: Produce v12 joins partitions implicitly, EndTxn
    /// v5 bumps the epoch) as the Java client 4.x does, or version 1 as librdkafka does.
    pub producers: Vec<(u32, bool)>,
    /// Chance that a transaction is aborted rather than committed.
    pub abort_rate: f64,
    /// Chance, at each step of a transaction, that the producer crashes.
    pub crash_rate: f64,
    /// Chance, at each step, that it goes silent past its transaction timeout.
    pub pause_rate: f64,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
}

impl TxnKnobs {
    /// Drawn from a generator of its own (so that every other knob of a seed stays): one seed
    /// in three runs transactions.
    #[must_use]
    pub fn draw(seed: u64) -> Option<Self> {
        let mut r = SimRng::new(seed ^ 0x7a5c_0000_e4d7_0001);
        if !r.chance(0.35) {
            return None;
        }
        Some(Self {
            partitions: r.range(1, 3) as i32,
            producers: (0..r.range(1, 2)).map(|_| (r.range(3, 15) as u32, r.chance(0.5))).collect(),
            abort_rate: r.range(0, 50) as f64 / 100.0,
            crash_rate: if r.chance(0.5) { r.range(1, 50) as f64 / 1000.0 } else { 0.0 },
            pause_rate: if r.chance(0.4) { r.range(1, 30) as f64 / 1000.0 } else { 0.0 },
            timeout_ms: r.range(1_000, 4_000) as i32,
        })
    }
}

/// One transaction as the checker knows it.
#[derive(Clone, Debug, Default)]
struct TxnRecord {
    /// The producer id it ran under.
    pid: i64,
    /// When it began, and its transaction timeout: past it, the broker may abort it.
    begun_at: Instant,
    timeout: Duration,
    /// Its records acknowledged: value -> (partition, offset).
    acked: BTreeMap<String, (Tp, i64)>,
    /// Partitions AddPartitionsToTxn surely added (its answer said so).
    sure: BTreeSet<Tp>,
    /// Partitions it may have added (asked for).
    possible: BTreeSet<Tp>,
    /// EndTxn(commit) was sent.
    commit_sent: bool,
    /// EndTxn(abort) was sent.
    abort_sent: bool,
    /// The producer gave up on it (crashed, fenced, timed out): the broker aborts it.
    abandoned: bool,
    /// The acknowledged outcome: `Some(true)` committed.
    outcome: Option<bool>,
    /// Records the reader delivered: value -> offset.
    delivered: BTreeMap<String, i64>,
}

impl TxnRecord {
    /// What it did on `tp`, for a failure message.
    fn summary(&self, tp: &Tp) -> String {
        let offsets: Vec<i64> = self.acked.values().filter(|(p, _)| p == tp).map(|(_, o)| *o).collect();
        format!(
            "[added {}, records at {offsets:?}, commit sent {}, abort sent {}, abandoned {}, outcome {:?}]",
            if self.sure.contains(tp) { "surely" } else { "maybe" },
            self.commit_sent,
            self.abort_sent,
            self.abandoned,
            self.outcome
        )
    }

    /// Whether the broker may have ended it by `now` (so the last stable offset may pass
    /// it), with the wall clock `forward` ahead of virtual time by jumps.
    fn may_be_ended(&self, now: Instant, forward: Duration) -> bool {
        self.commit_sent
            || self.abort_sent
            || self.abandoned
            || now.since(self.begun_at).0 + forward.0 >= self.timeout.0
    }
}

/// What the transactional models observe, and the invariants over it.
#[derive(Debug, Default)]
pub struct TxnChecker {
    /// Transactions by name (`x<producer>.<n>`).
    txns: BTreeMap<String, TxnRecord>,
    /// The last stable offset the reader last saw per partition.
    lso: HashMap<Tp, i64>,
    /// The next offset the reader delivers from per partition.
    position: HashMap<Tp, i64>,
    /// Markers seen: (producer id, partition) -> their offsets and whether each commits.
    markers: BTreeMap<(i64, Tp), BTreeMap<i64, bool>>,
    /// When a producer last finished something that changes what the reader must see.
    pub last_change: Instant,
    /// When the fetch that showed the reader every partition read to a high watermark equal
    /// to the last stable offset was sent.
    pub caught_up: Option<Instant>,
    /// Whether the broker crashed in this run.
    pub broker_crashed: bool,
    /// How far the wall clock has jumped forward, in total (the broker times transactions
    /// out by the wall clock).
    pub forward: Duration,
    /// Violations found.
    pub violations: Vec<String>,
    /// Transactions committed and aborted as acknowledged (figures).
    pub committed: u64,
    /// See `committed`.
    pub aborted: u64,
}

/// The transaction a record value belongs to: `x1.4.2` -> `x1.4`.
fn txn_of(value: &str) -> &str {
    value.rsplit_once('.').map_or(value, |(t, _)| t)
}

impl TxnChecker {
    fn txn(&mut self, name: &str) -> &mut TxnRecord {
        self.txns.entry(name.to_owned()).or_default()
    }

    /// A transaction began under producer id `pid`, with `timeout`.
    pub fn begun(&mut self, now: Instant, name: &str, pid: i64, timeout: Duration) {
        let t = self.txn(name);
        (t.pid, t.begun_at, t.timeout) = (pid, now, timeout);
    }

    /// AddPartitionsToTxn for `tps` was sent (`sure`: and answered with success).
    pub fn added(&mut self, name: &str, tps: &[Tp], sure: bool) {
        let t = self.txn(name);
        t.possible.extend(tps.iter().cloned());
        if sure {
            t.sure.extend(tps.iter().cloned());
        }
    }

    /// Records of a transaction were acknowledged at `base_offset` on `tp`.
    pub fn acked(&mut self, name: &str, tp: &Tp, base_offset: i64, values: &[String]) {
        let t = self.txn(name);
        for (i, v) in values.iter().enumerate() {
            t.acked.insert(v.clone(), (tp.clone(), base_offset + i as i64));
        }
    }

    /// EndTxn was sent.
    pub fn end_sent(&mut self, name: &str, commit: bool) {
        let t = self.txn(name);
        if commit {
            t.commit_sent = true;
        } else {
            t.abort_sent = true;
        }
    }

    /// EndTxn was answered with success.
    pub fn ended(&mut self, now: Instant, name: &str, commit: bool) {
        self.last_change = now;
        let t = self.txn(name);
        t.outcome = Some(commit);
        let delivered = !t.delivered.is_empty();
        if commit {
            self.committed += 1;
        } else {
            self.aborted += 1;
            if delivered {
                self.violations.push(format!("{name}: abort acknowledged, but the reader delivered its records"));
            }
        }
    }

    /// The broker crashed and restarted over its store. A transaction open across the
    /// restart holds its partitions' last stable offset from the bound stored when it added
    /// them (at or below its first record), so the last stable offset may start lower than
    /// before, never past an open transaction; it must not move back from there.
    pub fn broker_restarted(&mut self) {
        self.broker_crashed = true;
        self.lso.clear();
    }

    /// The producer gave the transaction up (the broker aborts it).
    pub fn abandoned(&mut self, name: &str) {
        self.txn(name).abandoned = true;
    }

    /// A producer was (re)initialized: everything it left before is ended by now.
    pub fn initialized(&mut self, now: Instant) {
        self.last_change = now;
    }

    /// A read_committed fetch answered `lso` and `hwm` for `tp` (arriving at `now`).
    pub fn lso_seen(&mut self, now: Instant, tp: &Tp, lso: i64, hwm: i64) {
        if lso > hwm {
            self.violations.push(format!("{tp:?}: last stable offset {lso} past the high watermark {hwm}"));
        }
        let before = self.lso.insert(tp.clone(), lso).unwrap_or(0);
        if lso < before {
            self.violations.push(format!("{tp:?}: last stable offset went back from {before} to {lso}"));
        }
        for (name, t) in &self.txns {
            if t.may_be_ended(now, self.forward) {
                continue;
            }
            if let Some((v, (_, o))) = t.acked.iter().find(|(_, (p, o))| p == tp && *o < lso) {
                self.violations
                    .push(format!("{tp:?}: last stable offset {lso} passed the open transaction {name} ({v} at {o})"));
            }
        }
    }

    /// The reader delivered `value` at `offset` of `tp` from a fetch answered with `lso`.
    pub fn delivered(&mut self, tp: &Tp, offset: i64, value: &str, lso: i64) {
        if offset >= lso {
            self.violations
                .push(format!("{tp:?}: {value} at {offset} returned at or past the last stable offset {lso}"));
        }
        let position = self.position.entry(tp.clone()).or_insert(0);
        if offset < *position {
            self.violations.push(format!("{tp:?}: {value} delivered at {offset}, below the position {position}"));
        }
        *position = offset + 1;
        let name = txn_of(value).to_owned();
        let t = self.txn(&name);
        if let Some(before) = t.delivered.insert(value.to_owned(), offset) {
            let msg = format!("{tp:?}: {value} delivered twice, at {before} and {offset}");
            self.violations.push(msg);
            return;
        }
        let t = &self.txns[&name];
        if !t.commit_sent || t.outcome == Some(false) {
            self.violations.push(format!(
                "{tp:?}: {value} at {offset} delivered to read_committed, but {name} was {}",
                if t.outcome == Some(false) { "aborted" } else { "never committed by its producer" }
            ));
        }
    }

    /// The reader passed a control batch of producer `pid` at `offset` of `tp`, committing or
    /// aborting.
    pub fn marker(&mut self, pid: i64, tp: &Tp, offset: i64, commit: bool) {
        self.markers.entry((pid, tp.clone())).or_default().insert(offset, commit);
    }

    /// Why the run is not settled yet as far as transactions go: the reader has not read
    /// everything since the producers last changed something, or a committed transaction is
    /// not delivered whole.
    #[must_use]
    pub fn unsettled(&self) -> Option<String> {
        if self.txns.is_empty() {
            return None;
        }
        if self.caught_up.is_none_or(|at| at <= self.last_change) {
            return Some("the read_committed reader has not caught up".to_owned());
        }
        for (name, t) in &self.txns {
            if (t.outcome == Some(true) || !t.delivered.is_empty()) && t.delivered.len() != t.acked.len() {
                return Some(format!(
                    "{name} ({:?}): {} of its {} acknowledged records delivered",
                    t.outcome,
                    t.delivered.len(),
                    t.acked.len()
                ));
            }
        }
        None
    }

    /// The checks once everything settled: what was delivered of each transaction is what
    /// was acknowledged, at the same offsets, and the markers per producer and partition.
    pub fn settled(&mut self) {
        let mut found = Vec::new();
        let mut sure: BTreeMap<(i64, Tp), usize> = BTreeMap::new();
        let mut possible: BTreeMap<(i64, Tp), usize> = BTreeMap::new();
        for (name, t) in &self.txns {
            for (v, o) in &t.delivered {
                if t.acked.get(v).map(|(_, a)| a) != Some(o) {
                    found.push(format!("{name}: {v} delivered at {o}, acknowledged at {:?}", t.acked.get(v)));
                }
            }
            // The marker that ended the transaction on a partition is the producer's first one
            // there after its record: COMMIT for what was delivered, ABORT for the rest, and
            // the one its producer's EndTxn was answered with.
            for (v, (tp, o)) in &t.acked {
                let after = self.markers.get(&(t.pid, tp.clone())).and_then(|m| m.range(o + 1..).next());
                let Some((m, &commit)) = after else {
                    found.push(format!("{name}: no marker after {v} at {tp:?}@{o}"));
                    continue;
                };
                let delivered = t.delivered.contains_key(v);
                if commit != delivered || t.outcome.is_some_and(|c| c != commit) {
                    found.push(format!(
                        "{name}: {v} at {tp:?}@{o} {}delivered, its marker at {m} {}, EndTxn answered {:?}",
                        if delivered { "" } else { "not " },
                        if commit { "commits" } else { "aborts" },
                        t.outcome
                    ));
                }
            }
            for tp in &t.sure {
                *sure.entry((t.pid, tp.clone())).or_default() += 1;
            }
            for tp in &t.possible {
                *possible.entry((t.pid, tp.clone())).or_default() += 1;
            }
        }
        for (key, &n) in &sure {
            let seen = self.markers.get(key).map_or(0, BTreeMap::len);
            if seen < n {
                found.push(format!("{key:?}: {seen} markers for {n} transactions that added the partition"));
            }
        }
        if !self.broker_crashed {
            for (key, offsets) in &self.markers {
                let n = possible.get(key).copied().unwrap_or(0);
                if offsets.len() > n {
                    let txns: Vec<String> = self
                        .txns
                        .iter()
                        .filter(|(_, t)| t.pid == key.0 && t.possible.contains(&key.1))
                        .map(|(name, t)| format!("{name} {}", t.summary(&key.1)))
                        .collect();
                    found.push(format!(
                        "{key:?}: {} markers (at {:?}) for at most {n} transactions that added the partition: {txns:?}",
                        offsets.len(),
                        offsets.keys().collect::<Vec<_>>()
                    ));
                }
            }
        }
        self.violations.extend(found);
    }
}

// ---- the producer ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Creating the topic.
    Topic,
    /// InitProducerId (with the producer id and epoch it knows, if any: KIP-360).
    Init,
    /// Between transactions.
    Idle,
    /// AddPartitionsToTxn for the transaction's partitions.
    Adding,
    /// Producing the transaction's batches.
    Producing,
    /// EndTxn.
    Ending(bool),
    /// Crashed or silent until the instant given.
    Away(Instant),
    /// Done with its budget.
    Done,
}

/// A batch of the current transaction.
#[derive(Clone, Debug)]
struct TxnBatch {
    values: Vec<String>,
    seq: i32,
    acked: bool,
}

/// A transactional producer (`transactional.id` `tx<id>`).
pub struct TxnProducer {
    id: usize,
    knobs: TxnKnobs,
    budget: u32,
    step: Step,
    in_flight: bool,
    pid: Option<(i64, i16)>,
    seqs: HashMap<Tp, i32>,
    /// The transaction under way: its number, partitions and batches.
    txn_no: u32,
    open: bool,
    tps: Vec<Tp>,
    batches: BTreeMap<Tp, TxnBatch>,
    /// Whether the transaction under way is to commit, once decided.
    decision: Option<bool>,
    /// Where a paused producer carries on.
    resume: Option<Step>,
    /// Transaction version 2.
    tv2: bool,
    producing: bool,
}

const TX_TOPIC: u64 = 1;
const TX_INIT: u64 = 2;
const TX_ADD: u64 = 3;
const TX_PRODUCE: u64 = 4;
const TX_END: u64 = 5;

/// Errors after which the transaction cannot go on: the producer re-initializes (which aborts
/// it) as the Java client does after a fatal or abortable error.
fn fatal(code: ErrorCode) -> bool {
    [
        ErrorCode::PRODUCER_FENCED,
        ErrorCode::INVALID_PRODUCER_EPOCH,
        ErrorCode::INVALID_TXN_STATE,
        ErrorCode::TRANSACTION_ABORTABLE,
        ErrorCode::UNKNOWN_PRODUCER_ID,
        ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorCode::INVALID_PRODUCER_ID_MAPPING,
    ]
    .contains(&code)
}

impl TxnProducer {
    /// Producer `id`, running `budget` transactions (under transaction version 2 if `tv2`).
    #[must_use]
    pub fn new(id: usize, knobs: TxnKnobs, budget: u32, tv2: bool) -> Self {
        Self {
            id,
            knobs,
            budget,
            step: Step::Topic,
            in_flight: false,
            pid: None,
            seqs: HashMap::new(),
            txn_no: 0,
            open: false,
            tps: Vec::new(),
            batches: BTreeMap::new(),
            decision: None,
            resume: None,
            tv2,
            producing: true,
        }
    }

    fn txn_id(&self) -> String {
        format!("tx{}", self.id)
    }

    fn txn_name(&self) -> String {
        format!("x{}.{}", self.id, self.txn_no)
    }

    /// The transaction under way is given up (the broker aborts it).
    fn abandon(&mut self, io: &mut Io<'_>) {
        if self.open {
            io.check.txn.abandoned(&self.txn_name());
        }
        self.open = false;
        self.batches.clear();
        self.tps.clear();
    }

    /// A crash: the process is gone; a new one starts later knowing only its transactional id.
    fn crash(&mut self, io: &mut Io<'_>, away: Duration) {
        self.abandon(io);
        self.resume = None;
        self.pid = None;
        self.seqs.clear();
        self.in_flight = false;
        self.step = Step::Away(io.now + away);
        io.crash();
        io.wake_in(away);
    }

    /// Re-initializes after a fatal error, with the producer id and epoch it has (KIP-360).
    fn reinit(&mut self, io: &mut Io<'_>) {
        self.abandon(io);
        self.seqs.clear();
        self.step = Step::Init;
        io.wake_between(5, 50);
    }

    fn maybe_fault(&mut self, io: &mut Io<'_>) -> bool {
        if !io.faults_on {
            return false;
        }
        if io.rng.chance(self.knobs.crash_rate) {
            let away = io.rng.millis(10, 2_000);
            self.crash(io, away);
            return true;
        }
        if self.open && io.rng.chance(self.knobs.pause_rate) {
            // Silent past its transaction timeout (a long GC pause): the broker aborts the
            // transaction; the producer learns it when it next talks to the broker.
            let timeout = u64::try_from(self.knobs.timeout_ms).unwrap_or(1_000);
            let away = io.rng.millis(timeout + 1_500, timeout + 4_000);
            self.resume = Some(self.step.clone());
            self.step = Step::Away(io.now + away);
            io.wake_in(away);
            return true;
        }
        false
    }

    fn send(&mut self, io: &mut Io<'_>) {
        if self.in_flight || !io.connected() {
            return;
        }
        let txn_id = KStr::from(self.txn_id().as_str());
        match self.step.clone() {
            Step::Topic => {
                let topic = CreatableTopic {
                    name: TOPIC.into(),
                    num_partitions: self.knobs.partitions,
                    replication_factor: -1,
                    configs: vec![CreatableTopicConfig {
                        name: "retention.ms".into(),
                        value: Some("-1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                let req = CreateTopicsRequest { topics: vec![topic], timeout_ms: 30_000, ..Default::default() };
                self.in_flight = true;
                io.send(&RequestBody::CreateTopics(req), 5, TX_TOPIC);
            }
            Step::Init => {
                let (producer_id, producer_epoch) = self.pid.unwrap_or((-1, -1));
                let req = InitProducerIdRequest {
                    transactional_id: Some(txn_id),
                    transaction_timeout_ms: self.knobs.timeout_ms,
                    producer_id,
                    producer_epoch,
                    ..Default::default()
                };
                self.in_flight = true;
                io.send(&RequestBody::InitProducerId(req), 4, TX_INIT);
            }
            Step::Idle => {
                if !self.producing || self.budget == 0 {
                    self.step = Step::Done;
                    return;
                }
                let Some((pid, _)) = self.pid else { return };
                self.budget -= 1;
                self.txn_no += 1;
                self.open = true;
                self.decision = None;
                let n = io.rng.range(1, u64::try_from(self.knobs.partitions).unwrap_or(1)) as usize;
                let mut all: Vec<i32> = (0..self.knobs.partitions).collect();
                let mut tps = Vec::new();
                for _ in 0..n {
                    let p = all.remove(io.rng.below(all.len() as u64) as usize);
                    tps.push((TOPIC.to_owned(), p));
                }
                tps.sort();
                for (k, tp) in tps.iter().enumerate() {
                    let records = io.rng.range(1, 3);
                    let values =
                        (0..records).map(|r| format!("x{}.{}.{}", self.id, self.txn_no, k as u64 * 10 + r)).collect();
                    let seq = self.seqs.get(tp).copied().unwrap_or(0);
                    self.batches.insert(tp.clone(), TxnBatch { values, seq, acked: false });
                }
                self.tps = tps;
                let timeout = Duration::from_millis(i64::from(self.knobs.timeout_ms));
                io.check.txn.begun(io.now, &self.txn_name(), pid, timeout);
                // Version 2: the partitions join with the first produce to them.
                self.step = if self.tv2 { Step::Producing } else { Step::Adding };
                self.send(io);
            }
            Step::Adding => {
                let Some((pid, epoch)) = self.pid else { return };
                let req = AddPartitionsToTxnRequest {
                    v3_and_below_transactional_id: txn_id,
                    v3_and_below_producer_id: pid,
                    v3_and_below_producer_epoch: epoch,
                    v3_and_below_topics: vec![AddPartitionsToTxnTopic {
                        name: TOPIC.into(),
                        partitions: self.tps.iter().map(|tp| tp.1).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                io.check.txn.added(&self.txn_name(), &self.tps, false);
                self.in_flight = true;
                io.send(&RequestBody::AddPartitionsToTxn(req), 3, TX_ADD);
            }
            Step::Producing => {
                let Some((pid, epoch)) = self.pid else { return };
                let mut all: Option<ProduceRequest> = None;
                for (tp, b) in self.batches.iter().filter(|(_, b)| !b.acked) {
                    let mut builder =
                        RecordBatchBuilder::new(Compression::None).producer(pid, epoch, b.seq).transactional(true);
                    for v in &b.values {
                        builder.append(io.wall_ms, Some(b"k"), Some(v.as_bytes()), &[]).expect("builds");
                    }
                    let RequestBody::Produce(one) = produce_request(&tp.0, tp.1, builder.build().expect("builds"), -1)
                    else {
                        unreachable!("a produce request")
                    };
                    all = Some(match all {
                        None => one,
                        Some(mut all) => {
                            let td = one.topic_data.into_iter().next().expect("one topic");
                            all.topic_data[0].partition_data.extend(td.partition_data);
                            all
                        }
                    });
                }
                let Some(mut req) = all else {
                    return;
                };
                if self.tv2 {
                    let tps: Vec<Tp> =
                        self.batches.iter().filter(|(_, b)| !b.acked).map(|(tp, _)| tp.clone()).collect();
                    io.check.txn.added(&self.txn_name(), &tps, false);
                }
                req.transactional_id = Some(txn_id);
                req.timeout_ms = 30_000;
                self.in_flight = true;
                io.send(&RequestBody::Produce(req), if self.tv2 { 12 } else { 9 }, TX_PRODUCE);
            }
            Step::Ending(commit) => {
                let Some((pid, epoch)) = self.pid else { return };
                let req = EndTxnRequest {
                    transactional_id: txn_id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    committed: commit,
                    ..Default::default()
                };
                io.check.txn.end_sent(&self.txn_name(), commit);
                self.in_flight = true;
                io.send(&RequestBody::EndTxn(req), if self.tv2 { 5 } else { 3 }, TX_END);
            }
            Step::Away(_) | Step::Done => {}
        }
    }

    /// Whether the transaction under way commits (drawn once).
    fn decide(&mut self, io: &mut Io<'_>) -> bool {
        let abort_rate = self.knobs.abort_rate;
        *self.decision.get_or_insert_with(|| !io.rng.chance(abort_rate))
    }

    /// After a retriable error: the same request again a little later.
    fn again(io: &mut Io<'_>) {
        io.wake_between(10, 100);
    }

    fn on_produce(&mut self, io: &mut Io<'_>, body: &ResponseBody) {
        let ResponseBody::Produce(r) = body else { return };
        let name = self.txn_name();
        for t in &r.responses {
            for pr in &t.partition_responses {
                let tp = (t.name.as_str().to_owned(), pr.index);
                let code = err(pr.error_code);
                if code == ErrorCode::NONE {
                    let Some(b) = self.batches.get_mut(&tp).filter(|b| !b.acked) else { continue };
                    b.acked = true;
                    io.check.txn.acked(&name, &tp, pr.base_offset, &b.values);
                    if self.tv2 {
                        // Accepted: the partition joined the transaction.
                        io.check.txn.added(&name, std::slice::from_ref(&tp), true);
                    }
                    let next = b.seq.wrapping_add(b.values.len() as i32) & i32::MAX;
                    self.seqs.insert(tp, next);
                } else if fatal(code) {
                    return self.reinit(io);
                }
            }
        }
        if self.batches.values().all(|b| b.acked) {
            self.step = Step::Ending(self.decide(io));
            io.wake_in(Duration::ZERO);
        } else {
            Self::again(io);
        }
    }
}

impl Model for TxnProducer {
    fn name(&self) -> String {
        format!("txn-producer-{}", self.id)
    }

    fn wake(&mut self, io: &mut Io<'_>) {
        if let Step::Away(until) = self.step {
            if io.now < until {
                return io.wake_at(until);
            }
            // Back: a crashed process starts over; a paused one carries on where it was.
            let resume = self.resume.take();
            self.step = match resume {
                Some(step) if self.pid.is_some() => step,
                _ => Step::Init,
            };
        }
        if !io.connected() {
            return io.connect();
        }
        if !self.in_flight && self.step != Step::Topic && self.step != Step::Init && self.maybe_fault(io) {
            return;
        }
        self.send(io);
    }

    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody) {
        self.in_flight = false;
        if matches!(self.step, Step::Away(_)) {
            return;
        }
        match (p.tag, &body) {
            (TX_TOPIC, ResponseBody::CreateTopics(r)) => {
                let code = r.topics.first().map_or(-1, |t| t.error_code);
                if code == 0 || err(code) == ErrorCode::TOPIC_ALREADY_EXISTS {
                    self.step = Step::Init;
                    io.wake_in(Duration::ZERO);
                } else {
                    Self::again(io);
                }
            }
            (TX_INIT, ResponseBody::InitProducerId(r)) => {
                if r.error_code == 0 {
                    self.pid = Some((r.producer_id, r.producer_epoch));
                    self.seqs.clear();
                    io.check.txn.initialized(io.now);
                    self.step = Step::Idle;
                    io.wake_in(Duration::ZERO);
                } else if fatal(err(r.error_code)) {
                    // The epoch it knows is stale: start over as a new process would.
                    self.pid = None;
                    Self::again(io);
                } else {
                    Self::again(io);
                }
            }
            (TX_ADD, ResponseBody::AddPartitionsToTxn(r)) => {
                let codes: Vec<ErrorCode> = r
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| t.results_by_partition.iter().map(|x| err(x.partition_error_code)))
                    .collect();
                if !codes.is_empty() && codes.iter().all(|c| *c == ErrorCode::NONE) {
                    io.check.txn.added(&self.txn_name(), &self.tps, true);
                    self.step = Step::Producing;
                    io.wake_in(Duration::ZERO);
                } else if codes.iter().any(|c| fatal(*c)) || fatal(err(r.error_code)) {
                    self.reinit(io);
                } else {
                    Self::again(io);
                }
            }
            (TX_PRODUCE, body @ ResponseBody::Produce(_)) => self.on_produce(io, body),
            (TX_END, ResponseBody::EndTxn(r)) => {
                let Step::Ending(commit) = self.step else { return };
                if r.error_code == 0 {
                    io.check.txn.ended(io.now, &self.txn_name(), commit);
                    if self.tv2 {
                        // Version 2: the next transaction runs in the epoch EndTxn handed out,
                        // its sequences from 0.
                        self.pid = Some((r.producer_id, r.producer_epoch));
                        self.seqs.clear();
                    }
                    self.open = false;
                    self.batches.clear();
                    self.tps.clear();
                    self.step = Step::Idle;
                    io.wake_between(0, 200);
                } else if fatal(err(r.error_code)) {
                    self.reinit(io);
                } else {
                    Self::again(io);
                }
            }
            (_, other) => io.check.fail(format!("{}: unexpected {:?} response", self.name(), other.api_key())),
        }
    }

    fn disconnected(&mut self, io: &mut Io<'_>, _lost: &[Pending]) {
        // What was in flight is sent again on the next connection, unchanged.
        self.in_flight = false;
        if !matches!(self.step, Step::Away(_)) {
            io.wake_between(10, 100);
        }
    }

    fn faults_off(&mut self, io: &mut Io<'_>) {
        self.producing = false;
        io.wake_in(Duration::ZERO);
    }

    fn view(&self) -> View {
        View::Other { busy: self.step != Step::Done }
    }
}

// ---- the reader ---------------------------------------------------------------------------

/// A read_committed reader of every partition of [`TOPIC`], from offset 0.
pub struct TxnReader {
    partitions: i32,
    positions: BTreeMap<Tp, i64>,
    in_flight: bool,
}

impl TxnReader {
    /// A reader of the `partitions` partitions of [`TOPIC`].
    #[must_use]
    pub fn new(partitions: i32) -> Self {
        let positions = (0..partitions).map(|p| ((TOPIC.to_owned(), p), 0)).collect();
        Self { partitions, positions, in_flight: false }
    }

    fn send_fetch(&mut self, io: &mut Io<'_>) {
        let partitions = self
            .positions
            .iter()
            .map(|(tp, &offset)| FetchPartition {
                partition: tp.1,
                fetch_offset: offset,
                partition_max_bytes: 1 << 10,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                ..Default::default()
            })
            .collect();
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: io.rng.range(0, 200) as i32,
            min_bytes: 1,
            max_bytes: 1 << 20,
            isolation_level: 1,
            topics: vec![FetchTopic { topic: TOPIC.into(), partitions, ..Default::default() }],
            ..Default::default()
        };
        self.in_flight = true;
        io.send(&RequestBody::Fetch(req), 12, 0);
    }

    /// Reads one partition's answer as Kafka's consumer does; whether it is read to the end.
    fn read(&mut self, io: &mut Io<'_>, tp: &Tp, pd: &PartitionData) -> bool {
        if pd.error_code != 0 {
            if err(pd.error_code) == ErrorCode::OFFSET_OUT_OF_RANGE {
                io.check.fail(format!("txn reader: {tp:?} out of range at {:?}", self.positions.get(tp)));
            }
            return false;
        }
        let lso = pd.last_stable_offset;
        io.check.txn.lso_seen(io.now, tp, lso, pd.high_watermark);
        let Some(position) = self.positions.get(tp).copied() else { return false };
        let mut next = position;
        if let Some(records) = &pd.records {
            let mut aborted: Vec<(i64, i64)> =
                pd.aborted_transactions.iter().flatten().map(|a| (a.first_offset, a.producer_id)).collect();
            aborted.sort_unstable();
            let mut aborted = aborted.into_iter().peekable();
            let mut skipping = BTreeSet::new();
            for b in Batches::new(records.to_bytes()) {
                let Ok(b) = b else {
                    io.check.fail(format!("txn reader: {tp:?}: a broken batch"));
                    return false;
                };
                if b.last_offset() >= lso {
                    io.check
                        .fail(format!("txn reader: {tp:?}: a batch ending at {} past the LSO {lso}", b.last_offset()));
                }
                while let Some((_, pid)) = aborted.next_if(|(first, _)| *first <= b.last_offset()) {
                    skipping.insert(pid);
                }
                if b.last_offset() < next {
                    continue;
                }
                if b.is_control() {
                    let kind = parse_marker(&b);
                    if kind == Some(MarkerKind::Abort) {
                        skipping.remove(&b.producer_id());
                    }
                    io.check.txn.marker(b.producer_id(), tp, b.base_offset(), kind == Some(MarkerKind::Commit));
                } else if !(b.is_transactional() && skipping.contains(&b.producer_id())) {
                    let Ok(recs) = b.records(1 << 20) else {
                        io.check.fail(format!("txn reader: {tp:?}: undecodable records"));
                        return false;
                    };
                    for r in &recs {
                        let Ok(r) = r else { continue };
                        if r.offset() < next {
                            continue;
                        }
                        let value =
                            r.value_slice().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
                        io.check.txn.delivered(tp, r.offset(), &value, lso);
                    }
                }
                next = next.max(b.last_offset() + 1);
            }
        }
        self.positions.insert(tp.clone(), next);
        next >= pd.high_watermark && lso == pd.high_watermark
    }
}

impl Model for TxnReader {
    fn name(&self) -> String {
        "txn-reader".to_owned()
    }

    fn wake(&mut self, io: &mut Io<'_>) {
        if !io.connected() {
            return io.connect();
        }
        if !self.in_flight {
            self.send_fetch(io);
        }
    }

    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody) {
        self.in_flight = false;
        let ResponseBody::Fetch(r) = body else {
            return io.check.fail(format!("txn reader: unexpected {:?} response", body.api_key()));
        };
        let mut all_read = r.error_code == 0;
        let mut answered = 0;
        for t in r.responses.iter().filter(|t| t.topic.as_str() == TOPIC) {
            for pd in &t.partitions {
                let tp = (TOPIC.to_owned(), pd.partition_index);
                answered += 1;
                all_read &= self.read(io, &tp, pd);
            }
        }
        if all_read && answered == self.partitions {
            io.check.txn.caught_up = Some(p.sent_at);
        }
        io.wake_between(0, 100);
    }

    fn disconnected(&mut self, io: &mut Io<'_>, _lost: &[Pending]) {
        self.in_flight = false;
        io.wake_between(10, 100);
    }

    fn faults_off(&mut self, _io: &mut Io<'_>) {}

    fn view(&self) -> View {
        View::Other { busy: false }
    }
}

/// The producer models and the reader for `knobs`, to add to a run.
#[must_use]
pub fn models(knobs: &TxnKnobs) -> Vec<Box<dyn Model>> {
    let mut out: Vec<Box<dyn Model>> = knobs
        .producers
        .iter()
        .enumerate()
        .map(|(i, &(budget, tv2))| Box::new(TxnProducer::new(i, knobs.clone(), budget, tv2)) as Box<dyn Model>)
        .collect();
    out.push(Box::new(TxnReader::new(knobs.partitions)));
    out
}
