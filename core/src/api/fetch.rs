//! Fetch: incremental fetch sessions (KIP-227), long polls woken by appends, byte budgets, and
//! record sets passed from the store to the socket without a copy.
//!
//! A fetch resolves its partitions (from the request, or the session for incremental fetches),
//! reads every partition that has data below its high watermark, and answers. When none has
//! data and the client is willing to wait, it parks until an append moves one of those
//! partitions' high watermark or `max_wait_ms` runs out. It answers as soon as any data is
//! there, which can be before `min_bytes` is reached.
//!
//! With the authorizer on, each request's partitions are checked at entry (see
//! `denied_parts`); refused ones are answered TOPIC_AUTHORIZATION_FAILED and never read.
//!
//! Byte budgets follow Kafka: each partition returns at most `partition_max_bytes` and the
//! response at most `max_bytes`, except that the first batch that has data is returned whole
//! even when it is larger, so a consumer can always make progress.

use bytes::Bytes;
use smallvec::SmallVec;

use super::{CmdOwner, Effects, Timer};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::fetch::{
    AbortedTransaction, FetchRequest, FetchResponse, FetchableTopicResponse, PartitionData,
};
use crate::codec::{ErrorCode, KStr, RecordSet, Uuid};
use crate::io::{Command, Completion, PartitionKey};
use crate::log::PartitionLog;
use crate::records;
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::state::fetch_sessions::{FetchPart, SessionRequest};
use crate::state::{JobId, State};
use crate::time::Duration;

