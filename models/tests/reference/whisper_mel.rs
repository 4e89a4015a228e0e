//! Whisper's audio front end against openai-whisper: the natively computed Slaney filter banks
//! against `mel_filters.npz` from the openai-whisper sdist (installed and unpacked by
//! `scripts/fetch-models`), and the log-mel spectrogram of a test signal against
//! `fixtures/whisper_mel_reference.json` (numpy, float64, written by
//! `models/scripts/generate_whisper_mel_reference.py` with those same filters).

use std::path::Path;

use hearth_models::whisper::mel::{MelFilters, MelSpectrogram, N_FREQ_BINS};
use serde::Deserialize;

use crate::common;

/// The filters: librosa computes them in f64 and stores f32, as we do, so they agree to f32
/// rounding (observed ≤ 4e-9 on weights up to 0.042).
const FILTER_TOLERANCE: f32 = 1e-7;

/// The spectrogram, in Whisper's `(log10 + 4) / 4` units (about −1 to 1.5): realfft's f32
/// FFTs against numpy's f64 ones. Loud bins agree to ~1e-6; the quietest bins above the
/// 8-decade floor carry f32 rounding of the frame's energy, a relative error that log10
/// turns into up to a few 1e-4.
const MEL_MAX_TOLERANCE: f32 = 2e-3;
const MEL_MEAN_TOLERANCE: f32 = 2e-5;

/// A C-ordered little-endian f32 `.npy` file: its shape and values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("npy file");
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{} is not an .npy file",
        path.display()
    );
    let (header_len, offset) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[offset..offset + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values = bytes[offset + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, values)
}

#[test]
fn filters_equal_openai_whispers_mel_filters_npz() {
    for n_mels in [80, 128] {
        let path = common::installed(&format!("whisper-mel-filters/mel_{n_mels}.npy"));
        let (shape, reference) = read_npy(&path);
        assert_eq!(shape, vec![n_mels, N_FREQ_BINS]);
        let ours = MelFilters::slaney(n_mels);
        let worst = ours
            .weights()
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= FILTER_TOLERANCE,
            "mel_{n_mels}: max |Δ| {worst:e} > {FILTER_TOLERANCE:e}"
        );
    }
}

#[derive(Deserialize)]
struct Fixture {
    samples: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    n_mels: usize,
    n_frames: usize,
    values: Vec<f32>,
}

/// `test_signal` of the fixture script: a chirp from 200 Hz plus a gated 1 kHz tone.
fn test_signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            let chirp = 0.5 * (2.0 * std::f64::consts::PI * (200.0 * t + 1400.0 * t * t)).sin();
            let gate = if i % 800 < 400 { 1.0 } else { 0.2 };
            let tone = 0.25 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin() * gate;
            (chirp + tone) as f32
        })
        .collect()
}

#[test]
fn log_mel_spectrogram_matches_numpy() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whisper_mel_reference.json");
    let fixture: Fixture =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let audio = test_signal(fixture.samples);
    for case in &fixture.cases {
        let spec = MelSpectrogram::new(MelFilters::slaney(case.n_mels)).compute(&audio, 0);
        assert_eq!((spec.n_mels, spec.n_frames), (case.n_mels, case.n_frames));
        let diffs: Vec<f32> = spec
            .values
            .iter()
            .zip(&case.values)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let worst = diffs.iter().copied().fold(0f32, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        assert!(
            worst <= MEL_MAX_TOLERANCE && mean <= MEL_MEAN_TOLERANCE,
            "{} mels: max |Δ| {worst:e}, mean |Δ| {mean:e}",
            case.n_mels
        );
    }
}
