//! Word timestamps as openai-whisper's `word_timestamps=True` computes them: the decoder
//! re-reads a window's text while the cross-attention scores of the alignment heads are
//! kept; softmax over the window's audio frames, normalised per head, median-filtered
//! (width 7) and averaged, the matrix is aligned to time by dynamic time warping; tokens are
//! grouped into words (on spaces, or on whole characters for languages written without
//! them), punctuation is merged into its word, and over-long words at pauses and segment
//! edges are clipped to the median word length.

use super::model::{AlignmentPass, CrossCache, WhisperModel};
use super::tokenizer::WhisperTokenizer;
use super::transcribe::{Segment, TIME_PRECISION, Word};
use crate::ModelError;

const MEDIAN_FILTER_WIDTH: usize = 7;
const PREPEND_PUNCTUATION: &str = "\"'“¿([{-";
const APPEND_PUNCTUATION: &str = "\"'.。,，!！?？:：”)]}、";
const SENTENCE_END: &str = ".。!！?？";

/// One word as the alignment finds it, in seconds from the window's start.
#[derive(Debug, Clone, PartialEq)]
struct WordTiming {
    word: String,
    tokens: Vec<u32>,
    start: f64,
    end: f64,
    probability: f64,
}

/// Fills `segments[*].words` (all from one window of `num_frames` mel frames) and adjusts
/// the segments' edges to their words, as openai-whisper's `add_word_timestamps`.
/// `sot_sequence` is the window's start (start of transcript, language, task).
pub(crate) fn add_word_timestamps(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    cross: &CrossCache,
    sot_sequence: &[u32],
    segments: &mut [Segment],
    num_frames: usize,
    last_speech_timestamp: &mut f64,
) -> Result<(), ModelError> {
    let Some(first) = segments.first() else {
        return Ok(());
    };
    let eot = tokenizer.special().eot;
    let per_segment: Vec<Vec<u32>> = segments
        .iter()
        .map(|s| s.tokens.iter().copied().filter(|&t| t < eot).collect())
        .collect();
    let text_tokens: Vec<u32> = per_segment.iter().flatten().copied().collect();
    let mut alignment = find_alignment(
        model,
        tokenizer,
        cross,
        sot_sequence,
        &text_tokens,
        num_frames,
    )?;
    let mut durations: Vec<f64> = alignment
        .iter()
        .map(|w| w.end - w.start)
        .filter(|d| *d != 0.0)
        .collect();
    let median = median(&mut durations).min(0.7);
    let max_duration = median * 2.0;
    if !durations.is_empty() {
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                if SENTENCE_END.contains(alignment[i].word.as_str())
                    && !alignment[i].word.is_empty()
                {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if SENTENCE_END.contains(alignment[i - 1].word.as_str())
                    && !alignment[i - 1].word.is_empty()
                {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuation(&mut alignment);

    #[allow(clippy::cast_precision_loss, reason = "frame counts are small")]
    let time_offset = first.seek as f64 * TIME_PRECISION / 2.0;
    let round2 = |t: f64| (t * 100.0).round() / 100.0;
    let mut index = 0;
    for (segment, tokens) in segments.iter_mut().zip(&per_segment) {
        let mut saved = 0;
        let mut words: Vec<Word> = Vec::new();
        while index < alignment.len() && saved < tokens.len() {
            let timing = &alignment[index];
            if !timing.word.is_empty() {
                words.push(Word {
                    word: timing.word.clone(),
                    start: round2(time_offset + timing.start),
                    end: round2(time_offset + timing.end),
                    probability: timing.probability,
                });
            }
            saved += timing.tokens.len();
            index += 1;
        }
        if let (Some(_), Some(_)) = (words.first(), words.last()) {
            // The first words after a pause are no longer than twice the median.
            let first_long = words[0].end - words[0].start > max_duration;
            let second_long = words.len() > 1 && words[1].end - words[0].start > max_duration * 2.0;
            if words[0].end - *last_speech_timestamp > median * 4.0 && (first_long || second_long) {
                if words.len() > 1 && words[1].end - words[1].start > max_duration {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max_duration);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max_duration).max(0.0);
            }
            // The segment's own timestamps win over an over-long first or last word.
            if segment.start < words[0].end && segment.start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median).min(segment.start).max(0.0);
            } else {
                segment.start = words[0].start;
            }
            let last = words.len() - 1;
            if segment.end > words[last].start && segment.end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median).max(segment.end);
            } else {
                segment.end = words[last].end;
            }
            *last_speech_timestamp = segment.end;
        }
        segment.words = words;
    }
    Ok(())
}

