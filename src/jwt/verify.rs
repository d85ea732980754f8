//! Verification of access tokens against a [`KeySet`] and a [`VerifyPolicy`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::TokenCache;
use super::keys::{algorithm_name, parse_algorithm, Key, KeyError, KeySet};
use super::token::VerifiedToken;
use crate::claims::Claims;

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
    /// The token itself was revoked (by `jti`, `sub` or the IdP's `sid`).
    TokenRevoked,
    /// `exp` is further after `iat` than the issuer's `max_token_lifetime`.
    LifetimeTooLong,
    /// `iss` names no configured issuer (and no `jwt.keys` accept any issuer).
    UnknownIssuer,
    /// The issuer's keys could not be fetched, or are older than `max_stale`.
    KeysUnavailable,
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
            Rejection::Revoked | Rejection::TokenRevoked => "revoked",
            Rejection::LifetimeTooLong => "lifetime_too_long",
            Rejection::UnknownIssuer => "unknown_issuer",
            Rejection::KeysUnavailable => "keys_unavailable",
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
            Rejection::TokenRevoked => "token has been revoked".into(),
            Rejection::LifetimeTooLong => {
                "token lifetime (exp - iat) exceeds what its issuer may grant".into()
            }
            Rejection::UnknownIssuer => "token issuer is not accepted".into(),
            Rejection::KeysUnavailable => {
                "the issuer's signing keys are unavailable; try again later".into()
            }
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// Keys that change while a generation lives: an issuer's keys fetched from
/// its OpenID Provider (`crate::idp`). The verifier only reads them; the
/// source fetches them off the request path.
pub trait KeySource: Send + Sync {
    /// The keys to check a token with now.
    fn current(&self) -> Result<Arc<KeySet>, Rejection>;
    /// A token named a `kid` the keys lack: fetch once if allowed (single
    /// flight, cooldown); true when the keys were fetched again.
    fn refetch_for_unknown_kid(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
    /// Starts keeping the keys fresh in the background (once; on the
    /// current tokio runtime).
    fn start(self: Arc<Self>);
    /// Fetches the keys now, whatever the cooldown (`check --online`): the
    /// kids of the usable keys, or why they could not be fetched.
    fn fetch_now(&self) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>>;
    /// Whether `/readyz` may count the issuer ready.
    fn is_ready(&self) -> bool;
    /// Keys in use (`None` before the first fetch).
    fn key_count(&self) -> Option<usize>;
    /// Age of the keys in use (`None` before the first fetch).
    fn age(&self) -> Option<Duration>;
}

/// Where one issuer's keys come from.
pub enum IssuerKeys {
    /// Configured keys (`keys`).
    Static(KeySet),
    /// Fetched keys (`discovery`, `jwks_uri`).
    Fetched(Arc<dyn KeySource>),
}

/// Claim checks of one issuer.
#[derive(Debug, Clone)]
pub struct IssuerPolicy {
    /// Accepted `iss` values; `None` accepts any.
    pub issuer: Option<Vec<String>>,
    /// Accepted `aud` values; `None` skips the check.
    pub audience: Option<Vec<String>>,
    /// Clock skew tolerated on `exp`, `nbf`.
    pub leeway: Duration,
    /// Claims every token must carry (beyond `exp`, and `iss`/`aud` when checked).
    pub required_claims: Vec<String>,
    /// Longest `exp - iat` accepted (`max_token_lifetime`); tokens must then
    /// carry `iat`. Bounds how long a revocation must be kept. `None`: no
    /// bound (the gateway's own keys, whose tokens it mints itself).
    pub max_lifetime: Option<Duration>,
    /// Client ids a back-channel logout token's `aud` may name
    /// (`logout_client_ids`); empty: its logout tokens are refused.
    pub logout_audiences: Vec<String>,
}

/// What the admin API needs to know of an issuer to store a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerInfo {
    /// `jwt.issuers[].name`.
    pub name: Arc<str>,
    /// Its `iss`.
    pub iss: String,
    /// How long after a revocation a token issued before it could still be
    /// valid: `max_token_lifetime` plus leeway.
    pub revocation_window: Duration,
}

/// The claims of a back-channel logout token that passed every check of
/// OpenID Connect Back-Channel Logout 1.0, section 2.6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// The issuer that signed it.
    pub issuer: IssuerInfo,
    /// Its `jti` (replay protection).
    pub jti: String,
    /// The subject logged out, if named.
    pub sub: Option<String>,
    /// The IdP session ended, if named.
    pub sid: Option<String>,
    /// `exp` (Unix seconds): until when a replay must be recognised.
    pub exp: u64,
}

