//! The broker: a pure state machine. Bytes, storage completions and time go in through
//! [`Broker::handle_input`]; responses, storage commands and closes come out of
//! [`Broker::poll_output`]; [`Broker::poll_timeout`] says when to come back with
//! [`Input::Tick`].
//!
//! It owns the topic table, every partition's offsets ([`crate::log`]), idempotent producer
//! state, fetch sessions and parked requests. Handlers live in [`crate::api`], one module per
//! API family; this file holds the plumbing they share: framing and dispatch, per-connection
//! response order, storage command bookkeeping, parked jobs and timers.

use std::collections::VecDeque;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::api;
use crate::codec::generated::RequestBody;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::header::ResponseHeader;
use crate::codec::{ApiKey, DecodeError, KStr, Message, Reader, Uuid, Writer, decode_request_header};
use crate::config::Config;
use crate::conn::{Conn, Frame};
use crate::io::{CloseReason, CmdId, Command, Completion, ConnId, Input, Output, PartitionKey, StorageError};
use crate::log::PartitionLog;
use crate::rng::Rng;
use crate::time::{Instant, Now, TimerTable};
use crate::topics::TopicSettings;

/// One request being answered: where the response goes and how to encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Req {
    /// The connection.
    pub conn: ConnId,
    /// The connection's response slot for this request.
    pub slot: u64,
    /// The API.
    pub api: ApiKey,
    /// The request (and response) version.
    pub version: i16,
    /// The client's correlation id.
    pub correlation_id: i32,
    /// When the request was read (for the latency histogram).
    pub at: Instant,
}

/// A parked request's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

/// Who is waiting for a storage command.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CmdOwner {
    /// The start-up recovery.
    Recover,
    /// A partition append (the partition tracks it; jobs wait on the high watermark).
    Append(PartitionKey),
    /// Part `part` of a parked job.
    Job { job: JobId, part: usize },
    /// A retention check of one partition.
    Retain(PartitionKey),
    /// Re-learning a partition's end after an append with an unknown outcome.
    Resync(PartitionKey),
}

/// What fires when a timer is due.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// A long-polling fetch's `max_wait_ms` ran out.
    FetchWait(JobId),
    /// A consumer group's session, join or sync deadline.
    Group(crate::group::classic::GroupTimer),
    /// A KIP-848 consumer group's session or revocation deadline.
    Consumer(crate::group::consumer::ConsumerTimer),
    /// The periodic retention check ([`crate::retention`]).
    Retention,
    /// Ask the store to recover again after it failed.
    RecoverRetry,
    /// Ask the store for a partition's end again ([`crate::resync`]).
    Resync(PartitionKey),
}

/// How long to wait before asking a store that failed to recover again: a store that answers
/// at once (an outage) must not be asked in a tight loop.
const RECOVER_RETRY: crate::time::Duration = crate::time::Duration::from_millis(100);

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    /// The name.
    pub name: KStr,
    /// The id.
    pub id: Uuid,
    /// Config overrides as set by users.
    pub overrides: Vec<(KStr, KStr)>,
    /// Effective settings.
    pub settings: TopicSettings,
    /// The partitions, by index.
    pub partitions: Vec<PartitionLog>,
    /// Created in memory but not yet stored: invisible to clients.
    pub pending: bool,
}

