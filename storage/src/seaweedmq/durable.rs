//! What the filer shows of SeaweedMQ's flushes, and how much of a partition they prove
//! persisted. Pure code: no IO (the stream of filer events, chunk reads and the repair after a
//! broker restart are in [`super::persisted`] and [`super::repair`]).
//!
//! The broker acknowledges a message once it is in its memory and writes each partition's
//! buffer to the filer once per flush interval, as one chunk appended to a file
//! `/topics/<ns>/<topic>/v<generation>/<RRRR>-<RRRR>/<window start, UTC>` whose content is a
//! sequence of `[u32 BE length][filer_pb.LogEntry]`. Each flush updates the file's entry (one
//! filer event), whose `offset_max` attribute (i64 BE) is the largest offset of the windows in
//! the file. Three quirks of SeaweedMQ 4.48 shape the rules here:
//!
//! - A window sealed by an append (a full buffer, a clock jump, a lagging flush ticker) claims
//!   in `offset_max` the offset of the record that triggered the seal, which went into the next
//!   window. So `offset_max` M proves only M-1 persisted; M is proven by a later flush of the
//!   partition (windows are written in the order they were sealed) or by reading the chunk.
//! - The attributes are only written when the window's smallest offset is above 0, and the
//!   one-record window after such a seal has none: those windows must be read.
//! - After a restart, the broker numbers on from its offset counter (`checkpoint.offset`, the
//!   last offset it assigned, saved every 2 s), not from the files: [`Survey`] finds what the
//!   files hold, for the repair to set the counter right.

use std::collections::HashMap;

use bytes::{Buf, Bytes};
use prost::Message;

use super::pb::filer_pb::{Entry, FileChunk, LogEntry};

/// The attribute holding the largest offset in a flushed file.
pub(super) const OFFSET_MAX: &str = "offset_max";
/// The broker's offset counter, in each partition directory.
pub(super) const CHECKPOINT: &str = "checkpoint.offset";

/// A file SeaweedMQ flushed a partition's records to, as its filer path names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlushPath<'a> {
    /// The SeaweedMQ topic (kelp's topic name).
    pub(super) topic: &'a str,
    /// The topic's generation directory (`v2026-12-06-09-21-40`): a new one each time the
    /// partition ring is re-split.
    pub(super) generation: &'a str,
    /// The partition's ring range `[start, stop)`.
    pub(super) range: (i32, i32),
}

/// Parses the directory `dir` of a file named `name` in namespace directory `ns_dir`
/// (`/topics/<ns>/`). `None` for anything but a partition's data file: other directories,
/// the offset counter (`*.offset`) and Parquet files (`*.parquet`).
pub(super) fn flush_path<'a>(ns_dir: &str, dir: &'a str, name: &str) -> Option<FlushPath<'a>> {
    if name.is_empty() || name.ends_with(".offset") || name.ends_with(".parquet") {
        return None;
    }
    let rest = dir.strip_prefix(ns_dir)?;
    let mut parts = rest.split('/');
    let (topic, generation, range) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || topic.is_empty() || !generation.starts_with('v') {
        return None;
    }
    let (start, stop) = range.split_once('-')?;
    let digits = |s: &str| s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(stop) {
        return None;
    }
    Some(FlushPath { topic, generation, range: (start.parse().ok()?, stop.parse().ok()?) })
}

/// The name of a partition's directory within its generation: the ring range, zero-padded.
pub(super) fn range_dir(start: i32, stop: i32) -> String {
    format!("{start:04}-{stop:04}")
}

/// An 8-byte big-endian offset attribute of a file, if it has one.
pub(super) fn offset_attr(extended: &HashMap<String, Bytes>, key: &str) -> Option<i64> {
    let v = extended.get(key)?;
    Some(i64::from_be_bytes(v.as_ref().try_into().ok()?))
}

/// The content of `checkpoint.offset`: the last offset the broker assigned, i64 BE.
pub(super) fn decode_checkpoint(content: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(content.try_into().ok()?))
}

/// A flushed chunk that does not parse as `[u32 BE length][LogEntry]` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BadChunk(pub(super) &'static str);

/// The largest `LogEntry.offset` in a flushed chunk (`None` for an empty one). Every length is
/// checked against what remains before anything is decoded.
pub(super) fn max_log_offset(mut data: Bytes) -> Result<Option<i64>, BadChunk> {
    let mut max = None;
    while data.has_remaining() {
        if data.remaining() < 4 {
            return Err(BadChunk("a record length cut short"));
        }
        let n = data.get_u32() as usize;
        if n > data.remaining() {
            return Err(BadChunk("a record longer than the chunk"));
        }
        let entry = LogEntry::decode(data.split_to(n)).map_err(|_| BadChunk("a record that is not a LogEntry"))?;
        max = max.max(Some(entry.offset));
    }
    Ok(max)
}

