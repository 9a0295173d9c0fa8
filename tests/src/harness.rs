//! The scenario harness: the real [`Broker`] with a [`MemStore`] and scripted clients, in
//! virtual time. Tests send typed requests, decide when storage commands run (all at once,
//! one by one, or failed), move the clock, and read typed responses back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreatableTopicConfig, CreateTopicsRequest};
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, KStr, Message, Reader, RecordSet, Uuid, Writer};
use kelp_core::io::{CloseReason, StorageError};
use kelp_core::mem_store::MemStore;
use kelp_core::records::{Batches, Compression, RecordBatchBuilder};
use kelp_core::time::Duration;
use kelp_core::{Broker, CmdId, Command, Completion, Config, ConnId, Input, Instant, Now, Output};

/// Broker + store + clients in virtual time.
pub struct Harness {
    /// The broker under test.
    pub broker: Broker,
    /// The reference store.
    pub store: MemStore,
    now: Now,
    next_conn: u64,
    next_correlation: i32,
    /// Storage commands emitted and not yet run, in order.
    pub queued: VecDeque<(CmdId, Command)>,
    /// Bytes each connection has received.
    inbox: HashMap<ConnId, BytesMut>,
    /// Connections the broker closed, with why.
    pub closed: HashMap<ConnId, CloseReason>,
    /// Whether storage commands run as soon as they are emitted.
    pub auto_storage: bool,
    sent: HashSet<(ConnId, i32)>,
    /// Connections whose client does not read: their output is not reported written.
    pub slow_readers: HashSet<ConnId>,
    /// Every chunk the broker has sent, in order, as it was handed over (for zero-copy checks).
    pub sent_chunks: Vec<Bytes>,
    /// Bytes sent to slow readers and not yet reported written.
    unwritten: HashMap<ConnId, usize>,
    /// Connections the broker asked not to be read ([`Output::PauseRead`]) and has not resumed.
    pub paused: HashSet<ConnId>,
}

