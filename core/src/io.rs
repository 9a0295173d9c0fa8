//! The whole contract between the core and a driver: what goes in ([`Input`]), what comes out
//! ([`Output`]), and the storage work the core asks for ([`Command`]) with its answers
//! ([`Completion`]).
//!
//! Storage is data here: a handler that needs the store emits [`Output::Storage`] and parks its
//! reply until the matching [`Input::Completed`] arrives. A store executes commands for one
//! partition in the order they were emitted; commands for different partitions may complete in
//! any order. Each [`CmdId`] is completed exactly once.

use core::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::codec::{DecodeError, ErrorCode, KStr, Uuid};
use crate::records::{Compression, RecordBatch, recompress};

/// A response ready to go, as chunks to write in order (vectored writes).
pub type Frame = SmallVec<[Bytes; 4]>;

/// A connection, numbered by the driver. Never reused while the core knows it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A storage command, numbered by the core.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CmdId(pub u64);

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

impl fmt::Debug for CmdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cmd#{}", self.0)
    }
}

/// How a connection came in: its listener, and what its TLS handshake (done by the driver
/// before the connection is handed to the core) established.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The listener: an index into [`crate::Config::listeners`].
    pub listener: u16,
    /// On a TLS listener whose client presented a verified certificate, the certificate's
    /// subject as a distinguished name (`CN=alice,OU=eng,O=example`); the principal is then
    /// `User:` and this name.
    pub tls_subject: Option<KStr>,
}

impl Origin {
    /// The listener number of in-process connections (`kelp_driver::local`).
    pub const LOCAL_LISTENER: u16 = u16::MAX;

    /// An in-process connection (the schema registry's): trusted, it authenticates as
    /// [`crate::security::INTERNAL`], and is told the first listener's address.
    #[must_use]
    pub const fn local() -> Self {
        Self { listener: Self::LOCAL_LISTENER, tls_subject: None }
    }
}

/// Something that happened, handed to [`crate::Broker::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// A client connected.
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// Who connected.
        peer: SocketAddr,
        /// Through which listener, and what TLS established.
        origin: Origin,
    },
    /// Bytes arrived on a connection: any split of the TCP stream.
    Received {
        /// The connection.
        conn: ConnId,
        /// The bytes, in order.
        bytes: &'a [u8],
    },
    /// Bytes arrived on a connection, handed over rather than lent: as [`Input::Received`],
    /// but the core keeps `bytes` instead of copying them, and the requests cut from them
    /// (the records of a produce request included, on to the store) are slices of them. A
    /// driver that reads into a buffer it can give away uses this one.
    ReceivedOwned {
        /// The connection.
        conn: ConnId,
        /// The bytes, in order: any split of the TCP stream.
        bytes: Bytes,
    },
    /// A storage command finished.
    Completed {
        /// The command.
        cmd: CmdId,
        /// Its result.
        result: Completion,
    },
    /// The driver wrote `bytes` more of the connection's output to its socket. The broker
    /// pauses reading a connection ([`Output::PauseRead`]) while too much of its output is
    /// unwritten, so a client that does not read its responses cannot grow the broker's memory.
    Written {
        /// The connection.
        conn: ConnId,
        /// How many bytes went out.
        bytes: usize,
    },
    /// The peer closed the connection, or the driver dropped it.
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// Timers due at `now` should fire.
    Tick,
}

/// Something the driver must do, drained from [`crate::Broker::poll_output`]. Every duty of a
/// driver comes out here: what to write, what to run against the store, which connections to
/// close, and when to stop and start reading a connection.
#[derive(Debug)]
pub enum Output {
    /// Write these bytes to the connection, in order (one response may be several chunks;
    /// record sets are never copied into them).
    Send {
        /// The connection.
        conn: ConnId,
        /// The chunks to write, in order.
        bytes: Frame,
    },
    /// Run a storage command and report back with [`Input::Completed`].
    Storage {
        /// The command's id.
        cmd: CmdId,
        /// What to do.
        command: Command,
    },
    /// Close the connection after writing what was already sent.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Stop reading from the connection until [`Output::ResumeRead`]: it has too many requests
    /// unanswered or too many response bytes unwritten (back-pressure instead of unbounded
    /// buffering). Bytes the driver already read may still be handed in, but a client that
    /// keeps sending regardless is cut off. A connection starts out read; pauses and resumes
    /// alternate, each sent only when the connection's state changes.
    PauseRead {
        /// The connection.
        conn: ConnId,
    },
    /// Read from the connection again after an [`Output::PauseRead`]. An edge-triggered driver
    /// must try the socket now: data that arrived meanwhile raises no new event.
    ResumeRead {
        /// The connection.
        conn: ConnId,
    },
}

