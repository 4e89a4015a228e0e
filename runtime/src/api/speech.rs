//! `POST /v1/audio/speech`: text spoken by the deployment's Piper voice. The text is split
//! into sentences and phonemized on a blocking thread, the sentences are queued on the
//! voice's worker, and each sentence's audio is resampled to 24 kHz, encoded and sent as soon
//! as it is ready: a chunked body in the asked-for format, or server-sent events
//! (`speech.audio.delta` with base64 audio, then `speech.audio.done` with usage). A client
//! that disconnects stops synthesis before the next sentence.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hearth_models::vits::SynthesisOptions;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;
use utoipa::ToSchema;

use super::AppState;
use super::extract::from_value;
use super::inference::{ModelHeader, resolve_json, unserved};
use super::openapi_schemas::{SpeechFormat, Voice};
use super::sse::channel_response;
use super::usage::UsageSink;
use crate::audio::{AudioFormat, Encoder, OUTPUT_RATE, resample_mono};
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::engine::{Backend, SpeechEngine, SpeechEvent};
use crate::error::{ErrorEnvelope, HearthError, Result};

const ENDPOINT: &str = "/v1/audio/speech";
/// OpenAI's limit on `input`.
pub const MAX_INPUT_CHARS: usize = 4096;
/// OpenAI's built-in voice names: each maps to a configured voice, by default the first.
pub const OPENAI_VOICES: [&str; 11] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
];

/// `voice`: a name, or (newer SDKs) an object naming a custom voice by id.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum VoiceParam {
    Name(String),
    Custom { id: String },
}

/// The request body; any other field is a 400.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav"}))]
pub struct SpeechRequest {
    /// Required; the `X-GPUStack-Model` header may name the model instead (it wins).
    #[allow(dead_code, reason = "resolved from the raw body before this parse")]
    model: String,
    /// The text, 1 to 4096 characters, not blank.
    #[schema(min_length = 1, max_length = 4096)]
    input: String,
    #[schema(value_type = Voice)]
    voice: VoiceParam,
    /// Style prompts need an instruction-following voice; Piper voices have none, so it is
    /// accepted and ignored.
    #[serde(default)]
    #[allow(dead_code, reason = "accepted and ignored, as documented")]
    instructions: Option<String>,
    #[serde(default)]
    #[schema(value_type = SpeechFormat)]
    response_format: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0.25, maximum = 4.0)]
    speed: Option<f64>,
    /// `audio` (default): the encoded audio, chunked; `sse`: `speech.audio.delta` events.
    #[serde(default)]
    #[schema(value_type = Option<StreamFormat>)]
    stream_format: Option<String>,
}

/// How speech is streamed.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "describes `stream_format` for the OpenAPI document"
)]
#[schema(rename_all = "lowercase")]
pub enum StreamFormat {
    Audio,
    Sse,
}

/// The speaker id `voice` names: a speaker of the voice (name or id), a configured alias,
/// or one of OpenAI's names (the configured one, else the first speaker).
fn speaker_of(
    voice: &str,
    engine: &SpeechEngine,
    aliases: &BTreeMap<String, String>,
) -> Result<usize> {
    let voice = voice.trim();
    if let Some(id) = engine.speaker(voice) {
        return Ok(id);
    }
    // The deployment checked its table at load: every target is a speaker.
    if let Some(id) = aliases.get(voice).and_then(|target| engine.speaker(target)) {
        return Ok(id);
    }
    let speakers = engine.speakers();
    if OPENAI_VOICES.contains(&voice) {
        return Ok(speakers.values().copied().min().unwrap_or(0));
    }
    let mut known: Vec<String> = OPENAI_VOICES.iter().map(|v| (*v).to_owned()).collect();
    known.extend(aliases.keys().cloned());
    known.extend(speakers.keys().filter(|k| !k.is_empty()).cloned());
    Err(HearthError::invalid_param(
        "voice",
        format!(
            "`{voice}` is not a voice of this model; use one of {}",
            known.join(", ")
        ),
    ))
}

