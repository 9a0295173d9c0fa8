//! Topic-level `compression.type`: for each of Kafka's six values, a topic made with it, a
//! client producing in another codec (`produce-verify`: keyed records with headers and
//! timestamps, every ack awaited, everything read back and compared record by record), then
//! the stored batches read raw: each is in the topic's codec (the producer's for `producer`).

use kelp_core::records::Compression;
use kelp_tests::clients::{Client, confluent, installed, java};
use kelp_tests::server::KelpServer;

use super::{create_topic_with, run, stored_batches};

/// Each `compression.type` and the codec kelp stores batches in (`None`: as produced).
const TOPIC_CODECS: [(&str, Option<Compression>); 6] = [
    ("uncompressed", Some(Compression::None)),
    ("gzip", Some(Compression::Gzip)),
    ("snappy", Some(Compression::Snappy)),
    ("lz4", Some(Compression::Lz4)),
    ("zstd", Some(Compression::Zstd)),
    ("producer", None),
];

/// `client` produces with `usual` (or `other`, on the topic whose codec `usual` is) into a topic
/// of each codec and reads it back; every stored batch must be in the topic's codec.
fn every_topic_codec(client: Result<Client, String>, usual: Compression, other: Compression) {
    let Some((client, _serial)) = installed(client) else { return };
    let server = KelpServer::start(&[]);
    for (codec, stored) in TOPIC_CODECS {
        let sent = if stored == Some(usual) { other } else { usual };
        let topic = format!("comp-{}-{codec}", client.id);
        create_topic_with(server.addr, &topic, 3, &[("compression.type", codec)]);
        let args = ["--topic", &topic, "--mode", "produce-verify", "--compression", sent.name(), "--count", "600"];
        let summary = run(&client, &server, &topic, &args);
        assert_eq!(summary.get("records").and_then(|r| r.u64()), Some(600), "{codec}");
        let want = stored.unwrap_or(sent);
        let mut batches = 0;
        for p in 0..3 {
            for b in stored_batches(server.addr, &topic, p) {
                assert_eq!(b.compression(), Ok(want), "{topic}-{p} batch at {}: sent {sent}", b.base_offset());
                batches += 1;
            }
        }
        assert!(batches >= 3, "{topic}: {batches} batches");
        println!("{topic}: {} sent {sent}, {batches} batches stored as {want}", client.name);
    }
}

#[test]
fn java_producer_and_consumer_on_every_topic_codec() {
    every_topic_codec(java(), Compression::Lz4, Compression::Gzip);
}

#[test]
fn confluent_kafka_producer_and_consumer_on_every_topic_codec() {
    every_topic_codec(confluent(), Compression::None, Compression::Zstd);
}
