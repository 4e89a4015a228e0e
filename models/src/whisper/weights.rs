//! Whisper's weights in the layout inference wants (`[in, out]` matrices for `x.matmul(w)`,
//! self-attention Q/K/V fused into one matmul and cross-attention K/V into another), built
//! from any [`WeightSource`]: the CTranslate2 and Hugging Face loaders only name tensors.

use burn::prelude::*;

use super::config::WhisperDims;
use crate::ModelError;
use crate::llama::weights::{Matrix, fused_transposed, log_progress, vector};

/// Where weights come from: a named tensor of a given shape, as f32, in checkpoint order
/// (linear layers `[out, in]`).
pub(crate) trait WeightSource {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError>;

    /// An optional tensor: `None` when the checkpoint lacks it.
    fn optional(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, ModelError>;
}

/// A projection: `x.matmul(weight) + bias`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// `[in, out]`.
    pub weight: Tensor<2>,
    pub bias: Tensor<1>,
}

impl Linear {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.clone()) + self.bias.clone().unsqueeze::<2>()
    }
}

/// LayerNorm's scale and shift.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
}

impl Norm {
    /// LayerNorm over the last dimension, ε 1e-5 as Whisper trains with.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean = x.clone().mean_dim(D - 1);
        let centred = x - mean;
        let variance = centred.clone().powi_scalar(2).mean_dim(D - 1);
        centred * variance.add_scalar(1e-5).sqrt().recip() * self.gamma.clone().unsqueeze::<D>()
            + self.beta.clone().unsqueeze::<D>()
    }
}

/// One encoder block: pre-LN self-attention and MLP.
#[derive(Debug)]
pub(crate) struct EncoderBlock {
    pub attn_norm: Norm,
    /// Q, K, V side by side: `[d, 3d]` (K has no bias in Whisper: zeros).
    pub qkv: Linear,
    pub attn_out: Linear,
    pub mlp_norm: Norm,
    pub fc1: Linear,
    pub fc2: Linear,
}

/// One decoder block: causal self-attention, cross-attention over the audio, MLP.
#[derive(Debug)]
pub(crate) struct DecoderBlock {
    pub self_norm: Norm,
    pub self_qkv: Linear,
    pub self_out: Linear,
    pub cross_norm: Norm,
    pub cross_q: Linear,
    /// K and V of the audio features side by side: `[d, 2d]`, computed once per window.
    pub cross_kv: Linear,
    pub cross_out: Linear,
    pub mlp_norm: Norm,
    pub fc1: Linear,
    pub fc2: Linear,
}

/// Everything the model runs on.
#[derive(Debug)]
pub(crate) struct WhisperWeights {
    /// `[d, n_mels, 3]` and `[d]`.
    pub conv1: (Tensor<3>, Tensor<1>),
    /// `[d, d, 3]` and `[d]` (stride 2).
    pub conv2: (Tensor<3>, Tensor<1>),
    /// Sinusoidal positions, `[n_audio_ctx, d]`.
    pub encoder_positions: Tensor<2>,
    pub encoder_blocks: Vec<EncoderBlock>,
    pub encoder_norm: Norm,
    /// `[n_vocab, d]`.
    pub token_embedding: Tensor<2>,
    /// Learned positions, `[n_text_ctx, d]`.
    pub decoder_positions: Tensor<2>,
    pub decoder_blocks: Vec<DecoderBlock>,
    pub decoder_norm: Norm,
    /// The output projection, tied to the token embedding: `[d, n_vocab]`.
    pub lm_head: Tensor<2>,
}

/// The names of one checkpoint layout's tensors. `layer` is the block index.
pub(crate) trait TensorNames {
    fn conv(&self, index: usize, part: Part) -> String;
    fn encoder_positions(&self) -> String;
    fn token_embedding(&self) -> String;
    fn decoder_positions(&self) -> String;
    /// A LayerNorm's scale (`Part::Weight`) or shift (`Part::Bias`).
    fn norm(&self, at: Place, part: Part) -> String;
    /// Loads one attention block's projections as `[out, in]` matrices and biases:
    /// self-attention → `[q; k; v]` fused, output; cross-attention → q, `[k; v]`, output.
    fn attention(
        &self,
        source: &dyn WeightSource,
        at: Attention,
        d: usize,
    ) -> Result<Vec<(Matrix, Vec<f32>)>, ModelError>;
    fn mlp(&self, stack: Stack, layer: usize, which: usize, part: Part) -> String;
}

/// Weight or bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Weight,
    Bias,
}

/// Encoder or decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stack {
    Encoder,
    Decoder,
}

/// An attention block: which stack, which layer, self or cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attention {
    pub stack: Stack,
    pub layer: usize,
    pub cross: bool,
}

/// Where a LayerNorm sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Before a block's self-attention.
    SelfAttention(Stack, usize),
    /// Before a decoder block's cross-attention.
    CrossAttention(usize),
    /// Before a block's MLP.
    Mlp(Stack, usize),
    /// After the last block.
    Final(Stack),
}

