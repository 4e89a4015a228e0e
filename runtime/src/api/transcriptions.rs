//! `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`: the multipart form as
//! the OpenAI SDKs send it, the upload decoded and resampled on a blocking thread, the
//! recording queued on its deployment's Whisper worker, and the transcript answered in the
//! asked-for format, or streamed (`transcript.text.delta` per segment, then one
//! `transcript.text.done`).

use axum::Extension;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use hearth_models::whisper::{Task, TranscribeOptions, Transcript, language_code};
use serde::Serialize;

use super::AppState;
use super::inference::{ModelHeader, admit, header_model, unserved};
use super::openapi_schemas::{TranscriptionForm, TranslationForm};
use super::sse::channel_response;
use super::transcript_formats::{Granularities, ResponseFormat, render};
use super::usage::UsageSink;
use crate::audio::{AudioError, decode_audio, to_mono_16k};
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::engine::{Backend, TranscriptionEngine, TranscriptionEvent};
use crate::error::{ErrorEnvelope, HearthError, Result};

/// OpenAI's upload limit for audio files.
pub const MAX_FILE_BYTES: usize = 25 * 1024 * 1024;

const TRANSCRIPTIONS: &str = "/v1/audio/transcriptions";
const TRANSLATIONS: &str = "/v1/audio/translations";

/// The form fields, as sent.
#[derive(Debug, Default)]
struct AudioForm {
    model: Option<String>,
    file: Option<Vec<u8>>,
    file_name: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    response_format: Option<String>,
    temperature: Option<String>,
    granularities: Vec<String>,
    stream: Option<String>,
}

fn malformed(e: &axum::extract::multipart::MultipartError, state: &AppState) -> HearthError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        HearthError::PayloadTooLarge {
            limit: state.config.max_body_bytes.max(MAX_FILE_BYTES),
        }
    } else {
        HearthError::invalid(format!("malformed multipart body: {}", e.body_text()))
    }
}

