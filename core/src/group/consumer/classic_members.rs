//! Members that speak the classic protocol inside a consumer group: Kafka 4's online migration
//! between the two protocols.
//!
//! A classic group whose members use the consumer embedded protocol becomes a consumer group
//! when a KIP-848 member joins it ([`ConsumerGroup::from_classic`]); its members stay, each as a
//! member with [`ClassicMeta`], and keep talking JoinGroup, SyncGroup and Heartbeat:
//!
//! - JoinGroup ([`ConsumerGroup::classic_join`]) is their heartbeat with a subscription: it
//!   updates the member, moves the target assignment if the group epoch moved, reconciles the
//!   member, and answers at once with the member epoch as the generation. No member leads; the
//!   coordinator assigns.
//! - SyncGroup ([`ConsumerGroup::classic_sync`]) hands back the partitions the member may use.
//! - Heartbeat ([`ConsumerGroup::classic_heartbeat`]) answers REBALANCE_IN_PROGRESS while the
//!   member has something to catch up with, which sends it back to JoinGroup.
//! - LeaveGroup ([`ConsumerGroup::classic_leave`]) removes it.
//!
//! When the last KIP-848 member leaves, the group may turn back into a classic group
//! ([`ConsumerGroup::take_downgrade`]; the conversion itself is in [`crate::api::consumer`],
//! which knows topic names). The migration policy ([`crate::config::MigrationPolicy`]) decides
//! which ways are open.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::{
    Assignment, ClassicMeta, ConsumerGroup, ConsumerMember, Ctx, Effect, MemberState, Refusal, TopicView,
    new_member_id, refuse,
};
use crate::codec::generated::consumer_protocol_assignment::ConsumerProtocolAssignment;
use crate::codec::generated::consumer_protocol_subscription::ConsumerProtocolSubscription;
use crate::codec::generated::join_group::JoinGroupRequest;
use crate::codec::{ErrorCode, KStr, Message, Reader, Uuid};
use crate::group::Client;
use crate::group::classic::ClassicGroup;
use crate::time::Duration;

/// The protocol type of consumers' classic groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// What a classic member's JoinGroup gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassicJoin {
    /// A dynamic member without an id (JoinGroup v4+): it must join again with this one
    /// (MEMBER_ID_REQUIRED).
    IdRequired(KStr),
    /// Joined: its id, its generation (the member epoch) and the protocol it is told to use.
    Joined {
        /// The member id.
        member_id: KStr,
        /// The member epoch, which is its generation.
        generation: i32,
        /// Its first protocol.
        protocol: KStr,
    },
}

/// What a classic member's SyncGroup gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicSync {
    /// The partitions it may use.
    pub assigned: Assignment,
    /// The protocol it was told to use.
    pub protocol: KStr,
    /// The version of the consumer protocol its subscription used (its assignment is written
    /// in the same version).
    pub version: i16,
}

/// A consumer protocol subscription as carried in a classic member's protocol metadata.
struct Subscription {
    topics: Vec<KStr>,
    owned: Vec<(KStr, Vec<i32>)>,
    rack: Option<KStr>,
}

/// The embedded structures' version: the first two bytes, then the structure.
fn embedded_version(metadata: &Bytes) -> Option<i16> {
    let b = metadata.get(..2)?;
    Some(i16::from_be_bytes([b[0], b[1]]))
}

fn read_subscription(metadata: &Bytes) -> Option<Subscription> {
    let version = embedded_version(metadata)?;
    let body = metadata.slice(2..);
    let mut r = Reader::new(&body);
    // Newer versions than this broker knows are read as its newest (Kafka's rule for the
    // embedded protocol: fields are only ever added).
    let s = ConsumerProtocolSubscription::decode(&mut r, version.clamp(0, 3)).ok()?;
    let mut topics = s.topics;
    topics.sort();
    topics.dedup();
    let owned = s.owned_partitions.into_iter().map(|t| (t.topic, t.partitions)).collect();
    Some(Subscription { topics, owned, rack: s.rack_id })
}

fn read_assignment(bytes: &Bytes) -> Option<Vec<(KStr, Vec<i32>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let version = embedded_version(bytes)?;
    let body = bytes.slice(2..);
    let mut r = Reader::new(&body);
    let a = ConsumerProtocolAssignment::decode(&mut r, version.clamp(0, 3)).ok()?;
    Some(a.assigned_partitions.into_iter().map(|t| (t.topic, t.partitions)).collect())
}

