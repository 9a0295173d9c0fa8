//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs and DeleteRecords.
//!
//! Changes are made in memory and stored; the answer waits for the store. A topic being
//! created is invisible until it is stored (`Topic::pending`), and removed again if storing
//! fails.
//!
//! With ACLs on, each resource is authorized as Kafka's `ControllerApis` (topics, configs
//! that the controller owns) and `KafkaApis` (DeleteRecords, DescribeConfigs) do, at request
//! entry; refused resources get their authorization error and the rest is served.

use super::{CmdOwner, Effects};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::alter_configs::{AlterConfigsRequest, AlterConfigsResourceResponse, AlterConfigsResponse};
use crate::codec::generated::create_partitions::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use crate::codec::generated::create_topics::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsRequest, CreateTopicsResponse,
};
use crate::codec::generated::delete_records::{
    DeleteRecordsPartitionResult, DeleteRecordsRequest, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use crate::codec::generated::delete_topics::{DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse};
use crate::codec::generated::describe_configs::{
    DescribeConfigsRequest, DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use crate::codec::generated::incremental_alter_configs::{
    AlterConfigsResourceResponse as IncrementalAlterResult, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use crate::codec::{AlterConfigOp, ConfigResourceType, ConfigSource, ErrorCode, KStr, Uuid};
use crate::config::Config;
use crate::error::KafkaError;
use crate::group::configs::{self, GroupConfig};
use crate::io::{Command, PartitionKey, StorageError};
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::state::{JobId, State, Topic};
use crate::topics;

use super::{ReplyJob, Then};

/// Makes stored topics visible and drops those whose storing failed. Returns, per topic,
/// its id and, on failure, its name and the error.
pub(crate) fn settle_pending_topics(
    st: &mut State,
    ids: &[Uuid],
    results: &[Option<StorageError>],
) -> Vec<(Uuid, Option<(KStr, ErrorCode)>)> {
    let mut out = Vec::new();
    for (part, id) in ids.iter().enumerate() {
        let failure = results.get(part).copied().flatten();
        let name = st.topics.settle(*id, failure.is_none());
        out.push((*id, failure.map(|e| (name.unwrap_or_default(), e.error_code()))));
    }
    out
}

/// Whether the connection that sent `req` may perform `op` on the topic `name`; a grant on
/// the cluster (`cluster`, looked up once per request) covers every topic, as Kafka's
/// controller has it for CreateTopics (CREATE) and DeleteTopics (DELETE).
fn may_on_topic(st: &State, req: &Req, cluster: bool, op: Operation, name: &str) -> bool {
    cluster || st.allowed(req, op, ResourceType::TOPIC, name)
}

/// The message Kafka's `Errors` gives an authorization error.
fn refusal_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::TOPIC_AUTHORIZATION_FAILED => "Topic authorization failed.",
        ErrorCode::GROUP_AUTHORIZATION_FAILED => "Group authorization failed.",
        _ => "Cluster authorization failed.",
    }
}

/// Whether `op` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config resource is refused, and
/// with what: a topic's and a group's configs are guarded by the topic's and the group's
/// ACLs, a broker's (its loggers', client metrics') by the cluster's, as Kafka's
/// `ConfigHelper` and `ControllerApis.authorizeAlterResource` check them. Other types are
/// not authorized here: they are refused for what they are.
fn config_refusal(st: &State, req: &Req, op: Operation, rtype: i8, name: &str) -> Option<KafkaError> {
    let (rt, name, code) = match ConfigResourceType(rtype) {
        ConfigResourceType::TOPIC => (ResourceType::TOPIC, name, ErrorCode::TOPIC_AUTHORIZATION_FAILED),
        ConfigResourceType::GROUP => (ResourceType::GROUP, name, ErrorCode::GROUP_AUTHORIZATION_FAILED),
        ConfigResourceType::BROKER | ConfigResourceType::BROKER_LOGGER | ConfigResourceType::CLIENT_METRICS => {
            (ResourceType::CLUSTER, CLUSTER_NAME, ErrorCode::CLUSTER_AUTHORIZATION_FAILED)
        }
        _ => return None,
    };
    (!st.allowed(req, op, rt, name)).then(|| KafkaError::new(code, refusal_message(code)))
}

/// The topic's configs as CreateTopics v5+ reports them.
fn creatable_configs(cfg: &Config, t: &Topic) -> Vec<CreatableTopicConfigs> {
    topics::CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = t.config_value(cfg, d.name);
            CreatableTopicConfigs {
                name: KStr::from_static(d.name),
                value: Some(value),
                config_source: source.0,
                ..Default::default()
            }
        })
        .collect()
}

