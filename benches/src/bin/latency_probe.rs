//! Produce latency at a fixed rate, open loop, from a lean client: how long a record waits
//! between the moment it is due and its acknowledgement, with the client's own cost kept small
//! enough that it is not what is measured.
//!
//! ```text
//! latency_probe ADDR TOPIC RATE SECONDS [ACKS] [WARMUP_SECONDS] [MAX_IN_FLIGHT]
//! ```
//!
//! Records of 100 bytes fall due at RATE per second on a fixed schedule (not when the previous
//! one was answered, so a slow answer delays every record behind it and is counted for each).
//! Like a Kafka producer with `linger.ms=0`, `batch.size=16384` and
//! `max.in.flight.requests.per.connection` MAX_IN_FLIGHT (default 5), the sender puts whatever
//! has fallen due into one Produce request for partition 0 as soon as fewer than MAX_IN_FLIGHT
//! requests are waiting. A record's latency is the time from when it fell due to when the
//! response to its request was read. Records due in the first WARMUP_SECONDS (default 5) are
//! not counted. A response with an error ends the run with a non-zero exit. One thread does
//! everything and never blocks (it keeps its core busy), so an answer is seen as soon as it
//! arrives.
//!
//! It prints one line, in the Java probe's format (scripts/bench/LatencyProbe.java):
//! `requested= achieved= records= producers=1 acks= p50_us= p99_us= p999_us= max_us= failed=0 sustained=`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, Message, Reader, encode_request_frame};
use kelp_core::records::{Compression, RecordBatchBuilder};

const RECORD: usize = 100;
/// Records per request at most: what fits Kafka's default `batch.size` of 16384 bytes.
const MAX_BATCH: u64 = 16384 / (RECORD as u64 + 10);
/// Microsecond buckets up to 1 s; slower records go to the last one.
const BUCKETS: usize = 1_000_000;

/// One request on the wire: records `first..first + count` of the schedule.
struct Sent {
    first: u64,
    count: u64,
}

fn usage() -> ExitCode {
    eprintln!("usage: latency_probe ADDR TOPIC RATE SECONDS [ACKS] [WARMUP_SECONDS] [MAX_IN_FLIGHT]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return usage();
    }
    let parsed = (
        args[2].parse::<u64>(),
        args[3].parse::<u64>(),
        args.get(4).map_or(Ok(1), |s| s.parse::<i16>()),
        args.get(5).map_or(Ok(5), |s| s.parse::<u64>()),
        args.get(6).map_or(Ok(5), |s| s.parse::<usize>()),
    );
    let (Ok(rate), Ok(seconds), Ok(acks), Ok(warmup), Ok(max_in_flight)) = parsed else {
        return usage();
    };
    if rate == 0 || seconds <= warmup || max_in_flight == 0 {
        return usage();
    }
    match run(&args[0], &args[1], rate, seconds, acks, warmup, max_in_flight) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency_probe: {e}");
            ExitCode::from(1)
        }
    }
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Bytes> {
    let mut size = [0u8; 4];
    r.read_exact(&mut size)?;
    let len = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|&n| n <= 64 << 20)
        .ok_or_else(|| std::io::Error::other("a response frame of a bad size"))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

fn decode(frame: &Bytes, api: ApiKey, version: i16) -> std::io::Result<(i32, ResponseBody)> {
    let mut r = Reader::new(frame);
    let header = ResponseHeader::decode(&mut r, api.response_header_version(version)).map_err(std::io::Error::other)?;
    let body = ResponseBody::decode(api, &mut r, version).map_err(std::io::Error::other)?;
    Ok((header.correlation_id, body))
}

/// The highest Produce version both sides speak (at most 9, at least 3: record batches).
fn produce_version(stream: &mut TcpStream) -> std::io::Result<i16> {
    let req = RequestBody::ApiVersions(ApiVersionsRequest::default());
    stream.write_all(&encode_request_frame(&req, 0, 0, Some("latency_probe")))?;
    let frame = read_frame(stream)?;
    let (_, body) = decode(&frame, ApiKey::API_VERSIONS, 0)?;
    let ResponseBody::ApiVersions(v) = body else {
        return Err(std::io::Error::other("not an ApiVersions response"));
    };
    let max = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::PRODUCE.0)
        .map(|k| k.max_version.min(9))
        .ok_or_else(|| std::io::Error::other("the broker does not list Produce"))?;
    if max < 3 {
        return Err(std::io::Error::other("the broker's Produce is older than v3"));
    }
    Ok(max)
}

