//! One loaded plugin: module checks at compile time, instance start-up
//! (`init`), and a single `on_request` invocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::HeaderName;
use wasmtime::{ExternType, FuncType, Module, ModuleExport, Store, Trap, TypedFunc, ValType};

use super::abi::{self, GuestFault, HostState, LogLevel, LogLine, Policy};
use super::abi_v2;
use super::clock::CpuBudget;
use super::host::HostInner;
use super::instance::{AbiExports, AbiVersion, Live, OnRequest, Shared};
use super::{
    cache, check_header_lists, HeaderChange, Isolation, Limits, OnError, PluginError, PluginHost,
    PluginSpec, RequestMeta,
};
use crate::claims::Claims;

/// Unique ids for thread-local instance caches.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A plugin compiled and checked against ABI v1 or v2, ready to run on any
/// thread. Compile once per config generation and share it (`Arc`) between
/// the routes that use it.
pub struct CompiledPlugin {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.shared;
        f.debug_struct("CompiledPlugin")
            .field("name", &s.name)
            .field("allow_headers", &s.policy.allow)
            .field("request_headers", &s.request_headers)
            .field("on_error", &s.on_error)
            .field("isolation", &s.isolation)
            .field("limits", &s.limits)
            .finish_non_exhaustive()
    }
}

/// The result of one `on_request` invocation.
#[derive(Debug)]
pub(crate) enum Answer {
    Continue(Vec<HeaderChange>),
    Deny { status: u16, message: String },
    Failed(PluginError),
}

/// Exports both ABIs require, with their parameter count (all i32, each
/// returning one i32); `portcullis_on_request` is checked on its own (its
/// signature says the version).
const FUNC_EXPORTS: &[(&str, usize)] = &[
    ("portcullis_abi_version", 0),
    ("portcullis_alloc", 1),
    ("portcullis_init", 2),
];

impl CompiledPlugin {
    /// Compiles the module, checks its imports, exports and ABI version,
    /// refuses forbidden `allow_headers`/`request_headers` entries, and
    /// starts one instance running `init` with the config, so a bad module
    /// or config fails here (at `portcullis check`) with a message for the
    /// operator.
    pub fn compile(host: &PluginHost, spec: PluginSpec) -> Result<CompiledPlugin, PluginError> {
        let inner = Arc::clone(&host.inner);
        let name = spec.name.clone();
        let invalid = |detail: String| PluginError::InvalidSpec {
            plugin: name.clone(),
            detail,
        };
        if spec.name.trim().is_empty() {
            return Err(invalid("a plugin needs a name".to_string()));
        }
        check_limits(&spec.limits, &inner).map_err(invalid)?;
        check_header_lists(&spec)?;
        let config_json = serde_json::to_vec(&spec.config)
            .map_err(|e| invalid(format!("config cannot be encoded as JSON: {e}")))?;
        if config_json.len() > spec.limits.max_input_bytes {
            return Err(invalid(format!(
                "config is {} bytes as JSON, more than limits.max_input_bytes ({})",
                config_json.len(),
                spec.limits.max_input_bytes
            )));
        }

        let module = inner.module(&spec.wasm).map_err(|e| PluginError::Compile {
            plugin: name.clone(),
            detail: format!("{e:#}"),
        })?;
        check_imports(&name, &module)?;
        let (exports, abi) = check_exports(&name, &module, spec.limits.memory_bytes)?;
        let reads_request = module
            .imports()
            .any(|i| abi::REQUEST_READERS.contains(&i.name()));
        let linker = abi::linker(&inner.engine)
            .and_then(|mut linker| abi_v2::define(&mut linker).map(|()| linker))
            .map_err(|e| PluginError::Engine {
                detail: format!("cannot define the plugin imports: {e:#}"),
            })?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::Compile {
                plugin: name.clone(),
                detail: format!("{e:#}"),
            })?;

