//! A Whisper model's shape ([`WhisperDims`], what openai-whisper calls `ModelDimensions`) and
//! its decoding metadata ([`DecodingConfig`]: suppressed tokens, alignment heads), read from a
//! CTranslate2 folder's `config.json` or a Hugging Face folder's `config.json` and
//! `generation_config.json`.

use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::json::read_json;

/// The sizes of every Whisper from tiny to large-v3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperDims {
    /// Mel bins of the input (80, or 128 for large-v3).
    pub n_mels: usize,
    /// Encoder positions (1500: 30 s at 50 per second after the stride-2 convolution).
    pub n_audio_ctx: usize,
    /// Model width.
    pub n_state: usize,
    /// Encoder attention heads.
    pub n_audio_head: usize,
    /// Encoder blocks.
    pub n_audio_layer: usize,
    /// Decoder positions (448).
    pub n_text_ctx: usize,
    /// Decoder attention heads.
    pub n_text_head: usize,
    /// Decoder blocks.
    pub n_text_layer: usize,
    /// Vocabulary size: 51864 for English-only models, 51865 or more for multilingual ones.
    pub n_vocab: usize,
}

impl WhisperDims {
    /// Whether the vocabulary has language and task tokens in use (openai-whisper's rule:
    /// the multilingual vocabularies are 51865 and up).
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// Mel frames one window holds (3000: twice the encoder positions).
    pub fn n_frames(&self) -> usize {
        2 * self.n_audio_ctx
    }

    pub(crate) fn check(&self, path: &Path) -> Result<(), ModelError> {
        let bad = |field: &str, reason: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.to_owned(),
            reason,
        };
        for (field, heads, layers) in [
            ("encoder heads", self.n_audio_head, self.n_audio_layer),
            ("decoder heads", self.n_text_head, self.n_text_layer),
        ] {
            if heads == 0 || !self.n_state.is_multiple_of(heads) {
                return Err(bad(
                    field,
                    format!("{heads} heads do not divide the width {}", self.n_state),
                ));
            }
            if layers == 0 {
                return Err(bad(field, "no layers".into()));
            }
        }
        if self.n_mels == 0 || self.n_audio_ctx == 0 || self.n_text_ctx == 0 {
            return Err(bad("dims", format!("empty dimension in {self:?}")));
        }
        Ok(())
    }
}

/// What decoding needs beyond the weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodingConfig {
    /// Tokens never sampled (openai-whisper's `suppress_tokens="-1"` set: symbols that are
    /// not speech, and the special tokens other than timestamps and end-of-text).
    pub suppress_tokens: Vec<u32>,
    /// Tokens not allowed as the first sampled token (a blank and end-of-text).
    pub suppress_at_begin: Vec<u32>,
    /// `(decoder layer, head)` pairs whose cross-attention follows the audio in time: the
    /// word timestamps are read from them. Empty: every head of the last half of the layers.
    pub alignment_heads: Vec<(usize, usize)>,
}

/// CTranslate2's `config.json` beside `model.bin`.
#[derive(Debug, Deserialize)]
struct Ct2Config {
    #[serde(default)]
    alignment_heads: Vec<(usize, usize)>,
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
}

impl DecodingConfig {
    /// From a CTranslate2 folder's `config.json` (written by `ct2-transformers-converter`).
    pub fn from_ct2(path: &Path) -> Result<Self, ModelError> {
        let config: Ct2Config = read_json(path)?;
        Ok(Self {
            suppress_tokens: config.suppress_ids,
            suppress_at_begin: config.suppress_ids_begin,
            alignment_heads: config.alignment_heads,
        })
    }

