//! Header hygiene: client-supplied identity headers are removed before
//! anything else looks at the request, and the request id is kept or made.

use http::header::HeaderName;
use pingora::http::RequestHeader;

use crate::canonical::{fold_header_name, HeaderError, UnderscoreHeaders};

/// Identity headers stripped from every client request unless the config
/// replaces the list. Covers what this gateway, its plugins and common
/// auth proxies set, so a client can never pose as a verified user.
pub(crate) const DEFAULT_IDENTITY_HEADERS: &[&str] = &[
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
pub(crate) const DEFAULT_IDENTITY_PREFIXES: &[&str] = &["x-auth-", "x-portcullis-"];

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

/// Headers the gateway sets or that frame the message: a `_` spelling of
/// one of them never reaches the upstream, whatever `underscore_headers` says.
const GATEWAY_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

impl HeaderPolicy {
    /// Removes client copies of identity headers, compared in folded form
    /// (`X_User_Id` is `x-user-id`), and header names with `_` as
    /// `underscores` says. Returns how many identity headers were removed,
    /// or the refusal when `underscores` is `reject`.
    pub fn strip_identity(
        &self,
        req: &mut RequestHeader,
        underscores: UnderscoreHeaders,
    ) -> Result<usize, HeaderError> {
        let mut doomed: Vec<HeaderName> = Vec::new();
        let mut spoofed = 0;
        for name in req.headers.keys() {
            let folded = fold_header_name(name.as_str());
            let has_underscore = matches!(folded, std::borrow::Cow::Owned(_));
            if self.is_identity_folded(&folded) {
                // Count every copy: a client may send the same header twice.
                spoofed += req.headers.get_all(name).iter().count();
                doomed.push(name.clone());
            } else if has_underscore {
                match underscores {
                    UnderscoreHeaders::Reject => return Err(HeaderError::UnderscoreHeader),
                    UnderscoreHeaders::Drop => doomed.push(name.clone()),
                    UnderscoreHeaders::Allow => {
                        if GATEWAY_HEADERS.contains(&&*folded) || folded == self.request_id.as_str()
                        {
                            doomed.push(name.clone());
                        }
                    }
                }
            }
        }
        for name in doomed {
            req.remove_header(&name);
        }
        Ok(spoofed)
    }

    /// Whether the gateway or a plugin may set this header (so it is stripped).
    pub fn is_identity(&self, name: &HeaderName) -> bool {
        self.is_identity_folded(&fold_header_name(name.as_str()))
    }

    /// `folded` is lower-case with `-` for `_`; so are the lists.
    fn is_identity_folded(&self, folded: &str) -> bool {
        self.identity.iter().any(|h| h.as_str() == folded)
            || self
                .identity_prefixes
                .iter()
                .any(|p| folded.starts_with(p.as_str()))
    }
}

/// Keeps an incoming request id when it is short and plain, else makes one.
pub(crate) fn request_id(incoming: Option<&[u8]>) -> String {
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
        _ => fresh_request_id(),
    }
}

/// A new request id in UUID v4 layout. Request ids must be unique, not
/// unpredictable (they are echoed to clients and logged), so instead of one
/// OS random-number call per request each thread mixes a counter with a key
/// drawn once from the OS: SplitMix64's finaliser is a bijection, so ids of
/// one thread never repeat, and two threads' ids collide only if both random
/// 64-bit keys line up.
fn fresh_request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64, u64)> = Cell::new((os_random_u64(), os_random_u64(), 0));
    }
    let (high_key, low_key, counter) = STATE.with(|s| {
        let (a, b, n) = s.get();
        s.set((a, b, n.wrapping_add(1)));
        (a, b, n)
    });
    let high = splitmix64(high_key ^ counter);
    let low = splitmix64(low_key.wrapping_add(counter));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_owned()
}

fn os_random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Without OS randomness the counter alone still keeps this thread's
    // ids unique; only cross-thread uniqueness would weaken.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// SplitMix64's output function (Steele, Lea, Flood 2014): a bijection on u64.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_are_distinct_uuid_v4_strings_across_threads() {
        let ids: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..5000).map(|_| request_id(None)).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "a request id repeated");
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(
                id,
                &parsed.hyphenated().to_string(),
                "lower-case hyphenated"
            );
        }
    }

    #[test]
    fn identity_headers_and_prefixes_are_stripped_case_insensitively() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-User-Id", "evil").unwrap();
        req.append_header("x-user-id", "evil2").unwrap();
        req.append_header("X-Auth-Whatever", "x").unwrap();
        req.append_header("Accept", "*/*").unwrap();
        let removed = HeaderPolicy::default()
            .strip_identity(&mut req, UnderscoreHeaders::Allow)
            .unwrap();
        assert_eq!(removed, 3);
        assert!(req.headers.get("x-user-id").is_none());
        assert!(req.headers.get("x-auth-whatever").is_none());
        assert!(req.headers.get("accept").is_some());
    }

    #[test]
    fn underscore_spellings_of_identity_headers_never_pass() {
        for underscores in [UnderscoreHeaders::Allow, UnderscoreHeaders::Drop] {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.append_header("X_User_Id", "evil").unwrap();
            req.append_header("x_auth_role", "evil").unwrap();
            req.append_header("X_Forwarded_For", "1.2.3.4").unwrap();
            req.append_header("x_custom", "fine").unwrap();
            req.append_header("accept", "*/*").unwrap();
            let removed = HeaderPolicy::default()
                .strip_identity(&mut req, underscores)
                .unwrap();
            assert_eq!(removed, 2, "{underscores:?}");
            assert!(req.headers.get("x_user_id").is_none());
            assert!(req.headers.get("x_auth_role").is_none());
            assert!(req.headers.get("x_forwarded_for").is_none());
            assert_eq!(
                req.headers.get("x_custom").is_some(),
                underscores == UnderscoreHeaders::Allow
            );
            assert!(req.headers.get("accept").is_some());
        }
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("x_custom", "no").unwrap();
        assert_eq!(
            HeaderPolicy::default().strip_identity(&mut req, UnderscoreHeaders::Reject),
            Err(HeaderError::UnderscoreHeader)
        );
    }

    #[test]
    fn request_id_is_kept_only_when_plain() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        assert_ne!(request_id(Some(b"bad id\r\n")), "bad id\r\n");
        assert_eq!(request_id(None).len(), 36);
    }
}
