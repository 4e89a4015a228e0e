//! Hearth's runtime: the OpenAI-compatible HTTP API, the auth step, the Wasm plugin host,
//! the engine, the store and configuration. The `hearth` binary (`main.rs`) is a thin CLI over this library.
//!
//! Direction of dependencies, without cycles (the `layering` test checks it): `server` →
//! `api` → `auth`, `management`, `deployments` → `engine` → `proxy` → `plugins` → `config`,
//! `store`. The HTTP side of the plugins and the proxy (the auth hook, the preprocess
//! middleware, the forwarding handlers) lives in `api/`.

mod allocator;
pub mod api;
pub mod audio;
pub mod auth;
pub mod config;
pub mod deployments;
pub mod engine;
pub mod error;
pub mod images;
pub mod management;
pub mod metrics;
pub mod plugins;
pub mod proxy;
pub mod runtime_files;
pub mod server;
pub mod store;

pub use error::{HearthError, Result};

#[cfg(test)]
mod layering;
