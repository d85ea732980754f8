//! Claim paths as written in plugin configs.

use crate::json::Value;
use std::fmt;

/// Where a claim lives in the claims object: `"sub"`, `"org.tenant.id"`
/// (dots step into nested objects; a decimal segment indexes an array), or,
/// for claim names that contain dots such as `https://example.com/roles`, a
/// JSON array of segments: `["https://example.com/roles"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    segments: Vec<String>,
}

impl ClaimPath {
    /// Parses a dotted path; empty segments (`a..b`, `.a`, ``) are rejected.
    pub fn parse(dotted: &str) -> Result<ClaimPath, String> {
        let segments: Vec<String> = dotted.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("claim path `{}` has an empty segment", dotted));
        }
        Ok(ClaimPath { segments })
    }

    /// Reads a config value: a dotted string, or a non-empty array of
    /// non-empty strings (one per nesting level, dots taken literally).
    pub fn from_config(v: &Value) -> Result<ClaimPath, String> {
        match v {
            Value::String(s) => ClaimPath::parse(s),
            Value::Array(items) if !items.is_empty() => {
                let mut segments = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(s) if !s.is_empty() => segments.push(s.to_string()),
                        _ => {
                            return Err(format!(
                                "claim path {} must contain non-empty strings only",
                                v
                            ))
                        }
                    }
                }
                Ok(ClaimPath { segments })
            }
            other => Err(format!(
                "claim path must be a string or a non-empty array of strings, got {}",
                other.type_name()
            )),
        }
    }

    /// The claim's value, or `None` when it is missing **or null** (plugins
    /// treat both as absent).
    pub fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        match claims.lookup_segments(&self.segments) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    /// The segments.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

impl fmt::Display for ClaimPath {
    /// Dotted form, or the JSON array form when a segment contains a dot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.iter().any(|s| s.contains('.')) {
            let arr = Value::Array(
                self.segments
                    .iter()
                    .map(|s| Value::String(s.clone()))
                    .collect(),
            );
            write!(f, "{}", arr)
        } else {
            f.write_str(&self.segments.join("."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    #[test]
    fn dotted_and_array_forms() {
        let claims =
            parse(br#"{"org":{"tenant":{"id":"acme"}},"https://x.io/r":["a"],"n":null}"#).unwrap();
        let p = ClaimPath::parse("org.tenant.id").unwrap();
        assert_eq!(p.find(&claims).and_then(Value::as_str), Some("acme"));
        assert_eq!(p.to_string(), "org.tenant.id");
        let q = ClaimPath::from_config(&parse(br#"["https://x.io/r", "0"]"#).unwrap()).unwrap();
        assert_eq!(q.find(&claims).and_then(Value::as_str), Some("a"));
        assert_eq!(q.to_string(), r#"["https://x.io/r","0"]"#);
        assert_eq!(ClaimPath::parse("n").unwrap().find(&claims), None);
        assert_eq!(ClaimPath::parse("missing").unwrap().find(&claims), None);
    }

    #[test]
    fn rejects_bad_paths() {
        for s in ["", ".", "a.", ".a", "a..b"] {
            assert!(ClaimPath::parse(s).is_err(), "{:?}", s);
        }
        for s in ["[]", "[\"\"]", "[1]", "1", "null", "{}"] {
            assert!(
                ClaimPath::from_config(&parse(s.as_bytes()).unwrap()).is_err(),
                "{}",
                s
            );
        }
    }
}