/// Why the core closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The size prefix announced a request larger than the configured maximum.
    FrameTooLarge {
        /// The announced size.
        size: i64,
        /// The limit.
        max: usize,
    },
    /// The request header or body could not be decoded.
    Undecodable(DecodeError),
    /// The request named an API the broker does not serve.
    UnknownApi {
        /// The API key.
        key: i16,
        /// The version asked for.
        version: i16,
    },
    /// The client kept sending while too many of its requests were unanswered.
    TooManyInFlight,
    /// A SASL listener's client sent a request other than ApiVersions and the SASL ones
    /// before it authenticated.
    Unauthenticated {
        /// The API key it sent.
        key: i16,
    },
    /// SASL authentication failed (after its error was answered where the protocol lets it
    /// be). The reason is for the broker's log; the client was told only that it failed.
    Authentication(&'static str),
}

/// A partition's identity in storage. Keyed by topic id, not name: a deleted topic's name can
/// be reused, its id never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// The topic's id.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition: i32,
}

/// A topic as stored: what the broker needs to rebuild it on restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRecord {
    /// The topic's name.
    pub name: KStr,
    /// The topic's id.
    pub id: Uuid,
    /// How many partitions it has (they are numbered 0..partitions).
    pub partitions: i32,
    /// Topic-level config overrides, as set by the user (name, value).
    pub configs: Vec<(KStr, KStr)>,
}

impl TopicRecord {
    /// The override of config `name`, if the topic has one (the last one set wins).
    #[must_use]
    pub fn config(&self, name: &str) -> Option<&str> {
        self.configs.iter().rev().find(|(k, _)| k.as_str() == name).map(|(_, v)| v.as_str())
    }

    /// The topic's `segment.bytes`, or `default` when it has no valid override.
    #[must_use]
    pub fn segment_bytes(&self, default: u64) -> u64 {
        self.config("segment.bytes").and_then(|v| v.trim().parse::<u64>().ok()).filter(|v| *v > 0).unwrap_or(default)
    }
}

/// Kafka's default `segment.bytes` (1 GiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;

/// Kafka's default `segment.ms` (7 days).
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Whether an append starts a new segment, as Kafka's `LogSegment.shouldRoll`: the segment
/// would pass `segment.bytes` (the topic's, else `default_bytes`), or the new batches are more
/// than `segment.ms` newer than the segment's first batch (by record timestamps, so no clock
/// is involved), or the offsets would not fit the index's 32-bit relative offsets. An empty
/// segment never rolls. `segment` is (size, base offset, largest timestamp of its first batch);
/// `append` is (bytes, last offset, largest timestamp).
#[must_use]
pub fn should_roll(topic: &TopicRecord, default_bytes: u64, segment: (u64, i64, i64), append: (u64, i64, i64)) -> bool {
    let ((size, base_offset, first_timestamp), (len, last_offset, max_timestamp)) = (segment, append);
    if size == 0 {
        return false;
    }
    let segment_ms =
        topic.config("segment.ms").and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(DEFAULT_SEGMENT_MS);
    size + len > topic.segment_bytes(default_bytes)
        || (first_timestamp >= 0 && max_timestamp.saturating_sub(first_timestamp) > segment_ms)
        || last_offset - base_offset > i64::from(u32::MAX)
}

