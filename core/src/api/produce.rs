//! Produce: validate each partition's batch as Kafka does, check idempotent producers'
//! sequences, assign offsets, and append. When the topic's `compression.type` asks for another
//! codec than the batch's, the append carries a [`Recompress`] and the store re-encodes the
//! batch before writing it (offsets assigned first, then one re-encoded batch, as Kafka's
//! `LogValidator` does), so that the CPU-heavy step runs on the store's thread or task, not on
//! the broker's request loop; a batch the re-encoding makes longer than `max.message.bytes`
//! fails there with MESSAGE_TOO_LARGE and nothing is stored (see
//! [`crate::io::StorageError::is_batch_fault`] for what the appends behind it get). A
//! compacted topic refuses records without a key (Kafka's
//! `LogValidator`), naming each one in `record_errors` (KIP-467). acks=1 answers once the store
//! holds the batch (Kafka's leader has written it); acks=-1 once it is below the high watermark,
//! durable and visible to fetchers (a single node's ISR is itself, and a store that
//! acknowledges before it is durable stands where the followers would: see
//! [`crate::log`]), or with REQUEST_TIMED_OUT, which clients retry, when the request's
//! `timeout_ms` runs out first. acks=0 answers nothing; an error then closes the connection, as
//! Kafka does, so that the client notices instead of losing data silently.
//!
//! With the authorizer on, Kafka's checks come first: transactional batches need WRITE on the
//! transactional id (else the whole request is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
//! and each topic needs WRITE (else its partitions get TOPIC_AUTHORIZATION_FAILED and the other
//! topics are still written).

use bytes::Bytes;

use super::{CmdOwner, Effects};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::produce::{
    BatchIndexAndErrorMessage, PartitionProduceData, PartitionProduceResponse, ProduceRequest, ProduceResponse,
    TopicProduceData, TopicProduceResponse,
};
use crate::codec::{ErrorCode, KStr, Uuid, Writer};
use crate::io::{AppendBatches, BatchSummary, CloseReason, Command, Completion, PartitionKey, Recompress};
use crate::log::SequenceCheck;
use crate::records::{BatchRecords, HEADER_LEN, RecordBatch, TimestampType, rewrite};
use crate::request::Req;
use crate::security::acl::{Operation, ResourceType};
use crate::state::{HwmWaiter, JobId, State};

/// A produce waiting for its appends to reach the high watermark.
#[derive(Debug)]
pub(crate) struct ProduceJob {
    req: Req,
    resp: ProduceResponse,
    /// Part -> (topic index, partition index) in `resp`, and whether it is answered.
    parts: Vec<(usize, usize, bool)>,
    waiting: usize,
}

