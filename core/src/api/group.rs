//! Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
//! DescribeGroups and DeleteGroups.
//!
//! These handlers look a group up, run the pure coordinator in [`crate::group::classic`] and
//! carry out the effects it asks for: replies, timers on the broker's table and `Put`s of the
//! group's metadata, whose completion comes back through [`store_done`].
//!
//! Under ACLs each request is checked at entry as Kafka's `KafkaApis` does: DESCRIBE on the
//! group (or transactional id) to find its coordinator, list or describe it, READ to join,
//! sync, heartbeat or leave, DELETE to delete it.

use bytes::Bytes;

use super::{CmdOwner, Effects, Timer};
use super::{Job, ReplyJob, Then};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::delete_groups::{DeletableGroupResult, DeleteGroupsRequest, DeleteGroupsResponse};
use crate::codec::generated::describe_groups::{
    DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use crate::codec::generated::find_coordinator::{Coordinator, FindCoordinatorRequest, FindCoordinatorResponse};
use crate::codec::generated::heartbeat::{HeartbeatRequest, HeartbeatResponse};
use crate::codec::generated::join_group::JoinGroupRequest;
use crate::codec::generated::leave_group::{LeaveGroupRequest, LeaveGroupResponse, MemberIdentity, MemberResponse};
use crate::codec::generated::list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
use crate::codec::generated::sync_group::SyncGroupRequest;
use crate::codec::{ErrorCode, KStr};
use crate::group::classic::{ClassicGroup, Client, Ctx, Effect, GroupState, GroupTimer, StoreThen, sync_error};
use crate::group::{encode_group, group_key, offset_key};
use crate::io::{Command, Completion};
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::state::{JobId, State};
use crate::time::Duration;

/// `authorized_operations` when not asked for.
pub(crate) const OPS_NOT_REQUESTED: i32 = i32::MIN;

/// A group's metadata being stored, and what follows.
#[derive(Debug)]
pub(crate) struct StoreJob {
    group: KStr,
    then: StoreThen,
    /// A consumer group's `Put` number ([`crate::group::consumer::ConsumerGroup::next_put`]),
    /// 0 for a classic group.
    seq: u64,
}

impl StoreJob {
    /// A consumer group's `Put` numbered `seq`, then `then`.
    pub(crate) fn consumer(group: KStr, seq: u64, then: StoreThen) -> Self {
        Self { group, then, seq }
    }
}

pub(crate) fn find_coordinator(st: &mut State, fx: &mut Effects, req: Req, m: &FindCoordinatorRequest) {
    let listener = st.cfg.advertised(req.listener);
    let (node, host, port) = (st.cfg.node_id, listener.host.clone(), listener.port);
    // Where the coordinator is, or Kafka's `Node.noNode` with an error.
    let answer = |code: ErrorCode| {
        if code == ErrorCode::NONE { (node, host.clone(), port) } else { (-1, KStr::default(), -1) }
    };
    if req.version < 4 {
        let code = coordinator_key_code(st, &req, m.key_type, &m.key);
        let (node_id, host, port) = answer(code);
        let resp = FindCoordinatorResponse {
            error_code: code.0,
            error_message: authorization_message(code).map(KStr::from),
            node_id,
            host,
            port,
            ..Default::default()
        };
        return fx.respond(req, ResponseBody::FindCoordinator(resp));
    }
    let coordinators = m
        .coordinator_keys
        .iter()
        .map(|k| {
            let code = coordinator_key_code(st, &req, m.key_type, k);
            let (node_id, host, port) = answer(code);
            Coordinator { key: k.clone(), node_id, host, port, error_code: code.0, ..Default::default() }
        })
        .collect();
    let resp = FindCoordinatorResponse { coordinators, ..Default::default() };
    fx.respond(req, ResponseBody::FindCoordinator(resp));
}

/// Whether this node coordinates `key`: group (0) and transaction (1) keys, this node
/// coordinates both, for a principal that may DESCRIBE the group or the transactional id
/// (Kafka's `getCoordinator`, which checks before it looks at the key type).
fn coordinator_key_code(st: &State, req: &Req, key_type: i8, key: &str) -> ErrorCode {
    match key_type {
        0 if !st.allowed(req, Operation::DESCRIBE, ResourceType::GROUP, key) => ErrorCode::GROUP_AUTHORIZATION_FAILED,
        1 if !st.allowed(req, Operation::DESCRIBE, ResourceType::TRANSACTIONAL_ID, key) => {
            ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        }
        0 | 1 => ErrorCode::NONE,
        _ => ErrorCode::INVALID_REQUEST,
    }
}

/// The message Kafka's FindCoordinator before v4 carries with an authorization error
/// (`Errors.message()`).
fn authorization_message(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::GROUP_AUTHORIZATION_FAILED => Some("Group authorization failed."),
        ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED => Some("Transactional Id authorization failed."),
        _ => None,
    }
}

