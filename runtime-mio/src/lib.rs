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
//! Listeners: [`serve`] accepts on every [`Bound`] it is given. A plaintext connection goes to
//! the broker at once. A connection to a TLS listener keeps a rustls `ServerConnection` in its
//! state: readable sockets feed `read_tls` and `process_new_packets`, what rustls decrypted is
//! handed to the broker, the broker's output goes into rustls' writer and out with
//! `write_tls` (the socket is watched for WRITABLE while encrypted bytes wait). The broker
//! hears of the connection once the handshake is done, with the client certificate's subject
//! in its `Origin`; a handshake that fails, or is not done within [`HANDSHAKE_TIMEOUT`], drops
//! the connection and nothing else. `Input::Written` reports the plaintext rustls took once
//! rustls has put every record it holds on the socket (rustls' buffer is bounded,
//! [`kelp_driver::tls::BUFFER_LIMIT`]): until then those bytes count as unwritten, so the broker
//! is not quiescent while a response is still inside rustls.
//!
//! Graceful stop: once [`Control::stop`] is called, the listeners are closed, what connections
//! send from then on is read and dropped (a connection whose peer ends its side stays open for
//! the responses it is owed: a half-closed peer still reads), and the loop goes on until every
//! request read has been answered and its response written or [`Options::shutdown_grace`] has
//! passed (see [`Mailbox::stop_begins`]). Then each TLS connection's close_notify is written
//! after its responses, waiting for the socket to take them until the grace ends, each socket
//! is shut down for writing, the store is synced ([`Store::sync`]) and [`serve`] returns.
//!
//! In-process connections ([`Control::connect_local`], see `kelp_driver::local`) are served by
//! the same loop: their reports arrive through the [`Mailbox`] and fire the waker, their
//! request bytes are fed to the broker while it reads them, and what the broker sends them
//! goes to their reader. They are closed like sockets at the stop.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use kelp_core::io::{Frame, Origin};
use kelp_core::{Broker, CmdId, Command, ConnId, Input, Now};
use kelp_driver::tls::{self, HANDSHAKE_TIMEOUT};
pub use kelp_driver::{Bound, Control, LocalConn, Options, Snapshot};
use kelp_driver::{Clock, LocalConns, Mailbox, OutQueue, READ_CHUNK, TlsSource, is_local};
use kelp_storage::{Sink, Store};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ServerConnection;

/// The waker's token; listener `i` (in the order given to [`serve`]) has `Token(1 + i)`, and
/// connection tokens follow.
const WAKER: Token = Token(0);

/// A listener being accepted on.
struct Listening {
    socket: TcpListener,
    index: u16,
    tls: Option<Arc<TlsSource>>,
}

struct Conn {
    stream: TcpStream,
    out: OutQueue,
    /// The broker asked not to be read (`Output::PauseRead`).
    paused: bool,
    writable_registered: bool,
    closing: bool,
    /// On a TLS listener: the connection's TLS state.
    tls: Option<Box<ServerConnection>>,
    /// The broker knows the connection: at once for plaintext, after the handshake for TLS.
    accepted: bool,
    /// On TLS: plaintext rustls took whose records are not all on the socket yet; reported
    /// (`Input::Written`) once rustls has written everything it holds.
    unreported: usize,
    /// The peer ended its side while the server was stopping: nothing more to read, but the
    /// responses it is owed are still written.
    eof: bool,
    peer: SocketAddr,
    /// The listener's index in `Config::listeners`.
    listener: u16,
}

/// What one step of reading a TLS connection gave.
enum TlsStep {
    /// This many decrypted bytes at the start of the read buffer.
    Plain(usize),
    /// TLS records were read and processed (the handshake may have moved on).
    Progress,
    /// Nothing more to read now.
    Blocked,
    /// The connection ended: closed by the peer, broken, or a TLS error.
    Ended,
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
    /// Empty once stopping: no more connections.
    listeners: Vec<Listening>,
    /// The first connection token: tokens below it (but the waker's) are listeners'.
    first_conn: usize,
    options: Options,
    broker: Broker,
    conns: Conns,
    mailbox: Mailbox,
    next_conn: usize,
    clock: Clock,
    buf: Vec<u8>,
    /// TLS handshakes' deadlines, in the order they were accepted (so, of their deadlines).
    handshakes: VecDeque<(StdInstant, ConnId)>,
}

