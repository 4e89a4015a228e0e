//! The samplers of a diffusion pipeline, reproducing diffusers' schedulers: Euler, Euler
//! ancestral, DDIM, DPM-Solver multistep (DPM++ 2M) and LCM, configured from a diffusers
//! `scheduler/scheduler_config.json` ([`SchedulerConfig`]).
//!
//! A [`Scheduler`] is built for a number of steps and addressed by step index (0‥[`len`]),
//! never by timestep value, so no float timestep is ever compared. The loop of a text-to-image
//! run:
//!
//! ```text
//! x = noise · init_noise_sigma()
//! for step in 0..len():
//!     out = unet(scale_model_input(x, step), timesteps()[step], …)
//!     x = step(out, step, x, needs_noise(step).then(fresh noise)).prev_sample
//! ```
//!
//! Image-to-image and inpainting with strength < 1 start part-way: [`Scheduler::start_at`]
//! returns the first step (diffusers' `get_timesteps`), the initial latents are
//! `add_noise(image, noise, first)`, and the loop runs `first..len()`. Indices stay indices
//! into the whole schedule (as diffusers' `set_begin_index` keeps them), so inpainting's
//! re-noised original after step `i` is `add_noise(original, noise, i + 1)`.
//!
//! The scalar arithmetic is f64 on the host; tensors are only scaled and added elementwise, so
//! a step runs on whatever device the tensors are on and never reads them back.
//!
//! [`len`]: Scheduler::len

mod betas;
mod config;
mod ddim;
mod dpm_solver;
mod euler;
mod euler_ancestral;
mod lcm;
mod numpy;
mod prediction;
mod python_json;
mod resolve;
mod sigmas;
mod spacing;
#[cfg(test)]
mod tests;

use burn::prelude::*;

pub use config::SchedulerConfig;

use crate::ModelError;
use prediction::lincomb;
use resolve::Resolve;

/// The samplers we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamplerKind {
    /// Euler (`EulerDiscreteScheduler`): deterministic, first order in σ.
    Euler,
    /// Euler ancestral (`EulerAncestralDiscreteScheduler`): Euler plus fresh noise each step.
    EulerAncestral,
    /// DDIM (`DDIMScheduler`), deterministic (η = 0) unless [`Scheduler::set_eta`].
    Ddim,
    /// DPM-Solver multistep (`DPMSolverMultistepScheduler`): DPM++ 2M with the defaults.
    DpmSolverMultistep,
    /// Latent consistency (`LCMScheduler`), for LCM-distilled networks (2–8 steps).
    Lcm,
}

impl SamplerKind {
    /// Every kind, in the order [`name`](Self::name)s are listed to users.
    pub const ALL: [Self; 5] = [
        Self::Euler,
        Self::EulerAncestral,
        Self::Ddim,
        Self::DpmSolverMultistep,
        Self::Lcm,
    ];

    /// A user-facing sampler name: `euler`, `euler_a` (or `euler_ancestral`), `ddim`,
    /// `dpm++_2m` (or `dpmpp_2m`), `lcm`; case and `-`/`_` do not matter.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        let normal = name.trim().to_ascii_lowercase().replace('-', "_");
        Ok(match normal.as_str() {
            "euler" => Self::Euler,
            "euler_a" | "euler_ancestral" => Self::EulerAncestral,
            "ddim" => Self::Ddim,
            "dpm++_2m" | "dpmpp_2m" | "dpm++2m" | "dpmpp2m" => Self::DpmSolverMultistep,
            "lcm" => Self::Lcm,
            _ => {
                let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.name()).collect();
                return Err(ModelError::InvalidInput(format!(
                    "unknown sampler {name:?} (expected one of {})",
                    known.join(", ")
                )));
            }
        })
    }

    /// The canonical user-facing name ([`parse`](Self::parse) reads it back).
    pub fn name(self) -> &'static str {
        match self {
            Self::Euler => "euler",
            Self::EulerAncestral => "euler_a",
            Self::Ddim => "ddim",
            Self::DpmSolverMultistep => "dpm++_2m",
            Self::Lcm => "lcm",
        }
    }

    /// The diffusers class this kind reproduces.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Euler => "EulerDiscreteScheduler",
            Self::EulerAncestral => "EulerAncestralDiscreteScheduler",
            Self::Ddim => "DDIMScheduler",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            Self::Lcm => "LCMScheduler",
        }
    }

    /// The kind for a config's `_class_name`: ours, or the closest one for a class we do not
    /// implement: `PNDMScheduler` (SD 1.x's default, PLMS: a linear multistep method on ε) and
    /// `UniPCMultistepScheduler`, `DEISMultistepScheduler`, `DPMSolverSinglestepScheduler`
    /// (multistep exponential integrators) → DPM++ 2M; `LMSDiscreteScheduler`,
    /// `HeunDiscreteScheduler`, `KDPM2DiscreteScheduler` (k-diffusion ODE samplers in σ) →
    /// Euler; `KDPM2AncestralDiscreteScheduler` → Euler ancestral; `DDPMScheduler` (the same
    /// ᾱ parametrisation) → DDIM; `TCDScheduler` → LCM. `None` for anything else.
    pub fn from_class_name(name: &str) -> Option<Self> {
        Some(match name {
            "EulerDiscreteScheduler"
            | "LMSDiscreteScheduler"
            | "HeunDiscreteScheduler"
            | "KDPM2DiscreteScheduler" => Self::Euler,
            "EulerAncestralDiscreteScheduler" | "KDPM2AncestralDiscreteScheduler" => {
                Self::EulerAncestral
            }
            "DDIMScheduler" | "DDPMScheduler" => Self::Ddim,
            "DPMSolverMultistepScheduler"
            | "PNDMScheduler"
            | "UniPCMultistepScheduler"
            | "DEISMultistepScheduler"
            | "DPMSolverSinglestepScheduler" => Self::DpmSolverMultistep,
            "LCMScheduler" | "TCDScheduler" => Self::Lcm,
            _ => return None,
        })
    }
}

