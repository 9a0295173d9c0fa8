//! Client models: programs that talk to the broker as real Kafka clients do, with their
//! retries, backoffs, crashes and rejoins, and that report what they observe to the
//! [`Checker`].
//!
//! A model implements [`Model`]: it is woken by its own timers ([`Io::wake_at`]), gets each
//! response with the context it sent, and hears when its connection is lost. The simulator
//! owns the connection, the framing and the correlation ids; a model only says what to send.
//!
//! Models here: [`Producer`] (idempotent, acks=all, retries), [`ClassicMember`] (a classic
//! consumer-group member: JoinGroup/SyncGroup/Heartbeat, fetch sessions, commits, crashes,
//! static membership, leaves) and [`Admin`] (creates the topics, then creates, grows and deletes
//! scratch topics).
//!
//! The KIP-848 member (ConsumerGroupHeartbeat) is another [`Model`], in [`super::consumer`];
//! its [`Model::view`] returns [`View::Member`] with the member epoch as the generation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kelp_core::codec::generated::consumer_protocol_assignment::{ConsumerProtocolAssignment, TopicPartition};
use kelp_core::codec::generated::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kelp_core::codec::generated::create_partitions::{CreatePartitionsRequest, CreatePartitionsTopic};
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use kelp_core::codec::generated::delete_topics::DeleteTopicsRequest;
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use kelp_core::codec::generated::init_producer_id::InitProducerIdRequest;
use kelp_core::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic};
use kelp_core::codec::generated::offset_fetch::OffsetFetchRequest;
use kelp_core::codec::generated::offset_fetch::OffsetFetchRequestTopic;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, ErrorCode, KStr, Message, Reader, Writer};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::time::{Duration, Instant};

use super::invariants::{Checker, Tp, decode};
use super::world::SimRng;
use crate::harness::{commit_request, heartbeat_request, join_request, leave_request, produce_request, sync_request};

/// A request in flight, as its sender remembers it.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Correlation id.
    pub corr: i32,
    /// The API.
    pub api: ApiKey,
    /// The version.
    pub version: i16,
    /// The model's context for it.
    pub tag: u64,
    /// When it was sent.
    pub sent_at: Instant,
}

/// What a model can do while it runs.
pub struct Io<'a> {
    /// Virtual time.
    pub now: Instant,
    /// Wall clock (ms), for record timestamps.
    pub wall_ms: i64,
    /// The model's share of randomness.
    pub rng: &'a mut SimRng,
    /// The checkers.
    pub check: &'a mut Checker,
    /// Whether faults (crashes, leaves) may happen now.
    pub faults_on: bool,
    pub(crate) connected: bool,
    pub(crate) frames: Vec<(Bytes, Pending)>,
    pub(crate) next_corr: &'a mut i32,
    pub(crate) wake: Option<Instant>,
    pub(crate) connect: bool,
    pub(crate) crash: bool,
}

impl Io<'_> {
    /// Whether the model has a connection.
    #[must_use]
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Asks for a connection (granted before the next wake).
    pub fn connect(&mut self) {
        self.connect = true;
    }

    /// Drops the connection without a goodbye (a process crash).
    pub fn crash(&mut self) {
        self.crash = true;
    }

    /// Wakes the model again at `at` (the earliest request wins).
    pub fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    /// Wakes the model after a random wait of `lo` to `hi` milliseconds.
    pub fn wake_between(&mut self, lo: u64, hi: u64) {
        let d = self.rng.millis(lo, hi);
        self.wake_in(d);
    }

    /// Wakes the model after `d`.
    pub fn wake_in(&mut self, d: Duration) {
        self.wake_at(self.now + d);
    }

    /// Sends a request (the connection must be up).
    pub fn send(&mut self, body: &RequestBody, version: i16, tag: u64) {
        debug_assert!(self.connected, "send without a connection");
        let corr = *self.next_corr;
        *self.next_corr = corr.wrapping_add(1);
        let frame = kelp_core::codec::encode_request_frame(body, version, corr, Some("kelp-sim"));
        let p = Pending { corr, api: body.api_key(), version, tag, sent_at: self.now };
        self.frames.push((frame, p));
    }
}

/// What a model shows the liveness check.
#[derive(Clone, Debug)]
pub enum View {
    /// A producer: how many of its records are not yet acknowledged.
    Producer {
        /// Batches waiting for an acknowledgement.
        unacked: usize,
    },
    /// A consumer-group member.
    Member {
        /// The group.
        group: String,
        /// Topics it subscribes to by name.
        topics: Vec<String>,
        /// Its subscription regex, if any (an index into [`super::consumer::REGEXES`]).
        regex: Option<usize>,
        /// KIP-848: when the heartbeat that last succeeded was sent (zero for classic members).
        heard: Instant,
        /// KIP-848: its member id (empty for classic members).
        member_id: String,
        /// Settled in a generation with an assignment (or up and waiting to be).
        active: bool,
        /// Its generation (or member epoch).
        generation: i32,
        /// Its assignment and its position in each partition.
        positions: BTreeMap<Tp, i64>,
        /// The newest high watermark it saw per partition.
        hwms: BTreeMap<Tp, i64>,
    },
    /// Anything with no convergence condition beyond having no request in flight.
    Other {
        /// Whether it still has work to do.
        busy: bool,
    },
}

/// A simulated client program.
pub trait Model {
    /// A name for messages.
    fn name(&self) -> String;
    /// Its timer fired (or it was just connected).
    fn wake(&mut self, io: &mut Io<'_>);
    /// A response to a request it sent.
    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody);
    /// Its connection is gone; every request in flight is lost (and may or may not have
    /// taken effect).
    fn disconnected(&mut self, io: &mut Io<'_>, lost: &[Pending]);
    /// The fault phase is over: finish up, no more crashes.
    fn faults_off(&mut self, io: &mut Io<'_>);
    /// Its state for the liveness check.
    fn view(&self) -> View;
}

/// ListOffsets (v7) for the earliest offset of `tp` (auto.offset.reset=earliest after an
/// OFFSET_OUT_OF_RANGE).
pub(crate) fn earliest_request(tp: &Tp) -> RequestBody {
    use kelp_core::codec::generated::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
    RequestBody::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        isolation_level: 0,
        topics: vec![ListOffsetsTopic {
            name: tp.0.as_str().into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: tp.1,
                current_leader_epoch: -1,
                timestamp: -2,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// The offsets a ListOffsets response reports, by partition (errors left out).
pub(crate) fn listed_offsets(body: &ResponseBody) -> Vec<(Tp, i64)> {
    let ResponseBody::ListOffsets(r) = body else { return Vec::new() };
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0 && p.offset >= 0)
                .map(move |p| ((t.name.as_str().to_owned(), p.partition_index), p.offset))
        })
        .collect()
}

pub(crate) fn err(code: i16) -> ErrorCode {
    ErrorCode(code)
}

fn metadata_request(topics: &[String]) -> RequestBody {
    RequestBody::Metadata(MetadataRequest {
        topics: Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic { name: Some(t.as_str().into()), ..Default::default() })
                .collect(),
        ),
        allow_auto_topic_creation: false,
        ..Default::default()
    })
}

/// Partition counts from a Metadata response, when every topic asked for is there.
fn partition_counts(body: &ResponseBody, topics: &[String]) -> Option<BTreeMap<String, i32>> {
    let ResponseBody::Metadata(m) = body else { return None };
    let mut out = BTreeMap::new();
    for t in topics {
        let mt = m.topics.iter().find(|x| x.name.as_ref().is_some_and(|n| n.as_str() == t))?;
        if mt.error_code != 0 || mt.partitions.is_empty() {
            return None;
        }
        out.insert(t.clone(), i32::try_from(mt.partitions.len()).ok()?);
    }
    Some(out)
}

// ---- producer ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Batch {
    values: Vec<String>,
    /// The earliest timestamp any attempt stamped its records with.
    first_stamp: i64,
    base_seq: i32,
    /// Whether a request carrying it is in flight.
    sent: bool,
    /// Not before this time (retry backoff).
    not_before: Instant,
}

