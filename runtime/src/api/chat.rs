//! `POST /v1/chat/completions` on a local model: the model's own chat template,
//! sampling, stop strings, `n` choices, log-probabilities, structured outputs, tool calls,
//! reasoning, and SSE streaming with OpenAI's chunk rules (role first, one `finish_reason`
//! per choice, the usage chunk only when `stream_options.include_usage` asks for it).

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llguidance::api::TopLevelGrammar;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::chat_answer::{AnswerShape, StreamShaper};
use super::chat_prompt;
use super::completion_run::{
    ChoiceOutput, StreamSpec, collect, logprob_entry, stream_choices, usage_json,
};
use super::extract::from_value;
use super::inference::{ModelHeader, resolve_json, unserved};
use super::openapi_schemas::ToolChoice as ToolChoiceSchema;
use super::openapi_schemas::{ChatMessage, FunctionCall, Functions, ResponseFormat, Tools};
use super::sampling_params::{CommonParams, MAX_TOP_LOGPROBS, choice_sampling};
use super::sse::channel_response;
use super::structured;
use super::tools::format::{Enforcement, ToolFormat};
use super::tools::split::Reasoning;
use super::tools::{ToolChoice, ToolFields, ToolRequest, tool_request};
use super::usage::UsageSink;
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::engine::{Backend, TextEngine};
use crate::error::{ErrorEnvelope, HearthError, Result};
use crate::store::now_unix;

const ENDPOINT: &str = "/v1/chat/completions";

/// `stream_options` of chat and text completions.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// A last chunk with the usage (and no choices).
    #[serde(default)]
    pub include_usage: bool,
}

/// The request body (OpenAI's, with vLLM's `top_k` and `chat_template_kwargs`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "default", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}))]
pub struct ChatRequest {
    /// Required unless the `X-GPUStack-Model` header names the model (read before this
    /// parse, here for its type and the document).
    #[allow(dead_code, reason = "resolved from the raw body before this parse")]
    model: Option<String>,
    #[schema(value_type = Vec<ChatMessage>, min_items = 1)]
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    /// The newer name of `max_tokens`; wins over it.
    #[schema(minimum = 1)]
    max_completion_tokens: Option<i64>,
    logprobs: Option<bool>,
    /// Needs `logprobs: true`.
    #[schema(minimum = 0, maximum = 20)]
    top_logprobs: Option<i64>,
    #[schema(value_type = Option<ResponseFormat>)]
    response_format: Option<Value>,
    #[schema(value_type = Option<Tools>)]
    tools: Option<Value>,
    #[schema(value_type = Option<ToolChoiceSchema>)]
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    /// Legacy `tools`.
    #[schema(value_type = Option<Functions>)]
    functions: Option<Value>,
    /// Legacy `tool_choice`.
    #[schema(value_type = Option<FunctionCall>)]
    function_call: Option<Value>,
    /// vLLM's: extra variables for the chat template (`{"enable_thinking": false}`).
    #[schema(value_type = Option<Object>)]
    chat_template_kwargs: Option<Map<String, Value>>,
    #[serde(flatten)]
    common: CommonParams,
}

/// The grammar a choice runs under: a forced call, else the `response_format`, else (with
/// `tool_choice: "auto"`) calls held to their schemas once the model starts one.
fn choice_grammar(
    tools: Option<&ToolRequest>,
    format: ToolFormat,
    response_format: Option<TopLevelGrammar>,
) -> (Option<TopLevelGrammar>, &'static str) {
    let callable = tools.map(ToolRequest::callable).unwrap_or_default();
    let Some(request) = tools.filter(|_| !callable.is_empty()) else {
        return (response_format, "response_format");
    };
    let param = if request.legacy { "functions" } else { "tools" };
    match (&request.choice, response_format) {
        (ToolChoice::Required | ToolChoice::Named(_), _) => (
            Some(format.grammar(&callable, Enforcement::Forced, request.parallel)),
            param,
        ),
        (_, Some(grammar)) => (Some(grammar), "response_format"),
        _ => (
            Some(format.grammar(&callable, Enforcement::Lazy, request.parallel)),
            param,
        ),
    }
}

/// Whether and how the model thinks: templates that know `</think>` may, and a prompt
/// that ends inside `<think>` already does.
fn reasoning_of(engine: &TextEngine, prompt: &str) -> Reasoning {
    match &engine.template {
        Some(t) if t.source().contains("</think>") => {
            if prompt.trim_end().ends_with("<think>") {
                Reasoning::Thinking
            } else {
                Reasoning::MayThink
            }
        }
        _ => Reasoning::Off,
    }
}

/// Creates a chat completion (JSON, or SSE with `stream: true`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "inference", security(("bearer" = [])),
    request_body = ChatRequest, params(ModelHeader),
    responses((status = 200, description = "a chat.completion, or chat.completion.chunk events (SSE) with `stream: true`"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
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
    let tools = tool_request(ToolFields {
        tools: body.tools.as_ref(),
        tool_choice: body.tool_choice.as_ref(),
        parallel_tool_calls: body.parallel_tool_calls,
        functions: body.functions.as_ref(),
        function_call: body.function_call.as_ref(),
    })?;
    let response_format = structured::response_format(body.response_format.as_ref())?;
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
    let (prompt_text, format) = chat_prompt::render(
        &engine,
        &body.messages,
        tools.as_ref(),
        body.chat_template_kwargs.as_ref(),
    )?;
    let prompt = engine.encode(&prompt_text, false)?;
    let max_tokens = engine.budget(prompt.len(), checked.max_tokens)?;
    let (grammar, grammar_param) = choice_grammar(tools.as_ref(), format, response_format);
    let constraints = structured::constraints(&engine, grammar, checked.n, grammar_param).await?;
    let shape = AnswerShape {
        reasoning: reasoning_of(&engine, &prompt_text),
        tools: tools
            .as_ref()
            .filter(|t| t.choice != ToolChoice::None)
            .map(|t| t.tools.iter().map(|spec| spec.name.clone()).collect()),
        parallel: tools.as_ref().is_none_or(|t| t.parallel),
        legacy: tools.as_ref().is_some_and(|t| t.legacy),
    };
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
                let (message, finish_reason) = shape.message(&out.text, out.finish_reason);
                json!({
                    "index": index,
                    "message": message,
                    "logprobs": with_logprobs.then(|| json!({"content": out.tokens.iter().map(|t| logprob_entry(&engine, t)).collect::<Vec<_>>()})),
                    "finish_reason": finish_reason,
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
    let mut shapers: Vec<StreamShaper> = (0..checked.n)
        .map(|_| StreamShaper::new(shape.clone()))
        .collect();
    let render = move |index: usize, output: ChoiceOutput| match output {
        ChoiceOutput::Text { text, token } => {
            let mut deltas = shapers[index].push(text);
            if with_logprobs && deltas.is_empty() {
                deltas.push(json!({"content": ""}));
            }
            let logprobs =
                with_logprobs.then(|| json!({"content": token.iter().map(|t| logprob_entry(&engine, t)).collect::<Vec<_>>()}));
            deltas
                .into_iter()
                .enumerate()
                .map(|(i, delta)| {
                    let logprobs = if i == 0 { logprobs.clone() } else { None };
                    json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null})
                })
                .collect()
        }
        ChoiceOutput::Finished(reason) => {
            let (deltas, reason) = shapers[index].finish(reason);
            deltas
                .into_iter()
                .map(|delta| json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": null}))
                .chain([json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": reason})])
                .collect()
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
