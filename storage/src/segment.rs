//! One segment of a partition's log on disk, with its sparse offset and time indexes.
//!
//! Files, named after the segment's base offset (20 digits):
//! - `<base>.log`: record batches back to back, exactly as stored.
//! - `<base>.index`: one entry per `index_interval` bytes of batches (Kafka's
//!   `index.interval.bytes`): `[offset - base u32][position u32][crc32c u32]`, the base offset
//!   and position of a batch. A read looks up the last entry at or before its offset and walks
//!   batch headers from there: at most about one interval of headers, never the whole segment.
//! - `<base>.timeindex`: written at the same points when the segment's largest timestamp so far
//!   has grown: `[timestamp i64][offset - base u32][crc32c u32]`, the largest timestamp of the
//!   batches before that point and the last offset of the batch that has it. A timestamp lookup
//!   starts at the last entry whose timestamp is at or below its target.
//!
//! Each entry's CRC covers the segment's base offset too, so an entry from another segment or a
//! damaged one is noticed. Index files are not fsynced per write: they can always be rebuilt.
//! On open the indexes are checked, never trusted blindly: entries must be whole, intact and
//! ascending, point inside the segment, and a sample of them (plus the last) must point at a
//! batch with the offset they claim; the tail after the last entry is read and every batch in it
//! checked (CRC) as before, cutting a torn tail. Any disagreement rebuilds both indexes from a
//! full scan of the segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kelp_core::records::{self, RecordBatch, RecordsError};

/// Bytes of the batch header a walk reads (the whole v2 header).
const HEAD: usize = records::HEADER_LEN;
/// Chunk size of scans and header walks.
const CHUNK: usize = 1 << 20;
/// Size of one offset index entry.
const OFFSET_ENTRY: usize = 16;
/// Size of one time index entry.
const TIME_ENTRY: usize = 16;
/// How many index entries (besides the last) are checked against the segment on open.
const SAMPLES: usize = 64;

/// The suffix of a retired segment's files, waiting to be deleted.
pub(crate) const DELETED: &str = ".deleted";

/// What a walk learns from a batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub base: i64,
    pub last: i64,
    pub max_ts: i64,
    /// Whole size, `LOG_OVERHEAD + batchLength`.
    pub len: u64,
}

/// Parses the header at the start of `b`, without checking the CRC.
pub(crate) fn head(b: &[u8]) -> Option<Head> {
    let i64_at = |at: usize| b.get(at..at + 8).and_then(|x| x.try_into().ok()).map(i64::from_be_bytes);
    let i32_at = |at: usize| b.get(at..at + 4).and_then(|x| x.try_into().ok()).map(i32::from_be_bytes);
    let base = i64_at(0)?;
    let len = u64::try_from(i32_at(8)?).ok()?;
    if len < records::MIN_BATCH_LENGTH as u64 || b.get(16).copied() != Some(2) {
        return None;
    }
    let delta = i32_at(23)?;
    Some(Head {
        base,
        last: base + i64::from(delta.max(0)),
        max_ts: i64_at(35)?,
        len: len + records::LOG_OVERHEAD as u64,
    })
}

/// How a segment's indexes fared when it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexCheck {
    /// Segments whose indexes were checked and used.
    pub used: usize,
    /// Segments whose indexes were missing, torn or wrong and were rebuilt by a full scan.
    pub rebuilt: usize,
    /// Bytes of batches read and CRC-checked during recovery.
    pub bytes_scanned: u64,
}

pub(crate) struct Segment {
    pub base_offset: i64,
    /// The `.log`, `.index` and `.timeindex` files.
    paths: [PathBuf; 3],
    file: File,
    index: File,
    timeindex: File,
    /// Bytes of whole batches.
    pub size: u64,
    /// Last offset stored (`base_offset - 1` when empty).
    pub last_offset: i64,
    /// Largest batch max timestamp and the last offset of that batch, or (-1, -1).
    pub max_ts: (i64, i64),
    /// The first batch's max timestamp (-1 when empty): `segment.ms` counts from it.
    pub first_ts: i64,
    /// Sparse offset index: (batch base offset, position).
    offsets: Vec<(i64, u64)>,
    /// Sparse time index: (largest timestamp so far, offset).
    times: Vec<(i64, i64)>,
    since_entry: u64,
    interval: u64,
    pending_index: Vec<u8>,
    pending_time: Vec<u8>,
    /// Batches starting at or below this offset may follow a gap (see [`Segment::open`]).
    gaps_below: i64,
}

