//! ABI v2 claim reads: NUL-separated claim paths, their lookup in the
//! verified claims, and the text form a guest receives (`plugins/ABI.md`,
//! "Claim paths" and "`claim`"). Pure functions, no guest memory.

use serde_json::{Map, Number, Value};

/// Longest claim path a guest may pass, in bytes.
pub(crate) const MAX_PATH_BYTES: usize = 1024;

/// A value is absent (or `null`, for `claim`).
pub(crate) const MISSING: i32 = -1;
/// The argument is malformed.
pub(crate) const INVALID: i32 = -2;
/// `request_header` for a header not on the plugin's `request_headers`.
pub(crate) const NOT_VISIBLE: i32 = -3;
/// `claim_count` on a value that is neither an array nor an object.
pub(crate) const NOT_CONTAINER: i32 = -4;

/// Resolves a guest path: `Err(INVALID)` for a malformed one, `Ok(None)`
/// when nothing is there.
pub(crate) fn lookup<'c>(
    claims: &'c Map<String, Value>,
    path: &[u8],
) -> Result<Option<&'c Value>, i32> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(INVALID);
    }
    // Split on the NUL byte, then check each segment (NUL is never part of
    // a multi-byte character, so this checks the whole path).
    let mut segments = path
        .split(|&b| b == 0)
        .map(|s| match std::str::from_utf8(s) {
            Ok(s) if !s.is_empty() => Ok(s),
            _ => Err(INVALID),
        });
    let first = segments.next().unwrap_or(Err(INVALID))?;
    let mut current = claims.get(first);
    for segment in segments {
        let segment = segment?;
        current = match current {
            Some(Value::Object(members)) => members.get(segment),
            Some(Value::Array(items)) => array_index(segment).and_then(|i| items.get(i)),
            // Keep checking the rest of the path for malformed segments.
            _ => None,
        };
    }
    Ok(current)
}

/// A canonical decimal index: digits only, no leading zero but `0` itself.
fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if canonical {
        segment.parse().ok()
    } else {
        None
    }
}

/// `claim_kind`: -1 absent, 0 null, 1 string, 2 number, 3 boolean, 4 array,
/// 5 object.
pub(crate) fn kind(value: Option<&Value>) -> i32 {
    match value {
        None => MISSING,
        Some(Value::Null) => 0,
        Some(Value::String(_)) => 1,
        Some(Value::Number(_)) => 2,
        Some(Value::Bool(_)) => 3,
        Some(Value::Array(_)) => 4,
        Some(Value::Object(_)) => 5,
    }
}

/// `claim_count`: items of an array, members of an object.
pub(crate) fn count(value: Option<&Value>) -> i32 {
    let n = match value {
        None | Some(Value::Null) => return MISSING,
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(members)) => members.len(),
        Some(_) => return NOT_CONTAINER,
    };
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The text of a present, non-null value. Strings are returned borrowed;
/// everything else is rendered into `scratch`.
pub(crate) fn text<'v>(value: &'v Value, scratch: &'v mut Vec<u8>) -> &'v [u8] {
    scratch.clear();
    match value {
        Value::String(s) => return s.as_bytes(),
        Value::Bool(true) => scratch.extend_from_slice(b"true"),
        Value::Bool(false) => scratch.extend_from_slice(b"false"),
        Value::Null => scratch.extend_from_slice(b"null"),
        Value::Number(n) => push_number(n, scratch),
        Value::Array(_) | Value::Object(_) => push_ascii_json(value, scratch),
    }
    scratch
}

/// Integers (and whole floats under 1e21) as integers; other floats in
/// shortest round-trip form, with an exponent below 1e-6 or from 1e21 — the
/// SDK's `Number` display, so v1 and v2 guests render claims alike.
fn push_number(n: &Number, out: &mut Vec<u8>) {
    use std::io::Write;
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
        return;
    }
    let x = n.as_f64().unwrap_or(f64::NAN);
    let a = x.abs();
    let _ = if x.fract() == 0.0 && a < 1e21 {
        write!(out, "{x}")
    } else if a != 0.0 && !(1e-6..1e21).contains(&a) {
        write!(out, "{x:e}")
    } else {
        write!(out, "{x}")
    };
}

/// Compact JSON using only printable ASCII (everything outside 0x20..=0x7E
/// as `\uXXXX`), safe in a header value as is.
fn push_ascii_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => push_number(n, out),
        Value::String(s) => push_ascii_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_ascii_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_ascii_string(key, out);
                out.push(b':');
                push_ascii_json(item, out);
            }
            out.push(b'}');
        }
    }
}

