//! Decoding one 30-second window, as openai-whisper's `DecodingTask` does it with one sample
//! per window: the initial tokens (previous text, start of transcript, language, task), the
//! logit filters (blank and configured token suppression, the timestamp rules), greedy
//! choice at temperature 0 or sampling above it, and the result's average log-probability,
//! compression ratio and no-speech probability.

use std::io::Write;

use rand::Rng;

use super::model::{CrossCache, WhisperModel};
use super::tokenizer::{Task, WhisperTokenizer};
use crate::ModelError;

/// How to decode a window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOptions {
    /// Transcribe or translate.
    pub task: Task,
    /// The language token (multilingual models); `None` for English-only ones.
    pub language: Option<u32>,
    /// 0 for greedy decoding, else the sampling temperature.
    pub temperature: f32,
    /// Text only, no timestamp tokens.
    pub without_timestamps: bool,
    /// Previous text tokens (the prompt, then what earlier windows decoded).
    pub prompt: Vec<u32>,
    /// The latest first timestamp allowed, in timestamp steps (50 = 1 s).
    pub max_initial_timestamp: Option<u32>,
}

/// What one window decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// Sampled tokens (text and timestamps), without the end of text.
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Sum of the chosen tokens' log-probabilities (end of text included).
    pub sum_logprob: f64,
    /// `sum_logprob / (tokens + 1)`.
    pub avg_logprob: f64,
    /// Probability of `<|nospeech|>` right after the start of transcript.
    pub no_speech_prob: f64,
    /// Temperature used.
    pub temperature: f32,
    /// Bytes of the text over bytes of its zlib compression (repetitive text scores high).
    pub compression_ratio: f64,
}

/// The first tokens the decoder reads: `<|startofprev|>` and the prompt's last
/// `n_text_ctx / 2 - 1` tokens when there is one, then the start of transcript, language and
/// task (multilingual models), then `<|notimestamps|>` when timestamps are off. Also returns
/// the index of `<|startoftranscript|>` in it.
pub fn initial_tokens(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    options: &WindowOptions,
) -> (Vec<u32>, usize) {
    let special = tokenizer.special();
    let mut tokens = Vec::new();
    if !options.prompt.is_empty() {
        let keep = model.dims().n_text_ctx / 2 - 1;
        tokens.push(special.sot_prev);
        let from = options.prompt.len().saturating_sub(keep);
        tokens.extend_from_slice(&options.prompt[from..]);
    }
    let sot_index = tokens.len();
    tokens.push(special.sot);
    if model.dims().is_multilingual() {
        if let Some(language) = options.language {
            tokens.push(language);
        }
        tokens.push(match options.task {
            Task::Transcribe => special.transcribe,
            Task::Translate => special.translate,
        });
    }
    if options.without_timestamps {
        tokens.push(special.no_timestamps);
    }
    (tokens, sot_index)
}

/// Decodes the window whose cross-attention cache is `cross`. `cancelled` is polled between
/// tokens; when it returns true decoding stops with [`ModelError::Cancelled`].
pub fn decode_window(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    cross: &CrossCache,
    options: &WindowOptions,
    rng: &mut impl Rng,
    cancelled: &dyn Fn() -> bool,
) -> Result<WindowResult, ModelError> {
    let special = tokenizer.special();
    let (initial, sot_index) = initial_tokens(model, tokenizer, options);
    let sample_begin = initial.len();
    let n_ctx = model.dims().n_text_ctx;
    let sample_len = n_ctx / 2;
    let config = model.decoding_config();
    let mut cache = model.new_cache();
    let mut logits = model.decode(&initial, &mut cache, cross, &[sot_index, sample_begin - 1])?;
    let no_speech_prob = {
        let at_sot = log_softmax(&logits[0]);
        at_sot
            .get(special.no_speech as usize)
            .map_or(0.0, |lp| lp.exp())
    };
    let mut logits = logits.swap_remove(1);
    let mut sampled: Vec<u32> = Vec::new();
    let mut sum_logprob = 0.0f64;
    loop {
        if cancelled() {
            return Err(ModelError::Cancelled);
        }
        apply_filters(&mut logits, &sampled, tokenizer, config, options);
        let logprobs = log_softmax(&logits);
        let next = if options.temperature > 0.0 {
            sample(&logits, options.temperature, rng)
        } else {
            argmax(&logits)
        };
        sum_logprob += logprobs[next as usize];
        if next == special.eot {
            break;
        }
        sampled.push(next);
        if sampled.len() >= sample_len || sample_begin + sampled.len() >= n_ctx {
            break;
        }
        logits = model
            .decode(&[next], &mut cache, cross, &[0])?
            .swap_remove(0);
    }
    let text = tokenizer.decode(&sampled)?.trim().to_owned();
    #[allow(clippy::cast_precision_loss, reason = "token counts are small")]
    let avg_logprob = sum_logprob / (sampled.len() + 1) as f64;
    Ok(WindowResult {
        compression_ratio: compression_ratio(&text),
        text,
        tokens: sampled,
        sum_logprob,
        avg_logprob,
        no_speech_prob,
        temperature: options.temperature,
    })
}

