//! Shared by the model reference tests: where the installed model files are, which device
//! the checks run on, and the logit and vector comparisons.

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

/// The device the reference checks run on: `HEARTH_TEST_DEVICE` (`cpu` or `wgpu`), else the CPU.
pub fn test_device() -> hearth_models::Device {
    match std::env::var("HEARTH_TEST_DEVICE").as_deref() {
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => hearth_models::gpu_device(),
        Ok("cpu") | Err(_) => hearth_models::cpu_device(),
        Ok(other) => {
            panic!("HEARTH_TEST_DEVICE={other}: expected cpu, or wgpu with --features wgpu")
        }
    }
}

/// Asserts that each `(index, want)` is within `tolerance` of `logits[index]`; `label` (the
/// prompt) names a failure.
pub fn assert_logits_near(
    label: &str,
    logits: &[f32],
    expected: impl IntoIterator<Item = (usize, f32)>,
    tolerance: f32,
) {
    for (index, want) in expected {
        let got = logits[index];
        assert!(
            (got - want).abs() <= tolerance,
            "{label:?} logit {index}: {got} vs {want}"
        );
    }
}

/// The largest absolute difference between two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
