//! The public half of the key set as a JWK Set (RFC 7517), so upstreams and
//! other services can verify the gateway's tokens without sharing files.
//!
//! Only asymmetric keys are published. HMAC secrets are shared secrets: a JWK
//! of one would hand out the power to mint tokens, so they are skipped by key
//! family *before* any conversion, and the converted JWK is checked again.
//!
//! The set is built from the [`DecodingKey`](jsonwebtoken::DecodingKey)s that
//! `Key::new` already parsed from PEM (SPKI `PUBLIC KEY`, or PKCS#1
//! `RSA PUBLIC KEY`), using `jsonwebtoken`'s own JWK conversion, so what we
//! publish is exactly what we verify with. Building it parses RSA keys again,
//! so callers compute it once per config generation, not per request.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::{json, Value};

use super::keys::{algorithm_name, Key, KeySet};

/// The JWK Set `{"keys": [...]}` of every asymmetric key in `keys`, each with
/// `kid`, `use: "sig"` and `alg` (the key's signing algorithm). HMAC keys never
/// appear; a key that cannot be expressed as a JWK is logged and left out.
pub fn jwk_set(keys: &KeySet) -> Value {
    let published: Vec<Value> = keys.iter().filter_map(public_jwk).collect();
    json!({ "keys": published })
}

