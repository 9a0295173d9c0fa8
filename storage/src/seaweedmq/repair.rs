//! After a broker restart: noticing it, repairing each partition's offset counter before
//! anything of kelp touches the partition, and settling a partition's end on what is
//! persisted before kelp reports it (`Recover`, `RecoverPartition`).
//!
//! A restarted broker numbers a partition on from `checkpoint.offset` (the last offset it
//! assigned, saved every 2 s), not from its files, and reads that file once, when something
//! first touches the partition (`GetPartitionRangeInfo`, `PublishMessage`, `SubscribeMessage`).
//! A counter behind the files makes it hand out offsets already stored. So kelp watches the
//! master's list of brokers (a restarted broker registers seconds before it serves, and kelp
//! polls every [`POLL`]), and gates those three paths per partition: the first of them after a
//! change sets the counter to what the files hold (never lower), then checks that the broker
//! continues after it; if something else touched the partition first, the partition is
//! fenced until the broker restarts again.

use std::sync::Arc;
use std::time::Duration;

use kelp_core::io::{PartitionKey, StorageError};
use tokio::time::{Instant, sleep, timeout};

use super::cluster::{Cluster, now_ns};
use super::durable::{CHECKPOINT, Survey, range_dir, time_name};
use super::pb::filer_pb;
use super::pb::master_pb;
use super::persisted::{Fence, GateState};
use super::topics::Placement;

/// How often kelp asks the master for the brokers.
const POLL: Duration = Duration::from_millis(250);
/// How long one such question may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a recovery waits for the broker to flush what it acknowledged: two flush
/// intervals (1 s in the project's scripts) and a margin.
const SETTLE: Duration = Duration::from_secs(5);
/// A partition's files are listed from this many seconds ago (they are named by time); only if
/// none is that recent is the whole directory listed.
const RECENT_SECS: i64 = 600;

/// What a client hears about a fenced partition.
pub(super) const REUSES_OFFSETS: &str = "the broker would re-assign offsets already stored (its offset counter was not \
     repaired after a restart); restart the SeaweedMQ broker so that kelp repairs the partition before anything else \
     touches it";

impl Cluster {
    /// Polls the master's list of brokers for the store's lifetime; any change (a broker
    /// restarted: a new `created_at_ns`) starts a new broker generation.
    pub(super) async fn follow_brokers(self: Arc<Self>) {
        let mut known: Option<Vec<(String, i64)>> = None;
        let mut master = self.master();
        loop {
            sleep(POLL).await;
            let req = master_pb::ListClusterNodesRequest { client_type: "broker".into(), ..Default::default() };
            let Ok(Ok(r)) = timeout(POLL_TIMEOUT, master.list_cluster_nodes(req)).await else { continue };
            let mut now: Vec<(String, i64)> =
                r.into_inner().cluster_nodes.into_iter().map(|n| (n.address, n.created_at_ns)).collect();
            now.sort_unstable();
            if known.as_ref().is_some_and(|k| *k != now) {
                tracing::warn!(
                    brokers = ?now,
                    "seaweedmq: the brokers changed: records they had not flushed are lost; kelp repairs each partition before touching it again"
                );
                self.persisted.broker_changed();
            }
            known = Some(now);
        }
    }

    /// Lets kelp touch partition `key` (through `GetPartitionRangeInfo`, `PublishMessage` or
    /// `SubscribeMessage`) once it is repaired in the current broker generation, repairing it
    /// first if not (one repair at a time per partition). A fenced partition may still be
    /// read, but not written (`write`): [`StorageError::Fenced`].
    pub(super) async fn gate(&self, key: PartitionKey, write: bool) -> Result<(), StorageError> {
        if let Some(r) = self.admit(key, write) {
            return r;
        }
        let lock = self.persisted.repair_lock(key);
        let _repairing = lock.lock().await;
        if let Some(r) = self.admit(key, write) {
            return r;
        }
        self.repair(key, self.persisted.generation()).await?;
        self.admit(key, write).unwrap_or(Err(StorageError::Unavailable))
    }