/// Partitions named by topic, as ids; names the broker does not know and partitions past a
/// topic's end are left out.
fn by_id(named: &[(KStr, Vec<i32>)], topics: &dyn TopicView) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in named {
        let Some(t) = topics.lookup(name) else { continue };
        let valid = ps.iter().copied().filter(|p| u32::try_from(*p).is_ok_and(|p| p < t.partitions));
        let set: BTreeSet<i32> = valid.collect();
        if !set.is_empty() {
            out.entry(t.id).or_default().extend(set);
        }
    }
    out
}

fn unknown_member(id: &KStr, group: &KStr) -> Refusal {
    refuse(ErrorCode::UNKNOWN_MEMBER_ID, format!("Member {id} is not a member of group {group}."))
}

impl ConsumerGroup {
    /// The classic group `g` as a consumer group (Kafka's `ConsumerGroup.fromClassicGroup`):
    /// each member keeps its last assignment as assigned partitions and target, at the
    /// classic generation as member and group epoch, and keeps talking the classic protocol.
    /// Session timers are armed for every member.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND when a member's embedded consumer protocol cannot be read.
    pub fn from_classic(g: &ClassicGroup, cx: &mut Ctx<'_>, topics: &dyn TopicView) -> Result<Self, Refusal> {
        let malformed = || {
            refuse(
                ErrorCode::GROUP_ID_NOT_FOUND,
                format!(
                    "Cannot upgrade the classic group {} to consumer group because the embedded consumer protocol \
                     is malformed.",
                    g.id
                ),
            )
        };
        let mut out = Self::new(g.id.clone());
        out.epoch = g.generation;
        out.assignment_epoch = g.generation;
        for cm in g.members.values() {
            if cm.protocols.is_empty() {
                return Err(malformed());
            }
            let chosen = g.protocol.as_ref().and_then(|p| cm.metadata(p));
            let metadata = chosen.or_else(|| cm.protocols.first().map(|(_, m)| m)).ok_or_else(malformed)?;
            let sub = read_subscription(metadata).ok_or_else(malformed)?;
            let mut assigned = by_id(&read_assignment(&cm.assignment).ok_or_else(malformed)?, topics);
            // A partition two classic assignments name (one of them stale) goes to the first.
            for (t, ps) in &mut assigned {
                ps.retain(|p| out.owners.get(&(*t, *p)).is_none());
            }
            assigned.retain(|_, ps| !ps.is_empty());
            out.target.insert(cm.id.clone(), assigned.clone());
            out.put_member(ConsumerMember {
                id: cm.id.clone(),
                instance_id: cm.instance_id.clone(),
                rack_id: sub.rack,
                client_id: cm.client_id.clone(),
                client_host: cm.client_host.clone(),
                subscribed: sub.topics,
                regex: None,
                assignor: None,
                rebalance_timeout: cm.rebalance_timeout,
                epoch: g.generation,
                previous_epoch: g.generation,
                state: MemberState::Stable,
                assigned,
                revoking: Assignment::new(),
                classic: Some(ClassicMeta { session_timeout: cm.session_timeout, protocols: cm.protocols.clone() }),
            });
        }
        out.refresh_metadata(topics);
        for m in out.members.values() {
            let at = cx.now + out.session_of(m, cx.cfg);
            cx.out.push(Effect::Arm(out.session_key(&m.id), at));
        }
        Ok(out)
    }

    /// Every timer the group's members may have armed (to cancel them when the group turns
    /// back into a classic group).
    #[must_use]
    pub fn member_timers(&self) -> Vec<super::ConsumerTimer> {
        self.members
            .keys()
            .flat_map(|id| [self.session_key(id), self.revocation_key(id), self.join_key(id), self.sync_key(id)])
            .collect()
    }

