//! The tokio driver for kelp's sans-IO broker.
//!
//! One task owns the [`Broker`] and runs the loop of `kelp-core`'s docs: feed an input, drain
//! every output, re-arm the timer. Each connection has a reader task (socket -> broker) and a
//! writer task (broker -> socket, vectored writes, records never copied). Storage commands go to
//! a [`Store`]; completions, [`Control`] queries and the stop come back through
//! `kelp-driver`'s [`Mailbox`], which wakes the loop with a [`Notify`]. This crate holds no
//! protocol logic.
//!
//! Graceful stop: once [`Control::stop`] is called, the listener is closed, what connections
//! send from then on is read and dropped, and the loop goes on until every request read has
//! been answered and its response written or [`Options::shutdown_grace`] has passed (see
//! [`Mailbox::stop_begins`]); then the writers finish what is queued, and the store is synced
//! ([`Store::sync`]).
//!
//! Back-pressure: the writer reports every write back to the broker (`Input::Written`), and a
//! reader stops between the broker's `Output::PauseRead` and `Output::ResumeRead` (too many
//! requests in flight or too many response bytes unwritten), so a client that never reads its
//! responses cannot grow kelp's memory.
//!
//! In-process connections ([`Control::connect_local`], see `kelp_driver::local`) are served by
//! the same loop: their reports arrive through the [`Mailbox`] and wake the loop, their
//! request bytes are fed to the broker while it reads them, and what the broker sends them
//! goes to their reader. They are closed like sockets at the stop.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kelp_core::io::Frame;
use kelp_core::{Broker, CmdId, Command, ConnId, Input, Now};
use kelp_driver::{Clock, LocalConns, MAX_IOVECS, Mailbox, OutQueue, READ_CHUNK, is_local};
pub use kelp_driver::{Control, LocalConn, Options, Snapshot};
use kelp_storage::{Sink, Store};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};

thread_local! {
    /// One read buffer per runtime thread, shared by every connection's reader. Each read
    /// appends to it and is split off as `Bytes` that the broker keeps (no copy); the next
    /// read goes into what is left of the allocation, and a fresh one is taken when little is.
    static READ_BUF: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}
/// Below this much room left in the read buffer, the next read gets a fresh allocation.
const MIN_READ_ROOM: usize = READ_CHUNK / 4;
/// Bytes a reader may have handed to the broker task that it has not yet consumed.
const MAX_UNPROCESSED: usize = 1024 * 1024;

enum Event {
    Received(ConnId, Bytes),
    Closed(ConnId),
    /// The writer put this many bytes of the connection's output on the socket.
    Written(ConnId, usize),
}

/// What the broker task keeps per connection.
struct ConnHandle {
    frames: mpsc::UnboundedSender<Frame>,
    shared: Arc<ConnShared>,
}

/// State shared between the broker task and a connection's reader and writer.
#[derive(Default)]
struct ConnShared {
    /// Bytes read and sent to the broker task, not yet handed to the broker.
    unprocessed: AtomicUsize,
    /// The broker asked not to be read (`Output::PauseRead`).
    paused: AtomicBool,
    resume: Notify,
    closed: AtomicBool,
    /// The server is stopping: bytes read are dropped, not handed to the broker.
    discard: AtomicBool,
}

impl ConnShared {
    /// Sets `flag` and wakes the reader to look at it.
    fn raise(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::Release);
        self.resume.notify_one();
    }
}

/// The broker task's IO: the connections and the store.
struct Conns {
    map: HashMap<ConnId, ConnHandle>,
    local: LocalConns,
    store: Box<dyn Store>,
    sink: Sink,
}

impl kelp_driver::Io for Conns {
    fn send(&mut self, conn: ConnId, bytes: Frame) {
        if is_local(conn) {
            return self.local.send(conn, bytes);
        }
        if let Some(h) = self.map.get(&conn) {
            let _ = h.frames.send(bytes);
        }
    }

    fn storage(&mut self, cmd: CmdId, command: Command) {
        self.store.submit(cmd, command, &self.sink);
    }

