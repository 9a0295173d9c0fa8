//! Scenario tests of the KIP-848 consumer group coordinator in virtual time:
//! ConsumerGroupHeartbeat joins, reconciliation (revoke before assign, UNREVOKED and
//! UNRELEASED members), leaving, static members, session and rebalance timeouts, metadata
//! changes, the error codes clients act on, offsets with member epochs, the classic/consumer
//! boundary, listing, describing, deleting, persistence across a restart and ApiVersions.

use std::collections::{BTreeMap, BTreeSet};

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::codec::generated::consumer_group_describe::{ConsumerGroupDescribeRequest, DescribedGroup};
use kelp_core::codec::generated::consumer_group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestTopicPartitions,
};
use kelp_core::codec::generated::create_partitions::{CreatePartitionsRequest, CreatePartitionsTopic};
use kelp_core::codec::generated::delete_groups::DeleteGroupsRequest;
use kelp_core::codec::generated::describe_groups::DescribeGroupsRequest;
use kelp_core::codec::generated::list_groups::ListGroupsRequest;
use kelp_core::codec::generated::offset_fetch::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kelp_core::codec::{ApiKey, ErrorCode, KStr, Uuid};
use kelp_core::io::StorageError;
use kelp_core::{Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, commit_request, create_topic, heartbeat_request, join_request, ms, subscription, test_config,
};

const G: &str = "cg";
const T: &str = "t";

type Owned = BTreeMap<Uuid, BTreeSet<i32>>;

/// A scripted KIP-848 member: what it believes it owns, its id and epoch.
struct M {
    conn: ConnId,
    id: String,
    epoch: i32,
    owned: Owned,
    instance: Option<String>,
}

fn hb_request(
    group: &str,
    id: &str,
    epoch: i32,
    owned: Option<&Owned>,
    topics: Option<&[&str]>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: if epoch == 0 { 60_000 } else { -1 },
        subscribed_topic_names: topics.map(|ts| ts.iter().map(|t| KStr::from(*t)).collect()),
        topic_partitions: owned.map(|o| {
            o.iter()
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

fn beat(h: &mut Harness, c: ConnId, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    expect_body!(h.call(c, RequestBody::ConsumerGroupHeartbeat(req), 0), ConsumerGroupHeartbeat)
}

fn code(r: &ConsumerGroupHeartbeatResponse) -> ErrorCode {
    ErrorCode(r.error_code)
}

fn to_owned(r: &ConsumerGroupHeartbeatResponse) -> Option<Owned> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .filter(|t| !t.partitions.is_empty())
            .map(|t| (t.topic_id, t.partitions.iter().copied().collect()))
            .collect()
    })
}

fn count(o: &Owned) -> usize {
    o.values().map(BTreeSet::len).sum()
}

impl M {
    /// Joins with epoch 0 (a fresh member id from the coordinator unless `instance`/`id` say).
    fn join(h: &mut Harness, topics: &[&str]) -> Self {
        Self::join_as(h, "", None, topics, None)
    }

    fn join_as(h: &mut Harness, id: &str, instance: Option<&str>, topics: &[&str], assignor: Option<&str>) -> Self {
        let conn = h.connect();
        let mut req = hb_request(G, id, 0, Some(&Owned::new()), Some(topics));
        req.instance_id = instance.map(KStr::from);
        req.server_assignor = assignor.map(KStr::from);
        let r = beat(h, conn, req);
        assert_eq!(code(&r), ErrorCode::NONE, "join: {:?}", r.error_message);
        assert_eq!(r.heartbeat_interval_ms, 5000);
        let id = r.member_id.clone().expect("a member id").to_string();
        assert!(!id.is_empty());
        let mut m = Self { conn, id, epoch: r.member_epoch, owned: Owned::new(), instance: instance.map(String::from) };
        m.take(&r);
        m
    }

    /// Joins (a fresh member id) and checks the heartbeat interval the group gives.
    fn join_as_interval(h: &mut Harness, topics: &[&str], interval_ms: i32) -> Self {
        let conn = h.connect();
        let r = beat(h, conn, hb_request(G, "", 0, Some(&Owned::new()), Some(topics)));
        assert_eq!(code(&r), ErrorCode::NONE, "join: {:?}", r.error_message);
        assert_eq!(r.heartbeat_interval_ms, interval_ms);
        let id = r.member_id.clone().expect("a member id").to_string();
        let mut m = Self { conn, id, epoch: r.member_epoch, owned: Owned::new(), instance: None };
        m.take(&r);
        m
    }

    /// Applies an answer: the member gives up what it lost and takes what it got at once.
    fn take(&mut self, r: &ConsumerGroupHeartbeatResponse) {
        if code(r) == ErrorCode::NONE {
            self.epoch = r.member_epoch;
            if let Some(o) = to_owned(r) {
                self.owned = o;
            }
        }
    }

    /// A heartbeat reporting what it owns; applies the answer.
    fn beat(&mut self, h: &mut Harness) -> ConsumerGroupHeartbeatResponse {
        let r = self.beat_only(h);
        self.take(&r);
        r
    }

    /// A heartbeat reporting what it owns; the answer is not applied.
    fn beat_only(&self, h: &mut Harness) -> ConsumerGroupHeartbeatResponse {
        let mut req = hb_request(G, &self.id, self.epoch, Some(&self.owned), None);
        req.instance_id = self.instance.as_deref().map(KStr::from);
        beat(h, self.conn, req)
    }

    fn leave(&self, h: &mut Harness, epoch: i32) -> ConsumerGroupHeartbeatResponse {
        let mut req = hb_request(G, &self.id, epoch, None, None);
        req.instance_id = self.instance.as_deref().map(KStr::from);
        beat(h, self.conn, req)
    }
}

fn setup(partitions: i32) -> (Harness, ConnId, Uuid) {
    setup_with(test_config(), partitions)
}

fn setup_with(cfg: Config, partitions: i32) -> (Harness, ConnId, Uuid) {
    let mut h = Harness::new(cfg);
    let admin = h.connect();
    let id = create_topic(&mut h, admin, T, partitions);
    (h, admin, id)
}

fn describe(h: &mut Harness, c: ConnId, group: &str) -> DescribedGroup {
    let req = ConsumerGroupDescribeRequest { group_ids: vec![group.into()], ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::ConsumerGroupDescribe(req), 0), ConsumerGroupDescribe);
    r.groups.into_iter().next().expect("one group")
}

/// No partition is owned by two members, as the members themselves see it.
fn disjoint(members: &[&M]) {
    let mut seen = BTreeSet::new();
    for m in members {
        for (t, ps) in &m.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "partition {p} owned twice");
            }
        }
    }
}

fn all(topic: Uuid, n: i32) -> Owned {
    Owned::from([(topic, (0..n).collect())])
}

