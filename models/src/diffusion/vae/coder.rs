//! The VAE's two halves: the encoder (image → the mean and log-variance of the latent) and
//! the decoder (latent → image), each a stack of resnet levels around a middle block with
//! one single-head self-attention.

use burn::prelude::*;
use burn::tensor::activation::silu;

use super::super::attention::Attention;
use super::super::layers::{Conv2d, GroupNorm};
use super::super::resnet::{Downsample, ResnetBlock, ResnetShape, Upsample};
use super::super::weights::ComponentWeights;
use super::config::VaeConfig;
use crate::ModelError;

/// diffusers builds every norm of the VAE with ε 1e-6.
const EPS: f64 = 1e-6;

fn resnet_shape(config: &VaeConfig, inputs: usize, outputs: usize) -> ResnetShape {
    ResnetShape {
        inputs,
        outputs,
        groups: config.norm_num_groups,
        eps: EPS,
        time_channels: None,
        output_scale: 1.0,
    }
}

/// `UNetMidBlock2D` without a time embedding: resnet, attention (optional), resnet.
#[derive(Debug)]
struct MidBlock {
    first: ResnetBlock,
    attention: Option<(GroupNorm, Attention)>,
    second: ResnetBlock,
}

impl MidBlock {
    fn load(
        weights: &ComponentWeights,
        prefix: &str,
        config: &VaeConfig,
        channels: usize,
    ) -> Result<Self, ModelError> {
        let shape = resnet_shape(config, channels, channels);
        let attention = if config.mid_block_add_attention {
            let at = format!("{prefix}.attentions.0");
            Some((
                weights.group_norm(
                    &format!("{at}.group_norm"),
                    config.norm_num_groups,
                    channels,
                    EPS,
                )?,
                Attention::load(weights, &at, channels, channels, 1)?,
            ))
        } else {
            None
        };
        Ok(Self {
            first: ResnetBlock::load(weights, &format!("{prefix}.resnets.0"), shape)?,
            attention,
            second: ResnetBlock::load(weights, &format!("{prefix}.resnets.1"), shape)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.first.forward(x, None);
        if let Some((norm, attention)) = &self.attention {
            let [batch, channels, height, width] = x.dims();
            let tokens = norm
                .forward(x.clone())
                .reshape([batch, channels, height * width])
                .swap_dims(1, 2);
            let attended = attention
                .forward(tokens, None)
                .swap_dims(1, 2)
                .reshape([batch, channels, height, width]);
            x = attended + x;
        }
        self.second.forward(x, None)
    }
}

/// One level of resnets and its resampler.
#[derive(Debug)]
struct Level<R> {
    resnets: Vec<ResnetBlock>,
    resample: Option<R>,
}

#[derive(Debug)]
pub(crate) struct Encoder {
    conv_in: Conv2d,
    down: Vec<Level<Downsample>>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    quant_conv: Option<Conv2d>,
}

impl Encoder {
    pub fn load(weights: &ComponentWeights, config: &VaeConfig) -> Result<Self, ModelError> {
        let channels = &config.block_out_channels;
        let blocks = channels.len();
        let mut down = Vec::with_capacity(blocks);
        let mut inputs = channels[0];
        for (i, &outputs) in channels.iter().enumerate() {
            let prefix = format!("encoder.down_blocks.{i}");
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    let from = if j == 0 { inputs } else { outputs };
                    ResnetBlock::load(
                        weights,
                        &format!("{prefix}.resnets.{j}"),
                        resnet_shape(config, from, outputs),
                    )
                })
                .collect::<Result<_, _>>()?;
            let resample = (i + 1 < blocks)
                .then(|| Downsample::load(weights, &format!("{prefix}.downsamplers.0"), outputs, 0))
                .transpose()?;
            down.push(Level { resnets, resample });
            inputs = outputs;
        }
        let last = channels[blocks - 1];
        let moments = 2 * config.latent_channels;
        Ok(Self {
            conv_in: weights.conv2d("encoder.conv_in", config.in_channels, channels[0], 3, 1, 1)?,
            down,
            mid: MidBlock::load(weights, "encoder.mid_block", config, last)?,
            norm_out: weights.group_norm(
                "encoder.conv_norm_out",
                config.norm_num_groups,
                last,
                EPS,
            )?,
            conv_out: weights.conv2d("encoder.conv_out", last, moments, 3, 1, 1)?,
            quant_conv: config
                .use_quant_conv
                .then(|| weights.conv2d("quant_conv", moments, moments, 1, 1, 0))
                .transpose()?,
        })
    }

    /// `image` `[batch, 3, h, w]` in −1..1 → the latent distribution's parameters
    /// `[batch, 2·latent_channels, h/f, w/f]` (mean, then log-variance).
    pub fn forward(&self, image: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv_in.forward(image);
        for level in &self.down {
            for resnet in &level.resnets {
                x = resnet.forward(x, None);
            }
            if let Some(down) = &level.resample {
                x = down.forward(x);
            }
        }
        let x = self.mid.forward(x);
        let x = self.conv_out.forward(silu(self.norm_out.forward(x)));
        match &self.quant_conv {
            Some(conv) => conv.forward(x),
            None => x,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Decoder {
    post_quant_conv: Option<Conv2d>,
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<Level<Upsample>>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    pub fn load(weights: &ComponentWeights, config: &VaeConfig) -> Result<Self, ModelError> {
        let channels = &config.block_out_channels;
        let blocks = channels.len();
        let latent = config.latent_channels;
        let last = channels[blocks - 1];
        let mut up = Vec::with_capacity(blocks);
        let mut outputs = last;
        for i in 0..blocks {
            let previous = outputs;
            outputs = channels[blocks - 1 - i];
            let prefix = format!("decoder.up_blocks.{i}");
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    let from = if j == 0 { previous } else { outputs };
                    ResnetBlock::load(
                        weights,
                        &format!("{prefix}.resnets.{j}"),
                        resnet_shape(config, from, outputs),
                    )
                })
                .collect::<Result<_, _>>()?;
            let resample = (i + 1 < blocks)
                .then(|| Upsample::load(weights, &format!("{prefix}.upsamplers.0"), outputs))
                .transpose()?;
            up.push(Level { resnets, resample });
        }
        Ok(Self {
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| weights.conv2d("post_quant_conv", latent, latent, 1, 1, 0))
                .transpose()?,
            conv_in: weights.conv2d("decoder.conv_in", latent, last, 3, 1, 1)?,
            mid: MidBlock::load(weights, "decoder.mid_block", config, last)?,
            up,
            norm_out: weights.group_norm(
                "decoder.conv_norm_out",
                config.norm_num_groups,
                channels[0],
                EPS,
            )?,
            conv_out: weights.conv2d(
                "decoder.conv_out",
                channels[0],
                config.out_channels,
                3,
                1,
                1,
            )?,
        })
    }

    /// `latent` `[batch, latent_channels, h, w]` (already divided by the scaling factor) →
    /// the image `[batch, 3, h·f, w·f]`, nominally in −1..1 (not clamped).
    pub fn forward(&self, latent: Tensor<4>) -> Tensor<4> {
        let latent = match &self.post_quant_conv {
            Some(conv) => conv.forward(latent),
            None => latent,
        };
        let mut x = self.mid.forward(self.conv_in.forward(latent));
        for level in &self.up {
            for resnet in &level.resnets {
                x = resnet.forward(x, None);
            }
            if let Some(up) = &level.resample {
                let [_, _, h, w] = x.dims();
                x = up.forward(x, [2 * h, 2 * w]);
            }
        }
        self.conv_out.forward(silu(self.norm_out.forward(x)))
    }
}
