//! The registry's state, built only by applying `_schemas` records in Confluent's layout.
//!
//! The topic is the source of truth: a fresh [`Registry`] fed the same records answers the same.
//! This module owns the record layout (reading it in [`Registry::apply`], writing it in the
//! `*_record` builders), the indexes over the state, and parsing a stored schema with its
//! references resolved; it decides nothing about requests.
//!
//! Layout (Confluent's `KafkaStore` serializer, keys and values are JSON):
//! - `{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}` →
//!   `{"subject","version","id","schemaType"?,"references"?,"schema","deleted"}`
//!   (`schemaType` absent means AVRO); a tombstone hard-deletes that version.
//! - `{"keytype":"CONFIG","subject":S|null,"magic":0}` → `{"compatibilityLevel":..., ...}`.
//! - `{"keytype":"MODE","subject":S|null,"magic":0}` → `{"mode":"READWRITE"}`.
//! - `{"keytype":"DELETE_SUBJECT","subject":S,"magic":0}` → `{"subject":S,"version":V}`: every
//!   version up to V is soft-deleted.
//! - `{"keytype":"CLEAR_SUBJECT","subject":S|null,"magic":0}` → `{"subject":S}`: soft-deleted
//!   versions leave the state (written when entering IMPORT mode).
//! - `{"keytype":"NOOP","magic":0}`: a marker, ignored; so are tombstones of non-schema keys
//!   other than CONFIG and MODE (Confluent drops the key from its store).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::Referenced;
use crate::compat::CompatibilityLevel;
use crate::format::{self, Parsed};

/// A global schema id (Confluent's `id`), the number serializers put in each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaId(pub i32);

/// A subject's version number, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub i32);

/// How deep references may nest before a schema is refused (a guard against cycles in a
/// hand-made `_schemas` topic).
const MAX_REFERENCE_DEPTH: usize = 64;

/// A `(subject, version)` pair: the key of one registered schema.
pub type SubjectVersion = (String, Version);

/// The schema formats Confluent knows. Records may only carry these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SchemaType {
    /// Apache Avro, the default when `schemaType` is absent.
    Avro,
    /// Protocol Buffers.
    Protobuf,
    /// JSON Schema.
    Json,
}

impl SchemaType {
    /// Confluent's name for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Json => "JSON",
        }
    }

    /// Reads a `schemaType` field: absent means AVRO; case-insensitive like Confluent.
    pub fn parse(name: Option<&str>) -> Option<Self> {
        match name.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Some(Self::Avro),
            Some("PROTOBUF") => Some(Self::Protobuf),
            Some("JSON") => Some(Self::Json),
            Some(_) => None,
        }
    }
}

/// A reference from one schema to a registered one (Confluent's `SchemaReference`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// The name the referring schema uses (for Avro, the full name of the referenced type).
    pub name: String,
    /// The subject holding the referenced schema.
    pub subject: String,
    /// Its version in that subject.
    pub version: Version,
}

/// One version of a subject, as its latest `SCHEMA` record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaEntry {
    /// The global id.
    pub id: SchemaId,
    /// The format.
    pub schema_type: SchemaType,
    /// The schemas it refers to.
    pub references: Vec<Reference>,
    /// The text as stored (Confluent stores the canonical text of what was registered).
    pub schema: String,
    /// Soft-deleted: hidden unless asked for, kept for ids and version numbering.
    pub deleted: bool,
    /// kelp's canonical text of `schema`, computed when the record is applied (`None` when the
    /// format cannot parse it yet). Schemas written by another registry may store a different
    /// text for the same schema; this is what makes them match.
    pub canonical: Option<String>,
}

/// Registry modes (Confluent's `Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Registration and deletion allowed.
    ReadWrite,
    /// No writes to the subjects in scope.
    ReadOnly,
    /// Read-only, and it overrides subject-level modes when set globally.
    ReadOnlyOverride,
    /// Registration with explicit ids and versions (migration from another registry).
    Import,
}

