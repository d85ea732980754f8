//! ABI v2: the guest pulls what it needs through imports instead of
//! receiving the claims and request as JSON (see `plugins/ABI.md`).
//!
//! A v2 plugin's `on_request` gets a [`Ctx`]: claim values by path in their
//! **text form** (no JSON parsing in the guest), kinds and item counts,
//! request fields and visible request headers, the full JSON as a fallback,
//! and header changes that the SDK sends in **one** `header_batch` call:
//!
//! ```
//! use portcullis_plugin_sdk::{plugin_v2, ClaimPath, Ctx, Outcome, Value};
//!
//! pub struct Config { sub: ClaimPath }
//!
//! pub fn init(_cfg: &Value) -> Result<Config, String> {
//!     Ok(Config { sub: ClaimPath::parse("sub")? })
//! }
//!
//! pub fn on_request(cfg: &Config, ctx: &mut Ctx) -> Outcome {
//!     match ctx.claim_text(&cfg.sub) {
//!         Some(sub) => {
//!             let sub = sub.to_string(); // or use `with_scratch` to avoid the allocation
//!             ctx.set_header("x-user-id", &sub);
//!             Outcome::pass()
//!         }
//!         None => Outcome::deny(401, "token has no subject"),
//!     }
//! }
//!
//! plugin_v2!(Config, init, on_request);
//! ```
//!
//! Everything goes through the [`HostV2`] trait, so plugins are unit-tested
//! on the host with [`TestHost`], a double backed by a parsed claims
//! [`Value`] that produces exactly the spec's text forms.
//!
//! Buffers: a [`CtxState`] lives for the whole instance (one static per
//! module on wasm32) and keeps its read buffer, item-path buffer, header
//! batch and scratch strings between requests, so a reused instance does
//! not allocate for them in steady state. A value longer than the read
//! buffer is fetched again after growing it (the ABI's retry protocol).

use crate::headers;
use crate::host::{HeaderChange, HeaderError, Host, HostCall, Level, Outcome};
use crate::host::{RET_CONTINUE, RET_DENY, RET_ERROR};
use crate::json::{self, Value};
use crate::path::{ClaimPath, MAX_ENCODED_LEN};
use crate::request::{ClientCert, Request};
use std::fmt;

/// The version a v2 module's `portcullis_abi_version` returns.
pub const ABI_VERSION_V2: i32 = 2;

/// Error code: no value there (absent claim, JSON `null` for `claim`, no
/// such request part).
pub const MISSING: i32 = -1;
/// Error code: malformed path, field number or header name.
pub const INVALID: i32 = -2;
/// Error code: `request_header` for a header not in `request_headers`.
pub const NOT_VISIBLE: i32 = -3;
/// Error code: `claim_count` on a value that is not an array or object.
pub const NOT_CONTAINER: i32 = -4;

/// `header_batch` entry size in bytes (five little-endian u32).
pub const BATCH_ENTRY_LEN: usize = 20;
/// Most entries one `header_batch` call accepts.
pub const MAX_BATCH_ENTRIES: usize = 1024;
/// `header_batch` op: set (replace every value).
pub const OP_SET: u32 = 1;
/// `header_batch` op: append one value.
pub const OP_APPEND: u32 = 2;
/// `header_batch` op: remove every value.
pub const OP_REMOVE: u32 = 3;

/// Initial size of the read buffer of a [`CtxState`].
pub const DEFAULT_READ_BUFFER: usize = 512;

/// What `claim_kind` says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// -1: no claim there.
    Absent,
    /// 0: JSON `null` (plugins usually treat it like absent).
    Null,
    /// 1: a string.
    String,
    /// 2: a number.
    Number,
    /// 3: `true` or `false`.
    Bool,
    /// 4: an array.
    Array,
    /// 5: an object.
    Object,
}

impl ClaimKind {
    /// Maps a `claim_kind` answer (`-1..=5`); `None` for anything else.
    pub fn from_code(code: i32) -> Option<ClaimKind> {
        Some(match code {
            -1 => ClaimKind::Absent,
            0 => ClaimKind::Null,
            1 => ClaimKind::String,
            2 => ClaimKind::Number,
            3 => ClaimKind::Bool,
            4 => ClaimKind::Array,
            5 => ClaimKind::Object,
            _ => return None,
        })
    }

    /// The ABI code of this kind.
    pub fn code(self) -> i32 {
        match self {
            ClaimKind::Absent => -1,
            ClaimKind::Null => 0,
            ClaimKind::String => 1,
            ClaimKind::Number => 2,
            ClaimKind::Bool => 3,
            ClaimKind::Array => 4,
            ClaimKind::Object => 5,
        }
    }

    /// The kind of a parsed value.
    pub fn of(v: &Value) -> ClaimKind {
        match v {
            Value::Null => ClaimKind::Null,
            Value::String(_) => ClaimKind::String,
            Value::Number(_) => ClaimKind::Number,
            Value::Bool(_) => ClaimKind::Bool,
            Value::Array(_) => ClaimKind::Array,
            Value::Object(_) => ClaimKind::Object,
        }
    }

    /// Present and not `null` (what the standard plugins call "present").
    pub fn is_present(self) -> bool {
        !matches!(self, ClaimKind::Absent | ClaimKind::Null)
    }
}

/// Field numbers of the `request_field` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// 0: request method as received.
    Method = 0,
    /// 1: raw path (percent-encoded, not normalized, without the query).
    Path = 1,
    /// 2: raw query without `?` (`""` when none).
    Query = 2,
    /// 3: host the client addressed (`""` when unknown).
    Host = 3,
    /// 4: verified client certificate SHA-256, base64url without padding.
    ClientCertSha256 = 4,
    /// 5: verified client certificate subject.
    ClientCertSubject = 5,
}

/// The text form of a claim value, exactly as the `claim` import gives it:
/// strings unescaped, numbers per [`json::Number`]'s `Display`,
/// `true`/`false`, arrays/objects as [`Value::to_json_ascii`]; `None` for
/// `null`.
pub fn text_form(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => Some(v.to_json_ascii()),
    }
}

// --------------------------------------------------------------------------
// Header batch

#[derive(Debug, Clone, Copy)]
struct Entry {
    op: u32,
    name: (u32, u32),
    value: (u32, u32),
}

/// Header changes collected during one `on_request`, sent with one
/// `header_batch` call. Names and values are copied into one reusable text
/// buffer; [`HeaderBatch::encode`] writes the ABI's entry layout.
#[derive(Debug, Default)]
pub struct HeaderBatch {
    text: Vec<u8>,
    entries: Vec<Entry>,
    raw: Vec<u8>,
}

impl HeaderBatch {
    /// An empty batch.
    pub fn new() -> HeaderBatch {
        HeaderBatch::default()
    }

