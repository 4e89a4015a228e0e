//! One loaded plugin version: its pre-instantiated component, limits, failure policy and
//! breaker, and the three hook calls. Every call gets a fresh store (nothing a guest keeps in
//! memory survives it), a memory cap, an epoch deadline and a slot under the plugin's
//! concurrency bound; every outcome is counted. Calls are async: the guest runs on a fiber
//! inside the calling task, on whichever tokio worker polls it, with no hand-off to another
//! thread, and a long call yields every slice ([`super::budget`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::auth::AuthPluginPre;
use super::bindings::preprocess::PreprocessPluginPre;
use super::bindings::route::RoutePluginPre;
use super::bindings::types::{
    AuthDecision, Candidate, Facts, Identity, PreprocessDecision, RequestHead, RouteDecision,
};
use super::breaker::Breaker;
use super::budget;
use super::engine::{MAX_MEMORY_BYTES, PluginEngine};
use super::state::{KeyVerifier, PluginShared, PluginState};
use super::{invalid_component, validate};
use crate::config::{OnError, PluginHook};
use crate::error::HearthError;

/// A plugin's resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    /// CPU time a call may use.
    pub timeout: Duration,
    pub max_concurrency: u32,
}

impl Limits {
    /// The wall-clock time a call may take however busy the machine is: fifty budgets, at
    /// least one second. Past it the call is stopped at the next epoch tick. Guests have no
    /// blocking imports, so only a starved thread reaches it: on two cores running a model and
    /// compiling a swapped-in plugin, 250 ms was reached by a 20 ms auth call that had used
    /// little of its CPU budget, and failed a request that a second later would have passed.
    pub fn wall_cap(&self) -> Duration {
        (self.timeout * 50).max(Duration::from_secs(1))
    }

    /// The defaults of DESIGN.md §6 for `hook`, overridden where given.
    pub fn new(
        hook: PluginHook,
        memory_mb: Option<u32>,
        timeout_ms: Option<u64>,
        max_concurrency: Option<u32>,
    ) -> Self {
        let default_ms = match hook {
            PluginHook::Auth => 20,
            PluginHook::Preprocess => 50,
            PluginHook::Route => 10,
        };
        Self {
            memory_bytes: (memory_mb.unwrap_or(16) as usize * (1 << 20)).min(MAX_MEMORY_BYTES),
            timeout: Duration::from_millis(timeout_ms.unwrap_or(default_ms)),
            max_concurrency: max_concurrency.unwrap_or(64),
        }
    }
}

/// What to load.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub name: String,
    /// `None`: found from the component's exports.
    pub hook: Option<PluginHook>,
    pub source: PathBuf,
    pub config_json: String,
    pub on_error: OnError,
    pub memory_mb: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub max_concurrency: Option<u32>,
}

/// Why a call produced no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The guest trapped: `panic` (a Rust panic, `unreachable`), `memory` (grew past its
    /// cap), `stack_overflow` or `other`.
    Trap(&'static str, String),
    /// The epoch deadline (or the outer check) stopped it.
    Timeout,
    /// The pooling allocator had no free slot.
    PoolExhausted,
    /// The plugin's concurrency bound was reached.
    Busy,
    /// The breaker is open after repeated failures.
    Tripped,
    /// The plugin answered something the host refuses.
    InvalidOutput(String),
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trap("panic", _) => "trap_panic",
            Self::Trap("memory", _) => "trap_memory",
            Self::Trap("stack_overflow", _) => "trap_stack_overflow",
            Self::Trap(..) => "trap_other",
            Self::Timeout => "timeout",
            Self::PoolExhausted => "pool_exhausted",
            Self::Busy => "busy",
            Self::Tripped => "tripped",
            Self::InvalidOutput(_) => "invalid_output",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Trap(kind, message) => write!(f, "trapped ({kind}): {message}"),
            Self::InvalidOutput(why) => write!(f, "invalid output: {why}"),
            other => f.write_str(other.kind()),
        }
    }
}

fn classify(error: &wasmtime::Error) -> Failure {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => Failure::Timeout,
            Trap::UnreachableCodeReached => Failure::Trap("panic", error.to_string()),
            Trap::StackOverflow => Failure::Trap("stack_overflow", error.to_string()),
            _ => Failure::Trap("other", error.to_string()),
        };
    }
    if error.is::<wasmtime::PoolConcurrencyLimitError>() {
        return Failure::PoolExhausted;
    }
    let message = format!("{error:?}");
    if message.contains("growing memory") || message.contains("memory size") {
        Failure::Trap("memory", error.to_string())
    } else if message.contains("concurrent limit") {
        Failure::PoolExhausted
    } else {
        Failure::Trap("other", error.to_string())
    }
}