/// An idempotent producer (acks=all): one batch in flight per partition, every retry with the
/// same sequence numbers, a fresh producer id (and its batches dropped as failed) after a
/// sequence error, as the Java client does for an idempotent producer.
#[derive(Debug)]
pub struct Producer {
    id: usize,
    topics: Vec<String>,
    partitions: Vec<Tp>,
    pid: Option<(i64, i16)>,
    init_in_flight: bool,
    meta_in_flight: bool,
    seqs: HashMap<Tp, i32>,
    batches: BTreeMap<Tp, Batch>,
    /// Produce requests in flight: tag -> partitions.
    requests: HashMap<u64, Vec<Tp>>,
    next_tag: u64,
    budget: u32,
    max_records: u64,
    max_gap_ms: u64,
    counter: u64,
    producing: bool,
    /// For compacted topics: how many keys its records spread over, and the share that are
    /// tombstones. `None`: every record has key `k` and a value.
    keyed: Option<(u64, f64)>,
}

impl Producer {
    /// Producer `id` that sends `budget` batches of up to `max_records` records to `topics`.
    #[must_use]
    pub fn new(id: usize, topics: Vec<String>, budget: u32, max_records: u64, max_gap_ms: u64) -> Self {
        Self {
            id,
            topics,
            partitions: Vec::new(),
            pid: None,
            init_in_flight: false,
            meta_in_flight: false,
            seqs: HashMap::new(),
            batches: BTreeMap::new(),
            requests: HashMap::new(),
            next_tag: 1,
            budget,
            max_records,
            max_gap_ms,
            counter: 0,
            producing: true,
            keyed: None,
        }
    }

    /// The same producer, writing records with one of `keys` keys (`k0`, `k1`, ...), a share
    /// `tombstones` of them tombstones: each record's identity (its value, or its `id` header
    /// for a tombstone, marked with `~`) ends with `/` and its key.
    #[must_use]
    pub fn keyed(mut self, keys: u64, tombstones: f64) -> Self {
        self.keyed = Some((keys.max(1), tombstones));
        self
    }

    fn reset_pid(&mut self) {
        // The Java client fails the batches whose sequence is unresolved and starts over with
        // a new id; their values are never sent again, so they cannot be duplicated.
        self.pid = None;
        self.batches.clear();
        self.seqs.clear();
    }

    fn new_batches(&mut self, io: &mut Io<'_>) {
        if !self.producing || self.budget == 0 || self.partitions.is_empty() {
            return;
        }
        let tp = self.partitions[io.rng.below(self.partitions.len() as u64) as usize].clone();
        if self.batches.contains_key(&tp) {
            return;
        }
        let n = io.rng.range(1, self.max_records);
        let values = (0..n)
            .map(|_| {
                self.counter += 1;
                let value = format!("p{}-{}", self.id, self.counter);
                match self.keyed {
                    None => value,
                    Some((keys, tombstones)) => {
                        let key = io.rng.below(keys);
                        let mark = if io.rng.chance(tombstones) { "~" } else { "" };
                        format!("{mark}{value}/k{key}")
                    }
                }
            })
            .collect();
        let base_seq = *self.seqs.get(&tp).unwrap_or(&0);
        let batch = Batch { values, first_stamp: i64::MAX, base_seq, sent: false, not_before: io.now };
        self.batches.insert(tp, batch);
        self.budget -= 1;
    }

    fn send_ready(&mut self, io: &mut Io<'_>) {
        let Some((pid, epoch)) = self.pid else { return };
        let ready: Vec<Tp> =
            self.batches.iter().filter(|(_, b)| !b.sent && b.not_before <= io.now).map(|(tp, _)| tp.clone()).collect();
        if ready.is_empty() {
            return;
        }
        // One request for all ready partitions, as a client batches per broker.
        let mut req: Option<RequestBody> = None;
        for tp in &ready {
            let b = self.batches.get_mut(tp).expect("ready batch");
            b.sent = true;
            b.first_stamp = b.first_stamp.min(io.wall_ms);
            let mut builder = RecordBatchBuilder::new(Compression::None).producer(pid, epoch, b.base_seq);
            for v in &b.values {
                append_record(&mut builder, io.wall_ms, v, self.keyed.is_some());
            }
            let records = builder.build().expect("builds");
            let one = produce_request(&tp.0, tp.1, records, -1);
            req = Some(match (req, one) {
                (None, one) => one,
                (Some(RequestBody::Produce(mut all)), RequestBody::Produce(one)) => {
                    let td = one.topic_data.into_iter().next().expect("one topic");
                    match all.topic_data.iter_mut().find(|t| t.name == td.name) {
                        Some(t) => t.partition_data.extend(td.partition_data),
                        None => all.topic_data.push(td),
                    }
                    RequestBody::Produce(all)
                }
                (Some(other), _) => other,
            });
        }
        let Some(RequestBody::Produce(mut req)) = req else { return };
        req.timeout_ms = 30_000;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.requests.insert(tag, ready);
        io.send(&RequestBody::Produce(req), 9, tag);
    }

    fn retry(&mut self, io: &mut Io<'_>, tp: &Tp) {
        if let Some(b) = self.batches.get_mut(tp) {
            b.sent = false;
            b.not_before = io.now + io.rng.millis(5, 100);
            io.wake_at(b.not_before);
        }
    }
}

/// Appends the record whose identity is `id`: key `k` and the identity as its value, or for a
/// keyed producer the key the identity names, and a tombstone (no value, the identity in an
/// `id` header) when the identity is marked as one.
fn append_record(builder: &mut RecordBatchBuilder, timestamp: i64, id: &str, keyed: bool) {
    use kelp_core::records::Header;
    let key = if keyed { super::invariants::key_of(id).unwrap_or("k") } else { "k" };
    if keyed && super::invariants::is_tombstone(id) {
        let header = Header { key: Bytes::from_static(b"id"), value: Some(Bytes::copy_from_slice(id.as_bytes())) };
        builder.append(timestamp, Some(key.as_bytes()), None, &[header]).expect("builds");
    } else {
        builder.append(timestamp, Some(key.as_bytes()), Some(id.as_bytes()), &[]).expect("builds");
    }
}

const TAG_META: u64 = u64::MAX;
const TAG_INIT: u64 = u64::MAX - 1;

impl Model for Producer {
    fn name(&self) -> String {
        format!("producer-{}", self.id)
    }

    fn wake(&mut self, io: &mut Io<'_>) {
        if !io.connected() {
            return io.connect();
        }
        if self.partitions.is_empty() {
            if !self.meta_in_flight {
                self.meta_in_flight = true;
                io.send(&metadata_request(&self.topics), 9, TAG_META);
            }
            return;
        }
        if self.pid.is_none() {
            if !self.init_in_flight {
                self.init_in_flight = true;
                let req = InitProducerIdRequest {
                    transactional_id: None,
                    producer_id: -1,
                    producer_epoch: -1,
                    ..Default::default()
                };
                io.send(&RequestBody::InitProducerId(req), 4, TAG_INIT);
            }
            return;
        }
        self.new_batches(io);
        self.send_ready(io);
        if let Some(t) = self.batches.values().filter(|b| !b.sent).map(|b| b.not_before).min() {
            io.wake_at(t);
        }
        if self.producing && self.budget > 0 {
            io.wake_between(1, self.max_gap_ms);
        }
    }

    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody) {
        match (p.tag, body) {
            (TAG_META, body) => {
                self.meta_in_flight = false;
                match partition_counts(&body, &self.topics) {
                    Some(counts) => {
                        self.partitions =
                            counts.iter().flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p))).collect();
                        io.wake_in(Duration::ZERO);
                    }
                    None => io.wake_between(50, 200),
                }
            }
            (TAG_INIT, ResponseBody::InitProducerId(r)) => {
                self.init_in_flight = false;
                if r.error_code == 0 {
                    self.pid = Some((r.producer_id, r.producer_epoch));
                    io.wake_in(Duration::ZERO);
                } else {
                    io.wake_between(20, 200);
                }
            }
            (tag, ResponseBody::Produce(r)) => {
                let Some(tps) = self.requests.remove(&tag) else { return };
                for tp in &tps {
                    let pr = r
                        .responses
                        .iter()
                        .filter(|t| t.name.as_str() == tp.0)
                        .flat_map(|t| t.partition_responses.iter())
                        .find(|x| x.index == tp.1);
                    let Some(pr) = pr else {
                        io.check.fail(format!("{}: produce response lacks {tp:?}", self.name()));
                        continue;
                    };
                    let code = err(pr.error_code);
                    if code == ErrorCode::NONE {
                        let Some(b) = self.batches.remove(tp) else { continue };
                        io.check.produce_acked(io.now, tp, pr.base_offset, &b.values);
                        if self.keyed.is_some() {
                            io.check.stamped(tp, pr.base_offset, b.values.len(), b.first_stamp);
                        }
                        let next = b.base_seq.wrapping_add(b.values.len() as i32) & i32::MAX;
                        self.seqs.insert(tp.clone(), next);
                    } else if code == ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER
                        || code == ErrorCode::UNKNOWN_PRODUCER_ID
                        || code == ErrorCode::INVALID_PRODUCER_EPOCH
                    {
                        self.reset_pid();
                        self.requests.clear();
                        break;
                    } else {
                        self.retry(io, tp);
                    }
                }
                io.wake_in(Duration::ZERO);
            }
            (_, other) => io.check.fail(format!("{}: unexpected {:?} response", self.name(), other.api_key())),
        }
    }

    fn disconnected(&mut self, io: &mut Io<'_>, _lost: &[Pending]) {
        self.meta_in_flight = false;
        self.init_in_flight = false;
        self.requests.clear();
        for b in self.batches.values_mut() {
            b.sent = false;
        }
        io.wake_between(10, 100);
    }

    fn faults_off(&mut self, io: &mut Io<'_>) {
        self.producing = false;
        io.wake_in(Duration::ZERO);
    }

    fn view(&self) -> View {
        View::Producer { unacked: self.batches.len() }
    }
}

