//! Transcribing a whole recording as openai-whisper's `transcribe` does: 30-second windows
//! over the log-mel spectrogram, each decoded with the temperature fallback, cut into
//! segments at timestamp pairs, and the next window starting at the last complete segment
//! (so nothing is lost at a window's edge); previous text conditions the next window.
//!
//! A [`Transcription`] is a job that advances one window at a time, so a server can encode
//! the current windows of several jobs in one batch ([`Transcription::window`]) and then
//! decode each ([`Transcription::advance`]).

use rand::Rng;

use super::alignment::add_word_timestamps;
use super::config::WhisperDims;
use super::decoding::{WindowOptions, WindowResult, decode_window, log_softmax};
use super::languages::language_name;
use super::mel::{HOP_LENGTH, LogMel, SAMPLE_RATE};
use super::model::{CrossCache, WhisperModel};
use super::tokenizer::{Task, WhisperTokenizer};
use crate::ModelError;

/// Mel frames per encoder position (the second convolution's stride).
const INPUT_STRIDE: usize = 2;
/// Seconds per timestamp step.
pub const TIME_PRECISION: f64 = 0.02;
#[allow(clippy::cast_precision_loss, reason = "constants")]
const FRAMES_PER_SECOND: f64 = SAMPLE_RATE as f64 / HOP_LENGTH as f64;

/// What a transcription is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// Transcribe, or translate into English.
    pub task: Task,
    /// ISO 639-1 code; `None` detects it (multilingual models) or means English.
    pub language: Option<String>,
    /// The first temperature; on failure it rises by 0.2 up to 1.0.
    pub temperature: f32,
    /// Text that precedes the audio (names, spelling, style).
    pub prompt: Option<String>,
    /// Word start and end times from cross-attention.
    pub word_timestamps: bool,
    /// Feed each window's text to the next.
    pub condition_on_previous_text: bool,
    /// Retry hotter above this compression ratio (2.4).
    pub compression_ratio_threshold: Option<f64>,
    /// Retry hotter below this average log-probability (−1).
    pub logprob_threshold: Option<f64>,
    /// A window is silent above this no-speech probability, when its log-probability is low
    /// too (0.6).
    pub no_speech_threshold: Option<f64>,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self {
            task: Task::Transcribe,
            language: None,
            temperature: 0.0,
            prompt: None,
            word_timestamps: false,
            condition_on_previous_text: true,
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
        }
    }
}

/// A word and when it is spoken.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word with its leading space and punctuation.
    pub word: String,
    /// Seconds from the start of the audio.
    pub start: f64,
    /// Seconds from the start of the audio.
    pub end: f64,
    /// Mean probability of its tokens.
    pub probability: f64,
}

/// A stretch of text between two timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Index in the transcript.
    pub id: usize,
    /// Mel frame the window it came from started at.
    pub seek: usize,
    /// Seconds.
    pub start: f64,
    /// Seconds.
    pub end: f64,
    /// Its text, with the leading space Whisper writes.
    pub text: String,
    /// Its tokens, timestamps included.
    pub tokens: Vec<u32>,
    /// Temperature of the window's accepted decoding.
    pub temperature: f32,
    /// Of the window.
    pub avg_logprob: f64,
    /// Of the window.
    pub compression_ratio: f64,
    /// Of the window.
    pub no_speech_prob: f64,
    /// With word timestamps on.
    pub words: Vec<Word>,
}

/// The finished transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The task.
    pub task: Task,
    /// ISO 639-1 code of the spoken language (given, detected, or `en`).
    pub language: String,
    /// Seconds of audio.
    pub duration: f64,
    /// All the text.
    pub text: String,
    /// Segments in order.
    pub segments: Vec<Segment>,
}

impl Transcript {
    /// The language's English name (`english`), as the OpenAI API reports it.
    pub fn language_name(&self) -> &str {
        language_name(&self.language).unwrap_or(&self.language)
    }
}

