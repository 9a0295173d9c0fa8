//! A consumer group resumes at its committed offsets after kelp restarts on the disk store.
//!
//! For confluent-kafka, kafka-python 3.0, kafkajs and the Java client 4.3 (classic protocol, and
//! KIP-848's `group.protocol=consumer`), each with a crash (SIGKILL); confluent-kafka and the two
//! Java protocols also with a graceful stop (SIGTERM, which must end kelp with exit status 0):
//!
//! 1. kelp on the disk store; a 6-partition topic; 3000 records `k{i}`/`v{i}` on partition
//!    `i % 6`, produced by the client under test;
//! 2. phase 1: three member processes join at once and consume slowly (20 records per poll, a
//!    synchronous commit per batch, 50 ms pause); once 1250 records (2.5 partitions' worth)
//!    are consumed all three are told to stop together (each finishes its batch and commit,
//!    leaves, prints a summary); some partition must be left part read;
//! 3. kelp is stopped (SIGKILL or SIGTERM) and started again on the same data directory;
//! 4. OffsetFetch (a request written with kelp's codec, not a client library) must return, per
//!    partition, the offset after the last record phase 1 consumed there;
//! 5. phase 2: three fresh member processes of the same group join and consume until every
//!    record has been consumed once over both phases, then stop.
//!
//! Checked: on every partition phase 2 begins exactly at the committed offset and reads on
//! without a gap; every record is consumed exactly once over the two phases, with its key. A
//! record may be consumed twice only when a member reported that the commit covering it failed
//! (a client's commit can fail in a rebalance; every failed commit is printed).
//! Nothing is timed: every wait is bounded and a failure shows each member's output and kelp's
//! log. All processes run in process groups killed by id when their guards drop (also on panic).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::offset_fetch::{OffsetFetchRequest, OffsetFetchRequestTopic};
use kelp_tests::clients::{
    Client, Json, Scratch, confluent, create_topic, installed, java, kafka_python, kafkajs, run_client, tail,
};
use kelp_tests::expect_body;
use kelp_tests::members::{Member, batch_records, ev, failed_commits};
use kelp_tests::raw::RawClient;
use kelp_tests::server::KelpServer;

const PARTITIONS: u64 = 6;
const RECORDS: u64 = 3000;
const MEMBERS: usize = 3;
/// Records consumed before phase 1 is stopped (it stops a batch or a few later).
const PHASE1: u64 = 1250;
/// A member gives up (exits 1) after this long.
const MEMBER_TIMEOUT_S: u64 = 240;
/// The longest any one wait of the harness may take.
const WAIT: Duration = Duration::from_secs(120);

/// How kelp is stopped between the two phases.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGTERM: a graceful stop, which must exit 0.
    Term,
}

/// The error text of every `commit_failed` event, for the log.
fn commit_errors(events: &[Vec<Json>]) -> Vec<String> {
    events
        .iter()
        .flatten()
        .filter(|e| ev(e) == "commit_failed")
        .map(|e| e.get("error").and_then(Json::str).unwrap_or("?").to_string())
        .collect()
}

/// One phase: its members, and kelp's log for failure reports.
struct Phase<'a> {
    label: String,
    server: &'a KelpServer,
    members: Vec<Member>,
}

