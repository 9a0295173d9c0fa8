//! Compatibility levels and how they pick what to check: which earlier versions (the latest or
//! all) and in which direction (new reads old, old reads new, or both). The format decides what
//! "can read" means (`format::check`); this module only orders the checks and words the
//! result the way Confluent's verbose answers do.

use crate::format::{self, Parsed};
use crate::store::Version;

/// Confluent's compatibility levels. The default is BACKWARD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    /// No checks.
    None,
    /// The new schema can read data written with the latest one.
    #[default]
    Backward,
    /// The new schema can read data written with every earlier one.
    BackwardTransitive,
    /// The latest schema can read data written with the new one.
    Forward,
    /// Every earlier schema can read data written with the new one.
    ForwardTransitive,
    /// Backward and forward against the latest.
    Full,
    /// Backward and forward against every earlier one.
    FullTransitive,
}

impl CompatibilityLevel {
    /// Confluent's name for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a level name, case-insensitively (Confluent accepts `full` and `FULL`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => return None,
        })
    }

    /// Checks against every earlier version, not just the latest.
    const fn transitive(self) -> bool {
        matches!(self, Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive)
    }

    /// The new schema must read the old ones' data.
    const fn backward(self) -> bool {
        matches!(self, Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive)
    }

    /// The old schemas must read the new one's data.
    const fn forward(self) -> bool {
        matches!(self, Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive)
    }
}

/// An earlier version to check against.
pub(crate) struct Previous<'a> {
    /// Its version number, quoted in the messages.
    pub version: Version,
    /// Its text as stored, quoted in the messages.
    pub text: &'a str,
    /// It, parsed.
    pub parsed: &'a Parsed,
}

/// Checks `new` against `previous` (newest first, live versions only) at `level`. An empty
/// answer means compatible; otherwise the messages for the first version that fails, in
/// Confluent's verbose format, ending with the old version, its text and the level.
pub(crate) fn check(level: CompatibilityLevel, new: &Parsed, previous: &[Previous<'_>]) -> Vec<String> {
    let against = if level.transitive() { previous } else { previous.get(..1).unwrap_or_default() };
    for old in against {
        let messages = check_one(level, new, old.parsed);
        if !messages.is_empty() {
            return with_context(messages, level, old);
        }
    }
    Vec::new()
}

/// The directions `level` asks for, between two schemas; no context lines.
fn check_one(level: CompatibilityLevel, new: &Parsed, old: &Parsed) -> Vec<String> {
    let mut messages = Vec::new();
    if level.backward() {
        messages.extend(format::check(new, old, true));
    }
    if level.forward() {
        messages.extend(format::check(old, new, false));
    }
    messages
}

fn with_context(mut messages: Vec<String>, level: CompatibilityLevel, old: &Previous<'_>) -> Vec<String> {
    messages.push(format!("{{oldSchemaVersion: {}}}", old.version.0));
    messages.push(format!("{{oldSchema: '{}'}}", old.text));
    messages.push(format!("{{validateFields: 'false', compatibility: '{}'}}", level.as_str()));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case_and_print_in_upper_case() {
        for level in [
            CompatibilityLevel::None,
            CompatibilityLevel::Backward,
            CompatibilityLevel::BackwardTransitive,
            CompatibilityLevel::Forward,
            CompatibilityLevel::ForwardTransitive,
            CompatibilityLevel::Full,
            CompatibilityLevel::FullTransitive,
        ] {
            assert_eq!(CompatibilityLevel::parse(level.as_str()), Some(level));
            assert_eq!(CompatibilityLevel::parse(&level.as_str().to_lowercase()), Some(level));
        }
        assert_eq!(CompatibilityLevel::parse("sideways"), None);
        assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
    }

    #[test]
    fn directions() {
        assert!(CompatibilityLevel::Full.backward() && CompatibilityLevel::Full.forward());
        assert!(!CompatibilityLevel::None.backward() && !CompatibilityLevel::None.forward());
        assert!(CompatibilityLevel::ForwardTransitive.transitive() && !CompatibilityLevel::Forward.transitive());
    }
}
