//! Plugin errors, phrased for the operator, and the fixed set of invocation
//! result labels used for metrics.

use std::time::Duration;

/// Everything that can go wrong with a plugin, at load time or per call.
///
/// Every variant names the plugin, and the message says what to do about it
/// where there is something to do (rebuild, fix the config, raise a limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The Wasm engine could not be set up (nothing to do with a plugin).
    #[error("plugin host: {detail}")]
    Engine {
        /// What could not be set up, and why.
        detail: String,
    },

    /// The plugin's settings are unusable (name, limits).
    #[error("plugin `{plugin}`: {detail}")]
    InvalidSpec {
        /// Plugin name from the config.
        plugin: String,
        /// Which setting is wrong and why.
        detail: String,
    },

    /// `allow_headers` names a header no plugin may touch.
    #[error(
        "plugin `{plugin}`: `{header}` may never be set by a plugin; remove it from allow_headers"
    )]
    ForbiddenHeader {
        /// Plugin name from the config.
        plugin: String,
        /// The offending `allow_headers` entry.
        header: String,
    },

    /// `request_headers` names a credential header.
    #[error("plugin `{plugin}`: `{header}` carries credentials and is never shown to plugins; remove it from request_headers")]
    ForbiddenRequestHeader {
        /// Plugin name from the config.
        plugin: String,
        /// The offending `request_headers` entry.
        header: String,
    },

    /// The bytes are neither a valid Wasm module nor valid WAT text.
    #[error("plugin `{plugin}`: not a valid Wasm module: {detail}")]
    Compile {
        /// Plugin name from the config.
        plugin: String,
        /// The compiler's message.
        detail: String,
    },

    /// The module imports something the gateway does not provide (WASI, env).
    #[error("plugin `{plugin}`: imports `{import}`, which this gateway does not provide (plugins get no WASI; the ABI offers only module `portcullis`: set_header, append_header, remove_header, deny, log, claim, claim_kind, claim_count, request_field, request_header, claims_json, request_json, header_batch)")]
    UnknownImport {
        /// Plugin name from the config.
        plugin: String,
        /// The import, as `module::name`.
        import: String,
    },

    /// A required ABI v1 export is absent.
    #[error("plugin `{plugin}`: missing export `{export}`: build the plugin with the SDK or export it by hand (see plugins/ABI.md)")]
    MissingExport {
        /// Plugin name from the config.
        plugin: String,
        /// Name of the absent export.
        export: String,
    },

    /// An ABI export or import has the wrong type.
    #[error("plugin `{plugin}`: {item} has type {found}, the ABI needs {expected}")]
    WrongType {
        /// Plugin name from the config.
        plugin: String,
        /// Which one, as `import ...` or `export ...`.
        item: String,
        /// The type the module declares.
        found: String,
        /// The type ABI v1 requires.
        expected: String,
    },

    /// `portcullis_abi_version` answered something other than the version
    /// the module's `portcullis_on_request` signature says.
    #[error("plugin `{plugin}`: module reports ABI version {found}, but its portcullis_on_request has the ABI v{expected} signature ({}); this gateway speaks versions 1 and 2: rebuild the plugin against the SDK", if *expected == 1 { "four i32 parameters" } else { "no parameters" })]
    AbiVersion {
        /// Plugin name from the config.
        plugin: String,
        /// The version the module reported.
        found: i32,
        /// The version its exports have.
        expected: i32,
    },

    /// `portcullis_init` returned nonzero: the plugin rejected its config.
    #[error("plugin `{plugin}`: rejected its config (portcullis_init returned {code}){}", join_messages(.messages))]
    ConfigRejected {
        /// Plugin name from the config.
        plugin: String,
        /// What `portcullis_init` returned.
        code: i32,
        /// Error and warning lines the plugin logged during init.
        messages: Vec<String>,
    },

    /// An instance could not be created or initialised (pool exhausted,
    /// initial memory above the limit, init trapped).
    #[error("plugin `{plugin}`: cannot start an instance: {detail}")]
    Instantiate {
        /// Plugin name from the config.
        plugin: String,
        /// Why the instance could not start.
        detail: String,
    },

    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}`: used its {}ms of CPU time (limits.deadline) and was stopped", .deadline.as_millis())]
    Timeout {
        /// Plugin name from the config.
        plugin: String,
        /// The plugin's `limits.deadline` (`timeout` in the config).
        deadline: Duration,
    },

    /// The guest trapped (unreachable, out-of-bounds access, stack overflow…).
    #[error("plugin `{plugin}`: trapped: {detail}")]
    Trap {
        /// Plugin name from the config.
        plugin: String,
        /// The trap, as the engine describes it.
        detail: String,
    },

    /// The guest needed more memory than its limit (and trapped, or its
    /// allocator gave up).
    #[error("plugin `{plugin}`: ran out of memory (limit {limit} bytes; raise limits.memory_bytes if the plugin legitimately needs more)")]
    MemoryExhausted {
        /// Plugin name from the config.
        plugin: String,
        /// The plugin's `limits.memory_bytes` (`memory_limit` in the config),
        /// in bytes.
        limit: usize,
    },

    /// The guest tried a header write its allow-list or the header rules
    /// refuse; the whole invocation is void.
    #[error("plugin `{plugin}`: policy violation: {detail}")]
    PolicyViolation {
        /// Plugin name from the config.
        plugin: String,
        /// Which write was refused and why.
        detail: String,
    },

    /// The guest broke the ABI: unknown return code, deny without a 4xx,
    /// out-of-bounds pointers, a buffer it handed out that does not fit.
    #[error("plugin `{plugin}`: bad answer: {detail}")]
    BadAnswer {
        /// Plugin name from the config.
        plugin: String,
        /// What the guest got wrong.
        detail: String,
    },

    /// Claims plus request JSON exceed `limits.max_input_bytes`; the guest
    /// was not called.
    #[error(
        "plugin `{plugin}`: input is {size} bytes, more than limits.max_input_bytes ({limit})"
    )]
    InputTooLarge {
        /// Plugin name from the config.
        plugin: String,
        /// Size of the input over the cap (claims or request JSON), in bytes.
        size: usize,
        /// The plugin's `limits.max_input_bytes`, in bytes.
        limit: usize,
    },
}

fn join_messages(messages: &[String]) -> String {
    if messages.is_empty() {
        String::new()
    } else {
        format!(": {}", messages.join("; "))
    }
}

impl PluginError {
    /// The plugin this error is about (empty for [`PluginError::Engine`]).
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Engine { .. } => "",
            PluginError::InvalidSpec { plugin, .. }
            | PluginError::ForbiddenHeader { plugin, .. }
            | PluginError::ForbiddenRequestHeader { plugin, .. }
            | PluginError::Compile { plugin, .. }
            | PluginError::UnknownImport { plugin, .. }
            | PluginError::MissingExport { plugin, .. }
            | PluginError::WrongType { plugin, .. }
            | PluginError::AbiVersion { plugin, .. }
            | PluginError::ConfigRejected { plugin, .. }
            | PluginError::Instantiate { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::MemoryExhausted { plugin, .. }
            | PluginError::PolicyViolation { plugin, .. }
            | PluginError::BadAnswer { plugin, .. }
            | PluginError::InputTooLarge { plugin, .. } => plugin,
        }
    }

    /// The metrics label of an invocation that failed with this error.
    pub fn invocation_result(&self) -> InvocationResult {
        match self {
            PluginError::Timeout { .. } => InvocationResult::Timeout,
            PluginError::Trap { .. } => InvocationResult::Trap,
            PluginError::MemoryExhausted { .. } => InvocationResult::Memory,
            PluginError::PolicyViolation { .. } => InvocationResult::Violation,
            _ => InvocationResult::Error,
        }
    }
}

/// What one plugin invocation came to, as a bounded metrics label
/// (`portcullis_plugin_invocations_total{plugin,result}`).
///
/// The label says what the *plugin* did; whether a failure was skipped
/// (`on_error: skip`) or stopped the request is reported separately
/// ([`Invocation::skipped`](super::Invocation::skipped)), so a timing-out
/// plugin shows up as `timeout` whatever its `on_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvocationResult {
    /// `ok`: continued; its header changes were accepted.
    Ok,
    /// `deny`: denied the request with a 4xx.
    Deny,
    /// `timeout`: interrupted at its deadline.
    Timeout,
    /// `trap`: the guest trapped.
    Trap,
    /// `memory`: hit its memory limit.
    Memory,
    /// `violation`: tried a refused or invalid header write.
    Violation,
    /// `error`: anything else (bad answer, plugin-reported error, input too
    /// large, instance could not start).
    Error,
}

impl InvocationResult {
    /// Every label, e.g. to pre-register metric series.
    pub const ALL: [InvocationResult; 7] = [
        InvocationResult::Ok,
        InvocationResult::Deny,
        InvocationResult::Timeout,
        InvocationResult::Trap,
        InvocationResult::Memory,
        InvocationResult::Violation,
        InvocationResult::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationResult::Ok => "ok",
            InvocationResult::Deny => "deny",
            InvocationResult::Timeout => "timeout",
            InvocationResult::Trap => "trap",
            InvocationResult::Memory => "memory",
            InvocationResult::Violation => "violation",
            InvocationResult::Error => "error",
        }
    }
}

impl std::fmt::Display for InvocationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
