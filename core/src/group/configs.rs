//! Per-group configs (KIP-848's GROUP config resource): a consumer group's own session timeout
//! and heartbeat interval, set with IncrementalAlterConfigs and read with DescribeConfigs, each
//! bounded by the broker's `group.consumer.min/max.*` settings. A group without an override
//! uses the broker's `group.consumer.session.timeout.ms` and
//! `group.consumer.heartbeat.interval.ms`. Pure: the handlers store the result.
//!
//! Stored under `group-configs/` + the group id. Value (version 1): `u8 1, i32 session_timeout_ms
//! (-1: none), i32 heartbeat_interval_ms (-1: none)`. A group with no override has no key.

use bytes::Bytes;

use crate::codec::{AlterConfigOp, DecodeError, ErrorCode, KStr, Reader, Writer};
use crate::config::Config;
use crate::error::KafkaError;
use crate::time::Duration;

/// Prefix of the keys of stored group configs.
pub const GROUP_CONFIG_PREFIX: &[u8] = b"group-configs/";

/// The group's session timeout.
pub const SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
/// The group's heartbeat interval.
pub const HEARTBEAT_INTERVAL: &str = "consumer.heartbeat.interval.ms";

/// One config of a group as DescribeConfigs lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    /// Its name.
    pub name: &'static str,
    /// Its value in effect.
    pub value: i64,
    /// Whether the group overrides the broker's value.
    pub overridden: bool,
    /// The broker setting that gives the default.
    pub broker_synonym: &'static str,
    /// The broker's value.
    pub broker_value: i64,
    /// What it does.
    pub doc: &'static str,
}

/// A group's overrides, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupConfig {
    /// `consumer.session.timeout.ms`.
    pub session_timeout_ms: Option<i32>,
    /// `consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: Option<i32>,
}

fn ms(v: Option<i32>, default: Duration) -> Duration {
    v.map_or(default, |v| Duration::from_millis(i64::from(v)))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn invalid(msg: String) -> KafkaError {
    KafkaError::new(ErrorCode::INVALID_CONFIG, msg)
}

impl GroupConfig {
    /// Whether the group overrides nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.session_timeout_ms.is_none() && self.heartbeat_interval_ms.is_none()
    }

    /// The session timeout in effect.
    #[must_use]
    pub fn session_timeout(&self, cfg: &Config) -> Duration {
        ms(self.session_timeout_ms, cfg.group_consumer_session_timeout)
    }

    /// The heartbeat interval in effect.
    #[must_use]
    pub fn heartbeat_interval(&self, cfg: &Config) -> Duration {
        ms(self.heartbeat_interval_ms, cfg.group_consumer_heartbeat_interval)
    }

    /// The overrides after one IncrementalAlterConfigs operation (not yet validated as a
    /// whole: see [`GroupConfig::validate`]).
    ///
    /// # Errors
    /// INVALID_CONFIG for an unknown name, a value that is not an integer, or a list operation;
    /// INVALID_REQUEST for a SET without a value.
    pub fn apply(mut self, name: &str, op: AlterConfigOp, value: Option<&str>) -> Result<Self, KafkaError> {
        let slot = match name {
            SESSION_TIMEOUT => &mut self.session_timeout_ms,
            HEARTBEAT_INTERVAL => &mut self.heartbeat_interval_ms,
            // Kafka checks the names of the resulting set: removing one it does not have is
            // no change.
            _ if op == AlterConfigOp::DELETE => return Ok(self),
            _ => return Err(invalid(format!("Unknown group config name: {name}"))),
        };
        match op {
            AlterConfigOp::SET => {
                let v = value.ok_or_else(|| {
                    KafkaError::new(ErrorCode::INVALID_REQUEST, format!("Null value not supported for {name}"))
                })?;
                let n = v.trim().parse::<i32>().map_err(|_| {
                    invalid(format!("Invalid value {v} for configuration {name}: Not a number of type INT"))
                })?;
                *slot = Some(n);
            }
            AlterConfigOp::DELETE => *slot = None,
            AlterConfigOp::APPEND | AlterConfigOp::SUBTRACT => {
                return Err(invalid(format!("Config {name} is not a list: APPEND and SUBTRACT do not apply")));
            }
            other => {
                return Err(KafkaError::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("Unknown config operation {}", other.0),
                ));
            }
        }
        Ok(self)
    }

    /// Checks the overrides against the broker's bounds, as Kafka's `GroupConfig.validate`.
    ///
    /// # Errors
    /// INVALID_CONFIG naming the bound a value breaks.
    pub fn validate(&self, cfg: &Config) -> Result<(), KafkaError> {
        if let Some(v) = self.heartbeat_interval_ms.map(i64::from) {
            if v < millis(cfg.group_consumer_min_heartbeat_interval) {
                return Err(invalid(format!(
                    "{HEARTBEAT_INTERVAL} must be greater than or equal to group.consumer.min.heartbeat.interval.ms"
                )));
            }
            if v > millis(cfg.group_consumer_max_heartbeat_interval) {
                return Err(invalid(format!(
                    "{HEARTBEAT_INTERVAL} must be less than or equal to group.consumer.max.heartbeat.interval.ms"
                )));
            }
        }
        if let Some(v) = self.session_timeout_ms.map(i64::from) {
            if v < millis(cfg.group_consumer_min_session_timeout) {
                return Err(invalid(format!(
                    "{SESSION_TIMEOUT} must be greater than or equal to group.consumer.min.session.timeout.ms"
                )));
            }
            if v > millis(cfg.group_consumer_max_session_timeout) {
                return Err(invalid(format!(
                    "{SESSION_TIMEOUT} must be less than or equal to group.consumer.max.session.timeout.ms"
                )));
            }
        }
        if millis(self.session_timeout(cfg)) <= millis(self.heartbeat_interval(cfg)) {
            return Err(invalid(format!("{SESSION_TIMEOUT} must be greater than {HEARTBEAT_INTERVAL}")));
        }
        Ok(())
    }

    /// Every group config, as DescribeConfigs lists them.
    #[must_use]
    pub fn describe(&self, cfg: &Config) -> Vec<Described> {
        vec![
            Described {
                name: HEARTBEAT_INTERVAL,
                value: millis(self.heartbeat_interval(cfg)),
                overridden: self.heartbeat_interval_ms.is_some(),
                broker_synonym: "group.consumer.heartbeat.interval.ms",
                broker_value: millis(cfg.group_consumer_heartbeat_interval),
                doc: "The heartbeat interval given to the members of this consumer group.",
            },
            Described {
                name: SESSION_TIMEOUT,
                value: millis(self.session_timeout(cfg)),
                overridden: self.session_timeout_ms.is_some(),
                broker_synonym: "group.consumer.session.timeout.ms",
                broker_value: millis(cfg.group_consumer_session_timeout),
                doc: "The timeout to detect client failures when using the consumer group protocol.",
            },
        ]
    }

    /// The stored value.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::contiguous(9);
        w.i8(1);
        w.i32(self.session_timeout_ms.unwrap_or(-1));
        w.i32(self.heartbeat_interval_ms.unwrap_or(-1));
        w.into_bytes()
    }

    /// Reads a stored value.
    ///
    /// # Errors
    /// When it is damaged or of an unknown version.
    pub fn decode(v: &Bytes) -> Result<Self, DecodeError> {
        const CTX: &str = "stored group config";
        let mut r = Reader::new(v);
        if r.i8(CTX)? != 1 {
            return Err(DecodeError::LengthOutOfRange(CTX));
        }
        let opt = |n: i32| (n >= 0).then_some(n);
        Ok(Self { session_timeout_ms: opt(r.i32(CTX)?), heartbeat_interval_ms: opt(r.i32(CTX)?) })
    }
}