// ---- classic group member -----------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Crashed or left; back at the instant given.
    Down(Instant),
    /// Learning the topics' partitions.
    Metadata,
    /// JoinGroup in flight (or about to be sent).
    Joining,
    /// SyncGroup in flight.
    Syncing,
    /// OffsetFetch in flight.
    Positions,
    /// Consuming.
    Active,
}

/// Settings of one classic member.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// The group.
    pub group: String,
    /// Topics it subscribes to.
    pub topics: Vec<String>,
    /// Every topic a group member may subscribe to (a leader assigns all of the group's).
    pub all_topics: Vec<String>,
    /// Static membership (KIP-345) instance id.
    pub instance: Option<String>,
    /// Session timeout.
    pub session_ms: i32,
    /// Rebalance timeout.
    pub rebalance_ms: i32,
    /// Chance per wake, while faults are on, of a crash.
    pub crash_rate: f64,
    /// Chance per wake, while faults are on, of a graceful leave.
    pub leave_rate: f64,
    /// Chance per wake, while faults are on, of a long pause (a GC pause, a stalled host):
    /// the member keeps its state and, once back, carries on with its old generation, as a
    /// zombie whose requests the broker must fence.
    pub pause_rate: f64,
    /// Longest long-poll wait.
    pub max_wait_ms: i32,
    /// A KIP-848 member (`group.protocol=consumer`, [`super::consumer::ConsumerMember`])
    /// rather than a classic one; every member of a group speaks the same protocol.
    pub consumer_protocol: bool,
    /// KIP-848 only: a subscription regex too (an index into [`super::consumer::REGEXES`]),
    /// sent on ConsumerGroupHeartbeat v1; the member subscribes to `topics` and to every
    /// topic whose whole name it matches.
    pub regex: Option<usize>,
}

/// A classic consumer-group member (eager rebalance, range-like assignment by its leader),
/// fetching with an incremental fetch session and committing its positions.
#[derive(Debug)]
pub struct ClassicMember {
    id: usize,
    cfg: MemberConfig,
    phase: Phase,
    /// Bumped on every (re)join: responses for an older incarnation are stale.
    incarnation: u64,
    member_id: String,
    generation: i32,
    counts: BTreeMap<String, i32>,
    positions: BTreeMap<Tp, i64>,
    hwms: BTreeMap<Tp, i64>,
    session: (i32, i32),
    fetch_in_flight: bool,
    hb_in_flight: bool,
    commit_in_flight: bool,
    next_hb: Instant,
    next_commit: Instant,
    faults_on: bool,
    /// A JoinGroup must be sent once connected.
    need_join: bool,
    /// Offsets of commits in flight, by correlation id.
    commits: HashMap<i32, Vec<(Tp, i64)>>,
    /// Paused until then (sends nothing new).
    paused_until: Instant,
    /// No fetch before then: an empty answer is followed by a short wait, as a poll loop's
    /// own work takes time (without it a zero max-wait fetch would spin at one instant).
    next_fetch: Instant,
    /// A commit lost with its connection, to be sent again as it was (old generation
    /// included) once the member is back: a late retry the broker must fence if the group has
    /// moved on.
    stale_commit: Option<(i32, Vec<(Tp, i64)>)>,
    /// Partitions whose fetch position fell below the log start: earliest offset asked for.
    resetting: BTreeSet<Tp>,
    /// The positions the fetch in flight was sent from.
    fetch_from: BTreeMap<Tp, i64>,
}

// Request kinds, in the low byte of a tag; the incarnation is above.
const K_META: u64 = 1;
const K_JOIN: u64 = 2;
const K_SYNC: u64 = 3;
const K_OFFSETS: u64 = 4;
const K_FETCH: u64 = 5;
const K_HB: u64 = 6;
const K_COMMIT: u64 = 7;
const K_LEAVE: u64 = 8;
const K_STALE_COMMIT: u64 = 9;
const K_RESET: u64 = 10;

impl ClassicMember {
    /// Member number `id`.
    #[must_use]
    pub fn new(id: usize, cfg: MemberConfig) -> Self {
        Self {
            id,
            cfg,
            phase: Phase::Metadata,
            incarnation: 0,
            member_id: String::new(),
            generation: -1,
            counts: BTreeMap::new(),
            positions: BTreeMap::new(),
            hwms: BTreeMap::new(),
            session: (0, 0),
            fetch_in_flight: false,
            hb_in_flight: false,
            commit_in_flight: false,
            next_hb: Instant(0),
            next_commit: Instant(0),
            faults_on: true,
            need_join: false,
            commits: HashMap::new(),
            paused_until: Instant(0),
            next_fetch: Instant(0),
            stale_commit: None,
            resetting: BTreeSet::new(),
            fetch_from: BTreeMap::new(),
        }
    }

    fn owner(&self) -> String {
        self.cfg.instance.clone().unwrap_or_else(|| self.member_id.clone())
    }

    /// A request's tag: its kind, the incarnation that sent it and the generation it carried.
    fn tag(&self, kind: u64) -> u64 {
        kind | ((self.incarnation & 0xffff_ffff) << 8) | ((u64::from(self.generation as u32) & 0xff_ffff) << 40)
    }

    fn generation_of(p: &Pending) -> i32 {
        let g = ((p.tag >> 40) & 0xff_ffff) as i32;
        if g == 0xff_ffff { -1 } else { g }
    }

    fn instance(&self) -> Option<&str> {
        self.cfg.instance.as_deref()
    }

    /// Drops the assignment and joins again (eager protocol).
    fn rejoin(&mut self, io: &mut Io<'_>, reset_id: bool) {
        self.incarnation += 1;
        if reset_id {
            self.member_id.clear();
        }
        self.positions.clear();
        self.resetting.clear();
        self.fetch_in_flight = false;
        self.hb_in_flight = false;
        self.commit_in_flight = false;
        self.phase = Phase::Joining;
        self.send_join(io);
    }

    fn send_join(&mut self, io: &mut Io<'_>) {
        if !io.connected() {
            self.need_join = true;
            return io.connect();
        }
        self.need_join = false;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        let meta = subscription(&topics);
        let mut req = join_request(&self.cfg.group, &self.member_id, self.instance(), &[("range", meta)]);
        if let RequestBody::JoinGroup(j) = &mut req {
            j.session_timeout_ms = self.cfg.session_ms;
            j.rebalance_timeout_ms = self.cfg.rebalance_ms;
        }
        io.send(&req, 5, self.tag(K_JOIN));
    }

    fn go_down(&mut self, io: &mut Io<'_>, leave: bool) {
        if leave && io.connected() && !self.member_id.is_empty() {
            let req = leave_request(&self.cfg.group, &[(&self.member_id, self.instance())]);
            io.send(&req, 3, self.tag(K_LEAVE));
        } else {
            io.crash();
        }
        self.incarnation += 1;
        self.positions.clear();
        self.resetting.clear();
        self.hwms.clear();
        self.fetch_in_flight = false;
        self.hb_in_flight = false;
        self.commit_in_flight = false;
        self.session = (0, 0);
        if !leave || self.cfg.instance.is_none() {
            // A restarted process has forgotten its member id; a static member keeps its
            // instance id, which is what the broker knows it by.
            self.member_id.clear();
        }
        let until = io.now + io.rng.millis(200, 8000);
        self.phase = Phase::Down(until);
        io.wake_at(until);
    }

