//! Avro schemas: parsing with named-type references, Confluent's canonical text, and
//! compatibility by Avro's schema-resolution rules.
//!
//! STAND-IN (branch reg-api only): a minimal stub with the agreed signatures so the registry
//! compiles and its tests run before the real module lands. The merge replaces this file.
//! It checks JSON validity, canonicalizes by compact re-serialization, and reports only one
//! incompatibility: a reader record field without a default that the writer lacks.

use serde_json::Value;

use crate::{Incompatibility, Referenced};

/// A parsed schema (stand-in: the JSON value).
pub struct AvroSchema {
    value: Value,
}

/// Parses a schema (stand-in: any JSON object, array or type-name string).
pub fn parse(text: &str, _references: &[Referenced<'_>]) -> Result<AvroSchema, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("Invalid schema: {e}"))?;
    match value {
        Value::Object(_) | Value::Array(_) | Value::String(_) => Ok(AvroSchema { value }),
        _ => Err("Invalid schema: not an Avro schema".to_owned()),
    }
}

impl AvroSchema {
    /// Canonical text (stand-in: compact JSON).
    pub fn canonical(&self) -> String {
        self.value.to_string()
    }

    /// Normalized text (stand-in: same as canonical).
    pub fn normalized(&self) -> String {
        self.canonical()
    }
}

fn field_names(schema: &Value) -> Vec<&str> {
    let fields = schema.get("fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    fields.iter().filter_map(|f| f.get("name").and_then(Value::as_str)).collect()
}

/// Why `reader` cannot read `writer`'s data (stand-in: missing defaults of top-level fields).
pub fn check(reader: &AvroSchema, writer: &AvroSchema) -> Vec<Incompatibility> {
    let written = field_names(&writer.value);
    let fields = reader.value.get("fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let name = f.get("name").and_then(Value::as_str)?;
            (f.get("default").is_none() && !written.contains(&name)).then(|| Incompatibility {
                error_type: "READER_FIELD_MISSING_DEFAULT_VALUE",
                path: format!("/fields/{i}"),
                description: format!("The field '{name}' at path '/fields/{i}' in the new schema has no default value and is missing in the old schema"),
            })
        })
        .collect()
}
