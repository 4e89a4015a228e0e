//! DDIM (Song et al. 2021; diffusers' `DDIMScheduler`): from the predicted x₀ and ε at ᾱ_t,
//! the sample at ᾱ_prev is √ᾱ_prev·x₀ + √(1 − ᾱ_prev − σ²)·ε (+ σ·noise), with
//! σ = η·√((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)); η = 0 (the pipelines' default) is
//! deterministic.
//!
//! As in diffusers, the previous timestep is always t − N/steps, whatever the spacing (with
//! `linspace` or `trailing` that is not the next timestep of the list), and past the start
//! it is ᾱ = 1 with `set_alpha_to_one`, else ᾱ₀. `clip_sample` clamps x₀; dynamic
//! thresholding is not implemented.

use burn::prelude::*;

use super::betas::alphas_cumprod;
use super::numpy::round;
use super::prediction::{vp_epsilon, vp_x0};
use super::resolve::{Prediction, Resolve, Spacing};
use super::spacing::spaced_timesteps;
use super::{Sampler, StepOutput};
use crate::ModelError;

#[derive(Debug)]
pub(crate) struct Ddim {
    timesteps: Vec<f64>,
    /// The same, as indices into `alphas_cumprod`.
    indices: Vec<usize>,
    alphas_cumprod: Vec<f64>,
    /// ᾱ before the first training step.
    final_alpha_cumprod: f64,
    /// N / steps: how far back each step goes.
    stride: usize,
    prediction: Prediction,
    clip: Option<f64>,
    eta: f64,
}

impl Ddim {
    pub fn new(r: &Resolve, steps: usize) -> Result<Self, ModelError> {
        r.reject(
            "thresholding",
            r.config.thresholding,
            "dynamic thresholding is not implemented",
        )?;
        let prediction = r.prediction()?;
        let spacing = r.spacing()?;
        let n = r.num_train_timesteps()?;
        let alphas_cumprod = alphas_cumprod(r)?;
        let mut timesteps = spaced_timesteps(spacing, n, steps, r.steps_offset());
        if spacing == Spacing::Linspace {
            timesteps.iter_mut().for_each(|t| *t = round(*t));
        }
        let indices = timestep_indices(r, &timesteps, n)?;
        let final_alpha_cumprod = if r.set_alpha_to_one() {
            1.0
        } else {
            alphas_cumprod[0]
        };
        Ok(Self {
            timesteps,
            indices,
            alphas_cumprod,
            final_alpha_cumprod,
            stride: n / steps,
            prediction,
            clip: r.clip_range()?,
            eta: 0.0,
        })
    }

    /// (ᾱ_t, ᾱ_prev) of step `step`.
    fn alpha_bars(&self, step: usize) -> (f64, f64) {
        let t = self.indices[step];
        let prev = t
            .checked_sub(self.stride)
            .map_or(self.final_alpha_cumprod, |p| self.alphas_cumprod[p]);
        (self.alphas_cumprod[t], prev)
    }

    /// σ of step `step`: the scale of its fresh noise.
    fn std_dev(&self, step: usize) -> f64 {
        let (bar, prev) = self.alpha_bars(step);
        let variance = (1.0 - prev) / (1.0 - bar) * (1.0 - bar / prev);
        self.eta * variance.sqrt()
    }
}

/// Integer timesteps as indices into the training schedule; a `steps_offset` that pushes one
/// past its end is an error (diffusers would index out of range).
pub(crate) fn timestep_indices(
    r: &Resolve,
    timesteps: &[f64],
    n: usize,
) -> Result<Vec<usize>, ModelError> {
    timesteps
        .iter()
        .map(|&t| {
            if (0.0..n as f64).contains(&t) {
                Ok(t as usize)
            } else {
                Err(r.error(
                    "steps_offset",
                    format!("timestep {t} is outside the {n} training steps"),
                ))
            }
        })
        .collect()
}

