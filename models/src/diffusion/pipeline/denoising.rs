//! One image on its way: its latent, its own sampler (with the sampler's history), its text
//! embeddings, and what inpainting adds. The pipeline advances many of these together, one
//! batched UNet call per step, each at its own timestep.

use burn::prelude::*;

use crate::diffusion::scheduler::Scheduler;

/// How the mask takes part in each step.
#[derive(Debug, Clone)]
pub(crate) enum Inpainting {
    /// A 9-channel inpainting UNet reads the mask and the masked picture's latent beside the
    /// noisy latent.
    Channels {
        mask: Tensor<4>,
        masked_latent: Tensor<4>,
    },
    /// A plain UNet: after each step the kept region is put back, noised to the next step's
    /// level (diffusers' latent blending).
    Blend {
        mask: Tensor<4>,
        picture_latent: Tensor<4>,
    },
}

/// The state of one image between steps.
#[derive(Debug)]
pub struct Denoising {
    pub(crate) latent: Tensor<4>,
    pub(crate) scheduler: Scheduler,
    /// The next step to run (the schedule may start late: img2img's strength).
    pub(crate) next: usize,
    pub(crate) first: usize,
    /// `[1, tokens, width]` (conditional only) or `[2, tokens, width]` (unconditional, then
    /// conditional) when guidance runs.
    pub(crate) text: Tensor<3>,
    pub(crate) guidance_scale: f64,
    pub(crate) guided: bool,
    pub(crate) inpainting: Option<Inpainting>,
    /// The initial noise, which blending and img2img noise the picture with.
    pub(crate) noise: Tensor<4>,
    /// Seeds the fresh noise ancestral and LCM samplers draw at each step.
    pub(crate) step_seed: u64,
    pub(crate) denoised: Option<Tensor<4>>,
}

impl Denoising {
    /// Steps this image runs in all (fewer than requested with an img2img strength < 1).
    pub fn total_steps(&self) -> usize {
        self.scheduler.len() - self.first
    }

    /// Steps already run.
    pub fn steps_done(&self) -> usize {
        self.next - self.first
    }

    pub fn is_done(&self) -> bool {
        self.next >= self.scheduler.len()
    }

    /// `[height, width]` of the latent: images batch together only at the same size.
    pub fn latent_size(&self) -> [usize; 2] {
        let [_, _, h, w] = self.latent.dims();
        [h, w]
    }

    /// The current latent `[1, channels, h, w]` (in the UNet's scale).
    pub fn latent(&self) -> &Tensor<4> {
        &self.latent
    }

    /// The sampler's latest prediction of the finished latent (what a partial image shows).
    pub fn denoised(&self) -> Option<&Tensor<4>> {
        self.denoised.as_ref()
    }
}
