//! DPM-Solver multistep (Lu et al. 2022; diffusers' `DPMSolverMultistepScheduler`; "DPM++ 2M"
//! with its defaults): an exponential integrator in λ = ln(α/σ) that reuses the model outputs
//! of the previous one or two steps for second- or third-order updates.
//!
//! Reproduced: `algorithm_type` `dpmsolver++` (data prediction, the default; `deis` is taken
//! for it as diffusers does), `sde-dpmsolver++` (needs noise every step) and `dpmsolver` (noise
//! prediction); `solver_type` `midpoint`/`heun` (UniPC's and DEIS' names mapped to midpoint as
//! diffusers does); `solver_order` 1–3, first-order warm-up steps, and `lower_order_final` /
//! `euler_at_final` / `final_sigmas_type` at the end; timestep spacings on
//! `last_timestep` (after `lambda_min_clipped`); Karras, exponential and Lu-lambda sigmas.
//! Not implemented (an error): the deprecated `sde-dpmsolver`, thresholding, learned
//! variances, beta and flow sigmas.

use burn::prelude::*;

use super::betas::sigma_alphas_cumprod;
use super::numpy::{interp, linspace, round};
use super::prediction::{lincomb, vp_epsilon, vp_x0};
use super::resolve::{BetaSchedule, Prediction, Resolve, Spacing};
use super::sigmas::{exponential, karras, sigma_to_t, train_sigmas};
use super::spacing::trailing;
use super::{Sampler, StepOutput};
use crate::ModelError;

/// Which DPM-Solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    /// DPM-Solver++: integrates the predicted x₀.
    DataOde,
    /// SDE-DPM-Solver++: the same with injected noise.
    DataSde,
    /// The original DPM-Solver: integrates the predicted ε.
    NoiseOde,
}

#[derive(Debug)]
pub(crate) struct DpmSolver {
    timesteps: Vec<f64>,
    /// σ (k-diffusion's) of each step and the one after the last.
    sigmas: Vec<f64>,
    prediction: Prediction,
    algorithm: Algorithm,
    heun: bool,
    order: usize,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma_zero: bool,
    /// The converted outputs of the last `order` steps, oldest first.
    outputs: Vec<Option<Tensor<4>>>,
    /// How many steps have run, up to `order`: the order the history allows.
    lower_order_nums: usize,
    /// The step the history ends at, so a skipped step is an error, not a wrong update.
    last_step: Option<usize>,
}

