//! Calls into the host: raw imports ([`ffi`], wasm32 only), safe wrappers,
//! and the [`Host`] trait through which the SDK applies an [`Outcome`] so
//! the same code can be exercised on the host with a [`RecordingHost`].

use std::fmt;

/// Log levels of the `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// 0: something is wrong (rejected config, refused header, …).
    Error = 0,
    /// 1: suspicious but handled.
    Warn = 1,
    /// 2: informational.
    Info = 2,
    /// 3: verbose diagnostics.
    Debug = 3,
}

/// One header change toward the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Set the header, replacing every existing value.
    Set {
        /// Header name (any case).
        name: String,
        /// Value: no CR/LF/NUL, at most 8 KiB.
        value: String,
    },
    /// Add one more value, keeping existing ones.
    Append {
        /// Header name (any case).
        name: String,
        /// Value: no CR/LF/NUL, at most 8 KiB.
        value: String,
    },
    /// Remove every value of the header.
    Remove {
        /// Header name (any case).
        name: String,
    },
}

impl HeaderChange {
    /// `Set { name, value }`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> HeaderChange {
        HeaderChange::Set {
            name: name.into(),
            value: value.into(),
        }
    }

    /// `Append { name, value }`.
    pub fn append(name: impl Into<String>, value: impl Into<String>) -> HeaderChange {
        HeaderChange::Append {
            name: name.into(),
            value: value.into(),
        }
    }

    /// `Remove { name }`.
    pub fn remove(name: impl Into<String>) -> HeaderChange {
        HeaderChange::Remove { name: name.into() }
    }

    /// The header name this change touches.
    pub fn name(&self) -> &str {
        match self {
            HeaderChange::Set { name, .. }
            | HeaderChange::Append { name, .. }
            | HeaderChange::Remove { name } => name,
        }
    }
}

/// What a plugin decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Let the request through, applying these header changes in order
    /// (`on_request` returns 0). Changes only take effect if all are accepted.
    Continue(Vec<HeaderChange>),
    /// Stop the chain and answer the client (`deny` import, return 1).
    /// `status` must be 400..=499; anything else becomes a plugin error.
    Deny {
        /// HTTP status, 400..=499.
        status: u16,
        /// Message for the client.
        message: String,
    },
    /// Something went wrong (logged at level error, return 2); the host
    /// fails closed or skips the plugin as configured.
    Error(String),
}

impl Outcome {
    /// `Continue` without header changes.
    pub fn pass() -> Outcome {
        Outcome::Continue(Vec::new())
    }

    /// `Deny { status, message }`.
    pub fn deny(status: u16, message: impl Into<String>) -> Outcome {
        Outcome::Deny {
            status,
            message: message.into(),
        }
    }
}

/// `on_request` return value: continue.
pub const RET_CONTINUE: i32 = 0;
/// `on_request` return value: denied (after a `deny` call).
pub const RET_DENY: i32 = 1;
/// `on_request` return value used by the SDK for plugin errors (any value
/// other than 0 and 1 is an error to the host); `init` uses 1 for "rejected".
pub const RET_ERROR: i32 = 2;

/// Why the host refused a header call (its nonzero answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// 1: the header is not on the plugin's allow-list, or is forbidden.
    NotAllowed,
    /// 2: invalid name or value.
    Invalid,
    /// Any other nonzero answer (reserved by the ABI).
    Other(i32),
}

impl HeaderError {
    /// Maps a host answer to `Ok(())` (0) or the error.
    pub fn check(code: i32) -> Result<(), HeaderError> {
        match code {
            0 => Ok(()),
            1 => Err(HeaderError::NotAllowed),
            2 => Err(HeaderError::Invalid),
            n => Err(HeaderError::Other(n)),
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::NotAllowed => {
                f.write_str("refused: not on the plugin's header allow-list, or forbidden")
            }
            HeaderError::Invalid => f.write_str("refused: invalid header name or value"),
            HeaderError::Other(n) => write!(f, "refused with unknown code {}", n),
        }
    }
}

