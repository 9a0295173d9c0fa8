//! Fetch: incremental fetch sessions (KIP-227), long polls woken by appends, byte budgets, and
//! record sets passed from the store to the socket without a copy.
//!
//! A fetch resolves its partitions (from the request, or the session for incremental fetches),
//! reads every partition that has data below its high watermark, and answers. When none has
//! data and the client is willing to wait, it parks until an append moves one of those
//! partitions' high watermark or `max_wait_ms` runs out. It answers as soon as any data is
//! there, which can be before `min_bytes` is reached.
//!
//! Byte budgets follow Kafka: each partition returns at most `partition_max_bytes` and the
//! response at most `max_bytes`, except that the first batch that has data is returned whole
//! even when it is larger, so a consumer can always make progress.

use std::collections::BTreeMap;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::broker::{Broker, CmdOwner, JobId, Req, Timer};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::fetch::{FetchRequest, FetchResponse, FetchableTopicResponse, PartitionData};
use crate::codec::{ErrorCode, KStr, RecordSet, Uuid};
use crate::io::{Command, Completion, PartitionKey};
use crate::records;
use crate::time::{Duration, Instant};

/// One partition a fetch asks for.
#[derive(Clone, Debug)]
struct Part {
    name: KStr,
    topic_id: Uuid,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    leader_epoch: i32,
}

/// What a session remembers of a partition.
#[derive(Clone, Debug)]
struct SessionPart {
    part: Part,
    /// (hwm, log start) as last sent, to decide what an incremental response must include.
    last_sent: Option<(i64, i64)>,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    parts: Vec<SessionPart>,
    last_used: Instant,
    uses_topic_ids: bool,
}

/// The broker's fetch sessions: a bounded cache, least recently used evicted first.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: BTreeMap<i32, Session>,
}

/// A fetch in progress.
#[derive(Debug)]
pub(crate) struct FetchJob {
    req: Req,
    parts: Vec<Part>,
    session: Option<i32>,
    /// Whether the response lists only what changed (incremental session fetch).
    incremental: bool,
    max_bytes: usize,
    max_wait: Duration,
    read_committed: bool,
    /// Per part: read results.
    reads: Vec<Option<SmallVec<[Bytes; 2]>>>,
    pending: usize,
    top_error: ErrorCode,
    parked: bool,
}

pub(crate) fn handle(b: &mut Broker, req: Req, m: FetchRequest) {
    let uses_ids = req.version >= 13;
    let mut requested = Vec::new();
    for t in &m.topics {
        let (name, id) = if uses_ids {
            (b.topic_by_id(t.topic_id).map(|x| x.name.clone()).unwrap_or_default(), t.topic_id)
        } else {
            (t.topic.clone(), b.topic_by_name(&t.topic).map_or(Uuid::ZERO, |x| x.id))
        };
        for p in &t.partitions {
            requested.push(Part {
                name: name.clone(),
                topic_id: id,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0),
                leader_epoch: p.current_leader_epoch,
            });
        }
    }
    let forgotten: Vec<(KStr, Uuid, i32)> = m
        .forgotten_topics_data
        .iter()
        .flat_map(|f| f.partitions.iter().map(move |p| (f.topic.clone(), f.topic_id, *p)))
        .collect();
    let mut job = FetchJob {
        req,
        parts: Vec::new(),
        session: None,
        incremental: false,
        max_bytes: usize::try_from(m.max_bytes.max(0)).unwrap_or(0),
        max_wait: Duration::from_millis(i64::from(m.max_wait_ms)),
        read_committed: m.isolation_level == 1,
        reads: Vec::new(),
        pending: 0,
        top_error: ErrorCode::NONE,
        parked: false,
    };
    // A client that waits zero or wants no bytes never parks.
    if m.min_bytes <= 0 {
        job.max_wait = Duration::ZERO;
    }
    match resolve_session(b, &m, uses_ids, requested, &forgotten) {
        Ok((session, incremental, parts)) => {
            job.session = session;
            job.incremental = incremental;
            job.parts = parts;
        }
        Err(code) => job.top_error = code,
    }
    let id = b.park(super::Job::Fetch(job));
    evaluate(b, id);
}

