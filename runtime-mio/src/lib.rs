//! The mio driver for kelp's sans-IO broker: one thread around one `mio::Poll`.
//!
//! Sockets are non-blocking and edge-triggered. Each connection has a write queue of response
//! chunks, written with vectored writes, whose progress is reported to the broker
//! (`Input::Written`); a connection is not read between the broker's `Output::PauseRead` and
//! `Output::ResumeRead`, and is tried again as soon as it resumes (an edge-triggered socket does
//! not report again what arrived meanwhile). Storage commands go to a [`Store`]; completions,
//! [`Control`] queries and the stop come back through `kelp-driver`'s [`Mailbox`], whose arrivals
//! wake the poll with a `mio::Waker`. This crate holds no protocol logic.
//!
//! Graceful stop: once [`Control::stop`] is called, the listener is closed, what connections
//! send from then on is read and dropped, and the loop goes on until every request read has
//! been answered and its response written or [`Options::shutdown_grace`] has passed (see
//! [`Mailbox::stop_begins`]); then the store is synced ([`Store::sync`]) and [`serve`] returns.
//!
//! In-process connections ([`Control::connect_local`], see `kelp_driver::local`) are served by
//! the same loop: their reports arrive through the [`Mailbox`] and fire the waker, their
//! request bytes are fed to the broker while it reads them, and what the broker sends them
//! goes to their reader. They are closed like sockets at the stop.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read};
use std::sync::Arc;

use kelp_core::io::Frame;
use kelp_core::{Broker, CmdId, Command, ConnId, Input, Now};
use kelp_driver::{Clock, LocalConns, Mailbox, OutQueue, READ_CHUNK, is_local};
pub use kelp_driver::{Control, LocalConn, Options, Snapshot};
use kelp_storage::{Sink, Store};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens start here.
const FIRST_CONN: usize = 2;

struct Conn {
    stream: TcpStream,
    out: OutQueue,
    /// The broker asked not to be read (`Output::PauseRead`).
    paused: bool,
    writable_registered: bool,
    closing: bool,
}

/// The poll loop's IO: the connections and the store, as the broker's outputs drive them.
struct Conns {
    map: HashMap<ConnId, Conn>,
    /// In-process connections: no sockets, no tokens.
    local: LocalConns,
    store: Box<dyn Store>,
    sink: Sink,
    /// Connections with output to write (or a close to finish) since the last flush.
    to_flush: Vec<ConnId>,
    /// Connections whose reading resumed: to be tried, since no event will say so.
    resumed: Vec<ConnId>,
}

impl Conns {
    fn flush_later(&mut self, conn: ConnId) {
        if !self.to_flush.contains(&conn) {
            self.to_flush.push(conn);
        }
    }
}

impl kelp_driver::Io for Conns {
    fn send(&mut self, conn: ConnId, bytes: Frame) {
        if is_local(conn) {
            return self.local.send(conn, bytes);
        }
        if let Some(c) = self.map.get_mut(&conn) {
            c.out.push(bytes);
            self.flush_later(conn);
        }
    }

    fn storage(&mut self, cmd: CmdId, command: Command) {
        self.store.submit(cmd, command, &self.sink);
    }

    fn close(&mut self, conn: ConnId) {
        if is_local(conn) {
            return self.local.close(conn);
        }
        if let Some(c) = self.map.get_mut(&conn) {
            c.closing = true;
            self.flush_later(conn);
        }
    }

    fn read(&mut self, conn: ConnId, on: bool) {
        if is_local(conn) {
            return self.local.read(conn, on);
        }
        if let Some(c) = self.map.get_mut(&conn) {
            c.paused = !on;
            if on {
                self.resumed.push(conn);
            }
        }
    }
}

/// The driver's state: the broker, the sockets and the store.
struct Driver {
    poll: Poll,
    /// `None` once stopping: no more connections.
    listener: Option<TcpListener>,
    options: Options,
    broker: Broker,
    conns: Conns,
    mailbox: Mailbox,
    next_conn: usize,
    clock: Clock,
    buf: Vec<u8>,
}