    fn close(&mut self, conn: ConnId) {
        if is_local(conn) {
            return self.local.close(conn);
        }
        // Dropping the sender lets the writer finish what is queued, then close.
        if let Some(h) = self.map.remove(&conn) {
            h.shared.raise(&h.shared.closed);
        }
    }

    fn read(&mut self, conn: ConnId, on: bool) {
        if is_local(conn) {
            return self.local.read(conn, on);
        }
        if let Some(h) = self.map.get(&conn) {
            h.shared.paused.store(!on, Ordering::Release);
            if on {
                h.shared.resume.notify_one();
            }
        }
    }
}

/// Serves Kafka clients on `listener` until [`Control::stop`] is called, then stops gracefully
/// (see the module docs) and returns.
///
/// `make_broker` builds the broker from the clock's first reading (the broker's first output
/// asks the store to recover, so it serves once the store is ready). `on_ready` receives the
/// [`Control`] handle before the loop starts.
pub async fn serve(
    listener: TcpListener,
    make_broker: impl FnOnce(Now) -> Broker,
    store: Box<dyn Store>,
    options: Options,
    on_ready: impl FnOnce(Control),
) -> io::Result<()> {
    let clock = Clock::start();
    let mut broker = make_broker(clock.now());
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    let mut mailbox = Mailbox::new(Arc::new(move || waker.notify_one()), options.shutdown_grace);
    on_ready(mailbox.control());
    let sink: Sink = Arc::new(mailbox.completer());
    let mut conns = Conns { map: HashMap::new(), local: LocalConns::default(), store, sink };
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    // Each writer task holds a clone; when all are gone, every response has been written.
    let (writers, mut writers_done) = mpsc::channel::<()>(1);
    let mut next_conn = 0u64;
    let mut listener = Some(listener);

    kelp_driver::drain(&mut broker, &mut conns);
    loop {
        // Completions and local connections' reports that arrived while draining are handled
        // before waiting again.
        while let Some((cmd, result)) = mailbox.completion() {
            broker.handle_input(clock.now(), Input::Completed { cmd, result });
            kelp_driver::drain(&mut broker, &mut conns);
        }
        pump_local(&mut broker, &mut conns, &clock, &mailbox, &options);
        mailbox.answer_queries(&broker);
        if mailbox.stop_begins(conns.map.len() + conns.local.len()) {
            listener = None;
            conns.local.stop_begins();
            for h in conns.map.values() {
                h.shared.raise(&h.shared.discard);
            }
        }
        if mailbox.finished(&broker) {
            break;
        }
        let deadline = broker.poll_timeout().map(|t| clock.at(t));
        tokio::select! {
            // A completion, a query or the stop: handled at the top of the loop.
            () = wake.notified() => {}
            () = sleep_until(mailbox.grace_end()) => {}
            accepted = accept(listener.as_ref()) => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                if !options.admit(conns.map.len() + conns.local.len(), peer) {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let conn = ConnId(next_conn);
                next_conn += 1;
                let (rd, wr) = stream.into_split();
                conns.map.insert(conn, spawn_conn(conn, peer, rd, wr, events_tx.clone(), writers.clone()));
                tracing::debug!(?conn, %peer, "accepted");
                broker.handle_input(clock.now(), Input::Accepted { conn, peer, origin: Default::default() });
            }
            Some(ev) = events.recv() => handle_event(&mut broker, &mut conns, &clock, ev),
            () = sleep_until(deadline) => broker.handle_input(clock.now(), Input::Tick),
        }
        kelp_driver::drain(&mut broker, &mut conns);
    }
    // Every connection closes: readers stop, writers finish what is queued, then shut down.
    for (_, h) in conns.map.drain() {
        h.shared.raise(&h.shared.closed);
    }
    conns.local.close_all();
    let until = mailbox.grace_end().map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std);
    drop(writers);
    let _ = tokio::time::timeout_at(until, writers_done.recv()).await;
    // Storage commands still outstanding (only after the grace period ran out) complete into a
    // channel nobody reads; what they wrote is synced below all the same.
    conns.store.sync()?;
    tracing::info!("stopped: responses written, store synced");
    Ok(())
}

