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

/// A level's resnets, each followed by a spatial transformer when the level attends.
#[derive(Debug)]
struct Layers {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
}

impl Layers {
    /// `inputs(j)` is the channel count resnet `j` takes.
    fn load(
        weights: &ComponentWeights,
        prefix: &str,
        shape: LevelShape,
        (outputs, layers): (usize, usize),
        inputs: impl Fn(usize) -> usize,
        attending: Option<Attending>,
    ) -> Result<Self, ModelError> {
        let mut resnets = Vec::with_capacity(layers);
        let mut attentions = Vec::new();
        for j in 0..layers {
            resnets.push(ResnetBlock::load(
                weights,
                &format!("{prefix}.resnets.{j}"),
                shape.resnet(inputs(j), outputs, 1.0),
            )?);
            if let Some(a) = attending {
                attentions.push(SpatialTransformer::load(
                    weights,
                    &format!("{prefix}.attentions.{j}"),
                    shape.transformer(outputs, a.heads, a.layers),
                )?);
            }
        }
        Ok(Self {
            resnets,
            attentions,
        })
    }

    fn len(&self) -> usize {
        self.resnets.len()
    }

    /// Resnet `j` (and its transformer) on `x`.
    fn run(
        &self,
        j: usize,
        x: Tensor<4>,
        time: &Tensor<2>,
        context: &Tensor<3>,
    ) -> Result<Tensor<4>, ModelError> {
        let x = self.resnets[j].forward(x, Some(time));
        match self.attentions.get(j) {
            Some(attention) => attention.forward(x, context),
            None => Ok(x),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DownBlock {
    layers: Layers,
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
        let from = |j: usize| if j == 0 { inputs } else { outputs };
        let layers = Layers::load(weights, prefix, shape, (outputs, layers), from, attending)?;
        let downsampler = downsample
            .then(|| Downsample::load(weights, &format!("{prefix}.downsamplers.0"), outputs, 1))
            .transpose()?;
        Ok(Self {
            layers,
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
        for j in 0..self.layers.len() {
            x = self.layers.run(j, x, time, context)?;
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
    layers: Layers,
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
        // Resnet j joins the level below (or its own previous output) with skip connection j;
        // the last skip comes from the down level one wider.
        let from = |j: usize| {
            let skip = if j == layers - 1 { skip_last } else { outputs };
            (if j == 0 { previous } else { outputs }) + skip
        };
        let layers = Layers::load(weights, prefix, shape, (outputs, layers), from, attending)?;
        let upsampler = upsample
            .then(|| Upsample::load(weights, &format!("{prefix}.upsamplers.0"), outputs))
            .transpose()?;
        Ok(Self { layers, upsampler })
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
        for j in 0..self.layers.len() {
            let skip = skips
                .pop()
                .ok_or_else(|| ModelError::Backend("UNet ran out of skip connections".into()))?;
            x = self
                .layers
                .run(j, Tensor::cat(vec![x, skip], 1), time, context)?;
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