impl Phase<'_> {
    fn fail(&self, what: &str) -> ! {
        let reports: Vec<String> = self.members.iter().map(Member::report).collect();
        panic!("{}: {what}\n{}\n--- kelp log (last lines)\n{}", self.label, reports.join("\n"), self.server.log_tail());
    }

    /// Waits (bounded) until `done` holds; fails naming `what` otherwise, or when a member exits.
    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if done(self) {
                return;
            }
            for i in 0..self.members.len() {
                if let Some(status) = self.members[i].proc.try_wait() {
                    self.fail(&format!("{} exited ({status}) while waiting for {what}", self.members[i].name));
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("gave up after {WAIT:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn consumed(&self) -> BTreeSet<(u64, u64)> {
        self.members.iter().flat_map(|m| batch_records(&m.events())).map(|(p, o, _)| (p, o)).collect()
    }

    /// Starts every member at once and waits until each has printed `ready` first.
    fn start_all(&mut self) {
        self.wait_until("every member ready", |ph| {
            ph.members.iter().all(|m| m.events().iter().any(|e| ev(e) == "ready"))
        });
        for m in &self.members {
            Member::touch(&m.start);
        }
    }

    /// Stops every member at once; each member's events, ending with its summary.
    fn stop_all(&mut self) -> Vec<Vec<Json>> {
        for m in &self.members {
            Member::touch(&m.stop);
        }
        let deadline = Instant::now() + WAIT;
        for i in 0..self.members.len() {
            let status = loop {
                if let Some(status) = self.members[i].proc.try_wait() {
                    break status;
                }
                if Instant::now() >= deadline {
                    self.fail(&format!("{} did not stop within {WAIT:?} of its stop file", self.members[i].name));
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !status.success() {
                self.fail(&format!("{} exited {status} after its stop file", self.members[i].name));
            }
            if self.members[i].events().last().map(ev) != Some("summary") {
                self.fail(&format!("{} exited 0 without a summary line", self.members[i].name));
            }
        }
        self.members.iter().map(Member::events).collect()
    }
}

/// The group's committed offset of every partition, read with kelp's own codec.
fn committed(server: &KelpServer, topic: &str, group: &str) -> BTreeMap<u64, i64> {
    let mut c = RawClient::connect(server.addr).expect("connect to kelp");
    let req = RequestBody::OffsetFetch(OffsetFetchRequest {
        group_id: group.into(),
        topics: Some(vec![OffsetFetchRequestTopic {
            name: topic.into(),
            partition_indexes: (0..i32::try_from(PARTITIONS).expect("small")).collect(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let resp = expect_body!(c.call(req, 7).expect("offset fetch"), OffsetFetch);
    assert_eq!(resp.error_code, 0, "OffsetFetch of group {group} after the restart: error code");
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            assert_eq!(p.error_code, 0, "OffsetFetch of {topic}-{}: error code", p.partition_index);
            out.insert(u64::try_from(p.partition_index).expect("partition index"), p.committed_offset);
        }
    }
    out
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| (*s).to_string()).collect()
}

fn scenario(client: Result<Client, String>, label: &str, extra: &[&str], stop: Stop) {
    let Some((client, _serial)) = installed(client) else { return };
    let label = format!("{label}, {stop:?}");
    let id = label.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let topic = format!("resume-{id}");
    let group = format!("g-{id}");
    let scratch = Scratch::new(&topic);
    let data = scratch.path("data");
    let mut server = KelpServer::start_on_disk(&data, &[]);
    let bootstrap = server.addr.to_string();
    create_topic(server.addr, &topic, i32::try_from(PARTITIONS).expect("small"));

    let mut args = strings(&["--bootstrap", &bootstrap, "--topic", &topic, "--mode", "produce", "--timeout", "120"]);
    args.extend(strings(&["--first", "0", "--count", &RECORDS.to_string(), "--partitions", &PARTITIONS.to_string()]));
    let out = run_client(&scratch, client.command(&args), Duration::from_secs(150));
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{label}: producing {RECORDS} records failed ({:?})\n--- stdout\n{}\n--- stderr\n{}\n--- kelp log\n{}",
        out.status,
        out.stdout,
        tail(&out.stderr, 40),
        server.log_tail()
    );

    let member_args = |bootstrap: &str, slow: bool| {
        let mut a = strings(&["--bootstrap", bootstrap, "--topic", &topic, "--mode", "group", "--group", &group]);
        a.extend(strings(&["--timeout", &MEMBER_TIMEOUT_S.to_string()]));
        if slow {
            a.extend(strings(&["--max-batch", "20", "--batch-delay-ms", "50"]));
        }
        a.extend(strings(extra));
        a
    };

    // ---- phase 1: consume a third, commit, leave ----
    let mut phase = Phase { label: format!("{label}, phase 1"), server: &server, members: Vec::new() };
    for i in 0..MEMBERS {
        phase.members.push(Member::spawn(&client, &scratch, &format!("first{i}"), &member_args(&bootstrap, true)));
    }
    phase.start_all();
    // 1250 is 2.5 partitions' worth: however the members split it, some partition is left part
    // read, so phase 2 has to resume inside a partition, not only at its start or its end.
    phase.wait_until("1250 records consumed", |ph| ph.consumed().len() as u64 >= PHASE1);
    let first: Vec<Vec<Json>> = phase.stop_all();
    drop(phase);

    // ---- kelp stops and starts again on the same data ----
    match stop {
        Stop::Kill => server.kill(),
        Stop::Term => {
            let status = server.terminate(Duration::from_secs(30));
            let log = server.log_tail();
            assert!(status.is_some_and(|s| s.success()), "{label}: kelp after SIGTERM: {status:?}; its log:\n{log}");
            assert!(log.contains("kelp stopped"), "{label}: no 'kelp stopped' after SIGTERM; its log:\n{log}");
        }
    }
    drop(server);
    let server = KelpServer::start_on_disk(&data, &[]);
    let bootstrap = server.addr.to_string();

    // What phase 1 consumed, and where each partition must resume.
    let mut seen: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut failed: Vec<(u64, u64)> = Vec::new();
    let mut errors = Vec::new();
    let mut resume_at: BTreeMap<u64, u64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for (i, events) in first.iter().enumerate() {
        for (p, o, k) in batch_records(events) {
            let at = resume_at.entry(p).or_insert(0);
            *at = (*at).max(o + 1);
            seen.entry((p, o)).or_default().push(format!("first{i}:{k}"));
        }
        failed.extend(failed_commits(events));
    }
    let committed = committed(&server, &topic, &group);
    for p in 0..PARTITIONS {
        let want = resume_at[&p];
        let have = committed.get(&p).copied();
        // A failed commit of phase 1's last batch on a partition leaves an earlier offset.
        let explained = failed.iter().any(|&(fp, next)| fp == p && next == want);
        // Nothing consumed: no commit (-1), or a commit of position 0 (the Java client and
        // kafka-python commit the position of every owned partition).
        let ok = if want == 0 { matches!(have, Some(-1 | 0)) } else { have == i64::try_from(want).ok() };
        if !ok && !explained {
            errors.push(format!(
                "partition {p}: committed offset after the restart is {have:?}, but phase 1 consumed up to offset {want} \
                 and every commit of it succeeded"
            ));
        }
        if let Some(h) = have.and_then(|h| u64::try_from(h).ok()) {
            resume_at.insert(p, h);
        } else {
            resume_at.insert(p, 0);
        }
    }
    let resumed: BTreeMap<u64, u64> = resume_at.clone();
    let per_partition = RECORDS / PARTITIONS;
    if !resumed.values().any(|&at| at > 0 && at < per_partition) {
        errors.push(format!("phase 1 left no partition part read (committed: {committed:?}): nothing resumes mid-way"));
    }
    println!("{label}: phase 1 consumed {} records; committed after the restart: {committed:?}", seen.len());

    // ---- phase 2: fresh members resume ----
    let mut phase = Phase { label: format!("{label}, phase 2"), server: &server, members: Vec::new() };
    for i in 0..MEMBERS {
        phase.members.push(Member::spawn(&client, &scratch, &format!("second{i}"), &member_args(&bootstrap, false)));
    }
    phase.start_all();
    let left = RECORDS - seen.len() as u64;
    phase.wait_until("every record consumed over both phases", |ph| {
        let mut all: BTreeSet<(u64, u64)> = seen.keys().copied().collect();
        all.extend(ph.consumed());
        all.len() as u64 >= RECORDS && ph.consumed().len() as u64 >= left
    });
    let second = phase.stop_all();

    let mut first_of_phase2: BTreeMap<u64, u64> = BTreeMap::new();
    let mut failed2 = Vec::new();
    for (i, events) in second.iter().enumerate() {
        for (p, o, k) in batch_records(events) {
            let f = first_of_phase2.entry(p).or_insert(o);
            *f = (*f).min(o);
            seen.entry((p, o)).or_default().push(format!("second{i}:{k}"));
        }
        failed2.extend(failed_commits(events));
    }
    for p in 0..PARTITIONS {
        let at = resumed[&p];
        if at < per_partition && first_of_phase2.get(&p) != Some(&at) {
            errors.push(format!(
                "partition {p}: phase 2 began at offset {:?}, the committed offset is {at}",
                first_of_phase2.get(&p)
            ));
        }
        for o in 0..per_partition {
            let want = format!("k{}", o * PARTITIONS + p);
            match seen.get(&(p, o)) {
                None => errors.push(format!("partition {p} offset {o} ({want}) was never consumed")),
                Some(by) => {
                    if let Some(bad) = by.iter().find(|b| !b.ends_with(&format!(":{want}"))) {
                        errors.push(format!("partition {p} offset {o}: {bad}, expected key {want}"));
                    }
                    let covered = failed.iter().chain(&failed2).any(|&(fp, next)| fp == p && next > o);
                    if by.len() > 1 && !covered {
                        errors.push(format!(
                            "partition {p} offset {o} consumed {} times ({by:?}) and no failed commit covers it",
                            by.len()
                        ));
                    }
                }
            }
        }
    }
    let unknown: Vec<_> = seen.keys().filter(|(p, o)| *p >= PARTITIONS || *o >= per_partition).collect();
    if !unknown.is_empty() {
        errors.push(format!("consumed records that were never produced: {unknown:?}"));
    }
    if !errors.is_empty() {
        let n = errors.len();
        errors.truncate(25);
        phase.fail(&format!("{n} problems:\n{}", errors.join("\n")));
    }
    let twice = seen.values().filter(|by| by.len() > 1).count();
    println!(
        "{label}: passed: phase 2 resumed at {resumed:?} and consumed the other {left}; {twice} records twice \
         after {} failed commits ({failed:?} {failed2:?}: {:?})",
        failed.len() + failed2.len(),
        commit_errors(&first).into_iter().chain(commit_errors(&second)).collect::<Vec<_>>()
    );
}

#[test]
fn confluent_kafka_resumes_after_kill() {
    scenario(confluent(), "confluent-kafka", &[], Stop::Kill);
}

#[test]
fn confluent_kafka_resumes_after_sigterm() {
    scenario(confluent(), "confluent-kafka", &[], Stop::Term);
}

#[test]
fn kafka_python_3_resumes_after_kill() {
    scenario(kafka_python("venv-kp3", "kafka-python 3.0", "kp3"), "kafka-python 3.0", &[], Stop::Kill);
}

#[test]
fn kafkajs_resumes_after_kill() {
    scenario(kafkajs(), "kafkajs", &[], Stop::Kill);
}

#[test]
fn java_classic_resumes_after_kill() {
    scenario(java(), "java classic", &[], Stop::Kill);
}

#[test]
fn java_classic_resumes_after_sigterm() {
    scenario(java(), "java classic", &[], Stop::Term);
}

#[test]
fn java_kip848_resumes_after_kill() {
    scenario(java(), "java kip-848", &["--group-protocol", "consumer"], Stop::Kill);
}

#[test]
fn java_kip848_resumes_after_sigterm() {
    scenario(java(), "java kip-848", &["--group-protocol", "consumer"], Stop::Term);
}