/// Feeds the broker what local connections have for it, one input at a time, draining its
/// output after each.
fn pump_local(broker: &mut Broker, conns: &mut Conns, clock: &Clock, mailbox: &Mailbox, options: &Options) {
    while let Some(input) = conns.local.next_input(mailbox, options, conns.map.len()) {
        broker.handle_input(clock.now(), input);
        kelp_driver::drain(broker, conns);
    }
}

/// Feeds what a connection's reader or writer reports to the broker.
fn handle_event(broker: &mut Broker, conns: &mut Conns, clock: &Clock, ev: Event) {
    match ev {
        Event::Received(conn, bytes) => {
            let len = bytes.len();
            broker.handle_input(clock.now(), Input::ReceivedOwned { conn, bytes });
            if let Some(h) = conns.map.get(&conn) {
                let before = h.shared.unprocessed.fetch_sub(len, Ordering::AcqRel);
                if before > MAX_UNPROCESSED && before - len <= MAX_UNPROCESSED {
                    h.shared.resume.notify_one();
                }
            }
        }
        Event::Written(conn, bytes) => broker.handle_input(clock.now(), Input::Written { conn, bytes }),
        Event::Closed(conn) => {
            if let Some(h) = conns.map.remove(&conn) {
                h.shared.raise(&h.shared.closed);
                broker.handle_input(clock.now(), Input::Closed { conn });
            }
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
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
    let shared = Arc::new(ConnShared::default());
    let (frames_tx, frames_rx) = mpsc::unbounded_channel::<Frame>();
    let events_for_writer = events.clone();
    tokio::spawn(read_loop(conn, peer, rd, shared.clone(), events));
    tokio::spawn(async move {
        write_loop(conn, wr, frames_rx, events_for_writer).await;
        drop(alive);
    });
    ConnHandle { frames: frames_tx, shared }
}

async fn read_loop(
    conn: ConnId,
    peer: SocketAddr,
    rd: OwnedReadHalf,
    shared: Arc<ConnShared>,
    events: mpsc::UnboundedSender<Event>,
) {
    loop {
        while (shared.paused.load(Ordering::Acquire) || shared.unprocessed.load(Ordering::Acquire) > MAX_UNPROCESSED)
            && !shared.closed.load(Ordering::Acquire)
            && !shared.discard.load(Ordering::Acquire)
        {
            shared.resume.notified().await;
        }
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        // Wait for data without holding a buffer, then read into the thread's buffer: an idle
        // connection costs no read buffer of its own.
        if rd.readable().await.is_err() {
            break;
        }
        match READ_BUF.with_borrow_mut(|buf| read_chunk(&rd, buf)) {
            Ok(b) if b.is_empty() => break,
            Ok(_) if shared.discard.load(Ordering::Acquire) => {}
            Ok(b) => {
                shared.unprocessed.fetch_add(b.len(), Ordering::AcqRel);
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
}

/// One read from the socket into the thread's buffer, split off as `Bytes`.
fn read_chunk(rd: &OwnedReadHalf, buf: &mut BytesMut) -> io::Result<Bytes> {
    debug_assert!(buf.is_empty());
    if buf.capacity() < MIN_READ_ROOM {
        // The chunks split off before keep the old allocation alive as long as they live.
        *buf = BytesMut::with_capacity(READ_CHUNK);
    }
    let n = rd.try_read_buf(buf)?;
    Ok(buf.split_to(n).freeze())
}

async fn write_loop(
    conn: ConnId,
    mut wr: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Frame>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut queue = OutQueue::default();
    while let Some(first) = frames.recv().await {
        // Gather what is queued into one vectored write.
        queue.push(first);
        while queue.len() < MAX_IOVECS {
            match frames.try_recv() {
                Ok(more) => queue.push(more),
                Err(_) => break,
            }
        }
        let mut total = 0;
        while !queue.is_empty() {
            match wr.write_vectored(&queue.slices()).await {
                Ok(n) if n > 0 => {
                    queue.advance(n);
                    total += n;
                }
                _ => return,
            }
        }
        if events.send(Event::Written(conn, total)).is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}
