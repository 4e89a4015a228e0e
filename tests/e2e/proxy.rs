//! Upstream deployments through the real binary: `/model/proxy/...` to the small non-OpenAI
//! service of `echo.rs`, and `/v1/chat/completions` streamed through two Hearth
//! processes.

use std::io::Read;
use std::time::{Duration, Instant};

use hearth_e2e::{Server, model_fixtures, sse_chat_text};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::echo::{
    NOT_JSON, SSE_CHUNKS, chat_answer, checksum, dead_port, echo_service, slow_stream_was_cut,
};

fn front(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), config, &[]).unwrap();
    (dir, server)
}

fn proxy_config(port: u16) -> String {
    format!(
        "[[deployments]]\nname = \"echo\"\nkind = \"any\"\ngeneric_proxy = true\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{port}\"\n  api_key_env = \"HOME\"\n  response_timeout_ms = 500\n\
         [[deployments]]\nname = \"closed\"\nkind = \"any\"\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{port}\"\n"
    )
}

#[test]
fn the_generic_proxy_forwards_method_path_query_headers_and_body_intact() {
    let port = echo_service();
    let (_dir, server) = front(&proxy_config(port));
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let response = Client::new()
        .put(server.url("/model/proxy/rerank/v2?top_n=3&q=a%20b"))
        .header("x-gpustack-model", "echo")
        .header("x-custom", "kept")
        .header("authorization", "Bearer the-clients-hearth-key")
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "the upstream's status comes back");
    assert_eq!(response.headers()["x-echo"], "yes");
    let echo: Value = response.json().unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/rerank/v2");
    assert_eq!(echo["query"], "top_n=3&q=a%20b");
    assert_eq!(echo["headers"]["x-custom"], "kept");
    assert_eq!(echo["headers"]["content-type"], "application/octet-stream");
    // The client's Hearth key never leaves; the upstream gets its own credential.
    let home = std::env::var("HOME").unwrap();
    assert_eq!(echo["headers"]["authorization"], format!("Bearer {home}"));
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_checksum"], checksum(&body));
}