/// May the connection that sent `req` join, sync, heartbeat in or leave `group` (READ)?
fn may_read(st: &State, req: &Req, group: &str) -> bool {
    st.allowed(req, Operation::READ, ResourceType::GROUP, group)
}

/// Runs `f` on `group` with a fresh effect sink, then carries the effects out.
fn run<R>(
    st: &mut State,
    fx: &mut Effects,
    group: &KStr,
    f: impl FnOnce(&mut ClassicGroup, &mut Ctx<'_>) -> R,
) -> Option<R> {
    let mut out = Vec::new();
    let r = {
        let g = st.groups.classic.get_mut(group)?;
        let mut cx = Ctx { now: st.now.mono, cfg: &st.cfg, rng: &mut st.rng, out: &mut out };
        f(g, &mut cx)
    };
    apply(st, fx, group, out);
    Some(r)
}

/// Carries out a classic group's effects.
pub(crate) fn apply(st: &mut State, fx: &mut Effects, group: &KStr, effects: Vec<Effect>) {
    for e in effects {
        match e {
            Effect::Reply(req, body) => fx.respond(req, body),
            Effect::Arm(t, at) => fx.arm(Timer::Group(t), at),
            Effect::Cancel(t) => fx.cancel(&Timer::Group(t)),
            Effect::Store(then) => store(st, fx, group, then),
        }
    }
}

fn store(st: &mut State, fx: &mut Effects, group: &KStr, then: StoreThen) {
    let Some(g) = st.groups.classic.get(group) else { return };
    let value = encode_group(g);
    let job = fx.park(Job::GroupStore(StoreJob { group: group.clone(), then, seq: 0 }));
    fx.storage(CmdOwner::Job { job, part: 0 }, Command::Put { key: group_key(group), value: Some(value) });
}

/// A group metadata `Put` completed.
pub(crate) fn store_done(st: &mut State, fx: &mut Effects, job: JobId, result: Completion) {
    let Some(Job::GroupStore(j)) = fx.jobs.remove(&job) else { return };
    let ok = matches!(result, Completion::Done);
    if j.seq > 0
        && let Some(g) = st.groups.consumer.get_mut(&j.group)
    {
        g.put_done(j.seq, ok);
    }
    match j.then {
        StoreThen::Nothing => {}
        StoreThen::Sync { generation } => {
            run(st, fx, &j.group, |g, cx| g.on_stored(cx, generation, ok));
        }
        StoreThen::Reply(req, mut body) => {
            if !ok {
                match body.as_mut() {
                    ResponseBody::JoinGroup(r) => r.error_code = ErrorCode::COORDINATOR_NOT_AVAILABLE.0,
                    ResponseBody::SyncGroup(r) => {
                        *r = crate::codec::generated::sync_group::SyncGroupResponse {
                            error_code: ErrorCode::COORDINATOR_NOT_AVAILABLE.0,
                            ..Default::default()
                        };
                    }
                    ResponseBody::ConsumerGroupHeartbeat(r) => {
                        // The member must retry: nothing it was told is durable.
                        *r = crate::codec::generated::consumer_group_heartbeat::ConsumerGroupHeartbeatResponse {
                            error_code: ErrorCode::COORDINATOR_NOT_AVAILABLE.0,
                            error_message: Some(KStr::from("The group could not be stored.")),
                            ..Default::default()
                        };
                    }
                    _ => {}
                }
            }
            fx.respond(req, *body);
        }
    }
}

/// A group timer fired.
pub(crate) fn timer(st: &mut State, fx: &mut Effects, t: GroupTimer) {
    match t {
        GroupTimer::Heartbeat { group, member } => run(st, fx, &group, |g, cx| g.on_session_timer(cx, &member)),
        GroupTimer::Join { group } => run(st, fx, &group, |g, cx| g.on_join_timer(cx)),
        GroupTimer::Sync { group, generation } => run(st, fx, &group, |g, cx| g.on_sync_timer(cx, generation)),
    };
}

fn join_error(fx: &mut Effects, req: Req, member_id: &KStr, code: ErrorCode) {
    fx.respond(req, crate::group::classic::join_error(member_id.clone(), code));
}

pub(crate) fn join_group(st: &mut State, fx: &mut Effects, req: Req, client: Client, m: &JoinGroupRequest) {
    if !may_read(st, &req, &m.group_id) {
        // Kafka's answer names no member (JoinGroupRequest.getErrorResponse).
        return join_error(fx, req, &KStr::default(), ErrorCode::GROUP_AUTHORIZATION_FAILED);
    }
    if m.group_id.is_empty() {
        return join_error(fx, req, &m.member_id, ErrorCode::INVALID_GROUP_ID);
    }
    let session = Duration::from_millis(i64::from(m.session_timeout_ms));
    if m.session_timeout_ms <= 0
        || session < st.cfg.group_min_session_timeout
        || session > st.cfg.group_max_session_timeout
    {
        return join_error(fx, req, &m.member_id, ErrorCode::INVALID_SESSION_TIMEOUT);
    }
    if let Some(g) = st.groups.consumer.get(&m.group_id) {
        // A classic member joins a consumer group with members as one of them (Kafka 4); an
        // empty one becomes classic (its offsets stay).
        if !g.members.is_empty() {
            return super::consumer::classic_join(st, fx, req, client, m);
        }
        if let Some(mut g) = st.groups.consumer.remove(&m.group_id) {
            g.kill();
        }
    }
    if !st.groups.classic.contains_key(&m.group_id) {
        if !m.member_id.is_empty() {
            return join_error(fx, req, &m.member_id, ErrorCode::UNKNOWN_MEMBER_ID);
        }
        st.groups.classic.insert(m.group_id.clone(), ClassicGroup::new(m.group_id.clone()));
    }
    run(st, fx, &m.group_id, |g, cx| g.join(cx, req, m, &client));
}

pub(crate) fn sync_group(st: &mut State, fx: &mut Effects, req: Req, m: &SyncGroupRequest) {
    if !may_read(st, &req, &m.group_id) {
        // Kafka checks first that v5+ names the protocol type and name.
        let unnamed = req.version >= 5 && (m.protocol_type.is_none() || m.protocol_name.is_none());
        let code = if unnamed { ErrorCode::INCONSISTENT_GROUP_PROTOCOL } else { ErrorCode::GROUP_AUTHORIZATION_FAILED };
        return fx.respond(req, sync_error(code));
    }
    if st.groups.consumer.get(&m.group_id).is_some_and(|g| !g.members.is_empty()) {
        return super::consumer::classic_sync(st, fx, req, m);
    }
    if run(st, fx, &m.group_id, |g, cx| g.sync(cx, req, m)).is_none() {
        let code = if m.group_id.is_empty() { ErrorCode::INVALID_GROUP_ID } else { ErrorCode::UNKNOWN_MEMBER_ID };
        fx.respond(req, sync_error(code));
    }
}

pub(crate) fn heartbeat(st: &mut State, fx: &mut Effects, req: Req, m: &HeartbeatRequest) {
    if !may_read(st, &req, &m.group_id) {
        let code = ErrorCode::GROUP_AUTHORIZATION_FAILED;
        return fx
            .respond(req, ResponseBody::Heartbeat(HeartbeatResponse { error_code: code.0, ..Default::default() }));
    }
    if st.groups.consumer.contains_key(&m.group_id) {
        let code = super::consumer::classic_heartbeat(st, fx, m);
        return fx
            .respond(req, ResponseBody::Heartbeat(HeartbeatResponse { error_code: code.0, ..Default::default() }));
    }
    let code =
        run(st, fx, &m.group_id, |g, cx| g.heartbeat(cx, &m.member_id, m.group_instance_id.as_ref(), m.generation_id))
            .unwrap_or(ErrorCode::UNKNOWN_MEMBER_ID);
    fx.respond(req, ResponseBody::Heartbeat(HeartbeatResponse { error_code: code.0, ..Default::default() }));
}

pub(crate) fn leave_group(st: &mut State, fx: &mut Effects, req: Req, m: &LeaveGroupRequest) {
    if !may_read(st, &req, &m.group_id) {
        // A top-level error and no members, at every version.
        return fx.respond(req, leave_response(req.version, &[], ErrorCode::GROUP_AUTHORIZATION_FAILED, &[]));
    }
    let members: Vec<MemberIdentity> = if req.version >= 3 {
        m.members.clone()
    } else {
        vec![MemberIdentity { member_id: m.member_id.clone(), ..Default::default() }]
    };
    if st.groups.consumer.get(&m.group_id).is_some_and(|g| !g.members.is_empty()) {
        let version = req.version;
        let respond = |codes: Vec<(KStr, ErrorCode)>| leave_response(version, &members, ErrorCode::NONE, &codes);
        return super::consumer::classic_leave(st, fx, req, &m.group_id, &members, respond);
    }
    let result = run(st, fx, &m.group_id, |g, cx| {
        if g.state() == GroupState::Dead {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        let codes: Vec<ErrorCode> =
            members.iter().map(|x| g.leave(cx, &x.member_id, x.group_instance_id.as_ref())).collect();
        if codes.contains(&ErrorCode::NONE) {
            g.after_removal(cx);
        }
        Ok(codes)
    });
    let (top, codes) = match result {
        None => (ErrorCode::NONE, vec![ErrorCode::UNKNOWN_MEMBER_ID; members.len()]),
        Some(Err(code)) => (code, Vec::new()),
        Some(Ok(codes)) => (ErrorCode::NONE, codes),
    };
    let codes: Vec<(KStr, ErrorCode)> = members.iter().zip(codes).map(|(x, c)| (x.member_id.clone(), c)).collect();
    fx.respond(req, leave_response(req.version, &members, top, &codes));
}

/// A LeaveGroup answer: `codes` holds, per member asked for, the member id (the one found by
/// instance id, when found) and its result.
fn leave_response(
    version: i16,
    members: &[MemberIdentity],
    top: ErrorCode,
    codes: &[(KStr, ErrorCode)],
) -> ResponseBody {
    let mut resp = LeaveGroupResponse { error_code: top.0, ..Default::default() };
    if version >= 3 {
        resp.members = members
            .iter()
            .zip(codes)
            .map(|(x, (id, c))| MemberResponse {
                member_id: id.clone(),
                group_instance_id: x.group_instance_id.clone(),
                error_code: c.0,
                ..Default::default()
            })
            .collect();
    } else if top == ErrorCode::NONE {
        resp.error_code = codes.first().map_or(ErrorCode::NONE, |c| c.1).0;
    }
    ResponseBody::LeaveGroup(resp)
}

pub(crate) fn list_groups(st: &mut State, fx: &mut Effects, req: Req, m: &ListGroupsRequest) {
    let states = if req.version >= 4 { m.states_filter.as_slice() } else { &[] };
    let types = if req.version >= 5 { m.types_filter.as_slice() } else { &[] };
    let wants = |t: &str| types.is_empty() || types.iter().any(|x| x.eq_ignore_ascii_case(t));
    let in_state = |s: &str| states.is_empty() || states.iter().any(|x| x.eq_ignore_ascii_case(s));
    let mut groups: Vec<ListedGroup> = Vec::new();
    if wants("classic") {
        groups.extend(
            st.groups.classic.values().filter(|g| g.state() != GroupState::Dead && in_state(g.state().name())).map(
                |g| ListedGroup {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    group_state: KStr::from(g.state().name()),
                    group_type: KStr::from("classic"),
                    ..Default::default()
                },
            ),
        );
    }
    if wants("consumer") {
        groups.extend(st.groups.consumer.values().filter(|g| in_state(g.state().name())).map(|g| ListedGroup {
            group_id: g.id.clone(),
            protocol_type: KStr::from("consumer"),
            group_state: KStr::from(g.state().name()),
            group_type: KStr::from("consumer"),
            ..Default::default()
        }));
    }
    // Kafka lists every group to a principal that may DESCRIBE the cluster, else only the
    // groups it may DESCRIBE.
    let all = st.allowed(&req, Operation::DESCRIBE, ResourceType::CLUSTER, CLUSTER_NAME);
    groups.retain(|g| all || st.allowed(&req, Operation::DESCRIBE, ResourceType::GROUP, &g.group_id));
    groups.sort_by(|x, y| x.group_id.as_str().cmp(y.group_id.as_str()));
    fx.respond(req, ResponseBody::ListGroups(ListGroupsResponse { groups, ..Default::default() }));
}

pub(crate) fn describe_groups(st: &mut State, fx: &mut Effects, req: Req, m: &DescribeGroupsRequest) {
    let groups = m
        .groups
        .iter()
        .map(|id| {
            if !st.allowed(&req, Operation::DESCRIBE, ResourceType::GROUP, id) {
                // Kafka's `DescribeGroupsResponse.groupError`: empty state and protocol.
                let code = ErrorCode::GROUP_AUTHORIZATION_FAILED;
                return DescribedGroup { group_id: id.clone(), error_code: code.0, ..Default::default() };
            }
            let ops = if m.include_authorized_operations {
                st.authorized_operations(&req, ResourceType::GROUP, id)
            } else {
                OPS_NOT_REQUESTED
            };
            describe_one(st, req.version, id, ops)
        })
        .collect();
    fx.respond(req, ResponseBody::DescribeGroups(DescribeGroupsResponse { groups, ..Default::default() }));
}

/// One group a principal may describe, with `ops` as its authorized operations.
fn describe_one(st: &State, version: i16, id: &KStr, ops: i32) -> DescribedGroup {
    match st.groups.classic.get(id).filter(|g| g.state() != GroupState::Dead) {
        Some(g) => describe(g, ops),
        None if let Some(g) = st.groups.consumer.get(id) => super::consumer::as_classic_description(st, g, ops),
        None if version >= 6 => DescribedGroup {
            group_id: id.clone(),
            error_code: ErrorCode::GROUP_ID_NOT_FOUND.0,
            error_message: Some(KStr::from(format!("Group {id} not found."))),
            authorized_operations: ops,
            ..Default::default()
        },
        None => DescribedGroup {
            group_id: id.clone(),
            group_state: KStr::from(GroupState::Dead.name()),
            authorized_operations: ops,
            ..Default::default()
        },
    }
}

/// Kafka describes members' metadata and assignments only in Stable.
fn describe(g: &ClassicGroup, ops: i32) -> DescribedGroup {
    let stable = g.state() == GroupState::Stable;
    let protocol = g.protocol.clone().unwrap_or_default();
    DescribedGroup {
        group_id: g.id.clone(),
        group_state: KStr::from(g.state().name()),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol_data: if stable { protocol.clone() } else { KStr::default() },
        members: g
            .members
            .values()
            .map(|x| DescribedGroupMember {
                member_id: x.id.clone(),
                group_instance_id: x.instance_id.clone(),
                client_id: x.client_id.clone(),
                client_host: x.client_host.clone(),
                member_metadata: if stable { x.metadata(&protocol).cloned().unwrap_or_default() } else { Bytes::new() },
                member_assignment: if stable { x.assignment.clone() } else { Bytes::new() },
                ..Default::default()
            })
            .collect(),
        authorized_operations: ops,
        ..Default::default()
    }
}

pub(crate) fn delete_groups(st: &mut State, fx: &mut Effects, req: Req, m: &DeleteGroupsRequest) {
    let mut results = Vec::with_capacity(m.groups_names.len());
    let mut keys = Vec::new();
    for id in &m.groups_names {
        let consumer = st.groups.consumer.get(id).map(|g| g.members.is_empty());
        let code = match st.groups.classic.get(id) {
            _ if !st.allowed(&req, Operation::DELETE, ResourceType::GROUP, id) => ErrorCode::GROUP_AUTHORIZATION_FAILED,
            _ if id.is_empty() => ErrorCode::INVALID_GROUP_ID,
            None if consumer == Some(false) => ErrorCode::NON_EMPTY_GROUP,
            None if consumer == Some(true) => ErrorCode::NONE,
            None => ErrorCode::GROUP_ID_NOT_FOUND,
            Some(g) if g.state() == GroupState::Dead => ErrorCode::GROUP_ID_NOT_FOUND,
            Some(g) if g.state() != GroupState::Empty => ErrorCode::NON_EMPTY_GROUP,
            Some(_) => ErrorCode::NONE,
        };
        if code == ErrorCode::NONE
            && let Some(mut g) = st.groups.consumer.remove(id)
        {
            g.kill();
            keys.push(group_key(id));
            for (topic, partition) in st.groups.offsets.remove_group(id) {
                keys.push(offset_key(id, &topic, partition));
            }
        }
        if code == ErrorCode::NONE
            && let Some(mut g) = st.groups.classic.remove(id)
        {
            g.kill();
            fx.cancel(&Timer::Group(GroupTimer::Join { group: id.clone() }));
            keys.push(group_key(id));
            for (topic, partition) in st.groups.offsets.remove_group(id) {
                keys.push(offset_key(id, &topic, partition));
            }
        }
        results.push(DeletableGroupResult { group_id: id.clone(), error_code: code.0, ..Default::default() });
    }
    let body = ResponseBody::DeleteGroups(DeleteGroupsResponse { results, ..Default::default() });
    let job = super::reply_after(st, fx, req, body, keys.len(), Then::DeleteGroups);
    for (part, key) in keys.into_iter().enumerate() {
        fx.storage(CmdOwner::Job { job, part }, Command::Put { key, value: None });
    }
}

/// A failed tombstone leaves the group's data stored: report it on every group deleted.
pub(crate) fn finish_delete_groups(job: &mut ReplyJob) {
    if job.results.iter().all(Option::is_none) {
        return;
    }
    if let ResponseBody::DeleteGroups(r) = &mut job.body {
        for g in r.results.iter_mut().filter(|g| g.error_code == 0) {
            g.error_code = ErrorCode::COORDINATOR_NOT_AVAILABLE.0;
        }
    }
}
