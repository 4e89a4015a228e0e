//! Forwarding to upstream model servers (vLLM, llama.cpp, Ollama, another Hearth): the
//! targets of an upstream deployment with their live state, the choice of a target (the
//! route plugin, else weighted least-in-flight), retries before any byte reached the client,
//! and the response streamed back as it arrives, with the token usage it reports read on the
//! way ([`usage`]). `https` targets are verified by rustls ([`tls`]).

mod tls;
pub mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;

use crate::config::{DeploymentConfig, TargetConfig};
use crate::error::{HearthError, Result};
use crate::plugins::PluginHost;
use crate::plugins::types::{self, Candidate, RouteDecision, TargetKind};

/// A target marked down is still tried (last) after this long without a health check
/// having brought it back, so a deployment without reachable health endpoints recovers.
const RECOVERY: Duration = Duration::from_secs(30);

/// One upstream server of a deployment.
#[derive(Debug)]
pub struct UpstreamTarget {
    /// `t0`, `t1`, … in config order.
    pub id: String,
    /// The base URL, without a trailing slash.
    pub base: String,
    credential: Option<String>,
    /// Its own client: each target has its own TLS settings (CAs, client certificate).
    client: reqwest::Client,
    pub weight: u32,
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`origin`] when it was marked down; 0 while up.
    down_since_ms: AtomicU64,
    /// Exponentially weighted time to response head, in microseconds (0: not measured).
    latency_us: AtomicU64,
    connect_timeout: Duration,
    response_timeout: Duration,
    health_path: String,
    health_interval: Duration,
    unhealthy_after: u32,
}

fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(origin().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl UpstreamTarget {
    /// Healthy unless it failed repeatedly and has not yet waited out its recovery time.
    pub fn healthy(&self) -> bool {
        let down = self.down_since_ms.load(Ordering::Acquire);
        down == 0 || now_ms().saturating_sub(down) >= RECOVERY.as_millis() as u64
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    fn record_success(&self, latency: Duration) {
        self.mark_up();
        let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let old = self.latency_us.load(Ordering::Acquire);
        let new = if old == 0 {
            sample
        } else {
            (old * 4 + sample) / 5
        };
        self.latency_us.store(new, Ordering::Release);
    }

    fn mark_up(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.down_since_ms.store(0, Ordering::Release);
    }

    fn record_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.unhealthy_after && self.down_since_ms.load(Ordering::Acquire) == 0 {
            self.down_since_ms.store(now_ms(), Ordering::Release);
            tracing::warn!(target = %self.base, failures, "upstream marked down");
        }
        metrics::counter!("hearth_upstream_failures_total", "target" => self.base.clone())
            .increment(1);
    }

    fn candidate(&self) -> Candidate {
        let latency = self.latency_us.load(Ordering::Acquire);
        Candidate {
            id: self.id.clone(),
            kind: TargetKind::Upstream,
            address: self.base.clone(),
            healthy: self.healthy(),
            in_flight: self.in_flight(),
            latency_ms: (latency > 0).then(|| u32::try_from(latency / 1000).unwrap_or(u32::MAX)),
            weight: self.weight,
        }
    }
}

/// The client of one target: HTTP/1.1 for `http://`; for `https://`, rustls verifying the
/// server against the system's roots, or only `ca_file`'s CAs when set, presenting
/// `client_cert` when set, and HTTP/2 when the server offers it (ALPN `h2`, `http/1.1`).
fn client(
    target: &TargetConfig,
    url: &str,
    connect_timeout: Duration,
) -> std::result::Result<reqwest::Client, String> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let https = url.starts_with("https://");
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        // Reading the system's roots costs a few milliseconds; plain http needs none.
        .tls_built_in_native_certs(https && target.ca_file.is_none());
    if let Some(path) = &target.ca_file {
        let pem = read(path, "ca_file")?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        if roots.is_empty() {
            return Err(format!(
                "ca_file {}: no PEM certificate in it",
                path.display()
            ));
        }
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    if let (Some(cert), Some(key)) = (&target.client_cert, &target.client_key) {
        let mut pem = read(cert, "client_cert")?;
        pem.push(b'\n');
        pem.extend(read(key, "client_key")?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("client_cert/client_key: {e}"))?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(|e| format!("http client: {e}"))
}

/// Counts a request against its target until the response body is dropped.
struct InFlight(Arc<UpstreamTarget>);

impl InFlight {
    fn enter(target: &Arc<UpstreamTarget>) -> Self {
        target.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(target.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Headers that describe one connection, not the request: never forwarded either way.
fn hop_by_hop(name: &HeaderName, connection_listed: &[String]) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    ) || connection_listed.iter().any(|l| l == name.as_str())
}

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The targets of one upstream deployment.
#[derive(Debug)]
pub struct UpstreamPool {
    pub deployment: String,
    pub targets: Vec<Arc<UpstreamTarget>>,
}

/// What one forwarded request carries.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// Path and query as the upstream should see them (`/v1/chat/completions`, `/rerank?x=1`).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// For the route plugin.
    pub head: types::RequestHead,
    pub facts: types::Facts,
    pub identity: Option<types::Identity>,
}

impl UpstreamPool {
    /// The upstream targets of `config` (its local targets, if any, are not part of it).
    pub fn from_config(config: &DeploymentConfig) -> Result<Self> {
        let targets = config
            .targets
            .iter()
            .filter_map(|t| t.upstream.as_ref().map(|url| (t, url)))
            .enumerate()
            .map(|(index, (target, url))| {
                let credential = match &target.api_key_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        HearthError::Config(format!(
                            "deployment `{}`: the environment variable `{var}` (api_key_env) is not set",
                            config.name
                        ))
                    })?),
                    None => None,
                };
                let connect_timeout =
                    Duration::from_millis(target.connect_timeout_ms.unwrap_or(3000));
                Ok(Arc::new(UpstreamTarget {
                    id: format!("t{index}"),
                    base: url.trim_end_matches('/').to_owned(),
                    credential,
                    client: client(target, url, connect_timeout).map_err(|e| {
                        HearthError::Config(format!("deployment `{}`: {e}", config.name))
                    })?,
                    weight: target.weight.unwrap_or(1),
                    in_flight: AtomicU32::new(0),
                    consecutive_failures: AtomicU32::new(0),
                    down_since_ms: AtomicU64::new(0),
                    latency_us: AtomicU64::new(0),
                    connect_timeout,
                    response_timeout: Duration::from_millis(
                        target.response_timeout_ms.unwrap_or(120_000),
                    ),
                    health_path: target.health_path.clone().unwrap_or_else(|| "/health".to_owned()),
                    health_interval: Duration::from_millis(target.health_interval_ms.unwrap_or(5000)),
                    unhealthy_after: target.unhealthy_after.unwrap_or(3).max(1),
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            deployment: config.name.clone(),
            targets,
        })
    }

    /// Probes every target on its interval until the pool is dropped, and publishes each
    /// target's health and in-flight count as gauges.
    pub fn spawn_health_checks(self: &Arc<Self>) {
        for target in &self.targets {
            let pool = Arc::downgrade(self);
            let target = target.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(target.health_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(pool) = pool.upgrade() else { break };
                    let url = format!("{}{}", target.base, target.health_path);
                    let probe = target
                        .client
                        .get(&url)
                        .timeout(target.connect_timeout.max(Duration::from_secs(2)))
                        .send()
                        .await;
                    match probe {
                        Ok(response) if !response.status().is_server_error() => {
                            if !target.healthy() {
                                tracing::info!(target = %target.base, "upstream back up");
                            }
                            target.mark_up();
                        }
                        _ => target.record_failure(),
                    }
                    let labels = [
                        ("deployment", pool.deployment.clone()),
                        ("target", target.base.clone()),
                    ];
                    metrics::gauge!("hearth_upstream_healthy", &labels).set(if target.healthy() {
                        1.0
                    } else {
                        0.0
                    });
                    metrics::gauge!("hearth_upstream_in_flight", &labels)
                        .set(f64::from(target.in_flight()));
                }
            });
        }
    }

    /// The host's own choice: healthy first, then the fewest in flight per unit of weight.
    fn default_pick(&self, excluded: &[String]) -> Option<Arc<UpstreamTarget>> {
        self.targets
            .iter()
            .filter(|t| !excluded.contains(&t.id))
            .min_by(|a, b| {
                let score =
                    |t: &UpstreamTarget| f64::from(t.in_flight() + 1) / f64::from(t.weight.max(1));
                (!a.healthy(), score(a))
                    .partial_cmp(&(!b.healthy(), score(b)))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .cloned()
    }

    /// The target for this attempt: the route plugin's pick, else the host's.
    async fn pick(
        &self,
        plugins: Option<&PluginHost>,
        out: &Outgoing<'_>,
        excluded: &[String],
        attempt: u32,
    ) -> Result<Option<Arc<UpstreamTarget>>> {
        let route = plugins.and_then(|p| p.current().route.clone());
        if let Some(plugin) = route {
            let candidates: Vec<Candidate> = self
                .targets
                .iter()
                .filter(|t| !excluded.contains(&t.id))
                .map(|t| t.candidate())
                .collect();
            if candidates.is_empty() {
                return Ok(None);
            }
            match plugin
                .route(
                    &out.head,
                    &out.facts,
                    out.identity.as_ref(),
                    &candidates,
                    attempt,
                )
                .await
            {
                Ok(RouteDecision::Pick(pick)) => {
                    return Ok(self.targets.iter().find(|t| t.id == pick.target).cloned());
                }
                Ok(RouteDecision::Deny(d)) => {
                    return Err(HearthError::PluginDenied {
                        status: d.status,
                        code: d.code,
                        message: d.message,
                        headers: Vec::new(),
                    });
                }
                // A failing route plugin falls back to the host's routing.
                Ok(RouteDecision::DefaultRouting) | Err(_) => {}
            }
        }
        Ok(self.default_pick(excluded))
    }

    /// Sends the request to a target and streams the answer back. A connection failure, or a
    /// 5xx before any byte was sent to the client, is retried on another target (the route
    /// plugin is asked again, with the attempt number and without the failed target).
    pub async fn forward(
        &self,
        plugins: Option<&PluginHost>,
        out: Outgoing<'_>,
    ) -> Result<Response> {
        let listed = connection_listed(out.headers);
        let mut excluded: Vec<String> = Vec::new();
        let mut last_error = None;
        for attempt in 0..u32::try_from(self.targets.len()).unwrap_or(u32::MAX) {
            let Some(target) = self.pick(plugins, &out, &excluded, attempt).await? else {
                break;
            };
            let url = format!("{}{}", target.base, out.path_and_query);
            let mut request = target
                .client
                .request(out.method.clone(), &url)
                .body(out.body.clone());
            for (name, value) in out.headers {
                // The client's Hearth key is not the upstream's credential; the body's length is
                // set by the client library from the body itself.
                let dropped = matches!(
                    name.as_str(),
                    "authorization" | "x-api-key" | "content-length"
                );
                if hop_by_hop(name, &listed) || dropped || name.as_str().starts_with("x-hearth-") {
                    continue;
                }
                request = request.header(name, value);
            }
            if let Some(credential) = &target.credential {
                request = request.bearer_auth(credential);
            }
            let guard = InFlight::enter(&target);
            let started = Instant::now();
            let sent = tokio::time::timeout(target.response_timeout, request.send()).await;
            let response = match sent {
                Err(_) => {
                    target.record_failure();
                    return Err(HearthError::UpstreamTimeout(format!(
                        "the upstream of `{}` did not answer within {} ms",
                        self.deployment,
                        target.response_timeout.as_millis()
                    )));
                }
                Ok(Err(e)) => {
                    target.record_failure();
                    let tls = tls::failure(&e);
                    tracing::warn!(deployment = %self.deployment, target = %target.base, error = %e, tls, attempt, "upstream request failed");
                    excluded.push(target.id.clone());
                    last_error = Some(match tls {
                        Some(reason) => HearthError::UpstreamTls(format!(
                            "TLS with the upstream of `{}` failed: {reason}",
                            self.deployment
                        )),
                        None => HearthError::UpstreamUnreachable(format!(
                            "cannot reach the upstream of `{}`",
                            self.deployment
                        )),
                    });
                    continue;
                }
                Ok(Ok(response)) => response,
            };
            let retryable =
                response.status().is_server_error() && excluded.len() + 1 < self.targets.len();
            if retryable {
                target.record_failure();
                tracing::warn!(deployment = %self.deployment, target = %target.base, status = response.status().as_u16(), attempt, "upstream 5xx: retrying on another target");
                excluded.push(target.id.clone());
                continue;
            }
            target.record_success(started.elapsed());
            metrics::counter!("hearth_upstream_requests_total", "deployment" => self.deployment.clone(), "status" => response.status().as_u16().to_string())
                .increment(1);
            return Ok(stream_back(response, guard));
        }
        Err(last_error.unwrap_or_else(|| {
            HearthError::UpstreamUnreachable(format!(
                "no upstream of `{}` could take the request",
                self.deployment
            ))
        }))
    }
}

/// The upstream's response as the client's: status and end-to-end headers as they came,
/// the body passed through chunk by chunk (dropping it, as a disconnecting client does,
/// drops the upstream request).
fn stream_back(response: reqwest::Response, guard: InFlight) -> Response {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let listed = connection_listed(response.headers());
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if !hop_by_hop(name, &listed) {
            headers.append(name.clone(), value.clone());
        }
    }
    let body = response.bytes_stream().map(move |chunk| {
        let _counted = &guard;
        chunk
    });
    let mut out = Response::new(Body::from_stream(body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
