//! The effect sink handlers write to, and the tables it keeps for the broker: parked jobs,
//! storage commands in flight and timers.
//!
//! A handler never touches a connection or the output queue. It asks for replies, storage
//! commands, closes and timers here; [`crate::broker::Broker`] drains the queue after every
//! call into the handlers and carries each effect out in order. Storage commands get their
//! id at once (a partition tracks the append it is waiting for), and the id's owner is
//! remembered so the completion finds its way back.

use std::collections::VecDeque;

use bytes::Bytes;
use hashbrown::HashMap;

use super::Job;
use crate::codec::KStr;
use crate::codec::generated::ResponseBody;
use crate::io::{CloseReason, CmdId, Command, ConnId, PartitionKey};
use crate::request::Req;
use crate::state::JobId;
use crate::time::{Instant, TimerTable};

/// Who is waiting for a storage command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmdOwner {
    /// The start-up recovery.
    Recover,
    /// A partition append (the partition tracks it; jobs wait on the high watermark).
    Append(PartitionKey),
    /// Part `part` of a parked job.
    Job {
        /// The job.
        job: JobId,
        /// Its part.
        part: usize,
    },
    /// A retention check of one partition.
    Retain(PartitionKey),
    /// A log cleaner pass over one partition.
    Clean(PartitionKey),
    /// Re-learning a partition's end after an append with an unknown outcome.
    Resync(PartitionKey),
    /// Waiting for a partition's stored records to become durable.
    Durable(PartitionKey),
    /// Storing a partition's new leader epoch history before it accepts a truncated end.
    Epochs(PartitionKey),
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
    /// The periodic retention check ([`super::retention`]).
    Retention,
    /// The log cleaner's periodic look at compacted partitions ([`super::cleaning`]).
    Cleaner,
    /// Ask the store to recover again after it failed.
    RecoverRetry,
    /// Ask the store for a partition's end again ([`super::resync`]).
    Resync(PartitionKey),
    /// An acks=-1 produce's `timeout_ms` ran out before its records were durable.
    ProduceTimeout(JobId),
    /// The transaction coordinator's periodic look for transactions past their timeout.
    TxnTimeouts,
    /// Markers of a transaction that could not be written are tried again.
    TxnMarkers(JobId),
}

/// How a request is answered.
///
/// Not boxed although `Body` is large: nearly every effect is a reply, and a box would cost
/// an allocation per response for a value that lives only until the broker encodes it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Reply {
    /// A response body the codec encodes.
    Body(ResponseBody),
    /// A response body encoded already (formats the codec does not generate).
    Raw(Bytes),
    /// No response at all (acks=0 produce); the request's slot is freed.
    Nothing,
    /// A size-prefixed frame with no response header: a SASL token after a v0 handshake.
    Bare(Bytes),
}

/// One thing for the broker to do, in the order handlers asked.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Answer a request, in its turn on its connection.
    Reply(Req, Reply),
    /// Send a storage command (its owner is already recorded).
    Storage(CmdId, Command),
    /// Close a connection.
    Close(ConnId, CloseReason),
    /// Remember the software a client reported (ApiVersions v3+, KIP-511).
    ClientSoftware(ConnId, KStr, KStr),
}

/// The effect sink, with the tables behind it.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    queue: VecDeque<Effect>,
    owners: HashMap<CmdId, CmdOwner>,
    next_cmd: u64,
    /// Deadlines, each firing a [`Timer`].
    pub timers: TimerTable<Timer>,
    /// Parked requests.
    pub jobs: HashMap<JobId, Job>,
    next_job: u64,
}

impl Effects {
    /// Answers `req` with `body`.
    pub(crate) fn respond(&mut self, req: Req, body: ResponseBody) {
        self.queue.push_back(Effect::Reply(req, Reply::Body(body)));
    }