/// SeaweedMQ's name for a time (seconds since the Unix epoch, UTC): `2026-12-06-09-21-40`, as
/// it names flushed files (by their window's first record) and generation directories.
pub(super) fn time_name(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}-{:02}-{:02}-{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// One flushed window: the chunk a flush appended, and where to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Window {
    /// The chunk's file id (`<volume>,<needle key><cookie>` in hex), to read it from a volume
    /// server.
    pub(super) fid: String,
    /// The volume holding it.
    pub(super) volume: u32,
    /// When the broker wrote it (its clock): windows are written one after another, so this
    /// orders them.
    pub(super) written_ns: i64,
    /// Whether kelp can read it as records: not encrypted, not a manifest of other chunks.
    pub(super) readable: bool,
}

impl Window {
    /// The newest chunk of a file: the flush that wrote the file's entry last appended it.
    pub(super) fn newest(chunks: &[FileChunk]) -> Option<Self> {
        let c = chunks.iter().max_by_key(|c| (c.offset, c.modified_ts_ns))?;
        let fid = match (&c.fid, c.file_id.is_empty()) {
            (_, false) => c.file_id.clone(),
            (Some(f), true) => file_id(f.volume_id, f.file_key, f.cookie),
            (None, true) => return None,
        };
        let volume = c.fid.as_ref().map_or_else(|| fid.split(',').next()?.parse().ok(), |f| Some(f.volume_id))?;
        Some(Self {
            fid,
            volume,
            written_ns: c.modified_ts_ns,
            readable: c.cipher_key.is_empty() && !c.is_chunk_manifest,
        })
    }
}

/// SeaweedFS's text form of a file id: the volume, then the needle key in hex without leading
/// zero bytes and the cookie as eight hex digits.
fn file_id(volume: u32, key: u64, cookie: u32) -> String {
    let key_hex = format!("{key:x}");
    let pad = if key_hex.len() % 2 == 1 { "0" } else { "" };
    format!("{volume},{pad}{key_hex}{cookie:08x}")
}

/// An `offset_max` not proven yet: everything below it is persisted, it may be in the next
/// window.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    offset: i64,
    /// The window that made the claim (reading it settles the claim).
    window: Window,
    /// Whether it was read and did not hold the offset (only the next flush proves it then).
    read: bool,
}

/// One partition's persisted prefix, as the flushes seen so far prove it.
#[derive(Clone, Debug, Default)]
pub(super) struct Watermark {
    /// Every offset below it is persisted (or holds nothing).
    end: i64,
    claim: Option<Claim>,
    /// The newest window without offset attributes, while it is unread (and no later window
    /// came).
    unread: Option<Window>,
    /// Whether a window is being read.
    reading: bool,
    /// When the newest window seen was written: older or repeated events are ignored.
    newest_ns: i64,
    /// The generation directory the flushes come from; events of older ones are ignored.
    generation: String,
    /// Flushes seen, to tell whether any arrived while someone waited.
    flushes: u64,
}

impl Watermark {
    /// The exclusive end of the persisted prefix.
    pub(super) fn end(&self) -> i64 {
        self.end
    }

    /// How many flushes were seen.
    pub(super) fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Everything below `end` is persisted (learnt elsewhere: the files, or a settled end).
    pub(super) fn raise(&mut self, end: i64) {
        self.end = self.end.max(end);
        if self.claim.as_ref().is_some_and(|c| c.offset < self.end) {
            self.claim = None;
        }
    }

    /// A flush of `window` in generation directory `generation`; `offset_max` is the file's
    /// attribute after it. The caller then reads whatever [`Watermark::want_read`] asks for.
    pub(super) fn on_flush(&mut self, generation: &str, offset_max: Option<i64>, window: Window) {
        match generation.cmp(self.generation.as_str()) {
            std::cmp::Ordering::Less => return,
            std::cmp::Ordering::Greater => {
                // A re-split ring numbers from 0 again; kelp re-splits only empty topics.
                self.generation = generation.to_owned();
                self.claim = None;
                self.unread = None;
            }
            std::cmp::Ordering::Equal => {}
        }
        if window.written_ns <= self.newest_ns {
            return;
        }
        self.newest_ns = window.written_ns;
        self.flushes += 1;
        // A later window is on the filer, so is the one before it: its claim holds.
        if let Some(c) = self.claim.take() {
            self.raise(c.offset + 1);
        }
        // A later window with attributes covers an earlier unread one; a window without them
        // is read (see the module docs).
        self.unread = None;
        match offset_max {
            Some(m) => {
                self.raise(m);
                if self.end == m {
                    self.claim = Some(Claim { offset: m, window, read: false });
                }
            }
            None => self.unread = Some(window),
        }
    }

