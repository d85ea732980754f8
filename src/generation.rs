//! A config generation: everything the hot path reads, compiled once from the
//! YAML and swapped atomically on reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::canonical::ReadPolicy;
use crate::headers::HeaderPolicy;
use crate::jwt::Verifier;
pub(crate) use crate::logging::LogSettings;
use crate::route::Router;
use crate::upstream::Upstream;

/// Listener settings; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq)]
pub struct Listeners {
    pub proxy: SocketAddr,
    /// `listeners.tls.listen`: the TLS listener, when there is one.
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub threads: usize,
    /// After the drain window, how long in-flight requests may take before they are cut.
    pub grace_period: Duration,
    /// HTTP/2 with prior knowledge (h2c) on the plain proxy listener.
    pub h2c: bool,
    /// On SIGTERM, how long new connections are still served (with
    /// `Connection: close`) while `/readyz` says `draining`.
    pub drain_window: Duration,
    /// Where `run --upgrade` takes over the listening sockets (absolute).
    pub upgrade_socket: PathBuf,
    /// Limits on slow, idle and too many client connections.
    pub client: ClientLimits,
}

/// How long a client may take and how many may be connected (`limits` section).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimits {
    /// First byte of a request head to its blank line (and accept to first byte).
    pub header_read_timeout: Duration,
    /// End of the head to the last byte of the body.
    pub body_read_timeout: Duration,
    /// Idle time between two requests on a keep-alive connection.
    pub keepalive_timeout: Duration,
    /// Client connections open at once; more are closed at accept.
    pub max_connections: usize,
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
    /// How requests are read: canonical paths, header folding.
    pub read: ReadPolicy,
    /// The TLS listener's certificates and client CA (`listeners.tls`);
    /// reloaded with the rest, while its address is fixed like the others.
    pub(crate) tls: Option<Arc<crate::tls::TlsMaterial>>,
    /// What `portcullis check` warns about; logged at start and on reload.
    pub warnings: Vec<String>,
}
