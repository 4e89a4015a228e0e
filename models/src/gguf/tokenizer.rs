//! The tokenizer stored in GGUF metadata, rebuilt as a Hugging Face `tokenizers::Tokenizer`.
//!
//! Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with the pre-tokenizers
//! llama.cpp calls `smollm`/`starcoder`/`refact` (each digit on its own, then GPT-2's
//! byte-level split), `gpt2`/`default` (GPT-2's split only) and `qwen2` (Qwen2/2.5/3: NFC, then
//! [`QWEN2_SPLIT`] as an isolating split, then byte-level mapping without GPT-2's regex, as
//! Qwen's own `tokenizer.json` does). Read from the metadata: `tokenizer.ggml.tokens`
//! (vocabulary, id = index), `tokenizer.ggml.merges` (`"a b"` pairs in rank order),
//! `tokenizer.ggml.token_type`, `tokenizer.ggml.{bos,eos,eot,unknown,padding}_token_id`,
//! `tokenizer.ggml.add_bos_token` and `tokenizer.chat_template`.
//!
//! Token types (llama.cpp's): 3, *control* (`<|im_start|>`), becomes a special token matched
//! before BPE and left out of decoded text when asked; 4, *user-defined* (Qwen's
//! `<tool_call>`), becomes an added token matched whole but not special: it is ordinary text
//! the model writes, so it decodes into the text. A user-defined token's text is stored as is,
//! not in byte-level form.

use std::path::PathBuf;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::GgufFile;
use crate::ModelError;

/// `tokenizer.ggml.token_type` of control tokens (`<|im_start|>`).
const CONTROL: i64 = 3;
/// `tokenizer.ggml.token_type` of user-defined tokens (`<tool_call>`).
const USER_DEFINED: i64 = 4;

