//! Protobuf schemas (Confluent's `PROTOBUF` schema type): compiling a `.proto` file with its
//! imports, a normalized re-print of it, and Confluent's compatibility rules.
//!
//! A schema is the text of one `.proto` file. Its imports come from the schema's references
//! (the reference's name is the import path), from the well-known `google/protobuf/*.proto`
//! files that `protox` carries, and from Confluent's own `confluent/meta.proto` and
//! `confluent/type/decimal.proto`, embedded here. Any other import is an error. `protox`
//! compiles the file into descriptors (`prost-reflect`); nothing here runs `protoc` or touches
//! the file system.
//!
//! The compatibility checker follows Confluent's `SchemaDiff` (the `protobuf.diff` package of its
//! registry, as of 2026): it lists differences between an original and an updated file, each
//! with a type and a path such as `#/Order/3`, and a fixed set of types counts as compatible.
//! Messages are matched by name at each level of nesting (a renamed message is one removed and
//! one added), fields by number, enum constants by number. Field types are compared by wire
//! compatibility: scalars in the same encoding group (`int32`, `int64`, `uint32`, `uint64`,
//! `bool` and enums; `sint32`, `sint64`; `fixed32`, `sfixed32`; `fixed64`, `sfixed64`; `string`,
//! `bytes`) may replace each other. Like Confluent's, the checker reads field labels as written:
//! a proto3 field without a label has none, so turning it into a `repeated` one is not noticed.
//!
//! Known differences from Confluent: the canonical text is the client's own (see
//! [`ProtobufSchema::canonical`]); names are walked in sorted rather than hash order; proto2
//! groups are left out of the comparison, as Confluent's parser keeps them apart; types from
//! imports are followed at most [`MAX_TYPE_DEPTH`] deep; `protox` knows no editions syntax.
//!
//! Hostile input gives `Err`, never a panic: texts are bounded ([`MAX_TEXT_LEN`]), `protox` caps
//! message nesting itself, and the bracket nesting of option values, which `prost-reflect` reads
//! recursively, is bounded here before compiling ([`MAX_BRACKET_DEPTH`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use prost_reflect::prost_types::{FieldDescriptorProto, FileDescriptorProto, field_descriptor_proto};
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, Syntax, Value,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::{Incompatibility, Referenced};

mod typed;

pub use typed::ProtoColumns;

/// The longest schema or reference text accepted, in bytes.
pub const MAX_TEXT_LEN: usize = 1 << 20;

/// The deepest nesting of `{`, `[` and `<` accepted in a text. Messages may nest 31 deep
/// (`protoc`'s and `protox`'s limit); option values in text format have no limit of their own.
pub const MAX_BRACKET_DEPTH: usize = 100;

/// At most this many differences are reported by one comparison.
pub const MAX_DIFFERENCES: usize = 500;

/// How deep the checker follows message types from imported files through their fields (each
/// step compares one more type, on the stack). Types further down are not compared.
pub const MAX_TYPE_DEPTH: usize = 64;

/// The name the schema's own file gets while compiling. It shows in error messages.
const MAIN_FILE: &str = "schema.proto";

/// Confluent's `confluent/meta.proto`: documentation, parameters, tags and rules that can be
/// attached to a file, message, field, enum or enum value as an option numbered 1088.
const CONFLUENT_META: &str = r#"syntax = "proto3";
package confluent;

import "google/protobuf/descriptor.proto";

option java_package = "io.confluent.protobuf";
option java_outer_classname = "MetaProto";

message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
  repeated Rule rules = 4;
}

message Rule {
  string name = 1;
  string doc = 2;
  string expr = 3;
  string sql = 4;
}

extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
"#;

/// Confluent's `confluent/type/decimal.proto`: an arbitrary-precision decimal as its unscaled
/// two's-complement big-endian bytes, with precision (0 for unlimited) and scale.
const CONFLUENT_DECIMAL: &str = r#"syntax = "proto3";
package confluent.type;

option java_package = "io.confluent.protobuf.type";
option java_multiple_files = true;
option java_outer_classname = "DecimalProto";

message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
"#;

/// A compiled Protobuf schema with its imports resolved.
#[derive(Debug, Clone)]
pub struct ProtobufSchema {
    /// The text as the client sent it.
    text: String,
    /// The schema's own file; its pool holds every file it imports.
    file: FileDescriptor,
}

/// Compiles `text`, a `.proto` file, with `references` (in dependency order) as the files it
/// may import by their names. `Err` is `protox`'s message for the first problem found.
///
/// A schema may also be a base64-encoded `FileDescriptorProto`, as Confluent's Python and Go
/// serializers send it: it is decoded, its imports are resolved the same way, and the text kept
/// for it is the re-print of the compiled file ([`ProtobufSchema::normalized`]), as Confluent
/// keeps its own re-print, so the same file sent again, either way, is found again.
pub fn parse(text: &str, references: &[Referenced<'_>]) -> Result<ProtobufSchema, String> {
    bounded(text).map_err(|e| format!("{e} in the schema"))?;
    if let Some(descriptor) = as_descriptor(text)? {
        return parse_descriptor(descriptor, references);
    }
    let mut compiler = compiler(text, references)?;
    compiler.open_file(MAIN_FILE).map_err(|e| located(&e, text, references))?;
    let pool = compiler.descriptor_pool();
    let file = pool.get_file_by_name(MAIN_FILE).ok_or_else(|| "the schema did not compile".to_owned())?;
    Ok(ProtobufSchema { text: text.to_owned(), file })
}

/// The `FileDescriptorProto` a text encodes when it is base64 (no `.proto` text is: one holds
/// at least a `;`, a `{` or a space); `None` for a `.proto` text.
fn as_descriptor(text: &str) -> Result<Option<FileDescriptorProto>, String> {
    use base64::Engine as _;
    use prost_reflect::prost::Message as _;
    let text = text.trim();
    let base64_alphabet = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if text.is_empty() || !text.bytes().all(base64_alphabet) {
        return Ok(None);
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) else { return Ok(None) };
    let descriptor = FileDescriptorProto::decode(bytes.as_slice())
        .map_err(|e| format!("the schema is neither a .proto file nor a FileDescriptorProto: {e}"))?;
    Ok(Some(descriptor))
}

/// Compiles a schema sent as a `FileDescriptorProto`: its imports from `references`, the
/// well-known files and Confluent's, then the file itself on top of them.
fn parse_descriptor(
    mut descriptor: FileDescriptorProto,
    references: &[Referenced<'_>],
) -> Result<ProtobufSchema, String> {
    descriptor.name = Some(MAIN_FILE.to_owned());
    // The file is checked, not compiled from text: an empty text stands in for it, so that a
    // reference cannot take its name.
    let mut compiler = compiler("", references)?;
    for import in &descriptor.dependency {
        if import == MAIN_FILE {
            return Err(format!("the schema imports itself ('{MAIN_FILE}')"));
        }
        compiler.open_file(import).map_err(|e| located(&e, "", references))?;
    }
    // `prost-reflect` 0.16 panics reporting an unknown `syntax` (it looks the file up before
    // adding it): refuse that here. Anything else it finds wrong is an error; a panic that gets
    // through anyway is caught, as for Avro's parser.
    match descriptor.syntax.as_deref() {
        None | Some("proto2" | "proto3") => {}
        Some("") => descriptor.syntax = None,
        Some(other) => return Err(format!("invalid FileDescriptorProto: unknown syntax '{other}'")),
    }
    let mut pool = compiler.descriptor_pool();
    let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.add_file_descriptor_proto(descriptor)));
    match added {
        Ok(result) => result.map_err(|e| format!("invalid FileDescriptorProto: {e}"))?,
        Err(_) => return Err("invalid FileDescriptorProto: the descriptor builder failed on it".to_owned()),
    }
    let file = pool.get_file_by_name(MAIN_FILE).ok_or_else(|| "the schema did not compile".to_owned())?;
    let mut schema = ProtobufSchema { text: String::new(), file };
    schema.text = schema.normalized();
    Ok(schema)
}

