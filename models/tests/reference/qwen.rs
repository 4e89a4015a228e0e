//! Tiny random-weight Qwen2 and Qwen3 checkpoints (Hugging Face folders: `config.json`,
//! safetensors, `tokenizer.json`, `tokenizer_config.json`) against the numpy reference in
//! `fixtures/qwen_reference.json`, both written by `models/scripts/generate_qwen_reference.py`.
//!
//! They cover what SmolLM2 does not: Q/K/V biases (Qwen2), RMSNorm on query and key heads
//! (Qwen3), an explicit `head_dim`, tied and untied LM heads, bf16 and f16 weights, a sharded
//! checkpoint, Llama-3 RoPE scaling, and the tokenizer, stop ids and chat template of
//! `tokenizer.json` + `tokenizer_config.json` + `generation_config.json`.
//!
//! Runs on the CPU, or on wgpu with `HEARTH_TEST_DEVICE=wgpu --features wgpu`
//! (`scripts/test-wgpu`).

use crate::common;
use crate::common::max_abs_diff;

use std::path::{Path, PathBuf};

use hearth_models::chat_template::{ChatMessage, ChatTemplate};
use hearth_models::llama::{LlamaModel, RopeScaling, argmax};
use hearth_models::{ChatTokenizer, ModelError};
use serde::Deserialize;

/// Logit agreement. The reference runs in f64 on the same bf16/f16-rounded weights; burn runs
/// in f32. Logits here are O(10); f32 rounding through 2–3 layers moves them by ~1e-5. A missing
/// bias, q/k norm or wrong RoPE scaling moves them by 0.1 or more.
const LOGIT_ABS_DIFF: f32 = 2e-4;

const MODELS: [&str; 2] = ["tiny-qwen2", "tiny-qwen3"];

#[derive(Debug, Deserialize)]
struct Reference {
    prompts: Vec<Prompt>,
    chat: Chat,
}

#[derive(Debug, Deserialize)]
struct Prompt {
    text: String,
    token_ids: Vec<u32>,
    last_logits: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    messages: Vec<Message>,
    prompt: String,
    token_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixtures().join("qwen_reference.json")).expect("fixture");
    let mut all: std::collections::HashMap<String, Reference> =
        serde_json::from_str(&text).expect("fixture parses");
    all.remove(name).expect("model in the fixture")
}

fn load(name: &str) -> (LlamaModel, ChatTokenizer) {
    let dir = fixtures().join(name);
    let model = LlamaModel::load(&dir, &common::test_device()).expect("loads the checkpoint");
    let tokenizer = ChatTokenizer::load(&dir).expect("loads the tokenizer");
    (model, tokenizer)
}

#[test]
fn configs_are_read_from_config_json() {
    let (qwen2, _) = load("tiny-qwen2");
    let c = qwen2.config();
    assert!(c.attention_bias && !c.qk_norm);
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 2, 16));
    assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    let (qwen3, _) = load("tiny-qwen3");
    let c = qwen3.config();
    assert!(!c.attention_bias && c.qk_norm);
    // Qwen3's head width is its own setting, not hidden / heads (64 / 4).
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 1, 24));
    assert_eq!(
        (c.num_layers, c.context_length, c.vocab_size),
        (3, 128, 320)
    );
}

#[test]
fn last_logits_match_reference() {
    for name in MODELS {
        let (model, tokenizer) = load(name);
        for prompt in reference(name).prompts {
            let ids = tokenizer.encode(&prompt.text, true).expect("encodes");
            assert_eq!(
                ids, prompt.token_ids,
                "{name}: token ids of {:?}",
                prompt.text
            );
            let logits = model
                .forward(&ids, &mut model.new_cache())
                .expect("forward");
            let diff = max_abs_diff(&logits, &prompt.last_logits);
            assert!(
                diff <= LOGIT_ABS_DIFF,
                "{name}: {:?}: max |Δ| {diff}",
                prompt.text
            );
        }
    }
}

#[test]
fn chat_template_and_greedy_continuation_match_reference() {
    for name in MODELS {
        let (model, tokenizer) = load(name);
        let chat = reference(name).chat;
        let template = ChatTemplate::new(
            tokenizer
                .chat_template()
                .expect("tokenizer_config.json has a template"),
            tokenizer.bos_token().unwrap_or_default(),
            tokenizer.eos_token().unwrap_or_default(),
        )
        .expect("compiles");
        let messages: Vec<ChatMessage> = chat
            .messages
            .iter()
            .map(|m| ChatMessage {
                role: m.role.clone(),
                content: m.content.clone(),
            })
            .collect();
        let prompt = template.render(&messages, true).expect("renders");
        assert_eq!(prompt, chat.prompt, "{name}: rendered chat prompt");
        let ids = tokenizer.encode(&prompt, false).expect("encodes");
        assert_eq!(ids, chat.token_ids, "{name}: chat prompt ids");

        let mut cache = model.new_cache();
        let mut logits = model.forward(&ids, &mut cache).expect("prefill");
        let mut greedy = Vec::new();
        for _ in 0..chat.greedy_ids.len() {
            let next = argmax(&logits);
            greedy.push(next);
            logits = model.forward(&[next], &mut cache).expect("decode step");
        }
        assert_eq!(greedy, chat.greedy_ids, "{name}: greedy continuation");
    }
}

