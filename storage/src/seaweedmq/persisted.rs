//! The persisted prefix of every partition, kept up to date from the filer's metadata events,
//! and `AwaitDurable`, answered from it.
//!
//! One `SubscribeMetadata` stream per store follows `/topics/<namespace>/`; every flush of a
//! partition's window is an event on its file, which [`Watermark`] turns into a persisted end.
//! A window is read back (from its volume server) only when the attributes do not tell: it has
//! none, or a waiter needs exactly the one offset an `offset_max` claims (see
//! [`super::durable`]). Reading every window would cost as much CPU as the publishing.
//!
//! Each partition's end is published on a `watch` channel; waiters (`AwaitDurable`, and the
//! recovery's settling in [`super::repair`]) wait on it, and give up when the broker restarts
//! (its unflushed records are gone then).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashMap;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use kelp_core::Completion;
use kelp_core::codec::Uuid;
use kelp_core::io::{PartitionKey, StorageError};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::cluster::{Cluster, lock, now_ns};
use super::durable::{OFFSET_MAX, Watermark, Window, flush_path, max_log_offset, offset_attr};
use super::pb::filer_pb;

/// How far back the event stream starts when the store starts: flushes of records
/// acknowledged just before.
const LOOKBACK: Duration = Duration::from_secs(5);
/// The first pause before the event stream reconnects; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two attempts to open the event stream.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a waiter looks again without news (to retry a failed read of a window).
const RECHECK: Duration = Duration::from_secs(1);
/// The largest window kelp reads back (the broker seals windows at 8 MiB).
const MAX_WINDOW: usize = 64 << 20;

/// The store's knowledge of what SeaweedMQ has persisted, shared by its tasks.
pub(super) struct Persisted {
    parts: std::sync::Mutex<HashMap<PartitionKey, Part>>,
    /// The broker generation: bumped each time the master's list of brokers changes.
    brokers: watch::Sender<u64>,
    /// Whether the filer event stream is open, and how many times it broke.
    stream_up: AtomicBool,
    stream_breaks: AtomicU64,
    /// One lock per partition, held while it is repaired (see [`super::repair`]).
    repairs: std::sync::Mutex<HashMap<PartitionKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Volume server addresses, by volume id.
    volumes: std::sync::Mutex<HashMap<u32, String>>,
    http: Client<HttpConnector, Empty<Bytes>>,
}

/// A partition kelp may not continue, in one broker generation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fence {
    /// The broker generation.
    pub(super) generation: u64,
    /// Why, for the client.
    pub(super) why: &'static str,
    /// The end of what the files hold.
    pub(super) end: i64,
}

/// One partition's state.
struct Part {
    mark: Watermark,
    /// `mark.end()`, for waiters.
    end: watch::Sender<i64>,
    /// The broker generation it was last repaired in (see [`super::repair`]).
    repaired: Option<u64>,
    fenced: Option<Fence>,
}

impl Part {
    fn new() -> Self {
        Self { mark: Watermark::default(), end: watch::Sender::new(0), repaired: None, fenced: None }
    }

    /// Tells waiters if the end moved.
    fn publish(&self) {
        let end = self.mark.end();
        self.end.send_if_modified(|e| {
            let moved = *e != end;
            *e = end;
            moved
        });
    }
}

/// What the gate of [`super::repair`] knows of a partition without doing anything.
pub(super) enum GateState {
    /// Repaired in this broker generation: go ahead.
    Open,
    /// Fenced in this broker generation.
    Fenced(Fence),
    /// Not repaired since the broker (re)started.
    Unrepaired,
}

impl Persisted {
    /// Nothing known yet: every partition unrepaired, its persisted end 0.
    pub(super) fn new() -> Self {
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self {
            parts: std::sync::Mutex::new(HashMap::new()),
            brokers: watch::Sender::new(0),
            stream_up: AtomicBool::new(false),
            stream_breaks: AtomicU64::new(0),
            repairs: std::sync::Mutex::new(HashMap::new()),
            volumes: std::sync::Mutex::new(HashMap::new()),
            http,
        }
    }