        let mut allow = spec.allow_headers;
        allow.dedup();
        let name: Arc<str> = Arc::from(spec.name);
        let inner_tick = inner.config.epoch_tick;
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: Arc::clone(&name),
            host: inner,
            pre,
            exports,
            config_json,
            policy: Arc::new(Policy::new(
                name,
                allow,
                spec.request_headers.clone(),
                spec.limits.memory_bytes,
            )),
            request_headers: spec.request_headers,
            on_error: spec.on_error,
            isolation: spec.isolation,
            limits: spec.limits,
            abi,
            reads_request,
            budget: CpuBudget::new(spec.limits.deadline, inner_tick),
        });
        let plugin = CompiledPlugin { shared };
        plugin.start(true, true)?;
        Ok(plugin)
    }

    /// The plugin's configured name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Headers the plugin may write.
    pub fn allow_headers(&self) -> &[HeaderName] {
        &self.shared.policy.allow
    }

    /// Request headers shown to the plugin.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.shared.request_headers
    }

    /// Fail closed or skip.
    pub fn on_error(&self) -> OnError {
        self.shared.on_error
    }

    /// Instance reuse mode.
    pub fn isolation(&self) -> Isolation {
        self.shared.isolation
    }

    /// Limits in force.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// The ABI the module speaks.
    pub fn abi(&self) -> AbiVersion {
        self.shared.abi
    }

    /// Arms the CPU-time deadline for one guest call.
    fn begin_call(&self, store: &mut Store<HostState>) {
        let s = &self.shared;
        store.set_epoch_deadline(1);
        store.data_mut().clock.start(s.budget);
    }

    /// Warns about a failed invocation, at most [`abi::LOG_LINES_PER_SECOND`]
    /// lines per second for this plugin (a request pattern that makes a
    /// plugin trap must not flood the log); the metric counts every one.
    pub(crate) fn log_failure(&self, error: &PluginError, skipped: bool) {
        let (admitted, dropped) = self.shared.policy.failure_logs.admit();
        let plugin = &*self.shared.name;
        let result = error.invocation_result().as_str();
        if dropped > 0 {
            tracing::warn!(
                target: "portcullis::plugin",
                plugin,
                dropped,
                "plugin failure warnings dropped (rate limit {}/s)",
                abi::LOG_LINES_PER_SECOND
            );
        }
        if !admitted {
            return;
        }
        if skipped {
            tracing::warn!(target: "portcullis::plugin", plugin, result, "plugin failed, skipped (on_error: skip): {error}");
        } else {
            tracing::warn!(target: "portcullis::plugin", plugin, result, "plugin failed, request refused (on_error: deny): {error}");
        }
    }

    /// Starts an instance: instantiate, optionally check the ABI version,
    /// run `init`. Log lines are captured when asked (and always for
    /// `init`'s error messages at load time).
    pub(crate) fn start(&self, check_abi: bool, capture_logs: bool) -> Result<Live, PluginError> {
        let s = &self.shared;
        let failed = |detail: String| PluginError::Instantiate {
            plugin: s.name.to_string(),
            detail,
        };
        let mut store = Store::new(
            &s.host.engine,
            HostState::new(Arc::clone(&s.policy), capture_logs),
        );
        store.limiter(|state| &mut state.cap);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().clock.on_tick()));
        self.begin_call(&mut store);
        let instance = match s.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                return Err(if store.data().cap.refused {
                    failed(format!(
                        "its initial memory is larger than limits.memory_bytes ({} bytes)",
                        s.limits.memory_bytes
                    ))
                } else {
                    failed(start_failure("instantiation", &e, &s.limits))
                });
            }
        };
        let export = |store: &mut Store<HostState>, e: &ModuleExport| {
            instance.get_module_export(&mut *store, e)
        };
        let memory = export(&mut store, &s.exports.memory).and_then(|e| e.into_memory());
        let funcs = (
            export(&mut store, &s.exports.abi_version).and_then(|e| e.into_func()),
            export(&mut store, &s.exports.alloc).and_then(|e| e.into_func()),
            export(&mut store, &s.exports.init).and_then(|e| e.into_func()),
            export(&mut store, &s.exports.on_request).and_then(|e| e.into_func()),
        );
        let (Some(memory), (Some(version), Some(alloc), Some(init), Some(on_request))) =
            (memory, funcs)
        else {
            return Err(failed(
                "exports vanished after the module check".to_string(),
            ));
        };
        let on_request = match s.abi {
            AbiVersion::V1 => on_request.typed(&store).map(OnRequest::V1),
            AbiVersion::V2 => on_request.typed(&store).map(OnRequest::V2),
        };
        let typed = (
            version.typed::<(), i32>(&store),
            alloc.typed::<i32, i32>(&store),
            init.typed::<(i32, i32), i32>(&store),
            on_request,
        );
        let (Ok(version), Ok(alloc), Ok(init), Ok(on_request)) = typed else {
            return Err(failed(
                "export types changed after the module check".to_string(),
            ));
        };
        store.data_mut().memory = Some(memory);

        if check_abi {
            self.begin_call(&mut store);
            match version.call(&mut store, ()) {
                Ok(found) if found == s.abi.number() => {}
                Ok(found) => {
                    return Err(PluginError::AbiVersion {
                        plugin: s.name.to_string(),
                        found,
                        expected: s.abi.number(),
                    })
                }
                Err(e) => {
                    return Err(failed(start_failure(
                        "portcullis_abi_version",
                        &e,
                        &s.limits,
                    )))
                }
            }
        }

        let mut live = Live {
            store,
            alloc,
            on_request,
        };
        self.begin_call(&mut live.store);
        let cfg_ptr = match self.write_input(&mut live.store, &live.alloc, &s.config_json, "config")
        {
            Ok(p) => p,
            Err((e, _)) => return Err(failed(input_failure("the config", e))),
        };
        let code = match init.call(&mut live.store, (cfg_ptr, len_i32(&s.config_json))) {
            Ok(code) => code,
            Err(e) => return Err(failed(start_failure("portcullis_init", &e, &s.limits))),
        };
        if code != 0 {
            let messages = live
                .store
                .data()
                .captured
                .iter()
                .flatten()
                .filter(|l| l.level <= LogLevel::Warn)
                .map(|l| l.message.clone())
                .collect();
            return Err(PluginError::ConfigRejected {
                plugin: s.name.to_string(),
                code,
                messages,
            });
        }
        Ok(live)
    }

    /// Copies one input into a buffer from `portcullis_alloc`. On failure,
    /// also says whether the instance is still sound.
    fn write_input(
        &self,
        store: &mut Store<HostState>,
        alloc: &TypedFunc<i32, i32>,
        bytes: &[u8],
        what: &str,
    ) -> Result<i32, (PluginError, bool)> {
        let s = &self.shared;
        let len = len_i32(bytes);
        let ptr = match alloc.call(&mut *store, len) {
            Ok(p) => p,
            Err(e) => return Err((self.classify(e, store), false)),
        };
        if ptr == 0 {
            return Err((
                PluginError::MemoryExhausted {
                    plugin: s.name.to_string(),
                    limit: s.limits.memory_bytes,
                },
                true,
            ));
        }
        let Some(memory) = store.data().memory else {
            return Err((
                self.bad(format!("no memory to write the {what} into")),
                false,
            ));
        };
        if memory
            .write(&mut *store, ptr as u32 as usize, bytes)
            .is_err()
        {
            let size = memory.data_size(&*store);
            return Err((
                self.bad(format!(
                    "portcullis_alloc({len}) for the {what} returned {}, a buffer outside its memory ({size} bytes)",
                    ptr as u32
                )),
                false,
            ));
        }
        Ok(ptr)
    }

    fn bad(&self, detail: String) -> PluginError {
        PluginError::BadAnswer {
            plugin: self.shared.name.to_string(),
            detail,
        }
    }

    /// Maps an error out of a guest call to what the operator should read.
    fn classify(&self, err: wasmtime::Error, store: &Store<HostState>) -> PluginError {
        let s = &self.shared;
        let plugin = s.name.to_string();
        if let Some(fault) = err.downcast_ref::<GuestFault>() {
            return PluginError::BadAnswer {
                plugin,
                detail: fault.0.clone(),
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout {
                plugin,
                deadline: s.limits.deadline,
            },
            _ if store.data().cap.refused => PluginError::MemoryExhausted {
                plugin,
                limit: s.limits.memory_bytes,
            },
            Some(trap) => PluginError::Trap {
                plugin,
                detail: trap_text(trap),
            },
            None => PluginError::Trap {
                plugin,
                detail: format!("{err:#}"),
            },
        }
    }

    /// Runs `on_request` once on `live`: v1 gets `claims.json()` and
    /// `request_json` copied in, v2 reads through imports. Returns the
    /// answer and whether the instance may serve another call.
    pub(crate) fn call_on_request(
        &self,
        live: &mut Live,
        claims: &Arc<Claims>,
        req: &RequestMeta<'_>,
        request_json: &[u8],
    ) -> (Answer, bool) {
        let s = &self.shared;
        {
            let state = live.store.data_mut();
            state.call = abi::CallRecord::default();
            state.cap.refused = false;
            if !Arc::ptr_eq(&state.claims, claims) {
                state.claims = Arc::clone(claims);
            }
            if s.reads_request {
                state.request.fill(req, &s.request_headers);
            }
        }
        self.begin_call(&mut live.store);
        let result = match &live.on_request {
            OnRequest::V1(on_request) => {
                let claims_json = claims.json();
                let claims_ptr =
                    match self.write_input(&mut live.store, &live.alloc, claims_json, "claims") {
                        Ok(p) => p,
                        Err((e, keep)) => return (Answer::Failed(e), keep),
                    };
                let request_ptr =
                    match self.write_input(&mut live.store, &live.alloc, request_json, "request") {
                        Ok(p) => p,
                        Err((e, keep)) => return (Answer::Failed(e), keep),
                    };
                live.store.data_mut().in_request = true;
                on_request.call(
                    &mut live.store,
                    (
                        claims_ptr,
                        len_i32(claims_json),
                        request_ptr,
                        len_i32(request_json),
                    ),
                )
            }
            OnRequest::V2(on_request) => {
                live.store.data_mut().in_request = true;
                on_request.call(&mut live.store, ())
            }
        };
        let state = live.store.data_mut();
        state.in_request = false;
        let record = std::mem::take(&mut state.call);
        let code = match result {
            Ok(code) => code,
            Err(e) => return (Answer::Failed(self.classify(e, &live.store)), false),
        };
        let answer = if let Some(detail) = record.violation {
            Answer::Failed(PluginError::PolicyViolation {
                plugin: s.name.to_string(),
                detail,
            })
        } else {
            match (code, record.deny) {
                (0, None) => Answer::Continue(record.changes),
                (0, Some(_)) => Answer::Failed(
                    self.bad("called deny but returned 0 (continue)".to_string()),
                ),
                (1, None) => Answer::Failed(
                    self.bad("returned 1 (denied) without calling deny".to_string()),
                ),
                (1, Some((status @ 400..=499, message))) => Answer::Deny {
                    status: status as u16,
                    message,
                },
                (1, Some((status, _))) => Answer::Failed(self.bad(format!(
                    "denied with status {status}; plugins may only deny with 400..=499"
                ))),
                (code, _) => Answer::Failed(self.bad(format!(
                    "portcullis_on_request returned {code}: the plugin reported an error (see its log lines)"
                ))),
            }
        };
        (answer, true)
    }

    /// The v1 inputs over `limits.max_input_bytes`, if any (v2 copies none).
    fn oversized_input(&self, claims: &Claims, request_json: &[u8]) -> Option<PluginError> {
        let s = &self.shared;
        if s.abi != AbiVersion::V1 {
            return None;
        }
        let cap = s.limits.max_input_bytes;
        [claims.json(), request_json]
            .into_iter()
            .find(|input| input.len() > cap)
            .map(|input| PluginError::InputTooLarge {
                plugin: s.name.to_string(),
                size: input.len(),
                limit: cap,
            })
    }

    /// One invocation as the chain runs it: input caps, an instance per the
    /// isolation mode, `on_request`. `request_json` is the v1 request input
    /// (empty for v2 modules, which read `req` through imports).
    pub(crate) fn invoke(
        &self,
        claims: &Arc<Claims>,
        req: &RequestMeta<'_>,
        request_json: &[u8],
    ) -> Answer {
        if let Some(e) = self.oversized_input(claims, request_json) {
            return Answer::Failed(e);
        }
        match self.shared.isolation {
            Isolation::PerRequest => match self.start(false, false) {
                Ok(mut live) => self.call_on_request(&mut live, claims, req, request_json).0,
                Err(e) => Answer::Failed(e),
            },
            Isolation::Reused => {
                let mut live = match cache::take(&self.shared) {
                    Some(live) => live,
                    None => match self.start(false, false) {
                        Ok(live) => live,
                        Err(e) => return Answer::Failed(e),
                    },
                };
                let (answer, keep) = self.call_on_request(&mut live, claims, req, request_json);
                if keep {
                    cache::put(&self.shared, live);
                }
                answer
            }
        }
    }

    /// Like [`invoke`](Self::invoke) on a fresh, private instance, also
    /// returning the time of the `on_request` call alone and the log lines of
    /// `init` and the call (for `portcullis plugin test`).
    pub(crate) fn invoke_captured(
        &self,
        claims: &Arc<Claims>,
        req: &RequestMeta<'_>,
        request_json: &[u8],
    ) -> (Answer, std::time::Duration, Vec<LogLine>) {
        let mut live = match self.start(false, true) {
            Ok(live) => live,
            Err(e) => return (Answer::Failed(e), std::time::Duration::ZERO, Vec::new()),
        };
        let started = std::time::Instant::now();
        let answer = match self.oversized_input(claims, request_json) {
            Some(e) => Answer::Failed(e),
            None => self.call_on_request(&mut live, claims, req, request_json).0,
        };
        let took = started.elapsed();
        let logs = live.store.data_mut().captured.take().unwrap_or_default();
        (answer, took, logs)
    }
}

