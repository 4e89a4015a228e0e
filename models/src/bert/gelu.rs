//! Exact (erf) GELU, with a fast path for the CPU backend.
//!
//! burn's Flex backend evaluates GELU one element at a time through libm's `erff`, on one
//! thread: about a fifth of a MiniLM forward pass on long inputs. On that backend this module
//! runs GELU as a branch-free host loop the compiler vectorises instead (~4x faster), using the
//! Abramowitz & Stegun 7.1.26 approximation of `erfc` (absolute error below 1.5e-7, under f32
//! rounding of the result) and a polynomial `exp`. Other backends use burn's `gelu`.

use burn::prelude::*;
use burn::tensor::activation::gelu;

use crate::ModelError;

/// `GELU(x) = x * Φ(x)`, `Φ` the standard normal CDF, element-wise.
pub fn gelu_exact<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, ModelError> {
    let device = x.device();
    if device != Device::flex() {
        return Ok(gelu(x));
    }
    let shape = x.shape();
    let backend = |e: String| ModelError::Backend(format!("GELU readback: {e}"));
    let data = x.try_into_data().map_err(|e| backend(format!("{e:?}")))?;
    let mut values: Vec<f32> = data
        .try_into_vec_as()
        .map_err(|e| backend(format!("{e:?}")))?;
    values.iter_mut().for_each(|v| *v = gelu_f32(*v));
    Ok(Tensor::from_data(TensorData::new(values, shape), &device))
}

// Abramowitz & Stegun 7.1.26: erfc(z) ≈ t·(A1 + t·(A2 + t·(A3 + t·(A4 + t·A5)))) · e^(-z²),
// t = 1 / (1 + P·z), for z ≥ 0.
const P: f32 = 0.327_591_1;
const A1: f32 = 0.254_829_6;
const A2: f32 = -0.284_496_74;
const A3: f32 = 1.421_413_8;
const A4: f32 = -1.453_152;
const A5: f32 = 1.061_405_4;

/// GELU of one value; inlined into the caller's loop so it vectorises.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    let z = x.abs() * core::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    // Φ(-|x|) = erfc(|x| / √2) / 2, computed directly so negative inputs lose no precision.
    let lower_tail = 0.5 * poly * exp_non_positive(-(z * z));
    let phi = if x >= 0.0 {
        1.0 - lower_tail
    } else {
        lower_tail
    };
    x * phi
}

/// `e^v` for `v ≤ 0`, relative error ~1e-8: `v = n·ln2 + r`, `|r| ≤ ln2/2`, degree-7 Taylor
/// series for `e^r`, and `2^n` built from its exponent bits. Below -87 the result is clamped
/// to `e^-87` (it only ever multiplies values that make it negligible).
#[inline(always)]
pub(crate) fn exp_non_positive(v: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to integer
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let v = v.max(-87.0);
    // The low mantissa bits of `shifted` hold n as an integer; `n` is the same value as a float.
    let shifted = v * core::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = v - n * LN2_HI - n * LN2_LO;
    let e_r = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // n is in [-126, 0], so n + 127 is a valid biased exponent. Integer arithmetic on the bits
    // (rather than `n as i32`, a saturating cast) keeps the loop vectorisable.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    e_r * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        for i in 0..=8700 {
            let v = -(i as f32) * 0.01;
            let (got, want) = (exp_non_positive(v), v.exp());
            assert!(
                (got - want).abs() <= 2e-7 * want,
                "exp({v}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn fast_gelu_matches_burn_gelu() {
        let inputs: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 * 0.001).collect();
        let len = inputs.len();
        let reference = gelu(Tensor::<1>::from_data(
            TensorData::new(inputs.clone(), [len]),
            &Device::flex(),
        ));
        let want: Vec<f32> = reference.into_data().try_into_vec_as().unwrap_or_default();
        assert_eq!(want.len(), len);
        for (x, want) in inputs.iter().zip(want) {
            let got = gelu_f32(*x);
            // erfc's 1.5e-7 (halved in Φ, times |x|) plus an ulp or two of rounding in each
            // result.
            let tolerance = 3e-7 * x.abs().max(1.0);
            assert!(
                (got - want).abs() <= tolerance,
                "gelu({x}) = {got}, want {want}"
            );
        }
        assert!(gelu_f32(f32::NAN).is_nan());
        assert_eq!(gelu_f32(f32::INFINITY), f32::INFINITY);
    }
}