/// Serves Kafka clients on `listeners` until [`Control::stop`] is called on the handle given
/// to `on_ready`, then stops gracefully (see the module docs) and returns. Each listener's
/// `index` is its place in the broker's `Config::listeners`; [`Options::admit`] counts the
/// connections of all of them together.
///
/// `make_broker` builds the broker from the clock's first reading (the broker's first output
/// asks the store to recover, so it serves once the store is ready). `on_ready` receives the
/// [`Control`] handle before the loop starts.
pub fn serve(
    listeners: Vec<Bound>,
    make_broker: impl FnOnce(Now) -> Broker,
    store: Box<dyn Store>,
    options: Options,
    on_ready: impl FnOnce(Control),
) -> io::Result<()> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let mut listening = Vec::with_capacity(listeners.len());
    for (i, Bound { listener, index, tls }) in listeners.into_iter().enumerate() {
        listener.set_nonblocking(true)?;
        let mut socket = TcpListener::from_std(listener);
        poll.registry().register(&mut socket, Token(1 + i), Interest::READABLE)?;
        listening.push(Listening { socket, index, tls });
    }
    let first_conn = 1 + listening.len();
    // A failed wake only delays what it announces to the next event or timer.
    let mailbox = Mailbox::new(Arc::new(move || drop(waker.wake())), options.shutdown_grace);
    on_ready(mailbox.control());
    let clock = Clock::start();
    let sink: Sink = Arc::new(mailbox.completer());
    let mut d = Driver {
        poll,
        listeners: listening,
        first_conn,
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
        next_conn: first_conn,
        clock,
        buf: vec![0u8; READ_CHUNK],
        handshakes: VecDeque::new(),
    };
    d.drain();
    let mut events = Events::with_capacity(1024);
    loop {
        if d.mailbox.stop_begins(d.conns.map.len() + d.conns.local.len()) {
            for mut l in d.listeners.drain(..) {
                let _ = d.poll.registry().deregister(&mut l.socket);
            }
            d.drop_handshakes();
            d.conns.local.stop_begins();
            // Edge-triggered: what arrived while reading was paused is read (and dropped) now.
            d.discard_all();
        }
        if d.mailbox.finished(&d.broker) {
            break;
        }
        let mut timeout = d.broker.poll_timeout().map(|t| d.clock.until(t));
        let ends = [d.mailbox.grace_end(), d.handshakes.front().map(|(t, _)| *t)];
        for end in ends.into_iter().flatten() {
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
                WAKER => {}
                Token(t) if t < d.first_conn => d.accept(t - 1),
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
        d.expire_handshakes();
        d.mailbox.answer_queries(&d.broker);
    }
    d.discard_all();
    d.conns.local.close_all();
    d.finish_sockets(&mut events);
    d.conns.store.sync()?;
    tracing::info!("stopped: responses written, store synced");
    Ok(())
}

