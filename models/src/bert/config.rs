//! BERT hyper-parameters, read from a Hugging Face `config.json`, and the sentence-transformers
//! `sentence_bert_config.json` that caps the input length.

use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::json::read_json;

/// The feed-forward activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// Exact GELU, `x * Φ(x)` with the error function (`"gelu"`).
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
}

/// The architecture of a BERT encoder, as in a Hugging Face `config.json`.
///
/// Fields not listed here (dropout rates, `architectures`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Width of every hidden state (and of the output embedding).
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer inside each encoder layer.
    pub intermediate_size: usize,
    /// Number of learned positions: the longest input the model can read.
    pub max_position_embeddings: usize,
    /// Number of WordPiece tokens.
    pub vocab_size: usize,
    /// Number of segment (token type) embeddings.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Feed-forward activation.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: Activation,
    /// Only `"absolute"` position embeddings are implemented.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> Activation {
    Activation::Gelu
}
fn default_position_embedding_type() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    /// The configuration of `sentence-transformers/all-MiniLM-L6-v2`.
    pub fn all_minilm_l6_v2() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            vocab_size: 30522,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: Activation::Gelu,
            position_embedding_type: default_position_embedding_type(),
        }
    }

    /// Reads `config.json` and checks the values this implementation depends on.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let invalid = |field: &str, reason: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.to_owned(),
            reason,
        };
        for (field, value) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0".to_owned()));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(invalid(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(invalid(
                "position_embedding_type",
                format!(
                    "`{}` is not supported (only `absolute`)",
                    self.position_embedding_type
                ),
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(invalid(
                "layer_norm_eps",
                "must be a positive number".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The optional `sentence_bert_config.json` of a sentence-transformers folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SentenceBertConfig {
    /// Inputs longer than this were truncated in training; we refuse them instead.
    pub max_seq_length: Option<usize>,
}

impl SentenceBertConfig {
    /// Reads the file if it exists; an absent file means "no extra limit".
    pub fn load_optional(path: &Path) -> Result<Self, ModelError> {
        if path.exists() {
            read_json(path)
        } else {
            Ok(Self::default())
        }
    }
}
