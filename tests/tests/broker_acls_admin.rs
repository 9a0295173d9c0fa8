//! The ACL matrix of topic administration (CreateTopics, DeleteTopics, CreatePartitions,
//! DeleteRecords, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs), transactions
//! (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions,
//! ListTransactions) and SCRAM credentials (DescribeUserScramCredentials,
//! AlterUserScramCredentials), with the error codes Kafka's broker answers.
//!
//! Each API is tried with no ACL, with each binding it needs missing, with the bindings as
//! LITERAL, PREFIXED and for `User:*` ALLOWs, with a DENY beside the ALLOWs, as the super user,
//! and with `allow.everyone.if.no.acl.found` and no binding on its resources. Then what users
//! rely on beyond the matrix: which resources of a request are served, and what a refused
//! principal does not learn.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::add_offsets_to_txn::AddOffsetsToTxnRequest;
use kelp_core::codec::generated::add_partitions_to_txn::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kelp_core::codec::generated::alter_configs::{AlterConfigsRequest, AlterConfigsResource, AlterableConfig};
use kelp_core::codec::generated::alter_user_scram_credentials::{
    AlterUserScramCredentialsRequest, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kelp_core::codec::generated::create_partitions::{CreatePartitionsRequest, CreatePartitionsTopic};
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreatableTopicResult, CreateTopicsRequest};
use kelp_core::codec::generated::delete_records::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic};
use kelp_core::codec::generated::delete_topics::{DeletableTopicResult, DeleteTopicState, DeleteTopicsRequest};
use kelp_core::codec::generated::describe_configs::{DescribeConfigsRequest, DescribeConfigsResource};
use kelp_core::codec::generated::describe_transactions::{DescribeTransactionsRequest, TransactionState};
use kelp_core::codec::generated::describe_user_scram_credentials::{DescribeUserScramCredentialsRequest, UserName};
use kelp_core::codec::generated::end_txn::EndTxnRequest;
use kelp_core::codec::generated::incremental_alter_configs::{
    AlterConfigsResource as IncrementalResource, AlterableConfig as IncrementalConfig, IncrementalAlterConfigsRequest,
};
use kelp_core::codec::generated::init_producer_id::InitProducerIdRequest;
use kelp_core::codec::generated::list_transactions::ListTransactionsRequest;
use kelp_core::codec::generated::txn_offset_commit::{
    TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic, TxnOffsetCommitResponse,
};
use kelp_core::codec::{ErrorCode, KStr, Uuid};
use kelp_core::security::acl::{CLUSTER_NAME, Operation, PatternType, Permission, ResourceType};
use kelp_core::{Config, ConnId};
use kelp_tests::acls::{Grant, acl_config, allow, as_user, grant};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, create_topic};

const ALICE: &str = "User:alice";
/// The topic, transactional id and group the requests name; all start with [`PREFIX`].
const TOPIC: &str = "acl-t";
const NEW_TOPIC: &str = "acl-new";
const TXN: &str = "acl-tx";
const GROUP: &str = "acl-g";
const PREFIX: &str = "acl-";
/// Config resource types.
const TOPIC_RESOURCE: i8 = 2;
const BROKER_RESOURCE: i8 = 4;
const GROUP_RESOURCE: i8 = 32;

const NONE: i16 = ErrorCode::NONE.0;
const TOPIC_AUTH: i16 = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0;
const GROUP_AUTH: i16 = ErrorCode::GROUP_AUTHORIZATION_FAILED.0;
const CLUSTER_AUTH: i16 = ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0;
const TXN_AUTH: i16 = ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED.0;

/// A binding an API needs, and the error its absence gets.
#[derive(Clone, Copy, Debug)]
struct Need {
    rt: ResourceType,
    name: &'static str,
    op: Operation,
    code: i16,
}

fn need(rt: ResourceType, name: &'static str, op: Operation, code: i16) -> Need {
    Need { rt, name, op, code }
}

/// What a probe works with: the producer the super user's InitProducerId gave.
#[derive(Clone, Copy, Debug, Default)]
struct Ctx {
    producer: (i64, i16),
}

/// One API of the matrix.
struct Api {
    name: &'static str,
    /// The bindings it needs, in the order Kafka checks them (the first missing one decides).
    needs: Vec<Need>,
    /// Prepares the broker, as the super user.
    setup: fn(&mut Harness) -> Ctx,
    /// Sends the request on a connection; the error code users look at.
    probe: fn(&mut Harness, ConnId, Ctx) -> i16,
    /// The code when served (NONE, but for what kelp refuses for other reasons).
    served: i16,
}

