//! kelp as a server: configuration (file, environment, flags, their precedence and their
//! errors), the admin endpoint (`/health`, `/metrics` after real traffic) and graceful stop
//! (requests in flight answered, acknowledged data there after a restart, a second signal
//! exits at once). Every test runs the real binary; those about serving run both runtimes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kelp_core::codec::ApiKey;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_topics::{CreatableTopic, CreateTopicsRequest};
use kelp_core::codec::generated::metadata::{MetadataRequest, MetadataRequestTopic};
use kelp_core::codec::generated::offset_commit::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kelp_tests::expect_body;
use kelp_tests::harness::{batch, fetch_request, produce_request, record_values};
use kelp_tests::raw::RawClient;
use kelp_tests::server::{KelpServer, free_port, kelp_bin};

const RUNTIMES: [&str; 2] = ["tokio", "mio"];

/// `kelp serve` with `args` and `env` (no other KELP_* variable), expected to refuse to start:
/// its exit code and stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(kelp_bin());
    cmd.arg("serve").args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KELP_") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kelp");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for kelp") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kelp serve {args:?} {env:?} started instead of refusing its configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr text");
    (status.code(), err)
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kelp-ops-{}-{name}", std::process::id()))
}

type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn a_bad_configuration_exits_2_with_one_line_naming_the_key() {
    let file = temp("bad.toml");
    let not_a_dir = temp("plain-file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let below_file = not_a_dir.join("data");
    let below_file = below_file.to_str().expect("utf8");
    let file_s = file.to_str().expect("utf8");
    // (config file contents, flags, environment, what the message must say)
    let cases: Vec<Case<'_>> = vec![
        ("", vec!["--listen", "nowhere"], vec![], "--listen"),
        ("", vec![], vec![("KELP_MAX_REQUEST_SIZE", "lots")], "KELP_MAX_REQUEST_SIZE"),
        ("", vec!["--admin-listen", "127.0.0.1:http"], vec![], "--admin-listen"),
        ("listen-addr = \"127.0.0.1:1\"\n", vec!["--config", file_s], vec![], "unknown key `listen-addr`"),
        ("fsync = \"sometimes\"\n", vec![], vec![("KELP_CONFIG", file_s)], "`fsync` in"),
        ("node-id = \n", vec!["--config", file_s], vec![], "line 1"),
        ("", vec!["--storage", "disk", "--data-dir", below_file], vec![], "--data-dir: the data directory"),
        ("", vec!["--config", "/nonexistent/kelp.toml"], vec![], "cannot read the config file"),
        ("", vec!["--runtime", "uring"], vec![], "expected one of tokio, mio"),
        ("", vec!["--no-such-flag"], vec![], "--no-such-flag"),
    ];
    for (contents, args, env, expect) in cases {
        std::fs::write(&file, contents).expect("write config");
        let (code, err) = refused(&args, &env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: exit code; stderr: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?} {env:?}: one line expected: {err}");
        assert!(err.contains(expect), "{args:?} {env:?}: {err:?} should mention {expect:?}");
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&not_a_dir);
}

#[test]
fn flags_beat_environment_beat_file() {
    let file = temp("precedence.toml");
    std::fs::write(&file, "node-id = 5\ndefault-partitions = 3\nauto-create-topics = false\n").expect("write");
    let file_s = file.to_str().expect("utf8");
    let server = KelpServer::start_with_env(
        &["--config", file_s, "--node-id", "7"],
        &[("KELP_NODE_ID", "6"), ("KELP_DEFAULT_PARTITIONS", "4")],
    );
    let mut c = RawClient::connect(server.addr).expect("connect");
    let md = RequestBody::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { name: Some("never-created".into()), ..Default::default() }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    });
    let md = expect_body!(c.call(md, 12).expect("metadata"), Metadata);
    assert_eq!(md.brokers[0].node_id, 7, "the flag beats the environment and the file");
    assert_eq!(md.topics[0].error_code, 3, "auto-create-topics = false from the file: UNKNOWN_TOPIC_OR_PARTITION");
    let create = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "defaulted".into(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    });
    let created = expect_body!(c.call(create, 7).expect("create"), CreateTopics);
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].num_partitions, 4, "KELP_DEFAULT_PARTITIONS beats the file's 3");
    drop(server);
    let _ = std::fs::remove_file(&file);
}

/// GET `path` from the admin endpoint: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: kelp\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| std::io::Error::other("status"))?;
    Ok((code, body.to_string()))
}

/// The value of the sample `name_and_labels` (exactly as written before the value).
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
}

fn create_topic(c: &mut RawClient, name: &str, partitions: i32) {
    let create = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    });
    let created = expect_body!(c.call(create, 7).expect("create"), CreateTopics);
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
}

fn commit(c: &mut RawClient, group: &str, topic: &str, offset: i64) {
    let req = RequestBody::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                committed_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let resp = expect_body!(c.call(req, 8).expect("commit"), OffsetCommit);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
}

