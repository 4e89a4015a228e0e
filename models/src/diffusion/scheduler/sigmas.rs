//! The k-diffusion view of the schedule that Euler and DPM-Solver share: σ_t = √((1 − ᾱ_t)/ᾱ_t),
//! the Karras et al. (2022) and exponential sigma ramps, and the inverse map from a sigma back
//! to a (fractional) training timestep.

use super::numpy::linspace;

/// σ_t for every training timestep, ascending with t.
pub(crate) fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f64> {
    alphas_cumprod
        .iter()
        .map(|bar| ((1.0 - bar) / bar).sqrt())
        .collect()
}

/// Karras et al. (2022), eq. 5 with ρ = 7: `steps` sigmas from `max` down to `min`, evenly
/// spaced in σ^(1/ρ) (dense near the small sigmas).
pub(crate) fn karras(min: f64, max: f64, steps: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (min_inv, max_inv) = (min.powf(1.0 / RHO), max.powf(1.0 / RHO));
    linspace(0.0, 1.0, steps, true)
        .into_iter()
        .map(|ramp| (max_inv + ramp * (min_inv - max_inv)).powf(RHO))
        .collect()
}

/// `steps` sigmas from `max` down to `min`, evenly spaced in ln σ.
pub(crate) fn exponential(min: f64, max: f64, steps: usize) -> Vec<f64> {
    linspace(max.ln(), min.ln(), steps, true)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// The fractional training timestep whose sigma is `sigma`: linear interpolation in ln σ
/// between the two neighbouring training sigmas (`log_sigmas`, ascending), clamped to the ends.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // diffusers: the last index whose log sigma is ≤ ours (0 if none), at most len − 2.
    let low = log_sigmas
        .iter()
        .rposition(|&s| log_sigma - s >= 0.0)
        .unwrap_or(0)
        .min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karras_ramp_ends_and_middle() {
        let s = karras(0.03, 14.6, 3);
        assert!((s[0] - 14.6).abs() < 1e-12 && (s[2] - 0.03).abs() < 1e-12);
        let mid = ((0.03f64.powf(1.0 / 7.0) + 14.6f64.powf(1.0 / 7.0)) / 2.0).powi(7);
        assert!((s[1] - mid).abs() < 1e-12);
        let e = exponential(0.1, 10.0, 3);
        assert!((e[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn sigma_to_t_inverts_the_schedule() {
        let sigmas: Vec<f64> = [0.5f64, 1.0, 2.0, 4.0].to_vec();
        let logs: Vec<f64> = sigmas.iter().map(|s| s.ln()).collect();
        assert_eq!(sigma_to_t(1.0, &logs), 1.0);
        assert!((sigma_to_t(2f64.sqrt(), &logs) - 1.5).abs() < 1e-12);
        assert_eq!(sigma_to_t(4.0, &logs), 3.0);
        assert_eq!(sigma_to_t(100.0, &logs), 3.0);
        assert_eq!(sigma_to_t(0.01, &logs), 0.0);
    }
}
