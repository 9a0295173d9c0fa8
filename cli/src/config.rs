//! `kelp serve`'s settings: one list of keys, each settable as a flag (`--key`), an environment
//! variable (`KELP_KEY`, upper case, `-` as `_`) or a key of the TOML file given with
//! `--config` / `KELP_CONFIG` (the same name as the flag). Precedence: flag > environment >
//! file > default. Every value is checked here, and a bad one is reported in one line that
//! names where it came from; `main` exits with [`EXIT_CONFIG`] then.
//!
//! docs/CONFIG.md is the reference of every key; keep the two in step.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use clap::parser::ValueSource;
use kelp_core::config::SecurityProtocol;
use kelp_core::security::Mechanism;
use kelp_driver::tls::{ClientAuth, TlsSettings};

use crate::{FsyncKind, RuntimeKind, StorageKind};

/// The process exit code for a configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;

/// Every key, as written in the file and as a flag. The environment variable is derived.
pub const KEYS: &[&str] = &[
    "listen",
    "advertised-listener",
    "listeners",
    "listener-security-protocol-map",
    "advertised-listeners",
    "ssl-certificate-location",
    "ssl-key-location",
    "ssl-client-ca-location",
    "ssl-client-auth",
    "sasl-enabled-mechanisms",
    "authorizer",
    "super-users",
    "allow-everyone-if-no-acl-found",
    "node-id",
    "runtime",
    "storage",
    "data-dir",
    "fsync",
    "fsync-interval-ms",
    "seaweedmq-master",
    "seaweedmq-namespace",
    "log-segment-bytes",
    "log-retention-ms",
    "log-retention-bytes",
    "log-retention-check-interval-ms",
    "log-cleaner-threads",
    "log-cleaner-dedupe-buffer-size",
    "log-cleaner-io-buffer-size",
    "log-cleaner-io-max-bytes-per-second",
    "log-cleaner-backoff-ms",
    "max-request-size",
    "max-connections",
    "max-in-flight-per-connection",
    "default-partitions",
    "auto-create-topics",
    "group-initial-rebalance-delay-ms",
    "group-min-session-timeout-ms",
    "group-max-session-timeout-ms",
    "group-max-size",
    "group-consumer-session-timeout-ms",
    "group-consumer-min-session-timeout-ms",
    "group-consumer-max-session-timeout-ms",
    "group-consumer-heartbeat-interval-ms",
    "group-consumer-min-heartbeat-interval-ms",
    "group-consumer-max-heartbeat-interval-ms",
    "group-consumer-assignors",
    "group-consumer-migration-policy",
    "log-level",
    "admin-listen",
    "schema-registry-listen",
    "schema-registry-max-request-size",
    "shutdown-grace-ms",
    "seed",
];

/// The environment variable of a key.
#[must_use]
pub fn env_name(key: &str) -> String {
    format!("KELP_{}", key.replace('-', "_").to_ascii_uppercase())
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// A `KELP_*` environment variable.
    Env,
    /// The config file.
    File(PathBuf),
    /// The `RUST_LOG` environment variable (log level only).
    RustLog,
}

/// A bad configuration: one line, naming the key and where its value came from.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: String) -> Result<T, ConfigError> {
    Err(ConfigError(msg))
}

/// How a key is named in a message, given where its value came from.
fn place(key: &str, source: &Source) -> String {
    match source {
        Source::Flag => format!("--{key}"),
        Source::Env => env_name(key),
        Source::File(p) => format!("`{key}` in {}", p.display()),
        Source::RustLog => "RUST_LOG".to_string(),
    }
}

/// The raw values of every layer, before parsing.
#[derive(Debug, Default)]
pub struct Layers {
    /// Values from flags and the environment (clap reads both), with their source.
    pub args: Vec<(&'static str, String, Source)>,
    /// The config file's path and values, already checked for unknown keys.
    pub file: Option<(PathBuf, toml::Table)>,
    /// `RUST_LOG`, if set.
    pub rust_log: Option<String>,
}

impl Layers {
    /// Reads flags and environment variables from clap's matches of `kelp serve`, and the
    /// config file they name, if any.
    pub fn from_matches(m: &clap::ArgMatches) -> Result<Self, ConfigError> {
        let mut layers = Self { rust_log: std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()), ..Self::default() };
        for key in KEYS {
            let id = key.replace('-', "_");
            let Some(source) = m.value_source(&id) else { continue };
            let source = match source {
                ValueSource::CommandLine => Source::Flag,
                ValueSource::EnvVariable => Source::Env,
                _ => continue,
            };
            if let Some(v) = m.get_one::<String>(&id) {
                layers.args.push((key, v.clone(), source));
            }
        }
        // The shorthand flag: --no-auto-create-topics (KELP_NO_AUTO_CREATE_TOPICS) is
        // auto-create-topics=false, unless auto-create-topics itself was given.
        if !layers.args.iter().any(|(k, _, _)| *k == "auto-create-topics") {
            match m.value_source("no_auto_create_topics") {
                Some(ValueSource::CommandLine) if m.get_flag("no_auto_create_topics") => {
                    layers.args.push(("auto-create-topics", "false".into(), Source::Flag));
                }
                Some(ValueSource::EnvVariable) if m.get_flag("no_auto_create_topics") => {
                    layers.args.push(("auto-create-topics", "false".into(), Source::Env));
                }
                _ => {}
            }
        }
        let config = match m.value_source("config") {
            Some(ValueSource::CommandLine | ValueSource::EnvVariable) => m.get_one::<String>("config").cloned(),
            _ => None,
        };
        if let Some(path) = config {
            let source =
                if m.value_source("config") == Some(ValueSource::CommandLine) { "--config" } else { "KELP_CONFIG" };
            layers.file = Some(read_file(Path::new(&path), source)?);
        }
        Ok(layers)
    }

    /// The value of `key` with its source, from the highest layer that has it.
    fn get(&self, key: &str) -> Result<Option<(String, Source)>, ConfigError> {
        if let Some((_, v, s)) = self.args.iter().rev().find(|(k, _, _)| *k == key) {
            return Ok(Some((v.clone(), s.clone())));
        }
        if key == "log-level"
            && let Some(v) = &self.rust_log
        {
            return Ok(Some((v.clone(), Source::RustLog)));
        }
        let Some((path, table)) = &self.file else { return Ok(None) };
        let Some(value) = table.get(key) else { return Ok(None) };
        let source = Source::File(path.clone());
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return err(format!(
                    "{}: expected a string, an integer or a boolean, found {}",
                    place(key, &source),
                    other.type_str()
                ));
            }
        };
        Ok(Some((text, source)))
    }

    /// Parses `key` with `parse`, or gives `default` when no layer sets it.
    fn parse<T>(&self, key: &str, default: T, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        match self.get(key)? {
            None => Ok(default),
            Some((v, source)) => {
                parse(v.trim()).or_else(|why| err(format!("invalid value {v:?} for {}: {why}", place(key, &source))))
            }
        }
    }

    fn opt<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
        self.parse(key, None, |s| parse(s).map(Some))
    }
}

