//! The tokio driver for kelp's sans-IO broker.
//!
//! One task owns the [`Broker`] and runs the loop of `kelp-core`'s docs: feed an input, drain
//! every output, re-arm the timer. Each connection has a reader task (socket -> broker) and a
//! writer task (broker -> socket, vectored writes, records never copied). Storage commands go to
//! a [`Store`]; completions come back over a channel. This crate holds no protocol logic.
//!
//! Graceful stop: once `shutdown` resolves, the listener is closed, what connections send from
//! then on is read and dropped (so that closing them later sends FIN, not RST, and the
//! responses still queued reach their clients), and the loop goes on until every request read
//! has been answered and its response written (`Broker::is_quiescent`) or
//! [`Options::shutdown_grace`] has passed; then the writers finish what is queued, and the
//! store is synced ([`Store::sync`]).
//!
//! Back-pressure: the writer reports every write back to the broker (`Input::Written`), and a
//! reader stops between the broker's `Output::PauseRead` and `Output::ResumeRead` (too many
//! requests in flight or too many response bytes unwritten), so a client that never reads its
//! responses cannot grow kelp's memory.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant as StdInstant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kelp_core::{Broker, CmdId, Completion, ConnId, Input, Instant, Now, Output};
use kelp_storage::{CompletionSink, Sink, Store};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};

/// How the server runs, beyond the broker's own configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most client connections open at once; a connection beyond it is closed as soon as it
    /// is accepted.
    pub max_connections: usize,
    /// How long a graceful stop waits for requests in flight to be answered.
    pub shutdown_grace: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { max_connections: 65_536, shutdown_grace: std::time::Duration::from_secs(30) }
    }
}

/// What the broker task reports to [`Control::snapshot`].
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Requests are served: the store has recovered and no stop has begun.
    pub serving: bool,
    /// Every metric in Prometheus text format (empty unless asked for).
    pub metrics: String,
}

type Query = (bool, std::sync::mpsc::SyncSender<Snapshot>);

/// Asks a running [`serve`] for its state, from any thread (the admin endpoint's).
#[derive(Clone, Debug)]
pub struct Control {
    tx: mpsc::UnboundedSender<Query>,
}

impl Control {
    /// The server's state, with its metrics rendered when `metrics` is set; `None` once the
    /// server has stopped, or if it does not answer within `timeout`. Blocks: call it from a
    /// thread other than the runtime's.
    #[must_use]
    pub fn snapshot(&self, metrics: bool, timeout: std::time::Duration) -> Option<Snapshot> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.tx.send((metrics, tx)).ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// One read buffer per runtime thread, shared by every connection's reader.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}
/// Bytes a reader may have handed to the broker task that it has not yet consumed.
const MAX_UNPROCESSED: usize = 1024 * 1024;

enum Event {
    Received(ConnId, Bytes),
    Closed(ConnId),
    /// The writer put this many bytes of the connection's output on the socket.
    Written(ConnId, usize),
}

struct ChannelSink(mpsc::UnboundedSender<(CmdId, Completion)>);

impl CompletionSink for ChannelSink {
    fn complete(&self, cmd: CmdId, result: Completion) {
        // The receiver lives as long as the broker task; after it is gone nothing waits.
        let _ = self.0.send((cmd, result));
    }
}

/// What the broker task keeps per connection.
struct ConnHandle {
    frames: mpsc::UnboundedSender<Vec<Bytes>>,
    shared: Arc<ConnShared>,
}

/// State shared between the broker task and a connection's reader and writer.
struct ConnShared {
    /// Bytes read and sent to the broker task, not yet handed to the broker.
    unprocessed: AtomicUsize,
    paused: AtomicBool,
    resume: Notify,
    closed: AtomicBool,
    /// The server is stopping: bytes read are dropped, not handed to the broker.
    discard: AtomicBool,
}

/// A clock that turns wall time into the core's `Now`.
struct Clock(StdInstant);

impl Clock {
    fn now(&self) -> Now {
        let mono = Instant(u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Now { mono, wall_ms }
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0 + std::time::Duration::from_nanos(at.0))
    }
}

/// Serves Kafka clients on `listener` until `shutdown` resolves, then stops gracefully (see
/// the module docs) and returns.
///
/// `make_broker` builds the broker from the clock's first reading (the broker's first output
/// asks the store to recover, so it serves once the store is ready). `on_ready` receives the
/// [`Control`] handle before the loop starts.
pub async fn serve(
    listener: TcpListener,
    make_broker: impl FnOnce(Now) -> Broker,
    mut store: Box<dyn Store>,
    shutdown: impl Future<Output = ()>,
    options: Options,
    on_ready: impl FnOnce(Control),
) -> io::Result<()> {
    let clock = Clock(StdInstant::now());
    let mut broker = make_broker(clock.now());
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let (done_tx, mut done) = mpsc::unbounded_channel::<(CmdId, Completion)>();
    let (control_tx, mut queries) = mpsc::unbounded_channel::<Query>();
    on_ready(Control { tx: control_tx });
    let sink: Sink = Arc::new(ChannelSink(done_tx));
    let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
    // Each writer task holds a clone; when all are gone, every response has been written.
    let (writers, mut writers_done) = mpsc::channel::<()>(1);
    let mut next_conn = 0u64;
    let mut listener = Some(listener);
    // Set once the stop has begun: the grace deadline.
    let mut stopping: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);

