//! The scenario harness: the real [`Broker`] with a [`MemStore`] and scripted clients, in
//! virtual time. Tests send typed requests, decide when storage commands run (all at once,
//! one by one, or failed), move the clock, and read typed responses back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use kelp_core::codec::generated::header::{RequestHeader, ResponseHeader};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, KStr, Message, Reader, Writer};
use kelp_core::io::{CloseReason, StorageError};
use kelp_core::mem_store::MemStore;
use kelp_core::time::Duration;
use kelp_core::{Broker, CmdId, Command, Completion, Config, ConnId, Input, Instant, Now, Output};

/// Broker + store + clients in virtual time.
pub struct Harness {
    /// The broker under test.
    pub broker: Broker,
    /// The reference store.
    pub store: MemStore,
    now: Now,
    next_conn: u64,
    next_correlation: i32,
    /// Storage commands emitted and not yet run, in order.
    pub queued: VecDeque<(CmdId, Command)>,
    /// Bytes each connection has received.
    inbox: HashMap<ConnId, BytesMut>,
    /// Connections the broker closed, with why.
    pub closed: HashMap<ConnId, CloseReason>,
    /// Whether storage commands run as soon as they are emitted.
    pub auto_storage: bool,
    sent: HashSet<(ConnId, i32)>,
}

impl Harness {
    /// A broker with `config`, recovered from an empty store.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self::with_store(config, MemStore::new())
    }

    /// A broker with `config`, recovered from `store` (a restart).
    #[must_use]
    pub fn with_store(config: Config, store: MemStore) -> Self {
        let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
        let mut h = Self {
            broker: Broker::new(config, 42, now),
            store,
            now,
            next_conn: 0,
            next_correlation: 1,
            queued: VecDeque::new(),
            inbox: HashMap::new(),
            closed: HashMap::new(),
            auto_storage: true,
            sent: HashSet::new(),
        };
        h.drive();
        h
    }

    /// The current virtual time.
    #[must_use]
    pub fn now(&self) -> Now {
        self.now
    }

    /// Opens a client connection.
    pub fn connect(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let peer: SocketAddr = "127.0.0.1:50000".parse().expect("literal address");
        self.broker.handle_input(self.now, Input::Accepted { conn, peer });
        self.inbox.insert(conn, BytesMut::new());
        self.drive();
        conn
    }

    /// Encodes a request frame (size prefix, header, body).
    #[must_use]
    pub fn frame(body: &RequestBody, version: i16, correlation_id: i32) -> Bytes {
        let key = body.api_key();
        let hv = key.request_header_version(version);
        let header = RequestHeader {
            request_api_key: key.0,
            request_api_version: version,
            correlation_id,
            client_id: Some(KStr::from("kelp-harness")),
            ..Default::default()
        };
        let len = header.encoded_len(hv) + body.encoded_len(version);
        let mut w = Writer::default();
        w.i32(i32::try_from(len).expect("test frames are small"));
        header.encode(&mut w, hv);
        body.encode(&mut w, version);
        w.into_bytes()
    }

    /// Sends raw bytes on `conn` and processes them (storage too, if automatic).
    pub fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.broker.handle_input(self.now, Input::Received { conn, bytes });
        self.drive();
    }

    /// Sends a request; returns its correlation id.
    pub fn send(&mut self, conn: ConnId, body: &RequestBody, version: i16) -> i32 {
        let corr = self.next_correlation;
        self.next_correlation += 1;
        self.sent.insert((conn, corr));
        let frame = Self::frame(body, version, corr);
        self.send_raw(conn, &frame);
        corr
    }

    /// Drains outputs; runs storage commands while `auto_storage` is on.
    pub fn drive(&mut self) {
        loop {
            while let Some(out) = self.broker.poll_output() {
                match out {
                    Output::Send { conn, bytes } => {
                        assert!(!self.closed.contains_key(&conn), "bytes sent after close on {conn:?}");
                        let inbox = self.inbox.entry(conn).or_default();
                        for b in bytes {
                            inbox.extend_from_slice(&b);
                        }
                    }
                    Output::Storage { cmd, command } => self.queued.push_back((cmd, command)),
                    Output::Close { conn, reason } => {
                        self.closed.insert(conn, reason);
                    }
                }
            }
            if !self.auto_storage || self.queued.is_empty() {
                return;
            }
            self.run_one_storage();
        }
    }

    /// Runs the oldest queued storage command against the store.
    pub fn run_one_storage(&mut self) -> bool {
        let Some((cmd, command)) = self.queued.pop_front() else { return false };
        let result = self.store.execute(command);
        self.broker.handle_input(self.now, Input::Completed { cmd, result });
        true
    }

    /// Fails the oldest queued storage command with `err` (it has no effect on the store).
    pub fn fail_one_storage(&mut self, err: StorageError) -> bool {
        let Some((cmd, _)) = self.queued.pop_front() else { return false };
        self.broker.handle_input(self.now, Input::Completed { cmd, result: Completion::Failed(err) });
        true
    }

    /// Moves virtual time forward and fires due timers.
    pub fn advance(&mut self, d: Duration) {
        self.now.mono = self.now.mono + d;
        self.now.wall_ms += i64::try_from(d.as_millis()).unwrap_or(0);
        self.broker.handle_input(self.now, Input::Tick);
        self.drive();
    }

    /// The next whole response on `conn`, decoded as `api` at `version`, if one has arrived.
    pub fn recv(&mut self, conn: ConnId, api: ApiKey, version: i16) -> Option<(i32, ResponseBody)> {
        let inbox = self.inbox.get_mut(&conn)?;
        let size = usize::try_from(i32::from_be_bytes(*inbox.first_chunk::<4>()?)).ok()?;
        if inbox.len() < 4 + size {
            return None;
        }
        inbox.advance(4);
        let frame = inbox.split_to(size).freeze();
        let mut r = Reader::new(&frame);
        let header = ResponseHeader::decode(&mut r, api.response_header_version(version)).expect("response header");
        let body = ResponseBody::decode(api, &mut r, version).expect("response body decodes");
        assert_eq!(r.remaining(), 0, "response has trailing bytes");
        assert!(self.sent.remove(&(conn, header.correlation_id)), "response to a request never sent (or twice)");
        Some((header.correlation_id, body))
    }

    /// Bytes waiting in `conn`'s inbox.
    #[must_use]
    pub fn pending_bytes(&self, conn: ConnId) -> usize {
        self.inbox.get(&conn).map_or(0, BytesMut::len)
    }

    /// Sends a request and returns its response, which must arrive without time passing.
    pub fn call(&mut self, conn: ConnId, body: RequestBody, version: i16) -> ResponseBody {
        let api = body.api_key();
        let corr = self.send(conn, &body, version);
        let (got, resp) = self.recv(conn, api, version).unwrap_or_else(|| panic!("no response to {api:?} v{version}"));
        assert_eq!(got, corr, "responses out of order");
        resp
    }
}

/// The default test configuration: auto-create on, three partitions for new topics.
#[must_use]
pub fn test_config() -> Config {
    Config { default_partitions: 3, ..Config::default() }
}

/// Unwraps a response body of the expected kind.
#[macro_export]
macro_rules! expect_body {
    ($body:expr, $variant:ident) => {
        match $body {
            kelp_core::codec::generated::ResponseBody::$variant(m) => m,
            other => panic!("expected {} response, got {:?}", stringify!($variant), other.api_key()),
        }
    };
}

/// Durations for tests.
#[must_use]
pub fn ms(n: i64) -> Duration {
    Duration::from_millis(n)
}
