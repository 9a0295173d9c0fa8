//! Deterministic simulation testing (DST) of the whole core.
//!
//! One seed picks the whole scenario ([`Scenario::from_seed`]: how many producers, groups,
//! members, topics and partitions, which faults and how often: swarm testing) and drives the
//! real [`Broker`] through a simulated network ([`net`]), a fault-injecting store over
//! `MemStore` ([`store`]) and client models ([`clients`]), in virtual time, from a heap of
//! events ([`world`]). Invariant checkers ([`invariants`]) run at every step. After the fault
//! phase, faults stop and a liveness phase must converge: every producer acknowledged, every
//! group settled with every partition owned, every member caught up, every request answered.
//!
//! Some seeds compact their main topics ([`Compaction`]): producers write keyed records over a
//! small key space with some tombstones, the broker's cleaner timer runs beside everything
//! else, and an [`Auditor`] reads the partitions from their log start again and again, so
//! that the checker sees what the cleaner removed.
//!
//! About a third of the seeds also run transactional producers and a read_committed reader
//! on a topic of their own ([`txn`]).
//!
//! A failure names its seed (`SIM_SEED=<n>`); running the seed again replays the same run,
//! which [`run`] proves by hashing everything the broker emitted ([`Outcome::trace`]).

pub mod clients;
pub mod consumer;
pub mod fuzz;
pub mod invariants;
pub mod net;
pub mod store;
pub mod txn;
pub mod world;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use kelp_core::codec::generated::ResponseBody;
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::{Message, Reader};
use kelp_core::mem_store::MemStore;
use kelp_core::time::{Duration, Instant};
use kelp_core::{Broker, Config, ConnId, Input, Now, Output};

use clients::{Admin, Auditor, ClassicMember, Io, MemberConfig, Model, Pending, Producer, View};
use consumer::ConsumerMember;
use invariants::{Checker, CompactionRules, Tp};
use net::{Net, NetFaults};
use store::{FaultStore, StoreFaults};
use world::{Event, Queue, SimRng, TraceHash};

/// The wall clock at virtual time zero.
const START_WALL_MS: i64 = 1_700_000_000_000;
/// Longest a liveness phase may take (virtual time) before the run fails.
const LIVENESS_LIMIT: Duration = Duration(120_000_000_000);
/// Most events one run may take (a runaway loop is a failure, not a hang).
const MAX_EVENTS: u64 = 3_000_000;
/// Most events at one instant of virtual time (more is a loop that makes no progress).
const MAX_EVENTS_AT_ONE_INSTANT: u64 = 100_000;

/// Everything a seed decides.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Main topics and their partition counts.
    pub topics: Vec<(String, i32)>,
    /// Producers: (batches, most records per batch, longest gap between batches in ms).
    pub producers: Vec<(u32, u64, u64)>,
    /// Group members.
    pub members: Vec<MemberConfig>,
    /// Whether the admin churns scratch topics.
    pub admin_churn: bool,
    /// Whether the admin deletes records (DeleteRecords) from the main topics.
    pub trim: bool,
    /// Network faults.
    pub net: NetFaults,
    /// Chance that a new connection is dropped by the network at some point.
    pub drop_rate: f64,
    /// Store faults.
    pub store: StoreFaults,
    /// Store outages during the fault phase.
    pub outages: u32,
    /// Broker crashes (restarts over the durable store) during the fault phase.
    pub crashes: u32,
    /// Wall-clock jumps.
    pub clock_jumps: u32,
    /// How long faults last.
    pub fault_phase: Duration,
    /// The broker's configuration.
    pub config: Config,
    /// The broker's seed.
    pub broker_seed: u64,
    /// Whether, and how, the main topics are compacted.
    pub compaction: Option<Compaction>,
    /// Whether the admin creates, writes, grows and deletes `r-<n>` topics (which
    /// subscription regexes match) while the groups run.
    pub regex_churn: bool,
    /// Whether, and how, transactional producers and a read_committed reader run.
    pub txn: Option<txn::TxnKnobs>,
}

/// How a seed's main topics are compacted.
#[derive(Clone, Debug)]
pub struct Compaction {
    /// `cleanup.policy`: `compact`, or `compact,delete` (retention too, when the seed's
    /// retention deletes).
    pub policy: &'static str,
    /// `segment.bytes`: small, so that segments close and become cleanable.
    pub segment_bytes: u64,
    /// `min.cleanable.dirty.ratio`.
    pub dirty_ratio: f64,
    /// `min.compaction.lag.ms`.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`, when set.
    pub max_lag_ms: Option<i64>,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// How many keys the producers' records spread over.
    pub keys: u64,
    /// The share of records that are tombstones.
    pub tombstones: f64,
}

impl Compaction {
    /// Drawn from `r`: one seed in four compacts.
    fn draw(r: &mut SimRng, retention: bool) -> Option<Self> {
        if !r.chance(0.25) {
            return None;
        }
        Some(Self {
            policy: if retention && r.chance(0.5) { "compact,delete" } else { "compact" },
            segment_bytes: r.range(100, 1_500),
            dirty_ratio: r.range(0, 9) as f64 / 10.0,
            min_lag_ms: if r.chance(0.5) { 0 } else { r.range(1, 3_000) as i64 },
            max_lag_ms: r.chance(0.3).then(|| r.range(100, 5_000) as i64),
            delete_retention_ms: r.range(0, 4_000) as i64,
            keys: r.range(1, 12),
            tombstones: if r.chance(0.7) { r.range(1, 25) as f64 / 100.0 } else { 0.0 },
        })
    }

    /// The main topics' config overrides.
    fn configs(&self) -> Vec<(String, String)> {
        let mut c = vec![
            ("cleanup.policy".to_owned(), self.policy.to_owned()),
            ("segment.bytes".to_owned(), self.segment_bytes.to_string()),
            ("min.cleanable.dirty.ratio".to_owned(), self.dirty_ratio.to_string()),
            ("min.compaction.lag.ms".to_owned(), self.min_lag_ms.to_string()),
            ("delete.retention.ms".to_owned(), self.delete_retention_ms.to_string()),
        ];
        if let Some(max) = self.max_lag_ms {
            c.push(("max.compaction.lag.ms".to_owned(), max.to_string()));
        }
        c
    }
}