    fn with_part<R>(&self, key: PartitionKey, f: impl FnOnce(&mut Part) -> R) -> R {
        let mut parts = lock(&self.parts);
        f(parts.entry(key).or_insert_with(Part::new))
    }

    /// The exclusive end of the partition's persisted prefix.
    pub(super) fn end(&self, key: PartitionKey) -> i64 {
        self.with_part(key, |p| p.mark.end())
    }

    /// Everything below `end` is persisted (or holds nothing).
    pub(super) fn raise(&self, key: PartitionKey, end: i64) {
        self.with_part(key, |p| {
            p.mark.raise(end);
            p.publish();
        });
    }

    /// Flushes seen for the partition, and breaks of the event stream: unchanged across a
    /// wait (and the stream up), nothing was flushed meanwhile.
    pub(super) fn activity(&self, key: PartitionKey) -> (u64, u64) {
        (self.with_part(key, |p| p.mark.flushes()), self.stream_breaks.load(Ordering::Relaxed))
    }

    pub(super) fn stream_up(&self) -> bool {
        self.stream_up.load(Ordering::Relaxed)
    }

    /// The current broker generation.
    pub(super) fn generation(&self) -> u64 {
        *self.brokers.borrow()
    }

    /// A broker restarted (or left, or joined): unflushed records may be gone, and every
    /// partition must be repaired before it is touched again.
    pub(super) fn broker_changed(&self) {
        for p in lock(&self.parts).values_mut() {
            p.mark.forget_claim();
        }
        self.brokers.send_modify(|g| *g += 1);
    }

    /// Where the partition stands in the broker generation `generation`.
    pub(super) fn gate_state(&self, key: PartitionKey, generation: u64) -> GateState {
        self.with_part(key, |p| match (p.repaired, p.fenced) {
            (_, Some(f)) if f.generation == generation => GateState::Fenced(f),
            (Some(g), _) if g == generation => GateState::Open,
            _ => GateState::Unrepaired,
        })
    }

    /// The partition was repaired in broker generation `generation`.
    pub(super) fn repaired(&self, key: PartitionKey, generation: u64) {
        self.with_part(key, |p| {
            p.repaired = Some(generation);
            p.fenced = None;
        });
    }

    /// The partition may not continue in this broker generation.
    pub(super) fn fence(&self, key: PartitionKey, fence: Fence) {
        self.with_part(key, |p| p.fenced = Some(fence));
    }

    /// The lock a repair of `key` holds.
    pub(super) fn repair_lock(&self, key: PartitionKey) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.repairs).entry(key).or_default())
    }

    /// Forgets the partitions of a deleted topic.
    pub(super) fn forget_topic(&self, id: Uuid) {
        lock(&self.parts).retain(|k, _| k.topic_id != id);
        lock(&self.repairs).retain(|k, _| k.topic_id != id);
    }
}

impl Cluster {
    /// Answers `AwaitDurable`: once everything of `key` below `offset` is persisted.
    pub(super) async fn await_durable(&self, key: PartitionKey, offset: i64) -> Completion {
        let generation = self.persisted.generation();
        let end = self.persisted.end(key);
        if end >= offset {
            return Completion::Durable { end };
        }
        if !matches!(self.persisted.gate_state(key, generation), GateState::Open) {
            // The broker restarted since the partition was last repaired: what it had not
            // flushed is gone.
            tracing::warn!(?key, offset, persisted = end, "seaweedmq: records lost in a broker restart");
            return Completion::Failed(StorageError::Unavailable);
        }
        match self.wait_persisted(key, offset, Instant::now() + self.cfg.ack_timeout, generation).await {
            Ok(end) => Completion::Durable { end },
            Err(e) => {
                let persisted = self.persisted.end(key);
                tracing::warn!(?key, offset, persisted, error = ?e, "seaweedmq: records not persisted");
                Completion::Failed(e)
            }
        }
    }

