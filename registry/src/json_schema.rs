//! JSON Schema (Confluent's schema type `JSON`): parsing with registered references, Confluent's
//! canonical and normalized texts, and compatibility after Confluent's
//! `io.confluent.kafka.schemaregistry.json.diff` rules.
//!
//! Validity is judged by the `jsonschema` crate, built without its default features: it has no
//! HTTP client and no file access, and the retriever handed to it serves only the registered
//! references, so a `$ref` to anything else is an error and is never fetched. The draft comes from
//! `$schema` (drafts 4, 6, 7, 2019-09 and 2020-12); without one it is draft 7, as in Confluent.
//!
//! The compatibility checker does not use `jsonschema`'s compiled form: it builds its own model
//! of the document (an arena of `Node`s shaped like the Java library Confluent uses: string,
//! number, object, array, enum, const, combined, not, reference, empty and false schemas) and
//! compares two of them the way Confluent's `SchemaDiff` does, with the same difference types,
//! the same set of compatible changes (Confluent's default, STRICT policy) and the same paths
//! (`#/properties/foo/maxLength`).
//!
//! Texts: [`JsonSchema::canonical`] is the document with the whitespace between tokens removed,
//! keys in the order written. We keep the text rather than re-serializing a `serde_json::Value`,
//! because the workspace's `serde_json` sorts object keys (its `preserve_order` feature would
//! change that for every crate). Unlike Jackson, string escapes and number spellings are kept as
//! written (`1e2` stays `1e2`), and a duplicated key is kept twice. [`JsonSchema::normalized`]
//! re-serializes with keys sorted at every level, as Confluent's `normalize()` re-reads the
//! canonical text with sorted properties.
//!
//! Hostile input gives `Err`, never a panic: nesting deeper than [`MAX_DEPTH`] is refused before
//! anything walks it, the model has a node budget, `$ref` cycles are cut by remembering the
//! pairs under comparison, and the comparison has a step budget and a depth bound (a long chain
//! of `$ref`s could otherwise recurse without end). Identical subschemas without `$ref`s are
//! recognized by a hash of their sorted text and not walked, which keeps large unions cheap.
//!
//! The checker follows `$ref`s by JSON pointer, by `$anchor` (or a draft 6/7 `$id` of `#name`),
//! by an `$id` embedded in a document, and into the registered references. Known gaps against
//! Confluent: keywords beside a `$ref` are ignored by the checker (the validator applies them);
//! recursive cycles are assumed compatible without Confluent's fixpoint refinement;
//! `if`/`then`/`else`, `propertyNames` and `contains` take no part in the comparison; subschemas
//! with `$ref`s inside are not merged when repeated in a union; Confluent's 2020-12 loader drops
//! some keywords (`maxProperties`, `$id`) from its list of (compatible) differences, which this
//! model keeps; a custom meta-schema in `$schema` is refused.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::Referenced;

mod typed;

pub use typed::JsonColumns;

/// The deepest nesting of arrays and objects a schema document may have.
pub const MAX_DEPTH: usize = 64;

/// The most nodes the comparison model of one schema may have (references included).
const MAX_NODES: usize = 100_000;

/// The most schema pairs one compatibility check may compare before it gives up.
const MAX_STEPS: usize = 200_000;

/// The deepest the comparison may go. Nesting in one document is bounded by [`MAX_DEPTH`], but
/// a chain of `$ref`s (definition 1 refers to 2, 2 to 3, ...) can lead further down; the bound
/// keeps the recursion well inside a thread's stack.
const MAX_COMPARE_DEPTH: usize = 128;

/// A parsed JSON Schema with its references resolved.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    canonical: String,
    normalized: String,
    model: Model,
    /// The compiled document, for checking instances.
    validator: Option<std::sync::Arc<jsonschema::Validator>>,
    /// The document's top-level `title`, when it is a string (read once: the broker asks for it
    /// on every record it checks under a record-name strategy).
    title: Option<String>,
}

impl JsonSchema {
    /// Confluent's canonical text: the document in compact form, keys in their written order.
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// Checks that `payload` is a JSON document valid against the schema.
    ///
    /// # Errors
    /// Why not: not JSON (or nested too deep), or the first rule it breaks, with where.
    pub fn check_instance(&self, payload: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
        match &self.validator {
            // A boolean schema: `true` takes everything, `false` nothing.
            None => {
                if self.canonical == "false" {
                    Err("the schema (false) accepts no value".to_owned())
                } else {
                    Ok(())
                }
            }
            Some(v) => match v.iter_errors(&value).next() {
                None => Ok(()),
                Some(e) => Err(format!("not valid against the JSON Schema at '{}': {e}", e.instance_path())),
            },
        }
    }

    /// The name subject-name strategies use for the schema: its top-level `title`, if any.
    pub fn record_name(&self) -> Option<String> {
        self.title.clone()
    }

    /// The text for `normalize=true`: compact, keys sorted at every level.
    pub fn normalized(&self) -> String {
        self.normalized.clone()
    }
}

/// Parses `text`, a JSON Schema document, resolving `$ref`s from `references` (in dependency
/// order, each known by the URI or relative name in [`Referenced::name`]). `Err` says why the
/// schema is refused: invalid JSON, too deep, not valid against its draft's meta-schema, an
/// unknown `$schema`, or a `$ref` that is neither local nor a registered reference.
pub fn parse(text: &str, references: &[Referenced<'_>]) -> Result<JsonSchema, String> {
    let mut seen = BTreeSet::new();
    let references: Vec<&Referenced<'_>> = references.iter().filter(|r| seen.insert(r.name)).collect();
    let mut docs = Vec::with_capacity(references.len() + 1);
    let (canonical, main) = read(text)?;
    docs.push((String::new(), main));
    for r in &references {
        let (_, doc) = read(r.schema).map_err(|e| format!("reference '{}': {e}", r.name))?;
        docs.push((r.name.to_owned(), doc));
    }
    let served: Vec<(String, Value)> = docs[1..].to_vec();
    // The references first, so a problem inside one is reported against it.
    let mut validator = None;
    for (i, (name, doc)) in docs.iter().enumerate().skip(1).chain(docs.iter().enumerate().take(1)) {
        let compiled =
            validate(doc, &served).map_err(|e| if i == 0 { e } else { format!("reference '{name}': {e}") })?;
        if i == 0 {
            validator = compiled.map(std::sync::Arc::new);
        }
    }
    let mut normalized = String::new();
    write_sorted(&mut normalized, &docs[0].1);
    let model = Model::build(&docs)?;
    let title = docs[0].1.get("title").and_then(Value::as_str).map(str::to_owned);
    Ok(JsonSchema { canonical, normalized, model, validator, title })
}

/// Checks the depth bound and the JSON syntax; returns the compact text and the value.
fn read(text: &str) -> Result<(String, Value), String> {
    let compact = compact(text)?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("Invalid JSON: {e}"))?;
    Ok((compact, value))
}

/// The text without whitespace between tokens, refusing nesting deeper than [`MAX_DEPTH`].
/// Runs before any parser walks the text; syntax errors are left to `serde_json`.
fn compact(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("Invalid schema: nested deeper than {MAX_DEPTH} levels"));
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            c if c.is_whitespace() => continue,
            _ => {}
        }
        out.push(c);
    }
    Ok(out)
}

/// Writes `v` compactly with object keys sorted (recursion bounded by [`MAX_DEPTH`]).
fn write_sorted(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_sorted(out, &m[k]);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(out, x);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// The draft `$schema` names; draft 7 when there is none, as Confluent defaults.
fn draft_of(doc: &Value) -> Result<jsonschema::Draft, String> {
    use jsonschema::Draft;
    let Some(uri) = doc.get("$schema") else { return Ok(Draft::Draft7) };
    let Some(uri) = uri.as_str() else { return Err("Invalid schema: $schema is not a string".into()) };
    match Draft::from_schema_uri(uri) {
        d @ (Draft::Draft4 | Draft::Draft6 | Draft::Draft7 | Draft::Draft201909 | Draft::Draft202012) => Ok(d),
        _ => Err(format!("Invalid schema: unsupported $schema '{uri}'")),
    }
}

/// Compiles `doc` with `jsonschema` (which checks it against its draft's meta-schema and
/// resolves every `$ref`), serving only the registered references. `None` for a boolean schema.
fn validate(doc: &Value, served: &[(String, Value)]) -> Result<Option<jsonschema::Validator>, String> {
    if doc.is_boolean() {
        return Ok(None);
    }
    let draft = draft_of(doc)?;
    jsonschema::options()
        .with_draft(draft)
        .with_retriever(Served(served.to_vec()))
        .build(doc)
        .map(Some)
        .map_err(|e| format!("Invalid schema: {e}"))
}

/// A retriever that knows only the registered references and fetches nothing.
struct Served(Vec<(String, Value)>);

impl jsonschema::Retrieve for Served {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let wanted = uri.as_str().split('#').next().unwrap_or_default();
        self.0.iter().find(|(name, _)| names_match(name, wanted)).map(|(_, doc)| doc.clone()).ok_or_else(|| {
            format!("'{wanted}' is not a registered reference (remote references are not fetched)").into()
        })
    }
}

/// Does the `$ref` target `target` (absolute, or relative as written) name the reference
/// registered as `name`? Either may be relative to a base the other has resolved against.
fn names_match(name: &str, target: &str) -> bool {
    let name = name.split('#').next().unwrap_or_default();
    !name.is_empty()
        && (name == target
            || target.strip_suffix(name).is_some_and(|rest| rest.ends_with('/'))
            || name.strip_suffix(target).is_some_and(|rest| rest.ends_with('/')))
}

// ---------------------------------------------------------------------------------------------
// The comparison model.