impl Scenario {
    /// The scenario for `seed`: every knob is drawn, and each fault class is on or off as a
    /// whole (swarm testing: some runs are quiet so that rare interleavings get room).
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        let mut r = SimRng::new(seed);
        let ntopics = r.range(1, 3);
        let topics: Vec<(String, i32)> = (0..ntopics).map(|i| (format!("t{i}"), r.range(1, 4) as i32)).collect();
        let names: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
        let producers = (0..r.range(1, 3)).map(|_| (r.range(3, 40) as u32, r.range(1, 4), r.range(1, 200))).collect();
        let crash_rate = if r.chance(0.5) { r.range(1, 30) as f64 / 1000.0 } else { 0.0 };
        let leave_rate = if r.chance(0.3) { r.range(1, 20) as f64 / 1000.0 } else { 0.0 };
        let pause_rate = if r.chance(0.4) { r.range(1, 30) as f64 / 1000.0 } else { 0.0 };
        let static_members = r.chance(0.4);
        let mut members = Vec::new();
        for g in 0..r.range(0, 2) {
            let group = format!("g{g}");
            // Swarm: each group speaks one protocol, classic or KIP-848 (never both).
            let consumer_protocol = r.chance(0.5);
            for m in 0..r.range(1, 4) {
                let topics = if r.chance(0.8) {
                    names.clone()
                } else {
                    vec![names[r.below(names.len() as u64) as usize].clone()]
                };
                members.push(MemberConfig {
                    group: group.clone(),
                    topics,
                    all_topics: names.clone(),
                    instance: (static_members && r.chance(0.7)).then(|| format!("{group}-i{m}")),
                    session_ms: r.range(2_000, 10_000) as i32,
                    rebalance_ms: r.range(3_000, 15_000) as i32,
                    crash_rate,
                    leave_rate,
                    pause_rate,
                    max_wait_ms: r.range(0, 500) as i32,
                    consumer_protocol,
                    regex: None,
                });
            }
        }
        let net_faults = r.chance(0.6);
        let net = NetFaults {
            max_delay_ms: if net_faults { r.range(0, 30) } else { 1 },
            split_rate: if net_faults { r.range(0, 100) as f64 / 100.0 } else { 0.0 },
        };
        let drop_rate = if r.chance(0.4) { r.range(1, 40) as f64 / 100.0 } else { 0.0 };
        let store_faults = r.chance(0.6);
        let store = StoreFaults {
            max_run_delay_ms: if store_faults { r.range(0, 10) } else { 1 },
            max_done_delay_ms: if store_faults { r.range(0, 30) } else { 1 },
            fail_rate: if store_faults && r.chance(0.6) { r.range(1, 100) as f64 / 1000.0 } else { 0.0 },
            // Drawn below from a generator of its own, so that every other knob stays.
            lazy: false,
        };
        let outages = if r.chance(0.3) { r.range(1, 3) as u32 } else { 0 };
        let crashes = if r.chance(0.3) { r.range(1, 2) as u32 } else { 0 };
        let clock_jumps = if r.chance(0.2) { r.range(1, 3) as u32 } else { 0 };
        // Retention runs in every seed (often, so that its order is checked by the replay);
        // in some it deletes: short retention.ms over small segments.
        let retention = r.chance(0.25);
        let config = Config {
            auto_create_topics: false,
            group_initial_rebalance_delay: r.millis(0, 3000),
            group_min_session_timeout: Duration::from_millis(1000),
            max_fetch_sessions: r.range(1, 20) as usize,
            group_consumer_session_timeout: r.millis(3_000, 10_000),
            group_consumer_heartbeat_interval: r.millis(100, 1_000),
            retention_check_interval: r.millis(200, 3_000),
            retention_ms: if retention { r.range(500, 6_000) as i64 } else { Config::default().retention_ms },
            segment_bytes: if retention { r.range(100, 2_000) } else { Config::default().segment_bytes },
            ..Config::default()
        };
        Self {
            seed,
            topics,
            producers,
            members,
            admin_churn: r.chance(0.5),
            trim: r.chance(0.3),
            net,
            drop_rate,
            store,
            outages,
            crashes,
            clock_jumps,
            fault_phase: r.millis(2_000, 12_000),
            config,
            broker_seed: r.u64(),
            compaction: None,
            regex_churn: false,
            txn: txn::TxnKnobs::draw(seed),
        }
        .with_compaction()
        .with_lazy_durability()
        .with_regexes()
    }

    /// Regex subscriptions and topic churn, drawn from a generator of their own so that every
    /// other knob stays: in half of the KIP-848 groups each member subscribes by names only,
    /// by a regex only ([`consumer::REGEXES`]) or by both; in most seeds with a regex member
    /// (and a few others) the admin churns `r-<n>` topics.
    fn with_regexes(mut self) -> Self {
        let mut r = SimRng::new(self.seed ^ 0x4e6e_c5ab_7091_c5e5);
        let groups: BTreeSet<String> =
            self.members.iter().filter(|m| m.consumer_protocol).map(|m| m.group.clone()).collect();
        let regex_groups: BTreeSet<String> = groups.into_iter().filter(|_| r.chance(0.5)).collect();
        for m in self.members.iter_mut().filter(|m| regex_groups.contains(&m.group)) {
            match r.below(3) {
                0 => {}
                1 => {
                    m.topics.clear();
                    m.regex = Some(r.below(consumer::REGEXES.len() as u64) as usize);
                }
                _ => m.regex = Some(r.below(consumer::REGEXES.len() as u64) as usize),
            }
        }
        let regex_members = self.members.iter().any(|m| m.regex.is_some());
        self.regex_churn = r.chance(if regex_members { 0.8 } else { 0.1 });
        self
    }

    /// Whether the store makes appends durable only later (SeaweedMQ's way), drawn from a
    /// generator of its own so that adding it left every other knob of every seed as it was.
    fn with_lazy_durability(mut self) -> Self {
        let mut r = SimRng::new(self.seed ^ 0x1a2f_d0ab_1e00_0001);
        self.store.lazy = r.chance(0.4);
        self
    }

    /// Draws the compaction knobs from a generator of their own, so that adding them left
    /// every other knob of every seed as it was.
    fn with_compaction(mut self) -> Self {
        let mut r = SimRng::new(self.seed ^ 0xc0a1_e5ce_c0a1_e5ce);
        self.config.cleaner_backoff = r.millis(100, 2_000);
        self.compaction = Compaction::draw(&mut r, self.config.retention_ms < 60_000);
        self
    }
}

