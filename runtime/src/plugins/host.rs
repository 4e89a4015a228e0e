//! The set of live plugins and where they come from: the config's `[[plugins]]` entries, the
//! watched plugins folder (with an optional `<name>.toml` beside each `<name>.wasm`), and the
//! defaults built into the binary. A rescan reloads what changed on disk: a new version is
//! compiled and admitted before it replaces the old one in one atomic swap (requests already
//! holding the old set finish on it); a version that fails is logged and the old one stays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::engine::PluginEngine;
use super::plugin::{Plugin, PluginSpec};
use super::state::{KeyVerifier, PluginShared};
use crate::config::{Config, OnError, PluginHook};
use crate::error::{HearthError, Result};

/// How often the plugins folder is checked for changes.
pub const RESCAN_INTERVAL: Duration = Duration::from_millis(500);

/// The plugins serving requests right now, by hook.
#[derive(Debug, Default, Clone)]
pub struct PluginSet {
    pub auth: Option<Arc<Plugin>>,
    /// Run in order, each on the result of the one before.
    pub preprocess: Vec<Arc<Plugin>>,
    pub route: Option<Arc<Plugin>>,
}

/// A component built into the binary (the default plugins).
#[derive(Debug, Clone, Copy)]
pub struct BuiltinPlugin {
    pub name: &'static str,
    pub hook: PluginHook,
    pub bytes: &'static [u8],
}

/// Where a slot's component comes from.
#[derive(Debug, Clone)]
enum Origin {
    /// `[[plugins]]` entry number `index`.
    Config {
        index: usize,
    },
    /// A `.wasm` in the plugins folder.
    Folder,
    Builtin(&'static [u8]),
}

/// A file's identity for change detection: modification time and length of the component
/// and of its sidecar.
type Stamp = Option<(SystemTime, u64, Option<SystemTime>)>;

#[derive(Debug)]
struct Slot {
    origin: Origin,
    spec: PluginSpec,
    stamp: Stamp,
    plugin: Option<Arc<Plugin>>,
}

/// `<name>.toml` beside a folder plugin: the `[[plugins]]` fields other than `path`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    hook: Option<PluginHook>,
    name: Option<String>,
    #[serde(default)]
    on_error: OnError,
    memory_mb: Option<u32>,
    timeout_ms: Option<u64>,
    max_concurrency: Option<u32>,
    config: Option<toml::Table>,
}

/// Loads, swaps and serves plugins.
pub struct PluginHost {
    engine: &'static PluginEngine,
    keys: Arc<dyn KeyVerifier>,
    folder: Option<PathBuf>,
    pub max_body_bytes: usize,
    slots: Mutex<BTreeMap<String, Slot>>,
    set: RwLock<Arc<PluginSet>>,
    /// The plugins left out of the last published set because another serves their hook:
    /// the warning is logged when this changes, not on every rescan.
    unused: Mutex<Vec<String>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("folder", &self.folder)
            .field("set", &self.current())
            .finish_non_exhaustive()
    }
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    let sidecar = std::fs::metadata(path.with_extension("toml"))
        .and_then(|m| m.modified())
        .ok();
    Some((meta.modified().ok()?, meta.len(), sidecar))
}

fn config_json(table: Option<&toml::Table>) -> String {
    table
        .and_then(|t| serde_json::to_string(t).ok())
        .unwrap_or_else(|| "{}".to_owned())
}

fn default_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned())
}

