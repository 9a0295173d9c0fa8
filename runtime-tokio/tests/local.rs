//! In-process connections on the tokio driver: a client talks to the broker through a
//! `LocalConn` taken from the `Control`, without a socket.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::metadata::MetadataRequest;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, Message, Reader, encode_request_frame};
use kelp_core::{Broker, Config};
use kelp_runtime_tokio::{Bound, Control, LocalConn, Options, serve};
use kelp_storage::MemoryStore;
use std::net::TcpListener;
use tokio::sync::oneshot;

const API_VERSIONS_V: i16 = 3;
const METADATA_V: i16 = 12;

fn api_versions(corr: i32) -> Bytes {
    let body = RequestBody::ApiVersions(ApiVersionsRequest {
        client_software_name: "kelp-local-test".into(),
        client_software_version: "1".into(),
        ..Default::default()
    });
    encode_request_frame(&body, API_VERSIONS_V, corr, Some("local"))
}

fn metadata(corr: i32) -> Bytes {
    encode_request_frame(&RequestBody::Metadata(MetadataRequest::default()), METADATA_V, corr, Some("local"))
}

/// Reads from `conn` until `buf` holds a whole response, and decodes it.
async fn response(conn: &mut LocalConn, buf: &mut BytesMut, api: ApiKey, version: i16) -> (i32, ResponseBody) {
    loop {
        if let Some(head) = buf.first_chunk::<4>() {
            let size = usize::try_from(i32::from_be_bytes(*head)).expect("a non-negative size");
            if buf.len() >= 4 + size {
                buf.advance(4);
                let frame = buf.split_to(size).freeze();
                let mut r = Reader::new(&frame);
                let header = ResponseHeader::decode(&mut r, api.response_header_version(version)).expect("header");
                let body = ResponseBody::decode(api, &mut r, version).expect("body");
                assert_eq!(r.remaining(), 0, "trailing bytes");
                return (header.correlation_id, body);
            }
        }
        let chunk = conn.recv().await.expect("the connection is open");
        buf.extend_from_slice(&chunk);
    }
}

/// `kelp_open_connections` from the server's metrics (a blocking query, off the loop's task).
async fn open_connections(control: &Control) -> u64 {
    let c = control.clone();
    let snap = tokio::task::spawn_blocking(move || c.snapshot(true, Duration::from_secs(5)))
        .await
        .expect("query task")
        .expect("the server answers");
    let line = snap.metrics.lines().find(|l| l.starts_with("kelp_open_connections ")).expect("the gauge");
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a number")
}

/// Runs `client` against a server on the memory store configured by `config`, then stops the
/// server and waits for it.
async fn with_server<F, Fut>(config: Config, client: F)
where
    F: FnOnce(Control) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let (tx, rx) = oneshot::channel();
    let server = serve(
        vec![Bound::plaintext(listener, 0)],
        move |now| Broker::new(config, 7, now),
        Box::new(MemoryStore::new()),
        Options { shutdown_grace: Duration::from_secs(2), ..Options::default() },
        move |c| drop(tx.send(c)),
    );
    let client = async move {
        let control = rx.await.expect("the control handle");
        tokio::time::timeout(Duration::from_secs(60), client(control.clone())).await.expect("the client finishes");
        control.stop();
    };
    let (served, ()) = tokio::join!(server, client);
    served.expect("serve returns cleanly");
}

#[tokio::test]
async fn a_local_connection_is_served_and_closed() {
    with_server(Config::default(), |control| async move {
        let mut conn = control.connect_local().expect("a local connection");
        assert!(kelp_driver::is_local(conn.id()));
        // Two requests in one piece, split unevenly: any split of the stream will do.
        let mut both = BytesMut::new();
        both.extend_from_slice(&api_versions(1));
        both.extend_from_slice(&metadata(2));
        let both = both.freeze();
        conn.send(both.slice(..5)).await.expect("send");
        conn.send(both.slice(5..)).await.expect("send");
        let mut buf = BytesMut::new();
        let (corr, body) = response(&mut conn, &mut buf, ApiKey::API_VERSIONS, API_VERSIONS_V).await;
        assert_eq!(corr, 1);
        let ResponseBody::ApiVersions(av) = body else { panic!("not an ApiVersions response: {body:?}") };
        assert_eq!(av.error_code, 0);
        assert!(av.api_keys.iter().any(|k| k.api_key == ApiKey::METADATA.0));
        let (corr, body) = response(&mut conn, &mut buf, ApiKey::METADATA, METADATA_V).await;
        assert_eq!(corr, 2);
        let ResponseBody::Metadata(md) = body else { panic!("not a Metadata response: {body:?}") };
        assert!(!md.brokers.is_empty(), "the broker lists itself");
        assert_eq!(open_connections(&control).await, 1);

        drop(conn);
        let mut open = 1;
        for _ in 0..100 {
            open = open_connections(&control).await;
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(open, 0, "the broker saw the close");
    })
    .await;
}

#[tokio::test]
async fn a_closed_server_ends_the_local_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let (tx, rx) = oneshot::channel();
    let server = serve(
        vec![Bound::plaintext(listener, 0)],
        move |now| Broker::new(Config::default(), 7, now),
        Box::new(MemoryStore::new()),
        Options::default(),
        move |c| drop(tx.send(c)),
    );
    let client = async move {
        let control = rx.await.expect("the control handle");
        let mut conn = control.connect_local().expect("a local connection");
        conn.send(api_versions(1)).await.expect("send");
        let mut buf = BytesMut::new();
        let (corr, _) = response(&mut conn, &mut buf, ApiKey::API_VERSIONS, API_VERSIONS_V).await;
        assert_eq!(corr, 1);
        control.stop();
        assert!(conn.recv().await.is_none(), "the stop closes local connections");
        assert!(conn.send(api_versions(2)).await.is_err());
        assert!(control.connect_local().is_none(), "no new connection once stopping");
    };
    let (served, ()) = tokio::join!(server, client);
    served.expect("serve returns cleanly");
}

