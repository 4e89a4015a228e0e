//! Activations quantised per 32 values to signed bytes, as llama.cpp's Q8_0 does before its
//! integer dot products, plus the sums the weight offsets need.

use super::Kernels;

/// `rows` activation rows of `cols` values each (`cols` a multiple of 32), quantised: value
/// `x ≈ d·q` with one `d` per 32 values, `q` in `−127..=127`.
#[derive(Debug, Default)]
pub(crate) struct Q8Activations {
    pub cols: usize,
    /// `rows · cols` quantised values.
    pub q: Vec<i8>,
    /// One scale per 32 values.
    pub d: Vec<f32>,
    /// `d · Σ q` over each 32 values: what a block's weight offset multiplies.
    pub sums: Vec<f32>,
    /// `d · Σ q` over each 16 values (two per 32), for the k-quants' offsets per half.
    pub half_sums: Vec<f32>,
}

impl Q8Activations {
    /// Quantises `x` (`rows · cols` values, row-major).
    #[cfg(test)]
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        let mut out = Self::default();
        out.quantize_into(Kernels::Scalar, x, cols);
        out
    }

    /// [`Self::quantize`] into these buffers (their capacity is kept), vectorised with AVX2
    /// unless `kernels` is [`Kernels::Scalar`] (the same values either way).
    #[allow(
        unsafe_code,
        reason = "a `#[target_feature]` function, called only where the CPU has its features"
    )]
    pub fn quantize_into(&mut self, kernels: Kernels, x: &[f32], cols: usize) {
        debug_assert!(cols.is_multiple_of(32) && x.len().is_multiple_of(cols));
        let blocks = x.len() / 32;
        self.cols = cols;
        self.q.clear();
        self.q.resize(x.len(), 0);
        for v in [&mut self.d, &mut self.sums] {
            v.clear();
            v.resize(blocks, 0.0);
        }
        self.half_sums.clear();
        self.half_sums.resize(2 * blocks, 0.0);
        let out = (
            &mut self.q[..],
            &mut self.d[..],
            &mut self.sums[..],
            &mut self.half_sums[..],
        );
        #[cfg(target_arch = "x86_64")]
        if kernels != Kernels::Scalar {
            // SAFETY: every set but `Scalar` is chosen only where the CPU has AVX2.
            unsafe { quantize_avx2(x, out) };
            return;
        }
        let _ = kernels;
        quantize_blocks(x, out);
    }

    /// Row `r`'s quantised values, scales and half sums.
    pub fn row(&self, r: usize) -> ActRow<'_> {
        let blocks = self.cols / 32;
        ActRow {
            q: &self.q[r * self.cols..(r + 1) * self.cols],
            d: &self.d[r * blocks..(r + 1) * blocks],
            sums: &self.sums[r * blocks..(r + 1) * blocks],
            half_sums: &self.half_sums[2 * r * blocks..2 * (r + 1) * blocks],
        }
    }
}

type Outputs<'a> = (&'a mut [i8], &'a mut [f32], &'a mut [f32], &'a mut [f32]);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn quantize_avx2(x: &[f32], out: Outputs<'_>) {
    quantize_blocks(x, out);
}

/// Every 32 values of `x` into `q`, `d`, `sums` and `half_sums` (inlined into each caller so
/// that it compiles with the caller's features: with AVX2 the rounding is `vroundps` on
/// eight values, not the baseline's call to `roundf` per value).
#[inline(always)]
fn quantize_blocks(x: &[f32], (q, d, sums, half_sums): Outputs<'_>) {
    let blocks = x
        .as_chunks::<32>()
        .0
        .iter()
        .zip(q.as_chunks_mut::<32>().0)
        .zip(d.iter_mut().zip(sums))
        .zip(half_sums.as_chunks_mut::<2>().0);
    for (((values, q), (d, sum)), halves) in blocks {
        let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (q, &v) in q.iter_mut().zip(values) {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "|v / d| ≤ 127 by construction"
            )]
            {
                *q = (v * inverse).round() as i8;
            }
        }
        let [first, second] = [&q[..16], &q[16..]].map(|half| {
            let sum: i32 = half.iter().map(|&v| i32::from(v)).sum();
            #[allow(clippy::cast_precision_loss, reason = "|sum| ≤ 16·127")]
            let sum = sum as f32;
            sum
        });
        *d = scale;
        *halves = [scale * first, scale * second];
        *sum = scale * (first + second);
    }
}

/// One quantised activation row (see [`Q8Activations`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    pub sums: &'a [f32],
    pub half_sums: &'a [f32],
}
