//! The `jwt` section: verification keys, issuer/audience policy, token sources.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::{RawJwt, RawKey};
use crate::generation::TokenSources;
use crate::jwt::{Key, KeyMaterial, KeySet, Verifier, VerifyPolicy};

pub(super) fn compile_jwt(ck: &mut Checker, jwt: &RawJwt) -> (Option<Verifier>, TokenSources) {
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
    if jwt.keys.is_empty() {
        ck.general("`jwt.keys` is empty: configure at least one key, or remove the `jwt` section and use `auth: none` routes");
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
    let verifier = Verifier::new(
        KeySet::new(keys),
        policy,
        jwt.cache_entries.unwrap_or(defaults::JWT_CACHE_ENTRIES),
    );
    (Some(verifier), sources)
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
