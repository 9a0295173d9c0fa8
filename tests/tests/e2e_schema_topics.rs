//! Broker-side schema validation, as a user of real clients meets it: topics created with
//! `confluent.value.schema.validation=true` (or the key's) take only records framed with a schema
//! id that kelp's own registry holds under the subject the topic's strategy names, and refuse a
//! batch with anything else as INVALID_RECORD, with kelp's reason in the error the client hands
//! to the application, storing none of it.
//!
//! - confluent-kafka (librdkafka), tests/e2e/clients/schema_topics_client.py: topics made through
//!   the AdminClient with the validation in their config (and read back by DescribeConfigs);
//!   AvroSerializer records are accepted and read back; a plain-JSON value, a framed value with an
//!   id the registry never gave out, and one with an id registered under another subject each get
//!   a delivery error with code INVALID_RECORD, not retriable and not fatal (librdkafka's report
//!   carries the code but not kelp's text: see [`assert_refused`]); the consumer then finds
//!   exactly the accepted records at contiguous offsets. With key validation, a null key and an
//!   Avro-framed key pass and a plain key is refused. In payload mode
//!   (`kelp.value.schema.validation.mode=payload`) a value with the right id whose Avro body is
//!   cut short, or has a byte too many, is refused.
//! - The Java producer (kafka-clients 4.3) with Confluent's KafkaAvroSerializer (7.0.16),
//!   tests/e2e/clients/SchemaTopicsJava.java: its records are accepted; a byte[] value fails the
//!   send's future with `InvalidRecordException` carrying kelp's reason, as does a byte[] framed
//!   with an unknown schema id or with the id of a schema registered under another subject; on a
//!   topic using RecordNameStrategy (topic config and serializer config naming the same class)
//!   records registered under the record's name are accepted, and a record registered by the
//!   default strategy under `<topic>-value` is refused, the exception naming the subject it was
//!   not under. Only the accepted records are read back from either topic.

use std::time::Duration;

use kelp_tests::clients::{
    Client, Json, confluent_schema_smq, confluent_schema_topics, installed, java_schema_topics, parquet_dump,
};
use kelp_tests::registry::{run_json, start_with_registry};
use kelp_tests::seaweedfs::SeaweedCluster;
use kelp_tests::server::KelpServer;

/// Kafka's error code INVALID_RECORD.
const INVALID_RECORD: u64 = 87;

/// Runs `client` with `args` to completion; its one JSON line (the test fails otherwise).
fn run(client: &Client, server: &KelpServer, args: &[String]) -> Json {
    run_json(client, server, client.id, args, Duration::from_secs(180))
}

fn field<'a>(v: &'a Json, path: &[&str]) -> &'a Json {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or_else(|| panic!("no {path:?} in {v:?}")))
}

fn text<'a>(v: &'a Json, path: &[&str]) -> &'a str {
    field(v, path).str().unwrap_or_else(|| panic!("{path:?} is not a string: {v:?}"))
}

fn num(v: &Json, path: &[&str]) -> u64 {
    field(v, path).u64().unwrap_or_else(|| panic!("{path:?} is not a count: {v:?}"))
}

/// A delivery report from the Python client that must be a refusal as INVALID_RECORD.
///
/// Its text is librdkafka's description of the code, not the broker's: confluent-kafka builds
/// the delivery report's `KafkaError` from the code alone (and librdkafka 2.16's
/// `rd_kafka_message_produce_errstr` points at memory it has freed by then), so kelp's reasons
/// are checked through the Java client below, which hands them to the application.
fn assert_refused(seen: &Json, path: &[&str]) {
    let report = field(seen, path);
    assert_eq!(report.get("ok"), Some(&Json::Bool(false)), "{path:?} was accepted: {report:?}");
    assert_eq!(num(report, &["code"]), INVALID_RECORD, "{path:?}: {report:?}");
    assert_eq!(text(report, &["name"]), "INVALID_RECORD", "{path:?}");
    assert_eq!(report.get("retriable"), Some(&Json::Bool(false)), "{path:?}: {report:?}");
    assert_eq!(report.get("fatal"), Some(&Json::Bool(false)), "{path:?}: the producer goes on: {report:?}");
}