/// A finished run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Hash of everything the broker emitted, in order, and of every event's time.
    pub trace: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time the run took.
    pub sim_time: Duration,
    /// Records acknowledged.
    pub acked: u64,
    /// Records fetched and checked.
    pub checked: u64,
    /// KIP-848 partition ownerships taken (each checked against every other owner).
    pub handovers: u64,
    /// Fetches answered OFFSET_OUT_OF_RANGE below a DeleteRecords' log start (then reset).
    pub trimmed: u64,
    /// KIP-848 ownerships taken over from a zombie (see [`Checker::acquired`]).
    pub zombies: u64,
    /// Records that fetches skipped because compaction removed them.
    pub compacted: u64,
    /// KIP-848 groups checked at a stable point (every matched partition owned once, by a
    /// member that matches it).
    pub stable_848: u64,
    /// Topic deletions acknowledged.
    pub topics_deleted: u64,
    /// Members that subscribe with a regex (a figure of the scenario).
    pub regex_members: u64,
    /// Whether the admin churned `r-<n>` topics.
    pub regex_churn: bool,
    /// Transactions whose commit was acknowledged.
    pub txn_committed: u64,
    /// Transactions whose abort was acknowledged.
    pub txn_aborted: u64,
}

/// A failed run.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub what: String,
    /// The last events before it, for a first look.
    pub tail: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "SIM_SEED={} failed: {}", self.seed, self.what)?;
        for l in &self.tail {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// A member as the liveness check sees it: generation, positions, high watermarks, topics.
type MemberState = (i32, BTreeMap<Tp, i64>, BTreeMap<Tp, i64>, Vec<String>);

struct Client {
    model: Box<dyn Model>,
    conn: Option<ConnId>,
    inbox: BytesMut,
    pending: VecDeque<Pending>,
    next_corr: i32,
    wake_token: u64,
    wake_at: Option<Instant>,
    rng: SimRng,
}

/// The simulated world around one broker.
pub struct Sim {
    sc: Scenario,
    now: Instant,
    wall_skew_ms: i64,
    queue: Queue,
    rng: SimRng,
    broker: Broker,
    incarnation: u32,
    store: FaultStore,
    net: Net,
    clients: Vec<Client>,
    check: Checker,
    trace: TraceHash,
    faults_on: bool,
    faults_off_at: Instant,
    timer_token: u64,
    timer_at: Option<Instant>,
    closed: BTreeSet<ConnId>,
    events: u64,
    events_at_instant: u64,
    tail: VecDeque<String>,
    done: bool,
    /// KIP-848 groups whose members were all seen settled at the group epoch: (epoch, when).
    settled_848: BTreeMap<String, (i32, Instant)>,
    /// KIP-848 groups checked at a stable point.
    stable_848: u64,
    /// Keep a readable log of recent events (slower; for replays).
    pub verbose: bool,
    /// The trace hash after every event (for finding where two runs part).
    pub history: Option<Vec<u64>>,
    /// Stop with a failure after this many events (to look at a point of a run).
    pub stop_at: Option<u64>,
}

impl Sim {
    /// A world for `sc`.
    #[must_use]
    pub fn new(sc: Scenario) -> Self {
        let mut rng = SimRng::new(sc.seed ^ 0x5eed_5eed_5eed_5eed);
        let now = Instant(0);
        let broker = Broker::new(sc.config.clone(), sc.broker_seed, Now { mono: now, wall_ms: START_WALL_MS });
        let mut clients: Vec<Client> = Vec::new();
        let mut add = |model: Box<dyn Model>, rng: &mut SimRng| {
            clients.push(Client {
                model,
                conn: None,
                inbox: BytesMut::new(),
                pending: VecDeque::new(),
                next_corr: 1,
                wake_token: 0,
                wake_at: None,
                rng: rng.fork(),
            });
        };
        let compaction = sc.compaction.clone();
        let configs = compaction.as_ref().map(Compaction::configs).unwrap_or_default();
        let kip848: BTreeSet<String> =
            sc.members.iter().filter(|m| m.consumer_protocol).map(|m| m.group.clone()).collect();
        let admin = Admin::new(sc.topics.clone(), sc.admin_churn, sc.trim, 500)
            .with_configs(configs)
            .with_topic_churn(sc.regex_churn, kip848.into_iter().collect());
        add(Box::new(admin), &mut rng);
        let names: Vec<String> = sc.topics.iter().map(|(t, _)| t.clone()).collect();
        for (i, (budget, recs, gap)) in sc.producers.iter().enumerate() {
            let p = Producer::new(i, names.clone(), *budget, *recs, *gap);
            let p = match &compaction {
                Some(c) => p.keyed(c.keys, c.tombstones),
                None => p,
            };
            add(Box::new(p), &mut rng);
        }
        for (i, m) in sc.members.iter().enumerate() {
            if m.consumer_protocol {
                let session = sc.config.group_consumer_session_timeout;
                add(Box::new(ConsumerMember::new(i, m.clone(), session)), &mut rng);
            } else {
                add(Box::new(ClassicMember::new(i, m.clone())), &mut rng);
            }
        }
        if let Some(knobs) = &sc.txn {
            for model in txn::models(knobs) {
                add(model, &mut rng);
            }
        }
        if compaction.is_some() {
            let partitions = sc.topics.iter().flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p))).collect();
            add(Box::new(Auditor::new(partitions)), &mut rng);
        }
        // Retention deletes from the main topics only when their policy includes delete.
        let retention =
            sc.config.retention_ms < 60_000 && compaction.as_ref().is_none_or(|c| c.policy.contains("delete"));
        let store = FaultStore::new(MemStore::new(), sc.store);
        let net = Net::new(sc.net);
        let mut sim = Self {
            sc,
            now,
            wall_skew_ms: 0,
            queue: Queue::default(),
            rng,
            broker,
            incarnation: 0,
            store,
            net,
            clients,
            check: Checker::default(),
            trace: TraceHash::default(),
            faults_on: true,
            faults_off_at: Instant(0),
            timer_token: 0,
            timer_at: None,
            closed: BTreeSet::new(),
            events: 0,
            events_at_instant: 0,
            tail: VecDeque::new(),
            done: false,
            settled_848: BTreeMap::new(),
            stable_848: 0,
            verbose: false,
            history: None,
            stop_at: None,
        };
        sim.check.retention = retention;
        sim.check.compaction = compaction
            .as_ref()
            .map(|c| CompactionRules { min_lag_ms: c.min_lag_ms, delete_retention_ms: c.delete_retention_ms });
        sim.schedule_faults();
        for i in 0..sim.clients.len() {
            let at = sim.rng.millis(0, 50);
            sim.wake_client(i, Instant(0) + at);
        }
        sim.drain();
        sim
    }

    fn schedule_faults(&mut self) {
        let phase = self.sc.fault_phase;
        let at = |rng: &mut SimRng| Instant(rng.below(phase.0.max(1)));
        for _ in 0..self.sc.outages {
            let t = at(&mut self.rng);
            self.queue.push(t, Event::StoreOutage);
        }
        for _ in 0..self.sc.crashes {
            let t = at(&mut self.rng);
            self.queue.push(t, Event::BrokerCrash);
        }
        for _ in 0..self.sc.clock_jumps {
            let t = at(&mut self.rng);
            self.queue.push(t, Event::ClockJump);
        }
        self.queue.push(Instant(phase.0), Event::FaultsOff);
    }

    fn now(&self) -> Now {
        let wall = START_WALL_MS + i64::try_from(self.now.0 / 1_000_000).unwrap_or(0) + self.wall_skew_ms;
        Now { mono: self.now, wall_ms: wall }
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.verbose {
            let line = format!("{:?} {}", self.now, what());
            self.tail.push_back(line);
            if self.tail.len() > 300 {
                self.tail.pop_front();
            }
        }
    }

    /// Runs to the end: Ok when every invariant held and the liveness phase converged.
    pub fn run(mut self) -> Result<Outcome, Failure> {
        self.run_loop().map_err(|what| self.failure(what))?;
        Ok(Outcome {
            trace: self.trace.0,
            events: self.events,
            sim_time: Duration(self.now.0),
            acked: self.check.records_acked,
            checked: self.check.records_checked,
            handovers: self.check.handovers_848,
            trimmed: self.check.trimmed_fetches,
            zombies: self.check.zombies_848,
            compacted: self.check.compacted_away,
            stable_848: self.stable_848,
            topics_deleted: self.check.topics_deleted,
            regex_members: self.sc.members.iter().filter(|m| m.regex.is_some()).count() as u64,
            regex_churn: self.sc.regex_churn,
            txn_committed: self.check.txn.committed,
            txn_aborted: self.check.txn.aborted,
        })
    }

    fn run_loop(&mut self) -> Result<(), String> {
        while !self.done {
            let Some((at, ev)) = self.queue.pop() else {
                return Err("the event queue ran dry".to_owned());
            };
            debug_assert!(at >= self.now, "time went back");
            self.events_at_instant = if at > self.now { 0 } else { self.events_at_instant + 1 };
            if self.events_at_instant > MAX_EVENTS_AT_ONE_INSTANT {
                return Err(format!("no progress: {MAX_EVENTS_AT_ONE_INSTANT} events at {at:?}, the last {ev:?}"));
            }
            self.now = at.max(self.now);
            self.events += 1;
            if self.events > MAX_EVENTS {
                return Err(format!("more than {MAX_EVENTS} events"));
            }
            self.trace.num(self.now.0);
            self.step(ev);
            if let Some(h) = &mut self.history {
                h.push(self.trace.0);
            }
            if let Some(v) = self.check.violation.take() {
                return Err(v);
            }
            if let Some(v) = self.check.txn.violations.first() {
                return Err(v.clone());
            }
            if self.stop_at == Some(self.events) {
                return Err(format!("stopped after event {}", self.events));
            }
        }
        Ok(())
    }

    fn failure(&self, what: String) -> Failure {
        Failure { seed: self.sc.seed, what, tail: self.tail.iter().cloned().collect() }
    }

    fn step(&mut self, ev: Event) {
        self.note(|| format!("{ev:?}"));
        match ev {
            Event::ClientWake(i, token) => {
                if self.clients[i].wake_token == token {
                    self.clients[i].wake_at = None;
                    self.run_client(i, |m, io| m.wake(io));
                }
            }
            Event::NetToBroker(conn) => self.deliver_to_broker(conn),
            Event::NetToClient(conn) => self.deliver_to_client(conn),
            Event::NetDrop(conn) => {
                if self.net.links.contains_key(&conn) && self.faults_on {
                    self.note(|| format!("network drops {conn:?}"));
                    self.drop_link(conn, true);
                }
            }
            Event::StoreRun => {
                self.store.run_scheduled = false;
                if let Some((cmd, delay)) = self.store.run_next(self.now, &mut self.rng) {
                    self.queue.push(self.now + delay, Event::StoreDone(cmd, self.incarnation));
                }
                self.schedule_store_run();
            }
            Event::StoreDone(cmd, inc) => {
                if inc == self.incarnation
                    && let Some(result) = self.store.take_done(cmd)
                {
                    self.note(|| format!("store completes {cmd:?}: {}", short(&result)));
                    self.trace.num(cmd.0);
                    let now = self.now();
                    self.broker.handle_input(now, Input::Completed { cmd, result });
                    self.drain();
                }
            }
            Event::BrokerTimer(token) => {
                if token == self.timer_token {
                    self.timer_at = None;
                    let now = self.now();
                    self.broker.handle_input(now, Input::Tick);
                    self.drain();
                    // A Tick fires every due timer: one still due is a timer loop.
                    if let Some(at) = self.broker.poll_timeout()
                        && at <= self.now
                    {
                        self.check.fail(format!("a timer is still due at {at:?} right after a Tick at {:?}", self.now));
                    }
                }
            }
            Event::BrokerCrash => {
                if self.faults_on {
                    self.crash_broker();
                }
            }
            Event::StoreOutage => {
                if self.faults_on {
                    let d = self.rng.millis(50, 3000);
                    self.note(|| format!("store unavailable for {d:?}"));
                    self.store.outage(self.now + d);
                }
            }
            Event::ClockJump => {
                let jump = i64::try_from(self.rng.below(20_000)).unwrap_or(0) - 10_000;
                self.wall_skew_ms += jump;
                self.check.clock_slack_ms += (-jump).max(0);
                self.check.txn.forward = Duration(self.check.txn.forward.0 + Duration::from_millis(jump.max(0)).0);
            }
            Event::FaultsOff => self.faults_off(),
            Event::LivenessCheck => self.liveness(),
        }
    }

    // ---- broker --------------------------------------------------------------------------

    fn drain(&mut self) {
        while let Some(out) = self.broker.poll_output() {
            match out {
                Output::Send { conn, bytes } => {
                    if self.closed.contains(&conn) {
                        self.check.fail(format!("the broker sent bytes on {conn:?} after closing it"));
                        continue;
                    }
                    let Some(link) = self.net.links.get_mut(&conn) else {
                        // The peer is gone (the broker has not heard yet, or never will).
                        continue;
                    };
                    let mut h = TraceHash::default();
                    for b in &bytes {
                        self.trace.bytes(b);
                        h.bytes(b);
                        link.to_client.extend_from_slice(b);
                    }
                    self.note(|| {
                        format!(
                            "broker sends {} bytes on {conn:?} (hash {:x})",
                            bytes.iter().map(|b| b.len()).sum::<usize>(),
                            h.0
                        )
                    });
                    self.schedule_to_client(conn);
                }
                Output::Storage { cmd, command } => {
                    self.trace.num(cmd.0);
                    self.note(|| format!("broker emits {cmd:?} {}", short_cmd(&command)));
                    if let Err(e) = self.store.submit(cmd, command) {
                        self.check.fail(e);
                    }
                    self.schedule_store_run();
                }
                Output::Close { conn, reason } => {
                    self.note(|| format!("broker closes {conn:?}: {reason:?}"));
                    self.trace.num(conn.0);
                    self.closed.insert(conn);
                    if let Some(link) = self.net.links.get_mut(&conn) {
                        link.closing = true;
                        self.schedule_to_client(conn);
                    }
                }
                Output::PauseRead { conn } => self.pause_read(conn, true),
                Output::ResumeRead { conn } => self.pause_read(conn, false),
            }
        }
        if let Some(at) = self.broker.poll_timeout()
            && self.timer_at.is_none_or(|t| at < t)
        {
            self.timer_token += 1;
            self.timer_at = Some(at);
            self.queue.push(at.max(self.now), Event::BrokerTimer(self.timer_token));
        }
    }

    /// Back-pressure: the broker stops or starts reading `conn`. Pauses and resumes must
    /// alternate and never follow a close.
    fn pause_read(&mut self, conn: ConnId, pause: bool) {
        self.note(|| format!("broker {} reading {conn:?}", if pause { "stops" } else { "resumes" }));
        if self.closed.contains(&conn) {
            self.check.fail(format!("the broker paused or resumed {conn:?} after closing it"));
            return;
        }
        let Some(link) = self.net.links.get_mut(&conn) else { return };
        if link.paused == pause {
            self.check.fail(format!("{conn:?}: read paused = {pause} twice in a row"));
        }
        link.paused = pause;
        if !pause {
            self.schedule_to_broker(conn, Duration::ZERO);
        }
    }

    fn schedule_store_run(&mut self) {
        if !self.store.run_scheduled && self.store.has_queued() {
            self.store.run_scheduled = true;
            let d = self.store.run_delay(&mut self.rng);
            self.queue.push(self.now + d, Event::StoreRun);
        }
    }

    fn crash_broker(&mut self) {
        self.note(|| "broker crashes and restarts".to_owned());
        self.incarnation += 1;
        self.check.txn.broker_restarted();
        self.store.crash();
        let conns: Vec<ConnId> = self.net.links.keys().copied().collect();
        for c in conns {
            self.drop_link(c, false);
        }
        self.closed.clear();
        let seed = self.rng.u64();
        self.broker = Broker::new(self.sc.config.clone(), seed, self.now());
        self.timer_at = None;
        self.timer_token += 1;
        self.drain();
    }

    // ---- network -------------------------------------------------------------------------

    fn schedule_to_client(&mut self, conn: ConnId) {
        let d = self.net.delay(&mut self.rng);
        let Some(link) = self.net.links.get_mut(&conn) else { return };
        if !link.client_scheduled {
            link.client_scheduled = true;
            self.queue.push(self.now + d, Event::NetToClient(conn));
        }
    }

    fn schedule_to_broker(&mut self, conn: ConnId, extra: Duration) {
        let d = self.net.delay(&mut self.rng);
        let Some(link) = self.net.links.get_mut(&conn) else { return };
        if !link.broker_scheduled && !link.to_broker.is_empty() {
            link.broker_scheduled = true;
            self.queue.push(self.now + d + extra, Event::NetToBroker(conn));
        }
    }

    fn deliver_to_broker(&mut self, conn: ConnId) {
        let Some(link) = self.net.links.get_mut(&conn) else { return };
        link.broker_scheduled = false;
        if self.closed.contains(&conn) {
            link.to_broker.clear();
            return;
        }
        if link.paused {
            // Back-pressure: nothing is read until the broker resumes (`pause_read`).
            return;
        }
        let chunk = Net::take(self.net.faults.split_rate, &mut link.to_broker, &mut self.rng);
        self.note(|| format!("{} bytes reach the broker on {conn:?}", chunk.len()));
        let now = self.now();
        // Bytes handed over (the core keeps them) or lent (it copies them), mixed on one
        // connection; chosen by length, not by the RNG, so that seeds replay as before.
        if chunk.len().is_multiple_of(2) {
            self.broker.handle_input(now, Input::ReceivedOwned { conn, bytes: chunk });
        } else {
            self.broker.handle_input(now, Input::Received { conn, bytes: &chunk });
        }
        self.drain();
        self.schedule_to_broker(conn, Duration::ZERO);
    }

    fn deliver_to_client(&mut self, conn: ConnId) {
        let Some(link) = self.net.links.get_mut(&conn) else { return };
        link.client_scheduled = false;
        if link.to_client.is_empty() {
            if link.closing {
                self.drop_link(conn, false);
            }
            return;
        }
        let chunk = Net::take(self.net.faults.split_rate, &mut link.to_client, &mut self.rng);
        let more = !link.to_client.is_empty() || link.closing;
        let client = link.client;
        let n = chunk.len();
        let now = self.now();
        self.broker.handle_input(now, Input::Written { conn, bytes: n });
        self.drain();
        if more {
            self.schedule_to_client(conn);
        }
        let c = &mut self.clients[client];
        if c.conn != Some(conn) {
            return;
        }
        c.inbox.extend_from_slice(&chunk);
        self.read_responses(client);
    }

    /// Removes a link: the broker hears (if `tell_broker`) and the client loses its requests.
    fn drop_link(&mut self, conn: ConnId, tell_broker: bool) {
        let Some(link) = self.net.links.remove(&conn) else { return };
        if tell_broker && !self.closed.contains(&conn) {
            let now = self.now();
            self.broker.handle_input(now, Input::Closed { conn });
            self.drain();
        }
        self.closed.remove(&conn);
        let i = link.client;
        let c = &mut self.clients[i];
        if c.conn != Some(conn) {
            return;
        }
        c.conn = None;
        c.inbox.clear();
        let lost: Vec<Pending> = c.pending.drain(..).collect();
        self.run_client(i, |m, io| m.disconnected(io, &lost));
    }

    fn read_responses(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            let Some(size) = c.inbox.first_chunk::<4>().map(|b| i32::from_be_bytes(*b)) else { return };
            let Ok(size) = usize::try_from(size) else {
                return self.check.fail(format!("{}: negative response size", c.model.name()));
            };
            if c.inbox.len() < 4 + size {
                return;
            }
            c.inbox.advance(4);
            let frame = c.inbox.split_to(size).freeze();
            let Some(p) = c.pending.pop_front() else {
                return self.check.fail(format!("{}: a response to no request", c.model.name()));
            };
            let mut r = Reader::new(&frame);
            let header = match ResponseHeader::decode(&mut r, p.api.response_header_version(p.version)) {
                Ok(h) => h,
                Err(e) => return self.check.fail(format!("{}: bad response header: {e:?}", c.model.name())),
            };
            if header.correlation_id != p.corr {
                return self.check.fail(format!(
                    "{}: response with correlation id {} where {} ({:?}) was next: out of request order",
                    c.model.name(),
                    header.correlation_id,
                    p.corr,
                    p.api
                ));
            }
            let body = match ResponseBody::decode(p.api, &mut r, p.version) {
                Ok(b) => b,
                Err(e) => {
                    return self.check.fail(format!("{}: undecodable {:?} response: {e:?}", c.model.name(), p.api));
                }
            };
            self.note(|| format!("client {i} gets {:?} corr {}", p.api, p.corr));
            self.run_client(i, |m, io| m.response(io, &p, body));
        }
    }

    // ---- clients -------------------------------------------------------------------------

    fn wake_client(&mut self, i: usize, at: Instant) {
        let c = &mut self.clients[i];
        if c.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        c.wake_token += 1;
        c.wake_at = Some(at);
        self.queue.push(at.max(self.now), Event::ClientWake(i, c.wake_token));
    }

    fn run_client(&mut self, i: usize, f: impl FnOnce(&mut dyn Model, &mut Io<'_>)) {
        let now = self.now;
        let wall_ms = self.now().wall_ms;
        self.check.wall_ms = wall_ms;
        let faults_on = self.faults_on;
        let c = &mut self.clients[i];
        let mut io = Io {
            now,
            wall_ms,
            rng: &mut c.rng,
            check: &mut self.check,
            faults_on,
            connected: c.conn.is_some(),
            frames: Vec::new(),
            next_corr: &mut c.next_corr,
            wake: None,
            connect: false,
            crash: false,
        };
        f(c.model.as_mut(), &mut io);
        let (frames, wake, connect, crash) = (io.frames, io.wake, io.connect, io.crash);
        if let Some(conn) = c.conn {
            if let Some(link) = self.net.links.get_mut(&conn) {
                for (bytes, p) in frames {
                    link.to_broker.extend_from_slice(&bytes);
                    c.pending.push_back(p);
                }
            }
            self.schedule_to_broker(conn, Duration::ZERO);
        }
        if crash && let Some(conn) = self.clients[i].conn {
            self.note(|| format!("client {i} crashes"));
            self.drop_link(conn, true);
        }
        if connect && self.clients[i].conn.is_none() {
            self.connect(i);
        }
        if let Some(at) = wake {
            self.wake_client(i, at);
        }
    }

    fn connect(&mut self, i: usize) {
        let conn = self.net.open(i);
        self.clients[i].conn = Some(conn);
        self.clients[i].inbox.clear();
        self.clients[i].pending.clear();
        let peer: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 40_000 + (i as u16 % 20_000)));
        let now = self.now();
        self.broker.handle_input(now, Input::Accepted { conn, peer, origin: Default::default() });
        self.drain();
        if self.faults_on && self.rng.chance(self.sc.drop_rate) {
            let at = self.now + self.rng.millis(0, 10_000);
            self.queue.push(at, Event::NetDrop(conn));
        }
        self.wake_client(i, self.now);
    }

    // ---- phases --------------------------------------------------------------------------

    fn faults_off(&mut self) {
        self.note(|| "faults off".to_owned());
        self.faults_on = false;
        self.faults_off_at = self.now;
        self.net.faults_on = false;
        self.store.faults_on = false;
        self.store.end_outage();
        for i in 0..self.clients.len() {
            self.run_client(i, |m, io| m.faults_off(io));
        }
        self.queue.push(self.now + Duration::from_millis(200), Event::LivenessCheck);
    }

    /// What keeps the run from being finished, if anything.
    fn unsettled(&self) -> Option<String> {
        let mut groups: BTreeMap<String, Vec<MemberState>> = BTreeMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            let name = c.model.name();
            if let Some(p) = c.pending.front()
                && !matches!(p.api, kelp_core::codec::ApiKey::FETCH | kelp_core::codec::ApiKey::JOIN_GROUP)
                && self.now.since(p.sent_at) > Duration::from_secs(40)
            {
                return Some(format!("{name}: {:?} sent at {:?} still unanswered", p.api, p.sent_at));
            }
            match c.model.view() {
                View::Producer { unacked } if unacked > 0 => return Some(format!("{name}: {unacked} batches unacked")),
                View::Other { busy: true } => return Some(format!("{name}: busy")),
                View::Member { group, topics, active, generation, positions, hwms, .. } => {
                    if !active {
                        return Some(format!("client {i} {name}: not active"));
                    }
                    groups.entry(group).or_default().push((generation, positions, hwms, topics));
                }
                _ => {}
            }
        }
        if !self.store.is_quiet() {
            return Some("store still busy".to_owned());
        }
        if let Some(why) = self.check.txn.unsettled() {
            return Some(why);
        }
        for (g, members) in &groups {
            let gens: BTreeSet<i32> = members.iter().map(|m| m.0).collect();
            if gens.len() != 1 {
                return Some(format!("group {g}: members in generations {gens:?}"));
            }
            if self.sc.members.iter().any(|m| m.consumer_protocol && &m.group == g) {
                // KIP-848: every member at the group epoch (the target assignment's).
                let epoch = self.broker.consumer_group_epoch(g);
                if epoch.is_none_or(|e| !gens.contains(&e)) {
                    return Some(format!("group {g}: member epochs {gens:?}, group epoch {epoch:?}"));
                }
            }
            let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| m.3.iter()).collect();
            let mut owned: BTreeSet<&Tp> = BTreeSet::new();
            for (_, positions, hwms, _) in members {
                for (tp, pos) in positions {
                    if !owned.insert(tp) {
                        return Some(format!("group {g}: {tp:?} owned twice"));
                    }
                    let need = self.check.acked_end(tp).max(hwms.get(tp).copied().unwrap_or(0));
                    if *pos < need {
                        return Some(format!("group {g}: {tp:?} at {pos}, behind {need}"));
                    }
                }
            }
            for (t, n) in &self.sc.topics {
                if subscribed.contains(t) {
                    for p in 0..*n {
                        if !owned.contains(&(t.clone(), p)) {
                            return Some(format!("group {g}: {t}-{p} owned by nobody"));
                        }
                    }
                }
            }
        }
        None
    }

    /// The KIP-848 groups at a stable point, once [`Sim::unsettled`] finds nothing left: each
    /// member active at the group epoch E. The check waits until (1) an earlier liveness check
    /// saw every member settled at the same E (time t0), so that nothing was being revoked
    /// then; (2) every member has had a heartbeat sent after t0 answered, so that each holds
    /// its whole target (what another member held at t0 was released by then); (3) one of
    /// those heartbeats was sent after the admin's latest topic listing arrived: the broker
    /// matched the regexes against the topics the listing shows (a change in between would
    /// have moved the group epoch past E). Then every partition of every listed topic that
    /// some member's subscription matches (names, or its regex against the whole name) must
    /// be owned by exactly one member, a member that matches it, and no member may own a
    /// partition of a topic it does not match or that does not exist. Returns whether every
    /// KIP-848 group has been checked (the run may end).
    fn stable_848(&mut self) -> bool {
        let mut groups: BTreeMap<String, Vec<Settled>> = BTreeMap::new();
        for c in &self.clients {
            if let View::Member { group, topics, regex, heard, positions, member_id, .. } = c.model.view()
                && self.sc.members.iter().any(|m| m.consumer_protocol && m.group == group)
            {
                let owned = positions.into_keys().collect();
                let m = Settled { name: c.model.name(), names: topics, regex, heard, owned, member_id };
                groups.entry(group).or_default().push(m);
            }
        }
        let mut all = true;
        for (g, members) in groups {
            let Some(epoch) = self.broker.consumer_group_epoch(&g) else { return false };
            let t0 = match self.settled_848.get(&g) {
                Some((e, t0)) if *e == epoch => *t0,
                _ => {
                    self.settled_848.insert(g, (epoch, self.now));
                    all = false;
                    continue;
                }
            };
            // No member the simulator no longer runs (a crashed process not fenced yet, a
            // static member that left for now) may be in the group: it would hold partitions.
            let ids: BTreeSet<String> = members.iter().map(|m| m.member_id.clone()).collect();
            if !self.check.described.get(&g).is_some_and(|(at, e, m)| *at > t0 && *e == epoch && *m == ids) {
                all = false;
                continue;
            }
            let latest = members.iter().map(|m| m.heard).max().unwrap_or(Instant(0));
            let listing = self.check.listing.clone();
            let Some((listed_at, topics)) = listing.filter(|(at, _)| *at < latest) else {
                all = false;
                continue;
            };
            if members.iter().any(|m| m.heard <= t0) {
                all = false;
                continue;
            }
            if let Err(why) = stable_assignment(&members, &topics) {
                self.check.fail(format!(
                    "group {g} stable at epoch {epoch} (settled since {t0:?}, topics listed at {listed_at:?}): {why}"
                ));
                return false;
            }
            self.stable_848 += 1;
        }
        all
    }

    fn liveness(&mut self) {
        match self.unsettled() {
            None if self.stable_848() => {
                self.check.txn.settled();
                self.done = true;
            }
            None => self.queue.push(self.now + Duration::from_millis(250), Event::LivenessCheck),
            Some(why) if self.now.since(self.faults_off_at) > LIVENESS_LIMIT => {
                self.check.fail(format!("liveness: not settled {LIVENESS_LIMIT:?} after faults stopped: {why}"));
            }
            Some(_) => {
                self.settled_848.clear();
                self.queue.push(self.now + Duration::from_millis(250), Event::LivenessCheck);
            }
        }
    }
}

