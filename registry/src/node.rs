//! The registry as a Kafka client of kelp's own broker, without IO.
//!
//! A [`Node`] owns a [`Registry`] and keeps it in step with the `_schemas` topic. It speaks the
//! Kafka protocol over one connection to the broker (in kelp, an in-process connection): it
//! creates the topic if it is missing (one partition, `cleanup.policy=compact`), reads it from
//! the start, and serves HTTP requests once it has read up to the end it saw. A write is
//! produced to the topic (acks=all) and answered only once the node has read it back and
//! applied it, so what a client is told is what a restart, or another reader of the topic,
//! sees; a write that fails or times out answers 50001 or 50002 and changes nothing here.
//!
//! Writes go one produce at a time: a request is decided ([`Registry::handle`]) against the
//! state every earlier write has left. Writes that queue behind a produce in flight go together
//! in the next one (a group commit): each is decided against a scratch copy of the state with
//! the writes before it applied, so a store whose acknowledgements are slow (SeaweedMQ's
//! flushes) costs a burst of writes one round trip, not one each. A request whose answer would
//! depend on writes not yet read back (a read, or a write that turns out to need none) waits
//! for them. Reads are answered at once from the state applied so far.
//! Once it has read to the end, the node looks for new records every half second, so records
//! another writer adds are applied too. Its fetches never wait at the broker, which reads
//! nothing more of a connection while one of its fetches is in flight. A request that waits
//! (for the node to be ready, or behind other writes) longer than the write timeout is
//! answered 50002.
//!
//! The driver feeds it the broker's bytes ([`Node::handle_kafka`]), HTTP requests
//! ([`Node::handle_http`]) and time ([`Node::handle_tick`]); it drains [`Node::poll_output`]
//! after each, sending [`NodeOutput::Kafka`] bytes to the broker and [`NodeOutput::Reply`]
//! answers to their HTTP clients. Time is the wall clock in milliseconds, only ever compared
//! with itself.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, Bytes, BytesMut};
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreatableTopicConfig, CreateTopicsRequest};
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, ErrorCode, Message, Reader, encode_request_frame};
use kelp_core::records::{Batches, Compression, RecordBatchBuilder};

use crate::api::{Outcome, Request, Response};
use crate::store::{Record, Registry};

const CREATE_TOPICS_VERSION: i16 = 5;
const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
/// The largest response frame the node takes from the broker.
const MAX_FRAME: usize = 64 << 20;
/// Bytes one fetch asks for.
const FETCH_BYTES: i32 = 8 << 20;
/// How often the node looks for records another writer added, once it has read to the end.
const TAIL_INTERVAL_MS: u64 = 500;
/// The largest decompressed batch read back (the node writes its own uncompressed).
const MAX_DECOMPRESSED: usize = 64 << 20;
/// How long to wait before asking again after the broker refused.
const RETRY_MS: u64 = 200;
/// HTTP requests waiting for the node to be ready or for the write before them, at most.
const MAX_WAITING: usize = 1024;
/// The client id the node sends.
const CLIENT_ID: &str = "kelp-schema-registry";

/// One HTTP request, owned, as the node queues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRequest {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The path, still percent-encoded.
    pub path: String,
    /// The query string without `?`, still percent-encoded.
    pub query: String,
    /// The body.
    pub body: Vec<u8>,
}

impl OwnedRequest {
    /// The borrowed form [`Registry::handle`] takes.
    #[must_use]
    pub fn as_request(&self) -> Request<'_> {
        Request { method: &self.method, path: &self.path, query: &self.query, body: &self.body }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutput {
    /// Bytes for the broker connection (whole request frames, size prefix included).
    Kafka(Bytes),
    /// The answer to HTTP request `id`.
    Reply {
        /// The id the driver gave with [`Node::handle_http`].
        id: u64,
        /// The answer.
        response: Response,
    },
}

/// Configuration of a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The topic the registry keeps its state in (`_schemas`).
    pub topic: String,
    /// How long a write may take, from produce to applied, before it answers 50002.
    pub write_timeout_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { topic: "_schemas".into(), write_timeout_ms: 10_000 }
    }
}

/// Where the node is in reaching the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Creating the topic (or learning it exists).
    Creating,
    /// Reading the topic up to the high watermark.
    Loading,
    /// Serving.
    Ready,
}

