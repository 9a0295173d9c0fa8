//! Confluent's Schema Registry REST API (v1) as a pure function of the registry's state:
//! [`Registry::handle`] turns one [`Request`] into an [`Outcome`].
//!
//! A read answers at once ([`Outcome::Reply`]). A change answers with the `_schemas` records that
//! make it ([`Outcome::Write`]): the driver appends them in order, applies each stored record with
//! [`Registry::apply`], and only then sends the reply (Confluent also answers after its write is
//! read back). The driver must finish one `Write` before handling the next request that may
//! write, so that ids and versions are decided against the latest state. A failed append is
//! answered with [`Response::store_error`] (or the timeout and forwarding variants).
//!
//! Paths arrive raw (still percent-encoded, without the query): the API splits on `/` first and
//! decodes each segment after, so a subject may hold a `/` sent as `%2F`. The query string
//! arrives raw as well (`a=1&b=x`), decoded here with `+` as a space.
//!
//! Status codes, `error_code`s and message texts follow Confluent's `Errors` and `Rest*Exception`
//! classes, since clients match on them.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::compat::{self, CompatibilityLevel, Previous};
use crate::format::Parsed;
use crate::store::{
    self, Mode, Record, Reference, Registry, SchemaEntry, SchemaId, SchemaType, SubjectVersion, Version,
};

/// Confluent's default context, named in mode errors.
const DEFAULT_CONTEXT: &str = ".";
/// The cluster name Confluent reports for the registry itself.
const REGISTRY_CLUSTER: &str = "schema-registry";

/// One HTTP request, as the driver received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, upper case (`GET`, `POST`, `PUT`, `DELETE`).
    pub method: &'a str,
    /// The raw path, percent-encoded, without the query (`/subjects/a%2Fb/versions`).
    pub path: &'a str,
    /// The raw query string without `?` (`deleted=true&subjectPrefix=x`), empty if none.
    pub query: &'a str,
    /// The body (the driver bounds its size).
    pub body: &'a [u8],
}

/// A response body: JSON for every endpoint but the raw-schema ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A JSON document (`application/vnd.schemaregistry.v1+json`).
    Json(Value),
    /// A schema's text as registered (the `/schema` endpoints).
    Text(String),
}

/// What to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Body,
}

/// What a request asks of the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send this now.
    Reply(Response),
    /// Append these records to `_schemas` in order and apply them, then send `reply`.
    Write {
        /// The records, in order.
        records: Vec<Record>,
        /// The answer once they are stored.
        reply: Response,
    },
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Self {
        Self { status, body: Body::Json(body) }
    }

    /// Confluent's error shape: `{"error_code": code, "message": message}`.
    pub fn error(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self::json(status, json!({"error_code": code, "message": message.into()}))
    }

    /// 50001: writing to or reading from `_schemas` failed.
    pub fn store_error(message: impl Into<String>) -> Self {
        Self::error(500, 50001, message)
    }

    /// 50002: the write to `_schemas` timed out.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::error(500, 50002, message)
    }

    /// 50003: forwarding the request to the leader failed.
    pub fn forwarding_failed(message: impl Into<String>) -> Self {
        Self::error(500, 50003, message)
    }

    /// The `Content-Type` to send with it. Confluent labels raw schema text (the `/schema`
    /// endpoints) with its JSON media type too.
    pub fn content_type(&self) -> &'static str {
        "application/vnd.schemaregistry.v1+json"
    }

    /// The body's bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Body::Json(v) => v.to_string().into_bytes(),
            Body::Text(t) => t.clone().into_bytes(),
        }
    }
}

type Answer = Result<Outcome, Response>;

fn reply(body: Value) -> Answer {
    Ok(Outcome::Reply(Response::json(200, body)))
}

fn write(records: Vec<Record>, body: Value) -> Answer {
    Ok(Outcome::Write { records, reply: Response::json(200, body) })
}

// ---- Confluent's errors ----

fn not_found() -> Response {
    Response::error(404, 404, "HTTP 404 Not Found")
}

fn method_not_allowed() -> Response {
    Response::error(405, 405, "HTTP 405 Method Not Allowed")
}

fn bad_body(message: impl Into<String>) -> Response {
    Response::error(400, 400, message)
}

fn subject_not_found(subject: &str) -> Response {
    Response::error(404, 40401, format!("Subject '{subject}' not found."))
}

fn version_not_found(version: i32) -> Response {
    Response::error(404, 40402, format!("Version {version} not found."))
}

fn schema_not_found(id: Option<SchemaId>) -> Response {
    match id {
        Some(id) => Response::error(404, 40403, format!("Schema {} not found", id.0)),
        None => Response::error(404, 40403, "Schema not found"),
    }
}

fn subject_soft_deleted(subject: &str) -> Response {
    // Confluent's text has no space after the full stop; clients may match it as is.
    Response::error(
        404,
        40404,
        format!("Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"),
    )
}

fn subject_not_soft_deleted(subject: &str) -> Response {
    let message = format!("Subject '{subject}' was not deleted first before being permanently deleted");
    Response::error(404, 40405, message)
}

fn version_soft_deleted(subject: &str, version: Version) -> Response {
    let message =
        format!("Subject '{subject}' Version {} was soft deleted.Set permanent=true to delete permanently", version.0);
    Response::error(404, 40406, message)
}

