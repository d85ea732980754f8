//! A compiled plugin's shared state and its started instances: the types
//! the compile step builds, the call path runs and the per-thread cache
//! keeps (that cache only sees these, never the compile step).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::HeaderName;
use wasmtime::{InstancePre, ModuleExport, Store, TypedFunc};

use super::abi::{HostState, Policy};
use super::host::HostInner;
use super::{Isolation, Limits, OnError};

/// How many compiled plugins have been dropped, ever: each thread's cache
/// sweeps its dead entries when this moves.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The current [`DROPPED`] count.
pub(crate) fn plugins_dropped() -> u64 {
    DROPPED.load(Ordering::Acquire)
}

/// Everything about one compiled plugin that its instances share.
pub(crate) struct Shared {
    /// Key of this plugin's instances in each thread's cache.
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    /// Keeps the engine and its epoch ticker alive while the plugin is.
    pub(super) host: Arc<HostInner>,
    pub(super) pre: InstancePre<HostState>,
    pub(super) exports: AbiExports,
    pub(super) config_json: Vec<u8>,
    pub(super) policy: Arc<Policy>,
    pub(crate) request_headers: Vec<HeaderName>,
    pub(crate) on_error: OnError,
    pub(crate) isolation: Isolation,
    pub(crate) limits: Limits,
    /// 1 or 2, from the module's `portcullis_on_request` signature.
    pub(crate) abi: AbiVersion,
    /// The module imports a `request_*` reader: copy the request per call.
    pub(super) reads_request: bool,
    /// `limits.deadline` as a CPU budget per call.
    pub(super) budget: super::clock::CpuBudget,
}

/// The ABI a module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiVersion {
    /// `portcullis_on_request(claims_ptr, claims_len, req_ptr, req_len)`:
    /// claims and request copied in as JSON.
    V1,
    /// `portcullis_on_request()`: the guest reads what it needs by import.
    V2,
}

impl AbiVersion {
    /// What `portcullis_abi_version` must return.
    pub fn number(self) -> i32 {
        match self {
            AbiVersion::V1 => 1,
            AbiVersion::V2 => 2,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Release);
    }
}

/// The module exports the ABI requires, resolved once.
pub(super) struct AbiExports {
    pub(super) memory: ModuleExport,
    pub(super) abi_version: ModuleExport,
    pub(super) alloc: ModuleExport,
    pub(super) init: ModuleExport,
    pub(super) on_request: ModuleExport,
}

/// A started instance: `init` has run successfully.
pub(crate) struct Live {
    pub(super) store: Store<HostState>,
    pub(super) alloc: TypedFunc<i32, i32>,
    pub(super) on_request: OnRequest,
}

/// `portcullis_on_request` in either ABI.
pub(super) enum OnRequest {
    V1(TypedFunc<(i32, i32, i32, i32), i32>),
    V2(TypedFunc<(), i32>),
}
