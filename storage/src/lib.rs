//! Storage backends for kelp and the runtime-agnostic [`Store`] trait they implement.
//!
//! The broker core emits storage [`Command`]s and consumes their [`Completion`]s; a driver hands
//! each command to a `Store`, which reports back through a [`CompletionSink`] (the tokio driver
//! reads a channel, the mio driver is woken through a `mio::Waker`). Backends: `memory`
//! ([`MemoryStore`]), [`disk`], the embedded durable log, and [`seaweedmq`], which keeps records
//! in SeaweedMQ and the rest on the SeaweedFS filer (docs/SEAWEEDMQ.md).

use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use kelp_core::io::StorageError;
use kelp_core::mem_store::{CleanPass, MemStore, PreparedClean};
use kelp_core::{CmdId, Command, Completion};

mod cleaner;
pub mod disk;
pub mod seaweedmq;
mod segment;
pub use disk::{DiskOptions, DiskStore, Fsync};
pub use seaweedmq::{SeaweedMqConfig, SeaweedMqStore};
pub use segment::IndexCheck;

/// Where a store reports finished commands. Must accept a report from any thread, at any
/// time, including from inside [`Store::submit`].
pub trait CompletionSink: Send + Sync {
    /// `cmd` finished with `result`.
    fn complete(&self, cmd: CmdId, result: Completion);
}

/// A closure is a sink (a driver's `kelp_driver::Mailbox::completer`).
impl<F: Fn(CmdId, Completion) + Send + Sync> CompletionSink for F {
    fn complete(&self, cmd: CmdId, result: Completion) {
        self(cmd, result);
    }
}

/// A shared handle to a driver's completion sink; backends that finish work on other threads
/// keep a clone.
pub type Sink = Arc<dyn CompletionSink>;

/// A storage backend. Commands for one partition must take effect in submission order;
/// each command is completed exactly once.
pub trait Store: Send {
    /// Starts `command`; its result goes to `sink`, possibly before this returns.
    fn submit(&mut self, cmd: CmdId, command: Command, sink: &Sink);

    /// Makes everything submitted so far durable and returns once it is (a graceful stop calls
    /// this last). Stores with nothing to flush return at once.
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `memory` backend: kelp-core's reference [`MemStore`], completing every command at once,
/// except compaction: a pass that is due runs on the store's cleaner thread (the key map and
/// the rewrite are the costly part), and is installed when it is done unless retention or
/// DeleteRecords trimmed the log meanwhile. Nothing survives the process.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemStore>>,
    cleaner: Option<mpsc::Sender<(CmdId, CleanPass, Sink)>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        let inner = Arc::new(Mutex::new(MemStore::new()));
        let (tx, rx) = mpsc::channel::<(CmdId, CleanPass, Sink)>();
        let store = Arc::clone(&inner);
        let spawned = std::thread::Builder::new().name("kelp-mem-cleaner".into()).spawn(move || {
            while let Ok((cmd, pass, sink)) = rx.recv() {
                let started = Instant::now();
                let outcome = pass.run();
                let result = match store.lock() {
                    Ok(mut s) => s.finish_clean(outcome),
                    Err(_) => Completion::Failed(StorageError::Unavailable),
                };
                sink.complete(cmd, with_micros(result, started));
            }
        });
        // Without a thread, passes run inline.
        Self { inner, cleaner: spawned.ok().map(|_| tx) }
    }
}

/// `result` with the pass's run time, measured here: kelp-core's store has no clock.
fn with_micros(result: Completion, started: Instant) -> Completion {
    match result {
        Completion::Cleaned(mut r) => {
            r.micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            Completion::Cleaned(r)
        }
        other => other,
    }
}

impl Store for MemoryStore {
    fn submit(&mut self, cmd: CmdId, command: Command, sink: &Sink) {
        let Ok(mut store) = self.inner.lock() else {
            sink.complete(cmd, Completion::Failed(StorageError::Unavailable));
            return;
        };
        let Command::Clean { partition, spec } = command else {
            let result = store.execute(command);
            drop(store);
            sink.complete(cmd, result);
            return;
        };
        match store.prepare_clean(partition, &spec) {
            PreparedClean::Done(result) => {
                drop(store);
                sink.complete(cmd, result);
            }
            PreparedClean::Pass(pass) => {
                drop(store);
                let pass = match &self.cleaner {
                    Some(tx) => match tx.send((cmd, pass, Arc::clone(sink))) {
                        Ok(()) => return,
                        Err(mpsc::SendError((_, pass, _))) => pass,
                    },
                    None => pass,
                };
                let started = Instant::now();
                let outcome = pass.run();
                let result = self
                    .inner
                    .lock()
                    .map_or(Completion::Failed(StorageError::Unavailable), |mut s| s.finish_clean(outcome));
                sink.complete(cmd, with_micros(result, started));
            }
        }
    }
}
