//! A config generation: everything the hot path reads, compiled once from the
//! YAML and swapped atomically on reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::raw::LogFormat;
use crate::headers::HeaderPolicy;
use crate::jwt::Verifier;
use crate::route::Router;
use crate::upstream::Upstream;

/// Listener settings; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq)]
pub struct Listeners {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub threads: usize,
    pub grace_period: Duration,
}

/// Logging settings; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    pub access: bool,
    /// Emit span-close records (`portcullis::span` target at debug).
    pub spans: bool,
}

/// Cookie that may carry the access token.
#[derive(Debug, Clone)]
pub struct TokenSources {
    pub cookie: Option<String>,
}

/// One compiled configuration.
pub struct Generation {
    pub source: PathBuf,
    pub listeners: Listeners,
    pub log: LogSettings,
    /// `None` when the config has no `jwt` section (only `auth: none` routes).
    pub verifier: Option<Verifier>,
    pub token_sources: TokenSources,
    pub headers: HeaderPolicy,
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    pub max_body_size: usize,
    pub max_header_size: usize,
    /// The `/api/auth` session settings; `None` without a `sessions` section.
    pub sessions: Option<Arc<crate::session::SessionSettings>>,
    /// `GET /.well-known/jwks.json`, serialized once.
    pub jwks: Option<serde_json::Value>,
}
