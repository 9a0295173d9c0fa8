//! A Protobuf message type as typed columns, and a message as cells ([`kelp_core::typed`]).
//!
//! The mapping (docs/SCHEMA_TOPICS.md has the table): the message's fields, in declaration
//! order, are the columns; `double`, `float`, `bool`, `string`, `bytes` map to their scalars;
//! `int32`, `sint32`, `sfixed32` to int32; `int64`, `sint64`, `sfixed64` and `uint32`,
//! `fixed32` (which int32 cannot hold) to int64; `uint64`, `fixed64` to a decimal of 20 digits
//! (int64 cannot hold them); an enum to its value's name (its number, as text, when the schema
//! does not name it); a message to a nested record, except `google.protobuf.Timestamp`
//! (a timestamp) and the wrapper types (their value, optional); `repeated` to a list; `map` to a
//! list of `key`/`value` records. A field with presence (`optional`, a oneof member, a message)
//! is optional; others are always there. A message that contains itself is cut where it
//! recurs: that column holds the nested message's bytes.

use bytes::Bytes;
use kelp_core::typed::{Cell, Column, ColumnType, MAX_COLUMNS, MAX_NESTING, Scalar, max_cells};
use prost_reflect::prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value};

use super::{ProtobufSchema, message_indexes};

/// A message type's columns.
#[derive(Debug, Clone)]
pub struct ProtoColumns {
    message: MessageDescriptor,
    columns: Vec<Column>,
}

impl ProtoColumns {
    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

/// How a message-typed field is kept.
enum Special {
    Timestamp,
    Wrapper,
    Record,
}

fn special(m: &MessageDescriptor) -> Special {
    match m.full_name() {
        "google.protobuf.Timestamp" => Special::Timestamp,
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => Special::Wrapper,
        _ => Special::Record,
    }
}

fn scalar(kind: &Kind) -> Option<Scalar> {
    Some(match kind {
        Kind::Double => Scalar::Double,
        Kind::Float => Scalar::Float,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Scalar::Int32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint32 | Kind::Fixed32 => Scalar::Int64,
        Kind::Uint64 | Kind::Fixed64 => Scalar::Decimal,
        Kind::Bool => Scalar::Bool,
        Kind::String | Kind::Enum(_) => Scalar::String,
        Kind::Bytes => Scalar::Bytes,
        Kind::Message(_) => return None,
    })
}

/// Where the column mapping is: the messages being expanded (a message within itself is cut),
/// and how many columns so far.
#[derive(Default)]
struct Shaping {
    messages: Vec<String>,
    columns: usize,
}

fn message_columns(m: &MessageDescriptor, stack: &mut Shaping) -> Vec<Column> {
    stack.messages.push(m.full_name().to_owned());
    let columns = m
        .fields()
        .map(|f| {
            let ty = field_type(&f, stack);
            stack.columns += 1;
            let required =
                (!f.supports_presence() && !matches!(f.kind(), Kind::Message(_))) || f.is_list() || f.is_map();
            Column::new(f.name(), ty, required)
        })
        .collect();
    stack.messages.pop();
    columns
}

fn field_type(f: &FieldDescriptor, stack: &mut Shaping) -> ColumnType {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else { return ColumnType::Scalar(Scalar::Bytes) };
        let (k, v) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let entry = vec![
            Column::new("key", kind_type(&k.kind(), stack), true),
            Column::new("value", kind_type(&v.kind(), stack), true),
        ];
        return ColumnType::List(Box::new(ColumnType::Record(entry)));
    }
    let ty = kind_type(&f.kind(), stack);
    if f.is_list() { ColumnType::List(Box::new(ty)) } else { ty }
}