/// One recording being transcribed.
#[derive(Debug)]
pub struct Transcription {
    mel: LogMel,
    content_frames: usize,
    seek: usize,
    options: TranscribeOptions,
    language: Option<(String, u32)>,
    initial_prompt_len: usize,
    all_tokens: Vec<u32>,
    prompt_reset_since: usize,
    segments: Vec<Segment>,
    last_speech_timestamp: f64,
}

impl Transcription {
    /// Starts a job on `mel`, the log-mel spectrogram of the audio with 30 s of silence
    /// appended (`MelSpectrogram::compute(samples, 480_000)`). Checks the language and task
    /// against the model's `dims`.
    pub fn new(
        dims: &WhisperDims,
        tokenizer: &WhisperTokenizer,
        mel: LogMel,
        options: TranscribeOptions,
    ) -> Result<Self, ModelError> {
        if mel.n_mels != dims.n_mels {
            return Err(ModelError::InvalidInput(format!(
                "{} mel bins, the model reads {}",
                mel.n_mels, dims.n_mels
            )));
        }
        let multilingual = dims.is_multilingual();
        if !multilingual && options.task == Task::Translate {
            return Err(ModelError::InvalidInput(
                "this model is English-only: it cannot translate (use a multilingual Whisper)"
                    .into(),
            ));
        }
        let language = match options.language.as_deref() {
            None => None,
            Some(code) if !multilingual => {
                if code != "en" {
                    return Err(ModelError::InvalidInput(format!(
                        "this model is English-only: language `{code}` is not available"
                    )));
                }
                None
            }
            Some(code) => {
                let token = tokenizer.language_token(code).ok_or_else(|| {
                    ModelError::InvalidInput(format!(
                        "language `{code}` is not one this model knows"
                    ))
                })?;
                Some((code.to_owned(), token))
            }
        };
        let initial_prompt = match options.prompt.as_deref().map(str::trim) {
            Some(prompt) if !prompt.is_empty() => tokenizer.encode(&format!(" {prompt}"))?,
            _ => Vec::new(),
        };
        let content_frames = mel.n_frames.saturating_sub(dims.n_frames());
        Ok(Self {
            mel,
            content_frames,
            seek: 0,
            options,
            language,
            initial_prompt_len: initial_prompt.len(),
            all_tokens: initial_prompt,
            prompt_reset_since: 0,
            segments: Vec::new(),
            last_speech_timestamp: 0.0,
        })
    }

    /// Whether every window is decoded.
    pub fn is_done(&self) -> bool {
        self.seek >= self.content_frames
    }

    /// Seconds of audio.
    pub fn duration(&self) -> f64 {
        #[allow(clippy::cast_precision_loss, reason = "frame counts are small")]
        let frames = self.content_frames as f64;
        frames / FRAMES_PER_SECOND
    }

    /// Seconds decoded so far.
    pub fn progress(&self) -> f64 {
        #[allow(clippy::cast_precision_loss, reason = "frame counts are small")]
        let frames = self.seek.min(self.content_frames) as f64;
        frames / FRAMES_PER_SECOND
    }

    /// The current window's log-mel values (`n_mels` × 3000, row-major, zero-padded past the
    /// audio as openai-whisper's `pad_or_trim` does), or `None` when done.
    pub fn window(&self, model: &WhisperModel) -> Option<Vec<f32>> {
        if self.is_done() {
            return None;
        }
        let frames = model.dims().n_frames();
        let size = self.segment_size(frames);
        let mut window = vec![0.0f32; self.mel.n_mels * frames];
        for m in 0..self.mel.n_mels {
            let row = &self.mel.values[m * self.mel.n_frames..(m + 1) * self.mel.n_frames];
            window[m * frames..m * frames + size]
                .copy_from_slice(&row[self.seek..self.seek + size]);
        }
        Some(window)
    }

    fn segment_size(&self, frames: usize) -> usize {
        frames.min(self.content_frames - self.seek)
    }