/// The host functions, as a trait so outcomes can be applied to a
/// [`RecordingHost`] in host-side tests. Return values are the raw ABI codes.
pub trait Host {
    /// `set_header` import.
    fn set_header(&mut self, name: &str, value: &str) -> i32;
    /// `append_header` import.
    fn append_header(&mut self, name: &str, value: &str) -> i32;
    /// `remove_header` import.
    fn remove_header(&mut self, name: &str) -> i32;
    /// `deny` import.
    fn deny(&mut self, status: i32, message: &str);
    /// `log` import.
    fn log(&mut self, level: Level, message: &str);
}

/// Applies an [`Outcome`] through `host` and returns the `on_request` code:
/// header changes in order (the first nonzero answer is logged and turns the
/// call into an error, 2), `deny` then 1, or a logged error then 2.
pub fn apply(outcome: Outcome, host: &mut dyn Host) -> i32 {
    match outcome {
        Outcome::Continue(changes) => {
            for change in &changes {
                let (op, code) = match change {
                    HeaderChange::Set { name, value } => {
                        ("set_header", host.set_header(name, value))
                    }
                    HeaderChange::Append { name, value } => {
                        ("append_header", host.append_header(name, value))
                    }
                    HeaderChange::Remove { name } => ("remove_header", host.remove_header(name)),
                };
                if let Err(e) = HeaderError::check(code) {
                    host.log(Level::Error, &format!("{}(`{}`) {}", op, change.name(), e));
                    return RET_ERROR;
                }
            }
            RET_CONTINUE
        }
        Outcome::Deny { status, message } => {
            if !(400..=499).contains(&status) {
                host.log(
                    Level::Error,
                    &format!(
                        "deny status {} is outside 400..=499; treating as plugin error",
                        status
                    ),
                );
                return RET_ERROR;
            }
            host.deny(i32::from(status), &message);
            RET_DENY
        }
        Outcome::Error(message) => {
            host.log(Level::Error, &message);
            RET_ERROR
        }
    }
}

/// One recorded host call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    /// A header change.
    Header(HeaderChange),
    /// `deny(status, message)`.
    Deny(i32, String),
    /// `log(level, message)`.
    Log(Level, String),
}

/// A fake host for tests: records every call and answers header calls with
/// `answer(name)` (default: always 0).
pub struct RecordingHost {
    /// Calls in order.
    pub calls: Vec<HostCall>,
    /// Answer for header calls, by header name.
    pub answer: fn(&str) -> i32,
}

impl Default for RecordingHost {
    fn default() -> Self {
        RecordingHost {
            calls: Vec::new(),
            answer: |_| 0,
        }
    }
}

impl RecordingHost {
    /// The header changes that were accepted (answered 0), in order.
    pub fn accepted_changes(&self) -> Vec<HeaderChange> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                HostCall::Header(h) if (self.answer)(h.name()) == 0 => Some(h.clone()),
                _ => None,
            })
            .collect()
    }
}

impl Host for RecordingHost {
    fn set_header(&mut self, name: &str, value: &str) -> i32 {
        self.calls
            .push(HostCall::Header(HeaderChange::set(name, value)));
        (self.answer)(name)
    }
    fn append_header(&mut self, name: &str, value: &str) -> i32 {
        self.calls
            .push(HostCall::Header(HeaderChange::append(name, value)));
        (self.answer)(name)
    }
    fn remove_header(&mut self, name: &str) -> i32 {
        self.calls
            .push(HostCall::Header(HeaderChange::remove(name)));
        (self.answer)(name)
    }
    fn deny(&mut self, status: i32, message: &str) {
        self.calls.push(HostCall::Deny(status, message.to_string()));
    }
    fn log(&mut self, level: Level, message: &str) {
        self.calls.push(HostCall::Log(level, message.to_string()));
    }
}