/// A message field's column: past [`MAX_NESTING`] messages, [`MAX_COLUMNS`] columns, or within
/// itself, a nested message is kept whole, as its bytes.
fn kind_type(kind: &Kind, stack: &mut Shaping) -> ColumnType {
    if let Some(s) = scalar(kind) {
        return ColumnType::Scalar(s);
    }
    let Kind::Message(m) = kind else { return ColumnType::Scalar(Scalar::Bytes) };
    match special(m) {
        Special::Timestamp => ColumnType::Scalar(Scalar::Timestamp),
        Special::Wrapper => {
            let value = m.get_field(1).map(|f| f.kind());
            value.and_then(|k| scalar(&k)).map_or(ColumnType::Scalar(Scalar::Bytes), ColumnType::Scalar)
        }
        Special::Record
            if stack.messages.len() >= MAX_NESTING
                || stack.columns >= MAX_COLUMNS
                || stack.messages.iter().any(|s| s == m.full_name()) =>
        {
            ColumnType::Scalar(Scalar::Bytes)
        }
        Special::Record => ColumnType::Record(message_columns(m, stack)),
    }
}

impl ProtobufSchema {
    /// The columns of the message a Confluent-framed payload's indexes name; `None` when they
    /// are malformed or name no message.
    pub fn columns(&self, payload: &[u8]) -> Option<ProtoColumns> {
        let (indexes, _) = message_indexes(payload)?;
        let message = self.message_at(&indexes)?;
        let columns = message_columns(&message, &mut Shaping::default());
        Some(ProtoColumns { message, columns })
    }

    /// Decodes a Confluent-framed payload (message indexes, then the message) into one cell
    /// per column of `columns`.
    ///
    /// # Errors
    /// The indexes name another message, or the bytes are not such a message.
    pub fn decode_cells(&self, columns: &ProtoColumns, payload: &[u8]) -> Result<Vec<Cell>, String> {
        let (indexes, body) =
            message_indexes(payload).ok_or_else(|| "malformed Protobuf message indexes".to_owned())?;
        if self.message_at(&indexes).as_ref() != Some(&columns.message) {
            return Err(format!("the message indexes {indexes:?} name another message"));
        }
        let message = DynamicMessage::decode(columns.message.clone(), body)
            .map_err(|e| format!("not a {} message: {e}", columns.message.full_name()))?;
        message_cells(&message, &columns.columns, &mut max_cells(payload.len()))
    }
}

/// The cells of message `m` for `columns` (made by [`message_columns`] for its type); `Err`
/// past `budget` cells.
fn message_cells(m: &DynamicMessage, columns: &[Column], budget: &mut usize) -> Result<Vec<Cell>, String> {
    m.descriptor()
        .fields()
        .zip(columns)
        .map(|(f, column)| {
            let absent = (f.supports_presence() || matches!(f.kind(), Kind::Message(_)))
                && !f.is_list()
                && !f.is_map()
                && !m.has_field(&f);
            if absent {
                spend(budget).map(|()| Cell::Null)
            } else {
                field_cell(&f, &m.get_field(&f), &column.ty, budget)
            }
        })
        .collect()
}

/// Counts one cell against the budget.
fn spend(budget: &mut usize) -> Result<(), String> {
    *budget = budget.checked_sub(1).ok_or_else(|| "more typed values than the payload's length allows".to_owned())?;
    Ok(())
}

fn field_cell(f: &FieldDescriptor, v: &Value, ty: &ColumnType, budget: &mut usize) -> Result<Cell, String> {
    spend(budget)?;
    let item = match ty {
        ColumnType::List(item) => item.as_ref(),
        other => other,
    };
    Ok(match v {
        Value::List(items) => {
            Cell::List(items.iter().map(|i| value_cell(&f.kind(), i, item, budget)).collect::<Result<_, _>>()?)
        }
        Value::Map(entries) => {
            let Kind::Message(entry) = f.kind() else { return Ok(Cell::Null) };
            let (kf, vf) = (entry.map_entry_key_field(), entry.map_entry_value_field());
            let (kt, vt) = match item {
                ColumnType::Record(c) if c.len() == 2 => (&c[0].ty, &c[1].ty),
                _ => return Ok(Cell::Null),
            };
            // Map order on the wire means nothing; keys sorted make the list stable.
            let mut sorted: Vec<(&MapKey, &Value)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Vec::with_capacity(sorted.len());
            for (k, v) in sorted {
                let key = value_cell(&kf.kind(), &Value::from(k.clone()), kt, budget)?;
                out.push(Cell::Record(vec![key, value_cell(&vf.kind(), v, vt, budget)?]));
            }
            Cell::List(out)
        }
        v => value_cell(&f.kind(), v, ty, budget)?,
    })
}