    /// Decodes the current window (its cross-attention cache from [`Self::window`]'s
    /// features), moves on, and returns the new segments.
    pub fn advance(
        &mut self,
        model: &WhisperModel,
        tokenizer: &WhisperTokenizer,
        cross: &CrossCache,
        rng: &mut impl Rng,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<Segment>, ModelError> {
        if self.is_done() {
            return Ok(Vec::new());
        }
        if self.language.is_none() && model.dims().is_multilingual() {
            self.language = Some(detect_language(model, tokenizer, cross)?);
        }
        let frames = model.dims().n_frames();
        let segment_size = self.segment_size(frames);
        #[allow(clippy::cast_precision_loss, reason = "frame counts are small")]
        let (time_offset, segment_duration) = (
            self.seek as f64 / FRAMES_PER_SECOND,
            segment_size as f64 / FRAMES_PER_SECOND,
        );
        let result = self.decode_with_fallback(model, tokenizer, cross, rng, cancelled)?;

        if let Some(threshold) = self.options.no_speech_threshold {
            let silent = result.no_speech_prob > threshold
                && !self
                    .options
                    .logprob_threshold
                    .is_some_and(|lp| result.avg_logprob > lp);
            if silent {
                self.seek += segment_size;
                return Ok(Vec::new());
            }
        }

        let previous_seek = self.seek;
        let tokens = &result.tokens;
        let is_ts = |t: u32| tokenizer.is_timestamp(t);
        let ts_begin = tokenizer.special().timestamp_begin;
        let position = |t: u32| f64::from(t - ts_begin) * TIME_PRECISION;
        let single_timestamp_ending = tokens.len() >= 2
            && !is_ts(tokens[tokens.len() - 2])
            && is_ts(tokens[tokens.len() - 1]);
        // Ends of segments: indices after consecutive timestamp pairs.
        let mut slices: Vec<usize> = (1..tokens.len())
            .filter(|&i| is_ts(tokens[i - 1]) && is_ts(tokens[i]))
            .collect();
        let mut pieces: Vec<(f64, f64, Vec<u32>)> = Vec::new();
        if slices.is_empty() {
            let mut duration = segment_duration;
            if let Some(&last) = tokens.iter().rev().find(|&&t| is_ts(t))
                && last != ts_begin
            {
                duration = position(last);
            }
            pieces.push((time_offset, time_offset + duration, tokens.clone()));
            self.seek += segment_size;
        } else {
            if single_timestamp_ending {
                slices.push(tokens.len());
            }
            let mut last_slice = 0;
            for &slice in &slices {
                let part = &tokens[last_slice..slice];
                pieces.push((
                    time_offset + position(part[0]),
                    time_offset + position(part[part.len() - 1]),
                    part.to_vec(),
                ));
                last_slice = slice;
            }
            if single_timestamp_ending {
                self.seek += segment_size;
            } else {
                let last_timestamp = tokens[last_slice - 1] - ts_begin;
                self.seek += last_timestamp as usize * INPUT_STRIDE;
            }
        }
        let mut current: Vec<Segment> = pieces
            .into_iter()
            .map(|(start, end, tokens)| {
                Ok(Segment {
                    id: 0,
                    seek: previous_seek,
                    start,
                    end,
                    text: tokenizer.decode(&tokens)?,
                    tokens,
                    temperature: result.temperature,
                    avg_logprob: result.avg_logprob,
                    compression_ratio: result.compression_ratio,
                    no_speech_prob: result.no_speech_prob,
                    words: Vec::new(),
                })
            })
            .collect::<Result<_, ModelError>>()?;

        if self.options.word_timestamps {
            add_word_timestamps(
                model,
                tokenizer,
                cross,
                &self.initial_tokens_for_alignment(model, tokenizer),
                &mut current,
                segment_size,
                &mut self.last_speech_timestamp,
            )?;
            if !single_timestamp_ending
                && let Some(last_end) = current
                    .iter()
                    .rev()
                    .find_map(|s| s.words.last())
                    .map(|w| w.end)
                && last_end > time_offset
            {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "positive frame counts"
                )]
                let frame = (last_end * FRAMES_PER_SECOND).round() as usize;
                self.seek = frame.max(previous_seek + 1);
            }
        }

