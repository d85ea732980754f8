//! The `jwt` section: verification keys, issuer/audience policy, token sources.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use super::Checker;
use crate::config::defaults;
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use crate::config::raw::{RawIssuer, RawJwt, RawKey};
use crate::generation::TokenSources;
use crate::idp::{FetchPolicy, KeyLocation, KeySourceSettings, RemoteKeys};
use crate::jwt::{
    algorithm_name, IssuerKeys, IssuerPolicy, IssuerSpec, Key, KeyMaterial, KeySet, Verifier,
    VerifyPolicy,
};

/// `jwt`; `has_sessions`: the config has a `sessions` section, whose store
/// back-channel logouts need.
pub(super) fn compile_jwt(
    ck: &mut Checker,
    jwt: &RawJwt,
    has_sessions: bool,
) -> (Option<Verifier>, TokenSources) {
    let mut keys = Vec::new();
    let mut kids: HashMap<&str, u64> = HashMap::new();
    let mut signer: Option<&Spanned<String>> = None;
    for spanned in &jwt.keys {
        let k = &spanned.value;
        if let Some(line) = kids.get(k.kid.value.as_str()) {
            ck.at(
                &k.kid,
                format!(
                    "duplicate kid `{}` (first on line {line}): every key needs its own kid",
                    k.kid.value
                ),
            );
            continue;
        }
        kids.insert(&k.kid.value, k.kid.referenced.line());
        if k.sign {
            if let Some(first) = signer {
                ck.at(
                    &k.kid,
                    format!(
                        "keys `{}` and `{}` both have `sign: true`: only one key signs; keep the others for verification only",
                        first.value, k.kid.value
                    ),
                );
            }
            signer = Some(&k.kid);
        }
        if let Some(key) = compile_key(ck, k) {
            keys.push(key);
        }
    }
    if jwt.keys.is_empty() && jwt.issuers.is_empty() {
        ck.general("`jwt` has neither `keys` nor `issuers`: configure at least one, or remove the `jwt` section and use `auth: none` routes");
    }
    let mut policy = VerifyPolicy {
        issuer: None,
        audience: None,
        leeway: defaults::JWT_LEEWAY,
        max_token_size: defaults::JWT_MAX_TOKEN_SIZE,
    };
    if let Some(iss) = &jwt.issuer {
        policy.issuer = Some(iss.value.clone().into_vec());
    }
    if let Some(aud) = &jwt.audience {
        policy.audience = Some(aud.value.clone().into_vec());
    }
    if let Some(l) = jwt.leeway {
        policy.leeway = l.0;
    }
    if let Some(size) = jwt.max_token_size {
        policy.max_token_size = size.0;
    }
    if let Some(cookie) = &jwt.cookie {
        let valid = !cookie.value.is_empty()
            && cookie
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            ck.at(
                cookie,
                format!(
                    "`{}` is not a usable cookie name: use letters, digits, `-`, `_` or `.`",
                    cookie.value
                ),
            );
        }
    }
    let sources = TokenSources {
        cookie: jwt.cookie.as_ref().map(|c| c.value.clone()),
    };
    let issuers = compile_issuers(ck, jwt, &kids, has_sessions);
    let max_token_size = policy.max_token_size;
    let own = (!jwt.keys.is_empty()).then(|| (KeySet::new(keys), policy));
    let verifier = Verifier::with_issuers(
        own,
        issuers,
        max_token_size,
        jwt.cache_entries.unwrap_or(defaults::JWT_CACHE_ENTRIES),
    );
    (Some(verifier), sources)
}

/// `jwt.issuers`: each issuer with its own keys and checks.
fn compile_issuers(
    ck: &mut Checker,
    jwt: &RawJwt,
    own_kids: &HashMap<&str, u64>,
    has_sessions: bool,
) -> Vec<IssuerSpec> {
    let mut specs = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let own_issuers: Vec<String> = jwt
        .issuer
        .as_ref()
        .map(|i| i.value.clone().into_vec())
        .unwrap_or_default();
    for spanned in &jwt.issuers {
        let raw = &spanned.value;
        let iss = raw.issuer.value.clone();
        if iss.is_empty() {
            ck.at(
                &raw.issuer,
                "`issuer` is empty: write it exactly as tokens carry it in `iss`",
            );
            continue;
        }
        if let Some(line) = seen.get(&iss) {
            ck.at(
                &raw.issuer,
                format!("issuer `{iss}` is listed twice (first on line {line})"),
            );
            continue;
        }
        seen.insert(iss.clone(), raw.issuer.referenced.line());
        if own_issuers.contains(&iss) {
            ck.at(
                &raw.issuer,
                format!("issuer `{iss}` is also `jwt.issuer`: tokens of one issuer are checked against one set of keys; drop one of them"),
            );
            continue;
        }
        if let Some(ids) = raw.logout_client_ids.as_ref().filter(|_| !has_sessions) {
            ck.at(
                ids,
                format!("issuer `{iss}`: `logout_client_ids` turns on back-channel logout, which keeps its revocations in the session store, but there is no `sessions` section (so `/api/auth/backchannel-logout` is not served): add a `sessions` section with just `store` (e.g. `sessions: {{ store: \"sqlite:data/portcullis.db\" }}`), or remove `logout_client_ids`"),
            );
        }
        if let Some(spec) = compile_issuer(ck, raw, own_kids) {
            specs.push(spec);
        }
    }
    specs
}