/// Reads and checks the config file: valid TOML, only known keys.
pub fn read_file(path: &Path, named_by: &str) -> Result<(PathBuf, toml::Table), ConfigError> {
    let text = std::fs::read_to_string(path)
        .or_else(|e| err(format!("cannot read the config file {} (from {named_by}): {e}", path.display())))?;
    let table: toml::Table = text.parse().or_else(|e: toml::de::Error| {
        let msg = e.message().to_string();
        let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(l) => err(format!("{}: line {l}: {msg}", path.display())),
            None => err(format!("{}: {msg}", path.display())),
        }
    })?;
    if let Some(bad) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return err(format!("unknown key `{bad}` in {} (see docs/CONFIG.md for the keys)", path.display()));
    }
    Ok((path.to_path_buf(), table))
}

/// One Kafka listener: its name, how it is secured, where it binds and what it tells clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Upper-case letters, digits and `_` (`PLAINTEXT`, `SECURE`, ...).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// (host, port) clients that come in through it are told to connect to.
    pub advertised: (String, u16),
}

/// Everything `kelp serve` is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Kafka listeners, in the order of `Config::listeners`; never empty.
    pub listeners: Vec<ListenerSpec>,
    /// The TLS listeners' certificate, key and client policy; `Some` when a listener is SSL or
    /// SASL_SSL.
    pub tls: Option<TlsSettings>,
    /// The SASL mechanisms SASL listeners offer, in order.
    pub sasl_mechanisms: Vec<Mechanism>,
    /// Whether ACLs are checked (`authorizer = acl`).
    pub authorizer: bool,
    /// Principals that may do everything.
    pub super_users: Vec<String>,
    /// Whether a resource no ACL names is open to everyone.
    pub allow_everyone_if_no_acl_found: bool,
    pub node_id: i32,
    pub runtime: RuntimeKind,
    pub storage: StorageKind,
    pub data_dir: PathBuf,
    pub fsync: FsyncKind,
    pub fsync_interval_ms: u64,
    /// The SeaweedFS master (HOST:PORT.GRPCPORT) for the seaweedmq store.
    pub seaweedmq_master: String,
    /// The SeaweedMQ namespace of kelp's topics.
    pub seaweedmq_namespace: String,
    pub log_segment_bytes: u64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: u64,
    /// The disk store's cleaner threads (0: no compaction).
    pub log_cleaner_threads: usize,
    pub log_cleaner_dedupe_buffer_size: usize,
    pub log_cleaner_io_buffer_size: usize,
    /// -1: no limit.
    pub log_cleaner_io_max_bytes_per_second: i64,
    pub log_cleaner_backoff_ms: u64,
    pub max_request_size: usize,
    pub max_connections: usize,
    pub max_in_flight_per_connection: usize,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    pub group_max_size: usize,
    pub group_consumer_session_timeout_ms: u64,
    pub group_consumer_min_session_timeout_ms: u64,
    pub group_consumer_max_session_timeout_ms: u64,
    pub group_consumer_heartbeat_interval_ms: u64,
    pub group_consumer_min_heartbeat_interval_ms: u64,
    pub group_consumer_max_heartbeat_interval_ms: u64,
    /// Known assignor names, the first the default.
    pub group_consumer_assignors: Vec<&'static str>,
    pub group_consumer_migration_policy: kelp_core::config::MigrationPolicy,
    pub log_level: String,
    /// `None`: no admin endpoint.
    pub admin_listen: Option<SocketAddr>,
    /// `None`: no schema registry.
    pub schema_registry_listen: Option<SocketAddr>,
    /// The largest schema registry request body, in bytes.
    pub schema_registry_max_request_size: usize,
    pub shutdown_grace_ms: u64,
    pub seed: Option<u64>,
}

/// A comma-separated list of KIP-848 server assignors, each known, none twice.
fn assignors(s: &str) -> Result<Vec<&'static str>, String> {
    let mut out: Vec<&'static str> = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let known = kelp_core::group::assignor::ASSIGNORS
            .iter()
            .find(|a| **a == name)
            .ok_or_else(|| format!("unknown assignor {name} (known: uniform, range)"))?;
        if !out.contains(known) {
            out.push(known);
        }
    }
    if out.is_empty() {
        return Err("expected at least one assignor: uniform, range".into());
    }
    Ok(out)
}

fn migration_policy(s: &str) -> Result<kelp_core::config::MigrationPolicy, String> {
    kelp_core::config::MigrationPolicy::parse(s)
        .ok_or_else(|| format!("expected one of {}", kelp_core::config::MigrationPolicy::NAMES.join(", ")))
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
    port.parse::<u16>().map_err(|_| format!("bad port {port:?}"))?;
    if host.is_empty() {
        return Err("expected HOST:PORT".into());
    }
    let mut found = s.to_socket_addrs().map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    found.next().ok_or_else(|| format!("{host:?} resolves to no address"))
}

/// A named listener's bind address: `HOST:PORT`, or `:PORT` for every interface (as Kafka reads
/// an empty host), which binds `0.0.0.0`.
fn listener_addr(s: &str) -> Result<SocketAddr, String> {
    match s.strip_prefix(':') {
        Some(port) => {
            let port = port.parse::<u16>().map_err(|_| format!("bad port {port:?}"))?;
            Ok(SocketAddr::from(([0, 0, 0, 0], port)))
        }
        None => addr(s),
    }
}

fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let port = port.parse::<u16>().map_err(|_| format!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("expected HOST:PORT, the host is empty".into());
    }
    // A client cannot connect to the meta-address (Kafka refuses to advertise 0.0.0.0 too).
    if host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        return Err(format!("{host} (all interfaces) cannot be connected to"));
    }
    if port == 0 {
        return Err("port 0 cannot be connected to".into());
    }
    Ok((host.to_string(), port))
}

/// A listener name: upper-case letters, digits and `_`.
fn listener_name(name: &str) -> Result<&str, String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
        return Err(format!("bad listener name {name:?}: upper-case letters, digits and _ only"));
    }
    Ok(name)
}

