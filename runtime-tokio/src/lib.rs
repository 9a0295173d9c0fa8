//! The tokio driver for kelp's sans-IO broker.
//!
//! One task owns the [`Broker`] and runs the loop of `kelp-core`'s docs: feed an input, drain
//! every output, re-arm the timer. Each connection has a reader task (socket -> broker) and a
//! writer task (broker -> socket, vectored writes, records never copied). Storage commands go to
//! a [`Store`]; completions, [`Control`] queries and the stop come back through
//! `kelp-driver`'s [`Mailbox`], which wakes the loop with a [`Notify`]. This crate holds no
//! protocol logic.
//!
//! Listeners: [`serve`] accepts on every [`Bound`] it is given. A plaintext connection goes to
//! the broker at once; a connection to a TLS listener first shakes hands in a task of its own
//! (tokio-rustls, with the configuration [`kelp_driver::TlsSource`] has at that moment, bounded
//! by [`HANDSHAKE_TIMEOUT`]) and is handed to the broker when the handshake is done, with the
//! client certificate's subject in its `Origin`; a failed handshake drops the connection and
//! nothing else. Handshakes still under way when a stop begins are cancelled (and any left
//! when [`serve`] returns). Plaintext sockets are read into the thread's shared buffer without
//! a copy; a TLS connection's reader and writer are the two halves of its rustls stream.
//!
//! A connection the broker closes (`Output::Close`), or that the stop closes, stops being read
//! at once: its reader waits on the socket and on the connection's flags together, so the
//! socket is released as soon as the writer has written what was queued, not when the peer
//! next sends or closes.
//!
//! Graceful stop: once [`Control::stop`] is called, the listeners are closed, what connections
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
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use kelp_core::io::{Frame, Origin};
use kelp_core::{Broker, CmdId, Command, ConnId, Input, Now};
use kelp_driver::tls::{self, HANDSHAKE_TIMEOUT};
pub use kelp_driver::{Bound, Control, LocalConn, Options, Snapshot};
use kelp_driver::{Clock, LocalConns, MAX_IOVECS, Mailbox, OutQueue, READ_CHUNK, TlsSource, is_local};
use kelp_storage::{Sink, Store};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

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
/// A TLS connection's reads: its own buffer (rustls hands over at most a few records at a
/// time), renewed when less than a quarter is left.
const TLS_READ_CHUNK: usize = 16 * 1024;

enum Event {
    Received(ConnId, Bytes),
    Closed(ConnId),
    /// The writer put this many bytes of the connection's output on the socket (for TLS:
    /// plaintext bytes rustls took).
    Written(ConnId, usize),
    /// A TLS handshake ended: the stream if it succeeded.
    Handshake {
        peer: SocketAddr,
        listener: u16,
        stream: Option<Box<TlsStream<TcpStream>>>,
    },
}

/// A listener being accepted on.
struct Listening {
    socket: TcpListener,
    index: u16,
    tls: Option<Arc<TlsSource>>,
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
    /// TLS handshakes under way: connections admitted, not yet handed to the broker.
    handshaking: usize,
    next_conn: u64,
    events: mpsc::UnboundedSender<Event>,
    /// Each writer task holds a clone; when all are gone, every response has been written.
    writers: mpsc::Sender<()>,
    /// The server still accepts connections (no stop has begun).
    accepting: bool,
}

impl Conns {
    /// Connections counted against `Options::max_connections`.
    fn open(&self) -> usize {
        self.map.len() + self.local.len() + self.handshaking
    }

    /// Starts serving a connection: its reader and writer tasks, and the broker's `Accepted`.
    fn start<W>(&mut self, broker: &mut Broker, clock: &Clock, peer: SocketAddr, origin: Origin, rd: SockRead, wr: W)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let handle = spawn_conn(conn, peer, rd, wr, self.events.clone(), self.writers.clone());
        self.map.insert(conn, handle);
        tracing::debug!(?conn, %peer, listener = origin.listener, tls_subject = ?origin.tls_subject, "accepted");
        broker.handle_input(clock.now(), Input::Accepted { conn, peer, origin });
    }
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