fn assert_accepted(seen: &Json, path: &[&str], offset: u64) {
    let report = field(seen, path);
    assert_eq!(report.get("ok"), Some(&Json::Bool(true)), "{path:?} was refused: {report:?}");
    assert_eq!(num(report, &["offset"]), offset, "{path:?}");
}

#[test]
fn confluent_kafka_producer_meets_schema_validation_on_its_topics() {
    let Some((client, _serial)) = installed(confluent_schema_topics()) else { return };
    let (server, registry) = start_with_registry(&[]);
    let seen = run(&client, &server, &[server.addr.to_string(), format!("http://{registry}"), "st".into()]);
    assert_eq!(num(&seen, &["invalid_record_code"]), INVALID_RECORD, "librdkafka's number for INVALID_RECORD");

    // The configs went through CreateTopics from a real client and come back on DescribeConfigs.
    assert_eq!(text(&seen, &["configs", "st-values", "confluent.value.schema.validation"]), "true");
    assert_eq!(text(&seen, &["configs", "st-keys", "confluent.key.schema.validation"]), "true");

    // The serializer's records, before and after the refused ones, at contiguous offsets.
    let accepted = field(&seen, &["accepted"]).items();
    assert_eq!(accepted.len(), 4);
    for (i, report) in (0..).zip(accepted) {
        assert_eq!(report.get("ok"), Some(&Json::Bool(true)), "good record {i}: {report:?}");
        assert_eq!(num(report, &["offset"]), i, "good record {i}");
    }

    // Each bad value alone in its batch, each refused for its own reason.
    assert_ne!(num(&seen, &["other_schema_id"]), num(&seen, &["event_schema_id"]));
    assert_refused(&seen, &["refused", "unframed"]);
    assert_refused(&seen, &["refused", "unknown_id"]);
    assert_refused(&seen, &["refused", "other_subject"]);

    // Nothing of the refused batches was stored: the log holds exactly the four good records.
    let read = field(&seen, &["values_read"]);
    assert_eq!(num(read, &["end_offset"]), 4, "end offset of st-values: {read:?}");
    let offsets: Vec<u64> = field(read, &["offsets"]).items().iter().filter_map(Json::u64).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    assert_eq!(field(read, &["records"]), field(read, &["sent"]), "what the consumer deserialized");
    let event_id = num(&seen, &["event_schema_id"]);
    let ids: Vec<u64> = field(read, &["schema_ids"]).items().iter().filter_map(Json::u64).collect();
    assert_eq!(ids, [event_id; 4], "every stored value carries the serializer's id");

    // Key validation: a null key is not checked, a framed key passes, a plain key is refused.
    assert_accepted(&seen, &["keys", "null_key"], 0);
    assert_accepted(&seen, &["keys", "framed_key"], 1);
    assert_refused(&seen, &["keys", "unframed_key"]);
    let keys = field(&seen, &["keys_read"]);
    assert_eq!(num(keys, &["end_offset"]), 2, "end offset of st-keys: {keys:?}");
    let records = field(keys, &["records"]).items();
    assert_eq!(records.len(), 2, "{keys:?}");
    assert_eq!(records[0].items(), [Json::Null, Json::Str("no key at all".into())]);
    assert_eq!(records[1].items(), [Json::Str("user-7".into()), Json::Str("an Avro key".into())]);

    // Payload mode: the id is right, but a body cut short or with a byte too many is no datum.
    assert_accepted(&seen, &["decoded", "good"], 0);
    assert_refused(&seen, &["decoded", "cut_short"]);
    assert_refused(&seen, &["decoded", "one_too_many"]);
    assert_accepted(&seen, &["decoded", "good_again"], 1);
}

