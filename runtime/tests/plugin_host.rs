//! The plugin host against real components: the default plugins and the misbehaving test
//! components of `plugins/test-components` (built into `plugins/dist/` by
//! `scripts/build-plugins`, which `scripts/setup` runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hearth::config::{Config, OnError, PluginConfig, PluginHook};
use hearth::plugins::types::{
    AuthDecision, Candidate, Facts, PreprocessDecision, RequestHead, RouteDecision, TargetKind,
};
use hearth::plugins::{Failure, KeyVerifier, PluginHost, keys};

/// The tests here measure time: they run one at a time, so they do not slow each other down.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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

#[derive(Debug)]
struct NoKeys;

impl KeyVerifier for NoKeys {
    fn verify(&self, _: &str) -> Result<keys::KeyInfo, keys::KeyError> {
        Err(keys::KeyError::Unknown)
    }
    fn open_mode(&self) -> bool {
        false
    }
}

fn plugin(hook: PluginHook, file: &str) -> PluginConfig {
    PluginConfig {
        hook,
        path: dist(file),
        name: None,
        on_error: OnError::FailClosed,
        memory_mb: None,
        timeout_ms: None,
        max_concurrency: None,
        config: None,
    }
}

fn host(dir: &Path, plugins: Vec<PluginConfig>) -> PluginHost {
    let config = Config {
        data_dir: dir.join("data"),
        plugins,
        default_plugins: false,
        ..Config::default()
    };
    PluginHost::start(&config, Arc::new(NoKeys), &[]).expect("host starts")
}

fn head(mode: &str) -> RequestHead {
    RequestHead {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        query: None,
        headers: vec![("x-test-mode".into(), mode.into())],
        request_id: "test".into(),
        client_addr: None,
    }
}

fn facts() -> Facts {
    Facts {
        model: Some("m".into()),
        endpoint: "chat.completions".into(),
        stream: false,
        max_tokens: None,
        prompt_tokens: None,
    }
}

/// Waits for a plugin call on this thread: a current-thread runtime, so the guest runs here
/// (and yields here) and this thread's CPU time is the call's.
fn run<F: std::future::Future>(call: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(call)
}

fn preprocess(host: &PluginHost, mode: &str) -> Result<PreprocessDecision, Failure> {
    let set = host.current();
    run(set.preprocess[0].preprocess(&head(mode), &facts(), None, b"{}", 1 << 20))
}

fn denial_message(decision: Result<PreprocessDecision, Failure>) -> String {
    match decision {
        Ok(PreprocessDecision::Deny(d)) => d.message,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn a_trap_fails_the_call_and_the_next_call_succeeds() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let host = host(
        dir.path(),
        vec![plugin(PluginHook::Preprocess, "test/test_preprocess.wasm")],
    );
    assert!(matches!(
        preprocess(&host, "trap"),
        Err(Failure::Trap("panic", _))
    ));
    assert!(matches!(
        preprocess(&host, ""),
        Ok(PreprocessDecision::Unchanged)
    ));
}

#[test]
fn an_infinite_loop_is_stopped_at_its_deadline() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut entry = plugin(PluginHook::Preprocess, "test/test_preprocess.wasm");
    entry.timeout_ms = Some(20);
    let host = host(dir.path(), vec![entry]);
    // The call runs on this thread (see `run`), so this thread's CPU time is the guest's: a
    // measure that other processes on a busy machine do not stretch, as they do
    // wall time (a CI run beside two builds saw every wall-clock overrun at 42 ms).
    let cpu_now = || cpu_time::ThreadTime::now().as_duration();
    let mut overruns = Vec::new();
    for _ in 0..4 {
        let started = cpu_now();
        let wall = Instant::now();
        assert_eq!(preprocess(&host, "loop").unwrap_err(), Failure::Timeout);
        overruns.push((cpu_now() - started).saturating_sub(Duration::from_millis(20)));
        assert!(
            wall.elapsed() < Duration::from_secs(1),
            "stopped by the wall cap, not the budget"
        );
        assert!(matches!(
            preprocess(&host, ""),
            Ok(PreprocessDecision::Unchanged)
        ));
    }
    overruns.sort();
    // The budget is CPU time checked every 1 ms epoch tick: the typical stop is a tick or two
    // past the budget. A late tick (the ticker thread preempted) lets the loop run on, so the
    // worst of four gets more room. Without the deadline the call would run to the wall cap
    // (one second).
    assert!(
        overruns[1] <= Duration::from_millis(6),
        "CPU overruns {overruns:?}"
    );
    assert!(
        overruns[3] <= Duration::from_millis(60),
        "CPU overruns {overruns:?}"
    );
}