/// One key as a public JWK, or `None` for secrets and unrepresentable keys.
fn public_jwk(key: &Key) -> Option<Value> {
    if key.decoding.family() == AlgorithmFamily::Hmac {
        return None;
    }
    let alg = key.signing_algorithm();
    let mut jwk = match Jwk::from_decoding_key(&key.decoding, Some(alg)) {
        Ok(jwk) => jwk,
        Err(e) => {
            tracing::warn!(kid = %key.kid, error = %e, "key left out of the JWK set: cannot express it as a JWK");
            return None;
        }
    };
    let consistent = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => true,
        AlgorithmParameters::EllipticCurve(ec) => matches!(
            (alg, &ec.curve),
            (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
        ),
        AlgorithmParameters::OctetKeyPair(okp) => okp.curve == EllipticCurve::Ed25519,
        // A symmetric or unknown key type must never be published.
        _ => return None,
    };
    if !consistent {
        tracing::warn!(
            kid = %key.kid,
            alg = algorithm_name(alg),
            "key left out of the JWK set: its curve does not match its algorithm"
        );
        return None;
    }
    jwk.common.key_id = Some(key.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    match serde_json::to_value(&jwk) {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::warn!(kid = %key.kid, error = %e, "key left out of the JWK set: cannot serialise it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{decode, DecodingKey, Validation};

    use super::*;
    use crate::jwt::{mint, KeyMaterial, MintRequest};

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

    /// `tests/fixtures/keys/rsa.pub` converted to PKCS#1 with
    /// `openssl rsa -pubin -in rsa.pub -RSAPublicKey_out`.
    const RSA_PKCS1_PUB: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA7ytWAx675/27PB4j190vTzbipXZbtyu062/gbbaEp9CA1aJwRUHv
AiktiQgiu+zrYZHJST7IVUkAQpYKQXUn6wFZjdACEh735WfxhiyLIq1W/FRlDwPt
tvsYbqZRBfoqAaiCehRfRMqb9hyWqUqTH/rqPn0Sp0dSBf1u6Hxq8WQV2XNLeKxG
h9aSZqbf+yiWA0YVTItjVQKpRuLWaaVX7RLABuyQb3BvgRjV6qFYtRNRviUVlWlc
rS5zL2K46a7UvtNU4fyrxj+yWlNEODSGYeXtaONA7X7WZpRz97j6hVcuFe0MZcua
m8bdLdlzPNGFeF6cvaE3wx5++YXjCWNtowIDAQAB
-----END RSA PUBLIC KEY-----
";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{KEYS}/{name}")).expect("fixture key")
    }

    fn signing_key(kid: &str, alg: Algorithm, public: Vec<u8>, private: &str) -> Key {
        let material = KeyMaterial::Pem {
            public,
            private: Some(fixture(private)),
        };
        Key::new(kid, vec![alg], material, true).expect("fixture key pair")
    }

    fn hmac_key(kid: &str) -> Key {
        let secret = b"a-shared-secret-that-must-stay-secret".to_vec();
        Key::new(
            kid,
            vec![Algorithm::HS256],
            KeyMaterial::Secret(secret),
            true,
        )
        .expect("hmac key")
    }

    /// The only JWK of the key's own set.
    fn only_jwk(key: Key) -> Value {
        let set = jwk_set(&KeySet::new(vec![key]));
        let keys = set["keys"].as_array().expect("keys array");
        assert_eq!(keys.len(), 1, "{set}");
        keys[0].clone()
    }

    /// Mints a token with `key` and verifies it with nothing but its JWK.
    fn assert_jwk_verifies_minted_token(key: Key, alg: Algorithm) -> Value {
        let keys = KeySet::new(vec![key]);
        let request = MintRequest {
            sub: "alice".into(),
            ttl: Duration::from_secs(300),
            ..MintRequest::default()
        };
        let token = mint(&keys, &request).expect("mint");
        let set = jwk_set(&keys);
        let value = set["keys"][0].clone();
        let jwk: Jwk = serde_json::from_value(value.clone()).expect("a parseable JWK");
        let decoding = DecodingKey::from_jwk(&jwk).expect("a usable JWK");
        let claims = decode::<Value>(&token, &decoding, &Validation::new(alg))
            .expect("token verifies with the published JWK")
            .claims;
        assert_eq!(claims["sub"], "alice");
        value
    }

    #[test]
    fn rsa_key_is_published_with_modulus_and_exponent_that_verify_its_tokens() {
        let key = signing_key("rsa-1", Algorithm::RS256, fixture("rsa.pub"), "rsa.key");
        let jwk = assert_jwk_verifies_minted_token(key, Algorithm::RS256);
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["kid"], "rsa-1");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["e"], "AQAB");
        // 2048-bit modulus without a leading zero byte: 256 bytes, 342 chars.
        assert_eq!(jwk["n"].as_str().map(str::len), Some(342));
        assert!(jwk.get("d").is_none(), "private exponent leaked: {jwk}");
    }

    #[test]
    fn rsa_pss_key_is_published_with_its_pss_algorithm() {
        let key = signing_key("pss", Algorithm::PS256, fixture("rsa.pub"), "rsa.key");
        let jwk = assert_jwk_verifies_minted_token(key, Algorithm::PS256);
        assert_eq!(jwk["alg"], "PS256");
    }

    #[test]
    fn rsa_key_configured_as_pkcs1_pem_publishes_the_same_jwk_as_spki() {
        let pkcs1 = signing_key(
            "rsa-1",
            Algorithm::RS256,
            RSA_PKCS1_PUB.as_bytes().to_vec(),
            "rsa.key",
        );
        let spki = signing_key("rsa-1", Algorithm::RS256, fixture("rsa.pub"), "rsa.key");
        let from_pkcs1 = assert_jwk_verifies_minted_token(pkcs1, Algorithm::RS256);
        assert_eq!(from_pkcs1, only_jwk(spki));
    }

    #[test]
    fn p256_key_is_published_with_coordinates_that_verify_its_tokens() {
        let key = signing_key("ec-1", Algorithm::ES256, fixture("ec256.pub"), "ec256.key");
        let jwk = assert_jwk_verifies_minted_token(key, Algorithm::ES256);
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["kid"], "ec-1");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["x"].as_str().map(str::len), Some(43));
        assert_eq!(jwk["y"].as_str().map(str::len), Some(43));
        assert!(jwk.get("d").is_none(), "private scalar leaked: {jwk}");
    }

    #[test]
    fn p384_key_is_published_with_coordinates_that_verify_its_tokens() {
        let key = signing_key("ec-2", Algorithm::ES384, fixture("ec384.pub"), "ec384.key");
        let jwk = assert_jwk_verifies_minted_token(key, Algorithm::ES384);
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-384");
        assert_eq!(jwk["alg"], "ES384");
        assert_eq!(jwk["x"].as_str().map(str::len), Some(64));
        assert_eq!(jwk["y"].as_str().map(str::len), Some(64));
    }

    #[test]
    fn ed25519_key_is_published_as_okp_that_verifies_its_tokens() {
        let key = signing_key(
            "ed-1",
            Algorithm::EdDSA,
            fixture("ed25519.pub"),
            "ed25519.key",
        );
        let jwk = assert_jwk_verifies_minted_token(key, Algorithm::EdDSA);
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["kid"], "ed-1");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["x"].as_str().map(str::len), Some(43));
        assert!(jwk.get("d").is_none(), "private key leaked: {jwk}");
    }

    #[test]
    fn verification_only_keys_are_published_too() {
        let material = KeyMaterial::Pem {
            public: fixture("ec256.pub"),
            private: None,
        };
        let key = Key::new("partner", vec![Algorithm::ES256], material, false).expect("key");
        let jwk = only_jwk(key);
        assert_eq!(jwk["kid"], "partner");
    }

    #[test]
    fn hmac_keys_never_appear_in_the_set() {
        let set = jwk_set(&KeySet::new(vec![hmac_key("shared")]));
        assert_eq!(set, json!({ "keys": [] }));
        let text = set.to_string();
        assert!(!text.contains("shared"), "{text}");
        assert!(!text.contains("\"k\""), "{text}");
    }

    #[test]
    fn mixed_set_publishes_every_asymmetric_key_in_order_and_no_secret() {
        let verify_only = |kid: &str, alg, file: &str| {
            let material = KeyMaterial::Pem {
                public: fixture(file),
                private: None,
            };
            Key::new(kid, vec![alg], material, false).expect("key")
        };
        let keys = KeySet::new(vec![
            verify_only("rsa", Algorithm::RS256, "rsa.pub"),
            hmac_key("hmac"),
            verify_only("p256", Algorithm::ES256, "ec256.pub"),
            verify_only("p384", Algorithm::ES384, "ec384.pub"),
            verify_only("ed", Algorithm::EdDSA, "ed25519.pub"),
        ]);
        let set = jwk_set(&keys);
        let kids: Vec<&str> = set["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert_eq!(kids, ["rsa", "p256", "p384", "ed"]);
        assert!(set["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .all(|k| k["kty"] != "oct"));
    }

    #[test]
    fn ec_key_whose_curve_does_not_match_its_algorithm_is_left_out() {
        let material = KeyMaterial::Pem {
            public: fixture("ec384.pub"),
            private: None,
        };
        let key = Key::new("wrong-curve", vec![Algorithm::ES256], material, false).expect("key");
        assert_eq!(jwk_set(&KeySet::new(vec![key])), json!({ "keys": [] }));
    }

    #[test]
    fn empty_key_set_gives_an_empty_jwk_set() {
        assert_eq!(jwk_set(&KeySet::default()), json!({ "keys": [] }));
    }
}
