//! Claim paths as written in plugin configs, and their ABI v2 wire form.

use crate::json::Value;
use std::fmt;

/// Longest encoded claim path the host accepts (ABI v2): 1024 bytes.
pub const MAX_ENCODED_LEN: usize = 1024;

/// Where a claim lives in the claims object: `"sub"`, `"org.tenant.id"`
/// (dots step into nested objects; a decimal segment indexes an array), or,
/// for claim names that contain dots such as `https://example.com/roles`, a
/// JSON array of segments: `["https://example.com/roles"]`.
///
/// For ABI v2 a path also has a **wire form**: the segments joined with the
/// byte 0x00, computed once here ([`ClaimPath::encoded`]). A segment that
/// contains NUL, or a wire form longer than [`MAX_ENCODED_LEN`], cannot be
/// addressed through the v2 imports: v2 plugins reject such paths at config
/// time with [`ClaimPath::check_addressable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    segments: Vec<String>,
    /// Segments joined with NUL; empty when the path is not addressable.
    wire: Vec<u8>,
}

impl ClaimPath {
    /// Parses a dotted path; empty segments (`a..b`, `.a`, ``) are rejected.
    pub fn parse(dotted: &str) -> Result<ClaimPath, String> {
        let segments: Vec<String> = dotted.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("claim path `{}` has an empty segment", dotted));
        }
        Ok(ClaimPath::from_segments_unchecked(segments))
    }

    /// A path from its segments (each non-empty; dots are literal).
    pub fn from_segments<S: Into<String>>(
        segments: impl IntoIterator<Item = S>,
    ) -> Result<ClaimPath, String> {
        let segments: Vec<String> = segments.into_iter().map(Into::into).collect();
        if segments.is_empty() || segments.iter().any(String::is_empty) {
            return Err("a claim path needs one or more non-empty segments".to_string());
        }
        Ok(ClaimPath::from_segments_unchecked(segments))
    }

    fn from_segments_unchecked(segments: Vec<String>) -> ClaimPath {
        let mut wire = Vec::new();
        if segments.iter().all(|s| !s.contains('\0')) {
            for (i, s) in segments.iter().enumerate() {
                if i > 0 {
                    wire.push(0);
                }
                wire.extend_from_slice(s.as_bytes());
            }
            if wire.len() > MAX_ENCODED_LEN {
                wire = Vec::new();
            }
        }
        ClaimPath { segments, wire }
    }

    /// The ABI v2 wire form: the segments joined with NUL
    /// (`realm_access\0roles`). `None` when a segment contains NUL or the
    /// form is longer than [`MAX_ENCODED_LEN`] bytes.
    pub fn encoded(&self) -> Option<&[u8]> {
        if self.wire.is_empty() {
            None
        } else {
            Some(&self.wire)
        }
    }

    /// Appends the wire form to `out`, for building item paths (append
    /// `\0` and an index). `Err` as for [`ClaimPath::check_addressable`].
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
        self.check_addressable()?;
        out.extend_from_slice(&self.wire);
        Ok(())
    }

    /// `Ok` when the path can be read through the ABI v2 imports; otherwise
    /// the reason (for a config error): a segment containing NUL, or a wire
    /// form over 1024 bytes.
    pub fn check_addressable(&self) -> Result<(), String> {
        if !self.wire.is_empty() {
            return Ok(());
        }
        if self.segments.iter().any(|s| s.contains('\0')) {
            Err(format!(
                "claim path {} contains a NUL character, which no claim path can address",
                self
            ))
        } else {
            Err(format!(
                "claim path {} is longer than {} bytes",
                self, MAX_ENCODED_LEN
            ))
        }
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
                Ok(ClaimPath::from_segments_unchecked(segments))
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
    fn wire_form_joins_segments_with_nul() {
        let p = ClaimPath::parse("realm_access.roles.0").unwrap();
        assert_eq!(p.encoded(), Some(&b"realm_access\0roles\00"[..]));
        let q = ClaimPath::from_config(&parse(br#"["https://x.io/r"]"#).unwrap()).unwrap();
        assert_eq!(q.encoded(), Some(&b"https://x.io/r"[..]));
        assert!(q.check_addressable().is_ok());
        let mut out = b"x".to_vec();
        q.encode_into(&mut out).unwrap();
        assert_eq!(out, b"xhttps://x.io/r");
        let nul = ClaimPath::from_config(&parse(br#"["a\u0000b"]"#).unwrap()).unwrap();
        assert_eq!(nul.encoded(), None);
        assert!(nul.check_addressable().unwrap_err().contains("NUL"));
        assert!(nul.encode_into(&mut out).is_err());
        let long = ClaimPath::parse(&"a".repeat(1025)).unwrap();
        assert!(long.check_addressable().unwrap_err().contains("1024"));
        assert!(ClaimPath::parse(&"a".repeat(1024))
            .unwrap()
            .encoded()
            .is_some());
        assert_eq!(
            ClaimPath::from_segments(["a.b", "c"]).unwrap().encoded(),
            Some(&b"a.b\0c"[..])
        );
        assert!(ClaimPath::from_segments(Vec::<String>::new()).is_err());
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
