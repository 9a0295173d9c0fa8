//! Recovery: what the core learns from storage at start (`Recover`) and after a failed append
//! (`RecoverPartition`): topics, the core's stored values, and each partition's extent (offset
//! range, producer state and largest timestamp), read from the filer and from SeaweedMQ.

use std::collections::VecDeque;

use futures_util::stream::{self, StreamExt};
use hashbrown::HashMap;
use kelp_core::io::{
    BatchSummary, PartitionExtent, PartitionKey, Recovered, StorageError, TimestampOffset, TopicRecord,
};
use kelp_core::log::PRODUCER_BATCHES;
use tokio::time::timeout;

use super::cluster::{Cluster, lock};
use super::envelope::Envelope;
use super::format::{decode_kv, decode_log_start, decode_topic, log_start_name};
use super::persisted::GateState;
use super::topics::{TopicInfo, TypedFields};

/// Records scanned at the end of each partition on recovery, for producer state.
const TAIL_SCAN: i64 = 2000;
/// Partitions of a topic recovered at once at start.
const RECOVER_AT_ONCE: usize = 16;
/// A `RecoverPartition` attempt's deadline, in RPC deadlines.
const RECOVER_ATTEMPTS: u32 = 3;

impl Cluster {
    /// Answers `Recover`: every topic kelp recorded (re-created in SeaweedMQ if gone from it),
    /// its partitions' extents, and the core's stored values.
    pub(super) async fn recover(&self) -> Result<Recovered, StorageError> {
        let mut out = Recovered::default();
        let log_starts: HashMap<String, i64> = self
            .list_files(&self.meta_dir("logstart"))
            .await?
            .into_iter()
            .filter_map(|(n, c)| Some((n, decode_log_start(c)?)))
            .collect();
        for (_, content) in self.list_files(&self.meta_dir("topics")).await? {
            let Some(t) = decode_topic(content) else {
                return Err(StorageError::Corrupt("unreadable topic record on the filer"));
            };
            self.recover_topic(t, &log_starts, &mut out).await?;
        }
        for (_, content) in self.list_files(&self.meta_dir("kv")).await? {
            // A file too short for the key length it gives is not one of kelp's: skipped.
            if let Some(kv) = decode_kv(content) {
                out.values.push(kv);
            }
        }
        Ok(out)
    }

    /// Adds topic `t` and its partitions' extents to `out`, creating the SeaweedMQ topic again
    /// if it is gone from SeaweedMQ (or was never created there).
    async fn recover_topic(
        &self,
        t: TopicRecord,
        log_starts: &HashMap<String, i64>,
        out: &mut Recovered,
    ) -> Result<(), StorageError> {
        let name = t.name.as_str().to_owned();
        if self.smq_partitions(&name).await?.is_none() {
            self.configure(&name, t.partitions).await?;
        }
        let typed = TypedFields::of(&t);
        lock(&self.topics).insert(t.id, TopicInfo { name, partitions: t.partitions, typed });
        // The first partition looks the placements up afresh; then the others, a few at a
        // time: settling one may wait seconds for the broker's flush (see `Cluster::settle`).
        let extent = |i: i32| {
            let key = PartitionKey { topic_id: t.id, partition: i };
            let stored = log_starts.get(&log_start_name(key)).copied().unwrap_or(0);
            async move { Ok::<_, StorageError>((key, self.extent(key, stored, i == 0, 0, None, true).await?)) }
        };
        if t.partitions > 0 {
            out.partitions.push(extent(0).await?);
        }
        let rest: Vec<_> = stream::iter(1..t.partitions).map(extent).buffered(RECOVER_AT_ONCE).collect().await;
        for r in rest {
            out.partitions.push(r?);
        }
        out.topics.push(t);
        Ok(())
    }

    /// Answers `RecoverPartition`: the partition's extent as it is stored now, with the
    /// producer state of the records from `from` (the core's high watermark) on: the core
    /// knows the rest, and when nothing new was stored nothing is read. One attempt has
    /// [`RECOVER_ATTEMPTS`] times the RPC deadline in all; the core asks again after a failure.
    ///
    /// `unstored_from`: the publisher knows that nothing from there on was stored (the broker
    /// refused its stream), so offsets SeaweedMQ counts from there on are holes and are not
    /// waited for.
    ///
    /// Read sessions are kept: a subscription still open delivers what was stored, and
    /// dropping them all can leave the broker with neither publisher nor subscriber on the
    /// partition, so that it unloads it just as the next publish stream arrives (see
    /// [`super::read`] for what that does to offsets).
    pub(super) async fn recover_partition(
        &self,
        key: PartitionKey,
        from: i64,
        unstored_from: Option<i64>,
    ) -> Result<PartitionExtent, StorageError> {
        let attempt = async {
            let stored = self.stored_log_start(key).await?;
            self.extent(key, stored, true, from, unstored_from, false).await
        };
        let r = match timeout(self.cfg.rpc_timeout * RECOVER_ATTEMPTS, attempt).await {
            Ok(r) => r,
            Err(_) => Err(StorageError::Timeout),
        };
        match &r {
            Ok(e) => tracing::info!(?key, kelp = from, seaweedmq = e.next_offset, "seaweedmq: partition end re-learnt"),
            Err(e) => tracing::warn!(?key, kelp = from, error = ?e, "seaweedmq: cannot re-learn the partition end"),
        }
        r
    }

