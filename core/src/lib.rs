//! kelp-core: the sans-IO heart of kelp, a Kafka-wire-protocol gateway.
//!
//! This crate takes request bytes and produces response bytes plus storage commands; it does no
//! IO, reads no clock and spawns no threads. Drivers (tokio, mio) move the bytes and run the
//! storage commands.
//!
//! What is here today:
//! - [`codec`]: the Kafka wire codec, generated from Kafka's JSON message specs (every API a
//!   client or admin tool sends to a broker, at every stable version), with the hand-written
//!   primitives it stands on. Decoding is zero-copy and bounded; encoding is infallible.
//! - [`records`]: RecordBatch v2 parsing, validation, iteration, building and compression.
//! - [`fuzzing`]: the bodies of the cargo-fuzz targets, compiled by every build.
//!
//! Decoding a request frame (size prefix already removed):
//! ```
//! use bytes::Bytes;
//! use kelp_core::codec::{ApiKey, Reader, generated::api_versions::ApiVersionsRequest, Message};
//!
//! let req = ApiVersionsRequest::default();
//! let bytes = req.to_bytes(3);
//! let mut reader = Reader::new(&bytes);
//! let back = ApiVersionsRequest::decode(&mut reader, 3).unwrap();
//! assert_eq!(back, req);
//! assert_eq!(ApiKey::API_VERSIONS.name(), Some("ApiVersions"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod broker;
pub mod codec;
pub mod config;
pub mod conn;
pub mod error;
pub mod fuzzing;
pub mod group;
pub mod io;
pub mod log;
pub mod mem_store;
pub mod records;
pub mod request;
pub mod rng;
pub(crate) mod state;
pub mod stats;
pub mod time;
pub mod topics;

pub use broker::Broker;
pub use config::Config;
pub use io::{CmdId, Command, Completion, ConnId, Input, Output};
pub use time::{Instant, Now};
