//! Schemas for the OpenAPI document where a handler reads a field as raw JSON (`messages`,
//! `prompt`, `input`, `stop`, `tools`, …, checked by hand because each takes several shapes):
//! each is written here as the JSON Schema of what the handler accepts. The request structs
//! themselves derive `ToSchema` and point such fields here with `value_type`, so field names
//! and the plain fields cannot drift from what serde reads.

use serde_json::{Map, Value, json};
use utoipa::openapi::{RefOr, Schema};

use super::images::{MAX_N, MAX_PROMPT_CHARS};
use crate::audio::AudioFormat;
use crate::engine::SAMPLERS;

/// A schema-only type named for the document, whose schema is a JSON literal. utoipa's own
/// schema type cannot hold every keyword (`anyOf` beside others, `propertyNames`), so the
/// type gives utoipa a placeholder and [`literals`] puts the literal in its place when the
/// document is served.
macro_rules! json_schema {
    ($(#[$doc:meta])* $name:ident => $json:expr) => {
        $(#[$doc])*
        // No values: the type only names the schema.
        #[derive(Debug)]
        pub enum $name {}

        impl $name {
            /// The JSON Schema, as written.
            pub fn json() -> Value {
                $json
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::default())
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// Every literal schema by component name; a test checks none is left out.
pub fn literals() -> Vec<(&'static str, Value)> {
    vec![
        ("ChatMessage", ChatMessage::json()),
        ("Stop", Stop::json()),
        ("LogitBias", LogitBias::json()),
        ("Prompt", Prompt::json()),
        ("EmbeddingInput", EmbeddingInput::json()),
        ("ResponseFormat", ResponseFormat::json()),
        ("Tools", Tools::json()),
        ("Functions", Functions::json()),
        ("ToolChoice", ToolChoice::json()),
        ("FunctionCall", FunctionCall::json()),
        ("Voice", Voice::json()),
        ("SpeechFormat", SpeechFormat::json()),
        ("ImageGenerationRequest", ImageGenerationRequest::json()),
        ("ImageEditForm", ImageEditForm::json()),
        ("ImageEditJson", ImageEditJson::json()),
        ("TranscriptionForm", TranscriptionForm::json()),
        ("TranslationForm", TranslationForm::json()),
    ]
}

/// The properties of an object literal.
fn properties(object: Value) -> Map<String, Value> {
    match object {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn token_ids() -> Value {
    json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": u32::MAX}, "minItems": 1})
}

json_schema!(
    /// One chat message. `developer` is read as `system` and `function` as `tool`; content
    /// is a string, text parts (joined) or null.
    ChatMessage => json!({
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
            "content": {"anyOf": [
                {"type": "string"},
                {"type": "array", "items": {
                    "type": "object", "required": ["type", "text"],
                    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
                }},
                {"type": "null"},
            ]},
            "name": {"type": "string"},
            "tool_calls": {"type": ["array", "null"], "items": {
                "type": "object", "required": ["function"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "arguments": {"description": "a JSON string (or object) of the arguments"},
                    }},
                },
            }},
            "tool_call_id": {"type": "string", "description": "on a `tool` message: the call it answers"},
            "function_call": {"type": "object", "description": "legacy: the assistant's call",
                "required": ["name"], "properties": {"name": {"type": "string"}, "arguments": {}}},
        },
    })
);

json_schema!(
    /// Up to four stop strings.
    Stop => json!({"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "maxItems": 4},
    ]})
);

json_schema!(
    /// Token id (as a string) → bias in -100..100.
    LogitBias => json!({
        "type": "object",
        "propertyNames": {"pattern": "^[0-9]+$"},
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
    })
);

json_schema!(
    /// A completion prompt: text, texts, token ids, or lists of token ids.
    Prompt => json!({"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        token_ids(),
        {"type": "array", "items": token_ids(), "minItems": 1},
    ]})
);

json_schema!(
    /// What to embed: text, texts (none empty, at most 2048), token ids, or lists of them.
    EmbeddingInput => json!({"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 2048},
        token_ids(),
        {"type": "array", "items": token_ids(), "minItems": 1, "maxItems": 2048},
    ]})
);

json_schema!(
    /// Structured output: plain text, any JSON object, or JSON under a schema.
    ResponseFormat => json!({"anyOf": [
        {"type": "object", "required": ["type"], "properties": {"type": {"type": "string", "enum": ["text", "json_object"]}}},
        {"type": "object", "required": ["type", "json_schema"], "properties": {
            "type": {"type": "string", "enum": ["json_schema"]},
            "json_schema": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "description": {"type": "string"},
                "schema": {"type": ["object", "null"], "description": "a JSON Schema the answer must match"},
                "strict": {"type": ["boolean", "null"]},
            }},
        }},
    ]})
);

