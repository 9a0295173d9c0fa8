//! Partition re-synchronisation: after an append whose outcome is unknown, the partition
//! refuses appends (produce answers NOT_LEADER_OR_FOLLOWER, which clients retry), asks the
//! store where the partition really ends ([`Command::RecoverPartition`]) once nothing is in
//! flight, and adopts the answer ([`crate::log::PartitionLog::adopt`]). A failed or
//! unacceptable answer is asked for again after a pause that starts at [`RESYNC_RETRY`] and
//! doubles with each further one up to [`RESYNC_RETRY_MAX`] (a store that is down is not
//! asked in a tight loop; one that is back is asked again within that).

use super::{CmdOwner, Effects, Timer};
use crate::io::{Command, Completion, PartitionKey, StorageError};
use crate::state::State;

/// How long to wait before asking the store for a partition's end again after it failed.
const RESYNC_RETRY: crate::time::Duration = crate::time::Duration::from_millis(100);
/// The longest pause between two questions.
const RESYNC_RETRY_MAX: crate::time::Duration = crate::time::Duration::from_secs(2);

/// The pause after the `failures`-th answer in a row that could not be used (1 or more).
fn backoff(failures: u32) -> crate::time::Duration {
    let ms = RESYNC_RETRY.as_millis().saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1));
    crate::time::Duration::from_millis(i64::try_from(ms.min(RESYNC_RETRY_MAX.as_millis())).unwrap_or(i64::MAX))
}

/// Sends [`Command::RecoverPartition`] for `key` if the partition wants it now.
pub(crate) fn ask(st: &mut State, fx: &mut Effects, key: PartitionKey) {
    let Some(p) = st.topics.partition_mut(key) else { return };
    if p.take_resync_request() {
        let from = p.hwm();
        fx.storage(CmdOwner::Resync(key), Command::RecoverPartition { partition: key, from });
    }
}

/// The store answered [`Command::RecoverPartition`] for `key`.
pub(crate) fn done(st: &mut State, fx: &mut Effects, key: PartitionKey, result: Completion) {
    let unclean = st.topics.by_id(key.topic_id).is_some_and(|t| t.settings.unclean_leader_election);
    let Some(p) = st.topics.partition_mut(key) else { return };
    let adopted = match &result {
        // An operator accepted that the store lost records it had made durable: the
        // partition continues at the store's end in a new leader epoch, stored first.
        Completion::Partition(extent)
            if unclean && extent.next_offset < p.hwm() && extent.log_start <= extent.next_offset =>
        {
            let epochs = p.begin_truncation(extent);
            let value = crate::log::encode_epochs(&epochs);
            fx.storage(CmdOwner::Epochs(key), Command::Put { key: crate::log::epochs_key(key), value: Some(value) });
            return;
        }
        // An end below the high watermark would lose acknowledged records: not adopted, asked
        // again (a SeaweedMQ broker that has just restarted reports 0 until it has loaded the
        // partition).
        Completion::Partition(extent) => p.adopt(extent),
        other => {
            debug_assert!(matches!(other, Completion::Failed(_)), "RecoverPartition answered with {other:?}");
            p.resync_failed(match other {
                Completion::Failed(StorageError::Fenced(why)) => Some(why),
                _ => None,
            });
            Err(crate::log::EndBelowHighWatermark)
        }
    };
    let failures = p.resync_failures();
    match adopted {
        Ok(Some(hwm)) => super::waiters::hwm_moved(st, fx, key, hwm),
        Ok(None) => {}
        Err(_) => fx.arm(Timer::Resync(key), st.now.mono + backoff(failures)),
    }
}

/// The store answered the `Put` of `key`'s new leader epoch history, written before the
/// partition accepts an end below its high watermark.
pub(crate) fn epochs_stored(st: &mut State, fx: &mut Effects, key: PartitionKey, result: &Completion) {
    let Some(p) = st.topics.partition_mut(key) else { return };
    if p.truncation_stored(matches!(result, Completion::Done)) {
        let hwm = p.hwm();
        super::waiters::hwm_moved(st, fx, key, hwm);
    } else {
        let failures = p.resync_failures();
        fx.arm(Timer::Resync(key), st.now.mono + backoff(failures));
    }
}

#[cfg(test)]
mod tests {
    use super::{RESYNC_RETRY_MAX, backoff};
    use crate::time::Duration;

    #[test]
    fn the_pause_doubles_up_to_its_limit() {
        let ms: Vec<u64> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(backoff(u32::MAX), RESYNC_RETRY_MAX);
        assert_eq!(backoff(0), Duration::from_millis(100));
    }
}