/// A compiler that finds `text` as [`MAIN_FILE`], `references` by their names, Confluent's two
/// files and the well-known ones.
fn compiler(text: &str, references: &[Referenced<'_>]) -> Result<protox::Compiler, String> {
    let mut files = HashMap::new();
    for r in references {
        bounded(r.schema).map_err(|e| format!("{e} in reference '{}'", r.name))?;
        // A file reached by two paths of references is listed twice; the first one counts.
        files.entry(r.name.to_owned()).or_insert_with(|| r.schema.to_owned());
    }
    if files.contains_key(MAIN_FILE) {
        return Err(format!("a reference may not be named '{MAIN_FILE}'"));
    }
    files.insert(MAIN_FILE.to_owned(), text.to_owned());
    files.entry("confluent/meta.proto".to_owned()).or_insert_with(|| CONFLUENT_META.to_owned());
    files.entry("confluent/type/decimal.proto".to_owned()).or_insert_with(|| CONFLUENT_DECIMAL.to_owned());
    let mut resolver = ChainFileResolver::new();
    resolver.add(Sources { files });
    resolver.add(GoogleFileResolver::new());
    Ok(protox::Compiler::with_file_resolver(resolver))
}

/// Whether the field's type is a message the field itself declares: a map field's entry type,
/// or a proto2 group's.
fn declares_type(f: &FieldDescriptor) -> bool {
    f.is_map() || f.is_group()
}

/// Reads the message indexes at the start of a Confluent-framed Protobuf payload: a zigzag
/// varint count, then that many zigzag varint indexes; a count of 0 stands for `[0]`. Returns
/// the indexes and the bytes after them; `None` when they are malformed or more than
/// [`MAX_MESSAGE_INDEXES`].
pub fn message_indexes(payload: &[u8]) -> Option<(Vec<i32>, &[u8])> {
    let mut rest = payload;
    let count = zigzag(varint(&mut rest)?);
    if count == 0 {
        return Some((vec![0], rest));
    }
    let count = usize::try_from(count).ok().filter(|&c| c <= MAX_MESSAGE_INDEXES)?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        indexes.push(i32::try_from(zigzag(varint(&mut rest)?)).ok()?);
    }
    Some((indexes, rest))
}

/// The most message indexes read from a payload (messages nest at most 32 deep).
pub const MAX_MESSAGE_INDEXES: usize = 64;

/// One unsigned LEB128 varint of at most 10 bytes, taken off the front of `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

fn zigzag(v: u64) -> i64 {
    // Zigzag decoding: the low bit is the sign.
    #[allow(clippy::cast_possible_wrap)]
    let half = (v >> 1) as i64;
    if v & 1 == 0 { half } else { !half }
}

/// `protox`'s message, after the file, line and column it points at when it points at one
/// (`schema.proto:3:5: name 'Bar' is not defined`).
fn located(e: &protox::Error, text: &str, references: &[Referenced<'_>]) -> String {
    use miette::Diagnostic as _;
    let message = e.to_string();
    let Some(file) = e.file() else { return message };
    let source =
        if file == MAIN_FILE { Some(text) } else { references.iter().find(|r| r.name == file).map(|r| r.schema) };
    let offset = e.labels().and_then(|mut labels| labels.next()).map(|l| l.offset());
    match (source, offset) {
        (Some(source), Some(offset)) => {
            let before = source.get(..offset).unwrap_or(source);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{file}:{line}:{column}: {message}")
        }
        _ => format!("{file}: {message}"),
    }
}

/// Refuses texts too long, or with brackets nested too deep, to compile safely. Brackets in
/// comments and string literals count too: the bound is generous and only errs on the safe side.
fn bounded(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_LEN {
        return Err(format!("text longer than {MAX_TEXT_LEN} bytes"));
    }
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'{' | b'[' | b'<' => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Err(format!("brackets nested deeper than {MAX_BRACKET_DEPTH} levels"));
                }
            }
            b'}' | b']' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The files a schema may import besides the well-known ones: its references, itself and
