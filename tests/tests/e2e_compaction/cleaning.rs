//! The log cleaner end to end, on the disk store (issue 18): confluent-kafka writes 1,000,000
//! records over 10,000 keys to a compacted topic, the last write of 1,000 of the keys being a
//! tombstone; kelp cleans the log; then a fresh Java consumer and a fresh confluent-kafka
//! consumer, each in its own process, read exactly the latest value of each of the 9,000 live
//! keys at its original offset, in increasing offsets, and no tombstone. The partition's disk
//! usage before and after cleaning is printed.
//!
//! How the log gets fully cleaned, as in Kafka: a pass cleans the closed segments only, and
//! keeps the tombstones it sees for `delete.retention.ms` (their delete horizon), after which
//! a later pass drops them. The records of the active segment are never cleaned, and while
//! they are there the older values of their keys stay too. So once the first pass is over and
//! the horizon has passed, one more record (key `roll`) is written: its append rolls the
//! active segment (older than `segment.ms`), which makes that segment dirty and cleanable, and
//! the next pass removes the values its records supersede. That record is the one extra
//! record the readers see.
//!
//! Also the helpers `crash.rs` shares: the admin endpoint's metrics, the partition directory,
//! and a raw reader of a whole partition.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use kelp_core::records::Batches;
use kelp_tests::clients::{self, Client, Json, Scratch};
use kelp_tests::expect_body;
use kelp_tests::raw::RawClient;
use kelp_tests::server::{KelpServer, free_port};

/// The records written, the keys they go to, and how many keys end with a tombstone.
const RECORDS: u64 = 1_000_000;
const KEYS: u64 = 10_000;
const TOMBSTONES: u64 = 1_000;
/// Bytes per value: the log is about 130 MB before cleaning.
const VALUE_BYTES: usize = 100;
/// Small segments: only closed segments are cleaned. The last round's 9,000 values (over 1 MB)
/// come after its tombstones, so the tombstones are in closed segments when the writing stops.
const SEGMENT_BYTES: u64 = 512 * 1024;
const DELETE_RETENTION_MS: u64 = 1_000;
/// The active segment rolls on an append once it is this old.
const SEGMENT_MS: u64 = 2_000;
const TOPIC: &str = "compacted";
/// The key of the record written after the first pass to roll the active segment.
const ROLL_KEY: &str = "roll";

/// The two heavy tests of this file and `crash.rs` run one at a time (two cores).
static HEAVY: Mutex<()> = Mutex::new(());

pub(crate) fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A data directory, removed when the test ends (also on failure: the logs are large).
pub(crate) struct DataDir(pub PathBuf);

impl DataDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kelp-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- the admin endpoint ----------------------------------------------------------------------

/// An admin listen address for `--admin-listen`.
pub(crate) fn admin_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().expect("loopback address")
}

/// kelp's `/metrics` text.
pub(crate) fn metrics(admin: SocketAddr) -> String {
    let get = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(admin)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: kelp\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
    };
    get().unwrap_or_else(|e| panic!("GET http://{admin}/metrics: {e}"))
}

/// The value of the sample `name_and_labels` (exactly as written before the value), 0 when
/// absent (a counter that has not moved yet).
pub(crate) fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// The cleaner's counters, as one line for the test's output.
pub(crate) fn cleaner_line(m: &str, topic: &str) -> String {
    format!(
        "passes {}, read {:.1} MB, written {:.1} MB, records removed {}, run {:.2} s, dirty ratio {:.3}",
        sample(m, "kelp_cleaner_passes_total"),
        sample(m, "kelp_cleaner_bytes_read_total") / 1e6,
        sample(m, "kelp_cleaner_bytes_written_total") / 1e6,
        sample(m, "kelp_cleaner_records_removed_total"),
        sample(m, "kelp_cleaner_run_seconds_total"),
        sample(m, &dirty_ratio_name(topic)),
    )
}

