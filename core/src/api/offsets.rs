//! Committed offsets: OffsetCommit, OffsetFetch and OffsetDelete.
//!
//! A commit is checked against the group (generation, member), then each partition's offset
//! is written with its own `Put`; the response leaves once every write has completed, and
//! only stored offsets become visible to OffsetFetch (Kafka answers after its offsets topic
//! append commits). OffsetFetch with `require_stable` reports partitions whose commit is
//! still being stored as UNSTABLE_OFFSET_COMMIT.
//!
//! Under ACLs, as Kafka's `KafkaApis`: a commit needs READ on the group and on each topic, a
//! fetch DESCRIBE on the group and shows only the topics the principal may DESCRIBE, a delete
//! needs DELETE on the group and READ on each topic. A refused topic is answered
//! TOPIC_AUTHORIZATION_FAILED before it is looked up, so that its existence does not leak.

use super::Job;
use super::{CmdOwner, Effects};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::offset_commit::{
    OffsetCommitRequest, OffsetCommitRequestTopic, OffsetCommitResponse, OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
};
use crate::codec::generated::offset_delete::{
    OffsetDeleteRequest, OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use crate::codec::generated::offset_fetch::{
    OffsetFetchRequest, OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use crate::codec::{ErrorCode, KStr, Uuid};
use crate::group::classic::{ClassicGroup, GroupState};
use crate::group::{CommittedOffset, encode_offset, offset_key};
use crate::io::{Command, Completion};
use crate::request::Req;
use crate::security::acl::{Operation, ResourceType};
use crate::state::{JobId, State};

/// One partition's commit being stored.
#[derive(Debug)]
struct CommitPart {
    group: KStr,
    topic: KStr,
    partition: i32,
    value: CommittedOffset,
    /// (topic index, partition index) in the response.
    slot: (usize, usize),
}

/// An OffsetCommit waiting for its writes.
#[derive(Debug)]
pub(crate) struct CommitJob {
    req: Req,
    resp: OffsetCommitResponse,
    waiting: usize,
    parts: Vec<CommitPart>,
    failed: Vec<bool>,
}

/// Whether `topic` exists with partition `p`.
fn partition_exists(st: &State, topic: &str, p: i32) -> bool {
    st.topics.by_name(topic).is_some_and(|t| usize::try_from(p).is_ok_and(|p| p < t.partitions.len()))
}

/// The group-level check of a commit; creates the Empty group of a simple consumer.
fn check_commit_group(st: &mut State, req: Req, m: &OffsetCommitRequest) -> Result<(), ErrorCode> {
    if m.group_id.is_empty() {
        return Err(ErrorCode::INVALID_GROUP_ID);
    }
    let generation = m.generation_id_or_member_epoch;
    if let Some(g) = st.groups.consumer.get(&m.group_id) {
        return g.validate_commit(&m.member_id, generation, req.version);
    }
    match st.groups.classic.get(&m.group_id) {
        Some(g) => g.validate_commit(&m.member_id, m.group_instance_id.as_ref(), generation),
        None if generation < 0 => {
            st.groups.classic.insert(m.group_id.clone(), ClassicGroup::new(m.group_id.clone()));
            Ok(())
        }
        // v9+ says so; older clients expect ILLEGAL_GENERATION.
        None if req.version >= 9 => Err(ErrorCode::GROUP_ID_NOT_FOUND),
        None => Err(ErrorCode::ILLEGAL_GENERATION),
    }
}

/// May the connection that sent `req` do `op` on the topic `name`?
fn may(st: &State, req: &Req, op: Operation, name: &str) -> bool {
    st.allowed(req, op, ResourceType::TOPIC, name)
}

/// Kafka's answer to an OffsetCommit refused as a whole: `code` on every partition asked for.
fn commit_refused(m: &OffsetCommitRequest, code: ErrorCode) -> ResponseBody {
    let topics = m
        .topics
        .iter()
        .map(|t| OffsetCommitResponseTopic {
            name: t.name.clone(),
            topic_id: t.topic_id,
            partitions: t
                .partitions
                .iter()
                .map(|p| OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: code.0,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ResponseBody::OffsetCommit(OffsetCommitResponse { topics, ..Default::default() })
}

/// The name of a topic a commit names: by id from v10, `None` for an unknown id.
fn commit_topic_name(st: &State, version: i16, t: &OffsetCommitRequestTopic) -> Option<KStr> {
    if version >= 10 { st.topics.by_id(t.topic_id).map(|x| x.name.clone()) } else { Some(t.name.clone()) }
}

pub(crate) fn offset_commit(st: &mut State, fx: &mut Effects, req: Req, m: &OffsetCommitRequest) {
    if !st.allowed(&req, Operation::READ, ResourceType::GROUP, &m.group_id) {
        return fx.respond(req, commit_refused(m, ErrorCode::GROUP_AUTHORIZATION_FAILED));
    }
    // Each topic's name (v10 names topics by id) and whether the principal may not READ it.
    let names: Vec<Option<KStr>> = m.topics.iter().map(|t| commit_topic_name(st, req.version, t)).collect();
    let refused: Vec<bool> =
        names.iter().map(|n| n.as_ref().is_some_and(|n| !may(st, &req, Operation::READ, n))).collect();
    // Kafka leaves the group alone (no checks, no group created) when it may commit to no topic.
    let all_refused = !refused.is_empty() && refused.iter().all(|r| *r);
    let group_error = if all_refused { None } else { check_commit_group(st, req, m).err() };
    let mut resp = OffsetCommitResponse::default();
    let mut parts = Vec::new();
    for (ti, (t, name)) in m.topics.iter().zip(&names).enumerate() {
        let mut rt = OffsetCommitResponseTopic { name: t.name.clone(), topic_id: t.topic_id, ..Default::default() };
        for (pi, p) in t.partitions.iter().enumerate() {
            let code = match name {
                // Before the topic's existence, so that it does not leak.
                Some(_) if refused[ti] => ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                _ if group_error.is_some() => group_error.unwrap_or(ErrorCode::NONE),
                None => ErrorCode::UNKNOWN_TOPIC_ID,
                Some(n) if !partition_exists(st, n, p.partition_index) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                Some(_)
                    if p.committed_metadata.as_ref().is_some_and(|x| x.len() > st.cfg.offset_metadata_max_bytes) =>
                {
                    ErrorCode::OFFSET_METADATA_TOO_LARGE
                }
                Some(n) => {
                    let value = CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: Some(p.committed_metadata.clone().unwrap_or_default()),
                        commit_timestamp: st.now.wall_ms,
                    };
                    let (group, topic) = (m.group_id.clone(), n.clone());
                    parts.push(CommitPart { group, topic, partition: p.partition_index, value, slot: (ti, pi) });
                    ErrorCode::NONE
                }
            };
            rt.partitions.push(OffsetCommitResponsePartition {
                partition_index: p.partition_index,
                error_code: code.0,
                ..Default::default()
            });
        }
        resp.topics.push(rt);
    }
    if parts.is_empty() {
        return fx.respond(req, ResponseBody::OffsetCommit(resp));
    }
    let puts: Vec<Command> = parts
        .iter()
        .map(|p| {
            st.groups.offsets.begin(&p.group, &p.topic, p.partition);
            Command::Put { key: offset_key(&p.group, &p.topic, p.partition), value: Some(encode_offset(&p.value)) }
        })
        .collect();
    let n = parts.len();
    let job = fx.park(Job::Commit(Box::new(CommitJob { req, resp, waiting: n, parts, failed: vec![false; n] })));
    for (part, put) in puts.into_iter().enumerate() {
        fx.storage(CmdOwner::Job { job, part }, put);
    }
}

/// One commit write completed.
pub(crate) fn commit_done(st: &mut State, fx: &mut Effects, job: JobId, part: usize, result: Completion) {
    let Some(Job::Commit(j)) = fx.jobs.get_mut(&job) else { return };
    if !matches!(result, Completion::Done)
        && let Some(f) = j.failed.get_mut(part)
    {
        *f = true;
    }
    j.waiting -= 1;
    if j.waiting > 0 {
        return;
    }
    let Some(Job::Commit(mut j)) = fx.jobs.remove(&job) else { return };
    for (p, failed) in j.parts.into_iter().zip(j.failed) {
        st.groups.offsets.end(&p.group, &p.topic, p.partition);
        // A group deleted meanwhile keeps nothing (its tombstones were written after this).
        if !failed && st.groups.exists(&p.group) {
            st.groups.offsets.set(&p.group, &p.topic, p.partition, p.value);
        } else if let Some(slot) = j.resp.topics.get_mut(p.slot.0).and_then(|t| t.partitions.get_mut(p.slot.1)) {
            slot.error_code = ErrorCode::COORDINATOR_NOT_AVAILABLE.0;
        }
    }
    fx.respond(j.req, ResponseBody::OffsetCommit(j.resp));
}

/// One partition's fetched offset: (offset, leader epoch, metadata, error).
fn fetch_one(st: &State, group: &KStr, topic: &KStr, p: i32, require_stable: bool) -> (i64, i32, KStr, ErrorCode) {
    if require_stable && (st.groups.offsets.unstable(group, topic, p) || st.txns.has_pending(group, topic, p)) {
        return (-1, -1, KStr::default(), ErrorCode::UNSTABLE_OFFSET_COMMIT);
    }
    match st.groups.offsets.get(group, topic, p) {
        Some(o) => (o.offset, o.leader_epoch, o.metadata.clone().unwrap_or_default(), ErrorCode::NONE),
        None => (-1, -1, KStr::default(), ErrorCode::NONE),
    }
}

/// One partition's fetched offset, as the connection that sent `req` may see it: a topic it
/// may not DESCRIBE gets TOPIC_AUTHORIZATION_FAILED (Kafka does not look it up).
fn fetch_seen(
    st: &State,
    req: &Req,
    group: &KStr,
    topic: &KStr,
    p: i32,
    require_stable: bool,
) -> (i64, i32, KStr, ErrorCode) {
    if !may(st, req, Operation::DESCRIBE, topic) {
        return (-1, -1, KStr::default(), ErrorCode::TOPIC_AUTHORIZATION_FAILED);
    }
    fetch_one(st, group, topic, p, require_stable)
}

/// Kafka's OffsetFetch answer before v8 to a principal that may not DESCRIBE the group: the
/// error at the top from v2, on every partition asked for before (v1 has no top-level error).
fn fetch_refused_v1_to_v7(version: i16, m: &OffsetFetchRequest) -> OffsetFetchResponse {
    let code = ErrorCode::GROUP_AUTHORIZATION_FAILED;
    if version >= 2 {
        return OffsetFetchResponse { error_code: code.0, ..Default::default() };
    }
    let topics = m
        .topics
        .iter()
        .flatten()
        .map(|t| OffsetFetchResponseTopic {
            name: t.name.clone(),
            partitions: t
                .partition_indexes
                .iter()
                .map(|p| OffsetFetchResponsePartition {
                    partition_index: *p,
                    committed_offset: -1,
                    error_code: code.0,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    OffsetFetchResponse { topics, ..Default::default() }
}

/// (topic, partitions asked) for a group: every committed partition when `asked` is None.
fn wanted(st: &State, group: &KStr, asked: Option<Vec<(KStr, Vec<i32>)>>) -> Vec<(KStr, Vec<i32>)> {
    if let Some(a) = asked {
        return a;
    }
    let mut out: Vec<(KStr, Vec<i32>)> = Vec::new();
    for ((topic, p), _) in st.groups.offsets.of_group(group) {
        match out.last_mut() {
            Some((t, ps)) if t == topic => ps.push(*p),
            _ => out.push((topic.clone(), vec![*p])),
        }
    }
    out
}

pub(crate) fn offset_fetch(st: &mut State, fx: &mut Effects, req: Req, m: &OffsetFetchRequest) {
    let require_stable = req.version >= 7 && m.require_stable;
    let may_describe_group = |g: &str| st.allowed(&req, Operation::DESCRIBE, ResourceType::GROUP, g);
    if req.version < 8 {
        if !may_describe_group(&m.group_id) {
            return fx.respond(req, ResponseBody::OffsetFetch(fetch_refused_v1_to_v7(req.version, m)));
        }
        let asked =
            m.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
        let every = asked.is_none();
        let topics = wanted(st, &m.group_id, asked)
            .into_iter()
            // Asked for every partition, the principal sees only the topics it may DESCRIBE.
            .filter(|(name, _)| !every || may(st, &req, Operation::DESCRIBE, name))
            .map(|(name, ps)| OffsetFetchResponseTopic {
                partitions: ps
                    .into_iter()
                    .map(|p| {
                        let (offset, epoch, metadata, code) =
                            fetch_seen(st, &req, &m.group_id, &name, p, require_stable);
                        OffsetFetchResponsePartition {
                            partition_index: p,
                            committed_offset: offset,
                            committed_leader_epoch: epoch,
                            metadata: Some(metadata),
                            error_code: code.0,
                            ..Default::default()
                        }
                    })
                    .collect(),
                name,
                ..Default::default()
            })
            .collect();
        let resp = OffsetFetchResponse { topics, ..Default::default() };
        return fx.respond(req, ResponseBody::OffsetFetch(resp));
    }
    let by_id = req.version >= 10;
    let groups = m
        .groups
        .iter()
        .map(|g| {
            if !may_describe_group(&g.group_id) {
                let code = ErrorCode::GROUP_AUTHORIZATION_FAILED;
                return OffsetFetchResponseGroup {
                    group_id: g.group_id.clone(),
                    error_code: code.0,
                    ..Default::default()
                };
            }
            let member_check =
                st.groups.consumer.get(&g.group_id).map(|c| c.validate_fetch(g.member_id.as_ref(), g.member_epoch));
            if let Some(Err(code)) = member_check {
                return OffsetFetchResponseGroup {
                    group_id: g.group_id.clone(),
                    error_code: code.0,
                    ..Default::default()
                };
            }
            // v10 names topics by id: (name, id) pairs, unknown ids with an empty name.
            let asked: Option<Vec<(KStr, Uuid, Vec<i32>)>> = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| {
                        let name = if by_id {
                            st.topics.by_id(t.topic_id).map(|x| x.name.clone()).unwrap_or_default()
                        } else {
                            t.name.clone()
                        };
                        (name, t.topic_id, t.partition_indexes.clone())
                    })
                    .collect()
            });
            let list: Vec<(KStr, Uuid, Vec<i32>)> = match asked {
                Some(a) => a,
                None => wanted(st, &g.group_id, None)
                    .into_iter()
                    .filter_map(|(n, ps)| {
                        let id = st.topics.by_name(&n).map_or(Uuid::ZERO, |t| t.id);
                        // Only the topics the principal may DESCRIBE.
                        let seen = may(st, &req, Operation::DESCRIBE, &n);
                        (seen && (!by_id || id != Uuid::ZERO)).then_some((n, id, ps))
                    })
                    .collect(),
            };
            let topics = list
                .into_iter()
                .map(|(name, topic_id, ps)| OffsetFetchResponseTopics {
                    partitions: ps
                        .into_iter()
                        .map(|p| {
                            let (offset, epoch, metadata, mut code) =
                                fetch_seen(st, &req, &g.group_id, &name, p, require_stable);
                            if by_id && name.is_empty() {
                                code = ErrorCode::UNKNOWN_TOPIC_ID;
                            }
                            OffsetFetchResponsePartitions {
                                partition_index: p,
                                committed_offset: offset,
                                committed_leader_epoch: epoch,
                                metadata: Some(metadata),
                                error_code: code.0,
                                ..Default::default()
                            }
                        })
                        .collect(),
                    name,
                    topic_id,
                    ..Default::default()
                })
                .collect();
            OffsetFetchResponseGroup { group_id: g.group_id.clone(), topics, ..Default::default() }
        })
        .collect();
    fx.respond(req, ResponseBody::OffsetFetch(OffsetFetchResponse { groups, ..Default::default() }));
}

pub(crate) fn offset_delete(st: &mut State, fx: &mut Effects, req: Req, m: &OffsetDeleteRequest) {
    if !st.allowed(&req, Operation::DELETE, ResourceType::GROUP, &m.group_id) {
        let resp = OffsetDeleteResponse { error_code: ErrorCode::GROUP_AUTHORIZATION_FAILED.0, ..Default::default() };
        return fx.respond(req, ResponseBody::OffsetDelete(resp));
    }
    let consumer = st.groups.consumer.get(&m.group_id).map(|g| g.members.is_empty());
    let group_error = match st.groups.classic.get(&m.group_id) {
        None if consumer.is_some() => None,
        None => Some(ErrorCode::GROUP_ID_NOT_FOUND),
        Some(g) => match g.state() {
            GroupState::Dead => Some(ErrorCode::GROUP_ID_NOT_FOUND),
            GroupState::Empty => None,
            // Kafka deletes offsets of a live group only when it uses the consumer protocol
            // (then the subscriptions say which topics are in use).
            _ if g.protocol_type.as_deref() != Some("consumer") => Some(ErrorCode::NON_EMPTY_GROUP),
            _ => None,
        },
    };
    let mut resp = OffsetDeleteResponse::default();
    if let Some(code) = group_error {
        resp.error_code = code.0;
        return fx.respond(req, ResponseBody::OffsetDelete(resp));
    }
    let mut keys = Vec::new();
    for t in &m.topics {
        let subscribed = st.groups.classic.get(&m.group_id).is_some_and(|g| g.subscribed_to(&t.name))
            || st.groups.consumer.get(&m.group_id).is_some_and(|g| g.subscribed_to(&t.name));
        // Kafka asks for READ on the topic, before looking it up.
        let refused = !may(st, &req, Operation::READ, &t.name);
        let mut rt = OffsetDeleteResponseTopic { name: t.name.clone(), ..Default::default() };
        for p in &t.partitions {
            let code = if refused {
                ErrorCode::TOPIC_AUTHORIZATION_FAILED
            } else if !partition_exists(st, &t.name, p.partition_index) {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            } else if subscribed {
                ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC
            } else {
                if st.groups.offsets.remove(&m.group_id, &t.name, p.partition_index) {
                    keys.push(offset_key(&m.group_id, &t.name, p.partition_index));
                }
                ErrorCode::NONE
            };
            rt.partitions
                .push(OffsetDeleteResponsePartition { partition_index: p.partition_index, error_code: code.0 });
        }
        resp.topics.push(rt);
    }
    let job = super::reply_after(st, fx, req, ResponseBody::OffsetDelete(resp), keys.len(), super::Then::OffsetDelete);
    for (part, key) in keys.into_iter().enumerate() {
        fx.storage(CmdOwner::Job { job, part }, Command::Put { key, value: None });
    }
}

pub(crate) fn finish_offset_delete(job: &mut super::ReplyJob) {
    if job.results.iter().any(Option::is_some)
        && let ResponseBody::OffsetDelete(r) = &mut job.body
    {
        r.error_code = ErrorCode::COORDINATOR_NOT_AVAILABLE.0;
    }
}