/// The model of one schema document and its references: nodes in an arena, the root first.
#[derive(Debug, Clone)]
struct Model {
    nodes: Vec<Node>,
}

/// One subschema, with the annotations Confluent compares on every kind.
#[derive(Debug, Clone, Default)]
struct Node {
    kind: Kind,
    id: Option<String>,
    title: Option<String>,
    description: Option<String>,
    default: Option<Value>,
    connect_type: Option<String>,
    /// A hash of the subschema's sorted text when it holds no `$ref`: two subschemas with the
    /// same signature are the same schema, so comparing them finds nothing incompatible.
    signature: Option<u64>,
}

/// The kinds of the Java model Confluent's diff works on. Indices point into [`Model::nodes`].
#[derive(Debug, Clone, Default)]
enum Kind {
    /// `true` or `{}`: everything is valid.
    #[default]
    Empty,
    /// `false`: nothing is valid.
    False,
    Null,
    Boolean,
    String {
        min_length: Option<u64>,
        max_length: Option<u64>,
        pattern: Option<String>,
    },
    Number {
        integer: bool,
        maximum: Option<f64>,
        minimum: Option<f64>,
        exclusive_maximum: Option<f64>,
        exclusive_minimum: Option<f64>,
        multiple_of: Option<f64>,
    },
    Object(Box<Object>),
    Array(Box<Array>),
    Enum(BTreeSet<String>),
    Const(String),
    Combined {
        criterion: &'static str,
        subs: Vec<usize>,
    },
    Not(usize),
    /// A `$ref`, resolved to its target (`None`: not resolvable by the model).
    Ref(Option<usize>),
}

#[derive(Debug, Clone, Default)]
struct Object {
    properties: Vec<(String, usize)>,
    required: Vec<String>,
    /// `additionalProperties: false`.
    closed: bool,
    /// `additionalProperties` given as a schema.
    additional: Option<usize>,
    pattern_properties: Vec<(String, usize)>,
    unevaluated: Option<usize>,
    max_properties: Option<u64>,
    min_properties: Option<u64>,
    dependency_arrays: Vec<(String, BTreeSet<String>)>,
    dependency_schemas: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Default)]
struct Array {
    /// `items` as one schema for all items.
    all_items: Option<usize>,
    /// `items` as a list (or `prefixItems`), one schema per position.
    item_list: Vec<usize>,
    /// `additionalItems: false` (or `items: false` after `prefixItems`).
    closed: bool,
    additional: Option<usize>,
    unevaluated: Option<usize>,
    max_items: Option<u64>,
    min_items: Option<u64>,
    unique: bool,
    max_contains: Option<u64>,
    min_contains: Option<u64>,
}

impl Kind {
    /// Confluent compares the Java classes; all combined schemas count as one class.
    fn class(&self) -> u8 {
        match self {
            Kind::Empty => 0,
            Kind::False => 1,
            Kind::Null => 2,
            Kind::Boolean => 3,
            Kind::String { .. } => 4,
            Kind::Number { .. } => 5,
            Kind::Object(_) => 6,
            Kind::Array(_) => 7,
            Kind::Enum(_) => 8,
            Kind::Const(_) => 9,
            Kind::Combined { .. } => 10,
            Kind::Not(_) => 11,
            Kind::Ref(_) => 12,
        }
    }
}

const OBJECT_WORDS: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
    "unevaluatedProperties",
];
const ARRAY_WORDS: &[&str] =
    &["items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains", "unevaluatedItems"];
const STRING_WORDS: &[&str] = &["minLength", "maxLength", "pattern", "format"];
const NUMBER_WORDS: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];

struct Builder<'a> {
    docs: &'a [(String, Value)],
    nodes: Vec<Node>,
    /// `$ref` targets already given a node: (document, JSON pointer) to node.
    targets: HashMap<(usize, String), usize>,
    pending: Vec<(usize, String, usize)>,
    /// Every `$id`, `id` and `$anchor` in the documents, with where it sits.
    labels: Vec<Label>,
}

/// A name a subschema gives itself: an `$id` (or draft 4's `id`) or an `$anchor`.
struct Label {
    doc: usize,
    pointer: String,
    name: String,
    anchor: bool,
}

/// Collects the labels in `v` (recursion bounded by the documents' depth).
fn collect_labels(doc: usize, v: &Value, pointer: &mut String, out: &mut Vec<Label>) {
    match v {
        Value::Object(m) => {
            for (key, anchor) in [("$id", false), ("id", false), ("$anchor", true)] {
                if let Some(Value::String(name)) = m.get(key) {
                    out.push(Label { doc, pointer: pointer.clone(), name: name.clone(), anchor });
                }
            }
            for (k, child) in m {
                if matches!(k.as_str(), "enum" | "const" | "default" | "examples") {
                    continue;
                }
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                collect_labels(doc, child, pointer, out);
                pointer.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let len = pointer.len();
                let _ = write!(pointer, "/{i}");
                collect_labels(doc, child, pointer, out);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

impl Model {
    fn build(docs: &[(String, Value)]) -> Result<Model, String> {
        let mut labels = Vec::new();
        for (d, (_, v)) in docs.iter().enumerate() {
            collect_labels(d, v, &mut String::new(), &mut labels);
        }
        let mut b = Builder { docs, nodes: Vec::new(), targets: HashMap::new(), pending: Vec::new(), labels };
        let root = b.alloc()?;
        b.fill(root, 0, &docs[0].1)?;
        while let Some((doc, pointer, slot)) = b.pending.pop() {
            match docs[doc].1.pointer(&pointer) {
                Some(v) => b.fill(slot, doc, v)?,
                None => b.nodes[slot].kind = Kind::Empty,
            }
        }
        Ok(Model { nodes: b.nodes })
    }
}

impl Builder<'_> {
    fn alloc(&mut self) -> Result<usize, String> {
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("Invalid schema: more than {MAX_NODES} subschemas"));
        }
        self.nodes.push(Node::default());
        Ok(self.nodes.len() - 1)
    }

    fn node(&mut self, doc: usize, v: &Value) -> Result<usize, String> {
        let i = self.alloc()?;
        self.fill(i, doc, v)?;
        Ok(i)
    }

    fn opt_node(&mut self, doc: usize, v: Option<&Value>) -> Result<Option<usize>, String> {
        v.map(|v| self.node(doc, v)).transpose()
    }

    /// Builds the node for `v` into slot `i`. Recursion follows `v`, whose depth is bounded.
    fn fill(&mut self, i: usize, doc: usize, v: &Value) -> Result<(), String> {
        let obj = match v {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => {
                self.nodes[i].kind = Kind::False;
                return Ok(());
            }
            Value::Object(o) => o,
            _ => return Ok(()),
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        self.nodes[i].id = text("$id").or_else(|| text("id"));
        self.nodes[i].title = text("title");
        self.nodes[i].description = text("description");
        self.nodes[i].default = obj.get("default").cloned();
        self.nodes[i].connect_type = text("connect.type");
        let sorted = sorted_text(v);
        if !sorted.contains("\"$ref\":") {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&sorted, &mut h);
            self.nodes[i].signature = Some(std::hash::Hasher::finish(&h));
        }
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            self.nodes[i].kind = Kind::Ref(self.reference(doc, r)?);
            return Ok(());
        }
        let mut parts = Vec::new();
        match obj.get("type") {
            Some(Value::String(t)) => parts.push(self.typed(doc, obj, t)?),
            Some(Value::Array(ts)) => {
                let mut subs = Vec::new();
                for t in ts.iter().filter_map(Value::as_str) {
                    let k = self.typed(doc, obj, t)?;
                    subs.push(self.push(k)?);
                }
                parts.push(Kind::Combined { criterion: "anyOf", subs });
            }
            _ => {
                for (words, t) in [
                    (OBJECT_WORDS, "object"),
                    (ARRAY_WORDS, "array"),
                    (STRING_WORDS, "string"),
                    (NUMBER_WORDS, "number"),
                ] {
                    if words.iter().any(|w| obj.contains_key(*w)) {
                        let mut k = self.typed(doc, obj, t)?;
                        if let Kind::Number { integer, .. } = &mut k {
                            *integer = false;
                        }
                        parts.push(k);
                    }
                }
            }
        }
        if let Some(Value::Array(values)) = obj.get("enum") {
            parts.push(Kind::Enum(values.iter().map(sorted_text).collect()));
        }
        if let Some(c) = obj.get("const") {
            parts.push(Kind::Const(sorted_text(c)));
        }
        for criterion in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(list)) = obj.get(criterion) {
                let mut subs = Vec::with_capacity(list.len());
                for s in list {
                    subs.push(self.node(doc, s)?);
                }
                parts.push(Kind::Combined { criterion, subs });
            }
        }
        if let Some(n) = obj.get("not") {
            parts.push(Kind::Not(self.node(doc, n)?));
        }
        self.nodes[i].kind = match parts.len() {
            0 => Kind::Empty,
            1 => parts.pop().unwrap_or_default(),
            _ => {
                let mut subs = Vec::with_capacity(parts.len());
                for k in parts {
                    subs.push(self.push(k)?);
                }
                Kind::Combined { criterion: "allOf", subs }
            }
        };
        Ok(())
    }

    fn push(&mut self, kind: Kind) -> Result<usize, String> {
        let i = self.alloc()?;
        self.nodes[i].kind = kind;
        Ok(i)
    }

    /// Finds (or queues) the node for a `$ref`: local, or into a registered reference.
    fn reference(&mut self, doc: usize, r: &str) -> Result<Option<usize>, String> {
        let (base, fragment) = r.split_once('#').unwrap_or((r, ""));
        let (target_doc, mut pointer) = if base.is_empty() {
            (doc, String::new())
        } else if let Some(d) = self.docs.iter().skip(1).position(|(name, _)| names_match(name, base)) {
            (d + 1, String::new())
        } else {
            // A subschema that names itself with `$id` inside one of the documents.
            let Some((d, p)) = self
                .labels
                .iter()
                .find(|l| !l.anchor && names_match(&l.name, base))
                .map(|l| (l.doc, l.pointer.clone()))
            else {
                return Ok(None);
            };
            (d, p)
        };
        if fragment.is_empty() || fragment.starts_with('/') {
            pointer.push_str(&percent_decode(fragment));
        } else {
            // A plain-name fragment: `$anchor` (2019-09 on) or an `$id` of `#name` (drafts 6, 7).
            let name = percent_decode(fragment);
            let found = self.labels.iter().find(|l| {
                l.doc == target_doc
                    && l.pointer.starts_with(&pointer)
                    && (l.anchor && l.name == name || !l.anchor && l.name.strip_prefix('#') == Some(&name))
            });
            let Some(found) = found else { return Ok(None) };
            pointer = found.pointer.clone();
        }
        if let Some(&i) = self.targets.get(&(target_doc, pointer.clone())) {
            return Ok(Some(i));
        }
        let slot = self.alloc()?;
        self.targets.insert((target_doc, pointer.clone()), slot);
        self.pending.push((target_doc, pointer, slot));
        Ok(Some(slot))
    }

    /// The kind for one `type` name, with that type's keywords from `obj`.
    fn typed(&mut self, doc: usize, obj: &serde_json::Map<String, Value>, t: &str) -> Result<Kind, String> {
        let num = |k: &str| obj.get(k).and_then(Value::as_f64);
        let count = |k: &str| obj.get(k).and_then(Value::as_u64);
        Ok(match t {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "string" => Kind::String {
                min_length: count("minLength"),
                max_length: count("maxLength"),
                pattern: obj.get("pattern").and_then(Value::as_str).map(str::to_owned),
            },
            "number" | "integer" => Kind::Number {
                integer: t == "integer",
                maximum: num("maximum"),
                minimum: num("minimum"),
                exclusive_maximum: num("exclusiveMaximum"),
                exclusive_minimum: num("exclusiveMinimum"),
                multiple_of: num("multipleOf"),
            },
            "object" => Kind::Object(Box::new(self.object(doc, obj)?)),
            "array" => Kind::Array(Box::new(self.array(doc, obj)?)),
            _ => Kind::Empty,
        })
    }

    fn object(&mut self, doc: usize, obj: &serde_json::Map<String, Value>) -> Result<Object, String> {
        let mut o = Object::default();
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (k, v) in props {
                o.properties.push((k.clone(), self.node(doc, v)?));
            }
        }
        if let Some(Value::Object(props)) = obj.get("patternProperties") {
            for (k, v) in props {
                o.pattern_properties.push((k.clone(), self.node(doc, v)?));
            }
        }
        if let Some(Value::Array(req)) = obj.get("required") {
            o.required = req.iter().filter_map(Value::as_str).map(str::to_owned).collect();
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(b)) => o.closed = !b,
            Some(v @ Value::Object(_)) => o.additional = Some(self.node(doc, v)?),
            _ => {}
        }
        o.unevaluated = self.opt_node(doc, obj.get("unevaluatedProperties"))?;
        o.max_properties = obj.get("maxProperties").and_then(Value::as_u64);
        o.min_properties = obj.get("minProperties").and_then(Value::as_u64);
        for key in ["dependencies", "dependentRequired", "dependentSchemas"] {
            if let Some(Value::Object(deps)) = obj.get(key) {
                for (k, v) in deps {
                    match v {
                        Value::Array(names) => o
                            .dependency_arrays
                            .push((k.clone(), names.iter().filter_map(Value::as_str).map(str::to_owned).collect())),
                        _ => o.dependency_schemas.push((k.clone(), self.node(doc, v)?)),
                    }
                }
            }
        }
        Ok(o)
    }

    fn array(&mut self, doc: usize, obj: &serde_json::Map<String, Value>) -> Result<Array, String> {
        let mut a = Array::default();
        let tuple = obj.get("prefixItems").or_else(|| obj.get("items").filter(|v| v.is_array()));
        if let Some(Value::Array(list)) = tuple {
            for s in list {
                a.item_list.push(self.node(doc, s)?);
            }
        }
        // After `prefixItems` (2020-12), `items` plays the part of `additionalItems`.
        let (all, extra) = if obj.contains_key("prefixItems") {
            (None, obj.get("items"))
        } else {
            (obj.get("items").filter(|v| !v.is_array()), obj.get("additionalItems"))
        };
        a.all_items = self.opt_node(doc, all)?;
        match extra {
            Some(Value::Bool(b)) => a.closed = !b,
            Some(v @ Value::Object(_)) => a.additional = Some(self.node(doc, v)?),
            _ => {}
        }
        a.unevaluated = self.opt_node(doc, obj.get("unevaluatedItems"))?;
        a.max_items = obj.get("maxItems").and_then(Value::as_u64);
        a.min_items = obj.get("minItems").and_then(Value::as_u64);
        a.unique = obj.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false);
        a.max_contains = obj.get("maxContains").and_then(Value::as_u64);
        a.min_contains = obj.get("minContains").and_then(Value::as_u64);
        Ok(a)
    }
}

