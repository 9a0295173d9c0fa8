//! Consumer groups: the classic coordinator ([`classic`]) and committed offsets ([`offsets`]),
//! with how both are stored.
//!
//! This node coordinates every group. Groups and offsets live in memory and are written
//! through [`crate::io::Command::Put`]; at start they are rebuilt from the stored values
//! ([`Groups::recover`]). Nothing here does IO or reads a clock.
//!
//! # Stored format
//! All integers big-endian; `str`/`bytes` are the codec's compact forms (unsigned varint of
//! length + 1, then the bytes; 0 means null).
//!
//! - Group metadata. Key: `b"group/"` followed by the group id's bytes. Value (version 1):
//!   `u8 1, i32 generation, str? protocol_type, str? protocol, str? leader, uvarint members`,
//!   then per member: `str member_id, str? instance_id, str client_id, str client_host,
//!   i32 session_timeout_ms, i32 rebalance_timeout_ms, bytes metadata (for the chosen
//!   protocol), bytes assignment`. Written when the leader's assignment is stored, when a
//!   static member is replaced in Stable, and when the group becomes Empty; deleted with the
//!   group.
//! - KIP-848 consumer group metadata. Same key. Value (version 3): `u8 3, i32 group_epoch,
//!   i32 target_assignment_epoch, uvarint topics` then per subscribed topic as the target
//!   saw it `str name, uuid id, i32 partitions`; `uvarint members`, then per member:
//!   `str member_id, str? instance_id, str? rack_id, str client_id, str client_host,
//!   uvarint n + n * str subscribed_topic, str? subscribed_regex, str? server_assignor,
//!   i32 rebalance_timeout_ms,
//!   i32 member_epoch, i32 previous_member_epoch, u8 state (0 stable, 1 unrevoked,
//!   2 unreleased)`, then three assignments (assigned, being revoked, target), each
//!   `uvarint topics` of `uuid topic_id, uvarint n, n * i32 partition`. Version 4 adds, after
//!   `subscribed_regex`, the member's classic protocol data: `i32 session_timeout_ms` (-1: a
//!   KIP-848 member, nothing follows), then `uvarint n, n * (str protocol, bytes metadata)`.
//!   Each group is written in the oldest version that holds it (2: no regexes and no classic
//!   members; 3: regexes), so that an older kelp still reads it; version 2 is version 3
//!   without `subscribed_regex`. Written on every
//!   heartbeat that changes the group and when a member is fenced; a group id holds one
//!   type at a time, so the key is shared.
//! - Committed offset. Key: `b"offsets/"`, then `str group, str topic, i32 partition`. Value
//!   (version 1): `u8 1, i64 offset, i32 leader_epoch, str? metadata, i64 commit_timestamp`.
//!   Written by every OffsetCommit; deleted by OffsetDelete and DeleteGroups.
//!
//! Unreadable values are skipped at recovery (a damaged key must not stop the broker).

pub mod assignor;
pub mod classic;
pub mod configs;
pub mod consumer;
pub mod offsets;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::codec::generated::consumer_protocol_subscription::ConsumerProtocolSubscription;
use crate::codec::{DecodeError, KStr, Message, Reader, Uuid, Writer};
use crate::config::Config;
use crate::time::{Duration, Instant};
use classic::{ClassicGroup, GroupTimer, Member};
use consumer::{ConsumerGroup, ConsumerTimer};
pub use offsets::{CommittedOffset, Offsets};

/// What a coordinator (classic or KIP-848) reads and where it writes its effects: the
/// coordinators are pure, and the handlers in [`crate::api`] carry the effects out.
pub struct Ctx<'a, E> {
    /// The current time.
    pub now: Instant,
    /// Limits and timeouts.
    pub cfg: &'a crate::config::Config,
    /// For member ids.
    pub rng: &'a mut crate::rng::Rng,
    /// The effects, in order.
    pub out: &'a mut Vec<E>,
}

/// The random part of a new member id, drawn from the seeded generator. A classic member's id
/// is its client id and this UUID in Java's `UUID.toString` form, as Kafka's classic
/// coordinator names members; a KIP-848 member's id is this UUID in Kafka's base64 form.
pub(crate) fn member_uuid(rng: &mut crate::rng::Rng) -> Uuid {
    Uuid::from_u64_pair(rng.next_u64(), rng.next_u64())
}

/// Who a member is, as DescribeGroups and ConsumerGroupDescribe report it: the request
/// header's client id and the peer's host (`/` and its IP address, as Kafka writes it).
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// The request header's client id.
    pub id: KStr,
    /// The peer's host.
    pub host: KStr,
}

/// Prefix of group metadata keys.
pub const GROUP_PREFIX: &[u8] = b"group/";
/// Prefix of committed offset keys.
pub const OFFSETS_PREFIX: &[u8] = b"offsets/";

/// Timers to arm, with their deadlines.
pub type Timers<T> = Vec<(T, Instant)>;

