//! What a plugin's store holds during one call, and the host imports it serves: log, config,
//! the monotonic clock, counters, the key-value store and (auth only) key verification.
//! WASI is present only because `wasm32-wasip2` guests import `wasi:cli`/`wasi:io` at link
//! time: the context is empty (no files, environment, arguments or sockets; output discarded).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{host, keys, types};
use super::kv::KvStore;

/// Lines one call may log before the rest are dropped.
const MAX_LOG_LINES_PER_CALL: u32 = 32;
/// Distinct counter names one plugin may create.
const MAX_COUNTER_NAMES: usize = 64;

/// Key verification as the auth world's `keys` import sees it.
pub trait KeyVerifier: Send + Sync + std::fmt::Debug {
    fn verify(&self, presented: &str) -> Result<keys::KeyInfo, keys::KeyError>;
    fn open_mode(&self) -> bool;
}

/// What outlives one call: shared by every call of one plugin, and by its reloads.
#[derive(Debug)]
pub struct PluginShared {
    pub name: String,
    pub config_json: String,
    pub kv: KvStore,
    counters: Mutex<HashSet<String>>,
}

impl PluginShared {
    pub fn new(name: String, config_json: String) -> Self {
        Self {
            name,
            config_json,
            kv: KvStore::new(100_000, 64 * 1024),
            counters: Mutex::new(HashSet::new()),
        }
    }
}

/// The monotonic clock's origin, shared by every plugin for the life of the process.
fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// One call's store data.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    shared: Arc<PluginShared>,
    keys: Option<Arc<dyn KeyVerifier>>,
    request_id: String,
    log_lines: u32,
    /// Wall-clock time this call spent inside host imports that may wait (key checks write
    /// the key's last use to sled; the key-value store takes a lock). It is the host's time,
    /// not the guest's: the epoch callback takes it off the wall-clock cap, so a sled write
    /// that waits on a busy disk does not fail a guest that did nothing wrong. Their CPU time
    /// (microseconds: a hash, a tree lookup) stays on the guest's budget: measuring it would
    /// cost two system calls per import.
    in_host: Duration,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("plugin", &self.shared.name)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl PluginState {
    pub fn new(
        shared: Arc<PluginShared>,
        limits: StoreLimits,
        keys: Option<Arc<dyn KeyVerifier>>,
        request_id: String,
    ) -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits,
            shared,
            keys,
            request_id,
            log_lines: 0,
            in_host: Duration::ZERO,
        }
    }

    /// The time this call has spent in host imports so far.
    pub fn host_time(&self) -> Duration {
        self.in_host
    }

    /// Runs a host import's work, adding its time to the call's time in host imports.
    fn timed_host<R>(&mut self, work: impl FnOnce(&Self) -> R) -> R {
        let started = Instant::now();
        let result = work(self);
        self.in_host += started.elapsed();
        result
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: host::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return;
        }
        let plugin = self.shared.name.as_str();
        let request_id = self.request_id.as_str();
        match level {
            host::Level::Trace => tracing::trace!(plugin, request_id, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, request_id, "{message}"),
            host::Level::Info => tracing::info!(plugin, request_id, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, request_id, "{message}"),
            host::Level::Error => tracing::error!(plugin, request_id, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.shared.config_json.clone()
    }

    fn now_ns(&mut self) -> u64 {
        u64::try_from(clock_origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return;
        }
        {
            let mut names = self
                .shared
                .counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !names.contains(&name) {
                if names.len() >= MAX_COUNTER_NAMES {
                    return;
                }
                names.insert(name.clone());
            }
        }
        metrics::counter!("hearth_plugin_counter_total", "plugin" => self.shared.name.clone(), "name" => name)
            .increment(delta);
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.timed_host(|s| s.shared.kv.get(&key))
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) {
        if !self.timed_host(|s| s.shared.kv.set(&key, value, ttl_ms)) {
            tracing::warn!(plugin = %self.shared.name, key, "kv-set refused: value too large");
        }
    }

    fn kv_delete(&mut self, key: String) {
        self.timed_host(|s| s.shared.kv.delete(&key));
    }

    fn kv_incr(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> i64 {
        self.timed_host(|s| s.shared.kv.incr(&key, delta, ttl_ms))
    }
}

impl keys::Host for PluginState {
    fn verify(&mut self, secret: String) -> Result<keys::KeyInfo, keys::KeyError> {
        self.timed_host(|s| match &s.keys {
            Some(keys) => keys.verify(&secret),
            None => Err(keys::KeyError::Unknown),
        })
    }

    fn open_mode(&mut self) -> bool {
        self.keys.as_ref().is_some_and(|k| k.open_mode())
    }
}