/// A trap's description without wasmtime's `wasm trap: ` prefix.
fn trap_text(trap: &Trap) -> String {
    let text = trap.to_string();
    match text.strip_prefix("wasm trap: ") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

fn len_i32(bytes: &[u8]) -> i32 {
    // Inputs are capped far below 2 GiB (limits checked at compile time).
    i32::try_from(bytes.len()).unwrap_or(i32::MAX)
}

/// Why an input could not be handed to the guest, without the plugin prefix.
fn input_failure(what: &str, err: PluginError) -> String {
    match err {
        PluginError::MemoryExhausted { limit, .. } => {
            format!("portcullis_alloc returned 0 (out of memory, limit {limit} bytes) for {what}")
        }
        PluginError::Timeout { deadline, .. } => format!(
            "portcullis_alloc for {what} ran past the {}ms deadline",
            deadline.as_millis()
        ),
        PluginError::Trap { detail, .. } => {
            format!("portcullis_alloc for {what} trapped: {detail}")
        }
        PluginError::BadAnswer { detail, .. } => detail,
        other => other.to_string(),
    }
}

fn start_failure(phase: &str, err: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(fault) = err.downcast_ref::<GuestFault>() {
        return format!("{phase}: {fault}");
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "{phase} ran past the {}ms deadline",
            limits.deadline.as_millis()
        ),
        Some(trap) => format!("{phase} trapped: {}", trap_text(trap)),
        None => format!("{phase} failed: {err:#}"),
    }
}

