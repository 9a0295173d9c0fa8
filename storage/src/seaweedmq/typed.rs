//! Typed records on SeaweedMQ: a topic that validates its values against the schema registry
//! keeps each Kafka record as a `schema_pb.RecordValue` whose fields are the value's decoded
//! fields (and the key's, when the key is validated too), beside kelp's own column holding the
//! record's envelope, so SeaweedMQ's own readers and its Parquet compaction see typed columns
//! while Kafka clients get back the bytes they produced. The topic's `RecordType` (in its
//! `topic.conf`) holds every column its records have had: a schema version with new fields
//! widens it ([`kelp_core::typed::widen`]), and it never loses a column. docs/SCHEMA_TOPICS.md
//! documents the layout for SeaweedMQ-native readers; keep the two in step.

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;
use kelp_core::io::StorageError;
use kelp_core::schemas::{FRAME_LEN, MAGIC, SchemaCatalog};
use kelp_core::typed::{self, Cell, Column, ColumnType, Scalar, TypedRecord, Typing};
use prost::Message;

use super::cluster::Cluster;
use super::envelope::Envelope;
use super::pb::schema_pb::{self, value::Kind as ValueKind};
use super::pb::view_pb;
use super::topics::TopicInfo;

/// The column holding the Kafka record: kelp's envelope ([`super::envelope`]), byte for byte.
pub const RECORD_COLUMN: &str = "_kelp_record";
/// The nested record holding a validated key's decoded fields.
pub const KEY_COLUMN: &str = "_kelp_key";

/// What a typed topic's records hold besides kelp's envelope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopicShape {
    /// The value's columns, every schema version's merged.
    pub value: Vec<Column>,
    /// The key's columns (empty: the key is not typed).
    pub key: Vec<Column>,
}

impl TopicShape {
    /// The shape that also holds `value`'s and `key`'s columns; `None` when this one does.
    #[must_use]
    pub fn widened(&self, value: &[&[Column]], key: &[&[Column]]) -> Option<TopicShape> {
        let mut next = self.clone();
        let mut changed = false;
        for (mine, theirs) in [(&mut next.value, value), (&mut next.key, key)] {
            for cols in theirs {
                let cols: Vec<Column> = cols.iter().filter(|c| !reserved(&c.name)).cloned().collect();
                if let Some(w) = typed::widen(mine, &cols) {
                    *mine = w;
                    changed = true;
                }
            }
        }
        changed.then_some(next)
    }

    /// The topic's `RecordType`: the value's columns, then kelp's record column, then the key's
    /// record when the key is typed.
    #[must_use]
    pub fn record_type(&self) -> schema_pb::RecordType {
        let mut columns: Vec<Column> = self.value.clone();
        columns.push(Column::new(RECORD_COLUMN, ColumnType::Scalar(Scalar::Bytes), true));
        if !self.key.is_empty() {
            columns.push(Column::new(KEY_COLUMN, ColumnType::Record(self.key.clone()), false));
        }
        record_type(&columns)
    }

    /// The shape a `RecordType` kelp wrote describes (kelp's own columns taken out); `None` for
    /// one without kelp's record column, which kelp did not write.
    #[must_use]
    pub fn from_record_type(rt: &schema_pb::RecordType) -> Option<TopicShape> {
        let columns = columns_of(rt);
        if !columns.iter().any(|c| c.name == RECORD_COLUMN) {
            return None;
        }
        let key = columns.iter().find(|c| c.name == KEY_COLUMN).and_then(|c| match &c.ty {
            ColumnType::Record(k) => Some(k.clone()),
            _ => None,
        });
        let value = columns.into_iter().filter(|c| !reserved(&c.name)).collect();
        Some(TopicShape { value, key: key.unwrap_or_default() })
    }

    /// The message value for one record: its envelope in kelp's column, and the cells of the
    /// value and key that decoded (fitted to this shape, which must hold their columns).
    #[must_use]
    pub fn encode(&self, envelope: Bytes, value: Option<&TypedRecord>, key: Option<&TypedRecord>) -> Bytes {
        let mut fields: std::collections::HashMap<String, schema_pb::Value> = std::collections::HashMap::new();
        if let Some(v) = value {
            put_row(&mut fields, &v.columns, v.cells.clone(), &self.value);
        }
        if let Some(k) = key {
            let mut key_fields = std::collections::HashMap::new();
            put_row(&mut key_fields, &k.columns, k.cells.clone(), &self.key);
            fields.insert(KEY_COLUMN.to_owned(), record_value(key_fields));
        }
        fields.insert(RECORD_COLUMN.to_owned(), schema_pb::Value { kind: Some(ValueKind::BytesValue(envelope)) });
        Bytes::from(schema_pb::RecordValue { fields }.encode_to_vec())
    }
}

