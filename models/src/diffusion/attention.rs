//! diffusers' `Attention`: query, key and value projections, multi-head attention and the
//! output projection, for self-attention (keys from the same tokens) and cross-attention
//! (keys from the text). Also reads the VAE's legacy names (`query`, `key`, `value`,
//! `proj_attn`) and 1×1-convolution-shaped projections some converted checkpoints keep.

use burn::prelude::*;

use super::layers::{Linear, multi_head_attention};
use super::weights::ComponentWeights;
use crate::ModelError;

#[derive(Debug)]
pub(crate) struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    /// The attention at `prefix` with `width` query channels, keys and values projected
    /// from `context_width` channels.
    pub fn load(
        weights: &ComponentWeights,
        prefix: &str,
        width: usize,
        context_width: usize,
        heads: usize,
    ) -> Result<Self, ModelError> {
        let legacy = !weights.contains(&format!("{prefix}.to_q.weight"))
            && weights.contains(&format!("{prefix}.query.weight"));
        let [q, k, v, out] = if legacy {
            ["query", "key", "value", "proj_attn"]
        } else {
            ["to_q", "to_k", "to_v", "to_out.0"]
        };
        let projection = |name: &str, inputs: usize| {
            let name = format!("{prefix}.{name}");
            let bias = weights.contains(&format!("{name}.bias"));
            weights.projection(&name, inputs, width, bias)
        };
        Ok(Self {
            to_q: projection(q, width)?,
            to_k: projection(k, context_width)?,
            to_v: projection(v, context_width)?,
            to_out: projection(out, width)?,
            heads,
        })
    }

    /// `x` `[batch, tokens, width]` attending over `context` (`None`: over itself).
    pub fn forward(&self, x: Tensor<3>, context: Option<&Tensor<3>>) -> Tensor<3> {
        let source = context.cloned().unwrap_or_else(|| x.clone());
        let query = self.to_q.forward(x);
        let key = self.to_k.forward(source.clone());
        let value = self.to_v.forward(source);
        self.to_out
            .forward(multi_head_attention(query, key, value, self.heads, false))
    }
}