/// The exception a refused send's future failed with, as the Java program saw it: the first in
/// its cause chain that is Kafka's `InvalidRecordException`; its message.
fn invalid_record_message(outcome: &Json, what: &str) -> String {
    let causes = outcome.get("causes").unwrap_or_else(|| panic!("{what} was accepted: {outcome:?}")).items();
    let found = causes
        .iter()
        .find(|c| c.get("class").and_then(Json::str) == Some("org.apache.kafka.common.InvalidRecordException"));
    let found = found.unwrap_or_else(|| panic!("{what}: no InvalidRecordException among the causes {causes:?}"));
    found.get("message").and_then(Json::str).unwrap_or_default().to_string()
}

#[test]
fn java_producer_meets_schema_validation_on_its_topics() {
    let Some((client, _serial)) = installed(java_schema_topics()) else { return };
    let (server, registry) = start_with_registry(&[]);
    let count = 20;
    let seen = run(
        &client,
        &server,
        &[server.addr.to_string(), format!("http://{registry}"), "stj".into(), count.to_string()],
    );

    // TopicNameStrategy: the serializer's records in, the byte[] refused with kelp's reason.
    assert_eq!(num(&seen, &["tn", "accepted"]), count);
    let raw = invalid_record_message(field(&seen, &["tn", "raw"]), "the byte[] value");
    assert!(
        raw.contains("value is not in the schema registry's wire format") && raw.contains("magic byte 123"),
        "the byte[] value's exception message: {raw:?}"
    );
    let unknown = invalid_record_message(field(&seen, &["tn", "unknown_id"]), "the byte[] with schema id 9000");
    assert_eq!(unknown, "schema id 9000 is not in the schema registry");
    let other = invalid_record_message(field(&seen, &["tn", "other_subject"]), "the byte[] with the stray id");
    let stray_id = num(&seen, &["tn", "stray_id"]);
    assert_eq!(other, format!("schema id {stray_id} is not registered under subject stj-tn-value"));
    let read = field(&seen, &["tn", "read"]);
    assert_eq!(num(read, &["end_offset"]), count, "only the serializer's records are stored: {read:?}");
    let values = field(read, &["values"]).items();
    assert_eq!(values.len() as u64, count);
    assert!(values.iter().all(|v| v.str().is_some_and(|v| v.contains("\"sensor\""))), "{values:?}");

    // RecordNameStrategy on the topic and in the serializer: the record's name is the subject.
    let subjects: Vec<&str> = field(&seen, &["subjects"]).items().iter().filter_map(Json::str).collect();
    assert!(subjects.contains(&"kelp.e2e.topics.Reading"), "subjects: {subjects:?}");
    assert!(subjects.contains(&"stj-rn-value"), "the stray record's subject: {subjects:?}");
    assert_eq!(num(&seen, &["rn", "accepted"]), count);
    let stray = invalid_record_message(field(&seen, &["rn", "stray"]), "the record under <topic>-value");
    assert!(
        stray.contains("not registered under subject kelp.e2e.topics.Stray"),
        "the stray record's exception message: {stray:?}"
    );
    let read = field(&seen, &["rn", "read"]);
    assert_eq!(num(read, &["end_offset"]), count, "only the record-named records are stored: {read:?}");
    assert_eq!(field(read, &["values"]).items().len() as u64, count);
}

