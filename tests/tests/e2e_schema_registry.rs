//! The schema registry inside `kelp serve`, used as Kafka users use it.
//!
//! - confluent-kafka's `SchemaRegistryClient` with its Avro and JSON Schema serializers, in a
//!   process of its own, registers through kelp's registry and produces through kelp's broker,
//!   then consumes and deserializes (tests/e2e/clients/schema_registry_client.py), on both
//!   runtimes;
//! - Confluent's Java `KafkaAvroSerializer` and `KafkaProtobufSerializer` (7.0.16, on kafka-clients
//!   4.3) register through kelp's registry and produce through its broker, an Avro schema evolves
//!   to version 2, and `KafkaAvroDeserializer` / `KafkaProtobufDeserializer` read every value back
//!   (tests/e2e/clients/SchemaRegistryJava.java); the ids they used are the registry's, and the
//!   Protobuf type's import is registered as a subject of its own and referenced;
//! - 100 schemas under 20 subjects with configs and modes survive a kill -9 of kelp on the disk
//!   store: every id, version, config and mode is the same after the restart, and a new
//!   registration continues the id sequence.
//!
//! The registry's HTTP API is driven here with plain HTTP/1.1 over a socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kelp_tests::clients::{Json, Scratch, installed, python_client, run_client};
use kelp_tests::server::{KelpServer, free_port};

/// One request, on a connection of its own; the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
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

/// The request's answer, which must have `status`.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, status: u16) -> String {
    let (got, text) = http(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(got, status, "{method} {path} {body:?}: {text}");
    text
}

