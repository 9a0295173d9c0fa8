//! KIP-848 consumer group APIs: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
//!
//! These handlers look the group up (creating it, or replacing an empty classic group of the
//! same id), run the pure coordinator in [`crate::group::consumer`] and carry out what it
//! asks for: timers on the broker's table and a `Put` of the group's metadata. A heartbeat
//! that changed the group is answered once its metadata is stored, as Kafka answers after
//! its records commit.
//!
//! Under ACLs, as Kafka 4: a heartbeat needs READ on the group and DESCRIBE on each topic it
//! names, and its regex matches only topics it may DESCRIBE; a describe needs DESCRIBE on the
//! group and hides a group whose assignments name a topic the principal may not DESCRIBE.

use hashbrown::HashMap;

use super::{CmdOwner, Effects, Timer};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::consumer_group_describe::{
    Assignment as DescribedAssignment, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DescribedGroup,
    Member as DescribedMember, TopicPartitions as DescribedPartitions,
};
use crate::codec::generated::consumer_group_heartbeat::{
    Assignment as WireAssignment, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    ResponseTopicPartitions,
};
use crate::codec::generated::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedPartitions,
};
use crate::codec::generated::consumer_protocol_subscription::ConsumerProtocolSubscription;
use crate::codec::generated::describe_groups::{DescribedGroup as ClassicDescribed, DescribedGroupMember};
use crate::codec::generated::heartbeat::HeartbeatRequest;
use crate::codec::generated::join_group::{JoinGroupRequest, JoinGroupResponse};
use crate::codec::generated::leave_group::MemberIdentity;
use crate::codec::generated::sync_group::{SyncGroupRequest, SyncGroupResponse};
use crate::codec::{ErrorCode, KStr, Message, Writer};
use crate::error::KafkaError;
use crate::group::assignor::{Assignment, TopicInfo};
use crate::group::classic::{ClassicGroup, Member as ClassicMember};
use crate::group::classic::{GroupState, StoreThen};
use crate::group::consumer::{
    CONSUMER_PROTOCOL_TYPE, ClassicJoin, Client, ConsumerGroup, ConsumerTimer, Ctx, Effect, TopicView,
};
use crate::group::group_key;
use crate::io::{Command, ConnId};
use crate::request::Req;
use crate::security::acl::{Authorizer, Operation, ResourceType};
use crate::state::topic_table::TopicTable;
use crate::state::{State, Who};

/// The message of a ConsumerGroupDescribe group whose members hold a topic the principal may
/// not DESCRIBE (Kafka 4, KAFKA-18813).
const UNDESCRIBABLE_TOPICS: &str = "The group has described topic(s) that the client is not authorized to describe.";

fn error_response(code: ErrorCode, msg: String) -> ResponseBody {
    ResponseBody::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
        error_code: code.0,
        error_message: Some(KStr::from(msg)),
        ..Default::default()
    })
}

