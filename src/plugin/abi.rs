//! ABI v1 host side: the five `portcullis` imports, the per-instance state
//! they write into, and the memory cap.
//!
//! Every import bounds-checks the guest's `(ptr, len)` pairs; a range outside
//! the guest's memory traps with a [`GuestFault`] (never a host panic), which
//! the caller reports as a bad answer and answers by discarding the instance.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::HeaderName;
use wasmtime::{Caller, Engine, Linker, Memory, ResourceLimiter};

use super::clock::CallClock;
use super::headers::{self, Rejection};
use super::request::RequestView;
use super::HeaderChange;
use crate::claims::Claims;

/// Import module name of ABI v1.
pub(crate) const IMPORT_MODULE: &str = "portcullis";

/// Longest `deny` message kept, in bytes.
pub(crate) const MAX_DENY_MESSAGE_BYTES: usize = 1024;
/// Longest `log` message kept, in bytes.
pub(crate) const MAX_LOG_MESSAGE_BYTES: usize = 1024;
/// Log lines per plugin per second; further lines are dropped and counted.
pub(crate) const LOG_LINES_PER_SECOND: u32 = 20;
/// Log lines kept for the caller when capturing (init at load, `plugin test`).
const MAX_CAPTURED_LOG_LINES: usize = 64;

/// Level of a `log` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// 0 (and anything below).
    Error,
    /// 1.
    Warn,
    /// 2.
    Info,
    /// 3 (and anything above).
    Debug,
}

impl LogLevel {
    fn from_abi(level: i32) -> LogLevel {
        match level {
            i32::MIN..=0 => LogLevel::Error,
            1 => LogLevel::Warn,
            2 => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }

    /// `error`, `warn`, `info` or `debug`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// One line a plugin logged (kept when the caller asked to capture them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Level the guest gave.
    pub level: LogLevel,
    /// The message: invalid UTF-8 replaced, truncated to 1 KiB.
    pub message: String,
}

/// A guest broke the memory contract of an import (range outside memory,
/// import called outside `on_request`). Raised as the trap's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestFault(pub(crate) String);

impl std::fmt::Display for GuestFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GuestFault {}

/// What is fixed for every instance of one compiled plugin.
pub(crate) struct Policy {
    pub(crate) name: Arc<str>,
    pub(crate) allow: Vec<HeaderName>,
    /// Request headers the plugin may read (`request_headers`).
    pub(crate) request_headers: Vec<HeaderName>,
    pub(crate) memory_limit: usize,
    logs: LogRateLimit,
    /// Budget for the host's own warnings about this plugin's failures.
    pub(crate) failure_logs: LogRateLimit,
}

impl Policy {
    pub(crate) fn new(
        name: Arc<str>,
        allow: Vec<HeaderName>,
        request_headers: Vec<HeaderName>,
        memory_limit: usize,
    ) -> Policy {
        Policy {
            name,
            allow,
            request_headers,
            memory_limit,
            logs: LogRateLimit::new(),
            failure_logs: LogRateLimit::new(),
        }
    }
}

/// Per-plugin (all instances, all threads) log budget per one-second window.
pub(crate) struct LogRateLimit {
    start: Instant,
    window: AtomicU64,
    lines: AtomicU32,
    dropped: AtomicU64,
}

impl LogRateLimit {
    fn new() -> LogRateLimit {
        LogRateLimit {
            start: Instant::now(),
            window: AtomicU64::new(0),
            lines: AtomicU32::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now, plus how many were dropped in the
    /// previous window (reported once, by whoever opens the new window).
    pub(crate) fn admit(&self) -> (bool, u64) {
        let now = self.start.elapsed().as_secs();
        let mut dropped_before = 0;
        let seen = self.window.load(Ordering::Relaxed);
        if now != seen
            && self
                .window
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.lines.store(0, Ordering::Relaxed);
            dropped_before = self.dropped.swap(0, Ordering::Relaxed);
        }
        if self.lines.fetch_add(1, Ordering::Relaxed) < LOG_LINES_PER_SECOND {
            (true, dropped_before)
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            (false, dropped_before)
        }
    }
}

/// Linear-memory cap of one instance. Growth beyond it makes `memory.grow`
/// return -1; the refusal is remembered so a trap that follows is reported
/// as memory exhaustion rather than a generic trap.
pub(crate) struct MemoryCap {
    limit: usize,
    pub(crate) refused: bool,
}

/// Table elements an instance may have (Rust and C modules need a few
/// hundred for indirect calls).
const MAX_TABLE_ELEMENTS: usize = 20_000;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// What one `on_request` call produced through the imports.
#[derive(Default)]
pub(crate) struct CallRecord {
    pub(crate) changes: Vec<HeaderChange>,
    pub(crate) deny: Option<(i32, String)>,
    /// First refused (1) or invalid (2) header write: voids the invocation.
    pub(crate) violation: Option<String>,
}

/// The `T` of every plugin `Store`.
pub(crate) struct HostState {
    pub(crate) policy: Arc<Policy>,
    pub(crate) memory: Option<Memory>,
    pub(crate) cap: MemoryCap,
    /// Header calls and `deny` are valid only while this is set.
    pub(crate) in_request: bool,
    pub(crate) call: CallRecord,
    /// When set, log lines are also kept here (bounded).
    pub(crate) captured: Option<Vec<LogLine>>,
    /// The claims of the current call (kept until a call with other claims
    /// replaces them, so a repeated token costs no reference counting).
    pub(crate) claims: Arc<Claims>,
    /// The request of the current call, for the `request_*` imports (filled
    /// only for modules that import one of them).
    pub(crate) request: RequestView,
    /// Rendering buffer of the read imports, kept between calls.
    pub(crate) scratch: Vec<u8>,
    /// CPU-time budget of the current call.
    pub(crate) clock: CallClock,
}

impl HostState {
    pub(crate) fn new(policy: Arc<Policy>, capture_logs: bool) -> HostState {
        let limit = policy.memory_limit;
        HostState {
            policy,
            memory: None,
            cap: MemoryCap {
                limit,
                refused: false,
            },
            in_request: false,
            call: CallRecord::default(),
            captured: capture_logs.then(Vec::new),
            claims: Claims::empty(),
            request: RequestView::default(),
            scratch: Vec::new(),
            clock: CallClock::default(),
        }
    }
}

/// The linker offering ABI v1's imports (`abi_v2::define` adds v2's).
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        IMPORT_MODULE,
        "set_header",
        |mut caller: Caller<'_, HostState>, np: i32, nl: i32, vp: i32, vl: i32| {
            header_call(&mut caller, Write::Set, np, nl, Some((vp, vl)))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "append_header",
        |mut caller: Caller<'_, HostState>, np: i32, nl: i32, vp: i32, vl: i32| {
            header_call(&mut caller, Write::Append, np, nl, Some((vp, vl)))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "remove_header",
        |mut caller: Caller<'_, HostState>, np: i32, nl: i32| {
            header_call(&mut caller, Write::Remove, np, nl, None)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "deny",
        |mut caller: Caller<'_, HostState>, status: i32, mp: i32, ml: i32| {
            deny_call(&mut caller, status, mp, ml)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, level: i32, mp: i32, ml: i32| {
            log_call(&mut caller, level, mp, ml)
        },
    )?;
    Ok(linker)
}

