//! Regression tests for bugs the simulator found, each named after its bug.

use std::net::SocketAddr;

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::mem_store::MemStore;
use kelp_core::{Broker, Config, ConnId, Input, Instant, Now, Output};
use kelp_tests::sim::run_twice;

/// Found by the sweep's replay check (seed 8): requests that arrived while the broker was still
/// recovering were served, once recovery finished, in the order of a randomly seeded hash map,
/// so one seed gave different runs. They are now served in connection order.
#[test]
fn requests_buffered_during_recovery_are_served_in_connection_order() {
    let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
    let mut broker = Broker::new(Config::default(), 1, now);
    let Some(Output::Storage { cmd: recover, command }) = broker.poll_output() else {
        panic!("the broker's first output is the recovery command")
    };
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal address");
    let body = RequestBody::ApiVersions(ApiVersionsRequest {
        client_software_name: "t".into(),
        client_software_version: "1".into(),
        ..Default::default()
    });
    // Accepted in an order unlike their ids, so neither insertion nor id order is an accident.
    let ids: Vec<u64> = (0..32).map(|i| (i * 7) % 32).collect();
    for &i in &ids {
        let conn = ConnId(i);
        broker.handle_input(now, Input::Accepted { conn, peer });
        let frame = kelp_core::codec::encode_request_frame(&body, 3, 1, Some("t"));
        broker.handle_input(now, Input::Received { conn, bytes: &frame });
    }
    assert!(broker.poll_output().is_none(), "nothing is served before recovery");
    let result = MemStore::new().execute(command);
    broker.handle_input(now, Input::Completed { cmd: recover, result });
    let mut order = Vec::new();
    while let Some(out) = broker.poll_output() {
        if let Output::Send { conn, .. } = out {
            order.push(conn.0);
        }
    }
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order.len(), 32, "every buffered request is answered");
    assert_eq!(order, sorted, "answers leave in connection order");
}

/// The same bug seen whole: seed 8 (a broker with consumer groups whose clients reconnect while
/// it recovers) replays identically.
#[test]
fn seed_8_replays_identically() {
    if let Err(f) = run_twice(8) {
        panic!("{f}");
    }
}

/// The `broker_events` fuzz target's committed corpus runs clean in an ordinary test run
/// (every input: no panic, nothing sent after a close, every command answered once).
#[test]
fn broker_events_corpus_runs_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/broker_events");
    let mut n = 0;
    let mut entries: Vec<_> =
        std::fs::read_dir(&dir).expect("corpus folder").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let data = std::fs::read(&path).expect("corpus file");
        kelp_tests::sim::fuzz::broker_events(&data);
        n += 1;
    }
    assert!(n >= 5, "the corpus holds {n} inputs");
}

/// Found by the long sweep (seed 53921 and nine others): a broker restarted during a store
/// outage asked the store to recover again the moment it failed, so a store that fails at once
/// was asked in a tight loop (millions of commands at one instant). It now waits before asking
/// again.
#[test]
fn a_failed_recovery_is_retried_after_a_pause_not_in_a_loop() {
    use kelp_core::io::StorageError;
    use kelp_core::{Command, Completion};
    let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
    let mut broker = Broker::new(Config::default(), 1, now);
    let Some(Output::Storage { cmd, command: Command::Recover }) = broker.poll_output() else {
        panic!("the broker's first output is the recovery command")
    };
    broker.handle_input(now, Input::Completed { cmd, result: Completion::Failed(StorageError::Unavailable) });
    assert!(broker.poll_output().is_none(), "no new recovery at the same instant");
    let at = broker.poll_timeout().expect("a retry is scheduled");
    assert!(at > now.mono, "the retry waits");
    let later = Now { mono: at, wall_ms: now.wall_ms + 100 };
    broker.handle_input(later, Input::Tick);
    assert!(
        matches!(broker.poll_output(), Some(Output::Storage { command: Command::Recover, .. })),
        "the recovery is asked for again when the pause is over"
    );
}

/// The same bug seen whole: seed 53921 (a broker crash during a store outage) converges.
#[test]
fn seed_53921_recovers_from_an_outage_without_spinning() {
    if let Err(f) = run_twice(53921) {
        panic!("{f}");
    }
}

/// Found by the `broker_events` fuzz target once retention landed (crash-212af2fc): the
/// periodic retention check keeps issuing Retain commands for as long as time moves, and the
/// target took that for a broker that never goes quiet. The broker is right; the target now
/// tells periodic retention from activity. This input must run to the end without a panic.
#[test]
fn fuzz_212af2fc_periodic_retention_is_not_endless_activity() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/broker_events/retention-timer-212af2fc");
    let data = std::fs::read(&path).expect("the regression input is in the corpus");
    kelp_tests::sim::fuzz::broker_events(&data);
}
