//! The BERT module tree in checkpoint layout: one field per tensor of a Hugging Face
//! `BertModel` state dict, so the loader can fill it by name. [`super::model::BertModel`] is
//! built from it (with the Q, K and V projections fused) and is what runs.
//!
//! Field names mirror the checkpoint; the loader's remapper turns `LayerNorm` into
//! `layer_norm` and `attention.self` into `attention.self_attn`.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::config::BertConfig;

/// Word, position and token-type embeddings and their LayerNorm.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// One row per WordPiece token.
    pub word_embeddings: Embedding,
    /// One row per position.
    pub position_embeddings: Embedding,
    /// One row per segment; single-sentence inputs use row 0.
    pub token_type_embeddings: Embedding,
    /// Normalisation of the summed embeddings.
    pub layer_norm: LayerNorm,
}

/// The query, key and value projections of one attention block (`attention.self`).
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
}

/// A projection followed by a residual connection and LayerNorm.
#[derive(Module, Debug)]
pub struct DenseResidual {
    /// The projection.
    pub dense: Linear,
    /// Normalisation of `dense(x) + residual`.
    pub layer_norm: LayerNorm,
}

impl DenseResidual {
    /// `layer_norm(dense(x) + residual)`.
    pub fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}

/// Multi-head self-attention and its output block.
#[derive(Module, Debug)]
pub struct Attention {
    /// Q, K and V projections.
    pub self_attn: SelfAttention,
    /// Output projection, residual and LayerNorm.
    pub output: DenseResidual,
}

/// The up-projection of the feed-forward block.
#[derive(Module, Debug)]
pub struct Intermediate {
    /// `hidden -> intermediate` projection.
    pub dense: Linear,
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct Layer {
    /// Self-attention block.
    pub attention: Attention,
    /// Feed-forward up-projection.
    pub intermediate: Intermediate,
    /// Feed-forward down-projection, residual and LayerNorm.
    pub output: DenseResidual,
}

/// The stack of encoder layers (`encoder.layer.N`).
#[derive(Module, Debug)]
pub struct Encoder {
    /// Layers in order.
    pub layer: Vec<Layer>,
}

/// A BERT encoder in checkpoint layout, without the pooler head.
#[derive(Module, Debug)]
pub struct BertCheckpoint {
    /// Input embeddings.
    pub embeddings: Embeddings,
    /// Encoder layers.
    pub encoder: Encoder,
}

fn layer_norm(config: &BertConfig, device: &Device) -> LayerNorm {
    LayerNormConfig::new(config.hidden_size)
        .with_epsilon(config.layer_norm_eps)
        .init(device)
}

fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).init(device)
}

impl BertCheckpoint {
    /// The module tree for `config`, with placeholder weights for the loader to replace.
    pub fn init(config: &BertConfig, device: &Device) -> Self {
        let hidden = config.hidden_size;
        let embedding = |rows| EmbeddingConfig::new(rows, hidden).init(device);
        let layer = (0..config.num_hidden_layers)
            .map(|_| Layer {
                attention: Attention {
                    self_attn: SelfAttention {
                        query: linear(hidden, hidden, device),
                        key: linear(hidden, hidden, device),
                        value: linear(hidden, hidden, device),
                    },
                    output: DenseResidual {
                        dense: linear(hidden, hidden, device),
                        layer_norm: layer_norm(config, device),
                    },
                },
                intermediate: Intermediate {
                    dense: linear(hidden, config.intermediate_size, device),
                },
                output: DenseResidual {
                    dense: linear(config.intermediate_size, hidden, device),
                    layer_norm: layer_norm(config, device),
                },
            })
            .collect();
        Self {
            embeddings: Embeddings {
                word_embeddings: embedding(config.vocab_size),
                position_embeddings: embedding(config.max_position_embeddings),
                token_type_embeddings: embedding(config.type_vocab_size),
                layer_norm: layer_norm(config, device),
            },
            encoder: Encoder { layer },
        }
    }
}