pub(crate) fn create_topics(st: &mut State, fx: &mut Effects, req: Req, m: CreateTopicsRequest) {
    let mut resp = CreateTopicsResponse::default();
    let mut created = Vec::new();
    let node = st.cfg.node_id;
    let cluster_create = st.allowed(&req, Operation::CREATE, ResourceType::CLUSTER, CLUSTER_NAME);
    for t in &m.topics {
        let dup = m.topics.iter().filter(|o| o.name == t.name).count() > 1;
        if dup && resp.topics.iter().any(|r| r.name == t.name) {
            // Kafka answers a duplicated name once.
            continue;
        }
        let nulls: Vec<&str> = t.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.as_str()).collect();
        let overrides: Vec<(KStr, KStr)> =
            t.configs.iter().filter_map(|c| c.value.clone().map(|v| (c.name.clone(), v))).collect();
        let partitions = match (t.num_partitions, t.assignments.len()) {
            (-1, 0) => st.cfg.default_partitions,
            (-1, n) => i32::try_from(n).unwrap_or(i32::MAX),
            (n, _) => n,
        };
        // Kafka's controller reports a new topic's configs, partitions and replication factor
        // only to a principal that may describe its configs.
        let describable = st.allowed(&req, Operation::DESCRIBE_CONFIGS, ResourceType::TOPIC, &t.name);
        let checked = if dup {
            Err(KafkaError::new(
                ErrorCode::INVALID_REQUEST,
                "Create topics request from client contains a duplicate topic name.",
            ))
        } else if !may_on_topic(st, &req, cluster_create, Operation::CREATE, &t.name) {
            Err(KafkaError::new(ErrorCode::TOPIC_AUTHORIZATION_FAILED, "Authorization failed."))
        } else if t.replication_factor != -1 && t.replication_factor != 1 {
            Err(KafkaError::new(
                ErrorCode::INVALID_REPLICATION_FACTOR,
                format!("Replication factor: {} larger than available brokers: 1.", t.replication_factor),
            ))
        } else if !t.assignments.is_empty() && t.num_partitions != -1 {
            Err(KafkaError::new(ErrorCode::INVALID_REQUEST, "Both numPartitions and a manual assignment were given."))
        } else if t.assignments.iter().any(|a| a.broker_ids != [node]) {
            Err(KafkaError::new(
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                format!("Every replica must be on broker {node}."),
            ))
        } else if !nulls.is_empty() {
            Err(KafkaError::new(
                ErrorCode::INVALID_CONFIG,
                format!("Null value not supported for topic configs: {}", nulls.join(",")),
            ))
        } else if m.validate_only {
            st.topics.check_new(&t.name, partitions, &overrides)
        } else {
            st.topics
                .create_pending(&st.cfg, &mut st.rng, t.name.clone(), partitions, overrides)
                .map(|id| created.push(id))
        };
        let mut r = CreatableTopicResult {
            name: t.name.clone(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        };
        match checked {
            Err(KafkaError { code, message }) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(message));
                r.topic_config_error_code = if code == ErrorCode::INVALID_CONFIG { code.0 } else { 0 };
            }
            Ok(()) if !describable => r.topic_config_error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0,
            Ok(()) => {
                r.num_partitions = partitions;
                r.replication_factor = 1;
            }
        }
        resp.topics.push(r);
    }
    let parts = created.len();
    let job =
        super::reply_after(st, fx, req, ResponseBody::CreateTopics(resp), parts, Then::CreateTopics(created.clone()));
    put_topics(st, fx, job, &created);
}

pub(crate) fn finish_create_topics(st: &mut State, job: &mut ReplyJob) {
    let Then::CreateTopics(ids) = &job.then else { return };
    let settled = settle_pending_topics(st, ids, &job.results);
    let ResponseBody::CreateTopics(resp) = &mut job.body else { return };
    for (id, failure) in settled {
        let name = match (&failure, st.topics.get(id)) {
            (Some((name, _)), _) => name.clone(),
            (None, Some(t)) => t.name.clone(),
            (None, None) => continue,
        };
        let Some(r) = resp.topics.iter_mut().find(|r| r.name == name) else { continue };
        match failure {
            Some((_, code)) => {
                r.error_code = code.0;
                r.num_partitions = -1;
                r.replication_factor = -1;
            }
            None => {
                if let Some(t) = st.topics.get(id) {
                    r.topic_id = t.id;
                    // Configs only for a principal that may describe them (decided at entry).
                    if r.topic_config_error_code != ErrorCode::TOPIC_AUTHORIZATION_FAILED.0 {
                        r.configs = Some(creatable_configs(&st.cfg, t));
                    }
                }
            }
        }
    }
}