impl DpmSolver {
    pub fn new(r: &Resolve, steps: usize) -> Result<Self, ModelError> {
        let config = r.config;
        r.reject(
            "thresholding",
            config.thresholding,
            "dynamic thresholding is not implemented",
        )?;
        r.reject(
            "use_beta_sigmas",
            config.use_beta_sigmas,
            "beta-distribution sigmas are not implemented",
        )?;
        r.reject(
            "use_flow_sigmas",
            config.use_flow_sigmas,
            "flow-matching sigmas are not implemented",
        )?;
        if let Some(variance) = config.variance_type.as_deref()
            && matches!(variance, "learned" | "learned_range")
        {
            return Err(r.error(
                "variance_type",
                format!("{variance:?} outputs are not supported"),
            ));
        }
        let algorithm = match config.algorithm_type.as_deref().unwrap_or("dpmsolver++") {
            "dpmsolver++" | "deis" => Algorithm::DataOde,
            "sde-dpmsolver++" => Algorithm::DataSde,
            "dpmsolver" => Algorithm::NoiseOde,
            "sde-dpmsolver" => {
                return Err(r.error(
                    "algorithm_type",
                    "sde-dpmsolver (deprecated in diffusers) is not implemented: use sde-dpmsolver++",
                ));
            }
            other => {
                return Err(r.unknown(
                    "algorithm_type",
                    other,
                    "dpmsolver++, sde-dpmsolver++ or dpmsolver",
                ));
            }
        };
        let heun = match config.solver_type.as_deref().unwrap_or("midpoint") {
            "midpoint" | "logrho" | "bh1" | "bh2" => false,
            "heun" => true,
            other => return Err(r.unknown("solver_type", other, "midpoint or heun")),
        };
        let order = config.solver_order.unwrap_or(2);
        if !(1..=3).contains(&order) {
            return Err(r.error("solver_order", format!("{order} is not 1, 2 or 3")));
        }
        let final_sigma_zero = r.final_sigma_zero()?;
        if algorithm == Algorithm::NoiseOde && final_sigma_zero {
            return Err(r.error(
                "final_sigmas_type",
                "`zero` is not supported with algorithm_type dpmsolver (as in diffusers): use sigma_min",
            ));
        }
        let flags = [
            config.use_karras_sigmas.unwrap_or(false),
            config.use_exponential_sigmas.unwrap_or(false),
            config.use_lu_lambdas.unwrap_or(false),
        ];
        if flags.iter().filter(|&&on| on).count() > 1 {
            return Err(r.error(
                "use_karras_sigmas",
                "only one of use_karras_sigmas, use_exponential_sigmas and use_lu_lambdas can be on",
            ));
        }
        let [use_karras, use_exponential, use_lu] = flags;

        let prediction = r.prediction()?;
        let n = r.num_train_timesteps()?;
        let bar = sigma_alphas_cumprod(r)?;
        let train = train_sigmas(&bar);
        let log_train: Vec<f64> = train.iter().map(|s| s.ln()).collect();
        let last_timestep =
            last_timestep(&bar, config.lambda_min_clipped.unwrap_or(f64::NEG_INFINITY));
        let mut timesteps = spaced(r.spacing()?, last_timestep, n, steps, r.steps_offset());
        if timesteps.is_empty() || timesteps.iter().any(|&t| t < 0.0 || t >= n as f64) {
            return Err(r.error(
                "steps_offset",
                format!("{steps} steps do not fit the {last_timestep} usable training steps"),
            ));
        }
        let (min, max) = (train[0], train[n - 1]);
        // Timesteps mapped back from ramped sigmas are rounded, except for the cosine schedule,
        // then truncated to integers (diffusers' int64 cast).
        let round_back = r.beta_schedule()? != BetaSchedule::SquaredCosCapV2;
        let ramp = if use_karras {
            Some((karras(min, max, steps), round_back))
        } else if use_lu {
            Some((exponential(min, max, steps), round_back))
        } else if use_exponential {
            Some((exponential(min, max, steps), false))
        } else {
            None
        };
        let mut sigmas = match ramp {
            Some((sigmas, rounded)) => {
                timesteps = sigmas
                    .iter()
                    .map(|&s| {
                        let t = sigma_to_t(s, &log_train);
                        if rounded { round(t) } else { t.trunc() }
                    })
                    .collect();
                sigmas
            }
            None => timesteps.iter().map(|&t| interp(t, &train)).collect(),
        };
        sigmas.push(if final_sigma_zero { 0.0 } else { train[0] });
        Ok(Self {
            timesteps,
            sigmas,
            prediction,
            algorithm,
            heun,
            order,
            lower_order_final: r.lower_order_final(),
            euler_at_final: config.euler_at_final.unwrap_or(false),
            final_sigma_zero,
            outputs: vec![None; order],
            lower_order_nums: 0,
            last_step: None,
        })
    }

    /// λ = ln α − ln σ at step `index` of the sigmas.
    fn lambda(&self, index: usize) -> f64 {
        let (alpha, sigma) = alpha_sigma(self.sigmas[index]);
        alpha.ln() - sigma.ln()
    }
}

/// The variance-preserving (α, σ) of a k-diffusion sigma: α = 1/√(σ² + 1), σ·α.
fn alpha_sigma(k_sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (k_sigma * k_sigma + 1.0).sqrt();
    (alpha, k_sigma * alpha)
}

/// The number of training steps whose λ is at least `lambda_min_clipped`, counted from t = 0
/// (λ falls with t): diffusers' `num_train_timesteps − searchsorted(flip(λ), clip)`.
fn last_timestep(alphas_cumprod: &[f64], lambda_min_clipped: f64) -> usize {
    let below = alphas_cumprod
        .iter()
        .filter(|&&bar| 0.5 * bar.ln() - 0.5 * (1.0 - bar).ln() < lambda_min_clipped)
        .count();
    alphas_cumprod.len() - below
}

/// DPM-Solver's spacings: `linspace` and `leading` lay out steps + 1 points and drop the last
/// (t = 0); `trailing` counts down from `last` in strides of N/steps.
fn spaced(spacing: Spacing, last: usize, n: usize, steps: usize, offset: usize) -> Vec<f64> {
    match spacing {
        Spacing::Linspace => {
            let mut points: Vec<f64> = linspace(0.0, last as f64 - 1.0, steps + 1, true)
                .into_iter()
                .map(round)
                .collect();
            points.reverse();
            points.truncate(steps);
            points
        }
        Spacing::Leading => {
            let ratio = last / (steps + 1);
            (1..=steps)
                .rev()
                .map(|i| (i * ratio + offset) as f64)
                .collect()
        }
        Spacing::Trailing => trailing(last as f64, n, steps),
    }
}

/// One update's coefficients: x_t = x·`sample` + Σ Dₖ·`d[k]` + noise·`noise`.
#[derive(Debug, Default)]
struct Update {
    sample: f64,
    d: [f64; 3],
    noise: f64,
}

