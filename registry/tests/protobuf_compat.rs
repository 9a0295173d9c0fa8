//! Protobuf compatibility after Confluent's rules (its `SchemaDiff` and the evolution rules in
//! Protobuf's "Updating a message type"), one row per change, checked in both directions:
//! BACKWARD is `check_detailed(new, old, true)` (the diff from old to new), FORWARD is
//! `check_detailed(old, new, false)` (the diff from new to old), FULL is both. Then parsing,
//! imports, texts and hostile input.

use kelp_registry::Referenced;
use kelp_registry::protobuf::{self, DifferenceType, ProtobufSchema};

/// The expected verdict of one direction.
#[derive(Debug, Clone, Copy)]
enum V {
    Ok,
    /// Incompatible, with the first error's type and path.
    Bad(&'static str, &'static str),
}
use V::{Bad, Ok};

struct Row {
    what: &'static str,
    old: String,
    new: String,
    backward: V,
    forward: V,
}

fn row(what: &'static str, old: String, new: String, backward: V, forward: V) -> Row {
    Row { what, old, new, backward, forward }
}

/// A proto3 file in package `t` with message `M { body }` and whatever else follows.
fn p3(body: &str, rest: &str) -> String {
    format!("syntax = \"proto3\";\npackage t;\nmessage M {{\n{body}\n}}\n{rest}")
}

fn p2(body: &str) -> String {
    format!("syntax = \"proto2\";\npackage t;\nmessage M {{\n{body}\n}}\n")
}

fn m(body: &str) -> String {
    p3(body, "")
}

const SKC: &str = "FIELD_SCALAR_KIND_CHANGED";
const FKC: &str = "FIELD_KIND_CHANGED";
const NTC: &str = "FIELD_NAMED_TYPE_CHANGED";
const NLC: &str = "FIELD_NUMERIC_LABEL_CHANGED";
const MR: &str = "MESSAGE_REMOVED";

