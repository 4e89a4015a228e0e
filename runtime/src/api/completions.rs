//! `POST /v1/completions` on a local model: `prompt` as a string, strings,
//! token ids or lists of token ids; `echo`; legacy integer `logprobs`; `n`
//! choices per prompt (choice `index` = prompt × n + choice); SSE streaming.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_models::sampling::Sampled;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::chat::StreamOptions;
use super::completion_run::{ChoiceOutput, StreamSpec, collect, stream_choices, usage_json};
use super::extract::from_value;
use super::extract::token_id_list;
use super::inference::{ModelHeader, resolve_json, unserved};
use super::openapi_schemas::{Prompt, ResponseFormat};
use super::sampling_params::{CommonParams, choice_sampling};
use super::sse::channel_response;
use super::structured;
use super::usage::UsageSink;
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::engine::{Backend, TextEngine};
use crate::error::{ErrorEnvelope, HearthError, Result};
use crate::store::now_unix;

const ENDPOINT: &str = "/v1/completions";
/// The legacy API's limit on `logprobs`.
const MAX_LOGPROBS: i64 = 5;

/// The request body (OpenAI's legacy completions, with vLLM's `top_k` and `response_format`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "default", "prompt": "Once upon a time", "max_tokens": 16}))]
pub struct CompletionRequest {
    /// Required unless the `X-GPUStack-Model` header names the model.
    #[allow(dead_code, reason = "resolved from the raw body before this parse")]
    model: Option<String>,
    #[schema(value_type = Prompt)]
    prompt: Value,
    #[serde(default)]
    stream: bool,
    #[schema(value_type = Option<StreamOptions>)]
    stream_options: Option<Value>,
    /// The prompt again, ahead of the completion.
    #[serde(default)]
    echo: bool,
    /// Only empty: no model here fills in the middle.
    #[schema(max_length = 0)]
    suffix: Option<String>,
    /// The legacy API's count of alternatives per token.
    #[schema(minimum = 0, maximum = 5)]
    logprobs: Option<i64>,
    /// Not in OpenAI's legacy API: structured outputs for completions too, as vLLM has them.
    #[schema(value_type = Option<ResponseFormat>)]
    response_format: Option<Value>,
    #[serde(flatten)]
    common: CommonParams,
}

fn prompt_error(message: impl Into<String>) -> HearthError {
    HearthError::invalid_param("prompt", message)
}

fn token_ids(value: &Value, at: usize, vocab: usize) -> Result<Vec<u32>> {
    let ids = token_id_list(value, "prompt", at)?;
    match ids.iter().find(|&&t| t as usize >= vocab) {
        Some(bad) => Err(prompt_error(format!(
            "`{bad}` is not a token id of this model"
        ))),
        None => Ok(ids),
    }
}

/// Every prompt as token ids.
fn prompts(engine: &TextEngine, prompt: &Value) -> Result<Vec<Vec<u32>>> {
    let vocab = engine.codec.vocab_size();
    // A model that adds no start token makes nothing of "": there is nothing to continue.
    let encode = |text: &str| match engine.encode(text, true)? {
        ids if ids.is_empty() => Err(prompt_error(
            "the prompt has no tokens for this model (it adds no start token); send some text",
        )),
        ids => Ok(ids),
    };
    match prompt {
        Value::String(text) => Ok(vec![encode(text)?]),
        Value::Array(items) if items.is_empty() => {
            Err(prompt_error("`prompt` must not be an empty list"))
        }
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|t| encode(t.as_str().unwrap_or_default()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            Ok(vec![token_ids(prompt, 0, vocab)?])
        }
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .enumerate()
            .map(|(i, p)| token_ids(p, i, vocab))
            .collect(),
        _ => Err(prompt_error(
            "`prompt` must be a string, a list of strings, token ids, or lists of token ids",
        )),
    }
}

