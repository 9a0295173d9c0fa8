//! Scenario tests of the classic group coordinator in virtual time: FindCoordinator, JoinGroup
//! (initial delay, MEMBER_ID_REQUIRED, protocol votes), SyncGroup, Heartbeat, LeaveGroup,
//! session/rebalance/sync timeouts, static membership and the error codes clients act on.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::describe_groups::DescribeGroupsRequest;
use kelp_core::codec::generated::find_coordinator::FindCoordinatorRequest;
use kelp_core::codec::generated::join_group::JoinGroupResponse;
use kelp_core::codec::generated::leave_group::LeaveGroupRequest;
use kelp_core::codec::generated::sync_group::SyncGroupResponse;
use kelp_core::codec::{ApiKey, ErrorCode, KStr};
use kelp_core::{Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, heartbeat_request, join_request, leave_request, ms, subscription, sync_request, test_config,
};

const G: &str = "g";
const V: i16 = 7;

fn protos() -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(&["t"]))]
}

fn send_join(h: &mut Harness, c: ConnId, v: i16, member: &str, instance: Option<&str>, p: &[(&str, Bytes)]) {
    h.send(c, &join_request(G, member, instance, p), v);
}

fn recv_join(h: &mut Harness, c: ConnId, v: i16) -> Option<JoinGroupResponse> {
    h.recv(c, ApiKey::JOIN_GROUP, v).map(|(_, b)| expect_body!(b, JoinGroup))
}

fn recv_sync(h: &mut Harness, c: ConnId) -> Option<SyncGroupResponse> {
    h.recv(c, ApiKey::SYNC_GROUP, 5).map(|(_, b)| expect_body!(b, SyncGroup))
}

/// Moves time on in 1 s steps, as a driver ticking at each deadline would.
fn wait(h: &mut Harness, total_ms: i64) {
    let mut left = total_ms;
    while left > 0 {
        let step = left.min(1000);
        h.advance(ms(step));
        left -= step;
    }
}

fn code(c: i16) -> ErrorCode {
    ErrorCode(c)
}

/// Joins a new member (v7: MEMBER_ID_REQUIRED first) and returns its id; its join is parked.
fn join_new(h: &mut Harness, c: ConnId, instance: Option<&str>) -> String {
    if instance.is_some() {
        send_join(h, c, V, "", instance, &protos());
        return String::new();
    }
    send_join(h, c, V, "", None, &protos());
    let r = recv_join(h, c, V).expect("MEMBER_ID_REQUIRED at once");
    assert_eq!(code(r.error_code), ErrorCode::MEMBER_ID_REQUIRED);
    let id = r.member_id.to_string();
    send_join(h, c, V, &id, None, &protos());
    id
}

fn heartbeat(h: &mut Harness, c: ConnId, generation: i32, member: &str, instance: Option<&str>) -> ErrorCode {
    code(expect_body!(h.call(c, heartbeat_request(G, generation, member, instance), 4), Heartbeat).error_code)
}

fn state(h: &mut Harness, c: ConnId) -> String {
    let req = DescribeGroupsRequest { groups: vec![G.into()], ..Default::default() };
    expect_body!(h.call(c, RequestBody::DescribeGroups(req), 5), DescribeGroups).groups[0].group_state.to_string()
}

/// Two members, A (leader) and B, Stable at generation 1. Returns (conns, ids).
fn stable_pair(h: &mut Harness) -> ([ConnId; 2], [String; 2]) {
    let (a, b) = (h.connect(), h.connect());
    let ia = join_new(h, a, None);
    let ib = join_new(h, b, None);
    wait(h, 6000);
    let ra = recv_join(h, a, V).expect("join answered after the initial delay");
    let rb = recv_join(h, b, V).expect("join answered");
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader.as_str(), ia);
    h.send(b, &sync_request(G, 1, &ib, None, &[]), 5);
    assert!(recv_sync(h, b).is_none(), "a follower waits for the leader");
    h.send(a, &sync_request(G, 1, &ia, None, &[(&ia, Bytes::from_static(b"A")), (&ib, Bytes::from_static(b"B"))]), 5);
    assert_eq!(recv_sync(h, a).expect("leader synced").assignment.as_ref(), b"A");
    assert_eq!(recv_sync(h, b).expect("follower synced").assignment.as_ref(), b"B");
    ([a, b], [ia, ib])
}

