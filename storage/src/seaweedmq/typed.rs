//! Typed records on SeaweedMQ: a topic that validates its values against the schema registry
//! keeps each Kafka record as a `schema_pb.RecordValue` whose fields are the value's decoded
//! fields (and the key's, when the key is validated too), beside kelp's own column holding the
//! record's envelope, so SeaweedMQ's own readers and its Parquet compaction see typed columns
//! while Kafka clients get back the bytes they produced. The topic's `RecordType` (in its
//! `topic.conf`) holds every column its records have had: a schema version with new fields
//! widens it ([`kelp_core::typed::widen`]), and it never loses a column. docs/SCHEMA_TOPICS.md
//! documents the layout for SeaweedMQ-native readers; keep the two in step.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;
use kelp_core::io::StorageError;
use kelp_core::schemas::{FRAME_LEN, MAGIC, SchemaCatalog};
use kelp_core::typed::{self, Cell, Column, ColumnType, Scalar, TypedRecord, Typing};
use prost::Message;

use super::cluster::{Cluster, lock};
use super::envelope::Envelope;
use super::pb::schema_pb::{self, value::Kind as ValueKind};
use super::pb::view_pb;
use super::topics::TopicInfo;

/// The column holding the Kafka record: kelp's envelope ([`super::envelope`]), byte for byte.
pub const RECORD_COLUMN: &str = "_kelp_record";
/// The nested record holding a validated key's decoded fields.
pub const KEY_COLUMN: &str = "_kelp_key";
/// SeaweedMQ's offset column. Its compaction adds `_ts_ns` and `_key` to a topic's Parquet
/// files, its Parquet reader expects `_offset` too, and weed 4.48's broker dies reading a file
/// without it; declared in the `RecordType`, it is written (with each message's offset) and
/// read back (docs/notes/2026-12-07-seaweedmq-typed-records.md).
pub const OFFSET_COLUMN: &str = "_offset";
/// Names SeaweedMQ's Parquet files use for their own columns, and kelp's: a schema field with
/// one of them is left out of the typed columns.
const RESERVED: [&str; 5] = [RECORD_COLUMN, KEY_COLUMN, OFFSET_COLUMN, "_ts_ns", "_key"];

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
        for (mine, theirs) in [(&mut next.value, value), (&mut next.key, key)] {
            for cols in theirs {
                let cols: Vec<Column> = cols.iter().filter(|c| !reserved(&c.name)).cloned().collect();
                if let Some(w) = typed::widen(mine, &cols) {
                    *mine = w;
                }
            }
            // In name order, as the RecordType has them, so that a shape read back from it
            // compares equal.
            *mine = by_name(mine);
        }
        (next != *self).then_some(next)
    }

    /// The topic's `RecordType`: the value's columns, then kelp's record column, the key's
    /// record when the key is typed, and SeaweedMQ's `_offset`.
    #[must_use]
    pub fn record_type(&self) -> schema_pb::RecordType {
        let mut columns: Vec<Column> = self.value.clone();
        columns.push(Column::new(RECORD_COLUMN, ColumnType::Scalar(Scalar::Bytes), true));
        if !self.key.is_empty() {
            columns.push(Column::new(KEY_COLUMN, ColumnType::Record(self.key.clone()), false));
        }
        columns.push(Column::new(OFFSET_COLUMN, ColumnType::Scalar(Scalar::Int64), false));
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
    pub fn encode(&self, envelope: Bytes, value: Option<TypedRecord>, key: Option<TypedRecord>) -> Bytes {
        let mut fields: BTreeMap<String, schema_pb::Value> = BTreeMap::new();
        if let Some(v) = value {
            put_row(&mut fields, &v.columns, v.cells, &self.value);
        }
        if let Some(k) = key {
            let mut key_fields = BTreeMap::new();
            put_row(&mut key_fields, &k.columns, k.cells, &self.key);
            fields.insert(KEY_COLUMN.to_owned(), record_value(key_fields));
        }
        fields.insert(RECORD_COLUMN.to_owned(), schema_pb::Value { kind: Some(ValueKind::BytesValue(envelope)) });
        Bytes::from(schema_pb::RecordValue { fields }.encode_to_vec())
    }
}