fn version_not_soft_deleted(subject: &str, version: Version) -> Response {
    let message =
        format!("Subject '{subject}' Version {} was not deleted first before being permanently deleted", version.0);
    Response::error(404, 40407, message)
}

fn compatibility_not_configured(subject: &str) -> Response {
    Response::error(404, 40408, format!("Subject '{subject}' does not have subject-level compatibility configured"))
}

fn mode_not_configured(subject: &str) -> Response {
    Response::error(404, 40409, format!("Subject '{subject}' does not have subject-level mode configured"))
}

fn incompatible(subject: &str, messages: &[String]) -> Response {
    let details = messages.join(", ");
    let message = format!(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{details}]"
    );
    Response::error(409, 409, message)
}

fn invalid_schema(message: impl Into<String>) -> Response {
    Response::error(422, 42201, message)
}

fn invalid_version(version: &str) -> Response {
    let message = format!(
        "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    );
    Response::error(422, 42202, message)
}

fn invalid_compatibility() -> Response {
    let message = "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive";
    Response::error(422, 42203, message)
}

fn invalid_mode() -> Response {
    Response::error(422, 42204, "Invalid mode. Valid values are READWRITE, READONLY, IMPORT and FORWARD.")
}

fn not_permitted(message: impl Into<String>) -> Response {
    Response::error(422, 42205, message)
}

fn reference_exists(subject: &str, version: Version) -> Response {
    let key = format!("{{magic=1,keytype=SCHEMA,subject={subject},version={}}}", version.0);
    Response::error(422, 42206, format!("One or more references exist to the schema {key}."))
}

fn invalid_subject(subject: &str) -> Response {
    Response::error(422, 42208, format!("The specified subject '{subject}' is not a valid."))
}

// ---- path, query and body parsing ----

/// Splits a raw path into decoded segments; `None` if a segment is not valid percent-encoded UTF-8.
fn segments(path: &str) -> Option<Vec<String>> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Some(Vec::new());
    }
    path.split('/').map(|s| percent_decode(s, false)).collect()
}

fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = hex(bytes.next()?)?;
                let lo = hex(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Decoded query parameters; a name given twice keeps its first value.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Self {
        let pairs = raw.split('&').filter(|p| !p.is_empty()).filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        });
        Self(pairs.collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter as JAX-RS reads it: only `true` (any case) is true.
    fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// A non-negative integer parameter; absent or unreadable gives `default`.
    fn number(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

/// A version in a path: a number in `[1, 2^31-1]`, or `latest` (also `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionSpec {
    Latest,
    Exact(Version),
}

fn parse_version(raw: &str) -> Result<VersionSpec, Response> {
    if raw.eq_ignore_ascii_case("latest") {
        return Ok(VersionSpec::Latest);
    }
    match raw.parse::<i32>() {
        Ok(-1) => Ok(VersionSpec::Latest),
        Ok(n) if n >= 1 => Ok(VersionSpec::Exact(Version(n))),
        _ => Err(invalid_version(raw)),
    }
}

/// A schema id in a path. Not a 32-bit integer: Jersey answers a plain 404.
fn parse_id(raw: &str) -> Result<SchemaId, Response> {
    raw.parse::<i32>().map(SchemaId).map_err(|_| not_found())
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_body("Request body must be a JSON object")),
        Err(e) => Err(bad_body(format!("Malformed JSON: {e}"))),
    }
}

/// An optional string field; another JSON type is a 400 like Jackson's.
fn opt_str<'m>(map: &'m Map<String, Value>, field: &str) -> Result<Option<&'m str>, Response> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_body(format!("Field '{field}' must be a string"))),
    }
}

/// An optional 32-bit integer field.
fn opt_i32(map: &Map<String, Value>, field: &str) -> Result<Option<i32>, Response> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad_body(format!("Field '{field}' must be a 32-bit integer"))),
    }
}

/// The body of register, lookup and compatibility requests.
struct SchemaRequest {
    schema: String,
    schema_type: SchemaType,
    references: Vec<Reference>,
    /// An explicit id (IMPORT mode); Confluent treats negative ids as absent.
    id: Option<SchemaId>,
    /// An explicit version (IMPORT mode); Confluent treats 0 and below as absent.
    version: Option<Version>,
}

fn parse_schema_request(body: &[u8]) -> Result<SchemaRequest, Response> {
    let map = json_object(body)?;
    let schema =
        opt_str(&map, "schema")?.filter(|s| !s.trim().is_empty()).ok_or_else(|| invalid_schema("Empty schema"))?;
    let type_name = opt_str(&map, "schemaType")?;
    let schema_type = SchemaType::parse(type_name)
        .ok_or_else(|| invalid_schema(format!("Invalid schema type {}", type_name.unwrap_or(""))))?;
    let references = match map.get("references") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(refs)) => refs
            .iter()
            .map(store::parse_reference)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_body("Each reference needs a string name and subject and an integer version"))?,
        Some(_) => return Err(bad_body("Field 'references' must be an array")),
    };
    let id = opt_i32(&map, "id")?.filter(|id| *id >= 0).map(SchemaId);
    let version = opt_i32(&map, "version")?.filter(|v| *v >= 1).map(Version);
    Ok(SchemaRequest { schema: schema.to_owned(), schema_type, references, id, version })
}