/// A JSON value's text with sorted keys: how enum and const values are compared.
fn sorted_text(v: &Value) -> String {
    let mut s = String::new();
    write_sorted(&mut s, v);
    s
}

/// Decodes `%XX` escapes in a URI fragment (invalid ones are kept as written).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The comparison.

/// Confluent's compatible changes under its default (STRICT) policy: every other difference
/// makes the check fail.
pub const COMPATIBLE_CHANGES: &[&str] = &[
    "ID_CHANGED",
    "DESCRIPTION_CHANGED",
    "TITLE_CHANGED",
    "DEFAULT_CHANGED",
    "SCHEMA_REMOVED",
    "TYPE_EXTENDED",
    "MAX_LENGTH_INCREASED",
    "MAX_LENGTH_REMOVED",
    "MIN_LENGTH_DECREASED",
    "MIN_LENGTH_REMOVED",
    "PATTERN_REMOVED",
    "MAXIMUM_INCREASED",
    "MAXIMUM_REMOVED",
    "MINIMUM_DECREASED",
    "MINIMUM_REMOVED",
    "EXCLUSIVE_MAXIMUM_INCREASED",
    "EXCLUSIVE_MAXIMUM_REMOVED",
    "EXCLUSIVE_MINIMUM_DECREASED",
    "EXCLUSIVE_MINIMUM_REMOVED",
    "MULTIPLE_OF_REDUCED",
    "MULTIPLE_OF_REMOVED",
    "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
    "REQUIRED_ATTRIBUTE_REMOVED",
    "DEPENDENCY_ARRAY_NARROWED",
    "DEPENDENCY_ARRAY_REMOVED",
    "DEPENDENCY_SCHEMA_REMOVED",
    "MAX_PROPERTIES_INCREASED",
    "MAX_PROPERTIES_REMOVED",
    "MIN_PROPERTIES_DECREASED",
    "MIN_PROPERTIES_REMOVED",
    "ADDITIONAL_PROPERTIES_ADDED",
    "ADDITIONAL_PROPERTIES_EXTENDED",
    "UNEVALUATED_PROPERTIES_ADDED",
    "UNEVALUATED_PROPERTIES_EXTENDED",
    "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "MAX_ITEMS_INCREASED",
    "MAX_ITEMS_REMOVED",
    "MIN_ITEMS_DECREASED",
    "MIN_ITEMS_REMOVED",
    "MAX_CONTAINS_INCREASED",
    "MAX_CONTAINS_REMOVED",
    "MIN_CONTAINS_DECREASED",
    "MIN_CONTAINS_REMOVED",
    "UNIQUE_ITEMS_REMOVED",
    "ADDITIONAL_ITEMS_ADDED",
    "ADDITIONAL_ITEMS_EXTENDED",
    "UNEVALUATED_ITEMS_ADDED",
    "UNEVALUATED_ITEMS_EXTENDED",
    "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
    "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ENUM_ARRAY_EXTENDED",
    "COMBINED_TYPE_EXTENDED",
    "PRODUCT_TYPE_NARROWED",
    "SUM_TYPE_EXTENDED",
    "NOT_TYPE_NARROWED",
];

fn compatible(ty: &str) -> bool {
    COMPATIBLE_CHANGES.contains(&ty)
}

/// One difference between two schemas, as Confluent's `Difference`: a type and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Confluent's `Difference.Type`, such as `TYPE_CHANGED`.
    pub error_type: &'static str,
    /// Where, as Confluent writes it: `#/properties/foo`.
    pub path: String,
}

impl Difference {
    /// Does Confluent accept this change (STRICT policy)?
    pub fn is_compatible(&self) -> bool {
        compatible(self.error_type)
    }

    /// Confluent's message, with `reader` and `writer` naming the schemas ("new"/"old").
    pub fn message(&self, reader: &str, writer: &str) -> String {
        format!("{{errorType:'{}', description:'{}'}}", self.error_type, self.description(reader, writer))
    }

