//! Transactions end to end: real clients in their own processes against `kelp serve` on the
//! disk store.
//!
//! - Transactional producers of confluent-kafka and kafkajs commit and abort; kelp is killed
//!   (SIGKILL) and started again; read_committed consumers of the Java client, librdkafka and
//!   kafkajs then read exactly the committed records, read_uncommitted ones every record, and
//!   no client hands out a control record.
//! - A Java consume-transform-produce application (read_committed KafkaConsumer in a group,
//!   transactional KafkaProducer with sendOffsetsToTransaction) copies a topic while kelp
//!   (`--fsync always`) is killed with SIGKILL at some points and the application at others; the
//!   output, read with read_committed, holds every input record exactly once and in order, per
//!   partition. By default 20,000 records and 3 + 3 kills; `KELP_E2E_LONG=1` runs Kafka's
//!   figure: 100,000 records, 10 + 10 kills.
//!   The same on `--storage seaweedmq` (10,000 records), with SeaweedFS restarted under kelp
//!   as well; that test runs in scripts/test.sh's SeaweedMQ step (it needs `weed` and a
//!   network namespace: `scripts/seaweedfs-test.sh -p kelp-tests --test e2e_transactions`).
//! - A producer silent past its transaction timeout is aborted and fenced; a second producer
//!   with the same transactional id fences the first; the Java Admin's listTransactions and
//!   describeTransactions answer what the coordinator holds.
//!
//! Nothing is timed: every wait is bounded, and a failure shows the clients' output and
//! kelp's log. Every process is stopped by its process group id, also on panic.

use std::path::Path;
use std::time::{Duration, Instant};

use kelp_tests::clients::{
    Client, Json, ProcessGroup, Scratch, confluent_transactions, create_topic, installed, java_transactions,
    kafkajs_transactions, read_lossy, run_client, tail,
};
use kelp_tests::seaweedfs::SeaweedCluster;
use kelp_tests::server::KelpServer;

const WAIT: Duration = Duration::from_secs(180);

/// The last JSON line of a client's output.
fn last_json(stdout: &str) -> Json {
    stdout.lines().rev().find_map(Json::parse).unwrap_or_else(|| panic!("no JSON line in:\n{stdout}"))
}

fn strings(v: &Json, key: &str) -> Vec<String> {
    v.get(key)
        .unwrap_or_else(|| panic!("no {key}"))
        .items()
        .iter()
        .map(|x| x.str().unwrap_or("?").to_string())
        .collect()
}

/// Runs `client` with `args` to success and returns its last JSON line.
fn run_ok(scratch: &Scratch, client: &Client, args: &[String], server: &KelpServer) -> Json {
    let out = run_client(scratch, client.command(args), WAIT);
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{} {args:?} failed ({:?}):\n{}\n{}\n--- kelp log\n{}",
        client.name,
        out.status,
        tail(&out.stdout, 30),
        tail(&out.stderr, 30),
        server.log_tail()
    );
    last_json(&out.stdout)
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

