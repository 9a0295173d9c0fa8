//! The records inside a batch: a zero-copy iterator over a (decompressed) records section,
//! borrowed record views, lazily decoded headers, and an owned form for building.
//!
//! Record layout (Kafka's `DefaultRecord`): varint length, i8 attributes, varlong
//! timestampDelta, varint offsetDelta, varint keyLength (-1 = null) + key, varint
//! valueLength (-1 = null) + value, varint headerCount, then per header varint keyLength +
//! key, varint valueLength (-1 = null) + value.
//!
//! Iterating reads each record's fixed fields and the key/value spans, and skips the headers
//! by the record's length prefix: a caller that never asks for headers never decodes them.
//! Nothing here allocates except the owned conversions.

use core::fmt;

use bytes::Bytes;

use super::varint::Cursor;
use super::{RecordBatch, RecordsError, TimestampType};

/// The smallest record body: attributes, timestampDelta, offsetDelta, keyLength,
/// valueLength and headerCount at one byte each.
const MIN_RECORD_BODY: usize = 6;
/// The smallest header: keyLength and valueLength at one byte each.
const MIN_HEADER: usize = 2;

/// The records of one batch, decompressed: owns the records section and the batch fields
/// records are relative to.
#[derive(Clone)]
pub struct BatchRecords {
    data: Bytes,
    count: u32,
    base: Base,
}

/// The batch header fields a record needs to know its offset and timestamp.
#[derive(Clone, Copy, Debug)]
struct Base {
    offset: i64,
    timestamp: i64,
    max_timestamp: i64,
    log_append_time: bool,
    last_offset_delta: i32,
}

impl BatchRecords {
    pub(super) fn new(data: Bytes, count: u32, batch: &RecordBatch) -> Self {
        let base = Base {
            offset: batch.base_offset(),
            timestamp: batch.base_timestamp(),
            max_timestamp: batch.max_timestamp(),
            log_append_time: batch.timestamp_type() == TimestampType::LogAppendTime,
            last_offset_delta: batch.last_offset_delta(),
        };
        Self { data, count, base }
    }

    /// recordsCount from the batch header.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The (decompressed) records section.
    #[must_use]
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Iterates the records. Each item is a view into [`BatchRecords::data`]; after the first
    /// error the iterator stops.
    #[must_use]
    pub fn iter(&self) -> Records<'_> {
        Records { src: self, pos: 0, left: self.count, done: false }
    }

    /// Walks every record and header: lengths consistent, offset deltas strictly rising within
    /// `0..=lastOffsetDelta`, exactly `count` records filling the section.
    pub fn validate(&self) -> Result<(), RecordsError> {
        let mut prev: Option<i32> = None;
        for record in self.iter() {
            let record = record?;
            let delta = record.offset_delta();
            if delta < 0 || delta > self.base.last_offset_delta || prev.is_some_and(|p| delta <= p) {
                return Err(RecordsError::InvalidRecord("offset deltas out of order"));
            }
            prev = Some(delta);
            for header in record.headers() {
                header?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for BatchRecords {
    /// Sizes and batch fields only: payload bytes are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchRecords")
            .field("count", &self.count)
            .field("len", &self.data.len())
            .field("base", &self.base)
            .finish()
    }
}

impl<'a> IntoIterator for &'a BatchRecords {
    type Item = Result<Record<'a>, RecordsError>;
    type IntoIter = Records<'a>;
    fn into_iter(self) -> Records<'a> {
        self.iter()
    }
}

/// Iterator over the records of a batch; see [`BatchRecords::iter`].
#[derive(Clone, Debug)]
pub struct Records<'a> {
    src: &'a BatchRecords,
    pos: usize,
    left: u32,
    done: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RecordsError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return self.finish();
        }
        match Record::parse(self.src, self.pos) {
            Ok((record, end)) => {
                self.pos = end;
                self.left -= 1;
                Some(Ok(record))
            }
            Err(e) => {
                self.left = 0;
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize + 1))
    }
}

impl Records<'_> {
    /// After the last record: bytes left over are an error (reported once).
    #[cold]
    fn finish(&mut self) -> Option<Result<Record<'static>, RecordsError>> {
        if self.done || self.pos == self.src.data.len() {
            return None;
        }
        self.done = true;
        Some(Err(RecordsError::InvalidRecord("bytes after the last record")))
    }
}

