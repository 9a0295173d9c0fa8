//! The embedded `disk` store: durable, single-node, no external service.
//!
//! Layout under the data directory:
//! - `meta.log`: an append-only log of metadata changes (topics, small key/values, log starts),
//!   each entry `[len u32][crc32c u32][kind u8][payload]`; replayed at start.
//! - `p-<topic id hex>-<partition>/<base offset, 20 digits>.log`: segment files holding record
//!   batches exactly as the broker stored them (offsets already assigned), back to back, with
//!   their sparse `.index` and `.timeindex` beside them (see `segment.rs`). A segment rolls
//!   when an append would take it past the topic's `segment.bytes`.
//!
//! All file work happens on one IO thread, so commands for a partition take effect in order.
//! The thread takes every command that is waiting, applies them, makes them durable as the
//! [`Fsync`] policy says (one fsync per touched file per round: group commit), and only then
//! completes them. Recovery checks each segment's indexes and reads the batches after the last
//! index entry (all of them when an index must be rebuilt), checking framing and CRC, and cuts
//! the file at the first torn or damaged batch. Nothing per batch is kept in memory: reads and
//! timestamp lookups go through the sparse indexes.
//!
//! Retention ([`Command::Retain`]) and DeleteRecords delete whole segments below the new log
//! start, which is written to `meta.log` (and synced) before any file is removed.
//!
//! Compaction ([`Command::Clean`]) runs on cleaner threads (`cleaner.rs`): the IO thread plans
//! a pass and hands over read handles on the segments; the cleaner writes the compacted
//! segments beside the old ones as `<base>.log.cleaned` (and indexes) and fsyncs them; the IO
//! thread then swaps them in, the way Kafka's LogCleaner does, so that a crash at any moment
//! leaves a readable log:
//! 1. it checks that the segments to replace are still there unchanged (else the pass is
//!    discarded), and records in `meta.log`, synced, the partition's *gap mark*: the end of
//!    the cleaned range, below which batches may skip offsets (cleaning never renumbers);
//! 2. renames each new segment to `<base>-<end>.log.swap` (indexes first), where `end` is the
//!    base of the first segment not replaced, and fsyncs the directory: the commit point;
//! 3. deletes the old segments in `base..end`, renames the swap files to `<base>.log` and
//!    friends, fsyncs the directory, and records the new first dirty offset (the cleaner
//!    checkpoint) in `meta.log`.
//!
//! At open, `.cleaned` files are deleted (a pass that never committed) and every `.log.swap`
//! completes step 3. A crash before the checkpoint is recorded only makes the next pass read
//! some clean records again. The gap mark keeps the open-time check that every batch
//! continues the one before (it finds data lost by a machine crash) for the uncleaned part.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use kelp_core::cleaner::{self as planner, SegmentInfo};
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{
    BatchSummary, CleanReport, CleanSpec, DEFAULT_SEGMENT_BYTES, PartitionExtent, PartitionKey, Recompress, Recovered,
    StorageError, TimestampOffset, TopicRecord, should_roll,
};
use kelp_core::log::PRODUCER_BATCHES;
use kelp_core::records::RecordBatch;
use kelp_core::{CmdId, Command, Completion};
use smallvec::SmallVec;

use crate::cleaner::{self, Finished, Pool, Snapshot};
use crate::segment::{self, EXTENSIONS, Head, IndexCheck, Segment};
use crate::{Sink, Store};

/// When appended data is forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before every acknowledgement (one fsync per file per round of commands): an acknowledged
    /// record survives a machine crash.
    Always,
    /// At most this long after a write: a machine crash (not a process crash) can lose the
    /// last interval of acknowledged records.
    Interval(Duration),
    /// Left to the operating system: a machine crash can lose anything not yet written back.
    Never,
}

/// How the disk store is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskOptions {
    /// When data is forced to disk.
    pub fsync: Fsync,
    /// Segment size for topics without a `segment.bytes` override (Kafka's `log.segment.bytes`,
    /// 1 GiB). Capped at 2 GiB - 1, as in Kafka: index positions are 32-bit.
    pub segment_bytes: u64,
    /// Bytes of batches between two offset index entries (Kafka's `index.interval.bytes`).
    pub index_interval: u64,
    /// Log cleaner threads (Kafka's `log.cleaner.threads`, 1); 0 turns compaction off, and
    /// [`Command::Clean`] then answers without cleaning.
    pub cleaner_threads: usize,
    /// Memory for the cleaners' key maps, shared out among the threads (Kafka's
    /// `log.cleaner.dedupe.buffer.size`, 128 MiB). A pass whose dirty keys do not fit cleans
    /// what did and leaves the rest to the next pass.
    pub cleaner_dedupe_buffer_bytes: usize,
    /// Read and write chunk size of each cleaner (Kafka's `log.cleaner.io.buffer.size`,
    /// 512 KiB); a larger batch is read whole.
    pub cleaner_io_buffer_bytes: usize,
    /// Bytes per second the cleaners may read plus write together (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`); `None` for no limit.
    pub cleaner_io_max_bytes_per_second: Option<u64>,
}

impl DiskOptions {
    /// The defaults (Kafka's) with this fsync policy.
    #[must_use]
    pub fn new(fsync: Fsync) -> Self {
        Self {
            fsync,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            index_interval: 4096,
            cleaner_threads: 1,
            cleaner_dedupe_buffer_bytes: 128 << 20,
            cleaner_io_buffer_bytes: 512 << 10,
            cleaner_io_max_bytes_per_second: None,
        }
    }
}

/// Largest segment: positions in the offset index are 32-bit.
const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
/// How far back from the end of a log recovery looks for idempotent producers' batches (Kafka
/// keeps producer state snapshots instead; a producer idle for longer than this window of other
/// writes is forgotten at restart, and its next batch is taken as from a new producer).
const PRODUCER_WINDOW: u64 = 4 * 1024 * 1024;
/// Largest decompressed batch looked inside (timestamp lookups, producer state).
const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

const META_PUT_TOPIC: u8 = 1;
const META_DELETE_TOPIC: u8 = 2;
const META_PUT: u8 = 3;
const META_DELETE: u8 = 4;
const META_LOG_START: u8 = 5;
/// A partition's cleaner marks: first dirty offset (the checkpoint) and gap mark.
const META_CLEANER: u8 = 6;

