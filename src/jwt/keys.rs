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
