//! Invariant checkers, fed by the client models and the simulator at every step.
//!
//! What they check (STYLE.md section 9 and issue 7):
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
//! - one member's acknowledged commits for a partition never go back within a generation;
//! - responses follow request order per connection, nothing is sent after a close, and every
//!   storage command id is new and completed once (checked in the simulator and store).
//!
//! A violation is recorded as text; the simulator stops at the first one.

use std::collections::{BTreeMap, HashMap};

use kelp_core::time::Instant;

/// A partition by topic name (the simulator never deletes or recreates its main topics).
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
    /// Records fetched and checked (a figure for reports).
    pub records_checked: u64,
    /// Records acknowledged.
    pub records_acked: u64,
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
        let end = base_offset + values.len() as i64;
        let acks = self.acks.entry(tp.clone()).or_default();
        let prev = acks.last().map_or(0, |(_, e)| *e);
        acks.push((now, prev.max(end)));
    }

    /// The high watermark every fetch sent at `sent_at` must report for `tp`.
    fn required_hwm(&self, tp: &Tp, sent_at: Instant) -> i64 {
        let Some(acks) = self.acks.get(tp) else { return 0 };
        let i = acks.partition_point(|(t, _)| *t <= sent_at);
        if i == 0 { 0 } else { acks[i - 1].1 }
    }

    /// A fetch of `tp` from `fetch_offset`, sent at `sent_at`, answered without error.
    pub fn fetched(&mut self, sent_at: Instant, tp: &Tp, fetch_offset: i64, hwm: i64, records: &[(i64, String)]) {
        let need = self.required_hwm(tp, sent_at);
        if hwm < need {
            return self.fail(format!(
                "{tp:?}: a fetch sent after offsets below {need} were acknowledged reports high watermark {hwm}"
            ));
        }
        let mut prev: Option<i64> = None;
        for (o, v) in records {
            if *o >= hwm {
                return self.fail(format!("{tp:?}: fetch returned offset {o} at or beyond the high watermark {hwm}"));
            }
            match prev {
                None if *o > fetch_offset => {
                    return self.fail(format!("{tp:?}: fetch from {fetch_offset} skipped to offset {o}"));
                }
                Some(p) if *o != p + 1 => {
                    return self.fail(format!("{tp:?}: fetched offsets jump from {p} to {o}"));
                }
                _ => {}
            }
            prev = Some(*o);
            self.place(tp, *o, v, "fetched");
            self.records_checked += 1;
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
