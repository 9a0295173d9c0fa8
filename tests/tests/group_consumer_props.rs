//! Property tests of the KIP-848 consumer protocol.
//!
//! Assignors (pure functions): every subscribed partition is owned by exactly one member that
//! subscribes to its topic and nothing else is owned; `uniform` with identical subscriptions
//! is balanced within one and keeps a balanced previous assignment as it is; `range` gives
//! each subscriber of a topic, in member id order, a consecutive range whose length is the
//! topic's share (the first `partitions % members` one more).
//!
//! Reconciliation (the real broker in virtual time): up to five scripted members join, heartbeat,
//! apply what they were told at a time of their choosing (a slow revocation), leave, crash
//! (time then passes while the others heartbeat, until the crashed member is fenced) and
//! partitions are added. After every step, no partition is owned by two members as the members
//! themselves see it; at the end, once everyone has heartbeated and applied until nothing
//! changes, every partition is owned by exactly one live member.

use std::collections::{BTreeMap, BTreeSet};

use kelp_core::ConnId;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::consumer_group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestTopicPartitions,
};
use kelp_core::codec::generated::create_partitions::{CreatePartitionsRequest, CreatePartitionsTopic};
use kelp_core::codec::{ErrorCode, KStr, Uuid};
use kelp_core::group::assignor::{self, Assignment, TopicInfo};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, create_topic, ms, test_config};
use proptest::prelude::*;

// ---- assignors ------------------------------------------------------------------------------

fn topic_table(counts: &[u32]) -> BTreeMap<KStr, TopicInfo> {
    counts
        .iter()
        .enumerate()
        .map(|(i, p)| (KStr::from(format!("t{i}")), TopicInfo { id: Uuid::from_u64_pair(7, i as u64), partitions: *p }))
        .collect()
}

fn member_table(subs: &[Vec<usize>]) -> BTreeMap<KStr, Vec<KStr>> {
    subs.iter()
        .enumerate()
        .map(|(i, ts)| (KStr::from(format!("m{i:02}")), ts.iter().map(|t| KStr::from(format!("t{t}"))).collect()))
        .collect()
}