#[test]
fn committed_and_aborted_transactions_of_librdkafka_and_kafkajs_read_by_every_client_across_a_crash() {
    let Some((py, _serial)) = installed(confluent_transactions()) else { return };
    let (js, java) = match (kafkajs_transactions(), java_transactions()) {
        (Ok(js), Ok(java)) => (js, java),
        (Err(why), _) | (_, Err(why)) => return kelp_tests::skip(&format!("{why} (run scripts/install-clients.sh)")),
    };
    let scratch = Scratch::new("txn-mixed");
    let data = scratch.0.join("data");
    let mut server = KelpServer::start_on_disk(&data, &["--fsync", "always"]);
    let port = server.addr.port();
    let bootstrap = server.addr.to_string();
    let mut expected = Vec::new();
    for (producer, topic) in [(&py, "txn-py"), (&js, "txn-js")] {
        create_topic(server.addr, topic, 2);
        let args: Vec<String> = if producer.id == "py-txn" {
            vec![
                s("mixed"),
                s("--bootstrap"),
                bootstrap.clone(),
                s("--topic"),
                s(topic),
                s("--txn-id"),
                s(topic),
                s("--rounds"),
                s(5),
            ]
        } else {
            vec![s("mixed"), bootstrap.clone(), s(topic), s(topic), s(5)]
        };
        let made = run_ok(&scratch, producer, &args, &server);
        let (committed, aborted) = (strings(&made, "committed"), strings(&made, "aborted"));
        assert_eq!((committed.len(), aborted.len()), (20, 20), "{}", producer.name);
        expected.push((topic, committed, aborted));
    }
    // A crash: the aborted ranges and markers must come back from the store.
    server.kill();
    let server = KelpServer::start_on_disk_at(&data, port, &["--fsync", "always"]);
    for (topic, committed, aborted) in &expected {
        for reader in [&java, &py, &js] {
            for read_committed in [true, false] {
                let isolation = if read_committed { "read_committed" } else { "read_uncommitted" };
                let want = if read_committed { committed.len() } else { committed.len() + aborted.len() };
                let args: Vec<String> = match reader.id {
                    "java-txn" => vec![
                        s("read"),
                        format!("bootstrap={bootstrap}"),
                        format!("topic={topic}"),
                        format!("isolation={isolation}"),
                        format!("expect={want}"),
                    ],
                    "py-txn" => vec![
                        s("read"),
                        s("--bootstrap"),
                        bootstrap.clone(),
                        s("--topic"),
                        s(topic),
                        s("--isolation"),
                        s(isolation),
                        s("--expect"),
                        s(want),
                    ],
                    _ => vec![s("read"), bootstrap.clone(), s(topic), s(isolation), s(want)],
                };
                let got = strings(&run_ok(&scratch, reader, &args, &server), "values");
                if read_committed {
                    assert_eq!(&got, committed, "{} read_committed of {topic}", reader.name);
                } else {
                    // Each transaction's records in order, aborted ones included; no marker.
                    let mut all: Vec<&String> = committed.iter().chain(aborted.iter()).collect();
                    let mut seen: Vec<&String> = got.iter().collect();
                    all.sort();
                    seen.sort();
                    assert_eq!(seen, all, "{} read_uncommitted of {topic}", reader.name);
                }
            }
        }
    }
}

#[test]
fn a_hung_producer_is_aborted_a_second_one_fences_the_first_and_the_admin_sees_it() {
    let Some((java, _serial)) = installed(java_transactions()) else { return };
    let scratch = Scratch::new("txn-fence");
    let server = KelpServer::start(&[]);
    let bootstrap = format!("bootstrap={}", server.addr);
    create_topic(server.addr, "txn-hang", 1);
    let hang =
        run_client(&scratch, java.command(&[s("hang"), bootstrap.clone(), s("topic=txn-hang"), s("txn=hanger")]), WAIT);
    assert!(hang.status.is_some_and(|s| s.success()), "hang: {}\n{}", hang.stdout, tail(&hang.stderr, 20));
    assert!(hang.stdout.contains("\"commit_refused\""), "{}", hang.stdout);
    let fence = run_client(
        &scratch,
        java.command(&[s("fence"), bootstrap.clone(), s("topic=txn-hang"), s("txn=fencer")]),
        WAIT,
    );
    assert!(fence.status.is_some_and(|s| s.success()), "fence: {}\n{}", fence.stdout, tail(&fence.stderr, 20));
    assert!(fence.stdout.contains("\"zombie_refused\",\"error\":\"ProducerFencedException\""), "{}", fence.stdout);
    let read = run_ok(
        &scratch,
        &java,
        &[s("read"), bootstrap.clone(), s("topic=txn-hang"), s("isolation=read_committed"), s("expect=2")],
        &server,
    );
    assert_eq!(strings(&read, "values"), ["after", "winner"], "the hung and the fenced records are aborted");
    let admin = run_client(&scratch, java.command(&[s("admin"), bootstrap, s("txn=fencer")]), WAIT);
    assert!(admin.status.is_some_and(|s| s.success()), "admin: {}\n{}", admin.stdout, tail(&admin.stderr, 20));
    let lines: Vec<Json> = admin.stdout.lines().filter_map(Json::parse).collect();
    let listed: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l.get("event").and_then(Json::str) == Some("listed"))
        .map(|l| {
            (s(l.get("id").and_then(Json::str).unwrap_or("?")), s(l.get("state").and_then(Json::str).unwrap_or("?")))
        })
        .collect();
    assert_eq!(
        listed,
        vec![(s("fencer"), s("CompleteCommit")), (s("hanger"), s("CompleteCommit"))],
        "{}",
        admin.stdout
    );
    let described = lines.iter().find(|l| l.get("event").and_then(Json::str) == Some("described")).expect("described");
    assert_eq!(described.get("state").and_then(Json::str), Some("CompleteCommit"));
    // The zombie had epoch 0; the winner's InitProducerId bumped it to fence the open
    // transaction (and was told CONCURRENT_TRANSACTIONS), then again when it retried (2), and
    // the Java client 4.x uses transaction version 2, whose commit bumps it once more: 3.
    assert_eq!(described.get("epoch").and_then(Json::u64), Some(3), "{}", admin.stdout);
    assert_eq!(described.get("timeout_ms").and_then(Json::u64), Some(60_000));
}

