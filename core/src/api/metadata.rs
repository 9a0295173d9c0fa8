//! Metadata, DescribeCluster and DescribeTopicPartitions: kelp is a one-node cluster that leads
//! every partition (leader epoch 0, itself as the only replica and in-sync replica).
//!
//! Metadata may create topics (auto-create, when enabled and the client allows it); the answer
//! then waits until the new topics are stored.

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

fn topic_entry(st: &State, t: &Topic, ops: bool) -> MetadataResponseTopic {
    MetadataResponseTopic {
        name: Some(t.name.clone()),
        topic_id: t.id,
        partitions: partitions(st, t),
        topic_authorized_operations: if ops { TOPIC_OPS } else { OPS_NOT_REQUESTED },
        ..Default::default()
    }
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
        cluster_authorized_operations: if m.include_cluster_authorized_operations {
            CLUSTER_OPS
        } else {
            OPS_NOT_REQUESTED
        },
        ..Default::default()
    };
    // v0: an empty list means every topic; v1+: null means every topic, empty means none.
    let all = match &m.topics {
        None => true,
        Some(t) => t.is_empty() && req.version == 0,
    };
    if all {
        resp.topics = st.topics.visible_by_name().into_iter().map(|t| topic_entry(st, t, ops)).collect();
        return fx.respond(req, ResponseBody::Metadata(resp));
    }
    let auto_create = st.cfg.auto_create_topics && (req.version < 4 || m.allow_auto_topic_creation);
    let mut created = Vec::new();
    for rt in m.topics.unwrap_or_default() {
        let entry = match &rt.name {
            None if rt.topic_id == Uuid::ZERO => error_entry(None, Uuid::ZERO, ErrorCode::INVALID_REQUEST),
            None => match st.topics.by_id(rt.topic_id) {
                Some(t) => topic_entry(st, t, ops),
                None => error_entry(None, rt.topic_id, ErrorCode::UNKNOWN_TOPIC_ID),
            },
            Some(name) => match st.topics.by_name(name) {
                Some(t) => topic_entry(st, t, ops),
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
            (Some(t), None) => resp.topics.push(topic_entry(st, t, ops)),
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
        cluster_authorized_operations: if m.include_cluster_authorized_operations {
            CLUSTER_OPS
        } else {
            OPS_NOT_REQUESTED
        },
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
            topic_authorized_operations: TOPIC_OPS,
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
