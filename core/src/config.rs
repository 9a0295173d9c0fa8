//! Broker configuration: identity, limits and the defaults topics inherit.
//!
//! Plain data; the CLI fills it from flags, files and the environment. Topic-level configs
//! (retention, message size, timestamp type, ...) are described in [`crate::topics::CONFIGS`].

use crate::codec::KStr;
use crate::time::Duration;

/// Everything the broker core is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id, as clients see it in metadata.
    pub node_id: i32,
    /// The listeners, in the order the driver numbers them ([`crate::io::Origin::listener`]):
    /// each one's security protocol and the address clients that come in through it are told
    /// to connect to. Never empty.
    pub listeners: Vec<Listener>,
    /// The SASL mechanisms SASL listeners offer (SaslHandshake lists them in this order).
    pub sasl_mechanisms: Vec<crate::security::Mechanism>,
    /// The rack reported in metadata, if any.
    pub rack: Option<KStr>,
    /// The cluster id reported in metadata (22-character base64 like Kafka's, or any string).
    pub cluster_id: KStr,
    /// Requests whose size prefix exceeds this close the connection.
    pub max_request_size: usize,
    /// Unanswered requests a connection may have before the core asks the driver to stop
    /// reading it ([`crate::Output::PauseRead`]).
    pub max_in_flight_per_conn: usize,
    /// Response bytes a connection may have unwritten (emitted but not yet reported
    /// [`crate::Input::Written`]) before the broker stops reading its requests.
    pub max_unwritten_per_conn: usize,
    /// Create unknown topics on Metadata (when the client allows) and on Produce.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics asking for -1.
    pub default_partitions: i32,
    /// The only replication factor a single node can honour.
    pub default_replication_factor: i16,
    /// The broker's default for `max.message.bytes` (Kafka: `message.max.bytes`).
    pub max_message_bytes: i32,
    /// The broker's default for `retention.ms` (Kafka: `log.retention.ms`).
    pub retention_ms: i64,
    /// The broker's default for `retention.bytes`.
    pub retention_bytes: i64,
    /// The broker's default for `segment.bytes` (Kafka: `log.segment.bytes`); the store rolls
    /// segments, this is what DescribeConfigs reports.
    pub segment_bytes: u64,
    /// How often retention is applied (Kafka: `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// How often the log cleaner looks at compacted partitions (Kafka:
    /// `log.cleaner.backoff.ms`, 15 s): each look sends one clean command per partition whose
    /// topic's `cleanup.policy` includes `compact`, and the store decides whether it is dirty
    /// enough to clean.
    pub cleaner_backoff: Duration,
    /// The broker's default for `message.timestamp.type`: LogAppendTime when true.
    pub log_append_time: bool,
    /// Most incremental fetch sessions kept at once (KIP-227); the oldest idle one is evicted.
    pub max_fetch_sessions: usize,
    /// Largest uncompressed size a batch may expand to when the broker must look inside it.
    pub max_decompressed_batch: usize,
    /// How long a fetch session may sit idle before it can be evicted.
    pub fetch_session_idle: Duration,
    /// How long the first rebalance of an empty group waits for more members, extended per
    /// joiner up to the rebalance timeout (Kafka: `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay: Duration,
    /// Most members a classic group admits (Kafka: `group.max.size`); bounds every group.
    pub group_max_size: usize,
    /// Shortest session timeout a member may ask for (Kafka: `group.min.session.timeout.ms`).
    pub group_min_session_timeout: Duration,
    /// Longest session timeout a member may ask for (Kafka: `group.max.session.timeout.ms`).
    pub group_max_session_timeout: Duration,
    /// How long a member that joined but was never answered is kept (Kafka's
    /// `classicGroupNewMemberJoinTimeoutMs`, 5 minutes).
    pub group_new_member_join_timeout: Duration,
    /// Longest metadata string an offset commit may carry (Kafka: `offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// A KIP-848 consumer group member is fenced when no heartbeat arrives for this long
    /// (Kafka: `group.consumer.session.timeout.ms`, 45 s).
    pub group_consumer_session_timeout: Duration,
    /// How often KIP-848 members are told to heartbeat (Kafka:
    /// `group.consumer.heartbeat.interval.ms`, 5 s).
    pub group_consumer_heartbeat_interval: Duration,
    /// Bounds of a group's own `consumer.session.timeout.ms` (Kafka:
    /// `group.consumer.min.session.timeout.ms`, 45 s, and `...max...`, 60 s).
    pub group_consumer_min_session_timeout: Duration,
    /// See [`Config::group_consumer_min_session_timeout`].
    pub group_consumer_max_session_timeout: Duration,
    /// Bounds of a group's own `consumer.heartbeat.interval.ms` (Kafka:
    /// `group.consumer.min.heartbeat.interval.ms`, 5 s, and `...max...`, 15 s).
    pub group_consumer_min_heartbeat_interval: Duration,
    /// See [`Config::group_consumer_min_heartbeat_interval`].
    pub group_consumer_max_heartbeat_interval: Duration,
    /// The server assignors KIP-848 members may ask for, the first the default (Kafka:
    /// `group.consumer.assignors`, `uniform,range`).
    pub group_consumer_assignors: Vec<&'static str>,
    /// Which way a live group may move between the classic and the consumer protocol (Kafka:
    /// `group.consumer.migration.policy`, `bidirectional`).
    pub group_consumer_migration_policy: MigrationPolicy,
    /// The longest `transaction.timeout.ms` a producer may ask for (Kafka:
    /// `transaction.max.timeout.ms`, 15 minutes).
    pub transaction_max_timeout_ms: i32,
    /// How often the coordinator looks for transactions past their timeout and aborts them
    /// (Kafka: `transaction.abort.timed.out.transaction.cleanup.interval.ms`, 10 s; kelp 1 s).
    pub transaction_abort_interval: Duration,
    /// Whether ACLs are checked (Kafka: an `authorizer.class.name` is set). Off, every
    /// principal may do everything.
    pub authorizer: bool,
    /// Principals that may do everything when ACLs are checked (Kafka: `super.users`).
    pub super_users: Vec<KStr>,
    /// Whether a resource that no ACL names is open to every principal (Kafka:
    /// `allow.everyone.if.no.acl.found`).
    pub allow_everyone_if_no_acl_found: bool,
}

