//! Invariant checkers, fed by the client models and the simulator at every step.
//!
//! What they check (the invariants of STYLE.md section 9, and the simulator's own):
//! - an acknowledged record is never lost, changed or moved: every fetch that returns its
//!   offset returns its value, and every fetch sent after the acknowledgement reports a high
//!   watermark past it;
//! - an idempotent producer's retries never duplicate: a value appears at one offset only;
//! - fetched records are contiguous, below the high watermark, and the high watermark a client
//!   sees never goes back;
//! - at most one owner per partition per generation of a group (owners are static instance
//!   ids where members have them: a static member keeps its assignment across a restart);
//! - once a generation has been handed out (a SyncGroup succeeded), a request carrying an older
//!   generation is refused (fencing);
//! - one member's acknowledged commits for a partition never go back within a generation
//!   (KIP-848: within a member epoch);
//! - KIP-848 groups: at most one member owns a partition at any instant (a member owns it
//!   from the heartbeat response that assigns it until it sends the heartbeat that
//!   acknowledges it without it, leaves, crashes or is told it was fenced; or, as a zombie,
//!   until it has heard no successful heartbeat answer for as long as the broker waits before
//!   fencing it), and a member's epoch never goes back;
//! - KIP-848 groups with regex subscriptions and topic churn: a member that has heartbeated
//!   (successfully) since a topic's deletion was acknowledged owns none of its partitions
//!   ([`Checker::deleted_at`], checked by the member); at a stable point of the liveness phase
//!   every partition of every topic some member's subscription matches (names, or the whole
//!   name against its regex) is owned by exactly one member that matches it, and no member
//!   owns anything else (checked by the simulator against [`Checker::topics_listed`]);
//! - records below the log start vanish only through DeleteRecords or retention: a fetch is
//!   answered OFFSET_OUT_OF_RANGE, and ListOffsets reports a log start, only below what a
//!   DeleteRecords asked for (with retention on: or below the newest record known);
//! - on compacted topics, fetched offsets only rise but may skip records, and a record known
//!   to be in the log (acknowledged or fetched before) may be missing from a fetch that spans
//!   it only by compaction's rule: a later record of its key, below the high watermark, was
//!   old enough for `min.compaction.lag.ms` when the cleaner could have run, or it is a
//!   tombstone whose `delete.retention.ms` has passed after that. So the latest record of
//!   every key stays readable (until retention or DeleteRecords removes it from below the log
//!   start);
//! - responses follow request order per connection, nothing is sent after a close, and every
//!   storage command id is new and completed once (checked in the simulator and store).
//!
//! A violation is recorded as text; the simulator stops at the first one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kelp_core::codec::RecordSet;
use kelp_core::records::Batches;
use kelp_core::time::{Duration, Instant};

/// One fetched record as the checkers see it: its offset, its identity and its timestamp.
/// The identity is the value; a tombstone (no value) carries it in an `id` header, and it
/// starts with `~` (see [`is_tombstone`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    /// The offset.
    pub offset: i64,
    /// The identity.
    pub id: String,
    /// The record's (create) timestamp.
    pub timestamp: i64,
    /// Whether it is a transaction marker (a control batch's record), which no consumer hands
    /// out.
    pub control: bool,
}

/// Every record of a fetched record set, checking each batch's CRC, and the offset after the
/// last batch (`None` when there is no batch): a consumer moves past batches the cleaner
/// emptied as well as past the records it reads.
#[must_use]
pub fn decode(records: &RecordSet) -> (Vec<Rec>, Option<i64>) {
    let mut out = Vec::new();
    let mut next = None;
    for batch in Batches::new(records.to_bytes()) {
        let batch = batch.expect("whole batches");
        // The CRC only: a batch the cleaner emptied in part keeps its lastOffsetDelta, which
        // the produce-side header checks of `validate` would refuse.
        assert_eq!(batch.crc(), batch.compute_crc(), "valid CRC");
        next = Some(batch.next_offset());
        if batch.is_control() {
            // A transaction marker: a consumer reads past it and hands out nothing; the
            // checkers see its offset (offsets stay contiguous) and no identity.
            let offset = batch.base_offset();
            out.push(Rec { offset, id: String::new(), timestamp: batch.max_timestamp(), control: true });
            continue;
        }
        for r in &batch.records(1 << 20).expect("records") {
            let r = r.expect("record");
            let id = match r.value_slice() {
                Some(v) => String::from_utf8_lossy(v).into_owned(),
                None => r
                    .headers()
                    .filter_map(Result::ok)
                    .find(|h| h.key.as_ref() == b"id")
                    .and_then(|h| h.value)
                    .map_or_else(|| "~".to_owned(), |v| String::from_utf8_lossy(&v).into_owned()),
            };
            out.push(Rec { offset: r.offset(), id, timestamp: r.create_timestamp(), control: false });
        }
    }
    (out, next)
}

