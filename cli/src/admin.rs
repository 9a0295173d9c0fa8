//! The admin HTTP endpoint: `GET /health` and `GET /metrics` (Prometheus text format 0.0.4).
//!
//! A small HTTP/1.1 responder on its own thread, one connection at a time (scrapes are rare
//! and small): it reads one request head (bounded, with a timeout), answers it and closes the
//! connection. It asks the runtime's broker loop for its state through a [`Probe`]; before the
//! loop runs (the store is recovering) and after it has stopped, the answer is 503.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Asks the broker loop for (serving, metrics text); `None` when it does not answer.
pub type Probe = Arc<dyn Fn(bool) -> Option<(bool, String)> + Send + Sync>;

/// Where the admin thread finds the probe once the broker loop runs.
pub type ProbeSlot = Arc<Mutex<Option<Probe>>>;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request, and the broker loop to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin endpoint on `listener` from a new thread, for the life of the process.
pub fn spawn(listener: TcpListener, slot: ProbeSlot) -> std::io::Result<()> {
    std::thread::Builder::new().name("kelp-admin".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    if let Err(e) = handle(s, &slot) {
                        tracing::debug!(error = %e, "admin request failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "admin accept failed"),
            }
        }
    })?;
    Ok(())
}

fn probe(slot: &ProbeSlot, metrics: bool) -> Option<(bool, String)> {
    let p = slot.lock().ok()?.clone()?;
    p(metrics)
}

fn handle(mut s: TcpStream, slot: &ProbeSlot) -> std::io::Result<()> {
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(&mut s, "431 Request Header Fields Too Large", "text/plain", "request head too large\n");
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return respond(&mut s, "405 Method Not Allowed", "text/plain", "only GET\n");
    }
    match path {
        "/health" => match probe(slot, false) {
            Some((true, _)) => respond(&mut s, "200 OK", "text/plain", "serving\n"),
            Some((false, _)) => {
                respond(&mut s, "503 Service Unavailable", "text/plain", "not serving: starting or stopping\n")
            }
            None => respond(&mut s, "503 Service Unavailable", "text/plain", "not serving: starting or stopped\n"),
        },
        "/metrics" => match probe(slot, true) {
            Some((_, text)) => respond(&mut s, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &text),
            None => respond(&mut s, "503 Service Unavailable", "text/plain", "the broker is not running\n"),
        },
        _ => respond(&mut s, "404 Not Found", "text/plain", "try /health or /metrics\n"),
    }
}

fn respond(s: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}