    /// The gate's answer without a repair, if there is one.
    fn admit(&self, key: PartitionKey, write: bool) -> Option<Result<(), StorageError>> {
        match self.persisted.gate_state(key, self.persisted.generation()) {
            GateState::Open => Some(Ok(())),
            GateState::Fenced(f) if write => Some(Err(StorageError::Fenced(f.why))),
            GateState::Fenced(_) => Some(Ok(())),
            GateState::Unrepaired => None,
        }
    }

    /// Repairs partition `key` in broker generation `generation`: sets the broker's offset
    /// counter to what the files hold if it is behind, then checks that the broker continues
    /// after the files (else fences the partition).
    async fn repair(&self, key: PartitionKey, generation: u64) -> Result<(), StorageError> {
        let (name, p) = self.place(key, false).await?;
        let (dir, s) = self.survey(&name, &p).await?;
        let (lo, hi) = s.bounds();
        // The counter the broker must continue after. With an `offset_max` M on the newest
        // file, M: the broker also starts its own count from the largest `offset_max` + 1, so
        // when M was only claimed (and lost in the restart), M becomes a hole rather than
        // the broker's counter and its high watermark disagreeing.
        let counter = match hi {
            Some(hi) => hi,
            None => self.highest(&s).await?.max(s.attr_max.unwrap_or(-1)),
        };
        let checkpoint = s.checkpoint.as_ref().map(|c| c.0);
        if let Some(dir) = dir.as_deref()
            && counter >= 0
            && checkpoint.is_none_or(|c| c < counter)
        {
            self.set_checkpoint(dir, s.checkpoint.clone().map(|c| c.1), counter).await?;
            tracing::info!(?key, was = ?checkpoint, now = counter, "seaweedmq: set the broker's offset counter to what its files hold");
        }
        let (_, hwm) = self.range(&name, &p).await?;
        let overlaps = match hi {
            _ if lo >= hwm => true,
            Some(hi) if hi < hwm => false,
            _ => self.highest(&s).await? >= hwm,
        };
        if overlaps {
            let end = self.highest(&s).await? + 1;
            tracing::error!(
                ?key,
                topic = %name,
                persisted_end = end,
                checkpoint = ?checkpoint,
                high_water_mark = hwm,
                "seaweedmq: the broker would re-assign offsets already stored: something touched the partition after \
                 the broker restarted, before kelp could repair its offset counter. kelp refuses appends to it; \
                 restart the SeaweedMQ broker so that kelp repairs the partition before anything else touches it"
            );
            self.persisted.fence(key, Fence { generation, why: REUSES_OFFSETS, end });
            return Ok(());
        }
        self.persisted.raise(key, lo + 1);
        self.persisted.repaired(key, generation);
        tracing::debug!(?key, persisted_end = lo + 1, high_water_mark = hwm, "seaweedmq: partition repaired");
        Ok(())
    }

    /// Writes the broker's offset counter of the partition in `dir`, keeping its entry
    /// otherwise as it was.
    async fn set_checkpoint(
        &self,
        dir: &str,
        entry: Option<filer_pb::Entry>,
        counter: i64,
    ) -> Result<(), StorageError> {
        let content = bytes::Bytes::copy_from_slice(&counter.to_be_bytes());
        let Some(mut entry) = entry else { return self.put_file(dir, CHECKPOINT, content).await };
        let attrs = entry.attributes.get_or_insert_with(Default::default);
        attrs.file_size = content.len() as u64;
        attrs.mtime = now_ns() / 1_000_000_000;
        entry.content = content;
        self.update_entry(dir, entry).await
    }

