//! The convolutional pieces the UNet and the VAE share: diffusers' `ResnetBlock2D` (two
//! GroupNorm–SiLU–conv stages, the time embedding added between them in the UNet, a 1×1
//! shortcut when the channel count changes) and the 2× down- and upsamplers.

use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, PadMode};

use super::layers::{Conv2d, GroupNorm, Linear};
use super::weights::ComponentWeights;
use crate::ModelError;

/// `ResnetBlock2D` with `time_embedding_norm = "default"` and `output_scale_factor` 1.
#[derive(Debug)]
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    /// The UNet's projection of the time embedding; absent in the VAE.
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
    output_scale: f64,
}

/// What a resnet block's shape depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResnetShape {
    pub inputs: usize,
    pub outputs: usize,
    pub groups: usize,
    pub eps: f64,
    /// Width of the time embedding (`None` in the VAE).
    pub time_channels: Option<usize>,
    pub output_scale: f64,
}

impl ResnetBlock {
    pub fn load(
        weights: &ComponentWeights,
        prefix: &str,
        shape: ResnetShape,
    ) -> Result<Self, ModelError> {
        let ResnetShape {
            inputs,
            outputs,
            groups,
            eps,
            time_channels,
            output_scale,
        } = shape;
        let time_emb_proj = time_channels
            .map(|t| weights.linear(&format!("{prefix}.time_emb_proj"), t, outputs, true))
            .transpose()?;
        let shortcut = if inputs != outputs {
            Some(weights.conv2d(&format!("{prefix}.conv_shortcut"), inputs, outputs, 1, 1, 0)?)
        } else {
            None
        };
        Ok(Self {
            norm1: weights.group_norm(&format!("{prefix}.norm1"), groups, inputs, eps)?,
            conv1: weights.conv2d(&format!("{prefix}.conv1"), inputs, outputs, 3, 1, 1)?,
            time_emb_proj,
            norm2: weights.group_norm(&format!("{prefix}.norm2"), groups, outputs, eps)?,
            conv2: weights.conv2d(&format!("{prefix}.conv2"), outputs, outputs, 3, 1, 1)?,
            shortcut,
            output_scale,
        })
    }

    /// `x` `[batch, in, h, w]`, `time` the `[batch, time_channels]` embedding (UNet only).
    pub fn forward(&self, x: Tensor<4>, time: Option<&Tensor<2>>) -> Tensor<4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = match (&self.time_emb_proj, time) {
            (Some(proj), Some(time)) => {
                let [batch, channels] = [h.dims()[0], proj.outputs()];
                h + proj
                    .forward(silu(time.clone()))
                    .reshape([batch, channels, 1, 1])
            }
            _ => h,
        };
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        let out = skip + h;
        if self.output_scale == 1.0 {
            out
        } else {
            out.div_scalar(self.output_scale)
        }
    }
}

/// `Downsample2D` with a convolution: 3×3, stride 2. The UNet pads by 1 on every side; the
/// VAE (`padding = 0` in its config) pads only the right and bottom edge by 1, as
/// diffusers does, so the two are not interchangeable.
#[derive(Debug)]
pub(crate) struct Downsample {
    conv: Conv2d,
    pad_right_bottom: bool,
}

impl Downsample {
    pub fn load(
        weights: &ComponentWeights,
        prefix: &str,
        channels: usize,
        padding: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            conv: weights.conv2d(&format!("{prefix}.conv"), channels, channels, 3, 2, padding)?,
            pad_right_bottom: padding == 0,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.pad_right_bottom {
            x.pad((0, 1, 0, 1), PadMode::Constant(0.0))
        } else {
            x
        };
        self.conv.forward(x)
    }
}

/// `Upsample2D` with a convolution: nearest-neighbour enlargement, then a 3×3 convolution.
#[derive(Debug)]
pub(crate) struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn load(
        weights: &ComponentWeights,
        prefix: &str,
        channels: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            conv: weights.conv2d(&format!("{prefix}.conv"), channels, channels, 3, 1, 1)?,
        })
    }

    /// Enlarges `x` to `size` (`[h, w]`: twice the input, or the skip connection's size when
    /// an odd latent was halved with rounding up).
    pub fn forward(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        let x = interpolate(
            x,
            InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size),
        );
        self.conv.forward(x)
    }
}
