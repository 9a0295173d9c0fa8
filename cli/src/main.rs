//! The `kelp` binary.
//!
//! `kelp serve` runs a single-node Kafka-compatible broker. Today it serves from memory on the
//! tokio runtime; the disk store, the mio runtime, config files and SeaweedMQ land with their
//! issues.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use kelp_core::codec::KStr;
use kelp_core::{Broker, Config};

#[derive(Parser, Debug)]
#[command(name = "kelp", version, about = "A Kafka-wire-protocol gateway")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve Kafka clients.
    Serve(ServeArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RuntimeKind {
    /// tokio: a task per connection side, for general use.
    Tokio,
    /// mio: one thread, one poll loop, for low latency.
    Mio,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StorageKind {
    /// In memory: fast, nothing survives a restart.
    Memory,
    /// The embedded durable log under --data-dir.
    Disk,
    /// SeaweedMQ, found through the SeaweedFS master at --seaweedmq-master.
    Seaweedmq,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FsyncKind {
    /// fsync before every acknowledgement (grouped): acknowledged data survives a machine crash.
    Always,
    /// fsync at most --fsync-interval-ms after a write: a machine crash can lose that window.
    Interval,
    /// never fsync: a machine crash can lose whatever the OS had not written back.
    Never,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092", env = "KELP_LISTEN")]
    listen: SocketAddr,
    /// HOST:PORT clients are told to connect to (default: the listen address).
    #[arg(long, env = "KELP_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// Where data lives.
    #[arg(long, value_enum, default_value = "memory", env = "KELP_STORAGE")]
    storage: StorageKind,
    /// Where the disk store keeps its files.
    #[arg(long, default_value = "./kelp-data", env = "KELP_DATA_DIR")]
    data_dir: std::path::PathBuf,
    /// When the disk store forces data to disk.
    #[arg(long, value_enum, default_value = "always", env = "KELP_FSYNC")]
    fsync: FsyncKind,
    /// The window of --fsync interval, in milliseconds.
    #[arg(long, default_value_t = 100, env = "KELP_FSYNC_INTERVAL_MS")]
    fsync_interval_ms: u64,
    /// The SeaweedFS master for --storage seaweedmq, as HOST:PORT.GRPCPORT.
    #[arg(long, default_value = "127.0.0.1:9333.19333", env = "KELP_SEAWEEDMQ_MASTER")]
    seaweedmq_master: String,
    /// The SeaweedMQ namespace that holds kelp's topics.
    #[arg(long, default_value = "kafka", env = "KELP_SEAWEEDMQ_NAMESPACE")]
    seaweedmq_namespace: String,
    /// The IO runtime.
    #[arg(long, value_enum, default_value = "tokio", env = "KELP_RUNTIME")]
    runtime: RuntimeKind,
    /// This node's id.
    #[arg(long, default_value_t = 1, env = "KELP_NODE_ID")]
    node_id: i32,
    /// Largest request accepted, in bytes; a larger one closes its connection.
    #[arg(long, default_value_t = 100 * 1024 * 1024, env = "KELP_MAX_REQUEST_SIZE")]
    max_request_size: usize,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = 1, env = "KELP_DEFAULT_PARTITIONS")]
    default_partitions: i32,
    /// Do not create unknown topics on metadata requests.
    #[arg(long, env = "KELP_NO_AUTO_CREATE_TOPICS")]
    no_auto_create_topics: bool,
    /// Seed for ids (topic ids, producer ids); random when not given.
    #[arg(long, env = "KELP_SEED")]
    seed: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Serve(args) => serve(args),
    }
}

fn split_host_port(s: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = s.rsplit_once(':').with_context(|| format!("advertised listener {s:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in advertised listener {s:?}"))?;
    if host.is_empty() {
        bail!("advertised listener {s:?} has no host");
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), i32::from(port)))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let advertised = args.advertised_listener.clone().unwrap_or_else(|| args.listen.to_string());
    let (host, port) = split_host_port(&advertised)?;
    if args.default_partitions <= 0 {
        bail!("--default-partitions must be at least 1");
    }
    let config = Config {
        node_id: args.node_id,
        advertised_host: KStr::from(host),
        advertised_port: port,
        max_request_size: args.max_request_size,
        auto_create_topics: !args.no_auto_create_topics,
        default_partitions: args.default_partitions,
        ..Config::default()
    };
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (t as u64) ^ u64::from(std::process::id()).rotate_left(32)
    });
    let store: Box<dyn kelp_storage::Store> = match args.storage {
        StorageKind::Memory => Box::new(kelp_storage::MemoryStore::new()),
        StorageKind::Disk => {
            let fsync = match args.fsync {
                FsyncKind::Always => kelp_storage::Fsync::Always,
                FsyncKind::Interval => {
                    kelp_storage::Fsync::Interval(std::time::Duration::from_millis(args.fsync_interval_ms))
                }
                FsyncKind::Never => kelp_storage::Fsync::Never,
            };
            let store = kelp_storage::DiskStore::open(&args.data_dir, fsync)
                .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
            Box::new(store)
        }
        StorageKind::Seaweedmq => {
            let mut cfg = kelp_storage::SeaweedMqConfig::new(args.seaweedmq_master.clone());
            cfg.namespace.clone_from(&args.seaweedmq_namespace);
            let store = kelp_storage::SeaweedMqStore::connect(cfg)
                .with_context(|| format!("connecting to SeaweedMQ through the master {}", args.seaweedmq_master))?;
            Box::new(store)
        }
    };
    let listener = std::net::TcpListener::bind(args.listen).with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, advertised = %advertised, storage = ?args.storage, runtime = ?args.runtime, "kelp serving");
    let make_broker = move |now| Broker::new(config, seed, now);
    match args.runtime {
        RuntimeKind::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(async move {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                kelp_runtime_tokio::serve(listener, make_broker, store, shutdown_signal()).await
            })?;
        }
        RuntimeKind::Mio => {
            kelp_runtime_mio::serve(listener, make_broker, store, |shutdown| {
                // A small thread waits for the signal and stops the poll loop.
                std::thread::spawn(move || {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        rt.block_on(shutdown_signal());
                    }
                    shutdown.trigger();
                });
            })?;
        }
    }
    tracing::info!("kelp stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