/// The extensions of a segment's three files.
pub(crate) const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];

/// A segment's `.log`, `.index` and `.timeindex` paths, each followed by `suffix` (empty for
/// a live segment, `.cleaned` for the cleaner's output).
pub(crate) fn paths_with(dir: &Path, base: i64, suffix: &str) -> [PathBuf; 3] {
    EXTENSIONS.map(|ext| dir.join(format!("{base:020}.{ext}{suffix}")))
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).read(true).append(true).open(path)
}

fn entry_crc(base: i64, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&base.to_be_bytes()), body)
}

impl Segment {
    /// A new, empty segment.
    pub fn create(dir: &Path, base: i64, interval: u64) -> io::Result<Self> {
        Self::create_with(dir, base, interval, "")
    }

    /// A new, empty segment whose file names end in `suffix` after the usual extension (the
    /// cleaner writes `.cleaned` segments beside the live ones).
    pub fn create_with(dir: &Path, base: i64, interval: u64, suffix: &str) -> io::Result<Self> {
        let paths = paths_with(dir, base, suffix);
        let file = open_rw(&paths[0])?;
        file.set_len(0)?;
        let index = open_rw(&paths[1])?;
        index.set_len(0)?;
        let timeindex = open_rw(&paths[2])?;
        timeindex.set_len(0)?;
        Ok(Self::empty(base, paths, file, index, timeindex, interval))
    }

    fn empty(base: i64, paths: [PathBuf; 3], file: File, index: File, timeindex: File, interval: u64) -> Self {
        Self {
            base_offset: base,
            paths,
            file,
            index,
            timeindex,
            size: 0,
            last_offset: base - 1,
            max_ts: (-1, -1),
            first_ts: -1,
            offsets: Vec::new(),
            times: Vec::new(),
            since_entry: 0,
            interval: interval.max(1),
            pending_index: Vec::new(),
            pending_time: Vec::new(),
            gaps_below: i64::MIN,
        }
    }

    /// Opens a segment, checking its indexes (rebuilding them if needed) and cutting a torn
    /// tail. See the module docs. Batches starting at or below `gaps_below` (the end of what
    /// the log cleaner rewrote) may leave gaps in the offsets before them, and may hold fewer
    /// records than their offset range; above it, every batch must continue the one before.
    pub fn open(dir: &Path, base: i64, interval: u64, gaps_below: i64, check: &mut IndexCheck) -> io::Result<Self> {
        let paths = paths_with(dir, base, "");
        let file = OpenOptions::new().read(true).append(true).open(&paths[0])?;
        let index = open_rw(&paths[1])?;
        let timeindex = open_rw(&paths[2])?;
        let file_len = file.metadata()?.len();
        let mut seg = Self::empty(base, paths, file, index, timeindex, interval);
        seg.gaps_below = gaps_below;
        if let Some(h) = seg.head_at(0)? {
            seg.first_ts = h.max_ts;
        }
        if let Some(start) = seg.load_indexes(file_len)? {
            let end = seg.scan(start, file_len, true, check)?;
            seg.finish_open(end, file_len)?;
            // An index found empty that the scan had to fill was missing or cut: rebuilt.
            if start == 0 && !seg.offsets.is_empty() {
                check.rebuilt += 1;
            } else {
                check.used += 1;
            }
        } else {
            check.rebuilt += 1;
            seg.offsets.clear();
            seg.times.clear();
            seg.index.set_len(0)?;
            seg.timeindex.set_len(0)?;
            seg.max_ts = (-1, -1);
            seg.last_offset = base - 1;
            seg.since_entry = 0;
            let end = seg.scan(0, file_len, true, check)?;
            seg.finish_open(end, file_len)?;
        }
        Ok(seg)
    }

    fn finish_open(&mut self, end: u64, file_len: u64) -> io::Result<()> {
        self.flush_indexes()?;
        self.size = end;
        if end < file_len {
            // A torn or damaged tail: cut it.
            self.file.set_len(end)?;
            self.file.sync_all()?;
        }
        Ok(())
    }

