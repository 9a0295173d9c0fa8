//! The log cleaner in virtual time: the broker's cleaner timer sends `Command::Clean` for the
//! partitions of compacted topics, and the memory store cleans their closed segments. A fetch
//! from the start then returns the latest record of each key at its original offset,
//! ListOffsets is unchanged, tombstones last `delete.retention.ms` after the pass that first
//! kept them, `min.compaction.lag.ms` holds young records back, a runtime switch of
//! `cleanup.policy` takes effect at the next look, and a restart and idempotent duplicate
//! detection both survive cleaning.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::incremental_alter_configs::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kelp_core::codec::{ConfigResourceType, KStr};
use kelp_core::records::{Batches, Compression, RecordBatchBuilder};
use kelp_core::{Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, create_topic_with, fetch_request, list_offset, ms, produce_request, test_config};

/// The cleaner looks every second; retention is left to its default (a week).
fn config() -> Config {
    Config { cleaner_backoff: ms(1_000), ..test_config() }
}

/// Every single-record batch (about 70 bytes) closes the segment before it.
const SMALL_SEGMENTS: (&str, &str) = ("segment.bytes", "100");
const COMPACT: (&str, &str) = ("cleanup.policy", "compact");

/// A one-record batch with `key` and `value` (`None`: a tombstone), stamped now.
fn record(h: &Harness, key: &str, value: Option<&str>) -> Bytes {
    let mut b = RecordBatchBuilder::new(Compression::None);
    b.append(h.now().wall_ms, Some(key.as_bytes()), value.map(str::as_bytes), &[]).expect("builds");
    b.build().expect("builds")
}

/// Produces `records` to partition 0 of `topic`, one batch each; returns their offsets.
fn produce(h: &mut Harness, c: ConnId, topic: &str, records: &[(&str, Option<&str>)]) -> Vec<i64> {
    let mut offsets = Vec::new();
    for (k, v) in records {
        let batch = record(h, k, *v);
        let resp = expect_body!(h.call(c, produce_request(topic, 0, batch, -1), 11), Produce);
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "{:?}", p.error_message);
        offsets.push(p.base_offset);
    }
    offsets
}

/// A key and value as read back (`None`: a tombstone).
type Kv = (i64, String, Option<String>);

/// Every record of partition 0 from `offset`, as (offset, key, value).
fn fetch_from(h: &mut Harness, c: ConnId, topic: &str, offset: i64) -> Vec<Kv> {
    let resp = expect_body!(h.call(c, fetch_request(topic, 0, offset, 0), 12), Fetch);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut out = Vec::new();
    let Some(records) = &p.records else { return out };
    for batch in Batches::new(records.to_bytes()) {
        let batch = batch.expect("whole batches");
        batch.validate().expect("valid CRC");
        for r in &batch.records(1 << 20).expect("records") {
            let r = r.expect("record");
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf8");
            out.push((r.offset(), text(r.key_slice().unwrap_or_default()), r.value_slice().map(text)));
        }
    }
    out
}

fn kv(offset: i64, key: &str, value: Option<&str>) -> Kv {
    (offset, key.to_owned(), value.map(str::to_owned))
}