    /// Forgets every entry (keeps the buffers).
    pub fn clear(&mut self) {
        self.text.clear();
        self.entries.clear();
        self.raw.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn put(&mut self, s: &str) -> (u32, u32) {
        let start = self.text.len();
        self.text.extend_from_slice(s.as_bytes());
        (start as u32, s.len() as u32)
    }

    /// Adds an entry with a raw op (1 set, 2 append, 3 remove; others are
    /// sent as they are, for tests of the host).
    pub fn push_op(&mut self, op: u32, name: &str, value: &str) {
        let name = self.put(name);
        let value = if op == OP_REMOVE {
            (0, 0)
        } else {
            self.put(value)
        };
        self.entries.push(Entry { op, name, value });
    }

    /// Set `name: value`, replacing every value.
    pub fn set(&mut self, name: &str, value: &str) {
        self.push_op(OP_SET, name, value)
    }

    /// Append one value.
    pub fn append(&mut self, name: &str, value: &str) {
        self.push_op(OP_APPEND, name, value)
    }

    /// Remove every value.
    pub fn remove(&mut self, name: &str) {
        self.push_op(OP_REMOVE, name, "")
    }

    /// Adds a [`HeaderChange`].
    pub fn push(&mut self, change: &HeaderChange) {
        match change {
            HeaderChange::Set { name, value } => self.set(name, value),
            HeaderChange::Append { name, value } => self.append(name, value),
            HeaderChange::Remove { name } => self.remove(name),
        }
    }

    fn slice(&self, (off, len): (u32, u32)) -> &[u8] {
        &self.text[off as usize..(off + len) as usize]
    }

    /// Entry `i`: op, name and value bytes (empty value for remove).
    pub fn entry(&self, i: usize) -> Option<(u32, &[u8], &[u8])> {
        self.entries
            .get(i)
            .map(|e| (e.op, self.slice(e.name), self.slice(e.value)))
    }

    /// Entry `i` as a [`HeaderChange`] (`None` for an unknown op or bad UTF-8).
    pub fn change(&self, i: usize) -> Option<HeaderChange> {
        let (op, name, value) = self.entry(i)?;
        let name = std::str::from_utf8(name).ok()?;
        let value = std::str::from_utf8(value).ok()?;
        Some(match op {
            OP_SET => HeaderChange::set(name, value),
            OP_APPEND => HeaderChange::append(name, value),
            OP_REMOVE => HeaderChange::remove(name),
            _ => return None,
        })
    }

    /// The text buffer the entries point into (offsets from [`encode`]
    /// with `base = 0` index it).
    ///
    /// [`encode`]: HeaderBatch::encode
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Writes the ABI layout: per entry five little-endian u32 `op,
    /// name_ptr, name_len, value_ptr, value_len`, pointers being `base` +
    /// the offset in [`HeaderBatch::text`] (on wasm32 `base` is the text
    /// buffer's address; a remove has value fields 0). Returns the bytes.
    pub fn encode(&mut self, base: u32) -> &[u8] {
        self.raw.clear();
        for e in &self.entries {
            let value_ptr = if e.op == OP_REMOVE {
                0
            } else {
                base.wrapping_add(e.value.0)
            };
            for word in [
                e.op,
                base.wrapping_add(e.name.0),
                e.name.1,
                value_ptr,
                e.value.1,
            ] {
                self.raw.extend_from_slice(&word.to_le_bytes());
            }
        }
        &self.raw
    }
}

/// Splits a nonzero `header_batch` answer into `(code, index)`.
pub fn batch_refusal(answer: i32) -> (i32, usize) {
    (answer & 0xff, (answer as u32 >> 8) as usize)
}

fn op_name(op: u32) -> &'static str {
    match op {
        OP_SET => "set_header",
        OP_APPEND => "append_header",
        OP_REMOVE => "remove_header",
        _ => "header_batch",
    }
}

// --------------------------------------------------------------------------
// Host calls

/// The ABI v2 host functions (added to v1's [`Host`]), so a [`Ctx`] runs
/// against the real imports on wasm32 and against [`TestHost`] in tests.
/// Return values are the raw ABI answers; `buf` methods follow the buffer
/// protocol (write only when the length fits `buf.len()`).
pub trait HostV2: Host {
    /// `claim(path, buf)`.
    fn claim(&mut self, path: &[u8], buf: &mut [u8]) -> i32;
    /// `claim_kind(path)`.
    fn claim_kind(&mut self, path: &[u8]) -> i32;
    /// `claim_count(path)`.
    fn claim_count(&mut self, path: &[u8]) -> i32;
    /// `request_field(field, buf)`.
    fn request_field(&mut self, field: i32, buf: &mut [u8]) -> i32;
    /// `request_header(name, buf)`.
    fn request_header(&mut self, name: &[u8], buf: &mut [u8]) -> i32;
    /// `claims_json(buf)`.
    fn claims_json(&mut self, buf: &mut [u8]) -> i32;
    /// `request_json(buf)`.
    fn request_json(&mut self, buf: &mut [u8]) -> i32;
    /// `header_batch(batch)`: the implementation encodes `batch` itself
    /// (with its real addresses on wasm32).
    fn header_batch(&mut self, batch: &mut HeaderBatch) -> i32;
}

#[cfg(target_arch = "wasm32")]
impl HostV2 for crate::host::WasmHost {
    fn claim(&mut self, path: &[u8], buf: &mut [u8]) -> i32 {
        // SAFETY: both ranges are valid for the call; the host reads `path`
        // and writes at most `buf.len()` bytes into `buf`.
        unsafe { crate::host::ffi::claim(path.as_ptr(), path.len(), buf.as_mut_ptr(), buf.len()) }
    }
    fn claim_kind(&mut self, path: &[u8]) -> i32 {
        // SAFETY: as above.
        unsafe { crate::host::ffi::claim_kind(path.as_ptr(), path.len()) }
    }
    fn claim_count(&mut self, path: &[u8]) -> i32 {
        // SAFETY: as above.
        unsafe { crate::host::ffi::claim_count(path.as_ptr(), path.len()) }
    }
    fn request_field(&mut self, field: i32, buf: &mut [u8]) -> i32 {
        // SAFETY: as above.
        unsafe { crate::host::ffi::request_field(field, buf.as_mut_ptr(), buf.len()) }
    }
    fn request_header(&mut self, name: &[u8], buf: &mut [u8]) -> i32 {
        // SAFETY: as above.
        unsafe {
            crate::host::ffi::request_header(name.as_ptr(), name.len(), buf.as_mut_ptr(), buf.len())
        }
    }
    fn claims_json(&mut self, buf: &mut [u8]) -> i32 {
        // SAFETY: as above.
        unsafe { crate::host::ffi::claims_json(buf.as_mut_ptr(), buf.len()) }
    }
    fn request_json(&mut self, buf: &mut [u8]) -> i32 {
        // SAFETY: as above.
        unsafe { crate::host::ffi::request_json(buf.as_mut_ptr(), buf.len()) }
    }
    fn header_batch(&mut self, batch: &mut HeaderBatch) -> i32 {
        let base = batch.text.as_ptr() as usize as u32;
        let raw = batch.encode(base);
        // SAFETY: `raw` and the text buffer its entries point into are alive
        // and unchanged for the call; the host only reads them.
        unsafe { crate::host::ffi::header_batch(raw.as_ptr(), raw.len()) }
    }
}

// --------------------------------------------------------------------------
// The per-request context

