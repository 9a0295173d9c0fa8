//! One RecordBatch v2 as a zero-copy view: framing, typed header getters, header + CRC
//! validation, and the way into its records.
//!
//! Header layout (Kafka's `DefaultRecordBatch`, offsets in bytes):
//! ```text
//!  0 baseOffset i64        8 batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32             21 attributes i16
//! 23 lastOffsetDelta i32  27 baseTimestamp i64   35 maxTimestamp i64
//! 43 producerId i64       51 producerEpoch i16   53 baseSequence i32
//! 57 recordsCount i32     61 records...
//! ```
//! batchLength counts from partitionLeaderEpoch to the end; the CRC32C covers attributes to
//! the end, so baseOffset and partitionLeaderEpoch can be rewritten without touching it.
//! This module reads; it never writes into a batch (see `rewrite`).

use core::fmt;

use bytes::Bytes;

use super::record::BatchRecords;
use super::{Attributes, Compression, RecordsError, TimestampType, compression};

/// Byte offsets of the header fields.
pub(super) mod at {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORDS_COUNT: usize = 57;
    pub const RECORDS: usize = 61;
}

/// baseOffset and batchLength: the bytes in front of what batchLength counts.
pub const LOG_OVERHEAD: usize = 12;
/// The size of a v2 batch header, i.e. of a batch with no records.
pub const HEADER_LEN: usize = at::RECORDS;
/// The smallest batchLength a v2 batch can have.
pub const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;
/// The record batch format kelp reads and writes.
pub const MAGIC_V2: i8 = 2;

/// The maxTimestamp field of the v2 batch header at the start of `data` (the header alone
/// will do), if `data` is long enough to hold it. Nothing else is checked.
#[must_use]
pub fn header_max_timestamp(data: &[u8]) -> Option<i64> {
    read::<8>(data, at::MAX_TIMESTAMP).map(i64::from_be_bytes)
}

/// Checks the framing of the batch at the start of `data` and returns its total size.
///
/// The order of checks lets a fetch response end in a partial batch: a batch that would
/// run past the end is [`RecordsError::Truncated`], while a negative or too-small length and
/// a magic other than 2 are errors even when the batch is incomplete.
pub fn frame(data: &[u8]) -> Result<usize, RecordsError> {
    let Some(len) = read::<4>(data, at::BATCH_LENGTH) else {
        return Err(RecordsError::Truncated("record batch length"));
    };
    let len =
        usize::try_from(i32::from_be_bytes(len)).map_err(|_| RecordsError::InvalidLength("negative batch length"))?;
    match data.get(at::MAGIC).map(|&m| m as i8) {
        None => return Err(RecordsError::Truncated("record batch magic")),
        Some(MAGIC_V2) => {}
        Some(m @ (0 | 1)) => return Err(RecordsError::LegacyMagic(m)),
        Some(m) => return Err(RecordsError::UnknownMagic(m)),
    }
    if len < MIN_BATCH_LENGTH {
        return Err(RecordsError::InvalidLength("batch length below the v2 header size"));
    }
    let size = LOG_OVERHEAD + len;
    if size > data.len() {
        return Err(RecordsError::Truncated("record batch"));
    }
    Ok(size)
}

/// `N` bytes at `pos`, if they are there.
pub(super) fn read<const N: usize>(data: &[u8], pos: usize) -> Option<[u8; N]> {
    data.get(pos..)?.first_chunk::<N>().copied()
}

/// One v2 record batch over shared bytes. Creating one checks only the framing (magic 2,
/// a length that fits); call [`RecordBatch::validate`] before trusting the contents.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// Exactly one batch: `LOG_OVERHEAD + batchLength` bytes, at least `HEADER_LEN`.
    buf: Bytes,
}

impl RecordBatch {
    /// Wraps `buf`, which must hold exactly one batch.
    pub fn new(buf: Bytes) -> Result<Self, RecordsError> {
        let size = frame(&buf)?;
        if size != buf.len() {
            return Err(RecordsError::InvalidLength("bytes after the record batch"));
        }
        Ok(Self { buf })
    }

    /// Splits the first batch off `buf`, leaving the rest in `buf`.
    pub fn split_first(buf: &mut Bytes) -> Result<Self, RecordsError> {
        let size = frame(buf)?;
        Ok(Self { buf: buf.split_to(size) })
    }

    fn field<const N: usize>(&self, pos: usize) -> [u8; N] {
        // In range by construction (the batch is at least HEADER_LEN long).
        read(&self.buf, pos).unwrap_or([0; N])
    }

