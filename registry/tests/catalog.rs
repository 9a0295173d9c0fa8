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
    catalog.check(&SchemaCheck { topic, field, validation: FieldValidation { strategy, payload: false }, id, payload })
}

/// A payload-mode check of `topic`'s values under TopicNameStrategy.
fn decodes_in(catalog: &Catalog, topic: &str, id: i32, payload: &[u8]) -> Result<(), String> {
    let validation = FieldValidation { strategy: SubjectStrategy::TopicName, payload: true };
    catalog.check(&SchemaCheck { topic, field: Field::Value, validation, id, payload })
}

/// The same for `orders`.
fn decodes(catalog: &Catalog, id: i32, payload: &[u8]) -> Result<(), String> {
    decodes_in(catalog, "orders", id, payload)
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
    // [1] is Basket, [1, 0] its nested Line, [1, 1] the entry type of its map, declared after
    // Line (Confluent's Python and Go serializers count map entries).
    assert_eq!(check(&[2, 2]).unwrap_err(), "schema id 1 is not registered under subject shop.Basket");
    assert_eq!(check(&[4, 2, 0]).unwrap_err(), "schema id 1 is not registered under subject shop.Basket.Line");
    let entry = check(&[4, 2, 2]).unwrap_err();
    assert_eq!(entry, "schema id 1 is not registered under subject shop.Basket.CountsEntry");
    // Indexes that point nowhere, or do not parse, leave no name.
    for bad in [&[2, 4][..], &[4, 2, 4], &[], &[0x80]] {
        assert!(check(bad).unwrap_err().contains("has no record name"), "{bad:?}");
    }
}

const RICH: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"qty","type":{"type":"array","items":"int"}},
  {"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","PAID"]}},
  {"name":"tags","type":{"type":"map","values":"string"}},
  {"name":"code","type":{"type":"fixed","name":"Code","size":2}},
  {"name":"ok","type":"boolean"},
  {"name":"price","type":"double"}]}"#;