    /// The window to read now for the prefix to reach `target`, if any: the newest window
    /// without attributes, or the one whose claim is all that is missing. Marks it as being
    /// read: the caller reports back with [`Watermark::on_read`] or [`Watermark::read_failed`].
    /// `target` `i64::MAX` asks only for windows that must be read in any case.
    pub(super) fn want_read(&mut self, target: i64) -> Option<Window> {
        if target <= self.end || self.reading {
            return None;
        }
        let w = match (&self.unread, &self.claim) {
            (Some(w), _) => w.clone(),
            (None, Some(c)) if !c.read && target == c.offset + 1 => c.window.clone(),
            _ => return None,
        };
        self.reading = true;
        Some(w)
    }

    /// `window` was read: its largest offset is `max` (`None`: it held no record).
    pub(super) fn on_read(&mut self, window: &Window, max: Option<i64>) {
        self.reading = false;
        if self.unread.as_ref() == Some(window) {
            self.unread = None;
        }
        if let Some(c) = self.claim.as_mut().filter(|c| c.window == *window) {
            c.read = true;
        }
        if let Some(m) = max {
            self.raise(m + 1);
        }
    }

    /// The broker restarted: a claim of its last window is no longer proven by the next flush
    /// (that comes from a new buffer, and the claimed record may have been lost).
    pub(super) fn forget_claim(&mut self) {
        self.claim = None;
    }

    /// Reading a window failed; a later caller may try again.
    pub(super) fn read_failed(&mut self) {
        self.reading = false;
    }
}

/// What a partition directory's files say about its persisted records and offset counter.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Survey {
    /// The largest `offset_max` attribute: everything below it is persisted.
    pub(super) attr_max: Option<i64>,
    /// The newest window, and whether its file carries an `offset_max`.
    pub(super) newest: Option<(Window, bool)>,
    /// The broker's offset counter (`checkpoint.offset`) and its entry, if there is one.
    pub(super) checkpoint: Option<(i64, Entry)>,
}

impl Survey {
    /// Surveys the entries of a partition directory (data files, the offset counter; anything
    /// else is ignored).
    pub(super) fn of(entries: Vec<Entry>) -> Self {
        let mut s = Self::default();
        for e in entries {
            if e.is_directory {
                continue;
            }
            if e.name == CHECKPOINT {
                s.checkpoint = decode_checkpoint(&e.content).map(|c| (c, e));
                continue;
            }
            if e.name.ends_with(".offset") || e.name.ends_with(".parquet") {
                continue;
            }
            let attr = offset_attr(&e.extended, OFFSET_MAX);
            s.attr_max = s.attr_max.max(attr);
            if let Some(w) = Window::newest(&e.chunks)
                && s.newest.as_ref().is_none_or(|(n, _)| w.written_ns > n.written_ns)
            {
                s.newest = Some((w, attr.is_some()));
            }
        }
        s
    }