fn reserved(name: &str) -> bool {
    name == RECORD_COLUMN || name == KEY_COLUMN
}

fn record_value(fields: std::collections::HashMap<String, schema_pb::Value>) -> schema_pb::Value {
    schema_pb::Value { kind: Some(ValueKind::RecordValue(schema_pb::RecordValue { fields })) }
}

/// Puts a row's cells (following `from`) into `fields` as the columns of `to` have them.
fn put_row(
    fields: &mut std::collections::HashMap<String, schema_pb::Value>,
    from: &[Column],
    cells: Vec<Cell>,
    to: &[Column],
) {
    for (column, cell) in to.iter().zip(typed::fit_row(cells, from, to)) {
        if let Some(v) = value_of(cell, &column.ty) {
            fields.insert(column.name.clone(), v);
        }
    }
}

/// A cell as a SeaweedMQ `Value` for a column of type `ty`; `None` for null (SeaweedMQ has no
/// null value: the field is left out).
fn value_of(cell: Cell, ty: &ColumnType) -> Option<schema_pb::Value> {
    let kind = match cell {
        Cell::Null => return None,
        Cell::Bool(b) => ValueKind::BoolValue(b),
        Cell::Int32(i) => ValueKind::Int32Value(i),
        Cell::Int64(i) => ValueKind::Int64Value(i),
        Cell::Float(x) => ValueKind::FloatValue(x),
        Cell::Double(x) => ValueKind::DoubleValue(x),
        Cell::Bytes(b) => ValueKind::BytesValue(b),
        Cell::String(s) => ValueKind::StringValue(s),
        Cell::Timestamp(us) => {
            ValueKind::TimestampValue(schema_pb::TimestampValue { timestamp_micros: us, is_utc: true })
        }
        Cell::Date(d) => ValueKind::DateValue(schema_pb::DateValue { days_since_epoch: d }),
        Cell::Time(us) => ValueKind::TimeValue(schema_pb::TimeValue { time_micros: us }),
        Cell::Decimal { unscaled, precision, scale } => ValueKind::DecimalValue(schema_pb::DecimalValue {
            value: unscaled,
            precision: i32::try_from(precision).unwrap_or(i32::MAX),
            scale: i32::try_from(scale).unwrap_or(i32::MAX),
        }),
        Cell::List(items) => {
            let item_ty = match ty {
                ColumnType::List(t) => t.as_ref(),
                _ => return None,
            };
            let values = items.into_iter().filter_map(|c| value_of(c, item_ty)).collect();
            ValueKind::ListValue(schema_pb::ListValue { values })
        }
        Cell::Record(cells) => {
            let ColumnType::Record(columns) = ty else { return None };
            let mut fields = std::collections::HashMap::new();
            for (c, cell) in columns.iter().zip(cells) {
                if let Some(v) = value_of(cell, &c.ty) {
                    fields.insert(c.name.clone(), v);
                }
            }
            return Some(record_value(fields));
        }
    };
    Some(schema_pb::Value { kind: Some(kind) })
}

fn scalar_type(s: Scalar) -> schema_pb::ScalarType {
    use schema_pb::ScalarType as T;
    match s {
        Scalar::Bool => T::Bool,
        Scalar::Int32 => T::Int32,
        Scalar::Int64 => T::Int64,
        Scalar::Float => T::Float,
        Scalar::Double => T::Double,
        Scalar::Bytes => T::Bytes,
        Scalar::String => T::String,
        Scalar::Timestamp => T::Timestamp,
        Scalar::Date => T::Date,
        Scalar::Decimal => T::Decimal,
        Scalar::Time => T::Time,
    }
}

fn scalar_of(t: schema_pb::ScalarType) -> Scalar {
    use schema_pb::ScalarType as T;
    match t {
        T::Bool => Scalar::Bool,
        T::Int32 => Scalar::Int32,
        T::Int64 => Scalar::Int64,
        T::Float => Scalar::Float,
        T::Double => Scalar::Double,
        T::Bytes => Scalar::Bytes,
        T::String => Scalar::String,
        T::Timestamp => Scalar::Timestamp,
        T::Date => Scalar::Date,
        T::Decimal => Scalar::Decimal,
        T::Time => Scalar::Time,
    }
}

