//! Codec benches, each side by side with the `kafka-protocol` crate on the same bytes:
//! ProduceRequest decode (1 and 16 partitions) and FetchResponse encode (16 partitions of
//! 64 KiB of records). kelp's encoder appends large record sets as chunks of their own (the
//! driver sends them with writev) where kafka-protocol copies them into one buffer; the
//! `ours_contiguous` row shows kelp's cost when a single buffer is required too.

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::protocol::{Decodable, Encodable};
use kelp_core::codec::generated::fetch::{FetchResponse, FetchableTopicResponse, PartitionData};
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::codec::{Message, Reader, Writer};
use std::hint::black_box;

const PRODUCE_VERSION: i16 = 11;
const FETCH_VERSION: i16 = 16;

fn produce_request(partitions: i32) -> Bytes {
    let records = Bytes::from(vec![0xabu8; 1024]);
    let req = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench-topic".into(),
            partition_data: (0..partitions)
                .map(|index| PartitionProduceData { index, records: Some(records.clone()), ..Default::default() })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    req.to_bytes(PRODUCE_VERSION)
}

fn produce_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("produce_request_decode");
    for partitions in [1, 16] {
        let bytes = produce_request(partitions);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("kelp", partitions), &bytes, |b, bytes| {
            b.iter(|| ProduceRequest::decode(&mut Reader::new(black_box(bytes)), PRODUCE_VERSION))
        });
        g.bench_with_input(BenchmarkId::new("kafka-protocol", partitions), &bytes, |b, bytes| {
            b.iter(|| {
                let mut buf = black_box(bytes).clone();
                kafka_protocol::messages::ProduceRequest::decode(&mut buf, PRODUCE_VERSION)
            })
        });
    }
    g.finish();
}

fn fetch_response() -> FetchResponse {
    let records = Bytes::from(vec![0x5au8; 64 * 1024]);
    FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "bench-topic".into(),
            partitions: (0..16)
                .map(|partition_index| PartitionData {
                    partition_index,
                    high_watermark: 1_000_000,
                    last_stable_offset: 1_000_000,
                    log_start_offset: 0,
                    records: Some(records.clone().into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fetch_encode(c: &mut Criterion) {
    let ours = fetch_response();
    let bytes = ours.to_bytes(FETCH_VERSION);
    let theirs = kafka_protocol::messages::FetchResponse::decode(&mut bytes.clone(), FETCH_VERSION).expect("decodes");
    let mut g = c.benchmark_group("fetch_response_encode_16x64KiB");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("kelp_chunks", |b| {
        b.iter(|| {
            let mut w = Writer::with_capacity(512);
            black_box(&ours).encode(&mut w, FETCH_VERSION);
            w.into_chunks()
        })
    });
    g.bench_function("kelp_contiguous", |b| b.iter(|| black_box(&ours).to_bytes(FETCH_VERSION)));
    g.bench_function("kafka-protocol", |b| {
        b.iter(|| {
            let mut out = BytesMut::new();
            black_box(&theirs).encode(&mut out, FETCH_VERSION).expect("encodes");
            out
        })
    });
    g.finish();
}

criterion_group!(benches, produce_decode, fetch_encode);
criterion_main!(benches);
