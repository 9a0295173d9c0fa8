//! A proptest state-machine test of the classic coordinator against a small reference model.
//!
//! Four clients run random sequences of joins, syncs, heartbeats, leaves, commits, crashes
//! (a client forgets everything and reconnects) and time advances against the real broker.
//! The leader's assignor gives partition p to member p mod n of its join answer, so the
//! assignments of one generation are disjoint by construction. After every step:
//! - one generation at a time: every successful join of a generation names the same leader
//!   and protocol, and generations a client sees never go back;
//! - every SyncGroup answer carries exactly what the leader assigned that member in that
//!   generation, so at most one member owns a partition per generation;
//! - in Stable (DescribeGroups), every member holds its assignment of the current generation;
//! - consecutive observed states are connected by `can_become` in at most three steps (every
//!   single transition is also asserted inside the core, in release builds too);
//! - committed offsets equal the model's: they change only by an acknowledged commit, and never
//!   move backwards otherwise.

use std::collections::HashMap;

use bytes::Bytes;
use kelp_core::ConnId;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::describe_groups::DescribeGroupsRequest;
use kelp_core::codec::{ApiKey, ErrorCode};
use kelp_core::group::classic::GroupState;
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, commit_request, create_topic, heartbeat_request, join_request, leave_request, ms, offset_fetch_request,
    subscription, sync_request, test_config,
};
use proptest::prelude::*;

const G: &str = "g";
const PARTITIONS: i32 = 6;

#[derive(Clone, Debug)]
enum Op {
    Join(usize),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    Crash(usize),
    Commit(usize, i32, i64),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize).prop_map(Op::Join),
        3 => (0..4usize).prop_map(Op::Sync),
        3 => (0..4usize).prop_map(Op::Heartbeat),
        1 => (0..4usize).prop_map(Op::Leave),
        1 => (0..4usize).prop_map(Op::Crash),
        2 => (0..4usize, 0..PARTITIONS, 0..100i64).prop_map(|(i, p, o)| Op::Commit(i, p, o)),
        3 => (100..6000i64).prop_map(Op::Advance),
    ]
}

#[derive(Default)]
struct Client {
    conn: Option<ConnId>,
    hb: Option<ConnId>,
    member: String,
    generation: i32,
    leader: bool,
    members: Vec<String>,
    awaiting: Option<(ApiKey, i32)>,
    /// What a well-behaved client would do next (used by the liveness phase).
    needs_join: bool,
    needs_sync: bool,
}

struct Model {
    h: Harness,
    clients: Vec<Client>,
    /// generation -> (leader, protocol) from successful joins.
    generations: HashMap<i32, (String, String)>,
    /// generation -> member -> partitions the leader assigned.
    assigned: HashMap<i32, HashMap<String, Vec<u8>>>,
    /// The latest generation whose leader sync was acknowledged.
    stable_generation: i32,
    offsets: HashMap<i32, i64>,
    last_state: GroupState,
}

fn state_of(name: &str) -> GroupState {
    GroupState::ALL.into_iter().find(|s| s.name() == name).unwrap_or_else(|| panic!("unknown state {name}"))
}

fn reachable(from: GroupState, to: GroupState, steps: usize) -> bool {
    from == to || (steps > 0 && GroupState::ALL.into_iter().any(|m| from.can_become(m) && reachable(m, to, steps - 1)))
}

impl Model {
    fn new() -> Self {
        let mut h = Harness::new(test_config());
        let c = h.connect();
        create_topic(&mut h, c, "t", PARTITIONS);
        let mut m = Self {
            h,
            clients: (0..4).map(|_| Client::default()).collect(),
            generations: HashMap::new(),
            assigned: HashMap::new(),
            stable_generation: -1,
            offsets: HashMap::new(),
            last_state: GroupState::Empty,
        };
        for i in 0..4 {
            m.reconnect(i);
        }
        m
    }

    fn reconnect(&mut self, i: usize) {
        let (c, hb) = (self.h.connect(), self.h.connect());
        self.clients[i] = Client { conn: Some(c), hb: Some(hb), needs_join: true, ..Client::default() };
    }

