//! The transaction coordinator's requests: InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions and
//! ListTransactions; the markers that end a transaction in its partitions and groups; and
//! the timeout that aborts a transaction whose producer went silent.
//!
//! Decisions come from [`crate::txn::TxnMeta`]; this module stores them (one `Put` of the
//! metadata, answered only once stored, as Kafka answers after its `__transaction_state`
//! append) and carries them out. While a change is being stored, or markers are being
//! written, the id is busy and requests that would change it get CONCURRENT_TRANSACTIONS,
//! which clients retry. EndTxn stores the decision (PrepareCommit or PrepareAbort), then the
//! markers are written, and it answers once the transaction is complete: each partition of
//! the transaction gets a control batch, appended like any batch and waited for until it is
//! below the high watermark; an abort
//! also stores the aborted range for read_committed fetches; each group gets its pending
//! offsets committed or dropped. Then the metadata is stored as CompleteCommit or
//! CompleteAbort and the id is free again. A marker that cannot be written (the store failed,
//! the partition is re-synchronising) is tried again shortly; after a restart, recovery
//! finds the transactions still preparing and writes their markers again.
//!
//! With ACLs on, requests are authorized at entry as Kafka's `KafkaApis` does: changing a
//! transaction needs WRITE on its transactional id, its partitions WRITE on their topics, its
//! group's offsets READ on the group and the topics; describing and listing transactions
//! needs DESCRIBE on the id (and shows only topics the principal may describe). A request
//! that waits for its id (a parked TxnOffsetCommit) is not authorized again when it goes on.

use bytes::Bytes;

use super::{CmdOwner, Effects, Job, Timer};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::add_offsets_to_txn::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use crate::codec::generated::add_partitions_to_txn::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, AddPartitionsToTxnResult,
    AddPartitionsToTxnTopic, AddPartitionsToTxnTopicResult,
};
use crate::codec::generated::describe_transactions::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, TopicData, TransactionState,
};
use crate::codec::generated::end_txn::{EndTxnRequest, EndTxnResponse};
use crate::codec::generated::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::codec::generated::list_transactions::{
    ListTransactionsRequest, ListTransactionsResponse, TransactionState as ListedState,
};
use crate::codec::generated::produce::ProduceRequest;
use crate::codec::generated::txn_offset_commit::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
};
use crate::codec::{ErrorCode, KStr};
use crate::group::{CommittedOffset, encode_offset, offset_key};
use crate::io::{AppendBatches, Command, Completion, PartitionKey};
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::state::producer_ids::{BLOCK_KEY, NextId};
use crate::state::transactions::{PendingOffset, TxnEntry, Unstored, encode_pending, merge_pending, pending_key};
use crate::state::{HwmWaiter, JobId, State};
use crate::time::Duration;
use crate::txn::coordinator::{encode, txn_key};
use crate::txn::partition::{aborted_key, encode_aborted};
use crate::txn::{AbortedTxn, EndPlan, InitPlan, MarkerKind, TxnMeta, TxnState, TxnTarget, control_batch};

/// How long a marker that could not be written waits before it is tried again.
const MARKER_RETRY: Duration = Duration::from_millis(100);

/// What happens once a transactional id's new metadata is stored.
#[derive(Debug)]
pub(crate) enum Then {
    /// Answer `body` (InitProducerId gets the stored producer id and epoch).
    Reply,
    /// Answer CONCURRENT_TRANSACTIONS, then write the abort markers of the fenced transaction.
    FenceThenMarkers,
    /// Write the markers of the decision stored, then answer (EndTxn).
    MarkersThenReply,
    /// Write the markers of a transaction aborted for its timeout (nobody to answer).
    Markers,
    /// One transaction of a batched AddPartitionsToTxn (v4+): report to the request's job.
    Batch {
        /// The AddPartitionsToTxn's job.
        parent: JobId,
        /// The transaction's index in its response.
        index: usize,
    },
    /// The transaction is complete: the id is free again, and an EndTxn waiting for it is
    /// answered. A completion that could not be stored is stored again at the coordinator's
    /// next look (its markers stand), and the EndTxn answered then.
    Complete,
    /// Partitions or a group joined the transaction implicitly (transaction version 2): the
    /// request that needed them goes on, before any that waited meanwhile.
    Resume(Box<Resume>),
}

/// A request of a transaction version 2 producer whose partitions (Produce v12+) or group
/// (TxnOffsetCommit v5+) join its transaction implicitly: it goes on once that is stored, or
/// waits while the transactional id is busy.
#[derive(Debug)]
pub(crate) enum Resume {
    /// A Produce.
    Produce(Req, ProduceRequest),
    /// A TxnOffsetCommit (its authorized topics), and the results of the topics refused at
    /// entry, which lead its answer.
    TxnOffsetCommit(Req, TxnOffsetCommitRequest, Vec<TxnOffsetCommitResponseTopic>),
}

/// Most requests one transactional id may have waiting for it to be free (more are refused
/// with CONCURRENT_TRANSACTIONS, which clients retry).
const MAX_WAITING: usize = 256;

/// Runs `r` again: its partitions or group joined the transaction (`joined`), or storing that
/// failed (the request is refused with a retriable error).
fn resume(st: &mut State, fx: &mut Effects, r: Resume, joined: bool) {
    match (r, joined) {
        (Resume::Produce(req, m), true) => super::produce::handle(st, fx, req, m),
        (Resume::TxnOffsetCommit(req, m, denied), true) => commit_offsets(st, fx, req, &m, denied),
        // Kafka maps a coordinator it cannot reach to NOT_ENOUGH_REPLICAS for a produce.
        (r @ Resume::Produce(..), false) => refuse(fx, r, ErrorCode::NOT_ENOUGH_REPLICAS),
        (r @ Resume::TxnOffsetCommit(..), false) => refuse(fx, r, ErrorCode::COORDINATOR_NOT_AVAILABLE),
    }
}

/// Answers `r` with `code` for every partition.
fn refuse(fx: &mut Effects, r: Resume, code: ErrorCode) {
    match r {
        Resume::Produce(req, m) => super::produce::refuse_all(fx, req, &m, code),
        Resume::TxnOffsetCommit(req, m, denied) => txn_offset_commit_refused(fx, req, &m, code, denied),
    }
}

