//! The transaction coordinator's table: every transactional id's metadata, whether a change
//! to it is being stored, and the offsets transactions have committed for groups but not yet
//! ended (TxnOffsetCommit before EndTxn).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::codec::{DecodeError, KStr, Reader, Writer};
use crate::group::CommittedOffset;
use crate::txn::TxnMeta;

/// One transactional id.
#[derive(Debug)]
pub(crate) struct TxnEntry {
    /// The metadata as stored.
    pub meta: TxnMeta,
    /// A change is being stored, or markers are being written: requests that would change
    /// the metadata get CONCURRENT_TRANSACTIONS until it is done.
    pub busy: bool,
    /// Its markers are all written and visible, but storing the completion failed: the
    /// coordinator's next look stores it again and writes no marker twice, then answers the
    /// EndTxn held here, if any.
    pub unstored: Option<Unstored>,
}

/// A transaction whose markers are all written and whose completion could not be stored.
#[derive(Debug)]
pub(crate) struct Unstored {
    /// The EndTxn to answer once the completion is stored.
    pub reply: Option<(crate::request::Req, crate::codec::generated::ResponseBody)>,
}

/// An offset a transaction commits for a group once it commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingOffset {
    /// The topic.
    pub topic: KStr,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub value: CommittedOffset,
}

/// Every transactional id and the transactional offsets not yet ended.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    /// Transactional id -> its entry (ordered: ListTransactions answers in a stable order).
    pub by_id: BTreeMap<KStr, TxnEntry>,
    /// (group, producer id) -> the offsets its open transaction commits for the group, the
    /// last per partition.
    pub pending: BTreeMap<(KStr, i64), Vec<PendingOffset>>,
    /// Transactional id -> requests of a transaction version 2 producer waiting for the id
    /// to be free, so that their partitions or group can join its transaction.
    pub waiting: BTreeMap<KStr, std::collections::VecDeque<crate::api::txn::Resume>>,
}

impl Transactions {
    /// Whether an open transaction holds an offset for `group`'s `topic`-`partition`
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub(crate) fn has_pending(&self, group: &KStr, topic: &KStr, partition: i32) -> bool {
        self.pending
            .iter()
            .filter(|((g, _), _)| g == group)
            .any(|(_, offsets)| offsets.iter().any(|o| o.partition == partition && &o.topic == topic))
    }

    /// Adds `offsets` to what producer `pid`'s transaction commits for `group` (a later offset
    /// for a partition replaces the earlier one). Returns everything it commits for the group.
    pub(crate) fn add_pending(&mut self, group: &KStr, pid: i64, offsets: Vec<PendingOffset>) -> &[PendingOffset] {
        let list = self.pending.entry((group.clone(), pid)).or_default();
        merge_pending(list, offsets);
        list
    }
}

/// Adds `offsets` to `list`, a later offset for a partition replacing the earlier one.
pub(crate) fn merge_pending(list: &mut Vec<PendingOffset>, offsets: impl IntoIterator<Item = PendingOffset>) {
    for o in offsets {
        match list.iter_mut().find(|x| x.partition == o.partition && x.topic == o.topic) {
            Some(x) => *x = o,
            None => list.push(o),
        }
    }
}

/// Where pending transactional offsets are stored: this prefix, the producer id (8 bytes),
/// then the group id.
pub(crate) const PENDING_PREFIX: &[u8] = b"kelp/txn-offsets/";

/// The storage key of producer `pid`'s pending offsets for `group`.
pub(crate) fn pending_key(group: &KStr, pid: i64) -> Bytes {
    let mut k = Vec::with_capacity(PENDING_PREFIX.len() + 8 + group.len());
    k.extend_from_slice(PENDING_PREFIX);
    k.extend_from_slice(&pid.to_be_bytes());
    k.extend_from_slice(group.as_str().as_bytes());
    Bytes::from(k)
}

/// The stored value of pending offsets.
pub(crate) fn encode_pending(offsets: &[PendingOffset]) -> Bytes {
    let mut w = Writer::contiguous(8 + offsets.len() * 48);
    w.i8(1);
    w.i32(i32::try_from(offsets.len()).unwrap_or(i32::MAX));
    for o in offsets {
        w.string(true, &o.topic);
        w.i32(o.partition);
        w.i64(o.value.offset);
        w.i32(o.value.leader_epoch);
        w.nullable_string(true, o.value.metadata.as_ref());
        w.i64(o.value.commit_timestamp);
    }
    w.into_bytes()
}

/// The group, producer id and pending offsets a stored key/value holds, if it is one.
pub(crate) fn decode_pending(k: &Bytes, v: &Bytes) -> Option<(KStr, i64, Vec<PendingOffset>)> {
    let rest = k.strip_prefix(PENDING_PREFIX)?;
    let pid = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let group = KStr::from(std::str::from_utf8(rest.get(8..)?).ok()?);
    let offsets = decode_pending_value(v).ok()?;
    Some((group, pid, offsets))
}

fn decode_pending_value(v: &Bytes) -> Result<Vec<PendingOffset>, DecodeError> {
    const CTX: &str = "stored transactional offsets";
    let mut r = Reader::new(v);
    if r.i8(CTX)? != 1 {
        return Err(DecodeError::LengthOutOfRange(CTX));
    }
    let n = usize::try_from(r.i32(CTX)?).map_err(|_| DecodeError::LengthOutOfRange(CTX))?;
    // Each entry is at least 26 bytes: check before allocating.
    if n.saturating_mul(26) > r.remaining() {
        return Err(DecodeError::LengthOutOfRange(CTX));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let topic = r.string(true, CTX)?;
        let partition = r.i32(CTX)?;
        let value = CommittedOffset {
            offset: r.i64(CTX)?,
            leader_epoch: r.i32(CTX)?,
            metadata: r.nullable_string(true, CTX)?,
            commit_timestamp: r.i64(CTX)?,
        };
        out.push(PendingOffset { topic, partition, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_offsets_round_trip_and_replace_per_partition() {
        let mut t = Transactions::default();
        let o = |p: i32, off: i64| PendingOffset {
            topic: KStr::from("in"),
            partition: p,
            value: CommittedOffset {
                offset: off,
                leader_epoch: -1,
                metadata: Some(KStr::from("")),
                commit_timestamp: 5,
            },
        };
        let g = KStr::from("g");
        t.add_pending(&g, 9, vec![o(0, 10), o(1, 20)]);
        let all = t.add_pending(&g, 9, vec![o(0, 15)]).to_vec();
        assert_eq!(all, vec![o(0, 15), o(1, 20)]);
        assert!(t.has_pending(&g, &KStr::from("in"), 1));
        assert!(!t.has_pending(&g, &KStr::from("in"), 2));
        let (k, v) = (pending_key(&g, 9), encode_pending(&all));
        assert_eq!(decode_pending(&k, &v), Some((g, 9, all)));
        assert_eq!(decode_pending(&k, &v.slice(..v.len() - 1)), None);
        let mut huge = v.to_vec();
        huge[1..5].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_pending(&k, &Bytes::from(huge)), None, "a count beyond the value is refused");
    }
}
