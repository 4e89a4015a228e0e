//! The BERT encoder as it runs: built from a loaded [`BertCheckpoint`] with the query, key and
//! value projections fused into one matmul and the position and token-type embeddings pre-summed.
//!
//! The forward pass works on a whole padded batch at once: every projection is one matmul over
//! `[batch * seq, hidden]`, attention is burn's fused scaled-dot-product kernel with a padding
//! mask, and nothing loops over tokens on the host.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::checkpoint::{BertCheckpoint, DenseResidual, SelfAttention};
use super::config::{Activation, BertConfig};
use super::gelu::gelu_exact;
use crate::ModelError;

/// One encoder layer in inference layout.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Q, K and V projections side by side: `[hidden, 3 * hidden]`.
    pub qkv: Linear,
    /// Attention output projection, residual and LayerNorm.
    pub attention_output: DenseResidual,
    /// Feed-forward up-projection (followed by GELU).
    pub intermediate: Linear,
    /// Feed-forward down-projection, residual and LayerNorm.
    pub output: DenseResidual,
}

/// A BERT encoder without the pooler head (sentence embeddings pool the hidden states).
#[derive(Module, Debug)]
pub struct BertModel {
    /// One row per WordPiece token.
    pub word_embeddings: Embedding,
    /// Position embedding plus token type 0 (every input is a single segment):
    /// `[max_position_embeddings, hidden]`.
    pub position_and_type: Param<Tensor<2>>,
    /// Normalisation of the summed embeddings.
    pub embeddings_norm: LayerNorm,
    /// Encoder layers in order.
    pub layers: Vec<EncoderLayer>,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Exact (erf) GELU when true, the tanh approximation otherwise.
    pub exact_gelu: bool,
}

impl BertModel {
    /// Converts loaded checkpoint weights to the inference layout.
    pub fn from_checkpoint(checkpoint: BertCheckpoint, config: &BertConfig) -> Self {
        let embeddings = checkpoint.embeddings;
        let token_type_0 = embeddings
            .token_type_embeddings
            .weight
            .val()
            .slice(s![0..1]);
        let position_and_type = embeddings.position_embeddings.weight.val() + token_type_0;
        let layers = checkpoint
            .encoder
            .layer
            .into_iter()
            .map(|layer| EncoderLayer {
                qkv: fuse_qkv(layer.attention.self_attn),
                attention_output: layer.attention.output,
                intermediate: layer.intermediate.dense,
                output: layer.output,
            })
            .collect();
        Self {
            word_embeddings: embeddings.word_embeddings,
            position_and_type: Param::from_tensor(position_and_type),
            embeddings_norm: embeddings.layer_norm,
            layers,
            num_heads: config.num_attention_heads,
            exact_gelu: config.hidden_act == Activation::Gelu,
        }
    }

    /// Runs the encoder.
    ///
    /// - `input_ids`: `[batch, seq]` token ids, padded with any valid id.
    /// - `padding`: `[batch, seq]`, true where the position is padding.
    ///
    /// Returns the last hidden state, `[batch, seq, hidden]`. Padding positions get values too,
    /// but no real token attends to them, so pooling over the mask ignores them.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> Result<Tensor<3>, ModelError> {
        let [batch, seq] = padding.dims();
        // The same key mask for every head and query row: a [batch, heads, seq, seq] view of
        // [batch, 1, 1, seq] (the full shape burn's attention documents; Flex copies it once
        // per call, ~1 ms at batch 32 x 128 tokens, too little to measure).
        let mask = padding
            .reshape([batch, 1, 1, seq])
            .expand([batch, self.num_heads, seq, seq]);
        let positions = self
            .position_and_type
            .val()
            .slice(s![0..seq])
            .unsqueeze::<3>();
        let mut x = self
            .embeddings_norm
            .forward(self.word_embeddings.forward(input_ids) + positions);
        for layer in &self.layers {
            x = self.layer_forward(layer, x, mask.clone())?;
        }
        Ok(x)
    }

    fn layer_forward(
        &self,
        layer: &EncoderLayer,
        x: Tensor<3>,
        mask: Tensor<4, Bool>,
    ) -> Result<Tensor<3>, ModelError> {
        let context = self.self_attention(&layer.qkv, x.clone(), mask);
        let x = layer.attention_output.forward(context, x);
        let up = layer.intermediate.forward(x.clone());
        let up = if self.exact_gelu {
            gelu_exact(up)?
        } else {
            gelu_approximate(up)
        };
        Ok(layer.output.forward(up, x))
    }

    /// `[batch, seq, hidden]` to the attention context (before the output projection).
    fn self_attention(&self, qkv: &Linear, x: Tensor<3>, mask: Tensor<4, Bool>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        // [batch, seq, 3 * hidden] -> [batch, 3 * heads, seq, head_dim], then Q, K and V are
        // head ranges of it: views only (reshaping a strided slice would copy).
        let qkv = qkv
            .forward(x)
            .reshape([batch, seq, 3 * heads, head_dim])
            .swap_dims(1, 2);
        let part = |index: usize| {
            qkv.clone()
                .slice(s![.., index * heads..(index + 1) * heads])
        };
        let context = attention(
            part(0),
            part(1),
            part(2),
            Some(mask),
            None,
            AttentionModuleOptions::default(),
        );
        context.swap_dims(1, 2).reshape([batch, seq, hidden])
    }
}

/// One `[hidden, 3 * hidden]` projection computing Q, K and V in a single matmul.
fn fuse_qkv(attention: SelfAttention) -> Linear {
    let parts = [attention.query, attention.key, attention.value];
    let weight = Tensor::cat(parts.iter().map(|l| l.weight.val()).collect(), 1);
    let bias = parts
        .iter()
        .map(|l| match &l.bias {
            Some(bias) => bias.val(),
            None => Tensor::zeros([l.weight.dims()[1]], &l.weight.device()),
        })
        .collect();
    Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(Tensor::cat(bias, 0))),
    }
}