/// Buffers and per-request caches of a [`Ctx`], kept for the instance's
/// lifetime so steady-state requests do not allocate for them.
#[derive(Debug)]
pub struct CtxState {
    /// Read buffer (fully initialised: `len()` is the usable capacity).
    buf: Vec<u8>,
    /// Item path being built (`path \0 index`).
    path: Vec<u8>,
    batch: HeaderBatch,
    scratch: Vec<String>,
    claims: Option<Value>,
    request: Option<Request>,
    fault: Option<String>,
}

impl Default for CtxState {
    fn default() -> Self {
        CtxState::with_buffer(DEFAULT_READ_BUFFER)
    }
}

impl CtxState {
    /// State with a [`DEFAULT_READ_BUFFER`]-byte read buffer.
    pub fn new() -> CtxState {
        CtxState::default()
    }

    /// State with a `len`-byte read buffer (tests use tiny ones to exercise
    /// the retry path). The buffer grows as values need.
    pub fn with_buffer(len: usize) -> CtxState {
        CtxState {
            buf: vec![0; len],
            path: Vec::with_capacity(64),
            batch: HeaderBatch::new(),
            scratch: Vec::new(),
            claims: None,
            request: None,
            fault: None,
        }
    }

    /// Current size of the read buffer (for tests).
    pub fn read_buffer_len(&self) -> usize {
        self.buf.len()
    }
}

/// Why a fetch failed: a negative ABI code, or a host that grew the value
/// between the two calls of the retry protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    Code(i32),
    Unstable,
}

/// The buffer protocol: call, and if the value is longer than `buf`, grow
/// it and call once more. `Ok(n)`: the value is `buf[..n]`.
fn fetch<H: HostV2 + ?Sized>(
    host: &mut H,
    buf: &mut Vec<u8>,
    mut call: impl FnMut(&mut H, &mut [u8]) -> i32,
) -> Result<usize, Fetch> {
    let n = call(host, &mut buf[..]);
    if n < 0 {
        return Err(Fetch::Code(n));
    }
    let n = n as u32 as usize;
    if n <= buf.len() {
        return Ok(n);
    }
    let want = n.max(buf.len().saturating_mul(2));
    buf.resize(want, 0);
    let m = call(host, &mut buf[..]);
    if m < 0 {
        return Err(Fetch::Code(m));
    }
    let m = m as u32 as usize;
    if m > buf.len() {
        return Err(Fetch::Unstable);
    }
    Ok(m)
}

fn code_name(code: i32) -> &'static str {
    match code {
        MISSING => "MISSING",
        INVALID => "INVALID",
        NOT_VISIBLE => "NOT_VISIBLE",
        NOT_CONTAINER => "NOT_CONTAINER",
        _ => "an unknown code",
    }
}

/// What a v2 `on_request` sees of the request, and where it records header
/// changes. Methods that read return `None` for absent values; an answer
/// the ABI does not allow for a well-formed call (an unaddressable path,
/// `INVALID`, text that is not UTF-8, …) is recorded as a **fault**: the SDK
/// then logs it and fails the call with 2 whatever the plugin returns, so
/// a plugin never decides on a value it could not read.
///
/// `H` is the host: [`DefaultHost`] — the real imports on wasm32 (static
/// calls, so a module imports only what it uses), `dyn HostV2` elsewhere
/// (e.g. [`TestHost`]). Plugins just write `&mut Ctx`.
pub struct Ctx<'a, H: HostV2 + ?Sized = DefaultHost> {
    host: &'a mut H,
    st: &'a mut CtxState,
}

/// The host type of a plain `Ctx`: the wasm32 imports.
#[cfg(target_arch = "wasm32")]
pub type DefaultHost = crate::host::WasmHost;
/// The host type of a plain `Ctx`: any [`HostV2`] (tests).
#[cfg(not(target_arch = "wasm32"))]
pub type DefaultHost = dyn HostV2;

