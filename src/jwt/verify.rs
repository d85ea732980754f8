//! Verification of access tokens against a [`KeySet`] and a [`VerifyPolicy`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::TokenCache;
use super::keys::{algorithm_name, parse_algorithm, KeyError, KeySet};
use super::token::VerifiedToken;

/// Claim checks shared by every key of a generation.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// Accepted `iss` values; `None` accepts any.
    pub issuer: Option<Vec<String>>,
    /// Accepted `aud` values; `None` skips the check.
    pub audience: Option<Vec<String>>,
    /// Clock skew tolerated on `exp`, `nbf`.
    pub leeway: Duration,
    /// Longest token accepted, in bytes.
    pub max_token_size: usize,
}

/// Why a token was refused. `reason()` is the bounded metric label,
/// `description()` the text sent in `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The request carries no access token (header or cookie).
    Missing,
    /// The token is longer than `jwt.max_token_size`.
    TooLarge {
        /// `jwt.max_token_size`, in bytes.
        limit: usize,
    },
    /// The token cannot be decoded; the text says what is wrong with it.
    Malformed(&'static str),
    /// `alg` is `none`, unsupported, or not allowed for the key; the text
    /// is the description.
    BadAlgorithm(String),
    /// The `kid` names no configured key.
    UnknownKid,
    /// The signature does not match the key (without `kid`: any key).
    BadSignature,
    /// `exp` is past, beyond the leeway.
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    NotYetValid,
    /// `iss` is not one of `jwt.issuer`.
    BadIssuer,
    /// `aud` is not one of `jwt.audience`.
    BadAudience,
    /// A required claim (`exp`, and `iss`/`aud` when checked) is absent;
    /// holds its name.
    MissingClaim(String),
    /// The token's session (`sid`) has been revoked.
    Revoked,
}

