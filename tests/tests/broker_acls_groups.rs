//! The ACL matrix of the group APIs through the broker, in virtual time: FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups, DeleteGroups,
//! OffsetCommit, OffsetFetch, OffsetDelete, ConsumerGroupHeartbeat and ConsumerGroupDescribe
//! check what Kafka's `KafkaApis` checks, answer with its error codes where it puts them, and
//! serve the rest of a request; topics a principal may not DESCRIBE stay hidden.

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::consumer_group_describe::{ConsumerGroupDescribeRequest, DescribedGroup};
use kelp_core::codec::generated::consumer_group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};
use kelp_core::codec::generated::delete_groups::DeleteGroupsRequest;
use kelp_core::codec::generated::describe_groups::DescribeGroupsRequest;
use kelp_core::codec::generated::find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse};
use kelp_core::codec::generated::leave_group::LeaveGroupRequest;
use kelp_core::codec::generated::list_groups::ListGroupsRequest;
use kelp_core::codec::generated::offset_commit::OffsetCommitResponse;
use kelp_core::codec::generated::offset_delete::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic, OffsetDeleteResponse,
};
use kelp_core::codec::generated::offset_fetch::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopics, OffsetFetchResponse,
};
use kelp_core::codec::{ErrorCode, KStr};
use kelp_core::security::acl::{Operation, PatternType, Permission, ResourceType};
use kelp_core::{Config, ConnId};
use kelp_tests::acls::{Grant, acl_config, allow, as_user, grant};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, commit_request, create_topic, heartbeat_request, join_request, leave_request, offset_fetch_request,
    subscription, sync_request,
};

const G: &str = "g-1";
const T: &str = "t";
const ALICE: &str = "User:alice";
const GROUP: ResourceType = ResourceType::GROUP;
const TOPIC: ResourceType = ResourceType::TOPIC;
const GAF: i16 = ErrorCode::GROUP_AUTHORIZATION_FAILED.0;
const TAF: i16 = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0;

fn config(allow_if_no_acl: bool) -> Config {
    Config { allow_everyone_if_no_acl_found: allow_if_no_acl, ..acl_config() }
}