/// Confluent's two files.
struct Sources {
    files: HashMap<String, String>,
}

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(text) => File::from_source(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

impl ProtobufSchema {
    /// The text the registry stores and compares for identity: the client's own text. Confluent
    /// stores its Java parser's re-print of the file; the clients that matter (Confluent's
    /// serializers) send that re-print already, so keeping their text gives the same identity
    /// without reproducing the Java printer. Use [`normalized`](Self::normalized) to compare
    /// texts that differ in layout.
    pub fn canonical(&self) -> String {
        self.text.clone()
    }

    /// A deterministic re-print of the compiled file, for `normalize=true`: no comments, one
    /// layout; `syntax`, `package`, imports sorted, file options sorted by name, then the
    /// messages, enums, services and extensions in declaration order (a message's position is
    /// part of the wire format: Confluent's serializers send message indexes). Inside a message:
    /// options, reserved ranges and names, fields by number (a oneof at its first field), nested
    /// messages and enums, extension ranges, extensions. Enum values by number after the first
    /// one, which stays first (it is the default). Type names are
    /// fully qualified (`.pkg.Type`), so texts that refer to the same types in different ways
    /// print alike. The result compiles to the same descriptors.
    pub fn normalized(&self) -> String {
        let mut p = Printer { out: String::new(), syntax: self.file.syntax() };
        p.file(&self.file);
        p.out
    }

    /// The compiled file as a base64-encoded `FileDescriptorProto` (`?format=serialized`), the
    /// form Confluent's Python and Go deserializers ask for.
    pub fn serialized(&self) -> String {
        use base64::Engine as _;
        use prost_reflect::prost::Message as _;
        base64::engine::general_purpose::STANDARD.encode(self.file.file_descriptor_proto().encode_to_vec())
    }

    /// The full name of the message Confluent's message indexes point at: `[0]` is the file's
    /// first message, `[1, 2]` the third message nested in the second (map entry types count). `None` when there is no
    /// such message.
    pub fn message_name(&self, indexes: &[i32]) -> Option<String> {
        self.message_at(indexes).map(|m| m.full_name().to_owned())
    }

    /// The message at `indexes` (see [`message_name`](Self::message_name)). Nested messages
    /// count in the compiled file's order, map entry types included, as Confluent's Python and
    /// Go serializers and its Java serializer (without `normalize`) count them.
    fn message_at(&self, indexes: &[i32]) -> Option<MessageDescriptor> {
        let (&first, rest) = indexes.split_first()?;
        let mut message = self.file.messages().nth(usize::try_from(first).ok()?)?;
        for &i in rest {
            let child = message.child_messages().nth(usize::try_from(i).ok()?)?;
            message = child;
        }
        Some(message)
    }

    /// Checks a Confluent-framed Protobuf payload (after the schema id): message indexes that
    /// point at a message of this schema, then bytes that decode as that message.
    ///
    /// # Errors
    /// Why not: malformed or dangling indexes, or what the decoder found wrong.
    pub fn check_message(&self, payload: &[u8]) -> Result<(), String> {
        let (indexes, body) =
            message_indexes(payload).ok_or_else(|| "malformed Protobuf message indexes".to_owned())?;
        let message = self
            .message_at(&indexes)
            .ok_or_else(|| format!("the message indexes {indexes:?} point at no message of the schema"))?;
        DynamicMessage::decode(message.clone(), body)
            .map(|_| ())
            .map_err(|e| format!("not a {} message: {e}", message.full_name()))
    }

    /// The file's package (empty when it has none).
    pub fn package(&self) -> &str {
        self.file.package_name()
    }
}

// ---------------------------------------------------------------------------------------------
// Compatibility

/// Confluent's difference types (`io.confluent.kafka.schemaregistry.protobuf.diff.Difference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum DifferenceType {
    PackageChanged,
    MessageAdded,
    MessageRemoved,
    MessageMoved,
    EnumAdded,
    EnumRemoved,
    EnumConstAdded,
    EnumConstChanged,
    EnumConstRemoved,
    FieldAdded,
    FieldRemoved,
    FieldNameChanged,
    FieldKindChanged,
    FieldScalarKindChanged,
    FieldNamedTypeChanged,
    FieldNumericLabelChanged,
    FieldStringOrBytesLabelChanged,
    RequiredFieldAdded,
    RequiredFieldRemoved,
    OneofAdded,
    OneofRemoved,
    OneofFieldAdded,
    OneofFieldRemoved,
    OneofFieldMovedToTopLevel,
    MultipleFieldsMovedToOneof,
    FieldMovedToExistingOneof,
}

impl DifferenceType {
    /// Confluent's name for it.
    pub const fn as_str(self) -> &'static str {
        use DifferenceType::*;
        match self {
            PackageChanged => "PACKAGE_CHANGED",
            MessageAdded => "MESSAGE_ADDED",
            MessageRemoved => "MESSAGE_REMOVED",
            MessageMoved => "MESSAGE_MOVED",
            EnumAdded => "ENUM_ADDED",
            EnumRemoved => "ENUM_REMOVED",
            EnumConstAdded => "ENUM_CONST_ADDED",
            EnumConstChanged => "ENUM_CONST_CHANGED",
            EnumConstRemoved => "ENUM_CONST_REMOVED",
            FieldAdded => "FIELD_ADDED",
            FieldRemoved => "FIELD_REMOVED",
            FieldNameChanged => "FIELD_NAME_CHANGED",
            FieldKindChanged => "FIELD_KIND_CHANGED",
            FieldScalarKindChanged => "FIELD_SCALAR_KIND_CHANGED",
            FieldNamedTypeChanged => "FIELD_NAMED_TYPE_CHANGED",
            FieldNumericLabelChanged => "FIELD_NUMERIC_LABEL_CHANGED",
            FieldStringOrBytesLabelChanged => "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
            RequiredFieldAdded => "REQUIRED_FIELD_ADDED",
            RequiredFieldRemoved => "REQUIRED_FIELD_REMOVED",
            OneofAdded => "ONEOF_ADDED",
            OneofRemoved => "ONEOF_REMOVED",
            OneofFieldAdded => "ONEOF_FIELD_ADDED",
            OneofFieldRemoved => "ONEOF_FIELD_REMOVED",
            OneofFieldMovedToTopLevel => "ONEOF_FIELD_MOVED_TO_TOP_LEVEL",
            MultipleFieldsMovedToOneof => "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
            FieldMovedToExistingOneof => "FIELD_MOVED_TO_EXISTING_ONEOF",
        }
    }

    /// Whether Confluent lets a schema evolve this way (its `SchemaDiff.COMPATIBLE_CHANGES`).
    pub const fn is_compatible(self) -> bool {
        use DifferenceType::*;
        matches!(
            self,
            MessageAdded
                | MessageMoved
                | EnumAdded
                | EnumRemoved
                | EnumConstAdded
                | EnumConstChanged
                | EnumConstRemoved
                | FieldAdded
                | FieldRemoved
                | FieldNameChanged
                | FieldStringOrBytesLabelChanged
                | OneofAdded
                | OneofRemoved
                | OneofFieldAdded
                | OneofFieldMovedToTopLevel
        )
    }

    /// Confluent's sentence for an incompatible difference at `path`, naming the reader (the
    /// updated schema) and the writer (the original one); empty for compatible types.
    fn describe(self, path: &str, reader: &str, writer: &str) -> String {
        use DifferenceType::*;
        match self {
            PackageChanged => format!(
                "The package at '{path}' in the {reader} schema does not match the package in the {writer} schema"
            ),
            MessageRemoved => {
                format!("The {reader} schema is missing a MESSAGE type at path '{path}' in the {writer} schema")
            }
            FieldKindChanged => {
                format!(
                    "The type of a field at path '{path}' in the {reader} schema does not match the {writer} schema"
                )
            }
            FieldScalarKindChanged => format!(
                "The kind of a SCALAR field at path '{path}' in the {reader} schema does not match its kind in the {writer} schema"
            ),
            FieldNamedTypeChanged => format!(
                "The type of a MESSAGE field at path '{path}' in the {reader} schema does not match its type in the {writer} schema"
            ),
            FieldNumericLabelChanged => format!(
                "The label for a NUMERIC field at path '{path}' in the {reader} schema does not match its label in the {writer} schema"
            ),
            // Two spaces after "field", as Confluent has it.
            RequiredFieldAdded => {
                format!("A required field  at path '{path}' in the {reader} schema is missing in the {writer} schema")
            }
            RequiredFieldRemoved => {
                format!("The {reader} schema is missing a required field at path: '{path}' in the {writer} schema")
            }
            OneofFieldRemoved => {
                format!("The {reader} schema is missing a oneof field at path '{path}' in the {writer} schema")
            }
            OneofFieldMovedToTopLevel => format!(
                "The oneof field at path '{path}' in the {reader} schema was moved out of its oneof to a top-level field in the {writer} schema"
            ),
            MultipleFieldsMovedToOneof => format!(
                "Multiple fields in the oneof at path '{path}' in the {reader} schema are outside a oneof in the {writer} schema"
            ),
            FieldMovedToExistingOneof => format!(
                "A field in the oneof at path '{path}' in the {reader} schema is outside an existing oneof in the {writer} schema"
            ),
            _ => String::new(),
        }
    }
}