    fn assign(&self, members: &[(String, Vec<String>)]) -> Vec<(String, Bytes)> {
        let mut all: Vec<Tp> = Vec::new();
        let subscribed: BTreeSet<&String> = members.iter().flat_map(|(_, t)| t.iter()).collect();
        for (t, n) in &self.counts {
            if subscribed.contains(t) {
                all.extend((0..*n).map(|p| (t.clone(), p)));
            }
        }
        let mut sorted: Vec<&(String, Vec<String>)> = members.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: BTreeMap<String, Vec<Tp>> = sorted.iter().map(|(m, _)| (m.clone(), Vec::new())).collect();
        for (i, tp) in all.into_iter().enumerate() {
            let eligible: Vec<&&(String, Vec<String>)> = sorted.iter().filter(|(_, ts)| ts.contains(&tp.0)).collect();
            if eligible.is_empty() {
                continue;
            }
            let m = &eligible[i % eligible.len()].0;
            out.get_mut(m).expect("member listed").push(tp);
        }
        out.into_iter().map(|(m, tps)| (m, encode_assignment(&tps))).collect()
    }

    fn on_join(&mut self, io: &mut Io<'_>, r: &kelp_core::codec::generated::join_group::JoinGroupResponse) {
        let code = err(r.error_code);
        if code == ErrorCode::MEMBER_ID_REQUIRED {
            self.member_id = r.member_id.as_str().to_owned();
            return self.send_join(io);
        }
        if code == ErrorCode::UNKNOWN_MEMBER_ID {
            self.member_id.clear();
            return self.rejoin(io, true);
        }
        if code != ErrorCode::NONE {
            // Coordinator loading, a fenced static instance, a full group...: back off, retry.
            self.incarnation += 1;
            self.need_join = true;
            return io.wake_between(50, 500);
        }
        self.member_id = r.member_id.as_str().to_owned();
        self.generation = r.generation_id;
        let assignments = if r.leader == r.member_id {
            let mut members = Vec::new();
            for m in &r.members {
                let Some(topics) = decode_subscription(&m.metadata) else {
                    return io.check.fail(format!("{}: undecodable subscription in JoinGroup", self.name()));
                };
                members.push((m.member_id.as_str().to_owned(), topics));
            }
            self.assign(&members)
        } else {
            Vec::new()
        };
        let borrowed: Vec<(&str, Bytes)> = assignments.iter().map(|(m, a)| (m.as_str(), a.clone())).collect();
        let mut req = sync_request(&self.cfg.group, self.generation, &self.member_id, self.instance(), &borrowed);
        if let RequestBody::SyncGroup(s) = &mut req {
            s.protocol_name = r.protocol_name.clone();
        }
        self.phase = Phase::Syncing;
        io.send(&req, 5, self.tag(K_SYNC));
    }

    fn send_fetch(&mut self, io: &mut Io<'_>) {
        if self.fetch_in_flight || self.positions.is_empty() || io.now < self.paused_until || io.now < self.next_fetch {
            return;
        }
        let mut topics: Vec<FetchTopic> = Vec::new();
        for ((t, p), pos) in &self.positions {
            let part = FetchPartition {
                partition: *p,
                fetch_offset: *pos,
                partition_max_bytes: 1 << 16,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            match topics.iter_mut().find(|x| x.topic.as_str() == t) {
                Some(x) => x.partitions.push(part),
                None => {
                    topics.push(FetchTopic { topic: t.as_str().into(), partitions: vec![part], ..Default::default() })
                }
            }
        }
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: io.rng.range(0, u64::try_from(self.cfg.max_wait_ms).unwrap_or(0)) as i32,
            min_bytes: 1,
            max_bytes: 1 << 20,
            isolation_level: 0,
            session_id: self.session.0,
            session_epoch: self.session.1,
            topics,
            ..Default::default()
        };
        self.fetch_in_flight = true;
        self.fetch_from.clone_from(&self.positions);
        io.send(&RequestBody::Fetch(req), 12, self.tag(K_FETCH));
    }

    /// Handles a fetch answer; returns whether it carried records.
    fn on_fetch(
        &mut self,
        io: &mut Io<'_>,
        p: &Pending,
        r: &kelp_core::codec::generated::fetch::FetchResponse,
    ) -> bool {
        let mut got = false;
        let code = err(r.error_code);
        if code == ErrorCode::FETCH_SESSION_ID_NOT_FOUND || code == ErrorCode::INVALID_FETCH_SESSION_EPOCH {
            self.session = (0, 0);
            return false;
        }
        if code != ErrorCode::NONE {
            return false;
        }
        self.session = if r.session_id == 0 {
            (0, 0)
        } else {
            let next = if self.session.1 == i32::MAX { 1 } else { self.session.1 + 1 };
            (r.session_id, next)
        };
        for t in &r.responses {
            for pd in &t.partitions {
                let tp = (t.topic.as_str().to_owned(), pd.partition_index);
                if err(pd.error_code) == ErrorCode::OFFSET_OUT_OF_RANGE
                    && let Some(pos) = self.fetch_from.get(&tp).copied()
                    && self.positions.get(&tp) == Some(&pos)
                {
                    io.check.out_of_range(&self.name(), &tp, pos);
                    if self.resetting.insert(tp.clone()) {
                        io.send(&earliest_request(&tp), 7, self.tag(K_RESET));
                    }
                }
                if pd.error_code != 0 {
                    continue;
                }
                let (records, end) = pd.records.as_ref().map(decode).unwrap_or_default();
                let Some(pos) = self.positions.get(&tp).copied() else {
                    io.check.fail(format!("{}: fetch answered for {tp:?}, which it did not ask for", self.name()));
                    continue;
                };
                io.check.fetched(p.sent_at, &tp, pos, pd.high_watermark, (&records, end));
                let before = self.hwms.get(&tp).copied().unwrap_or(0);
                io.check.hwm_seen(&self.name(), &tp, before, pd.high_watermark);
                self.hwms.insert(tp.clone(), before.max(pd.high_watermark));
                // Past the last record, and past batches the cleaner emptied.
                let next = records.last().map_or(-1, |r| r.offset + 1).max(end.unwrap_or(-1));
                if next > pos {
                    got = true;
                    self.positions.insert(tp, next);
                }
            }
        }
        got
    }

    fn resend_stale_commit(&mut self, io: &mut Io<'_>) {
        let Some((generation, offsets)) = self.stale_commit.take() else { return };
        if !io.faults_on || offsets.is_empty() {
            return;
        }
        let list: Vec<(&str, i32, i64)> = offsets.iter().map(|((t, p), o)| (t.as_str(), *p, *o)).collect();
        let mut req = commit_request(&self.cfg.group, generation, &self.member_id, &list);
        if let RequestBody::OffsetCommit(c) = &mut req {
            c.group_instance_id = self.cfg.instance.as_deref().map(KStr::from);
        }
        let tag = K_STALE_COMMIT
            | ((self.incarnation & 0xffff_ffff) << 8)
            | ((u64::from(generation as u32) & 0xff_ffff) << 40);
        io.send(&req, 7, tag);
    }

    fn send_commit(&mut self, io: &mut Io<'_>) {
        if self.commit_in_flight || self.positions.is_empty() {
            return;
        }
        let offsets: Vec<(&str, i32, i64)> = self.positions.iter().map(|((t, p), o)| (t.as_str(), *p, *o)).collect();
        let mut req = commit_request(&self.cfg.group, self.generation, &self.member_id, &offsets);
        if let RequestBody::OffsetCommit(c) = &mut req {
            c.group_instance_id = self.cfg.instance.as_deref().map(KStr::from);
        }
        self.commit_in_flight = true;
        self.commits.insert(*io.next_corr, self.positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect());
        io.send(&req, 7, self.tag(K_COMMIT));
    }