/// A settled KIP-848 member, for the stable-group check.
struct Settled {
    name: String,
    /// Subscribed topic names.
    names: Vec<String>,
    /// Subscription regex (an index into [`consumer::REGEXES`]).
    regex: Option<usize>,
    /// When its last successful heartbeat was sent.
    heard: Instant,
    owned: BTreeSet<Tp>,
    member_id: String,
}

impl Settled {
    /// Whether its subscription matches `topic` (a name, or its regex the whole name).
    fn matches(&self, topic: &str) -> bool {
        self.names.iter().any(|n| n == topic) || self.regex.is_some_and(|r| (consumer::REGEXES[r].1)(topic))
    }
}

/// The stable-group rule for one KIP-848 group (see [`Sim::stable_848`]); `topics` is every
/// topic there is.
fn stable_assignment(members: &[Settled], topics: &BTreeMap<String, i32>) -> Result<(), String> {
    let mut owner: BTreeMap<&Tp, &str> = BTreeMap::new();
    for m in members {
        for tp in &m.owned {
            if topics.get(&tp.0).is_none_or(|n| tp.1 >= *n) {
                return Err(format!("{} owns {tp:?}, which does not exist", m.name));
            }
            if !m.matches(&tp.0) {
                let re = m.regex.map(|r| consumer::REGEXES[r].0);
                return Err(format!(
                    "{} owns {tp:?}, which its subscription (names {:?}, regex {re:?}) does not match",
                    m.name, m.names
                ));
            }
            if let Some(other) = owner.insert(tp, &m.name) {
                return Err(format!("{tp:?} owned by both {other} and {}", m.name));
            }
        }
    }
    for (t, n) in topics {
        let Some(m) = members.iter().find(|m| m.matches(t)) else { continue };
        for p in 0..*n {
            if !owner.contains_key(&(t.clone(), p)) {
                return Err(format!("{t}-{p}, which {}'s subscription matches, is owned by nobody", m.name));
            }
        }
    }
    Ok(())
}

