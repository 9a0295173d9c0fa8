//! The one place that calls into the schema formats: it dispatches on the schema type (AVRO,
//! PROTOBUF, JSON). Nothing here knows about subjects, versions or HTTP.

use kelp_core::typed::{Cell, Column};

use crate::store::SchemaType;
use crate::{Referenced, avro, json_schema, protobuf};

/// A schema's typed columns and how its payloads are read into them ([`Parsed::shape`]).
#[derive(Debug, Clone)]
pub enum Shape {
    /// An Avro schema's.
    Avro(avro::AvroColumns),
    /// A Protobuf message's.
    Protobuf(protobuf::ProtoColumns),
    /// A JSON Schema's.
    Json(json_schema::JsonColumns),
}

impl Shape {
    /// The columns.
    pub fn columns(&self) -> &[Column] {
        match self {
            Self::Avro(c) => c.columns(),
            Self::Protobuf(c) => c.columns(),
            Self::Json(c) => c.columns(),
        }
    }
}

/// A schema parsed by its format, references resolved.
#[derive(Debug)]
pub struct Parsed {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Avro(avro::AvroSchema),
    Protobuf(protobuf::ProtobufSchema),
    Json(json_schema::JsonSchema),
}

impl Parsed {
    /// The format.
    pub fn schema_type(&self) -> SchemaType {
        match self.inner {
            Inner::Avro(_) => SchemaType::Avro,
            Inner::Protobuf(_) => SchemaType::Protobuf,
            Inner::Json(_) => SchemaType::Json,
        }
    }

    /// The text the registry stores and compares: the format's canonical form.
    pub fn canonical(&self) -> String {
        match &self.inner {
            Inner::Avro(s) => s.canonical(),
            Inner::Protobuf(s) => s.canonical(),
            Inner::Json(s) => s.canonical(),
        }
    }

    /// The schema in another form a client asks for with `?format=`: `serialized` gives a
    /// Protobuf schema as a base64-encoded `FileDescriptorProto`. `None` when the format does
    /// not apply to this type (the stored text is answered then, as Confluent does).
    pub fn formatted(&self, format: &str) -> Option<String> {
        match (&self.inner, format) {
            (Inner::Protobuf(s), "serialized") => Some(s.serialized()),
            _ => None,
        }
    }

    /// The record name subject-name strategies use for a payload written with this schema
    /// (for Protobuf, `payload` starts with the message indexes that pick the message); `None`
    /// when it has none (a JSON Schema without a `title`, indexes that point nowhere).
    pub fn record_name(&self, payload: &[u8]) -> Option<String> {
        match &self.inner {
            Inner::Avro(s) => Some(s.record_name()),
            Inner::Protobuf(s) => s.message_name(&protobuf::message_indexes(payload)?.0),
            Inner::Json(s) => s.record_name(),
        }
    }

    /// Checks that `payload` (what follows the schema id in Confluent's wire format) decodes
    /// with this schema: one Avro datum and nothing more, Protobuf message indexes and a message
    /// of the type they name, or a JSON document valid against the JSON Schema.
    ///
    /// # Errors
    /// Why it does not, in words for the producer.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), String> {
        match &self.inner {
            Inner::Avro(s) => s.check_datum(payload),
            Inner::Protobuf(s) => s.check_message(payload),
            Inner::Json(s) => s.check_instance(payload),
        }
    }

    /// The typed columns of the payload's type ([`kelp_core::typed`]): the schema's for Avro
    /// and JSON Schema, the message's its indexes name for Protobuf (`None` when they name
    /// none). With it, [`Shape::key`] tells apart the shapes of one schema.
    pub fn shape(&self, payload: &[u8]) -> Option<Shape> {
        Some(match &self.inner {
            Inner::Avro(s) => Shape::Avro(s.columns()),
            Inner::Protobuf(s) => Shape::Protobuf(s.columns(payload)?),
            Inner::Json(s) => Shape::Json(s.columns()),
        })
    }

    /// Which shape of this schema a payload uses: `""` for Avro and JSON Schema (one shape),
    /// the message's full name for Protobuf. `None` when the payload names no shape.
    pub fn shape_key(&self, payload: &[u8]) -> Option<String> {
        match &self.inner {
            Inner::Protobuf(s) => s.message_name(&protobuf::message_indexes(payload)?.0),
            _ => Some(String::new()),
        }
    }

    /// Decodes `payload` into one cell per column of `shape` (made by [`Parsed::shape`] of
    /// this schema).
    ///
    /// # Errors
    /// Why the payload does not decode with the schema.
    pub fn decode(&self, shape: &Shape, payload: &[u8]) -> Result<Vec<Cell>, String> {
        match (&self.inner, shape) {
            (Inner::Avro(s), Shape::Avro(c)) => s.decode_cells(c, payload),
            (Inner::Protobuf(s), Shape::Protobuf(c)) => s.decode_cells(c, payload),
            (Inner::Json(s), Shape::Json(c)) => s.decode_cells(c, payload),
            _ => Err("the shape is of another schema format".to_owned()),
        }
    }

    /// The normalized text (`?normalize=true` or the `normalize` config).
    pub fn normalized(&self) -> String {
        match &self.inner {
            Inner::Avro(s) => s.normalized(),
            Inner::Protobuf(s) => s.normalized(),
            Inner::Json(s) => s.normalized(),
        }
    }
}

/// Parses `text` as `schema_type`. The error is the message for a 42201 answer.
pub fn parse(schema_type: SchemaType, text: &str, references: &[Referenced<'_>]) -> Result<Parsed, String> {
    match schema_type {
        SchemaType::Avro => avro::parse(text, references).map(|s| Parsed { inner: Inner::Avro(s) }),
        SchemaType::Protobuf => protobuf::parse(text, references).map(|s| Parsed { inner: Inner::Protobuf(s) }),
        SchemaType::Json => json_schema::parse(text, references).map(|s| Parsed { inner: Inner::Json(s) }),
    }
}

/// Why `reader` cannot read data written with `writer`, as Confluent words each reason in a
/// verbose compatibility answer; empty when it can. `reader_is_new` words it for a BACKWARD
/// check (the new schema reads old data); `false` for FORWARD (the old schema reads new data).
pub fn check(reader: &Parsed, writer: &Parsed, reader_is_new: bool) -> Vec<String> {
    match (&reader.inner, &writer.inner) {
        (Inner::Avro(r), Inner::Avro(w)) => {
            avro::check_detailed(r, w, reader_is_new).iter().map(avro::Difference::message).collect()
        }
        // Confluent's FORWARD check is `old.isBackwardCompatible(new)`: the same diff, run from
        // the new schema to the old one, so the reader stays the reader here too.
        (Inner::Protobuf(r), Inner::Protobuf(w)) => {
            protobuf::check_detailed(r, w, reader_is_new).iter().map(protobuf::message).collect()
        }
        // Confluent's JSON diff runs as `reader.isBackwardCompatible(writer)`: the writer is the
        // original, the reader the update that must accept all the writer accepts.
        (Inner::Json(r), Inner::Json(w)) => json_schema::check_worded(r, w, reader_is_new),
        // The registry compares schemas of one type only.
        _ => vec!["Incompatible because of different schema type".to_owned()],
    }
}
