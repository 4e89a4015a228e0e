//! Running the choices of a chat or text completion: collecting them whole, or
//! merging their streams in arrival order, and log-probability entries in
//! OpenAI's shape.

use hearth_models::sampling::Sampled;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::sse::SseSender;
use super::usage::UsageSink;
use crate::engine::{ChoiceStream, TextEngine};
use crate::error::Result;

pub use crate::engine::ChoiceEvent as ChoiceOutput;

/// OpenAI's `usage` object.
pub fn usage_json(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
           "total_tokens": prompt_tokens + completion_tokens})
}

/// One finished choice.
#[derive(Debug)]
pub struct Collected {
    pub text: String,
    /// The sampled tokens behind the text (for log-probabilities and usage).
    pub tokens: Vec<Sampled>,
    pub finish_reason: &'static str,
}

/// Runs every choice to the end, concurrently.
pub async fn collect(choices: Vec<ChoiceStream>) -> Result<Vec<Collected>> {
    let runs = choices.into_iter().map(|mut choice| async move {
        let mut out = Collected {
            text: String::new(),
            tokens: Vec::new(),
            finish_reason: "stop",
        };
        while let Some(event) = choice.next().await {
            match event? {
                ChoiceOutput::Text { text, token } => {
                    out.text.push_str(&text);
                    out.tokens.extend(token);
                }
                ChoiceOutput::Finished(reason) => out.finish_reason = reason,
            }
        }
        Ok(out)
    });
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .collect()
}

/// All choices' events on one channel, tagged with the choice index. Dropping
/// the receiver drops the choices, which cancels their generations.
fn merged(choices: Vec<ChoiceStream>) -> UnboundedReceiver<(usize, Result<ChoiceOutput>)> {
    let (tx, rx) = unbounded_channel();
    for (index, mut choice) in choices.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(event) = choice.next().await {
                if tx.send((index, event)).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

fn token_entry(engine: &TextEngine, token: u32, logprob: f32) -> Value {
    let text = engine.codec.decode(&[token]).unwrap_or_default();
    json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()})
}

/// A chat `logprobs.content` entry for one sampled token.
pub fn logprob_entry(engine: &TextEngine, sampled: &Sampled) -> Value {
    let mut entry = token_entry(engine, sampled.token, sampled.logprob.unwrap_or(0.0));
    entry["top_logprobs"] = sampled
        .top_logprobs
        .iter()
        .map(|(t, l)| token_entry(engine, *t, *l))
        .collect();
    entry
}

/// The fixed parts of a completion stream.
#[derive(Debug)]
pub struct StreamSpec {
    /// id, object, created, model: copied into every chunk.
    pub header: Value,
    pub include_usage: bool,
    pub prompt_tokens: u64,
    /// Choice objects sent before any generated text (the role, echoed prompts).
    pub prelude: Vec<Value>,
    /// Told the token counts once every choice has finished.
    pub usage: UsageSink,
}

/// Streams every choice as SSE chunks: `header` (id, object, created, model)
/// around each chunk's `choices`, the `prelude` choices first, then one chunk per
/// choice object `render` makes of an event (none skips it), the usage
/// chunk only when `include_usage`, then `[DONE]`; usage is recorded once every
/// choice has finished.
pub async fn stream_choices(
    sender: SseSender,
    spec: StreamSpec,
    choices: Vec<ChoiceStream>,
    mut render: impl FnMut(usize, ChoiceOutput) -> Vec<Value>,
) {
    let StreamSpec {
        header,
        include_usage,
        prompt_tokens,
        prelude,
        usage,
    } = spec;
    let chunk = |choices: Value| {
        let mut c = header.clone();
        c["choices"] = choices;
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    for choice in prelude {
        if !sender.json(&chunk(json!([choice]))).await {
            return;
        }
    }
    let mut completion_tokens = 0u64;
    let mut outputs = merged(choices);
    while let Some((index, output)) = outputs.recv().await {
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                sender.error(&e).await;
                return;
            }
        };
        if let ChoiceOutput::Text { token: Some(_), .. } = &output {
            completion_tokens += 1;
        }
        for choice in render(index, output) {
            if !sender.json(&chunk(json!([choice]))).await {
                return;
            }
        }
    }
    usage.record(prompt_tokens, completion_tokens);
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage_json(prompt_tokens, completion_tokens);
        if !sender.json(&last).await {
            return;
        }
    }
    sender.done().await;
}