/// One difference between two schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What changed.
    pub kind: DifferenceType,
    /// Where: `#/` then the message and enum names, oneof names and numbers on the way, as
    /// `#/Order/items/3`; `#/` alone for the file.
    pub path: String,
}

/// Every difference from `original` to `update`, compatible or not, in Confluent's order:
/// the package, then at each level messages (by name) and then enums; inside a message the
/// oneofs and then the fields by number, then its nested types. Confluent walks names in hash
/// order; here they are sorted. At most [`MAX_DIFFERENCES`].
pub fn diff(original: &ProtobufSchema, update: &ProtobufSchema) -> Vec<Difference> {
    let mut c = Comparer::default();
    if original.file.package_name() != update.file.package_name() {
        c.add(DifferenceType::PackageChanged);
    }
    let (o, u) = (&original.file, &update.file);
    c.types(
        &o.messages().collect::<Vec<_>>(),
        &o.enums().collect::<Vec<_>>(),
        &u.messages().collect::<Vec<_>>(),
        &u.enums().collect::<Vec<_>>(),
    );
    c.out
}

/// Why `new` cannot replace `old` under BACKWARD compatibility, as Confluent's messages
/// (`{errorType:"…", description:"…"}`, its double quotes); empty when it can.
pub fn check(new: &ProtobufSchema, old: &ProtobufSchema) -> Vec<String> {
    check_detailed(new, old, true).iter().map(message).collect()
}

/// The incompatible differences when `reader` takes the place of `writer`: Confluent's
/// `reader.isBackwardCompatible(writer)`, which diffs from the writer (original) to the reader
/// (update). A BACKWARD check is `(new, old, true)`; a FORWARD check is `(old, new, false)`,
/// the same diff run from the new schema to the old one, and the descriptions then call the
/// reader "old" and the writer "new", as Confluent words them.
pub fn check_detailed(reader: &ProtobufSchema, writer: &ProtobufSchema, reader_is_new: bool) -> Vec<Incompatibility> {
    let (r, w) = if reader_is_new { ("new", "old") } else { ("old", "new") };
    diff(writer, reader)
        .into_iter()
        .filter(|d| !d.kind.is_compatible())
        .map(|d| Incompatibility {
            error_type: d.kind.as_str(),
            description: d.kind.describe(&d.path, r, w),
            path: d.path,
        })
        .collect()
}

/// Confluent's text for one incompatibility.
pub fn message(i: &Incompatibility) -> String {
    format!("{{errorType:\"{}\", description:\"{}\"}}", i.error_type, i.description)
}

/// The result of comparing two message types reached through a field, kept for the next field
/// that uses the same pair.
#[derive(Clone)]
struct Compared {
    differences: Vec<Difference>,
    compatible: bool,
}

#[derive(Default)]
struct Comparer {
    out: Vec<Difference>,
    path: Vec<String>,
    /// Pairs of message types (full names) compared through a field, or being compared.
    seen: HashMap<(String, String), Option<Compared>>,
    /// How many imported types are being compared around this comparer.
    depth: usize,
}

/// A field's label as written in the source, which is what Confluent's parser keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Optional,
    Required,
    Repeated,
}

/// Confluent's three kinds of field type: scalars (enums included), maps and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Scalar,
    Map,
    Message,
}

/// Scalars that share an encoding on the wire and may replace each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Varint,
    ZigZag,
    StringOrBytes,
    Fixed32,
    Fixed64,
    Float,
    Double,
}

impl Comparer {
    fn add(&mut self, kind: DifferenceType) {
        if self.out.len() < MAX_DIFFERENCES {
            self.out.push(Difference { kind, path: format!("#/{}", self.path.join("/")) });
        }
    }

    fn add_at(&mut self, segments: &[&str], kind: DifferenceType) {
        let n = self.path.len();
        self.path.extend(segments.iter().map(|s| (*s).to_owned()));
        self.add(kind);
        self.path.truncate(n);
    }

    /// Compares the messages and enums declared at one level (a file or a message).
    fn types(
        &mut self,
        o_msgs: &[MessageDescriptor],
        o_enums: &[EnumDescriptor],
        u_msgs: &[MessageDescriptor],
        u_enums: &[EnumDescriptor],
    ) {
        let o_msgs = declared(o_msgs);
        let u_msgs = declared(u_msgs);
        let o_index: HashMap<&str, usize> = o_msgs.iter().enumerate().map(|(i, m)| (m.name(), i)).collect();
        let u_index: HashMap<&str, usize> = u_msgs.iter().enumerate().map(|(i, m)| (m.name(), i)).collect();
        let names: BTreeSet<&str> = o_index.keys().chain(u_index.keys()).copied().collect();
        for name in names {
            let (o, u) = (o_index.get(name).copied(), u_index.get(name).copied());
            self.path.push(name.to_owned());
            match (o, u) {
                (Some(_), None) => self.add(DifferenceType::MessageRemoved),
                (None, Some(_)) => self.add(DifferenceType::MessageAdded),
                (Some(oi), Some(ui)) => {
                    self.message(&o_msgs[oi], &u_msgs[ui]);
                    // Moving a message is fine: the message indexes in a record refer to the
                    // schema its id names.
                    if oi != ui {
                        self.add(DifferenceType::MessageMoved);
                    }
                }
                (None, None) => {}
            }
            self.path.pop();
        }
        let o_enums: HashMap<&str, &EnumDescriptor> = o_enums.iter().map(|e| (e.name(), e)).collect();
        let u_enums: HashMap<&str, &EnumDescriptor> = u_enums.iter().map(|e| (e.name(), e)).collect();
        let names: BTreeSet<&str> = o_enums.keys().chain(u_enums.keys()).copied().collect();
        for name in names {
            let (o, u) = (o_enums.get(name).copied(), u_enums.get(name).copied());
            self.path.push(name.to_owned());
            match (o, u) {
                (Some(_), None) => self.add(DifferenceType::EnumRemoved),
                (None, Some(_)) => self.add(DifferenceType::EnumAdded),
                (Some(o), Some(u)) => self.enumeration(o, u),
                (None, None) => {}
            }
            self.path.pop();
        }
    }