impl Harness {
    /// A broker with `config`, recovered from an empty store.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self::with_store(config, MemStore::new())
    }

    /// A broker with `config`, recovered from `store` (a restart).
    #[must_use]
    pub fn with_store(config: Config, store: MemStore) -> Self {
        let now = Now { mono: Instant(0), wall_ms: START_WALL_MS };
        let mut h = Self {
            broker: Broker::new(config, 42, now),
            store,
            now,
            next_conn: 0,
            next_correlation: 1,
            queued: VecDeque::new(),
            inbox: HashMap::new(),
            closed: HashMap::new(),
            auto_storage: true,
            sent: HashSet::new(),
            slow_readers: HashSet::new(),
            sent_chunks: Vec::new(),
            unwritten: HashMap::new(),
            paused: HashSet::new(),
        };
        h.drive();
        h
    }

    /// The current virtual time.
    #[must_use]
    pub fn now(&self) -> Now {
        self.now
    }

    /// Opens a client connection (on the first listener).
    pub fn connect(&mut self) -> ConnId {
        self.connect_via(kelp_core::io::Origin::default())
    }

    /// Opens a client connection that came in as `origin` says (its listener, its TLS
    /// certificate's subject).
    pub fn connect_via(&mut self, origin: kelp_core::io::Origin) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let peer: SocketAddr = "127.0.0.1:50000".parse().expect("literal address");
        self.broker.handle_input(self.now, Input::Accepted { conn, peer, origin });
        self.inbox.insert(conn, BytesMut::new());
        self.drive();
        conn
    }

    /// Encodes a request frame (size prefix, header, body).
    #[must_use]
    pub fn frame(body: &RequestBody, version: i16, correlation_id: i32) -> Bytes {
        kelp_core::codec::encode_request_frame(body, version, correlation_id, Some("kelp-harness"))
    }

    /// Sends raw bytes on `conn` and processes them (storage too, if automatic).
    pub fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.broker.handle_input(self.now, Input::Received { conn, bytes });
        self.drive();
    }

    /// Sends a request; returns its correlation id.
    pub fn send(&mut self, conn: ConnId, body: &RequestBody, version: i16) -> i32 {
        let corr = self.next_correlation;
        self.next_correlation += 1;
        self.sent.insert((conn, corr));
        let frame = Self::frame(body, version, corr);
        self.send_raw(conn, &frame);
        corr
    }

    /// Drains outputs; runs storage commands while `auto_storage` is on.
    pub fn drive(&mut self) {
        loop {
            while let Some(out) = self.broker.poll_output() {
                match out {
                    Output::Send { conn, bytes } => {
                        assert!(!self.closed.contains_key(&conn), "bytes sent after close on {conn:?}");
                        let inbox = self.inbox.entry(conn).or_default();
                        let mut n = 0;
                        for b in bytes {
                            inbox.extend_from_slice(&b);
                            n += b.len();
                            self.sent_chunks.push(b);
                        }
                        // A client reads as fast as the broker writes, unless it is a slow reader.
                        if !self.slow_readers.contains(&conn) {
                            self.broker.handle_input(self.now, Input::Written { conn, bytes: n });
                        } else {
                            *self.unwritten.entry(conn).or_default() += n;
                        }
                    }
                    Output::Storage { cmd, command } => self.queued.push_back((cmd, command)),
                    Output::Close { conn, reason } => {
                        self.closed.insert(conn, reason);
                        self.paused.remove(&conn);
                    }
                    Output::PauseRead { conn } => {
                        assert!(!self.closed.contains_key(&conn), "pause after close on {conn:?}");
                        assert!(self.paused.insert(conn), "{conn:?} paused twice");
                    }
                    Output::ResumeRead { conn } => {
                        assert!(!self.closed.contains_key(&conn), "resume after close on {conn:?}");
                        assert!(self.paused.remove(&conn), "{conn:?} resumed but not paused");
                    }
                }
            }
            if !self.auto_storage || self.queued.is_empty() {
                return;
            }
            self.execute_one();
        }
    }

    fn execute_one(&mut self) -> bool {
        let Some((cmd, command)) = self.queued.pop_front() else { return false };
        let result = self.store.execute(command);
        self.broker.handle_input(self.now, Input::Completed { cmd, result });
        true
    }

    /// Runs the oldest queued storage command against the store, then drains the outputs.
    pub fn run_one_storage(&mut self) -> bool {
        let ran = self.execute_one();
        self.drive();
        ran
    }

    /// Fails the oldest queued storage command with `err` (it has no effect on the store),
    /// then drains the outputs.
    pub fn fail_one_storage(&mut self, err: StorageError) -> bool {
        let Some((cmd, _)) = self.queued.pop_front() else { return false };
        self.broker.handle_input(self.now, Input::Completed { cmd, result: Completion::Failed(err) });
        self.drive();
        true
    }

    /// Runs the oldest queued storage command against the store (it takes effect) but reports
    /// it failed with `err`, as a store that lost track of it would; then drains the outputs.
    pub fn run_one_storage_reporting(&mut self, err: StorageError) -> bool {
        let Some((cmd, command)) = self.queued.pop_front() else { return false };
        let _ = self.store.execute(command);
        self.broker.handle_input(self.now, Input::Completed { cmd, result: Completion::Failed(err) });
        self.drive();
        true
    }

    /// Runs the oldest queued storage command against the store and reports what `report`
    /// makes of its result (a store that answers appends as [`Completion::Stored`], say); then
    /// drains the outputs.
    pub fn run_one_storage_with(&mut self, report: impl FnOnce(Completion) -> Completion) -> bool {
        let Some((cmd, command)) = self.queued.pop_front() else { return false };
        let result = report(self.store.execute(command));
        self.broker.handle_input(self.now, Input::Completed { cmd, result });
        self.drive();
        true
    }

    /// Moves virtual time forward and fires due timers.
    pub fn advance(&mut self, d: Duration) {
        self.now.mono = self.now.mono + d;
        self.now.wall_ms += i64::try_from(d.as_millis()).unwrap_or(0);
        self.broker.handle_input(self.now, Input::Tick);
        self.drive();
    }

    /// The next whole response on `conn`, decoded as `api` at `version`, if one has arrived.
    pub fn recv(&mut self, conn: ConnId, api: ApiKey, version: i16) -> Option<(i32, ResponseBody)> {
        let inbox = self.inbox.get_mut(&conn)?;
        let size = usize::try_from(i32::from_be_bytes(*inbox.first_chunk::<4>()?)).ok()?;
        if inbox.len() < 4 + size {
            return None;
        }
        inbox.advance(4);
        let frame = inbox.split_to(size).freeze();
        let mut r = Reader::new(&frame);
        let header = ResponseHeader::decode(&mut r, api.response_header_version(version)).expect("response header");
        let body = ResponseBody::decode(api, &mut r, version).expect("response body decodes");
        assert_eq!(r.remaining(), 0, "response has trailing bytes");
        assert!(self.sent.remove(&(conn, header.correlation_id)), "response to a request never sent (or twice)");
        Some((header.correlation_id, body))
    }

    /// A slow reader finally reads: everything sent to `conn` so far is reported written.
    pub fn flush_reader(&mut self, conn: ConnId) {
        if let Some(bytes) = self.unwritten.remove(&conn) {
            self.broker.handle_input(self.now, Input::Written { conn, bytes });
            self.drive();
        }
    }

    /// Bytes waiting in `conn`'s inbox.
    #[must_use]
    pub fn pending_bytes(&self, conn: ConnId) -> usize {
        self.inbox.get(&conn).map_or(0, BytesMut::len)
    }

    /// Sends a request and returns its response, which must arrive without time passing.
    pub fn call(&mut self, conn: ConnId, body: RequestBody, version: i16) -> ResponseBody {
        let api = body.api_key();
        let corr = self.send(conn, &body, version);
        let (got, resp) = self.recv(conn, api, version).unwrap_or_else(|| panic!("no response to {api:?} v{version}"));
        assert_eq!(got, corr, "responses out of order");
        resp
    }

    /// Sends a hand-built request frame (size prefix included) that carries `correlation_id`,
    /// for requests the typed codec cannot write. Its response is read with
    /// [`Harness::recv`] or [`Harness::recv_frame`].
    pub fn send_frame(&mut self, conn: ConnId, frame: &[u8], correlation_id: i32) {
        self.sent.insert((conn, correlation_id));
        self.send_raw(conn, frame);
    }

    /// The next whole response frame on `conn`, without its size prefix and undecoded (it
    /// starts with the correlation id), if one has arrived.
    pub fn recv_frame(&mut self, conn: ConnId) -> Option<Bytes> {
        let inbox = self.inbox.get_mut(&conn)?;
        let size = usize::try_from(i32::from_be_bytes(*inbox.first_chunk::<4>()?)).ok()?;
        if inbox.len() < 4 + size {
            return None;
        }
        inbox.advance(4);
        let frame = inbox.split_to(size).freeze();
        let corr = i32::from_be_bytes(*frame.first_chunk::<4>().expect("a response starts with its correlation id"));
        assert!(self.sent.remove(&(conn, corr)), "response to a request never sent (or twice)");
        Some(frame)
    }

    /// The next bare size-prefixed frame on `conn` (a SASL token after a v0 handshake: no
    /// response header), without its size prefix, if one has arrived.
    pub fn recv_bare(&mut self, conn: ConnId) -> Option<Bytes> {
        let inbox = self.inbox.get_mut(&conn)?;
        let size = usize::try_from(i32::from_be_bytes(*inbox.first_chunk::<4>()?)).ok()?;
        if inbox.len() < 4 + size {
            return None;
        }
        inbox.advance(4);
        Some(inbox.split_to(size).freeze())
    }

    /// Why the broker closed `conn`, if it did.
    #[must_use]
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.closed.get(&conn).copied()
    }

    /// A restart: a new broker with `config` over a copy of everything this one stored.
    #[must_use]
    pub fn restart(&self, config: Config) -> Self {
        Self::with_store(config, self.store.clone())
    }
}

