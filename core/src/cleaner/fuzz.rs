//! The body of the `log_cleaner` fuzz target (re-exported as `kelp_core::fuzzing`): arbitrary
//! record sets through the cleaner's key map and batch filter. Neither may panic on any
//! input, and whatever the filter writes must be a sound batch: the same base offset and
//! lastOffsetDelta, a correct CRC, and only records that are their key's latest.

use bytes::Bytes;

use super::{Filtered, KeyMap, Rules, filter};
use crate::records::fuzz::with_fixed_crcs;
use crate::records::{Batches, RecordBatch};

/// Runs `data` (after a control byte) as a log through one cleaning pass; see the module docs.
pub fn log_cleaner(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else { return };
    // The control byte picks the map budget (some inputs fill it) and the moment (some
    // horizons pass).
    let budget = usize::from(control & 0x0f) * 64;
    let rules = Rules { now_ms: i64::from(control >> 4) * 1_000, delete_retention_ms: 500 };
    let batches: Vec<RecordBatch> = Batches::new(with_fixed_crcs(rest)).map_while(Result::ok).collect();
    let mut map = KeyMap::new(budget);
    for b in &batches {
        match map.add(b) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
    for (i, b) in batches.iter().enumerate() {
        let Ok((what, removed)) = filter(b, &map, &rules, i % 2 == 0) else { continue };
        match what {
            Filtered::Keep => assert_eq!(removed, 0, "a batch kept whole removed records"),
            Filtered::Drop => {}
            Filtered::Rewrite(out) => check_rewrite(b, out, &map),
        }
    }
}

fn check_rewrite(old: &RecordBatch, out: Bytes, map: &KeyMap) {
    let new = RecordBatch::new(out).expect("a rewritten batch parses");
    assert_eq!(new.crc(), new.compute_crc(), "a rewritten batch has a wrong CRC");
    assert_eq!((new.base_offset(), new.last_offset_delta()), (old.base_offset(), old.last_offset_delta()));
    assert_eq!((new.producer_id(), new.base_sequence()), (old.producer_id(), old.base_sequence()));
    let records = new.records(super::MAX_DECOMPRESSED).expect("a rewritten batch decodes");
    for r in &records {
        let r = r.expect("a rewritten record decodes");
        let key = r.key_slice().expect("a kept record has a key");
        assert!(map.latest(key).is_none_or(|latest| latest <= r.offset()), "a superseded record was kept");
        assert!(r.offset() >= new.base_offset() && r.offset() <= new.last_offset(), "a record left its batch's range");
    }
}
