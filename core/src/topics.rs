//! Topics: Kafka's naming rules, the topic-level configs kelp understands (with their types,
//! defaults, broker synonyms and validation), and a topic's effective settings.
//!
//! This module is pure data and validation; the table of topics is
//! [`crate::state::topic_table`].

use crate::codec::{ErrorCode, KStr};
use crate::config::Config;
use crate::error::KafkaError;
use crate::records::Compression;
use crate::records::compression::{GZIP_LEVELS, LZ4_LEVELS, ZSTD_LEVELS};
use crate::schemas::{FieldValidation, SubjectStrategy};

/// Longest topic name Kafka allows.
pub const MAX_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rules: 1 to 249 characters from `[a-zA-Z0-9._-]`, and
/// not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("topic name is empty");
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("topic name is longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return Err("topic name contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// Kafka refuses a topic whose name equals an existing one once '.' and '_' are treated as
/// the same character (metric names would collide).
#[must_use]
pub fn collides(a: &str, b: &str) -> bool {
    a != b
        && a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| x == y || (x == b'.' || x == b'_') && (y == b'.' || y == b'_'))
}

/// A config's type, as DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    /// true/false.
    Boolean = 1,
    /// Free text (or one of a set of words).
    String = 2,
    /// 32-bit integer.
    Int = 3,
    /// 64-bit integer.
    Long = 5,
    /// Floating point.
    Double = 6,
    /// Comma-separated list.
    List = 7,
}

/// One topic-level config kelp knows.
#[derive(Clone, Copy, Debug)]
pub struct ConfigDef {
    /// The topic config's name.
    pub name: &'static str,
    /// The broker config that supplies its default.
    pub broker_synonym: &'static str,
    /// Its type.
    pub ty: ConfigType,
    /// Allowed words for enumerated strings and lists (empty: any value of the type).
    pub choices: &'static [&'static str],
    /// Smallest allowed number.
    pub min: Option<i64>,
    /// Largest allowed number.
    pub max: Option<i64>,
    /// What it means.
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    broker_synonym: &'static str,
    ty: ConfigType,
    choices: &'static [&'static str],
    min: Option<i64>,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef { name, broker_synonym, ty, choices, min, max: None, doc }
}

/// An int config whose value must lie in `levels` (a codec's compression levels).
const fn level(name: &'static str, levels: core::ops::RangeInclusive<i32>, doc: &'static str) -> ConfigDef {
    ConfigDef {
        name,
        broker_synonym: name,
        ty: ConfigType::Int,
        choices: &[],
        min: Some(*levels.start() as i64),
        max: Some(*levels.end() as i64),
        doc,
    }
}