pub(crate) fn delete_topics(st: &mut State, fx: &mut Effects, req: Req, m: DeleteTopicsRequest) {
    // v0-v5 name topics; v6 names or ids.
    let wanted: Vec<(Option<KStr>, Uuid)> = if req.version >= 6 {
        m.topics.iter().map(|t| (t.name.clone(), t.topic_id)).collect()
    } else {
        m.topic_names.iter().map(|n| (Some(n.clone()), Uuid::ZERO)).collect()
    };
    let mut resp = DeleteTopicsResponse::default();
    let mut deleting = Vec::new();
    let cluster_delete = st.allowed(&req, Operation::DELETE, ResourceType::CLUSTER, CLUSTER_NAME);
    let may = |st: &State, op, name: &str| may_on_topic(st, &req, cluster_delete, op, name);
    for (name, id) in wanted {
        let found = match &name {
            Some(n) => st.topics.by_name(n).map(|t| (t.id, t.name.clone())),
            None => st.topics.by_id(id).map(|t| (t.id, t.name.clone())),
        };
        let mut r = DeletableTopicResult { name: name.clone(), topic_id: id, ..Default::default() };
        match found {
            // As Kafka's controller: a name the principal may not describe is refused whether
            // or not it exists; an unknown id names no topic to authorize.
            None if name.as_ref().is_some_and(|n| !may(st, Operation::DESCRIBE, n)) => {
                r.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0;
            }
            None if name.is_some() => r.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
            None => r.error_code = ErrorCode::UNKNOWN_TOPIC_ID.0,
            Some((_, topic)) if !may(st, Operation::DELETE, &topic) => {
                r.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0;
                // Asked by id: the name is told only to a principal that may describe it.
                if name.is_none() && may(st, Operation::DESCRIBE, &topic) {
                    r.name = Some(topic);
                }
            }
            Some((id, topic)) => {
                r.topic_id = id;
                r.name = Some(topic);
                remove_topic(st, fx, id);
                deleting.push(id);
            }
        }
        resp.responses.push(r);
    }
    let (parts, then) = (deleting.len(), Then::DeleteTopics(deleting.clone()));
    let job = super::reply_after(st, fx, req, ResponseBody::DeleteTopics(resp), parts, then);
    for (part, id) in deleting.into_iter().enumerate() {
        fx.storage(CmdOwner::Job { job, part }, Command::DeleteTopic { topic_id: id });
    }
}

/// Forgets a topic at once, failing whatever waits on its partitions.
fn remove_topic(st: &mut State, fx: &mut Effects, id: Uuid) {
    let Some(t) = st.topics.remove(id) else { return };
    for p in &t.partitions {
        super::waiters::partition_removed(st, fx, p.key);
    }
}

pub(crate) fn finish_delete_topics(job: &mut ReplyJob) {
    let (Then::DeleteTopics(ids), ResponseBody::DeleteTopics(resp)) = (&job.then, &mut job.body) else { return };
    for (part, id) in ids.iter().enumerate() {
        if let (Some(e), Some(r)) = (job.results[part], resp.responses.iter_mut().find(|r| r.topic_id == *id)) {
            r.error_code = e.error_code().0;
        }
    }
}

pub(crate) fn create_partitions(st: &mut State, fx: &mut Effects, req: Req, m: CreatePartitionsRequest) {
    let mut resp = CreatePartitionsResponse::default();
    let mut changed = Vec::new();
    let mut counts_before = Vec::new();
    let node = st.cfg.node_id;
    for t in &m.topics {
        let mut r = CreatePartitionsTopicResult { name: t.name.clone(), ..Default::default() };
        if !st.allowed(&req, Operation::ALTER, ResourceType::TOPIC, &t.name) {
            // Kafka's controller answers this refusal without a message.
            r.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0;
            resp.results.push(r);
            continue;
        }
        let current = st.topics.by_name(&t.name).map(|x| (x.id, x.partitions.len()));
        let outcome = match current {
            None => Err(KafkaError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("The topic '{}' does not exist.", t.name),
            )),
            Some((_, n)) if usize::try_from(t.count).unwrap_or(0) <= n => Err(KafkaError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!(
                    "Topic currently has {n} partitions, which is higher than or equal to the requested {}.",
                    t.count
                ),
            )),
            Some(_) if t.assignments.as_ref().is_some_and(|a| a.iter().any(|x| x.broker_ids != [node])) => {
                Err(KafkaError::new(
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    format!("Every replica must be on broker {node}."),
                ))
            }
            Some((id, n)) => Ok((id, n)),
        };
        match outcome {
            Err(KafkaError { code, message }) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(message));
            }
            Ok((id, n)) if !m.validate_only => {
                if let Some(topic) = st.topics.get_mut(id) {
                    let before = i32::try_from(n).unwrap_or(i32::MAX);
                    counts_before.push(PartitionKey { topic_id: id, partition: before });
                    topic.grow_to(usize::try_from(t.count).unwrap_or(n));
                    changed.push(id);
                }
            }
            Ok(_) => {}
        }
        resp.results.push(r);
    }
    let (parts, then) = (changed.len(), Then::CreatePartitions(counts_before));
    let job = super::reply_after(st, fx, req, ResponseBody::CreatePartitions(resp), parts, then);
    put_topics(st, fx, job, &changed);
}

