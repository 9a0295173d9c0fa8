//! What happens when a partition's high watermark moves, an append fails, or a partition
//! goes away: the jobs and long-polling fetches waiting on it resume or fail.

use super::Effects;
use crate::io::{CmdId, Completion, PartitionKey, StorageError};
use crate::state::{HwmWaiter, State};

/// An append to `key` (command `cmd`) completed.
pub(crate) fn append_completed(st: &mut State, fx: &mut Effects, key: PartitionKey, cmd: CmdId, result: &Completion) {
    let Some(p) = st.topics.partition_mut(key) else { return };
    let (moved, failed_last) = match result {
        Completion::Done => (p.append_done(cmd), None),
        Completion::Failed(e) => (None, p.append_failed(cmd, e.outcome_unknown())),
        _ => (None, p.append_failed(cmd, true)),
    };
    let (hwm, rewinding) = (p.hwm(), p.is_rewinding());
    if moved.is_some() {
        hwm_moved(st, fx, key, hwm);
    }
    if rewinding || !matches!(result, Completion::Done) {
        let err = match result {
            Completion::Failed(e) => *e,
            _ => StorageError::Unavailable,
        };
        // A failure of the batch itself is the answer for that batch only (its waiters wait
        // for the offset after its last); the appends the rewind takes with it were fine, and
        // their clients get a retriable error.
        let others = if err.is_batch_fault() { StorageError::Unavailable } else { err };
        let own = failed_last.map(|last| last + 1);
        fail_beyond(st, fx, key, hwm, |target| if Some(target) == own { err } else { others });
    }
    super::resync::ask(st, fx, key);
}

/// Wakes jobs waiting on `key`'s high watermark, now `hwm`.
pub(crate) fn hwm_moved(st: &mut State, fx: &mut Effects, key: PartitionKey, hwm: i64) {
    if let Some(waiters) = st.waiters.hwm.get_mut(&key) {
        let (due, keep): (Vec<HwmWaiter>, Vec<HwmWaiter>) = waiters.drain(..).partition(|w| w.target <= hwm);
        *waiters = keep;
        for w in due {
            super::job_completed(st, fx, w.job, w.part, Completion::Done);
        }
    }
    wake_fetches(st, fx, key);
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
