//! An Avro schema as typed columns, and a datum as cells ([`kelp_core::typed`]).
//!
//! The mapping (docs/SCHEMA_TOPICS.md has the table): a top-level record's fields are the
//! columns (any other top-level type is one column, `value`); `boolean`, `int`, `long`,
//! `float`, `double`, `bytes`, `string` map to their scalars; `enum` to its symbol as a string;
//! `fixed` to bytes; `array` to a list; `map` to a list of `key`/`value` records; a union with
//! `null` and one other branch to that branch, optional; any other union to a record with one
//! optional column per branch, of which one is set; logical types `date`, `time-millis`,
//! `time-micros`, `timestamp-millis`, `timestamp-micros` and `decimal` to SeaweedMQ's date,
//! time, timestamp and decimal (times and timestamps in microseconds). A record that contains
//! itself is cut where it recurs: that column holds the nested datum's Avro bytes.

use bytes::Bytes;
use kelp_core::typed::{Cell, Column, ColumnType, MAX_COLUMNS, MAX_NESTING, Scalar, max_cells};

use super::{AvroSchema, Datum, Json, Kind, Node, Prim, Props};

/// The column a non-record schema's value goes in.
pub const VALUE_COLUMN: &str = "value";

/// A column's type with how a datum is read into it.
#[derive(Debug, Clone)]
enum Plan {
    Null,
    Bool,
    Int(IntAs),
    Long(LongAs),
    Float,
    Double,
    Bytes,
    Decimal {
        precision: u32,
        scale: u32,
    },
    String,
    Enum(Vec<String>),
    Fixed {
        size: usize,
        decimal: Option<(u32, u32)>,
    },
    Array(Box<Plan>),
    Map(Box<Plan>),
    /// A union of null and one branch: the index of the null branch, the other's index and plan.
    Optional {
        null: usize,
        branch: usize,
        plan: Box<Plan>,
    },
    /// Any other union: a plan per branch (`None` for null).
    Union(Vec<Option<Plan>>),
    Record(Vec<Plan>),
    /// A recursive record, kept as its Avro bytes.
    Raw(Node),
}

#[derive(Debug, Clone, Copy)]
enum IntAs {
    Int,
    Date,
    TimeMillis,
}

#[derive(Debug, Clone, Copy)]
enum LongAs {
    Long,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
}

/// An Avro schema's columns and the plan to read its datums into cells.
#[derive(Debug, Clone)]
pub struct AvroColumns {
    columns: Vec<Column>,
    plan: Plan,
    /// Whether the top level is a record (its fields are the columns).
    record: bool,
}

fn logical(props: &Props) -> Option<&str> {
    props
        .iter()
        .find(|(k, _)| k == "logicalType")
        .and_then(|(_, v)| if let Json::Str(s) = v { Some(s.as_str()) } else { None })
}

fn number(props: &Props, key: &str) -> Option<u32> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| if let Json::Num(n) = v { n.as_u64() } else { None })
        .and_then(|n| u32::try_from(n).ok())
}

fn decimal(props: &Props) -> Option<(u32, u32)> {
    (logical(props) == Some("decimal"))
        .then(|| (number(props, "precision").unwrap_or(0), number(props, "scale").unwrap_or(0)))
}

impl AvroSchema {
    /// The schema's columns and how its datums are read into them.
    pub fn columns(&self) -> AvroColumns {
        let mut stack = Shaping::default();
        let (ty, plan, _) = self.plan(&self.root, &mut stack);
        match (&self.root, ty) {
            (Node::Named(i), ColumnType::Record(columns)) if matches!(self.named(*i).kind, Kind::Record { .. }) => {
                AvroColumns { columns, plan, record: true }
            }
            (_, ty) => {
                let nullable = matches!(plan, Plan::Optional { .. } | Plan::Null);
                AvroColumns { columns: vec![Column::new(VALUE_COLUMN, ty, !nullable)], plan, record: false }
            }
        }
    }

