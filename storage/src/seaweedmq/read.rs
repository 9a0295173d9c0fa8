//! Reads: the records stored at a range of offsets, taken off a read session and rebuilt into
//! record batches.
//!
//! Offsets are the ones in the envelopes (kelp checked each against the offset the broker
//! assigned it), not counted along the subscription: SeaweedMQ's offsets can have holes. The
//! broker takes an offset for a message before it adds it to its log buffer, and keeps the
//! offset when that fails ("failed to add message to buffer", e.g. while it unloads the
//! partition), so that offset never holds a message; and a publish stream that breaks part way
//! through an append leaves the records before the break stored, a batch cut short. Such a
//! partial batch (its last record is missing and never comes: a later batch follows it, or it
//! ends at the end of what is stored) is left out, as if none of it had been stored: kelp
//! answered its append with an error and the producer sends it again. A record whose offset is
//! not above the last one taken (what a broker crash can leave in the files: a message stored
//! twice, or under an offset the restarted broker handed out again) is stepped over.
//!
//! Everything below a read's end is acknowledged, so it exists (but for holes). A subscription
//! that has caught up with the publisher can hold back what arrives after that (for seconds, or
//! until more is published), while a fresh subscription at the same offset delivers it at once.
//! So a read that waits longer than [`STALL`] subscribes again, until the RPC deadline has
//! passed. A new subscription gets longer for its first message (see [`Session::patience`]):
//! SeaweedMQ may first have to read flushed data back from the filer, and replacing it every
//! [`STALL`] could starve the read for good. The wait doubles on each replacement, up to
//! [`MAX_STALL`].

use std::time::Duration;

use bytes::Bytes;
use kelp_core::Completion;
use kelp_core::io::{PartitionKey, StorageError};
use smallvec::SmallVec;
use tokio::time::Instant;

use super::cluster::Cluster;
use super::envelope::{self, Envelope};
use super::session::{Ready, Session};

/// How long a read waits on a subscription for a record it knows exists before subscribing
/// again at that offset.
const STALL: Duration = Duration::from_millis(20);
/// The longest that wait grows to.
const MAX_STALL: Duration = STALL.saturating_mul(32);
/// How many bytes each read of a scan asks for.
const SCAN_READ: usize = 8 << 20;

/// Why a read stopped taking records off its session.
enum Stop {
    /// It has what it came for (or all there is up to its end); the session is kept.
    Done,
    /// The deadline passed; the session is kept, as dropping it could leave the broker with no
    /// reader of the partition (see [`Cluster::recover_partition`]).
    TimedOut,
    /// The subscription ended or could not be replaced; the session is dropped.
    Broken(StorageError),
}

/// What waiting on the session for its next message came to.
enum Wait {
    /// A message value.
    Value(Bytes),
    /// Stop waiting, for this reason.
    Stop(Stop),
}

/// One read in progress: what it collected and how long it may still wait.
struct Read<'a> {
    cluster: &'a Cluster,
    key: PartitionKey,
    end: i64,
    max_bytes: usize,
    deadline: Instant,
    /// How long to wait on a subscription that has delivered before replacing it.
    stall: Duration,
    out: Vec<Envelope>,
    /// Stored bytes of `out`, counted against `max_bytes`.
    used: usize,
    /// Records stepped over because their offset was not above the last one taken.
    stale: usize,
}

impl Cluster {
    /// Answers `Read`: the batches stored at `offset..end`, within about `max_bytes`.
    pub(super) async fn read(&self, key: PartitionKey, offset: i64, end: i64, max_bytes: usize) -> Completion {
        let mut batches: SmallVec<[Bytes; 2]> = SmallVec::new();
        if offset >= end {
            return Completion::Read { batches };
        }
        match self.read_records(key, offset, end, max_bytes).await {
            Ok((records, _)) => match envelope::rebuild(&records) {
                Ok(b) => {
                    batches.extend(b);
                    Completion::Read { batches }
                }
                Err(_) => Completion::Failed(StorageError::Corrupt("stored records do not make a batch")),
            },
            Err(e) => Completion::Failed(e),
        }
    }

    /// The records stored at `from..end`, in whole original batches (fewer if the byte budget
    /// is used up first), and the offset the read got to: every offset between `from` and it
    /// that is not among the records holds nothing a reader may see (see the module docs).
    pub(super) async fn read_records(
        &self,
        key: PartitionKey,
        from: i64,
        end: i64,
        max_bytes: usize,
    ) -> Result<(Vec<Envelope>, i64), StorageError> {
        let mut s = match self.sessions.take(key, from) {
            Some(s) => s,
            None => self.open_session(key, from).await?,
        };
        let mut read = Read {
            cluster: self,
            key,
            end,
            max_bytes,
            deadline: Instant::now() + self.cfg.rpc_timeout,
            stall: STALL,
            out: Vec::new(),
            used: 0,
            stale: 0,
        };
        let stop = read.fill(&mut s).await?;
        if read.stale > 0 {
            tracing::warn!(
                ?key,
                from,
                records = read.stale,
                "seaweedmq: stepped over records that repeat earlier offsets"
            );
        }
        let next = s.next;
        // A broken session is dropped; any other is kept for the read that goes on from `next`.
        match stop {
            Stop::Broken(e) if read.out.is_empty() => Err(e),
            Stop::Broken(_) => Ok(whole(read.out, next, end)),
            Stop::TimedOut if read.out.is_empty() => {
                self.sessions.put(key, s);
                Err(StorageError::Timeout)
            }
            Stop::TimedOut | Stop::Done => {
                self.sessions.put(key, s);
                Ok(whole(read.out, next, end))
            }
        }
    }

