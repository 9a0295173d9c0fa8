//! The infallible writer every encoder uses.
//!
//! Small values go into one growing buffer. Large shared byte fields (record sets above all)
//! are not copied: the buffer written so far is frozen into a chunk and the field's own
//! [`Bytes`] is appended as the next chunk, so a fetch response can be sent with `writev`
//! without its records ever being copied.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::{KStr, RawTaggedField, RecordSet, Uuid};

/// Byte fields at least this long are appended as their own chunk instead of being copied.
pub const ZERO_COPY_MIN: usize = 1024;

/// Collects an encoded message as a list of chunks.
#[derive(Debug, Default)]
pub struct Writer {
    buf: BytesMut,
    chunks: SmallVec<[Bytes; 4]>,
    len: usize,
    /// Copy everything into `buf` (for callers that need one buffer anyway).
    contiguous: bool,
}

impl Writer {
    /// A writer whose first buffer can hold `cap` bytes without growing.
    #[must_use]
    pub fn with_capacity(cap: usize) -> Self {
        Self { buf: BytesMut::with_capacity(cap), chunks: SmallVec::new(), len: 0, contiguous: false }
    }

    /// A writer that copies everything into one buffer of `cap` bytes: no chunks, so
    /// [`Writer::into_bytes`] needs no second copy. For callers that need one buffer anyway.
    #[must_use]
    pub fn contiguous(cap: usize) -> Self {
        Self { contiguous: true, ..Self::with_capacity(cap) }
    }