/// Every group this node coordinates, and their committed offsets.
#[derive(Debug, Default)]
pub struct Groups {
    /// Classic groups by id.
    pub classic: HashMap<KStr, ClassicGroup>,
    /// KIP-848 consumer groups by id. A group id is in at most one of the two maps.
    pub consumer: HashMap<KStr, ConsumerGroup>,
    /// Committed offsets.
    pub offsets: Offsets,
    /// Groups' own configs (KIP-848), by group id; a group may have configs before it exists.
    pub configs: HashMap<KStr, configs::GroupConfig>,
}

impl Groups {
    /// Rebuilds groups and offsets from stored values. Returns the session timers to arm:
    /// recovered members must heartbeat within their session timeout from `now`.
    pub fn recover(
        values: &[(Bytes, Bytes)],
        now: Instant,
        cfg: &Config,
    ) -> (Self, Timers<GroupTimer>, Timers<ConsumerTimer>) {
        let mut g = Self::default();
        for (k, v) in values {
            if let Some(id) = k.strip_prefix(GROUP_PREFIX) {
                let Ok(id) = KStr::from_utf8(k.slice(GROUP_PREFIX.len()..GROUP_PREFIX.len() + id.len())) else {
                    continue;
                };
                if matches!(v.first(), Some(2..=4)) {
                    if let Ok(group) = ConsumerGroup::decode(id.clone(), v) {
                        g.consumer.insert(id, group);
                    }
                } else if let Ok(group) = decode_group(id.clone(), v) {
                    g.classic.insert(id, group);
                }
            } else if let Some(id) = configs::group_of(k) {
                if let Ok(c) = configs::GroupConfig::decode(v) {
                    g.configs.insert(id, c);
                }
            } else if k.starts_with(OFFSETS_PREFIX)
                && let (Ok((group, topic, partition)), Ok(value)) = (decode_offset_key(k), decode_offset(v))
            {
                g.offsets.set(&group, &topic, partition, value);
            }
        }
        for (id, c) in &g.configs {
            if let Some(group) = g.consumer.get_mut(id) {
                group.session_timeout = c.session_timeout_ms.map(|_| c.session_timeout(cfg));
            }
        }
        // Offsets of a group never stored as metadata belong to an Empty group.
        for id in g.offsets.groups() {
            if !g.consumer.contains_key(&id) {
                g.classic.entry(id.clone()).or_insert_with(|| ClassicGroup::new(id));
            }
        }
        let mut timers: Vec<(GroupTimer, Instant)> = g
            .classic
            .values()
            .flat_map(|grp| {
                grp.members.values().map(|m| {
                    (GroupTimer::Heartbeat { group: grp.id.clone(), member: m.id.clone() }, now + m.session_timeout)
                })
            })
            .collect();
        // A fixed order (the maps' is randomly seeded): timers due together fire in the order
        // they were armed, and the same inputs must give the same outputs.
        timers.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let mut consumer_timers: Vec<(ConsumerTimer, Instant)> =
            g.consumer.values().flat_map(|grp| grp.recovery_timers(now, cfg)).collect();
        consumer_timers.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        (g, timers, consumer_timers)
    }

    /// Whether a live group (of either type) has this id.
    #[must_use]
    pub fn exists(&self, id: &str) -> bool {
        self.classic.contains_key(id) || self.consumer.contains_key(id)
    }
}

/// The topics a consumer-protocol subscription names, or `None` when it cannot be read.
#[must_use]
pub fn subscription_topics(metadata: &Bytes) -> Option<Vec<KStr>> {
    let mut r = Reader::new(metadata);
    let version = r.i16("ConsumerProtocolSubscription.version").ok()?;
    if version < 0 {
        return None;
    }
    // Newer versions only add fields at the end: read them as the newest we know.
    let s = ConsumerProtocolSubscription::decode(&mut r, version.min(3)).ok()?;
    Some(s.topics)
}

/// The storage key of `group`'s metadata.
#[must_use]
pub fn group_key(group: &str) -> Bytes {
    let mut k = Vec::with_capacity(GROUP_PREFIX.len() + group.len());
    k.extend_from_slice(GROUP_PREFIX);
    k.extend_from_slice(group.as_bytes());
    Bytes::from(k)
}

/// The stored value of `g`'s metadata: the assignment being stored if there is one, else each
/// member's current assignment.
#[must_use]
pub fn encode_group(g: &ClassicGroup) -> Bytes {
    let mut w = Writer::contiguous(64 + g.members.len() * 64);
    w.i8(1);
    w.i32(g.generation);
    w.nullable_string(true, g.protocol_type.as_ref());
    w.nullable_string(true, g.protocol.as_ref());
    w.nullable_string(true, g.leader.as_ref());
    w.uvarint(u32::try_from(g.members.len()).unwrap_or(u32::MAX));
    let protocol = g.protocol.clone().unwrap_or_default();
    let storing = g.storing();
    for m in g.members.values() {
        w.string(true, &m.id);
        w.nullable_string(true, m.instance_id.as_ref());
        w.string(true, &m.client_id);
        w.string(true, &m.client_host);
        w.i32(millis_i32(m.session_timeout));
        w.i32(millis_i32(m.rebalance_timeout));
        w.bytes_field(true, m.metadata(&protocol).unwrap_or(&Bytes::new()));
        let assignment = storing.and_then(|s| s.get(&m.id)).unwrap_or(&m.assignment);
        w.bytes_field(true, assignment);
    }
    w.into_bytes()
}

