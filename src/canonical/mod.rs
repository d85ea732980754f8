//! One reading of every request. A request that a backend could read in a
//! different way than the gateway does is either normalised to one form —
//! which is then both matched and forwarded — or refused with 400 and the
//! connection closed. Never matched in one form and forwarded in another.
//!
//! - [`path`]: the canonical path (what routes match and upstreams receive);
//! - [`headers`]: framing and identity headers that could be read twice
//!   (a second `Authorization` or `Host`, `Transfer-Encoding` beside
//!   `Content-Length`, bare-LF line ends, `_` spellings of header names).

pub mod headers;
pub mod path;

use serde::Deserialize;

pub use headers::{fold_header_name, HeaderError};
pub use path::{canonicalize, CanonicalPath, PathError, PathRules};

/// What `//` in a path does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptySegments {
    /// `/a//b` is read, matched and forwarded as `/a/b`.
    #[default]
    Merge,
    /// `/a//b` is refused with 400.
    Reject,
}

/// What `;name=value` path parameters do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathParams {
    /// Refused with 400 (Tomcat and Spring drop them before routing).
    #[default]
    Reject,
    /// Forwarded as sent; routes are matched without them.
    Keep,
}

/// What a header name containing `_` does (CGI, WSGI, Rack and PHP read
/// `X_User_Id` as `X-User-Id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeaders {
    /// Removed before anything reads the request.
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Forwarded, unless its `-` spelling is an identity header (then dropped).
    Allow,
}

/// How requests are read (the `requests` section), compiled once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadPolicy {
    /// Default for routes without their own `case_sensitive`.
    pub case_sensitive: bool,
    /// How paths are canonicalised (`empty_segments`, `path_params`).
    pub path: PathRules,
    /// `requests.underscore_headers` (default `drop`).
    pub underscore_headers: UnderscoreHeaders,
}