    fn conns(&self, i: usize) -> (ConnId, ConnId) {
        let c = &self.clients[i];
        (c.conn.expect("connected"), c.hb.expect("connected"))
    }

    fn forget(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.member.clear();
        c.generation = -1;
        c.leader = false;
        c.needs_join = true;
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Join(i) if self.clients[i].awaiting.is_none() => {
                let (c, _) = self.conns(i);
                let m = self.clients[i].member.clone();
                self.h.send(c, &join_request(G, &m, None, &[("range", subscription(&["t"]))]), 3);
                self.clients[i].awaiting = Some((ApiKey::JOIN_GROUP, 0));
            }
            Op::Sync(i) if self.clients[i].awaiting.is_none() && self.clients[i].generation > 0 => {
                let (c, _) = self.conns(i);
                let cl = &self.clients[i];
                let (generation, member) = (cl.generation, cl.member.clone());
                let mut plan: HashMap<String, Vec<u8>> = HashMap::new();
                if cl.leader {
                    for p in 0..PARTITIONS {
                        let owner = &cl.members[usize::try_from(p).unwrap_or(0) % cl.members.len()];
                        plan.entry(owner.clone()).or_default().push(u8::try_from(p).unwrap_or(0));
                    }
                }
                let assignments: Vec<(&str, Bytes)> =
                    plan.iter().map(|(m, ps)| (m.as_str(), Bytes::from(ps.clone()))).collect();
                self.h.send(c, &sync_request(G, generation, &member, None, &assignments), 3);
                if self.clients[i].leader {
                    self.assigned.insert(generation, plan);
                }
                self.clients[i].awaiting = Some((ApiKey::SYNC_GROUP, generation));
            }
            Op::Heartbeat(i) if !self.clients[i].member.is_empty() => {
                let (_, hb) = self.conns(i);
                let cl = &self.clients[i];
                let r =
                    expect_body!(self.h.call(hb, heartbeat_request(G, cl.generation, &cl.member, None), 3), Heartbeat);
                match ErrorCode(r.error_code) {
                    ErrorCode::UNKNOWN_MEMBER_ID => self.forget(i),
                    ErrorCode::NONE => {}
                    _ => self.clients[i].needs_join = true,
                }
            }
            Op::Leave(i) if !self.clients[i].member.is_empty() => {
                let (_, hb) = self.conns(i);
                let m = self.clients[i].member.clone();
                expect_body!(self.h.call(hb, leave_request(G, &[(&m, None)]), 3), LeaveGroup);
                self.forget(i);
            }
            Op::Crash(i) => self.reconnect(i),
            Op::Commit(i, p, o) => {
                let (_, hb) = self.conns(i);
                let cl = &self.clients[i];
                let (g, m) =
                    if cl.member.is_empty() { (-1, String::new()) } else { (cl.generation, cl.member.clone()) };
                let r = expect_body!(self.h.call(hb, commit_request(G, g, &m, &[("t", p, o)]), 8), OffsetCommit);
                if r.topics[0].partitions[0].error_code == 0 {
                    self.offsets.insert(p, o);
                }
            }
            Op::Advance(d) => {
                let mut left = d;
                while left > 0 {
                    let s = left.min(1000);
                    self.h.advance(ms(s));
                    left -= s;
                }
            }
            _ => {}
        }
        self.collect();
        self.check();
    }

    fn collect(&mut self) {
        for i in 0..self.clients.len() {
            let Some((api, generation)) = self.clients[i].awaiting else { continue };
            let (c, _) = self.conns(i);
            let Some((_, body)) = self.h.recv(c, api, 3) else { continue };
            self.clients[i].awaiting = None;
            if api == ApiKey::JOIN_GROUP {
                let r = expect_body!(body, JoinGroup);
                if r.error_code != 0 {
                    if ErrorCode(r.error_code) == ErrorCode::UNKNOWN_MEMBER_ID {
                        self.forget(i);
                    }
                    continue;
                }
                let cl = &mut self.clients[i];
                cl.needs_join = false;
                cl.needs_sync = true;
                assert!(r.generation_id >= cl.generation, "a client's generation went back");
                let key = (r.leader.to_string(), r.protocol_name.as_deref().unwrap_or_default().to_string());
                let seen = self.generations.entry(r.generation_id).or_insert_with(|| key.clone());
                assert_eq!(*seen, key, "two leaders or protocols in generation {}", r.generation_id);
                cl.member = r.member_id.to_string();
                cl.generation = r.generation_id;
                cl.leader = r.leader == r.member_id;
                cl.members = r.members.iter().map(|m| m.member_id.to_string()).collect();
                assert_eq!(cl.leader, !cl.members.is_empty(), "only the leader gets the members");
            } else {
                let r = expect_body!(body, SyncGroup);
                self.clients[i].needs_sync = false;
                if r.error_code != 0 {
                    self.clients[i].needs_join = true;
                    if ErrorCode(r.error_code) == ErrorCode::UNKNOWN_MEMBER_ID {
                        self.forget(i);
                    }
                    continue;
                }
                let member = self.clients[i].member.clone();
                let expect = self.assigned.get(&generation).and_then(|a| a.get(&member)).cloned().unwrap_or_default();
                assert_eq!(r.assignment.as_ref(), expect.as_slice(), "member {member} got another's assignment");
                self.stable_generation = self.stable_generation.max(generation);
            }
        }
    }

    fn check(&mut self) {
        let c = self.h.connect();
        let req = DescribeGroupsRequest { groups: vec![G.into()], ..Default::default() };
        let d = expect_body!(self.h.call(c, RequestBody::DescribeGroups(req), 5), DescribeGroups).groups.remove(0);
        let state = if d.group_state.is_empty() || (d.group_state.as_str() == "Dead" && d.members.is_empty()) {
            // Not created yet.
            GroupState::Empty
        } else {
            state_of(&d.group_state)
        };
        assert!(reachable(self.last_state, state, 3), "{:?} -> {state:?}", self.last_state);
        self.last_state = state;
        if state == GroupState::Stable {
            let plan = self.assigned.get(&self.stable_generation).cloned().unwrap_or_default();
            let mut owners: HashMap<u8, String> = HashMap::new();
            for m in &d.members {
                let expect = plan.get(m.member_id.as_str()).cloned().unwrap_or_default();
                assert_eq!(m.member_assignment.as_ref(), expect.as_slice(), "Stable with a stale assignment");
                for p in expect {
                    assert!(owners.insert(p, m.member_id.to_string()).is_none(), "partition {p} owned twice");
                }
            }
        }
        let ps: Vec<i32> = (0..PARTITIONS).collect();
        let r = expect_body!(self.h.call(c, offset_fetch_request(G, Some(&[("t", &ps)]), false), 7), OffsetFetch);
        for p in &r.topics[0].partitions {
            assert_eq!(p.committed_offset, self.offsets.get(&p.partition_index).copied().unwrap_or(-1));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn classic_coordinator_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut m = Model::new();
        for op in &ops {
            m.step(op);
        }
        // Liveness: once every client behaves (joins when told, syncs after a join,
        // heartbeats), the group reaches Stable; leftovers of crashed clients time out.
        for round in 0..120 {
            for i in 0..4 {
                if m.clients[i].awaiting.is_some() {
                    continue;
                }
                if m.clients[i].needs_join {
                    m.step(&Op::Join(i));
                } else if m.clients[i].needs_sync {
                    m.step(&Op::Sync(i));
                } else {
                    m.step(&Op::Heartbeat(i));
                }
            }
            let all_in = m.clients.iter().all(|c| !c.needs_join && !c.needs_sync && c.awaiting.is_none());
            if m.last_state == GroupState::Stable && all_in {
                break;
            }
            prop_assert!(round < 119, "no Stable group after two minutes of good behaviour");
            m.step(&Op::Advance(1000));
        }
        prop_assert_eq!(m.last_state, GroupState::Stable);
    }
}