    /// A node's column type, its plan, and whether it is never null. Past [`MAX_NESTING`]
    /// levels or [`MAX_COLUMNS`] columns, the node is kept whole, as its Avro bytes.
    fn plan(&self, node: &Node, stack: &mut Shaping) -> (ColumnType, Plan, bool) {
        if stack.depth >= MAX_NESTING || stack.columns >= MAX_COLUMNS {
            return (ColumnType::Scalar(Scalar::Bytes), Plan::Raw(node.clone()), true);
        }
        stack.depth += 1;
        let planned = self.plan_node(node, stack);
        stack.depth -= 1;
        planned
    }

    fn plan_node(&self, node: &Node, stack: &mut Shaping) -> (ColumnType, Plan, bool) {
        let s = |x| ColumnType::Scalar(x);
        match node {
            Node::Prim(p, props) => match p {
                Prim::Null => (s(Scalar::String), Plan::Null, false),
                Prim::Boolean => (s(Scalar::Bool), Plan::Bool, true),
                Prim::Int => match logical(props) {
                    Some("date") => (s(Scalar::Date), Plan::Int(IntAs::Date), true),
                    Some("time-millis") => (s(Scalar::Time), Plan::Int(IntAs::TimeMillis), true),
                    _ => (s(Scalar::Int32), Plan::Int(IntAs::Int), true),
                },
                Prim::Long => match logical(props) {
                    Some("time-micros") => (s(Scalar::Time), Plan::Long(LongAs::TimeMicros), true),
                    Some("timestamp-millis") => (s(Scalar::Timestamp), Plan::Long(LongAs::TimestampMillis), true),
                    Some("timestamp-micros") => (s(Scalar::Timestamp), Plan::Long(LongAs::TimestampMicros), true),
                    _ => (s(Scalar::Int64), Plan::Long(LongAs::Long), true),
                },
                Prim::Float => (s(Scalar::Float), Plan::Float, true),
                Prim::Double => (s(Scalar::Double), Plan::Double, true),
                Prim::Bytes => match decimal(props) {
                    Some((precision, scale)) => (s(Scalar::Decimal), Plan::Decimal { precision, scale }, true),
                    None => (s(Scalar::Bytes), Plan::Bytes, true),
                },
                Prim::String => (s(Scalar::String), Plan::String, true),
            },
            Node::Array(items, _) => {
                let (ty, plan, required) = self.plan(items, stack);
                // A list holds no nulls: nullable items are wrapped in a one-column record.
                let ty = if required { ty } else { ColumnType::Record(vec![Column::new("element", ty, false)]) };
                (ColumnType::List(Box::new(ty)), Plan::Array(Box::new(wrap(plan, required))), true)
            }
            Node::Map(values, _) => {
                let (ty, plan, required) = self.plan(values, stack);
                let entry = vec![Column::new("key", s(Scalar::String), true), Column::new("value", ty, required)];
                (ColumnType::List(Box::new(ColumnType::Record(entry))), Plan::Map(Box::new(plan)), true)
            }
            Node::Union(branches) => {
                let null = branches.iter().position(|b| matches!(b, Node::Prim(Prim::Null, _)));
                let others: Vec<usize> = (0..branches.len()).filter(|&i| Some(i) != null).collect();
                match (null, others.as_slice()) {
                    (Some(null), [branch]) => {
                        let (ty, plan, _) = self.plan(&branches[*branch], stack);
                        (ty, Plan::Optional { null, branch: *branch, plan: Box::new(plan) }, false)
                    }
                    (None, [branch]) => {
                        let (ty, plan, required) = self.plan(&branches[*branch], stack);
                        (ty, Plan::Union(vec![Some(plan)]), required)
                    }
                    _ => {
                        let mut columns = Vec::new();
                        let mut plans = Vec::new();
                        for (i, b) in branches.iter().enumerate() {
                            if Some(i) == null {
                                plans.push(None);
                                continue;
                            }
                            let (ty, plan, _) = self.plan(b, stack);
                            stack.columns += 1;
                            columns.push(Column::new(self.branch_name(b), ty, false));
                            plans.push(Some(plan));
                        }
                        (ColumnType::Record(columns), Plan::Union(plans), null.is_none())
                    }
                }
            }
            Node::Named(i) => {
                let named = self.named(*i);
                match &named.kind {
                    Kind::Enum { symbols, .. } => (s(Scalar::String), Plan::Enum(symbols.clone()), true),
                    Kind::Fixed { size } => {
                        let size = usize::try_from(*size).unwrap_or(usize::MAX);
                        match decimal(&named.props) {
                            Some(d) => (s(Scalar::Decimal), Plan::Fixed { size, decimal: Some(d) }, true),
                            None => (s(Scalar::Bytes), Plan::Fixed { size, decimal: None }, true),
                        }
                    }
                    Kind::Record { fields, .. } => {
                        if stack.records.contains(i) {
                            return (s(Scalar::Bytes), Plan::Raw(node.clone()), true);
                        }
                        stack.records.push(*i);
                        let mut columns = Vec::with_capacity(fields.len());
                        let mut plans = Vec::with_capacity(fields.len());
                        for f in fields {
                            let (ty, plan, required) = self.plan(&f.ty, stack);
                            stack.columns += 1;
                            columns.push(Column::new(f.name.clone(), ty, required));
                            plans.push(plan);
                        }
                        stack.records.pop();
                        (ColumnType::Record(columns), Plan::Record(plans), true)
                    }
                }
            }
        }
    }