fn push_ascii_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let unit = |out: &mut Vec<u8>, u: u16| {
        out.extend_from_slice(b"\\u");
        for shift in [12u16, 8, 4, 0] {
            out.push(HEX[usize::from((u >> shift) & 0xf)]);
        }
    };
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    unit(out, *u);
                }
            }
            // Printable ASCII: one byte.
            c => out.push(c as u8),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        match json!({
            "sub": "alice",
            "n": 42, "f": 42.0, "small": 1e-7, "q": 0.25, "big": 1.5e300, "neg": -7,
            "huge": 18446744073709551615u64,
            "ok": true, "nothing": null,
            "roles": ["admin", "dev", null],
            "https://example.com/tenant": {"id": "t-1", "name": "Zürich 😀", "\"q\"": "a\nb\u{7f}"},
            "realm_access": {"roles": ["r0", "r1"]}
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn get(path: &str) -> Result<Option<String>, i32> {
        let c = claims();
        let mut scratch = Vec::new();
        lookup(&c, path.as_bytes()).map(|v| {
            v.filter(|v| !v.is_null())
                .map(|v| String::from_utf8(text(v, &mut scratch).to_vec()).unwrap())
        })
    }

    #[test]
    fn paths_step_into_objects_and_arrays_with_literal_dots() {
        assert_eq!(get("sub"), Ok(Some("alice".into())));
        assert_eq!(get("realm_access\0roles\x001"), Ok(Some("r1".into())));
        assert_eq!(
            get("https://example.com/tenant\0id"),
            Ok(Some("t-1".into()))
        );
        assert_eq!(get("roles\x002"), Ok(None), "null item reads as missing");
        assert_eq!(get("roles\x003"), Ok(None));
        assert_eq!(get("roles\x0001"), Ok(None), "leading zero is not an index");
        assert_eq!(get("roles\0+1"), Ok(None));
        assert_eq!(get("absent\0deeper"), Ok(None));
        assert_eq!(get("sub\0x"), Ok(None), "a string has no members");
        for bad in ["", "\0sub", "sub\0", "realm_access\0\0roles", "absent\0\0x"] {
            assert_eq!(get(bad), Err(INVALID), "{bad:?}");
        }
        assert_eq!(get(&"a".repeat(MAX_PATH_BYTES + 1)), Err(INVALID));
        let c = claims();
        assert_eq!(lookup(&c, b"s\xffb"), Err(INVALID));
    }

    #[test]
    fn scalars_render_like_the_sdk() {
        assert_eq!(get("n"), Ok(Some("42".into())));
        assert_eq!(get("f"), Ok(Some("42".into())));
        assert_eq!(get("small"), Ok(Some("1e-7".into())));
        assert_eq!(get("q"), Ok(Some("0.25".into())));
        assert_eq!(get("big"), Ok(Some("1.5e300".into())));
        assert_eq!(get("neg"), Ok(Some("-7".into())));
        assert_eq!(get("huge"), Ok(Some("18446744073709552000".into())));
        assert_eq!(get("ok"), Ok(Some("true".into())));
        assert_eq!(get("nothing"), Ok(None));
    }

    #[test]
    fn containers_render_as_ascii_json() {
        assert_eq!(get("roles"), Ok(Some(r#"["admin","dev",null]"#.into())));
        assert_eq!(
            get("https://example.com/tenant"),
            Ok(Some(
                r#"{"\"q\"":"a\nb\u007f","id":"t-1","name":"Z\u00fcrich \ud83d\ude00"}"#.into()
            ))
        );
    }

    #[test]
    fn kinds_and_counts() {
        let c = claims();
        let at = |p: &str| lookup(&c, p.as_bytes()).unwrap();
        assert_eq!(kind(at("absent")), MISSING);
        assert_eq!(kind(at("nothing")), 0);
        assert_eq!(kind(at("sub")), 1);
        assert_eq!(kind(at("n")), 2);
        assert_eq!(kind(at("ok")), 3);
        assert_eq!(kind(at("roles")), 4);
        assert_eq!(kind(at("realm_access")), 5);
        assert_eq!(count(at("roles")), 3);
        assert_eq!(count(at("realm_access")), 1);
        assert_eq!(count(at("sub")), NOT_CONTAINER);
        assert_eq!(count(at("nothing")), MISSING);
        assert_eq!(count(at("absent")), MISSING);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any bytes a guest passes as a path: never a panic, and INVALID
        /// exactly for an empty or over-long path, an empty segment or a
        /// segment that is not UTF-8; otherwise the value the segments name.
        #[test]
        fn any_guest_path_is_read_one_way(
            raw in proptest::collection::vec(
                proptest::prelude::prop_oneof![
                    proptest::prelude::Just(0u8),
                    proptest::prelude::Just(b'r'),
                    proptest::prelude::Just(b'0'),
                    proptest::prelude::any::<u8>(),
                ],
                0..24,
            ),
            prefix in proptest::prelude::prop_oneof![
                proptest::prelude::Just(&b""[..]),
                proptest::prelude::Just(&b"roles\0"[..]),
                proptest::prelude::Just(&b"realm_access\0"[..]),
            ],
        ) {
            let c = claims();
            let path = [prefix, &raw[..]].concat();
            let segments: Vec<&[u8]> = path.split(|&b| b == 0).collect();
            let malformed = path.is_empty()
                || path.len() > MAX_PATH_BYTES
                || segments
                    .iter()
                    .any(|s| s.is_empty() || std::str::from_utf8(s).is_err());
            match lookup(&c, &path) {
                Err(code) => {
                    proptest::prop_assert_eq!(code, INVALID);
                    proptest::prop_assert!(malformed);
                }
                Ok(found) => {
                    proptest::prop_assert!(!malformed);
                    // The same walk, done by hand on serde_json values.
                    let mut expect = c.get(std::str::from_utf8(segments[0]).unwrap());
                    for seg in &segments[1..] {
                        let seg = std::str::from_utf8(seg).unwrap();
                        expect = match expect {
                            Some(Value::Object(m)) => m.get(seg),
                            Some(Value::Array(items)) => seg
                                .parse::<usize>()
                                .ok()
                                .filter(|i| i.to_string() == seg)
                                .and_then(|i| items.get(i)),
                            _ => None,
                        };
                    }
                    proptest::prop_assert_eq!(found, expect);
                }
            }
        }
    }
}