    /// A partition's extent as SeaweedMQ holds it: its offset range, and the producer state
    /// and largest timestamp of its last [`TAIL_SCAN`] records. `stored_start` is kelp's own
    /// log start for it (DeleteRecords); `refresh` looks up the partition's leader afresh;
    /// records before `scan_from` are not read, nor those from `unstored_from` on (known not
    /// to be stored: offsets there are holes).
    ///
    /// The end reported is the broker's high watermark once everything below it is persisted
    /// (see [`Cluster::settle`]); the partition is repaired first if the broker restarted. A
    /// fenced partition fails, except `at_start`: kelp then starts with the partition ending
    /// where its files end, and refuses appends to it.
    async fn extent(
        &self,
        key: PartitionKey,
        stored_start: i64,
        refresh: bool,
        scan_from: i64,
        unstored_from: Option<i64>,
        at_start: bool,
    ) -> Result<PartitionExtent, StorageError> {
        let (earliest, hwm, holes) = match self.gate(key, true).await {
            Ok(()) => {
                let (earliest, hwm) = self.offsets(key, refresh).await?;
                // Offsets from `unstored_from` on hold nothing: no need to wait for them.
                let stored_end = unstored_from.map_or(hwm, |u| u.min(hwm));
                (earliest, hwm, self.settle(key, stored_end).await?)
            }
            Err(StorageError::Fenced(_)) if at_start => {
                let end = match self.persisted.gate_state(key, self.persisted.generation()) {
                    GateState::Fenced(f) => f.end,
                    _ => return Err(StorageError::Unavailable),
                };
                (0, end, None)
            }
            Err(e) => return Err(e),
        };
        if let Some(u) = unstored_from.filter(|u| *u < hwm) {
            tracing::info!(?key, from = u, to = hwm, "seaweedmq: offsets the broker used up refusing kelp's records");
        }
        // Holes that settling found (it said so in the log) are not read either.
        let unstored_from = match (unstored_from, holes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tracing::debug!(?key, earliest, hwm, scan_from, "seaweedmq: partition range");
        let log_start = earliest.max(stored_start).min(hwm);
        let mut extent = PartitionExtent {
            log_start,
            next_offset: hwm,
            max_timestamp: TimestampOffset::NONE,
            producer_batches: Vec::new(),
        };
        let from = log_start.max(hwm - TAIL_SCAN).max(scan_from);
        let end = unstored_from.map_or(hwm, |u| u.clamp(from.min(hwm), hwm));
        if from < end {
            let (records, stopped) = self.scan(key, from, end).await?;
            if stopped < end {
                // Offsets the broker counted but holds no message for (see `super::read`):
                // the next append goes after them all the same.
                tracing::warn!(
                    ?key,
                    from = stopped,
                    to = end,
                    "seaweedmq: offsets at the end of the partition hold no record"
                );
            }
            tail_state(&records, &mut extent);
        }
        self.persisted.raise(key, hwm);
        Ok(extent)
    }
}

/// Producer batches and the largest timestamp among the last records of a partition: the
/// last [`PRODUCER_BATCHES`] whole batches of each producer, ordered by offset.
fn tail_state(records: &[Envelope], extent: &mut PartitionExtent) {
    let mut per_producer: HashMap<i64, VecDeque<BatchSummary>> = HashMap::new();
    for r in records {
        let ts = if r.log_append_time { r.max_timestamp } else { r.timestamp };
        if ts > extent.max_timestamp.timestamp {
            extent.max_timestamp = TimestampOffset { timestamp: ts, offset: r.offset };
        }
        if r.producer.0 < 0 || r.delta != r.last_delta {
            continue;
        }
        let q = per_producer.entry(r.producer.0).or_default();
        q.push_back(BatchSummary {
            producer_id: r.producer.0,
            producer_epoch: r.producer.1,
            base_sequence: r.producer.2,
            last_sequence: r.producer.2.wrapping_add(r.last_delta) & i32::MAX,
            base_offset: r.batch_base(),
            last_offset: r.offset,
            timestamp: r.max_timestamp,
        });
        if q.len() > PRODUCER_BATCHES {
            q.pop_front();
        }
    }
    let mut all: Vec<BatchSummary> = per_producer.into_values().flatten().collect();
    all.sort_by_key(|b| b.base_offset);
    extent.producer_batches = all;
}
