//! kelp-core: the sans-IO heart of kelp, a Kafka-wire-protocol gateway.
//!
//! This crate takes request bytes and produces response bytes plus storage commands; it does no
//! IO, reads no clock and spawns no threads. Drivers (tokio, mio, the simulator, the test
//! harness) move the bytes, run the storage commands and hand in the time.
//!
//! What it holds:
//! - [`broker`]: the [`Broker`] state machine: [`Broker::handle_input`],
//!   [`Broker::poll_output`], [`Broker::poll_timeout`]; the plumbing: framing, dispatch,
//!   per-connection response order and back-pressure, and carrying out what handlers ask for.
//! - [`io`]: the whole driver contract: [`Input`], [`Output`], [`Command`], [`Completion`].
//! - `api` (private): one request handler module per API family, each a function over the
//!   handlers' state (`state`: the topic table, groups, producer ids, fetch sessions) and an
//!   effect sink (replies, storage commands, timers, closes, parked jobs). Inside the crate
//!   the dependencies run one way: broker -> api -> {state, group, io}.
//! - [`group`]: consumer groups: the classic coordinator, the KIP-848 consumer coordinator,
//!   assignors and committed offsets, with how they are stored.
//! - [`log`]: one partition's state: log start, high watermark, appends in flight, producers.
//! - [`topics`]: topic naming rules and topic-level configs; [`config`]: the broker's [`Config`].
//! - `conn` (private): one connection's frame buffer and in-flight queue.
//! - [`mem_store`]: `MemStore`, the deterministic reference executor of [`Command`]s.
//! - [`codec`]: the Kafka wire codec, generated from Kafka's JSON message specs (every API a
//!   client or admin tool sends to a broker, at every stable version), with the hand-written
//!   primitives it stands on. Decoding is zero-copy and bounded; encoding is infallible.
//! - [`records`]: RecordBatch v2 parsing, validation, iteration, building and compression.
//! - [`time`]: [`Instant`], [`Now`] and the timer table; [`rng`]: the seeded generator every
//!   id comes from; [`stats`]: the broker's counters and their Prometheus rendering.
//! - [`fuzzing`]: the bodies of the cargo-fuzz targets, compiled by every build.
//!
//! # The driver loop
//! Feed one input, then drain [`Broker::poll_output`] to `None`, doing what each output says;
//! run storage commands and hand their answers back as [`Input::Completed`]; stop and start
//! reading a connection when told ([`Output::PauseRead`], [`Output::ResumeRead`]); come back
//! with [`Input::Tick`] at [`Broker::poll_timeout`]. Here the store is a [`mem_store::MemStore`]
//! run inline and the "sockets" are buffers:
//! ```
//! use std::collections::{HashSet, VecDeque};
//!
//! use kelp_core::codec::encode_request_frame;
//! use kelp_core::codec::generated::{RequestBody, api_versions::ApiVersionsRequest};
//! use kelp_core::mem_store::MemStore;
//! use kelp_core::{Broker, CmdId, Completion, Config, ConnId, Input, Instant, Now, Output};
//!
//! /// What a driver keeps beside the broker.
//! #[derive(Default)]
//! struct Io {
//!     store: MemStore,
//!     /// Storage answers not yet handed to the broker.
//!     done: VecDeque<(CmdId, Completion)>,
//!     /// What the "socket" holds: sent, not yet written (and so not reported).
//!     unwritten: Vec<u8>,
//!     /// What the client has received.
//!     received: Vec<u8>,
//!     paused: HashSet<ConnId>,
//!     closed: HashSet<ConnId>,
//! }
//!
//! /// Drains every output, then hands back storage answers (draining again after each).
//! fn run(broker: &mut Broker, io: &mut Io, now: Now) {
//!     loop {
//!         while let Some(out) = broker.poll_output() {
//!             match out {
//!                 Output::Send { bytes, .. } => bytes.iter().for_each(|b| io.unwritten.extend_from_slice(b)),
//!                 Output::Storage { cmd, command } => io.done.push_back((cmd, io.store.execute(command))),
//!                 Output::Close { conn, .. } => drop(io.closed.insert(conn)),
//!                 Output::PauseRead { conn } => drop(io.paused.insert(conn)),
//!                 Output::ResumeRead { conn } => drop(io.paused.remove(&conn)),
//!             }
//!         }
//!         let Some((cmd, result)) = io.done.pop_front() else { return };
//!         broker.handle_input(now, Input::Completed { cmd, result });
//!     }
//! }
//!
//! let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
//! // A tiny output allowance, so that one unwritten answer pauses reading.
//! let config = Config { max_unwritten_per_conn: 64, ..Config::default() };
//! let mut broker = Broker::new(config, 7, now);
//! let mut io = Io::default();
//! run(&mut broker, &mut io, now); // the first output asks the store to recover
//! assert!(broker.is_ready());
//!
//! let conn = ConnId(1);
//! broker.handle_input(now, Input::Accepted { conn, peer: "127.0.0.1:50000".parse().unwrap(), origin: Default::default() });
//! run(&mut broker, &mut io, now);
//! // Three pipelined requests in one read.
//! let body = RequestBody::ApiVersions(ApiVersionsRequest::default());
//! let bytes: Vec<u8> = (1..=3).flat_map(|corr| encode_request_frame(&body, 3, corr, None)).collect();
//! broker.handle_input(now, Input::Received { conn, bytes: &bytes });
//! run(&mut broker, &mut io, now);
//! assert!(io.paused.contains(&conn), "the first answer is unwritten: reading stops");
//!
//! // The socket takes the bytes; reported written, they let the broker read on.
//! while !io.unwritten.is_empty() {
//!     let n = io.unwritten.len();
//!     io.received.append(&mut io.unwritten);
//!     broker.handle_input(now, Input::Written { conn, bytes: n });
//!     run(&mut broker, &mut io, now);
//! }
//! assert!(!io.paused.contains(&conn) && io.closed.is_empty(), "all answered: reading resumes");
//! let mut answers = Vec::new();
//! let mut rest = &io.received[..];
//! while let Some((size, tail)) = rest.split_first_chunk::<4>() {
//!     let len = usize::try_from(i32::from_be_bytes(*size)).unwrap();
//!     answers.push(i32::from_be_bytes(tail[..4].try_into().unwrap())); // the correlation id
//!     rest = &tail[len..];
//! }
//! assert_eq!(answers, [1, 2, 3], "in request order");
//!
//! // Timers: sleep until poll_timeout, then Tick (here: the periodic retention check).
//! if let Some(at) = broker.poll_timeout() {
//!     broker.handle_input(Now { mono: at, wall_ms: now.wall_ms }, Input::Tick);
//!     run(&mut broker, &mut io, now);
//!     assert!(broker.poll_timeout().is_none_or(|next| next > at));
//! }
//! ```
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

mod api;
pub mod broker;
pub mod cleaner;
pub mod codec;
pub mod config;
mod conn;
pub mod error;
pub mod fuzzing;
pub mod group;
pub mod io;
pub mod log;
pub mod mem_store;
pub mod records;
pub mod request;
pub mod rng;
pub mod schemas;
pub mod security;
pub(crate) mod state;
pub mod stats;
pub mod time;
pub mod topics;
pub mod txn;
pub mod typed;

pub use api::metadata::{CLUSTER_OPS, OPS_NOT_REQUESTED, TOPIC_OPS};
pub use api::{SERVED, served};
pub use broker::Broker;
pub use config::Config;
pub use io::{CmdId, Command, Completion, ConnId, Input, Output};
pub use time::{Instant, Now};
