//! A record without a key on a compacted topic: the client's send fails with INVALID_RECORD
//! (the client program checks that), and its keyed records, sent in batches of their own
//! before and after (a flush between), are stored and read back, nothing else.

use kelp_tests::clients::{Client, confluent, installed, java};
use kelp_tests::server::KelpServer;

use super::{create_topic_with, run, stored_batches};

/// Keyed records the client sends before the keyless one, and again after it.
const KEYED: u64 = 200;

fn keyless_refused(client: Result<Client, String>, compression: &str) {
    let Some((client, _serial)) = installed(client) else { return };
    let server = KelpServer::start(&[]);
    let topic = format!("keyless-{}", client.id);
    create_topic_with(server.addr, &topic, 1, &[("cleanup.policy", "compact")]);
    let args = ["--topic", &topic, "--mode", "keyless", "--compression", compression, "--count", &KEYED.to_string()];
    let summary = run(&client, &server, &topic, &args);
    assert_eq!(summary.get("keyed").and_then(|k| k.u64()), Some(2 * KEYED));
    let refused = summary.get("refused").and_then(|r| r.str()).unwrap_or_default().to_string();
    println!("{}: the keyless record was refused with: {refused}", client.name);
    let stored: Vec<(i64, Option<Vec<u8>>)> = stored_batches(server.addr, &topic, 0)
        .iter()
        .flat_map(|b| {
            let recs = b.records(1 << 20).expect("records");
            recs.iter()
                .map(|r| r.expect("record"))
                .map(|r| (r.offset(), r.key().map(|k| k.to_vec())))
                .collect::<Vec<_>>()
        })
        .collect();
    let want: Vec<(i64, Option<Vec<u8>>)> =
        (0..2 * KEYED).map(|i| (i64::try_from(i).expect("small"), Some(format!("key-{i}").into_bytes()))).collect();
    assert_eq!(stored, want, "exactly the keyed records, at consecutive offsets");
    if client.id == "java" {
        // The Java client reports the broker's message for the record.
        assert!(refused.contains("Compacted topic cannot accept message without key"), "{refused}");
    }
}

#[test]
fn java_producer_gets_invalid_record_for_a_keyless_record() {
    keyless_refused(java(), "lz4");
}

#[test]
fn confluent_kafka_gets_invalid_record_for_a_keyless_record() {
    keyless_refused(confluent(), "zstd");
}
