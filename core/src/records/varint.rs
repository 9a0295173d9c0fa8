//! Zig-zag varints inside a records section: a bounds-checked slice cursor for reading and
//! helpers for writing. Private to `records`; the message codec has its own in `codec::Reader`.
//!
//! Reading decodes from a fixed-size array when enough bytes remain (the compiler unrolls the
//! loop and drops the bounds checks); only the last few bytes of a buffer take the byte-by-byte
//! path. The hot iteration loop reads five or six varints per record.

use super::RecordsError;

/// Kafka's `ByteUtils.readVarint` reads at most 5 bytes.
const MAX_VARINT_BYTES: usize = 5;
/// Kafka's `ByteUtils.readVarlong` reads at most 10 bytes.
const MAX_VARLONG_BYTES: usize = 10;

/// A position in a records buffer. Running out of bytes is an invalid record: the
/// surrounding batch has already been framed, so the records inside it must fit (Kafka's
/// `DefaultRecord` throws `InvalidRecordException` for these).
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) const fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    pub(super) const fn pos(&self) -> usize {
        self.pos
    }

    pub(super) const fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    pub(super) fn u8(&mut self, ctx: &'static str) -> Result<u8, RecordsError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(RecordsError::InvalidRecord(ctx)),
        }
    }

    /// Advances over `n` bytes and returns where they start.
    #[inline(always)]
    pub(super) fn skip(&mut self, n: usize, ctx: &'static str) -> Result<usize, RecordsError> {
        if n > self.remaining() {
            return Err(RecordsError::InvalidRecord(ctx));
        }
        let start = self.pos;
        self.pos += n;
        Ok(start)
    }

    /// A zig-zag varint (`i32`).
    #[inline(always)]
    pub(super) fn varint(&mut self, ctx: &'static str) -> Result<i32, RecordsError> {
        let raw = self.uvarint(ctx)?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// An unsigned varint of at most 5 bytes. When 5 bytes remain the loop runs over a fixed
    /// array (unrolled, no bounds checks); only the last bytes of a buffer take the slow path.
    #[inline(always)]
    fn uvarint(&mut self, ctx: &'static str) -> Result<u32, RecordsError> {
        let Some(bytes) = self.buf.get(self.pos..).and_then(<[u8]>::first_chunk::<MAX_VARINT_BYTES>) else {
            return self.uvarint_slow(ctx);
        };
        let mut value: u32 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            value |= u32::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(RecordsError::VarintTooLong(ctx))
    }

    #[cold]
    fn uvarint_slow(&mut self, ctx: &'static str) -> Result<u32, RecordsError> {
        let mut value: u32 = 0;
        for i in 0..MAX_VARINT_BYTES {
            let b = self.u8(ctx)?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordsError::VarintTooLong(ctx))
    }

    /// A zig-zag varlong (`i64`).
    #[inline(always)]
    pub(super) fn varlong(&mut self, ctx: &'static str) -> Result<i64, RecordsError> {
        let raw = self.uvarlong(ctx)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// An unsigned varlong of at most 10 bytes; fast path as in `uvarint`.
    #[inline(always)]
    fn uvarlong(&mut self, ctx: &'static str) -> Result<u64, RecordsError> {
        let Some(bytes) = self.buf.get(self.pos..).and_then(<[u8]>::first_chunk::<MAX_VARLONG_BYTES>) else {
            return self.uvarlong_slow(ctx);
        };
        let mut value: u64 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(RecordsError::VarintTooLong(ctx))
    }

    #[cold]
    fn uvarlong_slow(&mut self, ctx: &'static str) -> Result<u64, RecordsError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARLONG_BYTES {
            let b = self.u8(ctx)?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordsError::VarintTooLong(ctx))
    }

    /// A varint length where -1 means null; any other negative value is an error. Returns
    /// the start and length of the bytes, which are skipped.
    #[inline(always)]
    pub(super) fn nullable_span(&mut self, ctx: &'static str) -> Result<Option<(usize, usize)>, RecordsError> {
        match self.varint(ctx)? {
            -1 => Ok(None),
            n if n < 0 => Err(RecordsError::InvalidRecord(ctx)),
            n => {
                let len = n as usize;
                Ok(Some((self.skip(len, ctx)?, len)))
            }
        }
    }
}

/// Appends a zig-zag varint.
pub(super) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarlong(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Appends a zig-zag varlong.
pub(super) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarlong(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_uvarlong(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes a zig-zag varint takes.
pub(super) const fn varint_len(v: i32) -> usize {
    uvarlong_len(((v << 1) ^ (v >> 31)) as u32 as u64)
}

/// Bytes a zig-zag varlong takes.
pub(super) const fn varlong_len(v: i64) -> usize {
    uvarlong_len(((v << 1) ^ (v >> 63)) as u64)
}

const fn uvarlong_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kafka_examples() {
        // zig-zag: 0 -> 00, -1 -> 01, 1 -> 02, 300 -> d8 04.
        let mut out = Vec::new();
        for v in [0, -1, 1, 300] {
            put_varint(&mut out, v);
        }
        assert_eq!(out, [0x00, 0x01, 0x02, 0xd8, 0x04]);
        let mut c = Cursor::new(&out, 0);
        for v in [0, -1, 1, 300] {
            assert_eq!(c.varint("t"), Ok(v));
        }
        assert_eq!(c.varint("t"), Err(RecordsError::InvalidRecord("t")));
    }

    #[test]
    fn overlong_varints_are_errors() {
        let b = [0xffu8; 11];
        assert_eq!(Cursor::new(&b, 0).varint("v"), Err(RecordsError::VarintTooLong("v")));
        assert_eq!(Cursor::new(&b, 0).varlong("v"), Err(RecordsError::VarintTooLong("v")));
    }

    #[test]
    fn nullable_span_rejects_below_minus_one_and_overruns() {
        let mut out = Vec::new();
        put_varint(&mut out, -2);
        assert!(matches!(Cursor::new(&out, 0).nullable_span("k"), Err(RecordsError::InvalidRecord(_))));
        out.clear();
        put_varint(&mut out, i32::MAX);
        assert!(matches!(Cursor::new(&out, 0).nullable_span("k"), Err(RecordsError::InvalidRecord(_))));
    }

    proptest! {
        #[test]
        fn varints_round_trip(a in any::<i32>(), b in any::<i64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, a);
            prop_assert_eq!(out.len(), varint_len(a));
            put_varlong(&mut out, b);
            prop_assert_eq!(out.len(), varint_len(a) + varlong_len(b));
            let mut c = Cursor::new(&out, 0);
            prop_assert_eq!(c.varint("a"), Ok(a));
            prop_assert_eq!(c.varlong("b"), Ok(b));
            prop_assert_eq!(c.remaining(), 0);
        }
    }
}
