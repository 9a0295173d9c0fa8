use super::*;
use crate::records::{Header, TimestampType};

fn spec(now_ms: i64, limit: i64) -> CleanSpec {
    CleanSpec {
        now_ms,
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: i64::MAX,
        delete_retention_ms: 1000,
        limit,
    }
}

fn seg(base_offset: i64, end_offset: i64, size: u64, ts: i64) -> SegmentInfo {
    SegmentInfo { base_offset, end_offset, size, first_timestamp: ts, max_timestamp: ts }
}

/// A batch at `base` with one record per (key, value); record i has offset base + i and
/// timestamp 100 + i.
fn batch(base: i64, records: &[(Option<&str>, Option<&str>)]) -> RecordBatch {
    let mut b = RecordBatchBuilder::new(Compression::None).base_offset(base).producer(7, 1, 40);
    for (i, (k, v)) in records.iter().enumerate() {
        let h = [Header::new("h", Some(Bytes::from(format!("{i}"))))];
        b.append(100 + i as i64, k.map(str::as_bytes), v.map(str::as_bytes), &h).unwrap();
    }
    RecordBatch::new(b.build().unwrap()).unwrap()
}

/// (offset, key, value, timestamp, header value) of a record.
type Seen = (i64, Option<String>, Option<String>, i64, String);

/// Every record of `b`.
fn contents(b: &RecordBatch) -> Vec<Seen> {
    let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    b.records(1 << 20)
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.unwrap();
            let h = r.headers().next().unwrap().unwrap();
            (r.offset(), s(r.key_slice()), s(r.value_slice()), r.timestamp(), s(h.value.as_deref()).unwrap())
        })
        .collect()
}

#[test]
fn the_active_segment_and_anything_at_the_high_watermark_are_never_planned() {
    let segs = [seg(0, 10, 100, 5), seg(10, 20, 100, 5), seg(20, 25, 50, 5)];
    let (ratio, p) = plan(&segs, 0, None, &spec(1_000, 25));
    assert_eq!(ratio, 1.0);
    assert_eq!(p.unwrap().dirty, 0..2, "the last segment is active");
    let (_, p) = plan(&segs, 0, None, &spec(1_000, 15));
    assert_eq!(p.unwrap().dirty, 0..1, "the second segment reaches past the high watermark");
    assert_eq!(plan(&segs[..1], 0, None, &spec(1_000, 25)), (0.0, None), "a lone segment is active");
    assert_eq!(plan(&[], 0, None, &spec(1_000, 25)), (0.0, None));
}

#[test]
fn the_dirty_ratio_decides_and_the_checkpoint_splits_clean_from_dirty() {
    let segs = [seg(0, 10, 300, 5), seg(10, 20, 100, 5), seg(20, 30, 100, 5), seg(30, 31, 10, 5)];
    // Clean up to 10: dirty 200 of 500.
    let (ratio, p) = plan(&segs, 10, None, &spec(1_000, 31));
    assert!((ratio - 0.4).abs() < 1e-9);
    assert_eq!(p, None, "below min.cleanable.dirty.ratio");
    let mut s = spec(1_000, 31);
    s.min_cleanable_dirty_ratio = 0.4;
    let p = plan(&segs, 10, None, &s).1.unwrap();
    assert_eq!((p.first_dirty, p.dirty), (10, 1..3));
    // A checkpoint inside a segment makes that segment dirty.
    assert_eq!(plan(&segs, 15, None, &s).1.unwrap().dirty, 1..3);
    // A checkpoint below the log start (retention moved it) or past the end restarts.
    let p = plan(&segs[1..], 3, None, &s).1.unwrap();
    assert_eq!((p.first_dirty, p.dirty), (10, 0..2));
    assert_eq!(plan(&segs, 99, None, &s).1.unwrap().first_dirty, 0);
    // Nothing dirty: nothing to do, unless tombstones in the clean part are due to go.
    assert_eq!(plan(&segs, 30, None, &s), (0.0, None));
    assert_eq!(plan(&segs, 30, Some(1_001), &s), (0.0, None), "the horizon is ahead");
    let p = plan(&segs, 30, Some(1_000), &s).1.unwrap();
    assert_eq!((p.first_dirty, p.dirty), (30, 3..3), "every cleanable segment is rewritten");
}

