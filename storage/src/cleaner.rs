//! The disk store's log cleaner threads: one pass of Kafka's LogCleaner over a partition's
//! closed segments, off the store's IO thread.
//!
//! The IO thread plans a pass ([`kelp_core::cleaner::plan`]) and hands this module a
//! [`Job`]: the plan and a snapshot of the partition's segments (their extents and a read
//! handle on each file; a closed segment's bytes never change, and the handle keeps them
//! readable even if retention deletes the file meanwhile). A cleaner thread then
//! 1. reads the dirty segments' batches into a [`KeyMap`] (the latest offset of every key)
//!    until the map's memory budget is spent;
//! 2. walks the batch headers of the whole log for the last batch of each idempotent producer,
//!    which survives cleaning even when empty (duplicate detection needs it);
//! 3. rewrites every segment from the log start to the last one the map reached, grouped by
//!    [`kelp_core::cleaner::group_by_size`] into new segments written beside the old ones as
//!    `<base>.log.cleaned` (with their indexes), each batch passed through
//!    [`kelp_core::cleaner::filter`], and fsyncs them.
//!
//! It touches no live file: the result goes back to the IO thread, which checks that the
//! segments it replaces are still there unchanged and swaps the new ones in (see `disk.rs`).
//! Reads are chunked (`io_buffer` bytes, or one batch when a batch is larger), writes go out
//! in chunks of the same size, and both count against the optional IO rate limit
//! (Kafka's `log.cleaner.io.max.bytes.per.second`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use kelp_core::io::{CleanReport, CleanSpec, PartitionKey, StorageError};
use kelp_core::records::{self, RecordBatch, RecordsError};
use kelp_core::{CmdId, Completion};

use kelp_core::cleaner::{self, Filtered, KeyMap, Rules};

use crate::Sink;
use crate::segment::{self, Segment};

/// The suffix of the cleaner's output files until they are swapped in.
pub(crate) const CLEANED: &str = ".cleaned";

/// How the cleaner threads are set up (from [`crate::DiskOptions`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Cleaner threads; 0 turns cleaning off.
    pub threads: usize,
    /// Memory budget of one thread's key map.
    pub map_bytes: usize,
    /// Read and write chunk size.
    pub io_buffer: usize,
    /// Bytes read plus written per second, over all threads.
    pub max_bytes_per_second: Option<u64>,
    /// Index interval of the segments written.
    pub index_interval: u64,
}

/// One closed (or, last, the active) segment as the pass sees it.
pub(crate) struct Snapshot {
    pub base: i64,
    /// Exclusive end: the next segment's base, or the log end for the last.
    pub end: i64,
    pub size: u64,
    pub file: File,
}

/// A pass to run: what the IO thread planned.
pub(crate) struct Job {
    pub key: PartitionKey,
    pub cmd: CmdId,
    pub sink: Sink,
    /// When the pass started running (set by the cleaner thread).
    pub started: Instant,
    pub dir: PathBuf,
    pub spec: CleanSpec,
    pub dirty_ratio: f64,
    pub first_dirty: i64,
    /// The log start: batches wholly below it are left out of the new segments.
    pub log_start: i64,
    /// Indices (into `segments`) of the segments to read into the key map.
    pub dirty: std::ops::Range<usize>,
    /// The whole log, the active segment last.
    pub segments: Vec<Snapshot>,
    /// The topic's `segment.bytes`: cleaned segments are grouped up to it.
    pub segment_bytes: u64,
}

/// A new segment, written and synced as `<base>.*.cleaned`, that replaces the old segments
/// `old` (base and size each), which cover offsets `base..end`. An empty one replaces them
/// with nothing.
#[derive(Debug)]
pub(crate) struct Group {
    pub base: i64,
    pub end: i64,
    pub old: Vec<(i64, u64)>,
    pub paths: [PathBuf; 3],
}

/// What a pass produced.
pub(crate) struct Output {
    pub groups: Vec<Group>,
    /// The offset the next pass's key map starts at.
    pub first_dirty: i64,
    /// The earliest delete horizon of the tombstones kept in the new segments.
    pub horizon: Option<i64>,
    pub report: CleanReport,
}

/// A pass's end, handed back to the IO thread.
pub(crate) struct Finished {
    pub key: PartitionKey,
    pub cmd: CmdId,
    pub sink: Sink,
    pub started: Instant,
    pub dirty_ratio: f64,
    /// `Ok(None)`: nothing to swap (nothing to do, or stopped).
    pub outcome: Result<Option<Output>, StorageError>,
}

