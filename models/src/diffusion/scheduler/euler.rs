//! Euler (diffusers' `EulerDiscreteScheduler`, k-diffusion's `sample_euler`): the sample lives
//! at the variance-exploding scale x = x₀ + σ·ε, the network sees x/√(σ² + 1), and each step
//! moves along the ODE derivative (x − x₀)/σ from σᵢ to σᵢ₊₁.
//!
//! Timesteps by `timestep_spacing` (fractional with `linspace`, stored as f32 as diffusers
//! does); sigmas interpolated from the training schedule (`interpolation_type` `linear`, or
//! `log_linear`), or replaced by a Karras or exponential ramp whose timesteps are mapped back
//! from the sigmas; `final_sigmas_type`; `timestep_type: continuous` with v-prediction feeds
//! 0.25·ln σ as the timestep. Churn (`s_churn`, a pipeline argument that defaults to 0) is not
//! implemented.

use burn::prelude::*;

use super::betas::sigma_alphas_cumprod;
use super::numpy::{interp, linspace, to_f32};
use super::prediction::ve_x0;
use super::resolve::{Prediction, Resolve, Spacing};
use super::sigmas::{exponential, karras, sigma_to_t, train_sigmas};
use super::spacing::spaced_timesteps;
use super::{Sampler, StepOutput};
use crate::ModelError;

#[derive(Debug)]
pub(crate) struct Euler {
    timesteps: Vec<f64>,
    /// σ for each step and the one after the last (with `log_linear`, one more that is never
    /// reached, as in diffusers).
    sigmas: Vec<f64>,
    prediction: Prediction,
    init_noise_sigma: f64,
}

impl Euler {
    pub fn new(r: &Resolve, steps: usize) -> Result<Self, ModelError> {
        let config = r.config;
        r.reject(
            "use_beta_sigmas",
            config.use_beta_sigmas,
            "beta-distribution sigmas are not implemented",
        )?;
        let use_karras = config.use_karras_sigmas.unwrap_or(false);
        let use_exponential = config.use_exponential_sigmas.unwrap_or(false);
        if use_karras && use_exponential {
            return Err(r.error(
                "use_exponential_sigmas",
                "only one of use_karras_sigmas and use_exponential_sigmas can be on",
            ));
        }
        let prediction = r.prediction()?;
        let spacing = r.spacing()?;
        let n = r.num_train_timesteps()?;
        let bar = sigma_alphas_cumprod(r)?;
        let train = train_sigmas(&bar);
        let log_train: Vec<f64> = train.iter().map(|s| s.ln()).collect();

        let mut timesteps: Vec<f64> = spaced_timesteps(spacing, n, steps, r.steps_offset())
            .into_iter()
            .map(to_f32)
            .collect();
        let mut sigmas: Vec<f64> = match config.interpolation_type.as_deref().unwrap_or("linear") {
            "linear" => timesteps.iter().map(|&t| interp(t, &train)).collect(),
            "log_linear" => linspace(train[n - 1].ln(), train[0].ln(), steps + 1, true)
                .into_iter()
                .map(f64::exp)
                .collect(),
            other => {
                return Err(r.unknown("interpolation_type", other, "linear or log_linear"));
            }
        };
        if use_karras || use_exponential {
            let min = config.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
            let max = config.sigma_max.unwrap_or(sigmas[0]);
            sigmas = if use_karras {
                karras(min, max, steps)
            } else {
                exponential(min, max, steps)
            };
            timesteps = sigmas
                .iter()
                .map(|&s| to_f32(sigma_to_t(s, &log_train)))
                .collect();
        }
        sigmas.push(if r.final_sigma_zero()? { 0.0 } else { train[0] });
        match config.timestep_type.as_deref().unwrap_or("discrete") {
            "discrete" => {}
            "continuous" => {
                if prediction == Prediction::Velocity {
                    timesteps = sigmas[..steps]
                        .iter()
                        .map(|s| to_f32(0.25 * s.ln()))
                        .collect();
                }
            }
            other => return Err(r.unknown("timestep_type", other, "discrete or continuous")),
        }
        let init_noise_sigma = init_noise_sigma(&sigmas, spacing);
        Ok(Self {
            timesteps,
            sigmas,
            prediction,
            init_noise_sigma,
        })
    }
}

