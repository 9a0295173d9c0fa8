//! Producer ids: InitProducerId for idempotent producers, and DescribeProducers.
//!
//! Ids come from [`crate::state::ProducerIds`], which hands them out from blocks reserved in
//! storage. A producer without a transactional id always gets a fresh id at epoch 0, as
//! Kafka's coordinator does.
//!
//! With the authorizer on, both check what Kafka's `KafkaApis` checks at entry (see
//! `init_refusal`; DescribeProducers: READ on each topic).

use bytes::Bytes;

use super::Then;
use super::{CmdOwner, Effects};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::describe_producers::{
    DescribeProducersRequest, DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use crate::codec::generated::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::codec::{ErrorCode, KStr};
use crate::io::{Command, PartitionKey};
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::state::State;
use crate::state::producer_ids::{BLOCK_KEY, NextId};

pub(crate) fn init_producer_id(st: &mut State, fx: &mut Effects, req: Req, m: &InitProducerIdRequest) {
    let mut resp = InitProducerIdResponse {
        producer_id: -1,
        producer_epoch: -1,
        ongoing_txn_producer_id: -1,
        ongoing_txn_producer_epoch: -1,
        ..Default::default()
    };
    if let Some(code) = init_refusal(st, &req, m) {
        resp.error_code = code.0;
        return fx.respond(req, ResponseBody::InitProducerId(resp));
    }
    if let Some(id) = &m.transactional_id {
        return super::txn::init_producer_id(st, fx, req, m, id);
    }
    let (id, block_end) = match st.producer_ids.next() {
        NextId::Ready(id) => (id, None),
        NextId::AfterStoring { id, block_end } => (id, Some(block_end)),
    };
    resp.producer_id = id;
    resp.producer_epoch = 0;
    let Some(end) = block_end else {
        return fx.respond(req, ResponseBody::InitProducerId(resp));
    };
    // Answer once the reservation covering the id is stored.
    let job = super::reply_after(st, fx, req, ResponseBody::InitProducerId(resp), 1, Then::ReserveProducerIds(end));
    let value = Bytes::copy_from_slice(&end.to_be_bytes());
    fx.storage(CmdOwner::Job { job, part: 0 }, Command::Put { key: Bytes::from_static(BLOCK_KEY), value: Some(value) });
}

/// Kafka's checks of InitProducerId: a transactional producer needs WRITE on its transactional
/// id; an idempotent one IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
fn init_refusal(st: &State, req: &Req, m: &InitProducerIdRequest) -> Option<ErrorCode> {
    match &m.transactional_id {
        Some(id) => (!st.allowed(req, Operation::WRITE, ResourceType::TRANSACTIONAL_ID, id))
            .then_some(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        None => (!st.allowed(req, Operation::IDEMPOTENT_WRITE, ResourceType::CLUSTER, CLUSTER_NAME)
            && !st.allowed_on_some(req, Operation::WRITE, ResourceType::TOPIC))
        .then_some(ErrorCode::CLUSTER_AUTHORIZATION_FAILED),
    }
}

pub(crate) fn finish_reserve(st: &mut State, job: &mut super::ReplyJob) {
    let Then::ReserveProducerIds(end) = job.then else { return };
    match (job.results[0], &mut job.body) {
        (None, _) => st.producer_ids.stored(end),
        (Some(e), ResponseBody::InitProducerId(resp)) => {
            resp.error_code = e.error_code().0;
            resp.producer_id = -1;
            resp.producer_epoch = -1;
            st.producer_ids.not_stored();
        }
        (Some(_), _) => {}
    }
}

pub(crate) fn describe_producers(st: &mut State, fx: &mut Effects, req: Req, m: &DescribeProducersRequest) {
    let mut resp = DescribeProducersResponse::default();
    for t in &m.topics {
        // Kafka: READ on the topic, else each partition is refused (existing or not).
        let denied = !st.allowed(&req, Operation::READ, ResourceType::TOPIC, &t.name);
        let topic = st.topics.by_name(&t.name).map(|x| x.id);
        let mut tr = TopicResponse { name: t.name.clone(), ..Default::default() };
        for &p in &t.partition_indexes {
            let mut pr = PartitionResponse { partition_index: p, ..Default::default() };
            if denied {
                pr.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0;
                pr.error_message = Some(KStr::from_static("Topic authorization failed."));
                tr.partitions.push(pr);
                continue;
            }
            match topic.and_then(|id| st.topics.partition(PartitionKey { topic_id: id, partition: p })) {
                None => pr.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                Some(log) => {
                    let mut active: Vec<ProducerState> = log
                        .producers()
                        .map(|(pid, epoch, last)| ProducerState {
                            producer_id: pid,
                            producer_epoch: i32::from(epoch),
                            last_sequence: last.map_or(-1, |l| l.last_sequence),
                            last_timestamp: last.map_or(-1, |l| l.timestamp),
                            coordinator_epoch: -1,
                            current_txn_start_offset: log.txns.first_offset(pid).unwrap_or(-1),
                            ..Default::default()
                        })
                        .collect();
                    active.sort_by_key(|s| s.producer_id);
                    pr.active_producers = active;
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    fx.respond(req, ResponseBody::DescribeProducers(resp));
}