fn type_of(ty: &ColumnType) -> schema_pb::Type {
    use schema_pb::r#type::Kind;
    let kind = match ty {
        ColumnType::Scalar(s) => Kind::ScalarType(scalar_type(*s) as i32),
        ColumnType::List(item) => {
            Kind::ListType(Box::new(schema_pb::ListType { element_type: Some(Box::new(type_of(item))) }))
        }
        ColumnType::Record(columns) => Kind::RecordType(record_type(columns)),
    };
    schema_pb::Type { kind: Some(kind) }
}

/// Columns as a SeaweedMQ `RecordType`.
#[must_use]
pub fn record_type(columns: &[Column]) -> schema_pb::RecordType {
    let fields = columns
        .iter()
        .enumerate()
        .map(|(i, c)| schema_pb::Field {
            name: c.name.clone(),
            field_index: i32::try_from(i).unwrap_or(i32::MAX),
            r#type: Some(type_of(&c.ty)),
            is_repeated: false,
            is_required: c.required,
        })
        .collect();
    schema_pb::RecordType { fields }
}

fn column_type_of(t: &schema_pb::Type) -> Option<ColumnType> {
    use schema_pb::r#type::Kind;
    Some(match t.kind.as_ref()? {
        Kind::ScalarType(s) => ColumnType::Scalar(scalar_of(schema_pb::ScalarType::try_from(*s).ok()?)),
        Kind::ListType(l) => ColumnType::List(Box::new(column_type_of(l.element_type.as_deref()?)?)),
        Kind::RecordType(r) => ColumnType::Record(columns_of(r)),
    })
}

/// A SeaweedMQ `RecordType` as columns (fields of a type kelp does not know are left out).
#[must_use]
pub fn columns_of(rt: &schema_pb::RecordType) -> Vec<Column> {
    rt.fields
        .iter()
        .filter_map(|f| {
            let ty = column_type_of(f.r#type.as_ref()?)?;
            let ty = if f.is_repeated { ColumnType::List(Box::new(ty)) } else { ty };
            Some(Column::new(f.name.clone(), ty, f.is_required))
        })
        .collect()
}

/// The envelope in a message value that is a `RecordValue` kelp wrote (as published, or as
/// SeaweedMQ re-marshals it after compaction), without decoding its other fields.
#[must_use]
pub fn envelope_in(value: &Bytes) -> Option<Bytes> {
    let view = view_pb::RecordValueView::decode(value.clone()).ok()?;
    let entry = view.fields.into_iter().find(|e| e.key == RECORD_COLUMN)?;
    view_pb::BytesValueView::decode(entry.value).ok().map(|v| v.bytes_value)
}

/// Per topic name: the shape its `RecordType` has, as far as this process knows.
pub(super) type Shapes = HashMap<String, Arc<TopicShape>>;

/// One key or value as the catalog types it: its schema's columns, and its cells when it
/// decodes.
type FieldTyping = (Arc<[Column]>, Option<TypedRecord>);

/// Types a key or value framed in the schema registry's wire format; `None` when it is not
/// framed or its schema id maps to no columns.
fn type_field(catalog: &dyn SchemaCatalog, field: Option<&Bytes>) -> Option<FieldTyping> {
    let b = field?;
    if b.len() < FRAME_LEN || b[0] != MAGIC {
        return None;
    }
    let id = i32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    match catalog.typed(id, &b[FRAME_LEN..]) {
        Typing::Untyped => None,
        Typing::Undecodable(columns, why) => {
            tracing::debug!(id, %why, "seaweedmq: a framed record does not decode; kept without typed fields");
            Some((columns, None))
        }
        Typing::Typed(record) => Some((record.columns.clone(), Some(record))),
    }
}

/// The cells of a typed field, when it decoded.
fn cells(t: Option<&FieldTyping>) -> Option<&TypedRecord> {
    t.and_then(|(_, rec)| rec.as_ref())
}

/// The distinct column sets of `typings` (one per schema and message).
fn distinct<'a>(typings: impl Iterator<Item = &'a Option<FieldTyping>>) -> Vec<&'a [Column]> {
    let mut out: Vec<&'a Arc<[Column]>> = Vec::new();
    for (columns, _) in typings.flatten() {
        if !out.iter().any(|c| Arc::ptr_eq(c, columns)) {
            out.push(columns);
        }
    }
    out.into_iter().map(|c| &**c).collect()
}