    fn description(&self, reader: &str, writer: &str) -> String {
        let (p, r, w) = (&self.path, reader, writer);
        let t = self.error_type;
        let is = |set: &[&str]| set.contains(&t);
        if is(&[
            "MAXIMUM_ADDED",
            "MINIMUM_ADDED",
            "EXCLUSIVE_MAXIMUM_ADDED",
            "EXCLUSIVE_MINIMUM_ADDED",
            "MULTIPLE_OF_ADDED",
            "MAX_LENGTH_ADDED",
            "MIN_LENGTH_ADDED",
            "PATTERN_ADDED",
            "REQUIRED_ATTRIBUTE_ADDED",
            "MAX_PROPERTIES_ADDED",
            "MIN_PROPERTIES_ADDED",
            "DEPENDENCY_ARRAY_ADDED",
            "DEPENDENCY_SCHEMA_ADDED",
            "MAX_ITEMS_ADDED",
            "MIN_ITEMS_ADDED",
            "MAX_CONTAINS_ADDED",
            "MIN_CONTAINS_ADDED",
            "UNIQUE_ITEMS_ADDED",
            "ADDITIONAL_ITEMS_REMOVED",
            "ADDITIONAL_PROPERTIES_REMOVED",
            "UNEVALUATED_PROPERTIES_REMOVED",
            "UNEVALUATED_ITEMS_REMOVED",
        ]) {
            format!("The keyword at path '{p}' in the {r} schema is not present in the {w} schema")
        } else if is(&[
            "MIN_LENGTH_INCREASED",
            "MINIMUM_INCREASED",
            "EXCLUSIVE_MINIMUM_INCREASED",
            "MIN_PROPERTIES_INCREASED",
            "MULTIPLE_OF_EXPANDED",
            "MIN_ITEMS_INCREASED",
            "MIN_CONTAINS_INCREASED",
        ]) {
            format!("The value at path '{p}' in the {r} schema is more than its value in the {w} schema")
        } else if is(&[
            "MAX_LENGTH_DECREASED",
            "MAXIMUM_DECREASED",
            "MAX_ITEMS_DECREASED",
            "MAX_CONTAINS_DECREASED",
            "EXCLUSIVE_MAXIMUM_DECREASED",
            "MAX_PROPERTIES_DECREASED",
        ]) {
            format!("The value at path '{p}' in the {r} schema is less than its value in the {w} schema")
        } else if is(&["PATTERN_CHANGED", "MULTIPLE_OF_CHANGED", "DEPENDENCY_ARRAY_CHANGED"]) {
            format!("The value at path '{p}' is different between the {r} and {w} schema")
        } else if is(&[
            "ADDITIONAL_ITEMS_NARROWED",
            "ENUM_ARRAY_NARROWED",
            "SUM_TYPE_NARROWED",
            "ADDITIONAL_PROPERTIES_NARROWED",
            "UNEVALUATED_PROPERTIES_NARROWED",
            "UNEVALUATED_ITEMS_NARROWED",
        ]) {
            format!("An array or combined type at path '{p}' has fewer elements in the {r} schema than the {w} schema")
        } else if is(&["DEPENDENCY_ARRAY_EXTENDED", "PRODUCT_TYPE_EXTENDED", "SUM_TYPE_EXTENDED", "NOT_TYPE_EXTENDED"])
        {
            format!("An array or combined type at path '{p}' has more elements in the {r} schema than the {w} schema")
        } else if is(&[
            "TYPE_CHANGED",
            "TYPE_NARROWED",
            "COMBINED_TYPE_CHANGED",
            "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
            "ENUM_ARRAY_CHANGED",
        ]) {
            format!("A type at path '{p}' is different between the {r} schema and the {w} schema")
        } else if is(&[
            "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
            "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL",
            "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
            "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
        ]) {
            format!(
                "The {r} schema has an open content model and has a property or item at path '{p}' which is missing in the {w} schema"
            )
        } else if t == "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" {
            format!(
                "The {r} schema has an unopen content model and has a required property at path '{p}' which is missing in the {w} schema"
            )
        } else if is(&["PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"]) {
            format!(
                "The {r} has a closed content model and is missing a property or item present at path '{p}' in the {w} schema"
            )
        } else if is(&[
            "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
            "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        ]) {
            format!(
                "A property or item is missing in the {r} schema but present at path '{p}' in the {w} schema and is not covered by its partially open content model"
            )
        } else if is(&[
            "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
            "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        ]) {
            format!(
                "The {r} schema has a property or item at path '{p}' which is missing in the {w} schema and is not covered by its partially open content model"
            )
        } else {
            String::new()
        }
    }
}

/// Every difference Confluent's `SchemaDiff.compare(original = old, update = new)` finds, the
/// compatible ones included. This is `new.isBackwardCompatible(old)` before filtering: the
/// update (`new`) must accept every document the original (`old`) accepts.
pub fn differences(new: &JsonSchema, old: &JsonSchema) -> Result<Vec<Difference>, String> {
    let mut d = Diff {
        orig: &old.model.nodes,
        upd: &new.model.nodes,
        memo: HashMap::new(),
        in_progress: HashSet::new(),
        steps: 0,
        depth: 0,
    };
    let mut ctx = Ctx::default();
    d.compare(&mut ctx, Some(0), Some(0))?;
    Ok(ctx.diffs)
}

/// Why `new` cannot take `old`'s place under BACKWARD compatibility (`new` reads what `old`
/// wrote), as Confluent's messages; empty when it can. For FORWARD call it as `check(old, new)`;
/// [`check_worded`] words the messages for either direction.
pub fn check(new: &JsonSchema, old: &JsonSchema) -> Vec<String> {
    check_worded(new, old, true)
}

/// The incompatible differences when `reader` must accept everything `writer` accepts
/// (Confluent: `reader.isBackwardCompatible(writer)`). `reader_is_new` names the reader "new"
/// and the writer "old" in the messages (BACKWARD); `false` the other way round (FORWARD).
pub fn check_worded(reader: &JsonSchema, writer: &JsonSchema, reader_is_new: bool) -> Vec<String> {
    let (r, w) = if reader_is_new { ("new", "old") } else { ("old", "new") };
    match differences(reader, writer) {
        Ok(diffs) => diffs.iter().filter(|d| !d.is_compatible()).map(|d| d.message(r, w)).collect(),
        Err(e) => vec![e],
    }
}

#[derive(Default)]
struct Ctx {
    path: Vec<String>,
    diffs: Vec<Difference>,
}

impl Ctx {
    fn sub(&self) -> Ctx {
        Ctx { path: self.path.clone(), diffs: Vec::new() }
    }

    fn path_string(&self) -> String {
        format!("#/{}", self.path.join("/"))
    }

    fn add(&mut self, ty: &'static str) {
        let path = self.path_string();
        self.diffs.push(Difference { error_type: ty, path });
    }

    fn add_at(&mut self, attribute: &str, ty: &'static str) {
        self.path.push(attribute.to_owned());
        self.add(ty);
        self.path.pop();
    }

    fn compatible(&self) -> bool {
        self.diffs.iter().all(Difference::is_compatible)
    }

    /// Adds differences found relative to a pair, rebased onto the current path.
    fn add_rebased(&mut self, relative: &[Difference]) {
        let prefix = self.path_string();
        for d in relative {
            let path = if self.path.is_empty() {
                d.path.clone()
            } else if d.path.len() <= 2 {
                prefix.clone()
            } else {
                format!("{prefix}/{}", &d.path[2..])
            };
            self.diffs.push(Difference { error_type: d.error_type, path });
        }
    }

    fn enter(&mut self, segment: &str) {
        self.path.push(segment.to_owned());
    }

    fn leave(&mut self) {
        self.path.pop();
    }
}

struct Diff<'a> {
    orig: &'a [Node],
    upd: &'a [Node],
    memo: HashMap<(usize, usize), Vec<Difference>>,
    in_progress: HashSet<(usize, usize)>,
    steps: usize,
    depth: usize,
}

/// Follows `$ref`s (a bounded number of hops); `None` for an unresolved one.
fn deref(nodes: &[Node], mut i: usize) -> Option<usize> {
    for _ in 0..32 {
        match nodes[i].kind {
            Kind::Ref(Some(t)) => i = t,
            Kind::Ref(None) => return None,
            _ => return Some(i),
        }
    }
    None
}

const EMPTY: Node = Node {
    kind: Kind::Empty,
    id: None,
    title: None,
    description: None,
    default: None,
    connect_type: None,
    signature: None,
};

type Res = Result<(), String>;

impl Diff<'_> {
    fn o(&self, i: Option<usize>) -> &Node {
        i.map_or(&EMPTY, |i| &self.orig[i])
    }

    fn u(&self, i: Option<usize>) -> &Node {
        i.map_or(&EMPTY, |i| &self.upd[i])
    }

