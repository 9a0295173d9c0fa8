//! Request handlers, one module per API family, and the jobs they park while storage works.
//!
//! A handler either answers at once (`Broker::respond`) or parks a [`Job`] whose parts are
//! storage commands or high-watermark waits; [`job_completed`] resumes it. Handlers never do
//! IO and never block.

pub mod admin;
pub mod api_versions;
pub mod consumer;
pub mod fetch;
pub mod group;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer;

use crate::broker::{Broker, JobId, Req};
use crate::codec::generated::{RequestBody, ResponseBody};
use crate::codec::{ApiKey, KStr, Uuid};
use crate::io::{Completion, PartitionKey, StorageError};

/// The APIs this broker answers, with the versions it serves (what ApiVersions advertises).
/// Produce is listed from v0 although v0-v2 get UNSUPPORTED_VERSION, as Kafka 4 does: older
/// librdkafka refuses to produce to a broker that does not list v0.
pub const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::PRODUCE, 0, 13),
    (ApiKey::FETCH, 4, 18),
    (ApiKey::LIST_OFFSETS, 1, 10),
    (ApiKey::METADATA, 0, 13),
    (ApiKey::API_VERSIONS, 0, 4),
    (ApiKey::CREATE_TOPICS, 2, 7),
    (ApiKey::DELETE_TOPICS, 1, 6),
    (ApiKey::DELETE_RECORDS, 0, 2),
    (ApiKey::INIT_PRODUCER_ID, 0, 5),
    (ApiKey::OFFSET_FOR_LEADER_EPOCH, 2, 4),
    (ApiKey::DESCRIBE_CONFIGS, 1, 4),
    (ApiKey::ALTER_CONFIGS, 0, 2),
    (ApiKey::CREATE_PARTITIONS, 0, 3),
    (ApiKey::INCREMENTAL_ALTER_CONFIGS, 0, 1),
    (ApiKey::DESCRIBE_CLUSTER, 0, 2),
    (ApiKey::DESCRIBE_PRODUCERS, 0, 0),
    (ApiKey::DESCRIBE_TOPIC_PARTITIONS, 0, 0),
    (ApiKey::FIND_COORDINATOR, 0, 6),
    (ApiKey::JOIN_GROUP, 0, 9),
    (ApiKey::SYNC_GROUP, 0, 5),
    (ApiKey::HEARTBEAT, 0, 4),
    (ApiKey::LEAVE_GROUP, 0, 5),
    (ApiKey::OFFSET_COMMIT, 2, 10),
    (ApiKey::OFFSET_FETCH, 1, 10),
    (ApiKey::OFFSET_DELETE, 0, 0),
    (ApiKey::DELETE_GROUPS, 0, 2),
    (ApiKey::LIST_GROUPS, 0, 5),
    (ApiKey::DESCRIBE_GROUPS, 0, 6),
    (ApiKey::CONSUMER_GROUP_HEARTBEAT, 0, 0),
    (ApiKey::CONSUMER_GROUP_DESCRIBE, 0, 0),
];

/// Whether the broker serves `api` at `version`.
#[must_use]
pub fn served(api: ApiKey, version: i16) -> bool {
    SERVED.iter().any(|(k, lo, hi)| *k == api && (*lo..=*hi).contains(&version))
}