/// Storage work the core asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Load everything the store holds; answered with [`Completion::Recovered`]. Sent once,
    /// first, before any other command.
    Recover,
    /// Create or update a topic's metadata.
    PutTopic(TopicRecord),
    /// Delete a topic with all its partitions' data.
    DeleteTopic {
        /// The topic's id.
        topic_id: Uuid,
    },
    /// Append complete record batches whose offsets the core has assigned: the first batch's
    /// base offset is `base_offset` and the last record's offset is `last_offset`. Answered
    /// with [`Completion::Done`] once the batches are durable (they survive a crash of the
    /// store), or with [`Completion::Stored`] once the store holds them but a crash could
    /// still lose them (a SeaweedMQ broker acknowledges records it has only in memory): the
    /// core then learns when they become durable with [`Command::AwaitDurable`].
    ///
    /// With `recompress` set, the store first re-encodes the batches in the topic's codec
    /// with [`Recompress::apply`] (after checking that the append continues the log, before
    /// writing anything) and stores what it returns; if that fails, nothing is stored and the
    /// append fails with its error ([`StorageError::MessageTooLarge`] when a re-encoded batch
    /// is over the topic's limit). The core leaves this CPU-heavy step to the store so that it
    /// runs off the broker's request loop.
    Append {
        /// The partition.
        partition: PartitionKey,
        /// Offset of the first record.
        base_offset: i64,
        /// Offset of the last record.
        last_offset: i64,
        /// The largest record timestamp in the batches.
        max_timestamp: i64,
        /// The batches, back to back, exactly as they are to be returned to fetchers once
        /// `recompress` (if any) is applied: offsets, leader epoch and LogAppendTime are
        /// already stamped. A produced batch comes as its rewritten header beside the
        /// client's bytes after it (see [`AppendBatches`]).
        batches: AppendBatches,
        /// The codec the topic stores batches in, when some batch is in another one.
        recompress: Option<Recompress>,
    },
    /// Read whole batches, starting with the one that holds `offset`, up to `max_bytes` (the
    /// first batch is returned even if larger), and none that starts at or after `end`.
    /// Answered with [`Completion::Read`].
    Read {
        /// The partition.
        partition: PartitionKey,
        /// The first offset wanted.
        offset: i64,
        /// Exclusive upper bound (the high watermark).
        end: i64,
        /// Byte budget.
        max_bytes: usize,
    },
    /// Find the first record with a timestamp at or after `timestamp`. Answered with
    /// [`Completion::Offset`].
    FindOffset {
        /// The partition.
        partition: PartitionKey,
        /// The timestamp searched for.
        timestamp: i64,
    },
    /// Move the partition's log start forward; data before it may be dropped.
    SetLogStart {
        /// The partition.
        partition: PartitionKey,
        /// The new first offset.
        offset: i64,
    },
    /// Apply retention: delete whole segments, oldest first, while the oldest one is wholly
    /// older than `older_than` (its largest timestamp is below it: `retention.ms`), or while
    /// the log without it still holds at least `max_bytes` (`retention.bytes`), or while it
    /// lies wholly below the log start. The active (last) segment and any segment holding an
    /// offset at or above `limit` stay. Answered with [`Completion::LogStart`]: the log start
    /// after deletion (the base offset of the oldest segment kept, never lower than before).
    Retain {
        /// The partition.
        partition: PartitionKey,
        /// Timestamp cut-off (now - `retention.ms`), or `None` for no time limit.
        older_than: Option<i64>,
        /// Size limit in bytes (`retention.bytes`), or `None` for no size limit.
        max_bytes: Option<u64>,
        /// Exclusive upper bound of deletable offsets (the high watermark).
        limit: i64,
    },
    /// Compact the partition by key if its cleanable part is dirty enough (Kafka's log
    /// cleaner; see [`crate::cleaner`]): the store plans the pass with
    /// [`crate::cleaner::plan`] over its closed segments, keeps the latest record of every
    /// key with its original offset, timestamp, headers and producer fields, removes
    /// tombstones whose delete horizon has passed, keeps the last batch of every idempotent
    /// producer, and swaps the rewritten segments in so that a crash at any moment leaves a
    /// log that reads back correctly. Answered with [`Completion::Cleaned`].
    ///
    /// Unlike other commands, a store may run it beside later commands for the partition
    /// (off the request path): cleaning never changes which offset holds which record, only
    /// drops records that a later record with the same key supersedes, so a read that
    /// overlaps it sees either the old or the cleaned segments. The core sends at most one
    /// `Clean` per partition at a time.
    Clean {
        /// The partition.
        partition: PartitionKey,
        /// The topic's compaction settings and the moment.
        spec: CleanSpec,
    },
    /// Re-learn a partition's end from what the store really holds, after appends whose
    /// outcome is unknown (see [`StorageError::outcome_unknown`]). The core sends it only when
    /// none of the partition's appends is in the store. A store first settles anything still
    /// undecided for the partition (drops a broken publish stream, discards a partial write,
    /// waits until what it holds is durable), then answers with [`Completion::Partition`]: the
    /// log start, the log end offset, the largest timestamp and the idempotent producers' last
    /// batches, as [`Command::Recover`] reports them for every partition at start. Everything
    /// below the end it reports is durable (so is everything [`Command::Recover`] reports).
    RecoverPartition {
        /// The partition.
        partition: PartitionKey,
        /// The core's high watermark: it knows the producer batches below it, so a store
        /// that must read records back to rebuild producer state may start here.
        from: i64,
    },
    /// Answer once every record of the partition below `offset` is durable, with
    /// [`Completion::Durable`]: the exclusive end of the partition's durable prefix then
    /// (at least `offset`, or less only when the store knows that the records from there on
    /// will never be durable and says so by failing instead). Sent only to a store that
    /// answered appends with [`Completion::Stored`], at most one per partition at a time.
    /// Unlike other commands it does not wait behind the partition's appends: it is answered
    /// whenever the store learns enough. A store that cannot tell in time (or knows the
    /// records were lost: its broker restarted) fails it with an error whose
    /// [`StorageError::outcome_unknown`] is true; the core then treats every record past the
    /// durable prefix as of unknown outcome and re-learns the partition's end with
    /// [`Command::RecoverPartition`].
    AwaitDurable {
        /// The partition.
        partition: PartitionKey,
        /// Exclusive end of the records that must be durable.
        offset: i64,
    },
    /// Store (or with `None` delete) a small value under `key`: committed offsets, group
    /// metadata, producer state.
    Put {
        /// The key.
        key: Bytes,
        /// The value, or `None` to delete.
        value: Option<Bytes>,
    },
}

