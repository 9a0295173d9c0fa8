//! Compacted topics and topic-level compression with real clients against the real `kelp`
//! binary, each client in its own process (as in `e2e_clients.rs`: the clients come from
//! `scripts/install-clients.sh`, a missing one is skipped or, under `KELP_E2E_REQUIRE=1`, a
//! failure; one client test runs at a time; `$KELP_BIN` or `debug/kelp` is the binary).
//!
//! - `compression`: topics made with each `compression.type` store their batches in that
//!   codec whatever the producer sent (read back raw), and the clients read every record.
//! - `keyless`: librdkafka and the Java producer get INVALID_RECORD for a record without a
//!   key on a compacted topic, and their keyed records around it are stored.
//! - `cleaning`: the log cleaner on the disk store: 1,000,000 records over 10,000 keys (1,000
//!   ending in a tombstone) cleaned down to the latest value of each live key, read back by a
//!   fresh Java consumer and a fresh confluent-kafka consumer; disk usage before and after.
//! - `crash`: kill -9 at ten points of a cleaning pass; nothing acknowledged is lost.

// A test crate's root is this file, so its modules are found from tests/tests/: the paths
// name the e2e_compaction/ folder.
#[path = "e2e_compaction/cleaning.rs"]
mod cleaning;
#[path = "e2e_compaction/compression.rs"]
mod compression;
#[path = "e2e_compaction/crash.rs"]
mod crash;
#[path = "e2e_compaction/keyless.rs"]
mod keyless;

use std::net::SocketAddr;
use std::time::Duration;

use kelp_core::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::records::{Batches, RecordBatch};
use kelp_tests::clients::{Client, Json, Scratch, run_client, tail};
use kelp_tests::harness::{fetch_request, topic_configs};
use kelp_tests::raw::RawClient;
use kelp_tests::server::KelpServer;

/// How long a client may take, in seconds; the harness allows 30 s more before it kills it.
const CLIENT_TIMEOUT_S: u64 = 90;

/// Creates `topic` with these topic configs, by a CreateTopics request; panics on an error.
fn create_topic_with(addr: SocketAddr, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let req = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: partitions,
            replication_factor: 1,
            configs: topic_configs(configs),
            ..Default::default()
        }],
        timeout_ms: 30_000,
        ..Default::default()
    };
    let mut c = RawClient::connect(addr).expect("connect to kelp");
    let ResponseBody::CreateTopics(resp) = c.call(RequestBody::CreateTopics(req), 7).expect("CreateTopics") else {
        panic!("not a CreateTopics response")
    };
    let t = &resp.topics[0];
    assert_eq!(t.error_code, 0, "CreateTopics {topic} {configs:?}: {:?}", t.error_message);
}

/// Every batch stored in a partition, as kelp holds it: raw Fetch requests from offset 0 to
/// the high watermark, each batch's CRC and records checked.
fn stored_batches(addr: SocketAddr, topic: &str, partition: i32) -> Vec<RecordBatch> {
    let mut c = RawClient::connect(addr).expect("connect to kelp");
    let mut out: Vec<RecordBatch> = Vec::new();
    let mut next = 0;
    loop {
        let ResponseBody::Fetch(resp) = c.call(fetch_request(topic, partition, next, 0), 12).expect("Fetch") else {
            panic!("not a Fetch response")
        };
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch {topic}-{partition} at {next}");
        let bytes = p.records.as_ref().map(|r| r.to_bytes()).unwrap_or_default();
        let from = next;
        for b in Batches::new(bytes) {
            let Ok(b) = b else { break }; // a partial batch at the end of the response
            b.validate_full(64 << 20).unwrap_or_else(|e| panic!("stored batch at {}: {e}", b.base_offset()));
            next = b.next_offset();
            out.push(b);
        }
        if next >= p.high_watermark {
            return out;
        }
        assert!(next > from, "fetch {topic}-{partition} at {next} returned no whole batch");
    }
}

/// Runs `client` with `args` (after its own prefix) against `server`, asserts that it exited 0
/// with a JSON summary line, and returns that summary.
fn run(client: &Client, server: &KelpServer, scratch_name: &str, args: &[&str]) -> Json {
    let scratch = Scratch::new(scratch_name);
    let mut all: Vec<String> = vec!["--bootstrap".into(), server.addr.to_string()];
    all.extend(args.iter().map(|a| (*a).to_string()));
    all.extend(["--timeout".into(), CLIENT_TIMEOUT_S.to_string()]);
    let limit = Duration::from_secs(CLIENT_TIMEOUT_S + 30);
    let out = run_client(&scratch, client.command(&all), limit);
    if !out.status.is_some_and(|s| s.success()) {
        let how = out.status.map_or_else(|| format!("killed after {limit:?}"), |s| s.to_string());
        panic!(
            "{} {} failed: {how}\n--- stdout\n{}\n--- stderr\n{}\n--- kelp log (last lines)\n{}",
            client.name,
            all.join(" "),
            out.stdout.trim_end(),
            tail(&out.stderr, 80),
            server.log_tail(),
        );
    }
    let summary = out.stdout.lines().last().unwrap_or("");
    println!("{summary}\n({} took {:.1} s)", client.name, out.elapsed.as_secs_f64());
    Json::parse(summary).unwrap_or_else(|| panic!("{}: no JSON summary line; stdout:\n{}", client.name, out.stdout))
}
