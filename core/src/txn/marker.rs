//! Transaction markers: the control batch that ends a transaction in a partition.
//!
//! A marker is a batch of one control record, with the transaction's producer id and epoch,
//! base sequence -1, and the transactional and control attribute bits set. Its record's key
//! is the control record type (version 0 as i16, then 0 for ABORT or 1 for COMMIT, as i16) and
//! its value the end-transaction marker (version 0 as i16, then the coordinator epoch as
//! i32), both big-endian: what Kafka writes and what every client's consumer skips.

use bytes::Bytes;

use crate::records::{Compression, RecordBatch, RecordBatchBuilder};

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkerKind {
    /// The transaction's records are dropped by read_committed consumers.
    Abort,
    /// The transaction's records are visible.
    Commit,
}

impl MarkerKind {
    const fn type_code(self) -> i16 {
        match self {
            Self::Abort => 0,
            Self::Commit => 1,
        }
    }
}

/// A marker's key: control record version 0 and the marker type.
fn marker_key(kind: MarkerKind) -> [u8; 4] {
    let mut k = [0u8; 4];
    k[2..].copy_from_slice(&kind.type_code().to_be_bytes());
    k
}

/// A marker's value: version 0 and the coordinator epoch.
fn marker_value(coordinator_epoch: i32) -> [u8; 6] {
    let mut v = [0u8; 6];
    v[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    v
}

/// The control batch ending producer `(producer_id, epoch)`'s transaction in a partition, at
/// offset `base_offset` with leader epoch `leader_epoch`, stamped `timestamp_ms`.
#[must_use]
pub fn control_batch(
    kind: MarkerKind,
    (producer_id, epoch): (i64, i16),
    base_offset: i64,
    leader_epoch: i32,
    timestamp_ms: i64,
) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None)
        .base_offset(base_offset)
        .partition_leader_epoch(leader_epoch)
        .producer(producer_id, epoch, -1)
        .transactional(true)
        .control(true);
    let (key, value) = (marker_key(kind), marker_value(0));
    // One small record always fits a batch: neither call can fail.
    b.append(timestamp_ms, Some(&key), Some(&value), &[]).expect("a marker record fits a batch");
    b.build().expect("a marker batch encodes")
}

/// The kind of marker a control batch holds, or `None` if it is not a well-formed marker (a
/// control batch of another type, or damaged).
#[must_use]
pub fn parse_marker(batch: &RecordBatch) -> Option<MarkerKind> {
    if !batch.is_control() {
        return None;
    }
    let records = batch.records(1 << 10).ok()?;
    let record = records.iter().next()?.ok()?;
    let key = record.key_slice()?;
    match key.get(..4)? {
        [0, 0, 0, 0] => Some(MarkerKind::Abort),
        [0, 0, 0, 1] => Some(MarkerKind::Commit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_a_transactional_control_batch_of_one_record() {
        for kind in [MarkerKind::Abort, MarkerKind::Commit] {
            let bytes = control_batch(kind, (42, 3), 17, 2, 1_700_000_000_000);
            let b = RecordBatch::new(bytes).unwrap();
            b.validate_full(1 << 10).unwrap();
            assert!(b.is_transactional() && b.is_control());
            assert_eq!((b.base_offset(), b.last_offset(), b.partition_leader_epoch()), (17, 17, 2));
            assert_eq!((b.producer_id(), b.producer_epoch(), b.base_sequence()), (42, 3, -1));
            assert_eq!(b.max_timestamp(), 1_700_000_000_000);
            assert_eq!(parse_marker(&b), Some(kind));
            let records = b.records(1 << 10).unwrap();
            let r = records.iter().next().unwrap().unwrap();
            let want_key = [0, 0, 0, u8::from(kind == MarkerKind::Commit)];
            assert_eq!(r.key_slice(), Some(&want_key[..]));
            assert_eq!(r.value_slice(), Some(&[0u8, 0, 0, 0, 0, 0][..]), "version 0, coordinator epoch 0");
        }
    }

    #[test]
    fn a_data_batch_is_no_marker() {
        let mut b = RecordBatchBuilder::new(Compression::None).producer(1, 0, 0).transactional(true);
        b.append(0, Some(&[0, 0, 0, 1]), None, &[]).unwrap();
        assert_eq!(parse_marker(&RecordBatch::new(b.build().unwrap()).unwrap()), None);
    }
}