/// What became of one partition's batch.
enum Outcome {
    /// Refused.
    Error(ErrorCode, Option<&'static str>),
    /// Refused as INVALID_RECORD for the records it names (KIP-467).
    Invalid(RecordErrors),
    /// Accepted (or a duplicate of an accepted batch): visible once the HWM reaches `visible_at`.
    Accepted { base_offset: i64, log_append_time: i64, visible_at: i64 },
}

pub(crate) fn handle(st: &mut State, fx: &mut Effects, req: Req, m: ProduceRequest) {
    if !transactional_id_authorized(st, &req, &m) {
        // Kafka refuses the whole request (every partition; acks=0: the connection closes).
        if m.acks == 0 {
            return acks0_failed(fx, &req);
        }
        return refuse_all(fx, req, &m, ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    // Produce v12+ is transaction version 2's: partitions join the transaction implicitly.
    let m = match (req.version >= 12 && m.acks != 0, m.transactional_id.clone()) {
        (true, Some(id)) => match joining(st, &req, &id, &m) {
            Some((producer, partitions)) => {
                let r = super::txn::Resume::Produce(req, m);
                match super::txn::join(st, fx, &id, producer, (&partitions, &[]), r) {
                    Some(super::txn::Resume::Produce(_, m)) => m,
                    _ => return,
                }
            }
            None => m,
        },
        _ => m,
    };
    let acks = m.acks;
    let mut resp = ProduceResponse::default();
    let mut waits: Vec<(PartitionKey, i64, usize, usize)> = Vec::new();
    let mut any_error = false;
    for (ti, td) in m.topic_data.into_iter().enumerate() {
        let topic_id = topic_id_of(st, req.version, &td);
        let denied = write_denied(st, &req, &td, topic_id);
        let mut tr = TopicProduceResponse { name: td.name.clone(), topic_id: td.topic_id, ..Default::default() };
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            let index = pd.index;
            let outcome = if denied {
                Outcome::Error(ErrorCode::TOPIC_AUTHORIZATION_FAILED, None)
            } else if !matches!(acks, -1..=1) {
                Outcome::Error(ErrorCode::INVALID_REQUIRED_ACKS, None)
            } else if req.version >= 13 && topic_id.and_then(|id| st.topics.by_id(id)).is_none() {
                // v13 names topics by id (KIP-516); Kafka answers an unknown one so.
                Outcome::Error(ErrorCode::UNKNOWN_TOPIC_ID, None)
            } else {
                append(st, fx, topic_id, m.transactional_id.as_ref(), pd)
            };
            let mut pr = PartitionProduceResponse {
                index,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            match outcome {
                Outcome::Error(ErrorCode::INVALID_RECORD, Some(msg)) => {
                    // A batch-level INVALID_RECORD names the batch's first record, as Kafka does.
                    any_error = true;
                    let msg = KStr::from_static(msg);
                    RecordErrors { message: msg.clone(), records: vec![(0, msg)] }.fill(&mut pr);
                }
                Outcome::Error(code, msg) => {
                    any_error = true;
                    pr.error_code = code.0;
                    pr.error_message = msg.map(KStr::from_static);
                }
                Outcome::Invalid(errors) => {
                    any_error = true;
                    errors.fill(&mut pr);
                }
                Outcome::Accepted { base_offset, log_append_time, visible_at } => {
                    pr.base_offset = base_offset;
                    pr.log_append_time_ms = log_append_time;
                    if let Some(id) = topic_id {
                        let key = PartitionKey { topic_id: id, partition: index };
                        pr.log_start_offset = st.topics.partition(key).map_or(-1, |p| p.log_start());
                        waits.push((key, visible_at, ti, pi));
                    }
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    if acks == 0 {
        if any_error {
            acks0_failed(fx, &req);
        } else {
            fx.respond_nothing(req);
        }
        return;
    }
    let job = fx.park(super::Job::Produce(ProduceJob { req, resp, parts: Vec::new(), waiting: 0 }));
    let durable = acks == -1;
    for (key, target, ti, pi) in waits {
        let reached = st.topics.partition(key).map_or(i64::MAX, |p| if durable { p.hwm() } else { p.stored() });
        if target <= reached {
            continue;
        }
        let Some(super::Job::Produce(j)) = fx.jobs.get_mut(&job) else { return };
        let part = j.parts.len();
        j.parts.push((ti, pi, false));
        j.waiting += 1;
        st.waiters.hwm.entry(key).or_default().push(HwmWaiter { target, durable, job, part });
    }
    if durable && m.timeout_ms > 0 && matches!(fx.jobs.get(&job), Some(super::Job::Produce(j)) if j.waiting > 0) {
        let timeout = crate::time::Duration::from_millis(i64::from(m.timeout_ms));
        fx.arm(super::Timer::ProduceTimeout(job), st.now.mono + timeout);
    }
    finish_if_done(fx, job);
}

/// An acks=0 produce failed somewhere: Kafka closes the connection, the only way to tell a
/// client that expects no answer.
fn acks0_failed(fx: &mut Effects, req: &Req) {
    fx.close(req.conn, CloseReason::Undecodable(crate::codec::DecodeError::Invalid("acks=0 produce failed")));
}

/// The topic a produce request's topic entry names: by id from v13 (KIP-516), by name before.
fn topic_id_of(st: &State, version: i16, td: &TopicProduceData) -> Option<Uuid> {
    if version >= 13 { Some(td.topic_id) } else { st.topics.by_name(&td.name).map(|t| t.id) }
}

/// Kafka's first check of a produce: a request carrying transactional batches (the first batch
/// of any partition says so, as in Kafka's `RequestUtils.hasTransactionalRecords`) needs WRITE
/// on its transactional id, and so must name one.
fn transactional_id_authorized(st: &State, req: &Req, m: &ProduceRequest) -> bool {
    if !st.authz.enabled || !has_transactional_records(m) {
        return true;
    }
    m.transactional_id.as_ref().is_some_and(|id| st.allowed(req, Operation::WRITE, ResourceType::TRANSACTIONAL_ID, id))
}

fn has_transactional_records(m: &ProduceRequest) -> bool {
    m.topic_data
        .iter()
        .flat_map(|td| &td.partition_data)
        .filter_map(|pd| pd.records.clone())
        .any(|mut records| RecordBatch::split_first(&mut records).is_ok_and(|b| b.is_transactional()))
}

/// Whether the principal may not write to the topic of `td` (WRITE on the topic, checked by
/// name whether or not it exists, so that a refusal does not tell). A topic id the broker does
/// not know (v13) is not checked: Kafka answers it UNKNOWN_TOPIC_ID first.
fn write_denied(st: &State, req: &Req, td: &TopicProduceData, topic_id: Option<Uuid>) -> bool {
    if !st.authz.enabled {
        return false;
    }
    let name = if req.version >= 13 {
        match topic_id.and_then(|id| st.topics.by_id(id)) {
            Some(t) => &t.name,
            None => return false,
        }
    } else {
        &td.name
    };
    !st.allowed(req, Operation::WRITE, ResourceType::TOPIC, name)
}

/// A producer id and epoch.
type ProducerEpoch = (i64, i16);

/// The producer of the transactional batches of `m`, and the partitions they go to (each with
/// its high watermark, a bound below the transaction's records there), when any are not yet
/// part of `id`'s open transaction, or when requests of `id` wait to join already. Batches that cannot be read, and partitions that do not
/// exist, are left to the request's own checks, and so are topics the principal may not write
/// to (Kafka adds only the authorized partitions to the transaction).
fn joining(st: &State, req: &Req, id: &KStr, m: &ProduceRequest) -> Option<(ProducerEpoch, Vec<(PartitionKey, i64)>)> {
    let meta = &st.txns.by_id.get(id)?.meta;
    let mut partitions = Vec::new();
    for td in &m.topic_data {
        let topic_id = topic_id_of(st, req.version, td);
        if write_denied(st, req, td, topic_id) {
            continue;
        }
        let Some(topic) = topic_id.and_then(|id| st.topics.by_id(id)) else { continue };
        for pd in &td.partition_data {
            let key = PartitionKey { topic_id: topic.id, partition: pd.index };
            let (Some(records), Some(log)) = (&pd.records, st.topics.partition(key)) else { continue };
            let mut rest = records.clone();
            let Ok(batch) = RecordBatch::split_first(&mut rest) else { continue };
            if batch.is_transactional()
                && (batch.producer_id(), batch.producer_epoch()) == (meta.producer_id, meta.epoch)
                && (meta.state != crate::txn::TxnState::Ongoing || !meta.partitions.contains_key(&key))
            {
                partitions.push((key, log.hwm()));
            }
        }
    }
    // Requests of the id already waiting to join go first.
    let queued = st.txns.waiting.get(id).is_some_and(|q| !q.is_empty());
    (!partitions.is_empty() || queued).then_some(((meta.producer_id, meta.epoch), partitions))
}

/// Answers every partition of `m` with `code` (the request could not go on).
pub(crate) fn refuse_all(fx: &mut Effects, req: Req, m: &ProduceRequest, code: ErrorCode) {
    let responses = m
        .topic_data
        .iter()
        .map(|td| TopicProduceResponse {
            name: td.name.clone(),
            topic_id: td.topic_id,
            partition_responses: td
                .partition_data
                .iter()
                .map(|pd| PartitionProduceResponse {
                    index: pd.index,
                    error_code: code.0,
                    base_offset: -1,
                    log_append_time_ms: -1,
                    log_start_offset: -1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    fx.respond(req, ResponseBody::Produce(ProduceResponse { responses, ..Default::default() }));
}

/// Validates and appends one partition's batch.
fn append(
    st: &mut State,
    fx: &mut Effects,
    topic_id: Option<Uuid>,
    transactional_id: Option<&KStr>,
    pd: PartitionProduceData,
) -> Outcome {
    match validate(st, topic_id, transactional_id, pd) {
        Ok(Checked::New(batch)) => assign(st, fx, batch),
        Ok(Checked::Duplicate(outcome)) | Err(outcome) => outcome,
    }
}

/// A batch that passed every check, ready for offsets.
struct ValidBatch {
    key: PartitionKey,
    records: Bytes,
    /// Records in the batch (last offset delta + 1).
    count: i64,
    /// The idempotent producer's id, epoch and sequences, when it has a producer id.
    producer: Option<ProducerSeq>,
    /// Whether the batch belongs to a transaction (of `producer`).
    transactional: bool,
    /// The batch's largest record timestamp (CreateTime).
    max_timestamp: i64,
    /// Whether the topic stamps the broker's time on records.
    log_append_time: bool,
    /// The topic's codec, when the batch is in another one: the store re-encodes it.
    recompress: Option<Recompress>,
}

/// An idempotent producer's batch: who sent it and the sequences it covers.
struct ProducerSeq {
    id: i64,
    epoch: i16,
    base_sequence: i32,
    last_sequence: i32,
}

/// What validation found.
enum Checked {
    /// A batch to append.
    New(ValidBatch),
    /// A retry of a batch already appended: answered as the original was.
    Duplicate(Outcome),
}

fn refuse(code: ErrorCode, msg: &'static str) -> Outcome {
    Outcome::Error(code, Some(msg))
}

/// The records of a batch refused as INVALID_RECORD: the partition's message, and each
/// offending record's index in the batch with its own message.
struct RecordErrors {
    message: KStr,
    records: Vec<(i32, KStr)>,
}

impl RecordErrors {
    /// The records of a batch for a compacted topic that have no key, if any, with Kafka's
    /// messages (`LogValidator.validateKey`, then `processRecordErrors`, which lists at most
    /// three in the partition's message).
    fn keyless(records: &BatchRecords, topic: &str, partition: i32) -> Option<Self> {
        // The records were walked by `validate_full`'s checks already; one that fails to parse
        // here cannot occur and is not counted.
        let missing: Vec<i32> = (0..)
            .zip(records.iter())
            .filter_map(|(i, r)| r.ok().filter(|r| r.key_slice().is_none()).map(|_| i))
            .collect();
        if missing.is_empty() {
            return None;
        }
        let each = KStr::from(format!(
            "Compacted topic cannot accept message without key in topic partition {topic}-{partition}"
        ));
        let shown: Vec<String> =
            missing.iter().take(3).map(|i| format!("RecordError(batchIndex={i}, message='{each}')")).collect();
        let message = KStr::from(format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first \
             three errors at most: [{}]",
            missing.len(),
            shown.join(", ")
        ));
        Some(Self { message, records: missing.into_iter().map(|i| (i, each.clone())).collect() })
    }

    /// The records whose key or value fails the topic's schema validation, if any: each with
    /// why, and the partition's message listing at most three, as for keyless records.
    fn schemas(
        st: &State,
        records: &BatchRecords,
        topic: &str,
        settings: &crate::topics::TopicSettings,
    ) -> Option<Self> {
        use crate::schemas::{Field, check_field};
        let catalog = st.schemas.as_deref();
        let mut failed: Vec<(i32, KStr)> = Vec::new();
        for (i, r) in (0..).zip(records.iter()) {
            // Walked by `validate_full` already: a record that fails to parse cannot occur.
            let Ok(r) = r else { continue };
            let fields = [
                (Field::Key, settings.key_validation, r.key_slice()),
                (Field::Value, settings.value_validation, r.value_slice()),
            ];
            let why: Vec<String> = fields
                .into_iter()
                .filter_map(|(field, validation, data)| check_field(catalog, topic, field, validation?, data?).err())
                .collect();
            if !why.is_empty() {
                failed.push((i, KStr::from(why.join("; "))));
            }
        }
        if failed.is_empty() {
            return None;
        }
        let shown: Vec<String> =
            failed.iter().take(3).map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')")).collect();
        let message = KStr::from(format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first \
             three errors at most: [{}]",
            failed.len(),
            shown.join(", ")
        ));
        Some(Self { message, records: failed })
    }

    /// Writes the refusal into a partition's response (`record_errors` is sent from v8).
    fn fill(self, pr: &mut PartitionProduceResponse) {
        pr.error_code = ErrorCode::INVALID_RECORD.0;
        pr.error_message = Some(self.message);
        pr.record_errors = self
            .records
            .into_iter()
            .map(|(batch_index, msg)| BatchIndexAndErrorMessage {
                batch_index,
                batch_index_error_message: Some(msg),
                ..Default::default()
            })
            .collect();
    }
}

/// Kafka's checks on a produced batch, in Kafka's order; reads the state, changes nothing.
fn validate(
    st: &State,
    topic_id: Option<Uuid>,
    transactional_id: Option<&KStr>,
    pd: PartitionProduceData,
) -> Result<Checked, Outcome> {
    let unknown = Outcome::Error(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, None);
    let Some(topic) = topic_id.and_then(|id| st.topics.by_id(id)) else { return Err(unknown) };
    let settings = &topic.settings;
    let key = PartitionKey { topic_id: topic.id, partition: pd.index };
    let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
        return Err(refuse(ErrorCode::INVALID_RECORD, "the partition's record set is empty"));
    };
    let Some(part) = st.topics.partition(key) else { return Err(unknown) };
    if records.len() > usize::try_from(settings.max_message_bytes).unwrap_or(0) {
        return Err(Outcome::Error(ErrorCode::MESSAGE_TOO_LARGE, None));
    }
    let (batch, decoded) = single_batch(&records, st.cfg.max_decompressed_batch)?;
    if !settings.log_append_time && batch.timestamp_type() == TimestampType::CreateTime {
        let now = st.now.wall_ms;
        let early = now.saturating_sub(settings.timestamp_before_max_ms);
        let late = now.saturating_add(settings.timestamp_after_max_ms);
        if batch.base_timestamp() < early || batch.max_timestamp() > late {
            return Err(refuse(
                ErrorCode::INVALID_TIMESTAMP,
                "a record timestamp is outside the topic's allowed range",
            ));
        }
    }
    if settings.cleanup_compact
        && let Some(errors) = RecordErrors::keyless(&decoded, &topic.name, pd.index)
    {
        return Err(Outcome::Invalid(errors));
    }
    if settings.key_validation.is_some() || settings.value_validation.is_some() {
        if st.schemas.as_ref().is_some_and(|c| !c.ready()) {
            // Retried by clients: the registry is still reading its state.
            return Err(refuse(ErrorCode::REQUEST_TIMED_OUT, "the schema registry is still loading its schemas"));
        }
        if let Some(errors) = RecordErrors::schemas(st, &decoded, &topic.name, settings) {
            return Err(Outcome::Invalid(errors));
        }
    }
    if part.is_rewinding() {
        return Err(Outcome::Error(ErrorCode::NOT_LEADER_OR_FOLLOWER, None));
    }
    let (producer_id, epoch, base_seq) = (batch.producer_id(), batch.producer_epoch(), batch.base_sequence());
    if batch.is_transactional() {
        check_transaction(st, transactional_id, key, producer_id, epoch)?;
    } else if producer_id >= 0 && part.txns.is_open(producer_id) {
        // Kafka's ProducerAppendInfo: a producer with a transaction open here writes only
        // transactional batches until it ends.
        return Err(refuse(ErrorCode::INVALID_TXN_STATE, "expected a transactional write from this producer"));
    }
    let mut producer = None;
    if producer_id >= 0 {
        let last_seq = seq_add(base_seq, batch.last_offset_delta());
        match part.check_sequence(producer_id, epoch, base_seq, last_seq) {
            SequenceCheck::Append => {
                producer =
                    Some(ProducerSeq { id: producer_id, epoch, base_sequence: base_seq, last_sequence: last_seq });
            }
            SequenceCheck::Duplicate(orig) => {
                return Ok(Checked::Duplicate(Outcome::Accepted {
                    base_offset: orig.base_offset,
                    // The original's append time (its summary keeps it as the timestamp).
                    log_append_time: if settings.log_append_time { orig.timestamp } else { -1 },
                    visible_at: orig.last_offset + 1,
                }));
            }
            SequenceCheck::Reject(code) => return Err(Outcome::Error(code, None)),
        }
    }
    // Kafka checks the size again after recompression (RecordTooLargeException): the store
    // does, as it re-encodes.
    let recompress = settings.compression.filter(|codec| batch.compression() != Ok(*codec)).map(|codec| Recompress {
        codec,
        level: settings.compression_level,
        max_batch_bytes: usize::try_from(settings.max_message_bytes).unwrap_or(0),
        max_decompressed: st.cfg.max_decompressed_batch,
    });
    Ok(Checked::New(ValidBatch {
        key,
        count: i64::from(batch.last_offset_delta()) + 1,
        producer,
        transactional: batch.is_transactional(),
        max_timestamp: batch.max_timestamp(),
        log_append_time: settings.log_append_time,
        records,
        recompress,
    }))
}

/// The one record batch a v3+ partition's data must be, checked in full, and its records
/// (decompressed once, for the checks that read them).
fn single_batch(records: &Bytes, max_decompressed: usize) -> Result<(RecordBatch, BatchRecords), Outcome> {
    let mut rest = records.clone();
    let batch = RecordBatch::split_first(&mut rest).map_err(|e| Outcome::Error(e.error_code(), None))?;
    if !rest.is_empty() {
        return Err(refuse(ErrorCode::INVALID_RECORD, "produce requests v3+ must hold exactly one record batch"));
    }
    // `validate_full`, keeping the decoded records.
    let corrupt = |e: crate::records::RecordsError| Outcome::Error(e.error_code(), None);
    batch.validate().map_err(corrupt)?;
    let decoded = batch.records(max_decompressed).map_err(corrupt)?;
    decoded.validate().map_err(corrupt)?;
    if batch.records_count() <= 0 {
        return Err(refuse(ErrorCode::INVALID_RECORD, "a produced batch must hold at least one record"));
    }
    if batch.is_control() {
        return Err(refuse(ErrorCode::INVALID_RECORD, "clients may not produce control batches"));
    }
    Ok((batch, decoded))
}

/// The coordinator's side of a transactional batch (KIP-890's defence, which Kafka's
/// partition leader asks the coordinator for): the producer is the transactional id's current
/// one and the partition was added to its open transaction.
fn check_transaction(
    st: &State,
    transactional_id: Option<&KStr>,
    key: PartitionKey,
    producer_id: i64,
    epoch: i16,
) -> Result<(), Outcome> {
    let Some(id) = transactional_id else {
        return Err(refuse(ErrorCode::INVALID_TXN_STATE, "a transactional batch needs the request's transactional id"));
    };
    let Some(entry) = st.txns.by_id.get(id) else {
        return Err(Outcome::Error(ErrorCode::INVALID_PRODUCER_ID_MAPPING, None));
    };
    let meta = &entry.meta;
    if meta.producer_id != producer_id {
        return Err(Outcome::Error(ErrorCode::INVALID_PRODUCER_ID_MAPPING, None));
    }
    if meta.epoch != epoch {
        return Err(Outcome::Error(ErrorCode::INVALID_PRODUCER_EPOCH, None));
    }
    if meta.state != crate::txn::TxnState::Ongoing || !meta.partitions.contains_key(&key) {
        return Err(refuse(ErrorCode::INVALID_TXN_STATE, "Partition was not added to the transaction"));
    }
    Ok(())
}

/// Assigns a validated batch its offsets and sends the append.
fn assign(st: &mut State, fx: &mut Effects, batch: ValidBatch) -> Outcome {
    let now = st.now.wall_ms;
    let max_timestamp = if batch.log_append_time { now } else { batch.max_timestamp };
    let cmd = fx.reserve_cmd(CmdOwner::Append(batch.key));
    let Some(part) = st.topics.partition_mut(batch.key) else {
        return Outcome::Error(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, None);
    };
    let base_offset = part.assign(cmd, batch.count, max_timestamp);
    let leader_epoch = part.leader_epoch();
    let last_offset = base_offset + batch.count - 1;
    if let Some(p) = &batch.producer
        && batch.transactional
    {
        part.txns.begin(p.id, base_offset);
    }
    if let Some(p) = batch.producer {
        part.remember(BatchSummary {
            producer_id: p.id,
            producer_epoch: p.epoch,
            base_sequence: p.base_sequence,
            last_sequence: p.last_sequence,
            base_offset,
            last_offset,
            timestamp: max_timestamp,
        });
    }
    let batches = stamp(&batch.records, base_offset, leader_epoch, batch.log_append_time.then_some(now));
    let recompress = batch.recompress;
    fx.emit_cmd(
        cmd,
        Command::Append { partition: batch.key, base_offset, last_offset, max_timestamp, batches, recompress },
    );
    Outcome::Accepted {
        base_offset,
        log_append_time: if batch.log_append_time { now } else { -1 },
        visible_at: last_offset + 1,
    }
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0.
fn seq_add(seq: i32, delta: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(delta);
    i32::try_from(sum % (i64::from(i32::MAX) + 1)).unwrap_or(0)
}

/// The batch as stored: its base offset and the partition's leader epoch set (outside the
/// CRC), and for LogAppendTime topics the broker's time (which the CRC covers, so it is
/// recomputed). Only the header is copied and rewritten; the records after it go to the store
/// as the slice of the request they arrived in.
fn stamp(records: &Bytes, base_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) -> AppendBatches {
    // The batch was parsed and validated above (exactly one, whole), so this cannot fail; the
    // result is still checked rather than assumed.
    let head = rewrite::stamped_header(records, base_offset, leader_epoch, log_append_time);
    let Ok(head) = head else { panic!("rewriting a validated batch failed: {head:?}") };
    AppendBatches { head: Bytes::copy_from_slice(&head), body: records.slice(HEADER_LEN..) }
}

/// One partition's append became visible (or failed).
pub(crate) fn part_done(fx: &mut Effects, job: JobId, part: usize, result: Completion) {
    let Some(super::Job::Produce(j)) = fx.jobs.get_mut(&job) else { return };
    let Some((ti, pi, answered)) = j.parts.get_mut(part) else { return };
    if *answered {
        return;
    }
    *answered = true;
    if let Completion::Failed(e) = result {
        fail_part(&mut j.resp.responses[*ti].partition_responses[*pi], e.error_code());
    }
    j.waiting -= 1;
    finish_if_done(fx, job);
}

fn fail_part(pr: &mut PartitionProduceResponse, code: ErrorCode) {
    pr.error_code = code.0;
    pr.base_offset = -1;
    pr.log_append_time_ms = -1;
}

/// An acks=-1 produce's `timeout_ms` ran out: the partitions whose records are not durable yet
/// get REQUEST_TIMED_OUT (Kafka's answer when the ISR does not acknowledge in time; clients
/// retry it, and an idempotent retry of a batch that was stored is answered as a duplicate).
/// Their waiters stay behind and find the job gone.
pub(crate) fn timed_out(fx: &mut Effects, job: JobId) {
    let Some(super::Job::Produce(j)) = fx.jobs.get_mut(&job) else { return };
    for (ti, pi, answered) in &mut j.parts {
        if !*answered {
            *answered = true;
            fail_part(&mut j.resp.responses[*ti].partition_responses[*pi], ErrorCode::REQUEST_TIMED_OUT);
        }
    }
    j.waiting = 0;
    finish_if_done(fx, job);
}

fn finish_if_done(fx: &mut Effects, job: JobId) {
    if !matches!(fx.jobs.get(&job), Some(super::Job::Produce(j)) if j.waiting == 0) {
        return;
    }
    let Some(super::Job::Produce(j)) = fx.jobs.remove(&job) else { return };
    fx.cancel(&super::Timer::ProduceTimeout(job));
    fx.respond(j.req, ResponseBody::Produce(j.resp));
}

/// Produce v0-v2 (message formats Kafka 4 dropped): every partition gets UNSUPPORTED_VERSION.
/// The generated codec does not carry those versions, so this reads the few fields it needs
/// (v0-v2 share one request layout) and writes the v0-v2 response by hand.
pub(crate) fn legacy_version(fx: &mut Effects, req: Req, body: &Bytes) {
    match legacy_response(body, req.version) {
        Some(resp) => fx.respond_raw(req, resp),
        None => {
            fx.close(req.conn, CloseReason::Undecodable(crate::codec::DecodeError::Invalid("produce v0-v2 request")))
        }
    }
}

fn legacy_response(body: &Bytes, version: i16) -> Option<Bytes> {
    let mut r = crate::codec::Reader::new(body);
    let _acks = r.i16("acks").ok()?;
    let _timeout = r.i32("timeout").ok()?;
    let topics = r.array(false, 6, "topics", |r| {
        let name = r.string(false, "topic")?;
        let parts = r.array(false, 8, "partitions", |r| {
            let p = r.i32("partition")?;
            r.nullable_bytes(false, "records")?;
            Ok(p)
        })?;
        Ok((name, parts))
    });
    let topics = topics.ok()?;
    let mut w = Writer::default();
    w.array_len(false, Some(topics.len()));
    for (name, parts) in &topics {
        w.string(false, name);
        w.array_len(false, Some(parts.len()));
        for p in parts {
            w.i32(*p);
            w.i16(ErrorCode::UNSUPPORTED_VERSION.0);
            w.i64(-1);
            if version >= 2 {
                w.i64(-1);
            }
        }
    }
    if version >= 1 {
        w.i32(0);
    }
    Some(w.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(seq_add(5, 4), 9);
        assert_eq!(seq_add(i32::MAX, 0), i32::MAX);
        assert_eq!(seq_add(i32::MAX, 1), 0);
        assert_eq!(seq_add(i32::MAX - 1, 3), 1);
    }
}
