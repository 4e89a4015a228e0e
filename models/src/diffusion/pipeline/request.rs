//! What one image of a generation asks for: the prompt, size, sampler, steps, guidance,
//! seed, and whether it starts from noise, from a picture (img2img) or from a picture and a
//! mask (inpainting).

use super::pixels::{Mask, Picture};
use crate::diffusion::scheduler::SamplerKind;

/// Where denoising starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Pure noise: text to image.
    Noise,
    /// `picture` (already the requested size) noised to `strength` (0 < strength ≤ 1: the
    /// fraction of the schedule that runs).
    Picture { picture: Picture, strength: f64 },
    /// `picture` with the white part of `mask` repainted.
    Inpaint {
        picture: Picture,
        mask: Mask,
        strength: f64,
    },
}

/// The initial noise of an image.
#[derive(Debug, Clone)]
pub enum Noise {
    /// Standard normal values from this seed (`dcgan::latents`): the same picture for the
    /// same seed on every device and in every Hearth version.
    Seed(u64),
    /// These values, `[latent_channels, h, w]` row-major (reference tests).
    Given(Vec<f32>),
}

/// One image to make.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    pub prompt: String,
    /// Empty: the unconditional (empty-prompt) embedding, as diffusers uses.
    pub negative_prompt: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance; 1 or less runs the conditional branch alone.
    pub guidance_scale: f64,
    pub sampler: SamplerKind,
    /// Text-encoder layers to skip from the end (0: the last layer's output).
    pub clip_skip: usize,
    pub noise: Noise,
    pub start: Start,
}