/// The outcome of `api` for `user` after `grants`, on a fresh broker with `config`.
fn outcome(api: &Api, config: Config, grants: &[Grant<'_>], user: &str) -> i16 {
    let mut h = Harness::new(config);
    let ctx = (api.setup)(&mut h);
    if !grants.is_empty() {
        grant(&mut h, grants);
    }
    let c = as_user(&mut h, user);
    (api.probe)(&mut h, c, ctx)
}

/// `n`'s binding for `principal` as `pattern` (the cluster has only its literal name).
fn binding(n: &Need, pattern: PatternType, principal: &'static str, perm: Permission) -> Grant<'static> {
    let literal = pattern == PatternType::LITERAL || n.rt == ResourceType::CLUSTER;
    let (name, pattern) = if literal { (n.name, PatternType::LITERAL) } else { (PREFIX, pattern) };
    (n.rt, name, pattern, principal, n.op, perm)
}

fn allows(needs: &[Need], pattern: PatternType, principal: &'static str) -> Vec<Grant<'static>> {
    needs.iter().map(|n| binding(n, pattern, principal, Permission::ALLOW)).collect()
}

/// Runs every case of the matrix for `api`.
fn matrix(api: &Api) {
    let name = api.name;
    let first = api.needs[0];
    assert_eq!(outcome(api, acl_config(), &[], "alice"), first.code, "{name}: no ACL");
    for (i, missing) in api.needs.iter().enumerate() {
        let mut others = api.needs.clone();
        others.remove(i);
        let grants = allows(&others, PatternType::LITERAL, ALICE);
        assert_eq!(outcome(api, acl_config(), &grants, "alice"), missing.code, "{name}: without {missing:?}");
    }
    for pattern in [PatternType::LITERAL, PatternType::PREFIXED] {
        let grants = allows(&api.needs, pattern, ALICE);
        assert_eq!(outcome(api, acl_config(), &grants, "alice"), api.served, "{name}: ALLOW {pattern:?}");
    }
    let everyone = allows(&api.needs, PatternType::LITERAL, "User:*");
    assert_eq!(outcome(api, acl_config(), &everyone, "alice"), api.served, "{name}: ALLOW User:*");
    let mut denied = allows(&api.needs, PatternType::LITERAL, ALICE);
    denied.push(binding(&first, PatternType::LITERAL, ALICE, Permission::DENY));
    assert_eq!(outcome(api, acl_config(), &denied, "alice"), first.code, "{name}: DENY beside ALLOW");
    assert_eq!(outcome(api, acl_config(), &[], "admin"), api.served, "{name}: super user");
    let mut open = acl_config();
    open.allow_everyone_if_no_acl_found = true;
    let elsewhere = [allow(ResourceType::TOPIC, "elsewhere", "User:bob", Operation::READ)];
    assert_eq!(outcome(api, open, &elsewhere, "alice"), api.served, "{name}: no ACL on its resources, open");
}

// ---- setup ---------------------------------------------------------------------------------

fn admin(h: &mut Harness) -> ConnId {
    as_user(h, "admin")
}

fn with_topic(h: &mut Harness) -> Ctx {
    let a = admin(h);
    create_topic(h, a, TOPIC, 3);
    Ctx::default()
}

fn nothing(_: &mut Harness) -> Ctx {
    Ctx::default()
}

fn init(h: &mut Harness, c: ConnId) -> (i64, i16) {
    let req = InitProducerIdRequest {
        transactional_id: Some(KStr::from(TXN)),
        transaction_timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::InitProducerId(req), 5), InitProducerId);
    assert_eq!(r.error_code, NONE);
    (r.producer_id, r.producer_epoch)
}

/// A topic and a transactional id with no transaction.
fn with_producer(h: &mut Harness) -> Ctx {
    with_topic(h);
    let a = admin(h);
    Ctx { producer: init(h, a) }
}

/// A transaction with `TOPIC`'s partition 0 in it.
fn with_partition_in_txn(h: &mut Harness) -> Ctx {
    let ctx = with_producer(h);
    let a = admin(h);
    assert_eq!(add_partitions(h, a, ctx, &[(TOPIC, &[0])]), vec![vec![NONE]]);
    ctx
}

/// A transaction with `GROUP`'s offsets in it.
fn with_group_in_txn(h: &mut Harness) -> Ctx {
    let ctx = with_producer(h);
    let a = admin(h);
    assert_eq!(add_offsets(h, a, ctx), NONE);
    ctx
}

// ---- requests --------------------------------------------------------------------------------

fn create_topics(h: &mut Harness, c: ConnId, name: &str) -> CreatableTopicResult {
    let topic = CreatableTopic { name: name.into(), num_partitions: 3, replication_factor: -1, ..Default::default() };
    let req = CreateTopicsRequest { topics: vec![topic], timeout_ms: 1000, ..Default::default() };
    expect_body!(h.call(c, RequestBody::CreateTopics(req), 7), CreateTopics).topics.remove(0)
}

fn delete_topic(h: &mut Harness, c: ConnId, name: Option<&str>, id: Uuid) -> DeletableTopicResult {
    let req = DeleteTopicsRequest {
        topics: vec![DeleteTopicState { name: name.map(KStr::from), topic_id: id, ..Default::default() }],
        timeout_ms: 1000,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::DeleteTopics(req), 6), DeleteTopics).responses.remove(0)
}

fn create_partitions(h: &mut Harness, c: ConnId, _: Ctx) -> i16 {
    let req = CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic { name: TOPIC.into(), count: 4, ..Default::default() }],
        timeout_ms: 1000,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::CreatePartitions(req), 3), CreatePartitions).results[0].error_code
}

