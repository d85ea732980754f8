//! Which headers a plugin may write, and what a valid write looks like.
//!
//! Checked twice: the allow-list when a plugin is compiled (so a config that
//! asks for `Authorization` fails `portcullis check`), and every write the
//! guest makes at run time (so a module that ignores its own config still
//! cannot touch them).

use http::{HeaderName, HeaderValue};

/// Longest header value a plugin may write, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

/// Longest header name a plugin may write, in bytes (longer is "invalid").
pub(super) const MAX_HEADER_NAME_BYTES: usize = 256;

/// Headers no plugin may set, append or remove, whatever its allow-list says:
/// routing (`host`), credentials, message framing and hop-by-hop headers.
/// Every `x-forwarded-*` name is forbidden too (see [`is_forbidden`]): the
/// gateway owns the forwarding headers.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "forwarded",
];

/// Request headers never shown to a plugin: they carry credentials.
pub const HIDDEN_REQUEST_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// Whether no plugin may ever write `name`.
pub fn is_forbidden(name: &HeaderName) -> bool {
    let name = name.as_str(); // always lower-case
    FORBIDDEN_HEADERS.contains(&name) || name.starts_with("x-forwarded-")
}

/// Whether `name` may never be passed to a plugin in the request JSON.
pub fn is_hidden_from_plugins(name: &HeaderName) -> bool {
    HIDDEN_REQUEST_HEADERS.contains(&name.as_str())
}

/// Why a header write was not accepted: the ABI's nonzero answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 1: forbidden, or not on the plugin's allow-list.
    Refused(String),
    /// 2: not a token name, or a value with CR/LF/NUL or over the limit.
    Invalid(String),
}

impl Rejection {
    /// The code returned to the guest.
    pub(crate) fn code(&self) -> i32 {
        match self {
            Rejection::Refused(_) => 1,
            Rejection::Invalid(_) => 2,
        }
    }

    /// What happened, for the operator.
    pub(crate) fn into_detail(self) -> String {
        match self {
            Rejection::Refused(d) | Rejection::Invalid(d) => d,
        }
    }
}

/// Parses a header name written by a guest (any case; stored lower-case).
pub(crate) fn parse_name(bytes: &[u8]) -> Result<HeaderName, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::Invalid("empty header name".to_string()));
    }
    if bytes.len() > MAX_HEADER_NAME_BYTES {
        return Err(Rejection::Invalid(format!(
            "header name of {} bytes (limit {MAX_HEADER_NAME_BYTES})",
            bytes.len()
        )));
    }
    HeaderName::from_bytes(bytes).map_err(|_| {
        Rejection::Invalid(format!(
            "`{}` is not a valid header name",
            String::from_utf8_lossy(bytes).escape_debug()
        ))
    })
}

/// Checks that `name` is writable by a plugin with this allow-list.
pub(crate) fn check_allowed(name: &HeaderName, allow: &[HeaderName]) -> Result<(), Rejection> {
    if is_forbidden(name) {
        return Err(Rejection::Refused(format!(
            "tried to write `{name}`, which no plugin may change"
        )));
    }
    if !allow.contains(name) {
        return Err(Rejection::Refused(format!(
            "tried to write `{name}`, which is not in its allow_headers"
        )));
    }
    Ok(())
}

/// Parses a header value written by a guest.
pub(crate) fn parse_value(name: &HeaderName, bytes: &[u8]) -> Result<HeaderValue, Rejection> {
    if bytes.len() > MAX_HEADER_VALUE_BYTES {
        return Err(Rejection::Invalid(format!(
            "value for `{name}` is {} bytes (limit {MAX_HEADER_VALUE_BYTES})",
            bytes.len()
        )));
    }
    if bytes.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Rejection::Invalid(format!(
            "value for `{name}` contains CR, LF or NUL"
        )));
    }
    HeaderValue::from_bytes(bytes)
        .map_err(|_| Rejection::Invalid(format!("value for `{name}` contains control characters")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_framing_and_forwarding_headers_are_forbidden() {
        for h in [
            "host",
            "authorization",
            "cookie",
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
            "trailer",
            "upgrade",
            "x-forwarded-for",
            "x-forwarded-proto",
            "forwarded",
        ] {
            assert!(is_forbidden(&HeaderName::from_static(h)), "{h}");
        }
        for h in ["x-user-id", "x-tenant", "x-forwarded", "accept"] {
            assert!(!is_forbidden(&HeaderName::from_static(h)), "{h}");
        }
    }

    #[test]
    fn names_are_tokens_and_lower_cased() {
        assert_eq!(parse_name(b"X-User-Id").unwrap().as_str(), "x-user-id");
        assert!(matches!(parse_name(b""), Err(Rejection::Invalid(_))));
        assert!(matches!(parse_name(b"x user"), Err(Rejection::Invalid(_))));
        assert!(matches!(parse_name(b"x:y"), Err(Rejection::Invalid(_))));
        assert!(matches!(parse_name(b"a\r\n"), Err(Rejection::Invalid(_))));
        assert!(matches!(
            parse_name(&[b'a'; MAX_HEADER_NAME_BYTES + 1]),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn values_refuse_crlf_nul_and_oversize() {
        let n = HeaderName::from_static("x-a");
        assert!(parse_value(&n, b"a b\tc").is_ok());
        assert!(parse_value(&n, b"").is_ok());
        for bad in [&b"a\r\nb"[..], b"a\nb", b"a\rb", b"a\0b", b"a\x01b"] {
            assert_eq!(parse_value(&n, bad).map_err(|r| r.code()), Err(2));
        }
        assert!(parse_value(&n, &[b'x'; MAX_HEADER_VALUE_BYTES]).is_ok());
        assert_eq!(
            parse_value(&n, &[b'x'; MAX_HEADER_VALUE_BYTES + 1]).map_err(|r| r.code()),
            Err(2)
        );
    }

    #[test]
    fn allow_list_and_forbidden_names_are_refused_with_code_one() {
        let allow = [
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("authorization"),
        ];
        assert!(check_allowed(&HeaderName::from_static("x-user-id"), &allow).is_ok());
        let refused = |h: &'static str| {
            check_allowed(&HeaderName::from_static(h), &allow).map_err(|r| r.code())
        };
        assert_eq!(refused("x-other"), Err(1));
        // Forbidden even when (wrongly) on the allow-list.
        assert_eq!(refused("authorization"), Err(1));
    }
}
