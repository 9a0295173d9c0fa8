//! Running real Kafka clients (the programs in `tests/e2e/clients/`) as separate processes:
//! where they are installed, process groups killed by id when their guard drops (also on
//! panic), scratch directories, topics made by hand, and a small JSON reader for their output.
//! Shared by `tests/e2e_clients.rs` and `tests/e2e_groups.rs`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// ---- paths ---------------------------------------------------------------------------------

pub fn workspace_root() -> PathBuf {
    // `cargo test` sets CARGO_MANIFEST_DIR at run time too: prefer it, so that a test binary
    // built in another checkout (a shared target directory) finds this checkout's files.
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    dir.parent().expect("tests/ has a parent").to_path_buf()
}

pub fn clients_src() -> PathBuf {
    workspace_root().join("tests/e2e/clients")
}

pub fn clients_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KELP_CLIENTS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/kelp-clients")
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A scratch directory for one test's logs, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kelp-e2e-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }

    pub fn file(&self, name: &str) -> (PathBuf, File) {
        let path = self.0.join(name);
        let file = File::create(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        (path, file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file's text, with terminal colour codes taken out.
pub fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    strip_ansi(&String::from_utf8_lossy(&bytes))
}

/// Removes `ESC [ ... letter` sequences (colours in tracing output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- processes -----------------------------------------------------------------------------

/// A child process leading its own process group; drop kills the whole group by its id.
pub struct ProcessGroup {
    child: Child,
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group, stdout and stderr to files.
    pub fn spawn(mut cmd: Command, stdout: File, stderr: File) -> Self {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the leader to exit; `None` when it is still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => return None,
                Err(e) => panic!("waiting for pid {}: {e}", self.pid()),
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // The negative pid names the group: the leader and anything it started (kcat under
        // kcat_client.sh, say). std has no killpg, so this uses kill(1) with that one id.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pid())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client program did.
pub struct Outcome {
    /// The exit status, `None` when it was killed at the limit.
    pub status: Option<ExitStatus>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr, colour codes removed.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs a client program to completion or until `limit`, then kills its process group.
pub fn run_client(scratch: &Scratch, mut cmd: Command, limit: Duration) -> Outcome {
    let (out_path, out) = scratch.file("client.out");
    let (err_path, err) = scratch.file("client.err");
    cmd.env("PYTHONDONTWRITEBYTECODE", "1").env("KELP_CLIENTS_DIR", clients_dir());
    let started = Instant::now();
    let mut group = ProcessGroup::spawn(cmd, out, err);
    let status = group.wait_for(limit);
    drop(group); // kills whatever is left of it, and it on a time-out
    Outcome { status, stdout: read_lossy(&out_path), stderr: read_lossy(&err_path), elapsed: started.elapsed() }
}

// ---- topics the harness makes itself -------------------------------------------------------

/// Creates `topic` with `partitions` partitions by a CreateTopics v2 request written here by
/// hand (not with kelp's codec), for clients without an admin API.
pub fn create_topic(addr: SocketAddr, topic: &str, partitions: i32) {
    fn string(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(&i16::try_from(s.len()).expect("short string").to_be_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    let mut body = Vec::new();
    body.extend_from_slice(&19i16.to_be_bytes()); // api key: CreateTopics
    body.extend_from_slice(&2i16.to_be_bytes()); // api version
    body.extend_from_slice(&42i32.to_be_bytes()); // correlation id
    string(&mut body, "kelp-e2e-harness"); // client id
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut body, topic);
    body.extend_from_slice(&partitions.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes()); // replication factor
    body.extend_from_slice(&0i32.to_be_bytes()); // no manual assignments
    body.extend_from_slice(&0i32.to_be_bytes()); // no configs
    body.extend_from_slice(&30_000i32.to_be_bytes()); // timeout ms
    body.push(0); // validate only: false
    let mut frame = u32::try_from(body.len()).expect("small request").to_be_bytes().to_vec();
    frame.extend_from_slice(&body);

    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to kelp");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    s.write_all(&frame).expect("send CreateTopics");
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("CreateTopics response size");
    let mut resp = vec![0u8; usize::try_from(u32::from_be_bytes(size)).expect("size")];
    s.read_exact(&mut resp).expect("CreateTopics response");
    // correlation id, throttle time, topic count, name, error code, error message
    let int =
        |at: usize, n: usize| resp.get(at..at + n).unwrap_or_else(|| panic!("short CreateTopics response {resp:?}"));
    assert_eq!(int(0, 4), 42i32.to_be_bytes(), "CreateTopics correlation id");
    let name_len = usize::try_from(i16::from_be_bytes(int(12, 2).try_into().expect("2 bytes"))).expect("name length");
    let code = i16::from_be_bytes(int(14 + name_len, 2).try_into().expect("2 bytes"));
    assert_eq!(code, 0, "CreateTopics {topic} ({partitions} partitions) answered error code {code}: {resp:?}");
}

// ---- the clients ---------------------------------------------------------------------------

/// How to run one client, or why it cannot run here.
pub struct Client {
    /// For messages.
    pub name: &'static str,
    /// Short, topic-name-safe.
    pub id: &'static str,
    /// What to run.
    pub program: PathBuf,
    /// Its arguments before the client's own.
    pub prefix: Vec<String>,
}

impl Client {
    /// A command running this client with `args`, in the clients' directory.
    #[must_use]
    pub fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix).args(args).current_dir(clients_src());
        cmd.env("PYTHONDONTWRITEBYTECODE", "1").env("KELP_CLIENTS_DIR", clients_dir());
        cmd
    }
}

pub fn python_client(venv: &str, script: &str, name: &'static str, id: &'static str) -> Result<Client, String> {
    let python = clients_dir().join(venv).join("bin/python");
    if !python.is_file() {
        return Err(format!("{name}: {} not found", python.display()));
    }
    Ok(Client { name, id, program: python, prefix: vec![clients_src().join(script).display().to_string()] })
}

pub fn confluent() -> Result<Client, String> {
    python_client("venv-confluent", "confluent_client.py", "confluent-kafka", "confluent")
}

pub fn kafka_python(venv: &str, name: &'static str, id: &'static str) -> Result<Client, String> {
    python_client(venv, "kafka_python_client.py", name, id)
}

pub fn kafkajs() -> Result<Client, String> {
    let module = clients_dir().join("node/node_modules/kafkajs/package.json");
    if !on_path("node") || !module.is_file() {
        return Err(format!("kafkajs: node or {} not found", module.display()));
    }
    Ok(Client {
        name: "kafkajs",
        id: "kafkajs",
        program: PathBuf::from("node"),
        prefix: vec![clients_src().join("kafkajs_client.js").display().to_string()],
    })
}

/// kafkajs with `@kafkajs/confluent-schema-registry`, running `kafkajs_schema_registry.js`.
pub fn kafkajs_schema_registry() -> Result<Client, String> {
    let node = clients_dir().join("node/node_modules");
    let modules = [node.join("kafkajs/package.json"), node.join("@kafkajs/confluent-schema-registry/package.json")];
    if !on_path("node") || modules.iter().any(|m| !m.is_file()) {
        return Err(format!("kafkajs with @kafkajs/confluent-schema-registry: node or {} not found", node.display()));
    }
    Ok(Client {
        name: "kafkajs with @kafkajs/confluent-schema-registry",
        id: "kafkajs-sr",
        program: PathBuf::from("node"),
        prefix: vec![clients_src().join("kafkajs_schema_registry.js").display().to_string()],
    })
}

pub fn java() -> Result<Client, String> {
    let jars = clients_dir().join("java");
    if !on_path("java") || !jars.join("kafka-clients-4.3.0.jar").is_file() {
        return Err(format!("Java client: java or {}/kafka-clients-4.3.0.jar not found", jars.display()));
    }
    Ok(Client {
        name: "kafka-clients (Java)",
        id: "java",
        program: PathBuf::from("java"),
        prefix: vec![
            "-cp".into(),
            format!("{}/*", jars.display()),
            clients_src().join("JavaClient.java").display().to_string(),
        ],
    })
}

/// Confluent's Java Avro and Protobuf serializers on kafka-clients
/// (tests/e2e/clients/SchemaRegistryJava.java), with the jars in `java-sr/`.
pub fn java_schema_registry() -> Result<Client, String> {
    let jars = clients_dir().join("java-sr");
    for jar in ["kafka-clients-4.3.0.jar", "kafka-avro-serializer-7.0.16.jar", "kafka-protobuf-serializer-7.0.16.jar"] {
        if !on_path("java") || !jars.join(jar).is_file() {
            return Err(format!("Confluent Java serializers: java or {}/{jar} not found", jars.display()));
        }
    }
    Ok(Client {
        name: "Confluent serializers (Java)",
        id: "java-sr",
        program: PathBuf::from("java"),
        prefix: vec![
            "-cp".into(),
            format!("{}/*", jars.display()),
            clients_src().join("SchemaRegistryJava.java").display().to_string(),
        ],
    })
}

/// confluent-kafka producing to topics that validate schema ids at the broker
/// (tests/e2e/clients/schema_topics_client.py).
pub fn confluent_schema_topics() -> Result<Client, String> {
    python_client("venv-confluent", "schema_topics_client.py", "confluent-kafka on schema-validated topics", "st-py")
}

/// confluent-kafka's serializers on typed topics (tests/e2e/clients/schema_smq_client.py).
pub fn confluent_schema_smq() -> Result<Client, String> {
    python_client("venv-confluent", "schema_smq_client.py", "confluent-kafka on typed topics", "smq-py")
}

/// pyarrow reading the Parquet files of a SeaweedMQ topic (tests/e2e/clients/parquet_dump.py).
pub fn parquet_dump() -> Result<Client, String> {
    python_client("venv-confluent", "parquet_dump.py", "pyarrow on SeaweedMQ's Parquet files", "parquet")
}

/// The Java producer with Confluent's Avro serializer on topics that validate schema ids at the
/// broker (tests/e2e/clients/SchemaTopicsJava.java), with the jars in `java-sr/`.
pub fn java_schema_topics() -> Result<Client, String> {
    let mut client = java_schema_registry()?;
    client.name = "Confluent Avro serializer (Java) on schema-validated topics";
    client.id = "st-java";
    if let Some(source) = client.prefix.last_mut() {
        *source = clients_src().join("SchemaTopicsJava.java").display().to_string();
    }
    Ok(client)
}

/// Transactions with the Java client (tests/e2e/clients/TransactionsJava.java).
pub fn java_transactions() -> Result<Client, String> {
    let mut client = java()?;
    client.name = "kafka-clients (Java) transactions";
    client.id = "java-txn";
    if let Some(source) = client.prefix.last_mut() {
        *source = clients_src().join("TransactionsJava.java").display().to_string();
    }
    Ok(client)
}

/// Transactions with confluent-kafka (tests/e2e/clients/txn_client.py).
pub fn confluent_transactions() -> Result<Client, String> {
    python_client("venv-confluent", "txn_client.py", "confluent-kafka transactions", "py-txn")
}

/// Transactions with kafkajs (tests/e2e/clients/kafkajs_txn.js).
pub fn kafkajs_transactions() -> Result<Client, String> {
    let mut client = kafkajs()?;
    client.name = "kafkajs transactions";
    client.id = "js-txn";
    client.prefix = vec![clients_src().join("kafkajs_txn.js").display().to_string()];
    Ok(client)
}

pub fn kcat() -> Result<Client, String> {
    if !on_path("kcat") || !on_path("python3") {
        return Err("kcat: kcat or python3 not on PATH".into());
    }
    Ok(Client {
        name: "kcat",
        id: "kcat",
        program: PathBuf::from("bash"),
        prefix: vec![clients_src().join("kcat_client.sh").display().to_string()],
    })
}

impl Scratch {
    /// A path inside the directory (nothing is created).
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl ProcessGroup {
    /// Whether the leader has exited, and how.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap_or_else(|e| panic!("waiting for pid {}: {e}", self.pid()))
    }
}

// ---- JSON, as the client programs print it ---------------------------------------------------

/// A JSON value (numbers as f64: the clients print offsets and times well below 2^53).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// null
    Null,
    /// true, false
    Bool(bool),
    /// a number
    Num(f64),
    /// a string
    Str(String),
    /// an array
    Arr(Vec<Json>),
    /// an object, keys in their order
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON text; `None` when it is not one (a partial line, say).
    #[must_use]
    pub fn parse(text: &str) -> Option<Json> {
        let mut p = JsonParser { s: text.as_bytes(), at: 0 };
        let v = p.value()?;
        p.ws();
        (p.at == p.s.len()).then_some(v)
    }

    /// The member `key` of an object.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A string's text.
    #[must_use]
    pub fn str(&self) -> Option<&str> {
        if let Json::Str(s) = self { Some(s) } else { None }
    }

    /// A number that is a whole non-negative integer.
    #[must_use]
    pub fn u64(&self) -> Option<u64> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        match self {
            Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
            _ => None,
        }
    }

    /// An array's items (empty for anything else).
    #[must_use]
    pub fn items(&self) -> &[Json] {
        if let Json::Arr(a) = self { a } else { &[] }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.at..].starts_with(lit.as_bytes()) {
            self.at += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Json> {
        self.ws();
        match *self.s.get(self.at)? {
            b'n' => self.eat("null").then_some(Json::Null),
            b't' => self.eat("true").then_some(Json::Bool(true)),
            b'f' => self.eat("false").then_some(Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.eat("]") {
                        return Some(Json::Arr(items));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Some(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return None;
                    }
                    kv.push((k, self.value()?));
                    self.ws();
                    if self.eat("}") {
                        return Some(Json::Obj(kv));
                    }
                    if !self.eat(",") {
                        return None;
                    }
                }
            }
            _ => {
                let start = self.at;
                while self.s.get(self.at).is_some_and(|c| b"+-.eE0123456789".contains(c)) {
                    self.at += 1;
                }
                std::str::from_utf8(&self.s[start..self.at]).ok()?.parse().ok().map(Json::Num)
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat("\"") {
            return None;
        }
        let mut out = String::new();
        loop {
            let rest = std::str::from_utf8(&self.s[self.at..]).ok()?;
            let c = rest.chars().next()?;
            self.at += c.len_utf8();
            match c {
                '"' => return Some(out),
                '\\' => {
                    let e = *self.s.get(self.at)?;
                    self.at += 1;
                    out.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.at..self.at + 4)?).ok()?;
                            self.at += 4;
                            char::from_u32(u32::from_str_radix(hex, 16).ok()?).unwrap_or('\u{fffd}')
                        }
                        other => char::from(other),
                    });
                }
                c => out.push(c),
            }
        }
    }
}