/// The event a logout token's `events` claim must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// One issuer as configured (`jwt.issuers[]`).
pub struct IssuerSpec {
    /// `name` (metric label, logs); the issuer URL when not given.
    pub name: Arc<str>,
    /// The keys.
    pub keys: IssuerKeys,
    /// Algorithms its tokens may use (every key's allow-list is within it).
    pub algorithms: Vec<Algorithm>,
    /// Its claim checks; `issuer` holds the one `iss` it answers for.
    pub policy: IssuerPolicy,
}

/// One issuer, compiled: its keys, checks and a `Validation` per algorithm.
struct Issuer {
    name: Arc<str>,
    keys: IssuerKeys,
    required_claims: Vec<String>,
    validations: HashMap<Algorithm, Validation>,
    /// `iss` (fetched and listed issuers name exactly one).
    iss: Option<String>,
    leeway: Duration,
    max_lifetime: Option<Duration>,
    /// Validations for logout tokens (`aud` = a logout client id); empty
    /// when the issuer has none.
    logout_validations: HashMap<Algorithm, Validation>,
}

impl Issuer {
    fn new(spec: IssuerSpec) -> Issuer {
        let validations = spec
            .algorithms
            .iter()
            .map(|alg| (*alg, validation(*alg, &spec.policy)))
            .collect();
        let logout_validations = if spec.policy.logout_audiences.is_empty() {
            HashMap::new()
        } else {
            let logout_policy = IssuerPolicy {
                audience: Some(spec.policy.logout_audiences.clone()),
                ..spec.policy.clone()
            };
            spec.algorithms
                .iter()
                .map(|alg| {
                    let mut v = validation(*alg, &logout_policy);
                    v.set_required_spec_claims(&["exp", "iss", "aud"]);
                    (*alg, v)
                })
                .collect()
        };
        Issuer {
            name: spec.name,
            keys: spec.keys,
            required_claims: spec.policy.required_claims,
            validations,
            iss: spec.policy.issuer.as_ref().and_then(|i| i.first().cloned()),
            leeway: spec.policy.leeway,
            max_lifetime: spec.policy.max_lifetime,
            logout_validations,
        }
    }

    fn info(&self) -> Option<IssuerInfo> {
        Some(IssuerInfo {
            name: self.name.clone(),
            iss: self.iss.clone()?,
            revocation_window: self.max_lifetime? + self.leeway + Duration::from_secs(1),
        })
    }
}

fn validation(alg: Algorithm, policy: &IssuerPolicy) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
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
}

#[derive(Deserialize)]
struct RawPayload {
    iss: Option<Value>,
}

/// Verifies tokens for one config generation: each token against the keys
/// of the issuer its `iss` names (no key of one issuer ever verifies
/// another's token), or — for `jwt.keys` — of the gateway's own keys.
pub struct Verifier {
    issuers: Vec<Issuer>,
    /// `iss` → issuer.
    by_iss: HashMap<String, usize>,
    /// `jwt.keys`: answers for `jwt.issuer` (or any `iss` without it).
    own: Option<usize>,
    /// The policy of `jwt.keys`, as configured (minting reads it).
    own_policy: Option<VerifyPolicy>,
    max_token_size: usize,
    cache: TokenCache,
}

/// An empty key set for a verifier without `jwt.keys`.
static NO_KEYS: std::sync::OnceLock<KeySet> = std::sync::OnceLock::new();

impl Verifier {
    /// The gateway's own keys only (`jwt.keys`); `cache_entries`
    /// (`jwt.cache_entries`) sizes the token cache, 0 disables it.
    pub fn new(keys: KeySet, policy: VerifyPolicy, cache_entries: usize) -> Verifier {
        let max_token_size = policy.max_token_size;
        Verifier::with_issuers(
            Some((keys, policy)),
            Vec::new(),
            max_token_size,
            cache_entries,
        )
    }

