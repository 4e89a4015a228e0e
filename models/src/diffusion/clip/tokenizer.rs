//! [`ClipTokenizer`]: CLIP's byte-level BPE from a diffusers `tokenizer/` folder
//! (`vocab.json`, `merges.txt`, and when present `tokenizer_config.json` and
//! `special_tokens_map.json`), built as a `tokenizers::Tokenizer` that splits text as
//! transformers' `CLIPTokenizer(Fast)` does, and the fixed-length rows
//! (`<|startoftext|> … <|endoftext|>`, padded) a Stable Diffusion text encoder takes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::ModelError;
use crate::json::{read_file, read_json};

/// CLIP's word pattern (transformers' `CLIPTokenizer.pat`). Text is lowercased before it
/// runs, so the case-insensitive flag only keeps the pattern verbatim.
const WORD_PATTERN: &str = r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The context of every released CLIP, used when `tokenizer_config.json` does not say.
const DEFAULT_MAX_LENGTH: usize = 77;

/// Above this, `model_max_length` is transformers' "no limit" sentinel (1e30), not a length.
const UNSET_MAX_LENGTH: f64 = 1e9;

/// transformers' slow tokenizer reads at most this many merges (CLIP's 49408 tokens less
/// the 512 byte tokens and the two special ones); the fast one, converted from it, the same.
const MAX_MERGES: usize = 49152 - 256 - 2;

/// A special token as `tokenizer_config.json` and `special_tokens_map.json` write it: a plain
/// string, or a serialised `AddedToken` (`{"content": "<|endoftext|>", "lstrip": false, …}`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TokenSpec {
    Plain(String),
    Added { content: String },
}

impl TokenSpec {
    fn content(self) -> String {
        match self {
            Self::Plain(content) | Self::Added { content } => content,
        }
    }
}

/// The fields read from either JSON file (the special-tokens map has no length).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenizerFile {
    model_max_length: Option<f64>,
    bos_token: Option<TokenSpec>,
    eos_token: Option<TokenSpec>,
    unk_token: Option<TokenSpec>,
    pad_token: Option<TokenSpec>,
}

impl TokenizerFile {
    /// `path`, or every field unset when the file is absent (transformers' defaults apply).
    fn read_optional(path: &Path) -> Result<Self, ModelError> {
        if path.is_file() {
            read_json(path)
        } else {
            Ok(Self::default())
        }
    }
}

/// CLIP's tokenizer: prompt text to fixed-length id rows.
pub struct ClipTokenizer {
    inner: Tokenizer,
    max_length: usize,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    dir: PathBuf,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.inner.get_vocab_size(false))
            .field("max_length", &self.max_length)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl ClipTokenizer {
    /// Loads a diffusers `tokenizer/` folder.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let start = std::time::Instant::now();
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let vocab: HashMap<String, u32> = read_json(&vocab_path)?;
        let merges = read_merges(&merges_path)?;
        let config_path = dir.join("tokenizer_config.json");
        let config = TokenizerFile::read_optional(&config_path)?;
        // transformers lets the special-tokens map override the config's tokens.
        let map = TokenizerFile::read_optional(&dir.join("special_tokens_map.json"))?;
        let pick = |mapped: Option<TokenSpec>, configured: Option<TokenSpec>, default: &str| {
            mapped
                .or(configured)
                .map_or_else(|| default.to_owned(), TokenSpec::content)
        };
        let bos = pick(map.bos_token, config.bos_token, "<|startoftext|>");
        let eos = pick(map.eos_token, config.eos_token, "<|endoftext|>");
        let unk = pick(map.unk_token, config.unk_token, "<|endoftext|>");
        let pad = pick(map.pad_token, config.pad_token, "<|endoftext|>");
        let max_length = max_length(&config_path, config.model_max_length)?;

        let id_of = |role: &str, token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| ModelError::Tokenizer {
                    path: vocab_path.clone(),
                    reason: format!("the {role} token `{token}` is not in the vocabulary"),
                })
        };
        let (bos_id, eos_id, pad_id) = (
            id_of("bos", &bos)?,
            id_of("eos", &eos)?,
            id_of("pad", &pad)?,
        );
        id_of("unk", &unk)?;

        let vocab_size = vocab.len();
        let inner = build(
            vocab.into_iter().collect(),
            merges,
            &unk,
            [bos, eos, unk.clone(), pad],
        )
        .map_err(|reason| ModelError::Tokenizer {
            path: merges_path.clone(),
            reason,
        })?;
        tracing::debug!(dir = %dir.display(), vocab_size, max_length,
            elapsed_ms = start.elapsed().as_millis(), "loaded CLIP tokenizer");
        Ok(Self {
            inner,
            max_length,
            bos_id,
            eos_id,
            pad_id,
            dir: dir.to_path_buf(),
        })
    }

    /// The ids of `text` as the text encoder takes them: `[bos] + tokens + [eos]`, the tokens
    /// cut to [`Self::max_length`]` - 2` (as diffusers truncates a long prompt), padded to
    /// [`Self::max_length`] with the pad token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        let tokens = encoding.get_ids();
        let room = self.max_length - 2;
        if tokens.len() > room {
            tracing::debug!(
                tokens = tokens.len(),
                kept = room,
                "prompt truncated to CLIP's context"
            );
        }
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos_id);
        ids.extend_from_slice(&tokens[..tokens.len().min(room)]);
        ids.push(self.eos_id);
        ids.resize(self.max_length, self.pad_id);
        Ok(ids)
    }

    /// The length of every row [`Self::encode`] returns (`model_max_length`, 77).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// `<|startoftext|>`'s id.
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// `<|endoftext|>`'s id.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The id rows are padded with (`<|endoftext|>` for SD 1.x, `!` for SD 2.x).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}

