//! A JSON Schema as typed columns, and a JSON document as cells ([`kelp_core::typed`]).
//!
//! The mapping (docs/SCHEMA_TOPICS.md has the table): an object schema's `properties` are the
//! columns (any other top-level schema is one column, `value`), required when listed in
//! `required` and not nullable; `"type"` `boolean`, `integer`, `number`, `string` map to bool,
//! int64, double, string; `object` with `properties` to a nested record; `array` with one
//! `items` schema to a list; `["T", "null"]` (or a `oneOf`/`anyOf` of a schema and
//! `{"type": "null"}`) to T, optional; local `$ref`s (`#/definitions/...`, `#/$defs/...`) are
//! followed. Anything else (other unions, tuples, objects without properties, remote refs, a
//! schema within itself, and what lies past `MAX_NESTING` levels or `MAX_COLUMNS` columns) is
//! a string column holding the value's JSON text. A value
//! whose JSON type is not its column's (a topic that checks ids only lets such records in) is
//! null in that column.

use kelp_core::typed::{Cell, Column, ColumnType, MAX_COLUMNS, MAX_NESTING, Scalar, max_cells};
use serde_json::Value;

use super::JsonSchema;

/// The column a non-object schema's value goes in.
const VALUE_COLUMN: &str = "value";

#[derive(Debug, Clone)]
enum Plan {
    /// The value's JSON text.
    Text,
    Bool,
    Int,
    Number,
    Str,
    /// Items, and whether each is wrapped in a one-column `element` record (nullable items).
    List(Box<Plan>, bool),
    Record(Vec<(String, Plan)>),
}

/// A JSON Schema's columns and how documents are read into them.
#[derive(Debug, Clone)]
pub struct JsonColumns {
    columns: Vec<Column>,
    plan: Plan,
    record: bool,
}

impl JsonColumns {
    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

struct Mapper<'a> {
    root: &'a Value,
    /// The `$ref`s being followed (one met again is a schema within itself: cut there).
    refs: Vec<&'a str>,
    /// Columns made so far.
    columns: usize,
}

impl<'a> Mapper<'a> {
    /// The type of schema `s`, its plan, and whether it admits null. Past [`MAX_NESTING`]
    /// levels, [`MAX_COLUMNS`] columns, or within itself, a value is kept as its JSON text.
    fn map(&mut self, s: &'a Value, depth: usize) -> (ColumnType, Plan, bool) {
        let text = (ColumnType::Scalar(Scalar::String), Plan::Text, true);
        if depth >= MAX_NESTING || self.columns >= MAX_COLUMNS {
            return text;
        }
        match s.get("$ref").and_then(Value::as_str) {
            None => self.map_schema(s, depth),
            Some(r) => {
                let Some(target) = r.strip_prefix('#').and_then(|p| self.root.pointer(p)) else { return text };
                if self.refs.contains(&r) {
                    return text;
                }
                self.refs.push(r);
                let mapped = self.map_schema(target, depth);
                self.refs.pop();
                mapped
            }
        }
    }