/// DeleteRecords up to the high watermark of partition 0 of each topic: the codes, per topic.
fn delete_records(h: &mut Harness, c: ConnId, topics: &[&str]) -> Vec<i16> {
    let topics = topics
        .iter()
        .map(|t| DeleteRecordsTopic {
            name: (*t).into(),
            partitions: vec![DeleteRecordsPartition { partition_index: 0, offset: -1, ..Default::default() }],
            ..Default::default()
        })
        .collect();
    let req = DeleteRecordsRequest { topics, timeout_ms: 1000, ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::DeleteRecords(req), 2), DeleteRecords);
    r.topics.iter().map(|t| t.partitions[0].error_code).collect()
}

/// DescribeConfigs of `resources`: per resource, its code and how many configs came back.
fn describe_configs(h: &mut Harness, c: ConnId, resources: &[(i8, &str)]) -> Vec<(i16, usize)> {
    let resources = resources
        .iter()
        .map(|(t, n)| DescribeConfigsResource {
            resource_type: *t,
            resource_name: (*n).into(),
            configuration_keys: None,
            ..Default::default()
        })
        .collect();
    let req = DescribeConfigsRequest { resources, ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::DescribeConfigs(req), 4), DescribeConfigs);
    r.results.iter().map(|x| (x.error_code, x.configs.len())).collect()
}

fn broker_name() -> String {
    acl_config().node_id.to_string()
}

/// A config each resource type takes.
fn config_for(rtype: i8) -> (&'static str, &'static str) {
    match rtype {
        GROUP_RESOURCE => ("consumer.session.timeout.ms", "50000"),
        _ => ("retention.ms", "1000"),
    }
}

fn alter_configs(h: &mut Harness, c: ConnId, rtype: i8, name: &str) -> i16 {
    let (k, v) = config_for(rtype);
    let req = AlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: rtype,
            resource_name: name.into(),
            configs: vec![AlterableConfig { name: k.into(), value: Some(v.into()), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::AlterConfigs(req), 2), AlterConfigs).responses[0].error_code
}

fn incremental_alter_configs(h: &mut Harness, c: ConnId, rtype: i8, name: &str) -> i16 {
    let (k, v) = config_for(rtype);
    let req = IncrementalAlterConfigsRequest {
        resources: vec![IncrementalResource {
            resource_type: rtype,
            resource_name: name.into(),
            configs: vec![IncrementalConfig {
                name: k.into(),
                config_operation: 0,
                value: Some(v.into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::IncrementalAlterConfigs(req), 1), IncrementalAlterConfigs);
    r.responses[0].error_code
}

fn add_partitions_topics(topics: &[(&str, &[i32])]) -> Vec<AddPartitionsToTxnTopic> {
    topics
        .iter()
        .map(|(t, ps)| AddPartitionsToTxnTopic { name: (*t).into(), partitions: ps.to_vec(), ..Default::default() })
        .collect()
}

/// AddPartitionsToTxn v3: the codes, per topic and partition.
fn add_partitions(h: &mut Harness, c: ConnId, ctx: Ctx, topics: &[(&str, &[i32])]) -> Vec<Vec<i16>> {
    let req = AddPartitionsToTxnRequest {
        v3_and_below_transactional_id: TXN.into(),
        v3_and_below_producer_id: ctx.producer.0,
        v3_and_below_producer_epoch: ctx.producer.1,
        v3_and_below_topics: add_partitions_topics(topics),
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::AddPartitionsToTxn(req), 3), AddPartitionsToTxn);
    r.results_by_topic_v3_and_below
        .iter()
        .map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code).collect())
        .collect()
}

fn add_offsets(h: &mut Harness, c: ConnId, ctx: Ctx) -> i16 {
    let req = AddOffsetsToTxnRequest {
        transactional_id: TXN.into(),
        producer_id: ctx.producer.0,
        producer_epoch: ctx.producer.1,
        group_id: GROUP.into(),
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::AddOffsetsToTxn(req), 3), AddOffsetsToTxn).error_code
}

fn txn_offset_commit(h: &mut Harness, c: ConnId, ctx: Ctx, topics: &[&str]) -> TxnOffsetCommitResponse {
    let topics = topics
        .iter()
        .map(|t| TxnOffsetCommitRequestTopic {
            name: (*t).into(),
            partitions: vec![TxnOffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 1,
                committed_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let req = TxnOffsetCommitRequest {
        transactional_id: TXN.into(),
        group_id: GROUP.into(),
        producer_id: ctx.producer.0,
        producer_epoch: ctx.producer.1,
        generation_id: -1,
        topics,
        ..Default::default()
    };
    expect_body!(h.call(c, RequestBody::TxnOffsetCommit(req), 3), TxnOffsetCommit)
}

fn describe_transaction(h: &mut Harness, c: ConnId) -> TransactionState {
    let req = DescribeTransactionsRequest { transactional_ids: vec![TXN.into()], ..Default::default() };
    expect_body!(h.call(c, RequestBody::DescribeTransactions(req), 0), DescribeTransactions)
        .transaction_states
        .remove(0)
}

/// Codes per topic and partition of `r`, in answer order.
fn commit_codes(r: &TxnOffsetCommitResponse) -> Vec<(String, i16)> {
    r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.error_code))).collect()
}