    /// A union branch's column name: the type's name, dots made underscores.
    fn branch_name(&self, node: &Node) -> String {
        let name = match node {
            Node::Prim(p, props) => logical(props).unwrap_or(p.name()).to_owned(),
            Node::Array(..) => "array".to_owned(),
            Node::Map(..) => "map".to_owned(),
            Node::Union(_) => "union".to_owned(),
            Node::Named(i) => self.named(*i).full.clone(),
        };
        name.replace(['.', '-'], "_")
    }

    /// Decodes `payload`, a datum of this schema, into one cell per column of `columns`.
    ///
    /// # Errors
    /// Why the payload is not a datum of the schema ([`AvroSchema::check_datum`]'s reasons).
    pub fn decode_cells(&self, columns: &AvroColumns, payload: &[u8]) -> Result<Vec<Cell>, String> {
        // The bounded walk first: once it passes, every count and length below is known to fit
        // in the payload.
        self.check_datum(payload)?;
        let max_steps = u64::try_from(max_cells(payload.len())).unwrap_or(u64::MAX);
        let mut r = Datum { bytes: payload, at: 0, schema: self, steps: 0, max_steps };
        let cell = r.cell(&columns.plan)?;
        Ok(match (columns.record, cell) {
            (true, Cell::Record(cells)) => cells,
            (_, cell) => vec![cell],
        })
    }
}

/// Where the column mapping is: the records being expanded (a record within itself is cut),
/// how deep, and how many columns so far.
#[derive(Default)]
struct Shaping {
    records: Vec<usize>,
    depth: usize,
    columns: usize,
}

/// The plan for a list item that may be null: read into the one-column `element` record.
fn wrap(plan: Plan, required: bool) -> Plan {
    if required { plan } else { Plan::Record(vec![plan]) }
}