/// How many records the copier reported committed, over every run (each run counts from 0).
fn progress(dir: &Path, runs: usize) -> u64 {
    (0..runs)
        .map(|r| {
            read_lossy(&dir.join(format!("copy-{r}.out")))
                .lines()
                .filter_map(Json::parse)
                .filter_map(|l| l.get("copied").and_then(Json::u64))
                .max()
                .unwrap_or(0)
        })
        .sum()
}

/// What breaks at a kill point of a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// kelp is killed (SIGKILL) and started again on the same data and port.
    Kelp,
    /// The application is killed (SIGKILL) and started again.
    App,
    /// SeaweedFS is stopped and started again, kelp staying up.
    SeaweedFs,
}

/// A Java consume-transform-produce application (read_committed consumer in a group,
/// transactional producer, `sendOffsetsToTransaction` every `plan.commit` records) copies `plan.records`
/// records over 3 partitions from `copy-in` to `copy-out` on `server`, while `plan.faults` strike at
/// points of its progress drawn from a fixed seed (`KELP_E2E_SEED` picks others); `restart`
/// breaks and restores kelp or SeaweedFS, the application is killed and started again here.
/// An application run that kelp's or SeaweedFS's restart made fail (exit 3: its transaction
/// aborted or its producer fenced) is started again too. At the end, the output read with
/// read_committed holds every input record exactly once and in order per partition.
/// How much a copy moves, how often it commits, what strikes it, and how long it may take.
struct CopyPlan {
    records: u64,
    commit: u64,
    faults: Vec<Fault>,
    limit: Duration,
}

fn copy_through_faults(
    scratch: &Scratch,
    java: &Client,
    server: &mut KelpServer,
    plan: &CopyPlan,
    mut restart: impl FnMut(Fault, &mut KelpServer),
) {
    let CopyPlan { records, commit, ref faults, limit } = *plan;
    let bootstrap = format!("bootstrap={}", server.addr);
    create_topic(server.addr, "copy-in", 3);
    create_topic(server.addr, "copy-out", 3);
    run_ok(
        scratch,
        java,
        &[s("seed"), bootstrap.clone(), s("topic=copy-in"), format!("count={records}"), s("partitions=3")],
        server,
    );
    let mut seed: u64 = std::env::var("KELP_E2E_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_cafe);
    let mut points: Vec<(u64, Fault)> = faults
        .iter()
        .map(|&fault| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let at = (seed >> 33) % (records * 9 / 10);
            (at.max(1), fault)
        })
        .collect();
    points.sort_unstable();
    let copy_args = [
        s("copy"),
        bootstrap.clone(),
        s("input=copy-in"),
        s("output=copy-out"),
        s("group=copier"),
        s("txn=copier-1"),
        format!("commit={commit}"),
    ];
    let start_copier = |run: usize| -> ProcessGroup {
        let (_, out) = scratch.file(&format!("copy-{run}.out"));
        let (_, err) = scratch.file(&format!("copy-{run}.err"));
        ProcessGroup::spawn(java.command(&copy_args), out, err)
    };
    let started = Instant::now();
    let mut runs = 1;
    let mut copier = start_copier(0);
    let mut struck = Vec::new();
    let mut app_failures = 0;
    let deadline = started + limit;
    loop {
        assert!(Instant::now() < deadline, "the copy did not finish in time; kelp log:\n{}", server.log_tail());
        if let Some(status) = copier.wait_for(Duration::from_millis(200)) {
            let out = read_lossy(&scratch.0.join(format!("copy-{}.out", runs - 1)));
            if status.success() {
                break;
            }
            assert_eq!(status.code(), Some(3), "the copier failed unexpectedly:\n{}", tail(&out, 20));
            eprintln!("application run {} ended: {}", runs - 1, tail(&out, 1));
            app_failures += 1;
            assert!(app_failures < 200, "the copier keeps failing:\n{}", tail(&out, 20));
            copier = start_copier(runs);
            runs += 1;
            continue;
        }
        let done = progress(&scratch.0, runs);
        if let Some(&(at, fault)) = points.first()
            && done >= at
        {
            points.remove(0);
            struck.push(fault);
            if fault == Fault::App {
                drop(copier); // SIGKILL to its process group
                copier = start_copier(runs);
                runs += 1;
            } else {
                restart(fault, server);
            }
        }
    }
    assert!(points.is_empty(), "the copy finished before every fault: {points:?} left");
    struck.sort_unstable();
    let mut wanted = faults.to_vec();
    wanted.sort_unstable();
    assert_eq!(struck, wanted);
    let verified = run_ok(scratch, java, &[s("verify"), bootstrap, s("input=copy-in"), s("output=copy-out")], server);
    assert_eq!(verified.get("records").and_then(Json::u64), Some(records), "every input record is in the output once");
    println!(
        "copied {records} records exactly once in {:.0?} through {faults:?} ({runs} runs of the application, \
         {app_failures} of them ended by kelp's or SeaweedFS's restarts)",
        started.elapsed()
    );
}

