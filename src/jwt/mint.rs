//! Minting access tokens with the generation's signing key.

use std::time::Duration;

use jsonwebtoken::{encode, Header};
use serde_json::{Map, Value};

use super::keys::KeySet;
use super::verify::unix_now;

/// Claims every minted access token carries; they cannot be captured or
/// passed in as extra claims under these names.
pub const RESERVED_CLAIMS: [&str; 7] = ["sub", "sid", "iat", "exp", "iss", "aud", "jti"];

/// What goes into a minted token besides the registered claims.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    pub sub: String,
    pub sid: Option<String>,
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Extra claims (e.g. `role`); registered claims here are overwritten.
    pub claims: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no key has `sign: true` (with a private key for asymmetric algorithms): mark one key as the signing key")]
    NoSigningKey,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Signs a token for `req` with the signing key of `keys`.
pub fn mint(keys: &KeySet, req: &MintRequest) -> Result<String, MintError> {
    let key = keys.signing_key().ok_or(MintError::NoSigningKey)?;
    let encoding = key.encoding.as_ref().ok_or(MintError::NoSigningKey)?;
    let mut header = Header::new(key.signing_algorithm());
    header.kid = Some(key.kid.clone());
    let now = unix_now();
    let mut claims = req.claims.clone();
    claims.insert("sub".into(), Value::String(req.sub.clone()));
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + req.ttl.as_secs()).into());
    claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    if let Some(sid) = &req.sid {
        claims.insert("sid".into(), sid.clone().into());
    }
    if let Some(iss) = &req.issuer {
        claims.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = &req.audience {
        claims.insert("aud".into(), aud.clone().into());
    }
    encode(&header, &claims, encoding).map_err(|e| MintError::Signing(e.to_string()))
}