/// Qwen2's pre-tokenizer split (llama.cpp's `qwen2`, Qwen's `tokenizer.json`): GPT-2's, but
/// case-insensitive contractions, a letter run may take one leading non-letter, digits one at a
/// time, and punctuation runs keep their trailing newlines.
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How text is cut into words before BPE (`tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizer {
    /// GPT-2's byte-level split.
    Gpt2,
    /// Each digit apart, then GPT-2's split (`smollm`, `starcoder`, `refact`).
    DigitsThenGpt2,
    /// [`QWEN2_SPLIT`] after NFC (`qwen2`).
    Qwen2,
}

/// A byte-level BPE tokenizer built from GGUF metadata.
pub struct GgufTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    /// The bytes each token stands for (empty for control tokens), for streaming decode.
    token_bytes: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    unknown: Option<u32>,
    padding: Option<u32>,
    stop: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.token_bytes.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

/// GPT-2's byte-to-character table, inverted: the byte each vocabulary character stands for.
pub(crate) fn unicode_to_byte(c: char) -> Option<u8> {
    let printable = |b: u32| matches!(b, 33..=126 | 161..=172 | 174..=255);
    let code = u32::from(c);
    if code < 256 && printable(code) {
        return u8::try_from(code).ok();
    }
    // The other 68 bytes map, in order, to U+0100 onwards.
    let index = code.checked_sub(256)?;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(index as usize)
        .and_then(|b| u8::try_from(b).ok())
}

impl GgufTokenizer {
    /// Builds the tokenizer from `file`'s metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let path = file.path().to_path_buf();
        let model = file.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(file.metadata_error(
                "tokenizer.ggml.model",
                format!("`{model}` is not supported (only `gpt2`, byte-level BPE)"),
            ));
        }
        let pre_tokenizer = match file
            .metadata()
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
        {
            Some("smollm" | "starcoder" | "refact") => PreTokenizer::DigitsThenGpt2,
            None | Some("gpt2" | "default") => PreTokenizer::Gpt2,
            Some("qwen2") => PreTokenizer::Qwen2,
            Some(other) => {
                return Err(file.metadata_error(
                    "tokenizer.ggml.pre",
                    format!("pre-tokenizer `{other}` is not supported (smollm, starcoder, refact, gpt2, qwen2 are)"),
                ));
            }
        };
        let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
        let merges = file.get_str_array("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match file.metadata().get("tokenizer.ggml.token_type") {
            Some(value) => value
                .as_array()
                .map(|items| items.iter().map(|v| v.as_i64().unwrap_or(1)).collect())
                .ok_or_else(|| {
                    file.metadata_error("tokenizer.ggml.token_type", "not an array".into())
                })?,
            None => vec![1; tokens.len()],
        };
        let is_control = |id: usize| types.get(id) == Some(&CONTROL);
        let is_user_defined = |id: usize| types.get(id) == Some(&USER_DEFINED);

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| ((*t).to_string(), id as u32))
            .collect();
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, merge)| {
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        file.metadata_error(
                            "tokenizer.ggml.merges",
                            format!("entry {i} `{merge}` is not two tokens"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tokenizer_error = |reason: String| ModelError::Tokenizer {
            path: path.clone(),
            reason,
        };
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| tokenizer_error(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        match pre_tokenizer {
            PreTokenizer::Gpt2 | PreTokenizer::DigitsThenGpt2 => {
                let mut pre: Vec<PreTokenizerWrapper> = Vec::new();
                if pre_tokenizer == PreTokenizer::DigitsThenGpt2 {
                    pre.push(Digits::new(true).into());
                }
                pre.push(ByteLevel::new(false, true, true).into());
                inner.with_pre_tokenizer(Some(Sequence::new(pre)));
            }
            PreTokenizer::Qwen2 => {
                // Qwen's tokenizer.json normalises to NFC; llama.cpp does not. NFC is what the
                // model was trained on, so text in another form gets the trained ids here.
                inner
                    .with_normalizer(Some(NFC))
                    .map_err(|e| tokenizer_error(e.to_string()))?;
                let split = Split::new(
                    SplitPattern::Regex(QWEN2_SPLIT.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| tokenizer_error(format!("the qwen2 split: {e}")))?;
                // The split did the word boundaries: byte-level mapping only, no GPT-2 regex.
                let pre: Vec<PreTokenizerWrapper> =
                    vec![split.into(), ByteLevel::new(false, false, false).into()];
                inner.with_pre_tokenizer(Some(Sequence::new(pre)));
            }
        }
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = (0..tokens.len())
            .filter(|&id| is_control(id))
            .map(|id| AddedToken::from(tokens[id].to_string(), true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| tokenizer_error(e.to_string()))?;
        // Matched on the raw text, as Qwen's tokenizer.json has them (`normalized: false`).
        let user_defined: Vec<AddedToken> = (0..tokens.len())
            .filter(|&id| is_user_defined(id))
            .map(|id| AddedToken::from(tokens[id].to_string(), false).normalized(false))
            .collect();
        inner
            .add_tokens(user_defined)
            .map_err(|e| tokenizer_error(e.to_string()))?;

        let token_bytes = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| {
                if is_control(id) {
                    return Ok(Vec::new());
                }
                if is_user_defined(id) {
                    return Ok(token.as_bytes().to_vec());
                }
                token
                    .chars()
                    .map(unicode_to_byte)
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| {
                        file.metadata_error(
                            "tokenizer.ggml.tokens",
                            format!("token {id} `{token}` is not byte-level BPE text"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let id = |key: &str| -> Result<Option<u32>, ModelError> {
            match file.metadata().get(key) {
                None => Ok(None),
                Some(value) => value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|&v| (v as usize) < tokens.len())
                    .map(Some)
                    .ok_or_else(|| file.metadata_error(key, format!("{value} is not a token id"))),
            }
        };
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        let mut stop: Vec<u32> = eos.into_iter().chain(eot).collect();
        stop.dedup();
        let add_bos = file
            .metadata()
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(Self {
            inner,
            token_bytes,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos,
            unknown: id("tokenizer.ggml.unknown_token_id")?,
            padding: id("tokenizer.ggml.padding_token_id")?,
            stop,
            add_bos,
            chat_template: file
                .metadata()
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            path,
        })
    }

    /// Token ids of `text`. Control tokens written in the text (`<|im_start|>`) become their
    /// ids; with `add_special`, the BOS id is prepended when the file asks for it
    /// (`tokenizer.ggml.add_bos_token`; SmolLM2 does not).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        let bos = self.bos.filter(|_| add_special && self.add_bos);
        Ok(bos
            .into_iter()
            .chain(encoding.get_ids().iter().copied())
            .collect())
    }

    /// The text of `ids`; control tokens are left out when `skip_special` is true.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| ModelError::Tokenize(e.to_string()))
    }

    /// The bytes token `id` stands for (empty for control tokens; a user-defined token's own
    /// UTF-8 text), `None` for an unknown id.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.token_bytes.get(id as usize).map(Vec::as_slice)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// `tokenizer.ggml.bos_token_id`.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// `tokenizer.ggml.eos_token_id`.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// `tokenizer.ggml.unknown_token_id`.
    pub fn unknown_id(&self) -> Option<u32> {
        self.unknown
    }

    /// `tokenizer.ggml.padding_token_id`.
    pub fn padding_id(&self) -> Option<u32> {
        self.padding
    }

    /// Ids that end generation: EOS and, where the file has one, end-of-turn.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}
