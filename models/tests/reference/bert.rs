//! all-MiniLM-L6-v2 in burn against the numpy reference in `fixtures/minilm_reference.json`
//! (written by `models/scripts/generate_embedding_reference.py`, which checks the published
//! cosines before writing), plus the errors a broken model folder must produce.
//!
//! Needs the real model: `scripts/fetch-models` installs it in `<repo>/.models`, or set
//! `HEARTH_MODELS_DIR` to a folder holding `all-minilm-l6-v2/`.
//!
//! The reference checks run on the CPU by default; `HEARTH_TEST_DEVICE=wgpu` with
//! `--features wgpu` runs the same checks on the GPU path (`scripts/test-wgpu`).

use crate::common;
use crate::common::max_abs_diff;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_models::{EmbeddingModel, ModelError, cpu_device};
use serde::Deserialize;

/// Reference agreement. The numpy reference runs in f64; burn runs in f32 with a different
/// summation order, so single elements drift by ~1e-6. 1e-4 per element (the tolerance
/// burn's model crates use) and cosine ≥ 0.9999 catch any real bug (a wrong mask, GELU
/// variant or LayerNorm epsilon moves elements by 1e-3 or more).
const MAX_ABS_DIFF: f32 = 1e-4;
const MIN_COSINE: f32 = 0.9999;
/// A sentence alone and in a padded batch must agree to f32 rounding: padding is masked, not
/// approximately ignored.
const BATCH_ABS_DIFF: f32 = 1e-5;

#[derive(Debug, Deserialize)]
struct Fixture {
    dimensions: usize,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    sentence: String,
    token_ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn model_dir() -> PathBuf {
    let weights = common::installed("all-minilm-l6-v2/model.safetensors");
    weights
        .parent()
        .expect("a folder holds the weights")
        .to_path_buf()
}

fn model() -> &'static EmbeddingModel {
    static MODEL: OnceLock<EmbeddingModel> = OnceLock::new();
    MODEL.get_or_init(
        || match EmbeddingModel::load(&model_dir(), &common::test_device()) {
            Ok(model) => model,
            Err(err) => panic!("loading all-MiniLM-L6-v2: {err}"),
        },
    )
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture parses")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn embed_one(model: &EmbeddingModel, ids: &[u32]) -> Vec<f32> {
    let mut out = model.embed(&[ids.to_vec()]).expect("embed");
    out.pop().expect("one vector")
}

#[test]
fn token_ids_match_reference_tokenizer() {
    let model = model();
    for case in fixture().cases {
        let ids = model.tokenize(&case.sentence).expect("tokenize");
        assert_eq!(ids, case.token_ids, "token ids of {:?}", case.sentence);
    }
}

#[test]
fn tokenize_adds_special_tokens_without_padding() {
    let ids = model().tokenize("A man is eating food.").expect("tokenize");
    assert_eq!(ids.len(), 8, "no padding to 128: {ids:?}");
    assert_eq!((ids[0], ids[7]), (101, 102), "[CLS] ... [SEP]");
}

#[test]
fn embeddings_match_reference() {
    let model = model();
    let fixture = fixture();
    assert_eq!(model.dimensions(), fixture.dimensions);
    for case in &fixture.cases {
        let got = embed_one(model, &case.token_ids);
        assert_eq!(got.len(), case.embedding.len());
        let cos = cosine(&got, &case.embedding);
        let diff = max_abs_diff(&got, &case.embedding);
        assert!(
            cos >= MIN_COSINE && diff <= MAX_ABS_DIFF,
            "{:?}: cosine {cos}, max abs diff {diff}",
            case.sentence
        );
    }
}

#[test]
fn published_similarities_hold() {
    let model = model();
    let embed = |text: &str| embed_one(model, &model.tokenize(text).expect("tokenize"));
    let food = embed("A man is eating food.");
    let bread = embed("A man is eating a piece of bread.");
    let movie = embed("The new movie is awesome.");
    assert!((cosine(&food, &bread) - 0.7553).abs() < 1e-3);
    assert!((cosine(&food, &movie) - -0.046).abs() < 1e-2);
}

#[test]
fn batch_equals_one_at_a_time() {
    let model = model();
    let cases = fixture().cases;
    let batch: Vec<Vec<u32>> = cases.iter().map(|c| c.token_ids.clone()).collect();
    let together = model.embed(&batch).expect("batch embed");
    assert_eq!(together.len(), batch.len());
    for (ids, batched) in batch.iter().zip(&together) {
        let alone = embed_one(model, ids);
        let diff = max_abs_diff(&alone, batched);
        assert!(
            diff <= BATCH_ABS_DIFF,
            "{} tokens: batch vs single differ by {diff}",
            ids.len()
        );
    }
}