/// Confluent refuses empty subjects and subjects with control characters.
fn check_subject(subject: &str) -> Result<(), Response> {
    if subject.is_empty() || subject.chars().any(char::is_control) {
        return Err(invalid_subject(subject));
    }
    Ok(())
}

// ---- JSON shapes ----

/// A version as Confluent's `Schema` entity: `schemaType` only when not AVRO, `references` only
/// when there are some.
fn version_json(subject: &str, version: Version, e: &SchemaEntry) -> Value {
    let mut m = Map::new();
    m.insert("subject".into(), subject.into());
    m.insert("version".into(), version.0.into());
    m.insert("id".into(), e.id.0.into());
    add_type_and_refs(&mut m, e);
    m.insert("schema".into(), e.schema.clone().into());
    Value::Object(m)
}

fn add_type_and_refs(m: &mut Map<String, Value>, e: &SchemaEntry) {
    if e.schema_type != SchemaType::Avro {
        m.insert("schemaType".into(), e.schema_type.as_str().into());
    }
    if !e.references.is_empty() {
        m.insert("references".into(), store::references_json(&e.references));
    }
}

fn config_json(level: CompatibilityLevel, normalize: Option<bool>) -> Value {
    let mut m = Map::new();
    m.insert("compatibilityLevel".into(), level.as_str().into());
    if let Some(n) = normalize {
        m.insert("normalize".into(), n.into());
    }
    Value::Object(m)
}

impl Registry {
    /// Answers one REST request. Never panics on any request.
    pub fn handle(&self, req: &Request<'_>) -> Outcome {
        let Some(segs) = segments(req.path) else { return Outcome::Reply(not_found()) };
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let query = Query::parse(req.query);
        match self.route(req.method, &segs, &query, req.body) {
            Ok(outcome) => outcome,
            Err(response) => Outcome::Reply(response),
        }
    }