/// Applies KIP-227's rules for session id and epoch, returning the session (if any), whether
/// the response is incremental, and the partitions to fetch.
fn resolve_session(
    b: &mut Broker,
    m: &FetchRequest,
    uses_ids: bool,
    requested: Vec<Part>,
    forgotten: &[(KStr, Uuid, i32)],
) -> Result<(Option<i32>, bool, Vec<Part>), ErrorCode> {
    let now = b.now.mono;
    match (m.session_id, m.session_epoch) {
        // Sessionless full fetch (all versions before 7 look like this).
        (0, -1) => Ok((None, false, requested)),
        (old, 0) => {
            // A new session, if the cache has room (else a sessionless answer). A session
            // named with epoch 0 is closed first: that is how the Java consumer starts over
            // after a session error (`FetchMetadata.nextCloseExisting`), as Kafka allows.
            b.sessions.by_id.remove(&old);
            let Some(id) = new_session_id(b) else { return Ok((None, false, requested)) };
            let parts = requested.iter().map(|p| SessionPart { part: p.clone(), last_sent: None }).collect();
            b.sessions.by_id.insert(id, Session { next_epoch: 1, parts, last_used: now, uses_topic_ids: uses_ids });
            Ok((Some(id), false, requested))
        }
        (id, -1) => {
            b.sessions.by_id.remove(&id);
            Ok((None, false, requested))
        }
        (0, _) => Err(ErrorCode::INVALID_FETCH_SESSION_EPOCH),
        (id, epoch) => {
            let s = b.sessions.by_id.get_mut(&id).ok_or(ErrorCode::FETCH_SESSION_ID_NOT_FOUND)?;
            if epoch != s.next_epoch {
                return Err(ErrorCode::INVALID_FETCH_SESSION_EPOCH);
            }
            if s.uses_topic_ids != uses_ids {
                return Err(ErrorCode::FETCH_SESSION_TOPIC_ID_ERROR);
            }
            s.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
            s.last_used = now;
            let same = |a: &Part, name: &KStr, id: Uuid, p: i32| {
                a.partition == p && if uses_ids { a.topic_id == id } else { &a.name == name }
            };
            s.parts.retain(|sp| !forgotten.iter().any(|(n, i, p)| same(&sp.part, n, *i, *p)));
            for r in requested {
                match s.parts.iter_mut().find(|sp| same(&sp.part, &r.name, r.topic_id, r.partition)) {
                    Some(sp) => sp.part = r,
                    None => s.parts.push(SessionPart { part: r, last_sent: None }),
                }
            }
            Ok((Some(id), true, s.parts.iter().map(|sp| sp.part.clone()).collect()))
        }
    }
}

fn new_session_id(b: &mut Broker) -> Option<i32> {
    if b.cfg.max_fetch_sessions == 0 {
        return None;
    }
    if b.sessions.by_id.len() >= b.cfg.max_fetch_sessions {
        // Evict the least recently used session if it has been idle long enough.
        let now = b.now.mono;
        let idle = b.cfg.fetch_session_idle;
        let oldest = b.sessions.by_id.iter().min_by_key(|(_, s)| s.last_used).map(|(id, s)| (*id, s.last_used))?;
        if now.since(oldest.1) < idle {
            return None;
        }
        b.sessions.by_id.remove(&oldest.0);
    }
    loop {
        let id = i32::try_from(b.rng.next_u64() & 0x7fff_ffff).unwrap_or(1);
        if id != 0 && !b.sessions.by_id.contains_key(&id) {
            return Some(id);
        }
    }
}

