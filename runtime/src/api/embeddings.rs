//! `POST /v1/embeddings`: input as a string, strings, tokens or token lists;
//! `encoding_format` float or base64 (little-endian f32); `dimensions`
//! (truncate, then renormalise); real `usage.prompt_tokens`.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::extract::token_id_list;
use super::inference::{ModelHeader, resolve_json, unserved};
use super::openapi_schemas::EmbeddingInput;
use super::usage::UsageSink;
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::engine::{Backend, EmbeddingEngine};
use crate::error::{ErrorEnvelope, HearthError, Result};

/// OpenAI's limit on inputs per request.
const MAX_INPUTS: usize = 2048;
const ENDPOINT: &str = "/v1/embeddings";

/// The request body. `model` was already resolved (header first) and `user` is
/// accepted for compatibility; both are here for the OpenAPI description.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code, reason = "fields kept for the OpenAPI schema")]
#[schema(example = json!({"model": "text-embedding-3-small", "input": ["Hello", "world"]}))]
pub struct EmbeddingRequest {
    /// Required unless the `X-GPUStack-Model` header names the model.
    pub model: Option<String>,
    /// A string, a list of strings, a list of token ids, or a list of token-id lists.
    #[schema(value_type = EmbeddingInput)]
    pub input: Value,
    /// `float` (default) or `base64` (little-endian f32).
    #[schema(value_type = Option<EncodingFormat>)]
    pub encoding_format: Option<String>,
    /// Keep the first N dimensions (at most the model's), then renormalise.
    #[schema(minimum = 1)]
    pub dimensions: Option<i64>,
    pub user: Option<String>,
}

/// How vectors are returned.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "describes `encoding_format` for the OpenAPI document"
)]
#[schema(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// One vector, as floats or base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingData {
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingVector,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

/// The response body.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// What the client sent as `input`, before tokenisation.
enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

fn input_error(message: impl Into<String>) -> HearthError {
    HearthError::invalid_param("input", message)
}

fn parse_inputs(input: &Value) -> Result<Inputs> {
    let inputs = match input {
        Value::String(text) => Inputs::Texts(vec![text.clone()]),
        Value::Array(items) if items.is_empty() => {
            return Err(input_error("`input` must not be an empty list"));
        }
        Value::Array(items) if items.iter().all(Value::is_string) => Inputs::Texts(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            Inputs::Tokens(vec![token_id_list(input, "input", 0)?])
        }
        Value::Array(items) if items.iter().all(Value::is_array) => Inputs::Tokens(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| token_id_list(v, "input", i))
                .collect::<Result<_>>()?,
        ),
        Value::Array(_) => {
            return Err(input_error(
                "`input` must be a string, a list of strings, a list of token ids, or a list of token-id lists",
            ));
        }
        other => {
            return Err(input_error(format!(
                "`input` must be a string or a list, not {other}"
            )));
        }
    };
    let count = match &inputs {
        Inputs::Texts(t) => t.len(),
        Inputs::Tokens(t) => t.len(),
    };
    if count > MAX_INPUTS {
        return Err(input_error(format!(
            "at most {MAX_INPUTS} inputs per request; got {count}"
        )));
    }
    if let Inputs::Texts(texts) = &inputs
        && let Some(i) = texts.iter().position(|t| t.is_empty())
    {
        return Err(input_error(format!("input[{i}] is an empty string")));
    }
    Ok(inputs)
}

/// Tokenises and checks lengths and ids; over-long inputs are cut only when the
/// deployment allows it (keeping the final special token of a text).
fn prepare(engine: &EmbeddingEngine, inputs: Inputs, truncate: bool) -> Result<Vec<Vec<u32>>> {
    let (mut sequences, from_text) = match inputs {
        Inputs::Texts(texts) => (
            texts
                .iter()
                .map(|t| engine.tokenize(t))
                .collect::<Result<Vec<_>>>()?,
            true,
        ),
        Inputs::Tokens(tokens) => (tokens, false),
    };
    let limit = engine.max_input_tokens();
    for (i, sequence) in sequences.iter_mut().enumerate() {
        if let Some(bad) = sequence
            .iter()
            .find(|&&t| t as usize >= engine.vocab_size())
        {
            return Err(input_error(format!(
                "input[{i}] holds token id {bad}, outside this model's vocabulary of {}",
                engine.vocab_size()
            )));
        }
        if sequence.len() > limit {
            if !truncate {
                return Err(input_error(format!(
                    "input[{i}] is {} tokens long, more than this model's limit of {limit} tokens",
                    sequence.len()
                )));
            }
            let last = *sequence.last().unwrap_or(&0);
            sequence.truncate(limit);
            if from_text {
                sequence[limit - 1] = last;
            }
        }
    }
    Ok(sequences)
}

