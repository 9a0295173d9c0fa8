//! Storage backends for kelp and the runtime-agnostic [`Store`] trait they implement.
//!
//! The broker core emits storage [`Command`]s and consumes their [`Completion`]s; a driver hands
//! each command to a `Store`, which reports back through a [`CompletionSink`] (the tokio driver
//! reads a channel, the mio driver is woken through a `mio::Waker`). Backends: `memory`
//! ([`MemoryStore`]), [`disk`], the embedded durable log, and [`seaweedmq`], which keeps records
//! in SeaweedMQ and the rest on the SeaweedFS filer (docs/SEAWEEDMQ.md).

use std::sync::Arc;

use kelp_core::mem_store::MemStore;
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

/// The `memory` backend: kelp-core's reference [`MemStore`], completing every command at once.
/// Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: MemStore,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn submit(&mut self, cmd: CmdId, command: Command, sink: &Sink) {
        let result = self.inner.execute(command);
        sink.complete(cmd, result);
    }
}
