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
    pub(super) deadline_ticks: u64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Release);
    }
}

/// The module exports ABI v1 requires, resolved once.
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
    pub(super) on_request: TypedFunc<(i32, i32, i32, i32), i32>,
}