async fn read_form(request: Request, state: &AppState, task: Task) -> Result<AudioForm> {
    let mut multipart = Multipart::from_request(request, state).await.map_err(|e| {
        HearthError::invalid(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let mut form = AudioForm::default();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| malformed(&e, state))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            form.file_name = field.file_name().map(str::to_owned);
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| malformed(&e, state))? {
                if bytes.len() + chunk.len() > MAX_FILE_BYTES {
                    return Err(HearthError::FileTooLarge {
                        param: "file",
                        limit: MAX_FILE_BYTES,
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            form.file = Some(bytes);
            continue;
        }
        let text = field
            .text()
            .await
            .map_err(|e| HearthError::invalid_param(name.clone(), e.body_text()))?;
        match (name.as_str(), task) {
            ("model", _) => form.model = Some(text),
            ("language", Task::Transcribe) => form.language = Some(text),
            ("prompt", _) => form.prompt = Some(text),
            ("response_format", _) => form.response_format = Some(text),
            ("temperature", _) => form.temperature = Some(text),
            ("timestamp_granularities[]" | "timestamp_granularities", Task::Transcribe) => {
                form.granularities.push(text);
            }
            ("stream", Task::Transcribe) => form.stream = Some(text),
            // We always cut long audio into 30-second windows; the field is accepted.
            ("chunking_strategy", _) => {}
            (other, _) => {
                return Err(HearthError::invalid_param(
                    other.to_owned(),
                    format!("unknown parameter `{other}` for this endpoint"),
                ));
            }
        }
    }
    Ok(form)
}

/// Validated options of one request.
#[derive(Debug)]
struct Parsed {
    bytes: Vec<u8>,
    extension: Option<String>,
    format: ResponseFormat,
    granularities: Granularities,
    stream: bool,
    options: TranscribeOptions,
}

fn parse(form: AudioForm, task: Task) -> Result<Parsed> {
    let bytes = form
        .file
        .ok_or_else(|| HearthError::invalid_param("file", "you must provide a file"))?;
    let format = match form.response_format.as_deref().map(str::trim) {
        None | Some("") => ResponseFormat::Json,
        Some(value) => ResponseFormat::parse(value).ok_or_else(|| {
            HearthError::invalid_param(
                "response_format",
                format!(
                    "`{value}` is not a response format; use json, text, srt, verbose_json or vtt"
                ),
            )
        })?,
    };
    let mut granularities = Granularities {
        segment: form.granularities.is_empty(),
        word: false,
    };
    for value in &form.granularities {
        match value.trim() {
            "segment" => granularities.segment = true,
            "word" => granularities.word = true,
            other => {
                return Err(HearthError::invalid_param(
                    "timestamp_granularities",
                    format!("`{other}` is not a timestamp granularity; use segment or word"),
                ));
            }
        }
    }
    if !form.granularities.is_empty() && format != ResponseFormat::VerboseJson {
        return Err(HearthError::invalid_param(
            "timestamp_granularities",
            "timestamp_granularities needs response_format verbose_json",
        ));
    }
    let temperature = match form.temperature.as_deref().map(str::trim) {
        None | Some("") => 0.0,
        Some(value) => match value.parse::<f32>() {
            Ok(t) if (0.0..=1.0).contains(&t) => t,
            _ => {
                return Err(HearthError::invalid_param(
                    "temperature",
                    format!("temperature must be a number between 0 and 1; got `{value}`"),
                ));
            }
        },
    };
    let stream = match form.stream.as_deref().map(str::trim) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(HearthError::invalid_param(
                "stream",
                format!("stream must be true or false; got `{other}`"),
            ));
        }
    };
    if stream && !matches!(format, ResponseFormat::Json | ResponseFormat::Text) {
        return Err(HearthError::invalid_param(
            "stream",
            "streaming answers in json or text; srt, vtt and verbose_json come whole",
        ));
    }
    let language = match form.language.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(value) => Some(
            language_code(value)
                .ok_or_else(|| {
                    HearthError::invalid_param(
                        "language",
                        format!("`{value}` is not a language Whisper knows; use an ISO-639-1 code such as en or fr"),
                    )
                })?
                .to_owned(),
        ),
    };
    let extension = form
        .file_name
        .as_deref()
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase());
    Ok(Parsed {
        bytes,
        extension,
        format,
        granularities,
        stream,
        options: TranscribeOptions {
            task,
            language,
            temperature,
            prompt: form.prompt.filter(|p| !p.trim().is_empty()),
            word_timestamps: granularities.word,
            ..TranscribeOptions::default()
        },
    })
}

