//! Topics and partitions: creating and deleting Kafka topics as SeaweedMQ topics, mapping a
//! Kafka partition to its range of SeaweedMQ's partition ring and the broker that leads it, and
//! asking that broker for the partition's offsets.
//!
//! SeaweedMQ re-splits the whole ring (every partition starting again at offset 0) when a
//! topic's partition count changes, so kelp changes it only while the topic holds no data.

use kelp_core::codec::Uuid;
use kelp_core::config::Config;
use kelp_core::io::{PartitionKey, StorageError, TopicRecord};
use kelp_core::topics::TopicSettings;
use tokio::time::timeout;

use super::cluster::{Cluster, lock, unavailable};
use super::format::{encode_topic, log_start_prefix};
use super::pb::{messaging_pb, schema_pb};

/// SeaweedMQ's partition ring size.
pub const RING: i32 = 2520;

/// What kelp knows of a topic it created.
#[derive(Clone, Debug)]
pub(super) struct TopicInfo {
    /// The SeaweedMQ topic name (the Kafka topic name).
    pub(super) name: String,
    /// The Kafka partition count.
    pub(super) partitions: i32,
    /// Which of its records' fields are kept typed ([`super::typed`]).
    pub(super) typed: TypedFields,
}

/// Which fields of a topic's records are kept as typed columns: those the topic validates
/// against the schema registry (`confluent.value.schema.validation` and the key twin, or
/// Redpanda's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TypedFields {
    /// The value.
    pub(super) value: bool,
    /// The key.
    pub(super) key: bool,
}

impl TypedFields {
    /// What topic `t`'s configs ask for.
    pub(super) fn of(t: &TopicRecord) -> Self {
        let s = TopicSettings::resolve(&Config::default(), &t.configs);
        Self { value: s.value_validation.is_some(), key: s.key_validation.is_some() }
    }

    /// Whether any field is typed.
    pub(super) fn any(self) -> bool {
        self.value || self.key
    }
}

/// A partition as the broker names it, and who leads it.
#[derive(Clone, Debug)]
pub(super) struct Placement {
    /// The broker's partition (ring range and generation).
    pub(super) partition: schema_pb::Partition,
    /// The gRPC address of the broker that leads it.
    pub(super) leader: String,
}

/// Kafka partition `i` of `n` as a ring range: `n` equal slices, the last one running to the
/// end of the ring.
#[must_use]
pub fn ring_range(i: i32, n: i32) -> (i32, i32) {
    let w = RING / n.max(1);
    let start = i * w;
    let stop = if i == n - 1 { RING } else { start + w };
    (start, stop)
}

impl Cluster {
    /// The partitions of topic `name`, from the cache unless `refresh` or not yet cached.
    pub(super) async fn placements(&self, name: &str, refresh: bool) -> Result<Vec<Placement>, StorageError> {
        if !refresh && let Some(p) = lock(&self.placements).get(name) {
            return Ok(p.clone());
        }
        let req = messaging_pb::LookupTopicBrokersRequest { topic: Some(self.topic(name)) };
        let r = self.rpc("LookupTopicBrokers", self.broker(&self.broker_addr).lookup_topic_brokers(req)).await?;
        let mut p: Vec<Placement> = r
            .broker_partition_assignments
            .into_iter()
            .filter_map(|a| Some(Placement { partition: a.partition?, leader: a.leader_broker }))
            .collect();
        p.sort_by_key(|p| p.partition.range_start);
        lock(&self.placements).insert(name.to_owned(), p.clone());
        Ok(p)
    }

    /// The topic name and the broker's partition for `key`, with its leader.
    pub(super) async fn place(&self, key: PartitionKey, refresh: bool) -> Result<(String, Placement), StorageError> {
        let info = lock(&self.topics).get(&key.topic_id).cloned().ok_or(StorageError::NotFound)?;
        let (start, stop) = ring_range(key.partition, info.partitions);
        let all = self.placements(&info.name, refresh).await?;
        let p = all
            .into_iter()
            .find(|p| p.partition.range_start == start && p.partition.range_stop == stop)
            .ok_or(StorageError::NotFound)?;
        Ok((info.name, p))
    }

