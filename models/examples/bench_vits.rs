//! Real-time factor and time to first audio of Piper speech synthesis, sentence by sentence
//! as the server streams it: phonemize (espeak-ng), then encode, durations, flow and
//! decoder per sentence, for a 1-sentence and a 12-sentence text, with where the time goes.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run -p hearth-models --example bench_vits [-- VOICE.onnx [cpu|wgpu]]
//! /tmp/vits/bin/python models/scripts/bench_peer_piper.py     # piper-tts on the same voice
//! ```
//!
//! `VOICE` defaults to `$HEARTH_MODELS_DIR/piper-joe/en_US-joe-medium.onnx`.
#![allow(clippy::print_stdout, reason = "a benchmark's output is its table")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_models::vits::{Phonemizer, SynthesisOptions, VitsModel};
use hearth_models::{Device, cpu_device};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The texts of the benchmark (the same in `bench_peer_piper.py`).
const ONE: &str = "The quick brown fox jumps over the lazy dog.";
const TWELVE: [&str; 12] = [
    "The weather was cold and bright this morning.",
    "We walked along the river to the old bridge.",
    "A small boat was tied to a wooden post.",
    "Two children were feeding bread to the ducks.",
    "Further on, a man was painting the water.",
    "His dog slept in the shade of a tree.",
    "We stopped at a cafe for a cup of tea.",
    "The owner told us about the town's history.",
    "In the afternoon the clouds came in from the sea.",
    "By four o'clock it had started to rain.",
    "We took the bus back to the station.",
    "It was a good day, and we were tired.",
];

fn voice() -> PathBuf {
    std::env::var_os("HEARTH_MODELS_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"),
            PathBuf::from,
        )
        .join("piper-joe/en_US-joe-medium.onnx")
}

fn device(name: Option<&str>) -> Device {
    match name {
        None | Some("cpu") => cpu_device(),
        #[cfg(feature = "wgpu")]
        Some("wgpu") => hearth_models::gpu_device(),
        Some(other) => panic!("unknown device `{other}` (cpu, or wgpu with the wgpu feature)"),
    }
}

struct Run {
    first_audio: Duration,
    total: Duration,
    audio_seconds: f64,
    phonemize: Duration,
    encode_and_durations: Duration,
    flow: Duration,
    decoder: Duration,
}

fn run(model: &VitsModel, phonemizer: &Phonemizer, text: &str) -> Run {
    let options = SynthesisOptions {
        scales: model.config().scales,
        speaker: None,
    };
    let started = Instant::now();
    let sentences = phonemizer.sentences(text).expect("phonemize");
    let phonemize = started.elapsed();
    let mut first_audio = None;
    let (mut samples, mut encode, mut flow, mut decoder) =
        (0usize, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for sentence in &sentences {
        let t = Instant::now();
        let prior = model.encode(&sentence.ids).expect("encode");
        let durations = model
            .durations(&prior, options.scales, None)
            .expect("durations");
        encode += t.elapsed();
        let t = Instant::now();
        let latent = model
            .latent(&prior, &durations.frames, options.scales.noise_scale, None)
            .expect("flow");
        // Read back so the flow's time is not billed to the decoder on a lazy backend.
        let _ = latent.to_vec();
        flow += t.elapsed();
        let t = Instant::now();
        let wave = model.waveform(&latent, None).expect("decoder");
        decoder += t.elapsed();
        samples += wave.len();
        first_audio.get_or_insert(started.elapsed());
    }
    Run {
        first_audio: first_audio.unwrap_or_default(),
        total: started.elapsed(),
        audio_seconds: samples as f64 / f64::from(model.sample_rate()),
        phonemize,
        encode_and_durations: encode,
        flow,
        decoder,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().map_or_else(voice, PathBuf::from);
    let device = device(args.next().as_deref());
    let model = VitsModel::load(&path, &device).expect("load the voice");
    let phonemizer = Phonemizer::new(model.config()).expect("espeak-ng");
    let twelve = TWELVE.join(" ");
    // Warm-up (allocator, kernel caches on a GPU).
    let _ = run(&model, &phonemizer, ONE);
    println!(
        "| text | audio (s) | first audio (s) | total (s) | RTF | phonemize | encoder + durations | flow | decoder |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, text) in [("1 sentence", ONE), ("12 sentences", twelve.as_str())] {
        let best = (0..3)
            .map(|_| run(&model, &phonemizer, text))
            .min_by_key(|r| r.total)
            .expect("three runs");
        println!(
            "| {name} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            best.audio_seconds,
            best.first_audio.as_secs_f64(),
            best.total.as_secs_f64(),
            best.total.as_secs_f64() / best.audio_seconds,
            best.phonemize.as_secs_f64(),
            best.encode_and_durations.as_secs_f64(),
            best.flow.as_secs_f64(),
            best.decoder.as_secs_f64(),
        );
    }
}
