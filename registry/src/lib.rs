//! kelp's schema registry, as pure logic: no sockets, no threads, no clock.
//!
//! The registry keeps its state in the `_schemas` topic in Confluent's record layout. A driver
//! feeds it the topic's records and HTTP requests; it answers with responses, or with records to
//! write to `_schemas` first. Each schema format parses, normalizes and checks compatibility with
//! a library made for it ([`avro`], [`protobuf`], [`json_schema`]).
//!
//! The driver's loop, in short (see [`api`] for the contract):
//! ```
//! use kelp_registry::{Outcome, Registry, Request};
//!
//! let mut registry = Registry::new("kafka-cluster-id");
//! // On start: apply every `_schemas` record in offset order (a record that does not parse is
//! // reported and skipped), then serve requests.
//! let body = br#"{"schema": "\"string\""}"#;
//! let req = Request { method: "POST", path: "/subjects/t-value/versions", query: "", body };
//! let reply = match registry.handle(&req) {
//!     Outcome::Reply(reply) => reply,
//!     Outcome::Write { records, reply } => {
//!         for record in records {
//!             // Append to `_schemas` first; once stored, apply it.
//!             registry.apply(&record.key, record.value.as_deref()).expect("our own record");
//!         }
//!         reply
//!     }
//! };
//! assert_eq!(reply.status, 200);
//! assert_eq!(reply.body_bytes(), br#"{"id":1}"#);
//! ```

pub mod api;
pub mod avro;
pub mod catalog;
pub mod compat;
mod format;
pub mod fuzzing;
pub mod json_schema;
pub mod node;
pub mod protobuf;
pub mod store;

pub use api::{Body, Outcome, Request, Response};
pub use compat::CompatibilityLevel;
pub use store::{ApplyError, Mode, Record, Reference, Registry, SchemaEntry, SchemaId, SchemaType, Version};

/// A schema another schema refers to (Confluent's `references`), resolved to its text. A list of
/// them is in dependency order: a schema comes after the schemas it refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Referenced<'a> {
    /// The name the referring schema uses for it (for Avro, the referenced type's full name).
    pub name: &'a str,
    /// Its schema text, as registered.
    pub schema: &'a str,
}

/// One reason a schema cannot take another's place, in Confluent's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// Confluent's error type, such as `READER_FIELD_MISSING_DEFAULT_VALUE`.
    pub error_type: &'static str,
    /// Where in the schema, as a JSON-pointer-like path (`/fields/1/type`).
    pub path: String,
    /// What broke, in a sentence naming the field or type.
    pub description: String,
}
