//! [`ClipTextConfig`]: the sizes of a CLIP text encoder, from `text_encoder/config.json`.

use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::diffusion::layers::Activation;
use crate::json::read_json;

/// The fields of transformers' `CLIPTextConfig` the encoder needs; other keys are ignored.
///
/// A missing field takes `CLIPTextConfig`'s default, as `from_pretrained` does (the defaults
/// are OpenAI's ViT-L/14 text tower but for the width: 512 wide, 12 layers of 8 heads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Token embedding rows (49408 for the released tokenizers).
    pub vocab_size: usize,
    /// Width of the residual stream and of the output.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Learned positions: the longest id row the encoder takes (77).
    pub max_position_embeddings: usize,
    /// The MLP activation: `quick_gelu` (OpenAI CLIP, SD 1.x) or `gelu` (OpenCLIP, SD 2.x).
    pub hidden_act: String,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// Width of the text projection of `CLIPTextModelWithProjection` (unused here).
    pub projection_dim: Option<usize>,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".to_owned(),
            layer_norm_eps: 1e-5,
            projection_dim: None,
        }
    }
}

impl ClipTextConfig {
    /// Reads and checks `path` (a `text_encoder/config.json`).
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = read_json(path)?;
        config
            .check()
            .map_err(|(field, reason)| ModelError::Config {
                path: path.to_path_buf(),
                field: field.to_owned(),
                reason,
            })?;
        Ok(config)
    }

    /// The MLP activation, once [`Self::load`] has checked its name.
    pub(crate) fn activation(&self) -> Option<Activation> {
        Activation::parse(&self.hidden_act)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err((field, "must be at least 1".to_owned()));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err((
                "num_attention_heads",
                format!(
                    "{} heads do not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if self.activation().is_none() {
            return Err((
                "hidden_act",
                format!("`{}`: expected quick_gelu, gelu or silu", self.hidden_act),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(("layer_norm_eps", "must be a positive number".to_owned()));
        }
        Ok(())
    }
}
