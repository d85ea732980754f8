//! The result of a successful verification, shared by the verifier and
//! its cache (in its own file so neither depends on the other for it).

use std::sync::Arc;

use crate::claims::Claims;

/// A token that passed every check. Shared through the cache.
#[derive(Debug)]
pub struct VerifiedToken {
    /// Every claim of the payload, as verified (shared with plugin calls;
    /// its JSON form is built only when an ABI v1 plugin needs it).
    pub claims: Arc<Claims>,
    /// `sub`, when present and a string.
    pub sub: Option<String>,
    /// `sid`, when present and a string (whether or not it is a UUID).
    pub sid: Option<String>,
    /// `sid` parsed as a session id (checked against the revoked set).
    pub session_id: Option<uuid::Uuid>,
    /// `exp` as Unix seconds.
    pub exp: u64,
    /// The clock skew its issuer tolerates, in seconds (the cache honours it).
    pub leeway_secs: u64,
    /// The issuer that verified it (`jwt.issuers[].name`, or `jwt.keys`).
    pub issuer: std::sync::Arc<str>,
}
