//! The broker: a pure state machine. Bytes, storage completions and time go in through
//! [`Broker::handle_input`]; responses, storage commands, closes and read back-pressure
//! (pause/resume) come out of [`Broker::poll_output`]; [`Broker::poll_timeout`] says when to
//! come back with [`Input::Tick`].
//!
//! The broker is plumbing: connections and their frames, dispatch by API, per-connection
//! response order, and the output queue. What requests read and change is the handlers'
//! `State` (topics and partition logs, groups, producer ids, fetch sessions), and what they
//! cause is written to their effect sink (`Effects`), which this file carries out: replies
//! are encoded and queued in their turn, storage commands and closes go out, timers fire back
//! into the handlers in `crate::api`.

use std::collections::VecDeque;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::api::effects::{Effect, Reply};
use crate::api::{self, CmdOwner, Effects, Timer};
use crate::codec::KStr;
use crate::codec::generated::RequestBody;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::header::ResponseHeader;
use crate::codec::{ApiKey, DecodeError, Message, Reader, Writer, decode_request_header};
use crate::config::Config;
use crate::conn::{Conn, Frame};
use crate::io::{CloseReason, CmdId, Command, Completion, ConnId, Input, Origin, Output};
use crate::request::Req;
use crate::security::{self, sasl::Auth};
use crate::state::State;
use crate::time::{Instant, Now};