/// The `disk` backend. Commands run on its IO thread; see the module docs. Dropping it
/// stops the IO and cleaner threads and waits for them.
pub struct DiskStore {
    tx: mpsc::Sender<Msg>,
    check: IndexCheck,
    thread: Option<JoinHandle<()>>,
}

/// What the IO thread is asked to do.
enum Msg {
    Job(Job),
    /// Finish what came before, fsync every file written, and report.
    Sync(mpsc::Sender<io::Result<()>>),
    /// A cleaner finished a pass: swap its segments in.
    Cleaned(Finished),
    /// Finish what came before and stop.
    Stop,
}

struct Job {
    cmd: CmdId,
    command: Command,
    sink: Sink,
}

impl DiskStore {
    /// Opens (creating if needed) the store in `dir`, recovering what is there, and starts its
    /// IO thread.
    pub fn open(dir: &Path, fsync: Fsync) -> io::Result<Self> {
        Self::open_with(dir, DiskOptions::new(fsync))
    }

    /// [`DiskStore::open`] with all options.
    pub fn open_with(dir: &Path, options: DiskOptions) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let done = tx.clone();
        let pool = Pool::start(settings(&options), move |f| {
            let _ = done.send(Msg::Cleaned(f));
        })?;
        let state = State::open(dir, options, pool)?;
        let check = state.check;
        let thread = std::thread::Builder::new().name("kelp-disk".into()).spawn(move || io_thread(state, &rx))?;
        Ok(Self { tx, check, thread: Some(thread) })
    }

    /// [`DiskStore::open_with`] whose swaps stop, as if the process died, after `steps`
    /// file operations.
    #[cfg(test)]
    fn open_crashing(dir: &Path, options: DiskOptions, steps: u32) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let done = tx.clone();
        let pool = Pool::start(settings(&options), move |f| {
            let _ = done.send(Msg::Cleaned(f));
        })?;
        let state = State::open(dir, options, pool)?;
        state.crash.left.set(Some(steps));
        let check = state.check;
        let thread = std::thread::Builder::new().name("kelp-disk".into()).spawn(move || io_thread(state, &rx))?;
        Ok(Self { tx, check, thread: Some(thread) })
    }

    /// How the segments' indexes fared at open: used after checking, or rebuilt.
    #[must_use]
    pub fn index_check(&self) -> IndexCheck {
        self.check
    }
}

/// The cleaner threads' settings: Kafka's dedupe buffer is shared out among them.
fn settings(options: &DiskOptions) -> cleaner::Settings {
    cleaner::Settings {
        threads: options.cleaner_threads,
        map_bytes: options.cleaner_dedupe_buffer_bytes / options.cleaner_threads.max(1),
        io_buffer: options.cleaner_io_buffer_bytes.clamp(4096, 64 << 20),
        max_bytes_per_second: options.cleaner_io_max_bytes_per_second,
        index_interval: options.index_interval.max(1),
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Store for DiskStore {
    fn submit(&mut self, cmd: CmdId, command: Command, sink: &Sink) {
        if let Err(mpsc::SendError(Msg::Job(job))) = self.tx.send(Msg::Job(Job { cmd, command, sink: sink.clone() })) {
            job.sink.complete(job.cmd, Completion::Failed(StorageError::Unavailable));
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(Msg::Sync(tx)).map_err(|_| io::Error::other("the disk store's IO thread has stopped"))?;
        rx.recv().map_err(|_| io::Error::other("the disk store's IO thread has stopped"))?
    }
}

/// One message of a round, in arrival order.
enum Item {
    Job(Job),
    Cleaned(Finished),
}

fn io_thread(mut state: State, rx: &mpsc::Receiver<Msg>) {
    let mut last_sync = Instant::now();
    let mut stop = false;
    while !stop && let Ok(first) = rx.recv() {
        let mut round = Vec::new();
        let mut sync_asked = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => round.push(Item::Job(job)),
                Msg::Cleaned(f) => round.push(Item::Cleaned(f)),
                // Jobs after a sync request wait for the next round; this one ends here.
                Msg::Sync(reply) => {
                    sync_asked = Some(reply);
                    break;
                }
                Msg::Stop => {
                    stop = true;
                    break;
                }
            }
            if round.len() < 4096 {
                next = rx.try_recv().ok();
            }
        }
        let mut done: Vec<(CmdId, Sink, Completion)> = Vec::with_capacity(round.len());
        for item in round {
            match item {
                Item::Job(job) => {
                    if let Some(result) = state.apply(job.cmd, job.command, &job.sink) {
                        done.push((job.cmd, job.sink, result));
                    }
                }
                Item::Cleaned(f) => done.push(state.finish_clean(f)),
            }
        }
        let synced = match state.fsync {
            Fsync::Always => state.sync_dirty(),
            Fsync::Interval(d) if last_sync.elapsed() >= d => {
                last_sync = Instant::now();
                state.sync_dirty()
            }
            _ => Ok(()),
        };
        for (cmd, sink, result) in done {
            let result = match (&synced, result) {
                (Err(_), Completion::Done) => Completion::Failed(StorageError::Full),
                (_, r) => r,
            };
            sink.complete(cmd, result);
        }
        if let Some(reply) = sync_asked {
            let _ = reply.send(state.sync_for_stop());
        }
    }
    let _ = state.sync_for_stop();
    // Stops the cleaners (passes in progress end early); then every pass they hand back is
    // answered without cleaning.
    drop(state);
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Job(job) => job.sink.complete(job.cmd, Completion::Failed(StorageError::Unavailable)),
            Msg::Cleaned(f) => {
                let (cmd, sink, result) = f.discard();
                sink.complete(cmd, result);
            }
            Msg::Sync(reply) => {
                let _ = reply.send(Err(io::Error::other("the disk store is stopping")));
            }
            Msg::Stop => {}
        }
    }
}

struct PartLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    log_start: i64,
    next_offset: i64,
    dirty: bool,
    interval: u64,
}

/// A partition's cleaner marks, kept in `meta.log`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Marks {
    /// Where the next pass's key map starts (Kafka's cleaner checkpoint; batches below the
    /// log start are skipped).
    first_dirty: i64,
    /// The end of the rewritten range: batches starting at or below it may follow a gap.
    gaps_below: i64,
    /// The earliest delete horizon of the tombstones the last pass kept (the planner runs a
    /// pass once it has passed). Not monotonic: each pass sets it.
    horizon: Option<i64>,
}

