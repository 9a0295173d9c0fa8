//! Rebalance cost of the classic coordinator through the sans-IO broker: N members (10, 100,
//! 1000), each on its own connection, send JoinGroup (v3, so no MEMBER_ID_REQUIRED round
//! trip) to one empty group; the join phase ends (initial delay 0); every member sends
//! SyncGroup, the leader last with an assignment for everyone; the group is Stable once the
//! assignment's `Put` completes against the MemStore and every sync is answered.
//! Reported per rebalance; allocations per rebalance are counted by a counting global
//! allocator and printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::join_group::{JoinGroupRequest, JoinGroupRequestProtocol};
use kelp_core::codec::generated::sync_group::{SyncGroupRequest, SyncGroupRequestAssignment};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, KStr, Message, Reader};
use kelp_core::mem_store::MemStore;
use kelp_core::time::Duration;
use kelp_core::{Broker, Config, ConnId, Input, Instant, Now, Output};

/// Counts every allocation, then hands it to the system allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's `layout` obligations are passed on to `System` as they are.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through `alloc` above) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn frame(body: &RequestBody, version: i16, correlation_id: i32) -> Bytes {
    kelp_core::codec::encode_request_frame(body, version, correlation_id, Some("bench"))
}

struct Rig {
    broker: Broker,
    store: MemStore,
    now: Now,
    /// Join responses seen: (conn, member id, leader flag).
    joined: Vec<(ConnId, KStr, bool, i32)>,
    syncs: usize,
}

impl Rig {
    fn new(members: u64) -> Self {
        let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
        let cfg = Config { group_initial_rebalance_delay: Duration::ZERO, ..Config::default() };
        let mut rig =
            Self { broker: Broker::new(cfg, 1, now), store: MemStore::new(), now, joined: Vec::new(), syncs: 0 };
        rig.pump();
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal");
        for c in 0..members {
            rig.broker.handle_input(now, Input::Accepted { conn: ConnId(c), peer, origin: Default::default() });
        }
        rig
    }

    fn pump(&mut self) {
        loop {
            let mut done = Vec::new();
            while let Some(out) = self.broker.poll_output() {
                match out {
                    Output::Send { conn, bytes } => {
                        let n = bytes.iter().map(Bytes::len).sum::<usize>();
                        self.broker.handle_input(self.now, Input::Written { conn, bytes: n });
                        self.read(conn, &bytes);
                    }
                    Output::Storage { cmd, command } => done.push((cmd, self.store.execute(command))),
                    Output::Close { reason, .. } => panic!("closed: {reason:?}"),
                    Output::PauseRead { .. } | Output::ResumeRead { .. } => {}
                }
            }
            if done.is_empty() {
                return;
            }
            for (cmd, result) in done {
                self.broker.handle_input(self.now, Input::Completed { cmd, result });
            }
        }
    }

    fn read(&mut self, conn: ConnId, chunks: &[Bytes]) {
        let whole: Vec<u8> = chunks.iter().flat_map(|b| b.iter().copied()).collect();
        let frame = Bytes::from(whole).slice(4..);
        let mut r = Reader::new(&frame);
        let header = ResponseHeader::decode(&mut r, 0).expect("header");
        match header.correlation_id {
            1 => {
                let ResponseBody::JoinGroup(j) = ResponseBody::decode(ApiKey::JOIN_GROUP, &mut r, 3).expect("join")
                else {
                    unreachable!()
                };
                assert_eq!(j.error_code, 0);
                self.joined.push((conn, j.member_id.clone(), j.leader == j.member_id, j.generation_id));
            }
            _ => self.syncs += 1,
        }
    }

    fn rebalance(&mut self, members: u64) {
        let join = RequestBody::JoinGroup(JoinGroupRequest {
            group_id: "bench".into(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 60_000,
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0]),
                ..Default::default()
            }],
            ..Default::default()
        });
        let join = frame(&join, 3, 1);
        for c in 0..members {
            self.broker.handle_input(self.now, Input::Received { conn: ConnId(c), bytes: &join });
        }
        self.pump();
        self.broker.handle_input(self.now, Input::Tick);
        self.pump();
        assert_eq!(self.joined.len() as u64, members, "every join answered");
        let joined = std::mem::take(&mut self.joined);
        let mut leader = None;
        for (conn, member, is_leader, generation) in &joined {
            if *is_leader {
                leader = Some((*conn, member.clone(), *generation));
                continue;
            }
            let s = RequestBody::SyncGroup(SyncGroupRequest {
                group_id: "bench".into(),
                generation_id: *generation,
                member_id: member.clone(),
                ..Default::default()
            });
            self.broker.handle_input(self.now, Input::Received { conn: *conn, bytes: &frame(&s, 3, 2) });
            self.pump();
        }
        let (conn, member, generation) = leader.expect("a leader");
        let assignments = joined
            .iter()
            .map(|(_, m, _, _)| SyncGroupRequestAssignment {
                member_id: m.clone(),
                assignment: Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                ..Default::default()
            })
            .collect();
        let s = RequestBody::SyncGroup(SyncGroupRequest {
            group_id: "bench".into(),
            generation_id: generation,
            member_id: member,
            assignments,
            ..Default::default()
        });
        self.broker.handle_input(self.now, Input::Received { conn, bytes: &frame(&s, 3, 2) });
        self.pump();
        assert_eq!(self.syncs as u64, members, "every sync answered: Stable");
    }
}

fn rebalance(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_rebalance");
    g.sample_size(10);
    for members in [10u64, 100, 1000] {
        // Allocations of one rebalance, outside the timed loop.
        let mut rig = Rig::new(members);
        let before = ALLOCS.load(Ordering::Relaxed);
        rig.rebalance(members);
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        println!("group_rebalance/{members}: {allocs} allocations per rebalance ({} per member)", allocs / members);
        g.bench_with_input(BenchmarkId::new("join_sync_to_stable", members), &members, |b, &members| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let mut rig = Rig::new(members);
                    let start = std::time::Instant::now();
                    rig.rebalance(members);
                    total += start.elapsed();
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, rebalance);
criterion_main!(benches);