impl Mode {
    /// Confluent's name for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "READWRITE",
            Self::ReadOnly => "READONLY",
            Self::ReadOnlyOverride => "READONLY_OVERRIDE",
            Self::Import => "IMPORT",
        }
    }

    /// Parses a mode name, case-insensitively as Confluent does.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "READWRITE" => Some(Self::ReadWrite),
            "READONLY" => Some(Self::ReadOnly),
            "READONLY_OVERRIDE" => Some(Self::ReadOnlyOverride),
            "IMPORT" => Some(Self::Import),
            _ => None,
        }
    }

    /// No registration or deletion in this mode.
    pub const fn is_read_only(self) -> bool {
        matches!(self, Self::ReadOnly | Self::ReadOnlyOverride)
    }
}

/// A `CONFIG` value. Fields kelp does not use are kept so a rewrite does not drop them.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    /// `compatibilityLevel`, if set.
    pub compatibility: Option<CompatibilityLevel>,
    /// `normalize`, if set: normalize schemas on registration and lookup.
    pub normalize: Option<bool>,
    /// The whole value as read (or as to be written).
    pub raw: Map<String, Value>,
}

/// Why a record was not applied. The registry is unchanged by such a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyError {
    /// The key is not a JSON object with a string `keytype`.
    BadKey(&'static str),
    /// A `keytype` kelp does not know (ASSOC, CONTEXT, or newer ones): skipped.
    UnknownKeyType,
    /// The value does not fit the key's layout.
    BadValue(&'static str),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadKey(what) => write!(f, "bad _schemas key: {what}"),
            Self::UnknownKeyType => f.write_str("unknown _schemas keytype, skipped"),
            Self::BadValue(what) => write!(f, "bad _schemas value: {what}"),
        }
    }
}

impl std::error::Error for ApplyError {}

/// What makes two registrations "the same schema" for global ids: format, stored text and
/// references (Confluent hashes the same three).
type Fingerprint = (SchemaType, String, Vec<Reference>);

/// The registry's state. Build it with [`Registry::new`] and [`Registry::apply`]; answer
/// requests with [`Registry::handle`](crate::api).
#[derive(Debug, Clone)]
pub struct Registry {
    pub(crate) kafka_cluster_id: String,
    pub(crate) subjects: BTreeMap<String, BTreeMap<Version, SchemaEntry>>,
    /// Every `(subject, version)` holding an id, deleted or not.
    pub(crate) by_id: BTreeMap<SchemaId, BTreeSet<SubjectVersion>>,
    by_fingerprint: BTreeMap<Fingerprint, BTreeSet<(SchemaId, SubjectVersion)>>,
    /// The same, keyed by kelp's canonical text instead of the stored one.
    by_canonical: BTreeMap<Fingerprint, BTreeSet<(SchemaId, SubjectVersion)>>,
    /// Referenced `(subject, version)` → the versions referring to it.
    pub(crate) referenced_by: BTreeMap<SubjectVersion, BTreeSet<SubjectVersion>>,
    max_id: i32,
    /// `None` is the global config.
    pub(crate) configs: BTreeMap<Option<String>, ConfigEntry>,
    /// `None` is the global mode.
    pub(crate) modes: BTreeMap<Option<String>, Mode>,
}

impl Registry {
    /// An empty registry. `kafka_cluster_id` is reported by `GET /v1/metadata/id`.
    pub fn new(kafka_cluster_id: impl Into<String>) -> Self {
        Self {
            kafka_cluster_id: kafka_cluster_id.into(),
            subjects: BTreeMap::new(),
            by_id: BTreeMap::new(),
            by_fingerprint: BTreeMap::new(),
            by_canonical: BTreeMap::new(),
            referenced_by: BTreeMap::new(),
            max_id: 0,
            configs: BTreeMap::new(),
            modes: BTreeMap::new(),
        }
    }

