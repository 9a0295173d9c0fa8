//! The embedded `disk` store: durable, single-node, no external service.
//!
//! Layout under the data directory:
//! - `meta.log`: an append-only log of metadata changes (topics, small key/values, log starts),
//!   each entry `[len u32][crc32c u32][kind u8][payload]`; replayed at start.
//! - `p-<topic id hex>-<partition>/<base offset, 20 digits>.log`: segment files holding record
//!   batches exactly as the broker stored them (offsets already assigned), back to back.
//!
//! All file work happens on one IO thread, so commands for a partition take effect in order.
//! The thread takes every command that is waiting, applies them, makes them durable as the
//! [`Fsync`] policy says (one fsync per touched file per round: group commit), and only then
//! completes them. Recovery walks every segment, checks each batch's framing and CRC, and cuts
//! the file at the first torn or damaged batch; the in-memory index is rebuilt from what is left.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{BatchSummary, PartitionExtent, PartitionKey, Recovered, StorageError, TopicRecord};
use kelp_core::log::PRODUCER_BATCHES;
use kelp_core::records::{self, RecordBatch};
use kelp_core::{CmdId, Command, Completion};
use smallvec::SmallVec;

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

/// A segment is rolled once it reaches this size.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
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
}

struct Job {
    cmd: CmdId,
    command: Command,
    sink: Sink,
}

/// What the IO thread is asked to do.
enum Msg {
    Job(Job),
    /// Finish what came before, fsync every file written, and report.
    Sync(mpsc::Sender<io::Result<()>>),
}

impl DiskStore {
    /// Opens (creating if needed) the store in `dir`, recovering what is there, and starts its
    /// IO thread.
    pub fn open(dir: &Path, fsync: Fsync) -> io::Result<Self> {
        let state = State::open(dir, fsync)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new().name("kelp-disk".into()).spawn(move || io_thread(state, &rx))?;
        Ok(Self { tx })
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
            let _ = reply.send(state.sync_dirty());
        }
    }
}

/// One batch's place on disk.
#[derive(Clone, Copy, Debug)]
struct Entry {
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    segment: usize,
    pos: u64,
    len: u32,
}

struct Segment {
    base_offset: i64,
    path: PathBuf,
    file: File,
    size: u64,
}

struct PartLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    index: Vec<Entry>,
    log_start: i64,
    next_offset: i64,
    dirty: bool,
}

