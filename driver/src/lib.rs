//! What kelp's two drivers (kelp-runtime-tokio, kelp-runtime-mio) share, so that each holds
//! only its own IO: how a server runs ([`Options`]), the clock that feeds the core ([`Clock`]),
//! the handle other threads use to query and stop a running server ([`Control`]) and the loop's
//! side of it ([`Mailbox`]: storage completions, queries, the graceful stop), the dispatch of
//! every [`Output`] to a driver's [`Io`] ([`drain`]), and the queue of response chunks a socket
//! writes with vectored writes ([`OutQueue`]), and in-process connections ([`local`]:
//! [`Control::connect_local`] hands out a [`LocalConn`], the loop serves it through
//! [`LocalConns`]), the listeners a server is given ([`Bound`]) and their TLS ([`tls`]:
//! rustls configuration, reloaded when its files change, and the client certificate's subject).
//!
//! Nothing here does network IO, and nothing depends on a tokio runtime, mio or a storage
//! backend (tokio's runtime-agnostic `sync` primitives carry the local connections).
//! Drivers hold no protocol logic, and neither does this crate.

mod clock;
mod control;
pub mod local;
mod out;
#[cfg(any(test, feature = "test-pki"))]
pub mod testpki;
pub mod tls;

pub use clock::Clock;
pub use control::{Control, Mailbox, Snapshot, Wake};
pub use local::{LOCAL_PEER, LocalClosed, LocalConn, LocalConns, LocalReader, LocalWriter, is_local};
pub use out::OutQueue;
pub use tls::TlsSource;

use std::sync::Arc;

use kelp_core::io::Frame;
use kelp_core::{Broker, CmdId, Command, ConnId, Output};

/// Bytes read from a socket at a time.
pub const READ_CHUNK: usize = 64 * 1024;

/// Chunks gathered into one vectored write.
pub const MAX_IOVECS: usize = 64;

/// How a server runs, beyond the broker's own configuration.
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

impl Options {
    /// Whether a connection from `peer` may join the `open` ones (a refusal is logged).
    #[must_use]
    pub fn admit(&self, open: usize, peer: std::net::SocketAddr) -> bool {
        let ok = open < self.max_connections;
        if !ok {
            tracing::warn!(%peer, max_connections = self.max_connections, "too many connections: refused");
        }
        ok
    }
}

/// A listening socket a server accepts clients on: its place in `Config::listeners` (what the
/// broker is told in `Origin::listener`), and its TLS configuration if it is a TLS listener.
#[derive(Debug)]
pub struct Bound {
    /// The socket, bound and listening.
    pub listener: std::net::TcpListener,
    /// The listener's index in the broker's `Config::listeners`.
    pub index: u16,
    /// `Some` on an SSL or SASL_SSL listener: connections shake hands first.
    pub tls: Option<Arc<TlsSource>>,
}

impl Bound {
    /// A plaintext listener at `index`.
    #[must_use]
    pub fn plaintext(listener: std::net::TcpListener, index: u16) -> Self {
        Self { listener, index, tls: None }
    }
}

/// A driver's side of the [`Output`]s: one method per duty.
pub trait Io {
    /// Write `bytes` to `conn`, after what was queued before.
    fn send(&mut self, conn: ConnId, bytes: Frame);
    /// Run a storage command; its answer comes back as `Input::Completed`.
    fn storage(&mut self, cmd: CmdId, command: Command);
    /// Close `conn` once what was queued for it is written; it is not read any more.
    fn close(&mut self, conn: ConnId);
    /// Stop (`false`) or start again (`true`) reading `conn` (back-pressure).
    fn read(&mut self, conn: ConnId, on: bool);
}

/// Hands every output the broker has to `io`, until it has none.
pub fn drain(broker: &mut Broker, io: &mut impl Io) {
    while let Some(out) = broker.poll_output() {
        match out {
            Output::Send { conn, bytes } => io.send(conn, bytes),
            Output::Storage { cmd, command } => io.storage(cmd, command),
            Output::Close { conn, reason } => {
                tracing::info!(?conn, ?reason, "closing connection");
                io.close(conn);
            }
            Output::PauseRead { conn } => io.read(conn, false),
            Output::ResumeRead { conn } => io.read(conn, true),
        }
    }
}
