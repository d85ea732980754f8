//! Access-token handling: the key set (selected by `kid`, each with its own
//! algorithm allow-list), verification with precise rejection reasons, a cache
//! of verified tokens, and minting with the signing key.
//!
//! The token's own header only ever *selects* among keys the operator
//! configured: `jku`, `jwk`, `x5u` and `x5c` are ignored, `alg: none` is
//! refused, and an algorithm outside the selected key's allow-list is refused
//! before any signature check, which closes the RS256→HS256 confusion attack.

mod cache;
pub mod jwks;
mod keys;
mod mint;
mod token;
mod verify;

pub use cache::TokenCache;
pub use jwks::jwk_set;
pub use keys::{
    algorithm_name, parse_algorithm as parse_algorithm_name, JwkSkip, Key, KeyError, KeyMaterial,
    KeySet,
};
pub use mint::{mint, MintError, MintRequest, RESERVED_CLAIMS};
pub use token::VerifiedToken;
pub use verify::{
    IssuerInfo, IssuerKeys, IssuerPolicy, IssuerSpec, KeySource, LogoutToken, Rejection, Verifier,
    VerifyPolicy, BACKCHANNEL_LOGOUT_EVENT,
};