/// CreatePartitions' storage results: a topic whose new record the store did not take keeps
/// its old partition count (the added partitions go, failing anything waiting on them), and
/// a store's refusal is answered INVALID_PARTITIONS with its reason, as Kafka answers a
/// partition count it cannot apply.
pub(crate) fn finish_create_partitions(st: &mut State, fx: &mut Effects, job: &mut ReplyJob) {
    let Then::CreatePartitions(before) = &job.then else { return };
    for (part, before) in before.iter().enumerate() {
        let Some(e) = job.results.get(part).copied().flatten() else { continue };
        let Some(topic) = st.topics.get_mut(before.topic_id) else { continue };
        let name = topic.name.clone();
        let removed = topic.shrink_to(usize::try_from(before.partition).unwrap_or(0));
        for key in removed {
            super::waiters::partition_removed(st, fx, key);
        }
        let (code, msg) = match e {
            StorageError::Refused(why) => (ErrorCode::INVALID_PARTITIONS, why.to_string()),
            e => (e.error_code(), format!("The store did not take the new partition count: {e:?}.")),
        };
        if let ResponseBody::CreatePartitions(resp) = &mut job.body
            && let Some(r) = resp.results.iter_mut().find(|r| r.name == name)
        {
            r.error_code = code.0;
            r.error_message = Some(KStr::from(msg));
        }
    }
}

/// Stores the current records of `ids` (new or changed topics), one per part of `job`.
pub(crate) fn put_topics(st: &State, fx: &mut Effects, job: JobId, ids: &[Uuid]) {
    for (part, id) in ids.iter().enumerate() {
        if let Some(t) = st.topics.get(*id) {
            fx.storage(CmdOwner::Job { job, part }, Command::PutTopic(t.record()));
        }
    }
}

/// Reports storage failures on results keyed by topic or group name.
pub(crate) fn finish_failures_by_name(st: &State, job: &mut ReplyJob) {
    let Then::AlterConfigs(ids, groups) = &job.then else { return };
    let mut failed: Vec<(ConfigResourceType, KStr, ErrorCode)> = ids
        .iter()
        .enumerate()
        .filter_map(|(part, id)| {
            Some((ConfigResourceType::TOPIC, st.topics.get(*id)?.name.clone(), job.results[part]?.error_code()))
        })
        .collect();
    for (i, g) in groups.iter().enumerate() {
        if let Some(e) = job.results.get(ids.len() + i).copied().flatten() {
            failed.push((ConfigResourceType::GROUP, g.clone(), e.error_code()));
        }
    }
    let is = |kind: ConfigResourceType, t: i8, n: &KStr, name: &KStr| ConfigResourceType(t) == kind && n == name;
    for (kind, name, code) in &failed {
        let hit = match &mut job.body {
            ResponseBody::AlterConfigs(resp) => resp
                .responses
                .iter_mut()
                .find(|r| is(*kind, r.resource_type, &r.resource_name, name))
                .map(|r| &mut r.error_code),
            ResponseBody::IncrementalAlterConfigs(resp) => resp
                .responses
                .iter_mut()
                .find(|r| is(*kind, r.resource_type, &r.resource_name, name))
                .map(|r| &mut r.error_code),
            _ => None,
        };
        if let Some(e) = hit {
            *e = code.0;
        }
    }
}

/// Every listener through `f`, comma-separated.
fn join_listeners(c: &Config, f: impl Fn(&crate::config::Listener) -> String) -> String {
    c.listeners.iter().map(f).collect::<Vec<_>>().join(",")
}

