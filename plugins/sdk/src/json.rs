//! A small, strict JSON (RFC 8259) parser, value type and serializer.
//!
//! Why not serde_json: the plugin workspace must build with rustc 1.63 and no
//! crates.io dependencies, and plugins only need to read a config and a claims
//! object and write a few header values.
//!
//! Rules (chosen to agree with what the host sends and with serde_json):
//! - input must be UTF-8; whitespace is space, tab, CR, LF only;
//! - no trailing commas, comments, leading zeros, `NaN`, or bare control
//!   characters in strings; escapes `\" \\ \/ \b \f \n \r \t \uXXXX`, with
//!   surrogate pairs combined and lone surrogates rejected;
//! - integers without fraction or exponent that fit an `i64` stay exact
//!   ([`Number::Int`]); every other number is an `f64` ([`Number::Float`]) and
//!   must be finite;
//! - objects keep their keys in input order; on duplicate keys, lookups see
//!   the **last** one (as serde_json and JavaScript do);
//! - nesting deeper than [`MAX_DEPTH`] (arrays + objects) is rejected, so a
//!   hostile input cannot exhaust the guest's stack.

use std::fmt;

/// Default maximum nesting depth of arrays and objects accepted by [`parse`].
pub const MAX_DEPTH: usize = 64;

/// A JSON number: exact integer when possible, else a finite `f64`.
#[derive(Debug, Clone, Copy)]
pub enum Number {
    /// An integer literal (no fraction, no exponent) that fits in `i64`.
    Int(i64),
    /// Any other number; always finite.
    Float(f64),
}

impl Number {
    /// The value as `f64` (large integers may lose precision).
    pub fn as_f64(&self) -> f64 {
        match *self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// The value as `i64` when it is an integer (including floats such as
    /// `2.0` or `1e3` that are whole and in range).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Number::Int(i) => Some(i),
            Number::Float(f) => {
                // 2^63 is exactly representable; the range is [-2^63, 2^63).
                if f.fract() == 0.0
                    && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
                {
                    Some(f as i64)
                } else {
                    None
                }
            }
        }
    }
}

impl Number {
    /// Reads a number written as a JSON number literal — in particular the
    /// text form ABI v2's `claim` import gives for numbers (`42`, `-7`,
    /// `0.25`, `1e-7`, `1.5e300`). Integer literals that fit an `i64` become
    /// [`Number::Int`], everything else a finite [`Number::Float`], exactly
    /// as [`parse`] would read them. `None` for anything else.
    pub fn from_text(text: &str) -> Option<Number> {
        match text.as_bytes().first() {
            Some(b'-') | Some(b'0'..=b'9') => {}
            _ => return None,
        }
        match parse_with_depth(text.as_bytes(), 0) {
            Ok(Value::Number(n)) => Some(n),
            _ => None,
        }
    }
}

impl PartialEq for Number {
    /// Numeric equality: `1`, `1.0` and `1e0` are equal.
    fn eq(&self, other: &Number) -> bool {
        match (*self, *other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            (a, b) => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => a.as_f64() == b.as_f64(),
            },
        }
    }
}

impl fmt::Display for Number {
    /// Integers print without a fraction (`42`, also for `42.0`); other
    /// numbers print in the shortest form that round-trips, using an
    /// exponent only for very large or very small magnitudes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Number::Int(i) => write!(f, "{}", i),
            Number::Float(x) => {
                let a = x.abs();
                if x.fract() == 0.0 && a < 1e21 {
                    // Rust prints whole floats without ".0" in Display.
                    write!(f, "{}", x)
                } else if a != 0.0 && !(1e-6..1e21).contains(&a) {
                    write!(f, "{:e}", x)
                } else {
                    write!(f, "{}", x)
                }
            }
        }
    }
}

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object; keys in input order (duplicates kept, lookups use the last).
    Object(Vec<(String, Value)>),
}

/// Why a JSON text was rejected, with the byte offset where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the input.
    pub offset: usize,
    /// What was wrong.
    pub message: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a complete JSON text (UTF-8 bytes) with the default depth limit.
pub fn parse(input: &[u8]) -> Result<Value, ParseError> {
    parse_with_depth(input, MAX_DEPTH)
}

