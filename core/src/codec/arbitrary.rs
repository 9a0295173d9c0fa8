//! Random wire values for property tests, differential tests and fuzzing.
//!
//! Generated types implement [`crate::codec::Message::random`] on top of this generator. It is
//! a small seeded SplitMix64 so that a failing case is reproduced from one `u64`; values are kept
//! small (short strings and arrays) so nested messages stay cheap to build.

use bytes::Bytes;

use super::{KStr, RawTaggedField, UnknownTaggedFields, Uuid};

/// A seeded source of random wire values.
#[derive(Debug, Clone)]
pub struct Gen {
    state: u64,
}

const ALPHABET: &[&str] = &["a", "b", "Z", "0", "-", ".", "_", "é", "ß", "日", "🦀", " "];

impl Gen {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next raw 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// A random `int8`.
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }
    /// A random `int16`.
    pub fn i16(&mut self) -> i16 {
        self.next_u64() as i16
    }
    /// A random `uint16`.
    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }
    /// A random `int32`, biased towards small and edge values.
    pub fn i32(&mut self) -> i32 {
        match self.below(4) {
            0 => [0, -1, 1, i32::MAX, i32::MIN][self.below(5) as usize],
            1 => self.below(100) as i32,
            _ => self.next_u64() as i32,
        }
    }
    /// A random `int64`, biased towards small and edge values.
    pub fn i64(&mut self) -> i64 {
        match self.below(4) {
            0 => [0, -1, 1, i64::MAX, i64::MIN][self.below(5) as usize],
            1 => self.below(1000) as i64,
            _ => self.next_u64() as i64,
        }
    }
    /// A random finite `float64` (NaN would not compare equal to itself).
    pub fn f64(&mut self) -> f64 {
        f64::from(self.i32()) / 1000.0
    }
    /// A random `bool`.
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
    /// A random UUID.
    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next_u64(), self.next_u64())
    }

    /// A short string, sometimes empty, sometimes with multi-byte characters.
    pub fn string(&mut self) -> KStr {
        let n = self.below(7) as usize;
        let s: String = (0..n).map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize]).collect();
        KStr::from(s)
    }

    /// A string or, when `nullable`, sometimes null.
    pub fn nullable_string(&mut self, nullable: bool) -> Option<KStr> {
        if nullable && self.one_in(4) { None } else { Some(self.string()) }
    }

    /// Short random bytes, sometimes empty.
    pub fn bytes(&mut self) -> Bytes {
        let n = self.below(12) as usize;
        (0..n).map(|_| self.next_u64() as u8).collect::<Vec<u8>>().into()
    }

    /// Bytes or, when `nullable`, sometimes null.
    pub fn nullable_bytes(&mut self, nullable: bool) -> Option<Bytes> {
        if nullable && self.one_in(4) { None } else { Some(self.bytes()) }
    }

    /// An array length: mostly 0 to 2 elements.
    pub fn array_len(&mut self) -> usize {
        self.below(3) as usize
    }

    /// Whether a nullable value should be null this time.
    pub fn null(&mut self, nullable: bool) -> bool {
        nullable && self.one_in(4)
    }

    /// Zero to two unknown tagged fields with ascending tags above `above`.
    pub fn unknown_tagged(&mut self, above: Option<u32>) -> UnknownTaggedFields {
        let mut tag = above.map_or(0, |t| t + 1) + self.below(3) as u32;
        let n = if self.one_in(2) { 0 } else { 1 + self.below(2) as usize };
        (0..n)
            .map(|_| {
                let f = RawTaggedField { tag, data: self.bytes() };
                tag += 1 + self.below(3) as u32;
                f
            })
            .collect::<Vec<_>>()
            .into()
    }
}
