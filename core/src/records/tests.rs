//! Cross-file tests of the records module: builder -> parser round trips for every codec
//! (proptest), and hostile records sections inside otherwise valid batches.

use bytes::Bytes;
use proptest::prelude::*;

use super::batch::at;
use super::varint::put_varint;
use super::*;

const LIMIT: usize = 1 << 22;

/// A batch of `count` records whose uncompressed records section is `section`, with correct
/// lengths and CRC, so that only the records can be wrong.
fn with_section(count: i32, section: &[u8]) -> RecordBatch {
    let mut v = RecordBatchBuilder::new(Compression::None).build().unwrap_or_default().to_vec();
    v.extend_from_slice(section);
    let len = (v.len() - LOG_OVERHEAD) as i32;
    v[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    v[at::RECORDS_COUNT..at::RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    v[at::LAST_OFFSET_DELTA..at::LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).max(0).to_be_bytes());
    let crc = crc32c::crc32c(&v[at::ATTRIBUTES..]);
    v[at::CRC..at::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    let batch = RecordBatch::new(Bytes::from(v)).unwrap();
    batch.validate().unwrap();
    batch
}

/// One record from varint-level parts: (offsetDelta, keyLen, key, valueLen, headerCount).
fn record(offset_delta: i32, key_len: i32, key: &[u8], value_len: i32, header_count: i32) -> Vec<u8> {
    record_with_headers(offset_delta, key_len, key, value_len, header_count, &[])
}

/// [`record`] with raw header bytes after the header count.
fn record_with_headers(
    offset_delta: i32,
    key_len: i32,
    key: &[u8],
    value_len: i32,
    header_count: i32,
    headers: &[u8],
) -> Vec<u8> {
    let mut body = vec![0u8, 0]; // attributes, timestampDelta 0
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, key_len);
    body.extend_from_slice(key);
    put_varint(&mut body, value_len);
    put_varint(&mut body, header_count);
    body.extend_from_slice(headers);
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i32);
    out.extend_from_slice(&body);
    out
}

fn full_err(count: i32, section: &[u8]) -> RecordsError {
    let batch = with_section(count, section);
    let err = batch.validate_full(LIMIT).unwrap_err();
    assert!(batch.records(LIMIT).unwrap().iter().any(|r| r.is_err()) || matches!(err, RecordsError::InvalidRecord(_)));
    err
}

#[test]
fn hand_made_section_is_valid() {
    let section = [record(0, 1, b"k", -1, 0), record(1, -1, b"", 0, 0)].concat();
    let batch = with_section(2, &section);
    batch.validate_full(LIMIT).unwrap();
    let recs = batch.records(LIMIT).unwrap();
    let got: Vec<_> = recs.iter().map(|r| r.unwrap()).map(|r| (r.key(), r.value())).collect();
    assert_eq!(got, [(Some(Bytes::from_static(b"k")), None), (None, Some(Bytes::new()))]);
}

#[test]
fn negative_and_huge_lengths_are_invalid_records() {
    let mut neg_len = Vec::new();
    put_varint(&mut neg_len, -5);
    let mut huge_len = Vec::new();
    put_varint(&mut huge_len, i32::MAX);
    huge_len.extend_from_slice(&[0; 8]);
    let cases: [(&str, Vec<u8>); 7] = [
        ("negative record length", neg_len),
        ("huge record length", huge_len),
        ("key length -2", record(0, -2, b"", -1, 0)),
        ("key length beyond record", record(0, 1000, b"k", -1, 0)),
        ("value length i32::MAX", record(0, -1, b"", i32::MAX, 0)),
        ("negative header count", record(0, -1, b"", -1, -1)),
        ("huge header count", record(0, -1, b"", -1, i32::MAX)),
    ];
    for (what, section) in cases {
        let err = full_err(1, &section);
        assert_eq!(err.error_code(), crate::codec::ErrorCode::INVALID_RECORD, "{what}: {err:?}");
    }
}

#[test]
fn overlong_varint_is_rejected() {
    let err = full_err(1, &[0xff; 12]);
    assert!(matches!(err, RecordsError::VarintTooLong(_)), "{err:?}");
}

#[test]
fn bad_headers_are_invalid_records() {
    // Key length -2 (zig-zag 0x03), value null (0x01).
    let negative_key = record_with_headers(0, -1, b"", -1, 1, &[0x03, 0x01]);
    assert!(matches!(full_err(1, &negative_key), RecordsError::InvalidRecord(_)));
    // One header declared, bytes for two.
    let extra = record_with_headers(0, -1, b"", -1, 1, &[0x02, b'a', 0x01, 0x02, b'b', 0x01, 0, 0]);
    assert_eq!(full_err(1, &extra), RecordsError::InvalidRecord("bytes after the last header"));
}

#[test]
fn record_count_must_match_the_section() {
    let two = [record(0, -1, b"", -1, 0), record(1, -1, b"", -1, 0)].concat();
    assert!(matches!(full_err(3, &two), RecordsError::InvalidRecord(_)));
    assert_eq!(full_err(1, &two), RecordsError::InvalidRecord("bytes after the last record"));
}

#[test]
fn offset_deltas_must_rise() {
    let same = [record(0, -1, b"", -1, 0), record(0, -1, b"", -1, 0)].concat();
    assert_eq!(full_err(2, &same), RecordsError::InvalidRecord("offset deltas out of order"));
    let beyond = [record(0, -1, b"", -1, 0), record(2, -1, b"", -1, 0)].concat();
    assert_eq!(full_err(2, &beyond), RecordsError::InvalidRecord("offset deltas out of order"));
}