    /// Applies one `_schemas` record (`value` `None` is a tombstone). Never panics: a record
    /// that does not parse is reported and leaves the registry unchanged.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), ApplyError> {
        let key: Value = serde_json::from_slice(key).map_err(|_| ApplyError::BadKey("not JSON"))?;
        let keytype = key.get("keytype").and_then(Value::as_str).ok_or(ApplyError::BadKey("no keytype"))?;
        let value = match value {
            Some(bytes) => Some(serde_json::from_slice::<Value>(bytes).map_err(|_| ApplyError::BadValue("not JSON"))?),
            None => None,
        };
        match keytype {
            "SCHEMA" => self.apply_schema(&key, value.as_ref()),
            "CONFIG" => self.apply_config(&key, value.as_ref()),
            "MODE" => self.apply_mode(&key, value.as_ref()),
            "DELETE_SUBJECT" => value.map_or(Ok(()), |v| self.apply_delete_subject(&v)),
            "CLEAR_SUBJECT" => value.map_or(Ok(()), |v| self.apply_clear_subject(&key, &v)),
            "NOOP" => Ok(()),
            _ => Err(ApplyError::UnknownKeyType),
        }
    }

    fn apply_schema(&mut self, key: &Value, value: Option<&Value>) -> Result<(), ApplyError> {
        let subject = key.get("subject").and_then(Value::as_str).ok_or(ApplyError::BadKey("SCHEMA without subject"))?;
        let version =
            key.get("version").and_then(as_i32).filter(|v| *v >= 1).ok_or(ApplyError::BadKey("bad version"))?;
        let at = (subject.to_owned(), Version(version));
        let entry = match value {
            Some(value) => Some(parse_schema_value(value)?),
            None => None,
        };
        self.remove_version(&at);
        if let Some(entry) = entry {
            self.insert_version(at, entry);
        }
        Ok(())
    }

    fn remove_version(&mut self, at: &SubjectVersion) {
        let Some(versions) = self.subjects.get_mut(&at.0) else { return };
        let Some(old) = versions.remove(&at.1) else { return };
        if versions.is_empty() {
            self.subjects.remove(&at.0);
        }
        remove_from(&mut self.by_id, &old.id, at);
        for r in &old.references {
            remove_from(&mut self.referenced_by, &(r.subject.clone(), r.version), at);
        }
        let item = (old.id, at.clone());
        if let Some(canonical) = old.canonical {
            remove_from(&mut self.by_canonical, &(old.schema_type, canonical, old.references.clone()), &item);
        }
        remove_from(&mut self.by_fingerprint, &(old.schema_type, old.schema, old.references), &item);
    }

    fn insert_version(&mut self, at: SubjectVersion, mut entry: SchemaEntry) {
        entry.canonical = self.parse_entry(&entry).map(|p| p.canonical());
        if let Some(canonical) = &entry.canonical {
            let key = (entry.schema_type, canonical.clone(), entry.references.clone());
            self.by_canonical.entry(key).or_default().insert((entry.id, at.clone()));
        }
        self.max_id = self.max_id.max(entry.id.0);
        self.by_id.entry(entry.id).or_default().insert(at.clone());
        for r in &entry.references {
            self.referenced_by.entry((r.subject.clone(), r.version)).or_default().insert(at.clone());
        }
        let fingerprint = (entry.schema_type, entry.schema.clone(), entry.references.clone());
        self.by_fingerprint.entry(fingerprint).or_default().insert((entry.id, at.clone()));
        self.subjects.entry(at.0).or_default().insert(at.1, entry);
    }

    fn apply_config(&mut self, key: &Value, value: Option<&Value>) -> Result<(), ApplyError> {
        let subject = optional_subject(key)?;
        match value {
            None => {
                self.configs.remove(&subject);
            }
            Some(value) => {
                let entry = parse_config_value(value)?;
                self.configs.insert(subject, entry);
            }
        }
        Ok(())
    }

    fn apply_mode(&mut self, key: &Value, value: Option<&Value>) -> Result<(), ApplyError> {
        let subject = optional_subject(key)?;
        match value {
            None => {
                self.modes.remove(&subject);
            }
            Some(value) => {
                let name =
                    value.get("mode").and_then(Value::as_str).ok_or(ApplyError::BadValue("MODE without mode"))?;
                let mode = Mode::parse(name).ok_or(ApplyError::BadValue("unknown mode"))?;
                self.modes.insert(subject, mode);
            }
        }
        Ok(())
    }

    fn apply_delete_subject(&mut self, value: &Value) -> Result<(), ApplyError> {
        let subject = value
            .get("subject")
            .and_then(Value::as_str)
            .ok_or(ApplyError::BadValue("DELETE_SUBJECT without subject"))?;
        let upto =
            value.get("version").and_then(as_i32).ok_or(ApplyError::BadValue("DELETE_SUBJECT without version"))?;
        if let Some(versions) = self.subjects.get_mut(subject) {
            for (_, entry) in versions.range_mut(..=Version(upto)) {
                entry.deleted = true;
            }
        }
        Ok(())
    }

    fn apply_clear_subject(&mut self, key: &Value, value: &Value) -> Result<(), ApplyError> {
        let subject = value.get("subject").and_then(Value::as_str).map(str::to_owned).or(optional_subject(key)?);
        let doomed: Vec<SubjectVersion> = self
            .subjects
            .iter()
            .filter(|(s, _)| subject.as_deref().is_none_or(|only| only.is_empty() || only == s.as_str()))
            .flat_map(|(s, versions)| versions.iter().filter(|(_, e)| e.deleted).map(|(v, _)| (s.clone(), *v)))
            .collect();
        for at in &doomed {
            self.remove_version(at);
        }
        Ok(())
    }

    // ---- parsing stored schemas ----

    /// The texts of every schema `refs` needs, transitively, dependencies first, one per name.
    pub(crate) fn reference_texts(&self, refs: &[Reference]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        self.collect_references(refs, 0, &mut seen, &mut out)?;
        Ok(out)
    }

    fn collect_references(
        &self,
        refs: &[Reference],
        depth: usize,
        seen: &mut BTreeSet<SubjectVersion>,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err("Invalid schema: references nest too deeply".to_owned());
        }
        for r in refs {
            if !seen.insert((r.subject.clone(), r.version)) {
                continue;
            }
            let e = self.entry(&r.subject, r.version).ok_or_else(|| {
                format!(
                    "Invalid schema: reference '{}' to subject '{}' version {} not found",
                    r.name, r.subject, r.version.0
                )
            })?;
            self.collect_references(&e.references, depth + 1, seen, out)?;
            if !out.iter().any(|(name, _)| *name == r.name) {
                out.push((r.name.clone(), e.schema.clone()));
            }
        }
        Ok(())
    }

    /// Parses a schema with its references resolved from the registry's state.
    pub(crate) fn parse_schema(
        &self,
        schema_type: SchemaType,
        text: &str,
        refs: &[Reference],
    ) -> Result<Parsed, String> {
        let texts = self.reference_texts(refs)?;
        let referenced: Vec<Referenced<'_>> = texts.iter().map(|(name, schema)| Referenced { name, schema }).collect();
        format::parse(schema_type, text, &referenced)
    }

    /// Parses a stored version; `None` if its format cannot (yet) parse it.
    pub(crate) fn parse_entry(&self, e: &SchemaEntry) -> Option<Parsed> {
        self.parse_schema(e.schema_type, &e.schema, &e.references).ok()
    }

    // ---- reads used by the API ----

    /// The next id a new schema gets: one more than the highest id ever seen; `None` once
    /// `i32::MAX` has been used.
    pub fn next_id(&self) -> Option<SchemaId> {
        self.max_id.checked_add(1).map(SchemaId)
    }

    /// A subject's versions, deleted ones included.
    pub fn versions(&self, subject: &str) -> Option<&BTreeMap<Version, SchemaEntry>> {
        self.subjects.get(subject)
    }

    /// One version of a subject, deleted or not.
    pub fn entry(&self, subject: &str, version: Version) -> Option<&SchemaEntry> {
        self.subjects.get(subject)?.get(&version)
    }

    /// Whether the subject has a version (a live one, or any when `deleted`).
    pub fn has_subject(&self, subject: &str, deleted: bool) -> bool {
        self.subjects.get(subject).is_some_and(|v| v.values().any(|e| deleted || !e.deleted))
    }

    /// The id already given to this schema: the same format and references, and the same stored
    /// text or else the same canonical text.
    pub fn id_of(
        &self,
        schema_type: SchemaType,
        text: &str,
        canonical: &str,
        references: &[Reference],
    ) -> Option<SchemaId> {
        let first = |index: &BTreeMap<Fingerprint, BTreeSet<(SchemaId, SubjectVersion)>>, text: &str| {
            index.get(&(schema_type, text.to_owned(), references.to_vec()))?.first().map(|(id, _)| *id)
        };
        first(&self.by_fingerprint, text).or_else(|| first(&self.by_canonical, canonical))
    }

    /// The versions holding an id, deleted ones included.
    pub fn holders(&self, id: SchemaId) -> impl Iterator<Item = (&SubjectVersion, &SchemaEntry)> {
        self.by_id
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|at| self.subjects.get(&at.0).and_then(|v| v.get(&at.1)).map(|e| (at, e)))
    }

    /// The versions that refer to `(subject, version)`, deleted ones only when asked.
    pub fn referrers(&self, subject: &str, version: Version, deleted: bool) -> Vec<(&SubjectVersion, &SchemaEntry)> {
        let key = (subject.to_owned(), version);
        self.referenced_by
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|at| self.subjects.get(&at.0).and_then(|v| v.get(&at.1)).map(|e| (at, e)))
            .filter(|(_, e)| deleted || !e.deleted)
            .collect()
    }

    /// The config set for a subject (`None`: the global one), if any.
    pub fn config(&self, subject: Option<&str>) -> Option<&ConfigEntry> {
        self.configs.get(&subject.map(str::to_owned))
    }

    /// The mode set for a subject (`None`: the global one), if any.
    pub fn mode(&self, subject: Option<&str>) -> Option<Mode> {
        self.modes.get(&subject.map(str::to_owned)).copied()
    }

    /// The mode in force for a subject: its own, else the global one, else READWRITE; a global
    /// READONLY_OVERRIDE wins over subject modes.
    pub fn mode_in_scope(&self, subject: &str) -> Mode {
        let global = self.mode(None);
        if global == Some(Mode::ReadOnlyOverride) {
            return Mode::ReadOnlyOverride;
        }
        self.mode(Some(subject)).or(global).unwrap_or(Mode::ReadWrite)
    }

    /// The compatibility level in force for a subject: its own, else global, else BACKWARD.
    pub fn compatibility_in_scope(&self, subject: Option<&str>) -> CompatibilityLevel {
        let own = subject.and_then(|s| self.config(Some(s))).and_then(|c| c.compatibility);
        own.or_else(|| self.config(None).and_then(|c| c.compatibility)).unwrap_or_default()
    }

    /// Whether registration normalizes by config for this subject.
    pub fn normalize_in_scope(&self, subject: &str) -> bool {
        let own = self.config(Some(subject)).and_then(|c| c.normalize);
        own.or_else(|| self.config(None).and_then(|c| c.normalize)).unwrap_or(false)
    }
}

