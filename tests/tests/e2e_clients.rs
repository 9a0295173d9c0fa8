//! Real Kafka clients against the real `kelp` binary, each in its own process.
//!
//! Every test starts `kelp serve` on a free loopback port with the memory store, runs one client
//! program from `tests/e2e/clients/` against it and asserts that the program exits 0 (it checks
//! everything itself and prints a one-line JSON summary; on failure it prints what differed).
//! The clients come from `scripts/install-clients.sh` under
//! `${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}`; a test whose client is not installed prints
//! `skipped: ...` and passes, or fails with that message when `KELP_E2E_REQUIRE=1`
//! (`scripts/test.sh` sets it).
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

use std::process::Command;
use std::time::Duration;

use kelp_tests::clients::{
    Client, Scratch, clients_src, confluent, create_topic, installed, java, kafka_python, kafkajs, kcat, run_client,
    tail,
};
use kelp_tests::server::KelpServer;

/// How long a client may take, in seconds; the harness allows 30 s more before it kills it.
const CLIENT_TIMEOUT_S: u64 = 90;

/// Runs `client` in `mode` against a fresh kelp and asserts that it passed.
fn check(client: Result<Client, String>, mode: &str, compression: &str, harness_creates_topic: bool) {
    let Some((client, _serial)) = installed(client) else { return };
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