    fn map_schema(&mut self, s: &'a Value, depth: usize) -> (ColumnType, Plan, bool) {
        let text = (ColumnType::Scalar(Scalar::String), Plan::Text, true);
        let Some(obj) = s.as_object() else { return text };
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(branches)) = obj.get(key) {
                let non_null: Vec<&Value> = branches.iter().filter(|b| !is_null_schema(b)).collect();
                return match non_null.as_slice() {
                    [one] if non_null.len() < branches.len() => {
                        let (ty, plan, _) = self.map(one, depth + 1);
                        (ty, plan, true)
                    }
                    _ => text,
                };
            }
        }
        let (ty, nullable) = match obj.get("type") {
            Some(Value::String(t)) => (Some(t.as_str()), t == "null"),
            Some(Value::Array(ts)) => {
                let names: Vec<&str> = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
                let nullable = names.len() < ts.len();
                match names.as_slice() {
                    [one] => (Some(*one), nullable),
                    _ => return text,
                }
            }
            None if obj.contains_key("properties") => (Some("object"), false),
            None if obj.contains_key("items") => (Some("array"), false),
            _ => return text,
        };
        let s = |x| ColumnType::Scalar(x);
        match ty {
            Some("boolean") => (s(Scalar::Bool), Plan::Bool, nullable),
            Some("integer") => (s(Scalar::Int64), Plan::Int, nullable),
            Some("number") => (s(Scalar::Double), Plan::Number, nullable),
            Some("string") => (s(Scalar::String), Plan::Str, nullable),
            Some("object") => match obj.get("properties").and_then(Value::as_object) {
                Some(props) if !props.is_empty() => {
                    let required: Vec<&str> = obj
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let mut columns = Vec::with_capacity(props.len());
                    let mut plans = Vec::with_capacity(props.len());
                    for (name, p) in props {
                        let (ty, plan, nullable) = self.map(p, depth + 1);
                        self.columns += 1;
                        columns.push(Column::new(name.clone(), ty, required.contains(&name.as_str()) && !nullable));
                        plans.push((name.clone(), plan));
                    }
                    (ColumnType::Record(columns), Plan::Record(plans), nullable)
                }
                _ => (s(Scalar::String), Plan::Text, nullable),
            },
            Some("array") => match obj.get("items") {
                Some(items) if items.is_object() => {
                    let (ty, plan, item_nullable) = self.map(items, depth + 1);
                    let ty =
                        if item_nullable { ColumnType::Record(vec![Column::new("element", ty, false)]) } else { ty };
                    (ColumnType::List(Box::new(ty)), Plan::List(Box::new(plan), item_nullable), nullable)
                }
                _ => (s(Scalar::String), Plan::Text, nullable),
            },
            _ => text,
        }
    }
}

fn is_null_schema(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
}

/// `v` as a cell of `plan`; `Err` past `budget` cells.
fn cell(plan: &Plan, v: &Value, budget: &mut usize) -> Result<Cell, String> {
    *budget = budget.checked_sub(1).ok_or_else(|| "more typed values than the payload's length allows".to_owned())?;
    if v.is_null() {
        return Ok(Cell::Null);
    }
    Ok(match plan {
        Plan::Text => Cell::String(v.to_string()),
        Plan::Bool => v.as_bool().map_or(Cell::Null, Cell::Bool),
        Plan::Int => v.as_i64().map_or(Cell::Null, Cell::Int64),
        Plan::Number => v.as_f64().map_or(Cell::Null, Cell::Double),
        Plan::Str => v.as_str().map_or(Cell::Null, |s| Cell::String(s.to_owned())),
        Plan::List(item, wrapped) => match v.as_array() {
            Some(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    let c = cell(item, i, budget)?;
                    out.push(if *wrapped { Cell::Record(vec![c]) } else { c });
                }
                Cell::List(out)
            }
            None => Cell::Null,
        },
        Plan::Record(fields) => match v.as_object() {
            Some(o) => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, p) in fields {
                    // An absent property is a null cell, and counts like one.
                    out.push(cell(p, o.get(name).unwrap_or(&Value::Null), budget)?);
                }
                Cell::Record(out)
            }
            None => Cell::Null,
        },
    })
}

impl JsonSchema {
    /// The schema's columns and how documents are read into them.
    pub fn columns(&self) -> JsonColumns {
        let root: Value = serde_json::from_str(&self.canonical).unwrap_or(Value::Bool(true));
        let (ty, plan, nullable) = Mapper { root: &root, refs: Vec::new(), columns: 0 }.map(&root, 0);
        match (ty, plan) {
            (ColumnType::Record(columns), plan @ Plan::Record(_)) => JsonColumns { columns, plan, record: true },
            (ty, plan) => JsonColumns { columns: vec![Column::new(VALUE_COLUMN, ty, !nullable)], plan, record: false },
        }
    }