    /// The gateway's own keys (if any) and the `jwt.issuers`; tokens longer
    /// than `max_token_size` are refused before anything else.
    pub fn with_issuers(
        own_keys: Option<(KeySet, VerifyPolicy)>,
        specs: Vec<IssuerSpec>,
        max_token_size: usize,
        cache_entries: usize,
    ) -> Verifier {
        let mut issuers = Vec::new();
        let mut by_iss = HashMap::new();
        for spec in specs {
            if let Some(iss) = spec.policy.issuer.as_ref().and_then(|i| i.first()) {
                by_iss.insert(iss.clone(), issuers.len());
            }
            issuers.push(Issuer::new(spec));
        }
        let mut own = None;
        let mut own_policy = None;
        if let Some((keys, policy)) = own_keys {
            let issuer_policy = IssuerPolicy {
                issuer: policy.issuer.clone(),
                audience: policy.audience.clone(),
                leeway: policy.leeway,
                required_claims: Vec::new(),
                max_lifetime: None,
                logout_audiences: Vec::new(),
            };
            let mut algorithms: Vec<Algorithm> = Vec::new();
            for key in keys.iter() {
                for alg in &key.algorithms {
                    if !algorithms.contains(alg) {
                        algorithms.push(*alg);
                    }
                }
            }
            let idx = issuers.len();
            for iss in policy.issuer.iter().flatten() {
                by_iss.entry(iss.clone()).or_insert(idx);
            }
            issuers.push(Issuer::new(IssuerSpec {
                name: "jwt.keys".into(),
                keys: IssuerKeys::Static(keys),
                algorithms,
                policy: issuer_policy,
            }));
            own = Some(idx);
            own_policy = Some(policy);
        }
        Verifier {
            issuers,
            by_iss,
            own,
            own_policy,
            max_token_size,
            cache: TokenCache::new(cache_entries),
        }
    }

    /// The gateway's own keys (`jwt.keys`): minting and the published JWKS.
    pub fn keys(&self) -> &KeySet {
        match self.own.and_then(|i| self.issuers.get(i)).map(|i| &i.keys) {
            Some(IssuerKeys::Static(keys)) => keys,
            _ => NO_KEYS.get_or_init(KeySet::default),
        }
    }

    /// The claim checks of `jwt.keys` (minting uses its issuer/audience).
    pub fn policy(&self) -> VerifyPolicy {
        match &self.own_policy {
            Some(policy) => policy.clone(),
            None => VerifyPolicy {
                issuer: None,
                audience: None,
                leeway: Duration::ZERO,
                max_token_size: self.max_token_size,
            },
        }
    }