/// Makes `partitions` and `groups` part of `id`'s open transaction (starting one if none is
/// open) for a request of `(producer_id, epoch)`, as Kafka's partition leader does for Produce
/// v12+ and its group coordinator for TxnOffsetCommit v5+. `r` is the request: it is taken
/// (it goes on once they are stored as part of the transaction, or waits while the id is
/// busy, or is refused), or given back when nothing needs to change, or when its own checks
/// will refuse it.
pub(crate) fn join(
    st: &mut State,
    fx: &mut Effects,
    id: &KStr,
    producer: (i64, i16),
    (partitions, groups): (&[(PartitionKey, i64)], &[KStr]),
    r: Resume,
) -> Option<Resume> {
    let Some(e) = st.txns.by_id.get(id) else { return Some(r) };
    if e.meta.check_producer(producer.0, producer.1).is_err() {
        return Some(r);
    }
    let needed = e.meta.state != TxnState::Ongoing
        || partitions.iter().any(|(p, _)| !e.meta.partitions.contains_key(p))
        || groups.iter().any(|g| !e.meta.groups.contains(g));
    // Requests already waiting go first (a later one to the same partition would arrive out
    // of sequence).
    let queued = st.txns.waiting.get(id).is_some_and(|q| !q.is_empty());
    if !needed && !queued {
        return Some(r);
    }
    if e.meta.state.is_preparing() {
        // Its transaction is ending (a timeout, a fence): the producer learns its fate from
        // the next answer; Kafka answers a join it cannot make now so too.
        refuse(fx, r, ErrorCode::CONCURRENT_TRANSACTIONS);
        return None;
    }
    if e.busy || queued {
        // The id is being stored (another request's join, say): the request waits its turn.
        let queue = st.txns.waiting.entry(id.clone()).or_default();
        if queue.len() >= MAX_WAITING {
            refuse(fx, r, ErrorCode::CONCURRENT_TRANSACTIONS);
        } else {
            queue.push_back(r);
        }
        return None;
    }
    let now = st.now.wall_ms;
    match e.meta.add(producer, partitions, groups, now) {
        Ok(Some(mut next)) => {
            next.tv2 = true;
            store(st, fx, None, None, next, Then::Resume(Box::new(r)));
            None
        }
        Ok(None) => Some(r),
        Err(code) => {
            // Kafka's partition leader turns a fenced producer into INVALID_PRODUCER_EPOCH.
            let produce = matches!(r, Resume::Produce(..));
            let code =
                if produce && code == ErrorCode::PRODUCER_FENCED { ErrorCode::INVALID_PRODUCER_EPOCH } else { code };
            refuse(fx, r, code);
            None
        }
    }
}

/// Runs the requests waiting for `id` to be free again, in the order they came.
fn wake_waiting(st: &mut State, fx: &mut Effects, id: &KStr) {
    if st.txns.by_id.get(id).is_some_and(|e| e.busy) {
        return;
    }
    let Some(queue) = st.txns.waiting.remove(id) else { return };
    for r in queue {
        resume(st, fx, r, true);
    }
}

/// A transactional id's metadata being stored, and what to do after.
#[derive(Debug)]
pub(crate) struct StoreJob {
    req: Option<Req>,
    body: Option<ResponseBody>,
    next: TxnMeta,
    then: Then,
    /// Whether the id was created by this request (forgotten again if the store fails).
    created: bool,
    /// A producer id reservation stored beside it (a new id was handed out).
    block_end: Option<i64>,
    waiting: usize,
    failed: bool,
}

/// Where one target of a transaction's markers stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The marker (a partition) or the offsets (a group) are being written.
    Marker,
    /// The marker is visible; its aborted range is being stored.
    Range,
    /// Done.
    Done,
}

/// One target of a transaction's markers.
#[derive(Debug)]
struct MarkerPart {
    target: TxnTarget,
    phase: Phase,
    /// Commands and waits outstanding.
    outstanding: usize,
    /// Something failed: tried again after [`MARKER_RETRY`].
    failed: bool,
    /// The marker's offset, once assigned.
    marker: Option<i64>,
    /// The aborted range the marker closes (an ABORT where the transaction wrote).
    aborted: Option<AbortedTxn>,
}

/// A transaction's markers being written.
#[derive(Debug)]
pub(crate) struct MarkersJob {
    /// The EndTxn to answer once the transaction is complete.
    reply: Option<(Req, ResponseBody)>,
    meta: TxnMeta,
    parts: Vec<MarkerPart>,
    /// Completion part number -> index in `parts`.
    calls: Vec<usize>,
}

fn set_error(body: &mut ResponseBody, code: ErrorCode) {
    match body {
        ResponseBody::InitProducerId(r) => {
            r.error_code = code.0;
            (r.producer_id, r.producer_epoch) = (-1, -1);
        }
        ResponseBody::AddOffsetsToTxn(r) => r.error_code = code.0,
        ResponseBody::EndTxn(r) => r.error_code = code.0,
        ResponseBody::AddPartitionsToTxn(r) => {
            for t in &mut r.results_by_topic_v3_and_below {
                for p in &mut t.results_by_partition {
                    p.partition_error_code = code.0;
                }
            }
        }
        ResponseBody::TxnOffsetCommit(r) => {
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    p.error_code = code.0;
                }
            }
        }
        _ => {}
    }
}

