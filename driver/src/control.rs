//! How other threads reach a driver's loop, and the graceful stop.
//!
//! A [`Control`] (cloned to the admin endpoint and the signal handler) asks for a [`Snapshot`]
//! or for the stop; storage backends report completions from their own threads. All of it lands
//! in the loop's [`Mailbox`], and each arrival calls the driver's [`Wake`] (a `mio::Waker`, a
//! `tokio::sync::Notify`), so that a loop waiting on sockets and timers comes round to read it.
//! In-process connections ([`Control::connect_local`]) report to the loop the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant as StdInstant};

use kelp_core::{Broker, CmdId, Completion, ConnId};

use crate::local::{self, LOCAL_CONN_BASE, LocalConn, LocalEvent};

/// Wakes the driver's loop, from any thread.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// What the loop reports to [`Control::snapshot`].
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Requests are served: the store has recovered and no stop has begun.
    pub serving: bool,
    /// Every metric in Prometheus text format (empty unless asked for).
    pub metrics: String,
}

/// A query: whether to render metrics, and where to answer.
type Query = (bool, SyncSender<Snapshot>);

/// Asks a running server for its state or to stop, from any thread.
#[derive(Clone)]
pub struct Control {
    queries: Sender<Query>,
    stop: Arc<AtomicBool>,
    wake: Wake,
    local: Sender<LocalEvent>,
    /// The number of the next local connection, above [`LOCAL_CONN_BASE`].
    next_local: Arc<AtomicU64>,
}

impl core::fmt::Debug for Control {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Control").field("stop", &self.stop.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Control {
    /// The server's state, with its metrics rendered when `metrics` is set; `None` once the
    /// server has stopped, or if it does not answer within `timeout`. Blocks: call it from a
    /// thread other than the loop's.
    #[must_use]
    pub fn snapshot(&self, metrics: bool, timeout: Duration) -> Option<Snapshot> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.queries.send((metrics, tx)).ok()?;
        (self.wake)();
        rx.recv_timeout(timeout).ok()
    }

    /// Asks the server to stop gracefully (see [`Mailbox::stop_begins`]); it returns from its
    /// `serve` soon after.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        (self.wake)();
    }

    /// Opens an in-process connection to the broker (see [`crate::local`]): a Kafka client in
    /// this process talks through it as through a socket, from any thread or task. `None`
    /// once a stop was asked for or the server has stopped. The loop may still refuse it
    /// (too many connections, or the stop began meanwhile): then it reads as closed.
    #[must_use]
    pub fn connect_local(&self) -> Option<LocalConn> {
        if self.stop.load(Ordering::Acquire) {
            return None;
        }
        let n = self.next_local.fetch_add(1, Ordering::Relaxed);
        local::open(ConnId(LOCAL_CONN_BASE + n), &self.local, &self.wake)
    }
}

/// The loop's end of [`Control`] and of the storage completion channel, and the stop's state.
pub struct Mailbox {
    done_tx: Sender<(CmdId, Completion)>,
    done: Receiver<(CmdId, Completion)>,
    queries_tx: Sender<Query>,
    queries: Receiver<Query>,
    local_tx: Sender<LocalEvent>,
    local: Receiver<LocalEvent>,
    next_local: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    wake: Wake,
    grace: Duration,
    /// Set once the stop has begun: when the grace ends.
    grace_end: Option<StdInstant>,
}

impl core::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mailbox").field("grace_end", &self.grace_end).finish_non_exhaustive()
    }
}

impl Mailbox {
    /// A mailbox whose arrivals call `wake`; a stop waits at most `grace` for the requests in
    /// flight.
    #[must_use]
    pub fn new(wake: Wake, grace: Duration) -> Self {
        let (done_tx, done) = mpsc::channel();
        let (queries_tx, queries) = mpsc::channel();
        let (local_tx, local) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let next_local = Arc::new(AtomicU64::new(0));
        Self { done_tx, done, queries_tx, queries, local_tx, local, next_local, stop, wake, grace, grace_end: None }
    }

    /// A handle for other threads.
    #[must_use]
    pub fn control(&self) -> Control {
        Control {
            queries: self.queries_tx.clone(),
            stop: self.stop.clone(),
            wake: self.wake.clone(),
            local: self.local_tx.clone(),
            next_local: self.next_local.clone(),
        }
    }

    /// Where a store reports a finished command, from any thread (a `kelp_storage::Sink`
    /// once wrapped in an `Arc`). After the loop has gone, reports are dropped.
    pub fn completer(&self) -> impl Fn(CmdId, Completion) + Send + Sync + 'static {
        let (tx, wake) = (self.done_tx.clone(), self.wake.clone());
        move |cmd, result| {
            if tx.send((cmd, result)).is_ok() {
                wake();
            }
        }
    }

    /// The next storage completion that has arrived.
    #[must_use]
    pub fn completion(&self) -> Option<(CmdId, Completion)> {
        self.done.try_recv().ok()
    }

    /// The next report from a local connection (read by `LocalConns::next_input`).
    pub(crate) fn local_event(&self) -> Option<LocalEvent> {
        self.local.try_recv().ok()
    }

    /// Answers every query that has arrived. The server is serving while the broker is ready
    /// and no stop has begun.
    pub fn answer_queries(&self, broker: &Broker) {
        while let Ok((metrics, reply)) = self.queries.try_recv() {
            let mut text = String::new();
            if metrics {
                broker.write_metrics(&mut text);
            }
            let serving = broker.is_ready() && !self.is_stopping();
            // The asker may have given up waiting.
            let _ = reply.try_send(Snapshot { serving, metrics: text });
        }
    }

    /// Whether a stop was asked for and begins now (true once): the driver then accepts no
    /// more connections, and reads and drops what connections send from then on (so that
    /// closing them later sends FIN, not RST, and the responses still queued reach their
    /// clients). The loop goes on until [`Mailbox::finished`].
    pub fn stop_begins(&mut self, connections: usize) -> bool {
        if self.grace_end.is_some() || !self.stop.load(Ordering::Acquire) {
            return false;
        }
        tracing::info!(connections, "stopping: finishing the requests in flight");
        self.grace_end = Some(StdInstant::now() + self.grace);
        true
    }

    /// Whether a stop has begun.
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.grace_end.is_some()
    }

    /// When the stop's grace ends, once it has begun: the loop must come round by then.
    #[must_use]
    pub fn grace_end(&self) -> Option<StdInstant> {
        self.grace_end
    }

    /// Whether the loop is done: a stop has begun, and every request read has been answered
    /// and its response written (`Broker::is_quiescent`), or the grace has passed.
    #[must_use]
    pub fn finished(&self, broker: &Broker) -> bool {
        let Some(end) = self.grace_end else { return false };
        if broker.is_quiescent() {
            return true;
        }
        let over = StdInstant::now() >= end;
        if over {
            tracing::warn!(grace = ?self.grace, "stopping: requests still in flight after the grace");
        }
        over
    }
}
