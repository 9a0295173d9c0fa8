//! In-process connections: a Kafka client living in the same process as the broker (the
//! schema registry, which keeps its state in a topic) talks to it through the driver's loop,
//! without a socket.
//!
//! [`Control::connect_local`](crate::Control::connect_local) opens one and returns a
//! [`LocalConn`]. Its user writes the Kafka byte stream exactly as a TCP client would
//! (size-prefixed request frames, in any split) with [`LocalConn::send`] and reads the broker's
//! response bytes with [`LocalConn::recv`]; both are `async` and work from any executor or
//! thread, since they rest on tokio's runtime-agnostic `sync` primitives only. To the broker
//! the connection looks like any other: `Input::Accepted` from [`LOCAL_PEER`], then
//! `Input::ReceivedOwned`, `Input::Written` and `Input::Closed`. Its [`ConnId`] has the top
//! bit set ([`is_local`]), a range socket connections never reach.
//!
//! Each connection mimics a socket's two buffers, so memory stays bounded whatever its user
//! does:
//! - Requests: [`LocalConn::send`] puts bytes in an inbox of [`LOCAL_INBOX`] bytes (a socket's
//!   receive buffer) and waits while it is full. The loop moves them to the broker only while
//!   the broker reads the connection (between `Output::PauseRead` and `Output::ResumeRead` the
//!   inbox is left alone, and so fills up and stops the sender).
//! - Responses: `Output::Send` queues the chunks for [`LocalConn::recv`], and each chunk is
//!   reported written (`Input::Written`) only when `recv` hands it over. A user that never
//!   reads lets the broker's count of unwritten bytes grow past its limit; the broker then
//!   pauses reading the connection, its inbox fills, and `send` waits. The response queue is
//!   bounded by the broker's own limits (unwritten bytes, requests in flight).
//!
//! Closing: dropping (or [`LocalConn::close`]) either half closes the connection in the broker
//! (`Input::Closed`), as a client's FIN does for a socket. When the broker closes it
//! (`Output::Close`) or the server stops, `recv` yields what was queued and then `None`, and
//! `send` fails with [`LocalClosed`].

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use kelp_core::io::Frame;
use kelp_core::{ConnId, Input};
use tokio::sync::{Notify, mpsc};

use crate::{Mailbox, Options, Wake};

/// The peer address the broker sees for every local connection.
pub const LOCAL_PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// Local connections are numbered from here up: socket connections count from 0 and never
/// reach it.
pub const LOCAL_CONN_BASE: u64 = 1 << 63;

/// Request bytes a local connection may have waiting for the loop (its "receive buffer"):
/// [`LocalConn::send`] waits while this much is queued.
pub const LOCAL_INBOX: usize = 256 * 1024;

/// Whether `conn` is a local connection (numbered from [`LOCAL_CONN_BASE`]).
#[must_use]
pub fn is_local(conn: ConnId) -> bool {
    conn.0 >= LOCAL_CONN_BASE
}

/// The connection is closed: by the broker, by the other half, or because the server stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalClosed;

impl core::fmt::Display for LocalClosed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("local connection closed")
    }
}

impl std::error::Error for LocalClosed {}

/// What a local connection tells the loop (through the [`Mailbox`]).
pub(crate) enum LocalEvent {
    /// A new connection, with the loop's end of it.
    Opened(ConnId, Entry),
    /// The inbox went from empty to not empty.
    Readable(ConnId),
    /// `recv` handed this many response bytes to the user.
    Written(ConnId, usize),
    /// The user closed the connection (or dropped a half of it).
    Closed(ConnId),
}

/// Request bytes waiting for the loop.
#[derive(Default)]
struct Inbox {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

/// State shared by the user's halves and the loop.
#[derive(Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    /// Either side closed the connection.
    closed: AtomicBool,
    /// The server is stopping: what is sent from now on is dropped (as a socket's bytes are).
    discard: AtomicBool,
    /// The inbox has room again, or the connection closed: wakes a waiting `send`.
    space: Notify,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // An inbox is a plain queue: a panic while holding it cannot leave it inconsistent.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection closed (true the first time) and wakes a waiting `send`.
    fn close(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        self.space.notify_one();
        first
    }
}

/// The loop's end of one local connection.
pub(crate) struct Entry {
    frames: mpsc::UnboundedSender<Frame>,
    shared: Arc<Shared>,
    /// The broker asked not to be read (`Output::PauseRead`).
    paused: bool,
}

impl Entry {
    /// Closes from the loop's side: `send` fails from now on, and dropping `frames` ends
    /// `recv` after what is queued.
    fn shut(self) {
        self.shared.close();
        let mut inbox = self.shared.inbox();
        inbox.chunks.clear();
        inbox.bytes = 0;
    }
}

