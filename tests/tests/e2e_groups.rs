//! Consumer groups end to end: real clients, each member its own process, against `kelp serve`.
//!
//! For each client (confluent-kafka and the Java client, each with the classic protocol and
//! with KIP-848's `group.protocol=consumer`, kafka-python 3.0 and 2.3, kafkajs), for mixes of
//! them in one group, and for groups moving between the protocols mid-stream (a rolling upgrade
//! of Java members, a rolling downgrade of confluent-kafka members) one scenario:
//!
//! 1. a 6-partition topic, 6000 records `k{i}`/`v{i}` on partition `i % 6` (the client's
//!    `produce` mode);
//! 2. four member processes start and get ready (a JVM compiles its source first); three are let
//!    in at once through their start files. The first join's time, from each member's own
//!    `start` line to its first `assigned` line, is printed (on a quiet machine it is the
//!    initial rebalance delay, 3 s, plus at most one second). The test
//!    only bounds it loosely, because on a loaded 2-core machine a JVM can be starved for
//!    seconds: it fails when a join waits for a session or rebalance timeout instead of the
//!    initial delay (the 20 s first joins seen on other Kafka-compatible servers). That the
//!    coordinator answers exactly when the delay runs out is asserted on the virtual clock
//!    in group_classic.rs. The group must settle at 2 partitions per member;
//! 3. the members consume slowly (10 records per batch, 100 ms pause, a synchronous commit per
//!    batch) so that membership changes happen mid-stream: after a third of the records the 4th
//!    member is let in (settles at no more than 2 each, every member with at least one), then
//!    member 0 leaves through its stop file (settles at 2 each over the three left);
//! 4. once every record is consumed the members are stopped (commit, leave, JSON summary);
//! 5. 100 more records are produced and a fresh member of the same group must get exactly
//!    those: nothing older than the committed positions.
//!
//! What "exactly once" means here: records consumed while the group was stable (after the
//! first settle, before the 4th member was let in) must be consumed exactly once in the whole
//! run, and no commit may fail in that phase. Across the membership changes the check is at
//! least once with no loss: a record consumed twice is allowed only when some member reported
//! a failed commit (`commit_failed`, with the offsets it did not commit) covering it.
//!
//! Nothing else is timed: every wait is bounded and a failure shows each member's output.
//! All processes run in process groups killed by id when their guards drop (also on panic).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kelp_tests::clients::{
    Client, Json, Scratch, confluent, create_topic, installed, java, kafka_python, kafkajs, run_client, tail,
};
use kelp_tests::members::{Member, batch_records, ev, nums};
use kelp_tests::server::KelpServer;

const PARTITIONS: u64 = 6;
const RECORDS: u64 = 6000;
const MORE: u64 = 100;
/// The broker's default `group.initial.rebalance.delay.ms` plus slack for a starved machine,
/// still well below the session (10 s+) and rebalance timeouts a broken first join waits for.
const FIRST_JOIN_LIMIT_MS: u64 = 3000 + 5000;
/// The same for KIP-848 members: the first member to heartbeat gets every partition, and the
/// others get theirs once it has heard of the revocation on its next heartbeat and acknowledged
/// it, then on their own next heartbeat: two heartbeat intervals (5 s, Kafka's default), plus
/// slack; still well below the 45 s session timeout a broken join waits for.
const FIRST_JOIN_LIMIT_KIP848_MS: u64 = 2 * 5000 + 5000;
/// A member gives up (exits 1) after this long; the harness kills it 30 s later at the latest.
const MEMBER_TIMEOUT_S: u64 = 300;
/// The longest any one wait of the harness may take.
const WAIT: Duration = Duration::from_secs(120);

struct Run<'a> {
    label: String,
    server: &'a KelpServer,
    members: Vec<Member>,
}

