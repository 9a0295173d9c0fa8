//! Producer ids: InitProducerId for idempotent producers, and DescribeProducers.
//!
//! Ids are handed out from blocks reserved in storage (Kafka does the same through its
//! controller), so an id is never given twice, also across restarts. A producer without a
//! transactional id always gets a fresh id at epoch 0, as Kafka's coordinator does.

use bytes::Bytes;

use crate::broker::{Broker, CmdOwner, Req, Topic};
use crate::codec::ErrorCode;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::describe_producers::{
    DescribeProducersRequest, DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use crate::codec::generated::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};
use crate::io::{Command, PartitionKey};

/// Producer ids reserved per storage write.
pub const BLOCK: i64 = 1000;
/// The storage key of the end of the last reserved block.
pub const BLOCK_KEY: &[u8] = b"kelp/producer-id-block";

/// Producer id allocation.
#[derive(Debug, Default)]
pub struct ProducerIds {
    next: i64,
    /// End (exclusive) of the ids reserved, stored or being stored.
    reserved_end: i64,
    /// End (exclusive) of the ids whose reservation is stored: only these are handed out
    /// without waiting, so no id is ever given twice, even across a crash.
    durable_end: i64,
}

impl ProducerIds {
    /// Continues after everything handed out before a restart: past the last reserved
    /// block and past every producer id found in the logs.
    pub fn recover<'a>(&mut self, values: &[(Bytes, Bytes)], topics: impl Iterator<Item = &'a Topic>) {
        let stored = values
            .iter()
            .find(|(k, _)| k.as_ref() == BLOCK_KEY)
            .and_then(|(_, v)| v.first_chunk::<8>().map(|b| i64::from_be_bytes(*b)))
            .unwrap_or(0);
        let seen = topics
            .flat_map(|t| t.partitions.iter())
            .flat_map(|p| p.producers().map(|(pid, _, _)| pid + 1))
            .max()
            .unwrap_or(0);
        self.next = stored.max(seen);
        self.reserved_end = self.next;
        self.durable_end = self.next;
    }
}

pub(crate) fn init_producer_id(b: &mut Broker, req: Req, m: &InitProducerIdRequest) {
    let mut resp = InitProducerIdResponse {
        producer_id: -1,
        producer_epoch: -1,
        ongoing_txn_producer_id: -1,
        ongoing_txn_producer_epoch: -1,
        ..Default::default()
    };
    if m.transactional_id.is_some() {
        // Transactions are not served yet; refuse clearly rather than pretend.
        resp.error_code = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0;
        return b.respond(req, &ResponseBody::InitProducerId(resp));
    }
    let ids = &mut b.producer_ids;
    let id = ids.next;
    ids.next += 1;
    resp.producer_id = id;
    resp.producer_epoch = 0;
    if id < ids.durable_end {
        return b.respond(req, &ResponseBody::InitProducerId(resp));
    }
    // Not covered by a stored reservation yet: reserve (or re-store the reservation in
    // flight, which is idempotent) and answer once it is stored.
    if id >= ids.reserved_end {
        ids.reserved_end = id + BLOCK;
    }
    let end = ids.reserved_end;
    let job = super::reply_after(b, req, ResponseBody::InitProducerId(resp), 1, finish_reserve);
    if let Some(super::Job::Reply(r)) = b.jobs.get_mut(&job) {
        r.num = end;
    }
    let value = Bytes::copy_from_slice(&end.to_be_bytes());
    b.storage(CmdOwner::Job { job, part: 0 }, Command::Put { key: Bytes::from_static(BLOCK_KEY), value: Some(value) });
}

fn finish_reserve(b: &mut Broker, job: &mut super::ReplyJob) {
    let ids = &mut b.producer_ids;
    match (job.results[0], &mut job.body) {
        (None, _) => ids.durable_end = ids.durable_end.max(job.num),
        (Some(e), ResponseBody::InitProducerId(resp)) => {
            resp.error_code = e.error_code().0;
            resp.producer_id = -1;
            resp.producer_epoch = -1;
            // The block was not stored: the next request reserves afresh.
            ids.reserved_end = ids.durable_end;
        }
        (Some(_), _) => {}
    }
}

pub(crate) fn describe_producers(b: &mut Broker, req: Req, m: &DescribeProducersRequest) {
    let mut resp = DescribeProducersResponse::default();
    for t in &m.topics {
        let topic = b.topic_by_name(&t.name).map(|x| x.id);
        let mut tr = TopicResponse { name: t.name.clone(), ..Default::default() };
        for &p in &t.partition_indexes {
            let mut pr = PartitionResponse { partition_index: p, ..Default::default() };
            match topic.and_then(|id| b.partition(PartitionKey { topic_id: id, partition: p })) {
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
                            current_txn_start_offset: -1,
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
    b.respond(req, &ResponseBody::DescribeProducers(resp));
}
