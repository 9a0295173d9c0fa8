//! The batch `attributes` field: compression codec, timestamp type and the flag bits.
//!
//! [`Attributes`] keeps the raw `i16`, so bits kelp does not know survive a rewrite; the
//! typed getters read it. Bit layout (Kafka's `DefaultRecordBatch`): 0-2 compression,
//! 3 timestamp type, 4 transactional, 5 control, 6 delete horizon (KIP-534).

use core::fmt;

use super::RecordsError;

/// A record batch compression codec (attribute bits 0-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Compression {
    /// Records are stored as they are.
    #[default]
    None = 0,
    /// gzip (RFC 1952).
    Gzip = 1,
    /// Snappy: Kafka's Java client writes the xerial framing, other clients raw blocks.
    Snappy = 2,
    /// LZ4 frame format (KIP-57).
    Lz4 = 3,
    /// Zstandard (KIP-110).
    Zstd = 4,
}

impl Compression {
    /// Every supported codec, in id order.
    pub const ALL: [Self; 5] = [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd];

    /// The codec with this wire id, if it is one Kafka defines (0-4).
    #[must_use]
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The wire id.
    #[must_use]
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// Kafka's name for the codec (`compression.type`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a batch's timestamps mean (attribute bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer; every record carries its own.
    #[default]
    CreateTime,
    /// Set by the broker on append; every record's timestamp is the batch's maxTimestamp.
    LogAppendTime,
}

/// The raw `attributes` of a batch, with typed accessors. Unknown bits are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attributes(pub i16);

impl Attributes {
    /// Mask of the compression codec bits.
    pub const COMPRESSION_MASK: i16 = 0x07;
    /// Timestamp type bit: set for LogAppendTime.
    pub const LOG_APPEND_TIME: i16 = 1 << 3;
    /// The batch belongs to a transaction.
    pub const TRANSACTIONAL: i16 = 1 << 4;
    /// The batch holds control records (transaction markers).
    pub const CONTROL: i16 = 1 << 5;
    /// baseTimestamp holds the delete horizon (KIP-534).
    pub const DELETE_HORIZON: i16 = 1 << 6;

    /// The raw compression id (0-7).
    #[must_use]
    pub const fn compression_id(self) -> u8 {
        (self.0 & Self::COMPRESSION_MASK) as u8
    }

    /// The compression codec; ids 5-7 are an error.
    pub const fn compression(self) -> Result<Compression, RecordsError> {
        match Compression::from_id(self.compression_id()) {
            Some(c) => Ok(c),
            None => Err(RecordsError::UnsupportedCompression(self.compression_id())),
        }
    }

    /// The timestamp type.
    #[must_use]
    pub const fn timestamp_type(self) -> TimestampType {
        if self.has(Self::LOG_APPEND_TIME) { TimestampType::LogAppendTime } else { TimestampType::CreateTime }
    }

    /// Whether the batch belongs to a transaction.
    #[must_use]
    pub const fn is_transactional(self) -> bool {
        self.has(Self::TRANSACTIONAL)
    }

    /// Whether the batch holds control records.
    #[must_use]
    pub const fn is_control(self) -> bool {
        self.has(Self::CONTROL)
    }

    /// Whether baseTimestamp is the delete horizon.
    #[must_use]
    pub const fn has_delete_horizon(self) -> bool {
        self.has(Self::DELETE_HORIZON)
    }

    const fn has(self, bit: i16) -> bool {
        self.0 & bit != 0
    }

    /// These attributes with the compression bits replaced.
    #[must_use]
    pub const fn with_compression(self, c: Compression) -> Self {
        Self((self.0 & !Self::COMPRESSION_MASK) | c.id() as i16)
    }

    /// These attributes with the timestamp type bit replaced.
    #[must_use]
    pub const fn with_timestamp_type(self, t: TimestampType) -> Self {
        self.with(Self::LOG_APPEND_TIME, matches!(t, TimestampType::LogAppendTime))
    }

    /// These attributes with `bit` (one of the consts above) set or cleared.
    #[must_use]
    pub const fn with(self, bit: i16, on: bool) -> Self {
        if on { Self(self.0 | bit) } else { Self(self.0 & !bit) }
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attributes")
            .field("raw", &self.0)
            .field("compression", &self.compression_id())
            .field("timestamp_type", &self.timestamp_type())
            .field("transactional", &self.is_transactional())
            .field("control", &self.is_control())
            .field("delete_horizon", &self.has_delete_horizon())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_read_and_write() {
        let a = Attributes::default()
            .with_compression(Compression::Zstd)
            .with_timestamp_type(TimestampType::LogAppendTime)
            .with(Attributes::TRANSACTIONAL, true);
        assert_eq!(a.0, 4 | 8 | 16);
        assert_eq!(a.compression(), Ok(Compression::Zstd));
        assert_eq!(a.timestamp_type(), TimestampType::LogAppendTime);
        assert!(a.is_transactional() && !a.is_control() && !a.has_delete_horizon());
        assert_eq!(a.with(Attributes::TRANSACTIONAL, false).0, 12);
    }

    #[test]
    fn compression_ids_5_to_7_are_rejected() {
        for id in 0..8u8 {
            let got = Attributes(i16::from(id)).compression();
            match Compression::from_id(id) {
                Some(c) => assert_eq!(got, Ok(c)),
                None => assert_eq!(got, Err(RecordsError::UnsupportedCompression(id))),
            }
        }
        assert_eq!(Compression::from_id(5), None);
        assert_eq!(Compression::Lz4.to_string(), "lz4");
    }
}
