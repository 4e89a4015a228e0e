//! The decoder's weights in the layout inference wants (`[in, out]` matrices for `x.matmul(w)`,
//! Q/K/V and gate/up fused), and the helpers both loaders (GGUF and safetensors) build them with.

use burn::prelude::*;

use crate::quant::{QuantLinear, QuantMatrix};

/// A linear layer's weights: an `[in, out]` f32 tensor for `x.matmul(w)` (any device), or the
/// file's own blocks multiplied by the CPU kernels of [`crate::quant`] (GGUF on the CPU).
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "a handful per layer")]
pub(crate) enum Linear {
    Dense(Tensor<2>),
    Quant(QuantLinear),
}

impl Linear {
    /// `x · W` for `x` `[rows, in]`: `[rows, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Dense(w) => x.matmul(w.clone()),
            Self::Quant(w) => {
                let device = x.device();
                let [rows, _] = x.dims();
                let values: Vec<f32> = x.into_data().try_to_vec().expect("f32 activations");
                let y = w.forward(&values, rows);
                Tensor::from_data(TensorData::new(y, [rows, w.rows()]), &device)
            }
        }
    }
}

/// The token embeddings: `[vocab, hidden]` f32, or the file's blocks dequantised row by row.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "one per model")]
pub(crate) enum Embedding {
    Dense(Tensor<2>),
    Quant(QuantMatrix),
}

impl Embedding {
    /// The embeddings of `ids`, `[ids, hidden]`.
    pub fn lookup(&self, ids: &[u32], device: &Device) -> Tensor<2> {
        match self {
            Self::Dense(table) => {
                let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
                let n = ids.len();
                table.clone().select(
                    0,
                    Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), device),
                )
            }
            Self::Quant(table) => {
                let values: Vec<f32> = ids
                    .iter()
                    .flat_map(|&id| table.dequantize_row(id as usize))
                    .collect();
                Tensor::from_data(TensorData::new(values, [ids.len(), table.cols()]), device)
            }
        }
    }
}

/// One decoder layer.
#[derive(Debug)]
pub(crate) struct LlamaLayer {
    pub attn_norm: Tensor<1>,
    /// Q, K, V side by side: `[hidden, (heads + 2·kv_heads)·head_dim]`, rotate-half row order.
    pub qkv: Linear,
    /// Q, K, V biases side by side (Qwen2), `[(heads + 2·kv_heads)·head_dim]`.
    pub qkv_bias: Option<Tensor<1>>,
    /// RMSNorm weights applied to every query and key head before RoPE (Qwen3), `[head_dim]`.
    pub qk_norm: Option<(Tensor<1>, Tensor<1>)>,
    pub attn_output: Linear,
    pub ffn_norm: Tensor<1>,
    /// Gate and up side by side: `[hidden, 2·ffn]`.
    pub gate_up: Linear,
    pub down: Linear,
}

/// All weights of the decoder.
#[derive(Debug)]
pub(crate) struct LlamaWeights {
    /// `[vocab, hidden]`.
    pub embedding: Embedding,
    pub layers: Vec<LlamaLayer>,
    pub output_norm: Tensor<1>,
    /// `[hidden, vocab]`.
    pub lm_head: Linear,
}

/// A matrix in checkpoint order (`[out, in]`, as both GGUF and PyTorch store linear layers):
/// `rows` rows of `cols` contiguous values.
pub(crate) struct Matrix {
    pub values: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl Matrix {
    /// The matrix as a `[rows, cols]` tensor, unchanged (embeddings).
    pub fn into_tensor(self, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.values, [self.rows, self.cols]), device)
    }
}

/// `[in, out]` tensor of the matrices side by side, from `[out, in]` matrices that share `in`.
pub(crate) fn fused_transposed(parts: &[Matrix], device: &Device) -> Tensor<2> {
    let cols = parts[0].cols;
    let out: usize = parts.iter().map(|m| m.rows).sum();
    let mut values = vec![0.0; cols * out];
    let mut offset = 0;
    for m in parts {
        for r in 0..m.rows {
            for (c, &v) in m.values[r * cols..(r + 1) * cols].iter().enumerate() {
                values[c * out + offset + r] = v;
            }
        }
        offset += m.rows;
    }
    Tensor::from_data(TensorData::new(values, [cols, out]), device)
}

/// A vector tensor from its values.
pub(crate) fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}

/// Logs loading progress at every quarter of the layers (big models take a while).
pub(crate) fn log_progress(done: usize, total: usize) {
    let quarter = total.div_ceil(4).max(1);
    if done.is_multiple_of(quarter) || done == total {
        tracing::info!(layers = done, of = total, "loading weights");
    }
}