/// PRODUCER_FENCED as old clients know it: INVALID_PRODUCER_EPOCH (InitProducerId before
/// v4; AddPartitionsToTxn, AddOffsetsToTxn and EndTxn before v2).
fn fenced_for(code: ErrorCode, version: i16, first_with_fenced: i16) -> ErrorCode {
    if code == ErrorCode::PRODUCER_FENCED && version < first_with_fenced {
        ErrorCode::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// Stores `next` for its id (marking it busy), then carries out `then`.
fn store(st: &mut State, fx: &mut Effects, req: Option<Req>, body: Option<ResponseBody>, next: TxnMeta, then: Then) {
    store_with(st, fx, (req, body), next, then, (false, None));
}

fn store_with(
    st: &mut State,
    fx: &mut Effects,
    (req, body): (Option<Req>, Option<ResponseBody>),
    next: TxnMeta,
    then: Then,
    (created, block_end): (bool, Option<i64>),
) {
    if let Some(e) = st.txns.by_id.get_mut(&next.id) {
        e.busy = true;
    }
    let put = Command::Put { key: txn_key(next.id.as_str()), value: Some(encode(&next)) };
    let waiting = 1 + usize::from(block_end.is_some());
    let job = fx.park(Job::TxnStore(Box::new(StoreJob {
        req,
        body,
        next,
        then,
        created,
        block_end,
        waiting,
        failed: false,
    })));
    fx.storage(CmdOwner::Job { job, part: 0 }, put);
    if let Some(end) = block_end {
        let value = Bytes::copy_from_slice(&end.to_be_bytes());
        fx.storage(
            CmdOwner::Job { job, part: 1 },
            Command::Put { key: Bytes::from_static(BLOCK_KEY), value: Some(value) },
        );
    }
}

pub(crate) fn store_done(st: &mut State, fx: &mut Effects, job: JobId, result: &Completion) {
    let Some(Job::TxnStore(j)) = fx.jobs.get_mut(&job) else { return };
    j.failed |= !matches!(result, Completion::Done);
    j.waiting -= 1;
    if j.waiting > 0 {
        return;
    }
    let Some(Job::TxnStore(j)) = fx.jobs.remove(&job) else { return };
    let id = j.next.id.clone();
    stored(st, fx, *j);
    wake_waiting(st, fx, &id);
}

fn stored(st: &mut State, fx: &mut Effects, j: StoreJob) {
    let StoreJob { req, body, next, then, created, block_end, failed, .. } = j;
    if let Some(end) = block_end {
        if failed {
            st.producer_ids.not_stored();
        } else {
            st.producer_ids.stored(end);
        }
    }
    let id = next.id.clone();
    if failed {
        // Nothing changed: the id keeps its metadata (a new one is forgotten) and the
        // client retries. Markers that could not be completed are tried again.
        if created {
            st.txns.by_id.remove(&id);
        } else if let Some(e) = st.txns.by_id.get_mut(&id) {
            e.busy = false;
            if matches!(then, Then::Complete) {
                // The markers stand: the completion is stored again at the coordinator's next
                // look (with a new producer id picked again, if it moves to one), and only then
                // is the EndTxn answered, with what was stored.
                e.unstored = Some(Unstored { reply: req.zip(body) });
                retry_later(st, fx);
                return;
            }
        }
        if let (Some(req), Some(mut body)) = (req, body) {
            set_error(&mut body, ErrorCode::COORDINATOR_NOT_AVAILABLE);
            fx.respond(req, body);
        }
        if let Then::Batch { parent, index } = &then {
            batch_part_done(fx, *parent, *index, true);
        }
        if let Then::Resume(r) = then {
            return resume(st, fx, *r, false);
        }
        if matches!(then, Then::Complete | Then::Markers) {
            // A completion or a timed-out abort that could not be stored: the coordinator
            // tries again at its next look.
            retry_later(st, fx);
        }
        return;
    }
    let meta = next.clone();
    st.txns.by_id.insert(id.clone(), TxnEntry { meta: next, busy: false, unstored: None });
    // An EndTxn is answered once its markers are written, not now.
    let (req, body, end_txn) = match then {
        Then::MarkersThenReply => (None, None, req.zip(body)),
        _ => (req, body, None),
    };
    let reply = |fx: &mut Effects, code: Option<ErrorCode>| {
        if let (Some(req), Some(mut body)) = (req, body) {
            match &mut body {
                ResponseBody::InitProducerId(r) => (r.producer_id, r.producer_epoch) = (meta.producer_id, meta.epoch),
                ResponseBody::EndTxn(r) => (r.producer_id, r.producer_epoch) = (meta.producer_id, meta.epoch),
                _ => {}
            }
            if let Some(code) = code {
                set_error(&mut body, code);
            }
            fx.respond(req, body);
        }
    };
    match then {
        Then::Reply | Then::Complete => reply(fx, None),
        Then::FenceThenMarkers => {
            reply(fx, Some(ErrorCode::CONCURRENT_TRANSACTIONS));
            start_markers(st, fx, &id, None);
        }
        Then::MarkersThenReply => start_markers(st, fx, &id, end_txn),
        Then::Markers => start_markers(st, fx, &id, None),
        Then::Batch { parent, index } => batch_part_done(fx, parent, index, false),
        // First in line: ahead of the requests that waited while this one joined.
        Then::Resume(r) => st.txns.waiting.entry(id).or_default().push_front(*r),
    }
}

/// The coordinator looks again soon (a store that failed may be back).
fn retry_later(st: &State, fx: &mut Effects) {
    fx.arm(Timer::TxnTimeouts, st.now.mono + MARKER_RETRY);
}

/// InitProducerId with a transactional id.
pub(crate) fn init_producer_id(st: &mut State, fx: &mut Effects, req: Req, m: &InitProducerIdRequest, id: &KStr) {
    let mut resp = InitProducerIdResponse {
        producer_id: -1,
        producer_epoch: -1,
        ongoing_txn_producer_id: -1,
        ongoing_txn_producer_epoch: -1,
        ..Default::default()
    };
    let expected = match (m.producer_id, m.producer_epoch) {
        (-1, -1) => Ok(None),
        (pid, epoch) if pid < 0 || epoch < 0 => Err(ErrorCode::INVALID_REQUEST),
        (pid, epoch) => Ok(Some((pid, epoch))),
    };
    let now = st.now.wall_ms;
    let timeout = m.transaction_timeout_ms;
    let checked = expected.and_then(|expected| {
        if id.is_empty() {
            Err(ErrorCode::INVALID_REQUEST)
        } else if timeout <= 0 || timeout > st.cfg.transaction_max_timeout_ms {
            Err(ErrorCode::INVALID_TRANSACTION_TIMEOUT)
        } else if st.txns.by_id.get(id).is_some_and(|e| e.busy) {
            Err(ErrorCode::CONCURRENT_TRANSACTIONS)
        } else {
            Ok(expected)
        }
    });
    let expected = match checked {
        Ok(e) => e,
        Err(code) => {
            resp.error_code = fenced_for(code, req.version, 4).0;
            return fx.respond(req, ResponseBody::InitProducerId(resp));
        }
    };
    let mut block_end = None;
    let mut new_pid = |st: &mut State| match st.producer_ids.next() {
        NextId::Ready(pid) => pid,
        NextId::AfterStoring { id, block_end: end } => {
            block_end = Some(end);
            id
        }
    };
    let created = !st.txns.by_id.contains_key(id);
    let current = match st.txns.by_id.get(id) {
        Some(e) => e.meta.clone(),
        None => {
            let meta = TxnMeta::new(id.clone(), new_pid(st), timeout, now);
            st.txns.by_id.insert(id.clone(), TxnEntry { meta: meta.clone(), busy: true, unstored: None });
            meta
        }
    };
    let body = Some(ResponseBody::InitProducerId(resp));
    match current.init_producer_id(expected, timeout, now) {
        Err(code) => {
            if created {
                st.txns.by_id.remove(id);
            }
            let Some(ResponseBody::InitProducerId(mut resp)) = body else { return };
            resp.error_code = fenced_for(code, req.version, 4).0;
            fx.respond(req, ResponseBody::InitProducerId(resp));
        }
        Ok(InitPlan::Store(next)) => store_with(st, fx, (Some(req), body), next, Then::Reply, (created, block_end)),
        Ok(InitPlan::NewProducerId) => {
            let pid = new_pid(st);
            let next = current.rotated(pid, timeout, expected.is_some(), now);
            store_with(st, fx, (Some(req), body), next, Then::Reply, (created, block_end));
        }
        Ok(InitPlan::FenceAndAbort(next)) => {
            store_with(st, fx, (Some(req), body), next, Then::FenceThenMarkers, (created, block_end));
        }
    }
}

/// `id`'s entry for an EndTxn v5, whose producer and epoch [`TxnMeta::end_txn_v2`] checks
/// (a retry names the epoch before the bump).
fn entry_v2(st: &State, id: &KStr) -> Result<TxnMeta, ErrorCode> {
    if id.is_empty() {
        return Err(ErrorCode::INVALID_REQUEST);
    }
    let Some(e) = st.txns.by_id.get(id) else { return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING) };
    if e.busy && !e.meta.state.is_preparing() {
        return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
    }
    Ok(e.meta.clone())
}

/// Checks a request naming `(producer_id, epoch)` against `id`'s entry, in Kafka's order.
fn entry_for(st: &State, id: &KStr, producer: (i64, i16)) -> Result<TxnMeta, ErrorCode> {
    if id.is_empty() {
        return Err(ErrorCode::INVALID_REQUEST);
    }
    let Some(e) = st.txns.by_id.get(id) else { return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING) };
    e.meta.check_producer(producer.0, producer.1)?;
    if e.busy && !e.meta.state.is_preparing() {
        return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
    }
    Ok(e.meta.clone())
}