/// Names, parameter counts (all i32), whether they return an i32, and the
/// signature text of every import (v1's five, then v2's), for the load-time
/// check and its messages.
pub(crate) const IMPORTS: &[(&str, usize, bool, &str)] = &[
    ("set_header", 4, true, "(i32, i32, i32, i32) -> i32"),
    ("append_header", 4, true, "(i32, i32, i32, i32) -> i32"),
    ("remove_header", 2, true, "(i32, i32) -> i32"),
    ("deny", 3, false, "(i32, i32, i32) -> ()"),
    ("log", 3, false, "(i32, i32, i32) -> ()"),
    ("claim", 4, true, "(i32, i32, i32, i32) -> i32"),
    ("claim_kind", 2, true, "(i32, i32) -> i32"),
    ("claim_count", 2, true, "(i32, i32) -> i32"),
    ("request_field", 3, true, "(i32, i32, i32) -> i32"),
    ("request_header", 4, true, "(i32, i32, i32, i32) -> i32"),
    ("claims_json", 2, true, "(i32, i32) -> i32"),
    ("request_json", 2, true, "(i32, i32) -> i32"),
    ("header_batch", 2, true, "(i32, i32) -> i32"),
];

/// Imports that read the request: the host copies the request for a call
/// only when the module imports one of them.
pub(crate) const REQUEST_READERS: &[&str] = &["request_field", "request_header", "request_json"];

#[derive(Clone, Copy)]
pub(crate) enum Write {
    Set,
    Append,
    Remove,
}

impl Write {
    pub(crate) fn import(self) -> &'static str {
        match self {
            Write::Set => "set_header",
            Write::Append => "append_header",
            Write::Remove => "remove_header",
        }
    }
}

pub(crate) fn fault(msg: String) -> wasmtime::Error {
    wasmtime::Error::new(GuestFault(msg))
}

