//! Scenario tests of committed offsets and group administration: OffsetCommit (generation and
//! member checks, simple consumers), OffsetFetch (single and multi-group, require_stable,
//! all partitions), OffsetDelete, DeleteGroups, ListGroups, DescribeGroups, and what survives
//! a restart.

use bytes::Bytes;
use kelp_core::ConnId;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::delete_groups::DeleteGroupsRequest;
use kelp_core::codec::generated::describe_groups::DescribeGroupsRequest;
use kelp_core::codec::generated::list_groups::ListGroupsRequest;
use kelp_core::codec::generated::offset_commit::OffsetCommitResponse;
use kelp_core::codec::generated::offset_delete::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kelp_core::codec::generated::offset_fetch::{OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchResponse};
use kelp_core::codec::{ApiKey, ErrorCode};
use kelp_core::io::StorageError;
use kelp_tests::expect_body;
use kelp_tests::harness::{
    Harness, commit_request, create_topic, join_request, ms, offset_fetch_request, subscription, sync_request,
    test_config,
};

fn codes(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

fn commit(
    h: &mut Harness,
    c: ConnId,
    group: &str,
    generation: i32,
    member: &str,
    o: &[(&str, i32, i64)],
    v: i16,
) -> Vec<i16> {
    codes(&expect_body!(h.call(c, commit_request(group, generation, member, o), v), OffsetCommit))
}

/// (partition, offset, metadata, error) of one topic's fetched offsets.
fn fetched(r: &OffsetFetchResponse, topic: &str) -> Vec<(i32, i64, String, i16)> {
    r.topics
        .iter()
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.as_deref().unwrap_or("null").to_string(),
                    p.error_code,
                )
            })
        })
        .collect()
}

fn fetch(h: &mut Harness, c: ConnId, group: &str, topics: Option<&[(&str, &[i32])]>) -> OffsetFetchResponse {
    expect_body!(h.call(c, offset_fetch_request(group, topics, false), 7), OffsetFetch)
}

/// One member, Stable at generation 1 in `group`, subscribed to `topics`. Returns its id.
fn stable_member(h: &mut Harness, c: ConnId, group: &str, topics: &[&str]) -> String {
    h.send(c, &join_request(group, "", None, &[("range", subscription(topics))]), 3);
    h.advance(ms(3000));
    let r = expect_body!(h.recv(c, ApiKey::JOIN_GROUP, 3).expect("joined").1, JoinGroup);
    let id = r.member_id.to_string();
    let s = expect_body!(h.call(c, sync_request(group, 1, &id, None, &[]), 3), SyncGroup);
    assert_eq!(s.error_code, 0);
    id
}

#[test]
fn commits_are_fetched_back_with_their_metadata_and_unknown_partitions_are_minus_one() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 3);
    assert_eq!(commit(&mut h, c, "simple", -1, "", &[("t", 0, 10), ("t", 2, 30)], 8), vec![0, 0]);
    let r = fetch(&mut h, c, "simple", Some(&[("t", &[0, 1, 2])]));
    assert_eq!(
        fetched(&r, "t"),
        vec![(0, 10, "meta-10".into(), 0), (1, -1, String::new(), 0), (2, 30, "meta-30".into(), 0)]
    );
    // topics = null: every committed partition.
    let r = fetch(&mut h, c, "simple", None);
    assert_eq!(fetched(&r, "t").iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(), vec![(0, 10), (2, 30)]);
    // A lower offset is an explicit reset and is taken.
    assert_eq!(commit(&mut h, c, "simple", -1, "", &[("t", 0, 5)], 8), vec![0]);
    assert_eq!(fetched(&fetch(&mut h, c, "simple", Some(&[("t", &[0])])), "t")[0].1, 5);
    assert_eq!(fetched(&fetch(&mut h, c, "nobody", Some(&[("t", &[0])])), "t")[0].1, -1);
}

#[test]
fn commit_checks_generation_member_topic_and_metadata_size() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let id = stable_member(&mut h, c, "g", &["t"]);
    assert_eq!(commit(&mut h, c, "g", 1, &id, &[("t", 0, 1)], 8), vec![0]);
    assert_eq!(commit(&mut h, c, "g", 2, &id, &[("t", 0, 1)], 8), vec![ErrorCode::ILLEGAL_GENERATION.0]);
    assert_eq!(commit(&mut h, c, "g", 1, "other", &[("t", 0, 1)], 8), vec![ErrorCode::UNKNOWN_MEMBER_ID.0]);
    assert_eq!(commit(&mut h, c, "g", -1, "", &[("t", 0, 1)], 8), vec![ErrorCode::UNKNOWN_MEMBER_ID.0], "not Empty");
    assert_eq!(commit(&mut h, c, "g", 1, &id, &[("nope", 0, 1), ("t", 9, 1)], 8), vec![3, 3]);
    assert_eq!(commit(&mut h, c, "absent", 3, "m", &[("t", 0, 1)], 8), vec![ErrorCode::ILLEGAL_GENERATION.0]);
    assert_eq!(commit(&mut h, c, "absent", 3, "m", &[("t", 0, 1)], 9), vec![ErrorCode::GROUP_ID_NOT_FOUND.0]);
    let mut big = commit_request("g", 1, &id, &[("t", 0, 1)]);
    if let RequestBody::OffsetCommit(m) = &mut big {
        m.topics[0].partitions[0].committed_metadata = Some("x".repeat(5000).into());
    }
    let r = expect_body!(h.call(c, big, 8), OffsetCommit);
    assert_eq!(codes(&r), vec![ErrorCode::OFFSET_METADATA_TOO_LARGE.0]);
    // A rebalance starts: the old generation is still current until the join completes.
    let d = h.connect();
    h.send(d, &join_request("g", "", None, &[("range", subscription(&["t"]))]), 3);
    assert_eq!(commit(&mut h, c, "g", 1, &id, &[("t", 0, 2)], 8), vec![0], "PreparingRebalance accepts");
}