impl Datum<'_> {
    fn cell(&mut self, plan: &Plan) -> Result<Cell, String> {
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(self.fail("more typed values than the payload's length allows"));
        }
        Ok(match plan {
            Plan::Null => Cell::Null,
            Plan::Bool => Cell::Bool(self.take(1, "a boolean")?[0] == 1),
            Plan::Int(how) => {
                let v = i32::try_from(self.long()?).map_err(|_| self.fail("an int out of range"))?;
                match how {
                    IntAs::Int => Cell::Int32(v),
                    IntAs::Date => Cell::Date(v),
                    IntAs::TimeMillis => Cell::Time(i64::from(v) * 1000),
                }
            }
            Plan::Long(how) => {
                let v = self.long()?;
                match how {
                    LongAs::Long => Cell::Int64(v),
                    LongAs::TimeMicros => Cell::Time(v),
                    LongAs::TimestampMicros => Cell::Timestamp(v),
                    // A millisecond timestamp beyond what microseconds can count has no cell.
                    LongAs::TimestampMillis => v.checked_mul(1000).map_or(Cell::Null, Cell::Timestamp),
                }
            }
            Plan::Float => {
                let b = self.take(4, "a float")?;
                Cell::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            Plan::Double => {
                let b = self.take(8, "a double")?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Cell::Double(f64::from_le_bytes(a))
            }
            Plan::Bytes => {
                let n = self.len("bytes length")?;
                Cell::Bytes(Bytes::copy_from_slice(self.take(n, "bytes")?))
            }
            Plan::Decimal { precision, scale } => {
                let n = self.len("bytes length")?;
                let unscaled = Bytes::copy_from_slice(self.take(n, "bytes")?);
                Cell::Decimal { unscaled, precision: *precision, scale: *scale }
            }
            Plan::String => {
                let n = self.len("string length")?;
                let text = self.take(n, "a string")?;
                Cell::String(String::from_utf8(text.to_vec()).map_err(|_| self.fail("a string that is not UTF-8"))?)
            }
            Plan::Enum(symbols) => Cell::String(symbols[self.index(symbols.len(), "an enum symbol")?].clone()),
            Plan::Fixed { size, decimal } => {
                let bytes = Bytes::copy_from_slice(self.take(*size, "a fixed value")?);
                match decimal {
                    Some((precision, scale)) => Cell::Decimal { unscaled: bytes, precision: *precision, scale: *scale },
                    None => Cell::Bytes(bytes),
                }
            }
            Plan::Array(item) => {
                let mut items = Vec::new();
                self.each_block(|r| {
                    items.push(r.cell(item)?);
                    Ok(())
                })?;
                Cell::List(items)
            }
            Plan::Map(value) => {
                let mut entries = Vec::new();
                self.each_block(|r| {
                    let key = r.cell(&Plan::String)?;
                    let value = r.cell(value)?;
                    entries.push(Cell::Record(vec![key, value]));
                    Ok(())
                })?;
                Cell::List(entries)
            }
            Plan::Optional { null, branch, plan } => {
                let i = self.long()?;
                match usize::try_from(i) {
                    Ok(i) if i == *null => Cell::Null,
                    Ok(i) if i == *branch => self.cell(plan)?,
                    _ => return Err(self.fail(&format!("a union branch index {i}"))),
                }
            }
            Plan::Union(plans) => {
                let i = self.index(plans.len(), "a union branch")?;
                match (&plans[i], plans.len()) {
                    (None, _) => Cell::Null,
                    // A union of one branch is that branch.
                    (Some(plan), 1) => self.cell(plan)?,
                    (Some(plan), _) => {
                        let mut value = Some(self.cell(plan)?);
                        // One column per non-null branch; the others stay null.
                        let mut cells = Vec::new();
                        for (j, p) in plans.iter().enumerate() {
                            if p.is_some() {
                                cells.push(if j == i { value.take().unwrap_or(Cell::Null) } else { Cell::Null });
                            }
                        }
                        Cell::Record(cells)
                    }
                }
            }
            Plan::Record(fields) => Cell::Record(fields.iter().map(|f| self.cell(f)).collect::<Result<_, _>>()?),
            Plan::Raw(node) => {
                let start = self.at;
                self.node(node, 0)?;
                Cell::Bytes(Bytes::copy_from_slice(&self.bytes[start..self.at]))
            }
        })
    }

    /// Array or map blocks, each item read by `item`.
    fn each_block(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), String>) -> Result<(), String> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.len("block size")?;
            }
            if self.steps.saturating_add(count.unsigned_abs()) > self.max_steps {
                return Err(self.fail("more typed values than the payload's length allows"));
            }
            for _ in 0..count.unsigned_abs() {
                item(self)?;
            }
        }
    }
}

