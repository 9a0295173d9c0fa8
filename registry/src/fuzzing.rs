//! Entry points for the fuzz targets (fuzz/fuzz_targets/registry.rs): arbitrary bytes as
//! `_schemas` records, HTTP requests and schema texts. Nothing may panic, and every write the
//! registry asks for must apply.

use crate::api::{Outcome, Request};
use crate::store::Registry;
use crate::{avro, json_schema, protobuf};

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// Reads `data` as a sequence of operations separated by `0x00`. Each starts with a byte that
/// picks the kind: a `_schemas` record (key, `0x01`, value; no `0x01` is a tombstone), an HTTP
/// request (method, path, `0x01`, query, `0x01`, body), a schema text to parse as Avro,
/// Protobuf or JSON Schema and check against the last one parsed of its type, or the bytes of a
/// `FileDescriptorProto`, sent base64-encoded as a Protobuf schema, or a payload checked
/// against the last schema parsed of each type (payload-mode validation).
pub fn registry(data: &[u8]) {
    let mut registry = Registry::new("fuzz");
    let mut last: [Option<Parsed>; 3] = [None, None, None];
    for op in data.split(|b| *b == 0) {
        let Some((&kind, rest)) = op.split_first() else { continue };
        match kind % 7 {
            0 => {
                let mut parts = rest.splitn(2, |b| *b == 1);
                let key = parts.next().unwrap_or_default();
                let _ = registry.apply(key, parts.next());
            }
            1 => {
                let Some((&m, rest)) = rest.split_first() else { continue };
                let mut parts = rest.splitn(3, |b| *b == 1);
                let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                let body = parts.next().unwrap_or_default();
                let req = Request { method: METHODS[usize::from(m % 4)], path: &path, query: &query, body };
                if let Outcome::Write { records, .. } = registry.handle(&req) {
                    for r in records {
                        registry.apply(&r.key, r.value.as_deref()).expect("a record the registry wrote applies");
                    }
                }
            }
            6 => {
                for p in last.iter().flatten() {
                    p.check_payload(rest);
                }
            }
            5 => {
                use base64::Engine as _;
                let text = base64::engine::general_purpose::STANDARD.encode(rest);
                if let Ok(p) = protobuf::parse(&text, &[]) {
                    let p = Parsed::Protobuf(p);
                    p.exercise(last[1].as_ref());
                    last[1] = Some(p);
                }
            }
            k => {
                let Ok(text) = std::str::from_utf8(rest) else { continue };
                let slot = usize::from(k - 2);
                let parsed = match slot {
                    0 => avro::parse(text, &[]).ok().map(Parsed::Avro),
                    1 => protobuf::parse(text, &[]).ok().map(Parsed::Protobuf),
                    _ => json_schema::parse(text, &[]).ok().map(Parsed::Json),
                };
                if let Some(p) = parsed {
                    p.exercise(last[slot].as_ref());
                    last[slot] = Some(p);
                }
            }
        }
    }
}

enum Parsed {
    Avro(avro::AvroSchema),
    Protobuf(protobuf::ProtobufSchema),
    Json(json_schema::JsonSchema),
}

impl Parsed {
    /// Decodes `payload` as a record written with this schema, checked and into typed cells
    /// (the schema's columns made too); any answer will do, a panic will not.
    fn check_payload(&self, payload: &[u8]) {
        let _ = match self {
            Parsed::Avro(a) => a.check_datum(payload),
            Parsed::Protobuf(p) => p.check_message(payload),
            Parsed::Json(j) => j.check_instance(payload),
        };
        match self {
            Parsed::Avro(a) => {
                let _ = a.decode_cells(&a.columns(), payload);
            }
            Parsed::Protobuf(p) => {
                if let Some(c) = p.columns(payload) {
                    let _ = p.decode_cells(&c, payload);
                }
            }
            Parsed::Json(j) => {
                let _ = j.decode_cells(&j.columns(), payload);
            }
        }
    }