    /// Records `from..end` (holes and partial batches left out), and where the scan stopped:
    /// `end`, or earlier if no subscription, opened afresh again and again for `rpc_timeout`,
    /// delivered anything at or after that offset. Only holes explain that for offsets
    /// SeaweedMQ counts below its end.
    pub(super) async fn scan(
        &self,
        key: PartitionKey,
        from: i64,
        end: i64,
    ) -> Result<(Vec<Envelope>, i64), StorageError> {
        let mut out = Vec::new();
        let mut at = from;
        while at < end {
            match self.read_records(key, at, end, SCAN_READ).await {
                // Records came, but not the rest of their batch, within the read's deadline:
                // a batch cut short, and holes after it.
                Ok((_, next)) if next <= at => break,
                Ok((got, next)) => {
                    at = next;
                    out.extend(got);
                }
                Err(StorageError::Timeout) => break,
                Err(e) => return Err(e),
            }
        }
        Ok((out, at))
    }
}

impl Read<'_> {
    /// Takes records off `s` until the read has enough, reaches its end, or must stop.
    /// `Err` only for data that is not kelp's.
    async fn fill(&mut self, s: &mut Session) -> Result<Stop, StorageError> {
        while s.next < self.end {
            let env = match s.held.take() {
                Some(env) => env,
                None => match self.next_value(s).await {
                    Wait::Value(v) => self.decode(s, v)?,
                    Wait::Stop(stop) => return Ok(stop),
                },
            };
            if self.take(s, env) {
                break;
            }
        }
        Ok(Stop::Done)
    }

    /// The session's next message, replacing the subscription when it stalls.
    async fn next_value(&mut self, s: &mut Session) -> Wait {
        loop {
            match s.try_next() {
                Ready::Value(v) => return Wait::Value(v),
                Ready::Ended(e) => return Wait::Stop(Stop::Broken(e)),
                Ready::Empty => {}
            }
            // Whole batches in hand: answer now rather than wait for more.
            if self.out.last().is_some_and(|e| e.delta == e.last_delta) {
                return Wait::Stop(Stop::Done);
            }
            let now = Instant::now();
            if now >= self.deadline {
                // Acknowledged data not arriving (or holes up to `end`): keep what we have.
                return Wait::Stop(Stop::TimedOut);
            }
            match s.next_within(s.patience(self.stall).min(self.deadline - now)).await {
                Ready::Value(v) => return Wait::Value(v),
                Ready::Ended(e) => return Wait::Stop(Stop::Broken(e)),
                Ready::Empty => {}
            }
            if let Err(e) = self.resubscribe(s).await {
                return Wait::Stop(Stop::Broken(e));
            }
        }
    }

    /// Replaces the stalled subscription of `s` with a new one at the same offset, and waits
    /// longer next time.
    async fn resubscribe(&mut self, s: &mut Session) -> Result<(), StorageError> {
        tracing::debug!(key = ?self.key, offset = s.next, "seaweedmq: read stalled; subscribing again");
        self.stall = (self.stall * 2).min(MAX_STALL);
        *s = self.cluster.open_session(self.key, s.next).await?;
        Ok(())
    }

    fn decode(&self, s: &Session, value: Bytes) -> Result<Envelope, StorageError> {
        Envelope::decode(value).ok_or_else(|| {
            tracing::error!(key = ?self.key, offset = s.next, "seaweedmq: a message that is not a kelp record");
            StorageError::Corrupt("a SeaweedMQ message that is not a kelp record")
        })
    }

    /// Adds `env` to the read, or holds it in `s` for a later read if it lies past the end.
    /// True once the read should stop: a batch is complete and the byte budget used up, or
    /// the record was past the end.
    fn take(&mut self, s: &mut Session, env: Envelope) -> bool {
        let key = self.key;
        match place(s.next, self.end, env.offset) {
            Place::Stale => {
                tracing::debug!(?key, expected = s.next, found = env.offset, "seaweedmq: a repeated offset");
                self.stale += 1;
                return false;
            }
            Place::Later => {
                // Nothing at `s.next..end`; this record is for a later read.
                tracing::debug!(?key, from = s.next, end = self.end, "seaweedmq: offsets without a record");
                s.next = self.end;
                s.held = Some(env);
                return true;
            }
            Place::Take => {}
        }
        if env.offset > s.next {
            tracing::debug!(?key, from = s.next, to = env.offset, "seaweedmq: offsets without a record");
        }
        s.next = env.offset + 1;
        self.used += env.stored_len();
        let batch_done = env.delta == env.last_delta;
        self.out.push(env);
        batch_done && self.used >= self.max_bytes
    }
}