    /// Waits until everything of `key` below `target` is persisted and returns the persisted
    /// end then. [`StorageError::Timeout`] at `deadline`; [`StorageError::Unavailable`] once
    /// the broker generation is no longer `generation`.
    pub(super) async fn wait_persisted(
        &self,
        key: PartitionKey,
        target: i64,
        deadline: Instant,
        generation: u64,
    ) -> Result<i64, StorageError> {
        let mut end_rx = self.persisted.with_part(key, |p| p.end.subscribe());
        let mut gen_rx = self.persisted.brokers.subscribe();
        loop {
            let end = *end_rx.borrow_and_update();
            if end >= target {
                return Ok(end);
            }
            if *gen_rx.borrow_and_update() != generation {
                return Err(StorageError::Unavailable);
            }
            let read = self.persisted.with_part(key, |p| p.mark.want_read(target));
            if read.is_some() {
                self.read_windows(key, read, target).await;
            }
            tokio::select! {
                r = end_rx.changed() => if r.is_err() {
                    // The partition's topic was deleted.
                    return Err(StorageError::NotFound);
                },
                r = gen_rx.changed() => if r.is_err() {
                    return Err(StorageError::Unavailable);
                },
                () = sleep_until(deadline) => return Err(StorageError::Timeout),
                () = sleep(RECHECK) => {}
            }
        }
    }

    /// Reads `first`, then each window the partition's watermark asks for towards `target`,
    /// until none is asked for or a read fails.
    async fn read_windows(&self, key: PartitionKey, first: Option<Window>, target: i64) {
        let mut next = first;
        while let Some(w) = next {
            match timeout(self.cfg.rpc_timeout, self.window_max(&w)).await {
                Ok(Ok(max)) => {
                    tracing::debug!(?key, ?max, fid = %w.fid, "seaweedmq: read a flushed window");
                    next = self.persisted.with_part(key, |p| {
                        p.mark.on_read(&w, max);
                        p.publish();
                        p.mark.want_read(target)
                    });
                }
                failed => {
                    tracing::warn!(?key, fid = %w.fid, error = ?failed.ok(), "seaweedmq: cannot read a flushed window");
                    self.persisted.with_part(key, |p| p.mark.read_failed());
                    return;
                }
            }
        }
    }

    /// The largest offset in a flushed window, read from its volume server (which decompresses
    /// it). A window kelp cannot read as records (encrypted, or a manifest of chunks) tells
    /// nothing: `None`.
    pub(super) async fn window_max(&self, w: &Window) -> Result<Option<i64>, StorageError> {
        if !w.readable {
            return Ok(None);
        }
        let server = self.volume_server(w.volume).await?;
        let uri: http::Uri = format!("http://{server}/{}", w.fid)
            .parse()
            .map_err(|_| StorageError::Corrupt("a volume server address that is not a URI"))?;
        let req = hyper::Request::get(uri)
            .body(Empty::new())
            .map_err(|_| StorageError::Corrupt("a volume server address that is not a URI"))?;
        let resp = self.persisted.http.request(req).await.map_err(|e| {
            lock(&self.persisted.volumes).remove(&w.volume);
            tracing::warn!(error = %e, server, "seaweedmq: volume server unreachable");
            StorageError::Unavailable
        })?;
        if resp.status() != http::StatusCode::OK {
            tracing::warn!(status = %resp.status(), fid = %w.fid, "seaweedmq: volume server refused a read");
            return Err(StorageError::Unavailable);
        }
        let body = Limited::new(resp.into_body(), MAX_WINDOW).collect().await.map_err(|e| {
            tracing::warn!(error = %e, fid = %w.fid, "seaweedmq: reading a flushed window failed");
            StorageError::Unavailable
        })?;
        max_log_offset(body.to_bytes()).map_err(|e| {
            tracing::error!(fid = %w.fid, error = e.0, "seaweedmq: a flushed window that kelp cannot parse");
            StorageError::Corrupt("a flushed SeaweedMQ window that does not parse")
        })
    }

