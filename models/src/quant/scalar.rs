//! The portable kernels: what every CPU runs when it lacks the SIMD extensions of `x86.rs`,
//! and the reference the SIMD kernels are tested against.

use super::activations::ActRow;
use super::floats::FloatFormat;
use super::formats::Format;

/// `out[r] = w · acts[r]` for one weight row `w` (whole blocks of `F`).
pub(crate) fn dot_row<F: Format>(w: &[u8], acts: &[ActRow<'_>], out: &mut [f32]) {
    out.fill(0.0);
    for (b, block) in w.chunks_exact(F::TYPE.block_bytes()).enumerate() {
        let s = F::scales(block);
        for sub in 0..F::SUBS {
            let u = F::unpack(block, sub);
            let a = b * F::SUBS + sub;
            for (row, o) in acts.iter().zip(out.iter_mut()) {
                let p = &row.q[32 * a..32 * a + 32];
                let mut dots = [0i32; 2];
                for (h, dot) in dots.iter_mut().enumerate() {
                    for l in 16 * h..16 * h + 16 {
                        let weight = if F::SIGNED {
                            i32::from(u[l].cast_signed())
                        } else {
                            i32::from(u[l])
                        };
                        *dot += weight * i32::from(p[l]);
                    }
                }
                #[allow(clippy::cast_precision_loss, reason = "|dot| ≤ 16·255·127")]
                let integer = s.scale[sub][0] * dots[0] as f32 + s.scale[sub][1] * dots[1] as f32;
                *o += row.d[a] * integer
                    + s.offset[sub][0] * row.half_sums[2 * a]
                    + s.offset[sub][1] * row.half_sums[2 * a + 1];
            }
        }
    }
}

/// `out[r] = w · x[r]` for one row `w` of a float matrix (f32, f16 or bf16) and f32 rows `x`.
pub(crate) fn dot_row_float<F: FloatFormat>(w: &[u8], x: &[&[f32]], out: &mut [f32]) {
    for (row, o) in x.iter().zip(out.iter_mut()) {
        *o = w
            .chunks_exact(F::BYTES)
            .zip(row.iter())
            .map(|(bytes, &v)| F::value(bytes) * v)
            .sum();
    }
}
