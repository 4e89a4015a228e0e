//! The load bench's upstream: an OpenAI-compatible `/v1/chat/completions` on loopback that
//! streams `chat.completion.chunk` events at a model's pace, ends with a usage chunk when
//! `stream_options.include_usage` asks for one, and counts what it did: streams begun,
//! finished and cut off by the other side, streams in flight, and the usage it sent. A
//! request whose `metadata.leave_after` says its client will leave after that many tokens is
//! held there until the proxy lets go of it (timed), so no leave can come after the end.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Tokens are produced every `PACE_MS_MIN..=PACE_MS_MAX` ms, as a mid-sized model's decode
/// on a busy GPU: it keeps each stream open long enough for 200 of them to overlap.
const PACE_MS_MIN: u64 = 10;
const PACE_MS_MAX: u64 = 20;

/// The most tokens one answer may ask for (`max_tokens`): the disconnect storm's streams ask
/// for this many so they are certainly still streaming when their clients leave.
pub const MAX_TOKENS: u64 = 1000;

/// How long a stream whose client leaves waits for the proxy to let go before it goes on
/// (and then finishes, which the bench reports as a disconnect that did not arrive).
pub const HOLD: Duration = Duration::from_secs(5);

/// What the upstream did, for the bench's checks.
#[derive(Debug, Default)]
pub struct Stats {
    pub started: AtomicU64,
    /// Streams whose last byte (`data: [DONE]`) was handed to the connection.
    pub finished: AtomicU64,
    /// Streams dropped before their end: the proxy let go of the request.
    pub cut: AtomicU64,
    pub in_flight: AtomicI64,
    pub peak_in_flight: AtomicI64,
    /// The usage of finished streams that carried a usage chunk.
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub usage_chunks: AtomicU64,
    /// Held stream (its client leaving) → dropped by the proxy, in microseconds.
    pub release_us: Mutex<Vec<u64>>,
    /// Held streams the proxy did not let go of within [`HOLD`].
    pub holds_expired: AtomicU64,
}

/// A small xorshift generator: the pace and the bench's choices are reproducible from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The prompt's token count as this upstream tokenises: one token per whitespace-separated
/// word of every message's content.
pub fn prompt_tokens(messages: &Value) -> u64 {
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.split_whitespace().count() as u64)
        .sum()
}

/// The text of the answer's token `i`: the client checks every token arrived, in order.
pub fn token_text(i: u64) -> String {
    format!("t{i} ")
}

/// Starts the upstream on a free loopback port; returns the port.
pub async fn start(stats: Arc<Stats>) -> anyhow::Result<u16> {
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/health", axum::routing::get(|| async { "ok" }))
        .with_state(stats);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

/// Counts a stream in flight until its body is dropped; a drop before the end is a cut.
struct Open {
    stats: Arc<Stats>,
    finished: bool,
    held_since: Option<Instant>,
}

impl Open {
    fn new(stats: &Arc<Stats>) -> Self {
        stats.started.fetch_add(1, Ordering::Relaxed);
        let now = stats.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        stats.peak_in_flight.fetch_max(now, Ordering::AcqRel);
        Self {
            stats: stats.clone(),
            finished: false,
            held_since: None,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        // Cut first: whoever sees no stream in flight also sees every cut counted.
        if !self.finished {
            self.stats.cut.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(since) = self.held_since {
            let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.stats.release_us.lock().expect("release_us").push(us);
        }
        self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a stream is: the role chunk, token `i` of `n`, the finish chunk, usage, `[DONE]`.
struct Answer {
    open: Open,
    id: String,
    model: String,
    next: u64,
    n: u64,
    prompt: u64,
    include_usage: bool,
    /// The client leaves after this many tokens: hold before the next one.
    hold_after: Option<u64>,
    rng: Rng,
}

impl Answer {
    fn chunk(&self, choices: Value) -> Bytes {
        let mut chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": 1_764_806_400,
            "model": self.model, "system_fingerprint": "fp_bench", "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    /// The next event, after the pace's delay for a token; `None` once `[DONE]` was sent.
    async fn step(mut self) -> Option<(Bytes, Self)> {
        let n = self.n;
        let event = match self.next {
            0 => self.chunk(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            ),
            i if i <= n => {
                if self.hold_after == Some(i - 1) {
                    self.open.held_since = Some(Instant::now());
                    tokio::time::sleep(HOLD).await;
                    self.open.held_since = None;
                    self.open.stats.holds_expired.fetch_add(1, Ordering::Relaxed);
                }
                let pace = self.rng.between(PACE_MS_MIN, PACE_MS_MAX);
                tokio::time::sleep(Duration::from_millis(pace)).await;
                self.chunk(
                    json!([{"index": 0, "delta": {"content": token_text(i - 1)}, "logprobs": null, "finish_reason": null}]),
                )
            }
            i if i == n + 1 => self.chunk(
                json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
            ),
            i if i == n + 2 && self.include_usage => {
                let usage = json!({"prompt_tokens": self.prompt, "completion_tokens": n, "total_tokens": self.prompt + n});
                let chunk = json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": 1_764_806_400,
                    "model": self.model, "system_fingerprint": "fp_bench", "choices": [], "usage": usage,
                });
                Bytes::from(format!("data: {chunk}\n\n"))
            }
            i if i == n + 3 => {
                // `[DONE]` is the last event: from here on the stream counts as finished, and
                // its usage as sent.
                let stats = &self.open.stats;
                stats.finished.fetch_add(1, Ordering::Relaxed);
                if self.include_usage {
                    stats.usage_chunks.fetch_add(1, Ordering::Relaxed);
                    stats
                        .prompt_tokens
                        .fetch_add(self.prompt, Ordering::Relaxed);
                    stats.completion_tokens.fetch_add(n, Ordering::Relaxed);
                }
                self.open.finished = true;
                self.next = n + 4;
                return Some((Bytes::from_static(b"data: [DONE]\n\n"), self));
            }
            _ => return None,
        };
        self.next += 1;
        if self.next == n + 2 && !self.include_usage {
            self.next = n + 3;
        }
        Some((event, self))
    }
}

async fn chat(State(stats): State<Arc<Stats>>, Json(request): Json<Value>) -> Response {
    if request["stream"] != true {
        return (StatusCode::BAD_REQUEST, "this upstream only streams").into_response();
    }
    let n = request["max_tokens"]
        .as_u64()
        .unwrap_or(16)
        .clamp(1, MAX_TOKENS);
    let seed = request["seed"].as_u64().unwrap_or(0);
    let answer = Answer {
        open: Open::new(&stats),
        id: format!("chatcmpl-{seed:016x}"),
        model: request["model"].as_str().unwrap_or("bench").to_owned(),
        next: 0,
        n,
        prompt: prompt_tokens(&request["messages"]),
        include_usage: request["stream_options"]["include_usage"] == true,
        hold_after: request["metadata"]["leave_after"]
            .as_str()
            .and_then(|k| k.parse().ok()),
        rng: Rng::new(seed),
    };
    let body =
        futures_util::stream::unfold(answer, Answer::step).map(Ok::<_, std::convert::Infallible>);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