/// What both halves of a connection hold: how to reach the loop.
struct Link {
    conn: ConnId,
    shared: Arc<Shared>,
    events: Sender<LocalEvent>,
    wake: Wake,
}

impl Link {
    /// Tells the loop `ev`; false once the loop has gone.
    fn report(&self, ev: LocalEvent) -> bool {
        let sent = self.events.send(ev).is_ok();
        if sent {
            (self.wake)();
        }
        sent
    }

    fn close(&self) {
        if self.shared.close() {
            self.report(LocalEvent::Closed(self.conn));
        }
    }
}

/// Opens a local connection numbered `conn`: the loop's end goes to `events`, the user's end
/// is returned. `None` when the loop has gone.
pub(crate) fn open(conn: ConnId, events: &Sender<LocalEvent>, wake: &Wake) -> Option<LocalConn> {
    let shared = Arc::new(Shared::default());
    let (frames_tx, frames) = mpsc::unbounded_channel();
    let entry = Entry { frames: frames_tx, shared: shared.clone(), paused: false };
    events.send(LocalEvent::Opened(conn, entry)).ok()?;
    wake();
    let link = Arc::new(Link { conn, shared, events: events.clone(), wake: wake.clone() });
    Some(LocalConn {
        writer: LocalWriter { link: link.clone() },
        reader: LocalReader { link, frames, pending: VecDeque::new() },
    })
}

/// An in-process Kafka connection to the broker (see the module docs). Dropping it closes it.
pub struct LocalConn {
    writer: LocalWriter,
    reader: LocalReader,
}

impl core::fmt::Debug for LocalConn {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalConn").field("conn", &self.id()).finish_non_exhaustive()
    }
}

impl LocalConn {
    /// The connection's id, as the broker knows it.
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.writer.link.conn
    }

    /// See [`LocalWriter::send`].
    ///
    /// # Errors
    /// [`LocalClosed`] once the connection is closed.
    pub async fn send(&mut self, bytes: impl Into<Bytes>) -> Result<(), LocalClosed> {
        self.writer.send(bytes).await
    }

    /// See [`LocalReader::recv`].
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.reader.recv().await
    }

    /// The two halves, for a writing task and a reading task. Dropping either closes the
    /// connection.
    #[must_use]
    pub fn split(self) -> (LocalWriter, LocalReader) {
        (self.writer, self.reader)
    }

    /// Closes the connection (the same as dropping it).
    pub fn close(self) {}
}

/// The sending half of a [`LocalConn`].
pub struct LocalWriter {
    link: Arc<Link>,
}

impl core::fmt::Debug for LocalWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalWriter").field("conn", &self.link.conn).finish_non_exhaustive()
    }
}

impl LocalWriter {
    /// Queues `bytes` (any piece of the request stream) for the broker, waiting while the
    /// connection's inbox is full (the broker is not reading it: too many requests in flight,
    /// or too many response bytes not taken by [`LocalReader::recv`]). Cancel-safe: dropped
    /// while waiting, nothing was queued. While the server stops, bytes are dropped.
    ///
    /// # Errors
    /// [`LocalClosed`] once the connection is closed.
    pub async fn send(&mut self, bytes: impl Into<Bytes>) -> Result<(), LocalClosed> {
        let bytes = bytes.into();
        let shared = &self.link.shared;
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return Err(LocalClosed);
            }
            if shared.discard.load(Ordering::Acquire) || bytes.is_empty() {
                return Ok(());
            }
            let was_empty = {
                let mut inbox = shared.inbox();
                // An empty inbox takes a chunk of any size, so a large request still goes.
                (inbox.bytes < LOCAL_INBOX).then(|| {
                    let was_empty = inbox.chunks.is_empty();
                    inbox.bytes += bytes.len();
                    inbox.chunks.push_back(bytes.clone());
                    was_empty
                })
            };
            match was_empty {
                Some(true) => {
                    return if self.link.report(LocalEvent::Readable(self.link.conn)) {
                        Ok(())
                    } else {
                        Err(LocalClosed)
                    };
                }
                Some(false) => return Ok(()),
                None => shared.space.notified().await,
            }
        }
    }

    /// Closes the connection (the same as dropping this half).
    pub fn close(self) {}
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        self.link.close();
    }
}

/// The receiving half of a [`LocalConn`].
pub struct LocalReader {
    link: Arc<Link>,
    frames: mpsc::UnboundedReceiver<Frame>,
    /// Chunks of a response taken from `frames` and not yet handed over.
    pending: VecDeque<Bytes>,
}

impl core::fmt::Debug for LocalReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalReader").field("conn", &self.link.conn).finish_non_exhaustive()
    }
}

