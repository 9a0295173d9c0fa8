//! Schema validation at the broker: a topic can require that the keys or values produced to it
//! are framed in Confluent's wire format (a zero magic byte, then a four-byte big-endian schema
//! id) with a schema the registry holds under the subject the topic's subject-name strategy
//! names, and with `kelp.*.schema.validation.mode=payload`, that the rest decodes with it.
//!
//! The core reads the frame and asks a [`SchemaCatalog`] about the id: the catalog is the
//! schema registry's view, supplied by whoever runs the broker ([`crate::broker::Broker::
//! set_schema_catalog`]). A batch with any record that fails is refused whole with
//! INVALID_RECORD, each failing record named in `record_errors` (KIP-467). Null keys and values
//! (tombstones) are not checked.

use crate::typed::Typing;

/// The Confluent magic byte that starts a framed key or value.
pub const MAGIC: u8 = 0;

/// The bytes of the frame before the payload: the magic byte and the schema id.
pub const FRAME_LEN: usize = 5;

/// Which part of a record a check is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The record's key (subject suffix `-key`).
    Key,
    /// The record's value (subject suffix `-value`).
    Value,
}

impl Field {
    /// `key` or `value`, as subjects and messages spell it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Value => "value",
        }
    }
}

/// How the subject a record's schema must be registered under is named (Confluent's
/// `*.subject.name.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectStrategy {
    /// `<topic>-key` or `<topic>-value` (the default).
    TopicName,
    /// The fully qualified name of the record's type (Avro record, Protobuf message, JSON
    /// Schema `title`).
    RecordName,
    /// `<topic>-<record name>`.
    TopicRecordName,
}

/// The Java package Confluent's strategies live in; a config may name them with it.
const STRATEGY_PACKAGE: &str = "io.confluent.kafka.serializers.subject.";

impl SubjectStrategy {
    /// Every value a strategy config accepts: the short names and the Java class names.
    pub const NAMES: &'static [&'static str] = &[
        "TopicNameStrategy",
        "RecordNameStrategy",
        "TopicRecordNameStrategy",
        "io.confluent.kafka.serializers.subject.TopicNameStrategy",
        "io.confluent.kafka.serializers.subject.RecordNameStrategy",
        "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
    ];

    /// The strategy a config value names, short or fully qualified.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        match value.strip_prefix(STRATEGY_PACKAGE).unwrap_or(value) {
            "TopicNameStrategy" => Some(Self::TopicName),
            "RecordNameStrategy" => Some(Self::RecordName),
            "TopicRecordNameStrategy" => Some(Self::TopicRecordName),
            _ => None,
        }
    }

    /// The subject for a record of `topic` whose schema's type is named `record_name`.
    #[must_use]
    pub fn subject(self, topic: &str, field: Field, record_name: &str) -> String {
        match self {
            Self::TopicName => format!("{topic}-{}", field.as_str()),
            Self::RecordName => record_name.to_owned(),
            Self::TopicRecordName => format!("{topic}-{record_name}"),
        }
    }
}

/// What a topic checks of one field of its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldValidation {
    /// How the subject is named.
    pub strategy: SubjectStrategy,
    /// Whether the payload must also decode with the schema (`payload` mode), not only carry an
    /// id registered under the subject (`id` mode, Confluent's and Redpanda's check).
    pub payload: bool,
}

/// One key or value to check: the topic, which field, the topic's settings for it, and the
/// schema id and payload read from the frame.
#[derive(Clone, Copy, Debug)]
pub struct SchemaCheck<'a> {
    /// The topic produced to.
    pub topic: &'a str,
    /// Key or value.
    pub field: Field,
    /// The topic's validation settings for that field.
    pub validation: FieldValidation,
    /// The schema id in the frame.
    pub id: i32,
    /// The bytes after the frame (a Protobuf payload starts with its message indexes).
    pub payload: &'a [u8],
}

