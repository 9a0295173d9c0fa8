//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs and DeleteRecords.
//!
//! Changes are made in memory and stored; the answer waits for the store. A topic being
//! created is invisible until it is stored (`Topic::pending`), and removed again if storing
//! fails.

use crate::broker::{Broker, CmdOwner, JobId, Req, Topic};
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
use crate::codec::{ErrorCode, KStr, Uuid};
use crate::config::Config;
use crate::io::{Command, Completion, PartitionKey, StorageError, TopicRecord};
use crate::log::PartitionLog;
use crate::topics::{self, TopicSettings};

use super::ReplyJob;

/// DescribeConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Failure = (ErrorCode, String);

fn fail(code: ErrorCode, message: impl Into<String>) -> Failure {
    (code, message.into())
}

/// Checks a new topic's name, partition count and configs.
fn check_new_topic(b: &Broker, name: &str, partitions: i32, configs: &[(KStr, KStr)]) -> Result<(), Failure> {
    topics::validate_name(name).map_err(|m| fail(ErrorCode::INVALID_TOPIC_EXCEPTION, m))?;
    if b.names.contains_key(name) {
        return Err(fail(ErrorCode::TOPIC_ALREADY_EXISTS, format!("Topic '{name}' already exists.")));
    }
    if let Some(other) = b.names.keys().find(|n| topics::collides(n, name)) {
        return Err(fail(
            ErrorCode::INVALID_TOPIC_EXCEPTION,
            format!("Topic '{name}' collides with existing topic: {other}"),
        ));
    }
    if partitions <= 0 {
        return Err(fail(ErrorCode::INVALID_PARTITIONS, "Number of partitions must be larger than 0."));
    }
    for (k, v) in configs {
        topics::validate_config(k, v).map_err(|e| (e.code, e.message))?;
    }
    Ok(())
}

/// Creates a topic in memory, invisible until stored. Returns its id.
pub(crate) fn create_pending_topic(
    b: &mut Broker,
    name: KStr,
    partitions: i32,
    overrides: Vec<(KStr, KStr)>,
) -> Result<Uuid, Failure> {
    check_new_topic(b, &name, partitions, &overrides)?;
    let id = b.new_topic_id();
    let settings = TopicSettings::resolve(&b.cfg, &overrides);
    let logs = (0..partitions).map(|p| PartitionLog::new(PartitionKey { topic_id: id, partition: p })).collect();
    b.names.insert(name.clone(), id);
    b.topics.insert(id, Topic { name, id, overrides, settings, partitions: logs, pending: true });
    Ok(id)
}

fn record_of(t: &Topic) -> TopicRecord {
    TopicRecord {
        name: t.name.clone(),
        id: t.id,
        partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
        configs: t.overrides.clone(),
    }
}

/// Stores the pending topics `ids`, one per part of `job`, in order.
pub(crate) fn store_pending_topics(b: &mut Broker, job: JobId, ids: &[Uuid]) {
    if let Some(super::Job::Reply(r)) = b.jobs.get_mut(&job) {
        r.topics = ids.to_vec();
    }
    for (part, id) in ids.iter().enumerate() {
        let Some(t) = b.topics.get(id) else { continue };
        let rec = record_of(t);
        b.storage(CmdOwner::Job { job, part }, Command::PutTopic(rec));
    }
}

/// Makes stored topics visible and drops those whose storing failed. Returns, per topic,
/// its id and, on failure, its name and the error.
pub(crate) fn settle_pending_topics(b: &mut Broker, job: &ReplyJob) -> Vec<(Uuid, Option<(KStr, ErrorCode)>)> {
    let mut out = Vec::new();
    for (part, id) in job.topics.iter().enumerate() {
        match job.results.get(part).copied().flatten() {
            None => {
                if let Some(t) = b.topics.get_mut(id) {
                    t.pending = false;
                }
                out.push((*id, None));
            }
            Some(e) => {
                let name = b.topics.remove(id).map(|t| t.name).unwrap_or_default();
                b.names.remove(name.as_str());
                out.push((*id, Some((name, e.error_code()))));
            }
        }
    }
    out
}

/// The topic's configs as CreateTopics v5+ reports them.
fn creatable_configs(b: &Broker, t: &Topic) -> Vec<CreatableTopicConfigs> {
    topics::CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = config_value(b, t, d.name);
            CreatableTopicConfigs {
                name: KStr::from_static(d.name),
                value: Some(value),
                config_source: source,
                ..Default::default()
            }
        })
        .collect()
}