fn compile_issuer(
    ck: &mut Checker,
    raw: &RawIssuer,
    own_kids: &HashMap<&str, u64>,
) -> Option<IssuerSpec> {
    let iss = raw.issuer.value.clone();
    let name: Arc<str> = raw
        .name
        .as_ref()
        .map(|n| n.value.as_str())
        .unwrap_or(&iss)
        .into();
    let discovery = raw.discovery.as_ref().is_some_and(|d| d.value);
    let sources = [discovery, raw.jwks_uri.is_some(), !raw.keys.is_empty()];
    if sources.iter().filter(|s| **s).count() != 1 {
        ck.at(
            &raw.issuer,
            format!("issuer `{iss}` needs exactly one of `discovery: true`, `jwks_uri` or `keys`"),
        );
        return None;
    }
    let Some(audiences) = raw.audiences.as_ref() else {
        ck.at(
            &raw.issuer,
            format!("issuer `{iss}` has no `audiences`: an identity provider's tokens serve many services; name the audience(s) meant for this gateway"),
        );
        return None;
    };
    let audiences = audiences.value.clone().into_vec();
    let fetched = raw.keys.is_empty();
    let mut algorithms = Vec::new();
    match &raw.algorithms {
        None => algorithms = vec![Algorithm::RS256, Algorithm::ES256],
        Some(list) => {
            for a in &list.value {
                match crate::jwt::parse_algorithm_name(&a.value) {
                    Ok(alg) if fetched && algorithm_name(alg).starts_with("HS") => ck.at(
                        a,
                        format!("issuer `{iss}`: {} needs a shared secret, which a JWK Set never carries; fetched keys are asymmetric", a.value),
                    ),
                    Ok(alg) => algorithms.push(alg),
                    Err(e) => ck.at(a, format!("issuer `{iss}`: {e}")),
                }
            }
            if list.value.is_empty() {
                ck.at(list, format!("issuer `{iss}` lists no algorithms"));
            }
        }
    }
    if raw.max_token_lifetime.is_some_and(|d| d.0.is_zero()) {
        ck.at(
            &raw.issuer,
            format!("issuer `{iss}`: `max_token_lifetime` must be longer than zero (the longest `exp - iat` its tokens may have, e.g. 1h)"),
        );
    }
    let policy = IssuerPolicy {
        issuer: Some(vec![iss.clone()]),
        audience: Some(audiences),
        leeway: raw.leeway.map(|l| l.0).unwrap_or(defaults::JWT_LEEWAY),
        required_claims: raw
            .required_claims
            .iter()
            .map(|c| c.value.clone())
            .collect(),
        max_lifetime: Some(
            raw.max_token_lifetime
                .map(|d| d.0)
                .unwrap_or(defaults::ISSUER_MAX_TOKEN_LIFETIME),
        ),
        logout_audiences: raw
            .logout_client_ids
            .as_ref()
            .map(|ids| ids.value.clone().into_vec())
            .unwrap_or_default(),
    };
    let keys = if fetched {
        let allow_loopback_http = match &raw.allow_http {
            None => false,
            Some(v) if v.value == "loopback" => true,
            Some(v) => {
                ck.at(v, format!("`allow_http: {}` is not known: only `loopback` (plain http to 127.0.0.1/::1/localhost) can be allowed", v.value));
                return None;
            }
        };
        let wait_at_startup = match raw.startup.as_ref().map(|s| s.value.as_str()) {
            None | Some("wait") => true,
            Some("lazy") => false,
            Some(other) => {
                if let Some(s) = &raw.startup {
                    ck.at(
                        s,
                        format!("`startup: {other}` is not known: use `wait` or `lazy`"),
                    );
                }
                return None;
            }
        };
        let location = match &raw.jwks_uri {
            Some(uri) => KeyLocation::JwksUri(uri.value.clone()),
            None => KeyLocation::Discovery,
        };
        let url = match &location {
            KeyLocation::JwksUri(uri) => uri.clone(),
            KeyLocation::Discovery => iss.clone(),
        };
        let policy = FetchPolicy {
            timeout: raw
                .fetch_timeout
                .map(|d| d.0)
                .unwrap_or(defaults::ISSUER_FETCH_TIMEOUT),
            max_body: raw
                .max_response_size
                .map(|b| b.0)
                .unwrap_or(defaults::ISSUER_MAX_RESPONSE),
            allow_loopback_http,
            ca: match &raw.ca_file {
                None => None,
                Some(file) => {
                    let what = format!("issuer `{iss}` CA file");
                    let certs = super::upstreams::tls::load_ca(ck, &what, file)?;
                    // Read once more for its digest (it was just read fine).
                    let pem = ck.read_file(file, &what)?;
                    Some(crate::idp::fetch::TrustedCa {
                        certs,
                        digest: <sha2::Sha256 as sha2::Digest>::digest(&pem).into(),
                    })
                }
            },
        };
        if let Err(why) = crate::idp::fetch::check_url(&url, &policy) {
            let at = raw.jwks_uri.as_ref().unwrap_or(&raw.issuer);
            ck.at(at, format!("issuer `{iss}`: {why}"));
            return None;
        }
        let min_refresh = raw
            .min_refresh
            .map(|d| d.0)
            .unwrap_or(defaults::ISSUER_MIN_REFRESH);
        let max_refresh = raw
            .max_refresh
            .map(|d| d.0)
            .unwrap_or(defaults::ISSUER_MAX_REFRESH)
            .max(min_refresh);
        let settings = KeySourceSettings {
            name: name.to_string(),
            issuer: iss.clone(),
            location,
            algorithms: algorithms.clone(),
            min_refresh,
            max_refresh,
            cooldown: raw
                .cooldown
                .map(|d| d.0)
                .unwrap_or(defaults::ISSUER_COOLDOWN),
            max_stale: raw
                .max_stale
                .map(|d| d.0)
                .unwrap_or(defaults::ISSUER_MAX_STALE),
            fetch: policy,
            wait_at_startup,
        };
        IssuerKeys::Fetched(RemoteKeys::shared(settings))
    } else {
        let mut keys = Vec::new();
        for k in &raw.keys {
            if let Some(line) = own_kids.get(k.value.kid.value.as_str()) {
                ck.warn_at(
                    &k.value.kid,
                    format!("kid `{}` is also a `jwt.keys` kid (line {line}); each issuer's keys are looked up on their own, but distinct kids read better in logs", k.value.kid.value),
                );
            }
            if let Some(key) = compile_key(ck, &k.value) {
                keys.push(key);
            }
        }
        if raw.algorithms.is_none() {
            // No allow-list of its own: the issuer allows what its keys do.
            algorithms.clear();
            for alg in keys.iter().flat_map(|k| k.algorithms.iter()) {
                if !algorithms.contains(alg) {
                    algorithms.push(*alg);
                }
            }
        } else if let Some(key) = keys
            .iter()
            .find(|k| k.algorithms.iter().any(|a| !algorithms.contains(a)))
        {
            ck.at(
                &raw.issuer,
                format!("issuer `{iss}`: key `{}` allows an algorithm the issuer's `algorithms` does not list", key.kid),
            );
            return None;
        }
        IssuerKeys::Static(KeySet::new(keys))
    };
    Some(IssuerSpec {
        name,
        keys,
        algorithms,
        policy,
    })
}

