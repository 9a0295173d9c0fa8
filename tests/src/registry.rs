//! kelp's schema registry in end-to-end tests: kelp started with it, plain HTTP/1.1 to it, and
//! client programs that report what they saw as one JSON line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::clients::{Client, Json, Scratch, run_client};
use crate::server::{KelpServer, free_port};

/// A loopback address on a free port, for `--schema-registry-listen`.
#[must_use]
pub fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().expect("address")
}

/// One request, on a connection of its own; the status and the body.
///
/// # Errors
/// The connection, or reading the answer, failed.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// The request's answer, which must have `status` (callers that only check the status drop it).
pub fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, status: u16) -> String {
    let (got, text) = http(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(got, status, "{method} {path} {body:?}: {text}");
    text
}

/// Waits until the registry answers `GET /subjects` with 200 (it serves once it has read
/// `_schemas`).
pub fn wait_ready(addr: SocketAddr, server: &KelpServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if matches!(http(addr, "GET", "/subjects", None), Ok((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the schema registry on {addr} did not come up; kelp's log:\n{}", server.log_tail());
}

/// `kelp serve` (memory store) with `extra` arguments and its registry on a port of its own,
/// once the registry answers.
#[must_use]
pub fn start_with_registry(extra: &[&str]) -> (KelpServer, SocketAddr) {
    let registry = free_addr();
    let listen = registry.to_string();
    let mut args = vec!["--schema-registry-listen", listen.as_str()];
    args.extend_from_slice(extra);
    let server = KelpServer::start(&args);
    wait_ready(registry, &server);
    (server, registry)
}

/// Runs `client` with `args` in a scratch directory named `scratch`, within `limit`; the JSON
/// line it printed last. Fails the test, with the client's output and kelp's log, when the
/// client does not succeed or prints no JSON.
#[must_use]
pub fn run_json(client: &Client, server: &KelpServer, scratch: &str, args: &[String], limit: Duration) -> Json {
    let scratch = Scratch::new(scratch);
    let out = run_client(&scratch, client.command(args), limit);
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{} failed after {:?} (status {:?}): {}\n{}\nkelp's log:\n{}",
        client.name,
        out.elapsed,
        out.status,
        out.stdout,
        out.stderr,
        server.log_tail()
    );
    let line = out.stdout.lines().last().unwrap_or("");
    Json::parse(line).unwrap_or_else(|| panic!("{} printed no JSON line: {}\n{}", client.name, out.stdout, out.stderr))
}