    /// From a Hugging Face folder's `generation_config.json` (`suppress_tokens`,
    /// `begin_suppress_tokens`, `alignment_heads`); a missing file gives no suppression
    /// beyond the decoder's own rules and the default alignment heads.
    pub fn from_hf(path: &Path) -> Result<Self, ModelError> {
        #[derive(Deserialize)]
        struct Generation {
            #[serde(default)]
            suppress_tokens: Vec<u32>,
            #[serde(default)]
            begin_suppress_tokens: Vec<u32>,
            #[serde(default)]
            alignment_heads: Vec<(usize, usize)>,
        }
        if !path.is_file() {
            tracing::warn!(path = %path.display(), "no generation_config.json: no suppressed tokens, default alignment heads");
            return Ok(Self::default());
        }
        let config: Generation = read_json(path)?;
        Ok(Self {
            suppress_tokens: config.suppress_tokens,
            suppress_at_begin: config.begin_suppress_tokens,
            alignment_heads: config.alignment_heads,
        })
    }

    /// The alignment heads to use with `dims`: the configured ones that exist, else every
    /// head of the last half of the decoder layers (openai-whisper's default).
    pub fn alignment_heads_for(&self, dims: &WhisperDims) -> Vec<(usize, usize)> {
        let valid: Vec<_> = self
            .alignment_heads
            .iter()
            .copied()
            .filter(|&(layer, head)| layer < dims.n_text_layer && head < dims.n_text_head)
            .collect();
        if !valid.is_empty() {
            return valid;
        }
        (dims.n_text_layer / 2..dims.n_text_layer)
            .flat_map(|layer| (0..dims.n_text_head).map(move |head| (layer, head)))
            .collect()
    }
}

/// A Hugging Face `WhisperForConditionalGeneration` `config.json`.
#[derive(Debug, Deserialize)]
struct HfConfig {
    num_mel_bins: usize,
    max_source_positions: usize,
    d_model: usize,
    encoder_attention_heads: usize,
    encoder_layers: usize,
    max_target_positions: usize,
    decoder_attention_heads: usize,
    decoder_layers: usize,
    vocab_size: usize,
    #[serde(default)]
    model_type: Option<String>,
}

/// The dims of a Hugging Face checkpoint (`config.json`).
pub(crate) fn read_hf_dims(path: &Path) -> Result<WhisperDims, ModelError> {
    let config: HfConfig = read_json(path)?;
    if let Some(kind) = config.model_type.as_deref()
        && kind != "whisper"
    {
        return Err(ModelError::Config {
            path: path.to_path_buf(),
            field: "model_type".into(),
            reason: format!("`{kind}` is not a Whisper model (expected \"whisper\")"),
        });
    }
    let dims = WhisperDims {
        n_mels: config.num_mel_bins,
        n_audio_ctx: config.max_source_positions,
        n_state: config.d_model,
        n_audio_head: config.encoder_attention_heads,
        n_audio_layer: config.encoder_layers,
        n_text_ctx: config.max_target_positions,
        n_text_head: config.decoder_attention_heads,
        n_text_layer: config.decoder_layers,
        n_vocab: config.vocab_size,
    };
    dims.check(path)?;
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WhisperDims {
        WhisperDims {
            n_mels: 80,
            n_audio_ctx: 1500,
            n_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_head: 6,
            n_text_layer: 4,
            n_vocab: 51864,
        }
    }

    #[test]
    fn english_only_and_multilingual_vocabularies() {
        assert!(!tiny().is_multilingual());
        assert!(
            WhisperDims {
                n_vocab: 51865,
                ..tiny()
            }
            .is_multilingual()
        );
        assert_eq!(tiny().n_frames(), 3000);
    }

    #[test]
    fn default_alignment_heads_are_the_last_half_of_the_layers() {
        let heads = DecodingConfig::default().alignment_heads_for(&tiny());
        assert_eq!(heads.len(), 12);
        assert_eq!(heads[0], (2, 0));
        let configured = DecodingConfig {
            alignment_heads: vec![(3, 1), (9, 0)],
            ..DecodingConfig::default()
        };
        assert_eq!(configured.alignment_heads_for(&tiny()), vec![(3, 1)]);
    }

    #[test]
    fn heads_must_divide_the_width() {
        let bad = WhisperDims {
            n_audio_head: 5,
            ..tiny()
        };
        let err = bad.check(Path::new("config.json")).unwrap_err();
        assert!(err.to_string().contains("5 heads"), "{err}");
    }
}
