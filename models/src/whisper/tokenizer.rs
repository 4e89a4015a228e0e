//! Whisper's tokenizer: the byte-level BPE of `tokenizer.json` plus the special tokens
//! decoding is steered with (start of transcript, languages, tasks, timestamps), found by
//! name so English-only and multilingual vocabularies both work. Timestamp tokens
//! (`<|0.00|>` … `<|30.00|>`) follow `<|notimestamps|>`; the tokenizer file may not list
//! them, so they are never passed to it.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::languages::LANGUAGES;
use crate::ModelError;

/// What a window is decoded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Text in the spoken language.
    Transcribe,
    /// English text, whatever the spoken language (multilingual models only).
    Translate,
}

/// The special tokens' ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|endoftext|>`.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|startofprev|>`: previous text follows (the prompt).
    pub sot_prev: u32,
    /// `<|transcribe|>`.
    pub transcribe: u32,
    /// `<|translate|>`.
    pub translate: u32,
    /// `<|nospeech|>` (or `<|nocaptions|>` in older vocabularies).
    pub no_speech: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|0.00|>`; every later id is a timestamp, 0.02 s apart.
    pub timestamp_begin: u32,
}

/// `tokenizer.json` and the special tokens.
pub struct WhisperTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    special: SpecialTokens,
    /// `(code, token id)` of every language token, in vocabulary order.
    languages: Vec<(&'static str, u32)>,
    /// The tokens of a lone space (never the first token of a window).
    blank: Vec<u32>,
}

impl std::fmt::Debug for WhisperTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperTokenizer")
            .field("path", &self.path)
            .field("special", &self.special)
            .field("languages", &self.languages.len())
            .finish()
    }
}

impl WhisperTokenizer {
    /// Loads `path` (`tokenizer.json`) and finds the special tokens in it.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let fail = |reason: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            reason,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| fail(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| fail(e.to_string()))?;
        let id = |name: &str| {
            inner
                .token_to_id(name)
                .ok_or_else(|| fail(format!("no `{name}` token: is this a Whisper tokenizer?")))
        };
        let no_timestamps = id("<|notimestamps|>")?;
        let special = SpecialTokens {
            eot: id("<|endoftext|>")?,
            sot: id("<|startoftranscript|>")?,
            sot_prev: id("<|startofprev|>")?,
            transcribe: id("<|transcribe|>")?,
            translate: id("<|translate|>")?,
            no_speech: id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?,
            no_timestamps,
            timestamp_begin: inner.token_to_id("<|0.00|>").unwrap_or(no_timestamps + 1),
        };
        let languages = LANGUAGES
            .iter()
            .filter_map(|(code, _)| {
                inner
                    .token_to_id(&format!("<|{code}|>"))
                    .map(|id| (*code, id))
            })
            .collect();
        let blank = inner
            .encode(" ", false)
            .map_err(|e| fail(e.to_string()))?
            .get_ids()
            .to_vec();
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            special,
            languages,
            blank,
        })
    }

    /// The special tokens.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// `(code, token id)` of the language tokens the vocabulary has.
    pub fn languages(&self) -> &[(&'static str, u32)] {
        &self.languages
    }

    /// The tokens of a lone space.
    pub fn blank(&self) -> &[u32] {
        &self.blank
    }

    /// The token of language `code` (ISO 639-1, `en`), if the vocabulary has it.
    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.languages
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, id)| *id)
    }

    /// Text tokens of `text`, no special tokens added (the file's post-processor would wrap
    /// it in `<|startoftranscript|>` … `<|endoftext|>`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `tokens`, skipping every special and timestamp token.
    pub fn decode(&self, tokens: &[u32]) -> Result<String, ModelError> {
        let text: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| t < self.special.eot)
            .collect();
        self.inner
            .decode(&text, true)
            .map_err(|e| ModelError::Tokenize(e.to_string()))
    }

    /// The text of one token (a word piece, with its leading space), or `None` for special
    /// tokens.
    pub fn piece(&self, token: u32) -> Option<String> {
        if token >= self.special.eot {
            return None;
        }
        self.inner.decode(&[token], true).ok()
    }

    /// Whether `token` is a timestamp.
    pub fn is_timestamp(&self, token: u32) -> bool {
        token >= self.special.timestamp_begin
    }
}