impl<'a, H: HostV2 + ?Sized> Ctx<'a, H> {
    /// Starts a request: clears the header batch, caches and fault of `st`.
    pub fn new(host: &'a mut H, st: &'a mut CtxState) -> Ctx<'a, H> {
        st.batch.clear();
        st.claims = None;
        st.request = None;
        st.fault = None;
        Ctx { host, st }
    }

    fn fault(&mut self, msg: impl FnOnce() -> String) {
        if self.st.fault.is_none() {
            self.st.fault = Some(msg());
        }
    }

    /// Records a fault (kept: the first one): the call will fail with 2.
    pub fn fail(&mut self, message: &str) {
        self.fault(|| message.to_string());
    }

    /// The first fault of this request, if any.
    pub fn fault_message(&self) -> Option<&str> {
        self.st.fault.as_deref()
    }

    fn wire<'p>(&mut self, path: &'p ClaimPath) -> Option<&'p [u8]> {
        match path.encoded() {
            Some(w) => Some(w),
            None => {
                let why = path.check_addressable().err().unwrap_or_default();
                self.fault(|| why);
                None
            }
        }
    }

    /// Builds `path \0 index` in the item-path buffer; false (fault) when
    /// the path is not addressable or too long.
    fn item_path(&mut self, path: &ClaimPath, index: usize) -> bool {
        let wire = match self.wire(path) {
            Some(w) => w,
            None => return false,
        };
        let p = &mut self.st.path;
        p.clear();
        p.extend_from_slice(wire);
        p.push(0);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = index;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        p.extend_from_slice(&digits[i..]);
        if p.len() > MAX_ENCODED_LEN {
            self.fault(|| format!("claim path {} item {}: path too long", path, index));
            return false;
        }
        true
    }

    fn kind_at(&mut self, what: &dyn fmt::Display, wire: &[u8]) -> ClaimKind {
        let code = self.host.claim_kind(wire);
        match ClaimKind::from_code(code) {
            Some(k) => k,
            None => {
                self.fault(|| format!("claim_kind({}) answered {}", what, code));
                ClaimKind::Absent
            }
        }
    }

    fn count_at(&mut self, what: &dyn fmt::Display, wire: &[u8]) -> Option<usize> {
        let code = self.host.claim_count(wire);
        match code {
            n if n >= 0 => Some(n as usize),
            MISSING | NOT_CONTAINER => None,
            other => {
                self.fault(|| {
                    format!(
                        "claim_count({}) answered {} ({})",
                        what,
                        other,
                        code_name(other)
                    )
                });
                None
            }
        }
    }

    /// Fetches with `call` into the read buffer; `Some(len)` on success,
    /// `None` for MISSING (and for other codes, recorded as a fault unless
    /// listed in `quiet`).
    fn fetch_text(
        &mut self,
        what: &dyn fmt::Display,
        quiet: &[i32],
        call: &mut dyn FnMut(&mut H, &mut [u8]) -> i32,
    ) -> Option<usize> {
        match fetch(self.host, &mut self.st.buf, |h, b| call(h, b)) {
            Ok(n) => {
                if std::str::from_utf8(&self.st.buf[..n]).is_ok() {
                    Some(n)
                } else {
                    self.fault(|| format!("{}: the host's answer is not UTF-8", what));
                    None
                }
            }
            Err(Fetch::Code(c)) if c == MISSING || quiet.contains(&c) => None,
            Err(Fetch::Code(c)) => {
                self.fault(|| format!("{} answered {} ({})", what, c, code_name(c)));
                None
            }
            Err(Fetch::Unstable) => {
                self.fault(|| format!("{}: the value changed length during the call", what));
                None
            }
        }
    }

    fn buf_str(&self, n: usize) -> &str {
        // Checked in fetch_text.
        std::str::from_utf8(&self.st.buf[..n]).unwrap_or("")
    }

    // ---- claims ----------------------------------------------------------

    /// The claim's kind ([`ClaimKind::Absent`] when there is none).
    pub fn claim_kind(&mut self, path: &ClaimPath) -> ClaimKind {
        match self.wire(path) {
            Some(w) => self.kind_at(path, w),
            None => ClaimKind::Absent,
        }
    }

    /// The claim's text form (see [`text_form`]); `None` when absent or
    /// `null`. Borrowed from the context's read buffer until the next read.
    pub fn claim_text(&mut self, path: &ClaimPath) -> Option<&str> {
        let wire = self.wire(path)?;
        let what = Describe("claim", path, None);
        let n = self.fetch_text(&what, &[], &mut |h, b| h.claim(wire, b))?;
        Some(self.buf_str(n))
    }

    /// Number of items of an array claim or members of an object claim;
    /// `None` when absent, `null` or not a container.
    pub fn claim_count(&mut self, path: &ClaimPath) -> Option<usize> {
        let wire = self.wire(path)?;
        self.count_at(path, wire)
    }

    /// The kind of item `index` of an array claim (or of the member named
    /// by the decimal `index` of an object claim — the ABI does not tell
    /// them apart).
    pub fn claim_item_kind(&mut self, path: &ClaimPath, index: usize) -> ClaimKind {
        if !self.item_path(path, index) {
            return ClaimKind::Absent;
        }
        let wire = std::mem::take(&mut self.st.path);
        let k = self.kind_at(&Describe("claim_kind", path, Some(index)), &wire);
        self.st.path = wire;
        k
    }

    /// The text form of item `index` of an array claim; `None` when there
    /// is no such item or it is `null` (tell them apart with
    /// [`Ctx::claim_item_kind`] or [`Ctx::claim_count`]).
    pub fn claim_item_text(&mut self, path: &ClaimPath, index: usize) -> Option<&str> {
        if !self.item_path(path, index) {
            return None;
        }
        let wire = std::mem::take(&mut self.st.path);
        let what = Describe("claim", path, Some(index));
        let r = self.fetch_text(&what, &[], &mut |h, b| h.claim(&wire, b));
        self.st.path = wire;
        Some(self.buf_str(r?))
    }

    /// Appends the claim's text form to `out`; false when absent or `null`.
    pub fn push_claim_text(&mut self, path: &ClaimPath, out: &mut String) -> bool {
        match self.claim_text(path) {
            Some(t) => {
                out.push_str(t);
                true
            }
            None => false,
        }
    }

    /// Appends item `index`'s text form to `out`; false when there is no
    /// such item or it is `null`.
    pub fn push_claim_item_text(
        &mut self,
        path: &ClaimPath,
        index: usize,
        out: &mut String,
    ) -> bool {
        match self.claim_item_text(path, index) {
            Some(t) => {
                out.push_str(t);
                true
            }
            None => false,
        }
    }

    /// All claims, parsed (the fallback for plugins that need the whole
    /// object): `claims_json` once per request, cached.
    pub fn claims(&mut self) -> Result<&Value, String> {
        if self.st.claims.is_none() {
            let n = fetch(self.host, &mut self.st.buf, |h, b| h.claims_json(b))
                .map_err(|e| format!("claims_json failed: {:?}", e))?;
            let v = json::parse(&self.st.buf[..n]).map_err(|e| format!("claims: {}", e))?;
            if v.as_object().is_none() {
                return Err(format!(
                    "claims must be a JSON object, got {}",
                    v.type_name()
                ));
            }
            self.st.claims = Some(v);
        }
        Ok(self.st.claims.as_ref().expect("just set"))
    }

    // ---- request ---------------------------------------------------------

    /// The whole v1 request (`request_json` once per request, cached).
    pub fn request(&mut self) -> Result<&Request, String> {
        if self.st.request.is_none() {
            let n = fetch(self.host, &mut self.st.buf, |h, b| h.request_json(b))
                .map_err(|e| format!("request_json failed: {:?}", e))?;
            let v = json::parse(&self.st.buf[..n]).map_err(|e| format!("request: {}", e))?;
            self.st.request = Some(Request::from_json(&v)?);
        }
        Ok(self.st.request.as_ref().expect("just set"))
    }

    /// A request field; `None` when the request has none (client
    /// certificate fields without a verified certificate).
    pub fn field(&mut self, field: Field) -> Option<&str> {
        let number = field as i32;
        let what = Describe("request_field", &number, None);
        let n = self.fetch_text(&what, &[], &mut |h, b| h.request_field(field as i32, b))?;
        Some(self.buf_str(n))
    }

    /// The method as received (`GET`, …).
    pub fn method(&mut self) -> &str {
        self.field(Field::Method).unwrap_or("")
    }

    /// The raw path: starts with `/`, percent-encoded, not normalized.
    pub fn path(&mut self) -> &str {
        self.field(Field::Path).unwrap_or("")
    }

    /// The raw query without `?` (`""` when none).
    pub fn query(&mut self) -> &str {
        self.field(Field::Query).unwrap_or("")
    }

    /// The host the client addressed (`""` when unknown).
    pub fn host(&mut self) -> &str {
        self.field(Field::Host).unwrap_or("")
    }

    /// The verified client certificate of the connection (mTLS), if any.
    pub fn client_cert(&mut self) -> Option<ClientCert> {
        let sha256 = self.field(Field::ClientCertSha256)?.to_string();
        let subject = self.field(Field::ClientCertSubject)?.to_string();
        Some(ClientCert { sha256, subject })
    }

    /// A request header listed in the plugin's `request_headers` (name
    /// case-insensitive; several values joined with `", "`). `None` when the
    /// request does not carry it, and also — as a header missing from v1's
    /// request JSON — when it is not listed or not a valid name.
    pub fn header(&mut self, name: &str) -> Option<&str> {
        let what = Describe("request_header", &name, None);
        let n = self.fetch_text(&what, &[NOT_VISIBLE, INVALID], &mut |h, b| {
            h.request_header(name.as_bytes(), b)
        })?;
        Some(self.buf_str(n))
    }

    // ---- header changes, logging --------------------------------------------

    /// Sets a request header toward the upstream (recorded; sent with the
    /// others in one `header_batch` when `on_request` continues).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.st.batch.set(name, value)
    }

    /// Appends a value to a request header (recorded).
    pub fn append_header(&mut self, name: &str, value: &str) {
        self.st.batch.append(name, value)
    }

    /// Removes a request header (recorded).
    pub fn remove_header(&mut self, name: &str) {
        self.st.batch.remove(name)
    }

    /// Header changes recorded so far.
    pub fn header_changes(&self) -> usize {
        self.st.batch.len()
    }

    /// Writes a line to the gateway log.
    pub fn log(&mut self, level: Level, message: &str) {
        self.host.log(level, message)
    }

    /// Runs `f` with a cleared scratch string taken from the context's pool
    /// (returned afterwards, keeping its capacity): build header values
    /// without allocating per request. Nested calls get distinct strings.
    pub fn with_scratch<R>(&mut self, f: impl FnOnce(&mut Ctx<'a, H>, &mut String) -> R) -> R {
        let mut s = self.st.scratch.pop().unwrap_or_default();
        s.clear();
        let r = f(self, &mut s);
        s.clear();
        self.st.scratch.push(s);
        r
    }

    /// Ends the request: a fault, or the outcome, becomes the `on_request`
    /// code. `Continue(changes)` sends the changes recorded with
    /// [`Ctx::set_header`] & co., then `changes`, in one `header_batch`
    /// (none when there are no changes); a refusal is logged naming the
    /// entry and gives 2. `Deny` calls `deny` (1; recorded changes are
    /// dropped; a status outside 400..=499 is an error, 2). `Error` is
    /// logged, 2.
    pub fn finish(self, outcome: Outcome) -> i32 {
        if let Some(f) = self.st.fault.take() {
            self.host.log(Level::Error, &f);
            self.st.batch.clear();
            return RET_ERROR;
        }
        match outcome {
            Outcome::Continue(changes) => {
                for c in &changes {
                    self.st.batch.push(c);
                }
                if self.st.batch.is_empty() {
                    return RET_CONTINUE;
                }
                let answer = self.host.header_batch(&mut self.st.batch);
                if answer == 0 {
                    return RET_CONTINUE;
                }
                let (code, index) = batch_refusal(answer);
                let msg = match self.st.batch.entry(index) {
                    Some((op, name, _)) => format!(
                        "{}(`{}`) {}",
                        op_name(op),
                        String::from_utf8_lossy(name),
                        HeaderError::check(code)
                            .err()
                            .unwrap_or(HeaderError::Other(code))
                    ),
                    None => format!(
                        "header_batch answered {} (code {}, entry {} of {})",
                        answer,
                        code,
                        index,
                        self.st.batch.len()
                    ),
                };
                self.host.log(Level::Error, &msg);
                RET_ERROR
            }
            Outcome::Deny { status, message } => {
                if !(400..=499).contains(&status) {
                    self.host.log(
                        Level::Error,
                        &format!(
                            "deny status {} is outside 400..=499; treating as plugin error",
                            status
                        ),
                    );
                    return RET_ERROR;
                }
                self.host.deny(i32::from(status), &message);
                RET_DENY
            }
            Outcome::Error(message) => {
                self.host.log(Level::Error, &message);
                RET_ERROR
            }
        }
    }
}

