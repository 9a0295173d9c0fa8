//! The broker's produce path without IO: a ProduceRequest frame goes into the sans-IO `Broker`,
//! its appends run against the `MemStore`, and the acks=-1 response comes out. Reported per
//! record, for one partition and for 100 partitions per request (100 records of 100 bytes per
//! partition batch, uncompressed).
//!
//! `broker_produce_recompress_per_record` prices a topic's `compression.type`: the same lz4
//! batches (100 records of 100 bytes) stored as produced (`compression.type=producer`) and
//! recompressed to zstd on append (`compression.type=zstd`). The store recompresses (the
//! core only asks it to), so each is timed twice: core and `MemStore` together (`*`, the
//! whole cost of a produce), and the broker loop alone (`*_broker_loop`: the same run minus
//! the time spent in `MemStore::execute`), which is what a runtime's one broker task or
//! thread pays while the disk or SeaweedMQ store does the rest on its own thread or task.
//!
//! There is no peer to run side by side in-process here; the end-to-end comparison against
//! other brokers is scripts/bench.sh (docs/BENCHMARKS.md).

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreatableTopicConfig, CreateTopicsRequest};
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::mem_store::MemStore;
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::{Broker, Config, ConnId, Input, Instant, Now, Output};

const RECORDS_PER_BATCH: usize = 100;

fn frame(body: &RequestBody, version: i16, correlation_id: i32) -> Bytes {
    kelp_core::codec::encode_request_frame(body, version, correlation_id, Some("bench"))
}

/// A broker with one topic of `partitions` partitions, and a connection.
struct Rig {
    broker: Broker,
    store: MemStore,
    now: Now,
    conn: ConnId,
    /// The bytes of the last response sent.
    last: Vec<u8>,
    /// Time spent running storage commands (in `MemStore::execute`).
    in_store: std::time::Duration,
}

impl Rig {
    fn new(partitions: i32) -> Self {
        Self::with_configs(partitions, &[])
    }

    /// A broker whose topic has these config overrides.
    fn with_configs(partitions: i32, configs: &[(&str, &str)]) -> Self {
        let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
        let mut rig = Self {
            broker: Broker::new(Config::default(), 1, now),
            store: MemStore::new(),
            now,
            conn: ConnId(1),
            last: Vec::new(),
            in_store: std::time::Duration::ZERO,
        };
        rig.pump();
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal");
        rig.broker.handle_input(now, Input::Accepted { conn: rig.conn, peer, origin: Default::default() });
        let create = RequestBody::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "bench".into(),
                num_partitions: partitions,
                replication_factor: 1,
                configs: configs
                    .iter()
                    .map(|(k, v)| CreatableTopicConfig {
                        name: (*k).into(),
                        value: Some((*v).into()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        });
        rig.feed(&frame(&create, 7, 0));
        rig
    }

    fn feed(&mut self, bytes: &[u8]) -> usize {
        self.broker.handle_input(self.now, Input::Received { conn: self.conn, bytes });
        self.pump()
    }

    /// Drains outputs, running storage inline; returns response bytes sent.
    fn pump(&mut self) -> usize {
        let mut sent = 0;
        loop {
            let mut done = Vec::new();
            while let Some(out) = self.broker.poll_output() {
                match out {
                    Output::Send { conn, bytes } => {
                        let n = bytes.iter().map(Bytes::len).sum::<usize>();
                        sent += n;
                        self.last = bytes.iter().flat_map(|b| b.iter().copied()).collect();
                        self.broker.handle_input(self.now, Input::Written { conn, bytes: n });
                    }
                    Output::Storage { cmd, command } => {
                        let start = std::time::Instant::now();
                        done.push((cmd, self.store.execute(command)));
                        self.in_store += start.elapsed();
                    }
                    Output::Close { reason, .. } => panic!("closed: {reason:?}"),
                    Output::PauseRead { .. } | Output::ResumeRead { .. } => {}
                }
            }
            if done.is_empty() {
                return sent;
            }
            for (cmd, result) in done {
                self.broker.handle_input(self.now, Input::Completed { cmd, result });
            }
        }
    }
}

fn produce_frame(partitions: i32) -> Bytes {
    let value = vec![b'x'; 100];
    let mut b = RecordBatchBuilder::new(Compression::None).producer(-1, -1, -1);
    for i in 0..RECORDS_PER_BATCH {
        b.append(1_700_000_000_000 + i as i64, None, Some(&value), &[]).expect("builds");
    }
    request_frame(partitions, b.build().expect("builds"))
}

/// A produce of one lz4 batch of 100-byte values that compress about as log lines do (words
/// from a small vocabulary, a counter), not as a run of one byte does.
fn lz4_frame() -> Bytes {
    const WORDS: [&str; 16] = [
        "user", "order", "id", "status", "ok", "retry", "eu-west", "amount", "sku", "cart", "GET", "POST", "200",
        "404", "latency", "session",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut b = RecordBatchBuilder::new(Compression::Lz4).producer(-1, -1, -1);
    for i in 0..RECORDS_PER_BATCH {
        let mut value = format!("{i:06} ");
        while value.len() < 100 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            value.push_str(WORDS[(seed % 16) as usize]);
            value.push(if seed.is_multiple_of(3) { '=' } else { ' ' });
        }
        value.truncate(100);
        b.append(1_700_000_000_000 + i as i64, None, Some(value.as_bytes()), &[]).expect("builds");
    }
    request_frame(1, b.build().expect("builds"))
}

fn request_frame(partitions: i32, batch: Bytes) -> Bytes {
    let req = RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench".into(),
            partition_data: (0..partitions)
                .map(|index| PartitionProduceData { index, records: Some(batch.clone()), ..Default::default() })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    });
    frame(&req, 11, 1)
}