/// The words of `text_tokens` and when each is spoken, from the alignment heads.
fn find_alignment(
    model: &WhisperModel,
    tokenizer: &WhisperTokenizer,
    cross: &CrossCache,
    sot_sequence: &[u32],
    text_tokens: &[u32],
    num_frames: usize,
) -> Result<Vec<WordTiming>, ModelError> {
    if text_tokens.is_empty() {
        return Ok(Vec::new());
    }
    let special = tokenizer.special();
    let mut tokens = sot_sequence.to_vec();
    tokens.push(special.no_timestamps);
    tokens.extend_from_slice(text_tokens);
    tokens.push(special.eot);
    let heads = model.decoding_config().alignment_heads_for(model.dims());
    let AlignmentPass { scores, logits } = model.cross_attention_scores(&tokens, cross, &heads)?;

    // Probability of each text token, over text tokens only.
    let eot = special.eot as usize;
    let probabilities: Vec<f64> = text_tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let row = &logits[sot_sequence.len() + i][..eot];
            let lp = super::decoding::log_softmax(row);
            lp[t as usize].exp()
        })
        .collect();

    let rows = tokens.len();
    let ctx = model.dims().n_audio_ctx;
    let frames = (num_frames / 2).clamp(1, ctx);
    // Mean over heads of the normalised, filtered attention: [rows, frames].
    let mut matrix = vec![0.0f64; rows * frames];
    for head in &scores {
        let mut weights = vec![0.0f64; rows * frames];
        for r in 0..rows {
            let row: Vec<f32> = head[r * ctx..r * ctx + frames].to_vec();
            let lp = super::decoding::log_softmax(&row);
            for (f, v) in lp.into_iter().enumerate() {
                weights[r * frames + f] = v.exp();
            }
        }
        // Standardise each frame's column over the tokens.
        for f in 0..frames {
            #[allow(clippy::cast_precision_loss, reason = "small counts")]
            let n = rows as f64;
            let mean = (0..rows).map(|r| weights[r * frames + f]).sum::<f64>() / n;
            let var = (0..rows)
                .map(|r| (weights[r * frames + f] - mean).powi(2))
                .sum::<f64>()
                / n;
            let std = var.sqrt();
            for r in 0..rows {
                let v = &mut weights[r * frames + f];
                *v = if std > 0.0 { (*v - mean) / std } else { 0.0 };
            }
        }
        for r in 0..rows {
            let filtered =
                median_filter(&weights[r * frames..(r + 1) * frames], MEDIAN_FILTER_WIDTH);
            for (f, v) in filtered.into_iter().enumerate() {
                #[allow(clippy::cast_precision_loss, reason = "few heads")]
                let share = v / scores.len() as f64;
                matrix[r * frames + f] += share;
            }
        }
    }
    // Rows from <|notimestamps|> to the last text token.
    let first_row = sot_sequence.len();
    let n = rows - 1 - first_row;
    let cost: Vec<f64> = matrix[first_row * frames..(first_row + n) * frames]
        .iter()
        .map(|v| -v)
        .collect();
    let path = dtw(&cost, n, frames);

    let mut with_eot = text_tokens.to_vec();
    with_eot.push(special.eot);
    let (words, word_tokens) = split_words(tokenizer, &with_eot);
    if word_tokens.len() <= 1 {
        return Ok(Vec::new());
    }
    // Time at which each text row is first reached.
    let mut jump_times = Vec::with_capacity(n);
    let mut previous = usize::MAX;
    for &(i, j) in &path {
        if i != previous {
            #[allow(clippy::cast_precision_loss, reason = "frame indices are small")]
            jump_times.push(j as f64 * TIME_PRECISION);
            previous = i;
        }
    }
    let mut boundaries = vec![0usize];
    for t in &word_tokens[..word_tokens.len() - 1] {
        boundaries.push(boundaries.last().copied().unwrap_or(0) + t.len());
    }
    let mut timings = Vec::with_capacity(words.len() - 1);
    for w in 0..boundaries.len() - 1 {
        let (from, to) = (boundaries[w], boundaries[w + 1]);
        let start = jump_times.get(from).copied().unwrap_or(0.0);
        let end = jump_times.get(to).copied().unwrap_or(start);
        let probs = &probabilities[from.min(probabilities.len())..to.min(probabilities.len())];
        #[allow(clippy::cast_precision_loss, reason = "few tokens per word")]
        let probability = if probs.is_empty() {
            0.0
        } else {
            probs.iter().sum::<f64>() / probs.len() as f64
        };
        timings.push(WordTiming {
            word: words[w].clone(),
            tokens: word_tokens[w].clone(),
            start,
            end,
            probability,
        });
    }
    Ok(timings)
}