/// Runs client tests one at a time within a test binary: each starts its own kelp and real
/// client processes, and the machine has two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The client, if it is installed, and the lock to hold while it runs. When it is not
/// installed, skips ([`crate::skip`]: the test passes as skipped, or fails under
/// `KELP_E2E_REQUIRE`) and returns `None`.
pub fn installed(client: Result<Client, String>) -> Option<(Client, std::sync::MutexGuard<'static, ()>)> {
    match client {
        Ok(c) => Some((c, SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner))),
        Err(why) => {
            crate::skip(&format!("{why} (run scripts/install-clients.sh)"));
            None
        }
    }
}

// ---- a kelp with several listeners (the security tests) ----------------------------------------

/// A `kelp serve` started with exactly the arguments a test gives (unlike
/// [`crate::server::KelpServer`], which always adds `--listen` and `--advertised-listener`, and
/// so cannot be combined with `--listeners`). It leads its own process group, killed by its id on
/// drop (also on panic, when its log is printed).
pub struct KelpListeners {
    group: ProcessGroup,
    log: PathBuf,
    /// The loopback addresses it was given, in the order given: each accepted a connection
    /// before `start` returned.
    pub addrs: Vec<SocketAddr>,
}

impl KelpListeners {
    /// Picks `listeners` free loopback ports, runs `kelp serve` with `args(&addrs)` (the
    /// arguments after `serve`; nothing is added, so they must say `--storage`, `--data-dir`,
    /// `--admin-listen off` and so on), and waits until every address accepts a TCP connection.
    /// A port taken by someone else between the pick and the bind makes it try again (three
    /// times in all); anything else that keeps kelp from coming up panics with its log.
    #[must_use]
    pub fn start(listeners: usize, args: impl Fn(&[SocketAddr]) -> Vec<String>) -> Self {
        for attempt in 1..=3 {
            let addrs: Vec<SocketAddr> =
                (0..listeners).map(|_| SocketAddr::from(([127, 0, 0, 1], crate::server::free_port()))).collect();
            let mut kelp = Self::spawn(addrs, &args);
            match kelp.wait_ready() {
                Ok(()) => return kelp,
                Err(log) if attempt < 3 && log.contains("in use") => {}
                Err(log) => panic!("kelp serve on {:?} did not come up:\n{log}", kelp.addrs),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(addrs: Vec<SocketAddr>, args: &impl Fn(&[SocketAddr]) -> Vec<String>) -> Self {
        static SPAWNED: AtomicU32 = AtomicU32::new(0);
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("kelp-e2e-listeners-{}-{n}.log", std::process::id()));
        let err = File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let out = err.try_clone().unwrap_or_else(|e| panic!("cloning {}: {e}", log.display()));
        let mut cmd = Command::new(crate::server::kelp_bin());
        cmd.arg("serve")
            .args(args(&addrs))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1");
        Self { group: ProcessGroup::spawn(cmd, out, err), log, addrs }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut waiting: Vec<SocketAddr> = self.addrs.clone();
        while Instant::now() < deadline {
            waiting.retain(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err());
            if waiting.is_empty() {
                return Ok(());
            }
            if let Some(status) = self.group.try_wait() {
                return Err(format!("kelp exited ({status}); its log:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("{waiting:?} accepted no connection within 20 s; its log:\n{}", self.log_tail()))
    }

    /// The last 60 lines of its log (stdout and stderr).
    #[must_use]
    pub fn log_tail(&self) -> String {
        tail(&read_lossy(&self.log), 60)
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.group.pid()
    }

    /// Panics unless it is still running and its log shows no panic.
    pub fn assert_healthy(&mut self) {
        if let Some(status) = self.group.try_wait() {
            panic!("kelp exited ({status}); its log:\n{}", self.log_tail());
        }
        let log = read_lossy(&self.log);
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            panic!("kelp's log shows a panic: {line}\n{}", self.log_tail());
        }
    }
}

impl Drop for KelpListeners {
    fn drop(&mut self) {
        // The process group goes when `group` drops, right after this.
        if std::thread::panicking() {
            eprintln!("kelp log ({}):\n{}", self.log.display(), self.log_tail());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Gives `user` a SCRAM credential for `password` with each of `mechanisms` (`SCRAM-SHA-512`,
/// `SCRAM-SHA-256`) and `iterations`, by an AlterUserScramCredentials v0 request (salt and
/// salted password made here, as the Java Admin client does) on a listener that needs no
/// authentication; panics unless every result is error code 0.
pub fn upsert_scram_user(addr: SocketAddr, user: &str, password: &str, mechanisms: &[&str], iterations: i32) {
    use kelp_core::codec::generated::alter_user_scram_credentials::{
        AlterUserScramCredentialsRequest, ScramCredentialUpsertion,
    };
    use kelp_core::codec::generated::{RequestBody, ResponseBody};
    use sha2::Digest;

    let upsertions = mechanisms
        .iter()
        .map(|m| {
            let hash = crate::tls::ScramHash::from_mechanism(m).unwrap_or_else(|| panic!("{m} is not SCRAM"));
            let seed = format!("{user}/{m}/{:?}/{}", Instant::now(), std::process::id());
            let salt = sha2::Sha256::digest(seed.as_bytes())[..16].to_vec();
            let salted = hash.salted_password(password.as_bytes(), &salt, u32::try_from(iterations).unwrap_or(0));
            ScramCredentialUpsertion {
                name: user.into(),
                mechanism: hash.wire(),
                iterations,
                salt: salt.into(),
                salted_password: salted.into(),
                ..Default::default()
            }
        })
        .collect();
    let body =
        RequestBody::AlterUserScramCredentials(AlterUserScramCredentialsRequest { upsertions, ..Default::default() });
    let mut conn = crate::raw::RawClient::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    match conn.call(body, 0) {
        Ok(ResponseBody::AlterUserScramCredentials(r)) => {
            for result in &r.results {
                assert_eq!(
                    result.error_code, 0,
                    "AlterUserScramCredentials for {}: error {} {:?}",
                    result.user, result.error_code, result.error_message
                );
            }
            assert!(!r.results.is_empty(), "AlterUserScramCredentials for {user}: no results");
        }
        other => panic!("AlterUserScramCredentials for {user}: {other:?}"),
    }
}

/// The lock [`installed`] takes, for tests that start kelp but run no client program: one such
/// test at a time, like the client tests.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates `grants` (host `*`) by a CreateAcls v3 request written with kelp's codec, on a
/// listener whose principal may ALTER the cluster (in the security tests: PLAINTEXT, where
/// `User:ANONYMOUS` is made a super user for setup); panics unless every result is error code 0.
pub fn create_acls(addr: SocketAddr, grants: &[crate::acls::Grant<'_>]) {
    use kelp_core::codec::generated::create_acls::CreateAclsRequest;
    use kelp_core::codec::generated::{RequestBody, ResponseBody};

    let creations = crate::acls::creations(grants);
    let body = RequestBody::CreateAcls(CreateAclsRequest { creations, ..Default::default() });
    let mut conn = crate::raw::RawClient::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    match conn.call(body, 3) {
        Ok(ResponseBody::CreateAcls(r)) => {
            assert_eq!(
                r.results.len(),
                grants.len(),
                "CreateAcls: {} results for {} bindings",
                r.results.len(),
                grants.len()
            );
            for (g, res) in grants.iter().zip(&r.results) {
                assert_eq!(res.error_code, 0, "CreateAcls {g:?}: error {} {:?}", res.error_code, res.error_message);
            }
        }
        other => panic!("CreateAcls {grants:?}: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Json;

    #[test]
    fn parses_client_lines() {
        let v =
            Json::parse(r#"{"event":"batch","t_ms":1700000000123,"records":[[0,12,"k72"],[1,0,"k\u00e9"]],"x":null}"#)
                .expect("valid");
        assert_eq!(v.get("event").and_then(Json::str), Some("batch"));
        assert_eq!(v.get("t_ms").and_then(Json::u64), Some(1_700_000_000_123));
        let recs = v.get("records").expect("records").items();
        assert_eq!(recs[0].items()[2].str(), Some("k72"));
        assert_eq!(recs[1].items()[2].str(), Some("k\u{e9}"));
        assert!(Json::parse(r#"{"event":"bat"#).is_none());
    }
}