impl core::iter::FusedIterator for Records<'_> {}

/// Where a key or value sits in the records buffer; `NULL` length marks a null.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    len: usize,
}

impl Span {
    const NULL: Self = Self { start: 0, len: usize::MAX };

    #[inline(always)]
    fn from_wire(span: Option<(usize, usize)>) -> Self {
        span.map_or(Self::NULL, |(start, len)| Self { start, len })
    }

    fn get(self, data: &Bytes) -> Option<&[u8]> {
        if self.len == usize::MAX { None } else { data.get(self.start..self.start + self.len) }
    }

    fn bytes(self, data: &Bytes) -> Option<Bytes> {
        // In range: parsing checked the span against the buffer.
        if self.len == usize::MAX { None } else { Some(data.slice(self.start..self.start + self.len)) }
    }
}

/// One record, borrowed from its batch's records buffer. Offsets and timestamps are
/// absolute; keys, values and headers are handed out as [`Bytes`] slices or `&[u8]`.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    src: &'a BatchRecords,
    timestamp_delta: i64,
    offset_delta: i32,
    attributes: i8,
    key: Span,
    value: Span,
    header_count: u32,
    headers_at: usize,
    end: usize,
}

impl<'a> Record<'a> {
    /// Reads the record at `pos`; returns it and where the next one starts.
    ///
    /// The fields are read from the whole buffer and checked against the record's end once,
    /// at the end: fields are read in order, so one that overran the length prefix leaves the
    /// cursor past `end`. (Windowing the cursor instead would push every record's last varint
    /// onto the slow near-the-end path.)
    #[inline(always)]
    fn parse(src: &'a BatchRecords, pos: usize) -> Result<(Self, usize), RecordsError> {
        let mut c = Cursor::new(&src.data, pos);
        let len = c.varint("record length")?;
        let len = usize::try_from(len).map_err(|_| RecordsError::InvalidRecord("negative record length"))?;
        if len < MIN_RECORD_BODY || len > c.remaining() {
            return Err(RecordsError::InvalidRecord("record length out of range"));
        }
        let end = c.pos() + len;
        let attributes = c.u8("record attributes")? as i8;
        let timestamp_delta = c.varlong("record timestampDelta")?;
        let offset_delta = c.varint("record offsetDelta")?;
        let key = Span::from_wire(c.nullable_span("record key")?);
        let value = Span::from_wire(c.nullable_span("record value")?);
        let header_count = c.varint("record headerCount")?;
        let header_count =
            u32::try_from(header_count).map_err(|_| RecordsError::InvalidRecord("negative headerCount"))?;
        let headers_at = c.pos();
        if headers_at > end {
            return Err(RecordsError::InvalidRecord("record fields overrun the record length"));
        }
        if (header_count as usize).saturating_mul(MIN_HEADER) > end - headers_at {
            return Err(RecordsError::InvalidRecord("headerCount larger than the record"));
        }
        let rec = Self { src, timestamp_delta, offset_delta, attributes, key, value, header_count, headers_at, end };
        Ok((rec, end))
    }

    /// The record's offset: baseOffset + offsetDelta.
    #[inline]
    #[must_use]
    pub fn offset(&self) -> i64 {
        self.src.base.offset.wrapping_add(i64::from(self.offset_delta))
    }

    /// offsetDelta as stored.
    #[inline]
    #[must_use]
    pub fn offset_delta(&self) -> i32 {
        self.offset_delta
    }

    /// The record's timestamp as Kafka reports it: baseTimestamp + timestampDelta, or the
    /// batch's maxTimestamp under LogAppendTime.
    #[inline]
    #[must_use]
    pub fn timestamp(&self) -> i64 {
        if self.src.base.log_append_time { self.src.base.max_timestamp } else { self.create_timestamp() }
    }

    /// baseTimestamp + timestampDelta, whatever the timestamp type.
    #[inline]
    #[must_use]
    pub fn create_timestamp(&self) -> i64 {
        self.src.base.timestamp.wrapping_add(self.timestamp_delta)
    }