impl DpmSolver {
    /// The coefficients of an `order` update from step `step` (λ at `step`, and the steps
    /// before it for higher orders).
    fn update(&self, step: usize, order: usize) -> (Update, f64, f64) {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[step + 1]);
        let (alpha_s, sigma_s) = alpha_sigma(self.sigmas[step]);
        // At σ = 0 (the final step) λ_t = +∞ and h = +∞: e^{−h} = 0, the ratios are 0, and the
        // first-order update returns the prediction itself.
        let h = self.lambda(step + 1) - self.lambda(step);
        let (r0, r1) = match order {
            1 => (1.0, 1.0),
            2 => ((self.lambda(step) - self.lambda(step - 1)) / h, 1.0),
            _ => (
                (self.lambda(step) - self.lambda(step - 1)) / h,
                (self.lambda(step - 1) - self.lambda(step - 2)) / h,
            ),
        };
        let em1 = (-h).exp_m1(); // e^{−h} − 1
        let ep1 = h.exp_m1(); // e^{h} − 1
        let e2 = -(-2.0 * h).exp_m1(); // 1 − e^{−2h}
        let mut u = Update::default();
        match self.algorithm {
            Algorithm::DataOde => {
                u.sample = sigma_t / sigma_s;
                u.d[0] = -alpha_t * em1;
                u.d[1] = match (order, self.heun) {
                    (2, false) => -0.5 * alpha_t * em1,
                    _ => alpha_t * (em1 / h + 1.0),
                };
                u.d[2] = -alpha_t * ((em1 + h) / (h * h) - 0.5);
            }
            Algorithm::NoiseOde => {
                u.sample = alpha_t / alpha_s;
                u.d[0] = -sigma_t * ep1;
                u.d[1] = match (order, self.heun) {
                    (2, false) => -0.5 * sigma_t * ep1,
                    _ => -sigma_t * (ep1 / h - 1.0),
                };
                u.d[2] = -sigma_t * ((ep1 - h) / (h * h) - 0.5);
            }
            Algorithm::DataSde => {
                u.sample = sigma_t / sigma_s * (-h).exp();
                u.d[0] = alpha_t * e2;
                u.d[1] = match (order, self.heun) {
                    (2, false) => 0.5 * alpha_t * e2,
                    _ => alpha_t * (e2 / (-2.0 * h) + 1.0),
                };
                u.d[2] = alpha_t * ((e2 - 2.0 * h) / (4.0 * h * h) - 0.5);
                u.noise = sigma_t * e2.sqrt();
            }
        }
        (u, r0, r1)
    }

    /// The order step `step` runs at: 1 while warming up or at a lower-order end, else up to
    /// `solver_order`.
    fn order_at(&self, step: usize) -> usize {
        let len = self.timesteps.len();
        let short = self.lower_order_final && len < 15;
        let final_low = step + 1 == len && (self.euler_at_final || short || self.final_sigma_zero);
        let second_low = step + 2 == len && short;
        if self.order == 1 || self.lower_order_nums < 1 || final_low {
            1
        } else if self.order == 2 || self.lower_order_nums < 2 || second_low {
            2
        } else {
            3
        }
    }
}

impl Sampler for DpmSolver {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn noise_scale(&self, step: usize) -> f64 {
        if self.algorithm != Algorithm::DataSde {
            return 0.0;
        }
        let sigma_t = alpha_sigma(self.sigmas[step + 1]).1;
        let h = self.lambda(step + 1) - self.lambda(step);
        sigma_t * (-(-2.0 * h).exp_m1()).sqrt()
    }

    fn noise_levels(&self, step: usize) -> (f64, f64) {
        alpha_sigma(self.sigmas[step])
    }

    fn reset(&mut self) {
        self.outputs.iter_mut().for_each(|o| *o = None);
        self.lower_order_nums = 0;
        self.last_step = None;
    }

