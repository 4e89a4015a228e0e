//! Turning the network's output into the predicted clean sample x₀ (and the noise ε), for each
//! `prediction_type`. The variance-preserving form x = α·x₀ + s·ε (DDIM, DPM-Solver, LCM) and
//! Euler's variance-exploding form x = x₀ + σ·ε (k-diffusion's, with α = 1/√(σ² + 1)).

use burn::prelude::*;

use super::resolve::Prediction;

/// `a·x + b·y`, elementwise.
pub(crate) fn lincomb(x: Tensor<4>, a: f64, y: Tensor<4>, b: f64) -> Tensor<4> {
    x.mul_scalar(a) + y.mul_scalar(b)
}

/// x₀ from `output` at a sample `x = alpha·x₀ + sigma·ε`.
pub(crate) fn vp_x0(
    prediction: Prediction,
    output: Tensor<4>,
    x: Tensor<4>,
    alpha: f64,
    sigma: f64,
) -> Tensor<4> {
    match prediction {
        Prediction::Epsilon => lincomb(x, 1.0 / alpha, output, -sigma / alpha),
        Prediction::Velocity => lincomb(x, alpha, output, -sigma),
        Prediction::Sample => output,
    }
}

/// ε from `output` at a sample `x = alpha·x₀ + sigma·ε`.
pub(crate) fn vp_epsilon(
    prediction: Prediction,
    output: Tensor<4>,
    x: Tensor<4>,
    alpha: f64,
    sigma: f64,
) -> Tensor<4> {
    match prediction {
        Prediction::Epsilon => output,
        Prediction::Velocity => lincomb(output, alpha, x, sigma),
        Prediction::Sample => lincomb(x, 1.0 / sigma, output, -alpha / sigma),
    }
}

/// x₀ from `output` at a sample `x = x₀ + sigma·ε` (the Euler samplers' scale; the network saw
/// `x/√(σ² + 1)`).
pub(crate) fn ve_x0(
    prediction: Prediction,
    output: Tensor<4>,
    x: Tensor<4>,
    sigma: f64,
) -> Tensor<4> {
    match prediction {
        Prediction::Epsilon => lincomb(x, 1.0, output, -sigma),
        Prediction::Velocity => {
            let s2 = sigma * sigma + 1.0;
            lincomb(output, -sigma / s2.sqrt(), x, 1.0 / s2)
        }
        Prediction::Sample => output,
    }
}
