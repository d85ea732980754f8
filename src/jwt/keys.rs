//! Verification and signing keys, compiled once per config generation.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// Where a key's bytes came from, already read from disk or the config.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// HMAC secret.
    Secret(Vec<u8>),
    /// PEM public key, plus the PEM private key when this key signs.
    Pem {
        /// PEM public key: verifies tokens.
        public: Vec<u8>,
        /// PEM private key (`private_key_file`); `None` when not given.
        private: Option<Vec<u8>>,
    },
}

/// A problem with one key, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The name is not a supported JWT algorithm; holds it as written.
    #[error("`{0}` is not a JWT algorithm: use HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA")]
    UnknownAlgorithm(String),
    /// `none` (any case): unsigned tokens are never accepted.
    #[error("algorithm `none` is never accepted")]
    NoneAlgorithm,
    /// The key's `algorithms` list is empty.
    #[error("a key needs at least one algorithm")]
    NoAlgorithms,
    /// `algorithms` needs more than one kind of key material; holds the list.
    #[error("algorithms {0} mix key types: give each key type its own key entry")]
    MixedFamilies(String),
    /// The material does not fit the algorithm (a secret for RS256, a PEM
    /// for HS256).
    #[error("{alg} needs {needs}, but this key has {has}")]
    WrongMaterial {
        /// The key's first algorithm.
        alg: &'static str,
        /// The material that algorithm needs, naming the config keys.
        needs: &'static str,
        /// The material configured.
        has: &'static str,
    },
    /// A PEM could not be read as the key type the algorithms need.
    #[error(
        "the PEM is not a valid {expected} key ({detail}): check the file holds the right key type"
    )]
    BadPem {
        /// The key type expected, e.g. `RSA public`.
        expected: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// The HMAC secret is empty.
    #[error("HMAC secret is empty")]
    EmptySecret,
}

/// The three kinds of key material jsonwebtoken distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Family {
    use Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => Family::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
        // jsonwebtoken's enum is non-exhaustive; an unknown newcomer is
        // treated as HMAC, which `Key::new` only pairs with a secret.
        _ => Family::Hmac,
    }
}

/// Parses an algorithm name as written in YAML or a token header.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(KeyError::NoneAlgorithm);
    }
    match name.parse::<Algorithm>() {
        Ok(alg) if algorithm_name(alg) != "unknown" => Ok(alg),
        _ => Err(KeyError::UnknownAlgorithm(name.to_owned())),
    }
}

/// One configured key.
pub struct Key {
    /// The `kid` tokens name this key by (`jwt.keys[].kid`).
    pub kid: String,
    /// Algorithms accepted with this key (`algorithms`); the first signs.
    pub algorithms: Vec<Algorithm>,
    pub(crate) decoding: DecodingKey,
    pub(crate) encoding: Option<EncodingKey>,
}

impl std::fmt::Debug for Key {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .field("can_sign", &self.encoding.is_some())
            .finish()
    }
}

impl Key {
    /// Builds a key, refusing algorithm lists that do not fit the material.
    pub fn new(
        kid: impl Into<String>,
        algorithms: Vec<Algorithm>,
        material: KeyMaterial,
        sign: bool,
    ) -> Result<Key, KeyError> {
        let first = *algorithms.first().ok_or(KeyError::NoAlgorithms)?;
        let fam = family(first);
        if algorithms.iter().any(|a| family(*a) != fam) {
            let names: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
            return Err(KeyError::MixedFamilies(names.join(", ")));
        }
        let alg_name = algorithm_name(first);
        let (decoding, encoding) = match (fam, material) {
            (Family::Hmac, KeyMaterial::Secret(secret)) => {
                if secret.is_empty() {
                    return Err(KeyError::EmptySecret);
                }
                let enc = EncodingKey::from_secret(&secret);
                (DecodingKey::from_secret(&secret), Some(enc))
            }
            (Family::Hmac, KeyMaterial::Pem { .. }) => {
                return Err(KeyError::WrongMaterial {
                    alg: alg_name,
                    needs: "a shared `secret` or `secret_file`",
                    has: "a PEM key",
                })
            }
            (_, KeyMaterial::Secret(_)) => {
                return Err(KeyError::WrongMaterial {
                    alg: alg_name,
                    needs: "a `public_key` or `public_key_file` (PEM)",
                    has: "an HMAC secret",
                })
            }
            (fam, KeyMaterial::Pem { public, private }) => {
                let expected = match fam {
                    Family::Rsa => "RSA public",
                    Family::Ec => "EC public",
                    _ => "Ed25519 public",
                };
                let bad = |e: jsonwebtoken::errors::Error| KeyError::BadPem {
                    expected,
                    detail: e.to_string(),
                };
                let dec = match fam {
                    Family::Rsa => DecodingKey::from_rsa_pem(&public),
                    Family::Ec => DecodingKey::from_ec_pem(&public),
                    _ => DecodingKey::from_ed_pem(&public),
                }
                .map_err(bad)?;
                let enc = match private {
                    None => None,
                    Some(pem) => {
                        let expected = match fam {
                            Family::Rsa => "RSA private",
                            Family::Ec => "EC private (PKCS#8)",
                            _ => "Ed25519 private (PKCS#8)",
                        };
                        let bad = |e: jsonwebtoken::errors::Error| KeyError::BadPem {
                            expected,
                            detail: e.to_string(),
                        };
                        Some(
                            match fam {
                                Family::Rsa => EncodingKey::from_rsa_pem(&pem),
                                Family::Ec => EncodingKey::from_ec_pem(&pem),
                                _ => EncodingKey::from_ed_pem(&pem),
                            }
                            .map_err(bad)?,
                        )
                    }
                };
                (dec, enc)
            }
        };
        Ok(Key {
            kid: kid.into(),
            algorithms,
            decoding,
            encoding: if sign { encoding } else { None },
        })
    }