/// The scale of the starting noise: the largest sigma, or √(σ² + 1) of it with `leading`
/// spacing (diffusers' rule, shared by Euler ancestral).
pub(crate) fn init_noise_sigma(sigmas: &[f64], spacing: Spacing) -> f64 {
    let max = sigmas.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match spacing {
        Spacing::Linspace | Spacing::Trailing => max,
        Spacing::Leading => (max * max + 1.0).sqrt(),
    }
}

impl Sampler for Euler {
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

    fn noise_scale(&self, _step: usize) -> f64 {
        0.0
    }

    fn noise_levels(&self, step: usize) -> (f64, f64) {
        (1.0, self.sigmas[step])
    }

    fn step(
        &mut self,
        output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        _noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, ModelError> {
        let (sigma, next) = (self.sigmas[step], self.sigmas[step + 1]);
        let denoised = ve_x0(self.prediction, output, sample.clone(), sigma);
        // x + (x − x₀)/σ · (σᵢ₊₁ − σᵢ).
        let derivative = (sample.clone() - denoised.clone()).mul_scalar((next - sigma) / sigma);
        Ok(StepOutput {
            prev_sample: sample + derivative,
            denoised,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::scheduler::SamplerKind;
    use crate::diffusion::scheduler::config::SchedulerConfig;

    const SD: &str =
        r#""beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012"#;

    fn euler(extra: &str, steps: usize) -> Euler {
        let config: SchedulerConfig = serde_json::from_str(&format!("{{{SD}{extra}}}")).unwrap();
        Euler::new(&Resolve::new(&config, SamplerKind::Euler), steps).unwrap()
    }

    #[test]
    fn linspace_timesteps_are_fractional_f32_and_sigmas_interpolate() {
        let e = euler("", 50);
        assert_eq!(e.timesteps.len(), 50);
        assert_eq!(e.timesteps[1], f64::from((999.0f64 * 48.0 / 49.0) as f32));
        assert_eq!(e.sigmas.len(), 51);
        assert!((e.sigmas[0] - 14.6146).abs() < 1e-3, "{}", e.sigmas[0]);
        assert_eq!(e.sigmas[50], 0.0);
        // t = 0: σ₀ = √(0.00085/0.99915).
        assert!((e.sigmas[49] - (0.00085f64 / 0.99915).sqrt()).abs() < 1e-12);
        assert_eq!(e.init_noise_sigma, e.sigmas[0]);
    }

    #[test]
    fn leading_spacing_scales_the_initial_noise() {
        let e = euler(r#", "timestep_spacing": "leading", "steps_offset": 1"#, 4);
        assert_eq!(e.timesteps, vec![751.0, 501.0, 251.0, 1.0]);
        assert_eq!(e.init_noise_sigma, (e.sigmas[0].powi(2) + 1.0).sqrt());
    }

    #[test]
    fn karras_sigmas_span_the_interpolated_range() {
        let plain = euler("", 4);
        let k = euler(
            r#", "use_karras_sigmas": true, "final_sigmas_type": "sigma_min""#,
            4,
        );
        assert!((k.sigmas[0] - plain.sigmas[0]).abs() < 1e-12);
        assert!((k.sigmas[3] - plain.sigmas[3]).abs() < 1e-12);
        let inv = |s: f64| s.powf(1.0 / 7.0);
        let third = (inv(plain.sigmas[0]) * 2.0 / 3.0 + inv(plain.sigmas[3]) / 3.0).powi(7);
        assert!(
            (k.sigmas[1] - third).abs() < 1e-9 * third,
            "{} vs {third}",
            k.sigmas[1]
        );
        // Mapped back, the end sigmas land on their timesteps.
        assert!((k.timesteps[0] - 999.0).abs() < 1e-3 && k.timesteps[3].abs() < 1e-3);
        assert!((k.sigmas[4] - plain.sigmas[3]).abs() < 1e-12);
    }

    #[test]
    fn log_linear_keeps_diffusers_extra_sigma() {
        let e = euler(r#", "interpolation_type": "log_linear""#, 4);
        assert_eq!((e.timesteps.len(), e.sigmas.len()), (4, 6));
        // The fifth sigma (reached by the last step) is σ₀, not 0.
        assert!((e.sigmas[4] - (0.00085f64 / 0.99915).sqrt()).abs() < 1e-12);
    }
}