#[test]
fn every_truncation_of_a_section_fails_cleanly() {
    let mut b = RecordBatchBuilder::new(Compression::None);
    b.append(5, Some(b"key"), Some(&[7; 300]), &[Header::new("a", Some(Bytes::from_static(b"b")))]).unwrap();
    b.append(6, None, None, &[]).unwrap();
    let full = RecordBatch::new(b.build().unwrap()).unwrap();
    let section = full.records_section();
    for cut in 0..section.len() {
        assert!(with_section(2, &section[..cut]).validate_full(LIMIT).is_err(), "cut {cut}");
    }
    with_section(2, &section).validate_full(LIMIT).unwrap();
}

#[test]
fn zip_bombs_stop_at_the_limit() {
    let zeros = vec![0u8; 32 << 20];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut b = RecordBatchBuilder::new(codec);
        b.append(0, None, Some(&zeros), &[]).unwrap();
        let batch = RecordBatch::new(b.build().unwrap()).unwrap();
        assert!(batch.len() < 2 << 20, "{codec} packs 32 MiB of zeros into {}", batch.len());
        batch.validate().unwrap();
        let err = batch.validate_full(1 << 20).unwrap_err();
        assert_eq!(err, RecordsError::DecompressedTooLarge { limit: 1 << 20 });
        assert_eq!(err.error_code(), crate::codec::ErrorCode::MESSAGE_TOO_LARGE);
    }
}

#[test]
fn corrupt_compressed_section_is_corrupt_message() {
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut b = RecordBatchBuilder::new(codec);
        b.append(0, None, Some(&[1; 1000]), &[]).unwrap();
        let mut v = b.build().unwrap().to_vec();
        let mid = HEADER_LEN + (v.len() - HEADER_LEN) / 2;
        v.truncate(mid);
        let len = (v.len() - LOG_OVERHEAD) as i32;
        v[at::BATCH_LENGTH..at::BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        let batch = RecordBatch::new(Bytes::from(v)).unwrap();
        let err = batch.records(LIMIT).and_then(|r| r.validate()).unwrap_err();
        assert_eq!(err.error_code(), crate::codec::ErrorCode::CORRUPT_MESSAGE, "{codec}: {err:?}");
    }
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from))
}

fn arb_header() -> impl Strategy<Value = Header> {
    // Few distinct keys, so duplicates are common.
    (proptest::collection::vec(b'a'..b'd', 0..3), arb_bytes(16)).prop_map(|(k, v)| Header::new(k, v))
}

fn arb_record() -> impl Strategy<Value = OwnedRecord> {
    (any::<i64>(), arb_bytes(40), arb_bytes(300), proptest::collection::vec(arb_header(), 0..4))
        .prop_map(|(timestamp, key, value, headers)| OwnedRecord { offset_delta: 0, timestamp, key, value, headers })
}

fn arb_codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(Compression::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn builder_to_parser_round_trip(
        mut records in proptest::collection::vec(arb_record(), 0..40),
        codec in arb_codec(),
        base_offset in any::<i64>(),
        producer in (any::<i64>(), any::<i16>(), any::<i32>()),
        flags in (any::<bool>(), any::<bool>()),
    ) {
        let mut b = RecordBatchBuilder::new(codec)
            .base_offset(base_offset)
            .producer(producer.0, producer.1, producer.2)
            .transactional(flags.0)
            .control(flags.1);
        for (i, r) in records.iter_mut().enumerate() {
            r.offset_delta = i as i32;
            b.push(r).unwrap();
        }
        let batch = RecordBatch::new(b.build().unwrap()).unwrap();
        batch.validate_full(LIMIT).unwrap();
        prop_assert_eq!(batch.compression(), Ok(codec));
        prop_assert_eq!((batch.is_transactional(), batch.is_control()), flags);
        prop_assert_eq!(batch.producer_id(), producer.0);
        prop_assert_eq!(batch.max_timestamp(), records.iter().map(|r| r.timestamp).max().unwrap_or(-1));
        let parsed = batch.records(LIMIT).unwrap();
        let mut n = 0;
        for (r, want) in parsed.iter().zip(&records) {
            let r = r.unwrap();
            prop_assert_eq!(r.offset(), base_offset.wrapping_add(n));
            prop_assert_eq!(r.timestamp(), want.timestamp);
            prop_assert_eq!(r.key_slice(), want.key.as_deref());
            prop_assert_eq!(r.value(), want.value.clone());
            prop_assert_eq!(r.headers().collect::<Result<Vec<_>, _>>().unwrap(), want.headers.clone());
            prop_assert_eq!(&r.to_owned_record().unwrap(), want);
            n += 1;
        }
        prop_assert_eq!(n as usize, records.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzz::record_batch(&data);
    }

    #[test]
    fn mutated_batches_never_panic(
        records in proptest::collection::vec(arb_record(), 1..6),
        codec in arb_codec(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut b = RecordBatchBuilder::new(codec);
        for r in &records {
            b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers).unwrap();
        }
        let mut v = b.build().unwrap().to_vec();
        for (at, byte) in flips {
            let i = at.index(v.len());
            v[i] = byte;
        }
        fuzz::record_batch(&v);
    }
}
