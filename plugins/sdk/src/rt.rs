//! Export glue behind [`plugin!`](crate::plugin): input buffers handed to
//! the host by `portcullis_alloc`, and the `init`/`on_request` drivers.
//!
//! Ownership (ABI v1): every buffer returned by `portcullis_alloc` stays owned
//! by the guest. The SDK remembers it in [`Inputs`] and frees **all**
//! outstanding buffers at the end of the next `portcullis_init` or
//! `portcullis_on_request`, including buffers the host allocated and then
//! abandoned (e.g. because a later `alloc` failed). So an instance reused for
//! millions of requests does not grow.

use crate::host::{apply, Host, Level, Outcome};
use crate::json::{self, Value};
use crate::request::Request;

/// Buffers handed out by `portcullis_alloc` and not yet reclaimed.
#[derive(Debug, Default)]
pub struct Inputs {
    /// (address, capacity) of each outstanding allocation.
    live: Vec<(usize, usize)>,
}

impl Inputs {
    /// No outstanding buffers.
    pub const fn new() -> Inputs {
        Inputs { live: Vec::new() }
    }

    /// Allocates `len` writable bytes; `None` when out of memory. A zero
    /// length yields a dangling, non-null, well-aligned address that needs
    /// no freeing.
    pub fn alloc(&mut self, len: usize) -> Option<*mut u8> {
        let mut buf: Vec<u8> = Vec::new();
        if buf.try_reserve_exact(len).is_err() {
            return None;
        }
        // Record first, so a failure to grow `live` cannot leak `buf`.
        if self.live.try_reserve(1).is_err() {
            return None;
        }
        let ptr = buf.as_mut_ptr();
        let cap = buf.capacity();
        if cap > 0 {
            std::mem::forget(buf);
            self.live.push((ptr as usize, cap));
        }
        Some(ptr)
    }

    /// The bytes at `ptr..ptr+len`, if that range lies inside one outstanding
    /// buffer (a zero length is always an empty slice). Anything else means
    /// the host broke the ABI.
    ///
    /// # Safety
    /// The host must have written all `len` bytes there (ABI contract: it
    /// copies the whole input before calling `init`/`on_request`).
    pub unsafe fn get(&self, ptr: usize, len: usize) -> Option<&[u8]> {
        if len == 0 {
            return Some(&[]);
        }
        let end = ptr.checked_add(len)?;
        if self.live.iter().any(|&(p, cap)| ptr >= p && end <= p + cap) {
            // SAFETY: the range is inside a live allocation of ours, and the
            // caller guarantees the host initialised it.
            Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
        } else {
            None
        }
    }

    /// Frees every outstanding buffer.
    pub fn release_all(&mut self) {
        for (ptr, cap) in self.live.drain(..) {
            // SAFETY: (ptr, cap) came from a forgotten Vec<u8> with this
            // capacity; length 0 means nothing is dropped but the allocation.
            unsafe { drop(Vec::from_raw_parts(ptr as *mut u8, 0, cap)) }
        }
    }

    /// How many buffers are outstanding (for tests).
    pub fn outstanding(&self) -> usize {
        self.live.len()
    }
}

/// Runs a plugin's `init` on the config bytes. Returns the ABI code (0 ok,
/// 1 rejected, logged) and the config on success.
pub fn run_init<C, H: Host + ?Sized>(
    cfg: Option<&[u8]>,
    init: fn(&Value) -> Result<C, String>,
    host: &mut H,
) -> (i32, Option<C>) {
    let bytes = match cfg {
        Some(b) => b,
        None => {
            host.log(
                Level::Error,
                "init: config pointer/length not from portcullis_alloc",
            );
            return (1, None);
        }
    };
    let value = match json::parse(bytes) {
        Ok(v) => v,
        Err(e) => {
            host.log(Level::Error, &format!("config rejected: {}", e));
            return (1, None);
        }
    };
    match init(&value) {
        Ok(c) => (0, Some(c)),
        Err(msg) => {
            host.log(Level::Error, &format!("config rejected: {}", msg));
            (1, None)
        }
    }
}

/// Runs a plugin's `on_request`: parses the claims (must be an object) and
/// the request, calls the plugin and applies its [`Outcome`]. Returns the
/// ABI code (0 continue, 1 deny, 2 error).
pub fn run_on_request<C>(
    cfg: Option<&C>,
    claims: Option<&[u8]>,
    req: Option<&[u8]>,
    on_request: fn(&C, &Value, &Request) -> Outcome,
    host: &mut dyn Host,
) -> i32 {
    let outcome = match prepare(cfg, claims, req) {
        Ok((cfg, claims, req)) => on_request(cfg, &claims, &req),
        Err(e) => Outcome::Error(e),
    };
    apply(outcome, host)
}

