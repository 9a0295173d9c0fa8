//! The schema registry inside `kelp serve`, used as Kafka users use it.
//!
//! - confluent-kafka's `SchemaRegistryClient` with its Avro, JSON Schema and Protobuf
//!   serializers, in a process of its own, registers through kelp's registry and produces
//!   through kelp's broker, then consumes and deserializes (tests/e2e/clients/
//!   schema_registry_client.py), on both runtimes; with `use.latest.version`, and a Protobuf
//!   import registered as a reference;
//! - kafkajs with `@kafkajs/confluent-schema-registry` registers an Avro, a Protobuf and a JSON
//!   Schema schema (the same one again gets the same id, as does `getLatestSchemaId`), encodes
//!   records with them, produces through kelp and reads them back in a consumer group, decoding
//!   each with the schema fetched from kelp by id (tests/e2e/clients/kafkajs_schema_registry.js);
//! - Confluent's Java `KafkaAvroSerializer` and `KafkaProtobufSerializer` (7.0.16, on kafka-clients
//!   4.3) register through kelp's registry and produce through its broker, an Avro schema evolves
//!   to version 2, and `KafkaAvroDeserializer` / `KafkaProtobufDeserializer` read every value back
//!   (tests/e2e/clients/SchemaRegistryJava.java); the ids they used are the registry's, and the
//!   Protobuf type's import is registered as a subject of its own and referenced;
//! - 100 schemas under 20 subjects with configs and modes survive a kill -9 of kelp on the disk
//!   store: every id, version, config and mode is the same after the restart, and a new
//!   registration continues the id sequence; the same on `--storage seaweedmq` across a restart
//!   of SeaweedFS and then kelp.
//!
//! The registry's HTTP API is driven here with plain HTTP/1.1 over a socket
//! (`kelp_tests::registry`).

use std::net::SocketAddr;
use std::time::Duration;

use kelp_tests::clients::{Json, installed, python_client};
use kelp_tests::registry::{call, free_addr, http, run_json, start_with_registry, wait_ready};
use kelp_tests::seaweedfs::SeaweedCluster;
use kelp_tests::server::KelpServer;