/// The default test configuration: auto-create on, three partitions for new topics.
#[must_use]
pub fn test_config() -> Config {
    Config { default_partitions: 3, ..Config::default() }
}

/// Unwraps a response body of the expected kind.
#[macro_export]
macro_rules! expect_body {
    ($body:expr, $variant:ident) => {
        match $body {
            kelp_core::codec::generated::ResponseBody::$variant(m) => m,
            other => panic!("expected {} response, got {:?}", stringify!($variant), other.api_key()),
        }
    };
}

/// Durations for tests.
#[must_use]
pub fn ms(n: i64) -> Duration {
    Duration::from_millis(n)
}

/// The wall-clock time the harness starts at (ms); record timestamps near it are valid.
pub const START_WALL_MS: i64 = 1_700_000_000_000;

/// One uncompressed batch of `values` (key `k`, timestamps [`START_WALL_MS`]).
#[must_use]
pub fn batch(values: &[&str]) -> Bytes {
    batch_from(RecordBatchBuilder::new(Compression::None), values)
}

/// One batch of `values` from an idempotent producer: id, epoch and first sequence.
#[must_use]
pub fn idempotent_batch(values: &[&str], producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    batch_from(RecordBatchBuilder::new(Compression::None).producer(producer_id, epoch, base_sequence), values)
}

