//! Guest-side SDK for **Portcullis Wasm policy plugins**, ABI v2 and v1
//! (specified in `plugins/ABI.md`).
//!
//! A plugin is a `cdylib` crate built for `wasm32-unknown-unknown` that
//! declares three things and lets a macro generate the ABI exports:
//!
//! - [`plugin_v2!`] (ABI v2, recommended): `on_request(&Config, &mut Ctx)`
//!   reads claims and request parts on demand through the host imports —
//!   claim values arrive in their text form, nothing is parsed — and header
//!   changes go out in one `header_batch` call. See [`v2`].
//! - [`plugin!`] (ABI v1): `on_request(&Config, &Value, &Request)` gets the
//!   parsed claims and request; unchanged, for existing plugins:
//!
//! ```
//! use portcullis_plugin_sdk::{plugin, HeaderChange, Outcome, Request, Value};
//!
//! struct Config { header: String }
//!
//! fn init(cfg: &Value) -> Result<Config, String> {
//!     let header = cfg.get("header").and_then(Value::as_str).unwrap_or("X-User-Id");
//!     Ok(Config { header: header.to_string() })
//! }
//!
//! fn on_request(cfg: &Config, claims: &Value, _req: &Request) -> Outcome {
//!     match claims.get("sub").and_then(Value::as_str) {
//!         Some(sub) => Outcome::Continue(vec![HeaderChange::set(cfg.header.clone(), sub)]),
//!         None => Outcome::deny(401, "token has no subject"),
//!     }
//! }
//!
//! plugin!(Config, init, on_request);
//! ```
//!
//! The logic stays plain Rust, testable on the host with `cargo test`: the
//! exports and host imports only exist when compiling for `wasm32`.
//!
//! What the SDK guarantees for the ABI:
//! - `portcullis_abi_version` returns [`ABI_VERSION`];
//! - `portcullis_alloc` hands out guest-owned buffers that are all freed at
//!   the end of the next `portcullis_init`/`portcullis_on_request` call, so a
//!   reused instance does not leak ([`rt::Inputs`]);
//! - input pointers are checked to lie in buffers it handed out;
//! - the config and claims are parsed with a strict JSON parser with a
//!   nesting limit ([`json`]); claims must be an object;
//! - `init` errors are logged at level error and answered with 1;
//! - an [`Outcome`] is applied in order: header calls (a nonzero host answer
//!   is logged and turns the call into error code 2), or `deny` then 1
//!   (a status outside 400..=499 is an error instead), or a logged error, 2;
//! - a panic logs its message, then traps (release builds use
//!   `panic = "abort"`); the host re-creates the instance.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod alloc;
pub mod base64;
pub mod config;
pub mod headers;
pub mod host;
pub mod json;
pub mod path;
pub mod request;
pub mod rt;
pub mod v2;

/// Small allocations of every plugin built with the SDK go through free
/// lists ([`alloc`]); the host runs an instance on one thread at a time.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: alloc::SmallBlocks = alloc::SmallBlocks::new();

#[cfg(target_arch = "wasm32")]
pub use host::{append_header, deny, remove_header, set_header};
pub use host::{log, HeaderChange, HeaderError, Host, Level, Outcome, RecordingHost};
pub use json::{Number, Value};
pub use path::ClaimPath;
pub use request::{ClientCert, Request};
pub use v2::{ClaimKind, Ctx, CtxState, Field, HeaderBatch, HostV2, TestHost, ABI_VERSION_V2};

/// The ABI version [`plugin!`] modules report (`portcullis_abi_version`):
/// 1. [`plugin_v2!`] modules report [`ABI_VERSION_V2`].
pub const ABI_VERSION: i32 = 1;