    /// Total bytes written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The written bytes as chunks, in order; shared byte fields are not copied.
    #[must_use]
    pub fn into_chunks(mut self) -> SmallVec<[Bytes; 4]> {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.freeze());
        }
        self.chunks
    }

    /// The written bytes as one buffer (copies if there is more than one chunk).
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        let total = self.len;
        let mut chunks = self.into_chunks();
        match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::with_capacity(total);
                for c in &chunks {
                    out.extend_from_slice(c);
                }
                out.freeze()
            }
        }
    }

    /// Appends raw bytes (copied).
    pub fn put_slice(&mut self, b: &[u8]) {
        self.len += b.len();
        self.buf.put_slice(b);
    }

    /// Appends shared bytes: copied when short, otherwise added as a chunk of their own.
    pub fn put_shared(&mut self, b: &Bytes) {
        if self.contiguous || b.len() < ZERO_COPY_MIN {
            self.put_slice(b);
            return;
        }
        if !self.buf.is_empty() {
            let head = self.buf.split().freeze();
            self.chunks.push(head);
        }
        self.len += b.len();
        self.chunks.push(b.clone());
    }

    /// Writes an `int8`.
    pub fn i8(&mut self, v: i8) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Writes an `int16`.
    pub fn i16(&mut self, v: i16) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Writes a `uint16`.
    pub fn u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Writes an `int32`.
    pub fn i32(&mut self, v: i32) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Writes a `uint32`.
    pub fn u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Writes an `int64`.
    pub fn i64(&mut self, v: i64) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Writes a `float64`.
    pub fn f64(&mut self, v: f64) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Writes a `bool` as 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.i8(i8::from(v));
    }
    /// Writes a `uuid`.
    pub fn uuid(&mut self, v: &Uuid) {
        self.put_slice(&v.0);
    }

    /// Writes an unsigned varint.
    pub fn uvarint(&mut self, mut v: u32) {
        let mut tmp = [0u8; 5];
        let mut n = 0;
        while v >= 0x80 {
            tmp[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        tmp[n] = v as u8;
        self.put_slice(&tmp[..=n]);
    }

    /// Writes a zig-zag signed varint.
    pub fn varint(&mut self, v: i32) {
        self.uvarint(((v << 1) ^ (v >> 31)) as u32);
    }

    /// Writes a zig-zag signed varlong.
    pub fn varlong(&mut self, v: i64) {
        let mut raw = ((v << 1) ^ (v >> 63)) as u64;
        let mut tmp = [0u8; 10];
        let mut n = 0;
        while raw >= 0x80 {
            tmp[n] = (raw as u8) | 0x80;
            raw >>= 7;
            n += 1;
        }
        tmp[n] = raw as u8;
        self.put_slice(&tmp[..=n]);
    }

    /// Writes an array length (`None` = null) in the given encoding.
    pub fn array_len(&mut self, compact: bool, len: Option<usize>) {
        match (compact, len) {
            (true, None) => self.uvarint(0),
            (true, Some(n)) => self.uvarint(len_u32(n) + 1),
            (false, None) => self.i32(-1),
            (false, Some(n)) => self.i32(len_u32(n) as i32),
        }
    }

    /// Writes a nullable string. In the classic encoding a string is cut at the last character
    /// boundary within `i16::MAX` bytes, the most the format can carry.
    pub fn nullable_string(&mut self, compact: bool, s: Option<&KStr>) {
        match s {
            None if compact => self.uvarint(0),
            None => self.i16(-1),
            Some(s) => self.string(compact, s),
        }
    }

    /// Writes a non-null string.
    pub fn string(&mut self, compact: bool, s: &KStr) {
        let bytes = s.as_str().as_bytes();
        if compact {
            self.uvarint(len_u32(bytes.len()) + 1);
            self.put_slice(bytes);
        } else {
            let n = classic_str_len(s.as_str());
            self.i16(n as i16);
            self.put_slice(&bytes[..n]);
        }
    }

    /// Writes nullable bytes (also record sets); long values are not copied.
    pub fn nullable_bytes(&mut self, compact: bool, b: Option<&Bytes>) {
        match b {
            None if compact => self.uvarint(0),
            None => self.i32(-1),
            Some(b) => self.bytes_field(compact, b),
        }
    }

    /// Writes non-null bytes; long values are not copied.
    pub fn bytes_field(&mut self, compact: bool, b: &Bytes) {
        if compact {
            self.uvarint(len_u32(b.len()) + 1);
        } else {
            self.i32(len_u32(b.len()) as i32);
        }
        self.put_shared(b);
    }

    /// Writes a record set: its length, then each chunk (long ones are not copied).
    pub fn records(&mut self, compact: bool, r: &RecordSet) {
        if compact {
            self.uvarint(len_u32(r.len()) + 1);
        } else {
            self.i32(len_u32(r.len()) as i32);
        }
        for c in r.chunks() {
            self.put_shared(c);
        }
    }

    /// Writes one tagged field's tag and size; the caller writes exactly `size` bytes next.
    pub fn tagged_header(&mut self, tag: u32, size: usize) {
        self.uvarint(tag);
        self.uvarint(len_u32(size));
    }

    /// Writes the unknown tagged fields whose tag is below `limit` (all of them for
    /// `u32::MAX`), advancing `next` past them. Known and unknown fields thus go out in one
    /// ascending order.
    pub fn unknown_tagged_before(&mut self, fields: &[RawTaggedField], next: &mut usize, limit: u32) {
        while let Some(f) = fields.get(*next) {
            if f.tag >= limit && limit != u32::MAX {
                break;
            }
            self.tagged_header(f.tag, f.data.len());
            self.put_shared(&f.data);
            *next += 1;
        }
    }
}

/// Lengths beyond `i32::MAX` cannot be written by Kafka's format; encoders only ever hold
/// values that came from the wire or from the broker, which stay far below it.
fn len_u32(n: usize) -> u32 {
    assert!(n <= i32::MAX as usize, "length {n} exceeds the Kafka wire format");
    n as u32
}

/// How many bytes of `s` the classic (`int16`-prefixed) string encoding carries.
#[must_use]
pub fn classic_str_len(s: &str) -> usize {
    let max = i16::MAX as usize;
    if s.len() <= max {
        return s.len();
    }
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// Encoded size of an unsigned varint.
#[must_use]
pub const fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Encoded size of an array length prefix.
#[must_use]
pub fn array_len_len(compact: bool, len: Option<usize>) -> usize {
    match (compact, len) {
        (true, None) => 1,
        (true, Some(n)) => uvarint_len(n as u32 + 1),
        (false, _) => 4,
    }
}

/// Encoded size of a nullable string.
#[must_use]
pub fn nullable_string_len(compact: bool, s: Option<&KStr>) -> usize {
    match s {
        None if compact => 1,
        None => 2,
        Some(s) => string_len(compact, s),
    }
}

/// Encoded size of a string.
#[must_use]
pub fn string_len(compact: bool, s: &KStr) -> usize {
    if compact {
        let n = s.as_str().len();
        uvarint_len(n as u32 + 1) + n
    } else {
        2 + classic_str_len(s.as_str())
    }
}

/// Encoded size of nullable bytes.
#[must_use]
pub fn nullable_bytes_len(compact: bool, b: Option<&Bytes>) -> usize {
    match b {
        None if compact => 1,
        None => 4,
        Some(b) => bytes_len(compact, b),
    }
}

/// Encoded size of bytes.
#[must_use]
pub fn bytes_len(compact: bool, b: &Bytes) -> usize {
    if compact { uvarint_len(b.len() as u32 + 1) + b.len() } else { 4 + b.len() }
}

/// Encoded size of a record set.
#[must_use]
pub fn records_len(compact: bool, r: &RecordSet) -> usize {
    if compact { uvarint_len(r.len() as u32 + 1) + r.len() } else { 4 + r.len() }
}

/// Encoded size of one tagged field with `size` bytes of data.
#[must_use]
pub const fn tagged_len(tag: u32, size: usize) -> usize {
    uvarint_len(tag) + uvarint_len(size as u32) + size
}

/// Encoded size of a list of unknown tagged fields (their headers and data).
#[must_use]
pub fn unknown_tagged_len(fields: &[RawTaggedField]) -> usize {
    fields.iter().map(|f| tagged_len(f.tag, f.data.len())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Reader;

    #[test]
    fn varints_round_trip_through_reader() {
        for v in [0i64, 1, -1, 63, -64, 64, 8191, -8192, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut w = Writer::default();
            w.varlong(v);
            let b = w.into_bytes();
            assert_eq!(Reader::new(&b).varlong("v"), Ok(v));
        }
        for v in [0i32, 1, -1, 300, i32::MAX, i32::MIN] {
            let mut w = Writer::default();
            w.varint(v);
            let b = w.into_bytes();
            assert_eq!(Reader::new(&b).varint("v"), Ok(v));
        }
    }

    #[test]
    fn large_shared_bytes_are_not_copied() {
        let big = Bytes::from(vec![7u8; ZERO_COPY_MIN * 2]);
        let mut w = Writer::default();
        w.i32(1);
        w.bytes_field(false, &big);
        w.i16(2);
        let chunks = w.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr());
    }

    #[test]
    fn classic_strings_are_cut_at_a_char_boundary() {
        let s = "é".repeat(20_000);
        let n = classic_str_len(&s);
        assert!(n <= i16::MAX as usize && s.is_char_boundary(n));
    }
}