/// Every topic config kelp accepts, sorted by name.
pub const CONFIGS: &[ConfigDef] = &[
    def(
        "cleanup.policy",
        "log.cleanup.policy",
        ConfigType::List,
        &["delete", "compact"],
        None,
        "How old records are discarded: delete whole segments by time and size, compact to the latest record of each key, or both.",
    ),
    // Kafka's gzip range is "[1,...,9] or -1": the minimum here is -1 and validate_config
    // refuses 0.
    ConfigDef {
        name: "compression.gzip.level",
        broker_synonym: "compression.gzip.level",
        ty: ConfigType::Int,
        choices: &[],
        min: Some(-1),
        max: Some(*GZIP_LEVELS.end() as i64),
        doc: "The gzip level (1 to 9, or -1 for the codec default, 6) batches are recompressed with when compression.type is gzip.",
    },
    level(
        "compression.lz4.level",
        LZ4_LEVELS,
        "Accepted (1 to 17) and reported for compatibility, but not honoured: kelp's LZ4 encoder has one speed, LZ4's fast mode.",
    ),
    def(
        "compression.type",
        "compression.type",
        ConfigType::String,
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
        None,
        "The codec batches are stored in: 'producer' keeps each batch as the producer compressed it; 'uncompressed' or a codec makes the broker recompress every batch in another codec on append.",
    ),
    level(
        "compression.zstd.level",
        ZSTD_LEVELS,
        "The zstd level (-131072 to 22) batches are recompressed with when compression.type is zstd.",
    ),
    def(
        "confluent.key.schema.validation",
        "confluent.key.schema.validation",
        ConfigType::Boolean,
        &[],
        None,
        "Whether produced keys must carry the id of a schema registered under the key subject (docs/SCHEMA_TOPICS.md); a batch with a key that does not is refused with INVALID_RECORD.",
    ),
    def(
        "confluent.key.subject.name.strategy",
        "confluent.key.subject.name.strategy",
        ConfigType::String,
        SubjectStrategy::NAMES,
        None,
        "How the key subject is named for key validation: TopicNameStrategy (<topic>-key), RecordNameStrategy or TopicRecordNameStrategy.",
    ),
    def(
        "confluent.value.schema.validation",
        "confluent.value.schema.validation",
        ConfigType::Boolean,
        &[],
        None,
        "Whether produced values must carry the id of a schema registered under the value subject (docs/SCHEMA_TOPICS.md); a batch with a value that does not is refused with INVALID_RECORD.",
    ),
    def(
        "confluent.value.subject.name.strategy",
        "confluent.value.subject.name.strategy",
        ConfigType::String,
        SubjectStrategy::NAMES,
        None,
        "How the value subject is named for value validation: TopicNameStrategy (<topic>-value), RecordNameStrategy or TopicRecordNameStrategy.",
    ),
    def(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        ConfigType::Long,
        &[],
        Some(0),
        "How long delete tombstones are kept on compacted topics.",
    ),
    def(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        ConfigType::Long,
        &[],
        Some(0),
        "Delay before a deleted segment's files are removed.",
    ),
    def(
        "flush.messages",
        "log.flush.interval.messages",
        ConfigType::Long,
        &[],
        Some(1),
        "Messages between forced flushes (the store's fsync policy governs durability).",
    ),
    def(
        "flush.ms",
        "log.flush.interval.ms",
        ConfigType::Long,
        &[],
        Some(0),
        "Milliseconds between forced flushes (the store's fsync policy governs durability).",
    ),
    def(
        "kelp.key.schema.validation.mode",
        "kelp.key.schema.validation.mode",
        ConfigType::String,
        &["id", "payload"],
        None,
        "What key validation checks: 'id', that the key's schema id is registered under the subject; 'payload', also that the key decodes with that schema.",
    ),
    def(
        "kelp.value.schema.validation.mode",
        "kelp.value.schema.validation.mode",
        ConfigType::String,
        &["id", "payload"],
        None,
        "What value validation checks: 'id', that the value's schema id is registered under the subject; 'payload', also that the value decodes with that schema.",
    ),
    def(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        ConfigType::Long,
        &[],
        Some(1),
        "Longest a message stays uncompacted.",
    ),
    def(
        "max.message.bytes",
        "message.max.bytes",
        ConfigType::Int,
        &[],
        Some(0),
        "Largest record batch the topic accepts, in bytes after compression.",
    ),
    def(
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        ConfigType::Long,
        &[],
        Some(0),
        "How far in the future a CreateTime timestamp may be.",
    ),
    def(
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        ConfigType::Long,
        &[],
        Some(0),
        "How far in the past a CreateTime timestamp may be.",
    ),
    def(
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
        &["CreateTime", "LogAppendTime"],
        None,
        "Whether record timestamps are the producer's (CreateTime) or the broker's on append (LogAppendTime).",
    ),
    def(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        ConfigType::Double,
        &[],
        None,
        "Dirty ratio above which a compacted log is cleaned.",
    ),
    def(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        ConfigType::Long,
        &[],
        Some(0),
        "Shortest time a message stays uncompacted.",
    ),
    def(
        "min.insync.replicas",
        "min.insync.replicas",
        ConfigType::Int,
        &[],
        Some(1),
        "Replicas that must acknowledge an acks=all write; a single node always has one.",
    ),
    def(
        "redpanda.key.schema.id.validation",
        "redpanda.key.schema.id.validation",
        ConfigType::Boolean,
        &[],
        None,
        "Redpanda's name for confluent.key.schema.validation.",
    ),
    def(
        "redpanda.key.subject.name.strategy",
        "redpanda.key.subject.name.strategy",
        ConfigType::String,
        SubjectStrategy::NAMES,
        None,
        "Redpanda's name for confluent.key.subject.name.strategy (which wins when both are set).",
    ),
    def(
        "redpanda.value.schema.id.validation",
        "redpanda.value.schema.id.validation",
        ConfigType::Boolean,
        &[],
        None,
        "Redpanda's name for confluent.value.schema.validation.",
    ),
    def(
        "redpanda.value.subject.name.strategy",
        "redpanda.value.subject.name.strategy",
        ConfigType::String,
        SubjectStrategy::NAMES,
        None,
        "Redpanda's name for confluent.value.subject.name.strategy (which wins when both are set).",
    ),
    def(
        "retention.bytes",
        "log.retention.bytes",
        ConfigType::Long,
        &[],
        Some(-1),
        "Largest a partition may grow before old data is deleted; -1 for no limit.",
    ),
    def("retention.ms", "log.retention.ms", ConfigType::Long, &[], Some(-1), "How long data is kept; -1 for ever."),
    def("segment.bytes", "log.segment.bytes", ConfigType::Int, &[], Some(14), "Size of one log segment file."),
    def(
        "segment.ms",
        "log.roll.ms",
        ConfigType::Long,
        &[],
        Some(1),
        "Time after which a segment is rolled even if not full.",
    ),
    def(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        ConfigType::Boolean,
        &[],
        None,
        "Whether a partition whose store lost records it had made durable continues at the store's end in a new leader epoch (else it stays fenced).",
    ),
];

