//! `out += x · w` on the row-major weight matrix as it lies, without packing it, and with a
//! result per row that does not depend on the rows batched with it.
//!
//! A general GEMM (the `gemm` crate) copies the whole weight matrix into its packed layout
//! on every call; with a dozen rows (one short sentence) each weight is then used only a dozen
//! times, so the copy costs as much as the products and the matrix crosses the memory bus
//! three times instead of once. Here a task takes up to [`CHUNK_ROWS`] rows and one block of
//! [`BLOCK`] output columns, keeps eight rows × `BLOCK` sums in registers and streams the
//! block's weights down the inputs (one 192-byte run per input); the next eight rows read the
//! block again from the cache. Every output is one chain of fused multiply-adds over the
//! inputs in order, so the server's batching never changes a vector by a bit. AVX-512 only:
//! elsewhere the caller keeps the `gemm` crate.
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
///
/// Each output is one chain of fused multiply-adds over `k` in order, starting from its
/// value in `out`, whatever `rows` is and however the work is split: a row's result does not
/// depend on the rows batched with it.
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
    assert!(available(), "direct_gemm::multiply_add needs AVX-512F");
    assert!(outputs.is_multiple_of(BLOCK));
    assert!(x.len() >= rows * inputs && w.len() >= inputs * outputs);
    assert!(out.len() >= rows * outputs);
    let blocks = outputs / BLOCK;
    let chunks = rows.div_ceil(CHUNK_ROWS);
    let target = SyncPtr(out.as_mut_ptr());
    // Tasks run chunk-major: a thread's consecutive tasks share their rows of `x` in cache
    // while the weight blocks stream past.
    let task = |index: usize| {
        let (chunk, block) = (index / blocks, index % blocks);
        let first = chunk * CHUNK_ROWS;
        let last = rows.min(first + CHUNK_ROWS);
        let mut start = first;
        while start < last {
            let count = ROWS.min(last - start);
            let x = &x[start * inputs..(start + count) * inputs];
            // SAFETY: the CPU has AVX-512F (asserted above). The task writes rows
            // `start..start + count`, columns `block·BLOCK..` + BLOCK of `out`, which no other
            // task touches, and every slice is as long as `rows_block` reads (asserted above).
            unsafe {
                let out = target.get().add(start * outputs + block * BLOCK);
                match count {
                    8 => rows_block::<8>(x, w, inputs, outputs, block * BLOCK, out),
                    7 => rows_block::<7>(x, w, inputs, outputs, block * BLOCK, out),
                    6 => rows_block::<6>(x, w, inputs, outputs, block * BLOCK, out),
                    5 => rows_block::<5>(x, w, inputs, outputs, block * BLOCK, out),
                    4 => rows_block::<4>(x, w, inputs, outputs, block * BLOCK, out),
                    3 => rows_block::<3>(x, w, inputs, outputs, block * BLOCK, out),
                    2 => rows_block::<2>(x, w, inputs, outputs, block * BLOCK, out),
                    _ => rows_block::<1>(x, w, inputs, outputs, block * BLOCK, out),
                }
            }
            start += count;
        }
    };
    if parallel {
        (0..chunks * blocks).into_par_iter().for_each(task);
    } else {
        (0..chunks * blocks).for_each(task);
    }
}

/// Rows per task: their `x` rows (64 × 1536 inputs × 4 bytes at most for MiniLM) stay in the
/// L2 cache while the task's weight block is read once per eight of them.
const CHUNK_ROWS: usize = 64;

/// `out`'s address shared by the tasks, each writing its own rows and columns.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: the tasks write disjoint parts of the buffer (see `multiply_add`), which outlives
// them (`for_each` returns after the last one).
unsafe impl Send for SyncPtr {}
// SAFETY: as above.
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `R` rows × one column block of `out` (row stride `outputs`): `R × 3` sums in registers, one broadcast and three fused
/// multiply-adds per row and input.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_block<const R: usize>(
    x: &[f32],
    w: &[f32],
    inputs: usize,
    outputs: usize,
    column: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    debug_assert!(x.len() >= R * inputs);
    debug_assert!(w.len() >= (inputs - 1) * outputs + column + BLOCK);
    let mut acc: [[__m512; 3]; R] = [[_mm512_setzero_ps(); 3]; R];
    for (r, acc) in acc.iter_mut().enumerate() {
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: `out` points at `R` rows (stride `outputs`) of `BLOCK` values (caller).
            *a = unsafe { _mm512_loadu_ps(out.add(r * outputs + i * 16)) };
        }
    }
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
            // SAFETY: as for the loads above.
            unsafe { _mm512_storeu_ps(out.add(r * outputs + i * 16), *a) };
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
        for rows in [1, 3, 8, 11, 16, 70, 150] {
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

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn a_row_comes_out_the_same_in_any_batch() {
        if !available() {
            return;
        }
        let (inputs, outputs, rows) = (200, 3 * BLOCK, 75);
        let w: Vec<f32> = (0..inputs * outputs)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let x: Vec<f32> = (0..rows * inputs)
            .map(|i| ((i * 104_729 % 97) as f32 - 48.0) * 0.021)
            .collect();
        let mut together = vec![0.5f32; rows * outputs];
        multiply_add(&x, rows, &w, inputs, outputs, &mut together, true);
        for r in [0, 7, 8, 63, 64, 74] {
            let mut alone = vec![0.5f32; outputs];
            let row = &x[r * inputs..(r + 1) * inputs];
            multiply_add(row, 1, &w, inputs, outputs, &mut alone, false);
            assert_eq!(alone, together[r * outputs..(r + 1) * outputs], "row {r}");
        }
    }
}