fn u64_decimal(v: u64) -> Cell {
    let mut unscaled = vec![0u8];
    unscaled.extend_from_slice(&v.to_be_bytes());
    Cell::Decimal { unscaled: Bytes::from(unscaled), precision: 20, scale: 0 }
}

fn value_cell(kind: &Kind, v: &Value, ty: &ColumnType, budget: &mut usize) -> Result<Cell, String> {
    spend(budget)?;
    Ok(match v {
        Value::Bool(b) => Cell::Bool(*b),
        Value::I32(i) => Cell::Int32(*i),
        Value::I64(i) => Cell::Int64(*i),
        Value::U32(u) => Cell::Int64(i64::from(*u)),
        Value::U64(u) => u64_decimal(*u),
        Value::F32(x) => Cell::Float(*x),
        Value::F64(x) => Cell::Double(*x),
        Value::String(s) => Cell::String(s.clone()),
        Value::Bytes(b) => Cell::Bytes(b.clone()),
        Value::EnumNumber(n) => {
            let name = match kind {
                Kind::Enum(e) => e.get_value(*n).map(|v| v.name().to_owned()),
                _ => None,
            };
            Cell::String(name.unwrap_or_else(|| n.to_string()))
        }
        Value::Message(m) => match (special(&m.descriptor()), ty) {
            (Special::Timestamp, _) => {
                let field = |n| m.get_field_by_number(n);
                let seconds = field(1).and_then(|v| v.as_i64()).unwrap_or(0);
                let nanos = field(2).and_then(|v| v.as_i32()).unwrap_or(0);
                seconds
                    .checked_mul(1_000_000)
                    .and_then(|us| us.checked_add(i64::from(nanos) / 1000))
                    .map_or(Cell::Null, Cell::Timestamp)
            }
            (Special::Wrapper, _) => match m.descriptor().get_field(1) {
                Some(f) => value_cell(&f.kind(), &m.get_field(&f), ty, budget)?,
                None => Cell::Null,
            },
            (Special::Record, ColumnType::Record(columns)) => Cell::Record(message_cells(m, columns, budget)?),
            // Cut where the columns stop (recursion, depth, the column budget): kept whole.
            (Special::Record, _) => Cell::Bytes(Bytes::from(m.encode_to_vec())),
        },
        Value::List(_) | Value::Map(_) => Cell::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, x: Scalar, required: bool) -> Column {
        Column::new(name, ColumnType::Scalar(x), required)
    }

    const SHOP: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Other { string x = 1; }
message Order {
  int64 id = 1;
  optional string note = 2;
  repeated string tags = 3;
  map<string, int32> attrs = 4;
  Line line = 5;
  enum Status { NEW = 0; PAID = 1; }
  Status status = 6;
  google.protobuf.Timestamp at = 7;
  uint64 big = 8;
  Order parent = 9;
  message Line { string sku = 1; uint32 qty = 2; }
}
"#;

    #[test]
    fn shared_message_types_do_not_multiply_columns_past_the_limits() {
        // M0 has two fields of M1, M1 two of M2, ...: 2^40 columns if expanded.
        let mut text = String::from("syntax = \"proto3\";\npackage deep;\n");
        for i in 0..40 {
            text.push_str(&format!("message M{i} {{ M{n} a = 1; M{n} b = 2; }}\n", n = i + 1));
        }
        text.push_str("message M40 { int32 x = 1; }\n");
        let schema = super::super::parse(&text, &[]).expect("schema");
        let cols = schema.columns(&[0]).expect("M0");
        fn count(c: &[Column]) -> usize {
            c.iter().map(|c| 1 + if let ColumnType::Record(r) = &c.ty { count(r) } else { 0 }).sum()
        }
        assert!(count(cols.columns()) <= 2 * MAX_COLUMNS, "{} columns", count(cols.columns()));
        // An empty M0 decodes (its absent messages are nulls), within the budget.
        assert_eq!(schema.decode_cells(&cols, &[0]).expect("decodes"), vec![Cell::Null, Cell::Null]);
    }

    #[test]
    fn a_message_maps_to_columns_and_a_payload_to_cells() {
        let schema = super::super::parse(SHOP, &[]).expect("schema");
        // Message indexes [1]: the second top-level message (zigzag count 1, index 1).
        let mut payload = vec![2, 2];
        let cols = schema.columns(&payload).expect("the indexes name Order");
        let list = |t| ColumnType::List(Box::new(t));
        assert_eq!(
            cols.columns(),
            &[
                s("id", Scalar::Int64, true),
                s("note", Scalar::String, false),
                Column::new("tags", list(ColumnType::Scalar(Scalar::String)), true),
                Column::new(
                    "attrs",
                    list(ColumnType::Record(vec![s("key", Scalar::String, true), s("value", Scalar::Int32, true)])),
                    true
                ),
                Column::new(
                    "line",
                    ColumnType::Record(vec![s("sku", Scalar::String, true), s("qty", Scalar::Int64, true)]),
                    false
                ),
                s("status", Scalar::String, true),
                s("at", Scalar::Timestamp, false),
                s("big", Scalar::Decimal, true),
                s("parent", Scalar::Bytes, false),
            ][..]
        );
        let pool = schema.file.parent_pool().clone();
        let order = pool.get_message_by_name("shop.Order").expect("Order");
        let mut m = DynamicMessage::new(order.clone());
        m.set_field_by_name("id", Value::I64(7));
        m.set_field_by_name("tags", Value::List(vec![Value::String("a".into())]));
        let mut attrs = std::collections::HashMap::new();
        attrs.insert(MapKey::String("z".into()), Value::I32(1));
        attrs.insert(MapKey::String("b".into()), Value::I32(2));
        m.set_field_by_name("attrs", Value::Map(attrs));
        m.set_field_by_name("status", Value::EnumNumber(1));
        let ts = pool.get_message_by_name("google.protobuf.Timestamp").expect("Timestamp");
        let mut at = DynamicMessage::new(ts);
        at.set_field_by_name("seconds", Value::I64(2));
        at.set_field_by_name("nanos", Value::I32(5_000));
        m.set_field_by_name("at", Value::Message(at));
        m.set_field_by_name("big", Value::U64(u64::MAX));
        let mut parent = DynamicMessage::new(order);
        parent.set_field_by_name("id", Value::I64(1));
        m.set_field_by_name("parent", Value::Message(parent.clone()));
        payload.extend(m.encode_to_vec());
        let cells = schema.decode_cells(&cols, &payload).expect("decodes");
        let pair = |k: &str, v| Cell::Record(vec![Cell::String(k.into()), Cell::Int32(v)]);
        assert_eq!(
            cells,
            vec![
                Cell::Int64(7),
                Cell::Null,
                Cell::List(vec![Cell::String("a".into())]),
                Cell::List(vec![pair("b", 2), pair("z", 1)]),
                Cell::Null,
                Cell::String("PAID".into()),
                Cell::Timestamp(2_000_005),
                Cell::Decimal {
                    unscaled: Bytes::from(vec![0, 255, 255, 255, 255, 255, 255, 255, 255]),
                    precision: 20,
                    scale: 0
                },
                Cell::Bytes(Bytes::from(parent.encode_to_vec())),
            ]
        );
        let other = schema.columns(&[2, 0]).expect("indexes [0] name Other");
        assert_eq!(other.columns(), &[s("x", Scalar::String, true)][..]);
        assert!(schema.decode_cells(&other, &payload).is_err(), "the payload names Order, not Other");
        assert!(schema.columns(&[2, 4]).is_none(), "no third message");
    }
}
