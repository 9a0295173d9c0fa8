//! Differential tests of `kelp_core::records` against the `kafka-protocol` crate: for every
//! codec, batches written by one decode with the other to the same records.
//!
//! kafka-protocol keeps headers in an `IndexMap`, so the generated headers have unique keys
//! (order is still compared: the map keeps insertion order). Timestamps stay within ±2^40 ms
//! because kafka-protocol subtracts them without wrapping.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KpTimestampType,
};
use kelp_core::records::{Batches, Compression, Header, OwnedRecord, RecordBatch, RecordBatchBuilder};
use proptest::prelude::*;

const LIMIT: usize = 16 << 20;

/// A record as both sides can describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Common {
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Batch-wide fields both sides expose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Producer {
    id: i64,
    epoch: i16,
    base_sequence: i32,
    leader_epoch: i32,
    transactional: bool,
}

fn kp_codec(c: Compression) -> KpCompression {
    match c {
        Compression::None => KpCompression::None,
        Compression::Gzip => KpCompression::Gzip,
        Compression::Snappy => KpCompression::Snappy,
        Compression::Lz4 => KpCompression::Lz4,
        Compression::Zstd => KpCompression::Zstd,
    }
}

fn to_kp(records: &[Common], p: Producer) -> Vec<KpRecord> {
    let base = records.first().map_or(0, |r| r.offset);
    records
        .iter()
        .map(|r| {
            let mut rec = KpRecord {
                transactional: p.transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: p.leader_epoch,
                producer_id: p.id,
                producer_epoch: p.epoch,
                timestamp_type: KpTimestampType::Creation,
                offset: r.offset,
                sequence: p.base_sequence.wrapping_add((r.offset - base) as i32),
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: Default::default(),
            };
            for (k, v) in &r.headers {
                let key = StrBytes::from_utf8(k.clone()).expect("test header keys are UTF-8");
                rec.headers.insert(key, v.clone());
            }
            rec
        })
        .collect()
}

fn from_kp(r: &KpRecord) -> Common {
    Common {
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.iter().map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v.clone())).collect(),
    }
}

fn kp_encode(records: &[Common], p: Producer, codec: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: kp_codec(codec) };
    RecordBatchEncoder::encode(&mut buf, &to_kp(records, p), &options).expect("kafka-protocol encodes");
    buf.freeze()
}

fn kelp_build(records: &[Common], p: Producer, codec: Compression) -> Bytes {
    let base = records.first().map_or(0, |r| r.offset);
    let mut b = RecordBatchBuilder::new(codec)
        .base_offset(base)
        .partition_leader_epoch(p.leader_epoch)
        .producer(p.id, p.epoch, p.base_sequence)
        .transactional(p.transactional);
    for r in records {
        let headers: Vec<_> = r.headers.iter().map(|(k, v)| Header::new(k.clone(), v.clone())).collect();
        let own = OwnedRecord {
            offset_delta: (r.offset - base) as i32,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers,
        };
        b.push(&own).expect("kelp builds");
    }
    b.build().expect("kelp builds")
}

/// Decodes a record set with kelp, checking every batch fully; returns the records and each
/// batch's producer fields.
fn kelp_decode(set: Bytes) -> (Vec<Common>, Vec<Producer>) {
    let (mut out, mut producers) = (Vec::new(), Vec::new());
    for batch in Batches::new(set) {
        let batch = batch.expect("kelp frames the batch");
        batch.validate_full(LIMIT).expect("kelp validates the batch");
        producers.push(producer_of(&batch));
        for r in &batch.records(LIMIT).expect("kelp decompresses") {
            let r = r.expect("kelp decodes the record");
            let headers = r.headers().map(|h| h.map(|h| (h.key, h.value))).collect::<Result<_, _>>();
            out.push(Common {
                offset: r.offset(),
                timestamp: r.timestamp(),
                key: r.key(),
                value: r.value(),
                headers: headers.expect("kelp decodes the headers"),
            });
        }
    }
    (out, producers)
}

fn producer_of(b: &RecordBatch) -> Producer {
    Producer {
        id: b.producer_id(),
        epoch: b.producer_epoch(),
        base_sequence: b.base_sequence(),
        leader_epoch: b.partition_leader_epoch(),
        transactional: b.is_transactional(),
    }
}

fn kp_decode(set: Bytes) -> Vec<KpRecord> {
    let mut buf = set;
    let sets = RecordBatchDecoder::decode_all(&mut buf).expect("kafka-protocol decodes");
    sets.into_iter().flat_map(|s| s.records).collect()
}