#[test]
fn a_long_call_yields_to_the_other_tasks_on_its_thread() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut entry = plugin(PluginHook::Preprocess, "test/test_preprocess.wasm");
    entry.timeout_ms = Some(100);
    let host = host(dir.path(), vec![entry]);
    let set = host.current();
    let plugin = set.preprocess[0].clone();
    // One thread: the looping guest and a task that counts how often it gets to run. A call
    // that held its thread until the deadline would let the counter run 0 times.
    let (result, ran) = run(async move {
        let count = Arc::new(AtomicU32::new(0));
        let counter = count.clone();
        let ticker = tokio::spawn(async move {
            loop {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        tokio::task::yield_now().await;
        let before = count.load(Ordering::Relaxed);
        let result = plugin
            .preprocess(&head("loop"), &facts(), None, b"{}", 1 << 20)
            .await;
        let ran = count.load(Ordering::Relaxed) - before;
        ticker.abort();
        (result, ran)
    });
    assert_eq!(result.unwrap_err(), Failure::Timeout);
    // A 100 ms loop yields every 2 ms slice: about 50 times.
    assert!(ran >= 10, "the other task ran {ran} times during the call");
}

#[test]
fn a_memory_bomb_traps_at_the_cap() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // A budget no busy machine runs out of (the default 50 ms failed once in a full suite
    // run, with the wrong failure): this test is about the memory cap, not the deadline.
    let mut capped = plugin(PluginHook::Preprocess, "test/test_preprocess.wasm");
    capped.timeout_ms = Some(2000);
    let host = host(dir.path(), vec![capped]);
    let result = preprocess(&host, "memory");
    assert!(
        matches!(result, Err(Failure::Trap("memory", _))),
        "{result:?}"
    );
    // With a higher cap the same plugin gets its 64 MiB.
    let dir = tempfile::tempdir().unwrap();
    let mut entry = plugin(PluginHook::Preprocess, "test/test_preprocess.wasm");
    entry.memory_mb = Some(100);
    // Touching 64 MiB takes a while on a busy machine; this test is about the cap.
    entry.timeout_ms = Some(2000);
    let host = self::host(dir.path(), vec![entry]);
    assert_eq!(denial_message(preprocess(&host, "memory")), "64");
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let host = host(
        dir.path(),
        vec![plugin(PluginHook::Preprocess, "test/test_preprocess.wasm")],
    );
    for _ in 0..3 {
        assert_eq!(denial_message(preprocess(&host, "leak")), "1");
    }
}

#[test]
fn a_full_plugin_refuses_at_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut entry = plugin(PluginHook::Preprocess, "test/test_preprocess.wasm");
    entry.max_concurrency = Some(1);
    let host = Arc::new(host(dir.path(), vec![entry]));
    let busy = {
        let host = host.clone();
        std::thread::spawn(move || preprocess(&host, "slow"))
    };
    std::thread::sleep(Duration::from_millis(5));
    let started = Instant::now();
    assert!(matches!(preprocess(&host, ""), Err(Failure::Busy)));
    assert!(
        started.elapsed() < Duration::from_millis(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        busy.join().unwrap(),
        Ok(PreprocessDecision::Unchanged)
    ));
}

#[test]
fn invalid_outputs_are_failures() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let host = host(
        dir.path(),
        vec![
            plugin(PluginHook::Auth, "test/test_auth.wasm"),
            plugin(PluginHook::Preprocess, "test/test_preprocess.wasm"),
            plugin(PluginHook::Route, "test/test_route.wasm"),
        ],
    );
    let set = host.current();
    let auth = set.auth.as_ref().unwrap();
    assert!(matches!(
        run(auth.authenticate(&head("bad-status"))),
        Err(Failure::InvalidOutput(_))
    ));
    assert!(matches!(
        preprocess(&host, "bad-header"),
        Err(Failure::InvalidOutput(_))
    ));
    let candidates: Vec<Candidate> = ["a", "b"]
        .iter()
        .map(|id| Candidate {
            id: (*id).into(),
            kind: TargetKind::Upstream,
            address: format!("http://{id}"),
            healthy: true,
            in_flight: 0,
            latency_ms: None,
            weight: 1,
        })
        .collect();
    let route = set.route.as_ref().unwrap();
    assert!(matches!(
        run(route.route(&head("forged"), &facts(), None, &candidates, 0)),
        Err(Failure::InvalidOutput(_))
    ));
    match run(route.route(&head(""), &facts(), None, &candidates, 0)) {
        Ok(RouteDecision::Pick(p)) => assert_eq!(p.target, "b"),
        other => panic!("{other:?}"),
    }
}

/// A key store that is slow to answer, as sled is when a write waits on a busy disk.
#[derive(Debug)]
struct SlowKeys(Duration);

