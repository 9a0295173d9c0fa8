//! A fuzz target's body: arbitrary byte streams and event orders into the [`Broker`].
//!
//! The input is a little program. Each op byte picks: open a connection; send raw bytes (any
//! split of any stream, valid or not) or a random valid request of a served API on one; run
//! the oldest queued storage command (or fail it without effect); deliver one finished
//! command's completion, any of them (reordered completions); report output written; let time
//! pass; close a connection. At the end every command runs and time moves far ahead.
//!
//! Checked: the broker never panics; nothing is sent after a close; read pauses and resumes
//! alternate and never follow a close; command ids are never reused; every command is completed once; after the end nothing is left parked (every
//! storage command answered, no command emitted and never run).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use kelp_core::SERVED;
use kelp_core::io::StorageError;
use kelp_core::mem_store::MemStore;
use kelp_core::time::{Duration, Instant};
use kelp_core::{Broker, CmdId, Command, Completion, Config, ConnId, Input, Now, Output};

struct State {
    broker: Broker,
    store: MemStore,
    now: Now,
    queued: VecDeque<(CmdId, Command)>,
    done: Vec<(CmdId, Completion)>,
    seen: BTreeSet<CmdId>,
    open: BTreeMap<ConnId, usize>,
    closed: BTreeSet<ConnId>,
    paused: BTreeSet<ConnId>,
    next_conn: u64,
}

impl State {
    fn drain(&mut self) {
        while let Some(out) = self.broker.poll_output() {
            match out {
                Output::Send { conn, bytes } => {
                    assert!(!self.closed.contains(&conn), "bytes sent on {conn:?} after its close");
                    if let Some(n) = self.open.get_mut(&conn) {
                        *n += bytes.iter().map(|b| b.len()).sum::<usize>();
                    }
                }
                Output::Storage { cmd, command } => {
                    assert!(self.seen.insert(cmd), "{cmd:?} emitted twice");
                    self.queued.push_back((cmd, command));
                }
                Output::Close { conn, .. } => {
                    self.closed.insert(conn);
                    self.open.remove(&conn);
                    self.paused.remove(&conn);
                }
                // Bytes still arrive on a paused connection (a driver may have read them
                // already), so the fuzzer goes on sending; pauses and resumes must alternate.
                Output::PauseRead { conn } => {
                    assert!(!self.closed.contains(&conn), "{conn:?} paused after its close");
                    assert!(self.paused.insert(conn), "{conn:?} paused twice");
                }
                Output::ResumeRead { conn } => {
                    assert!(!self.closed.contains(&conn), "{conn:?} resumed after its close");
                    assert!(self.paused.remove(&conn), "{conn:?} resumed but not paused");
                }
            }
        }
    }

    fn input(&mut self, input: Input<'_>) {
        self.broker.handle_input(self.now, input);
        self.drain();
    }

    fn conn(&self, pick: u8) -> Option<ConnId> {
        let n = self.open.len();
        if n == 0 { None } else { self.open.keys().nth(usize::from(pick) % n).copied() }
    }
}

/// Runs one fuzz input (see the module docs).
pub fn broker_events(data: &[u8]) {
    let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
    let config = Config { default_partitions: 2, max_fetch_sessions: 4, ..Config::default() };
    let mut s = State {
        broker: Broker::new(config, 7, now),
        store: MemStore::new(),
        now,
        queued: VecDeque::new(),
        done: Vec::new(),
        seen: BTreeSet::new(),
        open: BTreeMap::new(),
        closed: BTreeSet::new(),
        paused: BTreeSet::new(),
        next_conn: 0,
    };
    s.drain();
    let mut it = data.iter().copied();
    let mut corr = 0u64;
    while let Some(op) = it.next() {
        let arg = it.next().unwrap_or(0);
        match op % 8 {
            0 => {
                let conn = ConnId(s.next_conn);
                s.next_conn += 1;
                s.open.insert(conn, 0);
                let peer = SocketAddr::from(([127, 0, 0, 1], 9));
                s.input(Input::Accepted { conn, peer, origin: Default::default() });
            }
            1 => {
                let len = usize::from(it.next().unwrap_or(0));
                let bytes: Vec<u8> = it.by_ref().take(len).collect();
                if let Some(conn) = s.conn(arg) {
                    s.input(Input::Received { conn, bytes: &bytes });
                }
            }
            2 => {
                // A random valid request of a served API, split in two at a chosen byte.
                let (key, lo, hi) = SERVED[usize::from(arg) % SERVED.len()];
                let v = it.next().unwrap_or(0);
                let version = lo + i16::from(v) % (hi - lo + 1);
                corr += 1;
                let body = crate::random_request(key, version, corr ^ u64::from(v) << 32);
                let frame = kelp_core::codec::encode_request_frame(&body, version, corr as i32, Some("fuzz"));
                let cut = usize::from(it.next().unwrap_or(255)).min(frame.len());
                if let Some(conn) = s.conn(v) {
                    s.input(Input::Received { conn, bytes: &frame[..cut] });
                    if s.open.contains_key(&conn) {
                        s.input(Input::Received { conn, bytes: &frame[cut..] });
                    }
                }
            }
            3 => {
                if let Some((cmd, command)) = s.queued.pop_front() {
                    let result = if arg % 5 == 0 && !matches!(command, Command::Recover) {
                        Completion::Failed(StorageError::Unavailable)
                    } else {
                        s.store.execute(command)
                    };
                    s.done.push((cmd, result));
                }
            }
            4 => {
                if !s.done.is_empty() {
                    let i = usize::from(arg) % s.done.len();
                    let (cmd, result) = s.done.swap_remove(i);
                    s.input(Input::Completed { cmd, result });
                }
            }
            5 => {
                if let Some(conn) = s.conn(arg)
                    && let Some(n) = s.open.get_mut(&conn)
                {
                    let bytes = std::mem::take(n);
                    s.input(Input::Written { conn, bytes });
                }
            }
            6 => {
                s.now.mono = s.now.mono + Duration::from_millis(i64::from(arg) * 20);
                s.now.wall_ms += i64::from(arg) * 20;
                s.input(Input::Tick);
            }
            _ => {
                if let Some(conn) = s.conn(arg) {
                    s.open.remove(&conn);
                    s.paused.remove(&conn);
                    s.input(Input::Closed { conn });
                }
            }
        }
    }
    // The end: every command runs and completes, time moves on far enough for every timer. The
    // retention check and the log cleaner are periodic by design: their Retain and Clean
    // commands alone do not count as activity.
    let periodic = |c: &Command| matches!(c, Command::Retain { .. } | Command::Clean { .. });
    let mut quiet = false;
    for _ in 0..64 {
        let mut active = false;
        while let Some((cmd, command)) = s.queued.pop_front() {
            active |= !periodic(&command);
            let result = s.store.execute(command);
            s.done.push((cmd, result));
        }
        while let Some((cmd, result)) = s.done.pop() {
            s.input(Input::Completed { cmd, result });
        }
        s.now.mono = s.now.mono + Duration::from_secs(400);
        s.input(Input::Tick);
        if !active && s.done.is_empty() && s.queued.iter().all(|(_, c)| periodic(c)) {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "storage commands keep coming after every input stopped");
}