/// Hands a decoded request to its handler.
pub(crate) fn dispatch(b: &mut Broker, req: Req, client_id: Option<KStr>, body: RequestBody) {
    match body {
        RequestBody::FindCoordinator(m) => group::find_coordinator(b, req, &m),
        RequestBody::JoinGroup(m) => group::join_group(b, req, client_id, &m),
        RequestBody::SyncGroup(m) => group::sync_group(b, req, &m),
        RequestBody::Heartbeat(m) => group::heartbeat(b, req, &m),
        RequestBody::LeaveGroup(m) => group::leave_group(b, req, &m),
        RequestBody::ListGroups(m) => group::list_groups(b, req, &m),
        RequestBody::DescribeGroups(m) => group::describe_groups(b, req, &m),
        RequestBody::DeleteGroups(m) => group::delete_groups(b, req, &m),
        RequestBody::OffsetCommit(m) => offsets::offset_commit(b, req, &m),
        RequestBody::OffsetFetch(m) => offsets::offset_fetch(b, req, &m),
        RequestBody::OffsetDelete(m) => offsets::offset_delete(b, req, &m),
        RequestBody::ConsumerGroupHeartbeat(m) => consumer::heartbeat(b, req, client_id, &m),
        RequestBody::ConsumerGroupDescribe(m) => consumer::describe(b, req, &m),
        RequestBody::ApiVersions(m) => api_versions::handle(b, req, &m),
        RequestBody::Metadata(m) => metadata::handle(b, req, m),
        RequestBody::Produce(m) => produce::handle(b, req, m),
        RequestBody::Fetch(m) => fetch::handle(b, req, m),
        RequestBody::ListOffsets(m) => list_offsets::handle(b, req, m),
        RequestBody::InitProducerId(m) => producer::init_producer_id(b, req, &m),
        RequestBody::DescribeProducers(m) => producer::describe_producers(b, req, &m),
        RequestBody::CreateTopics(m) => admin::create_topics(b, req, m),
        RequestBody::DeleteTopics(m) => admin::delete_topics(b, req, m),
        RequestBody::CreatePartitions(m) => admin::create_partitions(b, req, m),
        RequestBody::DescribeConfigs(m) => admin::describe_configs(b, req, &m),
        RequestBody::AlterConfigs(m) => admin::alter_configs(b, req, m),
        RequestBody::IncrementalAlterConfigs(m) => admin::incremental_alter_configs(b, req, m),
        RequestBody::DeleteRecords(m) => admin::delete_records(b, req, m),
        RequestBody::DescribeCluster(m) => metadata::describe_cluster(b, req, &m),
        RequestBody::DescribeTopicPartitions(m) => metadata::describe_topic_partitions(b, req, &m),
        RequestBody::OffsetForLeaderEpoch(m) => list_offsets::offset_for_leader_epoch(b, req, &m),
        other => {
            // `served` admitted it, so a handler must exist: a broken invariant, not input.
            unreachable!("no handler for served API {:?}", other.api_key());
        }
    }
}

/// A parked request.
#[derive(Debug)]
pub(crate) enum Job {
    /// A produce waiting for its appends to become visible.
    Produce(produce::ProduceJob),
    /// A fetch waiting for reads or for data.
    Fetch(fetch::FetchJob),
    /// A list-offsets waiting for timestamp lookups.
    ListOffsets(list_offsets::ListOffsetsJob),
    /// A response waiting for storage commands; `finish` applies their results.
    Reply(Box<ReplyJob>),
    /// A group's metadata being stored.
    GroupStore(group::StoreJob),
    /// Offset commits being stored.
    Commit(Box<offsets::CommitJob>),
}

/// A response that is sent once every storage command it waits for has completed.
#[derive(Debug)]
pub(crate) struct ReplyJob {
    pub req: Req,
    pub body: ResponseBody,
    pub waiting: usize,
    /// Each part's failure, if it failed.
    pub results: Vec<Option<StorageError>>,
    /// Applies the results (error codes, making created topics visible, ...).
    pub finish: fn(&mut Broker, &mut ReplyJob),
    /// The topics the parts act on, in part order (when they act on topics).
    pub topics: Vec<Uuid>,
    /// The partitions the parts act on, in part order (when they act on partitions).
    pub partitions: Vec<PartitionKey>,
    /// A per-API flag `finish` needs (Metadata: whether authorized operations were asked for).
    pub flag: bool,
    /// A per-API number `finish` needs (InitProducerId: the end of the block being stored).
    pub num: i64,
}

/// Parks a [`ReplyJob`] waiting for `parts` storage results (answers at once when zero).
pub(crate) fn reply_after(
    b: &mut Broker,
    req: Req,
    body: ResponseBody,
    parts: usize,
    finish: fn(&mut Broker, &mut ReplyJob),
) -> JobId {
    let job = ReplyJob {
        req,
        body,
        waiting: parts,
        results: vec![None; parts],
        finish,
        topics: Vec::new(),
        partitions: Vec::new(),
        flag: false,
        num: 0,
    };
    let id = b.park(Job::Reply(Box::new(job)));
    if parts == 0 {
        job_completed_reply(b, id);
    }
    id
}

/// Resumes part `part` of `job` with a storage result.
pub(crate) fn job_completed(b: &mut Broker, job: JobId, part: usize, result: Completion) {
    let Some(j) = b.jobs.get_mut(&job) else { return };
    match j {
        Job::Produce(_) => produce::part_done(b, job, part, result),
        Job::Fetch(_) => fetch::read_done(b, job, part, result),
        Job::ListOffsets(_) => list_offsets::lookup_done(b, job, part, result),
        Job::GroupStore(_) => group::store_done(b, job, result),
        Job::Commit(_) => offsets::commit_done(b, job, part, result),
        Job::Reply(r) => {
            if let Completion::Failed(e) = result {
                r.results[part] = Some(e);
            }
            r.waiting -= 1;
            if r.waiting == 0 {
                job_completed_reply(b, job);
            }
        }
    }
}

fn job_completed_reply(b: &mut Broker, job: JobId) {
    let Some(Job::Reply(mut r)) = b.jobs.remove(&job) else { return };
    (r.finish)(b, &mut r);
    b.respond(r.req, &r.body);
}
