//! Avro schemas: parsing with named-type references, Confluent's canonical text, and
//! compatibility by Avro's schema-resolution rules.
//!
//! Parsing runs twice over the text. This module builds its own model from the JSON, kept in
//! document order, because the texts Confluent stores and compares need things `apache-avro`'s
//! model drops: custom properties on every kind of schema, the order keys were written in,
//! `order` on fields, docs on fields. Building it checks names, namespaces, aliases and type
//! references, and then field defaults against their types. `apache-avro` then judges the rest
//! (symbols, unions, duplicate fields, sizes) on a copy without field defaults.
//!
//! The compatibility checker is written against that model, after the rules of Avro's Java
//! `SchemaCompatibility` as Confluent's registry applies them: the same error types, the same
//! paths (`/fields/1/type/0`), and Confluent's sentences. Logical types play no part in it, as in
//! Java Avro: a decimal whose precision or scale changed, or a `timestamp-millis` that became a
//! plain `long`, is compatible because the bytes on the wire are read the same way.
//!
//! `apache-avro` 0.20 has a checker of its own (`SchemaCompatibility::can_read`), but it stops at
//! the first problem and has neither Confluent's error types nor paths, so it is not used.
//!
//! Nothing here does IO. Hostile input gives `Err`, never a panic: the JSON nesting is bounded
//! ([`MAX_DEPTH`]) before any recursive walk (serde_json refuses 128 levels on its own, so even
//! deeper text fails without touching the stack's end).
//!
//! `apache-avro` refuses `error` records, which Java accepts; they are shown to it as records.
//! A known difference from Confluent remains, inherited from `apache-avro`'s validation: it
//! refuses a name that Java resolves through the null namespace from inside a namespaced record
//! (a type declared with `"namespace":""`, then used by its bare name).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::{Incompatibility, Referenced};

mod typed;

pub use typed::{AvroColumns, VALUE_COLUMN};

/// The deepest JSON nesting a schema may have. Real schemas stay far below it; the bound keeps
/// every recursive walk here and in `apache-avro` well inside the stack.
pub const MAX_DEPTH: usize = 64;

/// A parsed Avro schema with its references resolved.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    root: Node,
    /// Every named type the schema can reach, from its references and from itself.
    named: Vec<Named>,
}

/// Parses `text`, an Avro schema in JSON, resolving named types from `references` (in dependency
/// order). `Err` says why the schema is invalid, in a sentence fit for an API error.
pub fn parse(text: &str, references: &[Referenced<'_>]) -> Result<AvroSchema, String> {
    let text = bare_primitive(text);
    // A schema reached by two paths of references is listed twice; the first one counts.
    let mut seen = BTreeSet::new();
    let references: Vec<&Referenced<'_>> = references.iter().filter(|r| seen.insert(r.name)).collect();
    let mut refs = Vec::with_capacity(references.len());
    for r in &references {
        refs.push(read_json(r.schema).map_err(|e| format!("reference '{}': {e}", r.name))?);
    }
    let main = read_json(&text)?;
    // Our own model first: it checks the names `apache-avro` would otherwise unwrap.
    let mut b = Builder::default();
    for (r, json) in references.iter().zip(&refs) {
        b.origin = Some(Origin::Reference);
        let node = b.node(json, None).map_err(|e| format!("reference '{}': {e}", r.name))?;
        let Node::Named(i) = node else {
            return Err(format!("reference '{}': not a record, enum or fixed type", r.name));
        };
        b.named[i].origin = Origin::ReferenceTop;
    }
    b.origin = Some(Origin::Main);
    let root = b.node(&main, None)?;
    let ref_texts: Vec<String> = refs.iter().map(for_validation).collect();
    validate(&for_validation(&main), &ref_texts)?;
    let schema = AvroSchema { root, named: b.named };
    check_defaults(&schema)?;
    Ok(schema)
}

/// Every field default must be a value of the field's type, as Java's parser requires. For a
/// union any branch may match (Avro 1.12 and `apache-avro`; Avro 1.11 wanted the first branch).
fn check_defaults(schema: &AvroSchema) -> Result<(), String> {
    for n in &schema.named {
        let Kind::Record { fields, .. } = &n.kind else { continue };
        for f in fields {
            if let Some(d) = &f.default
                && !schema.fits(&f.ty, d)
            {
                return Err(format!(
                    "Invalid default for field {} in record {}: {} is not a value of its type",
                    f.name,
                    n.full,
                    short_json(d)
                ));
            }
        }
    }
    Ok(())
}

/// Lets `apache-avro` judge the schema (without its field defaults). Its parser has `unwrap`s
/// on some paths: the names it would unwrap are checked before this point, defaults are withheld,
/// and a panic that gets through anyway is caught and becomes an error rather than taking the
/// registry down (with `panic = "abort"` this net is gone, the checks before it remain).
fn validate(text: &str, references: &[String]) -> Result<(), String> {
    let run = || apache_avro::Schema::parse_str_with_list(text, references).map(|_| ());
    match std::panic::catch_unwind(run) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the Avro parser failed on this schema".into()),
    }
}

impl AvroSchema {
    /// Confluent's canonical text: what Avro's Java `Schema.toString()` gives for the parsed
    /// schema, with the references' types known, so they appear by name and are not inlined.
    /// Compact JSON; keys in Java's order (`type`, `name`, `namespace`, `doc`, `fields` or
    /// `symbols` or `size`, `default` of an enum, custom properties as written, `aliases`);
    /// fields in the order written, each as `name`, `type`, `doc`, `default`, `order` (unless
    /// ascending), `aliases`, custom properties; a namespace only where it differs from the
    /// enclosing one; a primitive without properties as its bare name (`"string"`).
    ///
    /// Not reproduced: Jackson's way of printing floating-point numbers in defaults and
    /// properties (`1.0E10` there, `10000000000.0` here).
    pub fn canonical(&self) -> String {
        let mut p = Printer::new(self);
        p.canonical(&self.root, None);
        p.out
    }

    /// The text for `normalize=true`, as Confluent's `AvroSchemaUtils.toNormalizedString` builds
    /// it (adapted from Avro's parsing canonical form, but keeping what matters to readers):
    /// every name fully qualified and no `namespace` key; a named type as `name` then `type`
    /// then `symbols` / `size` (with its logical type) / `fields`; each field as `name`, `type`,
    /// `order` (always, as Confluent's code prints Java's enum: `ASCENDING`), `doc`, `aliases`
    /// (sorted), `default`, then its custom properties sorted by key; then the type's `doc` (if
    /// not empty), `aliases` (sorted, full names), enum `default`, and custom properties sorted
    /// by key. A primitive with a valid logical type prints that first (`decimal` with `precision`,
    /// and `scale` unless 0); the logical-type keys are not repeated among the properties.
    /// Types from references appear by full name.
    pub fn normalized(&self) -> String {
        let mut p = Printer::new(self);
        p.normalized(&self.root);
        p.out
    }

    fn named(&self, i: usize) -> &Named {
        &self.named[i]
    }

