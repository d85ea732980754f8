//! The Wasm engine shared by every plugin, and the epoch ticker that gives
//! plugin calls their deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig,
};

use super::PluginError;

/// Engine-wide settings. The defaults suit a gateway; tests and the CLI
/// use them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// How often the engine epoch advances: the granularity at which a
    /// call's CPU time is checked against its deadline (`clock.rs`).
    pub epoch_tick: Duration,
    /// Instance slots of the pooling allocator: the most plugin instances
    /// alive at once (reused ones are one per worker thread per plugin).
    /// 0 selects on-demand allocation (slower fresh instances, no cap).
    pub pool_slots: u32,
    /// The largest `limits.memory_bytes` any plugin may ask for.
    pub max_memory_bytes: usize,
    /// Native stack a guest may use, in bytes (deep recursion traps).
    pub max_wasm_stack: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            epoch_tick: Duration::from_millis(1),
            pool_slots: 1000,
            max_memory_bytes: 256 << 20,
            max_wasm_stack: 512 << 10,
        }
    }
}

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Preallocated slots: a fresh instance costs microseconds.
    Pooling,
    /// mmap per instance: slower, used when the pool cannot be reserved.
    OnDemand,
}

/// The Wasm engine (Cranelift, epoch interruption, no WASI) plus a ticker
/// thread advancing its epoch. Create one per process and share it (it is
/// cheap to clone); compiled plugins keep it alive, so the ticker runs as
/// long as any plugin can still be called.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) config: HostConfig,
    pub(crate) allocator: Allocator,
    modules: Mutex<ModuleCache>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

/// Compiled modules by SHA-256 of their bytes, so a config reload that keeps
/// a module does not pay Cranelift again. Bounded; least recently used out.
#[derive(Default)]
struct ModuleCache {
    clock: u64,
    entries: Vec<CachedModule>,
}

struct CachedModule {
    digest: [u8; 32],
    module: Module,
    last_used: u64,
}

/// Memory of a freed pool slot kept resident for the next instance.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Modules kept by the cache.
const MODULE_CACHE_ENTRIES: usize = 32;

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.inner.config)
            .field("allocator", &self.inner.allocator)
            .finish()
    }
}

impl PluginHost {
    /// A host with [`HostConfig::default`].
    pub fn new() -> Result<PluginHost, PluginError> {
        PluginHost::with_config(HostConfig::default())
    }

    /// A host with explicit settings. Falls back to on-demand allocation
    /// (with a warning) when the pool's address space cannot be reserved,
    /// e.g. under a tight `ulimit -v`.
    pub fn with_config(config: HostConfig) -> Result<PluginHost, PluginError> {
        if config.epoch_tick.is_zero() {
            return Err(PluginError::Engine {
                detail: "epoch_tick must be greater than zero".to_string(),
            });
        }
        if config.max_memory_bytes < 64 << 10 {
            return Err(PluginError::Engine {
                detail: "max_memory_bytes must be at least one Wasm page (65536)".to_string(),
            });
        }
        let (engine, allocator) = if config.pool_slots > 0 {
            match Engine::new(&engine_config(&config, true)) {
                Ok(engine) => (engine, Allocator::Pooling),
                Err(e) => {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        "plugin host: cannot reserve the instance pool, using on-demand allocation (fresh instances are slower)"
                    );
                    (new_engine(&config, false)?, Allocator::OnDemand)
                }
            }
        } else {
            (new_engine(&config, false)?, Allocator::OnDemand)
        };

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("portcullis-plugin-epoch".to_string())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Engine {
                    detail: format!("cannot start the epoch ticker thread: {e}"),
                })?
        };
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                engine,
                config,
                allocator,
                modules: Mutex::new(ModuleCache::default()),
                stop,
                ticker: Some(ticker),
            }),
        })
    }

    /// How instances are allocated.
    pub fn allocator(&self) -> Allocator {
        self.inner.allocator
    }

    /// The settings in force.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }
}