#[test]
fn the_model_comes_from_the_header_first_then_the_body() {
    let port = echo_service();
    let (_dir, server) = front(&proxy_config(port));
    let client = Client::new();
    // Body only.
    let r = client
        .post(server.url("/model/proxy/score"))
        .json(&json!({"model": "echo", "x": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // Header and body disagree: the header wins (an unknown model, so 404, not the body's).
    let r = client
        .post(server.url("/model/proxy/score"))
        .header("x-gpustack-model", "nope")
        .json(&json!({"model": "echo"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "model_not_found");
    // A GET with no body routes by header.
    let r = client
        .get(server.url("/model/proxy/health"))
        .header("x-gpustack-model", "echo")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let echo: Value = r.json().unwrap();
    assert_eq!(echo["method"], "GET");
    // A deployment without generic_proxy is a 403 that says so.
    let r = client
        .get(server.url("/model/proxy/health"))
        .header("x-gpustack-model", "closed")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("generic_proxy")
    );
    // No model anywhere: 400 naming `model`.
    let r = client
        .get(server.url("/model/proxy/health"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn an_sse_stream_comes_back_byte_for_byte() {
    let port = echo_service();
    let (_dir, server) = front(&proxy_config(port));
    let mut response = Client::new()
        .get(server.url("/model/proxy/sse"))
        .header("x-gpustack-model", "echo")
        .send()
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut received = Vec::new();
    response.read_to_end(&mut received).unwrap();
    assert_eq!(received, SSE_CHUNKS.concat());
}

#[test]
fn upstream_faults_are_502_and_504_and_traffic_moves_to_a_healthy_target() {
    let port = echo_service();
    let dead = dead_port();
    let config = format!(
        "{}[[deployments]]\nname = \"pair\"\nkind = \"any\"\ngeneric_proxy = true\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{dead}\"\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{port}\"\n\
         [[deployments]]\nname = \"down\"\nkind = \"any\"\ngeneric_proxy = true\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{dead}\"\n",
        proxy_config(port)
    );
    let (_dir, server) = front(&config);
    let client = Client::new();
    let call = |model: &str, path: &str| {
        let r = client
            .get(server.url(&format!("/model/proxy{path}")))
            .header("x-gpustack-model", model)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    for _ in 0..6 {
        assert_eq!(
            call("pair", "/x").0,
            201,
            "one target down: the other serves"
        );
    }
    let (status, body) = call("down", "/x");
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    let (status, body) = call("echo", "/hang");
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout");
    // A 5xx from the only target is the upstream's answer, passed through.
    assert_eq!(call("echo", "/fail").0, 500);
}

#[test]
fn chat_streams_through_two_hearth_processes() {
    let upstream_config = format!(
        "[[deployments]]\nname = \"tiny-qwen3\"\nkind = \"chat\"\n  [[deployments.targets]]\n  source = \"{}\"\n  device = \"cpu\"\n",
        model_fixtures().join("tiny-qwen3").display()
    );
    let (_up_dir, upstream) = front(&upstream_config);
    let front_config = format!(
        "[[deployments]]\nname = \"tiny-qwen3\"\nkind = \"chat\"\n  [[deployments.targets]]\n  upstream = \"http://{}\"\n",
        upstream.addr
    );
    let (_front_dir, front_server) = front(&front_config);
    let request = json!({
        "model": "tiny-qwen3", "stream": true, "temperature": 0, "max_tokens": 12,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    });
    let through = Client::new()
        .post(front_server.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .unwrap();
    assert_eq!(through.headers()["content-type"], "text/event-stream");
    let through = through.text().unwrap();
    let direct = Client::new()
        .post(upstream.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(through.trim_end().ends_with("data: [DONE]"));
    assert_eq!(sse_chat_text(&through), sse_chat_text(&direct));
    assert!(!sse_chat_text(&through).is_empty());
    // No usage chunk the client did not ask for.
    assert!(!through.contains("\"usage\":{"));
}

#[test]
fn a_client_that_leaves_cancels_the_upstream_request_and_a_cut_stream_is_survived() {
    let port = echo_service();
    let (_dir, server) = front(&proxy_config(port));
    let mut response = Client::new()
        .get(server.url("/model/proxy/slow?tag=client-left"))
        .header("x-gpustack-model", "echo")
        .send()
        .unwrap();
    let mut first = [0u8; 8];
    response.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"data: 0\n");
    drop(response);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !slow_stream_was_cut("client-left") {
        assert!(
            Instant::now() < deadline,
            "the upstream kept streaming to nobody"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // An upstream that dies mid-body: the client's answer ends in an error, the server lives
    // on. hyper sends the response head with the first body bytes, so when the cut comes
    // first the client sees the error at `send` instead of while reading: both are errors,
    // never a clean end.
    let cut = Client::new()
        .get(server.url("/model/proxy/cut"))
        .header("x-gpustack-model", "echo")
        .send();
    if let Ok(mut cut) = cut {
        let mut partial = Vec::new();
        assert!(cut.read_to_end(&mut partial).is_err() || partial.len() < 10);
    }
    let again = Client::new()
        .get(server.url("/model/proxy/x"))
        .header("x-gpustack-model", "echo")
        .send()
        .unwrap();
    assert_eq!(again.status(), 201);
}

#[test]
fn health_checks_mark_a_dead_target_down_in_readyz() {
    let port = echo_service();
    let dead = dead_port();
    let config = format!(
        "[[deployments]]\nname = \"pair\"\nkind = \"any\"\ngeneric_proxy = true\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{dead}\"\n  health_interval_ms = 50\n  unhealthy_after = 2\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{port}\"\n  health_interval_ms = 50\n"
    );
    let (_dir, server) = front(&config);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready: Value = Client::new()
            .get(server.url("/readyz"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let targets = &ready["deployments"]["pair"]["targets"];
        if targets[0]["healthy"] == false && targets[1]["healthy"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "{ready}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = server.metrics();
    assert!(
        metrics.contains("hearth_upstream_healthy"),
        "health is in /metrics"
    );
}

/// The deployment's and the key's rows of `/v1/usage`: (requests, prompt, completion tokens).
fn usage_rows(server: &Server, deployment: &str, key_id: &str) -> [(u64, u64, u64); 2] {
    let rows: Value = Client::new()
        .get(server.url("/v1/usage"))
        .bearer_auth(&server.admin_token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let row = |kind: &str, subject: &str| {
        rows["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subject_type"] == kind && r["subject"] == subject)
            .map_or((0, 0, 0), |r| {
                let n = |f: &str| r[f].as_u64().unwrap_or(0);
                (n("requests"), n("prompt_tokens"), n("completion_tokens"))
            })
    };
    [row("deployment", deployment), row("key", key_id)]
}

/// Issue #16: the usage an upstream reports, in a JSON answer or in the SSE chunk
/// `include_usage` asks for, is recorded per key and per deployment as local usage is, while
/// the client gets the upstream's bytes unchanged; an answer without usage, or a body that is
/// not JSON, records no tokens and passes through untouched.
#[test]
fn usage_reported_by_the_upstream_is_recorded_and_the_bytes_are_untouched() {
    let port = echo_service();
    let config = format!(
        "[[deployments]]\nname = \"up-chat\"\naliases = [\"upc\"]\nkind = \"chat\"\n  [[deployments.targets]]\n  upstream = \"http://127.0.0.1:{port}\"\n"
    );
    let (_dir, server) = front(&config);
    let key = hearth_e2e::create_key(&server.dir, &["--name", "usage"]).unwrap();
    let key_id = key.split('_').nth(1).unwrap().to_owned();
    let send = |path: &str, body: Value| {
        let response = Client::new()
            .post(server.url(path))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().unwrap().to_vec()
    };
    let wait_for = |expected: [(u64, u64, u64); 2]| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let rows = usage_rows(&server, "up-chat", &key_id);
            if rows == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "usage {rows:?}, expected {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let messages = json!([{"role": "user", "content": "hi"}]);

    // A JSON answer (through an alias: recorded under the deployment's name).
    let got = send(
        "/v1/chat/completions",
        json!({"model": "upc", "messages": messages}),
    );
    assert_eq!(got, chat_answer(false, false).concat());
    wait_for([(1, 11, 3), (1, 11, 3)]);

    // SSE with include_usage: the usage chunk counts.
    let got = send(
        "/v1/chat/completions",
        json!({"model": "up-chat", "messages": messages, "stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(got, chat_answer(true, true).concat());
    wait_for([(2, 22, 6), (2, 22, 6)]);

    // SSE without it, and a "JSON" body that is not JSON: passed through, no tokens recorded
    // (the key's request is counted at the door, as for every request).
    let got = send(
        "/v1/chat/completions",
        json!({"model": "up-chat", "messages": messages, "stream": true}),
    );
    assert_eq!(got, chat_answer(true, false).concat());
    let got = send(
        "/v1/completions",
        json!({"model": "up-chat", "prompt": "hi"}),
    );
    assert_eq!(got, NOT_JSON);
    std::thread::sleep(Duration::from_millis(300));
    wait_for([(2, 22, 6), (4, 22, 6)]);

    let metrics = server.metrics();
    assert!(
        metrics.contains("hearth_usage_prompt_tokens_total{deployment=\"up-chat\"} 22"),
        "{metrics}"
    );
}