/// Parses a complete JSON text, allowing at most `max_depth` nested
/// arrays/objects (a scalar has depth 0, `[]` depth 1).
pub fn parse_with_depth(input: &[u8], max_depth: usize) -> Result<Value, ParseError> {
    let text = match std::str::from_utf8(input) {
        Ok(t) => t,
        Err(e) => {
            return Err(ParseError {
                offset: e.valid_up_to(),
                message: "input is not valid UTF-8",
            })
        }
    };
    let mut p = Parser {
        s: text,
        b: input,
        i: 0,
        depth_left: max_depth,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth_left: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, message: &'static str) -> ParseError {
        ParseError {
            offset: self.i,
            message,
        }
    }

    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn literal(&mut self, word: &'static str, v: Value) -> Result<Value, ParseError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            None => Err(self.err("unexpected end of input")),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'[') => self.array(),
            Some(b'{') => self.object(),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => Err(self.err("expected a JSON value")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        if self.depth_left == 0 {
            return Err(self.err("nesting too deep"));
        }
        self.depth_left -= 1;
        Ok(())
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        self.enter()?;
        self.i += 1; // [
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth_left += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                None => return Err(self.err("unexpected end of input in array")),
                Some(_) => return Err(self.err("expected ',' or ']'")),
            }
        }
        self.depth_left += 1;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        self.enter()?;
        self.i += 1; // {
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth_left += 1;
            return Ok(Value::Object(Vec::new()));
        }
        // Claim sets usually have 5-10 members: one allocation instead of
        // growing 4 -> 8 -> 16.
        let mut members = Vec::with_capacity(8);
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            members.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                None => return Err(self.err("unexpected end of input in object")),
                Some(_) => return Err(self.err("expected ',' or '}'")),
            }
        }
        self.depth_left += 1;
        Ok(Value::Object(members))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut v: u32 = 0;
        for _ in 0..4 {
            let c = match self.peek() {
                Some(c) => c,
                None => return Err(self.err("unexpected end of input in \\u escape")),
            };
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.err("invalid hex digit in \\u escape")),
            };
            v = v * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1; // opening quote
                     // Fast path: most strings (claim names, ids, e-mails) have no escapes;
                     // copy them in one exact allocation.
        let plain_end = self.b[self.i..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map(|n| self.i + n);
        if let Some(end) = plain_end {
            if self.b[end] == b'"' {
                let text = String::from(&self.s[self.i..end]);
                self.i = end + 1;
                return Ok(text);
            }
        }
        let mut out = String::new();
        let mut run = self.i; // start of the current unescaped run
        loop {
            let c = match self.peek() {
                Some(c) => c,
                None => return Err(self.err("unterminated string")),
            };
            match c {
                b'"' => {
                    out.push_str(&self.s[run..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.s[run..self.i]);
                    self.i += 1;
                    let e = match self.peek() {
                        Some(e) => e,
                        None => return Err(self.err("unterminated escape")),
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                // High surrogate: a low surrogate escape must follow.
                                if !self.b[self.i..].starts_with(b"\\u") {
                                    return Err(self.err("lone high surrogate in \\u escape"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(
                                        self.err("high surrogate not followed by a low surrogate")
                                    );
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("lone low surrogate in \\u escape"));
                            } else {
                                hi
                            };
                            match char::from_u32(cp) {
                                Some(ch) => out.push(ch),
                                None => return Err(self.err("invalid code point")),
                            }
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape"));
                        }
                    }
                    run = self.i;
                }
                0x00..=0x1f => return Err(self.err("control character in string")),
                _ => self.i += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.i += 1;
            } else {
                break;
            }
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                    return Err(self.err("leading zero in number"));
                }
            }
            Some(c) if c.is_ascii_digit() => {
                self.digits();
            }
            _ => return Err(self.err("expected digits")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("expected digits after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e') | Some(b'E')) {
            integer = false;
            self.i += 1;
            if matches!(self.peek(), Some(b'+') | Some(b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("expected digits in exponent"));
            }
        }
        let text = &self.s[start..self.i];
        if integer {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Number(Number::Int(i)));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Number(Number::Float(f))),
            _ => Err(ParseError {
                offset: start,
                message: "number out of range",
            }),
        }
    }
}