    /// Answers `req` with a body encoded already.
    pub(crate) fn respond_raw(&mut self, req: Req, body: Bytes) {
        self.queue.push_back(Effect::Reply(req, Reply::Raw(body)));
    }

    /// Answers `req` with a bare size-prefixed frame (no response header).
    pub(crate) fn respond_bare(&mut self, req: Req, body: Bytes) {
        self.queue.push_back(Effect::Reply(req, Reply::Bare(body)));
    }

    /// Marks `req` as answered with nothing (acks=0 produce).
    pub(crate) fn respond_nothing(&mut self, req: Req) {
        self.queue.push_back(Effect::Reply(req, Reply::Nothing));
    }

    /// Closes `conn`: nothing more is read from it or sent to it.
    pub(crate) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.queue.push_back(Effect::Close(conn, reason));
    }

    /// Records the client software `conn` reported.
    pub(crate) fn client_software(&mut self, conn: ConnId, name: KStr, version: KStr) {
        self.queue.push_back(Effect::ClientSoftware(conn, name, version));
    }

    /// Sends a storage command owned by `owner`.
    pub(crate) fn storage(&mut self, owner: CmdOwner, command: Command) -> CmdId {
        let cmd = self.reserve_cmd(owner);
        self.emit_cmd(cmd, command);
        cmd
    }

    /// Takes a command id for `owner` before the command itself can be built.
    pub(crate) fn reserve_cmd(&mut self, owner: CmdOwner) -> CmdId {
        let cmd = CmdId(self.next_cmd);
        self.next_cmd += 1;
        self.owners.insert(cmd, owner);
        cmd
    }

    /// Sends a command whose id was reserved.
    pub(crate) fn emit_cmd(&mut self, cmd: CmdId, command: Command) {
        debug_assert!(self.owners.contains_key(&cmd), "{cmd:?} was not reserved");
        self.queue.push_back(Effect::Storage(cmd, command));
    }

    /// Arms (or re-arms) `timer` for `at`.
    pub(crate) fn arm(&mut self, timer: Timer, at: Instant) {
        self.timers.arm(timer, at);
    }

    /// Disarms `timer`.
    pub(crate) fn cancel(&mut self, timer: &Timer) {
        self.timers.cancel(timer);
    }

    /// Parks a job; it resumes through [`super::job_completed`] and timers.
    pub(crate) fn park(&mut self, job: Job) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        self.jobs.insert(id, job);
        id
    }

    /// The next effect to carry out.
    pub(crate) fn pop(&mut self) -> Option<Effect> {
        self.queue.pop_front()
    }

    /// The owner of a completed command, forgotten as it is returned.
    pub(crate) fn take_owner(&mut self, cmd: CmdId) -> Option<CmdOwner> {
        self.owners.remove(&cmd)
    }

    /// Storage commands sent and not yet completed.
    pub(crate) fn commands_in_flight(&self) -> usize {
        self.owners.len()
    }

    /// Every reply asked for so far, taken out of the queue (for handler tests).
    #[cfg(test)]
    pub(crate) fn take_replies(&mut self) -> Vec<(Req, ResponseBody)> {
        let mut out = Vec::new();
        let mut rest = VecDeque::new();
        for e in self.queue.drain(..) {
            match e {
                Effect::Reply(req, Reply::Body(body)) => out.push((req, body)),
                other => rest.push_back(other),
            }
        }
        self.queue = rest;
        out
    }

    /// Every storage command asked for so far, taken out of the queue (for handler tests).
    #[cfg(test)]
    pub(crate) fn take_commands(&mut self) -> Vec<(CmdId, CmdOwner, Command)> {
        let mut out = Vec::new();
        let mut rest = VecDeque::new();
        for e in self.queue.drain(..) {
            match e {
                Effect::Storage(cmd, command) => out.push((cmd, self.owners[&cmd], command)),
                other => rest.push_back(other),
            }
        }
        self.queue = rest;
        out
    }
}
