//! The YAML file as written by an operator: typed, strict (`deny_unknown_fields`),
//! with source spans kept on every value a semantic check may complain about.
//! [`crate::config::compile`] turns this into the structures the hot path reads.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

use super::units::{ByteSize, HumanDuration, ListenAddr};
pub(crate) use crate::canonical::{EmptySegments, PathParams, UnderscoreHeaders};
pub(crate) use crate::logging::LogFormat;
pub(crate) use crate::route::{AuthMode, CertField};
pub(crate) use crate::tls::ClientAuthMode;
pub(crate) use crate::upstream::UpstreamProtocol;

/// Root of `portcullis.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listeners: RawListeners,
    #[serde(default)]
    pub log: RawLog,
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub limits: RawLimits,
    /// How a request is read: path canonicalisation and header folding.
    #[serde(default)]
    pub requests: RawRequests,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    /// Wasm policy plugins by name; routes list them in `plugins`.
    #[serde(default)]
    pub plugins: BTreeMap<String, Spanned<RawPlugin>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    /// The `/api/auth` session lifecycle; absent means no session routes.
    pub sessions: Option<Spanned<RawSessions>>,
}

/// The `sessions` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSessions {
    /// `sqlite:PATH` (relative to the config file) or `postgres://…`.
    pub store: Spanned<String>,
    /// Apply migrations at start (default true).
    pub migrate: Option<bool>,
    pub base_path: Option<Spanned<String>>,
    pub access_token_ttl: Option<Spanned<HumanDuration>>,
    pub refresh_token_ttl: Option<Spanned<HumanDuration>>,
    pub rotation: Option<Spanned<bool>>,
    pub reuse_grace: Option<Spanned<HumanDuration>>,
    /// HMAC key for refresh tokens, separate from the access-token keys;
    /// absent: the section is only the store of revocations (no session
    /// routes, nothing minted).
    pub refresh_secret: Option<Spanned<String>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    pub cookie: Option<Spanned<RawSessionCookie>>,
    /// Bearer token of the admin session API; absent disables it.
    pub admin_token: Option<Spanned<String>>,
    pub cleanup_interval: Option<HumanDuration>,
    pub revocation_poll_interval: Option<HumanDuration>,
    /// How often an unavailable store is probed (session routes fail fast meanwhile).
    pub store_probe_interval: Option<HumanDuration>,
    #[serde(default)]
    pub pool: RawPool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub per_ip: Option<u32>,
    pub per_token: Option<u32>,
    pub window: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSessionCookie {
    pub name: Option<Spanned<String>>,
    pub secure: Option<bool>,
    pub csrf_header: Option<Spanned<String>>,
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub max_connections: Option<u32>,
    pub acquire_timeout: Option<HumanDuration>,
}

/// A route's `login` block: where the subject and claims are in the backend's answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogin {
    /// JSON pointer into the 2xx JSON answer, e.g. `/user/id`.
    pub subject: Spanned<String>,
    /// Claim name → JSON pointer into the answer.
    #[serde(default)]
    pub claims: BTreeMap<String, Spanned<String>>,
    /// JSON pointer into the request body; default: the User-Agent.
    pub device_info: Option<Spanned<String>>,
}

/// A Wasm plugin as configured (ABI v1, see plugins/ABI.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlugin {
    /// Path to the `.wasm` (or `.wat`) module, relative to the config file.
    pub module: Spanned<String>,
    /// Headers this plugin may set, append or remove.
    #[serde(default)]
    pub allow_headers: Vec<Spanned<String>>,
    /// Request headers the plugin may read.
    #[serde(default)]
    pub request_headers: Vec<Spanned<String>>,
    /// What a trap, timeout or bad answer does: `deny` (default, 500) or `skip`.
    pub on_error: Option<PluginOnError>,
    /// `reused` (default: one instance per worker thread) or `per_request`.
    pub isolation: Option<PluginIsolation>,
    /// Memory cap per instance (default 16MiB).
    pub memory_limit: Option<ByteSize>,
    /// Deadline per call (default 10ms).
    pub timeout: Option<HumanDuration>,
    /// The plugin's own configuration, handed to it as JSON.
    pub config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PluginOnError {
    Deny,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PluginIsolation {
    Reused,
    PerRequest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListeners {
    pub proxy: Spanned<ListenAddr>,
    pub admin: Option<Spanned<ListenAddr>>,
    /// Worker threads of the proxy service (default: number of CPUs).
    pub threads: Option<usize>,
    /// After the drain window, how long in-flight requests may take to finish.
    pub grace_period: Option<HumanDuration>,
    /// HTTP/2 with prior knowledge (h2c) on the plain proxy listener.
    pub h2c: Option<bool>,
    /// On SIGTERM, how long the gateway keeps accepting (answering with
    /// `Connection: close`, `/readyz` 503) before it stops accepting.
    pub drain_window: Option<HumanDuration>,
    /// Unix socket over which `run --upgrade` takes the listening sockets
    /// of the running process (relative to the config file's directory).
    pub upgrade_socket: Option<Spanned<String>>,
    /// A TLS listener beside the plain one (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Option<Spanned<RawTls>>,
}

/// `listeners.tls`: the TLS listener and what it serves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// Its own address (`host:port`), beside `listeners.proxy`.
    pub listen: Spanned<ListenAddr>,
    /// PEM certificate chain (leaf first) served by default.
    pub cert_file: Spanned<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Spanned<String>,
    /// Server names `cert_file` is meant for (checked against it); default:
    /// the certificate's DNS names.
    pub names: Option<Vec<Spanned<String>>>,
    /// More certificates, chosen by SNI.
    #[serde(default)]
    pub certificates: Vec<Spanned<RawCertificate>>,
    /// Client certificates (mTLS).
    pub client_auth: Option<Spanned<RawClientAuth>>,
}

/// One of `listeners.tls.certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub cert_file: Spanned<String>,
    pub key_file: Spanned<String>,
    /// Server names it is chosen for; default: its DNS names.
    pub names: Option<Vec<Spanned<String>>>,
}

