//! Request heads that two HTTP implementations could read differently:
//! refused with 400 and the connection closed (request smuggling and
//! identity-header confusion). Underscore spellings of header names are
//! handled by [`crate::headers::HeaderPolicy`] with [`fold_header_name`].

use std::borrow::Cow;

use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// More than one `Authorization` header: which one is the credential?
    DuplicateAuthorization,
    /// More than one `Host` header: which one picks the route?
    DuplicateHost,
    /// `Content-Length` headers with different values.
    ContentLengthConflict,
    /// Both `Transfer-Encoding` and `Content-Length` in the raw head.
    TransferEncodingWithContentLength,
    /// A line of the head ends in LF without CR.
    BareLineFeed,
    /// A header name contains `_` and `requests.underscore_headers` is `reject`.
    UnderscoreHeader,
}

impl HeaderError {
    /// The `reason` label of `portcullis_request_refusals_total`.
    pub fn reason(self) -> &'static str {
        match self {
            HeaderError::DuplicateAuthorization => "duplicate_authorization",
            HeaderError::DuplicateHost => "duplicate_host",
            HeaderError::ContentLengthConflict => "content_length_conflict",
            HeaderError::TransferEncodingWithContentLength => {
                "transfer_encoding_with_content_length"
            }
            HeaderError::BareLineFeed => "malformed_request",
            HeaderError::UnderscoreHeader => "underscore_header",
        }
    }

    /// The message the client gets with its 400.
    pub fn message(self) -> &'static str {
        match self {
            HeaderError::DuplicateAuthorization => "More than one Authorization header was sent",
            HeaderError::DuplicateHost => "More than one Host header was sent",
            HeaderError::ContentLengthConflict => "Conflicting Content-Length headers were sent",
            HeaderError::TransferEncodingWithContentLength => {
                "Transfer-Encoding and Content-Length must not be sent together"
            }
            HeaderError::BareLineFeed => "Request header lines must end with CRLF",
            HeaderError::UnderscoreHeader => {
                "Header names containing `_` are not accepted: use `-`"
            }
        }
    }
}

/// Refuses heads whose framing or identity could be read two ways.
/// `raw_head` is the head as received (HTTP/1), `None` for other protocols.
pub fn check_framing(req: &RequestHeader, raw_head: Option<&[u8]>) -> Result<(), HeaderError> {
    let headers = &req.headers;
    if headers.get_all(AUTHORIZATION).iter().nth(1).is_some() {
        return Err(HeaderError::DuplicateAuthorization);
    }
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(HeaderError::DuplicateHost);
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.any(|other| other != first) {
            return Err(HeaderError::ContentLengthConflict);
        }
    }
    let Some(raw) = raw_head else {
        return Ok(());
    };
    if has_bare_line_feed(raw) {
        return Err(HeaderError::BareLineFeed);
    }
    // pingora drops Content-Length when Transfer-Encoding is present; the
    // raw head still shows whether the client sent both.
    if headers.contains_key(TRANSFER_ENCODING) && raw_has_header(raw, b"content-length") {
        return Err(HeaderError::TransferEncodingWithContentLength);
    }
    Ok(())
}

fn has_bare_line_feed(raw: &[u8]) -> bool {
    raw.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
}

/// Whether a header line named `name` (lower-case) is in the raw head.
fn raw_has_header(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
    })
}

/// A header name as CGI-style backends read it: lower-case, `_` as `-`.
/// Borrowed unless the name contains `_` (names are already lower-case).
pub fn fold_header_name(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        Cow::Owned(
            name.bytes()
                .map(|b| match b {
                    b'_' => '-',
                    b => b.to_ascii_lowercase() as char,
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn second_authorization_or_host_is_refused() {
        let req = request(&[("Authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(
            check_framing(&req, None),
            Err(HeaderError::DuplicateAuthorization)
        );
        let req = request(&[("Host", "a"), ("Host", "b")]);
        assert_eq!(check_framing(&req, None), Err(HeaderError::DuplicateHost));
        let req = request(&[("Host", "a"), ("Authorization", "Bearer a")]);
        assert_eq!(check_framing(&req, None), Ok(()));
    }

    #[test]
    fn unequal_content_lengths_are_refused_equal_ones_pass() {
        let req = request(&[("Content-Length", "5"), ("Content-Length", "6")]);
        assert_eq!(
            check_framing(&req, None),
            Err(HeaderError::ContentLengthConflict)
        );
        let req = request(&[("Content-Length", "5"), ("Content-Length", "5")]);
        assert_eq!(check_framing(&req, None), Ok(()));
    }

    #[test]
    fn transfer_encoding_beside_a_raw_content_length_is_refused() {
        let req = request(&[("Transfer-Encoding", "chunked")]);
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            check_framing(&req, Some(raw)),
            Err(HeaderError::TransferEncodingWithContentLength)
        );
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check_framing(&req, Some(raw)), Ok(()));
    }

    #[test]
    fn bare_line_feeds_are_refused() {
        let req = request(&[]);
        assert_eq!(
            check_framing(&req, Some(b"GET / HTTP/1.1\nHost: a\r\n\r\n")),
            Err(HeaderError::BareLineFeed)
        );
        assert_eq!(
            check_framing(&req, Some(b"GET / HTTP/1.1\r\nHost: a\r\n\n")),
            Err(HeaderError::BareLineFeed)
        );
        assert_eq!(
            check_framing(&req, Some(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")),
            Ok(())
        );
    }

    #[test]
    fn header_names_fold_underscores_and_case() {
        assert_eq!(fold_header_name("x_user_id"), "x-user-id");
        assert_eq!(fold_header_name("X_User-Id"), "x-user-id");
        assert!(matches!(fold_header_name("x-user-id"), Cow::Borrowed(_)));
    }
}