fn prepare<'c, C>(
    cfg: Option<&'c C>,
    claims: Option<&[u8]>,
    req: Option<&[u8]>,
) -> Result<(&'c C, Value, Request), String> {
    let cfg = cfg.ok_or_else(|| "on_request called before a successful init".to_string())?;
    let claims = claims
        .ok_or_else(|| "on_request: claims pointer/length not from portcullis_alloc".to_string())?;
    let req = req.ok_or_else(|| {
        "on_request: request pointer/length not from portcullis_alloc".to_string()
    })?;
    let claims = json::parse(claims).map_err(|e| format!("claims: {}", e))?;
    if claims.as_object().is_none() {
        return Err(format!(
            "claims must be a JSON object, got {}",
            claims.type_name()
        ));
    }
    let req = json::parse(req).map_err(|e| format!("request: {}", e))?;
    let req = Request::from_json(&req)?;
    Ok((cfg, claims, req))
}

/// A global for single-threaded wasm32 instances (wasm32-unknown-unknown has
/// no threads; the host calls an instance from one thread at a time).
#[cfg(target_arch = "wasm32")]
pub struct Global<T>(std::cell::UnsafeCell<T>);

// SAFETY: wasm32-unknown-unknown without the atomics feature is single-threaded.
#[cfg(target_arch = "wasm32")]
unsafe impl<T> Sync for Global<T> {}

#[cfg(target_arch = "wasm32")]
impl<T> Global<T> {
    /// Wraps an initial value.
    pub const fn new(v: T) -> Global<T> {
        Global(std::cell::UnsafeCell::new(v))
    }

    /// Mutable access.
    ///
    /// # Safety
    /// No other reference obtained from this global may be alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusivity is the caller's promise.
        unsafe { &mut *self.0.get() }
    }
}

#[cfg(target_arch = "wasm32")]
static INPUTS: Global<Inputs> = Global::new(Inputs::new());

#[cfg(target_arch = "wasm32")]
fn buffer(inputs: &Inputs, ptr: i32, len: i32) -> Option<&[u8]> {
    if len < 0 {
        return None;
    }
    // SAFETY: ABI contract: the host wrote `len` bytes at `ptr`; `get` checks
    // the range lies in a buffer we handed out.
    unsafe { inputs.get(ptr as u32 as usize, len as u32 as usize) }
}

/// Frees every outstanding input buffer (wasm32 only). ABI v2 copies
/// nothing per request; the v2 `on_request` calls this anyway so a buffer a
/// host allocated and abandoned cannot accumulate.
#[cfg(target_arch = "wasm32")]
pub fn release_inputs() {
    // SAFETY: single-threaded; no other borrow of INPUTS is alive here.
    unsafe { INPUTS.get() }.release_all();
}

/// `portcullis_alloc` body (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub fn wasm_alloc(len: i32) -> i32 {
    if len < 0 {
        return 0;
    }
    // SAFETY: single-threaded; no other borrow of INPUTS is alive here.
    let inputs = unsafe { INPUTS.get() };
    match inputs.alloc(len as u32 as usize) {
        Some(p) => p as usize as i32,
        None => 0,
    }
}

/// `portcullis_init` body (wasm32 only): installs a panic hook that logs the
/// panic message before the trap, runs `init`, stores the config, frees inputs.
#[cfg(target_arch = "wasm32")]
pub fn wasm_init<C>(
    state: &Global<Option<C>>,
    ptr: i32,
    len: i32,
    init: fn(&Value) -> Result<C, String>,
) -> i32 {
    std::panic::set_hook(Box::new(|info| {
        crate::host::log(Level::Error, &format!("plugin panicked: {}", info));
    }));
    // SAFETY: single-threaded; these are the only live borrows of the globals.
    let (inputs, state) = unsafe { (INPUTS.get(), state.get()) };
    let (code, cfg) = run_init(buffer(inputs, ptr, len), init, &mut crate::host::WasmHost);
    *state = cfg;
    inputs.release_all();
    code
}

