//! Metadata, DescribeCluster and DescribeTopicPartitions: kelp is a one-node cluster that leads
//! every partition (leader epoch 0, itself as the only replica and in-sync replica).
//!
//! Metadata may create topics (auto-create, when enabled and the client allows it); the answer
//! then waits until the new topics are stored.
//!
//! With the authorizer on, these follow Kafka: a topic the principal may not DESCRIBE is left
//! out of listings and answered TOPIC_AUTHORIZATION_FAILED when named (existing or not);
//! auto-creation takes CREATE on the cluster or the topic; `*_authorized_operations` are the
//! principal's.

use super::Effects;
use super::Then;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::describe_cluster::{
    DescribeClusterBroker, DescribeClusterRequest, DescribeClusterResponse,
};
use crate::codec::generated::describe_topic_partitions::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic, ResponseCursor,
};
use crate::codec::generated::metadata::{
    MetadataRequest, MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use crate::codec::{ErrorCode, KStr, Uuid};
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::state::{State, Topic};
use crate::topics;

use super::admin;

/// Kafka's value for "authorized operations were not asked for".
pub const OPS_NOT_REQUESTED: i32 = i32::MIN;

/// Every operation on a topic (no authorizer: all are allowed). Bits are Kafka's AclOperation
/// codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11.
pub const TOPIC_OPS: i32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Every operation on the cluster: CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
pub const CLUSTER_OPS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

fn partitions(st: &State, t: &Topic) -> Vec<MetadataResponsePartition> {
    let node = st.cfg.node_id;
    (0..t.partitions.len())
        .map(|i| MetadataResponsePartition {
            partition_index: i32::try_from(i).unwrap_or(i32::MAX),
            leader_id: node,
            leader_epoch: t.partitions[i].leader_epoch(),
            replica_nodes: vec![node],
            isr_nodes: vec![node],
            ..Default::default()
        })
        .collect()
}

fn topic_entry(st: &State, req: &Req, t: &Topic, ops: bool) -> MetadataResponseTopic {
    MetadataResponseTopic {
        name: Some(t.name.clone()),
        topic_id: t.id,
        partitions: partitions(st, t),
        topic_authorized_operations: if ops { topic_ops(st, req, &t.name) } else { OPS_NOT_REQUESTED },
        ..Default::default()
    }
}

/// The operations the principal may perform on topic `name` ([`TOPIC_OPS`] without the
/// authorizer).
fn topic_ops(st: &State, req: &Req, name: &str) -> i32 {
    st.authorized_operations(req, ResourceType::TOPIC, name)
}

/// `cluster_authorized_operations` when asked for: the operations the principal may perform on
/// the cluster ([`CLUSTER_OPS`] without the authorizer), or none at all without DESCRIBE on it
/// (Kafka's Metadata and DescribeCluster).
fn cluster_ops(st: &State, req: &Req, asked: bool) -> i32 {
    if !asked {
        OPS_NOT_REQUESTED
    } else if st.allowed(req, Operation::DESCRIBE, ResourceType::CLUSTER, CLUSTER_NAME) {
        st.authorized_operations(req, ResourceType::CLUSTER, CLUSTER_NAME)
    } else {
        0
    }
}

/// Whether the principal may DESCRIBE topic `name`; without it Kafka answers
/// TOPIC_AUTHORIZATION_FAILED whether the topic exists or not, and lists only the topics
/// it may describe.
fn may_describe(st: &State, req: &Req, name: &str) -> bool {
    st.allowed(req, Operation::DESCRIBE, ResourceType::TOPIC, name)
}

/// Whether the principal may have Metadata auto-create topic `name`: CREATE on the cluster or
/// on the topic (Kafka's `handleTopicMetadataRequest`).
fn may_create(st: &State, req: &Req, name: &str) -> bool {
    st.allowed(req, Operation::CREATE, ResourceType::CLUSTER, CLUSTER_NAME)
        || st.allowed(req, Operation::CREATE, ResourceType::TOPIC, name)
}

fn error_entry(name: Option<KStr>, id: Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code.0,
        name,
        topic_id: id,
        topic_authorized_operations: OPS_NOT_REQUESTED,
        ..Default::default()
    }
}

