//! A KIP-848 consumer-group member (`group.protocol=consumer`), as the Java client behaves.
//!
//! It generates its own member id when its process starts (KIP-1082), joins with member epoch
//! 0, heartbeats at the interval the broker returns (at once when it has something to
//! acknowledge), and reconciles every assignment it receives: revoked partitions are
//! committed and dropped before the heartbeat that acknowledges the new epoch, new ones are
//! owned from the response and start from their committed offsets (OffsetFetch v9 with member
//! id and epoch). It fetches and commits (OffsetCommit v9, member id + member epoch) only what
//! it owns. FENCED_MEMBER_EPOCH and UNKNOWN_MEMBER_ID make it drop everything and rejoin at
//! epoch 0 with the same member id. It leaves with epoch -1 (a static member with -2, then
//! comes back under a new member id and the same instance id), or crashes (stops
//! heartbeating; the broker's session timeout fences it).
//!
//! Some members also subscribe with a regex ([`REGEXES`], sent on ConsumerGroupHeartbeat v1
//! with every full heartbeat, beside the names, possibly none); they learn the ids of every
//! topic (Metadata with null topics) and learn them again when an assignment names a topic
//! they do not know (one created since). A member that has heartbeated since a topic's
//! deletion was acknowledged must own none of its partitions.
//!
//! Ownership is reported to [`Checker::acquired`] / [`Checker::released`], epochs to
//! [`Checker::member_epoch`], commits to [`Checker::committed`] (member epoch as the
//! generation).

use std::collections::{BTreeMap, BTreeSet};

use kelp_core::codec::generated::consumer_group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestTopicPartitions,
};
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchResponse, FetchTopic};
use kelp_core::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic};
use kelp_core::codec::generated::offset_fetch::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ErrorCode, KStr, Uuid};
use kelp_core::time::{Duration, Instant};

use super::clients::{Io, MemberConfig, Model, Pending, View, earliest_request, listed_offsets};
use super::invariants::{Tp, decode};
use crate::harness::commit_request;

const K_META: u64 = 1;
const K_HB: u64 = 2;
const K_OFFSETS: u64 = 3;
const K_FETCH: u64 = 4;
const K_COMMIT: u64 = 5;
const K_LEAVE: u64 = 6;
const K_RESET: u64 = 7;

/// The subscription regexes members draw from, each with the simulator's own reading of it
/// (RE2, matched against the whole topic name, as Kafka does), which the stable-group check
/// holds the broker to. The topics: main `t0`..`t2`, churned `r-1`, `r-2`, ... (created,
/// written, grown and deleted while groups run, never reused), scratch `scratch-<n>`.
/// Several match only part of a name (`r-`, `r-[1-3]` against `r-12`): whole-name matching
/// must leave those topics out.
pub const REGEXES: &[(&str, Matcher)] = &[
    ("r-.*", |t| t.starts_with("r-")),
    ("r-[0-9]*[02468]", |t| churn_no(t).is_some_and(|n| n % 2 == 0)),
    ("t0|r-[0-9]*[13579]", |t| t == "t0" || churn_no(t).is_some_and(|n| n % 2 == 1)),
    ("t[0-9]+", |t| t.strip_prefix('t').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))),
    ("r-[1-3]", |t| churn_no(t).is_some_and(|n| (1..=3).contains(&n))),
    ("t1|scratch-.*", |t| t == "t1" || t.starts_with("scratch-")),
    (".*", |_| true),
    ("r-", |_| false),
    ("", |_| false),
];

/// Whether a topic's whole name matches a regex, as the simulator reads the regex.
pub type Matcher = fn(&str) -> bool;

