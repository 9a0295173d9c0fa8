//! The store's start-up recovery: topics, partition extents, producer ids and groups are
//! rebuilt from what the store reports, and the timers they need are armed.

use super::{Effects, Timer};
use crate::io::Completion;
use crate::log::PartitionLog;
use crate::state::{State, Topic};
use crate::time::Duration;

/// How long to wait before asking a store that failed to recover again: a store that answers
/// at once (an outage) must not be asked in a tight loop.
const RECOVER_RETRY: Duration = Duration::from_millis(100);

/// The store answered `Command::Recover`. Returns whether the state is recovered (else
/// recovery is asked for again shortly: a store that is starting up answers Unavailable
/// until it is ready).
pub(crate) fn recovered(st: &mut State, fx: &mut Effects, result: Completion) -> bool {
    let Completion::Recovered(rec) = result else {
        fx.arm(Timer::RecoverRetry, st.now.mono + RECOVER_RETRY);
        return false;
    };
    for t in &rec.topics {
        st.topics.insert(Topic::new(&st.cfg, t.name.clone(), t.id, t.configs.clone(), t.partitions, false));
    }
    for (key, extent) in &rec.partitions {
        if let Some(p) = st.topics.partition_mut(*key) {
            *p = PartitionLog::recovered(*key, extent);
        }
    }
    for (k, v) in &rec.values {
        if let Some((key, epochs)) = crate::log::decode_epochs(k, v)
            && let Some(p) = st.topics.partition_mut(key)
        {
            p.set_epochs(epochs);
        }
    }
    st.producer_ids.recover(&rec.values, st.topics.visible());
    let (groups, timers, consumer_timers) = crate::group::Groups::recover(&rec.values, st.now.mono, &st.cfg);
    st.groups = groups;
    super::consumer::resolve_recovered(st);
    for (t, at) in timers {
        fx.arm(Timer::Group(t), at);
    }
    for (t, at) in consumer_timers {
        fx.arm(Timer::Consumer(t), at);
    }
    recover_transactions(st, fx, &rec.values);
    st.credentials.recover(&rec.values);
    st.authz.acls.recover(&rec.values);
    super::retention::arm(st, fx);
    super::cleaning::arm(st, fx);
    true
}

/// Rebuilds the transaction coordinator and the partitions' transactions: every transactional
/// id's metadata, the transactions still open in each partition (from the bound stored when
/// the partition joined), the aborted ranges, and the offsets open transactions commit for
/// groups. Transactions that were preparing write their markers again.
fn recover_transactions(st: &mut State, fx: &mut Effects, values: &[(bytes::Bytes, bytes::Bytes)]) {
    use crate::state::transactions::{TxnEntry, decode_pending};
    use crate::txn::TxnState;
    let mut preparing = Vec::new();
    for (k, v) in values {
        if let Some(meta) = crate::txn::coordinator::decode(k, v) {
            if matches!(meta.state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort) {
                for (key, bound) in &meta.partitions {
                    if let Some(p) = st.topics.partition_mut(*key) {
                        p.txns.recover_open(meta.producer_id, (*bound).min(p.next_offset()));
                    }
                }
            }
            if meta.state.is_preparing() {
                preparing.push(meta.id.clone());
            }
            st.txns.by_id.insert(meta.id.clone(), TxnEntry { meta, busy: false, unstored: None });
        } else if let Some((key, a)) = crate::txn::partition::decode_aborted(k, v) {
            if let Some(p) = st.topics.partition_mut(key)
                && a.last_offset < p.next_offset()
                && a.last_offset >= p.log_start()
            {
                p.txns.remember_aborted(a);
            }
        } else if let Some((group, pid, offsets)) = decode_pending(k, v) {
            st.txns.pending.insert((group, pid), offsets);
        }
    }
    // Pending offsets count only for a transaction still open (or ending) with their group: a
    // late write after the transaction ended is dropped.
    let by_id = &st.txns.by_id;
    st.txns.pending.retain(|(group, pid), _| {
        by_id.values().any(|e| {
            e.meta.producer_id == *pid
                && matches!(e.meta.state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort)
                && e.meta.groups.contains(group)
        })
    });
    for id in preparing {
        super::txn::start_markers(st, fx, &id, None);
    }
    super::txn::arm(st, fx);
}