fn remove_from<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeSet<V>>, key: &K, item: &V) {
    if let Some(set) = map.get_mut(key) {
        set.remove(item);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

fn as_i32(v: &Value) -> Option<i32> {
    v.as_i64().and_then(|n| i32::try_from(n).ok())
}

/// The `subject` of a CONFIG, MODE or CLEAR_SUBJECT key: a string, or null/absent for global.
fn optional_subject(key: &Value) -> Result<Option<String>, ApplyError> {
    match key.get("subject") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApplyError::BadKey("subject is not a string")),
    }
}

fn parse_schema_value(value: &Value) -> Result<SchemaEntry, ApplyError> {
    let id = value.get("id").and_then(as_i32).filter(|id| *id >= 0).ok_or(ApplyError::BadValue("bad id"))?;
    let schema = value.get("schema").and_then(Value::as_str).ok_or(ApplyError::BadValue("no schema"))?;
    let type_name = match value.get("schemaType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApplyError::BadValue("schemaType is not a string")),
    };
    let schema_type = SchemaType::parse(type_name).ok_or(ApplyError::BadValue("unknown schemaType"))?;
    let references = match value.get("references") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(refs)) => {
            refs.iter().map(parse_reference).collect::<Option<Vec<_>>>().ok_or(ApplyError::BadValue("bad reference"))?
        }
        Some(_) => return Err(ApplyError::BadValue("references is not an array")),
    };
    let deleted = value.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    Ok(SchemaEntry { id: SchemaId(id), schema_type, references, schema: schema.to_owned(), deleted, canonical: None })
}

