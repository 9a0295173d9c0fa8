//! Partition re-synchronisation: after an append whose outcome is unknown, the partition
//! refuses appends (produce answers NOT_LEADER_OR_FOLLOWER, which clients retry), asks the
//! store where the partition really ends ([`Command::RecoverPartition`]) once nothing is in
//! flight, and adopts the answer ([`crate::log::PartitionLog::adopt`]). A failed or
//! unacceptable answer is asked for again after [`RESYNC_RETRY`].

use crate::broker::{Broker, CmdOwner, Timer};
use crate::io::{Command, Completion, PartitionKey};

/// How long to wait before asking the store for a partition's end again after it failed.
const RESYNC_RETRY: crate::time::Duration = crate::time::Duration::from_millis(100);

/// Sends [`Command::RecoverPartition`] for `key` if the partition wants it now.
pub(crate) fn ask(b: &mut Broker, key: PartitionKey) {
    let Some(p) = b.partition_mut(key) else { return };
    if p.take_resync_request() {
        let from = p.hwm();
        b.storage(CmdOwner::Resync(key), Command::RecoverPartition { partition: key, from });
    }
}

/// The store answered [`Command::RecoverPartition`] for `key`.
pub(crate) fn done(b: &mut Broker, key: PartitionKey, result: Completion) {
    let Some(p) = b.partition_mut(key) else { return };
    let adopted = match &result {
        // An end below the high watermark would lose acknowledged records: not adopted, asked
        // again (a SeaweedMQ broker that has just restarted reports 0 until it has loaded the
        // partition).
        Completion::Partition(extent) => p.adopt(extent),
        other => {
            debug_assert!(matches!(other, Completion::Failed(_)), "RecoverPartition answered with {other:?}");
            p.resync_failed();
            Err(crate::log::EndBelowHighWatermark)
        }
    };
    match adopted {
        Ok(Some(hwm)) => b.hwm_moved(key, hwm),
        Ok(None) => {}
        Err(_) => b.timers.arm(Timer::Resync(key), b.now.mono + RESYNC_RETRY),
    }
}