    /// Every issuer's name: `jwt.issuers[].name`, and `jwt.keys` for the
    /// gateway's own keys (what a route's `issuers` may list).
    pub fn issuer_names(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|i| &*i.name)
    }

    /// The fetched key sources, by issuer name (readiness, metrics).
    pub fn key_sources(&self) -> impl Iterator<Item = (&str, &Arc<dyn KeySource>)> {
        self.issuers.iter().filter_map(|i| match &i.keys {
            IssuerKeys::Fetched(source) => Some((&*i.name, source)),
            IssuerKeys::Static(_) => None,
        })
    }

    /// Verifies `token`; the boolean says whether it came from the cache.
    pub fn verify(&self, token: &str) -> Result<(Arc<VerifiedToken>, bool), Rejection> {
        if token.len() > self.max_token_size {
            return Err(Rejection::TooLarge {
                limit: self.max_token_size,
            });
        }
        let now = unix_now();
        if let Some(hit) = self.cache.get(token) {
            if now <= hit.exp.saturating_add(hit.leeway_secs) {
                // Fail closed with the issuer: once its keys are unusable
                // (past `max_stale`), its cached verifications are too.
                self.keys_usable(&hit.issuer)?;
                return Ok((hit, true));
            }
            self.cache.remove(token);
            return Err(Rejection::Expired);
        }
        let verified = Arc::new(self.verify_uncached(token)?);
        self.cache.insert(token, verified.clone(), now);
        Ok((verified, false))
    }

    /// `Err(KeysUnavailable)` when the issuer named `name` has fetched keys
    /// that cannot be used now (none yet, or older than `max_stale`).
    fn keys_usable(&self, name: &Arc<str>) -> Result<(), Rejection> {
        let issuer = self.issuers.iter().find(|i| Arc::ptr_eq(&i.name, name));
        match issuer.map(|i| &i.keys) {
            Some(IssuerKeys::Fetched(source)) => source.current().map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Before [`verify`](Self::verify): when the token's issuer has fetched
    /// keys that lack its `kid` (the issuer rotated), or none usable yet,
    /// one refetch — single flight, behind the issuer's cooldown. Verifies
    /// nothing and caches nothing; a cached token costs one lookup.
    pub async fn refetch_keys_for(&self, token: &str) {
        if self.cache.get(token).is_some() {
            return;
        }
        let Ok(issuer) = self.issuer_of(token) else {
            return;
        };
        let IssuerKeys::Fetched(source) = &issuer.keys else {
            return;
        };
        let kid = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<RawHeader>(&h).ok())
            .and_then(|h| h.kid);
        let needed = match source.current() {
            Err(_) => true,
            Ok(keys) => kid.is_some_and(|kid| keys.by_kid(&kid).is_none()),
        };
        if needed {
            source.refetch_for_unknown_kid().await;
        }
    }

    /// A `jwt.issuers` issuer by its `name` or its `iss`, for revocations
    /// (the gateway's own keys revoke through sessions instead).
    pub fn revocable_issuer(&self, name_or_iss: &str) -> Option<IssuerInfo> {
        self.issuers
            .iter()
            .filter_map(Issuer::info)
            .find(|i| &*i.name == name_or_iss || i.iss == name_or_iss)
    }

    /// Every issuer tokens can be revoked for (see
    /// [`revocable_issuer`](Self::revocable_issuer)).
    pub fn revocable_issuers(&self) -> impl Iterator<Item = IssuerInfo> + '_ {
        self.issuers.iter().filter_map(Issuer::info)
    }

    /// Checks an OpenID Connect back-channel logout token (section 2.6):
    /// signed by a key of the issuer its `iss` names with one of the
    /// issuer's algorithms, `aud` one of its `logout_client_ids`, `iat` and
    /// `exp` present and `exp` not past, `jti`, an `events` object with the
    /// back-channel logout event, `sub` and/or `sid`, no `nonce`, and a `typ`
    /// header, if any, of `logout+jwt` or `JWT`. Replay is the caller's
    /// check (it needs the store). The error is the text for
    /// `error_description`; it never quotes the token.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutToken, String> {
        if token.len() > self.max_token_size {
            return Err(format!(
                "logout token is larger than {} bytes",
                self.max_token_size
            ));
        }
        let described = |r: Rejection| format!("logout token refused: {}", r.description());
        let issuer = self.issuer_of(token).map_err(described)?;
        if issuer.logout_validations.is_empty() {
            return Err(
                "back-channel logout is not enabled for this issuer (no `logout_client_ids`)"
                    .into(),
            );
        }
        let info = issuer.info().ok_or_else(|| {
            "back-channel logout is not enabled for this issuer (no `logout_client_ids`)"
                .to_string()
        })?;
        if let IssuerKeys::Fetched(source) = &issuer.keys {
            // A logout signed with a key the gateway has not fetched yet.
            let kid = header_of(token).ok().and_then(|h| h.kid);
            let needed = match source.current() {
                Err(_) => true,
                Ok(keys) => kid.is_some_and(|kid| keys.by_kid(&kid).is_none()),
            };
            if needed {
                source.refetch_for_unknown_kid().await;
            }
        }
        let header = header_of(token).map_err(described)?;
        match header.typ.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case("logout+jwt") || t.eq_ignore_ascii_case("JWT") => {}
            Some(_) => return Err("logout token has the wrong `typ` (expected logout+jwt)".into()),
        }
        let alg = algorithm_of(&header).map_err(described)?;
        let claims = self
            .decode_for(token, issuer, &header, alg, &issuer.logout_validations)
            .map_err(described)?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let events_ok = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !events_ok {
            return Err(format!(
                "logout token lacks the `events` claim with `{BACKCHANNEL_LOGOUT_EVENT}`"
            ));
        }
        if claims.contains_key("nonce") {
            return Err("logout token must not carry a `nonce`".into());
        }
        let jti = text("jti")
            .filter(|j| !j.is_empty())
            .ok_or("logout token lacks `jti`")?;
        let (sub, sid) = (text("sub"), text("sid"));
        if sub.is_none() && sid.is_none() {
            return Err("logout token names neither `sub` nor `sid`".into());
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("logout token lacks `exp`")?;
        // jsonwebtoken cannot require `iat`: checked here.
        if !claims.get("iat").is_some_and(Value::is_u64) {
            return Err("logout token lacks `iat`".into());
        }
        Ok(LogoutToken {
            issuer: info,
            jti,
            sub,
            sid,
            exp,
        })
    }

    /// The issuer a token's `iss` names, or the gateway's own keys.
    fn issuer_of(&self, token: &str) -> Result<&Issuer, Rejection> {
        let payload_b64 = token
            .split('.')
            .nth(1)
            .ok_or(Rejection::Malformed("expected three dot-separated parts"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| Rejection::Malformed("payload is not base64url"))?;
        let raw: RawPayload = serde_json::from_slice(&payload)
            .map_err(|_| Rejection::Malformed("payload is not a JSON object"))?;
        let idx = match raw.iss.as_ref().and_then(Value::as_str) {
            Some(iss) => self.by_iss.get(iss).copied().or(self.own),
            None => self.own,
        };
        idx.and_then(|i| self.issuers.get(i))
            .ok_or(Rejection::UnknownIssuer)
    }

    fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, Rejection> {
        let header = header_of(token)?;
        let alg = algorithm_of(&header)?;
        let issuer = self.issuer_of(token)?;
        let claims = self.decode_for(token, issuer, &header, alg, &issuer.validations)?;
        verified(claims, issuer, alg)
    }

    /// The signature check with `issuer`'s keys (the `kid`'s, or without
    /// one each key allowing `alg`) and the claim checks of `validations`.
    fn decode_for(
        &self,
        token: &str,
        issuer: &Issuer,
        header: &RawHeader,
        alg: Algorithm,
        validations: &HashMap<Algorithm, Validation>,
    ) -> Result<Map<String, Value>, Rejection> {
        let fetched;
        let keys: &KeySet = match &issuer.keys {
            IssuerKeys::Static(keys) => keys,
            IssuerKeys::Fetched(source) => {
                fetched = source.current()?;
                &fetched
            }
        };
        let validation = validations.get(&alg).ok_or_else(|| {
            Rejection::BadAlgorithm(format!(
                "algorithm {} is not allowed for this issuer",
                algorithm_name(alg)
            ))
        })?;
        let decode = |key: &Key| {
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation)
                .map(|data| data.claims)
                .map_err(|e| map_error(e.kind()))
        };
        match &header.kid {
            Some(kid) => {
                let (_, key) = keys.by_kid(kid).ok_or(Rejection::UnknownKid)?;
                if !key.algorithms.contains(&alg) {
                    return Err(Rejection::BadAlgorithm(format!(
                        "algorithm {} is not allowed for this key",
                        algorithm_name(alg)
                    )));
                }
                decode(key)
            }
            None => {
                // No kid: try each key that allows this algorithm. A failure other
                // than the signature means that key's signature matched, so its
                // verdict is final.
                let mut outcome = Rejection::BadAlgorithm(format!(
                    "no configured key accepts algorithm {}",
                    algorithm_name(alg)
                ));
                for (_, key) in keys.accepting(alg) {
                    match decode(key) {
                        Err(Rejection::BadSignature) => outcome = Rejection::BadSignature,
                        result => return result,
                    }
                }
                Err(outcome)
            }
        }
    }
}