/// A broker with the authorizer on and topic `t` (one partition), `grants` made, and a
/// connection as alice.
fn fresh(allow_if_no_acl: bool, grants: &[Grant<'_>]) -> (Harness, ConnId) {
    let mut h = Harness::new(config(allow_if_no_acl));
    let admin = as_user(&mut h, "admin");
    create_topic(&mut h, admin, T, 1);
    if !grants.is_empty() {
        grant(&mut h, grants);
    }
    let alice = as_user(&mut h, "alice");
    (h, alice)
}

fn deny<'a>(rt: ResourceType, name: &'a str, pattern: PatternType, principal: &'a str, op: Operation) -> Grant<'a> {
    (rt, name, pattern, principal, op, Permission::DENY)
}

/// One API's answer for the group `group` asked by `c`: the code where Kafka puts the check.
type Probe = fn(&mut Harness, ConnId, &str) -> i16;

/// The ACL matrix of one API's group check.
struct Case {
    api: &'static str,
    /// The operation Kafka checks on the group.
    op: Operation,
    /// An operation on the group that is not enough.
    weaker: Option<Operation>,
    probe: Probe,
    /// The code when served.
    served: i16,
    /// The code when refused.
    refused: i16,
}

impl Case {
    fn check(&self, who: &str, allow_if_no_acl: bool, grants: &[Grant<'_>], want: i16) {
        let (mut h, alice) = fresh(allow_if_no_acl, grants);
        let got = (self.probe)(&mut h, alice, G);
        assert_eq!(got, want, "{}: {who}", self.api);
    }

    /// Kafka's rules, one by one; alice may always READ topic `t`.
    fn run(&self) {
        let topic = allow(TOPIC, T, ALICE, Operation::READ);
        let (served, refused) = (self.served, self.refused);
        self.check("no ACL", false, &[topic], refused);
        self.check("LITERAL ALLOW", false, &[topic, allow(GROUP, G, ALICE, self.op)], served);
        let prefixed = (GROUP, "g-", PatternType::PREFIXED, ALICE, self.op, Permission::ALLOW);
        self.check("PREFIXED ALLOW", false, &[topic, prefixed], served);
        self.check("ALLOW for User:*", false, &[topic, allow(GROUP, G, "User:*", self.op)], served);
        self.check("ALL", false, &[topic, allow(GROUP, G, ALICE, Operation::ALL)], served);
        let denied = deny(GROUP, "g-", PatternType::PREFIXED, ALICE, self.op);
        self.check("DENY beats ALLOW", false, &[topic, allow(GROUP, G, ALICE, self.op), denied], refused);
        let denied_all = deny(GROUP, "*", PatternType::LITERAL, "User:*", Operation::ALL);
        self.check("DENY ALL to User:*", false, &[topic, allow(GROUP, G, ALICE, self.op), denied_all], refused);
        self.check("ALLOW of another group", false, &[topic, allow(GROUP, "g-2", ALICE, self.op)], refused);
        self.check("ALLOW for bob", false, &[topic, allow(GROUP, G, "User:bob", self.op)], refused);
        if let Some(weaker) = self.weaker {
            self.check("a weaker operation", false, &[topic, allow(GROUP, G, ALICE, weaker)], refused);
        }
        // allow.everyone.if.no.acl.found: open while no binding names the group.
        self.check("no binding, allow everyone", true, &[topic], served);
        self.check("bob's binding, allow everyone", true, &[topic, allow(GROUP, G, "User:bob", self.op)], refused);
        // The super user needs no binding, and a DENY does not apply to it.
        let (mut h, _) = fresh(false, &[deny(GROUP, "*", PatternType::LITERAL, "User:*", Operation::ALL)]);
        let admin = as_user(&mut h, "admin");
        assert_eq!((self.probe)(&mut h, admin, G), served, "{}: super user", self.api);
    }
}

// ---- probes ------------------------------------------------------------------------------

fn find_coordinator(h: &mut Harness, c: ConnId, key_type: i8, keys: &[&str], version: i16) -> FindCoordinatorResponse {
    let req = FindCoordinatorRequest {
        key: keys.first().map(|k| KStr::from(*k)).unwrap_or_default(),
        key_type,
        coordinator_keys: keys.iter().map(|k| KStr::from(*k)).collect(),
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::FindCoordinator(req), version), FindCoordinator)
}

fn probe_find_coordinator(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    find_coordinator(h, c, 0, &[g], 3).error_code
}

fn probe_find_coordinator_batched(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    find_coordinator(h, c, 0, &[g], 4).coordinators[0].error_code
}

fn probe_join(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    let req = join_request(g, "", None, &[("range", subscription(&[T]))]);
    expect_body!(h.call(c, req, 5), JoinGroup).error_code
}

fn probe_sync(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    expect_body!(h.call(c, sync_request(g, 1, "m", None, &[]), 4), SyncGroup).error_code
}

fn probe_heartbeat(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    expect_body!(h.call(c, heartbeat_request(g, 1, "m", None), 4), Heartbeat).error_code
}

fn probe_leave(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    expect_body!(h.call(c, leave_request(g, &[("m", None)]), 4), LeaveGroup).error_code
}

fn describe_groups(h: &mut Harness, c: ConnId, groups: &[&str], ops: bool, version: i16) -> Vec<(String, i16, i32)> {
    let req = DescribeGroupsRequest {
        groups: groups.iter().map(|g| KStr::from(*g)).collect(),
        include_authorized_operations: ops,
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::DescribeGroups(req), version), DescribeGroups);
    r.groups.iter().map(|g| (g.group_id.to_string(), g.error_code, g.authorized_operations)).collect()
}

fn probe_describe_groups(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    describe_groups(h, c, &[g], false, 5)[0].1
}

fn delete_groups(h: &mut Harness, c: ConnId, groups: &[&str]) -> Vec<(String, i16)> {
    let req =
        DeleteGroupsRequest { groups_names: groups.iter().map(|g| KStr::from(*g)).collect(), ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::DeleteGroups(req), 2), DeleteGroups);
    r.results.iter().map(|x| (x.group_id.to_string(), x.error_code)).collect()
}

fn probe_delete_groups(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    delete_groups(h, c, &[g])[0].1
}

/// A simple consumer's commit (generation -1) at v8.
fn commit(h: &mut Harness, c: ConnId, g: &str, offsets: &[(&str, i32, i64)]) -> OffsetCommitResponse {
    expect_body!(h.call(c, commit_request(g, -1, "", offsets), 8), OffsetCommit)
}

/// (topic, partition, code) of a commit's answer.
fn commit_codes(r: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index, p.error_code)))
        .collect()
}

fn probe_commit(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    commit(h, c, g, &[(T, 0, 5)]).topics[0].partitions[0].error_code
}