/// Raw imports from module `portcullis` (the five of ABI v1 and the eight
/// added by ABI v2; a module imports only those it uses). Lengths are byte counts;
/// pointers point into this module's memory. Prefer the safe wrappers.
#[cfg(target_arch = "wasm32")]
pub mod ffi {
    #[link(wasm_import_module = "portcullis")]
    extern "C" {
        /// Sets/replaces a request header. 0 ok, 1 not allowed, 2 invalid.
        pub fn set_header(
            name_ptr: *const u8,
            name_len: usize,
            value_ptr: *const u8,
            value_len: usize,
        ) -> i32;
        /// Appends a value to a request header. 0 ok, 1 not allowed, 2 invalid.
        pub fn append_header(
            name_ptr: *const u8,
            name_len: usize,
            value_ptr: *const u8,
            value_len: usize,
        ) -> i32;
        /// Removes a request header. 0 ok, 1 not allowed, 2 invalid.
        pub fn remove_header(name_ptr: *const u8, name_len: usize) -> i32;
        /// Denies the request with `status` (400..=499) and a message.
        pub fn deny(status: i32, msg_ptr: *const u8, msg_len: usize);
        /// Logs a message; level 0 error, 1 warn, 2 info, 3 debug.
        pub fn log(level: i32, msg_ptr: *const u8, msg_len: usize);

        // ---- added by ABI v2 (usable by v1 and v2 modules; only during
        // on_request). Buffer protocol: result n >= 0 is the value's length,
        // written only when n <= buf_cap; negative results are error codes
        // (see `crate::v2`).

        /// A claim's text form by NUL-separated path.
        pub fn claim(path_ptr: *const u8, path_len: usize, buf_ptr: *mut u8, buf_cap: usize)
            -> i32;
        /// A claim's kind: -2 invalid, -1 absent, 0 null, 1 string, 2 number,
        /// 3 boolean, 4 array, 5 object.
        pub fn claim_kind(path_ptr: *const u8, path_len: usize) -> i32;
        /// Items of an array / members of an object claim.
        pub fn claim_count(path_ptr: *const u8, path_len: usize) -> i32;
        /// A request field: 0 method, 1 path, 2 query, 3 host, 4 client
        /// certificate SHA-256, 5 client certificate subject.
        pub fn request_field(field: i32, buf_ptr: *mut u8, buf_cap: usize) -> i32;
        /// A request header listed in the plugin's `request_headers`.
        pub fn request_header(
            name_ptr: *const u8,
            name_len: usize,
            buf_ptr: *mut u8,
            buf_cap: usize,
        ) -> i32;
        /// v1's claims JSON, byte for byte.
        pub fn claims_json(buf_ptr: *mut u8, buf_cap: usize) -> i32;
        /// v1's request JSON, byte for byte.
        pub fn request_json(buf_ptr: *mut u8, buf_cap: usize) -> i32;
        /// Several header writes (entries of five LE u32). 0, or
        /// `code | index << 8` for the first entry not accepted.
        pub fn header_batch(batch_ptr: *const u8, batch_len: usize) -> i32;
    }
}

/// The real host (wasm32 only): forwards to [`ffi`].
#[cfg(target_arch = "wasm32")]
pub struct WasmHost;

#[cfg(target_arch = "wasm32")]
impl Host for WasmHost {
    fn set_header(&mut self, name: &str, value: &str) -> i32 {
        // SAFETY: both slices are valid for the duration of the call; the host
        // only reads them.
        unsafe { ffi::set_header(name.as_ptr(), name.len(), value.as_ptr(), value.len()) }
    }
    fn append_header(&mut self, name: &str, value: &str) -> i32 {
        // SAFETY: as above.
        unsafe { ffi::append_header(name.as_ptr(), name.len(), value.as_ptr(), value.len()) }
    }
    fn remove_header(&mut self, name: &str) -> i32 {
        // SAFETY: as above.
        unsafe { ffi::remove_header(name.as_ptr(), name.len()) }
    }
    fn deny(&mut self, status: i32, message: &str) {
        // SAFETY: as above.
        unsafe { ffi::deny(status, message.as_ptr(), message.len()) }
    }
    fn log(&mut self, level: Level, message: &str) {
        // SAFETY: as above.
        unsafe { ffi::log(level as i32, message.as_ptr(), message.len()) }
    }
}

