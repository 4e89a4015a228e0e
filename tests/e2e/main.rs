//! One integration-test binary for the whole end-to-end suite (as ripgrep does):
//! every test starts the real `hearth` binary and talks to it over a socket.

mod cli_keys;
mod embeddings;
mod serve;

/// The installed model files (`scripts/fetch-models`): `$HEARTH_MODELS_DIR`, else `<repo>/.models`.
pub fn models_dir() -> std::path::PathBuf {
    std::env::var_os("HEARTH_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"))
}

/// A config with a chat deployment (no engine yet) and the real embedding model.
pub fn config() -> String {
    let minilm = models_dir().join("all-minilm-l6-v2");
    assert!(
        minilm.join("model.safetensors").exists(),
        "{} is missing: run scripts/fetch-models",
        minilm.display()
    );
    CONFIG.replace("models/all-minilm-l6-v2", &minilm.display().to_string())
}

const CONFIG: &str = r#"
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
