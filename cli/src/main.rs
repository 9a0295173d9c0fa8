//! The `kelp` binary.
//!
//! `kelp serve` runs a single-node Kafka-compatible broker. Settings come from flags, `KELP_*`
//! environment variables and a TOML file ([`config`]); SIGINT or SIGTERM stop it gracefully
//! (a second signal at once); an admin HTTP endpoint serves `/health` and `/metrics`
//! ([`admin`]).
//!
//! Exit codes: 0 after a clean stop, 1 when serving fails (a port in use, a store that cannot
//! be opened or synced), 2 for a bad configuration or usage, 130 after a second signal.

mod admin;
mod config;
mod registry;
mod user;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kelp_core::time::Duration as CoreDuration;
use kelp_core::{Broker, Config};

use kelp_driver::{Bound, TlsSource};

use crate::config::{ConfigError, EXIT_CONFIG, Layers, Settings};

#[derive(Parser, Debug)]
#[command(name = "kelp", version, about = "A Kafka-wire-protocol gateway")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once, at start
enum Cmd {
    /// Serve Kafka clients.
    Serve(ServeArgs),
    /// Manage users' SCRAM credentials on a running kelp.
    User(user::UserArgs),
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

/// `kelp serve`'s options. Each is also a `KELP_*` environment variable and a key of the
/// `--config` file; docs/CONFIG.md lists them with their defaults. Values are strings here and
/// are checked by [`config::Settings::resolve`], which knows where each came from.
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// TOML config file (keys named like the flags).
    #[arg(long, env = "KELP_CONFIG", value_name = "FILE")]
    config: Option<String>,
    /// Address of the one PLAINTEXT listener (the shorthand for --listeners) [default: 127.0.0.1:9092].
    #[arg(long, env = "KELP_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// HOST:PORT clients of --listen are told to connect to [default: the listen address].
    #[arg(long, env = "KELP_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Named listeners, Kafka style: NAME://HOST:PORT,... (e.g. PLAINTEXT://127.0.0.1:9092,SECURE://127.0.0.1:9093).
    #[arg(long, env = "KELP_LISTENERS", value_name = "LIST")]
    listeners: Option<String>,
    /// Each listener's security protocol: NAME:PROTOCOL,... (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
    /// [default: a listener named after a protocol uses it].
    #[arg(long, env = "KELP_LISTENER_SECURITY_PROTOCOL_MAP", value_name = "MAP")]
    listener_security_protocol_map: Option<String>,
    /// What each listener's clients are told to connect to: NAME://HOST:PORT,... [default: its bind address].
    #[arg(long, env = "KELP_ADVERTISED_LISTENERS", value_name = "LIST")]
    advertised_listeners: Option<String>,
    /// PEM certificate chain of the SSL and SASL_SSL listeners (reloaded when it changes).
    #[arg(long, env = "KELP_SSL_CERTIFICATE_LOCATION", value_name = "FILE")]
    ssl_certificate_location: Option<String>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "KELP_SSL_KEY_LOCATION", value_name = "FILE")]
    ssl_key_location: Option<String>,
    /// PEM bundle of the CAs client certificates must chain to.
    #[arg(long, env = "KELP_SSL_CLIENT_CA_LOCATION", value_name = "FILE")]
    ssl_client_ca_location: Option<String>,
    /// Whether TLS clients must present a certificate: none, requested or required (ssl.client.auth) [default: none].
    #[arg(long, env = "KELP_SSL_CLIENT_AUTH", value_name = "WHEN")]
    ssl_client_auth: Option<String>,
    /// SASL mechanisms SASL listeners offer, in order [default: SCRAM-SHA-512,SCRAM-SHA-256].
    #[arg(long, env = "KELP_SASL_ENABLED_MECHANISMS", value_name = "LIST")]
    sasl_enabled_mechanisms: Option<String>,
    /// Whether ACLs are checked: none or acl (Kafka's authorizer.class.name) [default: none].
    #[arg(long, env = "KELP_AUTHORIZER", value_name = "KIND")]
    authorizer: Option<String>,
    /// Principals that may do everything, separated by ';' (super.users), e.g. 'User:admin'.
    #[arg(long, env = "KELP_SUPER_USERS", value_name = "LIST")]
    super_users: Option<String>,
    /// Whether a resource no ACL names is open to everyone (allow.everyone.if.no.acl.found) [default: false].
    #[arg(long, env = "KELP_ALLOW_EVERYONE_IF_NO_ACL_FOUND", value_name = "BOOL")]
    allow_everyone_if_no_acl_found: Option<String>,
    /// This node's id [default: 1].
    #[arg(long, env = "KELP_NODE_ID", value_name = "ID")]
    node_id: Option<String>,
    /// The IO runtime: tokio or mio [default: tokio].
    #[arg(long, env = "KELP_RUNTIME", value_name = "RUNTIME")]
    runtime: Option<String>,
    /// Where data lives: disk or memory [default: disk].
    #[arg(long, env = "KELP_STORAGE", value_name = "KIND")]
    storage: Option<String>,
    /// Where the disk store keeps its files [default: ./kelp-data].
    #[arg(long, env = "KELP_DATA_DIR", value_name = "DIR")]
    data_dir: Option<String>,
    /// The SeaweedFS master for --storage seaweedmq, as HOST:PORT.GRPCPORT [default: 127.0.0.1:9333.19333].
    #[arg(long, env = "KELP_SEAWEEDMQ_MASTER", value_name = "HOST:PORT.GRPC")]
    seaweedmq_master: Option<String>,
    /// The SeaweedMQ namespace that holds kelp's topics [default: kafka].
    #[arg(long, env = "KELP_SEAWEEDMQ_NAMESPACE", value_name = "NAME")]
    seaweedmq_namespace: Option<String>,
    /// When the disk store forces data to disk: always, interval or never [default: always].
    #[arg(long, env = "KELP_FSYNC", value_name = "WHEN")]
    fsync: Option<String>,
    /// The window of --fsync interval, in milliseconds [default: 100].
    #[arg(long, env = "KELP_FSYNC_INTERVAL_MS", value_name = "MS")]
    fsync_interval_ms: Option<String>,
    /// Segment size of topics without `segment.bytes` (Kafka: log.segment.bytes) [default: 1073741824].
    #[arg(long, env = "KELP_LOG_SEGMENT_BYTES", value_name = "BYTES")]
    log_segment_bytes: Option<String>,
    /// Default retention.ms (Kafka: log.retention.ms); -1 keeps data for ever [default: 604800000].
    #[arg(long, env = "KELP_LOG_RETENTION_MS", value_name = "MS", allow_hyphen_values = true)]
    log_retention_ms: Option<String>,
    /// Default retention.bytes per partition (Kafka: log.retention.bytes); -1 for no limit [default: -1].
    #[arg(long, env = "KELP_LOG_RETENTION_BYTES", value_name = "BYTES", allow_hyphen_values = true)]
    log_retention_bytes: Option<String>,
    /// How often retention runs (Kafka: log.retention.check.interval.ms) [default: 300000].
    #[arg(long, env = "KELP_LOG_RETENTION_CHECK_INTERVAL_MS", value_name = "MS")]
    log_retention_check_interval_ms: Option<String>,
    /// Log cleaner threads of the disk store (Kafka: log.cleaner.threads); 0 turns compaction off [default: 1].
    #[arg(long, env = "KELP_LOG_CLEANER_THREADS", value_name = "N")]
    log_cleaner_threads: Option<String>,
    /// Memory for the cleaners' key maps, in bytes (Kafka: log.cleaner.dedupe.buffer.size) [default: 134217728].
    #[arg(long, env = "KELP_LOG_CLEANER_DEDUPE_BUFFER_SIZE", value_name = "BYTES")]
    log_cleaner_dedupe_buffer_size: Option<String>,
    /// Read and write chunk of each cleaner, in bytes (Kafka: log.cleaner.io.buffer.size) [default: 524288].
    #[arg(long, env = "KELP_LOG_CLEANER_IO_BUFFER_SIZE", value_name = "BYTES")]
    log_cleaner_io_buffer_size: Option<String>,
    /// Bytes per second the cleaners may read and write together; -1 for no limit
    /// (Kafka: log.cleaner.io.max.bytes.per.second) [default: -1].
    #[arg(long, env = "KELP_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND", value_name = "BYTES", allow_hyphen_values = true)]
    log_cleaner_io_max_bytes_per_second: Option<String>,
    /// How often the log cleaner looks for compacted partitions to clean (Kafka: log.cleaner.backoff.ms) [default: 15000].
    #[arg(long, env = "KELP_LOG_CLEANER_BACKOFF_MS", value_name = "MS")]
    log_cleaner_backoff_ms: Option<String>,
    /// Largest request accepted, in bytes; a larger one closes its connection [default: 104857600].
    #[arg(long, env = "KELP_MAX_REQUEST_SIZE", value_name = "BYTES")]
    max_request_size: Option<String>,
    /// Most client connections open at once [default: 65536].
    #[arg(long, env = "KELP_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<String>,
    /// Unanswered requests per connection before kelp stops reading it [default: 256].
    #[arg(long, env = "KELP_MAX_IN_FLIGHT_PER_CONNECTION", value_name = "N")]
    max_in_flight_per_connection: Option<String>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "KELP_DEFAULT_PARTITIONS", value_name = "N")]
    default_partitions: Option<String>,
    /// Create unknown topics on Metadata and Produce: true or false [default: true].
    #[arg(long, env = "KELP_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    auto_create_topics: Option<String>,
    /// Same as --auto-create-topics false.
    #[arg(long, env = "KELP_NO_AUTO_CREATE_TOPICS")]
    no_auto_create_topics: bool,
    /// How long a new group's first rebalance waits for more members (Kafka's
    /// group.initial.rebalance.delay.ms) [default: 3000].
    #[arg(long, env = "KELP_GROUP_INITIAL_REBALANCE_DELAY_MS", value_name = "MS")]
    group_initial_rebalance_delay_ms: Option<String>,
    /// Shortest session timeout a member may ask for (group.min.session.timeout.ms) [default: 6000].
    #[arg(long, env = "KELP_GROUP_MIN_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_min_session_timeout_ms: Option<String>,
    /// Longest session timeout a member may ask for (group.max.session.timeout.ms) [default: 1800000].
    #[arg(long, env = "KELP_GROUP_MAX_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_max_session_timeout_ms: Option<String>,
    /// Most members in one group (group.max.size) [default: 10000].
    #[arg(long, env = "KELP_GROUP_MAX_SIZE", value_name = "N")]
    group_max_size: Option<String>,
    /// KIP-848 groups: a member is fenced after this long without a heartbeat
    /// (group.consumer.session.timeout.ms) [default: 45000].
    #[arg(long, env = "KELP_GROUP_CONSUMER_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_consumer_session_timeout_ms: Option<String>,
    /// Lowest session timeout a group may set for itself [default: 45000].
    #[arg(long, env = "KELP_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_consumer_min_session_timeout_ms: Option<String>,
    /// Highest session timeout a group may set for itself [default: 60000].
    #[arg(long, env = "KELP_GROUP_CONSUMER_MAX_SESSION_TIMEOUT_MS", value_name = "MS")]
    group_consumer_max_session_timeout_ms: Option<String>,
    /// KIP-848 groups: how often members heartbeat (group.consumer.heartbeat.interval.ms)
    /// [default: 5000].
    #[arg(long, env = "KELP_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    group_consumer_heartbeat_interval_ms: Option<String>,
    /// Lowest heartbeat interval a group may set for itself [default: 5000].
    #[arg(long, env = "KELP_GROUP_CONSUMER_MIN_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    group_consumer_min_heartbeat_interval_ms: Option<String>,
    /// Highest heartbeat interval a group may set for itself [default: 15000].
    #[arg(long, env = "KELP_GROUP_CONSUMER_MAX_HEARTBEAT_INTERVAL_MS", value_name = "MS")]
    group_consumer_max_heartbeat_interval_ms: Option<String>,
    /// KIP-848 server assignors members may ask for, the first the default
    /// (group.consumer.assignors) [default: uniform,range].
    #[arg(long, env = "KELP_GROUP_CONSUMER_ASSIGNORS", value_name = "LIST")]
    group_consumer_assignors: Option<String>,
    /// Whether live groups move between the classic and the consumer protocol: disabled,
    /// upgrade, downgrade or bidirectional (group.consumer.migration.policy)
    /// [default: bidirectional].
    #[arg(long, env = "KELP_GROUP_CONSUMER_MIGRATION_POLICY", value_name = "POLICY")]
    group_consumer_migration_policy: Option<String>,
    /// Log filter, as RUST_LOG takes it (e.g. info, debug, kelp_core=trace) [default: info].
    #[arg(long, env = "KELP_LOG_LEVEL", value_name = "FILTER")]
    log_level: Option<String>,
    /// Admin HTTP address for /health and /metrics, or "off" [default: 127.0.0.1:9644].
    #[arg(long, env = "KELP_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Schema registry (Confluent's REST API) address, or "off" [default: 127.0.0.1:8081].
    #[arg(long, env = "KELP_SCHEMA_REGISTRY_LISTEN", value_name = "ADDR")]
    schema_registry_listen: Option<String>,
    /// Largest schema registry request body, in bytes [default: 16777216].
    #[arg(long, env = "KELP_SCHEMA_REGISTRY_MAX_REQUEST_SIZE", value_name = "BYTES")]
    schema_registry_max_request_size: Option<String>,
    /// How long a graceful stop waits for requests in flight, in milliseconds [default: 30000].
    #[arg(long, env = "KELP_SHUTDOWN_GRACE_MS", value_name = "MS")]
    shutdown_grace_ms: Option<String>,
    /// Seed for ids (topic ids, producer ids) [default: random].
    #[arg(long, env = "KELP_SEED", value_name = "N")]
    seed: Option<String>,
}

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        // --help and --version (exit 0), and `kelp` alone (its help, exit 2).
        Err(e) if !e.use_stderr() || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            e.exit()
        }
        Err(e) => {
            // clap's message, on one line: the first line says what is wrong.
            let text = e.render().to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("bad usage");
            eprintln!("kelp: {}", line.trim_start_matches("error: "));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kelp: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Cmd::Serve(_) => {
            let Some(sub) = matches.subcommand_matches("serve") else { return ExitCode::from(EXIT_CONFIG) };
            let settings = Layers::from_matches(sub).and_then(|l| {
                let s = Settings::resolve(&l)?;
                s.check_data_dir(&l)?;
                // The TLS files are read now: a missing or broken one is a configuration error.
                let tls = s.tls.clone().map(TlsSource::new).transpose().map_err(ConfigError)?;
                Ok((s, tls.map(Arc::new)))
            });
            let (settings, tls) = match settings {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("kelp: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.log_level))
                .with_writer(std::io::stderr)
                // Colours only on a terminal: a log file or a pipe gets plain text.
                .with_ansi(
                    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none(),
                )
                .init();
            match serve(&settings, tls) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kelp: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::User(args) => match user::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kelp user: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: &Settings, tls: Option<Arc<TlsSource>>) -> anyhow::Result<()> {
    let ms = |v: u64| CoreDuration::from_millis(i64::try_from(v).unwrap_or(i64::MAX));
    let listeners = args
        .listeners
        .iter()
        .map(|l| kelp_core::config::Listener {
            name: l.name.as_str().into(),
            protocol: l.protocol,
            host: l.advertised.0.as_str().into(),
            port: i32::from(l.advertised.1),
        })
        .collect();
    let config = Config {
        node_id: args.node_id,
        listeners,
        sasl_mechanisms: args.sasl_mechanisms.clone(),
        authorizer: args.authorizer,
        super_users: args.super_users.iter().map(|u| kelp_core::codec::KStr::from(u.as_str())).collect(),
        allow_everyone_if_no_acl_found: args.allow_everyone_if_no_acl_found,
        max_request_size: args.max_request_size,
        max_in_flight_per_conn: args.max_in_flight_per_connection,
        auto_create_topics: args.auto_create_topics,
        default_partitions: args.default_partitions,
        group_initial_rebalance_delay: ms(args.group_initial_rebalance_delay_ms),
        group_min_session_timeout: ms(args.group_min_session_timeout_ms),
        group_max_session_timeout: ms(args.group_max_session_timeout_ms),
        group_max_size: args.group_max_size,
        group_consumer_session_timeout: ms(args.group_consumer_session_timeout_ms),
        group_consumer_min_session_timeout: ms(args.group_consumer_min_session_timeout_ms),
        group_consumer_max_session_timeout: ms(args.group_consumer_max_session_timeout_ms),
        group_consumer_heartbeat_interval: ms(args.group_consumer_heartbeat_interval_ms),
        group_consumer_min_heartbeat_interval: ms(args.group_consumer_min_heartbeat_interval_ms),
        group_consumer_max_heartbeat_interval: ms(args.group_consumer_max_heartbeat_interval_ms),
        group_consumer_assignors: args.group_consumer_assignors.clone(),
        group_consumer_migration_policy: args.group_consumer_migration_policy,
        retention_ms: args.log_retention_ms,
        retention_bytes: args.log_retention_bytes,
        retention_check_interval: ms(args.log_retention_check_interval_ms),
        cleaner_backoff: ms(args.log_cleaner_backoff_ms),
        segment_bytes: args.log_segment_bytes,
        ..Config::default()
    };
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (t as u64) ^ u64::from(std::process::id()).rotate_left(32)
    });
    // Signals first: one that arrives while the store recovers stops kelp once it is up.
    let stop = signals().context("installing the signal handlers")?;
    // The admin endpoint comes up next, answering 503 while the store recovers.
    let probe_slot: admin::ProbeSlot = Arc::new(Mutex::new(None));
    if let Some(addr) = args.admin_listen {
        let l = std::net::TcpListener::bind(addr).with_context(|| format!("admin endpoint on {addr}"))?;
        tracing::info!(admin = %l.local_addr().unwrap_or(addr), "admin endpoint: /health, /metrics");
        admin::spawn(l, probe_slot.clone()).context("starting the admin endpoint")?;
    }
    // The schema registry's port is taken now, so that a port in use stops kelp at start; it
    // serves once the broker loop runs.
    let registry_listener = match args.schema_registry_listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).with_context(|| format!("schema registry on {addr}"))?;
            tracing::info!(schema_registry = %l.local_addr().unwrap_or(addr), "schema registry: Confluent's REST API");
            Some(l)
        }
        None => None,
    };
    let registry_cluster_id = config.cluster_id.to_string();
    let registry_max_body = args.schema_registry_max_request_size;
    // The registry's view the broker checks topics with schema validation against.
    let catalog = registry_listener.as_ref().map(|_| Arc::new(kelp_registry::catalog::Catalog::new()));
    let broker_catalog = catalog.clone();
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
            let options = kelp_storage::DiskOptions {
                segment_bytes: args.log_segment_bytes,
                cleaner_threads: args.log_cleaner_threads,
                cleaner_dedupe_buffer_bytes: args.log_cleaner_dedupe_buffer_size,
                cleaner_io_buffer_bytes: args.log_cleaner_io_buffer_size,
                cleaner_io_max_bytes_per_second: u64::try_from(args.log_cleaner_io_max_bytes_per_second).ok(),
                ..kelp_storage::DiskOptions::new(fsync)
            };
            let store = kelp_storage::DiskStore::open_with(&args.data_dir, options)
                .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
            Box::new(store)
        }
        StorageKind::Seaweedmq => {
            let mut cfg = kelp_storage::SeaweedMqConfig::new(args.seaweedmq_master.clone());
            cfg.namespace.clone_from(&args.seaweedmq_namespace);
            // Topics that validate against the registry keep typed records (SCHEMA_TOPICS.md).
            cfg.catalog = catalog.clone().map(|c| c as Arc<dyn kelp_core::schemas::SchemaCatalog>);
            let store = kelp_storage::SeaweedMqStore::connect(cfg)
                .with_context(|| format!("connecting to SeaweedMQ through the master {}", args.seaweedmq_master))?;
            Box::new(store)
        }
    };
    let bounds = bind(&args.listeners, tls.as_ref())?;
    tracing::info!(listeners = bounds.len(), storage = ?args.storage, runtime = ?args.runtime, "kelp serving");
    // The key of the secrets the broker makes (SCRAM salts and nonces), from the OS.
    let mut secret_key = [0u8; 32];
    getrandom::fill(&mut secret_key).map_err(|e| anyhow::anyhow!("reading the OS's random numbers: {e}"))?;
    let make_broker = move |now| {
        let mut broker = Broker::new(config, seed, now);
        broker.seed_secrets(secret_key);
        if let Some(c) = broker_catalog {
            broker.set_schema_catalog(c);
        }
        broker
    };
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let set_probe = |p: admin::Probe| {
        if let Ok(mut slot) = probe_slot.lock() {
            *slot = Some(p);
        }
    };
    let options = kelp_driver::Options { max_connections: args.max_connections, shutdown_grace: grace };
    let registry_done: Arc<Mutex<Option<std::sync::mpsc::Receiver<()>>>> = Arc::new(Mutex::new(None));
    let registry_slot = registry_done.clone();
    let on_ready = move |control: kelp_driver::Control| {
        if let (Some(l), Some(catalog)) = (registry_listener, catalog) {
            match registry::spawn(l, control.clone(), registry_cluster_id, registry_max_body, catalog) {
                Ok(done) => {
                    if let Ok(mut slot) = registry_slot.lock() {
                        *slot = Some(done);
                    }
                }
                Err(e) => tracing::error!(error = %e, "schema registry: cannot start"),
            }
        }
        let probe = control.clone();
        set_probe(Arc::new(move |metrics| probe.snapshot(metrics, PROBE_TIMEOUT).map(|s| (s.serving, s.metrics))));
        // A small thread waits for the first signal and stops the loop.
        std::thread::spawn(move || {
            let _ = stop.blocking_recv();
            control.stop();
        });
    };
    match args.runtime {
        RuntimeKind::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(kelp_runtime_tokio::serve(bounds, make_broker, store, options, on_ready))?;
        }
        RuntimeKind::Mio => kelp_runtime_mio::serve(bounds, make_broker, store, options, on_ready)?,
    }
    // The registry answers what it has in flight once the broker has stopped; give it a moment.
    let done = registry_done.lock().ok().and_then(|mut d| d.take());
    if let Some(done) = done
        && done.recv_timeout(REGISTRY_STOP).is_err()
    {
        tracing::warn!("schema registry: did not finish in time");
    }
    tracing::info!("kelp stopped");
    Ok(())
}

