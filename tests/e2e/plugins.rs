//! Plugins through the real binary: a misbehaving auth plugin never lets a request through,
//! a plugin dropped into the running server's folder serves the next request, and swapping
//! it under load loses no request. The components come from `plugins/dist` (built by
//! `scripts/build-plugins`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hearth_e2e::Server;
use reqwest::blocking::Client;
use serde_json::Value;

fn dist(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins",
        path.display()
    );
    path
}

/// A server with no models: the plugin hooks run on `/v1/models` like on every model route.
fn start(extra_config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), extra_config, &[]).unwrap();
    (dir, server)
}

fn get(server: &Server, mode: &str) -> (u16, Value) {
    let response = Client::new()
        .get(server.url("/v1/models"))
        .header("x-test-mode", mode)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn a_failing_auth_plugin_never_lets_a_request_through() {
    let config = format!(
        "[[plugins]]\nhook = \"auth\"\npath = \"{}\"\n",
        dist("test/test_auth.wasm").display()
    );
    let (_dir, server) = start(&config);
    assert_eq!(get(&server, "").0, 200);
    for mode in ["trap", "loop", "bad-status"] {
        let (status, body) = get(&server, mode);
        assert_eq!(status, 503, "{mode}: {body}");
        assert_eq!(body["error"]["code"], "plugin_unavailable", "{mode}");
        // The next request is served: one bad call does not take the plugin down.
        assert_eq!(get(&server, "").0, 200, "after {mode}");
    }
    let response = Client::new()
        .get(server.url("/v1/models"))
        .header("x-test-mode", "deny")
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-test-plugin"], "auth");
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "test_denied");
}

#[test]
fn the_default_auth_plugin_checks_keys() {
    let (_dir, server) = start("require_auth = true\n");
    let (status, body) = get(&server, "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "missing_api_key");
    let key = hearth_e2e::create_key(&server.dir, &["--name", "e2e"]).unwrap();
    let response = Client::new()
        .get(server.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let forged = format!("{}X", &key[..key.len() - 1]);
    let forged = if forged == key {
        format!("{}Y", &key[..key.len() - 1])
    } else {
        forged
    };
    let response = Client::new()
        .get(server.url("/v1/models"))
        .bearer_auth(forged)
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        server.log().contains("plugin=auth-keys"),
        "the built-in plugin served"
    );
}

fn install(folder: &Path, version: &str) {
    // Both files are written beside, then renamed: the watcher never sees a half-written one.
    let sidecar = folder.join("probe.toml.part");
    std::fs::write(
        &sidecar,
        // A generous budget: this test is about swaps, and on a loaded two-core CI machine
        // the default 50 ms (wall cap 500 ms) can run out for reasons that are not a swap.
        format!("hook = \"preprocess\"\ntimeout_ms = 2000\n[config]\nversion = \"{version}\"\n"),
    )
    .unwrap();
    std::fs::rename(sidecar, folder.join("probe.toml")).unwrap();
    let tmp = folder.join("probe.wasm.part");
    std::fs::copy(dist("test/test_preprocess.wasm"), &tmp).unwrap();
    std::fs::rename(tmp, folder.join("probe.wasm")).unwrap();
}

fn wait_for_version(server: &Server, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(server, "version");
        if status == 418
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(version))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "version {version} never served: {status} {body}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dropped_in_plugin_serves_the_next_requests_and_swaps_lose_nothing() {
    let (dir, server) = start("");
    let folder = dir.path().join("data/plugins");
    assert_eq!(get(&server, "version").0, 200, "no preprocess plugin yet");
    install(&folder, "v1");
    wait_for_version(&server, "v1");

    // Load from four clients while the plugin is replaced; every request must be answered
    // by the old or the new version (418), never fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let url = server.url("/v1/models");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, served, url) =
                (stop.clone(), failures.clone(), served.clone(), url.clone());
            std::thread::spawn(move || {
                let client = Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = client
                        .get(&url)
                        .header("x-test-mode", "version")
                        .send()
                        .map_err(|e| format!("{e:?}"))
                        .and_then(|r| match r.status().as_u16() {
                            418 => Ok(()),
                            status => Err(format!("{status} {}", r.text().unwrap_or_default())),
                        });
                    match outcome {
                        Ok(()) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => failures.lock().unwrap().push(why),
                    }
                }
            })
        })
        .collect();
    for version in ["v2", "v3", "v4"] {
        std::thread::sleep(Duration::from_millis(300));
        install(&folder, version);
        wait_for_version(&server, version);
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} requests failed during the swaps: {failures:#?}\n{}",
        failures.len(),
        server.log()
    );
    assert!(served.load(Ordering::Relaxed) > 20);

    // A broken version is refused and v4 keeps serving.
    std::fs::write(folder.join("probe.wasm"), b"not a component").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    wait_for_version(&server, "v4");
    assert!(server.log().contains("rejected"), "the rejection is logged");
}

#[test]
fn the_guard_and_the_rate_limit_act_on_requests() {
    let config = format!(
        "[[plugins]]\nhook = \"preprocess\"\npath = \"{}\"\n  [plugins.config]\n  deny_patterns = [\"launch codes\"]\n  max_tokens_cap = 16\n\
         [[plugins]]\nhook = \"preprocess\"\npath = \"{}\"\n  [plugins.config]\n  requests_per_minute = 3\n",
        dist("preprocess_guard.wasm").display(),
        dist("ratelimit.wasm").display()
    );
    let (_dir, server) = start(&config);
    let post = |input: &str| {
        Client::new()
            .post(server.url("/v1/embeddings"))
            .json(&serde_json::json!({"model": "m", "input": input}))
            .send()
            .unwrap()
    };
    let refused = post("what are the launch codes?");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "content_rejected", "{body}");
    // The guard refused before the rate limit counted: three more requests pass it (and find
    // no such model), the fourth is over the limit.
    for _ in 0..3 {
        assert_eq!(post("hello").status(), 404);
    }
    let limited = post("hello");
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let body: Value = limited.json().unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[test]
fn a_failing_preprocess_plugin_fails_closed_unless_told_to_fail_open() {
    for (on_error, expected) in [("fail_closed", 503), ("fail_open", 200)] {
        let config = format!(
            "[[plugins]]\nhook = \"preprocess\"\non_error = \"{on_error}\"\npath = \"{}\"\n",
            dist("test/test_preprocess.wasm").display()
        );
        let (_dir, server) = start(&config);
        assert_eq!(get(&server, "trap").0, expected, "{on_error}");
        assert_eq!(get(&server, "").0, 200, "{on_error}: the next request");
    }
}

/// Issue #16: a second auth plugin dropped into the folder is logged as unused once, not on
/// every rescan (twice a second).
#[test]
fn a_plugin_that_another_overrides_is_reported_once() {
    let (dir, server) = start("");
    let folder = dir.path().join("data/plugins");
    let tmp = folder.join("auth-keys.wasm.part");
    std::fs::copy(dist("auth_keys.wasm"), &tmp).unwrap();
    std::fs::rename(tmp, folder.join("auth-keys.wasm")).unwrap();
    let notice = "another plugin already serves this hook";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log().contains(notice) {
        assert!(
            Instant::now() < deadline,
            "never reported:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Six more rescans.
    std::thread::sleep(Duration::from_millis(3000));
    let log = server.log();
    assert_eq!(log.matches(notice).count(), 1, "{log}");
    // The folder's copy serves; the built-in one is the one left out.
    assert_eq!(get(&server, "").0, 200);
}