fn shorten(mut vector: Vec<f32>, dimensions: Option<usize>) -> Vec<f32> {
    if let Some(d) = dimensions.filter(|&d| d < vector.len()) {
        vector.truncate(d);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
    }
    vector
}

fn encode(vector: Vec<f32>, base64: bool) -> EmbeddingVector {
    if base64 {
        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        EmbeddingVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        EmbeddingVector::Float(vector)
    }
}

/// Creates embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "inference", security(("bearer" = [])),
    request_body = EmbeddingRequest, params(ModelHeader),
    responses((status = 200, body = EmbeddingResponse),
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
        &[ModelKind::Embedding],
        ENDPOINT,
    )
    .await?;
    let Some(Backend::Embedding(engine)) = resolved.deployment.backend.clone() else {
        return Err(unserved(resolved.deployment, ENDPOINT));
    };
    let body: EmbeddingRequest = super::extract::from_value(resolved.body)?;
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(HearthError::invalid_param(
                "encoding_format",
                format!("`{other}` is not an encoding format; use float or base64"),
            ));
        }
    };
    let dimensions = match body.dimensions {
        None => None,
        Some(d) if d >= 1 && (d as usize) <= engine.dimensions() => Some(d as usize),
        Some(d) => {
            return Err(HearthError::invalid_param(
                "dimensions",
                format!(
                    "dimensions must be between 1 and {} for this model; got {d}",
                    engine.dimensions()
                ),
            ));
        }
    };
    let inputs = parse_inputs(&body.input)?;
    let truncate = resolved.deployment.config.truncate_inputs;
    let tokenizing = engine.clone();
    let sequences = tokio::task::spawn_blocking(move || prepare(&tokenizing, inputs, truncate))
        .await
        .map_err(|e| HearthError::Internal(format!("tokenizer task failed: {e}")))??;
    let prompt_tokens: u64 = sequences.iter().map(|s| s.len() as u64).sum();

    let vectors = engine.embed(sequences).await?;

    UsageSink::new(&state, &identity, resolved.deployment.name()).record(prompt_tokens, 0);
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: "embedding",
            index,
            embedding: encode(shorten(v, dimensions), base64),
        })
        .collect();
    Ok(Json(EmbeddingResponse {
        object: "list",
        data,
        model: resolved.model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_of_every_shape_parse() {
        assert!(matches!(parse_inputs(&json!("a")).unwrap(), Inputs::Texts(t) if t == ["a"]));
        assert!(
            matches!(parse_inputs(&json!(["a", "b"])).unwrap(), Inputs::Texts(t) if t.len() == 2)
        );
        assert!(
            matches!(parse_inputs(&json!([1, 2, 3])).unwrap(), Inputs::Tokens(t) if t == [vec![1, 2, 3]])
        );
        assert!(
            matches!(parse_inputs(&json!([[1], [2, 3]])).unwrap(), Inputs::Tokens(t) if t.len() == 2)
        );
    }

    #[test]
    fn bad_inputs_name_the_param() {
        for bad in [
            json!([]),
            json!(""),
            json!(["a", ""]),
            json!([1, "a"]),
            json!([[1], []]),
            json!([-1]),
            json!(3),
            json!({"a": 1}),
        ] {
            match parse_inputs(&bad) {
                Err(HearthError::InvalidRequest { param: Some(p), .. }) => {
                    assert_eq!(p, "input", "{bad}")
                }
                Err(other) => panic!("{bad}: unexpected {other:?}"),
                Ok(_) => panic!("{bad} was accepted"),
            }
        }
        let many = Value::Array(vec![json!("x"); MAX_INPUTS + 1]);
        assert!(parse_inputs(&many).is_err());
    }

    #[test]
    fn shortening_renormalises() {
        let v = shorten(vec![3.0, 4.0, 12.0], Some(2));
        assert_eq!(v, vec![0.6, 0.8]);
        assert_eq!(shorten(vec![1.0, 0.0], None), vec![1.0, 0.0]);
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let EmbeddingVector::Base64(text) = encode(vec![1.0, -2.5], true) else {
            panic!()
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
    }
}
