//! Request handlers, one module per API family, and the jobs they park while storage works.
//!
//! Every handler is a function over the broker's [`State`] and an effect sink
//! ([`Effects`]): it reads and changes the state, and asks for replies, storage commands,
//! timers and closes through the sink, which the broker carries out. A handler either answers
//! at once or parks a [`Job`] whose parts are storage commands or high-watermark waits;
//! [`job_completed`] resumes it. Handlers never do IO, never block, and never see the broker.

pub(crate) mod acls;
pub mod admin;
pub mod api_versions;
pub(crate) mod cleaning;
pub mod consumer;
pub(crate) mod effects;
pub mod fetch;
pub mod group;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer;
pub(crate) mod recovery;
pub(crate) mod resync;
pub(crate) mod retention;
pub(crate) mod sasl;
#[cfg(test)]
mod tests;
pub mod txn;
pub(crate) mod users;
pub(crate) mod waiters;

use std::net::SocketAddr;

pub(crate) use effects::{CmdOwner, Effects, Timer};

use crate::codec::generated::{RequestBody, ResponseBody};
use crate::codec::{ApiKey, KStr, Uuid};
use crate::group::Client;
use crate::io::{Completion, PartitionKey, StorageError};
use crate::request::Req;
use crate::state::{JobId, State};

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
    (ApiKey::ADD_PARTITIONS_TO_TXN, 0, 5),
    (ApiKey::ADD_OFFSETS_TO_TXN, 0, 4),
    (ApiKey::END_TXN, 0, 5),
    (ApiKey::TXN_OFFSET_COMMIT, 0, 5),
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
    (ApiKey::CONSUMER_GROUP_HEARTBEAT, 0, 1),
    (ApiKey::CONSUMER_GROUP_DESCRIBE, 0, 0),
    (ApiKey::DESCRIBE_TRANSACTIONS, 0, 0),
    (ApiKey::LIST_TRANSACTIONS, 0, 1),
    (ApiKey::SASL_HANDSHAKE, 0, 1),
    (ApiKey::SASL_AUTHENTICATE, 0, 2),
    (ApiKey::DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0),
    (ApiKey::ALTER_USER_SCRAM_CREDENTIALS, 0, 0),
    (ApiKey::CREATE_ACLS, 1, 3),
    (ApiKey::DESCRIBE_ACLS, 1, 3),
    (ApiKey::DELETE_ACLS, 1, 3),
];

/// Whether the broker serves `api` at `version`.
#[must_use]
pub fn served(api: ApiKey, version: i16) -> bool {
    SERVED.iter().any(|(k, lo, hi)| *k == api && (*lo..=*hi).contains(&version))
}

/// Who a group's member is: the request header's client id and the peer's address, as
/// DescribeGroups and ConsumerGroupDescribe report them.
fn client(client_id: Option<KStr>, peer: SocketAddr) -> Client {
    Client { id: client_id.unwrap_or_default(), host: KStr::from(format!("/{}", peer.ip())) }
}