/// The schema registry's view the broker checks records against. Implementations answer from
/// memory and never block on IO: the broker calls this on its request path.
pub trait SchemaCatalog: Send + Sync + std::fmt::Debug {
    /// `Ok` when the check passes; else why not, in words for the producer.
    ///
    /// # Errors
    /// The id is unknown, not registered under the strategy's subject, or (payload mode) the
    /// payload does not decode with the schema.
    fn check(&self, check: &SchemaCheck<'_>) -> Result<(), String>;

    /// Whether the view is complete: `false` while the registry is still reading its state
    /// (after a start), when an id it does not know yet may well exist. The broker then answers
    /// batches it would check with a retriable error rather than refusing them.
    fn ready(&self) -> bool {
        true
    }

    /// The payload framed with schema `id` as typed columns ([`crate::typed`]), for a store
    /// that keeps typed records.
    fn typed(&self, id: i32, payload: &[u8]) -> Typing;
}

/// Checks one framed key or value; `Err` is the message for its record error.
///
/// # Errors
/// The frame is missing or malformed, or the catalog refuses it.
pub fn check_field(
    catalog: Option<&dyn SchemaCatalog>,
    topic: &str,
    field: Field,
    validation: FieldValidation,
    data: &[u8],
) -> Result<(), String> {
    let what = field.as_str();
    let Some(catalog) = catalog else {
        return Err(format!(
            "topic {topic} validates the {what} schema, but this broker has no schema registry to check it against"
        ));
    };
    if data.len() < FRAME_LEN {
        return Err(format!(
            "the {what} is not in the schema registry's wire format: {} bytes, fewer than the {FRAME_LEN}-byte header",
            data.len()
        ));
    }
    if data[0] != MAGIC {
        return Err(format!(
            "the {what} is not in the schema registry's wire format: magic byte {} where {MAGIC} was expected",
            data[0]
        ));
    }
    let id = i32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    catalog.check(&SchemaCheck { topic, field, validation, id, payload: &data[FRAME_LEN..] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Only(i32);

    impl SchemaCatalog for Only {
        fn check(&self, c: &SchemaCheck<'_>) -> Result<(), String> {
            if c.id == self.0 { Ok(()) } else { Err(format!("unknown schema id {}", c.id)) }
        }

        fn typed(&self, _: i32, _: &[u8]) -> Typing {
            Typing::Untyped
        }
    }

    const TOPIC_NAME: FieldValidation = FieldValidation { strategy: SubjectStrategy::TopicName, payload: false };

    #[test]
    fn strategies_are_named_short_or_by_their_java_class() {
        for (name, s) in [
            ("TopicNameStrategy", SubjectStrategy::TopicName),
            ("io.confluent.kafka.serializers.subject.RecordNameStrategy", SubjectStrategy::RecordName),
            (" TopicRecordNameStrategy", SubjectStrategy::TopicRecordName),
        ] {
            assert_eq!(SubjectStrategy::parse(name), Some(s), "{name}");
        }
        assert_eq!(SubjectStrategy::parse("io.example.TopicNameStrategy"), None);
        assert!(SubjectStrategy::NAMES.iter().all(|n| SubjectStrategy::parse(n).is_some()));
        assert_eq!(SubjectStrategy::TopicName.subject("t", Field::Key, "a.B"), "t-key");
        assert_eq!(SubjectStrategy::RecordName.subject("t", Field::Value, "a.B"), "a.B");
        assert_eq!(SubjectStrategy::TopicRecordName.subject("t", Field::Value, "a.B"), "t-a.B");
    }

    #[test]
    fn the_frame_is_checked_before_the_catalog_is_asked() {
        let catalog = Only(7);
        let check = |data: &[u8]| check_field(Some(&catalog), "t", Field::Value, TOPIC_NAME, data);
        assert_eq!(check(&[0, 0, 0, 0, 7, 1, 2]), Ok(()));
        assert_eq!(check(&[0, 0, 0, 0, 7]), Ok(()), "an empty payload is the catalog's to judge");
        assert!(check(&[0, 0, 0, 0, 8]).unwrap_err().contains("unknown schema id 8"));
        assert!(check(&[1, 0, 0, 0, 7]).unwrap_err().contains("magic byte 1"));
        assert!(check(&[0, 0, 7]).unwrap_err().contains("3 bytes"));
        assert!(check(&[]).unwrap_err().contains("0 bytes"));
        let none = check_field(None, "t", Field::Key, TOPIC_NAME, &[0, 0, 0, 0, 7]);
        assert!(none.unwrap_err().contains("no schema registry"));
    }
}
