//! `/v1/embeddings` on the real all-MiniLM-L6-v2 through the real binary:
//! shapes, limits, truncation, and requests sharing batches under load.

use hearth_e2e::Server;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::config;

fn embed(server: &Server, body: Value) -> (StatusCode, Value) {
    let response = Client::new()
        .post(server.url("/v1/embeddings"))
        .json(&body)
        .send()
        .unwrap();
    (response.status(), response.json().unwrap())
}

fn vector(body: &Value, i: usize) -> Vec<f64> {
    body["data"][i]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embeddings_have_the_openai_shape_and_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    let sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
    ];
    let (status, body) = embed(&server, json!({"model": "all-minilm", "input": sentences}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-minilm");
    assert_eq!(body["data"][2]["index"], 2);
    assert_eq!(body["data"][0]["object"], "embedding");
    let (a, b, c) = (vector(&body, 0), vector(&body, 1), vector(&body, 2));
    assert_eq!(a.len(), 384);
    // Published figures for this model (MODELS.md): 0.7553 and -0.046.
    assert!((dot(&a, &b) - 0.7553).abs() < 1e-3, "{}", dot(&a, &b));
    assert!((dot(&a, &c) + 0.046).abs() < 1e-2, "{}", dot(&a, &c));
    // [CLS] + 6 words + '.' + [SEP] = 8 tokens for the first; the usage is the real sum.
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 20);
    assert_eq!(
        body["usage"]["prompt_tokens"],
        body["usage"]["total_tokens"]
    );

    // Token input gives the same vector as the text it came from.
    let (_, single) = embed(
        &server,
        json!({"model": "all-minilm", "input": "A man is eating food."}),
    );
    assert_eq!(vector(&single, 0), a);
}

#[test]
fn limits_are_errors_unless_truncation_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    let long = "word ".repeat(400);
    let (status, body) = embed(
        &server,
        json!({"model": "all-minilm", "input": [ "short", long ]}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "input");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("256"),
        "{body}"
    );

    for (bad, param) in [
        (
            json!({"model": "all-minilm", "input": "x", "dimensions": 385}),
            "dimensions",
        ),
        (
            json!({"model": "all-minilm", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (json!({"model": "all-minilm", "input": [999_999]}), "input"),
        (json!({"model": "all-minilm", "input": []}), "input"),
        (json!({"model": "all-minilm"}), "input"),
    ] {
        let (status, body) = embed(&server, bad.clone());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
        assert_eq!(body["error"]["param"], param, "{bad} → {body}");
    }
    drop(server);

    let truncating = config().replace(
        "kind = \"embedding\"",
        "kind = \"embedding\"\ntruncate_inputs = true",
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &truncating, &[]).unwrap();
    let (status, body) = embed(&server, json!({"model": "all-minilm", "input": long}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 256);
}

#[test]
fn concurrent_requests_share_batches() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    let requests = 24;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..requests)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let text = format!(
                        "Request number {i} asks for a vector of a longer sentence than most."
                    );
                    let (status, body) = embed(
                        server,
                        json!({"model": "all-minilm", "input": [text, "and a short one"]}),
                    );
                    assert_eq!(status, StatusCode::OK, "{body}");
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    });
    let metrics = server.metrics();
    let read = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(
        metrics.contains(r#"hearth_usage_prompt_tokens_total{deployment="all-minilm"}"#),
        "{metrics}"
    );
    let batches = read("hearth_embedding_batch_size_count");
    let sequences = read("hearth_embedding_batch_size_sum");
    assert_eq!(sequences, f64::from(2 * requests));
    assert!(
        batches < f64::from(requests),
        "{batches} batches for {requests} concurrent requests: none were shared"
    );
}
