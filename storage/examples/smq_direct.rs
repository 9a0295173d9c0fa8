//! The ceiling kelp is measured against: a pipelined client that publishes 100-byte messages
//! straight to the SeaweedMQ broker (one `PublishMessage` stream, acks read concurrently) and
//! reads them back on one `SubscribeMessage` stream. Used by scripts/bench-seaweedmq.sh.
//!
//!   smq_direct BROKER_GRPC_ADDR NAMESPACE TOPIC COUNT
//!
//! Prints `publish <msg/s>`, `subscribe <msg/s>` and how many subscriptions the read took.
//! With `BENCH_PIDS=name=PID,...` and `BENCH_CLK_TCK` (from `getconf CLK_TCK`) set, also each
//! named process's CPU time per record of each phase, and this client's own (`client`):
//! `cpu_ns.<phase>.<name> <ns>`.

use std::time::{Duration, Instant};

use bytes::Bytes;

use kelp_storage::seaweedmq::pb::messaging_pb::{
    self, publish_message_request, seaweed_messaging_client::SeaweedMessagingClient, subscribe_message_request,
    subscribe_message_response,
};
use kelp_storage::seaweedmq::pb::schema_pb;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, broker, ns, name, count] = &args[..] else {
        return Err("usage: smq_direct BROKER NAMESPACE TOPIC COUNT".into());
    };
    let count: i64 = count.parse()?;
    let cpu = Cpu::from_env();
    let ch = Endpoint::from_shared(format!("http://{broker}"))?
        .tcp_nodelay(true)
        .initial_connection_window_size(64 << 20)
        .initial_stream_window_size(32 << 20)
        .connect()
        .await?;
    let mut client = SeaweedMessagingClient::new(ch);
    let topic = schema_pb::Topic { namespace: ns.clone(), name: name.clone() };
    let conf =
        messaging_pb::ConfigureTopicRequest { topic: Some(topic.clone()), partition_count: 1, ..Default::default() };
    let assigned = client.configure_topic(conf).await?.into_inner().broker_partition_assignments;
    let partition = assigned.first().and_then(|a| a.partition).ok_or("no partition")?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (tx, rx) = tokio::sync::mpsc::channel(65536);
    let init = publish_message_request::InitMessage {
        topic: Some(topic.clone()),
        partition: Some(partition),
        ack_interval: 1,
        ..Default::default()
    };
    tx.send(messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Init(init)) })
        .await?;
    let mut acks = client.publish_message(ReceiverStream::new(rx)).await?.into_inner();
    let started = Instant::now();
    let cpu_before = cpu.sample();
    let epoch_ns = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    )
    .unwrap_or(0);
    let sender = tokio::spawn(async move {
        let payload = Bytes::from_static(&[b'x'; 100]);
        for i in 0..count {
            // Real times, as any publisher sends: SeaweedMQ files what it stores by time.
            let ts_ns = epoch_ns + i;
            let data = messaging_pb::DataMessage { key: Bytes::new(), value: payload.clone(), ts_ns, ctrl: None };
            let m = messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Data(data)) };
            if tx.send(m).await.is_err() {
                return;
            }
        }
        // keep the stream open until the subscription is done
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
    let mut last = -1;
    while last < count - 1 {
        let Some(a) = acks.message().await? else { return Err("publish stream ended".into()) };
        if !a.error.is_empty() {
            return Err(a.error.into());
        }
        last = last.max(a.assigned_offset);
    }
    let secs = started.elapsed().as_secs_f64();
    println!("publish {:.0}", count as f64 / secs);
    cpu.report("publish", &cpu_before, count);

    // SeaweedMQ 4.48 can hold back the last message of a subscription until more arrive; a read
    // that stalls re-subscribes at the first missing offset, as kelp's reads do. Stalled time is
    // not counted, so the rate is the broker's best (the ceiling kelp is compared with).
    let stall = Duration::from_secs(2);
    let started = Instant::now();
    let cpu_before = cpu.sample();
    let mut stalled = Duration::ZERO;
    let mut n: i64 = 0;
    let mut subscriptions = 0;
    while n < count {
        subscriptions += 1;
        if subscriptions > 20 {
            return Err(format!("subscription stalled {subscriptions} times, at offset {n}").into());
        }
        let (stx, srx) = tokio::sync::mpsc::channel(4);
        let init = subscribe_message_request::InitMessage {
            consumer_group: format!("direct-{}", std::process::id()),
            consumer_id: format!("direct-{}-{n}", std::process::id()),
            client_id: "direct".into(),
            topic: Some(topic.clone()),
            partition_offset: Some(schema_pb::PartitionOffset {
                partition: Some(partition),
                start_ts_ns: 0,
                start_offset: n,
            }),
            offset_type: schema_pb::OffsetType::ExactOffset as i32,
            sliding_window_size: 1024,
            ..Default::default()
        };
        stx.send(messaging_pb::SubscribeMessageRequest {
            message: Some(subscribe_message_request::Message::Init(init)),
        })
        .await?;
        let mut msgs = client.subscribe_message(ReceiverStream::new(srx)).await?.into_inner();
        while n < count {
            let Ok(m) = tokio::time::timeout(stall, msgs.message()).await else {
                stalled += stall;
                break;
            };
            let Some(m) = m? else { return Err("subscribe stream ended".into()) };
            if let Some(subscribe_message_response::Message::Data(_)) = m.message {
                n += 1;
            }
        }
        drop(stx);
    }
    let secs = started.elapsed().saturating_sub(stalled).as_secs_f64();
    println!("subscribe {:.0}", count as f64 / secs);
    println!("subscriptions {subscriptions}");
    cpu.report("subscribe", &cpu_before, count);
    // The publish stream stays open until here: when a partition's last publisher leaves, the
    // broker may unload the partition under a subscriber that is just starting.
    sender.abort();
    Ok(())
}

/// Named processes whose CPU time is reported per record (`BENCH_PIDS`).
struct Cpu {
    pids: Vec<(String, u32)>,
    ticks_per_s: f64,
}

impl Cpu {
    fn from_env() -> Self {
        let pids = std::env::var("BENCH_PIDS").unwrap_or_default();
        let pids = pids
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(name, pid)| Some((name.to_string(), pid.parse().ok()?)))
            .chain(std::iter::once(("client".to_string(), std::process::id())))
            .collect::<Vec<_>>();
        let ticks_per_s = std::env::var("BENCH_CLK_TCK").ok().and_then(|t| t.parse().ok()).unwrap_or(100.0);
        Cpu { pids, ticks_per_s }
    }

    /// Each process's CPU seconds so far (user + system; `None` if it cannot be read).
    fn sample(&self) -> Vec<Option<f64>> {
        self.pids
            .iter()
            .map(|(_, pid)| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
                Some(ticks / self.ticks_per_s)
            })
            .collect()
    }

    fn report(&self, phase: &str, before: &[Option<f64>], records: i64) {
        for (((name, _), b), a) in self.pids.iter().zip(before).zip(self.sample()) {
            if let (Some(b), Some(a)) = (b, a) {
                println!("cpu_ns.{phase}.{name} {:.0}", (a - b) * 1e9 / records as f64);
            }
        }
    }
}