/// The token's JOSE header.
fn header_of(token: &str) -> Result<RawHeader, Rejection> {
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
    Ok(header)
}

/// The header's `alg`, refusing `none` and unsupported ones.
fn algorithm_of(header: &RawHeader) -> Result<Algorithm, Rejection> {
    let alg_name = header
        .alg
        .as_deref()
        .ok_or(Rejection::Malformed("header has no `alg`"))?;
    parse_algorithm(alg_name).map_err(|e| match e {
        KeyError::NoneAlgorithm => {
            Rejection::BadAlgorithm("algorithm `none` is not accepted".into())
        }
        _ => Rejection::BadAlgorithm("token algorithm is not supported".into()),
    })
}

/// The checks past the signature (`exp` as a number, the issuer's required
/// claims, its lifetime bound), then the verified token.
fn verified(
    claims: Map<String, Value>,
    issuer: &Issuer,
    alg: Algorithm,
) -> Result<VerifiedToken, Rejection> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(Rejection::MissingClaim("exp".into()))?;
    if let Some(missing) = issuer
        .required_claims
        .iter()
        .find(|c| !claims.contains_key(c.as_str()))
    {
        return Err(Rejection::MissingClaim(missing.clone()));
    }
    if let Some(max) = issuer.max_lifetime {
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(Rejection::MissingClaim("iat".into()))?;
        if exp.saturating_sub(iat) > max.as_secs() {
            return Err(Rejection::LifetimeTooLong);
        }
    }
    let leeway_secs = issuer
        .validations
        .get(&alg)
        .map_or(issuer.leeway.as_secs(), |v| v.leeway);
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(VerifiedToken {
        sub: text("sub"),
        session_id: text("sid").and_then(|s| uuid::Uuid::parse_str(&s).ok()),
        sid: text("sid"),
        exp,
        leeway_secs,
        issuer: issuer.name.clone(),
        claims: Arc::new(Claims::new(claims)),
    })
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
