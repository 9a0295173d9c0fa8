//! Hostile clients against the real `kelp` binary on loopback: garbage, truncated frames,
//! oversized size prefixes, unknown API keys, and a client that pipelines fetches and never
//! reads the answers. Each gets a clean close or is held back; kelp's memory stays bounded and
//! every other connection keeps being served.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use kelp_core::codec::generated::fetch::{FetchPartition, FetchRequest, FetchTopic};
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_tests::expect_body;
use kelp_tests::harness::Harness;
use kelp_tests::raw::RawClient;
use kelp_tests::server::KelpServer;

fn connect(server: &KelpServer) -> TcpStream {
    let s = TcpStream::connect(server.addr).expect("connect to kelp");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s
}

/// A request/response client on a fresh connection.
fn client(server: &KelpServer) -> RawClient {
    RawClient::connect(server.addr).expect("connect to kelp")
}

/// The server answers ApiVersions on a fresh connection.
fn healthy(server: &KelpServer) {
    let mut s = client(server);
    let req = ApiVersionsRequest {
        client_software_name: "kelp-e2e".into(),
        client_software_version: "1.0".into(),
        ..Default::default()
    };
    let resp = expect_body!(s.call(RequestBody::ApiVersions(req), 3).expect("answer"), ApiVersions);
    assert_eq!(resp.error_code, 0);
    assert!(!resp.api_keys.is_empty());
}

/// Waits until the server closes `s` (read returns 0 or a reset), within 10 s.
fn assert_closed(s: &mut TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("unexpected read error {e}"),
        }
    }
    panic!("the server did not close the connection");
}

#[test]
fn garbage_truncation_oversize_and_unknown_keys_close_only_their_connection() {
    let server = KelpServer::start(&[]);
    let bystander_before = connect(&server);

    let mut garbage = connect(&server);
    garbage.write_all(&[0, 0, 0, 12, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]).expect("send");
    assert_closed(&mut garbage);

    let rss_before = server.rss_kib();
    let mut huge = connect(&server);
    huge.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0]).expect("send");
    assert_closed(&mut huge);
    let rss_after = server.rss_kib();
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        assert!(b < a + 16 * 1024, "a 2 GiB size prefix grew kelp from {a} KiB to {b} KiB");
    }

    let mut negative = connect(&server);
    negative.write_all(&[0xff, 0xff, 0xff, 0xf0]).expect("send");
    assert_closed(&mut negative);

    // An unknown API key in a well-formed frame.
    let mut unknown = connect(&server);
    unknown.write_all(&[0, 0, 0, 10, 0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff]).expect("send");
    assert_closed(&mut unknown);

    // Half a frame, then the client goes away.
    let mut half = connect(&server);
    let frame = Harness::frame(&RequestBody::ApiVersions(ApiVersionsRequest::default()), 3, 1);
    half.write_all(&frame[..frame.len() / 2]).expect("send");
    drop(half);

    drop(bystander_before);
    healthy(&server);
}

fn batch_of(bytes: usize) -> Bytes {
    let value = vec![b'v'; 1000];
    let mut b = RecordBatchBuilder::new(Compression::None);
    for _ in 0..bytes / 1000 {
        b.append(1_700_000_000_000, None, Some(&value), &[]).expect("builds");
    }
    b.build().expect("builds")
}

#[test]
fn a_client_that_never_reads_cannot_grow_kelps_memory() {
    let server = KelpServer::start(&[]);
    let mut admin = client(&server);
    let create = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "big".into(),
            num_partitions: 1,
            replication_factor: 1,
            ..Default::default()
        }],
        ..Default::default()
    });
    expect_body!(admin.call(create, 7).expect("answer"), CreateTopics);
    // 3.6 MB of records, in batches just under the default max.message.bytes.
    for _ in 0..4 {
        let produce = RequestBody::Produce(ProduceRequest {
            acks: -1,
            timeout_ms: 10_000,
            topic_data: vec![TopicProduceData {
                name: "big".into(),
                partition_data: vec![PartitionProduceData {
                    index: 0,
                    records: Some(batch_of(900_000)),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let resp = expect_body!(admin.call(produce, 11).expect("answer"), Produce);
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let baseline = server.rss_kib().unwrap_or(0);

    // Each fetch asks for all of it; the client pipelines them and never reads an answer.
    let fetch = RequestBody::Fetch(FetchRequest {
        replica_id: -1,
        max_bytes: 8 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: "big".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                partition_max_bytes: 8 << 20,
                current_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let frame = Harness::frame(&fetch, 12, 1);
    let mut many = BytesMut::new();
    for _ in 0..100 {
        many.extend_from_slice(&frame);
    }
    let mut slow = connect(&server);
    slow.set_write_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let mut sent_requests = 0;
    // 2000 requests would be 7 GB of answers: kelp must stop reading long before.
    for _ in 0..20 {
        match slow.write_all(&many) {
            Ok(()) => sent_requests += 100,
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = server.rss_kib().unwrap_or(0);
    println!("slow reader: ~{sent_requests} fetches written, kelp RSS {baseline} KiB -> {peak} KiB");
    assert!(peak < baseline + 64 * 1024, "kelp grew from {baseline} KiB to {peak} KiB for a client that never reads");
    // Everyone else is still served.
    healthy(&server);
    let mut other = client(&server);
    let resp = expect_body!(other.call(fetch.clone(), 12).expect("answer"), Fetch);
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 4 * 900);
    drop(slow);
    std::thread::sleep(Duration::from_millis(200));
    healthy(&server);
}
