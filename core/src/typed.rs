//! Typed records: a record's schema-framed payload seen as named, typed columns, the shape
//! SeaweedMQ's `RecordType`/`RecordValue` give structured messages (scalars, lists and nested
//! records; no maps, no unions, no null value: a missing field is null).
//!
//! The schema registry maps a schema to [`Column`]s and decodes payloads to [`Cell`]s
//! ([`crate::schemas::SchemaCatalog::typed`]); a store that keeps typed records (SeaweedMQ)
//! turns both into its own types. Nothing here knows a schema format or a store.

use std::sync::Arc;

use bytes::Bytes;

/// How deep a schema's columns nest (records and lists) before the rest of a value is kept in
/// one column whole (its encoded bytes, or its JSON text). SeaweedMQ's record types are
/// protobuf messages three levels deep per nested record, read with a 100-level limit.
pub const MAX_NESTING: usize = 16;

/// The most columns one schema maps to, nested ones included; past it, the rest of a value is
/// kept in one column whole, as past [`MAX_NESTING`].
pub const MAX_COLUMNS: usize = 1024;

/// The most cells a payload of `len` bytes may decode to. A value can hold more cells than bytes
/// (nulls, defaults, empty records take none), so without a bound a small payload could decode
/// to a huge row; past it the payload is not typed ([`Typing::Undecodable`]).
#[must_use]
pub fn max_cells(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(1024)
}

/// A scalar column type: SeaweedMQ's `ScalarType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// true or false.
    Bool,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit float.
    Float,
    /// 64-bit float.
    Double,
    /// Bytes.
    Bytes,
    /// UTF-8 text.
    String,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    /// Days since the Unix epoch.
    Date,
    /// A decimal: unscaled big-endian two's complement bytes with a precision and scale.
    Decimal,
    /// Microseconds since midnight.
    Time,
}

/// A column's type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// One value.
    Scalar(Scalar),
    /// A list of values of one type.
    List(Box<ColumnType>),
    /// A nested record.
    Record(Vec<Column>),
}

/// A named column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Column {
    /// The field's name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// Whether every record has it (`false`: it may be null).
    pub required: bool,
}

impl Column {
    /// A column.
    #[must_use]
    pub fn new(name: impl Into<String>, ty: ColumnType, required: bool) -> Self {
        Self { name: name.into(), ty, required }
    }
}

/// One value of a typed record.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// A bool.
    Bool(bool),
    /// An int32.
    Int32(i32),
    /// An int64.
    Int64(i64),
    /// A float.
    Float(f32),
    /// A double.
    Double(f64),
    /// Bytes.
    Bytes(Bytes),
    /// Text.
    String(String),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// Days since the Unix epoch.
    Date(i32),
    /// A decimal.
    Decimal {
        /// The unscaled value, big-endian two's complement.
        unscaled: Bytes,
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// Microseconds since midnight.
    Time(i64),
    /// A list's elements.
    List(Vec<Cell>),
    /// A nested record's cells, one per column of its type, in order.
    Record(Vec<Cell>),
}

/// A payload decoded against its schema: the columns of the schema's record type and the
/// payload's cells, one per column (nulls included).
#[derive(Clone, Debug, PartialEq)]
pub struct TypedRecord {
    /// The record type, shared by every payload of the same schema (and message).
    pub columns: Arc<[Column]>,
    /// One cell per column.
    pub cells: Vec<Cell>,
}

/// What a catalog makes of one framed payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Typing {
    /// No columns for it: the schema id is unknown (or its schema cannot be parsed), or the
    /// payload names no type of the schema (Protobuf message indexes that point nowhere).
    Untyped,
    /// The schema maps to columns, but the payload does not decode with it (a record produced
    /// to a topic that checks ids only, or none): the columns, and why.
    Undecodable(Arc<[Column]>, String),
    /// Decoded.
    Typed(TypedRecord),
}

/// Widens `old` into a record type that also holds every column of `new`: a column of `new`
/// that `old` lacks is added (optional, since earlier records do not have it); a column both
/// have keeps `old`'s type where `new`'s fits in it, takes `new`'s where `old`'s fits in that
/// (`Int32` into `Int64`, `Float` into `Double`, nested records merged), and is otherwise kept
/// as `old` has it. Every column of `old` stays, optional if `new` lacks it. Returns `None`
/// when the result is `old` as it was.
#[must_use]
pub fn widen(old: &[Column], new: &[Column]) -> Option<Vec<Column>> {
    let merged = merge(old, new);
    (merged != old).then_some(merged)
}

