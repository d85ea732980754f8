//! The canonical request path (RFC 3986 §6.2.2 syntax-based normalisation,
//! made strict): one spelling per path, so that what routes are matched
//! against is exactly what the upstream receives.
//!
//! Rules, in the order a byte meets them:
//! - `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded;
//!   every other escape is kept with upper-case hex; a `%` without two hex
//!   digits is refused;
//! - NUL and other control characters, raw or escaped, are refused; so are
//!   raw bytes above 0x7F (they must be percent-encoded);
//! - `\`, and `%2F`, `%5C`, `%3B` (encoded `/`, `\`, `;`) are refused: a
//!   backend that decodes before splitting would see other segments;
//! - `//` is merged into `/` ([`EmptySegments::Merge`]) or refused;
//! - `;params` are refused ([`PathParams::Reject`]) or kept and then ignored
//!   for matching, as Tomcat does ([`PathParams::Keep`]);
//! - dot segments (`.`, `..`, in any spelling, also as `..;x` when params
//!   are kept) are refused.
//!
//! An already canonical path is returned borrowed: no allocation.

use std::borrow::Cow;

use super::{EmptySegments, PathParams};

/// The rules a path is read with (from the `requests` section).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathRules {
    /// `requests.empty_segments`: what `//` does (default `merge`).
    pub empty_segments: EmptySegments,
    /// `requests.path_params`: what `;params` do (default `reject`).
    pub path_params: PathParams,
}

/// Why a path was refused; each has a fixed metric reason and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (e.g. `*`, or empty).
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// A control character or NUL, raw or percent-encoded.
    ControlCharacter,
    /// A raw byte above 0x7F.
    NonAscii,
    /// A `.` or `..` segment, in any spelling.
    DotSegment,
    /// A raw `\`, or `%2F`, `%5C` or `%3B`.
    EncodedSeparator,
    /// `//` while `empty_segments` is `reject`.
    EmptySegment,
    /// `;params` while `path_params` is `reject`, or one that starts a
    /// segment when they are kept.
    PathParameter,
}

impl PathError {
    /// The `reason` label of `portcullis_request_refusals_total`.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not_origin_form",
            PathError::InvalidEscape => "invalid_escape",
            PathError::ControlCharacter => "control_character",
            PathError::NonAscii => "non_ascii",
            PathError::DotSegment => "dot_segment",
            PathError::EncodedSeparator => "encoded_separator",
            PathError::EmptySegment => "empty_segment",
            PathError::PathParameter => "path_parameter",
        }
    }

    /// The message the client gets with its 400.
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "path must start with `/`",
            PathError::InvalidEscape => "`%` in the path must be followed by two hex digits",
            PathError::ControlCharacter => {
                "control characters (raw or percent-encoded) are not allowed in the path"
            }
            PathError::NonAscii => {
                "raw non-ASCII bytes are not allowed in the path: percent-encode them"
            }
            PathError::DotSegment => "dot segments (`.` and `..`) are not allowed in the path",
            PathError::EncodedSeparator => {
                "encoded slashes and backslashes are not allowed in the path"
            }
            PathError::EmptySegment => "empty path segments (`//`) are not allowed",
            PathError::PathParameter => "path parameters (`;`) are not allowed in the path",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// A path read one way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// What the upstream receives (before the route's strip/add prefix).
    forward: Cow<'a, str>,
    /// `forward` without `;params`, when it has any (params kept).
    matched: Option<String>,
}

impl<'a> CanonicalPath<'a> {
    /// The path as forwarded.
    pub fn forward(&self) -> &str {
        &self.forward
    }

    /// The path routes are matched against: `forward` less any `;params`.
    pub fn matched(&self) -> &str {
        self.matched.as_deref().unwrap_or(&self.forward)
    }

    /// Whether the canonical form differs from what the client sent.
    pub fn is_rewritten(&self) -> bool {
        matches!(self.forward, Cow::Owned(_))
    }

    /// An owned copy, for keeping across pingora phases.
    pub fn into_owned(self) -> CanonicalPath<'static> {
        CanonicalPath {
            forward: Cow::Owned(self.forward.into_owned()),
            matched: self.matched,
        }
    }
}

