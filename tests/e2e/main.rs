//! One integration-test binary for the whole end-to-end suite (as ripgrep does):
//! every test starts the real `hearth` binary and talks to it over a socket.

mod chat;
mod cli_keys;
mod echo;
mod embeddings;
mod plugin_examples;
mod plugins;
mod proxy;
mod safetensors;
mod serve;
mod shutdown;
mod tls;

pub use hearth_e2e::config;