/// The sans-IO broker. See the module docs and [`crate::io`] for the driver contract.
pub struct Broker {
    /// What handlers read and change.
    pub(crate) st: State,
    /// The handlers' effect sink, with the job, command and timer tables behind it.
    pub(crate) fx: Effects,
    recovered: bool,
    pub(crate) conns: HashMap<ConnId, Conn>,
    /// Connections whose frames are being read right now (innermost last). A response filled
    /// while its connection is being read must not start reading it again: the loop in
    /// `process_frames` goes on by itself, and recursing would take a stack frame per
    /// pipelined request.
    reading: Vec<ConnId>,
    out: VecDeque<Output>,
    pub(crate) stats: crate::stats::Stats,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.st.cfg.node_id)
            .field("recovered", &self.recovered)
            .field("conns", &self.conns.len())
            .field("cmds_in_flight", &self.fx.commands_in_flight())
            .field("jobs", &self.fx.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker that first asks the store to recover (its first output is
    /// `Command::Recover`); it reads requests only once that has completed.
    #[must_use]
    pub fn new(config: Config, seed: u64, now: Now) -> Self {
        assert!(!config.listeners.is_empty(), "the configuration has no listener");
        let mut b = Self {
            st: State::new(config, seed, now),
            fx: Effects::default(),
            recovered: false,
            conns: HashMap::new(),
            reading: Vec::new(),
            out: VecDeque::new(),
            stats: crate::stats::Stats::default(),
        };
        b.fx.storage(CmdOwner::Recover, Command::Recover);
        b.apply();
        b
    }

    /// Gives the broker the schema registry's view, which topics with `confluent.*.schema.
    /// validation` check produced records against (see [`crate::schemas`]). Without one, such
    /// topics refuse every batch whose checked field is not null.
    pub fn set_schema_catalog(&mut self, catalog: std::sync::Arc<dyn crate::schemas::SchemaCatalog>) {
        self.st.schemas = Some(catalog);
    }

    /// Keys the generator of secrets (SCRAM server nonces) with 32 bytes of operating-system
    /// entropy. A driver serving real clients calls it once, before any connection; without
    /// it, nonces derive from the broker's seed, which is fine only for tests.
    pub fn seed_secrets(&mut self, key: [u8; 32]) {
        self.st.secrets = crate::security::SecretRng::from_key(key);
    }

    /// Feeds one input. Drain [`Broker::poll_output`] to `None` afterwards.
    pub fn handle_input(&mut self, now: Now, input: Input<'_>) {
        debug_assert!(now.mono >= self.st.now.mono, "time went back");
        self.st.now = Now { mono: now.mono.max(self.st.now.mono), wall_ms: now.wall_ms };
        match input {
            Input::Accepted { conn, peer, origin } => {
                self.stats.connections_accepted += 1;
                let mut c = Conn::new(peer, self.auth_for(&origin));
                c.listener = origin.listener;
                let old = self.conns.insert(conn, c);
                self.note_who(conn);
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
            Input::ReceivedOwned { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    debug_assert!(false, "bytes for unknown {conn:?}");
                    return;
                };
                self.stats.bytes_in += bytes.len() as u64;
                c.receive_owned(bytes);
                self.process_frames(conn);
            }
            Input::Completed { cmd, result } => {
                self.complete(cmd, result);
                self.apply();
            }
            Input::Written { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else { return };
                debug_assert!(bytes <= c.unwritten, "{conn:?}: more written than was sent");
                c.unwritten = c.unwritten.saturating_sub(bytes);
                self.process_frames(conn);
            }
            Input::Closed { conn } => {
                self.conns.remove(&conn);
                self.st.who.remove(&conn);
            }
            Input::Tick => {
                self.fire_timers();
                self.apply();
            }
        }
    }

    /// The next thing for the driver to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the broker next needs an [`Input::Tick`] (ask after draining
    /// [`Broker::poll_output`]: handling an input can arm or cancel timers).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.fx.timers.next_deadline()
    }

    /// The group epoch of the KIP-848 consumer group `group`, if there is one (the
    /// simulator's liveness check: a settled group's members are all at this epoch).
    #[cfg(feature = "test-hooks")]
    #[must_use]
    pub fn consumer_group_epoch(&self, group: &str) -> Option<i32> {
        self.st.groups.consumer.get(group).map(|g| g.epoch)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.st.cfg
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
        self.fx.commands_in_flight() == 0 && self.conns.values().all(|c| c.in_flight() == 0 && c.unwritten == 0)
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

    /// How a new connection starts out: in-process ones as the internal principal, SASL
    /// listeners' awaiting their handshake, others as their certificate's subject or
    /// anonymous. A listener the configuration does not know (a driver bug) asks for SASL.
    fn auth_for(&self, origin: &Origin) -> Auth {
        if origin.listener == Origin::LOCAL_LISTENER {
            return Auth::Done(KStr::from_static(security::INTERNAL));
        }
        let Some(listener) = self.st.cfg.listeners.get(usize::from(origin.listener)) else {
            debug_assert!(false, "connection on unknown listener {}", origin.listener);
            return Auth::Handshake;
        };
        let principal = match &origin.tls_subject {
            Some(dn) => security::user_principal(dn),
            None => KStr::from_static(security::ANONYMOUS),
        };
        Auth::start(listener.protocol.sasl(), principal)
    }

    /// Records who an authenticated connection is, for the handlers' authorization.
    fn note_who(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else { return };
        if let Some(principal) = c.auth.principal() {
            let host = security::acl::host_of(c.peer.ip());
            self.st.who.insert(conn, crate::state::Who { principal: principal.clone(), host });
        }
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
        let cfg = &self.st.cfg;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let pause = saturated(cfg, c);
        if c.read_paused != pause {
            c.read_paused = pause;
            self.out.push_back(if pause { Output::PauseRead { conn } } else { Output::ResumeRead { conn } });
        }
    }

    fn read_frames(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get(&conn) else { return };
            if saturated(&self.st.cfg, c) {
                // Keep the rest buffered; the driver stops reading (Output::PauseRead) until
                // answers drain. A client that keeps sending regardless is cut off.
                if c.buffered() > self.st.cfg.max_request_size.saturating_mul(2) {
                    self.close(conn, CloseReason::TooManyInFlight);
                }
                return;
            }
            let Some(c) = self.conns.get_mut(&conn) else { return };
            // Before authentication, frames are SASL-sized (Kafka's sasl.server.max.receive.size).
            let max = match c.auth {
                Auth::Done(_) => self.st.cfg.max_request_size,
                _ => self.st.cfg.max_request_size.min(security::sasl::MAX_RECEIVE),
            };
            match c.next_frame(max) {
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
        if self.conns.get(&conn).is_some_and(|c| c.auth.expects_raw_token()) {
            return self.raw_sasl_token(conn, frame);
        }
        let mut r = Reader::new(frame);
        let header = match decode_request_header(&mut r) {
            Ok((h, _)) => h,
            Err(e) => return self.close(conn, CloseReason::Undecodable(e)),
        };
        let api = ApiKey(header.request_api_key);
        let version = header.request_api_version;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        // Before authentication only ApiVersions and the SASL requests are read.
        let sasl_api = matches!(api, ApiKey::SASL_HANDSHAKE | ApiKey::SASL_AUTHENTICATE);
        if c.auth.principal().is_none() && !sasl_api && api != ApiKey::API_VERSIONS {
            return self.close(conn, CloseReason::Unauthenticated { key: api.0 });
        }
        let slot = c.open_slot();
        let (peer, listener) = (c.peer, c.listener);
        let req =
            Req { conn, slot, api, version, correlation_id: header.correlation_id, at: self.st.now.mono, listener };
        self.stats.request(api);
        // ApiVersions must answer any version (KIP-511), and old produce versions get a
        // proper error reply: both before the generic decode, which would refuse them.
        if api == ApiKey::API_VERSIONS && !api::api_versions::version_supported(version) {
            api::api_versions::unsupported_version(&mut self.fx, req);
            return self.apply();
        }
        if api == ApiKey::PRODUCE && version < 3 {
            api::produce::legacy_version(&mut self.fx, req, &frame.slice(r.position()..));
            return self.apply();
        }
        if !api::served(api, version) {
            return self.close(conn, CloseReason::UnknownApi { key: api.0, version });
        }
        // Bytes after the body are ignored, as Kafka's parser does: librdkafka 2.16 sends
        // Metadata v13 with three bytes past the schema.
        match RequestBody::decode(api, &mut r, version) {
            Ok(RequestBody::SaslHandshake(m)) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    api::sasl::handshake(&mut c.auth, &self.st, &mut self.fx, req, &m);
                }
                self.apply();
            }
            Ok(RequestBody::SaslAuthenticate(m)) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    let before = c.auth.principal().is_some();
                    api::sasl::authenticate(&mut c.auth, &mut self.st, &mut self.fx, req, &m);
                    let now = !before && c.auth.principal().is_some();
                    self.stats.sasl_succeeded += u64::from(now);
                    if now {
                        self.note_who(conn);
                    }
                }
                self.apply();
            }
            Ok(body) => {
                if api == ApiKey::FETCH
                    && let Some(c) = self.conns.get_mut(&conn)
                {
                    c.fetches_in_flight += 1;
                }
                api::dispatch(&mut self.st, &mut self.fx, req, (header.client_id, peer), body);
                self.apply();
            }
            Err(DecodeError::UnknownApiKey(_)) => self.close(conn, CloseReason::UnknownApi { key: api.0, version }),
            Err(e) => self.close(conn, CloseReason::Undecodable(e)),
        }
    }

    /// A bare SASL token after a v0 handshake: it takes a slot like a request, so that its
    /// answer leaves in order.
    fn raw_sasl_token(&mut self, conn: ConnId, token: &Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let slot = c.open_slot();
        let req = Req {
            conn,
            slot,
            api: ApiKey::SASL_AUTHENTICATE,
            version: 0,
            correlation_id: 0,
            at: self.st.now.mono,
            listener: c.listener,
        };
        self.stats.request(req.api);
        api::sasl::raw_token(&mut c.auth, &mut self.st, &mut self.fx, req, token);
        let done = c.auth.principal().is_some();
        self.stats.sasl_succeeded += u64::from(done);
        if done {
            self.note_who(conn);
        }
        self.apply();
    }

    /// Carries out the effects handlers asked for, in order. A reply can let a connection's
    /// buffered requests be read, whose handlers add effects of their own: those are carried
    /// out by the same loop.
    fn apply(&mut self) {
        while let Some(effect) = self.fx.pop() {
            match effect {
                Effect::Reply(req, reply) => {
                    let frame = self.encode(req, reply);
                    self.fill(req, frame);
                }
                Effect::Storage(cmd, command) => self.out.push_back(Output::Storage { cmd, command }),
                Effect::Close(conn, reason) => self.close(conn, reason),
                Effect::ClientSoftware(conn, name, version) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.client_software = Some((name, version));
                    }
                }
            }
        }
    }

    /// Frames a reply: the size prefix, the response header and the body.
    fn encode(&mut self, req: Req, reply: Reply) -> Option<Frame> {
        let hv = req.api.response_header_version(req.version);
        let header = ResponseHeader { correlation_id: req.correlation_id, ..Default::default() };
        match reply {
            Reply::Body(body) => Some(self.encode_body(req, &header, hv, &body)),
            Reply::Raw(body) => {
                let mut w = Writer::with_capacity(8 + body.len());
                w.i32(i32::try_from(header.encoded_len(hv) + body.len()).unwrap_or(i32::MAX));
                header.encode(&mut w, hv);
                w.put_shared(&body);
                Some(w.into_chunks())
            }
            Reply::Nothing => None,
            Reply::Bare(token) => {
                let mut w = Writer::with_capacity(4 + token.len());
                w.i32(i32::try_from(token.len()).unwrap_or(i32::MAX));
                w.put_shared(&token);
                Some(w.into_chunks())
            }
        }
    }

    fn encode_body(&mut self, req: Req, header: &ResponseHeader, hv: i16, body: &ResponseBody) -> Frame {
        let len = header.encoded_len(hv) + body.encoded_len(req.version);
        let mut w = Writer::with_capacity((4 + len).min(64 * 1024));
        w.i32(i32::try_from(len).unwrap_or(i32::MAX));
        header.encode(&mut w, hv);
        body.encode(&mut w, req.version);
        debug_assert_eq!(w.len(), 4 + len, "encoded_len disagrees with encode for {:?}", req.api);
        self.stats.errors_in(req.api, body);
        w.into_chunks()
    }

    fn fill(&mut self, req: Req, frame: Option<Frame>) {
        self.stats.response(req.api, self.st.now.mono.since(req.at));
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
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.st.who.remove(&conn);
        if self.conns.remove(&conn).is_some() {
            self.stats.connections_closed_by_broker += 1;
            self.stats.sasl_failed += u64::from(matches!(reason, CloseReason::Authentication(_)));
            self.out.push_back(Output::Close { conn, reason });
        }
    }

    // ---- storage ---------------------------------------------------------------------------

    fn complete(&mut self, cmd: CmdId, result: Completion) {
        let Some(owner) = self.fx.take_owner(cmd) else {
            debug_assert!(false, "completion for unknown {cmd:?}");
            return;
        };
        let (st, fx) = (&mut self.st, &mut self.fx);
        match owner {
            CmdOwner::Recover => {
                if api::recovery::recovered(st, fx, result) {
                    self.recovered = true;
                    self.apply();
                    // In connection order, not the map's (randomly seeded) order: the same
                    // inputs must give the same outputs.
                    let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
                    conns.sort_unstable();
                    for c in conns {
                        self.process_frames(c);
                    }
                }
            }
            CmdOwner::Append(key) => api::waiters::append_completed(st, fx, key, cmd, &result),
            CmdOwner::Job { job, part } => api::job_completed(st, fx, job, part, result),
            CmdOwner::Retain(key) => api::retention::done(st, key, &result),
            CmdOwner::Clean(key) => {
                if let Some(report) = api::cleaning::done(st, key, &result) {
                    self.stats.cleaned(&report);
                }
            }
            CmdOwner::Resync(key) => api::resync::done(st, fx, key, result),
            CmdOwner::Durable(key) => api::waiters::durability(st, fx, key, cmd, &result),
            CmdOwner::Epochs(key) => api::resync::epochs_stored(st, fx, key, &result),
        }
    }

    // ---- timers ----------------------------------------------------------------------------

    fn fire_timers(&mut self) {
        while let Some(t) = self.fx.timers.pop_due(self.st.now.mono) {
            let (st, fx) = (&mut self.st, &mut self.fx);
            match t {
                Timer::FetchWait(job) => api::fetch::expire(st, fx, job),
                Timer::Group(t) => api::group::timer(st, fx, t),
                Timer::Consumer(t) => api::consumer::timer(st, fx, t),
                Timer::Retention => api::retention::check(st, fx),
                Timer::Cleaner => api::cleaning::check(st, fx),
                Timer::RecoverRetry => {
                    fx.storage(CmdOwner::Recover, Command::Recover);
                }
                Timer::Resync(key) => api::resync::ask(st, fx, key),
                Timer::ProduceTimeout(job) => api::produce::timed_out(fx, job),
                Timer::TxnTimeouts => api::txn::check_timeouts(st, fx),
                Timer::TxnMarkers(job) => api::txn::retry_markers(st, fx, job),
            }
        }
    }
}

/// Whether a connection must not be read now: too many requests unanswered, too many
/// response bytes not yet written to its socket (a client that does not read), or a fetch
/// whose possibly large answer is still being assembled. The driver hears of each change
/// as [`Output::PauseRead`] or [`Output::ResumeRead`].
fn saturated(cfg: &Config, c: &Conn) -> bool {
    c.in_flight() >= cfg.max_in_flight_per_conn || c.unwritten > cfg.max_unwritten_per_conn || c.fetches_in_flight > 0
}
