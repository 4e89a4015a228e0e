//! The layers the diffusion networks are built from, as plain tensors with a `forward`:
//! linear and 2-D convolution, GroupNorm and LayerNorm, multi-head attention over
//! `[batch, tokens, channels]` through burn's fused attention, and the activations.

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::module::{attention, conv2d, layer_norm, linear};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};

use crate::ModelError;
use crate::bert::gelu::gelu_exact;

/// `x · weight + bias`, `weight` stored `[in, out]`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Linear {
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self { weight, bias }
    }

    pub fn inputs(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn outputs(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.clone(), self.bias.clone())
    }
}

/// A square-kernel 2-D convolution with a bias.
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    pub fn new(weight: Tensor<4>, bias: Tensor<1>, stride: usize, padding: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (s, p) = (self.stride, self.padding);
        conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            ConvOptions::new([s, s], [p, p], [1, 1], 1),
        )
    }
}

/// GroupNorm over `[batch, channels, height, width]`.
#[derive(Debug, Clone)]
pub(crate) struct GroupNorm {
    pub groups: usize,
    pub eps: f64,
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
}

impl GroupNorm {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let grouped = x.reshape([
            batch,
            self.groups,
            (channels / self.groups) * height * width,
        ]);
        // Two-pass statistics (mean first) as torch computes them: activations of a UNet sit
        // far from zero, where E[x²] − E[x]² loses the variance to cancellation.
        let mean = grouped.clone().mean_dim(2);
        let centred = grouped - mean;
        let variance = centred.clone().powi_scalar(2).mean_dim(2);
        let normalised = (centred * variance.add_scalar(self.eps).sqrt().recip())
            .reshape([batch, channels, height, width]);
        normalised * self.gamma.clone().reshape([1, channels, 1, 1])
            + self.beta.clone().reshape([1, channels, 1, 1])
    }
}

/// LayerNorm over the last dimension.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    pub eps: f64,
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
}

impl LayerNorm {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.gamma.clone(), Some(self.beta.clone()), self.eps)
    }
}

/// Scores one attention call may hold at once, in f32 values: 2²⁶ (256 MiB). Beyond it the
/// queries run in slices, so a 512×512 image's 4096-token self-attention (8 heads, the CFG
/// pair: 1 GiB of scores at once) fits a laptop GPU; slicing queries changes no result.
const MAX_SCORES_AT_ONCE: usize = 1 << 26;

/// Scaled dot-product attention of `query` `[batch, q_tokens, heads·dim]` over `key` and
/// `value` `[batch, kv_tokens, heads·dim]`, with an optional causal mask; returns
/// `[batch, q_tokens, heads·dim]`.
pub(crate) fn multi_head_attention(
    query: Tensor<3>,
    key: Tensor<3>,
    value: Tensor<3>,
    heads: usize,
    causal: bool,
) -> Tensor<3> {
    let [batch, q_tokens, width] = query.dims();
    let kv_tokens = key.dims()[1];
    let head_dim = width / heads;
    let split =
        |x: Tensor<3>, tokens: usize| x.reshape([batch, tokens, heads, head_dim]).swap_dims(1, 2);
    let options = AttentionModuleOptions {
        is_causal: causal,
        ..AttentionModuleOptions::default()
    };
    let (key, value) = (split(key, kv_tokens), split(value, kv_tokens));
    let query = split(query, q_tokens);
    let slice_rows = (MAX_SCORES_AT_ONCE / (batch * heads * kv_tokens).max(1)).max(1);
    let context = if causal || slice_rows >= q_tokens {
        attention(query, key, value, None, None, options)
    } else {
        let slices: Vec<Tensor<4>> = (0..q_tokens)
            .step_by(slice_rows)
            .map(|start| {
                let end = (start + slice_rows).min(q_tokens);
                let rows = query.clone().slice(s![.., .., start..end]);
                attention(rows, key.clone(), value.clone(), None, None, options)
            })
            .collect();
        Tensor::cat(slices, 2)
    };
    context.swap_dims(1, 2).reshape([batch, q_tokens, width])
}

/// The activations the diffusers configs name (`act_fn`, `hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Silu,
    /// `x · σ(1.702 x)`, CLIP's original activation.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
}

impl Activation {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "silu" | "swish" => Some(Self::Silu),
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            _ => None,
        }
    }

    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Result<Tensor<D>, ModelError> {
        Ok(match self {
            Self::Silu => silu(x),
            Self::QuickGelu => x.clone() * sigmoid(x.mul_scalar(1.702)),
            Self::Gelu => gelu_exact(x)?,
        })
    }
}