    fn active_wake(&mut self, io: &mut Io<'_>) {
        if io.now < self.paused_until {
            return io.wake_at(self.paused_until);
        }
        if self.faults_on && io.faults_on && io.rng.chance(self.cfg.pause_rate) {
            let d = Duration::from_millis(i64::from(self.cfg.session_ms));
            self.paused_until = io.now + d + io.rng.millis(0, 5000);
            // Back from the pause, the zombie commits first, with what it had.
            self.next_commit = self.paused_until;
            return io.wake_at(self.paused_until);
        }
        if io.now >= self.next_hb && !self.hb_in_flight {
            self.hb_in_flight = true;
            let req = heartbeat_request(&self.cfg.group, self.generation, &self.member_id, self.instance());
            io.send(&req, 3, self.tag(K_HB));
            self.next_hb = io.now + Duration::from_millis(i64::from(self.cfg.session_ms / 4));
        }
        if io.now >= self.next_commit {
            self.send_commit(io);
            self.next_commit = io.now + io.rng.millis(100, 1500);
        }
        self.send_fetch(io);
        // The next deadline of whatever is not waiting for an answer (an answer wakes us too).
        let mut next = io.now + Duration::from_secs(1);
        if !self.hb_in_flight {
            next = next.min(self.next_hb);
        }
        if !self.commit_in_flight {
            next = next.min(self.next_commit);
        }
        io.wake_at(next.max(io.now + Duration(1_000)));
    }
}

/// A consumer-protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let s =
        ConsumerProtocolSubscription { topics: topics.iter().map(|t| KStr::from(*t)).collect(), ..Default::default() };
    let mut w = Writer::default();
    w.i16(0);
    s.encode(&mut w, 0);
    w.into_bytes()
}

fn decode_subscription(b: &Bytes) -> Option<Vec<String>> {
    let mut r = Reader::new(b);
    let v = r.i16("version").ok()?;
    let s = ConsumerProtocolSubscription::decode(&mut r, v.clamp(0, 3)).ok()?;
    Some(s.topics.iter().map(|t| t.as_str().to_owned()).collect())
}

fn encode_assignment(tps: &[Tp]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in tps {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let a = ConsumerProtocolAssignment {
        assigned_partitions: by_topic
            .into_iter()
            .map(|(t, ps)| TopicPartition { topic: t.into(), partitions: ps })
            .collect(),
        user_data: None,
    };
    let mut w = Writer::default();
    w.i16(0);
    a.encode(&mut w, 0);
    w.into_bytes()
}

fn decode_assignment(b: &Bytes) -> Option<Vec<Tp>> {
    if b.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader::new(b);
    let v = r.i16("version").ok()?;
    let a = ConsumerProtocolAssignment::decode(&mut r, v.clamp(0, 3)).ok()?;
    Some(
        a.assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.as_str().to_owned(), *p)))
            .collect(),
    )
}

impl Model for ClassicMember {
    fn name(&self) -> String {
        format!("member-{}({})", self.id, self.cfg.group)
    }

    fn wake(&mut self, io: &mut Io<'_>) {
        if let Phase::Down(until) = self.phase {
            if io.now < until {
                return io.wake_at(until);
            }
            self.phase = Phase::Metadata;
        }
        if !io.connected() {
            return io.connect();
        }
        if self.faults_on && io.faults_on && self.phase != Phase::Metadata {
            if io.rng.chance(self.cfg.crash_rate) {
                return self.go_down(io, false);
            }
            if io.rng.chance(self.cfg.leave_rate) {
                return self.go_down(io, true);
            }
        }
        match self.phase {
            Phase::Down(_) => {}
            Phase::Metadata => {
                self.incarnation += 1;
                io.send(&metadata_request(&self.cfg.all_topics), 9, self.tag(K_META));
            }
            Phase::Joining if self.need_join => self.send_join(io),
            Phase::Joining | Phase::Syncing | Phase::Positions => {}
            Phase::Active => self.active_wake(io),
        }
    }

    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody) {
        let kind = p.tag & 0xff;
        let current = (p.tag >> 8) & 0xffff_ffff == self.incarnation & 0xffff_ffff;
        // Checks that hold whatever the member's state.
        match &body {
            ResponseBody::Fetch(r) if current => {
                self.fetch_in_flight = false;
                if !self.on_fetch(io, p, r) {
                    self.next_fetch = io.now + io.rng.millis(1, 20);
                    io.wake_at(self.next_fetch);
                }
                if self.phase == Phase::Active {
                    self.send_fetch(io);
                }
                return;
            }
            ResponseBody::Fetch(r) => {
                // A stale fetch is still checked: its records must be right.
                for t in &r.responses {
                    for pd in &t.partitions {
                        if pd.error_code == 0 {
                            let tp = (t.topic.as_str().to_owned(), pd.partition_index);
                            let (records, end) = pd.records.as_ref().map(decode).unwrap_or_default();
                            let from = records.first().map_or(0, |r| r.offset);
                            io.check.fetched(p.sent_at, &tp, from, pd.high_watermark, (&records, end));
                        }
                    }
                }
                return;
            }
            ResponseBody::OffsetCommit(r) if kind == K_STALE_COMMIT => {
                // Only fencing is checked: a late retry in the same generation may legitimately
                // move a commit back (the client's own doing, not the broker's).
                let generation = Self::generation_of(p);
                if r.topics.iter().flat_map(|t| t.partitions.iter()).any(|pr| pr.error_code == 0) {
                    io.check.generation_accepted("a late OffsetCommit retry", &self.cfg.group, generation, p.sent_at);
                }
                return;
            }
            ResponseBody::OffsetCommit(r) => {
                let generation = Self::generation_of(p);
                let owner = self.owner();
                let sent = self.commits.remove(&p.corr).unwrap_or_default();
                for t in &r.topics {
                    for pr in &t.partitions {
                        if pr.error_code != 0 {
                            continue;
                        }
                        io.check.generation_accepted("OffsetCommit", &self.cfg.group, generation, p.sent_at);
                        let tp = (t.name.as_str().to_owned(), pr.partition_index);
                        if let Some((_, o)) = sent.iter().find(|(x, _)| *x == tp) {
                            io.check.committed(&self.cfg.group, &tp, generation, &owner, *o);
                        }
                    }
                }
                if current {
                    self.commit_in_flight = false;
                }
                return;
            }
            ResponseBody::Heartbeat(r) if r.error_code == 0 => {
                io.check.generation_accepted("Heartbeat", &self.cfg.group, Self::generation_of(p), p.sent_at);
            }
            _ => {}
        }
        if !current {
            return;
        }
        match (kind, body) {
            (K_META, body) => match partition_counts(&body, &self.cfg.all_topics) {
                Some(counts) => {
                    self.counts = counts;
                    self.rejoin(io, false);
                }
                None => {
                    self.phase = Phase::Metadata;
                    io.wake_between(50, 300);
                }
            },
            (K_JOIN, ResponseBody::JoinGroup(r)) => self.on_join(io, &r),
            (K_SYNC, ResponseBody::SyncGroup(r)) => {
                let code = err(r.error_code);
                if code == ErrorCode::NONE {
                    let Some(tps) = decode_assignment(&r.assignment) else {
                        return io.check.fail(format!("{}: undecodable assignment", self.name()));
                    };
                    io.check.generation_accepted("SyncGroup", &self.cfg.group, self.generation, p.sent_at);
                    io.check.synced(io.now, &self.cfg.group, self.generation, &self.owner(), &tps);
                    self.positions = tps.iter().map(|tp| (tp.clone(), -1)).collect();
                    self.session = (0, 0);
                    self.phase = Phase::Positions;
                    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for (t, p) in &tps {
                        topics.entry(t.as_str()).or_default().push(*p);
                    }
                    let req = RequestBody::OffsetFetch(OffsetFetchRequest {
                        group_id: self.cfg.group.as_str().into(),
                        topics: Some(
                            topics
                                .into_iter()
                                .map(|(t, ps)| OffsetFetchRequestTopic {
                                    name: t.into(),
                                    partition_indexes: ps,
                                    ..Default::default()
                                })
                                .collect(),
                        ),
                        ..Default::default()
                    });
                    io.send(&req, 7, self.tag(K_OFFSETS));
                } else {
                    let reset = code == ErrorCode::UNKNOWN_MEMBER_ID;
                    self.rejoin(io, reset);
                }
            }
            (K_OFFSETS, ResponseBody::OffsetFetch(r)) => {
                if r.error_code != 0 {
                    // Coordinator busy (e.g. loading): start the cycle again.
                    return self.rejoin(io, false);
                }
                for t in &r.topics {
                    for pr in &t.partitions {
                        let tp = (t.name.as_str().to_owned(), pr.partition_index);
                        if pr.error_code != 0 {
                            return self.rejoin(io, false);
                        }
                        if let Some(pos) = self.positions.get_mut(&tp) {
                            *pos = pr.committed_offset.max(0);
                        }
                    }
                }
                if self.positions.values().any(|p| *p < 0) {
                    return io.check.fail(format!("{}: OffsetFetch left out an assigned partition", self.name()));
                }
                self.phase = Phase::Active;
                self.resend_stale_commit(io);
                self.next_hb = io.now;
                self.next_commit = io.now + io.rng.millis(100, 1000);
                self.active_wake(io);
            }
            (K_HB, ResponseBody::Heartbeat(r)) => {
                self.hb_in_flight = false;
                let code = err(r.error_code);
                if code == ErrorCode::NONE {
                    return;
                }
                if code == ErrorCode::REBALANCE_IN_PROGRESS {
                    self.send_commit(io);
                }
                if self.phase == Phase::Active {
                    self.rejoin(io, code == ErrorCode::UNKNOWN_MEMBER_ID);
                }
            }
            (K_LEAVE, _) => io.crash(),
            (K_RESET, body @ ResponseBody::ListOffsets(_)) => {
                let name = self.name();
                for (tp, start) in listed_offsets(&body) {
                    io.check.log_start_seen(&name, &tp, start);
                    self.resetting.remove(&tp);
                    if let Some(pos) = self.positions.get_mut(&tp)
                        && *pos < start
                    {
                        *pos = start;
                    }
                }
                // Whatever was not answered is asked again after the next out-of-range fetch.
                self.resetting.clear();
            }
            (_, other) => {
                io.check.fail(format!(
                    "{}: unexpected {:?} response in {:?}",
                    self.name(),
                    other.api_key(),
                    self.phase
                ));
            }
        }
    }

    fn disconnected(&mut self, io: &mut Io<'_>, lost: &[Pending]) {
        if matches!(self.phase, Phase::Down(_)) {
            return;
        }
        if self.faults_on
            && let Some(p) = lost.iter().find(|p| p.tag & 0xff == K_COMMIT)
            && let Some(offsets) = self.commits.remove(&p.corr)
        {
            self.stale_commit = Some((Self::generation_of(p), offsets));
        }
        // Whatever was in flight is lost: start again from the join (the member id is kept,
        // as a client keeps it across a reconnect).
        self.incarnation += 1;
        self.session = (0, 0);
        self.fetch_in_flight = false;
        self.hb_in_flight = false;
        self.commit_in_flight = false;
        self.positions.clear();
        self.resetting.clear();
        self.phase = if self.counts.is_empty() { Phase::Metadata } else { Phase::Joining };
        self.need_join = true;
        io.wake_between(10, 200);
    }

    fn faults_off(&mut self, io: &mut Io<'_>) {
        self.faults_on = false;
        self.paused_until = self.paused_until.min(io.now);
        io.wake_in(Duration::ZERO);
    }

    fn view(&self) -> View {
        View::Member {
            group: self.cfg.group.clone(),
            topics: self.cfg.topics.clone(),
            regex: None,
            heard: Instant(0),
            member_id: String::new(),
            active: self.phase == Phase::Active,
            generation: self.generation,
            positions: self.positions.clone(),
            hwms: self.hwms.clone(),
        }
    }
}