    /// Loads and checks the index files. Returns where the tail scan starts (the last good
    /// entry's batch), or `None` if the indexes must be rebuilt. Leaves `max_ts` covering the
    /// batches before that point.
    fn load_indexes(&mut self, file_len: u64) -> io::Result<Option<u64>> {
        let raw = read_all(&self.index)?;
        let mut offsets: Vec<(i64, u64)> = Vec::with_capacity(raw.len() / OFFSET_ENTRY);
        let mut time_counts: Vec<u32> = Vec::with_capacity(raw.len() / OFFSET_ENTRY);
        for e in raw.chunks_exact(OFFSET_ENTRY) {
            let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let ntimes = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let crc = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
            let (off, pos) = (self.base_offset + i64::from(rel), u64::from(pos));
            if crc != entry_crc(self.base_offset, &e[..12]) || offsets.last().is_some_and(|l| l.0 >= off || l.1 >= pos)
            {
                return Ok(None);
            }
            if pos == 0 || time_counts.last().is_some_and(|n| *n > ntimes) {
                return Ok(None);
            }
            offsets.push((off, pos));
            time_counts.push(ntimes);
        }
        // Entries for data that did not reach the disk (a crash after the index write) go.
        while offsets.last().is_some_and(|e| e.1 + HEAD as u64 > file_len) {
            offsets.pop();
            time_counts.pop();
        }
        // The last entry must point at its batch; a few more are sampled across the file.
        let n = offsets.len();
        let step = (n / SAMPLES).max(1);
        for i in (0..n).step_by(step).chain(n.checked_sub(1)) {
            let (off, pos) = offsets[i];
            if self.head_at(pos)?.is_none_or(|h| h.base != off) {
                return Ok(None);
            }
        }
        let start = offsets.last().map_or(0, |e| e.1);
        let start_offset = offsets.last().map_or(self.base_offset, |e| e.0);
        let raw = read_all(&self.timeindex)?;
        let mut times: Vec<(i64, i64)> = Vec::with_capacity(raw.len() / TIME_ENTRY);
        for e in raw.chunks_exact(TIME_ENTRY) {
            let ts = i64::from_be_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let rel = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let crc = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
            let off = self.base_offset + i64::from(rel);
            if crc != entry_crc(self.base_offset, &e[..12]) || times.last().is_some_and(|l| l.0 >= ts || l.1 > off) {
                return Ok(None);
            }
            times.push((ts, off));
        }
        // A time entry is written just before its offset entry: one for a point past the last
        // offset entry covers batches the tail scan reads again, so it can go.
        while times.last().is_some_and(|t| t.1 >= start_offset) {
            times.pop();
        }
        // Every time entry the offset index counts must be there (a time entry for a point
        // whose offset entry was lost is dropped above).
        if times.len() != time_counts.last().map_or(0, |n| *n as usize) {
            return Ok(None);
        }
        if let Some(t) = times.last() {
            self.max_ts = *t;
        }
        // Rewrite the files as checked (dropping torn or stale trailing entries).
        let index_len = (offsets.len() * OFFSET_ENTRY) as u64;
        if self.index.metadata()?.len() != index_len {
            self.index.set_len(index_len)?;
        }
        let time_len = (times.len() * TIME_ENTRY) as u64;
        if self.timeindex.metadata()?.len() != time_len {
            self.timeindex.set_len(time_len)?;
        }
        self.offsets = offsets;
        self.times = times;
        // The tail scan re-adds the entry at `start` itself; drop it from memory here.
        if start > 0 {
            self.offsets.pop();
            self.index.set_len(index_len - OFFSET_ENTRY as u64)?;
            self.since_entry = self.interval;
        }
        self.last_offset = start_offset - 1;
        Ok(Some(start))
    }