/// The copy on the disk store (`--fsync always`): kelp and the application each killed
/// (SIGKILL) 3 times over 20,000 records, or 10 times over 100,000 with `KELP_E2E_LONG=1`.
#[test]
fn a_java_consume_transform_produce_application_copies_exactly_once_across_kill_9() {
    let Some((java, _serial)) = installed(java_transactions()) else { return };
    let long = std::env::var_os("KELP_E2E_LONG").is_some_and(|v| v == "1");
    let (records, kills): (u64, usize) = if long { (100_000, 10) } else { (20_000, 3) };
    let scratch = Scratch::new("txn-copy");
    let data = scratch.0.join("data");
    let kelp_args = ["--fsync", "always"];
    let mut server = KelpServer::start_on_disk(&data, &kelp_args);
    let port = server.addr.port();
    let faults: Vec<Fault> = (0..kills).flat_map(|_| [Fault::Kelp, Fault::App]).collect();
    let limit = Duration::from_secs(if long { 3600 } else { 900 });
    let plan = CopyPlan { records, commit: 100, faults, limit };
    copy_through_faults(&scratch, &java, &mut server, &plan, |_, server| {
        server.kill();
        *server = KelpServer::start_on_disk_at(&data, port, &kelp_args);
    });
}

/// The copy on `--storage seaweedmq`: 10,000 records while kelp and the application are each
/// killed (SIGKILL) twice and SeaweedFS is restarted twice under a running kelp (once killed,
/// once stopped gracefully). Transaction state, markers, aborted ranges and group offsets all
/// live in SeaweedFS.
#[test]
fn a_java_consume_transform_produce_application_copies_exactly_once_on_seaweedmq_across_restarts() {
    kelp_tests::require_seaweedfs!();
    let Some((java, _serial)) = installed(java_transactions()) else { return };
    let mut cluster = SeaweedCluster::start("txn-copy");
    let scratch = Scratch::new("txn-copy-smq");
    let master = cluster.master.clone();
    let kelp_args = ["--storage", "seaweedmq", "--seaweedmq-master", &master, "--seaweedmq-namespace", "txncopy"];
    let mut server = KelpServer::start(&kelp_args);
    let port = server.addr.port();
    let faults: Vec<Fault> = (0..2).flat_map(|_| [Fault::Kelp, Fault::App, Fault::SeaweedFs]).collect();
    let mut seaweed_restarts = 0;
    let plan = CopyPlan { records: 10_000, commit: 500, faults, limit: Duration::from_secs(1200) };
    copy_through_faults(&scratch, &java, &mut server, &plan, |fault, server| {
        if fault == Fault::Kelp {
            server.kill();
            *server = KelpServer::start_at(port, &kelp_args);
        } else {
            seaweed_restarts += 1;
            if seaweed_restarts % 2 == 1 {
                cluster.kill_and_restart();
            } else {
                cluster.restart();
            }
        }
    });
}
