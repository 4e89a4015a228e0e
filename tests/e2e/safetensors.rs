//! A Hugging Face checkpoint folder (safetensors + tokenizer.json + tokenizer_config.json)
//! served through the real binary: the tiny random-weight Qwen3 of the model tests, whose
//! greedy continuation the numpy reference recorded (`models/tests/fixtures`).
//!
//! `HEARTH_E2E_DEVICE` (`cpu`, `wgpu` or `auto`, default `cpu`) picks the deployment's device;
//! `scripts/test-wgpu` runs this file again on wgpu.

use hearth_e2e::{Server, model_fixtures, sse_chat_text};
use hearth_models::ChatTokenizer;
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn start() -> (tempfile::TempDir, Server) {
    let device = std::env::var("HEARTH_E2E_DEVICE").unwrap_or_else(|_| "cpu".to_owned());
    let config = format!(
        "[[deployments]]\nname = \"tiny-qwen3\"\nkind = \"chat\"\n  [[deployments.targets]]\n  source = \"{}\"\n  device = \"{device}\"\n",
        model_fixtures().join("tiny-qwen3").display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config, &[]).unwrap();
    (dir, server)
}

fn reference_chat() -> Value {
    let text = std::fs::read_to_string(model_fixtures().join("qwen_reference.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all["tiny-qwen3"]["chat"].clone()
}

/// The reference continuation token by token, as the API shows tokens (each id decoded on
/// its own). A random-weight model writes bytes that need not form UTF-8 text, so the
/// comparison is per token rather than on the joined text.
fn expected_tokens(greedy: &[u32]) -> Vec<String> {
    let tokenizer = ChatTokenizer::load(&model_fixtures().join("tiny-qwen3")).unwrap();
    greedy
        .iter()
        .map(|&id| tokenizer.decode(&[id], true).unwrap())
        .collect()
}

fn tokens_of(logprobs: &Value, field: &str) -> Vec<String> {
    logprobs[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.get("token").unwrap_or(t).as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_safetensors_checkpoint_answers_chat_with_the_reference_continuation() {
    let (_dir, server) = start();
    let chat = reference_chat();
    let greedy: Vec<u32> = serde_json::from_value(chat["greedy_ids"].clone()).unwrap();
    let body = json!({
        "model": "tiny-qwen3",
        "messages": chat["messages"],
        "temperature": 0,
        "max_tokens": greedy.len(),
        "logprobs": true,
    });
    let reply: Value = Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let choice = &reply["choices"][0];
    assert_eq!(
        tokens_of(&choice["logprobs"], "content"),
        expected_tokens(&greedy),
        "{reply}"
    );
    assert_eq!(choice["finish_reason"], "length");
    let prompt_ids = chat["token_ids"].as_array().unwrap().len();
    assert_eq!(reply["usage"]["prompt_tokens"], prompt_ids);
    assert_eq!(reply["usage"]["completion_tokens"], greedy.len());

    // Streamed: joined deltas equal the whole answer.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let text = Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(&streamed)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let joined = sse_chat_text(&text);
    assert_eq!(joined, choice["message"]["content"].as_str().unwrap());
}

#[test]
fn a_safetensors_checkpoint_serves_completions_from_token_ids() {
    let (_dir, server) = start();
    let chat = reference_chat();
    let greedy: Vec<u32> = serde_json::from_value(chat["greedy_ids"].clone()).unwrap();
    let reply: Value = Client::new()
        .post(server.url("/v1/completions"))
        .json(&json!({
            "model": "tiny-qwen3",
            "prompt": chat["token_ids"],
            "temperature": 0,
            "max_tokens": 4,
            "logprobs": 2,
        }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        tokens_of(&reply["choices"][0]["logprobs"], "tokens"),
        expected_tokens(&greedy[..4]),
        "{reply}"
    );
    assert_eq!(reply["usage"]["completion_tokens"], 4);
}