struct State {
    dir: PathBuf,
    fsync: Fsync,
    segment_bytes: u64,
    index_interval: u64,
    check: IndexCheck,
    meta: File,
    meta_dirty: bool,
    topics: BTreeMap<Uuid, TopicRecord>,
    values: BTreeMap<Bytes, Bytes>,
    log_starts: HashMap<PartitionKey, i64>,
    marks: HashMap<PartitionKey, Marks>,
    parts: HashMap<PartitionKey, PartLog>,
    /// Partitions with a pass on a cleaner thread.
    cleaning: HashSet<PartitionKey>,
    crash: CrashPoint,
    trash: Trash,
    /// The cleaner threads. Declared last: dropped (and joined) after the files are closed.
    pool: Pool,
}

/// Deletes retired segments' files on a thread of its own (see [`Segment::retire`]), so the
/// IO thread only renames them.
struct Trash {
    tx: Option<mpsc::Sender<Vec<PathBuf>>>,
}

impl Trash {
    fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Vec<PathBuf>>();
        let spawned = std::thread::Builder::new().name("kelp-disk-trash".into()).spawn(move || {
            while let Ok(paths) = rx.recv() {
                for p in paths {
                    let _ = fs::remove_file(p);
                }
            }
        });
        Self { tx: spawned.ok().map(|_| tx) }
    }

    /// Takes `seg` out of the log now and deletes its files soon.
    fn discard(&self, seg: Segment) {
        let paths = seg.retire();
        let unsent = match &self.tx {
            Some(tx) => tx.send(paths).err().map(|e| e.0),
            None => Some(paths),
        };
        for p in unsent.into_iter().flatten() {
            let _ = fs::remove_file(p);
        }
    }
}

fn storage_err(_: io::Error) -> StorageError {
    StorageError::Full
}