impl HostInner {
    /// The compiled module for these bytes (binary Wasm or WAT), from the
    /// cache when the same bytes were compiled before.
    pub(crate) fn module(&self, wasm: &[u8]) -> wasmtime::Result<Module> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        {
            let mut cache = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            cache.clock += 1;
            let now = cache.clock;
            if let Some(hit) = cache.entries.iter_mut().find(|e| e.digest == digest) {
                hit.last_used = now;
                return Ok(hit.module.clone());
            }
        }
        // Compiled outside the lock: other plugins may compile meanwhile.
        let module = Module::new(&self.engine, wasm)?;
        let mut cache = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        cache.clock += 1;
        let now = cache.clock;
        if !cache.entries.iter().any(|e| e.digest == digest) {
            if cache.entries.len() >= MODULE_CACHE_ENTRIES {
                if let Some(oldest) =
                    (0..cache.entries.len()).min_by_key(|&i| cache.entries[i].last_used)
                {
                    cache.entries.swap_remove(oldest);
                }
            }
            cache.entries.push(CachedModule {
                digest,
                module: module.clone(),
                last_used: now,
            });
        }
        Ok(module)
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            // Exits within one tick; a panic there is impossible (it only
            // sleeps and bumps a counter), so the result carries nothing.
            let _ = ticker.join();
        }
    }
}

fn new_engine(config: &HostConfig, pooling: bool) -> Result<Engine, PluginError> {
    Engine::new(&engine_config(config, pooling)).map_err(|e| PluginError::Engine {
        detail: format!("cannot create the Wasm engine: {e:#}"),
    })
}

fn engine_config(config: &HostConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.max_wasm_stack(config.max_wasm_stack);
    // Trap messages are reported by code only; skip the backtrace capture.
    c.wasm_backtrace_max_frames(None);
    // Lets `perf` name the plugins' compiled functions (writes
    // /tmp/perf-<pid>.map); for profiling a slow plugin, off by default.
    if std::env::var_os("PORTCULLIS_WASM_PERFMAP").is_some_and(|v| v == "1") {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(config.pool_slots)
            .total_memories(config.pool_slots)
            .total_tables(config.pool_slots)
            .max_memory_size(config.max_memory_bytes)
            .max_memories_per_module(1)
            .max_tables_per_module(1);
        // Reset up to 1 MiB of a freed slot with memset (only dirty pages,
        // where PAGEMAP_SCAN exists) instead of madvise, so the next fresh
        // instance does not page-fault its stack and data back in: measured
        // 58 -> 32 us per `per_request` call of claims-to-headers. Bounded
        // RSS cost: at most this much per warm slot, and warm slots are
        // capped below.
        pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES)
            .pagemap_scan(Enabled::Auto)
            .max_unused_warm_slots(32);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pool_slots_select_on_demand_allocation() {
        let host = PluginHost::with_config(HostConfig {
            pool_slots: 0,
            ..HostConfig::default()
        })
        .unwrap();
        assert_eq!(host.allocator(), Allocator::OnDemand);
    }

    #[test]
    fn the_same_bytes_compile_once_and_the_cache_stays_bounded() {
        let host = PluginHost::new().unwrap();
        let wat = |n: usize| format!("(module (func (export \"f{n}\")))");
        let a = host.inner.module(wat(0).as_bytes()).unwrap();
        let b = host.inner.module(wat(0).as_bytes()).unwrap();
        assert!(Module::same(&a, &b));
        for n in 1..=MODULE_CACHE_ENTRIES + 3 {
            host.inner.module(wat(n).as_bytes()).unwrap();
        }
        let cache = host.inner.modules.lock().unwrap();
        assert_eq!(cache.entries.len(), MODULE_CACHE_ENTRIES);
    }

    #[test]
    fn dropping_the_host_stops_the_ticker() {
        let host = PluginHost::new().unwrap();
        let engine = host.inner.engine.clone();
        drop(host);
        // The ticker thread held the last other engine clone; once joined,
        // only ours is left and nothing advances the epoch any more.
        let weak = engine.weak();
        drop(engine);
        assert!(weak.upgrade().is_none());
    }
}
