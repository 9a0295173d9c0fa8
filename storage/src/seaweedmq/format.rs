//! The byte layouts of kelp's metadata files on the filer, and their names. Pure code: no IO.
//!
//! - `topics/<name>`: a topic record ([`encode_topic`]).
//! - `kv/<key name>`: one of the core's `Put` values: key length u32, key, value ([`encode_kv`]);
//!   the file name is [`kv_name`] of the key.
//! - `logstart/<topic id hex>-<partition>`: kelp's log start offset, an i64 ([`encode_log_start`]).
//!
//! All integers are big-endian; strings are a u32 length then UTF-8.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kelp_core::codec::{KStr, Uuid};
use kelp_core::io::{PartitionKey, TopicRecord};

/// The topic record version written and read.
const TOPIC_VERSION: u8 = 1;
/// Keys up to this long are named by their hex; longer ones by a prefix and a checksum.
const KV_NAME_WHOLE: usize = 100;
/// How much of a long key its file name spells out.
const KV_NAME_PREFIX: usize = 80;

/// Lower-case hex of `b`.
pub(super) fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A filer file name for a key: its hex, or for long keys a prefix of it with a CRC32C and the
/// length (the key itself is stored in the file).
pub(super) fn kv_name(key: &[u8]) -> String {
    if key.len() <= KV_NAME_WHOLE {
        hex(key)
    } else {
        format!("{}~{:08x}~{}", hex(&key[..KV_NAME_PREFIX]), crc32c::crc32c(key), key.len())
    }
}

/// A key/value file's content: key length u32, key, then the value to the end.
pub(super) fn encode_kv(key: &[u8], value: &[u8]) -> Bytes {
    let mut content = BytesMut::with_capacity(4 + key.len() + value.len());
    put_str(&mut content, key);
    content.put_slice(value);
    content.freeze()
}

/// The key and value in a key/value file; `None` if it is too short for the length it gives.
pub(super) fn decode_kv(mut content: Bytes) -> Option<(Bytes, Bytes)> {
    if content.len() < 4 {
        return None;
    }
    let n = content.get_u32() as usize;
    if content.len() < n {
        return None;
    }
    let key = content.split_to(n);
    Some((key, content))
}

/// The file name of a partition's log start: the topic id's hex, `-`, the partition index.
pub(super) fn log_start_name(key: PartitionKey) -> String {
    format!("{}{}", log_start_prefix(key.topic_id), key.partition)
}

/// What the names of a topic's log start files begin with.
pub(super) fn log_start_prefix(topic_id: Uuid) -> String {
    format!("{}-", hex(&topic_id.0))
}

/// A log start file's content.
pub(super) fn encode_log_start(offset: i64) -> Bytes {
    Bytes::copy_from_slice(&offset.to_be_bytes())
}

/// The offset in a log start file; `None` unless it is exactly 8 bytes.
pub(super) fn decode_log_start(mut content: Bytes) -> Option<i64> {
    (content.len() == 8).then(|| content.get_i64())
}

/// A topic record: version u8 (1), name, id (16 bytes), partitions i32, config count u32,
/// then (name, value) pairs.
pub(super) fn encode_topic(t: &TopicRecord) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(TOPIC_VERSION);
    put_str(&mut out, t.name.as_bytes());
    out.put_slice(&t.id.0);
    out.put_i32(t.partitions);
    out.put_u32(u32::try_from(t.configs.len()).unwrap_or(u32::MAX));
    for (k, v) in &t.configs {
        put_str(&mut out, k.as_bytes());
        put_str(&mut out, v.as_bytes());
    }
    out.freeze()
}

/// Reads a topic record; `None` if it is not one. The config count is checked against the bytes
/// left (8 per pair at least) before anything is allocated for it.
pub(super) fn decode_topic(mut b: Bytes) -> Option<TopicRecord> {
    if b.is_empty() || b.get_u8() != TOPIC_VERSION {
        return None;
    }
    let name = get_str(&mut b)?;
    if b.len() < 24 {
        return None;
    }
    let mut id = [0u8; 16];
    b.copy_to_slice(&mut id);
    let partitions = b.get_i32();
    let n = b.get_u32() as usize;
    if n.saturating_mul(8) > b.len() {
        return None;
    }
    let mut configs = Vec::with_capacity(n);
    for _ in 0..n {
        configs.push((get_str(&mut b)?, get_str(&mut b)?));
    }
    Some(TopicRecord { name, id: Uuid(id), partitions, configs })
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s);
}

fn get_str(b: &mut Bytes) -> Option<KStr> {
    if b.len() < 4 {
        return None;
    }
    let n = b.get_u32() as usize;
    if b.len() < n {
        return None;
    }
    KStr::from_utf8(b.split_to(n)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_records_round_trip() {
        let t = TopicRecord {
            name: KStr::from_static("orders"),
            id: Uuid([9; 16]),
            partitions: 3,
            configs: vec![(KStr::from_static("retention.ms"), KStr::from_static("1000"))],
        };
        assert_eq!(decode_topic(encode_topic(&t)), Some(t.clone()));
        assert!(decode_topic(Bytes::from_static(&[2])).is_none(), "unknown version");
        let mut short = encode_topic(&t).to_vec();
        short.truncate(short.len() - 1);
        assert!(decode_topic(Bytes::from(short)).is_none(), "cut short");
    }

    #[test]
    fn kv_files_round_trip_and_long_keys_get_short_names() {
        let c = encode_kv(b"key", b"value");
        assert_eq!(decode_kv(c), Some((Bytes::from_static(b"key"), Bytes::from_static(b"value"))));
        assert_eq!(decode_kv(Bytes::from_static(&[0, 0, 0, 9, 1])), None);
        assert_eq!(kv_name(b"ab"), "6162");
        let long = [7u8; 300];
        let name = kv_name(&long);
        assert!(name.starts_with(&"07".repeat(80)) && name.ends_with("~300"), "{name}");
    }

    #[test]
    fn log_start_files() {
        let key = PartitionKey { topic_id: Uuid([0xab; 16]), partition: 4 };
        assert_eq!(log_start_name(key), format!("{}-4", "ab".repeat(16)));
        assert_eq!(decode_log_start(encode_log_start(-2)), Some(-2));
        assert_eq!(decode_log_start(Bytes::from_static(&[1, 2])), None);
    }
}
