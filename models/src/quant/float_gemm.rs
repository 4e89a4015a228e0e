//! Float matrices (f32, f16, bf16 rows) against many activation rows, as a prefill multiplies
//! them: each task widens a tile of weight rows to f32 once and hands it, with the
//! activations, to the `gemm` crate (the packed, register-tiled f32 GEMM that burn's CPU
//! backend runs). The row kernels would instead convert every weight again for every
//! activation row and keep one accumulator per pair.
#![allow(
    unsafe_code,
    reason = "the `gemm` crate's entry point takes raw pointers and strides (checked against \
              the slices' lengths before the call), and the AVX2 widening calls \
              `#[target_feature]` code that only runs where `Kernels::detect` found the features"
)]

use std::cell::RefCell;

use rayon::prelude::*;

use super::{Kernels, QuantMatrix};
use crate::gemm_call::{self, Strided};
use crate::gguf::GgmlType;

/// Weight rows per task: a block wide enough for the GEMM's register tiles, small enough that
/// the rows spread over the threads and the widened tile stays in the L2 cache.
const TILE_ROWS: usize = 32;

/// From this many activation rows on, float matrices go through the GEMM; below it the row
/// kernels' one pass over the weights is cheaper than widening them.
pub(crate) const MIN_ROWS: usize = 4;