/// Waits for `call` from synchronous code (a plugin's admission call, made while it loads),
/// wherever that code runs: `Handle::block_on` may not be called on an async worker thread,
/// so on a multi-thread runtime it runs under `block_in_place`, on a current-thread runtime
/// (tests) on a scoped thread, and off any runtime on wasmtime-wasi's own.
fn block_on<F: Future + Send>(call: F) -> F::Output
where
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    let wait = || wasmtime_wasi::runtime::in_tokio(call);
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(wait).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => wait(),
    }
}

/// One hook call's arguments.
enum Call<'a> {
    Auth(&'a RequestHead),
    Preprocess {
        head: &'a RequestHead,
        facts: &'a Facts,
        identity: Option<&'a Identity>,
        body: &'a [u8],
    },
    Route {
        head: &'a RequestHead,
        facts: &'a Facts,
        identity: Option<&'a Identity>,
        candidates: &'a [Candidate],
        attempt: u32,
    },
}

/// What a hook call returned.
enum Answer {
    Auth(AuthDecision),
    Preprocess(PreprocessDecision),
    Route(RouteDecision),
}

/// The answer a hook's check was not written for: a host bug, failed closed.
fn wrong_hook() -> Failure {
    Failure::InvalidOutput("the host called the wrong hook".into())
}

enum Pre {
    Auth(AuthPluginPre<PluginState>),
    Preprocess(PreprocessPluginPre<PluginState>),
    Route(RoutePluginPre<PluginState>),
}

/// A loaded, admitted plugin version.
pub struct Plugin {
    pub name: String,
    pub hook: PluginHook,
    pub source: PathBuf,
    /// SHA-256 of the component.
    pub digest: String,
    pub on_error: OnError,
    pub limits: Limits,
    pre: Pre,
    shared: Arc<PluginShared>,
    keys: Option<Arc<dyn KeyVerifier>>,
    engine: wasmtime::Engine,
    in_flight: AtomicU32,
    breaker: Breaker,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("hook", &self.hook)
            .field("source", &self.source)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// The hook a component serves, from its exports.
fn detect_hook(component: &Component, engine: &wasmtime::Engine) -> Option<PluginHook> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let has = |n: &str| exports.iter().any(|e| e == n);
    if has("authenticate") {
        Some(PluginHook::Auth)
    } else if has("preprocess") {
        Some(PluginHook::Preprocess)
    } else if has("route") {
        Some(PluginHook::Route)
    } else {
        None
    }
}

/// Releases a concurrency slot when the call ends, however it ends.
struct Slot<'a>(&'a AtomicU32);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Plugin {
    /// Compiles (or loads from the cache), type-checks against the hook's world and runs the
    /// admission call. `keys` serves the auth world's key import.
    pub fn load(
        engine: &PluginEngine,
        spec: PluginSpec,
        bytes: &[u8],
        shared: Option<Arc<PluginShared>>,
        keys: Option<Arc<dyn KeyVerifier>>,
    ) -> Result<Self, HearthError> {
        let (component, digest) = engine.compile(bytes)?;
        let detected = detect_hook(&component, engine.engine());
        let hook = match (spec.hook, detected) {
            (Some(asked), Some(found)) if asked != found => {
                return Err(HearthError::Plugin(format!(
                    "configured as a {} plugin but the component exports the {} world",
                    asked.as_str(),
                    found.as_str()
                )));
            }
            (_, Some(found)) => found,
            (_, None) => {
                return Err(HearthError::Plugin(
                    "the component exports none of `authenticate`, `preprocess` or `route` (hearth:plugin@0.1.0 worlds)".into(),
                ));
            }
        };
        let instance_pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(invalid_component)?;
        let pre = match hook {
            PluginHook::Auth => {
                Pre::Auth(AuthPluginPre::new(instance_pre).map_err(invalid_component)?)
            }
            PluginHook::Preprocess => {
                Pre::Preprocess(PreprocessPluginPre::new(instance_pre).map_err(invalid_component)?)
            }
            PluginHook::Route => {
                Pre::Route(RoutePluginPre::new(instance_pre).map_err(invalid_component)?)
            }
        };
        let shared = match shared {
            // A reload keeps the key-value store (rate-limit windows survive a swap) when the
            // config is unchanged.
            Some(shared) if shared.config_json == spec.config_json => shared,
            _ => Arc::new(PluginShared::new(
                spec.name.clone(),
                spec.config_json.clone(),
            )),
        };
        let plugin = Self {
            name: spec.name,
            hook,
            source: spec.source,
            digest,
            on_error: spec.on_error,
            limits: Limits::new(hook, spec.memory_mb, spec.timeout_ms, spec.max_concurrency),
            pre,
            shared,
            keys: if hook == PluginHook::Auth { keys } else { None },
            engine: engine.engine().clone(),
            in_flight: AtomicU32::new(0),
            breaker: Breaker::default(),
        };
        plugin.admit()?;
        Ok(plugin)
    }