#[test]
fn embed_rejects_bad_input_and_accepts_empty_batch() {
    let model = model();
    assert!(model.embed(&[]).expect("empty batch").is_empty());
    assert_eq!(
        model.max_input_tokens(),
        256,
        "min(512 positions, max_seq_length 256)"
    );
    let too_long = vec![101; model.max_input_tokens() + 1];
    assert!(matches!(
        model.embed(&[too_long]),
        Err(ModelError::InvalidInput(_))
    ));
    assert!(matches!(
        model.embed(&[vec![101, 30522, 102]]),
        Err(ModelError::InvalidInput(_))
    ));
    assert!(matches!(
        model.embed(&[vec![]]),
        Err(ModelError::InvalidInput(_))
    ));
}

/// A copy of the model folder without its weights, to break one file at a time.
fn folder_without_weights() -> tempfile::TempDir {
    let src = model_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(src.join(file), dir.path().join(file)).expect("copy model file");
    }
    std::fs::create_dir(dir.path().join("1_Pooling")).expect("mkdir");
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        dir.path().join("1_Pooling/config.json"),
    )
    .expect("copy pooling config");
    dir
}

fn load_error(dir: &Path) -> String {
    match EmbeddingModel::load(dir, &cpu_device()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(err) => err.to_string(),
    }
}

#[test]
fn missing_weights_name_the_file() {
    let dir = folder_without_weights();
    let err = load_error(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("fetch-models"),
        "{err}"
    );
}

#[test]
fn wrong_config_field_type_names_file_and_field() {
    let dir = folder_without_weights();
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).expect("read config");
    let broken = text.replace("\"hidden_size\": 384", "\"hidden_size\": \"384\"");
    assert_ne!(text, broken, "config.json changed shape; update this test");
    std::fs::write(&path, broken).expect("write config");
    let err = load_error(dir.path());
    assert!(
        err.contains("config.json") && err.contains("hidden_size"),
        "{err}"
    );
}

#[test]
fn corrupt_weights_name_the_file() {
    let dir = folder_without_weights();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .expect("write");
    let err = load_error(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn wrong_tensor_shape_names_the_tensor() {
    // A valid safetensors file whose only tensor has the wrong shape.
    let dir = folder_without_weights();
    let header = br#"{"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&1.0f32.to_le_bytes());
    std::fs::write(dir.path().join("model.safetensors"), file).expect("write");
    let err = load_error(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("embeddings.word_embeddings.weight"),
        "{err}"
    );
}

/// Rewrites a safetensors file with `prefix` in front of every tensor name.
fn write_prefixed_weights(src: &Path, dst: &Path, prefix: &str) {
    let bytes = std::fs::read(src).expect("read weights");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let header_end = 8 + usize::try_from(header_len).expect("header length");
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..header_end]).expect("header json");
    let renamed: serde_json::Map<_, _> = header
        .into_iter()
        .map(|(name, info)| match name.as_str() {
            "__metadata__" => (name, info),
            _ => (format!("{prefix}{name}"), info),
        })
        .collect();
    let mut new_header = serde_json::to_vec(&renamed).expect("serialize header");
    // Keep the tensor data 8-byte aligned, as the format recommends.
    new_header.resize(new_header.len().next_multiple_of(8), b' ');
    let mut file = (new_header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&new_header);
    file.extend_from_slice(&bytes[header_end..]);
    std::fs::write(dst, file).expect("write weights");
}

#[test]
fn bert_prefixed_checkpoint_without_sentence_transformers_files_loads() {
    // A `BertModel` checkpoint as BERT/BGE/E5 ship it: names under `bert.`, no modules.json
    // (so mean pooling + normalisation by default), no sentence_bert_config.json.
    let src = model_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(file), dir.path().join(file)).expect("copy model file");
    }
    write_prefixed_weights(
        &src.join("model.safetensors"),
        &dir.path().join("model.safetensors"),
        "bert.",
    );
    let prefixed = match EmbeddingModel::load(dir.path(), &cpu_device()) {
        Ok(model) => model,
        Err(err) => panic!("bert.-prefixed checkpoint: {err}"),
    };
    assert_eq!(
        prefixed.max_input_tokens(),
        512,
        "no sentence_bert_config.json: all positions"
    );
    let case = &fixture().cases[0];
    let got = embed_one(&prefixed, &case.token_ids);
    let diff = max_abs_diff(&got, &case.embedding);
    assert!(diff <= MAX_ABS_DIFF, "max abs diff {diff}");
}