    fn step(
        &mut self,
        output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<StepOutput, ModelError> {
        if let Some(last) = self.last_step
            && step != last + 1
        {
            return Err(ModelError::InvalidInput(format!(
                "DPM-Solver steps run in order: step {step} after step {last}"
            )));
        }
        let order = self.order_at(step);
        let (alpha_s, sigma_s) = alpha_sigma(self.sigmas[step]);
        let converted = match self.algorithm {
            Algorithm::DataOde | Algorithm::DataSde => {
                vp_x0(self.prediction, output, sample.clone(), alpha_s, sigma_s)
            }
            Algorithm::NoiseOde => {
                vp_epsilon(self.prediction, output, sample.clone(), alpha_s, sigma_s)
            }
        };
        self.outputs.remove(0);
        self.outputs.push(Some(converted.clone()));
        let (u, r0, r1) = self.update(step, order);
        let history: Vec<Tensor<4>> = self
            .outputs
            .iter()
            .rev()
            .take(order)
            .flatten()
            .cloned()
            .collect();
        // D₀ = m₀, then the divided differences of the outputs in λ (m₀ newest).
        let mut prev_sample = lincomb(sample.clone(), u.sample, history[0].clone(), u.d[0]);
        match order {
            2 => {
                let d1 = (history[0].clone() - history[1].clone()).mul_scalar(1.0 / r0);
                prev_sample = prev_sample + d1.mul_scalar(u.d[1]);
            }
            3 => {
                let d1_0 = (history[0].clone() - history[1].clone()).mul_scalar(1.0 / r0);
                let d1_1 = (history[1].clone() - history[2].clone()).mul_scalar(1.0 / r1);
                let gap = d1_0.clone() - d1_1;
                let d1 = d1_0 + gap.clone().mul_scalar(r0 / (r0 + r1));
                let d2 = gap.mul_scalar(1.0 / (r0 + r1));
                prev_sample = prev_sample + lincomb(d1, u.d[1], d2, u.d[2]);
            }
            _ => {}
        }
        if let Some(noise) = noise
            && u.noise > 0.0
        {
            prev_sample = prev_sample + noise.mul_scalar(u.noise);
        }
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        self.last_step = Some(step);
        let denoised = match self.algorithm {
            Algorithm::DataOde | Algorithm::DataSde => converted,
            Algorithm::NoiseOde => lincomb(sample, 1.0 / alpha_s, converted, -sigma_s / alpha_s),
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

    fn dpm(json: &str, steps: usize) -> Result<DpmSolver, ModelError> {
        let config: SchedulerConfig = serde_json::from_str(json).unwrap();
        DpmSolver::new(
            &Resolve::new(&config, SamplerKind::DpmSolverMultistep),
            steps,
        )
    }

    #[test]
    fn spacings_drop_the_zero_point() {
        // linspace(0, 999, 5).round() = 0, 250 (249.75), 500 (499.5, to even), 749, 999.
        assert_eq!(
            dpm("{}", 4).unwrap().timesteps,
            vec![999.0, 749.0, 500.0, 250.0]
        );
        // leading: 1000 // 5 = 200 → 800, 600, 400, 200 (+ offset).
        let leading = dpm(r#"{"timestep_spacing": "leading", "steps_offset": 1}"#, 4).unwrap();
        assert_eq!(leading.timesteps, vec![801.0, 601.0, 401.0, 201.0]);
        let trailing = dpm(r#"{"timestep_spacing": "trailing"}"#, 4).unwrap();
        assert_eq!(trailing.timesteps, vec![999.0, 749.0, 499.0, 249.0]);
        let fifty = dpm("{}", 50).unwrap();
        // linspace(0, 999, 51): 999·i/50 = 19.98·i, rounded: 999, 979, …, 20.
        assert_eq!(
            (fifty.timesteps[0], fifty.timesteps[1], fifty.timesteps[49]),
            (999.0, 979.0, 20.0)
        );
        assert_eq!(fifty.sigmas.len(), 51);
    }

    #[test]
    fn orders_warm_up_and_end_low() {
        let mut d = dpm(r#"{"solver_order": 3}"#, 6).unwrap();
        let mut orders = Vec::new();
        for step in 0..6 {
            orders.push(d.order_at(step));
            d.lower_order_nums = (d.lower_order_nums + 1).min(3);
        }
        // Warm-up 1, 2; then 3; second-to-last 2 and last 1 (short run, lower_order_final).
        assert_eq!(orders, vec![1, 2, 3, 3, 2, 1]);
    }

    #[test]
    fn lambda_clipping_and_unsupported_options() {
        // Clipping at λ = 0 keeps the timesteps with ᾱ ≥ 1/2.
        let clipped = dpm(r#"{"lambda_min_clipped": 0.0}"#, 4).unwrap();
        assert!(clipped.timesteps[0] < 999.0);
        assert!(dpm(r#"{"algorithm_type": "sde-dpmsolver"}"#, 4).is_err());
        assert!(dpm(r#"{"algorithm_type": "dpmsolver"}"#, 4).is_err());
        assert!(
            dpm(
                r#"{"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}"#,
                4
            )
            .is_ok()
        );
        assert!(dpm(r#"{"use_karras_sigmas": true, "use_lu_lambdas": true}"#, 4).is_err());
        let k = dpm(r#"{"use_karras_sigmas": true}"#, 10).unwrap();
        assert_eq!(k.timesteps[0], 999.0);
        assert!(k.timesteps.iter().all(|t| t.fract() == 0.0));
    }
}