    /// The highest persisted offset as far as the attributes tell, and whether that is
    /// exact without reading the newest window: `(lo, Some(hi))` bounds it when the newest
    /// window's file has an `offset_max` (the highest offset is `offset_max` or one below it);
    /// `(lo, None)` when only reading the newest window can tell. -1 for an empty partition.
    pub(super) fn bounds(&self) -> (i64, Option<i64>) {
        let lo = self.attr_max.map_or(-1, |m| m - 1);
        match &self.newest {
            None => (-1, Some(-1)),
            Some((_, true)) => (lo, self.attr_max),
            Some((_, false)) => (lo, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;
    use crate::seaweedmq::pb::filer_pb::FileId;

    fn window(n: i64) -> Window {
        Window { fid: format!("3,{n:02x}12345678"), volume: 3, written_ns: n, readable: true }
    }

    fn chunk_of(offsets: &[i64]) -> Bytes {
        let mut b = BytesMut::new();
        for &o in offsets {
            let e = LogEntry {
                ts_ns: 7,
                partition_key_hash: 0,
                data: Bytes::from_static(b"v"),
                key: Bytes::new(),
                offset: o,
            };
            b.put_u32(u32::try_from(e.encoded_len()).expect("small"));
            e.encode(&mut b).expect("fits");
        }
        b.freeze()
    }

    #[test]
    fn flush_paths() {
        let ns = "/topics/kafka/";
        let p = flush_path(ns, "/topics/kafka/t1/v2026-12-06-09-21-40/0000-1260", "2026-12-06-09-21-41");
        assert_eq!(p, Some(FlushPath { topic: "t1", generation: "v2026-12-06-09-21-40", range: (0, 1260) }));
        let dir = "/topics/kafka/t1/v2026-12-06-09-21-40/1260-2520";
        assert_eq!(flush_path(ns, dir, "x").map(|p| p.range), Some((1260, 2520)));
        assert_eq!(flush_path(ns, dir, CHECKPOINT), None);
        assert_eq!(flush_path(ns, dir, "2026-12-06.parquet"), None);
        assert_eq!(flush_path(ns, "/topics/kafka/t1/v2026-12-06-09-21-40", "0000-1260"), None, "a directory");
        assert_eq!(flush_path(ns, "/topics/kafka/t1", "topic.conf"), None);
        assert_eq!(flush_path(ns, "/topics/other/t1/v1/0000-1260", "f"), None, "another namespace");
        assert_eq!(flush_path(ns, "/topics/kafka/t1/x1/0000-1260", "f"), None);
        assert_eq!(flush_path(ns, "/topics/kafka/t1/v1/000-1260", "f"), None);
        assert_eq!(flush_path(ns, "/topics/kafka/t1/v1/0000-1260/deeper", "f"), None);
        assert_eq!(range_dir(0, 1260), "0000-1260");
    }

    #[test]
    fn attributes_are_eight_byte_big_endian() {
        let mut ext = HashMap::new();
        ext.insert(OFFSET_MAX.to_owned(), Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0x1d, 0x4c]));
        ext.insert("offset_min".to_owned(), Bytes::from_static(&[1, 2]));
        assert_eq!(offset_attr(&ext, OFFSET_MAX), Some(7500));
        assert_eq!(offset_attr(&ext, "offset_min"), None, "wrong length");
        assert_eq!(offset_attr(&ext, "buffer_start"), None);
        assert_eq!(decode_checkpoint(&14999i64.to_be_bytes()), Some(14999));
        assert_eq!(decode_checkpoint(b"short"), None);
    }

    #[test]
    fn log_entries_give_their_largest_offset() {
        assert_eq!(max_log_offset(chunk_of(&[2501, 2502, 2503])), Ok(Some(2503)));
        assert_eq!(max_log_offset(chunk_of(&[9, 4])), Ok(Some(9)));
        assert_eq!(max_log_offset(Bytes::new()), Ok(None));
        let whole = chunk_of(&[1, 2]);
        assert!(max_log_offset(whole.slice(..whole.len() - 1)).is_err(), "last record cut short");
        assert!(max_log_offset(whole.slice(..2)).is_err(), "length cut short");
        assert!(max_log_offset(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0])).is_err(), "length past the end");
        assert!(max_log_offset(Bytes::from_static(&[0, 0, 0, 2, 0xff, 0xff])).is_err(), "not a LogEntry");
    }

    #[test]
    fn time_names_are_utc() {
        assert_eq!(time_name(0), "1970-01-01-00-00-00");
        assert_eq!(time_name(1_796_548_900), "2026-12-06-09-21-40");
        assert_eq!(time_name(951_782_400), "2000-02-29-00-00-00");
        assert_eq!(time_name(1_709_251_199), "2024-02-29-23-59-59");
    }

    #[test]
    fn file_ids_in_seaweedfs_text_form() {
        assert_eq!(file_id(6, 3, 0x5039_1b14), "6,0350391b14");
        assert_eq!(file_id(5, 0x04, 0x084b_707b), "5,04084b707b");
        assert_eq!(file_id(1, 0x123, 1), "1,012300000001");
        let c = FileChunk {
            offset: 0,
            modified_ts_ns: 9,
            fid: Some(FileId { volume_id: 6, file_key: 3, cookie: 0x5039_1b14 }),
            ..Default::default()
        };
        let w = Window::newest(&[c]).expect("a window");
        assert_eq!((w.fid.as_str(), w.volume, w.written_ns, w.readable), ("6,0350391b14", 6, 9, true));
    }

    #[test]
    fn an_offset_max_proves_the_offset_below_and_a_later_flush_proves_it() {
        let mut m = Watermark::default();
        m.on_flush("v1", Some(100), window(1));
        assert_eq!(m.end(), 100, "100 may be in the next window");
        assert_eq!(m.want_read(102), None, "a later record is waited for, not read for");
        m.on_flush("v1", Some(250), window(2));
        assert_eq!(m.end(), 250, "the later flush proves 100, its own attribute 249");
        m.on_flush("v1", Some(250), window(2));
        m.on_flush("v1", Some(400), window(1));
        assert_eq!((m.end(), m.flushes()), (250, 2), "repeated and older windows are ignored");
        m.on_flush("v1", Some(250), window(3));
        assert_eq!(m.end(), 251, "a one-record window appended to the same file proves the claim");
    }

    #[test]
    fn a_claim_does_not_survive_a_broker_restart() {
        let mut m = Watermark::default();
        m.on_flush("v1", Some(100), window(1));
        m.forget_claim();
        m.on_flush("v1", None, window(2));
        assert_eq!(m.end(), 100, "the new broker's first flush proves nothing about 100");
    }

    #[test]
    fn a_waiter_for_exactly_the_claimed_offset_reads_the_window() {
        let mut m = Watermark::default();
        m.raise(5);
        m.on_flush("v1", Some(26364), window(1));
        assert_eq!(m.want_read(26366), None);
        let w = m.want_read(26365).expect("read the claim");
        assert_eq!(m.want_read(26365), None, "one read at a time");
        // An append-path seal: the window held 26354..26363, 26364 went into the next one.
        m.on_read(&w, Some(26363));
        assert_eq!(m.end(), 26364);
        assert_eq!(m.want_read(26365), None, "read once: now the next flush proves it");
        m.on_flush("v1", None, window(2));
        assert_eq!(m.end(), 26365);

        let mut exact = Watermark::default();
        exact.on_flush("v1", Some(10), window(1));
        let w = exact.want_read(11).expect("read the claim");
        exact.on_read(&w, Some(10));
        assert_eq!(exact.end(), 11, "a ticker seal is exact");
    }

    #[test]
    fn windows_without_attributes_are_read() {
        let mut m = Watermark::default();
        m.on_flush("v1", None, window(1));
        assert_eq!(m.end(), 0);
        let w = m.want_read(i64::MAX).expect("the partition's first window is read");
        m.read_failed();
        assert_eq!(m.want_read(i64::MAX), Some(w.clone()), "tried again after a failure");
        m.on_read(&w, Some(2500));
        assert_eq!(m.end(), 2501);
        assert_eq!(m.want_read(i64::MAX), None);
        // An unread window is covered by a later one with attributes.
        m.on_flush("v1", None, window(2));
        m.on_flush("v1", Some(7500), window(3));
        assert_eq!((m.end(), m.want_read(i64::MAX)), (7500, None));
    }

    #[test]
    fn a_new_generation_restarts_and_older_ones_are_ignored() {
        let mut m = Watermark::default();
        m.on_flush("v2", Some(10), window(1));
        m.on_flush("v1", Some(500), window(2));
        assert_eq!(m.end(), 10);
        m.on_flush("v3", None, window(3));
        assert_eq!(m.want_read(i64::MAX), Some(window(3)));
        m.raise(4);
        assert_eq!(m.end(), 10, "the end never goes back");
    }

    fn file(name: &str, max: Option<i64>, written: i64) -> Entry {
        let mut extended = HashMap::new();
        if let Some(m) = max {
            extended.insert(OFFSET_MAX.to_owned(), Bytes::copy_from_slice(&m.to_be_bytes()));
        }
        let chunk =
            FileChunk { file_id: format!("3,{written:02x}00000001"), modified_ts_ns: written, ..Default::default() };
        Entry { name: name.to_owned(), chunks: vec![chunk], extended, ..Default::default() }
    }

    #[test]
    fn a_survey_bounds_the_persisted_offsets() {
        assert_eq!(Survey::of(vec![]).bounds(), (-1, Some(-1)));
        let first = Survey::of(vec![file("2026-12-06-09-21-40", None, 1)]);
        assert_eq!(first.bounds(), (-1, None), "only reading tells");
        let checkpoint = Entry {
            name: CHECKPOINT.to_owned(),
            content: Bytes::copy_from_slice(&14999i64.to_be_bytes()),
            ..Default::default()
        };
        let s = Survey::of(vec![
            file("2026-12-06-09-21-40", None, 1),
            file("2026-12-06-09-21-41", Some(7500), 2),
            file("2026-12-06-09-21-42", Some(10000), 3),
            checkpoint,
        ]);
        assert_eq!(s.bounds(), (9999, Some(10000)));
        assert_eq!(s.checkpoint.as_ref().map(|c| c.0), Some(14999));
        assert_eq!(s.newest.as_ref().map(|(w, _)| w.written_ns), Some(3));
        // The one-record window after an append-path seal, in a file of its own.
        let x = Survey::of(vec![file("a", Some(26364), 1), file("b", None, 2)]);
        assert_eq!(x.bounds(), (26363, None));
    }
}