fn short(c: &kelp_core::Completion) -> String {
    match c {
        kelp_core::Completion::Failed(e) => format!("failed {e:?}"),
        kelp_core::Completion::Read { batches } => format!("read {} chunks", batches.len()),
        other => {
            let mut s = String::new();
            let _ = write!(s, "{other:?}");
            s.truncate(40);
            s
        }
    }
}

fn short_cmd(c: &kelp_core::Command) -> String {
    match c {
        kelp_core::Command::Append { partition, base_offset, last_offset, .. } => {
            format!("append p{} {base_offset}..={last_offset}", partition.partition)
        }
        other => {
            let mut s = format!("{other:?}");
            s.truncate(60);
            s
        }
    }
}

/// Runs `seed` to the end, catching panics (a broken assertion in the core is a failure too).
pub fn run_seed(seed: u64, verbose: bool) -> Result<Outcome, Failure> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut sim = Sim::new(Scenario::from_seed(seed));
        sim.verbose = verbose;
        sim.stop_at = std::env::var("SIM_STOP").ok().and_then(|s| s.parse().ok());
        sim.run()
    }));
    match r {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            Err(Failure { seed, what: format!("panic: {msg}"), tail: Vec::new() })
        }
    }
}

/// The trace hash after each event of a run of `seed` (up to a failure or panic).
fn history(seed: u64) -> Vec<u64> {
    let mut sim = Sim::new(Scenario::from_seed(seed));
    sim.history = Some(Vec::new());
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run_loop()));
    sim.history.take().unwrap_or_default()
}

