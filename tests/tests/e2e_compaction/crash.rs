//! kill -9 of kelp while its cleaner works (issue 18), on the disk store, at ten points of a
//! cleaning pass. Each round:
//!
//! 1. kelp starts with the cleaner at full speed; the partition is read back and checked (below),
//!    and the cleaner finishes whatever the last kill interrupted; kelp stops;
//! 2. kelp starts with the cleaner off and takes a round of dirty data (keyed records and
//!    tombstones, acks=-1, a compacted topic with 64 KiB segments); kelp stops;
//! 3. kelp starts with the cleaner on at a slow IO rate, a writer keeps producing, and kelp is
//!    killed (SIGKILL) at this round's point of the pass: rounds spread their kill points from
//!    the pass's start to past its end, as a fraction of how long a pass took in a
//!    first, uninterrupted round (plus a random part), so the kills land while the key map is
//!    built, while new segments are written, around the swap and after it.
//!
//! The check after each restart: the partition reads back with increasing offsets, only records
//! that were sent, and nothing acknowledged lost: every acknowledged record is still there at
//! its offset, or a later record with the same key (acknowledged, or stored and read back)
//! supersedes it, so the latest value of every key is there. After the last kill the cleaner
//! finishes and the log is compacted.
//!
//! `KELP_CRASH_SEED=<n>` replays one run's keys and random parts of the kill points (the seed
//! is printed).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_tests::expect_body;
use kelp_tests::raw::RawClient;
use kelp_tests::server::KelpServer;

use super::cleaning::{
    DataDir, admin_addr, cleaner_line, file_names, heavy, metrics, partition_dir, read_partition, sample,
};

const TOPIC: &str = "compact-crash";
const KEYS: u64 = 400;
const VALUE_BYTES: usize = 1000;
const ROUNDS: u64 = 10;
/// Records of dirty data per round (about 1.5 MB), in batches of BATCH.
const DIRTY_PER_ROUND: u64 = 1_500;
const BATCH: u64 = 20;
/// The cleaner reads and writes at most this many bytes per second in the killed runs, so
/// that a pass over a round's log (about 2 MB: the clean part, the dirty part, each read
/// once or twice) takes a few seconds to kill into.
const IO_RATE: &str = "1000000";

/// xorshift64*: the kill delays and keys, from a seed the test prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One record as sent: its key and its value (None: a tombstone). Values are unique: the
/// record's number in ten digits, then padding.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// What the test knows of the partition.
#[derive(Default)]
struct Model {
    /// Acknowledged records (and records read back after a restart), by offset.
    acked: BTreeMap<i64, Sent>,
    /// Records sent whose acknowledgement never came (the kill), by value: they may be stored.
    in_doubt: HashMap<Vec<u8>, Sent>,
    /// Tombstones have no value to recognise them by: (key, count) of those in doubt.
    in_doubt_tombstones: HashMap<Vec<u8>, u64>,
}

fn value(n: u64) -> Vec<u8> {
    let mut v = format!("{n:010}-").into_bytes();
    v.resize(VALUE_BYTES, b'v');
    v
}

/// A batch of `BATCH` records over random keys, one in twenty a tombstone; `next` numbers the
/// values.
fn make_batch(rng: &mut Rng, next: &mut u64) -> (Bytes, Vec<Sent>) {
    let mut b = RecordBatchBuilder::new(Compression::None);
    let mut sent = Vec::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    for _ in 0..BATCH {
        let key = format!("key-{:04}", rng.below(KEYS)).into_bytes();
        let v = (rng.below(20) != 0).then(|| value(*next));
        *next += 1;
        b.append(i64::try_from(now).expect("ms"), Some(&key), v.as_deref(), &[]).expect("builds");
        sent.push(Sent { key, value: v });
    }
    (b.build().expect("builds"), sent)
}

fn produce(records: Bytes) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: TOPIC.into(),
            partition_data: vec![PartitionProduceData { index: 0, records: Some(records), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Sends one batch and records its outcome: acknowledged at its offsets, or in doubt.
/// `false` once the connection is gone.
fn send(c: &mut RawClient, model: &Mutex<Model>, batch: Bytes, sent: Vec<Sent>) -> bool {
    let outcome = c.call(produce(batch), 9);
    let mut m = model.lock().expect("lock");
    let base = match outcome {
        Ok(resp) => {
            let p = &expect_body!(resp, Produce).responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "produce failed while kelp was up");
            Some(p.base_offset)
        }
        Err(_) => None,
    };
    for (i, s) in sent.into_iter().enumerate() {
        match base {
            Some(base) => {
                m.acked.insert(base + i64::try_from(i).expect("small"), s);
            }
            None => match &s.value {
                Some(v) => {
                    m.in_doubt.insert(v.clone(), s);
                }
                None => *m.in_doubt_tombstones.entry(s.key).or_default() += 1,
            },
        }
    }
    base.is_some()
}

fn create_topic(server: &KelpServer) {
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "65536"),
        ("min.cleanable.dirty.ratio", "0.01"),
        // Tombstones stay for the whole test: a kept one is checked like any record.
        ("delete.retention.ms", "86400000"),
    ];
    super::create_topic_with(server.addr, TOPIC, 1, &configs);
}