fn millis_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn decode_group(id: KStr, v: &Bytes) -> Result<ClassicGroup, DecodeError> {
    const CTX: &str = "stored group";
    let mut r = Reader::new(v);
    if r.i8(CTX)? != 1 {
        return Err(DecodeError::LengthOutOfRange(CTX));
    }
    let generation = r.i32(CTX)?;
    let protocol_type = r.nullable_string(true, CTX)?;
    let protocol = r.nullable_string(true, CTX)?;
    let leader = r.nullable_string(true, CTX)?;
    let n = r.uvarint(CTX)? as usize;
    // Each member takes at least 14 bytes: never allocate more than the value can hold.
    if n.saturating_mul(14) > r.remaining() {
        return Err(DecodeError::LengthOutOfRange(CTX));
    }
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.string(true, CTX)?;
        let instance_id = r.nullable_string(true, CTX)?;
        let client_id = r.string(true, CTX)?;
        let client_host = r.string(true, CTX)?;
        let session_timeout = Duration::from_millis(i64::from(r.i32(CTX)?));
        let rebalance_timeout = Duration::from_millis(i64::from(r.i32(CTX)?));
        let metadata = r.nullable_bytes(true, CTX)?.unwrap_or_default();
        let assignment = r.nullable_bytes(true, CTX)?.unwrap_or_default();
        let protocols = protocol.iter().map(|p| (p.clone(), metadata.clone())).collect();
        members.push(Member {
            id,
            instance_id,
            client_id,
            client_host,
            session_timeout,
            rebalance_timeout,
            protocols,
            assignment,
            join: None,
            sync: None,
            is_new: false,
        });
    }
    Ok(ClassicGroup::recovered(id, generation, protocol_type, protocol, leader, members))
}

/// The storage key of a committed offset.
#[must_use]
pub fn offset_key(group: &KStr, topic: &KStr, partition: i32) -> Bytes {
    let mut w = Writer::contiguous(OFFSETS_PREFIX.len() + group.len() + topic.len() + 12);
    w.put_slice(OFFSETS_PREFIX);
    w.string(true, group);
    w.string(true, topic);
    w.i32(partition);
    w.into_bytes()
}

fn decode_offset_key(k: &Bytes) -> Result<(KStr, KStr, i32), DecodeError> {
    const CTX: &str = "stored offset key";
    let rest = k.slice(OFFSETS_PREFIX.len()..);
    let mut r = Reader::new(&rest);
    Ok((r.string(true, CTX)?, r.string(true, CTX)?, r.i32(CTX)?))
}

/// The stored value of a committed offset.
#[must_use]
pub fn encode_offset(o: &CommittedOffset) -> Bytes {
    let mut w = Writer::contiguous(32 + o.metadata.as_ref().map_or(0, KStr::len));
    w.i8(1);
    w.i64(o.offset);
    w.i32(o.leader_epoch);
    w.nullable_string(true, o.metadata.as_ref());
    w.i64(o.commit_timestamp);
    w.into_bytes()
}

fn decode_offset(v: &Bytes) -> Result<CommittedOffset, DecodeError> {
    const CTX: &str = "stored offset";
    let mut r = Reader::new(v);
    if r.i8(CTX)? != 1 {
        return Err(DecodeError::LengthOutOfRange(CTX));
    }
    Ok(CommittedOffset {
        offset: r.i64(CTX)?,
        leader_epoch: r.i32(CTX)?,
        metadata: r.nullable_string(true, CTX)?,
        commit_timestamp: r.i64(CTX)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::KStr;

    #[test]
    fn offsets_round_trip_through_their_stored_form() {
        let o = CommittedOffset { offset: 42, leader_epoch: 3, metadata: Some("m".into()), commit_timestamp: 7 };
        let (g, t) = (KStr::from("g/1"), KStr::from("topic"));
        let k = offset_key(&g, &t, 5);
        assert_eq!(decode_offset_key(&k).ok(), Some((g, t, 5)));
        assert_eq!(decode_offset(&encode_offset(&o)).ok(), Some(o));
    }

    #[test]
    fn damaged_values_are_refused_not_trusted() {
        assert!(decode_group("g".into(), &Bytes::from_static(&[1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0x0f])).is_err());
        assert!(decode_offset(&Bytes::from_static(&[2])).is_err());
    }
}
