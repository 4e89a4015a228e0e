//! The host encoder's row loops compiled for the widest vector unit the CPU has.
//!
//! The crate is built for baseline x86-64 (SSE2), so a plain loop runs four lanes wide even
//! on an AVX-512 machine; the matrix products pick their kernels at run time (`gemm`), and
//! the loops around them do the same here: one body, inlined into copies compiled with
//! AVX-512 and with AVX2+FMA, chosen once per call. Reductions go through [`Lanes`], whose
//! sixteen independent partial sums the compiler can keep in vector registers (a single
//! accumulator would be a chain of dependent scalar adds).
#![allow(
    unsafe_code,
    reason = "calling a #[target_feature] copy is unsafe; each call is behind the CPU check"
)]

/// Runs `body` inlined into a copy compiled for AVX-512, else AVX2+FMA, else as built.
/// `body` must be `#[inline(always)]` for the wider copies to apply to it.
#[inline(always)]
pub fn with_widest_simd<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { avx512(body) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { avx2(body) };
        }
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Reductions over a row with sixteen partial results.
pub struct Lanes;

const WIDTH: usize = 16;

impl Lanes {
    #[inline(always)]
    pub fn sum(row: &[f32]) -> f32 {
        let mut acc = [0.0f32; WIDTH];
        let chunks = row.chunks_exact(WIDTH);
        let tail: f32 = chunks.remainder().iter().sum();
        for chunk in chunks {
            for (a, v) in acc.iter_mut().zip(chunk) {
                *a += v;
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    /// `Σ (v - mean)²`.
    #[inline(always)]
    pub fn sum_squared_deviation(row: &[f32], mean: f32) -> f32 {
        let mut acc = [0.0f32; WIDTH];
        let chunks = row.chunks_exact(WIDTH);
        let tail: f32 = chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum();
        for chunk in chunks {
            for (a, v) in acc.iter_mut().zip(chunk) {
                *a += (v - mean) * (v - mean);
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    /// The largest value (`-inf` for an empty row; NaN only propagates where `f32::max` would
    /// drop it, which the callers' finite scores never hit).
    #[inline(always)]
    pub fn max(row: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; WIDTH];
        let chunks = row.chunks_exact(WIDTH);
        let tail = chunks
            .remainder()
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        for chunk in chunks {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a = if v > *a { v } else { *a };
            }
        }
        acc.iter().copied().fold(tail, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_plain_loops() {
        for len in [0usize, 1, 15, 16, 17, 100, 384] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
                .collect();
            let sum: f32 = row.iter().sum();
            let mean = if len == 0 { 0.0 } else { sum / len as f32 };
            let dev: f32 = row.iter().map(|v| (v - mean) * (v - mean)).sum();
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            with_widest_simd(|| {
                assert!((Lanes::sum(&row) - sum).abs() <= 1e-4, "sum of {len}");
                assert!((Lanes::sum_squared_deviation(&row, mean) - dev).abs() <= 1e-3);
                assert_eq!(Lanes::max(&row), max, "max of {len}");
            });
        }
    }
}
