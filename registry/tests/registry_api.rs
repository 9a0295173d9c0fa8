//! The registry driven end to end in memory: every `Write` outcome is executed by applying its
//! records, which also go to a log standing in for `_schemas`, so each test round-trips through
//! Confluent's record layout and a restart is a fresh registry fed the same log.

use kelp_registry::{Body, Outcome, Registry, Request};
use serde_json::{Value, json};

type Log = Vec<(Vec<u8>, Option<Vec<u8>>)>;

struct Harness {
    registry: Registry,
    log: Log,
}

const V1: &str = r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"}]}"#;
const V2_DEFAULT: &str = r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0}]}"#;
const V2_NO_DEFAULT: &str =
    r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"},{"name":"age","type":"int"}]}"#;
const OTHER: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;

fn schema_body(schema: &str) -> Value {
    json!({ "schema": schema })
}

impl Harness {
    fn new() -> Self {
        Self { registry: Registry::new("kafka-cluster-1"), log: Vec::new() }
    }

    /// Sends a request; executes a write by appending and applying its records.
    fn call(&mut self, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let outcome = self.registry.handle(&Request { method, path, query, body });
        let reply = match outcome {
            Outcome::Reply(reply) => reply,
            Outcome::Write { records, reply } => {
                for record in records {
                    self.registry.apply(&record.key, record.value.as_deref()).expect("own records apply");
                    self.log.push((record.key, record.value));
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

    /// Like `call`, but says whether the request wanted to write.
    fn writes(&self, method: &str, target: &str, body: &Value) -> bool {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let body = body.to_string();
        let req = Request { method, path, query, body: body.as_bytes() };
        matches!(self.registry.handle(&req), Outcome::Write { .. })
    }

    fn get(&mut self, target: &str) -> (u16, Value) {
        self.call("GET", target, b"")
    }

    fn post(&mut self, target: &str, body: &Value) -> (u16, Value) {
        self.call("POST", target, body.to_string().as_bytes())
    }

    fn put(&mut self, target: &str, body: &Value) -> (u16, Value) {
        self.call("PUT", target, body.to_string().as_bytes())
    }

    fn delete(&mut self, target: &str) -> (u16, Value) {
        self.call("DELETE", target, b"")
    }

    fn register(&mut self, subject: &str, schema: &str) -> (u16, Value) {
        self.post(&format!("/subjects/{subject}/versions"), &schema_body(schema))
    }

    /// A fresh registry fed the same `_schemas` log.
    fn restarted(&self) -> Self {
        let mut registry = Registry::new("kafka-cluster-1");
        for (key, value) in &self.log {
            registry.apply(key, value.as_deref()).expect("log applies");
        }
        Self { registry, log: self.log.clone() }
    }
}

fn error_code(body: &Value) -> i64 {
    body["error_code"].as_i64().unwrap_or_else(|| panic!("not an error: {body}"))
}

#[test]
fn root_types_and_metadata() {
    let mut h = Harness::new();
    assert_eq!(h.get("/"), (200, json!({})));
    assert_eq!(h.get("/schemas/types"), (200, json!(["JSON", "PROTOBUF", "AVRO"])));
    assert_eq!(h.get("/contexts"), (200, json!(["."])));
    let expected = json!({"scope": {"path": [], "clusters": {"kafka-cluster": "kafka-cluster-1", "schema-registry-cluster": "schema-registry"}}});
    assert_eq!(h.get("/v1/metadata/id"), (200, expected));
    assert_eq!(h.get("/nope").0, 404);
    assert_eq!(h.call("PATCH", "/subjects", b"").0, 405);
}

#[test]
fn register_lookup_and_list() {
    let mut h = Harness::new();
    assert_eq!(h.register("users-value", V1), (200, json!({"id": 1})));
    assert_eq!(h.get("/subjects"), (200, json!(["users-value"])));
    assert_eq!(h.get("/subjects/users-value/versions"), (200, json!([1])));

    let (status, latest) = h.get("/subjects/users-value/versions/latest");
    assert_eq!(status, 200);
    assert_eq!(
        (latest["subject"].clone(), latest["version"].clone(), latest["id"].clone()),
        (json!("users-value"), json!(1), json!(1))
    );
    assert!(latest.get("schemaType").is_none(), "AVRO is implied");
    assert!(latest.get("references").is_none());
    let stored = latest["schema"].as_str().expect("schema text").to_owned();
    assert_eq!(h.get("/subjects/users-value/versions/1"), (200, latest.clone()));
    assert_eq!(h.get("/subjects/users-value/versions/-1"), (200, latest.clone()));
    assert_eq!(h.get("/subjects/users-value/versions/1/schema"), (200, json!(stored)));
    assert_eq!(h.get("/schemas/ids/1"), (200, json!({"schema": stored})));
    assert_eq!(h.get("/schemas/ids/1/schema"), (200, json!(stored)));
    assert_eq!(h.get("/schemas/ids/1/subjects"), (200, json!(["users-value"])));
    assert_eq!(h.get("/schemas/ids/1/versions"), (200, json!([{"subject": "users-value", "version": 1}])));
    assert_eq!(h.get("/schemas"), (200, json!([latest.clone()])));

    // Lookup answers the version entity.
    assert_eq!(h.post("/subjects/users-value", &schema_body(V1)), (200, latest));
    let (status, body) = h.post("/subjects/users-value", &schema_body(OTHER));
    assert_eq!((status, error_code(&body), body["message"].clone()), (404, 40403, json!("Schema not found")));
    let (status, body) = h.post("/subjects/nobody", &schema_body(V1));
    assert_eq!((status, body["message"].clone()), (404, json!("Subject 'nobody' not found.")));

    // Not found, bad versions, bad ids.
    let (status, body) = h.get("/subjects/users-value/versions/2");
    assert_eq!((status, error_code(&body), body["message"].clone()), (404, 40402, json!("Version 2 not found.")));
    let (status, body) = h.get("/subjects/nobody/versions");
    assert_eq!((status, error_code(&body)), (404, 40401));
    let (status, body) = h.get("/subjects/users-value/versions/abc");
    assert_eq!((status, error_code(&body)), (422, 42202));
    assert_eq!(
        body["message"],
        "The specified version 'abc' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    );
    assert_eq!(error_code(&h.get("/subjects/users-value/versions/0").1), 42202);
    assert_eq!(error_code(&h.get("/subjects/users-value/versions/4294967296").1), 42202);
    let (status, body) = h.get("/schemas/ids/99");
    assert_eq!((status, error_code(&body), body["message"].clone()), (404, 40403, json!("Schema 99 not found")));
    assert_eq!(h.get("/schemas/ids/99999999999").0, 404);

    // Subjects with a '/' travel percent-encoded.
    assert_eq!(h.register("a%2Fb", V1), (200, json!({"id": 1})));
    assert_eq!(h.get("/subjects?subjectPrefix=a"), (200, json!(["a/b"])));
    assert_eq!(h.get("/subjects/a%2Fb/versions"), (200, json!([1])));
}

#[test]
fn ids_are_global_and_registration_is_idempotent() {
    let mut h = Harness::new();
    assert_eq!(h.register("a", V1), (200, json!({"id": 1})));
    assert_eq!(h.register("b", OTHER), (200, json!({"id": 2})));
    h.put("/config/b", &json!({"compatibility": "NONE"}));
    // The same schema under another subject keeps its id.
    assert_eq!(h.register("b", V1), (200, json!({"id": 1})));
    assert_eq!(h.get("/subjects/b/versions"), (200, json!([1, 2])));
    assert_eq!(h.get("/schemas/ids/1/subjects"), (200, json!(["a", "b"])));
    // Registering what a subject already holds answers its id without a write.
    assert!(!h.writes("POST", "/subjects/a/versions", &schema_body(V1)));
    assert_eq!(h.register("a", V1), (200, json!({"id": 1})));
    assert_eq!(h.get("/subjects/a/versions"), (200, json!([1])));
    // A new schema gets the next id.
    assert_eq!(h.register("a", V2_DEFAULT), (200, json!({"id": 3})));
    assert_eq!(h.get("/subjects/a/versions"), (200, json!([1, 2])));
    assert_eq!(h.get("/schemas?latestOnly=true").1.as_array().map(Vec::len), Some(2));
}

#[test]
fn soft_then_hard_delete_of_versions() {
    let mut h = Harness::new();
    h.register("s", V1);
    h.register("s", V2_DEFAULT);

    let (status, body) = h.delete("/subjects/s/versions/1?permanent=true");
    assert_eq!((status, error_code(&body)), (404, 40407));
    assert_eq!(body["message"], "Subject 's' Version 1 was not deleted first before being permanently deleted");
    assert_eq!(h.delete("/subjects/s/versions/1"), (200, json!(1)));
    let (status, body) = h.delete("/subjects/s/versions/1");
    assert_eq!((status, error_code(&body)), (404, 40406));
    assert_eq!(body["message"], "Subject 's' Version 1 was soft deleted.Set permanent=true to delete permanently");
    assert_eq!(h.get("/subjects/s/versions"), (200, json!([2])));
    assert_eq!(h.get("/subjects/s/versions?deleted=true"), (200, json!([1, 2])));
    assert_eq!(error_code(&h.get("/subjects/s/versions/1").1), 40402);
    assert_eq!(h.get("/subjects/s/versions/1?deleted=true").1["version"], 1);
    // The id survives a soft delete.
    assert_eq!(h.get("/schemas/ids/1").0, 200);
    assert_eq!(h.get("/schemas/ids/1/subjects"), (200, json!([])));
    assert_eq!(h.get("/schemas/ids/1/subjects?deleted=true"), (200, json!(["s"])));

    assert_eq!(h.delete("/subjects/s/versions/1?permanent=true"), (200, json!(1)));
    assert_eq!(h.get("/subjects/s/versions?deleted=true"), (200, json!([2])));
    assert_eq!(error_code(&h.get("/schemas/ids/1").1), 40403);
    assert_eq!(error_code(&h.delete("/subjects/s/versions/7").1), 40402);
    assert_eq!(error_code(&h.delete("/subjects/nobody/versions/1").1), 40401);
}

#[test]
fn soft_then_hard_delete_of_subjects() {
    let mut h = Harness::new();
    h.register("s", V1);
    h.register("s", V2_DEFAULT);
    h.put("/config/s", &json!({"compatibility": "NONE"}));

    let (status, body) = h.delete("/subjects/s?permanent=true");
    assert_eq!((status, error_code(&body)), (404, 40405));
    assert_eq!(body["message"], "Subject 's' was not deleted first before being permanently deleted");
    assert_eq!(h.delete("/subjects/s"), (200, json!([1, 2])));
    let (status, body) = h.delete("/subjects/s");
    assert_eq!((status, error_code(&body)), (404, 40404));
    assert_eq!(body["message"], "Subject 's' was soft deleted.Set permanent=true to delete permanently");
    assert_eq!(h.get("/subjects"), (200, json!([])));
    assert_eq!(h.get("/subjects?deleted=true"), (200, json!(["s"])));
    assert_eq!(error_code(&h.get("/subjects/s/versions").1), 40401);

    // Versions are not reused after a soft delete; the id of a known schema is.
    assert_eq!(h.register("s", V1), (200, json!({"id": 1})));
    assert_eq!(h.get("/subjects/s/versions"), (200, json!([3])));
    assert_eq!(h.delete("/subjects/s"), (200, json!([3])));

    assert_eq!(h.delete("/subjects/s?permanent=true"), (200, json!([2, 3])));
    assert_eq!(error_code(&h.delete("/subjects/s").1), 40401);
    assert_eq!(h.get("/subjects?deleted=true"), (200, json!([])));
    assert_eq!(error_code(&h.get("/config/s").1), 40408, "a hard-deleted subject loses its config");
    // After a hard delete numbering starts again; ids are never reused.
    assert_eq!(h.register("s", OTHER), (200, json!({"id": 3})));
    assert_eq!(h.get("/subjects/s/versions"), (200, json!([1])));
}

#[test]
fn references_and_referenced_by() {
    let mut h = Harness::new();
    let inner = r#"{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}"#;
    let outer = r#"{"type":"record","name":"Outer","fields":[{"name":"inner","type":"Inner"}]}"#;
    assert_eq!(h.register("inner", inner), (200, json!({"id": 1})));
    let refs = json!([{"name": "Inner", "subject": "inner", "version": 1}]);
    let body = json!({"schema": outer, "references": refs});
    assert_eq!(h.post("/subjects/outer/versions", &body), (200, json!({"id": 2})));
    assert_eq!(h.get("/subjects/outer/versions/1").1["references"], refs);
    assert_eq!(h.get("/schemas/ids/2").1["references"], refs);
    assert_eq!(h.get("/subjects/inner/versions/1/referencedby"), (200, json!([2])));

    let (status, body) = h.delete("/subjects/inner/versions/1");
    assert_eq!((status, error_code(&body)), (422, 42206));
    assert_eq!(
        body["message"],
        "One or more references exist to the schema {magic=1,keytype=SCHEMA,subject=inner,version=1}."
    );
    assert_eq!(error_code(&h.delete("/subjects/inner").1), 42206);

    let missing = json!({"schema": outer, "references": [{"name": "Inner", "subject": "inner", "version": 9}]});
    assert_eq!(error_code(&h.post("/subjects/outer/versions", &missing).1), 42201);
}

#[test]
fn config_endpoints() {
    let mut h = Harness::new();
    assert_eq!(h.get("/config"), (200, json!({"compatibilityLevel": "BACKWARD"})));
    assert_eq!(h.put("/config", &json!({"compatibility": "full"})), (200, json!({"compatibility": "FULL"})));
    assert_eq!(h.get("/config"), (200, json!({"compatibilityLevel": "FULL"})));
    let (status, body) = h.put("/config", &json!({"compatibility": "SIDEWAYS"}));
    assert_eq!((status, error_code(&body)), (422, 42203));
    assert_eq!(
        body["message"],
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    );

    let (status, body) = h.get("/config/s");
    assert_eq!((status, error_code(&body)), (404, 40408));
    assert_eq!(body["message"], "Subject 's' does not have subject-level compatibility configured");
    assert_eq!(h.get("/config/s?defaultToGlobal=true"), (200, json!({"compatibilityLevel": "FULL"})));
    assert_eq!(h.put("/config/s", &json!({"compatibility": "NONE"})), (200, json!({"compatibility": "NONE"})));
    assert_eq!(h.get("/config/s"), (200, json!({"compatibilityLevel": "NONE"})));
    assert_eq!(h.delete("/config/s"), (200, json!({"compatibilityLevel": "NONE"})));
    assert_eq!(error_code(&h.get("/config/s").1), 40408);
    assert_eq!(error_code(&h.delete("/config/s").1), 40401, "nothing left to delete");
    assert_eq!(h.delete("/config"), (200, json!({"compatibilityLevel": "FULL"})));
    assert_eq!(h.get("/config"), (200, json!({"compatibilityLevel": "BACKWARD"})));

    assert_eq!(h.put("/config", &json!("FULL")).0, 400, "a body that is not an object");
    assert_eq!(h.call("PUT", "/config", b"{not json").0, 400);
}

#[test]
fn mode_endpoints_and_read_only() {
    let mut h = Harness::new();
    h.register("s", V1);
    assert_eq!(h.get("/mode"), (200, json!({"mode": "READWRITE"})));
    let (status, body) = h.put("/mode", &json!({"mode": "WRITEONLY"}));
    assert_eq!((status, error_code(&body)), (422, 42204));

    assert_eq!(h.put("/mode/s", &json!({"mode": "READONLY"})), (200, json!({"mode": "READONLY"})));
    assert_eq!(h.get("/mode/s"), (200, json!({"mode": "READONLY"})));
    let (status, body) = h.register("s", V2_DEFAULT);
    assert_eq!((status, error_code(&body)), (422, 42205));
    assert_eq!(body["message"], "Subject s in context . is in read-only mode");
    assert_eq!(error_code(&h.delete("/subjects/s").1), 42205);
    assert_eq!(h.register("t", V1), (200, json!({"id": 1})), "other subjects stay writable");
    assert_eq!(h.delete("/mode/s"), (200, json!({"mode": "READONLY"})));
    let (status, body) = h.get("/mode/s");
    assert_eq!((status, error_code(&body)), (404, 40409));
    assert_eq!(h.get("/mode/s?defaultToGlobal=true"), (200, json!({"mode": "READWRITE"})));
    assert_eq!(error_code(&h.delete("/mode/s").1), 40401, "nothing left to delete");

    let (status, body) = h.put("/mode", &json!({"mode": "IMPORT"}));
    assert_eq!(
        (status, error_code(&body), body["message"].clone()),
        (422, 42205, json!("Cannot import since found existing subjects"))
    );
    assert_eq!(h.put("/mode?force=true", &json!({"mode": "IMPORT"})), (200, json!({"mode": "IMPORT"})));
    let (status, body) = h.register("s", V2_DEFAULT);
    assert_eq!((status, body["message"].clone()), (422, json!("Subject s in context . is not in read-write mode")));

    assert_eq!(h.put("/mode", &json!({"mode": "READONLY_OVERRIDE"})).0, 200);
    assert_eq!(h.put("/mode/s", &json!({"mode": "READWRITE"})).0, 200);
    assert_eq!(error_code(&h.register("s", V2_DEFAULT).1), 42205, "a global READONLY_OVERRIDE wins");
}

#[test]
fn import_mode_with_explicit_ids_and_versions() {
    let mut h = Harness::new();
    h.register("old", V1);
    h.delete("/subjects/old");
    // Soft-deleted subjects do not block IMPORT; they are cleared.
    assert_eq!(h.put("/mode", &json!({"mode": "IMPORT"})), (200, json!({"mode": "IMPORT"})));
    assert_eq!(h.get("/subjects?deleted=true"), (200, json!([])));

    let body = json!({"schema": OTHER, "id": 100, "version": 5});
    assert_eq!(h.post("/subjects/imported/versions", &body), (200, json!({"id": 100})));
    assert_eq!(h.get("/subjects/imported/versions/5").1["id"], 100);
    let clash = json!({"schema": V1, "id": 100, "version": 6});
    let (status, body) = h.post("/subjects/imported/versions", &clash);
    assert_eq!((status, error_code(&body)), (422, 42205));
    assert_eq!(body["message"], "Overwrite new schema with id 100 in context . is not permitted.");

    assert_eq!(h.put("/mode", &json!({"mode": "READWRITE"})).0, 200);
    let (status, body) = h.post("/subjects/imported/versions", &json!({"schema": V1, "id": 7}));
    assert_eq!((status, body["message"].clone()), (422, json!("Subject imported in context . is not in import mode")));
    h.put("/config/imported", &json!({"compatibility": "NONE"}));
    assert_eq!(h.register("imported", V1), (200, json!({"id": 101})));
    assert_eq!(h.get("/subjects/imported/versions"), (200, json!([5, 6])));
}

#[test]
fn compatibility_checks() {
    let mut h = Harness::new();
    h.register("s", V1);
    let (status, body) = h.post("/compatibility/subjects/s/versions/latest?verbose=true", &schema_body(V2_NO_DEFAULT));
    assert_eq!((status, body["is_compatible"].clone()), (200, json!(false)));
    let messages: Vec<&str> = body["messages"].as_array().expect("messages").iter().filter_map(Value::as_str).collect();
    assert!(messages[0].contains("READER_FIELD_MISSING_DEFAULT_VALUE"), "{messages:?}");
    assert!(messages.contains(&"{oldSchemaVersion: 1}"), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("{oldSchema: '")), "{messages:?}");
    assert!(messages.contains(&"{validateFields: 'false', compatibility: 'BACKWARD'}"), "{messages:?}");

    assert_eq!(
        h.post("/compatibility/subjects/s/versions/1", &schema_body(V2_NO_DEFAULT)),
        (200, json!({"is_compatible": false}))
    );
    assert_eq!(
        h.post("/compatibility/subjects/s/versions?verbose=true", &schema_body(V2_DEFAULT)),
        (200, json!({"is_compatible": true, "messages": []}))
    );
    assert_eq!(error_code(&h.post("/compatibility/subjects/nobody/versions/1", &schema_body(V1)).1), 40402);
    // No latest version yet: nothing to be incompatible with (what clients ask before the first
    // registration).
    assert_eq!(
        h.post("/compatibility/subjects/nobody/versions/latest", &schema_body(V1)),
        (200, json!({"is_compatible": true}))
    );
    assert_eq!(error_code(&h.post("/compatibility/subjects/s/versions/3", &schema_body(V1)).1), 40402);
    assert_eq!(
        h.post("/compatibility/subjects/nobody/versions", &schema_body(V1)),
        (200, json!({"is_compatible": true}))
    );

    let (status, body) = h.register("s", V2_NO_DEFAULT);
    assert_eq!((status, error_code(&body)), (409, 409));
    let message = body["message"].as_str().expect("message");
    assert!(
        message.starts_with("Schema being registered is incompatible with an earlier schema for subject \"s\", details: [{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'"),
        "{message}"
    );
    h.put("/config/s", &json!({"compatibility": "NONE"}));
    assert_eq!(h.register("s", V2_NO_DEFAULT), (200, json!({"id": 2})));
    // FORWARD: the old schema reads the new one's data, and the message says so.
    h.put("/config/s", &json!({"compatibility": "FORWARD"}));
    let (status, body) = h.post("/compatibility/subjects/s/versions/latest?verbose=true", &schema_body(V1));
    assert_eq!((status, body["is_compatible"].clone()), (200, json!(false)));
    let first = body["messages"][0].as_str().expect("a message");
    assert!(first.contains("READER_FIELD_MISSING_DEFAULT_VALUE"), "{first}");
    assert!(first.contains("in the old schema has no default value and is missing in the new schema"), "{first}");
    assert_eq!(h.post("/compatibility/subjects/s/versions", &schema_body(V1)), (200, json!({"is_compatible": false})));
    assert_eq!(
        h.post("/compatibility/subjects/s/versions", &schema_body(V2_DEFAULT)),
        (200, json!({"is_compatible": true}))
    );
}

#[test]
fn bad_bodies_and_unsupported_types() {
    let mut h = Harness::new();
    assert_eq!(h.call("POST", "/subjects/s/versions", b"{\"schema\":").0, 400);
    assert_eq!(h.call("POST", "/subjects/s/versions", b"[1,2]").0, 400);
    assert_eq!(h.post("/subjects/s/versions", &json!({"schema": {"type": "string"}})).0, 400);
    assert_eq!(h.post("/subjects/s/versions", &json!({"schema": V1, "id": 1_u64 << 40})).0, 400);
    assert_eq!(error_code(&h.post("/subjects/s/versions", &json!({})).1), 42201);
    assert_eq!(error_code(&h.post("/subjects/s/versions", &json!({"schema": "{oops"})).1), 42201);
    let (status, body) =
        h.post("/subjects/s/versions", &json!({"schema": "syntax = \"proto3\"; message {", "schemaType": "PROTOBUF"}));
    assert_eq!(
        (status, body),
        (422, json!({"error_code": 42201, "message": "schema.proto:1:28: expected an identifier, but found '{'"}))
    );
    assert_eq!(error_code(&h.post("/subjects/s/versions", &json!({"schema": V1, "schemaType": "XML"})).1), 42201);
    assert_eq!(error_code(&h.register("bad%01subject", V1).1), 42208);
    // Unknown fields are tolerated.
    assert_eq!(
        h.post("/subjects/s/versions", &json!({"schema": V1, "metadata": null, "ruleSet": {}})),
        (200, json!({"id": 1}))
    );
    assert!(h.log.len() == 1, "nothing else was written");
}

#[test]
fn restart_answers_the_same() {
    let mut h = Harness::new();
    h.register("a", V1);
    h.register("a", V2_DEFAULT);
    h.register("b", V1);
    h.delete("/subjects/a/versions/1");
    h.put("/config", &json!({"compatibility": "FULL_TRANSITIVE"}));
    h.put("/mode/b", &json!({"mode": "READONLY"}));
    h.register("c", OTHER);
    h.delete("/subjects/c");
    h.delete("/subjects/c?permanent=true");

    let mut again = h.restarted();
    for target in [
        "/subjects",
        "/subjects?deleted=true",
        "/subjects/a/versions?deleted=true",
        "/subjects/a/versions/1?deleted=true",
        "/subjects/b/versions/latest",
        "/schemas?deleted=true",
        "/schemas/ids/1/versions?deleted=true",
        "/schemas/ids/3",
        "/config",
        "/mode/b",
        "/mode",
    ] {
        assert_eq!(h.get(target), again.get(target), "{target}");
    }
    assert_eq!(again.register("d", r#"{"type":"string"}"#), (200, json!({"id": 4})), "ids continue after the max seen");
}

/// Records as Confluent's `KafkaStore` writes them (JSON keys with `magic`, values with
/// `schemaType` absent for AVRO), including kinds kelp skips.
#[test]
fn reads_a_confluent_schemas_topic() {
    let records: Vec<(&str, Option<&str>)> = vec![
        (r#"{"keytype":"NOOP","magic":0}"#, None),
        (
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#,
            Some(r#"{"compatibilityLevel":"FULL","alias":null,"futureField":{"x":1}}"#),
        ),
        (
            r#"{"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}"#,
            Some(
                r#"{"subject":"orders-value","version":1,"id":21,"schema":"{\"type\":\"record\",\"name\":\"Order\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"}]}","deleted":false}"#,
            ),
        ),
        (
            r#"{"keytype":"SCHEMA","subject":"orders-value","version":2,"magic":1}"#,
            Some(
                r#"{"subject":"orders-value","version":2,"id":22,"schemaType":"AVRO","schema":"{\"type\":\"record\",\"name\":\"Order\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"note\",\"type\":\"string\",\"default\":\"\"}]}","deleted":false}"#,
            ),
        ),
        (
            r#"{"keytype":"SCHEMA","subject":"proto-value","version":1,"magic":1}"#,
            Some(
                r#"{"subject":"proto-value","version":1,"id":23,"schemaType":"PROTOBUF","references":[{"name":"other.proto","subject":"other","version":1}],"schema":"syntax = \"proto3\";\nmessage M { int32 a = 1; }\n","deleted":false}"#,
            ),
        ),
        (
            r#"{"keytype":"SCHEMA","subject":"gone","version":1,"magic":1}"#,
            Some(r#"{"subject":"gone","version":1,"id":5,"schema":"\"string\"","deleted":false}"#),
        ),
        (r#"{"keytype":"SCHEMA","subject":"gone","version":1,"magic":1}"#, None),
        (
            r#"{"keytype":"SCHEMA","subject":"old","version":1,"magic":1}"#,
            Some(r#"{"subject":"old","version":1,"id":30,"schema":"\"int\"","deleted":false}"#),
        ),
        (r#"{"keytype":"DELETE_SUBJECT","subject":"old","magic":0}"#, Some(r#"{"subject":"old","version":1}"#)),
        (
            r#"{"keytype":"MODE","subject":"orders-value","magic":0}"#,
            Some(r#"{"subject":"orders-value","mode":"READONLY"}"#),
        ),
        (
            r#"{"keytype":"CONFIG","subject":"orders-value","magic":0}"#,
            Some(r#"{"compatibilityLevel":"NONE","normalize":true}"#),
        ),
        (r#"{"keytype":"CONFIG","subject":"orders-value","magic":0}"#, None),
        (r#"{"keytype":"ASSOC","tenant":"default","magic":0}"#, Some(r#"{"anything":1}"#)),
        (
            r#"{"keytype":"SCHEMA","subject":"spaced","version":1,"magic":1}"#,
            Some(
                r#"{"subject":"spaced","version":1,"id":40,"schema":"{ \"type\" : \"fixed\", \"name\" : \"F\", \"size\" : 4 }","deleted":false}"#,
            ),
        ),
    ];
    let mut registry = Registry::new("c1");
    for (key, value) in &records {
        let result = registry.apply(key.as_bytes(), value.map(str::as_bytes));
        if key.contains("ASSOC") {
            assert_eq!(result, Err(kelp_registry::ApplyError::UnknownKeyType));
        } else {
            assert_eq!(result, Ok(()), "{key}");
        }
    }
    let mut h = Harness { registry, log: Vec::new() };
    assert_eq!(h.get("/subjects"), (200, json!(["orders-value", "proto-value", "spaced"])));
    assert_eq!(h.get("/subjects?deleted=true"), (200, json!(["old", "orders-value", "proto-value", "spaced"])));
    assert_eq!(h.get("/subjects/orders-value/versions"), (200, json!([1, 2])));
    assert_eq!(h.get("/config"), (200, json!({"compatibilityLevel": "FULL"})));
    assert_eq!(error_code(&h.get("/config/orders-value").1), 40408, "the tombstone removed it");
    assert_eq!(h.get("/mode/orders-value"), (200, json!({"mode": "READONLY"})));
    assert_eq!(error_code(&h.get("/schemas/ids/5").1), 40403);
    let proto = h.get("/schemas/ids/23").1;
    assert_eq!(proto["schemaType"], "PROTOBUF");
    assert_eq!(proto["references"], json!([{"name": "other.proto", "subject": "other", "version": 1}]));
    assert_eq!(
        h.get("/schemas/ids/21/schema").1,
        json!(r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#)
    );
    // A schema stored with another registry's text matches by canonical form: same id in a new
    // subject, and no new version in its own.
    let fixed = r#"{"type":"fixed","name":"F","size":4}"#;
    assert!(!h.writes("POST", "/subjects/spaced/versions", &schema_body(fixed)));
    assert_eq!(h.register("spaced", fixed), (200, json!({"id": 40})));
    assert_eq!(h.register("fixed-too", fixed), (200, json!({"id": 40})));
    assert_eq!(h.post("/subjects/spaced", &schema_body(fixed)).1["version"], 1);
    // The next id follows the highest seen, tombstoned ones included.
    assert_eq!(h.register("fresh", r#"{"type":"string"}"#), (200, json!({"id": 41})));
    assert_eq!(h.delete("/subjects/old?permanent=true"), (200, json!([1])));
}

/// A small deterministic generator for junk.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % from.len() as u64).unwrap_or(0);
        from[i]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

#[test]
fn garbage_records_do_not_panic_or_change_state() {
    let mut h = Harness::new();
    h.register("s", V1);
    let before = h.get("/schemas?deleted=true");
    let keys = [
        "",
        "null",
        "[]",
        "{}",
        r#"{"keytype":7}"#,
        r#"{"keytype":"SCHEMA"}"#,
        r#"{"keytype":"SCHEMA","subject":"s","version":0,"magic":1}"#,
        r#"{"keytype":"SCHEMA","subject":"s","version":99999999999,"magic":1}"#,
        r#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#,
        r#"{"keytype":"CONFIG","subject":5,"magic":0}"#,
        r#"{"keytype":"MODE","subject":"s","magic":0}"#,
        r#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#,
        r#"{"keytype":"CLEAR_SUBJECT","subject":"s","magic":0}"#,
        r#"{"keytype":"WHATEVER","magic":0}"#,
    ];
    let values = [
        "",
        "null",
        "{}",
        "[1]",
        r#"{"id":-1,"schema":"x"}"#,
        r#"{"id":1}"#,
        r#"{"id":1,"schema":"x","schemaType":"XML"}"#,
        r#"{"id":1,"schema":"x","references":[{"name":1}]}"#,
        r#"{"compatibilityLevel":"SIDEWAYS"}"#,
        r#"{"mode":"SLEEPY"}"#,
        r#"{"subject":"s"}"#,
        r#"{"subject":"s","version":"x"}"#,
        "\u{0}\u{1}garbage",
    ];
    let mut junk = Junk(0x9e37_79b9_7f4a_7c15);
    for key in keys {
        for value in values {
            // A record that does not apply leaves the registry as it was.
            let mut copy = Harness { registry: h.registry.clone(), log: Vec::new() };
            if copy.registry.apply(key.as_bytes(), Some(value.as_bytes())).is_err() {
                assert_eq!(copy.get("/schemas?deleted=true"), before, "{key} -> {value}");
            }
        }
    }
    for _ in 0..2000 {
        let n = usize::try_from(junk.next() % 64).unwrap_or(0);
        let key = junk.bytes(n);
        let value = junk.bytes(n / 2);
        let _ = h.registry.clone().apply(&key, Some(&value));
        let _ = h.registry.clone().apply(&key, None);
    }
    assert_eq!(h.get("/schemas?deleted=true"), before);
}

#[test]
fn garbage_requests_do_not_panic() {
    let mut h = Harness::new();
    h.register("s", V1);
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", ""];
    let paths = [
        "/",
        "",
        "//",
        "/subjects/s/versions/latest",
        "/subjects/s/versions/%",
        "/subjects/%FF%FE/versions",
        "/schemas/ids/-1",
        "/schemas/ids/2147483648",
        "/subjects/s/versions/2147483647/referencedby",
        "/compatibility/subjects/s/versions/latest",
        "/config/s",
        "/mode/s",
        "/subjects/s",
    ];
    let queries = [
        "",
        "&&&",
        "deleted=%ZZ",
        "permanent=true",
        "offset=-5&limit=99999999999999999999",
        "verbose=true&normalize=true",
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"{",
        b"null",
        br#"{"schema":5}"#,
        br#"{"schema":"\"int\"","references":[{"name":"a","subject":"s","version":-1}]}"#,
        br#"{"mode":"IMPORT","compatibility":"NONE"}"#,
    ];
    let mut junk = Junk(42);
    for _ in 0..3000 {
        let method = junk.pick(&methods);
        let path = junk.pick(&paths);
        let query = junk.pick(&queries);
        let body = bodies[usize::try_from(junk.next() % bodies.len() as u64).unwrap_or(0)];
        let outcome = h.registry.handle(&Request { method, path, query, body });
        if let Outcome::Write { records, .. } = outcome {
            for r in records {
                h.registry.apply(&r.key, r.value.as_deref()).expect("own records apply");
            }
        }
    }
    let random_body = junk.bytes(200);
    let _ = h.registry.handle(&Request { method: "POST", path: "/subjects/s/versions", query: "", body: &random_body });
}

/// `text` compiled as `name` with `imports` (name, text) beside it, as a base64-encoded
/// `FileDescriptorProto`: what Confluent's Python serializer registers.
fn descriptor_base64(name: &str, text: &str, imports: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use prost_reflect::prost::Message as _;
    let dir = std::env::temp_dir().join(format!("kelp-registry-proto-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (file, source) in imports.iter().chain(&[(name, text)]) {
        std::fs::write(dir.join(file), source).expect("write .proto");
    }
    let set = protox::compile([name], [&dir]).expect("compiles");
    let _ = std::fs::remove_dir_all(&dir);
    let file = set.file.iter().find(|f| f.name() == name).expect("the file");
    base64::engine::general_purpose::STANDARD.encode(file.encode_to_vec())
}

#[test]
fn a_protobuf_schema_sent_as_a_file_descriptor_is_kept_as_proto_text_and_served_serialized() {
    let mut h = Harness::new();
    let address = "syntax = \"proto3\";\npackage shop;\nmessage Address { string city = 1; }\n";
    let order = "syntax = \"proto3\";\npackage shop;\nimport \"address.proto\";\n\
                 message Order { int64 id = 1; Address ship_to = 2; repeated string items = 3; }\n";
    let address_b64 = descriptor_base64("address.proto", address, &[]);
    let order_b64 = descriptor_base64("order.proto", order, &[("address.proto", address)]);

    // The import is registered first under its own subject, then the file that references it.
    let (status, body) =
        h.post("/subjects/address.proto/versions", &json!({"schema": address_b64, "schemaType": "PROTOBUF"}));
    assert_eq!((status, &body), (200, &json!({"id": 1})));
    let refs = json!([{"name": "address.proto", "subject": "address.proto", "version": 1}]);
    let (status, body) = h.post(
        "/subjects/orders-value/versions",
        &json!({"schema": order_b64, "schemaType": "PROTOBUF", "references": refs}),
    );
    assert_eq!((status, &body), (200, &json!({"id": 2})));

    // Stored as `.proto` text that compiles to the same messages.
    let (_, stored) = h.get("/subjects/orders-value/versions/1");
    let text = stored["schema"].as_str().expect("text");
    assert!(text.starts_with("syntax = \"proto3\";"), "{text}");
    assert!(text.contains("message Order"), "{text}");
    assert!(text.contains("import \"address.proto\";"), "{text}");
    assert_eq!(stored["references"], refs);

    // The same file sent again as a descriptor, or as the stored text, is the same schema.
    let again = json!({"schema": order_b64, "schemaType": "PROTOBUF", "references": refs});
    assert_eq!(h.post("/subjects/orders-value/versions", &again), (200, json!({"id": 2})));
    let (status, found) = h.post("/subjects/orders-value", &again);
    assert_eq!((status, &found["version"]), (200, &json!(1)));
    let as_text = json!({"schema": text, "schemaType": "PROTOBUF", "references": refs});
    assert_eq!(h.post("/subjects/orders-value/versions", &as_text), (200, json!({"id": 2})));

    // `format=serialized` answers the compiled file as a descriptor: the same messages, fields
    // and import as the client's own.
    use base64::Engine as _;
    use prost_reflect::prost::Message as _;
    let decode = |b64: &str| {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("descriptor")
    };
    let (status, by_id) = h.get("/schemas/ids/2?format=serialized");
    assert_eq!(status, 200);
    let served = decode(by_id["schema"].as_str().expect("schema"));
    let sent = decode(&order_b64);
    assert_eq!(served.package, sent.package);
    assert_eq!(served.dependency, sent.dependency);
    assert_eq!(served.message_type, sent.message_type);
    let (_, latest) = h.get("/subjects/orders-value/versions/latest?format=serialized");
    assert_eq!(latest["schema"], by_id["schema"]);
    // Without the parameter, and for other types, the stored text.
    assert_eq!(h.get("/schemas/ids/2").1["schema"], json!(text));
    h.register("avro", V1);
    let (_, avro) = h.get("/subjects/avro/versions/1?format=serialized");
    assert_eq!(avro["schema"], json!(V1));

    // A text of base64 letters that decodes to no descriptor is an invalid schema.
    let (status, body) = h.post("/subjects/bad/versions", &json!({"schema": "AAAA", "schemaType": "PROTOBUF"}));
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)), "{body}");
}

#[test]
fn a_descriptor_keeps_its_nested_message_order_map_entries_included() {
    use base64::Engine as _;
    use prost_reflect::prost::Message as _;
    let mut h = Harness::new();
    // Message indexes count nested types in this order: [A, MEntry, B] (and a group's type
    // where the group is declared), so the stored re-print must compile to the same order.
    let text = "syntax = \"proto2\";\npackage p;\nmessage Outer {\n  message A { optional int32 x = 1; }\n  \
                map<string, string> m = 1;\n  message B { optional int32 y = 1; }\n  optional group G = 2 { optional int32 z = 1; }\n  \
                optional int32 n = 3;\n  message C { }\n}\n";
    let sent = descriptor_base64("outer.proto", text, &[]);
    let (status, _) = h.post("/subjects/o/versions", &json!({"schema": sent, "schemaType": "PROTOBUF"}));
    assert_eq!(status, 200);
    let names = |b64: &str| -> Vec<String> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        let file = prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("descriptor");
        file.message_type[0].nested_type.iter().map(|n| n.name().to_owned()).collect()
    };
    assert_eq!(names(&sent), ["A", "MEntry", "B", "G", "C"]);
    let (_, served) = h.get("/schemas/ids/1?format=serialized");
    assert_eq!(names(served["schema"].as_str().expect("schema")), names(&sent));
}