/// A fetch in progress.
#[derive(Debug)]
pub(crate) struct FetchJob {
    req: Req,
    parts: Vec<FetchPart>,
    /// Per part: refused by the authorizer at request entry (TOPIC_AUTHORIZATION_FAILED).
    denied: Vec<bool>,
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

pub(crate) fn handle(st: &mut State, fx: &mut Effects, req: Req, m: FetchRequest) {
    let uses_ids = req.version >= 13;
    let mut requested = Vec::new();
    for t in &m.topics {
        let (name, id) = if uses_ids {
            (st.topics.by_id(t.topic_id).map(|x| x.name.clone()).unwrap_or_default(), t.topic_id)
        } else {
            (t.topic.clone(), st.topics.by_name(&t.topic).map_or(Uuid::ZERO, |x| x.id))
        };
        for p in &t.partitions {
            requested.push(FetchPart {
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
        denied: Vec::new(),
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
    let now = st.now.mono;
    let session =
        SessionRequest { id: m.session_id, epoch: m.session_epoch, uses_ids, requested, forgotten: &forgotten };
    match st.sessions.resolve(&st.cfg, &mut st.rng, now, session) {
        Ok(resolved) => {
            job.session = resolved.session;
            job.incremental = resolved.incremental;
            job.parts = resolved.parts;
        }
        Err(code) => job.top_error = code,
    }
    job.denied = denied_parts(st, &job.req, &m, &job.parts);
    let id = fx.park(super::Job::Fetch(job));
    evaluate(st, fx, id);
}

/// Which of `parts` the principal may not fetch, decided once at request entry, as Kafka's
/// `handleFetchRequest` does on every request (partitions of a session included: they stay in
/// it and are answered TOPIC_AUTHORIZATION_FAILED each time). A consumer needs READ on each
/// topic, checked by name whether the topic exists or not; a topic id the broker does not know
/// is answered UNKNOWN_TOPIC_ID before any check. A follower (replica id >= 0) needs
/// CLUSTER_ACTION on the cluster for all of them.
fn denied_parts(st: &State, req: &Req, m: &FetchRequest, parts: &[FetchPart]) -> Vec<bool> {
    if !st.authz.enabled {
        return vec![false; parts.len()];
    }
    let replica_id = if req.version >= 15 { m.replica_state.replica_id } else { m.replica_id };
    if replica_id >= 0 {
        let allowed = st.allowed(req, Operation::CLUSTER_ACTION, ResourceType::CLUSTER, CLUSTER_NAME);
        return vec![!allowed; parts.len()];
    }
    // Parts come grouped by topic: one decision per run of a name.
    let mut last: Option<(&KStr, bool)> = None;
    parts
        .iter()
        .map(|p| {
            if unknown_id(st, p) {
                return false;
            }
            match last {
                Some((name, denied)) if *name == p.name => denied,
                _ => {
                    let denied = !st.allowed(req, Operation::READ, ResourceType::TOPIC, &p.name);
                    last = Some((&p.name, denied));
                    denied
                }
            }
        })
        .collect()
}

/// Whether `p` names, by id (v13+), a topic the broker does not know.
fn unknown_id(st: &State, p: &FetchPart) -> bool {
    p.topic_id != Uuid::ZERO && p.name.is_empty() && st.topics.by_id(p.topic_id).is_none()
}

/// The error a partition gets before any read, if any; `denied` when the authorizer refused it.
fn check_part(st: &State, p: &FetchPart, denied: bool) -> Option<ErrorCode> {
    if unknown_id(st, p) {
        return Some(ErrorCode::UNKNOWN_TOPIC_ID);
    }
    if denied {
        return Some(ErrorCode::TOPIC_AUTHORIZATION_FAILED);
    }
    let Some(topic) = st.topics.by_id(p.topic_id) else { return Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION) };
    let Some(log) = usize::try_from(p.partition).ok().and_then(|i| topic.partitions.get(i)) else {
        return Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    };
    if let Some(code) = super::list_offsets::epoch_error(p.leader_epoch, log) {
        return Some(code);
    }
    if p.offset < log.log_start() || p.offset > log.next_offset() {
        return Some(ErrorCode::OFFSET_OUT_OF_RANGE);
    }
    None
}

/// Reads what is there, or parks until there is something.
fn evaluate(st: &mut State, fx: &mut Effects, job: JobId) {
    let Some(super::Job::Fetch(j)) = fx.jobs.get(&job) else { return };
    if j.top_error != ErrorCode::NONE {
        return finish(st, fx, job);
    }
    let budget = j.max_bytes;
    let read_committed = j.read_committed;
    let plan: Vec<Option<(PartitionKey, i64, i64, usize)>> = j
        .parts
        .iter()
        .zip(&j.denied)
        .map(|(p, denied)| {
            if check_part(st, p, *denied).is_some() {
                return None;
            }
            let log = st.topics.partition(p.key())?;
            // read_committed reads stop at the last stable offset.
            let end = if read_committed { log.lso() } else { log.hwm() };
            (p.offset < end).then(|| (p.key(), p.offset, end, p.max_bytes.min(budget)))
        })
        .collect();
    let has_data = plan.iter().any(Option::is_some);
    let (max_wait, parked) = (j.max_wait, j.parked);
    // Kafka answers at once when the authorizer refused every partition: nothing can arrive.
    let all_denied = !j.parts.is_empty() && j.denied.iter().all(|d| *d);
    if !has_data && max_wait > Duration::ZERO && !parked && !all_denied {
        return park(st, fx, job, max_wait);
    }
    if !has_data {
        return finish(st, fx, job);
    }
    let Some(super::Job::Fetch(j)) = fx.jobs.get_mut(&job) else { return };
    j.reads = vec![None; j.parts.len()];
    j.pending = plan.iter().filter(|x| x.is_some()).count();
    fx.cancel(&Timer::FetchWait(job));
    for (part, read) in plan.into_iter().enumerate() {
        let Some((partition, offset, end, max_bytes)) = read else { continue };
        fx.storage(CmdOwner::Job { job, part }, Command::Read { partition, offset, end, max_bytes: max_bytes.max(1) });
    }
}

fn park(st: &mut State, fx: &mut Effects, job: JobId, max_wait: Duration) {
    let Some(super::Job::Fetch(j)) = fx.jobs.get_mut(&job) else { return };
    j.parked = true;
    let keys: Vec<PartitionKey> = j.parts.iter().map(FetchPart::key).collect();
    for k in keys {
        let waiters = st.waiters.fetch.entry(k).or_default();
        if !waiters.contains(&job) {
            waiters.push(job);
        }
    }
    let deadline = st.now.mono + max_wait;
    fx.arm(Timer::FetchWait(job), deadline);
}

/// A partition this parked fetch waits on has new data.
pub(crate) fn wake(st: &mut State, fx: &mut Effects, job: JobId) {
    if matches!(fx.jobs.get(&job), Some(super::Job::Fetch(j)) if j.parked && j.pending == 0) {
        evaluate(st, fx, job);
    }
}

/// The fetch's wait ran out: answer with what there is (nothing).
pub(crate) fn expire(st: &mut State, fx: &mut Effects, job: JobId) {
    if matches!(fx.jobs.get(&job), Some(super::Job::Fetch(j)) if j.pending == 0) {
        finish(st, fx, job);
    }
}

pub(crate) fn read_done(st: &mut State, fx: &mut Effects, job: JobId, part: usize, result: Completion) {
    let Some(super::Job::Fetch(j)) = fx.jobs.get_mut(&job) else { return };
    j.reads[part] = Some(match result {
        Completion::Read { batches } => batches,
        // A failed read answers that partition with no records; the client fetches again.
        _ => SmallVec::new(),
    });
    j.pending -= 1;
    if j.pending == 0 {
        finish(st, fx, job);
    }
}

fn finish(st: &mut State, fx: &mut Effects, job: JobId) {
    let Some(super::Job::Fetch(mut j)) = fx.jobs.remove(&job) else { return };
    fx.cancel(&Timer::FetchWait(job));
    for k in j.parts.iter().map(FetchPart::key) {
        if let Some(w) = st.waiters.fetch.get_mut(&k) {
            w.retain(|x| *x != job);
        }
    }
    let resp = build_response(st, &mut j);
    fx.respond(j.req, ResponseBody::Fetch(resp));
}

fn build_response(st: &mut State, j: &mut FetchJob) -> FetchResponse {
    let mut resp =
        FetchResponse { error_code: j.top_error.0, session_id: j.session.unwrap_or(0), ..Default::default() };
    if j.top_error != ErrorCode::NONE {
        resp.session_id = 0;
        return resp;
    }
    let mut budget = j.max_bytes;
    let mut first = true;
    let mut session_parts = j.session.and_then(|id| st.sessions.parts(id));
    for (i, (p, denied)) in j.parts.iter().zip(&j.denied).enumerate() {
        // An empty record set, never null: Kafka always sends one, and older librdkafka
        // (kcat's 2.0) refuses a null one.
        let mut pd = PartitionData {
            partition_index: p.partition,
            preferred_read_replica: -1,
            records: Some(RecordSet::new()),
            ..Default::default()
        };
        pd.aborted_transactions = j.read_committed.then(Vec::new);
        match check_part(st, p, *denied) {
            Some(code) => {
                pd.error_code = code.0;
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
            }
            None => {
                let log = st.topics.partition(p.key());
                pd.high_watermark = log.map_or(-1, |l| l.hwm());
                pd.last_stable_offset = log.map_or(-1, PartitionLog::lso);
                pd.log_start_offset = log.map_or(-1, |l| l.log_start());
                let chunks = j.reads.get_mut(i).and_then(Option::take).unwrap_or_default();
                if let Some(records) = fit(chunks, p.max_bytes.min(budget), first) {
                    first = false;
                    budget = budget.saturating_sub(records.len());
                    if j.read_committed
                        && let Some(l) = log
                    {
                        pd.aborted_transactions = Some(aborted_in(l, p.offset, &records));
                    }
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
    if let (Some(id), Some(parts)) = (j.session, session_parts) {
        st.sessions.set_parts(id, parts);
    }
    resp
}

/// The aborted transactions a read_committed consumer must drop from `records` (read from
/// `from`): those overlapping them, up to the end of the last batch returned (Kafka's
/// transaction index lookup, bounded by what the fetch returns).
fn aborted_in(log: &PartitionLog, from: i64, records: &RecordSet) -> Vec<AbortedTransaction> {
    if log.txns.aborted_between(from, log.lso()).next().is_none() {
        return Vec::new();
    }
    // Only now, with aborted transactions about: the end of the records returned.
    let end =
        records::Batches::new(records.to_bytes()).filter_map(Result::ok).last().map_or(from, |b| b.last_offset() + 1);
    log.txns
        .aborted_between(from, end)
        .map(|a| AbortedTransaction { producer_id: a.producer_id, first_offset: a.first_offset, ..Default::default() })
        .collect()
}

/// The whole batches at the front of a read that fit in `limit` bytes; with `min_one` (no
/// partition has returned data yet) at least the first, however large (Kafka's
/// `minOneMessage`). Reads run in parallel with the whole budget each, so a later
/// partition's read is cut here to what is left of it. The chunks are kept as they are (cut at a
/// batch boundary at most): record bytes are never copied into the response. A batch may span
/// chunks (a produced batch is stored as its rewritten header beside its records): it is
/// admitted whole, with the chunks that hold its rest.
fn fit(chunks: SmallVec<[Bytes; 2]>, limit: usize, min_one: bool) -> Option<RecordSet> {
    let mut out = RecordSet::new();
    // Bytes of an admitted batch that lie in the chunks still to come.
    let mut carry = 0usize;
    'chunks: for chunk in chunks {
        let mut end = carry.min(chunk.len());
        carry -= end;
        while let Some(rest) = chunk.get(end..).filter(|r| !r.is_empty()) {
            let size = batch_size(rest);
            if out.len() + end + size > limit && !(out.is_empty() && end == 0 && min_one) {
                out.push(chunk.slice(..end));
                break 'chunks;
            }
            end += size;
        }
        carry += end.saturating_sub(chunk.len());
        out.push(chunk);
    }
    (!out.is_empty()).then_some(out)
}

/// The size of the batch at the start of `rest` as its header declares it, which may run on
/// into the next chunks. Stores return whole batches; anything else counts as the rest of the
/// chunk and goes to the client as it is.
fn batch_size(rest: &[u8]) -> usize {
    match records::frame(rest) {
        Ok(size) => size,
        // A header whose records follow in the next chunk.
        Err(records::RecordsError::Truncated(_)) => rest
            .get(records::LOG_OVERHEAD - 4..records::LOG_OVERHEAD)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .and_then(|b| usize::try_from(i32::from_be_bytes(b)).ok())
            .map_or(rest.len(), |len| (records::LOG_OVERHEAD + len).max(rest.len())),
        Err(_) => rest.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Compression, HEADER_LEN, RecordBatchBuilder};

    fn batch(value_len: usize) -> Bytes {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.append(1, None, Some(&vec![b'v'; value_len]), &[]).unwrap();
        b.build().unwrap()
    }

    /// Each batch as a header chunk and a records chunk, as a produced batch is stored.
    fn split(batches: &[Bytes]) -> SmallVec<[Bytes; 2]> {
        batches.iter().flat_map(|b| [b.slice(..HEADER_LEN), b.slice(HEADER_LEN..)]).collect()
    }

    #[test]
    fn batches_split_across_chunks_are_admitted_whole_or_not_at_all() {
        let (a, b) = (batch(100), batch(300));
        let (la, lb) = (a.len(), b.len());
        for (limit, min_one, want) in [
            (la + lb, false, Some(la + lb)),
            (la + lb - 1, false, Some(la)),
            (la - 1, false, None),
            (1, true, Some(la)),
        ] {
            let whole = fit(SmallVec::from_vec(vec![a.clone(), b.clone()]), limit, min_one);
            let halves = fit(split(&[a.clone(), b.clone()]), limit, min_one);
            assert_eq!(halves.as_ref().map(RecordSet::len), want, "limit {limit}, min_one {min_one}");
            assert_eq!(whole.as_ref().map(RecordSet::len), want, "limit {limit}, min_one {min_one}");
        }
    }
}