/// Record batches as a [`Command::Append`] carries them: `head`, then `body`, back to back.
///
/// The core sends a produced batch as its 61-byte header, rewritten (base offset, partition
/// leader epoch, and for LogAppendTime the attributes, max timestamp and CRC), in `head`
/// beside the client's bytes after that header in `body`, a slice of the request as it was
/// received: the records are not copied on their way to the store. A store writes the two
/// in order, or keeps them as two chunks; [`AppendBatches::to_bytes`] joins them (one copy)
/// where one buffer is needed. Equality compares the bytes, not how they are split.
#[derive(Clone, Debug, Default)]
pub struct AppendBatches {
    /// The first bytes (a rewritten batch header), possibly empty.
    pub head: Bytes,
    /// The bytes after `head`.
    pub body: Bytes,
}

impl AppendBatches {
    /// Total length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Whether there are no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The non-empty parts, in order (for vectored writes and read answers).
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        [&self.head, &self.body].into_iter().filter(|b| !b.is_empty())
    }

    /// The bytes as one buffer: no copy when one part is empty, else one.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        if self.head.is_empty() {
            return self.body.clone();
        }
        if self.body.is_empty() {
            return self.head.clone();
        }
        let mut joined = bytes::BytesMut::with_capacity(self.len());
        joined.extend_from_slice(&self.head);
        joined.extend_from_slice(&self.body);
        joined.freeze()
    }
}

impl From<Bytes> for AppendBatches {
    fn from(body: Bytes) -> Self {
        Self { head: Bytes::new(), body }
    }
}

impl PartialEq for AppendBatches {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.head.iter().chain(&self.body).eq(other.head.iter().chain(&other.body))
    }
}

impl Eq for AppendBatches {}

/// How a store re-encodes an append's batches in its topic's codec (`compression.type`), as
/// Kafka's `LogValidator` does on append: see [`Recompress::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recompress {
    /// The codec to store the batches in.
    pub codec: Compression,
    /// The codec's level (`compression.<codec>.level`), `None` for its default.
    pub level: Option<i32>,
    /// The largest a re-encoded batch may be (the topic's `max.message.bytes`).
    pub max_batch_bytes: usize,
    /// The most a batch may decompress to (the core checked the batches within it).
    pub max_decompressed: usize,
}

