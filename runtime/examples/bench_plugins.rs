//! What plugins cost: each default plugin's call on a fresh instance (what Hearth does for
//! every request) and on a reused one (for comparison), the chain auth + preprocess + route,
//! and the latency plugins add to a whole HTTP request through the router.
//!
//! ```sh
//! scripts/build-plugins && cargo run -p hearth-runtime --example bench_plugins
//! ```
#![allow(clippy::print_stdout, reason = "a benchmark's output is its table")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::Request;
use hearth::config::{Config, OnError, PluginConfig, PluginHook};
use hearth::plugins::types::{Candidate, Facts, RequestHead, TargetKind};
use hearth::plugins::{KeyVerifier, PluginHost, keys};
use hearth::store::{SledStore, Store};
use tower::ServiceExt;

const CALLS: usize = 5000;

#[derive(Debug)]
struct OneKey;

impl KeyVerifier for OneKey {
    fn verify(&self, _: &str) -> Result<keys::KeyInfo, keys::KeyError> {
        Ok(keys::KeyInfo {
            key_id: "abcdefabcdef".into(),
            name: "bench".into(),
            scopes: vec!["inference".into()],
            allowed_models: vec![],
            expires_at: None,
        })
    }
    fn open_mode(&self) -> bool {
        false
    }
}

fn percentiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn timed(n: usize, mut call: impl FnMut()) -> Vec<Duration> {
    for _ in 0..n / 10 {
        call();
    }
    (0..n)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed()
        })
        .collect()
}