    /// Checks that `payload` is exactly one datum of this schema in Avro's binary encoding:
    /// every value well formed (ints and longs as varints in range, booleans 0 or 1, strings
    /// UTF-8, enum and union indexes in range, lengths within the payload), and nothing left
    /// over. Reads without allocating; a datum nested deeper than [`MAX_DATUM_DEPTH`] (a
    /// recursive type) is refused.
    ///
    /// # Errors
    /// Why the payload is not such a datum, with the byte offset where it went wrong.
    pub fn check_datum(&self, payload: &[u8]) -> Result<(), String> {
        let max_steps = STEPS_PER_BYTE.saturating_mul(payload.len() as u64).saturating_add(MIN_STEPS);
        let mut r = Datum { bytes: payload, at: 0, schema: self, steps: 0, max_steps };
        r.node(&self.root, 0)?;
        if r.at == payload.len() {
            Ok(())
        } else {
            Err(format!("{} bytes left over after the Avro datum, at byte {}", payload.len() - r.at, r.at))
        }
    }

    /// The name subject-name strategies use for the schema: the full name of its top-level
    /// record, enum or fixed; the type's name for any other schema (`string`, `array`, ...).
    pub fn record_name(&self) -> String {
        match &self.root {
            Node::Named(i) => self.named(*i).full.clone(),
            Node::Prim(p, _) => p.name().to_owned(),
            Node::Array(..) => "array".to_owned(),
            Node::Map(..) => "map".to_owned(),
            Node::Union(_) => "union".to_owned(),
        }
    }

