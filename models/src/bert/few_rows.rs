//! `out += x · w` for a handful of activation rows (one short sentence), reading the
//! row-major weight matrix once, straight from where it lies.
//!
//! A general GEMM first copies the whole weight matrix into its packed layout on every call;
//! with a dozen rows each weight is then used only a dozen times, so that copy costs as much
//! as the products, and the matrix crosses the memory bus three times instead of once. Here
//! a task takes a block of [`BLOCK`] output columns, keeps up to [`ROWS`] rows × `BLOCK`
//! sums in registers, and streams the block's weights down the inputs (one 192-byte run per
//! input); further rows reuse the block from the cache. AVX-512 only: elsewhere the caller
//! keeps the GEMM.
#![allow(
    unsafe_code,
    reason = "the kernel is AVX-512 intrinsics on raw pointers, behind a CPU check and \
              length asserts"
)]

#[cfg(target_arch = "x86_64")]
use rayon::prelude::*;

/// Output columns per task: three AVX-512 or six AVX2 registers per row.
pub const BLOCK: usize = 48;
/// Rows whose sums stay in registers at once (8 × 3 = 24 of AVX-512's 32 registers).
const ROWS: usize = 8;

/// Whether this CPU runs the kernel (AVX-512F); elsewhere the caller uses the GEMM.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[r][j] += Σ_k x[r][k] · w[k][j]` for `rows` rows, `w` being `inputs × outputs`
/// row-major and `outputs` a multiple of [`BLOCK`]. Only where [`available`] says so.
#[cfg(target_arch = "x86_64")]
pub fn multiply_add(
    x: &[f32],
    rows: usize,
    w: &[f32],
    inputs: usize,
    outputs: usize,
    out: &mut [f32],
    parallel: bool,
) {
    assert!(available(), "few_rows::multiply_add needs AVX-512F");
    assert!(outputs.is_multiple_of(BLOCK));
    assert!(x.len() >= rows * inputs && w.len() >= inputs * outputs);
    assert!(out.len() >= rows * outputs);
    let block = |j: usize| {
        let mut sums = vec![0.0f32; rows * BLOCK];
        let mut start = 0;
        while start < rows {
            let count = ROWS.min(rows - start);
            let x = &x[start * inputs..(start + count) * inputs];
            let sums = &mut sums[start * BLOCK..(start + count) * BLOCK];
            // SAFETY: the CPU has AVX-512F (asserted above); every slice is as long as
            // `rows_block` reads and writes (asserted above, and `j + BLOCK <= outputs`).
            unsafe {
                match count {
                    8 => rows_block::<8>(x, w, inputs, outputs, j, sums),
                    7 => rows_block::<7>(x, w, inputs, outputs, j, sums),
                    6 => rows_block::<6>(x, w, inputs, outputs, j, sums),
                    5 => rows_block::<5>(x, w, inputs, outputs, j, sums),
                    4 => rows_block::<4>(x, w, inputs, outputs, j, sums),
                    3 => rows_block::<3>(x, w, inputs, outputs, j, sums),
                    2 => rows_block::<2>(x, w, inputs, outputs, j, sums),
                    _ => rows_block::<1>(x, w, inputs, outputs, j, sums),
                }
            }
            start += count;
        }
        sums
    };
    let blocks: Vec<Vec<f32>> = if parallel {
        (0..outputs / BLOCK)
            .into_par_iter()
            .map(|b| block(b * BLOCK))
            .collect()
    } else {
        (0..outputs / BLOCK).map(|b| block(b * BLOCK)).collect()
    };
    for (b, sums) in blocks.iter().enumerate() {
        for (r, row) in sums.chunks_exact(BLOCK).enumerate() {
            let out = &mut out[r * outputs + b * BLOCK..][..BLOCK];
            out.iter_mut().zip(row).for_each(|(o, s)| *o += s);
        }
    }
}

/// `R` rows × one column block: `R × 3` sums in registers, one broadcast and three fused
/// multiply-adds per row and input.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_block<const R: usize>(
    x: &[f32],
    w: &[f32],
    inputs: usize,
    outputs: usize,
    column: usize,
    sums: &mut [f32],
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    debug_assert!(x.len() >= R * inputs && sums.len() >= R * BLOCK);
    debug_assert!(w.len() >= (inputs - 1) * outputs + column + BLOCK);
    let mut acc: [[__m512; 3]; R] = [[_mm512_setzero_ps(); 3]; R];
    let (x, w) = (x.as_ptr(), w.as_ptr());
    for k in 0..inputs {
        // SAFETY: row `k` of `w` holds the block `column..column + BLOCK`, and `x` holds
        // `R` rows of `inputs` (the caller's asserts).
        unsafe {
            let row = w.add(k * outputs + column);
            let weights = [
                _mm512_loadu_ps(row),
                _mm512_loadu_ps(row.add(16)),
                _mm512_loadu_ps(row.add(32)),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let value = _mm512_set1_ps(*x.add(r * inputs + k));
                for (a, w) in acc.iter_mut().zip(&weights) {
                    *a = _mm512_fmadd_ps(value, *w, *a);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: `sums` holds `R` rows of `BLOCK` (asserted by the caller).
            unsafe { _mm512_storeu_ps(sums.as_mut_ptr().add(r * BLOCK + i * 16), *a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn matches_the_plain_product() {
        if !available() {
            return;
        }
        let (inputs, outputs) = (37, 2 * BLOCK);
        let w: Vec<f32> = (0..inputs * outputs)
            .map(|i| ((i * 7919 % 23) as f32 - 11.0) * 0.05)
            .collect();
        for rows in [1, 3, 8, 11, 16] {
            let x: Vec<f32> = (0..rows * inputs)
                .map(|i| ((i * 104_729 % 17) as f32 - 8.0) * 0.1)
                .collect();
            for parallel in [false, true] {
                let mut out = vec![1.0f32; rows * outputs];
                multiply_add(&x, rows, &w, inputs, outputs, &mut out, parallel);
                for r in 0..rows {
                    for j in 0..outputs {
                        let want = 1.0
                            + (0..inputs)
                                .map(|k| {
                                    f64::from(x[r * inputs + k]) * f64::from(w[k * outputs + j])
                                })
                                .sum::<f64>();
                        let got = f64::from(out[r * outputs + j]);
                        assert!(
                            (got - want).abs() < 1e-4,
                            "row {r} col {j}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