#[test]
fn first_member_gets_an_id_an_epoch_and_every_partition() {
    let (mut h, admin, t) = setup(6);
    let a = M::join(&mut h, &[T]);
    assert_eq!(a.epoch, 1);
    assert_eq!(a.owned, all(t, 6));
    let d = describe(&mut h, admin, G);
    assert_eq!(d.error_code, 0);
    assert_eq!((d.group_state.as_str(), d.group_epoch, d.assignment_epoch), ("Stable", 1, 1));
    assert_eq!(d.assignor_name.as_str(), "uniform");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].subscribed_topic_names, vec![KStr::from(T)]);
    assert_eq!(d.members[0].assignment.topic_partitions[0].topic_name.as_str(), T);
    // A heartbeat that changes nothing carries no assignment.
    let mut a = a;
    let r = a.beat(&mut h);
    assert_eq!((code(&r), r.member_epoch), (ErrorCode::NONE, 1));
    assert!(r.assignment.is_none());
}

#[test]
fn a_partition_is_revoked_before_it_is_assigned_elsewhere() {
    let (mut h, admin, t) = setup(6);
    let mut a = M::join(&mut h, &[T]);
    let mut b = M::join(&mut h, &[T]);
    // B is at the new epoch but every partition of its target is still A's.
    assert_eq!(b.epoch, 2);
    assert!(b.owned.is_empty());
    disjoint(&[&a, &b]);
    assert_eq!(describe(&mut h, admin, G).group_state.as_str(), "Reconciling");
    // A learns to give up three partitions; it keeps epoch 1 until it has (UNREVOKED).
    let r = a.beat_only(&mut h);
    assert_eq!(r.member_epoch, 1);
    let keep = to_owned(&r).expect("the reduced assignment");
    assert_eq!(count(&keep), 3);
    // Still holding them: nothing moves.
    assert_eq!(a.beat_only(&mut h).member_epoch, 1);
    assert!(b.beat(&mut h).assignment.is_none(), "B gets nothing while A holds its partitions");
    disjoint(&[&a, &b]);
    // A acknowledges: epoch 2, and then B gets the released partitions.
    a.owned = keep;
    let r = a.beat(&mut h);
    assert_eq!(r.member_epoch, 2);
    let r = b.beat(&mut h);
    assert_eq!((r.member_epoch, count(&b.owned)), (2, 3));
    disjoint(&[&a, &b]);
    let mut union = a.owned.clone();
    union.entry(t).or_default().extend(b.owned[&t].iter().copied());
    assert_eq!(union, all(t, 6));
    let d = describe(&mut h, admin, G);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert!(d.members.iter().all(|m| m.member_epoch == 2));
}

#[test]
fn a_leaving_member_frees_its_partitions() {
    let (mut h, admin, t) = setup(4);
    let mut a = M::join(&mut h, &[T]);
    let mut b = M::join(&mut h, &[T]);
    settle(&mut h, &mut [&mut a, &mut b]);
    assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));
    let r = b.leave(&mut h, -1);
    assert_eq!((code(&r), r.member_epoch), (ErrorCode::NONE, -1));
    let r = a.beat(&mut h);
    assert_eq!(a.owned, all(t, 4));
    assert_eq!(r.member_epoch, describe(&mut h, admin, G).group_epoch);
    // The member is gone.
    let r = b.beat_only(&mut h);
    assert_eq!(code(&r), ErrorCode::UNKNOWN_MEMBER_ID);
}

/// Heartbeats every member until nothing changes.
fn settle(h: &mut Harness, ms: &mut [&mut M]) {
    for _ in 0..10 {
        let mut changed = false;
        for m in ms.iter_mut() {
            let before = (m.epoch, m.owned.clone());
            let r = m.beat(h);
            assert_eq!(code(&r), ErrorCode::NONE, "{:?}", r.error_message);
            changed |= before != (m.epoch, m.owned.clone());
        }
        let refs: Vec<&M> = ms.iter().map(|m| &**m).collect();
        disjoint(&refs);
        if !changed {
            return;
        }
    }
    panic!("the group did not settle");
}