    /// Canonical and normalized texts, and the checks both ways against `other` and itself.
    fn exercise(&self, other: Option<&Parsed>) {
        match (self, other) {
            (Parsed::Avro(a), b) => {
                let _ = (a.canonical(), a.normalized(), avro::check(a, a));
                if let Some(Parsed::Avro(b)) = b {
                    let _ = (avro::check(a, b), avro::check(b, a));
                }
            }
            (Parsed::Protobuf(a), b) => {
                let _ = (a.canonical(), a.normalized(), a.serialized(), protobuf::check(a, a));
                if let Some(Parsed::Protobuf(b)) = b {
                    let _ = (protobuf::check(a, b), protobuf::check(b, a));
                }
            }
            (Parsed::Json(a), b) => {
                let _ = (a.canonical(), a.normalized(), json_schema::check(a, a));
                if let Some(Parsed::Json(b)) = b {
                    let _ = (json_schema::check(a, b), json_schema::check(b, a));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_entry_takes_records_requests_and_schemas() {
        let avro = br#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
        let mut data = vec![2];
        data.extend_from_slice(avro);
        data.extend_from_slice(b"\x00\x01\x01/subjects/s/versions\x01\x01");
        data.extend_from_slice(br#"{"schema":"{\"type\":\"string\"}"}"#);
        data.extend_from_slice(b"\x00\x00not json\x01{}\x00\x04{\"type\":\"object\"}\x00\x03syntax = \"proto3\";");
        super::registry(&data);
    }

    /// `registry`, 2026-12-06: a descriptor whose `syntax` is neither proto2 nor proto3 made
    /// `prost-reflect` panic while it worded the error.
    #[test]
    fn registry_regression_unknown_syntax_in_a_descriptor() {
        let input: &[u8] = &[
            0x05, 0x0a, 0x07, 0x78, 0x2e, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x12, 0x01, 0x70, 0x1a, 0x1f, 0x67, 0x6f, 0x6f,
            0x67, 0x6c, 0x65, 0x2f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x62, 0x75, 0x66, 0x2f, 0x74, 0x69, 0x6d, 0x65, 0x73,
            0x74, 0x61, 0x6d, 0x70, 0x2e, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x22, 0x45, 0x0a, 0x01, 0x4d, 0x12, 0x09, 0x0a,
            0x01, 0x61, 0x18, 0x01, 0x20, 0x01, 0x28, 0x05, 0x12, 0x25, 0x0a, 0x01, 0x74, 0x18, 0x02, 0x20, 0x01, 0x28,
            0x0b, 0x32, 0x1a, 0x2e, 0x67, 0x6f, 0x6f, 0x67, 0x6c, 0x65, 0x2e, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x62, 0x75,
            0x66, 0x2e, 0x54, 0x69, 0x6d, 0x65, 0x73, 0x74, 0x61, 0x6d, 0x70, 0x1a, 0x0e, 0x0a, 0x01, 0x4e, 0x12, 0x09,
            0x0a, 0x01, 0x73, 0x18, 0x01, 0x20, 0x03, 0x28, 0x09, 0x62, 0x06, 0x70, 0x72, 0x6f, 0x6f, 0x6f, 0x33,
        ];
        super::registry(input);
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(&input[1..]);
        let err = crate::protobuf::parse(&text, &[]).unwrap_err();
        assert!(err.contains("unknown syntax 'prooo3'"), "{err}");
    }

    #[test]
    fn the_committed_descriptor_seed_compiles() {
        use base64::Engine as _;
        let seed = include_bytes!("../../fuzz/corpus/registry/seed-proto-descriptor");
        assert_eq!(seed[0], 5, "the descriptor kind");
        let text = base64::engine::general_purpose::STANDARD.encode(&seed[1..]);
        let schema = crate::protobuf::parse(&text, &[]).expect("the seed is a valid FileDescriptorProto");
        assert!(schema.canonical().contains("message M"), "{}", schema.canonical());
        super::registry(seed);
    }
}