fn sample(n: usize, base_offset: i64) -> Vec<Common> {
    (0..n)
        .map(|i| Common {
            offset: base_offset + i as i64,
            timestamp: 1_700_000_000_000 + (i as i64 % 7) * 13 - 20,
            key: match i % 3 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(Bytes::from(format!("key-{i}"))),
            },
            value: (i % 5 != 4).then(|| Bytes::from(vec![i as u8; i * 37 % 500])),
            headers: (0..i % 4)
                .map(|h| (Bytes::from(format!("h{h}")), (h != 1).then(|| Bytes::from(format!("v{i}.{h}")))))
                .collect(),
        })
        .collect()
}

const PRODUCER: Producer = Producer { id: 4_242, epoch: 3, base_sequence: 100, leader_epoch: 7, transactional: true };

#[test]
fn kafka_protocol_batches_decode_with_kelp() {
    for codec in Compression::ALL {
        let records = sample(300, 1_000);
        let set = kp_encode(&records, PRODUCER, codec);
        let (got, producers) = kelp_decode(set);
        assert_eq!(got, records, "{codec}");
        assert_eq!(producers, [PRODUCER], "{codec}");
    }
}

#[test]
fn kelp_batches_decode_with_kafka_protocol() {
    for codec in Compression::ALL {
        let records = sample(300, 1_000);
        let set = kelp_build(&records, PRODUCER, codec);
        let got = kp_decode(set);
        assert_eq!(got.iter().map(from_kp).collect::<Vec<_>>(), records, "{codec}");
        for r in &got {
            assert_eq!((r.producer_id, r.producer_epoch, r.partition_leader_epoch), (4_242, 3, 7));
            assert_eq!(r.sequence, 100 + (r.offset - 1_000) as i32);
            assert!(r.transactional && !r.control);
        }
    }
}

#[test]
fn multi_batch_sets_agree() {
    // Two producers -> kafka-protocol writes two batches; kelp's two batches concatenated
    // decode with kafka-protocol's decode_all.
    let first = sample(40, 0);
    let second = sample(25, 40);
    let other = Producer { id: 9, ..PRODUCER };
    for codec in Compression::ALL {
        let mut kp = to_kp(&first, PRODUCER);
        kp.extend(to_kp(&second, other));
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: kp_codec(codec) };
        RecordBatchEncoder::encode(&mut buf, &kp, &options).expect("kafka-protocol encodes");
        let (got, producers) = kelp_decode(buf.freeze());
        assert_eq!(got, [first.clone(), second.clone()].concat(), "{codec}");
        assert_eq!(producers, [PRODUCER, other]);

        let set = [kelp_build(&first, PRODUCER, codec), kelp_build(&second, other, codec)].concat();
        let got: Vec<_> = kp_decode(Bytes::from(set)).iter().map(from_kp).collect();
        assert_eq!(got, [first.clone(), second.clone()].concat(), "{codec}");
    }
}

#[test]
fn large_values_cross_codec_block_boundaries() {
    // 200 KiB values span several snappy-java (32 KiB) and LZ4 (64 KiB) blocks.
    let records: Vec<_> = (0..4)
        .map(|i| Common {
            offset: i,
            timestamp: 5,
            key: None,
            value: Some(Bytes::from((0..200 * 1024).map(|b| (b * 31 + i) as u8).collect::<Vec<_>>())),
            headers: vec![],
        })
        .collect();
    for codec in Compression::ALL {
        assert_eq!(kelp_decode(kp_encode(&records, PRODUCER, codec)).0, records, "{codec}");
        let back: Vec<_> = kp_decode(kelp_build(&records, PRODUCER, codec)).iter().map(from_kp).collect();
        assert_eq!(back, records, "{codec}");
    }
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from))
}

fn arb_records() -> impl Strategy<Value = Vec<Common>> {
    let headers = proptest::collection::btree_map("[a-z]{0,6}", arb_bytes(20), 0..4);
    let record = (-(1i64 << 40)..(1i64 << 40), arb_bytes(30), arb_bytes(200), headers);
    (any::<i32>().prop_map(i64::from), proptest::collection::vec(record, 1..30)).prop_map(|(base, recs)| {
        recs.into_iter()
            .enumerate()
            .map(|(i, (timestamp, key, value, headers))| Common {
                offset: base + i as i64,
                timestamp,
                key,
                value,
                headers: headers.into_iter().map(|(k, v)| (Bytes::from(k), v)).collect(),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_records_agree_both_ways(
        records in arb_records(),
        codec in proptest::sample::select(Compression::ALL.to_vec()),
        id in 0i64..1 << 40,
        epoch in 0i16..i16::MAX,
        base_sequence in 0i32..1 << 30,
        transactional in any::<bool>(),
    ) {
        let p = Producer { id, epoch, base_sequence, leader_epoch: 1, transactional };
        let (got, producers) = kelp_decode(kp_encode(&records, p, codec));
        prop_assert_eq!(&got, &records);
        prop_assert_eq!(producers, vec![p]);
        let back: Vec<_> = kp_decode(kelp_build(&records, p, codec)).iter().map(from_kp).collect();
        prop_assert_eq!(back, records);
    }
}