#[test]
fn payload_mode_decodes_an_avro_datum_exactly() {
    use apache_avro::types::Value as A;
    let mut registry = Registry::new("c");
    let catalog = Catalog::new();
    register(&mut registry, "orders-value", "AVRO", RICH);
    catalog.sync(&registry);
    let schema = apache_avro::Schema::parse_str(RICH).expect("schema");
    let value = A::Record(vec![
        ("id".into(), A::Long(-7)),
        ("note".into(), A::Union(1, Box::new(A::String("é".into())))),
        ("qty".into(), A::Array(vec![A::Int(1), A::Int(-2)])),
        ("state".into(), A::Enum(1, "PAID".into())),
        ("tags".into(), A::Map([("k".to_string(), A::String("v".into()))].into())),
        ("code".into(), A::Fixed(2, vec![1, 2])),
        ("ok".into(), A::Boolean(true)),
        ("price".into(), A::Double(1.5)),
    ]);
    let good = apache_avro::to_avro_datum(&schema, value).expect("encodes");
    assert_eq!(decodes(&catalog, 1, &good), Ok(()));
    // Id mode does not look at the payload.
    assert_eq!(check(&catalog, "orders", Field::Value, SubjectStrategy::TopicName, 1, b"junk"), Ok(()));

    let refuse = |payload: &[u8], why: &str| {
        let err = decodes(&catalog, 1, payload).unwrap_err();
        assert!(err.starts_with("the value does not decode with schema id 1: "), "{err}");
        assert!(err.contains(why), "{why}: {err}");
    };
    refuse(&good[..good.len() - 1], "a double runs past the end");
    let mut longer = good.clone();
    longer.push(0);
    refuse(&longer, "1 bytes left over");
    // The union index (the second byte: id -7 is one byte) out of range.
    let mut bad_union = good.clone();
    bad_union[1] = 4;
    refuse(&bad_union, "a union branch index 2 of 2");
    refuse(b"", "a number runs past the end");
    // A string that is not UTF-8.
    let mut not_utf8 = good.clone();
    let at = good.iter().position(|&b| b == 0xc3).expect("the é");
    not_utf8[at] = 0xff;
    refuse(&not_utf8, "not UTF-8");
    // A huge announced array of a zero-byte type is refused without walking it.
    register(&mut registry, "nulls-value", "AVRO", r#"{"type":"array","items":"null"}"#);
    catalog.sync(&registry);
    let nulls = |payload: &[u8]| decodes_in(&catalog, "nulls", 2, payload);
    assert_eq!(nulls(&[6, 0]), Ok(()), "three nulls");
    let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0];
    assert!(nulls(&huge).unwrap_err().contains("more values than the payload can hold"));
    // Many zero-byte values in few bytes: the walk stops at its budget, not at the end.
    let wide = format!(
        r#"{{"type":"array","items":{{"type":"record","name":"W","fields":[{}]}}}}"#,
        (0..200).map(|i| format!(r#"{{"name":"f{i}","type":"null"}}"#)).collect::<Vec<_>>().join(",")
    );
    register(&mut registry, "wide-value", "AVRO", &wide);
    catalog.sync(&registry);
    let mut payload = vec![0xfe, 0xff, 0x0b];
    payload.resize(100_000, 0);
    let wide = |payload: &[u8]| decodes_in(&catalog, "wide", 3, payload);
    assert!(wide(&payload).unwrap_err().contains("more values than the payload can hold"));
    assert_eq!(wide(&[4, 0]), Ok(()), "two items of 200 nulls each");
    // A recursive list hundreds of elements long is a datum.
    register(
        &mut registry,
        "list-value",
        "AVRO",
        r#"{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"]}]}"#,
    );
    catalog.sync(&registry);
    let mut list = Vec::new();
    for _ in 0..300 {
        list.extend_from_slice(&[2, 2]);
    }
    list.extend_from_slice(&[2, 0]);
    let list_check = |payload: &[u8]| decodes_in(&catalog, "list", 4, payload);
    assert_eq!(list_check(&list), Ok(()));
}

#[test]
fn payload_mode_decodes_protobuf_messages_and_json_documents() {
    let mut registry = Registry::new("c");
    let catalog = Catalog::new();
    register(&mut registry, "orders-value", "PROTOBUF", PROTO);
    catalog.sync(&registry);
    // Item { sku: "x" } is field 1, length-delimited: 0x0a 0x01 'x'; indexes [0] as one 0 byte.
    assert_eq!(decodes(&catalog, 1, &[0, 0x0a, 0x01, b'x']), Ok(()));
    // Basket ([1]) with counts {"a": 2}: field 1, an entry of key 1 and value 2.
    let entry = [0x0a, 0x01, b'a', 0x10, 0x02];
    let mut basket = vec![2, 2, 0x0a, entry.len() as u8];
    basket.extend_from_slice(&entry);
    assert_eq!(decodes(&catalog, 1, &basket), Ok(()));
    let err = decodes(&catalog, 1, &[0, 0x0a, 0x05, b'x']).unwrap_err();
    assert!(err.contains("not a shop.Item message"), "{err}");
    // sku given as a varint: the wrong wire type for a string.
    let err = decodes(&catalog, 1, &[0, 0x08, 0x01]).unwrap_err();
    assert!(err.contains("not a shop.Item message"), "{err}");
    let err = decodes(&catalog, 1, &[2, 6]).unwrap_err();
    assert!(err.contains("point at no message"), "{err}");

    register(
        &mut registry,
        "refunds-value",
        "JSON",
        r#"{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}"#,
    );
    catalog.sync(&registry);
    let json = |payload: &[u8]| decodes_in(&catalog, "refunds", 2, payload);
    assert_eq!(json(br#"{"id": 3, "extra": true}"#), Ok(()));
    let err = json(br#"{"id": "3"}"#).unwrap_err();
    assert!(err.contains("at '/id'"), "{err}");
    assert!(json(b"{}").unwrap_err().contains("not valid against the JSON Schema"));
    assert!(json(b"{not json").unwrap_err().contains("not JSON"));
}

#[test]
fn payloads_are_typed_by_their_schema_and_protobuf_message() {
    use kelp_core::typed::{Cell, Column, ColumnType, Scalar, Typing};
    let mut registry = Registry::new("c");
    let catalog = Catalog::new();
    register(&mut registry, "orders-value", "AVRO", ORDER);
    register(&mut registry, "items-value", "PROTOBUF", PROTO);
    catalog.sync(&registry);
    let Typing::Typed(order) = catalog.typed(1, &[0x54]) else { panic!("an Avro long decodes") };
    assert_eq!(&*order.columns, &[Column::new("id", ColumnType::Scalar(Scalar::Int64), true)][..]);
    assert_eq!(order.cells, vec![Cell::Int64(42)]);
    let Typing::Typed(again) = catalog.typed(1, &[0x02]) else { panic!("decodes") };
    assert!(std::sync::Arc::ptr_eq(&order.columns, &again.columns), "one shape per schema, made once");
    match catalog.typed(1, &[0x80]) {
        Typing::Undecodable(columns, why) => {
            assert_eq!(columns, order.columns);
            assert!(why.contains("runs past the end"), "{why}");
        }
        other => panic!("a cut varint: {other:?}"),
    }
    // Protobuf: the message indexes pick the message, and with it the columns.
    let Typing::Typed(item) = catalog.typed(2, &[0, 0x0a, 1, b'x']) else { panic!("an Item") };
    assert_eq!(&*item.columns, &[Column::new("sku", ColumnType::Scalar(Scalar::String), true)][..]);
    assert_eq!(item.cells, vec![Cell::String("x".into())]);
    let Typing::Typed(basket) = catalog.typed(2, &[2, 2]) else { panic!("an empty Basket") };
    assert_eq!(basket.columns.len(), 1);
    assert_eq!(basket.cells, vec![Cell::List(vec![])]);
    assert_eq!(catalog.typed(2, &[2, 8]), Typing::Untyped, "indexes that name no message");
    assert_eq!(catalog.typed(3, &[0]), Typing::Untyped, "an unknown id");
}
