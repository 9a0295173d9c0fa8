//! The KIP-848 consumer group coordinator (ConsumerGroupHeartbeat) as a pure state machine,
//! after Apache Kafka's `ConsumerGroup`, `CurrentAssignmentBuilder` and the consumer half of
//! its `GroupMetadataManager`.
//!
//! Three epochs drive a group:
//! - the **group epoch** moves on whenever what the assignor sees changes: a member joins or
//!   leaves, a subscription or the chosen assignor changes, or a subscribed topic is created,
//!   deleted or gains partitions (checked on every heartbeat). A member subscribes by topic
//!   names, by a regular expression (ConsumerGroupHeartbeat v1, KIP-848), or both; a regex is
//!   matched against every topic's whole name on each heartbeat, so a topic created or deleted
//!   later joins or leaves the subscription on the next heartbeat of any member;
//! - the **target assignment epoch** is the group epoch the target assignment was computed
//!   for (computed on the heartbeat that finds it behind);
//! - each **member epoch** reaches the target assignment epoch through reconciliation: a
//!   partition is first revoked from its previous owner (which acknowledges by heartbeating
//!   without it; the member stays in `UnrevokedPartitions`), and only then handed to its new
//!   owner (which waits in `UnreleasedPartitions` meanwhile). No partition is ever held by two
//!   members: [`ConsumerGroup`] keeps a partition -> owner table and asserts it.
//!
//! Handlers write timers and stores into [`Ctx::out`]; the broker carries them out and
//! builds the responses. Nothing here does IO or reads a clock.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use hashbrown::HashMap;

mod classic_members;

pub use classic_members::{CONSUMER_PROTOCOL_TYPE, ClassicJoin, ClassicSync};

use super::assignor::{self, Assignment, TopicInfo};
use crate::codec::generated::consumer_group_heartbeat::{ConsumerGroupHeartbeatRequest, RequestTopicPartitions};
use crate::codec::{DecodeError, ErrorCode, KStr, Reader, Uuid, Writer};
use crate::config::Config;
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// Member epoch of a heartbeat that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member that leaves for now and will rejoin with its instance id.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// A consumer group's state as Kafka reports it (ListGroups, ConsumerGroupDescribe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The group epoch is ahead of the target assignment.
    Assigning,
    /// Some member has not reached the target assignment yet.
    Reconciling,
    /// Every member holds its target assignment at the target epoch.
    Stable,
    /// Deleted.
    Dead,
}

impl ConsumerGroupState {
    /// The name Kafka reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Assigning => "Assigning",
            Self::Reconciling => "Reconciling",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// A member's reconciliation state (KIP-848).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Holds its target assignment (or waits for a newer target).
    Stable,
    /// Must give up `revoking` first; keeps its epoch until it heartbeats without them.
    UnrevokedPartitions,
    /// At the target epoch, but some target partitions are still held by other members.
    UnreleasedPartitions,
}

impl MemberState {
    const fn code(self) -> u8 {
        match self {
            Self::Stable => 0,
            Self::UnrevokedPartitions => 1,
            Self::UnreleasedPartitions => 2,
        }
    }

    const fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Self::Stable),
            1 => Some(Self::UnrevokedPartitions),
            2 => Some(Self::UnreleasedPartitions),
            _ => None,
        }
    }
}

/// A consumer group member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMember {
    /// Its member id.
    pub id: KStr,
    /// Its static instance id.
    pub instance_id: Option<KStr>,
    /// Its rack.
    pub rack_id: Option<KStr>,
    /// The client id of its last heartbeat.
    pub client_id: KStr,
    /// The host it heartbeats from.
    pub client_host: KStr,
    /// The topics it subscribes to by name (sorted, distinct).
    pub subscribed: Vec<KStr>,
    /// The regular expression it subscribes with, if any (RE2 syntax, whole-name match).
    pub regex: Option<KStr>,
    /// The server assignor it asked for.
    pub assignor: Option<KStr>,
    /// How long it may take to revoke partitions.
    pub rebalance_timeout: Duration,
    /// Its epoch (-2 while a static member is away).
    pub epoch: i32,
    /// Its epoch before the last bump (a heartbeat with it is still accepted once).
    pub previous_epoch: i32,
    /// Where its reconciliation stands.
    pub state: MemberState,
    /// The partitions it may use.
    pub assigned: Assignment,
    /// The partitions it must give up.
    pub revoking: Assignment,
    /// Set when it speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat): a member of
    /// the classic group this group was upgraded from, or one that joined since.
    pub classic: Option<ClassicMeta>,
}

impl ConsumerMember {
    /// A member joining for the first time: nothing subscribed or assigned, epoch 0.
    #[must_use]
    pub fn new(id: KStr, instance_id: Option<KStr>) -> Self {
        Self {
            id,
            instance_id,
            rack_id: None,
            client_id: KStr::default(),
            client_host: KStr::default(),
            subscribed: Vec::new(),
            regex: None,
            assignor: None,
            rebalance_timeout: Duration::ZERO,
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            classic: None,
        }
    }

    /// What a request at another epoch than the member's gets: ILLEGAL_GENERATION for a
    /// classic member (its generation), STALE_MEMBER_EPOCH otherwise.
    fn stale_epoch_error(&self) -> ErrorCode {
        if self.classic.is_some() { ErrorCode::ILLEGAL_GENERATION } else { ErrorCode::STALE_MEMBER_EPOCH }
    }
}

/// What a member speaking the classic protocol needs beyond a KIP-848 member's record (Kafka's
/// `ClassicMemberMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicMeta {
    /// Its session timeout, from its JoinGroup.
    pub session_timeout: Duration,
    /// Its protocols (client-side assignor names) with their subscription metadata, in its
    /// order of preference.
    pub protocols: Vec<(KStr, Bytes)>,
}

/// Timers a consumer group arms on the broker's timer table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsumerTimer {
    /// A member's session ran out (`group.consumer.session.timeout.ms`).
    Session {
        /// The group.
        group: KStr,
        /// The member.
        member: KStr,
    },
    /// A member did not revoke its partitions within its rebalance timeout.
    Revocation {
        /// The group.
        group: KStr,
        /// The member.
        member: KStr,
    },
    /// A classic member told to rejoin did not within its rebalance timeout.
    Join {
        /// The group.
        group: KStr,
        /// The member.
        member: KStr,
    },
    /// A classic member whose JoinGroup was answered sent no SyncGroup within its rebalance
    /// timeout.
    Sync {
        /// The group.
        group: KStr,
        /// The member.
        member: KStr,
    },
}