    /// Kafka's `supportsClassicProtocols`: the consumer protocol type, and a protocol every
    /// classic member supports.
    fn supports_classic(&self, protocol_type: &str, protocols: &[(KStr, Bytes)]) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        let classic: Vec<&ClassicMeta> = self.members.values().filter_map(|m| m.classic.as_ref()).collect();
        protocols.iter().any(|(p, _)| classic.iter().all(|c| c.protocols.iter().any(|(q, _)| q == p)))
    }

    /// A classic member's JoinGroup (Kafka's `classicGroupJoinToConsumerGroup`). The caller
    /// has checked the session timeout.
    ///
    /// # Errors
    /// GROUP_MAX_SIZE_REACHED, INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID or
    /// FENCED_INSTANCE_ID, with Kafka's messages.
    pub fn classic_join(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &JoinGroupRequest,
        version: i16,
        client: &Client,
        topics: &dyn TopicView,
    ) -> Result<ClassicJoin, Refusal> {
        let unknown = m.member_id.is_empty();
        let mut id = if unknown { new_member_id(cx.rng) } else { m.member_id.clone() };
        let known = self.members.contains_key(&id)
            || m.group_instance_id.as_ref().is_some_and(|i| self.statics.contains_key(i));
        if !known && self.members.len() >= cx.cfg.group_max_size {
            return Err(refuse(
                ErrorCode::GROUP_MAX_SIZE_REACHED,
                format!("The consumer group has reached its maximum capacity of {} members.", cx.cfg.group_max_size),
            ));
        }
        let protocols: Vec<(KStr, Bytes)> = m.protocols.iter().map(|p| (p.name.clone(), p.metadata.clone())).collect();
        if !self.supports_classic(m.protocol_type.as_str(), &protocols) {
            return Err(refuse(
                ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
                format!("Member {id}'s protocols are not supported."),
            ));
        }
        if unknown && version >= 4 && m.group_instance_id.is_none() {
            return Ok(ClassicJoin::IdRequired(id));
        }
        let Some(sub) = protocols.first().and_then(|(_, md)| read_subscription(md)) else {
            return Err(refuse(
                ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
                "Malformed embedded consumer protocol in subscription deserialization.",
            ));
        };
        let mut replaced = false;
        if let Some(instance) = &m.group_instance_id {
            match self.statics.get(instance).cloned() {
                Some(old) if old == id => {}
                // A static member restarted (it lost its member id): it takes the old member's
                // place, partitions and target, under its new id. (A KIP-848 member replaced so
                // does not turn the group back into a classic one, as it may in Kafka.)
                Some(old) if unknown => {
                    self.take_over(cx, &old, &id);
                    replaced = true;
                }
                Some(old) => {
                    return Err(refuse(
                        ErrorCode::FENCED_INSTANCE_ID,
                        format!("Static member {id} with instance id {instance} was fenced by member {old}."),
                    ));
                }
                // A member id the group gave out names its instance id for good.
                None if !unknown => {
                    return Err(refuse(ErrorCode::UNKNOWN_MEMBER_ID, format!("Instance id {instance} is unknown.")));
                }
                None => {}
            }
        }
        let before = self.members.get(&id).cloned();
        if !replaced && before.as_ref().is_some_and(|b| b.classic.is_none()) {
            return Err(refuse(
                ErrorCode::UNKNOWN_MEMBER_ID,
                format!("Member {id} does not use the classic protocol."),
            ));
        }
        let session = Duration::from_millis(i64::from(m.session_timeout_ms));
        let rebalance =
            if m.rebalance_timeout_ms > 0 { Duration::from_millis(i64::from(m.rebalance_timeout_ms)) } else { session };
        let mut member = before.clone().unwrap_or_else(|| ConsumerMember::new(id.clone(), None));
        let mut bump = before.is_none() || member.subscribed != sub.topics;
        member.subscribed = sub.topics;
        member.rebalance_timeout = rebalance;
        if m.group_instance_id.is_some() {
            member.instance_id.clone_from(&m.group_instance_id);
        }
        if sub.rack.is_some() {
            member.rack_id = sub.rack;
        }
        member.client_id = client.id.clone();
        member.client_host = client.host.clone();
        member.classic = Some(ClassicMeta { session_timeout: session, protocols: protocols.clone() });
        self.put_member(member);
        bump |= self.refresh_metadata(topics);
        if bump {
            self.epoch = self.epoch.wrapping_add(1);
        }
        self.maybe_assign(cx.cfg);
        // What it reports owning: a cooperative member keeps its partitions across the join,
        // an eager one gave everything up before it.
        let owned: BTreeSet<(Uuid, i32)> =
            by_id(&sub.owned, topics).iter().flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p))).collect();
        self.reconcile(&id, Some(&owned));
        let Some(after) = self.members.get(&id).cloned() else { return Err(unknown_member(&id, &self.id)) };
        self.arm_timers(cx, before.as_ref(), &after);
        self.joins_due.remove(&id);
        cx.out.push(Effect::Cancel(self.join_key(&id)));
        cx.out.push(Effect::Arm(self.sync_key(&id), cx.now + after.rebalance_timeout));
        if before.as_ref() != Some(&after) || bump {
            cx.out.push(Effect::Store);
        }
        id = after.id;
        let protocol = protocols.first().map(|p| p.0.clone()).unwrap_or_default();
        Ok(ClassicJoin::Joined { member_id: id, generation: after.epoch, protocol })
    }

    /// The member a classic request names: by instance id for a static member.
    fn classic_member(&self, member_id: &KStr, instance: Option<&KStr>) -> Result<&ConsumerMember, Refusal> {
        let id = match instance {
            None => member_id,
            Some(i) => {
                let Some(owner) = self.statics.get(i) else {
                    return Err(refuse(
                        ErrorCode::UNKNOWN_MEMBER_ID,
                        format!("Member with instance id {i} is not a member of group {}.", self.id),
                    ));
                };
                if owner != member_id {
                    return Err(refuse(
                        ErrorCode::FENCED_INSTANCE_ID,
                        format!("Static member {member_id} with instance id {i} was fenced by member {owner}."),
                    ));
                }
                owner
            }
        };
        let m = self.members.get(id).ok_or_else(|| unknown_member(id, &self.id))?;
        if m.classic.is_none() {
            return Err(refuse(
                ErrorCode::UNKNOWN_MEMBER_ID,
                format!("Member {id} does not use the classic protocol."),
            ));
        }
        Ok(m)
    }

    fn check_generation(m: &ConsumerMember, generation: i32) -> Result<(), Refusal> {
        if m.epoch == generation {
            return Ok(());
        }
        Err(refuse(
            ErrorCode::ILLEGAL_GENERATION,
            format!(
                "The request generation id {generation} is not equal to the member epoch {} of member {}.",
                m.epoch, m.id
            ),
        ))
    }

    /// Arms the member's join timer unless it runs already (Kafka's
    /// `scheduleConsumerGroupJoinTimeoutIfAbsent`).
    fn arm_join_if_absent(&mut self, cx: &mut Ctx<'_>, id: &KStr, rebalance: Duration) {
        if self.joins_due.insert(id.clone()) {
            cx.out.push(Effect::Arm(self.join_key(id), cx.now + rebalance));
        }
    }

    /// A classic member's SyncGroup (Kafka's `classicGroupSyncToConsumerGroup`).
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL
    /// or REBALANCE_IN_PROGRESS.
    pub fn classic_sync(
        &mut self,
        cx: &mut Ctx<'_>,
        member_id: &KStr,
        instance: Option<&KStr>,
        generation: i32,
        protocol_type: Option<&KStr>,
        protocol_name: Option<&KStr>,
    ) -> Result<ClassicSync, Refusal> {
        let m = self.classic_member(member_id, instance)?.clone();
        Self::check_generation(&m, generation)?;
        let Some((meta, (protocol, metadata))) =
            m.classic.as_ref().and_then(|c| Some((c, c.protocols.first()?.clone())))
        else {
            return Err(unknown_member(member_id, &self.id));
        };
        if let Some(t) = protocol_type
            && t.as_str() != CONSUMER_PROTOCOL_TYPE
        {
            return Err(refuse(
                ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
                format!(
                    "The protocol type {t} from member {} request is not equal to the group protocol type \
                     {CONSUMER_PROTOCOL_TYPE}.",
                    m.id
                ),
            ));
        }
        if let Some(n) = protocol_name
            && n != &protocol
        {
            return Err(refuse(
                ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
                format!(
                    "The protocol name {n} from member {} request is not equal to the protocol name {protocol} \
                     returned in the join response.",
                    m.id
                ),
            ));
        }
        if self.epoch > m.epoch && m.state != MemberState::UnrevokedPartitions {
            self.arm_join_if_absent(cx, &m.id, m.rebalance_timeout);
            return Err(refuse(
                ErrorCode::REBALANCE_IN_PROGRESS,
                format!(
                    "A new rebalance is triggered in group {} and member {} should rejoin to catch up.",
                    self.id, m.id
                ),
            ));
        }
        cx.out.push(Effect::Cancel(self.sync_key(&m.id)));
        cx.out.push(Effect::Arm(self.session_key(&m.id), cx.now + meta.session_timeout));
        let version = embedded_version(&metadata).unwrap_or(0).clamp(0, 3);
        Ok(ClassicSync { assigned: m.assigned, protocol, version })
    }

    /// A classic member's Heartbeat (Kafka's `classicGroupHeartbeatToConsumerGroup`):
    /// REBALANCE_IN_PROGRESS while it must rejoin, because the group epoch moved past it, it
    /// has partitions to revoke, or partitions it waits for were released.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID or ILLEGAL_GENERATION.
    pub fn classic_heartbeat(
        &mut self,
        cx: &mut Ctx<'_>,
        member_id: &KStr,
        instance: Option<&KStr>,
        generation: i32,
    ) -> Result<ErrorCode, Refusal> {
        let m = self.classic_member(member_id, instance)?.clone();
        Self::check_generation(&m, generation)?;
        let session = self.session_of(&m, cx.cfg);
        cx.out.push(Effect::Arm(self.session_key(&m.id), cx.now + session));
        let rejoin = m.epoch < self.epoch
            || m.state == MemberState::UnrevokedPartitions
            || (m.state == MemberState::UnreleasedPartitions && !self.waits_on_unreleased(&m));
        if rejoin {
            self.arm_join_if_absent(cx, &m.id, m.rebalance_timeout);
            return Ok(ErrorCode::REBALANCE_IN_PROGRESS);
        }
        Ok(ErrorCode::NONE)
    }

    /// Whether a partition of the member's target still belongs to another member.
    fn waits_on_unreleased(&self, m: &ConsumerMember) -> bool {
        let Some(target) = self.target.get(&m.id) else { return false };
        target.iter().any(|(t, ps)| {
            ps.iter().any(|p| {
                !m.assigned.get(t).is_some_and(|a| a.contains(p))
                    && self.owners.get(&(*t, *p)).is_some_and(|o| o != &m.id)
            })
        })
    }

    /// A classic member leaves (LeaveGroup). Returns the id of the member removed.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.
    pub fn classic_leave(
        &mut self,
        cx: &mut Ctx<'_>,
        member_id: &KStr,
        instance: Option<&KStr>,
    ) -> Result<KStr, Refusal> {
        let id = match instance {
            None => member_id.clone(),
            Some(i) => {
                let Some(owner) = self.statics.get(i).cloned() else {
                    return Err(refuse(ErrorCode::UNKNOWN_MEMBER_ID, format!("Instance id {i} is unknown.")));
                };
                // An admin may remove a static member by instance id alone.
                if !member_id.is_empty() && member_id != &owner {
                    return Err(refuse(
                        ErrorCode::FENCED_INSTANCE_ID,
                        format!("Static member {member_id} with instance id {i} was fenced by member {owner}."),
                    ));
                }
                owner
            }
        };
        let m = self.members.get(&id).ok_or_else(|| unknown_member(&id, &self.id))?;
        if m.classic.is_none() {
            return Err(refuse(
                ErrorCode::UNKNOWN_MEMBER_ID,
                format!("Member {id} does not use the classic protocol."),
            ));
        }
        self.remove_member(cx, &id);
        cx.out.push(Effect::Store);
        Ok(id)
    }

    /// A classic member told to rejoin did not within its rebalance timeout: it is fenced.
    pub fn on_join_timer(&mut self, cx: &mut Ctx<'_>, member: &KStr) {
        if self.joins_due.remove(member) && self.remove_member(cx, member) {
            cx.out.push(Effect::Store);
        }
    }

    /// A classic member sent no SyncGroup within its rebalance timeout after its join: it is
    /// fenced.
    pub fn on_sync_timer(&mut self, cx: &mut Ctx<'_>, member: &KStr) {
        if self.members.get(member).is_some_and(|m| m.classic.is_some()) && self.remove_member(cx, member) {
            cx.out.push(Effect::Store);
        }
    }
}
