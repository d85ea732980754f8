//! Header name/value checks that mirror the host's (ABI v1). Plugins use them
//! to reject a bad config at `init` with a clear message instead of failing
//! every request later; the host checks again and is authoritative.

/// Longest header value the host accepts, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 8192;

/// Headers no plugin may set, append or remove, whatever its allow-list says
/// (lower-case). Names starting with `x-forwarded-` are forbidden too.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "forwarded",
];

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2): non-empty, only
/// letters, digits and ``!#$%&'*+-.^_`|~``.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether the host refuses this header for every plugin (case-insensitive).
pub fn is_forbidden(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-forwarded-")
}

/// Checks a header name a plugin wants to write: a token and not forbidden.
pub fn check_name(name: &str) -> Result<(), String> {
    if !is_token(name) {
        return Err(format!("`{}` is not a valid header name", name));
    }
    if is_forbidden(name) {
        return Err(format!(
            "header `{}` may never be changed by a plugin",
            name
        ));
    }
    Ok(())
}

/// Checks a header value: at most [`MAX_HEADER_VALUE_LEN`] bytes, no CR, LF or NUL.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(format!(
            "header value is {} bytes, more than {}",
            value.len(),
            MAX_HEADER_VALUE_LEN
        ));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("header value contains CR, LF or NUL".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        assert!(is_token("X-User-Id"));
        assert!(is_token("x_a.b~c!"));
        assert!(!is_token(""));
        assert!(!is_token("x user"));
        assert!(!is_token("x:y"));
        assert!(!is_token("é"));
        assert!(!is_token("a\r\n"));
    }

    #[test]
    fn forbidden_headers_are_case_insensitive_and_cover_x_forwarded() {
        for h in [
            "Authorization",
            "HOST",
            "cookie",
            "Transfer-Encoding",
            "X-Forwarded-For",
            "x-forwarded-proto",
            "TE",
            "Forwarded",
        ] {
            assert!(is_forbidden(h), "{}", h);
            assert!(check_name(h).is_err());
        }
        for h in ["x-user-id", "X-Tenant", "x-forwarded", "accept"] {
            assert!(!is_forbidden(h), "{}", h);
        }
    }

    #[test]
    fn value_rules() {
        assert!(check_value("").is_ok());
        assert!(check_value("a b\tc é").is_ok());
        assert!(check_value("a\r\nb").is_err());
        assert!(check_value("a\nb").is_err());
        assert!(check_value("a\0b").is_err());
        assert!(check_value(&"x".repeat(MAX_HEADER_VALUE_LEN)).is_ok());
        assert!(check_value(&"x".repeat(MAX_HEADER_VALUE_LEN + 1)).is_err());
    }
}