impl ConsumerTimer {
    /// The group the timer belongs to.
    #[must_use]
    pub fn group(&self) -> &KStr {
        match self {
            Self::Session { group, .. }
            | Self::Revocation { group, .. }
            | Self::Join { group, .. }
            | Self::Sync { group, .. } => group,
        }
    }
}

/// An effect a handler asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Arm (or re-arm) a timer.
    Arm(ConsumerTimer, Instant),
    /// Disarm a timer.
    Cancel(ConsumerTimer),
    /// Store the group's metadata.
    Store,
}

/// What the KIP-848 coordinator reads and where it writes its effects.
pub type Ctx<'a> = super::Ctx<'a, Effect>;

pub use super::Client;

/// A successful heartbeat's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat {
    /// The member id.
    pub member_id: KStr,
    /// The member epoch.
    pub epoch: i32,
    /// The assignment, when it changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

/// A failed heartbeat: Kafka's error code and message.
pub type Refusal = crate::error::KafkaError;

fn refuse(code: ErrorCode, msg: impl Into<String>) -> Refusal {
    Refusal::new(code, msg)
}

/// A KIP-848 consumer group.
#[derive(Debug)]
pub struct ConsumerGroup {
    /// The group id.
    pub id: KStr,
    /// The group epoch.
    pub epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The members, by id.
    pub members: BTreeMap<KStr, ConsumerMember>,
    /// Static members: instance id -> member id.
    pub statics: BTreeMap<KStr, KStr>,
    /// The target assignment, by member.
    pub target: BTreeMap<KStr, Assignment>,
    /// The subscribed topics as the target assignment saw them.
    pub metadata: BTreeMap<KStr, TopicInfo>,
    /// The topics each members' regex matched at the last heartbeat.
    resolved: BTreeMap<KStr, BTreeSet<KStr>>,
    /// The members' regexes, compiled.
    compiled: HashMap<KStr, regex::Regex>,
    /// What `resolved` was computed from: the topic names' generation and the regexes.
    resolved_for: Option<(u64, BTreeSet<KStr>)>,
    /// The group's own `consumer.session.timeout.ms`, if it has one (see [`super::configs`]).
    pub session_timeout: Option<Duration>,
    /// Who holds each partition (assigned or being revoked).
    owners: HashMap<(Uuid, i32), KStr>,
    /// Classic members whose join timer runs (armed once, when first told to rejoin).
    joins_due: BTreeSet<KStr>,
    /// Set when a KIP-848 member left and only classic members remain, to the group epoch
    /// before it left: the group may turn back into a classic group of that generation
    /// ([`ConsumerGroup::take_downgrade`]).
    downgrade_due: Option<i32>,
    dead: bool,
    /// Sequence number of the last `Put` of this group's metadata handed to the store.
    puts: u64,
    /// The newest of those `Put`s known to have succeeded. While it lags `puts`, memory may
    /// hold what the store does not (a `Put` failed or has not finished), and nothing read
    /// from memory may be answered before a `Put` of it succeeds: a restart would take it
    /// back (Kafka answers only once the coordinator's records are committed, and reverts
    /// its state when a write fails).
    saved: u64,
}

fn partitions_of(a: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    a.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
}

fn owned_from(req: &[RequestTopicPartitions]) -> BTreeSet<(Uuid, i32)> {
    req.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect()
}

fn new_member_id(rng: &mut Rng) -> KStr {
    KStr::from(super::member_uuid(rng).to_string())
}

impl ConsumerGroup {
    /// A new, empty group.
    #[must_use]
    pub fn new(id: KStr) -> Self {
        Self {
            id,
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            statics: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
            resolved: BTreeMap::new(),
            compiled: HashMap::new(),
            resolved_for: None,
            session_timeout: None,
            owners: HashMap::new(),
            joins_due: BTreeSet::new(),
            downgrade_due: None,
            dead: false,
            puts: 0,
            saved: 0,
        }
    }

    /// Numbers a new `Put` of the group's metadata.
    pub fn next_put(&mut self) -> u64 {
        self.puts += 1;
        self.puts
    }

    /// The `Put` numbered `seq` finished (`ok`: it succeeded).
    pub fn put_done(&mut self, seq: u64, ok: bool) {
        if ok {
            self.saved = self.saved.max(seq);
        }
    }

