//! The classic group coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a pure state
//! machine, after Apache Kafka's `ClassicGroup` and the classic half of its
//! `GroupMetadataManager`.
//!
//! A [`ClassicGroup`] owns its members and its [`Phase`]; handlers take a [`Ctx`] and write
//! effects (replies, timers, stores) into it, never touching the broker. The only way to change
//! state is [`ClassicGroup::set_phase`], which asserts Kafka's transition table
//! ([`GroupState::can_become`]). Parked JoinGroup and SyncGroup requests live on their member;
//! every parked request is answered exactly once: when the phase moves on, when the member is
//! removed or replaced, or when a timer fires.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::codec::generated::ResponseBody;
use crate::codec::generated::join_group::{JoinGroupRequest, JoinGroupResponse, JoinGroupResponseMember};
use crate::codec::generated::sync_group::{SyncGroupRequest, SyncGroupResponse};
use crate::codec::{ErrorCode, KStr};
use crate::request::Req;
use crate::time::{Duration, Instant};

/// A classic group's state, named as Kafka names it in ListGroups and DescribeGroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Members are (re)joining.
    PreparingRebalance,
    /// Joins are answered; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member holds an assignment of the current generation.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// Every state, in Kafka's order.
    pub const ALL: [Self; 5] =
        [Self::Empty, Self::PreparingRebalance, Self::CompletingRebalance, Self::Stable, Self::Dead];

    /// May `self` become `next`? Kafka's valid-previous-states table (`ClassicGroupState`),
    /// read forwards.
    #[must_use]
    pub const fn can_become(self, next: Self) -> bool {
        use GroupState::{CompletingRebalance, Dead, Empty, PreparingRebalance, Stable};
        matches!(
            (self, next),
            (Stable | CompletingRebalance | Empty, PreparingRebalance)
                | (PreparingRebalance, CompletingRebalance)
                | (CompletingRebalance, Stable)
                | (PreparingRebalance, Empty)
                | (_, Dead)
        )
    }

    /// The name Kafka reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// The initial rebalance delay of a group that was empty. Every member that joins within it
/// is in the first generation. Unlike Kafka's `InitialDelayedJoin`, late joiners do not extend
/// it: the first join completes one delay after the first member arrived, so consumers that
/// start together are served in `group.initial.rebalance.delay.ms`, not a multiple of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitialDelay {
    /// The delay now running.
    pub delay: Duration,
}

/// A group's state with the data only that state has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No members. Waits for a JoinGroup (which moves it to PreparingRebalance); offsets may be
    /// committed with generation -1.
    Empty,
    /// Members are (re)joining. Waits until every member has rejoined (or, after an empty group,
    /// for the initial delay), or for the rebalance timeout; then CompletingRebalance, or Empty
    /// when nobody rejoined.
    PreparingRebalance {
        /// Whether the group was Empty before (its first rebalance waits the initial delay).
        from_empty: bool,
        /// The initial delay, while it runs.
        initial: Option<InitialDelay>,
    },
    /// Joins are answered. Waits for the leader's SyncGroup and for its assignment to be stored
    /// (then Stable); a join, a leave or an expiry moves it back to PreparingRebalance.
    CompletingRebalance {
        /// Members that have not sent SyncGroup for this generation.
        pending_sync: BTreeSet<KStr>,
        /// The leader's assignment while it is being stored.
        storing: Option<BTreeMap<KStr, Bytes>>,
    },
    /// Every member holds an assignment of the current generation. Heartbeats keep members in;
    /// a join with new metadata, a leave or an expiry moves it to PreparingRebalance.
    Stable {
        /// Members that still have not sent SyncGroup for this generation (removed when the
        /// sync timeout fires).
        pending_sync: BTreeSet<KStr>,
    },
    /// Deleted: answers nothing but COORDINATOR_NOT_AVAILABLE; never leaves.
    Dead,
}

impl Phase {
    /// The state this phase is in.
    #[must_use]
    pub const fn state(&self) -> GroupState {
        match self {
            Self::Empty => GroupState::Empty,
            Self::PreparingRebalance { .. } => GroupState::PreparingRebalance,
            Self::CompletingRebalance { .. } => GroupState::CompletingRebalance,
            Self::Stable { .. } => GroupState::Stable,
            Self::Dead => GroupState::Dead,
        }
    }
}

/// A group member.
#[derive(Clone, Debug)]
pub struct Member {
    /// The member id the coordinator gave it.
    pub id: KStr,
    /// Its static instance id (KIP-345).
    pub instance_id: Option<KStr>,
    /// The client id from its request header.
    pub client_id: KStr,
    /// The host it connected from.
    pub client_host: KStr,
    /// Removed when no heartbeat arrives for this long.
    pub session_timeout: Duration,
    /// How long a rebalance waits for it.
    pub rebalance_timeout: Duration,
    /// The protocols it supports, in its order of preference, with their metadata.
    pub protocols: Vec<(KStr, Bytes)>,
    /// Its assignment in the current generation (empty until the leader's sync is stored).
    pub assignment: Bytes,
    /// Its parked JoinGroup.
    pub(crate) join: Option<Req>,
    /// Its parked SyncGroup.
    pub(crate) sync: Option<Req>,
    /// Joined in this rebalance without ever being answered (expires on the new-member timeout).
    pub(crate) is_new: bool,
}