/// The number of a churned topic `r-<n>`.
fn churn_no(topic: &str) -> Option<u32> {
    let n = topic.strip_prefix("r-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Crashed or left; its process starts again at the instant given.
    Down(Instant),
    /// Learning topic ids.
    Metadata,
    /// In the group (or joining it).
    Member,
}

/// A KIP-848 consumer-group member.
#[derive(Debug)]
pub struct ConsumerMember {
    id: usize,
    cfg: MemberConfig,
    phase: Phase,
    /// Bumped whenever what is in flight becomes meaningless (crash, reconnect, fence).
    incarnation: u64,
    /// Process starts, for fresh member ids.
    starts: u64,
    member_id: String,
    epoch: i32,
    topic_ids: BTreeMap<Uuid, String>,
    /// Owned partitions and positions (`None` until the committed offset is known).
    owned: BTreeMap<Tp, Option<i64>>,
    hwms: BTreeMap<Tp, i64>,
    /// The owned set last reported to the broker (`None`: send everything next time).
    reported: Option<BTreeSet<Tp>>,
    /// Dropped but not yet acknowledged: still owned in the checker's eyes.
    releasing: BTreeSet<Tp>,
    hb_in_flight: bool,
    fetch_in_flight: bool,
    offsets_in_flight: bool,
    commit_in_flight: bool,
    interval: Duration,
    next_hb: Instant,
    next_commit: Instant,
    next_fetch: Instant,
    faults_on: bool,
    /// Positions sent with each fetch, by correlation id.
    fetches: BTreeMap<i32, BTreeMap<Tp, i64>>,
    /// Offsets and epoch of commits in flight, by correlation id.
    commits: BTreeMap<i32, (i32, Vec<(Tp, i64)>)>,
    /// Heartbeats that went unanswered or failed in a row (for the backoff).
    failures: u32,
    /// The broker's session timeout for KIP-848 members.
    session: Duration,
    /// Partitions whose position fell below the log start: earliest offset asked for.
    resetting: BTreeSet<Tp>,
    /// When the heartbeat that last succeeded was sent.
    heard: Instant,
}

impl ConsumerMember {
    /// Member number `id` (a KIP-848 member of `cfg.group`); the broker fences members it
    /// has not heard from for `session`.
    #[must_use]
    pub fn new(id: usize, cfg: MemberConfig, session: Duration) -> Self {
        Self {
            id,
            cfg,
            phase: Phase::Metadata,
            incarnation: 0,
            starts: 0,
            member_id: String::new(),
            epoch: 0,
            topic_ids: BTreeMap::new(),
            owned: BTreeMap::new(),
            hwms: BTreeMap::new(),
            reported: None,
            releasing: BTreeSet::new(),
            hb_in_flight: false,
            fetch_in_flight: false,
            offsets_in_flight: false,
            commit_in_flight: false,
            interval: Duration::from_millis(500),
            next_hb: Instant(0),
            next_commit: Instant(0),
            next_fetch: Instant(0),
            faults_on: true,
            fetches: BTreeMap::new(),
            commits: BTreeMap::new(),
            failures: 0,
            session,
            resetting: BTreeSet::new(),
            heard: Instant(0),
        }
    }

    fn tag(&self, kind: u64) -> u64 {
        kind | ((self.incarnation & 0xffff_ffff) << 8)
    }

    fn current(&self, p: &Pending) -> bool {
        (p.tag >> 8) & 0xffff_ffff == self.incarnation & 0xffff_ffff
    }

    fn id_of(&self, name: &str) -> Option<Uuid> {
        self.topic_ids.iter().find(|(_, n)| n.as_str() == name).map(|(id, _)| *id)
    }

    /// A fresh process: a new member id (Java 4.x generates its own), epoch 0, nothing owned.
    fn start(&mut self, io: &mut Io<'_>) {
        self.starts += 1;
        self.member_id = format!("m{}-{}-{:08x}", self.id, self.starts, io.rng.u64() as u32);
        self.epoch = 0;
        self.reported = None;
    }

    /// Gives up every partition at once (fenced, crashed, left).
    fn drop_all(&mut self, io: &mut Io<'_>) {
        let tps: Vec<Tp> = self.owned.keys().cloned().chain(self.releasing.iter().cloned()).collect();
        for tp in &tps {
            io.check.released(&self.cfg.group, &self.member_id, tp);
        }
        self.owned.clear();
        self.releasing.clear();
        self.fetches.clear();
        self.resetting.clear();
        self.fetch_in_flight = false;
        self.offsets_in_flight = false;
    }

    /// FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID: lose everything, rejoin at epoch 0.
    fn fenced(&mut self, io: &mut Io<'_>) {
        self.drop_all(io);
        self.incarnation += 1;
        self.epoch = 0;
        self.reported = None;
        self.hb_in_flight = false;
        self.commit_in_flight = false;
        self.commits.clear();
        self.next_hb = io.now;
        io.wake_in(Duration::ZERO);
    }

    fn go_down(&mut self, io: &mut Io<'_>, leave: bool) {
        if leave && io.connected() && self.epoch > 0 {
            let epoch = if self.cfg.instance.is_some() { -2 } else { -1 };
            let req = ConsumerGroupHeartbeatRequest {
                group_id: self.cfg.group.as_str().into(),
                member_id: self.member_id.as_str().into(),
                member_epoch: epoch,
                instance_id: self.cfg.instance.as_deref().map(KStr::from),
                rebalance_timeout_ms: -1,
                ..Default::default()
            };
            io.send(&RequestBody::ConsumerGroupHeartbeat(req), 0, self.tag(K_LEAVE));
        } else {
            io.crash();
        }
        self.drop_all(io);
        self.incarnation += 1;
        self.hb_in_flight = false;
        self.commit_in_flight = false;
        self.commits.clear();
        self.hwms.clear();
        // The next process generates a new member id.
        self.member_id.clear();
        let until = io.now + io.rng.millis(200, 8000);
        self.phase = Phase::Down(until);
        io.wake_at(until);
    }

    fn send_heartbeat(&mut self, io: &mut Io<'_>) {
        if self.hb_in_flight || !io.connected() {
            return;
        }
        let owned: BTreeSet<Tp> = self.owned.keys().cloned().collect();
        let full = self.epoch == 0 || self.reported.is_none();
        let mut req = ConsumerGroupHeartbeatRequest {
            group_id: self.cfg.group.as_str().into(),
            member_id: self.member_id.as_str().into(),
            member_epoch: self.epoch,
            rebalance_timeout_ms: -1,
            subscribed_topic_names: None,
            topic_partitions: None,
            ..Default::default()
        };
        if full {
            req.instance_id = self.cfg.instance.as_deref().map(KStr::from);
            req.rebalance_timeout_ms = self.cfg.rebalance_ms;
            // Names always (maybe none), as the Java client does: a full heartbeat is known by them.
            req.subscribed_topic_names = Some(self.cfg.topics.iter().map(|t| KStr::from(t.as_str())).collect());
            req.subscribed_topic_regex = self.cfg.regex.map(|r| KStr::from(REGEXES[r].0));
        }
        if full || self.reported.as_ref() != Some(&owned) {
            let list = if self.epoch == 0 { BTreeSet::new() } else { owned.clone() };
            let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for (t, p) in &list {
                if let Some(id) = self.id_of(t) {
                    by_topic.entry(id).or_default().push(*p);
                }
            }
            req.topic_partitions = Some(
                by_topic
                    .into_iter()
                    .map(|(topic_id, partitions)| RequestTopicPartitions { topic_id, partitions, ..Default::default() })
                    .collect(),
            );
            self.reported = Some(list);
            // The acknowledgement leaves now: what was dropped is no longer owned.
            for tp in std::mem::take(&mut self.releasing) {
                io.check.released(&self.cfg.group, &self.member_id, &tp);
            }
        }
        self.hb_in_flight = true;
        let version = i16::from(self.cfg.regex.is_some());
        io.send(&RequestBody::ConsumerGroupHeartbeat(req), version, self.tag(K_HB));
        self.next_hb = io.now + self.interval;
    }

    fn on_heartbeat(&mut self, io: &mut Io<'_>, p_sent: Instant, r: &ConsumerGroupHeartbeatResponse) {
        self.hb_in_flight = false;
        let code = ErrorCode(r.error_code);
        if code == ErrorCode::FENCED_MEMBER_EPOCH || code == ErrorCode::UNKNOWN_MEMBER_ID {
            self.failures = 0;
            return self.fenced(io);
        }
        if code != ErrorCode::NONE {
            // Coordinator loading or not available, a store failure, a static instance still
            // held by its crashed predecessor: back off; the next heartbeat carries everything.
            self.failures += 1;
            self.reported = None;
            let backoff = 50u64 << self.failures.min(4);
            self.next_hb = io.now + io.rng.millis(backoff / 2, backoff);
            return io.wake_at(self.next_hb);
        }
        self.failures = 0;
        if let Some(id) = &r.member_id
            && id.as_str() != self.member_id
        {
            return io.check.fail(format!("{}: heartbeat answered for member {id}", self.name()));
        }
        io.check.member_epoch(&self.cfg.group, &self.member_id, r.member_epoch);
        // The broker fences a member it has not heard from for its session timeout, or that
        // has not revoked within its rebalance timeout; the answer left the broker at most a
        // network delay before now, so the sent time of the request bounds it safely.
        let wait = self.session.min(Duration::from_millis(i64::from(self.cfg.rebalance_ms)));
        io.check.heard(p_sent, &self.cfg.group, &self.member_id, wait);
        if r.heartbeat_interval_ms > 0 {
            self.interval = Duration::from_millis(i64::from(r.heartbeat_interval_ms));
        }
        self.next_hb = io.now + self.interval;
        let joined = self.epoch == 0;
        self.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            let mut target: BTreeSet<Tp> = BTreeSet::new();
            for t in &a.topic_partitions {
                let Some(name) = self.topic_ids.get(&t.topic_id) else {
                    // A topic this member has no id for (one created since, that its regex
                    // matches): learn the ids again, then heartbeat in full for the assignment.
                    self.phase = Phase::Metadata;
                    self.reported = None;
                    return io.wake_in(Duration::ZERO);
                };
                target.extend(t.partitions.iter().map(|p| (name.clone(), *p)));
            }
            self.reconcile(io, &target);
        } else if joined {
            return io.check.fail(format!("{}: a join answered without an assignment", self.name()));
        }
        self.heard = p_sent;
        // A deleted topic's partitions are revoked on the first heartbeat after the deletion,
        // also while a revocation is pending (Kafka's CurrentAssignmentBuilder; seed 159 found
        // kelp keeping them until the pending revocation was acknowledged).
        let kept = self.owned.keys().find(|tp| io.check.deleted_at(&tp.0).is_some_and(|at| at < p_sent)).cloned();
        if let Some(tp) = kept {
            let at = io.check.deleted_at(&tp.0).unwrap_or(Instant(0));
            let (name, epoch) = (self.name(), self.epoch);
            return io.check.fail(format!(
                "{name}: still owns {tp:?} at epoch {epoch} after a heartbeat sent at {p_sent:?}, though the topic's deletion was acknowledged at {at:?}"
            ));
        }
        let owned: BTreeSet<Tp> = self.owned.keys().cloned().collect();
        if self.reported.as_ref() != Some(&owned) {
            // Something to acknowledge: at once, as the Java client does.
            self.next_hb = io.now;
        }
        io.wake_in(Duration::ZERO);
    }

    /// Moves to `target`: revoked partitions are committed and dropped, new ones owned.
    fn reconcile(&mut self, io: &mut Io<'_>, target: &BTreeSet<Tp>) {
        let revoked: Vec<Tp> = self.owned.keys().filter(|tp| !target.contains(*tp)).cloned().collect();
        let commit: Vec<(Tp, i64)> =
            revoked.iter().filter_map(|tp| self.owned.get(tp).copied().flatten().map(|o| (tp.clone(), o))).collect();
        if !commit.is_empty() {
            // The Java client commits what it consumed before giving partitions up.
            self.send_commit(io, commit, false);
        }
        for tp in revoked {
            self.owned.remove(&tp);
            self.releasing.insert(tp);
        }
        for tp in target {
            if !self.owned.contains_key(tp) {
                io.check.acquired(io.now, &self.cfg.group, &self.member_id, tp);
                self.releasing.remove(tp);
                self.owned.insert(tp.clone(), None);
            }
        }
        // Fetches and offset fetches in flight stay valid: their answers only move
        // partitions still owned, from the position they were asked for.
    }

    fn send_offsets(&mut self, io: &mut Io<'_>) {
        if self.offsets_in_flight || self.epoch <= 0 {
            return;
        }
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for ((t, p), pos) in &self.owned {
            if pos.is_none() {
                topics.entry(t.as_str()).or_default().push(*p);
            }
        }
        if topics.is_empty() {
            return;
        }
        let req = OffsetFetchRequest {
            group_id: KStr::default(),
            topics: None,
            groups: vec![OffsetFetchRequestGroup {
                group_id: self.cfg.group.as_str().into(),
                member_id: Some(self.member_id.as_str().into()),
                member_epoch: self.epoch,
                topics: Some(
                    topics
                        .into_iter()
                        .map(|(t, ps)| OffsetFetchRequestTopics {
                            name: t.into(),
                            partition_indexes: ps,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            require_stable: true,
            ..Default::default()
        };
        self.offsets_in_flight = true;
        io.send(&RequestBody::OffsetFetch(req), 9, self.tag(K_OFFSETS));
    }

    fn send_commit(&mut self, io: &mut Io<'_>, offsets: Vec<(Tp, i64)>, periodic: bool) {
        if offsets.is_empty() || self.epoch <= 0 || !io.connected() {
            return;
        }
        let list: Vec<(&str, i32, i64)> = offsets.iter().map(|((t, p), o)| (t.as_str(), *p, *o)).collect();
        let req = commit_request(&self.cfg.group, self.epoch, &self.member_id, &list);
        if periodic {
            self.commit_in_flight = true;
        }
        self.commits.insert(*io.next_corr, (self.epoch, offsets));
        io.send(&req, 9, self.tag(K_COMMIT) | (u64::from(periodic) << 63));
    }

    fn send_fetch(&mut self, io: &mut Io<'_>) {
        if self.fetch_in_flight || io.now < self.next_fetch {
            return;
        }
        let positions: BTreeMap<Tp, i64> = self.owned.iter().filter_map(|(tp, p)| p.map(|o| (tp.clone(), o))).collect();
        if positions.is_empty() {
            return;
        }
        let mut topics: Vec<FetchTopic> = Vec::new();
        for ((t, p), pos) in &positions {
            let part = FetchPartition {
                partition: *p,
                fetch_offset: *pos,
                partition_max_bytes: 1 << 16,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            match topics.iter_mut().find(|x| x.topic.as_str() == t) {
                Some(x) => x.partitions.push(part),
                None => {
                    topics.push(FetchTopic { topic: t.as_str().into(), partitions: vec![part], ..Default::default() })
                }
            }
        }
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: io.rng.range(0, u64::try_from(self.cfg.max_wait_ms).unwrap_or(0)) as i32,
            min_bytes: 1,
            max_bytes: 1 << 20,
            isolation_level: 0,
            // No fetch session: a full fetch every time (sessions are the classic model's).
            session_id: 0,
            session_epoch: -1,
            topics,
            ..Default::default()
        };
        self.fetch_in_flight = true;
        self.fetches.insert(*io.next_corr, positions);
        io.send(&RequestBody::Fetch(req), 12, self.tag(K_FETCH));
    }

    fn on_fetch(&mut self, io: &mut Io<'_>, p: &Pending, r: &FetchResponse) {
        let sent = self.fetches.remove(&p.corr);
        if sent.is_some() {
            self.fetch_in_flight = false;
        }
        let mut got = false;
        for t in &r.responses {
            for pd in &t.partitions {
                let tp = (t.topic.as_str().to_owned(), pd.partition_index);
                if ErrorCode(pd.error_code) == ErrorCode::OFFSET_OUT_OF_RANGE
                    && let Some(from) = sent.as_ref().and_then(|s| s.get(&tp)).copied()
                    && self.owned.get(&tp) == Some(&Some(from))
                {
                    io.check.out_of_range(&self.name(), &tp, from);
                    if self.resetting.insert(tp.clone()) {
                        io.send(&earliest_request(&tp), 7, self.tag(K_RESET));
                    }
                }
                if pd.error_code != 0 {
                    continue;
                }
                let (records, end) = pd.records.as_ref().map(decode).unwrap_or_default();
                let from = match sent.as_ref().and_then(|s| s.get(&tp)) {
                    Some(f) => *f,
                    None => records.first().map_or(0, |r| r.offset),
                };
                io.check.fetched(p.sent_at, &tp, from, pd.high_watermark, (&records, end));
                let Some(sent) = &sent else { continue };
                if !sent.contains_key(&tp) {
                    io.check.fail(format!("{}: fetch answered for {tp:?}, which it did not ask for", self.name()));
                    continue;
                }
                // Only a partition still owned at the position the fetch was sent from moves.
                let Some(Some(pos)) = self.owned.get(&tp).copied() else { continue };
                if pos != from {
                    continue;
                }
                let before = self.hwms.get(&tp).copied().unwrap_or(0);
                io.check.hwm_seen(&self.name(), &tp, before, pd.high_watermark);
                self.hwms.insert(tp.clone(), before.max(pd.high_watermark));
                // Past the last record, and past batches the cleaner emptied.
                let next = records.last().map_or(-1, |r| r.offset + 1).max(end.unwrap_or(-1));
                if next > pos {
                    got = true;
                    self.owned.insert(tp, Some(next));
                }
            }
        }
        if !got {
            self.next_fetch = io.now + io.rng.millis(1, 20);
        }
        io.wake_in(Duration::ZERO);
    }

    fn member_wake(&mut self, io: &mut Io<'_>) {
        if io.now >= self.next_hb {
            self.send_heartbeat(io);
        }
        if self.epoch > 0 {
            self.send_offsets(io);
            if io.now >= self.next_commit && !self.commit_in_flight {
                let offsets: Vec<(Tp, i64)> =
                    self.owned.iter().filter_map(|(tp, p)| p.map(|o| (tp.clone(), o))).collect();
                self.send_commit(io, offsets, true);
                self.next_commit = io.now + io.rng.millis(100, 1500);
            }
            self.send_fetch(io);
        }
        let mut next = io.now + Duration::from_secs(1);
        if !self.hb_in_flight {
            next = next.min(self.next_hb);
        }
        if !self.commit_in_flight && self.epoch > 0 {
            next = next.min(self.next_commit);
        }
        if !self.fetch_in_flight && self.epoch > 0 && self.owned.values().any(Option::is_some) {
            next = next.min(self.next_fetch);
        }
        io.wake_at(next.max(io.now + Duration(1_000)));
    }
}

impl Model for ConsumerMember {
    fn name(&self) -> String {
        format!("consumer-{}({})", self.id, self.cfg.group)
    }

    fn wake(&mut self, io: &mut Io<'_>) {
        if let Phase::Down(until) = self.phase {
            if io.now < until {
                return io.wake_at(until);
            }
            self.phase = Phase::Metadata;
        }
        if self.member_id.is_empty() {
            self.start(io);
        }
        if !io.connected() {
            return io.connect();
        }
        if self.faults_on && io.faults_on && self.phase == Phase::Member {
            if io.rng.chance(self.cfg.crash_rate) {
                return self.go_down(io, false);
            }
            if io.rng.chance(self.cfg.leave_rate) {
                return self.go_down(io, true);
            }
        }
        match self.phase {
            Phase::Down(_) => {}
            Phase::Metadata => {
                if !self.hb_in_flight {
                    if self.epoch == 0 {
                        self.incarnation += 1;
                    }
                    // Else a member learning a new topic's id: what it has in flight stays valid.
                    self.hb_in_flight = true;
                    // A regex member learns every topic's id (null topics: all of them).
                    let topics = self.cfg.regex.is_none().then(|| {
                        self.cfg
                            .all_topics
                            .iter()
                            .map(|t| MetadataRequestTopic { name: Some(t.as_str().into()), ..Default::default() })
                            .collect()
                    });
                    let req = RequestBody::Metadata(MetadataRequest {
                        topics,
                        allow_auto_topic_creation: false,
                        ..Default::default()
                    });
                    io.send(&req, 12, self.tag(K_META));
                }
            }
            Phase::Member => self.member_wake(io),
        }
    }

    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody) {
        let kind = p.tag & 0xff;
        match body {
            // The leave is answered: the process exits.
            ResponseBody::ConsumerGroupHeartbeat(_) if kind == K_LEAVE => io.crash(),
            ResponseBody::Fetch(r) => self.on_fetch(io, p, &r),
            ResponseBody::OffsetCommit(r) => {
                let Some((epoch, sent)) = self.commits.remove(&p.corr) else { return };
                if p.tag >> 63 == 1 && self.current(p) {
                    self.commit_in_flight = false;
                }
                for t in &r.topics {
                    for pr in &t.partitions {
                        if pr.error_code != 0 {
                            continue;
                        }
                        let tp = (t.name.as_str().to_owned(), pr.partition_index);
                        if let Some((_, o)) = sent.iter().find(|(x, _)| *x == tp) {
                            io.check.committed(&self.cfg.group, &tp, epoch, &self.member_id, *o);
                        }
                    }
                }
            }
            _ if !self.current(p) => {}
            ResponseBody::Metadata(m) => {
                self.hb_in_flight = false;
                let mut ids = BTreeMap::new();
                for name in &self.cfg.all_topics {
                    let t = m.topics.iter().find(|x| x.name.as_ref().is_some_and(|n| n.as_str() == name));
                    match t {
                        Some(t) if t.error_code == 0 && !t.partitions.is_empty() => {
                            ids.insert(t.topic_id, name.clone());
                        }
                        _ => return io.wake_between(50, 300),
                    }
                }
                if self.cfg.regex.is_some() {
                    for t in m.topics.iter().filter(|t| t.error_code == 0) {
                        if let Some(n) = &t.name {
                            ids.insert(t.topic_id, n.as_str().to_owned());
                        }
                    }
                }
                // Ids are never reused: a deleted topic's stays known, for the heartbeat that
                // reports its partitions until they are revoked.
                self.topic_ids.extend(ids);
                self.phase = Phase::Member;
                self.next_hb = io.now;
                io.wake_in(Duration::ZERO);
            }
            ResponseBody::ConsumerGroupHeartbeat(r) => self.on_heartbeat(io, p.sent_at, &r),
            ResponseBody::OffsetFetch(r) => {
                self.offsets_in_flight = false;
                let Some(g) = r.groups.first() else {
                    return io.check.fail(format!("{}: OffsetFetch v9 answered without its group", self.name()));
                };
                if g.error_code == 0 {
                    for t in &g.topics {
                        for pr in &t.partitions {
                            let tp = (t.name.as_str().to_owned(), pr.partition_index);
                            if pr.error_code == 0
                                && let Some(pos @ None) = self.owned.get_mut(&tp)
                            {
                                *pos = Some(pr.committed_offset.max(0));
                            }
                        }
                    }
                }
                // A stale epoch or a busy coordinator: the next wake asks again.
                io.wake_between(1, 50);
            }
            body @ ResponseBody::ListOffsets(_) if kind == K_RESET => {
                let name = self.name();
                for (tp, start) in listed_offsets(&body) {
                    io.check.log_start_seen(&name, &tp, start);
                    if let Some(Some(pos)) = self.owned.get_mut(&tp)
                        && *pos < start
                    {
                        *pos = start;
                    }
                }
                self.resetting.clear();
                io.wake_in(Duration::ZERO);
            }
            other => io.check.fail(format!("{}: unexpected {:?} response", self.name(), other.api_key())),
        }
    }

    fn disconnected(&mut self, io: &mut Io<'_>, _lost: &[Pending]) {
        if matches!(self.phase, Phase::Down(_)) {
            return;
        }
        // The connection is gone, the membership is not: heartbeat again (with everything).
        self.incarnation += 1;
        self.hb_in_flight = false;
        self.fetch_in_flight = false;
        self.offsets_in_flight = false;
        self.commit_in_flight = false;
        self.fetches.clear();
        self.resetting.clear();
        self.commits.clear();
        self.reported = None;
        self.next_hb = io.now;
        io.wake_between(10, 200);
    }

    fn faults_off(&mut self, io: &mut Io<'_>) {
        self.faults_on = false;
        io.wake_in(Duration::ZERO);
    }

    fn view(&self) -> View {
        View::Member {
            group: self.cfg.group.clone(),
            topics: self.cfg.topics.clone(),
            regex: self.cfg.regex,
            heard: self.heard,
            member_id: self.member_id.clone(),
            active: self.phase == Phase::Member
                && self.epoch > 0
                && self.releasing.is_empty()
                && self.owned.values().all(Option::is_some),
            generation: self.epoch,
            positions: self.owned.iter().filter_map(|(tp, p)| p.map(|o| (tp.clone(), o))).collect(),
            hwms: self.hwms.clone(),
        }
    }
}