impl Rejection {
    /// Metric label; a fixed set of values.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Malformed(_) => "malformed",
            Rejection::BadAlgorithm(_) => "bad_algorithm",
            Rejection::UnknownKid => "unknown_kid",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::BadIssuer => "bad_issuer",
            Rejection::BadAudience => "bad_audience",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::Revoked => "revoked",
        }
    }

    /// Human text for the client; never contains token material.
    pub fn description(&self) -> String {
        match self {
            Rejection::Missing => "no access token was sent".into(),
            Rejection::TooLarge { limit } => format!("token is larger than {limit} bytes"),
            Rejection::Malformed(why) => format!("token is malformed: {why}"),
            Rejection::BadAlgorithm(why) => why.clone(),
            Rejection::UnknownKid => "token is signed with an unknown key (kid)".into(),
            Rejection::BadSignature => "token signature is invalid".into(),
            Rejection::Expired => "token has expired".into(),
            Rejection::NotYetValid => "token is not valid yet (nbf)".into(),
            Rejection::BadIssuer => "token issuer is not accepted".into(),
            Rejection::BadAudience => "token audience is not accepted".into(),
            Rejection::MissingClaim(c) => format!("token lacks the required `{c}` claim"),
            Rejection::Revoked => "session has been revoked".into(),
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

/// Verifies tokens for one config generation.
pub struct Verifier {
    keys: KeySet,
    policy: VerifyPolicy,
    /// One `Validation` per key index, built once.
    validations: Vec<Validation>,
    cache: TokenCache,
}

impl Verifier {
    /// Builds the per-key validations once; `cache_entries`
    /// (`jwt.cache_entries`) sizes the token cache, 0 disables it.
    pub fn new(keys: KeySet, policy: VerifyPolicy, cache_entries: usize) -> Verifier {
        let validations = keys
            .iter()
            .map(|key| {
                let mut v = Validation::new(key.algorithms[0]);
                v.algorithms = key.algorithms.clone();
                v.leeway = policy.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                match &policy.issuer {
                    Some(iss) => {
                        v.set_issuer(iss);
                        required.push("iss");
                    }
                    None => v.iss = None,
                }
                match &policy.audience {
                    Some(aud) => {
                        v.set_audience(aud);
                        required.push("aud");
                    }
                    None => v.validate_aud = false,
                }
                v.set_required_spec_claims(&required);
                v
            })
            .collect();
        Verifier {
            keys,
            policy,
            validations,
            cache: TokenCache::new(cache_entries),
        }
    }

    /// The keys tokens are checked against.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The claim checks applied to every token.
    pub fn policy(&self) -> &VerifyPolicy {
        &self.policy
    }

    /// Verifies `token`; the boolean says whether it came from the cache.
    pub fn verify(&self, token: &str) -> Result<(Arc<VerifiedToken>, bool), Rejection> {
        if token.len() > self.policy.max_token_size {
            return Err(Rejection::TooLarge {
                limit: self.policy.max_token_size,
            });
        }
        let now = unix_now();
        if let Some(hit) = self.cache.get(token) {
            if now <= hit.exp.saturating_add(self.policy.leeway.as_secs()) {
                return Ok((hit, true));
            }
            self.cache.remove(token);
            return Err(Rejection::Expired);
        }
        let verified = Arc::new(self.verify_uncached(token)?);
        self.cache.insert(token, verified.clone(), now);
        Ok((verified, false))
    }

    fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, Rejection> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed("expected three dot-separated parts"));
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| Rejection::Malformed("header is not base64url"))?;
        let header: RawHeader = serde_json::from_slice(&header_json)
            .map_err(|_| Rejection::Malformed("header is not a JSON object"))?;
        if header.crit.is_some() {
            return Err(Rejection::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let alg_name = header
            .alg
            .ok_or(Rejection::Malformed("header has no `alg`"))?;
        let alg = parse_algorithm(&alg_name).map_err(|e| match e {
            KeyError::NoneAlgorithm => {
                Rejection::BadAlgorithm("algorithm `none` is not accepted".into())
            }
            _ => Rejection::BadAlgorithm("token algorithm is not supported".into()),
        })?;

        match header.kid {
            Some(kid) => {
                let (idx, key) = self.keys.by_kid(&kid).ok_or(Rejection::UnknownKid)?;
                if !key.algorithms.contains(&alg) {
                    return Err(Rejection::BadAlgorithm(format!(
                        "algorithm {} is not allowed for this key",
                        algorithm_name(alg)
                    )));
                }
                self.decode_with(token, idx)
            }
            None => {
                // No kid: try each key that allows this algorithm. A failure other
                // than the signature means that key's signature matched, so its
                // verdict is final.
                let mut outcome = Rejection::BadAlgorithm(format!(
                    "no configured key accepts algorithm {}",
                    algorithm_name(alg)
                ));
                for (idx, _) in self.keys.accepting(alg) {
                    match self.decode_with(token, idx) {
                        Err(Rejection::BadSignature) => outcome = Rejection::BadSignature,
                        result => return result,
                    }
                }
                Err(outcome)
            }
        }
    }

    fn decode_with(&self, token: &str, idx: usize) -> Result<VerifiedToken, Rejection> {
        let key = self.keys.get(idx).ok_or(Rejection::UnknownKid)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &key.decoding,
            &self.validations[idx],
        )
        .map_err(|e| map_error(e.kind()))?;
        let claims = data.claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(Rejection::MissingClaim("exp".into()))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let claims_json = serde_json::to_vec(&claims).unwrap_or_else(|_| b"{}".to_vec());
        Ok(VerifiedToken {
            claims_json,
            sub: text("sub"),
            session_id: text("sid").and_then(|s| uuid::Uuid::parse_str(&s).ok()),
            sid: text("sid"),
            exp,
            claims,
        })
    }
}

fn map_error(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature => Rejection::BadSignature,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidIssuer => Rejection::BadIssuer,
        ErrorKind::InvalidAudience => Rejection::BadAudience,
        ErrorKind::MissingRequiredClaim(c) => Rejection::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => {
            Rejection::BadAlgorithm("token algorithm does not match the key".into())
        }
        ErrorKind::InvalidClaimFormat(_) => {
            Rejection::Malformed("a registered claim has the wrong type")
        }
        ErrorKind::Base64(_) => Rejection::Malformed("a part is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            Rejection::Malformed("payload is not a JSON object")
        }
        _ => Rejection::Malformed("token could not be decoded"),
    }
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