/// The sans-IO broker. See the module docs and [`crate::io`] for the driver contract.
pub struct Broker {
    pub(crate) cfg: Config,
    pub(crate) rng: Rng,
    pub(crate) now: Now,
    recovered: bool,
    pub(crate) conns: HashMap<ConnId, Conn>,
    /// Connections whose frames are being read right now (innermost last). A response filled
    /// while its connection is being read must not start reading it again: the loop in
    /// `process_frames` goes on by itself, and recursing would take a stack frame per
    /// pipelined request.
    reading: Vec<ConnId>,
    pub(crate) topics: HashMap<Uuid, Topic>,
    pub(crate) names: HashMap<KStr, Uuid>,
    out: VecDeque<Output>,
    cmds: HashMap<CmdId, CmdOwner>,
    next_cmd: u64,
    pub(crate) jobs: HashMap<JobId, api::Job>,
    next_job: u64,
    pub(crate) timers: TimerTable<Timer>,
    /// The earliest timer, as of the last drain ([`Broker::poll_timeout`]).
    timeout: Option<Instant>,
    /// Jobs waiting for a partition's high watermark to reach an offset: (target, job, part).
    pub(crate) hwm_waiters: HashMap<PartitionKey, Vec<(i64, JobId, usize)>>,
    /// Long-polling fetches to re-check when a partition's high watermark moves.
    pub(crate) fetch_waiters: HashMap<PartitionKey, Vec<JobId>>,
    pub(crate) sessions: api::fetch::Sessions,
    pub(crate) producer_ids: api::producer::ProducerIds,
    pub(crate) groups: crate::group::Groups,
    pub(crate) stats: crate::stats::Stats,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.cfg.node_id)
            .field("recovered", &self.recovered)
            .field("conns", &self.conns.len())
            .field("topics", &self.topics.len())
            .field("cmds_in_flight", &self.cmds.len())
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker that first asks the store to recover (its first output is
    /// `Command::Recover`); it reads requests only once that has completed.
    #[must_use]
    pub fn new(config: Config, seed: u64, now: Now) -> Self {
        let mut b = Self {
            cfg: config,
            rng: Rng::new(seed),
            now,
            recovered: false,
            conns: HashMap::new(),
            reading: Vec::new(),
            topics: HashMap::new(),
            names: HashMap::new(),
            out: VecDeque::new(),
            cmds: HashMap::new(),
            next_cmd: 0,
            jobs: HashMap::new(),
            next_job: 0,
            timers: TimerTable::default(),
            timeout: None,
            hwm_waiters: HashMap::new(),
            fetch_waiters: HashMap::new(),
            sessions: api::fetch::Sessions::default(),
            producer_ids: api::producer::ProducerIds::default(),
            groups: crate::group::Groups::default(),
            stats: crate::stats::Stats::default(),
        };
        b.storage(CmdOwner::Recover, Command::Recover);
        b
    }

    /// Feeds one input. Drain [`Broker::poll_output`] to `None` afterwards.
    pub fn handle_input(&mut self, now: Now, input: Input<'_>) {
        debug_assert!(now.mono >= self.now.mono, "time went back");
        self.now = Now { mono: now.mono.max(self.now.mono), wall_ms: now.wall_ms };
        match input {
            Input::Accepted { conn, peer } => {
                self.stats.connections_accepted += 1;
                let old = self.conns.insert(conn, Conn::new(peer));
                debug_assert!(old.is_none(), "{conn:?} accepted twice");
            }
            Input::Received { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    debug_assert!(false, "bytes for unknown {conn:?}");
                    return;
                };
                c.receive(bytes);
                self.stats.bytes_in += bytes.len() as u64;
                self.process_frames(conn);
            }
            Input::Completed { cmd, result } => self.complete(cmd, result),
            Input::Written { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else { return };
                debug_assert!(bytes <= c.unwritten, "{conn:?}: more written than was sent");
                c.unwritten = c.unwritten.saturating_sub(bytes);
                self.process_frames(conn);
            }
            Input::Closed { conn } => {
                self.conns.remove(&conn);
            }
            Input::Tick => self.fire_timers(),
        }
    }

    /// The next thing for the driver to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front();
        if out.is_none() {
            // Drained: the timers are settled until the next input.
            self.timeout = self.timers.next_deadline();
        }
        out
    }

    /// When the broker next needs an [`Input::Tick`], as of the last time
    /// [`Broker::poll_output`] returned `None` (drain it after every input, then ask).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timeout
    }

    /// Whether a connection must not be read now: too many requests unanswered, too many
    /// response bytes not yet written to its socket (a client that does not read), or a fetch
    /// whose possibly large answer is still being assembled. The driver hears of each change
    /// as [`Output::PauseRead`] or [`Output::ResumeRead`].
    fn saturated(&self, c: &Conn) -> bool {
        c.in_flight() >= self.cfg.max_in_flight_per_conn
            || c.unwritten > self.cfg.max_unwritten_per_conn
            || c.fetches_in_flight > 0
    }

    /// The group epoch of the KIP-848 consumer group `group`, if there is one (the
    /// simulator's liveness check: a settled group's members are all at this epoch).
    #[must_use]
    pub fn consumer_group_epoch(&self, group: &str) -> Option<i32> {
        self.groups.consumer.get(group).map(|g| g.epoch)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether the broker serves requests: the store has recovered.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.recovered
    }

    /// Whether nothing is in progress: no connection has a request unanswered or response
    /// bytes unwritten, and no storage command is outstanding. A driver stopping gracefully
    /// waits for this (see [`crate::stats`] for what it reports meanwhile).
    #[must_use]
    pub fn is_quiescent(&self) -> bool {
        self.cmds.is_empty() && self.conns.values().all(|c| c.in_flight() == 0 && c.unwritten == 0)
    }

    /// The broker's counters.
    #[must_use]
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.stats
    }

    /// Appends every metric in Prometheus text format (version 0.0.4) to `out`: the counters
    /// of [`Broker::stats`] and gauges read from the broker's state (connections, topics,
    /// partitions, high watermarks, consumer lag).
    pub fn write_metrics(&self, out: &mut String) {
        self.stats.write_prometheus(out);
        crate::stats::write_state(self, out);
    }

    /// The software name and version the client on `conn` reported in ApiVersions v3+
    /// (KIP-511), if it did.
    #[must_use]
    pub fn client_software(&self, conn: ConnId) -> Option<(&str, &str)> {
        self.conns.get(&conn)?.client_software.as_ref().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    // ---- requests --------------------------------------------------------------------------

    fn process_frames(&mut self, conn: ConnId) {
        if !self.recovered || self.reading.contains(&conn) {
            return;
        }
        self.reading.push(conn);
        self.read_frames(conn);
        self.reading.pop();
        // Tell the driver to stop or start reading when the connection's saturation changed
        // since it was last told: here, once the frames are read, so that a burst of pipelined
        // requests answered at once gives no pause and resume in between.
        let Some(pause) = self.conns.get(&conn).map(|c| self.saturated(c)) else { return };
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.read_paused != pause {
            c.read_paused = pause;
            self.out.push_back(if pause { Output::PauseRead { conn } } else { Output::ResumeRead { conn } });
        }
    }

    fn read_frames(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get(&conn) else { return };
            if self.saturated(c) {
                // Keep the rest buffered; the driver stops reading (Output::PauseRead) until
                // answers drain. A client that keeps sending regardless is cut off.
                if c.buffered() > self.cfg.max_request_size.saturating_mul(2) {
                    self.close(conn, CloseReason::TooManyInFlight);
                }
                return;
            }
            let Some(c) = self.conns.get_mut(&conn) else { return };
            match c.next_frame(self.cfg.max_request_size) {
                Ok(Some(frame)) => self.handle_frame(conn, &frame),
                Ok(None) => return,
                Err(reason) => {
                    self.close(conn, reason);
                    return;
                }
            }
        }
    }

    fn handle_frame(&mut self, conn: ConnId, frame: &Bytes) {
        let mut r = Reader::new(frame);
        let header = match decode_request_header(&mut r) {
            Ok((h, _)) => h,
            Err(e) => return self.close(conn, CloseReason::Undecodable(e)),
        };
        let api = ApiKey(header.request_api_key);
        let version = header.request_api_version;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let slot = c.open_slot();
        let req = Req { conn, slot, api, version, correlation_id: header.correlation_id, at: self.now.mono };
        self.stats.request(api);
        // ApiVersions must answer any version (KIP-511), and old produce versions get a
        // proper error reply: both before the generic decode, which would refuse them.
        if api == ApiKey::API_VERSIONS && !api::api_versions::version_supported(version) {
            return api::api_versions::unsupported_version(self, req);
        }
        if api == ApiKey::PRODUCE && version < 3 {
            return api::produce::legacy_version(self, req, frame.slice(r.position()..));
        }
        if !api::served(api, version) {
            return self.close(conn, CloseReason::UnknownApi { key: api.0, version });
        }
        // Bytes after the body are ignored, as Kafka's parser does: librdkafka 2.16 sends
        // Metadata v13 with three bytes past the schema.
        match RequestBody::decode(api, &mut r, version) {
            Ok(body) => {
                if api == ApiKey::FETCH
                    && let Some(c) = self.conns.get_mut(&conn)
                {
                    c.fetches_in_flight += 1;
                }
                api::dispatch(self, req, header.client_id, body);
            }
            Err(DecodeError::UnknownApiKey(_)) => self.close(conn, CloseReason::UnknownApi { key: api.0, version }),
            Err(e) => self.close(conn, CloseReason::Undecodable(e)),
        }
    }

    /// Sends `body` as the response to `req`, in its turn.
    pub(crate) fn respond(&mut self, req: Req, body: &ResponseBody) {
        let hv = req.api.response_header_version(req.version);
        let header = ResponseHeader { correlation_id: req.correlation_id, ..Default::default() };
        let len = header.encoded_len(hv) + body.encoded_len(req.version);
        let mut w = Writer::with_capacity((4 + len).min(64 * 1024));
        w.i32(i32::try_from(len).unwrap_or(i32::MAX));
        header.encode(&mut w, hv);
        body.encode(&mut w, req.version);
        debug_assert_eq!(w.len(), 4 + len, "encoded_len disagrees with encode for {:?}", req.api);
        self.stats.errors_in(req.api, body);
        self.fill(req, Some(w.into_chunks()));
    }

    /// Sends a pre-encoded response body (for formats the codec does not generate).
    pub(crate) fn respond_raw(&mut self, req: Req, body: Bytes) {
        let mut w = Writer::with_capacity(8 + body.len());
        let hv = req.api.response_header_version(req.version);
        let header = ResponseHeader { correlation_id: req.correlation_id, ..Default::default() };
        w.i32(i32::try_from(header.encoded_len(hv) + body.len()).unwrap_or(i32::MAX));
        header.encode(&mut w, hv);
        w.put_shared(&body);
        self.fill(req, Some(w.into_chunks()));
    }

    /// Marks `req` as answered with nothing (acks=0 produce).
    pub(crate) fn respond_nothing(&mut self, req: Req) {
        self.fill(req, None);
    }

    fn fill(&mut self, req: Req, frame: Option<Frame>) {
        self.stats.response(req.api, self.now.mono.since(req.at));
        let Some(c) = self.conns.get_mut(&req.conn) else { return };
        if req.api == ApiKey::FETCH {
            c.fetches_in_flight = c.fetches_in_flight.saturating_sub(1);
        }
        c.fill(req.slot, frame);
        while let Some(bytes) = c.take_ready() {
            let n = bytes.iter().map(Bytes::len).sum::<usize>();
            c.unwritten += n;
            self.stats.bytes_out += n as u64;
            self.out.push_back(Output::Send { conn: req.conn, bytes });
        }
        // Answers free slots: buffered requests may now be read.
        self.process_frames(req.conn);
    }

    /// Closes `conn`: nothing more is read from it or sent to it.
    pub(crate) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if self.conns.remove(&conn).is_some() {
            self.stats.connections_closed_by_broker += 1;
            self.out.push_back(Output::Close { conn, reason });
        }
    }

    // ---- storage ---------------------------------------------------------------------------

    /// Emits a storage command owned by `owner`.
    pub(crate) fn storage(&mut self, owner: CmdOwner, command: Command) -> CmdId {
        let cmd = self.reserve_cmd(owner);
        self.emit_cmd(cmd, command);
        cmd
    }

    /// Takes a command id for `owner` before the command itself can be built.
    pub(crate) fn reserve_cmd(&mut self, owner: CmdOwner) -> CmdId {
        let cmd = CmdId(self.next_cmd);
        self.next_cmd += 1;
        self.cmds.insert(cmd, owner);
        cmd
    }

    /// Emits a command whose id was reserved.
    pub(crate) fn emit_cmd(&mut self, cmd: CmdId, command: Command) {
        debug_assert!(self.cmds.contains_key(&cmd), "{cmd:?} was not reserved");
        self.out.push_back(Output::Storage { cmd, command });
    }

    fn complete(&mut self, cmd: CmdId, result: Completion) {
        let Some(owner) = self.cmds.remove(&cmd) else {
            debug_assert!(false, "completion for unknown {cmd:?}");
            return;
        };
        match owner {
            CmdOwner::Recover => self.recover(result),
            CmdOwner::Append(key) => self.append_completed(key, cmd, &result),
            CmdOwner::Job { job, part } => api::job_completed(self, job, part, result),
            CmdOwner::Retain(key) => crate::retention::done(self, key, &result),
            CmdOwner::Resync(key) => crate::resync::done(self, key, result),
        }
    }

    fn recover(&mut self, result: Completion) {
        let Completion::Recovered(rec) = result else {
            // Without recovery nothing can be served; ask again shortly (a store that is
            // starting up answers Unavailable until it is ready).
            self.timers.arm(Timer::RecoverRetry, self.now.mono + RECOVER_RETRY);
            return;
        };
        for t in &rec.topics {
            let settings = TopicSettings::resolve(&self.cfg, &t.configs);
            let partitions =
                (0..t.partitions).map(|p| PartitionLog::new(PartitionKey { topic_id: t.id, partition: p })).collect();
            self.names.insert(t.name.clone(), t.id);
            let topic = Topic {
                name: t.name.clone(),
                id: t.id,
                overrides: t.configs.clone(),
                settings,
                partitions,
                pending: false,
            };
            self.topics.insert(t.id, topic);
        }
        for (key, extent) in &rec.partitions {
            if let Some(p) = self.partition_mut(*key) {
                *p = PartitionLog::recovered(*key, extent);
            }
        }
        self.producer_ids.recover(&rec.values, self.topics.values());
        let (groups, timers, consumer_timers) = crate::group::Groups::recover(&rec.values, self.now.mono, &self.cfg);
        self.groups = groups;
        for (t, at) in timers {
            self.timers.arm(Timer::Group(t), at);
        }
        for (t, at) in consumer_timers {
            self.timers.arm(Timer::Consumer(t), at);
        }
        crate::retention::arm(self);
        self.recovered = true;
        // In connection order, not the map's (randomly seeded) order: the same inputs must
        // give the same outputs.
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for c in conns {
            self.process_frames(c);
        }
    }

    fn append_completed(&mut self, key: PartitionKey, cmd: CmdId, result: &Completion) {
        let Some(p) = self.partition_mut(key) else { return };
        let moved = match result {
            Completion::Done => p.append_done(cmd),
            Completion::Failed(e) => {
                p.append_failed(cmd, e.outcome_unknown());
                None
            }
            _ => {
                p.append_failed(cmd, true);
                None
            }
        };
        let (hwm, rewinding) = (p.hwm(), p.is_rewinding());
        if moved.is_some() {
            self.hwm_moved(key, hwm);
        }
        if rewinding || !matches!(result, Completion::Done) {
            let err = match result {
                Completion::Failed(e) => *e,
                _ => StorageError::Unavailable,
            };
            self.fail_waiters_beyond(key, hwm, err);
        }
        crate::resync::ask(self, key);
    }

    /// Wakes jobs waiting on `key`'s high watermark.
    pub(crate) fn hwm_moved(&mut self, key: PartitionKey, hwm: i64) {
        if let Some(waiters) = self.hwm_waiters.get_mut(&key) {
            let (due, keep): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(target, _, _)| *target <= hwm);
            *waiters = keep;
            for (_, job, part) in due {
                api::job_completed(self, job, part, Completion::Done);
            }
        }
        if let Some(fetches) = self.fetch_waiters.remove(&key) {
            for job in fetches {
                api::fetch::wake(self, job);
            }
        }
    }

    /// A partition went away (a CreatePartitions the store refused): whatever waits on it
    /// fails.
    pub(crate) fn partition_removed(&mut self, key: PartitionKey) {
        self.fail_waiters_beyond(key, i64::MIN, StorageError::NotFound);
        self.hwm_waiters.remove(&key);
    }

    fn fail_waiters_beyond(&mut self, key: PartitionKey, hwm: i64, err: StorageError) {
        let Some(waiters) = self.hwm_waiters.get_mut(&key) else { return };
        let (failed, keep): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(target, _, _)| *target > hwm);
        *waiters = keep;
        for (_, job, part) in failed {
            api::job_completed(self, job, part, Completion::Failed(err));
        }
    }

    // ---- jobs and timers -------------------------------------------------------------------

    /// Parks a job; it resumes through [`api::job_completed`] and timers.
    pub(crate) fn park(&mut self, job: api::Job) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        self.jobs.insert(id, job);
        id
    }

    fn fire_timers(&mut self) {
        while let Some(t) = self.timers.pop_due(self.now.mono) {
            match t {
                Timer::FetchWait(job) => api::fetch::expire(self, job),
                Timer::Group(t) => api::group::timer(self, t),
                Timer::Consumer(t) => api::consumer::timer(self, t),
                Timer::Retention => crate::retention::check(self),
                Timer::RecoverRetry => {
                    self.storage(CmdOwner::Recover, Command::Recover);
                }
                Timer::Resync(key) => crate::resync::ask(self, key),
            }
        }
    }

    // ---- topics ----------------------------------------------------------------------------

    /// A visible topic by name.
    pub(crate) fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.names.get(name).and_then(|id| self.topics.get(id)).filter(|t| !t.pending)
    }

    /// A visible topic by id.
    pub(crate) fn topic_by_id(&self, id: Uuid) -> Option<&Topic> {
        self.topics.get(&id).filter(|t| !t.pending)
    }

    pub(crate) fn partition_mut(&mut self, key: PartitionKey) -> Option<&mut PartitionLog> {
        let p = usize::try_from(key.partition).ok()?;
        self.topics.get_mut(&key.topic_id)?.partitions.get_mut(p)
    }

    pub(crate) fn partition(&self, key: PartitionKey) -> Option<&PartitionLog> {
        let p = usize::try_from(key.partition).ok()?;
        self.topics.get(&key.topic_id).filter(|t| !t.pending)?.partitions.get(p)
    }

    /// A fresh topic id: random, never the zero id nor Kafka's reserved id 1.
    pub(crate) fn new_topic_id(&mut self) -> Uuid {
        loop {
            let id = Uuid::from_u64_pair(self.rng.next_u64(), self.rng.next_u64());
            if id != Uuid::ZERO && id != Uuid::from_u64_pair(0, 1) && !self.topics.contains_key(&id) {
                return id;
            }
        }
    }
}