fn set_config(h: &mut Harness, c: ConnId, topic: &str, name: &'static str, value: &'static str) {
    let req = RequestBody::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: ConfigResourceType::TOPIC.0,
            resource_name: topic.into(),
            configs: vec![AlterableConfig {
                name: KStr::from_static(name),
                config_operation: 0,
                value: Some(KStr::from_static(value)),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let r = expect_body!(h.call(c, req, 1), IncrementalAlterConfigs);
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
}

/// The value of a metric line `name` (with its labels) in the broker's rendering.
fn metric(h: &Harness, name: &str) -> Option<f64> {
    let mut out = String::new();
    h.broker.write_metrics(&mut out);
    out.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// a b a c b a, then x in the active segment.
const HISTORY: [(&str, Option<&str>); 7] = [
    ("a", Some("a1")),
    ("b", Some("b1")),
    ("a", Some("a2")),
    ("c", Some("c1")),
    ("b", Some("b2")),
    ("a", Some("a3")),
    ("x", Some("x1")),
];

fn cleaned_history() -> Vec<Kv> {
    vec![kv(3, "c", Some("c1")), kv(4, "b", Some("b2")), kv(5, "a", Some("a3")), kv(6, "x", Some("x1"))]
}

#[test]
fn the_timer_cleans_a_compacted_topic_to_the_latest_record_of_each_key_at_its_offset() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "cfg", 1, &[COMPACT, SMALL_SEGMENTS]);
    assert_eq!(produce(&mut h, c, "cfg", &HISTORY), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(fetch_from(&mut h, c, "cfg", 0).len(), 7, "nothing is cleaned before the timer");
    assert_eq!(metric(&h, "kelp_cleaner_passes_total"), Some(0.0));
    h.advance(ms(1_000));
    // The active segment (x) is never cleaned; the closed ones keep each key's latest record.
    assert_eq!(fetch_from(&mut h, c, "cfg", 0), cleaned_history());
    assert_eq!(fetch_from(&mut h, c, "cfg", 1), cleaned_history(), "a fetch inside a gap starts after it");
    assert_eq!(list_offset(&mut h, c, "cfg", -2), 0, "cleaning does not move the log start");
    assert_eq!(list_offset(&mut h, c, "cfg", -1), 7);
    assert_eq!(metric(&h, "kelp_cleaner_passes_total"), Some(1.0));
    assert_eq!(metric(&h, "kelp_cleaner_records_removed_total"), Some(3.0));
    let (read, written) = (metric(&h, "kelp_cleaner_bytes_read_total"), metric(&h, "kelp_cleaner_bytes_written_total"));
    assert!(read.zip(written).is_some_and(|(r, w)| r > w && w > 0.0), "read {read:?}, written {written:?}");
    assert_eq!(metric(&h, "kelp_cleaner_dirty_ratio{topic=\"cfg\",partition=\"0\"}"), Some(1.0));
    // Offsets go on where they were; the next look finds nothing new to clean.
    assert_eq!(produce(&mut h, c, "cfg", &[("b", Some("b3"))]), [7]);
    h.advance(ms(1_000));
    assert_eq!(metric(&h, "kelp_cleaner_passes_total"), Some(1.0), "one closed segment of five is dirty");
    let mut want = cleaned_history();
    want.push(kv(7, "b", Some("b3")));
    assert_eq!(fetch_from(&mut h, c, "cfg", 0), want);
}

#[test]
fn a_delete_topic_is_not_cleaned_until_its_policy_becomes_compact() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "flip", 1, &[SMALL_SEGMENTS]);
    produce(&mut h, c, "flip", &HISTORY);
    h.advance(ms(5_000));
    assert_eq!(fetch_from(&mut h, c, "flip", 0).len(), 7, "cleanup.policy=delete keeps every record");
    assert_eq!(metric(&h, "kelp_cleaner_dirty_ratio{topic=\"flip\",partition=\"0\"}"), None);
    set_config(&mut h, c, "flip", "cleanup.policy", "compact");
    h.advance(ms(1_000));
    assert_eq!(fetch_from(&mut h, c, "flip", 0), cleaned_history(), "cleaned at the next look, no restart");
    // Back to delete: the cleaner leaves it alone again.
    set_config(&mut h, c, "flip", "cleanup.policy", "delete");
    produce(&mut h, c, "flip", &[("c", Some("c2")), ("c", Some("c3")), ("y", Some("y1"))]);
    h.advance(ms(5_000));
    assert_eq!(fetch_from(&mut h, c, "flip", 0).len(), 7);
    assert_eq!(metric(&h, "kelp_cleaner_dirty_ratio{topic=\"flip\",partition=\"0\"}"), None);
}

#[test]
fn a_tombstone_survives_one_pass_and_goes_once_delete_retention_ms_has_passed() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "tomb", 1, &[COMPACT, SMALL_SEGMENTS, ("delete.retention.ms", "10000")]);
    produce(&mut h, c, "tomb", &[("a", Some("a1")), ("b", Some("b1")), ("a", None), ("z", Some("z1"))]);
    h.advance(ms(1_000));
    let first = vec![kv(1, "b", Some("b1")), kv(2, "a", None), kv(3, "z", Some("z1"))];
    assert_eq!(fetch_from(&mut h, c, "tomb", 0), first, "the tombstone replaces a1 and stays");
    // More dirty segments make the log due again before the horizon: the tombstone stays.
    produce(&mut h, c, "tomb", &[("b", Some("b2")), ("y", Some("y1"))]);
    h.advance(ms(1_000));
    let second = vec![kv(2, "a", None), kv(3, "z", Some("z1")), kv(4, "b", Some("b2")), kv(5, "y", Some("y1"))];
    assert_eq!(fetch_from(&mut h, c, "tomb", 0), second);
    // Ten seconds after the first pass kept it, the next pass (due once half the log is
    // dirty again: y, z and w of six closed segments) drops it.
    h.advance(ms(10_000));
    produce(&mut h, c, "tomb", &[("z", Some("z2")), ("w", Some("w1")), ("v", Some("v1"))]);
    h.advance(ms(1_000));
    let third = vec![
        kv(4, "b", Some("b2")),
        kv(5, "y", Some("y1")),
        kv(6, "z", Some("z2")),
        kv(7, "w", Some("w1")),
        kv(8, "v", Some("v1")),
    ];
    assert_eq!(fetch_from(&mut h, c, "tomb", 0), third);
    assert_eq!(list_offset(&mut h, c, "tomb", -2), 0);
}