#[tokio::test]
async fn a_broker_close_ends_the_local_connection() {
    with_server(Config::default(), |control| async move {
        let mut conn = control.connect_local().expect("a local connection");
        conn.send(api_versions(1)).await.expect("send");
        // A negative frame size: bad framing, which the broker answers by closing.
        conn.send(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).await.expect("send");
        let mut buf = BytesMut::new();
        let (corr, _) = response(&mut conn, &mut buf, ApiKey::API_VERSIONS, API_VERSIONS_V).await;
        assert_eq!(corr, 1, "the response read before the close still arrives");
        assert!(conn.recv().await.is_none(), "then the end");
        assert!(conn.send(api_versions(2)).await.is_err(), "and sending fails");
        assert_eq!(open_connections(&control).await, 0);
    })
    .await;
}

#[tokio::test]
async fn split_halves_pipeline_many_requests_through_pauses() {
    // Few unwritten bytes and few requests in flight: the connection pauses and resumes often.
    let config = Config { max_unwritten_per_conn: 2048, max_in_flight_per_conn: 8, ..Config::default() };
    with_server(config, |control| async move {
        const N: i32 = 2000;
        let conn = control.connect_local().expect("a local connection");
        let (mut writer, mut reader) = conn.split();
        let writing = tokio::spawn(async move {
            let mut stream = BytesMut::new();
            for corr in 0..N {
                stream.extend_from_slice(&if corr % 2 == 0 { api_versions(corr) } else { metadata(corr) });
            }
            let mut stream = stream.freeze();
            // Uneven pieces, cutting through frames.
            let mut step = 1;
            while !stream.is_empty() {
                let piece = stream.split_to(step.min(stream.len()));
                writer.send(piece).await.expect("send");
                step = step % 97 + 13;
            }
            writer
        });
        let mut buf = BytesMut::new();
        let mut responses = 0;
        while responses < N {
            if let Some(head) = buf.first_chunk::<4>() {
                let size = usize::try_from(i32::from_be_bytes(*head)).expect("a size");
                if buf.len() >= 4 + size {
                    let corr = i32::from_be_bytes(*buf[4..].first_chunk::<4>().expect("a correlation id"));
                    assert_eq!(corr, responses, "responses in request order");
                    buf.advance(4 + size);
                    responses += 1;
                    continue;
                }
            }
            buf.extend_from_slice(&reader.recv().await.expect("open"));
        }
        let writer = writing.await.expect("the writer");
        drop(writer);
        assert!(reader.recv().await.is_none(), "closing the writer closes the connection");
    })
    .await;
}

#[tokio::test]
async fn a_local_connection_that_never_reads_is_paused() {
    // A small allowance of unwritten bytes: a few responses fill it.
    let config = Config { max_unwritten_per_conn: 4096, ..Config::default() };
    with_server(config, |control| async move {
        let mut conn = control.connect_local().expect("a local connection");
        let mut sent = 0usize;
        let mut requests = 0;
        // Send without reading until the broker stops taking requests.
        loop {
            let frame = api_versions(requests);
            let len = frame.len();
            match tokio::time::timeout(Duration::from_millis(300), conn.send(frame)).await {
                Ok(r) => r.expect("send"),
                Err(_) => break,
            }
            sent += len;
            requests += 1;
            assert!(sent < 4 * 1024 * 1024, "the server keeps taking requests nobody reads the answers to");
        }
        // What was taken: the inbox, and what the broker read before it paused.
        assert!(sent <= kelp_driver::local::LOCAL_INBOX + 64 * 1024, "{sent} bytes taken");
        // Reading now lets every request through, in order.
        let mut buf = BytesMut::new();
        for want in 0..requests {
            let (corr, _) = response(&mut conn, &mut buf, ApiKey::API_VERSIONS, API_VERSIONS_V).await;
            assert_eq!(corr, want);
        }
        // And the connection takes requests again.
        conn.send(metadata(requests)).await.expect("send");
        let (corr, _) = response(&mut conn, &mut buf, ApiKey::METADATA, METADATA_V).await;
        assert_eq!(corr, requests);
    })
    .await;
}
