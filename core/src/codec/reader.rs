//! The bounded reader every decoder uses.
//!
//! A `Reader` is a window `[pos, end)` over a frame's [`Bytes`]. Sub-readers (for tagged
//! fields) are narrower windows over the same frame, so a field can never read past the bytes
//! its size prefix gave it. Every count read from the wire is checked against what remains
//! before any allocation is sized by it.

use bytes::Bytes;

use super::{DecodeError, KStr, RawTaggedField, RecordSet, Uuid};

/// A cursor over a frame that reads Kafka wire primitives and hands out zero-copy slices.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    /// The frame, for zero-copy slices.
    buf: &'a Bytes,
    /// The same bytes as a plain slice, so primitive reads need no indirection.
    data: &'a [u8],
    pos: usize,
    end: usize,
}

/// The longest unsigned varint that fits an `i32`/`u32` (Kafka's readUnsignedVarint).
const MAX_VARINT_BYTES: usize = 5;
/// The longest varlong.
const MAX_VARLONG_BYTES: usize = 10;

impl<'a> Reader<'a> {
    /// A reader over the whole of `buf`.
    #[must_use]
    pub fn new(buf: &'a Bytes) -> Self {
        Self { buf, data: buf.as_ref(), pos: 0, end: buf.len() }
    }