fn upsert(name: &str) -> ScramCredentialUpsertion {
    ScramCredentialUpsertion {
        name: name.into(),
        mechanism: 1, // SCRAM-SHA-256
        iterations: 4096,
        salt: Bytes::from_static(b"salt"),
        salted_password: Bytes::from(vec![7u8; 32]),
        ..Default::default()
    }
}

// ---- the matrix --------------------------------------------------------------------------------

#[test]
fn create_topics_matrix() {
    matrix(&Api {
        name: "CreateTopics",
        needs: vec![need(ResourceType::TOPIC, NEW_TOPIC, Operation::CREATE, TOPIC_AUTH)],
        setup: nothing,
        probe: |h, c, _| create_topics(h, c, NEW_TOPIC).error_code,
        served: NONE,
    });
}

#[test]
fn delete_topics_matrix() {
    matrix(&Api {
        name: "DeleteTopics",
        needs: vec![need(ResourceType::TOPIC, TOPIC, Operation::DELETE, TOPIC_AUTH)],
        setup: with_topic,
        probe: |h, c, _| delete_topic(h, c, Some(TOPIC), Uuid::ZERO).error_code,
        served: NONE,
    });
}

#[test]
fn create_partitions_matrix() {
    matrix(&Api {
        name: "CreatePartitions",
        needs: vec![need(ResourceType::TOPIC, TOPIC, Operation::ALTER, TOPIC_AUTH)],
        setup: with_topic,
        probe: create_partitions,
        served: NONE,
    });
}

#[test]
fn delete_records_matrix() {
    matrix(&Api {
        name: "DeleteRecords",
        needs: vec![need(ResourceType::TOPIC, TOPIC, Operation::DELETE, TOPIC_AUTH)],
        setup: with_topic,
        probe: |h, c, _| delete_records(h, c, &[TOPIC])[0],
        served: NONE,
    });
}

#[test]
fn describe_configs_matrix() {
    matrix(&Api {
        name: "DescribeConfigs topic",
        needs: vec![need(ResourceType::TOPIC, TOPIC, Operation::DESCRIBE_CONFIGS, TOPIC_AUTH)],
        setup: with_topic,
        probe: |h, c, _| describe_configs(h, c, &[(TOPIC_RESOURCE, TOPIC)])[0].0,
        served: NONE,
    });
    matrix(&Api {
        name: "DescribeConfigs broker",
        needs: vec![need(ResourceType::CLUSTER, CLUSTER_NAME, Operation::DESCRIBE_CONFIGS, CLUSTER_AUTH)],
        setup: nothing,
        probe: |h, c, _| describe_configs(h, c, &[(BROKER_RESOURCE, &broker_name())])[0].0,
        served: NONE,
    });
    matrix(&Api {
        name: "DescribeConfigs group",
        needs: vec![need(ResourceType::GROUP, GROUP, Operation::DESCRIBE_CONFIGS, GROUP_AUTH)],
        setup: nothing,
        probe: |h, c, _| describe_configs(h, c, &[(GROUP_RESOURCE, GROUP)])[0].0,
        served: NONE,
    });
}

#[test]
fn alter_configs_matrix() {
    matrix(&Api {
        name: "AlterConfigs topic",
        needs: vec![need(ResourceType::TOPIC, TOPIC, Operation::ALTER_CONFIGS, TOPIC_AUTH)],
        setup: with_topic,
        probe: |h, c, _| alter_configs(h, c, TOPIC_RESOURCE, TOPIC),
        served: NONE,
    });
    matrix(&Api {
        name: "AlterConfigs broker",
        needs: vec![need(ResourceType::CLUSTER, CLUSTER_NAME, Operation::ALTER_CONFIGS, CLUSTER_AUTH)],
        setup: nothing,
        probe: |h, c, _| alter_configs(h, c, BROKER_RESOURCE, &broker_name()),
        // Authorized, then refused: kelp's broker configs are read-only.
        served: ErrorCode::INVALID_REQUEST.0,
    });
    matrix(&Api {
        name: "AlterConfigs group",
        needs: vec![need(ResourceType::GROUP, GROUP, Operation::ALTER_CONFIGS, GROUP_AUTH)],
        setup: nothing,
        probe: |h, c, _| alter_configs(h, c, GROUP_RESOURCE, GROUP),
        served: NONE,
    });
}

