//! Identity providers: fetching an OpenID Provider's signing keys (OIDC
//! discovery or a configured `jwks_uri`) and keeping them fresh off the
//! request path, with a single-flight, cooled-down refetch for unknown
//! `kid`s and stale-if-error serving bounded by `max_stale`.
//!
//! This is the key source of tokens minted elsewhere (Keycloak, Auth0, Okta,
//! Entra ID, any OpenID Provider); [`crate::jwt`] verifies with the keys it
//! yields exactly as with configured ones.

pub mod fetch;
pub mod key_source;

use std::sync::OnceLock;

use prometheus::IntCounterVec;

pub use fetch::{FetchError, FetchPolicy};

/// `portcullis_jwks_fetch_total{issuer,result}`, set once by the server.
static FETCHES: OnceLock<IntCounterVec> = OnceLock::new();

/// Counts key fetches in `counter` from now on (the server calls this once).
pub(crate) fn count_fetches_in(counter: IntCounterVec) {
    let _ = FETCHES.set(counter);
}

fn count_fetch(issuer: &str, result: &str) {
    if let Some(counter) = FETCHES.get() {
        counter.with_label_values(&[issuer, result]).inc();
    }
}
pub use key_source::{KeyLocation, KeySourceSettings, RemoteKeys, Unavailable};