/// One `{"name","subject","version"}` object, as records and request bodies carry it.
pub(crate) fn parse_reference(r: &Value) -> Option<Reference> {
    Some(Reference {
        name: r.get("name")?.as_str()?.to_owned(),
        subject: r.get("subject")?.as_str()?.to_owned(),
        version: Version(as_i32(r.get("version")?)?),
    })
}

fn parse_config_value(value: &Value) -> Result<ConfigEntry, ApplyError> {
    let raw = value.as_object().ok_or(ApplyError::BadValue("CONFIG value is not an object"))?.clone();
    let compatibility = match raw.get("compatibilityLevel") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(CompatibilityLevel::parse(s).ok_or(ApplyError::BadValue("unknown compatibilityLevel"))?)
        }
        Some(_) => return Err(ApplyError::BadValue("compatibilityLevel is not a string")),
    };
    let normalize = raw.get("normalize").and_then(Value::as_bool);
    Ok(ConfigEntry { compatibility, normalize, raw })
}

// ---- record builders: what the API asks the driver to write ----

/// A record for `_schemas`: JSON key bytes and JSON value bytes, `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key, a JSON object in Confluent's layout.
    pub key: Vec<u8>,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn schema_key(subject: &str, version: Version) -> Vec<u8> {
    bytes(&json!({"keytype": "SCHEMA", "subject": subject, "version": version.0, "magic": 1}))
}