/// Waits until the registry answers `GET /` (it serves once it has read `_schemas`).
fn wait_ready(addr: SocketAddr, server: &KelpServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if matches!(http(addr, "GET", "/subjects", None), Ok((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the schema registry on {addr} did not come up; kelp's log:\n{}", server.log_tail());
}

fn registry_args(addr: SocketAddr) -> Vec<String> {
    vec!["--schema-registry-listen".into(), addr.to_string()]
}

fn serializers_round_trip(runtime: &str) {
    let Some((client, _serial)) = installed(python_client(
        "venv-confluent",
        "schema_registry_client.py",
        "confluent-kafka schema registry",
        "sr",
    )) else {
        return;
    };
    let registry: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let mut args = registry_args(registry);
    args.extend(["--runtime".into(), runtime.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = KelpServer::start(&args);
    wait_ready(registry, &server);
    let scratch = Scratch::new(&format!("sr-{runtime}"));
    let cmd =
        client.command(&[server.addr.to_string(), format!("http://{registry}"), format!("sr-{runtime}"), "200".into()]);
    let out = run_client(&scratch, cmd, Duration::from_secs(240));
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{} failed: {}\n{}\nkelp's log:\n{}",
        client.name,
        out.stdout,
        out.stderr,
        server.log_tail()
    );
    let seen = Json::parse(out.stdout.lines().last().unwrap_or("")).expect("the client prints one JSON line");
    let avro = seen.get("avro").expect("avro results");
    assert_eq!(avro.get("records").and_then(Json::u64), Some(200));
    assert_eq!(avro.get("id").and_then(Json::u64), Some(1), "the first schema registered");
    assert_eq!(avro.get("version").and_then(Json::u64), Some(1));
    let refused = avro.get("incompatible").expect("the incompatible schema was refused");
    assert_eq!(refused.get("status").and_then(Json::u64), Some(409));
    let json = seen.get("json").expect("json results");
    assert_eq!(json.get("records").and_then(Json::u64), Some(200));
    assert_eq!(json.get("id").and_then(Json::u64), Some(3), "after the two Avro schemas");
}

#[test]
fn confluent_kafka_serializers_round_trip_through_kelp_and_its_registry_on_tokio() {
    serializers_round_trip("tokio");
}

#[test]
fn confluent_kafka_serializers_round_trip_through_kelp_and_its_registry_on_mio() {
    serializers_round_trip("mio");
}

/// Avro schema `n` of a subject: a record with fields `f0..=fn`, each new one with a default,
/// so every version is compatible with the one before at any level.
fn schema(subject: usize, n: usize) -> String {
    let fields: Vec<String> = (0..=n).map(|i| format!(r#"{{"name":"f{i}","type":"int","default":{i}}}"#)).collect();
    let schema = format!(r#"{{"type":"record","name":"R{subject}","fields":[{}]}}"#, fields.join(","));
    format!(r#"{{"schema":{}}}"#, serde_json_string(&schema))
}

/// `s` as a JSON string literal.
fn serde_json_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn registry_state_survives_kill_9_on_the_disk_store() {
    let dir = std::env::temp_dir().join(format!("kelp-e2e-sr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let registry: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let args = registry_args(registry);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = KelpServer::start_on_disk(&dir, &args);
    wait_ready(registry, &server);

    let levels = ["BACKWARD", "FORWARD", "FULL", "NONE", "FULL_TRANSITIVE"];
    let mut before = Vec::new();
    for s in 0..20 {
        let subject = format!("subject-{s}");
        if s % 4 == 0 {
            let level = levels[s / 4];
            call(
                registry,
                "PUT",
                &format!("/config/{subject}"),
                Some(&format!(r#"{{"compatibility":"{level}"}}"#)),
                200,
            );
        }
        for v in 0..5 {
            call(registry, "POST", &format!("/subjects/{subject}/versions"), Some(&schema(s, v)), 200);
        }
        if s % 5 == 1 {
            call(registry, "PUT", &format!("/mode/{subject}"), Some(r#"{"mode":"READONLY"}"#), 200);
        }
    }
    call(registry, "PUT", "/config", Some(r#"{"compatibility":"FORWARD_TRANSITIVE"}"#), 200);
    let snapshot = |addr: SocketAddr| {
        let mut all = vec![call(addr, "GET", "/subjects", None, 200), call(addr, "GET", "/config", None, 200)];
        for s in 0..20 {
            let subject = format!("subject-{s}");
            for v in 1..=5 {
                all.push(call(addr, "GET", &format!("/subjects/{subject}/versions/{v}"), None, 200));
            }
            let config = http(addr, "GET", &format!("/config/{subject}"), None).expect("config");
            all.push(format!("{config:?}"));
            let mode = http(addr, "GET", &format!("/mode/{subject}"), None).expect("mode");
            all.push(format!("{mode:?}"));
        }
        all
    };
    before.extend(snapshot(registry));
    assert!(before[0].contains("subject-19"), "{}", before[0]);
    assert!(before.iter().any(|b| b.contains(r#""id":100"#)), "100 schemas, ids 1 to 100");

    server.kill();
    let mut server = KelpServer::start_on_disk(&dir, &args);
    wait_ready(registry, &server);
    let after = snapshot(registry);
    assert_eq!(after, before, "the registry after kill -9 and restart");
    // A new registration continues the id sequence.
    let id = call(registry, "POST", "/subjects/new-subject/versions", Some(&schema(99, 0)), 200);
    assert_eq!(id, r#"{"id":101}"#);
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- the Java KafkaAvroSerializer and KafkaProtobufSerializer ----

/// `GET path`, which must answer 200 with JSON.
fn get_json(addr: SocketAddr, path: &str) -> Json {
    let text = call(addr, "GET", path, None, 200);
    Json::parse(&text).unwrap_or_else(|| panic!("GET {path}: not JSON: {text}"))
}

/// A whole non-negative number member of `v`.
fn num(v: &Json, key: &str) -> u64 {
    v.get(key).and_then(Json::u64).unwrap_or_else(|| panic!("no number {key:?} in {v:?}"))
}

#[test]
fn java_avro_and_protobuf_serializers_round_trip_through_kelp_and_its_registry() {
    let Some((client, _serial)) = installed(kelp_tests::clients::java_schema_registry()) else {
        return;
    };
    const N: u64 = 100;
    let registry: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let args = registry_args(registry);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = KelpServer::start(&args);
    wait_ready(registry, &server);
    let scratch = Scratch::new("sr-java");
    let cmd = client.command(&[server.addr.to_string(), format!("http://{registry}"), "sr-java".into(), N.to_string()]);
    let out = run_client(&scratch, cmd, Duration::from_secs(240));
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{} failed after {:?}: {}\n{}\nkelp's log:\n{}",
        client.name,
        out.elapsed,
        out.stdout,
        out.stderr,
        server.log_tail()
    );
    let line = out.stdout.lines().last().unwrap_or("");
    let seen = Json::parse(line).unwrap_or_else(|| panic!("the client prints one JSON line, not {line:?}"));

    // Avro: every record of both schema versions read back equal (the client compared them).
    let avro = seen.get("avro").expect("avro results");
    assert_eq!(num(avro, "records_v1"), N);
    assert_eq!(num(avro, "records_v2"), N);
    assert_eq!(num(avro, "v1_read_as_v2"), N, "v1 records read with v2 as the reader schema");
    let (id_v1, id_v2) = (num(avro, "id_v1"), num(avro, "id_v2"));
    assert_ne!(id_v1, id_v2);
    // What the Java registry client was told (POST /subjects/{subject} for each schema).
    assert_eq!(num(avro, "version_v1"), 1);
    assert_eq!(num(avro, "version_v2"), 2, "the evolved schema is version 2 of the subject");
    // And what kelp's registry says, asked directly.
    let latest = get_json(registry, "/subjects/sr-java-avro-value/versions/latest");
    assert_eq!(num(&latest, "id"), id_v2, "latest of sr-java-avro-value: {latest:?}");
    assert_eq!(num(&latest, "version"), 2);
    assert!(latest.get("schema").and_then(Json::str).is_some_and(|s| s.contains("age")), "{latest:?}");
    let first = get_json(registry, "/subjects/sr-java-avro-value/versions/1");
    assert_eq!(num(&first, "id"), id_v1, "version 1 of sr-java-avro-value: {first:?}");
    let versions = get_json(registry, "/subjects/sr-java-avro-value/versions");
    assert_eq!(versions.items().iter().map(Json::u64).collect::<Vec<_>>(), [Some(1), Some(2)]);

    // Protobuf: the serializer registered the schema it derived from the DynamicMessage's type.
    let proto = seen.get("protobuf").expect("protobuf results");
    assert_eq!(num(proto, "records"), N);
    let id_proto = num(proto, "id");
    let latest = get_json(registry, "/subjects/sr-java-proto-value/versions/latest");
    assert_eq!(num(&latest, "id"), id_proto, "latest of sr-java-proto-value: {latest:?}");
    assert_eq!(num(&latest, "version"), 1);
    assert_eq!(latest.get("schemaType").and_then(Json::str), Some("PROTOBUF"), "{latest:?}");
    // Order imports kelp/e2e/money.proto: the serializer registered that file under a subject
    // named by the import (a `/` in a subject, %2F in the path) and Order with a reference to it,
    // which the deserializer followed to rebuild the type.
    let refs = latest.get("references").expect("Order's references").items();
    assert_eq!(refs.len(), 1, "{latest:?}");
    assert_eq!(refs[0].get("name").and_then(Json::str), Some("kelp/e2e/money.proto"));
    assert_eq!(refs[0].get("subject").and_then(Json::str), Some("kelp/e2e/money.proto"));
    assert_eq!(num(&refs[0], "version"), 1);
    let money = get_json(registry, "/subjects/kelp%2Fe2e%2Fmoney.proto/versions/1");
    assert_eq!(money.get("schemaType").and_then(Json::str), Some("PROTOBUF"), "{money:?}");
    assert!(money.get("schema").and_then(Json::str).is_some_and(|s| s.contains("message Money")), "{money:?}");
    let id_money = num(&money, "id");
    let mut ids = vec![id_v1, id_v2, id_money, id_proto];
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "four schemas, four ids: {seen:?} {money:?}");
    println!("Java serializers through kelp: {} in {:?}", line, out.elapsed);
}