/// The definition of topic config `name`.
#[must_use]
pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    CONFIGS.iter().find(|d| d.name == name)
}

/// The broker-level default of a topic config, as a string.
#[must_use]
pub fn broker_default(cfg: &Config, name: &str) -> Option<String> {
    Some(match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "compression.gzip.level" => "-1".into(),
        "compression.lz4.level" => "9".into(),
        "compression.zstd.level" => "3".into(),
        "delete.retention.ms" => "86400000".into(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "flush.ms"
        | "max.compaction.lag.ms" => i64::MAX.to_string(),
        "max.message.bytes" => cfg.max_message_bytes.to_string(),
        "message.timestamp.type" => if cfg.log_append_time { "LogAppendTime" } else { "CreateTime" }.into(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "min.compaction.lag.ms" => "0".into(),
        "min.insync.replicas" => "1".into(),
        "retention.bytes" => cfg.retention_bytes.to_string(),
        "retention.ms" => cfg.retention_ms.to_string(),
        "segment.bytes" => cfg.segment_bytes.to_string(),
        "segment.ms" => "604800000".into(),
        "unclean.leader.election.enable"
        | "confluent.key.schema.validation"
        | "confluent.value.schema.validation"
        | "redpanda.key.schema.id.validation"
        | "redpanda.value.schema.id.validation" => "false".into(),
        "confluent.key.subject.name.strategy"
        | "confluent.value.subject.name.strategy"
        | "redpanda.key.subject.name.strategy"
        | "redpanda.value.subject.name.strategy" => "io.confluent.kafka.serializers.subject.TopicNameStrategy".into(),
        "kelp.key.schema.validation.mode" | "kelp.value.schema.validation.mode" => "id".into(),
        _ => return None,
    })
}

fn invalid(message: String) -> KafkaError {
    KafkaError::new(ErrorCode::INVALID_CONFIG, message)
}

/// Checks one topic config value.
pub fn validate_config(name: &str, value: &str) -> Result<(), KafkaError> {
    let def = config_def(name).ok_or_else(|| invalid(format!("Unknown topic config name: {name}")))?;
    let bad = || invalid(format!("Invalid value {value} for configuration {name}"));
    match def.ty {
        ConfigType::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(bad());
            }
        }
        ConfigType::Int | ConfigType::Long => {
            let v: i64 = value.trim().parse().map_err(|_| bad())?;
            if def.ty == ConfigType::Int && i32::try_from(v).is_err() {
                return Err(bad());
            }
            if def.min.is_some_and(|m| v < m) {
                return Err(invalid(format!("Invalid value {value} for configuration {name}: below the minimum")));
            }
            if def.max.is_some_and(|m| v > m) {
                return Err(invalid(format!("Invalid value {value} for configuration {name}: above the maximum")));
            }
            if name == "compression.gzip.level" && v == 0 {
                return Err(invalid(format!("Invalid value {value} for configuration {name}: must be -1 or 1 to 9")));
            }
        }
        ConfigType::Double => {
            // Kafka's only double topic config, min.cleanable.dirty.ratio, is a ratio.
            let v = value.trim().parse::<f64>().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(format!(
                    "Invalid value {value} for configuration {name}: must be between 0 and 1"
                )));
            }
        }
        ConfigType::String => {
            if !def.choices.is_empty() && !def.choices.contains(&value) {
                return Err(invalid(format!(
                    "Invalid value {value} for configuration {name}: must be one of {:?}",
                    def.choices
                )));
            }
        }
        ConfigType::List => {
            for item in value.split(',').map(str::trim) {
                if !def.choices.is_empty() && !def.choices.contains(&item) {
                    return Err(invalid(format!(
                        "Invalid value {value} for configuration {name}: must be a list of {:?}",
                        def.choices
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A topic's effective settings: its overrides over the broker's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicSettings {
    /// `cleanup.policy` includes `delete`: retention by time and size applies.
    pub cleanup_delete: bool,
    /// `cleanup.policy` includes `compact`: the log cleaner keeps the latest record of each
    /// key, and records without a key are refused.
    pub cleanup_compact: bool,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// Largest batch accepted.
    pub max_message_bytes: i32,
    /// Retention by time (-1: forever).
    pub retention_ms: i64,
    /// Retention by size (-1: unlimited).
    pub retention_bytes: i64,
    /// Whether the broker stamps records with LogAppendTime.
    pub log_append_time: bool,
    /// Oldest acceptable CreateTime, relative to now.
    pub timestamp_before_max_ms: i64,
    /// Newest acceptable CreateTime, relative to now.
    pub timestamp_after_max_ms: i64,
    /// The codec batches are stored in (`compression.type`); `None` keeps the producer's.
    pub compression: Option<Compression>,
    /// The level of that codec (`compression.gzip.level`, `compression.zstd.level`); `None`
    /// for the codec's default, and for codecs without a level kelp honours.
    pub compression_level: Option<i32>,
    /// `unclean.leader.election.enable`: a partition whose store lost records it had made
    /// durable continues at the store's end, in a new leader epoch, instead of staying fenced.
    pub unclean_leader_election: bool,
    /// Key schema validation (`confluent.key.schema.validation` or Redpanda's name), when on.
    pub key_validation: Option<FieldValidation>,
    /// Value schema validation (`confluent.value.schema.validation` or Redpanda's name), when on.
    pub value_validation: Option<FieldValidation>,
}

impl TopicSettings {
    /// The effective settings of a topic with these overrides.
    #[must_use]
    pub fn resolve(cfg: &Config, overrides: &[(KStr, KStr)]) -> Self {
        let get = |name: &str| -> String {
            overrides
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| broker_default(cfg, name))
                .unwrap_or_default()
        };
        let long = |name: &str, fallback: i64| get(name).trim().parse().unwrap_or(fallback);
        let set = |name: &str| overrides.iter().rev().find(|(k, _)| k.as_str() == name).map(|(_, v)| v.to_string());
        let on = |name: &str| get(name).trim().eq_ignore_ascii_case("true");
        let validation = |field: &str| {
            if !on(&format!("confluent.{field}.schema.validation"))
                && !on(&format!("redpanda.{field}.schema.id.validation"))
            {
                return None;
            }
            let strategy = set(&format!("confluent.{field}.subject.name.strategy"))
                .or_else(|| set(&format!("redpanda.{field}.subject.name.strategy")))
                .and_then(|v| SubjectStrategy::parse(&v))
                .unwrap_or(SubjectStrategy::TopicName);
            let payload = get(&format!("kelp.{field}.schema.validation.mode")).trim() == "payload";
            Some(FieldValidation { strategy, payload })
        };
        let policy = get("cleanup.policy");
        let has = |word: &str| policy.split(',').any(|w| w.trim() == word);
        let compression = codec(&get("compression.type"));
        let level = |name: &str| get(name).trim().parse::<i32>().ok();
        let compression_level = match compression {
            Some(Compression::Gzip) => level("compression.gzip.level").filter(|&l| l != -1),
            Some(Compression::Zstd) => level("compression.zstd.level"),
            _ => None,
        };
        Self {
            cleanup_delete: has("delete"),
            cleanup_compact: has("compact"),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").trim().parse().unwrap_or(0.5),
            min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX),
            delete_retention_ms: long("delete.retention.ms", 86_400_000),
            max_message_bytes: i32::try_from(long("max.message.bytes", i64::from(cfg.max_message_bytes)))
                .unwrap_or(cfg.max_message_bytes),
            retention_ms: long("retention.ms", cfg.retention_ms),
            retention_bytes: long("retention.bytes", cfg.retention_bytes),
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", i64::MAX),
            compression,
            compression_level,
            unclean_leader_election: on("unclean.leader.election.enable"),
            key_validation: validation("key"),
            value_validation: validation("value"),
        }
    }
}

/// The codec a `compression.type` value names; `None` for `producer` (and anything else).
fn codec(value: &str) -> Option<Compression> {
    match value.trim() {
        "uncompressed" => Some(Compression::None),
        "gzip" => Some(Compression::Gzip),
        "snappy" => Some(Compression::Snappy),
        "lz4" => Some(Compression::Lz4),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_raw-2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(250)).is_err());
        assert!(validate_name(&"x".repeat(249)).is_ok());
        assert!(collides("a.b", "a_b"));
        assert!(!collides("a.b", "a.b"));
        assert!(!collides("a.b", "a-b"));
    }

    #[test]
    fn config_values_are_checked_by_type() {
        assert!(validate_config("retention.ms", "3600000").is_ok());
        assert!(validate_config("retention.ms", "soon").is_err());
        assert!(validate_config("retention.ms", "-2").is_err());
        assert!(validate_config("max.message.bytes", "99999999999").is_err());
        assert!(validate_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_config("message.timestamp.type", "Later").is_err());
        assert!(validate_config("cleanup.policy", "delete,compact").is_ok());
        for codec in ["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"] {
            assert!(validate_config("compression.type", codec).is_ok(), "{codec}");
        }
        assert!(validate_config("compression.type", "none").is_err());
        assert!(validate_config("compression.type", "brotli").is_err());
        for (name, good, bad) in [
            ("compression.gzip.level", &["-1", "1", "9"][..], &["0", "-2", "10"][..]),
            ("compression.lz4.level", &["1", "9", "17"], &["0", "18"]),
            ("compression.zstd.level", &["-131072", "0", "3", "22"], &["-131073", "23"]),
        ] {
            assert!(good.iter().all(|v| validate_config(name, v).is_ok()), "{name}");
            assert!(bad.iter().all(|v| validate_config(name, v).is_err()), "{name}");
        }
        assert_eq!(validate_config("no.such", "1").map_err(|e| e.code), Err(ErrorCode::INVALID_CONFIG));
    }

    #[test]
    fn settings_take_overrides_over_broker_defaults() {
        let cfg = Config::default();
        let s = TopicSettings::resolve(&cfg, &[("retention.ms".into(), "1000".into())]);
        assert_eq!(s.retention_ms, 1000);
        assert_eq!(s.max_message_bytes, cfg.max_message_bytes);
        assert!(!s.log_append_time);
        assert!(s.cleanup_delete && !s.cleanup_compact);
        let s = TopicSettings::resolve(&cfg, &[("cleanup.policy".into(), "compact, delete".into())]);
        assert!(s.cleanup_delete && s.cleanup_compact);
        let s = TopicSettings::resolve(&cfg, &[("cleanup.policy".into(), "compact".into())]);
        assert!(!s.cleanup_delete && s.cleanup_compact);
        assert_eq!((s.compression, s.compression_level), (None, None));
    }

    #[test]
    fn codec_settings_resolve() {
        let cfg = Config::default();
        let s = |o: &[(&str, &str)]| {
            let o: Vec<(KStr, KStr)> = o.iter().map(|(k, v)| (KStr::from(*k), KStr::from(*v))).collect();
            TopicSettings::resolve(&cfg, &o)
        };
        let zstd = s(&[("compression.type", "zstd")]);
        assert_eq!((zstd.compression, zstd.compression_level), (Some(Compression::Zstd), Some(3)));
        let zstd = s(&[("compression.type", "zstd"), ("compression.zstd.level", "-5")]);
        assert_eq!(zstd.compression_level, Some(-5));
        let gzip = s(&[("compression.type", "gzip")]);
        assert_eq!((gzip.compression, gzip.compression_level), (Some(Compression::Gzip), None));
        let gzip = s(&[("compression.type", "gzip"), ("compression.gzip.level", "9")]);
        assert_eq!(gzip.compression_level, Some(9));
        let lz4 = s(&[("compression.type", "lz4"), ("compression.lz4.level", "17")]);
        assert_eq!((lz4.compression, lz4.compression_level), (Some(Compression::Lz4), None));
        assert_eq!(s(&[("compression.type", "uncompressed")]).compression, Some(Compression::None));
        assert_eq!(s(&[("compression.type", "producer")]).compression, None);
    }
}