fn subject_key(keytype: &str, subject: Option<&str>) -> Vec<u8> {
    bytes(&json!({"keytype": keytype, "subject": subject, "magic": 0}))
}

/// The `SCHEMA` record for one version.
pub(crate) fn schema_record(subject: &str, version: Version, entry: &SchemaEntry) -> Record {
    let mut value = Map::new();
    value.insert("subject".into(), subject.into());
    value.insert("version".into(), version.0.into());
    value.insert("id".into(), entry.id.0.into());
    if entry.schema_type != SchemaType::Avro {
        value.insert("schemaType".into(), entry.schema_type.as_str().into());
    }
    if !entry.references.is_empty() {
        value.insert("references".into(), references_json(&entry.references));
    }
    value.insert("schema".into(), entry.schema.clone().into());
    value.insert("deleted".into(), entry.deleted.into());
    Record { key: schema_key(subject, version), value: Some(bytes(&Value::Object(value))) }
}

/// The tombstone that hard-deletes one version.
pub(crate) fn schema_tombstone(subject: &str, version: Version) -> Record {
    Record { key: schema_key(subject, version), value: None }
}

/// The `DELETE_SUBJECT` record soft-deleting every version up to `upto`.
pub(crate) fn delete_subject_record(subject: &str, upto: Version) -> Record {
    let value = json!({"subject": subject, "version": upto.0});
    Record { key: subject_key("DELETE_SUBJECT", Some(subject)), value: Some(bytes(&value)) }
}

/// The `CLEAR_SUBJECT` record (entering IMPORT mode).
pub(crate) fn clear_subject_record(subject: Option<&str>) -> Record {
    let value = json!({"subject": subject});
    Record { key: subject_key("CLEAR_SUBJECT", subject), value: Some(bytes(&value)) }
}

/// A `CONFIG` record, or its tombstone.
pub(crate) fn config_record(subject: Option<&str>, value: Option<&Map<String, Value>>) -> Record {
    let value = value.map(|m| bytes(&Value::Object(m.clone())));
    Record { key: subject_key("CONFIG", subject), value }
}

/// A `MODE` record, or its tombstone.
pub(crate) fn mode_record(subject: Option<&str>, mode: Option<Mode>) -> Record {
    let value = mode.map(|m| bytes(&json!({"subject": subject, "mode": m.as_str()})));
    Record { key: subject_key("MODE", subject), value }
}