    /// `SchemaDiff.compare`: `None` is an absent schema; a resolvable `$ref` is its target.
    fn compare(&mut self, ctx: &mut Ctx, orig: Option<usize>, upd: Option<usize>) -> Res {
        let (o, u) = match (orig, upd) {
            (None, None) => return Ok(()),
            (None, Some(_)) => {
                ctx.add("SCHEMA_ADDED");
                return Ok(());
            }
            (Some(_), None) => {
                ctx.add("SCHEMA_REMOVED");
                return Ok(());
            }
            (Some(o), Some(u)) => (deref(self.orig, o), deref(self.upd, u)),
        };
        // An unresolved reference stands for the empty schema; pairs with it are not memoized.
        let key = match (o, u) {
            // Identical subschemas without references: only compatible differences could follow
            // (none at all, in fact), so the walk is skipped, which keeps large unions cheap.
            (Some(o), Some(u))
                if self.orig[o].signature.is_some() && self.orig[o].signature == self.upd[u].signature =>
            {
                return Ok(());
            }
            (Some(o), Some(u)) => (o, u),
            _ => {
                let mut sub = Ctx::default();
                self.compare_types(&mut sub, o, u)?;
                ctx.add_rebased(&sub.diffs);
                return Ok(());
            }
        };
        if let Some(cached) = self.memo.get(&key) {
            let cached = cached.clone();
            ctx.add_rebased(&cached);
            return Ok(());
        }
        if !self.in_progress.insert(key) {
            return Ok(()); // a cycle: assumed compatible
        }
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err("The schemas are too complex to check for compatibility".into());
        }
        if self.depth >= MAX_COMPARE_DEPTH {
            return Err("The schemas are nested too deeply (through references) to check for compatibility".into());
        }
        self.depth += 1;
        let mut sub = Ctx::default();
        let result = self.compare_types(&mut sub, o, u);
        self.depth -= 1;
        self.in_progress.remove(&key);
        result?;
        ctx.add_rebased(&sub.diffs);
        self.memo.insert(key, sub.diffs);
        Ok(())
    }

    /// Confluent's special cases where only one side is combined: an update that is a union
    /// (or a singleton) is compatible when one branch takes the original's place; an original
    /// that is an intersection (or a singleton) when one of its parts fits the update.
    fn one_side_combined(
        &mut self,
        ctx: &mut Ctx,
        oi: Option<usize>,
        ui: Option<usize>,
        o: &Kind,
        u: &Kind,
    ) -> Result<bool, String> {
        let (subs, on_update, marker) = match (o, u) {
            (Kind::Combined { .. }, Kind::Combined { .. }) => return Ok(false),
            (_, Kind::Combined { criterion, subs }) if subs.len() == 1 || *criterion != "allOf" => {
                (subs, true, "SUM_TYPE_EXTENDED")
            }
            (Kind::Combined { criterion, subs }, _) if subs.len() == 1 || *criterion == "allOf" => {
                (subs, false, "PRODUCT_TYPE_NARROWED")
            }
            _ => return Ok(false),
        };
        // A singleton is tried once; its marker is not added.
        let tries = if subs.len() == 1 { &subs[..1] } else { &subs[..] };
        for &s in tries {
            let mut sub = ctx.sub();
            if on_update {
                self.compare(&mut sub, oi, Some(s))?;
            } else {
                self.compare(&mut sub, Some(s), ui)?;
            }
            if sub.compatible() {
                ctx.diffs.extend(sub.diffs);
                if subs.len() > 1 {
                    ctx.add(marker);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn compare_types(&mut self, ctx: &mut Ctx, oi: Option<usize>, ui: Option<usize>) -> Res {
        let (o, u) = (self.o(oi).kind.clone(), self.u(ui).kind.clone());
        if self.one_side_combined(ctx, oi, ui, &o, &u)? {
            return Ok(());
        }
        if o.class() != u.class() {
            let (on, un) = (self.o(oi), self.u(ui));
            let both_bytes = on.connect_type.as_deref() == Some("bytes") && un.connect_type.as_deref() == Some("bytes");
            if !(matches!(o, Kind::False) || matches!(u, Kind::Empty) || both_bytes) {
                ctx.add("TYPE_CHANGED");
            }
            return Ok(());
        }
        let (on, un) = (self.o(oi), self.u(ui));
        let mut found = Vec::new();
        if on.id != un.id {
            found.push("ID_CHANGED");
        }
        if on.title != un.title {
            found.push("TITLE_CHANGED");
        }
        if on.description != un.description {
            found.push("DESCRIPTION_CHANGED");
        }
        if on.default != un.default {
            found.push("DEFAULT_CHANGED");
        }
        for t in found {
            ctx.add(t);
        }
        match (o, u) {
            (
                Kind::String { min_length: omin, max_length: omax, pattern: op },
                Kind::String { min_length: umin, max_length: umax, pattern: up },
            ) => {
                bound(
                    ctx,
                    "maxLength",
                    omax.map(|v| v as f64),
                    umax.map(|v| v as f64),
                    ["MAX_LENGTH_ADDED", "MAX_LENGTH_REMOVED", "MAX_LENGTH_INCREASED", "MAX_LENGTH_DECREASED"],
                );
                bound(
                    ctx,
                    "minLength",
                    omin.map(|v| v as f64),
                    umin.map(|v| v as f64),
                    ["MIN_LENGTH_ADDED", "MIN_LENGTH_REMOVED", "MIN_LENGTH_INCREASED", "MIN_LENGTH_DECREASED"],
                );
                match (op, up) {
                    (None, Some(_)) => ctx.add_at("pattern", "PATTERN_ADDED"),
                    (Some(_), None) => ctx.add_at("pattern", "PATTERN_REMOVED"),
                    (Some(a), Some(b)) if a != b => ctx.add_at("pattern", "PATTERN_CHANGED"),
                    _ => {}
                }
            }
            (
                Kind::Number {
                    integer: oi,
                    maximum: omax,
                    minimum: omin,
                    exclusive_maximum: oxmax,
                    exclusive_minimum: oxmin,
                    multiple_of: om,
                },
                Kind::Number {
                    integer: ui,
                    maximum: umax,
                    minimum: umin,
                    exclusive_maximum: uxmax,
                    exclusive_minimum: uxmin,
                    multiple_of: um,
                },
            ) => {
                bound(
                    ctx,
                    "maximum",
                    omax,
                    umax,
                    ["MAXIMUM_ADDED", "MAXIMUM_REMOVED", "MAXIMUM_INCREASED", "MAXIMUM_DECREASED"],
                );
                bound(
                    ctx,
                    "minimum",
                    omin,
                    umin,
                    ["MINIMUM_ADDED", "MINIMUM_REMOVED", "MINIMUM_INCREASED", "MINIMUM_DECREASED"],
                );
                bound(
                    ctx,
                    "exclusiveMaximum",
                    oxmax,
                    uxmax,
                    [
                        "EXCLUSIVE_MAXIMUM_ADDED",
                        "EXCLUSIVE_MAXIMUM_REMOVED",
                        "EXCLUSIVE_MAXIMUM_INCREASED",
                        "EXCLUSIVE_MAXIMUM_DECREASED",
                    ],
                );
                bound(
                    ctx,
                    "exclusiveMinimum",
                    oxmin,
                    uxmin,
                    [
                        "EXCLUSIVE_MINIMUM_ADDED",
                        "EXCLUSIVE_MINIMUM_REMOVED",
                        "EXCLUSIVE_MINIMUM_INCREASED",
                        "EXCLUSIVE_MINIMUM_DECREASED",
                    ],
                );
                multiple_of(ctx, om, um);
                if oi != ui {
                    ctx.add(if oi { "TYPE_EXTENDED" } else { "TYPE_NARROWED" });
                }
            }
            (Kind::Const(a), Kind::Const(b)) if a != b => ctx.add_at("const", "ENUM_ARRAY_CHANGED"),
            (Kind::Enum(a), Kind::Enum(b)) if a != b => {
                let t = if b.is_superset(&a) {
                    "ENUM_ARRAY_EXTENDED"
                } else if a.is_superset(&b) {
                    "ENUM_ARRAY_NARROWED"
                } else {
                    "ENUM_ARRAY_CHANGED"
                };
                ctx.add_at("enum", t);
            }
            (Kind::Combined { criterion: oc, subs: os }, Kind::Combined { criterion: uc, subs: us }) => {
                self.combined(ctx, (oc, &os), (uc, &us))?;
            }
            (Kind::Not(a), Kind::Not(b)) => {
                ctx.enter("not");
                let mut sub = ctx.sub();
                // The negated schemas swap roles: `not` accepts more when its operand accepts less.
                let mut swapped = Diff {
                    orig: self.upd,
                    upd: self.orig,
                    memo: HashMap::new(),
                    in_progress: HashSet::new(),
                    steps: self.steps,
                    depth: self.depth,
                };
                let r = swapped.compare(&mut sub, Some(b), Some(a));
                self.steps = swapped.steps;
                r?;
                ctx.add(if sub.compatible() { "NOT_TYPE_NARROWED" } else { "NOT_TYPE_EXTENDED" });
                ctx.leave();
            }
            (Kind::Object(a), Kind::Object(b)) => self.object(ctx, &a, &b)?,
            (Kind::Array(a), Kind::Array(b)) => self.array(ctx, &a, &b)?,
            _ => {}
        }
        Ok(())
    }

    fn combined(
        &mut self,
        ctx: &mut Ctx,
        (oc, os): (&'static str, &[usize]),
        (uc, us): (&'static str, &[usize]),
    ) -> Res {
        if oc != uc {
            let extended = uc == "anyOf"
                || (os.len() == 1 && us.len() == 1)
                || (os.len() == 1 && uc == "oneOf")
                || (us.len() == 1 && oc == "allOf");
            if !extended {
                ctx.add("COMBINED_TYPE_CHANGED");
                return Ok(());
            }
            ctx.add("COMBINED_TYPE_EXTENDED");
        }
        // Confluent compares the subschemas as sets: a repeated one counts once.
        let (os, us) = (&distinct(self.orig, os), &distinct(self.upd, us));
        if os.len() < us.len() {
            ctx.add(if uc == "allOf" { "PRODUCT_TYPE_EXTENDED" } else { "SUM_TYPE_EXTENDED" });
        } else if os.len() > us.len() {
            ctx.add(if oc == "allOf" { "PRODUCT_TYPE_NARROWED" } else { "SUM_TYPE_NARROWED" });
        }
        // Which original subschema each updated one can take the place of, then a maximum
        // matching between them (Confluent's MaximumCardinalityMatch).
        let mut edges: Vec<Vec<(usize, Vec<Difference>)>> = vec![Vec::new(); os.len()];
        for (i, &o) in os.iter().enumerate() {
            ctx.enter(&format!("{oc}/{i}"));
            for (j, &u) in us.iter().enumerate() {
                let mut sub = ctx.sub();
                self.compare(&mut sub, Some(o), Some(u))?;
                if sub.compatible() {
                    edges[i].push((j, sub.diffs));
                }
            }
            ctx.leave();
        }
        let matched = max_matching(&edges, us.len());
        let mut count = 0;
        for (j, i) in matched.iter().enumerate() {
            if let Some(i) = *i
                && let Some((_, diffs)) = edges[i].iter().find(|(k, _)| *k == j)
            {
                ctx.diffs.extend(diffs.iter().cloned());
                count += 1;
            }
        }
        if count < os.len().min(us.len()) {
            ctx.add("COMBINED_TYPE_SUBSCHEMAS_CHANGED");
        }
        Ok(())
    }

    fn object(&mut self, ctx: &mut Ctx, o: &Object, u: &Object) -> Res {
        let prop = |obj: &Object, k: &str| obj.properties.iter().find(|(n, _)| n == k).map(|(_, i)| *i);
        ctx.enter("required");
        for (k, _) in &o.properties {
            let Some(ui) = prop(u, k) else { continue };
            let (was, is) = (o.required.contains(k), u.required.contains(k));
            if was && !is {
                ctx.add_at(k, "REQUIRED_ATTRIBUTE_REMOVED");
            } else if !was && is {
                let with_default = self.upd[ui].default.is_some();
                ctx.add_at(
                    k,
                    if with_default { "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED" } else { "REQUIRED_ATTRIBUTE_ADDED" },
                );
            }
        }
        ctx.leave();
        ctx.enter("properties");
        let mut keys: Vec<&String> = o.properties.iter().map(|(k, _)| k).collect();
        keys.extend(u.properties.iter().map(|(k, _)| k).filter(|k| prop(o, k).is_none()));
        for k in keys {
            ctx.enter(k);
            match (prop(o, k), prop(u, k)) {
                (Some(oi), None) => self.property_removed(ctx, oi, u, k)?,
                (None, Some(ui)) => self.property_added(ctx, o, ui, u, k)?,
                (oi, ui) => self.compare(ctx, oi, ui)?,
            }
            ctx.leave();
        }
        ctx.leave();
        ctx.enter("dependencies");
        let dep = |obj: &Object, k: &str| obj.dependency_arrays.iter().find(|(n, _)| n == k).map(|(_, s)| s.clone());
        let mut keys: Vec<String> = o.dependency_arrays.iter().map(|(k, _)| k.clone()).collect();
        keys.extend(u.dependency_arrays.iter().map(|(k, _)| k.clone()).filter(|k| dep(o, k).is_none()));
        for k in keys {
            let t = match (dep(o, &k), dep(u, &k)) {
                (_, None) => Some("DEPENDENCY_ARRAY_REMOVED"),
                (None, Some(_)) => Some("DEPENDENCY_ARRAY_ADDED"),
                (Some(a), Some(b)) if a == b => None,
                (Some(a), Some(b)) if b.is_superset(&a) => Some("DEPENDENCY_ARRAY_EXTENDED"),
                (Some(a), Some(b)) if a.is_superset(&b) => Some("DEPENDENCY_ARRAY_NARROWED"),
                _ => Some("DEPENDENCY_ARRAY_CHANGED"),
            };
            if let Some(t) = t {
                ctx.add_at(&k, t);
            }
        }
        let dep_schema = |obj: &Object, k: &str| obj.dependency_schemas.iter().find(|(n, _)| n == k).map(|(_, i)| *i);
        let mut keys: Vec<String> = o.dependency_schemas.iter().map(|(k, _)| k.clone()).collect();
        keys.extend(u.dependency_schemas.iter().map(|(k, _)| k.clone()).filter(|k| dep_schema(o, k).is_none()));
        for k in keys {
            match (dep_schema(o, &k), dep_schema(u, &k)) {
                (_, None) => ctx.add_at(&k, "DEPENDENCY_SCHEMA_REMOVED"),
                (None, Some(_)) => ctx.add_at(&k, "DEPENDENCY_SCHEMA_ADDED"),
                (a, b) => {
                    ctx.enter(&k);
                    self.compare(ctx, a, b)?;
                    ctx.leave();
                }
            }
        }
        ctx.leave();
        ctx.enter("additionalProperties");
        if o.closed != u.closed {
            ctx.add(if u.closed { "ADDITIONAL_PROPERTIES_REMOVED" } else { "ADDITIONAL_PROPERTIES_ADDED" });
        } else if o.additional.is_none() && u.additional.is_some() {
            ctx.add("ADDITIONAL_PROPERTIES_NARROWED");
        } else if o.additional.is_some() && u.additional.is_none() {
            ctx.add("ADDITIONAL_PROPERTIES_EXTENDED");
        } else {
            self.compare(ctx, o.additional, u.additional)?;
        }
        ctx.leave();
        self.unevaluated(ctx, "unevaluatedProperties", o.unevaluated, u.unevaluated, "PROPERTIES")?;
        bound(
            ctx,
            "maxProperties",
            o.max_properties.map(|v| v as f64),
            u.max_properties.map(|v| v as f64),
            ["MAX_PROPERTIES_ADDED", "MAX_PROPERTIES_REMOVED", "MAX_PROPERTIES_INCREASED", "MAX_PROPERTIES_DECREASED"],
        );
        bound(
            ctx,
            "minProperties",
            o.min_properties.map(|v| v as f64),
            u.min_properties.map(|v| v as f64),
            ["MIN_PROPERTIES_ADDED", "MIN_PROPERTIES_REMOVED", "MIN_PROPERTIES_INCREASED", "MIN_PROPERTIES_DECREASED"],
        );
        Ok(())
    }

    /// A property the update no longer lists: only the update's content model matters.
    fn property_removed(&mut self, ctx: &mut Ctx, oi: usize, u: &Object, key: &str) -> Res {
        if self.object_open(u, Side::Upd) {
            ctx.add("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL");
        } else if let Some(partial) = self.object_partial(u, key, Side::Upd) {
            let mut sub = ctx.sub();
            self.compare(&mut sub, Some(oi), Some(partial))?;
            let ok = sub.compatible();
            ctx.diffs.extend(sub.diffs);
            ctx.add(if ok {
                "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            } else {
                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            });
        } else if matches!(self.orig[oi].kind, Kind::False) {
            ctx.add("PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL");
        } else {
            ctx.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL");
        }
        Ok(())
    }

    /// A property the original did not list: only the original's content model matters.
    fn property_added(&mut self, ctx: &mut Ctx, o: &Object, ui: usize, u: &Object, key: &str) -> Res {
        let required = u.required.iter().any(|k| k == key);
        let with_default = self.upd[ui].default.is_some();
        if self.object_open(o, Side::Orig) {
            ctx.add(if matches!(self.upd[ui].kind, Kind::Empty) {
                "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
            } else if required && with_default {
                "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL"
            } else if required {
                "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
            } else {
                "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
            });
            return Ok(());
        }
        if let Some(partial) = self.object_partial(o, key, Side::Orig) {
            let mut sub = ctx.sub();
            self.compare(&mut sub, Some(partial), Some(ui))?;
            let ok = sub.compatible();
            ctx.diffs.extend(sub.diffs);
            ctx.add(if ok {
                "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            } else {
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            });
        }
        ctx.add(if required && with_default {
            "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL"
        } else if required {
            "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"
        } else {
            "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"
        });
        Ok(())
    }

    fn nodes(&self, side: Side) -> &[Node] {
        match side {
            Side::Orig => self.orig,
            Side::Upd => self.upd,
        }
    }

    /// Fully open: `additionalProperties` absent or `true`, no pattern properties, and
    /// `unevaluatedProperties` absent or `true`.
    fn object_open(&self, obj: &Object, side: Side) -> bool {
        !obj.closed
            && obj.additional.is_none()
            && obj.pattern_properties.is_empty()
            && obj.unevaluated.is_none_or(|i| matches!(self.nodes(side)[i].kind, Kind::Empty))
    }

    /// The schema a partially open model gives an unlisted property `key`.
    fn object_partial(&self, obj: &Object, key: &str, side: Side) -> Option<usize> {
        for (pattern, i) in &obj.pattern_properties {
            if pattern_finds(pattern, key) {
                return Some(*i);
            }
        }
        if obj.additional.is_some() {
            return obj.additional;
        }
        self.uneval_schema(!obj.closed, obj.unevaluated, side)
    }

    fn uneval_schema(&self, permits: bool, unevaluated: Option<usize>, side: Side) -> Option<usize> {
        let u = unevaluated.filter(|_| permits)?;
        (!matches!(self.nodes(side)[u].kind, Kind::Empty | Kind::False)).then_some(u)
    }

    fn unevaluated(&mut self, ctx: &mut Ctx, word: &str, o: Option<usize>, u: Option<usize>, what: &str) -> Res {
        if o.is_none() && u.is_none() {
            return Ok(());
        }
        let is_false = |nodes: &[Node], i: Option<usize>| i.is_some_and(|i| matches!(nodes[i].kind, Kind::False));
        let is_empty = |nodes: &[Node], i: Option<usize>| i.is_some_and(|i| matches!(nodes[i].kind, Kind::Empty));
        let (of, uf) = (is_false(self.orig, o), is_false(self.upd, u));
        let (oe, ue) = (is_empty(self.orig, o), is_empty(self.upd, u));
        let change = match (o, u) {
            (None, _) if uf => Some("REMOVED"),
            (None, _) => Some("NARROWED"),
            (_, None) if of => Some("ADDED"),
            (_, None) => Some("EXTENDED"),
            _ if of && !uf => Some("ADDED"),
            _ if !of && uf => Some("REMOVED"),
            _ if oe && !ue => Some("NARROWED"),
            _ if !oe && ue => Some("EXTENDED"),
            _ => None,
        };
        ctx.enter(word);
        match change {
            Some(c) => ctx.add(unevaluated_type(what, c)),
            None => self.compare(ctx, o, u)?,
        }
        ctx.leave();
        Ok(())
    }

    fn array(&mut self, ctx: &mut Ctx, o: &Array, u: &Array) -> Res {
        ctx.enter("items");
        self.compare(ctx, o.all_items, u.all_items)?;
        ctx.leave();
        let common = o.item_list.len().min(u.item_list.len());
        for index in 0..common {
            ctx.enter(&format!("items/{index}"));
            self.compare(ctx, Some(o.item_list[index]), Some(u.item_list[index]))?;
            ctx.leave();
        }
        for (index, &oi) in o.item_list.iter().enumerate().skip(common) {
            ctx.enter(&format!("items/{index}"));
            if self.array_open(u, Side::Upd) {
                ctx.add("ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL");
            } else if let Some(partial) =
                u.additional.or_else(|| self.uneval_schema(!u.closed, u.unevaluated, Side::Upd))
            {
                let mut sub = ctx.sub();
                self.compare(&mut sub, Some(oi), Some(partial))?;
                let ok = sub.compatible();
                ctx.diffs.extend(sub.diffs);
                ctx.add(if ok {
                    "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                } else {
                    "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                });
            } else if matches!(self.orig[oi].kind, Kind::False) {
                ctx.add("ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL");
            } else {
                ctx.add("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL");
            }
            ctx.leave();
        }
        for (index, &ui) in u.item_list.iter().enumerate().skip(common) {
            ctx.enter(&format!("items/{index}"));
            if self.array_open(o, Side::Orig) {
                ctx.add(if matches!(self.upd[ui].kind, Kind::Empty) {
                    "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                } else {
                    "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"
                });
            } else if let Some(partial) =
                o.additional.or_else(|| self.uneval_schema(!o.closed, o.unevaluated, Side::Orig))
            {
                let mut sub = ctx.sub();
                self.compare(&mut sub, Some(partial), Some(ui))?;
                let ok = sub.compatible();
                ctx.diffs.extend(sub.diffs);
                ctx.add(if ok {
                    "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                } else {
                    "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                });
            } else {
                ctx.add("ITEM_ADDED_TO_CLOSED_CONTENT_MODEL");
            }
            ctx.leave();
        }
        ctx.enter("additionalItems");
        if o.closed != u.closed {
            ctx.add(if o.closed { "ADDITIONAL_ITEMS_ADDED" } else { "ADDITIONAL_ITEMS_REMOVED" });
        } else if o.additional.is_none() && u.additional.is_some() {
            ctx.add("ADDITIONAL_ITEMS_NARROWED");
        } else if o.additional.is_some() && u.additional.is_none() {
            ctx.add("ADDITIONAL_ITEMS_EXTENDED");
        } else {
            self.compare(ctx, o.additional, u.additional)?;
        }
        ctx.leave();
        self.unevaluated(ctx, "unevaluatedItems", o.unevaluated, u.unevaluated, "ITEMS")?;
        let f = |v: Option<u64>| v.map(|v| v as f64);
        bound(
            ctx,
            "maxItems",
            f(o.max_items),
            f(u.max_items),
            ["MAX_ITEMS_ADDED", "MAX_ITEMS_REMOVED", "MAX_ITEMS_INCREASED", "MAX_ITEMS_DECREASED"],
        );
        bound(
            ctx,
            "minItems",
            f(o.min_items),
            f(u.min_items),
            ["MIN_ITEMS_ADDED", "MIN_ITEMS_REMOVED", "MIN_ITEMS_INCREASED", "MIN_ITEMS_DECREASED"],
        );
        if o.unique != u.unique {
            ctx.add_at("uniqueItems", if o.unique { "UNIQUE_ITEMS_REMOVED" } else { "UNIQUE_ITEMS_ADDED" });
        }
        bound(
            ctx,
            "maxContains",
            f(o.max_contains),
            f(u.max_contains),
            ["MAX_CONTAINS_ADDED", "MAX_CONTAINS_REMOVED", "MAX_CONTAINS_INCREASED", "MAX_CONTAINS_DECREASED"],
        );
        bound(
            ctx,
            "minContains",
            f(o.min_contains),
            f(u.min_contains),
            ["MIN_CONTAINS_ADDED", "MIN_CONTAINS_REMOVED", "MIN_CONTAINS_INCREASED", "MIN_CONTAINS_DECREASED"],
        );
        Ok(())
    }

    fn array_open(&self, a: &Array, side: Side) -> bool {
        !a.closed
            && a.additional.is_none()
            && a.unevaluated.is_none_or(|i| matches!(self.nodes(side)[i].kind, Kind::Empty))
    }
}

/// `subs` without repeats (subschemas with the same signature; those with references are all
/// kept, as they cannot be told apart cheaply).
fn distinct(nodes: &[Node], subs: &[usize]) -> Vec<usize> {
    let mut seen = HashSet::new();
    subs.iter().copied().filter(|&i| nodes[i].signature.is_none_or(|sig| seen.insert(sig))).collect()
}

#[derive(Clone, Copy)]
enum Side {
    Orig,
    Upd,
}

fn unevaluated_type(what: &str, change: &str) -> &'static str {
    match (what, change) {
        ("PROPERTIES", "ADDED") => "UNEVALUATED_PROPERTIES_ADDED",
        ("PROPERTIES", "REMOVED") => "UNEVALUATED_PROPERTIES_REMOVED",
        ("PROPERTIES", "EXTENDED") => "UNEVALUATED_PROPERTIES_EXTENDED",
        ("PROPERTIES", _) => "UNEVALUATED_PROPERTIES_NARROWED",
        (_, "ADDED") => "UNEVALUATED_ITEMS_ADDED",
        (_, "REMOVED") => "UNEVALUATED_ITEMS_REMOVED",
        (_, "EXTENDED") => "UNEVALUATED_ITEMS_EXTENDED",
        _ => "UNEVALUATED_ITEMS_NARROWED",
    }
}

/// A limit keyword: added, removed, increased or decreased (`types` in that order).
fn bound(ctx: &mut Ctx, word: &str, o: Option<f64>, u: Option<f64>, types: [&'static str; 4]) {
    let t = match (o, u) {
        (None, Some(_)) => types[0],
        (Some(_), None) => types[1],
        (Some(a), Some(b)) if a < b => types[2],
        (Some(a), Some(b)) if a > b => types[3],
        _ => return,
    };
    ctx.add_at(word, t);
}

/// `multipleOf`: a new divisor that is a multiple of the old one accepts fewer numbers.
fn multiple_of(ctx: &mut Ctx, o: Option<f64>, u: Option<f64>) {
    let divides = |big: f64, small: f64| small != 0.0 && ((big / small) - (big / small).round()).abs() < 1e-9;
    let t = match (o, u) {
        (None, None) => return,
        (Some(a), Some(b)) if a == b => return,
        (None, Some(_)) => "MULTIPLE_OF_ADDED",
        (Some(_), None) => "MULTIPLE_OF_REMOVED",
        (Some(a), Some(b)) if divides(b, a) => "MULTIPLE_OF_EXPANDED",
        (Some(a), Some(b)) if divides(a, b) => "MULTIPLE_OF_REDUCED",
        _ => "MULTIPLE_OF_CHANGED",
    };
    ctx.add_at("multipleOf", t);
}

/// Does `pattern` find a match anywhere in `key` (Java's `Matcher.find`)? A pattern the `regex`
/// crate cannot compile (look-around, back-references) or that is too large is taken to match,
/// so the property is then judged against that pattern's schema.
fn pattern_finds(pattern: &str, key: &str) -> bool {
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().map_or(true, |re| re.is_match(key))
}

/// A maximum bipartite matching (augmenting paths): for each right-hand index, the left-hand
/// one it is matched with. `edges[i]` lists the right-hand indices left `i` may take.
fn max_matching(edges: &[Vec<(usize, Vec<Difference>)>], right: usize) -> Vec<Option<usize>> {
    fn augment(
        i: usize,
        edges: &[Vec<(usize, Vec<Difference>)>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for (j, _) in &edges[i] {
            if seen[*j] {
                continue;
            }
            seen[*j] = true;
            if owner[*j].is_none_or(|k| augment(k, edges, seen, owner)) {
                owner[*j] = Some(i);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; right];
    for i in 0..edges.len() {
        let mut seen = vec![false; right];
        augment(i, edges, &mut seen, &mut owner);
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> JsonSchema {
        parse(text, &[]).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn drafts_are_picked_by_schema_keyword() {
        // `exclusiveMinimum` is a boolean in draft 4 and a number from draft 6 on.
        let d4 = r#"{"$schema":"http://json-schema.org/draft-04/schema#","type":"number","minimum":1,"exclusiveMinimum":true}"#;
        assert!(parse(d4, &[]).is_ok());
        let d7_bool =
            r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"number","exclusiveMinimum":true}"#;
        assert!(parse(d7_bool, &[]).is_err());
        // No $schema: draft 7, where the boolean form is invalid too.
        assert!(parse(r#"{"type":"number","exclusiveMinimum":true}"#, &[]).is_err());
        let d6 = r#"{"$schema":"http://json-schema.org/draft-06/schema#","type":"number","exclusiveMinimum":1}"#;
        assert!(parse(d6, &[]).is_ok());
        let d2019 = r#"{"$schema":"https://json-schema.org/draft/2019-09/schema","type":"object","dependentRequired":{"a":["b"]}}"#;
        assert!(parse(d2019, &[]).is_ok());
        let d2020 = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}]}"#;
        assert!(parse(d2020, &[]).is_ok());
        let unknown = r#"{"$schema":"https://example.com/my-meta","type":"string"}"#;
        assert!(parse(unknown, &[]).unwrap_err().contains("unsupported $schema"));
    }

    #[test]
    fn registered_references_resolve_and_others_are_refused() {
        let address = r#"{"type":"object","properties":{"street":{"type":"string"}}}"#;
        let refs = [Referenced { name: "address.json", schema: address }];
        let person = r#"{"type":"object","properties":{"home":{"$ref":"address.json"}}}"#;
        assert!(parse(person, &refs).is_ok());
        let absolute = [Referenced { name: "https://example.com/address.schema.json", schema: address }];
        let by_uri = r#"{"type":"object","properties":{"home":{"$ref":"https://example.com/address.schema.json"}}}"#;
        assert!(parse(by_uri, &absolute).is_ok());
        // Not registered: an error, and nothing is fetched (no HTTP client is compiled in).
        let err = parse(by_uri, &[]).unwrap_err();
        assert!(err.starts_with("Invalid schema"), "{err}");
        let remote = r#"{"$ref":"https://json-schema.org/draft-07/schema-unknown"}"#;
        assert!(parse(remote, &refs).is_err());
        // A bad local pointer is refused too.
        assert!(parse(r##"{"$ref":"#/definitions/missing"}"##, &[]).is_err());
    }

    #[test]
    fn changes_inside_a_reference_are_seen() {
        let v1 = [Referenced { name: "a.json", schema: r#"{"type":"string","maxLength":10}"# }];
        let v2 = [Referenced { name: "a.json", schema: r#"{"type":"string","maxLength":5}"# }];
        let text = r#"{"type":"object","properties":{"a":{"$ref":"a.json"}}}"#;
        let (old, new) = (parse(text, &v1).unwrap(), parse(text, &v2).unwrap());
        let errs = check(&new, &old);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("MAX_LENGTH_DECREASED") && errs[0].contains("#/properties/a/maxLength"), "{errs:?}");
        assert!(check(&old, &new).is_empty());
    }

    #[test]
    fn invalid_schemas_are_refused() {
        for text in [
            "",
            "{",
            "[1,2]x",
            r#"{"type":"strin"}"#,
            r#"{"type":"string","minLength":-1}"#,
            r#"{"properties":[]}"#,
            r#"{"required":"a"}"#,
            "42",
        ] {
            assert!(parse(text, &[]).is_err(), "{text}");
        }
        assert!(parse("true", &[]).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_crashing() {
        let deep = format!("{}{}", r#"{"items":"#.repeat(10_000), "}".repeat(10_000));
        assert!(parse(&deep, &[]).unwrap_err().contains("nested deeper"));
        let arrays = "[".repeat(100_000);
        assert!(parse(&arrays, &[]).is_err());
        let ok = format!("{}{{}}{}", r#"{"items":"#.repeat(30), "}".repeat(30));
        assert!(parse(&ok, &[]).is_ok());
    }

    #[test]
    fn recursive_refs_terminate() {
        let text = r##"{"definitions":{"node":{"type":"object","properties":{"next":{"$ref":"#/definitions/node"},"v":{"type":"string"}}}},"$ref":"#/definitions/node"}"##;
        let changed = text.replace(r#"{"type":"string"}"#, r#"{"type":"integer"}"#);
        let (a, b) = (p(text), p(&changed));
        assert!(check(&a, &a).is_empty());
        assert!(!check(&b, &a).is_empty());
        let loop_ref = r##"{"definitions":{"a":{"$ref":"#/definitions/b"},"b":{"$ref":"#/definitions/a"}},"$ref":"#/definitions/a"}"##;
        if let Ok(s) = parse(loop_ref, &[]) {
            let _ = check(&s, &s);
        }
    }

    #[test]
    fn canonical_and_normalized() {
        let a = p(r#"{ "type" : "object", "properties" : { "b" : {"type":"string"}, "a" : {"type":"integer"} } }"#);
        assert_eq!(a.canonical(), r#"{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}"#);
        let b = p(r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#);
        assert_ne!(a.canonical(), b.canonical());
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.normalized(), r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#);
        // Whitespace inside strings is kept.
        let c = p(r#"{"description":"a  b", "type":"string"}"#);
        assert_eq!(c.canonical(), r#"{"description":"a  b","type":"string"}"#);
    }

    #[test]
    fn messages_name_the_direction() {
        let old = p(r#"{"type":"string"}"#);
        let new = p(r#"{"type":"integer"}"#);
        let back = check_worded(&new, &old, true);
        assert_eq!(
            back,
            [
                "{errorType:'TYPE_CHANGED', description:'A type at path '#/' is different between the new schema and the old schema'}"
            ]
        );
        let fwd = check_worded(&old, &new, false);
        assert!(fwd[0].contains("between the old schema and the new schema"), "{fwd:?}");
    }

    #[test]
    fn large_unions_stay_bounded() {
        // 300 branches that each refer back to the root: the cross product of pairs is large,
        // and the step budget ends the comparison with a message instead of running on.
        let branch = |i: usize| {
            format!(
                r##"{{"type":"object","properties":{{"f{i}":{{"type":"string"}},"g":{{"oneOf":[{{"type":"string"}},{{"$ref":"#"}}]}}}}}}"##
            )
        };
        let text = format!(r#"{{"oneOf":[{}]}}"#, (0..300).map(branch).collect::<Vec<_>>().join(","));
        let s = p(&text);
        let r = check(&s, &s);
        assert!(r.is_empty() || r == ["The schemas are too complex to check for compatibility"], "{r:?}");
        // Without references, identical branches are recognized and skipped.
        let plain = |i: usize| format!(r#"{{"type":"object","properties":{{"f{i}":{{"type":"string"}}}}}}"#);
        let text = format!(r#"{{"oneOf":[{}]}}"#, (0..300).map(plain).collect::<Vec<_>>().join(","));
        let s = p(&text);
        assert!(check(&s, &s).is_empty());
    }

    #[test]
    fn relative_refs_resolve_against_the_schema_id() {
        let address = r#"{"type":"object","properties":{"street":{"type":"string"}}}"#;
        let refs = [Referenced { name: "address.json", schema: address }];
        let person = r#"{"$id":"https://example.com/person.json","type":"object","properties":{"home":{"$ref":"address.json"}}}"#;
        assert!(parse(person, &refs).is_ok());
        // A reference that itself refers to an earlier one.
        let street = r#"{"type":"string","maxLength":40}"#;
        let address = r#"{"type":"object","properties":{"street":{"$ref":"street.json"}}}"#;
        let refs =
            [Referenced { name: "street.json", schema: street }, Referenced { name: "address.json", schema: address }];
        let person = r#"{"type":"object","properties":{"home":{"$ref":"address.json"}}}"#;
        assert!(parse(person, &refs).is_ok());
        let err = parse(person, &refs[1..]).unwrap_err();
        assert!(err.starts_with("reference 'address.json'"), "{err}");
    }

    #[test]
    fn repeated_subschemas_count_once() {
        let old = p(r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#);
        let new = p(r#"{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"string"}]}"#);
        let diffs = differences(&new, &old).unwrap();
        assert!(diffs.is_empty(), "{diffs:?}");
    }

    #[test]
    fn long_reference_chains_and_negation_cycles_stay_bounded() {
        // d0 -> d1 -> ... -> d3000 through `$ref`s: deeper than any single document may nest.
        let n = 3000;
        let defs: Vec<String> = (0..n)
            .map(|i| {
                format!(r##""d{i}":{{"type":"object","properties":{{"x":{{"$ref":"#/definitions/d{}"}}}}}}"##, i + 1)
            })
            .collect();
        let text = format!(
            r##"{{"definitions":{{{},"d{n}":{{"type":"string"}}}},"$ref":"#/definitions/d0"}}"##,
            defs.join(",")
        );
        let changed =
            text.replace(&format!(r#""d{n}":{{"type":"string"}}"#), &format!(r#""d{n}":{{"type":"integer"}}"#));
        let (old, new) = (p(&text), p(&changed));
        let errs = check(&new, &old);
        assert_eq!(errs, ["The schemas are nested too deeply (through references) to check for compatibility"]);
        // `not` swaps the roles of the schemas; a cycle through it must still end.
        let negated = p(r##"{"not":{"not":{"$ref":"#"}}}"##);
        let _ = check(&negated, &negated);
    }

    #[test]
    fn anchors_and_embedded_ids_are_followed_by_the_checker() {
        let anchored = |t: &str| {
            format!(
                r##"{{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{{"a":{{"$ref":"#name"}}}},"$defs":{{"n":{{"$anchor":"name","type":"{t}"}}}}}}"##
            )
        };
        let (old, new) = (p(&anchored("string")), p(&anchored("integer")));
        assert!(check(&new, &old)[0].contains("'#/properties/a'"), "{:?}", check(&new, &old));
        let embedded = |t: &str| {
            format!(
                r#"{{"$id":"https://example.com/root.json","type":"object","properties":{{"a":{{"$ref":"item.json"}}}},"definitions":{{"i":{{"$id":"item.json","type":"{t}"}}}}}}"#
            )
        };
        let (old, new) = (p(&embedded("string")), p(&embedded("integer")));
        assert_eq!(check(&new, &old).len(), 1);
        assert!(check(&old, &old).is_empty());
    }

    #[test]
    fn matching_finds_a_perfect_assignment() {
        let e = |js: &[usize]| js.iter().map(|&j| (j, Vec::new())).collect::<Vec<_>>();
        let edges = vec![e(&[0, 1]), e(&[0])];
        assert_eq!(max_matching(&edges, 2), vec![Some(1), Some(0)]);
    }
}
