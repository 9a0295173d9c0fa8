//! The topic table: every topic by id and by name, and the rule that a topic being created is
//! invisible to clients until it is stored.
//!
//! A topic enters the table either recovered (visible at once) or pending (created by a
//! request, waiting for its record to be stored). [`TopicTable::settle`] makes a pending topic
//! visible or, when storing failed, removes it again. Lookups for clients
//! ([`TopicTable::by_name`], [`TopicTable::by_id`], [`TopicTable::partition`]) never see a
//! pending topic; name checks ([`TopicTable::check_new`]) do, so two requests cannot create the
//! same name.

use hashbrown::HashMap;

use crate::codec::{ConfigSource, ErrorCode, KStr, Uuid};
use crate::config::Config;
use crate::error::KafkaError;
use crate::io::{PartitionKey, TopicRecord};
use crate::log::PartitionLog;
use crate::rng::Rng;
use crate::topics::{self, TopicSettings};

/// A topic and its partitions.
#[derive(Debug)]
pub(crate) struct Topic {
    /// The name.
    pub name: KStr,
    /// The id.
    pub id: Uuid,
    /// Config overrides as set by users.
    pub overrides: Vec<(KStr, KStr)>,
    /// Effective settings.
    pub settings: TopicSettings,
    /// The partitions, by index.
    pub partitions: Vec<PartitionLog>,
    /// Created in memory but not yet stored: invisible to clients.
    pub pending: bool,
}

impl Topic {
    /// A topic with `partitions` empty partitions and the settings its overrides resolve to;
    /// `pending` until its record is stored.
    pub(crate) fn new(
        cfg: &Config,
        name: KStr,
        id: Uuid,
        overrides: Vec<(KStr, KStr)>,
        partitions: i32,
        pending: bool,
    ) -> Self {
        let settings = TopicSettings::resolve(cfg, &overrides);
        let partitions =
            (0..partitions).map(|p| PartitionLog::new(PartitionKey { topic_id: id, partition: p })).collect();
        Self { name, id, overrides, settings, partitions, pending }
    }

    /// The record the store keeps for this topic.
    pub(crate) fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partition_count(),
            configs: self.overrides.clone(),
        }
    }

    /// The number of partitions.
    pub(crate) fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// The effective value of config `name` and where it comes from: set on the topic, or
    /// the broker's default.
    pub(crate) fn config_value(&self, cfg: &Config, name: &str) -> (KStr, ConfigSource) {
        match self.overrides.iter().rev().find(|(k, _)| k.as_str() == name) {
            Some((_, v)) => (v.clone(), ConfigSource::TOPIC),
            None => (KStr::from(topics::broker_default(cfg, name).unwrap_or_default()), ConfigSource::DEFAULT),
        }
    }

    /// Replaces the overrides and the settings they resolve to.
    pub(crate) fn set_overrides(&mut self, cfg: &Config, overrides: Vec<(KStr, KStr)>) {
        self.settings = TopicSettings::resolve(cfg, &overrides);
        self.overrides = overrides;
    }

    /// Adds partitions up to `count` (fewer partitions than now is a no-op).
    pub(crate) fn grow_to(&mut self, count: usize) {
        for p in self.partitions.len()..count {
            let partition = i32::try_from(p).unwrap_or(i32::MAX);
            self.partitions.push(PartitionLog::new(PartitionKey { topic_id: self.id, partition }));
        }
    }

    /// Removes the partitions from index `keep` on; returns their keys.
    pub(crate) fn shrink_to(&mut self, keep: usize) -> Vec<PartitionKey> {
        let keep = keep.min(self.partitions.len());
        self.partitions.drain(keep..).map(|p| p.key).collect()
    }
}

/// Every topic, by id and by name.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    by_id: HashMap<Uuid, Topic>,
    by_name: HashMap<KStr, Uuid>,
    /// Moves whenever the set of visible topic names may have changed.
    names_generation: u64,
}

impl TopicTable {
    /// A visible topic by name.
    pub(crate) fn by_name(&self, name: &str) -> Option<&Topic> {
        self.by_name.get(name).and_then(|id| self.by_id.get(id)).filter(|t| !t.pending)
    }

    /// A number that moves whenever the set of visible topic names may have changed (a topic
    /// created, made visible or deleted).
    pub(crate) fn names_generation(&self) -> u64 {
        self.names_generation
    }

    /// A visible topic by id.
    pub(crate) fn by_id(&self, id: Uuid) -> Option<&Topic> {
        self.by_id.get(&id).filter(|t| !t.pending)
    }

    /// A topic by id, pending or not.
    pub(crate) fn get(&self, id: Uuid) -> Option<&Topic> {
        self.by_id.get(&id)
    }

    /// A topic by id, pending or not, to change.
    pub(crate) fn get_mut(&mut self, id: Uuid) -> Option<&mut Topic> {
        self.by_id.get_mut(&id)
    }