#[test]
fn a_commit_answers_after_its_put_and_require_stable_sees_it_pending() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let other = h.connect();
    create_topic(&mut h, c, "t", 1);
    h.auto_storage = false;
    h.send(c, &commit_request("s", -1, "", &[("t", 0, 7)]), 8);
    assert!(h.recv(c, ApiKey::OFFSET_COMMIT, 8).is_none(), "waits for the Put");
    let stable = expect_body!(h.call(other, offset_fetch_request("s", Some(&[("t", &[0])]), true), 7), OffsetFetch);
    assert_eq!(fetched(&stable, "t")[0].3, ErrorCode::UNSTABLE_OFFSET_COMMIT.0);
    assert_eq!(fetched(&fetch(&mut h, other, "s", Some(&[("t", &[0])])), "t")[0].1, -1, "not visible before stored");
    h.run_one_storage();
    let r = expect_body!(h.recv(c, ApiKey::OFFSET_COMMIT, 8).expect("answered").1, OffsetCommit);
    assert_eq!(codes(&r), vec![0]);
    assert_eq!(fetched(&fetch(&mut h, other, "s", Some(&[("t", &[0])])), "t")[0].1, 7);
    // A failed Put: COORDINATOR_NOT_AVAILABLE and the old offset stays.
    h.send(c, &commit_request("s", -1, "", &[("t", 0, 9)]), 8);
    h.fail_one_storage(StorageError::Unavailable);
    let r = expect_body!(h.recv(c, ApiKey::OFFSET_COMMIT, 8).expect("answered").1, OffsetCommit);
    assert_eq!(codes(&r), vec![ErrorCode::COORDINATOR_NOT_AVAILABLE.0]);
    h.auto_storage = true;
    assert_eq!(fetched(&fetch(&mut h, other, "s", Some(&[("t", &[0])])), "t")[0].1, 7);
}

#[test]
fn offsets_and_empty_groups_survive_a_restart() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 2);
    let id = stable_member(&mut h, c, "g", &["t"]);
    assert_eq!(commit(&mut h, c, "g", 1, &id, &[("t", 0, 100), ("t", 1, 200)], 8), vec![0, 0]);
    assert_eq!(commit(&mut h, c, "simple", -1, "", &[("t", 1, 5)], 8), vec![0]);
    let mut h2 = h.restart(test_config());
    let c2 = h2.connect();
    let r = fetch(&mut h2, c2, "g", None);
    assert_eq!(fetched(&r, "t").iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(), vec![(0, 100), (1, 200)]);
    assert_eq!(fetched(&fetch(&mut h2, c2, "simple", None), "t")[0].1, 5);
    assert_eq!(fetched(&fetch(&mut h2, c2, "simple", None), "t")[0].2, "meta-5");
    // The member never comes back: its session ends, the group is Empty with its offsets.
    h2.advance(ms(10_000));
    let d = expect_body!(
        h2.call(
            c2,
            RequestBody::DescribeGroups(DescribeGroupsRequest { groups: vec!["g".into()], ..Default::default() }),
            5
        ),
        DescribeGroups
    );
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert_eq!(fetched(&fetch(&mut h2, c2, "g", Some(&[("t", &[1])])), "t")[0].1, 200);
}

#[test]
fn offset_fetch_v8_answers_several_groups() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    commit(&mut h, c, "a", -1, "", &[("t", 0, 1)], 8);
    commit(&mut h, c, "b", -1, "", &[("t", 0, 2)], 8);
    let req = OffsetFetchRequest {
        groups: ["a", "b", "c"]
            .iter()
            .map(|g| OffsetFetchRequestGroup { group_id: (*g).into(), topics: None, ..Default::default() })
            .collect(),
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::OffsetFetch(req), 8), OffsetFetch);
    let got: Vec<(String, Vec<i64>)> = r
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.committed_offset)).collect(),
            )
        })
        .collect();
    assert_eq!(got, vec![("a".into(), vec![1]), ("b".into(), vec![2]), ("c".into(), vec![])]);
}