/// The broker-level configs DescribeConfigs reports for the broker resource.
fn broker_configs(c: &Config) -> Vec<(String, String)> {
    let mut v = vec![
        ("advertised.listeners".to_string(), join_listeners(c, |l| format!("{}://{}:{}", l.name, l.host, l.port))),
        (
            "listener.security.protocol.map".to_string(),
            join_listeners(c, |l| format!("{}:{}", l.name, l.protocol.name())),
        ),
        (
            "sasl.enabled.mechanisms".to_string(),
            c.sasl_mechanisms.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        ),
        ("auto.create.topics.enable".into(), c.auto_create_topics.to_string()),
        ("broker.id".into(), c.node_id.to_string()),
        ("default.replication.factor".into(), c.default_replication_factor.to_string()),
        ("node.id".into(), c.node_id.to_string()),
        ("num.partitions".into(), c.default_partitions.to_string()),
    ];
    for d in topics::CONFIGS {
        if let Some(value) = topics::broker_default(c, d.name) {
            v.push((d.broker_synonym.to_string(), value));
        }
    }
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

pub(crate) fn describe_configs(st: &mut State, fx: &mut Effects, req: Req, m: &DescribeConfigsRequest) {
    let mut resp = DescribeConfigsResponse::default();
    for res in &m.resources {
        let mut r = DescribeConfigsResult {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        if let Some(KafkaError { code, message }) =
            config_refusal(st, &req, Operation::DESCRIBE_CONFIGS, res.resource_type, &res.resource_name)
        {
            r.error_code = code.0;
            r.error_message = Some(KStr::from(message));
            resp.results.push(r);
            continue;
        }
        let wanted = |name: &str| res.configuration_keys.as_ref().is_none_or(|k| k.iter().any(|x| x.as_str() == name));
        match ConfigResourceType(res.resource_type) {
            ConfigResourceType::TOPIC => match st.topics.by_name(&res.resource_name) {
                None => {
                    r.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0;
                    r.error_message = Some(KStr::from(format!("Topic {} does not exist", res.resource_name)));
                }
                Some(t) => {
                    for d in topics::CONFIGS.iter().filter(|d| wanted(d.name)) {
                        let (value, source) = t.config_value(&st.cfg, d.name);
                        let default = topics::broker_default(&st.cfg, d.name).unwrap_or_default();
                        let mut entry = DescribeConfigsResourceResult {
                            name: KStr::from_static(d.name),
                            value: Some(value.clone()),
                            config_source: source.0,
                            is_default: source == ConfigSource::DEFAULT,
                            config_type: d.ty as i8,
                            documentation: m.include_documentation.then(|| KStr::from_static(d.doc)),
                            ..Default::default()
                        };
                        if m.include_synonyms {
                            if source == ConfigSource::TOPIC {
                                entry.synonyms.push(DescribeConfigsSynonym {
                                    name: KStr::from_static(d.name),
                                    value: Some(value),
                                    source: source.0,
                                    ..Default::default()
                                });
                            }
                            entry.synonyms.push(DescribeConfigsSynonym {
                                name: KStr::from_static(d.broker_synonym),
                                value: Some(KStr::from(default)),
                                source: ConfigSource::DEFAULT.0,
                                ..Default::default()
                            });
                        }
                        r.configs.push(entry);
                    }
                }
            },
            ConfigResourceType::BROKER
                if res.resource_name.is_empty() || res.resource_name.as_str() == st.cfg.node_id.to_string() =>
            {
                for (name, value) in broker_configs(&st.cfg).into_iter().filter(|(n, _)| wanted(n)) {
                    r.configs.push(DescribeConfigsResourceResult {
                        name: KStr::from(name),
                        value: Some(KStr::from(value)),
                        read_only: true,
                        config_source: ConfigSource::STATIC_BROKER.0,
                        config_type: 2,
                        ..Default::default()
                    });
                }
            }
            ConfigResourceType::BROKER => {
                r.error_code = ErrorCode::INVALID_REQUEST.0;
                r.error_message = Some(KStr::from(format!("Unexpected broker id, expected {}", st.cfg.node_id)));
            }
            ConfigResourceType::GROUP if res.resource_name.is_empty() => {
                r.error_code = ErrorCode::INVALID_REQUEST.0;
                r.error_message = Some(KStr::from_static("Group name must not be empty"));
            }
            ConfigResourceType::GROUP => {
                // Any group id has configs: the broker's until the group gets its own.
                let c = st.groups.configs.get(&res.resource_name).copied().unwrap_or_default();
                for d in c.describe(&st.cfg).into_iter().filter(|d| wanted(d.name)) {
                    let source = if d.overridden { ConfigSource::GROUP } else { ConfigSource::DEFAULT };
                    let mut entry = DescribeConfigsResourceResult {
                        name: KStr::from_static(d.name),
                        value: Some(KStr::from(d.value.to_string())),
                        config_source: source.0,
                        is_default: !d.overridden,
                        config_type: 3, // INT
                        documentation: m.include_documentation.then(|| KStr::from_static(d.doc)),
                        ..Default::default()
                    };
                    if m.include_synonyms {
                        if d.overridden {
                            entry.synonyms.push(DescribeConfigsSynonym {
                                name: KStr::from_static(d.name),
                                value: Some(KStr::from(d.value.to_string())),
                                source: ConfigSource::GROUP.0,
                                ..Default::default()
                            });
                        }
                        entry.synonyms.push(DescribeConfigsSynonym {
                            name: KStr::from_static(d.broker_synonym),
                            value: Some(KStr::from(d.broker_value.to_string())),
                            source: ConfigSource::DEFAULT.0,
                            ..Default::default()
                        });
                    }
                    r.configs.push(entry);
                }
            }
            _ => {
                r.error_code = ErrorCode::INVALID_REQUEST.0;
                r.error_message = Some(KStr::from_static("kelp describes topic, broker and group configs only"));
            }
        }
        resp.results.push(r);
    }
    fx.respond(req, ResponseBody::DescribeConfigs(resp));
}

/// Validates a new set of overrides for the topic named `name`; returns its id.
fn check_overrides(st: &State, rtype: i8, name: &KStr, overrides: &[(KStr, KStr)]) -> Result<Uuid, KafkaError> {
    match ConfigResourceType(rtype) {
        ConfigResourceType::TOPIC => {}
        ConfigResourceType::BROKER => {
            return Err(KafkaError::new(
                ErrorCode::INVALID_REQUEST,
                "kelp's broker configs are set at start and read-only",
            ));
        }
        _ => return Err(KafkaError::new(ErrorCode::INVALID_REQUEST, "kelp alters topic and group configs only")),
    }
    let t = st.topics.by_name(name).ok_or_else(|| {
        KafkaError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic {name} does not exist"))
    })?;
    for (k, v) in overrides {
        topics::validate_config(k, v)?;
    }
    Ok(t.id)
}

/// Applies validated overrides and returns the ids to store.
fn apply_overrides(st: &mut State, changes: Vec<(Uuid, Vec<(KStr, KStr)>)>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for (id, overrides) in changes {
        if let Some(t) = st.topics.get_mut(id) {
            t.set_overrides(&st.cfg, overrides);
            ids.push(id);
        }
    }
    ids
}

pub(crate) fn alter_configs(st: &mut State, fx: &mut Effects, req: Req, m: AlterConfigsRequest) {
    let mut resp = AlterConfigsResponse::default();
    let mut changes = Vec::new();
    let mut group_changes: Vec<(KStr, GroupConfig)> = Vec::new();
    for res in &m.resources {
        if let Some(KafkaError { code, message }) =
            config_refusal(st, &req, Operation::ALTER_CONFIGS, res.resource_type, &res.resource_name)
        {
            resp.responses.push(AlterConfigsResourceResponse {
                error_code: code.0,
                error_message: Some(KStr::from(message)),
                resource_type: res.resource_type,
                resource_name: res.resource_name.clone(),
                ..Default::default()
            });
            continue;
        }
        if ConfigResourceType(res.resource_type) == ConfigResourceType::GROUP {
            // The legacy API replaces the group's whole set, as Kafka does.
            let mut r = AlterConfigsResourceResponse {
                resource_type: res.resource_type,
                resource_name: res.resource_name.clone(),
                ..Default::default()
            };
            let ops = res.configs.iter().map(|c| (c.name.as_str(), AlterConfigOp::SET, c.value.as_deref()));
            match group_config_from(st, &res.resource_name, GroupConfig::default(), ops) {
                Err(KafkaError { code, message }) => {
                    r.error_code = code.0;
                    r.error_message = Some(KStr::from(message));
                }
                Ok(c) if !m.validate_only => group_changes.push((res.resource_name.clone(), c)),
                Ok(_) => {}
            }
            resp.responses.push(r);
            continue;
        }
        let overrides: Vec<(KStr, KStr)> =
            res.configs.iter().filter_map(|c| c.value.clone().map(|v| (c.name.clone(), v))).collect();
        let mut r = AlterConfigsResourceResponse {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        let nulls: Vec<&str> = res.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.as_str()).collect();
        let checked = if nulls.is_empty() {
            check_overrides(st, res.resource_type, &res.resource_name, &overrides)
        } else {
            // As Kafka's ConfigAdminManager: the legacy API has no way to delete one config.
            Err(KafkaError::new(
                ErrorCode::INVALID_REQUEST,
                format!("Null value not supported for : {}", nulls.join(", ")),
            ))
        };
        match checked {
            Err(KafkaError { code, message }) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(message));
            }
            Ok(id) if !m.validate_only => changes.push((id, overrides)),
            Ok(_) => {}
        }
        resp.responses.push(r);
    }
    let ids = apply_overrides(st, changes);
    let groups: Vec<KStr> = group_changes.iter().map(|(g, _)| g.clone()).collect();
    let (parts, then) = (ids.len() + groups.len(), Then::AlterConfigs(ids.clone(), groups));
    let job = super::reply_after(st, fx, req, ResponseBody::AlterConfigs(resp), parts, then);
    put_topics(st, fx, job, &ids);
    put_group_configs(st, fx, job, ids.len(), group_changes);
}

