//! Real Kafka clients against the real `kelp` binary, each in its own process.
//!
//! Every test starts `kelp serve` on a free loopback port with the memory store, runs one client
//! program from `tests/e2e/clients/` against it and asserts that the program exits 0 (it checks
//! everything itself and prints a one-line JSON summary; on failure it prints what differed).
//! The clients come from `scripts/install-clients.sh` under
//! `${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}`; a test whose client is not installed prints
//! `skipped: ...` and passes.
//!
//! Between them the tests use every compression codec: kcat none, kafka-python 2.3 gzip,
//! kafkajs snappy (raw), the Java client snappy (xerial framing) and lz4, kafka-python 3.0 lz4,
//! confluent-kafka zstd.
//!
//! Processes: the server and each client run in a process group of their own, and the whole
//! group is killed by its id when its guard drops (after the client ends, on a time-out, and on
//! panic), so nothing outlives a test. The tests take a lock so that only one runs at a time: a
//! JVM and a broker already share two cores.
//!
//! The kelp binary is `$KELP_BIN`, else `debug/kelp` in `$CARGO_TARGET_DIR`, else the target
//! directory this test binary was built into, else `target/debug/kelp` in the workspace. It is
//! not built here: run `cargo build -p kelp` first.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kelp_tests::server::KelpServer;

/// How long a client may take, in seconds; the harness allows 30 s more before it kills it.
const CLIENT_TIMEOUT_S: u64 = 90;

/// One e2e test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// ---- paths ---------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn clients_src() -> PathBuf {
    workspace_root().join("tests/e2e/clients")
}

fn clients_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KELP_CLIENTS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/kelp-clients")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A scratch directory for one test's logs, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kelp-e2e-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }

    fn file(&self, name: &str) -> (PathBuf, File) {
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
fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    strip_ansi(&String::from_utf8_lossy(&bytes))
}

/// Removes `ESC [ ... letter` sequences (colours in tracing output).
fn strip_ansi(s: &str) -> String {
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- processes -----------------------------------------------------------------------------

/// A child process leading its own process group; drop kills the whole group by its id.
struct Group {
    child: Child,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group, stdout and stderr to files.
    fn spawn(mut cmd: Command, stdout: File, stderr: File) -> Self {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the leader to exit; `None` when it is still running.
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
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

impl Drop for Group {
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
struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs a client program to completion or until `limit`, then kills its process group.
fn run_client(scratch: &Scratch, mut cmd: Command, limit: Duration) -> Outcome {
    let (out_path, out) = scratch.file("client.out");
    let (err_path, err) = scratch.file("client.err");
    cmd.env("PYTHONDONTWRITEBYTECODE", "1").env("KELP_CLIENTS_DIR", clients_dir());
    let started = Instant::now();
    let mut group = Group::spawn(cmd, out, err);
    let status = group.wait_for(limit);
    drop(group); // kills whatever is left of it, and it on a time-out
    Outcome { status, stdout: read_lossy(&out_path), stderr: read_lossy(&err_path), elapsed: started.elapsed() }
}

// ---- topics the harness makes itself -------------------------------------------------------

/// Creates `topic` with `partitions` partitions by a CreateTopics v2 request written here by
/// hand (not with kelp's codec), for clients without an admin API.
fn create_topic(addr: SocketAddr, topic: &str, partitions: i32) {
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

// ---- the tests -----------------------------------------------------------------------------

/// How to run one client, or why it cannot run here.
struct Client {
    name: &'static str,
    /// Short, topic-name-safe.
    id: &'static str,
    program: PathBuf,
    prefix: Vec<String>,
}

fn python_client(venv: &str, script: &str, name: &'static str, id: &'static str) -> Result<Client, String> {
    let python = clients_dir().join(venv).join("bin/python");
    if !python.is_file() {
        return Err(format!("{name}: {} not found", python.display()));
    }
    Ok(Client { name, id, program: python, prefix: vec![clients_src().join(script).display().to_string()] })
}

fn confluent() -> Result<Client, String> {
    python_client("venv-confluent", "confluent_client.py", "confluent-kafka", "confluent")
}

fn kafka_python(venv: &str, name: &'static str, id: &'static str) -> Result<Client, String> {
    python_client(venv, "kafka_python_client.py", name, id)
}

fn kafkajs() -> Result<Client, String> {
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

fn java() -> Result<Client, String> {
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

fn kcat() -> Result<Client, String> {
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

/// Runs `client` in `mode` against a fresh kelp and asserts that it passed.
fn check(client: Result<Client, String>, mode: &str, compression: &str, harness_creates_topic: bool) {
    let client = match client {
        Ok(c) => c,
        Err(why) => {
            println!("skipped: {why} (run scripts/install-clients.sh)");
            return;
        }
    };
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let topic = format!("e2e-{}-{mode}", client.id);
    let scratch = Scratch::new(&topic);
    let server = KelpServer::start(&[]);

    let mut args: Vec<String> = client.prefix.clone();
    args.extend(["--bootstrap", &server.addr.to_string(), "--topic", &topic, "--mode", mode].map(String::from));
    args.extend(["--compression", compression, "--timeout", &CLIENT_TIMEOUT_S.to_string()].map(String::from));
    if mode == "produce-verify" {
        if harness_creates_topic {
            create_topic(server.addr, &topic, 3);
        } else {
            args.push("--create".into());
        }
    }
    let mut cmd = Command::new(&client.program);
    cmd.args(&args).current_dir(clients_src());
    let limit = Duration::from_secs(CLIENT_TIMEOUT_S + 30);
    let out = run_client(&scratch, cmd, limit);

    let passed = out.status.is_some_and(|s| s.success());
    if !passed {
        let how = out.status.map_or_else(|| format!("killed after {limit:?}"), |s| s.to_string());
        panic!(
            "{} {mode} ({compression}) failed: {how}\ncommand: {} {}\n--- stdout\n{}\n--- stderr\n{}\n--- kelp log (last lines)\n{}",
            client.name,
            client.program.display(),
            args.join(" "),
            out.stdout.trim_end(),
            tail(&out.stderr, 80),
            server.log_tail(),
        );
    }
    let summary = out.stdout.lines().last().unwrap_or("");
    assert!(
        summary.starts_with('{'),
        "{} {mode}: exited 0 without a JSON summary line; stdout:\n{}",
        client.name,
        out.stdout
    );
    println!("{}\n({} took {:.1} s)", out.stdout.trim_end(), client.name, out.elapsed.as_secs_f64());
}

#[test]
fn confluent_kafka_produce_verify_zstd() {
    check(confluent(), "produce-verify", "zstd", false);
}

#[test]
fn confluent_kafka_admin() {
    check(confluent(), "admin", "none", false);
}

#[test]
fn kafka_python_2_produce_verify_gzip() {
    check(kafka_python("venv-kp2", "kafka-python 2.3", "kp2"), "produce-verify", "gzip", false);
}

#[test]
fn kafka_python_3_produce_verify_lz4() {
    check(kafka_python("venv-kp3", "kafka-python 3.0", "kp3"), "produce-verify", "lz4", false);
}

#[test]
fn kafkajs_produce_verify_snappy() {
    check(kafkajs(), "produce-verify", "snappy", false);
}

#[test]
fn java_produce_verify_snappy() {
    check(java(), "produce-verify", "snappy", false);
}

#[test]
fn java_admin_lz4() {
    check(java(), "admin", "lz4", false);
}

#[test]
fn kcat_produce_verify_uncompressed() {
    check(kcat(), "produce-verify", "none", true);
}