    /// Whether the store holds the group as memory does (every `Put` up to the last one
    /// succeeded).
    #[must_use]
    pub fn is_saved(&self) -> bool {
        self.saved == self.puts
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> ConsumerGroupState {
        if self.dead {
            ConsumerGroupState::Dead
        } else if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.epoch != self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| m.state != MemberState::Stable || m.epoch != self.assignment_epoch) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Marks the group deleted.
    pub fn kill(&mut self) {
        self.dead = true;
    }

    /// Who holds `partition` of `topic` now, if anyone.
    #[must_use]
    pub fn owner(&self, topic: Uuid, partition: i32) -> Option<&KStr> {
        self.owners.get(&(topic, partition))
    }

    /// The server assignor the group uses: the one most members ask for (ties by name), else
    /// the default (`uniform`).
    #[must_use]
    pub fn assignor(&self, cfg: &Config) -> &'static str {
        let allowed = &cfg.group_consumer_assignors;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.assignor.as_deref().and_then(|a| allowed.iter().find(|x| **x == a)) {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
        best.map_or_else(|| allowed.first().copied().unwrap_or(assignor::ASSIGNORS[0]), |(a, _)| a)
    }

    /// Whether a member subscribes to `topic` (OffsetDelete refuses to drop its offsets).
    #[must_use]
    pub fn subscribed_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| self.topics_of(m).contains(topic))
    }

    /// The topics a member subscribes to: its names and what its regex matched.
    #[must_use]
    pub fn topics_of(&self, m: &ConsumerMember) -> BTreeSet<KStr> {
        let mut topics: BTreeSet<KStr> = m.subscribed.iter().cloned().collect();
        if let Some(matched) = m.regex.as_ref().and_then(|r| self.resolved.get(r)) {
            topics.extend(matched.iter().cloned());
        }
        topics
    }

    /// Every topic name some member subscribes to.
    #[must_use]
    pub fn subscribed_topics(&self) -> BTreeSet<KStr> {
        self.members.values().flat_map(|m| self.topics_of(m)).collect()
    }

    fn session_key(&self, member: &KStr) -> ConsumerTimer {
        ConsumerTimer::Session { group: self.id.clone(), member: member.clone() }
    }

    fn revocation_key(&self, member: &KStr) -> ConsumerTimer {
        ConsumerTimer::Revocation { group: self.id.clone(), member: member.clone() }
    }

    fn join_key(&self, member: &KStr) -> ConsumerTimer {
        ConsumerTimer::Join { group: self.id.clone(), member: member.clone() }
    }

    fn sync_key(&self, member: &KStr) -> ConsumerTimer {
        ConsumerTimer::Sync { group: self.id.clone(), member: member.clone() }
    }

    // ---- ownership -------------------------------------------------------------------------

    fn release(&mut self, m: &ConsumerMember) {
        for tp in partitions_of(&m.assigned).chain(partitions_of(&m.revoking)) {
            if self.owners.get(&tp) == Some(&m.id) {
                self.owners.remove(&tp);
            }
        }
    }

    fn claim(&mut self, m: &ConsumerMember) {
        for tp in partitions_of(&m.assigned).chain(partitions_of(&m.revoking)) {
            let prev = self.owners.insert(tp, m.id.clone());
            assert!(
                prev.is_none() || prev.as_ref() == Some(&m.id),
                "group {}: partition {tp:?} given to {} while {prev:?} holds it",
                self.id,
                m.id
            );
        }
    }

    /// Replaces a member's record, moving its partition ownership along.
    fn put_member(&mut self, m: ConsumerMember) {
        if let Some(old) = self.members.remove(&m.id) {
            self.release(&old);
            if let Some(i) = &old.instance_id
                && old.instance_id != m.instance_id
                && self.statics.get(i) == Some(&m.id)
            {
                self.statics.remove(i);
            }
        }
        self.claim(&m);
        if let Some(i) = &m.instance_id {
            self.statics.insert(i.clone(), m.id.clone());
        }
        self.members.insert(m.id.clone(), m);
    }

    /// Drops a member and its target; bumps the group epoch. Returns whether it was there.
    fn remove_member(&mut self, cx: &mut Ctx<'_>, id: &KStr) -> bool {
        let Some(m) = self.members.remove(id) else { return false };
        self.release(&m);
        if let Some(i) = &m.instance_id
            && self.statics.get(i) == Some(id)
        {
            self.statics.remove(i);
        }
        self.target.remove(id);
        let before = self.epoch;
        self.epoch = self.epoch.wrapping_add(1);
        cx.out.push(Effect::Cancel(self.session_key(id)));
        cx.out.push(Effect::Cancel(self.revocation_key(id)));
        if m.classic.is_some() {
            self.joins_due.remove(id);
            cx.out.push(Effect::Cancel(self.join_key(id)));
            cx.out.push(Effect::Cancel(self.sync_key(id)));
        } else if !self.members.is_empty() && self.members.values().all(|x| x.classic.is_some()) {
            self.downgrade_due = Some(before);
        }
        true
    }

    /// When a KIP-848 member left since the last call, leaving only classic members, the
    /// generation the group may become a classic group again at (Kafka's online downgrade, if
    /// the policy and the classic group size allow): the group epoch before it left, which
    /// the classic members' generations match once they are reconciled.
    pub fn take_downgrade(&mut self) -> Option<i32> {
        let due = self.downgrade_due.take()?;
        (!self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())).then_some(due)
    }

    /// How long a member may go without a heartbeat: a classic member's own session timeout,
    /// else the group's.
    fn session_of(&self, m: &ConsumerMember, cfg: &Config) -> Duration {
        match &m.classic {
            Some(c) => c.session_timeout,
            None => self.session_timeout.unwrap_or(cfg.group_consumer_session_timeout),
        }
    }

    // ---- ConsumerGroupHeartbeat --------------------------------------------------------------

    /// Handles a ConsumerGroupHeartbeat whose fields the caller has validated
    /// ([`validate_request`]). `topics` is the broker's topics as the group may see them.
    ///
    /// # Errors
    /// The error code and message Kafka answers with.
    pub fn heartbeat(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &ConsumerGroupHeartbeatRequest,
        client: &Client,
        topics: &dyn TopicView,
    ) -> Result<Beat, Refusal> {
        if let Some(a) = &m.server_assignor
            && !cx.cfg.group_consumer_assignors.contains(&a.as_str())
        {
            return Err(refuse(
                ErrorCode::UNSUPPORTED_ASSIGNOR,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    cx.cfg.group_consumer_assignors.join(", ")
                ),
            ));
        }
        match m.member_epoch {
            LEAVE_EPOCH => return self.leave(cx, m),
            STATIC_LEAVE_EPOCH => return self.static_leave(cx, m),
            _ => {}
        }
        if let Some(re) = &m.subscribed_topic_regex
            && !re.is_empty()
            && !self.compiled.contains_key(re)
        {
            // Checked here; compiled for keeps once a member holds it (refused heartbeats must
            // not grow the cache).
            compile_regex(re)?;
            let distinct: BTreeSet<&KStr> = self.members.values().filter_map(|m| m.regex.as_ref()).collect();
            if !distinct.contains(re) && distinct.len() >= MAX_GROUP_REGEXES {
                return Err(refuse(
                    ErrorCode::INVALID_REGULAR_EXPRESSION,
                    format!(
                        "SubscribedTopicRegex `{re}` is refused: the group's members already use \
                         {MAX_GROUP_REGEXES} different regular expressions."
                    ),
                ));
            }
        }
        let (id, before) = if m.member_epoch == 0 { self.joining(cx, m)? } else { self.existing(m)? };
        let mut member = before.clone().unwrap_or_else(|| ConsumerMember::new(id.clone(), m.instance_id.clone()));
        let mut bump = before.is_none();
        if m.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout = Duration::from_millis(i64::from(m.rebalance_timeout_ms));
        }
        if let Some(names) = &m.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            bump |= names != member.subscribed;
            member.subscribed = names;
        }
        if let Some(re) = &m.subscribed_topic_regex {
            // An empty regex subscribes to nothing, as no regex does.
            let re = (!re.is_empty()).then(|| re.clone());
            bump |= re != member.regex;
            member.regex = re;
        }
        if m.server_assignor.is_some() || m.member_epoch == 0 {
            bump |= m.server_assignor != member.assignor;
            member.assignor.clone_from(&m.server_assignor);
        }
        if m.rack_id.is_some() {
            member.rack_id.clone_from(&m.rack_id);
        }
        if m.instance_id.is_some() {
            member.instance_id.clone_from(&m.instance_id);
        }
        member.client_id = client.id.clone();
        member.client_host = client.host.clone();
        // A member heartbeating with ConsumerGroupHeartbeat speaks the consumer protocol now.
        member.classic = None;
        self.put_member(member);
        // One new group epoch for whatever changed: the member, or what its topics look like.
        bump |= self.refresh_metadata(topics);
        if bump {
            self.epoch = self.epoch.wrapping_add(1);
        }
        self.maybe_assign(cx.cfg);
        let owned = m.topic_partitions.as_deref().map(owned_from);
        self.reconcile(&id, owned.as_ref());
        let after = self.members.get(&id).cloned();
        let Some(after) = after else { return Err(refuse(ErrorCode::UNKNOWN_MEMBER_ID, "member vanished")) };
        self.arm_timers(cx, before.as_ref(), &after);
        if before.as_ref() != Some(&after) || bump {
            cx.out.push(Effect::Store);
        }
        let subscribes = m.subscribed_topic_names.is_some() || m.subscribed_topic_regex.is_some();
        let full = m.member_epoch == 0 || (m.rebalance_timeout_ms != -1 && subscribes && m.topic_partitions.is_some());
        let changed = before.as_ref().is_none_or(|b| b.assigned != after.assigned);
        Ok(Beat { member_id: id, epoch: after.epoch, assignment: (full || changed).then(|| after.assigned.clone()) })
    }

    /// A heartbeat with epoch 0: a new member, a member rejoining, or a static member taking
    /// its place back. Returns the member id and its record before this heartbeat.
    fn joining(
        &mut self,
        cx: &mut Ctx<'_>,
        m: &ConsumerGroupHeartbeatRequest,
    ) -> Result<(KStr, Option<ConsumerMember>), Refusal> {
        let id = if m.member_id.is_empty() { new_member_id(cx.rng) } else { m.member_id.clone() };
        if let Some(instance) = &m.instance_id
            && let Some(old_id) = self.statics.get(instance).cloned()
            && old_id != id
        {
            let Some(old) = self.members.get(&old_id) else {
                return Err(refuse(ErrorCode::UNKNOWN_MEMBER_ID, "static member vanished"));
            };
            // A classic static member sends no LeaveGroup when it stops, so its KIP-848
            // successor (a rolling upgrade) takes its place at once, as in Kafka.
            if old.epoch != STATIC_LEAVE_EPOCH && old.classic.is_none() {
                return Err(refuse(
                    ErrorCode::UNRELEASED_INSTANCE_ID,
                    format!("Static member {old_id} with instance id {instance} is still in the group {}.", self.id),
                ));
            }
            let taken = self.take_over(cx, &old_id, &id);
            return Ok((id, taken));
        }
        if let Some(existing) = self.members.get(&id) {
            // A fenced member rejoins with epoch 0 and the member id it keeps for its lifetime
            // (KIP-1082): it is taken back with its record, whatever its epoch here, as Kafka
            // does since KAFKA-19233 (earlier coordinators fenced it again until its session
            // ran out).
            return Ok((id, Some(existing.clone())));
        }
        if self.members.len() >= cx.cfg.group_max_size {
            return Err(refuse(
                ErrorCode::GROUP_MAX_SIZE_REACHED,
                format!("The consumer group has reached its maximum capacity of {} members.", cx.cfg.group_max_size),
            ));
        }
        Ok((id, None))
    }

    /// A static member back under a new member id takes its old record over (assignment and
    /// target), at epoch 0, without a new group epoch. Returns the record as taken over.
    fn take_over(&mut self, cx: &mut Ctx<'_>, old_id: &KStr, id: &KStr) -> Option<ConsumerMember> {
        let mut taken = self.members.remove(old_id)?;
        self.release(&taken);
        for key in [self.session_key(old_id), self.revocation_key(old_id), self.join_key(old_id), self.sync_key(old_id)]
        {
            cx.out.push(Effect::Cancel(key));
        }
        self.joins_due.remove(old_id);
        if let Some(t) = self.target.remove(old_id) {
            self.target.insert(id.clone(), t);
        }
        taken.id = id.clone();
        taken.epoch = 0;
        taken.previous_epoch = 0;
        taken.state = MemberState::Stable;
        taken.revoking = Assignment::new();
        self.put_member(taken.clone());
        Some(taken)
    }

    /// A heartbeat with a positive epoch: the member must be known at that epoch.
    fn existing(&self, m: &ConsumerGroupHeartbeatRequest) -> Result<(KStr, Option<ConsumerMember>), Refusal> {
        let Some(member) = self.members.get(&m.member_id) else {
            return Err(refuse(
                ErrorCode::UNKNOWN_MEMBER_ID,
                format!("Member {} is not a member of group {}.", m.member_id, self.id),
            ));
        };
        if let Some(i) = &m.instance_id {
            match self.statics.get(i) {
                None => return Err(refuse(ErrorCode::UNKNOWN_MEMBER_ID, format!("Instance id {i} is unknown."))),
                Some(owner) if owner != &m.member_id => {
                    return Err(refuse(ErrorCode::FENCED_INSTANCE_ID, format!("Instance id {i} is used by {owner}.")));
                }
                Some(_) => {}
            }
        }
        let got = m.member_epoch;
        let fenced = if got > member.epoch {
            true
        } else if got < member.epoch {
            // The response with the bumped epoch may have been lost: the previous epoch is
            // accepted when the member owns nothing it should not.
            let owned = m.topic_partitions.as_deref().map(owned_from);
            got != member.previous_epoch
                || !owned.is_some_and(|o| {
                    let assigned: BTreeSet<(Uuid, i32)> = partitions_of(&member.assigned).collect();
                    o.is_subset(&assigned)
                })
        } else {
            false
        };
        if fenced {
            return Err(refuse(
                ErrorCode::FENCED_MEMBER_EPOCH,
                format!(
                    "The consumer group member has a member epoch ({got}) that does not match the one known by \
                     the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                    member.epoch
                ),
            ));
        }
        Ok((member.id.clone(), Some(member.clone())))
    }

    /// Epoch -1: the member leaves for good.
    fn leave(&mut self, cx: &mut Ctx<'_>, m: &ConsumerGroupHeartbeatRequest) -> Result<Beat, Refusal> {
        let id = if m.member_id.is_empty() {
            m.instance_id.as_ref().and_then(|i| self.statics.get(i)).cloned().unwrap_or_default()
        } else {
            m.member_id.clone()
        };
        if let Some(i) = &m.instance_id
            && let Some(owner) = self.statics.get(i)
            && owner != &id
        {
            return Err(refuse(ErrorCode::FENCED_INSTANCE_ID, format!("Instance id {i} is used by {owner}.")));
        }
        if !self.remove_member(cx, &id) {
            return Err(refuse(
                ErrorCode::UNKNOWN_MEMBER_ID,
                format!("Member {id} is not a member of group {}.", self.id),
            ));
        }
        cx.out.push(Effect::Store);
        Ok(Beat { member_id: id, epoch: LEAVE_EPOCH, assignment: None })
    }

    /// Epoch -2: a static member leaves for now; its partitions wait for it until its session
    /// runs out.
    fn static_leave(&mut self, cx: &mut Ctx<'_>, m: &ConsumerGroupHeartbeatRequest) -> Result<Beat, Refusal> {
        let Some(instance) = &m.instance_id else {
            return Err(refuse(ErrorCode::INVALID_REQUEST, "InstanceId can't be null."));
        };
        match self.statics.get(instance) {
            None => return Err(refuse(ErrorCode::UNKNOWN_MEMBER_ID, format!("Instance id {instance} is unknown."))),
            Some(owner) if owner != &m.member_id => {
                return Err(refuse(
                    ErrorCode::FENCED_INSTANCE_ID,
                    format!("Instance id {instance} is used by {owner}."),
                ));
            }
            Some(_) => {}
        }
        let Some(mut member) = self.members.get(&m.member_id).cloned() else {
            return Err(refuse(ErrorCode::UNKNOWN_MEMBER_ID, "unknown member"));
        };
        member.previous_epoch = member.epoch;
        member.epoch = STATIC_LEAVE_EPOCH;
        member.revoking = Assignment::new();
        member.state = MemberState::Stable;
        self.put_member(member);
        cx.out.push(Effect::Cancel(self.revocation_key(&m.member_id)));
        cx.out.push(Effect::Store);
        Ok(Beat { member_id: m.member_id.clone(), epoch: STATIC_LEAVE_EPOCH, assignment: None })
    }

    fn arm_timers(&self, cx: &mut Ctx<'_>, before: Option<&ConsumerMember>, after: &ConsumerMember) {
        let session = self.session_of(after, cx.cfg);
        cx.out.push(Effect::Arm(self.session_key(&after.id), cx.now + session));
        let was_revoking = before.is_some_and(|b| b.state == MemberState::UnrevokedPartitions);
        let revoking = after.state == MemberState::UnrevokedPartitions;
        if revoking && (!was_revoking || before.is_some_and(|b| b.epoch != after.epoch || b.revoking != after.revoking))
        {
            cx.out.push(Effect::Arm(self.revocation_key(&after.id), cx.now + after.rebalance_timeout));
        } else if !revoking && was_revoking {
            cx.out.push(Effect::Cancel(self.revocation_key(&after.id)));
        }
    }

    // ---- target assignment and reconciliation ------------------------------------------------

    /// Notes the subscribed topics as they are now; returns whether one appeared, vanished,
    /// was recreated or grew since the target assignment (then the group epoch must move).
    fn refresh_metadata(&mut self, topics: &dyn TopicView) -> bool {
        self.resolve_regexes(topics);
        let now: BTreeMap<KStr, TopicInfo> =
            self.subscribed_topics().into_iter().filter_map(|n| topics.lookup(&n).map(|t| (n, t))).collect();
        if now == self.metadata {
            return false;
        }
        self.metadata = now;
        true
    }

    /// Matches every member's regex against the topics as they are now (Kafka: the whole name
    /// must match). Regexes no member uses any more are forgotten. Every heartbeat runs it; a
    /// recovered group runs it once at start, so that what it subscribes to is known before
    /// its members' first heartbeats.
    pub fn resolve_regexes(&mut self, topics: &dyn TopicView) {
        let used: BTreeSet<KStr> = self.members.values().filter_map(|m| m.regex.clone()).collect();
        // Matching costs regexes x topics: done again only when either changed.
        let key = (topics.generation(), used);
        if self.resolved_for.as_ref() == Some(&key) {
            return;
        }
        let used = key.1.clone();
        self.resolved_for = Some(key);
        self.compiled.retain(|k, _| used.contains(k));
        self.resolved.clear();
        if used.is_empty() {
            return;
        }
        let names = topics.names();
        for re in used {
            if !self.compiled.contains_key(&re) {
                // A member's new regex, or one read back from the store after a restart.
                match compile_regex(&re) {
                    Ok(c) => {
                        self.compiled.insert(re.clone(), c);
                    }
                    Err(_) => continue,
                }
            }
            let Some(c) = self.compiled.get(&re) else { continue };
            let matched: BTreeSet<KStr> = names.iter().filter(|n| c.is_match(n)).cloned().collect();
            self.resolved.insert(re, matched);
        }
    }

    /// Computes a new target assignment when the group epoch moved past it.
    fn maybe_assign(&mut self, cfg: &Config) {
        if self.epoch == self.assignment_epoch {
            return;
        }
        let subs: BTreeMap<KStr, Vec<KStr>> =
            self.members.values().map(|m| (m.id.clone(), self.topics_of(m).into_iter().collect())).collect();
        self.target = assignor::assign(self.assignor(cfg), &subs, &self.metadata, &self.target);
        self.assignment_epoch = self.epoch;
    }

    /// Moves one member towards its target (Kafka's `CurrentAssignmentBuilder`). `owned` is
    /// what the member reported holding, if it reported it.
    fn reconcile(&mut self, id: &KStr, owned: Option<&BTreeSet<(Uuid, i32)>>) {
        let Some(m) = self.members.get(id).cloned() else { return };
        let next = match m.state {
            MemberState::Stable if m.epoch == self.assignment_epoch => return,
            MemberState::Stable | MemberState::UnreleasedPartitions => self.next_assignment(&m, m.epoch, owned),
            MemberState::UnrevokedPartitions => {
                if holds_any(owned, &m.revoking) {
                    match self.drop_unsubscribed(&m) {
                        Some(next) => next,
                        None => return,
                    }
                } else {
                    self.next_assignment(&m, m.epoch.wrapping_add(1), owned)
                }
            }
        };
        if next != m {
            self.put_member(next);
        }
    }

    /// A member still revoking whose assignment names topics it no longer subscribes to (one
    /// deleted, or left out of a new subscription): those partitions join the revocation at
    /// once instead of after it, as Kafka's `CurrentAssignmentBuilder` does when the
    /// subscription changed. `None` when there are none.
    fn drop_unsubscribed(&self, m: &ConsumerMember) -> Option<ConsumerMember> {
        let wanted = self.topics_of(m);
        let live: BTreeSet<Uuid> =
            self.metadata.iter().filter(|(name, _)| wanted.contains(*name)).map(|(_, t)| t.id).collect();
        let gone: Vec<Uuid> = m.assigned.keys().filter(|t| !live.contains(t)).copied().collect();
        if gone.is_empty() {
            return None;
        }
        let mut next = m.clone();
        for t in gone {
            if let Some(ps) = next.assigned.remove(&t) {
                next.revoking.entry(t).or_default().extend(ps);
            }
        }
        Some(next)
    }

    fn next_assignment(&self, m: &ConsumerMember, epoch: i32, owned: Option<&BTreeSet<(Uuid, i32)>>) -> ConsumerMember {
        let empty = Assignment::new();
        let target = self.target.get(&m.id).unwrap_or(&empty);
        let mut assigned = Assignment::new();
        let mut revoking = Assignment::new();
        let mut pending = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = target.keys().chain(m.assigned.keys()).copied().collect();
        for t in topics {
            let want = target.get(&t).cloned().unwrap_or_default();
            let have = m.assigned.get(&t).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = have.intersection(&want).copied().collect();
            let give: BTreeSet<i32> = have.difference(&keep).copied().collect();
            let mut take: BTreeSet<i32> = want.difference(&keep).copied().collect();
            let before = take.len();
            take.retain(|p| self.owners.get(&(t, *p)).is_none_or(|o| o == &m.id));
            unreleased |= take.len() != before;
            for (set, ps) in [(&mut assigned, keep), (&mut revoking, give), (&mut pending, take)] {
                if !ps.is_empty() {
                    set.insert(t, ps);
                }
            }
        }
        let mut next = m.clone();
        if !revoking.is_empty() && holds_any(owned, &revoking) {
            next.state = MemberState::UnrevokedPartitions;
            set_epoch(&mut next, epoch);
            next.assigned = assigned;
            next.revoking = revoking;
            return next;
        }
        for (t, ps) in pending {
            assigned.entry(t).or_default().extend(ps);
        }
        next.state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
        set_epoch(&mut next, self.assignment_epoch);
        next.assigned = assigned;
        next.revoking = Assignment::new();
        next
    }

    // ---- timers ------------------------------------------------------------------------------

    /// A member's session ran out: it is fenced and the group rebalances without it.
    pub fn on_session_timer(&mut self, cx: &mut Ctx<'_>, member: &KStr) {
        if self.remove_member(cx, member) {
            cx.out.push(Effect::Store);
        }
    }

    /// A member kept partitions past its rebalance timeout: it is fenced.
    pub fn on_revocation_timer(&mut self, cx: &mut Ctx<'_>, member: &KStr) {
        if self.members.get(member).is_some_and(|m| m.state == MemberState::UnrevokedPartitions)
            && self.remove_member(cx, member)
        {
            cx.out.push(Effect::Store);
        }
    }

    /// The timers a recovered group needs: every member's session, and the revocation
    /// deadline of members still revoking.
    #[must_use]
    pub fn recovery_timers(&self, now: Instant, cfg: &Config) -> Vec<(ConsumerTimer, Instant)> {
        let mut out = Vec::new();
        for m in self.members.values() {
            out.push((self.session_key(&m.id), now + self.session_of(m, cfg)));
            if m.state == MemberState::UnrevokedPartitions {
                out.push((self.revocation_key(&m.id), now + m.rebalance_timeout));
            }
        }
        out
    }

    // ---- offsets -------------------------------------------------------------------------------

    /// Kafka's `ConsumerGroup.validateOffsetCommit`: members commit at their current epoch
    /// with OffsetCommit v9+; anyone may commit to an empty group with epoch -1.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID, UNSUPPORTED_VERSION, STALE_MEMBER_EPOCH or GROUP_ID_NOT_FOUND.
    pub fn validate_commit(&self, member_id: &str, epoch: i32, version: i16) -> Result<(), ErrorCode> {
        if self.dead {
            return Err(ErrorCode::GROUP_ID_NOT_FOUND);
        }
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id) else { return Err(ErrorCode::UNKNOWN_MEMBER_ID) };
        // A classic member commits as classic clients do: any version, its generation being
        // its member epoch.
        if m.classic.is_none() && version < 9 {
            return Err(ErrorCode::UNSUPPORTED_VERSION);
        }
        if epoch == m.epoch { Ok(()) } else { Err(m.stale_epoch_error()) }
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch`: a fetch without member id and epoch is
    /// always accepted; a member fetches at its current epoch.
    ///
    /// # Errors
    /// UNKNOWN_MEMBER_ID or STALE_MEMBER_EPOCH.
    pub fn validate_fetch(&self, member_id: Option<&KStr>, epoch: i32) -> Result<(), ErrorCode> {
        let Some(id) = member_id else {
            return if epoch < 0 { Ok(()) } else { Err(ErrorCode::UNKNOWN_MEMBER_ID) };
        };
        if id.is_empty() && epoch < 0 {
            return Ok(());
        }
        let Some(m) = self.members.get(id) else { return Err(ErrorCode::UNKNOWN_MEMBER_ID) };
        if epoch == m.epoch { Ok(()) } else { Err(m.stale_epoch_error()) }
    }

    // ---- stored form ---------------------------------------------------------------------------

    /// The group's stored value (version 2 of the group metadata value; see [`super`]).
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::contiguous(64 + self.members.len() * 128);
        // The oldest version that holds the group, so that an older kelp still reads it: 2
        // without regexes and classic members, 3 with regexes, 4 with classic members.
        let version = if self.members.values().any(|m| m.classic.is_some()) {
            4
        } else if self.members.values().any(|m| m.regex.is_some()) {
            3
        } else {
            2
        };
        w.i8(version);
        w.i32(self.epoch);
        w.i32(self.assignment_epoch);
        w.uvarint(len32(self.metadata.len()));
        for (name, t) in &self.metadata {
            w.string(true, name);
            w.uuid(&t.id);
            w.i32(i32::try_from(t.partitions).unwrap_or(i32::MAX));
        }
        w.uvarint(len32(self.members.len()));
        for m in self.members.values() {
            w.string(true, &m.id);
            w.nullable_string(true, m.instance_id.as_ref());
            w.nullable_string(true, m.rack_id.as_ref());
            w.string(true, &m.client_id);
            w.string(true, &m.client_host);
            w.uvarint(len32(m.subscribed.len()));
            for s in &m.subscribed {
                w.string(true, s);
            }
            if version >= 3 {
                w.nullable_string(true, m.regex.as_ref());
            }
            if version >= 4 {
                match &m.classic {
                    None => w.i32(-1),
                    Some(c) => {
                        w.i32(i32::try_from(c.session_timeout.as_millis()).unwrap_or(i32::MAX));
                        w.uvarint(len32(c.protocols.len()));
                        for (name, metadata) in &c.protocols {
                            w.string(true, name);
                            w.bytes_field(true, metadata);
                        }
                    }
                }
            }
            w.nullable_string(true, m.assignor.as_ref());
            w.i32(i32::try_from(m.rebalance_timeout.as_millis()).unwrap_or(i32::MAX));
            w.i32(m.epoch);
            w.i32(m.previous_epoch);
            w.i8(i8::try_from(m.state.code()).unwrap_or(0));
            encode_assignment(&mut w, &m.assigned);
            encode_assignment(&mut w, &m.revoking);
            encode_assignment(&mut w, self.target.get(&m.id).unwrap_or(&Assignment::new()));
        }
        w.into_bytes()
    }

    /// Reads a stored value written by [`ConsumerGroup::encode`].
    ///
    /// # Errors
    /// When the value is damaged (it is then skipped, as a damaged classic group is).
    pub fn decode(id: KStr, v: &Bytes) -> Result<Self, DecodeError> {
        const CTX: &str = "stored consumer group";
        let mut r = Reader::new(v);
        // Version 2 is version 3 without the members' regexes.
        let version = r.i8(CTX)?;
        if !(2..=4).contains(&version) {
            return Err(DecodeError::LengthOutOfRange(CTX));
        }
        let mut g = Self::new(id);
        g.epoch = r.i32(CTX)?;
        g.assignment_epoch = r.i32(CTX)?;
        for _ in 0..bounded(&mut r, 22)? {
            let name = r.string(true, CTX)?;
            let tid = r.uuid(CTX)?;
            let partitions = u32::try_from(r.i32(CTX)?).map_err(|_| DecodeError::LengthOutOfRange(CTX))?;
            g.metadata.insert(name, TopicInfo { id: tid, partitions });
        }
        for _ in 0..bounded(&mut r, 24)? {
            let mid = r.string(true, CTX)?;
            let instance_id = r.nullable_string(true, CTX)?;
            let rack_id = r.nullable_string(true, CTX)?;
            let client_id = r.string(true, CTX)?;
            let client_host = r.string(true, CTX)?;
            let mut subscribed = Vec::new();
            for _ in 0..bounded(&mut r, 1)? {
                subscribed.push(r.string(true, CTX)?);
            }
            let regex = if version >= 3 { r.nullable_string(true, CTX)? } else { None };
            let classic = if version >= 4 { decode_classic(&mut r)? } else { None };
            let assignor = r.nullable_string(true, CTX)?;
            let rebalance_timeout = Duration::from_millis(i64::from(r.i32(CTX)?));
            let epoch = r.i32(CTX)?;
            let previous_epoch = r.i32(CTX)?;
            let state = u8::try_from(r.i8(CTX)?)
                .ok()
                .and_then(MemberState::from_code)
                .ok_or(DecodeError::LengthOutOfRange(CTX))?;
            let assigned = decode_assignment(&mut r)?;
            let revoking = decode_assignment(&mut r)?;
            let target = decode_assignment(&mut r)?;
            g.target.insert(mid.clone(), target);
            let m = ConsumerMember {
                id: mid,
                instance_id,
                rack_id,
                client_id,
                client_host,
                subscribed,
                regex,
                assignor,
                rebalance_timeout,
                epoch,
                previous_epoch,
                state,
                assigned,
                revoking,
                classic,
            };
            // A stored value that gives one partition to two members is damaged.
            let clash = partitions_of(&m.assigned)
                .chain(partitions_of(&m.revoking))
                .any(|tp| g.owners.get(&tp).is_some_and(|o| o != &m.id));
            if clash {
                return Err(DecodeError::LengthOutOfRange(CTX));
            }
            g.put_member(m);
        }
        Ok(g)
    }
}

fn decode_classic(r: &mut Reader<'_>) -> Result<Option<ClassicMeta>, DecodeError> {
    const CTX: &str = "stored classic member";
    let session = r.i32(CTX)?;
    if session < 0 {
        return Ok(None);
    }
    let mut protocols = Vec::new();
    for _ in 0..bounded(r, 2)? {
        let name = r.string(true, CTX)?;
        let metadata = r.nullable_bytes(true, CTX)?.unwrap_or_default();
        protocols.push((name, metadata));
    }
    if protocols.is_empty() {
        return Err(DecodeError::LengthOutOfRange(CTX));
    }
    Ok(Some(ClassicMeta { session_timeout: Duration::from_millis(i64::from(session)), protocols }))
}

fn set_epoch(m: &mut ConsumerMember, epoch: i32) {
    if m.epoch != epoch {
        m.previous_epoch = m.epoch;
        m.epoch = epoch;
    }
}

/// Whether the member still holds any of `revoking` (not reporting counts as holding).
fn holds_any(owned: Option<&BTreeSet<(Uuid, i32)>>, revoking: &Assignment) -> bool {
    owned.is_none_or(|o| partitions_of(revoking).any(|tp| o.contains(&tp)))
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads a count whose elements take at least `min` bytes each, refusing counts the value
/// cannot hold.
fn bounded(r: &mut Reader<'_>, min: usize) -> Result<usize, DecodeError> {
    let n = r.uvarint("stored consumer group")? as usize;
    if n.saturating_mul(min) > r.remaining() {
        return Err(DecodeError::LengthOutOfRange("stored consumer group"));
    }
    Ok(n)
}

fn encode_assignment(w: &mut Writer, a: &Assignment) {
    w.uvarint(len32(a.len()));
    for (t, ps) in a {
        w.uuid(t);
        w.uvarint(len32(ps.len()));
        for p in ps {
            w.i32(*p);
        }
    }
}

fn decode_assignment(r: &mut Reader<'_>) -> Result<Assignment, DecodeError> {
    let mut a = Assignment::new();
    for _ in 0..bounded(r, 17)? {
        let t = r.uuid("stored assignment")?;
        let mut ps = BTreeSet::new();
        for _ in 0..bounded(r, 4)? {
            ps.insert(r.i32("stored assignment")?);
        }
        a.insert(t, ps);
    }
    Ok(a)
}

/// The first version in which the client makes up its member id (KIP-1082).
pub const CLIENT_MEMBER_ID_VERSION: i16 = 1;

/// The longest regex a member may subscribe with, and the most memory its compiled form and
/// matcher may take: a hostile pattern is refused, never compiled without bound.
const REGEX_MAX_LEN: usize = 4096;
/// Topic names are at most 249 bytes: a regex that needs more than this is not for them.
const REGEX_SIZE_LIMIT: usize = 64 << 10;
/// The most different regexes the members of one group may use at once, which bounds the
/// compiled regexes a group keeps and the matching each topic change costs.
pub const MAX_GROUP_REGEXES: usize = 256;

/// Compiles a subscription regex with Kafka's semantics: RE2 syntax, matched against the whole
/// topic name.
///
/// # Errors
/// INVALID_REGULAR_EXPRESSION with what is wrong with it.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, Refusal> {
    let invalid = |why: String| {
        refuse(
            ErrorCode::INVALID_REGULAR_EXPRESSION,
            format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {why}."),
        )
    };
    if pattern.len() > REGEX_MAX_LEN {
        return Err(invalid(format!("it is longer than {REGEX_MAX_LEN} bytes")));
    }
    let build = |p: &str| {
        regex::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| invalid(e.to_string().lines().last().unwrap_or("").trim().to_string()))
    };
    // The pattern alone first: wrapped at once, an unbalanced `a)|(b` would close the wrapper's
    // group and match far more than whole names.
    build(pattern)?;
    build(&format!("^(?:{pattern})$"))
}

/// What a consumer group sees of the broker's topics.
pub trait TopicView {
    /// A topic by name.
    fn lookup(&self, name: &str) -> Option<TopicInfo>;
    /// Every topic's name, for regex subscriptions.
    fn names(&self) -> Vec<KStr>;
    /// A number that moves whenever [`TopicView::names`] may answer differently.
    fn generation(&self) -> u64;
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid` (versions 0 and 1).
///
/// # Errors
/// INVALID_REQUEST with Kafka's message.
pub fn validate_request(m: &ConsumerGroupHeartbeatRequest, version: i16) -> Result<(), Refusal> {
    let bad = |msg: &str| Err(refuse(ErrorCode::INVALID_REQUEST, msg));
    if version >= CLIENT_MEMBER_ID_VERSION && m.member_id.is_empty() {
        return bad("MemberId can't be empty.");
    }
    if m.group_id.is_empty() {
        return bad("GroupId can't be empty.");
    }
    if m.instance_id.as_ref().is_some_and(KStr::is_empty) {
        return bad("InstanceId can't be empty.");
    }
    if m.rack_id.as_ref().is_some_and(KStr::is_empty) {
        return bad("RackId can't be empty.");
    }
    match m.member_epoch {
        0 => {
            if m.rebalance_timeout_ms == -1 {
                return bad("RebalanceTimeoutMs must be provided in first request.");
            }
            if m.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return bad("TopicPartitions must be empty when (re-)joining.");
            }
            // An empty list of names or an empty regex joins with no topics.
            if m.subscribed_topic_names.is_none() && m.subscribed_topic_regex.is_none() {
                return bad("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.");
            }
        }
        STATIC_LEAVE_EPOCH => {
            if m.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
            if m.instance_id.is_none() {
                return bad("InstanceId can't be null.");
            }
        }
        e if e > 0 || e == LEAVE_EPOCH => {
            if m.member_id.is_empty() {
                return bad("MemberId can't be empty.");
            }
        }
        _ => return bad("MemberEpoch is invalid."),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_must_be_valid_alone_and_match_whole_names() {
        let re = compile_regex("orders-[a-z]+").expect("valid");
        assert!(re.is_match("orders-eu") && !re.is_match("xorders-eu") && !re.is_match("orders-eu.dlq"));
        // Valid only once wrapped: refused.
        assert!(compile_regex("a)|(b").is_err());
        assert!(compile_regex(&"a".repeat(REGEX_MAX_LEN + 1)).is_err());
    }

    #[test]
    fn a_group_without_regexes_is_stored_as_version_2() {
        assert_eq!(ConsumerGroup::new("g".into()).encode().first(), Some(&2));
    }

    #[test]
    fn damaged_values_are_refused() {
        assert!(
            ConsumerGroup::decode("g".into(), &Bytes::from_static(&[2, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0x0f])).is_err()
        );
        assert!(ConsumerGroup::decode("g".into(), &Bytes::from_static(&[1])).is_err());
    }
}
