//! ListOffsets (earliest, latest, max-timestamp, and by-timestamp lookups through the store)
//! and OffsetForLeaderEpoch, answered from the partition's leader epoch history. A topic the
//! principal may not DESCRIBE has each partition answered TOPIC_AUTHORIZATION_FAILED, as Kafka does.

use super::{CmdOwner, Effects};
use crate::codec::ErrorCode;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::list_offsets::{
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use crate::codec::generated::offset_for_leader_epoch::{
    EpochEndOffset, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use crate::io::{Command, Completion, PartitionKey, TimestampOffset};
use crate::log::PartitionLog;
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::state::{JobId, State};

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// A list-offsets waiting for timestamp lookups.
#[derive(Debug)]
pub(crate) struct ListOffsetsJob {
    req: Req,
    resp: ListOffsetsResponse,
    /// Part -> (topic index, partition index, high watermark at request time, partition).
    parts: Vec<(usize, usize, i64, PartitionKey)>,
    pending: usize,
}

/// The leader-epoch check shared by fetch-like requests, as Kafka's leader makes it: a client
/// that knows an older epoch is fenced, one that knows a newer one has news the broker lacks;
/// -1 means "not known by the client".
pub(crate) fn epoch_error(current_leader_epoch: i32, log: &PartitionLog) -> Option<ErrorCode> {
    match current_leader_epoch {
        -1 => None,
        e if e > log.leader_epoch() => Some(ErrorCode::UNKNOWN_LEADER_EPOCH),
        e if e < log.leader_epoch() => Some(ErrorCode::FENCED_LEADER_EPOCH),
        _ => None,
    }
}

pub(crate) fn handle(st: &mut State, fx: &mut Effects, req: Req, m: ListOffsetsRequest) {
    let mut resp = ListOffsetsResponse::default();
    let mut lookups = Vec::new();
    for (ti, t) in m.topics.iter().enumerate() {
        // Kafka: DESCRIBE on the topic, else every partition is refused (existing or not).
        let denied = !st.allowed(&req, Operation::DESCRIBE, ResourceType::TOPIC, &t.name);
        let topic = st.topics.by_name(&t.name).map(|x| x.id).filter(|_| !denied);
        let mut tr = ListOffsetsTopicResponse { name: t.name.clone(), ..Default::default() };
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut pr = ListOffsetsPartitionResponse {
                partition_index: p.partition_index,
                timestamp: -1,
                offset: -1,
                leader_epoch: -1,
                ..Default::default()
            };
            let key = topic.map(|id| PartitionKey { topic_id: id, partition: p.partition_index });
            match key.and_then(|k| st.topics.partition(k).map(|l| (k, l))) {
                None if denied => pr.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0,
                None => pr.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                Some((_, log)) if epoch_error(p.current_leader_epoch, log).is_some() => {
                    pr.error_code = epoch_error(p.current_leader_epoch, log).unwrap_or(ErrorCode::NONE).0;
                }
                Some((k, log)) => match p.timestamp {
                    EARLIEST | EARLIEST_LOCAL => {
                        pr.offset = log.log_start();
                        pr.leader_epoch = log.epoch_at(pr.offset);
                    }
                    LATEST => {
                        // read_committed consumers start at the last stable offset.
                        pr.offset = if m.isolation_level == 1 { log.lso() } else { log.hwm() };
                        pr.leader_epoch = log.leader_epoch();
                    }
                    LATEST_TIERED => {}
                    MAX_TIMESTAMP => {
                        // The partition knows the batch with the largest timestamp, not which
                        // of its records has it; the first record at or after that timestamp
                        // is the one (Kafka 3.8+ answers its offset, KAFKA-16310).
                        let TimestampOffset { timestamp: ts, offset: off } = log.max_timestamp();
                        if off >= 0 && off < log.hwm() {
                            lookups.push((k, ts, ti, pi, log.hwm()));
                        }
                    }
                    ts => lookups.push((k, ts, ti, pi, log.hwm())),
                },
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if lookups.is_empty() {
        return fx.respond(req, ResponseBody::ListOffsets(resp));
    }
    let parts = lookups.iter().map(|(k, _, ti, pi, hwm)| (*ti, *pi, *hwm, *k)).collect();
    let job = fx.park(super::Job::ListOffsets(ListOffsetsJob { req, resp, parts, pending: lookups.len() }));
    for (part, (partition, timestamp, ..)) in lookups.into_iter().enumerate() {
        fx.storage(CmdOwner::Job { job, part }, Command::FindOffset { partition, timestamp });
    }
}

pub(crate) fn lookup_done(st: &State, fx: &mut Effects, job: JobId, part: usize, result: Completion) {
    let Some(super::Job::ListOffsets(j)) = fx.jobs.get_mut(&job) else { return };
    let (ti, pi, hwm, key) = j.parts[part];
    let epoch_of = |offset| st.topics.partition(key).map_or(-1, |l| l.epoch_at(offset));
    let pr = &mut j.resp.topics[ti].partitions[pi];
    match result {
        // Only records below the high watermark are visible.
        Completion::Offset { found: Some(TimestampOffset { timestamp: ts, offset }) } if offset < hwm => {
            (pr.offset, pr.timestamp) = (offset, ts);
            pr.leader_epoch = epoch_of(offset);
        }
        Completion::Offset { .. } => {}
        Completion::Failed(e) => pr.error_code = e.error_code().0,
        _ => pr.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.0,
    }
    j.pending -= 1;
    if j.pending == 0
        && let Some(super::Job::ListOffsets(j)) = fx.jobs.remove(&job)
    {
        fx.respond(j.req, ResponseBody::ListOffsets(j.resp));
    }
}

pub(crate) fn offset_for_leader_epoch(st: &mut State, fx: &mut Effects, req: Req, m: &OffsetForLeaderEpochRequest) {
    let mut resp = OffsetForLeaderEpochResponse::default();
    // Kafka (KIP-320): CLUSTER_ACTION on the cluster (brokers) or DESCRIBE on the topic (consumers).
    let cluster_action = st.allowed(&req, Operation::CLUSTER_ACTION, ResourceType::CLUSTER, CLUSTER_NAME);
    for t in &m.topics {
        let denied = !cluster_action && !st.allowed(&req, Operation::DESCRIBE, ResourceType::TOPIC, &t.topic);
        let topic = st.topics.by_name(&t.topic).map(|x| x.id).filter(|_| !denied);
        let mut tr = OffsetForLeaderTopicResult { topic: t.topic.clone(), ..Default::default() };
        for p in &t.partitions {
            let mut e =
                EpochEndOffset { partition: p.partition, leader_epoch: -1, end_offset: -1, ..Default::default() };
            let log = topic.and_then(|id| st.topics.partition(PartitionKey { topic_id: id, partition: p.partition }));
            match log {
                None if denied => e.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0,
                None => e.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                Some(log) if epoch_error(p.current_leader_epoch, log).is_some() => {
                    e.error_code = epoch_error(p.current_leader_epoch, log).unwrap_or(ErrorCode::NONE).0;
                }
                Some(log) => (e.leader_epoch, e.end_offset) = log.epoch_end(p.leader_epoch),
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    fx.respond(req, ResponseBody::OffsetForLeaderEpoch(resp));
}
