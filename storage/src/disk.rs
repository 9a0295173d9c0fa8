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

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{
    BatchSummary, DEFAULT_SEGMENT_BYTES, PartitionExtent, PartitionKey, Recovered, StorageError, TimestampOffset,
    TopicRecord, should_roll,
};
use kelp_core::log::PRODUCER_BATCHES;
use kelp_core::records::RecordBatch;
use kelp_core::{CmdId, Command, Completion};
use smallvec::SmallVec;

use crate::segment::{Head, IndexCheck, Segment};
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
}

impl DiskOptions {
    /// The defaults (Kafka's) with this fsync policy.
    #[must_use]
    pub fn new(fsync: Fsync) -> Self {
        Self { fsync, segment_bytes: DEFAULT_SEGMENT_BYTES, index_interval: 4096 }
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

/// The `disk` backend. Commands run on its IO thread; see the module docs.
pub struct DiskStore {
    tx: mpsc::Sender<Msg>,
    check: IndexCheck,
}

/// What the IO thread is asked to do.
enum Msg {
    Job(Job),
    /// Finish what came before, fsync every file written, and report.
    Sync(mpsc::Sender<io::Result<()>>),
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
        let state = State::open(dir, options)?;
        let check = state.check;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new().name("kelp-disk".into()).spawn(move || io_thread(state, &rx))?;
        Ok(Self { tx, check })
    }

    /// How the segments' indexes fared at open: used after checking, or rebuilt.
    #[must_use]
    pub fn index_check(&self) -> IndexCheck {
        self.check
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

fn io_thread(mut state: State, rx: &mpsc::Receiver<Msg>) {
    let mut last_sync = Instant::now();
    while let Ok(first) = rx.recv() {
        let mut round = Vec::new();
        let mut sync_asked = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => round.push(job),
                // Jobs after a sync request wait for the next round; this one ends here.
                Msg::Sync(reply) => {
                    sync_asked = Some(reply);
                    break;
                }
            }
            if round.len() < 4096 {
                next = rx.try_recv().ok();
            }
        }
        let results: Vec<Completion> =
            round.iter_mut().map(|j| state.apply(std::mem::replace(&mut j.command, Command::Recover))).collect();
        let synced = match state.fsync {
            Fsync::Always => state.sync_dirty(),
            Fsync::Interval(d) if last_sync.elapsed() >= d => {
                last_sync = Instant::now();
                state.sync_dirty()
            }
            _ => Ok(()),
        };
        for (job, result) in round.into_iter().zip(results) {
            let result = match (&synced, result) {
                (Err(_), Completion::Done) => Completion::Failed(StorageError::Full),
                (_, r) => r,
            };
            job.sink.complete(job.cmd, result);
        }
        if let Some(reply) = sync_asked {
            let _ = reply.send(state.sync_for_stop());
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
    parts: HashMap<PartitionKey, PartLog>,
}

fn storage_err(_: io::Error) -> StorageError {
    StorageError::Full
}

impl State {
    fn open(dir: &Path, options: DiskOptions) -> io::Result<Self> {
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
            parts: HashMap::new(),
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
            let part = PartLog::open(entry.path(), log_start, state.index_interval, &mut state.check)?;
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

    fn apply(&mut self, command: Command) -> Completion {
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
            Command::Append { partition, base_offset, last_offset, max_timestamp, batches } => {
                done(self.append(partition, (base_offset, last_offset, max_timestamp), &batches))
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
                if start > now
                    && let Err(e) = self.set_log_start(partition, start)
                {
                    return Completion::Failed(e);
                }
                let max_timestamp = self.parts.get(&partition).map_or(TimestampOffset::NONE, PartLog::max_timestamp);
                Completion::LogStart { offset: start, max_timestamp }
            }
            // Replaced by the disk store's cleaner thread (issue 18, in progress).
            Command::Clean { .. } => Completion::Cleaned(kelp_core::io::CleanReport::default()),
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
            p.set_log_start(offset);
        }
        Ok(())
    }

    fn append(&mut self, key: PartitionKey, append: (i64, i64, i64), data: &Bytes) -> Result<(), StorageError> {
        let (base, last, _) = append;
        if !self.topics.contains_key(&key.topic_id) {
            return Err(StorageError::NotFound);
        }
        let dir = self.dir.join(format!("p-{}-{}", hex(&key.topic_id.0), key.partition));
        if !self.parts.contains_key(&key) {
            fs::create_dir_all(&dir).map_err(storage_err)?;
            let log_start = self.log_starts.get(&key).copied().unwrap_or(0);
            let part = PartLog::open(dir, log_start, self.index_interval, &mut self.check).map_err(storage_err)?;
            self.parts.insert(key, part);
        }
        let Some(p) = self.parts.get_mut(&key) else { return Err(StorageError::NotFound) };
        if base != p.next_offset || last < base {
            return Err(StorageError::Corrupt("append does not continue the log"));
        }
        let Some(topic) = self.topics.get(&key.topic_id) else { return Err(StorageError::NotFound) };
        p.append(topic, append, data, (self.segment_bytes, self.fsync)).map_err(storage_err)
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
    fn open(dir: PathBuf, log_start: i64, interval: u64, check: &mut IndexCheck) -> io::Result<Self> {
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
            let seg = Segment::open(&log.dir, base, interval, check)?;
            // Segments must continue each other; an empty one is kept only at the end. A gap
            // (only after a machine crash without fsync) ends the log there.
            let continues = log.segments.last().is_none_or(|l| l.last_offset + 1 == base);
            if !continues {
                seg.remove();
                continue;
            }
            if let Some(prev) = log.segments.pop_if(|l| l.size == 0) {
                prev.remove();
            }
            log.segments.push(seg);
        }
        if let Some(s) = log.segments.last() {
            log.next_offset = s.last_offset + 1;
            // Retention deletes files after writing the new log start, but a crash between
            // the two must not leave a log start below the data.
            log.log_start = log.log_start.max(log.segments[0].base_offset);
        }
        log.next_offset = log.next_offset.max(log.log_start);
        log.set_log_start(log_start);
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

    fn set_log_start(&mut self, offset: i64) {
        self.log_start = self.log_start.max(offset);
        // Whole segments below the log start go; the active one stays.
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start {
            self.segments.remove(0).remove();
        }
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
