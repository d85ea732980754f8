//! The result of a successful verification, shared by the verifier and
//! its cache (in its own file so neither depends on the other for it).

use serde_json::{Map, Value};

/// A token that passed every check. Shared through the cache.
#[derive(Debug)]
pub struct VerifiedToken {
    /// Every claim of the payload, as verified.
    pub claims: Map<String, Value>,
    /// The claims as JSON, serialized once, handed to plugins.
    pub claims_json: Vec<u8>,
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