/// `listeners.tls.client_auth`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientAuth {
    /// PEM file of the CA certificates that vouch for client certificates.
    pub ca_file: Spanned<String>,
    /// `required` (default) or `optional`.
    pub mode: Option<ClientAuthMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `portcullis=debug,info`.
    pub level: Option<String>,
    /// Emit one access event per request (default true).
    pub access: Option<bool>,
    /// Emit `request`, `jwt_verify`, `plugin_chain`, `plugin` and `upstream`
    /// span-close records with their timings (default false).
    pub spans: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    /// Required `iss`; absent means any issuer.
    pub issuer: Option<Spanned<OneOrMany>>,
    /// Accepted `aud` values; absent means `aud` is not checked.
    pub audience: Option<Spanned<OneOrMany>>,
    pub leeway: Option<HumanDuration>,
    pub max_token_size: Option<ByteSize>,
    /// Cookie to read the access token from when no `Authorization` header is sent.
    pub cookie: Option<Spanned<String>>,
    /// Verified tokens kept in memory so repeated tokens cost a hash lookup.
    pub cache_entries: Option<usize>,
    /// The gateway's own keys (and any other configured keys).
    #[serde(default)]
    pub keys: Vec<Spanned<RawKey>>,
    /// Issuers whose tokens are accepted, each with its own keys (fetched
    /// from its OpenID Provider, or configured) and checks.
    #[serde(default)]
    pub issuers: Vec<Spanned<RawIssuer>>,
}

/// One `jwt.issuers` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIssuer {
    /// Exactly as tokens carry it in `iss`.
    pub issuer: Spanned<String>,
    /// Metric label and log name; the issuer URL when absent.
    pub name: Option<Spanned<String>>,
    /// Read `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    pub discovery: Option<Spanned<bool>>,
    pub jwks_uri: Option<Spanned<String>>,
    /// Configured keys instead of fetched ones.
    #[serde(default)]
    pub keys: Vec<Spanned<RawKey>>,
    /// Accepted `aud` values (required).
    pub audiences: Option<Spanned<OneOrMany>>,
    /// Allowed token algorithms (default RS256, ES256).
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    pub leeway: Option<HumanDuration>,
    #[serde(default)]
    pub required_claims: Vec<Spanned<String>>,
    /// Longest `exp - iat` accepted; bounds how long revocations are kept.
    pub max_token_lifetime: Option<HumanDuration>,
    /// Client ids back-channel logout tokens may be addressed to (`aud`).
    pub logout_client_ids: Option<Spanned<OneOrMany>>,
    /// CA certificates (PEM) trusted for the issuer's https.
    pub ca_file: Option<Spanned<String>>,
    /// `loopback`: plain http to a loopback address is allowed.
    pub allow_http: Option<Spanned<String>>,
    /// `wait` (default: `/readyz` waits for the keys) or `lazy`.
    pub startup: Option<Spanned<String>>,
    pub min_refresh: Option<HumanDuration>,
    pub max_refresh: Option<HumanDuration>,
    pub cooldown: Option<HumanDuration>,
    pub max_stale: Option<HumanDuration>,
    pub fetch_timeout: Option<HumanDuration>,
    pub max_response_size: Option<ByteSize>,
}

