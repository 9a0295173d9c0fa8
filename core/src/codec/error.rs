//! The decode error: a small `Copy` value with static context, no allocation.

use core::fmt;

/// Why a frame or a structure could not be decoded. Each variant carries a static description
/// of the field being read, for logs; none of them allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended before the named field was complete.
    Truncated(&'static str),
    /// A length or count read from the wire is negative where that is not allowed, or larger
    /// than the remaining input could possibly hold.
    LengthOutOfRange(&'static str),
    /// A variable-length integer ran past its maximum encoded size.
    VarintTooLong(&'static str),
    /// A string was not valid UTF-8.
    InvalidUtf8(&'static str),
    /// A null was read where the field is not nullable at this version.
    UnexpectedNull(&'static str),
    /// The version is outside the range the structure supports.
    UnsupportedVersion {
        /// The API or structure name.
        what: &'static str,
        /// The version that was asked for.
        version: i16,
    },
    /// Bytes were left after a structure that must fill its buffer.
    TrailingBytes(&'static str),
    /// The value is well-formed but not one the format allows (e.g. a bad magic byte).
    Invalid(&'static str),
    /// The request names an API key the codec does not know.
    UnknownApiKey(i16),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(ctx) => write!(f, "input ended inside {ctx}"),
            Self::LengthOutOfRange(ctx) => write!(f, "length out of range for {ctx}"),
            Self::VarintTooLong(ctx) => write!(f, "varint too long in {ctx}"),
            Self::InvalidUtf8(ctx) => write!(f, "invalid UTF-8 in {ctx}"),
            Self::UnexpectedNull(ctx) => write!(f, "null is not allowed for {ctx}"),
            Self::UnsupportedVersion { what, version } => {
                write!(f, "{what} does not support version {version}")
            }
            Self::TrailingBytes(ctx) => write!(f, "{ctx}"),
            Self::Invalid(ctx) => write!(f, "invalid {ctx}"),
            Self::UnknownApiKey(k) => write!(f, "unknown API key {k}"),
        }
    }
}

impl std::error::Error for DecodeError {}
