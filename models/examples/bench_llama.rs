//! Tokens per second of a Llama-style decoder: prefill of prompts of a few lengths, then
//! one-token decode steps with the KV cache, then a batched decode step of 8 sequences.
//!
//! ```sh
//! cargo run -p hearth-models --example bench_llama [-- MODEL [cpu|wgpu|cpu-quantised]]
//! ```
//!
//! `cpu-quantised` keeps a GGUF file's blocks, or a checkpoint's f16/bf16 matrices, and runs
//! `hearth_models::quant`'s kernels (`HEARTH_CPU_KERNELS=scalar|avx2|avx512` picks a kernel
//! set).
//!
//! `MODEL` is a GGUF file or a Hugging Face checkpoint folder; by default SmolLM2-135M-Instruct
//! (Q4_1, dequantised to f32) from `$HEARTH_MODELS_DIR/smollm2-135m-instruct/`, under
//! `<repo>/.models` unless set (`scripts/fetch-models`). The device is the CPU backend unless
//! `wgpu` is given (needs the `wgpu` feature). Prompts are fixed pseudo-random token ids: speed
//! does not depend on the text. CPU threads: rayon's global pool (`RAYON_NUM_THREADS`).
#![allow(clippy::print_stdout, reason = "a benchmark's output is its table")]

use std::path::{Path, PathBuf};
use std::time::Instant;

use hearth_models::llama::{LlamaModel, argmax};
use hearth_models::{Device, ModelError, cpu_device};

/// See `bench_embeddings.rs`: glibc's malloc page-faults every large activation back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROMPT_LENGTHS: [usize; 3] = [16, 128, 512];
const DECODE_STEPS: usize = 64;

fn model_path() -> PathBuf {
    std::env::var_os("HEARTH_MODELS_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"),
            PathBuf::from,
        )
        .join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn device(name: Option<&str>) -> Device {
    match name {
        None | Some("cpu" | "cpu-quantised") => cpu_device(),
        #[cfg(feature = "wgpu")]
        Some("wgpu") => hearth_models::gpu_device(),
        Some(other) => panic!("unknown device `{other}` (cpu, or wgpu with the wgpu feature)"),
    }
}

fn main() -> Result<(), ModelError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or_else(model_path, PathBuf::from);
    let device = device(args.get(1).map(String::as_str));
    let start = Instant::now();
    let model = if args.get(1).map(String::as_str) == Some("cpu-quantised") {
        if path.is_dir() {
            LlamaModel::load_hf_with(&path, &device, true)?
        } else {
            LlamaModel::from_gguf_with(&hearth_models::gguf::GgufFile::open(&path)?, &device, true)?
        }
    } else {
        LlamaModel::load(&path, &device)?
    };
    println!(
        "{}: load {:.2} s on {device:?}, RSS {} MB",
        path.display(),
        start.elapsed().as_secs_f64(),
        rss_mb()
    );
    let vocab = model.config().vocab_size as u64;
    let all: Vec<u32> = (0..1024u64)
        .map(|i| u32::try_from((i * 7919 + 13) % vocab).expect("vocab fits u32"))
        .collect();
    model.forward(&all[..8], &mut model.new_cache())?; // warm-up

    println!(
        "| prompt tokens | prefill tok/s | decode tok/s ({DECODE_STEPS} steps after the prompt) |"
    );
    println!("|---:|---:|---:|");
    for length in PROMPT_LENGTHS {
        let prompt = &all[..length.min(all.len())];
        let mut cache = model.new_cache();
        let start = Instant::now();
        let mut logits = model.forward(prompt, &mut cache)?;
        let prefill = prompt.len() as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..DECODE_STEPS {
            logits = model.forward(&[argmax(&logits)], &mut cache)?;
        }
        let decode = DECODE_STEPS as f64 / start.elapsed().as_secs_f64();
        println!("| {} | {prefill:.0} | {decode:.1} |", prompt.len());
    }

    // Continuous batching's decode step: 8 sequences, one new token each, one pass.
    let mut caches: Vec<_> = (0..8).map(|_| model.new_cache()).collect();
    for cache in &mut caches {
        model.forward(&all[..32], cache)?;
    }
    let next = [argmax(&model.forward(&all[..1], &mut model.new_cache())?)];
    let start = Instant::now();
    for _ in 0..16 {
        let mut batch: Vec<(&[u32], &mut _)> = caches.iter_mut().map(|c| (&next[..], c)).collect();
        model.forward_batch(&mut batch)?;
    }
    let batched = 8.0 * 16.0 / start.elapsed().as_secs_f64();
    println!("\nbatched decode, 8 sequences at position 32+: {batched:.1} tok/s in total");
    println!(
        "RSS at the end (8 caches of 48 positions held): {} MB",
        rss_mb()
    );
    Ok(())
}

/// The process's resident memory in MB (Linux; "?" elsewhere).
fn rss_mb() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((kb / 1000).to_string())
        })
        .unwrap_or_else(|| "?".into())
}