/// Sets/replaces a request header toward the upstream (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub fn set_header(name: &str, value: &str) -> Result<(), HeaderError> {
    HeaderError::check(WasmHost.set_header(name, value))
}

/// Adds one more value to a request header (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub fn append_header(name: &str, value: &str) -> Result<(), HeaderError> {
    HeaderError::check(WasmHost.append_header(name, value))
}

/// Removes a request header (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub fn remove_header(name: &str) -> Result<(), HeaderError> {
    HeaderError::check(WasmHost.remove_header(name))
}

/// Records a denial (wasm32 only); `on_request` must then return 1. Last call wins.
#[cfg(target_arch = "wasm32")]
pub fn deny(status: u16, message: &str) {
    WasmHost.deny(i32::from(status), message)
}

/// Logs through the host on wasm32; prints to stderr elsewhere (tests).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    WasmHost.log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[plugin {:?}] {}", level, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_applies_changes_in_order() {
        let mut h = RecordingHost::default();
        let code = apply(
            Outcome::Continue(vec![
                HeaderChange::set("x-a", "1"),
                HeaderChange::append("x-b", "2"),
                HeaderChange::remove("x-c"),
            ]),
            &mut h,
        );
        assert_eq!(code, RET_CONTINUE);
        assert_eq!(
            h.calls,
            vec![
                HostCall::Header(HeaderChange::set("x-a", "1")),
                HostCall::Header(HeaderChange::append("x-b", "2")),
                HostCall::Header(HeaderChange::remove("x-c")),
            ]
        );
    }

    #[test]
    fn a_refused_header_stops_and_becomes_an_error() {
        let mut h = RecordingHost {
            answer: |n| if n == "x-b" { 1 } else { 0 },
            ..Default::default()
        };
        let code = apply(
            Outcome::Continue(vec![
                HeaderChange::set("x-a", "1"),
                HeaderChange::set("x-b", "2"),
                HeaderChange::set("x-c", "3"),
            ]),
            &mut h,
        );
        assert_eq!(code, RET_ERROR);
        assert_eq!(h.calls.len(), 3);
        assert!(
            matches!(&h.calls[2], HostCall::Log(Level::Error, m) if m.contains("x-b") && m.contains("allow-list"))
        );
    }

    #[test]
    fn deny_calls_host_and_returns_one() {
        let mut h = RecordingHost::default();
        assert_eq!(apply(Outcome::deny(403, "no"), &mut h), RET_DENY);
        assert_eq!(h.calls, vec![HostCall::Deny(403, "no".into())]);
    }

    #[test]
    fn deny_outside_4xx_is_an_error_without_calling_deny() {
        for status in [200u16, 399, 500, 0] {
            let mut h = RecordingHost::default();
            assert_eq!(apply(Outcome::deny(status, "x"), &mut h), RET_ERROR);
            assert!(matches!(&h.calls[..], [HostCall::Log(Level::Error, _)]));
        }
    }

    #[test]
    fn error_is_logged() {
        let mut h = RecordingHost::default();
        assert_eq!(apply(Outcome::Error("bad".into()), &mut h), RET_ERROR);
        assert_eq!(h.calls, vec![HostCall::Log(Level::Error, "bad".into())]);
    }

    #[test]
    fn header_error_codes() {
        assert_eq!(HeaderError::check(0), Ok(()));
        assert_eq!(HeaderError::check(1), Err(HeaderError::NotAllowed));
        assert_eq!(HeaderError::check(2), Err(HeaderError::Invalid));
        assert_eq!(HeaderError::check(9), Err(HeaderError::Other(9)));
    }
}
