//! Media types: which request bodies the registry reads and which response type a client gets.
//!
//! Pure functions over header values, so they are tested without sockets. The lists follow
//! Confluent's resources: they consume and produce `application/vnd.schemaregistry.v1+json`,
//! `application/vnd.schemaregistry+json` and `application/json` (and also consume
//! `application/octet-stream`); on the way out the v1 type is preferred, then the unversioned
//! one, then plain JSON (Confluent gives them server weights 0.9, 0.8 and 0.5).

/// Confluent's versioned media type, the default answer.
pub const V1_JSON: &str = "application/vnd.schemaregistry.v1+json";
/// Confluent's unversioned media type.
pub const DEFAULT_JSON: &str = "application/vnd.schemaregistry+json";
/// Plain JSON.
pub const JSON: &str = "application/json";
/// Accepted as a request body and read as JSON.
const OCTET_STREAM: &str = "application/octet-stream";

/// What we can send, best first, with the weight the server gives each.
const PRODUCES: [(&str, f32); 3] = [(V1_JSON, 0.9), (DEFAULT_JSON, 0.8), (JSON, 0.5)];

/// Whether a request's `Content-Type` (the header's raw value, or `None` when absent) names a body
/// the registry reads. A missing type is read as JSON. Parameters (`; charset=utf-8`) are ignored
/// and the comparison ignores case, as media types do (RFC 9110, section 8.3.1).
pub fn body_type_accepted(content_type: Option<&[u8]>) -> bool {
    let Some(raw) = content_type else { return true };
    let Ok(value) = std::str::from_utf8(raw) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    [V1_JSON, DEFAULT_JSON, JSON, OCTET_STREAM].iter().any(|t| t.eq_ignore_ascii_case(essence))
}

/// The response type for a request's `Accept` headers (each value may hold a comma-separated
/// list of media ranges with `q` weights), or `None` when nothing we produce is acceptable.
/// No `Accept` header accepts anything. A header that is not text is treated as absent.
///
/// Each candidate scores the client's weight for the most specific matching range times our own
/// weight; the highest score wins, ties going to the earlier candidate.
pub fn negotiate<'a>(accept: impl Iterator<Item = &'a [u8]>) -> Option<&'static str> {
    let mut ranges = Vec::new();
    for raw in accept {
        let Ok(value) = std::str::from_utf8(raw) else { continue };
        ranges.extend(value.split(',').filter_map(parse_range));
    }
    if ranges.is_empty() {
        return Some(V1_JSON);
    }
    let mut best: Option<(&'static str, f32)> = None;
    for (candidate, server_q) in PRODUCES {
        let Some(client_q) = client_weight(&ranges, candidate) else { continue };
        let score = client_q * server_q;
        if score > 0.0 && best.is_none_or(|(_, b)| score > b) {
            best = Some((candidate, score));
        }
    }
    best.map(|(t, _)| t)
}

/// One parsed media range: `type/subtype` (either may be `*`) and its weight.
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f32,
}

/// Parses `type/subtype;param=x;q=0.5`; `None` for an empty or malformed entry (skipped, as
/// lenient servers do).
fn parse_range(entry: &str) -> Option<Range<'_>> {
    let mut parts = entry.split(';');
    let (kind, subtype) = parts.next()?.trim().split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    if kind.is_empty() || subtype.is_empty() {
        return None;
    }
    let mut q = 1.0;
    for param in parts {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            q = value.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?;
        }
    }
    Some(Range { kind, subtype, q })
}

/// The client's weight for `candidate`: from the most specific range that matches it (an exact
/// type beats `application/*`, which beats `*/*`), `None` if no range matches.
fn client_weight(ranges: &[Range<'_>], candidate: &str) -> Option<f32> {
    let (kind, subtype) = candidate.split_once('/')?;
    let mut best: Option<(u8, f32)> = None;
    for r in ranges {
        let specificity = match (r.kind, r.subtype) {
            ("*", "*") => 0,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => 2,
            _ => continue,
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, r.q));
        }
    }
    best.map(|(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(headers: &[&str]) -> Option<&'static str> {
        negotiate(headers.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn body_types() {
        assert!(body_type_accepted(None));
        assert!(body_type_accepted(Some(b"application/json; charset=UTF-8")));
        assert!(body_type_accepted(Some(b"Application/VND.schemaregistry.v1+json")));
        assert!(body_type_accepted(Some(b"application/vnd.schemaregistry+json")));
        assert!(body_type_accepted(Some(b"application/octet-stream")));
        assert!(!body_type_accepted(Some(b"text/plain")));
        assert!(!body_type_accepted(Some(b"")));
        assert!(!body_type_accepted(Some(b"\xff\xfe")));
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(pick(&[]), Some(V1_JSON));
        assert_eq!(pick(&["*/*"]), Some(V1_JSON));
        assert_eq!(pick(&["application/*"]), Some(V1_JSON));
        assert_eq!(pick(&["application/json"]), Some(JSON));
        assert_eq!(pick(&["application/vnd.schemaregistry+json"]), Some(DEFAULT_JSON));
        // What Confluent's Java client sends.
        let java = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5";
        assert_eq!(pick(&[java]), Some(V1_JSON));
        assert_eq!(pick(&["application/json", "text/html"]), Some(JSON));
        assert_eq!(pick(&["application/json;q=1, application/vnd.schemaregistry.v1+json;q=0.1"]), Some(JSON));
        assert_eq!(pick(&["*/*;q=0.1, application/json"]), Some(JSON));
        assert_eq!(pick(&["text/html"]), None);
        assert_eq!(pick(&["application/json;q=0"]), None);
        assert_eq!(pick(&["application/*, application/vnd.schemaregistry.v1+json;q=0"]), Some(DEFAULT_JSON));
        // Garbage entries are skipped; only garbage reads as no preference.
        assert_eq!(pick(&["garbage, ,;q=x"]), Some(V1_JSON));
        assert_eq!(pick(&["text/html;q=oops, application/json"]), Some(JSON));
    }
}
