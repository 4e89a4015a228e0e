//! A transcript in each `response_format` the OpenAI audio API has: `json`, `text`, `srt`,
//! `vtt` and `verbose_json` (segments, and words when asked for).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use hearth_models::whisper::{Segment, Task, Transcript};
use serde::Serialize;

/// The formats a transcription or translation can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl ResponseFormat {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "json" => Self::Json,
            "text" => Self::Text,
            "srt" => Self::Srt,
            "vtt" => Self::Vtt,
            "verbose_json" => Self::VerboseJson,
            _ => return None,
        })
    }
}

/// `usage` as OpenAI reports it for audio billed by duration.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DurationUsage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whole seconds, rounded up.
    pub seconds: u64,
}

impl DurationUsage {
    pub fn of(duration: f64) -> Self {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "positive durations"
        )]
        let seconds = duration.ceil().max(0.0) as u64;
        Self {
            kind: "duration",
            seconds,
        }
    }
}

#[derive(Serialize)]
struct JsonBody<'a> {
    text: &'a str,
    usage: DurationUsage,
}

#[derive(Serialize)]
struct VerboseSegment<'a> {
    id: usize,
    seek: usize,
    start: f64,
    end: f64,
    text: &'a str,
    tokens: &'a [u32],
    temperature: f32,
    avg_logprob: f64,
    compression_ratio: f64,
    no_speech_prob: f64,
}

#[derive(Serialize)]
struct VerboseWord<'a> {
    word: &'a str,
    start: f64,
    end: f64,
}

#[derive(Serialize)]
struct VerboseBody<'a> {
    task: &'static str,
    language: &'a str,
    duration: f64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<Vec<VerboseSegment<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<VerboseWord<'a>>>,
    usage: DurationUsage,
}

/// Which timestamps `verbose_json` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granularities {
    pub segment: bool,
    pub word: bool,
}

/// The response body of `transcript` in `format`.
pub fn render(
    transcript: &Transcript,
    format: ResponseFormat,
    granularities: Granularities,
) -> Response {
    let usage = DurationUsage::of(transcript.duration);
    match format {
        ResponseFormat::Json => axum::Json(JsonBody {
            text: &transcript.text,
            usage,
        })
        .into_response(),
        ResponseFormat::Text => plain(
            "text/plain; charset=utf-8",
            format!("{}\n", transcript.text),
        ),
        ResponseFormat::Srt => plain("text/plain; charset=utf-8", srt(&transcript.segments)),
        ResponseFormat::Vtt => plain("text/vtt; charset=utf-8", vtt(&transcript.segments)),
        ResponseFormat::VerboseJson => {
            let round = |t: f64| (t * 100.0).round() / 100.0;
            let segments = granularities.segment.then(|| {
                transcript
                    .segments
                    .iter()
                    .map(|s| VerboseSegment {
                        id: s.id,
                        seek: s.seek,
                        start: round(s.start),
                        end: round(s.end),
                        text: &s.text,
                        tokens: &s.tokens,
                        temperature: s.temperature,
                        avg_logprob: s.avg_logprob,
                        compression_ratio: s.compression_ratio,
                        no_speech_prob: s.no_speech_prob,
                    })
                    .collect()
            });
            let words = granularities.word.then(|| {
                transcript
                    .segments
                    .iter()
                    .flat_map(|s| &s.words)
                    .map(|w| VerboseWord {
                        word: w.word.trim(),
                        start: w.start,
                        end: w.end,
                    })
                    .collect()
            });
            axum::Json(VerboseBody {
                task: match transcript.task {
                    Task::Transcribe => "transcribe",
                    Task::Translate => "translate",
                },
                language: transcript.language_name(),
                duration: round(transcript.duration),
                text: &transcript.text,
                segments,
                words,
                usage,
            })
            .into_response()
        }
    }
}

fn plain(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `HH:MM:SS{marker}mmm`.
fn timestamp(seconds: f64, marker: char) -> String {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive times"
    )]
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}{marker}{ms:03}")
}

/// A cue's text: trimmed, and never a `-->` that would end the cue's timing line.
fn cue_text(segment: &Segment) -> String {
    segment.text.trim().replace("-->", "->")
}

/// SubRip: numbered cues, `,` before the milliseconds.
pub fn srt(segments: &[Segment]) -> String {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{}\n{} --> {}\n{}\n\n",
                i + 1,
                timestamp(s.start, ','),
                timestamp(s.end, ','),
                cue_text(s)
            )
        })
        .collect()
}

/// WebVTT: the header, then cues with `.` before the milliseconds.
pub fn vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in segments {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            cue_text(s)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start: f64, end: f64, text: &str) -> Segment {
        Segment {
            id: 0,
            seek: 0,
            start,
            end,
            text: text.into(),
            tokens: vec![],
            temperature: 0.0,
            avg_logprob: -0.2,
            compression_ratio: 1.1,
            no_speech_prob: 0.01,
            words: vec![],
        }
    }

    #[test]
    fn subtitles_have_their_timing_lines() {
        let segments = [
            segment(0.0, 3.2, " Hello there."),
            segment(3661.5, 3662.004, " a --> b"),
        ];
        assert_eq!(
            srt(&segments),
            "1\n00:00:00,000 --> 00:00:03,200\nHello there.\n\n2\n01:01:01,500 --> 01:01:02,004\na -> b\n\n"
        );
        assert_eq!(
            vtt(&segments[..1]),
            "WEBVTT\n\n00:00:00.000 --> 00:00:03.200\nHello there.\n\n"
        );
    }

    #[test]
    fn usage_rounds_seconds_up() {
        assert_eq!(DurationUsage::of(3.44).seconds, 4);
        assert_eq!(DurationUsage::of(3.0).seconds, 3);
    }
}
