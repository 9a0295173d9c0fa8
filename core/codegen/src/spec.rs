//! Reading Kafka's JSON message specs into a small model.
//!
//! The spec files are JSON with `//` line comments (the Apache licence header and notes).
//! Only whole-line comments occur, so they are dropped line by line before parsing; a `//`
//! inside a string (a URL in an `about`) is left alone.

use std::fmt;
use std::path::Path;

use serde_json::Value;

/// An inclusive version range; `None` as the upper bound means "and every later version".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    pub min: i16,
    pub max: Option<i16>,
}

impl Versions {
    /// Parses "3", "3+", "3-7" or "none".
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(None);
        }
        let num = |t: &str| t.trim().parse::<i16>().map_err(|e| format!("bad version {t:?}: {e}"));
        if let Some(min) = s.strip_suffix('+') {
            return Ok(Some(Self { min: num(min)?, max: None }));
        }
        if let Some((a, b)) = s.split_once('-') {
            return Ok(Some(Self { min: num(a)?, max: Some(num(b)?) }));
        }
        let v = num(s)?;
        Ok(Some(Self { min: v, max: Some(v) }))
    }
}

impl fmt::Display for Versions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            None => write!(f, "{}+", self.min),
            Some(m) if m == self.min => write!(f, "{m}"),
            Some(m) => write!(f, "{}-{m}", self.min),
        }
    }
}

/// A field's wire type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    Bool,
    I8,
    I16,
    U16,
    I32,
    I64,
    F64,
    Uuid,
    String,
    Bytes,
    Records,
    Struct(String),
    Array(Box<Ty>),
}

impl Ty {
    fn parse(s: &str) -> Result<Self, String> {
        if let Some(inner) = s.strip_prefix("[]") {
            return Ok(Ty::Array(Box::new(Ty::parse(inner)?)));
        }
        Ok(match s {
            "bool" => Ty::Bool,
            "int8" => Ty::I8,
            "int16" => Ty::I16,
            "uint16" => Ty::U16,
            "int32" => Ty::I32,
            "int64" => Ty::I64,
            "float64" => Ty::F64,
            "uuid" => Ty::Uuid,
            "string" => Ty::String,
            "bytes" => Ty::Bytes,
            "records" => Ty::Records,
            other if other.starts_with(|c: char| c.is_ascii_uppercase()) => Ty::Struct(other.to_string()),
            other => return Err(format!("unknown field type {other:?}")),
        })
    }

    /// Fixed wire size of a primitive, if it has one.
    pub fn fixed_size(&self) -> Option<usize> {
        Some(match self {
            Ty::Bool | Ty::I8 => 1,
            Ty::I16 | Ty::U16 => 2,
            Ty::I32 => 4,
            Ty::I64 | Ty::F64 => 8,
            Ty::Uuid => 16,
            _ => return None,
        })
    }
}

/// One field of a struct.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub versions: Option<Versions>,
    pub nullable: Option<Versions>,
    pub tagged: Option<Versions>,
    pub tag: Option<u32>,
    pub flexible_override: Option<Option<Versions>>,
    pub default: Option<String>,
    pub about: String,
    /// Inline struct definition carried by this field (`fields` in the spec).
    pub fields: Option<Vec<Field>>,
}

/// A named struct definition (`commonStructs` entry or a top-level message).
#[derive(Clone, Debug)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<Field>,
}

/// One spec file.
#[derive(Clone, Debug)]
pub struct Spec {
    pub file: String,
    pub name: String,
    pub kind: String,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Option<Versions>,
    pub listeners: Vec<String>,
    pub latest_unstable: bool,
    pub fields: Vec<Field>,
    pub common: Vec<StructDef>,
}

fn strip_comments(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn str_of<'a>(v: &'a Value, key: &str, ctx: &str) -> Result<&'a str, String> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| format!("{ctx}: missing string {key:?}"))
}

fn opt_versions(v: &Value, key: &str) -> Result<Option<Versions>, String> {
    match v.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => Versions::parse(s),
    }
}

fn parse_fields(v: Option<&Value>, ctx: &str) -> Result<Vec<Field>, String> {
    let Some(arr) = v.and_then(Value::as_array) else { return Ok(Vec::new()) };
    arr.iter().map(|f| parse_field(f, ctx)).collect()
}

fn parse_field(f: &Value, ctx: &str) -> Result<Field, String> {
    let name = str_of(f, "name", ctx)?.to_string();
    let ctx = format!("{ctx}.{name}");
    let ty = Ty::parse(str_of(f, "type", &ctx)?)?;
    let versions = Versions::parse(str_of(f, "versions", &ctx)?)?;
    let default = match f.get("default") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let flexible_override = match f.get("flexibleVersions").and_then(Value::as_str) {
        None => None,
        Some(s) => Some(Versions::parse(s)?),
    };
    let tag = match f.get("tag") {
        None => None,
        // Tags are numbers, but one spec writes a tag as a string.
        Some(t) => Some(
            t.as_u64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| format!("{ctx}: bad tag {t}"))?,
        ),
    };
    let fields = if f.get("fields").is_some() { Some(parse_fields(f.get("fields"), &ctx)?) } else { None };
    Ok(Field {
        name,
        ty,
        versions,
        nullable: opt_versions(f, "nullableVersions")?,
        tagged: opt_versions(f, "taggedVersions")?,
        tag,
        flexible_override,
        default,
        about: f.get("about").and_then(Value::as_str).unwrap_or("").to_string(),
        fields,
    })
}

/// Reads one spec file.
pub fn load(path: &Path) -> Result<Spec, String> {
    let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&strip_comments(&text)).map_err(|e| format!("{file}: {e}"))?;
    let name = str_of(&v, "name", &file)?.to_string();
    let valid =
        Versions::parse(str_of(&v, "validVersions", &file)?)?.ok_or_else(|| format!("{file}: no valid versions"))?;
    let flexible = match v.get("flexibleVersions").and_then(Value::as_str) {
        None => None,
        Some(s) => Versions::parse(s)?,
    };
    let common = match v.get("commonStructs").and_then(Value::as_array) {
        None => Vec::new(),
        Some(arr) => arr
            .iter()
            .map(|c| {
                Ok(StructDef {
                    name: str_of(c, "name", &file)?.to_string(),
                    fields: parse_fields(c.get("fields"), &file)?,
                })
            })
            .collect::<Result<_, String>>()?,
    };
    Ok(Spec {
        kind: str_of(&v, "type", &file)?.to_string(),
        api_key: v.get("apiKey").and_then(Value::as_i64).and_then(|k| i16::try_from(k).ok()),
        listeners: v
            .get("listeners")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        latest_unstable: v.get("latestVersionUnstable").and_then(Value::as_bool).unwrap_or(false),
        fields: parse_fields(v.get("fields"), &name)?,
        file,
        name,
        valid,
        flexible,
        common,
    })
}

impl Spec {
    /// The versions kelp supports: the valid range less an unstable latest version.
    pub fn stable_versions(&self) -> Option<Versions> {
        let max = self.valid.max?;
        let max = if self.latest_unstable { max - 1 } else { max };
        (max >= self.valid.min).then_some(Versions { min: self.valid.min, max: Some(max) })
    }
}
