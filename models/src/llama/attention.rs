//! The host pass's attention of one query row over a head's cached keys and values, compiled
//! twice: portable, and with AVX2 + FMA where [`Kernels::detect`] found them (the baseline
//! x86-64 target has only SSE2, so without this the loops run four lanes wide with no FMA).
//! On a 512-token prompt of SmolLM2 this loop was a third of the time once the matrix
//! products ran on the tiled kernels.

use std::cell::RefCell;

use super::cache::HostLayer;
use crate::quant::Kernels;

thread_local! {
    /// One attention row's scores (per rayon thread).
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Where one key/value head's rows lie in a layer's `[positions, kv_heads, head_dim]` buffers.
pub(super) struct KeysOf<'a> {
    pub layer: &'a HostLayer,
    pub offset: usize,
    pub stride: usize,
}

impl KeysOf<'_> {
    /// Position `j`'s row of this head in `buffer` (the layer's keys or values).
    #[inline(always)]
    fn row<'b>(&self, buffer: &'b [f32], j: usize, d: usize) -> &'b [f32] {
        let start = j * self.stride + self.offset;
        &buffer[start..start + d]
    }
}

/// Softmax attention of one query row over the first `seen` positions: `out = Σ pⱼ·vⱼ`.
#[allow(
    unsafe_code,
    reason = "a `#[target_feature]` function, called only where the CPU has its features"
)]
pub(super) fn attend(
    kernels: Kernels,
    query: &[f32],
    keys: &KeysOf<'_>,
    seen: usize,
    scale: f32,
    out: &mut [f32],
) {
    SCORES.with_borrow_mut(|scores| {
        #[cfg(target_arch = "x86_64")]
        if kernels != Kernels::Scalar {
            // SAFETY: `Kernels::detect` (and `available`, which tests use) report AVX2 and
            // FMA for every set but `Scalar`.
            unsafe { attend_avx2(query, keys, seen, scale, scores, out) };
            return;
        }
        let _ = kernels;
        attend_portable(query, keys, seen, scale, scores, out);
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn attend_avx2(
    query: &[f32],
    keys: &KeysOf<'_>,
    seen: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    attend_portable(query, keys, seen, scale, scores, out);
}

/// The loops of [`attend`], inlined into each caller so that they compile with its features.
#[inline(always)]
fn attend_portable(
    query: &[f32],
    keys: &KeysOf<'_>,
    seen: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = query.len();
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for j in 0..seen {
        let s = dot(query, keys.row(&keys.layer.keys, j, d)) * scale;
        max = max.max(s);
        scores.push(s);
    }
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inverse = 1.0 / sum;
    out.fill(0.0);
    for (j, &p) in scores.iter().enumerate() {
        let weight = p * inverse;
        let (out8, out_tail) = out.as_chunks_mut::<8>();
        let (v8, v_tail) = keys.row(&keys.layer.values, j, d).as_chunks::<8>();
        for (o, v) in out8.iter_mut().zip(v8) {
            for i in 0..8 {
                o[i] += weight * v[i];
            }
        }
        for (o, &v) in out_tail.iter_mut().zip(v_tail) {
            *o += weight * v;
        }
    }
}

/// A dot product in two sets of eight independent lanes (so the compiler vectorises it
/// without reassociating one sum, and two chains of additions overlap).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [[0.0f32; 8]; 2];
    let (a16, a_tail) = a.as_chunks::<16>();
    let (b16, b_tail) = b.as_chunks::<16>();
    for (a, b) in a16.iter().zip(b16) {
        for (h, lanes) in lanes.iter_mut().enumerate() {
            for i in 0..8 {
                lanes[i] += a[8 * h + i] * b[8 * h + i];
            }
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(a, b)| a * b).sum();
    let [first, second] = lanes;
    first.iter().zip(&second).map(|(x, y)| x + y).sum::<f32>() + tail
}
