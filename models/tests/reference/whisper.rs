//! Whisper tiny.en (the CTranslate2 folder `scripts/fetch-models` installs) against
//! `fixtures/whisper_reference.json`, a numpy float64 Whisper on the same weights and the
//! same clip (`models/scripts/generate_whisper_reference.py`; that numpy model agrees with
//! CTranslate2 4.8.5 to 7e-6 on the encoder output and token for token). Runs on
//! `common::test_device()`, so `scripts/test-wgpu` checks the wgpu path with the same
//! tolerances. Also loads the same weights from a Hugging Face layout written here.

use std::collections::HashMap;
use std::path::Path;

use hearth_models::whisper::decoding::{WindowOptions, decode_window};
use hearth_models::whisper::mel::{MelFilters, MelSpectrogram};
use hearth_models::whisper::{
    Task, TranscribeOptions, Transcription, WhisperFormat, WhisperModel, WhisperTokenizer,
};
use serde::Deserialize;

use crate::common;

/// Log-mel values, in Whisper's `(log10 + 4) / 4` units: f32 FFTs against numpy's f64.
const MEL_TOLERANCE: f32 = 2e-3;
/// Encoder output (values of order 1, mean |x| 0.55): f32 through 4 blocks against f64.
const ENCODER_TOLERANCE: f32 = 2e-3;
/// First-step logits (values of order 10).
const LOGIT_TOLERANCE: f32 = 1e-2;
/// The greedy sequence's summed log-probability and the no-speech probability.
const LOGPROB_TOLERANCE: f64 = 1e-2;
const NO_SPEECH_TOLERANCE: f64 = 1e-3;