fn entry(hook: PluginHook, file: &str, config: &str) -> Result<PluginConfig> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file);
    anyhow::ensure!(
        path.is_file(),
        "{} missing: run scripts/build-plugins",
        path.display()
    );
    Ok(PluginConfig {
        hook,
        path,
        name: None,
        on_error: OnError::FailClosed,
        memory_mb: None,
        timeout_ms: None,
        max_concurrency: None,
        config: Some(toml::from_str(config)?),
    })
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        data_dir: dir.path().join("data"),
        default_plugins: false,
        plugins: vec![
            entry(PluginHook::Auth, "auth_keys.wasm", "")?,
            entry(
                PluginHook::Preprocess,
                "preprocess_guard.wasm",
                "max_tokens_cap = 256\nsystem_prompt = \"Be brief.\"\ndeny_patterns = [\"ignore previous instructions\"]",
            )?,
            entry(
                PluginHook::Preprocess,
                "ratelimit.wasm",
                "requests_per_minute = 100000000",
            )?,
            entry(PluginHook::Route, "route_default.wasm", "")?,
        ],
        ..Config::default()
    };
    let host = PluginHost::start(&config, Arc::new(OneKey), &[])?;
    let set = host.current();
    let head = RequestHead {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        query: None,
        headers: vec![
            (
                "authorization".into(),
                "Bearer hth_abcdefabcdef_0123456789012345678901234567890123456789".into(),
            ),
            ("content-type".into(), "application/json".into()),
        ],
        request_id: "bench".into(),
        client_addr: Some("127.0.0.1:5000".into()),
    };
    let body = br#"{"model":"smollm2","max_tokens":64,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
    let facts = Facts {
        model: Some("smollm2".into()),
        endpoint: "chat.completions".into(),
        stream: false,
        max_tokens: Some(64),
        prompt_tokens: Some(20),
    };
    let candidates: Vec<Candidate> = (0..4)
        .map(|i| Candidate {
            id: format!("t{i}"),
            kind: TargetKind::Upstream,
            address: format!("http://10.0.0.{i}:8000"),
            healthy: i != 2,
            in_flight: i * 3,
            latency_ms: Some(20 + i),
            weight: 1,
        })
        .collect();
    let auth = set.auth.clone().context("auth plugin")?;
    // Calls are awaited on a current-thread runtime: the guest runs on this thread, as it
    // runs on the worker of the request that makes it.
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let guard = set.preprocess[0].clone();
    let ratelimit = set.preprocess[1].clone();
    let route = set.route.clone().context("route plugin")?;

    println!(
        "| plugin (hook) | fresh instance p50 µs | p99 µs | reused instance p50 µs | p99 µs |"
    );
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, fresh: Vec<Duration>, warm: Vec<Duration>| {
        let (f50, f99) = percentiles(fresh);
        let (w50, w99) = percentiles(warm);
        println!("| {name} | {f50:.1} | {f99:.1} | {w50:.1} | {w99:.1} |");
    };
    row(
        "auth-keys (auth)",
        timed(CALLS, || drop(local.block_on(auth.authenticate(&head)))),
        local
            .block_on(auth.time_warm_calls(&head, &facts, body, &candidates, CALLS))
            .map_err(|f| anyhow::anyhow!("{f}"))?,
    );
    row(
        "preprocess-guard (preprocess)",
        timed(CALLS, || {
            drop(local.block_on(guard.preprocess(&head, &facts, None, body, 1 << 20)))
        }),
        local
            .block_on(guard.time_warm_calls(&head, &facts, body, &candidates, CALLS))
            .map_err(|f| anyhow::anyhow!("{f}"))?,
    );
    row(
        "ratelimit (preprocess)",
        timed(CALLS, || {
            drop(local.block_on(ratelimit.preprocess(&head, &facts, None, body, 1 << 20)))
        }),
        local
            .block_on(ratelimit.time_warm_calls(&head, &facts, body, &candidates, CALLS))
            .map_err(|f| anyhow::anyhow!("{f}"))?,
    );
    row(
        "route-default (route)",
        timed(CALLS, || {
            drop(local.block_on(route.route(&head, &facts, None, &candidates, 0)))
        }),
        local
            .block_on(route.time_warm_calls(&head, &facts, body, &candidates, CALLS))
            .map_err(|f| anyhow::anyhow!("{f}"))?,
    );
    let chain = timed(CALLS, || {
        drop(local.block_on(auth.authenticate(&head)));
        drop(local.block_on(guard.preprocess(&head, &facts, None, body, 1 << 20)));
        drop(local.block_on(route.route(&head, &facts, None, &candidates, 0)));
    });
    let (c50, c99) = percentiles(chain);
    println!(
        "\nchain auth-keys + preprocess-guard + route-default, fresh instances: p50 {c50:.1} µs, p99 {c99:.1} µs"
    );

    // A whole request through the router (`oneshot`, no socket): `GET /v1/models` with a real
    // key, with and without the plugins in its path.
    // The server's runtime flavour: plugin calls there run on the request's worker thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut http = Vec::new();
    for (label, with_plugins) in [
        ("built-in key check, no plugins", false),
        ("auth-keys + preprocess-guard + ratelimit", true),
    ] {
        let dir = tempfile::tempdir()?;
        let mut config = config.clone();
        config.data_dir = dir.path().to_path_buf();
        config.require_auth = Some(true);
        if !with_plugins {
            config.plugins.clear();
        } else {
            config.plugins.pop(); // route is not on the /v1 path of local deployments
        }
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path())?);
        let key = hearth::management::create_key(
            &*store,
            hearth::management::CreateKeyRequest {
                name: "bench".into(),
                scopes: None,
                models: None,
                expires_in: None,
            },
        )?
        .key;
        let state = hearth::api::AppState::build(config, store, None)?;
        let app = hearth::api::app(state);
        // On a worker thread, as the server's handlers run.
        let task = runtime.spawn(async move {
            let mut times = Vec::with_capacity(CALLS);
            for i in 0..CALLS + CALLS / 10 {
                let request = Request::get("/v1/models")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .expect("request");
                let started = Instant::now();
                let response = app.clone().oneshot(request).await.expect("response");
                assert!(response.status().is_success(), "{}", response.status());
                if i >= CALLS / 10 {
                    times.push(started.elapsed());
                }
            }
            times
        });
        let times = runtime.block_on(task)?;
        http.push((label, percentiles(times)));
    }
    println!("\n| `GET /v1/models` through the router | p50 µs | p99 µs |\n|---|---:|---:|");
    for (label, (p50, p99)) in &http {
        println!("| {label} | {p50:.1} | {p99:.1} |");
    }
    println!(
        "\nadded by the plugins: p50 {:.1} µs, p99 {:.1} µs",
        http[1].1.0 - http[0].1.0,
        http[1].1.1 - http[0].1.1
    );
    Ok(())
}