    fn enumeration(&mut self, o: &EnumDescriptor, u: &EnumDescriptor) {
        // With aliases several constants share a number; the last one declared counts.
        let o: BTreeMap<i32, String> = o.values().map(|v| (v.number(), v.name().to_owned())).collect();
        let u: BTreeMap<i32, String> = u.values().map(|v| (v.number(), v.name().to_owned())).collect();
        let numbers: BTreeSet<i32> = o.keys().chain(u.keys()).copied().collect();
        for n in numbers {
            let kind = match (o.get(&n), u.get(&n)) {
                (Some(_), None) => DifferenceType::EnumConstRemoved,
                (None, Some(_)) => DifferenceType::EnumConstAdded,
                (Some(a), Some(b)) if a != b => DifferenceType::EnumConstChanged,
                _ => continue,
            };
            self.add_at(&[&n.to_string()], kind);
        }
    }

    /// Compares two messages of the same name; `self.path` ends with that name.
    fn message(&mut self, o: &MessageDescriptor, u: &MessageDescriptor) {
        let (o_fields, o_oneof_of) = fields(o);
        let (u_fields, u_oneof_of) = fields(u);
        let o_oneofs: BTreeSet<String> = real_oneofs(o).map(|(name, _)| name).collect();
        let u_oneofs: BTreeSet<String> = real_oneofs(u).map(|(name, _)| name).collect();
        // A oneof gone by name with none of its fields left anywhere was deleted as a whole,
        // which is allowed; a oneof that lost only some of its fields lost them one by one.
        let deleted: BTreeSet<String> = real_oneofs(o)
            .filter(|(name, tags)| !u_oneofs.contains(name) && !tags.iter().any(|t| u_fields.contains_key(t)))
            .map(|(name, _)| name)
            .collect();
        // A oneof of the update makes its fields exclude each other. That is new (and data
        // written before may set several of them) when its older fields came from more than
        // one place: different oneofs, or separate fields. New fields do not count.
        for (name, tags) in real_oneofs(u) {
            let mut origins = BTreeSet::new();
            let mut from_top = 0;
            for t in &tags {
                if let Some(oneof) = o_oneof_of.get(t) {
                    origins.insert(format!("oneof:{oneof}"));
                } else if o_fields.contains_key(t) {
                    origins.insert(format!("field:{t}"));
                    from_top += 1;
                }
            }
            if origins.len() > 1 {
                let kind = if from_top > 1 {
                    DifferenceType::MultipleFieldsMovedToOneof
                } else {
                    DifferenceType::FieldMovedToExistingOneof
                };
                self.add_at(&[&name], kind);
            }
        }
        for name in o_oneofs.union(&u_oneofs) {
            if !u_oneofs.contains(name) {
                self.add_at(&[name], DifferenceType::OneofRemoved);
            } else if !o_oneofs.contains(name) {
                self.add_at(&[name], DifferenceType::OneofAdded);
            }
        }
        let tags: BTreeSet<u32> = o_fields.keys().chain(u_fields.keys()).copied().collect();
        for tag in tags {
            let t = tag.to_string();
            match (o_fields.get(&tag), u_fields.get(&tag)) {
                (Some(of), None) => match o_oneof_of.get(&tag) {
                    Some(oneof) if !deleted.contains(oneof) => {
                        self.add_at(&[oneof, &t], DifferenceType::OneofFieldRemoved);
                    }
                    Some(_) => {}
                    None if label(of) == Some(Label::Required) => {
                        self.add_at(&[&t], DifferenceType::RequiredFieldRemoved);
                    }
                    None => self.add_at(&[&t], DifferenceType::FieldRemoved),
                },
                (None, Some(uf)) => match u_oneof_of.get(&tag) {
                    Some(oneof) => self.add_at(&[oneof, &t], DifferenceType::OneofFieldAdded),
                    None if label(uf) == Some(Label::Required) => {
                        self.add_at(&[&t], DifferenceType::RequiredFieldAdded);
                    }
                    None => self.add_at(&[&t], DifferenceType::FieldAdded),
                },
                (Some(of), Some(uf)) => {
                    let u_oneof = u_oneof_of.get(&tag);
                    if o_oneof_of.contains_key(&tag) && u_oneof.is_none() {
                        self.add_at(&[&t], DifferenceType::OneofFieldMovedToTopLevel);
                    }
                    let n = self.path.len();
                    self.path.extend(u_oneof.cloned());
                    self.path.push(t);
                    self.field(of, uf);
                    self.path.truncate(n);
                }
                (None, None) => {}
            }
        }
        let (o_msgs, u_msgs) = (o.child_messages().collect::<Vec<_>>(), u.child_messages().collect::<Vec<_>>());
        let (o_enums, u_enums) = (o.child_enums().collect::<Vec<_>>(), u.child_enums().collect::<Vec<_>>());
        self.types(&o_msgs, &o_enums, &u_msgs, &u_enums);
    }

    /// Compares two fields with the same number; `self.path` names the field.
    fn field(&mut self, o: &FieldDescriptor, u: &FieldDescriptor) {
        if o.name() != u.name() {
            self.add(DifferenceType::FieldNameChanged);
        }
        self.field_type(label(o), label(u), &field_type(o), &field_type(u));
    }

    fn field_type(&mut self, o_label: Option<Label>, u_label: Option<Label>, o: &FieldType, u: &FieldType) {
        match (o, u) {
            (FieldType::Map(ok, ov), FieldType::Map(uk, uv)) => {
                self.field_type(None, None, &FieldType::Plain(ok.clone()), &FieldType::Plain(uk.clone()));
                self.field_type(None, None, &FieldType::Plain(ov.clone()), &FieldType::Plain(uv.clone()));
            }
            (FieldType::Plain(ok), FieldType::Plain(uk)) => match (class(ok), class(uk)) {
                (Class::Scalar, Class::Scalar) => {
                    let (oe, ue) = (encoding(ok), encoding(uk));
                    if oe != ue {
                        self.add(DifferenceType::FieldScalarKindChanged);
                    } else if let (Some(a), Some(b)) = (o_label, u_label)
                        && a != b
                    {
                        self.add(if oe == Encoding::StringOrBytes {
                            DifferenceType::FieldStringOrBytesLabelChanged
                        } else {
                            DifferenceType::FieldNumericLabelChanged
                        });
                    }
                }
                (Class::Message, Class::Message) => {
                    if let (Kind::Message(om), Kind::Message(um)) = (ok, uk) {
                        self.named_type(om, um);
                    }
                }
                _ => self.add(DifferenceType::FieldKindChanged),
            },
            _ => self.add(DifferenceType::FieldKindChanged),
        }
    }