/// Puts groups' new configs in force and stores them, as parts `first..` of `job`.
fn put_group_configs(st: &mut State, fx: &mut Effects, job: JobId, first: usize, changes: Vec<(KStr, GroupConfig)>) {
    for (i, (g, c)) in changes.into_iter().enumerate() {
        apply_group_config(st, &g, c);
        let value = (!c.is_empty()).then(|| c.encode());
        fx.storage(CmdOwner::Job { job, part: first + i }, Command::Put { key: configs::config_key(&g), value });
    }
}

/// One incremental operation on a topic's overrides.
fn apply_op(
    cfg: &Config,
    overrides: &mut Vec<(KStr, KStr)>,
    name: &KStr,
    op: AlterConfigOp,
    value: Option<&KStr>,
) -> Result<(), KafkaError> {
    let def = topics::config_def(name)
        .ok_or_else(|| KafkaError::new(ErrorCode::INVALID_CONFIG, format!("Unknown topic config name: {name}")))?;
    let current = overrides.iter().position(|(k, _)| k == name);
    match op {
        AlterConfigOp::SET => {
            let v = value.ok_or_else(|| {
                KafkaError::new(ErrorCode::INVALID_REQUEST, format!("Null value not supported for {name}"))
            })?;
            match current {
                Some(i) => overrides[i].1 = v.clone(),
                None => overrides.push((name.clone(), v.clone())),
            }
        }
        AlterConfigOp::DELETE => {
            if let Some(i) = current {
                overrides.remove(i);
            }
        }
        AlterConfigOp::APPEND | AlterConfigOp::SUBTRACT if def.ty == topics::ConfigType::List => {
            let v = value.ok_or_else(|| {
                KafkaError::new(ErrorCode::INVALID_REQUEST, format!("Null value not supported for {name}"))
            })?;
            // Without an override the list starts from the default, as in Kafka.
            let existing = current
                .map(|i| overrides[i].1.to_string())
                .or_else(|| topics::broker_default(cfg, name))
                .unwrap_or_default();
            let mut items: Vec<String> =
                existing.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if op == AlterConfigOp::APPEND && !items.iter().any(|x| x == item) {
                    items.push(item.to_string());
                } else if op == AlterConfigOp::SUBTRACT {
                    items.retain(|x| x != item);
                }
            }
            let joined = KStr::from(items.join(","));
            match current {
                Some(i) => overrides[i].1 = joined,
                None => overrides.push((name.clone(), joined)),
            }
        }
        AlterConfigOp::APPEND | AlterConfigOp::SUBTRACT => {
            return Err(KafkaError::new(
                ErrorCode::INVALID_CONFIG,
                format!("Config {name} is not a list: APPEND and SUBTRACT do not apply"),
            ));
        }
        other => {
            return Err(KafkaError::new(ErrorCode::INVALID_REQUEST, format!("Unknown config operation {}", other.0)));
        }
    }
    Ok(())
}