#[test]
fn a_silent_member_is_fenced_after_the_session_timeout() {
    let (mut h, admin, t) = setup(4);
    let mut a = M::join(&mut h, &[T]);
    let mut b = M::join(&mut h, &[T]);
    settle(&mut h, &mut [&mut a, &mut b]);
    // A heartbeats every 5 s, B never again.
    for _ in 0..9 {
        h.advance(ms(5000));
        a.beat(&mut h);
    }
    h.advance(ms(1000));
    assert_eq!(describe(&mut h, admin, G).members.len(), 1);
    a.beat(&mut h);
    assert_eq!(a.owned, all(t, 4));
    assert_eq!(code(&b.beat_only(&mut h)), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let (mut h, admin, _) = setup(4);
    let a = M::join(&mut h, &[T]);
    let mut b = M::join(&mut h, &[T]);
    assert!(count(&a.owned) == 4 && b.owned.is_empty());
    // A is asked to revoke and keeps its partitions; its rebalance timeout is 60 s.
    assert_eq!(a.beat_only(&mut h).member_epoch, 1);
    for _ in 0..11 {
        h.advance(ms(5000));
        b.beat(&mut h);
        assert_eq!(a.beat_only(&mut h).error_code, 0, "A stays while within its rebalance timeout");
    }
    h.advance(ms(6000));
    let d = describe(&mut h, admin, G);
    assert_eq!(d.members.len(), 1, "A was fenced");
    assert_eq!(code(&a.beat_only(&mut h)), ErrorCode::UNKNOWN_MEMBER_ID);
    b.beat(&mut h);
    assert_eq!(count(&b.owned), 4);
}

#[test]
fn epochs_are_checked() {
    let (mut h, admin, _) = setup(6);
    let mut a = M::join(&mut h, &[T]);
    let r = beat(&mut h, a.conn, hb_request(G, &a.id, a.epoch + 1, Some(&a.owned), None));
    assert_eq!(code(&r), ErrorCode::FENCED_MEMBER_EPOCH, "an epoch from the future");
    let mut b = M::join(&mut h, &[T]);
    settle(&mut h, &mut [&mut a, &mut b]);
    let mut c = M::join(&mut h, &[T]);
    settle(&mut h, &mut [&mut a, &mut b, &mut c]);
    assert_eq!(a.epoch, 3);
    assert_eq!(describe(&mut h, admin, G).group_epoch, 3);
    // The previous epoch is accepted when the member owns only what it is assigned (the
    // answer with the new epoch may have been lost); anything older is fenced.
    let r = beat(&mut h, a.conn, hb_request(G, &a.id, 2, Some(&a.owned), None));
    assert_eq!(code(&r), ErrorCode::NONE, "{:?}", r.error_message);
    let r = beat(
        &mut h,
        a.conn,
        hb_request(G, &a.id, 2, Some(&all(a.owned.keys().copied().next().expect("a topic"), 6)), None),
    );
    assert_eq!(code(&r), ErrorCode::FENCED_MEMBER_EPOCH, "the previous epoch while claiming more");
    let r = beat(&mut h, a.conn, hb_request(G, &a.id, 1, Some(&a.owned), None));
    assert_eq!(code(&r), ErrorCode::FENCED_MEMBER_EPOCH);
    // An unknown member.
    let r = beat(&mut h, a.conn, hb_request(G, "nobody", 3, Some(&Owned::new()), None));
    assert_eq!(code(&r), ErrorCode::UNKNOWN_MEMBER_ID);
    // A fenced member rejoins with epoch 0 and its id and gets its partitions back.
    let r = beat(&mut h, a.conn, hb_request(G, &a.id, 0, Some(&Owned::new()), Some(&[T])));
    assert_eq!((code(&r), r.member_epoch), (ErrorCode::NONE, a.epoch));
    assert_eq!(to_owned(&r), Some(a.owned.clone()));
}

#[test]
fn static_members_keep_their_partitions_across_a_restart() {
    let (mut h, admin, _) = setup(4);
    let mut a = M::join_as(&mut h, "", Some("i-a"), &[T], None);
    let mut b = M::join_as(&mut h, "", Some("i-b"), &[T], None);
    settle(&mut h, &mut [&mut a, &mut b]);
    let before = b.owned.clone();
    // The same instance id cannot join while its member is active.
    let c = h.connect();
    let mut req = hb_request(G, "", 0, Some(&Owned::new()), Some(&[T]));
    req.instance_id = Some("i-b".into());
    assert_eq!(code(&beat(&mut h, c, req.clone())), ErrorCode::UNRELEASED_INSTANCE_ID);
    // B leaves for now (epoch -2): its partitions wait for it.
    let r = b.leave(&mut h, -2);
    assert_eq!((code(&r), r.member_epoch), (ErrorCode::NONE, -2));
    a.beat(&mut h);
    assert_eq!(count(&a.owned), 2, "A does not get B's partitions while B may come back");
    let epoch = describe(&mut h, admin, G).group_epoch;
    // B comes back under a new member id with the same instance id.
    let r = beat(&mut h, c, req);
    assert_eq!(code(&r), ErrorCode::NONE);
    assert_ne!(r.member_id.as_deref(), Some(b.id.as_str()));
    assert_eq!(to_owned(&r), Some(before));
    let d = describe(&mut h, admin, G);
    assert_eq!(d.group_epoch, epoch, "no rebalance for a returning static member");
    assert_eq!(d.members.iter().filter(|m| m.instance_id.as_deref() == Some("i-b")).count(), 1);
    // The old member id is fenced for that instance.
    let mut old = hb_request(G, &b.id, b.epoch, Some(&b.owned), None);
    old.instance_id = Some("i-b".into());
    assert_eq!(code(&beat(&mut h, b.conn, old)), ErrorCode::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_static_member_that_never_returns_is_removed_after_its_session() {
    let (mut h, admin, t) = setup(4);
    let mut a = M::join(&mut h, &[T]);
    let mut b = M::join_as(&mut h, "", Some("i-b"), &[T], None);
    settle(&mut h, &mut [&mut a, &mut b]);
    b.leave(&mut h, -2);
    for _ in 0..10 {
        h.advance(ms(5000));
        a.beat(&mut h);
    }
    a.beat(&mut h);
    assert_eq!(a.owned, all(t, 4));
    assert_eq!(describe(&mut h, admin, G).members.len(), 1);
}

#[test]
fn the_group_size_is_bounded() {
    let (mut h, _, _) = setup_with(Config { group_max_size: 2, ..test_config() }, 4);
    M::join(&mut h, &[T]);
    M::join(&mut h, &[T]);
    let c = h.connect();
    let r = beat(&mut h, c, hb_request(G, "", 0, Some(&Owned::new()), Some(&[T])));
    assert_eq!(code(&r), ErrorCode::GROUP_MAX_SIZE_REACHED);
}

#[test]
fn the_range_assignor_is_used_when_members_ask() {
    let (mut h, admin, t) = setup(5);
    let c = h.connect();
    let mut req = hb_request(G, "", 0, Some(&Owned::new()), Some(&[T]));
    req.server_assignor = Some("sticky".into());
    let r = beat(&mut h, c, req);
    assert_eq!(code(&r), ErrorCode::UNSUPPORTED_ASSIGNOR);
    let mut a = M::join_as(&mut h, "member-a", None, &[T], Some("range"));
    let mut b = M::join_as(&mut h, "member-b", None, &[T], Some("range"));
    settle(&mut h, &mut [&mut a, &mut b]);
    assert_eq!(a.owned, Owned::from([(t, BTreeSet::from([0, 1, 2]))]));
    assert_eq!(b.owned, Owned::from([(t, BTreeSet::from([3, 4]))]));
    assert_eq!(describe(&mut h, admin, G).assignor_name.as_str(), "range");
}

#[test]
fn malformed_heartbeats_get_invalid_request() {
    let (mut h, _, _) = setup(2);
    let c = h.connect();
    let cases = [
        ConsumerGroupHeartbeatRequest { group_id: "".into(), ..hb_request(G, "", 0, Some(&Owned::new()), Some(&[T])) },
        ConsumerGroupHeartbeatRequest {
            rebalance_timeout_ms: -1,
            ..hb_request(G, "", 0, Some(&Owned::new()), Some(&[T]))
        },
        hb_request(G, "", 0, None, Some(&[T])),
        hb_request(G, "", 0, Some(&Owned::new()), None),
        hb_request(G, "", 3, None, None),
        hb_request(G, "x", -3, None, None),
        hb_request(G, "x", -2, None, None),
        ConsumerGroupHeartbeatRequest {
            instance_id: Some("".into()),
            ..hb_request(G, "", 0, Some(&Owned::new()), Some(&[T]))
        },
    ];
    for req in cases {
        let r = beat(&mut h, c, req.clone());
        assert_eq!(code(&r), ErrorCode::INVALID_REQUEST, "{req:?}");
        assert!(r.error_message.is_some());
    }
}

#[test]
fn new_partitions_and_new_topics_start_a_new_assignment() {
    let (mut h, admin, t) = setup(2);
    let mut a = M::join(&mut h, &[T, "later"]);
    let mut b = M::join(&mut h, &[T, "later"]);
    settle(&mut h, &mut [&mut a, &mut b]);
    let epoch = describe(&mut h, admin, G).group_epoch;
    let req = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic { name: T.into(), count: 4, ..Default::default() }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let r = expect_body!(h.call(admin, RequestBody::CreatePartitions(req), 3), CreatePartitions);
    assert_eq!(r.results[0].error_code, 0);
    settle(&mut h, &mut [&mut a, &mut b]);
    assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));
    assert!(describe(&mut h, admin, G).group_epoch > epoch);
    let later = create_topic(&mut h, admin, "later", 2);
    settle(&mut h, &mut [&mut a, &mut b]);
    assert_eq!((count(&a.owned), count(&b.owned)), (3, 3));
    assert!(a.owned.contains_key(&later) || b.owned.contains_key(&later));
    assert!(a.owned.contains_key(&t) || b.owned.contains_key(&t));
}

#[test]
fn a_deleted_topic_is_taken_away() {
    let (mut h, admin, t) = setup(2);
    let mut a = M::join(&mut h, &[T, "other"]);
    let other = create_topic(&mut h, admin, "other", 2);
    settle(&mut h, &mut [&mut a]);
    assert_eq!(a.owned.keys().copied().collect::<BTreeSet<_>>(), BTreeSet::from([t, other]));
    let epoch = describe(&mut h, admin, G).group_epoch;
    let req = kelp_core::codec::generated::delete_topics::DeleteTopicsRequest {
        topic_names: vec!["other".into()],
        timeout_ms: 1000,
        ..Default::default()
    };
    expect_body!(h.call(admin, RequestBody::DeleteTopics(req), 4), DeleteTopics);
    settle(&mut h, &mut [&mut a]);
    assert_eq!(a.owned, all(t, 2));
    assert!(describe(&mut h, admin, G).group_epoch > epoch);
}

#[test]
fn offsets_are_committed_and_fetched_at_the_member_epoch() {
    let (mut h, admin, _) = setup(2);
    let a = M::join(&mut h, &[T]);
    let ok =
        |r: &kelp_core::codec::generated::offset_commit::OffsetCommitResponse| r.topics[0].partitions[0].error_code;
    let r = expect_body!(h.call(a.conn, commit_request(G, a.epoch, &a.id, &[(T, 0, 5)]), 9), OffsetCommit);
    assert_eq!(ok(&r), 0);
    let r = expect_body!(h.call(a.conn, commit_request(G, a.epoch + 1, &a.id, &[(T, 0, 6)]), 9), OffsetCommit);
    assert_eq!(ErrorCode(ok(&r)), ErrorCode::STALE_MEMBER_EPOCH);
    let r = expect_body!(h.call(a.conn, commit_request(G, a.epoch, "nobody", &[(T, 0, 6)]), 9), OffsetCommit);
    assert_eq!(ErrorCode(ok(&r)), ErrorCode::UNKNOWN_MEMBER_ID);
    let r = expect_body!(h.call(a.conn, commit_request(G, a.epoch, &a.id, &[(T, 0, 6)]), 8), OffsetCommit);
    assert_eq!(ErrorCode(ok(&r)), ErrorCode::UNSUPPORTED_VERSION, "members of a consumer group commit with v9+");
    let r = expect_body!(h.call(a.conn, commit_request(G, -1, "", &[(T, 0, 6)]), 9), OffsetCommit);
    assert_eq!(ErrorCode(ok(&r)), ErrorCode::UNKNOWN_MEMBER_ID, "a non-empty group takes no anonymous commits");
    let fetch = |id: Option<&str>, epoch: i32| {
        RequestBody::OffsetFetch(OffsetFetchRequest {
            groups: vec![OffsetFetchRequestGroup {
                group_id: G.into(),
                member_id: id.map(KStr::from),
                member_epoch: epoch,
                topics: Some(vec![OffsetFetchRequestTopics {
                    name: T.into(),
                    partition_indexes: vec![0],
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let r = expect_body!(h.call(a.conn, fetch(Some(&a.id), a.epoch), 9), OffsetFetch);
    assert_eq!((r.groups[0].error_code, r.groups[0].topics[0].partitions[0].committed_offset), (0, 5));
    let r = expect_body!(h.call(a.conn, fetch(Some(&a.id), a.epoch + 1), 9), OffsetFetch);
    assert_eq!(ErrorCode(r.groups[0].error_code), ErrorCode::STALE_MEMBER_EPOCH);
    let r = expect_body!(h.call(a.conn, fetch(Some("nobody"), 1), 9), OffsetFetch);
    assert_eq!(ErrorCode(r.groups[0].error_code), ErrorCode::UNKNOWN_MEMBER_ID);
    let r = expect_body!(h.call(admin, fetch(None, -1), 9), OffsetFetch);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 5, "admin tools fetch without a member");
    // Once empty, anyone commits with epoch -1.
    a.leave(&mut h, -1);
    let r = expect_body!(h.call(admin, commit_request(G, -1, "", &[(T, 1, 9)]), 9), OffsetCommit);
    assert_eq!(ok(&r), 0);
}

#[test]
fn offsets_of_subscribed_topics_cannot_be_deleted_while_members_remain() {
    use kelp_core::codec::generated::offset_delete::{
        OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    let (mut h, admin, _) = setup(2);
    let a = M::join(&mut h, &[T]);
    let r = expect_body!(h.call(a.conn, commit_request(G, a.epoch, &a.id, &[(T, 0, 5)]), 9), OffsetCommit);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let delete = |h: &mut Harness| {
        let req = OffsetDeleteRequest {
            group_id: G.into(),
            topics: vec![OffsetDeleteRequestTopic {
                name: T.into(),
                partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
            }],
        };
        let r = expect_body!(h.call(admin, RequestBody::OffsetDelete(req), 0), OffsetDelete);
        (r.error_code, r.topics.first().map_or(0, |t| t.partitions[0].error_code))
    };
    assert_eq!(delete(&mut h), (0, ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC.0));
    a.leave(&mut h, -1);
    assert_eq!(delete(&mut h), (0, 0));
}

#[test]
fn describe_groups_shows_a_consumer_group_the_classic_way() {
    let (mut h, admin, _) = setup(2);
    M::join(&mut h, &[T]);
    // Classic requests from someone who is not a member are refused (classic members may join:
    // see group_migration.rs).
    let r = expect_body!(h.call(admin, heartbeat_request(G, 1, "x", None), 4), Heartbeat);
    assert_eq!(ErrorCode(r.error_code), ErrorCode::UNKNOWN_MEMBER_ID);
    // DescribeGroups shows a consumer group the classic way; ConsumerGroupDescribe does not
    // describe classic groups.
    let req = DescribeGroupsRequest { groups: vec![G.into()], ..Default::default() };
    let r = expect_body!(h.call(admin, RequestBody::DescribeGroups(req), 6), DescribeGroups);
    let d = &r.groups[0];
    assert_eq!((d.error_code, d.group_state.as_str(), d.protocol_type.as_str()), (0, "Stable", "consumer"));
    assert_eq!(d.protocol_data.as_str(), "uniform");
    assert_eq!(d.members.len(), 1);
    let sub = kelp_core::group::subscription_topics(&d.members[0].member_metadata).expect("a subscription");
    assert_eq!(sub, vec![KStr::from(T)]);
    assert!(!d.members[0].member_assignment.is_empty());
    let classic = "classic-g";
    h.send(admin, &join_request(classic, "", None, &[("range", subscription(&[T]))]), 3);
    h.advance(ms(3000));
    let r = expect_body!(h.recv(admin, ApiKey::JOIN_GROUP, 3).expect("joined").1, JoinGroup);
    assert_eq!(r.error_code, 0);
    let c = h.connect();
    let d = describe(&mut h, c, classic);
    assert_eq!(ErrorCode(d.error_code), ErrorCode::GROUP_ID_NOT_FOUND);
    assert_eq!(d.error_message.as_deref(), Some("Group classic-g is not a consumer group."));
    let d = describe(&mut h, c, "nothing-here");
    assert_eq!(ErrorCode(d.error_code), ErrorCode::GROUP_ID_NOT_FOUND);
}

#[test]
fn an_empty_classic_group_with_offsets_becomes_a_consumer_group() {
    let (mut h, admin, _) = setup(2);
    let r = expect_body!(h.call(admin, commit_request(G, -1, "", &[(T, 0, 7)]), 9), OffsetCommit);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let a = M::join(&mut h, &[T]);
    let r = expect_body!(h.call(a.conn, commit_request(G, a.epoch, &a.id, &[(T, 1, 3)]), 9), OffsetCommit);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let d = describe(&mut h, admin, G);
    assert_eq!(d.error_code, 0);
}

#[test]
fn list_describe_and_delete() {
    let (mut h, admin, _) = setup(2);
    let a = M::join(&mut h, &[T]);
    h.send(admin, &join_request("classic-g", "", None, &[("range", subscription(&[T]))]), 3);
    h.advance(ms(3000));
    h.recv(admin, ApiKey::JOIN_GROUP, 3).expect("joined");
    let list = |h: &mut Harness, types: &[&str], states: &[&str]| {
        let req = ListGroupsRequest {
            types_filter: types.iter().map(|t| KStr::from(*t)).collect(),
            states_filter: states.iter().map(|t| KStr::from(*t)).collect(),
            ..Default::default()
        };
        let r = expect_body!(h.call(admin, RequestBody::ListGroups(req), 5), ListGroups);
        r.groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.group_type.to_string(), g.group_state.to_string()))
            .collect::<Vec<_>>()
    };
    let both = list(&mut h, &[], &[]);
    assert!(both.contains(&(G.to_string(), "consumer".to_string(), "Stable".to_string())), "{both:?}");
    assert!(both.iter().any(|g| g.0 == "classic-g" && g.1 == "classic"));
    assert_eq!(list(&mut h, &["consumer"], &[]).len(), 1);
    assert_eq!(list(&mut h, &["Consumer"], &["stable"]).len(), 1);
    assert_eq!(list(&mut h, &["consumer"], &["Empty"]).len(), 0);
    assert!(list(&mut h, &["classic"], &[]).iter().all(|g| g.1 == "classic"));
    let delete = |h: &mut Harness| {
        let req = DeleteGroupsRequest { groups_names: vec![G.into()], ..Default::default() };
        expect_body!(h.call(admin, RequestBody::DeleteGroups(req), 2), DeleteGroups).results[0].error_code
    };
    assert_eq!(ErrorCode(delete(&mut h)), ErrorCode::NON_EMPTY_GROUP);
    a.leave(&mut h, -1);
    assert_eq!(list(&mut h, &["consumer"], &["Empty"]).len(), 1);
    assert_eq!(delete(&mut h), 0);
    assert_eq!(ErrorCode(describe(&mut h, admin, G).error_code), ErrorCode::GROUP_ID_NOT_FOUND);
    assert_eq!(ErrorCode(delete(&mut h)), ErrorCode::GROUP_ID_NOT_FOUND);
    // And nothing comes back after a restart.
    let mut h2 = h.restart(test_config());
    let c = h2.connect();
    assert_eq!(ErrorCode(describe(&mut h2, c, G).error_code), ErrorCode::GROUP_ID_NOT_FOUND);
}

#[test]
fn the_group_survives_a_restart() {
    let (mut h, _, _) = setup(4);
    let mut a = M::join(&mut h, &[T]);
    let mut b = M::join_as(&mut h, "", Some("i-b"), &[T], Some("range"));
    let r = a.beat(&mut h); // A gives up half and waits at epoch 1 (UNREVOKED)
    assert_eq!((r.member_epoch, count(&a.owned)), (1, 2));
    let before = describe(&mut h, a.conn, G);
    let mut h2 = h.restart(test_config());
    a.conn = h2.connect();
    b.conn = h2.connect();
    let after = describe(&mut h2, a.conn, G);
    assert_eq!(
        (after.group_epoch, after.assignment_epoch, after.assignor_name.clone(), after.group_state.clone()),
        (before.group_epoch, before.assignment_epoch, before.assignor_name.clone(), before.group_state.clone())
    );
    assert_eq!(after.members, before.members);
    settle(&mut h2, &mut [&mut a, &mut b]);
    assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));
}

#[test]
fn a_heartbeat_is_answered_after_the_group_is_stored() {
    let (mut h, _, _) = setup(2);
    h.auto_storage = false;
    let c = h.connect();
    h.send(c, &RequestBody::ConsumerGroupHeartbeat(hb_request(G, "", 0, Some(&Owned::new()), Some(&[T]))), 0);
    assert!(h.recv(c, ApiKey::CONSUMER_GROUP_HEARTBEAT, 0).is_none(), "not before the store");
    assert!(h.fail_one_storage(StorageError::Unavailable));
    let r = expect_body!(h.recv(c, ApiKey::CONSUMER_GROUP_HEARTBEAT, 0).expect("answered").1, ConsumerGroupHeartbeat);
    assert_eq!(code(&r), ErrorCode::COORDINATOR_NOT_AVAILABLE);
}

#[test]
fn api_versions_advertise_the_consumer_protocol() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    // librdkafka asks with v3, the Java client with v4.
    let r = expect_body!(h.call(c, RequestBody::ApiVersions(ApiVersionsRequest::default()), 3), ApiVersions);
    // v1 (regex subscriptions, client-made member ids) is what librdkafka asks for: without it
    // librdkafka's `group.protocol=consumer` never joins.
    for (key, max) in [(ApiKey::CONSUMER_GROUP_HEARTBEAT, 1), (ApiKey::CONSUMER_GROUP_DESCRIBE, 0)] {
        assert!(r.api_keys.iter().any(|k| k.api_key == key.0 && k.min_version == 0 && k.max_version == max), "{key:?}");
    }
    let f = r.finalized_features.iter().find(|f| f.name.as_str() == "group.version").expect("group.version");
    assert!(f.max_version_level >= 1);
    // Below v4 a supported range starting at 0 is left out, as Kafka does (KIP-1022).
    assert!(r.supported_features.iter().all(|f| f.name.as_str() != "group.version"));
    let r = expect_body!(h.call(c, RequestBody::ApiVersions(ApiVersionsRequest::default()), 4), ApiVersions);
    assert!(r.supported_features.iter().any(|f| f.name.as_str() == "group.version" && f.max_version >= 1));
}

// ---- version 1: regex subscriptions and client-made member ids (KIP-848, KIP-1082) ----------

/// A v1 heartbeat: the member id is the client's own, names and regex as given.
fn beat_v1(
    h: &mut Harness,
    c: ConnId,
    id: &str,
    epoch: i32,
    owned: Option<&Owned>,
    names: Option<&[&str]>,
    regex: Option<&str>,
) -> ConsumerGroupHeartbeatResponse {
    let mut req = hb_request(G, id, epoch, owned, names);
    req.subscribed_topic_regex = regex.map(KStr::from);
    expect_body!(h.call(c, RequestBody::ConsumerGroupHeartbeat(req), 1), ConsumerGroupHeartbeat)
}

/// A member that joined with a regex over v1 under its own id.
fn join_regex(h: &mut Harness, id: &str, names: Option<&[&str]>, regex: &str) -> M {
    let conn = h.connect();
    let r = beat_v1(h, conn, id, 0, Some(&Owned::new()), names, Some(regex));
    assert_eq!(code(&r), ErrorCode::NONE, "join: {:?}", r.error_message);
    assert_eq!(r.member_id.as_deref(), Some(id), "the coordinator keeps the client's member id");
    let mut m = M { conn, id: id.to_string(), epoch: r.member_epoch, owned: Owned::new(), instance: None };
    m.take(&r);
    m
}

fn delete_topic(h: &mut Harness, admin: ConnId, name: &str) {
    let req = kelp_core::codec::generated::delete_topics::DeleteTopicsRequest {
        topic_names: vec![name.into()],
        timeout_ms: 1000,
        ..Default::default()
    };
    let r = expect_body!(h.call(admin, RequestBody::DeleteTopics(req), 4), DeleteTopics);
    assert_eq!(r.responses[0].error_code, 0);
}

#[test]
fn a_regex_subscription_follows_topics_as_they_are_created_and_deleted() {
    let (mut h, admin, _) = setup(2);
    let eu = create_topic(&mut h, admin, "orders-eu", 2);
    create_topic(&mut h, admin, "payments", 2);
    // The regex must match the whole name: "xorders-a" and "orders-eu.dlq" stay out.
    create_topic(&mut h, admin, "xorders-a", 1);
    let mut a = join_regex(&mut h, "member-a", None, "orders-[a-z]+");
    settle(&mut h, &mut [&mut a]);
    assert_eq!(a.owned, all(eu, 2));
    create_topic(&mut h, admin, "orders-eu.dlq", 1);
    let us = create_topic(&mut h, admin, "orders-us", 3);
    let epoch = describe(&mut h, admin, G).group_epoch;
    settle(&mut h, &mut [&mut a]);
    assert_eq!(a.owned, Owned::from([(eu, (0..2).collect()), (us, (0..3).collect())]));
    assert!(describe(&mut h, admin, G).group_epoch > epoch, "a matching topic moves the group epoch");
    // A second member shares what the regex matched.
    let mut b = join_regex(&mut h, "member-b", None, "orders-[a-z]+");
    settle(&mut h, &mut [&mut a, &mut b]);
    disjoint(&[&a, &b]);
    assert_eq!(count(&a.owned) + count(&b.owned), 5);
    assert!(count(&a.owned).abs_diff(count(&b.owned)) <= 1);
    delete_topic(&mut h, admin, "orders-eu");
    settle(&mut h, &mut [&mut a, &mut b]);
    disjoint(&[&a, &b]);
    assert!(!a.owned.contains_key(&eu) && !b.owned.contains_key(&eu), "a deleted topic is revoked");
    assert_eq!(count(&a.owned) + count(&b.owned), 3);
    let d = describe(&mut h, admin, G);
    assert!(d.members.iter().all(|m| m.subscribed_topic_regex.as_deref() == Some("orders-[a-z]+")));
}

#[test]
fn names_and_a_regex_subscribe_together() {
    let (mut h, admin, t) = setup(2);
    let logs = create_topic(&mut h, admin, "logs-1", 1);
    create_topic(&mut h, admin, "metrics", 1);
    let mut a = join_regex(&mut h, "member-a", Some(&[T]), "logs-\\d+");
    settle(&mut h, &mut [&mut a]);
    assert_eq!(a.owned, Owned::from([(t, (0..2).collect()), (logs, BTreeSet::from([0]))]));
    // A later heartbeat that changes only the regex keeps the names.
    let r = beat_v1(&mut h, a.conn, "member-a", a.epoch, Some(&a.owned), None, Some("metrics"));
    assert_eq!(code(&r), ErrorCode::NONE);
    a.take(&r);
    settle(&mut h, &mut [&mut a]);
    assert!(a.owned.contains_key(&t) && !a.owned.contains_key(&logs) && count(&a.owned) == 3);
    // An empty regex subscribes to nothing: the names remain.
    let r = beat_v1(&mut h, a.conn, "member-a", a.epoch, Some(&a.owned), None, Some(""));
    a.take(&r);
    settle(&mut h, &mut [&mut a]);
    assert_eq!(a.owned, all(t, 2));
}

#[test]
fn an_invalid_regex_is_refused_with_invalid_regular_expression() {
    let (mut h, admin, _) = setup(2);
    let c = h.connect();
    // Unbalanced, a lookahead (RE2 has none) and a backreference (likewise).
    // `a)|(b` is invalid alone; wrapped for a whole-name match it would compile and match any
    // name starting with `a` or ending with `b`.
    for bad in ["orders-(", "(?=orders).*", "(a)\\1", "a)|(b"] {
        let r = beat_v1(&mut h, c, "member-a", 0, Some(&Owned::new()), None, Some(bad));
        assert_eq!(code(&r), ErrorCode::INVALID_REGULAR_EXPRESSION, "{bad}");
        let msg = r.error_message.clone().unwrap_or_default();
        assert!(msg.contains(bad), "{msg}");
    }
    // A refused first member leaves no group behind.
    assert_eq!(describe(&mut h, admin, G).error_code, ErrorCode::GROUP_ID_NOT_FOUND.0);
    // A member that is in keeps its subscription when a later regex is refused.
    let mut a = join_regex(&mut h, "member-a", Some(&[T]), "x");
    settle(&mut h, &mut [&mut a]);
    let r = beat_v1(&mut h, a.conn, "member-a", a.epoch, Some(&a.owned), None, Some("["));
    assert_eq!(code(&r), ErrorCode::INVALID_REGULAR_EXPRESSION);
    assert_eq!(describe(&mut h, admin, G).members[0].subscribed_topic_regex.as_deref(), Some("x"));
}

#[test]
fn version_1_needs_the_clients_member_id_and_names_or_a_regex() {
    let (mut h, _, _) = setup(2);
    let c = h.connect();
    let r = beat_v1(&mut h, c, "", 0, Some(&Owned::new()), Some(&[T]), None);
    assert_eq!(code(&r), ErrorCode::INVALID_REQUEST);
    assert_eq!(r.error_message.as_deref(), Some("MemberId can't be empty."));
    let r = beat_v1(&mut h, c, "m", 0, Some(&Owned::new()), None, None);
    assert_eq!(code(&r), ErrorCode::INVALID_REQUEST);
    assert_eq!(
        r.error_message.as_deref(),
        Some("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.")
    );
    // Version 0 still hands out ids.
    let a = M::join(&mut h, &[T]);
    assert!(!a.id.is_empty());
}

#[test]
fn a_regex_subscription_survives_a_restart() {
    let (mut h, admin, _) = setup(2);
    let x = create_topic(&mut h, admin, "orders-x", 2);
    let mut a = join_regex(&mut h, "member-a", None, "orders-.*");
    settle(&mut h, &mut [&mut a]);
    let before = describe(&mut h, admin, G);
    let mut h2 = h.restart(test_config());
    a.conn = h2.connect();
    let admin = h2.connect();
    let after = describe(&mut h2, admin, G);
    assert_eq!(after.members, before.members);
    // Before any heartbeat, the recovered group knows what its regex subscribes to: the
    // offsets of a matched topic cannot be deleted while the member is in.
    use kelp_core::codec::generated::offset_delete::{
        OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    let req = OffsetDeleteRequest {
        group_id: G.into(),
        topics: vec![OffsetDeleteRequestTopic {
            name: "orders-x".into(),
            partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
        }],
    };
    let r = expect_body!(h2.call(admin, RequestBody::OffsetDelete(req), 0), OffsetDelete);
    assert_eq!(r.topics[0].partitions[0].error_code, ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC.0);
    settle(&mut h2, &mut [&mut a]);
    assert_eq!(a.owned, all(x, 2));
    let y = create_topic(&mut h2, admin, "orders-y", 1);
    settle(&mut h2, &mut [&mut a]);
    assert_eq!(a.owned, Owned::from([(x, (0..2).collect()), (y, BTreeSet::from([0]))]));
}

// ---- group configs (the GROUP config resource) ------------------------------------------------

use kelp_core::codec::generated::describe_configs::{DescribeConfigsRequest, DescribeConfigsResource};
use kelp_core::codec::generated::incremental_alter_configs::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};

const GROUP_RESOURCE: i8 = 32;

/// Config names and values to set (`None`: delete).
type Settings<'a> = &'a [(&'a str, Option<&'a str>)];

/// The group's configs as DescribeConfigs lists them: name -> (value, source).
fn group_configs(h: &mut Harness, c: ConnId, group: &str) -> BTreeMap<String, (String, i8)> {
    let req = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: GROUP_RESOURCE,
            resource_name: group.into(),
            configuration_keys: None,
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::DescribeConfigs(req), 4), DescribeConfigs);
    assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
    r.results[0]
        .configs
        .iter()
        .map(|e| (e.name.to_string(), (e.value.as_deref().unwrap_or("").to_string(), e.config_source)))
        .collect()
}

/// Sets (or with `None` deletes) group configs; returns the result's code and message.
fn alter_group(h: &mut Harness, c: ConnId, group: &str, set: Settings<'_>) -> (ErrorCode, Option<String>) {
    let req = IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: GROUP_RESOURCE,
            resource_name: group.into(),
            configs: set
                .iter()
                .map(|(k, v)| AlterableConfig {
                    name: (*k).into(),
                    config_operation: if v.is_some() { 0 } else { 1 },
                    value: v.map(KStr::from),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::IncrementalAlterConfigs(req), 1), IncrementalAlterConfigs);
    (ErrorCode(r.responses[0].error_code), r.responses[0].error_message.as_ref().map(ToString::to_string))
}

#[test]
fn a_group_sets_its_own_session_timeout_and_heartbeat_interval() {
    let (mut h, admin, t) = setup(4);
    const DEFAULT: i8 = 5;
    const GROUP_CONFIG: i8 = 8;
    // Any group id has configs: the broker's.
    let d = group_configs(&mut h, admin, G);
    assert_eq!(d["consumer.session.timeout.ms"], ("45000".to_string(), DEFAULT));
    assert_eq!(d["consumer.heartbeat.interval.ms"], ("5000".to_string(), DEFAULT));
    // Set before the group exists.
    let set = [("consumer.session.timeout.ms", Some("50000")), ("consumer.heartbeat.interval.ms", Some("6000"))];
    assert_eq!(alter_group(&mut h, admin, G, &set).0, ErrorCode::NONE);
    let d = group_configs(&mut h, admin, G);
    assert_eq!(d["consumer.session.timeout.ms"], ("50000".to_string(), GROUP_CONFIG));
    assert_eq!(d["consumer.heartbeat.interval.ms"], ("6000".to_string(), GROUP_CONFIG));
    let mut a = M::join_as_interval(&mut h, &[T], 6000);
    let b = M::join_as_interval(&mut h, &[T], 6000);
    settle(&mut h, &mut [&mut a]);
    // B stays silent: fenced after 50 s, not the broker's 45 s.
    for _ in 0..8 {
        h.advance(ms(6000));
        a.beat(&mut h);
    }
    assert_eq!(describe(&mut h, admin, G).members.len(), 2, "48 s: B is still a member");
    h.advance(ms(2500));
    a.beat(&mut h);
    assert_eq!(describe(&mut h, admin, G).members.len(), 1, "50.5 s: B was fenced");
    assert_eq!(code(&b.beat_only(&mut h)), ErrorCode::UNKNOWN_MEMBER_ID);
    settle(&mut h, &mut [&mut a]);
    assert_eq!(a.owned, all(t, 4));
    // The configs survive a restart; a delete goes back to the broker's value.
    let mut h2 = h.restart(test_config());
    let admin = h2.connect();
    assert_eq!(group_configs(&mut h2, admin, G)["consumer.session.timeout.ms"].0, "50000");
    assert_eq!(alter_group(&mut h2, admin, G, &[("consumer.heartbeat.interval.ms", None)]).0, ErrorCode::NONE);
    assert_eq!(group_configs(&mut h2, admin, G)["consumer.heartbeat.interval.ms"], ("5000".to_string(), DEFAULT));
    a.conn = h2.connect();
    assert_eq!(a.beat(&mut h2).heartbeat_interval_ms, 5000);
}

#[test]
fn group_configs_out_of_bounds_or_unknown_are_refused() {
    let (mut h, admin, _) = setup(1);
    let cases: [(Settings<'_>, &str); 5] = [
        (
            &[("consumer.session.timeout.ms", Some("30000"))],
            "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms",
        ),
        (
            &[("consumer.session.timeout.ms", Some("90000"))],
            "consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms",
        ),
        (
            &[("consumer.heartbeat.interval.ms", Some("1000"))],
            "consumer.heartbeat.interval.ms must be greater than or equal to group.consumer.min.heartbeat.interval.ms",
        ),
        (&[("consumer.assignor", Some("range"))], "Unknown group config name: consumer.assignor"),
        (
            &[("consumer.session.timeout.ms", Some("soon"))],
            "Invalid value soon for configuration consumer.session.timeout.ms: Not a number of type INT",
        ),
    ];
    for (set, msg) in cases {
        let (code, got) = alter_group(&mut h, admin, G, set);
        assert_eq!((code, got.as_deref()), (ErrorCode::INVALID_CONFIG, Some(msg)));
    }
    // Nothing of a refused request was kept.
    assert_eq!(group_configs(&mut h, admin, G)["consumer.session.timeout.ms"].0, "45000");
}

#[test]
fn only_the_configured_assignors_are_served() {
    let cfg = Config { group_consumer_assignors: vec!["range"], ..test_config() };
    let (mut h, admin, _) = setup_with(cfg, 2);
    let c = h.connect();
    let mut req = hb_request(G, "", 0, Some(&Owned::new()), Some(&[T]));
    req.server_assignor = Some("uniform".into());
    let r = beat(&mut h, c, req);
    assert_eq!(code(&r), ErrorCode::UNSUPPORTED_ASSIGNOR);
    assert_eq!(
        r.error_message.as_deref(),
        Some("ServerAssignor uniform is not supported. Supported assignors: range.")
    );
    // A member that names none gets the first configured.
    M::join(&mut h, &[T]);
    assert_eq!(describe(&mut h, admin, G).assignor_name.as_str(), "range");
}

#[test]
fn a_regex_only_full_heartbeat_gets_its_assignment_back() {
    let (mut h, admin, _) = setup(2);
    let x = create_topic(&mut h, admin, "orders-x", 2);
    let mut a = join_regex(&mut h, "member-a", None, "orders-.*");
    settle(&mut h, &mut [&mut a]);
    // After an error a client sends everything again (rebalance timeout, subscription, owned):
    // the answer carries the assignment even though it did not change.
    let mut req = hb_request(G, "member-a", a.epoch, Some(&a.owned), None);
    req.rebalance_timeout_ms = 60_000;
    req.subscribed_topic_regex = Some("orders-.*".into());
    let r = expect_body!(h.call(a.conn, RequestBody::ConsumerGroupHeartbeat(req), 1), ConsumerGroupHeartbeat);
    assert_eq!(code(&r), ErrorCode::NONE);
    assert_eq!(to_owned(&r), Some(all(x, 2)));
}

#[test]
fn a_group_uses_at_most_256_different_regexes() {
    let (mut h, _, _) = setup(1);
    let c = h.connect();
    for i in 0..kelp_core::group::consumer::MAX_GROUP_REGEXES {
        let r = beat_v1(&mut h, c, &format!("m{i}"), 0, Some(&Owned::new()), None, Some(&format!("t{i}-.*")));
        assert_eq!(code(&r), ErrorCode::NONE, "{:?}", r.error_message);
    }
    let r = beat_v1(&mut h, c, "one-more", 0, Some(&Owned::new()), None, Some("another-.*"));
    assert_eq!(code(&r), ErrorCode::INVALID_REGULAR_EXPRESSION);
    // One the group already uses is fine.
    let r = beat_v1(&mut h, c, "same", 0, Some(&Owned::new()), None, Some("t7-.*"));
    assert_eq!(code(&r), ErrorCode::NONE);
}

#[test]
fn legacy_alter_configs_replaces_a_groups_whole_set() {
    use kelp_core::codec::generated::alter_configs::{AlterConfigsRequest, AlterConfigsResource, AlterableConfig};
    let (mut h, admin, _) = setup(1);
    let set = [("consumer.session.timeout.ms", Some("50000")), ("consumer.heartbeat.interval.ms", Some("6000"))];
    assert_eq!(alter_group(&mut h, admin, G, &set).0, ErrorCode::NONE);
    let req = AlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: GROUP_RESOURCE,
            resource_name: G.into(),
            configs: vec![AlterableConfig {
                name: "consumer.heartbeat.interval.ms".into(),
                value: Some("7000".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(admin, RequestBody::AlterConfigs(req), 2), AlterConfigs);
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
    let d = group_configs(&mut h, admin, G);
    assert_eq!(d["consumer.heartbeat.interval.ms"], ("7000".to_string(), 8));
    assert_eq!(d["consumer.session.timeout.ms"], ("45000".to_string(), 5), "the rest went back to the default");
}

#[test]
fn a_topic_deleted_during_a_revocation_is_revoked_at_once() {
    let (mut h, admin, t) = setup(4);
    let other = create_topic(&mut h, admin, "other", 2);
    let mut a = M::join(&mut h, &[T, "other"]);
    settle(&mut h, &mut [&mut a]);
    assert_eq!(count(&a.owned), 6);
    // B joins for T only: A keeps "other" (nobody else wants it) and is asked to give up part
    // of T, which it keeps holding (UNREVOKED).
    let mut b = M::join(&mut h, &[T]);
    let r = a.beat_only(&mut h);
    let asked = to_owned(&r).expect("a new assignment");
    assert!(count(&asked) < 6 && asked.contains_key(&other), "A is asked to revoke part of T: {asked:?}");
    // "other" is deleted before A acknowledges: A's next answer drops it at once, though A
    // still holds what it was asked to revoke.
    delete_topic(&mut h, admin, "other");
    let r = a.beat_only(&mut h);
    assert_eq!(code(&r), ErrorCode::NONE);
    let now = to_owned(&r).expect("the assignment changed");
    assert!(!now.contains_key(&other), "the deleted topic is revoked at once: {now:?}");
    a.owned = now;
    settle(&mut h, &mut [&mut a, &mut b]);
    disjoint(&[&a, &b]);
    assert_eq!(count(&a.owned) + count(&b.owned), 4);
    assert!(a.owned.keys().chain(b.owned.keys()).all(|k| *k == t));
}
