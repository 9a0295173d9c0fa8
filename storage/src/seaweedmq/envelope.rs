//! How one Kafka record is kept as one SeaweedMQ message, and how fetched messages become
//! record batches again. The layout is documented for SeaweedMQ-native readers in
//! `docs/SEAWEEDMQ.md`; keep the two in step.
//!
//! A message's `key` is left empty: the broker holds back a subscriber's next message while an
//! earlier one with the same key is unacknowledged, and Kafka keys repeat. The message `value` is
//! this envelope, all integers big-endian:
//!
//! ```text
//! magic    u8   0x4B ('K')
//! version  u8   1
//! flags    u8   bit0 key is null, bit1 value is null, bit2 LogAppendTime, bit3 transactional,
//!               bit4 control batch
//! offset   i64  the record's Kafka offset (= the SeaweedMQ offset the broker assigned)
//! delta    i32  the record's offset delta in its original batch
//! last     i32  the original batch's last offset delta
//! pid      i64  producer id (-1: none)
//! epoch    i16  producer epoch
//! baseseq  i32  the original batch's base sequence
//! lepoch   i32  partition leader epoch
//! ts       i64  the record's create timestamp (ms), as the producer set it
//! maxts    i64  the batch's max timestamp (ms; the broker's time under LogAppendTime)
//! klen     u32  key length, then the key (klen is 0 when the key is null)
//! nhdr     u32  header count, then per header: klen u32, key, vlen i32 (-1 null), value
//! value         the record value, to the end of the message
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kelp_core::records::{Compression, Header, RecordBatch, RecordBatchBuilder, RecordsError, TimestampType};

/// First byte of every envelope.
pub const MAGIC: u8 = 0x4B;
/// The envelope version written.
pub const VERSION: u8 = 1;
const FIXED: usize = 3 + 8 + 4 + 4 + 8 + 2 + 4 + 4 + 8 + 8 + 4 + 4;

const KEY_NULL: u8 = 1;
const VALUE_NULL: u8 = 2;
const LOG_APPEND_TIME: u8 = 4;
const TRANSACTIONAL: u8 = 8;
const CONTROL: u8 = 16;

/// Largest decompressed batch the store opens.
pub const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

/// One Kafka record with what its batch said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Kafka offset.
    pub offset: i64,
    /// Offset delta in the original batch.
    pub delta: i32,
    /// The original batch's last offset delta.
    pub last_delta: i32,
    /// Producer id, epoch, base sequence of the batch.
    pub producer: (i64, i16, i32),
    /// Partition leader epoch.
    pub leader_epoch: i32,
    /// Record create timestamp.
    pub timestamp: i64,
    /// Batch max timestamp.
    pub max_timestamp: i64,
    /// LogAppendTime batch.
    pub log_append_time: bool,
    /// Transactional batch.
    pub transactional: bool,
    /// Control batch.
    pub control: bool,
    /// Key (`None`: null).
    pub key: Option<Bytes>,
    /// Value (`None`: null).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<Header>,
}

impl Envelope {
    /// The batch's base offset.
    #[must_use]
    pub fn batch_base(&self) -> i64 {
        self.offset - i64::from(self.delta)
    }