#[test]
fn delete_groups_refuses_live_and_unknown_groups_and_forgets_offsets_for_good() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    stable_member(&mut h, c, "live", &["t"]);
    commit(&mut h, c, "gone", -1, "", &[("t", 0, 4)], 8);
    let req =
        DeleteGroupsRequest { groups_names: vec!["live".into(), "nope".into(), "gone".into()], ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::DeleteGroups(req), 2), DeleteGroups);
    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
    assert_eq!(codes, vec![ErrorCode::NON_EMPTY_GROUP.0, ErrorCode::GROUP_ID_NOT_FOUND.0, 0]);
    assert_eq!(fetched(&fetch(&mut h, c, "gone", Some(&[("t", &[0])])), "t")[0].1, -1);
    let mut h2 = h.restart(test_config());
    let c2 = h2.connect();
    assert_eq!(fetched(&fetch(&mut h2, c2, "gone", Some(&[("t", &[0])])), "t")[0].1, -1, "tombstones were stored");
    let l = expect_body!(h2.call(c2, RequestBody::ListGroups(ListGroupsRequest::default()), 5), ListGroups);
    assert_eq!(l.groups.iter().map(|g| g.group_id.to_string()).collect::<Vec<_>>(), vec!["live".to_string()]);
}

fn offset_delete(h: &mut Harness, c: ConnId, group: &str, topic: &str) -> (i16, Vec<i16>) {
    let req = OffsetDeleteRequest {
        group_id: group.into(),
        topics: vec![OffsetDeleteRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
        }],
    };
    let r = expect_body!(h.call(c, RequestBody::OffsetDelete(req), 0), OffsetDelete);
    (r.error_code, r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect())
}

#[test]
fn offset_delete_refuses_subscribed_topics_and_unknown_groups() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    create_topic(&mut h, c, "u", 1);
    let id = stable_member(&mut h, c, "g", &["t"]);
    commit(&mut h, c, "g", 1, &id, &[("t", 0, 1), ("u", 0, 2)], 8);
    assert_eq!(offset_delete(&mut h, c, "nope", "t"), (ErrorCode::GROUP_ID_NOT_FOUND.0, vec![]));
    assert_eq!(offset_delete(&mut h, c, "g", "t"), (0, vec![ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC.0]));
    assert_eq!(offset_delete(&mut h, c, "g", "u"), (0, vec![0]));
    assert_eq!(offset_delete(&mut h, c, "g", "missing"), (0, vec![ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0]));
    let r = fetch(&mut h, c, "g", None);
    assert_eq!(fetched(&r, "u"), vec![]);
    assert_eq!(fetched(&r, "t").len(), 1);
    // A group of another protocol type that is not empty cannot have offsets deleted.
    let d = h.connect();
    let mut j = join_request("conn", "", None, &[("p", Bytes::new())]);
    if let RequestBody::JoinGroup(x) = &mut j {
        x.protocol_type = "connect".into();
    }
    h.send(d, &j, 3);
    assert_eq!(offset_delete(&mut h, c, "conn", "t").0, ErrorCode::NON_EMPTY_GROUP.0);
}

#[test]
fn list_and_describe_groups_with_filters() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    create_topic(&mut h, c, "t", 1);
    let id = stable_member(&mut h, c, "g", &["t"]);
    commit(&mut h, c, "e", -1, "", &[("t", 0, 1)], 8);
    let list = |h: &mut Harness, states: &[&str], types: &[&str], v: i16| -> Vec<(String, String)> {
        let req = ListGroupsRequest {
            states_filter: states.iter().map(|s| (*s).into()).collect(),
            types_filter: types.iter().map(|s| (*s).into()).collect(),
            ..Default::default()
        };
        expect_body!(h.call(c, RequestBody::ListGroups(req), v), ListGroups)
            .groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
            .collect()
    };
    assert_eq!(list(&mut h, &[], &[], 5), vec![("e".into(), "Empty".into()), ("g".into(), "Stable".into())]);
    assert_eq!(list(&mut h, &["stable"], &[], 4), vec![("g".into(), "Stable".into())]);
    assert_eq!(list(&mut h, &[], &["consumer"], 5), vec![]);
    assert_eq!(list(&mut h, &[], &["Classic"], 5).len(), 2);
    let req = DescribeGroupsRequest {
        groups: vec!["g".into(), "x".into()],
        include_authorized_operations: true,
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::DescribeGroups(req), 5), DescribeGroups);
    let g = &r.groups[0];
    assert_eq!(
        (g.group_state.as_str(), g.protocol_type.as_str(), g.protocol_data.as_str()),
        ("Stable", "consumer", "range")
    );
    assert_eq!(g.members[0].member_id.as_str(), id);
    assert_eq!(g.members[0].member_metadata, subscription(&["t"]));
    assert_ne!(g.authorized_operations, i32::MIN);
    assert_eq!(r.groups[1].group_state.as_str(), "Dead", "v5: an unknown group is described as Dead");
    let req =
        DescribeGroupsRequest { groups: vec!["x".into()], include_authorized_operations: false, ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::DescribeGroups(req), 6), DescribeGroups);
    assert_eq!(r.groups[0].error_code, ErrorCode::GROUP_ID_NOT_FOUND.0);
}
