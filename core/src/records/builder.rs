//! Building one v2 record batch: records are encoded as they are pushed, then `build`
//! compresses the section and fills in the header (lengths, counts, timestamps, CRC32C).
//!
//! Follows Kafka's `MemoryRecordsBuilder`: baseTimestamp is the first record's timestamp,
//! maxTimestamp the largest (or the append time under LogAppendTime), record attributes are
//! 0. Offset deltas must rise and every length must fit its wire field, or `push` refuses the
//! record; with consecutive deltas (what `append` gives) the batch passes `validate_full`.
//! Gaps, as compaction leaves them, are allowed but fail the produce-time check
//! lastOffsetDelta == recordsCount - 1.

use bytes::Bytes;

use super::batch::{HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, at};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{Attributes, Compression, Header, OwnedRecord, RecordsError, TimestampType, compression};

/// Kafka's "no producer id" (`RecordBatch.NO_PRODUCER_ID`); epoch, sequence and leader epoch
/// use -1 as well.
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's "no timestamp" (`RecordBatch.NO_TIMESTAMP`): base and max timestamp of an empty batch.
pub const NO_TIMESTAMP: i64 = -1;

/// Builds one record batch. Setters take and return the builder; `push*` add records.
#[derive(Clone, Debug)]
pub struct RecordBatchBuilder {
    compression: Compression,
    attributes: Attributes,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    log_append_time: Option<i64>,
    /// `HEADER_LEN` bytes of room for the header, then the uncompressed records.
    buf: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    last_offset_delta: Option<i32>,
}

