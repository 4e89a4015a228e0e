//! `POST /v1/chat/completions` on a local model: the model's own chat template,
//! sampling, stop strings, `n` choices, log-probabilities, and SSE streaming
//! with OpenAI's chunk rules (role first, one `finish_reason` per choice, the
//! usage chunk only when `stream_options.include_usage` asks for it).

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_models::chat_template::ChatMessage;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::completion_run::{
    ChoiceOutput, StreamSpec, collect, logprob_entry, stream_choices, usage_json,
};
use super::extract::from_value;
use super::inference::{resolve_json, unserved};
use super::sampling_params::{CommonParams, MAX_TOP_LOGPROBS, choice_sampling};
use super::sse::channel_response;
use super::structured;
use super::usage::UsageSink;
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::engine::Backend;
use crate::error::{ErrorEnvelope, HearthError, Result};
use crate::store::now_unix;

const ENDPOINT: &str = "/v1/chat/completions";

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_completion_tokens: Option<i64>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    response_format: Option<Value>,
    tools: Option<Vec<Value>>,
    #[serde(flatten)]
    common: CommonParams,
}

fn messages(raw: &[Value]) -> Result<Vec<ChatMessage>> {
    if raw.is_empty() {
        return Err(HearthError::invalid_param(
            "messages",
            "`messages` must not be empty",
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            let role = match m.get("role").and_then(Value::as_str) {
                Some("developer") => "system",
                Some(r @ ("system" | "user" | "assistant" | "tool")) => r,
                _ => {
                    return Err(HearthError::invalid_param(
                        format!("{param}.role"),
                        "role must be system, developer, user, assistant or tool",
                    ));
                }
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => String::new(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| {
                        match (
                            p.get("type").and_then(Value::as_str),
                            p.get("text").and_then(Value::as_str),
                        ) {
                            (Some("text"), Some(text)) => Ok(text),
                            (kind, _) => Err(HearthError::invalid_param(
                                format!("{param}.content"),
                                format!(
                                    "content part of type {} is not supported by this model",
                                    kind.unwrap_or("?")
                                ),
                            )),
                        }
                    })
                    .collect::<Result<Vec<_>>>()?
                    .join(""),
                Some(_) => {
                    return Err(HearthError::invalid_param(
                        format!("{param}.content"),
                        "content must be a string or a list of parts",
                    ));
                }
            };
            Ok(ChatMessage {
                role: role.to_owned(),
                content,
            })
        })
        .collect()
}

/// Creates a chat completion (JSON, or SSE with `stream: true`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "inference", security(("bearer" = [])),
    request_body(content = Object, description = "OpenAI's chat completion request"),
    responses((status = 200, description = "a chat.completion, or chat.completion.chunk events"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 501, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    request: Request,
) -> Result<Response> {
    let resolved = resolve_json(&state, &identity, request, &[ModelKind::Chat], ENDPOINT).await?;
    let Some(Backend::Text(engine)) = resolved.deployment.backend.clone() else {
        return Err(unserved(resolved.deployment, ENDPOINT));
    };
    let body: ChatRequest = from_value(resolved.body)?;
    if body.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(HearthError::invalid_param(
            "tools",
            "tool calling is not supported by this deployment yet",
        ));
    }
    let grammar = structured::response_format(body.response_format.as_ref())?;
    let logprobs = match (body.logprobs.unwrap_or(false), body.top_logprobs) {
        (_, Some(k)) if !(0..=MAX_TOP_LOGPROBS as i64).contains(&k) => {
            return Err(HearthError::invalid_param(
                "top_logprobs",
                format!("`top_logprobs` must be between 0 and {MAX_TOP_LOGPROBS}"),
            ));
        }
        (false, Some(_)) => {
            return Err(HearthError::invalid_param(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ));
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, None) => None,
    };
    let checked = body.common.check(
        body.max_completion_tokens.or(body.common.max_tokens),
        logprobs,
        engine.codec.vocab_size(),
    )?;
    let prompt_text = engine.render_chat(&messages(&body.messages)?)?;
    let prompt = engine.encode(&prompt_text, false)?;
    let max_tokens = engine.budget(prompt.len(), checked.max_tokens)?;
    let constraints =
        structured::constraints(&engine, grammar, checked.n, "response_format").await?;
    let choices = constraints
        .into_iter()
        .enumerate()
        .map(|(i, constraint)| {
            engine.start(
                prompt.clone(),
                max_tokens,
                choice_sampling(&checked.sampling, i),
                checked.stops.clone(),
                constraint,
            )
        })
        .collect::<Result<Vec<_>>>()?;

    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_unix();
    let model = resolved.model.clone();
    let usage = UsageSink::new(&state, &identity, resolved.deployment.name());
    let prompt_tokens = prompt.len() as u64;
    let with_logprobs = logprobs.is_some();

    if !body.stream {
        let outputs = collect(choices).await?;
        let completion_tokens: u64 = outputs.iter().map(|o| o.tokens.len() as u64).sum();
        usage.record(prompt_tokens, completion_tokens);
        let choices: Vec<Value> = outputs
            .iter()
            .enumerate()
            .map(|(index, out)| {
                json!({
                    "index": index,
                    "message": {"role": "assistant", "content": out.text},
                    "logprobs": with_logprobs.then(|| json!({"content": out.tokens.iter().map(|t| logprob_entry(&engine, t)).collect::<Vec<_>>()})),
                    "finish_reason": out.finish_reason,
                })
            })
            .collect();
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": null,
            "choices": choices,
            "usage": usage_json(prompt_tokens, completion_tokens),
        }))
        .into_response());
    }

    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    let (sender, response) = channel_response();
    let header = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                        "system_fingerprint": null});
    let prelude = (0..checked.n)
        .map(|index| json!({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}))
        .collect();
    let render = move |index: usize, output: ChoiceOutput| match output {
        ChoiceOutput::Text { text, token } => {
            if text.is_empty() && !with_logprobs {
                return None;
            }
            let logprobs =
                with_logprobs.then(|| json!({"content": token.iter().map(|t| logprob_entry(&engine, t)).collect::<Vec<_>>()}));
            Some(
                json!({"index": index, "delta": {"content": text}, "logprobs": logprobs, "finish_reason": null}),
            )
        }
        ChoiceOutput::Finished(reason) => {
            Some(json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}))
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