pub(crate) fn handle(st: &mut State, fx: &mut Effects, req: Req, m: MetadataRequest) {
    let ops = m.include_topic_authorized_operations;
    let mut resp = MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: st.cfg.node_id,
            host: st.cfg.advertised(req.listener).host.clone(),
            port: st.cfg.advertised(req.listener).port,
            rack: st.cfg.rack.clone(),
            ..Default::default()
        }],
        cluster_id: Some(st.cfg.cluster_id.clone()),
        controller_id: st.cfg.node_id,
        cluster_authorized_operations: cluster_ops(st, &req, m.include_cluster_authorized_operations),
        ..Default::default()
    };
    // v0: an empty list means every topic; v1+: null means every topic, empty means none.
    let all = match &m.topics {
        None => true,
        Some(t) => t.is_empty() && req.version == 0,
    };
    if all {
        resp.topics = st
            .topics
            .visible_by_name()
            .into_iter()
            .filter(|t| may_describe(st, &req, &t.name))
            .map(|t| topic_entry(st, &req, t, ops))
            .collect();
        return fx.respond(req, ResponseBody::Metadata(resp));
    }
    let auto_create = st.cfg.auto_create_topics && (req.version < 4 || m.allow_auto_topic_creation);
    let mut created = Vec::new();
    for rt in m.topics.unwrap_or_default() {
        let entry = match &rt.name {
            None if rt.topic_id == Uuid::ZERO => error_entry(None, Uuid::ZERO, ErrorCode::INVALID_REQUEST),
            // Kafka does not hold topic ids secret: an unknown one is UNKNOWN_TOPIC_ID for all.
            None => match st.topics.by_id(rt.topic_id) {
                Some(t) if !may_describe(st, &req, &t.name) => {
                    error_entry(None, rt.topic_id, ErrorCode::TOPIC_AUTHORIZATION_FAILED)
                }
                Some(t) => topic_entry(st, &req, t, ops),
                None => error_entry(None, rt.topic_id, ErrorCode::UNKNOWN_TOPIC_ID),
            },
            Some(name) if !may_describe(st, &req, name) => {
                error_entry(Some(name.clone()), Uuid::ZERO, ErrorCode::TOPIC_AUTHORIZATION_FAILED)
            }
            Some(name) => match st.topics.by_name(name) {
                Some(t) => topic_entry(st, &req, t, ops),
                // Kafka checks this before the name itself, for every topic it would create.
                None if auto_create && !may_create(st, &req, name) => {
                    error_entry(Some(name.clone()), Uuid::ZERO, ErrorCode::TOPIC_AUTHORIZATION_FAILED)
                }
                None if topics::validate_name(name).is_err() => {
                    error_entry(Some(name.clone()), Uuid::ZERO, ErrorCode::INVALID_TOPIC_EXCEPTION)
                }
                None if auto_create && !st.topics.name_taken(name) => {
                    let partitions = st.cfg.default_partitions;
                    match st.topics.create_pending(&st.cfg, &mut st.rng, name.clone(), partitions, Vec::new()) {
                        Ok(id) => created.push(id),
                        Err(e) => resp.topics.push(error_entry(Some(name.clone()), Uuid::ZERO, e.code)),
                    }
                    continue;
                }
                None if st.topics.name_taken(name) => {
                    // Being created by another request right now.
                    error_entry(Some(name.clone()), Uuid::ZERO, ErrorCode::LEADER_NOT_AVAILABLE)
                }
                None => error_entry(Some(name.clone()), Uuid::ZERO, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
            },
        };
        resp.topics.push(entry);
    }
    if created.is_empty() {
        return fx.respond(req, ResponseBody::Metadata(resp));
    }
    // Answer once the auto-created topics are stored; each part stores one topic.
    let then = Then::AutoCreate { topics: created.clone(), include_ops: ops };
    let job = super::reply_after(st, fx, req, ResponseBody::Metadata(resp), created.len(), then);
    admin::put_topics(st, fx, job, &created);
}

/// Adds the auto-created topics to the metadata answer (or reports their failure).
pub(crate) fn finish_auto_create(st: &mut State, job: &mut super::ReplyJob) {
    let Then::AutoCreate { topics, include_ops } = &job.then else { return };
    let (settled, ops) = (admin::settle_pending_topics(st, topics, &job.results), *include_ops);
    let ResponseBody::Metadata(resp) = &mut job.body else { return };
    for (id, failure) in settled {
        match (st.topics.get(id), failure) {
            (Some(t), None) => resp.topics.push(topic_entry(st, &job.req, t, ops)),
            (_, Some((name, code))) => resp.topics.push(error_entry(Some(name), Uuid::ZERO, code)),
            (None, None) => {}
        }
    }
}

