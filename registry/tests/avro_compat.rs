//! Avro compatibility as Confluent's documentation states it
//! (schema-evolution.html: "Compatibility types"), one row per change, checked in both
//! directions: BACKWARD is `check(new, old)` (the new schema reads old data), FORWARD is
//! `check(old, new)`, FULL is both. Then parsing, texts and references.

use kelp_registry::Referenced;
use kelp_registry::avro::{self, AvroSchema};

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

/// A record `t.R` with the given fields.
fn rec(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#)
}

/// A record `t.R` with one field `a` of type `ty` (JSON).
fn one(ty: &str) -> String {
    rec(&format!(r#"{{"name":"a","type":{ty}}}"#))
}

fn en(symbols: &str, default: Option<&str>) -> String {
    let default = default.map_or(String::new(), |d| format!(r#","default":"{d}""#));
    one(&format!(r#"{{"type":"enum","name":"E","symbols":[{symbols}]{default}}}"#))
}

fn row(what: &'static str, old: String, new: String, backward: V, forward: V) -> Row {
    Row { what, old, new, backward, forward }
}

const RFMD: &str = "READER_FIELD_MISSING_DEFAULT_VALUE";
const TM: &str = "TYPE_MISMATCH";
const MUB: &str = "MISSING_UNION_BRANCH";
const MES: &str = "MISSING_ENUM_SYMBOLS";
const NM: &str = "NAME_MISMATCH";
const FSM: &str = "FIXED_SIZE_MISMATCH";

fn rows() -> Vec<Row> {
    let a_int = r#"{"name":"a","type":"int"}"#;
    let b_def = r#"{"name":"b","type":"string","default":"x"}"#;
    let b_req = r#"{"name":"b","type":"string"}"#;
    let node = |extra: &str| {
        format!(
            r#"{{"type":"record","name":"Node","fields":[{{"name":"v","type":"int"}},{{"name":"next","type":["null","Node"],"default":null}}{extra}]}}"#
        )
    };
    let nested = |extra: &str| {
        rec(&format!(
            r#"{{"name":"n","type":{{"type":"record","name":"N","fields":[{{"name":"x","type":"int"}}{extra}]}}}}"#
        ))
    };
    vec![
        row("identical", rec(a_int), rec(a_int), Ok, Ok),
        row("add field with default", rec(a_int), rec(&format!("{a_int},{b_def}")), Ok, Ok),
        row("add field without default", rec(a_int), rec(&format!("{a_int},{b_req}")), Bad(RFMD, "/fields/1"), Ok),
        row("remove field with default", rec(&format!("{a_int},{b_def}")), rec(a_int), Ok, Ok),
        row("remove field without default", rec(&format!("{a_int},{b_req}")), rec(a_int), Ok, Bad(RFMD, "/fields/1")),
        row("add a default to a field", rec(b_req), rec(b_def), Ok, Ok),
        row("int to long", one(r#""int""#), one(r#""long""#), Ok, Bad(TM, "/fields/0/type")),
        row("int to float", one(r#""int""#), one(r#""float""#), Ok, Bad(TM, "/fields/0/type")),
        row("int to double", one(r#""int""#), one(r#""double""#), Ok, Bad(TM, "/fields/0/type")),
        row("long to float", one(r#""long""#), one(r#""float""#), Ok, Bad(TM, "/fields/0/type")),
        row("long to double", one(r#""long""#), one(r#""double""#), Ok, Bad(TM, "/fields/0/type")),
        row("float to double", one(r#""float""#), one(r#""double""#), Ok, Bad(TM, "/fields/0/type")),
        row("long to int", one(r#""long""#), one(r#""int""#), Bad(TM, "/fields/0/type"), Ok),
        row("double to float", one(r#""double""#), one(r#""float""#), Bad(TM, "/fields/0/type"), Ok),
        row("string to bytes", one(r#""string""#), one(r#""bytes""#), Ok, Ok),
        row("bytes to string", one(r#""bytes""#), one(r#""string""#), Ok, Ok),
        row("int to string", one(r#""int""#), one(r#""string""#), Bad(TM, "/fields/0/type"), Bad(TM, "/fields/0/type")),
        row(
            "boolean to int",
            one(r#""boolean""#),
            one(r#""int""#),
            Bad(TM, "/fields/0/type"),
            Bad(TM, "/fields/0/type"),
        ),
        row(
            "enum symbol added",
            en(r#""A","B""#, None),
            en(r#""A","B","C""#, None),
            Ok,
            Bad(MES, "/fields/0/type/symbols"),
        ),
        row(
            "enum symbol removed",
            en(r#""A","B","C""#, None),
            en(r#""A","B""#, None),
            Bad(MES, "/fields/0/type/symbols"),
            Ok,
        ),
        row(
            "enum symbol added, both with a default symbol",
            en(r#""A","B""#, Some("A")),
            en(r#""A","B","C""#, Some("A")),
            Ok,
            Ok,
        ),
        row(
            "enum symbol removed, new has a default symbol",
            en(r#""A","B","C""#, None),
            en(r#""A","B""#, Some("A")),
            Ok,
            Ok,
        ),
        row(
            "enum renamed",
            one(r#"{"type":"enum","name":"E","symbols":["A"]}"#),
            one(r#"{"type":"enum","name":"F","symbols":["A"]}"#),
            Bad(NM, "/fields/0/type/name"),
            Bad(NM, "/fields/0/type/name"),
        ),
        row(
            "enum renamed with the old name as alias",
            one(r#"{"type":"enum","name":"E","symbols":["A"]}"#),
            one(r#"{"type":"enum","name":"F","aliases":["E"],"symbols":["A"]}"#),
            Ok,
            Bad(NM, "/fields/0/type/name"),
        ),
        row("field made nullable", one(r#""int""#), one(r#"["null","int"]"#), Ok, Bad(TM, "/fields/0/type/0")),
        row("nullable field made required", one(r#"["null","int"]"#), one(r#""int""#), Bad(TM, "/fields/0/type/0"), Ok),
        row(
            "union widened",
            one(r#"["null","string"]"#),
            one(r#"["null","string","int"]"#),
            Ok,
            Bad(MUB, "/fields/0/type/2"),
        ),
        row(
            "union narrowed",
            one(r#"["null","string","int"]"#),
            one(r#"["null","string"]"#),
            Bad(MUB, "/fields/0/type/2"),
            Ok,
        ),
        row("union reordered", one(r#"["int","null"]"#), one(r#"["null","int"]"#), Ok, Ok),
        row(
            "union branch promoted",
            one(r#"["null","int"]"#),
            one(r#"["null","long"]"#),
            Ok,
            Bad(MUB, "/fields/0/type/1"),
        ),
        row(
            "fixed size changed",
            one(r#"{"type":"fixed","name":"F","size":4}"#),
            one(r#"{"type":"fixed","name":"F","size":8}"#),
            Bad(FSM, "/fields/0/type/size"),
            Bad(FSM, "/fields/0/type/size"),
        ),
        row(
            "fixed renamed",
            one(r#"{"type":"fixed","name":"F","size":4}"#),
            one(r#"{"type":"fixed","name":"G","size":4}"#),
            Bad(NM, "/fields/0/type/name"),
            Bad(NM, "/fields/0/type/name"),
        ),
        row(
            "record renamed",
            rec(a_int),
            format!(r#"{{"type":"record","name":"S","namespace":"t","fields":[{a_int}]}}"#),
            Bad(NM, "/name"),
            Bad(NM, "/name"),
        ),
        row(
            "record renamed with the old name as alias",
            rec(a_int),
            format!(r#"{{"type":"record","name":"S","namespace":"t","aliases":["R"],"fields":[{a_int}]}}"#),
            Ok,
            Bad(NM, "/name"),
        ),
        row(
            "record moved to another namespace (names compare unqualified)",
            rec(a_int),
            format!(r#"{{"type":"record","name":"R","namespace":"u","fields":[{a_int}]}}"#),
            Ok,
            Ok,
        ),
        row(
            "field renamed",
            rec(a_int),
            rec(r#"{"name":"b","type":"int"}"#),
            Bad(RFMD, "/fields/0"),
            Bad(RFMD, "/fields/0"),
        ),
        row(
            "field renamed with the old name as alias",
            rec(a_int),
            rec(r#"{"name":"b","type":"int","aliases":["a"]}"#),
            Ok,
            Bad(RFMD, "/fields/0"),
        ),
        row(
            "array items promoted",
            one(r#"{"type":"array","items":"int"}"#),
            one(r#"{"type":"array","items":"long"}"#),
            Ok,
            Bad(TM, "/fields/0/type/items"),
        ),
        row(
            "map values changed",
            one(r#"{"type":"map","values":"int"}"#),
            one(r#"{"type":"map","values":"boolean"}"#),
            Bad(TM, "/fields/0/type/values"),
            Bad(TM, "/fields/0/type/values"),
        ),
        row(
            "array to map",
            one(r#"{"type":"array","items":"int"}"#),
            one(r#"{"type":"map","values":"int"}"#),
            Bad(TM, "/fields/0/type"),
            Bad(TM, "/fields/0/type"),
        ),
        row(
            "nested record gains a field without default",
            nested(""),
            nested(r#",{"name":"y","type":"int"}"#),
            Bad(RFMD, "/fields/0/type/fields/1"),
            Ok,
        ),
        row(
            "nested record gains a field with default",
            nested(""),
            nested(r#",{"name":"y","type":"int","default":1}"#),
            Ok,
            Ok,
        ),
        row("top-level string to bytes", r#""string""#.into(), r#""bytes""#.into(), Ok, Ok),
        row("top-level int to long", r#""int""#.into(), r#""long""#.into(), Ok, Bad(TM, "/")),
        row("top-level record to string", rec(a_int), r#""string""#.into(), Bad(TM, "/"), Bad(TM, "/")),
        row(
            "decimal precision and scale changed (logical types are not compared)",
            one(r#"{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}"#),
            one(r#"{"type":"bytes","logicalType":"decimal","precision":6,"scale":3}"#),
            Ok,
            Ok,
        ),
        row(
            "timestamp-millis to plain long",
            one(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
            one(r#""long""#),
            Ok,
            Ok,
        ),
        row(
            "doc changed",
            rec(r#"{"name":"a","type":"int","doc":"one"}"#),
            rec(r#"{"name":"a","type":"int","doc":"two"}"#),
            Ok,
            Ok,
        ),
        row(
            "recursive record gains a field with default",
            node(""),
            node(r#",{"name":"w","type":"int","default":0}"#),
            Ok,
            Ok,
        ),
        row(
            "recursive record gains a field without default",
            node(""),
            node(r#",{"name":"w","type":"int"}"#),
            Bad(RFMD, "/fields/2"),
            Ok,
        ),
        row("null to nullable string", one(r#""null""#), one(r#"["null","string"]"#), Ok, Bad(TM, "/fields/0/type/1")),
        row(
            "single-branch union gains null",
            one(r#"["string"]"#),
            one(r#"["null","string"]"#),
            Ok,
            Bad(MUB, "/fields/0/type/0"),
        ),
        row(
            "fixed to bytes",
            one(r#"{"type":"fixed","name":"F","size":4}"#),
            one(r#""bytes""#),
            Bad(TM, "/fields/0/type"),
            Bad(TM, "/fields/0/type"),
        ),
    ]
}

fn parse(text: &str) -> AvroSchema {
    avro::parse(text, &[]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn verdict(reader: &AvroSchema, writer: &AvroSchema) -> Option<(&'static str, String)> {
    avro::check(reader, writer).into_iter().next().map(|i| (i.error_type, i.path))
}

fn assert_verdict(what: &str, direction: &str, got: Option<(&'static str, String)>, want: V) {
    match (got, want) {
        (None, Ok) => {}
        (Some((ty, path)), Bad(want_ty, want_path)) => {
            assert_eq!((ty, path.as_str()), (want_ty, want_path), "{what}: {direction}")
        }
        (got, want) => panic!("{what}: {direction}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn confluent_evolution_table() {
    let rows = rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    for r in &rows {
        let (old, new) = (parse(&r.old), parse(&r.new));
        let backward = verdict(&new, &old);
        let forward = verdict(&old, &new);
        let full = backward.is_none() && forward.is_none();
        assert_verdict(r.what, "BACKWARD", backward, r.backward);
        assert_verdict(r.what, "FORWARD", forward, r.forward);
        assert_eq!(full, matches!((r.backward, r.forward), (Ok, Ok)), "{}: FULL", r.what);
    }
}

#[test]
fn every_table_schema_has_a_stable_canonical_and_normalized_text() {
    for r in rows() {
        for text in [&r.old, &r.new] {
            let s = parse(text);
            let canonical = s.canonical();
            assert_eq!(parse(&canonical).canonical(), canonical, "{}", r.what);
            let normalized = s.normalized();
            assert_eq!(parse(&normalized).normalized(), normalized, "{}", r.what);
            assert!(!canonical.contains(char::is_whitespace), "{canonical}");
        }
    }
}

#[test]
fn whitespace_and_key_order_do_not_change_the_texts() {
    let a = parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#);
    let b = parse(
        r#"{ "fields" : [ { "type" : "int" , "name" : "a" } ] ,
            "name" : "R" , "type" : "record" }"#,
    );
    assert_eq!(a.canonical(), b.canonical());
    assert_eq!(a.normalized(), b.normalized());
}

#[test]
fn descriptions_name_the_field() {
    let old = parse(&rec(r#"{"name":"a","type":"int"}"#));
    let new = parse(&rec(r#"{"name":"a","type":"int"},{"name":"f","type":"int"}"#));
    let got = avro::check(&new, &old);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].description,
        "The field 'f' at path '/fields/1' in the new schema has no default value and is missing in the old schema"
    );
    let old = parse(&one(r#"["null","string"]"#));
    let new = parse(&one(r#""string""#));
    let d = avro::check_detailed(&new, &old, true);
    assert_eq!(
        d[0].message(),
        "{errorType:'TYPE_MISMATCH', description:'The type (path '/fields/0/type/0') of a field in \
         the new schema does not match with the old schema', additionalInfo:'reader type: STRING \
         not compatible with writer type: NULL'}"
    );
}

#[test]
fn every_broken_field_is_reported() {
    let old = parse(&rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#));
    let new = parse(&rec(r#"{"name":"a","type":"string"},{"name":"b","type":"int"},{"name":"c","type":"int"}"#));
    let got: Vec<_> = avro::check(&new, &old).into_iter().map(|i| (i.error_type, i.path)).collect();
    assert_eq!(
        got,
        vec![
            ("TYPE_MISMATCH", "/fields/0/type".to_owned()),
            ("TYPE_MISMATCH", "/fields/1/type".to_owned()),
            ("READER_FIELD_MISSING_DEFAULT_VALUE", "/fields/2".to_owned()),
        ]
    );
}

#[test]
fn mutually_recursive_schemas_check_without_hanging() {
    let make = |extra: &str| {
        format!(
            r#"{{"type":"record","name":"A","fields":[
                {{"name":"b","type":["null",{{"type":"record","name":"B","fields":[
                    {{"name":"a","type":["null","A"],"default":null}}{extra}]}}],"default":null}},
                {{"name":"self","type":{{"type":"array","items":"A"}}}}]}}"#
        )
    };
    let old = parse(&make(""));
    let new = parse(&make(r#",{"name":"n","type":"long"}"#));
    assert!(avro::check(&old, &old).is_empty());
    assert!(avro::check(&old, &new).is_empty());
    let got = avro::check(&new, &old);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].error_type, "MISSING_UNION_BRANCH");
    assert_eq!(got[0].path, "/fields/0/type/1");
}

const ADDRESS: &str = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[
    {"name":"street","type":"string"},
    {"name":"country","type":{"type":"enum","name":"Country","symbols":["FR","NL"]}}]}"#;

#[test]
fn references_resolve_and_stay_by_name() {
    let refs = [Referenced { name: "com.acme.Address", schema: ADDRESS }];
    let main = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
        {"name":"home","type":"Address"},
        {"name":"work","type":["null","com.acme.Address"],"default":null}]}"#;
    let s = avro::parse(main, &refs).expect("parses");
    assert_eq!(
        s.canonical(),
        r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"home","type":"Address"},{"name":"work","type":["null","Address"],"default":null}]}"#
    );
    assert_eq!(
        s.normalized(),
        r#"{"name":"com.acme.Customer","type":"record","fields":[{"name":"home","type":"com.acme.Address","order":"ASCENDING"},{"name":"work","type":["null","com.acme.Address"],"order":"ASCENDING","default":null}]}"#
    );
    // The canonical text parses again with the same references.
    let again = avro::parse(&s.canonical(), &refs).expect("reparses");
    assert_eq!(again.canonical(), s.canonical());
    // Without its reference the schema is invalid.
    assert!(avro::parse(main, &[]).is_err());
}

#[test]
fn a_type_nested_in_a_reference_is_written_out_where_first_used() {
    let refs = [Referenced { name: "com.acme.Address", schema: ADDRESS }];
    let main = r#"{"type":"record","name":"Order","namespace":"com.acme","fields":[
        {"name":"to","type":"Address"},{"name":"origin","type":"Country"}]}"#;
    let s = avro::parse(main, &refs).expect("parses");
    assert_eq!(
        s.canonical(),
        r#"{"type":"record","name":"Order","namespace":"com.acme","fields":[{"name":"to","type":"Address"},{"name":"origin","type":{"type":"enum","name":"Country","symbols":["FR","NL"]}}]}"#
    );
}

#[test]
fn a_changed_reference_is_checked_through() {
    let main = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[
        {"name":"home","type":"Address"}]}"#;
    let v1 = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[
        {"name":"street","type":"string"}]}"#;
    let v2 = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[
        {"name":"street","type":"string"},{"name":"zip","type":"string"}]}"#;
    let at = |schema| avro::parse(main, &[Referenced { name: "com.acme.Address", schema }]).expect("parses");
    let (old, new) = (at(v1), at(v2));
    let got = avro::check(&new, &old);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].error_type, "READER_FIELD_MISSING_DEFAULT_VALUE");
    assert_eq!(got[0].path, "/fields/0/type/fields/1");
    assert!(avro::check(&old, &new).is_empty());
}

#[test]
fn references_chain_in_dependency_order() {
    let country = r#"{"type":"enum","name":"Country","namespace":"geo","symbols":["FR"]}"#;
    let city = r#"{"type":"record","name":"City","namespace":"geo","fields":[
        {"name":"country","type":"Country"}]}"#;
    let refs = [Referenced { name: "geo.Country", schema: country }, Referenced { name: "geo.City", schema: city }];
    let s = avro::parse(r#"{"type":"array","items":"geo.City"}"#, &refs).expect("parses");
    assert_eq!(s.canonical(), r#"{"type":"array","items":"geo.City"}"#);
    assert_eq!(s.normalized(), r#"{"type":"array","items":"geo.City"}"#);
}

#[test]
fn invalid_schemas_are_errors() {
    let bad = [
        ("not JSON", "{"),
        ("empty", ""),
        ("unknown type", r#""strin""#),
        ("unknown named type", &one(r#""Missing""#)),
        ("default of the wrong type", &rec(r#"{"name":"a","type":"int","default":"x"}"#)),
        ("null default for a non-null union first", &rec(r#"{"name":"a","type":"int","default":null}"#)),
        ("record without name", r#"{"type":"record","fields":[]}"#),
        ("fixed without size", r#"{"type":"fixed","name":"F"}"#),
        ("enum without symbols", r#"{"type":"enum","name":"E"}"#),
        ("array without items", r#"{"type":"array"}"#),
        ("a number", "42"),
        (
            "duplicate type definition",
            &rec(
                r#"{"name":"a","type":{"type":"fixed","name":"F","size":1}},{"name":"b","type":{"type":"fixed","name":"F","size":2}}"#,
            ),
        ),
        ("bad field order", &rec(r#"{"name":"a","type":"int","order":"sideways"}"#)),
    ];
    for (what, text) in bad {
        assert!(avro::parse(text, &[]).is_err(), "{what}: {text}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [65, 127, 129, 1_000, 200_000] {
        let arrays = format!("{}\"int\"{}", "[".repeat(depth), "]".repeat(depth));
        assert!(avro::parse(&arrays, &[]).is_err(), "arrays {depth}");
        let items = format!("{}\"int\"{}", r#"{"type":"array","items":"#.repeat(depth), "}".repeat(depth));
        assert!(avro::parse(&items, &[]).is_err(), "items {depth}");
    }
    // Within the bound it parses.
    let items = format!("{}\"int\"{}", r#"{"type":"array","items":"#.repeat(20), "}".repeat(20));
    assert!(avro::parse(&items, &[]).is_ok());
    // A deep reference is refused too.
    let deep = format!(
        r#"{{"type":"record","name":"D","fields":[{{"name":"a","type":{}"int"{}}}]}}"#,
        r#"{"type":"array","items":"#.repeat(100),
        "}".repeat(100)
    );
    let refs = [Referenced { name: "D", schema: &deep }];
    assert!(avro::parse(r#""D""#, &refs).is_err());
}

#[test]
fn error_records_parse_as_java_does() {
    let s = parse(r#"{"type":"error","name":"Oops","fields":[{"name":"m","type":"string"}]}"#);
    assert_eq!(s.canonical(), r#"{"type":"error","name":"Oops","fields":[{"name":"m","type":"string"}]}"#);
    assert_eq!(
        s.normalized(),
        r#"{"name":"Oops","type":"record","fields":[{"name":"m","type":"string","order":"ASCENDING"}]}"#
    );
    let r = parse(r#"{"type":"record","name":"Oops","fields":[{"name":"m","type":"string"}]}"#);
    assert!(avro::check(&s, &r).is_empty());
}

#[test]
fn odd_input_is_an_error_or_a_schema_never_a_panic() {
    let odd = [
        r#"{"type":"record","name":"R","fields":{}}"#,
        r#"{"type":"record","name":7,"fields":[]}"#,
        r#"{"type":"enum","name":"E","symbols":[1,2]}"#,
        r#"{"type":"enum","name":"E","symbols":["A","A"]}"#,
        r#"{"type":"enum","name":"E","symbols":["A"],"default":"B"}"#,
        r#"{"type":"fixed","name":"F","size":-1}"#,
        r#"{"type":"fixed","name":"F","size":1.5}"#,
        r#"{"type":"fixed","name":"F","size":18446744073709551615}"#,
        r#"{"type":"fixed","name":"F","size":99999999999999999999999}"#,
        r#"{"type":{"type":"string"}}"#,
        r#"{"type":["int"]}"#,
        r#"{"type":null}"#,
        r#"[]"#,
        r#"["int","int"]"#,
        r#"{"type":"map","values":"R"}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"R"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"1bad","fields":[]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"bytes","logicalType":"decimal","precision":-1}}]}"#,
        "\"\u{0}\"",
        "null",
        "true",
    ];
    for text in odd {
        if let std::result::Result::Ok(s) = avro::parse(text, &[]) {
            let _ = (s.canonical(), s.normalized(), avro::check(&s, &s));
        }
    }
    let refs = [Referenced { name: "x", schema: "\"int\"" }];
    assert!(avro::parse("\"int\"", &refs).is_err(), "a reference must be a named type");
    let refs = [Referenced { name: "y", schema: "{" }];
    assert!(avro::parse("\"int\"", &refs).is_err());
    let refs = [Referenced { name: "z", schema: r#"{"type":"string","name":"1bad"}"# }];
    assert!(avro::parse("\"int\"", &refs).is_err());
}

#[test]
fn differences_from_shared_types_stay_bounded() {
    // Twenty levels, each record holding its child type in ten fields: the leaf's one
    // difference would appear 10^19 times if every use reported it.
    let build = |leaf: &str| {
        let mut s = format!(r#"{{"type":"record","name":"L0","fields":[{{"name":"x","type":"{leaf}"}}]}}"#);
        for level in 1..20 {
            let mut fields = vec![format!(r#"{{"name":"f0","type":{s}}}"#)];
            fields.extend((1..10).map(|i| format!(r#"{{"name":"f{i}","type":"L{}"}}"#, level - 1)));
            s = format!(r#"{{"type":"record","name":"L{level}","fields":[{}]}}"#, fields.join(","));
        }
        s
    };
    let (old, new) = (parse(&build("int")), parse(&build("string")));
    let got = avro::check(&new, &old);
    assert!(!got.is_empty() && got.len() <= avro::MAX_DIFFERENCES, "{}", got.len());
    assert!(avro::check(&old, &old).is_empty());
}

#[test]
fn defaults_are_checked_against_their_type() {
    let field = |ty: &str, default: &str| rec(&format!(r#"{{"name":"f","type":{ty},"default":{default}}}"#));
    let good = [
        (r#""int""#, "2147483647"),
        (r#""long""#, "-9223372036854775808"),
        (r#""double""#, "1"),
        (r#""float""#, r#""NaN""#),
        (r#""bytes""#, r#""\u00ff""#),
        (r#"["null","string"]"#, "null"),
        (r#"["string","null"]"#, "null"),
        (r#"{"type":"fixed","name":"F","size":2}"#, r#""\u00ff\u0000""#),
        (r#"{"type":"enum","name":"E","symbols":["A","B"]}"#, r#""B""#),
        (r#"{"type":"array","items":"int"}"#, "[1,2]"),
        (r#"{"type":"map","values":["null","R"]}"#, r#"{"k":null,"j":{"f":{}}}"#),
        (r#"["R","null"]"#, r#"{"f":null}"#),
    ];
    for (ty, default) in good {
        assert!(avro::parse(&field(ty, default), &[]).is_ok(), "{ty} {default}");
    }
    let bad = [
        (r#""int""#, "2147483648"),
        (r#""int""#, "1.0"),
        (r#""long""#, "9223372036854775808"),
        (r#""string""#, "1"),
        (r#""bytes""#, r#""é€""#),
        (r#""boolean""#, "0"),
        (r#"{"type":"fixed","name":"F","size":2}"#, r#""é""#),
        (r#"{"type":"enum","name":"E","symbols":["A"]}"#, r#""B""#),
        (r#"{"type":"array","items":"int"}"#, r#"[1,"2"]"#),
        (r#"{"type":"map","values":"int"}"#, "[]"),
        (r#"{"type":"record","name":"S","fields":[{"name":"x","type":"int"}]}"#, "{}"),
    ];
    for (ty, default) in bad {
        assert!(avro::parse(&field(ty, default), &[]).is_err(), "{ty} {default}");
    }
}

/// Inputs near the paths where `apache-avro` unwraps: each parses or fails, and what parses
/// prints and checks.
#[test]
fn more_odd_input_never_panics() {
    let odd = [
        r#"{"type":"string","name":"1bad"}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"string","name":"1bad"}}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"int","name":"1bad"}}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"enum","name":"E","symbols":["1"]}}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"1a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","aliases":["1x"]}]}"#,
        r#"{"type":"record","name":"R","namespace":"1x","fields":[]}"#,
        r#"{"type":"record","name":"R","aliases":[1],"fields":[]}"#,
        r#"{"type":"record","name":"R","aliases":"A","fields":[]}"#,
        r#"{"type":"fixed","name":"F","size":2,"default":"abc"}"#,
        r#"{"type":"enum","name":"E","symbols":["A"],"default":1}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"R","default":{}}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":["null","R"],"default":null,"order":1}]}"#,
        r#"{"type":"record","name":"R","doc":1,"fields":[{"name":"a","type":"int","doc":{}}]}"#,
        r#"{"type":"map","values":"int","logicalType":"x"}"#,
        r#"{"type":"int","logicalType":"date","precision":"x"}"#,
        r#"{"type":"bytes","logicalType":"decimal","precision":"x"}"#,
        r#"{"type":"bytes","logicalType":"decimal","precision":1e400}"#,
        r#"{"type":"fixed","name":"F","size":0,"logicalType":"decimal","precision":1}"#,
        r#"{"type":"fixed","name":"F","size":12,"logicalType":"duration"}"#,
        r#"{"type":"fixed","name":"F","size":99999999999999,"logicalType":"duration"}"#,
        r#"{"type":"string","logicalType":"uuid"}"#,
        r#"{"type":"fixed","name":"F","size":16,"logicalType":"uuid"}"#,
        r#"{"type":"long","logicalType":"timestamp-nanos"}"#,
        r#"{"type":"bytes","logicalType":"big-decimal"}"#,
    ];
    for text in odd {
        if let std::result::Result::Ok(s) = avro::parse(text, &[]) {
            let again = parse(&s.canonical());
            assert_eq!(again.canonical(), s.canonical());
            assert!(avro::check(&again, &s).is_empty(), "{text}");
        }
    }
}

/// Texts Confluent's registry printed for schemas (seen in its error messages), rebuilt from a
/// hand-written `.avsc` layout: keys in another order, whitespace, namespace first.
#[test]
fn canonical_matches_texts_confluent_printed() {
    let avsc = r#"{
      "namespace": "com.github.altfatterz.avro",
      "type": "record",
      "name": "NewCustomerCreatedEvent",
      "fields": [
        {"name": "first_name", "type": "string", "doc": "the first name of the customer"},
        {"name": "last_name", "type": "string", "doc": "the last name of the customer"},
        {"name": "accounts", "type": {"type": "array", "items": {
          "name": "Account", "type": "record", "fields": [
            {"name": "iban", "type": "string"},
            {"name": "type", "type": {"name": "AccountType", "type": "enum",
              "symbols": ["SAVING", "CHECKING", "JOINT"]}}
          ]}}},
        {"name": "settings", "type": {"type": "map", "values": "boolean"}},
        {"doc": "Customer Signup Timestamp", "name": "signup_timestamp",
         "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "phone_number", "type": ["null", "string"], "default": null,
         "doc": "the phone number of the customer"}
      ]
    }"#;
    let confluent = concat!(
        r#"{"type":"record","name":"NewCustomerCreatedEvent","namespace":"com.github.altfatterz.avro","#,
        r#""fields":[{"name":"first_name","type":"string","doc":"the first name of the customer"},"#,
        r#"{"name":"last_name","type":"string","doc":"the last name of the customer"},"#,
        r#"{"name":"accounts","type":{"type":"array","items":{"type":"record","name":"Account","#,
        r#""fields":[{"name":"iban","type":"string"},{"name":"type","type":{"type":"enum","#,
        r#""name":"AccountType","symbols":["SAVING","CHECKING","JOINT"]}}]}}},"#,
        r#"{"name":"settings","type":{"type":"map","values":"boolean"}},"#,
        r#"{"name":"signup_timestamp","type":{"type":"long","logicalType":"timestamp-millis"},"#,
        r#""doc":"Customer Signup Timestamp"},"#,
        r#"{"name":"phone_number","type":["null","string"],"doc":"the phone number of the customer","default":null}]}"#
    );
    assert_eq!(parse(avsc).canonical(), confluent);

    let with_props = r#"{"namespace":"io.msdousti.mykafka","name":"User","type":"record","fields":[
        {"avro.java.string":"String","type":{"avro.java.string":"String","type":"string"},"name":"name"},
        {"name":"age","type":"int"}]}"#;
    assert_eq!(
        parse(with_props).canonical(),
        concat!(
            r#"{"type":"record","name":"User","namespace":"io.msdousti.mykafka","fields":["#,
            r#"{"name":"name","type":{"type":"string","avro.java.string":"String"},"avro.java.string":"String"},"#,
            r#"{"name":"age","type":"int"}]}"#
        )
    );
}

/// Messages as Confluent's registry printed them for the same changes.
#[test]
fn union_messages_match_confluents() {
    let user = |number: &str| {
        format!(
            r#"{{"namespace":"example.avro","type":"record","name":"User","fields":[
            {{"name":"name","type":"string"}},
            {{"name":"favorite_number","type":{number}}},
            {{"name":"favorite_color","type":["string","null"]}}]}}"#
        )
    };
    let (old, new) = (parse(&user(r#"["long","null"]"#)), parse(&user(r#"["int","null"]"#)));
    let got: Vec<String> = avro::check_detailed(&new, &old, true).iter().map(|d| d.message()).collect();
    assert_eq!(
        got,
        vec![
            "{errorType:'MISSING_UNION_BRANCH', description:'The new schema is missing a type inside a union \
             field at path '/fields/1/type/0' in the old schema', additionalInfo:'reader union lacking writer \
             type: LONG'}"
        ]
    );

    let example = |name: &str| {
        rec(&format!(
            r#"{{"name":"Age","type":"int","default":0}},{{"name":"Name","type":{name}}},{{"name":"LastName","type":"string"}}"#
        ))
    };
    let (old, new) = (parse(&example(r#"["null","string"]"#)), parse(&example(r#"["null","string","int"]"#)));
    let got: Vec<String> = avro::check_detailed(&old, &new, false).iter().map(|d| d.message()).collect();
    assert_eq!(
        got,
        vec![
            "{errorType:'MISSING_UNION_BRANCH', description:'The old schema is missing a type inside a union \
             field at path '/fields/1/type/2' in the new schema', additionalInfo:'reader union lacking writer \
             type: INT'}"
        ]
    );
}