fn rows() -> Vec<Row> {
    let two = "message A { int32 x = 1; }\nmessage B { int32 x = 1; }";
    let en = "enum E { E0 = 0; E1 = 1; }\nenum F { F0 = 0; }";
    vec![
        // Fields come and go freely: a reader skips unknown numbers, missing ones read as defaults.
        row("add a field", m("int32 a = 1;"), m("int32 a = 1; string b = 2;"), Ok, Ok),
        row("remove a field", m("int32 a = 1; string b = 2;"), m("int32 a = 1;"), Ok, Ok),
        row("rename a field: the number counts", m("int32 a = 1;"), m("int32 b = 1;"), Ok, Ok),
        row("renumber a field: one removed, one added", m("int32 a = 1;"), m("int32 a = 2;"), Ok, Ok),
        row("empty message gains fields", m(""), m("int32 a = 1; repeated string b = 2;"), Ok, Ok),
        // Scalars within one wire-encoding group.
        row("int32 to int64", m("int32 a = 1;"), m("int64 a = 1;"), Ok, Ok),
        row("int32 to uint64", m("int32 a = 1;"), m("uint64 a = 1;"), Ok, Ok),
        row("uint32 to bool", m("uint32 a = 1;"), m("bool a = 1;"), Ok, Ok),
        row("sint32 to sint64", m("sint32 a = 1;"), m("sint64 a = 1;"), Ok, Ok),
        row("fixed32 to sfixed32", m("fixed32 a = 1;"), m("sfixed32 a = 1;"), Ok, Ok),
        row("fixed64 to sfixed64", m("fixed64 a = 1;"), m("sfixed64 a = 1;"), Ok, Ok),
        row("string to bytes", m("string a = 1;"), m("bytes a = 1;"), Ok, Ok),
        row("repeated int32 to repeated int64", m("repeated int32 a = 1;"), m("repeated int64 a = 1;"), Ok, Ok),
        row("int32 to an enum", p3("int32 a = 1;", en), p3("E a = 1;", en), Ok, Ok),
        row("one enum to another", p3("E a = 1;", en), p3("F a = 1;", en), Ok, Ok),
        // Scalars across groups.
        row("int32 to sint32", m("int32 a = 1;"), m("sint32 a = 1;"), Bad(SKC, "#/M/1"), Bad(SKC, "#/M/1")),
        row("fixed32 to fixed64", m("fixed32 a = 1;"), m("fixed64 a = 1;"), Bad(SKC, "#/M/1"), Bad(SKC, "#/M/1")),
        row("float to double", m("float a = 1;"), m("double a = 1;"), Bad(SKC, "#/M/1"), Bad(SKC, "#/M/1")),
        row("int64 to double", m("int64 a = 1;"), m("double a = 1;"), Bad(SKC, "#/M/1"), Bad(SKC, "#/M/1")),
        row("string to int32", m("string a = 1;"), m("int32 a = 1;"), Bad(SKC, "#/M/1"), Bad(SKC, "#/M/1")),
        row("enum to string", p3("E a = 1;", en), p3("string a = 1;", en), Bad(SKC, "#/M/1"), Bad(SKC, "#/M/1")),
        // Kinds: scalar, message, map.
        row("int32 to a message", p3("int32 a = 1;", two), p3("A a = 1;", two), Bad(FKC, "#/M/1"), Bad(FKC, "#/M/1")),
        row("bytes to a message", p3("bytes a = 1;", two), p3("A a = 1;", two), Bad(FKC, "#/M/1"), Bad(FKC, "#/M/1")),
        row("one message type to another", p3("A a = 1;", two), p3("B a = 1;", two), Bad(NTC, "#/M/1"), Bad(NTC, "#/M/1")),
        row(
            "map to repeated message",
            p3("map<string, int32> a = 1;", two),
            p3("repeated A a = 1;", two),
            Bad(FKC, "#/M/1"),
            Bad(FKC, "#/M/1"),
        ),
        row("map value int32 to int64", m("map<string, int32> a = 1;"), m("map<string, int64> a = 1;"), Ok, Ok),
        row(
            "map value int32 to string",
            m("map<string, int32> a = 1;"),
            m("map<string, string> a = 1;"),
            Bad(SKC, "#/M/1"),
            Bad(SKC, "#/M/1"),
        ),
        row("add a map field", m("int32 a = 1;"), m("int32 a = 1; map<string, string> b = 2;"), Ok, Ok),
        row(
            "nested type's field changes kind",
            m("message I { int32 x = 1; } I i = 1;"),
            m("message I { string x = 1; } I i = 1;"),
            Bad(SKC, "#/M/I/1"),
            Bad(SKC, "#/M/I/1"),
        ),
        // Labels, read as written (Confluent's parser keeps no label for a bare proto3 field).
        row("proto3 singular to repeated, no label before", m("int32 a = 1;"), m("repeated int32 a = 1;"), Ok, Ok),
        row(
            "proto3 optional to repeated number",
            m("optional int32 a = 1;"),
            m("repeated int32 a = 1;"),
            Bad(NLC, "#/M/1"),
            Bad(NLC, "#/M/1"),
        ),
        row("proto3 optional to repeated string", m("optional string a = 1;"), m("repeated string a = 1;"), Ok, Ok),
        row("proto2 optional to required number", p2("optional int32 a = 1;"), p2("required int32 a = 1;"), Bad(NLC, "#/M/1"), Bad(NLC, "#/M/1")),
        row("proto2 optional to required string", p2("optional string a = 1;"), p2("required string a = 1;"), Ok, Ok),
        // Required fields (proto2).
        row(
            "add a required field",
            p2("optional int32 a = 1;"),
            p2("optional int32 a = 1; required int32 b = 2;"),
            Bad("REQUIRED_FIELD_ADDED", "#/M/2"),
            Bad("REQUIRED_FIELD_REMOVED", "#/M/2"),
        ),
        row(
            "remove a required field",
            p2("optional int32 a = 1; required int32 b = 2;"),
            p2("optional int32 a = 1;"),
            Bad("REQUIRED_FIELD_REMOVED", "#/M/2"),
            Bad("REQUIRED_FIELD_ADDED", "#/M/2"),
        ),
        row("proto2 add an optional field", p2("optional int32 a = 1;"), p2("optional int32 a = 1; optional string b = 2;"), Ok, Ok),
        row("proto2 to proto3, same fields", p2("optional int32 a = 1;"), m("int32 a = 1;"), Ok, Ok),
        // Messages, matched by name at each level.
        row("remove a message", p3("int32 a = 1;", "message N { int32 x = 1; }"), m("int32 a = 1;"), Bad(MR, "#/N"), Ok),
        row("add a message", m("int32 a = 1;"), p3("int32 a = 1;", "message N { int32 x = 1; }"), Ok, Bad(MR, "#/N")),
        row(
            "rename a message: removed and added",
            p3("int32 a = 1;", "message N { int32 x = 1; }"),
            p3("int32 a = 1;", "message O { int32 x = 1; }"),
            Bad(MR, "#/N"),
            Bad(MR, "#/O"),
        ),
        row("reorder messages", p3("int32 a = 1;", "message N { }"), "syntax = \"proto3\";\npackage t;\nmessage N { }\nmessage M { int32 a = 1; }\n".into(), Ok, Ok),
        row("remove a nested message", m("message I { } int32 a = 1;"), m("int32 a = 1;"), Bad(MR, "#/M/I"), Ok),
        row(
            "nest a top-level message",
            p3("", "message N { }"),
            m("message N { }"),
            Bad(MR, "#/N"),
            Bad(MR, "#/M/N"),
        ),
        row(
            "package changed",
            m("int32 a = 1;"),
            "syntax = \"proto3\";\npackage u;\nmessage M { int32 a = 1; }\n".into(),
            Bad("PACKAGE_CHANGED", "#/"),
            Bad("PACKAGE_CHANGED", "#/"),
        ),
        row("service changes do not count", p3("", "service S { rpc A (M) returns (M); }"), m(""), Ok, Ok),
        // Enums: every change is allowed.
        row("enum constant added", p3("E a = 1;", "enum E { E0 = 0; }"), p3("E a = 1;", "enum E { E0 = 0; E1 = 1; }"), Ok, Ok),
        row("enum constant removed", p3("E a = 1;", "enum E { E0 = 0; E1 = 1; }"), p3("E a = 1;", "enum E { E0 = 0; }"), Ok, Ok),
        row("enum constant renamed", p3("E a = 1;", "enum E { E0 = 0; }"), p3("E a = 1;", "enum E { ZERO = 0; }"), Ok, Ok),
        row("unused enum removed", p3("", "enum E { E0 = 0; }"), m(""), Ok, Ok),
        // Oneofs.
        row("add a oneof of new fields", m("int32 a = 1;"), m("int32 a = 1; oneof o { string b = 2; int32 c = 3; }"), Ok, Ok),
        row("remove a whole oneof", m("int32 a = 1; oneof o { string b = 2; int32 c = 3; }"), m("int32 a = 1;"), Ok, Ok),
        row(
            "remove one field of a oneof",
            m("oneof o { string b = 2; int32 c = 3; }"),
            m("oneof o { string b = 2; }"),
            Bad("ONEOF_FIELD_REMOVED", "#/M/o/3"),
            Ok,
        ),
        row("rename a oneof", m("oneof o { int32 a = 1; }"), m("oneof p { int32 a = 1; }"), Ok, Ok),
        row("move one field into a new oneof", m("int32 a = 1;"), m("oneof o { int32 a = 1; }"), Ok, Ok),
        row(
            "move two fields into a new oneof",
            m("int32 a = 1; int32 b = 2;"),
            m("oneof o { int32 a = 1; int32 b = 2; }"),
            Bad("MULTIPLE_FIELDS_MOVED_TO_ONEOF", "#/M/o"),
            Ok,
        ),
        row(
            "move a field into an existing oneof",
            m("int32 a = 1; oneof o { string b = 2; }"),
            m("oneof o { int32 a = 1; string b = 2; }"),
            Bad("FIELD_MOVED_TO_EXISTING_ONEOF", "#/M/o"),
            Ok,
        ),
        row(
            "move a field out of its oneof",
            m("oneof o { int32 a = 1; int32 b = 2; }"),
            m("int32 a = 1; oneof o { int32 b = 2; }"),
            Ok,
            Bad("FIELD_MOVED_TO_EXISTING_ONEOF", "#/M/o"),
        ),
        row(
            "merge two oneofs",
            m("oneof o { int32 a = 1; } oneof p { int32 b = 2; }"),
            m("oneof o { int32 a = 1; int32 b = 2; }"),
            Bad("FIELD_MOVED_TO_EXISTING_ONEOF", "#/M/o"),
            Ok,
        ),
        row(
            "type change inside a oneof",
            m("oneof o { int32 a = 1; }"),
            m("oneof o { string a = 1; }"),
            Bad(SKC, "#/M/o/1"),
            Bad(SKC, "#/M/o/1"),
        ),
        // Well-known types: compared by name.
        row(
            "wrapper Int32Value to Int64Value",
            "syntax = \"proto3\";\nimport \"google/protobuf/wrappers.proto\";\nmessage M { google.protobuf.Int32Value a = 1; }\n".into(),
            "syntax = \"proto3\";\nimport \"google/protobuf/wrappers.proto\";\nmessage M { google.protobuf.Int64Value a = 1; }\n".into(),
            Bad(NTC, "#/M/1"),
            Bad(NTC, "#/M/1"),
        ),
        row(
            "timestamp kept, field added",
            "syntax = \"proto3\";\nimport \"google/protobuf/timestamp.proto\";\nmessage M { google.protobuf.Timestamp t = 1; }\n".into(),
            "syntax = \"proto3\";\nimport \"google/protobuf/timestamp.proto\";\nmessage M { google.protobuf.Timestamp t = 1; int32 b = 2; }\n".into(),
            Ok,
            Ok,
        ),
    ]
}