fn probe_fetch(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    expect_body!(h.call(c, offset_fetch_request(g, Some(&[(T, &[0])]), false), 7), OffsetFetch).error_code
}

fn probe_fetch_batched(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    fetch_groups(h, c, &[(g, None)]).groups[0].error_code
}

fn offset_delete(h: &mut Harness, c: ConnId, g: &str, topics: &[&str]) -> OffsetDeleteResponse {
    let req = OffsetDeleteRequest {
        group_id: g.into(),
        topics: topics
            .iter()
            .map(|t| OffsetDeleteRequestTopic {
                name: (*t).into(),
                partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
            })
            .collect(),
    };
    expect_body!(h.call(c, RequestBody::OffsetDelete(req), 0), OffsetDelete)
}

/// The group holds an offset of `t` (committed by the super user), then `c` deletes it.
fn probe_offset_delete(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    let admin = as_user(h, "admin");
    assert_eq!(probe_commit(h, admin, g), 0);
    offset_delete(h, c, g, &[T]).error_code
}

fn cg_heartbeat(
    h: &mut Harness,
    c: ConnId,
    g: &str,
    names: Option<&[&str]>,
    regex: Option<&str>,
) -> ConsumerGroupHeartbeatResponse {
    let req = ConsumerGroupHeartbeatRequest {
        group_id: g.into(),
        member_id: format!("member-{}", c.0).into(),
        member_epoch: 0,
        rebalance_timeout_ms: 60_000,
        subscribed_topic_names: names.map(|ts| ts.iter().map(|t| KStr::from(*t)).collect()),
        subscribed_topic_regex: regex.map(KStr::from),
        topic_partitions: Some(Vec::new()),
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::ConsumerGroupHeartbeat(req), 1), ConsumerGroupHeartbeat)
}

fn probe_cg_heartbeat(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    cg_heartbeat(h, c, g, Some(&[T]), None).error_code
}

fn cg_describe(h: &mut Harness, c: ConnId, groups: &[&str], ops: bool) -> Vec<DescribedGroup> {
    let req = ConsumerGroupDescribeRequest {
        group_ids: groups.iter().map(|g| KStr::from(*g)).collect(),
        include_authorized_operations: ops,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::ConsumerGroupDescribe(req), 0), ConsumerGroupDescribe).groups
}

fn probe_cg_describe(h: &mut Harness, c: ConnId, g: &str) -> i16 {
    cg_describe(h, c, &[g], false)[0].error_code
}

