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

use kelp_tests::clients::{Client, Json, confluent_schema_topics, installed, java_schema_topics};
use kelp_tests::registry::{run_json, start_with_registry};
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