    /// The partition directory of `p` in its topic's newest generation (if there is one), and
    /// what its recent files say.
    async fn survey(&self, name: &str, p: &Placement) -> Result<(Option<String>, Survey), StorageError> {
        let topic_dir = format!("/topics/{}/{name}", self.cfg.namespace);
        let newest = self
            .list_entries(&topic_dir, "")
            .await?
            .into_iter()
            .filter(|e| e.is_directory && e.name.starts_with('v'))
            .map(|e| e.name)
            .max();
        let Some(generation) = newest else { return Ok((None, Survey::default())) };
        let dir = format!("{topic_dir}/{generation}/{}", range_dir(p.partition.range_start, p.partition.range_stop));
        let recent = time_name(now_ns() / 1_000_000_000 - RECENT_SECS);
        let mut s = Survey::of(self.list_entries(&dir, &recent).await?);
        if s.newest.is_none() {
            s = Survey::of(self.list_entries(&dir, "").await?);
        }
        Ok((Some(dir), s))
    }

    /// The highest offset the surveyed files hold (-1 if none), reading the newest window.
    async fn highest(&self, s: &Survey) -> Result<i64, StorageError> {
        let (lo, _) = s.bounds();
        let Some((w, _)) = &s.newest else { return Ok(lo) };
        let read = timeout(self.cfg.rpc_timeout, self.window_max(w)).await.map_err(|_| StorageError::Timeout)??;
        Ok(lo.max(read.unwrap_or(-1)))
    }

    /// Settles partition `key` before kelp reports its end: waits until everything below
    /// `hwm` (the broker's high watermark, or where the offsets known to hold nothing start)
    /// is persisted. If the broker evidently has nothing more to flush (nothing arrives within
    /// [`SETTLE`] and the files end below `hwm`), the offsets from the files' end on hold
    /// nothing (the broker's counter ran ahead of its files before a restart, or it used
    /// offsets up refusing messages): returns where they start. Otherwise
    /// [`StorageError::Unavailable`] (the core asks again).
    pub(super) async fn settle(&self, key: PartitionKey, hwm: i64) -> Result<Option<i64>, StorageError> {
        if self.persisted.end(key) >= hwm {
            return Ok(None);
        }
        let generation = self.persisted.generation();
        let before = self.persisted.activity(key);
        let (name, p) = self.place(key, false).await?;
        if self.files_reach(key, &name, &p, hwm).await?.is_none() {
            return Ok(None);
        }
        match self.wait_persisted(key, hwm, Instant::now() + SETTLE, generation).await {
            Ok(_) => return Ok(None),
            Err(StorageError::Timeout) => {}
            Err(e) => return Err(e),
        }
        let Some(s) = self.files_reach(key, &name, &p, hwm).await? else { return Ok(None) };
        if !self.persisted.stream_up() || self.persisted.activity(key) != before {
            tracing::warn!(
                ?key,
                persisted_end = self.persisted.end(key),
                high_water_mark = hwm,
                "seaweedmq: the broker has not flushed what it acknowledged yet"
            );
            return Err(StorageError::Unavailable);
        }
        let end = self.highest(&s).await? + 1;
        self.persisted.raise(key, end);
        tracing::warn!(
            ?key,
            from = end,
            to = hwm,
            "seaweedmq: offsets the broker counts but holds no record for (lost in a broker restart, or used up by \
             refused messages); reads step over them"
        );
        Ok(Some(end))
    }

    /// Whether the files of partition `key` hold everything below `end`: if so the
    /// watermark says so and the answer is `None`; else the survey.
    async fn files_reach(
        &self,
        key: PartitionKey,
        name: &str,
        p: &Placement,
        end: i64,
    ) -> Result<Option<Survey>, StorageError> {
        let (_, s) = self.survey(name, p).await?;
        let (lo, hi) = s.bounds();
        let reach = match hi {
            _ if lo + 1 >= end => true,
            Some(hi) if hi + 1 < end => false,
            _ => self.highest(&s).await? + 1 >= end,
        };
        if reach {
            self.persisted.raise(key, end);
            return Ok(None);
        }
        self.persisted.raise(key, lo + 1);
        Ok(Some(s))
    }
}