/// A topic config's value and its source.
fn config_value(b: &Broker, t: &Topic, name: &str) -> (KStr, i8) {
    match t.overrides.iter().rev().find(|(k, _)| k.as_str() == name) {
        Some((_, v)) => (v.clone(), SOURCE_TOPIC),
        None => (KStr::from(topics::broker_default(&b.cfg, name).unwrap_or_default()), SOURCE_DEFAULT),
    }
}

pub(crate) fn create_topics(b: &mut Broker, req: Req, m: CreateTopicsRequest) {
    let mut resp = CreateTopicsResponse::default();
    let mut created = Vec::new();
    let node = b.cfg.node_id;
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
            (-1, 0) => b.cfg.default_partitions,
            (-1, n) => i32::try_from(n).unwrap_or(i32::MAX),
            (n, _) => n,
        };
        let checked = if dup {
            Err(fail(ErrorCode::INVALID_REQUEST, "Create topics request from client contains a duplicate topic name."))
        } else if t.replication_factor != -1 && t.replication_factor != 1 {
            Err(fail(
                ErrorCode::INVALID_REPLICATION_FACTOR,
                format!("Replication factor: {} larger than available brokers: 1.", t.replication_factor),
            ))
        } else if !t.assignments.is_empty() && t.num_partitions != -1 {
            Err(fail(ErrorCode::INVALID_REQUEST, "Both numPartitions and a manual assignment were given."))
        } else if t.assignments.iter().any(|a| a.broker_ids != [node]) {
            Err(fail(ErrorCode::INVALID_REPLICA_ASSIGNMENT, format!("Every replica must be on broker {node}.")))
        } else if !nulls.is_empty() {
            Err(fail(
                ErrorCode::INVALID_CONFIG,
                format!("Null value not supported for topic configs: {}", nulls.join(",")),
            ))
        } else if m.validate_only {
            check_new_topic(b, &t.name, partitions, &overrides)
        } else {
            create_pending_topic(b, t.name.clone(), partitions, overrides).map(|id| created.push(id))
        };
        let mut r = CreatableTopicResult {
            name: t.name.clone(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        };
        match checked {
            Err((code, msg)) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(msg));
                r.topic_config_error_code = if code == ErrorCode::INVALID_CONFIG { code.0 } else { 0 };
            }
            Ok(()) => {
                r.num_partitions = partitions;
                r.replication_factor = 1;
            }
        }
        resp.topics.push(r);
    }
    let ids = created.clone();
    let job = super::reply_after(b, req, ResponseBody::CreateTopics(resp), ids.len(), finish_create_topics);
    store_pending_topics(b, job, &ids);
}

fn finish_create_topics(b: &mut Broker, job: &mut ReplyJob) {
    let settled = settle_pending_topics(b, job);
    let ResponseBody::CreateTopics(resp) = &mut job.body else { return };
    for (id, failure) in settled {
        let name = match (&failure, b.topics.get(&id)) {
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
                if let Some(t) = b.topics.get(&id) {
                    r.topic_id = t.id;
                    r.configs = Some(creatable_configs(b, t));
                }
            }
        }
    }
}

pub(crate) fn delete_topics(b: &mut Broker, req: Req, m: DeleteTopicsRequest) {
    // v0-v5 name topics; v6 names or ids.
    let wanted: Vec<(Option<KStr>, Uuid)> = if req.version >= 6 {
        m.topics.iter().map(|t| (t.name.clone(), t.topic_id)).collect()
    } else {
        m.topic_names.iter().map(|n| (Some(n.clone()), Uuid::ZERO)).collect()
    };
    let mut resp = DeleteTopicsResponse::default();
    let mut deleting = Vec::new();
    for (name, id) in wanted {
        let found = match &name {
            Some(n) => b.topic_by_name(n).map(|t| t.id),
            None => b.topic_by_id(id).map(|t| t.id),
        };
        let mut r = DeletableTopicResult { name: name.clone(), topic_id: id, ..Default::default() };
        match found {
            None if name.is_some() => r.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0,
            None => r.error_code = ErrorCode::UNKNOWN_TOPIC_ID.0,
            Some(id) => {
                r.topic_id = id;
                r.name = b.topics.get(&id).map(|t| t.name.clone());
                remove_topic(b, id);
                deleting.push(id);
            }
        }
        resp.responses.push(r);
    }
    let job = super::reply_after(b, req, ResponseBody::DeleteTopics(resp), deleting.len(), finish_delete_topics);
    if let Some(super::Job::Reply(r)) = b.jobs.get_mut(&job) {
        r.topics = deleting.clone();
    }
    for (part, id) in deleting.into_iter().enumerate() {
        b.storage(CmdOwner::Job { job, part }, Command::DeleteTopic { topic_id: id });
    }
}