impl Finished {
    /// The answer when nothing is swapped in; deletes the pass's files.
    pub fn discard(self) -> (CmdId, Sink, Completion) {
        if let Ok(Some(out)) = &self.outcome {
            remove_groups(&out.groups);
        }
        let result = match self.outcome {
            Err(e) => Completion::Failed(e),
            Ok(_) => Completion::Cleaned(CleanReport {
                dirty_ratio: self.dirty_ratio,
                micros: micros(self.started),
                ..CleanReport::default()
            }),
        };
        (self.cmd, self.sink, result)
    }
}

pub(crate) fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Deletes the files of a pass's groups.
pub(crate) fn remove_groups(groups: &[Group]) {
    for p in groups.iter().flat_map(|g| &g.paths) {
        let _ = std::fs::remove_file(p);
    }
}

/// The cleaner threads. Dropping it stops them: passes in progress end early and answer
/// without cleaning.
pub(crate) struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Pool {
    /// Starts `settings.threads` threads; each finished pass goes to `done`.
    pub fn start(settings: Settings, done: impl Fn(Finished) + Send + Clone + 'static) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let stop = Arc::new(AtomicBool::new(false));
        let throttle = Arc::new(Throttle::new(settings.max_bytes_per_second));
        let mut threads = Vec::new();
        for i in 0..settings.threads {
            let (rx, stop, throttle, done) = (Arc::clone(&rx), Arc::clone(&stop), Arc::clone(&throttle), done.clone());
            let worker = Worker { settings, stop, throttle };
            threads.push(std::thread::Builder::new().name(format!("kelp-cleaner-{i}")).spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(job) = job else { break };
                    done(worker.run(job));
                }
            })?);
        }
        Ok(Self { jobs: Some(tx), threads, stop })
    }

    /// Whether cleaning is on.
    pub fn enabled(&self) -> bool {
        !self.threads.is_empty()
    }

    /// Queues a pass; false when the threads are gone (the caller answers the command).
    pub fn submit(&self, job: Job) -> bool {
        match &self.jobs {
            Some(tx) if self.enabled() => tx.send(job).is_ok(),
            _ => false,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Worker {
    settings: Settings,
    stop: Arc<AtomicBool>,
    throttle: Arc<Throttle>,
}

/// Why a pass ended early.
enum Stopped {
    /// The store is closing.
    Stop,
    Io(io::Error),
    Damaged(RecordsError),
}

impl From<io::Error> for Stopped {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<RecordsError> for Stopped {
    fn from(e: RecordsError) -> Self {
        Self::Damaged(e)
    }
}

impl Worker {
    fn run(&self, mut job: Job) -> Finished {
        // The pass's time counts from here, not from when it was queued behind other
        // partitions' passes (the run-seconds metric measures cleaning, not waiting).
        job.started = Instant::now();
        let mut written = Vec::new();
        let outcome = match self.pass(&job, &mut written) {
            Ok(out) => Ok(out),
            Err(e) => {
                remove_groups(&written);
                match e {
                    Stopped::Stop => Ok(None),
                    Stopped::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
                        tracing::warn!(dir = %job.dir.display(), "log cleaner: {e}");
                        Err(StorageError::Corrupt("damaged batch in a segment being cleaned"))
                    }
                    Stopped::Io(e) => {
                        tracing::warn!(dir = %job.dir.display(), "log cleaner: {e}");
                        Err(StorageError::Full)
                    }
                    Stopped::Damaged(e) => {
                        tracing::warn!(dir = %job.dir.display(), "log cleaner: damaged batch: {e}");
                        Err(StorageError::Corrupt("damaged batch in a segment being cleaned"))
                    }
                }
            }
        };
        let Job { key, cmd, sink, started, dirty_ratio, .. } = job;
        Finished { key, cmd, sink, started, dirty_ratio, outcome }
    }

    fn check_stop(&self) -> Result<(), Stopped> {
        if self.stop.load(Ordering::Relaxed) { Err(Stopped::Stop) } else { Ok(()) }
    }

    /// One pass; the groups written so far go to `written` (for cleaning up after a failure).
    fn pass(&self, job: &Job, written: &mut Vec<Group>) -> Result<Option<Output>, Stopped> {
        let map = self.build_map(job)?;
        // An empty map (nothing dirty was readable, or a pass only for tombstones past their
        // horizon) still rewrites the clean part; the checkpoint stays.
        let end = map.end().unwrap_or(job.first_dirty);
        let mut horizon: Option<i64> = None;
        // Every segment up to the last dirty one is rewritten, the clean ones too: the new
        // keys supersede their older records (beyond the map's end nothing is superseded).
        let upto = job.dirty.end;
        let last_batches = self.producer_last_batches(&job.segments)?;
        let rules = Rules::of(&job.spec);
        let sizes: Vec<u64> = job.segments[..upto].iter().map(|s| s.size).collect();
        let mut report = CleanReport { dirty_ratio: job.dirty_ratio, cleaned: true, ..CleanReport::default() };
        for range in split_by_offsets(&job.segments, cleaner::group_by_size(&sizes, job.segment_bytes)) {
            let olds = &job.segments[range];
            let (Some(first), Some(last)) = (olds.first(), olds.last()) else { continue };
            let mut out = Segment::create_with(&job.dir, first.base, self.settings.index_interval, CLEANED)?;
            written.push(Group {
                base: first.base,
                end: last.end,
                old: olds.iter().map(|s| (s.base, s.size)).collect(),
                paths: out.file_paths().clone(),
            });
            let mut buf = Vec::with_capacity(self.settings.io_buffer);
            for old in olds {
                let mut reader = Reader::new(&old.file, old.size, self.settings.io_buffer);
                while let Some(batch) = reader.next()? {
                    self.check_stop()?;
                    if !segment::intact(&batch) {
                        return Err(Stopped::Io(damaged()));
                    }
                    if batch.last_offset() < job.log_start {
                        continue;
                    }
                    report.bytes_read += batch.len() as u64;
                    let pid = batch.producer_id();
                    let keep_empty = pid >= 0 && last_batches.get(&pid) == Some(&batch.base_offset());
                    let (filtered, removed) = cleaner::filter(&batch, &map, &rules, keep_empty)?;
                    report.records_removed += u64::from(removed);
                    let kept = match filtered {
                        Filtered::Keep => Some(batch),
                        Filtered::Drop => None,
                        Filtered::Rewrite(b) => Some(RecordBatch::new(b)?),
                    };
                    if let Some(kept) = kept {
                        buf.extend_from_slice(kept.as_bytes());
                        horizon = match (horizon, cleaner::delete_horizon(&kept)) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    if buf.len() >= self.settings.io_buffer {
                        self.write(&mut out, &mut buf)?;
                    }
                    self.throttle.spend(reader.take_read(), &self.stop);
                }
            }
            self.write(&mut out, &mut buf)?;
            out.sync(true)?;
            report.bytes_written += out.size;
        }
        Ok(Some(Output { groups: std::mem::take(written), first_dirty: end, horizon, report }))
    }

    fn write(&self, out: &mut Segment, buf: &mut Vec<u8>) -> Result<(), Stopped> {
        if !buf.is_empty() {
            out.append(buf)?;
            self.throttle.spend(buf.len() as u64, &self.stop);
            buf.clear();
        }
        Ok(())
    }

    /// The key map over the dirty segments from the first dirty offset, as far as its
    /// budget goes.
    fn build_map(&self, job: &Job) -> Result<KeyMap, Stopped> {
        let mut map = KeyMap::new(self.settings.map_bytes);
        for seg in &job.segments[job.dirty.clone()] {
            let mut reader = Reader::new(&seg.file, seg.size, self.settings.io_buffer);
            while let Some(batch) = reader.next()? {
                self.check_stop()?;
                self.throttle.spend(reader.take_read(), &self.stop);
                // Batches below the log start are gone as far as readers know.
                if batch.last_offset() < job.first_dirty.max(job.log_start) {
                    continue;
                }
                if batch.base_offset() >= job.spec.limit || !map.add(&batch)? {
                    return Ok(map);
                }
            }
        }
        Ok(map)
    }

    /// The base offset of every idempotent producer's last batch in the log, from batch
    /// headers alone.
    fn producer_last_batches(&self, segments: &[Snapshot]) -> Result<HashMap<i64, i64>, Stopped> {
        let mut last = HashMap::new();
        for seg in segments {
            self.check_stop()?;
            let read = walk_heads(&seg.file, seg.size, |base, producer_id| {
                if producer_id >= 0 {
                    last.insert(producer_id, base);
                }
            })?;
            self.throttle.spend(read, &self.stop);
        }
        Ok(last)
    }
}

/// Splits groups whose offsets would not fit a segment index's 32-bit relative offsets.
fn split_by_offsets(segments: &[Snapshot], groups: Vec<std::ops::Range<usize>>) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut start = g.start;
        for i in g.clone() {
            if i > start && segments[i].end - segments[start].base > i64::from(u32::MAX) {
                out.push(start..i);
                start = i;
            }
        }
        out.push(start..g.end);
    }
    out
}

/// Reads whole batches of one segment file in chunks.
struct Reader<'a> {
    file: &'a File,
    size: u64,
    /// File position of `chunk[0]`.
    pos: u64,
    chunk: Bytes,
    at: usize,
    cap: usize,
    read: u64,
}