    drain(&mut broker, &mut conns, store.as_mut(), &sink);
    loop {
        // Completions that arrived while draining are handled before waiting again.
        while let Ok((cmd, result)) = done.try_recv() {
            broker.handle_input(clock.now(), Input::Completed { cmd, result });
            drain(&mut broker, &mut conns, store.as_mut(), &sink);
        }
        if stopping.is_some() && broker.is_quiescent() {
            break;
        }
        let deadline = broker.poll_timeout().map(|t| clock.deadline(t));
        tokio::select! {
            () = &mut shutdown, if stopping.is_none() => {
                tracing::info!(connections = conns.len(), "stopping: finishing the requests in flight");
                stopping = Some(tokio::time::Instant::now() + options.shutdown_grace);
                listener = None;
                // Readers run and drop what they read from now on.
                for h in conns.values() {
                    h.shared.discard.store(true, Ordering::Release);
                    h.shared.resume.notify_one();
                }
            }
            () = sleep_until(stopping) => {
                tracing::warn!(grace = ?options.shutdown_grace, "stopping: requests still in flight after the grace");
                break;
            }
            Some((metrics, reply)) = queries.recv() => {
                let mut text = String::new();
                if metrics {
                    broker.write_metrics(&mut text);
                }
                let _ = reply.try_send(Snapshot { serving: broker.is_ready() && stopping.is_none(), metrics: text });
            }
            accepted = accept(listener.as_ref()) => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                if conns.len() >= options.max_connections {
                    tracing::warn!(%peer, max_connections = options.max_connections, "too many connections: refused");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let conn = ConnId(next_conn);
                next_conn += 1;
                let (rd, wr) = stream.into_split();
                conns.insert(conn, spawn_conn(conn, peer, rd, wr, events_tx.clone(), writers.clone()));
                tracing::debug!(?conn, %peer, "accepted");
                broker.handle_input(clock.now(), Input::Accepted { conn, peer });
            }
            Some(ev) = events.recv() => match ev {
                Event::Received(conn, bytes) => {
                    broker.handle_input(clock.now(), Input::Received { conn, bytes: &bytes });
                    if let Some(h) = conns.get(&conn) {
                        let before = h.shared.unprocessed.fetch_sub(bytes.len(), Ordering::AcqRel);
                        if before > MAX_UNPROCESSED && before - bytes.len() <= MAX_UNPROCESSED {
                            h.shared.resume.notify_one();
                        }
                    }
                }
                Event::Written(conn, bytes) => broker.handle_input(clock.now(), Input::Written { conn, bytes }),
                Event::Closed(conn) => {
                    if let Some(h) = conns.remove(&conn) {
                        h.shared.closed.store(true, Ordering::Release);
                        h.shared.resume.notify_one();
                        broker.handle_input(clock.now(), Input::Closed { conn });
                    }
                }
            },
            Some((cmd, result)) = done.recv() => broker.handle_input(clock.now(), Input::Completed { cmd, result }),
            () = sleep_until(deadline) => broker.handle_input(clock.now(), Input::Tick),
        }
        drain(&mut broker, &mut conns, store.as_mut(), &sink);
    }
    // Every connection closes: readers stop, writers finish what is queued, then shut down.
    for (_, h) in conns.drain() {
        h.shared.closed.store(true, Ordering::Release);
        h.shared.resume.notify_one();
    }
    let until = stopping.unwrap_or_else(tokio::time::Instant::now);
    drop(writers);
    let _ = tokio::time::timeout_at(until, writers_done.recv()).await;
    // Storage commands still outstanding (only after the grace period ran out) complete into a
    // channel nobody reads; what they wrote is synced below all the same.
    store.sync()?;
    tracing::info!("stopped: responses written, store synced");
    Ok(())
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs every output the broker has.
fn drain(broker: &mut Broker, conns: &mut HashMap<ConnId, ConnHandle>, store: &mut dyn Store, sink: &Sink) {
    while let Some(out) = broker.poll_output() {
        match out {
            Output::Send { conn, bytes } => {
                if let Some(h) = conns.get(&conn) {
                    let _ = h.frames.send(bytes.into_vec());
                }
            }
            Output::Storage { cmd, command } => store.submit(cmd, command, sink),
            Output::Close { conn, reason } => {
                tracing::info!(?conn, ?reason, "closing connection");
                if let Some(h) = conns.remove(&conn) {
                    // Dropping the sender lets the writer finish what is queued, then close.
                    h.shared.closed.store(true, Ordering::Release);
                    h.shared.resume.notify_one();
                }
            }
            Output::PauseRead { conn } => {
                if let Some(h) = conns.get(&conn) {
                    h.shared.paused.store(true, Ordering::Release);
                }
            }
            Output::ResumeRead { conn } => {
                if let Some(h) = conns.get(&conn) {
                    h.shared.paused.store(false, Ordering::Release);
                    h.shared.resume.notify_one();
                }
            }
        }
    }
}

fn spawn_conn(
    conn: ConnId,
    peer: SocketAddr,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    events: mpsc::UnboundedSender<Event>,
    alive: mpsc::Sender<()>,
) -> ConnHandle {
    let shared = Arc::new(ConnShared {
        unprocessed: AtomicUsize::new(0),
        paused: AtomicBool::new(false),
        resume: Notify::new(),
        closed: AtomicBool::new(false),
        discard: AtomicBool::new(false),
    });
    let (frames_tx, frames_rx) = mpsc::unbounded_channel::<Vec<Bytes>>();
    let reader_shared = shared.clone();
    let events_for_writer = events.clone();
    tokio::spawn(async move {
        loop {
            while (reader_shared.paused.load(Ordering::Acquire)
                || reader_shared.unprocessed.load(Ordering::Acquire) > MAX_UNPROCESSED)
                && !reader_shared.closed.load(Ordering::Acquire)
                && !reader_shared.discard.load(Ordering::Acquire)
            {
                reader_shared.resume.notified().await;
            }
            if reader_shared.closed.load(Ordering::Acquire) {
                return;
            }
            // Wait for data without holding a buffer, then read into the thread's scratch
            // buffer: an idle connection costs no read buffer of its own.
            if rd.readable().await.is_err() {
                break;
            }
            match SCRATCH.with_borrow_mut(|buf| rd.try_read(buf).map(|n| Bytes::copy_from_slice(&buf[..n]))) {
                Ok(b) if b.is_empty() => break,
                Ok(_) if reader_shared.discard.load(Ordering::Acquire) => {}
                Ok(b) => {
                    reader_shared.unprocessed.fetch_add(b.len(), Ordering::AcqRel);
                    if events.send(Event::Received(conn, b)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        tracing::debug!(?conn, %peer, "peer closed");
        let _ = events.send(Event::Closed(conn));
    });
    tokio::spawn(async move {
        write_loop(conn, wr, frames_rx, events_for_writer).await;
        drop(alive);
    });
    ConnHandle { frames: frames_tx, shared }
}

async fn write_loop(
    conn: ConnId,
    mut wr: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Vec<Bytes>>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(first) = frames.recv().await {
        // Gather what is queued into one vectored write.
        let mut chunks = first;
        while chunks.len() < 64 {
            match frames.try_recv() {
                Ok(more) => chunks.extend(more),
                Err(_) => break,
            }
        }
        let total: usize = chunks.iter().map(Bytes::len).sum();
        if write_all_vectored(&mut wr, &chunks).await.is_err() {
            return;
        }
        if events.send(Event::Written(conn, total)).is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn write_all_vectored(wr: &mut OwnedWriteHalf, chunks: &[Bytes]) -> io::Result<()> {
    let mut idx = 0;
    let mut offset = 0;
    while idx < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[idx][offset..])
            .chain(chunks[idx + 1..].iter().map(|c| &c[..]))
            .map(IoSlice::new)
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < chunks.len() {
            let left = chunks[idx].len() - offset;
            if n >= left {
                n -= left;
                idx += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}
