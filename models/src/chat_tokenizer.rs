//! The tokenizer of a Hugging Face chat checkpoint: `tokenizer.json` for the text, with the
//! special tokens, stop ids and chat template from `tokenizer_config.json` (or
//! `chat_template.jinja`), `generation_config.json` and `config.json`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::ModelError;
use crate::json::read_json;

/// `tokenizer_config.json`, the fields that matter for generation.
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    bos_token: Option<Value>,
    eos_token: Option<Value>,
    /// A string, or a list of `{name, template}` (the `default` one is used).
    chat_template: Option<Value>,
}

/// `eos_token_id` in `generation_config.json` or `config.json`: one id or several.
#[derive(Debug, Default, Deserialize)]
struct EosIds {
    #[serde(default)]
    eos_token_id: Option<Value>,
}

/// A chat model's tokenizer with its specials and template.
pub struct ChatTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    bos: Option<String>,
    eos: Option<String>,
    stop: Vec<u32>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

/// A special token written as a string or as `{"content": ...}` (an `AddedToken`).
fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn ids_of(value: Option<&Value>) -> Vec<u32> {
    match value {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .into_iter()
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A SentencePiece piece's bytes: `<0xAB>` is that byte, `▁` a space.
fn sentencepiece_bytes(piece: &str) -> Option<Vec<u8>> {
    if let Some(hex) = piece
        .strip_prefix("<0x")
        .and_then(|rest| rest.strip_suffix('>'))
        .filter(|hex| hex.len() == 2)
    {
        return u8::from_str_radix(hex, 16).ok().map(|b| vec![b]);
    }
    Some(piece.replace('\u{2581}', " ").into_bytes())
}

impl ChatTokenizer {
    /// Loads the tokenizer of the checkpoint folder `dir`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(ModelError::MissingFile { path });
        }
        let tokenizer_error = |reason: String| ModelError::Tokenizer {
            path: path.clone(),
            reason,
        };
        let mut inner = Tokenizer::from_file(&path).map_err(|e| tokenizer_error(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| tokenizer_error(e.to_string()))?;
        let optional_json = |name: &str| -> Result<Option<Value>, ModelError> {
            let file = dir.join(name);
            if file.is_file() {
                read_json(&file).map(Some)
            } else {
                Ok(None)
            }
        };
        let config: TokenizerConfig = match optional_json("tokenizer_config.json")? {
            Some(value) => serde_json::from_value(value).map_err(|e| ModelError::Config {
                path: dir.join("tokenizer_config.json"),
                field: ".".into(),
                reason: e.to_string(),
            })?,
            None => TokenizerConfig::default(),
        };
        let chat_template = match config.chat_template {
            Some(Value::String(s)) => Some(s),
            Some(Value::Array(items)) => items
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| items.first())
                .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
            _ => None,
        };
        let chat_template = match chat_template {
            Some(t) => Some(t),
            None => {
                let file = dir.join("chat_template.jinja");
                file.is_file()
                    .then(|| {
                        std::fs::read_to_string(&file).map_err(|e| crate::json::io_error(&file, e))
                    })
                    .transpose()?
            }
        };
        let bos = token_text(config.bos_token.as_ref());
        let eos = token_text(config.eos_token.as_ref());
        let mut stop: Vec<u32> = eos.iter().filter_map(|t| inner.token_to_id(t)).collect();
        for file in ["generation_config.json", "config.json"] {
            if let Some(value) = optional_json(file)? {
                let ids: EosIds = serde_json::from_value(value).unwrap_or_default();
                stop.extend(ids_of(ids.eos_token_id.as_ref()));
            }
        }
        stop.sort_unstable();
        stop.dedup();
        Ok(Self {
            inner,
            path,
            bos,
            eos,
            stop,
            chat_template,
        })
    }

    /// Token ids of `text`; `add_special` adds what the tokenizer's post-processor adds (BOS
    /// for Llama tokenizers, nothing for Qwen's).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .inner
            .encode(text, add_special)
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`; special tokens are left out when `skip_special` is true.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| ModelError::Tokenize(e.to_string()))
    }

    /// Tokens the tokenizer knows, special ones included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The BOS token's text (`bos_token`), for templates.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_deref()
    }

    /// The EOS token's text (`eos_token`), for templates.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_deref()
    }

    /// Ids that end generation: `eos_token` and every `eos_token_id` of
    /// `generation_config.json` and `config.json`.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop
    }

    /// The bytes each token id stands for, for a grammar engine's token trie: special tokens
    /// as `0xFF` followed by their text (they match no text), byte-level BPE pieces
    /// (GPT-2, Llama 3, Qwen) through GPT-2's byte table, SentencePiece pieces with `▁` as a
    /// space and `<0xAB>` as that byte. Ids without a token are empty.
    pub fn token_bytes(&self) -> Vec<Vec<u8>> {
        let byte_level = matches!(
            self.inner.get_decoder(),
            Some(tokenizers::DecoderWrapper::ByteLevel(_))
        );
        let mut words = vec![Vec::new(); self.inner.get_vocab_size(true)];
        for (piece, id) in self.inner.get_vocab(false) {
            let bytes = if byte_level {
                piece.chars().map(crate::gguf::unicode_to_byte).collect()
            } else {
                sentencepiece_bytes(&piece)
            };
            if let (Some(slot), Some(bytes)) = (words.get_mut(id as usize), bytes) {
                *slot = bytes;
            }
        }
        for (id, added) in self.inner.get_added_tokens_decoder() {
            if let Some(slot) = words.get_mut(id as usize) {
                let mut bytes = Vec::with_capacity(added.content.len() + 1);
                if added.special {
                    bytes.push(0xFF);
                }
                bytes.extend_from_slice(added.content.as_bytes());
                *slot = bytes;
            }
        }
        words
    }

    /// The Jinja chat template, if the checkpoint has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
}