impl Cluster {
    /// The message values for `records` of a typed topic: typed records, after widening the
    /// topic's `RecordType` to hold their columns if it does not yet.
    pub(super) async fn typed_values(
        &self,
        info: &TopicInfo,
        catalog: &dyn SchemaCatalog,
        records: &[Envelope],
    ) -> Result<Vec<Bytes>, StorageError> {
        let values: Vec<Option<FieldTyping>> = records
            .iter()
            .map(|r| if info.typed.value { type_field(catalog, r.value.as_ref()) } else { None })
            .collect();
        let keys: Vec<Option<FieldTyping>> =
            records.iter().map(|r| if info.typed.key { type_field(catalog, r.key.as_ref()) } else { None }).collect();
        let shape = self.shape_for(info, &distinct(values.iter()), &distinct(keys.iter())).await?;
        Ok(records
            .iter()
            .zip(values.iter().zip(&keys))
            .map(|(r, (v, k))| shape.encode(r.encode(), cells(v.as_ref()), cells(k.as_ref())))
            .collect())
    }

    /// The shape of topic `info`, its `RecordType` widened first where it lacks columns of
    /// `value` or `key`. The first call for a topic reads its `RecordType` back, so a restart
    /// never narrows it.
    async fn shape_for(
        &self,
        info: &TopicInfo,
        value: &[&[Column]],
        key: &[&[Column]],
    ) -> Result<Arc<TopicShape>, StorageError> {
        let mut shapes = self.shapes.lock().await;
        let current = match shapes.get(&info.name) {
            Some(s) => Arc::clone(s),
            None => {
                let rt = self.record_type(&info.name).await?;
                Arc::new(rt.as_ref().and_then(TopicShape::from_record_type).unwrap_or_default())
            }
        };
        let next = match current.widened(value, key) {
            None => current,
            Some(wider) => {
                self.set_record_type(&info.name, info.partitions, wider.record_type(), "").await?;
                tracing::info!(topic = %info.name, columns = wider.value.len(), "seaweedmq: topic record type widened");
                Arc::new(wider)
            }
        };
        shapes.insert(info.name.clone(), Arc::clone(&next));
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, x: Scalar, required: bool) -> Column {
        Column::new(name, ColumnType::Scalar(x), required)
    }

    #[test]
    fn a_shape_survives_its_record_type_and_widens_without_losing_columns() {
        let v1 = vec![s("id", Scalar::Int64, true), s("at", Scalar::Timestamp, false)];
        let shape = TopicShape::default().widened(&[&v1], &[]).expect("new columns");
        let rt = shape.record_type();
        let names: Vec<&str> = rt.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "at", RECORD_COLUMN]);
        assert_eq!(TopicShape::from_record_type(&rt), Some(shape.clone()));
        let v2 =
            vec![s("id", Scalar::Int64, true), s("email", Scalar::String, true), s(RECORD_COLUMN, Scalar::Int32, true)];
        let key = vec![s("k", Scalar::String, true)];
        let wider = shape.widened(&[&v2], &[&key]).expect("email and a key");
        // Every column may be null: a record whose value does not decode has none of them.
        assert_eq!(
            wider.value,
            vec![s("id", Scalar::Int64, false), s("at", Scalar::Timestamp, false), s("email", Scalar::String, false)]
        );
        assert_eq!(wider.key, vec![s("k", Scalar::String, false)]);
        assert_eq!(wider.widened(&[&v1, &v2], &[&key]), None);
        assert_eq!(TopicShape::from_record_type(&wider.record_type()), Some(wider));
        assert_eq!(TopicShape::from_record_type(&record_type(&v1)), None, "not kelp's");
    }

    #[test]
    fn a_record_keeps_its_envelope_byte_for_byte_beside_its_cells() {
        let v1: Arc<[Column]> = vec![s("id", Scalar::Int32, true), s("note", Scalar::String, false)].into();
        let shape =
            TopicShape { value: vec![s("id", Scalar::Int64, true), s("note", Scalar::String, false)], key: vec![] };
        let envelope = Bytes::from_static(&[0x4b, 0, 0xff, 0xfe, 0x80]);
        let row = TypedRecord { columns: v1, cells: vec![Cell::Int32(-5), Cell::Null] };
        let value = shape.encode(envelope.clone(), Some(&row), None);
        assert_eq!(envelope_in(&value), Some(envelope));
        let rv = schema_pb::RecordValue::decode(value).expect("a RecordValue");
        assert_eq!(rv.fields.len(), 2, "the null note is left out: {rv:?}");
        assert_eq!(rv.fields["id"].kind, Some(ValueKind::Int64Value(-5)), "widened to the topic's column");
        assert_eq!(envelope_in(&Bytes::from_static(b"\x4bnot a record value")), None);
    }
}
