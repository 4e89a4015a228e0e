//! The Piper "joe" voice (`scripts/fetch-models` installs it) against
//! `fixtures/vits_reference.json`: onnxruntime running the same `.onnx` with both noise
//! scales at 0 (`models/scripts/generate_vits_reference.py`). Each stage is compared on its
//! own, the later ones fed the reference's durations so a duration that rounds the other way
//! cannot hide an error downstream. Runs on `common::test_device()`, so `scripts/test-wgpu`
//! checks the wgpu path with the same tolerances. Also checks the phonemizer (Debian's
//! espeak-ng) against piper-tts' ids for the same sentences.

use std::path::{Path, PathBuf};

use hearth_models::vits::{Phonemizer, SynthesisOptions, SynthesisScales, VitsModel};
use serde::Deserialize;

use crate::common;

// Measured on the CPU (2026-12-02): prior 1.1e-6, log-durations 7.6e-6, latent 3.0e-6,
// waveform 1.2e-5; the bounds leave room for a GPU's summation order.
/// The prior (values of order 1) after six f32 transformer layers on both sides.
const PRIOR_TOLERANCE: f32 = 1e-4;
/// Log-durations: through the duration flows and their splines (f64 here, f32 there).
const LOG_DURATION_TOLERANCE: f32 = 2e-4;
/// The flow's output (mean |z| 1.1) from the same frames.
const LATENT_TOLERANCE: f32 = 2e-4;
/// Waveform samples in [-1, 1] (RMS 0.06) after the HiFi-GAN decoder.
const WAVEFORM_TOLERANCE: f32 = 5e-4;

#[derive(Deserialize)]
struct Fixture {
    ids: Vec<i64>,
    channels: usize,
    mean: Vec<Vec<f32>>,
    log_scale: Vec<Vec<f32>>,
    log_durations: Vec<f32>,
    frames: Vec<usize>,
    latent_frames: usize,
    latent: Vec<Vec<f32>>,
    latent_mean_abs: f32,
    samples: usize,
    waveform_head: Vec<f32>,
    waveform_stride: usize,
    waveform_strided: Vec<f32>,
    waveform_rms: f64,
    phonemizer: Vec<PhonemizedSentence>,
}

