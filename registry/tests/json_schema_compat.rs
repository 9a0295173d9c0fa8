//! JSON Schema compatibility, table-driven: each row is an (old, new) pair and the verdicts for
//! BACKWARD (the new schema accepts what the old one accepted), FORWARD (the other way round)
//! and FULL (both), worked out by hand from Confluent's documented rules and its
//! `SchemaDiff.COMPATIBLE_CHANGES` (strict policy): open and closed content models, required
//! properties, type widening, ranges, lengths, enums, combined types, arrays and
//! `additionalProperties`. A last test runs JSON schemas through the registry's HTTP API.

use kelp_registry::json_schema::{self, JsonSchema};
use kelp_registry::{Body, Outcome, Registry, Request};
use serde_json::{Value, json};

const OK: bool = true;
const NO: bool = false;

/// (name, old, new, backward, forward)
const CASES: &[(&str, &str, &str, bool, bool)] = &[
    (
        "identical",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        OK,
        OK,
    ),
    (
        "whitespace and key order only",
        r#"{"type":"string","maxLength":3}"#,
        r#"{ "maxLength": 3, "type": "string" }"#,
        OK,
        OK,
    ),
    // Open content model (no additionalProperties).
    (
        "open: optional property added",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}"#,
        NO,
        OK,
    ),
    (
        "open: optional property removed",
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        OK,
        NO,
    ),
    (
        "open: property with empty schema added",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{}}}"#,
        OK,
        OK,
    ),
    (
        "open: required property added",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"required":["b"]}"#,
        NO,
        OK,
    ),
    // Closed content model (additionalProperties: false).
    (
        "closed: optional property added",
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}"#,
        OK,
        NO,
    ),
    (
        "closed: property removed",
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
        NO,
        OK,
    ),
    (
        "closed: required property added",
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"required":["b"],"additionalProperties":false}"#,
        NO,
        NO,
    ),
    (
        "closed: required property with default added",
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string","default":"x"}},"required":["b"],"additionalProperties":false}"#,
        OK,
        NO,
    ),
    (
        "closed: property with false schema removed",
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":false},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
        OK,
        OK,
    ),
    (
        "closed to open",
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        OK,
        NO,
    ),
    (
        "open to closed",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#,
        NO,
        OK,
    ),
    // Partially open content models (additionalProperties or patternProperties as a schema).
    (
        "partial: added property covered",
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
        OK,
        OK,
    ),
    (
        "partial: added property not covered",
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"additionalProperties":{"type":"string"}}"#,
        NO,
        NO,
    ),
    (
        "partial: pattern property covers the addition",
        r#"{"type":"object","patternProperties":{"^s_":{"type":"string"}},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"s_name":{"type":"string"}},"patternProperties":{"^s_":{"type":"string"}},"additionalProperties":false}"#,
        OK,
        OK,
    ),
    (
        "additionalProperties schema added",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{"type":"string"}}"#,
        NO,
        OK,
    ),
    (
        "additionalProperties schema widened",
        r#"{"type":"object","additionalProperties":{"type":"string"}}"#,
        r#"{"type":"object","additionalProperties":{"type":["string","integer"]}}"#,
        OK,
        NO,
    ),
    // Required.
    (
        "optional made required",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}"#,
        NO,
        OK,
    ),
    (
        "required made optional",
        r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        OK,
        NO,
    ),
    (
        "made required with a default",
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string","default":"x"}},"required":["a"]}"#,
        OK,
        OK,
    ),
    // Types.
    ("string to integer", r#"{"type":"string"}"#, r#"{"type":"integer"}"#, NO, NO),
    ("integer to number", r#"{"type":"integer"}"#, r#"{"type":"number"}"#, OK, NO),
    ("number to integer", r#"{"type":"number"}"#, r#"{"type":"integer"}"#, NO, OK),
    ("string to nullable string", r#"{"type":"string"}"#, r#"{"type":["string","null"]}"#, OK, NO),
    ("type union extended", r#"{"type":["string","null"]}"#, r#"{"type":["string","null","integer"]}"#, OK, NO),
    ("empty schema to string", r#"{}"#, r#"{"type":"string"}"#, NO, OK),
    ("string to enum", r#"{"type":"string"}"#, r#"{"enum":["a","b"]}"#, NO, NO),
    (
        "nested property type changed",
        r#"{"type":"object","properties":{"address":{"type":"object","properties":{"zip":{"type":"string"}}}}}"#,
        r#"{"type":"object","properties":{"address":{"type":"object","properties":{"zip":{"type":"integer"}}}}}"#,
        NO,
        NO,
    ),
    (
        "title and description changed",
        r#"{"type":"string","title":"A","description":"one"}"#,
        r#"{"type":"string","title":"B","description":"two"}"#,
        OK,
        OK,
    ),
    // Strings.
    ("maxLength added", r#"{"type":"string"}"#, r#"{"type":"string","maxLength":10}"#, NO, OK),
    ("maxLength increased", r#"{"type":"string","maxLength":10}"#, r#"{"type":"string","maxLength":20}"#, OK, NO),
    ("minLength decreased", r#"{"type":"string","minLength":5}"#, r#"{"type":"string","minLength":2}"#, OK, NO),
    ("minLength added", r#"{"type":"string"}"#, r#"{"type":"string","minLength":1}"#, NO, OK),
    ("pattern added", r#"{"type":"string"}"#, r#"{"type":"string","pattern":"^[a-z]+$"}"#, NO, OK),
    (
        "pattern changed",
        r#"{"type":"string","pattern":"^[a-z]+$"}"#,
        r#"{"type":"string","pattern":"^[A-Z]+$"}"#,
        NO,
        NO,
    ),
    // Numbers.
    ("maximum increased", r#"{"type":"number","maximum":100}"#, r#"{"type":"number","maximum":200}"#, OK, NO),
    ("minimum added", r#"{"type":"number"}"#, r#"{"type":"number","minimum":0}"#, NO, OK),
    ("minimum decreased", r#"{"type":"integer","minimum":0}"#, r#"{"type":"integer","minimum":-10}"#, OK, NO),
    (
        "exclusiveMaximum increased",
        r#"{"type":"number","exclusiveMaximum":10}"#,
        r#"{"type":"number","exclusiveMaximum":20}"#,
        OK,
        NO,
    ),
    ("multipleOf expanded", r#"{"type":"integer","multipleOf":2}"#, r#"{"type":"integer","multipleOf":4}"#, NO, OK),
    ("multipleOf changed", r#"{"type":"integer","multipleOf":2}"#, r#"{"type":"integer","multipleOf":3}"#, NO, NO),
    // Enums and const.
    ("enum extended", r#"{"enum":["a","b"]}"#, r#"{"enum":["a","b","c"]}"#, OK, NO),
    ("enum changed", r#"{"enum":["a","b"]}"#, r#"{"enum":["a","c"]}"#, NO, NO),
    ("enum reordered", r#"{"enum":["a","b"]}"#, r#"{"enum":["b","a"]}"#, OK, OK),
    ("typed enum narrowed", r#"{"type":"string","enum":["a","b"]}"#, r#"{"type":"string","enum":["a"]}"#, NO, OK),
    ("const changed", r#"{"const":"x"}"#, r#"{"const":"y"}"#, NO, NO),
    // Combined types.
    (
        "oneOf extended",
        r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#,
        r#"{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"boolean"}]}"#,
        OK,
        NO,
    ),
    (
        "oneOf subschema changed",
        r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#,
        r#"{"oneOf":[{"type":"boolean"},{"type":"integer"}]}"#,
        NO,
        NO,
    ),
    (
        "oneOf subschemas reordered",
        r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#,
        r#"{"oneOf":[{"type":"integer"},{"type":"string"}]}"#,
        OK,
        OK,
    ),
    (
        "anyOf to oneOf",
        r#"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#,
        r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#,
        NO,
        OK,
    ),
    (
        "allOf loses a constraint",
        r#"{"allOf":[{"type":"string"},{"maxLength":10}]}"#,
        r#"{"allOf":[{"type":"string"}]}"#,
        OK,
        NO,
    ),
    ("singleton oneOf unwrapped", r#"{"oneOf":[{"type":"string"}]}"#, r#"{"type":"string"}"#, OK, OK),
    ("not extended", r#"{"not":{"type":"string"}}"#, r#"{"not":{"type":["string","integer"]}}"#, NO, OK),
    // Arrays.
    (
        "items widened",
        r#"{"type":"array","items":{"type":"string"}}"#,
        r#"{"type":"array","items":{"type":["string","integer"]}}"#,
        OK,
        NO,
    ),
    (
        "items narrowed",
        r#"{"type":"array","items":{"type":"string"}}"#,
        r#"{"type":"array","items":{"type":"string","maxLength":5}}"#,
        NO,
        OK,
    ),
    (
        "maxItems added",
        r#"{"type":"array","items":{"type":"string"}}"#,
        r#"{"type":"array","items":{"type":"string"},"maxItems":3}"#,
        NO,
        OK,
    ),
    ("minItems decreased", r#"{"type":"array","minItems":3}"#, r#"{"type":"array","minItems":1}"#, OK, NO),
    ("uniqueItems added", r#"{"type":"array"}"#, r#"{"type":"array","uniqueItems":true}"#, NO, OK),
    (
        "tuple item added to open array",
        r#"{"type":"array","items":[{"type":"string"}]}"#,
        r#"{"type":"array","items":[{"type":"string"},{"type":"integer"}]}"#,
        NO,
        OK,
    ),
    (
        "tuple item added to closed array",
        r#"{"type":"array","items":[{"type":"string"}],"additionalItems":false}"#,
        r#"{"type":"array","items":[{"type":"string"},{"type":"integer"}],"additionalItems":false}"#,
        OK,
        NO,
    ),
    // Other object keywords and references.
    ("maxProperties added", r#"{"type":"object"}"#, r#"{"type":"object","maxProperties":5}"#, NO, OK),
    (
        "dependency array added",
        r#"{"type":"object","properties":{"a":{},"b":{}}}"#,
        r#"{"type":"object","properties":{"a":{},"b":{}},"dependencies":{"a":["b"]}}"#,
        NO,
        OK,
    ),
    (
        "local $ref target narrowed",
        r##"{"definitions":{"s":{"type":"string"}},"type":"object","properties":{"a":{"$ref":"#/definitions/s"}}}"##,
        r##"{"definitions":{"s":{"type":"string","maxLength":4}},"type":"object","properties":{"a":{"$ref":"#/definitions/s"}}}"##,
        NO,
        OK,
    ),
    (
        "2020-12 prefixItems closed, item added",
        r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":false}"#,
        r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}"#,
        OK,
        NO,
    ),
];

fn parse(text: &str) -> JsonSchema {
    json_schema::parse(text, &[]).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn confluent_rules_table() {
    assert!(CASES.len() >= 40);
    let mut failures = Vec::new();
    for &(name, old, new, backward, forward) in CASES {
        let (o, n) = (parse(old), parse(new));
        let back = json_schema::check(&n, &o);
        let fwd = json_schema::check(&o, &n);
        let full = back.is_empty() && fwd.is_empty();
        if back.is_empty() != backward {
            failures.push(format!("{name}: BACKWARD expected {backward}, got {back:?}"));
        }
        if fwd.is_empty() != forward {
            failures.push(format!("{name}: FORWARD expected {forward}, got {fwd:?}"));
        }
        if full != (backward && forward) {
            failures.push(format!("{name}: FULL expected {}", backward && forward));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn messages_carry_type_and_path() {
    let old = parse(r#"{"type":"object","properties":{"foo":{"type":"string","maxLength":10}}}"#);
    let new = parse(r#"{"type":"object","properties":{"foo":{"type":"string","maxLength":5}}}"#);
    assert_eq!(
        json_schema::check(&new, &old),
        [
            "{errorType:'MAX_LENGTH_DECREASED', description:'The value at path '#/properties/foo/maxLength' in the new schema is less than its value in the old schema'}"
        ]
    );
    let old = parse(r#"{"type":"object","properties":{"foo":{"type":"string"}},"additionalProperties":false}"#);
    let new = parse(r#"{"type":"object","properties":{},"additionalProperties":false}"#);
    let errs = json_schema::check(&new, &old);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("{errorType:'PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL'"), "{errs:?}");
    assert!(errs[0].contains("'#/properties/foo'"), "{errs:?}");
    // Compatible differences are found but not reported.
    let diffs = json_schema::differences(&old, &new).unwrap();
    assert!(
        diffs.iter().any(|d| d.error_type == "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" && d.is_compatible())
    );
}

fn call(registry: &mut Registry, method: &str, target: &str, body: &Value) -> (u16, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let body = body.to_string();
    let reply = match registry.handle(&Request { method, path, query, body: body.as_bytes() }) {
        Outcome::Reply(reply) => reply,
        Outcome::Write { records, reply } => {
            for record in records {
                registry.apply(&record.key, record.value.as_deref()).expect("own records apply");
            }
            reply
        }
    };
    let body = match reply.body {
        Body::Json(v) => v,
        Body::Text(t) => Value::String(t),
    };
    (reply.status, body)
}

#[test]
fn json_schemas_through_the_registry() {
    let mut r = Registry::new("kafka-cluster-1");
    let v1 = r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#;
    let body = json!({"schemaType": "JSON", "schema": v1});
    assert_eq!(call(&mut r, "POST", "/subjects/s/versions", &body), (200, json!({"id": 1})));
    // Stored in canonical form: the same schema with other whitespace is the same id.
    let spaced = json!({"schemaType": "JSON", "schema": v1.replace(',', ", ")});
    assert_eq!(call(&mut r, "POST", "/subjects/s/versions", &spaced), (200, json!({"id": 1})));
    // BACKWARD (the default): adding an optional property to a closed model is fine.
    let v2 =
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"additionalProperties":false}"#;
    let (status, _) = call(&mut r, "POST", "/subjects/s/versions", &json!({"schemaType": "JSON", "schema": v2}));
    assert_eq!(status, 200);
    // Removing one from a closed model is not.
    let (status, body) = call(
        &mut r,
        "POST",
        "/compatibility/subjects/s/versions/latest?verbose=true",
        &json!({"schemaType": "JSON", "schema": v1}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["is_compatible"], json!(false), "{body}");
    let text = body.to_string();
    assert!(text.contains("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"), "{text}");
    // FORWARD: the latest (v2) must read data written with the new schema; dropping the closed
    // model's property `b` breaks that, and the message names the old schema as the reader.
    call(&mut r, "PUT", "/config/s", &json!({"compatibility": "FORWARD"}));
    let v3 = r#"{"type":"object","properties":{"a":{"type":"string"}}}"#;
    let (status, body) = call(
        &mut r,
        "POST",
        "/compatibility/subjects/s/versions/latest?verbose=true",
        &json!({"schemaType": "JSON", "schema": v3}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["is_compatible"], json!(false), "{body}");
    let text = body.to_string();
    assert!(
        text.contains("OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL")
            && text.contains("The old schema has an open content model"),
        "{text}"
    );
    // An invalid JSON schema is refused with 422.
    let (status, _) =
        call(&mut r, "POST", "/subjects/t/versions", &json!({"schemaType": "JSON", "schema": r#"{"type":"nope"}"#}));
    assert_eq!(status, 422);
}
