//! The wasmtime engine every plugin runs on: Cranelift, the component model, the pooling
//! allocator (instances and the fibers that async calls run on), epoch interruption driven by
//! a 1 ms ticker thread, and one linker holding every host import. Compiled components are cached on disk by content hash and engine
//! compatibility, so a restart or a re-dropped plugin skips Cranelift.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::auth::AuthPlugin;
use super::engine_error;
use super::invalid_component;
use super::state::PluginState;
use crate::error::HearthError;

/// How often the epoch advances: the resolution of every plugin deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// The largest memory cap a plugin may ask for; the pool reserves address space for it.
pub const MAX_MEMORY_BYTES: usize = 128 << 20;
/// How much of an instance's memory is reset in place (zeroed) when the instance ends,
/// rather than given back to the kernel. Each call gets a fresh instance, so what the next
/// call pays for is the reset plus a page fault for every page the kernel took back: the
/// `madvise` and the faults were two thirds of a fresh call (30 µs of auth-keys' 34).
/// Zeroing the first 128 KiB covers all of a plugin built with a 64 KiB stack (the default
/// plugins are, see plugins/.cargo/config.toml; the `hearth plugin new` template too): a
/// fresh auth-keys call fell to 13 µs. Memory past it is still given back.
pub const KEEP_RESIDENT_BYTES: usize = 128 << 10;
/// Likewise for tables (a few KiB in practice).
const KEEP_RESIDENT_TABLE_BYTES: usize = 16 << 10;
/// Plugin instances alive at once, all plugins together: calls beyond it are refused at once
/// (`pool_exhausted`) rather than queued.
pub const POOL_INSTANCES: u32 = 128;

/// The shared engine, linker and compile cache.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    /// Components compiled by this process, by SHA-256 of their bytes.
    compiled: Mutex<HashMap<String, Component>>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// The process's engine (one ticker thread, one instance pool, one compile cache for
    /// every plugin host); the first caller's `cache_dir` is the on-disk cache.
    pub fn shared(cache_dir: Option<PathBuf>) -> Result<&'static Self, HearthError> {
        static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
        if let Some(engine) = ENGINE.get() {
            return Ok(engine);
        }
        let engine = Self::new(cache_dir)?;
        Ok(ENGINE.get_or_init(|| engine))
    }

    /// An engine whose compiled plugins are cached under `cache_dir` (none: no cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, HearthError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .max_memory_size(MAX_MEMORY_BYTES)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
            // Every call runs on a fiber stack from the pool: one per live instance.
            .total_stacks(POOL_INSTANCES);
        let mut config = Config::new();
        config
            // Reserve only the largest cap per memory (not wasmtime's 4 GiB default) so the
            // pool's address space stays modest; bounds checks become explicit.
            .memory_reservation(MAX_MEMORY_BYTES as u64)
            .memory_guard_size(64 << 10)
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        // WASI's async host side: a guest's stderr write (a Rust panic message) is awaited on
        // the calling task instead of blocking a tokio worker in `block_on`.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        // The auth world imports `host` and `keys`: linking it covers every world's imports.
        AuthPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(engine_error)?;
        spawn_ticker(&engine);
        if let Some(dir) = &cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "plugin compile cache disabled");
        }
        Ok(Self {
            engine,
            linker,
            cache_dir,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }

    /// Compiles `bytes` (a component), or loads its cached compiled form.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, String), HearthError> {
        let digest = hex(&Sha256::digest(bytes));
        let mut compiled = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(component) = compiled.get(&digest) {
            return Ok((component.clone(), digest));
        }
        let component = self.compile_uncached(bytes, &digest)?;
        compiled.insert(digest.clone(), component.clone());
        Ok((component, digest))
    }

    fn compile_uncached(&self, bytes: &[u8], digest: &str) -> Result<Component, HearthError> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish())));
        if let Some(path) = cached.as_deref().filter(|p| p.is_file()) {
            match load_cached(&self.engine, path) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring a bad cache entry")
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(invalid_component);
        // Cranelift's working memory (~75 MB for the three default plugins) was freed on
        // rayon's threads, which keep it until they next allocate.
        crate::allocator::return_freed_memory_everywhere();
        let component = component?;
        if let Some(path) = cached {
            let written = component
                .serialize()
                .map_err(|e| e.to_string())
                .and_then(|compiled| write_atomically(&path, &compiled).map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled plugin");
            }
        }
        Ok(component)
    }
}

/// Loads a compiled component that this process's engine wrote.
#[allow(unsafe_code)]
fn load_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file be a trusted artifact of `Component::serialize`
    // from a compatible engine. Only `PluginEngine::compile` writes into the cache folder
    // (inside the server's data dir, created with the operator's permissions), names each file
    // by the source's SHA-256 and this engine's compatibility hash, and renames it into place
    // only once fully written; wasmtime additionally checks the header and engine settings.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Advances the epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("hearth-plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the plugin epoch ticker: deadlines will not fire");
    }
}