/// The error a partition gets before any read, if any.
fn check_part(b: &Broker, p: &Part) -> Option<ErrorCode> {
    let Some(topic) = b.topic_by_id(p.topic_id) else {
        return Some(if p.topic_id == Uuid::ZERO || !p.name.is_empty() {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        } else {
            ErrorCode::UNKNOWN_TOPIC_ID
        });
    };
    let Some(log) = usize::try_from(p.partition).ok().and_then(|i| topic.partitions.get(i)) else {
        return Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    if p.leader_epoch > 0 {
        return Some(ErrorCode::UNKNOWN_LEADER_EPOCH);
    }
    if p.offset < log.log_start() || p.offset > log.next_offset() {
        return Some(ErrorCode::OFFSET_OUT_OF_RANGE);
    }
    None
}

fn key(p: &Part) -> PartitionKey {
    PartitionKey { topic_id: p.topic_id, partition: p.partition }
}

/// Reads what is there, or parks until there is something.
fn evaluate(b: &mut Broker, job: JobId) {
    let Some(super::Job::Fetch(j)) = b.jobs.get(&job) else { return };
    if j.top_error != ErrorCode::NONE {
        return finish(b, job);
    }
    let budget = j.max_bytes;
    let plan: Vec<Option<(PartitionKey, i64, i64, usize)>> = j
        .parts
        .iter()
        .map(|p| {
            if check_part(b, p).is_some() {
                return None;
            }
            let log = b.partition(key(p))?;
            (p.offset < log.hwm()).then(|| (key(p), p.offset, log.hwm(), p.max_bytes.min(budget)))
        })
        .collect();
    let has_data = plan.iter().any(Option::is_some);
    let (max_wait, parked) = (j.max_wait, j.parked);
    if !has_data && max_wait > Duration::ZERO && !parked {
        return park(b, job, max_wait);
    }
    if !has_data {
        return finish(b, job);
    }
    let Some(super::Job::Fetch(j)) = b.jobs.get_mut(&job) else { return };
    j.reads = vec![None; j.parts.len()];
    j.pending = plan.iter().filter(|x| x.is_some()).count();
    b.timers.cancel(&Timer::FetchWait(job));
    for (part, read) in plan.into_iter().enumerate() {
        let Some((partition, offset, end, max_bytes)) = read else { continue };
        b.storage(CmdOwner::Job { job, part }, Command::Read { partition, offset, end, max_bytes: max_bytes.max(1) });
    }
}

fn park(b: &mut Broker, job: JobId, max_wait: Duration) {
    let Some(super::Job::Fetch(j)) = b.jobs.get_mut(&job) else { return };
    j.parked = true;
    let keys: Vec<PartitionKey> = j.parts.iter().map(key).collect();
    for k in keys {
        let waiters = b.fetch_waiters.entry(k).or_default();
        if !waiters.contains(&job) {
            waiters.push(job);
        }
    }
    let deadline = b.now.mono + max_wait;
    b.timers.arm(Timer::FetchWait(job), deadline);
}

/// A partition this parked fetch waits on has new data.
pub(crate) fn wake(b: &mut Broker, job: JobId) {
    if matches!(b.jobs.get(&job), Some(super::Job::Fetch(j)) if j.parked && j.pending == 0) {
        evaluate(b, job);
    }
}

/// The fetch's wait ran out: answer with what there is (nothing).
pub(crate) fn expire(b: &mut Broker, job: JobId) {
    if matches!(b.jobs.get(&job), Some(super::Job::Fetch(j)) if j.pending == 0) {
        finish(b, job);
    }
}

pub(crate) fn read_done(b: &mut Broker, job: JobId, part: usize, result: Completion) {
    let Some(super::Job::Fetch(j)) = b.jobs.get_mut(&job) else { return };
    j.reads[part] = Some(match result {
        Completion::Read { batches } => batches,
        // A failed read answers that partition with no records; the client fetches again.
        _ => SmallVec::new(),
    });
    j.pending -= 1;
    if j.pending == 0 {
        finish(b, job);
    }
}

fn finish(b: &mut Broker, job: JobId) {
    let Some(super::Job::Fetch(mut j)) = b.jobs.remove(&job) else { return };
    b.timers.cancel(&Timer::FetchWait(job));
    for k in j.parts.iter().map(key) {
        if let Some(w) = b.fetch_waiters.get_mut(&k) {
            w.retain(|x| *x != job);
        }
    }
    let resp = build_response(b, &mut j);
    b.respond(j.req, &ResponseBody::Fetch(resp));
}

fn build_response(b: &mut Broker, j: &mut FetchJob) -> FetchResponse {
    let mut resp =
        FetchResponse { error_code: j.top_error.0, session_id: j.session.unwrap_or(0), ..Default::default() };
    if j.top_error != ErrorCode::NONE {
        resp.session_id = 0;
        return resp;
    }
    let mut budget = j.max_bytes;
    let mut first = true;
    let mut session_parts = j.session.and_then(|id| b.sessions.by_id.get(&id)).map(|s| s.parts.clone());
    for (i, p) in j.parts.iter().enumerate() {
        // An empty record set, never null: Kafka always sends one, and older librdkafka
        // (kcat's 2.0) refuses a null one.
        let mut pd = PartitionData {
            partition_index: p.partition,
            preferred_read_replica: -1,
            records: Some(RecordSet::new()),
            ..Default::default()
        };
        pd.aborted_transactions = j.read_committed.then(Vec::new);
        match check_part(b, p) {
            Some(code) => {
                pd.error_code = code.0;
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
            }
            None => {
                let log = b.partition(key(p));
                pd.high_watermark = log.map_or(-1, |l| l.hwm());
                pd.last_stable_offset = pd.high_watermark;
                pd.log_start_offset = log.map_or(-1, |l| l.log_start());
                let chunks = j.reads.get_mut(i).and_then(Option::take).unwrap_or_default();
                if let Some(records) = fit(chunks, p.max_bytes.min(budget), first) {
                    first = false;
                    budget = budget.saturating_sub(records.len());
                    pd.records = Some(records);
                }
            }
        }
        // Incremental responses carry only partitions with news (KIP-227).
        if let Some(sp) = session_parts.as_mut().and_then(|parts| {
            parts
                .iter_mut()
                .find(|sp| sp.part.partition == p.partition && sp.part.topic_id == p.topic_id && sp.part.name == p.name)
        }) {
            let now = (pd.high_watermark, pd.log_start_offset);
            let has_records = pd.records.as_ref().is_some_and(|r| !r.is_empty());
            let changed = has_records || pd.error_code != 0 || sp.last_sent != Some(now);
            sp.last_sent = Some(now);
            if j.incremental && !changed {
                continue;
            }
        }
        match resp.responses.last_mut() {
            Some(t) if t.topic == p.name && t.topic_id == p.topic_id => t.partitions.push(pd),
            _ => resp.responses.push(FetchableTopicResponse {
                topic: p.name.clone(),
                topic_id: p.topic_id,
                partitions: vec![pd],
                ..Default::default()
            }),
        }
    }
    if let (Some(id), Some(parts)) = (j.session, session_parts)
        && let Some(s) = b.sessions.by_id.get_mut(&id)
    {
        s.parts = parts;
    }
    resp
}

/// The whole batches at the front of a read that fit in `limit` bytes; with `min_one` (no
/// partition has returned data yet) at least the first, however large (Kafka's
/// `minOneMessage`). Reads run in parallel with the whole budget each, so a later
/// partition's read is cut here to what is left of it. The chunks are kept as they are (cut at a
/// batch boundary at most): record bytes are never copied into the response.
fn fit(chunks: SmallVec<[Bytes; 2]>, limit: usize, min_one: bool) -> Option<RecordSet> {
    let mut out = RecordSet::new();
    'chunks: for chunk in chunks {
        let mut end = 0;
        while let Some(rest) = chunk.get(end..).filter(|r| !r.is_empty()) {
            // Stores return whole batches; anything else goes to the client as it is.
            let size = records::frame(rest).unwrap_or(rest.len());
            if out.len() + end + size > limit && !(out.is_empty() && end == 0 && min_one) {
                out.push(chunk.slice(..end));
                break 'chunks;
            }
            end += size;
        }
        out.push(chunk);
    }
    (!out.is_empty()).then_some(out)
}