#[test]
fn incremental_alter_configs_matrix() {
    matrix(&Api {
        name: "IncrementalAlterConfigs topic",
        needs: vec![need(ResourceType::TOPIC, TOPIC, Operation::ALTER_CONFIGS, TOPIC_AUTH)],
        setup: with_topic,
        probe: |h, c, _| incremental_alter_configs(h, c, TOPIC_RESOURCE, TOPIC),
        served: NONE,
    });
    matrix(&Api {
        name: "IncrementalAlterConfigs broker",
        needs: vec![need(ResourceType::CLUSTER, CLUSTER_NAME, Operation::ALTER_CONFIGS, CLUSTER_AUTH)],
        setup: nothing,
        probe: |h, c, _| incremental_alter_configs(h, c, BROKER_RESOURCE, &broker_name()),
        served: ErrorCode::INVALID_REQUEST.0,
    });
    matrix(&Api {
        name: "IncrementalAlterConfigs group",
        needs: vec![need(ResourceType::GROUP, GROUP, Operation::ALTER_CONFIGS, GROUP_AUTH)],
        setup: nothing,
        probe: |h, c, _| incremental_alter_configs(h, c, GROUP_RESOURCE, GROUP),
        served: NONE,
    });
}

#[test]
fn add_partitions_to_txn_matrix() {
    matrix(&Api {
        name: "AddPartitionsToTxn v3",
        needs: vec![
            need(ResourceType::TRANSACTIONAL_ID, TXN, Operation::WRITE, TXN_AUTH),
            need(ResourceType::TOPIC, TOPIC, Operation::WRITE, TOPIC_AUTH),
        ],
        setup: with_producer,
        probe: |h, c, ctx| add_partitions(h, c, ctx, &[(TOPIC, &[0])])[0][0],
        served: NONE,
    });
    // v4+ comes from brokers: Kafka asks CLUSTER_ACTION, and answers a refusal at the top.
    matrix(&Api {
        name: "AddPartitionsToTxn v4",
        needs: vec![need(ResourceType::CLUSTER, CLUSTER_NAME, Operation::CLUSTER_ACTION, CLUSTER_AUTH)],
        setup: with_partition_in_txn,
        probe: |h, c, ctx| {
            let req = AddPartitionsToTxnRequest {
                transactions: vec![AddPartitionsToTxnTransaction {
                    transactional_id: TXN.into(),
                    producer_id: ctx.producer.0,
                    producer_epoch: ctx.producer.1,
                    verify_only: true,
                    topics: add_partitions_topics(&[(TOPIC, &[0])]),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let r = expect_body!(h.call(c, RequestBody::AddPartitionsToTxn(req), 4), AddPartitionsToTxn);
            if r.error_code == NONE {
                assert_eq!(
                    r.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code,
                    0
                );
            } else {
                assert!(r.results_by_transaction.is_empty());
            }
            r.error_code
        },
        served: NONE,
    });
}

#[test]
fn add_offsets_to_txn_matrix() {
    matrix(&Api {
        name: "AddOffsetsToTxn",
        needs: vec![
            need(ResourceType::TRANSACTIONAL_ID, TXN, Operation::WRITE, TXN_AUTH),
            need(ResourceType::GROUP, GROUP, Operation::READ, GROUP_AUTH),
        ],
        setup: with_producer,
        probe: add_offsets,
        served: NONE,
    });
}

#[test]
fn end_txn_matrix() {
    matrix(&Api {
        name: "EndTxn",
        needs: vec![need(ResourceType::TRANSACTIONAL_ID, TXN, Operation::WRITE, TXN_AUTH)],
        setup: with_partition_in_txn,
        probe: |h, c, ctx| {
            let req = EndTxnRequest {
                transactional_id: TXN.into(),
                producer_id: ctx.producer.0,
                producer_epoch: ctx.producer.1,
                committed: false,
                ..Default::default()
            };
            expect_body!(h.call(c, RequestBody::EndTxn(req), 3), EndTxn).error_code
        },
        served: NONE,
    });
}

#[test]
fn txn_offset_commit_matrix() {
    matrix(&Api {
        name: "TxnOffsetCommit",
        needs: vec![
            need(ResourceType::TRANSACTIONAL_ID, TXN, Operation::WRITE, TXN_AUTH),
            need(ResourceType::GROUP, GROUP, Operation::READ, GROUP_AUTH),
            need(ResourceType::TOPIC, TOPIC, Operation::READ, TOPIC_AUTH),
        ],
        setup: with_group_in_txn,
        probe: |h, c, ctx| txn_offset_commit(h, c, ctx, &[TOPIC]).topics[0].partitions[0].error_code,
        served: NONE,
    });
}

#[test]
fn describe_transactions_matrix() {
    matrix(&Api {
        name: "DescribeTransactions",
        needs: vec![need(ResourceType::TRANSACTIONAL_ID, TXN, Operation::DESCRIBE, TXN_AUTH)],
        setup: with_partition_in_txn,
        probe: |h, c, _| describe_transaction(h, c).error_code,
        served: NONE,
    });
}

#[test]
fn list_transactions_matrix() {
    matrix(&Api {
        name: "ListTransactions",
        // Not an error in the answer: an id the principal may not describe is not listed.
        needs: vec![need(ResourceType::TRANSACTIONAL_ID, TXN, Operation::DESCRIBE, TXN_AUTH)],
        setup: with_partition_in_txn,
        probe: |h, c, _| {
            let req = ListTransactionsRequest { duration_filter: -1, ..Default::default() };
            let r = expect_body!(h.call(c, RequestBody::ListTransactions(req), 1), ListTransactions);
            assert_eq!(r.error_code, NONE);
            if r.transaction_states.iter().any(|s| s.transactional_id.as_str() == TXN) { NONE } else { TXN_AUTH }
        },
        served: NONE,
    });
}

#[test]
fn describe_user_scram_credentials_matrix() {
    matrix(&Api {
        name: "DescribeUserScramCredentials",
        needs: vec![need(ResourceType::CLUSTER, CLUSTER_NAME, Operation::DESCRIBE, CLUSTER_AUTH)],
        setup: nothing,
        probe: |h, c, _| {
            let req = DescribeUserScramCredentialsRequest { users: None, ..Default::default() };
            expect_body!(h.call(c, RequestBody::DescribeUserScramCredentials(req), 0), DescribeUserScramCredentials)
                .error_code
        },
        served: NONE,
    });
}

#[test]
fn alter_user_scram_credentials_matrix() {
    matrix(&Api {
        name: "AlterUserScramCredentials",
        needs: vec![need(ResourceType::CLUSTER, CLUSTER_NAME, Operation::ALTER, CLUSTER_AUTH)],
        setup: nothing,
        probe: |h, c, _| {
            let req = AlterUserScramCredentialsRequest { upsertions: vec![upsert("bob")], ..Default::default() };
            expect_body!(h.call(c, RequestBody::AlterUserScramCredentials(req), 0), AlterUserScramCredentials).results
                [0]
            .error_code
        },
        served: NONE,
    });
}

// ---- beyond the matrix -------------------------------------------------------------------------

/// A broker with the ACLs on, `grants` made; returns alice's connection and the super user's.
fn broker(grants: &[Grant<'_>]) -> (Harness, ConnId, ConnId) {
    let mut h = Harness::new(acl_config());
    if !grants.is_empty() {
        grant(&mut h, grants);
    }
    let alice = as_user(&mut h, "alice");
    let a = admin(&mut h);
    (h, alice, a)
}

#[test]
fn create_topics_reports_configs_only_to_who_may_describe_them() {
    let create = (ResourceType::TOPIC, PREFIX, PatternType::PREFIXED, ALICE, Operation::CREATE, Permission::ALLOW);
    let (mut h, alice, _) = broker(&[create]);
    let r = create_topics(&mut h, alice, "acl-one");
    assert_eq!((r.error_code, r.topic_config_error_code), (NONE, TOPIC_AUTH));
    assert_eq!((r.num_partitions, r.replication_factor), (-1, -1));
    assert!(r.configs.unwrap_or_default().is_empty(), "no configs");
    assert_ne!(r.topic_id, Uuid::ZERO, "the topic id is told");

    grant(&mut h, &[allow(ResourceType::TOPIC, "acl-two", ALICE, Operation::DESCRIBE_CONFIGS)]);
    let r = create_topics(&mut h, alice, "acl-two");
    assert_eq!((r.error_code, r.topic_config_error_code, r.num_partitions), (NONE, NONE, 3));
    assert!(r.configs.is_some_and(|c| !c.is_empty()));
}

#[test]
fn create_on_the_cluster_creates_any_topic() {
    let (mut h, alice, _) = broker(&[allow(ResourceType::CLUSTER, CLUSTER_NAME, ALICE, Operation::CREATE)]);
    assert_eq!(create_topics(&mut h, alice, "anything").error_code, NONE);
    // Kafka: a duplicate name is refused before authorization.
    let twice = CreatableTopic { name: "dup".into(), num_partitions: 1, replication_factor: -1, ..Default::default() };
    let req = CreateTopicsRequest { topics: vec![twice.clone(), twice], timeout_ms: 1000, ..Default::default() };
    let r = expect_body!(h.call(alice, RequestBody::CreateTopics(req), 7), CreateTopics);
    assert_eq!(r.topics[0].error_code, ErrorCode::INVALID_REQUEST.0);
}

#[test]
fn delete_topics_does_not_tell_what_exists() {
    let (mut h, alice, a) = broker(&[allow(ResourceType::TOPIC, "seen", ALICE, Operation::DESCRIBE)]);
    let hidden = create_topic(&mut h, a, TOPIC, 1);
    let seen = create_topic(&mut h, a, "seen", 1);
    // By name: an existing and an absent topic look alike without DESCRIBE.
    assert_eq!(delete_topic(&mut h, alice, Some(TOPIC), Uuid::ZERO).error_code, TOPIC_AUTH);
    assert_eq!(delete_topic(&mut h, alice, Some("acl-absent"), Uuid::ZERO).error_code, TOPIC_AUTH);
    // With DESCRIBE, an absent topic is told absent, a present one refused.
    grant(&mut h, &[allow(ResourceType::TOPIC, "absent", ALICE, Operation::DESCRIBE)]);
    let code = delete_topic(&mut h, alice, Some("absent"), Uuid::ZERO).error_code;
    assert_eq!(code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0);
    assert_eq!(delete_topic(&mut h, alice, Some("seen"), Uuid::ZERO).error_code, TOPIC_AUTH);
    // By id: refused, with the name only for a topic the principal may describe.
    let r = delete_topic(&mut h, alice, None, hidden);
    assert_eq!((r.error_code, r.name, r.topic_id), (TOPIC_AUTH, None, hidden));
    let r = delete_topic(&mut h, alice, None, seen);
    assert_eq!((r.error_code, r.name.as_deref()), (TOPIC_AUTH, Some("seen")));
    // Nothing was deleted; DELETE on the cluster deletes any topic.
    grant(&mut h, &[allow(ResourceType::CLUSTER, CLUSTER_NAME, ALICE, Operation::DELETE)]);
    let r = delete_topic(&mut h, alice, None, hidden);
    assert_eq!((r.error_code, r.name.as_deref()), (NONE, Some(TOPIC)));
    assert_eq!(delete_topic(&mut h, alice, Some("seen"), Uuid::ZERO).error_code, NONE);
}

#[test]
fn delete_records_refuses_per_topic_and_hides_absent_ones() {
    let (mut h, alice, a) = broker(&[allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::DELETE)]);
    create_topic(&mut h, a, TOPIC, 1);
    create_topic(&mut h, a, "other", 1);
    assert_eq!(delete_records(&mut h, alice, &[TOPIC, "other", "absent"]), vec![NONE, TOPIC_AUTH, TOPIC_AUTH]);
}

#[test]
fn describe_configs_serves_the_authorized_resources_of_a_request() {
    let (mut h, alice, a) = broker(&[allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::ALTER_CONFIGS)]);
    create_topic(&mut h, a, TOPIC, 1);
    let broker = broker_name();
    let r = describe_configs(
        &mut h,
        alice,
        &[(TOPIC_RESOURCE, TOPIC), (BROKER_RESOURCE, &broker), (GROUP_RESOURCE, GROUP), (TOPIC_RESOURCE, "absent")],
    );
    // ALTER_CONFIGS implies DESCRIBE_CONFIGS; refused resources come back without configs.
    assert_eq!(r[0].0, NONE);
    assert!(r[0].1 > 0);
    assert_eq!(r[1..], [(CLUSTER_AUTH, 0), (GROUP_AUTH, 0), (TOPIC_AUTH, 0)]);
}

#[test]
fn refused_config_changes_change_nothing() {
    let (mut h, alice, a) = broker(&[allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::DESCRIBE_CONFIGS)]);
    create_topic(&mut h, a, TOPIC, 1);
    assert_eq!(alter_configs(&mut h, alice, TOPIC_RESOURCE, TOPIC), TOPIC_AUTH);
    assert_eq!(incremental_alter_configs(&mut h, alice, TOPIC_RESOURCE, TOPIC), TOPIC_AUTH);
    // An absent topic is refused alike.
    assert_eq!(incremental_alter_configs(&mut h, alice, TOPIC_RESOURCE, "absent"), TOPIC_AUTH);
    let req = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: TOPIC_RESOURCE,
            resource_name: TOPIC.into(),
            configuration_keys: Some(vec!["retention.ms".into()]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(a, RequestBody::DescribeConfigs(req), 4), DescribeConfigs);
    assert_ne!(r.results[0].configs[0].value.as_deref(), Some("1000"));
}

#[test]
fn add_partitions_to_txn_adds_nothing_when_a_topic_is_refused() {
    let grants = [
        allow(ResourceType::TRANSACTIONAL_ID, TXN, ALICE, Operation::WRITE),
        allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::WRITE),
    ];
    let (mut h, alice, a) = broker(&grants);
    create_topic(&mut h, a, TOPIC, 2);
    create_topic(&mut h, a, "other", 1);
    let ctx = Ctx { producer: init(&mut h, a) };
    let codes = add_partitions(&mut h, alice, ctx, &[(TOPIC, &[0, 1]), ("other", &[0]), ("absent", &[0])]);
    let not_attempted = ErrorCode::OPERATION_NOT_ATTEMPTED.0;
    assert_eq!(codes, vec![vec![not_attempted, not_attempted], vec![TOPIC_AUTH], vec![TOPIC_AUTH]]);
    assert!(describe_transaction(&mut h, a).topics.is_empty(), "nothing joined the transaction");
    // Refused for the transactional id: every partition says so.
    let (mut h, alice, a) = broker(&[allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::WRITE)]);
    create_topic(&mut h, a, TOPIC, 2);
    let ctx = Ctx { producer: init(&mut h, a) };
    assert_eq!(add_partitions(&mut h, alice, ctx, &[(TOPIC, &[0, 1])]), vec![vec![TXN_AUTH, TXN_AUTH]]);
}