#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "inference", security(("bearer" = [])),
    request_body(content = TranscriptionForm, content_type = "multipart/form-data"), params(ModelHeader),
    responses(
        (status = 200, description = "The transcript, in the asked-for response_format"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
/// Speech to text (multipart).
pub async fn transcriptions(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    request: Request,
) -> Result<Response> {
    serve(state, identity, request, Task::Transcribe, TRANSCRIPTIONS).await
}

#[utoipa::path(post, path = "/v1/audio/translations", tag = "inference", security(("bearer" = [])),
    request_body(content = TranslationForm, content_type = "multipart/form-data"), params(ModelHeader),
    responses(
        (status = 200, description = "English text, in the asked-for response_format"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
/// Speech in any language to English text (multipart).
pub async fn translations(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    request: Request,
) -> Result<Response> {
    serve(state, identity, request, Task::Translate, TRANSLATIONS).await
}

async fn serve(
    state: AppState,
    identity: Identity,
    request: Request,
    task: Task,
    endpoint: &str,
) -> Result<Response> {
    let from_header = header_model(request.headers())?;
    let form = read_form(request, &state, task).await?;
    let model = match from_header.or_else(|| form.model.clone()) {
        Some(model) if !model.trim().is_empty() => model,
        _ => {
            return Err(HearthError::invalid_param(
                "model",
                "you must provide a model parameter",
            ));
        }
    };
    let deployment = admit(
        &state,
        &identity,
        &model,
        &[ModelKind::Transcription],
        endpoint,
    )?;
    let Some(Backend::Transcription(engine)) = deployment.backend.clone() else {
        return Err(unserved(deployment, endpoint));
    };
    if task == Task::Translate && !engine.is_multilingual() {
        return Err(HearthError::InvalidRequest {
            message: format!(
                "the model `{model}` is English-only and cannot translate; use a multilingual Whisper (a name without `.en`)"
            ),
            param: Some("model".to_owned()),
            code: Some("model_not_supported"),
        });
    }
    let parsed = parse(form, task)?;
    let (format, granularities, stream) = (parsed.format, parsed.granularities, parsed.stream);
    let preparing = engine.clone();
    let transcription = tokio::task::spawn_blocking(move || prepare(&preparing, parsed))
        .await
        .map_err(|e| HearthError::Internal(format!("audio decoding task failed: {e}")))??;
    let events = engine.submit(transcription)?;
    let usage = UsageSink::new(&state, &identity, deployment.name());
    if stream {
        return Ok(stream_response(events, usage));
    }
    let transcript = collect(events).await?;
    usage.record_audio(transcript.duration, token_count(&transcript));
    Ok(render(&transcript, format, granularities))
}

/// Decodes, resamples and checks the upload, then computes its spectrogram.
fn prepare(
    engine: &TranscriptionEngine,
    parsed: Parsed,
) -> Result<hearth_models::whisper::Transcription> {
    let max_seconds = engine.max_audio_seconds();
    let audio = decode_audio(parsed.bytes, parsed.extension.as_deref(), max_seconds).map_err(
        |e| match e {
            AudioError::TooLong { .. } => HearthError::invalid_param(
                "file",
                format!("{e}: this deployment's max_audio_seconds"),
            ),
            other => HearthError::invalid_param("file", other.to_string()),
        },
    )?;
    tracing::debug!(
        container = audio.container,
        channels = audio.channels,
        rate = audio.sample_rate,
        "decoded upload"
    );
    let samples = to_mono_16k(&audio).map_err(|e| HearthError::invalid_param("file", e))?;
    engine.prepare(&samples, parsed.options)
}

fn token_count(transcript: &Transcript) -> u64 {
    transcript
        .segments
        .iter()
        .map(|s| s.tokens.len() as u64)
        .sum()
}

async fn collect(
    mut events: tokio::sync::mpsc::UnboundedReceiver<TranscriptionEvent>,
) -> Result<Transcript> {
    while let Some(event) = events.recv().await {
        match event {
            TranscriptionEvent::Segment(_) => {}
            TranscriptionEvent::Done(transcript) => return Ok(transcript),
            TranscriptionEvent::Failed(message) => return Err(HearthError::Internal(message)),
        }
    }
    Err(HearthError::Internal(
        "the transcription worker dropped a request".to_owned(),
    ))
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: &'a str,
}

#[derive(Serialize)]
struct TextDone<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    usage: TokenUsage,
}

/// The streamed `transcript.text.done`'s usage, in tokens as the SDKs type it: the audio
/// as Whisper's encoder positions (one per 20 ms) and the text tokens written.
#[derive(Serialize)]
struct TokenUsage {
    #[serde(rename = "type")]
    kind: &'static str,
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
    input_token_details: InputDetails,
}

#[derive(Serialize)]
struct InputDetails {
    audio_tokens: u64,
    text_tokens: u64,
}

impl TokenUsage {
    fn of(transcript: &Transcript) -> Self {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "positive durations"
        )]
        let audio_tokens =
            (transcript.duration / hearth_models::whisper::TIME_PRECISION).ceil() as u64;
        let output_tokens = token_count(transcript);
        Self {
            kind: "tokens",
            input_tokens: audio_tokens,
            output_tokens,
            total_tokens: audio_tokens + output_tokens,
            input_token_details: InputDetails {
                audio_tokens,
                text_tokens: 0,
            },
        }
    }
}

/// `transcript.text.delta` for each segment as it is decoded, then `transcript.text.done`.
/// The first delta has no leading space; later ones keep the space Whisper puts between
/// segments, so the joined deltas are the final text.
fn stream_response(
    mut events: tokio::sync::mpsc::UnboundedReceiver<TranscriptionEvent>,
    usage: UsageSink,
) -> Response {
    let (sender, response) = channel_response();
    tokio::spawn(async move {
        let mut first = true;
        while let Some(event) = events.recv().await {
            match event {
                TranscriptionEvent::Segment(segment) => {
                    let text = if first {
                        segment.text.trim_start()
                    } else {
                        segment.text.as_str()
                    };
                    if text.is_empty() {
                        continue;
                    }
                    first = false;
                    let delta = TextDelta {
                        kind: "transcript.text.delta",
                        delta: text,
                    };
                    if !sender.json(&delta).await {
                        return;
                    }
                }
                TranscriptionEvent::Done(transcript) => {
                    usage.record_audio(transcript.duration, token_count(&transcript));
                    let done = TextDone {
                        kind: "transcript.text.done",
                        text: &transcript.text,
                        usage: TokenUsage::of(&transcript),
                    };
                    let _ = sender.json(&done).await;
                    return;
                }
                TranscriptionEvent::Failed(message) => {
                    sender.error(&HearthError::Internal(message)).await;
                    return;
                }
            }
        }
    });
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> AudioForm {
        AudioForm {
            file: Some(vec![1, 2, 3]),
            file_name: Some("talk.MP3".into()),
            ..AudioForm::default()
        }
    }

    #[test]
    fn defaults_are_json_segments_greedy() {
        let parsed = parse(form(), Task::Transcribe).unwrap();
        assert_eq!(parsed.format, ResponseFormat::Json);
        assert_eq!(parsed.extension.as_deref(), Some("mp3"));
        assert!(parsed.granularities.segment && !parsed.granularities.word);
        assert_eq!(parsed.options.temperature, 0.0);
        assert!(!parsed.stream);
    }

    #[test]
    fn bad_fields_name_their_param() {
        let param = |f: AudioForm| match parse(f, Task::Transcribe).unwrap_err() {
            HearthError::InvalidRequest { param, .. } => param,
            other => panic!("{other}"),
        };
        assert_eq!(
            param(AudioForm {
                file: None,
                ..form()
            })
            .as_deref(),
            Some("file")
        );
        let words_as_json = AudioForm {
            granularities: vec!["word".into()],
            ..form()
        };
        assert_eq!(
            param(words_as_json).as_deref(),
            Some("timestamp_granularities")
        );
        let hot = AudioForm {
            temperature: Some("1.5".into()),
            ..form()
        };
        assert_eq!(param(hot).as_deref(), Some("temperature"));
        let klingon = AudioForm {
            language: Some("tlh".into()),
            ..form()
        };
        assert_eq!(param(klingon).as_deref(), Some("language"));
        let srt_stream = AudioForm {
            response_format: Some("srt".into()),
            stream: Some("true".into()),
            ..form()
        };
        assert_eq!(param(srt_stream).as_deref(), Some("stream"));
    }

    #[test]
    fn words_and_languages_by_name_parse() {
        let parsed = parse(
            AudioForm {
                response_format: Some("verbose_json".into()),
                granularities: vec!["word".into(), "segment".into()],
                language: Some("French".into()),
                ..form()
            },
            Task::Transcribe,
        )
        .unwrap();
        assert!(parsed.granularities.word && parsed.granularities.segment);
        assert!(parsed.options.word_timestamps);
        assert_eq!(parsed.options.language.as_deref(), Some("fr"));
    }
}