    /// Reads, checks (CRC, offsets continue) and indexes the batches from `from`; returns where
    /// the valid batches end.
    fn scan(&mut self, from: u64, file_len: u64, index: bool, check: &mut IndexCheck) -> io::Result<u64> {
        let mut pos = from;
        let mut need = 0usize;
        while pos < file_len {
            let want = usize::try_from(file_len - pos).unwrap_or(usize::MAX).min(CHUNK.max(need));
            let mut buf = vec![0u8; want];
            self.file.read_exact_at(&mut buf, pos)?;
            let data = Bytes::from(buf);
            let mut i = 0usize;
            while i < data.len() {
                match records::frame(&data[i..]) {
                    Ok(len) => {
                        let batch = RecordBatch::new(data.slice(i..i + len)).ok();
                        let Some(batch) = batch.filter(|b| self.batch_fits(b)) else { return Ok(pos + i as u64) };
                        let h = Head {
                            base: batch.base_offset(),
                            last: batch.last_offset(),
                            max_ts: batch.max_timestamp(),
                            len: len as u64,
                        };
                        if index {
                            self.note(pos + i as u64, &h);
                        }
                        check.bytes_scanned += len as u64;
                        i += len;
                    }
                    Err(RecordsError::Truncated(_)) => break,
                    Err(_) => return Ok(pos + i as u64),
                }
            }
            if i == 0 {
                // One batch larger than the chunk: read it whole next round, if it is there.
                let Some(h) = data.get(8..12) else { return Ok(pos) };
                let len = i32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                let total = u64::try_from(len).unwrap_or(0) + records::LOG_OVERHEAD as u64;
                if pos + total > file_len || total as usize <= want {
                    return Ok(pos);
                }
                need = usize::try_from(total).unwrap_or(usize::MAX);
                continue;
            }
            need = 0;
            pos += i as u64;
        }
        Ok(pos)
    }

    /// Whether a batch read back may follow the last one: intact (CRC), and continuing the
    /// offsets, except that the cleaner's batches may follow a gap and hold fewer records than
    /// their offset range (offsets are never renumbered).
    fn batch_fits(&self, b: &RecordBatch) -> bool {
        let (base, last) = (b.base_offset(), b.last_offset());
        if last < base {
            return false;
        }
        if base <= self.gaps_below {
            return intact(b) && base > self.last_offset;
        }
        b.validate().is_ok() && base == self.last_offset + 1
    }

    /// Accounts one batch at `pos` (whose bytes are or will be in the file): index entries
    /// (buffered until [`Segment::flush_indexes`]), largest timestamp, last offset.
    fn note(&mut self, pos: u64, h: &Head) {
        if pos > 0 && self.since_entry >= self.interval {
            if self.times.last().is_none_or(|t| self.max_ts.0 > t.0) && self.max_ts.1 >= 0 {
                let (ts, off) = self.max_ts;
                self.times.push((ts, off));
                let rel = u32::try_from(off - self.base_offset).unwrap_or(u32::MAX);
                let mut e = [0u8; 12];
                e[..8].copy_from_slice(&ts.to_be_bytes());
                e[8..].copy_from_slice(&rel.to_be_bytes());
                self.pending_time.extend_from_slice(&e);
                self.pending_time.extend_from_slice(&entry_crc(self.base_offset, &e).to_be_bytes());
            }
            self.offsets.push((h.base, pos));
            let rel = u32::try_from(h.base - self.base_offset).unwrap_or(u32::MAX);
            let mut e = [0u8; 12];
            e[..4].copy_from_slice(&rel.to_be_bytes());
            e[4..8].copy_from_slice(&u32::try_from(pos).unwrap_or(u32::MAX).to_be_bytes());
            e[8..].copy_from_slice(&u32::try_from(self.times.len()).unwrap_or(u32::MAX).to_be_bytes());
            self.pending_index.extend_from_slice(&e);
            self.pending_index.extend_from_slice(&entry_crc(self.base_offset, &e).to_be_bytes());
            self.since_entry = 0;
        }
        self.since_entry += h.len;
        if h.max_ts > self.max_ts.0 {
            self.max_ts = (h.max_ts, h.last);
        }
        if pos == 0 {
            self.first_ts = h.max_ts;
        }
        self.last_offset = h.last;
    }

    /// Writes buffered index entries: the time index first, so that an offset entry on disk
    /// always has the time entry written before it (see `load_indexes`).
    fn flush_indexes(&mut self) -> io::Result<()> {
        if !self.pending_time.is_empty() {
            self.timeindex.write_all(&self.pending_time)?;
            self.pending_time.clear();
        }
        if !self.pending_index.is_empty() {
            self.index.write_all(&self.pending_index)?;
            self.pending_index.clear();
        }
        Ok(())
    }

