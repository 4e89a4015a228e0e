//! Regressions for what `tests/python/test_schemathesis.py` found: each request here once
//! answered a 5xx (or hurt another request) and must now be an honest 4xx.

use axum::http::StatusCode;
use serde_json::json;

use super::harness_with;

/// A real chat deployment: the tiny random-weight Qwen3 of the model tests (loads in well
/// under a second, and its tokenizer adds no start token).
const TINY: &str = concat!(
    r#"
[[deployments]]
name = "tiny"
kind = "chat"
  [[deployments.targets]]
  device = "cpu"
  source = ""#,
    env!("CARGO_MANIFEST_DIR"),
    r#"/../models/tests/fixtures/tiny-qwen3"
"#
);

/// An empty prompt on a model without a start token has no tokens: it was a 500 ("sequence
/// has no new tokens"), and in a batch it failed the forward pass of every request batched
/// with it.
#[tokio::test]
async fn an_empty_prompt_is_a_400_and_spares_its_neighbours() {
    let h = harness_with(TINY, false);
    for prompt in [json!(""), json!(["a", ""])] {
        let body = json!({"model": "tiny", "prompt": prompt, "max_tokens": 2});
        let (status, body) = h.post("/v1/completions", None, body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["param"], "prompt", "{body}");
    }
    let body = json!({"model": "tiny", "prompt": "a", "max_tokens": 2});
    let (status, body) = h.post("/v1/completions", None, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