#[test]
fn an_expired_tombstone_goes_even_when_nothing_new_is_written() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "quiet", 1, &[COMPACT, SMALL_SEGMENTS, ("delete.retention.ms", "10000")]);
    produce(&mut h, c, "quiet", &[("a", Some("a1")), ("a", None), ("z", Some("z1"))]);
    h.advance(ms(1_000));
    assert_eq!(fetch_from(&mut h, c, "quiet", 0), [kv(1, "a", None), kv(2, "z", Some("z1"))]);
    h.advance(ms(5_000));
    assert_eq!(fetch_from(&mut h, c, "quiet", 0).len(), 2, "before its horizon the tombstone stays");
    // No new segment closes, but the tombstone's horizon passes: the next look removes it.
    h.advance(ms(6_000));
    assert_eq!(fetch_from(&mut h, c, "quiet", 0), [kv(2, "z", Some("z1"))]);
}

#[test]
fn min_compaction_lag_ms_holds_young_records_back() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "lag", 1, &[COMPACT, SMALL_SEGMENTS, ("min.compaction.lag.ms", "60000")]);
    produce(&mut h, c, "lag", &HISTORY);
    h.advance(ms(30_000));
    assert_eq!(fetch_from(&mut h, c, "lag", 0).len(), 7, "nothing is a minute old yet");
    assert_eq!(metric(&h, "kelp_cleaner_dirty_ratio{topic=\"lag\",partition=\"0\"}"), Some(0.0));
    h.advance(ms(31_000));
    assert_eq!(fetch_from(&mut h, c, "lag", 0), cleaned_history());
}

#[test]
fn a_restart_keeps_the_cleaned_log() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "keep", 1, &[COMPACT, SMALL_SEGMENTS]);
    produce(&mut h, c, "keep", &HISTORY);
    h.advance(ms(1_000));
    assert_eq!(fetch_from(&mut h, c, "keep", 0), cleaned_history());
    let mut h = h.restart(config());
    let c = h.connect();
    assert_eq!(fetch_from(&mut h, c, "keep", 0), cleaned_history());
    assert_eq!((list_offset(&mut h, c, "keep", -2), list_offset(&mut h, c, "keep", -1)), (0, 7));
    assert_eq!(produce(&mut h, c, "keep", &[("a", Some("a4"))]), [7]);
    // The restarted broker's cleaner goes on from the stored log and its checkpoint: x, a4,
    // c2 and b3 are four dirty segments of seven closed ones.
    produce(&mut h, c, "keep", &[("c", Some("c2")), ("b", Some("b3")), ("y", Some("y1"))]);
    h.advance(ms(1_000));
    let want = vec![
        kv(6, "x", Some("x1")),
        kv(7, "a", Some("a4")),
        kv(8, "c", Some("c2")),
        kv(9, "b", Some("b3")),
        kv(10, "y", Some("y1")),
    ];
    assert_eq!(fetch_from(&mut h, c, "keep", 0), want);
}

#[test]
fn a_retried_idempotent_batch_is_still_a_duplicate_after_cleaning() {
    let mut h = Harness::new(config());
    let c = h.connect();
    create_topic_with(&mut h, c, "idem", 1, &[COMPACT, SMALL_SEGMENTS]);
    // Producer 9 writes key a; a later plain record supersedes it, then x closes the segment.
    let idempotent = |h: &Harness| {
        let mut b = RecordBatchBuilder::new(Compression::None).producer(9, 0, 0);
        b.append(h.now().wall_ms, Some(b"a"), Some(b"p1"), &[]).expect("builds");
        b.build().expect("builds")
    };
    let first = idempotent(&h);
    let resp = expect_body!(h.call(c, produce_request("idem", 0, first.clone(), -1), 11), Produce);
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
    produce(&mut h, c, "idem", &[("a", Some("a2")), ("x", Some("x1"))]);
    h.advance(ms(1_000));
    assert_eq!(metric(&h, "kelp_cleaner_records_removed_total"), Some(1.0), "p1 was superseded");
    assert_eq!(fetch_from(&mut h, c, "idem", 0), [kv(1, "a", Some("a2")), kv(2, "x", Some("x1"))]);
    // The producer's last batch stays (empty) so the retry is recognised, before and after a
    // restart, and gets its original offset without being stored again.
    let retry = |h: &mut Harness, c: ConnId| {
        let resp = expect_body!(h.call(c, produce_request("idem", 0, first.clone(), -1), 11), Produce);
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    };
    assert_eq!(retry(&mut h, c), (0, 0));
    assert_eq!(list_offset(&mut h, c, "idem", -1), 3);
    let mut h = h.restart(config());
    let c = h.connect();
    assert_eq!(retry(&mut h, c), (0, 0));
    assert_eq!(list_offset(&mut h, c, "idem", -1), 3, "the duplicate was not stored");
    assert_eq!(fetch_from(&mut h, c, "idem", 0), [kv(1, "a", Some("a2")), kv(2, "x", Some("x1"))]);
}