#[test]
fn find_coordinator_names_this_node_for_groups_and_transactions_at_every_version() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    for v in 0..=3 {
        let req =
            FindCoordinatorRequest { key: "g".into(), key_type: if v == 0 { 0 } else { 1 }, ..Default::default() };
        let r = expect_body!(h.call(c, RequestBody::FindCoordinator(req), v), FindCoordinator);
        assert_eq!((r.error_code, r.node_id, r.host.as_str(), r.port), (0, 1, "127.0.0.1", 9092), "v{v}");
    }
    for v in 4..=6 {
        let req = FindCoordinatorRequest {
            key_type: 0,
            coordinator_keys: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let r = expect_body!(h.call(c, RequestBody::FindCoordinator(req), v), FindCoordinator);
        let keys: Vec<_> = r.coordinators.iter().map(|x| (x.key.to_string(), x.node_id, x.error_code)).collect();
        assert_eq!(keys, vec![("a".into(), 1, 0), ("b".into(), 1, 0)], "v{v}");
    }
    let req = FindCoordinatorRequest { key: "g".into(), key_type: 5, ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::FindCoordinator(req), 3), FindCoordinator);
    assert_eq!(code(r.error_code), ErrorCode::INVALID_REQUEST);
}

#[test]
fn member_id_required_only_from_v4() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    send_join(&mut h, c, 3, "", None, &protos());
    assert!(recv_join(&mut h, c, 3).is_none(), "v3 joins at once and waits for the initial delay");
    wait(&mut h, 3000);
    let r = recv_join(&mut h, c, 3).expect("answered");
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert!(r.member_id.starts_with("kelp-harness-"), "member ids start with the client id: {}", r.member_id);

    let d = h.connect();
    h.send(d, &join_request("other", "", None, &protos()), 4);
    let r = recv_join(&mut h, d, 4).expect("v4: at once");
    assert_eq!(code(r.error_code), ErrorCode::MEMBER_ID_REQUIRED);
    assert!(r.member_id.starts_with("kelp-harness-"));
}

#[test]
fn pending_member_that_never_rejoins_expires_after_its_session() {
    let mut h = Harness::new(test_config());
    let (a, b) = (h.connect(), h.connect());
    let ia = join_new(&mut h, a, None);
    send_join(&mut h, b, V, "", None, &protos());
    assert_eq!(code(recv_join(&mut h, b, V).expect("id").error_code), ErrorCode::MEMBER_ID_REQUIRED);
    // The pending member holds the join phase back until its session (10 s) runs out.
    wait(&mut h, 3000);
    wait(&mut h, 3000);
    let r = recv_join(&mut h, a, V).expect("initial delay completes the join");
    assert_eq!((r.generation_id, r.members.len(), r.member_id.to_string()), (1, 1, ia));
}