/// Reads `raw` (the request target's path, without the query) one way.
pub fn canonicalize<'a>(raw: &'a [u8], rules: PathRules) -> Result<CanonicalPath<'a>, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut out = Output { raw, owned: None };
    let mut has_params = false;
    // Output index where the current segment starts (after its `/`).
    let mut segment_start = 0;
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        match byte {
            b'/' => {
                if i > 0 {
                    check_segment(out.segment(i, segment_start), rules)?;
                }
                if out.last_is_slash(i) {
                    match rules.empty_segments {
                        EmptySegments::Reject => return Err(PathError::EmptySegment),
                        EmptySegments::Merge => out.replace(i, b""),
                    }
                } else {
                    out.keep(byte);
                }
                i += 1;
                segment_start = out.len(i);
            }
            b'%' => {
                let (Some(&high), Some(&low)) = (raw.get(i + 1), raw.get(i + 2)) else {
                    return Err(PathError::InvalidEscape);
                };
                let (Some(h), Some(l)) = (hex_value(high), hex_value(low)) else {
                    return Err(PathError::InvalidEscape);
                };
                let decoded = h << 4 | l;
                match decoded {
                    0x00..=0x1F | 0x7F => return Err(PathError::ControlCharacter),
                    b'/' | b'\\' | b';' => return Err(PathError::EncodedSeparator),
                    _ if is_unreserved(decoded) => out.replace(i, &[decoded]),
                    _ if high.is_ascii_lowercase() || low.is_ascii_lowercase() => out.replace(
                        i,
                        &[b'%', high.to_ascii_uppercase(), low.to_ascii_uppercase()],
                    ),
                    _ => {
                        out.keep(b'%');
                        out.keep(high);
                        out.keep(low);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            b';' => match rules.path_params {
                PathParams::Reject => return Err(PathError::PathParameter),
                PathParams::Keep => {
                    // `/;x/admin` would be `//admin` once the param is dropped.
                    if out.len(i) == segment_start {
                        return Err(PathError::PathParameter);
                    }
                    has_params = true;
                    out.keep(byte);
                    i += 1;
                }
            },
            0x00..=0x1F | 0x7F => return Err(PathError::ControlCharacter),
            0x80..=0xFF => return Err(PathError::NonAscii),
            _ => {
                out.keep(byte);
                i += 1;
            }
        }
    }
    check_segment(out.segment(raw.len(), segment_start), rules)?;
    let forward = match out.owned {
        // Every byte was checked to be ASCII above.
        Some(bytes) => Cow::Owned(String::from_utf8(bytes).map_err(|_| PathError::NonAscii)?),
        None => Cow::Borrowed(std::str::from_utf8(raw).map_err(|_| PathError::NonAscii)?),
    };
    let matched = has_params.then(|| without_params(&forward));
    Ok(CanonicalPath { forward, matched })
}

/// The canonical output, borrowed from `raw` until the first byte that
/// changes; then an owned copy of everything so far plus what follows.
struct Output<'a> {
    raw: &'a [u8],
    owned: Option<Vec<u8>>,
}

impl Output<'_> {
    /// The raw byte at the current position stays as it is.
    fn keep(&mut self, byte: u8) {
        if let Some(owned) = &mut self.owned {
            owned.push(byte);
        }
    }

    /// The raw bytes at position `at` are replaced by `bytes`.
    fn replace(&mut self, at: usize, bytes: &[u8]) {
        let raw = self.raw;
        self.owned
            .get_or_insert_with(|| {
                let mut v = Vec::with_capacity(raw.len());
                v.extend_from_slice(&raw[..at]);
                v
            })
            .extend_from_slice(bytes);
    }

    /// Output length when the raw position is `at`.
    fn len(&self, at: usize) -> usize {
        self.owned.as_ref().map_or(at, Vec::len)
    }

    fn last_is_slash(&self, at: usize) -> bool {
        match &self.owned {
            Some(owned) => owned.last() == Some(&b'/'),
            None => at > 0 && self.raw[at - 1] == b'/',
        }
    }

    /// The output from `start` to the current raw position `at`.
    fn segment(&self, at: usize, start: usize) -> &[u8] {
        match &self.owned {
            Some(owned) => &owned[start..],
            None => &self.raw[start..at],
        }
    }
}

/// Refuses dot segments; with params kept, also `..;x` (Tomcat drops the
/// param and then resolves the `..`).
fn check_segment(segment: &[u8], rules: PathRules) -> Result<(), PathError> {
    let name = match rules.path_params {
        PathParams::Keep => segment.split(|&b| b == b';').next().unwrap_or(segment),
        PathParams::Reject => segment,
    };
    if name == b"." || name == b".." {
        return Err(PathError::DotSegment);
    }
    Ok(())
}