    /// The address of a volume server holding `volume`.
    async fn volume_server(&self, volume: u32) -> Result<String, StorageError> {
        if let Some(s) = lock(&self.persisted.volumes).get(&volume) {
            return Ok(s.clone());
        }
        let req = filer_pb::LookupVolumeRequest { volume_ids: vec![volume.to_string()] };
        let r = self.rpc("filer LookupVolume", self.filer().lookup_volume(req)).await?;
        let server = r
            .locations_map
            .get(&volume.to_string())
            .and_then(|l| l.locations.first())
            .map(|l| l.url.clone())
            .ok_or(StorageError::Unavailable)?;
        lock(&self.persisted.volumes).insert(volume, server.clone());
        Ok(server)
    }

    /// Follows the filer's metadata events under the namespace for the store's lifetime,
    /// reconnecting after a failure from the last event seen.
    pub(super) async fn follow_flushes(self: Arc<Self>) {
        let ns_dir = format!("/topics/{}/", self.cfg.namespace);
        let mut since = now_ns() - i64::try_from(LOOKBACK.as_nanos()).unwrap_or(0);
        // The filer refuses a second stream under the same client id unless its epoch is newer.
        let client_id = (now_ns() as i32) ^ (std::process::id() as i32);
        let (mut epoch, mut backoff, mut failing) = (0, MIN_BACKOFF, false);
        loop {
            epoch += 1;
            let req = filer_pb::SubscribeMetadataRequest {
                client_name: format!("kelp-{}", std::process::id()),
                path_prefix: ns_dir.clone(),
                since_ns: since,
                client_id,
                client_epoch: epoch,
                ..Default::default()
            };
            // The filer sends the stream's headers with its first event, which may be long in
            // coming: no deadline on the call. The subscription counts as up from here on: the
            // filer replays from `since`, so nothing flushed meanwhile is missed.
            let mut filer = self.filer();
            let open = filer.subscribe_metadata(req);
            self.persisted.stream_up.store(true, Ordering::Relaxed);
            match open.await {
                Ok(stream) => {
                    if failing {
                        tracing::info!("seaweedmq: following the filer's flushes again");
                    }
                    failing = false;
                    let mut stream = stream.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(m)) => {
                                since = since.max(m.ts_ns);
                                backoff = MIN_BACKOFF;
                                self.on_filer_event(&ns_dir, m);
                            }
                            Ok(None) => break,
                            Err(s) => {
                                tracing::warn!(status = %s, "seaweedmq: the filer's event stream broke");
                                break;
                            }
                        }
                    }
                }
                Err(s) => {
                    if !failing {
                        tracing::warn!(status = %s, "seaweedmq: cannot follow the filer's flushes");
                    }
                    failing = true;
                }
            }
            if self.persisted.stream_up.swap(false, Ordering::Relaxed) {
                self.persisted.stream_breaks.fetch_add(1, Ordering::Relaxed);
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One filer event: a flush of a partition kelp knows advances its watermark.
    fn on_filer_event(self: &Arc<Self>, ns_dir: &str, m: filer_pb::SubscribeMetadataResponse) {
        let Some(ev) = m.event_notification else { return };
        // Deletions have no new entry.
        let Some(entry) = ev.new_entry else { return };
        let dir = if ev.new_parent_path.is_empty() { &m.directory } else { &ev.new_parent_path };
        if entry.is_directory {
            return;
        }
        let Some(path) = flush_path(ns_dir, dir, &entry.name) else { return };
        let Some(key) = self.partition_in(path.topic, path.range) else { return };
        let Some(window) = Window::newest(&entry.chunks) else { return };
        let max = offset_attr(&entry.extended, OFFSET_MAX);
        tracing::trace!(?key, offset_max = ?max, file = %entry.name, "seaweedmq: flushed");
        let read = self.persisted.with_part(key, |p| {
            p.mark.on_flush(path.generation, max, window);
            p.publish();
            p.mark.want_read(i64::MAX)
        });
        if read.is_some() {
            let c = Arc::clone(self);
            tokio::spawn(async move { c.read_windows(key, read, i64::MAX).await });
        }
    }
}