fn check_limits(limits: &Limits, host: &HostInner) -> Result<(), String> {
    let max_memory = host.config.max_memory_bytes;
    if limits.memory_bytes < 64 << 10 || limits.memory_bytes > max_memory {
        return Err(format!(
            "limits.memory_bytes must be between 65536 (one Wasm page) and {max_memory}, got {}",
            limits.memory_bytes
        ));
    }
    if limits.deadline.is_zero() || limits.deadline > std::time::Duration::from_secs(10) {
        return Err(format!(
            "limits.deadline must be more than 0 and at most 10s, got {:?}",
            limits.deadline
        ));
    }
    if limits.max_input_bytes < 2 || limits.max_input_bytes > 16 << 20 {
        return Err(format!(
            "limits.max_input_bytes must be between 2 and 16777216, got {}",
            limits.max_input_bytes
        ));
    }
    Ok(())
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => describe_func(f),
        ExternType::Memory(_) => "a memory".to_string(),
        ExternType::Table(_) => "a table".to_string(),
        ExternType::Global(_) => "a global".to_string(),
        _ => "an unsupported item".to_string(),
    }
}

fn describe_func(f: &FuncType) -> String {
    let list = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    };
    let params = list(&mut f.params());
    let results: Vec<String> = f.results().map(|v| v.to_string()).collect();
    match results.len() {
        0 => format!("({params}) -> ()"),
        1 => format!("({params}) -> {}", results[0]),
        _ => format!("({params}) -> ({})", results.join(", ")),
    }
}