/// A request sent to the broker and not answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    CreateTopic,
    Fetch,
    Produce,
}

/// The writes in progress: produced together, not yet read back.
#[derive(Debug)]
struct Write {
    /// The HTTP requests to answer, each with its answer; emptied once they were answered
    /// 50002 (the write still blocks the next one until the broker has answered it, so no two
    /// writes are decided against the same state).
    answers: Vec<(u64, Response)>,
    records: usize,
    /// The correlation id of its Produce request.
    correlation: i32,
    /// The offset of its last record, once the broker has stored it.
    last_offset: Option<i64>,
    deadline_ms: u64,
}

/// A write decided and not yet produced: its request (`None` for the node's own NOOP), its
/// records and its answer.
struct Decided {
    id: Option<u64>,
    records: Vec<Record>,
    reply: Response,
}

/// At most this many writes go in one produce.
const MAX_GROUP: usize = 64;
/// At most this many bytes of records go in one produce (a single larger write goes alone);
/// well under the topic's default `max.message.bytes`.
const MAX_GROUP_BYTES: usize = 512 << 10;

fn size_of(records: &[Record]) -> usize {
    records.iter().map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len)).sum()
}

/// An HTTP request not decided yet, and when it is answered 50002 if it still waits.
#[derive(Debug)]
struct Waiting {
    id: u64,
    req: OwnedRequest,
    deadline_ms: u64,
}

/// The registry, kept in step with its topic; see the module docs.
#[derive(Debug)]
pub struct Node {
    registry: Registry,
    config: NodeConfig,
    phase: Phase,
    now_ms: u64,
    correlation: i32,
    calls: HashMap<i32, Call>,
    inbox: BytesMut,
    /// The next offset to read.
    fetch_offset: i64,
    fetch_in_flight: bool,
    /// When to fetch next (reading on while idle, or again after a refusal).
    fetch_at: Option<u64>,
    /// When to ask for the topic again after a refusal.
    create_at: Option<u64>,
    write: Option<Write>,
    /// When to write the NOOP of a sync (see `sync`); no write is decided until it is done.
    sync_at: Option<u64>,
    /// HTTP requests not decided yet: before the node is ready, and writes behind a write.
    waiting: VecDeque<Waiting>,
    out: VecDeque<NodeOutput>,
    /// Records in the topic the registry could not apply (kept going past them).
    skipped: u64,
    /// The broker's view, kept in step with what is applied (see [`Node::with_catalog`]).
    catalog: Option<std::sync::Arc<crate::catalog::Catalog>>,
}

impl Node {
    /// A node for `registry` (normally empty), starting at `now_ms`; its first output creates
    /// the topic.
    #[must_use]
    pub fn new(registry: Registry, config: NodeConfig, now_ms: u64) -> Self {
        let mut node = Self {
            registry,
            config,
            phase: Phase::Creating,
            now_ms,
            correlation: 0,
            calls: HashMap::new(),
            inbox: BytesMut::new(),
            fetch_offset: 0,
            fetch_in_flight: false,
            fetch_at: None,
            create_at: None,
            write: None,
            sync_at: None,
            waiting: VecDeque::new(),
            out: VecDeque::new(),
            skipped: 0,
            catalog: None,
        };
        node.send_create();
        node
    }

    /// Keeps `catalog` in step with the registry: synced whenever records were applied, before
    /// the writes among them are answered.
    #[must_use]
    pub fn with_catalog(mut self, catalog: std::sync::Arc<crate::catalog::Catalog>) -> Self {
        catalog.sync(&self.registry);
        self.catalog = Some(catalog);
        self
    }

    /// The registry as applied so far.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether the node has read its topic to the end once and serves requests.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Records of the topic the registry could not apply.
    #[must_use]
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<NodeOutput> {
        self.out.pop_front()
    }