#[test]
fn txn_offset_commit_commits_the_authorized_topics() {
    let grants = [
        allow(ResourceType::TRANSACTIONAL_ID, TXN, ALICE, Operation::WRITE),
        allow(ResourceType::GROUP, GROUP, ALICE, Operation::READ),
        allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::READ),
    ];
    let (mut h, alice, a) = broker(&grants);
    create_topic(&mut h, a, TOPIC, 1);
    create_topic(&mut h, a, "other", 1);
    let ctx = Ctx { producer: init(&mut h, a) };
    assert_eq!(add_offsets(&mut h, alice, ctx), NONE);
    // Refused topics come first, as Kafka answers them.
    let r = txn_offset_commit(&mut h, alice, ctx, &[TOPIC, "other"]);
    assert_eq!(commit_codes(&r), vec![("other".to_string(), TOPIC_AUTH), (TOPIC.to_string(), NONE)]);
    // Only refused topics: the coordinator is not asked.
    let r = txn_offset_commit(&mut h, alice, ctx, &["other", "absent"]);
    assert_eq!(commit_codes(&r), vec![("other".to_string(), TOPIC_AUTH), ("absent".to_string(), TOPIC_AUTH)]);
}

#[test]
fn txn_offset_commit_refused_for_the_id_or_group_refuses_every_partition() {
    let grants = [allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::READ)];
    let (mut h, alice, a) = broker(&grants);
    create_topic(&mut h, a, TOPIC, 1);
    let ctx = Ctx { producer: init(&mut h, a) };
    assert_eq!(add_offsets(&mut h, a, ctx), NONE);
    let r = txn_offset_commit(&mut h, alice, ctx, &[TOPIC, "absent"]);
    assert_eq!(commit_codes(&r), vec![(TOPIC.to_string(), TXN_AUTH), ("absent".to_string(), TXN_AUTH)]);
    grant(&mut h, &[allow(ResourceType::TRANSACTIONAL_ID, TXN, ALICE, Operation::WRITE)]);
    let r = txn_offset_commit(&mut h, alice, ctx, &[TOPIC]);
    assert_eq!(commit_codes(&r), vec![(TOPIC.to_string(), GROUP_AUTH)]);
}