    /// Two message-typed fields: the types must have the same name (without the package). Types
    /// declared in the schema files themselves are compared where they are declared; types from
    /// imports are compared here, and any incompatibility in them is one of the field's too.
    fn named_type(&mut self, o: &MessageDescriptor, u: &MessageDescriptor) {
        let (ol, ul) = (local_name(o), local_name(u));
        if ol != ul {
            self.add(DifferenceType::FieldNamedTypeChanged);
            return;
        }
        if (o.parent_file().name() == MAIN_FILE && u.parent_file().name() == MAIN_FILE) || self.depth >= MAX_TYPE_DEPTH
        {
            return;
        }
        let key = (o.full_name().to_owned(), u.full_name().to_owned());
        let compared = match self.seen.get(&key) {
            Some(Some(done)) => done.clone(),
            // Being compared further up: a recursive type adds nothing new.
            Some(None) => return,
            None => {
                self.seen.insert(key.clone(), None);
                let mut sub = Comparer {
                    out: Vec::new(),
                    path: ol.split('.').map(str::to_owned).collect(),
                    seen: std::mem::take(&mut self.seen),
                    depth: self.depth + 1,
                };
                sub.message(o, u);
                self.seen = std::mem::take(&mut sub.seen);
                let compatible = sub.out.iter().all(|d| d.kind.is_compatible());
                let done = Compared { differences: sub.out, compatible };
                self.seen.insert(key, Some(done.clone()));
                done
            }
        };
        for d in compared.differences {
            if self.out.len() < MAX_DIFFERENCES {
                self.out.push(d);
            }
        }
        if !compared.compatible {
            self.add(DifferenceType::FieldNamedTypeChanged);
        }
    }
}

/// A field's type: a map's key and value, or one type.
enum FieldType {
    Plain(Kind),
    Map(Kind, Kind),
}

fn field_type(f: &FieldDescriptor) -> FieldType {
    match f.kind() {
        Kind::Message(m) if f.is_map() => {
            FieldType::Map(m.map_entry_key_field().kind(), m.map_entry_value_field().kind())
        }
        k => FieldType::Plain(k),
    }
}

fn class(k: &Kind) -> Class {
    match k {
        Kind::Message(m) if m.is_map_entry() => Class::Map,
        Kind::Message(_) => Class::Message,
        _ => Class::Scalar,
    }
}

fn encoding(k: &Kind) -> Encoding {
    match k {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => Encoding::Varint,
        Kind::Sint32 | Kind::Sint64 => Encoding::ZigZag,
        Kind::String | Kind::Bytes => Encoding::StringOrBytes,
        Kind::Fixed32 | Kind::Sfixed32 => Encoding::Fixed32,
        Kind::Fixed64 | Kind::Sfixed64 => Encoding::Fixed64,
        Kind::Float => Encoding::Float,
        // Messages never get here; grouping them with doubles is as good as any.
        Kind::Double | Kind::Message(_) => Encoding::Double,
    }
}

/// The name of a message inside its package (`Outer.Inner`).
fn local_name(m: &MessageDescriptor) -> &str {
    let full = m.full_name();
    let package = m.package_name();
    if package.is_empty() { full } else { full.strip_prefix(package).and_then(|s| s.strip_prefix('.')).unwrap_or(full) }
}

/// Messages as Confluent's parser lists them: written ones only, not the entries of map fields
/// nor the types of proto2 groups (its parser keeps groups apart and compares neither).
fn declared(msgs: &[MessageDescriptor]) -> Vec<MessageDescriptor> {
    msgs.iter().filter(|m| !m.is_map_entry() && !is_group_type(m)).cloned().collect()
}

fn is_group_type(m: &MessageDescriptor) -> bool {
    let Some(parent) = m.parent_message() else { return false };
    parent.fields().any(|f| f.is_group() && matches!(f.kind(), Kind::Message(t) if t.full_name() == m.full_name()))
}

/// A message's fields by number (groups left out), and the oneof each oneof member is in.
fn fields(m: &MessageDescriptor) -> (BTreeMap<u32, FieldDescriptor>, HashMap<u32, String>) {
    let mut by_tag = BTreeMap::new();
    let mut oneof_of = HashMap::new();
    for f in m.fields().filter(|f| !f.is_group()) {
        if let Some(o) = f.containing_oneof().filter(|o| !o.is_synthetic()) {
            oneof_of.insert(f.number(), o.name().to_owned());
        }
        by_tag.insert(f.number(), f);
    }
    (by_tag, oneof_of)
}

/// The oneofs written in a message (not those proto3 makes for `optional` fields), in order,
/// each with its fields' numbers.
fn real_oneofs(m: &MessageDescriptor) -> impl Iterator<Item = (String, Vec<u32>)> + '_ {
    m.oneofs()
        .filter(|o| !o.is_synthetic())
        .map(|o| (o.name().to_owned(), o.fields().filter(|f| !f.is_group()).map(|f| f.number()).collect()))
}

/// The label written before a field: proto3 fields without one, and oneof members, have none.
fn label(f: &FieldDescriptor) -> Option<Label> {
    written_label(
        f.field_descriptor_proto(),
        f.parent_file().syntax(),
        f.containing_oneof().is_some_and(|o| !o.is_synthetic()),
    )
}