/// Dynamic time warping of the `n × m` cost matrix (row-major): the monotonic path of least
/// total cost from (0, 0) to (n − 1, m − 1), as `(row, column)` pairs in order.
fn dtw(cost: &[f64], n: usize, m: usize) -> Vec<(usize, usize)> {
    let width = m + 1;
    let mut total = vec![f64::INFINITY; (n + 1) * width];
    let mut trace = vec![u8::MAX; (n + 1) * width];
    total[0] = 0.0;
    for j in 1..=m {
        for i in 1..=n {
            let diagonal = total[(i - 1) * width + j - 1];
            let up = total[(i - 1) * width + j];
            let left = total[i * width + j - 1];
            let (best, step) = if diagonal < up && diagonal < left {
                (diagonal, 0)
            } else if up < diagonal && up < left {
                (up, 1)
            } else {
                (left, 2)
            };
            total[i * width + j] = cost[(i - 1) * m + j - 1] + best;
            trace[i * width + j] = step;
        }
    }
    trace[..=m].fill(2);
    for i in 0..=n {
        trace[i * width] = 1;
    }
    let (mut i, mut j) = (n, m);
    let mut path = Vec::with_capacity(n + m);
    while i > 0 || j > 0 {
        path.push((i.saturating_sub(1), j.saturating_sub(1)));
        match trace[i * width + j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    path.reverse();
    path
}

/// Median over a sliding window of `width` (odd), reflect-padded at the edges.
fn median_filter(values: &[f64], width: usize) -> Vec<f64> {
    let half = width / 2;
    let n = values.len();
    if n <= half {
        return values.to_vec();
    }
    let at = |k: isize| -> f64 {
        let last = n as isize - 1;
        let mut k = k;
        while k < 0 || k > last {
            k = if k < 0 { -k } else { 2 * last - k };
        }
        values[k as usize]
    };
    let mut window = vec![0.0; width];
    (0..n)
        .map(|i| {
            for (w, slot) in window.iter_mut().enumerate() {
                *slot = at(i as isize + w as isize - half as isize);
            }
            window.sort_by(f64::total_cmp);
            window[half]
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Groups tokens into words: first into whole characters (a byte-level token may be half of
/// one), then, for languages written with spaces, pieces without a leading space or that
/// are not punctuation join the word before. The end of text is its own (empty) word.
fn split_words(tokenizer: &WhisperTokenizer, tokens: &[u32]) -> (Vec<String>, Vec<Vec<u32>>) {
    let eot = tokenizer.special().eot;
    let mut pieces: Vec<(String, Vec<u32>)> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for &token in tokens {
        if token >= eot {
            if !current.is_empty() {
                let text = tokenizer.decode(&current).unwrap_or_default();
                pieces.push((text, std::mem::take(&mut current)));
            }
            pieces.push((String::new(), vec![token]));
            continue;
        }
        current.push(token);
        let text = tokenizer.decode(&current).unwrap_or_default();
        if !text.contains('\u{fffd}') {
            pieces.push((text, std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        let text = tokenizer.decode(&current).unwrap_or_default();
        pieces.push((text, current));
    }
    let mut words: Vec<String> = Vec::new();
    let mut word_tokens: Vec<Vec<u32>> = Vec::new();
    for (text, piece) in pieces {
        let special = piece[0] >= eot;
        let starts_word =
            text.starts_with(' ') || is_punctuation(text.trim()) || words.is_empty() || special;
        if starts_word {
            words.push(text);
            word_tokens.push(piece);
        } else if let (Some(word), Some(tokens)) = (words.last_mut(), word_tokens.last_mut()) {
            word.push_str(&text);
            tokens.extend(piece);
        }
    }
    (words, word_tokens)
}

/// One ASCII punctuation character (Python's `string.punctuation`).
fn is_punctuation(text: &str) -> bool {
    let mut chars = text.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_punctuation())
}

/// Opening punctuation joins the word after it; closing punctuation the word before.
fn merge_punctuation(alignment: &mut [WordTiming]) {
    if alignment.len() < 2 {
        return;
    }
    let mut j = alignment.len() - 1;
    for i in (0..alignment.len() - 1).rev() {
        let previous = alignment[i].word.clone();
        if previous.starts_with(' ') && contains_word(PREPEND_PUNCTUATION, previous.trim()) {
            let moved = std::mem::take(&mut alignment[i].tokens);
            alignment[i].word.clear();
            let following = &mut alignment[j];
            following.word = previous + &following.word;
            let mut tokens = moved;
            tokens.extend(std::mem::take(&mut following.tokens));
            following.tokens = tokens;
        } else {
            j = i;
        }
    }
    let mut i = 0;
    for j in 1..alignment.len() {
        let following = alignment[j].word.clone();
        if !alignment[i].word.ends_with(' ') && contains_word(APPEND_PUNCTUATION, &following) {
            let moved = std::mem::take(&mut alignment[j].tokens);
            alignment[j].word.clear();
            let previous = &mut alignment[i];
            previous.word.push_str(&following);
            previous.tokens.extend(moved);
        } else {
            i = j;
        }
    }
}

/// Python's `word in marks` for a string of marks: `word` is a non-empty substring.
fn contains_word(marks: &str, word: &str) -> bool {
    !word.is_empty() && marks.contains(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtw_follows_the_cheap_diagonal() {
        // 3 rows × 6 columns: row r is cheap at columns 2r and 2r + 1.
        let (n, m) = (3, 6);
        let cost: Vec<f64> = (0..n * m)
            .map(|k| if (k % m) / 2 == k / m { -1.0 } else { 1.0 })
            .collect();
        let path = dtw(&cost, n, m);
        assert_eq!(path.first(), Some(&(0, 0)));
        assert_eq!(path.last(), Some(&(2, 5)));
        let first_column_of = |row| path.iter().find(|(i, _)| *i == row).unwrap().1;
        assert_eq!(
            (first_column_of(0), first_column_of(1), first_column_of(2)),
            (0, 2, 4)
        );
    }

    #[test]
    fn median_filter_removes_a_spike_and_keeps_edges() {
        let values = [1.0, 1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 1.0];
        let filtered = median_filter(&values, 7);
        assert!(filtered.iter().all(|v| *v == 1.0), "{filtered:?}");
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 4.0]), 2.5);
    }

    #[test]
    fn punctuation_joins_its_word() {
        let timing = |word: &str| WordTiming {
            word: word.into(),
            tokens: vec![1],
            start: 0.0,
            end: 0.0,
            probability: 1.0,
        };
        let mut words = vec![
            timing(" \""),
            timing("Hello"),
            timing(","),
            timing(" world"),
            timing("."),
        ];
        merge_punctuation(&mut words);
        let texts: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(texts, vec!["", " \"Hello,", "", " world.", ""]);
        assert_eq!(words[1].tokens.len(), 3);
    }
}
