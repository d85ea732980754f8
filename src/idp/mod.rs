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

pub use fetch::{FetchError, FetchPolicy};
pub use key_source::{KeyLocation, KeySourceSettings, RemoteKeys, Unavailable};