/// A batched AddPartitionsToTxn (v4+) waiting for the transactions it changes to be stored.
#[derive(Debug)]
pub(crate) struct BatchJob {
    req: Req,
    resp: AddPartitionsToTxnResponse,
    waiting: usize,
}

fn batch_part_done(fx: &mut Effects, parent: JobId, index: usize, failed: bool) {
    let Some(Job::TxnBatch(j)) = fx.jobs.get_mut(&parent) else { return };
    if failed && let Some(r) = j.resp.results_by_transaction.get_mut(index) {
        for p in r.topic_results.iter_mut().flat_map(|t| t.results_by_partition.iter_mut()) {
            p.partition_error_code = ErrorCode::COORDINATOR_NOT_AVAILABLE.0;
        }
    }
    j.waiting -= 1;
    if j.waiting == 0
        && let Some(Job::TxnBatch(j)) = fx.jobs.remove(&parent)
    {
        fx.respond(j.req, ResponseBody::AddPartitionsToTxn(j.resp));
    }
}

/// The partitions a transaction names: per topic its results (each NONE, or
/// TOPIC_AUTHORIZATION_FAILED for a topic not `writable`, or UNKNOWN_TOPIC_OR_PARTITION), and
/// the partitions that exist with their high watermark, or `None` when one is refused (Kafka
/// then attempts none: the others get OPERATION_NOT_ATTEMPTED).
fn resolve_partitions(
    st: &State,
    topics: &[AddPartitionsToTxnTopic],
    writable: impl Fn(&KStr) -> bool,
) -> (Vec<AddPartitionsToTxnTopicResult>, Option<Vec<(PartitionKey, i64)>>) {
    let mut results = Vec::new();
    let mut partitions = Vec::new();
    let mut failed = false;
    for t in topics {
        // An unauthorized topic's existence is not told.
        let authorized = writable(&t.name);
        let topic = st.topics.by_name(&t.name).filter(|_| authorized);
        let mut tr = AddPartitionsToTxnTopicResult { name: t.name.clone(), ..Default::default() };
        for &p in &t.partitions {
            let key = topic.map(|x| PartitionKey { topic_id: x.id, partition: p });
            let log = key.and_then(|k| st.topics.partition(k));
            match (key, log) {
                (Some(k), Some(log)) => partitions.push((k, log.hwm())),
                _ => failed = true,
            }
            let code = match log {
                _ if !authorized => ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                Some(_) => ErrorCode::NONE,
                None => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            };
            tr.results_by_partition.push(AddPartitionsToTxnPartitionResult {
                partition_index: p,
                partition_error_code: code.0,
                ..Default::default()
            });
        }
        results.push(tr);
    }
    if failed {
        for p in results.iter_mut().flat_map(|t| t.results_by_partition.iter_mut()) {
            if p.partition_error_code == ErrorCode::NONE.0 {
                p.partition_error_code = ErrorCode::OPERATION_NOT_ATTEMPTED.0;
            }
        }
        return (results, None);
    }
    (results, Some(partitions))
}

fn set_all(results: &mut [AddPartitionsToTxnTopicResult], code: ErrorCode) {
    for p in results.iter_mut().flat_map(|t| t.results_by_partition.iter_mut()) {
        p.partition_error_code = code.0;
    }
}

/// AddPartitionsToTxn v4+: several transactions, each adding partitions or (`verify_only`)
/// asking whether they are in it, as Kafka's partition leaders ask its coordinator.
fn add_partitions_batched(st: &mut State, fx: &mut Effects, req: Req, m: &AddPartitionsToTxnRequest) {
    let parent =
        fx.park(Job::TxnBatch(Box::new(BatchJob { req, resp: AddPartitionsToTxnResponse::default(), waiting: 1 })));
    let now = st.now.wall_ms;
    for (index, t) in m.transactions.iter().enumerate() {
        let producer = (t.producer_id, t.producer_epoch);
        let (mut results, partitions) = resolve_partitions(st, &t.topics, |_| true);
        if let Some(partitions) = partitions {
            if t.verify_only {
                let verdict = if t.transactional_id.is_empty() {
                    Err(ErrorCode::INVALID_REQUEST)
                } else {
                    st.txns.by_id.get(&t.transactional_id).map_or(Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING), |e| {
                        e.meta.check_producer(producer.0, producer.1).and_then(|()| {
                            if e.meta.state.is_preparing() {
                                Err(ErrorCode::CONCURRENT_TRANSACTIONS)
                            } else {
                                Ok(&e.meta)
                            }
                        })
                    })
                };
                match verdict {
                    Err(code) => set_all(&mut results, code),
                    Ok(meta) => {
                        // Not in the transaction: the producer must abort (v5 names it so).
                        let missing = if req.version >= 5 {
                            ErrorCode::TRANSACTION_ABORTABLE
                        } else {
                            ErrorCode::INVALID_TXN_STATE
                        };
                        let open = meta.state == TxnState::Ongoing;
                        for (r, (key, _)) in
                            results.iter_mut().flat_map(|t| t.results_by_partition.iter_mut()).zip(&partitions)
                        {
                            if !(open && meta.partitions.contains_key(key)) {
                                r.partition_error_code = missing.0;
                            }
                        }
                    }
                }
            } else {
                match entry_for(st, &t.transactional_id, producer)
                    .and_then(|meta| meta.add(producer, &partitions, &[], now))
                {
                    Ok(None) => {}
                    Ok(Some(next)) => {
                        if let Some(Job::TxnBatch(j)) = fx.jobs.get_mut(&parent) {
                            j.waiting += 1;
                        }
                        store(st, fx, None, None, next, Then::Batch { parent, index });
                    }
                    Err(code) => set_all(&mut results, code),
                }
            }
        }
        if let Some(Job::TxnBatch(j)) = fx.jobs.get_mut(&parent) {
            j.resp.results_by_transaction.push(AddPartitionsToTxnResult {
                transactional_id: t.transactional_id.clone(),
                topic_results: results,
                ..Default::default()
            });
        }
    }
    batch_part_done(fx, parent, usize::MAX, false);
}