    /// Whether a topic, pending or not, has this name.
    pub(crate) fn name_taken(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Every visible topic, in no particular order.
    pub(crate) fn visible(&self) -> impl Iterator<Item = &Topic> {
        self.by_id.values().filter(|t| !t.pending)
    }

    /// Every visible topic, by name: for answers that must not depend on hash order.
    pub(crate) fn visible_by_name(&self) -> Vec<&Topic> {
        let mut v: Vec<&Topic> = self.visible().collect();
        v.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A visible topic's partition.
    pub(crate) fn partition(&self, key: PartitionKey) -> Option<&PartitionLog> {
        let p = usize::try_from(key.partition).ok()?;
        self.by_id(key.topic_id)?.partitions.get(p)
    }

    /// A partition of any topic, pending or not, to change.
    pub(crate) fn partition_mut(&mut self, key: PartitionKey) -> Option<&mut PartitionLog> {
        let p = usize::try_from(key.partition).ok()?;
        self.by_id.get_mut(&key.topic_id)?.partitions.get_mut(p)
    }

    /// Checks a new topic's name, partition count and configs against Kafka's rules and the
    /// topics there are.
    pub(crate) fn check_new(&self, name: &str, partitions: i32, configs: &[(KStr, KStr)]) -> Result<(), KafkaError> {
        topics::validate_name(name).map_err(|m| KafkaError::new(ErrorCode::INVALID_TOPIC_EXCEPTION, m))?;
        if self.name_taken(name) {
            return Err(KafkaError::new(ErrorCode::TOPIC_ALREADY_EXISTS, format!("Topic '{name}' already exists.")));
        }
        if let Some(other) = self.by_name.keys().find(|n| topics::collides(n, name)) {
            return Err(KafkaError::new(
                ErrorCode::INVALID_TOPIC_EXCEPTION,
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
        }
        if partitions <= 0 {
            return Err(KafkaError::new(ErrorCode::INVALID_PARTITIONS, "Number of partitions must be larger than 0."));
        }
        for (k, v) in configs {
            topics::validate_config(k, v)?;
        }
        Ok(())
    }

    /// Checks and creates a topic, invisible until [`TopicTable::settle`]d. Returns its id.
    pub(crate) fn create_pending(
        &mut self,
        cfg: &Config,
        rng: &mut Rng,
        name: KStr,
        partitions: i32,
        overrides: Vec<(KStr, KStr)>,
    ) -> Result<Uuid, KafkaError> {
        self.check_new(&name, partitions, &overrides)?;
        let id = self.new_id(rng);
        self.insert(Topic::new(cfg, name, id, overrides, partitions, true));
        Ok(id)
    }

    /// Adds a topic (a recovered one, or one [`TopicTable::create_pending`] built).
    pub(crate) fn insert(&mut self, topic: Topic) {
        self.names_generation += 1;
        self.by_name.insert(topic.name.clone(), topic.id);
        self.by_id.insert(topic.id, topic);
    }

    /// Ends a pending topic's creation: visible when `stored`, else removed. Returns its
    /// name.
    pub(crate) fn settle(&mut self, id: Uuid, stored: bool) -> Option<KStr> {
        self.names_generation += 1;
        if stored {
            let t = self.by_id.get_mut(&id)?;
            t.pending = false;
            Some(t.name.clone())
        } else {
            self.remove(id).map(|t| t.name)
        }
    }

    /// Removes a topic.
    pub(crate) fn remove(&mut self, id: Uuid) -> Option<Topic> {
        self.names_generation += 1;
        let t = self.by_id.remove(&id)?;
        self.by_name.remove(t.name.as_str());
        Some(t)
    }

    /// A fresh topic id: random, never the zero id nor Kafka's reserved id 1, nor one in use.
    pub(crate) fn new_id(&self, rng: &mut Rng) -> Uuid {
        loop {
            let id = Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
            if id != Uuid::ZERO && id != Uuid::from_u64_pair(0, 1) && !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TopicTable;
    use crate::codec::{ErrorCode, KStr};
    use crate::config::Config;
    use crate::io::PartitionKey;
    use crate::rng::Rng;

    #[test]
    fn a_pending_topic_is_invisible_until_settled_and_gone_if_storing_failed() {
        let (cfg, mut rng, mut t) = (Config::default(), Rng::new(1), TopicTable::default());
        let a = t.create_pending(&cfg, &mut rng, KStr::from_static("a"), 2, Vec::new()).unwrap();
        let b = t.create_pending(&cfg, &mut rng, KStr::from_static("b"), 1, Vec::new()).unwrap();
        assert!(t.by_name("a").is_none() && t.by_id(a).is_none());
        assert!(t.partition(PartitionKey { topic_id: a, partition: 0 }).is_none());
        let again = t.create_pending(&cfg, &mut rng, KStr::from_static("a"), 1, Vec::new());
        assert_eq!(again.unwrap_err().code, ErrorCode::TOPIC_ALREADY_EXISTS);
        assert_eq!(t.settle(a, true).as_deref(), Some("a"));
        assert_eq!(t.settle(b, false).as_deref(), Some("b"));
        assert_eq!(t.by_name("a").map(|x| x.id), Some(a));
        assert!(t.partition(PartitionKey { topic_id: a, partition: 1 }).is_some());
        assert!(t.get(b).is_none() && !t.name_taken("b"));
    }

    #[test]
    fn names_that_collide_as_metric_names_are_refused() {
        let (cfg, mut rng, mut t) = (Config::default(), Rng::new(1), TopicTable::default());
        t.create_pending(&cfg, &mut rng, KStr::from_static("a.b"), 1, Vec::new()).unwrap();
        let e = t.check_new("a_b", 1, &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::INVALID_TOPIC_EXCEPTION);
        assert_eq!(t.check_new("ok", 0, &[]).unwrap_err().code, ErrorCode::INVALID_PARTITIONS);
    }
}
