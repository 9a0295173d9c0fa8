//! Rust source for one message: structs, `Default`, and the `Message` impl (decode, encode,
//! encoded_len, random). Version conditions are simplified against the message's own version
//! range so that a field present in every version reads without a branch.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::spec::{Field, Spec, Ty, Versions};

/// A version condition, relative to the range the code can be called with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    Always,
    Never,
    Expr(String),
}

impl Cond {
    pub fn of(set: Option<Versions>, lo: i16, hi: i16) -> Cond {
        let Some(v) = set else { return Cond::Never };
        let a = v.min.max(lo);
        let b = v.max.unwrap_or(hi).min(hi);
        if a > b {
            return Cond::Never;
        }
        match (a > lo, b < hi) {
            (false, false) => Cond::Always,
            (true, false) => Cond::Expr(format!("version >= {a}")),
            (false, true) => Cond::Expr(format!("version <= {b}")),
            (true, true) if a == b => Cond::Expr(format!("version == {a}")),
            (true, true) => Cond::Expr(format!("({a}..={b}).contains(&version)")),
        }
    }

    /// As a boolean expression.
    pub fn expr(&self) -> String {
        match self {
            Cond::Always => "true".into(),
            Cond::Never => "false".into(),
            Cond::Expr(e) => e.clone(),
        }
    }

    /// Wraps `body` so that it only runs when the condition holds.
    fn guard(&self, body: &str) -> String {
        match self {
            Cond::Always => format!("{body}\n"),
            Cond::Never => String::new(),
            Cond::Expr(e) => format!("if {e} {{ {body} }}\n"),
        }
    }

    /// `if cond { a } else { b }`, folded where the condition is constant.
    fn choose(&self, a: &str, b: &str) -> String {
        match self {
            Cond::Always => a.to_string(),
            Cond::Never => b.to_string(),
            Cond::Expr(e) => format!("if {e} {{ {a} }} else {{ {b} }}"),
        }
    }
}

/// Everything the emitter needs to know about the message being generated.
pub struct MsgCtx<'a> {
    pub lo: i16,
    pub hi: i16,
    pub flexible: Option<Versions>,
    /// Spec struct name -> Rust type name.
    pub names: &'a BTreeMap<String, String>,
    /// Spec struct name -> fields.
    pub structs: &'a BTreeMap<String, Vec<Field>>,
    /// Whether `records` fields are chunked [`RecordSet`]s (responses, which a broker builds
    /// from stored batches) or plain `Bytes` (requests, which are one slice of the frame).
    pub chunked_records: bool,
}

impl MsgCtx<'_> {
    fn cond(&self, set: Option<Versions>) -> Cond {
        Cond::of(set, self.lo, self.hi)
    }

    fn flex(&self) -> Cond {
        self.cond(self.flexible)
    }

    fn rust_name(&self, spec_name: &str) -> String {
        self.names.get(spec_name).cloned().unwrap_or_else(|| spec_name.to_string())
    }

    /// The smallest number of bytes one value of struct `name` can take at any version.
    fn min_struct_size(&self, name: &str) -> usize {
        let Some(fields) = self.structs.get(name) else { return 1 };
        let mut n = usize::from(self.flex() == Cond::Always);
        for f in fields {
            if f.tagged.is_some() || self.cond(f.versions) != Cond::Always {
                continue;
            }
            n += match &f.ty {
                Ty::Struct(s) if f.nullable.is_none() => self.min_struct_size(s),
                t => t.fixed_size().unwrap_or(1),
            };
        }
        n.max(1)
    }

    fn min_elem_size(&self, elem: &Ty) -> usize {
        match elem {
            Ty::Struct(s) => self.min_struct_size(s),
            t => t.fixed_size().unwrap_or(1),
        }
    }
}

pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let acronym_end =
                i > 0 && chars[i - 1].is_ascii_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || acronym_end {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn field_ident(name: &str) -> String {
    let s = snake(name);
    match s.as_str() {
        "type" | "match" | "mod" | "ref" | "self" | "fn" | "in" | "loop" | "move" | "use" | "where" | "async"
        | "await" | "dyn" | "final" | "box" | "yield" => format!("r#{s}"),
        _ => s,
    }
}

fn prim_rust(ty: &Ty) -> Option<&'static str> {
    Some(match ty {
        Ty::Bool => "bool",
        Ty::I8 => "i8",
        Ty::I16 => "i16",
        Ty::U16 => "u16",
        Ty::I32 => "i32",
        Ty::I64 => "i64",
        Ty::F64 => "f64",
        Ty::Uuid => "Uuid",
        Ty::String => "KStr",
        Ty::Bytes => "Bytes",
        Ty::Records => "RecordSet",
        _ => return None,
    })
}

fn is_opt(f: &Field) -> bool {
    f.nullable.is_some() || f.ty == Ty::Records
}

impl MsgCtx<'_> {
    fn base_ty(&self, ty: &Ty) -> String {
        match ty {
            Ty::Records if !self.chunked_records => "Bytes".to_string(),
            Ty::Struct(s) => self.rust_name(s),
            Ty::Array(e) => format!("Vec<{}>", self.base_ty(e)),
            t => prim_rust(t).unwrap_or("()").to_string(),
        }
    }

    pub fn field_ty(&self, f: &Field) -> String {
        let t = self.base_ty(&f.ty);
        if is_opt(f) { format!("Option<{t}>") } else { t }
    }

    pub fn default_expr(&self, f: &Field) -> String {
        let d = f.default.as_deref().unwrap_or("");
        let is_null = d == "null";
        let int = |bits: u32| -> String {
            if d.is_empty() {
                return "0".into();
            }
            let v = if let Some(h) = d.strip_prefix("0x") {
                i128::from_str_radix(h, 16).unwrap_or(0)
            } else {
                d.parse::<i128>().unwrap_or(0)
            };
            match (bits, v) {
                (32, v) if v == i128::from(i32::MAX) => "i32::MAX".into(),
                (32, v) if v == i128::from(i32::MIN) => "i32::MIN".into(),
                (64, v) if v == i128::from(i64::MAX) => "i64::MAX".into(),
                (64, v) if v == i128::from(i64::MIN) => "i64::MIN".into(),
                (_, v) => v.to_string(),
            }
        };
        let base = match &f.ty {
            Ty::Bool => d.eq_ignore_ascii_case("true").to_string(),
            Ty::I8 | Ty::I16 | Ty::U16 => int(16),
            Ty::I32 => int(32),
            Ty::I64 => int(64),
            Ty::F64 => format!("{:?}", d.parse::<f64>().unwrap_or(0.0)),
            Ty::Uuid => "Uuid::ZERO".into(),
            Ty::String if d.is_empty() || is_null => "KStr::default()".into(),
            Ty::String => format!("KStr::from_static({d:?})"),
            Ty::Bytes => "Bytes::new()".into(),
            Ty::Records if self.chunked_records => "RecordSet::default()".into(),
            Ty::Records => "Bytes::new()".into(),
            Ty::Struct(s) => format!("{}::default()", self.rust_name(s)),
            Ty::Array(_) => "Vec::new()".into(),
        };
        if !is_opt(f) {
            base
        } else if is_null || f.ty == Ty::Records {
            "None".into()
        } else {
            format!("Some({base})")
        }
    }

    // ---- decode ----------------------------------------------------------------------------

    fn dec_elem(&self, ty: &Ty, c: &str, ctx: &str) -> String {
        match ty {
            Ty::Bool => format!("r.bool({ctx:?})"),
            Ty::I8 => format!("r.i8({ctx:?})"),
            Ty::I16 => format!("r.i16({ctx:?})"),
            Ty::U16 => format!("r.u16({ctx:?})"),
            Ty::I32 => format!("r.i32({ctx:?})"),
            Ty::I64 => format!("r.i64({ctx:?})"),
            Ty::F64 => format!("r.f64({ctx:?})"),
            Ty::Uuid => format!("r.uuid({ctx:?})"),
            Ty::String => format!("r.string({c}, {ctx:?})"),
            Ty::Bytes => format!("r.bytes_field({c}, {ctx:?})"),
            Ty::Records if self.chunked_records => format!("r.records({c}, {ctx:?})"),
            Ty::Records => format!("r.bytes_field({c}, {ctx:?})"),
            Ty::Struct(s) => format!("{}::decode(r, version)", self.rust_name(s)),
            Ty::Array(e) => {
                let min = self.min_elem_size(e);
                format!("r.array({c}, {min}, {ctx:?}, |r| {})", self.dec_elem(e, c, ctx))
            }
        }
    }

    /// A `Result`-free expression (uses `?`) reading field `f` from `r`.
    fn dec_field(&self, f: &Field, c: &str, ctx: &str) -> String {
        let base = format!("{}?", self.dec_elem(&f.ty, c, ctx));
        if !is_opt(f) {
            return base;
        }
        let null = match &f.ty {
            Ty::String => format!("r.nullable_string({c}, {ctx:?})?"),
            Ty::Bytes => format!("r.nullable_bytes({c}, {ctx:?})?"),
            Ty::Records if self.chunked_records => format!("r.nullable_records({c}, {ctx:?})?"),
            Ty::Records => format!("r.nullable_bytes({c}, {ctx:?})?"),
            Ty::Struct(s) => {
                format!("if r.i8({ctx:?})? < 0 {{ None }} else {{ Some({}::decode(r, version)?) }}", self.rust_name(s))
            }
            Ty::Array(e) => {
                let min = self.min_elem_size(e);
                format!("r.nullable_array({c}, {min}, {ctx:?}, |r| {})?", self.dec_elem(e, c, ctx))
            }
            _ => unreachable!("primitive fields are never nullable"),
        };
        self.cond(f.nullable).choose(&null, &format!("Some({base})"))
    }

    // ---- encode ----------------------------------------------------------------------------

    /// Statement writing the non-null value `x` (an expression of type `&T`).
    fn enc_val(&self, ty: &Ty, x: &str, c: &str) -> String {
        let m = x.strip_prefix('&').unwrap_or(x);
        let v = if m.len() < x.len() { m.to_string() } else { format!("*{x}") };
        match ty {
            Ty::Bool => format!("w.bool({v});"),
            Ty::I8 => format!("w.i8({v});"),
            Ty::I16 => format!("w.i16({v});"),
            Ty::U16 => format!("w.u16({v});"),
            Ty::I32 => format!("w.i32({v});"),
            Ty::I64 => format!("w.i64({v});"),
            Ty::F64 => format!("w.f64({v});"),
            Ty::Uuid => format!("w.uuid({x});"),
            Ty::String => format!("w.string({c}, {x});"),
            Ty::Bytes => format!("w.bytes_field({c}, {x});"),
            Ty::Records if self.chunked_records => format!("w.records({c}, {x});"),
            Ty::Records => format!("w.bytes_field({c}, {x});"),
            Ty::Struct(_) => format!("{m}.encode(w, version);"),
            Ty::Array(e) => {
                format!("w.array_len({c}, Some({m}.len())); for e in {x} {{ {} }}", self.enc_val(e, "e", c))
            }
        }
    }

    fn enc_field(&self, f: &Field, x: &str, c: &str) -> String {
        if !is_opt(f) {
            return self.enc_val(&f.ty, x, c);
        }
        let nc = self.cond(f.nullable);
        let (null, empty, some) = match &f.ty {
            Ty::String => (
                format!("w.nullable_string({c}, None);"),
                format!("w.string({c}, &KStr::default());"),
                self.enc_val(&f.ty, "v", c),
            ),
            Ty::Bytes => (
                format!("w.nullable_bytes({c}, None);"),
                format!("w.bytes_field({c}, &Bytes::new());"),
                self.enc_val(&f.ty, "v", c),
            ),
            Ty::Records if self.chunked_records => (
                format!("w.nullable_bytes({c}, None);"),
                format!("w.records({c}, &RecordSet::default());"),
                self.enc_val(&f.ty, "v", c),
            ),
            Ty::Records => (
                format!("w.nullable_bytes({c}, None);"),
                format!("w.bytes_field({c}, &Bytes::new());"),
                self.enc_val(&f.ty, "v", c),
            ),
            Ty::Array(_) => {
                (format!("w.array_len({c}, None);"), format!("w.array_len({c}, Some(0));"), self.enc_val(&f.ty, "v", c))
            }
            Ty::Struct(s) => (
                "w.i8(-1);".to_string(),
                format!("{}::default().encode(w, version);", self.rust_name(s)),
                nc.choose("w.i8(1); v.encode(w, version);", "v.encode(w, version);"),
            ),
            _ => unreachable!("primitive fields are never nullable"),
        };
        format!("match {x} {{ Some(v) => {{ {some} }} None => {{ {} }} }}", nc.choose(&null, &empty))
    }

    // ---- encoded length --------------------------------------------------------------------

    fn len_val(&self, ty: &Ty, x: &str, c: &str) -> String {
        // `x` is a reference expression; `m` is the same place for method calls.
        let m = x.strip_prefix('&').unwrap_or(x);
        if let Some(n) = ty.fixed_size() {
            return n.to_string();
        }
        match ty {
            Ty::String => format!("string_len({c}, {x})"),
            Ty::Bytes => format!("bytes_len({c}, {x})"),
            Ty::Records if self.chunked_records => format!("records_len({c}, {x})"),
            Ty::Records => format!("bytes_len({c}, {x})"),
            Ty::Struct(_) => format!("{m}.encoded_len(version)"),
            Ty::Array(e) => match e.fixed_size() {
                Some(n) => format!("array_len_len({c}, Some({m}.len())) + {m}.len() * {n}"),
                None => format!(
                    "array_len_len({c}, Some({m}.len())) + {m}.iter().map(|e| {}).sum::<usize>()",
                    self.len_val(e, "e", c)
                ),
            },
            _ => unreachable!("fixed-size types handled above"),
        }
    }

    fn len_field(&self, f: &Field, x: &str, c: &str) -> String {
        if !is_opt(f) {
            return self.len_val(&f.ty, x, c);
        }
        let nc = self.cond(f.nullable);
        let (null, empty, some) = match &f.ty {
            Ty::String => (
                format!("nullable_string_len({c}, None)"),
                format!("string_len({c}, &KStr::default())"),
                self.len_val(&f.ty, "v", c),
            ),
            Ty::Bytes => (
                format!("nullable_bytes_len({c}, None)"),
                format!("bytes_len({c}, &Bytes::new())"),
                self.len_val(&f.ty, "v", c),
            ),
            Ty::Records if self.chunked_records => (
                format!("nullable_bytes_len({c}, None)"),
                format!("records_len({c}, &RecordSet::default())"),
                self.len_val(&f.ty, "v", c),
            ),
            Ty::Records => (
                format!("nullable_bytes_len({c}, None)"),
                format!("bytes_len({c}, &Bytes::new())"),
                self.len_val(&f.ty, "v", c),
            ),
            Ty::Array(_) => (
                format!("array_len_len({c}, None)"),
                format!("array_len_len({c}, Some(0))"),
                self.len_val(&f.ty, "v", c),
            ),
            Ty::Struct(s) => (
                "1".to_string(),
                format!("{}::default().encoded_len(version)", self.rust_name(s)),
                format!("usize::from({}) + v.encoded_len(version)", nc.expr()),
            ),
            _ => unreachable!("primitive fields are never nullable"),
        };
        format!("match {x} {{ Some(v) => {some}, None => {} }}", nc.choose(&null, &empty))
    }

    // ---- random ----------------------------------------------------------------------------

    fn rand_val(&self, ty: &Ty) -> String {
        match ty {
            Ty::Bool => "g.bool()".into(),
            Ty::I8 => "g.i8()".into(),
            Ty::I16 => "g.i16()".into(),
            Ty::U16 => "g.u16()".into(),
            Ty::I32 => "g.i32()".into(),
            Ty::I64 => "g.i64()".into(),
            Ty::F64 => "g.f64()".into(),
            Ty::Uuid => "g.uuid()".into(),
            Ty::String => "g.string()".into(),
            Ty::Bytes => "g.bytes()".into(),
            Ty::Records if self.chunked_records => "RecordSet::from(g.bytes())".into(),
            Ty::Records => "g.bytes()".into(),
            Ty::Struct(s) => format!("{}::random(g, version)", self.rust_name(s)),
            Ty::Array(e) => format!("(0..g.array_len()).map(|_| {}).collect()", self.rand_val(e)),
        }
    }

    fn rand_field(&self, f: &Field) -> String {
        let base = self.rand_val(&f.ty);
        if !is_opt(f) {
            return base;
        }
        format!("if g.null({}) {{ None }} else {{ Some({base}) }}", self.cond(f.nullable).expr())
    }

    // ---- one struct ------------------------------------------------------------------------

    fn compact(&self, f: &Field) -> String {
        match f.flexible_override {
            Some(ov) => self.cond(ov).expr(),
            None => self.flex().expr(),
        }
    }

    /// Emits one struct and its impls. `top` marks a whole message (checks its version).
    pub fn emit_struct(&self, out: &mut String, rust_name: &str, about: &str, fields: &[Field], top: bool) {
        let flex = self.flex();
        let has_tags = flex != Cond::Never;
        let mut tagged: Vec<&Field> = fields.iter().filter(|f| f.tagged.is_some()).collect();
        tagged.sort_by_key(|f| f.tag);
        let plain: Vec<&Field> = fields.iter().filter(|f| f.tagged.is_none()).collect();
        let max_tag = tagged.iter().filter_map(|f| f.tag).max();

        // Struct definition.
        let _ = writeln!(out, "/// {}", if about.is_empty() { rust_name } else { about });
        let _ = writeln!(out, "#[derive(Clone, Debug, PartialEq)]\npub struct {rust_name} {{");
        for f in fields {
            let vers = f.versions.map_or("none".to_string(), |v| v.to_string());
            let tag = f.tag.map(|t| format!(", tag {t}")).unwrap_or_default();
            let about = if f.about.is_empty() { f.name.clone() } else { f.about.clone() };
            let _ = writeln!(out, "    /// {about} (versions {vers}{tag})");
            let _ = writeln!(out, "    pub {}: {},", field_ident(&f.name), self.field_ty(f));
        }
        if has_tags {
            let _ = writeln!(out, "    /// Tagged fields this codec does not know, kept to be written back.");
            let _ = writeln!(out, "    pub unknown_tagged_fields: UnknownTaggedFields,");
        }
        let _ = writeln!(out, "}}\n");

        // Default.
        let _ = writeln!(out, "impl Default for {rust_name} {{\n    fn default() -> Self {{\n        Self {{");
        for f in fields {
            let _ = writeln!(out, "            {}: {},", field_ident(&f.name), self.default_expr(f));
        }
        if has_tags {
            let _ = writeln!(out, "            unknown_tagged_fields: UnknownTaggedFields::new(),");
        }
        let _ = writeln!(out, "        }}\n    }}\n}}\n");

        let _ = writeln!(out, "impl Message for {rust_name} {{");
        let _ = writeln!(out, "    const VERSIONS: (i16, i16) = ({}, {});\n", self.lo, self.hi);

        // decode
        let start = out.len();
        let _ = writeln!(out, "    fn decode(r: &mut Reader<'_>, version: i16) -> Result<Self, DecodeError> {{");
        if top {
            let _ = writeln!(
                out,
                "        if !({}..={}).contains(&version) {{ return Err(DecodeError::UnsupportedVersion {{ what: {rust_name:?}, version }}); }}",
                self.lo, self.hi
            );
        }
        // Every field is read into a local and the struct is built once at the end: no
        // default is constructed only to be overwritten and dropped.
        for f in &plain {
            let ctx = format!("{rust_name}.{}", snake(&f.name));
            let read = self.dec_field(f, &self.compact(f), &ctx);
            let value = match self.cond(f.versions) {
                Cond::Always => read,
                Cond::Never => self.default_expr(f),
                Cond::Expr(e) => format!("if {e} {{ {read} }} else {{ {} }}", self.default_expr(f)),
            };
            let _ = writeln!(out, "        let f_{} = {value};", snake(&f.name));
        }
        if has_tags {
            let ctx = format!("{rust_name} tagged fields");
            let mut arms = String::new();
            for f in &tagged {
                let c = self.cond(f.tagged);
                let read_here = c != Cond::Never;
                let _ = writeln!(
                    out,
                    "        let {}f_{} = {};",
                    if read_here { "mut " } else { "" },
                    snake(&f.name),
                    self.default_expr(f)
                );
                if !read_here {
                    continue;
                }
                let guard = match &c {
                    Cond::Expr(e) => format!(" if {e}"),
                    _ => String::new(),
                };
                let fctx = format!("{rust_name}.{}", snake(&f.name));
                let _ = writeln!(
                    arms,
                    "{}{guard} => {{ let r = &mut sub; f_{} = {}; }}",
                    f.tag.unwrap_or(0),
                    snake(&f.name),
                    self.dec_field(f, "true", &fctx)
                );
            }
            let keep = "unknown_tagged_fields.push(Reader::unknown_tagged(tag, sub))";
            let dispatch = if arms.is_empty() {
                format!("let (tag, sub) = r.tagged_field({ctx:?})?; {keep};")
            } else {
                format!("let (tag, mut sub) = r.tagged_field({ctx:?})?; match tag {{ {arms} _ => {keep}, }}")
            };
            let body = format!("let n = r.tagged_field_count({ctx:?})?; for _ in 0..n {{ {dispatch} }}");
            let _ = writeln!(
                out,
                "        let {}unknown_tagged_fields = UnknownTaggedFields::new();",
                if flex == Cond::Never { "" } else { "mut " }
            );
            out.push_str(&flex.guard(&body));
        }
        let mut build = String::from("Ok(Self {");
        for f in fields {
            let _ = write!(build, " {}: f_{},", field_ident(&f.name), snake(&f.name));
        }
        if has_tags {
            build.push_str(" unknown_tagged_fields,");
        }
        build.push_str(" })");
        let _ = writeln!(out, "        {build}\n    }}\n");

        tidy_since(out, start);

        // encode
        let start = out.len();
        let _ = writeln!(out, "    fn encode(&self, w: &mut Writer, version: i16) {{");
        for f in &plain {
            let x = format!("&self.{}", field_ident(&f.name));
            out.push_str(&self.cond(f.versions).guard(&self.enc_field(f, &x, &self.compact(f))));
        }
        if has_tags {
            let mut body = String::from("let mut count = self.unknown_tagged_fields.len();\n");
            for f in &tagged {
                let c = self.cond(f.tagged);
                if c == Cond::Never {
                    continue;
                }
                let id = field_ident(&f.name);
                let _ = writeln!(
                    body,
                    "let put_{} = {} && self.{id} != {}; count += usize::from(put_{});",
                    snake(&f.name),
                    c.expr(),
                    self.default_expr(f),
                    snake(&f.name)
                );
            }
            body.push_str("w.uvarint(count as u32);\nlet mut next = 0;\n");
            for f in &tagged {
                if self.cond(f.tagged) == Cond::Never {
                    continue;
                }
                let id = field_ident(&f.name);
                let tag = f.tag.unwrap_or(0);
                let x = format!("&self.{id}");
                let _ = writeln!(
                    body,
                    "w.unknown_tagged_before(self.unknown_tagged_fields.as_slice(), &mut next, {tag});\nif put_{} {{ w.tagged_header({tag}, {}); {} }}",
                    snake(&f.name),
                    self.len_field(f, &x, "true"),
                    self.enc_field(f, &x, "true")
                );
            }
            body.push_str("w.unknown_tagged_before(self.unknown_tagged_fields.as_slice(), &mut next, u32::MAX);");
            out.push_str(&flex.guard(&body));
        }
        let _ = writeln!(out, "    }}\n");
        tidy_since(out, start);

        // encoded_len
        let start = out.len();
        let _ = writeln!(out, "    fn encoded_len(&self, version: i16) -> usize {{\n        let mut n = 0;");
        for f in &plain {
            let x = format!("&self.{}", field_ident(&f.name));
            out.push_str(&self.cond(f.versions).guard(&format!("n += {};", self.len_field(f, &x, &self.compact(f)))));
        }
        if has_tags {
            let mut body = String::from(
                "let mut count = self.unknown_tagged_fields.len();\nn += unknown_tagged_len(self.unknown_tagged_fields.as_slice());\n",
            );
            for f in &tagged {
                let c = self.cond(f.tagged);
                if c == Cond::Never {
                    continue;
                }
                let id = field_ident(&f.name);
                let x = format!("&self.{id}");
                let _ = writeln!(
                    body,
                    "if {} && self.{id} != {} {{ count += 1; n += tagged_len({}, {}); }}",
                    c.expr(),
                    self.default_expr(f),
                    f.tag.unwrap_or(0),
                    self.len_field(f, &x, "true")
                );
            }
            body.push_str("n += uvarint_len(count as u32);");
            out.push_str(&flex.guard(&body));
        }
        let _ = writeln!(out, "        n\n    }}\n");
        tidy_since(out, start);

        // random
        let start = out.len();
        let _ = writeln!(out, "    #[cfg(feature = \"arbitrary\")]");
        let _ = writeln!(
            out,
            "    fn random(g: &mut Gen, version: i16) -> Self {{\n        let mut this = Self::default();"
        );
        for f in fields {
            let present = if f.tagged.is_some() { self.cond(f.tagged) } else { self.cond(f.versions) };
            out.push_str(&present.guard(&format!("this.{} = {};", field_ident(&f.name), self.rand_field(f))));
        }
        if has_tags {
            let above = max_tag.map_or("None".to_string(), |t| format!("Some({t})"));
            out.push_str(&flex.guard(&format!("this.unknown_tagged_fields = g.unknown_tagged({above});")));
        }
        let _ = writeln!(out, "        this\n    }}\n");
        tidy_since(out, start);
        let _ = writeln!(out, "}}\n");
    }
}