/// AddPartitionsToTxn: one transaction's partitions (v0-v3, what clients send), or several
/// transactions' (v4+).
pub(crate) fn add_partitions(st: &mut State, fx: &mut Effects, req: Req, m: &AddPartitionsToTxnRequest) {
    if req.version >= 4 {
        // Only brokers send v4+ (their partition leaders verifying transactions): Kafka asks
        // them CLUSTER_ACTION and authorizes no transactional id or topic.
        if !st.allowed(&req, Operation::CLUSTER_ACTION, ResourceType::CLUSTER, CLUSTER_NAME) {
            let code = ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0;
            let resp = AddPartitionsToTxnResponse { error_code: code, ..Default::default() };
            return fx.respond(req, ResponseBody::AddPartitionsToTxn(resp));
        }
        return add_partitions_batched(st, fx, req, m);
    }
    let id = &m.v3_and_below_transactional_id;
    let producer = (m.v3_and_below_producer_id, m.v3_and_below_producer_epoch);
    if !st.allowed(&req, Operation::WRITE, ResourceType::TRANSACTIONAL_ID, id) {
        let (mut results, _) = resolve_partitions(st, &m.v3_and_below_topics, |_| true);
        set_all(&mut results, ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        let resp = AddPartitionsToTxnResponse { results_by_topic_v3_and_below: results, ..Default::default() };
        return fx.respond(req, ResponseBody::AddPartitionsToTxn(resp));
    }
    let writable = |topic: &KStr| st.allowed(&req, Operation::WRITE, ResourceType::TOPIC, topic);
    let (results, partitions) = resolve_partitions(st, &m.v3_and_below_topics, writable);
    let resp = AddPartitionsToTxnResponse { results_by_topic_v3_and_below: results, ..Default::default() };
    let Some(partitions) = partitions else {
        return fx.respond(req, ResponseBody::AddPartitionsToTxn(resp));
    };
    let now = st.now.wall_ms;
    let decided = entry_for(st, id, producer).and_then(|meta| meta.add(producer, &partitions, &[], now));
    answer_add(st, fx, req, ResponseBody::AddPartitionsToTxn(resp), decided);
}

/// Answers an AddPartitionsToTxn (v0-3) or AddOffsetsToTxn with what [`TxnMeta::add`]
/// decided: at once when nothing changes or it refused, after storing the change otherwise.
fn answer_add(
    st: &mut State,
    fx: &mut Effects,
    req: Req,
    mut body: ResponseBody,
    decided: Result<Option<TxnMeta>, ErrorCode>,
) {
    match decided {
        Ok(None) => fx.respond(req, body),
        Ok(Some(next)) => store(st, fx, Some(req), Some(body), next, Then::Reply),
        Err(code) => {
            set_error(&mut body, fenced_for(code, req.version, 2));
            fx.respond(req, body);
        }
    }
}

/// AddOffsetsToTxn: the group's offsets join the transaction.
pub(crate) fn add_offsets(st: &mut State, fx: &mut Effects, req: Req, m: &AddOffsetsToTxnRequest) {
    let producer = (m.producer_id, m.producer_epoch);
    let now = st.now.wall_ms;
    let decided = if !st.allowed(&req, Operation::WRITE, ResourceType::TRANSACTIONAL_ID, &m.transactional_id) {
        Err(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !st.allowed(&req, Operation::READ, ResourceType::GROUP, &m.group_id) {
        Err(ErrorCode::GROUP_AUTHORIZATION_FAILED)
    } else if m.group_id.is_empty() {
        Err(ErrorCode::INVALID_GROUP_ID)
    } else {
        entry_for(st, &m.transactional_id, producer)
            .and_then(|meta| meta.add(producer, &[], std::slice::from_ref(&m.group_id), now))
    };
    answer_add(st, fx, req, ResponseBody::AddOffsetsToTxn(AddOffsetsToTxnResponse::default()), decided);
}

/// The group-level check of a transactional commit (Kafka's `validateTransactionalOffsetCommit`):
/// a commit from outside the group (generation -1, no member) is accepted, and creates the
/// group's Empty record as a simple consumer's commit does; a member's must carry its
/// generation.
fn check_txn_commit_group(st: &mut State, m: &TxnOffsetCommitRequest) -> Result<(), ErrorCode> {
    if m.group_id.is_empty() {
        return Err(ErrorCode::INVALID_GROUP_ID);
    }
    if let Some(g) = st.groups.consumer.get(&m.group_id) {
        // A KIP-848 member's stale epoch is ILLEGAL_GENERATION here, as in Kafka.
        return g
            .validate_commit(&m.member_id, m.generation_id, 9)
            .map_err(|e| if e == ErrorCode::STALE_MEMBER_EPOCH { ErrorCode::ILLEGAL_GENERATION } else { e });
    }
    match st.groups.classic.get(&m.group_id) {
        Some(g) if m.generation_id >= 0 || !m.member_id.is_empty() || m.group_instance_id.is_some() => {
            g.validate_commit(&m.member_id, m.group_instance_id.as_ref(), m.generation_id)
        }
        Some(_) => Ok(()),
        None if m.generation_id < 0 => {
            let group = crate::group::classic::ClassicGroup::new(m.group_id.clone());
            st.groups.classic.insert(m.group_id.clone(), group);
            Ok(())
        }
        None => Err(ErrorCode::ILLEGAL_GENERATION),
    }
}

/// A TxnOffsetCommit waiting for its pending offsets to be stored.
#[derive(Debug)]
pub(crate) struct OffsetsJob {
    req: Req,
    resp: TxnOffsetCommitResponse,
    group: KStr,
    pid: i64,
    epoch: i16,
    offsets: Vec<PendingOffset>,
}

/// TxnOffsetCommit: offsets that the producer's transaction commits for a group when it
/// commits. They are stored as pending and become the group's committed offsets at the
/// COMMIT marker (dropped at ABORT).
///
/// Authorized first, as Kafka's `handleTxnOffsetCommitRequest`: WRITE on the transactional id
/// and READ on the group, or every partition is refused; then READ on each topic, whose
/// refused partitions are answered TOPIC_AUTHORIZATION_FAILED (first in the answer, as Kafka
/// puts them) while the others go on. With no topic left, the coordinator is not asked.
pub(crate) fn txn_offset_commit(st: &mut State, fx: &mut Effects, req: Req, m: &TxnOffsetCommitRequest) {
    if !st.allowed(&req, Operation::WRITE, ResourceType::TRANSACTIONAL_ID, &m.transactional_id) {
        let code = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return txn_offset_commit_refused(fx, req, m, code, Vec::new());
    }
    if !st.allowed(&req, Operation::READ, ResourceType::GROUP, &m.group_id) {
        return txn_offset_commit_refused(fx, req, m, ErrorCode::GROUP_AUTHORIZATION_FAILED, Vec::new());
    }
    let (topics, refused): (Vec<_>, Vec<_>) =
        m.topics.iter().cloned().partition(|t| st.allowed(&req, Operation::READ, ResourceType::TOPIC, &t.name));
    let denied: Vec<_> =
        refused.iter().map(|t| topic_refused(&t.name, &t.partitions, ErrorCode::TOPIC_AUTHORIZATION_FAILED)).collect();
    if topics.is_empty() && !denied.is_empty() {
        let resp = TxnOffsetCommitResponse { topics: denied, ..Default::default() };
        return fx.respond(req, ResponseBody::TxnOffsetCommit(resp));
    }
    commit_offsets(st, fx, req, &TxnOffsetCommitRequest { topics, ..m.clone() }, denied);
}

/// TxnOffsetCommit once authorized: `m` has the authorized topics, `denied` the results of
/// the others.
fn commit_offsets(
    st: &mut State,
    fx: &mut Effects,
    req: Req,
    m: &TxnOffsetCommitRequest,
    denied: Vec<TxnOffsetCommitResponseTopic>,
) {
    // v5 is transaction version 2's: the group joins the transaction implicitly.
    if req.version < 5 || m.group_id.is_empty() {
        return commit_offsets_joined(st, fx, req, m, denied);
    }
    let producer = (m.producer_id, m.producer_epoch);
    let r = Resume::TxnOffsetCommit(req, m.clone(), denied);
    // Given back: nothing to join, it goes on now; taken: it goes on (or is refused) later.
    if let Some(Resume::TxnOffsetCommit(req, _, denied)) =
        join(st, fx, &m.transactional_id, producer, (&[], std::slice::from_ref(&m.group_id)), r)
    {
        commit_offsets_joined(st, fx, req, m, denied);
    }
}

/// TxnOffsetCommit once authorized and, for v5, its group in the transaction.
fn commit_offsets_joined(
    st: &mut State,
    fx: &mut Effects,
    req: Req,
    m: &TxnOffsetCommitRequest,
    denied: Vec<TxnOffsetCommitResponseTopic>,
) {
    let producer = (m.producer_id, m.producer_epoch);
    let txn_error = match entry_for(st, &m.transactional_id, producer) {
        Ok(meta) if meta.state == TxnState::Ongoing && meta.groups.contains(&m.group_id) => None,
        Ok(_) => Some(ErrorCode::INVALID_TXN_STATE),
        Err(code) => Some(fenced_for(code, req.version, 2)),
    };
    let group_error = txn_error.or_else(|| check_txn_commit_group(st, m).err());
    let mut resp = TxnOffsetCommitResponse { topics: denied, ..Default::default() };
    let mut offsets = Vec::new();
    for t in &m.topics {
        let topic = st.topics.by_name(&t.name);
        let mut rt = TxnOffsetCommitResponseTopic { name: t.name.clone(), ..Default::default() };
        for p in &t.partitions {
            let exists =
                topic.is_some_and(|x| usize::try_from(p.partition_index).is_ok_and(|i| i < x.partitions.len()));
            let code = if let Some(code) = group_error {
                code
            } else if !exists {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            } else if p.committed_metadata.as_ref().is_some_and(|x| x.len() > st.cfg.offset_metadata_max_bytes) {
                ErrorCode::OFFSET_METADATA_TOO_LARGE
            } else {
                offsets.push(PendingOffset {
                    topic: t.name.clone(),
                    partition: p.partition_index,
                    value: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: Some(p.committed_metadata.clone().unwrap_or_default()),
                        commit_timestamp: st.now.wall_ms,
                    },
                });
                ErrorCode::NONE
            };
            rt.partitions.push(TxnOffsetCommitResponsePartition {
                partition_index: p.partition_index,
                error_code: code.0,
                ..Default::default()
            });
        }
        resp.topics.push(rt);
    }
    if offsets.is_empty() {
        return fx.respond(req, ResponseBody::TxnOffsetCommit(resp));
    }
    // What the transaction commits for the group, with these: stored whole under one key.
    let mut all = st.txns.pending.get(&(m.group_id.clone(), m.producer_id)).cloned().unwrap_or_default();
    merge_pending(&mut all, offsets.iter().cloned());
    let put = Command::Put { key: pending_key(&m.group_id, m.producer_id), value: Some(encode_pending(&all)) };
    let (group, pid) = (m.group_id.clone(), m.producer_id);
    let epoch = m.producer_epoch;
    let job = fx.park(Job::TxnOffsets(Box::new(OffsetsJob { req, resp, group, pid, epoch, offsets })));
    fx.storage(CmdOwner::Job { job, part: 0 }, put);
}

/// A TxnOffsetCommit topic's result: `code` for each of its partitions.
fn topic_refused(
    name: &KStr,
    partitions: &[TxnOffsetCommitRequestPartition],
    code: ErrorCode,
) -> TxnOffsetCommitResponseTopic {
    TxnOffsetCommitResponseTopic {
        name: name.clone(),
        partitions: partitions
            .iter()
            .map(|p| TxnOffsetCommitResponsePartition {
                partition_index: p.partition_index,
                error_code: code.0,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Answers every partition of `m` with `code`, after the topics `denied` at entry.
fn txn_offset_commit_refused(
    fx: &mut Effects,
    req: Req,
    m: &TxnOffsetCommitRequest,
    code: ErrorCode,
    denied: Vec<TxnOffsetCommitResponseTopic>,
) {
    let mut topics = denied;
    topics.extend(m.topics.iter().map(|t| topic_refused(&t.name, &t.partitions, code)));
    fx.respond(req, ResponseBody::TxnOffsetCommit(TxnOffsetCommitResponse { topics, ..Default::default() }));
}

pub(crate) fn offsets_stored(st: &mut State, fx: &mut Effects, job: JobId, result: &Completion) {
    let Some(Job::TxnOffsets(j)) = fx.jobs.remove(&job) else { return };
    let OffsetsJob { req, mut resp, group, pid, epoch, offsets } = *j;
    // The transaction may have ended while the offsets were stored (a timeout, or a new
    // producer with the id fenced this one): then they are not its any more.
    let still_open = st.txns.by_id.values().any(|e| {
        e.meta.producer_id == pid
            && e.meta.epoch == epoch
            && e.meta.state == TxnState::Ongoing
            && e.meta.groups.contains(&group)
    });
    if matches!(result, Completion::Done) && still_open {
        st.txns.add_pending(&group, pid, offsets);
    } else if matches!(result, Completion::Done) {
        let value = st.txns.pending.get(&(group.clone(), pid)).map(|all| encode_pending(all));
        let put = Command::Put { key: pending_key(&group, pid), value };
        fx.storage(CmdOwner::Job { job, part: 0 }, put);
        for t in &mut resp.topics {
            // Topics refused at entry keep their answer.
            for p in t.partitions.iter_mut().filter(|p| p.error_code != ErrorCode::TOPIC_AUTHORIZATION_FAILED.0) {
                p.error_code = ErrorCode::INVALID_PRODUCER_EPOCH.0;
            }
        }
    } else {
        for t in &mut resp.topics {
            for p in &mut t.partitions {
                if p.error_code == 0 {
                    p.error_code = ErrorCode::COORDINATOR_NOT_AVAILABLE.0;
                }
            }
        }
    }
    fx.respond(req, ResponseBody::TxnOffsetCommit(resp));
}

/// EndTxn: commit or abort.
pub(crate) fn end_txn(st: &mut State, fx: &mut Effects, req: Req, m: &EndTxnRequest) {
    let producer = (m.producer_id, m.producer_epoch);
    let now = st.now.wall_ms;
    // v5 is transaction version 2 (KIP-890 part 2): the epoch is bumped, and the answer
    // carries the producer id and epoch to go on with.
    let decided = if !st.allowed(&req, Operation::WRITE, ResourceType::TRANSACTIONAL_ID, &m.transactional_id) {
        Err(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if req.version >= 5 {
        entry_v2(st, &m.transactional_id).and_then(|meta| Ok((meta.end_txn_v2(producer, m.committed, now)?, meta)))
    } else {
        entry_for(st, &m.transactional_id, producer)
            .and_then(|meta| Ok((meta.end_txn(producer, m.committed, now)?, meta)))
    };
    let resp = EndTxnResponse { producer_id: -1, producer_epoch: -1, ..Default::default() };
    let mut body = ResponseBody::EndTxn(resp);
    match decided {
        Ok((EndPlan::AlreadyDone, meta)) => {
            if let ResponseBody::EndTxn(r) = &mut body {
                (r.producer_id, r.producer_epoch) = (meta.producer_id, meta.epoch);
            }
            fx.respond(req, body);
        }
        Ok((EndPlan::Store(mut next), _)) => {
            next.tv2 = req.version >= 5;
            store(st, fx, Some(req), Some(body), next, Then::MarkersThenReply);
        }
        Err(code) => {
            set_error(&mut body, fenced_for(code, req.version, 2));
            fx.respond(req, body);
        }
    }
}

/// Starts writing the markers of `id`'s transaction (its metadata is PrepareCommit or
/// PrepareAbort, stored); `reply` is answered once the transaction is complete.
///
/// Kafka's coordinator answers EndTxn once the decision is stored and writes the markers
/// after; a producer's next transaction then meets CONCURRENT_TRANSACTIONS and backs off
/// until they are written. kelp's markers are local appends, so EndTxn waits for them
/// instead: the producer sees one slightly longer commit and no back-off.
pub(crate) fn start_markers(st: &mut State, fx: &mut Effects, id: &KStr, reply: Option<(Req, ResponseBody)>) {
    let Some(e) = st.txns.by_id.get_mut(id) else { return };
    e.busy = true;
    let meta = e.meta.clone();
    debug_assert!(meta.state.is_preparing(), "markers for a transaction in {:?}", meta.state);
    let targets = meta
        .partitions
        .keys()
        .map(|k| TxnTarget::Partition(*k))
        .chain(meta.groups.iter().map(|g| TxnTarget::Group(g.clone())));
    let parts: Vec<MarkerPart> = targets
        .map(|target| MarkerPart {
            target,
            phase: Phase::Marker,
            outstanding: 0,
            failed: false,
            marker: None,
            aborted: None,
        })
        .collect();
    let n = parts.len();
    let job = fx.park(Job::TxnMarkers(Box::new(MarkersJob { reply, meta, parts, calls: Vec::new() })));
    for i in 0..n {
        send_part(st, fx, job, i);
    }
    maybe_complete(st, fx, job);
}

/// A fresh completion number of `job` for its part `i`.
fn call(fx: &mut Effects, job: JobId, i: usize) -> Option<usize> {
    let Some(Job::TxnMarkers(j)) = fx.jobs.get_mut(&job) else { return None };
    j.calls.push(i);
    j.parts[i].outstanding += 1;
    Some(j.calls.len() - 1)
}

/// Writes part `i` of a transaction's markers: the control batch of a partition (then its
/// aborted range), or a group's offsets.
fn send_part(st: &mut State, fx: &mut Effects, job: JobId, i: usize) {
    let Some(Job::TxnMarkers(j)) = fx.jobs.get_mut(&job) else { return };
    let commit = j.meta.state == TxnState::PrepareCommit;
    let (pid, epoch) = (j.meta.producer_id, j.meta.epoch);
    let p = &mut j.parts[i];
    p.failed = false;
    match (p.phase, p.target.clone()) {
        (Phase::Done, _) => {}
        (Phase::Range, TxnTarget::Partition(key)) => {
            let Some(a) = p.aborted else {
                p.phase = Phase::Done;
                return;
            };
            let put = Command::Put { key: aborted_key(key, &a), value: Some(encode_aborted(&a)) };
            if let Some(part) = call(fx, job, i) {
                fx.storage(CmdOwner::Job { job, part }, put);
            }
        }
        (_, TxnTarget::Group(group)) => {
            let pending = st.txns.pending.get(&(group.clone(), pid)).cloned().unwrap_or_default();
            let mut puts = Vec::new();
            // A group deleted meanwhile gets nothing (its offsets would come back at a restart).
            if commit && st.groups.exists(&group) {
                for o in &pending {
                    let key = offset_key(&group, &o.topic, o.partition);
                    puts.push(Command::Put { key, value: Some(encode_offset(&o.value)) });
                }
            }
            puts.push(Command::Put { key: pending_key(&group, pid), value: None });
            for put in puts {
                if let Some(part) = call(fx, job, i) {
                    fx.storage(CmdOwner::Job { job, part }, put);
                }
            }
        }
        (Phase::Marker, TxnTarget::Partition(key)) => {
            let Some(log) = st.topics.partition(key) else {
                // The topic was deleted: nothing to mark.
                p.phase = Phase::Done;
                return;
            };
            if let Some(m) = p.marker
                && !log.txns.is_open(pid)
            {
                // The marker stands (a failure after it was stored): wait for it to be visible.
                if log.hwm() > m {
                    p.phase = if p.aborted.is_some() { Phase::Range } else { Phase::Done };
                    return send_part(st, fx, job, i);
                }
                p.failed = true;
                fx.arm(Timer::TxnMarkers(job), st.now.mono + MARKER_RETRY);
                return;
            }
            if log.is_rewinding() {
                p.failed = true;
                fx.arm(Timer::TxnMarkers(job), st.now.mono + MARKER_RETRY);
                return;
            }
            let Some(part) = call(fx, job, i) else { return };
            let cmd = fx.reserve_cmd(CmdOwner::Append(key));
            let now = st.now.wall_ms;
            let Some(log) = st.topics.partition_mut(key) else { return };
            let offset = log.assign(cmd, 1, now);
            log.fence_producer(pid, epoch);
            let aborted = log.txns.end(pid, commit, offset);
            let kind = if commit { MarkerKind::Commit } else { MarkerKind::Abort };
            let batch = control_batch(kind, (pid, epoch), offset, log.leader_epoch(), now);
            if let Some(Job::TxnMarkers(j)) = fx.jobs.get_mut(&job) {
                (j.parts[i].marker, j.parts[i].aborted) = (Some(offset), aborted);
            }
            fx.emit_cmd(
                cmd,
                Command::Append {
                    partition: key,
                    base_offset: offset,
                    last_offset: offset,
                    max_timestamp: now,
                    batches: AppendBatches::from(batch),
                    recompress: None,
                },
            );
            // Done once durable and visible: below the high watermark.
            let w = HwmWaiter { target: offset + 1, durable: true, job, part };
            st.waiters.hwm.entry(key).or_default().push(w);
        }
    }
}

/// A command or wait of a markers job finished.
pub(crate) fn marker_done(st: &mut State, fx: &mut Effects, job: JobId, call_no: usize, result: &Completion) {
    let Some(Job::TxnMarkers(j)) = fx.jobs.get_mut(&job) else { return };
    let Some(&i) = j.calls.get(call_no) else { return };
    let p = &mut j.parts[i];
    p.outstanding = p.outstanding.saturating_sub(1);
    p.failed |= !matches!(result, Completion::Done);
    if p.outstanding > 0 {
        return;
    }
    if p.failed {
        fx.arm(Timer::TxnMarkers(job), st.now.mono + MARKER_RETRY);
        return;
    }
    match (p.phase, &p.target) {
        (Phase::Marker, TxnTarget::Partition(_)) if p.aborted.is_some() => {
            p.phase = Phase::Range;
            send_part(st, fx, job, i);
        }
        _ => p.phase = Phase::Done,
    }
    maybe_complete(st, fx, job);
}

/// Tries the failed parts of a markers job again.
pub(crate) fn retry_markers(st: &mut State, fx: &mut Effects, job: JobId) {
    let Some(Job::TxnMarkers(j)) = fx.jobs.get(&job) else { return };
    let failed: Vec<usize> = (0..j.parts.len()).filter(|&i| j.parts[i].failed && j.parts[i].outstanding == 0).collect();
    for i in failed {
        send_part(st, fx, job, i);
    }
    maybe_complete(st, fx, job);
}

/// Completes the transaction once every part is done.
fn maybe_complete(st: &mut State, fx: &mut Effects, job: JobId) {
    let Some(Job::TxnMarkers(j)) = fx.jobs.get(&job) else { return };
    if !j.parts.iter().all(|p| p.phase == Phase::Done) {
        return;
    }
    let Some(Job::TxnMarkers(j)) = fx.jobs.remove(&job) else { return };
    fx.cancel(&Timer::TxnMarkers(job));
    let commit = j.meta.state == TxnState::PrepareCommit;
    let pid = j.meta.producer_id;
    for g in &j.meta.groups {
        if let Some(pending) = st.txns.pending.remove(&(g.clone(), pid))
            && commit
            && st.groups.exists(g)
        {
            for o in pending {
                st.groups.offsets.set(g, &o.topic, o.partition, o.value);
            }
        }
    }
    store_completion(st, fx, &j.meta, j.reply);
}

/// Stores the completion of `meta`'s transaction, whose markers are all written (moving the
/// id to a new producer id when its epoch is exhausted), then answers `reply`.
fn store_completion(st: &mut State, fx: &mut Effects, meta: &TxnMeta, reply: Option<(Req, ResponseBody)>) {
    let now = st.now.wall_ms;
    let (req, body) = reply.map_or((None, None), |(r, b)| (Some(r), Some(b)));
    if meta.completes_on_new_producer_id() {
        let (new_pid, block_end) = next_producer_id(st);
        let done = meta.completed_on(new_pid, now);
        store_with(st, fx, (req, body), done, Then::Complete, (false, block_end));
    } else {
        store(st, fx, req, body, meta.completed(now), Then::Complete);
    }
}

/// A new producer id, and the end of a new block of them to store first, if one was begun.
fn next_producer_id(st: &mut State) -> (i64, Option<i64>) {
    match st.producer_ids.next() {
        NextId::Ready(pid) => (pid, None),
        NextId::AfterStoring { id, block_end } => (id, Some(block_end)),
    }
}

/// The coordinator's periodic look: aborts transactions past their timeout.
pub(crate) fn check_timeouts(st: &mut State, fx: &mut Effects) {
    let now = st.now.wall_ms;
    let expired: Vec<TxnMeta> =
        st.txns.by_id.values().filter(|e| !e.busy && e.meta.expired(now)).map(|e| e.meta.timed_out(now)).collect();
    for next in expired {
        store(st, fx, None, None, next, Then::Markers);
    }
    // Transactions left preparing finish now: a completion whose store failed is stored
    // again; markers that were not all written are written (again where they were lost).
    let stuck: Vec<KStr> =
        st.txns.by_id.values().filter(|e| !e.busy && e.meta.state.is_preparing()).map(|e| e.meta.id.clone()).collect();
    for id in stuck {
        let Some(e) = st.txns.by_id.get_mut(&id) else { continue };
        match e.unstored.take() {
            Some(Unstored { reply }) => {
                let meta = e.meta.clone();
                store_completion(st, fx, &meta, reply);
            }
            None => start_markers(st, fx, &id, None),
        }
    }
    arm(st, fx);
}

/// Arms the coordinator's periodic look.
pub(crate) fn arm(st: &State, fx: &mut Effects) {
    fx.arm(Timer::TxnTimeouts, st.now.mono + st.cfg.transaction_abort_interval);
}

/// DescribeTransactions.
pub(crate) fn describe(st: &mut State, fx: &mut Effects, req: Req, m: &DescribeTransactionsRequest) {
    let mut resp = DescribeTransactionsResponse::default();
    for id in &m.transactional_ids {
        let mut s = TransactionState { transactional_id: id.clone(), ..Default::default() };
        if !st.allowed(&req, Operation::DESCRIBE, ResourceType::TRANSACTIONAL_ID, id) {
            s.error_code = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0;
            resp.transaction_states.push(s);
            continue;
        }
        match st.txns.by_id.get(id).filter(|e| e.meta.state != TxnState::Dead) {
            None if id.is_empty() => s.error_code = ErrorCode::INVALID_REQUEST.0,
            None => s.error_code = ErrorCode::TRANSACTIONAL_ID_NOT_FOUND.0,
            Some(e) => {
                let meta = &e.meta;
                s.transaction_state = KStr::from_static(meta.state.name());
                s.transaction_timeout_ms = meta.timeout_ms;
                s.transaction_start_time_ms = meta.start_ms;
                s.producer_id = meta.producer_id;
                s.producer_epoch = meta.epoch;
                for key in meta.partitions.keys() {
                    let Some(topic) = st.topics.by_id(key.topic_id) else { continue };
                    // As Kafka: only topics the principal may describe are shown.
                    if !st.allowed(&req, Operation::DESCRIBE, ResourceType::TOPIC, &topic.name) {
                        continue;
                    }
                    match s.topics.iter_mut().find(|t| t.topic == topic.name) {
                        Some(t) => t.partitions.push(key.partition),
                        None => s.topics.push(TopicData {
                            topic: topic.name.clone(),
                            partitions: vec![key.partition],
                            ..Default::default()
                        }),
                    }
                }
            }
        }
        resp.transaction_states.push(s);
    }
    fx.respond(req, ResponseBody::DescribeTransactions(resp));
}

/// ListTransactions, with its state, producer id and duration filters.
pub(crate) fn list(st: &mut State, fx: &mut Effects, req: Req, m: &ListTransactionsRequest) {
    let mut resp = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &m.state_filters {
        match TxnState::from_name(name) {
            Some(s) => states.push(s),
            None => resp.unknown_state_filters.push(name.clone()),
        }
    }
    let only_unknown = !m.state_filters.is_empty() && states.is_empty();
    let now = st.now.wall_ms;
    for e in st.txns.by_id.values() {
        let meta = &e.meta;
        let keep = !only_unknown
            && meta.state != TxnState::Dead
            && (states.is_empty() || states.contains(&meta.state))
            && (m.producer_id_filters.is_empty() || m.producer_id_filters.contains(&meta.producer_id))
            && (m.duration_filter < 0 || (meta.start_ms >= 0 && now - meta.start_ms > m.duration_filter))
            // As Kafka: only the ids the principal may describe.
            && st.allowed(&req, Operation::DESCRIBE, ResourceType::TRANSACTIONAL_ID, &meta.id);
        if keep {
            resp.transaction_states.push(ListedState {
                transactional_id: meta.id.clone(),
                producer_id: meta.producer_id,
                transaction_state: KStr::from_static(meta.state.name()),
                ..Default::default()
            });
        }
    }
    fx.respond(req, ResponseBody::ListTransactions(resp));
}