impl AvroColumns {
    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zz(v: i64) -> Vec<u8> {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn s(name: &str, x: Scalar, required: bool) -> Column {
        Column::new(name, ColumnType::Scalar(x), required)
    }

    const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
        {"name":"id","type":"long"},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"attrs","type":{"type":"map","values":"int"}},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"day","type":{"type":"int","logicalType":"date"}},
        {"name":"ship","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}},
        {"name":"either","type":["int","string"]},
        {"name":"maybe","type":{"type":"array","items":["null","double"]}}
    ]}"#;

    #[test]
    fn a_record_maps_to_columns_and_its_datum_to_cells() {
        let schema = super::super::parse(ORDER, &[]).expect("schema");
        let cols = schema.columns();
        let list = |t| ColumnType::List(Box::new(t));
        let rec = |c| ColumnType::Record(c);
        assert_eq!(
            cols.columns(),
            &[
                s("id", Scalar::Int64, true),
                s("note", Scalar::String, false),
                s("status", Scalar::String, true),
                Column::new("tags", list(ColumnType::Scalar(Scalar::String)), true),
                Column::new(
                    "attrs",
                    list(rec(vec![s("key", Scalar::String, true), s("value", Scalar::Int32, true)])),
                    true
                ),
                s("price", Scalar::Decimal, true),
                s("at", Scalar::Timestamp, true),
                s("day", Scalar::Date, true),
                Column::new("ship", rec(vec![s("city", Scalar::String, true)]), true),
                Column::new(
                    "either",
                    rec(vec![s("int", Scalar::Int32, false), s("string", Scalar::String, false)]),
                    true
                ),
                Column::new("maybe", list(rec(vec![s("element", Scalar::Double, false)])), true),
            ][..]
        );
        let mut d = Vec::new();
        d.extend(zz(42)); // id
        d.extend(zz(0)); // note: null
        d.extend(zz(1)); // status PAID
        d.extend(zz(2)); // tags: 2 items
        for t in ["a", "b"] {
            d.extend(zz(1));
            d.extend(t.as_bytes());
        }
        d.extend(zz(0));
        d.extend(zz(-1)); // attrs: a block of 1 with its size
        d.extend(zz(3));
        d.extend(zz(1));
        d.push(b'k');
        d.extend(zz(7));
        d.extend(zz(0));
        d.extend(zz(2)); // price: 2 bytes
        d.extend([0x01, 0x00]);
        d.extend(zz(1_700_000_000_123)); // at
        d.extend(zz(19_000)); // day
        d.extend(zz(4)); // ship.city
        d.extend(b"Oslo");
        d.extend(zz(1)); // either: string
        d.extend(zz(1));
        d.push(b'x');
        d.extend(zz(2)); // maybe: [null, 2.5]
        d.extend(zz(0));
        d.extend(zz(1));
        d.extend(2.5f64.to_le_bytes());
        d.extend(zz(0));
        let cells = schema.decode_cells(&cols, &d).expect("decodes");
        assert_eq!(
            cells,
            vec![
                Cell::Int64(42),
                Cell::Null,
                Cell::String("PAID".into()),
                Cell::List(vec![Cell::String("a".into()), Cell::String("b".into())]),
                Cell::List(vec![Cell::Record(vec![Cell::String("k".into()), Cell::Int32(7)])]),
                Cell::Decimal { unscaled: Bytes::from_static(&[1, 0]), precision: 9, scale: 2 },
                Cell::Timestamp(1_700_000_000_123_000),
                Cell::Date(19_000),
                Cell::Record(vec![Cell::String("Oslo".into())]),
                Cell::Record(vec![Cell::Null, Cell::String("x".into())]),
                Cell::List(vec![Cell::Record(vec![Cell::Null]), Cell::Record(vec![Cell::Double(2.5)])]),
            ]
        );
        assert!(schema.decode_cells(&cols, &d[..d.len() - 1]).is_err(), "a cut datum is refused");
    }

    #[test]
    fn a_recursive_record_keeps_the_recurring_part_as_avro_bytes() {
        let schema = super::super::parse(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#,
            &[],
        )
        .expect("schema");
        let cols = schema.columns();
        assert_eq!(cols.columns(), &[s("v", Scalar::Int32, true), s("next", Scalar::Bytes, false)][..]);
        // v=1, next = Node{v=2, next=null}
        let d = [zz(1), zz(1), zz(2), zz(0)].concat();
        let cells = schema.decode_cells(&cols, &d).expect("decodes");
        assert_eq!(cells, vec![Cell::Int32(1), Cell::Bytes(Bytes::from([zz(2), zz(0)].concat()))]);
    }

    /// Columns in all, nested ones included, and the deepest nesting.
    fn size(columns: &[Column]) -> (usize, usize) {
        fn ty(t: &ColumnType) -> (usize, usize) {
            match t {
                ColumnType::Scalar(_) => (0, 0),
                ColumnType::List(i) => {
                    let (n, d) = ty(i);
                    (n, d + 1)
                }
                ColumnType::Record(c) => {
                    let (n, d) = size(c);
                    (n, d + 1)
                }
            }
        }
        columns.iter().map(|c| ty(&c.ty)).fold((columns.len(), 0), |(n, d), (cn, cd)| (n + cn, d.max(cd)))
    }

    #[test]
    fn a_payload_that_would_decode_to_far_more_cells_than_bytes_is_not_typed() {
        let schema = super::super::parse(r#"{"type":"array","items":"null"}"#, &[]).expect("schema");
        let cols = schema.columns();
        // 65536 nulls in four bytes: a valid datum, but not one to build a row for.
        let payload = [zz(65536), zz(0)].concat();
        assert!(schema.check_datum(&payload).is_ok());
        let err = schema.decode_cells(&cols, &payload).unwrap_err();
        assert!(err.contains("more typed values"), "{err}");
        assert_eq!(
            schema.decode_cells(&cols, &[zz(3), zz(0)].concat()).expect("a few"),
            vec![Cell::List(vec![Cell::Record(vec![Cell::Null]); 3])]
        );
    }

    #[test]
    fn columns_stop_at_the_nesting_and_column_limits() {
        // Twenty levels of records, each with two fields of the next type: 2^20 columns if
        // expanded, cut instead.
        let mut ty = r#""int""#.to_owned();
        for i in 0..20 {
            ty = format!(
                r#"{{"type":"record","name":"R{i}","fields":[{{"name":"a","type":{ty}}},{{"name":"b","type":"R{}"}}]}}"#,
                i.max(1) - 1
            );
            if i == 0 {
                ty = r#"{"type":"record","name":"R0","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}"#
                    .to_owned();
            }
        }
        let schema = super::super::parse(&ty, &[]).expect("schema");
        let (n, depth) = size(schema.columns().columns());
        assert!(depth < MAX_NESTING, "nesting {depth}");
        assert!(n <= 2 * MAX_COLUMNS, "{n} columns");
    }

    #[test]
    fn a_schema_that_is_not_a_record_is_one_value_column() {
        let schema = super::super::parse(r#"["null","string"]"#, &[]).expect("schema");
        let cols = schema.columns();
        assert_eq!(cols.columns(), &[s(VALUE_COLUMN, Scalar::String, false)][..]);
        assert_eq!(schema.decode_cells(&cols, &zz(0)).expect("null"), vec![Cell::Null]);
    }
}