#[derive(Deserialize)]
struct PhonemizedSentence {
    text: String,
    phonemes: String,
    ids: Vec<i64>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vits_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn voice() -> PathBuf {
    common::installed("piper-joe/en_US-joe-medium.onnx")
}

fn max_diff(got: impl IntoIterator<Item = f32>, want: impl IntoIterator<Item = f32>) -> f32 {
    got.into_iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

const DETERMINISTIC: SynthesisScales = SynthesisScales {
    noise_scale: 0.0,
    length_scale: 1.0,
    noise_w: 0.0,
};

#[test]
fn joe_matches_onnxruntime_stage_by_stage() {
    let f = fixture();
    let model = VitsModel::load(&voice(), &common::test_device()).expect("load");
    assert_eq!(model.sample_rate(), 22050);
    assert_eq!(model.hop(), 256);
    let t = f.ids.len();

    let prior = model.encode(&f.ids).expect("encode");
    let (mean, log_scale) = (prior.mean().unwrap(), prior.log_scale().unwrap());
    for c in 0..f.channels {
        let d = max_diff(
            mean[c * t..(c + 1) * t].iter().copied(),
            f.mean[c].iter().copied(),
        );
        eprintln!("prior mean channel {c}: max |Δ| {d:.2e}");
        assert!(d < PRIOR_TOLERANCE, "prior mean channel {c}: {d}");
        let d = max_diff(
            log_scale[c * t..(c + 1) * t].iter().copied(),
            f.log_scale[c].iter().copied(),
        );
        assert!(d < PRIOR_TOLERANCE, "prior log-scale channel {c}: {d}");
    }

    let durations = model
        .durations(&prior, DETERMINISTIC, None)
        .expect("durations");
    let d = max_diff(
        durations.log_durations.iter().copied(),
        f.log_durations.iter().copied(),
    );
    eprintln!("log-durations: max |Δ| {d:.2e}");
    assert!(d < LOG_DURATION_TOLERANCE, "log-durations: {d}");
    // Frames are a ceiling: they may differ only where the reference sits on an integer.
    for (i, (&got, &want)) in durations.frames.iter().zip(&f.frames).enumerate() {
        let exact = f.log_durations[i].exp();
        assert!(
            got == want || (exact - exact.round()).abs() < 1e-2,
            "phoneme {i}: {got} frames, onnxruntime {want} (duration {exact})"
        );
    }

    let latent = model.latent(&prior, &f.frames, 0.0, None).expect("latent");
    let frames: usize = f.frames.iter().sum();
    assert_eq!(latent.frames(), frames);
    let z = latent.to_vec().unwrap();
    for c in 0..f.channels {
        let d = max_diff(
            z[c * frames..c * frames + f.latent_frames].iter().copied(),
            f.latent[c].iter().copied(),
        );
        eprintln!("latent channel {c}: max |Δ| {d:.2e}");
        assert!(d < LATENT_TOLERANCE, "latent channel {c}: {d}");
    }
    let mean_abs = z.iter().map(|v| v.abs()).sum::<f32>() / z.len() as f32;
    assert!(
        (mean_abs - f.latent_mean_abs).abs() < 1e-3,
        "mean |z| {mean_abs}"
    );

    let wave = model.waveform(&latent, None).expect("waveform");
    assert_eq!(wave.len(), f.samples);
    let d = max_diff(wave.iter().copied(), f.waveform_head.iter().copied());
    eprintln!("waveform head: max |Δ| {d:.2e}");
    assert!(d < WAVEFORM_TOLERANCE, "waveform head: {d}");
    let d = max_diff(
        wave.iter().step_by(f.waveform_stride).copied(),
        f.waveform_strided.iter().copied(),
    );
    eprintln!("waveform (strided): max |Δ| {d:.2e}");
    assert!(
        d < WAVEFORM_TOLERANCE,
        "waveform (every {}th sample): {d}",
        f.waveform_stride
    );
    let rms = (wave.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / wave.len() as f64).sqrt();
    eprintln!(
        "RMS {rms:.6} vs {:.6}; frames equal: {}",
        f.waveform_rms,
        durations.frames == f.frames
    );
    assert!(
        (rms - f.waveform_rms).abs() < 1e-4,
        "RMS {rms} vs {}",
        f.waveform_rms
    );

    // The whole pipeline in one call gives the same audio.
    let options = SynthesisOptions {
        scales: DETERMINISTIC,
        speaker: None,
    };
    let whole = model.synthesize(&f.ids, &options).expect("synthesize");
    assert_eq!(whole.len(), f.samples);
    assert!(max_diff(whole, wave) < 1e-5);
}

#[test]
fn noise_and_length_scale_change_the_audio_as_piper_does() {
    let f = fixture();
    let model = VitsModel::load(&voice(), &common::test_device()).expect("load");
    let prior = model.encode(&f.ids).unwrap();
    let slow = model
        .durations(
            &prior,
            SynthesisScales {
                length_scale: 2.0,
                ..DETERMINISTIC
            },
            None,
        )
        .unwrap();
    // Twice as long per phoneme, rounded up per phoneme: onnxruntime's durations, doubled.
    let total: usize = slow.frames.iter().sum();
    let expected: f32 = f.log_durations.iter().map(|l| (l.exp() * 2.0).ceil()).sum();
    assert!(
        (total as f32 - expected).abs() <= 2.0,
        "{total} frames, expected {expected}"
    );
    assert!(total > f.frames.iter().sum::<usize>() * 3 / 2);
    // Piper's defaults sample noise: two runs differ, and both are speech-length.
    let options = SynthesisOptions {
        scales: model.config().scales,
        speaker: None,
    };
    let a = model.synthesize(&f.ids, &options).unwrap();
    let b = model.synthesize(&f.ids, &options).unwrap();
    assert!(
        a.len() > f.samples / 2 && a.len() < f.samples * 2,
        "{}",
        a.len()
    );
    assert!(a.len() != b.len() || max_diff(a.iter().copied(), b.iter().copied()) > 1e-3);
    assert!(model.synthesize(&[], &options).is_err());
    assert!(model.synthesize(&[1, 0, 9999, 2], &options).is_err());
    assert!(
        model
            .synthesize(
                &f.ids,
                &SynthesisOptions {
                    speaker: Some(3),
                    ..options
                }
            )
            .is_err(),
        "a single-speaker voice refuses speaker 3"
    );
}

#[test]
fn broken_voices_are_errors_that_name_the_file_or_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = std::fs::read(voice()).unwrap();
    let config = std::fs::read_to_string(hearth_models::vits::config_path(&voice())).unwrap();
    let write = |name: &str, bytes: &[u8], json: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(hearth_models::vits::config_path(&path), json).unwrap();
        path
    };
    let device = hearth_models::cpu_device();
    let error = |path: &Path| VitsModel::load(path, &device).unwrap_err().to_string();
    // Cut short: the protobuf reader names the file.
    let short = write("short.onnx", &onnx[..onnx.len() / 2], &config);
    let message = error(&short);
    assert!(message.contains("short.onnx"), "{message}");
    // No .onnx.json beside it.
    let lonely = dir.path().join("lonely.onnx");
    std::fs::write(&lonely, &onnx).unwrap();
    let message = error(&lonely);
    assert!(message.contains("lonely.onnx.json"), "{message}");
    // A config field with the wrong type is named.
    let bad = write(
        "bad.onnx",
        &onnx,
        &config.replace("\"sample_rate\": 22050", "\"sample_rate\": \"fast\""),
    );
    let message = error(&bad);
    assert!(message.contains("audio.sample_rate"), "{message}");
    // A phoneme id beyond the model's symbols is named with its phoneme.
    let ids = write(
        "ids.onnx",
        &onnx,
        &config.replace("\"_\": [\n      0\n    ]", "\"_\": [\n      999\n    ]"),
    );
    let message = error(&ids);
    assert!(
        message.contains("phoneme_id_map._") && message.contains("999"),
        "{message}"
    );
    // A tensor of the wrong shape is named.
    let mut renamed = onnx.clone();
    let needle = b"enc_p.encoder.attn_layers.0.emb_rel_k";
    // The last occurrence is the initializer (the nodes that read it come first in the graph).
    let at = renamed
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("tensor name");
    renamed[at + needle.len() - 1] = b'q';
    let message = error(&write("renamed.onnx", &renamed, &config));
    assert!(message.contains("emb_rel_k"), "{message}");
}

