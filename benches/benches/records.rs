//! Record-batch benches, side by side with the `kafka-protocol` crate on the same bytes:
//! validation (header + CRC32C) of 1 KiB and 1 MiB batches, per-record iteration over
//! ~100-byte records, decompression per codec, and building a batch.
//!
//! kafka-protocol has no validate-only entry point that is meant for it; its
//! `decode_batch_info` reads the header and checks the CRC without decoding records, which is
//! the closest equivalent, and its full `decode` (CRC + every record into a `Vec<Record>`) is
//! shown too, named as such.

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::{RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use kelp_core::records::{Compression, RecordBatch, RecordBatchBuilder, compression};
use std::hint::black_box;

/// Output limit for decompression: far above any batch here.
const LIMIT: usize = 64 << 20;
/// Records in the iteration and build benches.
const ITER_RECORDS: usize = 1000;

/// A ~100-byte record on the wire: 10-byte key, 81-byte JSON-ish value, small deltas.
fn value(i: usize) -> Vec<u8> {
    let mut v =
        format!("{{\"id\":{i:08},\"user\":\"user-{:04}\",\"event\":\"click\",\"page\":\"/p/{:05}\"}}", i % 977, i % 31);
    v.truncate(81);
    while v.len() < 81 {
        v.push(' ');
    }
    v.into_bytes()
}

/// An uncompressed batch of `n` ~100-byte records, as an idempotent producer writes it.
fn batch(n: usize, codec: Compression) -> Bytes {
    let mut b = RecordBatchBuilder::new(codec).producer(1000, 0, 0);
    for i in 0..n {
        let key = format!("key-{:06}", i % 1_000_000);
        b.append(1_700_000_000_000 + (i as i64 % 50), Some(key.as_bytes()), Some(&value(i)), &[]).unwrap();
    }
    b.build().unwrap()
}

/// Records needed for a batch of about `bytes` bytes.
fn records_for(bytes: usize) -> usize {
    let per = (batch(100, Compression::None).len() - kelp_core::records::HEADER_LEN) / 100;
    (bytes - kelp_core::records::HEADER_LEN) / per
}

fn validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("records_validate");
    for (name, size) in [("1KiB", 1024), ("1MiB", 1 << 20)] {
        let bytes = batch(records_for(size), Compression::None);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("kelp/validate(header+crc)", name), &bytes, |b, bytes| {
            let view = RecordBatch::new(bytes.clone()).unwrap();
            b.iter(|| black_box(&view).validate())
        });
        g.bench_with_input(BenchmarkId::new("kelp/frame+validate(header+crc)", name), &bytes, |b, bytes| {
            b.iter(|| RecordBatch::new(black_box(bytes).clone()).and_then(|v| v.validate()))
        });
        g.bench_with_input(
            BenchmarkId::new("kafka-protocol/decode_batch_info(header+crc)", name),
            &bytes,
            |b, bytes| b.iter(|| RecordBatchDecoder::decode_batch_info(&mut black_box(bytes).clone()).map(|v| v.len())),
        );
        g.bench_with_input(
            BenchmarkId::new("kafka-protocol/decode(full, no validate-only path)", name),
            &bytes,
            |b, bytes| b.iter(|| RecordBatchDecoder::decode(&mut black_box(bytes).clone()).map(|s| s.records.len())),
        );
    }
    g.finish();
}