/// The guest bytes at `(ptr, len)`, both unsigned, or a fault naming `what`.
pub(crate) fn guest_range(
    memory: &[u8],
    ptr: i32,
    len: i32,
    what: impl std::fmt::Display,
) -> wasmtime::Result<&[u8]> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    start
        .checked_add(len)
        .and_then(|end| memory.get(start..end))
        .ok_or_else(|| {
            fault(format!(
                "{what}: range {start}+{len} is outside the guest memory ({} bytes)",
                memory.len()
            ))
        })
}

pub(crate) fn guest_memory(
    caller: &Caller<'_, HostState>,
    import: &str,
) -> wasmtime::Result<Memory> {
    caller.data().memory.ok_or_else(|| {
        fault(format!(
            "`{import}` called before the instance finished starting"
        ))
    })
}

fn header_call(
    caller: &mut Caller<'_, HostState>,
    write: Write,
    name_ptr: i32,
    name_len: i32,
    value: Option<(i32, i32)>,
) -> wasmtime::Result<i32> {
    let import = write.import();
    let (data, state) = request_memory(caller, import)?;
    record_write(data, state, write, name_ptr, name_len, value, import)
}

/// The guest memory and host state of a call made during
/// `portcullis_on_request`; a fault anywhere else.
pub(crate) fn request_memory<'c>(
    caller: &'c mut Caller<'_, HostState>,
    import: &str,
) -> wasmtime::Result<(&'c mut [u8], &'c mut HostState)> {
    if !caller.data().in_request {
        return Err(fault(format!(
            "`{import}` called outside portcullis_on_request"
        )));
    }
    let memory = guest_memory(caller, import)?;
    Ok(memory.data_and_store_mut(caller))
}

/// Checks one header write and records it, or records the first violation
/// (which voids the invocation). Answers the ABI code: 0 accepted, 1
/// refused, 2 invalid. `what` names the call in the violation.
pub(crate) fn record_write(
    data: &[u8],
    state: &mut HostState,
    write: Write,
    name_ptr: i32,
    name_len: i32,
    value: Option<(i32, i32)>,
    what: impl std::fmt::Display + Copy,
) -> wasmtime::Result<i32> {
    let attempt = (|| -> wasmtime::Result<Result<HeaderChange, Rejection>> {
        // Order fixed by the ABI: name validity (2), allow-list (1), value (2).
        // Over-long lengths are refused before reading, so a huge length is
        // "invalid" rather than an out-of-bounds fault.
        let name_len_bytes = name_len as u32 as usize;
        if name_len_bytes > headers::MAX_HEADER_NAME_BYTES {
            return Ok(Err(Rejection::Invalid(format!(
                "header name of {name_len_bytes} bytes (limit {})",
                headers::MAX_HEADER_NAME_BYTES
            ))));
        }
        let name_bytes = guest_range(data, name_ptr, name_len, what)?;
        // An allow-listed name (valid and never forbidden, checked at load)
        // is shared, not parsed and allocated again on every write.
        let listed = state
            .policy
            .allow
            .iter()
            .find(|a| a.as_str().as_bytes().eq_ignore_ascii_case(name_bytes));
        let name = match listed {
            Some(name) => name.clone(),
            None => {
                let name = match headers::parse_name(name_bytes) {
                    Ok(n) => n,
                    Err(r) => return Ok(Err(r)),
                };
                if let Err(r) = headers::check_allowed(&name, &state.policy.allow) {
                    return Ok(Err(r));
                }
                name
            }
        };
        let Some((value_ptr, value_len)) = value else {
            return Ok(Ok(HeaderChange::Remove(name)));
        };
        let value_len = value_len as u32 as usize;
        if value_len > headers::MAX_HEADER_VALUE_BYTES {
            return Ok(Err(Rejection::Invalid(format!(
                "value for `{name}` is {value_len} bytes (limit {})",
                headers::MAX_HEADER_VALUE_BYTES
            ))));
        }
        let value_bytes = guest_range(data, value_ptr, value_len as i32, what)?;
        if std::str::from_utf8(value_bytes).is_err() {
            return Ok(Err(Rejection::Invalid(format!(
                "value for `{name}` is not valid UTF-8"
            ))));
        }
        let value = match headers::parse_value(&name, value_bytes) {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        };
        Ok(Ok(match write {
            Write::Set => HeaderChange::Set(name, value),
            Write::Append => HeaderChange::Append(name, value),
            Write::Remove => HeaderChange::Remove(name),
        }))
    })()?;
    match attempt {
        Ok(change) => {
            state.call.changes.push(change);
            Ok(0)
        }
        Err(rejection) => Ok(record_violation(state, what, rejection)),
    }
}