fn fetch_groups(h: &mut Harness, c: ConnId, groups: &[(&str, Option<&[&str]>)]) -> OffsetFetchResponse {
    let req = OffsetFetchRequest {
        groups: groups
            .iter()
            .map(|(g, topics)| OffsetFetchRequestGroup {
                group_id: (*g).into(),
                topics: topics.map(|ts| {
                    ts.iter()
                        .map(|t| OffsetFetchRequestTopics {
                            name: (*t).into(),
                            partition_indexes: vec![0],
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::OffsetFetch(req), 9), OffsetFetch)
}

// ---- the matrix, one API at a time -------------------------------------------------------

const NONE: i16 = 0;
const UNKNOWN_MEMBER_ID: i16 = ErrorCode::UNKNOWN_MEMBER_ID.0;
const GROUP_ID_NOT_FOUND: i16 = ErrorCode::GROUP_ID_NOT_FOUND.0;

#[test]
fn find_coordinator_of_a_group_takes_describe() {
    let case = Case {
        api: "FindCoordinator v3",
        op: Operation::DESCRIBE,
        weaker: None,
        probe: probe_find_coordinator,
        served: NONE,
        refused: GAF,
    };
    case.run();
    Case { api: "FindCoordinator v4", probe: probe_find_coordinator_batched, ..case }.run();
}

#[test]
fn join_group_takes_read() {
    let served = ErrorCode::MEMBER_ID_REQUIRED.0;
    Case {
        api: "JoinGroup",
        op: Operation::READ,
        weaker: Some(Operation::DESCRIBE),
        probe: probe_join,
        served,
        refused: GAF,
    }
    .run();
}

#[test]
fn sync_group_takes_read() {
    let probe = probe_sync;
    Case {
        api: "SyncGroup",
        op: Operation::READ,
        weaker: Some(Operation::DESCRIBE),
        probe,
        served: UNKNOWN_MEMBER_ID,
        refused: GAF,
    }
    .run();
}

#[test]
fn heartbeat_takes_read() {
    let probe = probe_heartbeat;
    Case {
        api: "Heartbeat",
        op: Operation::READ,
        weaker: Some(Operation::DESCRIBE),
        probe,
        served: UNKNOWN_MEMBER_ID,
        refused: GAF,
    }
    .run();
}

#[test]
fn leave_group_takes_read() {
    let probe = probe_leave;
    Case {
        api: "LeaveGroup",
        op: Operation::READ,
        weaker: Some(Operation::DESCRIBE),
        probe,
        served: NONE,
        refused: GAF,
    }
    .run();
}

#[test]
fn describe_groups_takes_describe() {
    let probe = probe_describe_groups;
    Case { api: "DescribeGroups", op: Operation::DESCRIBE, weaker: None, probe, served: NONE, refused: GAF }.run();
}

#[test]
fn delete_groups_takes_delete() {
    let probe = probe_delete_groups;
    let served = GROUP_ID_NOT_FOUND;
    Case { api: "DeleteGroups", op: Operation::DELETE, weaker: Some(Operation::READ), probe, served, refused: GAF }
        .run();
}

#[test]
fn offset_commit_takes_read_on_the_group() {
    let probe = probe_commit;
    Case {
        api: "OffsetCommit",
        op: Operation::READ,
        weaker: Some(Operation::DESCRIBE),
        probe,
        served: NONE,
        refused: GAF,
    }
    .run();
}

#[test]
fn offset_fetch_takes_describe_on_the_group() {
    let case = Case {
        api: "OffsetFetch v7",
        op: Operation::DESCRIBE,
        weaker: None,
        probe: probe_fetch,
        served: NONE,
        refused: GAF,
    };
    case.run();
    Case { api: "OffsetFetch v9", probe: probe_fetch_batched, ..case }.run();
}

#[test]
fn offset_delete_takes_delete_on_the_group() {
    let probe = probe_offset_delete;
    Case {
        api: "OffsetDelete",
        op: Operation::DELETE,
        weaker: Some(Operation::READ),
        probe,
        served: NONE,
        refused: GAF,
    }
    .run();
}

#[test]
fn consumer_group_heartbeat_takes_read() {
    let probe = probe_cg_heartbeat;
    let case = Case {
        api: "ConsumerGroupHeartbeat",
        op: Operation::READ,
        weaker: Some(Operation::DESCRIBE),
        probe,
        served: NONE,
        refused: GAF,
    };
    case.run();
}

#[test]
fn consumer_group_describe_takes_describe() {
    let probe = probe_cg_describe;
    let served = GROUP_ID_NOT_FOUND;
    Case { api: "ConsumerGroupDescribe", op: Operation::DESCRIBE, weaker: None, probe, served, refused: GAF }.run();
}

// ---- shapes, per-resource errors and what stays hidden -----------------------------------

#[test]
fn find_coordinator_checks_each_key_and_transactional_ids() {
    let (mut h, alice) = fresh(
        false,
        &[
            (GROUP, "g-", PatternType::PREFIXED, ALICE, Operation::DESCRIBE, Permission::ALLOW),
            allow(ResourceType::TRANSACTIONAL_ID, "tx-1", ALICE, Operation::DESCRIBE),
        ],
    );
    let node = acl_config().node_id;
    // Before v4: one key, Kafka's "no node" and its message.
    let r = find_coordinator(&mut h, alice, 0, &["other"], 3);
    assert_eq!((r.error_code, r.node_id, r.host.as_str(), r.port), (GAF, -1, "", -1));
    assert_eq!(r.error_message.as_deref(), Some("Group authorization failed."));
    let r = find_coordinator(&mut h, alice, 1, &["tx-2"], 3);
    assert_eq!(r.error_code, ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0);
    assert_eq!(r.error_message.as_deref(), Some("Transactional Id authorization failed."));
    let r = find_coordinator(&mut h, alice, 1, &["tx-1"], 3);
    assert_eq!((r.error_code, r.node_id), (NONE, node));
    // v4+: an answer per key; the group name is not a transactional id.
    let r = find_coordinator(&mut h, alice, 0, &["g-a", "other", "g-b"], 4);
    let codes: Vec<(&str, i16, i32)> =
        r.coordinators.iter().map(|c| (c.key.as_str(), c.error_code, c.node_id)).collect();
    assert_eq!(codes, [("g-a", NONE, node), ("other", GAF, -1), ("g-b", NONE, node)]);
    let r = find_coordinator(&mut h, alice, 1, &["tx-1", "g-a"], 4);
    let codes: Vec<i16> = r.coordinators.iter().map(|c| c.error_code).collect();
    assert_eq!(codes, [NONE, ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0]);
    // READ implies DESCRIBE, and a DENY of READ leaves it.
    grant(
        &mut h,
        &[
            allow(GROUP, "other", ALICE, Operation::READ),
            deny(GROUP, "other", PatternType::LITERAL, ALICE, Operation::READ),
        ],
    );
    assert_eq!(find_coordinator(&mut h, alice, 0, &["other"], 3).error_code, NONE);
    grant(&mut h, &[allow(GROUP, "other-2", ALICE, Operation::READ)]);
    assert_eq!(find_coordinator(&mut h, alice, 0, &["other-2"], 3).error_code, NONE);
}

#[test]
fn refused_group_requests_keep_kafkas_shapes() {
    let (mut h, alice) = fresh(false, &[]);
    // JoinGroup names no member.
    let req = join_request(G, "known-member", None, &[("range", subscription(&[T]))]);
    let r = expect_body!(h.call(alice, req, 5), JoinGroup);
    assert_eq!((r.error_code, r.member_id.as_str(), r.generation_id), (GAF, "", -1));
    // SyncGroup v5 without the protocol name: Kafka checks that first.
    let r = expect_body!(h.call(alice, sync_request(G, 1, "m", None, &[]), 5), SyncGroup);
    assert_eq!(r.error_code, ErrorCode::INCONSISTENT_GROUP_PROTOCOL.0);
    // LeaveGroup: a top-level error and no members, before v3 and after.
    let r = expect_body!(h.call(alice, leave_request(G, &[("m", None)]), 4), LeaveGroup);
    assert_eq!((r.error_code, r.members.len()), (GAF, 0));
    let old = LeaveGroupRequest { group_id: G.into(), member_id: "m".into(), ..Default::default() };
    let r = expect_body!(h.call(alice, RequestBody::LeaveGroup(old), 2), LeaveGroup);
    assert_eq!(r.error_code, GAF);
    // A refused commit creates no group.
    let admin = as_user(&mut h, "admin");
    assert_eq!(probe_commit(&mut h, alice, G), GAF);
    assert_eq!(describe_groups(&mut h, admin, &[G], false, 6)[0].1, GROUP_ID_NOT_FOUND);
}

#[test]
fn list_groups_shows_the_groups_a_principal_may_describe_or_all_with_cluster_describe() {
    let (mut h, alice) = fresh(false, &[]);
    let admin = as_user(&mut h, "admin");
    for g in ["g-1", "g-2", "other"] {
        assert_eq!(probe_commit(&mut h, admin, g), 0);
    }
    let list = |h: &mut Harness, c: ConnId| -> Vec<String> {
        let r = expect_body!(h.call(c, RequestBody::ListGroups(ListGroupsRequest::default()), 4), ListGroups);
        assert_eq!(r.error_code, 0);
        r.groups.iter().map(|g| g.group_id.to_string()).collect()
    };
    assert_eq!(list(&mut h, alice), Vec::<String>::new());
    assert_eq!(list(&mut h, admin), ["g-1", "g-2", "other"]);
    grant(&mut h, &[(GROUP, "g-", PatternType::PREFIXED, ALICE, Operation::READ, Permission::ALLOW)]);
    grant(&mut h, &[deny(GROUP, "g-2", PatternType::LITERAL, ALICE, Operation::DESCRIBE)]);
    assert_eq!(list(&mut h, alice), ["g-1"]);
    grant(&mut h, &[allow(ResourceType::CLUSTER, "kafka-cluster", ALICE, Operation::DESCRIBE)]);
    assert_eq!(list(&mut h, alice), ["g-1", "g-2", "other"]);
}

#[test]
fn describe_groups_answers_per_group_with_the_operations_asked_for() {
    let (mut h, alice) = fresh(false, &[allow(GROUP, G, ALICE, Operation::READ)]);
    let read_describe = (1 << Operation::READ.0) | (1 << Operation::DESCRIBE.0);
    let got = describe_groups(&mut h, alice, &[G, "g-2"], true, 5);
    assert_eq!(got, [(G.to_string(), NONE, read_describe), ("g-2".to_string(), GAF, i32::MIN)]);
    let got = describe_groups(&mut h, alice, &[G], false, 5);
    assert_eq!(got, [(G.to_string(), NONE, i32::MIN)]);
    let admin = as_user(&mut h, "admin");
    let all = [
        Operation::READ,
        Operation::DELETE,
        Operation::DESCRIBE,
        Operation::DESCRIBE_CONFIGS,
        Operation::ALTER_CONFIGS,
    ]
    .iter()
    .fold(0, |acc, op| acc | (1 << op.0));
    assert_eq!(describe_groups(&mut h, admin, &[G], true, 5)[0].2, all);
}

#[test]
fn delete_groups_deletes_the_groups_it_may_and_refuses_the_others() {
    let (mut h, alice) = fresh(false, &[allow(GROUP, "g-1", ALICE, Operation::DELETE)]);
    let admin = as_user(&mut h, "admin");
    for g in ["g-1", "g-2"] {
        assert_eq!(probe_commit(&mut h, admin, g), 0);
    }
    assert_eq!(delete_groups(&mut h, alice, &["g-1", "g-2"]), [("g-1".to_string(), NONE), ("g-2".to_string(), GAF)]);
    let left = describe_groups(&mut h, admin, &["g-1", "g-2"], false, 6);
    assert_eq!((left[0].1, left[1].1), (GROUP_ID_NOT_FOUND, NONE));
}

#[test]
fn offset_commit_needs_read_on_each_topic_and_commits_the_rest() {
    let (mut h, alice) = fresh(
        false,
        &[
            allow(GROUP, G, ALICE, Operation::READ),
            allow(GROUP, "g-new", ALICE, Operation::READ),
            allow(TOPIC, T, ALICE, Operation::READ),
            allow(TOPIC, "described", ALICE, Operation::DESCRIBE),
            allow(TOPIC, "ghost", ALICE, Operation::READ),
        ],
    );
    let admin = as_user(&mut h, "admin");
    create_topic(&mut h, admin, "secret", 1);
    create_topic(&mut h, admin, "described", 1);
    let r = commit(
        &mut h,
        alice,
        G,
        &[(T, 0, 5), ("secret", 0, 6), ("described", 0, 7), ("missing", 0, 8), ("ghost", 0, 9)],
    );
    // An unknown topic alice may not READ is refused, as one that exists: existence does not leak.
    assert_eq!(
        commit_codes(&r),
        [
            (String::from(T), 0, NONE),
            (String::from("secret"), 0, TAF),
            (String::from("described"), 0, TAF),
            (String::from("missing"), 0, TAF),
            (String::from("ghost"), 0, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0),
        ]
    );
    let fetched = expect_body!(
        h.call(admin, offset_fetch_request(G, Some(&[(T, &[0]), ("secret", &[0])]), false), 7),
        OffsetFetch
    );
    let offsets: Vec<i64> = fetched.topics.iter().map(|t| t.partitions[0].committed_offset).collect();
    assert_eq!(offsets, [5, -1]);
    // A commit to no topic it may READ leaves the group alone, even with a bad generation.
    let r = expect_body!(h.call(alice, commit_request("g-new", 7, "nobody", &[("secret", 0, 1)]), 8), OffsetCommit);
    assert_eq!(commit_codes(&r), [(String::from("secret"), 0, TAF)]);
    assert_eq!(describe_groups(&mut h, admin, &["g-new"], false, 6)[0].1, GROUP_ID_NOT_FOUND);
}

#[test]
fn offset_commit_refused_on_the_group_answers_every_partition() {
    let (mut h, alice) = fresh(false, &[allow(TOPIC, T, ALICE, Operation::READ)]);
    let r = commit(&mut h, alice, G, &[(T, 0, 5), ("missing", 0, 1)]);
    assert_eq!(commit_codes(&r), [(String::from(T), 0, GAF), (String::from("missing"), 0, GAF)]);
}

/// Offsets of `t` and `secret` in `g-1` and `g-2`, committed by the super user; alice may
/// DESCRIBE `g-1` and `t`.
fn fetch_setup() -> (Harness, ConnId) {
    let (mut h, alice) =
        fresh(false, &[allow(GROUP, G, ALICE, Operation::DESCRIBE), allow(TOPIC, T, ALICE, Operation::DESCRIBE)]);
    let admin = as_user(&mut h, "admin");
    create_topic(&mut h, admin, "secret", 1);
    for g in [G, "g-2"] {
        let r = commit(&mut h, admin, g, &[(T, 0, 5), ("secret", 0, 6)]);
        assert!(commit_codes(&r).iter().all(|x| x.2 == 0));
    }
    (h, alice)
}

#[test]
fn offset_fetch_hides_topics_the_principal_may_not_describe() {
    let (mut h, alice) = fetch_setup();
    // Every partition: only the topics alice may DESCRIBE.
    let r = expect_body!(h.call(alice, offset_fetch_request(G, None, false), 7), OffsetFetch);
    let seen: Vec<(&str, i64)> = r.topics.iter().map(|t| (t.name.as_str(), t.partitions[0].committed_offset)).collect();
    assert_eq!((r.error_code, seen), (NONE, vec![(T, 5)]));
    // Named: the others are refused, with no offset; an unknown one too.
    let asked: &[(&str, &[i32])] = &[(T, &[0]), ("secret", &[0]), ("missing", &[0])];
    let r = expect_body!(h.call(alice, offset_fetch_request(G, Some(asked), false), 7), OffsetFetch);
    let got: Vec<(&str, i64, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions[0].committed_offset, t.partitions[0].error_code))
        .collect();
    assert_eq!(got, [(T, 5, NONE), ("secret", -1, TAF), ("missing", -1, TAF)]);
}

#[test]
fn offset_fetch_refuses_a_group_at_the_level_each_version_has() {
    let (mut h, alice) = fetch_setup();
    // v2-v7: the top-level error, no topics.
    let r = expect_body!(h.call(alice, offset_fetch_request("g-2", Some(&[(T, &[0])]), false), 7), OffsetFetch);
    assert_eq!((r.error_code, r.topics.len()), (GAF, 0));
    let r = expect_body!(h.call(alice, offset_fetch_request("g-2", None, false), 2), OffsetFetch);
    assert_eq!((r.error_code, r.topics.len()), (GAF, 0));
    // v1 has no top-level error: every partition asked for carries it.
    let r = expect_body!(h.call(alice, offset_fetch_request("g-2", Some(&[(T, &[0])]), false), 1), OffsetFetch);
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.committed_offset), (GAF, -1));
    // v8+: per group, the others served.
    let r = fetch_groups(&mut h, alice, &[("g-2", None), (G, None), (G, Some(&[T, "secret"]))]);
    let refused = &r.groups[0];
    assert_eq!((refused.group_id.as_str(), refused.error_code, refused.topics.len()), ("g-2", GAF, 0));
    let all: Vec<&str> = r.groups[1].topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!((r.groups[1].error_code, all), (NONE, vec![T]));
    let named: Vec<(&str, i64, i16)> = r.groups[2]
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions[0].committed_offset, t.partitions[0].error_code))
        .collect();
    assert_eq!(named, [(T, 5, NONE), ("secret", -1, TAF)]);
}

