//! Images per second of the two image models, as the server runs them: the DCGAN face
//! generator for n = 1 and n = 10 (one batch of latents), and the RDN ×2 upscaler on a
//! 512×512 image (one 512-pixel window, as served; `HEARTH_BENCH_WINDOWS=256x1,…` adds
//! other window sizes and batches).
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run -p hearth-models --example bench_images [-- cpu|wgpu]
//! /tmp/peer/bin/python models/scripts/bench_peer_images.py    # onnxruntime on the same weights
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark's output is its table")]

use std::path::{Path, PathBuf};
use std::time::Instant;

use hearth_models::dcgan::{DcganGenerator, latents};
use hearth_models::rdn::Upscaler;
use hearth_models::{Device, cpu_device};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn installed(relative: &str) -> PathBuf {
    std::env::var_os("HEARTH_MODELS_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"),
            PathBuf::from,
        )
        .join(relative)
}

fn device(name: Option<&str>) -> Device {
    match name {
        None | Some("cpu") => cpu_device(),
        #[cfg(feature = "wgpu")]
        Some("wgpu") => hearth_models::gpu_device(),
        Some(other) => panic!("unknown device `{other}` (cpu, or wgpu with the wgpu feature)"),
    }
}

/// The median of `runs` timings of `work`, in seconds, after one warm-up.
fn median_seconds(runs: usize, mut work: impl FnMut()) -> f64 {
    work();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let name = std::env::args().nth(1);
    let device = device(name.as_deref());
    let generator = DcganGenerator::load(&installed("dcgan-faces/weights.tar"), &device)
        .expect("load the DCGAN");
    let upscaler = Upscaler::load(&installed("rdn-x2"), &device).expect("load the upscaler");

    println!("| work | median s | images/s |");
    println!("|---|---:|---:|");
    for n in [1usize, 10] {
        let z = latents(42, n * generator.latent_dim());
        let seconds = median_seconds(9, || {
            let images = generator.generate_pixels(&z).expect("generate");
            assert_eq!(images.len(), n);
        });
        println!(
            "| DCGAN 64×64, n = {n} | {seconds:.4} | {:.1} |",
            n as f64 / seconds
        );
    }
    // A 512×512 picture with real structure: the package's fixture tiled 4×4.
    let fixture = image::open(installed("rdn-x2/fixture.png"))
        .expect("fixture")
        .to_rgb8();
    let (fw, fh) = fixture.dimensions();
    let side = 512u32;
    let picture = image::RgbImage::from_fn(side, side, |x, y| *fixture.get_pixel(x % fw, y % fh));
    let seconds = median_seconds(3, || {
        let out = upscaler
            .upscale(picture.as_raw(), side as usize, side as usize, &mut || true)
            .expect("upscale");
        assert_eq!(out.len(), (2 * side * 2 * side * 3) as usize);
    });
    println!(
        "| RDN ×2, 512×512 → 1024×1024 (served: 512-px windows) | {seconds:.3} | {:.2} |",
        1.0 / seconds
    );
    // Other window sizes and batches (`HEARTH_BENCH_WINDOWS=256x1,512x1`): what windows cost.
    let variants = std::env::var("HEARTH_BENCH_WINDOWS").unwrap_or_default();
    for variant in variants.split(',').filter(|v| !v.is_empty()) {
        let (window, batch) = variant.split_once('x').expect("WINDOWxBATCH");
        let (window, batch) = (
            window.parse().expect("window"),
            batch.parse().expect("batch"),
        );
        let tiled = upscaler.clone().with_windows(window, batch);
        let seconds = median_seconds(3, || {
            tiled
                .upscale(picture.as_raw(), side as usize, side as usize, &mut || true)
                .expect("upscale");
        });
        println!(
            "| RDN ×2, 512×512 ({window}-px windows, {batch} per pass) | {seconds:.3} | {:.2} |",
            1.0 / seconds
        );
    }
}