/// Forgets a topic at once, failing whatever waits on its partitions.
fn remove_topic(b: &mut Broker, id: Uuid) {
    let Some(t) = b.topics.remove(&id) else { return };
    b.names.remove(t.name.as_str());
    for p in &t.partitions {
        if let Some(waiters) = b.hwm_waiters.remove(&p.key) {
            for (_, job, part) in waiters {
                super::job_completed(b, job, part, Completion::Failed(StorageError::NotFound));
            }
        }
        if let Some(fetches) = b.fetch_waiters.remove(&p.key) {
            for job in fetches {
                super::fetch::wake(b, job);
            }
        }
    }
}

fn finish_delete_topics(_: &mut Broker, job: &mut ReplyJob) {
    let ResponseBody::DeleteTopics(resp) = &mut job.body else { return };
    for (part, id) in job.topics.iter().enumerate() {
        if let (Some(e), Some(r)) = (job.results[part], resp.responses.iter_mut().find(|r| r.topic_id == *id)) {
            r.error_code = e.error_code().0;
        }
    }
}

pub(crate) fn create_partitions(b: &mut Broker, req: Req, m: CreatePartitionsRequest) {
    let mut resp = CreatePartitionsResponse::default();
    let mut changed = Vec::new();
    let mut counts_before = Vec::new();
    let node = b.cfg.node_id;
    for t in &m.topics {
        let mut r = CreatePartitionsTopicResult { name: t.name.clone(), ..Default::default() };
        let current = b.topic_by_name(&t.name).map(|x| (x.id, x.partitions.len()));
        let outcome = match current {
            None => Err(fail(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("The topic '{}' does not exist.", t.name))),
            Some((_, n)) if usize::try_from(t.count).unwrap_or(0) <= n => Err(fail(
                ErrorCode::INVALID_PARTITIONS,
                format!(
                    "Topic currently has {n} partitions, which is higher than or equal to the requested {}.",
                    t.count
                ),
            )),
            Some(_) if t.assignments.as_ref().is_some_and(|a| a.iter().any(|x| x.broker_ids != [node])) => {
                Err(fail(ErrorCode::INVALID_REPLICA_ASSIGNMENT, format!("Every replica must be on broker {node}.")))
            }
            Some((id, n)) => Ok((id, n)),
        };
        match outcome {
            Err((code, msg)) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(msg));
            }
            Ok((id, n)) if !m.validate_only => {
                if let Some(topic) = b.topics.get_mut(&id) {
                    let before = i32::try_from(n).unwrap_or(i32::MAX);
                    counts_before.push(PartitionKey { topic_id: id, partition: before });
                    for p in n..usize::try_from(t.count).unwrap_or(n) {
                        let partition = i32::try_from(p).unwrap_or(i32::MAX);
                        topic.partitions.push(PartitionLog::new(PartitionKey { topic_id: id, partition }));
                    }
                    changed.push(id);
                }
            }
            Ok(_) => {}
        }
        resp.results.push(r);
    }
    let job = super::reply_after(b, req, ResponseBody::CreatePartitions(resp), changed.len(), finish_create_partitions);
    if let Some(super::Job::Reply(r)) = b.jobs.get_mut(&job) {
        r.partitions = counts_before;
    }
    put_topics(b, job, &changed);
}

