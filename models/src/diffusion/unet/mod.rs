//! diffusers' `UNet2DConditionModel` as Stable Diffusion 1.x/2.x, SD-Turbo and their
//! inpainting variants configure it: the noisy latent (4 channels, or 9 with the mask and
//! the masked image's latent) and a timestep per sample in, conditioned on the text through
//! cross-attention, the predicted noise (or v, or x₀) out.

mod blocks;
mod config;
mod time;
mod transformer;

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::silu;

use blocks::{Attending, DownBlock, LevelShape, MidBlock, UpBlock, UpChannels};
pub(crate) use config::UNetConfig;
use time::{TimeEmbedding, sinusoidal_embedding};

use super::layers::{Conv2d, GroupNorm};
use super::weights::ComponentWeights;
use crate::ModelError;

/// A loaded UNet.
#[derive(Debug)]
pub struct UNet {
    config: UNetConfig,
    conv_in: Conv2d,
    time_embedding: TimeEmbedding,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    device: Device,
}

impl UNet {
    /// Loads `pipeline/unet` (`config.json` and the weights).
    pub fn load(pipeline: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = UNetConfig::load(&pipeline.join("unet/config.json"))?;
        let weights = ComponentWeights::open(pipeline, "unet", "diffusion_pytorch_model", device)?;
        Self::build(config, &weights)
    }

    fn build(config: UNetConfig, weights: &ComponentWeights) -> Result<Self, ModelError> {
        let channels = &config.block_out_channels;
        let blocks = channels.len();
        let (heads, transformer_layers) = (config.heads(), config.transformer_layers());
        let first = channels[0];
        let time_embedding = TimeEmbedding::load(weights, first, config.time_cond_proj_dim)?;
        let shape = LevelShape {
            time_channels: time_embedding.width,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            context_width: config.cross_attention_dim,
        };
        let attending = |kind: &str, level: usize| {
            kind.starts_with("CrossAttn").then(|| Attending {
                heads: heads[level],
                layers: transformer_layers[level],
            })
        };
        let mut down = Vec::with_capacity(blocks);
        let mut inputs = first;
        for (i, kind) in config.down_block_types.iter().enumerate() {
            down.push(DownBlock::load(
                weights,
                &format!("down_blocks.{i}"),
                shape,
                inputs,
                channels[i],
                config.layers_per_block,
                attending(kind, i),
                i + 1 < blocks,
            )?);
            inputs = channels[i];
        }
        let last = channels[blocks - 1];
        let mid = MidBlock::load(
            weights,
            shape,
            last,
            Attending {
                heads: heads[blocks - 1],
                layers: transformer_layers[blocks - 1],
            },
            config.mid_block_scale_factor,
        )?;
        let mut up = Vec::with_capacity(blocks);
        let mut outputs = last;
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let level = blocks - 1 - i;
            let previous = outputs;
            outputs = channels[level];
            up.push(UpBlock::load(
                weights,
                &format!("up_blocks.{i}"),
                shape,
                UpChannels {
                    previous,
                    outputs,
                    skip_last: channels[level.saturating_sub(1)],
                },
                config.layers_per_block + 1,
                attending(kind, level),
                i + 1 < blocks,
            )?);
        }
        let (k_in, k_out) = (config.conv_in_kernel, config.conv_out_kernel);
        Ok(Self {
            conv_in: weights.conv2d("conv_in", config.in_channels, first, k_in, 1, k_in / 2)?,
            time_embedding,
            down,
            mid,
            up,
            norm_out: weights.group_norm(
                "conv_norm_out",
                config.norm_num_groups,
                first,
                config.norm_eps,
            )?,
            conv_out: weights.conv2d(
                "conv_out",
                first,
                config.out_channels,
                k_out,
                1,
                k_out / 2,
            )?,
            device: weights.device().clone(),
            config,
        })
    }

    /// Channels of the input: 4, or 9 for an inpainting UNet (latent, mask, masked image).
    pub fn in_channels(&self) -> usize {
        self.config.in_channels
    }

    /// Channels of the output (the latent's).
    pub fn out_channels(&self) -> usize {
        self.config.out_channels
    }

    /// The width of the text embeddings it attends to.
    pub fn context_width(&self) -> usize {
        self.config.cross_attention_dim
    }

    /// The latent side it was trained at (`sample_size`: 64 for SD 1.5's 512-pixel images).
    pub fn sample_size(&self) -> usize {
        self.config.sample_size
    }

    /// How many times it halves the latent.
    pub fn downsamplings(&self) -> usize {
        self.config.downsamplings()
    }

    /// Width of the guidance-scale embedding an LCM-distilled UNet takes (`None`: it takes
    /// classifier-free guidance instead).
    pub fn guidance_embedding_width(&self) -> Option<usize> {
        self.time_embedding.cond_dim()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One denoising step's prediction for `sample` `[batch, in_channels, h, w]`, sample `i`
    /// at timestep `timesteps[i]` and conditioned on `context[i]` (`[batch, tokens, width]`);
    /// `guidance` the `[batch, width]` embedding of an LCM UNet.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f64],
        context: &Tensor<3>,
        guidance: Option<Tensor<2>>,
    ) -> Result<Tensor<4>, ModelError> {
        let [batch, in_channels, _, _] = sample.dims();
        let [context_batch, _, context_width] = context.dims();
        if in_channels != self.config.in_channels
            || timesteps.len() != batch
            || context_batch != batch
            || context_width != self.config.cross_attention_dim
        {
            return Err(ModelError::InvalidInput(format!(
                "UNet input: {batch}×{in_channels} channels, {} timesteps, {context_batch}×{context_width} text \
                 (expected {} channels, {} text width, one timestep and one text per sample)",
                timesteps.len(),
                self.config.in_channels,
                self.config.cross_attention_dim
            )));
        }
        let width = self.config.block_out_channels[0];
        let projected = Tensor::<2>::from_data(
            TensorData::new(
                sinusoidal_embedding(
                    timesteps,
                    width,
                    self.config.flip_sin_to_cos,
                    self.config.freq_shift,
                    1.0,
                ),
                [batch, width],
            ),
            &self.device,
        );
        let time = self.time_embedding.forward(projected, guidance);
        let mut x = self.conv_in.forward(sample);
        let mut skips = vec![x.clone()];
        for block in &self.down {
            x = block.forward(x, &time, context, &mut skips)?;
        }
        x = self.mid.forward(x, &time, context)?;
        for block in &self.up {
            x = block.forward(x, &time, context, &mut skips)?;
        }
        Ok(self.conv_out.forward(silu(self.norm_out.forward(x))))
    }
}

/// The embedding of guidance scale `w` an LCM-distilled UNet is conditioned on
/// (`get_guidance_scale_embedding`: sinusoids of `1000·w`, sines first).
pub fn guidance_scale_embedding(scales: &[f64], width: usize, device: &Device) -> Tensor<2> {
    let values = sinusoidal_embedding(
        &scales.iter().map(|w| w * 1000.0).collect::<Vec<_>>(),
        width,
        false,
        1.0,
        1.0,
    );
    Tensor::from_data(TensorData::new(values, [scales.len(), width]), device)
}