fn run(
    addr: &str,
    topic: &str,
    rate: u64,
    seconds: u64,
    acks: i16,
    warmup: u64,
    max_in_flight: usize,
) -> std::io::Result<()> {
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let version = produce_version(&mut stream)?;
    let total = rate * seconds;
    let counted_from = rate * warmup;
    // One thread that never blocks: it reads answers as they come and sends what has fallen
    // due, spinning in between. With a sending and a reading thread on one core, the reader
    // could wait for the sender's time slice (milliseconds) before it saw an answer.
    stream.set_nonblocking(true)?;
    let start = Instant::now() + Duration::from_millis(20);
    let due_at = move |i: u64| start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate);
    // A server that stops answering ends the run instead of hanging it.
    let give_up = start + Duration::from_secs(seconds + 60);

    let mut hist = vec![0u64; BUCKETS];
    let mut acked = 0u64;
    let mut last = start;
    let mut waiting: VecDeque<Sent> = VecDeque::with_capacity(max_in_flight);
    let mut input: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    let mut output: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut written = 0usize;
    let value = vec![b'x'; RECORD];
    let mut next = 0u64;
    let mut corr = 1i32;
    while next < total || !waiting.is_empty() {
        // Answers.
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::Error::other("the server closed the connection")),
                Ok(n) => input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        let mut at = 0;
        while input.len() - at >= 4 {
            let size = i32::from_be_bytes([input[at], input[at + 1], input[at + 2], input[at + 3]]);
            let len = usize::try_from(size)
                .ok()
                .filter(|&n| n <= 64 << 20)
                .ok_or_else(|| std::io::Error::other("a response frame of a bad size"))?;
            if input.len() - at - 4 < len {
                break;
            }
            let frame = Bytes::copy_from_slice(&input[at + 4..at + 4 + len]);
            at += 4 + len;
            let (_, body) = decode(&frame, ApiKey::PRODUCE, version)?;
            let ResponseBody::Produce(resp) = body else {
                return Err(std::io::Error::other("not a Produce response"));
            };
            for p in resp.responses.iter().flat_map(|t| &t.partition_responses) {
                if p.error_code != 0 {
                    return Err(std::io::Error::other(format!("Produce answered error code {}", p.error_code)));
                }
            }
            let sent = waiting.pop_front().ok_or_else(|| std::io::Error::other("an answer to no request"))?;
            for i in sent.first.max(counted_from)..sent.first + sent.count {
                let us = now.saturating_duration_since(due_at(i)).as_micros();
                hist[usize::try_from(us).unwrap_or(BUCKETS - 1).min(BUCKETS - 1)] += 1;
            }
            acked += sent.count;
            last = now;
        }
        input.drain(..at);
        if now > give_up {
            return Err(std::io::Error::other("no answer for 60 s past the schedule's end"));
        }
        // What has fallen due, while fewer than `max_in_flight` requests wait.
        let due_now = u64::try_from(now.saturating_duration_since(start).as_nanos() * u128::from(rate) / 1_000_000_000)
            .unwrap_or(u64::MAX)
            .saturating_add(u64::from(now >= start))
            .min(total);
        if due_now > next && waiting.len() < max_in_flight {
            let count = (due_now - next).min(MAX_BATCH);
            let wall_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
            let mut b = RecordBatchBuilder::new(Compression::None).producer(-1, -1, -1);
            for _ in 0..count {
                b.append(wall_ms, None, Some(&value), &[]).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            }
            let batch = b.build().map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            let req = RequestBody::Produce(ProduceRequest {
                acks,
                timeout_ms: 30_000,
                topic_data: vec![TopicProduceData {
                    name: topic.into(),
                    partition_data: vec![PartitionProduceData { index: 0, records: Some(batch), ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            });
            output.extend_from_slice(&encode_request_frame(&req, version, corr, Some("latency_probe")));
            waiting.push_back(Sent { first: next, count });
            corr = corr.wrapping_add(1);
            next += count;
        }
        // Requests, as far as the socket takes them.
        while written < output.len() {
            match stream.write(&output[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if written == output.len() {
            output.clear();
            written = 0;
        }
        std::hint::spin_loop();
    }

    let counted: u64 = hist.iter().sum();
    let pct = |q: f64| -> usize {
        let want = ((counted as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (us, n) in hist.iter().enumerate() {
            seen += n;
            if seen >= want {
                return us;
            }
        }
        BUCKETS - 1
    };
    let max = hist.iter().rposition(|&n| n > 0).unwrap_or(0);
    let elapsed = last.saturating_duration_since(start).as_secs_f64().max(1e-9);
    let achieved = acked as f64 / elapsed;
    // Held the rate: everything acknowledged within 2% of the schedule's length.
    let sustained = acked == total && achieved >= 0.98 * rate as f64;
    println!(
        "requested={rate} achieved={achieved:.0} records={counted} producers=1 acks={acks} p50_us={} p99_us={} p999_us={} max_us={max} failed=0 sustained={} produce_version={version}",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        if sustained { "yes" } else { "no" },
    );
    Ok(())
}