/// Serves Kafka clients on `listeners` until [`Control::stop`] is called, then stops gracefully
/// (see the module docs) and returns. Each listener's `index` is its place in the broker's
/// `Config::listeners`; [`Options::admit`] counts the connections of all of them together.
///
/// `make_broker` builds the broker from the clock's first reading (the broker's first output
/// asks the store to recover, so it serves once the store is ready). `on_ready` receives the
/// [`Control`] handle before the loop starts.
pub async fn serve(
    listeners: Vec<Bound>,
    make_broker: impl FnOnce(Now) -> Broker,
    store: Box<dyn Store>,
    options: Options,
    on_ready: impl FnOnce(Control),
) -> io::Result<()> {
    let mut listeners = listeners
        .into_iter()
        .map(|Bound { listener, index, tls }| {
            listener.set_nonblocking(true)?;
            Ok(Listening { socket: TcpListener::from_std(listener)?, index, tls })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let clock = Clock::start();
    let mut broker = make_broker(clock.now());
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    let mut mailbox = Mailbox::new(Arc::new(move || waker.notify_one()), options.shutdown_grace);
    on_ready(mailbox.control());
    let sink: Sink = Arc::new(mailbox.completer());
    let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let (writers, mut writers_done) = mpsc::channel::<()>(1);
    let mut conns = Conns {
        map: HashMap::new(),
        local: LocalConns::default(),
        store,
        sink,
        handshaking: 0,
        next_conn: 0,
        events: events_tx,
        writers,
        accepting: true,
    };
    // Where the next look for an accepted connection starts: no listener starves the others.
    let mut first = 0;
    // The TLS handshakes under way: cancelled when the stop begins, and when this returns.
    let mut handshakes = JoinSet::new();

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
        // Handshakes that ended (their outcome came as an event): forgotten.
        while handshakes.try_join_next().is_some() {}
        if mailbox.stop_begins(conns.map.len() + conns.local.len()) {
            listeners.clear();
            conns.accepting = false;
            // A handshake that ends from now on would find no server: cancelled, its socket closed.
            handshakes.abort_all();
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
            (i, accepted) = accept(&listeners, &mut first) => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                if !options.admit(conns.open(), peer) {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let l = &listeners[i];
                match &l.tls {
                    None => {
                        let (rd, wr) = stream.into_split();
                        let origin = Origin { listener: l.index, tls_subject: None };
                        conns.start(&mut broker, &clock, peer, origin, SockRead::Plain(rd), wr);
                    }
                    Some(source) => {
                        conns.handshaking += 1;
                        handshakes.spawn(handshake(source.clone(), stream, peer, l.index, conns.events.clone()));
                    }
                }
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
    drop(conns.writers);
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
            // A connection the broker closed may still have reads in the channel: dropped.
            if !conns.map.contains_key(&conn) {
                return;
            }
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
        Event::Handshake { peer, listener, stream } => {
            conns.handshaking -= 1;
            // A handshake that ends after the stop began finds no server: the stream drops.
            let Some(stream) = stream.filter(|_| conns.accepting) else { return };
            let tls_subject = tls::peer_subject(stream.get_ref().1).map(Into::into);
            let (rd, wr) = tokio::io::split(*stream);
            let origin = Origin { listener, tls_subject };
            conns.start(broker, clock, peer, origin, SockRead::Tls(rd, BytesMut::new()), wr);
        }
    }
}

/// The next connection any of `listeners` accepts, with the listener's position; the search
/// starts at `first`, which moves past the listener that gave one. Never ends without
/// listeners.
async fn accept(listeners: &[Listening], first: &mut usize) -> (usize, io::Result<(TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for k in 0..n {
            let i = (*first + k) % n;
            if let Poll::Ready(r) = listeners[i].socket.poll_accept(cx) {
                *first = (i + 1) % n;
                return Poll::Ready((i, r));
            }
        }
        Poll::Pending
    })
    .await
}

/// Shakes hands with a client of a TLS listener, within [`HANDSHAKE_TIMEOUT`], and reports
/// the outcome to the broker task. A failure is the client's business: logged at debug.
async fn handshake(
    source: Arc<TlsSource>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: u16,
    events: mpsc::UnboundedSender<Event>,
) {
    // The configuration of the moment: a reloaded certificate applies from the next handshake.
    let acceptor = tokio_rustls::TlsAcceptor::from(source.server_config());
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept_with(stream, tls::limit_buffers)).await {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, listener, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, listener, "TLS handshake timed out");
            None
        }
    };
    let _ = events.send(Event::Handshake { peer, listener, stream });
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A connection's read side.
enum SockRead {
    /// A plain socket, read into the thread's shared buffer.
    Plain(OwnedReadHalf),
    /// A TLS stream's read half, decrypted into a buffer of the connection's own.
    Tls(ReadHalf<TlsStream<TcpStream>>, BytesMut),
}

impl SockRead {
    /// The next bytes the peer sent: empty at the end of the stream.
    async fn next(&mut self) -> io::Result<Bytes> {
        match self {
            Self::Plain(rd) => loop {
                // Wait for data without holding a buffer, then read into the thread's buffer:
                // an idle connection costs no read buffer of its own.
                rd.readable().await?;
                match READ_BUF.with_borrow_mut(|buf| read_chunk(rd, buf)) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return r,
                }
            },
            Self::Tls(rd, buf) => {
                if buf.capacity() < TLS_READ_CHUNK / 4 {
                    *buf = BytesMut::with_capacity(TLS_READ_CHUNK);
                }
                let n = rd.read_buf(buf).await?;
                Ok(buf.split_to(n).freeze())
            }
        }
    }
}

fn spawn_conn<W>(
    conn: ConnId,
    peer: SocketAddr,
    rd: SockRead,
    wr: W,
    events: mpsc::UnboundedSender<Event>,
    alive: mpsc::Sender<()>,
) -> ConnHandle
where
    W: AsyncWrite + Unpin + Send + 'static,
{
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
    mut rd: SockRead,
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
        // The read waits with the flags: a close (or a pause, or the stop) wakes the reader,
        // which looks at them again, so a closed connection does not keep its socket until the
        // peer sends. Both reads are cancel-safe: a read that loses the race has taken nothing.
        let read = tokio::select! {
            biased;
            () = shared.resume.notified() => continue,
            r = rd.next() => r,
        };
        match read {
            Ok(b) if b.is_empty() => break,
            Ok(_) if shared.discard.load(Ordering::Acquire) => {}
            Ok(b) => {
                shared.unprocessed.fetch_add(b.len(), Ordering::AcqRel);
                if events.send(Event::Received(conn, b)).is_err() {
                    return;
                }
            }
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

/// Writes what the broker sends to `conn`, reporting each batch. `wr` is a socket's write half
/// or a TLS stream's (then `Written` counts the plaintext rustls took, and the flush after each
/// batch puts the records it holds on the socket).
async fn write_loop<W: AsyncWrite + Unpin>(
    conn: ConnId,
    mut wr: W,
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
        if wr.flush().await.is_err() {
            return;
        }
        if events.send(Event::Written(conn, total)).is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}