fn serializers_round_trip(runtime: &str) {
    let Some((client, _serial)) = installed(python_client(
        "venv-confluent",
        "schema_registry_client.py",
        "confluent-kafka schema registry",
        "sr",
    )) else {
        return;
    };
    let (server, registry) = start_with_registry(&["--runtime", runtime]);
    let args = [server.addr.to_string(), format!("http://{registry}"), format!("sr-{runtime}"), "200".into()];
    let seen = run_json(&client, &server, &format!("sr-{runtime}"), &args, Duration::from_secs(240));
    let avro = seen.get("avro").expect("avro results");
    assert_eq!(avro.get("records").and_then(Json::u64), Some(200));
    assert_eq!(avro.get("id").and_then(Json::u64), Some(1), "the first schema registered");
    assert_eq!(avro.get("version").and_then(Json::u64), Some(1));
    let refused = avro.get("incompatible").expect("the incompatible schema was refused");
    assert_eq!(refused.get("status").and_then(Json::u64), Some(409));
    let json = seen.get("json").expect("json results");
    assert_eq!(json.get("records").and_then(Json::u64), Some(200));
    assert_eq!(json.get("id").and_then(Json::u64), Some(3), "after the two Avro schemas");
    assert_eq!(avro.get("latest_id").and_then(Json::u64), Some(2), "use.latest.version wrote with v2");
    let proto = seen.get("protobuf").expect("protobuf results");
    assert_eq!(proto.get("records").and_then(Json::u64), Some(200));
    assert_eq!(proto.get("address_id").and_then(Json::u64), Some(4), "the import, registered first");
    assert_eq!(proto.get("id").and_then(Json::u64), Some(5));
    // What the registry itself answers for the subject the serializer registered.
    let latest = call(registry, "GET", &format!("/subjects/sr-{runtime}-proto-value/versions/latest"), None, 200);
    let latest = Json::parse(&latest).expect("JSON");
    assert_eq!(latest.get("id").and_then(Json::u64), Some(5));
    assert_eq!(latest.get("schemaType").and_then(Json::str), Some("PROTOBUF"));
    let reference = &latest.get("references").expect("references").items()[0];
    assert_eq!(reference.get("subject").and_then(Json::str), Some("kelp/address.proto"));
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

/// 100 schemas under 20 subjects, five of them with a compatibility level, four read-only, and
/// a global level. The subjects are written concurrently, as many producers would (each
/// subject's versions in order), so writes queue and go to the store together.
fn populate(registry: SocketAddr) {
    let levels = ["BACKWARD", "FORWARD", "FULL", "NONE", "FULL_TRANSITIVE"];
    for (i, level) in levels.iter().enumerate() {
        let subject = format!("subject-{}", i * 4);
        call(registry, "PUT", &format!("/config/{subject}"), Some(&format!(r#"{{"compatibility":"{level}"}}"#)), 200);
    }
    std::thread::scope(|scope| {
        for s in 0..20 {
            scope.spawn(move || {
                for v in 0..5 {
                    call(registry, "POST", &format!("/subjects/subject-{s}/versions"), Some(&schema(s, v)), 200);
                }
            });
        }
    });
    for s in (0..20).filter(|s| s % 5 == 1) {
        call(registry, "PUT", &format!("/mode/subject-{s}"), Some(r#"{"mode":"READONLY"}"#), 200);
    }
    call(registry, "PUT", "/config", Some(r#"{"compatibility":"FORWARD_TRANSITIVE"}"#), 200);
}

/// Everything `populate` set, as the registry answers it.
fn snapshot(addr: SocketAddr) -> Vec<String> {
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
    assert!(all[0].contains("subject-19"), "{}", all[0]);
    assert!(all.iter().any(|b| b.contains(r#""id":100"#)), "100 schemas, ids 1 to 100");
    assert_eq!(all.iter().filter(|b| b.contains("READONLY")).count(), 4, "four read-only subjects");
    all
}

#[test]
fn registry_state_survives_kill_9_on_the_disk_store() {
    let dir = std::env::temp_dir().join(format!("kelp-e2e-sr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let registry = free_addr();
    let listen = registry.to_string();
    let args = ["--schema-registry-listen", listen.as_str()];
    let mut server = KelpServer::start_on_disk(&dir, &args);
    wait_ready(registry, &server);
    populate(registry);
    let before = snapshot(registry);

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

/// The same on `--storage seaweedmq`: kelp stops, SeaweedFS restarts, kelp starts again and
/// reads `_schemas` back from SeaweedMQ. Needs `weed` and a loopback-only network namespace:
/// scripts/test.sh runs it through `scripts/seaweedfs-test.sh -p kelp-tests --test
/// e2e_schema_registry -- registry_on_seaweedmq` (and leaves it out of the plain cargo test run).
#[test]
fn registry_on_seaweedmq_survives_a_seaweedfs_restart() {
    kelp_tests::require_seaweedfs!();
    let mut cluster = SeaweedCluster::start("sr-restart");
    let registry = free_addr();
    let listen = registry.to_string();
    let master = cluster.master.clone();
    let args = [
        "--schema-registry-listen",
        listen.as_str(),
        "--storage",
        "seaweedmq",
        "--seaweedmq-master",
        &master,
        "--seaweedmq-namespace",
        "kelpsr",
    ];
    let mut server = KelpServer::start(&args);
    wait_ready(registry, &server);
    populate(registry);
    let before = snapshot(registry);

    server.kill();
    cluster.restart();
    let mut server = KelpServer::start(&args);
    wait_ready(registry, &server);
    let after = snapshot(registry);
    assert_eq!(after, before, "the registry after SeaweedFS and kelp restarted");
    let id = call(registry, "POST", "/subjects/new-subject/versions", Some(&schema(99, 0)), 200);
    assert_eq!(id, r#"{"id":101}"#);
    server.kill();
}

// ---- kafkajs with @kafkajs/confluent-schema-registry ----

/// kafkajs with `@kafkajs/confluent-schema-registry` (tests/e2e/clients/kafkajs_schema_registry.js)
/// registers an Avro, a Protobuf and a JSON Schema schema through kelp's registry, encodes records
/// with them, produces through kelp, and reads them back in a consumer group, decoding each with
/// the writer schema fetched from kelp by id. The ids it saw must be the ones kelp's registry
/// answers over plain HTTP.
#[test]
fn kafkajs_schema_registry_round_trips_avro_protobuf_and_json_through_kelp() {
    const RECORDS: u64 = 150;
    let Some((client, _serial)) = installed(kelp_tests::clients::kafkajs_schema_registry()) else {
        return;
    };
    let (server, registry) = start_with_registry(&[]);
    let args = [server.addr.to_string(), format!("http://{registry}"), "kjs".into(), RECORDS.to_string(), "120".into()];
    let seen = run_json(&client, &server, "sr-kafkajs", &args, Duration::from_secs(180));
    assert_eq!(seen.get("client").and_then(Json::str), Some("kafkajs"), "{seen:?}");

    let mut ids = Vec::new();
    // Confluent leaves `schemaType` out for Avro.
    for (format, schema_type) in [("avro", None), ("protobuf", Some("PROTOBUF")), ("json", Some("JSON"))] {
        let r = seen.get(format).unwrap_or_else(|| panic!("no {format} results in {seen:?}"));
        let subject = format!("kjs-{format}-value");
        assert_eq!(r.get("subject").and_then(Json::str), Some(subject.as_str()), "{format}");
        assert_eq!(r.get("produced").and_then(Json::u64), Some(RECORDS), "{format}: records produced");
        assert_eq!(r.get("records").and_then(Json::u64), Some(RECORDS), "{format}: records decoded as sent");

        // What the client was told, against what kelp's registry answers.
        let id = r.get("id").and_then(Json::u64).unwrap_or_else(|| panic!("{format}: no id in {r:?}"));
        for again in ["again_id", "latest_id", "by_schema_id"] {
            assert_eq!(r.get(again).and_then(Json::u64), Some(id), "{format}: {again}");
        }
        let text = call(registry, "GET", &format!("/subjects/{subject}/versions/latest"), None, 200);
        let latest = Json::parse(&text).unwrap_or_else(|| panic!("{format}: latest version is not JSON: {text}"));
        assert_eq!(latest.get("id").and_then(Json::u64), Some(id), "{format}: {text}");
        assert_eq!(latest.get("version").and_then(Json::u64), Some(1), "{format}: {text}");
        assert_eq!(latest.get("subject").and_then(Json::str), Some(subject.as_str()), "{format}: {text}");
        assert_eq!(latest.get("schemaType").and_then(Json::str), schema_type, "{format}: {text}");
        // Registering the same schema again made no second version.
        let versions = call(registry, "GET", &format!("/subjects/{subject}/versions"), None, 200);
        assert_eq!(versions, "[1]", "{format}: versions of {subject}");
        let by_id = call(registry, "GET", &format!("/schemas/ids/{id}"), None, 200);
        let by_id = Json::parse(&by_id).unwrap_or_else(|| panic!("{format}: schema {id} is not JSON: {by_id}"));
        assert_eq!(by_id.get("schema").and_then(Json::str), latest.get("schema").and_then(Json::str), "{format}");
        // The library sets a new subject's compatibility (BACKWARD unless told otherwise) after
        // its first registration, and checks it on every later one.
        let config = call(registry, "GET", &format!("/config/{subject}"), None, 200);
        let config = Json::parse(&config).unwrap_or_else(|| panic!("{format}: config is not JSON: {config}"));
        assert_eq!(config.get("compatibilityLevel").and_then(Json::str), Some("BACKWARD"), "{format}");
        ids.push(id);
    }
    assert_eq!(ids, [1, 2, 3], "ids in the order the schemas were registered on a new registry");
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
    let (server, registry) = start_with_registry(&[]);
    let args = [server.addr.to_string(), format!("http://{registry}"), "sr-java".into(), N.to_string()];
    let seen = run_json(&client, &server, "sr-java", &args, Duration::from_secs(240));

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
}
