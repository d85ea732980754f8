//! Wasm policy plugins: the host side of ABI v1 and v2 (`plugins/ABI.md`).
//!
//! The version is read from the module's `portcullis_on_request`: with four
//! parameters (v1) the claims and request are copied in as JSON per call;
//! with none (v2) nothing is copied and the guest reads claims by path and
//! request parts through imports ([`abi_v2`]), and writes its headers in one
//! `header_batch`, so a claims-to-headers guest parses no JSON at all.
//!
//! A plugin is a WebAssembly module that sees a request's verified claims and
//! some request metadata and answers with header changes toward the upstream
//! or a 4xx denial. Plugins let operators add claim-to-header mappings and
//! access rules without rebuilding the gateway, in any language that compiles
//! to Wasm, while the gateway keeps the final say over what they can do.
//!
//! # Pieces
//!
//! - [`PluginHost`]: one Wasm engine per process (Cranelift, epoch
//!   interruption, pooling allocator, no WASI) plus a ticker thread that
//!   advances the engine epoch every [`HostConfig::epoch_tick`] (1 ms).
//! - [`CompiledPlugin::compile`]: done once per config generation. Compiles
//!   the module, checks its imports and exports, refuses forbidden
//!   allow-list entries, and starts one instance (ABI version check + `init`
//!   with the config) so a bad module or config fails `portcullis check`, not
//!   the first request.
//! - [`PluginChain::run`]: the hot path. Runs a route's plugins in order on
//!   the same claims and request (a plugin never sees earlier plugins'
//!   changes), accumulates their header changes, stops at the first deny or
//!   fail-closed failure, and reports one [`Invocation`] per plugin called
//!   for metrics.
//! - [`run_once`] and [`measure`]: what `portcullis plugin test` calls.
//!
//! # Sandbox
//!
//! - Memory: each instance's linear memory is capped at
//!   [`Limits::memory_bytes`]; `memory.grow` beyond it returns -1. A module
//!   whose initial memory is above the cap is refused at load.
//! - Time: each call (`init`, and `alloc`+`on_request` together) gets
//!   [`Limits::deadline`] of **CPU time** of its worker thread, checked on
//!   every epoch tick ([`clock`]): a worker descheduled on an overloaded
//!   machine keeps its budget, a runaway guest is interrupted once it has
//!   burnt the deadline (plus at most one tick). A wall-clock ceiling of ten
//!   deadlines (at least one second) stops any call regardless.
//! - Inputs: config, and for v1 modules the claims and request JSON, are
//!   each capped at [`Limits::max_input_bytes`]; an oversized input fails
//!   the invocation without calling the guest. v2 copies no input.
//! - Headers: a plugin may only write headers on its `allow_headers`, and
//!   never the [`FORBIDDEN_HEADERS`] or any `x-forwarded-*`; values must be
//!   UTF-8 without CR, LF or NUL and at most 8 KiB. Requests never show the
//!   plugin `authorization`, `cookie` or `proxy-authorization`.
//! - Nothing a guest does panics the host: out-of-bounds pointers, bad return
//!   codes, traps and timeouts all become a [`PluginError`].
//!
//! # Policy violations void the invocation
//!
//! ABI v1 answers a refused header write with 1 and an invalid one with 2,
//! and the guest may ignore the answer. The host does not: **any refused or
//! invalid header write makes the whole invocation fail** with
//! [`PluginError::PolicyViolation`] (label `violation`), even if the guest
//! then returns 0 or denies. None of that invocation's changes apply and
//! `on_error` decides what happens to the request. A plugin that tries to
//! set `Authorization`, or a value with CR/LF, therefore never applies half
//! of its changes, and the attempt is visible in metrics instead of being
//! silently dropped.
//!
//! # Failure handling
//!
//! Header changes apply only when `on_request` returns 0 with no violation.
//! A failure (timeout, trap, memory, violation, bad answer, oversized input,
//! instance that cannot start) with [`OnError::Deny`] (the default) stops the
//! chain with [`Outcome::Failed`] and `skipped: false`: the caller answers a
//! 5xx without detail. With [`OnError::Skip`] the failing plugin's changes
//! are dropped, the failure is logged and reported in its [`Invocation`], and
//! the chain continues.
//!
//! # Result labels
//!
//! [`InvocationResult`] is the fixed label set for
//! `portcullis_plugin_invocations_total{plugin,result}`: `ok`, `deny`,
//! `timeout`, `trap`, `memory`, `violation`, `error`. It says what the plugin
//! did; whether a failure was skipped is [`Invocation::skipped`].
//!
//! # Instances
//!
//! [`Isolation::Reused`] (default): each worker thread keeps one instance
//! per compiled plugin in a thread-local cache, so a call costs well under a
//! microsecond plus the guest's own work. Guest globals persist between
//! requests on that thread (plugins must not rely on it either way). An
//! instance is discarded, and a fresh one (with a fresh `init`) serves the
//! next call, after a trap, a timeout, a memory-cap trap or an import fault.
//! Cache entries hold only a `Weak` to their plugin; whenever any compiled
//! plugin is dropped (config reload) a global counter moves and each thread
//! sweeps out entries of dead plugins on its next call, so reloads do not
//! leak instances on busy threads.
//!
//! [`Isolation::PerRequest`]: a fresh instance (from the pool) for every
//! call, `init` included, so no state survives between requests.

mod abi;
mod abi_v2;
mod cache;
mod chain;
mod claim_text;
mod clock;
mod compiled;
mod error;
mod headers;
mod host;
mod instance;
mod request;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v2;
mod tool;

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use abi::{LogLevel, LogLine};
pub use chain::{ChainResult, Invocation, PluginChain};
pub use compiled::CompiledPlugin;
pub use error::{InvocationResult, PluginError};
pub use headers::{
    is_forbidden, is_hidden_from_plugins, FORBIDDEN_HEADERS, HIDDEN_REQUEST_HEADERS,
    MAX_HEADER_VALUE_BYTES,
};
pub use host::{Allocator, HostConfig, PluginHost};
pub use instance::AbiVersion;
pub use tool::{measure, run_once, Measurement, PluginRun};

