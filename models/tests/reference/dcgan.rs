//! The DCGAN face generator (`scripts/fetch-models` installs gan-face-generate's
//! `weights.tar`) against `fixtures/dcgan_reference.json`: a numpy run of the same checkpoint
//! in f64 on three fixed latents (`models/scripts/generate_dcgan_reference.py`). Runs on
//! `common::test_device()`, so `scripts/test-wgpu` checks the wgpu path too.

use std::path::Path;

use hearth_models::dcgan::{DcganGenerator, latents};
use serde::Deserialize;

use crate::common;

// Measured on the CPU (2026-12-02): 1.8e-6 on values in [-1, 1] after five f32 layers; the
// bound leaves room for a GPU's summation order.
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    latents: Vec<Vec<f32>>,
    shape: Vec<usize>,
    stride: usize,
    strided: Vec<f32>,
    channel_means: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dcgan_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn generator() -> DcganGenerator {
    DcganGenerator::load(
        &common::installed("dcgan-faces/weights.tar"),
        &common::test_device(),
    )
    .expect("load")
}

#[test]
fn faces_match_numpy_on_the_same_latents() {
    let fixture = fixture();
    let model = generator();
    assert_eq!(model.latent_dim(), 100);
    assert_eq!(model.image_size(), 64);
    assert_eq!(model.channels(), 3);
    let flat: Vec<f32> = fixture.latents.concat();
    let images = model.generate(&flat).expect("generate");
    assert_eq!(images.len(), fixture.shape.iter().product::<usize>());
    let mut worst = 0f32;
    for (i, want) in fixture.strided.iter().enumerate() {
        worst = worst.max((images[i * fixture.stride] - want).abs());
    }
    eprintln!(
        "dcgan: max |error| {worst:e} over {} values",
        fixture.strided.len()
    );
    assert!(worst <= TOLERANCE, "max error {worst}");
    let plane = 64 * 64;
    for (n, means) in fixture.channel_means.iter().enumerate() {
        for (c, want) in means.iter().enumerate() {
            let start = (n * 3 + c) * plane;
            let got = images[start..start + plane].iter().sum::<f32>() / plane as f32;
            assert!(
                (got - want).abs() <= TOLERANCE,
                "image {n} channel {c}: {got} vs {want}"
            );
        }
    }
    // Batching changes nothing: the second latent alone gives the second image.
    let alone = model.generate(&fixture.latents[1]).expect("generate");
    let in_batch = &images[3 * plane..6 * plane];
    let worst = alone
        .iter()
        .zip(in_batch)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= TOLERANCE, "batched vs alone: {worst}");
}

#[test]
fn pixels_are_the_values_mapped_to_bytes_and_seeds_reproduce() {
    let model = generator();
    let z = latents(7, 2 * model.latent_dim());
    let values = model.generate(&z).expect("generate");
    let pixels = model.generate_pixels(&z).expect("pixels");
    assert_eq!(pixels.len(), 2);
    assert_eq!(pixels[0].len(), 64 * 64 * 3);
    // Pixel (y, x), channel c of image 1 is value [1, c, y, x].
    for (y, x, c) in [(0, 0, 0), (10, 33, 1), (63, 63, 2)] {
        let v = values[((3 + c) * 64 + y) * 64 + x];
        let want = ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
        assert_eq!(pixels[1][(y * 64 + x) * 3 + c], want);
    }
    assert_eq!(
        model.generate_pixels(&latents(7, 100)).unwrap()[0],
        pixels[0]
    );
    assert_ne!(
        model.generate_pixels(&latents(8, 100)).unwrap()[0],
        pixels[0]
    );
}

#[test]
fn a_checkpoint_without_a_generator_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.tar");
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = DcganGenerator::load(&path, &hearth_models::cpu_device()).unwrap_err();
    assert!(err.to_string().contains("weights.tar"), "{err}");
    let missing = DcganGenerator::load(&dir.path().join("absent.pt"), &hearth_models::cpu_device())
        .unwrap_err();
    assert!(missing.to_string().contains("absent.pt"), "{missing}");
    assert!(
        model_error_for_latents().contains("not a whole number"),
        "wrong latent length must be an input error"
    );
}

fn model_error_for_latents() -> String {
    generator().generate(&[0.0; 150]).unwrap_err().to_string()
}
