//! [`Cluster`]: what the store's tasks share, and how they reach SeaweedFS.
//!
//! Owns the gRPC channels (one per address, opened lazily), the caches of topics, placements and
//! read sessions, and the deadline and error mapping every RPC goes through. It makes no RPC of
//! its own: discovery, filer files, topics, reads, recovery and the publisher build on it.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashMap;
use kelp_core::codec::Uuid;
use kelp_core::io::StorageError;
use tokio::time::timeout;
use tonic::transport::{Channel, Endpoint};

use super::SeaweedMqConfig;
use super::pb::filer_pb::seaweed_filer_client::SeaweedFilerClient;
use super::pb::master_pb::seaweed_client::SeaweedClient;
use super::pb::messaging_pb::seaweed_messaging_client::SeaweedMessagingClient;
use super::pb::schema_pb;
use super::persisted::Persisted;
use super::session::SessionPool;
use super::topics::{Placement, TopicInfo};
use super::typed::Shapes;

/// Largest gRPC message kelp accepts from SeaweedFS.
const MAX_MESSAGE: usize = 64 << 20;

/// Everything shared by the store's tasks.
pub struct Cluster {
    /// How to reach the cluster, and the deadlines.
    pub(super) cfg: SeaweedMqConfig,
    /// The master (gRPC `host:port`).
    master_addr: String,
    /// The broker that answers topic-level requests (gRPC `host:port`).
    pub(super) broker_addr: String,
    /// The filer holding kelp's metadata files (gRPC `host:port`).
    pub(super) filer_addr: String,
    /// One shared channel per address.
    channels: Mutex<HashMap<String, Channel>>,
    /// The topics kelp knows, by id.
    pub(super) topics: Mutex<HashMap<Uuid, TopicInfo>>,
    /// Each topic's partitions as the broker last reported them, by topic name.
    pub(super) placements: Mutex<HashMap<String, Vec<Placement>>>,
    /// Subscriptions kept open between reads.
    pub(super) sessions: SessionPool,
    /// What SeaweedMQ has persisted of each partition, and the broker generation.
    pub(super) persisted: Persisted,
    /// The typed topics' shapes, by topic name, as their `RecordType`s were last set or read;
    /// held while one is widened so that partitions of a topic widen it one at a time.
    pub(super) shapes: tokio::sync::Mutex<Shapes>,
}

impl Cluster {
    /// A handle on the cluster whose master, broker and filer are at these gRPC addresses.
    pub(super) fn new(cfg: SeaweedMqConfig, master_addr: String, broker_addr: String, filer_addr: String) -> Self {
        Self {
            cfg,
            master_addr,
            broker_addr,
            filer_addr,
            channels: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            placements: Mutex::new(HashMap::new()),
            sessions: SessionPool::default(),
            persisted: Persisted::new(),
            shapes: tokio::sync::Mutex::new(Shapes::new()),
        }
    }

    /// The shared channel to `addr`, opened on first use.
    fn channel(&self, addr: &str) -> Channel {
        let mut chans = lock(&self.channels);
        if let Some(c) = chans.get(addr) {
            return c.clone();
        }
        let ch = lazy_channel(addr, endpoint);
        chans.insert(addr.to_owned(), ch.clone());
        ch
    }

    /// A broker client on the shared channel to `addr`.
    pub(super) fn broker(&self, addr: &str) -> SeaweedMessagingClient<Channel> {
        SeaweedMessagingClient::new(self.channel(addr)).max_decoding_message_size(MAX_MESSAGE)
    }

    /// A broker client on a connection of its own, for one subscription. A read session that
    /// nobody is reading holds its stream's unread messages against its connection's flow
    /// control window; if subscriptions shared a connection, a few idle sessions (kept for
    /// later reads) would leave no window for a new subscription, which would then deliver a
    /// few hundred messages and stop.
    pub(super) fn subscriber(addr: &str) -> SeaweedMessagingClient<Channel> {
        let ch = lazy_channel(addr, |a| {
            Ok(endpoint(a)?.initial_connection_window_size(8 << 20).initial_stream_window_size(8 << 20))
        });
        SeaweedMessagingClient::new(ch).max_decoding_message_size(MAX_MESSAGE)
    }

    /// A client of the master.
    pub(super) fn master(&self) -> SeaweedClient<Channel> {
        SeaweedClient::new(self.channel(&self.master_addr))
    }

    /// A client of the filer.
    pub(super) fn filer(&self) -> SeaweedFilerClient<Channel> {
        SeaweedFilerClient::new(self.channel(&self.filer_addr)).max_decoding_message_size(MAX_MESSAGE)
    }

    /// The SeaweedMQ topic `name` in kelp's namespace.
    pub(super) fn topic(&self, name: &str) -> schema_pb::Topic {
        schema_pb::Topic { namespace: self.cfg.namespace.clone(), name: name.to_owned() }
    }

    /// The filer directory of one kind of kelp metadata (`topics`, `kv`, `logstart`).
    pub(super) fn meta_dir(&self, sub: &str) -> String {
        format!("/kelp/{}/{sub}", self.cfg.namespace)
    }

    /// Runs one unary RPC (or opens one stream) under the RPC deadline. gRPC's `NotFound`
    /// becomes [`StorageError::NotFound`], a missed deadline [`StorageError::Timeout`], and any
    /// other failure [`StorageError::Unavailable`].
    pub(super) async fn rpc<T, F: Future<Output = Result<tonic::Response<T>, tonic::Status>>>(
        &self,
        what: &str,
        f: F,
    ) -> Result<T, StorageError> {
        match timeout(self.cfg.rpc_timeout, f).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Err(StorageError::NotFound),
            Ok(Err(s)) => Err(unavailable(what)(s)),
            Err(_) => {
                tracing::warn!("seaweedmq: {what} timed out");
                Err(StorageError::Timeout)
            }
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Locks `m`, carrying on past a poisoned lock: each critical section on these maps is a
/// single lookup, insert or removal, so a panic elsewhere leaves them usable.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Logs a failed `what` and reports it as [`StorageError::Unavailable`].
pub(super) fn unavailable<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StorageError + '_ {
    move |e| {
        tracing::warn!(error = %e, "seaweedmq: {what} failed");
        StorageError::Unavailable
    }
}

/// The connection settings kelp uses for every SeaweedFS address.
pub(super) fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        // Many small acks: h2's default windows make the client give up on its own stream.
        .initial_connection_window_size(64 << 20)
        .initial_stream_window_size(32 << 20))
}

/// A channel to `addr` that connects on first use. An address the broker handed out that is
/// not a URI gets a channel that never connects, so its RPCs fail as unavailable.
fn lazy_channel(addr: &str, make: impl FnOnce(&str) -> Result<Endpoint, tonic::transport::Error>) -> Channel {
    match make(addr) {
        Ok(e) => e.connect_lazy(),
        Err(_) => Endpoint::from_static("http://0.0.0.0:1").connect_lazy(),
    }
}