    /// Appends whole batches whose offsets continue this segment.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut heads = Vec::new();
        let mut i = 0usize;
        while i < data.len() {
            let h = data.get(i..).and_then(head).filter(|h| h.len as usize <= data.len() - i);
            let Some(h) = h else { return Err(io::Error::new(io::ErrorKind::InvalidInput, "not whole batches")) };
            heads.push((i, h));
            i += h.len as usize;
        }
        if let Err(e) = (&self.file).write_all(data) {
            // Part of the batches may be in the file: cut them off, so that the append is
            // either wholly stored or not at all (if even that fails, the next open cuts the
            // torn tail).
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        for (at, h) in &heads {
            self.note(self.size + *at as u64, h);
        }
        self.size += data.len() as u64;
        self.flush_indexes()
    }

    /// Forces the log and its indexes to disk.
    pub fn sync(&self, indexes: bool) -> io::Result<()> {
        self.file.sync_data()?;
        if indexes {
            self.index.sync_data()?;
            self.timeindex.sync_data()?;
        }
        Ok(())
    }

    /// Deletes the segment's files.
    pub fn remove(self) {
        for p in &self.paths {
            let _ = fs::remove_file(p);
        }
    }

    /// Takes the segment out of the log at once by renaming its files to `<name>.deleted`
    /// (cheap), and returns the new names for a background thread to delete: unlinking a
    /// large cached file costs milliseconds that appends should not wait for (Kafka defers it
    /// the same way). A file that cannot be renamed is deleted here instead. Files left with
    /// that suffix by a crash are deleted when the partition is next opened.
    pub fn retire(self) -> Vec<PathBuf> {
        let mut later = Vec::with_capacity(self.paths.len());
        for p in &self.paths {
            let mut to = p.clone().into_os_string();
            to.push(DELETED);
            let to = PathBuf::from(to);
            match fs::rename(p, &to) {
                Ok(()) => later.push(to),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => {
                    let _ = fs::remove_file(p);
                }
            }
        }
        later
    }

    /// The segment's `.log`, `.index` and `.timeindex` files.
    pub fn file_paths(&self) -> &[PathBuf; 3] {
        &self.paths
    }

