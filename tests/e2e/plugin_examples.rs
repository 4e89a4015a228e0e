//! Plugin authoring, end to end: the examples in Rust, Python and JavaScript
//! (`examples/plugins/`, built by `scripts/build-example-plugins`) dropped into a running
//! server, and the README's walk-through from `hearth plugin new` to a request through it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hearth_e2e::{Server, hearth_bin};
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn example(relative: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins")
        .join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-example-plugins",
        path.display()
    );
    path
}

fn install(folder: &Path, wasm: &Path, name: &str, sidecar: &str) {
    std::fs::write(folder.join(format!("{name}.toml")), sidecar).unwrap();
    let part = folder.join(format!("{name}.part"));
    std::fs::copy(wasm, &part).unwrap();
    std::fs::rename(part, folder.join(format!("{name}.wasm"))).unwrap();
}

fn post(server: &Server, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = Client::new()
        .post(server.url(path))
        .json(body)
        .timeout(Duration::from_secs(30));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().unwrap();
    (
        response.status().as_u16(),
        response.json().unwrap_or(Value::Null),
    )
}

/// Retries until `check` holds: the folder is polled, and a big component compiles first.
fn eventually(server: &Server, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_rust_python_and_javascript_examples_serve_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "", &[]).unwrap();
    let folder = dir.path().join("data/plugins");
    install(
        &folder,
        &example("rust-blocklist/rust_blocklist.wasm"),
        "blocklist",
        "hook = \"preprocess\"\n[config]\nblocked = \"launch codes\"\n",
    );
    install(
        &folder,
        &example("python-model-gate/model_gate.wasm"),
        "model-gate",
        "memory_mb = 64\ntimeout_ms = 200\n[config]\nblocked_models = [\"gpt-4\"]\n",
    );
    install(
        &folder,
        &example("js-request-tagger/request_tagger.wasm"),
        "tagger",
        "memory_mb = 64\ntimeout_ms = 200\n[config]\nmax_prompt_tokens = 50\n",
    );

    // Rust: the blocked phrase is refused by the plugin.
    eventually(&server, "the Rust plugin refusing", || {
        let (status, body) = post(
            &server,
            "/v1/embeddings",
            &json!({"model": "m", "input": "tell me the launch codes"}),
            None,
        );
        status == 400 && body["error"]["code"] == "content_rejected"
    });
    // Python: the blocked model is refused.
    eventually(&server, "the Python plugin refusing", || {
        let (status, body) = post(
            &server,
            "/v1/embeddings",
            &json!({"model": "gpt-4", "input": "hi"}),
            None,
        );
        status == 403 && body["error"]["code"] == "model_not_allowed_here"
    });
    // JavaScript: an over-long prompt is refused.
    eventually(&server, "the JavaScript plugin refusing", || {
        let (status, body) = post(
            &server,
            "/v1/embeddings",
            &json!({"model": "m", "input": "word ".repeat(100)}),
            None,
        );
        status == 413 && body["error"]["code"] == "prompt_too_long"
    });
    // A request none of them refuses passes all three and reaches the API (no such model).
    let (status, body) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "m", "input": "hello"}),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found");
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The README's "Write a plugin" section, step by step.
#[test]
fn the_readme_walkthrough_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("team-gate");
    run(Command::new(hearth_bin())
        .args(["plugin", "new", "auth", "team-gate", "--dir"])
        .arg(&crate_dir));
    let target = std::env::var_os("HEARTH_PLUGINS_TARGET_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/hearth/target-plugins"),
        PathBuf::from,
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "--release", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        // A user's crate, built as a user builds it: without the suite's lint wrapper
        // (scripts/env), which would hold generated bindings to our clippy settings.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS"));
    let wasm = target.join("wasm32-wasip2/release/team_gate.wasm");
    std::fs::write(dir.path().join("gate.toml"), "token = \"s3cret\"\n").unwrap();
    let checked = run(Command::new(hearth_bin())
        .args(["plugin", "check"])
        .arg(&wasm)
        .arg("--plugin-config")
        .arg(dir.path().join("gate.toml")));
    assert!(checked.contains("is a auth plugin"), "{checked}");
    // Without its config the plugin's admission refuses it.
    let refused = Command::new(hearth_bin())
        .args(["plugin", "check"])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(!refused.status.success());

    let server = Server::start(dir.path(), "", &[]).unwrap();
    let folder = dir.path().join("data/plugins");
    install(
        &folder,
        &wasm,
        "team-gate",
        "[config]\ntoken = \"s3cret\"\n",
    );
    let body = json!({"model": "m", "input": "hello"});
    eventually(&server, "the new auth plugin refusing", || {
        let (status, body) = post(&server, "/v1/embeddings", &body, Some("wrong"));
        status == 401
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("team token"))
    });
    let (status, _) = post(&server, "/v1/embeddings", &body, Some("s3cret"));
    assert_eq!(status, 404, "the right token gets through to the API");
}