impl<'a> Reader<'a> {
    fn new(file: &'a File, size: u64, cap: usize) -> Self {
        Self { file, size, pos: 0, chunk: Bytes::new(), at: 0, cap: cap.max(records::HEADER_LEN), read: 0 }
    }

    /// Bytes read from the file since the last call.
    fn take_read(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }

    fn next(&mut self) -> io::Result<Option<RecordBatch>> {
        let at_file = self.pos + self.at as u64;
        if at_file >= self.size {
            return Ok(None);
        }
        let len = match records::frame(&self.chunk[self.at..]) {
            Ok(len) => len,
            Err(RecordsError::Truncated(_)) => {
                // Refill from this batch on: a chunk, or the whole batch if it is larger.
                let left = usize::try_from(self.size - at_file).unwrap_or(usize::MAX);
                let mut head = [0u8; records::LOG_OVERHEAD];
                if left < head.len() {
                    return Err(damaged());
                }
                self.file.read_exact_at(&mut head, at_file)?;
                let batch = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
                let need = usize::try_from(batch).map_err(|_| damaged())?.saturating_add(records::LOG_OVERHEAD);
                if need > left {
                    return Err(damaged());
                }
                let mut buf = vec![0u8; left.min(self.cap.max(need))];
                self.file.read_exact_at(&mut buf, at_file)?;
                self.read += buf.len() as u64;
                (self.chunk, self.pos, self.at) = (Bytes::from(buf), at_file, 0);
                records::frame(&self.chunk).map_err(|_| damaged())?
            }
            Err(_) => return Err(damaged()),
        };
        let batch = RecordBatch::new(self.chunk.slice(self.at..self.at + len)).map_err(|_| damaged())?;
        self.at += len;
        Ok(Some(batch))
    }
}

