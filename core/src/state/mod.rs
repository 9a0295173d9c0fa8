//! The state handlers read and change: the topic table and its partition logs, consumer
//! groups, producer ids, fetch sessions, and requests waiting on a partition's high
//! watermark.
//!
//! Nothing here knows about connections, output queues or command ids: those are the
//! broker's plumbing, and handlers reach them only through their effect sink
//! ([`crate::api::Effects`]). A `State` can be built on its own, which is how handler unit
//! tests run without a broker.

pub(crate) mod fetch_sessions;
pub(crate) mod producer_ids;
pub(crate) mod topic_table;
pub(crate) mod transactions;

use hashbrown::HashMap;

use crate::config::Config;
use crate::io::PartitionKey;
use crate::rng::Rng;
use crate::time::Now;

pub(crate) use fetch_sessions::FetchSessions;
pub(crate) use producer_ids::ProducerIds;
pub(crate) use topic_table::{Topic, TopicTable};

/// A parked request's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

/// A part of a parked job that resumes once a partition's high watermark (or, unless
/// `durable`, its stored end) reaches `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HwmWaiter {
    /// The offset the high watermark must reach.
    pub target: i64,
    /// Whether the records must be durable (acks=-1) or only stored (acks=1).
    pub durable: bool,
    /// The job.
    pub job: JobId,
    /// The job's part.
    pub part: usize,
}

/// Requests waiting on partitions.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Job parts waiting for a partition's high watermark to reach an offset (acks=-1/1
    /// produce waits here for its append to become visible).
    pub hwm: HashMap<PartitionKey, Vec<HwmWaiter>>,
    /// Long-polling fetches to look at again when a partition's high watermark moves.
    pub fetch: HashMap<PartitionKey, Vec<JobId>>,
}

/// The broker's state, without its plumbing.
#[derive(Debug)]
pub(crate) struct State {
    /// The configuration.
    pub cfg: Config,
    /// Every random choice (topic ids, member ids, session ids) is drawn from this.
    pub rng: Rng,
    /// The time of the input being handled.
    pub now: Now,
    /// Topics and their partitions.
    pub topics: TopicTable,
    /// Consumer groups (classic and KIP-848) and committed offsets.
    pub groups: crate::group::Groups,
    /// Producer id allocation.
    pub producer_ids: ProducerIds,
    /// The transaction coordinator's table.
    pub txns: transactions::Transactions,
    /// KIP-227 fetch sessions.
    pub sessions: FetchSessions,
    /// Requests waiting on partitions.
    pub waiters: Waiters,
    /// Log cleaner passes outstanding and the dirty ratios partitions reported.
    pub cleaning: crate::api::cleaning::Cleaning,
    /// The schema registry's view that topics with schema validation check records against.
    pub schemas: Option<std::sync::Arc<dyn crate::schemas::SchemaCatalog>>,
    /// Secrets (SCRAM nonces) are drawn from this, never from `rng`.
    pub secrets: crate::security::SecretRng,
    /// Users' SCRAM credentials.
    pub credentials: crate::security::scram::Credentials,
}

impl State {
    /// An empty state: no topics, no groups.
    pub(crate) fn new(cfg: Config, seed: u64, now: Now) -> Self {
        Self {
            cfg,
            rng: Rng::new(seed),
            now,
            topics: TopicTable::default(),
            groups: crate::group::Groups::default(),
            producer_ids: ProducerIds::default(),
            txns: transactions::Transactions::default(),
            sessions: FetchSessions::default(),
            waiters: Waiters::default(),
            cleaning: crate::api::cleaning::Cleaning::default(),
            schemas: None,
            secrets: crate::security::SecretRng::from_seed(seed),
            credentials: crate::security::scram::Credentials::default(),
        }
    }
}