#[test]
fn three_members_joining_within_the_initial_delay_form_one_generation() {
    let mut h = Harness::new(test_config());
    let conns: Vec<ConnId> = (0..3).map(|_| h.connect()).collect();
    let mut ids = Vec::new();
    for (i, c) in conns.iter().enumerate() {
        if i > 0 {
            wait(&mut h, 1000);
        }
        ids.push(join_new(&mut h, *c, None));
    }
    // Joined at 0, 1 and 2 s: all are in the first generation, answered when the 3 s delay
    // that started with the first join runs out. Late joiners do not extend it (unlike Kafka),
    // so the first join takes one delay however the members trickle in.
    wait(&mut h, 999);
    assert!(conns.iter().all(|c| h.pending_bytes(*c) == 0), "still within the initial delay");
    wait(&mut h, 1);
    let resps: Vec<JoinGroupResponse> = conns.iter().map(|c| recv_join(&mut h, *c, V).expect("answered")).collect();
    assert!(resps.iter().all(|r| r.generation_id == 1 && r.error_code == 0));
    let leader = resps[0].leader.clone();
    for (r, id) in resps.iter().zip(&ids) {
        assert_eq!(r.member_id.as_str(), id);
        let expect = if r.member_id == leader { 3 } else { 0 };
        assert_eq!(r.members.len(), expect, "only the leader gets the members' metadata");
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
    }
    assert_eq!(state(&mut h, conns[0]), "CompletingRebalance");
}

#[test]
fn join_sync_heartbeat_reach_stable_and_sync_waits_for_the_store() {
    let mut h = Harness::new(test_config());
    let (a, b) = (h.connect(), h.connect());
    let ia = join_new(&mut h, a, None);
    let ib = join_new(&mut h, b, None);
    wait(&mut h, 6000);
    recv_join(&mut h, a, V).expect("a");
    recv_join(&mut h, b, V).expect("b");
    assert_eq!(heartbeat(&mut h, b, 1, &ib, None), ErrorCode::NONE, "heartbeats are fine in CompletingRebalance");
    h.auto_storage = false;
    h.send(a, &sync_request(G, 1, &ia, None, &[(&ia, Bytes::from_static(b"x"))]), 5);
    assert!(recv_sync(&mut h, a).is_none(), "the leader's sync waits for its assignment to be stored");
    assert!(matches!(h.queued.front(), Some((_, kelp_core::Command::Put { key, .. })) if key.starts_with(b"group/")));
    h.run_one_storage();
    h.auto_storage = true;
    let ra = recv_sync(&mut h, a).expect("stored");
    assert_eq!((ra.error_code, ra.assignment.as_ref()), (0, &b"x"[..]));
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    assert_eq!(state(&mut h, a), "Stable");
    // B never got an assignment from the leader: it syncs in Stable and gets an empty one.
    let rb = expect_body!(h.call(b, sync_request(G, 1, &ib, None, &[]), 5), SyncGroup);
    assert_eq!((rb.error_code, rb.assignment.len()), (0, 0));
    assert_eq!(heartbeat(&mut h, a, 1, &ia, None), ErrorCode::NONE);
}

#[test]
fn a_failed_assignment_store_answers_coordinator_not_available_and_rebalances() {
    let mut h = Harness::new(test_config());
    let a = h.connect();
    let ia = join_new(&mut h, a, None);
    wait(&mut h, 3000);
    recv_join(&mut h, a, V).expect("joined");
    h.auto_storage = false;
    h.send(a, &sync_request(G, 1, &ia, None, &[]), 5);
    h.fail_one_storage(kelp_core::io::StorageError::Unavailable);
    h.auto_storage = true;
    assert_eq!(code(recv_sync(&mut h, a).expect("answered").error_code), ErrorCode::COORDINATOR_NOT_AVAILABLE);
    assert_eq!(state(&mut h, a), "PreparingRebalance");
}

