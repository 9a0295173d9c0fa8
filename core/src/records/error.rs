//! The record-batch error: a small `Copy` value with static context, no allocation, and the
//! Kafka error code a broker answers with for it.

use core::fmt;

use crate::codec::ErrorCode;

/// Why a record set, a batch or a record was rejected. Every variant is `Copy` and carries only
/// static context, so producing one never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordsError {
    /// The input ended inside the named structure. A fetch response may legally end with a
    /// partial batch; [`RecordsError::is_truncation`] lets the caller tell this case apart.
    Truncated(&'static str),
    /// A length or count read from the wire is negative, below its minimum, or larger than the
    /// bytes that remain.
    InvalidLength(&'static str),
    /// A varint or varlong ran past its maximum encoded size.
    VarintTooLong(&'static str),
    /// A magic 0 or 1 message set: Kafka 4 no longer reads or writes those.
    LegacyMagic(i8),
    /// A magic byte Kafka never defined.
    UnknownMagic(i8),
    /// The stored CRC32C does not match the bytes it covers.
    CrcMismatch {
        /// The CRC found in the batch header.
        stored: u32,
        /// The CRC computed over attributes..end.
        computed: u32,
    },
    /// Compression id 5, 6 or 7 in the attributes.
    UnsupportedCompression(u8),
    /// A header field disagrees with the others (negative record count, lastOffsetDelta
    /// that does not match the count).
    InvalidBatch(&'static str),
    /// A record inside a well-formed batch is malformed.
    InvalidRecord(&'static str),
    /// The compressed records section could not be decompressed.
    Decompression(&'static str),
    /// Decompressing would produce more than the allowed number of bytes.
    DecompressedTooLarge {
        /// The limit the caller gave.
        limit: usize,
    },
    /// The builder was given something a batch cannot hold (a field longer than `i32::MAX`,
    /// offset deltas out of order, too many records).
    Unencodable(&'static str),
}

impl RecordsError {
    /// The Kafka error code a broker puts in a produce response for this error.
    ///
    /// Follows Kafka's broker: structural damage (lengths, CRC, truncation, undecodable
    /// compressed data) is `CORRUPT_MESSAGE`; a batch whose CRC holds but whose header fields
    /// or records are inconsistent is `INVALID_RECORD` (Kafka's `LogValidator` and
    /// `DefaultRecord` throw `InvalidRecordException` for those); unknown codecs are
    /// `UNSUPPORTED_COMPRESSION_TYPE`; magic 0/1 is `UNSUPPORTED_FOR_MESSAGE_FORMAT`; a
    /// decompression bomb beyond the limit is `MESSAGE_TOO_LARGE`. (`Unencodable` comes from
    /// the builder, never from a client's bytes; it maps to `CORRUPT_MESSAGE` for totality.)
    #[must_use]
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::Truncated(_)
            | Self::InvalidLength(_)
            | Self::VarintTooLong(_)
            | Self::UnknownMagic(_)
            | Self::CrcMismatch { .. }
            | Self::Decompression(_)
            | Self::Unencodable(_) => ErrorCode::CORRUPT_MESSAGE,
            Self::InvalidBatch(_) | Self::InvalidRecord(_) => ErrorCode::INVALID_RECORD,
            Self::LegacyMagic(_) => ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            Self::UnsupportedCompression(_) => ErrorCode::UNSUPPORTED_COMPRESSION_TYPE,
            Self::DecompressedTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
        }
    }

    /// Whether the input simply ended early (a partial trailing batch), as opposed to being
    /// damaged.
    #[must_use]
    pub fn is_truncation(self) -> bool {
        matches!(self, Self::Truncated(_))
    }
}

impl fmt::Display for RecordsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(ctx) => write!(f, "input ended inside {ctx}"),
            Self::InvalidLength(ctx) => write!(f, "length out of range for {ctx}"),
            Self::VarintTooLong(ctx) => write!(f, "varint too long in {ctx}"),
            Self::LegacyMagic(m) => {
                write!(f, "magic {m} message sets are not supported (Kafka 4 dropped them)")
            }
            Self::UnknownMagic(m) => write!(f, "unknown record batch magic {m}"),
            Self::CrcMismatch { stored, computed } => {
                write!(f, "CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            Self::UnsupportedCompression(id) => write!(f, "unsupported compression id {id}"),
            Self::InvalidBatch(ctx) => write!(f, "invalid record batch: {ctx}"),
            Self::InvalidRecord(ctx) => write!(f, "invalid record: {ctx}"),
            Self::Decompression(ctx) => write!(f, "cannot decompress records: {ctx}"),
            Self::DecompressedTooLarge { limit } => {
                write!(f, "decompressed records exceed the limit of {limit} bytes")
            }
            Self::Unencodable(ctx) => write!(f, "cannot encode record batch: {ctx}"),
        }
    }
}

impl std::error::Error for RecordsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_follow_kafka() {
        let crc = RecordsError::CrcMismatch { stored: 1, computed: 2 };
        assert_eq!(crc.error_code(), ErrorCode::CORRUPT_MESSAGE);
        assert_eq!(RecordsError::Truncated("b").error_code(), ErrorCode::CORRUPT_MESSAGE);
        assert_eq!(RecordsError::InvalidRecord("r").error_code(), ErrorCode::INVALID_RECORD);
        assert_eq!(RecordsError::InvalidBatch("b").error_code(), ErrorCode::INVALID_RECORD);
        assert_eq!(RecordsError::UnsupportedCompression(6).error_code(), ErrorCode::UNSUPPORTED_COMPRESSION_TYPE);
        assert_eq!(RecordsError::LegacyMagic(1).error_code(), ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT);
        assert_eq!(ErrorCode::CORRUPT_MESSAGE.0, 2);
        assert_eq!(ErrorCode::INVALID_RECORD.0, 87);
        assert_eq!(ErrorCode::UNSUPPORTED_COMPRESSION_TYPE.0, 76);
        assert_eq!(ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT.0, 43);
    }

    #[test]
    fn only_truncation_is_truncation() {
        assert!(RecordsError::Truncated("x").is_truncation());
        assert!(!RecordsError::InvalidLength("x").is_truncation());
        assert!(RecordsError::LegacyMagic(0).to_string().contains("magic 0"));
    }
}
