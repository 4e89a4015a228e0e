//! Chat on the real SmolLM2 through the real binary: what SDK suites cannot see,
//! such as a client that goes away mid-stream.

use std::io::Read;
use std::time::{Duration, Instant};

use hearth_e2e::Server;
use reqwest::blocking::Client;
use serde_json::json;

use crate::config;

fn metric(server: &Server, name: &str) -> f64 {
    let text = server.metrics();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_client_that_disconnects_cancels_its_generation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    let body = json!({
        "model": "smollm2", "stream": true, "max_tokens": 4000, "temperature": 1.0, "seed": 1,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
    });
    let mut response = Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    assert!(response.status().is_success());
    let mut first = [0u8; 64];
    response.read_exact(&mut first).unwrap();
    assert!(
        first.starts_with(b"data: {"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    drop(response);

    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "hearth_generation_cancelled_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the generation was not cancelled:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Far fewer than the 4000 tokens asked for were generated.
    assert!(metric(&server, "hearth_generation_tokens_total") < 1000.0);

    // The worker is free for the next request.
    let answer: serde_json::Value = Client::new()
        .post(server.url("/v1/chat/completions"))
        // Greedy: sampled at the default temperature, the model may end its answer within
        // three tokens (it once said "Hello..." and stopped).
        .json(&json!({"model": "smollm2", "max_tokens": 3, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "length", "{answer}");
}

#[test]
fn a_full_queue_is_a_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let tight = config().replace(
        "kind = \"chat\"",
        "kind = \"chat\"\nmax_batch_size = 1\nmax_queued_requests = 1",
    );
    let server = Server::start(dir.path(), &tight, &[]).unwrap();
    // The end-of-text tokens are banned, so the streams run until they are dropped.
    let long = json!({
        "model": "smollm2", "stream": true, "max_tokens": 4000,
        "logit_bias": {"0": -100, "2": -100},
        "messages": [{"role": "user", "content": "Count from one to a thousand in words."}],
    });
    let client = Client::new();
    // The first runs, the second waits in the queue (their streams stay open).
    let mut running = client
        .post(server.url("/v1/chat/completions"))
        .json(&long)
        .send()
        .unwrap();
    let mut first = [0u8; 16];
    running.read_exact(&mut first).unwrap();
    let waiting = client
        .post(server.url("/v1/chat/completions"))
        .json(&long)
        .send()
        .unwrap();
    assert!(waiting.status().is_success());

    let refused = client
        .post(server.url("/v1/chat/completions"))
        .json(&long)
        .send()
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("queue is full"),
        "{body}"
    );
}