pub(crate) fn incremental_alter_configs(st: &mut State, fx: &mut Effects, req: Req, m: IncrementalAlterConfigsRequest) {
    let mut resp = IncrementalAlterConfigsResponse::default();
    let mut changes = Vec::new();
    let mut group_changes: Vec<(KStr, GroupConfig)> = Vec::new();
    for res in &m.resources {
        let mut r = IncrementalAlterResult {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        if let Some(KafkaError { code, message }) =
            config_refusal(st, &req, Operation::ALTER_CONFIGS, res.resource_type, &res.resource_name)
        {
            r.error_code = code.0;
            r.error_message = Some(KStr::from(message));
            resp.responses.push(r);
            continue;
        }
        if ConfigResourceType(res.resource_type) == ConfigResourceType::GROUP {
            let ops =
                res.configs.iter().map(|c| (c.name.as_str(), AlterConfigOp(c.config_operation), c.value.as_deref()));
            let base = st.groups.configs.get(&res.resource_name).copied().unwrap_or_default();
            match group_config_from(st, &res.resource_name, base, ops) {
                Err(KafkaError { code, message }) => {
                    r.error_code = code.0;
                    r.error_message = Some(KStr::from(message));
                }
                Ok(c) if !m.validate_only => group_changes.push((res.resource_name.clone(), c)),
                Ok(_) => {}
            }
            resp.responses.push(r);
            continue;
        }
        let base = st.topics.by_name(&res.resource_name).map(|t| t.overrides.clone()).unwrap_or_default();
        let outcome = res
            .configs
            .iter()
            .try_fold(base, |mut o, c| {
                apply_op(&st.cfg, &mut o, &c.name, AlterConfigOp(c.config_operation), c.value.as_ref()).map(|()| o)
            })
            .and_then(|o| check_overrides(st, res.resource_type, &res.resource_name, &o).map(|id| (id, o)));
        match outcome {
            Err(KafkaError { code, message }) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(message));
            }
            Ok(change) if !m.validate_only => changes.push(change),
            Ok(_) => {}
        }
        resp.responses.push(r);
    }
    let ids = apply_overrides(st, changes);
    let groups: Vec<KStr> = group_changes.iter().map(|(g, _)| g.clone()).collect();
    let (parts, then) = (ids.len() + groups.len(), Then::AlterConfigs(ids.clone(), groups));
    let job = super::reply_after(st, fx, req, ResponseBody::IncrementalAlterConfigs(resp), parts, then);
    put_topics(st, fx, job, &ids);
    put_group_configs(st, fx, job, ids.len(), group_changes);
}

