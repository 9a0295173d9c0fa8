//! The mio driver for kelp's sans-IO broker: one thread around one `mio::Poll`.
//!
//! Sockets are non-blocking and edge-triggered. Each connection has a write queue of response
//! chunks, written with vectored writes, whose progress is reported to the broker
//! (`Input::Written`); a connection is read only while the broker wants it read
//! (`Broker::wants_read`), and reading resumes by itself once it does again. Storage commands
//! go to a [`Store`]; completions come back over a channel, with a `mio::Waker` to wake the
//! poll. This crate holds no protocol logic.

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
    /// Stopped reading because the broker did not want more (edge-triggered: must retry).
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
    listener: TcpListener,
    broker: Broker,
    store: Box<dyn Store>,
    sink: Sink,
    done: mpsc::Receiver<(CmdId, Completion)>,
    conns: HashMap<ConnId, Conn>,
    next_conn: usize,
    clock: Clock,
    buf: Vec<u8>,
}

/// Serves Kafka clients on `listener` until the [`Shutdown`] handed to `on_ready` is triggered.
pub fn serve(
    listener: std::net::TcpListener,
    make_broker: impl FnOnce(Now) -> Broker,
    store: Box<dyn Store>,
    on_ready: impl FnOnce(Shutdown),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listener = TcpListener::from_std(listener);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let flag = Arc::new(AtomicBool::new(false));
    on_ready(Shutdown { flag: flag.clone(), waker: waker.clone() });
    let (tx, done) = mpsc::channel();
    let clock = Clock(StdInstant::now());
    let mut d = Driver {
        poll,
        listener,
        broker: make_broker(clock.now()),
        store,
        sink: Arc::new(ChannelSink { tx, waker }),
        done,
        conns: HashMap::new(),
        next_conn: FIRST_CONN,
        clock,
        buf: vec![0u8; READ_CHUNK],
    };
    d.drain();
    let mut events = Events::with_capacity(1024);
    while !flag.load(Ordering::Acquire) {
        let timeout = d.broker.poll_timeout().map(|t| d.clock.until(t));
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
    }
    Ok(())
}

impl Driver {
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
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

    /// Reads until the socket would block or the broker wants no more.
    fn read(&mut self, conn: ConnId) {
        loop {
            if !self.broker.wants_read(conn) {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.read_paused = true;
                }
                return;
            }
            let Some(c) = self.conns.get_mut(&conn) else { return };
            if c.closing {
                return;
            }
            c.read_paused = false;
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

    /// Connections paused for back-pressure that the broker wants read again: an
    /// edge-triggered socket will not say so by itself.
    fn resume_paused(&mut self) {
        let ready: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, c)| c.read_paused && self.broker.wants_read(**id))
            .map(|(id, _)| *id)
            .collect();
        for conn in ready {
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
