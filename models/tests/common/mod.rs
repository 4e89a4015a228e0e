//! Shared by the model test binaries: where the installed model files are.

use std::path::{Path, PathBuf};

/// `relative` under `$HEARTH_MODELS_DIR`, else `<repo>/.models` (`scripts/fetch-models`);
/// panics with that hint when it is missing.
pub fn installed(relative: &str) -> PathBuf {
    let root = std::env::var_os("HEARTH_MODELS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"),
        PathBuf::from,
    );
    let path = root.join(relative);
    assert!(
        path.exists(),
        "{} not found: run scripts/fetch-models (or set HEARTH_MODELS_DIR)",
        path.display()
    );
    path
}
