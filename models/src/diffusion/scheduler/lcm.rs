//! Latent consistency models (Luo et al. 2023; diffusers' `LCMScheduler`): each step maps the
//! sample straight to a clean estimate through the consistency boundary condition,
//! denoised = c_out·x₀ + c_skip·x with c_skip = σ_d²/((s·t)² + σ_d²), c_out = s·t/√((s·t)² + σ_d²)
//! (σ_d = 0.5, s = `timestep_scaling`), then re-noises it to the next timestep with fresh noise
//! (every step but the last).
//!
//! The timesteps ignore `timestep_spacing`: they are picked evenly from the distillation
//! schedule k·i − 1 (k = N / `original_inference_steps`, i = 1‥original steps).

use burn::prelude::*;

use super::betas::alphas_cumprod;
use super::ddim::timestep_indices;
use super::numpy::linspace;
use super::prediction::{lincomb, vp_x0};
use super::resolve::{Prediction, Resolve};
use super::{Sampler, StepOutput};
use crate::ModelError;

/// σ_d of the boundary-condition scalings.
const SIGMA_DATA: f64 = 0.5;

#[derive(Debug)]
pub(crate) struct Lcm {
    timesteps: Vec<f64>,
    indices: Vec<usize>,
    alphas_cumprod: Vec<f64>,
    prediction: Prediction,
    clip: Option<f64>,
    timestep_scaling: f64,
}

impl Lcm {
    pub fn new(r: &Resolve, steps: usize) -> Result<Self, ModelError> {
        r.reject(
            "thresholding",
            r.config.thresholding,
            "dynamic thresholding is not implemented",
        )?;
        let n = r.num_train_timesteps()?;
        let original = r.config.original_inference_steps.unwrap_or(50);
        if original == 0 || original > n {
            return Err(r.error(
                "original_inference_steps",
                format!("{original} is not between 1 and num_train_timesteps ({n})"),
            ));
        }
        if steps > original {
            return Err(ModelError::InvalidInput(format!(
                "LCM runs at most original_inference_steps ({original}) steps, not {steps}"
            )));
        }
        let k = n / original;
        // The distillation schedule, descending: k·original − 1, …, 2k − 1, k − 1.
        let schedule: Vec<usize> = (1..=original).rev().map(|i| i * k - 1).collect();
        let timesteps: Vec<f64> = linspace(0.0, original as f64, steps, false)
            .into_iter()
            .map(|i| schedule[i.floor() as usize] as f64)
            .collect();
        let indices = timestep_indices(r, &timesteps, n)?;
        Ok(Self {
            timesteps,
            indices,
            alphas_cumprod: alphas_cumprod(r)?,
            prediction: r.prediction()?,
            clip: r.clip_range()?,
            timestep_scaling: r.config.timestep_scaling.unwrap_or(10.0),
        })
    }

    /// (c_skip, c_out) at step `step`.
    fn scalings(&self, step: usize) -> (f64, f64) {
        let scaled = self.timesteps[step] * self.timestep_scaling;
        let denominator = scaled * scaled + SIGMA_DATA * SIGMA_DATA;
        (
            SIGMA_DATA * SIGMA_DATA / denominator,
            scaled / denominator.sqrt(),
        )
    }
}

impl Sampler for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn noise_scale(&self, step: usize) -> f64 {
        match self.indices.get(step + 1) {
            Some(&prev) => (1.0 - self.alphas_cumprod[prev]).sqrt(),
            None => 0.0,
        }
    }

    fn noise_levels(&self, step: usize) -> (f64, f64) {
        let bar = self.alphas_cumprod[self.indices[step]];
        (bar.sqrt(), (1.0 - bar).sqrt())
    }

    fn step(
        &mut self,
        output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, ModelError> {
        let bar = self.alphas_cumprod[self.indices[step]];
        let mut x0 = vp_x0(
            self.prediction,
            output,
            sample.clone(),
            bar.sqrt(),
            (1.0 - bar).sqrt(),
        );
        if let Some(range) = self.clip {
            x0 = x0.clamp(-range, range);
        }
        let (c_skip, c_out) = self.scalings(step);
        let denoised = lincomb(x0, c_out, sample, c_skip);
        let prev_sample = match (self.indices.get(step + 1), noise) {
            (Some(&prev), Some(noise)) => {
                let bar_prev = self.alphas_cumprod[prev];
                lincomb(
                    denoised.clone(),
                    bar_prev.sqrt(),
                    noise,
                    (1.0 - bar_prev).sqrt(),
                )
            }
            // The last step (or, never through `Scheduler::step`, a step without noise).
            _ => denoised.clone(),
        };
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

    fn lcm(json: &str, steps: usize) -> Result<Lcm, ModelError> {
        let config: SchedulerConfig = serde_json::from_str(json).unwrap();
        Lcm::new(&Resolve::new(&config, SamplerKind::Lcm), steps)
    }

    #[test]
    fn timesteps_come_from_the_distillation_schedule() {
        // k = 20: 999, 979, …, 19; 4 of 50 at indices 0, 12 (12.5), 25, 37 (37.5).
        assert_eq!(
            lcm("{}", 4).unwrap().timesteps,
            vec![999.0, 759.0, 499.0, 259.0]
        );
        let one = lcm("{}", 1).unwrap();
        assert_eq!(one.timesteps, vec![999.0]);
        assert_eq!(one.noise_scale(0), 0.0);
        let eight = lcm(r#"{"original_inference_steps": 100}"#, 8).unwrap();
        assert_eq!(eight.timesteps[..3], [999.0, 879.0, 749.0]);
        assert!(lcm("{}", 51).is_err());
    }

    #[test]
    fn boundary_scalings_follow_the_formula() {
        let l = lcm("{}", 4).unwrap();
        let (c_skip, c_out) = l.scalings(0);
        let s = 9990.0f64;
        assert!((c_skip - 0.25 / (s * s + 0.25)).abs() < 1e-15);
        assert!((c_out - s / (s * s + 0.25).sqrt()).abs() < 1e-12);
    }
}