#[test]
fn offset_delete_needs_read_on_each_topic() {
    let (mut h, alice) = fresh(
        false,
        &[
            allow(GROUP, G, ALICE, Operation::DELETE),
            allow(TOPIC, T, ALICE, Operation::READ),
            allow(TOPIC, "described", ALICE, Operation::DESCRIBE),
        ],
    );
    let admin = as_user(&mut h, "admin");
    create_topic(&mut h, admin, "secret", 1);
    create_topic(&mut h, admin, "described", 1);
    let r = commit(&mut h, admin, G, &[(T, 0, 5), ("secret", 0, 6), ("described", 0, 7)]);
    assert!(commit_codes(&r).iter().all(|x| x.2 == 0));
    let r = offset_delete(&mut h, alice, G, &[T, "secret", "described", "missing"]);
    let codes: Vec<(&str, i16)> = r.topics.iter().map(|t| (t.name.as_str(), t.partitions[0].error_code)).collect();
    assert_eq!((r.error_code, codes), (NONE, vec![(T, NONE), ("secret", TAF), ("described", TAF), ("missing", TAF)]));
    let fetched = expect_body!(h.call(admin, offset_fetch_request(G, None, false), 7), OffsetFetch);
    let left: Vec<&str> = fetched.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(left, ["described", "secret"]);
    // Refused on the group: a top-level error and nothing else.
    let r = offset_delete(&mut h, alice, "g-2", &[T]);
    assert_eq!((r.error_code, r.topics.len()), (GAF, 0));
}