/// A comma-separated list of `NAME://REST` items, each name checked and given once; `what`
/// parses the rest.
fn named<T>(s: &str, what: impl Fn(&str) -> Result<T, String>) -> Result<Vec<(String, T)>, String> {
    let mut out: Vec<(String, T)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, rest) =
            item.split_once("://").ok_or_else(|| format!("expected NAME://HOST:PORT, found {item:?}"))?;
        let name = listener_name(name)?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("listener {name} is given twice"));
        }
        let value = what(rest).map_err(|e| format!("{name}: {e}"))?;
        out.push((name.to_string(), value));
    }
    if out.is_empty() {
        return Err("expected at least one NAME://HOST:PORT".into());
    }
    Ok(out)
}

/// Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
fn protocol_map(s: &str) -> Result<Vec<(String, SecurityProtocol)>, String> {
    let mut out: Vec<(String, SecurityProtocol)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, protocol) = item.split_once(':').ok_or_else(|| format!("expected NAME:PROTOCOL, found {item:?}"))?;
        let name = listener_name(name.trim())?;
        let protocol = SecurityProtocol::parse(protocol.trim()).ok_or_else(|| {
            let names: Vec<&str> = SecurityProtocol::ALL.iter().map(|p| p.name()).collect();
            format!("unknown security protocol {protocol:?} for {name} (expected one of {})", names.join(", "))
        })?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("listener {name} is mapped twice"));
        }
        out.push((name.to_string(), protocol));
    }
    Ok(out)
}

/// `none` (every principal may do everything) or `acl` (ACLs are checked).
fn authorizer(s: &str) -> Result<bool, String> {
    match s.trim() {
        "none" => Ok(false),
        "acl" => Ok(true),
        other => Err(format!("expected none or acl, found {other:?}")),
    }
}

/// Kafka's `super.users`: principals separated by `;`, each `Type:name`.
fn super_users(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for p in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if !p.split_once(':').is_some_and(|(t, n)| !t.is_empty() && !n.is_empty()) {
            return Err(format!("expected principals like User:alice separated by ';', found {p:?}"));
        }
        if !out.iter().any(|x| x == p) {
            out.push(p.to_string());
        }
    }
    Ok(out)
}

/// A comma-separated list of SASL mechanisms, each known, none twice.
fn mechanisms(s: &str) -> Result<Vec<Mechanism>, String> {
    let mut out: Vec<Mechanism> = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let m = Mechanism::parse(&name.to_ascii_uppercase()).ok_or_else(|| {
            let known: Vec<&str> = Mechanism::ALL.iter().map(|m| m.name()).collect();
            format!("unknown SASL mechanism {name} (known: {})", known.join(", "))
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err("expected at least one SASL mechanism".into());
    }
    Ok(out)
}

fn path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() { Err("empty path".into()) } else { Ok(PathBuf::from(s)) }
}

fn int<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> {
    move |s| match s.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        Ok(_) => Err(format!("must be between {min} and {max}")),
        Err(_) => Err("expected an integer".into()),
    }
}

/// SeaweedFS writes addresses as HOST:HTTPPORT.GRPCPORT (a bare HOST:PORT means gRPC on PORT+10000).
fn seaweed_master(s: &str) -> Result<String, String> {
    let (host, ports) = s.rsplit_once(':').ok_or("expected HOST:PORT.GRPCPORT")?;
    let ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    let valid = match ports.split_once('.') {
        Some((http, grpc)) => ok(http) && ok(grpc),
        None => ok(ports),
    };
    if host.is_empty() || !valid {
        return Err("expected HOST:PORT.GRPCPORT".into());
    }
    Ok(s.to_string())
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn choice<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        format!("expected one of {}", names.join(", "))
    })
}

fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder().parse(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

fn admin(s: &str) -> Result<Option<SocketAddr>, String> {
    match s.to_ascii_lowercase().as_str() {
        "" | "off" | "none" | "false" | "disabled" => Ok(None),
        _ => addr(s).map(Some).map_err(|e| format!("{e} (or \"off\" to disable)")),
    }
}

impl Settings {
    /// Parses and checks every key.
    pub fn resolve(l: &Layers) -> Result<Self, ConfigError> {
        const MIB: usize = 1024 * 1024;
        let listeners = Self::listeners(l)?;
        let tls = Self::tls(l, &listeners)?;
        let s = Self {
            listeners,
            tls,
            sasl_mechanisms: l.parse("sasl-enabled-mechanisms", Mechanism::DEFAULT.to_vec(), mechanisms)?,
            authorizer: l.parse("authorizer", false, authorizer)?,
            super_users: l.parse("super-users", Vec::new(), super_users)?,
            allow_everyone_if_no_acl_found: l.parse("allow-everyone-if-no-acl-found", false, boolean)?,
            node_id: l.parse("node-id", 1, int(0, i32::MAX))?,
            runtime: l.parse("runtime", RuntimeKind::Tokio, choice)?,
            storage: l.parse("storage", StorageKind::Disk, choice)?,
            data_dir: l.parse("data-dir", PathBuf::from("./kelp-data"), |s| {
                if s.is_empty() { Err("empty path".into()) } else { Ok(PathBuf::from(s)) }
            })?,
            fsync: l.parse("fsync", FsyncKind::Always, choice)?,
            fsync_interval_ms: l.parse("fsync-interval-ms", 100, int(1, 3_600_000))?,
            seaweedmq_master: l.parse("seaweedmq-master", "127.0.0.1:9333.19333".to_string(), seaweed_master)?,
            seaweedmq_namespace: l.parse("seaweedmq-namespace", "kafka".to_string(), |s| {
                if s.is_empty() || s.contains('/') {
                    Err("expected a name without '/'".into())
                } else {
                    Ok(s.to_string())
                }
            })?,
            log_segment_bytes: l.parse("log-segment-bytes", 1 << 30, int(1024, i32::MAX as u64))?,
            log_retention_ms: l.parse("log-retention-ms", 604_800_000, int(-1, i64::MAX))?,
            log_retention_bytes: l.parse("log-retention-bytes", -1, int(-1, i64::MAX))?,
            log_retention_check_interval_ms: l.parse("log-retention-check-interval-ms", 300_000, int(1, u64::MAX))?,
            log_cleaner_threads: l.parse("log-cleaner-threads", 1, int(0, 256))?,
            log_cleaner_dedupe_buffer_size: l.parse(
                "log-cleaner-dedupe-buffer-size",
                128 * MIB,
                int(1024, usize::MAX),
            )?,
            log_cleaner_io_buffer_size: l.parse("log-cleaner-io-buffer-size", 512 * 1024, int(4096, 64 * MIB))?,
            log_cleaner_io_max_bytes_per_second: l.parse("log-cleaner-io-max-bytes-per-second", -1, |s| {
                if s == "-1" {
                    Ok(-1)
                } else {
                    int(1, i64::MAX)(s).map_err(|_| "expected -1 (no limit) or a positive integer".into())
                }
            })?,
            log_cleaner_backoff_ms: l.parse("log-cleaner-backoff-ms", 15_000, int(1, u64::MAX))?,
            max_request_size: l.parse("max-request-size", 100 * MIB, int(1024, i32::MAX as usize))?,
            max_connections: l.parse("max-connections", 65_536, int(1, 10_000_000))?,
            max_in_flight_per_connection: l.parse("max-in-flight-per-connection", 256, int(1, 65_536))?,
            default_partitions: l.parse("default-partitions", 1, int(1, 100_000))?,
            auto_create_topics: l.parse("auto-create-topics", true, boolean)?,
            group_initial_rebalance_delay_ms: l.parse("group-initial-rebalance-delay-ms", 3000, int(0, 3_600_000))?,
            group_min_session_timeout_ms: l.parse("group-min-session-timeout-ms", 6000, int(1, 86_400_000))?,
            group_max_session_timeout_ms: l.parse("group-max-session-timeout-ms", 1_800_000, int(1, 86_400_000))?,
            group_max_size: l.parse("group-max-size", 10_000, int(1, 1_000_000))?,
            group_consumer_session_timeout_ms: l.parse(
                "group-consumer-session-timeout-ms",
                45_000,
                int(1, 86_400_000),
            )?,
            group_consumer_min_session_timeout_ms: l.parse(
                "group-consumer-min-session-timeout-ms",
                45_000,
                int(1, 86_400_000),
            )?,
            group_consumer_max_session_timeout_ms: l.parse(
                "group-consumer-max-session-timeout-ms",
                60_000,
                int(1, 86_400_000),
            )?,
            group_consumer_heartbeat_interval_ms: l.parse(
                "group-consumer-heartbeat-interval-ms",
                5000,
                int(1, 86_400_000),
            )?,
            group_consumer_min_heartbeat_interval_ms: l.parse(
                "group-consumer-min-heartbeat-interval-ms",
                5000,
                int(1, 86_400_000),
            )?,
            group_consumer_max_heartbeat_interval_ms: l.parse(
                "group-consumer-max-heartbeat-interval-ms",
                15_000,
                int(1, 86_400_000),
            )?,
            group_consumer_assignors: l.parse("group-consumer-assignors", vec!["uniform", "range"], assignors)?,
            group_consumer_migration_policy: l.parse(
                "group-consumer-migration-policy",
                kelp_core::config::MigrationPolicy::Bidirectional,
                migration_policy,
            )?,
            log_level: l.parse("log-level", "info".to_string(), log_filter)?,
            admin_listen: l.parse("admin-listen", Some(SocketAddr::from(([127, 0, 0, 1], 9644))), admin)?,
            schema_registry_listen: l.parse(
                "schema-registry-listen",
                Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
                admin,
            )?,
            schema_registry_max_request_size: l.parse(
                "schema-registry-max-request-size",
                16 * MIB,
                int(1024, i32::MAX as usize),
            )?,
            shutdown_grace_ms: l.parse("shutdown-grace-ms", 30_000, int(0, 3_600_000))?,
            seed: l.opt("seed", |s| s.parse::<u64>().map_err(|_| "expected an unsigned integer".to_string()))?,
        };
        let bounded = |name: &str, v: u64, min_name: &str, min: u64, max_name: &str, max: u64| {
            if min > max {
                return err(format!("{min_name} ({min}) is above {max_name} ({max})"));
            }
            if v < min || v > max {
                return err(format!("{name} ({v}) must lie between {min_name} ({min}) and {max_name} ({max})"));
            }
            Ok(())
        };
        bounded(
            "group-consumer-session-timeout-ms",
            s.group_consumer_session_timeout_ms,
            "group-consumer-min-session-timeout-ms",
            s.group_consumer_min_session_timeout_ms,
            "group-consumer-max-session-timeout-ms",
            s.group_consumer_max_session_timeout_ms,
        )?;
        bounded(
            "group-consumer-heartbeat-interval-ms",
            s.group_consumer_heartbeat_interval_ms,
            "group-consumer-min-heartbeat-interval-ms",
            s.group_consumer_min_heartbeat_interval_ms,
            "group-consumer-max-heartbeat-interval-ms",
            s.group_consumer_max_heartbeat_interval_ms,
        )?;
        if s.group_consumer_heartbeat_interval_ms >= s.group_consumer_session_timeout_ms {
            return err(format!(
                "group-consumer-heartbeat-interval-ms ({}) must be below group-consumer-session-timeout-ms ({})",
                s.group_consumer_heartbeat_interval_ms, s.group_consumer_session_timeout_ms
            ));
        }
        if s.group_min_session_timeout_ms > s.group_max_session_timeout_ms {
            return err(format!(
                "group-min-session-timeout-ms ({}) is above group-max-session-timeout-ms ({})",
                s.group_min_session_timeout_ms, s.group_max_session_timeout_ms
            ));
        }
        Ok(s)
    }

    /// The listeners: `listeners` (with `listener-security-protocol-map` and
    /// `advertised-listeners`), or the shorthand for one PLAINTEXT listener, `listen` (with
    /// `advertised-listener`), which is the default.
    fn listeners(l: &Layers) -> Result<Vec<ListenerSpec>, ConfigError> {
        let named_key = l.get("listeners")?;
        let listen_key = l.get("listen")?;
        let single_adv_key = l.get("advertised-listener")?;
        let adv_key = l.get("advertised-listeners")?;
        if let (Some((_, a)), Some((_, b))) = (&named_key, &listen_key) {
            return err(format!(
                "{} and {} are both set: listen is the shorthand for one PLAINTEXT listener, give one or the other",
                place("listeners", a),
                place("listen", b)
            ));
        }
        if let (Some((_, a)), Some((_, b))) = (&single_adv_key, &adv_key) {
            return err(format!(
                "{} and {} are both set: give one or the other",
                place("advertised-listener", a),
                place("advertised-listeners", b)
            ));
        }
        if let (Some((_, a)), Some((_, b))) = (&named_key, &single_adv_key) {
            return err(format!(
                "{} goes with listen; with {} set advertised-listeners (NAME://HOST:PORT)",
                place("advertised-listener", b),
                place("listeners", a)
            ));
        }
        let map = l.parse("listener-security-protocol-map", Vec::new(), protocol_map)?;
        let advertised = l.parse("advertised-listeners", Vec::new(), |s| named(s, host_port))?;
        let bound = match named_key {
            Some(_) => l.parse("listeners", Vec::new(), |s| named(s, listener_addr))?,
            None => {
                let listen = l.parse("listen", SocketAddr::from(([127, 0, 0, 1], 9092)), addr)?;
                if let Some(a) = l.opt("advertised-listener", host_port)? {
                    let adv = vec![("PLAINTEXT".to_string(), a)];
                    return Self::assemble(vec![("PLAINTEXT".to_string(), listen)], &map, &adv);
                }
                if listen.port() == 0 && advertised.is_empty() {
                    return err("--listen has port 0: set advertised-listener to the port clients should use".into());
                }
                if listen.ip().is_unspecified() && advertised.is_empty() {
                    return err(format!(
                        "--listen binds {listen}, every interface, which clients cannot connect to: \
                         set advertised-listener to the HOST:PORT they should use"
                    ));
                }
                vec![("PLAINTEXT".to_string(), listen)]
            }
        };
        Self::assemble(bound, &map, &advertised)
    }

    /// Each listener's protocol and advertised address, from the map and the advertised list.
    fn assemble(
        bound: Vec<(String, SocketAddr)>,
        map: &[(String, SecurityProtocol)],
        advertised: &[(String, (String, u16))],
    ) -> Result<Vec<ListenerSpec>, ConfigError> {
        if let Some((name, _)) = advertised.iter().find(|(n, _)| !bound.iter().any(|(b, _)| b == n)) {
            return err(format!("advertised-listeners names {name}, which is not a listener"));
        }
        bound
            .into_iter()
            .map(|(name, bind)| {
                let protocol = match map.iter().find(|(n, _)| *n == name) {
                    Some((_, p)) => *p,
                    None => SecurityProtocol::parse(&name).ok_or_else(|| {
                        ConfigError(format!(
                            "listener {name} has no security protocol: map it in listener-security-protocol-map \
                             (e.g. {name}:SSL)"
                        ))
                    })?,
                };
                let advertised = match advertised.iter().find(|(n, _)| *n == name) {
                    Some((_, a)) => a.clone(),
                    None if bind.port() == 0 => {
                        return err(format!(
                            "listener {name} binds port 0: set its address in advertised-listeners \
                             ({name}://HOST:PORT)"
                        ));
                    }
                    // Kafka refuses to advertise the meta-address: clients cannot connect to it.
                    None if bind.ip().is_unspecified() => {
                        return err(format!(
                            "listener {name} binds {bind}, every interface, which clients cannot connect to: \
                             set its address in advertised-listeners ({name}://HOST:PORT)"
                        ));
                    }
                    None => (bind.ip().to_string(), bind.port()),
                };
                Ok(ListenerSpec { name, protocol, bind, advertised })
            })
            .collect()
    }

    /// The TLS settings, required when a listener speaks TLS.
    fn tls(l: &Layers, listeners: &[ListenerSpec]) -> Result<Option<TlsSettings>, ConfigError> {
        let certificate = l.opt("ssl-certificate-location", path)?;
        let key = l.opt("ssl-key-location", path)?;
        let client_ca = l.opt("ssl-client-ca-location", path)?;
        let client_auth = l.parse("ssl-client-auth", ClientAuth::None, |s| {
            ClientAuth::parse(s).ok_or_else(|| format!("expected one of {}", ClientAuth::NAMES.join(", ")))
        })?;
        let Some(tls) = listeners.iter().find(|x| x.protocol.tls()) else { return Ok(None) };
        let (Some(certificate), Some(key)) = (certificate, key) else {
            return err(format!(
                "listener {} is {}: set ssl-certificate-location and ssl-key-location",
                tls.name,
                tls.protocol.name()
            ));
        };
        if client_auth != ClientAuth::None && client_ca.is_none() {
            return err(format!(
                "ssl-client-auth is {}: set ssl-client-ca-location to the CA client certificates must chain to",
                client_auth.name()
            ));
        }
        Ok(Some(TlsSettings { certificate, key, client_ca, client_auth }))
    }

    /// Checks what can only be checked against the machine: that the disk store's directory
    /// can be created and written.
    pub fn check_data_dir(&self, l: &Layers) -> Result<(), ConfigError> {
        if self.storage != StorageKind::Disk {
            return Ok(());
        }
        let name = match l.get("data-dir") {
            Ok(Some((_, source))) => place("data-dir", &source),
            _ => "--data-dir (default ./kelp-data)".to_string(),
        };
        let dir = &self.data_dir;
        let probe = dir.join(".kelp-write-check");
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&probe, b"kelp"))
            .and_then(|()| std::fs::remove_file(&probe))
            .or_else(|e| err(format!("{name}: the data directory {} is not writable: {e}", dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(args: &[(&'static str, &str, Source)], file: &str) -> Layers {
        let table: Option<toml::Table> = if file.is_empty() { None } else { Some(file.parse().expect("toml")) };
        Layers {
            args: args.iter().map(|(k, v, s)| (*k, (*v).to_string(), s.clone())).collect(),
            file: table.map(|t| (PathBuf::from("kelp.toml"), t)),
            rust_log: None,
        }
    }

    #[test]
    fn defaults_without_any_layer() {
        let s = Settings::resolve(&Layers::default()).expect("defaults are valid");
        assert_eq!(
            s.listeners,
            [ListenerSpec {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                bind: "127.0.0.1:9092".parse().expect("addr"),
                advertised: ("127.0.0.1".to_string(), 9092),
            }]
        );
        assert_eq!(s.tls, None);
        assert_eq!(s.sasl_mechanisms, Mechanism::DEFAULT);
        assert_eq!(s.admin_listen, Some("127.0.0.1:9644".parse().expect("addr")));
        assert_eq!((s.runtime, s.node_id, s.default_partitions), (RuntimeKind::Tokio, 1, 1));
        assert_eq!((s.storage, s.data_dir.as_path()), (StorageKind::Disk, Path::new("./kelp-data")));
        assert_eq!((s.log_retention_ms, s.log_retention_bytes), (604_800_000, -1));
        assert_eq!((s.log_cleaner_threads, s.log_cleaner_dedupe_buffer_size), (1, 128 << 20));
        assert_eq!((s.log_cleaner_io_buffer_size, s.log_cleaner_io_max_bytes_per_second), (512 * 1024, -1));
        assert!(s.auto_create_topics);
        assert_eq!(s.group_initial_rebalance_delay_ms, 3000);
        assert_eq!(s.log_level, "info");
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = "node-id = 3\nruntime = \"mio\"\ndefault-partitions = 4\nmax-connections = 9";
        let l = layers(
            &[("node-id", "1", Source::Env), ("node-id", "2", Source::Flag), ("runtime", "tokio", Source::Env)],
            file,
        );
        let s = Settings::resolve(&l).expect("valid");
        assert_eq!(s.node_id, 2, "the flag wins over the environment and the file");
        assert_eq!(s.runtime, RuntimeKind::Tokio, "the environment wins over the file");
        assert_eq!(s.default_partitions, 4, "the file wins over the default");
        assert_eq!(s.max_connections, 9);
        assert_eq!(s.max_request_size, 100 * 1024 * 1024, "the default when nothing sets it");
    }

    #[test]
    fn rust_log_sits_between_the_kelp_variables_and_the_file() {
        let mut l = layers(&[], "log-level = \"warn\"");
        assert_eq!(Settings::resolve(&l).expect("valid").log_level, "warn");
        l.rust_log = Some("debug".into());
        assert_eq!(Settings::resolve(&l).expect("valid").log_level, "debug");
        l.args.push(("log-level", "error".into(), Source::Env));
        assert_eq!(Settings::resolve(&l).expect("valid").log_level, "error");
    }

    #[test]
    fn errors_name_the_key_and_where_it_came_from() {
        let bad = |l: Layers| {
            let e = Settings::resolve(&l).expect_err("refused");
            assert!(!e.0.contains('\n'), "one line: {e}");
            e.0
        };
        let e = bad(layers(&[("listen", "nowhere", Source::Flag)], ""));
        assert!(e.contains("--listen") && e.contains("nowhere"), "{e}");
        let e = bad(layers(&[("listen", "1.2.3.4:99999", Source::Env)], ""));
        assert!(e.contains("KELP_LISTEN") && e.contains("bad port"), "{e}");
        let e = bad(layers(&[], "node-id = \"one\""));
        assert!(e.contains("`node-id` in kelp.toml") && e.contains("expected an integer"), "{e}");
        let e = bad(layers(&[("log-retention-ms", "-2", Source::Flag)], ""));
        assert!(e.contains("--log-retention-ms") && e.contains("between -1 and"), "{e}");
        let e = bad(layers(&[], "default-partitions = 0"));
        assert!(e.contains("default-partitions") && e.contains("between 1 and"), "{e}");
        let e = bad(layers(&[], "runtime = \"uring\""));
        assert!(e.contains("expected one of tokio, mio"), "{e}");
        let e = bad(layers(&[], "listen = [1, 2]"));
        assert!(e.contains("found array"), "{e}");
        let e = bad(layers(&[("log-level", "info,=[", Source::Flag)], ""));
        assert!(e.contains("--log-level"), "{e}");
        let e = bad(layers(
            &[
                ("group-min-session-timeout-ms", "10", Source::Flag),
                ("group-max-session-timeout-ms", "5", Source::Flag),
            ],
            "",
        ));
        assert!(e.contains("group-min-session-timeout-ms"), "{e}");
        let e = bad(layers(&[("group-consumer-session-timeout-ms", "30000", Source::Flag)], ""));
        assert!(e.contains("must lie between group-consumer-min-session-timeout-ms (45000)"), "{e}");
        let e = bad(layers(
            &[],
            "group-consumer-heartbeat-interval-ms = 50000\ngroup-consumer-max-heartbeat-interval-ms = 60000",
        ));
        assert!(e.contains("must be below group-consumer-session-timeout-ms"), "{e}");
        let e = bad(layers(&[("group-consumer-assignors", "uniform,sticky", Source::Env)], ""));
        assert!(e.contains("KELP_GROUP_CONSUMER_ASSIGNORS") && e.contains("unknown assignor sticky"), "{e}");
        let s = Settings::resolve(&layers(&[("group-consumer-assignors", "range, uniform,range", Source::Flag)], ""))
            .expect("valid");
        assert_eq!(s.group_consumer_assignors, ["range", "uniform"]);
        let e = bad(layers(&[("group-consumer-migration-policy", "sideways", Source::Flag)], ""));
        assert!(e.contains("--group-consumer-migration-policy") && e.contains("expected one of disabled"), "{e}");
        let s = Settings::resolve(&layers(&[], "group-consumer-migration-policy = \"UPGRADE\"")).expect("valid");
        assert_eq!(s.group_consumer_migration_policy, kelp_core::config::MigrationPolicy::Upgrade);
    }

    fn refused(l: &Layers) -> String {
        let e = Settings::resolve(l).expect_err("refused");
        assert!(!e.0.contains('\n'), "one line: {e}");
        e.0
    }

    #[test]
    fn the_listen_shorthand_is_one_plaintext_listener() {
        let s = Settings::resolve(&layers(
            &[("listen", "0.0.0.0:0", Source::Flag), ("advertised-listener", "kafka.example.com:19092", Source::Flag)],
            "",
        ))
        .expect("valid");
        assert_eq!(s.listeners.len(), 1);
        let l = &s.listeners[0];
        assert_eq!((l.name.as_str(), l.protocol, l.bind.port()), ("PLAINTEXT", SecurityProtocol::Plaintext, 0));
        assert_eq!(l.advertised, ("kafka.example.com".to_string(), 19092));
        // advertised-listeners may name the shorthand's listener too.
        let s = Settings::resolve(&layers(
            &[("listen", "127.0.0.1:0", Source::Flag), ("advertised-listeners", "PLAINTEXT://h:1", Source::Env)],
            "",
        ))
        .expect("valid");
        assert_eq!(s.listeners[0].advertised, ("h".to_string(), 1));
        let e = refused(&layers(&[("listen", "127.0.0.1:0", Source::Flag)], ""));
        assert!(e.contains("--listen has port 0"), "{e}");
        // Every interface, with the address clients should use.
        let s = Settings::resolve(&layers(
            &[("listen", "0.0.0.0:9092", Source::Flag), ("advertised-listeners", "PLAINTEXT://h:9092", Source::Flag)],
            "",
        ))
        .expect("valid");
        assert_eq!(s.listeners[0].advertised, ("h".to_string(), 9092));
    }

    #[test]
    fn an_empty_host_binds_every_interface_when_an_address_is_advertised() {
        let s = Settings::resolve(&layers(
            &[
                ("listeners", "PLAINTEXT://:9092,SSL://[::]:9093", Source::Flag),
                (
                    "advertised-listeners",
                    "PLAINTEXT://kafka.example.com:9092,SSL://kafka.example.com:9093",
                    Source::Flag,
                ),
            ],
            "ssl-certificate-location = \"c.pem\"\nssl-key-location = \"k.pem\"",
        ))
        .expect("valid");
        let got: Vec<(String, (String, u16))> =
            s.listeners.iter().map(|l| (l.bind.to_string(), l.advertised.clone())).collect();
        assert_eq!(
            got,
            [
                ("0.0.0.0:9092".to_string(), ("kafka.example.com".to_string(), 9092)),
                ("[::]:9093".to_string(), ("kafka.example.com".to_string(), 9093)),
            ]
        );
    }

    #[test]
    fn named_listeners_with_protocols_and_advertised_addresses() {
        let file = r#"
listeners = "PLAINTEXT://127.0.0.1:9092, SECURE://0.0.0.0:9093,SASL_SSL://127.0.0.1:9094"
listener-security-protocol-map = "SECURE:SSL"
advertised-listeners = "SECURE://kafka.example.com:19093"
ssl-certificate-location = "/etc/kelp/cert.pem"
ssl-key-location = "/etc/kelp/key.pem"
sasl-enabled-mechanisms = "PLAIN, scram-sha-256,PLAIN"
"#;
        let s = Settings::resolve(&layers(&[], file)).expect("valid");
        let got: Vec<(&str, SecurityProtocol, u16, (&str, u16))> = s
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.protocol, l.bind.port(), (l.advertised.0.as_str(), l.advertised.1)))
            .collect();
        assert_eq!(
            got,
            [
                ("PLAINTEXT", SecurityProtocol::Plaintext, 9092, ("127.0.0.1", 9092)),
                ("SECURE", SecurityProtocol::Ssl, 9093, ("kafka.example.com", 19093)),
                ("SASL_SSL", SecurityProtocol::SaslSsl, 9094, ("127.0.0.1", 9094)),
            ]
        );
        assert_eq!(
            s.tls,
            Some(TlsSettings {
                certificate: "/etc/kelp/cert.pem".into(),
                key: "/etc/kelp/key.pem".into(),
                client_ca: None,
                client_auth: ClientAuth::None,
            })
        );
        assert_eq!(s.sasl_mechanisms, [Mechanism::Plain, Mechanism::ScramSha256]);
        // The map may give a listener named after a protocol another one.
        let s = Settings::resolve(&layers(
            &[
                ("listeners", "PLAINTEXT://127.0.0.1:1", Source::Flag),
                ("listener-security-protocol-map", "PLAINTEXT:SASL_PLAINTEXT,OTHER:SSL", Source::Flag),
            ],
            "",
        ))
        .expect("valid");
        assert_eq!(s.listeners[0].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(s.tls, None, "no TLS listener, no TLS settings needed");
        // Client authentication, with its CA; a flag beats the file.
        let s = Settings::resolve(&layers(
            &[("ssl-client-auth", "REQUIRED", Source::Flag), ("ssl-client-ca-location", "/ca.pem", Source::Env)],
            &format!("{file}\nssl-client-auth = \"requested\""),
        ))
        .expect("valid");
        let tls = s.tls.expect("TLS settings");
        assert_eq!((tls.client_auth, tls.client_ca), (ClientAuth::Required, Some(PathBuf::from("/ca.pem"))));
    }

    #[test]
    fn bad_listener_settings_are_refused() {
        let tls = "ssl-certificate-location = \"c.pem\"\nssl-key-location = \"k.pem\"";
        /// The layers' flags and environment, the file, and what the message must contain.
        type Case<'a> = (&'a [(&'static str, &'a str, Source)], &'a str, &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (
                &[("listeners", "PLAINTEXT://127.0.0.1:1", Source::Flag), ("listen", "127.0.0.1:2", Source::Env)],
                "",
                &["--listeners and KELP_LISTEN are both set"],
            ),
            (
                &[("listeners", "PLAINTEXT://127.0.0.1:1", Source::Flag)],
                "listen = \"127.0.0.1:2\"",
                &["`listen` in kelp.toml"],
            ),
            (
                &[("listeners", "PLAINTEXT://127.0.0.1:1", Source::Flag), ("advertised-listener", "h:1", Source::Flag)],
                "",
                &["--advertised-listener goes with listen"],
            ),
            (
                &[
                    ("advertised-listener", "h:1", Source::Flag),
                    ("advertised-listeners", "PLAINTEXT://h:1", Source::Flag),
                ],
                "",
                &["are both set"],
            ),
            (&[("listeners", "127.0.0.1:9092", Source::Flag)], "", &["--listeners", "expected NAME://HOST:PORT"]),
            (&[("listeners", "plaintext://127.0.0.1:9092", Source::Flag)], "", &["bad listener name \"plaintext\""]),
            (&[("listeners", "A-B://127.0.0.1:9092", Source::Flag)], "", &["bad listener name"]),
            (
                &[("listeners", "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2", Source::Flag)],
                "",
                &["listener PLAINTEXT is given twice"],
            ),
            (
                &[("listeners", "PLAINTEXT://127.0.0.1:99999", Source::Env)],
                "",
                &["KELP_LISTENERS", "PLAINTEXT: bad port"],
            ),
            (&[("listeners", ",", Source::Flag)], "", &["at least one"]),
            (
                &[("listeners", "SECURE://127.0.0.1:1", Source::Flag)],
                "",
                &["listener SECURE has no security protocol", "listener-security-protocol-map"],
            ),
            (&[("listeners", "PLAINTEXT://127.0.0.1:0", Source::Flag)], "", &["listener PLAINTEXT binds port 0"]),
            (
                &[("listeners", "PLAINTEXT://127.0.0.1:1,OUTSIDE://0.0.0.0:9093", Source::Flag)],
                "listener-security-protocol-map = \"OUTSIDE:PLAINTEXT\"",
                &["listener OUTSIDE binds 0.0.0.0:9093, every interface", "advertised-listeners (OUTSIDE://HOST:PORT)"],
            ),
            (
                &[("listeners", "PLAINTEXT://[::]:9092", Source::Env)],
                "",
                &["listener PLAINTEXT binds [::]:9092, every interface", "advertised-listeners"],
            ),
            (&[("listeners", "PLAINTEXT://:9092", Source::Flag)], "", &["listener PLAINTEXT binds 0.0.0.0:9092"]),
            (&[("listeners", "PLAINTEXT://:x", Source::Flag)], "", &["PLAINTEXT: bad port \"x\""]),
            (
                &[("listen", "0.0.0.0:9092", Source::Flag)],
                "",
                &["--listen binds 0.0.0.0:9092", "set advertised-listener"],
            ),
            (
                &[("advertised-listeners", "PLAINTEXT://0.0.0.0:9092", Source::Flag)],
                "",
                &["--advertised-listeners", "0.0.0.0 (all interfaces) cannot be connected to"],
            ),
            (&[("advertised-listener", "[::]:9092", Source::Flag)], "", &["cannot be connected to"]),
            (&[("listener-security-protocol-map", "SECURE=SSL", Source::Flag)], "", &["expected NAME:PROTOCOL"]),
            (
                &[("listener-security-protocol-map", "SECURE:TLS", Source::Flag)],
                "",
                &["unknown security protocol \"TLS\" for SECURE"],
            ),
            (&[("listener-security-protocol-map", "A:SSL,A:SSL", Source::Flag)], "", &["listener A is mapped twice"]),
            (&[("advertised-listeners", "OTHER://h:1", Source::Flag)], "", &["OTHER, which is not a listener"]),
            (&[("advertised-listeners", "PLAINTEXT://h:0", Source::Flag)], "", &["port 0 cannot be connected to"]),
            (
                &[("listeners", "SSL://127.0.0.1:1", Source::Flag)],
                "",
                &["listener SSL is SSL: set ssl-certificate-location and ssl-key-location"],
            ),
            (
                &[("listeners", "SSL://127.0.0.1:1", Source::Flag), ("ssl-client-auth", "required", Source::Flag)],
                tls,
                &["ssl-client-auth is required: set ssl-client-ca-location"],
            ),
            (&[("ssl-client-auth", "maybe", Source::Flag)], "", &["--ssl-client-auth", "none, requested, required"]),
            (&[("ssl-key-location", "", Source::Flag)], "", &["empty path"]),
            (
                &[("sasl-enabled-mechanisms", "PLAIN,GSSAPI", Source::Env)],
                "",
                &["KELP_SASL_ENABLED_MECHANISMS", "unknown SASL mechanism GSSAPI"],
            ),
            (&[("sasl-enabled-mechanisms", " , ", Source::Flag)], "", &["at least one SASL mechanism"]),
            (&[("authorizer", "simple", Source::Flag)], "", &["--authorizer", "expected none or acl"]),
            (&[("super-users", "admin", Source::Env)], "", &["KELP_SUPER_USERS", "User:alice"]),
            (&[("allow-everyone-if-no-acl-found", "maybe", Source::Flag)], "", &["--allow-everyone-if-no-acl-found"]),
        ];
        for (args, file, want) in cases {
            let e = refused(&layers(args, file));
            for w in *want {
                assert!(e.contains(w), "{args:?}: {e:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn acls_are_off_unless_the_authorizer_is_acl() {
        let s = Settings::resolve(&Layers::default()).expect("defaults are valid");
        assert!(!s.authorizer && s.super_users.is_empty() && !s.allow_everyone_if_no_acl_found);
        let file = "authorizer = \"acl\"\nsuper-users = \"User:admin; User:CN=ops,O=example;User:admin\"";
        let s = Settings::resolve(&layers(&[("allow-everyone-if-no-acl-found", "true", Source::Env)], file))
            .expect("valid");
        assert!(s.authorizer && s.allow_everyone_if_no_acl_found);
        assert_eq!(s.super_users, ["User:admin", "User:CN=ops,O=example"]);
    }

    #[test]
    fn the_schema_registry_listens_on_8081_unless_turned_off() {
        let s = Settings::resolve(&layers(&[], "")).expect("valid");
        assert_eq!(s.schema_registry_listen, Some("127.0.0.1:8081".parse().expect("addr")));
        assert_eq!(s.schema_registry_max_request_size, 16 * 1024 * 1024);
        let s = Settings::resolve(&layers(&[("schema-registry-listen", "off", Source::Env)], "")).expect("valid");
        assert_eq!(s.schema_registry_listen, None);
        let s = Settings::resolve(&layers(&[], "schema-registry-listen = \"127.0.0.1:18081\"")).expect("valid");
        assert_eq!(s.schema_registry_listen, Some("127.0.0.1:18081".parse().expect("addr")));
        assert!(Settings::resolve(&layers(&[("schema-registry-max-request-size", "10", Source::Flag)], "")).is_err());
    }

    #[test]
    fn admin_listener_can_be_turned_off() {
        let s = Settings::resolve(&layers(&[("admin-listen", "off", Source::Env)], "")).expect("valid");
        assert_eq!(s.admin_listen, None);
        let s = Settings::resolve(&layers(&[], "admin-listen = \"127.0.0.1:9999\"")).expect("valid");
        assert_eq!(s.admin_listen, Some("127.0.0.1:9999".parse().expect("addr")));
    }

    #[test]
    fn unknown_keys_and_broken_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("kelp-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("kelp.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_addr = 3\n").expect("write");
        let e = read_file(&path, "--config").expect_err("unknown key");
        assert!(e.0.contains("unknown key `listen_addr`"), "{e}");
        std::fs::write(&path, "node-id = \n").expect("write");
        let e = read_file(&path, "--config").expect_err("bad toml");
        assert!(e.0.contains("line 1"), "{e}");
        let e = read_file(&dir.join("missing.toml"), "KELP_CONFIG").expect_err("missing");
        assert!(e.0.contains("KELP_CONFIG"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_data_dir_is_a_config_error() {
        // A path below a regular file cannot be created, whoever runs the test.
        let file = std::env::temp_dir().join(format!("kelp-config-file-{}", std::process::id()));
        std::fs::write(&file, b"x").expect("write");
        let dir = file.join("data");
        let dir = dir.to_str().expect("utf8");
        let l = layers(&[("storage", "disk", Source::Flag), ("data-dir", dir, Source::Env)], "");
        let s = Settings::resolve(&l).expect("parses");
        let e = s.check_data_dir(&l).expect_err("unwritable");
        assert!(e.0.starts_with("KELP_DATA_DIR: the data directory"), "{e}");
        let _ = std::fs::remove_file(&file);
    }
}
