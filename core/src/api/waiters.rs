//! What happens when a partition's high watermark moves, an append fails, or a partition
//! goes away: the jobs and long-polling fetches waiting on it resume or fail.

use super::Effects;
use crate::io::{CmdId, Command, Completion, PartitionKey, StorageError};
use crate::state::{HwmWaiter, State};

/// An append to `key` (command `cmd`) completed.
pub(crate) fn append_completed(st: &mut State, fx: &mut Effects, key: PartitionKey, cmd: CmdId, result: &Completion) {
    let Some(p) = st.topics.partition_mut(key) else { return };
    let stored_before = p.stored();
    let (moved, failed_last) = match result {
        Completion::Done => (p.append_done(cmd, true), None),
        Completion::Stored => (p.append_done(cmd, false), None),
        Completion::Failed(e) => (None, p.append_failed(cmd, e.outcome_unknown())),
        _ => (None, p.append_failed(cmd, true)),
    };
    let ok = matches!(result, Completion::Done | Completion::Stored);
    let (hwm, stored, rewinding, resyncing) = (p.hwm(), p.stored(), p.is_rewinding(), p.is_resyncing());
    if moved.is_some() {
        hwm_moved(st, fx, key, hwm);
    } else if stored != stored_before {
        release(st, fx, key);
    }
    if rewinding || !ok {
        let err = match result {
            Completion::Failed(e) => *e,
            _ => StorageError::Unavailable,
        };
        // A failure of the batch itself is the answer for that batch only (its waiters wait
        // for the offset after its last); the appends the rewind takes with it were fine, and
        // their clients get a retriable error. Stored records stay (and their acks=-1 waiters
        // wait on) unless the partition re-learns its end, which may leave them out.
        let others = if err.is_batch_fault() { StorageError::Unavailable } else { err };
        let own = failed_last.map(|last| last + 1);
        let limit = if resyncing { hwm } else { stored };
        fail_beyond(st, fx, key, limit, |target| if Some(target) == own { err } else { others });
    }
    super::resync::ask(st, fx, key);
    ask_durability(st, fx, key);
}

/// Asks the store when `key`'s stored records become durable, if the partition wants to know.
pub(crate) fn ask_durability(st: &mut State, fx: &mut Effects, key: PartitionKey) {
    let Some(p) = st.topics.partition_mut(key) else { return };
    if p.wants_durability() {
        let offset = p.stored();
        let cmd = fx.storage(super::CmdOwner::Durable(key), Command::AwaitDurable { partition: key, offset });
        if let Some(p) = st.topics.partition_mut(key) {
            p.awaiting_durability(cmd);
        }
    }
}

/// The store answered `key`'s [`Command::AwaitDurable`] `cmd`.
pub(crate) fn durability(st: &mut State, fx: &mut Effects, key: PartitionKey, cmd: CmdId, result: &Completion) {
    let Some(p) = st.topics.partition_mut(key) else { return };
    match result {
        Completion::Durable { end } => {
            if let Some(hwm) = p.durable_until(cmd, *end) {
                hwm_moved(st, fx, key, hwm);
            }
        }
        other => {
            let unknown = match other {
                Completion::Failed(e) => e.outcome_unknown(),
                _ => true,
            };
            // A refusal that is not about the records (the partition is gone) changes nothing.
            if unknown && p.durability_unknown(cmd) {
                let hwm = p.hwm();
                fail_beyond(st, fx, key, hwm, |_| StorageError::Unavailable);
                super::resync::ask(st, fx, key);
            } else if !unknown {
                let _ = p.durability_unknown(cmd);
            }
        }
    }
    ask_durability(st, fx, key);
}

/// Wakes jobs waiting on `key`'s high watermark, now `hwm`.
pub(crate) fn hwm_moved(st: &mut State, fx: &mut Effects, key: PartitionKey, hwm: i64) {
    debug_assert!(st.topics.partition(key).is_none_or(|p| p.hwm() == hwm));
    release(st, fx, key);
    wake_fetches(st, fx, key);
}

/// Resumes the jobs waiting on `key` whose records are now where they wait for them: below
/// the high watermark (acks=-1) or the stored end (acks=1).
fn release(st: &mut State, fx: &mut Effects, key: PartitionKey) {
    let Some((hwm, stored)) = st.topics.partition(key).map(|p| (p.hwm(), p.stored())) else { return };
    if let Some(waiters) = st.waiters.hwm.get_mut(&key) {
        let (due, keep): (Vec<HwmWaiter>, Vec<HwmWaiter>) =
            waiters.drain(..).partition(|w| w.target <= if w.durable { hwm } else { stored });
        *waiters = keep;
        for w in due {
            super::job_completed(st, fx, w.job, w.part, Completion::Done);
        }
    }
}

/// Long-polling fetches waiting on `key` look again.
fn wake_fetches(st: &mut State, fx: &mut Effects, key: PartitionKey) {
    if let Some(fetches) = st.waiters.fetch.remove(&key) {
        for job in fetches {
            super::fetch::wake(st, fx, job);
        }
    }
}

/// A partition went away (its topic was deleted, or a CreatePartitions the store refused):
/// whatever waits on it fails, and long-polling fetches look again.
pub(crate) fn partition_removed(st: &mut State, fx: &mut Effects, key: PartitionKey) {
    fail_beyond(st, fx, key, i64::MIN, |_| StorageError::NotFound);
    st.waiters.hwm.remove(&key);
    wake_fetches(st, fx, key);
}

/// Fails the jobs waiting on `key` for an offset beyond `hwm`, each with `err(its target)`.
fn fail_beyond(st: &mut State, fx: &mut Effects, key: PartitionKey, hwm: i64, err: impl Fn(i64) -> StorageError) {
    let Some(waiters) = st.waiters.hwm.get_mut(&key) else { return };
    let (failed, keep): (Vec<HwmWaiter>, Vec<HwmWaiter>) = waiters.drain(..).partition(|w| w.target > hwm);
    *waiters = keep;
    for w in failed {
        super::job_completed(st, fx, w.job, w.part, Completion::Failed(err(w.target)));
    }
}