impl State {
    fn open(dir: &Path, options: DiskOptions, pool: Pool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let meta_path = dir.join("meta.log");
        let mut meta = OpenOptions::new().create(true).read(true).append(true).open(&meta_path)?;
        let mut state = Self {
            dir: dir.to_path_buf(),
            fsync: options.fsync,
            segment_bytes: options.segment_bytes.clamp(1, MAX_SEGMENT_BYTES),
            index_interval: options.index_interval.max(1),
            check: IndexCheck::default(),
            meta: meta.try_clone()?,
            meta_dirty: false,
            topics: BTreeMap::new(),
            values: BTreeMap::new(),
            log_starts: HashMap::new(),
            marks: HashMap::new(),
            parts: HashMap::new(),
            cleaning: HashSet::new(),
            crash: CrashPoint::default(),
            trash: Trash::start(),
            pool,
        };
        let good = state.replay_meta(&mut meta)?;
        if good < meta.metadata()?.len() {
            // A torn last entry: cut it off.
            meta.set_len(good)?;
            meta.sync_all()?;
        }
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = parse_part_dir(&name) else { continue };
            if !state.topics.contains_key(&key.topic_id) {
                fs::remove_dir_all(entry.path())?;
                continue;
            }
            let log_start = state.log_starts.get(&key).copied().unwrap_or(0);
            let gaps_below = state.marks.get(&key).map_or(i64::MIN, |m| m.gaps_below);
            let part = PartLog::open(entry.path(), log_start, gaps_below, state.index_interval, &mut state.check)?;
            state.parts.insert(key, part);
        }
        Ok(state)
    }

    fn replay_meta(&mut self, meta: &mut File) -> io::Result<u64> {
        meta.seek(SeekFrom::Start(0))?;
        let mut data = Vec::new();
        meta.read_to_end(&mut data)?;
        let mut pos = 0usize;
        while let Some(head) = data.get(pos..pos + 8) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
            let Some(body) = data.get(pos + 8..pos + 8 + len) else { break };
            if crc32c::crc32c(body) != crc || body.is_empty() {
                break;
            }
            self.apply_meta(body[0], &body[1..]);
            pos += 8 + len;
        }
        Ok(pos as u64)
    }

    fn apply_meta(&mut self, kind: u8, p: &[u8]) {
        let mut r = Cursor(p);
        match kind {
            META_PUT_TOPIC => {
                if let Some(t) = decode_topic(&mut r) {
                    self.topics.insert(t.id, t);
                }
            }
            META_DELETE_TOPIC => {
                if let Some(id) = r.uuid() {
                    self.topics.remove(&id);
                    self.log_starts.retain(|k, _| k.topic_id != id);
                    self.marks.retain(|k, _| k.topic_id != id);
                }
            }
            META_PUT => {
                if let (Some(k), Some(v)) = (r.bytes(), r.bytes()) {
                    self.values.insert(k, v);
                }
            }
            META_DELETE => {
                if let Some(k) = r.bytes() {
                    self.values.remove(&k);
                }
            }
            META_LOG_START => {
                if let (Some(id), Some(p), Some(o)) = (r.uuid(), r.i32(), r.i64()) {
                    // The log start never moves back: a lower value later changes nothing.
                    let start = self.log_starts.entry(PartitionKey { topic_id: id, partition: p }).or_insert(o);
                    *start = (*start).max(o);
                }
            }
            META_CLEANER => {
                if let (Some(id), Some(p), Some(first_dirty), Some(gaps_below), Some(has_horizon), Some(horizon)) =
                    (r.uuid(), r.i32(), r.i64(), r.i64(), r.take(1).map(|b| b[0]), r.i64())
                {
                    let m = self.marks.entry(PartitionKey { topic_id: id, partition: p }).or_default();
                    // The checkpoint and the gap mark never go back; the horizon is the last set.
                    m.first_dirty = m.first_dirty.max(first_dirty);
                    m.gaps_below = m.gaps_below.max(gaps_below);
                    m.horizon = (has_horizon == 1).then_some(horizon);
                }
            }
            _ => {}
        }
    }

    fn write_meta(&mut self, kind: u8, payload: &[u8]) -> Result<(), StorageError> {
        let mut body = Vec::with_capacity(1 + payload.len());
        body.push(kind);
        body.extend_from_slice(payload);
        let mut entry = Vec::with_capacity(8 + body.len());
        entry.extend_from_slice(&u32::try_from(body.len()).map_err(|_| StorageError::Full)?.to_be_bytes());
        entry.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        entry.extend_from_slice(&body);
        self.meta.write_all(&entry).map_err(storage_err)?;
        self.meta_dirty = true;
        self.apply_meta(kind, payload);
        Ok(())
    }

    /// Everything written made durable, for a graceful stop. Under `Fsync::Never` segments
    /// that rolled were never synced, so every segment is; otherwise a rolled segment was
    /// synced when it rolled, and the dirty ones are enough.
    fn sync_for_stop(&mut self) -> io::Result<()> {
        if self.fsync == Fsync::Never {
            for seg in self.parts.values().flat_map(|p| &p.segments) {
                seg.sync(true)?;
            }
        }
        self.sync_dirty()
    }

    fn sync_dirty(&mut self) -> io::Result<()> {
        if self.meta_dirty {
            self.meta.sync_data()?;
            self.meta_dirty = false;
        }
        for p in self.parts.values_mut().filter(|p| p.dirty) {
            if let Some(seg) = p.segments.last() {
                seg.sync(false)?;
            }
            p.dirty = false;
        }
        Ok(())
    }

    /// Runs a command; `None` when a cleaner thread answers it later.
    fn apply(&mut self, cmd: CmdId, command: Command, sink: &Sink) -> Option<Completion> {
        if self.crash.crashed() {
            return Some(Completion::Failed(StorageError::Unavailable));
        }
        if let Command::Clean { partition, spec } = command {
            return self.start_clean(cmd, sink, partition, &spec);
        }
        Some(self.apply_now(command))
    }

    fn apply_now(&mut self, command: Command) -> Completion {
        let done = |r: Result<(), StorageError>| r.map_or_else(Completion::Failed, |()| Completion::Done);
        match command {
            Command::Recover => Completion::Recovered(Box::new(self.recovered())),
            Command::PutTopic(t) => done(self.write_meta(META_PUT_TOPIC, &encode_topic(&t))),
            Command::DeleteTopic { topic_id } => {
                let r = self.write_meta(META_DELETE_TOPIC, &topic_id.0);
                let keys: Vec<PartitionKey> = self.parts.keys().filter(|k| k.topic_id == topic_id).copied().collect();
                for k in keys {
                    if let Some(p) = self.parts.remove(&k) {
                        let _ = fs::remove_dir_all(&p.dir);
                    }
                }
                done(r)
            }
            Command::Append { partition, base_offset, last_offset, max_timestamp, batches, recompress } => {
                // One buffer for the segment's parser and write (a produced batch's header and
                // records are joined here, on the store's thread, off the request loop).
                done(self.append(partition, (base_offset, last_offset, max_timestamp), batches.to_bytes(), recompress))
            }
            Command::Read { partition, offset, end, max_bytes } => match self.parts.get(&partition) {
                None => Completion::Read { batches: SmallVec::new() },
                Some(p) => p
                    .read(offset, end, max_bytes)
                    .map_or_else(|e| Completion::Failed(storage_err(e)), |b| Completion::Read { batches: b }),
            },
            Command::FindOffset { partition, timestamp } => match self.parts.get(&partition) {
                None => Completion::Offset { found: None },
                Some(p) => p
                    .find_offset(timestamp)
                    .map_or_else(|e| Completion::Failed(storage_err(e)), |found| Completion::Offset { found }),
            },
            Command::SetLogStart { partition, offset } => {
                let end = self.parts.get(&partition).map_or(0, |p| p.next_offset);
                if offset > end {
                    return Completion::Failed(StorageError::Corrupt("log start beyond the log end"));
                }
                done(self.set_log_start(partition, offset))
            }
            Command::Retain { partition, older_than, max_bytes, limit } => {
                let Some(p) = self.parts.get(&partition) else {
                    return Completion::LogStart { offset: 0, max_timestamp: TimestampOffset::NONE };
                };
                let (now, start) = (p.log_start, p.retention_start(older_than, max_bytes, limit));
                if start > now {
                    if let Err(e) = self.set_log_start(partition, start) {
                        return Completion::Failed(e);
                    }
                } else if let Some(p) = self.parts.get_mut(&partition) {
                    // Segments wholly below an unchanged log start (it reached them while
                    // they were still active) go now.
                    for seg in p.set_log_start(start) {
                        self.trash.discard(seg);
                    }
                }
                let max_timestamp = self.parts.get(&partition).map_or(TimestampOffset::NONE, PartLog::max_timestamp);
                Completion::LogStart { offset: start, max_timestamp }
            }
            // Appends answer `Done`: they are as durable as this store makes them.
            Command::AwaitDurable { partition, .. } => match self.parts.get(&partition) {
                Some(p) => Completion::Durable { end: p.next_offset },
                None if self.topics.contains_key(&partition.topic_id) => Completion::Durable { end: 0 },
                None => Completion::Failed(StorageError::NotFound),
            },
            Command::RecoverPartition { partition, .. } => {
                if !self.topics.contains_key(&partition.topic_id) {
                    return Completion::Failed(StorageError::NotFound);
                }
                Completion::Partition(self.parts.get(&partition).map_or_else(
                    || {
                        let log_start = self.log_starts.get(&partition).copied().unwrap_or(0);
                        PartitionExtent {
                            log_start,
                            next_offset: log_start,
                            max_timestamp: TimestampOffset::NONE,
                            producer_batches: Vec::new(),
                        }
                    },
                    PartLog::extent,
                ))
            }
            Command::Put { key, value } => {
                let mut payload = Vec::new();
                put_bytes(&mut payload, &key);
                match value {
                    Some(v) => {
                        put_bytes(&mut payload, &v);
                        done(self.write_meta(META_PUT, &payload))
                    }
                    None => done(self.write_meta(META_DELETE, &payload)),
                }
            }
            // Handled by `apply`, which hands the pass to a cleaner thread.
            Command::Clean { .. } => Completion::Cleaned(CleanReport::default()),
        }
    }

    /// Records the new log start in `meta.log`, then deletes the segments below it (a crash
    /// in between leaves files that the next open deletes).
    fn set_log_start(&mut self, partition: PartitionKey, offset: i64) -> Result<(), StorageError> {
        let mut payload = Vec::with_capacity(28);
        payload.extend_from_slice(&partition.topic_id.0);
        payload.extend_from_slice(&partition.partition.to_be_bytes());
        payload.extend_from_slice(&offset.to_be_bytes());
        self.write_meta(META_LOG_START, &payload)?;
        let deletes =
            self.parts.get(&partition).is_some_and(|p| p.segments.get(1).is_some_and(|s| s.base_offset <= offset));
        if deletes && self.fsync != Fsync::Never {
            // Files are about to go: the log start that explains their absence must be durable.
            self.meta.sync_data().map_err(storage_err)?;
            self.meta_dirty = false;
        }
        if let Some(p) = self.parts.get_mut(&partition) {
            for seg in p.set_log_start(offset) {
                self.trash.discard(seg);
            }
        }
        Ok(())
    }

    /// Appends `data`, re-encoded first when `recompress` says so: here, on the IO thread,
    /// not on the broker's request loop.
    fn append(
        &mut self,
        key: PartitionKey,
        append: (i64, i64, i64),
        data: Bytes,
        recompress: Option<Recompress>,
    ) -> Result<(), StorageError> {
        let (base, last, _) = append;
        if !self.topics.contains_key(&key.topic_id) {
            return Err(StorageError::NotFound);
        }
        let dir = self.dir.join(format!("p-{}-{}", hex(&key.topic_id.0), key.partition));
        if !self.parts.contains_key(&key) {
            fs::create_dir_all(&dir).map_err(storage_err)?;
            let log_start = self.log_starts.get(&key).copied().unwrap_or(0);
            let gaps_below = self.marks.get(&key).map_or(i64::MIN, |m| m.gaps_below);
            let part =
                PartLog::open(dir, log_start, gaps_below, self.index_interval, &mut self.check).map_err(storage_err)?;
            self.parts.insert(key, part);
        }
        let Some(p) = self.parts.get_mut(&key) else { return Err(StorageError::NotFound) };
        if base != p.next_offset || last < base {
            return Err(StorageError::Corrupt("append does not continue the log"));
        }
        let Some(topic) = self.topics.get(&key.topic_id) else { return Err(StorageError::NotFound) };
        let data = match recompress {
            Some(r) => r.apply(data)?,
            None => data,
        };
        p.append(topic, append, &data, (self.segment_bytes, self.fsync)).map_err(storage_err)
    }

    /// Plans a pass over the partition and hands it to a cleaner thread (`None`: it answers
    /// later), or answers at once when there is nothing to clean.
    fn start_clean(&mut self, cmd: CmdId, sink: &Sink, key: PartitionKey, spec: &CleanSpec) -> Option<Completion> {
        let not_cleaned =
            |dirty_ratio| Some(Completion::Cleaned(CleanReport { dirty_ratio, ..CleanReport::default() }));
        let (Some(topic), Some(p)) = (self.topics.get(&key.topic_id), self.parts.get(&key)) else {
            return not_cleaned(0.0);
        };
        let marks = self.marks.get(&key).copied().unwrap_or_default();
        let infos = p.segment_infos();
        let (dirty_ratio, plan) = planner::plan(&infos, marks.first_dirty, marks.horizon, spec);
        // One pass per partition at a time (the core asks no more; this keeps it so).
        let Some(plan) = plan.filter(|_| self.pool.enabled() && !self.cleaning.contains(&key)) else {
            return not_cleaned(dirty_ratio);
        };
        let segments = match p.snapshot() {
            Ok(s) => s,
            Err(e) => return Some(Completion::Failed(storage_err(e))),
        };
        let job = cleaner::Job {
            key,
            cmd,
            sink: sink.clone(),
            started: Instant::now(),
            dir: p.dir.clone(),
            spec: *spec,
            dirty_ratio: plan.dirty_ratio,
            first_dirty: plan.first_dirty,
            log_start: p.log_start,
            dirty: plan.dirty,
            segments,
            segment_bytes: topic.segment_bytes(self.segment_bytes).min(MAX_SEGMENT_BYTES),
        };
        if self.pool.submit(job) {
            self.cleaning.insert(key);
            None
        } else {
            not_cleaned(dirty_ratio)
        }
    }

    /// A pass came back: swap its segments in if the ones they replace are still there.
    fn finish_clean(&mut self, f: Finished) -> (CmdId, Sink, Completion) {
        self.cleaning.remove(&f.key);
        let Finished { key, cmd, sink, started, dirty_ratio, outcome } = f;
        let out = match outcome {
            Ok(Some(out)) => out,
            outcome => return Finished { key, cmd, sink, started, dirty_ratio, outcome }.discard(),
        };
        let result = match self.swap(key, &out) {
            Ok(true) => Completion::Cleaned(CleanReport { micros: cleaner::micros(started), ..out.report }),
            Ok(false) => {
                let outcome = Ok(Some(out));
                return Finished { key, cmd, sink, started, dirty_ratio, outcome }.discard();
            }
            Err(_) if self.crash.crashed() => Completion::Failed(StorageError::Unavailable),
            Err(e) => {
                tracing::warn!(partition = ?key, "log cleaner: swapping in the cleaned segments failed: {e}");
                // Whatever step failed, the files on disk say how far the swap got: load the
                // partition again from them.
                self.reload(key);
                Completion::Failed(storage_err(e))
            }
        };
        (cmd, sink, result)
    }

    /// Swaps a pass's segments in (see the module docs). `Ok(false)`: the segments it
    /// replaces changed meanwhile (retention, DeleteRecords, a deleted topic), nothing done.
    fn swap(&mut self, key: PartitionKey, out: &cleaner::Output) -> io::Result<bool> {
        let Some(p) = self.parts.get(&key) else { return Ok(false) };
        let unchanged = out.groups.iter().all(|g| {
            p.segments.iter().position(|s| s.base_offset == g.base).is_some_and(|i| {
                let old = p.segments.get(i..i + g.old.len());
                old.is_some_and(|old| old.iter().zip(&g.old).all(|(s, (b, n))| s.base_offset == *b && s.size == *n))
                    && p.segments.get(i + g.old.len()).is_some_and(|next| next.base_offset == g.end)
            })
        });
        let Some(last) = out.groups.last().filter(|_| unchanged) else { return Ok(false) };
        let dir = p.dir.clone();
        let mut marks = self.marks.get(&key).copied().unwrap_or_default();
        // 1. The gap mark covers the new segments before they can be seen.
        self.crash.step()?;
        marks.gaps_below = marks.gaps_below.max(last.end);
        self.write_marks(key, marks).map_err(|_| io::Error::other("meta.log write failed"))?;
        self.meta.sync_data()?;
        self.meta_dirty = false;
        // 2. Commit: the new segments under their swap names.
        for g in &out.groups {
            let swap = swap_paths(&dir, g.base, g.end);
            for (from, to) in g.paths.iter().zip(&swap).rev() {
                self.crash.step()?;
                fs::rename(from, to)?;
            }
        }
        self.crash.step()?;
        sync_dir(&dir)?;
        // 3. Install them in place of the old ones.
        let (interval, mut check) = (self.index_interval, IndexCheck::default());
        let Some(p) = self.parts.get_mut(&key) else { return Ok(false) };
        for g in &out.groups {
            let Some(i) = p.segments.iter().position(|s| s.base_offset == g.base) else { continue };
            for old in p.segments.drain(i..i + g.old.len()) {
                self.crash.step()?;
                self.trash.discard(old);
            }
            self.crash.step()?;
            if install_swap(&dir, g.base, g.end)? {
                let seg = Segment::open(&dir, g.base, interval, marks.gaps_below, &mut check)?;
                p.segments.insert(i, seg);
            }
        }
        self.crash.step()?;
        sync_dir(&dir)?;
        self.crash.step()?;
        marks.first_dirty = marks.first_dirty.max(out.first_dirty);
        marks.horizon = out.horizon;
        self.write_marks(key, marks).map_err(|_| io::Error::other("meta.log write failed"))?;
        Ok(true)
    }

    fn write_marks(&mut self, key: PartitionKey, marks: Marks) -> Result<(), StorageError> {
        let mut payload = Vec::with_capacity(36);
        payload.extend_from_slice(&key.topic_id.0);
        payload.extend_from_slice(&key.partition.to_be_bytes());
        payload.extend_from_slice(&marks.first_dirty.to_be_bytes());
        payload.extend_from_slice(&marks.gaps_below.to_be_bytes());
        payload.push(u8::from(marks.horizon.is_some()));
        payload.extend_from_slice(&marks.horizon.unwrap_or(0).to_be_bytes());
        self.write_meta(META_CLEANER, &payload)
    }

    /// Loads a partition again from its files (after a swap failed part way).
    fn reload(&mut self, key: PartitionKey) {
        let Some(p) = self.parts.remove(&key) else { return };
        let (dir, log_start) = (p.dir.clone(), p.log_start);
        drop(p);
        let gaps_below = self.marks.get(&key).map_or(i64::MIN, |m| m.gaps_below);
        match PartLog::open(dir, log_start, gaps_below, self.index_interval, &mut self.check) {
            Ok(p) => {
                self.parts.insert(key, p);
            }
            Err(e) => tracing::error!(partition = ?key, "disk store: reloading the partition failed: {e}"),
        }
    }

    fn recovered(&self) -> Recovered {
        let partitions = self
            .parts
            .iter()
            .filter(|(k, _)| self.topics.contains_key(&k.topic_id))
            .map(|(k, p)| (*k, p.extent()))
            .collect();
        Recovered {
            topics: self.topics.values().cloned().collect(),
            partitions,
            values: self.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

impl PartLog {
    fn open(dir: PathBuf, log_start: i64, gaps_below: i64, interval: u64, check: &mut IndexCheck) -> io::Result<Self> {
        let gaps_below = gaps_below.max(recover_swaps(&dir)?);
        let mut bases: Vec<i64> = fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".log")?.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        // Index files whose segment is gone (a crash while deleting it) go too.
        for e in fs::read_dir(&dir)?.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".index").or_else(|| name.strip_suffix(".timeindex"));
            if stem.and_then(|b| b.parse::<i64>().ok()).is_some_and(|b| bases.binary_search(&b).is_err()) {
                fs::remove_file(e.path())?;
            }
        }
        let mut log = Self { dir, segments: Vec::new(), log_start, next_offset: 0, dirty: false, interval };
        for base in bases {
            let seg = Segment::open(&log.dir, base, interval, gaps_below, check)?;
            // Segments must continue each other, except where the cleaner left gaps; an empty
            // one is kept only at the end, or where the cleaner emptied it. A gap above the
            // cleaned range (only after a machine crash without fsync) ends the log there.
            let continues = log
                .segments
                .last()
                .is_none_or(|l| l.last_offset + 1 == base || (l.last_offset < base && base <= gaps_below));
            if !continues {
                seg.remove();
                continue;
            }
            if let Some(prev) = log.segments.pop_if(|l| l.size == 0 && l.base_offset >= gaps_below) {
                prev.remove();
            }
            log.segments.push(seg);
        }
        if let Some(s) = log.segments.last() {
            log.next_offset = s.last_offset + 1;
            // Retention deletes files after writing the new log start, but a crash between
            // the two must not leave a log start below the data. (The cleaner may remove the
            // first segments whole without moving the log start: not below the gap mark.)
            if log.segments[0].base_offset > gaps_below {
                log.log_start = log.log_start.max(log.segments[0].base_offset);
            }
        }
        log.next_offset = log.next_offset.max(log.log_start);
        // Segments wholly below the log start (a crash between recording it and deleting them,
        // or a log start that reached them while they were active) stay until the next
        // retention check or DeleteRecords removes them, as in the memory store.
        Ok(log)
    }

    fn append(
        &mut self,
        topic: &TopicRecord,
        append: (i64, i64, i64),
        data: &[u8],
        opts: (u64, Fsync),
    ) -> io::Result<()> {
        let ((base, last, max_ts), (segment_bytes, fsync)) = (append, opts);
        let len = data.len() as u64;
        let roll = self.segments.last().is_none_or(|s| {
            should_roll(topic, segment_bytes, (s.size, s.base_offset, s.first_ts), (len, last, max_ts))
        });
        if roll {
            if let Some(old) = self.segments.last()
                && fsync != Fsync::Never
            {
                // The old segment is sealed: what this round wrote to it must be durable too.
                old.sync(true)?;
            }
            self.segments.push(Segment::create(&self.dir, base, self.interval)?);
        }
        let Some(seg) = self.segments.last_mut() else { return Err(io::Error::other("no segment")) };
        let size = seg.size;
        let r = seg.append(data);
        if seg.size > size {
            // The batches are in the log even if writing an index entry failed after them:
            // the partition's end says so ([`Command::RecoverPartition`] reports it).
            self.next_offset = last + 1;
            self.dirty = true;
        }
        r
    }

    /// The segments as the cleaner's planner sees them, the active one last.
    fn segment_infos(&self) -> Vec<SegmentInfo> {
        let segments = self.segments.iter().map(|s| (s.base_offset, s.size, s.first_ts, s.max_ts.0));
        planner::segment_infos(segments, self.next_offset)
    }

    /// Read handles on every segment, for a cleaner thread.
    fn snapshot(&self) -> io::Result<Vec<Snapshot>> {
        let ends = self.segments.iter().skip(1).map(|s| s.base_offset).chain([self.next_offset]);
        self.segments
            .iter()
            .zip(ends)
            .map(|(s, end)| Ok(Snapshot { base: s.base_offset, end, size: s.size, file: s.reader()? }))
            .collect()
    }

    /// The segment holding `offset`, or the first after it.
    fn segment_for(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.last_offset < offset)
    }

    fn read(&self, offset: i64, end: i64, max_bytes: usize) -> io::Result<SmallVec<[Bytes; 2]>> {
        let mut out = SmallVec::new();
        let target = offset.max(self.log_start);
        let mut used = 0usize;
        for seg in self.segments.iter().skip(self.segment_for(target)) {
            let pos = if out.is_empty() && used == 0 { seg.locate(target)? } else { Some(0) };
            let Some(pos) = pos.filter(|p| *p < seg.size) else { continue };
            let first = used == 0;
            let (buf, at_end) = seg.collect(pos, end, max_bytes.saturating_sub(used), first)?;
            used += buf.len();
            if !buf.is_empty() {
                out.push(Bytes::from(buf));
            }
            if !at_end || used >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn find_offset(&self, timestamp: i64) -> io::Result<Option<TimestampOffset>> {
        let first = self.segment_for(self.log_start);
        for seg in self.segments.iter().skip(first).filter(|s| s.max_ts.0 >= timestamp) {
            let start = seg.time_floor(timestamp).max(if seg.base_offset < self.log_start {
                seg.locate(self.log_start)?.unwrap_or(0)
            } else {
                0
            });
            let mut hit = None;
            seg.walk(start, |pos, h, _| {
                if h.last >= self.log_start && h.max_ts >= timestamp {
                    hit = Some((pos, h.len));
                }
                hit.is_none()
            })?;
            // Only the first batch reaching the timestamp can hold the answer, as in Kafka's
            // LogSegment.findOffsetByTimestamp; later batches start later.
            let mut from = hit;
            while let Some((pos, len)) = from {
                let batch = RecordBatch::new(Bytes::from(seg.read_at(pos, usize::try_from(len).unwrap_or(0))?))
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "damaged batch"))?;
                let records = batch
                    .records(MAX_DECOMPRESSED)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "undecodable batch"))?;
                for r in &records {
                    let r = r.map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "undecodable record"))?;
                    if r.timestamp() >= timestamp && r.offset() >= self.log_start {
                        return Ok(Some(TimestampOffset { timestamp: r.timestamp(), offset: r.offset() }));
                    }
                }
                // Every record qualifying by timestamp was below the log start: try the next.
                let next = pos + len;
                from = None;
                seg.walk(next, |p, h, _| {
                    if h.max_ts >= timestamp {
                        from = Some((p, h.len));
                    }
                    from.is_none()
                })?;
            }
        }
        Ok(None)
    }

    /// Moves the log start up; returns the whole segments now below it (never the active
    /// one), which the caller retires.
    #[must_use]
    fn set_log_start(&mut self, offset: i64) -> Vec<Segment> {
        self.log_start = self.log_start.max(offset);
        let below = self.segments.iter().skip(1).take_while(|s| s.base_offset <= self.log_start).count();
        self.segments.drain(..below).collect()
    }

    /// See [`Command::Retain`]. Returns the log start the deletions allow (not yet applied).
    fn retention_start(&self, older_than: Option<i64>, max_bytes: Option<u64>, limit: i64) -> i64 {
        let mut total: u64 = self.segments.iter().map(|s| s.size).sum();
        let mut start = self.log_start;
        for pair in self.segments.windows(2) {
            let (first, next_base) = (&pair[0], pair[1].base_offset);
            if next_base > limit {
                break;
            }
            let by_time = older_than.is_some_and(|t| first.max_ts.0 < t);
            let by_size = max_bytes.is_some_and(|m| total - first.size >= m);
            if !(by_time || by_size || next_base <= start) {
                break;
            }
            total -= first.size;
            start = start.max(next_base);
        }
        start
    }

    fn extent(&self) -> PartitionExtent {
        PartitionExtent {
            log_start: self.log_start.min(self.next_offset),
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp(),
            producer_batches: self.producer_batches(),
        }
    }

    /// The largest timestamp from the log start on, and the last offset of its batch.
    fn max_timestamp(&self) -> TimestampOffset {
        let mut max_timestamp = (-1, -1);
        for s in &self.segments {
            let seg_max = if s.base_offset >= self.log_start {
                s.max_ts
            } else {
                // Only batches from the log start on count: walk the part of this segment.
                let mut m = (-1, -1);
                let from = s.locate(self.log_start).ok().flatten().unwrap_or(s.size);
                let _ = s.walk(from, |_, h, _| {
                    if h.max_ts > m.0 {
                        m = (h.max_ts, h.last);
                    }
                    true
                });
                m
            };
            if seg_max.0 > max_timestamp.0 {
                max_timestamp = seg_max;
            }
        }
        TimestampOffset { timestamp: max_timestamp.0, offset: max_timestamp.1 }
    }

    /// The last few batches of each idempotent producer, read back from the newest
    /// [`PRODUCER_WINDOW`] bytes of the log (batch headers only).
    fn producer_batches(&self) -> Vec<BatchSummary> {
        let mut ranges = Vec::new();
        let mut window = PRODUCER_WINDOW;
        for (i, s) in self.segments.iter().enumerate().rev() {
            let from = s.floor_pos(s.size.saturating_sub(window));
            ranges.push((i, from));
            window = window.saturating_sub(s.size - from);
            if window == 0 {
                break;
            }
        }
        let mut per: HashMap<i64, VecDeque<BatchSummary>> = HashMap::new();
        for (i, from) in ranges.into_iter().rev() {
            let seg = &self.segments[i];
            let log_start = self.log_start;
            let _ = seg.walk(from, |_, h, raw| {
                if h.last >= log_start
                    && let Some(s) = summary(raw, h)
                {
                    let v = per.entry(s.producer_id).or_default();
                    v.push_back(s);
                    if v.len() > PRODUCER_BATCHES {
                        v.pop_front();
                    }
                }
                true
            });
        }
        let mut producer_batches: Vec<BatchSummary> = per.into_values().flatten().collect();
        producer_batches.sort_by_key(|b| b.base_offset);
        producer_batches
    }
}