#[test]
fn error_codes_of_heartbeat_and_sync() {
    let mut h = Harness::new(test_config());
    let ([a, b], [ia, ib]) = stable_pair(&mut h);
    assert_eq!(heartbeat(&mut h, a, 1, "nobody", None), ErrorCode::UNKNOWN_MEMBER_ID);
    assert_eq!(heartbeat(&mut h, a, 7, &ia, None), ErrorCode::ILLEGAL_GENERATION);
    let r = expect_body!(h.call(a, sync_request(G, 9, &ia, None, &[]), 5), SyncGroup);
    assert_eq!(code(r.error_code), ErrorCode::ILLEGAL_GENERATION);
    let mut wrong = sync_request(G, 1, &ia, None, &[]);
    if let RequestBody::SyncGroup(s) = &mut wrong {
        s.protocol_name = Some("roundrobin".into());
    }
    let r = expect_body!(h.call(a, wrong, 5), SyncGroup);
    assert_eq!(code(r.error_code), ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
    let r = expect_body!(h.call(a, heartbeat_request("nogroup", 1, &ia, None), 4), Heartbeat);
    assert_eq!(code(r.error_code), ErrorCode::UNKNOWN_MEMBER_ID);
    // The leader rejoining starts a rebalance: the follower hears REBALANCE_IN_PROGRESS.
    send_join(&mut h, a, V, &ia, None, &protos());
    assert_eq!(heartbeat(&mut h, b, 1, &ib, None), ErrorCode::REBALANCE_IN_PROGRESS);
    let r = expect_body!(h.call(b, sync_request(G, 1, &ib, None, &[]), 5), SyncGroup);
    assert_eq!(code(r.error_code), ErrorCode::REBALANCE_IN_PROGRESS);
    send_join(&mut h, b, V, &ib, None, &protos());
    let (ra, rb) = (recv_join(&mut h, a, V).expect("a"), recv_join(&mut h, b, V).expect("b"));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2), "everyone rejoined: no waiting for the timeout");
}

#[test]
fn a_follower_rejoining_with_the_same_metadata_in_stable_gets_the_current_generation() {
    let mut h = Harness::new(test_config());
    let ([a, b], [ia, ib]) = stable_pair(&mut h);
    send_join(&mut h, b, V, &ib, None, &protos());
    let r = recv_join(&mut h, b, V).expect("at once");
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 1, 0));
    assert_eq!(heartbeat(&mut h, a, 1, &ia, None), ErrorCode::NONE, "no rebalance");
}