impl LocalReader {
    /// The next piece of the broker's response stream (a response may come in several pieces,
    /// and pieces are not aligned to anything: read the size prefix). `None` once the
    /// connection is closed and everything queued before has been taken. Each piece counts as
    /// written for the broker's back-pressure when it is returned. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                self.link.report(LocalEvent::Written(self.link.conn, b.len()));
                return Some(b);
            }
            let frame = self.frames.recv().await?;
            self.pending.extend(frame.into_iter().filter(|b| !b.is_empty()));
        }
    }

    /// Closes the connection (the same as dropping this half).
    pub fn close(self) {}
}

impl Drop for LocalReader {
    fn drop(&mut self) {
        self.link.close();
    }
}

/// The loop's side of every local connection: what a driver's [`crate::Io`] calls for them
/// (`send`, `close`, `read`), and [`LocalConns::next_input`], which turns what the
/// connections did into the broker's inputs.
#[derive(Default)]
pub struct LocalConns {
    map: HashMap<ConnId, Entry>,
    /// Connections that may have request bytes to hand to the broker.
    ready: Vec<ConnId>,
}

impl core::fmt::Debug for LocalConns {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalConns").field("open", &self.map.len()).finish_non_exhaustive()
    }
}

impl LocalConns {
    /// How many local connections are open.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `Output::Send`: queues a response for the connection's reader.
    pub fn send(&mut self, conn: ConnId, bytes: Frame) {
        if let Some(e) = self.map.get(&conn) {
            // The reader may have gone; its close is on its way to the loop.
            let _ = e.frames.send(bytes);
        }
    }