#[test]
fn the_phonemizer_gives_piper_s_ids() {
    let f = fixture();
    let model = VitsModel::load(&voice(), &hearth_models::cpu_device()).expect("load");
    let phonemizer = Phonemizer::new(model.config()).expect("espeak-ng is installed");
    let mut texts: Vec<&str> = f.phonemizer.iter().map(|s| s.text.as_str()).collect();
    texts.dedup();
    let got: Vec<_> = texts
        .iter()
        .flat_map(|t| phonemizer.sentences(t).expect("phonemize"))
        .collect();
    assert_eq!(got.len(), f.phonemizer.len());
    for (got, want) in got.iter().zip(&f.phonemizer) {
        assert_eq!(got.phonemes, want.phonemes, "{}", want.text);
        assert_eq!(got.ids, want.ids, "{}", want.text);
    }
    // A missing espeak-ng fails when the voice loads, naming the package.
    let missing = Phonemizer::with_program(model.config(), "/nonexistent/espeak-ng")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("apt-get install espeak-ng"), "{missing}");
    // Nothing to say is no sentence; odd input does not fail.
    assert!(phonemizer.sentences("  \n\n ... ").unwrap().is_empty());
    for odd in [
        "3.14159 km/h, 25°C — naïve café №5",
        "日本語のテキスト",
        "a\u{0}b \u{202e}c",
        "!!!???",
    ] {
        let sentences = phonemizer.sentences(odd).expect(odd);
        for s in sentences {
            assert!(s.ids.len() >= 3 && s.ids[0] == 1 && *s.ids.last().unwrap() == 2);
        }
    }
}