fn function_definition() -> Value {
    json!({"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "description": {"type": "string"},
        "parameters": {"type": ["object", "null"], "description": "a JSON Schema of the arguments"},
        "strict": {"type": ["boolean", "null"]},
    }})
}

json_schema!(
    /// The request's tools (functions only, names unique).
    Tools => json!({"type": "array", "items": {
        "type": "object", "required": ["type", "function"],
        "properties": {"type": {"type": "string", "enum": ["function"]}, "function": function_definition()},
    }})
);

json_schema!(
    /// Legacy: the request's functions.
    Functions => json!({"type": "array", "items": function_definition()})
);

json_schema!(
    /// `none`, `auto`, `required`, or one of the request's functions (needs `tools`).
    ToolChoice => json!({"anyOf": [
        {"type": "string", "enum": ["none", "auto", "required"]},
        {"type": "object", "required": ["type", "function"], "properties": {
            "type": {"type": "string", "enum": ["function"]},
            "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        }},
    ]})
);

json_schema!(
    /// Legacy: `none`, `auto`, or `{"name": …}` of one of the request's functions.
    FunctionCall => json!({"anyOf": [
        {"type": "string", "enum": ["none", "auto"]},
        {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    ]})
);

json_schema!(
    /// The audio formats this build encodes (`aac` is OpenAI's, but has no encoder here).
    SpeechFormat => {
        let formats: Vec<&str> = AudioFormat::SUPPORTED.iter().map(|f| f.as_str()).collect();
        let mut values: Vec<Value> = formats.into_iter().map(Value::from).collect();
        values.push(Value::Null);
        json!({"type": ["string", "null"], "enum": values, "default": "mp3"})
    }
);

json_schema!(
    /// The speech voice: a name (OpenAI's, a configured alias or a speaker of the voice), or
    /// `{"id": …}` naming one.
    Voice => json!({"anyOf": [
        {"type": "string", "examples": ["alloy"]},
        {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
    ]})
);

/// The image parameters both image endpoints take, as JSON properties.
fn image_params(edit: bool) -> Map<String, Value> {
    let text = |values: &[&str]| json!({"type": ["string", "null"], "enum": values.iter().copied().map(Some).chain([None]).collect::<Vec<_>>()});
    let params = json!({
        "model": {"type": ["string", "null"], "description": "required unless the X-GPUStack-Model header names the model"},
        "prompt": {"type": ["string", "null"], "maxLength": MAX_PROMPT_CHARS,
            "description": if edit { "required by models that read the prompt" } else { "required, not blank" }},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_N},
        "size": {"type": ["string", "null"], "description": "`auto` or one of the model's sizes (`WIDTHxHEIGHT`)"},
        "response_format": text(&["b64_json", "url"]),
        "output_format": text(&["png", "jpeg", "webp"]),
        "output_compression": {"type": ["integer", "null"], "minimum": 0, "maximum": 100,
            "description": "jpeg and webp only"},
        "background": text(&["auto", "opaque"]),
        "quality": text(&["auto", "low", "medium", "high", "standard", "hd"]),
        "user": {"type": ["string", "null"]},
        "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX,
            "description": "Hearth's: image i uses seed + i"},
        "stream": {"type": ["boolean", "null"],
            "description": "diffusion pipelines: server-sent image events; other models make each image whole (true is a 400)"},
        "partial_images": {"type": ["integer", "null"], "minimum": 0, "maximum": 3,
            "description": "diffusion pipelines, with stream"},
        "steps": {"type": ["integer", "null"], "minimum": 1, "maximum": 150,
            "description": "Hearth's, diffusion pipelines: denoising steps"},
        "guidance_scale": {"type": ["number", "null"], "minimum": 0, "maximum": 50,
            "description": "Hearth's, diffusion pipelines: classifier-free guidance (≤ 1: off)"},
        "negative_prompt": {"type": ["string", "null"],
            "description": "Hearth's, diffusion pipelines: what the image should not show"},
        "sampler": text(&SAMPLERS),
        "clip_skip": {"type": ["integer", "null"], "minimum": 0, "maximum": 8,
            "description": "Hearth's, diffusion pipelines: text-encoder layers skipped from the end"},
        "strength": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1,
            "description": "Hearth's, diffusion edits: how much of the picture is redrawn (a 400 on generations)"},
    });
    let extra = if edit {
        json!({"input_fidelity": text(&["high", "low"])})
    } else {
        json!({"style": text(&["vivid", "natural"]), "moderation": text(&["auto", "low"])})
    };
    let mut params = properties(params);
    params.extend(properties(extra));
    params
}

json_schema!(
    /// `POST /v1/images/generations`; any other field is a 400.
    ImageGenerationRequest => json!({
        "type": "object", "required": ["prompt"], "additionalProperties": false,
        "properties": image_params(false),
        "example": {"model": "dall-e-2", "prompt": "a lighthouse at dusk", "n": 1},
    })
);

/// A form has no null: each field's schema without it (numbers and booleans go as text).
fn form_fields(params: Map<String, Value>) -> Map<String, Value> {
    params
        .into_iter()
        .map(|(name, mut schema)| {
            if let Some(Value::Array(types)) = schema.get("type") {
                schema["type"] = types.first().cloned().unwrap_or(Value::Null);
            }
            if let Some(Value::Array(values)) = schema.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            (name, schema)
        })
        .collect()
}

fn binary() -> Value {
    json!({"type": "string", "format": "binary"})
}

json_schema!(
    /// `POST /v1/images/edits` as a form: the image as `image` (or `image[]`, repeated for
    /// models that take several), an optional `mask` of the same size; any other field is a
    /// 400.
    ImageEditForm => {
        let mut fields = form_fields(image_params(true));
        fields.insert("image".into(), binary());
        fields.insert("image[]".into(), json!({"type": "array", "items": binary()}));
        fields.insert("mask".into(), binary());
        json!({"type": "object", "additionalProperties": false, "properties": fields})
    }
);

fn json_image() -> Value {
    json!({"anyOf": [
        {"type": "string", "description": "base64, or a `data:` URL with base64"},
        {"type": "object", "required": ["image_url"], "properties": {"image_url": {"anyOf": [
            {"type": "string"},
            {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
        ]}}},
    ]})
}

json_schema!(
    /// `POST /v1/images/edits` as JSON: images as base64 or `data:` URLs.
    ImageEditJson => {
        let mut fields = image_params(true);
        fields.insert("image".into(), json!({"anyOf": [json_image(), {"type": "array", "items": json_image()}, {"type": "null"}]}));
        fields.insert("images".into(), json!({"type": ["array", "null"], "items": json_image()}));
        fields.insert("mask".into(), json!({"anyOf": [json_image(), {"type": "null"}]}));
        json!({"type": "object", "additionalProperties": false, "properties": fields})
    }
);

/// The fields of both audio forms.
fn audio_fields(transcribe: bool) -> Map<String, Value> {
    let mut fields = json!({
        "file": {"type": "string", "format": "binary", "description": "the recording (wav, mp3, flac, ogg/opus, m4a, webm, …), at most 25 MB"},
        "model": {"type": "string", "description": "required unless the X-GPUStack-Model header names the model"},
        "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": ["json", "text", "srt", "verbose_json", "vtt"]},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "chunking_strategy": {"type": "string", "description": "accepted; long audio is always cut into 30-second windows"},
    });
    if transcribe {
        fields["language"] = json!({"type": "string", "description": "ISO-639-1 (`en`, `fr`, …)"});
        fields["stream"] = json!({"type": "string", "enum": ["true", "false"], "description": "with json or text"});
        fields["timestamp_granularities[]"] = json!({"type": "array", "items": {"type": "string", "enum": ["segment", "word"]},
            "description": "needs verbose_json"});
    }
    properties(fields)
}

json_schema!(
    /// `POST /v1/audio/transcriptions`; any other field is a 400.
    TranscriptionForm => json!({"type": "object", "required": ["file"], "additionalProperties": false,
        "properties": audio_fields(true)})
);

json_schema!(
    /// `POST /v1/audio/translations` (to English); any other field is a 400.
    TranslationForm => json!({"type": "object", "required": ["file"], "additionalProperties": false,
        "properties": audio_fields(false)})
);