/// Tidies one emitted function: `mut` only where the value is assigned after creation, and
/// `version` named `_version` where the body never reads it.
fn tidy_since(out: &mut String, start: usize) {
    let f = tidy_fn(&out[start..]);
    out.truncate(start);
    out.push_str(&f);
}

fn tidy_fn(text: &str) -> String {
    let mut t = text.to_string();
    if !t.contains("this.") {
        t = t.replace("let mut this = Self::default();\n        this\n", "Self::default()\n");
        t = t.replace("let mut this", "let this");
    }
    if !t.contains("count +=") {
        t = t.replace("let mut count", "let count");
    }
    if t.contains("let mut n = 0;") && !t.contains("n +=") {
        t = t.replace("let mut n = 0;\n        n\n", "0\n");
    }
    let (sig, body) = t.split_once('{').unwrap_or((&t, ""));
    if !body.contains("version") {
        return format!("{}{{{body}", sig.replace("version: i16", "_version: i16"));
    }
    t
}

/// All structs a spec defines, in first-seen order: (spec name, about, fields).
pub fn collect_structs(spec: &Spec) -> Vec<(String, String, Vec<Field>)> {
    let mut out = Vec::new();
    fn walk(fields: &[Field], out: &mut Vec<(String, String, Vec<Field>)>) {
        for f in fields {
            if let Some(inner) = &f.fields {
                let name = match &f.ty {
                    Ty::Array(e) => match e.as_ref() {
                        Ty::Struct(s) => s.clone(),
                        _ => continue,
                    },
                    Ty::Struct(s) => s.clone(),
                    _ => continue,
                };
                out.push((name, f.about.clone(), inner.clone()));
                walk(inner, out);
            }
        }
    }
    walk(&spec.fields, &mut out);
    for c in &spec.common {
        out.push((c.name.clone(), String::new(), c.fields.clone()));
        walk(&c.fields, &mut out);
    }
    out
}