/// `portcullis_on_request` body (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub fn wasm_on_request<C>(
    state: &Global<Option<C>>,
    claims_ptr: i32,
    claims_len: i32,
    req_ptr: i32,
    req_len: i32,
    on_request: fn(&C, &Value, &Request) -> Outcome,
) -> i32 {
    // SAFETY: single-threaded; these are the only live borrows of the globals.
    let (inputs, state) = unsafe { (INPUTS.get(), state.get()) };
    let code = run_on_request(
        state.as_ref(),
        buffer(inputs, claims_ptr, claims_len),
        buffer(inputs, req_ptr, req_len),
        on_request,
        &mut crate::host::WasmHost,
    );
    inputs.release_all();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HeaderChange, HostCall, RecordingHost};

    #[test]
    fn inputs_are_tracked_checked_and_released() {
        let mut inputs = Inputs::new();
        let a = inputs.alloc(10).unwrap();
        let b = inputs.alloc(3).unwrap();
        assert_eq!(inputs.outstanding(), 2);
        unsafe {
            std::ptr::copy_nonoverlapping(b"hello json".as_ptr(), a, 10);
            std::ptr::copy_nonoverlapping(b"abc".as_ptr(), b, 3);
            assert_eq!(inputs.get(a as usize, 10), Some(&b"hello json"[..]));
            assert_eq!(inputs.get(a as usize + 6, 4), Some(&b"json"[..]));
            assert_eq!(inputs.get(b as usize, 3), Some(&b"abc"[..]));
            assert_eq!(inputs.get(a as usize, 11), None);
            assert_eq!(inputs.get(12345, 1), None);
            assert_eq!(inputs.get(usize::MAX, 2), None);
            assert_eq!(inputs.get(0, 0), Some(&b""[..]));
        }
        let z = inputs.alloc(0).unwrap();
        assert!(!z.is_null());
        assert_eq!(inputs.outstanding(), 2);
        inputs.release_all();
        assert_eq!(inputs.outstanding(), 0);
        unsafe { assert_eq!(inputs.get(a as usize, 1), None) };
    }

    #[test]
    fn huge_allocation_fails_cleanly() {
        let mut inputs = Inputs::new();
        assert!(inputs.alloc(usize::MAX).is_none());
        assert_eq!(inputs.outstanding(), 0);
    }

    fn init_ok(v: &Value) -> Result<String, String> {
        match v.get("name").and_then(Value::as_str) {
            Some(s) => Ok(s.to_string()),
            None => Err("needs name".into()),
        }
    }

    #[allow(clippy::ptr_arg)] // the config type is String, so the plugin gets &String
    fn echo(cfg: &String, claims: &Value, req: &Request) -> Outcome {
        match claims.get("sub").and_then(Value::as_str) {
            Some(sub) => Outcome::Continue(vec![HeaderChange::set(
                cfg.clone(),
                format!("{} {}", sub, req.path),
            )]),
            None => Outcome::deny(401, "no sub"),
        }
    }

    #[test]
    fn init_accepts_and_rejects_with_a_log() {
        let mut h = RecordingHost::default();
        assert_eq!(
            run_init(Some(br#"{"name":"x-n"}"#), init_ok, &mut h),
            (0, Some("x-n".to_string()))
        );
        assert!(h.calls.is_empty());
        let (code, cfg) = run_init(Some(b"{}"), init_ok, &mut h);
        assert_eq!((code, cfg), (1, None));
        assert!(
            matches!(&h.calls[0], HostCall::Log(Level::Error, m) if m == "config rejected: needs name")
        );
        assert_eq!(run_init(Some(b"{"), init_ok, &mut h).0, 1);
        assert_eq!(run_init(None, init_ok, &mut h).0, 1);
    }

    #[test]
    fn on_request_drives_the_plugin() {
        let cfg = "x-n".to_string();
        let req = br#"{"method":"GET","path":"/p","query":"","host":"h","headers":{}}"#;
        let mut h = RecordingHost::default();
        assert_eq!(
            run_on_request(
                Some(&cfg),
                Some(br#"{"sub":"u1"}"#),
                Some(req),
                echo,
                &mut h
            ),
            0
        );
        assert_eq!(
            h.calls,
            vec![HostCall::Header(HeaderChange::set("x-n", "u1 /p"))]
        );

        let mut h = RecordingHost::default();
        assert_eq!(
            run_on_request(Some(&cfg), Some(b"{}"), Some(req), echo, &mut h),
            1
        );
        assert_eq!(h.calls, vec![HostCall::Deny(401, "no sub".into())]);
    }

    #[test]
    fn on_request_errors_are_code_two() {
        let cfg = "x".to_string();
        let req: &[u8] = br#"{"method":"GET","path":"/"}"#;
        type Case<'a> = (Option<&'a String>, Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: Vec<Case> = vec![
            (None, Some(b"{}"), Some(req)),
            (Some(&cfg), Some(b"[]"), Some(req)),
            (Some(&cfg), Some(b"{"), Some(req)),
            (Some(&cfg), Some(b"{}"), Some(b"{}")),
            (Some(&cfg), None, Some(req)),
            (Some(&cfg), Some(b"{}"), None),
        ];
        for (c, claims, r) in cases {
            let mut h = RecordingHost::default();
            assert_eq!(run_on_request(c, claims, r, echo, &mut h), 2);
            assert!(matches!(&h.calls[..], [HostCall::Log(Level::Error, _)]));
        }
    }
}