    fn route(&self, method: &str, segs: &[&str], q: &Query, body: &[u8]) -> Answer {
        match (method, segs) {
            ("GET", []) => reply(json!({})),
            ("GET", ["v1", "metadata", "id"]) => reply(self.metadata()),
            ("GET", ["contexts"]) => reply(json!([DEFAULT_CONTEXT])),
            ("GET", ["schemas", "types"]) => reply(json!(["JSON", "PROTOBUF", "AVRO"])),
            ("GET", ["schemas"]) => reply(self.list_schemas(q)),
            ("GET", ["schemas", "ids", id]) => self.schema_by_id(parse_id(id)?, q),
            ("GET", ["schemas", "ids", id, "schema"]) => self.raw_schema_by_id(parse_id(id)?, q),
            ("GET", ["schemas", "ids", id, "subjects"]) => self.subjects_by_id(parse_id(id)?, q),
            ("GET", ["schemas", "ids", id, "versions"]) => self.versions_by_id(parse_id(id)?, q),
            ("GET", ["subjects"]) => reply(self.list_subjects(q)),
            ("POST", ["subjects", s]) => self.lookup(s, q, body),
            ("DELETE", ["subjects", s]) => self.delete_subject(s, q),
            ("GET", ["subjects", s, "versions"]) => self.list_versions(s, q),
            ("POST", ["subjects", s, "versions"]) => self.register(s, q, body),
            ("GET", ["subjects", s, "versions", v]) => self.get_version(s, parse_version(v)?, q),
            ("GET", ["subjects", s, "versions", v, "schema"]) => self.raw_version(s, parse_version(v)?, q),
            ("GET", ["subjects", s, "versions", v, "referencedby"]) => self.referenced_by(s, parse_version(v)?, q),
            ("DELETE", ["subjects", s, "versions", v]) => self.delete_version(s, parse_version(v)?, q),
            ("GET", ["config"]) => self.get_config(None, q),
            ("GET", ["config", s]) => self.get_config(Some(s), q),
            ("PUT", ["config"]) => self.put_config(None, body),
            ("PUT", ["config", s]) => self.put_config(Some(s), body),
            ("DELETE", ["config"]) => self.delete_config(None),
            ("DELETE", ["config", s]) => self.delete_config(Some(s)),
            ("GET", ["mode"]) => self.get_mode(None, q),
            ("GET", ["mode", s]) => self.get_mode(Some(s), q),
            ("PUT", ["mode"]) => self.put_mode(None, q, body),
            ("PUT", ["mode", s]) => self.put_mode(Some(s), q, body),
            ("DELETE", ["mode"]) => self.delete_mode(None),
            ("DELETE", ["mode", s]) => self.delete_mode(Some(s)),
            ("POST", ["compatibility", "subjects", s, "versions"]) => self.check_compatibility(s, None, q, body),
            ("POST", ["compatibility", "subjects", s, "versions", v]) => {
                self.check_compatibility(s, Some(parse_version(v)?), q, body)
            }
            (_, segs) if known_path(segs) => Err(method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    fn metadata(&self) -> Value {
        json!({"scope": {"path": [], "clusters": {
            "kafka-cluster": self.kafka_cluster_id,
            "schema-registry-cluster": REGISTRY_CLUSTER,
        }}})
    }

    // ---- reads ----

    fn live(&self, subject: &str, deleted: bool) -> impl DoubleEndedIterator<Item = (Version, &SchemaEntry)> {
        self.versions(subject).into_iter().flatten().filter(move |(_, e)| deleted || !e.deleted).map(|(v, e)| (*v, e))
    }

    /// Resolves a path version among live versions (or all, when `deleted`); 40401 or 40402.
    fn resolve(&self, subject: &str, spec: VersionSpec, deleted: bool) -> Result<(Version, &SchemaEntry), Response> {
        let found = match spec {
            VersionSpec::Latest => self.live(subject, deleted).next_back(),
            VersionSpec::Exact(v) => self.entry(subject, v).filter(|e| deleted || !e.deleted).map(|e| (v, e)),
        };
        found.ok_or_else(|| {
            if !self.has_subject(subject, deleted) {
                subject_not_found(subject)
            } else {
                version_not_found(match spec {
                    VersionSpec::Latest => -1,
                    VersionSpec::Exact(v) => v.0,
                })
            }
        })
    }

    fn list_subjects(&self, q: &Query) -> Value {
        let prefix = q.get("subjectPrefix").unwrap_or("");
        let deleted = q.flag("deleted");
        let names = self.subjects.keys().filter(|s| s.starts_with(prefix) && self.has_subject(s, deleted));
        names.map(|s| Value::from(s.as_str())).collect()
    }

    fn list_versions(&self, subject: &str, q: &Query) -> Answer {
        let deleted = q.flag("deleted");
        if !self.has_subject(subject, deleted) {
            return Err(subject_not_found(subject));
        }
        reply(self.live(subject, deleted).map(|(v, _)| Value::from(v.0)).collect())
    }

    fn get_version(&self, subject: &str, spec: VersionSpec, q: &Query) -> Answer {
        let (v, e) = self.resolve(subject, spec, q.flag("deleted"))?;
        let mut json = version_json(subject, v, e);
        json["schema"] = self.formatted(e, q).into();
        reply(json)
    }

    fn raw_version(&self, subject: &str, spec: VersionSpec, q: &Query) -> Answer {
        let (_, e) = self.resolve(subject, spec, q.flag("deleted"))?;
        Ok(Outcome::Reply(Response { status: 200, body: Body::Text(self.formatted(e, q)) }))
    }

    /// A stored schema in the form `?format=` asks for (`serialized` for Protobuf); the stored
    /// text when there is no such parameter or it does not apply to the schema's type.
    fn formatted(&self, e: &SchemaEntry, q: &Query) -> String {
        q.get("format")
            .filter(|f| !f.is_empty())
            .and_then(|f| self.parse_entry(e)?.formatted(f))
            .unwrap_or_else(|| e.schema.clone())
    }

    fn referenced_by(&self, subject: &str, spec: VersionSpec, q: &Query) -> Answer {
        let deleted = q.flag("deleted");
        let (v, _) = self.resolve(subject, spec, deleted)?;
        let ids: BTreeSet<i32> = self.referrers(subject, v, deleted).iter().map(|(_, e)| e.id.0).collect();
        reply(ids.into_iter().map(Value::from).collect())
    }

    fn list_schemas(&self, q: &Query) -> Value {
        let prefix = q.get("subjectPrefix").unwrap_or("");
        let deleted = q.flag("deleted");
        let latest_only = q.flag("latestOnly");
        let offset = usize::try_from(q.number("offset", 0)).unwrap_or(0);
        let limit = usize::try_from(q.number("limit", -1)).unwrap_or(usize::MAX);
        let subjects = self.subjects.keys().filter(|s| s.starts_with(prefix));
        let all = subjects.flat_map(|s| {
            let versions: Vec<_> = self.live(s, deleted).collect();
            let skip = if latest_only { versions.len().saturating_sub(1) } else { 0 };
            versions.into_iter().skip(skip).map(move |(v, e)| version_json(s, v, e))
        });
        all.skip(offset).take(limit).collect()
    }

    /// The version to answer for an id: one in `subject` when given and present, else the first.
    fn holder(&self, id: SchemaId, subject: Option<&str>) -> Option<&SchemaEntry> {
        let mut holders = self.holders(id);
        match subject {
            Some(s) => self.holders(id).find(|(at, _)| at.0 == s).or_else(|| holders.next()).map(|(_, e)| e),
            None => holders.next().map(|(_, e)| e),
        }
    }

    fn schema_by_id(&self, id: SchemaId, q: &Query) -> Answer {
        let e = self.holder(id, q.get("subject")).ok_or_else(|| schema_not_found(Some(id)))?;
        let mut m = Map::new();
        m.insert("schema".into(), self.formatted(e, q).into());
        add_type_and_refs(&mut m, e);
        reply(Value::Object(m))
    }

    fn raw_schema_by_id(&self, id: SchemaId, q: &Query) -> Answer {
        let e = self.holder(id, q.get("subject")).ok_or_else(|| schema_not_found(Some(id)))?;
        Ok(Outcome::Reply(Response { status: 200, body: Body::Text(self.formatted(e, q)) }))
    }

    fn live_holders(&self, id: SchemaId, q: &Query) -> Result<Vec<&SubjectVersion>, Response> {
        if self.holders(id).next().is_none() {
            return Err(schema_not_found(Some(id)));
        }
        let deleted = q.flag("deleted");
        Ok(self.holders(id).filter(|(_, e)| deleted || !e.deleted).map(|(at, _)| at).collect())
    }

    fn subjects_by_id(&self, id: SchemaId, q: &Query) -> Answer {
        let subjects: BTreeSet<&str> = self.live_holders(id, q)?.into_iter().map(|at| at.0.as_str()).collect();
        reply(subjects.into_iter().map(Value::from).collect())
    }

    fn versions_by_id(&self, id: SchemaId, q: &Query) -> Answer {
        let holders = self.live_holders(id, q)?;
        reply(holders.into_iter().map(|(s, v)| json!({"subject": s, "version": v.0})).collect())
    }

    // ---- schemas: parsing with references ----

    /// Pins each reference to a concrete version (`-1` means the latest live one).
    fn pin_references(&self, refs: &[Reference]) -> Result<Vec<Reference>, Response> {
        refs.iter()
            .map(|r| {
                let version = match r.version.0 {
                    -1 => self.live(&r.subject, false).next_back().map(|(v, _)| v),
                    _ => self.entry(&r.subject, r.version).map(|_| r.version),
                };
                let version = version.ok_or_else(|| {
                    invalid_schema(format!(
                        "Invalid schema: reference '{}' to subject '{}' version {} not found",
                        r.name, r.subject, r.version.0
                    ))
                })?;
                Ok(Reference { version, ..r.clone() })
            })
            .collect()
    }

    /// Parses a request's schema; the stored text is canonical, or normalized when asked.
    fn parse_request(
        &self,
        req: &SchemaRequest,
        normalize: bool,
    ) -> Result<(Vec<Reference>, Parsed, String), Response> {
        let refs = self.pin_references(&req.references)?;
        let parsed = self.parse_schema(req.schema_type, &req.schema, &refs).map_err(invalid_schema)?;
        let text = if normalize { parsed.normalized() } else { parsed.canonical() };
        Ok((refs, parsed, text))
    }

    /// A version of `subject` (live, or any when `deleted`) that holds this schema: same stored
    /// text and references, or the same canonical form once parsed (newest first).
    fn find_in_subject(
        &self,
        subject: &str,
        deleted: bool,
        parsed: &Parsed,
        text: &str,
        refs: &[Reference],
        id: Option<SchemaId>,
    ) -> Option<(Version, &SchemaEntry)> {
        let wanted = |e: &SchemaEntry| id.is_none_or(|id| id == e.id) && e.schema_type == parsed.schema_type();
        let candidates: Vec<_> = self.live(subject, deleted).rev().filter(|(_, e)| wanted(e)).collect();
        let exact = candidates.iter().find(|(_, e)| e.schema == text && e.references == refs).copied();
        exact.or_else(|| {
            let canonical = parsed.canonical();
            candidates.into_iter().find(|(_, e)| e.references == refs && e.canonical.as_deref() == Some(&canonical))
        })
    }

    /// Compatibility messages of `parsed` against `previous` (newest first) at `level`.
    fn compatibility_messages(
        &self,
        level: CompatibilityLevel,
        parsed: &Parsed,
        previous: &[(Version, &SchemaEntry)],
    ) -> Vec<String> {
        if level == CompatibilityLevel::None {
            return Vec::new();
        }
        // An earlier version kelp cannot parse (one a copied `_schemas` topic holds that this
        // build refuses, say) is not checked.
        let parsed_previous: Vec<(Version, &str, Parsed)> =
            previous.iter().filter_map(|(v, e)| Some((*v, e.schema.as_str(), self.parse_entry(e)?))).collect();
        let previous: Vec<Previous<'_>> = parsed_previous
            .iter()
            .map(|(version, text, parsed)| Previous { version: *version, text, parsed })
            .collect();
        compat::check(level, parsed, &previous)
    }

    // ---- register and lookup ----

    /// Confluent's `checkRegisterMode`: read-only refuses; an explicit id needs IMPORT; no id
    /// needs READWRITE.
    fn check_register_mode(&self, subject: &str, explicit_id: bool) -> Result<Mode, Response> {
        let mode = self.mode_in_scope(subject);
        let refuse = |what: &str| not_permitted(format!("Subject {subject} in context {DEFAULT_CONTEXT} is {what}"));
        if mode.is_read_only() {
            return Err(refuse("in read-only mode"));
        }
        match (explicit_id, mode) {
            (true, Mode::Import) | (false, Mode::ReadWrite) => Ok(mode),
            (true, _) => Err(refuse("not in import mode")),
            (false, _) => Err(refuse("not in read-write mode")),
        }
    }

    fn register(&self, subject: &str, q: &Query, body: &[u8]) -> Answer {
        check_subject(subject)?;
        let req = parse_schema_request(body)?;
        let mode = self.check_register_mode(subject, req.id.is_some())?;
        let normalize = q.flag("normalize") || self.normalize_in_scope(subject);
        // A serializer registering a schema the subject holds, word for word, as it does on
        // every start: answered without parsing (what the slow path below would answer).
        if !normalize && req.id.is_none() && req.version.is_none() {
            let refs = self.pin_references(&req.references)?;
            let first_id = self.id_of(req.schema_type, &req.schema, &req.schema, &refs);
            let held = self.live(subject, false).any(|(_, e)| {
                Some(e.id) == first_id
                    && e.schema_type == req.schema_type
                    && e.schema == req.schema
                    && e.references == refs
            });
            if let (true, Some(id)) = (held, first_id) {
                return reply(json!({"id": id.0}));
            }
        }
        let (refs, parsed, text) = self.parse_request(&req, normalize)?;

        // The same schema anywhere keeps its id; in this subject, registering it is a no-op.
        let mut id = req.id;
        let found = self.id_of(req.schema_type, &text, &parsed.canonical(), &refs);
        if let Some(found) = found.filter(|f| req.id.is_none_or(|id| id == *f)) {
            let here = self.live(subject, false).any(|(_, e)| e.id == found);
            if req.version.is_none() && here {
                return reply(json!({"id": found.0}));
            }
            id = Some(found);
        }
        if req.version.is_none()
            && let Some((_, e)) = self.find_in_subject(subject, false, &parsed, &text, &refs, id)
        {
            return reply(json!({"id": e.id.0}));
        }

        let import = mode == Mode::Import;
        if !import {
            let level = self.compatibility_in_scope(Some(subject));
            let previous: Vec<_> = self.live(subject, false).rev().collect();
            let messages = self.compatibility_messages(level, &parsed, &previous);
            if !messages.is_empty() {
                return Err(incompatible(subject, &messages));
            }
        }

        let version = self.new_version(subject, req.version, import)?;
        let id = match (req.id, id) {
            (Some(explicit), _) => self.check_id_free(explicit, req.schema_type, &text, &refs).map(|()| explicit)?,
            (None, Some(found)) => found,
            (None, None) => self.next_id().ok_or_else(|| {
                Response::store_error(
                    "Error while registering the schema due to generating an ID that is already in use.",
                )
            })?,
        };

        let entry = SchemaEntry {
            id,
            schema_type: req.schema_type,
            references: refs,
            schema: text,
            deleted: false,
            canonical: None,
        };
        let mut records = self.tombstones_for_reregistration(subject, id, version);
        records.push(store::schema_record(subject, version, &entry));
        write(records, json!({"id": id.0}))
    }

    /// The version a registration gets: one more than the highest ever held (deleted versions
    /// count, hard-deleted ones do not); IMPORT may choose its own.
    fn new_version(&self, subject: &str, requested: Option<Version>, import: bool) -> Result<Version, Response> {
        let highest = self.versions(subject).and_then(|v| v.keys().next_back()).map_or(0, |v| v.0);
        let next = Version(highest.checked_add(1).ok_or_else(|| invalid_schema("No version left in subject"))?);
        match requested {
            Some(v) if !import && v != next => Err(invalid_schema("Version is not one more than previous version")),
            Some(v) => Ok(v),
            None => Ok(next),
        }
    }

    /// IMPORT with an explicit id: the id may only hold this same schema already.
    fn check_id_free(&self, id: SchemaId, ty: SchemaType, text: &str, refs: &[Reference]) -> Result<(), Response> {
        match self.holders(id).next() {
            Some((_, e)) if e.schema_type != ty || e.schema != text || e.references != refs => Err(not_permitted(
                format!("Overwrite new schema with id {} in context {DEFAULT_CONTEXT} is not permitted.", id.0),
            )),
            _ => Ok(()),
        }
    }

    /// Re-registering a soft-deleted schema: Confluent hard-deletes the older soft-deleted
    /// versions with the same id, unless something still refers to them.
    fn tombstones_for_reregistration(&self, subject: &str, id: SchemaId, version: Version) -> Vec<Record> {
        self.live(subject, true)
            .filter(|(v, e)| e.deleted && e.id == id && *v < version)
            .filter(|(v, _)| self.referrers(subject, *v, true).is_empty())
            .map(|(v, _)| store::schema_tombstone(subject, v))
            .collect()
    }

    fn lookup(&self, subject: &str, q: &Query, body: &[u8]) -> Answer {
        let req = parse_schema_request(body)?;
        let deleted = q.flag("deleted");
        let normalize = q.flag("normalize") || self.normalize_in_scope(subject);
        let (refs, parsed, text) = self.parse_request(&req, normalize)?;
        if !self.has_subject(subject, deleted) {
            return Err(subject_not_found(subject));
        }
        let (v, e) = self
            .find_in_subject(subject, deleted, &parsed, &text, &refs, None)
            .ok_or_else(|| schema_not_found(None))?;
        reply(version_json(subject, v, e))
    }

    // ---- deletes ----

    fn refuse_if_read_only(&self, subject: &str) -> Result<(), Response> {
        if self.mode_in_scope(subject).is_read_only() {
            return Err(not_permitted(format!("Subject {subject} in context {DEFAULT_CONTEXT} is in read-only mode")));
        }
        Ok(())
    }

    fn delete_version(&self, subject: &str, spec: VersionSpec, q: &Query) -> Answer {
        let permanent = q.flag("permanent");
        if let VersionSpec::Exact(v) = spec
            && !permanent
            && self.entry(subject, v).is_some_and(|e| e.deleted)
        {
            return Err(version_soft_deleted(subject, v));
        }
        let (version, entry) = self.resolve(subject, spec, permanent)?;
        self.refuse_if_read_only(subject)?;
        if !self.referrers(subject, version, permanent).is_empty() {
            return Err(reference_exists(subject, version));
        }
        if permanent && !entry.deleted {
            return Err(version_not_soft_deleted(subject, version));
        }
        let records = if permanent {
            let mut records = vec![store::schema_tombstone(subject, version)];
            if self.live(subject, true).all(|(v, _)| v == version) {
                records.extend(self.subject_settings_tombstones(subject));
            }
            records
        } else {
            vec![store::schema_record(subject, version, &SchemaEntry { deleted: true, ..entry.clone() })]
        };
        write(records, json!(version.0))
    }

    /// A hard-deleted subject loses its own mode and config too.
    fn subject_settings_tombstones(&self, subject: &str) -> Vec<Record> {
        let mut records = Vec::new();
        if self.mode(Some(subject)).is_some() {
            records.push(store::mode_record(Some(subject), None));
        }
        if self.config(Some(subject)).is_some() {
            records.push(store::config_record(Some(subject), None));
        }
        records
    }

    fn delete_subject(&self, subject: &str, q: &Query) -> Answer {
        let permanent = q.flag("permanent");
        if !self.has_subject(subject, true) {
            return Err(subject_not_found(subject));
        }
        if !permanent && !self.has_subject(subject, false) {
            return Err(subject_soft_deleted(subject));
        }
        self.refuse_if_read_only(subject)?;
        let doomed: Vec<(Version, &SchemaEntry)> = self.live(subject, permanent).collect();
        for (v, e) in &doomed {
            if self.referrers(subject, *v, permanent).iter().any(|(at, _)| at.0 != subject) {
                return Err(reference_exists(subject, *v));
            }
            if permanent && !e.deleted {
                return Err(subject_not_soft_deleted(subject));
            }
        }
        let versions: Value = doomed.iter().map(|(v, _)| Value::from(v.0)).collect();
        let records = match doomed.last() {
            None => Vec::new(),
            Some((upto, _)) if !permanent => vec![store::delete_subject_record(subject, *upto)],
            Some(_) => {
                let mut records: Vec<Record> =
                    doomed.iter().rev().map(|(v, _)| store::schema_tombstone(subject, *v)).collect();
                records.extend(self.subject_settings_tombstones(subject));
                records
            }
        };
        write(records, versions)
    }

    // ---- config ----

    fn get_config(&self, subject: Option<&str>, q: &Query) -> Answer {
        let Some(s) = subject else {
            let normalize = self.config(None).and_then(|c| c.normalize);
            return reply(config_json(self.compatibility_in_scope(None), normalize));
        };
        match self.config(Some(s)) {
            Some(c) if c.compatibility.is_some() || c.normalize.is_some() => {
                reply(config_json(c.compatibility.unwrap_or_else(|| self.compatibility_in_scope(None)), c.normalize))
            }
            _ if q.flag("defaultToGlobal") => self.get_config(None, q),
            _ => Err(compatibility_not_configured(s)),
        }
    }

    fn put_config(&self, subject: Option<&str>, body: &[u8]) -> Answer {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let map = json_object(body)?;
        let level = opt_str(&map, "compatibility")?.or(opt_str(&map, "compatibilityLevel")?);
        let normalize = match map.get("normalize") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_bool().ok_or_else(|| bad_body("Field 'normalize' must be a boolean"))?),
        };
        let level = match level {
            Some(name) => Some(CompatibilityLevel::parse(name).ok_or_else(invalid_compatibility)?),
            None if normalize.is_some() => None,
            None => return Err(invalid_compatibility()),
        };
        let mut value = self.config(subject).map(|c| c.raw.clone()).unwrap_or_default();
        let mut answer = Map::new();
        if let Some(level) = level {
            value.insert("compatibilityLevel".into(), level.as_str().into());
            answer.insert("compatibility".into(), level.as_str().into());
        }
        if let Some(n) = normalize {
            value.insert("normalize".into(), n.into());
            answer.insert("normalize".into(), n.into());
        }
        write(vec![store::config_record(subject, Some(&value))], Value::Object(answer))
    }

    fn delete_config(&self, subject: Option<&str>) -> Answer {
        let previous = self.config(subject);
        let answer = config_json(
            previous.and_then(|c| c.compatibility).unwrap_or_else(|| self.compatibility_in_scope(None)),
            previous.and_then(|c| c.normalize),
        );
        match (subject, previous) {
            // Confluent answers 40401 when there is no subject config to delete.
            (Some(s), None) => Err(subject_not_found(s)),
            _ => write(vec![store::config_record(subject, None)], answer),
        }
    }

    // ---- mode ----

    fn get_mode(&self, subject: Option<&str>, q: &Query) -> Answer {
        let global = self.mode(None).unwrap_or(Mode::ReadWrite);
        let mode = match subject {
            None => global,
            Some(s) => match self.mode(Some(s)) {
                Some(m) => m,
                None if q.flag("defaultToGlobal") => global,
                None => return Err(mode_not_configured(s)),
            },
        };
        reply(json!({"mode": mode.as_str()}))
    }

    fn put_mode(&self, subject: Option<&str>, q: &Query, body: &[u8]) -> Answer {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let map = json_object(body)?;
        let mode = opt_str(&map, "mode")?.and_then(Mode::parse).ok_or_else(invalid_mode)?;
        let current = subject.map_or_else(|| self.mode(None).unwrap_or(Mode::ReadWrite), |s| self.mode_in_scope(s));
        let mut records = Vec::new();
        if mode == Mode::Import && current != Mode::Import && !q.flag("force") {
            records = self.clear_for_import(subject)?;
        }
        records.push(store::mode_record(subject, Some(mode)));
        write(records, json!({"mode": mode.as_str()}))
    }

    /// Entering IMPORT needs no live subject in scope; soft-deleted versions there are
    /// hard-deleted and a CLEAR_SUBJECT record follows (Confluent's `setMode`).
    fn clear_for_import(&self, subject: Option<&str>) -> Result<Vec<Record>, Response> {
        let in_scope = |s: &&String| subject.is_none_or(|only| only == s.as_str());
        let subjects: Vec<&String> = self.subjects.keys().filter(in_scope).collect();
        if subjects.iter().any(|s| self.has_subject(s, false)) {
            return Err(not_permitted("Cannot import since found existing subjects"));
        }
        let mut records = Vec::new();
        for s in subjects {
            for (v, _) in self.live(s, true) {
                if !self.referrers(s, v, true).is_empty() {
                    return Err(reference_exists(s, v));
                }
                records.push(store::schema_tombstone(s, v));
            }
        }
        records.push(store::clear_subject_record(subject));
        Ok(records)
    }

    fn delete_mode(&self, subject: Option<&str>) -> Answer {
        let previous = self.mode(subject);
        match (subject, previous) {
            // Confluent answers 40401 when there is no subject mode to delete.
            (Some(s), None) => Err(subject_not_found(s)),
            _ => {
                let answer = json!({"mode": previous.unwrap_or(Mode::ReadWrite).as_str()});
                write(vec![store::mode_record(subject, None)], answer)
            }
        }
    }

    // ---- compatibility ----

    fn check_compatibility(&self, subject: &str, spec: Option<VersionSpec>, q: &Query, body: &[u8]) -> Answer {
        let req = parse_schema_request(body)?;
        let normalize = q.flag("normalize") || self.normalize_in_scope(subject);
        let (_, parsed, _) = self.parse_request(&req, normalize)?;
        let previous: Vec<(Version, &SchemaEntry)> = match spec {
            // Confluent checks against nothing when there is no latest version (a subject not
            // registered yet), and answers 40402 for any exact version it does not hold.
            Some(VersionSpec::Latest) => self.live(subject, false).next_back().into_iter().collect(),
            Some(spec @ VersionSpec::Exact(v)) => match self.resolve(subject, spec, false) {
                Ok(found) => vec![found],
                Err(_) => return Err(version_not_found(v.0)),
            },
            None => self.live(subject, false).rev().collect(),
        };
        let level = self.compatibility_in_scope(Some(subject));
        let messages = self.compatibility_messages(level, &parsed, &previous);
        let mut answer = Map::new();
        answer.insert("is_compatible".into(), messages.is_empty().into());
        if q.flag("verbose") {
            answer.insert("messages".into(), messages.into_iter().map(Value::from).collect());
        }
        reply(Value::Object(answer))
    }
}

/// Whether some method serves this path (then a wrong method is a 405, not a 404).
fn known_path(segs: &[&str]) -> bool {
    matches!(
        segs,
        [] | ["schemas", ..]
            | ["contexts"]
            | ["subjects"]
            | ["subjects", _]
            | ["subjects", _, "versions"]
            | ["subjects", _, "versions", _]
            | ["subjects", _, "versions", _, "schema" | "referencedby"]
            | ["config"]
            | ["config", _]
            | ["mode"]
            | ["mode", _]
            | ["compatibility", "subjects", _, "versions"]
            | ["compatibility", "subjects", _, "versions", _]
            | ["v1", "metadata", "id"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_decode_after_splitting() {
        assert_eq!(
            segments("/subjects/a%2Fb/versions"),
            Some(vec!["subjects".into(), "a/b".into(), "versions".into()])
        );
        assert_eq!(segments("/"), Some(vec![]));
        assert_eq!(segments("/config/"), Some(vec!["config".into()]));
        assert_eq!(segments("/subjects/%zz"), None);
        assert_eq!(segments("/subjects/%ff"), None, "not UTF-8");
    }

    #[test]
    fn query_flags() {
        let q = Query::parse("deleted=TRUE&permanent=yes&subjectPrefix=a+b%2Fc&x");
        assert!(q.flag("deleted"));
        assert!(!q.flag("permanent"));
        assert_eq!(q.get("subjectPrefix"), Some("a b/c"));
        assert_eq!(q.get("x"), Some(""));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("latest").ok(), Some(VersionSpec::Latest));
        assert_eq!(parse_version("-1").ok(), Some(VersionSpec::Latest));
        assert_eq!(parse_version("7").ok(), Some(VersionSpec::Exact(Version(7))));
        for bad in ["0", "-2", "2147483648", "x", ""] {
            let err = parse_version(bad).unwrap_err();
            assert_eq!(err.status, 422, "{bad}");
        }
    }
}