    /// The first algorithm of the allow-list: the one used when this key signs.
    pub fn signing_algorithm(&self) -> Algorithm {
        self.algorithms[0]
    }
}

/// Static name of an algorithm, for messages and metrics.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    use Algorithm::*;
    match alg {
        HS256 => "HS256",
        HS384 => "HS384",
        HS512 => "HS512",
        RS256 => "RS256",
        RS384 => "RS384",
        RS512 => "RS512",
        PS256 => "PS256",
        PS384 => "PS384",
        PS512 => "PS512",
        ES256 => "ES256",
        ES384 => "ES384",
        EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// All keys of a generation, looked up by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    signing: Option<usize>,
}

impl KeySet {
    /// Collects keys; callers guarantee kids are unique and at most one signs.
    pub fn new(keys: Vec<Key>) -> KeySet {
        let by_kid = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kid.clone(), i))
            .collect();
        let signing = keys.iter().position(|k| k.encoding.is_some());
        KeySet {
            keys,
            by_kid,
            signing,
        }
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Index and key for a `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<(usize, &Key)> {
        self.by_kid.get(kid).map(|&i| (i, &self.keys[i]))
    }

    /// Keys whose allow-list contains `alg` (used for tokens without `kid`).
    pub fn accepting(&self, alg: Algorithm) -> impl Iterator<Item = (usize, &Key)> {
        self.keys
            .iter()
            .enumerate()
            .filter(move |(_, k)| k.algorithms.contains(&alg))
    }

    /// The key at an index from [`by_kid`](Self::by_kid) or
    /// [`accepting`](Self::accepting).
    pub fn get(&self, idx: usize) -> Option<&Key> {
        self.keys.get(idx)
    }

    /// Every key, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The key that signs minted tokens, if any.
    pub fn signing_key(&self) -> Option<&Key> {
        self.signing.map(|i| &self.keys[i])
    }
}

/// Why a key of a fetched JWK Set is not used; logged, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkSkip {
    /// The JWK is not a JSON object jsonwebtoken can read (e.g. an
    /// unknown `kty`).
    #[error("not a JWK this gateway can read ({0})")]
    Unreadable(String),
    /// `use: enc`: an encryption key, never a signature key.
    #[error("an encryption key (`use: enc`)")]
    Encryption,
    /// No `kid`: tokens could not select it.
    #[error("it has no `kid`")]
    NoKid,
    /// A symmetric key: a JWKS never legitimately carries shared secrets.
    #[error("a symmetric (`oct`) key")]
    Symmetric,
    /// An RSA modulus shorter than 2048 bits.
    #[error("an RSA key of {0} bits (2048 at least)")]
    WeakRsa(usize),
    /// `alg` is not one the issuer allows, or does not fit the key type.
    #[error("algorithm {0} is not allowed for it")]
    Algorithm(String),
}

impl Key {
    /// A verification key from one JWK of an issuer's JWK Set. Its
    /// algorithms are its `alg` (when given) or those of `allowed` that fit
    /// its key type; a key that fits none of `allowed` is skipped, so the key
    /// type always matches the algorithm.
    pub fn from_jwk(jwk: &serde_json::Value, allowed: &[Algorithm]) -> Result<Key, JwkSkip> {
        use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
        let parsed: Jwk =
            serde_json::from_value(jwk.clone()).map_err(|e| JwkSkip::Unreadable(e.to_string()))?;
        if matches!(parsed.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(JwkSkip::Encryption);
        }
        let kid = parsed.common.key_id.clone().ok_or(JwkSkip::NoKid)?;
        let fits: fn(Algorithm) -> bool = match &parsed.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let bits = modulus_bits(&rsa.n);
                if bits < 2048 {
                    return Err(JwkSkip::WeakRsa(bits));
                }
                |a| family(a) == Family::Rsa
            }
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                jsonwebtoken::jwk::EllipticCurve::P256 => |a| a == Algorithm::ES256,
                jsonwebtoken::jwk::EllipticCurve::P384 => |a| a == Algorithm::ES384,
                _ => return Err(JwkSkip::Algorithm("for this curve".into())),
            },
            AlgorithmParameters::OctetKeyPair(_) => |a| a == Algorithm::EdDSA,
            AlgorithmParameters::OctetKey(_) => return Err(JwkSkip::Symmetric),
            _ => return Err(JwkSkip::Unreadable("unknown key type".into())),
        };
        let declared = parsed
            .common
            .key_algorithm
            .and_then(|a| serde_json::to_value(a).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        let algorithms: Vec<Algorithm> = match &declared {
            Some(name) => {
                let alg = parse_algorithm(name).map_err(|_| JwkSkip::Algorithm(name.clone()))?;
                if !fits(alg) || !allowed.contains(&alg) {
                    return Err(JwkSkip::Algorithm(name.clone()));
                }
                vec![alg]
            }
            None => allowed.iter().copied().filter(|a| fits(*a)).collect(),
        };
        if algorithms.is_empty() {
            return Err(JwkSkip::Algorithm("none of the issuer's".into()));
        }
        let decoding =
            DecodingKey::from_jwk(&parsed).map_err(|e| JwkSkip::Unreadable(e.to_string()))?;
        Ok(Key {
            kid,
            algorithms,
            decoding,
            encoding: None,
        })
    }
}

/// Bits of a base64url big-endian RSA modulus (0 when unreadable).
fn modulus_bits(n: &str) -> usize {
    use base64::Engine as _;
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n.trim_end_matches('='))
    else {
        return 0;
    };
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}

#[cfg(test)]
mod jwk_tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn rsa_jwk(bits: usize, extra: serde_json::Value) -> serde_json::Value {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![0xc5u8; bits / 8]);
        let mut jwk = json!({"kty": "RSA", "kid": "k1", "n": n, "e": "AQAB"});
        if let (Some(o), Some(e)) = (jwk.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        jwk
    }

    #[test]
    fn fetched_jwks_keep_only_signature_keys_that_fit_the_allowed_algorithms() {
        let rs = [Algorithm::RS256, Algorithm::ES256];
        let key = Key::from_jwk(&rsa_jwk(2048, json!({})), &rs).expect("usable");
        assert_eq!(key.algorithms, vec![Algorithm::RS256]);
        assert_eq!(
            Key::from_jwk(&rsa_jwk(2048, json!({"use": "enc"})), &rs).err(),
            Some(JwkSkip::Encryption)
        );
        assert_eq!(
            Key::from_jwk(&rsa_jwk(1024, json!({})), &rs).err(),
            Some(JwkSkip::WeakRsa(1024))
        );
        assert!(matches!(
            Key::from_jwk(&rsa_jwk(2048, json!({"alg": "ES256"})), &rs),
            Err(JwkSkip::Algorithm(_))
        ));
        assert!(matches!(
            Key::from_jwk(&rsa_jwk(2048, json!({"alg": "RS512"})), &rs),
            Err(JwkSkip::Algorithm(_))
        ));
        assert_eq!(
            Key::from_jwk(&rsa_jwk(2048, json!({"kid": null})), &rs).err(),
            Some(JwkSkip::NoKid)
        );
        let oct = json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"});
        assert_eq!(Key::from_jwk(&oct, &rs).err(), Some(JwkSkip::Symmetric));
        let unknown = json!({"kty": "XYZ", "kid": "u"});
        assert!(matches!(
            Key::from_jwk(&unknown, &rs),
            Err(JwkSkip::Unreadable(_))
        ));
        // Only ES256 allowed: an RSA key fits none of them.
        assert!(Key::from_jwk(&rsa_jwk(2048, json!({})), &[Algorithm::ES256]).is_err());
    }
}
