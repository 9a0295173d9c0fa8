//! A fault-injecting store around [`MemStore`].
//!
//! Commands run one at a time in the order the broker emitted them (so one partition's
//! commands run in order, as the driver contract requires), each at a random later time; their
//! completions then come back after independent random delays, so completions are reordered.
//! A command may fail without effect, and during an outage every command fails; half the
//! failed appends are stored all the same and report a timeout (an unknown outcome, which the
//! broker resolves by re-synchronising the partition). A command has
//! taken effect, and is durable, once it has run: a crash loses what had not run yet and every
//! completion not yet delivered, and the restarted broker recovers from exactly what ran.
//!
//! With `lazy` durability (SeaweedMQ's way) appends answer [`Completion::Stored`] and become
//! durable only when an [`Command::AwaitDurable`] for their partition runs (or the partition is
//! recovered); an outage, and an `AwaitDurable` that fails, lose what was not durable yet, as a
//! restarted SeaweedMQ broker loses what it had not flushed.

use std::collections::{HashMap, HashSet, VecDeque};

use kelp_core::io::StorageError;
use kelp_core::mem_store::MemStore;
use kelp_core::time::{Duration, Instant};
use kelp_core::{CmdId, Command, Completion};

use super::world::SimRng;

/// How the store misbehaves (chosen per seed).
#[derive(Clone, Copy, Debug)]
pub struct StoreFaults {
    /// Longest wait before a queued command runs (ms).
    pub max_run_delay_ms: u64,
    /// Longest wait between running a command and reporting it (ms).
    pub max_done_delay_ms: u64,
    /// Chance that a command fails without effect.
    pub fail_rate: f64,
    /// Whether appends are durable only later (see the module docs).
    pub lazy: bool,
}

/// The store, its queue and its completions in flight.
#[derive(Debug)]
pub struct FaultStore {
    /// What has run: the durable state.
    pub mem: MemStore,
    queue: VecDeque<(CmdId, Command)>,
    done: HashMap<CmdId, Completion>,
    /// Every command id ever emitted by the current broker (each must be new).
    seen: HashSet<CmdId>,
    /// While set, every command fails with `Unavailable`.
    unavailable_until: Instant,
    /// Under lazy durability: each partition's durable end.
    durable: HashMap<kelp_core::io::PartitionKey, i64>,
    /// Whether a run is scheduled.
    pub run_scheduled: bool,
    /// Faults on or off.
    pub faults: StoreFaults,
    /// Whether faults are active (off in the liveness phase).
    pub faults_on: bool,
}

impl FaultStore {
    /// A store over `mem`.
    #[must_use]
    pub fn new(mem: MemStore, faults: StoreFaults) -> Self {
        Self {
            mem,
            queue: VecDeque::new(),
            done: HashMap::new(),
            seen: HashSet::new(),
            unavailable_until: Instant(0),
            durable: HashMap::new(),
            run_scheduled: false,
            faults,
            faults_on: true,
        }
    }

    /// Queues a command. Errs if the broker reused a command id.
    pub fn submit(&mut self, cmd: CmdId, command: Command) -> Result<(), String> {
        if !self.seen.insert(cmd) {
            return Err(format!("the broker emitted {cmd:?} twice"));
        }
        self.queue.push_back((cmd, command));
        Ok(())
    }

    /// Whether commands are waiting to run.
    #[must_use]
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// How long until the next command runs.
    pub fn run_delay(&self, rng: &mut SimRng) -> Duration {
        let max = if self.faults_on { self.faults.max_run_delay_ms } else { 1 };
        rng.millis(0, max)
    }

    /// Makes every command fail until `until`; under lazy durability the store first loses
    /// whatever was not durable.
    pub fn outage(&mut self, until: Instant) {
        self.unavailable_until = until;
        if self.faults.lazy {
            let lost: Vec<(kelp_core::io::PartitionKey, i64)> = self.durable.iter().map(|(k, e)| (*k, *e)).collect();
            for (key, end) in lost {
                let _ = self.mem.truncate(key, end);
            }
        }
    }

    /// Ends any outage (the liveness phase).
    pub fn end_outage(&mut self) {
        self.unavailable_until = Instant(0);
    }

    /// Everything the store holds of `key` is durable from now on.
    fn flush(&mut self, key: kelp_core::io::PartitionKey) -> i64 {
        let end = self.mem.end(key);
        self.durable.insert(key, end);
        end
    }

    /// Runs `command` under lazy durability, where it differs from [`MemStore::execute`].
    fn execute_lazy(&mut self, command: Command) -> Completion {
        match command {
            Command::Append { partition, .. } => {
                self.durable.entry(partition).or_insert_with(|| self.mem.end(partition));
                match self.mem.execute(command) {
                    Completion::Done => Completion::Stored,
                    other => other,
                }
            }
            Command::AwaitDurable { partition, .. } => Completion::Durable { end: self.flush(partition) },
            Command::RecoverPartition { partition, .. } => {
                self.flush(partition);
                self.mem.execute(command)
            }
            Command::Recover => {
                let keys: Vec<_> = self.durable.keys().copied().collect();
                for k in keys {
                    self.flush(k);
                }
                self.mem.execute(command)
            }
            Command::DeleteTopic { topic_id } => {
                self.durable.retain(|k, _| k.topic_id != topic_id);
                self.mem.execute(command)
            }
            other => self.mem.execute(other),
        }
    }

    /// Runs the next queued command; returns its id and how long until it is reported.
    pub fn run_next(&mut self, now: Instant, rng: &mut SimRng) -> Option<(CmdId, Duration)> {
        let (cmd, command) = self.queue.pop_front()?;
        let fail = self.faults_on && (now < self.unavailable_until || rng.chance(self.faults.fail_rate));
        let result = if !fail && self.faults.lazy {
            self.execute_lazy(command)
        } else if !fail {
            self.mem.execute(command)
        } else if let Command::AwaitDurable { partition, .. } = command
            && self.faults.lazy
        {
            // The store restarted and lost what was not durable.
            if let Some(end) = self.durable.get(&partition).copied() {
                let _ = self.mem.truncate(partition, end);
            }
            Completion::Failed(StorageError::Unavailable)
        } else if matches!(command, Command::Append { .. }) && rng.chance(0.5) {
            // The store lost track of an append it did store (a timeout after the write).
            let _ = self.mem.execute(command);
            Completion::Failed(StorageError::Timeout)
        } else {
            Completion::Failed(StorageError::Unavailable)
        };
        self.done.insert(cmd, result);
        let max = if self.faults_on { self.faults.max_done_delay_ms } else { 1 };
        Some((cmd, rng.millis(0, max)))
    }

    /// Takes the completion of `cmd` for delivery (once).
    pub fn take_done(&mut self, cmd: CmdId) -> Option<Completion> {
        self.done.remove(&cmd)
    }

    /// A crash: commands not run are lost, and so are completions not delivered.
    pub fn crash(&mut self) {
        self.queue.clear();
        self.done.clear();
        self.seen.clear();
        self.run_scheduled = false;
    }

    /// Nothing queued, nothing to report.
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        self.queue.is_empty() && self.done.is_empty()
    }
}