/// Builds the weights of `dims` from `source`, naming tensors with `names`.
pub(crate) fn build(
    source: &dyn WeightSource,
    names: &dyn TensorNames,
    dims: &WhisperDims,
    device: &Device,
) -> Result<WhisperWeights, ModelError> {
    let d = dims.n_state;
    let tensor3 = |name: String, shape: [usize; 3]| -> Result<Tensor<3>, ModelError> {
        let values = source.tensor(&name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    };
    let tensor2 = |name: String, shape: [usize; 2]| -> Result<Tensor<2>, ModelError> {
        let values = source.tensor(&name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    };
    let vec1 = |name: String, len: usize| -> Result<Tensor<1>, ModelError> {
        Ok(vector(source.tensor(&name, &[len])?, device))
    };
    let norm = |at: Place| -> Result<Norm, ModelError> {
        Ok(Norm {
            gamma: vec1(names.norm(at, Part::Weight), d)?,
            beta: vec1(names.norm(at, Part::Bias), d)?,
        })
    };
    let linear = |(matrix, bias): (Matrix, Vec<f32>)| Linear {
        weight: fused_transposed(&[matrix], device),
        bias: vector(bias, device),
    };
    let mlp = |stack: Stack, layer: usize| -> Result<(Linear, Linear), ModelError> {
        let hidden = 4 * d;
        let fc = |which: usize, out: usize, input: usize| -> Result<Linear, ModelError> {
            let values =
                source.tensor(&names.mlp(stack, layer, which, Part::Weight), &[out, input])?;
            let bias = source.tensor(&names.mlp(stack, layer, which, Part::Bias), &[out])?;
            Ok(linear((
                Matrix {
                    values,
                    rows: out,
                    cols: input,
                },
                bias,
            )))
        };
        Ok((fc(0, hidden, d)?, fc(1, d, hidden)?))
    };
    let total = dims.n_audio_layer + dims.n_text_layer;

    let conv1 = (
        tensor3(names.conv(1, Part::Weight), [d, dims.n_mels, 3])?,
        vec1(names.conv(1, Part::Bias), d)?,
    );
    let conv2 = (
        tensor3(names.conv(2, Part::Weight), [d, d, 3])?,
        vec1(names.conv(2, Part::Bias), d)?,
    );
    let encoder_positions = tensor2(names.encoder_positions(), [dims.n_audio_ctx, d])?;
    let mut encoder_blocks = Vec::with_capacity(dims.n_audio_layer);
    for layer in 0..dims.n_audio_layer {
        let mut attention = names
            .attention(
                source,
                Attention {
                    stack: Stack::Encoder,
                    layer,
                    cross: false,
                },
                d,
            )?
            .into_iter();
        let (fc1, fc2) = mlp(Stack::Encoder, layer)?;
        encoder_blocks.push(EncoderBlock {
            attn_norm: norm(Place::SelfAttention(Stack::Encoder, layer))?,
            qkv: linear(attention.next().expect("q, k, v")),
            attn_out: linear(attention.next().expect("output")),
            mlp_norm: norm(Place::Mlp(Stack::Encoder, layer))?,
            fc1,
            fc2,
        });
        log_progress(layer + 1, total);
    }
    let encoder_norm = norm(Place::Final(Stack::Encoder))?;

    let embedding_values = source.tensor(&names.token_embedding(), &[dims.n_vocab, d])?;
    let lm_head = fused_transposed(
        &[Matrix {
            values: embedding_values.clone(),
            rows: dims.n_vocab,
            cols: d,
        }],
        device,
    );
    let token_embedding =
        Tensor::from_data(TensorData::new(embedding_values, [dims.n_vocab, d]), device);
    let decoder_positions = tensor2(names.decoder_positions(), [dims.n_text_ctx, d])?;
    let mut decoder_blocks = Vec::with_capacity(dims.n_text_layer);
    for layer in 0..dims.n_text_layer {
        let at = |cross| Attention {
            stack: Stack::Decoder,
            layer,
            cross,
        };
        let mut own = names.attention(source, at(false), d)?.into_iter();
        let mut cross = names.attention(source, at(true), d)?.into_iter();
        let (fc1, fc2) = mlp(Stack::Decoder, layer)?;
        decoder_blocks.push(DecoderBlock {
            self_norm: norm(Place::SelfAttention(Stack::Decoder, layer))?,
            self_qkv: linear(own.next().expect("q, k, v")),
            self_out: linear(own.next().expect("output")),
            cross_norm: norm(Place::CrossAttention(layer))?,
            cross_q: linear(cross.next().expect("q")),
            cross_kv: linear(cross.next().expect("k, v")),
            cross_out: linear(cross.next().expect("output")),
            mlp_norm: norm(Place::Mlp(Stack::Decoder, layer))?,
            fc1,
            fc2,
        });
        log_progress(dims.n_audio_layer + layer + 1, total);
    }
    let decoder_norm = norm(Place::Final(Stack::Decoder))?;
    Ok(WhisperWeights {
        conv1,
        conv2,
        encoder_positions,
        encoder_blocks,
        encoder_norm,
        token_embedding,
        decoder_positions,
        decoder_blocks,
        decoder_norm,
        lm_head,
    })
}

/// Stacks `[out, in]` matrices that share `in` into one (rows concatenated), with their
/// biases; a missing bias is zeros (Whisper's key projections have none).
pub(crate) fn stack_rows(parts: Vec<(Vec<f32>, Option<Vec<f32>>)>, d: usize) -> (Matrix, Vec<f32>) {
    let rows = parts.len() * d;
    let mut values = Vec::with_capacity(rows * d);
    let mut bias = Vec::with_capacity(rows);
    for (weight, part_bias) in parts {
        values.extend(weight);
        bias.extend(part_bias.unwrap_or_else(|| vec![0.0; d]));
    }
    (
        Matrix {
            values,
            rows,
            cols: d,
        },
        bias,
    )
}