impl Member {
    /// Its metadata for `protocol`.
    #[must_use]
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|(n, _)| n.as_str() == protocol).map(|(_, m)| m)
    }

    fn same_protocols(&self, protocols: &[(KStr, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// Timers a group arms on the broker's timer table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupTimer {
    /// A member's session (or a pending member's join) ran out.
    Heartbeat {
        /// The group.
        group: KStr,
        /// The member.
        member: KStr,
    },
    /// The join phase's deadline: the initial delay or the rebalance timeout.
    Join {
        /// The group.
        group: KStr,
    },
    /// Members that did not send SyncGroup within the rebalance timeout are removed.
    Sync {
        /// The group.
        group: KStr,
        /// The generation the timer belongs to.
        generation: i32,
    },
}

/// What the group asks of the broker once its metadata is stored.
#[derive(Clone, Debug)]
pub enum StoreThen {
    /// Nothing (a background store, e.g. a group that became empty).
    Nothing,
    /// The leader's assignment for `generation` is stored: apply it and go Stable.
    Sync {
        /// The generation it belongs to.
        generation: i32,
    },
    /// Send this reply (a static member's rejoin).
    Reply(Req, Box<ResponseBody>),
}

/// An effect a handler asks for.
///
/// Not boxed although `Reply` is large: nearly every effect is a reply, which lives only until
/// the broker encodes it, and a box would cost an allocation per response.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Effect {
    /// Answer a request.
    Reply(Req, ResponseBody),
    /// Arm (or re-arm) a timer.
    Arm(GroupTimer, Instant),
    /// Disarm a timer.
    Cancel(GroupTimer),
    /// Store the group's metadata (its current state, or the assignment being stored), then
    /// do what `StoreThen` says.
    Store(StoreThen),
}

/// What the classic coordinator reads and where it writes its effects.
pub type Ctx<'a> = super::Ctx<'a, Effect>;

impl Ctx<'_> {
    fn reply(&mut self, req: Req, body: ResponseBody) {
        self.out.push(Effect::Reply(req, body));
    }
}

pub use super::Client;

/// A classic consumer group.
#[derive(Debug)]
pub struct ClassicGroup {
    /// The group id.
    pub id: KStr,
    phase: Phase,
    /// The generation (0 for a new group).
    pub generation: i32,
    /// The protocol type (`consumer`, `connect`, ...), set by the first member.
    pub protocol_type: Option<KStr>,
    /// The protocol chosen for the current generation.
    pub protocol: Option<KStr>,
    /// The leader's member id.
    pub leader: Option<KStr>,
    /// The members, by id (ordered, so that every run is the same).
    pub members: BTreeMap<KStr, Member>,
    /// Static members: instance id -> member id.
    pub statics: BTreeMap<KStr, KStr>,
    /// Members given an id with MEMBER_ID_REQUIRED that have not joined with it yet.
    pub pending: BTreeSet<KStr>,
    /// How many members have a parked JoinGroup (kept so that admitting a member does not
    /// walk the group).
    joined: usize,
    /// For each protocol name, how many members support it.
    support: BTreeMap<KStr, usize>,
}

/// A JoinGroup refused with `code`.
#[must_use]
pub fn join_error(member_id: KStr, code: ErrorCode) -> ResponseBody {
    ResponseBody::JoinGroup(JoinGroupResponse {
        error_code: code.0,
        generation_id: -1,
        protocol_name: None,
        member_id,
        ..Default::default()
    })
}

fn sync_reply(code: ErrorCode, g: &ClassicGroup, assignment: Bytes) -> ResponseBody {
    ResponseBody::SyncGroup(SyncGroupResponse {
        error_code: code.0,
        protocol_type: if code == ErrorCode::NONE { g.protocol_type.clone() } else { None },
        protocol_name: if code == ErrorCode::NONE { g.protocol.clone() } else { None },
        assignment,
        ..Default::default()
    })
}

/// A SyncGroup or Heartbeat error reply.
#[must_use]
pub fn sync_error(code: ErrorCode) -> ResponseBody {
    ResponseBody::SyncGroup(SyncGroupResponse { error_code: code.0, ..Default::default() })
}

impl ClassicGroup {
    /// A new, empty group.
    #[must_use]
    pub fn new(id: KStr) -> Self {
        Self {
            id,
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            statics: BTreeMap::new(),
            pending: BTreeSet::new(),
            joined: 0,
            support: BTreeMap::new(),
        }
    }

    /// A group as recovered from storage: Stable with its members, or Empty without.
    #[must_use]
    pub fn recovered(
        id: KStr,
        generation: i32,
        protocol_type: Option<KStr>,
        protocol: Option<KStr>,
        leader: Option<KStr>,
        members: Vec<Member>,
    ) -> Self {
        let mut g = Self::new(id);
        g.generation = generation;
        g.protocol_type = protocol_type;
        if !members.is_empty() {
            g.protocol = protocol;
            g.leader = leader.filter(|l| members.iter().any(|m| &m.id == l)).or_else(|| Some(members[0].id.clone()));
            g.phase = Phase::Stable { pending_sync: BTreeSet::new() };
        }
        for m in members {
            if let Some(i) = &m.instance_id {
                g.statics.insert(i.clone(), m.id.clone());
            }
            g.insert_member(m);
        }
        g
    }