fn wire_assignment(a: &Assignment) -> WireAssignment {
    WireAssignment {
        topic_partitions: a
            .iter()
            .map(|(t, ps)| ResponseTopicPartitions {
                topic_id: *t,
                partitions: ps.iter().copied().collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The broker's visible topics, as a consumer group sees them. kelp has no internal topics, so
/// a regex may match any of them, except, under ACLs, the topics the member whose heartbeat
/// resolves the regexes may not DESCRIBE (Kafka 4 resolves with the ACLs of the member that
/// triggered the refresh, KAFKA-18813).
struct Visible<'a> {
    topics: &'a TopicTable,
    /// Whose view it is, when ACLs are checked.
    viewer: Option<(&'a Authorizer, Option<&'a Who>)>,
}

impl<'a> Visible<'a> {
    /// Every topic.
    fn all(topics: &'a TopicTable) -> Self {
        Self { topics, viewer: None }
    }

    /// The topics the connection that sent `by` may DESCRIBE, when there is one and ACLs are on
    /// (`State`'s fields, borrowed apart from its groups).
    fn of(topics: &'a TopicTable, authz: &'a Authorizer, who: &'a HashMap<ConnId, Who>, by: Option<Req>) -> Self {
        let viewer = by.filter(|_| authz.enabled).map(|r| (authz, who.get(&r.conn)));
        Self { topics, viewer }
    }
}

impl TopicView for Visible<'_> {
    fn lookup(&self, name: &str) -> Option<TopicInfo> {
        let t = self.topics.by_name(name)?;
        Some(TopicInfo { id: t.id, partitions: u32::try_from(t.partitions.len()).unwrap_or(u32::MAX) })
    }

    fn names(&self) -> Vec<KStr> {
        let seen = |name: &str| match self.viewer {
            None => true,
            Some((authz, who)) => who.is_some_and(|w| {
                authz.authorize(&w.principal, &w.host, Operation::DESCRIBE, ResourceType::TOPIC, name)
            }),
        };
        self.topics.visible().filter(|t| seen(&t.name)).map(|t| t.name.clone()).collect()
    }

    fn generation(&self) -> u64 {
        self.topics.names_generation()
    }
}

/// Matches the recovered groups' regex subscriptions against the recovered topics.
pub(crate) fn resolve_recovered(st: &mut State) {
    let topics = Visible::all(&st.topics);
    for g in st.groups.consumer.values_mut() {
        g.resolve_regexes(&topics);
    }
}

/// Runs `f` on the consumer group `group` with a fresh effect sink and the broker's topics as
/// the sender of `by` sees them, then carries the effects out. Returns `None` when there is no
/// such group.
fn run<R>(
    st: &mut State,
    fx: &mut Effects,
    group: &KStr,
    by: Option<Req>,
    f: impl FnOnce(&mut ConsumerGroup, &mut Ctx<'_>, &dyn TopicView) -> R,
) -> Option<(R, bool)> {
    let mut out = Vec::new();
    let r = {
        let g = st.groups.consumer.get_mut(group)?;
        let topics = Visible::of(&st.topics, &st.authz, &st.who, by);
        let mut cx = Ctx { now: st.now.mono, cfg: &st.cfg, rng: &mut st.rng, out: &mut out };
        f(g, &mut cx, &topics)
    };
    Some((r, carry_out(fx, out)))
}

/// Arms and disarms the timers a consumer group asked for; returns whether it asked to be
/// stored.
fn carry_out(fx: &mut Effects, effects: Vec<Effect>) -> bool {
    let mut store = false;
    for e in effects {
        match e {
            Effect::Arm(t, at) => fx.arm(Timer::Consumer(t), at),
            Effect::Cancel(t) => fx.cancel(&Timer::Consumer(t)),
            Effect::Store => store = true,
        }
    }
    store
}

/// The `Put` of a consumer group's current metadata, numbered.
fn put_group(st: &mut State, group: &KStr) -> Option<(Command, u64)> {
    let g = st.groups.consumer.get_mut(group)?;
    let seq = g.next_put();
    Some((Command::Put { key: group_key(group), value: Some(g.encode()) }, seq))
}

/// Kafka's checks of a heartbeat at entry (KafkaApis, Kafka 4): READ on the group, then DESCRIBE
/// on every topic subscribed to by name (KAFKA-18813; a regex only matches the topics the member
/// may DESCRIBE, see [`Visible`]).
fn heartbeat_refusal(st: &State, req: &Req, m: &ConsumerGroupHeartbeatRequest) -> Option<ErrorCode> {
    if !st.allowed(req, Operation::READ, ResourceType::GROUP, &m.group_id) {
        return Some(ErrorCode::GROUP_AUTHORIZATION_FAILED);
    }
    let names = m.subscribed_topic_names.as_deref().unwrap_or_default();
    names
        .iter()
        .any(|t| !st.allowed(req, Operation::DESCRIBE, ResourceType::TOPIC, t))
        .then_some(ErrorCode::TOPIC_AUTHORIZATION_FAILED)
}

pub(crate) fn heartbeat(st: &mut State, fx: &mut Effects, req: Req, client: Client, m: &ConsumerGroupHeartbeatRequest) {
    if let Some(code) = heartbeat_refusal(st, &req, m) {
        // Kafka's answer carries no message (ConsumerGroupHeartbeatRequest.getErrorResponse).
        let resp = ConsumerGroupHeartbeatResponse { error_code: code.0, ..Default::default() };
        return fx.respond(req, ResponseBody::ConsumerGroupHeartbeat(resp));
    }
    if let Err(KafkaError { code, message: msg }) = crate::group::consumer::validate_request(m, req.version) {
        return fx.respond(req, error_response(code, msg));
    }
    // The consumer group a classic group with members becomes, with the timers it arms: kept
    // only if this heartbeat is accepted (Kafka writes the conversion with the heartbeat's own
    // records), else the classic group stays as it was.
    let mut upgrade_timers = None;
    if let Some(classic) = st.groups.classic.get(&m.group_id) {
        // An empty classic group (e.g. one that only holds offsets) becomes a consumer group;
        // one with members does when the migration policy allows upgrades and its members use
        // the consumer protocol type (Kafka's online upgrade).
        let empty = classic.state() == GroupState::Empty;
        let upgrade = st.cfg.group_consumer_migration_policy.upgrades()
            && classic.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
            && classic.members.len() <= st.cfg.group_max_size;
        if m.member_epoch != 0 || !(empty || upgrade) {
            let msg = format!("Group {} is not a consumer group.", m.group_id);
            return fx.respond(req, error_response(ErrorCode::GROUP_ID_NOT_FOUND, msg));
        }
        if empty {
            if let Some(mut g) = st.groups.classic.remove(&m.group_id) {
                g.kill();
            }
        } else {
            match upgraded(st, &m.group_id) {
                Ok((g, timers)) => {
                    st.groups.consumer.insert(m.group_id.clone(), g);
                    upgrade_timers = Some(timers);
                }
                Err(KafkaError { code, message }) => return fx.respond(req, error_response(code, message)),
            }
        }
    }
    let created = !st.groups.consumer.contains_key(&m.group_id);
    if created {
        if m.member_epoch != 0 {
            let msg = format!("Group {} not found.", m.group_id);
            let code = if m.member_epoch > 0 { ErrorCode::UNKNOWN_MEMBER_ID } else { ErrorCode::GROUP_ID_NOT_FOUND };
            return fx.respond(req, error_response(code, msg));
        }
        let mut g = ConsumerGroup::new(m.group_id.clone());
        if let Some(c) = st.groups.configs.get(&m.group_id) {
            g.session_timeout = c.session_timeout_ms.map(|_| c.session_timeout(&st.cfg));
        }
        st.groups.consumer.insert(m.group_id.clone(), g);
    }
    let own = st.groups.configs.get(&m.group_id).copied().unwrap_or_default();
    let interval = i32::try_from(own.heartbeat_interval(&st.cfg).as_millis()).unwrap_or(i32::MAX);
    let Some((result, store)) =
        run(st, fx, &m.group_id, Some(req), |g, cx, topics| g.heartbeat(cx, m, &client, topics))
    else {
        return;
    };
    let failed = result.is_err();
    let body = match result {
        Ok(beat) => ResponseBody::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
            member_id: Some(beat.member_id),
            member_epoch: beat.epoch,
            heartbeat_interval_ms: interval,
            assignment: beat.assignment.as_ref().map(wire_assignment),
            ..Default::default()
        }),
        Err(KafkaError { code, message }) => error_response(code, message),
    };
    if failed && created && st.groups.consumer.get(&m.group_id).is_some_and(|g| g.members.is_empty()) {
        // A refused first member leaves no group behind.
        st.groups.consumer.remove(&m.group_id);
    }
    if let Some(timers) = upgrade_timers {
        if failed {
            // A refused heartbeat leaves the classic group as it was.
            if let Some(g) = st.groups.consumer.remove(&m.group_id) {
                for t in g.member_timers() {
                    fx.cancel(&Timer::Consumer(t));
                }
            }
            return fx.respond(req, body);
        }
        hand_over_classic(st, fx, &m.group_id, timers);
    }
    if maybe_downgrade(st, fx, &m.group_id) {
        return fx.respond(req, body);
    }
    answer(st, fx, req, &m.group_id, body, store, !failed);
}

/// Answers `req` with `body` once the group is stored: after a `Put` when `store` asks for one,
/// and also when a successful answer (`ok`) would tell what an earlier `Put`, failed or still
/// running, has not stored yet.
fn answer(st: &mut State, fx: &mut Effects, req: Req, group: &KStr, body: ResponseBody, store: bool, ok: bool) {
    let unsaved = ok && st.groups.consumer.get(group).is_some_and(|g| !g.is_saved());
    let put = if store || unsaved { put_group(st, group) } else { None };
    match put {
        None => fx.respond(req, body),
        Some((cmd, seq)) => {
            let then = StoreThen::Reply(req, Box::new(body));
            let job = fx.park(super::Job::GroupStore(super::group::StoreJob::consumer(group.clone(), seq, then)));
            fx.storage(CmdOwner::Job { job, part: 0 }, cmd);
        }
    }
}

/// The classic group `id`, which has members, as a consumer group (Kafka's online upgrade),
/// with the session timers its members need: its members stay, speaking the classic protocol,
/// and rejoin as the new member's arrival moves the group epoch. The classic group is left in
/// place ([`hand_over_classic`] retires it once the heartbeat that asked is accepted).
fn upgraded(st: &mut State, id: &KStr) -> Result<(ConsumerGroup, Vec<Effect>), KafkaError> {
    let Some(classic) = st.groups.classic.get(id) else {
        return Err(KafkaError::new(ErrorCode::GROUP_ID_NOT_FOUND, format!("Group {id} not found.")));
    };
    let mut out = Vec::new();
    let mut g = {
        let topics = Visible::all(&st.topics);
        let mut cx = Ctx { now: st.now.mono, cfg: &st.cfg, rng: &mut st.rng, out: &mut out };
        ConsumerGroup::from_classic(classic, &mut cx, &topics)?
    };
    if let Some(c) = st.groups.configs.get(id) {
        g.session_timeout = c.session_timeout_ms.map(|_| c.session_timeout(&st.cfg));
    }
    Ok((g, out))
}

/// Retires the classic group a consumer group was made from: its parked requests are answered
/// REBALANCE_IN_PROGRESS and its timers disarmed; the consumer group's members' timers are armed.
fn hand_over_classic(st: &mut State, fx: &mut Effects, id: &KStr, timers: Vec<Effect>) {
    if let Some(mut old) = st.groups.classic.remove(id) {
        let mut handed = Vec::new();
        let mut cx = crate::group::classic::Ctx { now: st.now.mono, cfg: &st.cfg, rng: &mut st.rng, out: &mut handed };
        old.hand_over(&mut cx);
        super::group::apply(st, fx, id, handed);
    }
    // The converted group is stored with the accepted heartbeat.
    carry_out(fx, timers);
}

/// Turns the consumer group `id` back into a classic group when its last KIP-848 member just
/// left, only classic members remain and the migration policy allows downgrades (Kafka's
/// online downgrade). Each member keeps its target assignment; a rebalance starts at once.
/// Returns whether the group was converted (its classic form is then being stored).
fn maybe_downgrade(st: &mut State, fx: &mut Effects, id: &KStr) -> bool {
    let Some(g) = st.groups.consumer.get_mut(id) else { return false };
    let Some(generation) = g.take_downgrade() else { return false };
    if !st.cfg.group_consumer_migration_policy.downgrades() || g.members.len() > st.cfg.group_max_size {
        return false;
    }
    let Some(g) = st.groups.consumer.remove(id) else { return false };
    for t in g.member_timers() {
        fx.cancel(&Timer::Consumer(t));
    }
    let members: Vec<ClassicMember> = g
        .members
        .values()
        .filter_map(|m| {
            let c = m.classic.as_ref()?;
            Some(ClassicMember {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: c.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocols: c.protocols.clone(),
                assignment: bytes::Bytes::new(),
                join: None,
                sync: None,
                is_new: false,
            })
        })
        .collect();
    let mut out = Vec::new();
    let classic = {
        let topics = &st.topics;
        let empty = Assignment::new();
        let assignment = |m: &ClassicMember, protocol: &str| {
            let version =
                m.metadata(protocol).and_then(|md| md.get(..2)).map_or(0, |b| i16::from_be_bytes([b[0], b[1]]));
            let target = g.target.get(&m.id).unwrap_or(&empty);
            embedded_at(&named_assignment(topics, target), version.clamp(0, 3))
        };
        let mut cx = crate::group::classic::Ctx { now: st.now.mono, cfg: &st.cfg, rng: &mut st.rng, out: &mut out };
        ClassicGroup::downgraded(id.clone(), generation, members, assignment, &mut cx)
    };
    st.groups.classic.insert(id.clone(), classic);
    super::group::apply(st, fx, id, out);
    true
}

/// Partitions by topic name, in the embedded consumer protocol's form; topics deleted since are
/// left out.
fn named_assignment(topics: &TopicTable, a: &Assignment) -> ConsumerProtocolAssignment {
    ConsumerProtocolAssignment {
        assigned_partitions: a
            .iter()
            .filter_map(|(t, ps)| {
                Some(AssignedPartitions {
                    topic: topics.by_id(*t)?.name.clone(),
                    partitions: ps.iter().copied().collect(),
                })
            })
            .collect(),
        ..Default::default()
    }
}

/// Runs `f` on the consumer group `group` and answers `req` with what it gives, once stored;
/// `None` from `run` (no such group) gets `missing`.
pub(crate) fn classic_join(st: &mut State, fx: &mut Effects, req: Req, client: Client, m: &JoinGroupRequest) {
    let run_result =
        run(st, fx, &m.group_id, Some(req), |g, cx, topics| g.classic_join(cx, m, req.version, &client, topics));
    let Some((result, store)) = run_result else {
        return fx.respond(req, crate::group::classic::join_error(m.member_id.clone(), ErrorCode::UNKNOWN_MEMBER_ID));
    };
    let ok = result.is_ok();
    let body = match result {
        Ok(ClassicJoin::IdRequired(id)) => crate::group::classic::join_error(id, ErrorCode::MEMBER_ID_REQUIRED),
        Ok(ClassicJoin::Joined { member_id, generation, protocol }) => ResponseBody::JoinGroup(JoinGroupResponse {
            generation_id: generation,
            protocol_type: Some(KStr::from(CONSUMER_PROTOCOL_TYPE)),
            protocol_name: Some(protocol),
            // No member leads: the coordinator assigns, and SyncGroup hands each its part.
            leader: KStr::default(),
            member_id,
            ..Default::default()
        }),
        Err(KafkaError { code, .. }) => crate::group::classic::join_error(m.member_id.clone(), code),
    };
    answer(st, fx, req, &m.group_id, body, store, ok);
}

/// A classic member's SyncGroup in a consumer group: its assigned partitions, in the version of
/// the consumer protocol it subscribed with.
pub(crate) fn classic_sync(st: &mut State, fx: &mut Effects, req: Req, m: &SyncGroupRequest) {
    let result = run(st, fx, &m.group_id, None, |g, cx, _| {
        g.classic_sync(
            cx,
            &m.member_id,
            m.group_instance_id.as_ref(),
            m.generation_id,
            m.protocol_type.as_ref(),
            m.protocol_name.as_ref(),
        )
    });
    let body = match result {
        Some((Ok(s), _)) => ResponseBody::SyncGroup(SyncGroupResponse {
            protocol_type: Some(KStr::from(CONSUMER_PROTOCOL_TYPE)),
            protocol_name: Some(s.protocol),
            assignment: embedded_at(&named_assignment(&st.topics, &s.assigned), s.version),
            ..Default::default()
        }),
        Some((Err(KafkaError { code, .. }), _)) => crate::group::classic::sync_error(code),
        None => crate::group::classic::sync_error(ErrorCode::UNKNOWN_MEMBER_ID),
    };
    let ok = matches!(&body, ResponseBody::SyncGroup(r) if r.error_code == 0);
    answer(st, fx, req, &m.group_id, body, false, ok);
}

/// A classic member's Heartbeat in a consumer group.
pub(crate) fn classic_heartbeat(st: &mut State, fx: &mut Effects, m: &HeartbeatRequest) -> ErrorCode {
    let result = run(st, fx, &m.group_id, None, |g, cx, _| {
        g.classic_heartbeat(cx, &m.member_id, m.group_instance_id.as_ref(), m.generation_id)
    });
    match result {
        Some((Ok(code), _)) => code,
        Some((Err(e), _)) => e.code,
        None => ErrorCode::UNKNOWN_MEMBER_ID,
    }
}

/// Classic members leaving a consumer group: one code per member, then the group is stored.
pub(crate) fn classic_leave(
    st: &mut State,
    fx: &mut Effects,
    req: Req,
    group: &KStr,
    members: &[MemberIdentity],
    respond: impl FnOnce(Vec<(KStr, ErrorCode)>) -> ResponseBody,
) {
    let result = run(st, fx, group, None, |g, cx, _| {
        members
            .iter()
            .map(|x| match g.classic_leave(cx, &x.member_id, x.group_instance_id.as_ref()) {
                Ok(id) => (id, ErrorCode::NONE),
                Err(e) => (x.member_id.clone(), e.code),
            })
            .collect::<Vec<_>>()
    });
    let (codes, store) = result.unwrap_or_else(|| {
        (members.iter().map(|x| (x.member_id.clone(), ErrorCode::UNKNOWN_MEMBER_ID)).collect(), false)
    });
    answer(st, fx, req, group, respond(codes), store, true);
}

/// A consumer group timer fired.
pub(crate) fn timer(st: &mut State, fx: &mut Effects, t: ConsumerTimer) {
    let group = t.group().clone();
    let done = run(st, fx, &group, None, |g, cx, _| match &t {
        ConsumerTimer::Session { member, .. } => g.on_session_timer(cx, member),
        ConsumerTimer::Revocation { member, .. } => g.on_revocation_timer(cx, member),
        ConsumerTimer::Join { member, .. } => g.on_join_timer(cx, member),
        ConsumerTimer::Sync { member, .. } => g.on_sync_timer(cx, member),
    });
    if maybe_downgrade(st, fx, &group) {
        return;
    }
    if let Some(((), true)) = done
        && let Some((cmd, seq)) = put_group(st, &group)
    {
        let job = fx.park(super::Job::GroupStore(super::group::StoreJob::consumer(group, seq, StoreThen::Nothing)));
        fx.storage(CmdOwner::Job { job, part: 0 }, cmd);
    }
}

fn described_assignment(st: &State, a: &Assignment) -> DescribedAssignment {
    DescribedAssignment {
        topic_partitions: a
            .iter()
            .map(|(t, ps)| DescribedPartitions {
                topic_id: *t,
                topic_name: st.topics.by_id(*t).map(|x| x.name.clone()).unwrap_or_default(),
                partitions: ps.iter().copied().collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn describe(st: &mut State, fx: &mut Effects, req: Req, m: &ConsumerGroupDescribeRequest) {
    let groups = m
        .group_ids
        .iter()
        .map(|id| {
            if !st.allowed(&req, Operation::DESCRIBE, ResourceType::GROUP, id) {
                let code = ErrorCode::GROUP_AUTHORIZATION_FAILED;
                return DescribedGroup { group_id: id.clone(), error_code: code.0, ..Default::default() };
            }
            let ops = if m.include_authorized_operations {
                st.authorized_operations(&req, ResourceType::GROUP, id)
            } else {
                super::group::OPS_NOT_REQUESTED
            };
            let described = describe_one(st, id, ops);
            if names_undescribable_topic(st, &req, &described) {
                // Kafka 4 hides the whole group (KAFKA-18813).
                let code = ErrorCode::TOPIC_AUTHORIZATION_FAILED;
                return DescribedGroup {
                    group_id: id.clone(),
                    error_code: code.0,
                    error_message: Some(KStr::from(UNDESCRIBABLE_TOPICS)),
                    ..Default::default()
                };
            }
            described
        })
        .collect();
    let resp = ConsumerGroupDescribeResponse { groups, ..Default::default() };
    fx.respond(req, ResponseBody::ConsumerGroupDescribe(resp));
}

/// Whether a member of `g` is assigned, or is to be assigned, a topic the connection that
/// sent `req` may not DESCRIBE (topics deleted since, which have no name, aside).
fn names_undescribable_topic(st: &State, req: &Req, g: &DescribedGroup) -> bool {
    g.members
        .iter()
        .flat_map(|x| x.assignment.topic_partitions.iter().chain(&x.target_assignment.topic_partitions))
        .any(|t| !t.topic_name.is_empty() && !st.allowed(req, Operation::DESCRIBE, ResourceType::TOPIC, &t.topic_name))
}

/// One consumer group a principal may describe, with `ops` as its authorized operations.
fn describe_one(st: &State, id: &KStr, ops: i32) -> DescribedGroup {
    let not_found = |code: ErrorCode, msg: String| DescribedGroup {
        group_id: id.clone(),
        error_code: code.0,
        error_message: Some(KStr::from(msg)),
        group_state: KStr::from("Dead"),
        authorized_operations: ops,
        ..Default::default()
    };
    if id.is_empty() {
        return not_found(ErrorCode::INVALID_GROUP_ID, "The group id can't be empty.".into());
    }
    let Some(g) = st.groups.consumer.get(id) else {
        let msg = if st.groups.classic.contains_key(id) {
            format!("Group {id} is not a consumer group.")
        } else {
            format!("Group {id} not found.")
        };
        return not_found(ErrorCode::GROUP_ID_NOT_FOUND, msg);
    };
    DescribedGroup {
        group_id: id.clone(),
        group_state: KStr::from(g.state().name()),
        group_epoch: g.epoch,
        assignment_epoch: g.assignment_epoch,
        assignor_name: KStr::from(g.assignor(&st.cfg)),
        members: g
            .members
            .values()
            .map(|x| DescribedMember {
                member_id: x.id.clone(),
                instance_id: x.instance_id.clone(),
                rack_id: x.rack_id.clone(),
                member_epoch: x.epoch,
                client_id: x.client_id.clone(),
                client_host: x.client_host.clone(),
                subscribed_topic_names: x.subscribed.clone(),
                subscribed_topic_regex: x.regex.clone(),
                assignment: described_assignment(st, &x.assigned),
                target_assignment: described_assignment(st, g.target.get(&x.id).unwrap_or(&Assignment::new())),
                ..Default::default()
            })
            .collect(),
        authorized_operations: ops,
        ..Default::default()
    }
}

/// The version of the embedded consumer protocol structures DescribeGroups carries.
const EMBEDDED_VERSION: i16 = 3;

fn embedded(m: &impl Message) -> bytes::Bytes {
    embedded_at(m, EMBEDDED_VERSION)
}

/// An embedded consumer protocol structure: its version, then the structure in it.
fn embedded_at(m: &impl Message, version: i16) -> bytes::Bytes {
    let mut w = Writer::contiguous(2 + m.encoded_len(version));
    w.i16(version);
    m.encode(&mut w, version);
    w.into_bytes()
}

/// A consumer group as the classic DescribeGroups API shows it (Kafka's
/// `ConsumerGroup.asDescribedGroup`): protocol type `consumer`, the assignor as the protocol,
/// and each member's subscription and assignment in the embedded consumer protocol format.
pub(crate) fn as_classic_description(st: &State, g: &ConsumerGroup, ops: i32) -> ClassicDescribed {
    let members = g
        .members
        .values()
        .map(|m| {
            let subscription = ConsumerProtocolSubscription {
                topics: g.topics_of(m).into_iter().collect(),
                generation_id: -1,
                rack_id: m.rack_id.clone(),
                ..Default::default()
            };
            let assignment = named_assignment(&st.topics, &m.assigned);
            DescribedGroupMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                member_metadata: embedded(&subscription),
                member_assignment: embedded(&assignment),
                ..Default::default()
            }
        })
        .collect();
    ClassicDescribed {
        group_id: g.id.clone(),
        group_state: KStr::from(g.state().name()),
        protocol_type: KStr::from("consumer"),
        protocol_data: KStr::from(g.assignor(&st.cfg)),
        members,
        authorized_operations: ops,
        ..Default::default()
    }
}