/// `model_max_length`, or CLIP's 77 when the config leaves it unset.
fn max_length(path: &Path, configured: Option<f64>) -> Result<usize, ModelError> {
    match configured {
        None => Ok(DEFAULT_MAX_LENGTH),
        Some(value) if value > UNSET_MAX_LENGTH => {
            tracing::warn!(path = %path.display(), "model_max_length unset: using CLIP's 77");
            Ok(DEFAULT_MAX_LENGTH)
        }
        // Bos and eos take two places; a prompt needs at least one more.
        Some(value) if value.fract() == 0.0 && value >= 3.0 => Ok(value as usize),
        Some(value) => Err(ModelError::Config {
            path: path.to_path_buf(),
            field: "model_max_length".to_owned(),
            reason: format!("{value} is not a whole number of at least 3"),
        }),
    }
}

/// The merges of `merges.txt`, by rank: `#version` header skipped, blank lines ignored.
fn read_merges(path: &Path) -> Result<Vec<(String, String)>, ModelError> {
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| ModelError::Tokenizer {
        path: path.to_path_buf(),
        reason: format!("not UTF-8: {e}"),
    })?;
    let mut merges = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if (number == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(left), Some(right), None) => merges.push((left.to_owned(), right.to_owned())),
            _ => {
                return Err(ModelError::Tokenizer {
                    path: path.to_path_buf(),
                    reason: format!("line {}: expected two tokens, got `{line}`", number + 1),
                });
            }
        }
    }
    if merges.len() > MAX_MERGES {
        tracing::warn!(path = %path.display(), merges = merges.len(), kept = MAX_MERGES,
            "more merges than CLIP reads: ignoring the rest as transformers does");
        merges.truncate(MAX_MERGES);
    }
    Ok(merges)
}

/// The `tokenizers` pipeline: NFC, whitespace runs to one space, strip, lowercase; CLIP's word
/// split; each word's bytes mapped to GPT-2's printable characters (no second split: the
/// word pattern already did it); BPE with `</w>` ending each word; the special tokens matched
/// in the raw text first, as transformers matches its added tokens.
fn build(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    unk: &str,
    special: [String; 4],
) -> Result<Tokenizer, String> {
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(unk.to_owned())
        .end_of_word_suffix("</w>".to_owned())
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    let whitespace =
        Replace::new(ReplacePattern::Regex(r"\s+".to_owned()), " ").map_err(|e| e.to_string())?;
    tokenizer
        .with_normalizer(Some(Sequence::new(vec![
            NFC.into(),
            whitespace.into(),
            Strip::new(true, true).into(),
            Lowercase.into(),
        ])))
        .map_err(|e| e.to_string())?;
    let words = Split::new(
        SplitPattern::Regex(WORD_PATTERN.to_owned()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(|e| e.to_string())?;
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        words.into(),
        ByteLevel::new(false, false, false).into(),
    ])));
    // All four are special in transformers, so a pad token `!` typed in a prompt is the pad
    // id, not the word `!</w>`.
    tokenizer
        .add_special_tokens(special.map(|token| AddedToken::from(token, true)))
        .map_err(|e| e.to_string())?;
    Ok(tokenizer)
}