impl Recompress {
    /// `batches` (whole batches, back to back) with every batch not already in `codec`
    /// re-encoded in it: records byte for byte, header fields kept, CRC recomputed (see
    /// [`crate::records::recompress`]). Deterministic: every store gets the same bytes.
    ///
    /// # Errors
    /// [`StorageError::MessageTooLarge`] when a re-encoded batch is longer than
    /// `max_batch_bytes` (Kafka's `RecordTooLargeException` after recompression);
    /// [`StorageError::Corrupt`] when a batch does not decode (the core validated them, so
    /// only a damaged command gets here). Either way nothing may be stored.
    pub fn apply(&self, batches: Bytes) -> Result<Bytes, StorageError> {
        let mut rest = batches.clone();
        let mut out: Vec<Bytes> = Vec::with_capacity(1);
        let mut changed = false;
        while !rest.is_empty() {
            let batch = RecordBatch::split_first(&mut rest)
                .map_err(|_| StorageError::Corrupt("an append to recompress holds a partial batch"))?;
            if batch.compression() == Ok(self.codec) {
                out.push(batch.as_bytes().clone());
                continue;
            }
            let re = recompress(&batch, self.codec, self.level, self.max_decompressed)
                .map_err(|_| StorageError::Corrupt("an append to recompress holds a damaged batch"))?;
            if re.len() > self.max_batch_bytes {
                return Err(StorageError::MessageTooLarge);
            }
            out.push(re);
            changed = true;
        }
        Ok(match out.as_slice() {
            _ if !changed => batches,
            [one] => one.clone(),
            _ => Bytes::from(out.concat()),
        })
    }
}

/// The answer to a [`Command`].
#[derive(Clone, Debug, PartialEq)]
pub enum Completion {
    /// The command took effect (an append: durably).
    Done,
    /// An append is held by the store and readable, but not yet durable: a crash of the store
    /// could still lose it (answers [`Command::Append`]; see [`Command::AwaitDurable`]).
    Stored,
    /// Every record of the partition below `end` is durable (answers
    /// [`Command::AwaitDurable`]).
    Durable {
        /// Exclusive end of the partition's durable prefix.
        end: i64,
    },
    /// Everything the store holds (answers [`Command::Recover`]).
    Recovered(Box<Recovered>),
    /// Batches read (answers [`Command::Read`]); empty when none qualify.
    Read {
        /// Whole batches, back to back, possibly as several chunks.
        batches: SmallVec<[Bytes; 2]>,
    },
    /// The answer to [`Command::FindOffset`]: the first record at or after the timestamp, or
    /// `None` when every record is older.
    Offset {
        /// The record's timestamp and offset.
        found: Option<TimestampOffset>,
    },
    /// The partition's log start after [`Command::Retain`].
    LogStart {
        /// The first offset still stored.
        offset: i64,
        /// The largest record timestamp still stored and the last offset of its batch, or
        /// [`TimestampOffset::NONE`]: what ListOffsets MAX_TIMESTAMP answers once older
        /// segments are gone.
        max_timestamp: TimestampOffset,
    },
    /// What a [`Command::Clean`] did.
    Cleaned(CleanReport),
    /// One partition's extent as stored (answers [`Command::RecoverPartition`]).
    Partition(PartitionExtent),
    /// The command failed. It had no effect, except that an [`Command::Append`] failing with
    /// an error whose [`StorageError::outcome_unknown`] is true may have been stored in
    /// whole (never in part: a store keeps or drops an append's batches together).
    Failed(StorageError),
}

/// How a compacted partition is cleaned: its topic's compaction configs (Kafka's names) and
/// the moment, handed to the store with [`Command::Clean`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanSpec {
    /// Wall-clock time of the pass, ms since the epoch: lags and delete horizons count from it.
    pub now_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean once the dirty share of the cleanable bytes
    /// reaches it.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this stay uncompacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes the log cleanable
    /// whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone stays readable after the pass that first
    /// cleaned it (its batch's delete horizon, KIP-534).
    pub delete_retention_ms: i64,
    /// Exclusive upper bound of cleanable offsets (the high watermark).
    pub limit: i64,
}

/// What one [`Command::Clean`] did, for the cleaner metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CleanReport {
    /// The dirty ratio of the cleanable part of the log when the pass looked at it (0 when
    /// nothing is cleanable).
    pub dirty_ratio: f64,
    /// Whether the pass rewrote anything.
    pub cleaned: bool,
    /// Bytes of log the pass rewrote (the segments it replaced).
    pub bytes_read: u64,
    /// Bytes written in their place.
    pub bytes_written: u64,
    /// Records removed.
    pub records_removed: u64,
    /// How long the pass took in microseconds, as the store measured it (0 for a store with
    /// no clock, such as the deterministic [`crate::mem_store::MemStore`]).
    pub micros: u64,
}

