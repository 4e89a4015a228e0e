//! Activations quantised per 32 values to signed bytes, as llama.cpp's Q8_0 does before its
//! integer dot products, plus the sums the weight offsets need.

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
        out.quantize_into(x, cols);
        out
    }

    /// [`Self::quantize`] into these buffers (their capacity is kept).
    pub fn quantize_into(&mut self, x: &[f32], cols: usize) {
        debug_assert!(cols.is_multiple_of(32) && x.len().is_multiple_of(cols));
        self.cols = cols;
        self.q.clear();
        self.q.resize(x.len(), 0);
        self.d.clear();
        self.sums.clear();
        self.half_sums.clear();
        for (values, q) in x.chunks_exact(32).zip(self.q.chunks_exact_mut(32)) {
            let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = max / 127.0;
            let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in q.iter_mut().zip(values) {
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "|v / d| ≤ 127 by construction"
                )]
                {
                    *q = (v * inverse).round() as i8;
                }
            }
            self.d.push(d);
            let [first, second] = [&q[..16], &q[16..]].map(|half| {
                let sum: i32 = half.iter().map(|&v| i32::from(v)).sum();
                #[allow(clippy::cast_precision_loss, reason = "|sum| ≤ 16·127")]
                let sum = sum as f32;
                sum
            });
            self.half_sums.extend([d * first, d * second]);
            self.sums.push(d * (first + second));
        }
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

/// One quantised activation row (see [`Q8Activations`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    pub sums: &'a [f32],
    pub half_sums: &'a [f32],
}