/// References as Confluent's JSON array.
pub(crate) fn references_json(refs: &[Reference]) -> Value {
    refs.iter().map(|r| json!({"name": r.name, "subject": r.subject, "version": r.version.0})).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(reg: &mut Registry, subject: &str, version: i32, value: Option<Value>) -> Result<(), ApplyError> {
        let key = json!({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}).to_string();
        let value = value.map(|v| v.to_string());
        reg.apply(key.as_bytes(), value.as_deref().map(str::as_bytes))
    }

    fn value(subject: &str, version: i32, id: i32, refs: Value) -> Value {
        json!({"subject": subject, "version": version, "id": id, "schema": "\"int\"", "references": refs, "deleted": false})
    }

    #[test]
    fn indexes_follow_overwrites_and_tombstones() {
        let mut reg = Registry::new("c");
        schema(&mut reg, "base", 1, Some(value("base", 1, 1, json!([])))).unwrap();
        let r = json!([{"name": "B", "subject": "base", "version": 1}]);
        schema(&mut reg, "top", 1, Some(value("top", 1, 2, r))).unwrap();
        assert_eq!(reg.referrers("base", Version(1), true).len(), 1);
        // Overwriting the referrer without references drops it from the index.
        schema(&mut reg, "top", 1, Some(value("top", 1, 2, json!([])))).unwrap();
        assert!(reg.referrers("base", Version(1), true).is_empty());
        assert_eq!(reg.id_of(SchemaType::Avro, "\"int\"", "\"int\"", &[]), Some(SchemaId(1)));
        schema(&mut reg, "base", 1, None).unwrap();
        schema(&mut reg, "top", 1, None).unwrap();
        assert!(reg.subjects.is_empty() && reg.by_id.is_empty() && reg.referenced_by.is_empty());
        assert_eq!(reg.id_of(SchemaType::Avro, "\"int\"", "\"int\"", &[]), None);
        assert_eq!(reg.next_id(), Some(SchemaId(3)), "ids are never reused");
    }

    #[test]
    fn delete_subject_and_clear_subject() {
        let mut reg = Registry::new("c");
        for v in 1..=3 {
            schema(&mut reg, "s", v, Some(value("s", v, v, json!([])))).unwrap();
        }
        let key = br#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#;
        reg.apply(key, Some(br#"{"subject":"s","version":2}"#)).unwrap();
        let deleted: Vec<bool> = reg.versions("s").unwrap().values().map(|e| e.deleted).collect();
        assert_eq!(deleted, [true, true, false]);
        let key = br#"{"keytype":"CLEAR_SUBJECT","subject":"s","magic":0}"#;
        reg.apply(key, Some(br#"{"subject":"s"}"#)).unwrap();
        assert_eq!(reg.versions("s").unwrap().keys().copied().collect::<Vec<_>>(), [Version(3)]);
    }

    #[test]
    fn records_we_write_read_back() {
        let entry = SchemaEntry {
            id: SchemaId(7),
            schema_type: SchemaType::Protobuf,
            references: vec![Reference { name: "a.proto".into(), subject: "a".into(), version: Version(2) }],
            schema: "syntax = \"proto3\";".into(),
            deleted: true,
            canonical: None,
        };
        let record = schema_record("s/x", Version(4), &entry);
        let mut reg = Registry::new("c");
        reg.apply(&record.key, record.value.as_deref()).unwrap();
        assert_eq!(reg.entry("s/x", Version(4)), Some(&entry));
        let key: Value = serde_json::from_slice(&record.key).unwrap();
        assert_eq!(key, json!({"keytype": "SCHEMA", "subject": "s/x", "version": 4, "magic": 1}));

        let mode = mode_record(None, Some(Mode::Import));
        reg.apply(&mode.key, mode.value.as_deref()).unwrap();
        assert_eq!(reg.mode(None), Some(Mode::Import));
        let mut raw = Map::new();
        raw.insert("compatibilityLevel".into(), "FULL".into());
        raw.insert("alias".into(), "other".into());
        let config = config_record(Some("s/x"), Some(&raw));
        reg.apply(&config.key, config.value.as_deref()).unwrap();
        assert_eq!(reg.compatibility_in_scope(Some("s/x")), CompatibilityLevel::Full);
        assert_eq!(reg.config(Some("s/x")).map(|c| c.raw.clone()), Some(raw));
    }
}
