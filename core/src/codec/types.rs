//! Wire value types: zero-copy strings, UUIDs and kept unknown tagged fields.

use bytes::Bytes;
use core::fmt;

/// A UTF-8 string that borrows from the frame it was read from (a [`Bytes`] checked once).
///
/// Equality, ordering and hashing are those of the string, so maps keyed by `KStr` can be
/// searched with a `&str`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KStr(Bytes);

impl core::hash::Hash for KStr {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl core::borrow::Borrow<str> for KStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl KStr {
    /// Wraps bytes after checking they are UTF-8.
    pub fn from_utf8(b: Bytes) -> Result<Self, core::str::Utf8Error> {
        core::str::from_utf8(&b)?;
        Ok(Self(b))
    }

    /// A string from a static literal, without copying.
    #[must_use]
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // The bytes were checked in `from_utf8` or come from a `str`; this cannot fail, and
        // the fallback keeps the crate free of both panics and `unsafe`.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for KStr {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for KStr {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl core::ops::Deref for KStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for KStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for KStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for KStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for KStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kafka UUID (topic ids, directory ids): 16 raw bytes on the wire.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, Kafka's "no id".
    pub const ZERO: Self = Self([0; 16]);

    /// Builds a UUID from its two 64-bit halves (most significant first).
    #[must_use]
    pub fn from_u64_pair(hi: u64, lo: u64) -> Self {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&hi.to_be_bytes());
        b[8..].copy_from_slice(&lo.to_be_bytes());
        Self(b)
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl fmt::Display for Uuid {
    /// Kafka prints UUIDs as unpadded URL-safe base64 (22 characters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 22];
        let mut o = 0;
        for chunk in self.0.chunks(3) {
            let mut n = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                n |= u32::from(*b) << (16 - 8 * i);
            }
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out[o] = BASE64URL[((n >> (18 - 6 * i)) & 63) as usize];
                o += 1;
            }
        }
        f.write_str(core::str::from_utf8(&out).unwrap_or_default())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// A tagged field this version of the codec does not know. It is kept as read and written
/// back unchanged, so a newer peer's fields survive a pass through kelp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawTaggedField {
    /// The field's tag.
    pub tag: u32,
    /// The field's raw data.
    pub data: Bytes,
}

/// A record set, Kafka's `records` wire type: whole record batches back to back, held as one
/// or more chunks. Decoding gives one chunk, a slice of the frame. A fetch response built from
/// stored batches keeps each as its own chunk and the writer sends them as they are, so record
/// bytes are never copied into a response.
///
/// One chunk (every decoded record set) costs no more than a `Bytes`; several are kept in a
/// vector.
#[derive(Clone)]
pub struct RecordSet(Repr);

#[derive(Clone)]
enum Repr {
    One(Bytes),
    Many { chunks: Vec<Bytes>, len: usize },
}

impl Default for RecordSet {
    fn default() -> Self {
        Self(Repr::One(Bytes::new()))
    }
}

impl RecordSet {
    /// An empty record set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk (whole batches).
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        match &mut self.0 {
            Repr::One(b) if b.is_empty() => *b = chunk,
            Repr::One(b) => {
                let len = b.len() + chunk.len();
                let first = core::mem::take(b);
                self.0 = Repr::Many { chunks: vec![first, chunk], len };
            }
            Repr::Many { chunks, len } => {
                *len += chunk.len();
                chunks.push(chunk);
            }
        }
    }

    /// Total length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::One(b) => b.len(),
            Repr::Many { len, .. } => *len,
        }
    }

    /// Whether it holds no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, in order.
    #[must_use]
    pub fn chunks(&self) -> &[Bytes] {
        match &self.0 {
            Repr::One(b) if b.is_empty() => &[],
            Repr::One(b) => core::slice::from_ref(b),
            Repr::Many { chunks, .. } => chunks,
        }
    }

    /// The bytes as one buffer: free for a single chunk, a copy otherwise.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::One(b) => b.clone(),
            Repr::Many { chunks, len } => {
                let mut out = Vec::with_capacity(*len);
                for c in chunks {
                    out.extend_from_slice(c);
                }
                out.into()
            }
        }
    }
}

impl From<Bytes> for RecordSet {
    fn from(b: Bytes) -> Self {
        Self(Repr::One(b))
    }
}

impl FromIterator<Bytes> for RecordSet {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Self {
        let mut r = Self::new();
        for b in iter {
            r.push(b);
        }
        r
    }
}

impl PartialEq for RecordSet {
    /// Equal when the bytes are, however they are chunked.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.chunks().iter().flat_map(|c| c.iter()).eq(other.chunks().iter().flat_map(|c| c.iter()))
    }
}

impl Eq for RecordSet {}

impl fmt::Debug for RecordSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordSet({} bytes in {} chunks: {:?})", self.len(), self.chunks().len(), self.to_bytes())
    }
}

/// The tagged fields a struct carried that this codec does not know, in the order read.
///
/// Almost always empty, so it is one pointer wide and empty costs nothing to create, move or
/// drop; the list is allocated only when a peer actually sends unknown fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnknownTaggedFields(Option<Box<[RawTaggedField]>>);

impl UnknownTaggedFields {
    /// No fields.
    #[must_use]
    pub const fn new() -> Self {
        Self(None)
    }

    /// Appends a field (kept in order; write them in ascending tag order).
    pub fn push(&mut self, field: RawTaggedField) {
        let mut v = self.0.take().map(Vec::from).unwrap_or_default();
        v.push(field);
        self.0 = Some(v.into_boxed_slice());
    }

    /// The fields.
    #[must_use]
    pub fn as_slice(&self) -> &[RawTaggedField] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// How many fields there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

impl From<Vec<RawTaggedField>> for UnknownTaggedFields {
    fn from(v: Vec<RawTaggedField>) -> Self {
        if v.is_empty() { Self(None) } else { Self(Some(v.into_boxed_slice())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sets_compare_by_content_however_chunked() {
        let mut a = RecordSet::new();
        a.push(Bytes::from_static(b"ab"));
        a.push(Bytes::from_static(b"cd"));
        assert_eq!(a, RecordSet::from(Bytes::from_static(b"abcd")));
        assert_eq!((a.len(), a.chunks().len()), (4, 2));
        assert_eq!(a.to_bytes(), "abcd");
        assert!(RecordSet::new().chunks().is_empty());
    }

    #[test]
    fn uuid_prints_as_kafka_does() {
        // Kafka's Uuid.ZERO_UUID prints as "AAAAAAAAAAAAAAAAAAAAAA".
        assert_eq!(Uuid::ZERO.to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(Uuid([0xff; 16]).to_string(), "_____________________w");
    }
}