pub(crate) fn describe_cluster(st: &mut State, fx: &mut Effects, req: Req, m: &DescribeClusterRequest) {
    let mut resp = DescribeClusterResponse {
        endpoint_type: m.endpoint_type,
        cluster_id: st.cfg.cluster_id.clone(),
        controller_id: st.cfg.node_id,
        brokers: vec![DescribeClusterBroker {
            broker_id: st.cfg.node_id,
            host: st.cfg.advertised(req.listener).host.clone(),
            port: st.cfg.advertised(req.listener).port,
            rack: st.cfg.rack.clone(),
            is_fenced: false,
            ..Default::default()
        }],
        // Kafka refuses no one DescribeCluster: without DESCRIBE on the cluster only the
        // authorized operations (when asked for) come back empty.
        cluster_authorized_operations: cluster_ops(st, &req, m.include_cluster_authorized_operations),
        ..Default::default()
    };
    // Endpoint type 1 is brokers; kelp has no separate controller endpoint to show.
    if req.version >= 1 && m.endpoint_type != 1 {
        resp.error_code = ErrorCode::UNSUPPORTED_ENDPOINT_TYPE.0;
        resp.error_message = Some(KStr::from("kelp only has broker endpoints"));
        resp.brokers.clear();
    }
    fx.respond(req, ResponseBody::DescribeCluster(resp));
}

pub(crate) fn describe_topic_partitions(
    st: &mut State,
    fx: &mut Effects,
    req: Req,
    m: &DescribeTopicPartitionsRequest,
) {
    let node = st.cfg.node_id;
    let mut wanted: Vec<KStr> = if m.topics.is_empty() {
        st.topics.visible().map(|t| t.name.clone()).collect()
    } else {
        m.topics.iter().map(|t| t.name.clone()).collect()
    };
    wanted.sort();
    wanted.dedup();
    let (start_topic, start_partition) = match &m.cursor {
        Some(c) => (Some(c.topic_name.clone()), c.partition_index.max(0)),
        None => (None, 0),
    };
    let mut budget = usize::try_from(m.response_partition_limit.max(1)).unwrap_or(1);
    let mut resp = DescribeTopicPartitionsResponse::default();
    for name in wanted.into_iter().filter(|n| start_topic.as_ref().is_none_or(|s| n >= s)) {
        // Kafka checks DESCRIBE before anything else: a listing skips the topic, a named one is
        // refused; neither counts against the page, and a cursor names an authorized topic.
        if !may_describe(st, &req, &name) {
            if !m.topics.is_empty() {
                resp.topics.push(DescribeTopicPartitionsResponseTopic {
                    error_code: ErrorCode::TOPIC_AUTHORIZATION_FAILED.0,
                    name: Some(name),
                    topic_authorized_operations: OPS_NOT_REQUESTED,
                    ..Default::default()
                });
            }
            continue;
        }
        if budget == 0 {
            // The page filled up at a topic boundary: the next one starts with this topic,
            // which this page does not list (as Kafka's KRaftMetadataCache does).
            resp.next_cursor = Some(ResponseCursor { topic_name: name, partition_index: 0, ..Default::default() });
            break;
        }
        let Some(t) = st.topics.by_name(&name) else {
            let code = if topics::validate_name(&name).is_err() {
                ErrorCode::INVALID_TOPIC_EXCEPTION
            } else {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            };
            resp.topics.push(DescribeTopicPartitionsResponseTopic {
                error_code: code.0,
                name: Some(name),
                topic_authorized_operations: OPS_NOT_REQUESTED,
                ..Default::default()
            });
            continue;
        };
        let first = if start_topic.as_ref() == Some(&name) { start_partition } else { 0 };
        let mut entry = DescribeTopicPartitionsResponseTopic {
            name: Some(name.clone()),
            topic_id: t.id,
            topic_authorized_operations: topic_ops(st, &req, &name),
            ..Default::default()
        };
        let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
        for p in first..count {
            if budget == 0 {
                resp.next_cursor =
                    Some(ResponseCursor { topic_name: name.clone(), partition_index: p, ..Default::default() });
                break;
            }
            budget -= 1;
            entry.partitions.push(DescribeTopicPartitionsResponsePartition {
                partition_index: p,
                leader_id: node,
                leader_epoch: usize::try_from(p).ok().and_then(|i| t.partitions.get(i)).map_or(0, |l| l.leader_epoch()),
                replica_nodes: vec![node],
                isr_nodes: vec![node],
                eligible_leader_replicas: Some(Vec::new()),
                last_known_elr: Some(Vec::new()),
                ..Default::default()
            });
        }
        resp.topics.push(entry);
        if resp.next_cursor.is_some() {
            break;
        }
    }
    fx.respond(req, ResponseBody::DescribeTopicPartitions(resp));
}