impl Driver {
    /// Accepts what listener `i` has: plaintext connections go to the broker, TLS ones start
    /// their handshake.
    fn accept(&mut self, i: usize) {
        loop {
            let Some(l) = self.listeners.get(i) else { return };
            match l.socket.accept() {
                Ok((mut stream, peer)) => {
                    if !self.options.admit(self.conns.map.len() + self.conns.local.len(), peer) {
                        continue;
                    }
                    let (listener, tls) = (l.index, l.tls.as_ref().map(|source| source.connection()));
                    let tls = match tls.transpose() {
                        Ok(tls) => tls.map(Box::new),
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "TLS: cannot start a connection");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next_conn);
                    self.next_conn += 1;
                    if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!(error = %e, "registering a connection failed");
                        continue;
                    }
                    let conn = ConnId(token.0 as u64);
                    let accepted = tls.is_none();
                    let c = Conn {
                        stream,
                        out: OutQueue::default(),
                        paused: false,
                        writable_registered: false,
                        closing: false,
                        tls,
                        accepted,
                        unreported: 0,
                        eof: false,
                        peer,
                        listener,
                    };
                    self.conns.map.insert(conn, c);
                    if accepted {
                        tracing::debug!(?conn, %peer, listener, "accepted");
                        let now = self.clock.now();
                        let origin = Origin { listener, tls_subject: None };
                        self.broker.handle_input(now, Input::Accepted { conn, peer, origin });
                        self.drain();
                    } else {
                        self.handshakes.push_back((StdInstant::now() + HANDSHAKE_TIMEOUT, conn));
                    }
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
        if self.conns.map.get(&conn).is_some_and(|c| c.tls.is_some()) {
            return self.read_tls(conn);
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

    /// Reads a TLS connection: hands what rustls decrypted to the broker, feeds rustls what
    /// the socket has, moves the handshake on and sends what it needs, until the socket would
    /// block or the broker pauses the connection.
    fn read_tls(&mut self, conn: ConnId) {
        loop {
            let step = {
                let Some(c) = self.conns.map.get_mut(&conn) else { return };
                if c.paused || c.closing {
                    return;
                }
                let Some(tls) = c.tls.as_deref_mut() else { return };
                tls_step(conn, tls, &mut c.stream, &mut self.buf)
            };
            match step {
                TlsStep::Plain(n) => {
                    let now = self.clock.now();
                    self.broker.handle_input(now, Input::Received { conn, bytes: &self.buf[..n] });
                    self.drain();
                }
                TlsStep::Progress => self.tls_progress(conn),
                TlsStep::Blocked => return,
                TlsStep::Ended => {
                    self.closed(conn);
                    return self.drain();
                }
            }
        }
    }

    /// After rustls processed records: hands a connection whose handshake just finished to the
    /// broker, and sends what rustls has to send (handshake messages, tickets, alerts).
    fn tls_progress(&mut self, conn: ConnId) {
        let Some(c) = self.conns.map.get_mut(&conn) else { return };
        let Some(tls) = c.tls.as_deref() else { return };
        if !c.accepted && !tls.is_handshaking() {
            c.accepted = true;
            let origin = Origin { listener: c.listener, tls_subject: tls::peer_subject(tls).map(Into::into) };
            let peer = c.peer;
            tracing::debug!(?conn, %peer, listener = origin.listener, tls_subject = ?origin.tls_subject, "accepted");
            let now = self.clock.now();
            self.broker.handle_input(now, Input::Accepted { conn, peer, origin });
        }
        if c.tls.as_deref().is_some_and(|t| t.wants_write()) {
            self.flush(conn);
        }
        self.drain();
    }

    /// Drops the TLS connections whose handshake is past its deadline.
    fn expire_handshakes(&mut self) {
        let now = StdInstant::now();
        while let Some(&(deadline, conn)) = self.handshakes.front() {
            if deadline > now {
                break;
            }
            self.handshakes.pop_front();
            if self.conns.map.get(&conn).is_some_and(|c| !c.accepted) {
                tracing::debug!(?conn, "TLS handshake timed out");
                self.closed(conn);
            }
        }
    }

    /// Drops every connection still shaking hands (the server is stopping).
    fn drop_handshakes(&mut self) {
        for (_, conn) in std::mem::take(&mut self.handshakes) {
            if self.conns.map.get(&conn).is_some_and(|c| !c.accepted) {
                self.closed(conn);
            }
        }
    }

    /// Reads and drops what `conn` sent (the server is stopping). A connection whose peer
    /// ended its side is kept: it may only have half-closed, and still read the responses it
    /// is owed (a write to a peer that is gone fails, and drops it then). A broken one is
    /// dropped.
    fn discard(&mut self, conn: ConnId) {
        let Some(c) = self.conns.map.get_mut(&conn) else { return };
        if c.eof {
            return;
        }
        match drop_input(&mut c.stream, &mut self.buf) {
            Ok(false) => {}
            Ok(true) => c.eof = true,
            Err(_) => {
                self.closed(conn);
                self.drain();
            }
        }
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

    /// Forgets a connection that ended; the broker hears of it if it knew it.
    fn closed(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.map.remove(&conn) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if c.accepted {
                let now = self.clock.now();
                self.broker.handle_input(now, Input::Closed { conn });
            }
        }
    }

    /// Writes what is queued for `conn` and reports progress to the broker. It feeds the
    /// broker but never drains it: `drain` loops instead, so a long pipeline of requests
    /// answered one at a time cannot deepen the stack.
    /// Returns whether the broker was fed (and may have more output).
    fn flush(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.map.get_mut(&conn) else { return false };
        let written = match c.tls.as_deref_mut() {
            None => c.out.write_to(&mut c.stream).map(|n| (n, !c.out.is_empty())),
            // What rustls took is written once rustls holds nothing more: only then are those
            // bytes on the socket (the broker's quiescence, hence a graceful stop, counts on it).
            Some(tls) => flush_tls(tls, &mut c.out, &mut c.stream).map(|(n, wait)| {
                c.unreported += n;
                (if wait { 0 } else { std::mem::take(&mut c.unreported) }, wait)
            }),
        };
        let Ok((total, want_writable)) = written else {
            self.closed(conn);
            return true;
        };
        if want_writable != c.writable_registered {
            let interest = if want_writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let token = Token(usize::try_from(conn.0).unwrap_or(usize::MAX));
            let _ = self.poll.registry().reregister(&mut c.stream, token, interest);
            c.writable_registered = want_writable;
        }
        if c.closing && c.out.is_empty() && !want_writable {
            if let Some(tls) = c.tls.as_deref_mut() {
                tls.send_close_notify();
                let _ = flush_tls(tls, &mut c.out, &mut c.stream);
            }
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

    /// After the loop: writes what each connection still has queued (everything, unless the
    /// grace ran out) and, on TLS, its close_notify after it, as the sockets take them, waiting
    /// for them to become writable until the grace ends; then shuts each socket down for
    /// writing (FIN after the responses) and drops it.
    fn finish_sockets(&mut self, events: &mut Events) {
        let end = self.mailbox.grace_end().unwrap_or_else(StdInstant::now);
        let mut waiting: Vec<ConnId> = self.conns.map.keys().copied().collect();
        loop {
            waiting.retain(|&conn| self.finish_one(conn));
            let left = end.saturating_duration_since(StdInstant::now());
            if waiting.is_empty() || left.is_zero() {
                break;
            }
            // Any event is only a wake-up: every connection still waiting is tried again.
            match self.poll.poll(events, Some(left)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if !waiting.is_empty() {
            tracing::warn!(connections = waiting.len(), "stopping: responses still unwritten after the grace");
        }
        for (_, mut c) in self.conns.map.drain() {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// One try at writing the rest of `conn`'s output (and, on TLS, its close_notify);
    /// returns whether it still waits for the socket, which is then watched for WRITABLE.
    fn finish_one(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.map.get_mut(&conn) else { return false };
        // What the peer sends meanwhile is dropped: unread bytes at the close would reset the
        // connection, and the peer could lose responses it has not read yet.
        if !c.eof {
            match drop_input(&mut c.stream, &mut self.buf) {
                Ok(ended) => c.eof = ended,
                Err(_) => return false,
            }
        }
        let wait = match c.tls.as_deref_mut() {
            None => c.out.write_to(&mut c.stream).is_ok_and(|_| !c.out.is_empty()),
            Some(tls) => {
                let mut notified = false;
                loop {
                    match flush_tls(tls, &mut c.out, &mut c.stream) {
                        Ok((_, true)) => break true,
                        // All written: the close_notify goes after it (rustls sends one only).
                        Ok((_, false)) if c.out.is_empty() && !notified => {
                            tls.send_close_notify();
                            notified = true;
                        }
                        Ok((_, false)) | Err(_) => break false,
                    }
                }
            }
        };
        if wait && !c.writable_registered {
            let token = Token(usize::try_from(conn.0).unwrap_or(usize::MAX));
            let _ = self.poll.registry().reregister(&mut c.stream, token, Interest::READABLE | Interest::WRITABLE);
            c.writable_registered = true;
        }
        wait
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

/// Reads and drops what `sock` has until it would block: whether the peer ended its side. An
/// error is a broken connection.
fn drop_input(sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    loop {
        match sock.read(buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// One step of reading a TLS connection: decrypted bytes rustls holds first (into `buf`), else
/// one read from the socket into rustls and the processing of the records it completes.
fn tls_step(conn: ConnId, tls: &mut ServerConnection, sock: &mut TcpStream, buf: &mut [u8]) -> TlsStep {
    match tls.reader().read(buf) {
        // The peer's close_notify.
        Ok(0) => return TlsStep::Ended,
        Ok(n) => return TlsStep::Plain(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        // The socket ended without a close_notify.
        Err(_) => return TlsStep::Ended,
    }
    match tls.read_tls(sock) {
        Ok(0) => return TlsStep::Ended,
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::WouldBlock => return TlsStep::Blocked,
        Err(e) if e.kind() == ErrorKind::Interrupted => return TlsStep::Progress,
        Err(_) => return TlsStep::Ended,
    }
    match tls.process_new_packets() {
        Ok(_) => TlsStep::Progress,
        Err(e) => {
            // rustls queued an alert saying why: sent if the socket takes it at once.
            tracing::debug!(?conn, error = %e, "TLS error: dropping the connection");
            let _ = tls.write_tls(sock);
            TlsStep::Ended
        }
    }
}

/// Moves the plaintext queued in `out` into rustls (once the handshake is done) and what
/// rustls has encrypted onto `sock`, until both are empty or the socket would block. Returns
/// the plaintext bytes rustls took, and whether bytes wait for the socket to be writable.
fn flush_tls(tls: &mut ServerConnection, out: &mut OutQueue, sock: &mut TcpStream) -> io::Result<(usize, bool)> {
    let mut taken = 0;
    loop {
        if !tls.is_handshaking() {
            while !out.is_empty() {
                // Less than asked, or nothing, once rustls' bounded buffer is full.
                let n = tls.writer().write_vectored(&out.slices())?;
                if n == 0 {
                    break;
                }
                out.advance(n);
                taken += n;
            }
        }
        if !tls.wants_write() {
            return Ok((taken, false));
        }
        match tls.write_tls(sock) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok((taken, true)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
