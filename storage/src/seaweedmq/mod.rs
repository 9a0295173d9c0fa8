//! The `seaweedmq` backend: Kafka partitions kept as SeaweedMQ partitions, over gRPC.
//!
//! - Topics are SeaweedMQ topics in one namespace (default `kafka`); Kafka partition `i` of `n`
//!   is the ring range `[i*floor(2520/n), (i+1)*floor(2520/n))`, the last one ending at 2520.
//!   kelp's own topic record (id, partition count, configs) is a small file beside SeaweedMQ's
//!   (`/kelp/<namespace>/topics/<name>` on the filer).
//! - Appends split batches into one SeaweedMQ message per record ([`envelope`]), published on
//!   one pipelined `PublishMessage` stream per partition; each append is `Stored` when the
//!   broker has acknowledged all its records (from its memory), and only if the offsets it
//!   assigned are the ones kelp gave them. `AwaitDurable` is answered once the filer's metadata
//!   events show the records flushed. Reads take offsets from the records' envelopes on
//!   `SubscribeMessage` streams kept per partition and position, and rebuild the batches.
//! - Committed offsets, group metadata and producer state (the core's `Put` values) and log
//!   start offsets are files under `/kelp/<namespace>/` on the filer.
//!
//! The store runs its own multi-threaded tokio runtime, so it works under both drivers. This
//! module owns the store itself: it routes each command to a partition's publisher task, to the
//! metadata task, or to a task of its own. The parts:
//!
//! - `discovery`: finding the broker and filer through the master;
//!   `cluster`: the shared connections and caches every part builds on.
//! - `filer` and `format`: kelp's metadata files and their byte layouts; `meta`: the
//!   metadata commands; `topics`: topics, partitions and their placement on the ring.
//! - `session` and `read`: read sessions, their pool, and reads; `seek`: finding records
//!   by time (ListOffsets, retention).
//! - `publisher`: one partition's appends; `recovery`: what the core learns at start and
//!   after a failed append.
//! - `durable` and `persisted`: what SeaweedMQ has flushed to the filer, from the filer's
//!   metadata events (`AwaitDurable`); `repair`: noticing broker restarts, repairing the
//!   broker's offset counter before kelp touches a partition again, and settling a
//!   partition's end on what is persisted before kelp reports it.

pub mod envelope;

mod cluster;
mod discovery;
mod durable;
mod filer;
mod format;
mod meta;
mod persisted;
mod publisher;
mod read;
mod recovery;
mod repair;
mod seek;
mod session;
mod topics;
pub mod typed;

use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;
use kelp_core::io::{CleanReport, PartitionKey, StorageError};
use kelp_core::schemas::SchemaCatalog;
use kelp_core::{CmdId, Command, Completion};
use tokio::sync::mpsc;

use crate::{Sink, Store};
pub use cluster::Cluster;
pub use discovery::grpc_address;
use publisher::Publisher;

/// Generated gRPC clients for the parts of SeaweedFS kelp uses (`storage/proto/`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod pb {
    /// Topics, partitions, offsets.
    pub mod schema_pb {
        tonic::include_proto!("schema_pb");
    }
    /// Master: cluster nodes.
    pub mod master_pb {
        tonic::include_proto!("master_pb");
    }
    /// Filer: metadata files.
    pub mod filer_pb {
        tonic::include_proto!("filer_pb");
    }
    /// Broker: topics, publish, subscribe.
    pub mod messaging_pb {
        tonic::include_proto!("messaging_pb");
    }
    /// Partial views of typed records, for reading kelp's column back.
    pub mod view_pb {
        tonic::include_proto!("view_pb");
    }
}

/// How to reach the cluster.
#[derive(Clone, Debug)]
pub struct SeaweedMqConfig {
    /// The master, as SeaweedFS writes it: `host:httpPort.grpcPort` (or `host:httpPort`, gRPC
    /// then being httpPort+10000).
    pub master: String,
    /// The SeaweedMQ namespace for Kafka topics.
    pub namespace: String,
    /// Deadline for one metadata RPC, and for a read waiting on data it knows exists.
    pub rpc_timeout: Duration,
    /// How long an append may wait for the broker's acknowledgements.
    pub ack_timeout: Duration,
    /// The schema registry's view, for topics whose records are kept typed
    /// ([`typed`]); without it every record is kept as its envelope alone.
    pub catalog: Option<Arc<dyn SchemaCatalog>>,
}

impl SeaweedMqConfig {
    /// Defaults for `master`: namespace `kafka`, 10 s RPC deadline, 30 s ack deadline.
    #[must_use]
    pub fn new(master: impl Into<String>) -> Self {
        Self {
            master: master.into(),
            namespace: "kafka".into(),
            rpc_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            catalog: None,
        }
    }
}