fn parse(text: &str) -> ProtobufSchema {
    protobuf::parse(text, &[]).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn verdict(reader: &ProtobufSchema, writer: &ProtobufSchema, reader_is_new: bool) -> Option<(&'static str, String)> {
    protobuf::check_detailed(reader, writer, reader_is_new).into_iter().next().map(|i| (i.error_type, i.path))
}

fn matches(v: V, got: &Option<(&'static str, String)>) -> bool {
    match (v, got) {
        (Ok, None) => true,
        (Bad(t, p), Some((gt, gp))) => t == *gt && p == gp,
        _ => false,
    }
}

#[test]
fn table() {
    let rows = rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let mut failures = Vec::new();
    for r in &rows {
        let (old, new) = (parse(&r.old), parse(&r.new));
        let backward = verdict(&new, &old, true);
        let forward = verdict(&old, &new, false);
        if !matches(r.backward, &backward) {
            failures.push(format!("{}: BACKWARD want {:?}, got {backward:?}", r.what, r.backward));
        }
        if !matches(r.forward, &forward) {
            failures.push(format!("{}: FORWARD want {:?}, got {forward:?}", r.what, r.forward));
        }
        // FULL is both directions.
        let full_ok = backward.is_none() && forward.is_none();
        assert_eq!(full_ok, matches!((r.backward, r.forward), (Ok, Ok)), "{}: FULL", r.what);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn messages_in_confluent_words() {
    let old = parse(&p3("int32 a = 1;", "message N { }"));
    let new = parse(&m("int32 a = 1;"));
    assert_eq!(
        protobuf::check(&new, &old),
        [
            "{errorType:\"MESSAGE_REMOVED\", description:\"The new schema is missing a MESSAGE type at path '#/N' in the old schema\"}"
        ]
    );
    // FORWARD of the reverse change: the old schema reads, and is named first.
    let forward: Vec<String> = protobuf::check_detailed(&new, &old, false).iter().map(protobuf::message).collect();
    assert_eq!(
        forward,
        [
            "{errorType:\"MESSAGE_REMOVED\", description:\"The old schema is missing a MESSAGE type at path '#/N' in the new schema\"}"
        ]
    );
    let a = parse(&m("int32 a = 1;"));
    let b = parse(&m("string a = 1;"));
    assert_eq!(
        protobuf::check(&b, &a),
        [
            "{errorType:\"FIELD_SCALAR_KIND_CHANGED\", description:\"The kind of a SCALAR field at path '#/M/1' in the new schema does not match its kind in the old schema\"}"
        ]
    );
}

#[test]
fn compatible_differences_are_listed_by_diff() {
    let old = parse(&p3("int32 a = 1;", "enum E { E0 = 0; }"));
    let new = parse(&p3("int32 b = 1; string c = 2;", "enum E { E0 = 0; E1 = 1; }"));
    let kinds: Vec<(DifferenceType, String)> =
        protobuf::diff(&old, &new).into_iter().map(|d| (d.kind, d.path)).collect();
    assert_eq!(
        kinds,
        [
            (DifferenceType::FieldNameChanged, "#/M/1".to_owned()),
            (DifferenceType::FieldAdded, "#/M/2".to_owned()),
            (DifferenceType::EnumConstAdded, "#/E/1".to_owned()),
        ]
    );
    assert!(kinds.iter().all(|(k, _)| k.is_compatible()));
    assert!(!DifferenceType::MessageRemoved.is_compatible());
}

const REF_V1: &str = "syntax = \"proto3\";\npackage other;\nmessage Ref { int32 x = 1; }\n";
const REF_V2_OK: &str = "syntax = \"proto3\";\npackage other;\nmessage Ref { int32 x = 1; string y = 2; }\n";
const REF_V2_BAD: &str = "syntax = \"proto3\";\npackage other;\nmessage Ref { string x = 1; }\n";
const USES_REF: &str = "syntax = \"proto3\";\npackage t;\nimport \"other.proto\";\nmessage M { other.Ref r = 1; }\n";

fn with_ref(text: &str, reference: &str) -> ProtobufSchema {
    protobuf::parse(text, &[Referenced { name: "other.proto", schema: reference }]).expect("valid")
}

#[test]
fn imports_come_from_references() {
    let old = with_ref(USES_REF, REF_V1);
    assert!(protobuf::check(&with_ref(USES_REF, REF_V2_OK), &old).is_empty());
    // A type from a reference is compared where it is used; its own path is its name.
    let bad = protobuf::check_detailed(&with_ref(USES_REF, REF_V2_BAD), &old, true);
    let got: Vec<(&str, &str)> = bad.iter().map(|i| (i.error_type, i.path.as_str())).collect();
    assert_eq!(got, [(SKC, "#/Ref/1"), (NTC, "#/M/1")]);
    // Without the reference the import fails, naming the file.
    let err = protobuf::parse(USES_REF, &[]).expect_err("missing import");
    assert!(err.contains("other.proto"), "{err}");
    // References resolve transitively, in dependency order.
    let mid = "syntax = \"proto3\";\npackage mid;\nimport \"other.proto\";\nmessage Mid { other.Ref r = 1; }\n";
    let top = "syntax = \"proto3\";\nimport \"mid.proto\";\nmessage Top { mid.Mid m = 1; }\n";
    let refs = [Referenced { name: "other.proto", schema: REF_V1 }, Referenced { name: "mid.proto", schema: mid }];
    assert!(protobuf::parse(top, &refs).is_ok());
}

#[test]
fn well_known_and_confluent_files() {
    let text = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/any.proto";
import "confluent/meta.proto";
import "confluent/type/decimal.proto";
option (confluent.file_meta).doc = "the shop";
message Order {
  option (confluent.message_meta) = { doc: "an order" tags: ["PII"] params: { key: "k" value: "v" } };
  google.protobuf.Timestamp at = 1;
  confluent.type.Decimal total = 2 [(confluent.field_meta).params = { key: "precision" value: "8" }];
  google.protobuf.Any extra = 3;
  Kind kind = 4;
}
enum Kind {
  option (confluent.enum_meta).doc = "kinds";
  KIND_UNSPECIFIED = 0 [(confluent.enum_value_meta).doc = "none"];
}
"#;
    let s = protobuf::parse(text, &[]).expect("valid");
    assert_eq!(s.package(), "shop");
    let n = s.normalized();
    assert!(n.contains("option (.confluent.file_meta) = { doc:\"the shop\" };"), "{n}");
    assert!(n.contains("(.confluent.field_meta)"), "{n}");
    assert!(n.contains(".confluent.type.Decimal total = 2"), "{n}");
    // The normalized text compiles again, to the same text.
    assert_eq!(protobuf::parse(&n, &[]).expect("normalized compiles").normalized(), n);
    // Any other confluent file is unknown.
    let err = protobuf::parse("syntax = \"proto3\";\nimport \"confluent/nope.proto\";\n", &[]).expect_err("unknown");
    assert!(err.contains("confluent/nope.proto"), "{err}");
}

#[test]
fn syntax_errors_are_errors() {
    for bad in [
        "syntax = \"proto3\"; message { }",
        "syntax = \"proto3\"; message A { int32 a = 1; int32 b = 1; }",
        "syntax = \"proto3\"; message A { Missing m = 1; }",
        "syntax = \"proto4\";",
        "message A { int32 a = 1 }",
        "syntax = \"proto3\"; message A { required int32 a = 1; }",
        "{\"type\": \"record\"}",
    ] {
        let err = protobuf::parse(bad, &[]).expect_err(bad);
        assert!(!err.is_empty());
    }
    let err = protobuf::parse("syntax = \"proto3\";\nmessage A {\n  Missing m = 1;\n}\n", &[]).expect_err("undefined");
    assert_eq!(err, "schema.proto:3:3: name 'Missing' is not defined");
    // An error in a reference names the reference.
    let err =
        protobuf::parse(USES_REF, &[Referenced { name: "other.proto", schema: "message {" }]).expect_err("bad ref");
    assert!(err.starts_with("other.proto:"), "{err}");
}

#[test]
fn normalized_ignores_layout_comments_and_order() {
    let a = r#"syntax = "proto3";
package t;
import "google/protobuf/timestamp.proto";
import "other.proto";
option java_package = "x";
option go_package = "y";
message M {
  string b = 2;
  int32 a = 1;   // first
  other.Ref r = 3;
  google.protobuf.Timestamp t = 4;
  map<string, int32> m = 5;
  enum E { E0 = 0; E2 = 2; E1 = 1; }
}
"#;
    let b = "// header\nsyntax='proto3'; package t;\nimport 'other.proto'; import 'google/protobuf/timestamp.proto';\n\
             option go_package='y'; option java_package='x';\n\
             /* block */ message M { enum E { E0 = 0; E1 = 1; E2 = 2; } int32 a=1; string b=2; .other.Ref r=3; \
             .google.protobuf.Timestamp t=4; map<string,int32> m=5; }";
    let (a, b) = (with_ref(a, REF_V1), with_ref(b, REF_V1));
    assert_ne!(a.canonical(), b.canonical(), "canonical is the text as sent");
    assert_eq!(a.normalized(), b.normalized());
    let c = with_ref(&a.canonical().replace("string b = 2", "string bb = 2"), REF_V1);
    assert_ne!(a.normalized(), c.normalized());
}

#[test]
fn hostile_input_does_not_panic() {
    // Messages nested deeper than protoc allows.
    let deep = format!("syntax = \"proto3\";\n{}{}", "message A {".repeat(5000), "}".repeat(5000));
    assert!(protobuf::parse(&deep, &[]).is_err());
    // A recursive option value nested very deep.
    let option = format!(
        "syntax = \"proto3\";\nimport \"google/protobuf/descriptor.proto\";\nmessage R {{ R r = 1; }}\n\
         extend google.protobuf.FileOptions {{ R deep = 5000; }}\noption (deep) = {}{};\n",
        "{ r ".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(protobuf::parse(&option, &[]).is_err());
    let angle = option.replace('{', "<").replace('}', ">");
    assert!(protobuf::parse(&angle, &[]).is_err());
    // Too long.
    let long = format!("syntax = \"proto3\";\n//{}\n", "x".repeat(protobuf::MAX_TEXT_LEN));
    assert!(protobuf::parse(&long, &[]).is_err());
    // Garbage of all kinds.
    for junk in [
        "",
        "\0\0\0",
        "syntax",
        "message",
        "}}}}",
        "\"",
        "/*",
        "syntax = \"proto3\"; option (",
        "enum E { A = 99999999999999999999; }",
    ] {
        let _ = protobuf::parse(junk, &[]);
    }
    // Many fields referring to the same referenced types: compared once per pair.
    let mut chain = String::from("syntax = \"proto3\";\npackage other;\nmessage L0 { int32 x = 1; }\n");
    for i in 1..30 {
        let fields: String = (1..=40).map(|f| format!(" L{} f{f} = {f};", i - 1)).collect();
        chain.push_str(&format!("message L{i} {{{fields} }}\n"));
    }
    let changed = chain.replace("message L0 { int32 x = 1; }", "message L0 { string x = 1; }");
    let main = "syntax = \"proto3\";\nimport \"other.proto\";\nmessage M { other.L29 top = 1; }\n";
    let old = with_ref(main, &chain);
    let new = with_ref(main, &changed);
    let out = protobuf::check(&new, &old);
    assert!(!out.is_empty() && out.len() <= protobuf::MAX_DIFFERENCES);
    // A long chain of imported types: followed only so deep, without exhausting the stack.
    let mut chain = String::from("syntax = \"proto3\";\npackage other;\nmessage C0 { int32 x = 1; }\n");
    for i in 1..5000 {
        chain.push_str(&format!("message C{i} {{ C{} next = 1; }}\n", i - 1));
    }
    let main = "syntax = \"proto3\";\nimport \"other.proto\";\nmessage M { other.C4999 top = 1; }\n";
    let changed = chain.replace("message C0 { int32 x = 1; }", "message C0 { string x = 1; }");
    assert!(protobuf::check(&with_ref(main, &changed), &with_ref(main, &chain)).is_empty(), "too deep to see");
    // Many messages at one level.
    let wide: String = (0..20_000).map(|i| format!("message W{i} {{ int32 x = 1; }}\n")).collect();
    let wide = format!("syntax = \"proto3\";\n{wide}");
    let (a, b) = (parse(&wide), parse(&wide.replace("W0 {", "W0x {")));
    assert_eq!(protobuf::check(&b, &a).len(), 1);
}

#[test]
fn same_schema_is_compatible_with_itself() {
    for r in rows() {
        for text in [&r.old, &r.new] {
            let s = parse(text);
            assert!(protobuf::diff(&s, &s).is_empty(), "{}", r.what);
            // And normalizing changes nothing a reader would notice.
            let n = parse(&s.normalized());
            assert!(protobuf::check(&n, &s).is_empty() && protobuf::check(&s, &n).is_empty(), "{}", r.what);
            assert_eq!(n.normalized(), s.normalized(), "{}", r.what);
        }
    }
}

/// The registry itself with PROTOBUF schemas: registration, references, compatibility answers.
mod through_the_registry {
    use kelp_registry::{Body, Outcome, Registry, Request};
    use serde_json::{Value, json};

    fn call(registry: &mut Registry, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let reply = match registry.handle(&Request { method, path, query: "", body: body.as_bytes() }) {
            Outcome::Reply(reply) => reply,
            Outcome::Write { records, reply } => {
                for r in records {
                    registry.apply(&r.key, r.value.as_deref()).expect("own records apply");
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

    fn proto(schema: &str) -> Value {
        json!({"schemaType": "PROTOBUF", "schema": schema})
    }

    #[test]
    fn register_check_and_refer() {
        let mut r = Registry::new("c");
        let v1 = "syntax = \"proto3\";\npackage t;\nmessage M { int32 a = 1; }\n";
        let ok = "syntax = \"proto3\";\npackage t;\nmessage M { int32 a = 1; string b = 2; }\n";
        let bad = "syntax = \"proto3\";\npackage t;\nmessage M { string a = 1; }\n";
        assert_eq!(call(&mut r, "POST", "/subjects/m-value/versions", &proto(v1)), (200, json!({"id": 1})));
        // The same text again is the same schema.
        assert_eq!(call(&mut r, "POST", "/subjects/m-value/versions", &proto(v1)), (200, json!({"id": 1})));
        let (status, body) = call(&mut r, "POST", "/compatibility/subjects/m-value/versions/latest", &proto(bad));
        assert_eq!((status, &body["is_compatible"]), (200, &json!(false)));
        assert_eq!(call(&mut r, "POST", "/subjects/m-value/versions", &proto(bad)).0, 409);
        assert_eq!(call(&mut r, "POST", "/subjects/m-value/versions", &proto(ok)), (200, json!({"id": 2})));
        // A schema importing another subject's schema.
        let dep = "syntax = \"proto3\";\npackage dep;\nmessage D { int64 x = 1; }\n";
        assert_eq!(call(&mut r, "POST", "/subjects/dep/versions", &proto(dep)), (200, json!({"id": 3})));
        let user = "syntax = \"proto3\";\nimport \"dep.proto\";\nmessage U { dep.D d = 1; }\n";
        let mut body = proto(user);
        body["references"] = json!([{"name": "dep.proto", "subject": "dep", "version": 1}]);
        assert_eq!(call(&mut r, "POST", "/subjects/u-value/versions", &body), (200, json!({"id": 4})));
        // Without the reference the import is unknown: 42201.
        let (status, body) = call(&mut r, "POST", "/subjects/u2-value/versions", &proto(user));
        assert_eq!((status, &body["error_code"]), (422, &json!(42201)));
    }
}

/// Texts mutated at random (a seeded xorshift, so every run is the same): no panic, and what
/// compiles normalizes to a text that compiles to the same normalized text and reads alike.
#[test]
fn mutated_texts() {
    let seeds = [
        "syntax = \"proto3\";\npackage a.b;\nimport \"google/protobuf/timestamp.proto\";\nimport \"confluent/meta.proto\";\nimport \"google/protobuf/descriptor.proto\";\noption (confluent.file_meta) = { doc: \"x\" };\nmessage M { option (confluent.message_meta).doc = \"d\"; int32 a = 1; optional string s = 2 [json_name = \"q\"]; map<string, M> m = 3; oneof o { bytes b = 4; E e = 5; } google.protobuf.Timestamp t = 6; reserved 10 to 20, 30 to max; reserved \"z\"; message I { repeated sint64 x = 1 [packed = true]; } }\nenum E { option allow_alias = true; A = 0; B = 1; C = 1 [deprecated = true]; reserved 5 to 9; }\nservice S { rpc X (M) returns (stream M) { option deprecated = true; } }\nextend google.protobuf.FieldOptions { repeated string tag = 50000; }\n",
        "syntax = \"proto2\";\nmessage G { optional group Grp = 1 { optional int32 x = 2; } required string s = 3 [default = \"a\\\"b\\n\"]; optional bytes by = 4 [default = \"\\001\\xff\"]; optional double d = 5 [default = inf]; optional float f = 6 [default = -nan]; extensions 100 to 200; oneof o { int32 p = 7; } }\nextend G { optional int32 ext = 150; }\n",
    ];
    let mut state: u64 = 0x1234_5678;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let tokens = [
        "{", "}", ";", "=", "1", "message", "int32", "repeated", "optional", "oneof", "map<", ">", "\"", "(", ")", "[",
        "]", "x", ".", "0", "-", "max", "to", "option", "group", "enum", "extend", "stream", "rpc",
    ];
    let mut ok = 0;
    for i in 0..4000 {
        let seed = seeds[i % seeds.len()];
        let mut text = seed.to_string();
        for _ in 0..(1 + next() % 2) {
            if text.is_empty() {
                break;
            }
            let pos = (next() as usize) % text.len();
            let pos = (0..=pos).rev().find(|p| text.is_char_boundary(*p)).unwrap();
            match next() % 3 {
                0 => {
                    let end = (pos + 1 + (next() as usize) % 8).min(text.len());
                    let end = (end..=text.len()).find(|p| text.is_char_boundary(*p)).unwrap();
                    text.replace_range(pos..end, "");
                }
                _ => {
                    let t = tokens[(next() as usize) % tokens.len()];
                    text.insert_str(pos, t);
                }
            }
        }
        if let Result::Ok(s) = protobuf::parse(&text, &[]) {
            ok += 1;
            let n = s.normalized();
            match protobuf::parse(&n, &[]) {
                Result::Ok(again) => {
                    assert_eq!(again.normalized(), n, "not stable for\n{text}");
                    assert!(protobuf::diff(&s, &again).iter().all(|d| d.kind.is_compatible()), "{text}\n{n}");
                }
                Err(e) => panic!("normalized does not parse: {e}\n--- text\n{text}\n--- normalized\n{n}"),
            }
            let other = protobuf::parse(seeds[(i + 1) % 2], &[]).unwrap();
            let _ = protobuf::check(&s, &other);
            let _ = protobuf::check(&other, &s);
        }
    }
    assert!(ok > 50, "{ok} mutants compiled");
}

#[test]
fn normalized_names_are_fully_qualified() {
    // In package `x.confluent`, `confluent.file_meta` would mean `x.confluent.file_meta`.
    let text = "syntax = \"proto3\";\npackage x.confluent;\nimport \"confluent/meta.proto\";\n\
                option (.confluent.file_meta).doc = \"a\";\n\
                message M { int32 a = 1 [(.confluent.field_meta) = { doc: \"f\" }]; M self = 2; }\n";
    let n = parse(text).normalized();
    assert!(n.contains("option (.confluent.file_meta) = { doc:\"a\" };"), "{n}");
    assert!(n.contains(".x.confluent.M self = 2;"), "{n}");
    assert_eq!(parse(&n).normalized(), n);
}
