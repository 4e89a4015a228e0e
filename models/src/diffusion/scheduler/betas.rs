//! The training noise schedule: betas (`linear`, `scaled_linear`, `squaredcos_cap_v2` or the
//! file's `trained_betas`), their optional rescale to zero terminal SNR, and the cumulative
//! products ᾱ_t = Π (1 − β) that every sampler works from. In f64 (diffusers uses f32 here;
//! the difference is ~1e-7 relative).

use super::numpy::linspace;
use super::resolve::{BetaSchedule, Resolve};
use crate::ModelError;

/// ᾱ of the last training step under zero-terminal-SNR rescaling: diffusers' stand-in for 0
/// (the smallest f16 subnormal), so the first sigma is finite.
pub(crate) const ZERO_SNR_ALPHA_BAR: f64 = 1.0 / (1u32 << 24) as f64;

/// ᾱ for the samplers that work in σ (Euler, Euler ancestral, DPM-Solver): under
/// zero-terminal-SNR rescaling the last ᾱ, exactly 0 (σ = ∞), becomes [`ZERO_SNR_ALPHA_BAR`].
pub(crate) fn sigma_alphas_cumprod(r: &Resolve) -> Result<Vec<f64>, ModelError> {
    let mut bar = alphas_cumprod(r)?;
    if r.rescale_zero_snr()
        && let Some(last) = bar.last_mut()
    {
        *last = ZERO_SNR_ALPHA_BAR;
    }
    Ok(bar)
}

/// ᾱ_t for t = 0‥num_train_timesteps.
pub(crate) fn alphas_cumprod(r: &Resolve) -> Result<Vec<f64>, ModelError> {
    let betas = betas(r)?;
    let betas = if r.rescale_zero_snr() {
        rescale_zero_terminal_snr(&betas)
    } else {
        betas
    };
    Ok(cumprod(&betas))
}

/// The betas the config describes.
fn betas(r: &Resolve) -> Result<Vec<f64>, ModelError> {
    let n = r.num_train_timesteps()?;
    let betas = match &r.config.trained_betas {
        Some(trained) => {
            // diffusers would index past the end (or ignore the tail) of a mismatched list.
            if trained.len() != n {
                return Err(r.error(
                    "trained_betas",
                    format!("{} betas for num_train_timesteps {n}", trained.len()),
                ));
            }
            trained.clone()
        }
        None => match r.beta_schedule()? {
            BetaSchedule::Linear => linspace(r.beta_start(), r.beta_end(), n, true),
            BetaSchedule::ScaledLinear => {
                linspace(r.beta_start().sqrt(), r.beta_end().sqrt(), n, true)
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            BetaSchedule::SquaredCosCapV2 => cosine_betas(n),
        },
    };
    if let Some(bad) = betas.iter().find(|b| !(0.0..1.0).contains(*b)) {
        return Err(r.error("trained_betas", format!("beta {bad} is outside [0, 1)")));
    }
    Ok(betas)
}

/// Glide's cosine schedule (Nichol & Dhariwal 2021): βᵢ = min(1 − ᾱ(tᵢ₊₁)/ᾱ(tᵢ), 0.999) with
/// ᾱ(t) = cos²((t + 0.008)/1.008 · π/2).
fn cosine_betas(n: usize) -> Vec<f64> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
        })
        .collect()
}

/// Lin et al. 2023, algorithm 1: shift and scale √ᾱ so the last step has ᾱ = 0 (pure noise)
/// and the first keeps its value, then turn it back into betas.
fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let sqrt_bar: Vec<f64> = cumprod(betas).into_iter().map(f64::sqrt).collect();
    let (first, last) = (sqrt_bar[0], sqrt_bar[sqrt_bar.len() - 1]);
    let bar: Vec<f64> = sqrt_bar
        .iter()
        .map(|s| ((s - last) * first / (first - last)).powi(2))
        .collect();
    std::iter::once(bar[0])
        .chain(bar.windows(2).map(|w| w[1] / w[0]))
        .map(|alpha| 1.0 - alpha)
        .collect()
}

/// Π (1 − β) so far, for each step.
fn cumprod(betas: &[f64]) -> Vec<f64> {
    betas
        .iter()
        .scan(1.0, |product, beta| {
            *product *= 1.0 - beta;
            Some(*product)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::scheduler::SamplerKind;
    use crate::diffusion::scheduler::config::SchedulerConfig;

    fn bars(json: &str) -> Vec<f64> {
        let config: SchedulerConfig = serde_json::from_str(json).unwrap();
        alphas_cumprod(&Resolve::new(&config, SamplerKind::Euler)).unwrap()
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-300)
    }

    #[test]
    fn stable_diffusion_schedule_ends() {
        // scaled_linear 0.00085..0.012: β₀ = 0.00085, ᾱ₀ = 0.99915; σ = √((1−ᾱ)/ᾱ) at t = 999
        // is SD's well-known 14.6146.
        let bar =
            bars(r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#);
        assert_eq!(bar.len(), 1000);
        assert!(close(bar[0], 0.99915, 1e-12));
        let sigma_max = ((1.0 - bar[999]) / bar[999]).sqrt();
        assert!(close(sigma_max, 14.614_6, 1e-5), "{sigma_max}");
        // Second beta: (√0.00085 + (√0.012 − √0.00085)/999)².
        let step = (0.012f64.sqrt() - 0.00085f64.sqrt()) / 999.0;
        let beta1 = (0.00085f64.sqrt() + step).powi(2);
        assert!(close(bar[1], 0.99915 * (1.0 - beta1), 1e-12));
    }

    #[test]
    fn linear_and_cosine_schedules() {
        let bar = bars(r#"{"num_train_timesteps": 10, "beta_start": 0.1, "beta_end": 0.19}"#);
        // β = 0.10, 0.11, …, 0.19.
        assert!(close(bar[1], 0.9 * 0.89, 1e-12));
        assert!(close(
            bar[9],
            (0..10).map(|i| 0.9 - 0.01 * i as f64).product(),
            1e-12
        ));
        let cos = bars(r#"{"num_train_timesteps": 4, "beta_schedule": "squaredcos_cap_v2"}"#);
        // ᾱ_t telescopes to ᾱ(t+1/4)/ᾱ(0) while no beta is capped; the last one is (ᾱ(1) = 0).
        let f = |t: f64| {
            ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        assert!(close(cos[1], f(0.5) / f(0.0), 1e-12));
        assert!(close(cos[3], cos[2] * 0.001, 1e-9));
    }

    #[test]
    fn zero_terminal_snr_ends_at_zero_and_keeps_the_start() {
        let plain =
            bars(r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#);
        let rescaled = bars(
            r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                "rescale_betas_zero_snr": true}"#,
        );
        assert!(close(rescaled[0], plain[0], 1e-12));
        assert!(rescaled[999].abs() < 1e-15, "{}", rescaled[999]);
        assert!(rescaled[500] < plain[500]);
    }

    #[test]
    fn trained_betas_must_match_the_length() {
        let config: SchedulerConfig =
            serde_json::from_str(r#"{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2]}"#)
                .unwrap();
        let err = alphas_cumprod(&Resolve::new(&config, SamplerKind::Ddim)).unwrap_err();
        assert!(err.to_string().contains("trained_betas"), "{err}");
    }
}
