//! The cluster connection: discovery, topics and metadata files, the publisher task and reads.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hashbrown::HashMap;
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{BatchSummary, PartitionExtent, PartitionKey, Recovered, StorageError, TopicRecord};
use kelp_core::log::PRODUCER_BATCHES;
use kelp_core::{Command, Completion};
use smallvec::SmallVec;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tonic::transport::{Channel, Endpoint};

use super::envelope::{self, Envelope};
use super::pb::filer_pb::{self, seaweed_filer_client::SeaweedFilerClient};
use super::pb::master_pb::{self, seaweed_client::SeaweedClient};
use super::pb::messaging_pb::{
    self, publish_message_request, seaweed_messaging_client::SeaweedMessagingClient, subscribe_message_request,
    subscribe_message_response,
};
use super::pb::schema_pb;
use super::{Job, SeaweedMqConfig, StartError, grpc_address};

/// SeaweedMQ's partition ring size.
pub const RING: i32 = 2520;
/// Records scanned at the end of each partition on recovery, for producer state.
const TAIL_SCAN: i64 = 2000;
/// Messages buffered ahead per read session.
const READ_AHEAD: usize = 32768;
/// How long a read waits on a subscription for a record it knows exists before subscribing
/// again at that offset.
const STALL: Duration = Duration::from_millis(20);
/// How long a new subscription may take to deliver its first message before it is replaced.
const FIRST_MESSAGE: Duration = Duration::from_secs(5);
/// Read sessions kept per partition.
const SESSIONS_PER_PARTITION: usize = 8;
/// A `RecoverPartition` attempt's deadline, in RPC deadlines.
const RECOVER_ATTEMPTS: u32 = 3;
/// Messages in flight per publish stream before the publisher waits for acks.
const PUBLISH_WINDOW: usize = 65536;

#[derive(Clone, Debug)]
struct TopicInfo {
    name: String,
    partitions: i32,
}

/// A partition as the broker names it, and who leads it.
#[derive(Clone, Debug)]
struct Placement {
    partition: schema_pb::Partition,
    leader: String,
}

/// An open subscription positioned at `next`.
struct Session {
    next: i64,
    /// A record past the end of the read that took it off the subscription (the offsets
    /// before it hold nothing), for the next read.
    held: Option<Envelope>,
    /// Whether the subscription has delivered anything yet. A new one may need seconds
    /// before its first message (SeaweedMQ reads what it flushed back from the filer); one
    /// that delivered and then went quiet below the end is the stall `read_records` works
    /// around.
    delivered: bool,
    rx: mpsc::Receiver<Result<Bytes, StorageError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything shared by the store's tasks.
pub struct Cluster {
    cfg: SeaweedMqConfig,
    broker_addr: String,
    filer_addr: String,
    channels: Mutex<HashMap<String, Channel>>,
    topics: Mutex<HashMap<Uuid, TopicInfo>>,
    placements: Mutex<HashMap<String, Vec<Placement>>>,
    sessions: Mutex<HashMap<PartitionKey, Vec<Session>>>,
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unavailable<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StorageError + '_ {
    move |e| {
        tracing::warn!(error = %e, "seaweedmq: {what} failed");
        StorageError::Unavailable
    }
}

fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        // Many small acks: h2's default windows make the client give up on its own stream.
        .initial_connection_window_size(64 << 20)
        .initial_stream_window_size(32 << 20))
}

/// Kafka partition `i` of `n` as a ring range.
#[must_use]
pub fn ring_range(i: i32, n: i32) -> (i32, i32) {
    let w = RING / n.max(1);
    let start = i * w;
    let stop = if i == n - 1 { RING } else { start + w };
    (start, stop)
}