/// Why the store could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

type Job = (CmdId, Command, Sink);

/// The SeaweedMQ store.
pub struct SeaweedMqStore {
    rt: tokio::runtime::Handle,
    /// Owned here, shut down without blocking on drop (drivers may drop the store inside
    /// their own runtime).
    runtime: Option<tokio::runtime::Runtime>,
    cluster: Arc<Cluster>,
    /// Metadata commands, run one after another.
    meta: mpsc::UnboundedSender<Job>,
    /// One publisher task per partition that has seen an append.
    publishers: HashMap<PartitionKey, mpsc::UnboundedSender<Job>>,
}

impl std::fmt::Debug for SeaweedMqStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaweedMqStore").field("publishers", &self.publishers.len()).finish_non_exhaustive()
    }
}

impl SeaweedMqStore {
    /// Connects to the master, finds the broker and filer, and checks they answer.
    pub fn connect(config: SeaweedMqConfig) -> Result<Self, StartError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kelp-seaweedmq")
            .enable_all()
            .build()
            .map_err(|e| StartError(format!("cannot start the SeaweedMQ runtime: {e}")))?;
        let cluster = rt.block_on(Cluster::connect(config))?;
        let cluster = Arc::new(cluster);
        rt.spawn(Arc::clone(&cluster).follow_flushes());
        rt.spawn(Arc::clone(&cluster).follow_brokers());
        let (meta, mut meta_rx) = mpsc::unbounded_channel::<Job>();
        let c = Arc::clone(&cluster);
        rt.spawn(async move {
            while let Some((cmd, command, sink)) = meta_rx.recv().await {
                let result = c.run_meta(command).await;
                sink.complete(cmd, result);
            }
        });
        Ok(Self { rt: rt.handle().clone(), runtime: Some(rt), cluster, meta, publishers: HashMap::new() })
    }
}

impl Drop for SeaweedMqStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl SeaweedMqStore {
    /// Queues `job` on the publisher task of `partition`, starting the task if there is none.
    fn queue_on_publisher(&mut self, partition: PartitionKey, job: Job) {
        let tx = self.publishers.entry(partition).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.rt.spawn(Publisher::new(Arc::clone(&self.cluster), partition).run(rx));
            tx
        });
        if let Err(mpsc::error::SendError((cmd, _, sink))) = tx.send(job) {
            self.publishers.remove(&partition);
            sink.complete(cmd, Completion::Failed(StorageError::Unavailable));
        }
    }

    /// Queues `job` on the metadata task.
    fn queue_on_meta(&self, job: Job) {
        if let Err(mpsc::error::SendError((cmd, _, sink))) = self.meta.send(job) {
            sink.complete(cmd, Completion::Failed(StorageError::Unavailable));
        }
    }

    /// Runs `op` on the store's runtime, on its own, and reports what it returns for `cmd`.
    fn spawn(&self, cmd: CmdId, sink: Sink, op: impl Future<Output = Completion> + Send + 'static) {
        self.rt.spawn(async move {
            let result = op.await;
            sink.complete(cmd, result);
        });
    }
}

impl Store for SeaweedMqStore {
    fn submit(&mut self, cmd: CmdId, command: Command, sink: &Sink) {
        let sink = Arc::clone(sink);
        let c = Arc::clone(&self.cluster);
        match command {
            // Both run on the partition's publisher task, in order with its appends.
            Command::Append { partition, .. } | Command::RecoverPartition { partition, .. } => {
                self.queue_on_publisher(partition, (cmd, command, sink));
            }
            // Not behind the partition's appends: answered as soon as the filer shows enough.
            Command::AwaitDurable { partition, offset } => {
                self.spawn(cmd, sink, async move { c.await_durable(partition, offset).await });
            }
            Command::Read { partition, offset, end, max_bytes } => {
                self.spawn(cmd, sink, async move { c.read(partition, offset, end, max_bytes).await });
            }
            Command::Retain { partition, older_than, limit, .. } => {
                self.spawn(cmd, sink, async move { c.retain(partition, older_than, limit).await });
            }
            // SeaweedMQ cannot delete single records, so a compacted topic keeps every record:
            // valid Kafka semantics, compaction only bounds from below what is kept.
            Command::Clean { .. } => sink.complete(cmd, Completion::Cleaned(CleanReport::default())),
            Command::FindOffset { partition, timestamp } => {
                self.spawn(cmd, sink, async move { c.find_offset(partition, timestamp).await });
            }
            command => {
                if let Command::DeleteTopic { topic_id } = &command {
                    // Their tasks end once the queued appends are answered.
                    self.publishers.retain(|k, _| k.topic_id != *topic_id);
                }
                self.queue_on_meta((cmd, command, sink));
            }
        }
    }
}