/// Runs `seed` twice and checks the two runs are identical.
pub fn run_twice(seed: u64) -> Result<Outcome, Failure> {
    let a = run_seed(seed, false)?;
    let b = run_seed(seed, false)?;
    if a != b {
        let (h1, h2) = (history(seed), history(seed));
        let first = h1.iter().zip(&h2).position(|(x, y)| x != y).map_or(h1.len().min(h2.len()), |i| i + 1);
        return Err(Failure {
            seed,
            what: format!(
                "not deterministic: trace {:#x} then {:#x}; the runs part at event {first} (SIM_STOP={first} SIM_VERBOSE=1 shows it)",
                a.trace, b.trace
            ),
            tail: Vec::new(),
        });
    }
    Ok(a)
}

/// Seeds from `SIM_SEED=<n>` or `SIM_SEEDS=a..b`, else `default`.
#[must_use]
pub fn seeds_from_env(default: std::ops::Range<u64>) -> std::ops::Range<u64> {
    if let Ok(s) = std::env::var("SIM_SEED")
        && let Ok(n) = s.trim().parse::<u64>()
    {
        return n..n + 1;
    }
    if let Ok(s) = std::env::var("SIM_SEEDS")
        && let Some((a, b)) = s.trim().split_once("..")
        && let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>())
    {
        return a..b;
    }
    default
}
