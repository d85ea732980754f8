//! Header hygiene: client-supplied identity headers are removed before
//! anything else looks at the request, and the request id is kept or made.

use http::header::HeaderName;
use pingora::http::RequestHeader;

/// Identity headers stripped from every client request unless the config
/// replaces the list. Covers what this gateway, its plugins and common
/// auth proxies set, so a client can never pose as a verified user.
pub const DEFAULT_IDENTITY_HEADERS: &[&str] = &[
    "x-user-id",
    "x-user-role",
    "x-user-roles",
    "x-user-email",
    "x-user-name",
    "x-tenant-id",
    "x-remote-user",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-session-id",
];

/// Prefixes stripped the same way.
pub const DEFAULT_IDENTITY_PREFIXES: &[&str] = &["x-auth-", "x-portcullis-"];

/// What to strip and which header carries the request id.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    pub identity: Vec<HeaderName>,
    /// Lower-case prefixes.
    pub identity_prefixes: Vec<String>,
    pub request_id: HeaderName,
}

impl Default for HeaderPolicy {
    fn default() -> Self {
        HeaderPolicy {
            identity: DEFAULT_IDENTITY_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            identity_prefixes: DEFAULT_IDENTITY_PREFIXES
                .iter()
                .map(|p| p.to_string())
                .collect(),
            request_id: HeaderName::from_static("x-request-id"),
        }
    }
}

impl HeaderPolicy {
    /// Removes client copies of identity headers; returns how many were removed.
    pub fn strip_identity(&self, req: &mut RequestHeader) -> usize {
        let mut doomed: Vec<HeaderName> = Vec::new();
        for name in req.headers.keys() {
            let lower = name.as_str(); // http stores names lower-case
            if self.identity.iter().any(|h| h == name)
                || self
                    .identity_prefixes
                    .iter()
                    .any(|p| lower.starts_with(p.as_str()))
            {
                doomed.push(name.clone());
            }
        }
        let mut removed = 0;
        for name in doomed {
            // Count every copy: a client may send the same header twice.
            removed += req.headers.get_all(&name).iter().count();
            req.remove_header(&name);
        }
        removed
    }

    /// Whether the gateway or a plugin may set this header (so it is stripped).
    pub fn is_identity(&self, name: &HeaderName) -> bool {
        self.identity.contains(name)
            || self
                .identity_prefixes
                .iter()
                .any(|p| name.as_str().starts_with(p.as_str()))
    }
}

/// Keeps an incoming request id when it is short and plain, else makes one.
pub fn request_id(incoming: Option<&[u8]>) -> String {
    match incoming {
        Some(v)
            if !v.is_empty()
                && v.len() <= 128
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b)) =>
        {
            // Checked ASCII above.
            String::from_utf8_lossy(v).into_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_and_prefixes_are_stripped_case_insensitively() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-User-Id", "evil").unwrap();
        req.append_header("x-user-id", "evil2").unwrap();
        req.append_header("X-Auth-Whatever", "x").unwrap();
        req.append_header("Accept", "*/*").unwrap();
        let removed = HeaderPolicy::default().strip_identity(&mut req);
        assert_eq!(removed, 3);
        assert!(req.headers.get("x-user-id").is_none());
        assert!(req.headers.get("x-auth-whatever").is_none());
        assert!(req.headers.get("accept").is_some());
    }

    #[test]
    fn request_id_is_kept_only_when_plain() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        assert_ne!(request_id(Some(b"bad id\r\n")), "bad id\r\n");
        assert_eq!(request_id(None).len(), 36);
    }
}
