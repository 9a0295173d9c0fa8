//! The broker's view of the registry (`kelp_registry::catalog`): ids, the subjects they are
//! registered under, and record names for the subject-name strategies, kept in step with the
//! registry as it changes.

use kelp_core::schemas::{Field, FieldValidation, SchemaCatalog, SchemaCheck, SubjectStrategy};
use kelp_registry::catalog::Catalog;
use kelp_registry::{Outcome, Registry, Request};
use serde_json::{Value, json};

/// Sends a request, applying the records of a write; the status.
fn call(registry: &mut Registry, method: &str, path: &str, body: &Value) -> u16 {
    let body = body.to_string();
    let reply = match registry.handle(&Request { method, path, query: "", body: body.as_bytes() }) {
        Outcome::Reply(r) => r,
        Outcome::Write { records, reply } => {
            for r in records {
                registry.apply(&r.key, r.value.as_deref()).expect("own records apply");
            }
            reply
        }
    };
    reply.status
}

fn register(registry: &mut Registry, subject: &str, schema_type: &str, schema: &str) {
    let body = json!({"schema": schema, "schemaType": schema_type});
    assert_eq!(call(registry, "POST", &format!("/subjects/{subject}/versions"), &body), 200, "{subject}");
}

fn check(
    catalog: &Catalog,
    topic: &str,
    field: Field,
    strategy: SubjectStrategy,
    id: i32,
    payload: &[u8],
) -> Result<(), String> {
    catalog.check(&SchemaCheck { topic, field, validation: FieldValidation { strategy }, id, payload })
}

const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"}]}"#;
const PROTO: &str = "syntax = \"proto3\";\npackage shop;\nmessage Item { string sku = 1; }\nmessage Basket { message Line { int32 n = 1; } map<string, int32> counts = 1; }\n";
const JSON_SCHEMA: &str = r#"{"title":"shop.Refund","type":"object"}"#;

#[test]
fn ids_are_checked_against_the_subject_each_strategy_names() {
    use SubjectStrategy::{RecordName, TopicName, TopicRecordName};
    let mut registry = Registry::new("c");
    let catalog = Catalog::new();
    register(&mut registry, "orders-value", "AVRO", ORDER);
    register(&mut registry, "shop.Order", "AVRO", ORDER);
    catalog.sync(&registry);
    // One schema, id 1, under two subjects.
    assert_eq!(check(&catalog, "orders", Field::Value, TopicName, 1, b""), Ok(()));
    assert_eq!(check(&catalog, "any", Field::Value, RecordName, 1, b""), Ok(()));
    let err = check(&catalog, "orders", Field::Key, TopicName, 1, b"").unwrap_err();
    assert_eq!(err, "schema id 1 is not registered under subject orders-key");
    let err = check(&catalog, "orders", Field::Value, TopicRecordName, 1, b"").unwrap_err();
    assert_eq!(err, "schema id 1 is not registered under subject orders-shop.Order");
    assert_eq!(
        check(&catalog, "orders", Field::Value, TopicName, 2, b"").unwrap_err(),
        "schema id 2 is not in the schema registry"
    );

    // A new id is seen after the next sync, not before.
    register(&mut registry, "orders-shop.Order", "JSON", JSON_SCHEMA);
    assert!(check(&catalog, "orders", Field::Value, TopicRecordName, 2, b"").is_err());
    catalog.sync(&registry);
    let err = check(&catalog, "orders", Field::Value, TopicRecordName, 2, b"").unwrap_err();
    assert_eq!(err, "schema id 2 is not registered under subject orders-shop.Refund", "a JSON Schema's title names it");

    // A soft-deleted version no longer counts.
    assert_eq!(call(&mut registry, "DELETE", "/subjects/orders-value/versions/1", &json!(null)), 200);
    catalog.sync(&registry);
    assert!(check(&catalog, "orders", Field::Value, TopicName, 1, b"").is_err());
    assert_eq!(check(&catalog, "any", Field::Value, RecordName, 1, b""), Ok(()));
}

#[test]
fn a_protobuf_record_is_named_by_the_message_its_indexes_pick() {
    let mut registry = Registry::new("c");
    let catalog = Catalog::new();
    register(&mut registry, "shop.Item", "PROTOBUF", PROTO);
    catalog.sync(&registry);
    let check = |payload: &[u8]| check(&catalog, "t", Field::Value, SubjectStrategy::RecordName, 1, payload);
    // [0] (written as the single byte 0, or as count 1 then 0) is the first message, Item.
    assert_eq!(check(&[0, 0x0a, 0x01, b'x']), Ok(()));
    assert_eq!(check(&[2, 0]), Ok(()));
    // [1] is Basket, [1, 0] its nested Line (the map's entry type does not count).
    assert_eq!(check(&[2, 2]).unwrap_err(), "schema id 1 is not registered under subject shop.Basket");
    assert_eq!(check(&[4, 2, 0]).unwrap_err(), "schema id 1 is not registered under subject shop.Basket.Line");
    // Indexes that point nowhere, or do not parse, leave no name.
    for bad in [&[2, 4][..], &[4, 2, 2], &[], &[0x80]] {
        assert!(check(bad).unwrap_err().contains("has no record name"), "{bad:?}");
    }
}