/// Binds every listener, in the order of `Config::listeners` (a listener's index is its
/// position), the TLS ones with `tls`, and logs each with the address it got.
fn bind(listeners: &[config::ListenerSpec], tls: Option<&Arc<TlsSource>>) -> anyhow::Result<Vec<Bound>> {
    let mut bounds = Vec::with_capacity(listeners.len());
    for (i, l) in listeners.iter().enumerate() {
        let index = u16::try_from(i).context("too many listeners")?;
        let socket =
            std::net::TcpListener::bind(l.bind).with_context(|| format!("listener {} on {}", l.name, l.bind))?;
        let tls =
            if l.protocol.tls() {
                Some(tls.cloned().with_context(|| {
                    format!("listener {} is {} but TLS is not configured", l.name, l.protocol.name())
                })?)
            } else {
                None
            };
        let (host, port) = &l.advertised;
        tracing::info!(
            listener = %l.name,
            protocol = l.protocol.name(),
            bound = %socket.local_addr().unwrap_or(l.bind),
            advertised = %format!("{host}:{port}"),
            "listening"
        );
        bounds.push(Bound { listener: socket, index, tls });
    }
    Ok(bounds)
}

/// How long a stopping kelp waits for the schema registry to answer its requests in flight.
const REGISTRY_STOP: Duration = Duration::from_secs(7);

/// How long the admin endpoint waits for the broker loop's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the signal thread: the first SIGINT or SIGTERM resolves the returned receiver (a
/// graceful stop); a second one exits the process at once with code 130.
fn signals() -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Registered here, before serving starts, so that an early signal is not missed.
    let (mut int, mut term) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?))
    })?;
    std::thread::Builder::new().name("kelp-signals".into()).spawn(move || {
        rt.block_on(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down gracefully; a second signal stops at once");
            let _ = tx.send(());
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::warn!("second signal: exiting at once");
            eprintln!("kelp: second signal, exiting at once");
            std::process::exit(130);
        });
    })?;
    Ok(rx)
}
