//! Avro schemas: parsing with named-type references, Confluent's canonical text, and
//! compatibility by Avro's schema-resolution rules.