#[test]
fn compaction_lags_hold_young_records_back_and_push_old_ones_through() {
    let segs = [seg(0, 10, 100, 1_000), seg(10, 20, 100, 5_000), seg(20, 21, 10, 9_000)];
    let mut s = spec(6_000, 21);
    s.min_compaction_lag_ms = 2_000;
    // The second segment has records younger than 2 s at 6 s.
    assert_eq!(plan(&segs, 0, None, &s).1.unwrap().dirty, 0..1);
    s.min_compaction_lag_ms = 10_000;
    assert_eq!(plan(&segs, 0, None, &s), (0.0, None));
    // Dirty ratio 100 / 200 is below 0.9, but the first dirty record is older than the max lag.
    let mut s = spec(6_000, 21);
    s.min_cleanable_dirty_ratio = 0.9;
    assert_eq!(plan(&segs, 10, None, &s).1, None);
    s.max_compaction_lag_ms = 500;
    assert_eq!(plan(&segs, 10, None, &s).1.unwrap().dirty, 1..2);
}

#[test]
fn the_key_map_keeps_latest_offsets_within_its_budget() {
    let mut map = KeyMap::new(3 * (1 + ENTRY_OVERHEAD));
    assert!(map.add(&batch(0, &[(Some("a"), Some("1")), (Some("b"), Some("1")), (None, Some("x"))])).unwrap());
    assert!(map.add(&batch(3, &[(Some("a"), Some("2"))])).unwrap());
    assert_eq!((map.latest(b"a"), map.latest(b"b"), map.len(), map.end()), (Some(3), Some(1), 2, Some(4)));
    // Two more keys might not fit: the batch is refused whole.
    assert!(!map.add(&batch(4, &[(Some("c"), Some("1")), (Some("d"), Some("1"))])).unwrap());
    assert_eq!((map.latest(b"c"), map.end()), (None, Some(4)));
    // The first batch always goes in, whatever the budget.
    let mut tiny = KeyMap::new(0);
    assert!(tiny.add(&batch(0, &[(Some("a"), Some("1"))])).unwrap());
    assert!(!tiny.add(&batch(1, &[(Some("b"), Some("1"))])).unwrap());
}

#[test]
fn superseded_and_keyless_records_go_and_the_rest_keep_every_field() {
    let b = batch(10, &[(Some("a"), Some("1")), (None, Some("x")), (Some("b"), Some("1")), (Some("a"), Some("2"))]);
    let mut map = KeyMap::new(1 << 20);
    map.add(&b).unwrap();
    map.add(&batch(14, &[(Some("b"), Some("2"))])).unwrap();
    let rules = Rules { now_ms: 1_000, delete_retention_ms: 100 };
    let (Filtered::Rewrite(out), removed) = filter(&b, &map, &rules, false).unwrap() else { panic!("rewritten") };
    assert_eq!(removed, 3);
    let out = RecordBatch::new(out).unwrap();
    assert_eq!(out.crc(), out.compute_crc());
    assert_eq!(contents(&out), [(13, Some("a".into()), Some("2".into()), 103, "3".into())]);
    assert_eq!((out.base_offset(), out.last_offset()), (10, 13), "the offset range is kept");
    assert_eq!((out.producer_id(), out.producer_epoch(), out.base_sequence()), (7, 1, 40));
    assert!(!out.attributes().has_delete_horizon());
    // The latest batch of b is kept as is; a batch with nothing left goes.
    let latest_b = batch(14, &[(Some("b"), Some("2"))]);
    assert_eq!(filter(&latest_b, &map, &rules, false).unwrap(), (Filtered::Keep, 0));
    let old = batch(20, &[(Some("b"), Some("0"))]);
    let mut later = KeyMap::new(1 << 20);
    later.add(&batch(30, &[(Some("b"), Some("9"))])).unwrap();
    assert_eq!(filter(&old, &later, &rules, false).unwrap(), (Filtered::Drop, 1));
}

#[test]
fn trailing_records_removed_keep_the_last_offset_and_sequence() {
    let b = batch(0, &[(Some("a"), Some("1")), (Some("b"), Some("1"))]);
    let mut map = KeyMap::new(1 << 20);
    map.add(&b).unwrap();
    map.add(&batch(2, &[(Some("b"), Some("2"))])).unwrap();
    let rules = Rules { now_ms: 0, delete_retention_ms: 0 };
    let (Filtered::Rewrite(out), 1) = filter(&b, &map, &rules, false).unwrap() else { panic!("rewritten") };
    let out = RecordBatch::new(out).unwrap();
    assert_eq!((out.records_count(), out.last_offset_delta(), out.base_sequence()), (1, 1, 40));
    // The last batch of a producer survives with no records at all.
    let only_b = batch(1, &[(Some("b"), Some("1"))]);
    let (Filtered::Rewrite(empty), 1) = filter(&only_b, &map, &rules, true).unwrap() else { panic!("kept") };
    let empty = RecordBatch::new(empty).unwrap();
    assert_eq!(empty.crc(), empty.compute_crc());
    assert_eq!((empty.records_count(), empty.base_offset(), empty.last_offset(), empty.producer_id()), (0, 1, 1, 7));
}

