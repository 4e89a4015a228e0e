//! One integration-test binary for the whole end-to-end suite (as ripgrep does):
//! every test starts the real `hearth` binary and talks to it over a socket.

mod cli_keys;
mod serve;

/// A config with one deployment of each kind the tests name.
pub const CONFIG: &str = r#"
[[deployments]]
name = "smollm2"
aliases = ["default"]
kind = "chat"
  [[deployments.targets]]
  source = "models/smollm2.gguf"

[[deployments]]
name = "all-minilm"
kind = "embedding"
  [[deployments.targets]]
  source = "models/all-minilm-l6-v2"
"#;