/// The CPU's file-type path: the bf16 (Qwen2) and f16 (Qwen3, sharded) matrices kept as
/// stored and run by the host pass's float kernels (f32 activations and sums), held to the
/// same reference and tolerance as the f32 tensors.
#[test]
fn the_16_bit_path_keeps_the_file_types_and_matches_the_reference() {
    let device = hearth_models::cpu_device();
    for name in MODELS {
        let dir = fixtures().join(name);
        let model = LlamaModel::load_hf_with(&dir, &device, true).expect("loads");
        assert!(model.uses_host_path(), "{name}: not on the host pass");
        let reference = reference(name);
        for prompt in &reference.prompts {
            let logits = model
                .forward(&prompt.token_ids, &mut model.new_cache())
                .expect("forward");
            let diff = max_abs_diff(&logits, &prompt.last_logits);
            assert!(
                diff <= LOGIT_ABS_DIFF,
                "{name}: {:?}: max |Δ| {diff}",
                prompt.text
            );
        }
        let chat = reference.chat;
        let mut cache = model.new_cache();
        let mut logits = model.forward(&chat.token_ids, &mut cache).expect("prefill");
        let mut greedy = Vec::new();
        for _ in 0..chat.greedy_ids.len() {
            let next = argmax(&logits);
            greedy.push(next);
            logits = model.forward(&[next], &mut cache).expect("decode step");
        }
        assert_eq!(greedy, chat.greedy_ids, "{name}: greedy continuation");
        // Batched, as the server runs it.
        let prompts = &reference.prompts;
        let mut caches = [model.new_cache(), model.new_cache()];
        let [a, b] = &mut caches;
        let together = model
            .forward_batch(&mut [(&prompts[0].token_ids, a), (&prompts[1].token_ids, b)])
            .expect("batched forward");
        for (prompt, batched) in prompts.iter().zip(&together) {
            assert!(max_abs_diff(&prompt.last_logits, batched) <= LOGIT_ABS_DIFF);
        }
    }
}

#[test]
fn batched_decoding_matches_one_sequence_at_a_time() {
    let (model, _) = load("tiny-qwen3");
    let prompts = reference("tiny-qwen3").prompts;
    let alone: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| {
            model
                .forward(&p.token_ids, &mut model.new_cache())
                .expect("forward")
        })
        .collect();
    let mut caches = [model.new_cache(), model.new_cache()];
    let [a, b] = &mut caches;
    let together = model
        .forward_batch(&mut [(&prompts[0].token_ids, a), (&prompts[1].token_ids, b)])
        .expect("batched forward");
    for (one, batched) in alone.iter().zip(&together) {
        assert!(max_abs_diff(one, batched) <= 1e-4);
    }
}

#[test]
fn tokenizer_specials_and_stop_ids_come_from_the_folder() {
    let (_, tokenizer) = load("tiny-qwen2");
    // `eos_token` of tokenizer_config.json plus generation_config.json's list plus config.json's.
    assert_eq!(tokenizer.stop_ids(), &[0, 2]);
    assert_eq!(tokenizer.eos_token(), Some("<|im_end|>"));
    assert_eq!(tokenizer.bos_token(), None);
    let text = "Hello, world! café 日本語";
    let ids = tokenizer.encode(text, false).expect("encodes");
    assert_eq!(tokenizer.decode(&ids, true).expect("decodes"), text);
    let with_special = tokenizer
        .encode("<|im_start|>user", false)
        .expect("encodes");
    assert_eq!(with_special[0], 1, "special tokens are matched before BPE");
}

/// A copy of a fixture folder to break on purpose.
fn broken_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixtures().join(name)).expect("fixture dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    edit(&mut config);
    std::fs::write(&path, config.to_string()).expect("write config");
}

#[test]
fn broken_checkpoints_are_errors_that_name_the_problem() {
    let device = hearth_models::cpu_device();

    let dir = broken_copy("tiny-qwen3");
    edit_config(dir.path(), |c| c["model_type"] = "gpt_neox".into());
    let err = LlamaModel::load(dir.path(), &device).expect_err("unsupported model type");
    assert!(
        matches!(&err, ModelError::Config { field, .. } if field == "model_type"),
        "{err}"
    );

    let dir = broken_copy("tiny-qwen3");
    edit_config(dir.path(), |c| c["intermediate_size"] = 100.into());
    for keep_file_types in [false, true] {
        let err = LlamaModel::load_hf_with(dir.path(), &device, keep_file_types)
            .expect_err("wrong shape");
        assert!(
            matches!(&err, ModelError::Tensor { tensor, reason, .. }
                if tensor == "model.layers.0.mlp.gate_proj.weight" && reason.contains("[96, 64]")),
            "{err}"
        );
    }

    // An untied model without its LM head names the missing tensor.
    let dir = broken_copy("tiny-qwen2");
    edit_config(dir.path(), |c| c["tie_word_embeddings"] = false.into());
    let err = LlamaModel::load(dir.path(), &device).expect_err("no lm_head");
    assert!(
        matches!(&err, ModelError::Tensor { tensor, .. } if tensor == "lm_head.weight"),
        "{err}"
    );

    let dir = broken_copy("tiny-qwen3");
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("rm shard");
    let err = LlamaModel::load(dir.path(), &device).expect_err("missing shard");
    assert!(
        matches!(&err, ModelError::MissingFile { path } if path.ends_with("model-00002-of-00002.safetensors")),
        "{err}"
    );

    let dir = broken_copy("tiny-qwen2");
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").expect("write");
    let err = LlamaModel::load(dir.path(), &device).expect_err("garbage weights");
    assert!(matches!(&err, ModelError::Weights { .. }), "{err}");
}