    /// The kelp partition of topic `name` whose ring range is `range`, if kelp knows the topic.
    pub(super) fn partition_in(&self, name: &str, range: (i32, i32)) -> Option<PartitionKey> {
        let topics = lock(&self.topics);
        let (id, info) = topics.iter().find(|(_, t)| t.name == name)?;
        let i = range.0 / (RING / info.partitions.max(1));
        (i < info.partitions && ring_range(i, info.partitions) == range)
            .then_some(PartitionKey { topic_id: *id, partition: i })
    }

    /// (earliest offset, high watermark) of a partition, asked of the broker at once: only
    /// after the partition's gate ([`Cluster::gate`]), or for a partition that is not kelp's.
    pub(super) async fn range(&self, name: &str, p: &Placement) -> Result<(i64, i64), StorageError> {
        let req =
            messaging_pb::GetPartitionRangeInfoRequest { topic: Some(self.topic(name)), partition: Some(p.partition) };
        let r = self.rpc("GetPartitionRangeInfo", self.broker(&p.leader).get_partition_range_info(req)).await?;
        if !r.error.is_empty() {
            tracing::warn!(topic = name, error = %r.error, "seaweedmq: GetPartitionRangeInfo");
            return Err(StorageError::Unavailable);
        }
        let o = r.offset_range.unwrap_or_default();
        Ok((o.earliest_offset, o.high_water_mark))
    }

    /// (earliest offset, high watermark) of the partition `key`, its leader looked up afresh
    /// if `refresh`.
    pub(super) async fn offsets(&self, key: PartitionKey, refresh: bool) -> Result<(i64, i64), StorageError> {
        self.gate(key, false).await?;
        let (name, p) = self.place(key, refresh).await?;
        self.range(&name, &p).await
    }

    /// Creates topic `name` with `partitions` partitions, or re-splits it to that many.
    pub(super) async fn configure(&self, name: &str, partitions: i32) -> Result<(), StorageError> {
        let req = messaging_pb::ConfigureTopicRequest {
            topic: Some(self.topic(name)),
            partition_count: partitions,
            ..Default::default()
        };
        self.rpc("ConfigureTopic", self.broker(&self.broker_addr).configure_topic(req)).await?;
        lock(&self.placements).remove(name);
        Ok(())
    }

    /// Sets the `RecordType` of topic `name`, which has `partitions` partitions: with the
    /// count unchanged, SeaweedMQ only rewrites the topic's `topic.conf` and keeps its data.
    pub(super) async fn set_record_type(
        &self,
        name: &str,
        partitions: i32,
        record_type: schema_pb::RecordType,
        format: &str,
    ) -> Result<(), StorageError> {
        let req = messaging_pb::ConfigureTopicRequest {
            topic: Some(self.topic(name)),
            partition_count: partitions,
            message_record_type: Some(record_type),
            key_columns: Vec::new(),
            schema_format: format.to_owned(),
        };
        self.rpc("ConfigureTopic", self.broker(&self.broker_addr).configure_topic(req)).await?;
        Ok(())
    }

    /// The `RecordType` of topic `name` as `topic.conf` has it, if any.
    pub(super) async fn record_type(&self, name: &str) -> Result<Option<schema_pb::RecordType>, StorageError> {
        let req = messaging_pb::GetTopicConfigurationRequest { topic: Some(self.topic(name)) };
        let r = self.rpc("GetTopicConfiguration", self.broker(&self.broker_addr).get_topic_configuration(req)).await?;
        Ok(r.message_record_type)
    }

    /// How many partitions SeaweedMQ has for `name`, if the topic exists there.
    pub(super) async fn smq_partitions(&self, name: &str) -> Result<Option<i32>, StorageError> {
        let req = messaging_pb::GetTopicConfigurationRequest { topic: Some(self.topic(name)) };
        match timeout(self.cfg.rpc_timeout, self.broker(&self.broker_addr).get_topic_configuration(req)).await {
            Ok(Ok(r)) => Ok(Some(r.into_inner().partition_count)),
            Ok(Err(s)) if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::DeadlineExceeded => {
                Err(unavailable("GetTopicConfiguration")(s))
            }
            // The broker reports a missing topic as an error with a message, not a code.
            Ok(Err(_)) => Ok(None),
            Err(_) => Err(StorageError::Timeout),
        }
    }