    /// The whole batch as it is on the wire.
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The whole batch, giving up the view.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.buf
    }

    /// Size of the batch on the wire, `LOG_OVERHEAD + batchLength`.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false: a batch holds at least its header. (For clippy's `len_without_is_empty`.)
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The offset of the first record (assigned by the broker on append).
    #[must_use]
    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(self.field(at::BASE_OFFSET))
    }

    /// batchLength: bytes from partitionLeaderEpoch to the end.
    #[must_use]
    pub fn batch_length(&self) -> i32 {
        i32::from_be_bytes(self.field(at::BATCH_LENGTH))
    }

    /// The leader epoch of the partition leader that appended the batch.
    #[must_use]
    pub fn partition_leader_epoch(&self) -> i32 {
        i32::from_be_bytes(self.field(at::PARTITION_LEADER_EPOCH))
    }

    /// The magic byte (always 2 for a constructed view).
    #[must_use]
    pub fn magic(&self) -> i8 {
        i8::from_be_bytes(self.field(at::MAGIC))
    }

    /// The CRC32C stored in the header.
    #[must_use]
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.field(at::CRC))
    }

    /// The CRC32C of the bytes the stored CRC covers (attributes to the end).
    #[must_use]
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(self.buf.get(at::ATTRIBUTES..).unwrap_or_default())
    }

    /// The raw attributes.
    #[must_use]
    pub fn attributes(&self) -> Attributes {
        Attributes(i16::from_be_bytes(self.field(at::ATTRIBUTES)))
    }

    /// The compression codec; ids 5-7 are an error.
    pub fn compression(&self) -> Result<Compression, RecordsError> {
        self.attributes().compression()
    }

    /// The timestamp type.
    #[must_use]
    pub fn timestamp_type(&self) -> TimestampType {
        self.attributes().timestamp_type()
    }

    /// Whether the batch belongs to a transaction.
    #[must_use]
    pub fn is_transactional(&self) -> bool {
        self.attributes().is_transactional()
    }

    /// Whether the batch holds control records.
    #[must_use]
    pub fn is_control(&self) -> bool {
        self.attributes().is_control()
    }

    /// The last record's offset minus baseOffset.
    #[must_use]
    pub fn last_offset_delta(&self) -> i32 {
        i32::from_be_bytes(self.field(at::LAST_OFFSET_DELTA))
    }

    /// The offset of the last record: baseOffset + lastOffsetDelta.
    #[must_use]
    pub fn last_offset(&self) -> i64 {
        self.base_offset().wrapping_add(i64::from(self.last_offset_delta()))
    }

    /// The offset after this batch, where the next batch starts.
    #[must_use]
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The timestamp record timestamp deltas are relative to (or the delete horizon).
    #[must_use]
    pub fn base_timestamp(&self) -> i64 {
        i64::from_be_bytes(self.field(at::BASE_TIMESTAMP))
    }

    /// The largest record timestamp, or the append time under LogAppendTime.
    #[must_use]
    pub fn max_timestamp(&self) -> i64 {
        i64::from_be_bytes(self.field(at::MAX_TIMESTAMP))
    }

    /// The producer id, -1 for none.
    #[must_use]
    pub fn producer_id(&self) -> i64 {
        i64::from_be_bytes(self.field(at::PRODUCER_ID))
    }

    /// The producer epoch, -1 for none.
    #[must_use]
    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes(self.field(at::PRODUCER_EPOCH))
    }

    /// The first record's sequence number, -1 for none.
    #[must_use]
    pub fn base_sequence(&self) -> i32 {
        i32::from_be_bytes(self.field(at::BASE_SEQUENCE))
    }

    /// recordsCount as stored (may be negative in a hostile batch; `validate` rejects that).
    #[must_use]
    pub fn records_count(&self) -> i32 {
        i32::from_be_bytes(self.field(at::RECORDS_COUNT))
    }

    /// The records section as stored (compressed when the batch is).
    #[must_use]
    pub fn records_section(&self) -> Bytes {
        self.buf.slice(at::RECORDS..)
    }

    /// The checks a broker makes on a produced batch before looking at records: CRC32C,
    /// compression id, recordsCount >= 0 and lastOffsetDelta == recordsCount - 1. Does not
    /// decompress or decode records; the cost is one CRC32C pass over the batch.
    /// (Magic and batch length were checked when the view was made.)
    pub fn validate(&self) -> Result<(), RecordsError> {
        let (stored, computed) = (self.crc(), self.compute_crc());
        if stored != computed {
            return Err(RecordsError::CrcMismatch { stored, computed });
        }
        self.validate_fields()
    }

    /// The header checks of [`RecordBatch::validate`] without the CRC.
    pub fn validate_fields(&self) -> Result<(), RecordsError> {
        self.compression()?;
        let count = self.records_count();
        if count < 0 {
            return Err(RecordsError::InvalidBatch("negative recordsCount"));
        }
        if count > 0 && i64::from(self.last_offset_delta()) != i64::from(count) - 1 {
            return Err(RecordsError::InvalidBatch("lastOffsetDelta is not recordsCount - 1"));
        }
        Ok(())
    }

    /// [`RecordBatch::validate`], then decompress (at most `max_decompressed` bytes) and walk
    /// every record and header: each record's length matches its fields, offset deltas rise
    /// strictly within `0..=lastOffsetDelta`, exactly recordsCount records fill the section.
    pub fn validate_full(&self, max_decompressed: usize) -> Result<(), RecordsError> {
        self.validate()?;
        self.records(max_decompressed)?.validate()
    }

    /// The records, decompressed if needed (into at most `max_decompressed` bytes; an
    /// uncompressed section is shared, not copied, and needs no limit).
    pub fn records(&self, max_decompressed: usize) -> Result<BatchRecords, RecordsError> {
        let codec = self.compression()?;
        let count =
            u32::try_from(self.records_count()).map_err(|_| RecordsError::InvalidBatch("negative recordsCount"))?;
        let data = match codec {
            Compression::None => self.records_section(),
            codec => {
                let section = self.buf.get(at::RECORDS..).unwrap_or_default();
                Bytes::from(compression::decompress(codec, section, max_decompressed)?)
            }
        };
        Ok(BatchRecords::new(data, count, self))
    }
}