/// CreatePartitions' storage results: a topic whose new record the store did not take keeps
/// its old partition count (the added partitions go, failing anything waiting on them), and
/// a store's refusal is answered INVALID_PARTITIONS with its reason, as Kafka answers a
/// partition count it cannot apply.
fn finish_create_partitions(b: &mut Broker, job: &mut ReplyJob) {
    for (part, before) in job.partitions.clone().into_iter().enumerate() {
        let Some(e) = job.results.get(part).copied().flatten() else { continue };
        let Some(topic) = b.topics.get_mut(&before.topic_id) else { continue };
        let keep = usize::try_from(before.partition).unwrap_or(0);
        let name = topic.name.clone();
        let removed: Vec<PartitionKey> =
            topic.partitions.drain(keep.min(topic.partitions.len())..).map(|p| p.key).collect();
        for key in removed {
            b.partition_removed(key);
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

/// Stores the current records of `ids`, one per part of `job`.
fn put_topics(b: &mut Broker, job: JobId, ids: &[Uuid]) {
    if let Some(super::Job::Reply(r)) = b.jobs.get_mut(&job) {
        r.topics = ids.to_vec();
    }
    for (part, id) in ids.iter().enumerate() {
        if let Some(t) = b.topics.get(id) {
            let rec = record_of(t);
            b.storage(CmdOwner::Job { job, part }, Command::PutTopic(rec));
        }
    }
}

/// Reports storage failures on results keyed by topic name.
fn finish_failures_by_name(b: &mut Broker, job: &mut ReplyJob) {
    let failed: Vec<(KStr, ErrorCode)> = job
        .topics
        .iter()
        .enumerate()
        .filter_map(|(part, id)| Some((b.topics.get(id)?.name.clone(), job.results[part]?.error_code())))
        .collect();
    match &mut job.body {
        ResponseBody::CreatePartitions(resp) => {
            for (name, code) in failed {
                if let Some(r) = resp.results.iter_mut().find(|r| r.name == name) {
                    r.error_code = code.0;
                }
            }
        }
        ResponseBody::AlterConfigs(resp) => set_alter_failures(&mut resp.responses, &failed),
        ResponseBody::IncrementalAlterConfigs(resp) => {
            for (name, code) in &failed {
                let hit =
                    resp.responses.iter_mut().find(|r| r.resource_type == RESOURCE_TOPIC && &r.resource_name == name);
                if let Some(r) = hit {
                    r.error_code = code.0;
                }
            }
        }
        _ => {}
    }
}

fn set_alter_failures(results: &mut [AlterConfigsResourceResponse], failed: &[(KStr, ErrorCode)]) {
    for (name, code) in failed {
        if let Some(r) = results.iter_mut().find(|r| r.resource_type == RESOURCE_TOPIC && &r.resource_name == name) {
            r.error_code = code.0;
        }
    }
}

/// The broker-level configs DescribeConfigs reports for the broker resource.
fn broker_configs(b: &Broker) -> Vec<(String, String)> {
    let c = &b.cfg;
    let mut v = vec![
        ("advertised.listeners".to_string(), format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port)),
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

pub(crate) fn describe_configs(b: &mut Broker, req: Req, m: &DescribeConfigsRequest) {
    let mut resp = DescribeConfigsResponse::default();
    for res in &m.resources {
        let mut r = DescribeConfigsResult {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        let wanted = |name: &str| res.configuration_keys.as_ref().is_none_or(|k| k.iter().any(|x| x.as_str() == name));
        match res.resource_type {
            RESOURCE_TOPIC => match b.topic_by_name(&res.resource_name) {
                None => {
                    r.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0;
                    r.error_message = Some(KStr::from(format!("Topic {} does not exist", res.resource_name)));
                }
                Some(t) => {
                    for d in topics::CONFIGS.iter().filter(|d| wanted(d.name)) {
                        let (value, source) = config_value(b, t, d.name);
                        let default = topics::broker_default(&b.cfg, d.name).unwrap_or_default();
                        let mut entry = DescribeConfigsResourceResult {
                            name: KStr::from_static(d.name),
                            value: Some(value.clone()),
                            config_source: source,
                            is_default: source == SOURCE_DEFAULT,
                            config_type: d.ty as i8,
                            documentation: m.include_documentation.then(|| KStr::from_static(d.doc)),
                            ..Default::default()
                        };
                        if m.include_synonyms {
                            if source == SOURCE_TOPIC {
                                entry.synonyms.push(DescribeConfigsSynonym {
                                    name: KStr::from_static(d.name),
                                    value: Some(value),
                                    source,
                                    ..Default::default()
                                });
                            }
                            entry.synonyms.push(DescribeConfigsSynonym {
                                name: KStr::from_static(d.broker_synonym),
                                value: Some(KStr::from(default)),
                                source: SOURCE_DEFAULT,
                                ..Default::default()
                            });
                        }
                        r.configs.push(entry);
                    }
                }
            },
            RESOURCE_BROKER
                if res.resource_name.is_empty() || res.resource_name.as_str() == b.cfg.node_id.to_string() =>
            {
                for (name, value) in broker_configs(b).into_iter().filter(|(n, _)| wanted(n)) {
                    r.configs.push(DescribeConfigsResourceResult {
                        name: KStr::from(name),
                        value: Some(KStr::from(value)),
                        read_only: true,
                        config_source: SOURCE_STATIC_BROKER,
                        config_type: 2,
                        ..Default::default()
                    });
                }
            }
            RESOURCE_BROKER => {
                r.error_code = ErrorCode::INVALID_REQUEST.0;
                r.error_message = Some(KStr::from(format!("Unexpected broker id, expected {}", b.cfg.node_id)));
            }
            _ => {
                r.error_code = ErrorCode::INVALID_REQUEST.0;
                r.error_message = Some(KStr::from_static("kelp describes topic and broker configs only"));
            }
        }
        resp.results.push(r);
    }
    b.respond(req, &ResponseBody::DescribeConfigs(resp));
}

/// Validates a new set of overrides for the topic named `name`; returns its id.
fn check_overrides(b: &Broker, rtype: i8, name: &KStr, overrides: &[(KStr, KStr)]) -> Result<Uuid, Failure> {
    if rtype == RESOURCE_BROKER {
        return Err(fail(ErrorCode::INVALID_REQUEST, "kelp's broker configs are set at start and read-only"));
    }
    if rtype != RESOURCE_TOPIC {
        return Err(fail(ErrorCode::INVALID_REQUEST, "kelp alters topic configs only"));
    }
    let t = b
        .topic_by_name(name)
        .ok_or_else(|| fail(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic {name} does not exist")))?;
    for (k, v) in overrides {
        topics::validate_config(k, v).map_err(|e| (e.code, e.message))?;
    }
    Ok(t.id)
}

/// Applies validated overrides and returns the ids to store.
fn apply_overrides(b: &mut Broker, changes: Vec<(Uuid, Vec<(KStr, KStr)>)>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for (id, overrides) in changes {
        let settings = TopicSettings::resolve(&b.cfg, &overrides);
        if let Some(t) = b.topics.get_mut(&id) {
            t.overrides = overrides;
            t.settings = settings;
            ids.push(id);
        }
    }
    ids
}

pub(crate) fn alter_configs(b: &mut Broker, req: Req, m: AlterConfigsRequest) {
    let mut resp = AlterConfigsResponse::default();
    let mut changes = Vec::new();
    for res in &m.resources {
        let overrides: Vec<(KStr, KStr)> =
            res.configs.iter().filter_map(|c| c.value.clone().map(|v| (c.name.clone(), v))).collect();
        let mut r = AlterConfigsResourceResponse {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        let nulls: Vec<&str> = res.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.as_str()).collect();
        let checked = if nulls.is_empty() {
            check_overrides(b, res.resource_type, &res.resource_name, &overrides)
        } else {
            // As Kafka's ConfigAdminManager: the legacy API has no way to delete one config.
            Err(fail(ErrorCode::INVALID_REQUEST, format!("Null value not supported for : {}", nulls.join(", "))))
        };
        match checked {
            Err((code, msg)) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(msg));
            }
            Ok(id) if !m.validate_only => changes.push((id, overrides)),
            Ok(_) => {}
        }
        resp.responses.push(r);
    }
    let ids = apply_overrides(b, changes);
    let job = super::reply_after(b, req, ResponseBody::AlterConfigs(resp), ids.len(), finish_failures_by_name);
    put_topics(b, job, &ids);
}

/// One incremental operation on a topic's overrides.
fn apply_op(
    cfg: &Config,
    overrides: &mut Vec<(KStr, KStr)>,
    name: &KStr,
    op: i8,
    value: Option<&KStr>,
) -> Result<(), Failure> {
    let def = topics::config_def(name)
        .ok_or_else(|| fail(ErrorCode::INVALID_CONFIG, format!("Unknown topic config name: {name}")))?;
    let current = overrides.iter().position(|(k, _)| k == name);
    match op {
        OP_SET => {
            let v = value
                .ok_or_else(|| fail(ErrorCode::INVALID_REQUEST, format!("Null value not supported for {name}")))?;
            match current {
                Some(i) => overrides[i].1 = v.clone(),
                None => overrides.push((name.clone(), v.clone())),
            }
        }
        OP_DELETE => {
            if let Some(i) = current {
                overrides.remove(i);
            }
        }
        OP_APPEND | OP_SUBTRACT if def.ty == topics::ConfigType::List => {
            let v = value
                .ok_or_else(|| fail(ErrorCode::INVALID_REQUEST, format!("Null value not supported for {name}")))?;
            // Without an override the list starts from the default, as in Kafka.
            let existing = current
                .map(|i| overrides[i].1.to_string())
                .or_else(|| topics::broker_default(cfg, name))
                .unwrap_or_default();
            let mut items: Vec<String> =
                existing.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if op == OP_APPEND && !items.iter().any(|x| x == item) {
                    items.push(item.to_string());
                } else if op == OP_SUBTRACT {
                    items.retain(|x| x != item);
                }
            }
            let joined = KStr::from(items.join(","));
            match current {
                Some(i) => overrides[i].1 = joined,
                None => overrides.push((name.clone(), joined)),
            }
        }
        OP_APPEND | OP_SUBTRACT => {
            return Err(fail(
                ErrorCode::INVALID_CONFIG,
                format!("Config {name} is not a list: APPEND and SUBTRACT do not apply"),
            ));
        }
        other => return Err(fail(ErrorCode::INVALID_REQUEST, format!("Unknown config operation {other}"))),
    }
    Ok(())
}

pub(crate) fn incremental_alter_configs(b: &mut Broker, req: Req, m: IncrementalAlterConfigsRequest) {
    let mut resp = IncrementalAlterConfigsResponse::default();
    let mut changes = Vec::new();
    for res in &m.resources {
        let mut r = IncrementalAlterResult {
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        let base = b.topic_by_name(&res.resource_name).map(|t| t.overrides.clone()).unwrap_or_default();
        let outcome = res
            .configs
            .iter()
            .try_fold(base, |mut o, c| {
                apply_op(&b.cfg, &mut o, &c.name, c.config_operation, c.value.as_ref()).map(|()| o)
            })
            .and_then(|o| check_overrides(b, res.resource_type, &res.resource_name, &o).map(|id| (id, o)));
        match outcome {
            Err((code, msg)) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(msg));
            }
            Ok(change) if !m.validate_only => changes.push(change),
            Ok(_) => {}
        }
        resp.responses.push(r);
    }
    let ids = apply_overrides(b, changes);
    let job =
        super::reply_after(b, req, ResponseBody::IncrementalAlterConfigs(resp), ids.len(), finish_failures_by_name);
    put_topics(b, job, &ids);
}

pub(crate) fn delete_records(b: &mut Broker, req: Req, m: DeleteRecordsRequest) {
    let mut resp = DeleteRecordsResponse::default();
    let mut moves = Vec::new();
    for t in &m.topics {
        let topic = b.topic_by_name(&t.name).map(|x| x.id);
        let mut tr = DeleteRecordsTopicResult { name: t.name.clone(), ..Default::default() };
        for p in &t.partitions {
            let mut pr = DeleteRecordsPartitionResult {
                partition_index: p.partition_index,
                low_watermark: -1,
                ..Default::default()
            };
            let key = topic.map(|id| PartitionKey { topic_id: id, partition: p.partition_index });
            match key.and_then(|k| b.partition_mut(k).map(|l| (k, l))) {
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
    let job = super::reply_after(b, req, ResponseBody::DeleteRecords(resp), moves.len(), finish_delete_records);
    if let Some(super::Job::Reply(r)) = b.jobs.get_mut(&job) {
        r.partitions = moves.iter().map(|(k, _)| *k).collect();
    }
    for (part, (partition, offset)) in moves.into_iter().enumerate() {
        b.storage(CmdOwner::Job { job, part }, Command::SetLogStart { partition, offset });
    }
}

fn finish_delete_records(b: &mut Broker, job: &mut ReplyJob) {
    let ResponseBody::DeleteRecords(resp) = &mut job.body else { return };
    for (part, key) in job.partitions.iter().enumerate() {
        let Some(e) = job.results[part] else { continue };
        let Some(name) = b.topics.get(&key.topic_id).map(|t| t.name.clone()) else { continue };
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