/// Serves Kafka clients on `listener` until [`Control::stop`] is called on the handle given to
/// `on_ready`, then stops gracefully (see the module docs) and returns.
///
/// `make_broker` builds the broker from the clock's first reading (the broker's first output
/// asks the store to recover, so it serves once the store is ready). `on_ready` receives the
/// [`Control`] handle before the loop starts.
pub fn serve(
    listener: std::net::TcpListener,
    make_broker: impl FnOnce(Now) -> Broker,
    store: Box<dyn Store>,
    options: Options,
    on_ready: impl FnOnce(Control),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let mut listener = TcpListener::from_std(listener);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    // A failed wake only delays what it announces to the next event or timer.
    let mailbox = Mailbox::new(Arc::new(move || drop(waker.wake())), options.shutdown_grace);
    on_ready(mailbox.control());
    let clock = Clock::start();
    let sink: Sink = Arc::new(mailbox.completer());
    let mut d = Driver {
        poll,
        listener: Some(listener),
        options,
        broker: make_broker(clock.now()),
        conns: Conns {
            map: HashMap::new(),
            local: LocalConns::default(),
            store,
            sink,
            to_flush: Vec::new(),
            resumed: Vec::new(),
        },
        mailbox,
        next_conn: FIRST_CONN,
        clock,
        buf: vec![0u8; READ_CHUNK],
    };
    d.drain();
    let mut events = Events::with_capacity(1024);
    loop {
        if d.mailbox.stop_begins(d.conns.map.len() + d.conns.local.len()) {
            if let Some(mut l) = d.listener.take() {
                let _ = d.poll.registry().deregister(&mut l);
            }
            d.conns.local.stop_begins();
            // Edge-triggered: what arrived while reading was paused is read (and dropped) now.
            d.discard_all();
        }
        if d.mailbox.finished(&d.broker) {
            break;
        }
        let mut timeout = d.broker.poll_timeout().map(|t| d.clock.until(t));
        if let Some(end) = d.mailbox.grace_end() {
            let left = end.saturating_duration_since(std::time::Instant::now());
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
        // Completions that arrived meanwhile.
        d.drain();
        if d.broker.poll_timeout().is_some_and(|t| t <= d.clock.now().mono) {
            let now = d.clock.now();
            d.broker.handle_input(now, Input::Tick);
            d.drain();
        }
        d.resume_reading();
        d.mailbox.answer_queries(&d.broker);
    }
    d.discard_all();
    d.conns.local.close_all();
    for (_, mut c) in d.conns.map.drain() {
        // FIN after the responses already queued in the kernel.
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let _ = d.poll.registry().deregister(&mut c.stream);
    }
    d.conns.store.sync()?;
    tracing::info!("stopped: responses written, store synced");
    Ok(())
}

impl Driver {
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if !self.options.admit(self.conns.map.len() + self.conns.local.len(), peer) {
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
                    let c = Conn {
                        stream,
                        out: OutQueue::default(),
                        paused: false,
                        writable_registered: false,
                        closing: false,
                    };
                    self.conns.map.insert(conn, c);
                    let now = self.clock.now();
                    self.broker.handle_input(now, Input::Accepted { conn, peer, origin: Default::default() });
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
        if self.mailbox.is_stopping() {
            return self.discard(conn);
        }
        loop {
            let Some(c) = self.conns.map.get_mut(&conn) else { return };
            if c.paused || c.closing {
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
        let Some(c) = self.conns.map.get_mut(&conn) else { return };
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

    fn discard_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.map.keys().copied().collect();
        for conn in ids {
            self.discard(conn);
        }
    }

    /// Reads the connections the broker resumed: an edge-triggered socket will not say that
    /// data is waiting. Reading may resume others in turn.
    fn resume_reading(&mut self) {
        while let Some(conn) = self.conns.resumed.pop() {
            self.read(conn);
        }
    }

    fn closed(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.map.remove(&conn) {
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
        let Some(c) = self.conns.map.get_mut(&conn) else { return false };
        let Ok(total) = c.out.write_to(&mut c.stream) else {
            self.closed(conn);
            return true;
        };
        let want_writable = !c.out.is_empty();
        if want_writable != c.writable_registered {
            let interest = if want_writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let token = Token(usize::try_from(conn.0).unwrap_or(usize::MAX));
            let _ = self.poll.registry().reregister(&mut c.stream, token, interest);
            c.writable_registered = want_writable;
        }
        if c.closing && c.out.is_empty() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.conns.map.remove(&conn);
        }
        if total > 0 {
            let now = self.clock.now();
            self.broker.handle_input(now, Input::Written { conn, bytes: total });
        }
        total > 0
    }

    /// Runs every output the broker has, writes what it can, and feeds back write progress and
    /// storage completions, until the broker has nothing more to do.
    fn drain(&mut self) {
        loop {
            kelp_driver::drain(&mut self.broker, &mut self.conns);
            let mut fed = false;
            for conn in std::mem::take(&mut self.conns.to_flush) {
                fed |= self.flush(conn);
            }
            while let Some((cmd, result)) = self.mailbox.completion() {
                let now = self.clock.now();
                self.broker.handle_input(now, Input::Completed { cmd, result });
                fed = true;
            }
            if fed {
                continue;
            }
            // One input from the local connections at a time, and only once the broker's
            // outputs are drained: a close among them must reach the map before the next.
            let sockets = self.conns.map.len();
            let Some(input) = self.conns.local.next_input(&self.mailbox, &self.options, sockets) else { return };
            let now = self.clock.now();
            self.broker.handle_input(now, input);
        }
    }
}
