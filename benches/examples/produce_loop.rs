//! A fixed loop of acks=-1 ProduceRequests (1 partition, 100 records of 100 bytes) through the
//! sans-IO broker and the MemStore, for instruction counts with callgrind
//! (`valgrind --tool=callgrind target/release/examples/produce_loop [requests]`), where the
//! broker bench's timing is too noisy on a shared machine to rank small differences.

use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::mem_store::MemStore;
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::{Broker, Config, ConnId, Input, Instant, Now, Output};

fn pump(broker: &mut Broker, store: &mut MemStore, now: Now) -> usize {
    let mut sent = 0;
    loop {
        let mut done = Vec::new();
        while let Some(out) = broker.poll_output() {
            match out {
                Output::Send { conn, bytes } => {
                    let n = bytes.iter().map(Bytes::len).sum::<usize>();
                    sent += n;
                    broker.handle_input(now, Input::Written { conn, bytes: n });
                }
                Output::Storage { cmd, command } => done.push((cmd, store.execute(command))),
                Output::Close { reason, .. } => panic!("closed: {reason:?}"),
                Output::PauseRead { .. } | Output::ResumeRead { .. } => {}
            }
        }
        if done.is_empty() {
            return sent;
        }
        for (cmd, result) in done {
            broker.handle_input(now, Input::Completed { cmd, result });
        }
    }
}

fn main() {
    let requests: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
    let mut broker = Broker::new(Config::default(), 1, now);
    let mut store = MemStore::new();
    pump(&mut broker, &mut store, now);
    let conn = ConnId(1);
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal");
    broker.handle_input(now, Input::Accepted { conn, peer, origin: Default::default() });
    let create = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "bench".into(),
            num_partitions: 1,
            replication_factor: 1,
            ..Default::default()
        }],
        ..Default::default()
    });
    let frame = kelp_core::codec::encode_request_frame(&create, 7, 0, Some("bench"));
    broker.handle_input(now, Input::Received { conn, bytes: &frame });
    pump(&mut broker, &mut store, now);
    let value = vec![b'x'; 100];
    let mut b = RecordBatchBuilder::new(Compression::None).producer(-1, -1, -1);
    for i in 0..100 {
        b.append(1_700_000_000_000 + i, None, Some(&value), &[]).expect("builds");
    }
    let batch = b.build().expect("builds");
    let req = RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench".into(),
            partition_data: vec![PartitionProduceData { index: 0, records: Some(batch), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let frame = kelp_core::codec::encode_request_frame(&req, 11, 1, Some("bench"));
    for _ in 0..requests {
        broker.handle_input(now, Input::Received { conn, bytes: black_box(&frame) });
        assert!(pump(&mut broker, &mut store, now) > 0);
    }
}