/// "claim(`path`)" / "claim(`path`, item 3)" for messages, built lazily.
struct Describe<'x>(&'static str, &'x dyn fmt::Display, Option<usize>);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.2 {
            Some(i) => write!(f, "{}(`{}`, item {})", self.0, self.1, i),
            None => write!(f, "{}(`{}`)", self.0, self.1),
        }
    }
}

/// Runs a v2 plugin's `on_request` for one request and applies its outcome
/// (see [`Ctx::finish`]). Returns the `on_request` code.
pub fn run_on_request_v2<C, H: HostV2 + ?Sized>(
    cfg: Option<&C>,
    on_request: fn(&C, &mut Ctx<'_, H>) -> Outcome,
    host: &mut H,
    st: &mut CtxState,
) -> i32 {
    let mut ctx = Ctx::new(host, st);
    let outcome = match cfg {
        Some(c) => on_request(c, &mut ctx),
        None => Outcome::Error("on_request called before a successful init".to_string()),
    };
    ctx.finish(outcome)
}

#[cfg(target_arch = "wasm32")]
static CTX_STATE: crate::rt::Global<Option<CtxState>> = crate::rt::Global::new(None);

/// `portcullis_on_request()` body of [`plugin_v2!`](crate::plugin_v2)
/// (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub fn wasm_on_request_v2<C>(
    state: &crate::rt::Global<Option<C>>,
    on_request: fn(&C, &mut Ctx<'_>) -> Outcome,
) -> i32 {
    crate::rt::release_inputs();
    // SAFETY: single-threaded; these are the only live borrows of the globals.
    let (st, cfg) = unsafe { (CTX_STATE.get(), state.get()) };
    let st = st.get_or_insert_with(CtxState::new);
    run_on_request_v2(cfg.as_ref(), on_request, &mut crate::host::WasmHost, st)
}

// --------------------------------------------------------------------------
// Test double

/// How many times each v2 import was called (for tests: e.g. that a plugin
/// never fetched the claims JSON).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportCounts {
    /// `claim`
    pub claim: usize,
    /// `claim_kind`
    pub claim_kind: usize,
    /// `claim_count`
    pub claim_count: usize,
    /// `request_field`
    pub request_field: usize,
    /// `request_header`
    pub request_header: usize,
    /// `claims_json`
    pub claims_json: usize,
    /// `request_json`
    pub request_json: usize,
    /// `header_batch`
    pub header_batch: usize,
}

/// A v2 host for tests, backed by parsed claims and a [`Request`]: answers
/// every import exactly as the ABI specifies (text forms, codes, buffer
/// protocol, batch layout and checks), records header changes, denials and
/// log lines in [`TestHost::calls`] like [`crate::RecordingHost`], and
/// answers header writes with `answer(name)` (default: 0) after checking
/// the name is a token and the value valid.
pub struct TestHost {
    claims_json: String,
    claims: Value,
    /// The request (`request_field`, `request_header`, `request_json`).
    pub request: Request,
    /// Lower-case names of the headers the plugin may read
    /// (`request_headers`); others answer NOT_VISIBLE.
    pub visible_headers: Vec<String>,
    /// Answer for header writes with a valid name, by name.
    pub answer: fn(&str) -> i32,
    /// Calls in order.
    pub calls: Vec<HostCall>,
    /// Import call counts.
    pub counts: ImportCounts,
}

impl TestHost {
    /// A host for these claims (a JSON object; panics otherwise — it is a
    /// test helper) and `GET /`.
    pub fn new(claims_json: &str) -> TestHost {
        let claims = json::parse(claims_json.as_bytes())
            .unwrap_or_else(|e| panic!("TestHost claims {}: {}", claims_json, e));
        assert!(
            claims.as_object().is_some(),
            "TestHost claims must be an object"
        );
        TestHost {
            claims_json: claims_json.to_string(),
            claims,
            request: Request {
                method: "GET".into(),
                path: "/".into(),
                ..Request::default()
            },
            visible_headers: Vec::new(),
            answer: |_| 0,
            calls: Vec::new(),
            counts: ImportCounts::default(),
        }
    }

    /// Replaces the request; its headers become visible.
    pub fn with_request(mut self, request: Request) -> TestHost {
        self.visible_headers = request
            .headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        self.request = request;
        self
    }

    /// The parsed claims.
    pub fn claims(&self) -> &Value {
        &self.claims
    }