#[test]
fn health_and_metrics_follow_real_traffic() {
    for runtime in RUNTIMES {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin_s = admin.to_string();
        let mut server = KelpServer::start(&["--runtime", runtime, "--admin-listen", &admin_s]);
        let (code, body) = http_get(admin, "/health").expect("health");
        assert_eq!((code, body.as_str()), (200, "serving\n"), "{runtime}: /health while serving");
        assert_eq!(http_get(admin, "/nope").expect("404").0, 404);

        let mut c = RawClient::connect(server.addr).expect("connect");
        create_topic(&mut c, "metered", 1);
        for i in 0..3 {
            let p = expect_body!(
                c.call(produce_request("metered", 0, batch(&["a", "b"]), -1), 9).expect("produce"),
                Produce
            );
            assert_eq!(p.responses[0].partition_responses[0].base_offset, 2 * i);
        }
        // A produce to a partition that does not exist counts as an error.
        let bad = expect_body!(c.call(produce_request("metered", 7, batch(&["x"]), -1), 9).expect("produce"), Produce);
        let bad_code = bad.responses[0].partition_responses[0].error_code;
        assert_ne!(bad_code, 0);
        let f = expect_body!(c.call(fetch_request("metered", 0, 0, 0), 12).expect("fetch"), Fetch);
        assert_eq!(record_values(f.responses[0].partitions[0].records.as_ref().expect("records")).len(), 6);
        commit(&mut c, "readers", "metered", 2);

        let (code, m) = http_get(admin, "/metrics").expect("metrics");
        assert_eq!(code, 200, "{runtime}");
        let get = |k: &str| sample(&m, k).unwrap_or_else(|| panic!("{runtime}: no sample {k} in:\n{m}"));
        assert_eq!(get("kelp_requests_total{api=\"Produce\"}"), 4.0);
        assert_eq!(get("kelp_requests_total{api=\"Fetch\"}"), 1.0);
        assert_eq!(get("kelp_request_latency_seconds_count{api=\"Produce\"}"), 4.0);
        assert_eq!(get("kelp_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"}"), 4.0);
        let err_name = kelp_core::codec::ErrorCode(bad_code).name().expect("known code");
        assert_eq!(
            get(&format!("kelp_request_errors_total{{api=\"Produce\",code=\"{bad_code}\",error=\"{err_name}\"}}")),
            1.0
        );
        assert!(get("kelp_received_bytes_total") > 0.0 && get("kelp_sent_bytes_total") > 0.0);
        assert_eq!(get("kelp_open_connections"), 1.0);
        assert_eq!(get("kelp_partitions"), 1.0);
        assert_eq!(get("kelp_partition_high_watermark{topic=\"metered\",partition=\"0\"}"), 6.0);
        assert_eq!(
            get("kelp_consumer_group_committed_offset{group=\"readers\",topic=\"metered\",partition=\"0\"}"),
            2.0
        );
        assert_eq!(get("kelp_consumer_group_lag{group=\"readers\",topic=\"metered\",partition=\"0\"}"), 4.0);

        // More traffic moves the counters and the lag.
        let before_in = get("kelp_received_bytes_total");
        expect_body!(c.call(produce_request("metered", 0, batch(&["c"]), -1), 9).expect("produce"), Produce);
        let (_, m2) = http_get(admin, "/metrics").expect("metrics");
        assert_eq!(sample(&m2, "kelp_requests_total{api=\"Produce\"}"), Some(5.0), "{runtime}");
        assert!(sample(&m2, "kelp_received_bytes_total").expect("bytes") > before_in);
        assert_eq!(
            sample(&m2, "kelp_consumer_group_lag{group=\"readers\",topic=\"metered\",partition=\"0\"}"),
            Some(5.0)
        );

        drop(c);
        server.signal("TERM");
        assert_eq!(server.wait_exit(Duration::from_secs(60)), Some(0), "{runtime}: graceful stop exits 0");
        assert!(http_get(admin, "/health").is_err(), "{runtime}: the admin endpoint is gone with the process");
    }
}

/// Waits until `/metrics` shows at least `n` requests of `api`.
fn wait_requests(admin: SocketAddr, api: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = http_get(admin, "/metrics").expect("metrics");
        if sample(&m, &format!("kelp_requests_total{{api=\"{api}\"}}")).is_some_and(|v| v >= n) {
            return;
        }
        assert!(Instant::now() < deadline, "kelp never read {n} {api} requests:\n{m}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn graceful_stop_answers_requests_in_flight_and_keeps_what_it_acknowledged() {
    const REQUESTS: usize = 200;
    for runtime in RUNTIMES {
        let dir = temp(&format!("graceful-{runtime}"));
        let _ = std::fs::remove_dir_all(&dir);
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin_s = admin.to_string();
        let args = ["--runtime", runtime, "--fsync", "never", "--admin-listen", &admin_s];
        let mut server = KelpServer::start_on_disk(&dir, &args);
        let mut c = RawClient::connect(server.addr).expect("connect");
        create_topic(&mut c, "kept", 1);
        create_topic(&mut c, "idle", 1);

        // A long-polling fetch sits in flight on its own connection.
        let mut poller = RawClient::connect(server.addr).expect("connect");
        let fetch_corr = poller.send(&fetch_request("idle", 0, 0, 3000), 12).expect("send fetch");
        // A producer pipelines many acks=-1 produces without reading.
        let mut producer = RawClient::connect(server.addr).expect("connect");
        for i in 0..REQUESTS {
            let values: Vec<String> = (0..10).map(|j| format!("{i}-{j}")).collect();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            producer.send(&produce_request("kept", 0, batch(&values), -1), 9).expect("send produce");
        }
        wait_requests(admin, "Fetch", 1.0);
        wait_requests(admin, "Produce", 1.0);
        let (_, m) = http_get(admin, "/metrics").expect("metrics");
        let read_before = sample(&m, "kelp_requests_total{api=\"Produce\"}").expect("count") as usize;
        server.signal("TERM");

        // Every produce kelp had read is answered, in order, with contiguous offsets; the rest
        // find the connection closed.
        let mut acked = 0usize;
        while acked < REQUESTS {
            match producer.recv(ApiKey::PRODUCE, 9) {
                Ok((_, body)) => {
                    let p = &expect_body!(body, Produce).responses[0].partition_responses[0];
                    assert_eq!(p.error_code, 0, "{runtime}: produce {acked}");
                    assert_eq!(p.base_offset, 10 * acked as i64, "{runtime}: produce {acked}");
                    acked += 1;
                }
                Err(e) => {
                    assert!(
                        matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset),
                        "{runtime}: after {acked} responses: {e}"
                    );
                    break;
                }
            }
        }
        assert!(
            acked >= read_before,
            "{runtime}: {read_before} produces were read before the signal, {acked} answered"
        );
        println!("{runtime}: {read_before} produces read before SIGTERM, {acked} answered, the rest refused");
        let (corr, body) = poller.recv(ApiKey::FETCH, 12).expect("the long poll is answered");
        assert_eq!(corr, fetch_corr);
        assert_eq!(expect_body!(body, Fetch).responses[0].partitions[0].error_code, 0);
        assert_eq!(server.wait_exit(Duration::from_secs(60)), Some(0), "{runtime}: exit code");

        // Everything acknowledged is there after a restart.
        let server = KelpServer::start_on_disk(&dir, &["--runtime", runtime]);
        let mut c = RawClient::connect(server.addr).expect("connect");
        let mut stored = Vec::new();
        loop {
            let next = stored.len() as i64;
            let f = expect_body!(c.call(fetch_request("kept", 0, next, 0), 12).expect("fetch"), Fetch);
            let got = f.responses[0].partitions[0].records.as_ref().map(record_values).unwrap_or_default();
            let before = stored.len();
            stored.extend(got.into_iter().filter(|(o, _)| *o >= next));
            if stored.len() == before {
                break;
            }
        }
        assert!(stored.len() >= 10 * acked, "{runtime}: {acked} produces acked, {} records stored", stored.len());
        for (i, (offset, value)) in stored.iter().enumerate().take(10 * acked) {
            assert_eq!((*offset, value.as_str()), (i as i64, format!("{}-{}", i / 10, i % 10).as_str()), "{runtime}");
        }
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    for runtime in RUNTIMES {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin_s = admin.to_string();
        let mut server =
            KelpServer::start(&["--runtime", runtime, "--admin-listen", &admin_s, "--shutdown-grace-ms", "600000"]);
        let mut c = RawClient::connect(server.addr).expect("connect");
        create_topic(&mut c, "quiet", 1);
        // A fetch that would keep a graceful stop waiting for ten minutes.
        let mut poller = RawClient::connect(server.addr).expect("connect");
        poller.send(&fetch_request("quiet", 0, 0, 600_000), 12).expect("send fetch");
        wait_requests(admin, "Fetch", 1.0);
        server.signal("TERM");
        // The stop has begun once /health says so (or the endpoint is gone).
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(admin, "/health").is_ok_and(|(code, _)| code == 200) {
            assert!(Instant::now() < deadline, "{runtime}: /health stayed 200 after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(http_get(admin, "/health").expect("still up while stopping").0, 503, "{runtime}");
        server.signal("INT");
        assert_eq!(server.wait_exit(Duration::from_secs(60)), Some(130), "{runtime}: second signal");
    }
}

#[test]
fn connections_beyond_max_connections_are_closed() {
    use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
    for runtime in RUNTIMES {
        let server = KelpServer::start(&["--runtime", runtime, "--max-connections", "2"]);
        let api_versions = || RequestBody::ApiVersions(ApiVersionsRequest::default());
        // Two connections that are served (the start-up probe's connection may still count
        // for a moment: retry until it is gone).
        let served = || {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut x = RawClient::connect(server.addr).expect("connect");
                if x.call(api_versions(), 3).is_ok() {
                    return x;
                }
                assert!(Instant::now() < deadline, "{runtime}: no connection served");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let a = served();
        let _b = served();
        let mut c = RawClient::connect(server.addr).expect("the kernel accepts the third");
        assert!(c.call(api_versions(), 3).is_err(), "{runtime}: the third connection must be closed");
        // Once one closes, a new connection is served again.
        drop(a);
        drop(c);
        let _d = served();
    }
}
