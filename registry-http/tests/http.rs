//! The server over real loopback sockets: raw bytes for exact framing, hyper's client for
//! keep-alive. The handler is a fake that echoes what reached it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use kelp_registry::{Body, Response};
use kelp_registry_http::{Handler, Job, Limits, OwnedRequest, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Echoes the request as JSON; a few paths behave differently.
async fn echo(req: OwnedRequest) -> Response {
    match req.path.as_str() {
        "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
        "/panic" => panic!("the fake handler panics on purpose"),
        "/schema" => return Response { status: 200, body: Body::Text("\"string\"".into()) },
        _ => {}
    }
    Response::json(200, json!({"method": req.method, "path": req.path, "query": req.query, "len": req.body.len()}))
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(handler: Handler, limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, handler, limits, async move {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop), task }
    }

    async fn echo() -> Self {
        Self::start(Handler::from_fn(echo), Limits::default()).await
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A parsed response from the raw client.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Writes `request` on a fresh connection and reads until the server closes it.
async fn raw(addr: SocketAddr, request: impl AsRef<[u8]>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_ref()).await.unwrap();
    read_reply(&mut stream).await
}

async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes)).await.unwrap().unwrap();
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Reply {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply { status, head, body: bytes[split + 4..].to_vec() }
}

fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").into_bytes()
}