fn is_i32_func(f: &FuncType, params: usize, returns_i32: bool) -> bool {
    f.params().len() == params
        && f.params().all(|p| matches!(p, ValType::I32))
        && f.results().len() == usize::from(returns_i32)
        && f.results().all(|r| matches!(r, ValType::I32))
}

fn check_imports(plugin: &str, module: &Module) -> Result<(), PluginError> {
    for import in module.imports() {
        let what = format!("{}::{}", import.module(), import.name());
        let expected = abi::IMPORTS
            .iter()
            .find(|(n, ..)| import.module() == abi::IMPORT_MODULE && *n == import.name());
        let Some((_, params, returns, signature)) = expected else {
            return Err(PluginError::UnknownImport {
                plugin: plugin.to_string(),
                import: what,
            });
        };
        let ok = match import.ty() {
            ExternType::Func(f) => is_i32_func(&f, *params, *returns),
            _ => false,
        };
        if !ok {
            return Err(PluginError::WrongType {
                plugin: plugin.to_string(),
                item: format!("import `{what}`"),
                found: describe(&import.ty()),
                expected: signature.to_string(),
            });
        }
    }
    Ok(())
}

fn check_exports(
    plugin: &str,
    module: &Module,
    memory_limit: usize,
) -> Result<(AbiExports, AbiVersion), PluginError> {
    let missing = |export: &str| PluginError::MissingExport {
        plugin: plugin.to_string(),
        export: export.to_string(),
    };
    let wrong = |item: &str, found: String, expected: &str| PluginError::WrongType {
        plugin: plugin.to_string(),
        item: format!("export `{item}`"),
        found,
        expected: expected.to_string(),
    };
    let memory_ty = module
        .exports()
        .find(|e| e.name() == "memory")
        .map(|e| e.ty())
        .ok_or_else(|| missing("memory"))?;
    match &memory_ty {
        ExternType::Memory(m) if !m.is_64() && !m.is_shared() => {
            let initial = m.minimum().saturating_mul(m.page_size());
            if initial > memory_limit as u64 {
                return Err(PluginError::InvalidSpec {
                    plugin: plugin.to_string(),
                    detail: format!(
                        "the module's initial memory is {initial} bytes, more than limits.memory_bytes ({memory_limit})"
                    ),
                });
            }
        }
        ExternType::Memory(_) => {
            return Err(wrong(
                "memory",
                "a 64-bit or shared memory".to_string(),
                "a 32-bit unshared memory",
            ))
        }
        other => return Err(wrong("memory", describe(other), "a memory")),
    }
    for (name, params) in FUNC_EXPORTS {
        let ty = module
            .exports()
            .find(|e| e.name() == *name)
            .map(|e| e.ty())
            .ok_or_else(|| missing(name))?;
        let expected = match params {
            0 => "() -> i32",
            1 => "(i32) -> i32",
            _ => "(i32, i32) -> i32",
        };
        match &ty {
            ExternType::Func(f) if is_i32_func(f, *params, true) => {}
            other => return Err(wrong(name, describe(other), expected)),
        }
    }
    let on_request = "portcullis_on_request";
    let abi = match module
        .exports()
        .find(|e| e.name() == on_request)
        .map(|e| e.ty())
        .ok_or_else(|| missing(on_request))?
    {
        ExternType::Func(f) if is_i32_func(&f, 4, true) => AbiVersion::V1,
        ExternType::Func(f) if is_i32_func(&f, 0, true) => AbiVersion::V2,
        other => {
            return Err(wrong(
                on_request,
                describe(&other),
                "() -> i32 (ABI v2) or (i32, i32, i32, i32) -> i32 (ABI v1)",
            ))
        }
    };
    let index = |name: &str| module.get_export_index(name).ok_or_else(|| missing(name));
    let exports = AbiExports {
        memory: index("memory")?,
        abi_version: index("portcullis_abi_version")?,
        alloc: index("portcullis_alloc")?,
        init: index("portcullis_init")?,
        on_request: index(on_request)?,
    };
    Ok((exports, abi))
}
