//! The Kafka wire codec.
//!
//! [`generated`] holds one module per API (request and response together), the request and
//! response headers, the [`ApiKey`] table and the [`ErrorCode`] constants, all written by
//! `kelp-codegen` from Kafka's JSON message specs. The hand-written part is small: the bounded
//! [`Reader`], the chunked [`Writer`], the wire types ([`KStr`], [`Uuid`], [`RawTaggedField`]),
//! [`DecodeError`] and the [`Message`] trait every generated struct implements.
//!
//! Decoding borrows from the frame: strings, bytes and record sets are slices of the frame's
//! [`bytes::Bytes`], never copies. Every length read from the wire is checked against the bytes
//! that remain before anything is allocated, so an 8-byte request that claims a 2 GiB array is
//! an error, not an allocation. Encoding cannot fail and can report its exact size first.

#[cfg(feature = "arbitrary")]
pub mod arbitrary;
mod enums;
mod error;
mod frame;
pub mod generated;
mod reader;
mod types;
mod writer;

pub use enums::{AlterConfigOp, ConfigResourceType, ConfigSource};
pub use error::DecodeError;
pub use frame::{decode_request_header, encode_request_frame};
pub use generated::api_key::{ApiInfo, ApiKey, SUPPORTED_APIS};
pub use generated::error_code::ErrorCode;
pub use reader::Reader;
pub use types::{KStr, RawTaggedField, RecordSet, UnknownTaggedFields, Uuid};
pub use writer::{Writer, ZERO_COPY_MIN};

use bytes::Bytes;

/// A versioned Kafka wire structure: a whole request or response body, a header, or a struct
/// nested inside one. Implemented by every generated type.
pub trait Message: Sized + Default + Clone + PartialEq + core::fmt::Debug {
    /// The versions this structure can be read and written at (for nested structs, those of
    /// the message that contains them).
    const VERSIONS: (i16, i16);

    /// Reads one value at `version`. Fails on truncated, oversized or malformed input; never
    /// panics and never allocates more than the remaining input can back.
    fn decode(r: &mut Reader<'_>, version: i16) -> Result<Self, DecodeError>;

    /// Writes the value at `version`. Fields that `version` does not have are skipped;
    /// tagged fields equal to their default are left out, as Kafka does.
    fn encode(&self, w: &mut Writer, version: i16);

    /// The exact number of bytes [`Message::encode`] writes at `version`.
    fn encoded_len(&self, version: i16) -> usize;

    /// A random value that is representable at `version`: fields the version lacks hold their
    /// defaults, so a round trip through the wire gives back an equal value.
    #[cfg(feature = "arbitrary")]
    fn random(g: &mut arbitrary::Gen, version: i16) -> Self;

    /// Encodes into one contiguous buffer of the exact size (byte fields are copied in).
    fn to_bytes(&self, version: i16) -> Bytes {
        let mut w = Writer::contiguous(self.encoded_len(version));
        self.encode(&mut w, version);
        w.into_bytes()
    }

    /// Decodes a whole buffer, failing if bytes are left over.
    fn from_bytes(bytes: &Bytes, version: i16) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let value = Self::decode(&mut r, version)?;
        r.finish("trailing bytes after message")?;
        Ok(value)
    }
}
