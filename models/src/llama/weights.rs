//! The decoder's weights in the layout inference wants (`[in, out]` matrices for `x.matmul(w)`,
//! Q/K/V and gate/up fused), and the helpers both loaders (GGUF and safetensors) build them with.

use burn::prelude::*;

/// One decoder layer.
#[derive(Debug)]
pub(crate) struct LlamaLayer {
    pub attn_norm: Tensor<1>,
    /// Q, K, V side by side: `[hidden, (heads + 2·kv_heads)·head_dim]`, rotate-half row order.
    pub qkv: Tensor<2>,
    /// Q, K, V biases side by side (Qwen2), `[(heads + 2·kv_heads)·head_dim]`.
    pub qkv_bias: Option<Tensor<1>>,
    /// RMSNorm weights applied to every query and key head before RoPE (Qwen3), `[head_dim]`.
    pub qk_norm: Option<(Tensor<1>, Tensor<1>)>,
    pub attn_output: Tensor<2>,
    pub ffn_norm: Tensor<1>,
    /// Gate and up side by side: `[hidden, 2·ffn]`.
    pub gate_up: Tensor<2>,
    pub down: Tensor<2>,
}

/// All weights of the decoder.
#[derive(Debug)]
pub(crate) struct LlamaWeights {
    /// `[vocab, hidden]`.
    pub embedding: Tensor<2>,
    pub layers: Vec<LlamaLayer>,
    pub output_norm: Tensor<1>,
    /// `[hidden, vocab]`.
    pub lm_head: Tensor<2>,
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