/// Where a batch header holds the producer id.
const PRODUCER_ID: usize = 43;

fn damaged() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "damaged batch in a segment")
}

/// Calls `f(base offset, producer id)` for every batch of a segment file, reading only small
/// windows around the headers (large batches are skipped, not read). Returns the bytes read.
fn walk_heads(file: &File, size: u64, mut f: impl FnMut(i64, i64)) -> io::Result<u64> {
    const WINDOW: usize = 8 * 1024;
    let mut buf = vec![0u8; WINDOW];
    let (mut pos, mut read) = (0u64, 0u64);
    while pos < size {
        let n = usize::try_from(size - pos).unwrap_or(usize::MAX).min(WINDOW);
        file.read_exact_at(&mut buf[..n], pos)?;
        read += n as u64;
        let mut i = 0usize;
        while i + records::HEADER_LEN <= n {
            let Some(h) = segment::head(&buf[i..n]) else { return Err(damaged()) };
            let pid =
                buf[i + PRODUCER_ID..i + PRODUCER_ID + 8].try_into().map(i64::from_be_bytes).map_err(|_| damaged())?;
            f(h.base, pid);
            i = i.saturating_add(usize::try_from(h.len).unwrap_or(usize::MAX));
        }
        if i == 0 {
            return Err(damaged());
        }
        pos += i as u64;
    }
    Ok(read)
}

/// Kafka's `Throttler`: keeps the cleaners' IO under a rate by sleeping once it runs ahead.
struct Throttle {
    rate: Option<u64>,
    window: Mutex<(Instant, u64)>,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Self {
        Self { rate: rate.filter(|r| *r > 0), window: Mutex::new((Instant::now(), 0)) }
    }

    /// Counts `bytes` of IO and sleeps as long as the rate needs (waking early on `stop`).
    fn spend(&self, bytes: u64, stop: &AtomicBool) {
        let Some(rate) = self.rate else { return };
        let wait = {
            let Ok(mut w) = self.window.lock() else { return };
            w.1 += bytes;
            let elapsed = w.0.elapsed();
            let due = Duration::from_secs_f64(w.1 as f64 / rate as f64);
            if elapsed >= Duration::from_secs(1) && due <= elapsed {
                *w = (Instant::now(), 0);
            }
            due.saturating_sub(elapsed)
        };
        let until = Instant::now() + wait;
        while !stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}
