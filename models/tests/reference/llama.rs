//! SmolLM2-135M-Instruct (GGUF, Q4_1) in burn against the numpy reference in
//! `fixtures/llama_reference.json` (written by `models/scripts/generate_llama_reference.py` on
//! the same dequantised weights; it asserts the greedy answer contains "Paris" before writing).
//!
//! Needs the real model: `scripts/fetch-models` installs it in `<repo>/.models`, or set
//! `HEARTH_MODELS_DIR` to a folder holding `smollm2-135m-instruct/`.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_models::gguf::{GgufFile, GgufTokenizer, IncrementalDetokenizer};
use hearth_models::llama::{LlamaModel, argmax};
use hearth_models::{ModelError, cpu_device};
use serde::Deserialize;

/// Logit agreement. The reference runs in f64 with llama.cpp's interleaved RoPE on the GGUF
/// rows; burn runs in f32 with the rows un-permuted and rotate-half RoPE, through 30 layers.
/// f32 rounding moves logits (magnitude ~20) by ~1e-4; a wrong RoPE pairing, ε, mask or GQA
/// grouping moves them by 0.1 or more.
const LOGIT_ABS_DIFF: f32 = 1e-3;
/// The same tokens through the batched path, in chunks or alone: only summation order differs.
const PATH_ABS_DIFF: f32 = 1e-4;

#[derive(Debug, Deserialize)]
struct Fixture {
    prompts: Vec<Prompt>,
    chat: Chat,
}

#[derive(Debug, Deserialize)]
struct Prompt {
    text: String,
    token_ids: Vec<u32>,
    top_logits: Vec<(usize, f32)>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    question: String,
    prompt: String,
    greedy_ids: Vec<u32>,
    greedy_text: String,
}

fn model_path() -> PathBuf {
    common::installed("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The model and the tokenizer from its metadata, read from one parse of the file.
fn loaded() -> &'static (LlamaModel, GgufTokenizer) {
    static MODEL: OnceLock<(LlamaModel, GgufTokenizer)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let file = GgufFile::open(&model_path()).expect("opens SmolLM2");
        let model = LlamaModel::from_gguf(&file, &cpu_device()).expect("loads SmolLM2");
        let tokenizer = GgufTokenizer::from_gguf(&file).expect("SmolLM2's tokenizer");
        (model, tokenizer)
    })
}

fn model() -> &'static LlamaModel {
    &loaded().0
}

fn tokenizer() -> &'static GgufTokenizer {
    &loaded().1
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable"))
        .expect("fixture parses")
}

#[test]
fn config_and_tokenizer_metadata() {
    let model = model();
    let config = model.config();
    assert_eq!(*config, hearth_models::llama::LlamaConfig::smollm2_135m());
    let tokenizer = tokenizer();
    assert_eq!(
        (
            tokenizer.bos_id(),
            tokenizer.eos_id(),
            tokenizer.unknown_id(),
            tokenizer.padding_id()
        ),
        (Some(1), Some(2), Some(0), Some(2))
    );
    assert_eq!(tokenizer.stop_ids(), &[2]);
    let template = tokenizer
        .chat_template()
        .expect("SmolLM2 has a chat template");
    assert!(template.contains("<|im_start|>") && template.contains("add_generation_prompt"));
}

#[test]
fn tokenizer_matches_reference() {
    let tokenizer = tokenizer();
    for prompt in fixture().prompts {
        let ids = tokenizer.encode(&prompt.text, true).expect("encodes");
        assert_eq!(ids, prompt.token_ids, "{:?}", prompt.text);
        assert_eq!(tokenizer.decode(&ids, false).expect("decodes"), prompt.text);
    }
}

#[test]
fn last_logits_match_reference() {
    let model = model();
    for prompt in fixture().prompts {
        let logits = model
            .forward(&prompt.token_ids, &mut model.new_cache())
            .expect("forward");
        assert_eq!(logits.len(), model.config().vocab_size);
        assert_eq!(
            argmax(&logits) as usize,
            prompt.top_logits[0].0,
            "argmax of {:?}",
            prompt.text
        );
        common::assert_logits_near(
            &prompt.text,
            &logits,
            prompt.top_logits.iter().copied(),
            LOGIT_ABS_DIFF,
        );
    }
}

#[test]
fn greedy_chat_with_kv_cache_matches_reference() {
    let model = model();
    let chat = fixture().chat;
    assert!(chat.prompt.contains(&chat.question));
    let tokenizer = tokenizer();
    let prompt = tokenizer.encode(&chat.prompt, true).expect("encodes");
    let mut cache = model.new_cache();
    let mut logits = model.forward(&prompt, &mut cache).expect("prefill");
    let (mut ids, mut text, mut detok) =
        (Vec::new(), String::new(), IncrementalDetokenizer::default());
    while ids.len() < chat.greedy_ids.len() {
        let next = argmax(&logits);
        ids.push(next);
        text.push_str(&detok.push(tokenizer, next).expect("known id"));
        if tokenizer.stop_ids().contains(&next) {
            break;
        }
        logits = model.forward(&[next], &mut cache).expect("decode step");
    }
    text.push_str(&detok.finish());
    assert_eq!(
        ids, chat.greedy_ids,
        "greedy tokens (reference: {:?}, got {text:?})",
        chat.greedy_text
    );
    assert_eq!(text, chat.greedy_text);
    assert!(text.contains("Paris"), "{text:?}");
}

#[test]
fn chunked_and_batched_paths_agree_with_one_pass() {
    let prompts = fixture().prompts;
    let (a, b) = (&prompts[0].token_ids, &prompts[1].token_ids);
    common::assert_chunked_and_batched_agree(model(), a, b, PATH_ABS_DIFF);
}

#[test]
fn detokenizer_never_splits_a_character() {
    let tokenizer = tokenizer();
    let text = "café 日本語 🙂!";
    let ids = tokenizer.encode(text, false).expect("encodes");
    let mut detok = IncrementalDetokenizer::default();
    let mut out = String::new();
    for &id in &ids {
        let piece = detok.push(tokenizer, id).expect("known id");
        assert!(
            !piece.contains('\u{fffd}'),
            "piece {piece:?} splits a character"
        );
        out.push_str(&piece);
    }
    assert!(!detok.has_pending());
    assert_eq!(out, text);
    assert!(
        ids.len() > text.chars().count() / 2,
        "multi-byte characters span tokens here"
    );
}

#[test]
fn bad_inputs_are_errors_and_leave_the_cache_alone() {
    let model = model();
    let mut cache = model.new_cache();
    let vocab = model.config().vocab_size as u32;
    assert!(
        matches!(model.forward(&[1, vocab], &mut cache), Err(ModelError::InvalidInput(m)) if m.contains(&vocab.to_string()))
    );
    assert!(matches!(
        model.forward(&[], &mut cache),
        Err(ModelError::InvalidInput(_))
    ));
    assert!(cache.is_empty());
    assert!(matches!(
        LlamaModel::load_gguf(Path::new("/nonexistent/model.gguf"), &cpu_device()),
        Err(ModelError::MissingFile { .. })
    ));
}