/// Reads the partition back and checks it against the model; records read back that were in
/// doubt count as acknowledged from now on, and the rest of those in doubt are dropped (their
/// offsets go to the next appends). Returns the number of records stored.
fn check(server: &KelpServer, model: &mut Model, round: &str) -> usize {
    let (stored, high) = read_partition(server.addr, TOPIC);
    let mut errors = Vec::new();
    let mut adopted = BTreeMap::new();
    for r in &stored {
        let key = r.key.clone().unwrap_or_default();
        match model.acked.get(&r.offset) {
            Some(s) if s.key == key && s.value == r.value => {}
            Some(s) => errors.push(format!(
                "offset {}: {:?} = {:?}, acknowledged as {:?} = {:?}",
                r.offset,
                String::from_utf8_lossy(&key),
                r.value.as_ref().map(|v| String::from_utf8_lossy(&v[..11]).into_owned()),
                String::from_utf8_lossy(&s.key),
                s.value.as_ref().map(|v| String::from_utf8_lossy(&v[..11]).into_owned()),
            )),
            None => {
                let known = match &r.value {
                    Some(v) => model.in_doubt.get(v).is_some_and(|s| s.key == key),
                    None => model.in_doubt_tombstones.get(&key).is_some_and(|n| *n > 0),
                };
                if known {
                    adopted.insert(r.offset, Sent { key, value: r.value.clone() });
                } else {
                    errors.push(format!("offset {}: a record that was never sent", r.offset));
                }
            }
        }
    }
    // Nothing acknowledged is lost: each acknowledged record is stored at its offset, or a
    // later record with its key (acknowledged or stored) supersedes it.
    let stored_at: HashMap<i64, &super::cleaning::Stored> = stored.iter().map(|r| (r.offset, r)).collect();
    let mut latest: HashMap<&[u8], i64> = HashMap::new();
    for (o, s) in model.acked.iter().chain(adopted.iter()) {
        let l = latest.entry(&s.key).or_insert(*o);
        *l = (*l).max(*o);
    }
    let mut lost = 0;
    for (o, s) in &model.acked {
        if *o >= high {
            errors.push(format!("acknowledged offset {o} at or above the high watermark {high}"));
        } else if latest[s.key.as_slice()] == *o && !stored_at.contains_key(o) {
            lost += 1;
            if lost <= 10 {
                errors.push(format!("the latest record of {:?}, offset {o}, is gone", String::from_utf8_lossy(&s.key)));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{round}: {} problems:\n{}\nkelp log:\n{}",
        errors.len(),
        errors.join("\n"),
        server.log_tail()
    );
    model.acked.extend(adopted);
    model.in_doubt.clear();
    model.in_doubt_tombstones.clear();
    stored.len()
}

/// How the cleaner runs in one start of kelp.
#[derive(Clone, Copy, PartialEq)]
enum Cleaner {
    /// Its check an hour away.
    Off,
    /// Every 200 ms, at full speed.
    Fast,
    /// Every 200 ms, at IO_RATE.
    Slow,
}

fn start(dir: &std::path::Path, admin: &str, cleaner: Cleaner) -> KelpServer {
    let backoff = if cleaner == Cleaner::Off { "3600000" } else { "200" };
    let mut args = vec!["--log-cleaner-backoff-ms", backoff, "--admin-listen", admin, "--fsync", "always"];
    if cleaner == Cleaner::Slow {
        args.extend(["--log-cleaner-io-max-bytes-per-second", IO_RATE]);
    }
    KelpServer::start_on_disk(dir, &args)
}

/// Step 1 of a round: check the partition, let the cleaner finish, stop.
fn check_and_finish(dir: &std::path::Path, model: &Mutex<Model>, round: &str) {
    let admin = admin_addr();
    let mut server = start(dir, &admin.to_string(), Cleaner::Fast);
    let n = check(&server, &mut model.lock().expect("lock"), round);
    let started = Instant::now();
    loop {
        // Each key once, but for what the active segment (64 KiB) holds.
        let (stored, _) = read_partition(server.addr, TOPIC);
        if stored.len() as u64 <= KEYS + 2 * 64 {
            println!(
                "{round}: {n} records read back and checked, compacted to {} in {:.1?} ({})",
                stored.len(),
                started.elapsed(),
                cleaner_line(&metrics(admin), TOPIC)
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{round}: not compacted within 60 s: {} records; {}",
            stored.len(),
            cleaner_line(&metrics(admin), TOPIC)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    check(&server, &mut model.lock().expect("lock"), &format!("{round}, compacted"));
    assert_eq!(server.terminate(Duration::from_secs(60)).and_then(|s| s.code()), Some(0), "{round}: graceful stop");
}

/// Step 2 of a round: a round of dirty data with the cleaner off.
fn write_dirty(dir: &std::path::Path, model: &Mutex<Model>, rng: &mut Rng, next_value: &mut u64, first: bool) {
    let mut server = start(dir, &admin_addr().to_string(), Cleaner::Off);
    if first {
        create_topic(&server);
    }
    let mut c = RawClient::connect(server.addr).expect("connect");
    for _ in 0..DIRTY_PER_ROUND / BATCH {
        let (batch, sent) = make_batch(rng, next_value);
        assert!(send(&mut c, model, batch, sent), "kelp went away while the dirty data was written");
    }
    assert_eq!(server.terminate(Duration::from_secs(60)).and_then(|s| s.code()), Some(0), "graceful stop");
}

/// A writer that produces a batch every 20 ms until `stop` (or the connection goes).
fn writer(
    server: &KelpServer,
    model: &Arc<Mutex<Model>>,
    seed: u64,
    first_value: u64,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, model2, addr) = (stop.clone(), model.clone(), server.addr);
    let handle = std::thread::spawn(move || {
        let (mut rng, mut next) = (Rng(seed | 1), first_value);
        let Ok(mut c) = RawClient::connect(addr) else { return };
        while !stop2.load(Ordering::Acquire) {
            let (batch, sent) = make_batch(&mut rng, &mut next);
            if !send(&mut c, &model2, batch, sent) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (stop, handle)
}

/// What the partition directory shows of a pass in progress: (new segments written beside the
/// old ones, segments marked for the swap).
fn in_progress(dir: &std::path::Path) -> (usize, usize) {
    let names = file_names(&partition_dir(dir));
    let count = |suffix: &str| names.iter().filter(|n| n.ends_with(suffix)).count();
    (count(".log.cleaned"), count(".swap"))
}

#[test]
fn kill_9_during_cleaning_loses_nothing_acknowledged() {
    let _heavy = heavy();
    let seed = std::env::var("KELP_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
        t.as_nanos() as u64 | 1
    });
    println!("KELP_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let data = DataDir::new("compaction-crash");
    let dir = &data.0;
    let model = Arc::new(Mutex::new(Model::default()));
    let mut next_value = 0u64;

    // A first round without a kill: how long a pass over a round's log takes at IO_RATE.
    write_dirty(dir, &model, &mut rng, &mut next_value, true);
    let admin = admin_addr();
    let mut server = start(dir, &admin.to_string(), Cleaner::Slow);
    let started = Instant::now();
    while sample(&metrics(admin), "kelp_cleaner_passes_total") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no pass within 60 s: {}",
            cleaner_line(&metrics(admin), TOPIC)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pass = started.elapsed();
    println!(
        "an uninterrupted pass at {IO_RATE} B/s: {pass:.1?} from the start ({})",
        cleaner_line(&metrics(admin), TOPIC)
    );
    assert_eq!(server.terminate(Duration::from_secs(60)).and_then(|s| s.code()), Some(0), "graceful stop");

    let mut kills_in_pass = 0;
    for round in 0..ROUNDS {
        check_and_finish(dir, &model, &format!("round {round}"));
        write_dirty(dir, &model, &mut rng, &mut next_value, false);
        let admin = admin_addr();
        let mut server = start(dir, &admin.to_string(), Cleaner::Slow);
        let up = Instant::now();
        let (stop, handle) = writer(&server, &model, rng.next(), next_value);
        next_value += 1_000_000; // the writer's values are numbered apart
        // Round r kills at (r + u) / ROUNDS of 1.4 passes from the start, u random in [0, 1):
        // the last rounds around the swap and after the pass (a pass here may take longer
        // than the first one did).
        let fraction = (round as f64 + (rng.below(1000) as f64 / 1000.0)) / ROUNDS as f64 * 1.4;
        let delay = pass.mul_f64(fraction);
        std::thread::sleep(delay.saturating_sub(up.elapsed()));
        let (cleaned, swap) = in_progress(dir);
        let m = metrics(admin);
        server.kill();
        stop.store(true, Ordering::Release);
        handle.join().expect("writer");
        let done = sample(&m, "kelp_cleaner_passes_total") >= 1.0;
        kills_in_pass += usize::from(!done);
        println!(
            "round {round}: killed at {:.0}% of a pass ({delay:.1?}); {}; .cleaned segments {cleaned}, .swap files {swap}",
            fraction * 100.0,
            if done { "the pass had ended" } else { "mid-pass" }
        );
    }
    check_and_finish(dir, &model, "after the last kill");
    println!("{ROUNDS} kills, {kills_in_pass} of them before the pass ended: nothing acknowledged lost");
}