fn merge(old: &[Column], new: &[Column]) -> Vec<Column> {
    let mut out: Vec<Column> = old
        .iter()
        .map(|o| match new.iter().find(|n| n.name == o.name) {
            Some(n) => Column::new(o.name.clone(), merge_type(&o.ty, &n.ty), o.required && n.required),
            None => Column::new(o.name.clone(), o.ty.clone(), false),
        })
        .collect();
    for n in new {
        if !old.iter().any(|o| o.name == n.name) {
            out.push(Column::new(n.name.clone(), n.ty.clone(), false));
        }
    }
    out
}

fn merge_type(old: &ColumnType, new: &ColumnType) -> ColumnType {
    use ColumnType::{List, Record, Scalar as S};
    match (old, new) {
        (S(Scalar::Int32), S(Scalar::Int64)) => S(Scalar::Int64),
        (S(Scalar::Float), S(Scalar::Double)) => S(Scalar::Double),
        (List(o), List(n)) => List(Box::new(merge_type(o, n))),
        (Record(o), Record(n)) => Record(merge(o, n)),
        _ => old.clone(),
    }
}

/// Fits `cell`, decoded for a column of type `from`, to a column of type `to` that [`widen`]
/// made from it: widens integers and floats, rebuilds nested records by column name. A cell
/// that does not fit becomes [`Cell::Null`], never a made-up value.
#[must_use]
pub fn fit(cell: Cell, from: &ColumnType, to: &ColumnType) -> Cell {
    use ColumnType::{List, Record, Scalar as S};
    if from == to {
        return cell;
    }
    match (cell, from, to) {
        (Cell::Null, _, _) => Cell::Null,
        (Cell::Int32(v), S(Scalar::Int32), S(Scalar::Int64)) => Cell::Int64(i64::from(v)),
        (Cell::Float(v), S(Scalar::Float), S(Scalar::Double)) => Cell::Double(f64::from(v)),
        (Cell::List(items), List(f), List(t)) => Cell::List(items.into_iter().map(|c| fit(c, f, t)).collect()),
        (Cell::Record(cells), Record(f), Record(t)) => Cell::Record(fit_row(cells, f, t)),
        _ => Cell::Null,
    }
}

/// [`fit`] for a whole row: `cells` follow `from`'s columns; the answer follows `to`'s.
#[must_use]
pub fn fit_row(cells: Vec<Cell>, from: &[Column], to: &[Column]) -> Vec<Cell> {
    let mut by_name: Vec<Option<(&Column, Cell)>> = from.iter().zip(cells).map(Some).collect();
    to.iter()
        .map(|t| {
            by_name
                .iter_mut()
                .find(|slot| slot.as_ref().is_some_and(|(c, _)| c.name == t.name))
                .and_then(Option::take)
                .map_or(Cell::Null, |(c, cell)| fit(cell, &c.ty, &t.ty))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, scalar: Scalar, required: bool) -> Column {
        Column::new(name, ColumnType::Scalar(scalar), required)
    }

    #[test]
    fn widening_adds_new_columns_as_optional_and_keeps_old_ones() {
        let v1 = vec![s("id", Scalar::Int32, true), s("name", Scalar::String, true)];
        let v2 = vec![s("id", Scalar::Int64, true), s("email", Scalar::String, true)];
        let merged = widen(&v1, &v2).expect("a change");
        assert_eq!(
            merged,
            vec![s("id", Scalar::Int64, true), s("name", Scalar::String, false), s("email", Scalar::String, false)]
        );
        assert_eq!(widen(&merged, &v1), None, "v1 fits in the merged type");
        assert_eq!(widen(&merged, &v2), None, "so does v2");
    }

    #[test]
    fn a_conflicting_type_keeps_the_old_one_and_its_cells_become_null() {
        let old = vec![s("x", Scalar::String, true)];
        let new = vec![s("x", Scalar::Int64, true)];
        assert_eq!(widen(&old, &new), None);
        assert_eq!(fit_row(vec![Cell::Int64(7)], &new, &old), vec![Cell::Null]);
    }

    #[test]
    fn rows_are_fitted_by_name_and_widened() {
        let nested_v1 = ColumnType::Record(vec![s("a", Scalar::Float, true)]);
        let from = vec![s("n", Scalar::Int32, true), Column::new("r", nested_v1.clone(), true)];
        let to = widen(
            &[s("z", Scalar::Bool, true)],
            &[
                s("n", Scalar::Int64, true),
                Column::new(
                    "r",
                    ColumnType::Record(vec![s("b", Scalar::Bool, true), s("a", Scalar::Double, true)]),
                    true,
                ),
            ],
        )
        .expect("a change");
        let to = widen(&to, &from).map_or(to, |t| t);
        let row = fit_row(vec![Cell::Int32(-3), Cell::Record(vec![Cell::Float(1.5)])], &from, &to);
        assert_eq!(row, vec![Cell::Null, Cell::Int64(-3), Cell::Record(vec![Cell::Null, Cell::Double(1.5)])]);
    }
}