/// `path` with every segment's `;params` removed.
fn without_params(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (n, segment) in path.split('/').enumerate() {
        if n > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(segment));
    }
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3 unreserved characters.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(empty: EmptySegments, params: PathParams) -> PathRules {
        PathRules {
            empty_segments: empty,
            path_params: params,
        }
    }

    fn canon(path: &str) -> Result<String, PathError> {
        canonicalize(path.as_bytes(), PathRules::default()).map(|c| c.forward().to_owned())
    }

    #[test]
    fn canonical_paths_are_borrowed_unchanged() {
        for path in [
            "/",
            "/api/users/1",
            "/a/.../b",
            "/a/.b",
            "/%C3%A9t%C3%A9",
            "/a-b_c~d/",
        ] {
            let c = canonicalize(path.as_bytes(), PathRules::default()).unwrap();
            assert_eq!(c.forward(), path);
            assert!(!c.is_rewritten(), "{path}");
            assert!(matches!(c.forward, Cow::Borrowed(_)), "{path}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(canon("/api/%61dmin").unwrap(), "/api/admin");
        assert_eq!(canon("/%41%7a%2D%2e%5F%7E").unwrap(), "/Az-._~");
        assert_eq!(canon("/a%c3%a9").unwrap(), "/a%C3%A9");
        assert_eq!(canon("/a%20b%3a").unwrap(), "/a%20b%3A");
        assert_eq!(canon("/100%25").unwrap(), "/100%25");
    }

    #[test]
    fn bad_escapes_controls_and_raw_non_ascii_are_refused() {
        for (path, want) in [
            ("/a%", PathError::InvalidEscape),
            ("/a%2", PathError::InvalidEscape),
            ("/a%zz", PathError::InvalidEscape),
            ("/a%00", PathError::ControlCharacter),
            ("/a%0a", PathError::ControlCharacter),
            ("/a%7F", PathError::ControlCharacter),
            ("/a\u{1}b", PathError::ControlCharacter),
            ("/caf\u{e9}", PathError::NonAscii),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a%3bb", PathError::EncodedSeparator),
            ("/a\\b", PathError::EncodedSeparator),
            ("a/b", PathError::NotOriginForm),
            ("", PathError::NotOriginForm),
            ("*", PathError::NotOriginForm),
        ] {
            assert_eq!(canon(path), Err(want), "{path:?}");
        }
        let raw = b"/a\xffb";
        assert_eq!(
            canonicalize(raw, PathRules::default()),
            Err(PathError::NonAscii)
        );
    }

    #[test]
    fn dot_segments_are_refused_in_any_spelling_and_nothing_else() {
        for bad in [
            "/a/./b",
            "/a/../b",
            "/..",
            "/.",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/%2E",
            "/a/%2e.",
            "/a/..",
        ] {
            assert_eq!(canon(bad), Err(PathError::DotSegment), "{bad}");
        }
        for good in ["/a/.../b", "/a/.b", "/a/b.", "/%2e%2e%2e", "/x/%2ex"] {
            assert!(canon(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn empty_segments_merge_or_refuse() {
        assert_eq!(canon("//api//admin//").unwrap(), "/api/admin/");
        assert_eq!(canon("//").unwrap(), "/");
        assert_eq!(canon("/a/%2e%2e%2e//b").unwrap(), "/a/.../b");
        let strict = rules(EmptySegments::Reject, PathParams::Reject);
        assert_eq!(
            canonicalize(b"/api//admin", strict),
            Err(PathError::EmptySegment)
        );
        assert!(canonicalize(b"/api/admin/", strict).is_ok());
    }

    #[test]
    fn path_params_are_refused_or_kept_and_ignored_for_matching() {
        assert_eq!(canon("/api;x/admin"), Err(PathError::PathParameter));
        let keep = rules(EmptySegments::Merge, PathParams::Keep);
        let c = canonicalize(b"/api;jsessionid=1/Admin;v=2", keep).unwrap();
        assert_eq!(c.forward(), "/api;jsessionid=1/Admin;v=2");
        assert_eq!(c.matched(), "/api/Admin");
        assert_eq!(
            canonicalize(b"/public/..;x/admin", keep),
            Err(PathError::DotSegment)
        );
        assert_eq!(
            canonicalize(b"/public/.;/admin", keep),
            Err(PathError::DotSegment)
        );
        assert_eq!(
            canonicalize(b"/;x/admin", keep),
            Err(PathError::PathParameter)
        );
        assert_eq!(
            canonicalize(b"/a/%2e%2e;x/b", keep),
            Err(PathError::DotSegment)
        );
    }
}