#[test]
fn tombstones_get_a_horizon_then_go_once_it_passes() {
    let b = batch(0, &[(Some("a"), None), (Some("b"), Some("1"))]);
    let mut map = KeyMap::new(1 << 20);
    map.add(&b).unwrap();
    let first = Rules { now_ms: 10_000, delete_retention_ms: 500 };
    let (Filtered::Rewrite(out), 0) = filter(&b, &map, &first, false).unwrap() else { panic!("horizon set") };
    let out = RecordBatch::new(out).unwrap();
    assert_eq!(out.crc(), out.compute_crc());
    assert!(out.attributes().has_delete_horizon());
    assert_eq!(out.base_timestamp(), 10_500);
    // Timestamps survive the new base.
    assert_eq!(contents(&out).iter().map(|r| r.3).collect::<Vec<_>>(), [100, 101]);
    // Before the horizon: untouched. After: the tombstone goes, the batch loses its horizon.
    assert_eq!(filter(&out, &map, &Rules { now_ms: 10_499, ..first }, false).unwrap(), (Filtered::Keep, 0));
    let (Filtered::Rewrite(last), 1) = filter(&out, &map, &Rules { now_ms: 10_500, ..first }, false).unwrap() else {
        panic!("tombstone removed")
    };
    let last = RecordBatch::new(last).unwrap();
    assert!(!last.attributes().has_delete_horizon());
    assert_eq!(contents(&last), [(1, Some("b".into()), Some("1".into()), 101, "1".into())]);
}

#[test]
fn compressed_and_log_append_time_batches_keep_their_codec_and_type() {
    for codec in Compression::ALL {
        let mut b = RecordBatchBuilder::new(codec).base_offset(3).log_append_time(777);
        b.append(1, Some(b"k"), Some(b"old"), &[]).unwrap();
        b.append(2, Some(b"k"), Some(b"new"), &[]).unwrap();
        let b = RecordBatch::new(b.build().unwrap()).unwrap();
        let mut map = KeyMap::new(1 << 20);
        map.add(&b).unwrap();
        let (Filtered::Rewrite(out), 1) =
            filter(&b, &map, &Rules { now_ms: 0, delete_retention_ms: 0 }, false).unwrap()
        else {
            panic!("rewritten")
        };
        let out = RecordBatch::new(out).unwrap();
        assert_eq!(out.crc(), out.compute_crc());
        assert_eq!((out.compression().unwrap(), out.timestamp_type()), (codec, TimestampType::LogAppendTime));
        let r: Vec<_> = out.records(1 << 20).unwrap().iter().map(|r| r.unwrap().timestamp()).collect();
        assert_eq!((r, out.max_timestamp(), out.last_offset()), (vec![777], 777, 4));
    }
}

#[test]
fn segments_group_up_to_the_size_limit() {
    assert_eq!(group_by_size(&[], 10), Vec::<Range<usize>>::new());
    assert_eq!(group_by_size(&[4, 4, 4, 20, 1], 10), [0..2, 2..3, 3..4, 4..5]);
    assert_eq!(group_by_size(&[1, 1, 1], 10).len(), 1);
    assert_eq!(group_by_size(&[1, 1, 1], 10)[0], 0..3);
}

/// A log of keyed, keyless, tombstone and compressed batches, as the fuzz target's input: a
/// control byte, then the batches back to back.
fn fuzz_input(control: u8) -> Vec<u8> {
    let mut out = vec![control];
    let recs: [&[(Option<&str>, Option<&str>)]; 3] = [
        &[(Some("a"), Some("1")), (None, Some("x")), (Some("b"), None)],
        &[(Some("a"), None), (Some("c"), Some("1"))],
        &[(Some("b"), Some("2")), (Some("a"), Some("3"))],
    ];
    let mut base = 0;
    for (i, r) in recs.iter().enumerate() {
        let codec = Compression::ALL[i % Compression::ALL.len()];
        let mut b = RecordBatchBuilder::new(codec).base_offset(base).producer(3, 0, i as i32 * 10);
        for (k, v) in r.iter() {
            b.append(100, k.map(str::as_bytes), v.map(str::as_bytes), &[]).unwrap();
        }
        out.extend_from_slice(&b.build().unwrap());
        base += r.len() as i64;
    }
    out
}

#[test]
fn the_fuzz_body_cleans_a_real_log_under_every_budget_and_moment() {
    for control in [0u8, 0x01, 0x0f, 0xf0, 0xff, 0x37] {
        super::fuzz::log_cleaner(&fuzz_input(control));
    }
}