    /// The length of the message value [`Envelope::encode`] makes.
    #[must_use]
    pub fn stored_len(&self) -> usize {
        let hdr_len: usize =
            self.headers.iter().map(|h| 8 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len)).sum();
        let body = self.value.as_ref().map_or(0, Bytes::len) + self.key.as_ref().map_or(0, Bytes::len);
        FIXED + hdr_len + body
    }

    /// Encodes into a message value.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.stored_len());
        let mut flags = 0;
        for (on, bit) in [
            (self.key.is_none(), KEY_NULL),
            (self.value.is_none(), VALUE_NULL),
            (self.log_append_time, LOG_APPEND_TIME),
            (self.transactional, TRANSACTIONAL),
            (self.control, CONTROL),
        ] {
            if on {
                flags |= bit;
            }
        }
        out.put_u8(MAGIC);
        out.put_u8(VERSION);
        out.put_u8(flags);
        out.put_i64(self.offset);
        out.put_i32(self.delta);
        out.put_i32(self.last_delta);
        out.put_i64(self.producer.0);
        out.put_i16(self.producer.1);
        out.put_i32(self.producer.2);
        out.put_i32(self.leader_epoch);
        out.put_i64(self.timestamp);
        out.put_i64(self.max_timestamp);
        let key = self.key.as_deref().unwrap_or_default();
        out.put_u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
        out.put_slice(key);
        out.put_u32(u32::try_from(self.headers.len()).unwrap_or(u32::MAX));
        for h in &self.headers {
            out.put_u32(u32::try_from(h.key.len()).unwrap_or(u32::MAX));
            out.put_slice(&h.key);
            match &h.value {
                Some(v) => {
                    out.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                    out.put_slice(v);
                }
                None => out.put_i32(-1),
            }
        }
        if let Some(v) = &self.value {
            out.put_slice(v);
        }
        out.freeze()
    }

    /// Decodes a message value: an envelope, or a typed record holding one
    /// ([`super::typed`]); `None` if it is neither.
    #[must_use]
    pub fn decode(value: Bytes) -> Option<Self> {
        if value.first() == Some(&MAGIC) {
            Self::decode_plain(value)
        } else {
            Self::decode_plain(super::typed::envelope_in(&value)?)
        }
    }

    fn decode_plain(mut value: Bytes) -> Option<Self> {
        if value.len() < FIXED || value[0] != MAGIC || value[1] != VERSION {
            return None;
        }
        value.advance(2);
        let flags = value.get_u8();
        let offset = value.get_i64();
        let delta = value.get_i32();
        let last_delta = value.get_i32();
        let producer = (value.get_i64(), value.get_i16(), value.get_i32());
        let leader_epoch = value.get_i32();
        let timestamp = value.get_i64();
        let max_timestamp = value.get_i64();
        let kl = value.get_u32() as usize;
        if value.len() < kl.saturating_add(4) {
            return None;
        }
        let key = value.split_to(kl);
        let n = value.get_u32() as usize;
        if n.saturating_mul(8) > value.len() || delta < 0 || last_delta < delta {
            return None;
        }
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            if value.len() < 4 {
                return None;
            }
            let kl = value.get_u32() as usize;
            if value.len() < kl.saturating_add(4) {
                return None;
            }
            let k = value.split_to(kl);
            let vl = value.get_i32();
            let v = if vl < 0 {
                None
            } else {
                let vl = vl as usize;
                if value.len() < vl {
                    return None;
                }
                Some(value.split_to(vl))
            };
            headers.push(Header { key: k, value: v });
        }
        Some(Self {
            offset,
            delta,
            last_delta,
            producer,
            leader_epoch,
            timestamp,
            max_timestamp,
            log_append_time: flags & LOG_APPEND_TIME != 0,
            transactional: flags & TRANSACTIONAL != 0,
            control: flags & CONTROL != 0,
            key: (flags & KEY_NULL == 0).then_some(key),
            value: (flags & VALUE_NULL == 0).then_some(value),
            headers,
        })
    }
}

/// Splits appended batches (back to back, offsets already assigned) into envelopes.
pub fn split(mut batches: Bytes) -> Result<Vec<Envelope>, RecordsError> {
    let mut out = Vec::new();
    while !batches.is_empty() {
        let batch = RecordBatch::split_first(&mut batches)?;
        let lat = batch.timestamp_type() == TimestampType::LogAppendTime;
        let producer = (batch.producer_id(), batch.producer_epoch(), batch.base_sequence());
        for r in &batch.records(MAX_DECOMPRESSED)? {
            let r = r?;
            let headers = r.headers().collect::<Result<Vec<_>, _>>()?;
            out.push(Envelope {
                offset: r.offset(),
                delta: r.offset_delta(),
                last_delta: batch.last_offset_delta(),
                producer,
                leader_epoch: batch.partition_leader_epoch(),
                timestamp: r.create_timestamp(),
                max_timestamp: batch.max_timestamp(),
                log_append_time: lat,
                transactional: batch.is_transactional(),
                control: batch.is_control(),
                key: r.key(),
                value: r.value(),
                headers,
            });
        }
    }
    Ok(out)
}

