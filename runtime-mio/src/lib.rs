//! The mio driver for kelp's sans-IO broker: one thread around one `mio::Poll`.
//!
//! Sockets are non-blocking and edge-triggered. Each connection has a write queue of response
//! chunks, written with vectored writes, whose progress is reported to the broker
//! (`Input::Written`); a connection is not read between the broker's `Output::PauseRead` and
//! `Output::ResumeRead`, and is tried again as soon as it resumes. Storage commands
//! go to a [`Store`]; completions come back over a channel, with a `mio::Waker` to wake the
//! poll. This crate holds no protocol logic.
//!
//! Graceful stop: once [`Shutdown::trigger`] is called, the listener is closed, what
//! connections send from then on is read and dropped (so that closing them later sends FIN,
//! not RST, and the responses still queued reach their clients), and the loop goes on until
//! every request read has been answered and its response written (`Broker::is_quiescent`) or
//! [`Options::shutdown_grace`] has passed; then the store is synced ([`Store::sync`]) and
//! [`serve`] returns.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kelp_core::{Broker, CmdId, Completion, ConnId, Input, Instant, Now, Output};
use kelp_storage::{CompletionSink, Sink, Store};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens start here.
const FIRST_CONN: usize = 2;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks gathered into one vectored write.
const MAX_IOVECS: usize = 64;

/// How the server runs, beyond the broker's own configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most client connections open at once; a connection beyond it is closed as soon as it
    /// is accepted.
    pub max_connections: usize,
    /// How long a graceful stop waits for requests in flight to be answered.
    pub shutdown_grace: StdDuration,
}

impl Default for Options {
    fn default() -> Self {
        Self { max_connections: 65_536, shutdown_grace: StdDuration::from_secs(30) }
    }
}

/// What the poll loop reports to [`Control::snapshot`].
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Requests are served: the store has recovered and no stop has begun.
    pub serving: bool,
    /// Every metric in Prometheus text format (empty unless asked for).
    pub metrics: String,
}

type Query = (bool, mpsc::SyncSender<Snapshot>);

/// Asks a running [`serve`] for its state, from any thread (the admin endpoint's).
#[derive(Clone, Debug)]
pub struct Control {
    tx: mpsc::Sender<Query>,
    waker: Arc<Waker>,
}

impl Control {
    /// The server's state, with its metrics rendered when `metrics` is set; `None` once the
    /// server has stopped, or if it does not answer within `timeout`.
    #[must_use]
    pub fn snapshot(&self, metrics: bool, timeout: StdDuration) -> Option<Snapshot> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx.send((metrics, tx)).ok()?;
        self.waker.wake().ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// Stops a running [`serve`] from another thread (a signal handler's, say).
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Shutdown {
    /// Asks the server to stop; it returns from [`serve`] soon after.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        // A failed wake only delays the stop to the next event or timer.
        let _ = self.waker.wake();
    }
}

struct ChannelSink {
    tx: mpsc::Sender<(CmdId, Completion)>,
    waker: Arc<Waker>,
}

