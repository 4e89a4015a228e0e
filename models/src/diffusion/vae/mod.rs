//! diffusers' `AutoencoderKL`: the decoder turns denoised latents into pictures; the encoder
//! turns an input picture into latents for img2img and inpainting. `scaling_factor` (and
//! `shift_factor`, when set) map between the VAE's latents and the UNet's.

mod coder;
mod config;

use std::path::Path;

use burn::prelude::*;

use coder::{Decoder, Encoder};
use config::VaeConfig;

use super::weights::ComponentWeights;
use crate::ModelError;

/// A loaded VAE (the encoder only when the pipeline edits images).
#[derive(Debug)]
pub struct Vae {
    config: VaeConfig,
    encoder: Option<Encoder>,
    decoder: Decoder,
}

/// The log-variance clamp of diffusers' `DiagonalGaussianDistribution`.
const LOGVAR_RANGE: (f32, f32) = (-30.0, 20.0);

impl Vae {
    /// Loads `pipeline/vae`; the encoder too when `with_encoder`.
    pub fn load(pipeline: &Path, device: &Device, with_encoder: bool) -> Result<Self, ModelError> {
        let config = VaeConfig::load(&pipeline.join("vae/config.json"))?;
        let weights = ComponentWeights::open(pipeline, "vae", "diffusion_pytorch_model", device)?;
        let encoder = with_encoder
            .then(|| Encoder::load(&weights, &config))
            .transpose()?;
        let decoder = Decoder::load(&weights, &config)?;
        Ok(Self {
            config,
            encoder,
            decoder,
        })
    }

    /// Pixels per latent cell, per side.
    pub fn scale_factor(&self) -> usize {
        self.config.scale_factor()
    }

    pub fn latent_channels(&self) -> usize {
        self.config.latent_channels
    }

    /// Whether [`Vae::encode`] is available.
    pub fn can_encode(&self) -> bool {
        self.encoder.is_some()
    }

    /// The latent distribution of `image` `[batch, 3, h, w]` (values in −1..1): its mean and
    /// its log-variance, each `[batch, latent_channels, h/f, w/f]`, in the VAE's own scale.
    pub fn encode(&self, image: Tensor<4>) -> Result<(Tensor<4>, Tensor<4>), ModelError> {
        let encoder = self.encoder.as_ref().ok_or_else(|| {
            ModelError::InvalidInput("this VAE was loaded without its encoder".into())
        })?;
        let moments = encoder.forward(image);
        let [batch, _, h, w] = moments.dims();
        let c = self.config.latent_channels;
        let mean = moments
            .clone()
            .slice(s![.., 0..c])
            .reshape([batch, c, h, w]);
        let logvar = moments
            .slice(s![.., c..2 * c])
            .reshape([batch, c, h, w])
            .clamp(LOGVAR_RANGE.0, LOGVAR_RANGE.1);
        Ok((mean, logvar))
    }

    /// The UNet's latent for a VAE latent: `(z − shift) · scaling_factor`.
    pub fn to_unet_latent(&self, latent: Tensor<4>) -> Tensor<4> {
        let shifted = match self.config.shift_factor {
            Some(shift) => latent.sub_scalar(shift),
            None => latent,
        };
        shifted.mul_scalar(self.config.scaling_factor)
    }

    /// The image `[batch, 3, h·f, w·f]` (nominally −1..1, not clamped) of the UNet's latent
    /// `[batch, latent_channels, h, w]`.
    pub fn decode_unet_latent(&self, latent: Tensor<4>) -> Tensor<4> {
        let latent = latent.div_scalar(self.config.scaling_factor);
        let latent = match self.config.shift_factor {
            Some(shift) => latent.add_scalar(shift),
            None => latent,
        };
        self.decoder.forward(latent)
    }

    /// The decoder alone, on a latent in the VAE's own scale.
    pub fn decode(&self, latent: Tensor<4>) -> Tensor<4> {
        self.decoder.forward(latent)
    }
}
