//! The UNet's levels: a down block (resnets, each followed by a spatial transformer in a
//! `CrossAttnDownBlock2D`, then a stride-2 convolution unless it is the last), the middle
//! block (resnet, transformer, resnet) and an up block (one more resnet than a down block,
//! each eating one skip connection, then a 2× upsampler unless it is the last).

use burn::prelude::*;

use super::super::resnet::{Downsample, ResnetBlock, ResnetShape, Upsample};
use super::super::weights::ComponentWeights;
use super::transformer::{SpatialTransformer, TransformerShape};
use crate::ModelError;

/// What every level shares: the time embedding's width, GroupNorm and text widths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LevelShape {
    pub time_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub context_width: usize,
}

impl LevelShape {
    fn resnet(&self, inputs: usize, outputs: usize, output_scale: f64) -> ResnetShape {
        ResnetShape {
            inputs,
            outputs,
            groups: self.groups,
            eps: self.eps,
            time_channels: Some(self.time_channels),
            output_scale,
        }
    }

    fn transformer(&self, channels: usize, heads: usize, layers: usize) -> TransformerShape {
        TransformerShape {
            channels,
            context_width: self.context_width,
            heads,
            layers,
            groups: self.groups,
        }
    }
}

/// Whether a level has attention, and how much.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attending {
    pub heads: usize,
    pub layers: usize,
}

#[derive(Debug)]
pub(crate) struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    downsampler: Option<Downsample>,
}

impl DownBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        weights: &ComponentWeights,
        prefix: &str,
        shape: LevelShape,
        inputs: usize,
        outputs: usize,
        layers: usize,
        attending: Option<Attending>,
        downsample: bool,
    ) -> Result<Self, ModelError> {
        let mut resnets = Vec::with_capacity(layers);
        let mut attentions = Vec::new();
        for j in 0..layers {
            let from = if j == 0 { inputs } else { outputs };
            resnets.push(ResnetBlock::load(
                weights,
                &format!("{prefix}.resnets.{j}"),
                shape.resnet(from, outputs, 1.0),
            )?);
            if let Some(a) = attending {
                attentions.push(SpatialTransformer::load(
                    weights,
                    &format!("{prefix}.attentions.{j}"),
                    shape.transformer(outputs, a.heads, a.layers),
                )?);
            }
        }
        let downsampler = downsample
            .then(|| Downsample::load(weights, &format!("{prefix}.downsamplers.0"), outputs, 1))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Runs the level, pushing every intermediate map onto `skips` for the up blocks.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        time: &Tensor<2>,
        context: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Result<Tensor<4>, ModelError> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(time));
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x, context)?;
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsampler {
            x = down.forward(x);
            skips.push(x.clone());
        }
        Ok(x)
    }
}

/// `UNetMidBlock2DCrossAttn` with one transformer.
#[derive(Debug)]
pub(crate) struct MidBlock {
    first: ResnetBlock,
    attention: SpatialTransformer,
    second: ResnetBlock,
}

impl MidBlock {
    pub fn load(
        weights: &ComponentWeights,
        shape: LevelShape,
        channels: usize,
        attending: Attending,
        output_scale: f64,
    ) -> Result<Self, ModelError> {
        let resnet = shape.resnet(channels, channels, output_scale);
        Ok(Self {
            first: ResnetBlock::load(weights, "mid_block.resnets.0", resnet)?,
            attention: SpatialTransformer::load(
                weights,
                "mid_block.attentions.0",
                shape.transformer(channels, attending.heads, attending.layers),
            )?,
            second: ResnetBlock::load(weights, "mid_block.resnets.1", resnet)?,
        })
    }

    pub fn forward(
        &self,
        x: Tensor<4>,
        time: &Tensor<2>,
        context: &Tensor<3>,
    ) -> Result<Tensor<4>, ModelError> {
        let x = self.first.forward(x, Some(time));
        let x = self.attention.forward(x, context)?;
        Ok(self.second.forward(x, Some(time)))
    }
}

#[derive(Debug)]
pub(crate) struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    upsampler: Option<Upsample>,
}

/// The channel counts an up block joins: what comes from below (`previous`), its own width
/// and the width of the down level its last skip connection comes from (`skip_last`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpChannels {
    pub previous: usize,
    pub outputs: usize,
    pub skip_last: usize,
}

impl UpBlock {
    pub fn load(
        weights: &ComponentWeights,
        prefix: &str,
        shape: LevelShape,
        channels: UpChannels,
        layers: usize,
        attending: Option<Attending>,
        upsample: bool,
    ) -> Result<Self, ModelError> {
        let UpChannels {
            previous,
            outputs,
            skip_last,
        } = channels;
        let mut resnets = Vec::with_capacity(layers);
        let mut attentions = Vec::new();
        for j in 0..layers {
            let skip = if j == layers - 1 { skip_last } else { outputs };
            let from = if j == 0 { previous } else { outputs };
            resnets.push(ResnetBlock::load(
                weights,
                &format!("{prefix}.resnets.{j}"),
                shape.resnet(from + skip, outputs, 1.0),
            )?);
            if let Some(a) = attending {
                attentions.push(SpatialTransformer::load(
                    weights,
                    &format!("{prefix}.attentions.{j}"),
                    shape.transformer(outputs, a.heads, a.layers),
                )?);
            }
        }
        let upsampler = upsample
            .then(|| Upsample::load(weights, &format!("{prefix}.upsamplers.0"), outputs))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// Runs the level on `x`, taking its skip connections off the end of `skips`; the
    /// upsampler enlarges to the size of the next skip connection.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        time: &Tensor<2>,
        context: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Result<Tensor<4>, ModelError> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .ok_or_else(|| ModelError::Backend("UNet ran out of skip connections".into()))?;
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(time));
            if let Some(attention) = self.attentions.get(j) {
                x = attention.forward(x, context)?;
            }
        }
        if let Some(up) = &self.upsampler {
            let [_, _, h, w] = x.dims();
            let size = skips
                .last()
                .map_or([2 * h, 2 * w], |s| [s.dims()[2], s.dims()[3]]);
            x = up.forward(x, size);
        }
        Ok(x)
    }
}