    /// Another handle on the log file, for reading beside the IO thread (the cleaner): a
    /// closed segment's bytes never change, and the handle keeps them readable even after the
    /// file is deleted.
    pub fn reader(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// The header of the batch at `pos`, if one is there.
    fn head_at(&self, pos: u64) -> io::Result<Option<Head>> {
        let mut b = [0u8; HEAD];
        match self.file.read_exact_at(&mut b, pos) {
            Ok(()) => Ok(head(&b)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Position of the last indexed batch at or before `offset` (0 if none).
    fn floor(&self, offset: i64) -> u64 {
        let i = self.offsets.partition_point(|e| e.0 <= offset);
        if i == 0 { 0 } else { self.offsets[i - 1].1 }
    }

    /// Position of the last indexed batch at or before byte `pos` (0 if none).
    pub fn floor_pos(&self, pos: u64) -> u64 {
        let i = self.offsets.partition_point(|e| e.1 <= pos);
        if i == 0 { 0 } else { self.offsets[i - 1].1 }
    }

    /// Walks batch headers from `pos` (a batch start) to the end of the segment, reading in
    /// chunks; `f` returns false to stop.
    pub fn walk(&self, mut pos: u64, mut f: impl FnMut(u64, &Head, &[u8]) -> bool) -> io::Result<()> {
        // Lookups from an index entry end within about one interval: start small, and grow
        // for long walks.
        let first = usize::try_from(self.interval).unwrap_or(CHUNK).saturating_add(2 * HEAD).clamp(4096, CHUNK);
        let mut buf = vec![0u8; first];
        while pos < self.size {
            let n = usize::try_from(self.size - pos).unwrap_or(usize::MAX).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], pos)?;
            let mut i = 0usize;
            while i + HEAD <= n {
                let Some(h) = head(&buf[i..n]) else { return Err(corrupt()) };
                if !f(pos + i as u64, &h, &buf[i..i + HEAD]) {
                    return Ok(());
                }
                i += usize::try_from(h.len).unwrap_or(usize::MAX);
            }
            if i == 0 {
                return Err(corrupt());
            }
            pos += i as u64;
            if buf.len() < CHUNK {
                buf.resize((buf.len() * 2).min(CHUNK), 0);
            }
        }
        Ok(())
    }

    /// Position of the batch holding `offset` (the first batch if `offset` is before it), or
    /// `None` when the segment ends before it.
    pub fn locate(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset > self.last_offset {
            return Ok(None);
        }
        let mut found = None;
        self.walk(self.floor(offset), |pos, h, _| {
            if h.last >= offset {
                found = Some(pos);
            }
            found.is_none()
        })?;
        Ok(found)
    }

    /// Where a search for the first batch whose max timestamp is at or after `ts` can start.
    pub fn time_floor(&self, ts: i64) -> u64 {
        let i = self.times.partition_point(|e| e.0 <= ts);
        if i == 0 { 0 } else { self.floor(self.times[i - 1].1) }
    }

    /// Reads `len` bytes at `pos`.
    pub fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Reads whole batches from `pos` (a batch start) while they start below `end` and fit
    /// `budget` bytes (the first always, if `first`). Returns the bytes and whether the
    /// segment's end was reached.
    pub fn collect(&self, pos: u64, end: i64, budget: usize, first: bool) -> io::Result<(Vec<u8>, bool)> {
        let left = usize::try_from(self.size - pos).unwrap_or(usize::MAX);
        let mut buf = self.read_at(pos, left.min(budget.max(HEAD)))?;
        let mut i = 0usize;
        while i + HEAD <= buf.len() {
            let Some(h) = head(&buf[i..]) else { return Err(corrupt()) };
            if h.base >= end {
                buf.truncate(i);
                return Ok((buf, false));
            }
            let len = usize::try_from(h.len).unwrap_or(usize::MAX);
            // Only the first batch of a read may go past the budget. The buffer holds at
            // least a header, so a header-only batch (one the cleaner emptied) can be whole in
            // it and still not fit.
            let fits = i + len <= budget || (i == 0 && first);
            if i + len > buf.len() || !fits {
                if i == 0 && first && len <= left && len > buf.len() {
                    buf = self.read_at(pos, len)?;
                    i = len;
                }
                break;
            }
            i += len;
        }
        buf.truncate(i);
        Ok((buf, pos + i as u64 >= self.size))
    }
}

/// Whether a stored batch is intact: its CRC holds, its codec is known, and it holds no more
/// records than its offset range (a batch the cleaner rewrote may hold fewer, so the
/// produce-time check lastOffsetDelta == recordsCount - 1 does not apply).
pub(crate) fn intact(b: &RecordBatch) -> bool {
    b.crc() == b.compute_crc()
        && b.compression().is_ok()
        && (0..=i64::from(b.last_offset_delta()) + 1).contains(&i64::from(b.records_count()))
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "damaged batch header in a segment")
}

fn read_all(f: &File) -> io::Result<Vec<u8>> {
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(0);
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use kelp_core::records::{Compression, RecordBatchBuilder};

    use super::*;

    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        let [log, index, time] = paths_with(dir, base, "");
        (log, index, time)
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kelp-seg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        d
    }

    /// Batch `i` holds offsets 3i..3i+2 with timestamps 10i..10i+2, except every fifth batch,
    /// whose timestamps are old (i).
    fn batch(i: i64) -> Bytes {
        let mut b = RecordBatchBuilder::new(Compression::None).base_offset(3 * i);
        let ts = if i % 5 == 4 { i } else { 10 * i };
        for r in 0..3 {
            b.append(ts + r, Some(b"k"), Some(b"value"), &[]).expect("builds");
        }
        b.build().expect("builds")
    }

    fn write(d: &Path, n: i64) -> (Segment, Vec<u64>) {
        let mut seg = Segment::create(d, 0, 300).expect("create");
        let mut positions = Vec::new();
        for i in 0..n {
            positions.push(seg.size);
            seg.append(&batch(i)).expect("append");
        }
        (seg, positions)
    }