fn format_of(value: Option<&str>) -> Result<AudioFormat> {
    let supported = || {
        AudioFormat::SUPPORTED
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match value.map(str::trim) {
        None | Some("") => Ok(AudioFormat::Mp3),
        Some(value) => match AudioFormat::parse(value) {
            Some(format) if AudioFormat::SUPPORTED.contains(&format) => Ok(format),
            Some(_) => Err(HearthError::invalid_param(
                "response_format",
                format!(
                    "this build has no `{value}` encoder; use one of {}",
                    supported()
                ),
            )),
            None => Err(HearthError::invalid_param(
                "response_format",
                format!(
                    "`{value}` is not a response format; use one of {}",
                    supported()
                ),
            )),
        },
    }
}

#[utoipa::path(post, path = "/v1/audio/speech", tag = "inference", security(("bearer" = [])),
    request_body = SpeechRequest, params(ModelHeader),
    responses(
        (status = 200, description = "The audio, in the asked-for response_format, streamed as it is made"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
/// Text to speech.
pub async fn speech(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    request: Request,
) -> Result<Response> {
    let resolved = resolve_json(&state, &identity, request, &[ModelKind::Speech], ENDPOINT).await?;
    let deployment = resolved.deployment;
    let Some(Backend::Speech(engine)) = deployment.backend.clone() else {
        return Err(unserved(deployment, ENDPOINT));
    };
    let request: SpeechRequest = from_value(resolved.body)?;
    let characters = request.input.chars().count();
    if request.input.trim().is_empty() || characters > MAX_INPUT_CHARS {
        return Err(HearthError::invalid_param(
            "input",
            format!("input must be 1 to {MAX_INPUT_CHARS} characters; got {characters}"),
        ));
    }
    let voice = match &request.voice {
        VoiceParam::Name(name) | VoiceParam::Custom { id: name } => name.clone(),
    };
    let speaker = speaker_of(&voice, &engine, &deployment.config.voices)?;
    let speed = request.speed.unwrap_or(1.0);
    if !(0.25..=4.0).contains(&speed) {
        return Err(HearthError::invalid_param(
            "speed",
            format!("speed must be between 0.25 and 4.0; got {speed}"),
        ));
    }
    let format = format_of(request.response_format.as_deref())?;
    let sse = match request.stream_format.as_deref().map(str::trim) {
        None | Some("" | "audio") => false,
        Some("sse") => true,
        Some(other) => {
            return Err(HearthError::invalid_param(
                "stream_format",
                format!("`{other}` is not a stream format; use audio or sse"),
            ));
        }
    };
    let mut scales = engine.default_scales();
    #[allow(clippy::cast_possible_truncation, reason = "speed is in [0.25, 4]")]
    let speed = speed as f32;
    scales.length_scale /= speed;
    let phonemizing = engine.clone();
    let input = request.input;
    let sentences = tokio::task::spawn_blocking(move || phonemizing.phonemize(&input))
        .await
        .map_err(|e| HearthError::Internal(format!("phonemizer task failed: {e}")))??;
    tracing::debug!(sentences = sentences.len(), characters, "phonemized");
    let ids: Vec<Vec<i64>> = sentences.into_iter().map(|s| s.ids).collect();
    let events = engine.submit(
        ids,
        SynthesisOptions {
            scales,
            speaker: Some(speaker),
        },
    )?;
    let usage = UsageSink::new(&state, &identity, deployment.name());
    let stream = Stream {
        events,
        encoder: Some(Encoder::new(format).map_err(HearthError::Internal)?),
        sample_rate: engine.sample_rate(),
        usage,
        characters: characters as u64,
        samples: 0,
    };
    Ok(if sse {
        stream.sse()
    } else {
        stream.body(format)
    })
}

/// One request's audio on its way out.
struct Stream {
    events: UnboundedReceiver<SpeechEvent>,
    /// Out only while a chunk is being encoded on a blocking thread.
    encoder: Option<Encoder>,
    sample_rate: u32,
    usage: UsageSink,
    characters: u64,
    /// 24 kHz samples sent.
    samples: u64,
}

impl Stream {
    /// The next encoded chunk; `Ok(None)` at the end (after the encoder's last bytes).
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        match self.events.recv().await {
            Some(SpeechEvent::Audio(samples)) => {
                let rate = self.sample_rate;
                let mut encoder = self
                    .encoder
                    .take()
                    .ok_or_else(|| HearthError::Internal("the audio encoder was lost".into()))?;
                // Resampling and encoding are CPU work: off the async threads.
                let (encoder, result) = tokio::task::spawn_blocking(move || {
                    let result = resample_mono(&samples, rate, OUTPUT_RATE)
                        .and_then(|audio| encoder.push(&audio).map(|bytes| (bytes, audio.len())));
                    (encoder, result)
                })
                .await
                .map_err(|e| HearthError::Internal(format!("encoding task failed: {e}")))?;
                self.encoder = Some(encoder);
                let (bytes, produced) = result.map_err(HearthError::Internal)?;
                self.samples += produced as u64;
                Ok(Some(bytes))
            }
            Some(SpeechEvent::Done) => {
                let tail = match self.encoder.as_mut() {
                    Some(encoder) => encoder.finish().map_err(HearthError::Internal)?,
                    None => Vec::new(),
                };
                let seconds = self.samples as f64 / f64::from(OUTPUT_RATE);
                self.usage.record_speech(self.characters, seconds);
                // Nothing follows Done: the next call ends the stream.
                self.events.close();
                Ok(Some(tail))
            }
            Some(SpeechEvent::Failed(message)) => Err(HearthError::Internal(message)),
            None => Ok(None),
        }
    }

    /// The audio as a chunked body; an error after the first byte ends the body early.
    fn body(self, format: AudioFormat) -> Response {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<std::result::Result<Vec<u8>, std::io::Error>>(8);
        tokio::spawn(async move {
            let mut stream = self;
            loop {
                match stream.next().await {
                    Ok(Some(bytes)) => {
                        if !bytes.is_empty() && tx.send(Ok(bytes)).await.is_err() {
                            // The client left: dropping the events channel stops the worker.
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "speech failed mid-stream");
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
            }
        });
        let body = Body::from_stream(tokio_stream(rx));
        ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
    }

    /// `speech.audio.delta` events, then `speech.audio.done`.
    fn sse(self) -> Response {
        let (sender, response) = channel_response();
        tokio::spawn(async move {
            let mut stream = self;
            loop {
                match stream.next().await {
                    Ok(Some(bytes)) if !bytes.is_empty() => {
                        let delta = AudioDelta {
                            kind: "speech.audio.delta",
                            audio: base64::engine::general_purpose::STANDARD.encode(&bytes),
                        };
                        if !sender.json(&delta).await {
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        #[allow(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            reason = "seconds of audio"
                        )]
                        let audio_tokens =
                            (stream.samples as f64 / f64::from(OUTPUT_RATE) / 0.02).ceil() as u64;
                        let done = AudioDone {
                            kind: "speech.audio.done",
                            usage: SpeechUsage {
                                input_tokens: stream.characters,
                                output_tokens: audio_tokens,
                                total_tokens: stream.characters + audio_tokens,
                            },
                        };
                        let _ = sender.json(&done).await;
                        return;
                    }
                    Err(e) => {
                        sender.error(&e).await;
                        return;
                    }
                }
            }
        });
        response
    }
}

fn tokio_stream(
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = std::result::Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[derive(Serialize)]
struct AudioDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    audio: String,
}

#[derive(Serialize)]
struct AudioDone {
    #[serde(rename = "type")]
    kind: &'static str,
    usage: SpeechUsage,
}

/// The `speech.audio.done` usage: input characters as input tokens (Piper has no text
/// tokenizer), audio in 20 ms units as output tokens.
#[derive(Serialize)]
struct SpeechUsage {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_default_to_mp3_and_unknown_ones_list_the_supported() {
        assert_eq!(format_of(None).unwrap(), AudioFormat::Mp3);
        assert_eq!(format_of(Some("wav")).unwrap(), AudioFormat::Wav);
        let HearthError::InvalidRequest { param, message, .. } =
            format_of(Some("aac")).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(param.as_deref(), Some("response_format"));
        assert!(message.contains("mp3, opus, flac, wav, pcm"), "{message}");
        assert!(format_of(Some("ogg")).is_err());
    }
}