        // An instantaneous or empty segment carries nothing.
        current.retain(|s| s.start != s.end && !s.text.trim().is_empty());
        for segment in &mut current {
            segment.id = self.segments.len();
            self.all_tokens.extend_from_slice(&segment.tokens);
            self.segments.push(segment.clone());
        }
        if !self.options.condition_on_previous_text || result.temperature > 0.5 {
            self.prompt_reset_since = self.all_tokens.len();
        }
        Ok(current)
    }

    /// The sequence a window starts with, as word alignment reads it (no previous text).
    fn initial_tokens_for_alignment(
        &self,
        model: &WhisperModel,
        tokenizer: &WhisperTokenizer,
    ) -> Vec<u32> {
        super::decoding::initial_tokens(model, tokenizer, &self.window_options(0.0, Vec::new())).0
    }

    fn window_options(&self, temperature: f32, prompt: Vec<u32>) -> WindowOptions {
        WindowOptions {
            task: self.options.task,
            language: self.language.as_ref().map(|(_, token)| *token),
            temperature,
            without_timestamps: false,
            prompt,
            max_initial_timestamp: Some(50),
        }
    }

    fn decode_with_fallback(
        &self,
        model: &WhisperModel,
        tokenizer: &WhisperTokenizer,
        cross: &CrossCache,
        rng: &mut impl Rng,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<WindowResult, ModelError> {
        let prompt = self.all_tokens[self.prompt_reset_since..].to_vec();
        let o = &self.options;
        let mut temperature = o.temperature.clamp(0.0, 1.0);
        loop {
            let options = self.window_options(temperature, prompt.clone());
            let result = decode_window(model, tokenizer, cross, &options, rng, cancelled)?;
            let too_repetitive = o
                .compression_ratio_threshold
                .is_some_and(|max| result.compression_ratio > max);
            let too_unlikely = o
                .logprob_threshold
                .is_some_and(|min| result.avg_logprob < min);
            let silence = o
                .no_speech_threshold
                .is_some_and(|max| result.no_speech_prob > max)
                && too_unlikely;
            let next = temperature + 0.2;
            if !(too_repetitive || too_unlikely) || silence || next > 1.0 + 1e-6 {
                return Ok(result);
            }
            tracing::debug!(
                temperature,
                compression_ratio = result.compression_ratio,
                avg_logprob = result.avg_logprob,
                "window failed its thresholds: decoding hotter"
            );
            temperature = next;
        }
    }

    /// The transcript so far (all of it once [`Self::is_done`]).
    pub fn finish(self, tokenizer: &WhisperTokenizer) -> Result<Transcript, ModelError> {
        let text_tokens: Vec<u32> = self.all_tokens[self.initial_prompt_len..].to_vec();
        let duration = self.duration();
        Ok(Transcript {
            task: self.options.task,
            language: self
                .language
                .map_or_else(|| "en".to_owned(), |(code, _)| code),
            duration,
            text: tokenizer.decode(&text_tokens)?.trim().to_owned(),
            segments: self.segments,
        })
    }
}

/// The spoken language of a window: the likeliest language token after
/// `<|startoftranscript|>`. Returns its code and token.
pub fn detect_language(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    cross: &CrossCache,
) -> Result<(String, u32), ModelError> {
    let mut cache = model.new_cache();
    let logits = model.decode(&[tokenizer.special().sot], &mut cache, cross, &[0])?;
    let logprobs = log_softmax(&logits[0]);
    let (code, token) = tokenizer
        .languages()
        .iter()
        .copied()
        .filter(|(_, id)| (*id as usize) < logprobs.len())
        .max_by(|a, b| logprobs[a.1 as usize].total_cmp(&logprobs[b.1 as usize]))
        .ok_or_else(|| ModelError::InvalidInput("the vocabulary has no language tokens".into()))?;
    Ok((code.to_owned(), token))
}