    /// Runs `on_request` once (with a fresh [`CtxState`] whose 8-byte read
    /// buffer forces the retry path) and returns what the gateway would
    /// observe: `Continue` with the changes the host accepted, `Deny` as
    /// called, or `Error` with the last error logged.
    pub fn run<C>(
        &mut self,
        cfg: &C,
        on_request: fn(&C, &mut Ctx<'_, dyn HostV2>) -> Outcome,
    ) -> Outcome {
        let mut st = CtxState::with_buffer(8);
        self.run_with(&mut st, cfg, on_request)
    }

    /// Like [`TestHost::run`] with a given (reused) state.
    pub fn run_with<C>(
        &mut self,
        st: &mut CtxState,
        cfg: &C,
        on_request: fn(&C, &mut Ctx<'_, dyn HostV2>) -> Outcome,
    ) -> Outcome {
        let start = self.calls.len();
        let host: &mut dyn HostV2 = self;
        let code = run_on_request_v2(Some(cfg), on_request, host, st);
        observed(code, &self.calls[start..])
    }

    fn resolve(&self, path: &[u8]) -> Result<Option<&Value>, i32> {
        if path.is_empty() || path.len() > MAX_ENCODED_LEN {
            return Err(INVALID);
        }
        let text = std::str::from_utf8(path).map_err(|_| INVALID)?;
        if text.split('\0').any(str::is_empty) {
            return Err(INVALID);
        }
        let segs: Vec<&str> = text.split('\0').collect();
        Ok(self.claims.lookup_segments(&segs))
    }

    fn header_visible(&self, name: &str) -> bool {
        self.visible_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    fn request_json_text(&self) -> String {
        let r = &self.request;
        let mut members = vec![
            ("method".to_string(), Value::from(r.method.as_str())),
            ("path".to_string(), Value::from(r.path.as_str())),
            ("query".to_string(), Value::from(r.query.as_str())),
            ("host".to_string(), Value::from(r.host.as_str())),
        ];
        members.push((
            "client_cert".to_string(),
            match &r.client_cert {
                None => Value::Null,
                Some(c) => Value::Object(vec![
                    ("sha256".into(), Value::from(c.sha256.as_str())),
                    ("subject".into(), Value::from(c.subject.as_str())),
                ]),
            },
        ));
        let headers = r
            .headers
            .iter()
            .filter(|(k, _)| self.header_visible(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v.as_str())))
            .collect();
        members.push(("headers".to_string(), Value::Object(headers)));
        Value::Object(members).to_json()
    }

    fn header_write(&mut self, op: u32, name: &[u8], value: &[u8]) -> i32 {
        let name = match std::str::from_utf8(name) {
            Ok(n) if headers::is_token(n) => n,
            _ => return 2,
        };
        let code = (self.answer)(name);
        if code != 0 {
            return code;
        }
        let value = match std::str::from_utf8(value) {
            Ok(v) if op == OP_REMOVE || headers::check_value(v).is_ok() => v,
            _ => return 2,
        };
        let change = match op {
            OP_SET => HeaderChange::set(name, value),
            OP_APPEND => HeaderChange::append(name, value),
            _ => HeaderChange::remove(name),
        };
        self.calls.push(HostCall::Header(change));
        0
    }
}

/// Answers with the buffer protocol: the length, and the bytes only if
/// they fit.
fn answer(value: &[u8], buf: &mut [u8]) -> i32 {
    if value.len() <= buf.len() {
        buf[..value.len()].copy_from_slice(value);
    }
    value.len() as i32
}

/// What the gateway observes from an `on_request` code and the host calls
/// it made (see [`TestHost::run`]).
pub fn observed(code: i32, calls: &[HostCall]) -> Outcome {
    match code {
        RET_CONTINUE => Outcome::Continue(
            calls
                .iter()
                .filter_map(|c| match c {
                    HostCall::Header(h) => Some(h.clone()),
                    _ => None,
                })
                .collect(),
        ),
        RET_DENY => match calls.iter().rev().find_map(|c| match c {
            HostCall::Deny(s, m) => Some((*s, m.clone())),
            _ => None,
        }) {
            Some((s, m)) => Outcome::Deny {
                status: s as u16,
                message: m,
            },
            None => Outcome::Error("returned 1 without calling deny".to_string()),
        },
        other => Outcome::Error(
            calls
                .iter()
                .rev()
                .find_map(|c| match c {
                    HostCall::Log(Level::Error, m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| format!("on_request returned {}", other)),
        ),
    }
}

impl Host for TestHost {
    fn set_header(&mut self, name: &str, value: &str) -> i32 {
        self.header_write(OP_SET, name.as_bytes(), value.as_bytes())
    }
    fn append_header(&mut self, name: &str, value: &str) -> i32 {
        self.header_write(OP_APPEND, name.as_bytes(), value.as_bytes())
    }
    fn remove_header(&mut self, name: &str) -> i32 {
        self.header_write(OP_REMOVE, name.as_bytes(), b"")
    }
    fn deny(&mut self, status: i32, message: &str) {
        self.calls.push(HostCall::Deny(status, message.to_string()));
    }
    fn log(&mut self, level: Level, message: &str) {
        self.calls.push(HostCall::Log(level, message.to_string()));
    }
}

impl HostV2 for TestHost {
    fn claim(&mut self, path: &[u8], buf: &mut [u8]) -> i32 {
        self.counts.claim += 1;
        match self.resolve(path) {
            Err(code) => code,
            Ok(None) => MISSING,
            Ok(Some(v)) => match text_form(v) {
                None => MISSING,
                Some(t) => answer(t.as_bytes(), buf),
            },
        }
    }
    fn claim_kind(&mut self, path: &[u8]) -> i32 {
        self.counts.claim_kind += 1;
        match self.resolve(path) {
            Err(code) => code,
            Ok(None) => MISSING,
            Ok(Some(v)) => ClaimKind::of(v).code(),
        }
    }
    fn claim_count(&mut self, path: &[u8]) -> i32 {
        self.counts.claim_count += 1;
        match self.resolve(path) {
            Err(code) => code,
            Ok(None) | Ok(Some(Value::Null)) => MISSING,
            Ok(Some(Value::Array(a))) => a.len() as i32,
            Ok(Some(Value::Object(m))) => m.len() as i32,
            Ok(Some(_)) => NOT_CONTAINER,
        }
    }
    fn request_field(&mut self, field: i32, buf: &mut [u8]) -> i32 {
        self.counts.request_field += 1;
        let r = &self.request;
        let v = match field {
            0 => r.method.as_str(),
            1 => r.path.as_str(),
            2 => r.query.as_str(),
            3 => r.host.as_str(),
            4 | 5 => match &r.client_cert {
                None => return MISSING,
                Some(c) if field == 4 => c.sha256.as_str(),
                Some(c) => c.subject.as_str(),
            },
            _ => return INVALID,
        };
        answer(v.as_bytes(), buf)
    }
    fn request_header(&mut self, name: &[u8], buf: &mut [u8]) -> i32 {
        self.counts.request_header += 1;
        let name = match std::str::from_utf8(name) {
            Ok(n) if headers::is_token(n) => n,
            _ => return INVALID,
        };
        if !self.header_visible(name) {
            return NOT_VISIBLE;
        }
        let joined: Vec<&str> = self
            .request
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        if joined.is_empty() {
            return MISSING;
        }
        answer(joined.join(", ").as_bytes(), buf)
    }
    fn claims_json(&mut self, buf: &mut [u8]) -> i32 {
        self.counts.claims_json += 1;
        answer(self.claims_json.as_bytes(), buf)
    }
    fn request_json(&mut self, buf: &mut [u8]) -> i32 {
        self.counts.request_json += 1;
        let text = self.request_json_text();
        answer(text.as_bytes(), buf)
    }
    fn header_batch(&mut self, batch: &mut HeaderBatch) -> i32 {
        self.counts.header_batch += 1;
        // Decode the wire layout with base 0: pointers are text offsets.
        let raw = batch.encode(0).to_vec();
        if raw.len() % BATCH_ENTRY_LEN != 0 || raw.len() / BATCH_ENTRY_LEN > MAX_BATCH_ENTRIES {
            return 2;
        }
        let text = batch.text().to_vec();
        for (i, e) in raw.chunks(BATCH_ENTRY_LEN).enumerate() {
            let w = |k: usize| {
                u32::from_le_bytes([e[4 * k], e[4 * k + 1], e[4 * k + 2], e[4 * k + 3]]) as usize
            };
            let (op, np, nl, vp, vl) = (w(0) as u32, w(1), w(2), w(3), w(4));
            if !(OP_SET..=OP_REMOVE).contains(&op) {
                return 2 | ((i as i32) << 8);
            }
            let name = &text[np..np + nl];
            let value: &[u8] = if op == OP_REMOVE {
                b""
            } else {
                &text[vp..vp + vl]
            };
            let code = self.header_write(op, name, value);
            if code != 0 {
                return code | ((i as i32) << 8);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ClaimPath {
        ClaimPath::parse(s).unwrap()
    }

    const CLAIMS: &str = r#"{"sub":"u-1","n":42.0,"f":1e-7,"q":0.25,"big":1.5e300,"neg":-7,"t":true,
        "nul":null,"roles":["admin","ops",3,null,{"k":"é"}],"org":{"tenant":{"id":"acme"}},
        "https://example.com/roles":["x"],"uni":"Zoë 😀","esc":{"a":"\n\u007f"}}"#;

    fn run(host: &mut TestHost, f: fn(&(), &mut Ctx<'_>) -> Outcome) -> Outcome {
        host.run(&(), f)
    }

    #[test]
    fn text_forms_follow_the_spec() {
        let mut h = TestHost::new(CLAIMS);
        let mut st = CtxState::with_buffer(4);
        let mut ctx = Ctx::new(&mut h, &mut st);
        let cases = [
            ("sub", Some("u-1")),
            ("n", Some("42")),
            ("f", Some("1e-7")),
            ("q", Some("0.25")),
            ("big", Some("1.5e300")),
            ("neg", Some("-7")),
            ("t", Some("true")),
            ("nul", None),
            ("missing", None),
            ("roles", Some(r#"["admin","ops",3,null,{"k":"\u00e9"}]"#)),
            ("org", Some(r#"{"tenant":{"id":"acme"}}"#)),
            ("org.tenant.id", Some("acme")),
            ("roles.1", Some("ops")),
            ("roles.3", None),
            ("roles.01", None),
            ("uni", Some("Zoë 😀")),
            ("esc", Some(r#"{"a":"\n\u007f"}"#)),
        ];
        for (path, want) in cases {
            assert_eq!(ctx.claim_text(&p(path)), want, "{}", path);
        }
        let dotted = ClaimPath::from_segments(["https://example.com/roles"]).unwrap();
        assert_eq!(ctx.claim_text(&dotted), Some(r#"["x"]"#));
        assert_eq!(ctx.claim_count(&dotted), Some(1));
        assert!(ctx.fault_message().is_none());
        drop(ctx);
        assert!(st.read_buffer_len() >= 37, "the read buffer grew on retry");
    }

    #[test]
    fn kinds_counts_and_items() {
        let mut h = TestHost::new(CLAIMS);
        let mut st = CtxState::new();
        let mut ctx = Ctx::new(&mut h, &mut st);
        use ClaimKind::*;
        for (path, k) in [
            ("sub", String),
            ("n", Number),
            ("t", Bool),
            ("nul", Null),
            ("missing", Absent),
            ("roles", Array),
            ("org", Object),
        ] {
            assert_eq!(ctx.claim_kind(&p(path)), k, "{}", path);
        }
        let roles = p("roles");
        assert_eq!(ctx.claim_count(&roles), Some(5));
        assert_eq!(ctx.claim_count(&p("org")), Some(1));
        assert_eq!(ctx.claim_count(&p("sub")), None);
        assert_eq!(ctx.claim_count(&p("nul")), None);
        assert_eq!(ctx.claim_item_text(&roles, 0), Some("admin"));
        assert_eq!(ctx.claim_item_text(&roles, 2), Some("3"));
        assert_eq!(ctx.claim_item_text(&roles, 3), None);
        assert_eq!(ctx.claim_item_kind(&roles, 3), Null);
        assert_eq!(ctx.claim_item_text(&roles, 4), Some(r#"{"k":"\u00e9"}"#));
        assert_eq!(ctx.claim_item_kind(&roles, 9), Absent);
        let mut s = std::string::String::from(">");
        assert!(ctx.push_claim_item_text(&roles, 1, &mut s));
        assert!(ctx.push_claim_text(&p("n"), &mut s));
        assert!(!ctx.push_claim_text(&p("nul"), &mut s));
        assert_eq!(s, ">ops42");
        assert!(ctx.fault_message().is_none());
    }

    #[test]
    fn the_test_host_answers_invalid_paths_and_buffer_protocol() {
        let mut h = TestHost::new(CLAIMS);
        let mut buf = [0u8; 4];
        assert_eq!(h.claim(b"", &mut buf), INVALID);
        assert_eq!(h.claim(b"org\0", &mut buf), INVALID);
        assert_eq!(h.claim(b"\0org", &mut buf), INVALID);
        assert_eq!(h.claim(b"org\0\0id", &mut buf), INVALID);
        assert_eq!(h.claim(b"\xff", &mut buf), INVALID);
        assert_eq!(h.claim(&[b'a'; 1025], &mut buf), INVALID);
        assert_eq!(h.claim_kind(b"org\0",), INVALID);
        assert_eq!(h.claim_count(b"sub"), NOT_CONTAINER);
        // Too small: the length, nothing written.
        assert_eq!(h.claim(b"org\0tenant\0id", &mut buf[..3]), 4);
        assert_eq!(buf, [0; 4]);
        assert_eq!(h.claim(b"org\0tenant\0id", &mut buf), 4);
        assert_eq!(&buf, b"acme");
        assert_eq!(h.claim(b"sub", &mut []), 3);
        assert_eq!(h.request_field(9, &mut buf), INVALID);
        assert_eq!(h.request_field(4, &mut buf), MISSING);
        assert_eq!(h.request_header(b"x tenant", &mut buf), INVALID);
        assert_eq!(h.request_header(b"x-tenant", &mut buf), NOT_VISIBLE);
    }

    #[test]
    fn request_fields_headers_and_full_json() {
        let req = Request {
            method: "POST".into(),
            path: "/a/b".into(),
            query: "x=1".into(),
            host: "example.com".into(),
            headers: vec![
                ("x-tenant".into(), "acme".into()),
                ("x-multi".into(), "1".into()),
                ("x-multi".into(), "2".into()),
            ],
            client_cert: Some(ClientCert {
                sha256: "q2V".into(),
                subject: "CN=a".into(),
            }),
        };
        let mut h = TestHost::new(r#"{"sub":"s"}"#).with_request(req.clone());
        let mut st = CtxState::with_buffer(2);
        let mut ctx = Ctx::new(&mut h, &mut st);
        assert_eq!(ctx.method(), "POST");
        assert_eq!(ctx.path(), "/a/b");
        assert_eq!(ctx.query(), "x=1");
        assert_eq!(ctx.host(), "example.com");
        assert_eq!(ctx.client_cert(), req.client_cert);
        assert_eq!(ctx.header("X-Tenant"), Some("acme"));
        assert_eq!(ctx.header("x-multi"), Some("1, 2"));
        assert_eq!(ctx.header("x-other"), None);
        assert_eq!(ctx.header("bad name"), None);
        let full = ctx.request().unwrap().clone();
        assert_eq!(full.method, "POST");
        assert_eq!(full.client_cert, req.client_cert);
        assert_eq!(full.header("x-tenant"), Some("acme"));
        assert_eq!(ctx.claims().unwrap().get("sub"), Some(&Value::from("s")));
        assert!(ctx.fault_message().is_none());
        drop(ctx);
        assert_eq!(h.counts.request_json, 2, "one short read, one retry");
        assert_eq!(h.counts.claims_json, 1, "the buffer had grown already");
    }

    fn sets_three(_: &(), ctx: &mut Ctx<'_>) -> Outcome {
        ctx.set_header("x-a", "1");
        ctx.remove_header("x-b");
        ctx.append_header("x-c", "3");
        Outcome::Continue(vec![HeaderChange::set("x-d", "4")])
    }

    #[test]
    fn changes_go_out_in_one_batch_in_order() {
        let mut h = TestHost::new("{}");
        let out = run(&mut h, sets_three);
        assert_eq!(
            out,
            Outcome::Continue(vec![
                HeaderChange::set("x-a", "1"),
                HeaderChange::remove("x-b"),
                HeaderChange::append("x-c", "3"),
                HeaderChange::set("x-d", "4"),
            ])
        );
        assert_eq!(h.counts.header_batch, 1);
        // No changes: no call at all.
        let mut h = TestHost::new("{}");
        assert_eq!(run(&mut h, |_, _| Outcome::pass()), Outcome::pass());
        assert_eq!(h.counts.header_batch, 0);
    }

    #[test]
    fn batch_layout_is_five_le_u32_per_entry() {
        let mut b = HeaderBatch::new();
        b.set("x-a", "v");
        b.remove("x-b");
        let raw = b.encode(1000).to_vec();
        assert_eq!(raw.len(), 40);
        let w = |i: usize| {
            u32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]])
        };
        assert_eq!([w(0), w(1), w(2), w(3), w(4)], [1, 1000, 3, 1003, 1]);
        assert_eq!([w(5), w(6), w(7), w(8), w(9)], [3, 1004, 3, 0, 0]);
        assert_eq!(b.text(), b"x-avx-b");
    }

    #[test]
    fn a_refused_entry_is_logged_by_name_and_fails_the_call() {
        let mut h = TestHost::new("{}");
        h.answer = |n| if n == "x-c" { 1 } else { 0 };
        let out = run(&mut h, sets_three);
        match out {
            Outcome::Error(m) => {
                assert!(m.starts_with("append_header(`x-c`) refused"), "{}", m);
                assert!(m.contains("allow-list"), "{}", m);
            }
            other => panic!("{:?}", other),
        }
        assert_eq!(batch_refusal(1 | (2 << 8)), (1, 2));
        assert_eq!(batch_refusal(2 | (1023 << 8)), (2, 1023));
        let mut h = TestHost::new("{}");
        let out = run(&mut h, |_, ctx| {
            ctx.set_header("x-a", "bad\r\nvalue");
            Outcome::pass()
        });
        assert!(matches!(out, Outcome::Error(m) if m.contains("invalid")));
        let mut h = TestHost::new("{}");
        let out = run(&mut h, |_, ctx| {
            ctx.st.batch.push_op(9, "x-a", "v");
            Outcome::pass()
        });
        assert!(matches!(out, Outcome::Error(m) if m.starts_with("header_batch(`x-a`)")));
    }

    #[test]
    fn deny_and_error_outcomes_drop_recorded_changes() {
        let mut h = TestHost::new("{}");
        let out = run(&mut h, |_, ctx| {
            ctx.set_header("x-a", "1");
            Outcome::deny(403, "no")
        });
        assert_eq!(out, Outcome::deny(403, "no"));
        assert_eq!(h.counts.header_batch, 0);
        let out = run(&mut h, |_, _| Outcome::deny(500, "no"));
        assert!(matches!(out, Outcome::Error(m) if m.contains("400..=499")));
        assert_eq!(
            run(&mut h, |_, _| Outcome::Error("bad".into())),
            Outcome::Error("bad".into())
        );
    }

    #[test]
    fn an_unreadable_path_is_a_fault_that_fails_the_call() {
        let mut h = TestHost::new(r#"{"a":1}"#);
        let out = run(&mut h, |_, ctx| {
            let nul = ClaimPath::from_segments(["a\0b"]).unwrap();
            if ctx.claim_kind(&nul).is_present() {
                Outcome::deny(403, "present")
            } else {
                Outcome::pass() // would wrongly pass: the fault wins
            }
        });
        assert!(
            matches!(&out, Outcome::Error(m) if m.contains("NUL")),
            "{:?}",
            out
        );
    }

    #[test]
    fn scratch_strings_are_reused_and_nest() {
        let mut h = TestHost::new(r#"{"a":"xyz"}"#);
        let mut st = CtxState::new();
        fn f(_: &(), ctx: &mut Ctx<'_>) -> Outcome {
            ctx.with_scratch(|ctx, a| {
                ctx.push_claim_text(&ClaimPath::parse("a").unwrap(), a);
                ctx.with_scratch(|ctx, b| {
                    assert!(b.is_empty());
                    b.push_str(a);
                    b.push('!');
                    ctx.set_header("x-a", b);
                });
            });
            Outcome::pass()
        }
        for _ in 0..3 {
            assert_eq!(
                h.run_with(&mut st, &(), f),
                Outcome::Continue(vec![HeaderChange::set("x-a", "xyz!")])
            );
        }
        assert_eq!(st.scratch.len(), 2);
        assert!(st.scratch.iter().all(|s| s.capacity() > 0 && s.is_empty()));
    }

    #[test]
    fn number_from_text_reads_the_text_forms() {
        use crate::json::Number;
        assert!(matches!(Number::from_text("42"), Some(Number::Int(42))));
        assert!(matches!(Number::from_text("-7"), Some(Number::Int(-7))));
        assert!(matches!(Number::from_text("1e-7"), Some(Number::Float(f)) if f == 1e-7));
        assert!(matches!(Number::from_text("1.5e300"), Some(Number::Float(f)) if f == 1.5e300));
        assert!(matches!(Number::from_text("0.25"), Some(Number::Float(f)) if f == 0.25));
        for bad in ["", "x", "\"1\"", "[1]", "true", " 1", "1 2"] {
            assert!(Number::from_text(bad).is_none(), "{:?}", bad);
        }
    }
}
