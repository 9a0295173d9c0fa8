//! The publisher: one task per partition that has seen an append, running its appends in order
//! on one pipelined `PublishMessage` stream and answering each once the broker has acknowledged
//! all its records at the offsets kelp gave them. The broker acknowledges from memory, so that
//! answer is `Stored`, not `Done`: the core learns when the records are persisted with
//! `AwaitDurable` ([`super::persisted`]).
//!
//! Any failure (a refused message, an unexpected offset, a broken stream, a missed ack
//! deadline) fails every append in flight and drops the stream; the core then re-learns the
//! partition's end with `RecoverPartition`, which runs here too, in order with the appends.
//! An append refused before any of it is sent (a batch that the topic's `compression.type`
//! makes larger than `max.message.bytes`, or one that does not continue the appends sent
//! before it) fails alone and definitively: the stream stays, and the core rewinds.
//!
//! Recompression ([`kelp_core::io::Recompress`]) runs here, on the publisher task. Records are
//! stored one per message and fetch rebuilds uncompressed batches (docs/SEAWEEDMQ.md), so the
//! re-encoded bytes are not what is kept: the step is done so that a batch too large in the
//! topic's codec is refused as on the other stores.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use kelp_core::io::{PartitionKey, Recompress, StorageError};
use kelp_core::{CmdId, Command, Completion};
use tokio::sync::mpsc;

use super::cluster::{Cluster, lock, now_ns};
use super::envelope;
use super::pb::messaging_pb::{self, publish_message_request};
use super::persisted::Fence;
use super::repair::REUSES_OFFSETS;
use crate::Sink;

use super::Job;

/// Messages in flight per publish stream before the publisher waits for acks.
const PUBLISH_WINDOW: usize = 65536;

/// An append whose records are sent and not all acknowledged yet.
struct Pending {
    cmd: CmdId,
    sink: Sink,
    /// Offset the next ack must carry.
    next: i64,
    /// The append's last offset: once acknowledged, the append is done.
    last: i64,
}

/// An open `PublishMessage` stream.
struct PubStream {
    tx: mpsc::Sender<messaging_pb::PublishMessageRequest>,
    resp: tonic::Streaming<messaging_pb::PublishMessageResponse>,
    /// Whether the broker's greeting (an empty first response) has arrived.
    hello: bool,
    /// The broker generation it was opened in.
    generation: u64,
}

/// What the broker answered on the stream: a response, the stream's end, or its failure.
type Response = Result<Option<messaging_pb::PublishMessageResponse>, tonic::Status>;

/// One partition's publisher and all its state.
pub(super) struct Publisher {
    cluster: Arc<Cluster>,
    key: PartitionKey,
    /// The stream appends go on; opened by the first append after a failure.
    stream: Option<PubStream>,
    /// Appends waiting for acks, in the order they were sent.
    pending: VecDeque<Pending>,
    /// Records sent and not acknowledged.
    in_flight: usize,
    /// While a stream is open: the offset the next append must start at (the end of the last
    /// one sent on it). An append refused before it was sent (its batch too large once
    /// recompressed) leaves a hole the core rewinds over, so the appends queued behind it must
    /// be refused too rather than published at offsets SeaweedMQ would assign differently.
    next_offset: Option<i64>,
    /// Whether the store has dropped the job queue: the task ends once `pending` is answered.
    closed: bool,
    /// Set when the broker ended the last publish stream with an error status: records sent on
    /// it from this offset on are not stored (see [`Publisher::handle_status`]). Valid until a
    /// new stream is opened.
    unstored_from: Option<i64>,
}

impl Publisher {
    /// A publisher for partition `key`, with no stream open yet.
    pub(super) fn new(cluster: Arc<Cluster>, key: PartitionKey) -> Self {
        Self {
            cluster,
            key,
            stream: None,
            pending: VecDeque::new(),
            in_flight: 0,
            next_offset: None,
            closed: false,
            unstored_from: None,
        }
    }

