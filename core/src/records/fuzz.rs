//! The body of the `record_batch` fuzz target (re-exported as `kelp_core::fuzzing`), compiled
//! by every build so it cannot rot.
//!
//! It decodes arbitrary bytes as a record set, validates, decompresses (bounded), iterates
//! every record and header, and checks that a batch rebuilt from the decoded records decodes
//! to the same records. Decoding must never panic; the round trip panics only if kelp's own
//! builder and parser disagree.

use bytes::Bytes;

use super::batch::{at, frame};
use super::builder::put_at;
use super::{Batches, OwnedRecord, RecordBatch, RecordBatchBuilder, TimestampType};

/// The decompression limit the fuzz body uses: big enough for real batches, small enough that
/// a bomb fails fast.
pub const MAX_DECOMPRESSED: usize = 1 << 20;

/// Decodes `data` as a record set and exercises everything; see the module docs.
pub fn record_batch(data: &[u8]) {
    check_set(Bytes::copy_from_slice(data));
    // Fuzzers rarely guess a CRC32C: try again with every batch's CRC made right, so the
    // record decoder sees the input too.
    check_set(with_fixed_crcs(data));
}

fn check_set(set: Bytes) {
    for batch in Batches::new(set) {
        match batch {
            Ok(batch) => check_batch(&batch),
            Err(_) => return,
        }
    }
}

fn check_batch(batch: &RecordBatch) {
    let header_ok = batch.validate().is_ok();
    let full_ok = batch.validate_full(MAX_DECOMPRESSED).is_ok();
    assert!(header_ok || !full_ok, "validate_full passed where validate failed");
    let Ok(records) = batch.records(MAX_DECOMPRESSED) else {
        assert!(!full_ok, "validate_full passed but records() failed");
        return;
    };
    let mut owned = Vec::new();
    for record in &records {
        let Ok(record) = record else { break };
        let _ = (record.offset(), record.timestamp(), record.key(), record.value_slice());
        match record.to_owned_record() {
            Ok(o) => owned.push(o),
            Err(_) => assert!(!full_ok, "validate_full passed but a header failed"),
        }
    }
    if full_ok {
        round_trip(batch, &owned);
    }
}

/// Rebuilds `batch` from its decoded records and checks the copy decodes to the same.
fn round_trip(batch: &RecordBatch, owned: &[OwnedRecord]) {
    let Ok(codec) = batch.compression() else { panic!("a validated batch has a known codec") };
    let mut builder = RecordBatchBuilder::new(codec)
        .base_offset(batch.base_offset())
        .partition_leader_epoch(batch.partition_leader_epoch())
        .producer(batch.producer_id(), batch.producer_epoch(), batch.base_sequence())
        .transactional(batch.is_transactional())
        .control(batch.is_control());
    if batch.timestamp_type() == TimestampType::LogAppendTime {
        builder = builder.log_append_time(batch.max_timestamp());
    }
    for record in owned {
        let pushed = builder.push(record);
        assert!(pushed.is_ok(), "builder refused a validated record: {pushed:?}");
    }
    let rebuilt = builder.build().and_then(RecordBatch::new);
    let Ok(rebuilt) = rebuilt else { panic!("rebuilt batch does not parse: {rebuilt:?}") };
    let valid = rebuilt.validate_full(MAX_DECOMPRESSED);
    assert!(valid.is_ok(), "rebuilt batch does not validate: {valid:?}");
    let Ok(records) = rebuilt.records(MAX_DECOMPRESSED) else { panic!("rebuilt batch does not decompress") };
    let again: Result<Vec<_>, _> = records.iter().map(|r| r.and_then(|r| r.to_owned_record())).collect();
    assert_eq!(again.as_deref(), Ok(owned), "round trip changed the records");
    assert_eq!(rebuilt.records_count(), batch.records_count());
}

/// A copy of `data` in which every framed batch carries the right CRC32C.
pub(crate) fn with_fixed_crcs(data: &[u8]) -> Bytes {
    let mut out = data.to_vec();
    let mut pos = 0;
    while let Some(rest) = out.get_mut(pos..) {
        let Ok(size) = frame(rest) else { break };
        let batch = &mut rest[..size];
        let crc = crc32c::crc32c(batch.get(at::ATTRIBUTES..).unwrap_or_default());
        put_at(batch, at::CRC, &crc.to_be_bytes());
        pos += size;
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Compression, Header};

    #[test]
    fn survives_garbage_and_round_trips_real_batches() {
        record_batch(&[]);
        record_batch(&[0; 100]);
        record_batch(&[0xff; 100]);
        for codec in Compression::ALL {
            let mut b = RecordBatchBuilder::new(codec);
            b.append(1, Some(b"k"), None, &[Header::new("h", None), Header::new("h", Some(Bytes::new()))]).unwrap();
            b.append(-5, None, Some(b"v"), &[]).unwrap();
            let bytes = b.build().unwrap();
            record_batch(&bytes);
            for cut in 0..bytes.len() {
                record_batch(&bytes[..cut]);
            }
        }
    }
}