/// A group's configs after `ops` on `base`, validated as a whole against the broker's bounds.
fn group_config_from<'a>(
    st: &State,
    group: &KStr,
    base: GroupConfig,
    ops: impl Iterator<Item = (&'a str, AlterConfigOp, Option<&'a str>)>,
) -> Result<GroupConfig, KafkaError> {
    if group.is_empty() {
        return Err(KafkaError::new(ErrorCode::INVALID_REQUEST, "Default group resources are not allowed."));
    }
    let c = ops.into_iter().try_fold(base, |c, (name, op, value)| c.apply(name, op, value))?;
    c.validate(&st.cfg)?;
    Ok(c)
}

/// Puts a group's new configs in force: the live group's session timeout follows at once (a
/// member's next heartbeat arms it), the heartbeat interval with the next answer.
fn apply_group_config(st: &mut State, group: &KStr, c: GroupConfig) {
    if let Some(g) = st.groups.consumer.get_mut(group) {
        g.session_timeout = c.session_timeout_ms.map(|_| c.session_timeout(&st.cfg));
    }
    if c.is_empty() {
        st.groups.configs.remove(group);
    } else {
        st.groups.configs.insert(group.clone(), c);
    }
}

pub(crate) fn delete_records(st: &mut State, fx: &mut Effects, req: Req, m: DeleteRecordsRequest) {
    let mut resp = DeleteRecordsResponse::default();
    let mut moves = Vec::new();
    for t in &m.topics {
        let topic = st.topics.by_name(&t.name).map(|x| x.id);
        let authorized = st.allowed(&req, Operation::DELETE, ResourceType::TOPIC, &t.name);
        let mut tr = DeleteRecordsTopicResult { name: t.name.clone(), ..Default::default() };
        for p in &t.partitions {
            let mut pr = DeleteRecordsPartitionResult {
                partition_index: p.partition_index,
                low_watermark: -1,
                ..Default::default()
            };
            let key = topic.map(|id| PartitionKey { topic_id: id, partition: p.partition_index });
            match key.and_then(|k| st.topics.partition_mut(k).map(|l| (k, l))) {
                _ if !authorized => pr.error_code = ErrorCode::TOPIC_AUTHORIZATION_FAILED.0,
                None => pr.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
                Some((k, log)) => {
                    // -1 means "up to the high watermark".
                    let target = if p.offset == -1 { log.hwm() } else { p.offset };
                    if target < 0 || !log.set_log_start(target) {
                        pr.error_code = ErrorCode::OFFSET_OUT_OF_RANGE.0;
                    } else {
                        pr.low_watermark = log.log_start();
                        moves.push((k, log.log_start()));
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    let then = Then::DeleteRecords(moves.iter().map(|(k, _)| *k).collect());
    let job = super::reply_after(st, fx, req, ResponseBody::DeleteRecords(resp), moves.len(), then);
    for (part, (partition, offset)) in moves.into_iter().enumerate() {
        fx.storage(CmdOwner::Job { job, part }, Command::SetLogStart { partition, offset });
    }
}

pub(crate) fn finish_delete_records(st: &State, job: &mut ReplyJob) {
    let (Then::DeleteRecords(keys), ResponseBody::DeleteRecords(resp)) = (&job.then, &mut job.body) else { return };
    for (part, key) in keys.iter().enumerate() {
        let Some(e) = job.results[part] else { continue };
        let Some(name) = st.topics.get(key.topic_id).map(|t| t.name.clone()) else { continue };
        let pr = resp
            .topics
            .iter_mut()
            .filter(|t| t.name == name)
            .flat_map(|t| t.partitions.iter_mut())
            .find(|p| p.partition_index == key.partition);
        if let Some(pr) = pr {
            pr.error_code = e.error_code().0;
            pr.low_watermark = -1;
        }
    }
}