/// Rebuilds record batches from consecutive envelopes: records of one original batch go back
/// into one uncompressed batch with the original base offset, offset deltas, producer fields,
/// timestamps and timestamp type.
pub fn rebuild(records: &[Envelope]) -> Result<Vec<Bytes>, RecordsError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let first = &records[i];
        let base = first.batch_base();
        let mut j = i + 1;
        while j < records.len()
            && records[j].batch_base() == base
            && records[j].producer == first.producer
            && records[j].delta > records[j - 1].delta
        {
            j += 1;
        }
        let mut b = RecordBatchBuilder::new(Compression::None)
            .base_offset(base)
            .partition_leader_epoch(first.leader_epoch)
            .producer(first.producer.0, first.producer.1, first.producer.2)
            .transactional(first.transactional)
            .control(first.control);
        if first.log_append_time {
            b = b.log_append_time(first.max_timestamp);
        }
        for r in &records[i..j] {
            b.push_parts(r.delta, r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers)?;
        }
        out.push(b.build()?);
        i = j;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_split_encode_decode_rebuild() {
        let mut b = RecordBatchBuilder::new(Compression::Lz4).base_offset(40).producer(7, 2, 11);
        b.append(1_000, None, Some(b""), &[Header::new("h", None), Header::new("h", Some(Bytes::from_static(b"")))])
            .unwrap();
        b.append(999, Some(b""), None, &[]).unwrap();
        b.append(1_002, Some(b"k"), Some(b"v"), &[Header::new("a", Some(Bytes::from_static(b"1")))]).unwrap();
        let original = b.build().unwrap();
        let envs = split(original.clone()).unwrap();
        assert_eq!(envs.iter().map(|e| e.offset).collect::<Vec<_>>(), [40, 41, 42]);
        let decoded: Vec<Envelope> = envs.iter().map(|e| Envelope::decode(e.encode()).unwrap()).collect();
        assert!(envs.iter().all(|e| e.encode().len() == e.stored_len()));
        assert_eq!(decoded, envs);
        let rebuilt = rebuild(&decoded).unwrap();
        assert_eq!(rebuilt.len(), 1);
        let (a, b) = (RecordBatch::new(original).unwrap(), RecordBatch::new(rebuilt[0].clone()).unwrap());
        b.validate().unwrap();
        assert_eq!((b.base_offset(), b.last_offset_delta(), b.max_timestamp()), (40, 2, 1_002));
        assert_eq!((b.producer_id(), b.producer_epoch(), b.base_sequence()), (7, 2, 11));
        let ra: Vec<_> = a.records(1 << 20).unwrap().iter().map(|r| r.unwrap().to_owned_record().unwrap()).collect();
        let rb: Vec<_> = b.records(1 << 20).unwrap().iter().map(|r| r.unwrap().to_owned_record().unwrap()).collect();
        assert_eq!(ra, rb);
        // A read that starts inside a batch keeps the batch's base offset.
        let tail = rebuild(&decoded[1..]).unwrap();
        let t = RecordBatch::new(tail[0].clone()).unwrap();
        assert_eq!((t.base_offset(), t.records_count(), t.last_offset()), (40, 2, 42));
    }

    #[test]
    fn garbage_is_not_an_envelope() {
        assert_eq!(Envelope::decode(Bytes::from_static(b"hello")), None);
        let mut v = vec![MAGIC, VERSION];
        v.resize(FIXED, 0);
        v[FIXED - 1] = 200; // 200 headers announced, none present
        assert_eq!(Envelope::decode(Bytes::from(v)), None);
    }
}
