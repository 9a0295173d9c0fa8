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

use crate::codec::KStr;
use crate::config::Config;
use crate::io::ConnId;
use crate::io::PartitionKey;
use crate::request::Req;
use crate::rng::Rng;
use crate::security::acl::{Operation, ResourceType};
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
    /// The ACLs and how they are applied.
    pub authz: crate::security::acl::Authorizer,
    /// Who each authenticated connection is: its principal and host (the broker keeps this
    /// up to date), for authorization.
    pub who: HashMap<ConnId, Who>,
}

/// An authenticated connection's identity, as ACLs name it.
#[derive(Clone, Debug)]
pub(crate) struct Who {
    /// `User:name`.
    pub principal: KStr,
    /// The peer's address, as ACLs' hosts are written.
    pub host: KStr,
}

impl State {
    /// Whether the connection that sent `req` may perform `op` on `rtype`/`name` (always,
    /// when ACLs are not checked). A connection the broker no longer knows may not.
    pub(crate) fn allowed(&self, req: &Req, op: Operation, rtype: ResourceType, name: &str) -> bool {
        if !self.authz.enabled {
            return true;
        }
        self.who.get(&req.conn).is_some_and(|w| self.authz.authorize(&w.principal, &w.host, op, rtype, name))
    }

    /// The `authorized_operations` bits of `rtype`/`name` for the connection that sent `req`.
    pub(crate) fn authorized_operations(&self, req: &Req, rtype: ResourceType, name: &str) -> i32 {
        if !self.authz.enabled {
            return Operation::bits(Operation::for_resource(rtype).iter().copied());
        }
        self.who.get(&req.conn).map_or(0, |w| self.authz.operations(&w.principal, &w.host, rtype, name))
    }

    /// Whether the connection may perform `op` on some resource of type `rtype` (Kafka's
    /// `authorizeByResourceType`: an ALLOW for it on some name or prefix that no DENY of the
    /// whole type cancels).
    pub(crate) fn allowed_on_some(&self, req: &Req, op: Operation, rtype: ResourceType) -> bool {
        if !self.authz.enabled {
            return true;
        }
        self.who.get(&req.conn).is_some_and(|w| self.authz.authorize_any(&w.principal, &w.host, op, rtype))
    }
}

impl State {
    /// An empty state: no topics, no groups.
    pub(crate) fn new(cfg: Config, seed: u64, now: Now) -> Self {
        let authz = crate::security::acl::Authorizer {
            enabled: cfg.authorizer,
            super_users: cfg.super_users.clone(),
            allow_if_no_acl: cfg.allow_everyone_if_no_acl_found,
            acls: crate::security::acl::Acls::default(),
        };
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
            authz,
            who: HashMap::new(),
        }
    }
}