    #[test]
    fn locate_finds_every_batch_from_the_sparse_index() {
        let d = dir("locate");
        let (seg, positions) = write(&d, 200);
        assert!(seg.offsets.len() > 20, "entries every ~300 bytes: {}", seg.offsets.len());
        assert_eq!(seg.last_offset, 599);
        for offset in 0..600 {
            let want = positions[usize::try_from(offset / 3).expect("small")];
            assert_eq!(seg.locate(offset).expect("io"), Some(want), "offset {offset}");
        }
        assert_eq!(seg.locate(600).expect("io"), None);
        assert_eq!(seg.max_ts, (10 * 198 + 2, 596), "batch 199 has old timestamps");
        // The time floor never starts after the first batch reaching a timestamp.
        for ts in 0..2000 {
            let first = (0..200).find(|i| if i % 5 == 4 { i + 2 >= ts } else { 10 * i + 2 >= ts });
            if let Some(i) = first {
                assert!(seg.time_floor(ts) <= positions[usize::try_from(i).expect("small")], "timestamp {ts}");
            }
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn reopen_uses_good_indexes_and_rebuilds_bad_ones_identically() {
        let d = dir("reopen");
        let (seg, _) = write(&d, 150);
        let (offsets, times, max_ts) = (seg.offsets.clone(), seg.times.clone(), seg.max_ts);
        drop(seg);
        let (_, index_path, time_path) = paths(&d, 0);
        let index_bytes = fs::read(&index_path).expect("index");
        let time_bytes = fs::read(&time_path).expect("time index");
        let mut check = IndexCheck::default();
        let seg = Segment::open(&d, 0, 300, i64::MIN, &mut check).expect("open");
        assert_eq!((check.used, check.rebuilt), (1, 0));
        assert!(check.bytes_scanned < 1000, "only the tail is read: {check:?}");
        assert_eq!((&seg.offsets, &seg.times, seg.max_ts), (&offsets, &times, max_ts));
        drop(seg);
        // An entry from another segment (its CRC covers the base offset) is refused.
        let mut wrong = index_bytes.clone();
        let crc = entry_crc(1000, &wrong[16..28]);
        wrong[28..32].copy_from_slice(&crc.to_be_bytes());
        fs::write(&index_path, &wrong).expect("write");
        let mut check = IndexCheck::default();
        let seg = Segment::open(&d, 0, 300, i64::MIN, &mut check).expect("open");
        assert_eq!(check.rebuilt, 1);
        assert_eq!((&seg.offsets, &seg.times, seg.max_ts), (&offsets, &times, max_ts));
        drop(seg);
        assert_eq!(fs::read(&index_path).expect("index"), index_bytes);
        assert_eq!(fs::read(&time_path).expect("time index"), time_bytes);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_read_past_its_budget_stops_before_a_header_only_batch() {
        let d = dir("budget");
        let mut seg = Segment::create(&d, 0, 300).expect("create");
        let full = batch(0);
        seg.append(&full).expect("append");
        let second = seg.size;
        // What the cleaner leaves of a batch whose records were all superseded.
        let empty = RecordBatchBuilder::new(Compression::None).base_offset(3).build().expect("builds");
        assert_eq!(empty.len(), HEAD);
        seg.append(&empty).expect("append");
        let end = 100;
        // A later part of a read with less than a header left takes nothing.
        let (buf, at_end) = seg.collect(second, end, HEAD - 1, false).expect("io");
        assert!(buf.is_empty() && !at_end, "{} bytes", buf.len());
        // The first batch of a read is whole even past the budget; the next must fit.
        let (buf, at_end) = seg.collect(0, end, full.len() + HEAD - 1, true).expect("io");
        assert_eq!((&buf[..], at_end), (&full[..], false));
        let (buf, _) = seg.collect(second, end, 1, true).expect("io");
        assert_eq!(&buf[..], &empty[..]);
        let (buf, at_end) = seg.collect(0, end, full.len() + HEAD, true).expect("io");
        assert_eq!((buf.len(), at_end), (full.len() + HEAD, true));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_batch_after_the_last_entry_is_cut() {
        let d = dir("torn");
        let (seg, positions) = write(&d, 100);
        let size = seg.size;
        drop(seg);
        let (log, _, _) = paths(&d, 0);
        OpenOptions::new().write(true).open(&log).expect("open").set_len(size - 7).expect("cut");
        let mut check = IndexCheck::default();
        let seg = Segment::open(&d, 0, 300, i64::MIN, &mut check).expect("open");
        assert_eq!(seg.size, positions[99], "the torn last batch is gone");
        assert_eq!(seg.last_offset, 296);
        assert_eq!(fs::metadata(&log).expect("log").len(), positions[99]);
        let _ = fs::remove_dir_all(&d);
    }
}