#[test]
fn protocol_is_chosen_by_votes_among_protocols_every_member_offers() {
    let mut h = Harness::new(test_config());
    let cs: Vec<ConnId> = (0..3).map(|_| h.connect()).collect();
    let m = subscription(&["t"]);
    let prefs: [&[&str]; 3] = [&["range", "roundrobin"], &["roundrobin", "range"], &["sticky", "roundrobin"]];
    for (c, p) in cs.iter().zip(prefs) {
        let p: Vec<(&str, Bytes)> = p.iter().map(|n| (*n, m.clone())).collect();
        send_join(&mut h, *c, 3, "", None, &p);
    }
    let d = h.connect();
    send_join(&mut h, d, 3, "", None, &[("range", m.clone())]);
    let r = recv_join(&mut h, d, 3).expect("refused at once");
    assert_eq!(code(r.error_code), ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
    wait(&mut h, 6000);
    for c in &cs {
        assert_eq!(recv_join(&mut h, *c, 3).expect("joined").protocol_name.as_deref(), Some("roundrobin"));
    }
    let e = h.connect();
    let mut other = join_request(G, "", None, &[("roundrobin", m)]);
    if let RequestBody::JoinGroup(j) = &mut other {
        j.protocol_type = "connect".into();
    }
    h.send(e, &other, 3);
    assert_eq!(code(recv_join(&mut h, e, 3).expect("refused").error_code), ErrorCode::INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn invalid_session_timeouts_and_group_ids_are_refused() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let mut j = join_request(G, "", None, &protos());
    if let RequestBody::JoinGroup(x) = &mut j {
        x.session_timeout_ms = 100;
    }
    h.send(c, &j, V);
    assert_eq!(code(recv_join(&mut h, c, V).expect("at once").error_code), ErrorCode::INVALID_SESSION_TIMEOUT);
    h.send(c, &join_request("", "", None, &protos()), V);
    assert_eq!(code(recv_join(&mut h, c, V).expect("at once").error_code), ErrorCode::INVALID_GROUP_ID);
    h.send(c, &join_request(G, "made-up", None, &protos()), V);
    assert_eq!(code(recv_join(&mut h, c, V).expect("at once").error_code), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_member_whose_session_expires_mid_rebalance_is_removed_and_the_rest_move_on() {
    let mut h = Harness::new(test_config());
    let ([a, _b], [ia, _ib]) = stable_pair(&mut h);
    let c = h.connect();
    let ic = join_new(&mut h, c, None);
    assert_eq!(state(&mut h, a), "PreparingRebalance");
    send_join(&mut h, a, V, &ia, None, &protos());
    // B neither heartbeats nor rejoins: its 10 s session ends long before the 30 s rebalance timeout.
    wait(&mut h, 9000);
    assert!(recv_join(&mut h, a, V).is_none());
    wait(&mut h, 1000);
    let ra = recv_join(&mut h, a, V).expect("join completes once B is gone");
    let rc = recv_join(&mut h, c, V).expect("c too");
    assert_eq!((ra.generation_id, rc.generation_id, ra.members.len()), (2, 2, 2));
    assert_eq!(rc.member_id.as_str(), ic);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut h = Harness::new(test_config());
    let ([a, b], [ia, ib]) = stable_pair(&mut h);
    send_join(&mut h, a, V, &ia, None, &protos());
    // B keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for _ in 0..5 {
        wait(&mut h, 5000);
        assert_eq!(heartbeat(&mut h, b, 1, &ib, None), ErrorCode::REBALANCE_IN_PROGRESS);
    }
    wait(&mut h, 5000);
    let r = recv_join(&mut h, a, V).expect("rebalance timeout (30 s) completes the join");
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
    assert_eq!(heartbeat(&mut h, b, 1, &ib, None), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_leader_that_never_syncs_is_removed_and_followers_rejoin() {
    let mut h = Harness::new(test_config());
    let (a, b) = (h.connect(), h.connect());
    let ia = join_new(&mut h, a, None);
    let ib = join_new(&mut h, b, None);
    wait(&mut h, 6000);
    assert_eq!(recv_join(&mut h, a, V).expect("a").leader.as_str(), ia);
    recv_join(&mut h, b, V).expect("b");
    h.send(b, &sync_request(G, 1, &ib, None, &[]), 5);
    // Responses leave in request order per connection: heartbeats go on another one.
    let hb = h.connect();
    for _ in 0..5 {
        wait(&mut h, 5000);
        assert!(recv_sync(&mut h, b).is_none());
        assert_eq!(heartbeat(&mut h, hb, 1, &ib, None), ErrorCode::NONE);
        // The leader's heartbeat thread lives on; only its assignment never comes.
        assert_eq!(heartbeat(&mut h, a, 1, &ia, None), ErrorCode::NONE);
    }
    wait(&mut h, 5000);
    // 30 s (the rebalance timeout) without the leader's sync: it is removed.
    assert_eq!(code(recv_sync(&mut h, b).expect("answered").error_code), ErrorCode::REBALANCE_IN_PROGRESS);
    assert_eq!(heartbeat(&mut h, hb, 1, &ib, None), ErrorCode::REBALANCE_IN_PROGRESS);
    assert_eq!(heartbeat(&mut h, a, 1, &ia, None), ErrorCode::UNKNOWN_MEMBER_ID);
    send_join(&mut h, b, V, &ib, None, &protos());
    let r = recv_join(&mut h, b, V).expect("the follower rejoins at once and leads");
    assert_eq!((r.generation_id, r.leader.as_str()), (2, ib.as_str()));
    let r = expect_body!(h.call(b, sync_request(G, 1, &ib, None, &[]), 5), SyncGroup);
    assert_eq!(code(r.error_code), ErrorCode::ILLEGAL_GENERATION);
}

#[test]
fn leave_group_batched_and_single() {
    let mut h = Harness::new(test_config());
    let ([a, b], [ia, ib]) = stable_pair(&mut h);
    let r = expect_body!(h.call(b, leave_request(G, &[(&ib, None), ("ghost", None)]), 3), LeaveGroup);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!((r.error_code, codes), (0, vec![0, ErrorCode::UNKNOWN_MEMBER_ID.0]));
    assert_eq!(heartbeat(&mut h, a, 1, &ia, None), ErrorCode::REBALANCE_IN_PROGRESS);
    send_join(&mut h, a, V, &ia, None, &protos());
    let r = recv_join(&mut h, a, V).expect("alone: completes at once");
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
    let single = LeaveGroupRequest { group_id: G.into(), member_id: "ghost".into(), ..Default::default() };
    let r = expect_body!(h.call(a, RequestBody::LeaveGroup(single), 1), LeaveGroup);
    assert_eq!(code(r.error_code), ErrorCode::UNKNOWN_MEMBER_ID);
    let single = LeaveGroupRequest { group_id: G.into(), member_id: ia.as_str().into(), ..Default::default() };
    let r = expect_body!(h.call(a, RequestBody::LeaveGroup(single), 1), LeaveGroup);
    assert_eq!(r.error_code, 0);
    assert_eq!(state(&mut h, a), "Empty", "the last member left: a new, empty generation");
}

#[test]
fn new_members_beyond_group_max_size_are_refused() {
    let mut h = Harness::new(Config { group_max_size: 2, ..test_config() });
    let cs: Vec<ConnId> = (0..3).map(|_| h.connect()).collect();
    for c in &cs[..2] {
        send_join(&mut h, *c, 3, "", None, &protos());
    }
    // While rebalancing, Kafka counts the members awaiting a join answer.
    send_join(&mut h, cs[2], 3, "", None, &protos());
    let r = recv_join(&mut h, cs[2], 3).expect("refused at once");
    assert_eq!(code(r.error_code), ErrorCode::GROUP_MAX_SIZE_REACHED);
    wait(&mut h, 6000);
    for c in &cs[..2] {
        assert_eq!(recv_join(&mut h, *c, 3).expect("answered").error_code, 0);
    }
    // Once the join phase is over, the group size counts.
    let d = h.connect();
    send_join(&mut h, d, 3, "", None, &protos());
    let r = recv_join(&mut h, d, 3).expect("refused at once");
    assert_eq!(code(r.error_code), ErrorCode::GROUP_MAX_SIZE_REACHED);
}

#[test]
fn static_members_bounce_without_a_rebalance_and_stale_ids_are_fenced() {
    let mut h = Harness::new(test_config());
    let (a, b) = (h.connect(), h.connect());
    join_new(&mut h, a, Some("ia"));
    join_new(&mut h, b, Some("ib"));
    wait(&mut h, 6000);
    let ra = recv_join(&mut h, a, V).expect("static members need no MEMBER_ID_REQUIRED");
    let rb = recv_join(&mut h, b, V).expect("b");
    let (ia, ib) = (ra.member_id.to_string(), rb.member_id.to_string());
    assert!(ia.starts_with("ia-"), "a static member's id starts with its instance id");
    let leader = ra.leader.to_string();
    let (lc, lid, li, fc, fid, fi) =
        if leader == ia { (a, &ia, "ia", b, &ib, "ib") } else { (b, &ib, "ib", a, &ia, "ia") };
    h.send(fc, &sync_request(G, 1, fid, Some(fi), &[]), 5);
    h.send(lc, &sync_request(G, 1, lid, Some(li), &[(fid, Bytes::from_static(b"F"))]), 5);
    recv_sync(&mut h, lc).expect("leader synced");
    recv_sync(&mut h, fc).expect("follower synced");

    // The follower restarts: it rejoins with its instance id and no member id.
    let f2 = h.connect();
    send_join(&mut h, f2, V, "", Some(fi), &protos());
    let r = recv_join(&mut h, f2, V).expect("answered at once, no rebalance");
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let new_id = r.member_id.to_string();
    assert_ne!(&new_id, fid);
    assert_eq!(heartbeat(&mut h, lc, 1, lid, Some(li)), ErrorCode::NONE, "the leader saw no rebalance");
    let s = expect_body!(h.call(f2, sync_request(G, 1, &new_id, Some(fi), &[]), 5), SyncGroup);
    assert_eq!(s.assignment.as_ref(), b"F", "the replaced member keeps its assignment");
    // The old incarnation is fenced.
    assert_eq!(heartbeat(&mut h, fc, 1, fid, Some(fi)), ErrorCode::FENCED_INSTANCE_ID);
    let r = expect_body!(h.call(fc, sync_request(G, 1, fid, Some(fi), &[]), 5), SyncGroup);
    assert_eq!(code(r.error_code), ErrorCode::FENCED_INSTANCE_ID);
    assert_eq!(heartbeat(&mut h, fc, 1, fid, Some("unknown-instance")), ErrorCode::UNKNOWN_MEMBER_ID);

    // LeaveGroup by instance id (an admin removing it) starts a rebalance.
    let r = expect_body!(h.call(lc, leave_request(G, &[("", Some(fi))]), 4), LeaveGroup);
    assert_eq!(r.members[0].error_code, 0);
    assert_eq!(heartbeat(&mut h, lc, 1, lid, Some(li)), ErrorCode::REBALANCE_IN_PROGRESS);
    let r = expect_body!(h.call(lc, leave_request(G, &[("", Some("nope"))]), 4), LeaveGroup);
    assert_eq!(code(r.members[0].error_code), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_static_member_that_does_not_rejoin_is_kept_through_the_rebalance() {
    let mut h = Harness::new(test_config());
    let (a, b) = (h.connect(), h.connect());
    join_new(&mut h, a, Some("ia"));
    join_new(&mut h, b, Some("ib"));
    wait(&mut h, 6000);
    let ra = recv_join(&mut h, a, V).expect("a");
    let rb = recv_join(&mut h, b, V).expect("b");
    let (ia, ib) = (ra.member_id.to_string(), rb.member_id.to_string());
    send_join(&mut h, a, V, &ia, Some("ia"), &[("range", subscription(&["t", "u"]))]);
    for _ in 0..6 {
        wait(&mut h, 5000);
        heartbeat(&mut h, b, 1, &ib, Some("ib"));
    }
    let r = recv_join(&mut h, a, V).expect("completed at the rebalance timeout");
    assert_eq!(r.generation_id, 2);
    if r.leader.as_str() == ia {
        assert_eq!(r.members.len(), 2, "the static member that did not rejoin stays a member");
    }
}

#[test]
fn groups_with_members_survive_a_restart_and_expire_members_that_do_not_come_back() {
    let mut h = Harness::new(test_config());
    let ([_a, _b], [ia, ib]) = stable_pair(&mut h);
    let mut h2 = h.restart(test_config());
    let c = h2.connect();
    assert_eq!(state(&mut h2, c), "Stable");
    assert_eq!(heartbeat(&mut h2, c, 1, &ia, None), ErrorCode::NONE);
    let s = expect_body!(h2.call(c, sync_request(G, 1, &ib, None, &[]), 5), SyncGroup);
    assert_eq!(s.assignment.as_ref(), b"B", "assignments were stored");
    for _ in 0..3 {
        wait(&mut h2, 4000);
        assert_ne!(heartbeat(&mut h2, c, 1, &ia, None), ErrorCode::UNKNOWN_MEMBER_ID);
    }
    assert_eq!(heartbeat(&mut h2, c, 1, &ib, None), ErrorCode::UNKNOWN_MEMBER_ID, "B's session ran out");
    let _ = KStr::default();
}