    /// The current state.
    #[must_use]
    pub const fn state(&self) -> GroupState {
        self.phase.state()
    }

    /// The phase with its data.
    #[must_use]
    pub const fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The one place the phase changes: asserts Kafka's transition table.
    fn set_phase(&mut self, next: Phase) {
        let (from, to) = (self.phase.state(), next.state());
        assert!(from.can_become(to), "group {}: illegal transition {from:?} -> {to:?}", self.id);
        self.phase = next;
    }

    /// Marks the group deleted.
    pub fn kill(&mut self) {
        self.set_phase(Phase::Dead);
    }

    /// Hands the group over to the consumer group it becomes (Kafka's online upgrade): parked
    /// JoinGroups and SyncGroups are answered REBALANCE_IN_PROGRESS, so that their members join
    /// again, now the consumer group's; the group's timers are disarmed and the group is dead.
    pub fn hand_over(&mut self, cx: &mut Ctx<'_>) {
        let ids: Vec<KStr> = self.members.keys().cloned().collect();
        for id in &ids {
            if let Some(j) = self.set_join(id, None) {
                cx.reply(j, join_error(id.clone(), ErrorCode::REBALANCE_IN_PROGRESS));
            }
            if let Some(s) = self.members.get_mut(id).and_then(|m| m.sync.take()) {
                cx.reply(s, sync_error(ErrorCode::REBALANCE_IN_PROGRESS));
            }
            cx.out.push(Effect::Cancel(self.hb_key(id)));
        }
        for id in core::mem::take(&mut self.pending) {
            cx.out.push(Effect::Cancel(self.hb_key(&id)));
        }
        cx.out.push(Effect::Cancel(self.join_key()));
        cx.out.push(Effect::Cancel(GroupTimer::Sync { group: self.id.clone(), generation: self.generation }));
        self.kill();
    }

    /// A consumer group whose last KIP-848 member left, as a classic group (Kafka's online
    /// downgrade): its classic `members` at `generation`, each holding what `assignment` writes
    /// for it in the protocol the group selects; a rebalance starts at once, so that every
    /// member joins again under the classic protocol. The group's metadata is stored.
    pub fn downgraded(
        id: KStr,
        generation: i32,
        members: Vec<Member>,
        assignment: impl Fn(&Member, &str) -> Bytes,
        cx: &mut Ctx<'_>,
    ) -> Self {
        let mut g = Self::recovered(id, generation, Some(KStr::from("consumer")), None, None, members);
        g.protocol = g.select_protocol();
        let protocol = g.protocol.clone().unwrap_or_default();
        for m in g.members.values_mut() {
            m.assignment = assignment(m, &protocol);
        }
        let ids: Vec<KStr> = g.members.keys().cloned().collect();
        for id in &ids {
            g.reschedule(cx, id);
        }
        g.prepare_rebalance(cx);
        cx.out.push(Effect::Store(StoreThen::Nothing));
        g
    }

    /// The assignment being stored, if the leader's sync is being stored.
    #[must_use]
    pub fn storing(&self) -> Option<&BTreeMap<KStr, Bytes>> {
        match &self.phase {
            Phase::CompletingRebalance { storing, .. } => storing.as_ref(),
            _ => None,
        }
    }

    fn joined(&self) -> usize {
        debug_assert_eq!(self.joined, self.members.values().filter(|m| m.join.is_some()).count());
        self.joined
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.joined() == self.members.len()
    }