fn compile_key(ck: &mut Checker, k: &RawKey) -> Option<Key> {
    let mut algorithms = Vec::new();
    for a in &k.algorithms.value {
        match crate::jwt::parse_algorithm_name(&a.value) {
            Ok(alg) => algorithms.push(alg),
            Err(e) => ck.at(a, format!("key `{}`: {e}", k.kid.value)),
        }
    }
    if k.algorithms.value.is_empty() {
        ck.at(
            &k.algorithms,
            format!(
                "key `{}` lists no algorithms: name at least one, e.g. [RS256]",
                k.kid.value
            ),
        );
        return None;
    }
    let sources = [
        k.secret.is_some(),
        k.secret_file.is_some(),
        k.public_key.is_some(),
        k.public_key_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        ck.at(
            &k.kid,
            format!(
                "key `{}` needs exactly one of `secret`, `secret_file`, `public_key`, `public_key_file`",
                k.kid.value
            ),
        );
        return None;
    }
    let material = if let Some(s) = &k.secret {
        if s.value.len() < 32 {
            tracing::warn!(kid = %k.kid.value, "HMAC secret is shorter than 32 bytes; use at least 256 random bits in production");
        }
        KeyMaterial::Secret(s.value.as_bytes().to_vec())
    } else if let Some(f) = &k.secret_file {
        let mut bytes = ck.read_file(f, "secret file")?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        KeyMaterial::Secret(bytes)
    } else {
        let public = match (&k.public_key, &k.public_key_file) {
            (Some(p), _) => p.value.as_bytes().to_vec(),
            (None, Some(f)) => ck.read_file(f, "public key file")?,
            (None, None) => return None,
        };
        let private = match &k.private_key_file {
            Some(f) => Some(ck.read_file(f, "private key file")?),
            None => None,
        };
        KeyMaterial::Pem { public, private }
    };
    if algorithms.len() != k.algorithms.value.len() {
        return None;
    }
    let is_pem = matches!(material, KeyMaterial::Pem { .. });
    if k.sign && is_pem && k.private_key_file.is_none() {
        ck.at(
            &k.kid,
            format!("key `{}` has `sign: true` but no `private_key_file`: add the PEM private key or drop `sign`", k.kid.value),
        );
        return None;
    }
    match Key::new(k.kid.value.clone(), algorithms, material, k.sign) {
        Ok(key) => Some(key),
        Err(e) => {
            ck.at(&k.algorithms, format!("key `{}`: {e}", k.kid.value));
            None
        }
    }
}