#[test]
fn describe_transactions_shows_only_describable_topics() {
    let grants = [
        allow(ResourceType::TRANSACTIONAL_ID, TXN, ALICE, Operation::DESCRIBE),
        allow(ResourceType::TOPIC, TOPIC, ALICE, Operation::DESCRIBE),
    ];
    let (mut h, alice, a) = broker(&grants);
    create_topic(&mut h, a, TOPIC, 1);
    create_topic(&mut h, a, "other", 1);
    let ctx = Ctx { producer: init(&mut h, a) };
    assert_eq!(add_partitions(&mut h, a, ctx, &[(TOPIC, &[0]), ("other", &[0])]), vec![vec![NONE], vec![NONE]]);
    let s = describe_transaction(&mut h, alice);
    assert_eq!(s.error_code, NONE);
    let topics: Vec<&str> = s.topics.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(topics, vec![TOPIC]);
    assert_eq!(describe_transaction(&mut h, a).topics.len(), 2);
}

#[test]
fn refused_scram_requests_name_every_user_and_change_nothing() {
    let (mut h, alice, a) = broker(&[]);
    let req = AlterUserScramCredentialsRequest {
        upsertions: vec![upsert("zed"), upsert("bob")],
        deletions: vec![ScramCredentialDeletion { name: "zed".into(), mechanism: 2, ..Default::default() }],
        ..Default::default()
    };
    let r = expect_body!(h.call(alice, RequestBody::AlterUserScramCredentials(req), 0), AlterUserScramCredentials);
    let results: Vec<(&str, i16)> = r.results.iter().map(|x| (x.user.as_str(), x.error_code)).collect();
    assert_eq!(results, vec![("bob", CLUSTER_AUTH), ("zed", CLUSTER_AUTH)]);

    let users = Some(vec![UserName { name: "bob".into(), ..Default::default() }]);
    let req = DescribeUserScramCredentialsRequest { users, ..Default::default() };
    let r = expect_body!(
        h.call(alice, RequestBody::DescribeUserScramCredentials(req.clone()), 0),
        DescribeUserScramCredentials
    );
    assert_eq!(r.error_code, CLUSTER_AUTH);
    assert!(r.results.iter().all(|x| x.error_code == CLUSTER_AUTH && x.credential_infos.is_empty()));
    // The super user finds no credential: the refused upsertion was not made.
    let r = expect_body!(h.call(a, RequestBody::DescribeUserScramCredentials(req), 0), DescribeUserScramCredentials);
    assert_eq!((r.error_code, r.results[0].error_code), (NONE, ErrorCode::RESOURCE_NOT_FOUND.0));
}