/// A record's timestamp and offset, as ListOffsets answers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The timestamp (ms since the epoch).
    pub timestamp: i64,
    /// The offset.
    pub offset: i64,
}

impl TimestampOffset {
    /// No record: timestamp and offset -1, as Kafka answers for an empty partition.
    pub const NONE: Self = Self { timestamp: -1, offset: -1 };
}

impl Default for TimestampOffset {
    fn default() -> Self {
        Self::NONE
    }
}

/// A partition's extent as recovered from storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionExtent {
    /// First offset still stored.
    pub log_start: i64,
    /// The offset the next record gets.
    pub next_offset: i64,
    /// Largest record timestamp, and the offset of the record that has it
    /// ([`TimestampOffset::NONE`] when empty).
    pub max_timestamp: TimestampOffset,
    /// Headers of the most recent batches of each idempotent producer (up to five each),
    /// oldest first, so that duplicate detection survives a restart.
    pub producer_batches: Vec<BatchSummary>,
}

/// What idempotence needs to know about one stored batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record.
    pub base_sequence: i32,
    /// Sequence number of the last record.
    pub last_sequence: i32,
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch's max timestamp (or its LogAppendTime).
    pub timestamp: i64,
}

/// Everything a store holds, as handed back at start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    /// Every topic.
    pub topics: Vec<TopicRecord>,
    /// Every partition with data.
    pub partitions: Vec<(PartitionKey, PartitionExtent)>,
    /// Every stored key/value.
    pub values: Vec<(Bytes, Bytes)>,
}

/// Why a storage command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The store cannot be reached or is restarting; retrying may succeed.
    Unavailable,
    /// The command did not finish in time; it may or may not have taken effect.
    Timeout,
    /// The partition or topic is not in the store.
    NotFound,
    /// The store is out of space.
    Full,
    /// The store found damaged data.
    Corrupt(&'static str),
    /// The store cannot do what was asked (a limit of the backend, such as SeaweedMQ not
    /// re-splitting a topic that holds data); the text says why, for the client. Nothing
    /// changed.
    Refused(&'static str),
    /// The store will not let the partition continue where it stands: continuing would
    /// re-use offsets it holds, or accept that records it had reported durable are gone. The
    /// text says why; the store logs what an operator can do. Retriable for clients
    /// (NOT_LEADER_OR_FOLLOWER): the core keeps asking, and counts the partition as fenced.
    Fenced(&'static str),
    /// An append's batch, re-encoded in its topic's codec ([`Recompress`]), is longer than
    /// the topic's `max.message.bytes`. Nothing was stored; the batch itself is at fault, so
    /// unlike the other errors a retry cannot succeed.
    MessageTooLarge,
}

impl StorageError {
    /// Whether a failed append may nevertheless have been stored: the store lost track of it
    /// (a timeout, a broken connection or publish stream, an IO error part way through a
    /// write). The core then re-learns the partition's end with
    /// [`Command::RecoverPartition`] before it appends there again. `NotFound`, `Corrupt`,
    /// `Refused` and `MessageTooLarge` refusals are given before anything is written: the
    /// append is definitely not stored.
    #[must_use]
    pub const fn outcome_unknown(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::Full)
    }

    /// The Kafka error a client gets for this failure. Every storage failure maps here
    /// (an API may name a refusal more precisely: CreatePartitions answers INVALID_PARTITIONS).
    #[must_use]
    pub const fn error_code(self) -> ErrorCode {
        match self {
            Self::Unavailable => ErrorCode::NOT_LEADER_OR_FOLLOWER,
            Self::Timeout => ErrorCode::REQUEST_TIMED_OUT,
            Self::NotFound => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            Self::Full => ErrorCode::KAFKA_STORAGE_ERROR,
            Self::Corrupt(_) => ErrorCode::KAFKA_STORAGE_ERROR,
            Self::Refused(_) => ErrorCode::INVALID_REQUEST,
            Self::Fenced(_) => ErrorCode::NOT_LEADER_OR_FOLLOWER,
            Self::MessageTooLarge => ErrorCode::MESSAGE_TOO_LARGE,
        }
    }

    /// Whether the failure belongs to the append's own batch (a retry of it fails the same
    /// way) rather than to the store. Other appends that fail because of it (the partition
    /// rewinds past them) are answered with a retriable error instead.
    #[must_use]
    pub const fn is_batch_fault(self) -> bool {
        matches!(self, Self::MessageTooLarge)
    }
}
