//! Real-time factor of Whisper transcription: a 16 kHz mono 16-bit WAV through the log-mel
//! front end, the encoder and greedy decoding with timestamps (openai-whisper's long-form
//! loop), with the time of the first finished segment (what a streaming client waits for)
//! and where the time goes.
//!
//! ```sh
//! .venv-bench/bin/python models/scripts/bench_peer_faster_whisper.py --make-clip /tmp/bench_clip.wav
//! RAYON_NUM_THREADS=2 cargo run -p hearth-models --example bench_whisper -- /tmp/bench_clip.wav [MODEL [cpu|wgpu]]
//! ```
//!
//! `MODEL` is a Whisper folder (CTranslate2 or Hugging Face); by default tiny.en from
//! `$HEARTH_MODELS_DIR/whisper-tiny-en` (`<repo>/.models` unless set).
#![allow(clippy::print_stdout, reason = "a benchmark's output is its table")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_models::whisper::mel::{MelFilters, MelSpectrogram};
use hearth_models::whisper::{TranscribeOptions, Transcription, WhisperModel, WhisperTokenizer};
use hearth_models::{Device, ModelError, cpu_device};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn model_dir() -> PathBuf {
    std::env::var_os("HEARTH_MODELS_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"),
            PathBuf::from,
        )
        .join("whisper-tiny-en")
}

fn device(name: Option<&str>) -> Device {
    match name {
        None | Some("cpu") => cpu_device(),
        #[cfg(feature = "wgpu")]
        Some("wgpu") => hearth_models::gpu_device(),
        Some(other) => panic!("unknown device `{other}` (cpu, or wgpu with the wgpu feature)"),
    }
}

/// Samples of a 16-bit PCM mono 16 kHz WAV.
fn read_wav(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("read the WAV file");
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if &bytes[at..at + 4] == b"fmt " {
            let b = &bytes[at + 8..];
            let (channels, rate) = (
                u16::from_le_bytes([b[2], b[3]]),
                u32::from_le_bytes(b[4..8].try_into().unwrap()),
            );
            assert_eq!(
                (channels, rate),
                (1, 16_000),
                "the bench reads 16 kHz mono WAV"
            );
        }
        if &bytes[at..at + 4] == b"data" {
            let end = (at + 8 + len).min(bytes.len());
            return bytes[at + 8..end]
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

fn main() -> Result<(), ModelError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clip = PathBuf::from(
        args.first()
            .expect("usage: bench_whisper CLIP.wav [MODEL [cpu|wgpu]]"),
    );
    let dir = args.get(1).map_or_else(model_dir, PathBuf::from);
    let device = device(args.get(2).map(String::as_str));
    let samples = read_wav(&clip);
    let audio_seconds = samples.len() as f64 / 16_000.0;
    let model = WhisperModel::load(&dir, &device)?;
    let tokenizer = WhisperTokenizer::load(&dir.join("tokenizer.json"))?;

    // One warm-up window so one-time costs (allocations, kernel compilation on wgpu) stay
    // out of the numbers.
    let warm = MelSpectrogram::new(MelFilters::slaney(model.dims().n_mels))
        .compute(&samples[..16_000.min(samples.len())], 480_000);
    let mut job = Transcription::new(model.dims(), &tokenizer, warm, TranscribeOptions::default())?;
    if let Some(window) = job.window(&model) {
        let features = model.encode(&[&window])?;
        job.advance(
            &model,
            &tokenizer,
            &model.cross_cache(&features, 0),
            &mut rand::rng(),
            &|| false,
        )?;
    }

    let start = Instant::now();
    let mel =
        MelSpectrogram::new(MelFilters::slaney(model.dims().n_mels)).compute(&samples, 480_000);
    let mel_time = start.elapsed();
    let mut job = Transcription::new(model.dims(), &tokenizer, mel, TranscribeOptions::default())?;
    let (mut encode_time, mut decode_time) = (Duration::ZERO, Duration::ZERO);
    let mut first_segment: Option<Duration> = None;
    let mut windows = 0;
    let mut segments = 0;
    while let Some(window) = job.window(&model) {
        let t = Instant::now();
        let features = model.encode(&[&window])?;
        let cross = model.cross_cache(&features, 0);
        encode_time += t.elapsed();
        let t = Instant::now();
        let new = job.advance(&model, &tokenizer, &cross, &mut rand::rng(), &|| false)?;
        decode_time += t.elapsed();
        if !new.is_empty() && first_segment.is_none() {
            first_segment = Some(start.elapsed());
        }
        segments += new.len();
        windows += 1;
    }
    let total = start.elapsed();
    let transcript = job.finish(&tokenizer)?;
    let tokens: usize = transcript.segments.iter().map(|s| s.tokens.len()).sum();

    println!(
        "clip: {} ({audio_seconds:.1} s), model: {}, device: {device:?}",
        clip.display(),
        dir.display()
    );
    println!("| stage | seconds | share |");
    println!("|---|---:|---:|");
    for (name, took) in [
        ("log-mel", mel_time),
        ("encoder (+ cross K/V)", encode_time),
        ("decoding", decode_time),
    ] {
        println!(
            "| {name} | {:.2} | {:.0}% |",
            took.as_secs_f64(),
            100.0 * took.as_secs_f64() / total.as_secs_f64()
        );
    }
    println!("| **total** | **{:.2}** | |", total.as_secs_f64());
    println!();
    println!("windows {windows}, segments {segments}, text tokens {tokens}");
    println!(
        "real-time factor {:.3} ({:.1}x faster than real time); first segment after {:.2} s",
        total.as_secs_f64() / audio_seconds,
        audio_seconds / total.as_secs_f64(),
        first_segment.unwrap_or(total).as_secs_f64()
    );
    println!("text: {}", transcript.text);
    Ok(())
}