    /// When [`Node::handle_tick`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let write = self.write.as_ref().filter(|w| !w.answers.is_empty()).map(|w| w.deadline_ms);
        let waiting = self.waiting.front().map(|w| w.deadline_ms);
        [self.fetch_at, self.create_at, self.sync_at, write, waiting].into_iter().flatten().min()
    }

    /// HTTP request `id` arrived.
    pub fn handle_http(&mut self, now_ms: u64, id: u64, req: OwnedRequest) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase == Phase::Ready {
            self.decide(id, req);
        } else {
            self.wait(id, req);
        }
    }

    /// Time passed: retries, reading on, and deadlines of writes and waiting requests.
    pub fn handle_tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.create_at.is_some_and(|at| at <= self.now_ms) {
            self.create_at = None;
            self.send_create();
        }
        if self.fetch_at.is_some_and(|at| at <= self.now_ms) {
            self.fetch_at = None;
            self.send_fetch();
        }
        if self.sync_at.is_some_and(|at| at <= self.now_ms) && self.write.is_none() && self.phase == Phase::Ready {
            self.sync_at = None;
            self.sync();
        }
        if let Some(w) = self.write.as_mut()
            && w.deadline_ms <= self.now_ms
        {
            for (id, _) in w.answers.drain(..) {
                let response =
                    Response::timeout("Write to the Kafka store timed out while waiting for it to be read back");
                self.out.push_back(NodeOutput::Reply { id, response });
            }
        }
        while self.waiting.front().is_some_and(|w| w.deadline_ms <= self.now_ms) {
            if let Some(w) = self.waiting.pop_front() {
                let response = Response::timeout("Timed out waiting for the Kafka store");
                self.out.push_back(NodeOutput::Reply { id: w.id, response });
            }
        }
    }

    /// Bytes from the broker connection (any split of the stream).
    ///
    /// # Errors
    /// A frame the node cannot read: the connection is beyond use; the driver drops it and
    /// calls [`Node::handle_reconnected`] with a new one.
    pub fn handle_kafka(&mut self, now_ms: u64, bytes: &[u8]) -> Result<(), &'static str> {
        self.now_ms = self.now_ms.max(now_ms);
        self.inbox.extend_from_slice(bytes);
        loop {
            let Some(size) = self.inbox.first_chunk::<4>().map(|b| i32::from_be_bytes(*b)) else { return Ok(()) };
            let size = usize::try_from(size).map_err(|_| "a negative frame size")?;
            if size > MAX_FRAME {
                return Err("a response frame larger than the node takes");
            }
            if self.inbox.len() < 4 + size {
                self.inbox.reserve(4 + size - self.inbox.len());
                return Ok(());
            }
            self.inbox.advance(4);
            let frame = self.inbox.split_to(size).freeze();
            self.handle_frame(&frame)?;
        }
    }

    /// The broker connection was lost and a new one opened. Requests not yet sent on the old
    /// one are dropped, and what the node waits for is asked again on the new one; a write in
    /// progress has an unknown outcome and answers 50001 (if it was stored, the node applies
    /// it when it reads it), and no write is decided until the node has synced (see `sync`).
    pub fn handle_reconnected(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.inbox.clear();
        self.calls.clear();
        self.out.retain(|o| matches!(o, NodeOutput::Reply { .. }));
        self.fetch_in_flight = false;
        self.fetch_at = None;
        self.create_at = None;
        let unknown = self.write.take().map(|w| {
            for (id, _) in w.answers {
                let response = Response::store_error("The connection to the Kafka store was lost during the write");
                self.out.push_back(NodeOutput::Reply { id, response });
            }
        });
        if self.phase == Phase::Creating {
            self.send_create();
        } else {
            self.send_fetch();
            if unknown.is_some() {
                self.sync_at = Some(self.now_ms);
            }
        }
    }

    fn wait(&mut self, id: u64, req: OwnedRequest) {
        if self.waiting.len() >= MAX_WAITING {
            let response = Response::timeout("Too many requests waiting for the Kafka store");
            self.out.push_back(NodeOutput::Reply { id, response });
        } else {
            let deadline_ms = self.now_ms.saturating_add(self.config.write_timeout_ms);
            self.waiting.push_back(Waiting { id, req, deadline_ms });
        }
    }

    /// Whether a write decided now would see every earlier write.
    fn may_write(&self) -> bool {
        self.phase == Phase::Ready && self.write.is_none() && self.sync_at.is_none()
    }

    /// Decides `req` against the state applied so far: a read is answered; a write is
    /// produced, or waits if another write is in progress or waiting.
    fn decide(&mut self, id: u64, req: OwnedRequest) {
        match self.registry.handle(&req.as_request()) {
            Outcome::Reply(response) => self.out.push_back(NodeOutput::Reply { id, response }),
            Outcome::Write { .. } if !self.may_write() || !self.waiting.is_empty() => self.wait(id, req),
            Outcome::Write { records, reply } => self.produce(vec![Decided { id: Some(id), records, reply }]),
        }
    }

    /// Decides the waiting requests in order, until one becomes the write in progress.
    fn serve_waiting(&mut self) {
        while self.may_write() {
            let Some(w) = self.waiting.pop_front() else { return };
            match self.registry.handle(&w.req.as_request()) {
                Outcome::Reply(response) => self.out.push_back(NodeOutput::Reply { id: w.id, response }),
                Outcome::Write { records, reply } => {
                    let mut group = vec![Decided { id: Some(w.id), records, reply }];
                    self.gather(&mut group);
                    self.produce(group);
                }
            }
        }
    }

    /// Adds to `group` the writes waiting behind it, each decided against a scratch state with
    /// the group's records applied, while they are writes that fit; stops at the first request
    /// that is not (it waits for the group to be read back).
    fn gather(&mut self, group: &mut Vec<Decided>) {
        if self.waiting.is_empty() || group.iter().all(|d| d.records.is_empty()) {
            return;
        }
        let mut scratch = self.registry.clone();
        let mut bytes = 0;
        for d in group.iter() {
            bytes += size_of(&d.records);
            if d.records.iter().any(|r| scratch.apply(&r.key, r.value.as_deref()).is_err()) {
                return;
            }
        }
        while group.len() < MAX_GROUP {
            let Some(next) = self.waiting.front() else { return };
            let Outcome::Write { records, reply } = scratch.handle(&next.req.as_request()) else { return };
            let size = size_of(&records);
            if records.is_empty() || bytes + size > MAX_GROUP_BYTES {
                return;
            }
            if records.iter().any(|r| scratch.apply(&r.key, r.value.as_deref()).is_err()) {
                // Cannot happen for records the registry wrote; if it did, the request is
                // decided again, alone, against the real state once the group is read back.
                return;
            }
            bytes += size;
            if let Some(w) = self.waiting.pop_front() {
                group.push(Decided { id: Some(w.id), records, reply });
            }
        }
    }

    /// Produces the records of `group` in one batch, as the write in progress.
    fn produce(&mut self, group: Vec<Decided>) {
        let mut answers = Vec::with_capacity(group.len());
        let mut records = Vec::new();
        for d in group {
            if d.records.is_empty() {
                // Nothing to write: answered at once (only ever a group of one).
                if let Some(id) = d.id {
                    self.out.push_back(NodeOutput::Reply { id, response: d.reply });
                }
                continue;
            }
            if let Some(id) = d.id {
                answers.push((id, d.reply));
            }
            records.extend(d.records);
        }
        if records.is_empty() {
            return;
        }
        let timestamp = i64::try_from(self.now_ms).unwrap_or(i64::MAX);
        let mut batch = RecordBatchBuilder::new(Compression::None);
        for r in &records {
            if batch.append(timestamp, Some(&r.key), r.value.as_deref(), &[]).is_err() {
                self.unencodable(answers);
                return;
            }
        }
        let Ok(batch) = batch.build() else {
            self.unencodable(answers);
            return;
        };
        let request = RequestBody::Produce(ProduceRequest {
            acks: -1,
            timeout_ms: i32::try_from(self.config.write_timeout_ms).unwrap_or(i32::MAX),
            topic_data: vec![TopicProduceData {
                name: self.config.topic.as_str().into(),
                partition_data: vec![PartitionProduceData { index: 0, records: Some(batch), ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let correlation = self.send(Call::Produce, &request, PRODUCE_VERSION);
        self.write = Some(Write {
            answers,
            records: records.len(),
            correlation,
            last_offset: None,
            deadline_ms: self.now_ms.saturating_add(self.config.write_timeout_ms),
        });
    }

    fn unencodable(&mut self, answers: Vec<(u64, Response)>) {
        for (id, _) in answers {
            let response = Response::store_error("A registry record could not be encoded");
            self.out.push_back(NodeOutput::Reply { id, response });
        }
    }

    /// After a write whose outcome is unknown (the broker refused or timed it out, or the
    /// connection was lost): writes a NOOP record and blocks every other write until it is
    /// read back. The partition is in order, so by then the unknown write was either stored
    /// before it, and applied, or not stored at all; no later write is decided against a
    /// state that misses it.
    fn sync(&mut self) {
        let noop = Record { key: br#"{"keytype":"NOOP","magic":0}"#.to_vec(), value: None };
        self.produce(vec![Decided { id: None, records: vec![noop], reply: Response::store_error("unused") }]);
    }

    fn send_create(&mut self) {
        let request = RequestBody::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: self.config.topic.as_str().into(),
                num_partitions: 1,
                replication_factor: -1,
                configs: vec![CreatableTopicConfig {
                    name: "cleanup.policy".into(),
                    value: Some("compact".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            timeout_ms: 30_000,
            ..Default::default()
        });
        self.send(Call::CreateTopic, &request, CREATE_TOPICS_VERSION);
    }

    /// Reads on from `fetch_offset`, unless a fetch is out already. Fetches never wait at the
    /// broker: the broker reads nothing more of a connection while it has a fetch of it in
    /// flight, and the node's writes go on the same connection.
    fn send_fetch(&mut self) {
        if self.fetch_in_flight {
            return;
        }
        self.fetch_in_flight = true;
        self.fetch_at = None;
        let request = RequestBody::Fetch(FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: FETCH_BYTES,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: self.config.topic.as_str().into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: self.fetch_offset,
                    partition_max_bytes: FETCH_BYTES,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        self.send(Call::Fetch, &request, FETCH_VERSION);
    }

    fn send(&mut self, call: Call, request: &RequestBody, version: i16) -> i32 {
        self.correlation = self.correlation.wrapping_add(1);
        self.calls.insert(self.correlation, call);
        self.out.push_back(NodeOutput::Kafka(encode_request_frame(
            request,
            version,
            self.correlation,
            Some(CLIENT_ID),
        )));
        self.correlation
    }

    fn handle_frame(&mut self, frame: &Bytes) -> Result<(), &'static str> {
        let mut r = Reader::new(frame);
        let correlation = r.i32("correlation id").map_err(|_| "a response without a header")?;
        let call = self.calls.remove(&correlation).ok_or("a response to no request")?;
        let (api, version) = match call {
            Call::CreateTopic => (ApiKey::CREATE_TOPICS, CREATE_TOPICS_VERSION),
            Call::Fetch => (ApiKey::FETCH, FETCH_VERSION),
            Call::Produce => (ApiKey::PRODUCE, PRODUCE_VERSION),
        };
        let mut r = Reader::new(frame);
        ResponseHeader::decode(&mut r, api.response_header_version(version)).map_err(|_| "a bad response header")?;
        let body = ResponseBody::decode(api, &mut r, version).map_err(|_| "a bad response body")?;
        match body {
            ResponseBody::CreateTopics(resp) => {
                let code = resp.topics.first().map_or(ErrorCode::UNKNOWN_SERVER_ERROR, |t| ErrorCode(t.error_code));
                if code == ErrorCode::NONE || code == ErrorCode::TOPIC_ALREADY_EXISTS {
                    self.phase = Phase::Loading;
                    self.send_fetch();
                } else {
                    tracing::warn!(topic = %self.config.topic, error = %code, "schema registry: cannot create its topic");
                    self.create_at = Some(self.now_ms.saturating_add(RETRY_MS));
                }
            }
            ResponseBody::Fetch(resp) => {
                self.fetch_in_flight = false;
                self.fetched(resp);
            }
            ResponseBody::Produce(resp) => self.produced(correlation, &resp),
            _ => return Err("a response of another API"),
        }
        Ok(())
    }

    /// The broker answered the Produce with `correlation`: the write in progress now waits to
    /// be read back, or has failed.
    fn produced(&mut self, correlation: i32, resp: &kelp_core::codec::generated::produce::ProduceResponse) {
        let Some(w) = self.write.as_mut().filter(|w| w.correlation == correlation) else {
            // The write it was for is gone (a lost connection): nothing waits for it.
            return;
        };
        let part = resp.responses.first().and_then(|t| t.partition_responses.first());
        let code = part.map_or(ErrorCode::UNKNOWN_SERVER_ERROR, |p| ErrorCode(p.error_code));
        match part {
            Some(p) if code == ErrorCode::NONE => {
                let records = i64::try_from(w.records).unwrap_or(i64::MAX);
                w.last_offset = Some(p.base_offset.saturating_add(records - 1));
                self.complete_write();
                // Read it back now rather than at the next idle fetch.
                self.send_fetch();
            }
            _ => {
                for (id, _) in self.write.take().map(|w| w.answers).unwrap_or_default() {
                    let response = if code == ErrorCode::REQUEST_TIMED_OUT {
                        Response::timeout(format!("Write to the Kafka store timed out: {code}"))
                    } else {
                        Response::store_error(format!("Error while writing to the Kafka store: {code}"))
                    };
                    self.out.push_back(NodeOutput::Reply { id, response });
                }
                // Not at once: a store that refuses writes would be asked again and again.
                self.sync_at = Some(self.now_ms.saturating_add(RETRY_MS));
            }
        }
    }

    fn fetched(&mut self, resp: kelp_core::codec::generated::fetch::FetchResponse) {
        let part = resp.responses.into_iter().next().and_then(|t| t.partitions.into_iter().next());
        let Some(part) = part else {
            self.fetch_at = Some(self.now_ms.saturating_add(RETRY_MS));
            return;
        };
        let code = ErrorCode(part.error_code);
        if code == ErrorCode::OFFSET_OUT_OF_RANGE && part.log_start_offset > self.fetch_offset {
            // Deleted from under the node (retention on a topic meant to be compacted):
            // read on from what is left.
            self.fetch_offset = part.log_start_offset;
            self.send_fetch();
            return;
        }
        if code != ErrorCode::NONE {
            tracing::debug!(error = %code, "schema registry: fetch refused");
            self.fetch_at = Some(self.now_ms.saturating_add(RETRY_MS));
            return;
        }
        let before = self.fetch_offset;
        if let Some(records) = part.records {
            self.apply_batches(records.to_bytes());
        }
        if self.fetch_offset > before
            && let Some(catalog) = &self.catalog
        {
            catalog.sync(&self.registry);
        }
        let at_end = self.fetch_offset >= part.high_watermark;
        if self.phase == Phase::Loading && at_end {
            self.phase = Phase::Ready;
            if let Some(catalog) = &self.catalog {
                catalog.set_ready();
            }
            tracing::info!(
                topic = %self.config.topic,
                offset = self.fetch_offset,
                skipped = self.skipped,
                "schema registry: read its topic; serving"
            );
        }
        self.complete_write();
        self.serve_waiting();
        // Read on at once while there is more (or a write to read back); otherwise look again
        // after a while, for records another writer adds.
        let waiting_for_write = self.write.as_ref().is_some_and(|w| w.last_offset.is_some());
        if self.phase != Phase::Ready || !at_end || self.fetch_offset > before || waiting_for_write {
            self.send_fetch();
        } else if !self.fetch_in_flight {
            self.fetch_at = Some(self.now_ms.saturating_add(TAIL_INTERVAL_MS));
        }
    }

    fn apply_batches(&mut self, bytes: Bytes) {
        for batch in Batches::new(bytes) {
            // A partial batch at the end of a fetch is read again by the next one.
            let Ok(batch) = batch else { break };
            if batch.next_offset() <= self.fetch_offset {
                continue;
            }
            if !batch.is_control() {
                let Ok(records) = batch.records(MAX_DECOMPRESSED) else {
                    self.skipped += u64::try_from(batch.records_count()).unwrap_or(0);
                    self.fetch_offset = batch.next_offset();
                    continue;
                };
                for record in records.iter() {
                    let Ok(record) = record else {
                        self.skipped += 1;
                        break;
                    };
                    if record.offset() < self.fetch_offset {
                        continue;
                    }
                    let applied = match record.key_slice() {
                        Some(key) => self.registry.apply(key, record.value_slice()),
                        None => Err(crate::store::ApplyError::BadKey("no key")),
                    };
                    if let Err(e) = applied {
                        self.skipped += 1;
                        tracing::warn!(offset = record.offset(), error = ?e, "schema registry: a record it cannot apply");
                    }
                }
            }
            self.fetch_offset = batch.next_offset();
        }
    }

    /// Answers the write in progress once the node has read past its last record.
    fn complete_write(&mut self) {
        let done = self.write.as_ref().is_some_and(|w| w.last_offset.is_some_and(|last| self.fetch_offset > last));
        if done && let Some(w) = self.write.take() {
            for (id, response) in w.answers {
                self.out.push_back(NodeOutput::Reply { id, response });
            }
            self.serve_waiting();
        }
    }
}