impl Value {
    /// Parses a JSON text; see [`parse`].
    pub fn parse(input: &[u8]) -> Result<Value, ParseError> {
        parse(input)
    }

    /// The member `key` of an object (the last one if repeated); `None` for
    /// non-objects and absent keys.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a dotted path such as `org.tenant.id` through nested objects.
    /// A segment that is a decimal index (`roles.0`) indexes into an array.
    /// Returns `None` when any step is missing; a present `null` is returned
    /// as `Some(&Value::Null)`. Keys containing dots need
    /// [`Value::lookup_segments`] (or an array path in plugin configs).
    pub fn lookup(&self, dotted: &str) -> Option<&Value> {
        let mut cur = self;
        for seg in dotted.split('.') {
            cur = cur.step(seg)?;
        }
        Some(cur)
    }

    /// Like [`Value::lookup`] with the path already split into segments.
    pub fn lookup_segments<S: AsRef<str>>(&self, segments: &[S]) -> Option<&Value> {
        let mut cur = self;
        for seg in segments {
            cur = cur.step(seg.as_ref())?;
        }
        Some(cur)
    }

    fn step(&self, seg: &str) -> Option<&Value> {
        match self {
            Value::Object(_) => self.get(seg),
            Value::Array(items) => {
                // Only plain decimal indexes: no sign, no leading zeros.
                if seg.is_empty()
                    || !seg.bytes().all(|b| b.is_ascii_digit())
                    || (seg.len() > 1 && seg.starts_with('0'))
                {
                    return None;
                }
                seg.parse::<usize>().ok().and_then(|i| items.get(i))
            }
            _ => None,
        }
    }

    /// `true` for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number, if this is a number.
    pub fn as_number(&self) -> Option<Number> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The integer value of a whole number (`3`, `3.0`), else `None`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(|n| n.as_i64())
    }

    /// Any number as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        self.as_number().map(|n| n.as_f64())
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members in input order, if this is an object.
    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// A short name of the JSON type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Compact JSON encoding (UTF-8 output, only `"`, `\` and control
    /// characters escaped).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        write_json(self, &mut out, false);
        out
    }

    /// Compact JSON encoding using only printable ASCII: everything outside
    /// 0x20..=0x7E is written as `\uXXXX` (surrogate pairs above U+FFFF).
    /// Safe to put in an HTTP header value as is.
    pub fn to_json_ascii(&self) -> String {
        let mut out = String::new();
        write_json(self, &mut out, true);
        out
    }

    /// Text form for places that want a plain string: strings as they are
    /// (no quotes), numbers as in [`Number`]'s `Display`, `true`/`false`,
    /// `null`, and arrays/objects as compact JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            other => other.to_json(),
        }
    }
}

impl fmt::Display for Value {
    /// Compact JSON, same as [`Value::to_json`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

fn write_json(v: &Value, out: &mut String, ascii: bool) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            use fmt::Write;
            let _ = write!(out, "{}", n);
        }
        Value::String(s) => write_json_string(s, out, ascii),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out, ascii);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out, ascii);
                out.push(':');
                write_json(item, out, ascii);
            }
            out.push('}');
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u_escape(out: &mut String, unit: u16) {
    out.push_str("\\u");
    for shift in [12u16, 8, 4, 0] {
        out.push(HEX[usize::from((unit >> shift) & 0xf)] as char);
    }
}