pub(crate) fn dirty_ratio_name(topic: &str) -> String {
    format!("kelp_cleaner_dirty_ratio{{topic=\"{topic}\",partition=\"0\"}}")
}

// ---- the partition on disk -------------------------------------------------------------------

/// The directory of partition 0 of the one topic in `data_dir` (`p-<topic id>-0`).
pub(crate) fn partition_dir(data_dir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", data_dir.display()))
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("p-") && name.ends_with("-0") && e.path().is_dir()
        })
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "one partition directory in {}: {dirs:?}", data_dir.display());
    dirs.into_iter().next().expect("one")
}

/// (bytes in the files, bytes of disk they take) of a directory.
pub(crate) fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .fold((0, 0), |(len, used), m| (len + m.len(), used + m.blocks() * 512))
}

/// The names of the files in a directory, sorted.
pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

// ---- reading a whole partition ---------------------------------------------------------------

/// One stored record.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Every record of partition 0 of `topic`, from the log start to the high watermark, with
/// kelp's own codec (Fetch v12). Checks on the way that every batch is whole and its CRC
/// holds, that offsets increase strictly, and that the reading reaches the high watermark
/// (compaction leaves gaps, and batches it emptied; the next fetch starts after the last
/// batch returned).
pub(crate) fn read_partition(addr: SocketAddr, topic: &str) -> (Vec<Stored>, i64) {
    let mut c = RawClient::connect(addr).expect("connect to kelp");
    let mut out: Vec<Stored> = Vec::new();
    let mut next = 0i64;
    loop {
        let req = RequestBody::Fetch(FetchRequest {
            replica_id: -1,
            max_bytes: 8 << 20,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: next,
                    partition_max_bytes: 8 << 20,
                    current_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let resp = expect_body!(c.call(req, 12).expect("fetch"), Fetch);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {topic} at {next}: error code {}", p.error_code);
        let high = p.high_watermark;
        let records = p.records.clone().unwrap_or_default().to_bytes();
        let before = next;
        for b in Batches::new(records) {
            let Ok(b) = b else { break }; // a partial batch at the end of the response
            // Not `validate()`: a cleaned batch keeps its offset range (lastOffsetDelta) with
            // fewer records in it, which a produced batch may not.
            assert_eq!(b.crc(), b.compute_crc(), "batch at {}: CRC", b.base_offset());
            assert!(
                b.records_count() <= b.last_offset_delta() + 1,
                "batch at {}: {} records in {} offsets",
                b.base_offset(),
                b.records_count(),
                b.last_offset_delta() + 1
            );
            for r in &b.records(64 << 20).expect("records") {
                let r = r.expect("a whole record");
                if r.offset() < next {
                    continue;
                }
                if let Some(last) = out.last() {
                    assert!(
                        r.offset() > last.offset,
                        "offset {} after {}: offsets must increase",
                        r.offset(),
                        last.offset
                    );
                }
                out.push(Stored {
                    offset: r.offset(),
                    key: r.key_slice().map(<[u8]>::to_vec),
                    value: r.value_slice().map(<[u8]>::to_vec),
                });
            }
            next = next.max(b.next_offset());
        }
        if next >= high {
            return (out, high);
        }
        assert!(next > before, "fetch {topic} at {next}: nothing returned below the high watermark {high}");
    }
}

// ---- the records ------------------------------------------------------------------------------

/// Record i's key, as compaction_client.py writes it.
fn key(k: u64) -> String {
    format!("k{k:05}")
}

/// Record i's value: its index in 7 digits, a dash, then 'x' up to VALUE_BYTES.
fn value(i: u64) -> String {
    let head = format!("{i:07}-");
    let pad = VALUE_BYTES - head.len();
    head + &"x".repeat(pad)
}

/// The live keys and the index (and offset) of their last value: the last round writes key k
/// as record RECORDS - KEYS + k; its first TOMBSTONES keys get tombstones there.
fn expected_latest() -> BTreeMap<String, u64> {
    (TOMBSTONES..KEYS).map(|k| (key(k), RECORDS - KEYS + k)).collect()
}

/// What a log that is fully cleaned holds, or what differs: (offset, key, value) in order.
fn compare_with_latest(got: &[(i64, String, Option<String>)], who: &str) -> Vec<String> {
    let want = expected_latest();
    let mut errors = Vec::new();
    let mut seen = BTreeMap::new();
    let mut last = -1i64;
    for (offset, k, v) in got {
        if *offset <= last {
            errors.push(format!("{who}: offset {offset} after {last}"));
        }
        last = *offset;
        if k == ROLL_KEY && *offset == i64::try_from(RECORDS).expect("small") && v.as_deref() == Some(ROLL_KEY) {
            continue;
        }
        let Some(v) = v else {
            errors.push(format!("{who}: a tombstone of {k} at offset {offset}, older than delete.retention.ms"));
            continue;
        };
        match want.get(k) {
            None => errors.push(format!("{who}: key {k} at offset {offset} has no live value")),
            Some(&i) if *offset != i64::try_from(i).expect("small") || *v != value(i) => errors.push(format!(
                "{who}: {k} at offset {offset} = {:?}, expected record {i} ({:?}) at offset {i}",
                v.get(..12),
                &value(i)[..12]
            )),
            Some(_) => {}
        }
        if seen.insert(k.clone(), *offset).is_some() {
            errors.push(format!("{who}: key {k} twice (again at offset {offset})"));
        }
    }
    if got.last().is_none_or(|(_, k, _)| k != ROLL_KEY) {
        errors.push(format!("{who}: the last record is not the one that rolled the segment"));
    }
    let missing: Vec<&String> = want.keys().filter(|k| !seen.contains_key(*k)).collect();
    if !missing.is_empty() {
        errors.push(format!(
            "{who}: {} live keys missing, first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    errors
}

fn stored_as_text(records: &[Stored]) -> Vec<(i64, String, Option<String>)> {
    records
        .iter()
        .map(|r| {
            let k = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            (r.offset, k, r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()))
        })
        .collect()
}

// ---- the clients ----------------------------------------------------------------------------

fn confluent() -> Result<Client, String> {
    clients::python_client("venv-confluent", "compaction_client.py", "confluent-kafka", "confluent")
}

fn java() -> Result<Client, String> {
    // The Java client's jars and JDK, as clients::java() finds them, with this file's program.
    let mut client = clients::java()?;
    let program = client.prefix.last_mut().expect("the program comes last");
    *program = clients::clients_src().join("CompactionClient.java").display().to_string();
    Ok(client)
}

/// Runs a client to completion and returns its stdout; fails the test with its output when it
/// fails.
fn run(client: &Client, what: &str, args: &[String], limit: Duration) -> String {
    let scratch = Scratch::new(&format!("compaction-{}", client.id));
    let out = clients::run_client(&scratch, client.command(args), limit);
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{} {what} failed ({:?} after {:.1?}):\n{}\n{}",
        client.name,
        out.status,
        out.elapsed,
        clients::tail(&out.stdout, 5),
        clients::tail(&out.stderr, 30)
    );
    println!("{} {what}: {:.1?}, {}", client.name, out.elapsed, out.stdout.lines().last().unwrap_or_default());
    out.stdout
}

/// The records a reader printed: [offset, key, value or null, timestamp] per line, then its
/// summary.
fn parse_read(stdout: &str, who: &str) -> Vec<(i64, String, Option<String>)> {
    let mut got = Vec::new();
    for line in stdout.lines() {
        let v = Json::parse(line).unwrap_or_else(|| panic!("{who}: not JSON: {line}"));
        if v.get("summary").is_some() {
            let n = v.get("records").and_then(Json::u64).expect("records in the summary");
            assert_eq!(n, got.len() as u64, "{who}: summary counts {n} records, printed {}", got.len());
            return got;
        }
        let f = v.items();
        assert_eq!(f.len(), 4, "{who}: {line}");
        let offset = i64::try_from(f[0].u64().expect("offset")).expect("small");
        let value = match &f[2] {
            Json::Null => None,
            other => Some(other.str().expect("a string value").to_string()),
        };
        got.push((offset, f[1].str().expect("a string key").to_string(), value));
    }
    panic!("{who}: no summary line")
}

// ---- the test -------------------------------------------------------------------------------

/// Polls `/metrics` until `done` holds for the cleaner's counters; panics with them after
/// `limit`. Returns the metrics text.
fn wait_metrics(
    server: &KelpServer,
    admin: SocketAddr,
    limit: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        let m = metrics(admin);
        if done(&m) {
            println!("{what} after {:.1?}: {}", started.elapsed(), cleaner_line(&m, TOPIC));
            return m;
        }
        assert!(
            started.elapsed() < limit,
            "no {what} within {limit:?}: {}\nkelp log:\n{}",
            cleaner_line(&m, TOPIC),
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Writes the record that rolls the active segment, at offset RECORDS (acks=-1).
fn write_roll_record(server: &KelpServer) {
    use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
    use kelp_core::records::{Compression, RecordBatchBuilder};
    let mut b = RecordBatchBuilder::new(Compression::None);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    b.append(i64::try_from(now).expect("ms"), Some(ROLL_KEY.as_bytes()), Some(ROLL_KEY.as_bytes()), &[])
        .expect("builds");
    let req = RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: TOPIC.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(b.build().expect("builds")),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut c = RawClient::connect(server.addr).expect("connect");
    let resp = expect_body!(c.call(req, 9).expect("produce"), Produce);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, i64::try_from(RECORDS).expect("small")), "the roll record");
}

#[test]
fn a_cleaned_topic_reads_back_the_latest_value_of_every_live_key() {
    let Some((confluent, _serial)) = clients::installed(confluent()) else { return };
    // installed() holds the clients' lock; the second client is only checked.
    let java = match java() {
        Ok(j) => j,
        Err(why) => return kelp_tests::skip(&format!("{why} (run scripts/install-clients.sh)")),
    };
    let _heavy = heavy();
    let data = DataDir::new("cleaning");
    let dir = &data.0;

    // Written with the cleaner's check an hour away, so the log is measured before any pass.
    let admin = admin_addr();
    let admin_s = admin.to_string();
    let mut server =
        KelpServer::start_on_disk(dir, &["--log-cleaner-backoff-ms", "3600000", "--admin-listen", &admin_s]);
    let produce: Vec<String> = [
        "--bootstrap",
        &server.addr.to_string(),
        "--topic",
        TOPIC,
        "--mode",
        "produce",
        "--records",
        &RECORDS.to_string(),
        "--keys",
        &KEYS.to_string(),
        "--tombstones",
        &TOMBSTONES.to_string(),
        "--value-bytes",
        &VALUE_BYTES.to_string(),
        "--config",
        "cleanup.policy=compact",
        "--config",
        &format!("segment.bytes={SEGMENT_BYTES}"),
        "--config",
        &format!("delete.retention.ms={DELETE_RETENTION_MS}"),
        // The last pass's dirty part is the one segment the roll record closed, which may hold
        // only a few records: any dirty segment is to be cleaned.
        "--config",
        "min.cleanable.dirty.ratio=0",
        "--config",
        &format!("segment.ms={SEGMENT_MS}"),
        "--timeout",
        "150",
    ]
    .map(String::from)
    .to_vec();
    run(&confluent, "produce", &produce, Duration::from_secs(160));
    let m = metrics(admin);
    assert_eq!(sample(&m, "kelp_cleaner_passes_total"), 0.0, "no pass before the restart: {}", cleaner_line(&m, TOPIC));
    let part = partition_dir(dir);
    let (before_len, before_used) = disk_usage(&part);
    let segments_before = file_names(&part).iter().filter(|n| n.ends_with(".log")).count();
    assert_eq!(server.terminate(Duration::from_secs(60)).and_then(|s| s.code()), Some(0), "graceful stop");

    // The cleaner checks every 500 ms from the restart on. The first pass cleans every closed
    // segment; later ones the tombstones (past their horizon) and, after the roll record, the
    // last segment.
    let admin = admin_addr();
    let admin_s = admin.to_string();
    server = KelpServer::start_on_disk(dir, &["--log-cleaner-backoff-ms", "500", "--admin-listen", &admin_s]);
    let limit = Duration::from_secs(180);
    let m = wait_metrics(&server, admin, limit, "the first pass", |m| {
        sample(m, "kelp_cleaner_records_removed_total") > (RECORDS / 2) as f64
    });
    let passes = sample(&m, "kelp_cleaner_passes_total");
    // The tombstones' horizon is at most delete.retention.ms after now; the active segment is
    // older than segment.ms since the writing stopped before the restart.
    std::thread::sleep(Duration::from_millis(DELETE_RETENTION_MS + 500));
    write_roll_record(&server);
    wait_metrics(&server, admin, limit, "a later pass", |m| sample(m, "kelp_cleaner_passes_total") > passes);
    let started = Instant::now();
    let stored = loop {
        // A pass may be under way still: read until the log is whole.
        let (stored, _) = read_partition(server.addr, TOPIC);
        let tombstones = stored.iter().filter(|r| r.value.is_none()).count();
        if tombstones == 0 && stored.len() as u64 == KEYS - TOMBSTONES + 1 {
            break stored;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not cleaned: {} records, {tombstones} tombstones; {}",
            stored.len(),
            cleaner_line(&metrics(admin), TOPIC)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let (after_len, after_used) = disk_usage(&part);
    let segments_after = file_names(&part).iter().filter(|n| n.ends_with(".log")).count();
    println!(
        "partition directory before cleaning: {:.1} MB in files, {:.1} MB of disk, {segments_before} segments; \
         after: {:.2} MB in files, {:.2} MB of disk, {segments_after} segments ({:.1}x smaller on disk)",
        before_len as f64 / 1e6,
        before_used as f64 / 1e6,
        after_len as f64 / 1e6,
        after_used as f64 / 1e6,
        before_used as f64 / after_used.max(1) as f64
    );
    assert!(
        after_used * 10 < before_used,
        "cleaning frees most of the disk: {before_used} B before, {after_used} B after"
    );
    let errors = compare_with_latest(&stored_as_text(&stored), "kelp's own fetch");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let m = metrics(admin);
    println!("cleaner: {}", cleaner_line(&m, TOPIC));
    assert!(sample(&m, "kelp_cleaner_bytes_read_total") > 0.0 && sample(&m, "kelp_cleaner_run_seconds_total") > 0.0);
    assert!(sample(&m, &dirty_ratio_name(TOPIC)) < 0.5, "dirty ratio of the last pass: {}", cleaner_line(&m, TOPIC));

    // A fresh consumer of each client, each in its own process.
    let read = ["--bootstrap", &server.addr.to_string(), "--topic", TOPIC, "--max-records", "20000", "--timeout", "90"]
        .map(String::from)
        .to_vec();
    let mut py_read = read.clone();
    py_read.extend(["--mode".to_string(), "read".to_string()]);
    for (client, args) in [(&confluent, &py_read), (&java, &read)] {
        let got = parse_read(&run(client, "read", args, Duration::from_secs(100)), client.name);
        let errors = compare_with_latest(&got, client.name);
        assert!(errors.is_empty(), "{}", errors[..errors.len().min(30)].join("\n"));
    }
    drop(server);
}