/// The legacy `logprobs` object for a run of tokens.
fn legacy_logprobs(engine: &TextEngine, tokens: &[Sampled], offset: usize) -> Value {
    let text = |t: u32| engine.codec.decode(&[t]).unwrap_or_default();
    let mut offsets = Vec::with_capacity(tokens.len());
    let mut at = offset;
    for t in tokens {
        offsets.push(at);
        at += text(t.token).len();
    }
    json!({
        "tokens": tokens.iter().map(|t| text(t.token)).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            t.top_logprobs.iter().map(|(id, l)| (text(*id), json!(l))).collect::<Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// Creates a text completion.
#[utoipa::path(post, path = "/v1/completions", tag = "inference", security(("bearer" = [])),
    request_body = CompletionRequest, params(ModelHeader),
    responses((status = 200, description = "a text_completion, or its chunks as SSE with `stream: true`"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    request: Request,
) -> Result<Response> {
    let resolved = resolve_json(
        &state,
        &identity,
        request,
        &[ModelKind::Chat, ModelKind::Completion],
        ENDPOINT,
    )
    .await?;
    let Some(Backend::Text(engine)) = resolved.deployment.backend.clone() else {
        return Err(unserved(resolved.deployment, ENDPOINT));
    };
    let body: CompletionRequest = from_value(resolved.body)?;
    if body.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(HearthError::invalid_param(
            "suffix",
            "this model does not support `suffix` (fill-in-the-middle)",
        ));
    }
    let logprobs = match body.logprobs {
        None => None,
        Some(k) if (0..=MAX_LOGPROBS).contains(&k) => Some(k as usize),
        Some(k) => {
            return Err(HearthError::invalid_param(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_LOGPROBS}; got {k}"),
            ));
        }
    };
    let checked = body
        .common
        .check(body.common.max_tokens, logprobs, engine.codec.vocab_size())?;
    // The legacy endpoint's default is 16 tokens.
    let max_tokens = checked.max_tokens.or(Some(16));
    let prompts = prompts(&engine, &body.prompt)?;
    let grammar = structured::response_format(body.response_format.as_ref())?;
    let mut constraints = structured::constraints(
        &engine,
        grammar,
        prompts.len() * checked.n,
        "response_format",
    )
    .await?
    .into_iter();
    let mut choices = Vec::new();
    let mut echoes = Vec::new();
    let mut prompt_tokens = 0u64;
    for prompt in &prompts {
        let budget = engine.budget(prompt.len(), max_tokens)?;
        prompt_tokens += prompt.len() as u64;
        let echo = if body.echo {
            engine.codec.decode(prompt).map_err(HearthError::Internal)?
        } else {
            String::new()
        };
        for i in 0..checked.n {
            echoes.push(echo.clone());
            choices.push(engine.start(
                prompt.clone(),
                budget,
                choice_sampling(&checked.sampling, i),
                checked.stops.clone(),
                constraints.next().flatten(),
            )?);
        }
    }
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_unix();
    let model = resolved.model.clone();
    let usage = UsageSink::new(&state, &identity, resolved.deployment.name());

    if !body.stream {
        let outputs = collect(choices).await?;
        let completion_tokens: u64 = outputs.iter().map(|o| o.tokens.len() as u64).sum();
        usage.record(prompt_tokens, completion_tokens);
        let choices: Vec<Value> = outputs
            .iter()
            .zip(&echoes)
            .enumerate()
            .map(|(index, (out, echo))| {
                json!({
                    "index": index,
                    "text": format!("{echo}{}", out.text),
                    "logprobs": logprobs.map(|_| legacy_logprobs(&engine, &out.tokens, echo.len())),
                    "finish_reason": out.finish_reason,
                })
            })
            .collect();
        return Ok(Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": null, "choices": choices,
            "usage": usage_json(prompt_tokens, completion_tokens),
        }))
        .into_response());
    }

    let include_usage = body
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (sender, response) = channel_response();
    let header = json!({"id": id, "object": "text_completion", "created": created, "model": model,
                        "system_fingerprint": null});
    let prelude = echoes
        .iter()
        .enumerate()
        .filter(|(_, echo)| !echo.is_empty())
        .map(|(index, echo)| json!({"index": index, "text": echo, "logprobs": null, "finish_reason": null}))
        .collect();
    let render = move |index: usize, output: ChoiceOutput| match output {
        ChoiceOutput::Text { text, token } => {
            if text.is_empty() && logprobs.is_none() {
                return Vec::new();
            }
            let lp = logprobs.map(|_| legacy_logprobs(&engine, token.as_slice(), 0));
            vec![json!({"index": index, "text": text, "logprobs": lp, "finish_reason": null})]
        }
        ChoiceOutput::Finished(reason) => {
            vec![json!({"index": index, "text": "", "logprobs": null, "finish_reason": reason})]
        }
    };
    let spec = StreamSpec {
        header,
        include_usage,
        prompt_tokens,
        prelude,
        usage,
    };
    tokio::spawn(stream_choices(sender, spec, choices, render));
    Ok(response)
}