    /// Bytes left to read.
    #[must_use]
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The reader's position within the underlying buffer.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self, ctx: &'static str) -> Result<(), DecodeError> {
        if self.remaining() == 0 { Ok(()) } else { Err(DecodeError::TrailingBytes(ctx)) }
    }

    #[inline]
    fn fixed<const N: usize>(&mut self, ctx: &'static str) -> Result<[u8; N], DecodeError> {
        let window = &self.data[..self.end];
        match window.get(self.pos..).and_then(|rest| rest.first_chunk::<N>()) {
            Some(out) => {
                self.pos += N;
                Ok(*out)
            }
            None => Err(DecodeError::Truncated(ctx)),
        }
    }

    /// A zero-copy slice of the next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize, ctx: &'static str) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated(ctx));
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// A zero-copy slice of everything left.
    #[must_use]
    pub fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }

    /// Splits off a reader over the next `n` bytes and advances past them.
    #[inline]
    pub fn sub(&mut self, n: usize, ctx: &'static str) -> Result<Reader<'a>, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated(ctx));
        }
        let sub = Reader { buf: self.buf, data: self.data, pos: self.pos, end: self.pos + n };
        self.pos += n;
        Ok(sub)
    }

    /// Reads an `int8`.
    #[inline]
    pub fn i8(&mut self, ctx: &'static str) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.fixed(ctx)?))
    }
    /// Reads an `int16`.
    #[inline]
    pub fn i16(&mut self, ctx: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.fixed(ctx)?))
    }
    /// Reads a `uint16`.
    #[inline]
    pub fn u16(&mut self, ctx: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.fixed(ctx)?))
    }
    /// Reads an `int32`.
    #[inline]
    pub fn i32(&mut self, ctx: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.fixed(ctx)?))
    }
    /// Reads a `uint32`.
    #[inline]
    pub fn u32(&mut self, ctx: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.fixed(ctx)?))
    }
    /// Reads an `int64`.
    #[inline]
    pub fn i64(&mut self, ctx: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.fixed(ctx)?))
    }
    /// Reads a `float64`.
    #[inline]
    pub fn f64(&mut self, ctx: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_be_bytes(self.fixed(ctx)?))
    }
    /// Reads a `bool`: any non-zero byte is true, as in Kafka's Java reader.
    #[inline]
    pub fn bool(&mut self, ctx: &'static str) -> Result<bool, DecodeError> {
        Ok(self.i8(ctx)? != 0)
    }
    /// Reads a `uuid`.
    #[inline]
    pub fn uuid(&mut self, ctx: &'static str) -> Result<Uuid, DecodeError> {
        Ok(Uuid(self.fixed(ctx)?))
    }

    /// Reads an unsigned varint of at most 5 bytes (a `u32`).
    #[inline]
    pub fn uvarint(&mut self, ctx: &'static str) -> Result<u32, DecodeError> {
        // Lengths and counts are nearly always below 128: one byte, one branch.
        if let Some(&b) = self.data[..self.end].get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u32::from(b));
        }
        self.uvarint_slow(ctx)
    }

    fn uvarint_slow(&mut self, ctx: &'static str) -> Result<u32, DecodeError> {
        let rest = &self.data[self.pos..self.end];
        let mut value: u32 = 0;
        for (i, &b) in rest.iter().take(MAX_VARINT_BYTES).enumerate() {
            value |= u32::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        if rest.len() < MAX_VARINT_BYTES {
            Err(DecodeError::Truncated(ctx))
        } else {
            Err(DecodeError::VarintTooLong(ctx))
        }
    }

    /// Reads a zig-zag signed varint (an `i32`).
    #[inline]
    pub fn varint(&mut self, ctx: &'static str) -> Result<i32, DecodeError> {
        let raw = self.uvarint(ctx)?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Reads a zig-zag signed varlong (an `i64`).
    pub fn varlong(&mut self, ctx: &'static str) -> Result<i64, DecodeError> {
        let mut raw: u64 = 0;
        for i in 0..MAX_VARLONG_BYTES {
            let b = self.fixed::<1>(ctx)?[0];
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(DecodeError::VarintTooLong(ctx))
    }

    /// A length that must be backed by at least `len * min_elem` remaining bytes.
    #[inline]
    fn checked_len(&self, len: usize, min_elem: usize, ctx: &'static str) -> Result<usize, DecodeError> {
        if len.saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(DecodeError::LengthOutOfRange(ctx));
        }
        Ok(len)
    }

    /// Reads a classic (`int32`) array length: `None` for null (-1). Each element takes at
    /// least `min_elem` bytes on the wire, so the count is checked against what remains.
    #[inline]
    pub fn array_len(&mut self, min_elem: usize, ctx: &'static str) -> Result<Option<usize>, DecodeError> {
        match self.i32(ctx)? {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError::LengthOutOfRange(ctx)),
            n => self.checked_len(n as usize, min_elem, ctx).map(Some),
        }
    }

    /// Reads a compact (unsigned varint, N+1) array length: `None` for null (0).
    #[inline]
    pub fn compact_array_len(&mut self, min_elem: usize, ctx: &'static str) -> Result<Option<usize>, DecodeError> {
        match self.uvarint(ctx)? {
            0 => Ok(None),
            n => self.checked_len((n - 1) as usize, min_elem, ctx).map(Some),
        }
    }

    /// Reads a non-nullable array length in the given encoding.
    #[inline]
    pub fn array_len_required(
        &mut self,
        compact: bool,
        min_elem: usize,
        ctx: &'static str,
    ) -> Result<usize, DecodeError> {
        let len = if compact { self.compact_array_len(min_elem, ctx)? } else { self.array_len(min_elem, ctx)? };
        len.ok_or(DecodeError::UnexpectedNull(ctx))
    }

    /// Reads a nullable array length in the given encoding.
    #[inline]
    pub fn array_len_nullable(
        &mut self,
        compact: bool,
        min_elem: usize,
        ctx: &'static str,
    ) -> Result<Option<usize>, DecodeError> {
        if compact { self.compact_array_len(min_elem, ctx) } else { self.array_len(min_elem, ctx) }
    }

    /// Reads a non-nullable array whose elements `elem` reads, each at least `min_elem` bytes.
    #[inline]
    pub fn array<T>(
        &mut self,
        compact: bool,
        min_elem: usize,
        ctx: &'static str,
        mut elem: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.array_len_required(compact, min_elem, ctx)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(elem(self)?);
        }
        Ok(out)
    }

    /// Reads a nullable array.
    #[inline]
    pub fn nullable_array<T>(
        &mut self,
        compact: bool,
        min_elem: usize,
        ctx: &'static str,
        elem: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        let mut probe = self.clone();
        if probe.array_len_nullable(compact, min_elem, ctx)?.is_none() {
            *self = probe;
            return Ok(None);
        }
        self.array(compact, min_elem, ctx, elem).map(Some)
    }

    #[inline]
    fn str_len(&mut self, compact: bool, ctx: &'static str) -> Result<Option<usize>, DecodeError> {
        if compact {
            match self.uvarint(ctx)? {
                0 => Ok(None),
                n => self.checked_len((n - 1) as usize, 1, ctx).map(Some),
            }
        } else {
            match self.i16(ctx)? {
                -1 => Ok(None),
                n if n < 0 => Err(DecodeError::LengthOutOfRange(ctx)),
                n => self.checked_len(n as usize, 1, ctx).map(Some),
            }
        }
    }

    /// Reads a nullable string (classic `int16` length or compact).
    #[inline]
    pub fn nullable_string(&mut self, compact: bool, ctx: &'static str) -> Result<Option<KStr>, DecodeError> {
        match self.str_len(compact, ctx)? {
            None => Ok(None),
            Some(n) => KStr::from_utf8(self.bytes(n, ctx)?).map(Some).map_err(|_| DecodeError::InvalidUtf8(ctx)),
        }
    }

    /// Reads a non-nullable string.
    #[inline]
    pub fn string(&mut self, compact: bool, ctx: &'static str) -> Result<KStr, DecodeError> {
        self.nullable_string(compact, ctx)?.ok_or(DecodeError::UnexpectedNull(ctx))
    }

    /// Reads nullable bytes (classic `int32` length or compact); also used for record sets.
    #[inline(always)]
    pub fn nullable_bytes(&mut self, compact: bool, ctx: &'static str) -> Result<Option<Bytes>, DecodeError> {
        let n = if compact {
            match self.uvarint(ctx)? {
                0 => return Ok(None),
                n => (n - 1) as usize,
            }
        } else {
            match self.i32(ctx)? {
                -1 => return Ok(None),
                n => usize::try_from(n).map_err(|_| DecodeError::LengthOutOfRange(ctx))?,
            }
        };
        if n > self.remaining() {
            return Err(DecodeError::LengthOutOfRange(ctx));
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(Some(out))
    }

    /// Reads a nullable record set (one chunk, a slice of the frame).
    #[inline(always)]
    pub fn nullable_records(&mut self, compact: bool, ctx: &'static str) -> Result<Option<RecordSet>, DecodeError> {
        Ok(self.nullable_bytes(compact, ctx)?.map(RecordSet::from))
    }

    /// Reads a non-nullable record set.
    #[inline]
    pub fn records(&mut self, compact: bool, ctx: &'static str) -> Result<RecordSet, DecodeError> {
        self.bytes_field(compact, ctx).map(RecordSet::from)
    }

    /// Reads non-nullable bytes.
    #[inline]
    pub fn bytes_field(&mut self, compact: bool, ctx: &'static str) -> Result<Bytes, DecodeError> {
        self.nullable_bytes(compact, ctx)?.ok_or(DecodeError::UnexpectedNull(ctx))
    }

    /// Reads the header of one tagged field: its tag and a reader over its data.
    #[inline]
    pub fn tagged_field(&mut self, ctx: &'static str) -> Result<(u32, Reader<'a>), DecodeError> {
        let tag = self.uvarint(ctx)?;
        let size = self.uvarint(ctx)? as usize;
        Ok((tag, self.sub(size, ctx)?))
    }

    /// Reads the number of tagged fields that follow (each takes at least two bytes).
    #[inline]
    pub fn tagged_field_count(&mut self, ctx: &'static str) -> Result<usize, DecodeError> {
        let n = self.uvarint(ctx)? as usize;
        self.checked_len(n, 2, ctx)
    }

    /// Keeps a tagged field this version does not know, for re-encoding.
    #[must_use]
    pub fn unknown_tagged(tag: u32, mut data: Reader<'_>) -> RawTaggedField {
        RawTaggedField { tag, data: data.rest() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_kafka_encoding() {
        // Kafka's ByteUtils examples: 300 -> ac 02; zig-zag -1 -> 01, 1 -> 02.
        let b = Bytes::from_static(&[0xac, 0x02, 0x01, 0x02]);
        let mut r = Reader::new(&b);
        assert_eq!(r.uvarint("t"), Ok(300));
        assert_eq!(r.varint("t"), Ok(-1));
        assert_eq!(r.varint("t"), Ok(1));
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let b = Bytes::from_static(&[0xff; 11]);
        assert_eq!(Reader::new(&b).uvarint("v"), Err(DecodeError::VarintTooLong("v")));
        assert_eq!(Reader::new(&b).varlong("v"), Err(DecodeError::VarintTooLong("v")));
    }

    #[test]
    fn huge_array_claim_is_rejected_before_allocation() {
        // int32 count of 0x7fffffff followed by four bytes.
        let b = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(Reader::new(&b).array_len(4, "a"), Err(DecodeError::LengthOutOfRange("a")));
        let b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(Reader::new(&b).array_len(4, "a"), Err(DecodeError::LengthOutOfRange("a")));
        let b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(Reader::new(&b).array_len(4, "a"), Ok(None));
    }

    #[test]
    fn sub_reader_cannot_read_past_its_window() {
        let b = Bytes::from_static(&[1, 2, 3, 4]);
        let mut r = Reader::new(&b);
        let mut sub = r.sub(2, "s").unwrap();
        assert_eq!(sub.i16("s"), Ok(0x0102));
        assert_eq!(sub.i8("s"), Err(DecodeError::Truncated("s")));
        assert_eq!(r.i16("s"), Ok(0x0304));
    }

    #[test]
    fn strings_borrow_and_validate() {
        let b = Bytes::from_static(&[0, 2, b'h', b'i', 3, 0xff, 0xfe]);
        let mut r = Reader::new(&b);
        assert_eq!(r.string(false, "s").unwrap().as_str(), "hi");
        assert_eq!(r.string(true, "s"), Err(DecodeError::InvalidUtf8("s")));
    }
}
