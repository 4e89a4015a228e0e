//! The Wasm plugin host: authentication, request preprocessing and routing as WebAssembly
//! components (`wit/plugin.wit`, package `hearth:plugin@0.1.0`), loaded from the config's
//! `[[plugins]]`, a watched plugins folder and the defaults built into the binary, swapped
//! atomically on change, sandboxed (fresh store per call, memory cap, epoch deadline, bounded
//! concurrency) and checked (every output validated, every outcome counted).

pub mod authoring;
mod bindings;
mod breaker;
mod budget;
mod defaults;
mod engine;
mod host;
mod kv;
mod plugin;
mod state;
pub mod validate;

pub use bindings::{keys, types};
pub use defaults::builtins;
pub use engine::PluginEngine;
pub use host::{BuiltinPlugin, PluginHost, PluginSet};
pub use plugin::{Failure, Limits, Plugin, PluginSpec};
pub use state::KeyVerifier;

use crate::error::HearthError;

fn engine_error(e: wasmtime::Error) -> HearthError {
    HearthError::Plugin(format!("plugin engine: {e:?}"))
}

fn invalid_component(e: wasmtime::Error) -> HearthError {
    HearthError::Plugin(format!("not a valid hearth:plugin component: {e:#}"))
}
