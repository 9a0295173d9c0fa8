//! RecordBatch v2 (magic 2): parsing, validation, iteration, building, in-place rewrites and
//! the four compression codecs.
//!
//! Kafka 4 reads and writes only v2 batches; magic 0/1 message sets are rejected with
//! [`RecordsError::LegacyMagic`]. Everything here is zero-copy over [`bytes::Bytes`]: a
//! [`RecordBatch`] is a view of its bytes, and keys, values and headers are slices of the
//! (decompressed) records section. Every length read from the wire is checked against the
//! bytes that remain, decompression takes an output limit, and no input panics.
//!
//! - [`Batches`] walks a record set (concatenated batches; a fetch response may end in a
//!   partial one, reported as [`RecordsError::Truncated`]).
//! - [`RecordBatch::validate`] is the broker's cheap produce check (header fields + CRC32C,
//!   no record decoding); [`RecordBatch::validate_full`] also walks every record.
//! - [`RecordBatch::records`] decompresses and iterates [`Record`]s; headers decode lazily.
//! - [`rewrite`] sets the base offset / leader epoch (CRC untouched) and LogAppendTime (CRC
//!   recomputed) in place.
//! - [`RecordBatchBuilder`] writes a batch; [`compression`] holds the codecs.
//! - [`recompress`] re-encodes a batch with another codec (a topic's `compression.type`),
//!   keeping every record and the producer fields.
//!
//! This module knows nothing of topics, partitions or requests; the produce and fetch
//! handlers and the storage backends call into it.
//!
//! ```
//! use kelp_core::records::{Batches, Compression, Header, RecordBatchBuilder};
//!
//! let mut builder = RecordBatchBuilder::new(Compression::Lz4).producer(1000, 0, 0);
//! builder.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[Header::new("trace", None)])?;
//! let bytes = builder.build()?;
//!
//! for batch in Batches::new(bytes) {
//!     let batch = batch?;
//!     batch.validate()?;
//!     for record in &batch.records(1 << 20)? {
//!         let record = record?;
//!         assert_eq!(record.value_slice(), Some(&b"value"[..]));
//!         assert_eq!(record.headers().count(), 1);
//!     }
//! }
//! # Ok::<(), kelp_core::records::RecordsError>(())
//! ```

mod attributes;
mod batch;
mod builder;
pub mod compression;
mod error;
pub mod fuzz;
mod recompress;
mod record;
pub mod rewrite;
mod varint;

pub use attributes::{Attributes, Compression, TimestampType};
pub use batch::{
    Batches, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, MIN_BATCH_LENGTH, RecordBatch, frame, header_max_timestamp,
};
pub use builder::{NO_PRODUCER_ID, NO_TIMESTAMP, RecordBatchBuilder};
pub use error::RecordsError;
pub use recompress::recompress;
pub use record::{BatchRecords, Header, Headers, OwnedRecord, Record, Records};

#[cfg(test)]
mod tests;
