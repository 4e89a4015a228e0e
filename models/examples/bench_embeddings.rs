//! Sentences per second of all-MiniLM-L6-v2 on the CPU backend, at batch 1, 8 and 32, for
//! short (~10 token) and 128-token inputs.
//!
//! ```sh
//! cargo run -p hearth-models --example bench_embeddings
//! ```
//!
//! The model folder is `$HEARTH_MODELS_DIR/all-minilm-l6-v2`, by default
//! `<repo>/.models/all-minilm-l6-v2` (`scripts/fetch-models`). Threads: rayon's global pool,
//! sized by `RAYON_NUM_THREADS` (default: one per core).
#![allow(clippy::print_stdout, reason = "a benchmark's output is its table")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_models::{EmbeddingModel, ModelError, cpu_device};

/// glibc's malloc returns each multi-MB activation buffer to the OS on free and page-faults it
/// back on the next op; mimalloc keeps them (1.5x on batched long inputs here).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each cell runs for at least this long (after one warm-up batch) to even out noise.
const MIN_TIME: Duration = Duration::from_secs(2);
const BATCH_SIZES: [usize; 3] = [1, 8, 32];
const LONG_TOKENS: usize = 128;

const SHORT: &str = "The quick brown fox jumps over the lazy dog";
const LONG: &str = "Hearth serves language, speech and image models from one small binary. \
    The embeddings endpoint tokenizes every input, pads a batch to its longest sequence, runs \
    one forward pass of the encoder, averages the token vectors under the attention mask and \
    scales each result to unit length, so that a dot product between two vectors is their cosine \
    similarity. Inputs longer than the model's limit are refused with a clear error rather than \
    silently truncated, because a shortened document would quietly change what a search finds. \
    Batching matters on a CPU: a single sentence leaves most of the matrix units idle, while a \
    batch of thirty-two keeps every core busy and amortises the cost of reading the weights.";

fn model_dir() -> PathBuf {
    std::env::var_os("HEARTH_MODELS_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"),
            PathBuf::from,
        )
        .join("all-minilm-l6-v2")
}

fn sentences_per_second(model: &EmbeddingModel, batch: &[Vec<u32>]) -> Result<f64, ModelError> {
    model.embed(batch)?; // warm-up: first-touch allocations, rayon pool start
    let start = Instant::now();
    let mut runs = 0u32;
    while runs == 0 || start.elapsed() < MIN_TIME {
        model.embed(batch)?;
        runs += 1;
    }
    Ok(f64::from(runs) * batch.len() as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), ModelError> {
    let dir = model_dir();
    let start = Instant::now();
    let model = EmbeddingModel::load(&dir, &cpu_device())?;
    let load_ms = start.elapsed().as_secs_f64() * 1000.0;

    let short = model.tokenize(SHORT)?;
    let mut long = model.tokenize(LONG)?;
    if long.len() < LONG_TOKENS {
        return Err(ModelError::InvalidInput(format!(
            "the long text has {} tokens, fewer than {LONG_TOKENS}",
            long.len()
        )));
    }
    // Keep [CLS] + 126 word pieces + [SEP].
    let sep = long[long.len() - 1];
    long.truncate(LONG_TOKENS - 1);
    long.push(sep);

    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism().map_or_else(|_| "?".to_owned(), |n| n.to_string())
    });
    println!("all-MiniLM-L6-v2, burn Flex (CPU), {threads} threads, loaded in {load_ms:.0} ms");
    println!();
    println!("| input | tokens | batch | sentences/s | ms/batch |");
    println!("|---|---:|---:|---:|---:|");
    for (name, ids) in [("short", &short), ("long", &long)] {
        for size in BATCH_SIZES {
            let batch = vec![ids.clone(); size];
            let rate = sentences_per_second(&model, &batch)?;
            let ms = 1000.0 * size as f64 / rate;
            println!("| {name} | {} | {size} | {rate:.1} | {ms:.2} |", ids.len());
        }
    }
    Ok(())
}