fn written_label(p: &FieldDescriptorProto, syntax: Syntax, in_oneof: bool) -> Option<Label> {
    match p.label() {
        field_descriptor_proto::Label::Repeated => Some(Label::Repeated),
        field_descriptor_proto::Label::Required => Some(Label::Required),
        field_descriptor_proto::Label::Optional if in_oneof => None,
        field_descriptor_proto::Label::Optional => match syntax {
            Syntax::Proto2 => Some(Label::Optional),
            Syntax::Proto3 => p.proto3_optional.unwrap_or(false).then_some(Label::Optional),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Normalized text

struct Printer {
    out: String,
    syntax: Syntax,
}

impl Printer {
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn file(&mut self, f: &FileDescriptor) {
        let p = f.file_descriptor_proto();
        let syntax = match f.syntax() {
            Syntax::Proto2 => "proto2",
            Syntax::Proto3 => "proto3",
        };
        self.line(0, &format!("syntax = \"{syntax}\";"));
        if !f.package_name().is_empty() {
            self.line(0, &format!("package {};", f.package_name()));
        }
        let mut imports: Vec<String> = p
            .dependency
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let i = i32::try_from(i).unwrap_or(i32::MAX);
                let kind = if p.public_dependency.contains(&i) {
                    "public "
                } else if p.weak_dependency.contains(&i) {
                    "weak "
                } else {
                    ""
                };
                format!("import {kind}{};", quote(d.as_bytes()))
            })
            .collect();
        imports.sort();
        if !imports.is_empty() {
            self.out.push('\n');
            for i in &imports {
                self.line(0, i);
            }
        }
        let file_options = options(&f.options());
        if !file_options.is_empty() {
            self.out.push('\n');
            for o in &file_options {
                self.line(0, &format!("option {o};"));
            }
        }
        for m in f.messages() {
            self.out.push('\n');
            self.message(&m, 0);
        }
        for e in f.enums() {
            self.out.push('\n');
            self.enumeration(&e, 0);
        }
        for s in f.services() {
            self.out.push('\n');
            self.line(0, &format!("service {} {{", s.name()));
            for o in options(&s.options()) {
                self.line(1, &format!("option {o};"));
            }
            for m in s.methods() {
                let stream = |yes: bool| if yes { "stream " } else { "" };
                let head = format!(
                    "rpc {} ({}.{}) returns ({}.{})",
                    m.name(),
                    stream(m.is_client_streaming()),
                    m.input().full_name(),
                    stream(m.is_server_streaming()),
                    m.output().full_name()
                );
                let opts = options(&m.options());
                if opts.is_empty() {
                    self.line(1, &format!("{head};"));
                } else {
                    self.line(1, &format!("{head} {{"));
                    for o in opts {
                        self.line(2, &format!("option {o};"));
                    }
                    self.line(1, "}");
                }
            }
            self.line(0, "}");
        }
        let extensions: Vec<_> = f.extensions().collect();
        self.extensions(&extensions, 0);
    }

    fn message(&mut self, m: &MessageDescriptor, depth: usize) {
        self.line(depth, &format!("message {} {{", m.name()));
        self.message_body(m, depth + 1);
        self.line(depth, "}");
    }

    fn message_body(&mut self, m: &MessageDescriptor, depth: usize) {
        let p = m.descriptor_proto();
        for o in options(&m.options()) {
            self.line(depth, &format!("option {o};"));
        }
        let ranges: Vec<String> = p
            .reserved_range
            .iter()
            .map(|r| range(r.start.unwrap_or(0), r.end.unwrap_or(0).saturating_sub(1)))
            .collect();
        if !ranges.is_empty() {
            self.line(depth, &format!("reserved {};", ranges.join(", ")));
        }
        if !p.reserved_name.is_empty() {
            let mut names: Vec<String> = p.reserved_name.iter().map(|n| quote(n.as_bytes())).collect();
            names.sort();
            self.line(depth, &format!("reserved {};", names.join(", ")));
        }
        // Fields by number; a oneof where its first field would be. Map and group fields, whose
        // types are nested messages, come later, among the nested messages (below).
        let mut items: Vec<(u32, Item)> = Vec::new();
        let mut oneofs: BTreeMap<String, u32> = BTreeMap::new();
        for f in m.fields() {
            match f.containing_oneof().filter(|o| !o.is_synthetic()) {
                Some(o) => {
                    let first = oneofs.entry(o.name().to_owned()).or_insert(f.number());
                    *first = (*first).min(f.number());
                }
                None if declares_type(&f) => {}
                None => items.push((f.number(), Item::Field(f))),
            }
        }
        items.extend(oneofs.into_iter().map(|(name, first)| (first, Item::Oneof(name))));
        items.sort_by_key(|(n, _)| *n);
        for (_, item) in items {
            match item {
                Item::Field(f) => self.field(&f, false, depth),
                Item::Oneof(name) => {
                    let Some(o) = m.oneofs().find(|o| o.name() == name) else { continue };
                    self.line(depth, &format!("oneof {name} {{"));
                    for opt in options(&o.options()) {
                        self.line(depth + 1, &format!("option {opt};"));
                    }
                    let mut members: Vec<_> = o.fields().collect();
                    members.sort_by_key(FieldDescriptor::number);
                    for f in members {
                        self.field(&f, true, depth + 1);
                    }
                    self.line(depth, "}");
                }
            }
        }
        // Nested messages in the order the file declares them, a map or group field where its
        // type sits among them: message indexes (Confluent's framing) count positions in this
        // order, map entries included, so a re-print must compile to the same order.
        for n in m.child_messages() {
            if n.is_map_entry() || is_group_type(&n) {
                let declaring = m.fields().find(|f| {
                    declares_type(f)
                        && f.containing_oneof().is_none_or(|o| o.is_synthetic())
                        && matches!(f.kind(), Kind::Message(k) if k.full_name() == n.full_name())
                });
                if let Some(f) = declaring {
                    self.field(&f, false, depth);
                }
            } else {
                self.message(&n, depth);
            }
        }
        for e in m.child_enums() {
            self.enumeration(&e, depth);
        }
        let ranges: Vec<String> = p
            .extension_range
            .iter()
            .map(|r| range(r.start.unwrap_or(0), r.end.unwrap_or(0).saturating_sub(1)))
            .collect();
        if !ranges.is_empty() {
            self.line(depth, &format!("extensions {};", ranges.join(", ")));
        }
        let extensions: Vec<_> = m.child_extensions().collect();
        self.extensions(&extensions, depth);
    }

    fn field(&mut self, f: &FieldDescriptor, in_oneof: bool, depth: usize) {
        let p = f.field_descriptor_proto();
        // A map field is repeated underneath, but written without a label.
        let label = if f.is_map() { "" } else { written_label(p, self.syntax, in_oneof).map_or("", label_text) };
        let mut opts = Vec::new();
        if let Some(d) = &p.default_value {
            let d = match f.kind() {
                // A string's default is kept as its value, a bytes default already escaped.
                Kind::String => quote(d.as_bytes()),
                Kind::Bytes => format!("\"{d}\""),
                _ => d.clone(),
            };
            opts.push(format!("default = {d}"));
        }
        if p.json_name.as_deref().is_some_and(|j| j != default_json_name(f.name())) {
            opts.push(format!("json_name = {}", quote(f.json_name().as_bytes())));
        }
        opts.extend(options(&f.options()));
        let opts = if opts.is_empty() { String::new() } else { format!(" [{}]", opts.join(", ")) };
        if f.is_group() {
            let Kind::Message(g) = f.kind() else { return };
            self.line(depth, &format!("{label}group {} = {}{opts} {{", g.name(), f.number()));
            self.message_body(&g, depth + 1);
            self.line(depth, "}");
            return;
        }
        let ty = match f.kind() {
            Kind::Message(m) if f.is_map() => {
                format!(
                    "map<{}, {}>",
                    type_name(&m.map_entry_key_field().kind()),
                    type_name(&m.map_entry_value_field().kind())
                )
            }
            k => type_name(&k),
        };
        self.line(depth, &format!("{label}{ty} {} = {}{opts};", f.name(), f.number()));
    }

    fn enumeration(&mut self, e: &EnumDescriptor, depth: usize) {
        self.line(depth, &format!("enum {} {{", e.name()));
        for o in options(&e.options()) {
            self.line(depth + 1, &format!("option {o};"));
        }
        let p = e.enum_descriptor_proto();
        let ranges: Vec<String> =
            p.reserved_range.iter().map(|r| range_signed(r.start.unwrap_or(0), r.end.unwrap_or(0))).collect();
        if !ranges.is_empty() {
            self.line(depth + 1, &format!("reserved {};", ranges.join(", ")));
        }
        if !p.reserved_name.is_empty() {
            let mut names: Vec<String> = p.reserved_name.iter().map(|n| quote(n.as_bytes())).collect();
            names.sort();
            self.line(depth + 1, &format!("reserved {};", names.join(", ")));
        }
        // The first value stays first (it is the default, and proto3 wants it to be 0); the
        // others by number, aliases in their declaration order.
        let mut values: Vec<_> = p.value.iter().filter_map(|v| e.get_value_by_name(v.name())).collect();
        if let Some(rest) = values.get_mut(1..) {
            rest.sort_by_key(|v| v.number());
        }
        for v in values {
            let opts = options(&v.options());
            let opts = if opts.is_empty() { String::new() } else { format!(" [{}]", opts.join(", ")) };
            self.line(depth + 1, &format!("{} = {}{opts};", v.name(), v.number()));
        }
        self.line(depth, "}");
    }

    /// `extend` blocks, one per extended message, in order of its name, fields by number.
    fn extensions(&mut self, exts: &[prost_reflect::ExtensionDescriptor], depth: usize) {
        let mut by_target: BTreeMap<String, Vec<&prost_reflect::ExtensionDescriptor>> = BTreeMap::new();
        for x in exts {
            by_target.entry(x.containing_message().full_name().to_owned()).or_default().push(x);
        }
        for (target, mut xs) in by_target {
            if depth == 0 {
                self.out.push('\n');
            }
            xs.sort_by_key(|x| x.number());
            self.line(depth, &format!("extend .{target} {{"));
            for x in xs {
                let p = x.field_descriptor_proto();
                let label = written_label(p, self.syntax, false).map_or("", label_text);
                let opts = options(&x.options());
                let opts = if opts.is_empty() { String::new() } else { format!(" [{}]", opts.join(", ")) };
                self.line(depth + 1, &format!("{label}{} {} = {}{opts};", type_name(&x.kind()), x.name(), x.number()));
            }
            self.line(depth, "}");
        }
    }
}

enum Item {
    Field(FieldDescriptor),
    Oneof(String),
}

fn label_text(l: Label) -> &'static str {
    match l {
        Label::Optional => "optional ",
        Label::Required => "required ",
        Label::Repeated => "repeated ",
    }
}