/// Generates the ABI v1 exports for a plugin:
/// `plugin!(ConfigType, init_fn, on_request_fn);` with
///
/// - `fn init_fn(config: &Value) -> Result<ConfigType, String>` — called once
///   per instance with the plugin's `config:` (as JSON; `{}` when absent).
///   `Err(reason)` rejects the config (logged at level error, returns 1).
/// - `fn on_request_fn(config: &ConfigType, claims: &Value, req: &Request) -> Outcome`
///   — called per request with the verified claims (an object) and request.
///
/// On `wasm32` this defines `portcullis_abi_version`, `portcullis_alloc`,
/// `portcullis_init` and `portcullis_on_request`; elsewhere it only checks
/// the function signatures, so the crate still builds and tests on the host.
/// Use it once per crate.
#[macro_export]
macro_rules! plugin {
    ($config:ty, $init:path, $on_request:path $(,)?) => {
        #[allow(dead_code)]
        fn __portcullis_plugin_signatures() {
            let _: fn(&$crate::Value) -> ::core::result::Result<$config, ::std::string::String> =
                $init;
            let _: fn(&$config, &$crate::Value, &$crate::Request) -> $crate::Outcome = $on_request;
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static STATE: $crate::rt::Global<::core::option::Option<$config>> =
                $crate::rt::Global::new(::core::option::Option::None);

            /// ABI version implemented by this module.
            #[no_mangle]
            pub extern "C" fn portcullis_abi_version() -> i32 {
                $crate::ABI_VERSION
            }

            /// Buffer for the host to copy an input into; 0 when out of memory.
            #[no_mangle]
            pub extern "C" fn portcullis_alloc(len: i32) -> i32 {
                $crate::rt::wasm_alloc(len)
            }

            /// Receives the plugin config (JSON). 0 ok, 1 rejected.
            #[no_mangle]
            pub extern "C" fn portcullis_init(cfg_ptr: i32, cfg_len: i32) -> i32 {
                $crate::rt::wasm_init(&STATE, cfg_ptr, cfg_len, $init)
            }

            /// Decides one request. 0 continue, 1 denied, 2 error.
            #[no_mangle]
            pub extern "C" fn portcullis_on_request(
                claims_ptr: i32,
                claims_len: i32,
                req_ptr: i32,
                req_len: i32,
            ) -> i32 {
                $crate::rt::wasm_on_request(
                    &STATE,
                    claims_ptr,
                    claims_len,
                    req_ptr,
                    req_len,
                    $on_request,
                )
            }
        };
    };
}

/// Generates the ABI **v2** exports for a plugin:
/// `plugin_v2!(ConfigType, init_fn, on_request_fn);` with
///
/// - `fn init_fn(config: &Value) -> Result<ConfigType, String>` — as for
///   [`plugin!`]. Check claim paths with [`ClaimPath::check_addressable`]
///   here, so a path v2 cannot address rejects the config.
/// - `fn on_request_fn(config: &ConfigType, ctx: &mut Ctx) -> Outcome` —
///   reads what it needs through [`Ctx`], records header changes with
///   [`Ctx::set_header`] & co. (or returns them in `Outcome::Continue`) and
///   decides. The SDK sends the changes in one `header_batch` call, calls
///   `deny`, or logs the error; see [`Ctx::finish`].
///
/// On `wasm32` this defines `portcullis_abi_version` (returning 2),
/// `portcullis_alloc` (used for the config only), `portcullis_init` and
/// `portcullis_on_request()` without parameters; elsewhere it only checks
/// the signatures, so the crate builds and tests on the host (with
/// [`TestHost`]). Use it once per crate, instead of [`plugin!`].
#[macro_export]
macro_rules! plugin_v2 {
    ($config:ty, $init:path, $on_request:path $(,)?) => {
        #[allow(dead_code)]
        fn __portcullis_plugin_v2_signatures() {
            let _: fn(&$crate::Value) -> ::core::result::Result<$config, ::std::string::String> =
                $init;
            let _: fn(&$config, &mut $crate::Ctx<'_>) -> $crate::Outcome = $on_request;
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static STATE: $crate::rt::Global<::core::option::Option<$config>> =
                $crate::rt::Global::new(::core::option::Option::None);

            /// ABI version implemented by this module: 2.
            #[no_mangle]
            pub extern "C" fn portcullis_abi_version() -> i32 {
                $crate::ABI_VERSION_V2
            }

            /// Buffer for the host to copy the config into; 0 when out of memory.
            #[no_mangle]
            pub extern "C" fn portcullis_alloc(len: i32) -> i32 {
                $crate::rt::wasm_alloc(len)
            }

            /// Receives the plugin config (JSON). 0 ok, 1 rejected.
            #[no_mangle]
            pub extern "C" fn portcullis_init(cfg_ptr: i32, cfg_len: i32) -> i32 {
                $crate::rt::wasm_init(&STATE, cfg_ptr, cfg_len, $init)
            }

            /// Decides one request (ABI v2: no parameters). 0 continue,
            /// 1 denied, 2 error.
            #[no_mangle]
            pub extern "C" fn portcullis_on_request() -> i32 {
                $crate::v2::wasm_on_request_v2(&STATE, $on_request)
            }
        };
    };
}
