//! Portcullis: an authenticating reverse proxy built on pingora.
//!
//! It validates access JWTs inline on every upstream request and answers
//! 401/403 itself, strips spoofed identity headers, and forwards verified
//! identity to unchanged backends. See docs/architecture.md for the architecture; the
//! request path lives in [`proxy`], configuration in [`config`].

pub mod access;
pub mod admin;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod conn_guard;
pub mod error;
pub mod generation;
pub mod headers;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod plugin;
pub mod plugin_cli;
pub mod proxy;
pub mod reply;
pub mod revoked;
pub mod route;
pub mod server;
pub mod session;
pub mod upstream;