fn produce_ack(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker_produce_ack_per_record");
    for partitions in [1, 100] {
        let frame = produce_frame(partitions);
        g.throughput(Throughput::Elements((partitions as usize * RECORDS_PER_BATCH) as u64));
        g.bench_with_input(BenchmarkId::new("kelp_core_memstore", partitions), &frame, |b, frame| {
            // The store keeps everything: a fresh broker and store every 500 requests keeps
            // memory flat; only the produce calls are timed.
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                let mut rig = Rig::new(partitions);
                for i in 0..iters {
                    if i > 0 && i % 500 == 0 {
                        rig = Rig::new(partitions);
                    }
                    let start = std::time::Instant::now();
                    let sent = rig.feed(frame);
                    total += start.elapsed();
                    assert!(sent > 0, "acks=-1 produce must be answered");
                }
                total
            });
        });
    }
    g.finish();
}

/// Times `frame` fed to a broker whose topic has `configs`, per request: with the store's
/// time, or (`broker_loop_only`) without it.
fn time_produce(iters: u64, configs: &[(&str, &str)], frame: &Bytes, broker_loop_only: bool) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    let mut rig = Rig::with_configs(1, configs);
    for i in 0..iters {
        if i > 0 && i % 500 == 0 {
            rig = Rig::with_configs(1, configs);
        }
        let in_store = rig.in_store;
        let start = std::time::Instant::now();
        let sent = rig.feed(frame);
        let elapsed = start.elapsed();
        total += if broker_loop_only { elapsed.saturating_sub(rig.in_store - in_store) } else { elapsed };
        assert!(sent > 0, "acks=-1 produce must be answered");
    }
    total
}

/// Checks that a broker whose topic has `configs` accepts `frame` (an error would be cheap and
/// make the row meaningless).
fn assert_accepted(configs: &[(&str, &str)], frame: &Bytes) {
    use kelp_core::codec::generated::ResponseBody;
    use kelp_core::codec::generated::header::ResponseHeader;
    use kelp_core::codec::{ApiKey, Message, Reader};
    let mut rig = Rig::with_configs(1, configs);
    rig.feed(frame);
    let body = Bytes::from(rig.last.get(4..).expect("a size prefix").to_vec());
    let mut r = Reader::new(&body);
    ResponseHeader::decode(&mut r, ApiKey::PRODUCE.response_header_version(11)).expect("header");
    let Ok(ResponseBody::Produce(resp)) = ResponseBody::decode(ApiKey::PRODUCE, &mut r, 11) else {
        panic!("not a produce response")
    };
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0, "{configs:?}");
}

fn produce_recompress(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker_produce_recompress_per_record");
    let frame = lz4_frame();
    g.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    for (name, codec) in [("lz4_stored_as_produced", "producer"), ("lz4_recompressed_to_zstd", "zstd")] {
        let configs = [("compression.type", codec)];
        assert_accepted(&configs, &frame);
        g.bench_function(name, |b| b.iter_custom(|iters| time_produce(iters, &configs, &frame, false)));
        g.bench_function(format!("{name}_broker_loop"), |b| {
            b.iter_custom(|iters| time_produce(iters, &configs, &frame, true));
        });
    }
    g.finish();
}

criterion_group!(benches, produce_ack, produce_recompress);
criterion_main!(benches);
