//! Scenario tests, in virtual time, of live migration between the classic and the consumer
//! group protocols (Kafka 4's `group.consumer.migration.policy`): a KIP-848 member upgrading a
//! classic group with members, classic members living in a consumer group through JoinGroup,
//! SyncGroup, Heartbeat, OffsetCommit and LeaveGroup, the downgrade when the last KIP-848
//! member leaves, the policy, the timeouts and a restart in between.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::consumer_group_describe::{ConsumerGroupDescribeRequest, DescribedGroup};
use kelp_core::codec::generated::consumer_group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestTopicPartitions,
};
use kelp_core::codec::generated::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedTopic,
};
use kelp_core::codec::generated::consumer_protocol_subscription::{
    ConsumerProtocolSubscription, TopicPartition as OwnedTopic,
};
use kelp_core::codec::generated::describe_groups::DescribeGroupsRequest;
use kelp_core::codec::generated::join_group::JoinGroupResponse;
use kelp_core::codec::generated::list_groups::ListGroupsRequest;
use kelp_core::codec::{ApiKey, ErrorCode, KStr, Message, Reader, Uuid, Writer};
use kelp_core::config::MigrationPolicy;
use kelp_core::{Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, commit_request, create_topic, heartbeat_request, join_request, leave_request, ms, sync_request,
    test_config,
};

const G: &str = "mg";
const T: &str = "t";

/// A partition by topic name.
type Named = BTreeSet<(String, i32)>;

/// A consumer protocol subscription at version 1, with what the member owns.
fn subscription(topics: &[&str], owned: &Named) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in owned {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let s = ConsumerProtocolSubscription {
        topics: topics.iter().map(|t| KStr::from(*t)).collect(),
        owned_partitions: by_topic.into_iter().map(|(t, ps)| OwnedTopic { topic: t.into(), partitions: ps }).collect(),
        ..Default::default()
    };
    let mut w = Writer::default();
    w.i16(1);
    s.encode(&mut w, 1);
    w.into_bytes()
}

fn assignment_bytes(parts: &Named) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let a = ConsumerProtocolAssignment {
        assigned_partitions: by_topic
            .into_iter()
            .map(|(t, ps)| AssignedTopic { topic: t.into(), partitions: ps })
            .collect(),
        ..Default::default()
    };
    let mut w = Writer::default();
    w.i16(1);
    a.encode(&mut w, 1);
    w.into_bytes()
}

fn read_assignment(b: &Bytes) -> Named {
    if b.is_empty() {
        return Named::new();
    }
    let mut r = Reader::new(b);
    let v = r.i16("version").expect("a version");
    let a = ConsumerProtocolAssignment::decode(&mut r, v).expect("an assignment");
    a.assigned_partitions.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p))).collect()
}

/// A scripted classic consumer: eager (it gives everything up before it rejoins) unless
/// `cooperative`, in which case it reports what it owns and keeps it across joins.
struct C {
    conn: ConnId,
    id: String,
    generation: i32,
    owned: Named,
    cooperative: bool,
    instance: Option<String>,
}

impl C {
    fn new(h: &mut Harness) -> Self {
        Self {
            conn: h.connect(),
            id: String::new(),
            generation: -1,
            owned: Named::new(),
            cooperative: false,
            instance: None,
        }
    }

    fn join_body(&self) -> RequestBody {
        let owned = if self.cooperative { self.owned.clone() } else { Named::new() };
        let protocols = [("range", subscription(&[T], &owned)), ("roundrobin", subscription(&[T], &owned))];
        join_request(G, &self.id, self.instance.as_deref(), &protocols)
    }

    /// A JoinGroup (v7) to a consumer group, answered at once; MEMBER_ID_REQUIRED is followed.
    fn join(&mut self, h: &mut Harness) -> JoinGroupResponse {
        if !self.cooperative {
            self.owned.clear();
        }
        let mut r = expect_body!(h.call(self.conn, self.join_body(), 7), JoinGroup);
        if ErrorCode(r.error_code) == ErrorCode::MEMBER_ID_REQUIRED {
            self.id = r.member_id.to_string();
            r = expect_body!(h.call(self.conn, self.join_body(), 7), JoinGroup);
        }
        if r.error_code == 0 {
            self.id = r.member_id.to_string();
            self.generation = r.generation_id;
        }
        r
    }