    pub fn shared(&self) -> Arc<PluginShared> {
        self.shared.clone()
    }

    fn store(&self, request_id: &str) -> Store<PluginState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let state = PluginState::new(
            self.shared.clone(),
            limits,
            self.keys.clone(),
            request_id.to_owned(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        budget::arm(&mut store, self.limits.timeout, self.limits.wall_cap());
        store
    }

    /// Instantiates the component in `store` and makes `call` on it.
    async fn invoke(
        &self,
        store: &mut Store<PluginState>,
        call: Call<'_>,
    ) -> wasmtime::Result<Answer> {
        match (&self.pre, call) {
            (Pre::Auth(pre), Call::Auth(head)) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .call_authenticate(&mut *store, head)
                    .await
                    .map(Answer::Auth)
            }
            (
                Pre::Preprocess(pre),
                Call::Preprocess {
                    head,
                    facts,
                    identity,
                    body,
                },
            ) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .call_preprocess(&mut *store, head, facts, identity, body)
                    .await
                    .map(Answer::Preprocess)
            }
            (
                Pre::Route(pre),
                Call::Route {
                    head,
                    facts,
                    identity,
                    candidates,
                    attempt,
                },
            ) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .call_route(&mut *store, head, facts, identity, candidates, attempt)
                    .await
                    .map(Answer::Route)
            }
            _ => Err(wasmtime::format_err!(
                "a {} plugin was called for another hook",
                self.hook.as_str()
            )),
        }
    }

    fn admit(&self) -> Result<(), HearthError> {
        let result = block_on(async {
            let mut store = self.store("admission");
            match &self.pre {
                Pre::Auth(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .hearth_plugin_admission()
                        .call_admit(&mut store)
                        .await
                }
                Pre::Preprocess(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .hearth_plugin_admission()
                        .call_admit(&mut store)
                        .await
                }
                Pre::Route(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .hearth_plugin_admission()
                        .call_admit(&mut store)
                        .await
                }
            }
        });
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(HearthError::Plugin(format!("admission refused: {message}"))),
            Err(e) => Err(HearthError::Plugin(format!(
                "admission call failed: {}",
                classify(&e)
            ))),
        }
    }

    /// Runs one call with the concurrency bound, the breaker, timing and metrics around it;
    /// `check` validates the answer and names the outcome.
    async fn call<R>(
        &self,
        request_id: &str,
        call: Call<'_>,
        check: impl FnOnce(Answer) -> Result<(R, &'static str), Failure>,
    ) -> Result<R, Failure> {
        let hook = self.hook.as_str();
        let outcome = |o: &'static str| {
            metrics::counter!("hearth_plugin_calls_total", "plugin" => self.name.clone(), "hook" => hook, "outcome" => o)
                .increment(1);
        };
        if self.breaker.is_open() {
            outcome("tripped");
            return Err(Failure::Tripped);
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limits.max_concurrency {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            outcome("busy");
            return Err(Failure::Busy);
        }
        let _slot = Slot(&self.in_flight);
        let mut store = self.store(request_id);
        let started = Instant::now();
        let result = self.invoke(&mut store, call).await;
        let elapsed = started.elapsed();
        drop(store);
        metrics::histogram!("hearth_plugin_call_duration_seconds", "plugin" => self.name.clone(), "hook" => hook)
            .record(elapsed.as_secs_f64());
        let result = match result {
            Err(e) => Err(classify(&e)),
            Ok(value) => check(value),
        };
        match result {
            Ok((value, label)) => {
                self.breaker.success();
                outcome(label);
                Ok(value)
            }
            Err(failure) => {
                outcome(failure.kind());
                tracing::warn!(plugin = %self.name, hook, request_id, error = %failure, "plugin call failed");
                if let Some(backoff) = self.breaker.failure() {
                    tracing::error!(plugin = %self.name, hook, backoff_ms = backoff.as_millis(), "plugin keeps failing: tripped");
                    metrics::counter!("hearth_plugin_trips_total", "plugin" => self.name.clone())
                        .increment(1);
                }
                Err(failure)
            }
        }
    }

    /// The auth hook.
    pub async fn authenticate(&self, head: &RequestHead) -> Result<AuthDecision, Failure> {
        self.call(&head.request_id, Call::Auth(head), |answer| {
            let Answer::Auth(decision) = answer else {
                return Err(wrong_hook());
            };
            match &decision {
                AuthDecision::Allow(_) => Ok((decision, "allow")),
                AuthDecision::Deny(d) => validate::denial(d)
                    .map(|_| (decision, "deny"))
                    .map_err(Failure::InvalidOutput),
            }
        })
        .await
    }

    /// The preprocess hook.
    pub async fn preprocess(
        &self,
        head: &RequestHead,
        facts: &Facts,
        identity: Option<&Identity>,
        body: &[u8],
        max_body_bytes: usize,
    ) -> Result<PreprocessDecision, Failure> {
        let call = Call::Preprocess {
            head,
            facts,
            identity,
            body,
        };
        self.call(&head.request_id, call, |answer| {
            let Answer::Preprocess(decision) = answer else {
                return Err(wrong_hook());
            };
            let checked = match &decision {
                PreprocessDecision::Unchanged => Ok("unchanged"),
                PreprocessDecision::Rewrite(r) => {
                    validate::rewrite(r, max_body_bytes).map(|()| "rewrite")
                }
                PreprocessDecision::Deny(d) => validate::denial(d).map(|_| "deny"),
            };
            checked
                .map(|label| (decision, label))
                .map_err(Failure::InvalidOutput)
        })
        .await
    }

    /// The route hook; a pick is checked against the candidates' ids.
    pub async fn route(
        &self,
        head: &RequestHead,
        facts: &Facts,
        identity: Option<&Identity>,
        candidates: &[Candidate],
        attempt: u32,
    ) -> Result<RouteDecision, Failure> {
        let call = Call::Route {
            head,
            facts,
            identity,
            candidates,
            attempt,
        };
        self.call(&head.request_id, call, |answer| {
            let Answer::Route(decision) = answer else {
                return Err(wrong_hook());
            };
            match decision {
                RouteDecision::Pick(p) => {
                    let ids: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
                    validate::pick(&p, &ids)
                        .map(|(target, fallbacks)| {
                            (
                                RouteDecision::Pick(super::bindings::types::Pick {
                                    target,
                                    fallbacks,
                                }),
                                "pick",
                            )
                        })
                        .map_err(Failure::InvalidOutput)
                }
                RouteDecision::DefaultRouting => Ok((RouteDecision::DefaultRouting, "default")),
                RouteDecision::Deny(d) => validate::denial(&d)
                    .map(|_| (RouteDecision::Deny(d), "deny"))
                    .map_err(Failure::InvalidOutput),
            }
        })
        .await
    }

    /// Benchmark support: `n` calls of the hook on one instance, each timed — what a host
    /// that reused instances would pay. Hearth never does (state would leak between
    /// requests); the bench reports it beside the fresh-instance cost.
    #[doc(hidden)]
    pub async fn time_warm_calls(
        &self,
        head: &RequestHead,
        facts: &Facts,
        body: &[u8],
        candidates: &[Candidate],
        n: usize,
    ) -> Result<Vec<Duration>, Failure> {
        let mut store = self.store(&head.request_id);
        store.set_epoch_deadline(u64::MAX / 2);
        let mut times = Vec::with_capacity(n);
        let result: wasmtime::Result<()> = async {
            match &self.pre {
                Pre::Auth(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    for _ in 0..n {
                        let started = Instant::now();
                        instance.call_authenticate(&mut store, head).await?;
                        times.push(started.elapsed());
                    }
                }
                Pre::Preprocess(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    for _ in 0..n {
                        let started = Instant::now();
                        instance
                            .call_preprocess(&mut store, head, facts, None, body)
                            .await?;
                        times.push(started.elapsed());
                    }
                }
                Pre::Route(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    for _ in 0..n {
                        let started = Instant::now();
                        instance
                            .call_route(&mut store, head, facts, None, candidates, 0)
                            .await?;
                        times.push(started.elapsed());
                    }
                }
            }
            Ok(())
        }
        .await;
        result.map(|()| times).map_err(|e| classify(&e))
    }
}