/// The idempotence summary of a batch from its header bytes.
fn summary(head: &[u8], e: &Head) -> Option<BatchSummary> {
    let field = |at: usize, n: usize| head.get(at..at + n);
    let producer_id = i64::from_be_bytes(field(43, 8)?.try_into().ok()?);
    if producer_id < 0 {
        return None;
    }
    let epoch = i16::from_be_bytes(field(51, 2)?.try_into().ok()?);
    let base_sequence = i32::from_be_bytes(field(53, 4)?.try_into().ok()?);
    let delta = i32::from_be_bytes(field(23, 4)?.try_into().ok()?);
    Some(BatchSummary {
        producer_id,
        producer_epoch: epoch,
        base_sequence,
        last_sequence: base_sequence.wrapping_add(delta) & i32::MAX,
        base_offset: e.base,
        last_offset: e.last,
        timestamp: e.max_ts,
    })
}

/// Where a test stops the swap as if the process died there: after this many more steps
/// (each file operation of [`State::swap`] is one), the store does nothing more. Nothing in
/// builds other than this crate's tests.
#[derive(Default)]
struct CrashPoint {
    /// Steps left before the crash.
    #[cfg(test)]
    left: std::cell::Cell<Option<u32>>,
    #[cfg(test)]
    dead: std::cell::Cell<bool>,
}