impl RecordBatchBuilder {
    /// An empty batch compressed with `compression`, base offset 0, no producer id, leader
    /// epoch -1, CreateTime.
    #[must_use]
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            attributes: Attributes::default().with_compression(compression),
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: -1,
            log_append_time: None,
            buf: vec![0; HEADER_LEN],
            count: 0,
            base_timestamp: None,
            max_timestamp: NO_TIMESTAMP,
            last_offset_delta: None,
        }
    }

    /// Sets baseOffset (producers send 0; the broker assigns the real one).
    #[must_use]
    pub fn base_offset(mut self, offset: i64) -> Self {
        self.base_offset = offset;
        self
    }

    /// Sets partitionLeaderEpoch.
    #[must_use]
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Sets producerId, producerEpoch and baseSequence (idempotent / transactional producers).
    #[must_use]
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        (self.producer_id, self.producer_epoch, self.base_sequence) = (id, epoch, base_sequence);
        self
    }

    /// Marks the batch transactional.
    #[must_use]
    pub fn transactional(mut self, on: bool) -> Self {
        self.attributes = self.attributes.with(Attributes::TRANSACTIONAL, on);
        self
    }

    /// Marks the batch as holding control records (the caller writes their key and value).
    #[must_use]
    pub fn control(mut self, on: bool) -> Self {
        self.attributes = self.attributes.with(Attributes::CONTROL, on);
        self
    }

    /// Sets the timestamp type. Under LogAppendTime without [`Self::log_append_time`],
    /// maxTimestamp is the largest record timestamp.
    #[must_use]
    pub fn timestamp_type(mut self, t: TimestampType) -> Self {
        self.attributes = self.attributes.with_timestamp_type(t);
        self
    }

    /// LogAppendTime with `now` as maxTimestamp, as a broker writes it.
    #[must_use]
    pub fn log_append_time(mut self, now: i64) -> Self {
        self.log_append_time = Some(now);
        self.timestamp_type(TimestampType::LogAppendTime)
    }

    /// Marks the batch with a delete horizon (KIP-534): baseTimestamp holds `horizon_ms` and
    /// record timestamps are stored relative to it. The log cleaner sets it on a batch whose
    /// tombstones it keeps; set it before pushing records.
    #[must_use]
    pub fn delete_horizon(mut self, horizon_ms: i64) -> Self {
        debug_assert_eq!(self.count, 0, "the delete horizon is set before records are pushed");
        self.base_timestamp = Some(horizon_ms);
        self.attributes = self.attributes.with(Attributes::DELETE_HORIZON, true);
        self
    }

    /// Sets lastOffsetDelta beyond the last record pushed, as the log cleaner does for a batch
    /// whose trailing records it removed (the batch keeps its offset range, and an idempotent
    /// producer's last sequence with it). Fails if `delta` is below the last record's delta.
    pub fn last_offset_delta(mut self, delta: i32) -> Result<Self, RecordsError> {
        if self.last_offset_delta.is_some_and(|d| delta < d) || delta < 0 {
            return Err(RecordsError::Unencodable("lastOffsetDelta below the last record's offset delta"));
        }
        self.last_offset_delta = Some(delta);
        Ok(self)
    }

    /// Records pushed so far.
    #[must_use]
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Bytes of uncompressed records pushed so far (for callers filling batches up to a size).
    #[must_use]
    pub fn records_len(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    /// The offset delta [`Self::append`] would give the next record.
    #[must_use]
    pub fn next_offset_delta(&self) -> i32 {
        self.last_offset_delta.map_or(0, |d| d.saturating_add(1))
    }

    /// Adds a record whose fields are already owned.
    pub fn push(&mut self, r: &OwnedRecord) -> Result<(), RecordsError> {
        self.push_parts(r.offset_delta, r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers)
    }

    /// Adds a record at the next offset delta.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), RecordsError> {
        self.push_parts(self.next_offset_delta(), timestamp, key, value, headers)
    }

    /// Adds a record. `offset_delta` must be at least 0 and above the previous record's.
    pub fn push_parts(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), RecordsError> {
        if offset_delta < self.next_offset_delta() || self.last_offset_delta == Some(i32::MAX) {
            return Err(RecordsError::Unencodable("offset deltas must rise from 0"));
        }
        if self.count == i32::MAX {
            return Err(RecordsError::Unencodable("too many records"));
        }
        let base = *self.base_timestamp.get_or_insert(timestamp);
        let ts_delta = timestamp.wrapping_sub(base);
        let body = body_len(ts_delta, offset_delta, key, value, headers)?;
        let out = &mut self.buf;
        out.reserve(body as usize + 5); // body_len checked it is not negative
        put_varint(out, body);
        out.push(0);
        put_varlong(out, ts_delta);
        put_varint(out, offset_delta);
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, headers.len() as i32); // checked by body_len
        for h in headers {
            put_nullable(out, Some(&h.key));
            put_nullable(out, h.value.as_deref());
        }
        self.count += 1;
        self.max_timestamp = if self.count == 1 { timestamp } else { self.max_timestamp.max(timestamp) };
        self.last_offset_delta = Some(offset_delta);
        Ok(())
    }

    /// The finished batch: compressed section, header, CRC32C.
    pub fn build(mut self) -> Result<Bytes, RecordsError> {
        let buf = core::mem::take(&mut self.buf);
        let mut out = match self.compression {
            Compression::None => buf,
            codec => {
                let records = buf.get(HEADER_LEN..).unwrap_or_default();
                let mut out = Vec::with_capacity(HEADER_LEN + records.len() / 2);
                out.resize(HEADER_LEN, 0);
                compression::compress(codec, records, &mut out)?;
                out
            }
        };
        self.write_header(&mut out)?;
        Ok(Bytes::from(out))
    }

    fn write_header(&self, out: &mut [u8]) -> Result<(), RecordsError> {
        let batch_length = i32::try_from(out.len() - LOG_OVERHEAD)
            .map_err(|_| RecordsError::Unencodable("batch longer than i32::MAX"))?;
        let max_timestamp = self.log_append_time.unwrap_or(self.max_timestamp);
        let base_timestamp = self.base_timestamp.unwrap_or(NO_TIMESTAMP);
        let fields: [(usize, &[u8]); 13] = [
            (at::BASE_OFFSET, &self.base_offset.to_be_bytes()),
            (at::BATCH_LENGTH, &batch_length.to_be_bytes()),
            (at::PARTITION_LEADER_EPOCH, &self.partition_leader_epoch.to_be_bytes()),
            (at::MAGIC, &MAGIC_V2.to_be_bytes()),
            (at::ATTRIBUTES, &self.attributes.0.to_be_bytes()),
            (at::LAST_OFFSET_DELTA, &self.last_offset_delta.unwrap_or(0).to_be_bytes()),
            (at::BASE_TIMESTAMP, &base_timestamp.to_be_bytes()),
            (at::MAX_TIMESTAMP, &max_timestamp.to_be_bytes()),
            (at::PRODUCER_ID, &self.producer_id.to_be_bytes()),
            (at::PRODUCER_EPOCH, &self.producer_epoch.to_be_bytes()),
            (at::BASE_SEQUENCE, &self.base_sequence.to_be_bytes()),
            (at::RECORDS_COUNT, &self.count.to_be_bytes()),
            (at::CRC, &[0; 4]),
        ];
        for (pos, bytes) in fields {
            put_at(out, pos, bytes);
        }
        let crc = crc32c::crc32c(out.get(at::ATTRIBUTES..).unwrap_or_default());
        put_at(out, at::CRC, &crc.to_be_bytes());
        Ok(())
    }
}