    /// `Output::Close`: the reader gets what is queued, then the end.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(e) = self.map.remove(&conn) {
            e.shut();
        }
    }

    /// `Output::PauseRead` (`on` false) and `Output::ResumeRead` (`on` true).
    pub fn read(&mut self, conn: ConnId, on: bool) {
        if let Some(e) = self.map.get_mut(&conn) {
            e.paused = !on;
            if on && !self.ready.contains(&conn) {
                self.ready.push(conn);
            }
        }
    }

    /// The server is stopping: what connections sent and send from now on is dropped.
    pub fn stop_begins(&mut self) {
        for e in self.map.values() {
            e.shared.discard.store(true, Ordering::Release);
            let mut inbox = e.shared.inbox();
            inbox.chunks.clear();
            inbox.bytes = 0;
            drop(inbox);
            e.shared.space.notify_one();
        }
    }

    /// The server has stopped: every connection is closed, and its reader gets what is
    /// queued, then the end.
    pub fn close_all(&mut self) {
        for (_, e) in self.map.drain() {
            e.shut();
        }
        self.ready.clear();
    }

    /// The next input for the broker from the local connections, if any: an event the
    /// connections reported through `mailbox` (opened, bytes taken by a reader, closed), else
    /// a chunk of request bytes from a connection the broker reads. A new connection is
    /// refused (closed at once) while the server stops or when `options` admits no more
    /// beside the `sockets` open. Feed one input, then drain the broker, then ask again.
    pub fn next_input(&mut self, mailbox: &Mailbox, options: &Options, sockets: usize) -> Option<Input<'static>> {
        while let Some(ev) = mailbox.local_event() {
            if let Some(input) = self.event(ev, mailbox.is_stopping(), options, sockets) {
                return Some(input);
            }
        }
        let (conn, bytes) = self.next_chunk()?;
        Some(Input::ReceivedOwned { conn, bytes })
    }

    fn event(&mut self, ev: LocalEvent, stopping: bool, options: &Options, sockets: usize) -> Option<Input<'static>> {
        match ev {
            LocalEvent::Opened(conn, entry) => {
                if stopping || !options.admit(sockets + self.map.len(), LOCAL_PEER) {
                    entry.shut();
                    return None;
                }
                tracing::debug!(?conn, "local connection opened");
                self.map.insert(conn, entry);
                Some(Input::Accepted { conn, peer: LOCAL_PEER, origin: kelp_core::io::Origin::local() })
            }
            LocalEvent::Readable(conn) => {
                if self.map.contains_key(&conn) && !self.ready.contains(&conn) {
                    self.ready.push(conn);
                }
                None
            }
            LocalEvent::Written(conn, bytes) => self.map.contains_key(&conn).then_some(Input::Written { conn, bytes }),
            LocalEvent::Closed(conn) => {
                let e = self.map.remove(&conn)?;
                tracing::debug!(?conn, "local connection closed by its user");
                e.shut();
                Some(Input::Closed { conn })
            }
        }
    }

    /// A chunk of request bytes from a connection that has some and is not paused.
    fn next_chunk(&mut self) -> Option<(ConnId, Bytes)> {
        while let Some(&conn) = self.ready.last() {
            let Some(e) = self.map.get(&conn).filter(|e| !e.paused) else {
                // Gone, or paused: `read` puts it back when the broker resumes it.
                self.ready.pop();
                continue;
            };
            let mut inbox = e.shared.inbox();
            let Some(bytes) = inbox.chunks.pop_front() else {
                drop(inbox);
                self.ready.pop();
                continue;
            };
            inbox.bytes -= bytes.len();
            let now_empty = inbox.chunks.is_empty();
            drop(inbox);
            e.shared.space.notify_one();
            if now_empty {
                // The sender reports again when it next fills an empty inbox.
                self.ready.pop();
            }
            if e.shared.discard.load(Ordering::Acquire) {
                continue;
            }
            return Some((conn, bytes));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::*;

    /// Polls `f` once: these futures finish at once when they need not wait.
    fn now<T>(f: impl Future<Output = T>) -> Poll<T> {
        pin!(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    fn ready<T>(f: impl Future<Output = T>) -> T {
        match now(f) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the future waits"),
        }
    }

    fn halves_are_send<T: Send>() {}

    #[test]
    fn connections_can_move_between_threads() {
        halves_are_send::<LocalConn>();
        halves_are_send::<LocalWriter>();
        halves_are_send::<LocalReader>();
    }

    #[test]
    fn the_loop_sees_open_bytes_pause_written_and_close() {
        let mailbox = Mailbox::new(Arc::new(|| {}), Duration::from_secs(1));
        let (options, mut locals) = (Options::default(), LocalConns::default());
        let mut conn = mailbox.control().connect_local().expect("a connection");
        let id = conn.id();
        assert!(is_local(id) && !is_local(ConnId(u64::from(u32::MAX))));
        let mut next = || locals.next_input(&mailbox, &options, 0);
        assert!(matches!(next(), Some(Input::Accepted { conn, peer, .. }) if conn == id && peer == LOCAL_PEER));
        assert!(next().is_none());

        ready(conn.send(&b"abc"[..])).expect("send");
        assert!(matches!(next(), Some(Input::ReceivedOwned { bytes, .. }) if bytes == b"abc"[..]));
        assert!(next().is_none());

        // Paused: bytes wait in the inbox until the broker resumes the connection.
        locals.read(id, false);
        ready(conn.send(&b"de"[..])).expect("send");
        assert!(locals.next_input(&mailbox, &options, 0).is_none());
        locals.read(id, true);
        let got = locals.next_input(&mailbox, &options, 0);
        assert!(matches!(got, Some(Input::ReceivedOwned { bytes, .. }) if bytes == b"de"[..]));

        // A full inbox makes the sender wait.
        locals.read(id, false);
        ready(conn.send(vec![0u8; LOCAL_INBOX])).expect("send");
        assert!(now(conn.send(&b"f"[..])).is_pending());

        // A response counts as written once taken.
        locals.send(id, Frame::from_vec(vec![Bytes::from_static(b"xy"), Bytes::new(), Bytes::from_static(b"z")]));
        assert_eq!(ready(conn.recv()).as_deref(), Some(&b"xy"[..]));
        let got = locals.next_input(&mailbox, &options, 0);
        assert!(matches!(got, Some(Input::Written { bytes: 2, .. })));
        assert_eq!(ready(conn.recv()).as_deref(), Some(&b"z"[..]));

        drop(conn);
        let mut next = || locals.next_input(&mailbox, &options, 0);
        assert!(matches!(next(), Some(Input::Written { bytes: 1, .. })));
        assert!(matches!(next(), Some(Input::Closed { conn }) if conn == id));
        assert!(next().is_none() && locals.is_empty());
    }

    #[test]
    fn a_broker_close_ends_the_reader_after_what_was_queued() {
        let mailbox = Mailbox::new(Arc::new(|| {}), Duration::from_secs(1));
        let (options, mut locals) = (Options::default(), LocalConns::default());
        let mut conn = mailbox.control().connect_local().expect("a connection");
        assert!(locals.next_input(&mailbox, &options, 0).is_some());
        locals.send(conn.id(), Frame::from_vec(vec![Bytes::from_static(b"last")]));
        locals.close(conn.id());
        assert_eq!(ready(conn.recv()).as_deref(), Some(&b"last"[..]));
        assert_eq!(ready(conn.recv()), None);
        assert_eq!(ready(conn.send(&b"more"[..])), Err(LocalClosed));
        // The close the user's drop reports finds the connection gone: no input.
        drop(conn);
        assert!(locals.next_input(&mailbox, &options, 0).is_none());
    }
}