impl fmt::Debug for RecordBatch {
    /// Header fields only: payload bytes are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("batch_length", &self.batch_length())
            .field("partition_leader_epoch", &self.partition_leader_epoch())
            .field("crc", &self.crc())
            .field("attributes", &self.attributes())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("base_timestamp", &self.base_timestamp())
            .field("max_timestamp", &self.max_timestamp())
            .field("producer_id", &self.producer_id())
            .field("producer_epoch", &self.producer_epoch())
            .field("base_sequence", &self.base_sequence())
            .field("records_count", &self.records_count())
            .finish()
    }
}

/// The batches of a record set (a ProduceRequest partition's `records`, a FetchResponse
/// partition's `records`): concatenated v2 batches, the last of which may be cut short.
///
/// Yields each batch in turn. On the first error it yields that error and then stops; a
/// partial trailing batch is [`RecordsError::Truncated`], so a fetch consumer can drop it
/// while a produce handler rejects it.
#[derive(Clone, Debug)]
pub struct Batches {
    rest: Bytes,
    consumed: usize,
    failed: bool,
}

impl Batches {
    /// Iterates the batches in `records`.
    #[must_use]
    pub fn new(records: Bytes) -> Self {
        Self { rest: records, consumed: 0, failed: false }
    }

    /// Bytes taken by the batches yielded so far (where the next one starts).
    #[must_use]
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The bytes not yet yielded (after an error: the batch that failed and what follows).
    #[must_use]
    pub fn remaining(&self) -> &Bytes {
        &self.rest
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match RecordBatch::split_first(&mut self.rest) {
            Ok(batch) => {
                self.consumed += batch.len();
                Some(Ok(batch))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl core::iter::FusedIterator for Batches {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RecordBatchBuilder;

    fn sample(n: i32, codec: Compression) -> Bytes {
        let mut b = RecordBatchBuilder::new(codec).base_offset(100).producer(7, 1, 0);
        for i in 0..n {
            b.push_parts(i, 1_000 + i64::from(i), Some(b"k"), Some(&[i as u8; 40]), &[]).unwrap();
        }
        b.build().unwrap()
    }

    fn patch(bytes: &Bytes, pos: usize, with: &[u8]) -> Bytes {
        let mut v = bytes.to_vec();
        v[pos..pos + with.len()].copy_from_slice(with);
        Bytes::from(v)
    }

    #[test]
    fn header_getters_read_the_layout() {
        let b = RecordBatch::new(sample(3, Compression::None)).unwrap();
        assert_eq!(b.base_offset(), 100);
        assert_eq!(b.magic(), 2);
        assert_eq!(b.batch_length() as usize + LOG_OVERHEAD, b.len());
        assert_eq!(b.last_offset_delta(), 2);
        assert_eq!((b.last_offset(), b.next_offset()), (102, 103));
        assert_eq!((b.base_timestamp(), b.max_timestamp()), (1_000, 1_002));
        assert_eq!((b.producer_id(), b.producer_epoch(), b.base_sequence()), (7, 1, 0));
        assert_eq!(b.records_count(), 3);
        assert_eq!(b.crc(), b.compute_crc());
        assert!(!format!("{b:?}").is_empty());
        b.validate().unwrap();
        b.validate_full(1 << 20).unwrap();
    }

    #[test]
    fn wrong_crc_is_corrupt() {
        let good = sample(2, Compression::None);
        let bad = patch(&good, good.len() - 1, &[good[good.len() - 1] ^ 1]);
        let err = RecordBatch::new(bad).unwrap().validate().unwrap_err();
        assert!(matches!(err, RecordsError::CrcMismatch { .. }));
        assert_eq!(err.error_code(), crate::codec::ErrorCode::CORRUPT_MESSAGE);
    }

    #[test]
    fn legacy_and_unknown_magic_are_rejected() {
        let good = sample(1, Compression::None);
        for (m, want) in
            [(0, RecordsError::LegacyMagic(0)), (1, RecordsError::LegacyMagic(1)), (3, RecordsError::UnknownMagic(3))]
        {
            assert_eq!(RecordBatch::new(patch(&good, at::MAGIC, &[m])), Err(want));
        }
    }

    #[test]
    fn bad_lengths_are_rejected() {
        let good = sample(1, Compression::None);
        let neg = patch(&good, at::BATCH_LENGTH, &(-1i32).to_be_bytes());
        assert_eq!(RecordBatch::new(neg), Err(RecordsError::InvalidLength("negative batch length")));
        let small = patch(&good, at::BATCH_LENGTH, &48i32.to_be_bytes());
        assert!(matches!(RecordBatch::new(small), Err(RecordsError::InvalidLength(_))));
        let huge = patch(&good, at::BATCH_LENGTH, &i32::MAX.to_be_bytes());
        assert_eq!(RecordBatch::new(huge), Err(RecordsError::Truncated("record batch")));
    }

    #[test]
    fn compression_6_and_7_are_unsupported() {
        for id in [5u8, 6, 7] {
            let mut v = sample(1, Compression::None).to_vec();
            v[at::ATTRIBUTES + 1] = id;
            let crc = crc32c::crc32c(&v[at::ATTRIBUTES..]);
            v[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_be_bytes());
            let err = RecordBatch::new(Bytes::from(v)).unwrap().validate().unwrap_err();
            assert_eq!(err, RecordsError::UnsupportedCompression(id));
            assert_eq!(err.error_code(), crate::codec::ErrorCode::UNSUPPORTED_COMPRESSION_TYPE);
        }
    }

    #[test]
    fn count_and_last_offset_delta_must_agree() {
        for (pos, value, want) in [
            (at::RECORDS_COUNT, -1i32, "negative recordsCount"),
            (at::LAST_OFFSET_DELTA, 5, "lastOffsetDelta is not recordsCount - 1"),
        ] {
            let mut v = sample(3, Compression::None).to_vec();
            v[pos..pos + 4].copy_from_slice(&value.to_be_bytes());
            let crc = crc32c::crc32c(&v[at::ATTRIBUTES..]);
            v[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_be_bytes());
            let b = RecordBatch::new(Bytes::from(v)).unwrap();
            assert_eq!(b.validate(), Err(RecordsError::InvalidBatch(want)));
        }
    }

    #[test]
    fn record_set_reports_a_partial_tail_distinctly() {
        let one = sample(2, Compression::None);
        let two = sample(3, Compression::Lz4);
        let set = [&one[..], &two[..]].concat();
        for cut in 0..=set.len() {
            let mut it = Batches::new(Bytes::copy_from_slice(&set[..cut]));
            let got: Vec<_> = it.by_ref().collect();
            let whole = usize::from(cut >= one.len()) + usize::from(cut == set.len());
            assert_eq!(got.iter().filter(|r| r.is_ok()).count(), whole, "cut {cut}");
            let partial = cut != 0 && cut != one.len() && cut != set.len();
            assert_eq!(got.last().is_some_and(|r| r.as_ref().is_err_and(|e| e.is_truncation())), partial);
            assert!(it.next().is_none());
        }
    }

    #[test]
    fn truncation_at_every_byte_never_panics() {
        for codec in Compression::ALL {
            let batch = sample(4, codec);
            for cut in 0..batch.len() {
                assert!(RecordBatch::new(batch.slice(..cut)).is_err());
            }
        }
    }
}