impl Config {
    /// The listener numbered `listener`, whose address clients that came through it are
    /// told; the first one for in-process connections (and numbers it does not know).
    #[must_use]
    pub fn advertised(&self, listener: u16) -> &Listener {
        let first = self.listeners.first().expect("the configuration has a listener");
        self.listeners.get(usize::from(listener)).unwrap_or(first)
    }
}

/// One listener as the core sees it: a name, a security protocol and the advertised address
/// (Kafka's `listeners`, `listener.security.protocol.map` and `advertised.listeners`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The listener's name (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, ...).
    pub name: KStr,
    /// How connections through it are secured.
    pub protocol: SecurityProtocol,
    /// The host clients that come in through it are told to connect to.
    pub host: KStr,
    /// The port clients that come in through it are told to connect to.
    pub port: i32,
}

impl Listener {
    /// A PLAINTEXT listener named `PLAINTEXT` advertising `host:port`.
    #[must_use]
    pub fn plaintext(host: &str, port: i32) -> Self {
        Self { name: KStr::from("PLAINTEXT"), protocol: SecurityProtocol::Plaintext, host: KStr::from(host), port }
    }
}

/// Kafka's four security protocols: whether a listener speaks TLS, and whether its clients
/// authenticate with SASL before anything else is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// Clear text, no authentication (the principal is `User:ANONYMOUS`).
    Plaintext,
    /// TLS; the principal is the client certificate's subject, else `User:ANONYMOUS`.
    Ssl,
    /// SASL over clear text.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Every protocol, by its Kafka name.
    pub const ALL: [Self; 4] = [Self::Plaintext, Self::Ssl, Self::SaslPlaintext, Self::SaslSsl];

    /// The protocol's Kafka name (`SASL_SSL`, ...).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol named `s` (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s))
    }

    /// Whether clients must authenticate with SASL.
    #[must_use]
    pub const fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// Whether the connection is TLS.
    #[must_use]
    pub const fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// Kafka's `group.consumer.migration.policy`: whether a classic group with members turns into
/// a consumer group when a KIP-848 member joins it (upgrade), and whether a consumer group whose
/// last KIP-848 member left, with classic members still in it, turns back (downgrade).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Neither.
    Disabled,
    /// Classic to consumer only.
    Upgrade,
    /// Consumer to classic only.
    Downgrade,
    /// Both ways.
    #[default]
    Bidirectional,
}

impl MigrationPolicy {
    /// The names the setting takes, as Kafka spells them (case-insensitive).
    pub const NAMES: [&'static str; 4] = ["disabled", "upgrade", "downgrade", "bidirectional"];

    /// The policy named `s` (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Disabled, Self::Upgrade, Self::Downgrade, Self::Bidirectional]
            .into_iter()
            .zip(Self::NAMES)
            .find(|(_, n)| n.eq_ignore_ascii_case(s.trim()))
            .map(|(p, _)| p)
    }

    /// Whether a classic group may become a consumer group.
    #[must_use]
    pub const fn upgrades(self) -> bool {
        matches!(self, Self::Upgrade | Self::Bidirectional)
    }

    /// Whether a consumer group may become a classic group.
    #[must_use]
    pub const fn downgrades(self) -> bool {
        matches!(self, Self::Downgrade | Self::Bidirectional)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 1,
            listeners: vec![Listener::plaintext("127.0.0.1", 9092)],
            sasl_mechanisms: crate::security::Mechanism::DEFAULT.to_vec(),
            rack: None,
            cluster_id: KStr::from_static("kelp-cluster-0000000000"),
            max_request_size: 100 * 1024 * 1024,
            max_in_flight_per_conn: 256,
            max_unwritten_per_conn: 16 * 1024 * 1024,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            max_message_bytes: 1_048_588,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            retention_check_interval: Duration::from_secs(300),
            cleaner_backoff: Duration::from_secs(15),
            log_append_time: false,
            max_fetch_sessions: 1000,
            max_decompressed_batch: 64 * 1024 * 1024,
            fetch_session_idle: Duration::from_secs(120),
            group_initial_rebalance_delay: Duration::from_secs(3),
            group_max_size: 10_000,
            group_min_session_timeout: Duration::from_secs(6),
            group_max_session_timeout: Duration::from_secs(1800),
            group_new_member_join_timeout: Duration::from_secs(300),
            offset_metadata_max_bytes: 4096,
            group_consumer_session_timeout: Duration::from_secs(45),
            group_consumer_heartbeat_interval: Duration::from_secs(5),
            group_consumer_min_session_timeout: Duration::from_secs(45),
            group_consumer_max_session_timeout: Duration::from_secs(60),
            group_consumer_min_heartbeat_interval: Duration::from_secs(5),
            group_consumer_max_heartbeat_interval: Duration::from_secs(15),
            group_consumer_assignors: vec!["uniform", "range"],
            group_consumer_migration_policy: MigrationPolicy::Bidirectional,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_interval: Duration::from_millis(1_000),
            authorizer: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
        }
    }
}
