//! `hearth serve` as a process: configuration precedence, the bind policy,
//! bad configs, graceful shutdown, and the HTTP contract over a real socket.

use std::process::Command;

use hearth_e2e::{Server, hearth_bin};
use reqwest::StatusCode;
use reqwest::blocking::Client;

use crate::config;

#[test]
fn open_on_loopback_until_a_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    assert!(server.log().contains("auth: OPEN"), "{}", server.log());
    let models = Client::new().get(server.url("/v1/models")).send().unwrap();
    assert_eq!(models.status(), StatusCode::OK);
}

#[test]
fn require_auth_flag_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("require_auth = false\n{}", config());
    let server = Server::start(dir.path(), &config, &["--require-auth", "true"]).unwrap();
    let models = Client::new().get(server.url("/v1/models")).send().unwrap();
    assert_eq!(models.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = models.json().unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key");
}

#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hearth.toml");
    std::fs::write(
        &config_path,
        "bind = \"127.0.0.1:1\"\ndata_dir = \"from-file\"\n",
    )
    .unwrap();
    let mut child = Command::new(hearth_bin())
        .args(["serve", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(dir.path().join("from-flag"))
        .env("HEARTH_DATA_DIR", dir.path().join("from-env"))
        .env("HEARTH_BIND", "127.0.0.1:0")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let info = dir.path().join("from-flag/server.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !info.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&info);
    child.kill().unwrap();
    child.wait().unwrap();
    let text = text.expect("the flag's data dir is used");
    assert!(
        !text.contains("127.0.0.1:1\""),
        "the environment's bind beats the file's: {text}"
    );
    assert!(!dir.path().join("from-env").exists());
    assert!(!dir.path().join("from-file").exists());
}

#[test]
fn refuses_open_non_loopback_bind() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(hearth_bin())
        .args([
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--require-auth",
            "false",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("require_auth") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
}

#[test]
fn bad_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[deployments]]\nname = \"x\"\nkind = \"chat\"\ntargets = []\n",
    )
    .unwrap();
    let output = Command::new(hearth_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("deployments[0].targets"), "{stderr}");

    std::fs::write(&path, "[[deployments]]\nname = \"x\"\nkind = \"poetry\"\n").unwrap();
    let output = Command::new(hearth_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("poetry"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn http_contract_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    // A small limit, so the oversized body fits in socket buffers: a server that
    // answers 413 before reading a 40 MB body may close the socket mid-write.
    let limited = format!("max_body_bytes = 65536\n{}", config());
    let server = Server::start(dir.path(), &limited, &[]).unwrap();
    let client = Client::new();

    let response = client
        .get(server.url("/healthz"))
        .header("x-request-id", "req-42")
        .send()
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42");

    let huge = vec![b'x'; 200 * 1024];
    let response = client
        .post(server.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    let response = client.put(server.url("/v1/models")).send().unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains(r#"status="413""#), "{metrics}");

    let spec: serde_json::Value = client
        .get(server.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
}

#[test]
fn sigterm_shuts_down_cleanly_and_removes_runtime_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(), &[]).unwrap();
    let data = server.dir.clone();
    let status = server.terminate().unwrap();
    assert!(status.success(), "{status}");
    assert!(!data.join("server.json").exists());
    assert!(!data.join("admin.token").exists());
}

/// Issue #16: on a headless machine `device = "auto"` says what it found through the log and
/// lets no native library write to stderr (`XDG_RUNTIME_DIR is invalid or not set`, from
/// Wayland's client library under Mesa's Vulkan drivers).
#[test]
fn the_device_probe_is_quiet_on_a_headless_machine() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[deployments]]\nname = \"tiny\"\nkind = \"chat\"\n  [[deployments.targets]]\n  source = \"{}\"\n  device = \"auto\"\n",
        hearth_e2e::model_fixtures().join("tiny-qwen3").display()
    );
    let server = Server::start_headless(dir.path(), &config, &[]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.log().contains("chat model ready") {
        assert!(
            std::time::Instant::now() < deadline,
            "never loaded:\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = server.log();
    let gpu_nodes = std::path::Path::new("/dev/dri").exists()
        || std::fs::read_dir("/dev").is_ok_and(|d| {
            d.filter_map(Result::ok).any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name == "dxg"
                    || name
                        .strip_prefix("nvidia")
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        });
    if gpu_nodes {
        // A GPU's driver is asked; what it found is logged.
        assert!(log.contains("wgpu adapters"), "{log}");
    } else {
        assert!(log.contains("no GPU device node"), "{log}");
        assert!(!log.contains("XDG_RUNTIME_DIR"), "{log}");
        assert!(log.contains("cpu (flex)"), "{log}");
    }
}