fn load(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Every subscribed partition exactly once, to a subscriber; nothing else.
fn check_complete(
    members: &BTreeMap<KStr, Vec<KStr>>,
    topics: &BTreeMap<KStr, TopicInfo>,
    out: &BTreeMap<KStr, Assignment>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(out.keys().collect::<Vec<_>>(), members.keys().collect::<Vec<_>>());
    let mut owner: BTreeMap<(Uuid, i32), &KStr> = BTreeMap::new();
    for (m, a) in out {
        for (t, ps) in a {
            let (name, info) = topics.iter().find(|(_, i)| i.id == *t).expect("a known topic");
            prop_assert!(members[m].contains(name), "{} got {} without subscribing", m, name);
            for p in ps {
                prop_assert!(*p >= 0 && (*p as u32) < info.partitions);
                prop_assert!(owner.insert((*t, *p), m).is_none(), "partition {} of {} owned twice", p, name);
            }
        }
    }
    for (name, info) in topics {
        if members.values().any(|s| s.contains(name)) {
            for p in 0..info.partitions as i32 {
                prop_assert!(owner.contains_key(&(info.id, p)), "partition {} of {} unowned", p, name);
            }
        }
    }
    Ok(())
}

fn subscriptions(topics: usize) -> impl Strategy<Value = Vec<Vec<usize>>> {
    prop::collection::vec(prop::collection::btree_set(0..topics, 1..=topics), 1..9)
        .prop_map(|v| v.into_iter().map(|s| s.into_iter().collect()).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn assignors_own_every_subscribed_partition_once(
        counts in prop::collection::vec(0u32..13, 1..4),
        seed_subs in subscriptions(3),
        prev_subs in subscriptions(3),
    ) {
        let topics = topic_table(&counts);
        let fix = |s: &Vec<Vec<usize>>| -> Vec<Vec<usize>> {
            s.iter().map(|ts| ts.iter().map(|t| t % counts.len()).collect::<BTreeSet<_>>().into_iter().collect()).collect()
        };
        let members = member_table(&fix(&seed_subs));
        // A previous target from another membership, so that stickiness meets change.
        let previous = assignor::uniform(&member_table(&fix(&prev_subs)), &topics, &BTreeMap::new());
        for name in assignor::ASSIGNORS {
            let out = assignor::assign(name, &members, &topics, &previous);
            check_complete(&members, &topics, &out)?;
        }
    }

    #[test]
    fn uniform_balances_identical_subscriptions_within_one(
        counts in prop::collection::vec(0u32..13, 1..4),
        n in 1usize..9,
        before in 1usize..9,
    ) {
        let topics = topic_table(&counts);
        let all: Vec<usize> = (0..counts.len()).collect();
        let members = member_table(&vec![all.clone(); n]);
        let previous = assignor::uniform(&member_table(&vec![all; before]), &topics, &BTreeMap::new());
        let out = assignor::uniform(&members, &topics, &previous);
        check_complete(&members, &topics, &out)?;
        let loads: Vec<usize> = out.values().map(load).collect();
        let (lo, hi) = (loads.iter().min().copied().unwrap_or(0), loads.iter().max().copied().unwrap_or(0));
        prop_assert!(hi - lo <= 1, "loads {:?}", loads);
        // Nothing moves when nothing changed.
        prop_assert_eq!(assignor::uniform(&members, &topics, &out), out);
    }

    #[test]
    fn range_gives_consecutive_shares_in_member_order(
        counts in prop::collection::vec(0u32..13, 1..4),
        seed_subs in subscriptions(3),
    ) {
        let topics = topic_table(&counts);
        let subs: Vec<Vec<usize>> = seed_subs
            .iter()
            .map(|ts| ts.iter().map(|t| t % counts.len()).collect::<BTreeSet<_>>().into_iter().collect())
            .collect();
        let members = member_table(&subs);
        let out = assignor::range(&members, &topics);
        check_complete(&members, &topics, &out)?;
        for (name, info) in &topics {
            let subscribers: Vec<&KStr> = members.iter().filter(|(_, s)| s.contains(name)).map(|(m, _)| m).collect();
            let n = subscribers.len() as u32;
            let mut next = 0u32;
            for (k, m) in subscribers.iter().enumerate() {
                let share = info.partitions / n + u32::from((k as u32) < info.partitions % n);
                let want: BTreeSet<i32> = (next..next + share).map(|p| p as i32).collect();
                let got = out[*m].get(&info.id).cloned().unwrap_or_default();
                prop_assert_eq!(got, want, "{} on {}", m, name);
                next += share;
            }
        }
    }
}

// ---- reconciliation -------------------------------------------------------------------------

const G: &str = "pg";
const T: &str = "pt";
const CLIENTS: usize = 5;

type Owned = BTreeMap<Uuid, BTreeSet<i32>>;

#[derive(Clone, Debug)]
enum Op {
    Join(usize),
    Beat(usize),
    Apply(usize),
    Leave(usize),
    Crash(usize),
    AddPartitions(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..CLIENTS).prop_map(Op::Join),
        6 => (0..CLIENTS).prop_map(Op::Beat),
        4 => (0..CLIENTS).prop_map(Op::Apply),
        1 => (0..CLIENTS).prop_map(Op::Leave),
        1 => (0..CLIENTS).prop_map(Op::Crash),
        1 => (1u8..3).prop_map(Op::AddPartitions),
    ]
}

#[derive(Default)]
struct Client {
    conn: Option<ConnId>,
    id: String,
    epoch: i32,
    /// What it uses now.
    owned: Owned,
    /// The latest assignment it was told and has not applied yet.
    pending: Option<Owned>,
    live: bool,
}

struct World {
    h: Harness,
    clients: Vec<Client>,
    partitions: i32,
    topic: Uuid,
}

fn request(c: &Client) -> ConsumerGroupHeartbeatRequest {
    let full = c.epoch == 0;
    ConsumerGroupHeartbeatRequest {
        group_id: G.into(),
        member_id: c.id.as_str().into(),
        member_epoch: c.epoch,
        rebalance_timeout_ms: if full { 60_000 } else { -1 },
        subscribed_topic_names: full.then(|| vec![KStr::from(T)]),
        topic_partitions: Some(
            c.owned
                .iter()
                .map(|(t, ps)| RequestTopicPartitions {
                    topic_id: *t,
                    partitions: ps.iter().copied().collect(),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

impl World {
    fn new() -> Self {
        let mut h = Harness::new(test_config());
        let admin = h.connect();
        let topic = create_topic(&mut h, admin, T, 4);
        Self { h, clients: (0..CLIENTS).map(|_| Client::default()).collect(), partitions: 4, topic }
    }

    fn send(&mut self, i: usize, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
        let conn = match self.clients[i].conn {
            Some(c) => c,
            None => {
                let c = self.h.connect();
                self.clients[i].conn = Some(c);
                c
            }
        };
        expect_body!(self.h.call(conn, RequestBody::ConsumerGroupHeartbeat(req), 0), ConsumerGroupHeartbeat)
    }

    fn beat(&mut self, i: usize) {
        if !self.clients[i].live {
            return;
        }
        let r = self.send(i, request(&self.clients[i]));
        let c = &mut self.clients[i];
        match ErrorCode(r.error_code) {
            ErrorCode::NONE => {
                c.epoch = r.member_epoch;
                if let Some(id) = r.member_id {
                    c.id = id.to_string();
                }
                if let Some(a) = r.assignment {
                    c.pending = Some(
                        a.topic_partitions
                            .iter()
                            .filter(|t| !t.partitions.is_empty())
                            .map(|t| (t.topic_id, t.partitions.iter().copied().collect()))
                            .collect(),
                    );
                }
            }
            ErrorCode::FENCED_MEMBER_EPOCH | ErrorCode::UNKNOWN_MEMBER_ID => {
                // It lost everything and rejoins with epoch 0.
                c.owned.clear();
                c.pending = None;
                c.epoch = 0;
            }
            other => panic!("unexpected heartbeat error {other:?}: {:?}", r.error_message),
        }
    }

    fn apply(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if let Some(p) = c.pending.take() {
            c.owned = p;
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Join(i) if !self.clients[i].live => {
                self.clients[i] = Client { live: true, ..Client::default() };
                self.beat(i);
            }
            Op::Join(_) => {}
            Op::Beat(i) => self.beat(i),
            Op::Apply(i) => self.apply(i),
            Op::Leave(i) if self.clients[i].live => {
                let c = std::mem::take(&mut self.clients[i]);
                if c.epoch > 0 {
                    let req = ConsumerGroupHeartbeatRequest { member_epoch: -1, ..request(&c) };
                    self.clients[i].conn = c.conn;
                    let r = self.send(i, req);
                    assert!(
                        matches!(ErrorCode(r.error_code), ErrorCode::NONE | ErrorCode::UNKNOWN_MEMBER_ID),
                        "leave: {:?}",
                        r.error_message
                    );
                }
            }
            Op::Leave(_) => {}
            Op::Crash(i) => {
                self.clients[i] = Client::default();
                // The others keep heartbeating (and applying) past the crashed one's session.
                for _ in 0..10 {
                    self.h.advance(ms(5000));
                    for j in 0..CLIENTS {
                        self.beat(j);
                        self.apply(j);
                    }
                }
            }
            Op::AddPartitions(n) => {
                if self.partitions + i32::from(n) <= 12 {
                    self.partitions += i32::from(n);
                    let admin = self.h.connect();
                    let req = CreatePartitionsRequest {
                        topics: vec![CreatePartitionsTopic {
                            name: T.into(),
                            count: self.partitions,
                            ..Default::default()
                        }],
                        timeout_ms: 1000,
                        ..Default::default()
                    };
                    let r = expect_body!(self.h.call(admin, RequestBody::CreatePartitions(req), 3), CreatePartitions);
                    assert_eq!(r.results[0].error_code, 0);
                }
            }
        }
    }

    fn check_disjoint(&self) -> Result<(), TestCaseError> {
        let mut seen: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            for (t, ps) in &c.owned {
                for p in ps {
                    if let Some(j) = seen.insert((*t, *p), i) {
                        return Err(TestCaseError::fail(format!("partition {p} owned by clients {j} and {i}")));
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn no_partition_is_ever_owned_twice(ops in prop::collection::vec(op(), 1..40)) {
        let mut w = World::new();
        for op in &ops {
            w.step(op);
            w.check_disjoint()?;
        }
        // Liveness: with everyone heartbeating and applying, the group settles with every
        // partition owned exactly once.
        for _ in 0..12 {
            for j in 0..CLIENTS {
                w.beat(j);
                w.apply(j);
                w.check_disjoint()?;
            }
        }
        if w.clients.iter().any(|c| c.live) {
            let owned: usize = w.clients.iter().map(|c| c.owned.values().map(BTreeSet::len).sum::<usize>()).sum();
            prop_assert_eq!(owned, w.partitions as usize);
            prop_assert!(w.clients.iter().filter(|c| c.live).all(|c| c.owned.keys().all(|t| *t == w.topic)));
        }
    }
}