/// Where a record at `offset` goes in a read that expects `next` and ends at `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// Not above the last record taken: what a broker crash can leave in the files (a
    /// message stored twice, or under a re-assigned offset). Stepped over.
    Stale,
    /// At or past the end: held for a later read.
    Later,
    /// Taken (any offsets skipped on the way hold nothing).
    Take,
}

fn place(next: i64, end: i64, offset: i64) -> Place {
    if offset < next {
        Place::Stale
    } else if offset >= end {
        Place::Later
    } else {
        Place::Take
    }
}

/// `records` (read up to `next`) without the batches whose last record is missing, and where
/// the next read starts. A batch followed by another, or cut off at `end` (the end of what is
/// stored), never gets its last record: a broken publish stream cut it short, and it is left
/// out. A batch at the end of a read that stopped before `end` may still be arriving: it is
/// left for the next read.
fn whole(mut records: Vec<Envelope>, mut next: i64, end: i64) -> (Vec<Envelope>, i64) {
    let mut keep = vec![false; records.len()];
    let mut i = 0;
    while i < records.len() {
        let j = batch_end(&records, i);
        let (first, last) = (&records[i], &records[j - 1]);
        if last.delta == last.last_delta {
            keep[i..j].fill(true);
        } else if j == records.len() && next < end {
            next = first.offset;
        } else {
            tracing::debug!(
                base = first.batch_base(),
                through = last.offset,
                "seaweedmq: a batch cut short is left out"
            );
        }
        i = j;
    }
    let mut k = keep.into_iter();
    records.retain(|_| k.next().unwrap_or(false));
    (records, next)
}

/// The index just past the records of the batch that starts at `records[i]`: the same base
/// offset and producer, with deltas going up.
fn batch_end(records: &[Envelope], i: usize) -> usize {
    let first = &records[i];
    let mut j = i + 1;
    while j < records.len()
        && records[j].batch_base() == first.batch_base()
        && records[j].producer == first.producer
        && records[j].delta > records[j - 1].delta
    {
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::{Envelope, Place, place, whole};

    /// Record `delta` of a batch of `len` records at `base`.
    fn rec(base: i64, delta: i32, len: i32) -> Envelope {
        Envelope {
            offset: base + i64::from(delta),
            delta,
            last_delta: len - 1,
            producer: (7, 0, 0),
            leader_epoch: 0,
            timestamp: 0,
            max_timestamp: 0,
            log_append_time: false,
            transactional: false,
            control: false,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    fn offsets(r: &[Envelope]) -> Vec<i64> {
        r.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn a_batch_cut_short_and_followed_by_another_is_left_out() {
        // 10..12 whole; 13.. cut after two records; a hole at 15; 16..17 whole.
        let rs = vec![
            rec(10, 0, 3),
            rec(10, 1, 3),
            rec(10, 2, 3),
            rec(13, 0, 5),
            rec(13, 1, 5),
            rec(16, 0, 2),
            rec(16, 1, 2),
        ];
        let (kept, next) = whole(rs, 18, 18);
        assert_eq!(offsets(&kept), [10, 11, 12, 16, 17]);
        assert_eq!(next, 18);
    }

    #[test]
    fn a_batch_cut_short_at_the_end_of_what_is_stored_is_left_out() {
        let (kept, next) = whole(vec![rec(0, 0, 1), rec(1, 0, 4), rec(1, 1, 4)], 4, 4);
        assert_eq!((offsets(&kept), next), (vec![0], 4));
    }

    #[test]
    fn a_batch_still_arriving_is_left_for_the_next_read() {
        let (kept, next) = whole(vec![rec(0, 0, 1), rec(1, 0, 4), rec(1, 1, 4)], 3, 9);
        assert_eq!((offsets(&kept), next), (vec![0], 1), "read again from the batch's first record");
    }

    #[test]
    fn repeated_offsets_are_stepped_over_and_gaps_skipped() {
        // A read of 10..20 that has taken up to 12 (next 13).
        assert_eq!(place(13, 20, 12), Place::Stale, "the same offset again");
        assert_eq!(place(13, 20, 4), Place::Stale, "an offset from further back");
        assert_eq!(place(13, 20, 13), Place::Take);
        assert_eq!(place(13, 20, 17), Place::Take, "13..17 hold nothing");
        assert_eq!(place(13, 20, 20), Place::Later);
    }

    #[test]
    fn a_read_starting_inside_a_batch_keeps_its_rest() {
        let (kept, next) = whole(vec![rec(0, 2, 4), rec(0, 3, 4)], 4, 4);
        assert_eq!((offsets(&kept), next), (vec![2, 3], 4));
    }
}