    /// timestampDelta as stored.
    #[must_use]
    pub fn timestamp_delta(&self) -> i64 {
        self.timestamp_delta
    }

    /// The record attributes byte (unused by Kafka today; kept as read).
    #[must_use]
    pub fn attributes(&self) -> i8 {
        self.attributes
    }

    /// The key (`None` for a null key, distinct from an empty one), without copying.
    #[inline]
    #[must_use]
    pub fn key(&self) -> Option<Bytes> {
        self.key.bytes(&self.src.data)
    }

    /// The key as a borrowed slice.
    #[inline]
    #[must_use]
    pub fn key_slice(&self) -> Option<&'a [u8]> {
        self.key.get(&self.src.data)
    }

    /// The value (`None` for a null value, e.g. a tombstone), without copying.
    #[inline]
    #[must_use]
    pub fn value(&self) -> Option<Bytes> {
        self.value.bytes(&self.src.data)
    }

    /// The value as a borrowed slice.
    #[inline]
    #[must_use]
    pub fn value_slice(&self) -> Option<&'a [u8]> {
        self.value.get(&self.src.data)
    }

    /// headerCount as stored.
    #[must_use]
    pub fn header_count(&self) -> u32 {
        self.header_count
    }

    /// The headers, decoded as they are iterated, in wire order and with duplicates.
    #[must_use]
    pub fn headers(&self) -> Headers<'a> {
        let data = &self.src.data;
        let window = data.get(..self.end).unwrap_or_default();
        Headers { data, cursor: Cursor::new(window, self.headers_at), left: self.header_count, done: false }
    }

    /// Copies out the fields a builder needs (keys and values stay shared, not copied).
    pub fn to_owned_record(&self) -> Result<OwnedRecord, RecordsError> {
        Ok(OwnedRecord {
            offset_delta: self.offset_delta,
            timestamp: self.create_timestamp(),
            key: self.key(),
            value: self.value(),
            headers: self.headers().collect::<Result<_, _>>()?,
        })
    }
}

/// Iterator over a record's headers; see [`Record::headers`]. After the last header, bytes
/// left in the record are reported as an error, once.
#[derive(Clone)]
pub struct Headers<'a> {
    data: &'a Bytes,
    cursor: Cursor<'a>,
    left: u32,
    done: bool,
}

impl Iterator for Headers<'_> {
    type Item = Result<Header, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            return (self.cursor.remaining() != 0)
                .then_some(Err(RecordsError::InvalidRecord("bytes after the last header")));
        }
        self.left -= 1;
        let header = self.read();
        self.done = header.is_err();
        Some(header)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize + 1))
    }
}

impl Headers<'_> {
    fn read(&mut self) -> Result<Header, RecordsError> {
        let key_len = self.cursor.varint("header key length")?;
        let key_len =
            usize::try_from(key_len).map_err(|_| RecordsError::InvalidRecord("negative header key length"))?;
        let key_at = self.cursor.skip(key_len, "header key")?;
        let value = self.cursor.nullable_span("header value")?;
        Ok(Header {
            key: self.data.slice(key_at..key_at + key_len),
            value: value.map(|(at, len)| self.data.slice(at..at + len)),
        })
    }
}

impl core::iter::FusedIterator for Headers<'_> {}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Headers").field("left", &self.left).field("pos", &self.cursor.pos()).finish()
    }
}

/// A record header. Kafka treats the key as a UTF-8 string (see [`Header::key_str`]) but does
/// not reject other bytes, so neither does kelp.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header key.
    pub key: Bytes,
    /// The header value; `None` is null, distinct from empty.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header from its parts.
    #[must_use]
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Self { key: key.into(), value }
    }

    /// The key as UTF-8, if it is.
    pub fn key_str(&self) -> Result<&str, core::str::Utf8Error> {
        core::str::from_utf8(&self.key)
    }
}

/// A record with owned (shared) fields: what the builder takes and [`Record::to_owned_record`] gives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OwnedRecord {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Creation timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// The key; `None` is null.
    pub key: Option<Bytes>,
    /// The value; `None` is null (a tombstone).
    pub value: Option<Bytes>,
    /// The headers, in order, duplicates allowed.
    pub headers: Vec<Header>,
}
