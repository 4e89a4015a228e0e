//! The load bench's clients: each loops streaming chat requests through Hearth, checks every
//! stream against what the upstream was asked to send (every token in order, the finish
//! chunk, the usage chunk, `[DONE]`), and tallies the outcome; some leave mid-stream on
//! purpose.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore};

use crate::upstream::{MAX_TOKENS, Rng, prompt_tokens, token_text};

/// Where the clients send their requests.
#[derive(Debug)]
pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
    pub key: String,
    pub model: String,
}

/// What one client (or all of them, merged) saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub truncated: u64,
    /// Streams this side left on purpose.
    pub left: u64,
    /// Content tokens received, in every stream.
    pub tokens: u64,
    /// The usage chunks of completed streams.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Request sent → first body byte, in microseconds.
    pub ttfb_us: Vec<u64>,
    /// The first few failures and truncations, to print.
    pub problems: Vec<String>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.completed += other.completed;
        self.failed += other.failed;
        self.truncated += other.truncated;
        self.left += other.left;
        self.tokens += other.tokens;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.ttfb_us.extend(other.ttfb_us);
        for p in other.problems {
            self.problem(p);
        }
    }

    pub fn problem(&mut self, what: String) {
        if self.problems.len() < 8 {
            self.problems.push(what);
        }
    }
}

/// One request: how long an answer, how long a prompt, and where (if at all) to leave.
#[derive(Debug)]
struct Plan {
    seed: u64,
    tokens: u64,
    body: Value,
    leave_after: Option<u64>,
}

impl Plan {
    fn new(target: &Target, seed: u64, tokens: u64, words: u64, leave_after: Option<u64>) -> Self {
        let user: Vec<String> = (0..words).map(|w| format!("w{w}")).collect();
        let mut body = json!({
            "model": target.model, "stream": true, "stream_options": {"include_usage": true},
            "max_tokens": tokens, "seed": seed,
            "messages": [
                {"role": "system", "content": "You answer load tests."},
                {"role": "user", "content": user.join(" ")},
            ],
        });
        if let Some(k) = leave_after {
            // The upstream holds the stream after `k` tokens until Hearth lets go of it: a
            // client behind on a busy machine cannot leave after the stream's end.
            body["metadata"] = json!({"leave_after": k.to_string()});
        }
        Self {
            seed,
            tokens,
            body,
            leave_after,
        }
    }
}

/// How a stream ended.
enum Outcome {
    Completed { prompt: u64, completion: u64 },
    Left,
    Truncated(String),
    Failed(String),
}

/// Follows one stream's events and checks them as they come.
#[derive(Debug, Default)]
struct Check {
    id: String,
    buffer: Vec<u8>,
    next_token: u64,
    finished: bool,
    usage: Option<(u64, u64)>,
    done: bool,
}