impl Sampler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn noise_scale(&self, step: usize) -> f64 {
        if self.eta > 0.0 {
            self.std_dev(step)
        } else {
            0.0
        }
    }

    fn noise_levels(&self, step: usize) -> (f64, f64) {
        let bar = self.alphas_cumprod[self.indices[step]];
        (bar.sqrt(), (1.0 - bar).sqrt())
    }

    fn set_eta(&mut self, eta: f64) {
        self.eta = eta;
    }

    fn step(
        &mut self,
        output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, ModelError> {
        let (bar, prev) = self.alpha_bars(step);
        let (alpha, sigma) = (bar.sqrt(), (1.0 - bar).sqrt());
        let mut denoised = vp_x0(
            self.prediction,
            output.clone(),
            sample.clone(),
            alpha,
            sigma,
        );
        // ε from the unclipped x₀ (diffusers' `use_clipped_model_output=False`).
        let epsilon = vp_epsilon(self.prediction, output, sample, alpha, sigma);
        if let Some(range) = self.clip {
            denoised = denoised.clamp(-range, range);
        }
        let std_dev = self.noise_scale(step);
        let direction = (1.0 - prev - std_dev * std_dev).sqrt();
        let mut prev_sample =
            denoised.clone().mul_scalar(prev.sqrt()) + epsilon.mul_scalar(direction);
        if let Some(noise) = noise
            && std_dev > 0.0
        {
            prev_sample = prev_sample + noise.mul_scalar(std_dev);
        }
        Ok(StepOutput {
            prev_sample,
            denoised,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::scheduler::SamplerKind;
    use crate::diffusion::scheduler::config::SchedulerConfig;

    fn ddim(json: &str, steps: usize) -> Ddim {
        let config: SchedulerConfig = serde_json::from_str(json).unwrap();
        Ddim::new(&Resolve::new(&config, SamplerKind::Ddim), steps).unwrap()
    }

    #[test]
    fn timesteps_and_previous_steps() {
        let leading = ddim(r#"{"steps_offset": 1, "set_alpha_to_one": false}"#, 4);
        assert_eq!(leading.timesteps, vec![751.0, 501.0, 251.0, 1.0]);
        assert_eq!(leading.alpha_bars(0).1, leading.alphas_cumprod[501]);
        // t = 1 steps past the start, to ᾱ₀ without set_alpha_to_one.
        assert_eq!(leading.alpha_bars(3).1, leading.alphas_cumprod[0]);
        // linspace 3 steps: 499.5 rounds to 500 (numpy's ties to even).
        let linspace = ddim(r#"{"timestep_spacing": "linspace"}"#, 3);
        assert_eq!(linspace.timesteps, vec![999.0, 500.0, 0.0]);
        // The stride is N / steps = 333 whatever the spacing: 999 goes back to 666.
        assert_eq!(linspace.alpha_bars(0).1, linspace.alphas_cumprod[666]);
        assert_eq!(linspace.alpha_bars(2).1, 1.0);
        let trailing = ddim(r#"{"timestep_spacing": "trailing"}"#, 50);
        assert_eq!(
            (trailing.timesteps[0], trailing.timesteps[49]),
            (999.0, 19.0)
        );
    }

    #[test]
    fn eta_noise_vanishes_on_the_last_step() {
        let mut d = ddim("{}", 10);
        assert_eq!(d.noise_scale(0), 0.0);
        d.set_eta(1.0);
        assert!(d.noise_scale(0) > 0.0);
        assert_eq!(d.noise_scale(9), 0.0);
    }

    #[test]
    fn an_offset_past_the_schedule_is_an_error() {
        let config: SchedulerConfig =
            serde_json::from_str(r#"{"steps_offset": 300, "num_train_timesteps": 1000}"#).unwrap();
        let err = Ddim::new(&Resolve::new(&config, SamplerKind::Ddim), 4).unwrap_err();
        assert!(err.to_string().contains("steps_offset"), "{err}");
    }
}