impl Run<'_> {
    fn fail(&self, what: &str) -> ! {
        let reports: Vec<String> = self.members.iter().map(Member::report).collect();
        panic!("{}: {what}\n{}\n--- kelp log (last lines)\n{}", self.label, reports.join("\n"), self.server.log_tail());
    }

    /// Waits (bounded) until `done` holds; fails naming `what` otherwise, or when a member exits.
    fn wait_until(&mut self, what: &str, live: &[usize], mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if done(self) {
                return;
            }
            for &i in live {
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

    /// The live members own every partition once, none more than its share, each at least one.
    fn settled(&self, live: &[usize]) -> bool {
        let share = PARTITIONS.div_ceil(live.len() as u64);
        let mut union = BTreeSet::new();
        for &i in live {
            let (owned, changes) = self.members[i].owned();
            if changes == 0 || owned.is_empty() || owned.len() as u64 > share {
                return false;
            }
            for p in owned {
                if !union.insert(p) {
                    return false;
                }
            }
        }
        union == (0..PARTITIONS).collect()
    }

    fn ownership(&self, live: &[usize]) -> String {
        live.iter()
            .map(|&i| format!("{} owns {:?}", self.members[i].name, self.members[i].owned().0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn consumed_unique(&self) -> usize {
        let mut all = BTreeSet::new();
        for m in &self.members {
            for (p, o, _) in batch_records(&m.events()) {
                all.insert((p, o));
            }
        }
        all.len()
    }

    fn stop(&mut self, i: usize) -> Vec<Json> {
        Member::touch(&self.members[i].stop);
        let limit = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.members[i].proc.try_wait() {
                if !status.success() {
                    self.fail(&format!("{} exited {status} after its stop file", self.members[i].name));
                }
                break;
            }
            if Instant::now() >= limit {
                self.fail(&format!("{} did not stop within {WAIT:?} of its stop file", self.members[i].name));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let events = self.members[i].events();
        if events.last().map(ev) != Some("summary") {
            self.fail(&format!("{} exited 0 without a summary line", self.members[i].name));
        }
        events
    }
}

fn scenario(client: Result<Client, String>, label: &str, extra: &[&str]) {
    let Some((client, _serial)) = installed(client) else { return };
    run_scenario(label, &[(&client, extra); 5]);
}

/// The scenario with member i (0-3 in the group, 4 the fresh one at the end) run by
/// `members[i]`'s client with its extra arguments; member 0's client produces.
fn run_scenario(label: &str, members: &[(&Client, &[&str]); 5]) {
    // The first three members make the group a consumer group when one of them uses KIP-848
    // (directly, or by upgrading the classic group the others started).
    let uses_kip848 = |(_, extra): &(&Client, &[&str])| extra.windows(2).any(|w| w == ["--group-protocol", "consumer"]);
    let kip848 = members[..3].iter().any(uses_kip848);
    // Members of both protocols in the group's life: the group's type after member0 leaves is
    // checked too (a consumer group while a KIP-848 member remains, else classic again).
    let mixed = members[..4].iter().any(uses_kip848) && !members[..4].iter().all(uses_kip848);
    let client = members[0].0;
    let id = label.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let topic = format!("groups-{id}");
    let group = format!("g-{id}");
    let scratch = Scratch::new(&topic);
    let server = KelpServer::start(&[]);
    let bootstrap = server.addr.to_string();
    create_topic(server.addr, &topic, i32::try_from(PARTITIONS).expect("small"));

    let produce = |first: u64, count: u64| {
        let args: Vec<String> = ["--bootstrap", &bootstrap, "--topic", &topic, "--mode", "produce", "--timeout", "120"]
            .iter()
            .map(|s| (*s).to_string())
            .chain(["--first".into(), first.to_string(), "--count".into(), count.to_string()])
            .chain(["--partitions".into(), PARTITIONS.to_string()])
            .collect();
        let out = run_client(&scratch, client.command(&args), Duration::from_secs(150));
        assert!(
            out.status.is_some_and(|s| s.success()),
            "{label}: producing {count} records failed ({:?})\n--- stdout\n{}\n--- stderr\n{}\n--- kelp log\n{}",
            out.status,
            out.stdout,
            tail(&out.stderr, 40),
            server.log_tail()
        );
    };
    produce(0, RECORDS);

    let common: Vec<String> = ["--bootstrap", &bootstrap, "--topic", &topic, "--mode", "group", "--group", &group]
        .iter()
        .map(|s| (*s).to_string())
        .chain(["--timeout".into(), MEMBER_TIMEOUT_S.to_string()])
        .collect();
    let slow = ["--max-batch", "10", "--batch-delay-ms", "100"];
    let mut run = Run { label: label.to_string(), server: &server, members: Vec::new() };
    for (i, (member_client, extra)) in members.iter().enumerate().take(4) {
        let args: Vec<&str> = slow.iter().chain(*extra).copied().collect();
        let args: Vec<String> = common.iter().cloned().chain(args.iter().map(|s| (*s).to_string())).collect();
        run.members.push(Member::spawn(member_client, &scratch, &format!("member{i}"), &args));
    }
    run.wait_until("all four members ready", &[0, 1, 2, 3], |r| r.members.iter().all(|m| m.has("ready")));

    // ---- three members join at once ----
    for i in 0..3 {
        Member::touch(&run.members[i].start);
    }
    run.wait_until("the first three members to settle at 2 partitions each", &[0, 1, 2], |r| r.settled(&[0, 1, 2]));
    let settled_at: Vec<usize> = run.members.iter().map(|m| m.events().len()).collect();
    for i in 0..3 {
        let events = run.members[i].events();
        let t = |name: &str| events.iter().find(|e| ev(e) == name).and_then(|e| e.get("t_ms")).and_then(Json::u64);
        let (Some(start), Some(assigned)) = (t("start"), t("assigned")) else {
            run.fail(&format!("member{i} has no start or assigned line"));
        };
        let took = assigned.saturating_sub(start);
        println!("{label}: member{i} first join took {took} ms");
        let limit = if kip848 { FIRST_JOIN_LIMIT_KIP848_MS } else { FIRST_JOIN_LIMIT_MS };
        if took > limit {
            run.fail(&format!("member{i}'s first join took {took} ms, more than the {limit} ms allowed"));
        }
    }

    // ---- the admin tools' view of the stable group ----
    check_description(&run, &scratch, &bootstrap, &topic, &group, kip848);

    // ---- a fourth joins after a third of the records ----
    run.wait_until("a third of the records consumed", &[0, 1, 2], |r| r.consumed_unique() as u64 >= RECORDS / 3);
    let stable_until: Vec<usize> = run.members.iter().map(|m| m.events().len()).collect();
    println!("{label}: {} records consumed when member3 was let in", run.consumed_unique());
    Member::touch(&run.members[3].start);
    run.wait_until("four members to settle (no more than 2 partitions each)", &[0, 1, 2, 3], |r| {
        r.settled(&[0, 1, 2, 3])
    });
    println!("{label}: with four members: {}", run.ownership(&[0, 1, 2, 3]));

    // ---- member0 leaves ----
    println!("{label}: {} records consumed when member0 was stopped", run.consumed_unique());
    let mut summaries = vec![(0, run.stop(0))];
    run.wait_until("three members to settle after member0 left", &[1, 2, 3], |r| r.settled(&[1, 2, 3]));
    println!("{label}: after member0 left: {}", run.ownership(&[1, 2, 3]));
    if mixed {
        check_description(&run, &scratch, &bootstrap, &topic, &group, members[1..4].iter().any(uses_kip848));
    }

    run.wait_until("every record consumed", &[1, 2, 3], |r| r.consumed_unique() as u64 >= RECORDS);
    for i in 1..4 {
        summaries.push((i, run.stop(i)));
    }

    // ---- what was consumed ----
    let mut seen: BTreeMap<(u64, u64), Vec<(usize, String)>> = BTreeMap::new();
    let mut failed_commits: Vec<(usize, u64, u64)> = Vec::new(); // member, partition, next
    let mut stable: Vec<(usize, u64, u64)> = Vec::new();
    let mut errors = Vec::new();
    for (i, events) in &summaries {
        let summary = events.last().expect("a summary");
        for r in summary.get("consumed").map(Json::items).unwrap_or_default() {
            let r = r.items();
            match (r.first().and_then(Json::u64), r.get(1).and_then(Json::u64), r.get(2).and_then(Json::str)) {
                (Some(p), Some(o), Some(k)) => seen.entry((p, o)).or_default().push((*i, k.to_string())),
                _ => errors.push(format!("member{i}: unreadable consumed entry {r:?}")),
            }
        }
        let steady = &events[settled_at[*i].min(events.len())..stable_until[*i].min(events.len())];
        for (p, o, _) in batch_records(steady) {
            stable.push((*i, p, o));
        }
        for (n, e) in events.iter().enumerate() {
            if ev(e) != "commit_failed" {
                continue;
            }
            if (settled_at[*i]..stable_until[*i]).contains(&n) {
                errors.push(format!("member{i}: a commit failed while the group was stable: {e:?}"));
            }
            for o in e.get("offsets").map(Json::items).unwrap_or_default() {
                if let (Some(p), Some(next)) =
                    (o.items().first().and_then(Json::u64), o.items().get(1).and_then(Json::u64))
                {
                    failed_commits.push((*i, p, next));
                }
            }
        }
    }
    let per_partition = RECORDS / PARTITIONS;
    let mut duplicates = 0;
    for p in 0..PARTITIONS {
        for o in 0..per_partition {
            let want = format!("k{}", o * PARTITIONS + p);
            match seen.get(&(p, o)) {
                None => errors.push(format!("partition {p} offset {o} ({want}) was never consumed")),
                Some(by) => {
                    if let Some((i, k)) = by.iter().find(|(_, k)| *k != want) {
                        errors.push(format!("partition {p} offset {o}: member{i} saw key {k}, expected {want}"));
                    }
                    if by.len() > 1 {
                        duplicates += 1;
                        if !failed_commits.iter().any(|&(_, fp, next)| fp == p && next > o) {
                            errors.push(format!(
                                "partition {p} offset {o} consumed {} times (by {:?}) and no failed commit covers it",
                                by.len(),
                                by.iter().map(|(i, _)| *i).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
            }
        }
    }
    for &(i, p, o) in &stable {
        if let Some(by) = seen.get(&(p, o)).filter(|by| by.len() > 1) {
            errors.push(format!(
                "partition {p} offset {o}: consumed by member{i} while the group was stable, yet consumed {} times (by {:?})",
                by.len(),
                by.iter().map(|(i, _)| *i).collect::<Vec<_>>()
            ));
        }
    }
    let extra_records: Vec<_> = seen.keys().filter(|(p, o)| *p >= PARTITIONS || *o >= per_partition).collect();
    if !extra_records.is_empty() {
        errors.push(format!("consumed records that were never produced: {extra_records:?}"));
    }
    if !errors.is_empty() {
        let n = errors.len();
        errors.truncate(25);
        run.fail(&format!("{n} problems in what the group consumed:\n{}", errors.join("\n")));
    }
    println!(
        "{label}: {} records consumed, {} of them while stable, {duplicates} re-delivered after {} failed commits",
        seen.len(),
        stable.len(),
        failed_commits.len()
    );

    // ---- committed offsets: a new member gets only what came after ----
    produce(RECORDS, MORE);
    let args: Vec<String> = common
        .iter()
        .cloned()
        .chain(["--idle-exit".into(), "30".into()])
        .chain(members[4].1.iter().map(|s| (*s).to_string()))
        .collect();
    run.members.push(Member::spawn(members[4].0, &scratch, "member4", &args));
    Member::touch(&run.members[4].start);
    run.wait_until("the new member to consume the 100 new records", &[4], |r| {
        batch_records(&r.members[4].events()).len() as u64 >= MORE
    });
    std::thread::sleep(Duration::from_secs(2)); // room for anything it should not get
    let events = run.stop(4);
    let got: BTreeSet<(u64, u64, String)> = batch_records(&events).into_iter().collect();
    let want: BTreeSet<(u64, u64, String)> =
        (RECORDS..RECORDS + MORE).map(|i| (i % PARTITIONS, i / PARTITIONS, format!("k{i}"))).collect();
    let count = batch_records(&events).len();
    if got != want || count as u64 != MORE {
        let older: Vec<_> = got.difference(&want).take(10).collect();
        let missing: Vec<_> = want.difference(&got).take(10).collect();
        run.fail(&format!(
            "the new member consumed {count} records ({} distinct), expected exactly the {MORE} new ones; \
             not new: {older:?}; missing: {missing:?}",
            got.len()
        ));
    }
    println!("{label}: passed (a new member got exactly the {MORE} records produced after the commits)");
}

#[test]
fn confluent_kafka_group() {
    scenario(confluent(), "confluent-kafka", &[]);
}

/// What `kafka-consumer-groups.sh --list --type` and `--describe --members --verbose` show of
/// the stable three-member group, read through the Java Admin client as the tool reads it
/// (listGroups with the consumer type filter, describeConsumerGroups: ConsumerGroupDescribe for
/// a KIP-848 group, DescribeGroups for a classic one): the group's type and state, and each
/// member's partitions (2 each, all 6 once), and for KIP-848 the target assignment and member
/// epochs. Retried a few times: a member may still be acknowledging its last epoch.
fn check_description(run: &Run<'_>, scratch: &Scratch, bootstrap: &str, topic: &str, group: &str, kip848: bool) {
    let Ok(java) = java() else {
        kelp_tests::skip("the Java client (for the Admin client's view of the group) is not installed");
        return;
    };
    let args: Vec<String> =
        ["--bootstrap", bootstrap, "--topic", topic, "--mode", "describe-group", "--group", group, "--timeout", "60"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
    let want_type = if kip848 { "Consumer" } else { "Classic" };
    let mut last = String::new();
    for _ in 0..5 {
        let out = run_client(scratch, java.command(&args), Duration::from_secs(90));
        let line = out.stdout.lines().find_map(|l| Json::parse(l.trim()).filter(|j| ev(j) == "described"));
        let Some(d) = line else {
            run.fail(&format!(
                "the Admin client's describe failed ({:?})
{}",
                out.status,
                tail(&out.stderr, 20)
            ));
        };
        last = out.stdout.clone();
        let s = |k: &str| d.get(k).and_then(Json::str).unwrap_or("").to_string();
        let members = d.get("members").map(Json::items).unwrap_or_default();
        let mut union = BTreeSet::new();
        let mut ok = s("state") == "Stable" && s("listed_state") == "Stable" && members.len() == 3;
        for m in members {
            let parts = nums(m.get("partitions"));
            ok &= parts.len() == 2 && parts.iter().all(|p| union.insert(*p));
            ok &= m.get("client_id").and_then(Json::str).is_some_and(|c| !c.is_empty());
            ok &= m.get("host").and_then(Json::str).is_some_and(|h| h.starts_with('/'));
            if kip848 {
                ok &= nums(m.get("target")) == parts;
                ok &= m.get("member_epoch").and_then(Json::u64).is_some()
                    && m.get("member_epoch").and_then(Json::u64) == d.get("group_epoch").and_then(Json::u64);
            }
        }
        ok &= union == (0..PARTITIONS).collect();
        if kip848 {
            ok &= d.get("assignment_epoch").and_then(Json::u64) == d.get("group_epoch").and_then(Json::u64);
        }
        if s("type") != want_type || s("listed_type") != want_type {
            run.fail(&format!(
                "the Admin client sees a {} group (listed as {}), expected {want_type}
{last}",
                s("type"),
                s("listed_type")
            ));
        }
        if ok {
            println!("{}: the Admin client's view: {}", run.label, last.trim());
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    run.fail(&format!(
        "the Admin client's view of the stable group is not right:
{last}"
    ));
}

/// librdkafka's KIP-848 consumer (`group.protocol=consumer`): it asks for
/// ConsumerGroupHeartbeat v1 and makes up its own member id.
#[test]
fn confluent_kafka_kip848_group() {
    scenario(confluent(), "confluent-kafka kip-848", &["--group-protocol", "consumer"]);
}

/// KIP-848 members of two clients in one group: the Java consumer (members 0, 2 and the late
/// one) and librdkafka's (members 1 and 3), as a team moving from one client to the other runs.
#[test]
fn java_and_confluent_kafka_kip848_in_one_group() {
    let Some((ck, _serial)) = installed(confluent()) else { return };
    let java = match java() {
        Ok(j) => j,
        Err(why) => return kelp_tests::skip(&format!("{why} (run scripts/install-clients.sh)")),
    };
    let kip848: &[&str] = &["--group-protocol", "consumer"];
    run_scenario(
        "java + confluent-kafka kip-848",
        &[(&java, kip848), (&ck, kip848), (&java, kip848), (&ck, kip848), (&java, kip848)],
    );
}

/// A rolling upgrade, as Kafka 4 documents it for the Java client: a Stable classic group of
/// three Java members; a member restarted with `group.protocol=consumer` joins it and turns it
/// into a consumer group (`group.consumer.migration.policy` is `bidirectional` by default), the
/// classic members carrying on inside it; a classic member leaves; at the end a fresh KIP-848
/// member reads from the offsets the classic and the KIP-848 members committed.
#[test]
fn java_rolling_upgrade_from_classic_to_consumer() {
    let java = match java() {
        Ok(j) => j,
        Err(why) => return kelp_tests::skip(&format!("{why} (run scripts/install-clients.sh)")),
    };
    let (classic, kip848): (&[&str], &[&str]) = (&[], &["--group-protocol", "consumer"]);
    run_scenario(
        "java rolling upgrade",
        &[(&java, classic), (&java, classic), (&java, classic), (&java, kip848), (&java, kip848)],
    );
}

/// The way back: a group of one KIP-848 member and two classic members (librdkafka); a third
/// classic member joins; the KIP-848 member leaves, the last one, and the group turns back into
/// a classic group whose three members rebalance and read on; a fresh classic member reads from
/// the committed offsets.
#[test]
fn confluent_kafka_rolling_downgrade_from_consumer_to_classic() {
    let Some((ck, _serial)) = installed(confluent()) else { return };
    let (classic, kip848): (&[&str], &[&str]) = (&[], &["--group-protocol", "consumer"]);
    run_scenario(
        "confluent-kafka rolling downgrade",
        &[(&ck, kip848), (&ck, classic), (&ck, classic), (&ck, classic), (&ck, classic)],
    );
}

#[test]
fn kafka_python_3_group() {
    scenario(kafka_python("venv-kp3", "kafka-python 3.0", "kp3"), "kafka-python 3.0", &[]);
}

#[test]
fn kafka_python_2_group() {
    scenario(kafka_python("venv-kp2", "kafka-python 2.3", "kp2"), "kafka-python 2.3", &[]);
}

#[test]
fn kafkajs_group() {
    scenario(kafkajs(), "kafkajs", &[]);
}

#[test]
fn java_classic_group() {
    scenario(java(), "java classic", &[]);
}

#[test]
fn java_kip848_group() {
    scenario(java(), "java kip-848", &["--group-protocol", "consumer"]);
}

/// A KIP-848 regex subscription: two confluent-kafka members subscribe to `^rx-orders-[ab]`
/// (librdkafka sends a topic that starts with `^` to the broker as SubscribedTopicRegex). A
/// matching topic created while they run is assigned and read in full; topics the regex does
/// not match are never assigned (the member fails if it is): `rx-other`, and `rx-orders-a-dlq`,
/// which the regex matches only in part (Kafka matches whole names).
#[test]
fn confluent_kafka_kip848_regex_subscription_gains_a_new_topic() {
    let Some((client, _serial)) = installed(confluent()) else { return };
    let label = "confluent-kafka kip-848 regex";
    let scratch = Scratch::new("groups-regex");
    let server = KelpServer::start(&[]);
    let bootstrap = server.addr.to_string();
    let (first, later, other, partial) = ("rx-orders-a", "rx-orders-b", "rx-other", "rx-orders-a-dlq");
    let produce = |topic: &str, from: u64, count: u64, partitions: u64| {
        let args: Vec<String> = ["--bootstrap", &bootstrap, "--topic", topic, "--mode", "produce", "--timeout", "120"]
            .iter()
            .map(|s| (*s).to_string())
            .chain(["--first".into(), from.to_string(), "--count".into(), count.to_string()])
            .chain(["--partitions".into(), partitions.to_string()])
            .collect();
        let out = run_client(&scratch, client.command(&args), Duration::from_secs(150));
        assert!(
            out.status.is_some_and(|s| s.success()),
            "{label}: producing to {topic} failed ({:?})\n--- stdout\n{}\n--- stderr\n{}\n--- kelp log\n{}",
            out.status,
            out.stdout,
            tail(&out.stderr, 40),
            server.log_tail()
        );
    };
    create_topic(server.addr, first, 3);
    create_topic(server.addr, other, 2);
    create_topic(server.addr, partial, 1);
    produce(first, 0, 600, 3);
    produce(other, 10_000, 100, 2);
    produce(partial, 20_000, 100, 1);

    let args: Vec<String> = [
        "--bootstrap",
        &bootstrap,
        "--topic",
        "^rx-orders-[ab]",
        "--regex-topics",
        &format!("{first},{later}"),
        "--mode",
        "group",
        "--group",
        "g-regex",
        "--group-protocol",
        "consumer",
        "--max-batch",
        "50",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .chain(["--timeout".into(), MEMBER_TIMEOUT_S.to_string()])
    .collect();
    let mut run = Run { label: label.to_string(), server: &server, members: Vec::new() };
    for i in 0..2 {
        run.members.push(Member::spawn(&client, &scratch, &format!("member{i}"), &args));
    }
    run.wait_until("both members ready", &[0, 1], |r| r.members.iter().all(|m| m.has("ready")));
    for m in &run.members {
        Member::touch(&m.start);
    }
    let keys = |r: &Run<'_>| -> BTreeSet<String> {
        r.members.iter().flat_map(|m| batch_records(&m.events())).map(|(_, _, k)| k).collect()
    };
    run.wait_until("the 600 records of the first topic", &[0, 1], |r| keys(r).len() >= 600);
    // The regex is matched on the members' next heartbeats after the topic appears.
    create_topic(server.addr, later, 3);
    produce(later, 1000, 600, 3);
    run.wait_until("the 600 records of the topic created later", &[0, 1], |r| keys(r).len() >= 1200);
    // A partition may still be on its way from one member to the other (revoked by one, not yet
    // assigned to the other until its next heartbeat): wait for the members to own all six.
    let every = BTreeSet::from([0, 1, 2, 100, 101, 102]);
    let owned = |r: &Run<'_>| -> BTreeSet<u64> { r.members.iter().flat_map(|m| m.owned().0).collect() };
    run.wait_until(&format!("the members to own every partition of {first} and {later}"), &[0, 1], |r| {
        owned(r) == every
    });
    println!("{label}: {}", run.ownership(&[0, 1]));
    std::thread::sleep(Duration::from_secs(2)); // room for anything they should not get
    let mut got = BTreeSet::new();
    for i in 0..2 {
        got.extend(batch_records(&run.stop(i)).into_iter().map(|(_, _, k)| k));
    }
    let want: BTreeSet<String> = (0..600).chain(1000..1600).map(|i| format!("k{i}")).collect();
    if got != want {
        let extra: Vec<_> = got.difference(&want).take(10).collect();
        let missing: Vec<_> = want.difference(&got).take(10).collect();
        run.fail(&format!("consumed {} keys; not expected: {extra:?}; missing: {missing:?}", got.len()));
    }
    println!("{label}: passed ({} records from two topics, none from {other} or {partial})", got.len());
}