/// Columns sorted by name at every level.
fn by_name(columns: &[Column]) -> Vec<Column> {
    let mut out: Vec<Column> = columns
        .iter()
        .map(|c| {
            let ty = match &c.ty {
                ColumnType::Record(inner) => ColumnType::Record(by_name(inner)),
                ColumnType::List(item) => match &**item {
                    ColumnType::Record(inner) => ColumnType::List(Box::new(ColumnType::Record(by_name(inner)))),
                    other => ColumnType::List(Box::new(other.clone())),
                },
                other => other.clone(),
            };
            Column::new(c.name.clone(), ty, c.required)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

fn record_value(fields: BTreeMap<String, schema_pb::Value>) -> schema_pb::Value {
    schema_pb::Value { kind: Some(ValueKind::RecordValue(schema_pb::RecordValue { fields })) }
}

/// Puts a row's cells (following `from`) into `fields` as the columns of `to` have them.
fn put_row(fields: &mut BTreeMap<String, schema_pb::Value>, from: &[Column], cells: Vec<Cell>, to: &[Column]) {
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
        // SeaweedMQ's compaction keeps these as plain numbers and writes its own timestamp,
        // date and time kinds as 0 (weed 4.48, docs/notes/2026-12-07-seaweedmq-typed-records.md).
        Cell::Timestamp(us) | Cell::Time(us) => ValueKind::Int64Value(us),
        Cell::Date(d) => ValueKind::Int32Value(d),
        // Its decimal columns are Decimal(38,18) whatever the value says: kept as text instead.
        Cell::Decimal { unscaled, scale, .. } => ValueKind::StringValue(decimal_text(&unscaled, scale)?),
        Cell::List(items) => {
            let item_ty = match ty {
                ColumnType::List(t) => t.as_ref(),
                _ => return None,
            };
            // A list holds no nulls: one with an item that has no value (its type conflicts
            // with the column's) is left out whole rather than shifted.
            let values = items.into_iter().map(|c| value_of(c, item_ty)).collect::<Option<Vec<_>>>()?;
            ValueKind::ListValue(schema_pb::ListValue { values })
        }
        Cell::Record(cells) => {
            let ColumnType::Record(columns) = ty else { return None };
            let mut fields = BTreeMap::new();
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
        Scalar::Decimal => T::String,
        Scalar::Time => T::Time,
    }
}

/// The longest unscaled decimal written as text (77 digits); a longer one is left null.
const MAX_DECIMAL_BYTES: usize = 32;

/// A decimal's text (`-12.34`) from its unscaled big-endian two's complement bytes and scale;
/// `None` for one longer than [`MAX_DECIMAL_BYTES`] or with an absurd scale.
fn decimal_text(unscaled: &[u8], scale: u32) -> Option<String> {
    if unscaled.len() > MAX_DECIMAL_BYTES || scale > 1000 {
        return None;
    }
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    // The magnitude, big-endian: the two's complement negated for a negative number.
    let mut mag: Vec<u8> = if negative { unscaled.iter().map(|b| !b).collect() } else { unscaled.to_vec() };
    if negative {
        for b in mag.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    // Decimal digits by repeated division by 10, least significant first.
    let mut digits = Vec::new();
    while mag.iter().any(|&b| b != 0) {
        let mut rem = 0u16;
        for b in &mut mag {
            let cur = (rem << 8) | u16::from(*b);
            *b = u8::try_from(cur / 10).unwrap_or(0);
            rem = cur % 10;
        }
        digits.push(b'0' + u8::try_from(rem).unwrap_or(0));
    }
    let scale = usize::try_from(scale).ok()?;
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (int, frac) = digits.split_at(digits.len() - scale);
    let mut text = String::with_capacity(digits.len() + 2);
    if negative {
        text.push('-');
    }
    text.push_str(std::str::from_utf8(int).ok()?);
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(frac).ok()?);
    }
    Some(text)
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

/// Columns as a SeaweedMQ `RecordType`, fields sorted by name at every level: weed 4.48's
/// compaction lays out a nested record's Parquet columns in name order but fills them in the
/// `RecordType`'s order, so a nested record whose fields are not in name order would have its
/// values swapped.
#[must_use]
pub fn record_type(columns: &[Column]) -> schema_pb::RecordType {
    let mut sorted: Vec<&Column> = columns.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let fields = sorted
        .into_iter()
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
fn type_field(catalog: &dyn SchemaCatalog, lowering: &mut Lowering, field: Option<&Bytes>) -> Option<FieldTyping> {
    let b = field?;
    if b.len() < FRAME_LEN || b[0] != MAGIC {
        return None;
    }
    let id = i32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    match catalog.typed(id, &b[FRAME_LEN..]) {
        Typing::Untyped => None,
        Typing::Undecodable(columns, why) => {
            tracing::debug!(id, %why, "seaweedmq: a framed record does not decode; kept without typed fields");
            Some((lowering.columns(&columns), None))
        }
        Typing::Typed(record) => {
            let columns = lowering.columns(&record.columns);
            let cells = lower_row(record.cells, &record.columns);
            Some((Arc::clone(&columns), Some(TypedRecord { columns, cells })))
        }
    }
}

/// Columns as SeaweedMQ keeps them: a decimal is a string column (its text), since weed 4.48's
/// compaction writes every decimal column as Decimal(38,18) whatever the values' scale.
/// Remembers what it made, so that one append lowers each schema's columns once and keeps one
/// `Arc` per schema.
#[derive(Default)]
struct Lowering(Vec<Lowered>);

/// A schema's columns, and the same as SeaweedMQ keeps them.
type Lowered = (Arc<[Column]>, Arc<[Column]>);

impl Lowering {
    fn columns(&mut self, columns: &Arc<[Column]>) -> Arc<[Column]> {
        if let Some((_, lowered)) = self.0.iter().find(|(c, _)| Arc::ptr_eq(c, columns)) {
            return Arc::clone(lowered);
        }
        let lowered: Arc<[Column]> = columns.iter().map(lower_column).collect::<Vec<_>>().into();
        self.0.push((Arc::clone(columns), Arc::clone(&lowered)));
        lowered
    }
}

fn lower_column(c: &Column) -> Column {
    Column::new(c.name.clone(), lower_type(&c.ty), c.required)
}

fn lower_type(ty: &ColumnType) -> ColumnType {
    match ty {
        ColumnType::Scalar(Scalar::Decimal) => ColumnType::Scalar(Scalar::String),
        ColumnType::Scalar(s) => ColumnType::Scalar(*s),
        // weed 4.48's compaction writes a list of records or of lists as empty: such a list
        // holds each element's JSON text.
        ColumnType::List(item) if !matches!(**item, ColumnType::Scalar(_)) => {
            ColumnType::List(Box::new(ColumnType::Scalar(Scalar::String)))
        }
        ColumnType::List(item) => ColumnType::List(Box::new(lower_type(item))),
        ColumnType::Record(columns) => ColumnType::Record(columns.iter().map(lower_column).collect()),
    }
}

/// A row's cells as [`lower_type`] keeps their columns (`columns` are the row's own, before
/// lowering).
fn lower_row(cells: Vec<Cell>, columns: &[Column]) -> Vec<Cell> {
    cells.into_iter().zip(columns).map(|(cell, c)| lower_cell(cell, &c.ty)).collect()
}

fn lower_cell(cell: Cell, ty: &ColumnType) -> Cell {
    match (cell, ty) {
        (Cell::Decimal { unscaled, scale, .. }, _) => decimal_text(&unscaled, scale).map_or(Cell::Null, Cell::String),
        (Cell::List(items), ColumnType::List(item)) if !matches!(**item, ColumnType::Scalar(_)) => {
            Cell::List(items.iter().map(|c| Cell::String(json(c, item).to_string())).collect())
        }
        (Cell::List(items), ColumnType::List(item)) => {
            Cell::List(items.into_iter().map(|c| lower_cell(c, item)).collect())
        }
        (Cell::Record(cells), ColumnType::Record(columns)) => Cell::Record(lower_row(cells, columns)),
        (cell, _) => cell,
    }
}

/// A cell as JSON: numbers as numbers (timestamps and times in microseconds, dates in days),
/// bytes as base64, decimals as their text, records as objects by column name.
fn json(cell: &Cell, ty: &ColumnType) -> serde_json::Value {
    use base64::Engine as _;
    use serde_json::Value as J;
    match (cell, ty) {
        (Cell::Null, _) => J::Null,
        (Cell::Bool(b), _) => J::Bool(*b),
        (Cell::Int32(i) | Cell::Date(i), _) => J::from(*i),
        (Cell::Int64(i) | Cell::Timestamp(i) | Cell::Time(i), _) => J::from(*i),
        (Cell::Float(x), _) => J::from(f64::from(*x)),
        (Cell::Double(x), _) => J::from(*x),
        (Cell::Bytes(b), _) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Cell::String(s), _) => J::String(s.clone()),
        (Cell::Decimal { unscaled, scale, .. }, _) => decimal_text(unscaled, *scale).map_or(J::Null, J::String),
        (Cell::List(items), ColumnType::List(item)) => J::Array(items.iter().map(|c| json(c, item)).collect()),
        (Cell::Record(cells), ColumnType::Record(columns)) => {
            J::Object(columns.iter().zip(cells).map(|(c, cell)| (c.name.clone(), json(cell, &c.ty))).collect())
        }
        (Cell::List(_) | Cell::Record(_), _) => J::Null,
    }
}

/// The message key of a typed record: its offset, eight bytes big-endian. SeaweedMQ's
/// compaction leaves messages with an empty key out of its Parquet files, and its subscribers
/// hold back a message while an earlier one with the same key is unacknowledged: an offset is
/// never empty and never repeats in a partition.
#[must_use]
pub fn message_key(offset: i64) -> Bytes {
    Bytes::copy_from_slice(&offset.to_be_bytes())
}

/// The cells of a typed field, when it decoded.
fn cells(t: Option<FieldTyping>) -> Option<TypedRecord> {
    t.and_then(|(_, rec)| rec)
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
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        let mut lowering = Lowering::default();
        let mut field = |on: bool, f: Option<&Bytes>| if on { type_field(catalog, &mut lowering, f) } else { None };
        let values: Vec<Option<FieldTyping>> =
            records.iter().map(|r| field(info.typed.value, r.value.as_ref())).collect();
        let keys: Vec<Option<FieldTyping>> = records.iter().map(|r| field(info.typed.key, r.key.as_ref())).collect();
        let shape = self.shape_for(info, &distinct(values.iter()), &distinct(keys.iter())).await?;
        Ok(records
            .iter()
            .zip(values.into_iter().zip(keys))
            .map(|(r, (v, k))| (message_key(r.offset), shape.encode(r.encode(), cells(v), cells(k))))
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
                // A topic deleted meanwhile is not configured again (deleting holds this lock).
                if !lock(&self.topics).values().any(|t| t.name == info.name) {
                    return Err(StorageError::NotFound);
                }
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
        assert_eq!(names, [RECORD_COLUMN, OFFSET_COLUMN, "at", "id"], "sorted by name");
        assert_eq!(TopicShape::from_record_type(&rt), Some(shape.clone()));
        let v2 =
            vec![s("id", Scalar::Int64, true), s("email", Scalar::String, true), s(RECORD_COLUMN, Scalar::Int32, true)];
        let key = vec![s("k", Scalar::String, true)];
        let wider = shape.widened(&[&v2], &[&key]).expect("email and a key");
        // Every column may be null: a record whose value does not decode has none of them.
        assert_eq!(
            wider.value,
            vec![s("at", Scalar::Timestamp, false), s("email", Scalar::String, false), s("id", Scalar::Int64, false)]
        );
        assert_eq!(wider.key, vec![s("k", Scalar::String, false)]);
        assert_eq!(wider.widened(&[&v1, &v2], &[&key]), None);
        assert_eq!(TopicShape::from_record_type(&wider.record_type()), Some(wider));
        assert_eq!(TopicShape::from_record_type(&record_type(&v1)), None, "not kelp's");
    }

    #[test]
    fn lists_of_records_hold_json_and_decimals_their_text() {
        let line = ColumnType::Record(vec![s("sku", Scalar::String, true), s("qty", Scalar::Int32, true)]);
        let columns: Arc<[Column]> = vec![
            Column::new("lines", ColumnType::List(Box::new(line)), true),
            Column::new("tags", ColumnType::List(Box::new(ColumnType::Scalar(Scalar::String))), true),
            s("price", Scalar::Decimal, false),
        ]
        .into();
        let mut lowering = Lowering::default();
        let lowered = lowering.columns(&columns);
        assert!(Arc::ptr_eq(&lowered, &lowering.columns(&columns)), "made once per schema");
        let string = ColumnType::Scalar(Scalar::String);
        assert_eq!(lowered[0].ty, ColumnType::List(Box::new(string.clone())));
        assert_eq!(lowered[1].ty, ColumnType::List(Box::new(string.clone())));
        assert_eq!(lowered[2].ty, string);
        let row = vec![
            Cell::List(vec![Cell::Record(vec![Cell::String("a\"b".into()), Cell::Int32(2)])]),
            Cell::List(vec![Cell::String("t".into())]),
            Cell::Decimal { unscaled: Bytes::from_static(&[0x04, 0xd2]), precision: 6, scale: 3 },
        ];
        assert_eq!(
            lower_row(row, &columns),
            vec![
                Cell::List(vec![Cell::String(r#"{"qty":2,"sku":"a\"b"}"#.into())]),
                Cell::List(vec![Cell::String("t".into())]),
                Cell::String("1.234".into()),
            ]
        );
    }

    #[test]
    fn decimals_are_written_as_their_text() {
        assert_eq!(decimal_text(&[0x30, 0x39], 2).as_deref(), Some("123.45"));
        assert_eq!(decimal_text(&[0xcf, 0xc7], 2).as_deref(), Some("-123.45"));
        assert_eq!(decimal_text(&[0x05], 3).as_deref(), Some("0.005"));
        assert_eq!(decimal_text(&[], 0).as_deref(), Some("0"));
        assert_eq!(decimal_text(&[0x80], 0).as_deref(), Some("-128"));
        let max = [0, 255, 255, 255, 255, 255, 255, 255, 255];
        assert_eq!(decimal_text(&max, 0).as_deref(), Some("18446744073709551615"));
        assert_eq!(decimal_text(&[1; 33], 0), None, "too long to be written");
    }

    #[test]
    fn a_record_keeps_its_envelope_byte_for_byte_beside_its_cells() {
        let v1: Arc<[Column]> = vec![s("id", Scalar::Int32, true), s("note", Scalar::String, false)].into();
        let shape =
            TopicShape { value: vec![s("id", Scalar::Int64, true), s("note", Scalar::String, false)], key: vec![] };
        let envelope = Bytes::from_static(&[0x4b, 0, 0xff, 0xfe, 0x80]);
        let row = TypedRecord { columns: v1, cells: vec![Cell::Int32(-5), Cell::Null] };
        let value = shape.encode(envelope.clone(), Some(row), None);
        assert_eq!(envelope_in(&value), Some(envelope));
        let rv = schema_pb::RecordValue::decode(value).expect("a RecordValue");
        assert_eq!(rv.fields.len(), 2, "the null note is left out: {rv:?}");
        assert_eq!(rv.fields["id"].kind, Some(ValueKind::Int64Value(-5)), "widened to the topic's column");
        assert_eq!(envelope_in(&Bytes::from_static(b"\x4bnot a record value")), None);
    }

    #[test]
    fn the_envelope_is_found_in_a_record_value_re_marshalled_with_seaweedmq_columns() {
        // What SeaweedMQ's Parquet read path would hand back: the RecordType's fields plus its
        // own `_ts_ns`, `_key` and `_offset`, in a map of its own making.
        let envelope = Bytes::from_static(&[0x4b, 1, 0, 0xff]);
        let mut fields = BTreeMap::new();
        let v = |kind| schema_pb::Value { kind: Some(kind) };
        fields.insert("_key".to_owned(), v(ValueKind::BytesValue(message_key(7))));
        fields.insert("_offset".to_owned(), v(ValueKind::Int64Value(7)));
        fields.insert("_ts_ns".to_owned(), v(ValueKind::Int64Value(1_796_000_000_000_000_000)));
        fields.insert("id".to_owned(), v(ValueKind::Int64Value(42)));
        fields.insert(RECORD_COLUMN.to_owned(), v(ValueKind::BytesValue(envelope.clone())));
        fields.insert("zz".to_owned(), v(ValueKind::StringValue("after".into())));
        let value = Bytes::from(schema_pb::RecordValue { fields }.encode_to_vec());
        assert_eq!(envelope_in(&value), Some(envelope));
    }
}