struct State {
    dir: PathBuf,
    fsync: Fsync,
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
    fn open(dir: &Path, fsync: Fsync) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let meta_path = dir.join("meta.log");
        let mut meta = OpenOptions::new().create(true).read(true).append(true).open(&meta_path)?;
        let mut state = Self {
            dir: dir.to_path_buf(),
            fsync,
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
            state.parts.insert(key, PartLog::open(entry.path(), log_start)?);
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

    fn sync_dirty(&mut self) -> io::Result<()> {
        if self.meta_dirty {
            self.meta.sync_data()?;
            self.meta_dirty = false;
        }
        for p in self.parts.values_mut().filter(|p| p.dirty) {
            if let Some(seg) = p.segments.last() {
                seg.file.sync_data()?;
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
                done(self.append(partition, base_offset, last_offset, max_timestamp, &batches))
            }
            Command::Read { partition, offset, end, max_bytes } => match self.parts.get(&partition) {
                None => Completion::Read { batches: SmallVec::new() },
                Some(p) => p
                    .read(offset, end, max_bytes)
                    .map_or_else(|e| Completion::Failed(storage_err(e)), |b| Completion::Read { batches: b }),
            },
            Command::FindOffset { partition, timestamp } => match self.parts.get(&partition) {
                None => Completion::Offset { found: None },
                Some(p) => Completion::Offset { found: p.find_offset(timestamp) },
            },
            Command::SetLogStart { partition, offset } => {
                let end = self.parts.get(&partition).map_or(0, |p| p.next_offset);
                if offset > end {
                    return Completion::Failed(StorageError::Corrupt("log start beyond the log end"));
                }
                let mut payload = Vec::with_capacity(28);
                payload.extend_from_slice(&partition.topic_id.0);
                payload.extend_from_slice(&partition.partition.to_be_bytes());
                payload.extend_from_slice(&offset.to_be_bytes());
                let r = self.write_meta(META_LOG_START, &payload);
                if let Some(p) = self.parts.get_mut(&partition) {
                    p.set_log_start(offset);
                }
                done(r)
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

    fn append(
        &mut self,
        key: PartitionKey,
        base: i64,
        last: i64,
        max_ts: i64,
        data: &Bytes,
    ) -> Result<(), StorageError> {
        if !self.topics.contains_key(&key.topic_id) {
            return Err(StorageError::NotFound);
        }
        let dir = self.dir.join(format!("p-{}-{}", hex(&key.topic_id.0), key.partition));
        if !self.parts.contains_key(&key) {
            fs::create_dir_all(&dir).map_err(storage_err)?;
            let log_start = self.log_starts.get(&key).copied().unwrap_or(0);
            self.parts.insert(key, PartLog::open(dir, log_start).map_err(storage_err)?);
        }
        let Some(p) = self.parts.get_mut(&key) else { return Err(StorageError::NotFound) };
        if base != p.next_offset || last < base {
            return Err(StorageError::Corrupt("append does not continue the log"));
        }
        p.append(base, last, max_ts, data).map_err(storage_err)
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
    fn open(dir: PathBuf, log_start: i64) -> io::Result<Self> {
        let mut files: Vec<(i64, PathBuf)> = fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let base = name.strip_suffix(".log")?.parse::<i64>().ok()?;
                Some((base, e.path()))
            })
            .collect();
        files.sort();
        let mut log = Self { dir, segments: Vec::new(), index: Vec::new(), log_start, next_offset: 0, dirty: false };
        // Segments are in offset order; each is scanned and cut at a torn tail.
        for (base, path) in files {
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            let seg_idx = log.segments.len();
            let size = log.scan(&file, seg_idx)?;
            if size < file.metadata()?.len() {
                file.set_len(size)?;
                file.sync_all()?;
            }
            // A segment is named after the offset its first batch was to have.
            log.next_offset = log.next_offset.max(base);
            log.segments.push(Segment { base_offset: base, path, file, size });
        }
        if let Some(e) = log.index.last() {
            log.next_offset = e.last_offset + 1;
        }
        log.next_offset = log.next_offset.max(log.log_start);
        log.set_log_start(log_start);
        Ok(log)
    }

    /// Indexes the whole, valid batches at the front of `file`; returns where they end.
    fn scan(&mut self, file: &File, segment: usize) -> io::Result<u64> {
        let mut data = Vec::new();
        (&*file).seek(SeekFrom::Start(0))?;
        (&*file).read_to_end(&mut data)?;
        let data = Bytes::from(data);
        let mut pos = 0usize;
        while pos < data.len() {
            let Ok(len) = records::frame(&data[pos..]) else { break };
            let Ok(batch) = RecordBatch::new(data.slice(pos..pos + len)) else { break };
            if batch.validate().is_err() {
                break;
            }
            let expected = self.index.last().map(|e| e.last_offset + 1);
            if expected.is_some_and(|x| batch.base_offset() != x) {
                break;
            }
            self.index.push(Entry {
                base_offset: batch.base_offset(),
                last_offset: batch.last_offset(),
                max_timestamp: batch.max_timestamp(),
                segment,
                pos: pos as u64,
                len: u32::try_from(len).unwrap_or(u32::MAX),
            });
            pos += len;
        }
        Ok(pos as u64)
    }

    fn append(&mut self, base: i64, last: i64, max_ts: i64, data: &[u8]) -> io::Result<()> {
        let roll = self.segments.last().is_none_or(|s| s.size + data.len() as u64 > SEGMENT_BYTES && s.size > 0);
        if roll {
            // sync_dirty only syncs the last segment: the one being left must be durable first.
            if self.dirty
                && let Some(prev) = self.segments.last()
            {
                prev.file.sync_data()?;
            }
            let path = self.dir.join(format!("{base:020}.log"));
            let file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
            self.segments.push(Segment { base_offset: base, path, file, size: 0 });
        }
        let segment = self.segments.len() - 1;
        let seg = &mut self.segments[segment];
        (&seg.file).write_all(data)?;
        self.index.push(Entry {
            base_offset: base,
            last_offset: last,
            max_timestamp: max_ts,
            segment,
            pos: seg.size,
            len: u32::try_from(data.len()).unwrap_or(u32::MAX),
        });
        seg.size += data.len() as u64;
        self.next_offset = last + 1;
        self.dirty = true;
        Ok(())
    }

    fn read(&self, offset: i64, end: i64, max_bytes: usize) -> io::Result<SmallVec<[Bytes; 2]>> {
        let mut out = SmallVec::new();
        let first = self.index.partition_point(|e| e.last_offset < offset);
        let mut used = 0usize;
        let mut i = first;
        while let Some(e) = self.index.get(i) {
            if e.base_offset >= end || (!out.is_empty() || used > 0) && used + e.len as usize > max_bytes {
                break;
            }
            // Read a run of consecutive batches of one segment in one call.
            let seg = e.segment;
            let start = e.pos;
            let mut stop = e.pos + u64::from(e.len);
            used += e.len as usize;
            i += 1;
            while let Some(n) = self.index.get(i) {
                if n.segment != seg || n.base_offset >= end || used + n.len as usize > max_bytes {
                    break;
                }
                stop = n.pos + u64::from(n.len);
                used += n.len as usize;
                i += 1;
            }
            let mut buf = vec![0u8; usize::try_from(stop - start).unwrap_or(0)];
            self.segments[seg].file.read_exact_at(&mut buf, start)?;
            out.push(Bytes::from(buf));
            if used >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn find_offset(&self, timestamp: i64) -> Option<(i64, i64)> {
        for e in self.index.iter().filter(|e| e.max_timestamp >= timestamp) {
            let mut buf = vec![0u8; e.len as usize];
            self.segments[e.segment].file.read_exact_at(&mut buf, e.pos).ok()?;
            let batch = RecordBatch::new(Bytes::from(buf)).ok()?;
            let records = batch.records(MAX_DECOMPRESSED).ok()?;
            for r in &records {
                let r = r.ok()?;
                if r.timestamp() >= timestamp && r.offset() >= self.log_start {
                    return Some((r.offset(), r.timestamp()));
                }
            }
        }
        None
    }

    fn set_log_start(&mut self, offset: i64) {
        self.log_start = self.log_start.max(offset);
        // Whole segments below the log start go.
        while self.segments.len() > 1 {
            let next_base = self.segments[1].base_offset;
            if next_base > self.log_start {
                break;
            }
            let seg = self.segments.remove(0);
            let _ = fs::remove_file(&seg.path);
            self.index.retain(|e| e.segment != 0);
            for e in &mut self.index {
                e.segment -= 1;
            }
        }
        self.index.retain(|e| e.last_offset >= self.log_start);
    }

    fn extent(&self) -> PartitionExtent {
        let mut max_timestamp = (-1, -1);
        for e in &self.index {
            if e.max_timestamp > max_timestamp.0 {
                max_timestamp = (e.max_timestamp, e.last_offset);
            }
        }
        // The last few batches of each idempotent producer, read back from disk.
        let mut per: HashMap<i64, Vec<BatchSummary>> = HashMap::new();
        for e in self.index.iter().rev().take(PRODUCER_BATCHES * 64) {
            let mut head = vec![0u8; records::HEADER_LEN.min(e.len as usize)];
            if self.segments[e.segment].file.read_exact_at(&mut head, e.pos).is_err() {
                continue;
            }
            let Some(s) = summary(&head, e) else { continue };
            let v = per.entry(s.producer_id).or_default();
            if v.len() < PRODUCER_BATCHES {
                v.push(s);
            }
        }
        let mut producer_batches: Vec<BatchSummary> = per.into_values().flatten().collect();
        producer_batches.sort_by_key(|b| b.base_offset);
        PartitionExtent {
            log_start: self.log_start.min(self.next_offset),
            next_offset: self.next_offset,
            max_timestamp,
            producer_batches,
        }
    }
}

/// The idempotence summary of a batch from its header bytes.
fn summary(head: &[u8], e: &Entry) -> Option<BatchSummary> {
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
        base_offset: e.base_offset,
        last_offset: e.last_offset,
        timestamp: e.max_timestamp,
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