impl Check {
    /// Feeds body bytes; each complete event is checked.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.buffer.extend_from_slice(bytes);
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
            for line in event.split(|&b| b == b'\n') {
                if let Some(data) = line.strip_prefix(b"data: ") {
                    self.data(data)?;
                }
            }
        }
        Ok(())
    }

    fn data(&mut self, data: &[u8]) -> Result<(), String> {
        if self.done {
            return Err("data after [DONE]".into());
        }
        if data == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Value = serde_json::from_slice(data).map_err(|e| {
            format!(
                "a chunk that is not JSON ({e}): {}",
                String::from_utf8_lossy(data)
            )
        })?;
        if chunk["id"] != self.id.as_str() {
            return Err(format!(
                "chunk of another stream: {} in {}",
                chunk["id"], self.id
            ));
        }
        if let Some(usage) = chunk["usage"].as_object() {
            let count = |f: &str| usage.get(f).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some((count("prompt_tokens"), count("completion_tokens")));
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            match delta["content"].as_str() {
                Some("") if delta["role"] == "assistant" => {}
                Some(text) => {
                    let expected = token_text(self.next_token);
                    if text != expected {
                        return Err(format!("token {text:?} where {expected:?} was due"));
                    }
                    self.next_token += 1;
                }
                None => {}
            }
            if choice["finish_reason"] == "stop" {
                self.finished = true;
            }
        }
        Ok(())
    }

    /// A complete stream: every token, the finish and usage chunks, `[DONE]`.
    fn verdict(&self, plan: &Plan) -> Outcome {
        let prompt = prompt_tokens(&plan.body["messages"]);
        let problem = if !self.done {
            Some("no [DONE]".to_owned())
        } else if self.next_token != plan.tokens {
            Some(format!("{} of {} tokens", self.next_token, plan.tokens))
        } else if !self.finished {
            Some("no finish_reason".to_owned())
        } else if self.usage != Some((prompt, plan.tokens)) {
            Some(format!(
                "usage {:?}, expected {:?}",
                self.usage,
                (prompt, plan.tokens)
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Outcome::Truncated(format!("{}: {p}", self.id)),
            None => Outcome::Completed {
                prompt,
                completion: plan.tokens,
            },
        }
    }
}

/// Sends `plan` and reads its stream to the end, or to where the plan leaves.
async fn stream(target: &Target, plan: &Plan, tally: &mut Tally) -> Outcome {
    let started = Instant::now();
    let sent = target
        .client
        .post(&target.url)
        .bearer_auth(&target.key)
        .json(&plan.body)
        .send()
        .await;
    let mut response = match sent {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            return Outcome::Failed(format!("status {status}: {text}"));
        }
        Err(e) => return Outcome::Failed(format!("send: {e}")),
    };
    let mut check = Check {
        id: format!("chatcmpl-{:016x}", plan.seed),
        ..Check::default()
    };
    let mut first = true;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                if first {
                    first = false;
                    tally
                        .ttfb_us
                        .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                let before = check.next_token;
                if let Err(e) = check.feed(&bytes) {
                    return Outcome::Truncated(format!("{}: {e}", check.id));
                }
                tally.tokens += check.next_token - before;
                if plan.leave_after.is_some_and(|k| check.next_token >= k) {
                    // Dropping the response closes the connection: the client is gone.
                    return Outcome::Left;
                }
            }
            Ok(None) => return check.verdict(plan),
            Err(e) => return Outcome::Failed(format!("{}: body: {e}", check.id)),
        }
    }
}

/// One client: from `start`, request after request until `deadline` (the last one is read
/// to its end); `leave_percent` of them are left after a few tokens.
pub async fn run(
    target: Arc<Target>,
    index: u64,
    start: Instant,
    deadline: Instant,
    leave_percent: u64,
) -> Tally {
    tokio::time::sleep_until(start.into()).await;
    let mut tally = Tally::default();
    let mut rng = Rng::new(index + 1);
    let mut serial = 0;
    while Instant::now() < deadline {
        let tokens = rng.between(20, 60);
        let words = rng.between(4, 40);
        let leave_after =
            (rng.between(1, 100) <= leave_percent).then(|| rng.between(1, tokens / 2));
        let plan = Plan::new(&target, (index << 32) | serial, tokens, words, leave_after);
        serial += 1;
        tally.requests += 1;
        match stream(&target, &plan, &mut tally).await {
            Outcome::Completed { prompt, completion } => {
                tally.completed += 1;
                tally.prompt_tokens += prompt;
                tally.completion_tokens += completion;
            }
            Outcome::Left => tally.left += 1,
            Outcome::Truncated(why) => {
                tally.truncated += 1;
                tally.problem(format!("truncated: {why}"));
            }
            Outcome::Failed(why) => {
                tally.failed += 1;
                tally.problem(format!("failed: {why}"));
                // A failing gateway is not hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tally
}

/// One stream of the disconnect storm: opened (holding one of `opening`'s permits until its
/// first token), held until every storm stream is there (`reached`), then dropped when
/// `leave` opens. Both barriers are waited on whatever happens, so a failed stream cannot
/// hang the others.
pub async fn storm(
    target: Arc<Target>,
    seed: u64,
    opening: Arc<Semaphore>,
    reached: Arc<Barrier>,
    leave: Arc<Barrier>,
) -> Result<(), String> {
    let plan = Plan::new(&target, seed, MAX_TOKENS, 8, None);
    let opened = async {
        let _permit = opening.acquire().await.map_err(|e| e.to_string())?;
        let mut response = target
            .client
            .post(&target.url)
            .bearer_auth(&target.key)
            .json(&plan.body)
            .send()
            .await
            .map_err(|e| format!("storm send: {e}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(format!("storm status {status}: {text}"));
        }
        let mut check = Check {
            id: format!("chatcmpl-{seed:016x}"),
            ..Check::default()
        };
        while check.next_token == 0 {
            let bytes = response
                .chunk()
                .await
                .map_err(|e| format!("storm body: {e}"))?
                .ok_or("storm stream ended early")?;
            check.feed(&bytes)?;
        }
        Ok::<_, String>(response)
    };
    let held = opened.await;
    reached.wait().await;
    leave.wait().await;
    drop(held?);
    Ok(())
}
