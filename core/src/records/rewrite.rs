//! In-place rewrites a broker makes to a batch on append: the base offset and partition
//! leader epoch (outside the CRC, so the CRC is left alone), and LogAppendTime (inside the
//! CRC, so the CRC is recomputed).
//!
//! Each function takes the bytes of one batch (a `&mut [u8]`; a `BytesMut` derefs to one)
//! and checks the framing first. Nothing here reads or moves records. [`stamped_header`]
//! makes the same rewrites on a copy of the header alone, leaving the records where they are.

use super::batch::{HEADER_LEN, at, frame, read};
use super::builder::put_at;
use super::{Attributes, RecordsError, TimestampType};

/// The batch at the start of `data`, checked to be a whole v2 batch.
fn batch(data: &mut [u8]) -> Result<&mut [u8], RecordsError> {
    let size = frame(data)?;
    data.get_mut(..size).ok_or(RecordsError::Truncated("record batch"))
}

/// Sets baseOffset. The CRC does not cover it, so the batch stays valid.
pub fn set_base_offset(data: &mut [u8], base_offset: i64) -> Result<(), RecordsError> {
    put_at(batch(data)?, at::BASE_OFFSET, &base_offset.to_be_bytes());
    Ok(())
}

/// Sets partitionLeaderEpoch. The CRC does not cover it, so the batch stays valid.
pub fn set_partition_leader_epoch(data: &mut [u8], epoch: i32) -> Result<(), RecordsError> {
    put_at(batch(data)?, at::PARTITION_LEADER_EPOCH, &epoch.to_be_bytes());
    Ok(())
}

/// Switches the batch to LogAppendTime with `now` as maxTimestamp (Kafka's
/// `setMaxTimestamp`), then recomputes the CRC, which covers both fields.
///
/// The CRC is checked before the rewrite, so a damaged batch is refused instead of being
/// given a fresh, valid checksum.
pub fn set_log_append_time(data: &mut [u8], now: i64) -> Result<(), RecordsError> {
    let batch = batch(data)?;
    let crc_of = |b: &[u8]| crc32c::crc32c(b.get(at::ATTRIBUTES..).unwrap_or_default());
    let stored = read::<4>(batch, at::CRC).map_or(0, u32::from_be_bytes);
    let computed = crc_of(batch);
    if stored != computed {
        return Err(RecordsError::CrcMismatch { stored, computed });
    }
    let attributes = Attributes(read::<2>(batch, at::ATTRIBUTES).map_or(0, i16::from_be_bytes));
    put_at(batch, at::ATTRIBUTES, &attributes.with_timestamp_type(TimestampType::LogAppendTime).0.to_be_bytes());
    put_at(batch, at::MAX_TIMESTAMP, &now.to_be_bytes());
    let crc = crc_of(batch);
    put_at(batch, at::CRC, &crc.to_be_bytes());
    Ok(())
}

/// The header of the one whole batch `data` as a broker stores it, without touching the
/// records: a copy of the first [`HEADER_LEN`] bytes with the base offset and partition leader
/// epoch set and, with `log_append_time`, LogAppendTime stamped as [`set_log_append_time`]
/// does (the CRC checked first, then recomputed over the new header and the records after
/// it). The stored batch is this header followed by `data[HEADER_LEN..]`.
///
/// # Errors
/// A framing error, `data` holding more or less than one batch, or a CRC mismatch.
pub fn stamped_header(
    data: &[u8],
    base_offset: i64,
    epoch: i32,
    log_append_time: Option<i64>,
) -> Result<[u8; HEADER_LEN], RecordsError> {
    if frame(data)? != data.len() {
        return Err(RecordsError::InvalidLength("not exactly one record batch"));
    }
    let (Some(header), Some(records)) = (data.first_chunk::<HEADER_LEN>(), data.get(HEADER_LEN..)) else {
        return Err(RecordsError::Truncated("record batch header"));
    };
    let mut header = *header;
    put_at(&mut header, at::BASE_OFFSET, &base_offset.to_be_bytes());
    put_at(&mut header, at::PARTITION_LEADER_EPOCH, &epoch.to_be_bytes());
    if let Some(now) = log_append_time {
        let crc_of = |h: &[u8; HEADER_LEN]| crc32c::crc32c_append(crc32c::crc32c(&h[at::ATTRIBUTES..]), records);
        let stored = read::<4>(&header, at::CRC).map_or(0, u32::from_be_bytes);
        let computed = crc_of(&header);
        if stored != computed {
            return Err(RecordsError::CrcMismatch { stored, computed });
        }
        let attributes = Attributes(read::<2>(&header, at::ATTRIBUTES).map_or(0, i16::from_be_bytes));
        let attributes = attributes.with_timestamp_type(TimestampType::LogAppendTime);
        put_at(&mut header, at::ATTRIBUTES, &attributes.0.to_be_bytes());
        put_at(&mut header, at::MAX_TIMESTAMP, &now.to_be_bytes());
        let crc = crc_of(&header);
        put_at(&mut header, at::CRC, &crc.to_be_bytes());
    }
    Ok(header)
}