/// Hands a decoded request to its handler.
pub(crate) fn dispatch(
    st: &mut State,
    fx: &mut Effects,
    req: Req,
    (client_id, peer): (Option<KStr>, SocketAddr),
    body: RequestBody,
) {
    match body {
        RequestBody::FindCoordinator(m) => group::find_coordinator(st, fx, req, &m),
        RequestBody::JoinGroup(m) => group::join_group(st, fx, req, client(client_id, peer), &m),
        RequestBody::SyncGroup(m) => group::sync_group(st, fx, req, &m),
        RequestBody::Heartbeat(m) => group::heartbeat(st, fx, req, &m),
        RequestBody::LeaveGroup(m) => group::leave_group(st, fx, req, &m),
        RequestBody::ListGroups(m) => group::list_groups(st, fx, req, &m),
        RequestBody::DescribeGroups(m) => group::describe_groups(st, fx, req, &m),
        RequestBody::DeleteGroups(m) => group::delete_groups(st, fx, req, &m),
        RequestBody::OffsetCommit(m) => offsets::offset_commit(st, fx, req, &m),
        RequestBody::OffsetFetch(m) => offsets::offset_fetch(st, fx, req, &m),
        RequestBody::OffsetDelete(m) => offsets::offset_delete(st, fx, req, &m),
        RequestBody::ConsumerGroupHeartbeat(m) => consumer::heartbeat(st, fx, req, client(client_id, peer), &m),
        RequestBody::ConsumerGroupDescribe(m) => consumer::describe(st, fx, req, &m),
        RequestBody::ApiVersions(m) => api_versions::handle(fx, req, &m),
        RequestBody::Metadata(m) => metadata::handle(st, fx, req, m),
        RequestBody::Produce(m) => produce::handle(st, fx, req, m),
        RequestBody::Fetch(m) => fetch::handle(st, fx, req, m),
        RequestBody::ListOffsets(m) => list_offsets::handle(st, fx, req, m),
        RequestBody::InitProducerId(m) => producer::init_producer_id(st, fx, req, &m),
        RequestBody::DescribeProducers(m) => producer::describe_producers(st, fx, req, &m),
        RequestBody::AddPartitionsToTxn(m) => txn::add_partitions(st, fx, req, &m),
        RequestBody::AddOffsetsToTxn(m) => txn::add_offsets(st, fx, req, &m),
        RequestBody::TxnOffsetCommit(m) => txn::txn_offset_commit(st, fx, req, &m),
        RequestBody::EndTxn(m) => txn::end_txn(st, fx, req, &m),
        RequestBody::DescribeTransactions(m) => txn::describe(st, fx, req, &m),
        RequestBody::ListTransactions(m) => txn::list(st, fx, req, &m),
        RequestBody::CreateTopics(m) => admin::create_topics(st, fx, req, m),
        RequestBody::DeleteTopics(m) => admin::delete_topics(st, fx, req, m),
        RequestBody::CreatePartitions(m) => admin::create_partitions(st, fx, req, m),
        RequestBody::DescribeConfigs(m) => admin::describe_configs(st, fx, req, &m),
        RequestBody::AlterConfigs(m) => admin::alter_configs(st, fx, req, m),
        RequestBody::IncrementalAlterConfigs(m) => admin::incremental_alter_configs(st, fx, req, m),
        RequestBody::DeleteRecords(m) => admin::delete_records(st, fx, req, m),
        RequestBody::DescribeCluster(m) => metadata::describe_cluster(st, fx, req, &m),
        RequestBody::DescribeTopicPartitions(m) => metadata::describe_topic_partitions(st, fx, req, &m),
        RequestBody::OffsetForLeaderEpoch(m) => list_offsets::offset_for_leader_epoch(st, fx, req, &m),
        RequestBody::DescribeUserScramCredentials(m) => users::describe(st, fx, req, &m),
        RequestBody::AlterUserScramCredentials(m) => users::alter(st, fx, req, &m),
        RequestBody::CreateAcls(m) => acls::create(st, fx, req, &m),
        RequestBody::DescribeAcls(m) => acls::describe(st, fx, req, &m),
        RequestBody::DeleteAcls(m) => acls::delete(st, fx, req, &m),
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
    /// A response waiting for storage commands; its [`Then`] applies their results.
    Reply(Box<ReplyJob>),
    /// A group's metadata being stored.
    GroupStore(group::StoreJob),
    /// Offset commits being stored.
    Commit(Box<offsets::CommitJob>),
    /// A transactional id's metadata being stored.
    TxnStore(Box<txn::StoreJob>),
    /// A transaction's markers being written.
    TxnMarkers(Box<txn::MarkersJob>),
    /// Transactional offsets being stored.
    TxnOffsets(Box<txn::OffsetsJob>),
    /// A batched AddPartitionsToTxn waiting for its transactions to be stored.
    TxnBatch(Box<txn::BatchJob>),
}

/// What a [`ReplyJob`] does with its storage results before the response leaves: one
/// variant per kind of request, carrying what its parts act on, in part order.
#[derive(Debug)]
pub(crate) enum Then {
    /// CreateTopics: each part stores a pending topic.
    CreateTopics(Vec<Uuid>),
    /// Metadata with auto-creation: each part stores a pending topic; `include_ops` says
    /// whether the request asked for authorized operations.
    AutoCreate {
        /// The pending topics.
        topics: Vec<Uuid>,
        /// Whether authorized operations were asked for.
        include_ops: bool,
    },
    /// DeleteTopics: each part deletes a topic.
    DeleteTopics(Vec<Uuid>),
    /// CreatePartitions: each part stores a topic's new record; the key names the topic and
    /// its partition count before.
    CreatePartitions(Vec<PartitionKey>),
    /// AlterConfigs and IncrementalAlterConfigs: each part stores a topic's new record.
    /// Topics (parts 0..n) then groups (the parts after) whose configs were stored.
    AlterConfigs(Vec<Uuid>, Vec<KStr>),
    /// DeleteRecords: each part moves a partition's log start.
    DeleteRecords(Vec<PartitionKey>),
    /// InitProducerId: the part stores a producer id reservation ending at this id.
    ReserveProducerIds(i64),
    /// DeleteGroups: each part deletes a group's stored data.
    DeleteGroups,
    /// OffsetDelete: each part deletes a committed offset.
    OffsetDelete,
    /// CreateAcls and DeleteAcls: each part stores a binding's addition or removal, which
    /// takes effect once stored.
    Acls(Box<acls::AclChanges>),
    /// AlterUserScramCredentials: each part stores (or deletes) a user's credential, which
    /// takes effect once stored.
    ScramCredentials(Vec<users::Change>),
}

/// A response that is sent once every storage command it waits for has completed.
#[derive(Debug)]
pub(crate) struct ReplyJob {
    pub req: Req,
    pub body: ResponseBody,
    pub waiting: usize,
    /// Each part's failure, if it failed.
    pub results: Vec<Option<StorageError>>,
    /// What the results change in the state and the response.
    pub then: Then,
}

/// Parks a [`ReplyJob`] waiting for `parts` storage results (answers at once when zero).
pub(crate) fn reply_after(
    st: &mut State,
    fx: &mut Effects,
    req: Req,
    body: ResponseBody,
    parts: usize,
    then: Then,
) -> JobId {
    let job = ReplyJob { req, body, waiting: parts, results: vec![None; parts], then };
    let id = fx.park(Job::Reply(Box::new(job)));
    if parts == 0 {
        job_completed_reply(st, fx, id);
    }
    id
}

/// Resumes part `part` of `job` with a storage result.
pub(crate) fn job_completed(st: &mut State, fx: &mut Effects, job: JobId, part: usize, result: Completion) {
    let Some(j) = fx.jobs.get_mut(&job) else { return };
    match j {
        Job::Produce(_) => produce::part_done(fx, job, part, result),
        Job::Fetch(_) => fetch::read_done(st, fx, job, part, result),
        Job::ListOffsets(_) => list_offsets::lookup_done(st, fx, job, part, result),
        Job::GroupStore(_) => group::store_done(st, fx, job, result),
        Job::Commit(_) => offsets::commit_done(st, fx, job, part, result),
        Job::TxnStore(_) => txn::store_done(st, fx, job, &result),
        Job::TxnMarkers(_) => txn::marker_done(st, fx, job, part, &result),
        Job::TxnOffsets(_) => txn::offsets_stored(st, fx, job, &result),
        // Its parts are transaction stores, which report to it directly.
        Job::TxnBatch(_) => {}
        Job::Reply(r) => {
            if let Completion::Failed(e) = result {
                r.results[part] = Some(e);
            }
            r.waiting -= 1;
            if r.waiting == 0 {
                job_completed_reply(st, fx, job);
            }
        }
    }
}

fn job_completed_reply(st: &mut State, fx: &mut Effects, job: JobId) {
    let Some(Job::Reply(mut r)) = fx.jobs.remove(&job) else { return };
    match &r.then {
        Then::CreateTopics(_) => admin::finish_create_topics(st, &mut r),
        Then::AutoCreate { .. } => metadata::finish_auto_create(st, &mut r),
        Then::DeleteTopics(_) => admin::finish_delete_topics(&mut r),
        Then::CreatePartitions(_) => admin::finish_create_partitions(st, fx, &mut r),
        Then::AlterConfigs(..) => admin::finish_failures_by_name(st, &mut r),
        Then::DeleteRecords(_) => admin::finish_delete_records(st, &mut r),
        Then::ReserveProducerIds(_) => producer::finish_reserve(st, &mut r),
        Then::DeleteGroups => group::finish_delete_groups(&mut r),
        Then::OffsetDelete => offsets::finish_offset_delete(&mut r),
        Then::ScramCredentials(_) => users::finish_alter(st, &mut r),
        Then::Acls(_) => acls::finish(st, &mut r),
    }
    fx.respond(r.req, r.body);
}
