//! Euler ancestral (diffusers' `EulerAncestralDiscreteScheduler`, k-diffusion's
//! `sample_euler_ancestral`): an Euler step down to σ_down, then fresh noise of σ_up, where
//! σ_up² = σᵢ₊₁²(σᵢ² − σᵢ₊₁²)/σᵢ² and σ_down² = σᵢ₊₁² − σ_up², so the sample reaches the noise
//! level σᵢ₊₁ again. Its diffusers class has only the plain schedule: `timestep_spacing`,
//! linearly interpolated sigmas ending at 0; no Karras sigmas, and no `sample` prediction.

use burn::prelude::*;

use super::betas::sigma_alphas_cumprod;
use super::euler::init_noise_sigma;
use super::numpy::{interp, to_f32};
use super::prediction::ve_x0;
use super::resolve::{Prediction, Resolve};
use super::sigmas::train_sigmas;
use super::spacing::spaced_timesteps;
use super::{Sampler, StepOutput};
use crate::ModelError;

#[derive(Debug)]
pub(crate) struct EulerAncestral {
    timesteps: Vec<f64>,
    /// σ for each step and 0 after the last.
    sigmas: Vec<f64>,
    prediction: Prediction,
    init_noise_sigma: f64,
}

impl EulerAncestral {
    pub fn new(r: &Resolve, steps: usize) -> Result<Self, ModelError> {
        let prediction = r.prediction()?;
        if prediction == Prediction::Sample {
            return Err(r.error(
                "prediction_type",
                "Euler ancestral does not support `sample` prediction (nor does diffusers)",
            ));
        }
        let spacing = r.spacing()?;
        let n = r.num_train_timesteps()?;
        let bar = sigma_alphas_cumprod(r)?;
        let train = train_sigmas(&bar);
        let timesteps: Vec<f64> = spaced_timesteps(spacing, n, steps, r.steps_offset())
            .into_iter()
            .map(to_f32)
            .collect();
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        sigmas.push(0.0);
        let init_noise_sigma = init_noise_sigma(&sigmas, spacing);
        Ok(Self {
            timesteps,
            sigmas,
            prediction,
            init_noise_sigma,
        })
    }

    /// (σ_up, σ_down) of step `step`.
    fn up_down(&self, step: usize) -> (f64, f64) {
        let (from, to) = (self.sigmas[step], self.sigmas[step + 1]);
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        (up, down)
    }
}

impl Sampler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn input_scale(&self, step: usize) -> f64 {
        1.0 / (self.sigmas[step].powi(2) + 1.0).sqrt()
    }

    fn noise_scale(&self, step: usize) -> f64 {
        self.up_down(step).0
    }

    fn noise_levels(&self, step: usize) -> (f64, f64) {
        (1.0, self.sigmas[step])
    }

    fn step(
        &mut self,
        output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, ModelError> {
        let sigma = self.sigmas[step];
        let (up, down) = self.up_down(step);
        let denoised = ve_x0(self.prediction, output, sample.clone(), sigma);
        let derivative = (sample.clone() - denoised.clone()).mul_scalar((down - sigma) / sigma);
        let mut prev_sample = sample + derivative;
        if let Some(noise) = noise
            && up > 0.0
        {
            prev_sample = prev_sample + noise.mul_scalar(up);
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

    #[test]
    fn noise_restores_the_next_sigma_and_the_last_step_adds_none() {
        let config: SchedulerConfig = serde_json::from_str(
            r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#,
        )
        .unwrap();
        let e =
            EulerAncestral::new(&Resolve::new(&config, SamplerKind::EulerAncestral), 10).unwrap();
        for step in 0..9 {
            let (up, down) = e.up_down(step);
            let to = e.sigmas[step + 1];
            assert!((up * up + down * down - to * to).abs() < 1e-9 * to * to);
            assert!(up > 0.0 && down < to);
        }
        assert_eq!(e.up_down(9), (0.0, 0.0));
        let sample: SchedulerConfig =
            serde_json::from_str(r#"{"prediction_type": "sample"}"#).unwrap();
        assert!(
            EulerAncestral::new(&Resolve::new(&sample, SamplerKind::EulerAncestral), 4).is_err()
        );
    }
}