#[derive(Deserialize)]
struct Fixture {
    clip: String,
    mel_frames: Vec<usize>,
    mel: Vec<Vec<f32>>,
    encoder_frames: Vec<usize>,
    encoder_dim_stride: usize,
    encoder: Vec<Vec<f32>>,
    encoder_mean_abs: f32,
    first_logits_stride: usize,
    first_logits: Vec<f32>,
    first_top_ids: Vec<u32>,
    tokens: Vec<u32>,
    sum_logprob: f64,
    no_speech_prob: f64,
    text: String,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whisper_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// The samples of a 16-bit PCM mono WAV file (the fixture clip), walking its RIFF chunks.
pub fn read_wav(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("wav");
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..at + 8 + len];
        if id == b"fmt " {
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            let bits = u16::from_le_bytes([body[14], body[15]]);
            assert_eq!((channels, rate, bits), (1, 16_000, 16));
        } else if id == b"data" {
            return body
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

fn clip(fixture: &Fixture) -> Vec<f32> {
    read_wav(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(&fixture.clip),
    )
}

fn load() -> (WhisperModel, WhisperTokenizer) {
    let dir = common::installed("whisper-tiny-en");
    let model = WhisperModel::load(&dir, &common::test_device()).expect("load tiny.en");
    let tokenizer = WhisperTokenizer::load(&dir.join("tokenizer.json")).expect("tokenizer");
    (model, tokenizer)
}

fn first_window(samples: &[f32]) -> Vec<f32> {
    let mel = MelSpectrogram::new(MelFilters::slaney(80)).compute(samples, 480_000);
    let mut window = vec![0.0; 80 * 3000];
    for m in 0..80 {
        window[m * 3000..(m + 1) * 3000]
            .copy_from_slice(&mel.values[m * mel.n_frames..m * mel.n_frames + 3000]);
    }
    window
}

fn max_diff(a: impl IntoIterator<Item = f32>, b: impl IntoIterator<Item = f32>) -> f32 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn greedy(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    window: &[f32],
) -> hearth_models::whisper::decoding::WindowResult {
    let features = model.encode(&[window]).expect("encode");
    let cross = model.cross_cache(&features, 0);
    let options = WindowOptions {
        task: Task::Transcribe,
        language: None,
        temperature: 0.0,
        without_timestamps: false,
        prompt: Vec::new(),
        max_initial_timestamp: Some(50),
    };
    decode_window(
        model,
        tokenizer,
        &cross,
        &options,
        &mut rand::rng(),
        &|| false,
    )
    .expect("decode")
}

#[test]
fn tiny_en_matches_the_numpy_reference_from_mel_to_tokens() {
    let fixture = fixture();
    let (model, tokenizer) = load();
    assert_eq!(model.format(), WhisperFormat::Ctranslate2);
    let dims = model.dims();
    assert_eq!(
        (
            dims.n_state,
            dims.n_audio_layer,
            dims.n_text_layer,
            dims.n_vocab
        ),
        (384, 4, 4, 51864)
    );
    assert!(!dims.is_multilingual());
    let window = first_window(&clip(&fixture));

    let mel_worst = fixture
        .mel_frames
        .iter()
        .zip(&fixture.mel)
        .map(|(&f, column)| {
            max_diff(
                (0..80).map(|m| window[m * 3000 + f]),
                column.iter().copied(),
            )
        })
        .fold(0.0, f32::max);
    assert!(mel_worst <= MEL_TOLERANCE, "log-mel max |Δ| {mel_worst:e}");

    let features = model.encode(&[&window]).expect("encode");
    let values = features.to_vec().expect("features");
    let d = dims.n_state;
    let encoder_worst = fixture
        .encoder_frames
        .iter()
        .zip(&fixture.encoder)
        .map(|(&f, row)| {
            max_diff(
                (0..d)
                    .step_by(fixture.encoder_dim_stride)
                    .map(|k| values[f * d + k]),
                row.iter().copied(),
            )
        })
        .fold(0.0, f32::max);
    #[allow(clippy::cast_precision_loss)]
    let mean_abs = values.iter().map(|v| v.abs()).sum::<f32>() / values.len() as f32;
    assert!(
        encoder_worst <= ENCODER_TOLERANCE,
        "encoder max |Δ| {encoder_worst:e}"
    );
    assert!(
        (mean_abs - fixture.encoder_mean_abs).abs() < 1e-3,
        "mean |x| {mean_abs}"
    );

    let cross = model.cross_cache(&features, 0);
    let mut cache = model.new_cache();
    let sot = tokenizer.special().sot;
    let logits = model
        .decode(&[sot], &mut cache, &cross, &[0])
        .expect("decode")
        .remove(0);
    let logit_worst = max_diff(
        logits.iter().step_by(fixture.first_logits_stride).copied(),
        fixture.first_logits.iter().copied(),
    );
    assert!(
        logit_worst <= LOGIT_TOLERANCE,
        "first logits max |Δ| {logit_worst:e}"
    );
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    assert_eq!(&order[..5], &fixture.first_top_ids[..5]);

    let result = greedy(&model, &tokenizer, &window);
    let eot = tokenizer.special().eot;
    let expected: Vec<u32> = fixture
        .tokens
        .iter()
        .copied()
        .filter(|&t| t != eot)
        .collect();
    assert_eq!(result.tokens, expected);
    assert_eq!(result.text, fixture.text.trim());
    assert!(
        (result.sum_logprob - fixture.sum_logprob).abs() <= LOGPROB_TOLERANCE,
        "sum logprob {} vs {}",
        result.sum_logprob,
        fixture.sum_logprob
    );
    assert!(
        (result.no_speech_prob - fixture.no_speech_prob).abs() <= NO_SPEECH_TOLERANCE,
        "no_speech_prob {} vs {}",
        result.no_speech_prob,
        fixture.no_speech_prob
    );
}

#[test]
fn a_transcription_is_one_timed_segment_with_words() {
    let fixture = fixture();
    let (model, tokenizer) = load();
    let samples = clip(&fixture);
    let mel = MelSpectrogram::new(MelFilters::slaney(80)).compute(&samples, 480_000);
    let options = TranscribeOptions {
        word_timestamps: true,
        ..TranscribeOptions::default()
    };
    let mut job = Transcription::new(model.dims(), &tokenizer, mel, options).expect("job");
    let mut windows = 0;
    while let Some(window) = job.window(&model) {
        let features = model.encode(&[&window]).expect("encode");
        let cross = model.cross_cache(&features, 0);
        job.advance(&model, &tokenizer, &cross, &mut rand::rng(), &|| false)
            .expect("advance");
        windows += 1;
    }
    assert_eq!(windows, 1);
    let transcript = job.finish(&tokenizer).expect("finish");
    // transcribe() zero-pads the window past the audio, as openai-whisper's `pad_or_trim`
    // does (the fixture decodes a window of the padded silence instead): faster-whisper on
    // the same weights hears "The quick round-fark jump over the lazy dog." here, and so do
    // we; one mis-heard word either way.
    let heard: Vec<String> = transcript
        .text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    for word in ["the", "quick", "jump", "over", "lazy", "dog"] {
        assert!(
            heard.iter().any(|h| h == word),
            "{word} not in {:?}",
            transcript.text
        );
    }
    assert_eq!(transcript.language, "en");
    assert!((transcript.duration - samples.len() as f64 / 16_000.0).abs() < 0.011);
    assert_eq!(transcript.segments.len(), 1);
    let segment = &transcript.segments[0];
    // The words, joined, are the text (punctuation inside a word, like the hyphen here, starts
    // a word of its own, as in openai-whisper).
    let joined: String = segment.words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(joined.trim(), transcript.text);
    // Words in order, inside the segment, each of some length.
    for pair in segment.words.windows(2) {
        assert!(
            pair[0].start <= pair[1].start && pair[0].end <= pair[1].end,
            "{pair:?}"
        );
    }
    assert!(
        segment
            .words
            .iter()
            .all(|w| w.end >= w.start && w.probability > 0.0)
    );
    assert!(segment.words[0].start < 0.8, "{:?}", segment.words[0]);
    assert!(segment.words.last().unwrap().end > 2.0);
}

#[test]
fn english_only_models_refuse_translation_and_other_languages() {
    let (model, tokenizer) = load();
    let mel = MelSpectrogram::new(MelFilters::slaney(80)).compute(&[0.0; 16_000], 480_000);
    let translate = TranscribeOptions {
        task: Task::Translate,
        ..TranscribeOptions::default()
    };
    let err = Transcription::new(model.dims(), &tokenizer, mel.clone(), translate).unwrap_err();
    assert!(err.to_string().contains("English-only"), "{err}");
    let french = TranscribeOptions {
        language: Some("fr".into()),
        ..TranscribeOptions::default()
    };
    let err = Transcription::new(model.dims(), &tokenizer, mel, french).unwrap_err();
    assert!(err.to_string().contains("`fr`"), "{err}");
}

/// CTranslate2 name and whether the Hugging Face tensor is a slice of a fused one
/// (`(ct2 name, row range in units of d)`).
fn hf_to_ct2(name: &str) -> Option<(String, Option<(usize, usize)>)> {
    let n = name.strip_prefix("model.")?;
    let fixed = [
        ("encoder.conv1.weight", "encoder/conv1/weight"),
        ("encoder.conv1.bias", "encoder/conv1/bias"),
        ("encoder.conv2.weight", "encoder/conv2/weight"),
        ("encoder.conv2.bias", "encoder/conv2/bias"),
        (
            "encoder.embed_positions.weight",
            "encoder/position_encodings/encodings",
        ),
        ("encoder.layer_norm.weight", "encoder/layer_norm/gamma"),
        ("encoder.layer_norm.bias", "encoder/layer_norm/beta"),
        ("decoder.embed_tokens.weight", "decoder/embeddings/weight"),
        (
            "decoder.embed_positions.weight",
            "decoder/position_encodings/encodings",
        ),
        ("decoder.layer_norm.weight", "decoder/layer_norm/gamma"),
        ("decoder.layer_norm.bias", "decoder/layer_norm/beta"),
    ];
    if let Some((_, ct2)) = fixed.iter().find(|(hf, _)| *hf == n) {
        return Some(((*ct2).to_owned(), None));
    }
    let (stack, rest) = n.split_once(".layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, part) = rest.rsplit_once('.')?;
    let prefix = format!("{stack}/layer_{layer}");
    let norm_part = if part == "weight" { "gamma" } else { "beta" };
    Some(match module {
        "self_attn_layer_norm" => (
            format!("{prefix}/self_attention/layer_norm/{norm_part}"),
            None,
        ),
        "encoder_attn_layer_norm" => (format!("{prefix}/attention/layer_norm/{norm_part}"), None),
        "final_layer_norm" => (format!("{prefix}/ffn/layer_norm/{norm_part}"), None),
        "fc1" => (format!("{prefix}/ffn/linear_0/{part}"), None),
        "fc2" => (format!("{prefix}/ffn/linear_1/{part}"), None),
        "self_attn.q_proj" => (
            format!("{prefix}/self_attention/linear_0/{part}"),
            Some((0, 1)),
        ),
        "self_attn.k_proj" => (
            format!("{prefix}/self_attention/linear_0/{part}"),
            Some((1, 2)),
        ),
        "self_attn.v_proj" => (
            format!("{prefix}/self_attention/linear_0/{part}"),
            Some((2, 3)),
        ),
        "self_attn.out_proj" => (format!("{prefix}/self_attention/linear_1/{part}"), None),
        "encoder_attn.q_proj" => (format!("{prefix}/attention/linear_0/{part}"), None),
        "encoder_attn.k_proj" => (format!("{prefix}/attention/linear_1/{part}"), Some((0, 1))),
        "encoder_attn.v_proj" => (format!("{prefix}/attention/linear_1/{part}"), Some((1, 2))),
        "encoder_attn.out_proj" => (format!("{prefix}/attention/linear_2/{part}"), None),
        _ => return None,
    })
}

/// Writes tiny.en as a Hugging Face folder (f16 `model.safetensors`, `config.json`,
/// `generation_config.json`, `tokenizer.json`) from the CTranslate2 weights.
fn write_hf_folder(dir: &Path) {
    use hearth_models::whisper::ct2::Ct2File;
    let ct2_dir = common::installed("whisper-tiny-en");
    let file = Ct2File::open(&ct2_dir.join("model.bin")).expect("model.bin");
    let d = 384;
    let mut names = vec![
        "model.encoder.conv1.weight".to_owned(),
        "model.encoder.conv1.bias".into(),
        "model.encoder.conv2.weight".into(),
        "model.encoder.conv2.bias".into(),
        "model.encoder.embed_positions.weight".into(),
        "model.encoder.layer_norm.weight".into(),
        "model.encoder.layer_norm.bias".into(),
        "model.decoder.embed_tokens.weight".into(),
        "model.decoder.embed_positions.weight".into(),
        "model.decoder.layer_norm.weight".into(),
        "model.decoder.layer_norm.bias".into(),
    ];
    for stack in ["encoder", "decoder"] {
        for layer in 0..4 {
            let mut modules = vec![
                "self_attn_layer_norm",
                "final_layer_norm",
                "fc1",
                "fc2",
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.out_proj",
            ];
            if stack == "decoder" {
                modules.extend([
                    "encoder_attn_layer_norm",
                    "encoder_attn.q_proj",
                    "encoder_attn.k_proj",
                    "encoder_attn.v_proj",
                    "encoder_attn.out_proj",
                ]);
            }
            for module in modules {
                for part in ["weight", "bias"] {
                    // Whisper's key projections have no bias.
                    if part == "bias" && module.ends_with("k_proj") {
                        continue;
                    }
                    names.push(format!("model.{stack}.layers.{layer}.{module}.{part}"));
                }
            }
        }
    }
    let mut tensors: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    for name in &names {
        let (ct2_name, rows) = hf_to_ct2(name).unwrap_or_else(|| panic!("{name}"));
        let variable = file
            .variable(&ct2_name)
            .unwrap_or_else(|| panic!("{ct2_name}"));
        let shape = variable.shape.clone();
        let values = file.f32_tensor(&ct2_name, &shape).expect("tensor");
        let (shape, values) = match rows {
            None => (shape, values),
            Some((from, to)) => {
                let cols: usize = shape[1..].iter().product();
                let values = values[from * d * cols..to * d * cols].to_vec();
                let mut shape = shape;
                shape[0] = (to - from) * d;
                (shape, values)
            }
        };
        let bytes = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        tensors.insert(name.clone(), (shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (shape, bytes))| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), bytes)
                    .expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    let config = serde_json::json!({
        "model_type": "whisper", "num_mel_bins": 80, "max_source_positions": 1500, "d_model": 384,
        "encoder_attention_heads": 6, "encoder_layers": 4, "max_target_positions": 448,
        "decoder_attention_heads": 6, "decoder_layers": 4, "vocab_size": 51864,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let ct2_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ct2_dir.join("config.json")).unwrap())
            .unwrap();
    let generation = serde_json::json!({
        "suppress_tokens": ct2_config["suppress_ids"],
        "begin_suppress_tokens": ct2_config["suppress_ids_begin"],
        "alignment_heads": ct2_config["alignment_heads"],
    });
    std::fs::write(dir.join("generation_config.json"), generation.to_string()).expect("generation");
    std::fs::copy(ct2_dir.join("tokenizer.json"), dir.join("tokenizer.json")).expect("tokenizer");
}

#[test]
fn a_hugging_face_folder_of_the_same_weights_decodes_the_same() {
    let fixture = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    write_hf_folder(dir.path());
    let hf = WhisperModel::load(dir.path(), &common::test_device()).expect("load HF layout");
    assert_eq!(hf.format(), WhisperFormat::HuggingFace);
    let (ct2, tokenizer) = load();
    assert_eq!(hf.dims(), ct2.dims());
    assert_eq!(hf.decoding_config(), ct2.decoding_config());
    let window = first_window(&clip(&fixture));
    // The same f16 values in another layout: the same numbers come out.
    let a = hf.encode(&[&window]).unwrap().to_vec().unwrap();
    let b = ct2.encode(&[&window]).unwrap().to_vec().unwrap();
    let worst = max_diff(a, b);
    assert!(worst < 1e-4, "HF vs CT2 encoder max |Δ| {worst:e}");
    assert_eq!(
        greedy(&hf, &tokenizer, &window).tokens,
        greedy(&ct2, &tokenizer, &window).tokens
    );
}

#[test]
fn broken_folders_name_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = WhisperModel::load(dir.path(), &common::test_device()).unwrap_err();
    assert!(err.to_string().contains("model.bin"), "{err}");
    std::fs::write(
        dir.path().join("model.bin"),
        b"\x06\x00\x00\x00\x05\x00Bert\x00",
    )
    .unwrap();
    let err = WhisperModel::load(dir.path(), &common::test_device()).unwrap_err();
    assert!(err.to_string().contains("model.bin"), "{err}");
}