    /// Is `v` a JSON value of type `node` (Avro's JSON encoding of defaults)? The recursion
    /// follows `v`, whose depth is bounded.
    fn fits(&self, node: &Node, v: &Json) -> bool {
        match (node, v) {
            (Node::Prim(p, _), v) => prim_fits(*p, v),
            (Node::Array(items, _), Json::Arr(vs)) => vs.iter().all(|v| self.fits(items, v)),
            (Node::Map(values, _), Json::Obj(vs)) => vs.iter().all(|(_, v)| self.fits(values, v)),
            (Node::Union(branches), v) => branches.iter().any(|b| self.fits(b, v)),
            (Node::Named(i), v) => match (&self.named(*i).kind, v) {
                (Kind::Enum { symbols, .. }, Json::Str(s)) => symbols.contains(s),
                // Bytes and fixed values are strings of code points 0 to 255, one per byte.
                (Kind::Fixed { size }, Json::Str(s)) => {
                    s.chars().all(|c| u32::from(c) <= 0xff) && s.chars().count() as u64 == *size
                }
                (Kind::Record { fields, .. }, Json::Obj(_)) => fields.iter().all(|f| match v.get(&f.name) {
                    Some(fv) => self.fits(&f.ty, fv),
                    None => f.default.is_some(),
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

/// One incompatibility with Confluent's `additionalInfo`, the detail its messages carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Error type, path and description.
    pub incompatibility: Incompatibility,
    /// What Avro's checker adds: the missing field's name, the missing symbols (`[A, B]`), the
    /// expected name or size, or which types did not match.
    pub additional_info: String,
}

impl Difference {
    /// The text Confluent puts in its list of messages:
    /// `{errorType:'…', description:'…', additionalInfo:'…'}`.
    pub fn message(&self) -> String {
        let i = &self.incompatibility;
        format!(
            "{{errorType:'{}', description:'{}', additionalInfo:'{}'}}",
            i.error_type, i.description, self.additional_info
        )
    }
}

/// Every reason `reader` cannot read data written with `writer`, by Avro's schema-resolution
/// rules as Confluent's `AvroCompatibilityChecker` applies them. Empty means compatible.
/// Descriptions call the reader "the new schema" and the writer "the old schema", Confluent's
/// wording for a BACKWARD check; see [`check_detailed`] for the other way round. At most
/// [`MAX_DIFFERENCES`] are reported.
///
/// The rules: primitives promote int → long → float → double and string ↔ bytes; records,
/// enums and fixed types match by unqualified name or by a reader alias naming the writer's full
/// name (`/name`); reader fields find writer fields by name, then by the reader field's aliases,
/// and one with no writer field needs a default (`/fields/i`); a writer enum's symbols must all
/// be the reader's unless the reader has a default symbol (`/symbols`); fixed sizes must agree
/// (`/size`); arrays and maps recurse (`/items`, `/values`); every branch of a writer union
/// must be readable (`/i` for branch i), and a reader union reads a non-union writer if one of
/// its branches does. A named pair met again while being checked (a recursive type) counts as
/// compatible.
///
/// Not reproduced: Java's special case for a reader field of an enum type with a default symbol
/// but no field default, missing from the writer (Java then checks the enum against the whole
/// writer record, which fails as a type mismatch; here it fails as a missing default).
pub fn check(reader: &AvroSchema, writer: &AvroSchema) -> Vec<Incompatibility> {
    check_detailed(reader, writer, true).into_iter().map(|d| d.incompatibility).collect()
}

/// [`check`] with Confluent's `additionalInfo`. `reader_is_new` picks the wording: `true` for a
/// BACKWARD check (the new schema reads old data), `false` for FORWARD (the old schema is the
/// reader: "The field 'f' … in the old schema has no default value and is missing in the new
/// schema").
pub fn check_detailed(reader: &AvroSchema, writer: &AvroSchema, reader_is_new: bool) -> Vec<Difference> {
    let words = if reader_is_new { ("new", "old") } else { ("old", "new") };
    let mut c = Checker { r: reader, w: writer, memo: HashMap::new(), loc: Vec::new(), words };
    c.compat(&reader.root, &writer.root)
}

// ---------------------------------------------------------------------------------------------
// JSON, kept in document order.

/// JSON as written: objects keep their keys in order (a repeated key keeps its first place and
/// its last value, as Jackson does).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Num(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Num(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v).map(Json::Num).ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries: Vec<(String, Json)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            match entries.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => entries.push((k, v)),
            }
        }
        Ok(Json::Obj(entries))
    }
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str_at(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }
    /// The copy `apache-avro` validates: `error` records (Avro's protocol errors, which Java's
    /// parser takes and `apache-avro` refuses) become records, and field defaults are left out
    /// ([`check_defaults`] judges them, as `apache-avro` panics on some). Called on trees already
    /// bounded in depth.
    fn for_validation(&self) -> Json {
        match self {
            Json::Arr(items) => Json::Arr(items.iter().map(Json::for_validation).collect()),
            Json::Obj(entries) => {
                let record = matches!(self.get("fields"), Some(Json::Arr(_)));
                let error = record && self.str_at("type") == Some("error");
                let entries = entries.iter().map(|(k, v)| match k.as_str() {
                    "type" if error => (k.clone(), Json::Str("record".into())),
                    "fields" if record => (k.clone(), v.fields_without_defaults()),
                    _ => (k.clone(), v.for_validation()),
                });
                Json::Obj(entries.collect())
            }
            other => other.clone(),
        }
    }

    fn fields_without_defaults(&self) -> Json {
        let Json::Arr(fields) = self else { return self.clone() };
        let strip = |f: &Json| match f {
            Json::Obj(entries) => Json::Obj(
                entries.iter().filter(|(k, _)| k != "default").map(|(k, v)| (k.clone(), v.for_validation())).collect(),
            ),
            other => other.for_validation(),
        };
        Json::Arr(fields.iter().map(strip).collect())
    }

    /// Is the nesting at most `limit` deep? Walked with an explicit stack, not recursion.
    fn depth_within(&self, limit: usize) -> bool {
        let mut stack = vec![(self, 1usize)];
        while let Some((j, d)) = stack.pop() {
            if d > limit {
                return false;
            }
            match j {
                Json::Arr(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
                Json::Obj(entries) => stack.extend(entries.iter().map(|(_, v)| (v, d + 1))),
                _ => {}
            }
        }
        true
    }
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Str(s) => write_str(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json escapes as Jackson does: quotes, backslashes and control characters.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
}

/// Reads JSON text into [`Json`], refusing nesting deeper than [`MAX_DEPTH`]. serde_json stops
/// at 128 levels on its own, so deeper input fails here without exhausting the stack.
fn read_json(text: &str) -> Result<Json, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if !json.depth_within(MAX_DEPTH) {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(json)
}

fn for_validation(json: &Json) -> String {
    let mut out = String::new();
    json.for_validation().write(&mut out);
    out
}

/// A primitive name written without quotes (`string`) stands for the JSON string `"string"`.
fn bare_primitive(text: &str) -> String {
    let t = text.trim();
    if Prim::from_name(t).is_some() { format!("\"{t}\"") } else { text.to_owned() }
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prim {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

impl Prim {
    fn from_name(s: &str) -> Option<Prim> {
        Some(match s {
            "null" => Prim::Null,
            "boolean" => Prim::Boolean,
            "int" => Prim::Int,
            "long" => Prim::Long,
            "float" => Prim::Float,
            "double" => Prim::Double,
            "bytes" => Prim::Bytes,
            "string" => Prim::String,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Prim::Null => "null",
            Prim::Boolean => "boolean",
            Prim::Int => "int",
            Prim::Long => "long",
            Prim::Float => "float",
            Prim::Double => "double",
            Prim::Bytes => "bytes",
            Prim::String => "string",
        }
    }
}

type Props = Vec<(String, Json)>;

/// The deepest nesting of records, arrays, maps and unions a datum may have (a recursive list
/// uses two levels per element).
pub const MAX_DATUM_DEPTH: usize = 1024;

/// A reader walking one Avro datum; see [`AvroSchema::check_datum`].
struct Datum<'a> {
    bytes: &'a [u8],
    at: usize,
    schema: &'a AvroSchema,
    /// Values walked so far, and how many the payload's length allows.
    steps: u64,
    max_steps: u64,
}

/// Values a datum may hold: this many per payload byte, plus [`MIN_STEPS`]. Values of a null or
/// empty type take no bytes, so the walk is bounded by the payload's length, not only by the
/// bytes the values use.
const STEPS_PER_BYTE: u64 = 16;
const MIN_STEPS: u64 = 1 << 16;

impl Datum<'_> {
    fn fail(&self, what: &str) -> String {
        format!("not a datum of the Avro schema: {what} at byte {}", self.at)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.fail(&format!("{what} runs past the end")))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// A zigzag varint long.
    fn long(&mut self) -> Result<i64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.take(1, "a number")?[0];
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                #[allow(clippy::cast_possible_wrap)]
                let half = (value >> 1) as i64;
                return Ok(if value & 1 == 0 { half } else { !half });
            }
        }
        Err(self.fail("a number longer than 10 bytes"))
    }

    /// A length or count: a long that must not be negative.
    fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| self.fail(&format!("a negative {what} ({n})")))
    }

    fn index(&mut self, count: usize, what: &str) -> Result<usize, String> {
        let i = self.long()?;
        usize::try_from(i).ok().filter(|&i| i < count).ok_or_else(|| self.fail(&format!("{what} index {i} of {count}")))
    }

    fn node(&mut self, node: &Node, depth: usize) -> Result<(), String> {
        if depth > MAX_DATUM_DEPTH {
            return Err(self.fail(&format!("a datum nested deeper than {MAX_DATUM_DEPTH} levels")));
        }
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(self.fail("more values than the payload can hold"));
        }
        match node {
            Node::Prim(p, _) => self.prim(*p),
            Node::Array(items, _) => self.blocks(depth, |r, d| r.node(items, d)),
            Node::Map(values, _) => self.blocks(depth, |r, d| {
                r.prim(Prim::String)?;
                r.node(values, d)
            }),
            Node::Union(branches) => {
                let i = self.index(branches.len(), "a union branch")?;
                self.node(&branches[i], depth + 1)
            }
            Node::Named(i) => match &self.schema.named(*i).kind {
                Kind::Record { fields, .. } => fields.iter().try_for_each(|f| self.node(&f.ty, depth + 1)),
                Kind::Enum { symbols, .. } => self.index(symbols.len(), "an enum symbol").map(|_| ()),
                Kind::Fixed { size } => {
                    let n = usize::try_from(*size).map_err(|_| self.fail("a fixed size"))?;
                    self.take(n, "a fixed value").map(|_| ())
                }
            },
        }
    }

    /// Array or map blocks: a count (negative: followed by the block's size in bytes), the
    /// items, until a count of 0.
    fn blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.len("block size")?;
            }
            // Checked before walking: the walk also counts each item as it goes.
            if self.steps.saturating_add(count.unsigned_abs()) > self.max_steps {
                return Err(self.fail("more values than the payload can hold"));
            }
            for _ in 0..count.unsigned_abs() {
                item(self, depth + 1)?;
            }
        }
    }

    fn prim(&mut self, p: Prim) -> Result<(), String> {
        match p {
            Prim::Null => Ok(()),
            Prim::Boolean => match self.take(1, "a boolean")?[0] {
                0 | 1 => Ok(()),
                b => Err(self.fail(&format!("a boolean byte {b}"))),
            },
            Prim::Int => {
                let v = self.long()?;
                i32::try_from(v).map(|_| ()).map_err(|_| self.fail(&format!("an int out of range ({v})")))
            }
            Prim::Long => self.long().map(|_| ()),
            Prim::Float => self.take(4, "a float").map(|_| ()),
            Prim::Double => self.take(8, "a double").map(|_| ()),
            Prim::Bytes => {
                let n = self.len("bytes length")?;
                self.take(n, "bytes").map(|_| ())
            }
            Prim::String => {
                let n = self.len("string length")?;
                let at = self.at;
                let text = self.take(n, "a string")?;
                match std::str::from_utf8(text) {
                    Ok(_) => Ok(()),
                    Err(_) => {
                        self.at = at;
                        Err(self.fail("a string that is not UTF-8"))
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Prim(Prim, Props),
    Array(Box<Node>, Props),
    Map(Box<Node>, Props),
    Union(Vec<Node>),
    /// A record, enum or fixed: an index into [`AvroSchema::named`].
    Named(usize),
}

/// Where a named type was defined, which decides whether the texts inline it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The top-level type of a reference: always printed by name.
    ReferenceTop,
    /// Nested inside a reference: printed in full where the main schema first uses it, as Java
    /// only registers the references' top-level names.
    Reference,
    Main,
}

#[derive(Debug, Clone)]
struct Named {
    full: String,
    space: Option<String>,
    short: String,
    doc: Option<String>,
    /// Full names.
    aliases: Vec<String>,
    props: Props,
    kind: Kind,
    origin: Origin,
}

#[derive(Debug, Clone)]
enum Kind {
    Record { error: bool, fields: Vec<Field> },
    Enum { symbols: Vec<String>, default: Option<String> },
    Fixed { size: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Ascending,
    Descending,
    Ignore,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: Node,
    doc: Option<String>,
    default: Option<Json>,
    order: Order,
    aliases: Vec<String>,
    props: Props,
}

/// Keys of a schema object that are not custom properties (Java's `SCHEMA_RESERVED`).
const SCHEMA_KEYS: [&str; 10] =
    ["doc", "fields", "items", "name", "namespace", "size", "symbols", "values", "type", "aliases"];
/// Keys of a field object that are not custom properties.
const FIELD_KEYS: [&str; 6] = ["default", "doc", "name", "order", "type", "aliases"];

fn props_of(obj: &Json, reserved: &[&str], extra: Option<&str>) -> Props {
    match obj {
        Json::Obj(entries) => entries
            .iter()
            .filter(|(k, _)| !reserved.contains(&k.as_str()) && Some(k.as_str()) != extra)
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// The strings of a JSON array, each once, in order (Java keeps aliases in a set).
fn strings(j: Option<&Json>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(Json::Arr(items)) = j {
        for i in items {
            if let Json::Str(s) = i
                && !out.contains(s)
            {
                out.push(s.clone());
            }
        }
    }
    out
}

/// An Avro name: a letter or `_`, then letters, digits or `_` (ASCII, as `apache-avro` has it;
/// Java also takes other Unicode letters).
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names joined by dots.
fn valid_full_name(s: &str) -> bool {
    s.split('.').all(valid_name)
}

fn qualify(name: &str, space: Option<&str>) -> String {
    match space {
        Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

#[derive(Default)]
struct Builder {
    named: Vec<Named>,
    index: HashMap<String, usize>,
    origin: Option<Origin>,
}

impl Builder {
    fn node(&mut self, j: &Json, space: Option<&str>) -> Result<Node, String> {
        match j {
            Json::Str(name) => self.by_name(name, space),
            Json::Arr(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    out.push(self.node(b, space)?);
                }
                Ok(Node::Union(out))
            }
            Json::Obj(_) => self.object(j, space),
            _ => Err(format!("not a schema: {}", short_json(j))),
        }
    }

    fn object(&mut self, j: &Json, space: Option<&str>) -> Result<Node, String> {
        let Some(ty) = j.str_at("type") else {
            return Err(format!("\"type\" must name a type: {}", short_json(j)));
        };
        if let Some(p) = Prim::from_name(ty) {
            return Ok(Node::Prim(p, props_of(j, &SCHEMA_KEYS, None)));
        }
        match ty {
            "array" => {
                let items = j.get("items").ok_or("array without items")?;
                let items = self.node(items, space)?;
                Ok(Node::Array(Box::new(items), props_of(j, &SCHEMA_KEYS, None)))
            }
            "map" => {
                let values = j.get("values").ok_or("map without values")?;
                let values = self.node(values, space)?;
                Ok(Node::Map(Box::new(values), props_of(j, &SCHEMA_KEYS, None)))
            }
            "record" | "error" | "enum" | "fixed" => self.define(j, ty, space),
            other => self.by_name(other, space),
        }
    }

    fn by_name(&self, name: &str, space: Option<&str>) -> Result<Node, String> {
        if let Some(p) = Prim::from_name(name) {
            return Ok(Node::Prim(p, Vec::new()));
        }
        let qualified = qualify(name, space);
        self.index
            .get(&qualified)
            .or_else(|| self.index.get(name))
            .map(|&i| Node::Named(i))
            .ok_or_else(|| format!("unknown type {name}"))
    }

    fn define(&mut self, j: &Json, ty: &str, space: Option<&str>) -> Result<Node, String> {
        let name = j.str_at("name").ok_or("named type without a name")?;
        if !valid_full_name(name) {
            return Err(format!("invalid name {}", short_json(&Json::Str(name.to_owned()))));
        }
        let (ns, short) = match name.rsplit_once('.') {
            Some((ns, short)) => (Some(ns.to_owned()), short.to_owned()),
            None => {
                let ns = match j.get("namespace") {
                    Some(Json::Str(s)) => Some(s.clone()),
                    _ => space.map(str::to_owned),
                };
                (ns.filter(|s| !s.is_empty()), name.to_owned())
            }
        };
        if let Some(bad) = ns.as_deref().filter(|n| !valid_full_name(n)) {
            return Err(format!("invalid namespace {}", short_json(&Json::Str(bad.to_owned()))));
        }
        let full = qualify(&short, ns.as_deref());
        if self.index.contains_key(&full) {
            return Err(format!("type {full} is defined twice"));
        }
        let aliases: Vec<String> = strings(j.get("aliases")).iter().map(|a| qualify(a, ns.as_deref())).collect();
        if let Some(bad) = aliases.iter().find(|a| !valid_full_name(a)) {
            return Err(format!("invalid alias {}", short_json(&Json::Str(bad.clone()))));
        }
        let enum_default = (ty == "enum").then_some("default");
        let at = self.named.len();
        self.named.push(Named {
            full: full.clone(),
            space: ns.clone(),
            short,
            doc: j.str_at("doc").map(str::to_owned),
            aliases,
            props: props_of(j, &SCHEMA_KEYS, enum_default),
            kind: Kind::Fixed { size: 0 },
            origin: self.origin.unwrap_or(Origin::Main),
        });
        // Registered before the fields are read, so a record may refer to itself.
        self.index.insert(full, at);
        let kind = match ty {
            "enum" => {
                Kind::Enum { symbols: strings(j.get("symbols")), default: j.str_at("default").map(str::to_owned) }
            }
            "fixed" => Kind::Fixed {
                size: match j.get("size") {
                    Some(Json::Num(n)) => n.as_u64().ok_or("bad fixed size")?,
                    _ => return Err("fixed without a size".into()),
                },
            },
            _ => Kind::Record { error: ty == "error", fields: self.fields(j, ns.as_deref())? },
        };
        self.named[at].kind = kind;
        Ok(Node::Named(at))
    }

    fn fields(&mut self, j: &Json, space: Option<&str>) -> Result<Vec<Field>, String> {
        let Some(Json::Arr(list)) = j.get("fields") else {
            return Err("record without fields".into());
        };
        let mut out = Vec::with_capacity(list.len());
        for f in list {
            let name = f.str_at("name").ok_or("field without a name")?;
            if !valid_name(name) {
                return Err(format!("invalid field name {}", short_json(&Json::Str(name.to_owned()))));
            }
            let ty = f.get("type").ok_or("field without a type")?;
            let order = match f.str_at("order").map(str::to_ascii_lowercase).as_deref() {
                None | Some("ascending") => Order::Ascending,
                Some("descending") => Order::Descending,
                Some("ignore") => Order::Ignore,
                Some(o) => return Err(format!("field {name} has order {o}")),
            };
            out.push(Field {
                name: name.to_owned(),
                ty: self.node(ty, space)?,
                doc: f.str_at("doc").map(str::to_owned),
                default: f.get("default").cloned(),
                order,
                aliases: strings(f.get("aliases")),
                props: props_of(f, &FIELD_KEYS, None),
            });
        }
        Ok(out)
    }
}

fn short_json(j: &Json) -> String {
    let mut s = String::new();
    j.write(&mut s);
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Printing.

struct Printer<'a> {
    schema: &'a AvroSchema,
    /// Named types already printed in full (or known from the references).
    known: Vec<bool>,
    out: String,
}

impl<'a> Printer<'a> {
    fn new(schema: &'a AvroSchema) -> Self {
        let known = schema.named.iter().map(|n| n.origin == Origin::ReferenceTop).collect();
        Printer { schema, known, out: String::new() }
    }

    fn key(&mut self, key: &str) {
        if !self.out.ends_with('{') {
            self.out.push(',');
        }
        write_str(&mut self.out, key);
        self.out.push(':');
    }

    fn key_str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_str(&mut self.out, value);
    }

    fn key_json(&mut self, key: &str, value: &Json) {
        self.key(key);
        value.write(&mut self.out);
    }

    fn str_list<'s>(&mut self, key: &str, items: impl IntoIterator<Item = &'s str>) {
        self.key(key);
        self.out.push('[');
        for (i, s) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_str(&mut self.out, s);
        }
        self.out.push(']');
    }

    fn props(&mut self, props: &Props) {
        for (k, v) in props {
            self.key_json(k, v);
        }
    }

    // --- Java's Schema.toString(references) ---

    fn canonical(&mut self, node: &Node, space: Option<&str>) {
        match node {
            Node::Prim(p, props) if props.is_empty() => write_str(&mut self.out, p.name()),
            Node::Prim(p, props) => {
                self.out.push('{');
                self.key_str("type", p.name());
                self.props(props);
                self.out.push('}');
            }
            Node::Array(items, props) => self.canonical_container("array", "items", items, props, space),
            Node::Map(values, props) => self.canonical_container("map", "values", values, props, space),
            Node::Union(branches) => {
                self.out.push('[');
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.canonical(b, space);
                }
                self.out.push(']');
            }
            Node::Named(i) => self.canonical_named(*i, space),
        }
    }

    fn canonical_container(&mut self, ty: &str, key: &str, inner: &Node, props: &Props, space: Option<&str>) {
        self.out.push('{');
        self.key_str("type", ty);
        self.key(key);
        self.canonical(inner, space);
        self.props(props);
        self.out.push('}');
    }

    fn canonical_named(&mut self, i: usize, space: Option<&str>) {
        let n = self.schema.named(i);
        if self.known[i] {
            // Java's getQualified: the short name when the namespaces agree.
            let name = match n.space.as_deref() {
                None => &n.short,
                Some(ns) if Some(ns) == space => &n.short,
                Some(_) => &n.full,
            };
            write_str(&mut self.out, name);
            return;
        }
        self.known[i] = true;
        self.out.push('{');
        let ty = match &n.kind {
            Kind::Record { error: true, .. } => "error",
            Kind::Record { .. } => "record",
            Kind::Enum { .. } => "enum",
            Kind::Fixed { .. } => "fixed",
        };
        self.key_str("type", ty);
        self.key_str("name", &n.short);
        match (n.space.as_deref(), space) {
            (Some(ns), enclosing) if Some(ns) != enclosing => self.key_str("namespace", ns),
            (None, Some(_)) => self.key_str("namespace", ""),
            _ => {}
        }
        if let Some(doc) = &n.doc {
            self.key_str("doc", doc);
        }
        let own = n.space.as_deref();
        match &n.kind {
            Kind::Record { fields, .. } => {
                self.key("fields");
                self.out.push('[');
                for (k, f) in fields.iter().enumerate() {
                    if k > 0 {
                        self.out.push(',');
                    }
                    self.canonical_field(f, own);
                }
                self.out.push(']');
            }
            Kind::Enum { symbols, default } => {
                self.str_list("symbols", symbols.iter().map(String::as_str));
                if let Some(d) = default {
                    self.key_str("default", d);
                }
            }
            Kind::Fixed { size } => {
                self.key("size");
                let _ = write!(self.out, "{size}");
            }
        }
        self.props(&n.props);
        if !n.aliases.is_empty() {
            let aliases: Vec<&str> = n
                .aliases
                .iter()
                .map(|a| match (a.rsplit_once('.'), own) {
                    (Some((ns, short)), Some(o)) if ns == o => short,
                    _ => a.as_str(),
                })
                .collect();
            self.str_list("aliases", aliases);
        }
        self.out.push('}');
    }

    fn canonical_field(&mut self, f: &Field, space: Option<&str>) {
        self.out.push('{');
        self.key_str("name", &f.name);
        self.key("type");
        self.canonical(&f.ty, space);
        if let Some(doc) = &f.doc {
            self.key_str("doc", doc);
        }
        if let Some(d) = &f.default {
            self.key_json("default", d);
        }
        match f.order {
            Order::Ascending => {}
            Order::Descending => self.key_str("order", "descending"),
            Order::Ignore => self.key_str("order", "ignore"),
        }
        if !f.aliases.is_empty() {
            self.str_list("aliases", f.aliases.iter().map(String::as_str));
        }
        self.props(&f.props);
        self.out.push('}');
    }

    // --- Confluent's AvroSchemaUtils.toNormalizedString ---

    fn normalized(&mut self, node: &Node) {
        match node {
            Node::Prim(p, props) => self.normalized_prim(*p, props),
            Node::Array(inner, props) | Node::Map(inner, props) => {
                let (ty, key) = match node {
                    Node::Array(..) => ("array", "items"),
                    _ => ("map", "values"),
                };
                self.out.push('{');
                self.key_str("type", ty);
                self.key(key);
                self.normalized(inner);
                self.sorted_props(props, &[]);
                self.out.push('}');
            }
            Node::Union(branches) => {
                self.out.push('[');
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.normalized(b);
                }
                self.out.push(']');
            }
            Node::Named(i) => self.normalized_named(*i),
        }
    }

    fn normalized_prim(&mut self, p: Prim, props: &Props) {
        if props.is_empty() {
            write_str(&mut self.out, p.name());
            return;
        }
        self.out.push('{');
        self.key_str("type", p.name());
        let skip = self.logical(props, |lt| logical_fits_prim(lt, p), u64::MAX);
        self.sorted_props(props, skip);
        self.out.push('}');
    }

    /// Prints the logical type in `props` if it is one Java Avro accepts for the underlying
    /// type, and returns the keys it used.
    /// A decimal's precision must not pass `max_precision` (what a fixed's size can hold).
    fn logical(&mut self, props: &Props, fits: impl Fn(&str) -> bool, max_precision: u64) -> &'static [&'static str] {
        let get = |k: &str| props.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let Some(Json::Str(lt)) = get("logicalType") else {
            return &[];
        };
        if !fits(lt) {
            return &[];
        }
        if lt == "decimal" {
            let int = |k: &str| match get(k) {
                Some(Json::Num(n)) => n.as_u64(),
                _ => None,
            };
            let (Some(precision), scale) = (int("precision"), int("scale").unwrap_or(0)) else {
                return &[];
            };
            if precision == 0 || scale > precision || precision > max_precision {
                return &[];
            }
            self.key_str("logicalType", "decimal");
            self.key("precision");
            let _ = write!(self.out, "{precision}");
            if scale != 0 {
                self.key("scale");
                let _ = write!(self.out, "{scale}");
            }
            return &["logicalType", "precision", "scale"];
        }
        self.key_str("logicalType", lt);
        &["logicalType"]
    }

    fn sorted_props(&mut self, props: &Props, skip: &[&str]) {
        let mut sorted: Vec<&(String, Json)> = props.iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in sorted {
            self.key_json(k, v);
        }
    }

    fn normalized_named(&mut self, i: usize) {
        let n = self.schema.named(i);
        if self.known[i] {
            write_str(&mut self.out, &n.full);
            return;
        }
        self.known[i] = true;
        self.out.push('{');
        self.key_str("name", &n.full);
        let mut skip: &[&str] = &[];
        match &n.kind {
            Kind::Record { fields, .. } => {
                self.key_str("type", "record");
                self.key("fields");
                self.out.push('[');
                for (k, f) in fields.iter().enumerate() {
                    if k > 0 {
                        self.out.push(',');
                    }
                    self.normalized_field(f);
                }
                self.out.push(']');
            }
            Kind::Enum { symbols, .. } => {
                self.key_str("type", "enum");
                self.str_list("symbols", symbols.iter().map(String::as_str));
            }
            Kind::Fixed { size } => {
                self.key_str("type", "fixed");
                self.key("size");
                let _ = write!(self.out, "{size}");
                let size = *size;
                skip = self.logical(&n.props, |lt| logical_fits_fixed(lt, size), fixed_max_precision(size));
            }
        }
        if let Some(doc) = n.doc.as_deref().filter(|d| !d.is_empty()) {
            self.key_str("doc", doc);
        }
        if !n.aliases.is_empty() {
            let sorted: BTreeSet<&str> = n.aliases.iter().map(String::as_str).collect();
            self.str_list("aliases", sorted);
        }
        if let Kind::Enum { default: Some(d), .. } = &n.kind {
            self.key_str("default", d);
        }
        self.sorted_props(&n.props, skip);
        self.out.push('}');
    }

    fn normalized_field(&mut self, f: &Field) {
        self.out.push('{');
        self.key_str("name", &f.name);
        self.key("type");
        self.normalized(&f.ty);
        let order = match f.order {
            Order::Ascending => "ASCENDING",
            Order::Descending => "DESCENDING",
            Order::Ignore => "IGNORE",
        };
        self.key_str("order", order);
        if let Some(doc) = &f.doc {
            self.key_str("doc", doc);
        }
        if !f.aliases.is_empty() {
            let sorted: BTreeSet<&str> = f.aliases.iter().map(String::as_str).collect();
            self.str_list("aliases", sorted);
        }
        if let Some(d) = &f.default {
            self.key_json("default", d);
        }
        self.sorted_props(&f.props, &[]);
        self.out.push('}');
    }
}

fn prim_fits(p: Prim, v: &Json) -> bool {
    match (p, v) {
        (Prim::Null, Json::Null) | (Prim::Boolean, Json::Bool(_)) => true,
        (Prim::Int, Json::Num(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        (Prim::Long, Json::Num(n)) => n.as_i64().is_some(),
        (Prim::Float | Prim::Double, Json::Num(_)) => true,
        (Prim::Float | Prim::Double, Json::Str(s)) => matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity"),
        (Prim::String, Json::Str(_)) => true,
        (Prim::Bytes, Json::Str(s)) => s.chars().all(|c| u32::from(c) <= 0xff),
        _ => false,
    }
}

/// Java Avro's logical types and the primitives they annotate.
fn logical_fits_prim(lt: &str, p: Prim) -> bool {
    matches!(
        (lt, p),
        ("decimal" | "big-decimal", Prim::Bytes)
            | ("uuid", Prim::String)
            | ("date" | "time-millis", Prim::Int)
            | (
                "time-micros"
                    | "timestamp-millis"
                    | "timestamp-micros"
                    | "timestamp-nanos"
                    | "local-timestamp-millis"
                    | "local-timestamp-micros"
                    | "local-timestamp-nanos",
                Prim::Long
            )
    )
}

/// The most decimal digits a signed two's-complement number of `size` bytes always holds:
/// floor(log10(2^(8·size−1) − 1)), which is floor((8·size−1)·log10 2) as no power of two is a
/// power of ten.
fn fixed_max_precision(size: u64) -> u64 {
    let bits = size.saturating_mul(8).saturating_sub(1);
    // The cast saturates for absurd sizes; precision is a u64 anyway.
    (bits as f64 * std::f64::consts::LOG10_2).floor() as u64
}

fn logical_fits_fixed(lt: &str, size: u64) -> bool {
    match lt {
        "decimal" => true,
        "uuid" => size == 16,
        "duration" => size == 12,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Compatibility.

/// The shape of a schema as resolution sees it (Java's `Schema.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Prim(Prim),
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
}

impl Shape {
    /// Java's type name, as Avro's messages print it.
    fn java_name(self) -> &'static str {
        match self {
            Shape::Prim(Prim::Null) => "NULL",
            Shape::Prim(Prim::Boolean) => "BOOLEAN",
            Shape::Prim(Prim::Int) => "INT",
            Shape::Prim(Prim::Long) => "LONG",
            Shape::Prim(Prim::Float) => "FLOAT",
            Shape::Prim(Prim::Double) => "DOUBLE",
            Shape::Prim(Prim::Bytes) => "BYTES",
            Shape::Prim(Prim::String) => "STRING",
            Shape::Array => "ARRAY",
            Shape::Map => "MAP",
            Shape::Union => "UNION",
            Shape::Record => "RECORD",
            Shape::Enum => "ENUM",
            Shape::Fixed => "FIXED",
        }
    }
}

fn shape(s: &AvroSchema, node: &Node) -> Shape {
    match node {
        Node::Prim(p, _) => Shape::Prim(*p),
        Node::Array(..) => Shape::Array,
        Node::Map(..) => Shape::Map,
        Node::Union(_) => Shape::Union,
        Node::Named(i) => match s.named(*i).kind {
            Kind::Record { .. } => Shape::Record,
            Kind::Enum { .. } => Shape::Enum,
            Kind::Fixed { .. } => Shape::Fixed,
        },
    }
}

/// Can a reader of `reader` read a value written as `writer`, for two different primitives?
fn promotes(reader: Prim, writer: Prim) -> bool {
    use Prim::*;
    matches!(
        (reader, writer),
        (Long, Int) | (Float, Int | Long) | (Double, Int | Long | Float) | (Bytes, String) | (String, Bytes)
    )
}

/// The most differences one check reports. A named type used by many fields repeats its
/// differences at every use, and types nesting that way multiply them: without a bound, a small
/// hostile schema could ask for an exponential list.
pub const MAX_DIFFERENCES: usize = 100;

struct Checker<'a> {
    r: &'a AvroSchema,
    w: &'a AvroSchema,
    /// Named pairs: `None` while being checked (a recursive type meeting itself again counts as
    /// compatible, as in Java), then the result.
    memo: HashMap<(usize, usize), Option<Vec<Difference>>>,
    /// The path of the reader schema being checked.
    loc: Vec<String>,
    /// How descriptions call the reader and the writer.
    words: (&'static str, &'static str),
}

impl Checker<'_> {
    fn compat(&mut self, reader: &Node, writer: &Node) -> Vec<Difference> {
        let (Node::Named(ri), Node::Named(wi)) = (reader, writer) else {
            let mut result = self.compute(reader, writer);
            result.truncate(MAX_DIFFERENCES);
            return result;
        };
        match self.memo.get(&(*ri, *wi)) {
            Some(None) => return Vec::new(),
            Some(Some(done)) => return done.clone(),
            None => {}
        }
        self.memo.insert((*ri, *wi), None);
        let mut result = self.compute(reader, writer);
        result.truncate(MAX_DIFFERENCES);
        self.memo.insert((*ri, *wi), Some(result.clone()));
        result
    }

    /// `compat` one level down the reader's path.
    fn compat_at(&mut self, step: &str, reader: &Node, writer: &Node) -> Vec<Difference> {
        self.loc.push(step.to_owned());
        let out = self.compat(reader, writer);
        self.loc.pop();
        out
    }

    fn compute(&mut self, reader: &Node, writer: &Node) -> Vec<Difference> {
        let (rs, ws) = (shape(self.r, reader), shape(self.w, writer));
        if rs == ws {
            return self.same_shape(reader, writer);
        }
        if let Node::Union(branches) = writer {
            // Every branch the writer may have used must be readable.
            let mut out = Vec::new();
            for (i, b) in branches.iter().enumerate() {
                out.extend(self.compat_at(&i.to_string(), reader, b));
            }
            return out;
        }
        match (reader, rs, ws) {
            (_, Shape::Prim(r), Shape::Prim(w)) if promotes(r, w) => Vec::new(),
            (Node::Union(branches), _, _) => {
                // Some branch must read the writer's value; each is tried on its own path.
                let saved = std::mem::take(&mut self.loc);
                let found = branches.iter().any(|b| self.compat(b, writer).is_empty());
                self.loc = saved;
                if found { Vec::new() } else { vec![self.missing_union_branch(ws)] }
            }
            _ => vec![self.diff(
                "TYPE_MISMATCH",
                format!("reader type: {} not compatible with writer type: {}", rs.java_name(), ws.java_name()),
            )],
        }
    }

    fn same_shape(&mut self, reader: &Node, writer: &Node) -> Vec<Difference> {
        match (reader, writer) {
            (Node::Prim(..), Node::Prim(..)) => Vec::new(),
            (Node::Array(r, _), Node::Array(w, _)) => self.compat_at("items", r, w),
            (Node::Map(r, _), Node::Map(w, _)) => self.compat_at("values", r, w),
            (Node::Union(_), Node::Union(wb)) => {
                let mut out = Vec::new();
                for (i, b) in wb.iter().enumerate() {
                    self.loc.push(i.to_string());
                    if !self.compat(reader, b).is_empty() {
                        let ws = shape(self.w, b);
                        out.push(self.missing_union_branch(ws));
                    }
                    self.loc.pop();
                }
                out
            }
            (Node::Named(ri), Node::Named(wi)) => self.named_pair(*ri, *wi),
            _ => Vec::new(),
        }
    }

    fn named_pair(&mut self, ri: usize, wi: usize) -> Vec<Difference> {
        let (r, w) = (self.r.named(ri), self.w.named(wi));
        let mut out = Vec::new();
        if r.short != w.short && !r.aliases.contains(&w.full) {
            self.loc.push("name".into());
            out.push(self.diff("NAME_MISMATCH", format!("expected: {}", w.full)));
            self.loc.pop();
        }
        match (&r.kind, &w.kind) {
            (Kind::Enum { symbols: rsyms, default }, Kind::Enum { symbols: wsyms, .. }) => {
                let missing: BTreeSet<&str> = wsyms.iter().filter(|s| !rsyms.contains(s)).map(String::as_str).collect();
                let has_default = default.as_ref().is_some_and(|d| rsyms.contains(d));
                if !missing.is_empty() && !has_default {
                    let list: Vec<&str> = missing.into_iter().collect();
                    self.loc.push("symbols".into());
                    out.push(self.diff("MISSING_ENUM_SYMBOLS", format!("[{}]", list.join(", "))));
                    self.loc.pop();
                }
            }
            (Kind::Fixed { size: rsize }, Kind::Fixed { size: wsize }) if rsize != wsize => {
                self.loc.push("size".into());
                let info = format!("expected: {wsize}, found: {rsize}");
                out.push(self.diff("FIXED_SIZE_MISMATCH", info));
                self.loc.pop();
            }
            (Kind::Record { fields: rf, .. }, Kind::Record { fields: wf, .. }) => {
                self.loc.push("fields".into());
                for (i, f) in rf.iter().enumerate() {
                    self.loc.push(i.to_string());
                    let found = wf
                        .iter()
                        .find(|w| w.name == f.name)
                        .or_else(|| f.aliases.iter().find_map(|a| wf.iter().find(|w| w.name == *a)));
                    match found {
                        Some(w) => out.extend(self.compat_at("type", &f.ty, &w.ty)),
                        None if f.default.is_none() => {
                            out.push(self.diff("READER_FIELD_MISSING_DEFAULT_VALUE", f.name.clone()))
                        }
                        None => {}
                    }
                    self.loc.pop();
                }
                self.loc.pop();
            }
            _ => {}
        }
        out
    }

    fn missing_union_branch(&self, writer: Shape) -> Difference {
        self.diff("MISSING_UNION_BRANCH", format!("reader union lacking writer type: {}", writer.java_name()))
    }

    /// An incompatibility at the current path, with Confluent's sentence for its type.
    fn diff(&self, error_type: &'static str, info: String) -> Difference {
        let path = format!("/{}", self.loc.join("/"));
        let (r, w) = self.words;
        let description = match error_type {
            "FIXED_SIZE_MISMATCH" => format!(
                "The size of FIXED type field at path '{path}' in the {r} schema does not match with the {w} schema"
            ),
            "TYPE_MISMATCH" => {
                format!("The type (path '{path}') of a field in the {r} schema does not match with the {w} schema")
            }
            "NAME_MISMATCH" => format!("The name of the schema has changed (path '{path}')"),
            "MISSING_ENUM_SYMBOLS" => {
                format!("The {r} schema is missing enum symbols '{info}' at path '{path}' in the {w} schema")
            }
            "MISSING_UNION_BRANCH" => {
                format!("The {r} schema is missing a type inside a union field at path '{path}' in the {w} schema")
            }
            _ => format!(
                "The field '{info}' at path '{path}' in the {r} schema has no default value and is missing in the {w} schema"
            ),
        };
        Difference { incompatibility: Incompatibility { error_type, path, description }, additional_info: info }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> AvroSchema {
        parse(text, &[]).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn primitives_in_every_spelling() {
        for text in ["string", "\"string\"", " {\"type\":\"string\"} "] {
            assert_eq!(p(text).canonical(), "\"string\"");
        }
        assert_eq!(
            p(r#"{"type":"string","avro.java.string":"String"}"#).canonical(),
            r#"{"type":"string","avro.java.string":"String"}"#
        );
    }

    #[test]
    fn canonical_keeps_java_key_order_and_drops_whitespace() {
        let text = r#"{
            "fields": [
                {"type": "int", "name": "a", "default": 1, "doc": "d", "order": "descending"},
                {"name": "b", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"], "default": "X"}},
                {"name": "c", "type": ["null", {"type": "fixed", "name": "F", "size": 4, "namespace": "other"}], "default": null},
                {"name": "d", "type": "E", "x-prop": [1, 2]}
            ],
            "namespace": "com.acme", "name": "R", "type": "record", "aliases": ["Old", "x.Older"], "owner": "me"
        }"#;
        assert_eq!(
            p(text).canonical(),
            concat!(
                r#"{"type":"record","name":"R","namespace":"com.acme","fields":["#,
                r#"{"name":"a","type":"int","doc":"d","default":1,"order":"descending"},"#,
                r#"{"name":"b","type":{"type":"enum","name":"E","symbols":["X","Y"],"default":"X"}},"#,
                r#"{"name":"c","type":["null",{"type":"fixed","name":"F","namespace":"other","size":4}],"default":null},"#,
                r#"{"name":"d","type":"E","x-prop":[1,2]}],"#,
                r#""owner":"me","aliases":["Old","x.Older"]}"#
            )
        );
    }

    #[test]
    fn dotted_name_splits_into_namespace() {
        let s = p(r#"{"type":"record","name":"a.b.R","fields":[]}"#);
        assert_eq!(s.canonical(), r#"{"type":"record","name":"R","namespace":"a.b","fields":[]}"#);
        assert_eq!(s.normalized(), r#"{"name":"a.b.R","type":"record","fields":[]}"#);
    }

    #[test]
    fn normalized_sorts_and_qualifies() {
        let text = r#"{"type":"record","name":"R","namespace":"n","doc":"",
            "zz":1,"aa":2,"aliases":["Z","A"],
            "fields":[
                {"name":"f","type":{"type":"bytes","scale":2,"precision":4,"logicalType":"decimal"},"b":1,"a":2},
                {"name":"g","type":["null","R"],"aliases":["y","x"],"default":null,"doc":"gd"}
            ]}"#;
        assert_eq!(
            p(text).normalized(),
            concat!(
                r#"{"name":"n.R","type":"record","fields":["#,
                r#"{"name":"f","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2},"order":"ASCENDING","a":2,"b":1},"#,
                r#"{"name":"g","type":["null","n.R"],"order":"ASCENDING","doc":"gd","aliases":["x","y"],"default":null}],"#,
                r#""aliases":["n.A","n.Z"],"aa":2,"zz":1}"#
            )
        );
    }

    #[test]
    fn fixed_decimal_precision_must_fit_the_size() {
        let sizes = [(1, 2), (2, 4), (4, 9), (8, 18), (16, 38), (0, 0)];
        for (size, max) in sizes {
            assert_eq!(fixed_max_precision(size), max, "size {size}");
        }
        let fits = p(r#"{"type":"fixed","name":"D","size":1,"precision":2,"logicalType":"decimal"}"#);
        assert_eq!(fits.normalized(), r#"{"name":"D","type":"fixed","size":1,"logicalType":"decimal","precision":2}"#);
        // Too precise for one byte: Java drops the logical type, the keys stay as properties.
        let too_big = p(r#"{"type":"fixed","name":"D","size":1,"precision":3,"logicalType":"decimal"}"#);
        assert_eq!(
            too_big.normalized(),
            r#"{"name":"D","type":"fixed","size":1,"logicalType":"decimal","precision":3}"#
        );
        let too_big = p(r#"{"type":"fixed","name":"D","size":1,"precision":3,"logicalType":"decimal","a":0}"#);
        assert_eq!(
            too_big.normalized(),
            r#"{"name":"D","type":"fixed","size":1,"a":0,"logicalType":"decimal","precision":3}"#
        );
    }

    #[test]
    fn aliases_are_a_set() {
        let s = p(r#"{"type":"record","name":"R","aliases":["A","A"],"fields":[
            {"name":"f","type":"int","aliases":["g","h","g"]}]}"#);
        assert_eq!(
            s.canonical(),
            r#"{"type":"record","name":"R","fields":[{"name":"f","type":"int","aliases":["g","h"]}],"aliases":["A"]}"#
        );
    }

    #[test]
    fn a_reference_listed_twice_counts_once() {
        let e = r#"{"type":"enum","name":"E","symbols":["A"]}"#;
        let r = Referenced { name: "E", schema: e };
        let s = parse(r#"["null","E"]"#, &[r, r]).expect("parses");
        assert_eq!(s.canonical(), r#"["null","E"]"#);
    }

    #[test]
    fn recursion_is_found_not_looped() {
        let s = p(r#"{"type":"record","name":"Node","fields":[
            {"name":"next","type":["null","Node"],"default":null}]}"#);
        assert!(check(&s, &s).is_empty());
        assert_eq!(
            s.canonical(),
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"],"default":null}]}"#
        );
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let deep = format!("{}\"int\"{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep, &[]).is_err());
        let deeper = format!("{}\"int\"{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deeper, &[]).is_err());
    }

    #[test]
    fn difference_message_is_confluents() {
        let old = p(r#"{"type":"record","name":"R","fields":[]}"#);
        let new = p(r#"{"type":"record","name":"R","fields":[{"name":"f","type":"int"}]}"#);
        let d = check_detailed(&new, &old, true);
        assert_eq!(
            d[0].message(),
            "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'f' at path \
             '/fields/0' in the new schema has no default value and is missing in the old schema', \
             additionalInfo:'f'}"
        );
        let d = check_detailed(&new, &old, false);
        assert!(
            d[0].incompatibility
                .description
                .ends_with("in the old schema has no default value and is missing in the new schema")
        );
    }
}