    /// Whether every partition of `name` is empty.
    async fn all_empty(&self, name: &str) -> Result<bool, StorageError> {
        for p in self.placements(name, true).await? {
            if let Some(key) = self.partition_in(name, (p.partition.range_start, p.partition.range_stop)) {
                self.gate(key, false).await?;
            }
            if self.range(name, &p).await?.1 > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Answers `PutTopic`: makes the SeaweedMQ topic match `t` where that loses no data, then
    /// writes kelp's topic record.
    pub(super) async fn put_topic(&self, t: TopicRecord) -> Result<(), StorageError> {
        let name = t.name.as_str().to_owned();
        let known = lock(&self.topics).get(&t.id).cloned();
        let existing = self.smq_partitions(&name).await?;
        match (known, existing) {
            (Some(k), Some(n)) if k.partitions == t.partitions && n == t.partitions => {}
            (_, Some(n)) if n == t.partitions && self.all_empty(&name).await? => {}
            (_, Some(n)) if n != t.partitions && self.all_empty(&name).await? => {
                self.configure(&name, t.partitions).await?
            }
            (None, Some(_)) => {
                // A SeaweedMQ topic with data that kelp did not create: kelp's offsets would not
                // continue it. Refuse rather than renumber.
                tracing::error!(topic = %name, "seaweedmq: topic already exists in SeaweedMQ with data; not adopting it");
                return Err(StorageError::Corrupt("the topic already exists in SeaweedMQ with data"));
            }
            (Some(_), Some(_)) => {
                // Changing the count re-creates every partition (offsets from 0), which would
                // renumber the data kelp has; refuse.
                tracing::error!(topic = %name, "seaweedmq: cannot add partitions to a topic with data");
                return Err(StorageError::Refused(
                    "SeaweedMQ cannot add partitions to a topic that holds data (it would re-split the partition ring)",
                ));
            }
            (_, None) => self.configure(&name, t.partitions).await?,
        }
        self.put_file(&self.meta_dir("topics"), &name, encode_topic(&t)).await?;
        let typed = TypedFields::of(&t);
        lock(&self.topics).insert(t.id, TopicInfo { name: name.clone(), partitions: t.partitions, typed });
        // A re-split topic has no RecordType any more; a changed one is read again when needed.
        self.shapes.lock().await.remove(&name);
        self.placements(&name, true).await?;
        Ok(())
    }

    /// Answers `DeleteTopic`: removes the SeaweedMQ topic's files, kelp's topic record and log
    /// starts, and everything cached about it. An unknown id is already deleted.
    pub(super) async fn delete_topic(&self, id: Uuid) -> Result<(), StorageError> {
        let Some(info) = lock(&self.topics).get(&id).cloned() else { return Ok(()) };
        // Held throughout: an append to a typed topic must not configure it again meanwhile.
        let mut shapes = self.shapes.lock().await;
        self.delete_path(&format!("/topics/{}", self.cfg.namespace), &info.name).await?;
        self.delete_path(&self.meta_dir("topics"), &info.name).await?;
        let prefix = log_start_prefix(id);
        for (f, _) in self.list_files(&self.meta_dir("logstart")).await? {
            if f.starts_with(&prefix) {
                self.delete_path(&self.meta_dir("logstart"), &f).await?;
            }
        }
        lock(&self.topics).remove(&id);
        lock(&self.placements).remove(&info.name);
        shapes.remove(&info.name);
        self.sessions.forget_topic(id);
        self.persisted.forget_topic(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{RING, ring_range};

    #[test]
    fn partitions_tile_the_ring() {
        assert_eq!(ring_range(0, 1), (0, RING));
        assert_eq!([ring_range(0, 3), ring_range(1, 3), ring_range(2, 3)], [(0, 840), (840, 1680), (1680, 2520)]);
        // 2520 / 11 = 229 with 1 left over: the last slice takes it.
        assert_eq!(ring_range(10, 11), (2290, RING));
    }
}
