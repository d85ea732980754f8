//! Portcullis: an authenticating reverse proxy built on pingora.
//!
//! It validates access JWTs inline on every upstream request and answers
//! 401/403 itself, strips spoofed identity headers, and forwards verified
//! identity to unchanged backends. See docs/architecture.md for the architecture; the
//! request path lives in `proxy`, configuration in [`config`].

// One place for the crate's lints: no unsafe code, every public item
// documented, and `pub` only where the library's users need it.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub(crate) mod access;
pub(crate) mod admin;
pub mod canonical;
pub mod claims;
pub mod cli;
pub mod config;
pub(crate) mod conn_guard;
pub(crate) mod error;
pub(crate) mod generation;
pub(crate) mod headers;
pub mod idp;
pub mod jwt;
pub(crate) mod lifecycle;
pub(crate) mod logging;
pub(crate) mod metrics;
pub mod plugin;
pub(crate) mod plugin_cli;
pub(crate) mod proxy;
pub(crate) mod reply;
pub mod revoked;
pub mod route;
pub(crate) mod server;
pub mod session;
pub(crate) mod tls;
pub(crate) mod upstream;