// ---- admin ----------------------------------------------------------------------------------

/// Creates the scenario's topics, then (while faults are on) creates, grows and deletes
/// scratch topics, checking that an acknowledged creation is visible to later metadata.
///
/// With regex churn on it also creates topics named `r-<n>` (never reusing a name), writes a
/// few records to them, grows and deletes them, so that KIP-848 members' subscription regexes
/// ([`super::consumer::REGEXES`]) gain and lose topics while the groups run; a deletion is
/// asked again until the broker has acknowledged it or no longer knows the topic. Once faults
/// are off, and its deletions are done, it lists every topic there is every few hundred ms
/// ([`Checker::topics_listed`]) when asked to, for the stable-group check.
#[derive(Debug)]
pub struct Admin {
    topics: Vec<(String, i32)>,
    created: BTreeSet<String>,
    in_flight: bool,
    scratch: u32,
    /// Scratch topics acknowledged as created, with their partition count, and when.
    live: BTreeMap<String, (i32, Instant)>,
    churn: bool,
    /// Whether it deletes records (DeleteRecords) from the main topics.
    trim: bool,
    gap_ms: u64,
    /// Config overrides of the main topics.
    configs: Vec<(String, String)>,
    /// Whether it churns `r-<n>` topics, which subscription regexes match.
    regex_churn: bool,
    /// `r-<n>` topics acknowledged as created, with their partition counts (a lower bound).
    churned: BTreeMap<String, i32>,
    /// The last `r-<n>` number used.
    churn_no: u32,
    /// `r-<n>` topics whose deletion was asked for and not yet seen through.
    doomed: BTreeSet<String>,
    /// Records written to `r-<n>` topics (values `a<n>`, each sent once: never retried, so
    /// never duplicated).
    produced: u64,
    /// The partition and values of the produce in flight.
    producing: Option<(Tp, Vec<String>)>,
    /// The KIP-848 groups it describes once faults are off (it lists the topics too then).
    groups: Vec<String>,
    /// Whether the next look (once faults are off) describes the groups, else lists topics.
    describe_next: bool,
}

const A_CREATE_MAIN: u64 = 1;
const A_CREATE: u64 = 2;
const A_GROW: u64 = 3;
const A_DELETE: u64 = 4;
const A_META: u64 = 5;
const A_TRIM: u64 = 6;
const A_PRODUCE: u64 = 7;
const A_LIST: u64 = 8;
const A_DESCRIBE: u64 = 9;

impl Admin {
    /// An admin that creates `topics`, churns scratch topics (if `churn`) and deletes records
    /// from the main topics (if `trim`) every `gap_ms` or so.
    #[must_use]
    pub fn new(topics: Vec<(String, i32)>, churn: bool, trim: bool, gap_ms: u64) -> Self {
        Self {
            topics,
            created: BTreeSet::new(),
            in_flight: false,
            scratch: 0,
            live: BTreeMap::new(),
            churn,
            trim,
            gap_ms,
            configs: Vec::new(),
            regex_churn: false,
            churned: BTreeMap::new(),
            churn_no: 0,
            doomed: BTreeSet::new(),
            produced: 0,
            producing: None,
            groups: Vec::new(),
            describe_next: false,
        }
    }

    /// The same admin, creating the main topics with these config overrides.
    #[must_use]
    pub fn with_configs(mut self, configs: Vec<(String, String)>) -> Self {
        self.configs = configs;
        self
    }

    /// The same admin, churning `r-<n>` topics (if `regex_churn`), and once faults are off
    /// listing the topics and describing the KIP-848 `groups` (if there are any).
    #[must_use]
    pub fn with_topic_churn(mut self, regex_churn: bool, groups: Vec<String>) -> Self {
        self.regex_churn = regex_churn;
        self.groups = groups;
        self
    }

    /// DeleteRecords on a random main partition, up to a random acknowledged offset.
    fn send_trim(&mut self, io: &mut Io<'_>) {
        use kelp_core::codec::generated::delete_records::{
            DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
        };
        let (t, n) = self.topics[io.rng.below(self.topics.len() as u64) as usize].clone();
        let tp = (t, io.rng.below(u64::try_from(n).unwrap_or(1)) as i32);
        let end = io.check.acked_end(&tp);
        let offset = io.rng.range(0, u64::try_from(end).unwrap_or(0)) as i64;
        io.check.trim_requested(&tp, offset);
        let req = DeleteRecordsRequest {
            topics: vec![DeleteRecordsTopic {
                name: tp.0.as_str().into(),
                partitions: vec![DeleteRecordsPartition { partition_index: tp.1, offset, ..Default::default() }],
                ..Default::default()
            }],
            timeout_ms: 30_000,
            ..Default::default()
        };
        self.in_flight = true;
        io.send(&RequestBody::DeleteRecords(req), 2, A_TRIM | (u64::from(offset as u32) << 8));
    }

    fn create(name: &str, partitions: i32) -> CreatableTopic {
        CreatableTopic { name: name.into(), num_partitions: partitions, replication_factor: -1, ..Default::default() }
    }