    fn sync(&mut self, h: &mut Harness) -> ErrorCode {
        let req = sync_request(G, self.generation, &self.id, self.instance.as_deref(), &[]);
        let r = expect_body!(h.call(self.conn, req, 5), SyncGroup);
        if r.error_code == 0 {
            assert_eq!(r.protocol_name.as_deref(), Some("range"));
            self.owned = read_assignment(&r.assignment);
        }
        ErrorCode(r.error_code)
    }

    fn heartbeat(&self, h: &mut Harness) -> ErrorCode {
        let req = heartbeat_request(G, self.generation, &self.id, self.instance.as_deref());
        let r = expect_body!(h.call(self.conn, req, 4), Heartbeat);
        ErrorCode(r.error_code)
    }

    /// Heartbeat; on REBALANCE_IN_PROGRESS join and sync again. Returns whether it rejoined.
    fn poll(&mut self, h: &mut Harness) -> bool {
        match self.heartbeat(h) {
            ErrorCode::NONE => false,
            ErrorCode::REBALANCE_IN_PROGRESS => {
                let r = self.join(h);
                assert_eq!(r.error_code, 0, "rejoin");
                assert_eq!(self.sync(h), ErrorCode::NONE);
                true
            }
            other => panic!("heartbeat: {other:?}"),
        }
    }
}

/// A scripted KIP-848 member.
struct K {
    conn: ConnId,
    id: String,
    epoch: i32,
    owned: BTreeMap<Uuid, BTreeSet<i32>>,
}

fn beat(h: &mut Harness, c: ConnId, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    expect_body!(h.call(c, RequestBody::ConsumerGroupHeartbeat(req), 0), ConsumerGroupHeartbeat)
}