/// Gives every batch in a record set consecutive offsets starting at `first_offset` (each
/// batch takes lastOffsetDelta + 1 of them) and returns the offset after the last batch.
/// A partial trailing batch is an error here: a produce request must be whole.
pub fn assign_offsets(records: &mut [u8], first_offset: i64) -> Result<i64, RecordsError> {
    let mut next = first_offset;
    let mut rest = records;
    while !rest.is_empty() {
        let size = frame(rest)?;
        let (batch, tail) = rest.split_at_mut(size);
        put_at(batch, at::BASE_OFFSET, &next.to_be_bytes());
        let delta = read::<4>(batch, at::LAST_OFFSET_DELTA).map_or(0, i32::from_be_bytes);
        next = next.wrapping_add(i64::from(delta)).wrapping_add(1);
        rest = tail;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Compression, RecordBatch, RecordBatchBuilder};
    use bytes::{Bytes, BytesMut};

    fn sample(codec: Compression, n: i32) -> BytesMut {
        let mut b = RecordBatchBuilder::new(codec);
        for i in 0..n {
            b.append(1_000 + i64::from(i), Some(b"key"), Some(b"value"), &[]).unwrap();
        }
        BytesMut::from(&b.build().unwrap()[..])
    }

    #[test]
    fn base_offset_and_epoch_rewrite_keep_the_crc() {
        for codec in Compression::ALL {
            let mut buf = sample(codec, 3);
            let crc_before = RecordBatch::new(Bytes::copy_from_slice(&buf)).unwrap().crc();
            set_base_offset(&mut buf, 1 << 40).unwrap();
            set_partition_leader_epoch(&mut buf, 12).unwrap();
            let b = RecordBatch::new(buf.freeze()).unwrap();
            assert_eq!((b.base_offset(), b.partition_leader_epoch(), b.crc()), (1 << 40, 12, crc_before));
            b.validate_full(1 << 20).unwrap();
            let offsets: Vec<_> = b.records(1 << 20).unwrap().iter().map(|r| r.unwrap().offset()).collect();
            assert_eq!(offsets, [1 << 40, (1 << 40) + 1, (1 << 40) + 2]);
        }
    }

    #[test]
    fn log_append_time_recomputes_the_crc() {
        let mut buf = sample(Compression::Zstd, 2);
        set_log_append_time(&mut buf, 9_999).unwrap();
        let b = RecordBatch::new(buf.clone().freeze()).unwrap();
        b.validate_full(1 << 20).unwrap();
        assert_eq!((b.timestamp_type(), b.max_timestamp()), (TimestampType::LogAppendTime, 9_999));
        assert!(b.records(1 << 20).unwrap().iter().all(|r| r.unwrap().timestamp() == 9_999));
        // A damaged batch is refused rather than re-signed.
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert!(matches!(set_log_append_time(&mut buf, 1), Err(RecordsError::CrcMismatch { .. })));
    }

    #[test]
    fn stamped_header_matches_the_in_place_rewrites() {
        for codec in Compression::ALL {
            for lat in [None, Some(9_999)] {
                let original = sample(codec, 3);
                let mut expected = original.clone();
                set_base_offset(&mut expected, 77).unwrap();
                set_partition_leader_epoch(&mut expected, 5).unwrap();
                if let Some(t) = lat {
                    set_log_append_time(&mut expected, t).unwrap();
                }
                let head = stamped_header(&original, 77, 5, lat).unwrap();
                let joined = [&head[..], &original[HEADER_LEN..]].concat();
                assert_eq!(joined, &expected[..], "{codec:?} {lat:?}");
                RecordBatch::new(Bytes::from(joined)).unwrap().validate_full(1 << 20).unwrap();
            }
        }
        let mut damaged = sample(Compression::None, 2);
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        assert!(stamped_header(&damaged, 1, 1, None).is_ok(), "the CRC does not cover what changes");
        assert!(matches!(stamped_header(&damaged, 1, 1, Some(1)), Err(RecordsError::CrcMismatch { .. })));
        let two = [&sample(Compression::None, 1)[..], &sample(Compression::None, 1)[..]].concat();
        assert!(stamped_header(&two, 1, 1, None).is_err());
        assert!(stamped_header(&two[..10], 1, 1, None).is_err());
    }

    #[test]
    fn assign_offsets_walks_the_set() {
        let mut set = sample(Compression::None, 3);
        set.extend_from_slice(&sample(Compression::Snappy, 2));
        assert_eq!(assign_offsets(&mut set, 100), Ok(105));
        let bases: Vec<_> = crate::records::Batches::new(set.freeze()).map(|b| b.unwrap().base_offset()).collect();
        assert_eq!(bases, [100, 103]);
    }

    #[test]
    fn short_or_legacy_input_is_refused() {
        let mut buf = sample(Compression::None, 1);
        let len = buf.len();
        assert!(set_base_offset(&mut buf[..len - 1], 1).is_err());
        buf[16] = 1;
        assert_eq!(set_base_offset(&mut buf, 1), Err(RecordsError::LegacyMagic(1)));
        assert!(set_log_append_time(&mut [0u8; 10], 1).is_err());
    }
}