/// Appends `s` as a JSON string literal (with quotes) to `out`.
pub fn write_json_string(s: &str, out: &mut String, ascii: bool) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => push_u_escape(out, c as u16),
            c if ascii && (c as u32) >= 0x7f => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u_escape(out, *unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Value {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{}: {}", s, e))
    }

    fn bad(s: &str) -> ParseError {
        match parse(s.as_bytes()) {
            Ok(v) => panic!("{:?} should be rejected, got {:?}", s, v),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_scalars() {
        assert_eq!(p("null"), Value::Null);
        assert_eq!(p(" true "), Value::Bool(true));
        assert_eq!(p("false"), Value::Bool(false));
        assert_eq!(p("0"), Value::Number(Number::Int(0)));
        assert_eq!(p("-0"), Value::Number(Number::Int(0)));
        assert_eq!(p("42"), Value::Number(Number::Int(42)));
        assert_eq!(p("-17"), Value::Number(Number::Int(-17)));
        assert_eq!(p("\"hi\""), Value::String("hi".into()));
        assert!(matches!(p("1.5"), Value::Number(Number::Float(f)) if f == 1.5));
        assert!(matches!(p("-2.5e3"), Value::Number(Number::Float(f)) if f == -2500.0));
        assert!(matches!(p("1E+2"), Value::Number(Number::Float(f)) if f == 100.0));
    }

    #[test]
    fn integers_beyond_i64_become_floats_and_extremes_stay_exact() {
        assert_eq!(
            p("9223372036854775807"),
            Value::Number(Number::Int(i64::MAX))
        );
        assert_eq!(
            p("-9223372036854775808"),
            Value::Number(Number::Int(i64::MIN))
        );
        assert!(matches!(
            p("9223372036854775808"),
            Value::Number(Number::Float(_))
        ));
    }

    #[test]
    fn parses_nested_structures_in_order() {
        let v = p(r#" { "a" : [1, {"b": null}, "x"], "c": {"d": {"e": true}} } "#);
        assert_eq!(v.lookup("c.d.e"), Some(&Value::Bool(true)));
        assert_eq!(v.lookup("a.1.b"), Some(&Value::Null));
        assert_eq!(v.lookup("a.2"), Some(&Value::String("x".into())));
        let keys: Vec<&str> = v
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(p("[]"), Value::Array(vec![]));
        assert_eq!(p("{}"), Value::Object(vec![]));
        assert_eq!(p("[[],[[]]]").to_json(), "[[],[[]]]");
    }

    #[test]
    fn lookup_misses_and_array_index_rules() {
        let v = p(r#"{"a":{"b":1},"r":["x","y"],"n":null}"#);
        assert_eq!(v.lookup("a.c"), None);
        assert_eq!(v.lookup("a.b.c"), None);
        assert_eq!(v.lookup("zz"), None);
        assert_eq!(v.lookup("n"), Some(&Value::Null));
        assert_eq!(v.lookup("r.1").and_then(Value::as_str), Some("y"));
        assert_eq!(v.lookup("r.2"), None);
        assert_eq!(v.lookup("r.01"), None);
        assert_eq!(v.lookup("r.-1"), None);
        assert_eq!(v.lookup("r.+1"), None);
        assert_eq!(v.lookup(""), None);
        assert_eq!(
            v.lookup_segments(&["a", "b"]).and_then(Value::as_i64),
            Some(1)
        );
        let dotted = p(r#"{"https://example.com/roles":["admin"]}"#);
        assert!(dotted
            .lookup_segments(&["https://example.com/roles"])
            .is_some());
        assert!(dotted.lookup("https://example.com/roles").is_none());
    }

    #[test]
    fn duplicate_keys_resolve_to_the_last() {
        let v = p(r#"{"role":"user","role":"admin"}"#);
        assert_eq!(v.get("role").and_then(Value::as_str), Some("admin"));
    }

    #[test]
    fn string_escapes_and_unicode() {
        assert_eq!(
            p(r#""a\"b\\c\/d\b\f\n\r\t""#).as_str(),
            Some("a\"b\\c/d\u{8}\u{c}\n\r\t")
        );
        assert_eq!(p(r#""\u00e9\u4e2d""#).as_str(), Some("é中"));
        assert_eq!(p(r#""\u0000""#).as_str(), Some("\0"));
        // U+1F600 as a surrogate pair, upper and lower case hex.
        assert_eq!(p(r#""\ud83d\uDE00""#).as_str(), Some("😀"));
        assert_eq!(p("\"raw 😀 é\"").as_str(), Some("raw 😀 é"));
    }

    #[test]
    fn rejects_bad_strings() {
        bad(r#""\ud83d""#); // lone high surrogate
        bad(r#""\ud83dx""#);
        bad(r#""\ud83d\u0041""#); // high followed by non-low
        bad(r#""\ude00""#); // lone low surrogate
        bad(r#""\x""#);
        bad(r#""\u12""#);
        bad(r#""\u12g4""#);
        bad("\"a\nb\"");
        bad("\"tab\there\"");
        bad("\"unterminated");
        bad("\"ends in escape\\");
        assert_eq!(
            parse(b"\"\xff\"").unwrap_err().message,
            "input is not valid UTF-8"
        );
    }

    #[test]
    fn rejects_bad_numbers_and_literals() {
        for s in [
            "01",
            "-",
            "+1",
            "1.",
            ".5",
            "1e",
            "1e+",
            "0x10",
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "tru",
            "nul",
            "True",
        ] {
            bad(s);
        }
    }

    #[test]
    fn rejects_bad_structure() {
        for s in [
            "",
            " ",
            "[1,]",
            "[,1]",
            "{\"a\":1,}",
            "{a:1}",
            "{\"a\" 1}",
            "{\"a\":}",
            "[1 2]",
            "[",
            "{",
            "{\"a\":1",
            "1 2",
            "[]]",
            "{}x",
            "// c\n1",
            "'a'",
        ] {
            bad(s);
        }
    }

    #[test]
    fn depth_limit_is_enforced() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        p(&ok);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(bad(&deep).message, "nesting too deep");
        let objs = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(bad(&objs).message, "nesting too deep");
        // Siblings do not add up: depth is nesting, not count.
        let wide = format!("[{}]", vec!["[[]]"; 1000].join(","));
        p(&wide);
        assert!(parse_with_depth(b"[[1]]", 1).is_err());
        assert!(parse_with_depth(b"[[1]]", 2).is_ok());
        assert!(parse_with_depth(b"1", 0).is_ok());
        // A very deep input fails cleanly instead of overflowing the stack.
        let huge = "[".repeat(1_000_000);
        assert!(parse(huge.as_bytes()).is_err());
    }

    #[test]
    fn serializes_compactly_and_round_trips() {
        let src = r#"{"s":"a\"\\\n\u0001é","n":[1,-2,1.5,1e300,0.000001,1e-7,-0.0],"b":[true,false,null],"o":{}}"#;
        let v = p(src);
        let out = v.to_json();
        assert_eq!(
            out,
            r#"{"s":"a\"\\\n\u0001é","n":[1,-2,1.5,1e300,0.000001,1e-7,-0],"b":[true,false,null],"o":{}}"#
        );
        assert_eq!(p(&out), v);
        assert_eq!(p(&v.to_json_ascii()), v);
    }

    #[test]
    fn ascii_serialization_escapes_non_ascii_and_del() {
        let v = Value::String("é😀\u{7f}~".into());
        assert_eq!(v.to_json_ascii(), r#""\u00e9\ud83d\ude00\u007f~""#);
        assert_eq!(v.to_json(), "\"é😀\u{7f}~\"");
    }

    #[test]
    fn numbers_print_integers_without_fraction() {
        assert_eq!(p("3.0").to_text(), "3");
        assert_eq!(p("1e3").to_text(), "1000");
        assert_eq!(p("-12.50").to_text(), "-12.5");
        assert_eq!(p("12345678901234567890").to_text(), "12345678901234567000");
        assert_eq!(p("1e21").to_text(), "1e21");
        assert_eq!(p("0.1").to_text(), "0.1");
        assert_eq!(p("true").to_text(), "true");
        assert_eq!(p("null").to_text(), "null");
        assert_eq!(p("\"x y\"").to_text(), "x y");
        assert_eq!(p("[1,\"a\"]").to_text(), "[1,\"a\"]");
    }

    #[test]
    fn number_equality_is_numeric() {
        assert_eq!(p("1"), p("1.0"));
        assert_eq!(p("100"), p("1e2"));
        assert_ne!(p("1"), p("1.5"));
        assert_ne!(p("1"), p("\"1\""));
        assert_eq!(p("1.0").as_i64(), Some(1));
        assert_eq!(p("1.5").as_i64(), None);
        assert_eq!(p("1e19").as_i64(), None);
    }
}
