//! kill -9 of kelp while its cleaner works (issue 18), on the disk store: ten rounds, each of
//! which writes dirty data (keyed records and tombstones, acks=-1) to a compacted topic with
//! small segments, keeps writing while the cleaner runs at a slow IO rate, and kills kelp at a
//! different delay into the cleaning. After each restart the partition reads back with
//! increasing offsets, only records that were sent, and nothing acknowledged lost: every
//! acknowledged record is still there at its offset, or a later record with the same key
//! (acknowledged, or stored and read back) supersedes it, so the latest value of every key is
//! there. A last restart lets the cleaner finish and checks the log is compacted.
//!
//! `KELP_CRASH_SEED=<n>` replays one run's kill delays and keys (the seed is printed).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreatableTopicConfig, CreateTopicsRequest};
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
/// Records written before each round's kill window, in batches of BATCH.
const DIRTY_PER_ROUND: u64 = 3_000;
const BATCH: u64 = 20;
/// The cleaner reads at most this many bytes per second, so that a pass over the round's
/// 3 MB of dirty data (and what earlier rounds left) takes a few seconds to kill into.
const IO_RATE: &str = "1500000";
/// Kill delays after the dirty data is written: round r waits WINDOW_MS * r / ROUNDS plus a
/// random part of one slice, so the ten kills spread over the first seconds of cleaning.
const WINDOW_MS: u64 = 3_000;

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
    let config = |name: &str, value: &str| CreatableTopicConfig {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let create = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: TOPIC.into(),
            num_partitions: 1,
            replication_factor: 1,
            configs: vec![
                config("cleanup.policy", "compact"),
                config("segment.bytes", "65536"),
                config("min.cleanable.dirty.ratio", "0.01"),
                // Tombstones stay for the whole test: a kept one is checked like any record.
                config("delete.retention.ms", "86400000"),
            ],
            ..Default::default()
        }],
        timeout_ms: 10_000,
        ..Default::default()
    });
    let mut c = RawClient::connect(server.addr).expect("connect");
    let created = expect_body!(c.call(create, 5).expect("create"), CreateTopics);
    assert_eq!(created.topics[0].error_code, 0, "create {TOPIC}: {:?}", created.topics[0].error_message);
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

fn start(dir: &std::path::Path, admin: &str, io_rate: Option<&str>) -> KelpServer {
    let mut args = vec!["--log-cleaner-backoff-ms", "200", "--admin-listen", admin, "--fsync", "always"];
    if let Some(rate) = io_rate {
        args.extend(["--log-cleaner-io-max-bytes-per-second", rate]);
    }
    KelpServer::start_on_disk(dir, &args)
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
    let mut cleaner_files_at_kill = 0;

    for round in 0..ROUNDS {
        let admin = admin_addr();
        let mut server = start(dir, &admin.to_string(), Some(IO_RATE));
        if round == 0 {
            create_topic(&server);
        } else {
            let n = check(&server, &mut model.lock().expect("lock"), &format!("after kill {round}"));
            println!("round {round}: {n} records read back, all acknowledged ones accounted for");
        }
        // Dirty data, as fast as kelp takes it.
        let mut c = RawClient::connect(server.addr).expect("connect");
        for _ in 0..DIRTY_PER_ROUND / BATCH {
            let (batch, sent) = make_batch(&mut rng, &mut next_value);
            assert!(send(&mut c, &model, batch, sent), "round {round}: kelp went away before the kill");
        }
        // Keep writing while the cleaner runs; kill kelp at this round's delay.
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, model2, mut rng2) = (stop.clone(), model.clone(), Rng(rng.next() | 1));
        let mut next2 = next_value;
        next_value += 1_000_000; // the writer's values are numbered apart
        let writer = std::thread::spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                let (batch, sent) = make_batch(&mut rng2, &mut next2);
                if !send(&mut c, &model2, batch, sent) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let slice = WINDOW_MS / ROUNDS;
        let delay = Duration::from_millis(round * slice + rng.below(slice));
        let killed_at = Instant::now() + delay;
        std::thread::sleep(delay);
        let m = metrics(admin);
        let part = partition_dir(dir);
        let names = file_names(&part);
        // Files other than segments and their indexes: the cleaner's work in progress.
        let extra: Vec<&String> = names
            .iter()
            .filter(|n| !(n.ends_with(".log") || n.ends_with(".index") || n.ends_with(".timeindex")))
            .collect();
        server.kill();
        stop.store(true, Ordering::Release);
        writer.join().expect("writer");
        cleaner_files_at_kill += usize::from(!extra.is_empty());
        println!(
            "round {round}: killed {delay:?} after the dirty data ({:?} late); cleaner before the kill: {}; other files: {extra:?}",
            killed_at.elapsed(),
            cleaner_line(&m, TOPIC)
        );
    }

    // Once more without the IO limit: the cleaner finishes, and the log is compacted.
    let admin = admin_addr();
    let server = start(dir, &admin.to_string(), None);
    let n = check(&server, &mut model.lock().expect("lock"), "after the last kill");
    println!("after {ROUNDS} kills: {n} records read back; {cleaner_files_at_kill} kills found cleaner files");
    let started = Instant::now();
    loop {
        let m = metrics(admin);
        let (stored, _) = read_partition(server.addr, TOPIC);
        // Each key once, but for what the active segment (64 KiB) and the last batch still hold.
        if sample(&m, "kelp_cleaner_passes_total") >= 1.0 && stored.len() as u64 <= KEYS + 2 * 64 {
            println!("compacted to {} records in {:.1?}: {}", stored.len(), started.elapsed(), cleaner_line(&m, TOPIC));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not compacted within 60 s: {} records; {}",
            stored.len(),
            cleaner_line(&m, TOPIC)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    check(&server, &mut model.lock().expect("lock"), "after cleaning");
}