#[test]
fn consumer_group_heartbeat_needs_describe_on_each_named_topic() {
    let (mut h, alice) =
        fresh(false, &[allow(GROUP, G, ALICE, Operation::READ), allow(TOPIC, T, ALICE, Operation::DESCRIBE)]);
    let admin = as_user(&mut h, "admin");
    create_topic(&mut h, admin, "secret", 1);
    for topics in [&["secret"][..], &[T, "secret"], &[T, "missing"]] {
        let r = cg_heartbeat(&mut h, alice, G, Some(topics), None);
        assert_eq!((r.error_code, r.error_message.as_deref(), r.member_id.as_deref()), (TAF, None, None), "{topics:?}");
    }
    assert_eq!(cg_describe(&mut h, admin, &[G], false)[0].error_code, GROUP_ID_NOT_FOUND, "no group was made");
    let r = cg_heartbeat(&mut h, alice, G, Some(&[T]), None);
    assert_eq!(r.error_code, NONE);
    // A refused group is refused first, without a message.
    let r = cg_heartbeat(&mut h, alice, "g-2", Some(&["secret"]), None);
    assert_eq!((r.error_code, r.error_message.as_deref()), (GAF, None));
}

#[test]
fn a_regex_subscription_matches_only_topics_the_member_may_describe() {
    let (mut h, alice) = fresh(
        false,
        &[
            allow(GROUP, G, ALICE, Operation::READ),
            (TOPIC, "orders", PatternType::PREFIXED, ALICE, Operation::READ, Permission::ALLOW),
            deny(TOPIC, "orders-secret", PatternType::LITERAL, ALICE, Operation::DESCRIBE),
        ],
    );
    let admin = as_user(&mut h, "admin");
    for t in ["orders-eu", "orders-secret", "orders-us"] {
        create_topic(&mut h, admin, t, 1);
    }
    let r = cg_heartbeat(&mut h, alice, G, None, Some("orders-.*"));
    assert_eq!(r.error_code, NONE, "{:?}", r.error_message);
    let d = &cg_describe(&mut h, admin, &[G], false)[0];
    let mut assigned: Vec<&str> =
        d.members[0].target_assignment.topic_partitions.iter().map(|t| t.topic_name.as_str()).collect();
    assigned.sort_unstable();
    assert_eq!(assigned, ["orders-eu", "orders-us"]);
}