/// Appends `values` to `builder` and builds the batch.
#[must_use]
pub fn batch_from(mut builder: RecordBatchBuilder, values: &[&str]) -> Bytes {
    for v in values {
        builder.append(START_WALL_MS, Some(b"k"), Some(v.as_bytes()), &[]).expect("builds");
    }
    builder.build().expect("builds")
}

/// A produce request for one partition.
#[must_use]
pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        acks,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A sessionless fetch of one partition by name (v12 and below), 1 MiB budgets.
#[must_use]
pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> RequestBody {
    RequestBody::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// ListOffsets (v8) for partition 0 of `topic` at `timestamp` (-1 latest, -2 earliest, or a
/// time); panics on an error. Returns the offset.
pub fn list_offset(h: &mut Harness, c: ConnId, topic: &str, timestamp: i64) -> i64 {
    use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
    let req = RequestBody::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition { partition_index: 0, timestamp, ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let p = match h.call(c, req, 8) {
        ResponseBody::ListOffsets(m) => m.topics[0].partitions[0].clone(),
        other => panic!("expected ListOffsets response, got {:?}", other.api_key()),
    };
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Topic config overrides as a CreateTopics request carries them.
#[must_use]
pub fn topic_configs(configs: &[(&str, &str)]) -> Vec<CreatableTopicConfig> {
    configs
        .iter()
        .map(|(k, v)| CreatableTopicConfig { name: (*k).into(), value: Some((*v).into()), ..Default::default() })
        .collect()
}

/// Creates topic `name` with `partitions` partitions and these config overrides; panics on
/// an error. Returns its id.
pub fn create_topic_with(h: &mut Harness, conn: ConnId, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Uuid {
    let req = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            configs: topic_configs(configs),
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = match h.call(conn, RequestBody::CreateTopics(req), 7) {
        ResponseBody::CreateTopics(m) => m,
        other => panic!("expected CreateTopics response, got {:?}", other.api_key()),
    };
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
    resp.topics[0].topic_id
}

/// Creates topic `name` with `partitions` partitions; panics on an error. Returns its id.
pub fn create_topic(h: &mut Harness, conn: ConnId, name: &str, partitions: i32) -> Uuid {
    create_topic_with(h, conn, name, partitions, &[])
}

/// Every record in a record set as (offset, value), checking each batch's CRC.
#[must_use]
pub fn record_values(records: &RecordSet) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for batch in Batches::new(records.to_bytes()) {
        let batch = batch.expect("whole batches");
        batch.validate().expect("valid CRC");
        for r in &batch.records(1 << 20).expect("records") {
            let r = r.expect("record");
            out.push((r.offset(), String::from_utf8(r.value_slice().unwrap_or_default().to_vec()).expect("utf8")));
        }
    }
    out
}

// ---- consumer groups ---------------------------------------------------------------------

/// A consumer-protocol subscription (version 0) to `topics`, as a JoinGroup protocol's metadata.
#[must_use]
pub fn subscription(topics: &[&str]) -> Bytes {
    use kelp_core::codec::generated::consumer_protocol_subscription::ConsumerProtocolSubscription;
    let s =
        ConsumerProtocolSubscription { topics: topics.iter().map(|t| KStr::from(*t)).collect(), ..Default::default() };
    let mut w = Writer::default();
    w.i16(0);
    s.encode(&mut w, 0);
    w.into_bytes()
}

/// A JoinGroup of protocol type `consumer`: session timeout 10 s, rebalance timeout 30 s.
#[must_use]
pub fn join_request(group: &str, member_id: &str, instance: Option<&str>, protocols: &[(&str, Bytes)]) -> RequestBody {
    use kelp_core::codec::generated::join_group::{JoinGroupRequest, JoinGroupRequestProtocol};
    RequestBody::JoinGroup(JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        member_id: member_id.into(),
        group_instance_id: instance.map(KStr::from),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|(n, m)| JoinGroupRequestProtocol { name: (*n).into(), metadata: m.clone(), ..Default::default() })
            .collect(),
        ..Default::default()
    })
}

/// A SyncGroup; `assignments` only from the leader.
#[must_use]
pub fn sync_request(
    group: &str,
    generation: i32,
    member_id: &str,
    instance: Option<&str>,
    assignments: &[(&str, Bytes)],
) -> RequestBody {
    use kelp_core::codec::generated::sync_group::{SyncGroupRequest, SyncGroupRequestAssignment};
    RequestBody::SyncGroup(SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: instance.map(KStr::from),
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| SyncGroupRequestAssignment {
                member_id: (*m).into(),
                assignment: a.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// A Heartbeat.
#[must_use]
pub fn heartbeat_request(group: &str, generation: i32, member_id: &str, instance: Option<&str>) -> RequestBody {
    use kelp_core::codec::generated::heartbeat::HeartbeatRequest;
    RequestBody::Heartbeat(HeartbeatRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: instance.map(KStr::from),
        ..Default::default()
    })
}

/// A LeaveGroup (v3+ form) of these (member id, instance id) pairs.
#[must_use]
pub fn leave_request(group: &str, members: &[(&str, Option<&str>)]) -> RequestBody {
    use kelp_core::codec::generated::leave_group::{LeaveGroupRequest, MemberIdentity};
    RequestBody::LeaveGroup(LeaveGroupRequest {
        group_id: group.into(),
        members: members
            .iter()
            .map(|(m, i)| MemberIdentity {
                member_id: (*m).into(),
                group_instance_id: i.map(KStr::from),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// An OffsetCommit of (topic, partition, offset) by name (v9 and below).
#[must_use]
pub fn commit_request(group: &str, generation: i32, member_id: &str, offsets: &[(&str, i32, i64)]) -> RequestBody {
    use kelp_core::codec::generated::offset_commit::{
        OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o) in offsets {
        let part = OffsetCommitRequestPartition {
            partition_index: *p,
            committed_offset: *o,
            committed_metadata: Some(KStr::from(format!("meta-{o}"))),
            ..Default::default()
        };
        match topics.iter_mut().find(|x| x.name.as_str() == *t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(OffsetCommitRequestTopic {
                name: (*t).into(),
                partitions: vec![part],
                ..Default::default()
            }),
        }
    }
    RequestBody::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation,
        member_id: member_id.into(),
        topics,
        ..Default::default()
    })
}

/// An OffsetFetch (v1-v7 form) of one group; `None` asks for every partition.
#[must_use]
pub fn offset_fetch_request(group: &str, topics: Option<&[(&str, &[i32])]>, require_stable: bool) -> RequestBody {
    use kelp_core::codec::generated::offset_fetch::{OffsetFetchRequest, OffsetFetchRequestTopic};
    RequestBody::OffsetFetch(OffsetFetchRequest {
        group_id: group.into(),
        topics: topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| OffsetFetchRequestTopic {
                    name: (*t).into(),
                    partition_indexes: ps.to_vec(),
                    ..Default::default()
                })
                .collect()
        }),
        require_stable,
        ..Default::default()
    })
}

/// OffsetForLeaderEpoch (v4) for one partition: the client knows `current` as the leader epoch
/// and asks where `epoch` ended.
pub fn epoch_end(
    h: &mut Harness,
    c: ConnId,
    topic: &str,
    partition: i32,
    current: i32,
    epoch: i32,
) -> kelp_core::codec::generated::offset_for_leader_epoch::EpochEndOffset {
    use kelp_core::codec::generated::offset_for_leader_epoch::{
        OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let req = OffsetForLeaderEpochRequest {
        replica_id: -1,
        topics: vec![OffsetForLeaderTopic {
            topic: topic.into(),
            partitions: vec![OffsetForLeaderPartition {
                partition,
                current_leader_epoch: current,
                leader_epoch: epoch,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = crate::expect_body!(h.call(c, RequestBody::OffsetForLeaderEpoch(req), 4), OffsetForLeaderEpoch);
    resp.topics[0].partitions[0].clone()
}