/// The storage key of `group`'s configs.
#[must_use]
pub fn config_key(group: &str) -> Bytes {
    let mut k = Vec::with_capacity(GROUP_CONFIG_PREFIX.len() + group.len());
    k.extend_from_slice(GROUP_CONFIG_PREFIX);
    k.extend_from_slice(group.as_bytes());
    Bytes::from(k)
}

/// The group id of a stored config key.
#[must_use]
pub fn group_of(key: &Bytes) -> Option<KStr> {
    key.strip_prefix(GROUP_CONFIG_PREFIX)?;
    KStr::from_utf8(key.slice(GROUP_CONFIG_PREFIX.len()..)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(c: GroupConfig, name: &str, v: &str) -> Result<GroupConfig, KafkaError> {
        c.apply(name, AlterConfigOp::SET, Some(v))
    }

    #[test]
    fn overrides_are_bounded_by_the_broker() {
        let cfg = Config::default();
        let c = set(GroupConfig::default(), SESSION_TIMEOUT, "50000").expect("set");
        assert_eq!(c.validate(&cfg).map(|()| c.session_timeout(&cfg)), Ok(Duration::from_millis(50_000)));
        for (name, v) in [(SESSION_TIMEOUT, "44999"), (SESSION_TIMEOUT, "60001"), (HEARTBEAT_INTERVAL, "4999")] {
            let c = set(GroupConfig::default(), name, v).expect("set");
            assert_eq!(c.validate(&cfg).map_err(|e| e.code), Err(ErrorCode::INVALID_CONFIG), "{name}={v}");
        }
        let cfg = Config { group_consumer_max_heartbeat_interval: Duration::from_secs(60), ..Config::default() };
        let c = set(GroupConfig::default(), HEARTBEAT_INTERVAL, "45000").expect("set");
        let e = c.validate(&cfg).expect_err("not below the session timeout");
        assert_eq!(e.message, "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms");
        assert_eq!(
            set(GroupConfig::default(), "consumer.assignor", "range").map_err(|e| e.code),
            Err(ErrorCode::INVALID_CONFIG)
        );
        assert_eq!(
            set(GroupConfig::default(), SESSION_TIMEOUT, "soon").map_err(|e| e.code),
            Err(ErrorCode::INVALID_CONFIG)
        );
    }

    #[test]
    fn delete_goes_back_to_the_broker_default_and_values_round_trip() {
        let cfg = Config::default();
        let c = set(GroupConfig::default(), HEARTBEAT_INTERVAL, "6000").expect("set");
        assert_eq!(GroupConfig::decode(&c.encode()), Ok(c));
        let c = c.apply(HEARTBEAT_INTERVAL, AlterConfigOp::DELETE, None).expect("delete");
        assert_eq!(c.apply("consumer.assignor", AlterConfigOp::DELETE, None).map_err(|e| e.code), Ok(c));
        assert!(c.is_empty());
        assert_eq!(c.heartbeat_interval(&cfg), cfg.group_consumer_heartbeat_interval);
        assert!(GroupConfig::decode(&Bytes::from_static(&[1, 0])).is_err());
        assert_eq!(group_of(&config_key("g1")).as_deref(), Some("g1"));
    }
}