/// Whether a record identity names a tombstone.
#[must_use]
pub fn is_tombstone(id: &str) -> bool {
    id.starts_with('~')
}

/// The compaction key of a record identity (`<value>/<key>`), if it has one.
#[must_use]
pub fn key_of(id: &str) -> Option<&str> {
    id.rsplit_once('/').map(|(_, k)| k)
}

/// The main topics' compaction settings, for the checker.
#[derive(Clone, Copy, Debug)]
pub struct CompactionRules {
    /// `min.compaction.lag.ms`.
    pub min_lag_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// A partition by topic name (the simulator never deletes or recreates its main topics, and
/// never reuses the name of a topic it deleted).
pub type Tp = (String, i32);

/// Everything the checkers remember.
#[derive(Debug, Default)]
pub struct Checker {
    /// The first violation, if any.
    pub violation: Option<String>,
    /// Value at each offset, as acknowledged or first fetched.
    log: HashMap<Tp, BTreeMap<i64, String>>,
    /// Where each value lives.
    where_is: HashMap<String, (Tp, i64)>,
    /// Per partition: (time an acknowledgement arrived, end offset acknowledged), ends rising.
    acks: HashMap<Tp, Vec<(Instant, i64)>>,
    /// Per (group, generation): owner of each partition.
    owners: HashMap<(String, i32), BTreeMap<Tp, String>>,
    /// Per group: (time a SyncGroup success arrived, its generation), generations rising.
    synced: HashMap<String, Vec<(Instant, i32)>>,
    /// Last acknowledged commit per (group, partition, generation, owner).
    commits: HashMap<(String, Tp, i32, String), i64>,
    /// KIP-848: the member that owns each partition of a group right now (from the heartbeat
    /// response that assigned it until it acknowledged without it, crashed or was fenced).
    owners_848: HashMap<(String, Tp), String>,
    /// KIP-848: when each member (group, member id) last had a successful heartbeat, and
    /// how long the broker waits before fencing it (min of session and rebalance timeouts).
    heard_848: HashMap<(String, String), (Instant, Duration)>,
    /// KIP-848 ownerships taken over from a member cut off from successful heartbeats for
    /// longer than the broker waits (a zombie, as Kafka allows; a figure).
    pub zombies_848: u64,
    /// KIP-848: the newest member epoch each member (group, member id) was given.
    epochs_848: HashMap<(String, String), i32>,
    /// Per partition: the highest log start a DeleteRecords asked for (from the moment it
    /// was sent: it may take effect before, or without, its acknowledgement).
    trims: HashMap<Tp, i64>,
    /// Whether retention may delete old segments of the main topics (then records a fetch
    /// has seen, or that were acknowledged, may vanish from below the log start).
    pub retention: bool,
    /// The main topics' compaction settings, when they are compacted.
    pub compaction: Option<CompactionRules>,
    /// Per partition: the oldest timestamp each known record may carry (the earliest a
    /// producer stamped it with, or as fetched).
    stamps: HashMap<Tp, BTreeMap<i64, i64>>,
    /// The wall clock (ms) at the step being checked.
    pub wall_ms: i64,
    /// How far the wall clock has jumped back, in total: a cleaner pass that ran before now
    /// may have seen a wall clock up to this much later than now.
    pub clock_slack_ms: i64,
    /// Records compaction removed that fetches spanned (a figure).
    pub compacted_away: u64,
    /// Fetches answered OFFSET_OUT_OF_RANGE below a requested log start (a figure).
    pub trimmed_fetches: u64,
    /// KIP-848 ownership handovers seen (a figure for reports).
    pub handovers_848: u64,
    /// Records fetched and checked (a figure for reports).
    pub records_checked: u64,
    /// Records acknowledged.
    pub records_acked: u64,
    /// Topics a DeleteTopics was sent for (they may be gone from then on).
    deleting: BTreeSet<String>,
    /// Topics whose deletion was acknowledged, and when the acknowledgement arrived.
    deleted: HashMap<String, Instant>,
    /// Every topic there is and its partition count, as the admin's latest listing saw it,
    /// and when that answer arrived.
    pub listing: Option<(Instant, BTreeMap<String, i32>)>,
    /// Per KIP-848 group: when the admin's latest ConsumerGroupDescribe was sent, and the
    /// group epoch and member ids it reported.
    pub described: BTreeMap<String, (Instant, i32, BTreeSet<String>)>,
    /// Topic deletions acknowledged (a figure).
    pub topics_deleted: u64,
    /// Transactions: what the transactional producers and the read_committed reader saw.
    pub txn: super::txn::TxnChecker,
}

impl Checker {
    /// Records a violation (the first one wins).
    pub fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(what);
        }
    }

    /// The end of what has been acknowledged on `tp` (0 if nothing).
    #[must_use]
    pub fn acked_end(&self, tp: &Tp) -> i64 {
        self.acks.get(tp).and_then(|v| v.last()).map_or(0, |(_, end)| *end)
    }

    fn place(&mut self, tp: &Tp, offset: i64, value: &str, how: &str) {
        let slot = self.log.entry(tp.clone()).or_default();
        match slot.get(&offset) {
            Some(v) if v != value => {
                let v = v.clone();
                return self.fail(format!("{tp:?} offset {offset}: {how} {value:?} but it held {v:?}"));
            }
            Some(_) => {}
            None => {
                slot.insert(offset, value.to_owned());
            }
        }
        match self.where_is.get(value) {
            Some((t, o)) if t != tp || *o != offset => {
                let (t, o) = (t.clone(), *o);
                self.fail(format!("value {value:?} at {tp:?}@{offset} ({how}) is also at {t:?}@{o}: duplicated"));
            }
            Some(_) => {}
            None => {
                self.where_is.insert(value.to_owned(), (tp.clone(), offset));
            }
        }
    }

    /// A produce of `values` to `tp` was acknowledged at `base_offset`, arriving at `now`.
    pub fn produce_acked(&mut self, now: Instant, tp: &Tp, base_offset: i64, values: &[String]) {
        if base_offset < 0 {
            return self.fail(format!("{tp:?}: produce acknowledged without an offset"));
        }
        for (i, v) in values.iter().enumerate() {
            self.place(tp, base_offset + i as i64, v, "acknowledged");
        }
        self.records_acked += values.len() as u64;
        if self.deleting.contains(&tp.0) {
            // Its topic may already be gone: nothing more is expected of these records.
            return;
        }
        let end = base_offset + values.len() as i64;
        let acks = self.acks.entry(tp.clone()).or_default();
        let prev = acks.last().map_or(0, |(_, e)| *e);
        acks.push((now, prev.max(end)));
    }

    /// Records the timestamps of `n` records of `tp` from `base_offset`: each was stamped no
    /// earlier than `timestamp`.
    pub fn stamped(&mut self, tp: &Tp, base_offset: i64, n: usize, timestamp: i64) {
        let stamps = self.stamps.entry(tp.clone()).or_default();
        for o in base_offset..base_offset + n as i64 {
            let t = stamps.entry(o).or_insert(timestamp);
            *t = (*t).min(timestamp);
        }
    }

    /// Whether compaction may have removed the record at `offset` of `tp` (known to be `id`)
    /// by the time a fetch answered with high watermark `hwm`. See the module docs.
    fn compactable(&self, tp: &Tp, offset: i64, id: &str, hwm: i64) -> bool {
        let Some(rules) = self.compaction else { return false };
        let latest_pass = self.wall_ms.saturating_add(self.clock_slack_ms);
        let stamps = self.stamps.get(tp);
        let stamp = |o: i64| stamps.and_then(|s| s.get(&o)).copied();
        let old_enough = |o: i64, extra: i64| {
            stamp(o).is_some_and(|t| t.saturating_add(rules.min_lag_ms).saturating_add(extra) <= latest_pass)
        };
        let Some(key) = key_of(id) else { return false };
        let Some(log) = self.log.get(tp) else { return false };
        let superseded = log.range(offset + 1..hwm).any(|(&later, v)| key_of(v) == Some(key) && old_enough(later, 0));
        superseded || (is_tombstone(id) && old_enough(offset, rules.delete_retention_ms))
    }

    /// Checks that every record known in `from..to` of `tp`, which a fetch answered with high
    /// watermark `hwm` skipped, may have been compacted away.
    fn skipped(&mut self, tp: &Tp, from: i64, to: i64, hwm: i64) {
        if self.compaction.is_none() {
            return self.fail(format!("{tp:?}: fetched offsets skip from {from} to {to}"));
        }
        let known: Vec<(i64, String)> = self
            .log
            .get(tp)
            .map(|l| l.range(from..to.max(from)).map(|(o, v)| (*o, v.clone())).collect())
            .unwrap_or_default();
        // Below what DeleteRecords or retention may have removed, a read racing the removal
        // may skip records too.
        let removable = self.removable(tp);
        for (o, id) in known {
            if o >= removable && !self.compactable(tp, o, &id, hwm) {
                return self.fail(format!(
                    "{tp:?}: a fetch skipped offset {o} ({id:?}), which compaction may not remove yet: no later record of its key old enough below {hwm}{}",
                    if is_tombstone(&id) { ", and delete.retention.ms has not passed" } else { "" }
                ));
            }
            self.compacted_away += 1;
        }
    }

    /// The high watermark every fetch sent at `sent_at` must report for `tp`.
    fn required_hwm(&self, tp: &Tp, sent_at: Instant) -> i64 {
        let Some(acks) = self.acks.get(tp) else { return 0 };
        // Strictly before: an acknowledgement arriving at the very instant a fetch leaves may
        // come after it in event order (found by seed 9417, where no time passes between them).
        let i = acks.partition_point(|(t, _)| *t < sent_at);
        if i == 0 { 0 } else { acks[i - 1].1 }
    }

    /// A fetch of `tp` from `fetch_offset`, sent at `sent_at`, answered without error with
    /// `records` in batches that end before `end` (`None`: no batch).
    pub fn fetched(&mut self, sent_at: Instant, tp: &Tp, fetch_offset: i64, hwm: i64, fetched: (&[Rec], Option<i64>)) {
        let (records, end) = fetched;
        let need = self.required_hwm(tp, sent_at);
        if hwm < need {
            return self.fail(format!(
                "{tp:?}: a fetch sent after offsets below {need} were acknowledged reports high watermark {hwm}"
            ));
        }
        // Every record of the answer is known before the gaps are judged: a later record of
        // the same answer may be what let the cleaner remove an earlier one (its producer's
        // acknowledgement may still be on the way; found by seed 10215).
        let mut prev: Option<i64> = None;
        for r in records {
            let o = r.offset;
            if o >= hwm {
                return self.fail(format!("{tp:?}: fetch returned offset {o} at or beyond the high watermark {hwm}"));
            }
            if let Some(p) = prev
                && o <= p
            {
                return self.fail(format!("{tp:?}: fetched offsets go back from {p} to {o}"));
            }
            prev = Some(o);
            if r.control {
                continue;
            }
            self.place(tp, o, &r.id, "fetched");
            if self.compaction.is_some() {
                self.stamped(tp, o, 1, r.timestamp);
            }
            self.records_checked += 1;
        }
        let mut prev: Option<i64> = None;
        for r in records {
            let o = r.offset;
            match prev {
                None if o > fetch_offset => self.skipped(tp, fetch_offset, o, hwm),
                Some(p) if o != p + 1 => self.skipped(tp, p + 1, o, hwm),
                _ => {}
            }
            prev = Some(o);
        }
        // Records after the last one returned, inside the batches returned, were removed.
        if self.compaction.is_some()
            && let Some(end) = end
        {
            let from = prev.map_or(fetch_offset, |p| p + 1).max(fetch_offset);
            if from < end {
                self.skipped(tp, from, end.min(hwm), hwm);
            }
        }
    }

    /// A client saw `hwm` for `tp` after having seen `before`.
    pub fn hwm_seen(&mut self, client: &str, tp: &Tp, before: i64, hwm: i64) {
        if hwm < before {
            self.fail(format!("{client}: high watermark of {tp:?} went back from {before} to {hwm}"));
        }
    }

    /// The newest generation of `group` handed out before `t`.
    fn generation_at(&self, group: &str, t: Instant) -> i32 {
        let Some(v) = self.synced.get(group) else { return -1 };
        let i = v.partition_point(|(at, _)| *at <= t);
        if i == 0 { -1 } else { v[i - 1].1 }
    }

    /// A request of `api` with `generation`, sent at `sent_at`, succeeded: it must not be fenced.
    pub fn generation_accepted(&mut self, api: &str, group: &str, generation: i32, sent_at: Instant) {
        if generation < 0 {
            return;
        }
        let newest = self.generation_at(group, sent_at);
        if generation < newest {
            self.fail(format!(
                "group {group}: {api} with generation {generation} accepted after generation {newest} was synced"
            ));
        }
    }

    /// A SyncGroup succeeded: `owner` holds `partitions` in `generation`.
    pub fn synced(&mut self, now: Instant, group: &str, generation: i32, owner: &str, partitions: &[Tp]) {
        let owners = self.owners.entry((group.to_owned(), generation)).or_default();
        let mut clash = None;
        for tp in partitions {
            match owners.get(tp) {
                Some(o) if o != owner => clash = Some((tp.clone(), o.clone())),
                Some(_) => {}
                None => {
                    owners.insert(tp.clone(), owner.to_owned());
                }
            }
        }
        if let Some((tp, other)) = clash {
            return self
                .fail(format!("group {group} generation {generation}: {tp:?} owned by both {other} and {owner}"));
        }
        let v = self.synced.entry(group.to_owned()).or_default();
        let prev = v.last().map_or(-1, |(_, g)| *g);
        v.push((now, prev.max(generation)));
    }

    /// KIP-848: `member` of `group` starts to own `tp` (a heartbeat response assigned it).
    /// No other member may own it at the same time.
    pub fn acquired(&mut self, now: Instant, group: &str, member: &str, tp: &Tp) {
        let key = (group.to_owned(), tp.clone());
        match self.owners_848.get(&key) {
            Some(o) if o != member => {
                let o = o.clone();
                // A member that has heard nothing good from the broker for longer than the
                // broker waits may have been fenced without knowing: the Java client keeps
                // its partitions until it hears (commit fencing covers the overlap).
                let heard = self.heard_848.get(&(group.to_owned(), o.clone())).copied();
                if heard.is_some_and(|(at, wait)| now.since(at) >= wait) {
                    self.zombies_848 += 1;
                    self.owners_848.insert(key, member.to_owned());
                    return;
                }
                self.fail(format!("group {group}: {tp:?} assigned to {member} while {o} still owns it"));
            }
            Some(_) => {}
            None => {
                self.handovers_848 += 1;
                self.owners_848.insert(key, member.to_owned());
            }
        }
    }

    /// KIP-848: `member` of `group` had a successful heartbeat at `now`; the broker fences it
    /// when it hears nothing for `wait`.
    pub fn heard(&mut self, now: Instant, group: &str, member: &str, wait: Duration) {
        self.heard_848.insert((group.to_owned(), member.to_owned()), (now, wait));
    }

    /// KIP-848: `member` of `group` no longer owns `tp` (it acknowledged without it, left,
    /// crashed, or learnt it was fenced).
    pub fn released(&mut self, group: &str, member: &str, tp: &Tp) {
        let key = (group.to_owned(), tp.clone());
        if self.owners_848.get(&key).is_some_and(|o| o == member) {
            self.owners_848.remove(&key);
        }
    }

    /// KIP-848: a heartbeat response gave `member` of `group` the member `epoch`; a member's
    /// epoch never goes back.
    pub fn member_epoch(&mut self, group: &str, member: &str, epoch: i32) {
        let key = (group.to_owned(), member.to_owned());
        let prev = self.epochs_848.get(&key).copied().unwrap_or(0);
        if epoch < prev {
            return self.fail(format!("group {group}: member {member}'s epoch went back from {prev} to {epoch}"));
        }
        self.epochs_848.insert(key, epoch);
    }

    /// Up to where records of `tp` may have been removed: what DeleteRecords asked for, and
    /// with retention on, anything below the newest record known (acknowledged or fetched).
    fn removable(&self, tp: &Tp) -> i64 {
        let trimmed = self.trims.get(tp).copied().unwrap_or(0);
        if !self.retention {
            return trimmed;
        }
        let known = self.log.get(tp).and_then(|l| l.keys().next_back()).map_or(0, |o| o + 1);
        trimmed.max(known).max(self.acked_end(tp))
    }

    /// A DeleteRecords asking `tp` to start at `offset` is being sent.
    pub fn trim_requested(&mut self, tp: &Tp, offset: i64) {
        let t = self.trims.entry(tp.clone()).or_default();
        *t = (*t).max(offset);
    }

    /// A fetch of `tp` from `offset` was answered OFFSET_OUT_OF_RANGE: records may vanish
    /// below the log start only through DeleteRecords, so a DeleteRecords must have asked for
    /// a log start past `offset`.
    pub fn out_of_range(&mut self, client: &str, tp: &Tp, offset: i64) {
        let trimmed = self.removable(tp);
        if offset >= trimmed {
            return self.fail(format!(
                "{client}: fetch of {tp:?} at {offset} is out of range, but no DeleteRecords asked for a log start past {trimmed}"
            ));
        }
        self.trimmed_fetches += 1;
    }

    /// ListOffsets (earliest) reported `start` as the log start of `tp`.
    pub fn log_start_seen(&mut self, client: &str, tp: &Tp, start: i64) {
        let trimmed = self.removable(tp);
        if start > trimmed {
            self.fail(format!(
                "{client}: the log start of {tp:?} is {start}, but DeleteRecords asked for at most {trimmed}"
            ));
        }
    }

    /// A DeleteTopics for `topic` is being sent: from now on the topic, and its records, may
    /// be gone. A deleted topic's records are deleted with it, so the checker stops expecting
    /// them: its acknowledged ends are forgotten (no fetch must report a high watermark past
    /// them, no member must reach them). What it knows of their values stays, so that a fetch
    /// answered before the deletion is still checked against it (names are never reused).
    pub fn topic_deleting(&mut self, topic: &str) {
        self.deleting.insert(topic.to_owned());
        self.acks.retain(|(t, _), _| t != topic);
    }

    /// The broker acknowledged the deletion of `topic` at `now` (durable from then on).
    pub fn topic_deleted(&mut self, topic: &str, now: Instant) {
        self.topics_deleted += 1;
        self.deleted.entry(topic.to_owned()).or_insert(now);
    }

    /// When the deletion of `topic` was acknowledged, if it was: a member whose heartbeat
    /// was sent after this and answered must own none of its partitions.
    #[must_use]
    pub fn deleted_at(&self, topic: &str) -> Option<Instant> {
        self.deleted.get(topic).copied()
    }

    /// The admin listed every topic there is (the answer arrived at `now`).
    pub fn topics_listed(&mut self, now: Instant, topics: BTreeMap<String, i32>) {
        self.listing = Some((now, topics));
    }

    /// A ConsumerGroupDescribe sent at `sent_at` reported `group` at `epoch` with `members`.
    pub fn group_described(&mut self, group: &str, sent_at: Instant, epoch: i32, members: BTreeSet<String>) {
        self.described.insert(group.to_owned(), (sent_at, epoch, members));
    }

    /// An offset commit by `owner` in `generation` was acknowledged.
    pub fn committed(&mut self, group: &str, tp: &Tp, generation: i32, owner: &str, offset: i64) {
        let key = (group.to_owned(), tp.clone(), generation, owner.to_owned());
        if let Some(prev) = self.commits.get(&key)
            && offset < *prev
        {
            let prev = *prev;
            return self.fail(format!(
                "group {group} {tp:?}: {owner}'s committed offset went back from {prev} to {offset} in generation {generation}"
            ));
        }
        self.commits.insert(key, offset);
    }
}