fn post(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn accepted_and_refused_content_types() {
    let server = Server::echo().await;
    for ct in [
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/json; charset=utf-8",
        "application/octet-stream",
    ] {
        let reply = raw(server.addr, &post("/subjects/s/versions", &format!("Content-Type: {ct}\r\n"), "{}")).await;
        assert_eq!(reply.status, 200, "{ct}");
        assert_eq!(reply.json(), json!({"method": "POST", "path": "/subjects/s/versions", "query": "", "len": 2}));
    }
    // No Content-Type reads as JSON.
    let reply = raw(server.addr, &post("/subjects/s/versions", "", "{}")).await;
    assert_eq!(reply.status, 200);

    for ct in ["text/plain", "application/xml", "multipart/form-data; boundary=x"] {
        let reply = raw(server.addr, &post("/subjects/s/versions", &format!("Content-Type: {ct}\r\n"), "{}")).await;
        assert_eq!(reply.status, 415, "{ct}");
        assert_eq!(reply.body, br#"{"error_code":415,"message":"HTTP 415 Unsupported Media Type"}"#);
        assert_eq!(reply.header("content-type"), Some("application/vnd.schemaregistry.v1+json"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn accept_negotiation() {
    let server = Server::echo().await;
    let cases = [
        ("", "application/vnd.schemaregistry.v1+json"),
        ("Accept: */*\r\n", "application/vnd.schemaregistry.v1+json"),
        ("Accept: application/json\r\n", "application/json"),
        ("Accept: application/vnd.schemaregistry+json\r\n", "application/vnd.schemaregistry+json"),
        (
            "Accept: application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5\r\n",
            "application/vnd.schemaregistry.v1+json",
        ),
    ];
    for (accept, expected) in cases {
        let reply = raw(server.addr, &get("/subjects", accept)).await;
        assert_eq!(reply.status, 200, "{accept}");
        assert_eq!(reply.header("content-type"), Some(expected), "{accept}");
    }
    let reply = raw(server.addr, &get("/subjects", "Accept: text/html\r\n")).await;
    assert_eq!(reply.status, 406);
    assert_eq!(reply.json()["error_code"], 406);
    assert_eq!(reply.header("content-type"), Some("application/vnd.schemaregistry.v1+json"));
    server.shutdown().await;
}

#[tokio::test]
async fn raw_schema_text_is_labelled_json() {
    let server = Server::echo().await;
    let reply = raw(server.addr, &get("/schema", "")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"\"string\"");
    assert_eq!(reply.header("content-type"), Some("application/vnd.schemaregistry.v1+json"));
    server.shutdown().await;
}

#[tokio::test]
async fn percent_encoded_path_and_query_arrive_raw() {
    let server = Server::echo().await;
    let reply = raw(server.addr, &get("/subjects/a%2Fb/versions?deleted=true&x=a%20b+c", "")).await;
    assert_eq!(reply.status, 200);
    let echoed = reply.json();
    assert_eq!(echoed["path"], "/subjects/a%2Fb/versions");
    assert_eq!(echoed["query"], "deleted=true&x=a%20b+c");
    server.shutdown().await;
}

fn small_body_limit() -> Limits {
    Limits { max_body: 1024, ..Limits::default() }
}

#[tokio::test]
async fn body_limit_by_content_length() {
    let server = Server::start(Handler::from_fn(echo), small_body_limit()).await;
    // Declared too large: refused before any body byte is sent.
    let head = b"POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n";
    let reply = raw(server.addr, head).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error_code"], 413);
    // At the limit is fine.
    let reply = raw(server.addr, &post("/p", "", &"x".repeat(1024))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["len"], 1024);
    server.shutdown().await;
}

#[tokio::test]
async fn body_limit_by_chunked_body() {
    let server = Server::start(Handler::from_fn(echo), small_body_limit()).await;
    let mut request = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..8 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b'x'; 0x200]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = raw(server.addr, &request).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error_code"], 413);

    // A chunked body under the limit is read whole.
    let request = b"POST /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let reply = raw(server.addr, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["len"], 5);
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let server = Server::echo().await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let driver = tokio::spawn(conn);
    for i in 0..10 {
        let req = hyper::Request::post(format!("/subjects/s{i}/versions?n={i}"))
            .header("host", "x")
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(Full::new(Bytes::from(vec![b'{'; i])))
            .unwrap();
        sender.ready().await.unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let echoed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            echoed,
            json!({"method": "POST", "path": format!("/subjects/s{i}/versions"), "query": format!("n={i}"), "len": i})
        );
    }
    drop(sender);
    driver.await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_at_once() {
    let server = Server::echo().await;
    let started = Instant::now();
    let clients: Vec<_> = (0..64).map(|_| tokio::spawn(raw(server.addr, get("/slow", "")))).collect();
    for client in clients {
        assert_eq!(client.await.unwrap().status, 200);
    }
    // 64 requests of 300 ms each, one after another, would take 19 s.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_request() {
    let server = Server::echo().await;
    let addr = server.addr;
    let in_flight = tokio::spawn(raw(addr, get("/slow", "")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // An idle keep-alive connection must not hold shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["path"], "/slow");
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest).await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn shutdown_cuts_requests_past_the_grace_period() {
    let handler = Handler::from_fn(|_req| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Response::json(200, json!({}))
    });
    let limits = Limits { shutdown_grace: Duration::from_millis(200), ..Limits::default() };
    let server = Server::start(handler, limits).await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck.write_all(&get("/", "")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    // The connection was closed without a response.
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stuck.read_to_end(&mut bytes)).await.unwrap();
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
}

#[tokio::test]
async fn malformed_http_gets_400_and_the_server_lives_on() {
    let server = Server::echo().await;
    for garbage in [
        &b"garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x00\x01\x02\xff\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes)).await.unwrap().unwrap();
        assert!(bytes.starts_with(b"HTTP/1.1 400"), "{garbage:?} got {:?}", String::from_utf8_lossy(&bytes));
    }
    let reply = raw(server.addr, &get("/subjects", "")).await;
    assert_eq!(reply.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn dropped_reply_and_panic_are_500() {
    let (jobs, mut inbox) = mpsc::channel::<Job>(8);
    // The "registry owner": answers /ok, drops the reply slot of anything else.
    tokio::spawn(async move {
        while let Some((req, reply)) = inbox.recv().await {
            if req.as_request().path == "/ok" {
                let _ = reply.send(Response::json(200, json!({"body": String::from_utf8_lossy(&req.body)})));
            }
        }
    });
    let server = Server::start(Handler::channel(jobs), Limits::default()).await;
    let reply = raw(server.addr, &post("/ok", "", "hi")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"body": "hi"}));
    let reply = raw(server.addr, &get("/dropped", "")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error_code"], 50001);
    server.shutdown().await;

    let server = Server::echo().await;
    let reply = raw(server.addr, &get("/panic", "")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error_code"], 50001);
    assert_eq!(raw(server.addr, &get("/", "")).await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn closed_channel_is_500() {
    let (jobs, inbox) = mpsc::channel::<Job>(1);
    drop(inbox);
    let server = Server::start(Handler::channel(jobs), Limits::default()).await;
    let reply = raw(server.addr, &get("/subjects", "")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error_code"], 50001);
    server.shutdown().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        body_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = Server::start(Handler::from_fn(echo), limits).await;

    // Headers that never end: the server closes the connection.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes)).await;
    assert!(read.is_ok(), "the connection stayed open");

    // An idle keep-alive connection is closed once the wait for the next request runs out.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /subjects HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that stops halfway: 408.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde").await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 408);
    assert_eq!(reply.json()["error_code"], 408);
    server.shutdown().await;
}

#[tokio::test]
async fn expect_continue() {
    let server = Server::start(Handler::from_fn(echo), small_body_limit()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = b"POST /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
    stream.write_all(head).await.unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"{}").await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["len"], 2);

    // Too large: refused at once, no 100 Continue, and the body is never asked for.
    let head = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n";
    let reply = raw(server.addr, head).await;
    assert_eq!(reply.status, 413);
    server.shutdown().await;
}