impl CrashPoint {
    fn step(&self) -> io::Result<()> {
        #[cfg(test)]
        match self.left.get() {
            Some(0) => {
                self.dead.set(true);
                return Err(io::Error::other("simulated crash"));
            }
            Some(n) => self.left.set(Some(n - 1)),
            None => {}
        }
        Ok(())
    }

    fn crashed(&self) -> bool {
        #[cfg(test)]
        if self.dead.get() {
            return true;
        }
        false
    }
}

/// The swap names of a cleaned segment that replaces the segments in `base..end`.
fn swap_paths(dir: &Path, base: i64, end: i64) -> [PathBuf; 3] {
    EXTENSIONS.map(|ext| dir.join(format!("{base:020}-{end:020}.{ext}.swap")))
}

/// The range a `<base>-<end>.log.swap` file name replaces.
fn parse_swap(name: &str) -> Option<(i64, i64)> {
    let (base, end) = name.strip_suffix(".log.swap")?.split_once('-')?;
    Some((base.parse().ok()?, end.parse().ok()?))
}

/// Renames a committed swap's files to the live names (its indexes first: the `.log.swap`
/// file is what recovery looks for), or deletes them when the pass left nothing of the range
/// (an empty `.log.swap`): the next segment then starts later. The old segments in its range
/// must be gone. Returns whether a segment was installed.
fn install_swap(dir: &Path, base: i64, end: i64) -> io::Result<bool> {
    let swap = swap_paths(dir, base, end);
    if fs::metadata(&swap[0])?.len() == 0 {
        for p in swap.iter().rev() {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        return Ok(false);
    }
    let live = EXTENSIONS.map(|ext| dir.join(format!("{base:020}.{ext}")));
    for (from, to) in swap.iter().zip(&live).rev() {
        match fs::rename(from, to) {
            // An index may be missing (a crash mid-swap): the segment's open rebuilds it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !from.to_string_lossy().ends_with(".log.swap") => {}
            r => r?,
        }
    }
    Ok(true)
}

/// Finishes what a crash interrupted in a partition's directory: a cleaned segment that was
/// never committed (`.cleaned`) and retired files (`.deleted`) are deleted; a committed one
/// (`.log.swap`) replaces the segments in its range. Returns the highest end of the swaps
/// completed (`i64::MIN` if none).
fn recover_swaps(dir: &Path) -> io::Result<i64> {
    let names: Vec<String> =
        fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let mut swaps: Vec<(i64, i64)> = names.iter().filter_map(|n| parse_swap(n)).collect();
    swaps.sort_unstable();
    let mut changed = false;
    for name in names.iter().filter(|n| n.ends_with(cleaner::CLEANED) || n.ends_with(segment::DELETED)) {
        match fs::remove_file(dir.join(name)) {
            // A store closed a moment ago may still be deleting its retired files.
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => changed = true,
        }
    }
    for &(base, end) in &swaps {
        for name in &names {
            let live = EXTENSIONS.iter().find_map(|ext| name.strip_suffix(ext)?.strip_suffix('.'));
            if live.and_then(|b| b.parse::<i64>().ok()).is_some_and(|b| (base..end).contains(&b)) {
                match fs::remove_file(dir.join(name)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        install_swap(dir, base, end)?;
        changed = true;
    }
    // Index swaps whose `.log.swap` never came (a crash during the commit renames).
    for name in fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()) {
        if name.ends_with(".swap") {
            fs::remove_file(dir.join(&name))?;
            changed = true;
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(swaps.iter().map(|s| s.1).max().unwrap_or(i64::MIN))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_part_dir(name: &str) -> Option<PartitionKey> {
    let rest = name.strip_prefix("p-")?;
    let (id, p) = rest.split_once('-')?;
    if id.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(PartitionKey { topic_id: Uuid(bytes), partition: p.parse().ok()? })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

fn encode_topic(t: &TopicRecord) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&t.id.0);
    put_bytes(&mut out, t.name.as_bytes());
    out.extend_from_slice(&t.partitions.to_be_bytes());
    out.extend_from_slice(&u32::try_from(t.configs.len()).unwrap_or(0).to_be_bytes());
    for (k, v) in &t.configs {
        put_bytes(&mut out, k.as_bytes());
        put_bytes(&mut out, v.as_bytes());
    }
    out
}

fn decode_topic(r: &mut Cursor<'_>) -> Option<TopicRecord> {
    let id = r.uuid()?;
    let name = KStr::from_utf8(r.bytes()?).ok()?;
    let partitions = r.i32()?;
    let n = r.u32()?;
    let mut configs = Vec::new();
    for _ in 0..n {
        let k = KStr::from_utf8(r.bytes()?).ok()?;
        let v = KStr::from_utf8(r.bytes()?).ok()?;
        configs.push((k, v));
    }
    Some(TopicRecord { name, id, partitions, configs })
}

/// A bounds-checked reader over a metadata entry.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn uuid(&mut self) -> Option<Uuid> {
        Some(Uuid(self.take(16)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        Some(Bytes::copy_from_slice(self.take(n)?))
    }
}

#[cfg(test)]
mod tests;