/// openai-whisper's logit filters for the next token after `sampled`.
fn apply_filters(
    logits: &mut [f32],
    sampled: &[u32],
    tokenizer: &WhisperTokenizer,
    config: &super::config::DecodingConfig,
    options: &WindowOptions,
) {
    let special = tokenizer.special();
    let ban = |token: u32, logits: &mut [f32]| {
        if let Some(l) = logits.get_mut(token as usize) {
            *l = f32::NEG_INFINITY;
        }
    };
    // SuppressBlank: no blank and no end of text as the first token.
    if sampled.is_empty() {
        for &token in config.suppress_at_begin.iter().chain(tokenizer.blank()) {
            ban(token, logits);
        }
        ban(special.eot, logits);
    }
    // SuppressTokens: the configured non-speech symbols and special tokens, and always the
    // task, start and previous-text tokens.
    for &token in &config.suppress_tokens {
        ban(token, logits);
    }
    for token in [
        special.transcribe,
        special.translate,
        special.sot,
        special.sot_prev,
        special.no_speech,
    ] {
        ban(token, logits);
    }
    let ts = special.timestamp_begin as usize;
    if options.without_timestamps {
        if ts < logits.len() {
            logits[ts..].fill(f32::NEG_INFINITY);
        }
        return;
    }
    // ApplyTimestampRules.
    ban(special.no_timestamps, logits);
    let eot = special.eot as usize;
    let last_was_timestamp = sampled.last().is_some_and(|&t| tokenizer.is_timestamp(t));
    let penultimate_was_timestamp =
        sampled.len() < 2 || tokenizer.is_timestamp(sampled[sampled.len() - 2]);
    if last_was_timestamp {
        if penultimate_was_timestamp {
            // A timestamp pair just closed: text must follow.
            logits[ts..].fill(f32::NEG_INFINITY);
        } else {
            // A segment's end: another timestamp or the end of text.
            logits[..eot].fill(f32::NEG_INFINITY);
        }
    }
    if let Some(&last) = sampled.iter().rev().find(|&&t| tokenizer.is_timestamp(t)) {
        // Timestamps never decrease, and each segment has a nonzero length.
        let floor = if last_was_timestamp && !penultimate_was_timestamp {
            last
        } else {
            last + 1
        };
        let floor = (floor as usize).min(logits.len());
        logits[ts..floor].fill(f32::NEG_INFINITY);
    }
    if sampled.is_empty() {
        // The first token is a timestamp, no later than max_initial_timestamp.
        logits[..ts].fill(f32::NEG_INFINITY);
        if let Some(max) = options.max_initial_timestamp {
            let last_allowed = ts + max as usize;
            if last_allowed + 1 < logits.len() {
                logits[last_allowed + 1..].fill(f32::NEG_INFINITY);
            }
        }
    }
    // When the timestamps together are likelier than any text token, take a timestamp.
    let logprobs = log_softmax(logits);
    let timestamp_mass = log_sum_exp(&logprobs[ts..]);
    let best_text = logprobs[..ts]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    if timestamp_mass > best_text {
        logits[..ts].fill(f32::NEG_INFINITY);
    }
}

/// Log-softmax in f64 (the sums over 51k logits need it).
pub(crate) fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return vec![f64::NEG_INFINITY; logits.len()];
    }
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&l| l as f64 - log_sum).collect()
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// A token drawn from `softmax(logits / temperature)`.
fn sample(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> u32 {
    let scaled: Vec<f32> = logits.iter().map(|l| l / temperature).collect();
    let probs: Vec<f64> = log_softmax(&scaled).into_iter().map(f64::exp).collect();
    let mut draw: f64 = rng.random::<f64>();
    for (i, p) in probs.iter().enumerate() {
        draw -= p;
        if draw <= 0.0 && *p > 0.0 {
            return i as u32;
        }
    }
    argmax(logits)
}

/// `len(text) / len(zlib.compress(text))` in bytes, as openai-whisper measures repetition
/// (default compression level; a different deflate implementation may differ by a few
/// bytes, which moves the ratio by well under the 2.4 threshold's margin on real text).
pub fn compression_ratio(text: &str) -> f64 {
    if text.is_empty() {
        return 0.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
        .map_or(text.len(), |c| c.len());
    #[allow(clippy::cast_precision_loss, reason = "texts are far below 2^52 bytes")]
    let ratio = text.len() as f64 / compressed as f64;
    ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitive_text_compresses_well() {
        let plain = compression_ratio("The quick brown fox jumps over the lazy dog.");
        let repeated = compression_ratio(&"over and over ".repeat(40));
        assert!(plain < 1.5, "{plain}");
        assert!(repeated > 2.4, "{repeated}");
        assert_eq!(compression_ratio(""), 0.0);
    }

    #[test]
    fn log_softmax_sums_to_one_and_keeps_bans() {
        let lp = log_softmax(&[1.0, 2.0, f32::NEG_INFINITY, 0.5]);
        let total: f64 = lp.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert_eq!(lp[2], f64::NEG_INFINITY);
        assert!((log_sum_exp(&lp) - 0.0).abs() < 1e-12);
    }

    #[test]
    fn sampling_never_draws_a_banned_token() {
        let mut rng = rand::rng();
        let logits = [0.0, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
        for _ in 0..200 {
            let t = sample(&logits, 1.0, &mut rng);
            assert!(t == 0 || t == 2, "{t}");
        }
    }
}