#[test]
fn consumer_group_describe_hides_a_group_with_topics_the_principal_may_not_describe() {
    let (mut h, alice) =
        fresh(false, &[(GROUP, "g-", PatternType::PREFIXED, ALICE, Operation::DESCRIBE, Permission::ALLOW)]);
    let admin = as_user(&mut h, "admin");
    create_topic(&mut h, admin, "secret", 1);
    assert_eq!(cg_heartbeat(&mut h, admin, G, Some(&["secret"]), None).error_code, NONE);
    assert_eq!(cg_heartbeat(&mut h, admin, "g-2", Some(&[T]), None).error_code, NONE);
    let groups = cg_describe(&mut h, alice, &[G, "g-2", "other"], true);
    let hidden = &groups[0];
    assert_eq!((hidden.group_id.as_str(), hidden.error_code, hidden.members.len()), (G, TAF, 0));
    assert_eq!(
        hidden.error_message.as_deref(),
        Some("The group has described topic(s) that the client is not authorized to describe.")
    );
    // Alice may DESCRIBE `t` only once a binding names it.
    assert_eq!(groups[1].error_code, TAF);
    assert_eq!((groups[2].error_code, groups[2].authorized_operations), (GAF, i32::MIN));
    grant(&mut h, &[allow(TOPIC, T, ALICE, Operation::DESCRIBE)]);
    let g2 = &cg_describe(&mut h, alice, &["g-2"], true)[0];
    assert_eq!((g2.error_code, g2.members.len(), g2.authorized_operations), (NONE, 1, 1 << Operation::DESCRIBE.0));
    assert_eq!(cg_describe(&mut h, alice, &["g-2"], false)[0].authorized_operations, i32::MIN);
}

#[test]
fn without_the_authorizer_everyone_is_served() {
    let mut h = Harness::new(Config { authorizer: false, ..acl_config() });
    let alice = as_user(&mut h, "alice");
    create_topic(&mut h, alice, T, 1);
    assert_eq!(probe_find_coordinator(&mut h, alice, G), NONE);
    assert_eq!(probe_commit(&mut h, alice, G), NONE);
    assert_eq!(probe_fetch(&mut h, alice, G), NONE);
    assert_eq!(probe_cg_describe(&mut h, alice, "other"), GROUP_ID_NOT_FOUND);
    let ops = describe_groups(&mut h, alice, &[G], true, 5)[0].2;
    assert_eq!(ops, (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11));
}