/// Keeps the first violation of the call and answers its ABI code.
pub(crate) fn record_violation(
    state: &mut HostState,
    what: impl std::fmt::Display,
    rejection: Rejection,
) -> i32 {
    let code = rejection.code();
    if state.call.violation.is_none() {
        state.call.violation = Some(format!("{what}: {}", rejection.into_detail()));
    }
    code
}

fn deny_call(
    caller: &mut Caller<'_, HostState>,
    status: i32,
    msg_ptr: i32,
    msg_len: i32,
) -> wasmtime::Result<()> {
    if !caller.data().in_request {
        return Err(fault(
            "`deny` called outside portcullis_on_request".to_string(),
        ));
    }
    let memory = guest_memory(caller, "deny")?;
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    let kept = (msg_len as u32 as usize).min(MAX_DENY_MESSAGE_BYTES);
    let bytes = guest_range(data, msg_ptr, kept as i32, "deny")?;
    // The last deny wins (ABI v1); its status is checked when the call ends.
    state.call.deny = Some((status, truncated_text(bytes)));
    Ok(())
}

fn log_call(
    caller: &mut Caller<'_, HostState>,
    level: i32,
    msg_ptr: i32,
    msg_len: i32,
) -> wasmtime::Result<()> {
    let memory = guest_memory(caller, "log")?;
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    let kept = (msg_len as u32 as usize).min(MAX_LOG_MESSAGE_BYTES);
    let bytes = guest_range(data, msg_ptr, kept as i32, "log")?;
    let level = LogLevel::from_abi(level);
    let message = truncated_text(bytes);
    let plugin = &*state.policy.name;
    let (admitted, dropped) = state.policy.logs.admit();
    if dropped > 0 {
        tracing::warn!(
            target: "portcullis::plugin",
            plugin,
            dropped,
            "plugin log lines dropped (rate limit {LOG_LINES_PER_SECOND}/s)"
        );
    }
    if admitted {
        match level {
            LogLevel::Error => tracing::error!(target: "portcullis::plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "portcullis::plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "portcullis::plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "portcullis::plugin", plugin, "{message}"),
        }
    }
    if let Some(lines) = state.captured.as_mut() {
        if lines.len() < MAX_CAPTURED_LOG_LINES {
            lines.push(LogLine { level, message });
        }
    }
    Ok(())
}

/// Guest text as a `String`: invalid UTF-8 replaced; the caller has already
/// cut it to its byte limit, so a split multi-byte character at the end
/// becomes one replacement character.
fn truncated_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ranges_are_bounds_checked_as_unsigned() {
        let mem = [1u8, 2, 3, 4];
        assert_eq!(guest_range(&mem, 1, 2, "t").unwrap(), &[2, 3]);
        assert_eq!(guest_range(&mem, 4, 0, "t").unwrap(), &[] as &[u8]);
        assert!(guest_range(&mem, 3, 2, "t").is_err());
        assert!(guest_range(&mem, -1, 1, "t").is_err());
        assert!(guest_range(&mem, 0, -1, "t").is_err());
        let err = guest_range(&mem, 5, 1, "set_header").unwrap_err();
        assert!(err.downcast_ref::<GuestFault>().is_some());
    }

    #[test]
    fn log_levels_clamp() {
        assert_eq!(LogLevel::from_abi(-5), LogLevel::Error);
        assert_eq!(LogLevel::from_abi(0), LogLevel::Error);
        assert_eq!(LogLevel::from_abi(1), LogLevel::Warn);
        assert_eq!(LogLevel::from_abi(2), LogLevel::Info);
        assert_eq!(LogLevel::from_abi(3), LogLevel::Debug);
        assert_eq!(LogLevel::from_abi(99), LogLevel::Debug);
    }

    #[test]
    fn log_budget_drops_and_counts_lines_beyond_the_rate() {
        let limit = LogRateLimit::new();
        let admitted = (0..LOG_LINES_PER_SECOND + 5)
            .filter(|_| limit.admit().0)
            .count();
        // All in one window unless the second rolled over meanwhile, in
        // which case more were admitted; never fewer than the budget.
        assert!(admitted >= LOG_LINES_PER_SECOND as usize);
        if admitted == LOG_LINES_PER_SECOND as usize {
            assert_eq!(limit.dropped.load(Ordering::Relaxed), 5);
        }
    }

    #[test]
    fn long_deny_text_is_cut_and_made_valid_utf8() {
        assert_eq!(truncated_text(b"ok"), "ok");
        assert_eq!(truncated_text(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        // "é" is two bytes; cut after the first.
        assert_eq!(truncated_text(&"é".as_bytes()[..1]), "\u{fffd}");
    }
}