fn iterate(c: &mut Criterion) {
    let mut g = c.benchmark_group("records_iterate_100B");
    let bytes = batch(ITER_RECORDS, Compression::None);
    let view = RecordBatch::new(bytes.clone()).unwrap();
    g.throughput(Throughput::Elements(ITER_RECORDS as u64));
    g.bench_function("kelp/iter(key,value as Bytes)", |b| {
        let records = view.records(LIMIT).unwrap();
        b.iter(|| {
            for r in black_box(&records) {
                let r = r.unwrap();
                black_box((r.offset(), r.timestamp(), r.key(), r.value()));
            }
        })
    });
    g.bench_function("kelp/iter(key,value as &[u8])", |b| {
        let records = view.records(LIMIT).unwrap();
        b.iter(|| {
            for r in black_box(&records) {
                let r = r.unwrap();
                black_box((r.offset(), r.timestamp(), r.key_slice(), r.value_slice()));
            }
        })
    });
    g.bench_function("kelp/validate+records+iter(Bytes)", |b| {
        b.iter(|| {
            let view = black_box(&view);
            view.validate().unwrap();
            for r in &view.records(LIMIT).unwrap() {
                let r = r.unwrap();
                black_box((r.offset(), r.timestamp(), r.key(), r.value()));
            }
        })
    });
    g.bench_function("kafka-protocol/decode(crc + Vec<Record>)", |b| {
        b.iter(|| {
            let set = RecordBatchDecoder::decode(&mut black_box(&bytes).clone()).unwrap();
            for r in &set.records {
                black_box((r.offset, r.timestamp, &r.key, &r.value));
            }
        })
    });
    g.finish();
}

fn kp_decompress(codec: Compression, input: &Bytes) -> usize {
    let mut buf = input.clone();
    let len = |b: &mut Bytes| Ok(b.len());
    let out = match codec {
        Compression::None => Ok(buf.len()),
        Compression::Gzip => <Gzip as Decompressor<Bytes>>::decompress(&mut buf, len),
        Compression::Snappy => <Snappy as Decompressor<Bytes>>::decompress(&mut buf, len),
        Compression::Lz4 => <Lz4 as Decompressor<Bytes>>::decompress(&mut buf, len),
        Compression::Zstd => <Zstd as Decompressor<Bytes>>::decompress(&mut buf, len),
    };
    out.unwrap()
}

fn decompress(c: &mut Criterion) {
    let mut g = c.benchmark_group("records_decompress_1MiB");
    let plain = batch(records_for(1 << 20), Compression::None);
    let section = &plain[kelp_core::records::HEADER_LEN..];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut packed = Vec::new();
        compression::compress(codec, section, &mut packed).unwrap();
        let packed = Bytes::from(packed);
        assert_eq!(kp_decompress(codec, &packed), section.len());
        g.throughput(Throughput::Bytes(section.len() as u64));
        g.bench_with_input(BenchmarkId::new("kelp", codec.name()), &packed, |b, packed| {
            b.iter(|| compression::decompress(codec, black_box(packed), LIMIT).map(|v| v.len()))
        });
        g.bench_with_input(BenchmarkId::new("kafka-protocol", codec.name()), &packed, |b, packed| {
            b.iter(|| kp_decompress(codec, black_box(packed)))
        });
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("records_build_100B");
    g.throughput(Throughput::Elements(ITER_RECORDS as u64));
    let bytes = batch(ITER_RECORDS, Compression::None);
    let kp_records = RecordBatchDecoder::decode(&mut bytes.clone()).unwrap().records;
    let keys: Vec<_> = kp_records.iter().map(|r| r.key.clone().unwrap()).collect();
    let values: Vec<_> = kp_records.iter().map(|r| r.value.clone().unwrap()).collect();
    for codec in [Compression::None, Compression::Lz4] {
        g.bench_function(BenchmarkId::new("kelp", codec.name()), |b| {
            b.iter(|| {
                let mut builder = RecordBatchBuilder::new(codec).producer(1000, 0, 0);
                for (i, (k, v)) in keys.iter().zip(&values).enumerate() {
                    builder.append(1_700_000_000_000 + (i as i64 % 50), Some(k), Some(v), &[]).unwrap();
                }
                builder.build().unwrap()
            })
        });
        let kp_codec = match codec {
            Compression::Lz4 => kafka_protocol::records::Compression::Lz4,
            _ => kafka_protocol::records::Compression::None,
        };
        g.bench_function(BenchmarkId::new("kafka-protocol", codec.name()), |b| {
            let options = RecordEncodeOptions { version: 2, compression: kp_codec };
            b.iter(|| {
                let mut buf = BytesMut::new();
                RecordBatchEncoder::encode(&mut buf, black_box(&kp_records), &options).unwrap();
                buf
            })
        });
    }
    g.finish();
}

criterion_group!(benches, validate, iterate, decompress, build);
criterion_main!(benches);
