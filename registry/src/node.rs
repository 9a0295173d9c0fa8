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
//! Writes go one at a time: a request is decided ([`Registry::handle`]) against the state
//! every earlier write has left. Reads are answered at once from the state applied so far.
//! The node keeps reading the topic (a long-polling fetch), so records another writer adds are
//! applied too.
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
/// How long a fetch that has caught up waits at the broker for new records.
const TAIL_WAIT_MS: i32 = 500;
/// The largest decompressed batch read back (the node writes its own uncompressed).
const MAX_DECOMPRESSED: usize = 64 << 20;
/// How long to wait before asking again after the broker refused.
const RETRY_MS: u64 = 200;
/// HTTP requests waiting for the node to be ready or for the write before them, at most.
const MAX_WAITING: usize = 4096;
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
    /// Reading the topic up to the end seen by the first fetch that came back empty.
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

/// The write in progress.
#[derive(Debug)]
struct Write {
    id: u64,
    reply: Response,
    records: usize,
    /// The offset of its last record, once the broker has stored it.
    last_offset: Option<i64>,
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
    /// When to send the next fetch or create, after a refusal.
    retry_at: Option<(u64, Call)>,
    write: Option<Write>,
    /// HTTP requests not decided yet: before the node is ready, and writes behind a write.
    waiting: VecDeque<(u64, OwnedRequest)>,
    out: VecDeque<NodeOutput>,
    /// Records in the topic the registry could not apply (kept going past them).
    skipped: u64,
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
            retry_at: None,
            write: None,
            waiting: VecDeque::new(),
            out: VecDeque::new(),
            skipped: 0,
        };
        node.send_create();
        node
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
        let retry = self.retry_at.map(|(at, _)| at);
        let write = self.write.as_ref().map(|w| w.deadline_ms);
        match (retry, write) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    /// Time passed: retries and write timeouts.
    pub fn handle_tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if let Some((at, call)) = self.retry_at
            && at <= self.now_ms
        {
            self.retry_at = None;
            match call {
                Call::CreateTopic => self.send_create(),
                Call::Fetch | Call::Produce => self.send_fetch(),
            }
        }
        if self.write.as_ref().is_some_and(|w| w.deadline_ms <= self.now_ms) {
            if let Some(w) = self.write.take() {
                let response =
                    Response::timeout("Write to the Kafka store timed out while waiting for it to be read back");
                self.out.push_back(NodeOutput::Reply { id: w.id, response });
            }
            self.serve_waiting();
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

    /// The broker connection was lost and a new one opened: what was in flight on the old one
    /// is sent again, but for a write, whose outcome is unknown (it answers 50001; if it was
    /// stored, the node applies it when it reads it).
    pub fn handle_reconnected(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.inbox.clear();
        let lost: Vec<Call> = self.calls.drain().map(|(_, c)| c).collect();
        if let Some(w) = self.write.take() {
            let response = Response::store_error("The connection to the Kafka store was lost during the write");
            self.out.push_back(NodeOutput::Reply { id: w.id, response });
        }
        if lost.contains(&Call::CreateTopic) || self.phase == Phase::Creating {
            self.retry_at = None;
            self.send_create();
        } else if lost.contains(&Call::Fetch) || self.retry_at.is_some() {
            self.retry_at = None;
            self.send_fetch();
        }
        self.serve_waiting();
    }

    fn wait(&mut self, id: u64, req: OwnedRequest) {
        if self.waiting.len() >= MAX_WAITING {
            let response = Response::timeout("Too many requests waiting for the Kafka store");
            self.out.push_back(NodeOutput::Reply { id, response });
        } else {
            self.waiting.push_back((id, req));
        }
    }

    /// Decides `req` against the state applied so far: a read is answered; a write is
    /// produced, or waits if another write is in progress or waiting.
    fn decide(&mut self, id: u64, req: OwnedRequest) {
        match self.registry.handle(&req.as_request()) {
            Outcome::Reply(response) => self.out.push_back(NodeOutput::Reply { id, response }),
            Outcome::Write { .. } if self.write.is_some() || !self.waiting.is_empty() => self.wait(id, req),
            Outcome::Write { records, reply } => self.produce(id, &records, reply),
        }
    }

    /// Decides the waiting requests in order, until one becomes the write in progress.
    fn serve_waiting(&mut self) {
        while self.phase == Phase::Ready && self.write.is_none() {
            let Some((id, req)) = self.waiting.pop_front() else { return };
            match self.registry.handle(&req.as_request()) {
                Outcome::Reply(response) => self.out.push_back(NodeOutput::Reply { id, response }),
                Outcome::Write { records, reply } => self.produce(id, &records, reply),
            }
        }
    }

    fn produce(&mut self, id: u64, records: &[Record], reply: Response) {
        if records.is_empty() {
            self.out.push_back(NodeOutput::Reply { id, response: reply });
            return;
        }
        let timestamp = i64::try_from(self.now_ms).unwrap_or(i64::MAX);
        let mut batch = RecordBatchBuilder::new(Compression::None);
        for r in records {
            if batch.append(timestamp, Some(&r.key), r.value.as_deref(), &[]).is_err() {
                let response = Response::store_error("A registry record could not be encoded");
                self.out.push_back(NodeOutput::Reply { id, response });
                return;
            }
        }
        let Ok(batch) = batch.build() else {
            let response = Response::store_error("A registry record could not be encoded");
            self.out.push_back(NodeOutput::Reply { id, response });
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
        self.send(Call::Produce, &request, PRODUCE_VERSION);
        self.write = Some(Write {
            id,
            reply,
            records: records.len(),
            last_offset: None,
            deadline_ms: self.now_ms.saturating_add(self.config.write_timeout_ms),
        });
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

    fn send_fetch(&mut self) {
        let max_wait_ms = if self.phase == Phase::Ready { TAIL_WAIT_MS } else { 0 };
        let request = RequestBody::Fetch(FetchRequest {
            replica_id: -1,
            max_wait_ms,
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

    fn send(&mut self, call: Call, request: &RequestBody, version: i16) {
        self.correlation = self.correlation.wrapping_add(1);
        self.calls.insert(self.correlation, call);
        self.out.push_back(NodeOutput::Kafka(encode_request_frame(
            request,
            version,
            self.correlation,
            Some(CLIENT_ID),
        )));
    }

    fn retry(&mut self, call: Call) {
        self.retry_at = Some((self.now_ms.saturating_add(RETRY_MS), call));
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
                    self.retry(Call::CreateTopic);
                }
            }
            ResponseBody::Fetch(resp) => self.fetched(resp),
            ResponseBody::Produce(resp) => {
                let part = resp.responses.first().and_then(|t| t.partition_responses.first());
                let code = part.map_or(ErrorCode::UNKNOWN_SERVER_ERROR, |p| ErrorCode(p.error_code));
                match (self.write.as_mut(), part) {
                    (Some(w), Some(p)) if code == ErrorCode::NONE => {
                        let records = i64::try_from(w.records).unwrap_or(i64::MAX);
                        w.last_offset = Some(p.base_offset.saturating_add(records - 1));
                        self.complete_write();
                    }
                    (Some(_), _) => {
                        if let Some(w) = self.write.take() {
                            let response = if code == ErrorCode::REQUEST_TIMED_OUT {
                                Response::timeout(format!("Write to the Kafka store timed out: {code}"))
                            } else {
                                Response::store_error(format!("Error while writing to the Kafka store: {code}"))
                            };
                            self.out.push_back(NodeOutput::Reply { id: w.id, response });
                        }
                        self.serve_waiting();
                    }
                    (None, _) => {}
                }
            }
            _ => return Err("a response of another API"),
        }
        Ok(())
    }

    fn fetched(&mut self, resp: kelp_core::codec::generated::fetch::FetchResponse) {
        let part = resp.responses.into_iter().next().and_then(|t| t.partitions.into_iter().next());
        let Some(part) = part else {
            self.retry(Call::Fetch);
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
            self.retry(Call::Fetch);
            return;
        }
        if let Some(records) = part.records {
            self.apply_batches(records.to_bytes());
        }
        if self.phase == Phase::Loading && self.fetch_offset >= part.high_watermark {
            self.phase = Phase::Ready;
            tracing::info!(
                topic = %self.config.topic,
                offset = self.fetch_offset,
                skipped = self.skipped,
                "schema registry: read its topic; serving"
            );
        }
        self.complete_write();
        self.serve_waiting();
        self.send_fetch();
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
            self.out.push_back(NodeOutput::Reply { id: w.id, response: w.reply });
        }
    }
}
