//! Recompression: a batch re-encoded with another codec, as a broker does on append when a
//! topic's `compression.type` differs from the producer's codec (Kafka's `LogValidator`).
//!
//! The records section is codec-independent: every record's key, value, headers, timestamp
//! delta and offset delta stay byte for byte. Only the section's compression, the codec bits
//! of the attributes, batchLength and the CRC change; the header keeps its producer id, epoch
//! and base sequence (so idempotent retries are still recognised), the transactional and
//! control bits, the timestamp type and both timestamps. Base offset and leader epoch are
//! left for the broker's [`super::rewrite`] to set, before or after.

use bytes::Bytes;

use super::batch::{HEADER_LEN, LOG_OVERHEAD, at};
use super::builder::put_at;
use super::{BatchRecords, Compression, RecordBatch, RecordsError, compression};

/// `batch` with its records compressed with `to` at `level` (see
/// [`compression::compress_level`]; `None` is the codec's default).
///
/// The batch is checked first (CRC and header, then every record, decompressing into at most
/// `max_decompressed` bytes), so a damaged batch is refused rather than given a fresh CRC.
pub fn recompress(
    batch: &RecordBatch,
    to: Compression,
    level: Option<i32>,
    max_decompressed: usize,
) -> Result<Bytes, RecordsError> {
    batch.validate()?;
    let records = batch.records(max_decompressed)?;
    records.validate()?;
    recompress_records(batch, &records, to, level)
}

/// [`recompress`] for a batch already checked, given its decompressed `records` (which must be
/// `batch.records(..)`).
fn recompress_records(
    batch: &RecordBatch,
    records: &BatchRecords,
    to: Compression,
    level: Option<i32>,
) -> Result<Bytes, RecordsError> {
    let section = records.data();
    let header = batch.as_bytes().get(..HEADER_LEN).ok_or(RecordsError::Truncated("record batch header"))?;
    let guess = if to == Compression::None { section.len() } else { section.len() / 2 };
    let mut out = Vec::with_capacity(HEADER_LEN + guess);
    out.extend_from_slice(header);
    compression::compress_level(to, level, section, &mut out)?;
    let batch_length =
        i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| RecordsError::Unencodable("batch longer than i32::MAX"))?;
    put_at(&mut out, at::BATCH_LENGTH, &batch_length.to_be_bytes());
    put_at(&mut out, at::ATTRIBUTES, &batch.attributes().with_compression(to).0.to_be_bytes());
    let crc = crc32c::crc32c(out.get(at::ATTRIBUTES..).unwrap_or_default());
    put_at(&mut out, at::CRC, &crc.to_be_bytes());
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Header, OwnedRecord, RecordBatchBuilder, TimestampType, rewrite};
    use bytes::BytesMut;

    const LIMIT: usize = 1 << 20;

    fn sample(codec: Compression) -> RecordBatchBuilder {
        let mut b = RecordBatchBuilder::new(codec).producer(4242, 7, 1_000);
        for i in 0..20u8 {
            let key = (i % 3 != 0).then(|| vec![b'k', i]);
            let value = (i % 5 != 0).then(|| vec![i; 100]);
            let headers = [Header::new(format!("h{i}"), Some(Bytes::from(vec![i; 3]))), Header::new("null", None)];
            b.append(1_700_000_000_000 + i64::from(i) * 3, key.as_deref(), value.as_deref(), &headers).unwrap();
        }
        b
    }

    fn owned(batch: &RecordBatch) -> Vec<OwnedRecord> {
        let recs = batch.records(LIMIT).unwrap();
        recs.iter().map(|r| r.unwrap().to_owned_record().unwrap()).collect()
    }

    /// Every header field but the codec, the length and the CRC.
    fn kept_fields(b: &RecordBatch) -> [i64; 12] {
        [
            b.base_offset(),
            b.partition_leader_epoch().into(),
            b.last_offset_delta().into(),
            b.base_timestamp(),
            b.max_timestamp(),
            b.producer_id(),
            b.producer_epoch().into(),
            b.base_sequence().into(),
            b.records_count().into(),
            i64::from(b.timestamp_type() == TimestampType::LogAppendTime),
            i64::from(b.is_transactional()),
            i64::from(b.is_control()),
        ]
    }

    #[test]
    fn every_codec_pair_round_trips_keeping_records_and_header() {
        for from in Compression::ALL {
            let original = RecordBatch::new(sample(from).build().unwrap()).unwrap();
            for to in Compression::ALL {
                let out = RecordBatch::new(recompress(&original, to, None, LIMIT).unwrap()).unwrap();
                out.validate_full(LIMIT).unwrap();
                assert_eq!(out.compression(), Ok(to), "{from} -> {to}");
                assert_eq!(kept_fields(&out), kept_fields(&original), "{from} -> {to}");
                assert_eq!(owned(&out), owned(&original), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn flags_and_log_append_time_survive() {
        let b = sample(Compression::Snappy).transactional(true).log_append_time(1_800_000_000_000);
        let original = RecordBatch::new(b.build().unwrap()).unwrap();
        let out = RecordBatch::new(recompress(&original, Compression::Zstd, Some(10), LIMIT).unwrap()).unwrap();
        out.validate_full(LIMIT).unwrap();
        assert!(out.is_transactional() && !out.is_control());
        assert_eq!((out.timestamp_type(), out.max_timestamp()), (TimestampType::LogAppendTime, 1_800_000_000_000));
        // The broker's stamps still apply to a recompressed batch.
        let mut data = BytesMut::from(&out.as_bytes()[..]);
        rewrite::set_base_offset(&mut data, 900).unwrap();
        rewrite::set_log_append_time(&mut data, 1_900_000_000_000).unwrap();
        let stamped = RecordBatch::new(data.freeze()).unwrap();
        stamped.validate_full(LIMIT).unwrap();
        let offsets: Vec<_> = stamped.records(LIMIT).unwrap().iter().map(|r| r.unwrap().offset()).collect();
        assert_eq!(offsets, (900..920).collect::<Vec<_>>());
    }

    #[test]
    fn levels_apply() {
        let original = RecordBatch::new(sample(Compression::None).build().unwrap()).unwrap();
        let size = |level| recompress(&original, Compression::Gzip, Some(level), LIMIT).unwrap().len();
        assert!(size(9) <= size(1));
        let bad = recompress(&original, Compression::Gzip, Some(11), LIMIT);
        assert!(matches!(bad, Err(RecordsError::Unencodable(_))));
    }

    #[test]
    fn damaged_or_oversized_batches_are_refused() {
        let good = sample(Compression::Lz4).build().unwrap();
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let bad = RecordBatch::new(Bytes::from(bad)).unwrap();
        assert!(matches!(recompress(&bad, Compression::Zstd, None, LIMIT), Err(RecordsError::CrcMismatch { .. })));
        let good = RecordBatch::new(good).unwrap();
        let small = recompress(&good, Compression::Zstd, None, 100);
        assert_eq!(small, Err(RecordsError::DecompressedTooLarge { limit: 100 }));
    }
}