    fn create_main(&self, name: &str, partitions: i32) -> CreatableTopic {
        use kelp_core::codec::generated::create_topics::CreatableTopicConfig;
        let configs = self
            .configs
            .iter()
            .map(|(k, v)| CreatableTopicConfig {
                name: k.as_str().into(),
                value: Some(v.as_str().into()),
                ..Default::default()
            })
            .collect();
        CreatableTopic { configs, ..Self::create(name, partitions) }
    }

    fn send_create(&mut self, io: &mut Io<'_>, name: &str) {
        let n = io.rng.range(1, 3) as i32;
        let req = CreateTopicsRequest { topics: vec![Self::create(name, n)], timeout_ms: 30_000, ..Default::default() };
        self.in_flight = true;
        io.send(&RequestBody::CreateTopics(req), 5, A_CREATE);
    }

    fn send_grow(&mut self, io: &mut Io<'_>, name: &str, count: i32) {
        let req = CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic { name: name.into(), count, assignments: None, ..Default::default() }],
            timeout_ms: 30_000,
            ..Default::default()
        };
        self.in_flight = true;
        io.send(&RequestBody::CreatePartitions(req), 2, A_GROW | (u64::from(count as u32) << 8));
    }

    /// DeleteTopics for `name`: from now on the topic may be gone (its records with it).
    fn send_delete(&mut self, io: &mut Io<'_>, name: &str) {
        io.check.topic_deleting(name);
        let req = DeleteTopicsRequest { topic_names: vec![name.into()], timeout_ms: 30_000, ..Default::default() };
        self.in_flight = true;
        io.send(&RequestBody::DeleteTopics(req), 5, A_DELETE);
    }

    /// A few records, acks=-1, to a random partition of `name`; not idempotent and never
    /// retried.
    fn send_produce(&mut self, io: &mut Io<'_>, name: &str, partitions: i32) {
        let tp = (name.to_owned(), io.rng.below(u64::try_from(partitions).unwrap_or(1)) as i32);
        let values: Vec<String> = (0..io.rng.range(1, 3))
            .map(|_| {
                self.produced += 1;
                format!("a{}", self.produced)
            })
            .collect();
        let mut builder = RecordBatchBuilder::new(Compression::None);
        for v in &values {
            append_record(&mut builder, io.wall_ms, v, false);
        }
        let mut req = produce_request(&tp.0, tp.1, builder.build().expect("builds"), -1);
        if let RequestBody::Produce(r) = &mut req {
            r.timeout_ms = 30_000;
        }
        self.producing = Some((tp, values));
        self.in_flight = true;
        io.send(&req, 9, A_PRODUCE);
    }

    /// One step of `r-<n>` churn: create, write to, grow or delete one.
    fn churn_regex_topics(&mut self, io: &mut Io<'_>) {
        let live: Vec<(String, i32)> = self.churned.iter().map(|(t, n)| (t.clone(), *n)).collect();
        let pick = io.rng.below(10);
        if live.is_empty() || (pick < 3 && live.len() < 4) {
            self.churn_no += 1;
            let name = format!("r-{}", self.churn_no);
            return self.send_create(io, &name);
        }
        let (name, n) = live[io.rng.below(live.len() as u64) as usize].clone();
        match pick {
            0..=6 => self.send_produce(io, &name, n),
            7 => self.send_grow(io, &name, n + 1),
            _ => {
                self.churned.remove(&name);
                self.doomed.insert(name.clone());
                self.send_delete(io, &name);
            }
        }
    }

    /// Scratch churn (and DeleteRecords) as before regex churn existed.
    fn churn_scratch(&mut self, io: &mut Io<'_>) {
        if self.trim && (!self.churn || io.rng.chance(0.3)) {
            return self.send_trim(io);
        }
        let pick = io.rng.below(4);
        let existing: Vec<String> = self.live.keys().cloned().collect();
        match (pick, existing.is_empty()) {
            (0, _) | (_, true) => {
                self.scratch += 1;
                let name = format!("scratch-{}", self.scratch);
                self.send_create(io, &name);
            }
            (1, false) => {
                let name = &existing[io.rng.below(existing.len() as u64) as usize];
                let count = self.live[name].0 + io.rng.range(1, 2) as i32;
                self.send_grow(io, name, count);
            }
            (2, false) => {
                let name = existing[io.rng.below(existing.len() as u64) as usize].clone();
                // From here on the topic may be gone: stop checking it.
                self.live.remove(&name);
                self.send_delete(io, &name);
            }
            _ => {
                self.in_flight = true;
                io.send(&metadata_request(&existing), 9, A_META);
            }
        }
    }
}

impl Model for Admin {
    fn name(&self) -> String {
        "admin".to_owned()
    }

    fn wake(&mut self, io: &mut Io<'_>) {
        if !io.connected() {
            return io.connect();
        }
        if self.in_flight {
            return;
        }
        let missing: Vec<CreatableTopic> = self
            .topics
            .iter()
            .filter(|(t, _)| !self.created.contains(t))
            .map(|(t, n)| self.create_main(t, *n))
            .collect();
        if !missing.is_empty() {
            self.in_flight = true;
            let req = CreateTopicsRequest { topics: missing, timeout_ms: 30_000, ..Default::default() };
            return io.send(&RequestBody::CreateTopics(req), 5, A_CREATE_MAIN);
        }
        if let Some(name) = self.doomed.first().cloned()
            && (!io.faults_on || io.rng.chance(0.5))
        {
            return self.send_delete(io, &name);
        }
        if !io.faults_on {
            if self.groups.is_empty() {
                return;
            }
            // For the stable-group check: every topic there is (Metadata with null topics), then
            // the groups as the broker sees them, in turn.
            self.in_flight = true;
            self.describe_next = !self.describe_next;
            if self.describe_next {
                use kelp_core::codec::generated::consumer_group_describe::ConsumerGroupDescribeRequest;
                let group_ids = self.groups.iter().map(|g| KStr::from(g.as_str())).collect();
                let req = ConsumerGroupDescribeRequest { group_ids, ..Default::default() };
                return io.send(&RequestBody::ConsumerGroupDescribe(req), 0, A_DESCRIBE);
            }
            let req = MetadataRequest { topics: None, allow_auto_topic_creation: false, ..Default::default() };
            return io.send(&RequestBody::Metadata(req), 9, A_LIST);
        }
        if self.regex_churn && (!(self.churn || self.trim) || io.rng.chance(0.5)) {
            return self.churn_regex_topics(io);
        }
        if self.churn || self.trim {
            self.churn_scratch(io);
        }
    }

    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody) {
        self.in_flight = false;
        match (p.tag & 0xff, body) {
            (A_CREATE_MAIN, ResponseBody::CreateTopics(r)) => {
                for t in &r.topics {
                    let code = err(t.error_code);
                    if code == ErrorCode::NONE || code == ErrorCode::TOPIC_ALREADY_EXISTS {
                        self.created.insert(t.name.as_str().to_owned());
                    }
                }
            }
            (A_CREATE, ResponseBody::CreateTopics(r)) => {
                for t in r.topics.iter().filter(|t| t.error_code == 0) {
                    let name = t.name.as_str().to_owned();
                    if name.starts_with("r-") {
                        self.churned.insert(name, t.num_partitions);
                    } else {
                        self.live.insert(name, (t.num_partitions, io.now));
                    }
                }
            }
            (A_GROW, ResponseBody::CreatePartitions(r)) => {
                let count = ((p.tag >> 8) & 0xffff_ffff) as i32;
                for t in r.results.iter().filter(|t| t.error_code == 0) {
                    if let Some(e) = self.live.get_mut(t.name.as_str()) {
                        *e = (count, io.now);
                    }
                    if let Some(e) = self.churned.get_mut(t.name.as_str()) {
                        *e = count;
                    }
                }
            }
            (A_DELETE, ResponseBody::DeleteTopics(r)) => {
                for t in &r.responses {
                    let Some(name) = t.name.as_ref().map(|n| n.as_str().to_owned()) else { continue };
                    let code = err(t.error_code);
                    if code == ErrorCode::NONE {
                        io.check.topic_deleted(&name, io.now);
                    }
                    if code == ErrorCode::NONE || code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                        self.doomed.remove(&name);
                    }
                }
            }
            (A_PRODUCE, ResponseBody::Produce(r)) => {
                let Some((tp, values)) = self.producing.take() else { return };
                let pr = r
                    .responses
                    .iter()
                    .filter(|t| t.name.as_str() == tp.0)
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|x| x.index == tp.1);
                match pr {
                    Some(pr) if pr.error_code == 0 => io.check.produce_acked(io.now, &tp, pr.base_offset, &values),
                    Some(_) => {}
                    None => io.check.fail(format!("admin: produce response lacks {tp:?}")),
                }
            }
            (A_LIST, ResponseBody::Metadata(m)) => {
                let topics = m
                    .topics
                    .iter()
                    .filter(|t| t.error_code == 0)
                    .filter_map(|t| {
                        Some((t.name.as_ref()?.as_str().to_owned(), i32::try_from(t.partitions.len()).ok()?))
                    })
                    .collect();
                io.check.topics_listed(io.now, topics);
            }
            (A_DESCRIBE, ResponseBody::ConsumerGroupDescribe(r)) => {
                for g in r.groups.iter().filter(|g| g.error_code == 0) {
                    let ids = g.members.iter().map(|m| m.member_id.as_str().to_owned()).collect();
                    io.check.group_described(g.group_id.as_str(), p.sent_at, g.group_epoch, ids);
                }
            }
            (A_TRIM, ResponseBody::DeleteRecords(r)) => {
                let asked = i64::from((p.tag >> 8) as u32);
                for pr in r.topics.iter().flat_map(|t| t.partitions.iter()) {
                    if pr.error_code == 0 && pr.low_watermark < asked {
                        io.check.fail(format!(
                            "admin: DeleteRecords up to {asked} acknowledged with low watermark {}",
                            pr.low_watermark
                        ));
                    }
                }
            }
            (A_META, ResponseBody::Metadata(m)) => {
                for (name, (n, at)) in &self.live {
                    if *at > p.sent_at {
                        continue;
                    }
                    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|x| x.as_str() == name));
                    match t {
                        Some(t) if t.error_code == 0 && t.partitions.len() as i32 >= *n => {}
                        Some(t) if t.error_code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0 || t.error_code != 0 => {
                            io.check.fail(format!(
                                "admin: topic {name} acknowledged with {n} partitions is missing from later metadata (error {})",
                                t.error_code
                            ));
                        }
                        Some(t) => io.check.fail(format!(
                            "admin: topic {name} acknowledged with {n} partitions shows {} in later metadata",
                            t.partitions.len()
                        )),
                        None => io.check.fail(format!("admin: topic {name} absent from a metadata response")),
                    }
                }
            }
            (_, other) => io.check.fail(format!("admin: unexpected {:?} response", other.api_key())),
        }
        io.wake_between(1, self.gap_ms);
    }

    fn disconnected(&mut self, io: &mut Io<'_>, lost: &[Pending]) {
        // A lost create or grow may have taken effect: forget what it would have told us.
        // A lost produce may have been written: its values are never sent again.
        for p in lost {
            if p.tag & 0xff == A_GROW {
                self.live.clear();
            }
        }
        self.producing = None;
        self.in_flight = false;
        io.wake_between(10, 100);
    }

    fn faults_off(&mut self, io: &mut Io<'_>) {
        io.wake_in(Duration::ZERO);
    }

    fn view(&self) -> View {
        View::Other { busy: self.created.len() < self.topics.len() || !self.doomed.is_empty() }
    }
}