impl K {
    fn request(&self, epoch: i32) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest {
            group_id: G.into(),
            member_id: self.id.as_str().into(),
            member_epoch: epoch,
            rebalance_timeout_ms: if epoch == 0 { 30_000 } else { -1 },
            subscribed_topic_names: (epoch == 0).then(|| vec![KStr::from(T)]),
            topic_partitions: (epoch >= 0).then(|| {
                self.owned
                    .iter()
                    .map(|(t, ps)| RequestTopicPartitions {
                        topic_id: *t,
                        partitions: ps.iter().copied().collect(),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }
    }

    fn join(h: &mut Harness) -> (Self, ConsumerGroupHeartbeatResponse) {
        let mut k = Self { conn: h.connect(), id: String::new(), epoch: 0, owned: BTreeMap::new() };
        let r = k.beat(h);
        (k, r)
    }

    fn beat(&mut self, h: &mut Harness) -> ConsumerGroupHeartbeatResponse {
        let r = beat(h, self.conn, self.request(self.epoch));
        if r.error_code == 0 {
            self.id = r.member_id.as_deref().unwrap_or_default().to_string();
            self.epoch = r.member_epoch;
            if let Some(a) = &r.assignment {
                self.owned = a
                    .topic_partitions
                    .iter()
                    .filter(|t| !t.partitions.is_empty())
                    .map(|t| (t.topic_id, t.partitions.iter().copied().collect()))
                    .collect();
            }
        }
        r
    }

    fn leave(&mut self, h: &mut Harness) -> ConsumerGroupHeartbeatResponse {
        beat(h, self.conn, self.request(-1))
    }

    fn count(&self) -> usize {
        self.owned.values().map(BTreeSet::len).sum()
    }
}

fn setup(cfg: Config, partitions: i32) -> (Harness, ConnId) {
    let mut h = Harness::new(cfg);
    let admin = h.connect();
    create_topic(&mut h, admin, T, partitions);
    (h, admin)
}

/// A Stable classic group of `n` eager members; the leader splits the partitions round robin.
fn classic_group(h: &mut Harness, n: usize, partitions: i32) -> Vec<C> {
    let mut cs: Vec<C> = (0..n).map(|_| C::new(h)).collect();
    let corrs: Vec<i32> = cs.iter().map(|c| h.send(c.conn, &c.join_body(), 3)).collect();
    h.advance(ms(3000));
    let mut leader = None;
    let mut ids = Vec::new();
    for (c, corr) in cs.iter_mut().zip(corrs) {
        let (got, body) = h.recv(c.conn, ApiKey::JOIN_GROUP, 3).expect("joined");
        assert_eq!(got, corr);
        let r = expect_body!(body, JoinGroup);
        assert_eq!(r.error_code, 0);
        c.id = r.member_id.to_string();
        c.generation = r.generation_id;
        if r.leader == r.member_id {
            leader = Some(c.id.clone());
        }
        ids.push(c.id.clone());
    }
    let leader = leader.expect("a leader");
    let mut plan: BTreeMap<String, Named> = ids.iter().map(|id| (id.clone(), Named::new())).collect();
    for p in 0..partitions {
        let id = &ids[usize::try_from(p).expect("small") % n];
        plan.get_mut(id).expect("member").insert((T.to_string(), p));
    }
    let assignments: Vec<(String, Bytes)> = plan.iter().map(|(id, a)| (id.clone(), assignment_bytes(a))).collect();
    let followers: Vec<(usize, i32)> = cs
        .iter()
        .enumerate()
        .filter(|(_, c)| c.id != leader)
        .map(|(i, c)| (i, h.send(c.conn, &sync_request(G, c.generation, &c.id, None, &[]), 3)))
        .collect();
    let l = cs.iter().position(|c| c.id == leader).expect("leader");
    let refs: Vec<(&str, Bytes)> = assignments.iter().map(|(id, a)| (id.as_str(), a.clone())).collect();
    let r = expect_body!(h.call(cs[l].conn, sync_request(G, cs[l].generation, &leader, None, &refs), 3), SyncGroup);
    assert_eq!(r.error_code, 0);
    cs[l].owned = read_assignment(&r.assignment);
    for (i, corr) in followers {
        let (got, body) = h.recv(cs[i].conn, ApiKey::SYNC_GROUP, 3).expect("synced");
        assert_eq!(got, corr);
        let r = expect_body!(body, SyncGroup);
        assert_eq!(r.error_code, 0);
        cs[i].owned = read_assignment(&r.assignment);
    }
    cs
}

fn describe(h: &mut Harness, c: ConnId) -> DescribedGroup {
    let req = ConsumerGroupDescribeRequest { group_ids: vec![G.into()], ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::ConsumerGroupDescribe(req), 0), ConsumerGroupDescribe);
    r.groups.into_iter().next().expect("one group")
}

/// The group's type and state as ListGroups v5 reports them.
fn listed(h: &mut Harness, c: ConnId) -> (String, String) {
    let r = expect_body!(h.call(c, RequestBody::ListGroups(ListGroupsRequest::default()), 5), ListGroups);
    let g = r.groups.iter().find(|g| g.group_id.as_str() == G).expect("listed");
    (g.group_type.to_string(), g.group_state.to_string())
}

/// Every partition of the topic is owned by exactly one member, as the members see it.
fn covered(topic: Uuid, partitions: i32, cs: &[&C], ks: &[&K]) {
    let mut seen = BTreeSet::new();
    for c in cs {
        for (_, p) in &c.owned {
            assert!(seen.insert(*p), "partition {p} owned twice");
        }
    }
    for k in ks {
        for p in k.owned.get(&topic).into_iter().flatten() {
            assert!(seen.insert(*p), "partition {p} owned twice");
        }
    }
    assert_eq!(seen, (0..partitions).collect::<BTreeSet<i32>>());
}

fn topic_id(h: &mut Harness, c: ConnId) -> Uuid {
    let d = describe(h, c);
    d.members
        .iter()
        .flat_map(|m| m.target_assignment.topic_partitions.iter())
        .map(|t| t.topic_id)
        .next()
        .expect("a topic in some target")
}

/// Polls everyone until nobody has anything left to do.
fn settle(h: &mut Harness, cs: &mut [&mut C], ks: &mut [&mut K]) {
    for _ in 0..10 {
        let mut moved = false;
        for k in ks.iter_mut() {
            let before = (k.epoch, k.owned.clone());
            let r = k.beat(h);
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
            moved |= before != (k.epoch, k.owned.clone());
        }
        for c in cs.iter_mut() {
            moved |= c.poll(h);
        }
        if !moved {
            return;
        }
    }
    panic!("the group did not settle");
}

#[test]
fn a_kip848_member_upgrades_a_classic_group_and_its_members_follow() {
    let (mut h, admin) = setup(test_config(), 6);
    let mut cs = classic_group(&mut h, 2, 6);
    assert_eq!(listed(&mut h, admin), ("classic".into(), "Stable".into()));
    let generation = cs[0].generation;
    let (mut k, r) = K::join(&mut h);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    // The classic members' partitions are still theirs: the new member waits for them.
    assert_eq!(k.count(), 0);
    assert_eq!(listed(&mut h, admin), ("consumer".into(), "Reconciling".into()));
    let d = describe(&mut h, admin);
    assert_eq!(d.members.len(), 3);
    assert_eq!(d.group_epoch, generation + 1);
    // The classic members carry on at their generation until they are told to rejoin.
    for c in &cs {
        assert_eq!(c.heartbeat(&mut h), ErrorCode::REBALANCE_IN_PROGRESS);
    }
    let [a, b] = &mut cs[..] else { unreachable!() };
    let r = a.join(&mut h);
    assert_eq!((r.error_code, r.generation_id), (0, generation + 1));
    assert_eq!((r.protocol_type.as_deref(), r.protocol_name.as_deref()), (Some("consumer"), Some("range")));
    assert!(r.leader.is_empty() && r.members.is_empty(), "nobody leads: the coordinator assigns");
    assert_eq!(a.sync(&mut h), ErrorCode::NONE);
    settle(&mut h, &mut [a, b], &mut [&mut k]);
    let t = topic_id(&mut h, admin);
    covered(t, 6, &[a, b], &[&k]);
    assert_eq!((a.owned.len(), b.owned.len(), k.count()), (2, 2, 2));
    assert_eq!(listed(&mut h, admin), ("consumer".into(), "Stable".into()));
    // DescribeGroups shows every member, classic or not.
    let req = DescribeGroupsRequest { groups: vec![G.into()], ..Default::default() };
    let r = expect_body!(h.call(admin, RequestBody::DescribeGroups(req), 5), DescribeGroups);
    assert_eq!((r.groups[0].protocol_type.as_str(), r.groups[0].members.len()), ("consumer", 3));
    // A classic member commits with its generation, at a classic OffsetCommit version.
    let r = expect_body!(h.call(a.conn, commit_request(G, a.generation, &a.id, &[(T, 0, 5)]), 8), OffsetCommit);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let r = expect_body!(h.call(a.conn, commit_request(G, a.generation - 1, &a.id, &[(T, 0, 6)]), 8), OffsetCommit);
    assert_eq!(ErrorCode(r.topics[0].partitions[0].error_code), ErrorCode::ILLEGAL_GENERATION);
    // SyncGroup with the wrong protocol name is refused.
    let mut req = sync_request(G, a.generation, &a.id, None, &[]);
    if let RequestBody::SyncGroup(s) = &mut req {
        s.protocol_name = Some("roundrobin".into());
    }
    let r = expect_body!(h.call(a.conn, req, 5), SyncGroup);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn the_last_kip848_member_leaving_turns_the_group_classic_again() {
    let (mut h, admin) = setup(test_config(), 4);
    let mut cs = classic_group(&mut h, 2, 4);
    let (mut k, _) = K::join(&mut h);
    let [a, b] = &mut cs[..] else { unreachable!() };
    settle(&mut h, &mut [a, b], &mut [&mut k]);
    assert_eq!(k.count(), 1);
    let r = k.leave(&mut h);
    assert_eq!(r.error_code, 0);
    // Classic again, and rebalancing: every member rejoins the classic way.
    assert_eq!(listed(&mut h, admin), ("classic".into(), "PreparingRebalance".into()));
    assert_eq!(describe(&mut h, admin).error_code, ErrorCode::GROUP_ID_NOT_FOUND.0);
    for c in [&*a, &*b] {
        assert_eq!(c.heartbeat(&mut h), ErrorCode::REBALANCE_IN_PROGRESS);
    }
    let ja = h.send(a.conn, &a.join_body(), 5);
    let jb = h.send(b.conn, &b.join_body(), 5);
    let (got_a, ra) = h.recv(a.conn, ApiKey::JOIN_GROUP, 5).expect("joined");
    let (got_b, rb) = h.recv(b.conn, ApiKey::JOIN_GROUP, 5).expect("joined");
    assert_eq!((got_a, got_b), (ja, jb));
    let (ra, rb) = (expect_body!(ra, JoinGroup), expect_body!(rb, JoinGroup));
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    let leader = if ra.leader == ra.member_id { &ra } else { &rb };
    assert_eq!(leader.members.len(), 2, "the leader sees both subscriptions");
    assert_eq!(listed(&mut h, admin), ("classic".into(), "CompletingRebalance".into()));
}

#[test]
fn a_classic_member_joins_a_consumer_group_and_gets_its_share() {
    let (mut h, admin) = setup(test_config(), 4);
    let (mut k, r) = K::join(&mut h);
    assert_eq!((r.error_code, k.count()), (0, 4));
    let mut c = C::new(&mut h);
    // A member id first (JoinGroup v4+), then the join, answered at once.
    let first = expect_body!(h.call(c.conn, c.join_body(), 7), JoinGroup);
    assert_eq!(ErrorCode(first.error_code), ErrorCode::MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    c.id = first.member_id.to_string();
    let r = c.join(&mut h);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_id, first.member_id);
    assert_eq!(c.sync(&mut h), ErrorCode::NONE);
    assert!(c.owned.is_empty(), "its partitions are still the other member's");
    settle(&mut h, &mut [&mut c], &mut [&mut k]);
    let t = topic_id(&mut h, admin);
    covered(t, 4, &[&c], &[&k]);
    assert_eq!((c.owned.len(), k.count()), (2, 2));
    // A JoinGroup of another protocol type, or protocols the classic members do not share, is
    // refused.
    let other = h.connect();
    let mut req = join_request(G, "", None, &[("range", subscription(&[T], &Named::new()))]);
    if let RequestBody::JoinGroup(j) = &mut req {
        j.protocol_type = "connect".into();
    }
    let r = expect_body!(h.call(other, req, 3), JoinGroup);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
    let req = join_request(G, "", None, &[("sticky", subscription(&[T], &Named::new()))]);
    let r = expect_body!(h.call(other, req, 3), JoinGroup);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
    // Leaving through LeaveGroup frees its partitions for the KIP-848 member.
    let r = expect_body!(h.call(c.conn, leave_request(G, &[(&c.id, None)]), 3), LeaveGroup);
    assert_eq!((r.error_code, r.members[0].error_code), (0, 0));
    k.beat(&mut h);
    assert_eq!(k.count(), 4);
    // The group stays a consumer group: no classic member is left in it.
    assert_eq!(listed(&mut h, admin).0, "consumer");
}

#[test]
fn a_cooperative_classic_member_keeps_what_it_may_across_rebalances() {
    let (mut h, admin) = setup(test_config(), 4);
    let (mut k, _) = K::join(&mut h);
    let mut c = C::new(&mut h);
    c.cooperative = true;
    assert_eq!(c.join(&mut h).error_code, 0);
    assert_eq!(c.sync(&mut h), ErrorCode::NONE);
    settle(&mut h, &mut [&mut c], &mut [&mut k]);
    let t = topic_id(&mut h, admin);
    covered(t, 4, &[&c], &[&k]);
    let mine = c.owned.clone();
    assert_eq!(mine.len(), 2);
    // A second KIP-848 member: the classic member rejoins reporting what it owns, keeps what
    // stays its own, and gives up the rest before anyone else gets it.
    let (mut k2, r) = K::join(&mut h);
    assert_eq!(r.error_code, 0);
    let generation = c.generation;
    assert_eq!(c.heartbeat(&mut h), ErrorCode::REBALANCE_IN_PROGRESS);
    let r = c.join(&mut h);
    assert_eq!(r.error_code, 0);
    assert_eq!(c.sync(&mut h), ErrorCode::NONE);
    assert!(c.owned.is_subset(&mine), "it only keeps partitions it had: {:?} of {mine:?}", c.owned);
    if c.owned != mine {
        // Partitions to give up: the member stays at its generation until it has.
        assert_eq!(c.generation, generation);
        assert_eq!(c.heartbeat(&mut h), ErrorCode::REBALANCE_IN_PROGRESS);
    }
    settle(&mut h, &mut [&mut c], &mut [&mut k, &mut k2]);
    covered(t, 4, &[&c], &[&k, &k2]);
    let mut counts = [c.owned.len(), k.count(), k2.count()];
    counts.sort_unstable();
    assert_eq!(counts, [1, 1, 2]);
    assert!(c.generation > generation);
}

#[test]
fn upgrades_and_downgrades_follow_the_migration_policy() {
    let cfg = Config { group_consumer_migration_policy: MigrationPolicy::Disabled, ..test_config() };
    let (mut h, admin) = setup(cfg, 4);
    let mut cs = classic_group(&mut h, 2, 4);
    let (_, r) = K::join(&mut h);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::GROUP_ID_NOT_FOUND);
    assert_eq!(r.error_message.as_deref(), Some(format!("Group {G} is not a consumer group.").as_str()));
    assert_eq!(listed(&mut h, admin), ("classic".into(), "Stable".into()));
    for c in &cs {
        assert_eq!(c.heartbeat(&mut h), ErrorCode::NONE);
    }
    // Upgrade only: the group becomes a consumer group but never turns back.
    let cfg = Config { group_consumer_migration_policy: MigrationPolicy::Upgrade, ..test_config() };
    let mut h = h.restart(cfg);
    for c in &mut cs {
        c.conn = h.connect();
    }
    let admin = h.connect();
    let (mut k, r) = K::join(&mut h);
    assert_eq!(r.error_code, 0);
    let [a, b] = &mut cs[..] else { unreachable!() };
    settle(&mut h, &mut [a, b], &mut [&mut k]);
    let _ = k.leave(&mut h);
    assert_eq!(listed(&mut h, admin).0, "consumer");
    assert_eq!(describe(&mut h, admin).members.len(), 2);
}

#[test]
fn a_classic_member_that_does_not_rejoin_in_time_is_fenced() {
    let (mut h, admin) = setup(test_config(), 4);
    let cs = classic_group(&mut h, 2, 4);
    let (mut k, _) = K::join(&mut h);
    assert_eq!(cs[0].heartbeat(&mut h), ErrorCode::REBALANCE_IN_PROGRESS);
    assert_eq!(cs[1].heartbeat(&mut h), ErrorCode::REBALANCE_IN_PROGRESS);
    // Both keep heartbeating, neither rejoins: after the rebalance timeout (30 s) they are out.
    for _ in 0..4 {
        h.advance(ms(8000));
        k.beat(&mut h);
        for c in &cs {
            let code = c.heartbeat(&mut h);
            assert!(matches!(code, ErrorCode::REBALANCE_IN_PROGRESS | ErrorCode::UNKNOWN_MEMBER_ID), "{code:?}");
        }
    }
    assert_eq!(cs[0].heartbeat(&mut h), ErrorCode::UNKNOWN_MEMBER_ID);
    let d = describe(&mut h, admin);
    assert_eq!(d.members.len(), 1);
    k.beat(&mut h);
    assert_eq!(k.count(), 4);
}

#[test]
fn a_group_with_classic_members_survives_a_restart() {
    let (mut h, admin) = setup(test_config(), 4);
    let mut cs = classic_group(&mut h, 2, 4);
    let (mut k, _) = K::join(&mut h);
    {
        let [a, b] = &mut cs[..] else { unreachable!() };
        settle(&mut h, &mut [a, b], &mut [&mut k]);
    }
    let before = describe(&mut h, admin);
    let mut h = h.restart(test_config());
    let admin = h.connect();
    for c in &mut cs {
        c.conn = h.connect();
    }
    k.conn = h.connect();
    let after = describe(&mut h, admin);
    assert_eq!(after.members, before.members);
    for c in &cs {
        assert_eq!(c.heartbeat(&mut h), ErrorCode::NONE, "the classic members carry on");
    }
    // The last KIP-848 member leaves after the restart: the group turns classic.
    let _ = k.leave(&mut h);
    assert_eq!(listed(&mut h, admin), ("classic".into(), "PreparingRebalance".into()));
}

#[test]
fn a_refused_kip848_heartbeat_leaves_the_classic_group_as_it_was() {
    let (mut h, admin) = setup(test_config(), 4);
    let cs = classic_group(&mut h, 2, 4);
    let mut k = K { conn: h.connect(), id: String::new(), epoch: 0, owned: BTreeMap::new() };
    let mut req = k.request(0);
    req.server_assignor = Some("sticky".into());
    let r = beat(&mut h, k.conn, req);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::UNSUPPORTED_ASSIGNOR);
    assert_eq!(listed(&mut h, admin), ("classic".into(), "Stable".into()));
    for c in &cs {
        assert_eq!(c.heartbeat(&mut h), ErrorCode::NONE);
    }
    // A restart finds it classic too, and an accepted heartbeat upgrades it.
    let mut h = h.restart(test_config());
    let admin = h.connect();
    assert_eq!(listed(&mut h, admin), ("classic".into(), "Stable".into()));
    k.conn = h.connect();
    assert_eq!(k.beat(&mut h).error_code, 0);
    assert_eq!(listed(&mut h, admin).0, "consumer");
}

#[test]
fn a_static_classic_member_is_replaced_by_its_kip848_successor() {
    let (mut h, admin) = setup(test_config(), 4);
    let (mut k, _) = K::join(&mut h);
    let mut c = C::new(&mut h);
    c.instance = Some("i1".into());
    assert_eq!(c.join(&mut h).error_code, 0);
    assert_eq!(c.sync(&mut h), ErrorCode::NONE);
    settle(&mut h, &mut [&mut c], &mut [&mut k]);
    // A known member id with an instance id the group does not know, or another member's:
    // refused, and nothing changes hands.
    let other = h.connect();
    let req = join_request(G, &c.id, Some("i2"), &[("range", subscription(&[T], &Named::new()))]);
    let r = expect_body!(h.call(other, req, 7), JoinGroup);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::UNKNOWN_MEMBER_ID);
    let req = join_request(G, &k.id, Some("i1"), &[("range", subscription(&[T], &Named::new()))]);
    let r = expect_body!(h.call(other, req, 7), JoinGroup);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::FENCED_INSTANCE_ID);
    assert_eq!(c.heartbeat(&mut h), ErrorCode::NONE);
    // The classic member stops without leaving (static members do not); its successor, on the
    // consumer protocol with the same instance id, takes its place at once.
    let mut successor = K { conn: h.connect(), id: "successor-1".into(), epoch: 0, owned: BTreeMap::new() };
    let mut req = successor.request(0);
    req.instance_id = Some("i1".into());
    let r = beat(&mut h, successor.conn, req);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    successor.epoch = r.member_epoch;
    assert_eq!(c.heartbeat(&mut h), ErrorCode::FENCED_INSTANCE_ID, "the old incarnation is fenced");
    let d = describe(&mut h, admin);
    assert_eq!(d.members.len(), 2);
    // Both members speak the consumer protocol now: the first leaving does not make the
    // group classic.
    let _ = k.leave(&mut h);
    assert_eq!(listed(&mut h, admin).0, "consumer");
    let mut req = successor.request(successor.epoch);
    req.instance_id = Some("i1".into());
    let r = beat(&mut h, successor.conn, req);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
}