/// Lowercase hex of `s`'s bytes, as the clients print bytes.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The text whose UTF-8 bytes `hex` spells.
fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> =
        (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The typed topics' workload against kelp on SeaweedMQ: every record comes back byte for byte
/// before and after `weed shell mq.topic.compact`, and the Parquet files compaction writes hold
/// the records' decoded fields in typed columns (docs/SCHEMA_TOPICS.md, "Typed records on
/// SeaweedMQ"). Needs `weed` in a loopback-only network namespace: scripts/test.sh runs it
/// through `scripts/seaweedfs-test.sh -p kelp-tests --test e2e_schema_topics -- on_seaweedmq`.
#[test]
fn typed_topics_on_seaweedmq_keep_exact_records_and_typed_columns() {
    kelp_tests::require_seaweedfs!();
    let Some((client, _serial)) = installed(confluent_schema_smq()) else { return };
    let parquet = match parquet_dump() {
        Ok(c) => c,
        Err(why) => return kelp_tests::skip(&format!("{why} (run scripts/install-clients.sh)")),
    };
    let cluster = SeaweedCluster::start("typed");
    let (server, registry) = start_with_registry(&[
        "--storage",
        "seaweedmq",
        "--seaweedmq-master",
        &cluster.master,
        "--seaweedmq-namespace",
        "typed",
    ]);
    let args = |mode: &str| vec![server.addr.to_string(), format!("http://{registry}"), "ty".into(), mode.into()];
    let sent = run(&client, &server, &args("produce"));
    let topics = ["ty-avro", "ty-proto", "ty-json", "ty-plain"];
    let exact = |label: &str| {
        let read = run(&client, &server, &args("read"));
        for t in topics {
            let want = field(&sent, &["sent", t]);
            assert_eq!(want.items().len(), 12, "{t}: records sent");
            assert_eq!(field(&read, &["read", t, "records"]), want, "{t} {label}: what a consumer reads");
        }
    };
    exact("before compaction");

    // The data must be flushed and older than -timeAgo before compaction takes it.
    std::thread::sleep(Duration::from_secs(4));
    let dump = |t: &str| {
        run_json(
            &parquet,
            &server,
            "parquet",
            &[cluster.filer_http(), format!("/topics/typed/{t}")],
            Duration::from_secs(60),
        )
    };
    let mut dumps = Vec::new();
    for t in &topics[..3] {
        let (ok, out) = cluster.shell(&format!("mq.topic.compact -namespace typed -topic {t} -timeAgo 1s"));
        assert!(ok, "compacting {t}: {out}");
        dumps.push(dump(t));
    }
    // A topic without a schema has no RecordType: weed 4.48's shell fails on it and leaves it as
    // it is (its records are read back below like the others').
    let _ = cluster.shell("mq.topic.compact -namespace typed -topic ty-plain -timeAgo 1s");

    // Each typed topic's RecordType: the schema's fields, kelp's record column and `_offset`.
    let names = |d: &Json| -> Vec<String> {
        field(d, &["conf", "messageRecordType", "fields"])
            .items()
            .iter()
            .map(|f| text(f, &["name"]).to_owned())
            .collect()
    };
    // (In name order: weed 4.48 fills a nested record's columns in RecordType order but lays them
    // out in name order, so kelp sorts them.)
    let avro_cols = [
        "_kelp_key",
        "_kelp_record",
        "_offset",
        "attrs",
        "coupon",
        "customer",
        "day",
        "id",
        "lines",
        "note",
        "placed",
        "price",
        "status",
    ];
    assert_eq!(names(&dumps[0]), avro_cols, "ty-avro: v1's fields, v2's new one (coupon), kelp's columns");
    let proto_cols = ["_kelp_record", "_offset", "counts", "id", "note", "parcels", "sent_at", "state", "tags"];
    assert_eq!(names(&dumps[1]), proto_cols, "ty-proto");
    let json_cols = ["_kelp_record", "_offset", "carrier", "id", "note", "parcels", "to", "weight"];
    assert_eq!(names(&dumps[2]), json_cols, "ty-json");

    // Every record is a Parquet row (the key kelp gives each message keeps it there), with its
    // offset and, in `_kelp_record`, its envelope: its value bytes end it.
    for (t, d) in topics.iter().zip(&dumps) {
        let rows = field(d, &["rows"]).items();
        let records = field(&sent, &["sent", t]).items();
        assert_eq!(rows.len(), records.len(), "{t}: Parquet rows {d:?}");
        for (row, rec) in rows.iter().zip(records) {
            assert_eq!(num(row, &["_offset"]), num(rec, &["offset"]), "{t}: rows in offset order");
            let envelope = text(row, &["_kelp_record"]);
            assert!(envelope.ends_with(text(rec, &["value"])), "{t}: the envelope holds the value: {row:?}");
        }
    }
    // Typed values, a few of each kind.
    let avro = field(&dumps[0], &["rows"]).items();
    for (i, row) in (0u64..).zip(avro) {
        assert_eq!(num(row, &["id"]), 1000 + i, "avro id");
        assert_eq!(text(row, &["status"]), hex(["NEW", "PAID", "SHIPPED"][(i % 3) as usize]));
        assert_eq!(text(row, &["price"]), hex(&format!("{}.{:02}", i * 7, i % 100)), "a decimal as its text");
        assert_eq!(num(row, &["placed"]), (1_700_000_000_000 + i * 1000) * 1000, "timestamp-millis in micros");
        assert_eq!(num(row, &["day"]), 19_700 + i, "a date in days");
        assert_eq!(text(row, &["customer", "name"]), hex(&format!("customer {i}")), "a nested record");
        let lines = field(row, &["lines"]).items();
        assert_eq!(lines.len(), (i % 4) as usize, "an array of records");
        if let Some(line) = lines.first() {
            let line = Json::parse(&unhex(line.str().unwrap_or_default())).expect("a line's JSON");
            assert_eq!((text(&line, &["sku"]), num(&line, &["qty"])), (format!("sku-{i}-0").as_str(), 1));
        }
        let attrs = field(row, &["attrs"]).items();
        assert_eq!(attrs.len(), if i % 2 == 1 { 2 } else { 0 }, "a map, as key/value records");
        assert_eq!(num(row, &["_kelp_key", "id"]), 1000 + i, "the key's fields");
        if i % 3 != 0 {
            assert_eq!(text(row, &["note"]), hex(&format!("note {i} \u{e9}")), "a union's string branch");
        }
        if i >= 6 && i % 2 == 0 {
            assert_eq!(text(row, &["coupon"]), hex(&format!("SAVE{i}")), "v2's new field");
        }
    }
    let proto = field(&dumps[1], &["rows"]).items();
    for (i, row) in (0u64..).zip(proto) {
        assert_eq!(num(row, &["id"]), 500 + i, "proto id");
        assert_eq!(text(row, &["state"]), hex(["PENDING", "SENT", "LOST"][(i % 3) as usize]), "an enum's name");
        // A list of messages holds each one's JSON text (weed 4.48 writes lists of records empty).
        let parcels = field(row, &["parcels"]).items();
        assert_eq!(parcels.len(), (i % 3 + 1) as usize, "repeated nested messages");
        let first = Json::parse(&unhex(parcels[0].str().unwrap_or_default())).expect("a parcel's JSON");
        let grams = if i % 4 == 0 { 4_000_000_000 } else { 250 };
        assert_eq!(num(&first, &["grams"]), grams, "a uint32 beyond int32, as int64");
        assert_eq!(text(&first, &["ref"]), format!("p-{i}-0"));
        if i % 5 != 0 {
            assert_eq!(num(row, &["sent_at"]), (1_700_000_000 + i) * 1_000_000 + 123 * i, "a Timestamp in micros");
        }
    }
    let json = field(&dumps[2], &["rows"]).items();
    for (i, row) in (0u64..).zip(json) {
        assert_eq!(num(row, &["id"]), 700 + i, "json id");
        assert_eq!(text(row, &["carrier"]), hex("kelp post"));
        assert_eq!(field(row, &["parcels"]).items().len(), (i % 3) as usize);
    }

    // The same bytes come back after compaction, and SeaweedFS is still up.
    exact("after compaction");
    assert!(cluster.alive(), "the SeaweedFS server died after reads of compacted topics");
}