impl CompletionSink for ChannelSink {
    fn complete(&self, cmd: CmdId, result: Completion) {
        if self.tx.send((cmd, result)).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

struct Conn {
    stream: TcpStream,
    out: VecDeque<Bytes>,
    /// Bytes of `out`'s front already written.
    written: usize,
    /// The broker asked not to be read (`Output::PauseRead`).
    read_paused: bool,
    writable_registered: bool,
    closing: bool,
}

struct Clock(StdInstant);

impl Clock {
    fn now(&self) -> Now {
        let mono = Instant(u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Now { mono, wall_ms }
    }

    fn until(&self, at: Instant) -> StdDuration {
        let target = StdDuration::from_nanos(at.0);
        target.saturating_sub(self.0.elapsed())
    }
}

/// The driver's state: the broker, the sockets and the store.
struct Driver {
    poll: Poll,
    /// `None` once stopping: no more connections.
    listener: Option<TcpListener>,
    max_connections: usize,
    /// Set once the stop has begun: no more reads.
    stopping: bool,
    broker: Broker,
    store: Box<dyn Store>,
    sink: Sink,
    done: mpsc::Receiver<(CmdId, Completion)>,
    conns: HashMap<ConnId, Conn>,
    /// Connections whose reading resumed: to be tried, since no event will say so.
    resumed: Vec<ConnId>,
    next_conn: usize,
    clock: Clock,
    buf: Vec<u8>,
}

/// Serves Kafka clients on `listener` until the [`Shutdown`] handed to `on_ready` is triggered,
/// then stops gracefully (see the module docs) and returns.
pub fn serve(
    listener: std::net::TcpListener,
    make_broker: impl FnOnce(Now) -> Broker,
    store: Box<dyn Store>,
    options: Options,
    on_ready: impl FnOnce(Shutdown, Control),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listener = TcpListener::from_std(listener);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let flag = Arc::new(AtomicBool::new(false));
    let (control_tx, queries) = mpsc::channel::<Query>();
    on_ready(Shutdown { flag: flag.clone(), waker: waker.clone() }, Control { tx: control_tx, waker: waker.clone() });
    let (tx, done) = mpsc::channel();
    let clock = Clock(StdInstant::now());
    let mut d = Driver {
        poll,
        listener: Some(listener),
        max_connections: options.max_connections,
        stopping: false,
        broker: make_broker(clock.now()),
        store,
        sink: Arc::new(ChannelSink { tx, waker }),
        done,
        conns: HashMap::new(),
        resumed: Vec::new(),
        next_conn: FIRST_CONN,
        clock,
        buf: vec![0u8; READ_CHUNK],
    };
    d.drain();
    let mut events = Events::with_capacity(1024);
    let mut grace_end: Option<StdInstant> = None;
    loop {
        if grace_end.is_none() && flag.load(Ordering::Acquire) {
            tracing::info!(connections = d.conns.len(), "stopping: finishing the requests in flight");
            grace_end = Some(StdInstant::now() + options.shutdown_grace);
            d.stopping = true;
            if let Some(mut l) = d.listener.take() {
                let _ = d.poll.registry().deregister(&mut l);
            }
            // Edge-triggered: what arrived while reading was paused is read (and dropped) now.
            let ids: Vec<ConnId> = d.conns.keys().copied().collect();
            for conn in ids {
                d.discard(conn);
            }
        }
        if let Some(end) = grace_end {
            if d.broker.is_quiescent() {
                break;
            }
            if StdInstant::now() >= end {
                tracing::warn!(grace = ?options.shutdown_grace, "stopping: requests still in flight after the grace");
                break;
            }
        }
        let mut timeout = d.broker.poll_timeout().map(|t| d.clock.until(t));
        if let Some(end) = grace_end {
            let left = end.saturating_duration_since(StdInstant::now());
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        match d.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in &events {
            match ev.token() {
                LISTENER => d.accept(),
                WAKER => {}
                Token(t) => {
                    let conn = ConnId(t as u64);
                    if ev.is_writable() {
                        d.flush(conn);
                    }
                    if ev.is_readable() || ev.is_read_closed() {
                        d.read(conn);
                    }
                }
            }
        }
        d.completions();
        if d.broker.poll_timeout().is_some_and(|t| t <= d.clock.now().mono) {
            let now = d.clock.now();
            d.broker.handle_input(now, Input::Tick);
            d.drain();
        }
        d.resume_paused();
        while let Ok((metrics, reply)) = queries.try_recv() {
            let mut text = String::new();
            if metrics {
                d.broker.write_metrics(&mut text);
            }
            let _ = reply.try_send(Snapshot { serving: d.broker.is_ready() && !d.stopping, metrics: text });
        }
    }
    let ids: Vec<ConnId> = d.conns.keys().copied().collect();
    for conn in ids {
        d.discard(conn);
    }
    for (_, mut c) in d.conns.drain() {
        // FIN after the responses already queued in the kernel.
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let _ = d.poll.registry().deregister(&mut c.stream);
    }
    d.store.sync()?;
    tracing::info!("stopped: responses written, store synced");
    Ok(())
}

impl Driver {
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.max_connections {
                        tracing::warn!(%peer, max_connections = self.max_connections, "too many connections: refused");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next_conn);
                    self.next_conn += 1;
                    if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!(error = %e, "registering a connection failed");
                        continue;
                    }
                    let conn = ConnId(token.0 as u64);
                    self.conns.insert(
                        conn,
                        Conn {
                            stream,
                            out: VecDeque::new(),
                            written: 0,
                            read_paused: false,
                            writable_registered: false,
                            closing: false,
                        },
                    );
                    let now = self.clock.now();
                    self.broker.handle_input(now, Input::Accepted { conn, peer });
                    self.drain();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    /// Reads until the socket would block or the broker pauses the connection.
    fn read(&mut self, conn: ConnId) {
        if self.stopping {
            return self.discard(conn);
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            if c.read_paused || c.closing {
                return;
            }
            match c.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.closed(conn);
                    return self.drain();
                }
                Ok(n) => {
                    let now = self.clock.now();
                    self.broker.handle_input(now, Input::Received { conn, bytes: &self.buf[..n] });
                    self.drain();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed(conn);
                    return self.drain();
                }
            }
        }
    }

    /// Reads and drops what `conn` sent (the server is stopping), noting a close.
    fn discard(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        loop {
            match c.stream.read(&mut self.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.closed(conn);
        self.drain();
    }

    /// Reads the connections the broker resumed: an edge-triggered socket will not say that
    /// data is waiting. Reading may resume others in turn.
    fn resume_paused(&mut self) {
        while let Some(conn) = self.resumed.pop() {
            self.read(conn);
        }
    }

    fn closed(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            let now = self.clock.now();
            self.broker.handle_input(now, Input::Closed { conn });
        }
    }

    /// Writes what is queued for `conn` and reports progress to the broker. It feeds the
    /// broker but never drains it: `drain` loops instead, so a long pipeline of requests
    /// answered one at a time cannot deepen the stack.
    /// Returns whether the broker was fed (and may have more output).
    fn flush(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        let mut total = 0usize;
        let mut failed = false;
        while !c.out.is_empty() {
            let slices: Vec<IoSlice<'_>> = c
                .out
                .iter()
                .take(MAX_IOVECS)
                .enumerate()
                .map(|(i, b)| IoSlice::new(if i == 0 { &b[c.written..] } else { &b[..] }))
                .collect();
            match c.stream.write_vectored(&slices) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(mut n) => {
                    total += n;
                    while n > 0 {
                        let Some(front) = c.out.front() else { break };
                        let left = front.len() - c.written;
                        if n >= left {
                            n -= left;
                            c.out.pop_front();
                            c.written = 0;
                        } else {
                            c.written += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let want_writable = !c.out.is_empty() && !failed;
        if want_writable != c.writable_registered {
            let interest = if want_writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let token = Token(usize::try_from(conn.0).unwrap_or(usize::MAX));
            let _ = self.poll.registry().reregister(&mut c.stream, token, interest);
            c.writable_registered = want_writable;
        }
        let finished_closing = c.closing && c.out.is_empty();
        if total > 0 {
            let now = self.clock.now();
            self.broker.handle_input(now, Input::Written { conn, bytes: total });
        }
        if failed {
            self.closed(conn);
            return true;
        }
        if finished_closing && let Some(mut c) = self.conns.remove(&conn) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        total > 0
    }

    /// Runs every output the broker has, writes what it can, and feeds back write progress and
    /// storage completions, until the broker has nothing more to do.
    fn drain(&mut self) {
        loop {
            let mut to_flush = Vec::new();
            while let Some(out) = self.broker.poll_output() {
                match out {
                    Output::Send { conn, bytes } => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.out.extend(bytes);
                            if !to_flush.contains(&conn) {
                                to_flush.push(conn);
                            }
                        }
                    }
                    Output::Storage { cmd, command } => self.store.submit(cmd, command, &self.sink),
                    Output::Close { conn, reason } => {
                        tracing::info!(?conn, ?reason, "closing connection");
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.closing = true;
                            if !to_flush.contains(&conn) {
                                to_flush.push(conn);
                            }
                        }
                    }
                    Output::PauseRead { conn } => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.read_paused = true;
                        }
                    }
                    Output::ResumeRead { conn } => {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.read_paused = false;
                            self.resumed.push(conn);
                        }
                    }
                }
            }
            let mut fed = false;
            for conn in to_flush {
                fed |= self.flush(conn);
            }
            while let Ok((cmd, result)) = self.done.try_recv() {
                let now = self.clock.now();
                self.broker.handle_input(now, Input::Completed { cmd, result });
                fed = true;
            }
            if !fed {
                return;
            }
        }
    }

    fn completions(&mut self) {
        self.drain();
    }
}