/// The largest field number, which `max` stands for in ranges.
const MAX_FIELD_NUMBER: i32 = 536_870_911;

fn range(start: i32, last: i32) -> String {
    match last {
        l if l == start => start.to_string(),
        MAX_FIELD_NUMBER => format!("{start} to max"),
        l => format!("{start} to {l}"),
    }
}

fn range_signed(start: i32, last: i32) -> String {
    if start == last { start.to_string() } else { format!("{start} to {last}") }
}

fn type_name(k: &Kind) -> String {
    match k {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => format!(".{}", m.full_name()),
        Kind::Enum(e) => format!(".{}", e.full_name()),
    }
}

/// The JSON name protoc gives a field when none is written: underscores dropped, the letter
/// after each one in upper case.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The options set in an options message, each as `name = value`, sorted: plain options by
/// name, custom ones as `(.full.name)` (fully qualified, so a package of the same name cannot
/// capture it). A repeated option gives one entry per value.
fn options(m: &DynamicMessage) -> Vec<String> {
    let mut out = Vec::new();
    for (f, v) in m.fields() {
        push_option(&mut out, f.name(), &f.kind(), v);
    }
    for (x, v) in m.extensions() {
        push_option(&mut out, &format!("(.{})", x.full_name()), &x.kind(), v);
    }
    out.sort();
    out
}

fn push_option(out: &mut Vec<String>, name: &str, kind: &Kind, v: &Value) {
    match v {
        Value::List(items) => {
            for item in items {
                out.push(format!("{name} = {}", value_text(kind, item)));
            }
        }
        v => out.push(format!("{name} = {}", value_text(kind, v))),
    }
}

fn value_text(kind: &Kind, v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(x) => float_text(f64::from(*x)),
        Value::F64(x) => float_text(*x),
        Value::String(s) => quote(s.as_bytes()),
        Value::Bytes(b) => quote(b),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => e.get_value(*n).map_or_else(|| n.to_string(), |v| v.name().to_owned()),
            _ => n.to_string(),
        },
        Value::Message(m) => format!("{{ {} }}", m.to_text_format()),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(|i| value_text(kind, i)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(entries) => {
            let mut entries: Vec<String> =
                entries.iter().map(|(k, v)| format!("{k:?}: {}", value_text(kind, v))).collect();
            entries.sort();
            format!("{{ {} }}", entries.join(" "))
        }
    }
}

fn float_text(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x:?}")
    }
}

/// A string literal in protobuf syntax: printable ASCII as is, the rest escaped by byte.
fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            b => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ProtobufSchema {
        parse(text, &[]).expect("valid schema")
    }

    #[test]
    fn labels_as_written() {
        let s = p(
            "syntax = \"proto3\"; message M { int32 a = 1; optional int32 b = 2; repeated int32 c = 3; oneof o { int32 d = 4; } }",
        );
        let m = s.file.messages().next().expect("M");
        let labels: Vec<_> = m.fields().map(|f| label(&f)).collect();
        assert_eq!(labels, [None, Some(Label::Optional), Some(Label::Repeated), None]);
        let s = p("syntax = \"proto2\"; message M { optional int32 a = 1; required int32 b = 2; }");
        let m = s.file.messages().next().expect("M");
        let labels: Vec<_> = m.fields().map(|f| label(&f)).collect();
        assert_eq!(labels, [Some(Label::Optional), Some(Label::Required)]);
    }

    #[test]
    fn json_names() {
        assert_eq!(default_json_name("foo_bar_baz"), "fooBarBaz");
        assert_eq!(default_json_name("already"), "already");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(b"a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\001\"");
    }

    #[test]
    fn brackets_bounded() {
        assert!(bounded(&"{".repeat(MAX_BRACKET_DEPTH)).is_ok());
        assert!(bounded(&"{".repeat(MAX_BRACKET_DEPTH + 1)).is_err());
        assert!(bounded(&"{}".repeat(10_000)).is_ok());
    }
}