/// A YAML scalar or a list of scalars.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub kid: Spanned<String>,
    pub algorithms: Spanned<Vec<Spanned<String>>>,
    /// HMAC secret as text.
    pub secret: Option<Spanned<String>>,
    /// HMAC secret read from a file (trailing newline ignored).
    pub secret_file: Option<Spanned<String>>,
    /// PEM public key (RSA, EC or Ed25519), inline.
    pub public_key: Option<Spanned<String>>,
    pub public_key_file: Option<Spanned<String>>,
    /// PEM private key; needed only on the key that signs.
    pub private_key_file: Option<Spanned<String>>,
    /// This key signs the tokens the gateway mints (at most one key).
    #[serde(default)]
    pub sign: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaders {
    /// Identity headers removed from every client request before anything else.
    pub identity: Option<Vec<Spanned<String>>>,
    /// Header-name prefixes removed the same way (case-insensitive).
    pub identity_prefixes: Option<Vec<Spanned<String>>>,
    /// Name of the request id header (kept when valid, else generated).
    pub request_id: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    /// Largest request body the gateway reads itself (auth routes).
    pub max_body_size: Option<ByteSize>,
    /// Largest total size of request header names and values; above it: 431.
    pub max_header_size: Option<ByteSize>,
    /// Time a client has to send a whole request head (first byte to blank line).
    pub header_read_timeout: Option<HumanDuration>,
    /// Time a client has to send a whole request body once the head is read.
    pub body_read_timeout: Option<HumanDuration>,
    /// Time an idle keep-alive connection is kept open between requests.
    pub keepalive_timeout: Option<HumanDuration>,
    /// Client connections open at once on the proxy listener; more are closed at accept.
    pub max_connections: Option<usize>,
}

/// The `requests` section: how every request is read, one way.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequests {
    /// Route paths match case-sensitively (default false: `/API` meets `/api`'s rules).
    pub case_sensitive: Option<bool>,
    /// `merge` (default) folds `//` into `/`; `reject` answers 400.
    pub empty_segments: Option<EmptySegments>,
    /// `reject` (default) answers 400 to `;params`; `keep` forwards them and matches without them.
    pub path_params: Option<PathParams>,
    /// Header names with `_`: `drop` (default), `reject` (400) or `allow`.
    pub underscore_headers: Option<UnderscoreHeaders>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub targets: Spanned<Vec<Spanned<String>>>,
    pub connect_timeout: Option<HumanDuration>,
    pub read_timeout: Option<HumanDuration>,
    pub write_timeout: Option<HumanDuration>,
    pub health_check: Option<RawHealthCheck>,
    /// `preserve` (default) or a fixed `host[:port]` sent as `Host`.
    pub host: Option<Spanned<String>>,
    /// `http1` (default), `h2` (HTTP/2 over TLS, by ALPN) or `h2c`
    /// (HTTP/2 with prior knowledge on plain TCP).
    pub protocol: Option<Spanned<UpstreamProtocol>>,
    /// TLS toward the targets; present means TLS (`protocol: h2` implies it).
    pub tls: Option<Spanned<RawUpstreamTls>>,
}

/// `upstreams.*.tls`: how the gateway connects to the targets over TLS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    /// Server name sent (SNI) and verified; default: each target's host.
    pub sni: Option<Spanned<String>>,
    /// Verify the target's certificate chain and name (default true).
    pub verify: Option<Spanned<bool>>,
    /// PEM CA certificates to verify against instead of the system's roots.
    pub ca_file: Option<Spanned<String>>,
    /// PEM client certificate (chain) presented to the targets.
    pub client_cert_file: Option<Spanned<String>>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    /// HTTP path to GET; absent (and no `grpc`) means a TCP connect check.
    pub path: Option<Spanned<String>>,
    /// The gRPC Health Checking Protocol instead of a GET.
    pub grpc: Option<Spanned<bool>>,
    /// The service a gRPC health check asks about (default: the server).
    pub grpc_service: Option<Spanned<String>>,
    /// Consecutive failures before a target is taken out.
    pub unhealthy_after: Option<u32>,
    /// Consecutive successes before it is put back.
    pub healthy_after: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Spanned<String>,
    #[serde(rename = "match")]
    pub matcher: Spanned<RawMatch>,
    pub upstream: Spanned<String>,
    pub auth: Option<Spanned<AuthMode>>,
    /// Remove this prefix from the path before forwarding.
    pub strip_prefix: Option<Spanned<String>>,
    /// Put this prefix in front of the (possibly stripped) path.
    pub add_prefix: Option<Spanned<String>>,
    /// Claim requirements; all must hold, else 403.
    #[serde(default)]
    pub require: Vec<Spanned<RawRequirement>>,
    /// Forward the client's `Authorization` header to the upstream (default true).
    pub forward_authorization: Option<bool>,
    /// Match this route's path case-sensitively (default: `requests.case_sensitive`).
    pub case_sensitive: Option<bool>,
    /// Ordered plugin chain run after authentication.
    #[serde(default)]
    pub plugins: Vec<Spanned<String>>,
    /// Login interception: open a session from the backend's 2xx answer.
    pub login: Option<Spanned<RawLogin>>,
    /// Refuse (403) requests without a verified client certificate.
    pub require_client_cert: Option<Spanned<bool>>,
    /// Accept tokens of these issuers only (`jwt.issuers[].name`, or
    /// `jwt.keys` for the gateway's own keys); absent: any configured one.
    pub issuers: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub host: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub methods: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirement {
    /// A claim path (`role`, `org.tier`); or else `client_cert`.
    pub claim: Option<Spanned<String>>,
    /// A field of the verified client certificate: `sha256` or `subject`.
    pub client_cert: Option<Spanned<CertField>>,
    /// The claim (or one element of an array claim) must be one of these.
    #[serde(rename = "in")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The claim must equal this value.
    pub equals: Option<serde_json::Value>,
}
