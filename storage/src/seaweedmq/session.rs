//! Read sessions: SeaweedMQ subscriptions at an exact offset, and the pool that keeps them open
//! between reads so that a consumer reading on from where it stopped does not subscribe again.
//!
//! Each session has a task pumping its subscription's messages into a bounded channel (the
//! read-ahead) and a connection of its own (see [`Cluster::subscriber`]). Dropping a session
//! ends its task and its subscription.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashMap;
use kelp_core::codec::Uuid;
use kelp_core::io::{PartitionKey, StorageError};
use tokio::sync::mpsc;

use super::cluster::{Cluster, lock, now_ns, unavailable};
use super::envelope::Envelope;
use super::pb::messaging_pb::{self, subscribe_message_request, subscribe_message_response};
use super::pb::schema_pb;

/// Messages buffered ahead per read session.
const READ_AHEAD: usize = 32768;
/// Read sessions kept per partition.
const SESSIONS_PER_PARTITION: usize = 8;
/// How long a new subscription may take to deliver its first message before it is replaced.
const FIRST_MESSAGE: Duration = Duration::from_secs(5);
/// Messages the broker may send a subscription ahead of its acknowledgements.
const SLIDING_WINDOW: i32 = 1024;

/// What the subscription task hands a read: a message value, or why the subscription ended.
type Delivery = Result<Bytes, StorageError>;

/// An open subscription positioned at `next`.
pub(super) struct Session {
    /// The offset the next read from this session starts at.
    pub(super) next: i64,
    /// A record past the end of the read that took it off the subscription (the offsets
    /// before it hold nothing), for the next read.
    pub(super) held: Option<Envelope>,
    /// Whether the subscription has delivered anything yet. A new one may need seconds before
    /// its first message (SeaweedMQ reads what it flushed back from the filer); one that
    /// delivered and then went quiet below the end is the stall reads work around.
    delivered: bool,
    rx: mpsc::Receiver<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the session has to offer a read right now, without waiting.
pub(super) enum Ready {
    /// A message value.
    Value(Bytes),
    /// The subscription ended or failed.
    Ended(StorageError),
    /// Nothing yet.
    Empty,
}

impl Session {
    /// Takes what the session already read ahead, without arming a timer.
    pub(super) fn try_next(&mut self) -> Ready {
        match self.rx.try_recv() {
            Ok(item) => self.accept(Some(item)),
            Err(mpsc::error::TryRecvError::Disconnected) => self.accept(None),
            Err(mpsc::error::TryRecvError::Empty) => Ready::Empty,
        }
    }

    /// Waits up to `wait` for the next message; [`Ready::Empty`] if none came in time.
    pub(super) async fn next_within(&mut self, wait: Duration) -> Ready {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(item) => self.accept(item),
            Err(_) => Ready::Empty,
        }
    }

    /// How long to wait for a message before replacing the subscription, given the wait
    /// (`stall`) for one that has delivered before: a new subscription gets at least
    /// [`FIRST_MESSAGE`], since its first message may have to be read back from the filer.
    pub(super) fn patience(&self, stall: Duration) -> Duration {
        if self.delivered { stall } else { FIRST_MESSAGE.max(stall) }
    }

    fn accept(&mut self, item: Option<Delivery>) -> Ready {
        match item {
            Some(Ok(v)) => {
                self.delivered = true;
                Ready::Value(v)
            }
            Some(Err(e)) => Ready::Ended(e),
            None => Ready::Ended(StorageError::Unavailable),
        }
    }
}

/// The read sessions kept open between reads, at most [`SESSIONS_PER_PARTITION`] per
/// partition (the oldest goes first).
#[derive(Default)]
pub(super) struct SessionPool {
    sessions: Mutex<HashMap<PartitionKey, Vec<Session>>>,
}

impl SessionPool {
    /// Takes out a session of `key` positioned at `offset`, if one is kept.
    pub(super) fn take(&self, key: PartitionKey, offset: i64) -> Option<Session> {
        let mut sessions = lock(&self.sessions);
        let v = sessions.get_mut(&key)?;
        let i = v.iter().position(|s| s.next == offset)?;
        Some(v.swap_remove(i))
    }

    /// Keeps `s` for a later read of `key`.
    pub(super) fn put(&self, key: PartitionKey, s: Session) {
        let mut sessions = lock(&self.sessions);
        let v = sessions.entry(key).or_default();
        if v.len() >= SESSIONS_PER_PARTITION {
            v.remove(0);
        }
        v.push(s);
    }

    /// Closes every session of topic `id`.
    pub(super) fn forget_topic(&self, id: Uuid) {
        lock(&self.sessions).retain(|k, _| k.topic_id != id);
    }
}

impl Cluster {
    /// Subscribes to partition `key` at exactly `offset`.
    pub(super) async fn open_session(&self, key: PartitionKey, offset: i64) -> Result<Session, StorageError> {
        self.gate(key, false).await?;
        let (name, p) = self.place(key, false).await?;
        let (req_tx, req_rx) = mpsc::channel::<messaging_pb::SubscribeMessageRequest>(4);
        let init = subscribe_message_request::InitMessage {
            consumer_group: format!("kelp-{}", std::process::id()),
            consumer_id: format!("kelp-{}-{offset}", now_ns()),
            client_id: "kelp".into(),
            topic: Some(self.topic(&name)),
            partition_offset: Some(schema_pb::PartitionOffset {
                partition: Some(p.partition),
                start_ts_ns: 0,
                start_offset: offset,
            }),
            offset_type: schema_pb::OffsetType::ExactOffset as i32,
            sliding_window_size: SLIDING_WINDOW,
            ..Default::default()
        };
        let first =
            messaging_pb::SubscribeMessageRequest { message: Some(subscribe_message_request::Message::Init(init)) };
        req_tx.send(first).await.map_err(|_| StorageError::Unavailable)?;
        let mut client = Self::subscriber(&p.leader);
        let stream = tokio_stream::wrappers::ReceiverStream::new(req_rx);
        let resp = self.rpc("SubscribeMessage", client.subscribe_message(stream)).await?;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(async move {
            // The request stream and the subscription's own connection live as long as it.
            let _keep_open = (req_tx, client);
            pump(resp, tx).await;
        });
        Ok(Session { next: offset, held: None, delivered: false, rx, task })
    }
}

/// Moves a subscription's messages into `tx` until the subscription ends (that is sent too)
/// or the session is dropped.
async fn pump(mut resp: tonic::Streaming<messaging_pb::SubscribeMessageResponse>, tx: mpsc::Sender<Delivery>) {
    loop {
        let item = match resp.message().await {
            Ok(Some(m)) => match delivery(m) {
                Some(item) => item,
                None => continue,
            },
            Ok(None) => Err(StorageError::Unavailable),
            Err(s) => Err(unavailable("SubscribeMessage")(s)),
        };
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// What one subscription response means for a read: a message value, the end of the
/// subscription, or (`None`) nothing (a control message that reports no error).
fn delivery(m: messaging_pb::SubscribeMessageResponse) -> Option<Delivery> {
    match m.message? {
        subscribe_message_response::Message::Data(d) => Some(Ok(d.value)),
        subscribe_message_response::Message::Ctrl(c) if c.error.is_empty() && !c.is_end_of_stream => None,
        subscribe_message_response::Message::Ctrl(c) => {
            tracing::warn!(error = %c.error, end = c.is_end_of_stream, "seaweedmq: subscription ended");
            Some(Err(StorageError::Unavailable))
        }
    }
}
