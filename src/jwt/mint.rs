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
    /// The `sub` claim: whom the token is for.
    pub sub: String,
    /// The `sid` claim: the session the token belongs to; `None` for tokens
    /// outside a session (`portcullis token mint`).
    pub sid: Option<String>,
    /// Lifetime: `exp` is `iat` plus this, in whole seconds.
    pub ttl: Duration,
    /// The `iss` claim; `None` leaves it out.
    pub issuer: Option<String>,
    /// The `aud` claim; `None` leaves it out.
    pub audience: Option<String>,
    /// Extra claims (e.g. `role`); registered claims here are overwritten.
    pub claims: Map<String, Value>,
}

/// Why no token could be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// No key has `sign: true` with material that can sign.
    #[error("no key has `sign: true` (with a private key for asymmetric algorithms): mark one key as the signing key")]
    NoSigningKey,
    /// The signing library refused; holds its message.
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
