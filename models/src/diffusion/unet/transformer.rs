//! The UNet's `Transformer2DModel` over a feature map: GroupNorm, a per-pixel projection in,
//! `BasicTransformerBlock`s (self-attention, cross-attention over the text, GEGLU
//! feed-forward, each pre-LayerNorm with a residual), a projection out, and the residual
//! around it all.

use burn::prelude::*;

use super::super::attention::Attention;
use super::super::layers::{Activation, GroupNorm, LayerNorm, Linear};
use super::super::weights::ComponentWeights;
use crate::ModelError;

/// diffusers builds these norms with ε 1e-6 (the blocks' LayerNorms keep 1e-5).
const GROUP_NORM_EPS: f64 = 1e-6;
const LAYER_NORM_EPS: f64 = 1e-5;

#[derive(Debug)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    /// GEGLU's projection to twice the feed-forward width: the value half, then the gate.
    ff_in: Linear,
    ff_out: Linear,
}

impl TransformerBlock {
    fn load(
        weights: &ComponentWeights,
        prefix: &str,
        width: usize,
        context_width: usize,
        heads: usize,
    ) -> Result<Self, ModelError> {
        let inner = 4 * width;
        Ok(Self {
            norm1: weights.layer_norm(&format!("{prefix}.norm1"), width, LAYER_NORM_EPS)?,
            attn1: Attention::load(weights, &format!("{prefix}.attn1"), width, width, heads)?,
            norm2: weights.layer_norm(&format!("{prefix}.norm2"), width, LAYER_NORM_EPS)?,
            attn2: Attention::load(
                weights,
                &format!("{prefix}.attn2"),
                width,
                context_width,
                heads,
            )?,
            norm3: weights.layer_norm(&format!("{prefix}.norm3"), width, LAYER_NORM_EPS)?,
            ff_in: weights.linear(&format!("{prefix}.ff.net.0.proj"), width, 2 * inner, true)?,
            ff_out: weights.linear(&format!("{prefix}.ff.net.2"), inner, width, true)?,
        })
    }

    fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Result<Tensor<3>, ModelError> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None) + x;
        let x = self
            .attn2
            .forward(self.norm2.forward(x.clone()), Some(context))
            + x;
        let projected = self.ff_in.forward(self.norm3.forward(x.clone()));
        let mut halves = projected.chunk(2, 2).into_iter();
        let (value, gate) = match (halves.next(), halves.next()) {
            (Some(value), Some(gate)) => (value, gate),
            _ => return Err(ModelError::Backend("GEGLU split".into())),
        };
        Ok(self.ff_out.forward(value * Activation::Gelu.apply(gate)?) + x)
    }
}

/// `Transformer2DModel` with continuous input.
#[derive(Debug)]
pub(crate) struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Linear,
    blocks: Vec<TransformerBlock>,
    proj_out: Linear,
}

/// What a spatial transformer's shape depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransformerShape {
    pub channels: usize,
    pub context_width: usize,
    pub heads: usize,
    pub layers: usize,
    pub groups: usize,
}

impl SpatialTransformer {
    pub fn load(
        weights: &ComponentWeights,
        prefix: &str,
        shape: TransformerShape,
    ) -> Result<Self, ModelError> {
        let width = shape.channels;
        let blocks = (0..shape.layers)
            .map(|i| {
                TransformerBlock::load(
                    weights,
                    &format!("{prefix}.transformer_blocks.{i}"),
                    width,
                    shape.context_width,
                    shape.heads,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            norm: weights.group_norm(
                &format!("{prefix}.norm"),
                shape.groups,
                width,
                GROUP_NORM_EPS,
            )?,
            // `use_linear_projection` only says whether these are stored as linear layers or
            // 1×1 convolutions: per pixel, the two are the same map.
            proj_in: weights.projection(&format!("{prefix}.proj_in"), width, width, true)?,
            blocks,
            proj_out: weights.projection(&format!("{prefix}.proj_out"), width, width, true)?,
        })
    }

    /// `x` `[batch, channels, h, w]`, `context` the text `[batch, tokens, context_width]`.
    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Result<Tensor<4>, ModelError> {
        let [batch, channels, height, width] = x.dims();
        let tokens = self
            .norm
            .forward(x.clone())
            .reshape([batch, channels, height * width])
            .swap_dims(1, 2);
        let mut h = self.proj_in.forward(tokens);
        for block in &self.blocks {
            h = block.forward(h, context)?;
        }
        let h = self
            .proj_out
            .forward(h)
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        Ok(h + x)
    }
}