    /// Decodes a JSON document into one cell per column of `columns`.
    ///
    /// # Errors
    /// The payload is not JSON.
    pub fn decode_cells(&self, columns: &JsonColumns, payload: &[u8]) -> Result<Vec<Cell>, String> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
        Ok(match (columns.record, cell(&columns.plan, &value, &mut max_cells(payload.len()))?) {
            (true, Cell::Record(cells)) => cells,
            (true, _) => vec![Cell::Null; columns.columns.len()],
            (false, c) => vec![c],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, x: Scalar, required: bool) -> Column {
        Column::new(name, ColumnType::Scalar(x), required)
    }

    #[test]
    fn an_object_schema_maps_to_columns_and_a_document_to_cells() {
        let schema = super::super::parse(
            r##"{"type":"object","title":"Order","required":["id","tags"],"properties":{
                "id":{"type":"integer"},
                "note":{"type":["string","null"]},
                "tags":{"type":"array","items":{"type":"string"}},
                "ship":{"$ref":"#/definitions/Address"},
                "any":{"oneOf":[{"type":"string"},{"type":"integer"}]},
                "price":{"type":"number"}
            },"definitions":{"Address":{"type":"object","properties":{"city":{"type":"string"}}}}}"##,
            &[],
        )
        .expect("schema");
        let cols = schema.columns();
        assert_eq!(
            cols.columns(),
            &[
                s("any", Scalar::String, false),
                s("id", Scalar::Int64, true),
                s("note", Scalar::String, false),
                s("price", Scalar::Double, false),
                Column::new("ship", ColumnType::Record(vec![s("city", Scalar::String, false)]), false),
                Column::new("tags", ColumnType::List(Box::new(ColumnType::Scalar(Scalar::String))), true),
            ][..]
        );
        let doc = br#"{"id": 7, "tags": ["a"], "ship": {"city": "Oslo"}, "any": {"k": [1, 2]}, "price": "cheap"}"#;
        assert_eq!(
            schema.decode_cells(&cols, doc).expect("decodes"),
            vec![
                Cell::String(r#"{"k":[1,2]}"#.into()),
                Cell::Int64(7),
                Cell::Null,
                Cell::Null,
                Cell::Record(vec![Cell::String("Oslo".into())]),
                Cell::List(vec![Cell::String("a".into())]),
            ],
            "a price that is not a number (a topic checking ids only) is null, not zero"
        );
        assert!(schema.decode_cells(&cols, b"{").is_err());
    }

    #[test]
    fn a_schema_within_itself_is_cut_to_json_text_and_large_documents_are_bounded() {
        let tree =
            r##"{"type":"object","properties":{"v":{"type":"integer"},"left":{"$ref":"#"},"right":{"$ref":"#"}}}"##;
        let schema = super::super::parse(tree, &[]).expect("schema");
        let cols = schema.columns();
        let inner = ColumnType::Record(vec![
            s("left", Scalar::String, false),
            s("right", Scalar::String, false),
            s("v", Scalar::Int64, false),
        ]);
        assert_eq!(
            cols.columns(),
            &[
                Column::new("left", inner.clone(), false),
                Column::new("right", inner, false),
                s("v", Scalar::Int64, false)
            ][..]
        );
        let doc = br#"{"v": 1, "left": {"v": 2, "left": {"v": 3}}}"#;
        let cells = schema.decode_cells(&cols, doc).expect("decodes");
        assert_eq!(cells[0], Cell::Record(vec![Cell::String(r#"{"v":3}"#.into()), Cell::Null, Cell::Int64(2)]));
        // Many empty objects against a wide schema: more cells than the bytes allow.
        let wide: String = (0..200).map(|i| format!(r#""p{i}":{{"type":"string"}}"#)).collect::<Vec<_>>().join(",");
        let schema = super::super::parse(
            &format!(r#"{{"type":"array","items":{{"type":"object","properties":{{{wide}}}}}}}"#),
            &[],
        )
        .expect("schema");
        let many = format!("[{}]", vec!["{}"; 100].join(","));
        let err = schema.decode_cells(&schema.columns(), many.as_bytes()).err().unwrap_or_default();
        assert!(err.contains("more typed values"), "{err}");
    }

    #[test]
    fn a_schema_that_is_not_an_object_is_one_value_column() {
        let schema =
            super::super::parse(r#"{"type":"array","items":{"type":["integer","null"]}}"#, &[]).expect("schema");
        let cols = schema.columns();
        let element = ColumnType::Record(vec![s("element", Scalar::Int64, false)]);
        assert_eq!(cols.columns(), &[Column::new(VALUE_COLUMN, ColumnType::List(Box::new(element)), true)][..]);
        assert_eq!(
            schema.decode_cells(&cols, b"[1, null]").expect("decodes"),
            vec![Cell::List(vec![Cell::Record(vec![Cell::Int64(1)]), Cell::Record(vec![Cell::Null])])]
        );
    }
}
