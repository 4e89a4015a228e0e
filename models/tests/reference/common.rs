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

/// `relative` under `models/tests/fixtures` (the small checkpoints committed with the tests).
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
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

/// Runs `b` in two chunks, and `a` batched with `b`'s last token (a prefill and a decode step
/// in one pass, at different positions), and asserts both agree with one pass per prompt
/// within `tolerance`. Returns `b`'s one-pass logits.
pub fn assert_chunked_and_batched_agree(
    model: &hearth_models::llama::LlamaModel,
    a: &[u32],
    b: &[u32],
    tolerance: f32,
) -> Vec<f32> {
    let whole_a = model.forward(a, &mut model.new_cache()).expect("forward");
    let whole_b = model.forward(b, &mut model.new_cache()).expect("forward");

    // Prefill in two chunks: the second sees the first through the cache, at offset positions.
    let mut cache = model.new_cache();
    model.forward(&b[..7], &mut cache).expect("first chunk");
    let chunked = model.forward(&b[7..], &mut cache).expect("second chunk");
    assert_eq!(cache.len(), b.len());
    assert!(max_abs_diff(&chunked, &whole_b) <= tolerance);

    let (mut cache_a, mut cache_b) = (model.new_cache(), model.new_cache());
    model
        .forward(&b[..b.len() - 1], &mut cache_b)
        .expect("prefill b");
    let out = model
        .forward_batch(&mut [(a, &mut cache_a), (&b[b.len() - 1..], &mut cache_b)])
        .expect("batch");
    assert!(max_abs_diff(&out[0], &whole_a) <= tolerance);
    assert!(max_abs_diff(&out[1], &whole_b) <= tolerance);
    assert_eq!((cache_a.len(), cache_b.len()), (a.len(), b.len()));
    whole_b
}