    /// Runs the jobs from `jobs` until it is closed and every append is answered.
    pub(super) async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        loop {
            let ack_deadline = tokio::time::sleep(self.cluster.cfg.ack_timeout);
            tokio::select! {
                job = jobs.recv(), if !self.closed && self.in_flight < PUBLISH_WINDOW => match job {
                    Some(job) => self.handle_job(job).await,
                    None => self.closed = true,
                },
                r = next_response(&mut self.stream), if self.stream.is_some() && !self.pending.is_empty() => {
                    self.handle_response(r);
                }
                () = ack_deadline, if !self.pending.is_empty() => {
                    tracing::warn!(key = ?self.key, "seaweedmq: no publish ack in time");
                    self.fail_all();
                }
            }
            if self.closed && self.pending.is_empty() {
                return;
            }
        }
    }

    /// Starts an append, or answers a `RecoverPartition`.
    async fn handle_job(&mut self, (cmd, command, sink): Job) {
        match command {
            Command::Append { base_offset, last_offset, batches, recompress, .. } => {
                // Split into SeaweedMQ records below, from one buffer: header and records join here.
                self.handle_append(cmd, sink, (base_offset, last_offset), batches.to_bytes(), recompress).await;
            }
            Command::RecoverPartition { from, .. } => self.handle_recover(cmd, sink, from).await,
            _ => sink.complete(cmd, Completion::Failed(StorageError::Corrupt("not an append"))),
        }
    }

    /// Sends an append's records, recompressed first if the topic asks for it (here, on the
    /// partition's publisher task, not on the broker's request loop); it completes when the
    /// last of them is acknowledged.
    async fn handle_append(
        &mut self,
        cmd: CmdId,
        sink: Sink,
        (base, last): (i64, i64),
        batches: Bytes,
        recompress: Option<Recompress>,
    ) {
        if self.stream.is_some() && self.next_offset.is_some_and(|next| next != base) {
            // Nothing is sent: the stream and the appends on it stay as they are.
            sink.complete(cmd, Completion::Failed(StorageError::Corrupt("append does not continue the log")));
            return;
        }
        let batches = match recompress.map(|r| r.apply(batches.clone())) {
            None => batches,
            Some(Ok(re)) => re,
            Some(Err(e)) => {
                sink.complete(cmd, Completion::Failed(e));
                return;
            }
        };
        let fresh = self.stream.is_none();
        match self.send_append(base, batches).await {
            Ok(n) => {
                if fresh {
                    self.unstored_from = None;
                }
                self.in_flight += n;
                self.next_offset = Some(last + 1);
                self.pending.push_back(Pending { cmd, sink, next: base, last });
            }
            Err(e) => {
                self.fail_all();
                sink.complete(cmd, Completion::Failed(e));
            }
        }
    }

    /// Answers `RecoverPartition`. The core asks only once none of its appends is in flight; a
    /// stream that is still open is dropped, and the next append opens a new one at the end
    /// reported here.
    async fn handle_recover(&mut self, cmd: CmdId, sink: Sink, from: i64) {
        debug_assert!(self.pending.is_empty(), "RecoverPartition with appends in flight");
        self.fail_all();
        let result = self.cluster.recover_partition(self.key, from, self.unstored_from).await;
        sink.complete(cmd, result.map_or_else(Completion::Failed, Completion::Partition));
    }

    /// Handles what the broker answered on the stream; any failure fails every append in flight.
    fn handle_response(&mut self, r: Response) {
        let ok = match r {
            Ok(Some(m)) => self.handle_ack(m),
            Ok(None) => {
                tracing::warn!(key = ?self.key, "seaweedmq: publish stream closed by the broker");
                false
            }
            Err(s) => {
                self.handle_status(&s);
                false
            }
        };
        if !ok {
            self.fail_all();
        }
    }

    /// Handles one response; false if the stream must be abandoned.
    fn handle_ack(&mut self, m: messaging_pb::PublishMessageResponse) -> bool {
        if !m.error.is_empty() || m.error_code != 0 || m.should_close {
            tracing::warn!(error = %m.error, code = m.error_code, "seaweedmq: publish refused");
            return false;
        }
        if let Some(s) = self.stream.as_mut()
            && !s.hello
        {
            // The broker greets a new stream with an empty response.
            s.hello = true;
            return true;
        }
        let Some(front) = self.pending.front_mut() else { return false };
        if m.assigned_offset != front.next {
            tracing::error!(
                key = ?self.key,
                expected = front.next,
                assigned = m.assigned_offset,
                "seaweedmq: broker assigned another offset"
            );
            if m.assigned_offset < front.next
                && let Some(s) = &self.stream
            {
                // Below the end the broker reported: its offset counter is behind, so it hands
                // out offsets already stored (it was touched before kelp could repair it).
                self.fence(s.generation);
            }
            return false;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        front.next += 1;
        if front.next > front.last
            && let Some(p) = self.pending.pop_front()
        {
            p.sink.complete(p.cmd, Completion::Stored);
        }
        true
    }

    /// Notes what a failed stream left stored. A status the broker sent (not a broken
    /// connection) means it answers each message before it reads the next and ended the stream
    /// at the first it could not store, so nothing sent after the last answer is stored (though
    /// it may have used up an offset, see [`super::read`]).
    fn handle_status(&mut self, s: &tonic::Status) {
        tracing::warn!(key = ?self.key, status = %s, "seaweedmq: publish stream failed");
        if std::error::Error::source(s).is_none() {
            self.unstored_from = self.pending.front().map(|p| p.next);
        }
    }

    /// Refuses further appends to the partition until the broker restarts (and kelp repairs it).
    fn fence(&self, generation: u64) {
        tracing::error!(
            key = ?self.key,
            "seaweedmq: the broker re-assigns offsets already stored. kelp refuses appends to the partition; restart \
             the SeaweedMQ broker so that kelp repairs the partition before anything else touches it"
        );
        let end = self.cluster.persisted.end(self.key);
        self.cluster.persisted.fence(self.key, Fence { generation, why: REUSES_OFFSETS, end });
    }

    /// Drops the stream and fails every append in flight.
    fn fail_all(&mut self) {
        self.stream = None;
        self.next_offset = None;
        self.in_flight = 0;
        for p in self.pending.drain(..) {
            p.sink.complete(p.cmd, Completion::Failed(StorageError::Unavailable));
        }
    }

    /// Sends one append's records, opening a stream first if none is open; returns how many.
    async fn send_append(&mut self, base: i64, batches: Bytes) -> Result<usize, StorageError> {
        let records = envelope::split(batches).map_err(|_| StorageError::Corrupt("append of undecodable batches"))?;
        if records.first().map(|r| r.offset) != Some(base) {
            return Err(StorageError::Corrupt("append whose first record is not at its base offset"));
        }
        // Typed records first: widening the topic's RecordType may make the broker drop the
        // partition's open publish streams, so it is best done before one is opened.
        let info = lock(&self.cluster.topics).get(&self.key.topic_id).cloned();
        let messages = match (info, self.cluster.cfg.catalog.as_deref()) {
            (Some(info), Some(catalog)) if info.typed.any() => {
                self.cluster.typed_values(&info, catalog, &records).await?
            }
            _ => records.iter().map(|r| (Bytes::new(), r.encode())).collect(),
        };
        if self.stream.is_none() {
            self.open_stream(base).await?;
        }
        let Some(s) = self.stream.as_ref() else { return Err(StorageError::Unavailable) };
        let ts = now_ns();
        for (key, value) in messages {
            let data = messaging_pb::DataMessage { key, value, ts_ns: ts, ctrl: None };
            let msg =
                messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Data(data)) };
            s.tx.send(msg).await.map_err(|_| StorageError::Unavailable)?;
        }
        Ok(records.len())
    }

    /// Opens a publish stream on the partition's leader, if the partition ends at `base`.
    async fn open_stream(&mut self, base: i64) -> Result<(), StorageError> {
        debug_assert!(self.pending.is_empty());
        let (c, key) = (&self.cluster, self.key);
        let generation = c.persisted.generation();
        // On a fenced partition the append fails as if its outcome were unknown, so that the
        // core asks RecoverPartition, which reports the fence (the core counts the partition
        // as fenced) and succeeds once the broker restarted and kelp repaired the partition.
        c.gate(key, true).await.map_err(|e| match e {
            StorageError::Fenced(_) => StorageError::Unavailable,
            e => e,
        })?;
        let (name, p) = c.place(key, true).await?;
        // Only continue a partition whose end is where kelp thinks it is: after a broken
        // stream the broker may hold records it never acknowledged.
        let (_, hwm) = c.range(&name, &p).await?;
        if hwm != base {
            tracing::error!(
                ?key,
                kelp = base,
                seaweedmq = hwm,
                "seaweedmq: partition end differs from kelp's; kelp re-learns it"
            );
            return Err(StorageError::Unavailable);
        }
        let (tx, rx) = mpsc::channel(PUBLISH_WINDOW);
        let init = publish_message_request::InitMessage {
            topic: Some(c.topic(&name)),
            partition: Some(p.partition),
            ack_interval: 1,
            follower_broker: String::new(),
            publisher_name: format!("kelp-{}", std::process::id()),
        };
        tx.send(messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Init(init)) })
            .await
            .map_err(|_| StorageError::Unavailable)?;
        let mut client = c.broker(&p.leader);
        let resp =
            c.rpc("PublishMessage", client.publish_message(tokio_stream::wrappers::ReceiverStream::new(rx))).await?;
        self.stream = Some(PubStream { tx, resp, hello: false, generation });
        Ok(())
    }
}

/// The next response on `stream`; never ready when no stream is open.
async fn next_response(stream: &mut Option<PubStream>) -> Response {
    match stream {
        Some(s) => s.resp.message().await,
        None => std::future::pending().await,
    }
}