impl Cluster {
    pub(super) async fn connect(cfg: SeaweedMqConfig) -> Result<Self, StartError> {
        let master = grpc_address(&cfg.master)
            .ok_or_else(|| StartError(format!("bad master address {:?} (want host:port.grpcPort)", cfg.master)))?;
        let ch = endpoint(&master)
            .map_err(|e| StartError(format!("master {master}: {e}")))?
            .connect()
            .await
            .map_err(|e| StartError(format!("cannot reach the SeaweedFS master at {master}: {e}")))?;
        let mut m = SeaweedClient::new(ch);
        let mut find = async |kind: &str| -> Result<String, StartError> {
            let deadline = tokio::time::Instant::now() + cfg.rpc_timeout * 3;
            loop {
                let req = master_pb::ListClusterNodesRequest { client_type: kind.into(), ..Default::default() };
                if let Ok(r) = m.list_cluster_nodes(req).await
                    && let Some(n) = r.into_inner().cluster_nodes.into_iter().next()
                {
                    return Ok(n.address);
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(StartError(format!("the master at {master} knows no {kind}")));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        let broker_addr = find("broker").await?;
        let filer = find("filer").await?;
        let filer_addr =
            grpc_address(&filer).ok_or_else(|| StartError(format!("bad filer address {filer:?} from the master")))?;
        tracing::info!(broker = %broker_addr, filer = %filer_addr, "seaweedmq: discovered");
        let c = Self {
            cfg,
            broker_addr,
            filer_addr,
            channels: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            placements: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        };
        // The broker accepts connections before it can serve: wait until it lists topics.
        let deadline = tokio::time::Instant::now() + c.cfg.rpc_timeout * 6;
        loop {
            match c.broker(&c.broker_addr).list_topics(messaging_pb::ListTopicsRequest {}).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(StartError(format!("the SeaweedMQ broker at {} does not serve: {e}", c.broker_addr)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        Ok(c)
    }

    fn channel(&self, addr: &str) -> Channel {
        let mut chans = lock(&self.channels);
        if let Some(c) = chans.get(addr) {
            return c.clone();
        }
        let ch = match endpoint(addr) {
            Ok(e) => e.connect_lazy(),
            // An address the broker handed out that is not a URI: a channel that never connects.
            Err(_) => Endpoint::from_static("http://0.0.0.0:1").connect_lazy(),
        };
        chans.insert(addr.to_owned(), ch.clone());
        ch
    }

    fn broker(&self, addr: &str) -> SeaweedMessagingClient<Channel> {
        SeaweedMessagingClient::new(self.channel(addr)).max_decoding_message_size(64 << 20)
    }

    /// A broker client on a connection of its own, for one subscription. A read session
    /// that nobody is reading holds its stream's unread messages against its connection's
    /// window; on the shared connection a few such sessions (kept for later reads) left no
    /// window for new subscriptions, which then delivered a few hundred messages and
    /// stopped.
    fn subscriber(addr: &str) -> SeaweedMessagingClient<Channel> {
        let ch = match endpoint(addr) {
            Ok(e) => e.initial_connection_window_size(8 << 20).initial_stream_window_size(8 << 20).connect_lazy(),
            Err(_) => Endpoint::from_static("http://0.0.0.0:1").connect_lazy(),
        };
        SeaweedMessagingClient::new(ch).max_decoding_message_size(64 << 20)
    }

    fn filer(&self) -> SeaweedFilerClient<Channel> {
        SeaweedFilerClient::new(self.channel(&self.filer_addr)).max_decoding_message_size(64 << 20)
    }

    fn topic(&self, name: &str) -> schema_pb::Topic {
        schema_pb::Topic { namespace: self.cfg.namespace.clone(), name: name.to_owned() }
    }

    fn meta_dir(&self, sub: &str) -> String {
        format!("/kelp/{}/{sub}", self.cfg.namespace)
    }

    async fn rpc<T, F: Future<Output = Result<tonic::Response<T>, tonic::Status>>>(
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

    // ---- filer files ----

    async fn put_file(&self, dir: &str, name: &str, content: Bytes) -> Result<(), StorageError> {
        let secs = now_ns() / 1_000_000_000;
        let entry = filer_pb::Entry {
            name: name.to_owned(),
            is_directory: false,
            attributes: Some(filer_pb::FuseAttributes {
                file_size: content.len() as u64,
                mtime: secs,
                file_mode: 0o644,
                crtime: secs,
            }),
            content,
        };
        let req = filer_pb::CreateEntryRequest { directory: dir.to_owned(), entry: Some(entry), ..Default::default() };
        let r = self.rpc("filer CreateEntry", self.filer().create_entry(req)).await?;
        if r.error.is_empty() {
            Ok(())
        } else {
            tracing::warn!(dir, name, error = %r.error, "seaweedmq: filer CreateEntry refused");
            Err(StorageError::Unavailable)
        }
    }

    async fn delete_path(&self, dir: &str, name: &str) -> Result<(), StorageError> {
        let req = filer_pb::DeleteEntryRequest {
            directory: dir.to_owned(),
            name: name.to_owned(),
            is_delete_data: true,
            is_recursive: true,
            ignore_recursive_error: true,
        };
        match self.rpc("filer DeleteEntry", self.filer().delete_entry(req)).await {
            Ok(r) if r.error.is_empty() || r.error.contains("not found") => Ok(()),
            Ok(r) => {
                tracing::warn!(dir, name, error = %r.error, "seaweedmq: filer DeleteEntry refused");
                Err(StorageError::Unavailable)
            }
            Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every file in `dir` (none if it does not exist), with its inline content.
    async fn list_files(&self, dir: &str) -> Result<Vec<(String, Bytes)>, StorageError> {
        let mut out = Vec::new();
        let mut start = String::new();
        loop {
            let req = filer_pb::ListEntriesRequest {
                directory: dir.to_owned(),
                start_from_file_name: start.clone(),
                inclusive_start_from: false,
                limit: 1024,
                ..Default::default()
            };
            let mut stream = match self.rpc("filer ListEntries", self.filer().list_entries(req)).await {
                Ok(s) => s,
                Err(StorageError::NotFound) => return Ok(out),
                Err(e) => return Err(e),
            };
            let mut n = 0;
            loop {
                match timeout(self.cfg.rpc_timeout, stream.message()).await {
                    Ok(Ok(Some(r))) => {
                        let Some(e) = r.entry else { continue };
                        n += 1;
                        start.clone_from(&e.name);
                        if !e.is_directory {
                            out.push((e.name, e.content));
                        }
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(s)) if s.code() == tonic::Code::NotFound => return Ok(out),
                    Ok(Err(s)) => return Err(unavailable("filer ListEntries")(s)),
                    Err(_) => return Err(StorageError::Timeout),
                }
            }
            if n < 1024 {
                return Ok(out);
            }
        }
    }

    // ---- topics and partitions ----

    async fn placements(&self, name: &str, refresh: bool) -> Result<Vec<Placement>, StorageError> {
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

    /// The broker's partition for `key` and its leader.
    async fn place(&self, key: PartitionKey, refresh: bool) -> Result<(String, Placement), StorageError> {
        let info = lock(&self.topics).get(&key.topic_id).cloned().ok_or(StorageError::NotFound)?;
        let (start, stop) = ring_range(key.partition, info.partitions);
        let all = self.placements(&info.name, refresh).await?;
        let p = all
            .into_iter()
            .find(|p| p.partition.range_start == start && p.partition.range_stop == stop)
            .ok_or(StorageError::NotFound)?;
        Ok((info.name, p))
    }

    /// (earliest offset, high watermark) of a partition.
    async fn range(&self, name: &str, p: &Placement) -> Result<(i64, i64), StorageError> {
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

    async fn configure(&self, name: &str, partitions: i32) -> Result<(), StorageError> {
        let req = messaging_pb::ConfigureTopicRequest { topic: Some(self.topic(name)), partition_count: partitions };
        self.rpc("ConfigureTopic", self.broker(&self.broker_addr).configure_topic(req)).await?;
        lock(&self.placements).remove(name);
        Ok(())
    }

    /// How many partitions SeaweedMQ has for `name`, if the topic exists there.
    async fn smq_partitions(&self, name: &str) -> Result<Option<i32>, StorageError> {
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
            if self.range(name, &p).await?.1 > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn put_topic(&self, t: TopicRecord) -> Result<(), StorageError> {
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
                // SeaweedMQ re-creates every partition (offsets from 0) when the count changes,
                // which would renumber the data kelp has; refuse.
                tracing::error!(topic = %name, "seaweedmq: cannot add partitions to a topic with data");
                return Err(StorageError::Refused(
                    "SeaweedMQ cannot add partitions to a topic that holds data (it would re-split the partition ring)",
                ));
            }
            (_, None) => self.configure(&name, t.partitions).await?,
        }
        self.put_file(&self.meta_dir("topics"), &name, encode_topic(&t)).await?;
        lock(&self.topics).insert(t.id, TopicInfo { name: name.clone(), partitions: t.partitions });
        self.placements(&name, true).await?;
        Ok(())
    }

    async fn delete_topic(&self, id: Uuid) -> Result<(), StorageError> {
        let Some(info) = lock(&self.topics).get(&id).cloned() else { return Ok(()) };
        self.delete_path(&format!("/topics/{}", self.cfg.namespace), &info.name).await?;
        self.delete_path(&self.meta_dir("topics"), &info.name).await?;
        let prefix = format!("{}-", hex(&id.0));
        for (f, _) in self.list_files(&self.meta_dir("logstart")).await? {
            if f.starts_with(&prefix) {
                self.delete_path(&self.meta_dir("logstart"), &f).await?;
            }
        }
        lock(&self.topics).remove(&id);
        lock(&self.placements).remove(&info.name);
        lock(&self.sessions).retain(|k, _| k.topic_id != id);
        Ok(())
    }

    /// kelp's own log start of the partition (DeleteRecords, retention), 0 if none was set.
    async fn stored_log_start(&self, key: PartitionKey) -> Result<i64, StorageError> {
        let name = Self::logstart_name(key);
        Ok(self
            .list_files(&self.meta_dir("logstart"))
            .await?
            .into_iter()
            .find(|(n, c)| *n == name && c.len() == 8)
            .map_or(0, |(_, mut c)| c.get_i64()))
    }

    fn logstart_name(key: PartitionKey) -> String {
        format!("{}-{}", hex(&key.topic_id.0), key.partition)
    }

    pub(super) async fn run_meta(&self, command: Command) -> Completion {
        let r = match command {
            Command::Recover => {
                return self.recover().await.map_or_else(Completion::Failed, |r| Completion::Recovered(Box::new(r)));
            }
            Command::PutTopic(t) => self.put_topic(t).await,
            Command::DeleteTopic { topic_id } => self.delete_topic(topic_id).await,
            Command::Put { key, value } => {
                let name = kv_name(&key);
                match value {
                    Some(v) => {
                        let mut content = BytesMut::with_capacity(4 + key.len() + v.len());
                        content.put_u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
                        content.put_slice(&key);
                        content.put_slice(&v);
                        self.put_file(&self.meta_dir("kv"), &name, content.freeze()).await
                    }
                    None => self.delete_path(&self.meta_dir("kv"), &name).await,
                }
            }
            Command::SetLogStart { partition, offset } => {
                let v = Bytes::copy_from_slice(&offset.to_be_bytes());
                self.put_file(&self.meta_dir("logstart"), &Self::logstart_name(partition), v).await
            }
            other => {
                debug_assert!(false, "not a metadata command: {other:?}");
                Err(StorageError::Corrupt("not a metadata command"))
            }
        };
        r.map_or_else(Completion::Failed, |()| Completion::Done)
    }

    async fn recover(&self) -> Result<Recovered, StorageError> {
        let mut out = Recovered::default();
        let logstarts: HashMap<String, i64> = self
            .list_files(&self.meta_dir("logstart"))
            .await?
            .into_iter()
            .filter_map(|(n, mut c)| (c.len() == 8).then(|| (n, c.get_i64())))
            .collect();
        for (_, content) in self.list_files(&self.meta_dir("topics")).await? {
            let Some(t) = decode_topic(content) else {
                return Err(StorageError::Corrupt("unreadable topic record on the filer"));
            };
            let name = t.name.as_str().to_owned();
            if self.smq_partitions(&name).await?.is_none() {
                // Recorded but gone from SeaweedMQ (or never created there): create it again.
                self.configure(&name, t.partitions).await?;
            }
            lock(&self.topics).insert(t.id, TopicInfo { name: name.clone(), partitions: t.partitions });
            for i in 0..t.partitions {
                let key = PartitionKey { topic_id: t.id, partition: i };
                let stored = logstarts.get(&Self::logstart_name(key)).copied().unwrap_or(0);
                let extent = self.extent(key, stored, i == 0, 0, None).await?;
                out.partitions.push((key, extent));
            }
            out.topics.push(t);
        }
        for (_, mut content) in self.list_files(&self.meta_dir("kv")).await? {
            if content.len() < 4 {
                continue;
            }
            let n = content.get_u32() as usize;
            if content.len() < n {
                continue;
            }
            let key = content.split_to(n);
            out.values.push((key, content));
        }
        Ok(out)
    }

    /// A partition's extent as SeaweedMQ holds it: its offset range, and the producer state
    /// and largest timestamp of its last [`TAIL_SCAN`] records. `stored_start` is kelp's own
    /// log start for it (DeleteRecords); `refresh` looks up the partition's leader afresh;
    /// records before `scan_from` are not read, nor those from `unstored_from` on (known not
    /// to be stored: offsets there are holes).
    async fn extent(
        &self,
        key: PartitionKey,
        stored_start: i64,
        refresh: bool,
        scan_from: i64,
        unstored_from: Option<i64>,
    ) -> Result<PartitionExtent, StorageError> {
        let (name, p) = self.place(key, refresh).await?;
        let (earliest, hwm) = self.range(&name, &p).await?;
        tracing::debug!(?key, earliest, hwm, scan_from, "seaweedmq: partition range");
        let log_start = earliest.max(stored_start).min(hwm);
        let mut extent =
            PartitionExtent { log_start, next_offset: hwm, max_timestamp: (-1, -1), producer_batches: Vec::new() };
        let from = log_start.max(hwm - TAIL_SCAN).max(scan_from);
        let end = unstored_from.map_or(hwm, |u| u.clamp(from.min(hwm), hwm));
        if end < hwm {
            tracing::info!(?key, from = end, to = hwm, "seaweedmq: offsets the broker used up refusing kelp's records");
        }
        if from < end {
            let (records, stopped) = self.scan(key, from, end).await?;
            if stopped < end {
                // Offsets the broker counted but holds no message for (see `read_records`):
                // the next append goes after them all the same.
                tracing::warn!(
                    ?key,
                    from = stopped,
                    to = end,
                    "seaweedmq: offsets at the end of the partition hold no record"
                );
            }
            tail_state(&records, &mut extent);
        }
        Ok(extent)
    }

    /// Answers [`Command::RecoverPartition`]: the partition's extent as it is stored now, with
    /// the producer state of the records from `from` (the core's high watermark) on: the
    /// core knows the rest, and when nothing new was stored nothing is read. One attempt has
    /// [`RECOVER_ATTEMPTS`] times the RPC deadline in all; the core asks again after a failure.
    ///
    /// `unstored_from`: the publisher knows that nothing from there on was stored (the broker
    /// refused its stream), so offsets SeaweedMQ counts from there on are holes and are not
    /// waited for.
    ///
    /// Read sessions are kept: a subscription still open delivers what was stored, and
    /// dropping them all can leave the broker with neither publisher nor subscriber on the
    /// partition, so that it unloads it just as the next publish stream arrives (see
    /// `read_records` for what that does to offsets).
    async fn recover_partition(
        &self,
        key: PartitionKey,
        from: i64,
        unstored_from: Option<i64>,
    ) -> Result<PartitionExtent, StorageError> {
        let attempt = async {
            let stored = self.stored_log_start(key).await?;
            self.extent(key, stored, true, from, unstored_from).await
        };
        let r = match timeout(self.cfg.rpc_timeout * RECOVER_ATTEMPTS, attempt).await {
            Ok(r) => r,
            Err(_) => Err(StorageError::Timeout),
        };
        match &r {
            Ok(e) => tracing::info!(?key, kelp = from, seaweedmq = e.next_offset, "seaweedmq: partition end re-learnt"),
            Err(e) => tracing::warn!(?key, kelp = from, error = ?e, "seaweedmq: cannot re-learn the partition end"),
        }
        r
    }

    // ---- reads ----

    async fn open_session(&self, key: PartitionKey, offset: i64) -> Result<Session, StorageError> {
        let (name, p) = self.place(key, false).await?;
        let (req_tx, req_rx) = mpsc::channel::<messaging_pb::SubscribeMessageRequest>(4);
        let init = subscribe_message_request::InitMessage {
            consumer_group: format!("kelp-{}", std::process::id()),
            consumer_id: format!("kelp-{}-{offset}", now_ns()),
            client_id: "kelp".into(),
            topic: Some(self.topic(&name)),
            partition_offset: Some(schema_pb::PartitionOffset {
                partition: Some(p.partition),
                start_ts_ns: 0,
                start_offset: offset,
            }),
            offset_type: schema_pb::OffsetType::ExactOffset as i32,
            sliding_window_size: 1024,
            ..Default::default()
        };
        let first =
            messaging_pb::SubscribeMessageRequest { message: Some(subscribe_message_request::Message::Init(init)) };
        req_tx.send(first).await.map_err(|_| StorageError::Unavailable)?;
        let mut client = Self::subscriber(&p.leader);
        let stream = tokio_stream::wrappers::ReceiverStream::new(req_rx);
        let mut resp = self.rpc("SubscribeMessage", client.subscribe_message(stream)).await?;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(async move {
            let _keep_open = req_tx;
            // The subscription's own connection lives as long as it.
            let _connection = client;
            loop {
                let item = match resp.message().await {
                    Ok(Some(m)) => match m.message {
                        Some(subscribe_message_response::Message::Data(d)) => Ok(d.value),
                        Some(subscribe_message_response::Message::Ctrl(c))
                            if c.error.is_empty() && !c.is_end_of_stream =>
                        {
                            continue;
                        }
                        Some(subscribe_message_response::Message::Ctrl(c)) => {
                            tracing::warn!(error = %c.error, end = c.is_end_of_stream, "seaweedmq: subscription ended");
                            Err(StorageError::Unavailable)
                        }
                        None => continue,
                    },
                    Ok(None) => Err(StorageError::Unavailable),
                    Err(s) => Err(unavailable("SubscribeMessage")(s)),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Session { next: offset, held: None, delivered: false, rx, task })
    }

    /// The records stored at `from..end`, in whole original batches (fewer if the byte budget
    /// is used up first), and the offset the read got to: every offset between `from` and it
    /// that is not among the records holds nothing a reader may see.
    ///
    /// Offsets are the ones in the envelopes (kelp checked each against the offset the broker
    /// assigned it), not counted along the subscription: SeaweedMQ's offsets can have holes.
    /// The broker takes an offset for a message before it adds it to its log buffer, and keeps
    /// the offset when that fails ("failed to add message to buffer", e.g. while it unloads the
    /// partition), so that offset never holds a message; and a publish stream that breaks part
    /// way through an append leaves the records before the break stored, a batch cut short.
    /// Such a partial batch (its last record is missing and never comes: a later batch follows
    /// it, or it ends at `end`) is left out, as if none of it had been stored: kelp answered
    /// its append with an error and the producer sends it again.
    async fn read_records(
        &self,
        key: PartitionKey,
        from: i64,
        end: i64,
        max_bytes: usize,
    ) -> Result<(Vec<Envelope>, i64), StorageError> {
        let taken = lock(&self.sessions).get_mut(&key).and_then(|v| {
            let i = v.iter().position(|s| s.next == from)?;
            Some(v.swap_remove(i))
        });
        let mut s = match taken {
            Some(s) => s,
            None => self.open_session(key, from).await?,
        };
        let mut out: Vec<Envelope> = Vec::new();
        let mut used = 0usize;
        // Everything below `end` is acknowledged, so it exists (but for holes). A SeaweedMQ
        // subscription that has caught up with the publisher can hold back what arrives after
        // that (seconds, or until more is published); a fresh subscription at the same offset
        // delivers it at once. So a read that waits longer than `STALL` re-subscribes, until
        // `rpc_timeout` has passed.
        // A subscription that has delivered something and then stalls is replaced after
        // `STALL`; a new one gets `FIRST_MESSAGE` for its first message, as SeaweedMQ may
        // first have to read flushed data back from the filer (replacing it every 20 ms could
        // starve the read for good). The wait doubles (to 32 × `STALL`) on each replacement.
        let deadline = tokio::time::Instant::now() + self.cfg.rpc_timeout;
        let mut stall = STALL;
        let mut timed_out = false;
        while s.next < end {
            let env = if let Some(held) = s.held.take() {
                held
            } else {
                // What the session already read ahead is taken without arming a timer.
                let next = match s.rx.try_recv() {
                    Ok(item) => Some(item),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Whole batches in hand: answer now rather than wait for more.
                        if out.last().is_some_and(|e| e.delta == e.last_delta) {
                            break;
                        }
                        let now = tokio::time::Instant::now();
                        if now >= deadline {
                            // Acknowledged data not arriving (or holes up to `end`): keep what
                            // we have, and the subscription (dropping it could leave the
                            // broker with no reader of the partition, see `recover_partition`).
                            timed_out = true;
                            break;
                        }
                        let wait = if s.delivered { stall } else { FIRST_MESSAGE.max(stall) }.min(deadline - now);
                        match timeout(wait, s.rx.recv()).await {
                            Ok(item) => item,
                            Err(_) => {
                                tracing::debug!(?key, offset = s.next, "seaweedmq: read stalled; subscribing again");
                                stall = (stall * 2).min(STALL * 32);
                                s = match self.open_session(key, s.next).await {
                                    Ok(fresh) => fresh,
                                    Err(e) => return if out.is_empty() { Err(e) } else { Ok(whole(out, s.next, end)) },
                                };
                                continue;
                            }
                        }
                    }
                };
                let value = match next {
                    Some(Ok(v)) => {
                        s.delivered = true;
                        v
                    }
                    Some(Err(e)) => return if out.is_empty() { Err(e) } else { Ok(whole(out, s.next, end)) },
                    None => {
                        return if out.is_empty() {
                            Err(StorageError::Unavailable)
                        } else {
                            Ok(whole(out, s.next, end))
                        };
                    }
                };
                let Some(env) = Envelope::decode(value) else {
                    tracing::error!(?key, offset = s.next, "seaweedmq: a message that is not a kelp record");
                    return Err(StorageError::Corrupt("a SeaweedMQ message that is not a kelp record"));
                };
                env
            };
            if env.offset < s.next {
                tracing::error!(?key, expected = s.next, found = env.offset, "seaweedmq: offsets go back");
                return Err(StorageError::Corrupt("SeaweedMQ offsets do not match kelp's"));
            }
            if env.offset >= end {
                // Nothing at `s.next..end`; this record is for a later read.
                tracing::debug!(?key, from = s.next, end, "seaweedmq: offsets without a record");
                s.next = end;
                s.held = Some(env);
                break;
            }
            if env.offset > s.next {
                tracing::debug!(?key, from = s.next, to = env.offset, "seaweedmq: offsets without a record");
            }
            s.next = env.offset + 1;
            used += env.stored_len();
            let batch_done = env.delta == env.last_delta;
            out.push(env);
            if batch_done && used >= max_bytes {
                break;
            }
        }
        let next = s.next;
        let mut sessions = lock(&self.sessions);
        let v = sessions.entry(key).or_default();
        if v.len() >= SESSIONS_PER_PARTITION {
            v.remove(0);
        }
        v.push(s);
        if timed_out && out.is_empty() {
            return Err(StorageError::Timeout);
        }
        Ok(whole(out, next, end))
    }

    /// Records `from..end` (holes and partial batches left out), and where the scan stopped:
    /// `end`, or earlier if no subscription, opened afresh again and again for `rpc_timeout`,
    /// delivered anything at or after that offset. Only holes explain that for offsets
    /// SeaweedMQ counts below its end (see [`Cluster::read_records`]).
    async fn scan(&self, key: PartitionKey, from: i64, end: i64) -> Result<(Vec<Envelope>, i64), StorageError> {
        let mut out = Vec::new();
        let mut at = from;
        while at < end {
            match self.read_records(key, at, end, 8 << 20).await {
                // Records came, but not the rest of their batch, within the read's deadline:
                // a batch cut short, and holes after it.
                Ok((_, next)) if next <= at => break,
                Ok((got, next)) => {
                    at = next;
                    out.extend(got);
                }
                Err(StorageError::Timeout) => break,
                Err(e) => return Err(e),
            }
        }
        Ok((out, at))
    }

    pub(super) async fn read(&self, key: PartitionKey, offset: i64, end: i64, max_bytes: usize) -> Completion {
        let mut batches: SmallVec<[Bytes; 2]> = SmallVec::new();
        if offset >= end {
            return Completion::Read { batches };
        }
        match self.read_records(key, offset, end, max_bytes).await {
            Ok((records, _)) => match envelope::rebuild(&records) {
                Ok(b) => {
                    batches.extend(b);
                    Completion::Read { batches }
                }
                Err(_) => Completion::Failed(StorageError::Corrupt("stored records do not make a batch")),
            },
            Err(e) => Completion::Failed(e),
        }
    }

    pub(super) async fn find_offset(&self, key: PartitionKey, timestamp: i64) -> Completion {
        let (name, p) = match self.place(key, false).await {
            Ok(x) => x,
            Err(e) => return Completion::Failed(e),
        };
        let (earliest, hwm) = match self.range(&name, &p).await {
            Ok(r) => r,
            Err(e) => return Completion::Failed(e),
        };
        match self.first_at_or_after(key, earliest, hwm, timestamp).await {
            Ok(found) => Completion::Offset { found: found.map(|(r, ts)| (r.offset, ts)) },
            Err(e) => Completion::Failed(e),
        }
    }

    /// The first record in `from..end` whose timestamp (the log append time where the topic
    /// uses it) is at least `timestamp`, with that timestamp; every record before it is older.
    async fn first_at_or_after(
        &self,
        key: PartitionKey,
        from: i64,
        end: i64,
        timestamp: i64,
    ) -> Result<Option<(Envelope, i64)>, StorageError> {
        let mut at = from;
        while at < end {
            let (got, next) = match self.read_records(key, at, end, 1 << 20).await {
                Ok(g) => g,
                // Nothing delivered from `at` on by fresh subscriptions: holes (see `scan`).
                Err(StorageError::Timeout) if at > from => break,
                Err(e) => return Err(e),
            };
            if next <= at {
                break;
            }
            at = next;
            for r in got {
                let ts = if r.log_append_time { r.max_timestamp } else { r.timestamp };
                if ts >= timestamp {
                    return Ok(Some((r, ts)));
                }
            }
        }
        Ok(None)
    }

    /// Retention by time (`retention.ms`) on SeaweedMQ: kelp moves its own log start (as
    /// DeleteRecords does) past the batches that are wholly older than `older_than`, up to the
    /// first batch holding a record at or after it. SeaweedMQ's data itself is not deleted (its
    /// own retention governs that), and readers of kelp see the partition start there. A
    /// partition whose records are all older keeps its last batch, as Kafka keeps the active
    /// segment. Retention by size (`retention.bytes`) is not applied here: SeaweedMQ does not
    /// tell a partition's size by offset.
    pub(super) async fn retain(&self, key: PartitionKey, older_than: Option<i64>, limit: i64) -> Completion {
        let unchanged = |offset| Completion::LogStart { offset, max_timestamp: (-1, -1) };
        let stored = match self.stored_log_start(key).await {
            Ok(s) => s,
            Err(e) => return Completion::Failed(e),
        };
        let Some(older_than) = older_than else { return unchanged(stored) };
        let (name, p) = match self.place(key, false).await {
            Ok(x) => x,
            Err(e) => return Completion::Failed(e),
        };
        let (earliest, hwm) = match self.range(&name, &p).await {
            Ok(r) => r,
            Err(e) => return Completion::Failed(e),
        };
        let start = stored.max(earliest);
        let end = hwm.min(limit);
        let new_start = match self.first_at_or_after(key, start, end, older_than).await {
            Ok(Some((r, _))) => r.batch_base().max(start),
            Ok(None) => return unchanged(start),
            Err(e) => return Completion::Failed(e),
        };
        if new_start <= stored {
            return unchanged(start);
        }
        let v = Bytes::copy_from_slice(&new_start.to_be_bytes());
        match self.put_file(&self.meta_dir("logstart"), &Self::logstart_name(key), v).await {
            Ok(()) => {
                tracing::info!(?key, from = stored, to = new_start, "seaweedmq: retention moved the log start");
                unchanged(new_start)
            }
            Err(e) => Completion::Failed(e),
        }
    }
}

/// `records` (read up to `next`) without the batches whose last record is missing, and
/// where the next read starts. A batch followed by another, or cut off at `end` (the end of
/// what is stored), never gets its last record: a broken publish stream cut it short (see
/// [`Cluster::read_records`]), and it is left out. A batch at the end of a read that stopped
/// before `end` may still be arriving: it is left for the next read.
fn whole(mut records: Vec<Envelope>, mut next: i64, end: i64) -> (Vec<Envelope>, i64) {
    let mut keep = vec![false; records.len()];
    let mut i = 0;
    while i < records.len() {
        let first = &records[i];
        let mut j = i + 1;
        while j < records.len()
            && records[j].batch_base() == first.batch_base()
            && records[j].producer == first.producer
            && records[j].delta > records[j - 1].delta
        {
            j += 1;
        }
        let last = &records[j - 1];
        if last.delta == last.last_delta {
            keep[i..j].fill(true);
        } else if j == records.len() && next < end {
            next = first.offset;
        } else {
            tracing::debug!(
                base = first.batch_base(),
                through = last.offset,
                "seaweedmq: a batch cut short is left out"
            );
        }
        i = j;
    }
    let mut k = keep.into_iter();
    records.retain(|_| k.next().unwrap_or(false));
    (records, next)
}

/// Producer batches and the largest timestamp among the last records of a partition.
fn tail_state(records: &[Envelope], extent: &mut PartitionExtent) {
    let mut per_producer: HashMap<i64, VecDeque<BatchSummary>> = HashMap::new();
    for r in records {
        let ts = if r.log_append_time { r.max_timestamp } else { r.timestamp };
        if ts > extent.max_timestamp.0 {
            extent.max_timestamp = (ts, r.offset);
        }
        if r.producer.0 < 0 || r.delta != r.last_delta {
            continue;
        }
        let q = per_producer.entry(r.producer.0).or_default();
        q.push_back(BatchSummary {
            producer_id: r.producer.0,
            producer_epoch: r.producer.1,
            base_sequence: r.producer.2,
            last_sequence: r.producer.2.wrapping_add(r.last_delta) & i32::MAX,
            base_offset: r.batch_base(),
            last_offset: r.offset,
            timestamp: r.max_timestamp,
        });
        if q.len() > PRODUCER_BATCHES {
            q.pop_front();
        }
    }
    let mut all: Vec<BatchSummary> = per_producer.into_values().flatten().collect();
    all.sort_by_key(|b| b.base_offset);
    extent.producer_batches = all;
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A filer file name for a key: its hex, or for long keys a prefix of it with a CRC32C and the
/// length (the key itself is stored in the file).
fn kv_name(key: &[u8]) -> String {
    if key.len() <= 100 { hex(key) } else { format!("{}~{:08x}~{}", hex(&key[..80]), crc32c::crc32c(key), key.len()) }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s);
}

fn get_str(b: &mut Bytes) -> Option<KStr> {
    if b.len() < 4 {
        return None;
    }
    let n = b.get_u32() as usize;
    if b.len() < n {
        return None;
    }
    KStr::from_utf8(b.split_to(n)).ok()
}

/// A topic record: version u8 (1), name, id (16 bytes), partitions i32, config count u32,
/// then (name, value) pairs; strings are u32 length + UTF-8.
fn encode_topic(t: &TopicRecord) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(1);
    put_str(&mut out, t.name.as_bytes());
    out.put_slice(&t.id.0);
    out.put_i32(t.partitions);
    out.put_u32(u32::try_from(t.configs.len()).unwrap_or(u32::MAX));
    for (k, v) in &t.configs {
        put_str(&mut out, k.as_bytes());
        put_str(&mut out, v.as_bytes());
    }
    out.freeze()
}

fn decode_topic(mut b: Bytes) -> Option<TopicRecord> {
    if b.is_empty() || b.get_u8() != 1 {
        return None;
    }
    let name = get_str(&mut b)?;
    if b.len() < 24 {
        return None;
    }
    let mut id = [0u8; 16];
    b.copy_to_slice(&mut id);
    let partitions = b.get_i32();
    let n = b.get_u32() as usize;
    if n.saturating_mul(8) > b.len() {
        return None;
    }
    let mut configs = Vec::with_capacity(n);
    for _ in 0..n {
        configs.push((get_str(&mut b)?, get_str(&mut b)?));
    }
    Some(TopicRecord { name, id: Uuid(id), partitions, configs })
}

// ---- the publisher ----

struct Pending {
    cmd: kelp_core::CmdId,
    sink: crate::Sink,
    /// Offset the next ack must carry.
    next: i64,
    last: i64,
}

struct PubStream {
    tx: mpsc::Sender<messaging_pb::PublishMessageRequest>,
    resp: tonic::Streaming<messaging_pb::PublishMessageResponse>,
    hello: bool,
}

/// Runs one partition's appends: pipelined on one `PublishMessage` stream, answered in order.
pub(super) async fn publisher(c: std::sync::Arc<Cluster>, key: PartitionKey, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut stream: Option<PubStream> = None;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut in_flight = 0usize;
    let mut closed = false;
    // Set when the broker ended the last publish stream with an error status: records sent on
    // it from this offset on are not stored (see the stream's `Err` arm below). Valid until a
    // new stream is opened.
    let mut unstored_from: Option<i64> = None;
    loop {
        let ack_deadline = tokio::time::sleep(c.cfg.ack_timeout);
        tokio::select! {
            job = rx.recv(), if !closed && in_flight < PUBLISH_WINDOW => match job {
                Some((cmd, Command::Append { base_offset, last_offset, batches, .. }, sink)) => {
                    let fresh = stream.is_none();
                    match append(&c, key, &mut stream, &pending, base_offset, batches).await {
                        Ok(n) => {
                            if fresh {
                                unstored_from = None;
                            }
                            in_flight += n;
                            pending.push_back(Pending { cmd, sink, next: base_offset, last: last_offset });
                        }
                        Err(e) => {
                            fail_all(&mut pending, &mut stream, &mut in_flight);
                            sink.complete(cmd, Completion::Failed(e));
                        }
                    }
                }
                Some((cmd, Command::RecoverPartition { from, .. }, sink)) => {
                    // The core asks only once none of its appends is in flight; a stream that
                    // is still open is dropped, and the next append opens a new one at the end
                    // reported here.
                    debug_assert!(pending.is_empty(), "RecoverPartition with appends in flight");
                    fail_all(&mut pending, &mut stream, &mut in_flight);
                    let result = c.recover_partition(key, from, unstored_from).await;
                    sink.complete(cmd, result.map_or_else(Completion::Failed, Completion::Partition));
                }
                Some((cmd, _, sink)) => sink.complete(cmd, Completion::Failed(StorageError::Corrupt("not an append"))),
                None => closed = true,
            },
            r = async { stream.as_mut().map(|s| s.resp.message()).unwrap().await }, if stream.is_some() && !pending.is_empty() => {
                let ok = match r {
                    Ok(Some(m)) => on_ack(&mut stream, &mut pending, &mut in_flight, m),
                    Ok(None) => { tracing::warn!(?key, "seaweedmq: publish stream closed by the broker"); false }
                    Err(s) => {
                        tracing::warn!(?key, status = %s, "seaweedmq: publish stream failed");
                        // A status the broker sent, not a broken connection: the broker answers
                        // each message before it reads the next and ends the stream at the first
                        // it cannot store, so nothing sent after the last answer is stored
                        // (though it may have used up an offset, see `Cluster::read_records`).
                        if std::error::Error::source(&s).is_none() {
                            unstored_from = pending.front().map(|p| p.next);
                        }
                        false
                    }
                };
                if !ok {
                    fail_all(&mut pending, &mut stream, &mut in_flight);
                }
            }
            () = ack_deadline, if !pending.is_empty() => {
                tracing::warn!(?key, "seaweedmq: no publish ack in time");
                fail_all(&mut pending, &mut stream, &mut in_flight);
            }
        }
        if closed && pending.is_empty() {
            return;
        }
    }
}

/// Handles one response; false if the stream must be abandoned.
fn on_ack(
    stream: &mut Option<PubStream>,
    pending: &mut VecDeque<Pending>,
    in_flight: &mut usize,
    m: messaging_pb::PublishMessageResponse,
) -> bool {
    if !m.error.is_empty() || m.error_code != 0 || m.should_close {
        tracing::warn!(error = %m.error, code = m.error_code, "seaweedmq: publish refused");
        return false;
    }
    if let Some(s) = stream.as_mut()
        && !s.hello
    {
        // The broker greets a new stream with an empty response.
        s.hello = true;
        return true;
    }
    let Some(front) = pending.front_mut() else { return false };
    if m.assigned_offset != front.next {
        tracing::error!(
            expected = front.next,
            assigned = m.assigned_offset,
            "seaweedmq: broker assigned another offset"
        );
        return false;
    }
    *in_flight = in_flight.saturating_sub(1);
    front.next += 1;
    if front.next > front.last {
        let done = pending.pop_front();
        if let Some(p) = done {
            p.sink.complete(p.cmd, Completion::Done);
        }
    }
    true
}

fn fail_all(pending: &mut VecDeque<Pending>, stream: &mut Option<PubStream>, in_flight: &mut usize) {
    *stream = None;
    *in_flight = 0;
    for p in pending.drain(..) {
        p.sink.complete(p.cmd, Completion::Failed(StorageError::Unavailable));
    }
}

/// Sends one append's records; returns how many.
async fn append(
    c: &Cluster,
    key: PartitionKey,
    stream: &mut Option<PubStream>,
    pending: &VecDeque<Pending>,
    base: i64,
    batches: Bytes,
) -> Result<usize, StorageError> {
    let records = envelope::split(batches).map_err(|_| StorageError::Corrupt("append of undecodable batches"))?;
    if records.first().map(|r| r.offset) != Some(base) {
        return Err(StorageError::Corrupt("append whose first record is not at its base offset"));
    }
    if stream.is_none() {
        debug_assert!(pending.is_empty());
        let (name, p) = c.place(key, true).await?;
        // Only continue a partition whose end is where kelp thinks it is: after a broken
        // stream the broker may hold records it never acknowledged.
        let (_, hwm) = c.range(&name, &p).await?;
        if hwm != base {
            tracing::error!(
                ?key,
                kelp = base,
                seaweedmq = hwm,
                "seaweedmq: partition end differs from kelp's; kelp re-learns it"
            );
            return Err(StorageError::Unavailable);
        }
        let (tx, rx) = mpsc::channel(PUBLISH_WINDOW);
        let init = publish_message_request::InitMessage {
            topic: Some(c.topic(&name)),
            partition: Some(p.partition),
            ack_interval: 1,
            follower_broker: String::new(),
            publisher_name: format!("kelp-{}", std::process::id()),
        };
        tx.send(messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Init(init)) })
            .await
            .map_err(|_| StorageError::Unavailable)?;
        let mut client = c.broker(&p.leader);
        let resp =
            c.rpc("PublishMessage", client.publish_message(tokio_stream::wrappers::ReceiverStream::new(rx))).await?;
        *stream = Some(PubStream { tx, resp, hello: false });
    }
    let Some(s) = stream.as_ref() else { return Err(StorageError::Unavailable) };
    let n = records.len();
    let ts = now_ns();
    for r in &records {
        let data = messaging_pb::DataMessage { key: Bytes::new(), value: r.encode(), ts_ns: ts, ctrl: None };
        let msg = messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Data(data)) };
        s.tx.send(msg).await.map_err(|_| StorageError::Unavailable)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::{Envelope, whole};

    /// Record `delta` of a batch of `len` records at `base`.
    fn rec(base: i64, delta: i32, len: i32) -> Envelope {
        Envelope {
            offset: base + i64::from(delta),
            delta,
            last_delta: len - 1,
            producer: (7, 0, 0),
            leader_epoch: 0,
            timestamp: 0,
            max_timestamp: 0,
            log_append_time: false,
            transactional: false,
            control: false,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    fn offsets(r: &[Envelope]) -> Vec<i64> {
        r.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn a_batch_cut_short_and_followed_by_another_is_left_out() {
        // 10..12 whole; 13.. cut after two records; a hole at 15; 16..17 whole.
        let rs = vec![
            rec(10, 0, 3),
            rec(10, 1, 3),
            rec(10, 2, 3),
            rec(13, 0, 5),
            rec(13, 1, 5),
            rec(16, 0, 2),
            rec(16, 1, 2),
        ];
        let (kept, next) = whole(rs, 18, 18);
        assert_eq!(offsets(&kept), [10, 11, 12, 16, 17]);
        assert_eq!(next, 18);
    }

    #[test]
    fn a_batch_cut_short_at_the_end_of_what_is_stored_is_left_out() {
        let (kept, next) = whole(vec![rec(0, 0, 1), rec(1, 0, 4), rec(1, 1, 4)], 4, 4);
        assert_eq!((offsets(&kept), next), (vec![0], 4));
    }

    #[test]
    fn a_batch_still_arriving_is_left_for_the_next_read() {
        let (kept, next) = whole(vec![rec(0, 0, 1), rec(1, 0, 4), rec(1, 1, 4)], 3, 9);
        assert_eq!((offsets(&kept), next), (vec![0], 1), "read again from the batch's first record");
    }

    #[test]
    fn a_read_starting_inside_a_batch_keeps_its_rest() {
        let (kept, next) = whole(vec![rec(0, 2, 4), rec(0, 3, 4)], 4, 4);
        assert_eq!((offsets(&kept), next), (vec![2, 3], 4));
    }
}