/// Writes `bytes` at `pos` in a buffer known to be at least `HEADER_LEN` long.
pub(super) fn put_at(out: &mut [u8], pos: usize, bytes: &[u8]) {
    if let Some(slot) = out.get_mut(pos..pos + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32); // checked by body_len
            out.extend_from_slice(b);
        }
    }
}

/// The size of a record after its length prefix; fails if it or any part exceeds `i32::MAX`.
fn body_len(
    ts_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Result<i32, RecordsError> {
    let count = wire_len(headers.len())?;
    let mut total = 1 + varlong_len(ts_delta) + varint_len(offset_delta) + varint_len(count);
    total += nullable_len(key)? + nullable_len(value)?;
    for h in headers {
        total = total.saturating_add(nullable_len(Some(&h.key))?).saturating_add(nullable_len(h.value.as_deref())?);
    }
    i32::try_from(total).map_err(|_| RecordsError::Unencodable("record longer than i32::MAX"))
}

fn nullable_len(b: Option<&[u8]>) -> Result<usize, RecordsError> {
    match b {
        None => Ok(1),
        Some(b) => Ok(varint_len(wire_len(b.len())?) + b.len()),
    }
}

fn wire_len(n: usize) -> Result<i32, RecordsError> {
    i32::try_from(n).map_err(|_| RecordsError::Unencodable("field longer than i32::MAX"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RecordBatch;

    #[test]
    fn empty_batch_is_valid() {
        let b = RecordBatch::new(RecordBatchBuilder::new(Compression::None).build().unwrap()).unwrap();
        assert_eq!(b.len(), HEADER_LEN);
        assert_eq!((b.records_count(), b.base_timestamp(), b.max_timestamp()), (0, -1, -1));
        b.validate_full(0).unwrap();
    }

    #[test]
    fn flags_and_producer_fields_land_in_the_header() {
        let mut bld = RecordBatchBuilder::new(Compression::Gzip)
            .base_offset(5)
            .partition_leader_epoch(9)
            .producer(42, 3, 17)
            .transactional(true)
            .control(true)
            .log_append_time(77);
        bld.append(10, None, Some(b""), &[]).unwrap();
        bld.append(5, Some(b""), None, &[]).unwrap();
        let b = RecordBatch::new(bld.build().unwrap()).unwrap();
        b.validate_full(1 << 10).unwrap();
        assert!(b.is_transactional() && b.is_control());
        assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!((b.base_offset(), b.partition_leader_epoch()), (5, 9));
        assert_eq!((b.producer_id(), b.producer_epoch(), b.base_sequence()), (42, 3, 17));
        assert_eq!((b.base_timestamp(), b.max_timestamp()), (10, 77));
        let recs = b.records(1 << 10).unwrap();
        let got: Vec<_> = recs.iter().map(|r| r.unwrap()).collect();
        assert_eq!(got.iter().map(|r| r.timestamp()).collect::<Vec<_>>(), [77, 77]);
        assert_eq!(got.iter().map(|r| r.create_timestamp()).collect::<Vec<_>>(), [10, 5]);
        assert_eq!((got[0].key(), got[0].value()), (None, Some(Bytes::new())));
        assert_eq!((got[1].key(), got[1].value()), (Some(Bytes::new()), None));
    }

    #[test]
    fn offset_deltas_must_rise() {
        let mut bld = RecordBatchBuilder::new(Compression::None);
        assert!(bld.push_parts(-1, 0, None, None, &[]).is_err());
        bld.push_parts(3, 0, None, None, &[]).unwrap();
        assert!(bld.push_parts(3, 0, None, None, &[]).is_err());
        bld.push_parts(i32::MAX, 0, None, None, &[]).unwrap();
        assert!(bld.append(0, None, None, &[]).is_err());
        assert_eq!(bld.count(), 2);
    }
}