thread_local! {
    /// One task's widened tile (per rayon thread).
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `transposed[j·m + i] = W[j] · x[i]` for every row `j` of `parts` (all float types, `cols`
/// columns each, side by side) and every row `i` of `x` (`m` rows of `cols`).
pub(crate) fn forward_transposed(
    kernels: Kernels,
    parts: &[QuantMatrix],
    x: &[f32],
    m: usize,
    cols: usize,
    transposed: &mut [f32],
) {
    let mut tiles: Vec<(&QuantMatrix, usize, usize, &mut [f32])> = Vec::new();
    let mut rest = transposed;
    for part in parts {
        for start in (0..part.rows).step_by(TILE_ROWS) {
            let rows = TILE_ROWS.min(part.rows - start);
            let (tile, tail) = rest.split_at_mut(rows * m);
            tiles.push((part, start, rows, tile));
            rest = tail;
        }
    }
    tiles.into_par_iter().for_each(|(part, start, rows, out)| {
        WIDENED.with_borrow_mut(|widened| {
            widened.clear();
            widened.resize(rows * cols, 0.0);
            widen_rows(kernels, part, start, widened);
            multiply(x, m, cols, widened, rows, out);
        });
    });
}

/// `out` (column-major `[m, rows]`, that is `[rows, m]` row-major) = `x · wᵀ`.
fn multiply(x: &[f32], m: usize, cols: usize, w: &[f32], rows: usize, out: &mut [f32]) {
    assert!(x.len() >= m * cols && w.len() >= rows * cols && out.len() >= m * rows);
    // SAFETY: `x` is read as `m × cols` (row stride `cols`), `w` as `cols × rows` (element
    // `(k, j)` at `j·cols + k`) and `out` written as `m × rows` (element `(i, j)` at `j·m + i`):
    // all within the lengths asserted above; the three slices do not overlap.
    unsafe {
        gemm_call::multiply(
            (m, rows, cols),
            Strided::columns(out.as_mut_ptr(), m),
            false,
            Strided::rows(x.as_ptr(), cols),
            Strided::columns(w.as_ptr(), cols),
            1.0,
            gemm::Parallelism::None,
        );
    }
}

/// Rows `start..start + out.len() / cols` of `w` as f32.
fn widen_rows(kernels: Kernels, w: &QuantMatrix, start: usize, out: &mut [f32]) {
    let rows = out.len() / w.cols;
    let bytes = &w.bytes()[start * w.row_bytes()..(start + rows) * w.row_bytes()];
    #[cfg(target_arch = "x86_64")]
    if kernels != Kernels::Scalar {
        // SAFETY: every kernel set but the scalar one is chosen only where the CPU has AVX2
        // and F16C (`Kernels::detect`, `Kernels::available`).
        unsafe { widen_avx2(w.ty, bytes, out) };
        return;
    }
    let _ = kernels;
    widen_scalar(w.ty, bytes, out);
}

/// The portable widening.
pub(crate) fn widen_scalar(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    use super::floats::{Bf16, F16, F32, FloatFormat};
    fn widen<F: FloatFormat>(bytes: &[u8], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(F::BYTES)) {
            *o = F::value(b);
        }
    }
    match ty {
        GgmlType::F32 => widen::<F32>(bytes, out),
        GgmlType::F16 => widen::<F16>(bytes, out),
        GgmlType::BF16 => widen::<Bf16>(bytes, out),
        other => unreachable!("{other} is not a float type"),
    }
}

/// [`widen_scalar`] eight values at a time.
///
/// # Safety
/// The CPU must have AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn widen_avx2(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    use super::floats::{Bf16, F16, F32};
    use super::x86::FloatAvx2;
    use std::arch::x86_64::_mm256_storeu_ps;
    #[target_feature(enable = "avx2,f16c")]
    fn widen<F: FloatAvx2>(bytes: &[u8], out: &mut [f32]) {
        let whole = out.len() / 8 * 8;
        for (o, b) in out[..whole]
            .chunks_exact_mut(8)
            .zip(bytes.chunks_exact(8 * F::BYTES))
        {
            // SAFETY: `b` holds eight elements and `o` eight f32 slots; features enabled here.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), F::load8(b)) };
        }
        for (o, b) in out[whole..]
            .iter_mut()
            .zip(bytes[whole * F::BYTES..].chunks_exact(F::BYTES))
        {
            *o = F::value(b);
        }
    }
    match ty {
        GgmlType::F32 => widen::<F32>(bytes, out),
        GgmlType::F16 => widen::<F16>(bytes, out),
        GgmlType::BF16 => widen::<Bf16>(bytes, out),
        other => unreachable!("{other} is not a float type"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::QuantLinear;
    use super::*;

    fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> QuantMatrix {
        // Deterministic values in [-1, 1), exact in every float type (multiples of 1/64).
        let value = |i: usize| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 128;
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| value(i) as f32 / 64.0 - 1.0)
            .collect();
        let data: Vec<u8> = match ty {
            GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            GgmlType::BF16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            other => unreachable!("{other}"),
        };
        QuantMatrix::new(ty, rows, cols, data).expect("a float matrix")
    }

    /// Ragged everything: parts whose rows are not whole tiles, columns not a multiple of
    /// eight, activation row counts on both sides of the GEMM threshold.
    #[test]
    fn the_gemm_path_matches_the_f32_product_for_every_float_type_and_kernel_set() {
        let cols = 77;
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let parts = vec![matrix(ty, 70, cols, 1), matrix(ty, 5, cols, 2)];
            let dense: Vec<Vec<f32>> = parts.iter().map(QuantMatrix::dequantize).collect();
            let linear = QuantLinear::new(parts).expect("same columns");
            for m in [1, MIN_ROWS - 1, MIN_ROWS, 33] {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                    .collect();
                let expected: Vec<f32> = x
                    .chunks_exact(cols)
                    .flat_map(|row| {
                        dense.iter().flat_map(move |w| {
                            w.chunks_exact(cols)
                                .map(move |wr| wr.iter().zip(row).map(|(a, b)| a * b).sum::<f32>())
                        })
                    })
                    .collect();
                for kernels in Kernels::available() {
                    let y = linear.forward_with(kernels, &x, m);
                    assert_eq!(y.len(), expected.len());
                    for (i, (a, b)) in y.iter().zip(&expected).enumerate() {
                        // Sums of 77 products of magnitude ≤ 1: f32 order differences only.
                        assert!(
                            (a - b).abs() <= 1e-4,
                            "{ty} {kernels:?} m={m} [{i}]: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