/// What one step produces.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The sample for the next step (after the last step: the final latents).
    pub prev_sample: Tensor<4>,
    /// The current prediction of the clean latents x₀ (LCM: its boundary-conditioned
    /// estimate), for previews of a run in progress.
    pub denoised: Tensor<4>,
}

/// One sampler's schedule and update rule. Step indices are checked by [`Scheduler`].
trait Sampler: std::fmt::Debug + Send {
    /// The network's timestep at each step.
    fn timesteps(&self) -> &[f64];

    /// The k-diffusion sigmas, for the samplers that work in them.
    fn sigmas(&self) -> Option<&[f64]> {
        None
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// The factor the network's input is scaled by at `step`.
    fn input_scale(&self, _step: usize) -> f64 {
        1.0
    }

    /// The scale of the fresh noise `step` adds (0: none).
    fn noise_scale(&self, step: usize) -> f64;

    /// (a, b): a sample noised to `step`'s level is a·x₀ + b·noise.
    fn noise_levels(&self, step: usize) -> (f64, f64);

    /// DDIM's η; ignored by the others, as diffusers' pipelines ignore it.
    fn set_eta(&mut self, _eta: f64) {}

    /// Forgets the history of earlier steps.
    fn reset(&mut self) {}

    /// Step `step` from `sample` given the network's `output`; `noise` is present when
    /// `noise_scale(step) > 0`.
    fn step(
        &mut self,
        output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, ModelError>;
}

/// A sampler set up for one run of a fixed number of steps. Stateful (DPM-Solver keeps the
/// last outputs): one per generation.
#[derive(Debug)]
pub struct Scheduler {
    kind: SamplerKind,
    sampler: Box<dyn Sampler>,
    begin: usize,
}

impl Scheduler {
    /// A `kind` sampler over `steps` steps of `config`'s schedule. An unsupported or invalid
    /// setting is [`ModelError::Config`] naming the field; a step count outside 1‥N (the
    /// training steps; LCM: its `original_inference_steps`) is [`ModelError::InvalidInput`].
    pub fn new(
        config: &SchedulerConfig,
        kind: SamplerKind,
        steps: usize,
    ) -> Result<Self, ModelError> {
        let r = Resolve::new(config, kind);
        let n = r.num_train_timesteps()?;
        if steps == 0 || steps > n {
            return Err(ModelError::InvalidInput(format!(
                "{steps} steps: expected 1 to {n} (the model's training steps)"
            )));
        }
        let sampler: Box<dyn Sampler> = match kind {
            SamplerKind::Euler => Box::new(euler::Euler::new(&r, steps)?),
            SamplerKind::EulerAncestral => {
                Box::new(euler_ancestral::EulerAncestral::new(&r, steps)?)
            }
            SamplerKind::Ddim => Box::new(ddim::Ddim::new(&r, steps)?),
            SamplerKind::DpmSolverMultistep => Box::new(dpm_solver::DpmSolver::new(&r, steps)?),
            SamplerKind::Lcm => Box::new(lcm::Lcm::new(&r, steps)?),
        };
        Ok(Self {
            kind,
            sampler,
            begin: 0,
        })
    }

    /// Which sampler this is.
    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    /// The number of steps of the whole schedule (usually the `steps` asked for; DPM-Solver
    /// with `lambda_min_clipped` may have fewer).
    pub fn len(&self) -> usize {
        self.sampler.timesteps().len()
    }

    /// Never: a schedule has at least one step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The network's timestep at each step (fractional for Euler with `linspace` spacing or
    /// Karras sigmas; the UNet takes float timesteps).
    pub fn timesteps(&self) -> &[f64] {
        self.sampler.timesteps()
    }

    /// The k-diffusion sigmas σ = √((1 − ᾱ)/ᾱ) of each step and the one after the last
    /// (Euler, Euler ancestral and DPM-Solver, as diffusers' `scheduler.sigmas`); `None` for
    /// DDIM and LCM, which work in ᾱ.
    pub fn sigmas(&self) -> Option<&[f64]> {
        self.sampler.sigmas()
    }

    /// The scale of the starting noise of a text-to-image run.
    pub fn init_noise_sigma(&self) -> f64 {
        self.sampler.init_noise_sigma()
    }

    /// The first step of the run: 0, or what [`start_at`](Self::start_at) set.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// DDIM's η (0: deterministic, 1: DDPM-like), in [0, 1]; the other samplers ignore it, as
    /// diffusers' pipelines do.
    pub fn set_eta(&mut self, eta: f64) -> Result<(), ModelError> {
        if !(0.0..=1.0).contains(&eta) {
            return Err(ModelError::InvalidInput(format!(
                "eta {eta} is outside [0, 1]"
            )));
        }
        self.sampler.set_eta(eta);
        Ok(())
    }

    /// For image-to-image and inpainting: start with `strength` (0, 1] of the schedule left,
    /// as diffusers' `get_timesteps`: `init = min(⌊len·strength⌋, len)`, first step
    /// `len − init`. Returns that first step; the caller noises its latents with
    /// `add_noise(latents, noise, first)` and runs the steps `first..len()`. Forgets any
    /// earlier steps. A strength that leaves no step to run is an error.
    pub fn start_at(&mut self, strength: f64) -> Result<usize, ModelError> {
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(ModelError::InvalidInput(format!(
                "strength {strength} is outside (0, 1]"
            )));
        }
        let len = self.len();
        let init = ((len as f64 * strength) as usize).min(len);
        if init == 0 {
            return Err(ModelError::InvalidInput(format!(
                "strength {strength} of {len} steps leaves no step to run"
            )));
        }
        self.begin = len - init;
        self.sampler.reset();
        Ok(self.begin)
    }

    /// The network's input at `step`: the Euler samplers scale the sample by 1/√(σ² + 1), the
    /// others pass it through. Panics if `step >= len()`.
    pub fn scale_model_input(&self, sample: Tensor<4>, step: usize) -> Tensor<4> {
        self.check_index(step);
        let scale = self.sampler.input_scale(step);
        if scale == 1.0 {
            sample
        } else {
            sample.mul_scalar(scale)
        }
    }

    /// Whether `step` adds fresh noise, so [`step`](Self::step) needs some: Euler ancestral
    /// while σ_up > 0 (every step but the last), SDE-DPM-Solver++ likewise, LCM every step but
    /// the last, DDIM only with η > 0; never Euler or DPM++ 2M.
    pub fn needs_noise(&self, step: usize) -> bool {
        step < self.len() && self.sampler.noise_scale(step) > 0.0
    }

    /// One step from `sample` (the current latents, not the scaled network input) given the
    /// network's `model_output` at `timesteps()[step]`. `noise` (standard normal, the shape of
    /// the sample) is required where [`needs_noise`](Self::needs_noise), and ignored elsewhere.
    /// DPM-Solver keeps the outputs of earlier steps and needs its steps in order.
    pub fn step(
        &mut self,
        model_output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, ModelError> {
        if step >= self.len() {
            return Err(ModelError::InvalidInput(format!(
                "step {step} of a {}-step schedule",
                self.len()
            )));
        }
        let shape = sample.dims();
        if model_output.dims() != shape {
            return Err(ModelError::InvalidInput(format!(
                "model output {:?} does not match the sample {shape:?}",
                model_output.dims()
            )));
        }
        let noise = if self.needs_noise(step) {
            match noise {
                Some(noise) if noise.dims() == shape => Some(noise),
                Some(noise) => {
                    return Err(ModelError::InvalidInput(format!(
                        "noise {:?} does not match the sample {shape:?}",
                        noise.dims()
                    )));
                }
                None => {
                    return Err(ModelError::InvalidInput(format!(
                        "the {} sampler needs noise at step {step}",
                        self.kind.name()
                    )));
                }
            }
        } else {
            None
        };
        self.sampler.step(model_output, step, sample, noise)
    }

    /// `original` noised to the level of `step` (as each diffusers scheduler's `add_noise`):
    /// `original + σ·noise` for the Euler samplers, `α·original + s·noise` for the others (DDIM
    /// and LCM: √ᾱ_t and √(1 − ᾱ_t); DPM-Solver: from its σ). Panics if `step >= len()`.
    pub fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, step: usize) -> Tensor<4> {
        self.check_index(step);
        let (a, b) = self.sampler.noise_levels(step);
        lincomb(original, a, noise, b)
    }

    fn check_index(&self, step: usize) {
        assert!(
            step < self.len(),
            "step {step} of a {}-step schedule",
            self.len()
        );
    }
}