/// The newest ABI version this host speaks (it also runs version 1).
pub const ABI_VERSION: i32 = 2;

/// What to do with a request when a plugin fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// Fail closed: stop the chain, the caller answers 5xx.
    #[default]
    Deny,
    /// Drop the plugin's changes and continue the chain.
    Skip,
}

/// How instances are shared between requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// One instance per worker thread, reused (fast; guest state persists).
    #[default]
    Reused,
    /// A fresh instance per call (slower; nothing persists).
    PerRequest,
}

/// Resource limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap per instance (default 16 MiB).
    pub memory_bytes: usize,
    /// Time per call (default 10 ms), whole epoch ticks.
    pub deadline: Duration,
    /// Cap on each input (config, claims, request JSON) (default 64 KiB).
    pub max_input_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 16 << 20,
            deadline: Duration::from_millis(10),
            max_input_bytes: 64 << 10,
        }
    }
}

/// Everything needed to load one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Name from the config: used in errors, logs and metric labels.
    pub name: String,
    /// A binary Wasm module, or WAT text.
    pub wasm: Vec<u8>,
    /// Passed to `portcullis_init` as JSON.
    pub config: serde_json::Value,
    /// Headers the plugin may set, append or remove.
    pub allow_headers: Vec<HeaderName>,
    /// Request headers shown to the plugin in the request JSON.
    pub request_headers: Vec<HeaderName>,
    /// Fail closed (default) or skip on failure.
    pub on_error: OnError,
    /// Instance reuse.
    pub isolation: Isolation,
    /// Memory, time and input limits.
    pub limits: Limits,
}

impl PluginSpec {
    /// A spec with config `{}`, empty header lists and default settings.
    pub fn new(name: impl Into<String>, wasm: impl Into<Vec<u8>>) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            wasm: wasm.into(),
            config: serde_json::Value::Object(serde_json::Map::new()),
            allow_headers: Vec::new(),
            request_headers: Vec::new(),
            on_error: OnError::default(),
            isolation: Isolation::default(),
            limits: Limits::default(),
        }
    }
}

/// The request as plugins see it (ABI v1 request JSON). `headers` should be
/// the client's headers after the gateway's identity-header stripping; only
/// those on a plugin's `request_headers` are passed to it.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta<'a> {
    /// Method as received.
    pub method: &'a str,
    /// Path as received (percent-encoded, not normalised), without query.
    pub path: &'a str,
    /// Raw query without `?`, `""` when none.
    pub query: &'a str,
    /// Host the client addressed, `""` when unknown.
    pub host: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The connection's verified client certificate (mTLS); `None` without one.
    pub client_cert: Option<ClientCertMeta<'a>>,
}

/// A verified client certificate as plugins see it (`client_cert` in the
/// request JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertMeta<'a> {
    /// SHA-256 of the DER certificate, base64url without padding (RFC 8705
    /// `x5t#S256`).
    pub sha256: &'a str,
    /// The subject distinguished name, e.g. `CN=alice, O=Example`.
    pub subject: &'a str,
}

/// One header change toward the upstream, validated by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Replace every value.
    Set(HeaderName, HeaderValue),
    /// Add one more value.
    Append(HeaderName, HeaderValue),
    /// Remove every value.
    Remove(HeaderName),
}

impl HeaderChange {
    /// The header this change touches.
    pub fn name(&self) -> &HeaderName {
        match self {
            HeaderChange::Set(n, _) | HeaderChange::Append(n, _) | HeaderChange::Remove(n) => n,
        }
    }

    /// Applies the change to a header map.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        match self {
            HeaderChange::Set(n, v) => {
                headers.insert(n.clone(), v.clone());
            }
            HeaderChange::Append(n, v) => {
                headers.append(n.clone(), v.clone());
            }
            HeaderChange::Remove(n) => {
                headers.remove(n);
            }
        }
    }
}

/// What a plugin, or a whole chain, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the request with these changes, in order.
    Continue(Vec<HeaderChange>),
    /// Answer the client with this 4xx and message (message: at most 1 KiB,
    /// valid UTF-8, chosen by the plugin, so not trusted for markup).
    Deny {
        /// HTTP status for the client, always 400..=499.
        status: u16,
        /// Text for the response body.
        message: String,
        /// Name of the plugin that denied.
        plugin: String,
    },
    /// The plugin failed. From a chain, `skipped` is always false (skipped
    /// failures do not stop it); the caller answers 5xx without detail.
    Failed {
        /// Name of the plugin that failed.
        plugin: String,
        /// What went wrong, for the log (never shown to the client).
        error: PluginError,
        /// Whether the plugin's `on_error` is `skip`.
        skipped: bool,
    },
}

/// Checks a spec's header lists (also used by config validation that wants
/// the error before compiling).
pub fn check_header_lists(spec: &PluginSpec) -> Result<(), PluginError> {
    if let Some(h) = spec.allow_headers.iter().find(|h| is_forbidden(h)) {
        return Err(PluginError::ForbiddenHeader {
            plugin: spec.name.clone(),
            header: h.as_str().to_string(),
        });
    }
    if let Some(h) = spec
        .request_headers
        .iter()
        .find(|h| is_hidden_from_plugins(h))
    {
        return Err(PluginError::ForbiddenRequestHeader {
            plugin: spec.name.clone(),
            header: h.as_str().to_string(),
        });
    }
    Ok(())
}