impl KeyVerifier for SlowKeys {
    fn verify(&self, _: &str) -> Result<keys::KeyInfo, keys::KeyError> {
        std::thread::sleep(self.0);
        Ok(keys::KeyInfo {
            key_id: "k".into(),
            name: "slow".into(),
            scopes: vec!["inference".into()],
            allowed_models: Vec::new(),
            expires_at: None,
        })
    }
    fn open_mode(&self) -> bool {
        false
    }
}

#[test]
fn time_spent_in_host_imports_is_not_the_guests() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        plugins: vec![plugin(PluginHook::Auth, "auth_keys.wasm")],
        default_plugins: false,
        ..Config::default()
    };
    // The auth budget is 20 ms of CPU and its wall-clock cap one second: a key check that
    // waits past both must still let the request in (a CI run once failed a request with
    // "auth-keys: timeout" while the disk was busy).
    let slow = Duration::from_millis(1200);
    let host = PluginHost::start(&config, Arc::new(SlowKeys(slow)), &[]).expect("host starts");
    let set = host.current();
    let auth = set.auth.as_ref().unwrap();
    let mut request = head("");
    request
        .headers
        .push(("authorization".into(), "Bearer hth_slow_secret".into()));
    let started = Instant::now();
    let decision = run(auth.authenticate(&request));
    assert!(started.elapsed() >= slow);
    match decision {
        Ok(AuthDecision::Allow(id)) => assert_eq!(id.key_id, "k"),
        other => panic!("expected the slow key to be let in, got {other:?}"),
    }
}

#[test]
fn a_plugin_that_keeps_failing_is_tripped() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let host = host(
        dir.path(),
        vec![plugin(PluginHook::Auth, "test/test_auth.wasm")],
    );
    let set = host.current();
    let auth = set.auth.as_ref().unwrap();
    for _ in 0..5 {
        assert!(matches!(
            run(auth.authenticate(&head("trap"))),
            Err(Failure::Trap(..))
        ));
    }
    // Tripped: even a good request fails (closed) until the back-off passes.
    assert!(matches!(
        run(auth.authenticate(&head(""))),
        Err(Failure::Tripped)
    ));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(matches!(
        run(auth.authenticate(&head(""))),
        Ok(AuthDecision::Allow(_))
    ));
}

#[test]
fn the_default_route_plugin_prefers_the_least_loaded_healthy_target() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let host = host(
        dir.path(),
        vec![plugin(PluginHook::Route, "route_default.wasm")],
    );
    let candidate = |id: &str, healthy: bool, in_flight: u32| Candidate {
        id: id.into(),
        kind: TargetKind::Upstream,
        address: format!("http://{id}"),
        healthy,
        in_flight,
        latency_ms: Some(5),
        weight: 1,
    };
    let candidates = [
        candidate("busy", true, 9),
        candidate("down", false, 0),
        candidate("idle", true, 1),
    ];
    let set = host.current();
    let route = set.route.as_ref().unwrap();
    match run(route.route(&head(""), &facts(), None, &candidates, 0)) {
        Ok(RouteDecision::Pick(p)) => {
            assert_eq!(p.target, "idle");
            assert_eq!(p.fallbacks, vec!["busy".to_owned(), "down".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
}

fn drop_in(folder: &Path, version: &str) {
    std::fs::write(
        folder.join("guard.toml"),
        format!("hook = \"preprocess\"\n[config]\nversion = \"{version}\"\n"),
    )
    .unwrap();
    std::fs::copy(dist("test/test_preprocess.wasm"), folder.join("guard.wasm")).unwrap();
}

#[test]
fn the_folder_is_watched_and_a_broken_version_keeps_the_old_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), vec![]);
    let folder = dir.path().join("data/plugins");
    assert!(host.current().preprocess.is_empty());

    drop_in(&folder, "one");
    assert_eq!(host.rescan(), 1);
    assert!(denial_message(preprocess(&host, "version")).contains("one"));
    // In-flight requests hold the set they started with.
    let before = host.current();

    // mtime resolution: make sure the change is visible.
    std::thread::sleep(Duration::from_millis(20));
    drop_in(&folder, "two");
    assert_eq!(host.rescan(), 1);
    assert!(denial_message(preprocess(&host, "version")).contains("two"));
    let old =
        run(before.preprocess[0].preprocess(&head("version"), &facts(), None, b"{}", 1 << 20));
    assert!(denial_message(old).contains("one"));

    // A version whose admission refuses, then one that is not a component: both rejected.
    std::thread::sleep(Duration::from_millis(20));
    drop_in(&folder, "refuse");
    assert_eq!(host.rescan(), 0);
    std::fs::write(folder.join("guard.wasm"), b"\0asm broken").unwrap();
    assert_eq!(host.rescan(), 0);
    assert!(denial_message(preprocess(&host, "version")).contains("two"));

    std::fs::remove_file(folder.join("guard.wasm")).unwrap();
    assert_eq!(host.rescan(), 1);
    assert!(host.current().preprocess.is_empty());
}