impl PluginHost {
    /// Starts the host: loads the config's plugins (any failure is a startup error, so a
    /// typo never silently disables auth), then the folder's (a broken one is logged and
    /// skipped), then the built-in defaults for hooks nothing else serves.
    pub fn start(
        config: &Config,
        keys: Arc<dyn KeyVerifier>,
        builtins: &[BuiltinPlugin],
    ) -> Result<Self> {
        let engine = PluginEngine::shared(Some(config.data_dir.join("plugin-cache")))?;
        let folder = config.plugins_dir();
        if let Err(e) = std::fs::create_dir_all(&folder) {
            tracing::warn!(dir = %folder.display(), error = %e, "cannot create the plugins folder");
        }
        let host = Self {
            engine,
            keys,
            folder: Some(folder),
            max_body_bytes: config.max_body_bytes,
            slots: Mutex::new(BTreeMap::new()),
            set: RwLock::new(Arc::new(PluginSet::default())),
            unused: Mutex::new(Vec::new()),
        };
        {
            let mut slots = host.lock_slots();
            for (index, entry) in config.plugins.iter().enumerate() {
                let spec = PluginSpec {
                    name: entry
                        .name
                        .clone()
                        .unwrap_or_else(|| default_name(&entry.path)),
                    hook: Some(entry.hook),
                    source: entry.path.clone(),
                    config_json: config_json(entry.config.as_ref()),
                    on_error: entry.on_error,
                    memory_mb: entry.memory_mb,
                    timeout_ms: entry.timeout_ms,
                    max_concurrency: entry.max_concurrency,
                };
                let mut slot = Slot {
                    origin: Origin::Config { index },
                    stamp: stamp(&entry.path),
                    spec,
                    plugin: None,
                };
                slot.plugin = Some(Arc::new(host.load(&slot, None)?));
                slots.insert(format!("config:{index:04}"), slot);
            }
            if config.default_plugins {
                for builtin in builtins {
                    let spec = PluginSpec {
                        name: builtin.name.to_owned(),
                        hook: Some(builtin.hook),
                        source: PathBuf::from(format!("<built-in {}>", builtin.name)),
                        config_json: "{}".to_owned(),
                        on_error: OnError::FailClosed,
                        memory_mb: None,
                        timeout_ms: None,
                        max_concurrency: None,
                    };
                    let mut slot = Slot {
                        origin: Origin::Builtin(builtin.bytes),
                        spec,
                        stamp: None,
                        plugin: None,
                    };
                    slot.plugin = Some(Arc::new(host.load(&slot, None)?));
                    slots.insert(format!("builtin:{}", builtin.name), slot);
                }
            }
        }
        host.rescan();
        Ok(host)
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plugins serving right now. Callers keep the `Arc` for the whole request, so a
    /// swap never changes plugins under a request in flight.
    pub fn current(&self) -> Arc<PluginSet> {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn load(&self, slot: &Slot, previous: Option<Arc<PluginShared>>) -> Result<Plugin> {
        let bytes = match &slot.origin {
            Origin::Builtin(bytes) => bytes.to_vec(),
            _ => std::fs::read(&slot.spec.source).map_err(|e| {
                HearthError::io(
                    format!("cannot read plugin {}", slot.spec.source.display()),
                    e,
                )
            })?,
        };
        let started = std::time::Instant::now();
        let plugin = Plugin::load(
            self.engine,
            slot.spec.clone(),
            &bytes,
            previous,
            Some(self.keys.clone()),
        )
        .map_err(|e| match e {
            HearthError::Plugin(reason) => {
                HearthError::Plugin(format!("{}: {reason}", slot.spec.source.display()))
            }
            other => other,
        })?;
        tracing::info!(plugin = %plugin.name, hook = plugin.hook.as_str(), source = %plugin.source.display(),
            digest = &plugin.digest[..12], ms = started.elapsed().as_millis(), "plugin loaded");
        Ok(plugin)
    }

    /// A folder plugin's spec from its file and optional sidecar.
    fn folder_spec(path: &Path) -> Result<PluginSpec> {
        let sidecar_path = path.with_extension("toml");
        let sidecar: Sidecar = if sidecar_path.is_file() {
            let text = std::fs::read_to_string(&sidecar_path).map_err(|e| {
                HearthError::io(format!("cannot read {}", sidecar_path.display()), e)
            })?;
            toml::from_str(&text).map_err(|e| {
                HearthError::Plugin(format!(
                    "{}: {}",
                    sidecar_path.display(),
                    e.to_string().trim()
                ))
            })?
        } else {
            Sidecar::default()
        };
        if sidecar.on_error == OnError::FailOpen
            && sidecar.hook.is_some_and(|h| h != PluginHook::Preprocess)
        {
            return Err(HearthError::Plugin(format!(
                "{}: only preprocess plugins may fail open",
                sidecar_path.display()
            )));
        }
        Ok(PluginSpec {
            name: sidecar.name.unwrap_or_else(|| default_name(path)),
            hook: sidecar.hook,
            source: path.to_path_buf(),
            config_json: config_json(sidecar.config.as_ref()),
            on_error: sidecar.on_error,
            memory_mb: sidecar.memory_mb,
            timeout_ms: sidecar.timeout_ms,
            max_concurrency: sidecar.max_concurrency,
        })
    }

    /// Checks every file-backed plugin and the folder for changes, (re)loads what changed,
    /// and publishes the new set. Returns how many plugins changed.
    pub fn rescan(&self) -> usize {
        let mut slots = self.lock_slots();
        let mut changed = 0;
        // The folder's `.wasm` files, by file name.
        let mut present: Vec<PathBuf> = self
            .folder
            .as_ref()
            .and_then(|dir| std::fs::read_dir(dir).ok())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        present.sort();
        let folder_keys: Vec<String> = present
            .iter()
            .map(|p| format!("folder:{}", p.display()))
            .collect();
        // Gone from the folder: unload.
        let gone: Vec<String> = slots
            .iter()
            .filter(|(k, s)| matches!(s.origin, Origin::Folder) && !folder_keys.contains(k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(slot) = slots.remove(&key) {
                tracing::info!(plugin = %slot.spec.name, "plugin removed from the folder: unloaded");
                metrics::counter!("hearth_plugin_reloads_total", "plugin" => slot.spec.name.clone(), "outcome" => "removed").increment(1);
                changed += 1;
            }
        }
        for (path, key) in present.iter().zip(folder_keys) {
            if !slots.contains_key(&key) {
                match Self::folder_spec(path) {
                    Ok(spec) => {
                        slots.insert(
                            key.clone(),
                            Slot {
                                origin: Origin::Folder,
                                spec,
                                stamp: None,
                                plugin: None,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "plugin rejected");
                        continue;
                    }
                }
            }
        }
        // Reload file-backed slots whose files changed (new folder slots have no stamp yet).
        for slot in slots.values_mut() {
            if matches!(slot.origin, Origin::Builtin(_)) {
                continue;
            }
            let now = stamp(&slot.spec.source);
            if now.is_none() || now == slot.stamp {
                continue;
            }
            if matches!(slot.origin, Origin::Folder) {
                match Self::folder_spec(&slot.spec.source) {
                    Ok(spec) => slot.spec = spec,
                    Err(e) => {
                        tracing::error!(plugin = %slot.spec.name, error = %e, "new version rejected; the old one keeps serving");
                        slot.stamp = now;
                        continue;
                    }
                }
            }
            let previous = slot.plugin.as_ref().map(|p| p.shared());
            slot.stamp = now;
            match self.load(slot, previous) {
                Ok(plugin) => {
                    let outcome = if slot.plugin.is_some() {
                        "reloaded"
                    } else {
                        "loaded"
                    };
                    metrics::counter!("hearth_plugin_reloads_total", "plugin" => plugin.name.clone(), "outcome" => outcome).increment(1);
                    slot.plugin = Some(Arc::new(plugin));
                    changed += 1;
                }
                Err(e) => {
                    metrics::counter!("hearth_plugin_reloads_total", "plugin" => slot.spec.name.clone(), "outcome" => "rejected").increment(1);
                    let keeps = if slot.plugin.is_some() {
                        "; the old version keeps serving"
                    } else {
                        ""
                    };
                    tracing::error!(plugin = %slot.spec.name, error = %e, "plugin version rejected{keeps}");
                }
            }
        }
        self.publish(&slots);
        changed
    }

    /// Builds the set from the slots: config entries first, then the folder (by file name),
    /// then built-ins; auth and route take the first plugin that serves them.
    fn publish(&self, slots: &BTreeMap<String, Slot>) {
        let rank = |s: &Slot| match s.origin {
            Origin::Config { index } => (0, index),
            Origin::Folder => (1, 0),
            Origin::Builtin(_) => (2, 0),
        };
        let mut ordered: Vec<(&String, &Slot)> = slots.iter().collect();
        ordered.sort_by_key(|(key, slot)| (rank(slot), (*key).clone()));
        let mut set = PluginSet::default();
        let mut unused = Vec::new();
        for (key, slot) in ordered {
            let Some(plugin) = &slot.plugin else { continue };
            match plugin.hook {
                PluginHook::Auth if set.auth.is_none() => set.auth = Some(plugin.clone()),
                PluginHook::Route if set.route.is_none() => set.route = Some(plugin.clone()),
                PluginHook::Preprocess => set.preprocess.push(plugin.clone()),
                hook => unused.push((key.clone(), plugin.name.clone(), hook)),
            }
        }
        // Every rescan publishes (twice a second): a conflict is news once, when it appears.
        let keys: Vec<String> = unused.iter().map(|(key, ..)| key.clone()).collect();
        let mut last = self.unused.lock().unwrap_or_else(PoisonError::into_inner);
        if *last != keys {
            for (key, name, hook) in &unused {
                if !last.contains(key) {
                    tracing::warn!(plugin = %name, hook = hook.as_str(),
                        "another plugin already serves this hook; this one is not used");
                }
            }
            *last = keys;
        }
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    /// Rescans every [`RESCAN_INTERVAL`] on a blocking thread (compiling is CPU work).
    pub fn watch(self: &Arc<Self>) {
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESCAN_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(host) = host.upgrade() else { break };
                if tokio::task::spawn_blocking(move || host.rescan())
                    .await
                    .is_err()
                {
                    tracing::error!("plugin rescan panicked");
                }
            }
        });
    }
}