    /// Counts (or, with `add` false, uncounts) a member's distinct protocol names.
    fn count_support(support: &mut BTreeMap<KStr, usize>, protocols: &[(KStr, Bytes)], add: bool) {
        for (i, (p, _)) in protocols.iter().enumerate() {
            if protocols[..i].iter().any(|(q, _)| q == p) {
                continue;
            }
            if add {
                *support.entry(p.clone()).or_default() += 1;
            } else if let Some(n) = support.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    support.remove(p);
                }
            }
        }
    }

    /// Adds a member, keeping the counters.
    fn insert_member(&mut self, m: Member) {
        self.joined += usize::from(m.join.is_some());
        Self::count_support(&mut self.support, &m.protocols, true);
        if let Some(old) = self.members.insert(m.id.clone(), m) {
            self.joined -= usize::from(old.join.is_some());
            Self::count_support(&mut self.support, &old.protocols, false);
        }
    }

    /// Removes a member, keeping the counters.
    fn take_member(&mut self, id: &KStr) -> Option<Member> {
        let m = self.members.remove(id)?;
        self.joined -= usize::from(m.join.is_some());
        Self::count_support(&mut self.support, &m.protocols, false);
        Some(m)
    }

    /// Parks (or, with `None`, takes) a member's JoinGroup; returns the one it replaces.
    fn set_join(&mut self, id: &KStr, req: Option<Req>) -> Option<Req> {
        let m = self.members.get_mut(id)?;
        let old = core::mem::replace(&mut m.join, req);
        self.joined = self.joined + usize::from(m.join.is_some()) - usize::from(old.is_some());
        old
    }

    /// Replaces a member's protocols, keeping the counters.
    fn set_protocols(&mut self, id: &KStr, protocols: Vec<(KStr, Bytes)>) {
        let Some(m) = self.members.get_mut(id) else { return };
        Self::count_support(&mut self.support, &m.protocols, false);
        Self::count_support(&mut self.support, &protocols, true);
        m.protocols = protocols;
    }

    /// The longest rebalance timeout of the members.
    fn rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO)
    }

    fn hb_key(&self, member: &KStr) -> GroupTimer {
        GroupTimer::Heartbeat { group: self.id.clone(), member: member.clone() }
    }

    fn join_key(&self) -> GroupTimer {
        GroupTimer::Join { group: self.id.clone() }
    }

    /// Re-arms a member's session timer.
    fn reschedule(&self, cx: &mut Ctx<'_>, member: &KStr) {
        let Some(m) = self.members.get(member) else { return };
        let timeout = if m.is_new { cx.cfg.group_new_member_join_timeout } else { m.session_timeout };
        cx.out.push(Effect::Arm(self.hb_key(member), cx.now + timeout));
    }

    /// Whether the group accepts the protocols of a joining member (Kafka's `supportsProtocols`).
    fn supports(&self, protocol_type: &str, protocols: &[(KStr, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(p, _)| self.support.get(p).copied().unwrap_or(0) == self.members.len())
    }

    /// The protocol every member supports that most members prefer (Kafka's `selectProtocol`):
    /// each member votes for its first choice among the candidates; ties go to the candidate
    /// the members list first.
    #[must_use]
    pub fn select_protocol(&self) -> Option<KStr> {
        let first = self.members.values().next()?;
        let candidates: Vec<&KStr> = first
            .protocols
            .iter()
            .map(|(p, _)| p)
            .filter(|p| self.members.values().all(|m| m.metadata(p).is_some()))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m.protocols.iter().find_map(|(p, _)| candidates.iter().position(|c| *c == p)) {
                votes[i] += 1;
            }
        }
        let best = (0..candidates.len()).max_by_key(|&i| (votes[i], core::cmp::Reverse(i)))?;
        Some(candidates[best].clone())
    }

    /// Kafka's `validateMember`: a static instance id must map to `member_id`, which must exist.
    fn validate_member(&self, member_id: &KStr, instance_id: Option<&KStr>) -> Result<(), ErrorCode> {
        if let Some(i) = instance_id {
            match self.statics.get(i) {
                None => return Err(ErrorCode::UNKNOWN_MEMBER_ID),
                Some(m) if m != member_id => return Err(ErrorCode::FENCED_INSTANCE_ID),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) { Ok(()) } else { Err(ErrorCode::UNKNOWN_MEMBER_ID) }
    }

    /// Kafka's `acceptJoiningMember`: new members are admitted up to `group_max_size`.
    fn accepts(&self, member_id: &KStr, max: usize) -> bool {
        match self.state() {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members.get(member_id).is_some_and(|m| m.join.is_some()) || self.joined() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max
            }
        }
    }

    // ---- JoinGroup -------------------------------------------------------------------------

    /// Handles a JoinGroup whose session timeout the caller has validated.
    pub fn join(&mut self, cx: &mut Ctx<'_>, req: Req, m: &JoinGroupRequest, client: &Client) {
        let protocols: Vec<(KStr, Bytes)> = m.protocols.iter().map(|p| (p.name.clone(), p.metadata.clone())).collect();
        let unknown = m.member_id.is_empty();
        if !self.accepts(&m.member_id, cx.cfg.group_max_size) {
            // Kafka removes an existing member that cannot be admitted (the group shrank).
            if !unknown && self.members.contains_key(&m.member_id) {
                self.remove_member(cx, &m.member_id.clone());
                self.after_removal(cx);
            }
            return cx.reply(req, join_error(m.member_id.clone(), ErrorCode::GROUP_MAX_SIZE_REACHED));
        }
        if self.state() == GroupState::Dead {
            return cx.reply(req, join_error(m.member_id.clone(), ErrorCode::COORDINATOR_NOT_AVAILABLE));
        }
        if !self.supports(&m.protocol_type, &protocols) {
            return cx.reply(req, join_error(m.member_id.clone(), ErrorCode::INCONSISTENT_GROUP_PROTOCOL));
        }
        let session = Duration::from_millis(i64::from(m.session_timeout_ms));
        // JoinGroup v0 has no rebalance timeout: the session timeout serves.
        let rebalance =
            if req.version == 0 { session } else { Duration::from_millis(i64::from(m.rebalance_timeout_ms)) };
        let timeouts = (session, rebalance);
        if unknown {
            self.join_new(cx, req, m, client, protocols, timeouts);
        } else {
            self.join_existing(cx, req, m, client, protocols, timeouts);
        }
    }

    fn new_member_id(cx: &mut Ctx<'_>, prefix: &str) -> KStr {
        let id = super::member_uuid(cx.rng).0;
        let half = |b: &[u8]| b.iter().fold(0u64, |n, x| (n << 8) | u64::from(*x));
        let (a, b) = (half(&id[..8]), half(&id[8..]));
        let uuid = format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        );
        KStr::from(format!("{prefix}-{uuid}"))
    }

    fn join_new(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Req,
        m: &JoinGroupRequest,
        client: &Client,
        protocols: Vec<(KStr, Bytes)>,
        timeouts: (Duration, Duration),
    ) {
        let prefix = m.group_instance_id.as_ref().unwrap_or(&client.id);
        let member_id = Self::new_member_id(cx, prefix);
        if let Some(instance) = &m.group_instance_id {
            if let Some(old) = self.statics.get(instance).cloned() {
                return self.replace_static(cx, req, &old, member_id, protocols, timeouts);
            }
        } else if req.version >= 4 {
            // KIP-394: hand out the id and wait for the member to join with it.
            self.pending.insert(member_id.clone());
            cx.out.push(Effect::Arm(self.hb_key(&member_id), cx.now + timeouts.0));
            return cx.reply(req, join_error(member_id, ErrorCode::MEMBER_ID_REQUIRED));
        }
        self.add_member(cx, req, member_id, m, client, protocols, timeouts);
    }

    #[allow(clippy::too_many_arguments)]
    fn add_member(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Req,
        member_id: KStr,
        m: &JoinGroupRequest,
        client: &Client,
        protocols: Vec<(KStr, Bytes)>,
        (session, rebalance): (Duration, Duration),
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(m.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Some(i) = &m.group_instance_id {
            self.statics.insert(i.clone(), member_id.clone());
        }
        self.pending.remove(&member_id);
        let member = Member {
            id: member_id.clone(),
            instance_id: m.group_instance_id.clone(),
            client_id: client.id.clone(),
            client_host: client.host.clone(),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocols,
            assignment: Bytes::new(),
            join: Some(req),
            sync: None,
            is_new: true,
        };
        self.insert_member(member);
        self.reschedule(cx, &member_id);
        self.rebalance_or_complete(cx);
    }

    fn join_existing(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Req,
        m: &JoinGroupRequest,
        client: &Client,
        protocols: Vec<(KStr, Bytes)>,
        timeouts: (Duration, Duration),
    ) {
        let id = m.member_id.clone();
        if self.pending.contains(&id) {
            if m.group_instance_id.is_some() {
                // A pending member is always dynamic; an instance id now is a confused client.
                return cx.reply(req, join_error(id, ErrorCode::UNKNOWN_MEMBER_ID));
            }
            return self.add_member(cx, req, id, m, client, protocols, timeouts);
        }
        if let Err(code) = self.validate_member(&id, m.group_instance_id.as_ref()) {
            return cx.reply(req, join_error(id, code));
        }
        let (same, is_leader) =
            (self.members.get(&id).is_some_and(|x| x.same_protocols(&protocols)), self.leader.as_ref() == Some(&id));
        match self.state() {
            GroupState::PreparingRebalance => self.update_member(cx, req, &id, protocols, timeouts),
            GroupState::CompletingRebalance if same => {
                // It missed its join answer: send the current generation again.
                let resp = self.join_response(&id, is_leader, false);
                cx.reply(req, resp);
            }
            GroupState::Stable if same && !is_leader => {
                let resp = self.join_response(&id, false, false);
                cx.reply(req, resp);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // New metadata, or the leader asking for a rebalance.
                self.update_member(cx, req, &id, protocols, timeouts);
            }
            GroupState::Empty | GroupState::Dead => cx.reply(req, join_error(id, ErrorCode::UNKNOWN_MEMBER_ID)),
        }
    }

    fn update_member(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Req,
        id: &KStr,
        protocols: Vec<(KStr, Bytes)>,
        (session, rebalance): (Duration, Duration),
    ) {
        let Some(member) = self.members.get_mut(id) else { return };
        member.session_timeout = session;
        member.rebalance_timeout = rebalance;
        self.set_protocols(id, protocols);
        if let Some(old) = self.set_join(id, Some(req)) {
            // A second JoinGroup while one is parked: the older one is superseded.
            cx.reply(old, join_error(id.clone(), ErrorCode::UNKNOWN_MEMBER_ID));
        }
        self.reschedule(cx, id);
        self.rebalance_or_complete(cx);
    }

    /// A known static member rejoined without its member id (it restarted): it takes a new
    /// id; in Stable, without a rebalance unless the chosen protocol would change (KIP-345).
    fn replace_static(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Req,
        old_id: &KStr,
        new_id: KStr,
        protocols: Vec<(KStr, Bytes)>,
        (session, rebalance): (Duration, Duration),
    ) {
        let Some(mut member) = self.take_member(old_id) else { return };
        cx.out.push(Effect::Cancel(self.hb_key(old_id)));
        // The old incarnation's parked requests are fenced.
        if let Some(j) = member.join.take() {
            cx.reply(j, join_error(old_id.clone(), ErrorCode::FENCED_INSTANCE_ID));
        }
        if let Some(s) = member.sync.take() {
            cx.reply(s, sync_error(ErrorCode::FENCED_INSTANCE_ID));
        }
        member.id = new_id.clone();
        member.protocols = protocols;
        member.session_timeout = session;
        member.rebalance_timeout = rebalance;
        if let Some(i) = &member.instance_id {
            self.statics.insert(i.clone(), new_id.clone());
        }
        if self.leader.as_ref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if let Phase::CompletingRebalance { pending_sync, .. } | Phase::Stable { pending_sync } = &mut self.phase
            && pending_sync.remove(old_id)
        {
            pending_sync.insert(new_id.clone());
        }
        let is_leader = self.leader.as_ref() == Some(&new_id);
        self.insert_member(member);
        self.reschedule(cx, &new_id);
        match self.state() {
            GroupState::Stable if self.select_protocol() == self.protocol => {
                let resp = self.join_response(&new_id, is_leader, is_leader);
                cx.out.push(Effect::Store(StoreThen::Reply(req, Box::new(resp))));
            }
            GroupState::Stable => {
                self.park_join(cx, &new_id, req);
                self.rebalance_or_complete(cx);
            }
            GroupState::CompletingRebalance => {
                // The leader may have been given the old id: rebalance.
                self.park_join(cx, &new_id, req);
                self.prepare_rebalance(cx);
            }
            _ => self.park_join(cx, &new_id, req),
        }
    }

    fn park_join(&mut self, cx: &mut Ctx<'_>, id: &KStr, req: Req) {
        if let Some(old) = self.set_join(id, Some(req)) {
            cx.reply(old, join_error(id.clone(), ErrorCode::UNKNOWN_MEMBER_ID));
        }
    }

    fn join_response(&self, member: &KStr, with_members: bool, skip_assignment: bool) -> ResponseBody {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| JoinGroupResponseMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        };
        ResponseBody::JoinGroup(JoinGroupResponse {
            error_code: 0,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment,
            member_id: member.clone(),
            members,
            ..Default::default()
        })
    }

    // ---- rebalance -------------------------------------------------------------------------

    /// Kafka's `maybePrepareRebalanceOrCompleteJoin`.
    fn rebalance_or_complete(&mut self, cx: &mut Ctx<'_>) {
        if self.state().can_become(GroupState::PreparingRebalance) {
            self.prepare_rebalance(cx);
        } else {
            self.maybe_complete_join(cx);
        }
    }

    /// Kafka's `maybeCompleteJoinPhase`: the join phase ends early once everyone has rejoined,
    /// except during the initial delay.
    fn maybe_complete_join(&mut self, cx: &mut Ctx<'_>) {
        if let Phase::PreparingRebalance { from_empty: false, .. } = self.phase
            && self.all_joined()
        {
            self.complete_join(cx);
        }
    }

    fn prepare_rebalance(&mut self, cx: &mut Ctx<'_>) {
        if self.state() == GroupState::CompletingRebalance {
            self.propagate_error(cx, ErrorCode::REBALANCE_IN_PROGRESS);
        }
        let from_empty = self.state() == GroupState::Empty;
        let initial = from_empty.then_some(InitialDelay { delay: cx.cfg.group_initial_rebalance_delay });
        if let Some(d) = initial {
            cx.out.push(Effect::Arm(self.join_key(), cx.now + d.delay));
        }
        self.set_phase(Phase::PreparingRebalance { from_empty, initial });
        if !from_empty {
            if self.all_joined() {
                self.complete_join(cx);
            } else {
                cx.out.push(Effect::Arm(self.join_key(), cx.now + self.rebalance_timeout()));
            }
        }
    }

    /// Answers every parked SyncGroup with `code` and clears assignments (Kafka's
    /// `resetAndPropagateAssignmentWithError`).
    fn propagate_error(&mut self, cx: &mut Ctx<'_>, code: ErrorCode) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(s) = m.sync.take() {
                cx.reply(s, sync_error(code));
            }
        }
    }

    /// The join timer fired: the initial delay or the rebalance timeout ran out.
    pub fn on_join_timer(&mut self, cx: &mut Ctx<'_>) {
        if matches!(self.phase, Phase::PreparingRebalance { .. }) {
            self.complete_join(cx);
        }
    }

    /// Kafka's `completeClassicGroupJoin`: drops dynamic members that did not rejoin, starts
    /// the next generation and answers every parked JoinGroup.
    fn complete_join(&mut self, cx: &mut Ctx<'_>) {
        cx.out.push(Effect::Cancel(self.join_key()));
        let gone: Vec<KStr> = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove_member(cx, id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Only static members that have not rejoined are left: wait for them (or their
            // sessions) a while longer.
            cx.out.push(Effect::Arm(self.join_key(), cx.now + self.rebalance_timeout()));
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.set_phase(Phase::Empty);
            cx.out.push(Effect::Store(StoreThen::Nothing));
            return;
        }
        self.protocol = self.select_protocol();
        let pending_sync: BTreeSet<KStr> = self.members.keys().cloned().collect();
        self.set_phase(Phase::CompletingRebalance { pending_sync, storing: None });
        let ids: Vec<KStr> = self.members.keys().cloned().collect();
        for id in &ids {
            let is_leader = self.leader.as_ref() == Some(id);
            let resp = self.join_response(id, is_leader, false);
            if let Some(m) = self.members.get_mut(id) {
                m.is_new = false;
            }
            if let Some(j) = self.set_join(id, None) {
                cx.reply(j, resp);
            }
            self.reschedule(cx, id);
        }
        let generation = self.generation;
        let timeout = self.rebalance_timeout();
        cx.out.push(Effect::Arm(GroupTimer::Sync { group: self.id.clone(), generation }, cx.now + timeout));
    }

    /// Keeps the leader if it rejoined, else picks a member that did.
    fn elect_joined_leader(&mut self) -> bool {
        if let Some(l) = &self.leader
            && self.members.get(l).is_some_and(|m| m.join.is_some())
        {
            return true;
        }
        match self.members.values().find(|m| m.join.is_some()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// The sync timer fired: members that never sent SyncGroup are removed and the group
    /// rebalances without them.
    pub fn on_sync_timer(&mut self, cx: &mut Ctx<'_>, generation: i32) {
        if generation != self.generation {
            return;
        }
        let missing: Vec<KStr> = match &self.phase {
            Phase::CompletingRebalance { pending_sync, .. } | Phase::Stable { pending_sync } => {
                pending_sync.iter().cloned().collect()
            }
            _ => return,
        };
        if missing.is_empty() {
            return;
        }
        for id in &missing {
            self.remove_member(cx, id);
        }
        self.prepare_rebalance(cx);
    }

    // ---- SyncGroup -------------------------------------------------------------------------

    /// Handles a SyncGroup.
    pub fn sync(&mut self, cx: &mut Ctx<'_>, req: Req, m: &SyncGroupRequest) {
        if let Err(code) = self.validate_sync(&m.member_id, m.group_instance_id.as_ref(), m.generation_id) {
            return cx.reply(req, sync_error(code));
        }
        let inconsistent =
            |asked: &Option<KStr>, ours: &Option<KStr>| matches!((asked, ours), (Some(a), Some(o)) if a != o);
        if inconsistent(&m.protocol_type, &self.protocol_type) || inconsistent(&m.protocol_name, &self.protocol) {
            return cx.reply(req, sync_error(ErrorCode::INCONSISTENT_GROUP_PROTOCOL));
        }
        let id = m.member_id.clone();
        match &mut self.phase {
            Phase::PreparingRebalance { .. } => cx.reply(req, sync_error(ErrorCode::REBALANCE_IN_PROGRESS)),
            Phase::CompletingRebalance { pending_sync, .. } => {
                pending_sync.remove(&id);
                if let Some(member) = self.members.get_mut(&id)
                    && let Some(old) = member.sync.replace(req)
                {
                    cx.reply(old, sync_error(ErrorCode::REBALANCE_IN_PROGRESS));
                }
                if self.leader.as_ref() == Some(&id) {
                    let mut assignment: BTreeMap<KStr, Bytes> =
                        self.members.keys().map(|k| (k.clone(), Bytes::new())).collect();
                    for a in &m.assignments {
                        if let Some(slot) = assignment.get_mut(&a.member_id) {
                            *slot = a.assignment.clone();
                        }
                    }
                    if let Phase::CompletingRebalance { storing, .. } = &mut self.phase {
                        *storing = Some(assignment);
                    }
                    cx.out.push(Effect::Store(StoreThen::Sync { generation: self.generation }));
                }
            }
            Phase::Stable { pending_sync } => {
                pending_sync.remove(&id);
                let assignment = self.members.get(&id).map(|x| x.assignment.clone()).unwrap_or_default();
                let resp = sync_reply(ErrorCode::NONE, self, assignment);
                cx.reply(req, resp);
            }
            Phase::Empty => cx.reply(req, sync_error(ErrorCode::UNKNOWN_MEMBER_ID)),
            Phase::Dead => cx.reply(req, sync_error(ErrorCode::COORDINATOR_NOT_AVAILABLE)),
        }
    }

    fn validate_sync(&self, member_id: &KStr, instance: Option<&KStr>, generation: i32) -> Result<(), ErrorCode> {
        if self.state() == GroupState::Dead {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        self.validate_member(member_id, instance)?;
        if generation != self.generation {
            return Err(ErrorCode::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// The leader's assignment was stored (`ok`) or not.
    pub fn on_stored(&mut self, cx: &mut Ctx<'_>, generation: i32, ok: bool) {
        if generation != self.generation {
            return;
        }
        let Phase::CompletingRebalance { storing, pending_sync } = &mut self.phase else { return };
        let Some(assignment) = storing.take() else { return };
        if !ok {
            self.propagate_error(cx, ErrorCode::COORDINATOR_NOT_AVAILABLE);
            return self.rebalance_or_complete(cx);
        }
        let pending_sync = core::mem::take(pending_sync);
        for (id, a) in assignment {
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = a;
            }
        }
        self.set_phase(Phase::Stable { pending_sync });
        let ids: Vec<KStr> = self.members.keys().cloned().collect();
        for id in &ids {
            let Some(m) = self.members.get_mut(id) else { continue };
            if let Some(s) = m.sync.take() {
                let a = m.assignment.clone();
                let resp = sync_reply(ErrorCode::NONE, self, a);
                cx.reply(s, resp);
                self.reschedule(cx, id);
            }
        }
    }

    /// Kafka's `validateOffsetCommit` for a non-transactional commit: members commit in their
    /// generation; a commit without member and generation (simple consumers, admin tools)
    /// only while the group is Empty.
    pub fn validate_commit(&self, member_id: &KStr, instance: Option<&KStr>, generation: i32) -> Result<(), ErrorCode> {
        match self.state() {
            GroupState::Dead => return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
            GroupState::Empty if generation < 0 => return Ok(()),
            _ => {}
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            self.validate_member(member_id, instance)?;
            if generation != self.generation {
                return Err(ErrorCode::ILLEGAL_GENERATION);
            }
        } else if self.state() != GroupState::Empty {
            return Err(ErrorCode::UNKNOWN_MEMBER_ID);
        }
        if self.state() == GroupState::CompletingRebalance {
            return Err(ErrorCode::REBALANCE_IN_PROGRESS);
        }
        Ok(())
    }

    // ---- Heartbeat and LeaveGroup ----------------------------------------------------------

    /// Handles a Heartbeat; returns its error code.
    pub fn heartbeat(
        &mut self,
        cx: &mut Ctx<'_>,
        member_id: &KStr,
        instance: Option<&KStr>,
        generation: i32,
    ) -> ErrorCode {
        if let Err(code) = self.validate_sync(member_id, instance, generation) {
            return code;
        }
        match self.state() {
            GroupState::Empty => ErrorCode::UNKNOWN_MEMBER_ID,
            GroupState::Dead => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            GroupState::PreparingRebalance => {
                self.reschedule(cx, member_id);
                ErrorCode::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.reschedule(cx, member_id);
                ErrorCode::NONE
            }
        }
    }

    /// Removes one leaving member (by id, or by instance id when `member_id` is empty);
    /// returns the per-member error. Call [`ClassicGroup::after_removal`] once afterwards.
    pub fn leave(&mut self, cx: &mut Ctx<'_>, member_id: &KStr, instance: Option<&KStr>) -> ErrorCode {
        if member_id.is_empty() {
            let Some(id) = instance.and_then(|i| self.statics.get(i)).cloned() else {
                return ErrorCode::UNKNOWN_MEMBER_ID;
            };
            self.remove_member(cx, &id);
            return ErrorCode::NONE;
        }
        if self.pending.remove(member_id) {
            cx.out.push(Effect::Cancel(self.hb_key(member_id)));
            return ErrorCode::NONE;
        }
        if let Err(code) = self.validate_member(member_id, instance) {
            return code;
        }
        self.remove_member(cx, member_id);
        ErrorCode::NONE
    }

    /// After members were removed: rebalance, or finish the join phase if everyone left has
    /// rejoined.
    pub fn after_removal(&mut self, cx: &mut Ctx<'_>) {
        match self.state() {
            GroupState::Stable | GroupState::CompletingRebalance => self.rebalance_or_complete(cx),
            GroupState::PreparingRebalance => self.maybe_complete_join(cx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// A member's (or pending member's) session timer fired.
    pub fn on_session_timer(&mut self, cx: &mut Ctx<'_>, member_id: &KStr) {
        if self.pending.remove(member_id) {
            return self.maybe_complete_join(cx);
        }
        let Some(m) = self.members.get(member_id) else { return };
        // Members parked in a join or sync are alive, except new ones (Kafka's
        // `hasSatisfiedHeartbeat`).
        if !m.is_new && (m.join.is_some() || m.sync.is_some()) {
            return;
        }
        self.remove_member(cx, member_id);
        self.after_removal(cx);
    }

    /// Drops a member, answering its parked requests with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, cx: &mut Ctx<'_>, id: &KStr) {
        let Some(mut m) = self.take_member(id) else { return };
        cx.out.push(Effect::Cancel(self.hb_key(id)));
        if let Some(j) = m.join.take() {
            cx.reply(j, join_error(KStr::default(), ErrorCode::UNKNOWN_MEMBER_ID));
        }
        if let Some(s) = m.sync.take() {
            cx.reply(s, sync_error(ErrorCode::UNKNOWN_MEMBER_ID));
        }
        if let Some(i) = &m.instance_id
            && self.statics.get(i) == Some(id)
        {
            self.statics.remove(i);
        }
        if let Phase::CompletingRebalance { pending_sync, .. } | Phase::Stable { pending_sync } = &mut self.phase {
            pending_sync.remove(id);
        }
        if self.leader.as_ref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Whether `topic` may be in use: a member's consumer-protocol subscription names it, or a
    /// subscription cannot be read (Kafka's `isSubscribedToTopic` assumes yes then).
    #[must_use]
    pub fn subscribed_to(&self, topic: &str) -> bool {
        if self.members.is_empty() || self.protocol_type.as_deref() != Some("consumer") {
            return false;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members.values().any(|m| match m.metadata(&protocol).map(super::subscription_topics) {
            Some(Some(topics)) => topics.iter().any(|t| t.as_str() == topic),
            _ => true,
        })
    }
}