// ---- auditor ------------------------------------------------------------------------------

/// Reads compacted partitions from their log start to their high watermark, one partition
/// after another with a pause between, as a consumer without a group that starts from the
/// beginning does (a Kafka Streams state restore, a schema registry's start-up). Every
/// record compaction may not remove must be among what it reads (the checker's rule for
/// skipped offsets).
#[derive(Debug)]
pub struct Auditor {
    partitions: Vec<Tp>,
    next: usize,
    /// The partition being read and the position in it, once its log start is known.
    reading: Option<(Tp, Option<i64>)>,
    in_flight: bool,
    /// Full reads finished (a figure).
    pub scans: u64,
}

const AU_START: u64 = 1;
const AU_FETCH: u64 = 2;

impl Auditor {
    /// An auditor of `partitions`.
    #[must_use]
    pub fn new(partitions: Vec<Tp>) -> Self {
        Self { partitions, next: 0, reading: None, in_flight: false, scans: 0 }
    }

    fn send_fetch(&mut self, io: &mut Io<'_>, tp: &Tp, from: i64) {
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                topic: tp.0.as_str().into(),
                partitions: vec![FetchPartition {
                    partition: tp.1,
                    fetch_offset: from,
                    partition_max_bytes: 1 << 12,
                    current_leader_epoch: -1,
                    last_fetched_epoch: -1,
                    log_start_offset: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        self.in_flight = true;
        io.send(&RequestBody::Fetch(req), 12, AU_FETCH);
    }

    /// Done with the partition being read (or giving up on it for now): pause, then the next.
    fn finish(&mut self, io: &mut Io<'_>) {
        self.reading = None;
        io.wake_between(100, 1_000);
    }

    fn on_fetch(&mut self, io: &mut Io<'_>, p: &Pending, r: &kelp_core::codec::generated::fetch::FetchResponse) {
        let Some((tp, Some(from))) = self.reading.clone() else { return };
        let pd = r
            .responses
            .iter()
            .filter(|t| t.topic.as_str() == tp.0)
            .flat_map(|t| &t.partitions)
            .find(|x| x.partition_index == tp.1);
        let Some(pd) = pd.filter(|_| r.error_code == 0) else { return self.finish(io) };
        if err(pd.error_code) == ErrorCode::OFFSET_OUT_OF_RANGE {
            // The log start moved on (retention, DeleteRecords): start over from the new one.
            io.check.out_of_range("auditor", &tp, from);
            self.reading = Some((tp, None));
            return io.wake_in(Duration::ZERO);
        }
        if pd.error_code != 0 {
            return self.finish(io);
        }
        let (records, end) = pd.records.as_ref().map(decode).unwrap_or_default();
        io.check.fetched(p.sent_at, &tp, from, pd.high_watermark, (&records, end));
        let next = records.last().map_or(-1, |r| r.offset + 1).max(end.unwrap_or(-1));
        // An empty answer proves nothing (a failed read is answered with no records): the
        // scan ends there and starts over later.
        if next <= from {
            return self.finish(io);
        }
        if next >= pd.high_watermark {
            self.scans += 1;
            return self.finish(io);
        }
        self.reading = Some((tp, Some(next)));
        io.wake_in(Duration::ZERO);
    }
}

impl Model for Auditor {
    fn name(&self) -> String {
        "auditor".to_owned()
    }

    fn wake(&mut self, io: &mut Io<'_>) {
        if !io.connected() {
            return io.connect();
        }
        if self.in_flight || self.partitions.is_empty() {
            return;
        }
        match self.reading.clone() {
            None => {
                let tp = self.partitions[self.next % self.partitions.len()].clone();
                self.next += 1;
                self.in_flight = true;
                io.send(&earliest_request(&tp), 7, AU_START);
                self.reading = Some((tp, None));
            }
            Some((tp, None)) => {
                self.in_flight = true;
                io.send(&earliest_request(&tp), 7, AU_START);
            }
            Some((tp, Some(from))) => self.send_fetch(io, &tp, from),
        }
    }

    fn response(&mut self, io: &mut Io<'_>, p: &Pending, body: ResponseBody) {
        self.in_flight = false;
        match (p.tag & 0xff, &body) {
            (AU_START, ResponseBody::ListOffsets(_)) => {
                let Some((tp, _)) = self.reading.clone() else { return };
                match listed_offsets(&body).into_iter().find(|(t, _)| *t == tp) {
                    Some((_, start)) => {
                        io.check.log_start_seen("auditor", &tp, start);
                        self.reading = Some((tp, Some(start)));
                        io.wake_in(Duration::ZERO);
                    }
                    // Not there yet (the topic is being created) or the store is failing.
                    None => self.finish(io),
                }
            }
            (AU_FETCH, ResponseBody::Fetch(r)) => self.on_fetch(io, p, r),
            (_, other) => io.check.fail(format!("auditor: unexpected {:?} response", other.api_key())),
        }
    }

    fn disconnected(&mut self, io: &mut Io<'_>, _lost: &[Pending]) {
        self.in_flight = false;
        self.reading = None;
        io.wake_between(10, 100);
    }

    fn faults_off(&mut self, _io: &mut Io<'_>) {}

    fn view(&self) -> View {
        View::Other { busy: false }
    }
}
